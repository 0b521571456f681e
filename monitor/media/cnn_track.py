"""Finding and following one face for the CNN cropper (contract cropper `centerface-1`).

Every `detect_every` frames, or when the track is lost, the face is detected again
(monitor/media/face_finder.py) and the one nearest the tracked face is kept. In between,
optical flow follows its landmarks (`PointTracker`, monitor/media/landmarks.py) and a pose
is fitted to where they went. A face the detector does not confirm `max_misses` times in
a row is dropped. The pose the crop is cut at is smoothed against jitter.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from monitor.media.face_finder import FaceFinder, FoundFace
from monitor.media.haar import JITTER_FRACTION, JUMP_RESET_FRACTION, SIZE_RESET_RATIO, pick_face
from monitor.media.landmarks import FacePose, PointTracker, fit_pose

logger = logging.getLogger(__name__)

ROLL_RESET_RAD = math.radians(20)  # roll changed more than this: snap, do not smooth

How = Literal["detected", "tracked"]
Located = tuple[FacePose, np.ndarray, How]  # pose and landmarks at detection scale, and how


@dataclass
class CnnTrack:
    """The face being followed by the CNN cropper, in frames of one size."""

    frame_shape: tuple[int, int]  # (H, W) of the full-size frames
    pose: FacePose  # last raw pose at detection scale
    tracker: PointTracker
    smooth: np.ndarray = field(default_factory=lambda: np.zeros(4))  # cx, cy, size, roll (full)
    since_detect: int = 0  # frames since the detector last ran
    misses: int = 0  # detector runs in a row that did not confirm the face


class CnnLocator:
    """Finds and follows one face with the CNN and landmark optical flow."""

    def __init__(
        self,
        finder: FaceFinder,
        stats: Any,
        detect_every: int,
        max_misses: int,
        smoothing: float,
        name: str,
    ) -> None:
        self.finder = finder
        self.stats = stats  # the cropper's CropStats
        self.detect_every = detect_every
        self.max_misses = max_misses
        self.smoothing = smoothing
        self.name = name
        self.track: CnnTrack | None = None
        self.nothing_tracked = False  # the last locate() found no face and had no track

    def locate(
        self, small: np.ndarray, grey: np.ndarray, frame_shape: tuple[int, int]
    ) -> Located | None:
        """This frame's pose and landmarks at detection scale, and how found, or None."""
        self.nothing_tracked = False
        track = self.track
        may_follow = track is not None
        if track is not None:
            track.since_detect += 1
            if track.since_detect < self.detect_every:
                got = self.follow(track, grey)
                if got is not None:
                    return (*got, "tracked")
                may_follow = False  # it just failed: detect, and do not follow again
        near = None
        if track is not None:
            near = (track.pose.cx, track.pose.cy, track.pose.size)
            track.since_detect = 0
        face = self.detect(small, grey, near)
        if face is not None:
            return face.pose, self.start(grey, face, frame_shape), "detected"
        if track is None:
            self.nothing_tracked = True
            return None
        # The detector did not confirm the tracked face: it may still be there (turned,
        # blurred), so follow it, but give it up after max_misses such frames in a row.
        track.misses += 1
        if track.misses > self.max_misses:
            logger.debug("%s: face not confirmed for %d frames", self.name, track.misses)
            self.track = None  # lost: the next frame detects over the whole frame
            return None
        if may_follow:
            got = self.follow(track, grey)
            if got is not None:
                return (*got, "tracked")
        return None

    def detect(
        self, small: np.ndarray, grey: np.ndarray, near: tuple[float, float, float] | None
    ) -> FoundFace | None:
        """The face to crop in a detection-scale frame, or None (one detector run)."""
        self.stats.detector_runs += 1
        faces = self.finder.find(small, grey)
        if not faces:
            return None
        boxes = np.array([f.pose.box() for f in faces])
        face = faces[pick_face(boxes, np.ones(len(faces)), grey.shape, near)]
        if face.detector != "cnn":
            self.stats.haar_fallback += 1
        return face

    def start(self, grey: np.ndarray, face: FoundFace, frame_shape: tuple[int, int]) -> np.ndarray:
        """Follow `face` from this frame on; returns its landmarks (fitted for a Haar face)."""
        landmarks = face.landmarks if face.landmarks is not None else face.pose.landmarks()
        track = self.track
        if track is None or track.frame_shape != frame_shape:
            track = CnnTrack(frame_shape, face.pose, PointTracker())
            self.track = track
        track.pose, track.misses = face.pose, 0
        track.tracker.start(grey, landmarks, face.pose)
        return landmarks

    def follow(self, track: CnnTrack, grey: np.ndarray) -> tuple[FacePose, np.ndarray] | None:
        """The face's pose and landmarks where optical flow moved them, or None if lost."""
        moved = track.tracker.follow(grey, track.pose.size)
        if moved is None:
            return None
        track.pose = fit_pose(moved)
        return track.pose, moved

    def smooth(self, pose: FacePose) -> np.ndarray:
        """Smooth the pose (full-frame pixels) against jitter: the Haar cropper's speed-
        adaptive EMA on the centre, plain EMA on size and roll, snapping on jumps."""
        assert self.track is not None
        track = self.track
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
