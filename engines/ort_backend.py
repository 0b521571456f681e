"""onnxruntime backend: the embedded default (CPU), with the CUDA execution provider if present.

Needs only numpy and onnxruntime, so the slim runtime runs it without torch.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from engines.iospec import INPUT, ONNX_TYPE_TO_NUMPY, OUTPUT, TensorSpec, check_io, dims_from_onnx
from monitor.backend import Scores, check_batch
from monitor.contract import InputContract
from monitor.errors import BackendUnavailableError, ModelFormatError

logger = logging.getLogger(__name__)

CPU_EP = "CPUExecutionProvider"
CUDA_EP = "CUDAExecutionProvider"
DEVICES = ("auto", "cpu", "cuda")


def choose_providers(device: str, available: list[str]) -> list[str]:
    """Execution providers for a device request: "cpu", "cuda" (required) or "auto"."""
    base = device.split(":", 1)[0]
    if base not in DEVICES:
        raise BackendUnavailableError(f"unknown device {device!r} (choose from {DEVICES})")
    if base == "cpu":
        return [CPU_EP]
    if CUDA_EP in available:
        return [CUDA_EP, CPU_EP]
    if base == "cuda":
        raise BackendUnavailableError(
            "device 'cuda' asked for, but this onnxruntime has no CUDAExecutionProvider "
            f"(has {available}); install onnxruntime-gpu or use --device cpu"
        )
    return [CPU_EP]


def _load_errors() -> tuple[type[BaseException], ...]:
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    names = (
        "Fail",
        "InvalidProtobuf",
        "InvalidGraph",
        "NoSuchFile",
        "InvalidArgument",
        "NotImplemented",
        "RuntimeException",
    )
    return tuple(getattr(state, n) for n in names if hasattr(state, n))


class OnnxRuntimeBackend:
    """Scores windows with onnxruntime on an ONNX file that follows `contract`."""

    name = "onnxruntime"
    calibration: dict[str, Any] | None = None  # calibrate's state settings (manifest)

    def __init__(
        self,
        onnx_path: str | Path,
        contract: InputContract,
        *,
        device: str = "cpu",
        intra_op_threads: int = 0,  # 0: onnxruntime's default (one per core)
    ) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise BackendUnavailableError(
                "onnxruntime is not installed; pip install 'deepfake-monitor[runtime]'"
            ) from exc
        self.contract = contract
        self.path = Path(onnx_path)
        if not self.path.is_file():
            raise ModelFormatError(f"{self.path}: ONNX file not found")
        providers = choose_providers(device, ort.get_available_providers())
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = intra_op_threads
        opts.inter_op_num_threads = 1
        # onnxruntime's pool threads spin-wait for work between calls by default: on a CPU
        # shared with decoding and face crops that burns the cores the other stages need,
        # and doubled one window's inference time beside one busy process (BENCHMARKS
        # "Capacity on the CPU"). They sleep instead.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.log_severity_level = 3  # errors only; onnxruntime's warnings are noise here
        try:
            self._session = ort.InferenceSession(str(self.path), opts, providers=providers)
        except _load_errors() as exc:
            raise ModelFormatError(
                f"{self.path}: onnxruntime cannot load this file ({str(exc).strip()[:300]}); "
                "is it an ONNX model written by `deepfake-monitor export`?"
            ) from exc
        check_io(contract, self.io_specs(), str(self.path))
        self.providers = tuple(self._session.get_providers())
        self.device = "cuda" if CUDA_EP in self.providers else "cpu"
        logger.info("onnxruntime session on %s, providers %s", self.path.name, self.providers)

    def io_specs(self) -> tuple[TensorSpec, ...]:
        """The session's inputs and outputs as TensorSpecs."""
        specs = []
        for mode, args in (
            (INPUT, self._session.get_inputs()),
            (OUTPUT, self._session.get_outputs()),
        ):
            for a in args:
                dtype = ONNX_TYPE_TO_NUMPY.get(a.type, a.type)
                specs.append(TensorSpec(a.name, mode, dtype, dims_from_onnx(list(a.shape))))
        return tuple(specs)

    def score(self, audio: np.ndarray, faces: np.ndarray) -> Scores:
        check_batch(self.contract, audio, faces)
        feeds = {
            self.contract.audio_input: np.ascontiguousarray(audio),
            self.contract.faces_input: np.ascontiguousarray(faces),
        }
        outs = self._session.run(list(self.contract.output_names), feeds)
        return Scores.from_outputs(outs)

    def close(self) -> None:
        # onnxruntime frees the session when the last reference goes
        self.__dict__.pop("_session", None)
