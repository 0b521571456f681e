"""Frame rendering: background + warped face sprite + camera (exposure, white balance, noise).

Per frame the renderer only picks a pre-drawn sprite for the mouth and eye state, warps
it with the head pose (cv2.warpAffine on the sprite's bounding box) and blends it over a
pre-drawn background; face manipulations that must act on the composed frame (a face
re-rendered at low resolution, the flicker and missing sensor noise of a generated face)
are applied inside the warped inner-face mask.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from train.synth.faces import SpriteBank
from train.synth.scene import Scene

NOISE_MARGIN = 16  # px: the sensor-noise field is this much larger than the frame, and
# each frame takes a window of it at a random offset (fresh-looking noise, drawn once)


@dataclass(frozen=True)
class FaceTracks:
    """What the face does in every frame."""

    mouth: np.ndarray  # float32 [n] opening 0..1
    eyes: np.ndarray  # float32 [n] opening 0..1
    pose: np.ndarray  # float32 [n, 4]: dx px, dy px, roll degrees, scale
    exposure: np.ndarray  # float32 [n] global brightness gain


@dataclass(frozen=True)
class FaceFx:
    """Per-frame traces of a generated face, inside the inner-face mask."""

    lowres_factor: float = 1.0  # face down- and up-sampled by this factor (1 = untouched)
    noise_keep: float = 1.0  # fraction of the camera's sensor noise the face keeps
    flicker: float = 0.0  # std of a per-frame brightness jitter of the face


def _noise_field(scene: Scene) -> tuple[np.ndarray, np.ndarray]:
    """Sensor noise as (positive, negative) uint8 fields for saturating add/subtract."""
    rng = np.random.default_rng(scene.seed + 4)
    shape = (scene.height + NOISE_MARGIN, scene.width + NOISE_MARGIN, 3)
    n = np.rint(rng.standard_normal(shape, dtype=np.float32) * scene.camera_noise)
    return np.clip(n, 0, 255).astype(np.uint8), np.clip(-n, 0, 255).astype(np.uint8)


def white_balance(image: np.ndarray, wb: tuple[float, float, float]) -> np.ndarray:
    """Apply per-channel gains to an RGB or RGBA uint8 image (alpha untouched)."""
    out = image.copy()
    for c in range(3):
        out[..., c] = np.clip(image[..., c].astype(np.float32) * wb[c] + 0.5, 0, 255)
    return out


def _affine(scene: Scene, bank: SpriteBank, pose: np.ndarray) -> np.ndarray:
    dx, dy, roll, scale = (float(v) for v in pose)
    cx, cy = bank.centre
    m = cv2.getRotationMatrix2D((cx, cy), roll, scale)
    m[0, 2] += scene.face_x * scene.width + dx - cx
    m[1, 2] += scene.face_y * scene.height + dy - cy
    return m


def _roi(m: np.ndarray, size: tuple[int, int], frame: tuple[int, int]) -> tuple[int, int, int, int]:
    """Bounding box (x0, y0, x1, y1) in the frame of a sprite of `size` warped by `m`."""
    w, h = size
    corners = np.array([[0, 0, 1], [w, 0, 1], [0, h, 1], [w, h, 1]], np.float64)
    pts = corners @ m.T
    x0, y0 = np.floor(pts.min(axis=0)).astype(int)
    x1, y1 = np.ceil(pts.max(axis=0)).astype(int)
    fw, fh = frame
    return max(0, x0), max(0, y0), min(fw, x1), min(fh, y1)


def _lowres(patch: np.ndarray, factor: float) -> np.ndarray:
    h, w = patch.shape[:2]
    small = cv2.resize(
        patch, (max(2, int(w / factor)), max(2, int(h / factor))), interpolation=cv2.INTER_AREA
    )
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def _blend(a: np.ndarray, b: np.ndarray, weight_a: np.ndarray) -> np.ndarray:
    """a * w + b * (1 - w) for uint8 images and a float32 weight map."""
    return cv2.blendLinear(a, b, weight_a, 1.0 - weight_a)


def _crop_affine(
    m: np.ndarray, offset: tuple[int, int], size: tuple[int, int], frame: tuple[int, int]
) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Warp for a crop of the sprite starting at `offset`, into its own frame bounding box."""
    shifted = m.copy()
    shifted[:, 2] += m[:, :2] @ np.asarray(offset, np.float64)
    box = _roi(shifted, size, frame)
    shifted[:, 2] -= box[:2]
    return shifted, box


def render_frames(
    scene: Scene,
    bank: SpriteBank,
    tracks: FaceTracks,
    background: np.ndarray,
    fx: FaceFx | None = None,
) -> Iterator[np.ndarray]:
    """Yield the clip's RGB uint8 frames [height, width, 3].

    `bank` and `background` must already carry the scene's white balance.
    """
    rng = np.random.default_rng(scene.seed + 5)
    noise_pos, noise_neg = _noise_field(scene)
    fx_rng = np.random.default_rng(scene.seed + 6)  # consumed only by fakes
    rows, cols = np.nonzero(bank.inner_mask > 0.0)
    mx0, my0 = int(cols.min()), int(rows.min())
    face_mask = (bank.inner_mask[my0 : rows.max() + 1, mx0 : cols.max() + 1] * 255 + 0.5).astype(
        np.uint8
    )
    face_size = (face_mask.shape[1], face_mask.shape[0])
    frame_size = (scene.width, scene.height)
    h, w = scene.height, scene.width
    for i in range(scene.n_frames):
        frame = background.copy()
        sprite = bank.sprite(float(tracks.mouth[i]), float(tracks.eyes[i]))
        m = _affine(scene, bank, tracks.pose[i])
        m_roi, (x0, y0, x1, y1) = _crop_affine(m, (0, 0), bank.size, frame_size)
        warped = cv2.warpAffine(
            sprite, m_roi, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0, 0)
        )
        alpha = warped[..., 3].astype(np.float32) * (1.0 / 255.0)
        rgb = cv2.cvtColor(warped, cv2.COLOR_RGBA2RGB)
        frame[y0:y1, x0:x1] = _blend(rgb, frame[y0:y1, x0:x1], alpha)
        face_w: np.ndarray | None = None
        fx0 = fy0 = fx1 = fy1 = 0
        if fx is not None:
            m_face, (fx0, fy0, fx1, fy1) = _crop_affine(m, (mx0, my0), face_size, frame_size)
            face_w = cv2.warpAffine(face_mask, m_face, (fx1 - fx0, fy1 - fy0))
            face_w = face_w.astype(np.float32) * (1.0 / 255.0)
            roi = frame[fy0:fy1, fx0:fx1]
            if fx.lowres_factor > 1.0:
                roi[:] = _blend(_lowres(roi, fx.lowres_factor), roi, face_w)
            if fx.flicker > 0.0:
                gain = 1.0 + fx.flicker * float(fx_rng.standard_normal())
                roi[:] = _blend(cv2.convertScaleAbs(roi, alpha=gain), roi, face_w)
        frame = cv2.convertScaleAbs(frame, alpha=float(tracks.exposure[i]))
        keep_clean = face_w is not None and fx is not None and fx.noise_keep < 1.0
        clean = frame[fy0:fy1, fx0:fx1].copy() if keep_clean else None
        ox, oy = (int(v) for v in rng.integers(0, NOISE_MARGIN, 2))
        cv2.add(frame, noise_pos[oy : oy + h, ox : ox + w], dst=frame)
        cv2.subtract(frame, noise_neg[oy : oy + h, ox : ox + w], dst=frame)
        if clean is not None and face_w is not None and fx is not None:
            # A generated face lacks (part of) the camera's sensor noise.
            roi = frame[fy0:fy1, fx0:fx1]
            roi[:] = _blend(clean, roi, face_w * (1.0 - fx.noise_keep))
        yield frame
