"""The detector's architecture as data: `ModelConfig`, its presets and their constants.

Saved in every checkpoint (`ModelConfig.to_dict`) so a checkpoint rebuilds its own model;
the layers it describes are in `train.model.blocks` and `train.model.detector`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from monitor.errors import ConfigError
from train.model.frontend import (
    DEFAULT_F_MAX,
    DEFAULT_F_MIN,
    DEFAULT_HOP,
    DEFAULT_N_FFT,
    DEFAULT_N_MELS,
    DEFAULT_TOP_DB,
    MEL_NORM_MODES,
)

VISUAL_STEMS = ("unshuffle", "pool")
AUDIO_INPUTS = ("mel", "raw")
FUSION_MODES = ("mlp", "or")
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # RGB, fraction of 255
IMAGENET_STD = (0.229, 0.224, 0.225)
# A resnet10t with a quarter of the usual widths: 0.3 M parameters, fast on a laptop CPU.
TINY_RESNET_KWARGS: dict[str, Any] = {"channels": [16, 32, 64, 128], "stem_width": 8}
# (top, bottom, left, right) of a crop holding the mouth. The CNN cropper turns each face
# upright and puts its landmarks at canonical places (monitor/media/landmarks.py
# TEMPLATE): the mouth corners at row 0.65 and columns 0.40-0.60 of a crop with 25 %
# margin, at row 0.725 and columns 0.35-0.65 when a big face's margin is cut
# (max_crop_downscale). The band is centred there, with room for an open jaw and for
# landmarks off by a twentieth of the crop; it is half the crop high and wide because the
# mouth CNN needs 16 x 16 px of the smallest (32-px) crops. Models trained with the Haar
# cropper keep the band they were saved with (mouth there at rows 0.60-0.78, columns
# 0.33-0.67: inside this band too).
MOUTH_BOX = (0.45, 0.95, 0.25, 0.75)


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of the detector; saved in every checkpoint to rebuild the model."""

    # --- audio front end (see train/model/frontend.py) ---
    n_fft: int = DEFAULT_N_FFT  # samples per STFT frame (512 = 32 ms at 16 kHz)
    hop_length: int = DEFAULT_HOP  # samples between frames (160 = 10 ms)
    n_mels: int = DEFAULT_N_MELS  # mel bands
    f_min: float = DEFAULT_F_MIN  # Hz, lowest mel edge
    f_max: float = DEFAULT_F_MAX  # Hz, highest mel edge (<= sample_rate / 2)
    top_db: float | None = DEFAULT_TOP_DB  # dB kept below each window's peak; None = no floor
    mel_norm: str = "utterance"  # "utterance" (per-window mean/std), "fixed" or "none"
    audio_phase: bool = False  # also feed each mel band's phase advance between frames (its
    # deviation from the band's own frequency, as cos and sin): two more channels of the
    # audio image, the phase a magnitude spectrogram drops (LogMelFrontend.mel_and_phase)
    audio_input: str = "mel"  # what the voice head's CNN sees: "mel" (the log-mel image, a
    # timm CNN) or "raw" (the samples themselves: a learnt sinc filterbank and gated
    # residual 1-D convs, train/model/raw.py). The sync path always uses the log-mel frames
    raw_filters: int = 20  # "raw": band-pass filters of the sinc filterbank
    raw_kernel: int = 129  # "raw": taps per filter (odd; 129 = 8 ms at 16 kHz)
    raw_channels: tuple[int, ...] = (32, 64, 128, 128)  # "raw": residual blocks' widths
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
    # (train/model/frontend.py HighPassResidual): sensor noise and resampling traces, which a
    # generated or re-rendered face lacks or carries at another scale than the frame
    pixel_mean: tuple[float, float, float] = IMAGENET_MEAN  # RGB mean, fraction of 255
    pixel_std: tuple[float, float, float] = IMAGENET_STD  # RGB std, fraction of 255
    # --- embeddings and heads ---
    audio_dim: int = 256  # audio embedding size
    visual_dim: int = 256  # per-crop visual embedding size
    sync_dim: int = 128  # per-time-step size of the audio-visual sync path
    sync_audio_channels: int = 64  # channels of the sync path's 1-D conv over mel frames
    sync_span_ms: float = 120.0  # audio averaged over this span around each crop instant
    sync_offsets_ms: tuple[float, ...] = (0.0,)  # the sync head pairs each crop with the
    # audio this much later (ms, negative: earlier) and keeps the offset most in step; a
    # call's voice a few frames late is not a desync fake (those are 300 ms or more out)
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
    # can also learn combinations that flag a real identity (docs/experiments.md)
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
        if self.audio_input not in AUDIO_INPUTS:
            problems.append(f"audio_input={self.audio_input!r} not in {AUDIO_INPUTS}")
        if self.audio_input == "raw" and self.audio_phase:
            problems.append("audio_phase needs audio_input='mel' (phase is a spectrogram channel)")
        if self.audio_input == "raw" and self.audio_weights is not None:
            problems.append("audio_weights are for the mel CNN; audio_input='raw' has none")
        if self.raw_filters < 1 or self.raw_kernel < 3 or self.raw_kernel % 2 == 0:
            problems.append(
                f"need raw_filters >= 1 and an odd raw_kernel >= 3, got "
                f"{self.raw_filters}, {self.raw_kernel}"
            )
        if not self.raw_channels or min(self.raw_channels) < 1:
            problems.append(f"raw_channels={self.raw_channels} needs one or more widths >= 1")
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
        offsets = self.sync_offsets_ms
        if not offsets or len(set(offsets)) != len(offsets) or max(map(abs, offsets)) > 250:
            problems.append(
                f"sync_offsets_ms={offsets} needs one or more distinct offsets within ±250 ms"
            )
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
        0.85; docs/experiments.md, 2026-11-23). Half the fusion MLP's inputs are dropped in
        training, which keeps it from flagging a real face on a few embedding dimensions
        (30-epoch runs, seed 0: val TPR@1e-3 0.63 -> 0.80 at the same AUC; not seen
        with seed 1; docs/experiments.md, 2026-11-23). The mouth CNN sees the lower middle of
        the crop only (MOUTH_BOX): a third of the pixels, and the sync family's val AUC
        was the best yet with it (desync_other 0.98; docs/experiments.md, 2026-11-23)."""
        return cls(visual_stride=2, visual_highpass=True, fusion_dropout=0.5, mouth_box=MOUTH_BOX)

    @classmethod
    def demo(cls) -> ModelConfig:
        """Tiny and fast on a CPU: trains on ~1,000 clips in minutes. Like the default,
        its visual CNN sees every second crop and its mouth CNN the mouth band alone, so
        8 crops per window cost what 4 whole crops did (docs/experiments.md, 2026-11-24)."""
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
        d["raw_channels"] = list(self.raw_channels)
        d["sync_offsets_ms"] = list(self.sync_offsets_ms)
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
        for key in ("pixel_mean", "pixel_std", "mouth_box", "sync_offsets_ms"):
            if kwargs.get(key) is not None:
                kwargs[key] = tuple(float(v) for v in kwargs[key])
        if kwargs.get("raw_channels") is not None:
            kwargs["raw_channels"] = tuple(int(v) for v in kwargs["raw_channels"])
        for key in ("audio_backbone_kwargs", "visual_backbone_kwargs"):
            if key in kwargs:
                kwargs[key] = dict(kwargs[key] or {})
        try:
            return cls(**kwargs)
        except (TypeError, ValueError) as exc:  # a value of the wrong type
            raise ConfigError(f"invalid model config: {exc}") from exc
