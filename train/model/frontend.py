"""The audio front end: raw 16 kHz samples -> normalised log-mel image, as model layers.

Everything here is ordinary real-valued tensor algebra so that the same bytes give the
same features in training, in the ONNX file and in a TensorRT engine:

* the STFT is a fixed-basis Conv1d (real cos / -sin DFT rows times a periodic Hann
  window, stride = hop), with torchaudio's ``center=True`` reflect padding written as a
  Gather with constant indices (no complex tensors, no ``Pad(mode=reflect)``);
* power = re² + im², the mel filterbank is a constant matmul built once with
  ``torchaudio.functional.melscale_fbanks``;
* dB = 10·log10(clamp(power, 1e-10)), then an optional ``top_db`` floor taken *per
  window* (torchaudio's AmplitudeToDB takes that max over the whole batch for 3-D
  input, which would make one window's features depend on its batch neighbours).

The constant buffers are not persistent: a checkpoint rebuilds them from the model
config, so they cannot drift from the code that defines them.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable
from typing import TypeVar

import torch
from torch import nn

logger = logging.getLogger(__name__)
_T = TypeVar("_T")

DEFAULT_SAMPLE_RATE = 16_000  # Hz
DEFAULT_N_FFT = 512  # samples: 32 ms at 16 kHz, 257 frequency bins of 31.25 Hz
DEFAULT_HOP = 160  # samples: 10 ms at 16 kHz
DEFAULT_N_MELS = 128  # mel bands, as in the competition's public baseline
DEFAULT_F_MIN = 20.0  # Hz
DEFAULT_F_MAX = 8_000.0  # Hz, Nyquist at 16 kHz
DEFAULT_TOP_DB = 80.0  # dB below each window's loudest bin that are kept
AMIN = 1e-10  # power floor before log10 (= -100 dB), as AmplitudeToDB's default
MEL_NORM_MODES = ("utterance", "fixed", "none")
PHASE_FLOOR = 1e-8  # added to a band's |X_t|·|X_{t-1}| sum: a silent band's phase reads 0
UTTERANCE_STD_FLOOR_DB = 1.0  # dB; a near-constant image (digital silence) is not blown up
FIXED_NORM_OFFSET_DB = -40.0  # dB; "fixed" maps [offset - 40, offset + 40] dB to about [-1, 1]
FIXED_NORM_SCALE_DB = 40.0  # dB


def dft_basis(n_fft: int) -> torch.Tensor:
    """Windowed real DFT rows as a Conv1d weight [2 * (n_fft // 2 + 1), 1, n_fft].

    Rows 0..F-1 give the real part and rows F..2F-1 the imaginary part of
    ``torch.stft(x, n_fft, window=hann_window(n_fft))`` (periodic Hann, e^{-i…} sign).
    Built in float64 and rounded once, so the basis itself adds no float32 drift.
    """
    n_freq = n_fft // 2 + 1
    n = torch.arange(n_fft, dtype=torch.float64)
    k = torch.arange(n_freq, dtype=torch.float64)
    window = torch.hann_window(n_fft, periodic=True, dtype=torch.float64)
    angle = 2.0 * math.pi * k[:, None] * n[None, :] / n_fft
    real = torch.cos(angle) * window
    imag = -torch.sin(angle) * window
    return torch.cat([real, imag], dim=0).unsqueeze(1).to(torch.float32)


def mel_filterbank(
    n_fft: int, n_mels: int, sample_rate: int, f_min: float, f_max: float
) -> torch.Tensor:
    """HTK mel filterbank [n_freq, n_mels], exactly torchaudio.transforms.MelSpectrogram's."""
    import torchaudio

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fb = torchaudio.functional.melscale_fbanks(
            n_freqs=n_fft // 2 + 1,
            f_min=f_min,
            f_max=f_max,
            n_mels=n_mels,
            sample_rate=sample_rate,
            norm=None,
            mel_scale="htk",
        )
    if caught:
        # With 128 mels over 31.25 Hz bins the lowest bands are narrower than one bin and
        # come out empty (constant floor); harmless, the baseline has the same bands.
        empty = int((fb.sum(dim=0) == 0).sum())
        logger.debug("mel filterbank: %d of %d bands are empty (n_fft=%d)", empty, n_mels, n_fft)
    return fb.to(torch.float32)


class LogMelFrontend(nn.Module):
    """float32 audio [B, S] -> log-mel power in dB [B, n_mels, 1 + S // hop]."""

    basis: torch.Tensor  # [2 * n_freq, 1, n_fft] windowed DFT rows (real, then imaginary)
    fbank_t: torch.Tensor  # [n_mels, n_freq] mel filterbank, transposed
    left_idx: torch.Tensor  # [pad] gather indices of the left reflect padding
    right_idx: torch.Tensor  # [pad] gather indices of the right reflect padding
    advance_cos: torch.Tensor  # [n_freq, 1] cos of a bin-centre sinusoid's advance per hop
    advance_sin: torch.Tensor  # [n_freq, 1] its sin

    def __init__(
        self,
        sample_rate: int = DEFAULT_SAMPLE_RATE,
        n_fft: int = DEFAULT_N_FFT,
        hop_length: int = DEFAULT_HOP,
        n_mels: int = DEFAULT_N_MELS,
        f_min: float = DEFAULT_F_MIN,
        f_max: float = DEFAULT_F_MAX,
        top_db: float | None = DEFAULT_TOP_DB,
    ) -> None:
        super().__init__()
        if n_fft < 2 or hop_length < 1:
            raise ValueError(f"n_fft={n_fft} and hop_length={hop_length} must be positive")
        if not 0.0 <= f_min < f_max <= sample_rate / 2:
            raise ValueError(f"need 0 <= f_min < f_max <= {sample_rate / 2} Hz")
        self.sample_rate = sample_rate
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.n_mels = n_mels
        self.n_freq = n_fft // 2 + 1
        self.top_db = top_db
        pad = n_fft // 2
        self.pad = pad
        self.register_buffer("basis", dft_basis(n_fft), persistent=False)
        self.register_buffer(
            "fbank_t",
            mel_filterbank(n_fft, n_mels, sample_rate, f_min, f_max).t().contiguous(),
            persistent=False,
        )
        # Reflect padding as constant gathers: left = x[pad], ..., x[1]; the right side
        # is taken from the last pad + 1 samples, x[S-2], ..., x[S-pad-1].
        self.register_buffer("left_idx", torch.arange(pad, 0, -1), persistent=False)
        self.register_buffer("right_idx", torch.arange(pad - 1, -1, -1), persistent=False)
        # Phase advance of a steady sinusoid at each bin's centre over one hop, 2πk·hop/n_fft,
        # as (cos, sin) columns [n_freq, 1] (mel_and_phase rotates it away).
        advance = (
            2.0 * math.pi * hop_length / n_fft * torch.arange(self.n_freq, dtype=torch.float64)
        )
        self.register_buffer("advance_cos", torch.cos(advance)[:, None].float(), persistent=False)
        self.register_buffer("advance_sin", torch.sin(advance)[:, None].float(), persistent=False)

    def num_frames(self, num_samples: int) -> int:
        """Frames produced for a window of num_samples (torchaudio's center=True count)."""
        return 1 + num_samples // self.hop_length

    def reflect_pad(self, audio: torch.Tensor) -> torch.Tensor:
        # Needs more than n_fft // 2 samples; Detector checks that against the contract.
        left = torch.index_select(audio, 1, self.left_idx)
        tail = audio[:, -(self.pad + 1) : -1]
        right = torch.index_select(tail, 1, self.right_idx)
        return torch.cat([left, audio, right], dim=1)

    def spectrum(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(real, imaginary) STFT, each [B, n_freq, frames], as torch.stft(...)."""
        x = self.reflect_pad(audio).unsqueeze(1)
        spec = nn.functional.conv1d(x, self.basis, stride=self.hop_length)
        return spec[:, : self.n_freq], spec[:, self.n_freq :]

    def power(self, audio: torch.Tensor) -> torch.Tensor:
        """Power spectrogram [B, n_freq, frames], torch.stft(...).abs() ** 2."""
        re, im = self.spectrum(audio)
        return re * re + im * im

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return _in_fp32(self.log_mel, audio)

    def log_mel(self, audio: torch.Tensor) -> torch.Tensor:
        return self.to_db(torch.matmul(self.fbank_t, self.power(audio)))

    def to_db(self, mel: torch.Tensor) -> torch.Tensor:
        db = 10.0 * torch.log10(torch.clamp(mel, min=AMIN))
        if self.top_db is not None:
            peak = db.amax(dim=(1, 2), keepdim=True)
            db = torch.maximum(db, peak - self.top_db)
        return db

    def mel_and_phase(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(log-mel dB [B, n_mels, T], phase advance [B, 2, n_mels, T]) from one STFT.

        The phase advance of bin k between frames t-1 and t is the angle of
        X_t · conj(X_{t-1}); a steady sinusoid at the bin's centre advances by
        2πk·hop/n_fft, so that advance is rotated away and what is left is the deviation:
        where within the bin the partials sit and how steadily (vocoders and concatenative
        synthesizers set phase their own way). Given as its cosine and sine (no atan2,
        so every backend computes it), averaged over each mel band weighted by
        |X_t|·|X_{t-1}|; the first frame repeats the second's. Runs in fp32."""
        return _in_fp32(self._mel_and_phase, audio)

    def _mel_and_phase(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        re, im = self.spectrum(audio)
        db = self.to_db(torch.matmul(self.fbank_t, re * re + im * im))
        pr = re[..., 1:] * re[..., :-1] + im[..., 1:] * im[..., :-1]
        pi = im[..., 1:] * re[..., :-1] - re[..., 1:] * im[..., :-1]
        c, s = self.advance_cos, self.advance_sin
        dev_re = torch.matmul(self.fbank_t, pr * c + pi * s)
        dev_im = torch.matmul(self.fbank_t, pi * c - pr * s)
        weight = torch.matmul(self.fbank_t, torch.sqrt(pr * pr + pi * pi)) + PHASE_FLOOR
        phase = torch.stack([dev_re / weight, dev_im / weight], dim=1)
        return db, torch.cat([phase[..., :1], phase], dim=-1)


def _in_fp32(fn: Callable[[torch.Tensor], _T], audio: torch.Tensor) -> _T:
    """fn(audio) with autocast off. Mixed-precision training: fp16 power overflows (a
    full-scale DC window gives 256² > 65504) and 1e-10 underflows to 0, so the front end
    stays in fp32."""
    device = audio.device.type
    if torch.is_autocast_enabled(device):
        with torch.autocast(device, enabled=False):
            return fn(audio.float())
    return fn(audio)


class MelNorm(nn.Module):
    """Maps a dB mel image to roughly zero mean, unit scale.

    "utterance" (the default): subtract each window's mean and divide by its standard
    deviation (floored at 1 dB). The level of a call varies by tens of dB with the
    microphone, codec and distance, and is not evidence of a fake; the spectral shape
    and its changes over time, which the normalisation keeps, are. "fixed": a constant
    affine map, keeps absolute level. "none": raw dB.
    """

    def __init__(self, mode: str = "utterance") -> None:
        super().__init__()
        if mode not in MEL_NORM_MODES:
            raise ValueError(f"mel norm mode {mode!r} not in {MEL_NORM_MODES}")
        self.mode = mode

    def forward(self, db: torch.Tensor) -> torch.Tensor:
        if self.mode == "utterance":
            mean = db.mean(dim=(1, 2), keepdim=True)
            centred = db - mean
            std = torch.sqrt((centred * centred).mean(dim=(1, 2), keepdim=True))
            return centred / torch.clamp(std, min=UTTERANCE_STD_FLOOR_DB)
        if self.mode == "fixed":
            return (db - FIXED_NORM_OFFSET_DB) / FIXED_NORM_SCALE_DB
        return db


class SpecAugment(nn.Module):
    """Random frequency and time masks on a [B, M, T] image, in training mode only.

    Masked cells are set to 0, the mean of an utterance-normalised image. Every window
    gets its own masks; widths are drawn uniformly in [0, max].
    """

    def __init__(
        self, freq_masks: int, freq_mask_bins: int, time_masks: int, time_mask_frames: int
    ) -> None:
        super().__init__()
        self.freq_masks = freq_masks
        self.freq_mask_bins = freq_mask_bins
        self.time_masks = time_masks
        self.time_mask_frames = time_mask_frames

    def _masks(
        self, batch: int, size: int, count: int, width: int, device: torch.device
    ) -> torch.Tensor:
        """Boolean [B, size]: True where any of `count` random bands covers the position."""
        pos = torch.arange(size, device=device)
        hit = torch.zeros(batch, size, dtype=torch.bool, device=device)
        width = min(width, size)
        for _ in range(count):
            w = torch.randint(0, width + 1, (batch, 1), device=device)
            start = (torch.rand(batch, 1, device=device) * (size - w + 1)).floor().long()
            hit |= (pos >= start) & (pos < start + w)
        return hit

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """[B, M, T], or [B, C, M, T] with one mask for all C channels of a window."""
        if not self.training:
            return image
        b, m, t = image.shape[0], image.shape[-2], image.shape[-1]
        masked = torch.zeros((b, m, t), dtype=torch.bool, device=image.device)
        if self.freq_masks and self.freq_mask_bins:
            f = self._masks(b, m, self.freq_masks, self.freq_mask_bins, image.device)
            masked |= f[:, :, None]
        if self.time_masks and self.time_mask_frames:
            tm = self._masks(b, t, self.time_masks, self.time_mask_frames, image.device)
            masked |= tm[:, None, :]
        if image.ndim == 4:
            masked = masked.unsqueeze(1)
        return image.masked_fill(masked, 0.0)


class RandomGain(nn.Module):
    """Scales each training window by a random gain in [-max_db, +max_db] dB."""

    def __init__(self, max_db: float) -> None:
        super().__init__()
        self.max_db = max_db

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        if not self.training or self.max_db <= 0:
            return audio
        gain_db = (torch.rand(audio.shape[0], 1, device=audio.device) * 2 - 1) * self.max_db
        return audio * torch.pow(10.0, gain_db / 20.0)


class PixelNorm(nn.Module):
    """uint8 RGB crops [N, H, W, 3] -> normalised float32 [N, 3, H, W]."""

    scale: torch.Tensor  # [1, 3, 1, 1]
    shift: torch.Tensor  # [1, 3, 1, 1]

    def __init__(self, mean: tuple[float, float, float], std: tuple[float, float, float]) -> None:
        super().__init__()
        # Folded into one multiply-add: x * scale + shift == (x / 255 - mean) / std.
        m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        self.register_buffer("scale", 1.0 / (255.0 * s), persistent=False)
        self.register_buffer("shift", -m / s, persistent=False)

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        x = crops.permute(0, 3, 1, 2).to(torch.float32)
        return x * self.scale + self.shift


def grey_levels(crops: torch.Tensor) -> torch.Tensor:
    """uint8 RGB crops [N, H, W, 3] -> float32 grey levels 0..255 [N, 1, H, W] (Rec. 601
    luma, the weights of train/augment.py's LUMA_WEIGHTS)."""
    x = crops.permute(0, 3, 1, 2).to(torch.float32)
    return 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]


# Three fixed high-pass kernels of the steganalysis "SRM" family (a second-order
# Laplacian-like 3x3, the 5x5 "KV" kernel, a horizontal second difference). Each sums to
# zero, so a flat or smoothly shaded face gives 0 and what is left is sensor noise,
# resampling and blending traces: the cues of a re-rendered face that a normalised RGB
# image buries in its lowest bits.
_SRM_KERNELS = (
    [
        [0, 0, 0, 0, 0],
        [0, -1, 2, -1, 0],
        [0, 2, -4, 2, 0],
        [0, -1, 2, -1, 0],
        [0, 0, 0, 0, 0],
    ],
    [
        [-1, 2, -2, 2, -1],
        [2, -6, 8, -6, 2],
        [-2, 8, -12, 8, -2],
        [2, -6, 8, -6, 2],
        [-1, 2, -2, 2, -1],
    ],
    [
        [0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0],
        [0, 1, -2, 1, 0],
        [0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0],
    ],
)
_SRM_DIVISORS = (4.0, 12.0, 2.0)


class HighPassResidual(nn.Module):
    """uint8 RGB crops [N, H, W, 3] -> fixed high-pass residuals of the grey image,
    float32 [N, 3, H, W], truncated to +-`clip` grey levels and scaled to [-1, 1].

    A fixed-weight conv2d plus a clamp: exports to ONNX and parses in TensorRT.
    """

    weight: torch.Tensor  # [3, 1, 5, 5]

    def __init__(self, clip: float = 8.0) -> None:
        super().__init__()
        if clip <= 0:
            raise ValueError(f"clip={clip} must be > 0")
        self.clip = float(clip)
        kernels = torch.tensor(_SRM_KERNELS, dtype=torch.float32)
        divisors = torch.tensor(_SRM_DIVISORS, dtype=torch.float32).view(3, 1, 1)
        # The 1 / clip scale is folded into the kernels: one pass less over the residuals.
        weight = (kernels / divisors / self.clip).unsqueeze(1)
        self.register_buffer("weight", weight, persistent=False)

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        grey = grey_levels(crops)
        # Valid convolution, then a zero border: a zero-padded input would read the image
        # edge as a step and light up a frame of false residual around every crop.
        residual = nn.functional.conv2d(grey, self.weight).clamp(-1.0, 1.0)
        return nn.functional.pad(residual, (2, 2, 2, 2))
