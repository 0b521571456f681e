"""Building blocks of the detector: timm backbones, the mouth CNN, the sync-path helpers.

Each block has static shapes given the input contract, so the whole detector exports to
ONNX and TensorRT.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from monitor.errors import ConfigError, ModelFormatError
from train.model.frontend import grey_levels

logger = logging.getLogger(__name__)


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
