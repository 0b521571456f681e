"""Procedurally rendered faces: one identity's head-and-shoulders sprite in every mouth/eye state.

A face is drawn once per clip at the clip's scale, as an RGBA float32 sprite, for a few
mouth openings and eye openings (`SpriteBank`); the video renderer then only picks a
sprite per frame and warps it into place. Faces are shaded as a lit ellipsoid with dark
eye sockets, brows, nostrils and lips, because OpenCV's Haar frontal-face cascade (the
product's face finder) keys on exactly those light/dark contrasts.

Coordinates inside a sprite are in "face units": 1 unit = half the face height (chin to
brow line is about 1.3 units), origin at the face centre, y pointing down.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# Sprite canvas around the face, in face units (the origin is the face centre).
CANVAS_LEFT, CANVAS_RIGHT = -1.7, 1.7
# The canvas reaches far enough down that the shoulders fill the frame to its bottom edge
# for every face size and position a scene can draw (face centre <= 0.5 H, unit >= 0.16 H).
CANVAS_TOP, CANVAS_BOTTOM = -1.75, 3.7
MOUTH_LEVELS = 8  # pre-rendered mouth openings from closed (0) to wide open (1)
EYE_LEVELS = 3  # pre-rendered eye openings: closed, half, open
EDGE_PX = 1.0  # anti-aliasing width of hard shape edges, pixels
MOUTH_Y = 0.55  # mouth line, face units below the centre
EYE_Y = -0.14  # eye line
INNER_FACE = (0.0, 0.18, 0.62, 0.86)  # centre x, centre y, rx (x face width), ry: swap region


@dataclass(frozen=True)
class FaceStyle:
    """Everything that makes one rendered face look like one person."""

    skin: tuple[float, float, float]  # linear-ish RGB in 0..1
    width: float  # face half-width in face units (face is 1 unit half-high)
    jaw: float  # 0 = round jaw, 0.35 = narrow pointed chin
    eye_spacing: float  # eye centre distance from the midline, face units
    eye_size: float  # scale of the eye opening (1 = average)
    iris: tuple[float, float, float]
    brow_thickness: float  # face units
    brow_tilt: float  # radians; positive raises the outer end
    nose_length: float  # face units from the eye line to the nose tip
    nose_width: float  # face units
    mouth_width: float  # half-width, face units
    lips: tuple[float, float, float]
    lip_thickness: float  # face units
    hair: tuple[float, float, float]
    hair_style: int  # 0 short, 1 long, 2 shaved, 3 volume on top
    hairline: float  # y of the hairline (negative: above the centre)
    beard: float  # 0 = none, 1 = full dark stubble
    clothing: tuple[float, float, float]


SKIN_TONES = np.array(
    [
        [0.96, 0.80, 0.69],
        [0.92, 0.74, 0.60],
        [0.87, 0.67, 0.52],
        [0.78, 0.57, 0.42],
        [0.66, 0.46, 0.32],
        [0.56, 0.38, 0.26],
        [0.48, 0.32, 0.22],
        [0.42, 0.28, 0.19],
    ],
    dtype=np.float32,
)
HAIR_COLOURS = np.array(
    [
        [0.08, 0.06, 0.05],
        [0.18, 0.12, 0.08],
        [0.32, 0.21, 0.12],
        [0.52, 0.37, 0.22],
        [0.72, 0.58, 0.36],
        [0.45, 0.20, 0.10],
        [0.42, 0.41, 0.40],
    ],
    dtype=np.float32,
)
IRIS_COLOURS = np.array(
    # Light irises are drawn darker than in life: in a webcam image the eye, under the
    # brow's shadow, reads as a dark spot whatever its colour.
    [[0.25, 0.15, 0.08], [0.12, 0.08, 0.05], [0.16, 0.26, 0.4], [0.2, 0.3, 0.2]],
    dtype=np.float32,
)


def _pick(rng: np.random.Generator, table: np.ndarray, jitter: float) -> tuple[float, float, float]:
    c = table[rng.integers(len(table))] * (1.0 + rng.normal(0.0, jitter, 3))
    r, g, b = np.clip(c, 0.0, 1.0).tolist()
    return (r, g, b)


def sample_face_style(rng: np.random.Generator) -> FaceStyle:
    """A random but plausible face; different draws look like different people."""
    tone = int(rng.integers(len(SKIN_TONES)))
    skin = _pick(rng, SKIN_TONES[tone : tone + 1], 0.04)
    # Darker skin mostly comes with dark hair (the first three colours, and grey).
    dark_hair = np.concatenate([HAIR_COLOURS[:3], HAIR_COLOURS[-1:]])
    hair = _pick(rng, dark_hair if tone >= 4 else HAIR_COLOURS, 0.08)
    lips = tuple(
        float(x) for x in np.clip(np.array(skin) * np.array([0.75, 0.45, 0.45]) + 0.03, 0, 1)
    )
    clothing = tuple(float(x) for x in rng.uniform(0.05, 0.85, 3))
    return FaceStyle(
        skin=skin,
        width=float(rng.uniform(0.70, 0.84)),
        jaw=float(rng.uniform(0.0, 0.30)),
        eye_spacing=float(rng.uniform(0.3, 0.35)),
        eye_size=float(rng.uniform(0.85, 1.15)),
        iris=_pick(rng, IRIS_COLOURS, 0.1),
        brow_thickness=float(rng.uniform(0.045, 0.075)),
        brow_tilt=float(rng.uniform(-0.15, 0.2)),
        nose_length=float(rng.uniform(0.33, 0.45)),
        nose_width=float(rng.uniform(0.09, 0.14)),
        mouth_width=float(rng.uniform(0.17, 0.23)),
        lips=(lips[0], lips[1], lips[2]),
        lip_thickness=float(rng.uniform(0.035, 0.06)),
        hair=hair,
        hair_style=int(rng.integers(4)),
        hairline=float(rng.uniform(-0.72, -0.58)),
        beard=float(rng.choice([0.0, 0.0, 0.0, rng.uniform(0.3, 0.8)])),
        clothing=(clothing[0], clothing[1], clothing[2]),
    )


@dataclass(frozen=True)
class SpriteBank:
    """One identity drawn at one scale, in every pre-rendered mouth and eye state."""

    rgba: np.ndarray  # uint8 [MOUTH_LEVELS, EYE_LEVELS, H, W, 4], straight (not premultiplied)
    inner_mask: np.ndarray  # float32 [H, W] 0..1: the inner face a face swap replaces
    centre: tuple[float, float]  # face centre in sprite pixels (x, y)
    unit_px: float  # pixels per face unit

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return int(self.rgba.shape[3]), int(self.rgba.shape[2])

    def sprite(self, mouth: float, eye: float) -> np.ndarray:
        """The RGBA sprite nearest to mouth opening and eye opening in 0..1."""
        m = round(float(np.clip(mouth, 0.0, 1.0)) * (MOUTH_LEVELS - 1))
        e = round(float(np.clip(eye, 0.0, 1.0)) * (EYE_LEVELS - 1))
        return self.rgba[m, e]


Mask = tuple[slice, slice, np.ndarray]  # rows, columns, coverage 0..1 inside them


class _Canvas:
    """A float RGBA canvas with face-unit coordinates and 'paint over' helpers.

    Shapes are evaluated only inside their bounding box, so small features (eyes, lips,
    nostrils) cost little however large the sprite is.
    """

    def __init__(self, unit_px: float) -> None:
        self.unit = unit_px
        w = round((CANVAS_RIGHT - CANVAS_LEFT) * unit_px) // 2 * 2
        h = round((CANVAS_BOTTOM - CANVAS_TOP) * unit_px) // 2 * 2
        self.cx, self.cy = -CANVAS_LEFT * unit_px, -CANVAS_TOP * unit_px
        self.xs = (np.arange(w, dtype=np.float32) + 0.5 - self.cx) / unit_px
        self.ys = (np.arange(h, dtype=np.float32) + 0.5 - self.cy) / unit_px
        self.x, self.y = np.meshgrid(self.xs, self.ys)
        self.rgb = np.zeros((h, w, 3), np.float32)
        self.alpha = np.zeros((h, w), np.float32)

    def full(self, cover: np.ndarray) -> Mask:
        return (slice(None), slice(None), cover)

    def ellipse(
        self,
        cx: float,
        cy: float,
        rx: float,
        ry: float,
        angle: float = 0.0,
        soft: float = EDGE_PX,
    ) -> Mask:
        """Coverage 0..1 of an ellipse (face units), with an edge `soft` pixels wide."""
        pad = max(rx, ry) + (soft + 2.0) / self.unit
        r0, r1 = np.searchsorted(self.ys, [cy - pad, cy + pad])
        c0, c1 = np.searchsorted(self.xs, [cx - pad, cx + pad])
        rows, cols = slice(int(r0), int(r1)), slice(int(c0), int(c1))
        dx, dy = self.xs[cols][None, :] - cx, self.ys[rows][:, None] - cy
        if angle:
            c, s = np.cos(angle), np.sin(angle)
            dx, dy = c * dx + s * dy, -s * dx + c * dy
        r = np.sqrt((dx / rx) ** 2 + (dy / ry) ** 2)
        dist_px = (r - 1.0) * min(rx, ry) * self.unit
        return rows, cols, np.clip(0.5 - dist_px / soft, 0.0, 1.0)

    @staticmethod
    def times(mask: Mask, other: np.ndarray | float) -> Mask:
        """`mask` multiplied by a full-canvas array (or a number)."""
        rows, cols, cover = mask
        if isinstance(other, np.ndarray):
            return rows, cols, cover * other[rows, cols]
        return rows, cols, cover * other

    @staticmethod
    def within(mask: Mask, other: Mask) -> Mask:
        """`mask` limited to where `other` covers (e.g. an iris inside the open eyelids)."""
        rows, cols, cover = mask
        o_rows, o_cols, o_cover = other
        clip = np.zeros_like(cover)
        r0, r1 = max(rows.start, o_rows.start), min(rows.stop, o_rows.stop)
        c0, c1 = max(cols.start, o_cols.start), min(cols.stop, o_cols.stop)
        if r0 < r1 and c0 < c1:
            clip[r0 - rows.start : r1 - rows.start, c0 - cols.start : c1 - cols.start] = o_cover[
                r0 - o_rows.start : r1 - o_rows.start, c0 - o_cols.start : c1 - o_cols.start
            ]
        return rows, cols, cover * clip

    def paint(self, mask: Mask, colour: np.ndarray | tuple[float, ...]) -> None:
        """Paint `colour` (RGB, or a full-canvas RGB array) over the canvas under `mask`."""
        rows, cols, cover = mask
        c = np.asarray(colour, np.float32)
        if c.ndim == 3:
            c = c[rows, cols]
        a = cover[..., None]
        self.rgb[rows, cols] = self.rgb[rows, cols] * (1.0 - a) + c * a
        self.alpha[rows, cols] = self.alpha[rows, cols] + cover * (1.0 - self.alpha[rows, cols])

    def shade(self, mask: Mask, factor: float) -> None:
        """Multiply the colour by `factor` under `mask` (darken < 1 < brighten)."""
        rows, cols, cover = mask
        self.rgb[rows, cols] *= 1.0 + (factor - 1.0) * cover[..., None]


def _head_cover(cv: _Canvas, st: FaceStyle) -> np.ndarray:
    # An ellipse whose lower half narrows towards the chin.
    narrow = 1.0 - st.jaw * np.clip(cv.y - 0.15, 0.0, None)
    dx = cv.x / (st.width * np.maximum(narrow, 0.3))
    r = np.sqrt(dx**2 + cv.y**2)
    return np.clip(0.5 - (r - 1.0) * st.width * cv.unit / EDGE_PX, 0.0, 1.0)


def _noise(rng: np.random.Generator, shape: tuple[int, int], scale_px: float) -> np.ndarray:
    """Smooth zero-mean noise with features about `scale_px` pixels across."""
    h, w = shape
    sh, sw = max(2, int(h / scale_px)), max(2, int(w / scale_px))
    small = rng.normal(0.0, 1.0, (sh, sw)).astype(np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


# One drawing pass in painter's order (back to front). Its random draws happen in this
# order and the generated dataset's bytes depend on it, so it stays in one piece.
def _render_base(
    st: FaceStyle, unit_px: float, light: tuple[float, float], rng: np.random.Generator
) -> tuple[_Canvas, np.ndarray]:
    """Everything except the eyes and the mouth, which change from frame to frame.

    Returns the canvas and the head's coverage (full canvas), which masks later shading.
    """
    cv = _Canvas(unit_px)
    x, y = cv.x, cv.y
    lx, ly = light
    skin = np.array(st.skin, np.float32)
    hair = np.array(st.hair, np.float32)
    # Torso and neck first, then the head over them.
    rows, cols, shoulders = cv.ellipse(0.0, 2.3, 1.55, 0.85, soft=2.0)
    body = np.clip(0.5 - (np.abs(x) - 1.55) * unit_px / 2.0, 0, 1) * (y > 2.3)
    body[rows, cols] = np.maximum(body[rows, cols], shoulders)
    torso = cv.full(body * (y > 1.45))
    cloth_shade = 0.75 + 0.25 * np.clip(1.0 - np.abs(x) / 1.6, 0, 1) + 0.08 * lx * x
    cv.paint(torso, np.array(st.clothing, np.float32)[None, None] * cloth_shade[..., None])
    if st.hair_style == 1:  # long hair falls behind the head and neck onto the shoulders
        back = cv.times(cv.ellipse(0.0, 0.25, st.width + 0.2, 1.3, soft=2.0), y < 1.6)
        cv.paint(back, hair * 0.85)
    neck = np.clip(0.5 - (np.abs(x) - st.width * 0.45) * unit_px, 0, 1) * (y > 0.4) * (y < 1.75)
    cv.paint(cv.full(neck), skin * 0.78)
    cv.shade(cv.times(cv.ellipse(0.0, 1.62, 0.75, 0.12, soft=3.0), y > 1.45), 0.9)  # collar
    for side in (-1.0, 1.0):  # ears, behind the head outline
        cv.paint(cv.ellipse(side * st.width * 0.98, 0.0, 0.1, 0.19), skin * 0.85)
    head = _head_cover(cv, st)
    # Lambert shading of an ellipsoid lit from (lx, ly, front).
    nx = np.clip(x / st.width, -1, 1)
    ny = np.clip(y, -1, 1)
    nz = np.sqrt(np.clip(1.0 - nx**2 - ny**2, 0.0, 1.0))
    lz = np.sqrt(max(0.0, 1.0 - lx * lx - ly * ly))
    lambert = np.clip(nx * lx + ny * ly + nz * lz, 0.0, 1.0)
    tone = (0.68 + 0.4 * lambert) * (1.0 + 0.03 * _noise(rng, x.shape, 0.08 * unit_px))
    colour = skin[None, None] * tone[..., None]
    cv.paint(cv.full(head), colour)
    # Under-brow eye sockets: the darker band the Haar cascade looks for.
    for side in (-1.0, 1.0):
        socket = cv.ellipse(side * st.eye_spacing, EYE_Y - 0.03, 0.2, 0.13, soft=0.12 * unit_px)
        cv.shade(cv.times(socket, head), 0.6)
    bridge = cv.ellipse(0.0, EYE_Y + 0.35, 0.07, 0.35, soft=0.1 * unit_px)
    cv.shade(cv.times(bridge, head), 1.08)
    # Nose: a shadow on the side away from the light, nostrils, a lit tip.
    tip = EYE_Y + st.nose_length
    away = -1.0 if lx >= 0 else 1.0
    cv.shade(
        cv.ellipse(away * st.nose_width * 0.8, tip - 0.12, 0.05, 0.2, soft=0.08 * unit_px), 0.82
    )
    cv.shade(cv.ellipse(0.0, tip + 0.035, st.nose_width * 1.3, 0.05, soft=0.06 * unit_px), 0.85)
    for side in (-1.0, 1.0):
        cv.paint(cv.ellipse(side * st.nose_width * 0.55, tip + 0.03, 0.04, 0.022), skin * 0.35)
    cv.shade(cv.ellipse(0.0, tip - 0.04, 0.05, 0.04, soft=0.05 * unit_px), 1.1)
    # Jaw shadow and stubble.
    jaw = cv.ellipse(0.0, 0.85, st.width * 0.7, 0.2, soft=0.15 * unit_px)
    cv.shade(cv.times(jaw, head), 0.93)
    if st.beard > 0:
        grain = np.clip(0.7 + 0.3 * _noise(rng, x.shape, 0.03 * unit_px), 0, 1)
        region = np.clip((y - (MOUTH_Y - 0.25)) * 4.0, 0, 1) * head * grain * st.beard
        cv.shade(cv.full(region), 0.7)
    # Brows, always darker than the skin: the dark band over the eyes is what the Haar
    # cascade (and a human eye) reads as "eyes here".
    brow_colour = np.minimum(hair * 0.8, skin * 0.45)
    for side in (-1.0, 1.0):
        brow = cv.ellipse(
            side * st.eye_spacing,
            EYE_Y - 0.2,
            0.16,
            st.brow_thickness,
            angle=-side * st.brow_tilt,
            soft=1.5,
        )
        cv.paint(cv.times(brow, 0.9), brow_colour)
    # Hair on top (the shaved style leaves a thin shadow).
    line = y < st.hairline + 0.28 * (x / st.width) ** 2
    top = cv.times(cv.ellipse(0.0, -0.08, st.width + 0.07, 1.06, soft=1.5), line)
    if st.hair_style == 2:
        cv.paint(cv.times(top, 0.45), hair * 0.9)
    else:
        cover = np.zeros_like(head)
        cover[top[0], top[1]] = top[2]
        if st.hair_style == 3:
            rows, cols, bun = cv.ellipse(0.0, -0.95, st.width * 0.85, 0.32, soft=2.0)
            cover[rows, cols] = np.maximum(cover[rows, cols], bun)
        if st.hair_style == 1:
            rows, cols, sides = cv.times(
                cv.ellipse(0.0, 0.1, st.width + 0.12, 1.15, soft=2.0),
                (np.abs(x) > st.width * 0.9) & (y < 0.35),  # temples, not cheeks or jaw
            )
            cover[rows, cols] = np.maximum(cover[rows, cols], sides)
        # The hair's soft contact shadow on the forehead and temples: the edge that sets
        # a face apart from hair of nearly its own colour, as in a photograph.
        shadow = cv2.GaussianBlur(cover, (0, 0), max(1.0, 0.07 * unit_px))
        cv.shade(cv.full(shadow * head), 0.6)
        strands = 0.9 + 0.1 * _noise(rng, x.shape, 0.06 * unit_px)
        cv.paint(cv.full(cover), hair[None, None] * strands[..., None])
    return cv, head


def _draw_eyes(cv: _Canvas, st: FaceStyle, openness: float) -> None:
    skin = np.array(st.skin, np.float32)
    rx, ry = 0.135 * st.eye_size, 0.06 * st.eye_size
    for side in (-1.0, 1.0):
        ex = side * st.eye_spacing
        if openness > 0.05:
            white = cv.ellipse(ex, EYE_Y, rx, ry * openness)
            cv.paint(white, (0.62, 0.6, 0.57))  # in the socket's shadow
            r_iris = 0.06 * st.eye_size
            cv.paint(cv.within(cv.ellipse(ex, EYE_Y, r_iris, r_iris), white), st.iris)
            cv.paint(cv.within(cv.ellipse(ex, EYE_Y, 0.025, 0.025), white), (0.03, 0.03, 0.03))
            glint = cv.ellipse(ex + 0.015, EYE_Y - 0.015, 0.008, 0.008)
            cv.paint(cv.within(glint, white), (1.0, 1.0, 1.0))
        # Upper lid line (lashes), lowered as the eye closes.
        lid_y = EYE_Y - ry * max(openness, 0.0) * 0.9
        cv.paint(cv.ellipse(ex, lid_y, rx * 1.05, 0.025, soft=1.2), skin * 0.2)
        if openness < 1.0:
            cv.shade(cv.ellipse(ex, EYE_Y - 0.06, rx * 1.1, 0.05, soft=1.5), 0.95)


def _draw_mouth(cv: _Canvas, st: FaceStyle, openness: float) -> None:
    lips = np.array(st.lips, np.float32)
    w = st.mouth_width * (1.0 - 0.12 * openness)
    gap = 0.16 * openness  # jaw drop, face units
    upper_y = MOUTH_Y - st.lip_thickness * 0.6
    lower_y = MOUTH_Y + gap + st.lip_thickness * 0.7
    cv.paint(cv.ellipse(0.0, upper_y, w, st.lip_thickness), lips * 0.92)
    cv.paint(cv.ellipse(0.0, lower_y, w * 0.9, st.lip_thickness * 1.15), lips)
    if gap > 0.01:
        inner = cv.ellipse(0.0, MOUTH_Y + gap * 0.5, w * 0.85, gap * 0.5 + 0.01)
        cv.paint(inner, (0.12, 0.04, 0.04))
        teeth = cv.ellipse(0.0, MOUTH_Y + 0.008, w * 0.6, min(0.03, gap * 0.3))
        cv.paint(cv.within(teeth, inner), (0.85, 0.83, 0.78))
        tongue = cv.ellipse(0.0, MOUTH_Y + gap, w * 0.55, gap * 0.3)
        cv.paint(cv.within(tongue, inner), (0.55, 0.22, 0.22))
    else:
        cv.paint(cv.ellipse(0.0, MOUTH_Y, w * 0.95, 0.01, soft=1.2), lips * 0.35)


def render_sprites(
    st: FaceStyle, unit_px: float, light: tuple[float, float], seed: int
) -> SpriteBank:
    """Draw `st` at `unit_px` pixels per face unit in every mouth and eye state."""
    rng = np.random.default_rng(seed)
    base, _ = _render_base(st, unit_px, light, rng)
    h, w = base.alpha.shape
    out = np.zeros((MOUTH_LEVELS, EYE_LEVELS, h, w, 4), np.uint8)
    alpha = _to_u8(base.alpha)
    # Eyes and mouth are far apart: draw each set of eye states and mouth states once,
    # on separate copies, and splice them at the line halfway between.
    split = round(base.cy + ((EYE_Y + MOUTH_Y) / 2) * unit_px)
    eye_rgb = []
    for e in range(EYE_LEVELS):
        cv = _copy(base)
        _draw_eyes(cv, st, e / (EYE_LEVELS - 1))
        eye_rgb.append(_to_u8(cv.rgb[:split]))
    for m in range(MOUTH_LEVELS):
        cv = _copy(base)
        _draw_mouth(cv, st, m / (MOUTH_LEVELS - 1))
        mouth_rgb = _to_u8(cv.rgb[split:])
        for e in range(EYE_LEVELS):
            out[m, e, :split, :, :3] = eye_rgb[e]
            out[m, e, split:, :, :3] = mouth_rgb
            out[m, e, :, :, 3] = alpha
    cx, cy, rx, ry = INNER_FACE
    rows, cols, cover = base.ellipse(cx, cy, rx * st.width, ry, soft=0.12 * unit_px)
    inner = np.zeros_like(base.alpha)
    inner[rows, cols] = cover
    return SpriteBank(rgba=out, inner_mask=inner, centre=(base.cx, base.cy), unit_px=unit_px)


def _to_u8(a: np.ndarray) -> np.ndarray:
    return (np.clip(a, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _copy(cv: _Canvas) -> _Canvas:
    new = object.__new__(_Canvas)
    new.__dict__.update(cv.__dict__)
    new.rgb = cv.rgb.copy()
    new.alpha = cv.alpha.copy()
    return new
