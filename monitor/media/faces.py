"""Face detection, tracking and crops: the one path from a video frame to a face crop.

Training caches, offline scoring and the live monitor all crop faces with `FaceCropper`,
so the detector sees identical crops wherever it runs. The model's input contract names
the cropper (`InputContract.cropper`) and `FaceCropper.from_contract` builds that one, so
a model is always fed the crops it was trained on.

`centerface-1` (the default): every `detect_every` frames, or when tracking is lost, the
CNN detector (CenterFace through onnxruntime, monitor/media/centerface.py) runs on a copy
of the frame downscaled to `detect_long_side`, and gives the faces with five landmarks.
From the landmarks a pose is fitted (monitor/media/landmarks.py): the roll from the eye
line, centre and size from all five points, so the crop is a square turned upright
around the face, with the landmarks at the same place in every crop. A face the CNN
scores under its threshold but above CNN_WEAK_SCORE is accepted when a Haar cascade finds
it too (the last fallback, counted in `stats.haar_fallback`); Haar alone never adds a
face. In between detections, optical flow follows the landmarks and corners of the face.

`haar-2` (models trained before the CNN): OpenCV's Haar cascades and patch correlation
(monitor/media/haar.py), upright crops around the box; its crops are unchanged.

Both: poses are smoothed (a speed-adaptive EMA) so crops do not jitter. The crop is a
square around the face plus `margin` (fraction of the face size per side), padded with
zeros (or edge pixels) where it leaves the frame, so the face stays centred and at the
same scale. With `max_downscale` (the contract's max_crop_downscale), a face so big that
its square would shrink more than that is cut tighter around its centre instead, so the
pixels keep their detail: the margin goes, down to the face itself and never into it.
When no face is found the crop is the frame's centre square, flagged `found=False`,
counted and logged (rate-limited) with the stream's name; while no face is tracked,
detection runs on every frame, or every `idle_detect_every` frames on faceless streams.

A cropper holds one stream's state and is not itself thread-safe; use one per stream. The
detectors are loaded once per process and shared.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np

from monitor.contract import (
    CROPPER_CNN,
    CROPPER_HAAR,
    CROPPERS,
    DEFAULT_CROP_MARGIN,
    DEFAULT_CROP_SIZE,
    DEFAULT_CROPPER,
    InputContract,
)
from monitor.media.centerface import SCORE_THRESHOLD, CenterFace, Faces
from monitor.media.haar import (
    JITTER_FRACTION,
    JUMP_RESET_FRACTION,
    MIN_FACE_SIDE,
    MIN_NEIGHBORS,
    SCALE_FACTOR,
    SIZE_RESET_RATIO,
    TRACK_MIN_SCORE,
    HaarDetector,
    HaarLocator,
    load_cascade,
    pick_face,
)
from monitor.media.landmarks import (
    FacePose,
    PointTracker,
    crop_rotated,
    fit_pose,
    pose_from_box,
)

__all__ = [
    "CROPPER_VERSION",
    "CropResult",
    "CropStats",
    "FaceCropper",
    "FoundFace",
    "as_rgb_frame",
    "centre_crop",
    "crop_square",
    "load_cascade",
]

logger = logging.getLogger(__name__)

DETECT_LONG_SIDE = 320  # px; frames are downscaled to this longest side for detection
DEFAULT_DETECT_EVERY = 5  # frames; full detection this often while tracking holds
DEFAULT_MAX_MISSES = 3  # detector runs in a row not confirming the face before it is dropped
DEFAULT_SMOOTHING = 0.5  # EMA weight kept from the previous pose (0 = raw poses)
MIN_IMAGE_SIDE = 16  # px; smaller frames cannot hold a face worth scoring
FALLBACK_LOG_INTERVAL_S = 30.0  # seconds between "no face" log lines of one cropper
CNN_WEAK_SCORE = 0.2  # a CNN face scored between this and SCORE_THRESHOLD needs Haar to agree
ROLL_RESET_RAD = math.radians(20)  # roll changed more than this: snap, do not smooth
REFINE_ROLL_RAD = math.radians(12)  # a face rolled more is detected again, turned upright
REFINE_REGION = 2.0  # x the face size: the region turned upright for the second look
REFINE_PX = 128  # px, side of that region (a multiple of the CNN's 32)

CROPPER_VERSION = 2  # the Haar cropper's version (contract cropper "haar-2"); caches of
# Haar contracts key on it. 2: the second-chance cascade. The CNN cropper's version is its
# name in the contract (CROPPER_CNN): bump that when the same frames give other crops.
CROP_CAP_VERSION = 2  # bump when crops under a max_downscale cap change (only capped
# contracts' caches key on it); 2: the cap stops at the face box
Box = tuple[int, int, int, int]  # x, y, w, h in image pixels
Source = Literal["detected", "tracked", "fallback"]
PadMode = Literal["constant", "edge"]
Detector = Literal["cnn", "haar", "haar-alt2"]


@dataclass(frozen=True)
class CropResult:
    """One frame's face crop."""

    image: np.ndarray  # uint8 [crop_size, crop_size, 3] RGB
    found: bool  # a face was detected or tracked in this frame (False = fallback crop)
    box: Box | None  # the (smoothed) face box the crop is built on; None for the fallback
    source: Source  # how the box was obtained
    roll_deg: float = 0.0  # the crop is turned by this much to make the face upright
    landmarks: np.ndarray | None = None  # float [5, 2] frame pixels (CNN cropper), or None
    pose: FacePose | None = None  # the smoothed pose the crop is cut at (CNN cropper)


@dataclass
class CropStats:
    """Counters of one cropper since it was made (reset() keeps them)."""

    frames: int = 0  # frames cropped
    detected: int = 0  # crops from a fresh detection
    tracked: int = 0  # crops from the tracker
    fallback: int = 0  # centre crops, no face found
    detector_runs: int = 0  # full-frame detections run (the expensive part)
    second_chance: int = 0  # detections that only the second cascade made
    haar_fallback: int = 0  # CNN cropper: faces the CNN scored low, accepted as Haar found them

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class FoundFace:
    """One face of a frame (FaceCropper.find_faces), in frame pixels."""

    box: tuple[float, float, float, float]  # x, y, w, h
    score: float  # the CNN's score (a Haar-only face: the CNN's weak score there, or 0)
    detector: Detector  # which detector accepted it
    landmarks: np.ndarray | None  # float [5, 2] (eyes, nose, mouth corners), None for Haar
    pose: FacePose  # centre, size and roll the crop is built on


@dataclass
class _CnnTrack:
    """The face being followed by the CNN cropper, in frames of one size."""

    frame_shape: tuple[int, int]  # (H, W) of the full-size frames
    pose: FacePose  # last raw pose at detection scale
    tracker: PointTracker
    smooth: np.ndarray = field(default_factory=lambda: np.zeros(4))  # cx, cy, size, roll (full)
    since_detect: int = 0
    misses: int = 0


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


def _resize(patch: np.ndarray, size: int) -> np.ndarray:
    interp = cv2.INTER_AREA if patch.shape[0] > size else cv2.INTER_LINEAR
    out = cv2.resize(patch, (size, size), interpolation=interp)
    return np.asarray(out, dtype=np.uint8)


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
        border = cv2.BORDER_CONSTANT if pad_mode == "constant" else cv2.BORDER_REPLICATE
        patch = cv2.copyMakeBorder(patch, *pads, border, value=(0, 0, 0))
    return _resize(patch, size)


def centre_crop(image: np.ndarray, size: int) -> np.ndarray:
    """The largest centred square of an RGB frame, resized to `size` (the fallback crop)."""
    h, w = image.shape[:2]
    return crop_square(image, (w / 2, h / 2), min(h, w), size)


class FaceCropper:
    """Face crops for the frames of ONE stream, given in time order.

    crop(image) returns a CropResult; `stats` counts detected / tracked / fallback crops,
    detector runs and fallbacks; reset() forgets the tracked face (new stream, reconnect).
    `cropper` picks the cropper (a contract's `cropper`; from_contract passes it).
    """

    def __init__(
        self,
        crop_size: int = DEFAULT_CROP_SIZE,
        margin: float = DEFAULT_CROP_MARGIN,
        *,
        cropper: str = DEFAULT_CROPPER,
        max_downscale: float | None = None,
        name: str = "stream",
        detect_every: int = DEFAULT_DETECT_EVERY,
        detect_long_side: int = DETECT_LONG_SIDE,
        smoothing: float = DEFAULT_SMOOTHING,
        max_misses: int = DEFAULT_MAX_MISSES,
        idle_detect_every: int = 1,
        track_min_score: float = TRACK_MIN_SCORE,
        pad_mode: PadMode = "constant",
        scale_factor: float = SCALE_FACTOR,
        min_neighbors: int = MIN_NEIGHBORS,
        cascade_path: str | None = None,
        second_cascade_path: str | None = None,
        second_chance: bool = True,
        face_model: str | Path | None = None,
        cnn_threshold: float = SCORE_THRESHOLD,
    ) -> None:
        problems = []
        if cropper not in CROPPERS:
            problems.append(f"cropper={cropper!r} not in {CROPPERS}")
        if not 8 <= crop_size <= 2048:
            problems.append(f"crop_size={crop_size} outside 8..2048 px")
        if not 0.0 <= margin <= 2.0:
            problems.append(f"margin={margin} outside 0..2")
        if max_downscale is not None and max_downscale <= 0:
            problems.append(f"max_downscale={max_downscale} must be > 0")
        if detect_every < 1:
            problems.append(f"detect_every={detect_every} must be >= 1")
        if detect_long_side < 4 * MIN_FACE_SIDE:
            problems.append(f"detect_long_side={detect_long_side} below {4 * MIN_FACE_SIDE} px")
        if not 0.0 <= smoothing < 1.0:
            problems.append(f"smoothing={smoothing} outside [0, 1)")
        if idle_detect_every < 1:
            problems.append(f"idle_detect_every={idle_detect_every} must be >= 1")
        if max_misses < 0:
            problems.append(f"max_misses={max_misses} must be >= 0")
        if not -1.0 <= track_min_score <= 1.0:
            problems.append(f"track_min_score={track_min_score} outside -1..1")
        if pad_mode not in ("constant", "edge"):
            problems.append(f"pad_mode={pad_mode!r} must be 'constant' or 'edge'")
        if scale_factor <= 1.0:
            problems.append(f"scale_factor={scale_factor} must be > 1")
        if min_neighbors < 0:
            problems.append(f"min_neighbors={min_neighbors} must be >= 0")
        if not 0.0 < cnn_threshold < 1.0:
            problems.append(f"cnn_threshold={cnn_threshold} outside (0, 1)")
        if problems:
            raise ValueError("invalid FaceCropper settings: " + "; ".join(problems))
        self.cropper = cropper
        self.crop_size = crop_size
        self.margin = margin
        self.max_downscale = max_downscale
        self.name = name
        self.detect_every = detect_every
        self.detect_long_side = detect_long_side
        self.smoothing = smoothing
        self.max_misses = max_misses
        self.idle_detect_every = idle_detect_every
        self.track_min_score = track_min_score
        self.pad_mode: PadMode = pad_mode
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.stats = CropStats()
        # The CNN cropper asks Haar only to confirm weak faces: one cascade is enough.
        self._haar = HaarDetector(
            scale_factor,
            min_neighbors,
            cascade_path,
            second_cascade_path,
            second_chance and cropper == CROPPER_HAAR,
        )
        self._cnn: CenterFace | None = None
        self._legacy: HaarLocator | None = None
        if cropper == CROPPER_CNN:
            self._cnn = CenterFace(face_model, threshold=cnn_threshold)
        else:
            self._legacy = HaarLocator(
                self._haar, self.stats, detect_every, max_misses, track_min_score, smoothing, name
            )
        self._track: _CnnTrack | None = None
        self._idle_skip = 0  # frames left to skip detection while no face is tracked
        self._fallbacks_unlogged = 0
        self._frames_unlogged = 0
        self._last_log = -math.inf

    @classmethod
    def from_contract(cls, contract: InputContract, **kwargs: Any) -> FaceCropper:
        """A cropper making the crops a model with this input contract expects."""
        return cls(
            crop_size=contract.crop_size,
            margin=contract.crop_margin,
            max_downscale=contract.max_crop_downscale,
            cropper=contract.cropper,
            **kwargs,
        )

    def reset(self) -> None:
        """Forget the tracked face; the next frame runs a full detection. Stats are kept."""
        self._track = None
        if self._legacy is not None:
            self._legacy.track = None
        self._idle_skip = 0

    def _tracking(self) -> bool:
        return (self._legacy.track if self._legacy is not None else self._track) is not None

    def crop(self, image: np.ndarray) -> CropResult:
        """Detect or track the face in one RGB uint8 frame and return its crop."""
        rgb = as_rgb_frame(image)
        h, w = rgb.shape[:2]
        self.stats.frames += 1
        self._frames_unlogged += 1
        if not self._tracking() and self._idle_skip > 0:
            self._idle_skip -= 1  # no face lately: detect only every idle_detect_every frames
            return self._fallback(rgb)
        legacy = self._legacy
        shape = legacy.track.frame_shape if legacy and legacy.track else None
        if self._track is not None:
            shape = self._track.frame_shape
        if shape is not None and shape != (h, w):
            logger.info("%s: frame size changed to %dx%d, re-detecting the face", self.name, w, h)
            self.reset()
        scale = min(1.0, self.detect_long_side / max(h, w))
        if legacy is not None:
            return self._crop_haar(rgb, legacy, scale)
        return self._crop_cnn(rgb, scale)

    def crop_side(self, face_side: float) -> float:
        """Side, in frame pixels, of the square cropped around a face of `face_side`:
        the face plus its margin, cut to crop_size * max_downscale when that is smaller, but
        never smaller than the face itself."""
        side = face_side * (1.0 + 2.0 * self.margin)
        if self.max_downscale is not None:
            side = min(side, max(self.crop_size * self.max_downscale, face_side))
        return side

    # -- the Haar cropper (haar-2) ------------------------------------------------------

    def _crop_haar(self, rgb: np.ndarray, legacy: HaarLocator, scale: float) -> CropResult:
        h, w = rgb.shape[:2]
        found = legacy.locate(_grey(rgb, scale), (h, w))
        if found is None:
            if legacy.nothing_tracked:
                self._idle_skip = self.idle_detect_every - 1
            return self._fallback(rgb)
        box, how = found
        source: Source = "detected" if how == "detected" else "tracked"
        smooth = legacy.smooth(np.asarray(box, dtype=np.float64) / scale)
        cx, cy, bw, bh = smooth
        side = self.crop_side(max(bw, bh))
        crop = crop_square(rgb, (cx, cy), side, self.crop_size, self.pad_mode)
        self._count(source)
        return CropResult(image=crop, found=True, box=_to_box(smooth, (h, w)), source=source)

    # -- the CNN cropper (centerface-1) -------------------------------------------------

    def _crop_cnn(self, rgb: np.ndarray, scale: float) -> CropResult:
        h, w = rgb.shape[:2]
        small = _shrink(rgb, scale)
        grey = np.asarray(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY), dtype=np.uint8)
        found = self._locate_cnn(small, grey, (h, w))
        if found is None:
            return self._fallback(rgb)
        pose, landmarks, source = found
        assert self._track is not None
        smooth = self._smooth(self._track, pose.scaled(1.0 / scale))
        cx, cy, size, roll = smooth
        side = self.crop_side(size)
        border = cv2.BORDER_CONSTANT if self.pad_mode == "constant" else cv2.BORDER_REPLICATE
        crop = crop_rotated(rgb, (cx, cy), side, roll, self.crop_size, border)
        self._count(source)
        box = _to_box(np.array([cx, cy, size, size]), (h, w))
        return CropResult(
            image=crop,
            found=True,
            box=box,
            source=source,
            roll_deg=math.degrees(roll),
            landmarks=landmarks / scale,
            pose=FacePose.from_array(smooth),
        )

    def _locate_cnn(
        self, small: np.ndarray, grey: np.ndarray, frame_shape: tuple[int, int]
    ) -> tuple[FacePose, np.ndarray, Source] | None:
        """This frame's pose and landmarks at detection scale, and how found, or None."""
        track = self._track
        may_follow = track is not None
        if track is not None:
            track.since_detect += 1
            if track.since_detect < self.detect_every:
                got = self._follow(track, grey)
                if got is not None:
                    return (*got, "tracked")
                may_follow = False  # it just failed: detect, and do not follow again
        near = None
        if track is not None:
            near = (track.pose.cx, track.pose.cy, track.pose.size)
            track.since_detect = 0
        face = self._detect(small, grey, near)
        if face is not None:
            landmarks = face.landmarks if face.landmarks is not None else face.pose.landmarks()
            if track is None or track.frame_shape != frame_shape:
                track = _CnnTrack(frame_shape, face.pose, PointTracker())
                self._track = track
            track.pose, track.misses = face.pose, 0
            track.tracker.start(grey, landmarks, face.pose)
            return face.pose, landmarks, "detected"
        if track is None:
            self._idle_skip = self.idle_detect_every - 1
            return None
        track.misses += 1
        if track.misses > self.max_misses:
            logger.debug("%s: face not confirmed for %d frames", self.name, track.misses)
            self._track = None
            return None
        if may_follow:
            got = self._follow(track, grey)
            if got is not None:
                return (*got, "tracked")
        return None

    def _follow(self, track: _CnnTrack, grey: np.ndarray) -> tuple[FacePose, np.ndarray] | None:
        moved = track.tracker.follow(grey, track.pose.size)
        if moved is None:
            return None
        track.pose = fit_pose(moved)
        return track.pose, moved

    def _detect(
        self, small: np.ndarray, grey: np.ndarray, near: tuple[float, float, float] | None
    ) -> FoundFace | None:
        """The face to crop in a detection-scale frame, or None (one detector run)."""
        self.stats.detector_runs += 1
        faces = self.find_in(small, grey)
        if not faces:
            return None
        boxes = np.array([f.pose.box() for f in faces])
        face = faces[pick_face(boxes, np.ones(len(faces)), grey.shape, near)]
        if face.detector != "cnn":
            self.stats.haar_fallback += 1
        return face

    def _refine(self, small: np.ndarray, face: FoundFace) -> FoundFace:
        """Landmarks of a rolled face, found again on its region turned upright.

        CenterFace's landmarks of a head rolled 40 degrees read about 10 degrees too level
        (they lean towards the upright faces it learnt from); on the turned region the
        face is near upright, and the second reading is within a few degrees.
        """
        assert self._cnn is not None
        pose = face.pose
        side = REFINE_REGION * pose.size
        patch = crop_rotated(small, (pose.cx, pose.cy), side, pose.roll, REFINE_PX)
        got = self._cnn.detect(patch, threshold=CNN_WEAK_SCORE)
        if not len(got):
            return face
        centres = got.boxes[:, :2] + got.boxes[:, 2:] / 2
        best = int(np.argmin(np.hypot(*(centres - REFINE_PX / 2).T)))
        c, s = math.cos(pose.roll), math.sin(pose.roll)
        # patch = k * R(-roll) (frame - centre) + REFINE_PX / 2, inverted
        back = np.array([[c, -s], [s, c]])
        points = (got.landmarks[best] - REFINE_PX / 2) * (side / REFINE_PX) @ back.T
        points += (pose.cx, pose.cy)
        return FoundFace(face.box, face.score, face.detector, points, fit_pose(points))

    def find_in(self, small: np.ndarray, grey: np.ndarray) -> list[FoundFace]:
        """Every face in a detection-scale frame: the CNN's, then weak ones Haar confirms."""
        assert self._cnn is not None
        got = self._cnn.detect(small, threshold=CNN_WEAK_SCORE)
        strong = got.scores >= self._cnn.threshold
        faces = [
            FoundFace(_xywh(b), float(s), "cnn", lm, fit_pose(lm))
            for b, s, lm in zip(
                got.boxes[strong], got.scores[strong], got.landmarks[strong], strict=True
            )
        ]
        faces = [self._refine(small, f) if abs(f.pose.roll) > REFINE_ROLL_RAD else f for f in faces]
        weak = got.take(np.nonzero(~strong)[0])
        if len(weak):
            faces += self._confirm_with_haar(weak, grey, faces)
        return faces

    def _confirm_with_haar(
        self, weak: Faces, grey: np.ndarray, accepted: list[FoundFace]
    ) -> list[FoundFace]:
        """Haar boxes that hold a weak CNN face's centre and no accepted face's."""
        boxes, _, _ = self._haar.detect(grey)
        out: list[FoundFace] = []
        for b in boxes:
            x, y, bw, bh = (float(v) for v in b)

            def inside(cx: float, cy: float) -> bool:
                return x <= cx <= x + bw and y <= cy <= y + bh  # noqa: B023

            if any(inside(f.pose.cx, f.pose.cy) for f in accepted + out):
                continue
            centres = weak.boxes[:, :2] + weak.boxes[:, 2:] / 2
            hits = [i for i, (cx, cy) in enumerate(centres) if inside(cx, cy)]
            if not hits:
                continue
            score = float(weak.scores[hits].max())
            out.append(
                FoundFace((x, y, bw, bh), score, "haar", None, pose_from_box((x, y, bw, bh)))
            )
        return out

    def find_faces(self, image: np.ndarray) -> list[FoundFace]:
        """Every face in one frame, in frame pixels, without tracking (`faces` command)."""
        rgb = as_rgb_frame(image)
        h, w = rgb.shape[:2]
        scale = min(1.0, self.detect_long_side / max(h, w))
        small = _shrink(rgb, scale)
        grey = np.asarray(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY), dtype=np.uint8)
        k = 1.0 / scale
        if self._cnn is None:  # the Haar cropper: what its detector finds
            boxes, _, second = self._haar.detect(grey)
            det: Detector = "haar-alt2" if second else "haar"
            return [
                FoundFace(_xywh(b * k), 0.0, det, None, pose_from_box(_xywh(b)).scaled(k))
                for b in boxes
            ]
        return [
            FoundFace(
                (f.box[0] * k, f.box[1] * k, f.box[2] * k, f.box[3] * k),
                f.score,
                f.detector,
                None if f.landmarks is None else f.landmarks * k,
                f.pose.scaled(k),
            )
            for f in self.find_in(small, grey)
        ]

    def _smooth(self, track: _CnnTrack, pose: FacePose) -> np.ndarray:
        """Smooth the pose (full-frame pixels) against jitter: the Haar cropper's speed-
        adaptive EMA on the centre, plain EMA on size and roll, snapping on jumps."""
        meas = pose.as_array()
        prev = track.smooth
        move = float(np.hypot(*(meas[:2] - prev[:2])))
        if (
            prev[2] <= 0
            or move > JUMP_RESET_FRACTION * prev[2]
            or max(meas[2] / prev[2], prev[2] / meas[2]) > SIZE_RESET_RATIO
            or abs(meas[3] - prev[3]) > ROLL_RESET_RAD
        ):
            track.smooth = meas
            return meas
        keep_pos = self.smoothing / (1.0 + (move / (JITTER_FRACTION * prev[2])) ** 2)
        out = np.empty(4)
        out[:2] = keep_pos * prev[:2] + (1.0 - keep_pos) * meas[:2]
        out[2:] = self.smoothing * prev[2:] + (1.0 - self.smoothing) * meas[2:]
        track.smooth = out
        return out

    # -- both ---------------------------------------------------------------------------

    def _count(self, source: Source) -> None:
        if source == "detected":
            self.stats.detected += 1
        else:
            self.stats.tracked += 1

    def _fallback(self, rgb: np.ndarray) -> CropResult:
        self.stats.fallback += 1
        self._fallbacks_unlogged += 1
        now = time.monotonic()
        if now - self._last_log >= FALLBACK_LOG_INTERVAL_S:
            logger.info(
                "%s: no face found in %d of the last %d frames; using centre crops",
                self.name,
                self._fallbacks_unlogged,
                self._frames_unlogged,
            )
            self._last_log = now
            self._fallbacks_unlogged = 0
            self._frames_unlogged = 0
        crop = centre_crop(rgb, self.crop_size)
        return CropResult(image=crop, found=False, box=None, source="fallback")


def _shrink(rgb: np.ndarray, scale: float) -> np.ndarray:
    if scale >= 1.0:
        return rgb
    h, w = rgb.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), dtype=np.uint8)


def _grey(rgb: np.ndarray, scale: float) -> np.ndarray:
    # The Haar cropper's order (grey first, then shrink) keeps its crops bit for bit.
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    if scale < 1.0:
        h, w = grey.shape
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
    return np.asarray(grey, dtype=np.uint8)


def _xywh(b: np.ndarray) -> tuple[float, float, float, float]:
    return (float(b[0]), float(b[1]), float(b[2]), float(b[3]))


def _to_box(smooth: np.ndarray, frame_shape: tuple[int, int]) -> Box:
    """Centre/size floats to an (x, y, w, h) box of whole pixels inside the frame."""
    h, w = frame_shape
    cx, cy, bw, bh = smooth.tolist()
    x0 = min(max(0, round(cx - bw / 2)), w - 1)
    y0 = min(max(0, round(cy - bh / 2)), h - 1)
    x1 = min(max(x0 + 1, round(cx + bw / 2)), w)
    y1 = min(max(y0 + 1, round(cy + bh / 2)), h)
    return (x0, y0, x1 - x0, y1 - y0)
