"""What the TensorRT builder and runtime share: guarded imports, logger bridge, GPU facts.

This is one of the two places (with trt_build / trt_backend, which import it) where the
TensorRT and pycuda libraries are imported; the selector imports these modules only once
it has chosen the tensorrt backend, so the slim runtime never loads them.
"""

from __future__ import annotations

import logging
from types import ModuleType

import numpy as np

from engines.iospec import DYNAMIC
from engines.trt_plan import RuntimeInfo
from monitor.errors import BackendUnavailableError

try:  # the TensorRT libraries exist only on GPU machines and in NVIDIA's containers
    import tensorrt as trt
except ImportError:
    trt = None  # type: ignore[assignment, unused-ignore]  # needed with typings/ stubs

try:
    import pycuda.driver as cuda
except ImportError:
    cuda = None  # type: ignore[assignment, unused-ignore]

logger = logging.getLogger(__name__)

INSTALL_HINT = (
    "install them with `pip install 'deepfake-monitor[tensorrt]'` on a machine with an NVIDIA "
    "driver, or run inside the NVIDIA TensorRT container (nvcr.io/nvidia/tensorrt); see the README"
)


def require_tensorrt() -> tuple[ModuleType, ModuleType]:
    """(tensorrt, pycuda.driver), or BackendUnavailableError saying how to get them."""
    if trt is None or not hasattr(trt, "Builder"):
        raise BackendUnavailableError(
            f"the TensorRT Python library is not available; {INSTALL_HINT}"
        )
    if cuda is None:
        raise BackendUnavailableError(f"pycuda is not available; {INSTALL_HINT}")
    return trt, cuda


def runtime_info(device_index: int = 0) -> RuntimeInfo:
    """TensorRT version and the GPU's name and compute capability."""
    require_tensorrt()
    try:
        cuda.init()
        dev = cuda.Device(device_index)
        major, minor = dev.compute_capability()
        name = dev.name()
    except cuda.Error as exc:
        raise BackendUnavailableError(f"no usable CUDA GPU {device_index}: {exc}") from exc
    return RuntimeInfo(
        tensorrt_version=str(trt.__version__), gpu_name=name, compute_capability=f"{major}.{minor}"
    )


def numpy_dtype_name(dtype: trt.DataType) -> str:
    """TensorRT DataType -> numpy dtype name ("float32", "uint8", ...)."""
    return np.dtype(trt.nptype(dtype)).name


def dims_tuple(dims: trt.Dims) -> tuple[int, ...]:
    sizes = [int(dims[i]) for i in range(len(dims))]
    return tuple(d if d >= 0 else DYNAMIC for d in sizes)


_LEVELS = {
    "INTERNAL_ERROR": logging.CRITICAL,
    "ERROR": logging.ERROR,
    "WARNING": logging.WARNING,
    "INFO": logging.INFO,
    "VERBOSE": logging.DEBUG,
}


def make_logger() -> trt.ILogger:
    """A TensorRT logger that forwards to Python logging under `engines.tensorrt`."""
    require_tensorrt()
    py_logger = logging.getLogger("engines.tensorrt")

    class _Bridge(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)

        def log(self, severity: trt.ILogger.Severity, msg: str) -> None:
            py_logger.log(_LEVELS.get(severity.name, logging.INFO), "%s", msg)

    return _Bridge()
