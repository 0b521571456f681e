"""A raw-waveform audio encoder in the style of RawNet2 / AASIST's front end.

A spectrogram fixes, before any learning, which detail of the signal is kept: a magnitude
STFT on a mel scale keeps the envelope of each band and drops fine timing and phase,
where a speech synthesizer's vocoder leaves many of its traces. This encoder learns from
the samples themselves:

* **sinc filterbank** (SincNet): each filter is a band-pass made as the difference of two
  windowed ideal low-passes; only its two cut-off frequencies are learnt, initialised
  mel-spaced over [f_min, sample_rate / 2]. The filter taps are rebuilt from those two
  numbers on every forward with plain sin / div / mul (no complex tensors), so the
  ONNX file and a TensorRT engine compute the same filters;
* |x| and max-pooling (SINC_STRIDE x STEM_POOL), then residual 1-D conv blocks, each
  followed by a per-channel gate from the block's own time average (RawNet2's filter-wise
  feature map scaling) and a max-pool by 3;
* the window is scaled to unit RMS first, so level (already normalised by the call
  chain, and a delivery property, not evidence) does not enter.

`RawEncoder` returns a [B, C, T'] feature map; the detector pools it over time.
"""

from __future__ import annotations

import math

import torch
from torch import nn

RAW_RMS_FLOOR = 1e-4  # a window of digital silence is not blown up to unit level
LEAKY_SLOPE = 0.3  # RawNet2's activation
SINC_STRIDE = 3  # the filterbank is evaluated at every 3rd sample (a third of its CPU) ...
STEM_POOL = 3  # ... and |band-passed samples| max-pooled by 3: one value per 0.56 ms at
# 16 kHz (RawNet2: every sample, pooled by 3), a band's envelope up to about 900 Hz of
# modulation survives, and the residual blocks run on a ninth of the samples


def hz_to_mel(hz: float) -> float:
    return 2595.0 * math.log10(1.0 + hz / 700.0)


def mel_to_hz(mel: torch.Tensor) -> torch.Tensor:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


class SincFilterbank(nn.Module):
    """float32 [B, 1, S] -> [B, n_filters, S / stride] band-passed copies (zero padded)."""

    taps_t: torch.Tensor  # [1, K] tap times in seconds, 0 at the centre
    centre: torch.Tensor  # [1, K] 1.0 at the centre tap, else 0.0
    window: torch.Tensor  # [1, K] Hamming window

    def __init__(
        self, n_filters: int, kernel_size: int, sample_rate: int, f_min: float = 30.0
    ) -> None:
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size={kernel_size} must be odd (a centre tap)")
        self.sample_rate = sample_rate
        self.kernel_size = kernel_size
        self.min_band_hz = 50.0
        nyquist = sample_rate / 2.0
        edges = mel_to_hz(
            torch.linspace(hz_to_mel(f_min), hz_to_mel(nyquist - self.min_band_hz), n_filters + 1)
        )
        # Learnt: each filter's low edge and width, kept positive by abs() in forward.
        self.low_hz = nn.Parameter(edges[:-1].clone().unsqueeze(1))  # [N, 1]
        width = (edges[1:] - edges[:-1] - self.min_band_hz).clamp(min=0.0)  # + min_band_hz
        self.band_hz = nn.Parameter(width.unsqueeze(1))  # [N, 1]
        half = kernel_size // 2
        t = torch.arange(-half, half + 1, dtype=torch.float32) / sample_rate
        self.register_buffer("taps_t", t.unsqueeze(0), persistent=False)
        self.register_buffer("centre", (t == 0).float().unsqueeze(0), persistent=False)
        window = torch.hamming_window(kernel_size, periodic=False, dtype=torch.float32)
        self.register_buffer("window", window.unsqueeze(0), persistent=False)

    def edges(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(low, high) cut-offs in Hz, [N, 1] each, inside [0, Nyquist]."""
        nyquist = self.sample_rate / 2.0
        low = torch.abs(self.low_hz).clamp(max=nyquist - self.min_band_hz)
        high = (low + self.min_band_hz + torch.abs(self.band_hz)).clamp(max=nyquist)
        return low, high

    def filters(self) -> torch.Tensor:
        """Conv1d weight [N, 1, K]: windowed ideal band-pass, unit gain in its pass band."""
        low, high = self.edges()
        t = self.taps_t
        # An ideal low-pass at f has taps sin(2 pi f t) / (pi t), and 2 f at t = 0.
        safe_t = t + self.centre  # no division by zero; the centre tap is replaced below
        lowpass_hi = torch.sin(2.0 * math.pi * high * t) / (math.pi * safe_t)
        lowpass_lo = torch.sin(2.0 * math.pi * low * t) / (math.pi * safe_t)
        band = (lowpass_hi - lowpass_lo) * (1.0 - self.centre) + 2.0 * (high - low) * self.centre
        # Taps of the continuous response times the sample spacing: unit pass-band gain.
        return (band * self.window / self.sample_rate).unsqueeze(1)

    def forward(self, x: torch.Tensor, stride: int = 1) -> torch.Tensor:
        return nn.functional.conv1d(x, self.filters(), stride=stride, padding=self.kernel_size // 2)


class GatedResBlock(nn.Module):
    """BN-LReLU-conv3-BN-LReLU-conv3 plus a (projected) skip, a per-channel sigmoid gate
    from the time average, then max-pool by 3."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm1d(c_in),
            nn.LeakyReLU(LEAKY_SLOPE),
            nn.Conv1d(c_in, c_out, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm1d(c_out),
            nn.LeakyReLU(LEAKY_SLOPE),
            nn.Conv1d(c_out, c_out, kernel_size=3, padding=1, bias=False),
        )
        self.skip: nn.Module = (
            nn.Identity() if c_in == c_out else nn.Conv1d(c_in, c_out, kernel_size=1, bias=False)
        )
        self.gate = nn.Linear(c_out, c_out)
        self.pool = nn.MaxPool1d(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x) + self.skip(x)
        g = torch.sigmoid(self.gate(y.mean(dim=2))).unsqueeze(2)
        return self.pool(y * g)


class RawEncoder(nn.Module):
    """float32 audio [B, S] -> feature map [B, channels[-1], T'] (T' = S / 9 / 3^blocks)."""

    def __init__(
        self,
        sample_rate: int,
        n_filters: int,
        kernel_size: int,
        channels: tuple[int, ...],
    ) -> None:
        super().__init__()
        self.sinc = SincFilterbank(n_filters, kernel_size, sample_rate)
        self.stem = nn.Sequential(
            nn.MaxPool1d(STEM_POOL), nn.BatchNorm1d(n_filters), nn.LeakyReLU(LEAKY_SLOPE)
        )
        blocks = []
        c_in = n_filters
        for c_out in channels:
            blocks.append(GatedResBlock(c_in, c_out))
            c_in = c_out
        self.blocks = nn.Sequential(*blocks)
        self.out_channels = c_in

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        rms = torch.sqrt((audio * audio).mean(dim=1, keepdim=True)).clamp(min=RAW_RMS_FLOOR)
        x = (audio / rms).unsqueeze(1)  # [B, 1, S]
        x = self.stem(torch.abs(self.sinc(x, stride=SINC_STRIDE)))
        return self.blocks(x)
