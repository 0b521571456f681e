"""The multimodal detector: raw audio window + K face crops -> three P(fake) logits.

    audio [B, S] float32 ──gain*──► LogMelFrontend ─► MelNorm ─┬─► SpecAugment* ─► audio CNN
                                                                │      ─► mean+max ─► audio head
                                                                │
                                                                └─► sync audio conv (10 ms
                                            frames) ─► averaged over a short span at each crop
                                            instant ─► a_k                             │
    faces [B, K, H, W, 3] uint8 ─hflip*─┬─► PixelNorm (+ high-pass residuals†) ─► visual CNN
                                        │   (each visual_stride-th crop) ─► per-crop
                                        │   ─► temporal conv + mean+max ─► visual head │
                                        └─► grey, per-crop normalised ─► mouth CNN     │
                                            (spatial map kept, flattened) ─► m_k ──────┤
                                   per crop: [a_k, m_k, a_k * m_k] ─► temporal conv ─► mean+max
                                                                         ─► sync embedding
    fusion "mlp": fusion head over [audio emb, visual emb, sync emb]
        + learned weights × (audio, visual, sync head logits) ─────────────────► fused_logit
    fusion "or": logsumexp(audio, visual, sync head logits) ────────────────► fused_logit

    (* training mode only, when ModelConfig.augment is on; † when visual_highpass is on)

The sync path compares what is heard at the instant of each crop (a few 10 ms frames
around it, not a whole slice of the window) with what the mouth does in that crop, so
the fused head can flag audio-visual desynchronisation even when each modality looks
real on its own. The mouth CNN keeps its small spatial map instead of pooling it away,
so it can attend to where the mouth is in a face crop; it sees grey, per-crop normalised
pixels, so lighting and colour changes do not read as mouth motion. The sync audio path
takes the mel image before SpecAugment: a masked frame would look like silence under
an open mouth. All shapes are static given the input contract (no adaptive pooling,
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
from monitor.windows import frame_times
from train.frontend import (
    DEFAULT_F_MAX,
    DEFAULT_F_MIN,
    DEFAULT_HOP,
    DEFAULT_N_FFT,
    DEFAULT_N_MELS,
    DEFAULT_TOP_DB,
    MEL_NORM_MODES,
    HighPassResidual,
    LogMelFrontend,
    MelNorm,
    PixelNorm,
    RandomGain,
    SpecAugment,
    grey_levels,
)

logger = logging.getLogger(__name__)

HEAD_SKIP_INIT = 0.5  # initial weight of each head's logit in the fused logit
VISUAL_STEMS = ("unshuffle", "pool")
FUSION_MODES = ("mlp", "or")
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # RGB, fraction of 255
IMAGENET_STD = (0.229, 0.224, 0.225)
# A resnet10t with a quarter of the usual widths: 0.3 M parameters, fast on a laptop CPU.
TINY_RESNET_KWARGS: dict[str, Any] = {"channels": [16, 32, 64, 128], "stem_width": 8}
# (top, bottom, left, right) of a crop holding the mouth: a crop is the face box plus 25 %
# on every side, so the mouth (box rows 0.65-0.92, columns 0.25-0.75) lands at crop rows
# 0.60-0.78 and columns 0.33-0.67; the band adds room for a detector box that is off by
# a tenth of the crop either way.
MOUTH_BOX = (0.42, 0.94, 0.18, 0.82)


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
    visual_downsample: int = 1  # crops enter the CNN this many times smaller (speed)
    visual_stride: int = 1  # the visual CNN sees every n-th crop of a window (the mouth
    # path always sees all K: lip sync needs the frame rate, face artefacts do not)
    visual_stem: str = "unshuffle"  # how: "unshuffle" (space-to-depth, keeps every pixel) or
    # "pool" (average-pool, drops the fine detail where blending and resampling traces live)
    visual_highpass: bool = False  # also feed fixed high-pass residuals of the grey crop
    # (train/frontend.py HighPassResidual): sensor noise and resampling traces, which a
    # generated or re-rendered face lacks or carries at another scale than the frame
    pixel_mean: tuple[float, float, float] = IMAGENET_MEAN  # RGB mean, fraction of 255
    pixel_std: tuple[float, float, float] = IMAGENET_STD  # RGB std, fraction of 255
    # --- embeddings and heads ---
    audio_dim: int = 256  # audio embedding size
    visual_dim: int = 256  # per-crop visual embedding size
    sync_dim: int = 128  # per-time-step size of the audio-visual sync path
    sync_audio_channels: int = 64  # channels of the sync path's 1-D conv over mel frames
    sync_span_ms: float = 120.0  # audio averaged over this span around each crop instant
    mouth_channels: int = 16  # width of the mouth CNN's first layer (doubles per layer)
    mouth_size: int = 56  # crops are average-pooled to about this size for the mouth CNN
    mouth_box: tuple[float, float, float, float] | None = None  # (top, bottom, left, right)
    # fractions of the crop the mouth CNN sees; None = the whole crop. A crop is the face
    # box plus a margin, so the mouth sits in a known band of it and the rest (hair,
    # eyes, background) only costs compute on the sync path
    fusion: str = "mlp"  # how the fused logit is made: "mlp" (a fusion MLP over the three
    # embeddings plus learned weights x the heads' logits) or "or" (logsumexp of the
    # audio, visual and sync heads' logits, a soft "any modality is fake", no MLP): a clip
    # is fake when its voice or its face or their timing is, and an MLP over embeddings
    # can also learn combinations that flag a real identity (BENCHMARKS.md, session 9)
    fusion_hidden: int = 256  # hidden units of the fusion MLP
    dropout: float = 0.2  # before every head, training only
    fusion_dropout: float | None = None  # on the fusion MLP's input embeddings (None: dropout);
    # higher keeps the MLP from keying on a few embedding dimensions (an appearance shortcut)
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
        if self.fusion not in FUSION_MODES:
            problems.append(f"fusion={self.fusion!r} not in {FUSION_MODES}")
        if self.visual_stem not in VISUAL_STEMS:
            problems.append(f"visual_stem={self.visual_stem!r} not in {VISUAL_STEMS}")
        if self.visual_downsample < 1:
            problems.append(f"visual_downsample={self.visual_downsample} must be >= 1")
        if self.visual_stride < 1:
            problems.append(f"visual_stride={self.visual_stride} must be >= 1")
        if not 10.0 <= self.sync_span_ms <= 1000.0:
            problems.append(f"sync_span_ms={self.sync_span_ms} outside 10..1000 ms")
        if self.mouth_size < 16:
            problems.append(f"mouth_size={self.mouth_size} must be >= 16")
        if self.mouth_box is not None:
            box = self.mouth_box
            if len(box) != 4 or not (
                0.0 <= box[0] < box[1] <= 1.0 and 0.0 <= box[2] < box[3] <= 1.0
            ):
                problems.append(
                    f"mouth_box={box} must be (top, bottom, left, right) with "
                    "0 <= top < bottom <= 1 and 0 <= left < right <= 1"
                )
        for name in (
            "audio_dim",
            "visual_dim",
            "sync_dim",
            "fusion_hidden",
            "sync_audio_channels",
            "mouth_channels",
        ):
            if getattr(self, name) < 1:
                problems.append(f"{name}={getattr(self, name)} must be >= 1")
        if not 0.0 <= self.dropout < 1.0:
            problems.append(f"dropout={self.dropout} outside [0, 1)")
        if self.fusion_dropout is not None and not 0.0 <= self.fusion_dropout < 1.0:
            problems.append(f"fusion_dropout={self.fusion_dropout} outside [0, 1)")
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
        """Product default for GPUs: ResNet-18 on both branches; the visual CNN sees every
        second crop (the default training preset gives it 8 per window) and the high-pass
        residuals beside RGB (30-epoch runs: test AUC 0.960 -> 0.969, face_swap 0.79 ->
        0.85; BENCHMARKS.md, session 4). Half the fusion MLP's inputs are dropped in
        training, which keeps it from flagging a real face on a few embedding dimensions
        (30-epoch runs, seed 0: val TPR@1e-3 0.63 -> 0.80 at the same AUC; not seen
        with seed 1; BENCHMARKS.md, session 5). The mouth CNN sees the lower middle of
        the crop only (MOUTH_BOX): a third of the pixels, and the sync family's val AUC
        was the best yet with it (desync_other 0.98; BENCHMARKS.md, session 6)."""
        return cls(visual_stride=2, visual_highpass=True, fusion_dropout=0.5, mouth_box=MOUTH_BOX)

    @classmethod
    def demo(cls) -> ModelConfig:
        """Tiny and fast on a CPU: trains on ~1,000 clips in minutes. Like the default,
        its visual CNN sees every second crop and its mouth CNN the mouth band alone, so
        8 crops per window cost what 4 whole crops did (BENCHMARKS.md, session 8)."""
        return cls(
            visual_stride=2,
            mouth_box=MOUTH_BOX,
            n_mels=64,
            audio_backbone="resnet10t",
            audio_backbone_kwargs=dict(TINY_RESNET_KWARGS),
            visual_backbone="resnet10t",
            visual_backbone_kwargs=dict(TINY_RESNET_KWARGS),
            visual_downsample=2,
            audio_dim=64,
            visual_dim=64,
            sync_dim=32,
            sync_audio_channels=32,
            mouth_channels=8,
            mouth_size=112,
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
        d["mouth_box"] = None if self.mouth_box is None else list(self.mouth_box)
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
        for key in ("pixel_mean", "pixel_std", "mouth_box"):
            if kwargs.get(key) is not None:
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


def instant_weights(
    n_frames: int, frame_seconds: float, times_s: tuple[float, ...], span_s: float
) -> torch.Tensor:
    """[n_frames, K] averaging matrix: column k averages the frames within span_s / 2 of
    times_s[k] (frame i is centred at i * frame_seconds), at least the nearest frame.

    A matmul rather than indexing: exact, static and trivially exportable.
    """
    t = torch.arange(n_frames, dtype=torch.float64) * frame_seconds
    w = torch.zeros(n_frames, len(times_s), dtype=torch.float64)
    for k, centre in enumerate(times_s):
        near = (t - centre).abs() <= span_s / 2 + 1e-9
        if not bool(near.any()):
            near = (t - centre).abs() == (t - centre).abs().min()
        w[near, k] = 1.0
    return (w / w.sum(dim=0, keepdim=True)).to(torch.float32)


class MouthNet(nn.Module):
    """Small CNN on grey, per-crop normalised crops; keeps the spatial map (flattened).

    Global pooling would wash out where in the face a change happens; a mouth opening is
    a change at one place, so the final 4x4-ish map is flattened and projected instead.
    """

    def __init__(
        self,
        crop_size: int,
        target_size: int,
        channels: int,
        out_dim: int,
        box: tuple[float, float, float, float] | None = None,
    ) -> None:
        super().__init__()
        top, bottom, left, right = box or (0.0, 1.0, 0.0, 1.0)
        self.rows = (round(top * crop_size), round(bottom * crop_size))
        self.cols = (round(left * crop_size), round(right * crop_size))
        self.factor = max(1, crop_size // target_size)
        height = (self.rows[1] - self.rows[0]) // self.factor
        width = (self.cols[1] - self.cols[0]) // self.factor
        if min(height, width) < 16:
            raise ConfigError(
                f"the mouth CNN would see {height}x{width} px (mouth_box={box} of a "
                f"{crop_size}-px crop, pooled by {self.factor}); it needs at least 16x16"
            )
        self.pool: nn.Module = nn.AvgPool2d(self.factor) if self.factor > 1 else nn.Identity()
        c = channels
        self.convs = nn.Sequential(
            nn.Conv2d(1, c, 3, stride=2, padding=1),
            nn.BatchNorm2d(c),
            nn.GELU(),
            nn.Conv2d(c, 2 * c, 3, stride=2, padding=1),
            nn.BatchNorm2d(2 * c),
            nn.GELU(),
            nn.Conv2d(2 * c, 4 * c, 3, stride=2, padding=1),
            nn.BatchNorm2d(4 * c),
            nn.GELU(),
            nn.Conv2d(4 * c, 4 * c, 3, stride=2, padding=1),
            nn.BatchNorm2d(4 * c),
            nn.GELU(),
        )
        with torch.no_grad():
            n_flat = int(self.convs.eval()(torch.zeros(1, 1, height, width)).numel())
            self.convs.train()
        self.proj = nn.Sequential(nn.Linear(n_flat, out_dim), nn.LayerNorm(out_dim))

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        """uint8 RGB crops [N, H, W, 3] -> [N, out_dim]."""
        crops = crops[:, self.rows[0] : self.rows[1], self.cols[0] : self.cols[1]]
        grey = grey_levels(crops) / 255.0
        grey = self.pool(grey)
        mean = grey.mean(dim=(1, 2, 3), keepdim=True)
        centred = grey - mean
        std = torch.sqrt((centred * centred).mean(dim=(1, 2, 3), keepdim=True) + 1e-6)
        features = self.convs(centred / std)
        return self.proj(features.flatten(1))


def mismatch_steps(m: torch.Tensor) -> torch.Tensor:
    """Mouth steps [B, K, D] paired wrongly with their audio: each window's own crops
    either rotated in time by 1..K-1 steps (a shifted mouth track) or played backwards
    (a mouth following other speech), chosen at random. Self-supervision for the sync
    path: any real clip gives in-sync pairs, and these are out of sync by construction.
    The crops stay the window's own, so the face and the voice still belong together and
    only their timing can tell the pairs apart (another window's face would let the
    path learn "this face does not go with this voice" instead)."""
    b, k = m.shape[0], m.shape[1]
    if k < 2:
        raise ValueError("a sync mismatch needs at least 2 crops per window")
    dev = m.device
    shift = torch.randint(1, k, (b,), device=dev)
    steps = torch.arange(k, device=dev)[None, :]
    rotated = (steps + shift[:, None]) % k  # [B, K]
    backwards = (k - 1 - steps).expand(b, k)
    use_backwards = torch.rand(b, 1, device=dev) < 0.5
    order = torch.where(use_backwards, backwards, rotated)
    return torch.gather(m, 1, order[:, :, None].expand(-1, -1, m.shape[2]))


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

    instants: torch.Tensor  # buffer [T, K]: mel frames -> short spans at crop instants

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
        if cfg.visual_stride > contract.k_crops:
            raise ConfigError(
                f"visual_stride={cfg.visual_stride} is more than the {contract.k_crops} "
                "crops of a window"
            )
        self.contract = contract
        self.config = cfg
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
        a_channels = self._probe_audio(cfg.n_mels, n_frames)
        crop_times = frame_times(0.0, contract)
        self.register_buffer(
            "instants",
            instant_weights(
                n_frames,
                cfg.hop_length / contract.sample_rate,
                crop_times,
                cfg.sync_span_ms / 1000.0,
            ),
            persistent=False,
        )
        self.audio_proj = nn.Sequential(
            nn.Linear(2 * a_channels, cfg.audio_dim), nn.LayerNorm(cfg.audio_dim)
        )
        # Visual path.
        self.pixel_norm = PixelNorm(cfg.pixel_mean, cfg.pixel_std)
        self.highpass: HighPassResidual | None = HighPassResidual() if cfg.visual_highpass else None
        d = cfg.visual_downsample
        self.downsample: nn.Module = nn.Identity()
        if d > 1:
            unshuffle = cfg.visual_stem == "unshuffle"
            self.downsample = nn.PixelUnshuffle(d) if unshuffle else nn.AvgPool2d(d)
        channels = 6 if cfg.visual_highpass else 3
        v_in = channels * d * d if d > 1 and cfg.visual_stem == "unshuffle" else channels
        self.visual_backbone = create_backbone(
            cfg.visual_backbone,
            v_in,
            cfg.visual_backbone_kwargs,
            cfg.visual_weights if load_weights else None,
        )
        v_channels = self._probe_visual(contract.crop_size // d, v_in)
        self.visual_proj = nn.Sequential(
            nn.Linear(v_channels, cfg.visual_dim), nn.LayerNorm(cfg.visual_dim)
        )
        self.visual_temporal = TemporalBlock(cfg.visual_dim)
        # Cross-modal sync path.
        sc = cfg.sync_audio_channels
        self.sync_audio = nn.Sequential(
            nn.Conv1d(cfg.n_mels, sc, kernel_size=5, padding=2),
            nn.GELU(),
            nn.Conv1d(sc, sc, kernel_size=5, padding=4, dilation=2),
            nn.GELU(),
        )
        self.sync_audio_proj = nn.Sequential(
            nn.Linear(sc, cfg.sync_dim), nn.LayerNorm(cfg.sync_dim)
        )
        self.sync_visual = MouthNet(
            contract.crop_size, cfg.mouth_size, cfg.mouth_channels, cfg.sync_dim, cfg.mouth_box
        )
        self.sync_net = nn.Sequential(
            nn.Conv1d(3 * cfg.sync_dim, cfg.sync_dim, kernel_size=3, padding=1),
            nn.GELU(),
            nn.Conv1d(cfg.sync_dim, cfg.sync_dim, kernel_size=3, padding=1),
            nn.GELU(),
        )
        # Heads.
        self.dropout = nn.Dropout(cfg.dropout)
        fusion_p = cfg.dropout if cfg.fusion_dropout is None else cfg.fusion_dropout
        self.fusion_dropout = nn.Dropout(fusion_p)
        self.audio_head = nn.Linear(cfg.audio_dim, 1)
        self.visual_head = nn.Linear(2 * cfg.visual_dim, 1)
        self.sync_head = nn.Linear(2 * cfg.sync_dim, 1)  # P(out of sync), self-supervised
        self.head_weights: nn.Parameter | None = None
        self.fusion_head: nn.Module | None = None
        if cfg.fusion == "mlp":
            self.head_weights = nn.Parameter(torch.full((3,), HEAD_SKIP_INIT))  # a, v, sync
            fused_in = cfg.audio_dim + 2 * cfg.visual_dim + 2 * cfg.sync_dim
            self.fusion_head = nn.Sequential(
                nn.Linear(fused_in, cfg.fusion_hidden),
                nn.GELU(),
                nn.Dropout(cfg.dropout),
                nn.Linear(cfg.fusion_hidden, 1),
            )

    def _probe_audio(self, n_mels: int, n_frames: int) -> int:
        """Channels of the audio feature map, from one dummy forward."""
        with torch.no_grad():
            was = self.audio_backbone.training
            fmap = self.audio_backbone.eval()(torch.zeros(1, 1, n_mels, n_frames))
            self.audio_backbone.train(was)
        if fmap.ndim != 4:
            raise ConfigError(
                f"audio backbone {self.config.audio_backbone!r} gives features of shape "
                f"{tuple(fmap.shape)}; a CNN with NCHW feature maps is required"
            )
        return int(fmap.shape[1])

    def _probe_visual(self, size: int, in_chans: int) -> int:
        with torch.no_grad():
            was = self.visual_backbone.training
            fmap = self.visual_backbone.eval()(torch.zeros(1, in_chans, size, size))
            self.visual_backbone.train(was)
        if fmap.ndim != 4:
            raise ConfigError(
                f"visual backbone {self.config.visual_backbone!r} gives features of shape "
                f"{tuple(fmap.shape)}; a CNN with NCHW feature maps is required"
            )
        return int(fmap.shape[1])

    def audio_features(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(audio embedding [B, audio_dim], audio at each crop instant [B, K, sync_dim])."""
        mel = self.mel_norm(self.frontend(self.gain(audio)))  # [B, M, T]
        fmap = self.audio_backbone(self.spec_augment(mel).unsqueeze(1))  # [B, C, F', T']
        embedding = self.audio_proj(mean_max(fmap.mean(dim=2), dim=2))
        frames = self.sync_audio(mel)  # [B, sc, T]
        at_crops = torch.matmul(frames, self.instants).transpose(1, 2)  # [B, K, sc]
        return embedding, self.sync_audio_proj(at_crops)

    def _flip(self, faces: torch.Tensor) -> torch.Tensor:
        if self.training and self.config.augment and self.config.hflip:
            flip = torch.rand(faces.shape[0], 1, 1, 1, 1, device=faces.device) < 0.5
            faces = torch.where(flip, faces.flip(3), faces)
        return faces

    def visual_features(self, faces: torch.Tensor) -> torch.Tensor:
        """Per-crop visual embeddings [B, k, visual_dim] of every visual_stride-th crop
        (k = ceil(K / visual_stride)); faces already flipped, if at all."""
        stride, size = self.config.visual_stride, self.contract.crop_size
        if stride > 1:
            faces = faces[:, ::stride]
        k = faces.shape[1]
        flat = faces.reshape(-1, size, size, 3)
        x = self.pixel_norm(flat)
        if self.highpass is not None:
            residual = self.highpass(flat)
            if self.config.visual_stem == "pool" and self.config.visual_downsample > 1:
                residual = residual.abs()  # pooled: the local noise level, not its sign
            x = torch.cat([x, residual], dim=1)
        crops = self.downsample(x)
        fmap = self.visual_backbone(crops)  # [B*k, C, h, w]
        per_crop = self.visual_proj(fmap.mean(dim=(2, 3)))
        return per_crop.reshape(-1, k, self.config.visual_dim)

    def mouth_features(self, faces: torch.Tensor) -> torch.Tensor:
        """Per-crop mouth embeddings [B, K, sync_dim]."""
        k, size = self.contract.k_crops, self.contract.crop_size
        per_crop = self.sync_visual(faces.reshape(-1, size, size, 3))
        return per_crop.reshape(-1, k, self.config.sync_dim)

    def sync_embedding(self, a: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        """[B, K, sync_dim] audio and mouth steps -> sync embedding [B, 2 * sync_dim]."""
        steps = torch.cat([a, m, a * m], dim=-1).transpose(1, 2)  # [B, 3*sync_dim, K]
        return mean_max(self.sync_net(steps), dim=2)

    def forward(
        self, audio: torch.Tensor, faces: torch.Tensor, sync_pairs: bool = False
    ) -> tuple[torch.Tensor, ...]:
        """(fused, audio, visual) logits [B]; with sync_pairs (training), also the sync
        head's logits for the true pairing and for a mismatched one (see mismatch_steps)."""
        faces = self._flip(faces)
        audio_emb, a = self.audio_features(audio)
        crops = self.visual_features(faces)
        visual_emb = mean_max(self.visual_temporal(crops), dim=1)
        m = self.mouth_features(faces)
        sync_emb = self.sync_embedding(a, m)
        audio_logit = self.audio_head(self.dropout(audio_emb)).squeeze(1)
        visual_logit = self.visual_head(self.dropout(visual_emb)).squeeze(1)
        sync_logit = self.sync_head(sync_emb).squeeze(1)
        heads = torch.stack([audio_logit, visual_logit, sync_logit], dim=1)  # [B, 3]
        if self.fusion_head is None or self.head_weights is None:
            # Soft OR: high as soon as any head is; the fused loss reaches every head
            # through its softmax share, so the heads also learn from fused-only labels.
            fused_logit = torch.logsumexp(heads, dim=1)
        else:
            # Late fusion as a skip: the fused logit starts as a weighted sum of the
            # heads' logits, so each cue counts as soon as its head has learnt it; the
            # MLP learns the interactions on top.
            fused_in = torch.cat([audio_emb, visual_emb, sync_emb], dim=1)
            fused_logit = self.fusion_head(self.fusion_dropout(fused_in)).squeeze(1)
            fused_logit = fused_logit + (heads * self.head_weights).sum(dim=1)
        if not sync_pairs:
            return fused_logit, audio_logit, visual_logit
        in_sync = sync_logit
        out_of_sync = self.sync_head(self.sync_embedding(a, mismatch_steps(m))).squeeze(1)
        return fused_logit, audio_logit, visual_logit, in_sync, out_of_sync

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
