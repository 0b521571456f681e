"""Self-describing detector checkpoints.

A checkpoint is one ``torch.save`` file holding only tensors and plain python types:

    {"format": "deepfake-monitor-checkpoint", "format_version": 1,
     "contract": InputContract.to_dict(), "model_config": ModelConfig.to_dict(),
     "state_dict": {...}, "extra": {epoch, metrics, train config, optimizer state, ...}}

``load_checkpoint`` rebuilds the model from the stored contract and config (as whisper's
``load_model`` does with ``ModelDimensions``), so no caller has to remember the flags a
model was trained with. It loads with ``torch.load(weights_only=True)``: a checkpoint
cannot run code on the machine that opens it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from monitor.contract import InputContract
from monitor.errors import ConfigError, ContractError, ModelFormatError
from train.model import Detector, ModelConfig, build_model

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "deepfake-monitor-checkpoint"
CHECKPOINT_FORMAT_VERSION = 1  # bump when the layout of the saved dict changes
SUPPORTED_FORMAT_VERSIONS = frozenset({1})
HASH_CHUNK_BYTES = 1 << 20  # 1 MiB reads while hashing
_PLAIN_SCALARS = (type(None), bool, int, float, str, bytes)
_PLAIN_LEAVES = (*_PLAIN_SCALARS, torch.Tensor, torch.dtype, torch.device, torch.Size)


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint: the rebuilt model (eval mode, CPU) and what describes it."""

    model: Detector  # ready to score: eval mode, on CPU
    contract: InputContract  # the inputs the model was trained on
    model_config: ModelConfig  # the architecture that rebuilt `model`
    extra: dict[str, Any] = field(default_factory=dict)  # epoch, metrics, optimizer state...
    sha256: str = ""  # hex digest of the checkpoint file, for manifests and logs
    path: str = ""  # where it was loaded from
    format_version: int = CHECKPOINT_FORMAT_VERSION


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model inside DistributedDataParallel / DataParallel / torch.compile."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel | nn.DataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        else:
            return model


def _check_plain(obj: Any, where: str) -> None:
    """Refuse at save time what torch.load(weights_only=True) would refuse at load time."""
    # numpy scalars subclass float and int, but torch.load(weights_only=True) refuses them
    if isinstance(obj, _PLAIN_LEAVES) and not isinstance(obj, np.generic):
        return
    if isinstance(obj, dict):
        for key, value in obj.items():
            if not isinstance(key, _PLAIN_SCALARS):
                raise ModelFormatError(f"{where} has a key of type {type(key).__name__}")
            _check_plain(value, f"{where}[{key!r}]")
        return
    if isinstance(obj, list | tuple):
        for i, value in enumerate(obj):
            _check_plain(value, f"{where}[{i}]")
        return
    raise ModelFormatError(
        f"{where} is a {type(obj).__module__}.{type(obj).__name__}; checkpoints store only "
        "tensors and plain python types (convert it: .model_dump(), float(), .tolist(), str())"
    )


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    contract: InputContract,
    cfg: ModelConfig,
    extra: dict[str, Any] | None = None,
) -> str:
    """Write a self-describing checkpoint atomically; returns its sha256 hex digest.

    `model` may be wrapped (DDP, DataParallel, torch.compile); `extra` must hold only
    tensors and plain python types (checked here, so a bad value fails at save time).
    """
    extra = dict(extra or {})
    _check_plain(extra, "extra")
    bare = unwrap(model)
    state = {k: v.detach().cpu() for k, v in bare.state_dict().items()}
    payload = {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_FORMAT_VERSION,
        "contract": contract.to_dict(),
        "model_config": cfg.to_dict(),
        "state_dict": state,
        "extra": extra,
    }
    return _write_payload(Path(path), payload)


def update_extra(path: str | Path, updates: dict[str, Any]) -> str:
    """Merge `updates` into a checkpoint's extra (e.g. `calibrate`'s settings), rewriting
    the file atomically; weights, contract and config stay as they are."""
    path = Path(path)
    payload = _read_payload(path)
    extra = dict(payload.get("extra") or {})
    extra.update(updates)
    _check_plain(extra, "extra")
    payload["extra"] = extra
    return _write_payload(path, payload)


def _write_payload(path: Path, payload: dict[str, Any]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Write beside the target and rename: a crash mid-save never leaves a torn file
    # where the previous good checkpoint was.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(payload, fh)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    digest = file_sha256(path)
    logger.info("saved checkpoint %s (sha256 %s)", path, digest[:12])
    return digest


def _read_payload(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ModelFormatError(f"checkpoint {path} does not exist or is not a file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, EOFError, RuntimeError, ValueError) as exc:
        raise ModelFormatError(
            f"{path} is not a deepfake-monitor checkpoint (torch.load failed: {exc})"
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ModelFormatError(
            f"{path} is a torch file but not a deepfake-monitor checkpoint "
            f"(no format={CHECKPOINT_FORMAT!r} marker); save models with save_checkpoint()"
        )
    version = payload.get("format_version")
    if version not in SUPPORTED_FORMAT_VERSIONS:
        raise ModelFormatError(
            f"{path}: checkpoint format version {version!r} is not supported "
            f"(supports {sorted(SUPPORTED_FORMAT_VERSIONS)}); upgrade deepfake-monitor"
        )
    for key in ("contract", "model_config", "state_dict"):
        if not isinstance(payload.get(key), dict):
            raise ModelFormatError(f"{path}: checkpoint has no {key!r} mapping")
    return payload


def load_checkpoint(path: str | Path, expect_contract: InputContract | None = None) -> Checkpoint:
    """Load and rebuild a detector (eval mode, CPU).

    Raises ModelFormatError for a file that is not a readable checkpoint, ContractError
    for an unsupported contract version or one different from `expect_contract`.
    """
    path = Path(path)
    payload = _read_payload(path)
    # ContractError on an unknown version; a contract saved before the sync output existed
    # gains it (the detector always had the sync head)
    contract = InputContract.from_dict(payload["contract"]).with_sync_output()
    if expect_contract is not None:
        expect_contract.check_compatible(contract, what=f"checkpoint {path.name}")
    try:
        cfg = ModelConfig.from_dict(payload["model_config"])
    except ConfigError as exc:
        raise ModelFormatError(f"{path}: unusable model config ({exc})") from exc
    try:
        model = build_model(contract, cfg, load_weights=False)
    except (ConfigError, ContractError) as exc:
        raise ModelFormatError(f"{path}: cannot rebuild the model ({exc})") from exc
    try:
        model.load_state_dict(payload["state_dict"], strict=True)
    except RuntimeError as exc:
        raise ModelFormatError(
            f"{path}: weights do not fit the model its config describes ({exc})"
        ) from exc
    model.eval()
    extra = payload.get("extra") or {}
    digest = file_sha256(path)
    logger.info(
        "loaded checkpoint %s (%s/%s, sha256 %s)",
        path,
        cfg.audio_backbone,
        cfg.visual_backbone,
        digest[:12],
    )
    return Checkpoint(
        model=model,
        contract=contract,
        model_config=cfg,
        extra=dict(extra),
        sha256=digest,
        path=str(path),
        format_version=int(payload["format_version"]),
    )
