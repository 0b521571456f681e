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
real on its own. With `sync_offsets_ms` it makes that comparison with the voice taken a
little later or earlier too and keeps the pairing most in step, as a lip-sync detector
searches offsets: an honest call's voice often arrives a few frames off, a desync
fake's is 300 ms or more out. The mouth CNN keeps its small spatial map instead of
pooling it away, so it can attend to where the mouth is in a face crop; it sees grey,
per-crop normalised pixels, so lighting and colour changes do not read as mouth motion.
The sync audio path takes the mel image before SpecAugment: a masked frame would look
like silence under an open mouth. All shapes are static given the input contract (no
adaptive pooling, no data-dependent shapes, no complex ops), so the model exports to
ONNX and TensorRT.
"""

from __future__ import annotations

import torch
from torch import nn

from monitor.contract import InputContract
from monitor.errors import ConfigError
from monitor.windows import frame_times
from train.model.blocks import (
    MouthNet,
    TemporalBlock,
    create_backbone,
    instant_weights,
    mean_max,
    mismatch_steps,
)
from train.model.config import ModelConfig
from train.model.frontend import (
    HighPassResidual,
    LogMelFrontend,
    MelNorm,
    PixelNorm,
    RandomGain,
    SpecAugment,
)
from train.model.raw import RawEncoder

HEAD_SKIP_INIT = 0.5  # initial weight of each head's logit in the fused logit


def check_fits(contract: InputContract, cfg: ModelConfig) -> None:
    """Refuse a model config that cannot run on windows of this contract."""
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


class Detector(nn.Module):
    """audio float32 [B, S], faces uint8 [B, K, H, W, 3] -> (fused, audio, visual) logits [B]."""

    instants: torch.Tensor  # buffer [T, O*K]: mel frames -> short spans at crop instants,
    # shifted by each of the O sync offsets

    def __init__(
        self, contract: InputContract, cfg: ModelConfig, load_weights: bool = True
    ) -> None:
        super().__init__()
        check_fits(contract, cfg)
        self.contract = contract
        self.config = cfg
        self._build_audio_path(load_weights)
        self._build_visual_path(load_weights)
        self._build_sync_path()
        self._build_heads()

    def _build_audio_path(self, load_weights: bool) -> None:
        contract, cfg = self.contract, self.config
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
        n_frames = self.frontend.num_frames(contract.window_samples)
        self.raw_encoder: RawEncoder | None = None
        if cfg.audio_input == "raw":
            self.raw_encoder = RawEncoder(
                contract.sample_rate, cfg.raw_filters, cfg.raw_kernel, cfg.raw_channels
            )
            a_channels = self.raw_encoder.out_channels
        else:
            in_chans = 3 if cfg.audio_phase else 1  # log-mel, then the phase's cos and sin
            self.audio_backbone = create_backbone(
                cfg.audio_backbone,
                in_chans,
                cfg.audio_backbone_kwargs,
                cfg.audio_weights if load_weights else None,
            )
            a_channels = self._probe_audio(in_chans, cfg.n_mels, n_frames)
        crop_times = frame_times(0.0, contract)
        # one block of K columns per audio offset tried (the voice heard that much later
        # than the crop's instant); a single offset of 0 is the plain pairing
        self.register_buffer(
            "instants",
            torch.cat(
                [
                    instant_weights(
                        n_frames,
                        cfg.hop_length / contract.sample_rate,
                        tuple(t + offset_ms / 1000.0 for t in crop_times),
                        cfg.sync_span_ms / 1000.0,
                    )
                    for offset_ms in cfg.sync_offsets_ms
                ],
                dim=1,
            ),
            persistent=False,
        )
        self.audio_proj = nn.Sequential(
            nn.Linear(2 * a_channels, cfg.audio_dim), nn.LayerNorm(cfg.audio_dim)
        )

    def _build_visual_path(self, load_weights: bool) -> None:
        contract, cfg = self.contract, self.config
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

    def _build_sync_path(self) -> None:
        contract, cfg = self.contract, self.config
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

    def _build_heads(self) -> None:
        cfg = self.config
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

    def _probe_audio(self, in_chans: int, n_mels: int, n_frames: int) -> int:
        """Channels of the audio feature map, from one dummy forward."""
        with torch.no_grad():
            was = self.audio_backbone.training
            fmap = self.audio_backbone.eval()(torch.zeros(1, in_chans, n_mels, n_frames))
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
        """(audio embedding [B, audio_dim], audio at each crop instant shifted by each sync
        offset [B, O, K, sync_dim])."""
        audio = self.gain(audio)
        if self.config.audio_phase:
            db, phase = self.frontend.mel_and_phase(audio)
            mel = self.mel_norm(db)  # [B, M, T]
            image = torch.cat([mel.unsqueeze(1), phase.to(mel.dtype)], dim=1)  # [B, 3, M, T]
        else:
            mel = self.mel_norm(self.frontend(audio))  # [B, M, T]; the sync path's, always
            image = mel.unsqueeze(1)
        if self.raw_encoder is not None:
            fmap = self.raw_encoder(audio)  # [B, C, T']
        else:
            fmap = self.audio_backbone(self.spec_augment(image)).mean(dim=2)  # [B, C, T']
        embedding = self.audio_proj(mean_max(fmap, dim=2))
        frames = self.sync_audio(mel)  # [B, sc, T]
        at_crops = torch.matmul(frames, self.instants).transpose(1, 2)  # [B, O*K, sc]
        steps = self.sync_audio_proj(at_crops)
        return embedding, steps.reshape(steps.shape[0], -1, self.contract.k_crops, steps.shape[2])

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

    def sync_logit(self, a: torch.Tensor, m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Audio [B, O, K, sync_dim] at O offsets and mouth steps [B, K, sync_dim] ->
        (sync logit [B], sync embedding [B, 2 * sync_dim]) of the offset that looks most
        in step: a call whose voice arrives a little late or early is the same call."""
        b, o = a.shape[0], a.shape[1]
        if o == 1:
            emb = self.sync_embedding(a[:, 0], m)
            return self.sync_head(emb).squeeze(1), emb
        emb = self.sync_embedding(a.flatten(0, 1), m.repeat_interleave(o, dim=0))
        logits = self.sync_head(emb).reshape(b, o)
        best = logits.argmin(dim=1, keepdim=True)  # [B, 1]
        per_offset = emb.reshape(b, o, -1)
        chosen = per_offset.gather(1, best.unsqueeze(2).expand(b, 1, per_offset.shape[2]))
        return logits.gather(1, best).squeeze(1), chosen.squeeze(1)

    def forward(
        self,
        audio: torch.Tensor,
        faces: torch.Tensor,
        sync_pairs: bool = False,
        with_sync: bool = False,
    ) -> tuple[torch.Tensor, ...]:
        """(fused, audio, visual) logits [B], and with with_sync the sync head's logit
        (P(out of step) after a sigmoid); with sync_pairs (training), also the sync head's
        logits for the true pairing and for a mismatched one (see mismatch_steps)."""
        faces = self._flip(faces)
        audio_emb, a = self.audio_features(audio)
        crops = self.visual_features(faces)
        visual_emb = mean_max(self.visual_temporal(crops), dim=1)
        m = self.mouth_features(faces)
        sync_logit, sync_emb = self.sync_logit(a, m)
        audio_logit = self.audio_head(self.dropout(audio_emb)).squeeze(1)
        visual_logit = self.visual_head(self.dropout(visual_emb)).squeeze(1)
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
            if with_sync:
                return fused_logit, audio_logit, visual_logit, sync_logit
            return fused_logit, audio_logit, visual_logit
        in_sync = sync_logit
        out_of_sync = self.sync_logit(a, mismatch_steps(m))[0]
        return fused_logit, audio_logit, visual_logit, in_sync, out_of_sync

    def export_module(self) -> ProbabilityModel:
        """Same inputs -> sigmoid probabilities, named as in the contract. Shares weights;
        call .eval() on it before exporting."""
        return ProbabilityModel(self)


class ProbabilityModel(nn.Module):
    """Detector wrapper for export: (audio, faces) -> (p_fused, p_audio, p_visual[, p_sync])
    in [0, 1], as many as the contract names."""

    def __init__(self, detector: Detector) -> None:
        super().__init__()
        self.detector = detector
        self.contract = detector.contract
        self.input_names: tuple[str, str] = (
            detector.contract.audio_input,
            detector.contract.faces_input,
        )
        self.output_names: tuple[str, ...] = detector.contract.output_names

    def forward(self, audio: torch.Tensor, faces: torch.Tensor) -> tuple[torch.Tensor, ...]:
        logits = self.detector(audio, faces, with_sync=self.contract.has_sync)
        return tuple(torch.sigmoid(x) for x in logits)

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
