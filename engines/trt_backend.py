"""tensorrt backend: run a serialized engine with pycuda buffers and streams.

- The engine's manifest is checked first: an engine built for another TensorRT version or
  GPU architecture is refused with a message to rebuild it (engines.trt_plan).
- All CUDA work happens in the device's PRIMARY context (the one torch and the CUDA runtime
  use), pushed around each call, so this backend coexists with torch in one process and
  works from any worker thread.
- One execution context, CUDA stream and set of buffers ("slot") per concurrent worker;
  buffers are allocated once at the profile's max batch: page-locked host memory for
  asynchronous copies, device memory bound with set_tensor_address.
- Per call: copy inputs host->device, set_input_shape for the batch, execute_async_v3,
  copy outputs back, synchronize the slot's stream. Batches above the max are split.
"""

from __future__ import annotations

import logging
import queue
from pathlib import Path
from typing import Any

import numpy as np

from engines.batching import split_batch
from engines.iospec import INPUT, OUTPUT, TensorSpec, check_io
from engines.manifest import EngineManifest
from engines.trt_common import (
    cuda,
    dims_tuple,
    make_logger,
    numpy_dtype_name,
    require_tensorrt,
    runtime_info,
    trt,
)
from engines.trt_plan import BufferSpec, check_engine_compat, plan_buffers, total_bytes
from monitor.backend import Scores, check_batch
from monitor.errors import BackendUnavailableError, ModelFormatError

logger = logging.getLogger(__name__)


def engine_io(engine: trt.ICudaEngine) -> tuple[TensorSpec, ...]:
    """The engine's I/O tensors, by name (TensorRT 10 tensor API)."""
    specs = []
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        mode = INPUT if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else OUTPUT
        specs.append(
            TensorSpec(
                name,
                mode,
                numpy_dtype_name(engine.get_tensor_dtype(name)),
                dims_tuple(engine.get_tensor_shape(name)),
            )
        )
    return tuple(specs)


class _Slot:
    """One worker's execution context, stream and buffers (allocated at max batch)."""

    def __init__(
        self, engine: trt.ICudaEngine, specs: tuple[TensorSpec, ...], max_batch: int
    ) -> None:
        self.context = engine.create_execution_context()
        if self.context is None:
            raise BackendUnavailableError(
                "TensorRT could not create an execution context (GPU memory?)"
            )
        self.stream = cuda.Stream()
        self.buffers: tuple[BufferSpec, ...] = plan_buffers(specs, max_batch)
        self.host: dict[str, np.ndarray] = {}
        self.device: dict[str, Any] = {}
        for b in self.buffers:
            self.host[b.name] = cuda.pagelocked_empty(b.shape, np.dtype(b.dtype))
            self.device[b.name] = cuda.mem_alloc(b.nbytes)
            if not self.context.set_tensor_address(b.name, int(self.device[b.name])):
                raise ModelFormatError(f"TensorRT refused the buffer of tensor {b.name!r}")

    def run(self, inputs: dict[str, np.ndarray], outputs: tuple[str, ...]) -> list[np.ndarray]:
        n = len(next(iter(inputs.values())))
        for name, arr in inputs.items():
            host = self.host[name][:n]
            np.copyto(host, arr)
            cuda.memcpy_htod_async(self.device[name], host, self.stream)
            if not self.context.set_input_shape(name, arr.shape):
                raise ModelFormatError(f"TensorRT refused input shape {arr.shape} for {name!r}")
        if not self.context.execute_async_v3(self.stream.handle):
            raise BackendUnavailableError("TensorRT execute_async_v3 failed (see the TensorRT log)")
        for name in outputs:
            cuda.memcpy_dtoh_async(self.host[name][:n], self.device[name], self.stream)
        self.stream.synchronize()
        return [self.host[name][:n].reshape(-1).astype(np.float32, copy=True) for name in outputs]

    def free(self) -> None:
        for alloc in self.device.values():
            alloc.free()
        self.device.clear()
        del self.context


class TensorRTBackend:
    """Scores windows with a TensorRT engine; safe for `workers` threads at once."""

    name = "tensorrt"
    calibration: dict[str, Any] | None = None  # calibrate's state settings (manifest)

    def __init__(
        self,
        plan_path: str | Path,
        manifest: EngineManifest,
        *,
        workers: int = 1,
        device_index: int = 0,
    ) -> None:
        require_tensorrt()
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.path = Path(plan_path)
        self.contract = manifest.contract
        self.manifest = manifest
        check_engine_compat(manifest, runtime_info(device_index))
        self._ctx = cuda.Device(device_index).retain_primary_context()
        self._ctx.push()
        try:
            self._trt_logger = make_logger()
            self._runtime = trt.Runtime(self._trt_logger)
            self._engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
            if self._engine is None:
                raise ModelFormatError(
                    f"{self.path}: TensorRT cannot deserialize this engine (see the log); "
                    "rebuild it"
                )
            specs = engine_io(self._engine)
            check_io(self.contract, specs, str(self.path))
            first_input = self.contract.audio_input
            self.max_batch = int(self._engine.get_tensor_profile_shape(first_input, 0)[2][0])
            self._outputs = tuple(self.contract.output_names)
            self._slots: queue.Queue[_Slot] = queue.Queue()
            self._all: list[_Slot] = []
            for _ in range(workers):
                slot = _Slot(self._engine, specs, self.max_batch)
                self._all.append(slot)
                self._slots.put(slot)
        finally:
            self._ctx.pop()
        mib = total_bytes(plan_buffers(specs, self.max_batch)) / (1 << 20)
        logger.info(
            "tensorrt engine %s (%s, max batch %d): %d worker slot(s), %.1f MiB of buffers each",
            self.path.name,
            manifest.precision,
            self.max_batch,
            workers,
            mib,
        )

    def score(self, audio: np.ndarray, faces: np.ndarray) -> Scores:
        check_batch(self.contract, audio, faces)
        slot = self._slots.get()  # blocks while every slot is busy
        parts: list[list[np.ndarray]] = []
        try:
            self._ctx.push()
            try:
                for a, b in split_batch(len(audio), self.max_batch):
                    feeds = {
                        self.contract.audio_input: audio[a:b],
                        self.contract.faces_input: faces[a:b],
                    }
                    parts.append(slot.run(feeds, self._outputs))
            finally:
                self._ctx.pop()
        finally:
            self._slots.put(slot)
        n_out = len(self.contract.output_names)
        return Scores.from_outputs([np.concatenate([p[i] for p in parts]) for i in range(n_out)])

    def close(self) -> None:
        if not self._all:
            return
        self._ctx.push()
        try:
            for slot in self._all:
                slot.free()
            self._all.clear()
            del self._engine
        finally:
            self._ctx.pop()
            self._ctx.detach()
