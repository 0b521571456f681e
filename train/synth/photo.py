"""Photographic identities: the astronaut portrait shipped with scikit-image, animated.

The photograph (a real frontal face, no download) is cut out of its backdrop, placed on
the same face-unit canvas as the procedural faces, and given a mouth that opens (the
lower face is warped down and the gap darkened) and eyelids that close. Variants change
skin tone, hair colour, width and handedness, so several "photo identities" exist; they
all derive from one person, which the manifest's identity names say (`...p` suffix).

Photo faces are never drawn much larger than the photograph itself (MAX_UNIT_PX), so a
real photo face is never an up-sampled, soft face that would look like a
`face_lowres` fake.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

from train.synth.faces import (
    CANVAS_BOTTOM,
    CANVAS_LEFT,
    CANVAS_RIGHT,
    CANVAS_TOP,
    EYE_LEVELS,
    INNER_FACE,
    MOUTH_LEVELS,
    SpriteBank,
)

# Geometry of skimage.data.astronaut() (512 x 512), measured with the Haar cascades.
PHOTO_CENTRE = (224.5, 113.5)  # face centre, photo pixels (x, y)
PHOTO_UNIT_PX = 54.3  # face unit (half face height) in photo pixels
PHOTO_EYES = ((202.0, 101.0), (246.5, 103.5))  # eye centres, photo pixels
PHOTO_EYES_Y = -0.2  # eye line, face units
PHOTO_MOUTH_Y = 0.6  # mouth line, face units
PHOTO_CHIN_Y = 1.05  # face units
BACKDROP_MAX_SAT = 45  # HSV saturation (0..255) of the grey studio backdrop
BACKDROP_MIN_VAL = 150  # HSV value of the backdrop
MAX_UNIT_PX = 62.0  # largest face unit a photo identity is drawn at (1.15x the photo)
JAW_DROP_UNITS = 0.13  # mouth fully open: the lower face moves down this much


@dataclass(frozen=True)
class PhotoStyle:
    """One variant of the photograph, looking like a different person."""

    skin_gain: tuple[float, float, float]  # RGB gains on the skin
    hair_gain: tuple[float, float, float]  # RGB gains on the hair
    stretch: float  # horizontal scale of the face (0.9 = narrower)
    flip: bool  # mirror image


def sample_photo_style(rng: np.random.Generator) -> PhotoStyle:
    tone = float(rng.uniform(0.55, 1.05))
    skin = (tone, tone * rng.uniform(0.92, 1.0), tone * rng.uniform(0.85, 1.0))
    hair = float(rng.uniform(0.35, 1.3))
    return PhotoStyle(
        skin_gain=(float(skin[0]), float(skin[1]), float(skin[2])),
        hair_gain=(
            hair,
            hair * float(rng.uniform(0.85, 1.05)),
            hair * float(rng.uniform(0.7, 1.1)),
        ),
        stretch=float(rng.uniform(0.9, 1.1)),
        flip=bool(rng.integers(2)),
    )


def _ellipse(
    xs: np.ndarray, ys: np.ndarray, cx: float, cy: float, rx: float, ry: float, soft: float
) -> np.ndarray:
    r = np.sqrt(((xs - cx) / rx) ** 2 + ((ys - cy) / ry) ** 2)
    return np.clip(0.5 - (r - 1.0) / soft, 0.0, 1.0).astype(np.float32)


@functools.lru_cache(maxsize=1)
def _base() -> tuple[np.ndarray, np.ndarray]:
    """The photo's canvas crop (float32 RGB 0..1) and the person's alpha, photo scale."""
    from skimage import data

    photo = np.asarray(data.astronaut())[..., :3]
    cx, cy = PHOTO_CENTRE
    u = PHOTO_UNIT_PX
    x0, x1 = round(cx + CANVAS_LEFT * u), round(cx + CANVAS_RIGHT * u)
    y0, y1 = round(cy + CANVAS_TOP * u), round(cy + CANVAS_BOTTOM * u)
    pad = ((max(0, -y0), max(0, y1 - photo.shape[0])), (max(0, -x0), max(0, x1 - photo.shape[1])))
    padded = np.pad(photo, (*pad, (0, 0)), mode="edge")
    crop = padded[y0 + pad[0][0] : y1 + pad[0][0], x0 + pad[1][0] : x1 + pad[1][0]]
    hsv = cv2.cvtColor(np.ascontiguousarray(crop), cv2.COLOR_RGB2HSV)
    grey = ((hsv[..., 1] < BACKDROP_MAX_SAT) & (hsv[..., 2] > BACKDROP_MIN_VAL)).astype(np.uint8)
    keyed = cv2.morphologyEx(grey, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    # The backdrop is the keyed area reaching the edge of the crop; keyed pixels inside
    # the person (teeth, eye whites, the suit's silver collar) stay.
    _, labels = cv2.connectedComponents(keyed, connectivity=4)
    edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    backdrop = np.isin(labels, edge[edge > 0])
    cut = np.where(backdrop, 0.0, 1.0).astype(np.float32)
    cut[:3] *= np.array([0.25, 0.5, 0.75], np.float32)[:, None]  # feather the cut hair top
    alpha = np.asarray(cv2.GaussianBlur(cut, (0, 0), 1.2), np.float32)
    return crop.astype(np.float32) / 255.0, alpha


def _grids(shape: tuple[int, int], unit: float) -> tuple[np.ndarray, np.ndarray]:
    h, w = shape
    xs = (np.arange(w, dtype=np.float32) + 0.5) / unit + CANVAS_LEFT
    ys = (np.arange(h, dtype=np.float32) + 0.5) / unit + CANVAS_TOP
    return np.meshgrid(xs, ys)


def _open_mouth(rgb: np.ndarray, x: np.ndarray, y: np.ndarray, unit: float, o: float) -> np.ndarray:
    """Drop the jaw by o * JAW_DROP_UNITS and darken the gap between the lips."""
    drop = o * JAW_DROP_UNITS
    ramp = np.clip((y - PHOTO_MOUTH_Y + 0.02) / 0.06, 0.0, 1.0)  # lips part here
    fade = np.clip((1.6 - y) / (1.6 - PHOTO_CHIN_Y), 0.0, 1.0)  # neck stretches back
    width = np.exp(-((x / 0.62) ** 2))
    shift = drop * ramp * fade * width
    map_x = ((x - CANVAS_LEFT) * unit - 0.5).astype(np.float32)
    map_y = ((y - shift - CANVAS_TOP) * unit - 0.5).astype(np.float32)
    out = cv2.remap(rgb, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    if drop > 0.005:
        gap = _ellipse(x, y, 0.0, PHOTO_MOUTH_Y + drop * 0.5, 0.17, drop * 0.5 + 0.01, 0.25)
        dark = np.array([0.2, 0.07, 0.07], np.float32)
        out = out * (1.0 - 0.6 * gap[..., None]) + dark * 0.6 * gap[..., None]
    return out


def _close_eyes(rgb: np.ndarray, x: np.ndarray, y: np.ndarray, openness: float) -> np.ndarray:
    if openness >= 1.0:
        return rgb
    out = rgb
    cx0, cy0 = PHOTO_CENTRE
    for ex_px, ey_px in PHOTO_EYES:
        ex, ey = (ex_px - cx0) / PHOTO_UNIT_PX, (ey_px - cy0) / PHOTO_UNIT_PX
        rx, ry = 0.24, 0.12
        eye = _ellipse(x, y, ex, ey, rx, ry, 0.3)
        lid_edge = ey - ry + 2.0 * ry * (1.0 - openness)
        lid = eye * np.clip((lid_edge - y) / 0.03, 0.0, 1.0)
        ring = _ellipse(x, y, ex, ey, rx * 1.5, ry * 1.8, 0.1) - _ellipse(x, y, ex, ey, rx, ry, 0.1)
        near = ring > 0.5
        skin = 0.92 * out[near].mean(axis=0) if near.any() else np.full(3, 0.6, np.float32)
        out = out * (1.0 - lid[..., None]) + skin * lid[..., None]
        line = eye * np.exp(-(((y - lid_edge) / 0.02) ** 2)) * 0.6
        out = out * (1.0 - line[..., None]) + 0.15 * skin * line[..., None]
    return out


def render_photo_sprites(
    style: PhotoStyle,
    unit_px: float,
    light: tuple[float, float],
    max_unit_px: float = MAX_UNIT_PX,
) -> SpriteBank:
    """The photo identity at `unit_px` in every mouth and eye state.

    The canvas has the size a procedural face of `unit_px` has, so swaps between photo
    and procedural identities line up. Above `max_unit_px` the face is drawn at that
    size inside the canvas (scenes of photo identities never ask for more; a face-swap
    donor passes infinity: a generator's output may well be soft).
    """
    rgb, alpha = _base()
    h, w = alpha.shape
    x, y = _grids((h, w), PHOTO_UNIT_PX)
    # Skin and hair told apart by colour inside the head: hair is far more saturated.
    hsv = cv2.cvtColor((rgb * 255.0).astype(np.uint8), cv2.COLOR_RGB2HSV).astype(np.float32)
    head = _ellipse(x, y, 0.0, -0.2, 1.5, 1.6, 0.3)
    skin_like = ((hsv[..., 1] < 140) & (hsv[..., 2] > 110)).astype(np.float32)
    skin = cv2.GaussianBlur(skin_like * head * (y < 1.6), (0, 0), 2.0)[..., None]
    hair_like = ((hsv[..., 1] >= 140) & (y < 0.5)).astype(np.float32)
    hair = cv2.GaussianBlur(hair_like * head, (0, 0), 2.0)[..., None]
    tinted = rgb * (1.0 + skin * (np.asarray(style.skin_gain, np.float32) - 1.0))
    tinted *= 1.0 + hair * (np.asarray(style.hair_gain, np.float32) - 1.0)
    lx, ly = light
    tinted *= (1.0 + 0.12 * (lx * x / 1.5 + ly * y / 2.0))[..., None]
    # Eyes and mouth are far apart: draw the eye states and the mouth states once each
    # and splice them at the line halfway between (the jaw warp is zero above it).
    split = int(np.searchsorted(y[:, 0], (PHOTO_EYES_Y + PHOTO_MOUTH_Y) / 2.0))
    eyes = [_close_eyes(tinted, x, y, e / (EYE_LEVELS - 1))[:split] for e in range(EYE_LEVELS)]
    states = np.empty((MOUTH_LEVELS, EYE_LEVELS, h, w, 4), np.float32)
    states[..., 3] = alpha
    for m in range(MOUTH_LEVELS):
        mouth = _open_mouth(tinted, x, y, PHOTO_UNIT_PX, m / (MOUTH_LEVELS - 1))[split:]
        for e in range(EYE_LEVELS):
            states[m, e, :split, :, :3] = eyes[e]
            states[m, e, split:, :, :3] = mouth
    # Place on the canvas of a unit_px face: scale, horizontal stretch, optional mirror.
    draw_unit = min(unit_px, max_unit_px)
    out_w = round((CANVAS_RIGHT - CANVAS_LEFT) * unit_px) // 2 * 2
    out_h = round((CANVAS_BOTTOM - CANVAS_TOP) * unit_px) // 2 * 2
    sx, sy = draw_unit / PHOTO_UNIT_PX * style.stretch, draw_unit / PHOTO_UNIT_PX
    centre_src = (-CANVAS_LEFT * PHOTO_UNIT_PX, -CANVAS_TOP * PHOTO_UNIT_PX)
    centre_dst = (-CANVAS_LEFT * unit_px, -CANVAS_TOP * unit_px)
    a = np.array([[sx * (-1 if style.flip else 1), 0.0], [0.0, sy]])
    t = np.asarray(centre_dst) - a @ np.asarray(centre_src)
    m_aff = np.hstack([a, t[:, None]]).astype(np.float64)
    flat = states.reshape(MOUTH_LEVELS * EYE_LEVELS, h, w, 4)
    out = np.empty((MOUTH_LEVELS * EYE_LEVELS, out_h, out_w, 4), np.uint8)
    for k in range(flat.shape[0]):
        warped = cv2.warpAffine(flat[k], m_aff, (out_w, out_h), flags=cv2.INTER_LINEAR)
        out[k] = (np.clip(warped, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    ox, oy = _grids((out_h, out_w), unit_px)
    cx, cy, rx, ry = INNER_FACE
    scale = draw_unit / unit_px  # the face occupies this fraction of a unit_px face
    inner = _ellipse(ox, oy, cx * scale, cy * scale, rx * 0.8 * scale, ry * scale, 0.15)
    return SpriteBank(
        rgba=out.reshape(MOUTH_LEVELS, EYE_LEVELS, out_h, out_w, 4),
        inner_mask=inner,
        centre=centre_dst,
        unit_px=unit_px,
    )
