"""User configuration of a training run: one pydantic model, loadable from YAML.

Every field has bounds and a description; unknown keys are refused (`extra="forbid"`)
and a bad file raises ConfigError naming the key, so a typo never trains silently with
a default. The resolved config is written beside the checkpoints as config.yaml.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from monitor.contract import InputContract
from monitor.errors import ConfigError

logger = logging.getLogger(__name__)

DEFAULT_CACHE_DIR = Path(".cache/windows")  # relative to the working directory
DEFAULT_MAX_WINDOWS = 8  # windows cached per clip, spread evenly over it
RECIPES_DIR = Path(__file__).resolve().parent / "recipes"  # shipped training recipes
# Defaults per preset, used for fields a config leaves out. The demo preset is sized to
# train on a 2-core CPU in minutes; the default one for GPUs and long runs. The default
# preset takes 8 face crops per window (4 per second): lip sync needs the frame rate
# (val AUC 0.918 -> 0.952 on synth1k, BENCHMARKS.md), and its visual CNN sees every
# second crop (ModelConfig.visual_stride), so only the mouth path pays for the extra
# crops. The demo preset takes 8 too, with the mouth CNN on the mouth band alone
# (ModelConfig.demo), which keeps its step as cheap as 4 whole crops were; it trains 22
# epochs, validates each on 2 windows per clip (`evaluate` scores them all) and, on a
# CPU, loads training draws in the training process (2 cores: 8 % faster epochs; see
# TrainConfig.resolved_loader_workers). On synth1k: val
# AUC 0.960, 0.958, 0.967 (seeds 0-2) in 4.4-4.7 min, against 0.912 in 3.8 min for the
# earlier K = 4, 14-epoch preset (docs/experiments.md, 2026-11-24); `make demo` keeps
# that earlier setting (train/recipes/demo.yaml). The
# default preset validates and saves an EMA of the weights (train/ema.py): the same end
# point on synth1k, with smoother epochs on the way (docs/experiments.md, 2026-11-23). Its
# crops are 160 px instead of the contract's 112: a face of 200 px in the frame fills a
# 300-px crop, and shrinking that to 112 px averages away the noise and resolution
# step a re-rendered face leaves (30-epoch runs on synth1k: val AUC 0.972 -> 0.983,
# face_swap 0.89 -> 0.96, face_lowres 0.93 -> 0.99; docs/experiments.md, 2026-11-23).
PRESET_DEFAULTS: dict[str, dict[str, Any]] = {
    "demo": {
        "epochs": 22,
        "batch_size": 32,
        "lr": 3e-3,
        "warmup_steps": 20,
        "val_windows": 2,
        "contract": {"k_crops": 8},
    },
    "default": {
        "epochs": 20,
        "batch_size": 32,
        "lr": 1e-3,
        "warmup_steps": 100,
        "ema_decay": 0.995,
        "contract": {"k_crops": 8, "crop_size": 160},
    },
}
# Fields that may change between a run and its --resume without changing what is learnt.
RESUME_MUTABLE_FIELDS = frozenset(
    {"epochs", "workers", "loader_workers", "cache_dir", "device", "progress"}
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ContractConfig(_Strict):
    """Overrides of the input contract the detector is trained for (None: the default)."""

    window_seconds: float | None = Field(
        default=None, ge=0.25, le=30.0, description="window length, s"
    )
    hop_seconds: float | None = Field(
        default=None, gt=0.0, le=30.0, description="stride between cached windows, s"
    )
    k_crops: int | None = Field(default=None, ge=1, le=64, description="face crops per window")
    crop_size: int | None = Field(default=None, ge=32, le=512, description="face crop side, px")
    crop_margin: float | None = Field(
        default=None, ge=0.0, le=1.0, description="margin around faces"
    )
    max_crop_downscale: float | None = Field(
        default=None,
        ge=0.5,
        le=8.0,
        description="largest shrink of a face crop; bigger faces are cropped tighter instead",
    )
    cropper: Literal["haar-2", "centerface-1", "centerface-2"] | None = Field(
        default=None,
        description="face cropper (None: the current default, centerface-1; centerface-2 "
        "resamples each crop once; haar-2 rebuilds or resumes a model made with the Haar "
        "cropper)",
    )

    def build(self) -> InputContract:
        """The InputContract these overrides describe (raises ContractError if inconsistent)."""
        kwargs = {k: v for k, v in self.model_dump().items() if v is not None}
        return InputContract(**kwargs)


class AugmentConfig(_Strict):
    """Augmentations of cached windows; each fires with its probability per sample.

    They imitate what real uploads and calls do to a clip (re-encoding, rescaling,
    sensor noise, exposure and colour shifts, level changes) so the detector has to
    rely on artefacts that survive them rather than on one dataset's codec settings.
    """

    enabled: bool = Field(default=True, description="master switch for all augmentations below")
    jpeg_prob: float = Field(
        default=0.5, ge=0.0, le=1.0, description="P(JPEG re-compression of crops)"
    )
    jpeg_quality_min: int = Field(default=40, ge=5, le=100, description="lowest JPEG quality")
    jpeg_quality_max: int = Field(default=95, ge=5, le=100, description="highest JPEG quality")
    resize_prob: float = Field(default=0.3, ge=0.0, le=1.0, description="P(downscale then upscale)")
    resize_min_scale: float = Field(
        default=0.4, gt=0.0, le=1.0, description="smallest downscale factor"
    )
    codec_at_scale: bool = Field(
        default=False,
        description="a crop both downscaled and JPEG-compressed is compressed at its small size"
        " and then upscaled, as a call's encoder works on the low-resolution frame it sends"
        " (blocks of the sent frame, not of the crop); with it on, colour and noise come"
        " before the downscale (the camera before the delivery); the same draws either way",
    )
    detail_floor_scale: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="a crop downscaled below this share of its side has lost the detail a"
        " re-rendered face leaves, so it is taught as evidence of nothing: a window whose fake"
        " face is its evidence is never downscaled below it (its draw is raised to it, the"
        " draws unchanged), and a window downscaled below it gives the lip-sync loss no"
        " mismatched pairing; 0 (off) draws and trains what a config without it did",
    )
    detail_floor_jpeg: int = Field(
        default=0,
        ge=0,
        le=100,
        description="the same for JPEG quality: a fake face is never compressed below it, and"
        " a window compressed below it gives the lip-sync loss no mismatched pairing; 0 (off)",
    )
    h264_prob: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="P(a window's compression step, when drawn, is H.264 over its crop stack"
        " instead of JPEG per crop): the K crops coded as consecutive frames at"
        " h264_crf_min..h264_crf_max, at h264_min_scale..1 of their side (the face's size in"
        " the sent frame), with x264's blocks, chroma loss, deblocking smear and skipped"
        " blocks; 0 (off) draws what a config without it drew",
    )
    h264_crf_min: int = Field(default=30, ge=0, le=51, description="lowest x264 CRF drawn")
    h264_crf_max: int = Field(default=51, ge=0, le=51, description="highest x264 CRF drawn")
    h264_min_scale: float = Field(
        default=0.5, gt=0.0, le=1.0, description="smallest side factor the H.264 step codes at"
    )
    h264_frame_rate: float = Field(
        default=30.0,
        ge=0.0,
        le=120.0,
        description="the camera's frame rate the H.264 step codes at: cross-faded frames fill"
        " the time between crops, so x264 skips the blocks that changed least and the crops"
        " come back a patchwork of fresh and stale blocks, as a low-bitrate call does; at or"
        " below the crop rate only the crops are coded",
    )
    detail_floor_crf: int = Field(
        default=0,
        ge=0,
        le=51,
        description="the detail floor for H.264: a fake face is never coded above this CRF"
        " (a draw above it leaves its crops uncoded), and a window coded above it gives the"
        " lip-sync loss no mismatched pairing; 0 (off)",
    )
    noise_prob: float = Field(default=0.3, ge=0.0, le=1.0, description="P(Gaussian pixel noise)")
    noise_std_max: float = Field(
        default=8.0, ge=0.0, le=64.0, description="largest noise std, 0..255"
    )
    color_prob: float = Field(
        default=0.5, ge=0.0, le=1.0, description="P(brightness/colour jitter)"
    )
    brightness: float = Field(
        default=0.2, ge=0.0, le=1.0, description="max relative brightness change"
    )
    contrast: float = Field(default=0.2, ge=0.0, le=1.0, description="max relative contrast change")
    saturation: float = Field(
        default=0.2, ge=0.0, le=1.0, description="max relative saturation change"
    )
    denoise_prob: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="P(edge-preserving denoising of the crops, as a camera or call client does)",
    )
    denoise_sigma_max: float = Field(
        default=25.0, ge=5.0, le=100.0, description="largest bilateral colour sigma, 0..255"
    )
    degrade_warmup_epochs: int = Field(
        default=0,
        ge=0,
        description=(
            "epochs over which the crop-degrading augmentations (denoise, resize, noise, JPEG)"
            " ramp up linearly from off to their probabilities above; colour and audio"
            " augmentations are on from the start"
        ),
    )
    self_blend_prob: float = Field(
        default=0.3,
        ge=0.0,
        le=1.0,
        description="P(a fake draw is replaced by a self-blended pseudo-fake of a real clip)",
    )
    voice_resynth_prob: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="P(a fake draw is replaced by a real clip's voice, re-synthesised)",
    )
    audio_gain_prob: float = Field(default=0.5, ge=0.0, le=1.0, description="P(random audio gain)")
    audio_gain_db: float = Field(default=6.0, ge=0.0, le=40.0, description="max |gain| in dB")
    audio_noise_prob: float = Field(default=0.3, ge=0.0, le=1.0, description="P(added white noise)")
    audio_snr_db_min: float = Field(default=20.0, ge=-10.0, le=80.0, description="lowest SNR, dB")
    audio_snr_db_max: float = Field(default=50.0, ge=-10.0, le=80.0, description="highest SNR, dB")
    audio_delivery_prob: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="P(a window arrives through a delivery condition: telephone band, Opus or "
        "AAC, packet loss, gain control, noise suppression); a real voice stays real; 0 (off) "
        "draws what a config without it drew, 0.3 is the value recommended for new models",
    )
    av_offset_prob: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="P(a window's voice is moved against its face crops by up to "
        "av_offset_max_s, earlier or later: the audio-video skew of an honest call, which "
        "the lip-sync head must not read as out of step); every window but a desync fake's "
        "(its timing is its evidence), labels unchanged; 0 (off) draws what a config "
        "without it drew",
    )
    freeze_prob: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="P(a window's picture freezes: a run of 2..freeze_max_steps consecutive "
        "crops all show the run's first, as a stalled call or a starved encoder shows, while "
        "the voice goes on); every window but a desync fake's, labels unchanged; 0 (off) "
        "draws what a config without it drew",
    )
    freeze_max_steps: int = Field(
        default=4, ge=2, le=64, description="longest frozen run, in crops (capped at k_crops)"
    )
    av_offset_max_s: float = Field(
        default=0.12,
        ge=0.0,
        le=0.5,
        description="largest skew, s (desync fakes and the sync head's mismatched pairs are "
        "0.25 s or more out of step)",
    )

    @model_validator(mode="after")
    def _ranges(self) -> AugmentConfig:
        if self.jpeg_quality_min > self.jpeg_quality_max:
            raise ValueError("jpeg_quality_min must be <= jpeg_quality_max")
        if self.h264_crf_min > self.h264_crf_max:
            raise ValueError("h264_crf_min must be <= h264_crf_max")
        if self.audio_snr_db_min > self.audio_snr_db_max:
            raise ValueError("audio_snr_db_min must be <= audio_snr_db_max")
        return self


class TrainConfig(_Strict):
    """Everything that decides what a training run learns and how fast.

    epochs, batch_size, lr and warmup_steps default to the preset's PRESET_DEFAULTS; the
    saved config.yaml holds the resolved values.
    """

    preset: Literal["demo", "default"] = Field(
        default="default", description="model preset: demo (small, CPU-friendly) or default"
    )
    model: dict[str, Any] = Field(
        default_factory=dict, description="ModelConfig fields overriding the preset"
    )
    contract: ContractConfig = Field(
        default=ContractConfig(), description="input contract overrides"
    )
    augment: AugmentConfig = Field(default=AugmentConfig(), description="augmentations")
    epochs: int = Field(default=20, ge=1, le=10_000, description="passes over the training set")
    batch_size: int = Field(default=32, ge=1, le=8192, description="windows per step (per process)")
    lr: float = Field(default=1e-3, gt=0.0, le=1.0, description="peak AdamW learning rate")
    weight_decay: float = Field(default=0.05, ge=0.0, le=1.0, description="AdamW weight decay")
    warmup_steps: int = Field(default=100, ge=0, le=1_000_000, description="linear warm-up steps")
    grad_clip: float = Field(default=5.0, ge=0.0, le=1e6, description="max gradient norm (0: off)")
    ema_decay: float = Field(
        default=0.0,
        ge=0.0,
        lt=1.0,
        description="validate and save an exponential moving average of the weights with "
        "this decay per step (0: off; train/ema.py)",
    )
    audio_loss_weight: float = Field(
        default=1.0, ge=0.0, le=100.0, description="audio head loss weight"
    )
    visual_loss_weight: float = Field(
        default=1.0, ge=0.0, le=100.0, description="visual head loss weight"
    )
    sync_loss_weight: float = Field(
        default=1.0,
        ge=0.0,
        le=100.0,
        description="weight of the self-supervised audio-mouth sync loss on real windows",
    )
    balance_classes: bool = Field(default=True, description="sample reals and fakes equally often")
    seed: int = Field(default=0, ge=0, le=2**31 - 1, description="seed of every random choice")
    workers: int = Field(
        default=2,
        ge=0,
        le=256,
        description="processes for caching, and for loading unless loader_workers is set",
    )
    loader_workers: int | None = Field(
        default=None,
        ge=0,
        le=256,
        description="processes that load and augment training draws; 0 loads them in the "
        "training process. None: 0 for the demo preset on a CPU (faster on 2 cores), "
        "else `workers`",
    )
    cache_dir: Path = Field(default=DEFAULT_CACHE_DIR, description="per-clip window cache")
    max_windows: int = Field(
        default=DEFAULT_MAX_WINDOWS,
        ge=1,
        le=1024,
        description="windows cached per clip, spread over the clip",
    )
    cache_audio_dtype: Literal["float16", "float32"] = Field(
        default="float16", description="storage type of cached audio windows"
    )
    max_train_clips: int | None = Field(
        default=None, ge=1, description="use at most this many clips"
    )
    max_val_clips: int | None = Field(
        default=None, ge=1, description="validate on at most this many"
    )
    val_windows: int | None = Field(
        default=None,
        ge=1,
        le=1024,
        description="score at most this many of each val clip's cached windows, evenly "
        "spread, in the per-epoch validation (None: all); `evaluate` always scores all",
    )
    amp: bool = Field(default=True, description="mixed precision (torch.autocast) on CUDA")
    device: Literal["auto", "cpu", "cuda"] = Field(default="auto", description="where to train")
    progress: bool = Field(default=True, description="show a tqdm progress bar")

    @model_validator(mode="before")
    @classmethod
    def _preset_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        preset = data.get("preset", "default")
        defaults = PRESET_DEFAULTS.get(preset, {})
        merged = {**defaults, **data}
        given = data.get("contract")
        if "contract" in defaults and isinstance(given, dict):  # field by field
            merged["contract"] = {**defaults["contract"], **given}
        return merged

    def build_contract(self) -> InputContract:
        return self.contract.build()

    def resolved_loader_workers(self, device_type: str) -> int:
        """Processes that load training draws when training on `device_type`.

        An explicit `loader_workers` wins. Otherwise the demo preset on a CPU loads in the
        training process: its step is short, and on 2 cores loader processes only compete
        with it (8 % slower epochs). Everywhere else `workers` processes load, so a GPU
        is not left waiting: on the H100 machine, cpu224.yaml loading in the training
        process spent over 80 % of each epoch waiting for draws (BENCHMARKS.md,
        Training throughput on the H100 GPU).
        """
        if self.loader_workers is not None:
            return self.loader_workers
        if self.preset == "demo" and device_type == "cpu":
            return 0
        return self.workers

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    def save_yaml(self, path: str | Path) -> None:
        Path(path).write_text(self.to_yaml())


def _format_error(exc: ValidationError, source: str) -> str:
    problems = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        problems.append(f"{key}: {err['msg']}")
    return f"{source}: invalid training config: " + "; ".join(problems)


def make_config(data: dict[str, Any] | None = None, source: str = "config") -> TrainConfig:
    """Validate a mapping into a TrainConfig, raising ConfigError that names bad keys."""
    try:
        return TrainConfig.model_validate(data or {})
    except ValidationError as exc:
        raise ConfigError(_format_error(exc, source)) from exc


def recipe_names() -> list[str]:
    """Names of the training recipes shipped in train/recipes/ (usable as `--config NAME`)."""
    return sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))


def resolve_recipe(name_or_path: str | Path) -> Path:
    """A config file path as given, or a shipped recipe's path by name (`cpu224native`)."""
    p = Path(name_or_path)
    if p.is_file() or p.suffix in (".yaml", ".yml") or len(p.parts) > 1:
        return p
    recipe = RECIPES_DIR / f"{p.name}.yaml"
    if recipe.is_file():
        return recipe
    raise ConfigError(
        f"no training config file {p} and no shipped recipe {p.name!r}; "
        f"recipes: {', '.join(recipe_names())}"
    )


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Read a YAML config (a path, or a shipped recipe's name) and apply command-line
    overrides (top-level keys)."""
    p = resolve_recipe(path)
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read training config {p}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: a training config must be a mapping, got {type(data).__name__}")
    data.update(overrides or {})
    return make_config(data, str(p))


def resume_differences(saved: TrainConfig, new: TrainConfig) -> list[str]:
    """Differences between a run's saved config and a resume request, harmless fields aside."""
    a, b = saved.model_dump(mode="json"), new.model_dump(mode="json")
    return sorted(
        f"{k}: {a[k]!r} -> {b[k]!r}" for k in a if k not in RESUME_MUTABLE_FIELDS and a[k] != b[k]
    )
