"""The detector shipped with the package: `score`, `watch`, `serve` and `replay` run it
when no model is given (`--model default`, or `model: default` in a config).

The files live in monitor/models/default/: `model.onnx`, its manifest `model.onnx.json`
(contract, sha256, parity, the calibrated alert settings and the provenance: the data
recipe and its checksum, the training recipe and seed, the commands) and `CARD.md`.
`make model` rebuilds them with the project's own commands (train/default_model.py).
The manifest's sha256 is checked whenever the model is loaded, so a damaged or replaced
file is refused.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DEFAULT_NAME = "default"  # what --model and `model:` accept for the shipped detector
DEFAULT_DIR = Path(__file__).resolve().parent / "default"
DEFAULT_MODEL = DEFAULT_DIR / "model.onnx"
DEFAULT_CARD = DEFAULT_DIR / "CARD.md"


def is_default(model: str | Path | None) -> bool:
    """True for the name of the shipped detector (or no model at all)."""
    return model is None or str(model).strip() in ("", DEFAULT_NAME)


def resolve_model(model: str | Path | None) -> str:
    """The model path to load: the shipped detector's file for `default` (or None), else
    `model` unchanged."""
    return str(DEFAULT_MODEL) if is_default(model) else str(model)


def _provenance(manifest: Path) -> dict[str, Any]:
    try:
        data = json.loads(manifest.read_text())
    except (OSError, ValueError):
        return {}
    value = data.get("provenance")
    return value if isinstance(value, dict) else {}


def describe_model(model: str | Path | None) -> str:
    """One line naming the model a command runs, e.g. for its start-up message:
    `model: embedded default (recipe default, data synth1k …) at …/model.onnx`."""
    path = resolve_model(model)
    if not is_default(model) and Path(path).resolve() != DEFAULT_MODEL:
        return f"model: {path}"
    prov = _provenance(DEFAULT_DIR / "model.onnx.json")
    parts = []
    if prov.get("recipe"):
        parts.append(f"recipe {prov['recipe']}")
    data = prov.get("data") or {}
    if isinstance(data, dict) and data.get("name"):
        parts.append(f"trained on {data['name']} (synthetic)")
    what = f" ({', '.join(parts)})" if parts else ""
    return f"model: embedded default{what}, {DEFAULT_MODEL}"
