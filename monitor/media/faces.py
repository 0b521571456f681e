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
face (monitor/media/face_finder.py). In between detections, optical flow follows the
landmarks and corners of the face (monitor/media/cnn_track.py).

`centerface-2`: the same faces and poses, each crop resampled once from the frame
(`crop_once`): upright on the pixel grid below a 3-degree roll, one warp above it.

`haar-2` (models trained before the CNN): OpenCV's Haar cascades and patch correlation
(monitor/media/haar.py), upright crops around the box; its crops are unchanged.

Both: poses are smoothed (a speed-adaptive EMA) so crops do not jitter. The crop is a
square around the face plus `margin` (fraction of the face size per side), padded with
zeros (or edge pixels) where it leaves the frame, so the face stays centred and at the
same scale (monitor/media/crop_geometry.py). With `max_downscale` (the contract's
max_crop_downscale), a face so big that its square would shrink more than that is cut
tighter around its centre instead, so the pixels keep their detail: the margin goes, down
to the face itself and never into it.
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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from monitor.contract import (
    CNN_CROPPERS,
    CROPPER_CNN,
    CROPPER_HAAR,
    CROPPERS,
    DEFAULT_CROP_MARGIN,
    DEFAULT_CROP_SIZE,
    DEFAULT_CROPPER,
    InputContract,
)
from monitor.media.centerface import SCORE_THRESHOLD, CenterFace
from monitor.media.cnn_track import CnnLocator
from monitor.media.crop_geometry import (
    Box,
    PadMode,
    as_rgb_frame,
    centre_crop,
    crop_square,
    cv_border,
    detection_frames,
    grey_shrunk,
    to_box,
)
from monitor.media.face_finder import FaceFinder, FoundFace, haar_faces
from monitor.media.haar import (
    MIN_FACE_SIDE,
    MIN_NEIGHBORS,
    SCALE_FACTOR,
    TRACK_MIN_SCORE,
    HaarDetector,
    HaarLocator,
    load_cascade,
)
from monitor.media.landmarks import FacePose, crop_once, crop_rotated

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
FALLBACK_LOG_INTERVAL_S = 30.0  # seconds between "no face" log lines of one cropper

CROPPER_VERSION = 2  # the Haar cropper's version (contract cropper "haar-2"); caches of
# Haar contracts key on it. 2: the second-chance cascade. The CNN cropper's version is its
# name in the contract (CROPPER_CNN): bump that when the same frames give other crops.
CROP_CAP_VERSION = 2  # bump when crops under a max_downscale cap change (only capped
# contracts' caches key on it); 2: the cap stops at the face box
Source = Literal["detected", "tracked", "fallback"]


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
        self._finder: FaceFinder | None = None
        self._locator: CnnLocator | HaarLocator
        if cropper in CNN_CROPPERS:
            self._finder = FaceFinder(CenterFace(face_model, threshold=cnn_threshold), self._haar)
            self._locator = CnnLocator(
                self._finder, self.stats, detect_every, max_misses, smoothing, name
            )
        else:
            self._locator = HaarLocator(
                self._haar, self.stats, detect_every, max_misses, track_min_score, smoothing, name
            )
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
        self._locator.track = None
        self._idle_skip = 0

    def crop(self, image: np.ndarray) -> CropResult:
        """Detect or track the face in one RGB uint8 frame and return its crop."""
        rgb = as_rgb_frame(image)
        h, w = rgb.shape[:2]
        self.stats.frames += 1
        self._frames_unlogged += 1
        track = self._locator.track
        if track is None and self._idle_skip > 0:
            self._idle_skip -= 1  # no face lately: detect only every idle_detect_every frames
            return self._fallback(rgb)
        if track is not None and track.frame_shape != (h, w):
            logger.info("%s: frame size changed to %dx%d, re-detecting the face", self.name, w, h)
            self.reset()
        scale = self._detect_scale(rgb)
        if isinstance(self._locator, HaarLocator):
            return self._crop_haar(rgb, self._locator, scale)
        return self._crop_cnn(rgb, self._locator, scale)

    def find_faces(self, image: np.ndarray) -> list[FoundFace]:
        """Every face in one frame, in frame pixels, without tracking (`faces` command)."""
        rgb = as_rgb_frame(image)
        scale = self._detect_scale(rgb)
        small, grey = detection_frames(rgb, scale)
        if self._finder is None:  # the Haar cropper: what its detector finds
            faces = haar_faces(self._haar, grey)
        else:
            faces = self._finder.find(small, grey)
        return [f.scaled(1.0 / scale) for f in faces]

    def crop_side(self, face_side: float) -> float:
        """Side, in frame pixels, of the square cropped around a face of `face_side`:
        the face plus its margin, cut to crop_size * max_downscale when that is smaller, but
        never smaller than the face itself."""
        side = face_side * (1.0 + 2.0 * self.margin)
        if self.max_downscale is not None:
            side = min(side, max(self.crop_size * self.max_downscale, face_side))
        return side

    def _detect_scale(self, rgb: np.ndarray) -> float:
        """The factor that brings a frame down to detect_long_side (never up)."""
        h, w = rgb.shape[:2]
        return min(1.0, self.detect_long_side / max(h, w))

    def _crop_haar(self, rgb: np.ndarray, locator: HaarLocator, scale: float) -> CropResult:
        """The Haar cropper (haar-2): an upright square around the smoothed box."""
        h, w = rgb.shape[:2]
        found = locator.locate(grey_shrunk(rgb, scale), (h, w))
        if found is None:
            if locator.nothing_tracked:
                self._idle_skip = self.idle_detect_every - 1
            return self._fallback(rgb)
        box, how = found
        source: Source = "detected" if how == "detected" else "tracked"
        smooth = locator.smooth(np.asarray(box, dtype=np.float64) / scale)
        cx, cy, bw, bh = smooth
        side = self.crop_side(max(bw, bh))
        crop = crop_square(rgb, (cx, cy), side, self.crop_size, self.pad_mode)
        self._count(source)
        return CropResult(image=crop, found=True, box=to_box(smooth, (h, w)), source=source)

    def _crop_cnn(self, rgb: np.ndarray, locator: CnnLocator, scale: float) -> CropResult:
        """The CNN croppers (centerface-1, -2): a square turned upright around the smoothed pose."""
        h, w = rgb.shape[:2]
        small, grey = detection_frames(rgb, scale)
        found = locator.locate(small, grey, (h, w))
        if found is None:
            if locator.nothing_tracked:
                self._idle_skip = self.idle_detect_every - 1
            return self._fallback(rgb)
        pose, landmarks, source = found
        smooth = locator.smooth(pose.scaled(1.0 / scale))
        cx, cy, size, roll = smooth
        side = self.crop_side(size)
        border = cv_border(self.pad_mode)
        if self.cropper == CROPPER_CNN:
            crop = crop_rotated(rgb, (cx, cy), side, roll, self.crop_size, border)
        else:
            crop, roll = crop_once(rgb, (cx, cy), side, roll, self.crop_size, border)
        self._count(source)
        return CropResult(
            image=crop,
            found=True,
            box=to_box(np.array([cx, cy, size, size]), (h, w)),
            source=source,
            roll_deg=math.degrees(roll),
            landmarks=landmarks / scale,
            pose=FacePose.from_array(smooth),
        )

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
