"""torch backend: the CPU reference, and on CUDA fp16 autocast + channels-last + CUDA graphs.

On CUDA one graph is captured per batch size in a power-of-two ladder (engines.batching);
a batch is padded with zero rows up to the next captured size and the padded rows' scores
are dropped. Graphs are captured lazily, the first time a size is needed, on the thread
that calls `score`.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from engines.batching import DEFAULT_MAX_GRAPH_BATCH, graph_batch_sizes, plan_replays
from monitor.backend import Scores, check_batch
from monitor.contract import InputContract
from monitor.errors import BackendUnavailableError

logger = logging.getLogger(__name__)

GRAPH_WARMUP_ITERS = 3  # eager runs on a side stream before capture (cuDNN autotuning)
# Submodules run in fp32 under fp16 autocast: the log-mel front end's power spectrum reaches
# ~1e5 and its floor is 1e-10, both outside fp16 (the same split as the fp16 ONNX file).
FP32_MODULES = ("frontend", "mel_norm")


def keep_fp32(module: nn.Module, names: tuple[str, ...] = FP32_MODULES) -> list[str]:
    """Make submodules named `names` run with autocast off and float32 inputs.

    Wraps the forward of those instances only (the model's class is untouched); returns the
    qualified names of the wrapped submodules.
    """
    wrapped = []
    for qual, sub in module.named_modules():
        if qual.rsplit(".", 1)[-1] not in names or getattr(sub, "_fp32_wrapped", False):
            continue
        inner = sub.forward

        def forward(*args: Any, _inner: Any = inner, **kwargs: Any) -> Any:
            tensors = [a for a in args if torch.is_tensor(a)]
            device = tensors[0].device.type if tensors else "cuda"
            args = tuple(
                a.float() if torch.is_tensor(a) and a.is_floating_point() else a for a in args
            )
            with torch.autocast(device, enabled=False):
                return _inner(*args, **kwargs)

        sub.forward = forward
        sub._fp32_wrapped = True
        wrapped.append(qual)
    return wrapped


def _scores(outs: Any) -> Scores:
    return Scores.from_outputs([o.detach().float().reshape(-1).cpu().numpy() for o in outs])


class TorchBackend:
    """Scores windows with the torch model (its export module, which returns probabilities)."""

    name = "torch"
    calibration: dict[str, Any] | None = None  # calibrate's state settings (manifest)

    def __init__(
        self,
        module: nn.Module,
        contract: InputContract,
        *,
        device: str = "cpu",
        fp16: bool = True,
        cuda_graphs: bool = True,
        max_graph_batch: int = DEFAULT_MAX_GRAPH_BATCH,
    ) -> None:
        self.contract = contract
        self.checkpoint_calibration: dict[str, Any] | None = None  # from a checkpoint's extra
        dev = torch.device(device)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise BackendUnavailableError(
                f"device {device!r} asked for, but torch sees no CUDA GPU"
            )
        self.device = dev
        self.fp16 = fp16 and dev.type == "cuda"
        module = module.eval().to(dev)
        if self.fp16:
            kept = keep_fp32(module)
            logger.info("fp16 autocast; kept in fp32: %s", ", ".join(kept) or "nothing")
        if dev.type == "cuda":
            module = module.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self._module = module
        self.graph_sizes = (
            graph_batch_sizes(max_graph_batch) if cuda_graphs and dev.type == "cuda" else ()
        )
        self._graphs: dict[int, _Graph] = {}
        self._lock = threading.Lock()
        logger.info(
            "torch backend on %s (fp16=%s, cuda graphs for batches %s)",
            dev,
            self.fp16,
            self.graph_sizes or "off",
        )

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, *, device: str = "cpu", **kwargs: Any
    ) -> TorchBackend:
        """Load a checkpoint written by training (its contract and config come with it)."""
        from train.checkpoint import load_checkpoint

        ck = load_checkpoint(path)
        backend = cls(ck.model.export_module(), ck.contract, device=device, **kwargs)
        calibration = ck.extra.get("calibration")
        backend.checkpoint_calibration = calibration if isinstance(calibration, dict) else None
        return backend

    def _eager(self, audio: torch.Tensor, faces: torch.Tensor) -> Any:
        # cache_enabled=False: autocast's weight-cast cache must not outlive a graph capture
        with torch.autocast(
            self.device.type, dtype=torch.float16, enabled=self.fp16, cache_enabled=False
        ):
            return self._module(audio, faces)

    def score(self, audio: np.ndarray, faces: np.ndarray) -> Scores:
        check_batch(self.contract, audio, faces)
        with torch.inference_mode():
            if not self.graph_sizes:
                a = torch.from_numpy(np.ascontiguousarray(audio)).to(self.device)
                f = torch.from_numpy(np.ascontiguousarray(faces)).to(self.device)
                return _scores(self._eager(a, f))
        parts = []
        with self._lock:  # graphs share static buffers: one replay at a time
            for start, stop, size in plan_replays(len(audio), self.graph_sizes):
                graph = self._graphs.get(size) or self._capture(size)
                parts.append(graph.run(audio[start:stop], faces[start:stop]))
        return Scores.concat(parts)

    def _capture(self, size: int) -> _Graph:
        logger.info("capturing a CUDA graph for batch %d", size)
        graph = _Graph(self, size)
        self._graphs[size] = graph
        return graph

    def close(self) -> None:
        self._graphs.clear()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


class _Graph:
    """One captured forward pass at a fixed batch size, with its static input/output tensors."""

    def __init__(self, owner: TorchBackend, size: int) -> None:
        c, dev = owner.contract, owner.device
        self.size = size
        self.audio = torch.zeros((size, c.window_samples), dtype=torch.float32, device=dev)
        self.faces = torch.zeros((size, *c.faces_shape), dtype=torch.uint8, device=dev)
        side = torch.cuda.Stream(device=dev)
        side.wait_stream(torch.cuda.current_stream(dev))
        with torch.inference_mode(), torch.cuda.stream(side):
            for _ in range(GRAPH_WARMUP_ITERS):
                owner._eager(self.audio, self.faces)
        torch.cuda.current_stream(dev).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.inference_mode(), torch.cuda.graph(self.graph):
            self.outputs = owner._eager(self.audio, self.faces)

    def run(self, audio: np.ndarray, faces: np.ndarray) -> Scores:
        n = len(audio)
        with torch.inference_mode():
            self.audio[:n].copy_(torch.from_numpy(np.ascontiguousarray(audio)), non_blocking=False)
            self.faces[:n].copy_(torch.from_numpy(np.ascontiguousarray(faces)), non_blocking=False)
            if n < self.size:  # padding rows: silence and black crops
                self.audio[n:].zero_()
                self.faces[n:].zero_()
            self.graph.replay()
            s = _scores(self.outputs)
        return s.first(n)
