"""Face landmarks → an upright, canonically placed crop, and tracking that follows them.

The CNN detector gives five landmarks per face (eyes, nose tip, mouth corners). From them
a `FacePose` is fitted: the roll is the angle of the eye line, and with that rotation
fixed, the face's centre and size are the least-squares fit of the five points to a
canonical frontal face (TEMPLATE). The crop is then a square rotated by the roll, so a
tilted head gives an upright face, and every face's landmarks land at the same place of
its crop: the mouth band the lip-sync path reads (train/model/config.py MOUTH_BOX) is
where the mouth is, not where a box's lower rows happen to be.

Between detections, `PointTracker` follows the face with pyramidal Lucas-Kanade optical
flow of the landmarks and of corners inside the face, checked forwards and backwards; a
similarity transform fitted to the points that survive moves the landmarks, so the
tracked pose rolls and scales with the head.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from monitor.media.crop_geometry import PadMode, crop_square

# Canonical five landmarks of a frontal face (x, y), in units of the face's size (the
# height of CenterFace's box), origin at the box centre, y down; measured on the
# astronaut and Grace Hopper photographs (tests/monitor/media/test_face_photos.py) and
# made symmetric.
TEMPLATE = np.array(
    [[-0.19, -0.15], [0.19, -0.15], [0.0, 0.045], [-0.15, 0.225], [0.15, 0.225]],
    dtype=np.float64,
)
MOUTH_Y = 0.225  # the mouth corners' line in TEMPLATE units
MAX_ROLL_DEG = 70.0  # an eye line steeper than this is clamped (eyes confused, not a roll)
# A Haar box (no landmarks) as a pose: its side is about this x the CNN face size, and its
# centre sits this x the size above the CNN box's centre (astronaut, Grace Hopper and the
# synthetic faces: 0.93-1.13, 0.03-0.05), so a face found by the fallback is framed alike.
HAAR_SIZE_RATIO = 1.0 / 1.05
HAAR_CENTRE_SHIFT = 0.04
# centerface-2 (`crop_once`): a face rolled less than this is cut as an upright square on
# the frame's pixel grid, so at unit scale its crop is the frame's own pixels.
ROLL_SNAP_DEG = 3.0

TRACK_WIN = 15  # px, Lucas-Kanade window at detection scale
TRACK_LEVELS = 3  # pyramid levels
TRACK_FB_MAX = 1.0  # px, largest forward-backward error of a point kept
TRACK_MIN_POINTS = 4  # fewer surviving points: the track is lost
TRACK_CORNERS = 16  # extra corners sampled inside the face at each detection
TRACK_MAX_STEP = 0.35  # a frame's move or size change beyond this x face size: lost


@dataclass(frozen=True)
class FacePose:
    """Where a face is: centre (x, y), size (px, CNN box height) and roll (radians)."""

    cx: float
    cy: float
    size: float
    roll: float  # clockwise in the image (y down): the right eye lower than the left

    def as_array(self) -> np.ndarray:
        return np.array([self.cx, self.cy, self.size, self.roll])

    @staticmethod
    def from_array(a: np.ndarray) -> FacePose:
        return FacePose(float(a[0]), float(a[1]), float(a[2]), float(a[3]))

    def scaled(self, factor: float) -> FacePose:
        return FacePose(self.cx * factor, self.cy * factor, self.size * factor, self.roll)

    def box(self) -> tuple[float, float, float, float]:
        """The upright square of side `size` around the centre (x, y, w, h)."""
        return (self.cx - self.size / 2, self.cy - self.size / 2, self.size, self.size)

    def landmarks(self) -> np.ndarray:
        """TEMPLATE placed at this pose: where the five landmarks are expected [5, 2]."""
        c, s = math.cos(self.roll), math.sin(self.roll)
        rot = np.array([[c, -s], [s, c]])
        return (TEMPLATE * self.size) @ rot.T + (self.cx, self.cy)


def roll_of(landmarks: np.ndarray) -> float:
    """The eye line's angle in radians (0 = level), clamped to +-MAX_ROLL_DEG."""
    (lx, ly), (rx, ry) = landmarks[0], landmarks[1]
    angle = math.atan2(ry - ly, rx - lx)
    limit = math.radians(MAX_ROLL_DEG)
    return min(max(angle, -limit), limit)


def fit_pose(landmarks: np.ndarray) -> FacePose:
    """The pose whose TEMPLATE best matches the five landmarks, roll from the eye line."""
    roll = roll_of(landmarks)
    c, s = math.cos(roll), math.sin(roll)
    # Undo the roll, then fit scale and shift: u_i ~ d + size * t_i (least squares).
    u = landmarks @ np.array([[c, -s], [s, c]])  # rows rotated by -roll
    t = TEMPLATE
    uc, tc = u - u.mean(axis=0), t - t.mean(axis=0)
    size = float((uc * tc).sum() / (tc * tc).sum())
    d = u.mean(axis=0) - size * t.mean(axis=0)
    cx, cy = c * d[0] - s * d[1], s * d[0] + c * d[1]
    return FacePose(float(cx), float(cy), max(size, 1.0), roll)


def pose_from_box(box: tuple[float, float, float, float]) -> FacePose:
    """A Haar box (x, y, w, h) as an upright pose framed like a CNN face."""
    x, y, w, h = box
    size = max(w, h) / HAAR_SIZE_RATIO
    return FacePose(x + w / 2, y + h / 2 + HAAR_CENTRE_SHIFT * size, size, 0.0)


def crop_rotated(
    image: np.ndarray,
    centre: tuple[float, float],
    side: float,
    roll: float,
    size: int,
    border: int = cv2.BORDER_CONSTANT,
) -> np.ndarray:
    """A `side`-pixel square centred on `centre`, turned by `roll`, resized to `size`.

    The face comes out upright. Shrinking happens first, with area averaging, on the
    axis-aligned square that holds the turned one, so a big face does not alias; the
    rotation is then done at about the output's scale.
    """
    h, w = image.shape[:2]
    c, s = abs(math.cos(roll)), abs(math.sin(roll))
    outer = side * (c + s) + 4.0  # px: the axis-aligned square around the turned one
    factor = min(1.0, size / side)  # shrink first, never enlarge before rotating
    out_px = max(1, math.ceil(outer * factor))
    # The outer square in frame pixels, padded where it leaves the frame.
    o = max(1, round(outer))
    x0, y0 = round(centre[0] - o / 2), round(centre[1] - o / 2)
    cx0, cy0, cx1, cy1 = max(0, x0), max(0, y0), min(w, x0 + o), min(h, y0 + o)
    if cx1 <= cx0 or cy1 <= cy0:
        return np.zeros((size, size, 3), np.uint8)
    patch = image[cy0:cy1, cx0:cx1]
    pads = (cy0 - y0, y0 + o - cy1, cx0 - x0, x0 + o - cx1)
    if any(pads):
        patch = cv2.copyMakeBorder(patch, *pads, border, value=(0, 0, 0))
    if out_px != o:
        interp = cv2.INTER_AREA if out_px < o else cv2.INTER_LINEAR
        patch = cv2.resize(patch, (out_px, out_px), interpolation=interp)
    k = out_px / o  # patch pixels per frame pixel
    # The centre's place in the (resized) patch, then rotate about it and scale to size.
    pcx, pcy = (centre[0] - x0) * k, (centre[1] - y0) * k
    scale = size / (side * k)
    m = cv2.getRotationMatrix2D((pcx, pcy), math.degrees(roll), scale)
    m[0, 2] += size / 2 - pcx
    m[1, 2] += size / 2 - pcy
    out = cv2.warpAffine(
        patch, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=border, borderValue=(0, 0, 0)
    )
    return np.asarray(out, dtype=np.uint8)


def crop_once(
    image: np.ndarray,
    centre: tuple[float, float],
    side: float,
    roll: float,
    size: int,
    border: int = cv2.BORDER_CONSTANT,
) -> tuple[np.ndarray, float]:
    """The crop of `crop_rotated`, resampled once from the frame; returns (crop, roll used).

    `crop_rotated` shrinks, then rotates at sub-pixel offsets: two interpolations, the
    second a bilinear blur even at a 1° roll, which takes about a tenth of the crop's fine
    detail (MODEL_CARD "The CNN cropper, before and after"). Here a face rolled less than
    ROLL_SNAP_DEG is cut upright on the pixel grid and resized once (area averaging when
    shrinking), as the Haar cropper does; a face rolled more is low-passed for the shrink
    (no resampling) and rotated and scaled straight from the frame in one warp.
    """
    if abs(roll) < math.radians(ROLL_SNAP_DEG):
        pad_mode: PadMode = "edge" if border == cv2.BORDER_REPLICATE else "constant"
        return crop_square(image, centre, side, size, pad_mode), 0.0
    scale = size / side
    sigma = (1.0 / scale - 1.0) / 2.0 if scale < 1.0 else 0.0  # anti-alias (skimage's rule)
    h, w = image.shape[:2]
    c, s = abs(math.cos(roll)), abs(math.sin(roll))
    # px: half the axis-aligned square around the turned one, plus the blur's reach
    half = side * (c + s) / 2 + 2.0 + 3.0 * sigma
    x0, y0 = max(0, math.floor(centre[0] - half)), max(0, math.floor(centre[1] - half))
    x1, y1 = min(w, math.ceil(centre[0] + half)), min(h, math.ceil(centre[1] + half))
    if x1 <= x0 or y1 <= y0:
        return np.zeros((size, size, 3), np.uint8), roll
    patch = image[y0:y1, x0:x1]
    if sigma > 0.0:
        patch = cv2.GaussianBlur(patch, (0, 0), sigma)
    pc = (centre[0] - x0, centre[1] - y0)
    m = cv2.getRotationMatrix2D(pc, math.degrees(roll), scale)
    m[0, 2] += size / 2 - pc[0]
    m[1, 2] += size / 2 - pc[1]
    out = cv2.warpAffine(
        patch, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=border, borderValue=(0, 0, 0)
    )
    return np.asarray(out, dtype=np.uint8), roll


def template_in_crop(crop_side: float, face_size: float) -> np.ndarray:
    """Where TEMPLATE's points land in a crop, as fractions of its side [5, 2] (x, y)."""
    return 0.5 + TEMPLATE * face_size / crop_side


class PointTracker:
    """Follows one face between detections by optical flow (detection-scale grey frames)."""

    def __init__(self) -> None:
        self._grey: np.ndarray | None = None
        self._points: np.ndarray | None = None  # float32 [n, 1, 2]
        self.landmarks: np.ndarray | None = None  # [5, 2], detection scale

    def start(self, grey: np.ndarray, landmarks: np.ndarray, pose: FacePose) -> None:
        """Track from this frame on, starting at these landmarks."""
        x, y, side, _ = pose.box()
        mask = np.zeros_like(grey)
        x0, y0 = max(0, round(x)), max(0, round(y))
        x1, y1 = min(grey.shape[1], round(x + side)), min(grey.shape[0], round(y + side))
        extra = np.zeros((0, 1, 2), np.float32)
        if x1 - x0 > 4 and y1 - y0 > 4:
            mask[y0:y1, x0:x1] = 255
            found = cv2.goodFeaturesToTrack(
                grey, TRACK_CORNERS, 0.01, max(2.0, side / 12), mask=mask
            )
            if found is not None:
                extra = np.asarray(found, np.float32).reshape(-1, 1, 2)
        self._grey = grey
        self.landmarks = np.asarray(landmarks, np.float64).copy()
        self._points = np.concatenate([self.landmarks.reshape(-1, 1, 2).astype(np.float32), extra])

    def follow(self, grey: np.ndarray, size: float) -> np.ndarray | None:
        """The landmarks moved into this frame, or None when the face cannot be followed."""
        if self._grey is None or self._points is None or self.landmarks is None:
            return None
        if self._grey.shape != grey.shape:
            return None
        nxt, st = _flow(self._grey, grey, self._points)
        if nxt is None:
            return None
        back, st_b = _flow(grey, self._grey, nxt)
        if back is None:
            return None
        fb = np.linalg.norm((back - self._points).reshape(-1, 2), axis=1)
        good = (st.ravel() == 1) & (st_b.ravel() == 1) & (fb < TRACK_FB_MAX)
        if int(good.sum()) < TRACK_MIN_POINTS:
            return None
        src = self._points.reshape(-1, 2)[good]
        dst = nxt.reshape(-1, 2)[good]
        m, _ = cv2.estimateAffinePartial2D(
            src, dst, method=cv2.RANSAC, ransacReprojThreshold=max(1.0, size / 40)
        )
        if m is None:
            return None
        step = float(np.hypot(m[0, 2], m[1, 2]))
        zoom = float(np.hypot(m[0, 0], m[1, 0]))
        moved = self.landmarks @ m[:, :2].T + m[:, 2]
        shift = float(np.linalg.norm(moved.mean(axis=0) - self.landmarks.mean(axis=0)))
        if shift > TRACK_MAX_STEP * size or abs(zoom - 1.0) > TRACK_MAX_STEP or step != step:
            return None
        self._grey = grey
        self._points = dst.reshape(-1, 1, 2).astype(np.float32)
        self.landmarks = moved
        return moved

    def reset(self) -> None:
        self._grey, self._points, self.landmarks = None, None, None


def _flow(a: np.ndarray, b: np.ndarray, points: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
    """Pyramidal Lucas-Kanade: where `points` of grey image `a` went in `b`, and status."""
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 20, 0.03)
    moved, status, _ = cv2.calcOpticalFlowPyrLK(
        a,
        b,
        points,
        None,  # type: ignore[call-overload]
        winSize=(TRACK_WIN, TRACK_WIN),
        maxLevel=TRACK_LEVELS,
        criteria=criteria,
    )
    if moved is None:
        return None, np.zeros(0)
    return np.asarray(moved, np.float32), np.asarray(status)
