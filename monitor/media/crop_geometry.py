"""Frame checks and the geometry of square crops, shared by both face croppers.

A frame is checked and made contiguous RGB uint8 once (`as_rgb_frame`); the detectors
look at a copy shrunk to their working size (`detection_frames`, or `grey_shrunk` for the
Haar cropper, whose order of operations its crops depend on); the crop is a square around
a centre, padded where it leaves the frame (`crop_square`), or the frame's centre square
when no face is found (`centre_crop`).
"""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np

MIN_IMAGE_SIDE = 16  # px; smaller frames cannot hold a face worth scoring

Box = tuple[int, int, int, int]  # x, y, w, h in image pixels
PadMode = Literal["constant", "edge"]


def as_rgb_frame(image: np.ndarray) -> np.ndarray:
    """Check a frame and return it as contiguous RGB uint8 [H, W, 3].

    Greyscale ([H, W] or [H, W, 1]) is expanded to RGB and an alpha channel is dropped;
    anything else that is not uint8 RGB raises ValueError saying what was wrong.
    """
    if not isinstance(image, np.ndarray):
        raise ValueError(f"frame must be a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ValueError(
            f"frame must be uint8 RGB, got dtype {image.dtype}; "
            "decode with monitor.media.decode (rgb24) or convert 0..1 floats with "
            "(x * 255).astype(uint8)"
        )
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ValueError(f"frame must be [H, W, 3] RGB (or greyscale), got shape {image.shape}")
    h, w = image.shape[:2]
    if min(h, w) < MIN_IMAGE_SIDE:
        raise ValueError(f"frame {w}x{h} is too small: need at least {MIN_IMAGE_SIDE} px per side")
    if image.shape[2] == 1:
        return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_GRAY2RGB)
    if image.shape[2] == 4:
        image = image[:, :, :3]
    return np.ascontiguousarray(image)


def cv_border(pad_mode: PadMode) -> int:
    """OpenCV's border mode for a pad mode: zeros ("constant") or edge pixels ("edge")."""
    return cv2.BORDER_CONSTANT if pad_mode == "constant" else cv2.BORDER_REPLICATE


def crop_square(
    image: np.ndarray,
    centre: tuple[float, float],
    side: float,
    size: int,
    pad_mode: PadMode = "constant",
) -> np.ndarray:
    """A `side`-pixel square of an RGB frame centred on `centre`, resized to `size`.

    Where the square leaves the frame it is padded with zeros ("constant") or by
    repeating the border pixels ("edge"), so the centre stays centred.
    """
    h, w = image.shape[:2]
    s = max(1, round(side))
    x0 = round(centre[0] - s / 2)
    y0 = round(centre[1] - s / 2)
    x1, y1 = x0 + s, y0 + s
    cx0, cy0, cx1, cy1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if cx1 <= cx0 or cy1 <= cy0:  # entirely outside: nothing to show
        return np.zeros((size, size, 3), dtype=np.uint8)
    patch = image[cy0:cy1, cx0:cx1]
    pads = (cy0 - y0, y1 - cy1, cx0 - x0, x1 - cx1)  # top, bottom, left, right
    if any(pads):
        patch = cv2.copyMakeBorder(patch, *pads, cv_border(pad_mode), value=(0, 0, 0))
    return _resize(patch, size)


def centre_crop(image: np.ndarray, size: int) -> np.ndarray:
    """The largest centred square of an RGB frame, resized to `size` (the fallback crop)."""
    h, w = image.shape[:2]
    return crop_square(image, (w / 2, h / 2), min(h, w), size)


def to_box(smooth: np.ndarray, frame_shape: tuple[int, int]) -> Box:
    """Centre/size floats to an (x, y, w, h) box of whole pixels inside the frame."""
    h, w = frame_shape
    cx, cy, bw, bh = smooth.tolist()
    x0 = min(max(0, round(cx - bw / 2)), w - 1)
    y0 = min(max(0, round(cy - bh / 2)), h - 1)
    x1 = min(max(x0 + 1, round(cx + bw / 2)), w)
    y1 = min(max(y0 + 1, round(cy + bh / 2)), h)
    return (x0, y0, x1 - x0, y1 - y0)


def detection_frames(rgb: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """The frame shrunk by `scale` (never enlarged) and that copy in grey."""
    small = _shrink(rgb, scale)
    grey = np.asarray(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY), dtype=np.uint8)
    return small, grey


def grey_shrunk(rgb: np.ndarray, scale: float) -> np.ndarray:
    """The frame in grey, then shrunk by `scale` (never enlarged)."""
    # The Haar cropper's order (grey first, then shrink) keeps its crops bit for bit.
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    if scale < 1.0:
        h, w = grey.shape
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
    return np.asarray(grey, dtype=np.uint8)


def _shrink(rgb: np.ndarray, scale: float) -> np.ndarray:
    if scale >= 1.0:
        return rgb
    h, w = rgb.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), dtype=np.uint8)


def _resize(patch: np.ndarray, size: int) -> np.ndarray:
    interp = cv2.INTER_AREA if patch.shape[0] > size else cv2.INTER_LINEAR
    out = cv2.resize(patch, (size, size), interpolation=interp)
    return np.asarray(out, dtype=np.uint8)
