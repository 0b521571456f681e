"""Backgrounds: a room behind the caller, drawn once per scene at frame size.

Walls, windows, doors, shelves and framed pictures, with textures and pictures taken
from the photographs that ship with scikit-image (no download). Images that contain a
human face (astronaut, camera) are never used, so the only face in a frame is the
caller's.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

TEXTURES = ("brick", "grass", "gravel")  # greyscale photos used as wall texture
PICTURES = ("coffee", "chelsea", "rocket", "hubble_deep_field", "coins", "horse")
BLUR_SIGMA_PX = (0.6, 3.0)  # depth of field: the room is behind the focus plane


@functools.lru_cache(maxsize=16)
def _photo(name: str) -> np.ndarray:
    """A scikit-image sample photograph as float32 RGB in 0..1 (cached per process)."""
    from skimage import data

    img = np.asarray(getattr(data, name)())
    if img.dtype == bool:
        img = img.astype(np.uint8) * 255
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    img = img[..., :3].astype(np.float32)
    return img / 255.0 if img.max() > 1.0 else img


def _rect(img: np.ndarray, x0: int, y0: int, x1: int, y1: int, colour: np.ndarray) -> None:
    h, w = img.shape[:2]
    x0, x1 = max(0, x0), min(w, x1)
    y0, y1 = max(0, y0), min(h, y1)
    if x0 < x1 and y0 < y1:
        img[y0:y1, x0:x1] = colour


def _paste(img: np.ndarray, photo: np.ndarray, x0: int, y0: int, w: int, h: int) -> None:
    if w < 4 or h < 4:
        return
    small = cv2.resize(photo, (w, h), interpolation=cv2.INTER_AREA)
    hh, ww = img.shape[:2]
    xa, ya = max(0, x0), max(0, y0)
    xb, yb = min(ww, x0 + w), min(hh, y0 + h)
    if xa < xb and ya < yb:
        img[ya:yb, xa:xb] = small[ya - y0 : yb - y0, xa - x0 : xb - x0]


def render_background(width: int, height: int, seed: int) -> np.ndarray:
    """An RGB uint8 room view of `width` x `height` pixels."""
    rng = np.random.default_rng(seed)
    wall = rng.uniform(0.3, 0.85, 3).astype(np.float32)
    wall = wall * 0.5 + wall.mean() * 0.5  # walls are muted colours
    ys = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    xs = np.linspace(-1.0, 1.0, width, dtype=np.float32)[None, :, None]
    lamp = rng.uniform(-1.0, 1.0)
    img = wall * (0.85 + 0.2 * (1.0 - ys)) * (1.0 - 0.15 * np.abs(xs - lamp))
    img = np.broadcast_to(img, (height, width, 3)).astype(np.float32)  # a writable copy
    if rng.random() < 0.6:  # textured wall (brick, plaster-like gravel, ...)
        tex = _photo(TEXTURES[int(rng.integers(len(TEXTURES)))])[..., 0]
        scale = rng.uniform(1.0, 2.0)
        tex = cv2.resize(tex, (int(width * scale) + 1, int(height * scale) + 1))
        ox = int(rng.integers(tex.shape[1] - width + 1))
        oy = int(rng.integers(tex.shape[0] - height + 1))
        tex = tex[oy : oy + height, ox : ox + width, None]
        img *= 1.0 + rng.uniform(0.1, 0.35) * (tex - float(tex.mean()))
    for _ in range(int(rng.integers(1, 4))):
        kind = int(rng.integers(4))
        w = int(rng.uniform(0.15, 0.45) * width)
        h = int(rng.uniform(0.2, 0.6) * height)
        x0 = int(rng.uniform(-0.1, 0.95) * width) - w // 2
        y0 = int(rng.uniform(-0.1, 0.5) * height)
        if kind == 0:  # window: bright, with a frame and bars
            frame = rng.uniform(0.6, 0.95, 3).astype(np.float32)
            _rect(img, x0 - 4, y0 - 4, x0 + w + 4, y0 + h + 4, frame)
            sky = np.array([0.85, 0.92, 1.0], np.float32) * rng.uniform(0.9, 1.1)
            _rect(img, x0, y0, x0 + w, y0 + h, np.clip(sky, 0, 1))
            _rect(img, x0 + w // 2 - 2, y0, x0 + w // 2 + 2, y0 + h, frame)
        elif kind == 1:  # door
            wood = np.array([0.45, 0.3, 0.18], np.float32) * rng.uniform(0.6, 1.4)
            _rect(img, x0, y0, x0 + w // 2, height, np.clip(wood, 0, 1))
        elif kind == 2:  # shelf with books
            board = np.array([0.5, 0.38, 0.25], np.float32) * rng.uniform(0.7, 1.2)
            for row in range(int(rng.integers(1, 4))):
                by = y0 + row * max(12, h // 3)
                bx = x0
                while bx < x0 + w:
                    bw = int(rng.integers(3, 10))
                    bh = int(rng.integers(8, max(9, h // 4)))
                    _rect(
                        img, bx, by - bh, bx + bw, by, rng.uniform(0.1, 0.9, 3).astype(np.float32)
                    )
                    bx += bw + 1
                _rect(img, x0 - 3, by, x0 + w + 3, by + 4, np.clip(board, 0, 1))
        else:  # framed picture
            photo = _photo(PICTURES[int(rng.integers(len(PICTURES)))])
            _rect(
                img,
                x0 - 5,
                y0 - 5,
                x0 + w + 5,
                y0 + h + 5,
                rng.uniform(0.05, 0.9, 3).astype(np.float32),
            )
            _paste(img, photo, x0, y0, w, h)
    sigma = float(rng.uniform(*BLUR_SIGMA_PX))
    img = cv2.GaussianBlur(img, (0, 0), sigma)
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
