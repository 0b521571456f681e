"""The detector's input contract: what every runtime must feed the model.

One frozen dataclass, saved inside every checkpoint and as JSON beside every exported
model. Training, offline scoring and the live monitor all build their windows and face
crops from it, so the model always sees the same kind of input it was trained on.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from monitor.errors import ContractError

CONTRACT_VERSION = 1  # bump when a field's meaning changes; runtimes refuse unknown versions
SUPPORTED_CONTRACT_VERSIONS = frozenset({1})

SAMPLE_RATE = 16_000  # Hz, mono; every audio path resamples to this
DEFAULT_WINDOW_SECONDS = 2.0  # 32,000 samples of audio per window
DEFAULT_HOP_SECONDS = 1.0  # a new window every second on a live stream
DEFAULT_K_CROPS = 4  # face crops sampled evenly inside each window
DEFAULT_CROP_SIZE = 112  # pixels, square RGB crops
DEFAULT_CROP_MARGIN = 0.25  # fraction of the face box added on every side
# Face croppers (monitor/media/faces.py), by name and version: the same frames give other
# crops under each, so a model runs only with the one it was trained with.
CROPPER_HAAR = "haar-2"  # OpenCV Haar cascades, upright square crops around the box
CROPPER_CNN = "centerface-1"  # CenterFace CNN with landmarks: roll-aligned crops
# centerface-1's faces and poses, each crop resampled once from the frame, upright on the
# pixel grid below a 3-degree roll (monitor/media/landmarks.py crop_once)
CROPPER_CNN_ONCE = "centerface-2"
CNN_CROPPERS = (CROPPER_CNN, CROPPER_CNN_ONCE)
CROPPERS = (CROPPER_HAAR, *CNN_CROPPERS)
DEFAULT_CROPPER = CROPPER_CNN  # what new models are trained with
LEGACY_CROPPER = CROPPER_HAAR  # what a contract without the field was made with
HEAD_OUTPUTS = ("p_fused", "p_audio", "p_visual")  # P(fake) per head, float32 [B]
SYNC_OUTPUT = "p_sync"  # P(voice and mouth out of step), float32 [B]; models exported
# before it existed have only the three head outputs, and runtimes report sync as absent


@dataclass(frozen=True)
class InputContract:
    """Inputs and outputs of one detector, shared by training, export and every runtime."""

    version: int = CONTRACT_VERSION  # schema version of this contract
    sample_rate: int = SAMPLE_RATE  # Hz of the mono float32 audio windows
    window_seconds: float = DEFAULT_WINDOW_SECONDS  # length of one scored window
    hop_seconds: float = DEFAULT_HOP_SECONDS  # default stride between windows
    k_crops: int = DEFAULT_K_CROPS  # face crops per window, evenly spaced in time
    crop_size: int = DEFAULT_CROP_SIZE  # crop height == width, pixels
    crop_margin: float = DEFAULT_CROP_MARGIN  # margin around the detected face box
    # Largest factor by which a face crop is shrunk to crop_size (None: no limit). Above
    # it the crop is cut tighter around the face centre instead, down to the face box
    # and never into it, so a big face keeps its pixel-level detail (a face bigger than
    # the cap is shrunk to its box). Left out of to_dict() when None, so contracts
    # that do not use it read as before (older runtimes, cache keys).
    max_crop_downscale: float | None = None
    # The face cropper the crops come from (CROPPERS). Contracts saved before the field
    # existed read as LEGACY_CROPPER, and to_dict() leaves it out for that one, so their
    # checkpoints, manifests and cache keys read as before.
    cropper: str = DEFAULT_CROPPER
    audio_input: str = "audio"  # float32 [B, window_samples], range about [-1, 1]
    faces_input: str = "faces"  # uint8 [B, k_crops, crop_size, crop_size, 3], RGB
    output_names: tuple[str, ...] = field(default=(*HEAD_OUTPUTS, SYNC_OUTPUT))

    def __post_init__(self) -> None:
        problems = []
        if self.sample_rate < 8_000 or self.sample_rate > 48_000:
            problems.append(f"sample_rate={self.sample_rate} outside 8000..48000 Hz")
        if not 0.25 <= self.window_seconds <= 30.0:
            problems.append(f"window_seconds={self.window_seconds} outside 0.25..30 s")
        if not 0.0 < self.hop_seconds <= self.window_seconds:
            problems.append(f"hop_seconds={self.hop_seconds} must be in (0, window_seconds]")
        if not 1 <= self.k_crops <= 64:
            problems.append(f"k_crops={self.k_crops} outside 1..64")
        if not 32 <= self.crop_size <= 512:
            problems.append(f"crop_size={self.crop_size} outside 32..512 px")
        if not 0.0 <= self.crop_margin <= 1.0:
            problems.append(f"crop_margin={self.crop_margin} outside 0..1")
        if self.max_crop_downscale is not None and not 0.5 <= self.max_crop_downscale <= 8.0:
            problems.append(f"max_crop_downscale={self.max_crop_downscale} outside 0.5..8")
        if self.cropper not in CROPPERS:
            problems.append(
                f"cropper={self.cropper!r} is not a face cropper this runtime has "
                f"({', '.join(CROPPERS)}); upgrade deepfake-monitor"
            )
        if len(self.output_names) not in (3, 4):
            problems.append(
                f"output_names must name 3 outputs (fused, audio, visual) or 4 (and sync), "
                f"got {self.output_names}"
            )
        if problems:
            raise ContractError("invalid input contract: " + "; ".join(problems))

    @property
    def has_sync(self) -> bool:
        """The model outputs its lip-sync head's probability (a fourth output)."""
        return len(self.output_names) == 4

    def with_sync_output(self) -> InputContract:
        """The same contract naming the sync output (for a checkpoint saved before the
        sync output existed: its detector has the sync head all the same)."""
        if self.has_sync:
            return self
        return replace(self, output_names=(*self.output_names, SYNC_OUTPUT))

    @property
    def window_samples(self) -> int:
        """Audio samples in one window."""
        return round(self.window_seconds * self.sample_rate)

    @property
    def hop_samples(self) -> int:
        return round(self.hop_seconds * self.sample_rate)

    @property
    def faces_shape(self) -> tuple[int, int, int, int]:
        """Shape of one window's face stack, without the batch axis."""
        return (self.k_crops, self.crop_size, self.crop_size, 3)

    def summary(self) -> str:
        """One line for logs and the build-info metric, e.g. `v1 16000Hz 2.0s/1.0s K4x112px`."""
        cap = "" if self.max_crop_downscale is None else f" cap{self.max_crop_downscale:g}"
        return (
            f"v{self.version} {self.sample_rate}Hz {self.window_seconds:g}s/"
            f"{self.hop_seconds:g}s K{self.k_crops}x{self.crop_size}px{cap} {self.cropper}"
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["output_names"] = list(self.output_names)
        if self.max_crop_downscale is None:
            del d["max_crop_downscale"]
        if self.cropper == LEGACY_CROPPER:
            del d["cropper"]
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InputContract:
        """Rebuild a contract, refusing versions and keys this runtime does not know."""
        if not isinstance(data, dict):
            raise ContractError(f"input contract must be a mapping, got {type(data).__name__}")
        version = data.get("version")
        if version not in SUPPORTED_CONTRACT_VERSIONS:
            raise ContractError(
                f"model input contract version {version!r} is not supported by this runtime "
                f"(supports {sorted(SUPPORTED_CONTRACT_VERSIONS)}); upgrade deepfake-monitor "
                "or re-export the model with a matching version"
            )
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ContractError(
                f"input contract has fields this runtime does not know: {unknown}; "
                "the model was made by a newer deepfake-monitor"
            )
        kwargs = dict(data)
        kwargs.setdefault("cropper", LEGACY_CROPPER)  # saved before croppers had names
        if "output_names" in kwargs:
            kwargs["output_names"] = tuple(kwargs["output_names"])
        return cls(**kwargs)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def save_json(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json() + "\n")

    @classmethod
    def load_json(cls, path: str | Path) -> InputContract:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ContractError(f"cannot read input contract from {path}: {exc}") from exc
        return cls.from_dict(data)

    def check_compatible(self, other: InputContract, what: str = "model") -> None:
        """Refuse a model whose contract differs from what this runtime was set up for."""
        if self == other:
            return
        diffs = [
            f"{f.name}: runtime {getattr(self, f.name)!r} vs {what} {getattr(other, f.name)!r}"
            for f in fields(self)
            if getattr(self, f.name) != getattr(other, f.name)
        ]
        raise ContractError(
            f"{what} input contract does not match this runtime ({'; '.join(diffs)}); "
            "re-export the model or configure the runtime from the model's manifest"
        )
