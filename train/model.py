"""The multimodal detector: raw audio window + K face crops -> three P(fake) logits.

    audio [B, S] float32 ──gain*──► LogMelFrontend ─► MelNorm ─► SpecAugment* ─► audio CNN
                                                                         feature map [B, C, F', T']
        ├─ mean+max pool ─► audio embedding ─────────────────────────► audio head ─► audio_logit
        └─ freq-mean, pooled into K time segments (segment k centred on crop k's time)
                                        │
    faces [B, K, H, W, 3] uint8 ─hflip*─► PixelNorm ─► visual CNN (B*K crops) ─► per-crop [B, K, Dv]
        ├─ temporal conv + mean+max over K ─► visual embedding ───────► visual head ─► visual_logit
        └─ per time step: [a_k, v_k, a_k * v_k] ─► temporal conv ─► mean+max ─► sync embedding
                                                                                 │
    fusion head over [audio emb, visual emb, sync emb] ─────────────────────────► fused_logit

    (* training mode only, when ModelConfig.augment is on)

The sync path compares what is heard with what the mouth does at the same instants, so
the fused head can flag audio-visual desynchronisation even when each modality looks
real on its own. All shapes are static given the input contract (no adaptive pooling,
no data-dependent shapes, no complex ops), so the model exports to ONNX and TensorRT.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from monitor.contract import InputContract
from monitor.errors import ConfigError, ModelFormatError
from train.frontend import (
    DEFAULT_F_MAX,
    DEFAULT_F_MIN,
    DEFAULT_HOP,
    DEFAULT_N_FFT,
    DEFAULT_N_MELS,
    DEFAULT_TOP_DB,
    MEL_NORM_MODES,
    LogMelFrontend,
    MelNorm,
    PixelNorm,
    RandomGain,
    SpecAugment,
)

logger = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # RGB, fraction of 255
IMAGENET_STD = (0.229, 0.224, 0.225)
# A resnet10t with a quarter of the usual widths: 0.3 M parameters, fast on a laptop CPU.
TINY_RESNET_KWARGS: dict[str, Any] = {"channels": [16, 32, 64, 128], "stem_width": 8}


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of the detector; saved in every checkpoint to rebuild the model."""

    # --- audio front end (see train/frontend.py) ---
    n_fft: int = DEFAULT_N_FFT  # samples per STFT frame (512 = 32 ms at 16 kHz)
    hop_length: int = DEFAULT_HOP  # samples between frames (160 = 10 ms)
    n_mels: int = DEFAULT_N_MELS  # mel bands
    f_min: float = DEFAULT_F_MIN  # Hz, lowest mel edge
    f_max: float = DEFAULT_F_MAX  # Hz, highest mel edge (<= sample_rate / 2)
    top_db: float | None = DEFAULT_TOP_DB  # dB kept below each window's peak; None = no floor
    mel_norm: str = "utterance"  # "utterance" (per-window mean/std), "fixed" or "none"
    # --- backbones (timm, always built with pretrained=False) ---
    audio_backbone: str = "resnet18"  # timm CNN on the 1-channel log-mel image
    audio_backbone_kwargs: dict[str, Any] = field(default_factory=dict)  # extra create_model args
    audio_weights: str | None = None  # local state_dict file for the audio CNN; never downloaded
    visual_backbone: str = "resnet18"  # timm CNN run on each face crop
    visual_backbone_kwargs: dict[str, Any] = field(default_factory=dict)
    visual_weights: str | None = None  # local state_dict file for the visual CNN
    visual_downsample: int = 1  # average-pool crops by this factor before the CNN (speed)
    pixel_mean: tuple[float, float, float] = IMAGENET_MEAN  # RGB mean, fraction of 255
    pixel_std: tuple[float, float, float] = IMAGENET_STD  # RGB std, fraction of 255
    # --- embeddings and heads ---
    audio_dim: int = 256  # audio embedding size
    visual_dim: int = 256  # per-crop visual embedding size
    sync_dim: int = 128  # per-time-step size of the audio-visual sync path
    fusion_hidden: int = 256  # hidden units of the fusion MLP
    dropout: float = 0.2  # before every head, training only
    # --- augmentation, applied inside forward() in training mode only ---
    augment: bool = True  # master switch; eval/export never augment
    gain_db: float = 6.0  # random waveform gain in [-gain_db, +gain_db] dB
    freq_masks: int = 2  # SpecAugment frequency masks per window
    freq_mask_bins: int = 16  # max mel bins per frequency mask
    time_masks: int = 2  # SpecAugment time masks per window
    time_mask_frames: int = 20  # max STFT frames (hop_length apart, 10 ms) per time mask
    hflip: bool = True  # mirror all K crops of a window with probability 1/2

    def __post_init__(self) -> None:
        problems = []
        if self.mel_norm not in MEL_NORM_MODES:
            problems.append(f"mel_norm={self.mel_norm!r} not in {MEL_NORM_MODES}")
        if self.n_fft < 16 or self.hop_length < 1 or self.hop_length > self.n_fft:
            problems.append(
                f"need 16 <= n_fft and 1 <= hop_length <= n_fft, got "
                f"n_fft={self.n_fft} hop_length={self.hop_length}"
            )
        if not 8 <= self.n_mels <= 512:
            problems.append(f"n_mels={self.n_mels} outside 8..512")
        if not 0.0 <= self.f_min < self.f_max:
            problems.append(f"need 0 <= f_min < f_max, got {self.f_min}, {self.f_max}")
        if self.top_db is not None and self.top_db <= 0:
            problems.append(f"top_db={self.top_db} must be > 0 or None")
        if self.visual_downsample < 1:
            problems.append(f"visual_downsample={self.visual_downsample} must be >= 1")
        for name in ("audio_dim", "visual_dim", "sync_dim", "fusion_hidden"):
            if getattr(self, name) < 1:
                problems.append(f"{name}={getattr(self, name)} must be >= 1")
        if not 0.0 <= self.dropout < 1.0:
            problems.append(f"dropout={self.dropout} outside [0, 1)")
        if len(self.pixel_mean) != 3 or len(self.pixel_std) != 3 or min(self.pixel_std) <= 0:
            problems.append("pixel_mean and pixel_std need 3 values, std > 0")
        if min(self.freq_masks, self.freq_mask_bins, self.time_masks, self.time_mask_frames) < 0:
            problems.append("mask counts and widths must be >= 0")
        if self.gain_db < 0:
            problems.append(f"gain_db={self.gain_db} must be >= 0")
        if problems:
            raise ConfigError("invalid model config: " + "; ".join(problems))

    @classmethod
    def default(cls) -> ModelConfig:
        """Product default for GPUs: ResNet-18 on both branches."""
        return cls()

    @classmethod
    def demo(cls) -> ModelConfig:
        """Tiny and fast on a CPU: trains on ~1,000 clips in minutes."""
        return cls(
            n_mels=64,
            audio_backbone="resnet10t",
            audio_backbone_kwargs=dict(TINY_RESNET_KWARGS),
            visual_backbone="resnet10t",
            visual_backbone_kwargs=dict(TINY_RESNET_KWARGS),
            visual_downsample=2,
            audio_dim=64,
            visual_dim=64,
            sync_dim=32,
            fusion_hidden=64,
            dropout=0.1,
            freq_mask_bins=8,
        )

    def replace(self, **changes: Any) -> ModelConfig:
        data = self.to_dict()
        data.update(changes)
        return ModelConfig.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        """Plain python types only (safe for torch.load(weights_only=True) and JSON)."""
        d = asdict(self)
        d["pixel_mean"] = list(self.pixel_mean)
        d["pixel_std"] = list(self.pixel_std)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Rebuild a config, refusing keys this version does not know."""
        if not isinstance(data, dict):
            raise ConfigError(f"model config must be a mapping, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"model config has keys this version does not know: {unknown} "
                f"(known: {sorted(known)})"
            )
        kwargs = dict(data)
        for key in ("pixel_mean", "pixel_std"):
            if key in kwargs:
                kwargs[key] = tuple(float(v) for v in kwargs[key])
        for key in ("audio_backbone_kwargs", "visual_backbone_kwargs"):
            if key in kwargs:
                kwargs[key] = dict(kwargs[key] or {})
        try:
            return cls(**kwargs)
        except (TypeError, ValueError) as exc:  # a value of the wrong type
            raise ConfigError(f"invalid model config: {exc}") from exc


def _timm_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    # Config stores lists (plain types); timm expects tuples for shape-like arguments.
    return {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}


class FeatureBackbone(nn.Module):
    """A timm CNN whose forward returns its last NCHW feature map (no pooling, no head)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features: torch.Tensor = cast(Any, self.net).forward_features(x)
        return features


def create_backbone(
    name: str, in_chans: int, kwargs: dict[str, Any], weights: str | None
) -> FeatureBackbone:
    """A timm CNN without classifier, never downloading anything."""
    import timm

    try:
        model = timm.create_model(
            name, pretrained=False, num_classes=0, in_chans=in_chans, **_timm_kwargs(kwargs)
        )
    except (RuntimeError, TypeError, ValueError) as exc:
        raise ConfigError(f"cannot build timm backbone {name!r} with {kwargs}: {exc}") from exc
    if weights is not None:
        load_backbone_weights(model, weights, in_chans)
    return FeatureBackbone(model)


def load_backbone_weights(model: nn.Module, path: str, in_chans: int) -> None:
    """Load a local timm/torchvision state_dict, adapting the first conv to in_chans."""
    from timm.models import adapt_input_conv

    if not Path(path).is_file():
        raise ConfigError(f"backbone weights file {path} does not exist (nothing is downloaded)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        raise ModelFormatError(f"{path}: not a torch state_dict ({exc})") from exc
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ModelFormatError(f"{path}: expected a state_dict mapping")
    own = model.state_dict()
    usable = {}
    for key, value in state.items():
        if key not in own or not isinstance(value, torch.Tensor):
            continue
        if value.ndim == 4 and own[key].ndim == 4 and value.shape[1] != own[key].shape[1]:
            value = adapt_input_conv(in_chans, value)  # e.g. RGB stem -> 1-channel mel
        if value.shape == own[key].shape:
            usable[key] = value
    missing = sorted(set(own) - set(usable))
    model.load_state_dict(usable, strict=False)
    logger.info("loaded %d tensors from %s (%d left at init)", len(usable), path, len(missing))
    if len(usable) < len(own) // 2:
        raise ModelFormatError(
            f"{path}: only {len(usable)} of {len(own)} tensors match the backbone; "
            "is it the weights of a different architecture?"
        )


def segment_weights(n_steps: int, n_segments: int) -> torch.Tensor:
    """[n_steps, n_segments] averaging matrix: column k = overlap of each step with slice k.

    Steps and slices both tile the window evenly, so column k averages the audio
    features over slice k of the window, whose centre is crop k's time (see
    monitor/windows.frame_times). A matmul rather than adaptive pooling: exact for any
    ratio and trivially exportable.
    """
    w = torch.zeros(n_steps, n_segments, dtype=torch.float64)
    for i in range(n_steps):
        a0, a1 = i / n_steps, (i + 1) / n_steps
        for k in range(n_segments):
            b0, b1 = k / n_segments, (k + 1) / n_segments
            w[i, k] = max(0.0, min(a1, b1) - max(a0, b0))
    return (w / w.sum(dim=0, keepdim=True)).to(torch.float32)


class TemporalBlock(nn.Module):
    """Residual 1-D conv over the K time steps of [B, K, D]."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.conv = nn.Conv1d(dim, dim, kernel_size=3, padding=1)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(self.norm(x).transpose(1, 2)).transpose(1, 2)
        return x + self.act(y)


def mean_max(x: torch.Tensor, dim: int) -> torch.Tensor:
    return torch.cat([x.mean(dim=dim), x.amax(dim=dim)], dim=-1)


class Detector(nn.Module):
    """audio float32 [B, S], faces uint8 [B, K, H, W, 3] -> (fused, audio, visual) logits [B]."""

    segments: torch.Tensor  # buffer [T', K]: audio feature steps -> crop-time segments

    def __init__(
        self, contract: InputContract, cfg: ModelConfig, load_weights: bool = True
    ) -> None:
        super().__init__()
        if cfg.f_max > contract.sample_rate / 2:
            raise ConfigError(
                f"f_max={cfg.f_max} Hz is above Nyquist for sample_rate={contract.sample_rate}"
            )
        if contract.window_samples <= cfg.n_fft // 2:
            raise ConfigError(
                f"window of {contract.window_samples} samples is too short for n_fft={cfg.n_fft}"
            )
        if contract.crop_size % cfg.visual_downsample:
            raise ConfigError(
                f"crop_size={contract.crop_size} is not divisible by "
                f"visual_downsample={cfg.visual_downsample}"
            )
        self.contract = contract
        self.config = cfg
        k = contract.k_crops
        # Audio path.
        self.gain = RandomGain(cfg.gain_db if cfg.augment else 0.0)
        self.frontend = LogMelFrontend(
            sample_rate=contract.sample_rate,
            n_fft=cfg.n_fft,
            hop_length=cfg.hop_length,
            n_mels=cfg.n_mels,
            f_min=cfg.f_min,
            f_max=cfg.f_max,
            top_db=cfg.top_db,
        )
        self.mel_norm = MelNorm(cfg.mel_norm)
        on = cfg.augment
        self.spec_augment = SpecAugment(
            cfg.freq_masks if on else 0,
            cfg.freq_mask_bins,
            cfg.time_masks if on else 0,
            cfg.time_mask_frames,
        )
        self.audio_backbone = create_backbone(
            cfg.audio_backbone,
            1,
            cfg.audio_backbone_kwargs,
            cfg.audio_weights if load_weights else None,
        )
        n_frames = self.frontend.num_frames(contract.window_samples)
        a_channels, a_steps = self._probe_audio(cfg.n_mels, n_frames)
        self.register_buffer("segments", segment_weights(a_steps, k), persistent=False)
        self.audio_proj = nn.Sequential(
            nn.Linear(2 * a_channels, cfg.audio_dim), nn.LayerNorm(cfg.audio_dim)
        )
        # Visual path.
        self.pixel_norm = PixelNorm(cfg.pixel_mean, cfg.pixel_std)
        self.downsample: nn.Module = (
            nn.AvgPool2d(cfg.visual_downsample) if cfg.visual_downsample > 1 else nn.Identity()
        )
        self.visual_backbone = create_backbone(
            cfg.visual_backbone,
            3,
            cfg.visual_backbone_kwargs,
            cfg.visual_weights if load_weights else None,
        )
        v_channels = self._probe_visual(contract.crop_size // cfg.visual_downsample)
        self.visual_proj = nn.Sequential(
            nn.Linear(v_channels, cfg.visual_dim), nn.LayerNorm(cfg.visual_dim)
        )
        self.visual_temporal = TemporalBlock(cfg.visual_dim)
        # Cross-modal sync path.
        self.sync_audio = nn.Sequential(
            nn.Linear(a_channels, cfg.sync_dim), nn.LayerNorm(cfg.sync_dim)
        )
        self.sync_visual = nn.Sequential(
            nn.Linear(cfg.visual_dim, cfg.sync_dim), nn.LayerNorm(cfg.sync_dim)
        )
        self.sync_net = nn.Sequential(
            nn.Conv1d(3 * cfg.sync_dim, cfg.sync_dim, kernel_size=3, padding=1),
            nn.GELU(),
            nn.Conv1d(cfg.sync_dim, cfg.sync_dim, kernel_size=3, padding=1),
            nn.GELU(),
        )
        # Heads.
        self.dropout = nn.Dropout(cfg.dropout)
        self.audio_head = nn.Linear(cfg.audio_dim, 1)
        self.visual_head = nn.Linear(2 * cfg.visual_dim, 1)
        fused_in = cfg.audio_dim + 2 * cfg.visual_dim + 2 * cfg.sync_dim
        self.fusion_head = nn.Sequential(
            nn.Linear(fused_in, cfg.fusion_hidden),
            nn.GELU(),
            nn.Dropout(cfg.dropout),
            nn.Linear(cfg.fusion_hidden, 1),
        )

    def _probe_audio(self, n_mels: int, n_frames: int) -> tuple[int, int]:
        """Channels and time steps of the audio feature map, from one dummy forward."""
        with torch.no_grad():
            was = self.audio_backbone.training
            fmap = self.audio_backbone.eval()(torch.zeros(1, 1, n_mels, n_frames))
            self.audio_backbone.train(was)
        if fmap.ndim != 4:
            raise ConfigError(
                f"audio backbone {self.config.audio_backbone!r} gives features of shape "
                f"{tuple(fmap.shape)}; a CNN with NCHW feature maps is required"
            )
        return int(fmap.shape[1]), int(fmap.shape[3])

    def _probe_visual(self, size: int) -> int:
        with torch.no_grad():
            was = self.visual_backbone.training
            fmap = self.visual_backbone.eval()(torch.zeros(1, 3, size, size))
            self.visual_backbone.train(was)
        if fmap.ndim != 4:
            raise ConfigError(
                f"visual backbone {self.config.visual_backbone!r} gives features of shape "
                f"{tuple(fmap.shape)}; a CNN with NCHW feature maps is required"
            )
        return int(fmap.shape[1])

    def audio_features(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(audio embedding [B, audio_dim], per-crop-time audio features [B, K, C])."""
        image = self.spec_augment(self.mel_norm(self.frontend(self.gain(audio))))
        fmap = self.audio_backbone(image.unsqueeze(1))  # [B, C, F', T']
        over_time = fmap.mean(dim=2)  # [B, C, T']
        embedding = self.audio_proj(mean_max(over_time, dim=2))
        per_crop = torch.matmul(over_time, self.segments).transpose(1, 2)  # [B, K, C]
        return embedding, per_crop

    def visual_features(self, faces: torch.Tensor) -> torch.Tensor:
        """Per-crop visual embeddings [B, K, visual_dim]."""
        k, size = self.contract.k_crops, self.contract.crop_size
        if self.training and self.config.augment and self.config.hflip:
            flip = torch.rand(faces.shape[0], 1, 1, 1, 1, device=faces.device) < 0.5
            faces = torch.where(flip, faces.flip(3), faces)
        crops = self.downsample(self.pixel_norm(faces.reshape(-1, size, size, 3)))
        fmap = self.visual_backbone(crops)  # [B*K, C, h, w]
        per_crop = self.visual_proj(fmap.mean(dim=(2, 3)))
        return per_crop.reshape(-1, k, self.config.visual_dim)

    def forward(
        self, audio: torch.Tensor, faces: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        audio_emb, audio_steps = self.audio_features(audio)
        crops = self.visual_features(faces)
        visual_emb = mean_max(self.visual_temporal(crops), dim=1)
        a = self.sync_audio(audio_steps)
        v = self.sync_visual(crops)
        steps = torch.cat([a, v, a * v], dim=-1).transpose(1, 2)  # [B, 3*sync_dim, K]
        sync_emb = mean_max(self.sync_net(steps), dim=2)
        audio_logit = self.audio_head(self.dropout(audio_emb)).squeeze(1)
        visual_logit = self.visual_head(self.dropout(visual_emb)).squeeze(1)
        fused_in = torch.cat([audio_emb, visual_emb, sync_emb], dim=1)
        fused_logit = self.fusion_head(self.dropout(fused_in)).squeeze(1)
        return fused_logit, audio_logit, visual_logit

    def export_module(self) -> ProbabilityModel:
        """Same inputs -> sigmoid probabilities, named as in the contract. Shares weights;
        call .eval() on it before exporting."""
        return ProbabilityModel(self)


class ProbabilityModel(nn.Module):
    """Detector wrapper for export: (audio, faces) -> (p_fused, p_audio, p_visual) in [0, 1]."""

    def __init__(self, detector: Detector) -> None:
        super().__init__()
        self.detector = detector
        self.contract = detector.contract
        self.input_names: tuple[str, str] = (
            detector.contract.audio_input,
            detector.contract.faces_input,
        )
        self.output_names: tuple[str, ...] = detector.contract.output_names

    def forward(
        self, audio: torch.Tensor, faces: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        fused, a, v = self.detector(audio, faces)
        return torch.sigmoid(fused), torch.sigmoid(a), torch.sigmoid(v)

    def example_inputs(self, batch: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
        """Zero-valued inputs of the contract's shapes, e.g. for tracing."""
        c = self.contract
        return (
            torch.zeros(batch, c.window_samples, dtype=torch.float32),
            torch.zeros(batch, *c.faces_shape, dtype=torch.uint8),
        )


def build_model(
    contract: InputContract, cfg: ModelConfig | None = None, load_weights: bool = True
) -> Detector:
    """Build a detector for `contract`. load_weights=False skips cfg's local backbone
    weight files (a checkpoint restores every weight anyway)."""
    return Detector(contract, cfg or ModelConfig.default(), load_weights=load_weights)
