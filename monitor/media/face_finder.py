"""Every face of a detection-scale frame, as `FoundFace`s: what the croppers choose from.

The CNN cropper (`centerface-1`) takes CenterFace's faces scored at or above its
threshold. A face rolled more than REFINE_ROLL_RAD is looked at a second time on its
region turned upright, where its landmarks read truer. A face the CNN scores between
CNN_WEAK_SCORE and its threshold is accepted only where a Haar cascade finds a face too.
The Haar cropper (`haar-2`) takes the cascades' boxes as they are (`haar_faces`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from monitor.media.centerface import CenterFace, Faces
from monitor.media.haar import HaarDetector
from monitor.media.landmarks import FacePose, crop_rotated, fit_pose, pose_from_box

CNN_WEAK_SCORE = 0.2  # a CNN face scored between this and SCORE_THRESHOLD needs Haar to agree
REFINE_ROLL_RAD = math.radians(12)  # a face rolled more is detected again, turned upright
REFINE_REGION = 2.0  # x the face size: the region turned upright for the second look
REFINE_PX = 128  # px, side of that region (a multiple of the CNN's 32)

Detector = Literal["cnn", "haar", "haar-alt2"]


@dataclass(frozen=True)
class FoundFace:
    """One face of a frame (FaceCropper.find_faces), in frame pixels."""

    box: tuple[float, float, float, float]  # x, y, w, h
    score: float  # the CNN's score (a Haar-only face: the CNN's weak score there, or 0)
    detector: Detector  # which detector accepted it
    landmarks: np.ndarray | None  # float [5, 2] (eyes, nose, mouth corners), None for Haar
    pose: FacePose  # centre, size and roll the crop is built on

    def scaled(self, k: float) -> FoundFace:
        """The same face in a frame `k` times as large."""
        return FoundFace(
            (self.box[0] * k, self.box[1] * k, self.box[2] * k, self.box[3] * k),
            self.score,
            self.detector,
            None if self.landmarks is None else self.landmarks * k,
            self.pose.scaled(k),
        )


class FaceFinder:
    """The CNN cropper's faces: CenterFace's, with Haar to confirm the weak ones."""

    def __init__(self, cnn: CenterFace, haar: HaarDetector) -> None:
        self.cnn = cnn
        self.haar = haar

    def find(self, small: np.ndarray, grey: np.ndarray) -> list[FoundFace]:
        """Every face in a detection-scale frame: the CNN's, then weak ones Haar confirms."""
        got = self.cnn.detect(small, threshold=CNN_WEAK_SCORE)
        strong = got.scores >= self.cnn.threshold
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

    def _refine(self, small: np.ndarray, face: FoundFace) -> FoundFace:
        """Landmarks of a rolled face, found again on its region turned upright.

        CenterFace's landmarks of a head rolled 40 degrees read about 10 degrees too level
        (they lean towards the upright faces it learnt from); on the turned region the
        face is near upright, and the second reading is within a few degrees.
        """
        pose = face.pose
        side = REFINE_REGION * pose.size
        patch = crop_rotated(small, (pose.cx, pose.cy), side, pose.roll, REFINE_PX)
        got = self.cnn.detect(patch, threshold=CNN_WEAK_SCORE)
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

    def _confirm_with_haar(
        self, weak: Faces, grey: np.ndarray, accepted: list[FoundFace]
    ) -> list[FoundFace]:
        """Haar boxes that hold a weak CNN face's centre and no accepted face's."""
        boxes, _, _ = self.haar.detect(grey)
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


def haar_faces(haar: HaarDetector, grey: np.ndarray) -> list[FoundFace]:
    """The Haar cropper's faces in a detection-scale frame: what its cascades find."""
    boxes, _, second = haar.detect(grey)
    detector: Detector = "haar-alt2" if second else "haar"
    return [FoundFace(_xywh(b), 0.0, detector, None, pose_from_box(_xywh(b))) for b in boxes]


def _xywh(b: np.ndarray) -> tuple[float, float, float, float]:
    return (float(b[0]), float(b[1]), float(b[2]), float(b[3]))
