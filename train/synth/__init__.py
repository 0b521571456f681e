"""Synthetic competition-format deepfake dataset: talking heads with speech-like audio.

`generate_dataset(out, n_train, n_val, n_test, seed)` writes trainset/valset/testset
folders of MP4 clips, their label files and a manifest (see `train.synth.dataset`);
`METHODS` lists the fake families (see `train.synth.fakes`).

Names are resolved lazily, so `import train.commands.synth` (the CLI) stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from train.synth.dataset import DatasetSummary, generate_dataset
    from train.synth.fakes import METHODS, Method

__all__ = ["METHODS", "DatasetSummary", "Method", "generate_dataset"]
_HOME = {
    "generate_dataset": "train.synth.dataset",
    "DatasetSummary": "train.synth.dataset",
    "METHODS": "train.synth.fakes",
    "Method": "train.synth.fakes",
}


def __getattr__(name: str) -> Any:
    if name in _HOME:
        return getattr(importlib.import_module(_HOME[name]), name)
    raise AttributeError(f"module 'train.synth' has no attribute {name!r}")
