"""OpenCV's Haar frontal-face cascades: the first cropper's detector, now the last fallback.

Shipped inside opencv-python-headless (cv2.data.haarcascades), nothing to install. The
default cascade runs first; when it finds nothing, a second cascade trained differently
("alt2") gets a second chance on the same image, its boxes rescaled to the first one's
framing. Models trained with the Haar cropper (contract cropper `haar-2`) crop with these
alone; the CNN cropper asks them only to confirm a face it scores too low to accept.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass, field
from typing import Any

import cv2
import cv2.data
import numpy as np

from monitor.errors import ModelFormatError

logger = logging.getLogger(__name__)

CASCADE_FILE = "haarcascade_frontalface_default.xml"  # in cv2.data.haarcascades
SECOND_CASCADE_FILE = "haarcascade_frontalface_alt2.xml"  # second chance when the first
# finds nothing: on the synthetic val set it finds faces in clips where the first found
# none in any frame (curly hair, beards), and those centre crops were the detector's worst
# false alarms (docs/experiments.md, 2026-11-24)
SECOND_CASCADE_SCALE = 1.06  # alt2's boxes are 6 % smaller than the default cascade's on the
# same faces, centred alike (29 synthetic frames: ratio 0.943 +- 0.055, centre within 0.01
# box side); scaling them keeps the crop's framing the same whichever cascade found it
SCALE_FACTOR = 1.1  # Haar pyramid step between scales
MIN_NEIGHBORS = 5  # Haar overlapping hits needed to accept a face (fewer = more false faces)
MIN_FACE_SIDE = 24  # px at detection scale; the cascade's own window size

_CASCADES: dict[str, cv2.CascadeClassifier] = {}
_CASCADE_LOAD_LOCK = threading.Lock()
_DETECT_LOCK = threading.Lock()  # CascadeClassifier.detectMultiScale is not thread-safe


def load_cascade(path: str | None = None) -> cv2.CascadeClassifier:
    """The process-wide Haar cascade at `path` (default: OpenCV's frontal-face cascade)."""
    path = path or cv2.data.haarcascades + CASCADE_FILE
    with _CASCADE_LOAD_LOCK:
        cascade = _CASCADES.get(path)
        if cascade is None:
            cascade = cv2.CascadeClassifier(path)
            if cascade.empty():
                raise ModelFormatError(
                    f"cannot load the face detector cascade {path}; reinstall "
                    "opencv-python-headless 4.x (it ships cv2.data.haarcascades)"
                )
            _CASCADES[path] = cascade
            logger.debug("loaded face cascade %s", path)
        return cascade


class HaarDetector:
    """The two cascades with their settings; shared cascades, one instance per cropper."""

    def __init__(
        self,
        scale_factor: float = SCALE_FACTOR,
        min_neighbors: int = MIN_NEIGHBORS,
        cascade_path: str | None = None,
        second_cascade_path: str | None = None,
        second_chance: bool = True,
    ) -> None:
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.cascade = load_cascade(cascade_path)
        self.second: cv2.CascadeClassifier | None = None
        if second_chance:
            self.second = load_cascade(
                second_cascade_path or cv2.data.haarcascades + SECOND_CASCADE_FILE
            )

    def detect(self, grey: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
        """Boxes [n, 4] (x, y, w, h, float), their hit counts [n], and whether only the
        second cascade found them."""
        boxes, hits = self.cascade_boxes(self.cascade, grey)
        if len(boxes) or self.second is None:
            return boxes, hits, False
        boxes, hits = self.cascade_boxes(self.second, grey)
        if len(boxes) == 0:
            return boxes, hits, False
        centres = boxes[:, :2] + boxes[:, 2:] / 2
        boxes[:, 2:] *= SECOND_CASCADE_SCALE
        boxes[:, :2] = np.maximum(centres - boxes[:, 2:] / 2, 0.0)
        gh, gw = grey.shape
        boxes[:, 2] = np.minimum(boxes[:, 2], gw - boxes[:, 0])
        boxes[:, 3] = np.minimum(boxes[:, 3], gh - boxes[:, 1])
        return boxes, hits, True

    def cascade_boxes(
        self, cascade: cv2.CascadeClassifier, grey: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Boxes [n, 4] (x, y, w, h, float) and their hit counts [n] from one cascade."""
        with _DETECT_LOCK:
            found, hits = cascade.detectMultiScale2(
                grey,
                scaleFactor=self.scale_factor,
                minNeighbors=self.min_neighbors,
                minSize=(MIN_FACE_SIDE, MIN_FACE_SIDE),
            )
        boxes = np.asarray(found, dtype=np.float64).reshape(-1, 4)
        return boxes, np.asarray(hits, dtype=np.float64).reshape(-1)


# -- the Haar cropper's own tracking (contract cropper "haar-2"), unchanged since v2 --------

TRACK_SEARCH_FRACTION = 0.5  # search region = last box grown by this x box side per side
TRACK_MIN_SCORE = 0.6  # normalised cross-correlation below this = tracking failed
MIN_TEMPLATE_STD = 4.0  # grey levels; a flatter face patch cannot be tracked by correlation
NEAR_TRACK_FRACTION = 1.0  # a detection within this x box side of the track is the same face
CENTRALITY_WEIGHT = 0.5  # how much a central face beats an off-centre one of the same size
MIN_HIT_FRACTION = 0.5  # candidates with fewer cascade hits than this x the best one are dropped
JUMP_RESET_FRACTION = 0.5  # centre moved more than this x box side: snap, do not smooth
SIZE_RESET_RATIO = 1.5  # box side changed by more than this factor: snap, do not smooth
JITTER_FRACTION = 0.05  # box moves of about this x box side are detector jitter, smoothed hard

Box4 = tuple[int, int, int, int]


@dataclass
class HaarTrack:
    """The face being followed, in detection-scale pixels of frames of one size."""

    frame_shape: tuple[int, int]  # (H, W) of the full-size frames this track belongs to
    box: Box4  # last raw box at detection scale
    template: np.ndarray | None  # grey face patch from the last detection (None: untrackable)
    smooth: np.ndarray = field(default_factory=lambda: np.zeros(4))  # cx, cy, w, h, full size
    since_detect: int = 0  # frames since the detector last ran
    misses: int = 0  # consecutive frames the face was not confirmed


def pick_face(
    boxes: np.ndarray,
    weights: np.ndarray,
    image_shape: tuple[int, int],
    near: tuple[float, float, float] | None,
) -> int:
    """Index of the face to crop: the one nearest `near` (cx, cy, side) when within
    NEAR_TRACK_FRACTION of its side, else the largest central one (weights < 0: never)."""
    centres = boxes[:, :2] + boxes[:, 2:] / 2
    if near is not None:
        dist = np.hypot(*(centres - near[:2]).T) / max(near[2], 1e-9)
        best = int(np.argmin(dist))
        if dist[best] <= NEAR_TRACK_FRACTION:
            return best
    gh, gw = image_shape
    off_centre = np.hypot(*(centres - (gw / 2, gh / 2)).T) / (np.hypot(gw, gh) / 2)
    score = boxes[:, 2] * boxes[:, 3] * (1.0 - CENTRALITY_WEIGHT * off_centre)
    score[weights < 0] = -np.inf
    return int(np.argmax(score))


class HaarLocator:
    """Finds and follows one face with the cascades and patch correlation (cropper haar-2)."""

    def __init__(
        self,
        detector: HaarDetector,
        stats: Any,
        detect_every: int,
        max_misses: int,
        track_min_score: float,
        smoothing: float,
        name: str,
    ) -> None:
        self.detector = detector
        self.stats = stats  # the cropper's CropStats
        self.detect_every = detect_every
        self.max_misses = max_misses
        self.track_min_score = track_min_score
        self.smoothing = smoothing
        self.name = name
        self.track: HaarTrack | None = None
        self.nothing_tracked = False  # the last locate() found no face and had no track

    def locate(self, grey: np.ndarray, frame_shape: tuple[int, int]) -> tuple[Box4, str] | None:
        """This frame's face box at detection scale and how it was found, or None."""
        self.nothing_tracked = False
        track = self.track
        may_follow = track is not None
        if track is not None:
            track.since_detect += 1
            if track.since_detect < self.detect_every:
                box = self.follow(grey)
                if box is not None:
                    return box, "tracked"
                may_follow = False  # it just failed: detect, and do not follow again
        box = self.detect(grey)
        if box is not None:
            self.start(grey, box, frame_shape)
            return box, "detected"
        if self.track is None:
            self.nothing_tracked = True
            return None
        # The detector did not confirm the tracked face: it may still be there (turned,
        # blurred), so follow it, but give it up after max_misses such frames in a row.
        self.track.misses += 1
        if self.track.misses > self.max_misses:
            logger.debug("%s: face not confirmed for %d frames", self.name, self.track.misses)
            self.track = None  # lost: the next frame detects over the whole frame
            return None
        if may_follow:
            box = self.follow(grey)
            if box is not None:
                return box, "tracked"
        return None

    def detect(self, grey: np.ndarray) -> Box4 | None:
        """Full-frame detection; the face nearest the track, else the largest central one."""
        self.stats.detector_runs += 1
        if self.track is not None:
            self.track.since_detect = 0
        boxes, hit_counts, second = self.detector.detect(grey)
        if len(boxes) == 0:
            return None
        if second:
            self.stats.second_chance += 1
        near = None
        if self.track is not None:
            tx, ty, tw, th = self.track.box
            near = (tx + tw / 2, ty + th / 2, float(max(tw, th)))
        # A real face is hit at many neighbouring positions and scales; a big false face in
        # textured background at few. Drop weak candidates before preferring the largest.
        weights = np.where(hit_counts >= MIN_HIT_FRACTION * hit_counts.max(), 1.0, -1.0)
        best = pick_face(boxes, weights, grey.shape, near)
        b = boxes[best]
        return (int(b[0]), int(b[1]), int(b[2]), int(b[3]))

    def start(self, grey: np.ndarray, box: Box4, frame_shape: tuple[int, int]) -> None:
        x, y, w, h = box
        patch = grey[y : y + h, x : x + w]
        template = patch.copy() if float(patch.std()) >= MIN_TEMPLATE_STD else None
        old = self.track
        if old is None or old.frame_shape != frame_shape:
            self.track = HaarTrack(frame_shape=frame_shape, box=box, template=template)
        else:
            old.box, old.template, old.since_detect, old.misses = box, template, 0, 0

    def follow(self, grey: np.ndarray) -> Box4 | None:
        """Find the last detected face patch near the last box, or None if it is gone."""
        track = self.track
        if track is None or track.template is None:
            return None
        x, y, w, h = track.box
        pad = round(TRACK_SEARCH_FRACTION * max(w, h))
        gh, gw = grey.shape
        rx0, ry0 = max(0, x - pad), max(0, y - pad)
        rx1, ry1 = min(gw, x + w + pad), min(gh, y + h + pad)
        th, tw = track.template.shape
        if rx1 - rx0 < tw or ry1 - ry0 < th:
            return None
        scores = cv2.matchTemplate(grey[ry0:ry1, rx0:rx1], track.template, cv2.TM_CCOEFF_NORMED)
        _, best, _, loc = cv2.minMaxLoc(scores)
        if not math.isfinite(best) or best < self.track_min_score:
            return None
        track.box = (rx0 + int(loc[0]), ry0 + int(loc[1]), w, h)
        return track.box

    def smooth(self, box: np.ndarray) -> np.ndarray:
        """Smooth the box (centre and size, full-frame pixels) against jitter.

        A speed-adaptive EMA, in the spirit of the 1-euro filter: moves of the order of the
        detector's jitter are averaged with weight `smoothing` on the previous box, faster
        moves are followed with little lag, and jumps (a cut, another face) snap at once.
        """
        assert self.track is not None
        track = self.track
        meas = np.array([box[0] + box[2] / 2, box[1] + box[3] / 2, box[2], box[3]])
        prev = track.smooth
        side, prev_side = max(meas[2], meas[3]), max(prev[2], prev[3])
        move = float(np.hypot(*(meas[:2] - prev[:2])))
        if (
            prev_side <= 0
            or move > JUMP_RESET_FRACTION * prev_side
            or max(side / prev_side, prev_side / side) > SIZE_RESET_RATIO
        ):
            track.smooth = meas
            return meas
        keep_pos = self.smoothing / (1.0 + (move / (JITTER_FRACTION * prev_side)) ** 2)
        out = np.empty(4)
        out[:2] = keep_pos * prev[:2] + (1.0 - keep_pos) * meas[:2]
        out[2:] = self.smoothing * prev[2:] + (1.0 - self.smoothing) * meas[2:]
        track.smooth = out
        return out
