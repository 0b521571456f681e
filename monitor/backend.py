"""The one interface between the monitor and an inference runtime.

`monitor` only ever calls `Backend.score(audio, faces) -> Scores`. Implementations live in
`engines/` (onnxruntime, torch, TensorRT, Triton), which depends on this module and never
the reverse: `load_backend` imports the engines' loader by name when a model is loaded,
so the slim runtime never imports torch and `monitor` has no import-time tie to `engines`.
"""

from __future__ import annotations

import hashlib
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from monitor.contract import InputContract
from monitor.errors import ContractError


@dataclass(frozen=True)
class Scores:
    """P(fake) per window for each head, float32 arrays of shape [B]; `sync` is the lip-sync
    head's P(voice and mouth out of step), None for a model exported without it."""

    fused: np.ndarray
    audio: np.ndarray
    visual: np.ndarray
    sync: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.fused.shape[0])

    def row(self, i: int) -> tuple[float, float, float]:
        return float(self.fused[i]), float(self.audio[i]), float(self.visual[i])

    def sync_at(self, i: int) -> float | None:
        return None if self.sync is None else float(self.sync[i])

    @classmethod
    def from_outputs(cls, outputs: list[np.ndarray]) -> Scores:
        """From a runtime's outputs in contract order (3, or 4 with sync)."""
        arrays = [np.asarray(o, dtype=np.float32).reshape(-1) for o in outputs]
        fused, audio, visual = arrays[:3]
        return cls(fused, audio, visual, sync=arrays[3] if len(arrays) > 3 else None)

    @classmethod
    def concat(cls, parts: list[Scores]) -> Scores:
        """Chunks of one batch, in order."""
        syncs = [p.sync for p in parts if p.sync is not None]
        return cls(
            np.concatenate([p.fused for p in parts]),
            np.concatenate([p.audio for p in parts]),
            np.concatenate([p.visual for p in parts]),
            sync=np.concatenate(syncs) if syncs and len(syncs) == len(parts) else None,
        )

    def first(self, n: int) -> Scores:
        """The first n rows (drop a padded batch's filler)."""
        return Scores(
            self.fused[:n],
            self.audio[:n],
            self.visual[:n],
            sync=None if self.sync is None else self.sync[:n],
        )


@runtime_checkable
class Backend(Protocol):
    """Scores batches of windows. Implementations must be safe to call from one worker thread."""

    name: str
    contract: InputContract

    def score(self, audio: np.ndarray, faces: np.ndarray) -> Scores:
        """audio: float32 [B, window_samples]; faces: uint8 [B, K, H, W, 3] RGB."""
        ...

    def close(self) -> None: ...


def check_batch(contract: InputContract, audio: np.ndarray, faces: np.ndarray) -> None:
    """Validate one batch against the contract before it reaches a runtime."""
    want_a = (contract.window_samples,)
    want_f = contract.faces_shape
    if audio.ndim != 2 or audio.shape[1:] != want_a:
        raise ContractError(f"audio batch has shape {audio.shape}, expected [B, {want_a[0]}]")
    if faces.ndim != 5 or faces.shape[1:] != want_f:
        raise ContractError(
            f"faces batch has shape {faces.shape}, expected [B, {', '.join(map(str, want_f))}]"
        )
    if audio.shape[0] != faces.shape[0]:
        raise ContractError(f"audio batch {audio.shape[0]} != faces batch {faces.shape[0]}")
    if audio.dtype != np.float32:
        raise ContractError(f"audio must be float32, got {audio.dtype}")
    if faces.dtype != np.uint8:
        raise ContractError(f"faces must be uint8, got {faces.dtype}")


ENGINES_LOADER = "engines.loader"  # module with load_backend(model, backend, device)
HASH_CHUNK_BYTES = 1 << 20  # 1 MiB reads while hashing a model file


def load_backend(model: str | Path, backend: str = "auto", device: str = "auto") -> Backend:
    """The backend for an exported model, a TensorRT plan or a checkpoint (see
    engines/loader.py for `auto` and the refusals)."""
    loader = importlib.import_module(ENGINES_LOADER)
    loaded: Backend = loader.load_backend(model, backend, device)
    return loaded


def model_identity(backend: Backend, model: str | Path) -> str:
    """sha256 of the model file the backend runs (or its path/URL when not a file)."""
    path = Path(str(getattr(backend, "path", model)))
    if not path.is_file():
        return str(model)
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(HASH_CHUNK_BYTES):
            h.update(chunk)
    return h.hexdigest()


def model_calibration(backend: Backend) -> dict[str, Any] | None:
    """The calibrated settings shipped with the backend's model (`calibrate`), if any."""
    value = getattr(backend, "calibration", None)
    return value if isinstance(value, dict) else None


def read_model_calibration(model: str | Path) -> dict[str, Any] | None:
    """The same, read from the model's manifest without loading a runtime."""
    loader = importlib.import_module(ENGINES_LOADER)
    found: dict[str, Any] | None = loader.model_calibration(model)
    return found
