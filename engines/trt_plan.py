"""TensorRT engine logic that needs no TensorRT: profiles, I/O specs, buffers, compatibility.

The builder (`engines/trt_build.py`) and the runtime (`engines/trt_backend.py`) import
the TensorRT library; everything they decide — which shapes the optimization profile
covers, what each I/O tensor must look like, how many bytes each buffer needs for a batch,
and whether an engine may run on this machine — lives here, so it is tested on any CPU.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from engines.iospec import INPUT, TensorSpec, contract_io
from engines.manifest import EngineManifest
from monitor.contract import InputContract
from monitor.errors import BackendUnavailableError

logger = logging.getLogger(__name__)

DEFAULT_MAX_BATCH = 128  # windows per engine call; bigger batches are split
DEFAULT_OPT_BATCH = 32  # the scorer's typical flush size on a busy monitor
DEFAULT_WORKSPACE_MIB = 2048  # builder scratch memory limit, MiB
PRECISIONS = ("fp32", "fp16")


@dataclass(frozen=True)
class Profile:
    """One optimization profile over the batch axis (all other axes are fixed)."""

    min_batch: int  # smallest batch the engine accepts
    opt_batch: int  # batch the kernels are tuned for
    max_batch: int  # largest batch the engine accepts

    def __post_init__(self) -> None:
        if not 1 <= self.min_batch <= self.opt_batch <= self.max_batch:
            raise ValueError(
                f"profile needs 1 <= min <= opt <= max batch, got "
                f"{self.min_batch}/{self.opt_batch}/{self.max_batch}"
            )

    @classmethod
    def for_max_batch(cls, max_batch: int, opt_batch: int | None = None) -> Profile:
        """min 1, opt = the typical flush size (capped at max), max as given."""
        if max_batch < 1:
            raise ValueError(f"--max-batch must be >= 1, got {max_batch}")
        opt = min(max_batch, DEFAULT_OPT_BATCH if opt_batch is None else opt_batch)
        return cls(1, max(1, opt), max_batch)


def profile_shapes(
    contract: InputContract, profile: Profile
) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
    """(min, opt, max) shape per input, for IOptimizationProfile.set_shape."""
    return {
        spec.name: (
            (profile.min_batch, *spec.row_shape),
            (profile.opt_batch, *spec.row_shape),
            (profile.max_batch, *spec.row_shape),
        )
        for spec in contract_io(contract)
        if spec.mode == INPUT
    }


@dataclass(frozen=True)
class BufferSpec:
    """A host/device buffer for one tensor at one batch size."""

    name: str
    mode: str
    dtype: str
    shape: tuple[int, ...]  # concrete, batch first

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize


def plan_buffers(specs: tuple[TensorSpec, ...], batch: int) -> tuple[BufferSpec, ...]:
    """Concrete shapes, dtypes and sizes of every I/O buffer for a batch.

    The runtime allocates once at the profile's max batch and, per call, copies and binds
    only the first `batch` rows.
    """
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    return tuple(BufferSpec(s.name, s.mode, s.dtype, (batch, *s.row_shape)) for s in specs)


def total_bytes(buffers: tuple[BufferSpec, ...]) -> int:
    return sum(b.nbytes for b in buffers)


@dataclass(frozen=True)
class RuntimeInfo:
    """What this machine offers an engine: library version and GPU."""

    tensorrt_version: str
    gpu_name: str
    compute_capability: str  # "major.minor"


REBUILD_HINT = (
    "TensorRT engines only run on the GPU architecture and TensorRT version they were "
    "built with; rebuild it here: deepfake-monitor build-engine {onnx} --out {plan}"
)


def check_engine_compat(manifest: EngineManifest, here: RuntimeInfo) -> None:
    """Refuse an engine built for another TensorRT version or GPU architecture.

    The TensorRT version must match exactly and so must the compute capability. A
    different GPU model of the same architecture is allowed (TensorRT accepts it) but
    logged, since its tactics were timed on the other card.
    """
    hint = REBUILD_HINT.format(onnx=manifest.onnx_file, plan=manifest.plan_file)
    if manifest.tensorrt_version != here.tensorrt_version:
        raise BackendUnavailableError(
            f"engine {manifest.plan_file} was built with TensorRT {manifest.tensorrt_version}, "
            f"this machine has TensorRT {here.tensorrt_version}. {hint}"
        )
    if manifest.compute_capability != here.compute_capability:
        raise BackendUnavailableError(
            f"engine {manifest.plan_file} was built for {manifest.gpu_name} (compute capability "
            f"{manifest.compute_capability}), this GPU is {here.gpu_name} (compute capability "
            f"{here.compute_capability}). {hint}"
        )
    if manifest.gpu_name != here.gpu_name:
        logger.warning(
            "engine %s was built on %s, running on %s (same compute capability %s); "
            "rebuild here for best speed",
            manifest.plan_file,
            manifest.gpu_name,
            here.gpu_name,
            here.compute_capability,
        )
    if manifest.precision not in PRECISIONS:
        raise BackendUnavailableError(
            f"engine {manifest.plan_file} has unknown precision {manifest.precision!r}. {hint}"
        )
