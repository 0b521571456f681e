"""Face detection, tracking and crops: the one path from a video frame to a face crop.

Training caches, offline scoring and the live monitor all crop faces with `FaceCropper`,
so the detector sees identical crops wherever it runs.

Per stream, frames arrive in time order. A full face detection (OpenCV's Haar frontal-face
cascade, shipped inside opencv-python-headless, nothing downloaded) runs on a downscaled
grayscale copy every `detect_every` frames or when tracking is lost; when it finds nothing,
a second cascade trained differently (OpenCV's "alt2" frontal-face cascade) gets a second
chance on the same image, its box rescaled to the first one's framing. In between, the face
is tracked by normalised cross-correlation of the last detected face patch inside a search
region around the last box. Boxes are smoothed (a speed-adaptive EMA) so crops do not
jitter. The crop is a square around the face plus `margin` (fraction of the box size per
side), padded with zeros (or edge pixels) where it leaves the frame, so the face stays
centred and at the same scale. With `max_downscale` (the contract's max_crop_downscale),
a face so big that its square would shrink more than that is cut tighter around its
centre instead, so the pixels keep their detail: the margin goes, down to the face box
itself and never into it. A face bigger than crop_size * max_downscale is shrunk to fit
its box, or the mouth (about three quarters down the box, which the mouth branch reads),
the jaw line and the edges a pasted face leaves would fall outside the crop.
When no face is found the crop is the frame's centre square, flagged `found=False`, counted
and logged (rate-limited) with the stream's name; while no face is tracked, detection runs
on every frame, or every `idle_detect_every` frames to save CPU on faceless streams.

A cropper holds one stream's state and is not itself thread-safe; use one per stream. The
cascade is loaded once per process and shared; detection on it is serialised by a lock.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import cv2
import cv2.data
import numpy as np

from monitor.contract import DEFAULT_CROP_MARGIN, DEFAULT_CROP_SIZE, InputContract
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
DETECT_LONG_SIDE = 320  # px; frames are downscaled to this longest side for detection
DEFAULT_DETECT_EVERY = 5  # frames; full detection this often while tracking holds
SCALE_FACTOR = 1.1  # Haar pyramid step between scales
MIN_NEIGHBORS = 5  # Haar overlapping hits needed to accept a face (fewer = more false faces)
MIN_FACE_SIDE = 24  # px at detection scale; the cascade's own window size
TRACK_SEARCH_FRACTION = 0.5  # search region = last box grown by this x box side per side
TRACK_MIN_SCORE = 0.6  # normalised cross-correlation below this = tracking failed
MIN_TEMPLATE_STD = 4.0  # grey levels; a flatter face patch cannot be tracked by correlation
DEFAULT_MAX_MISSES = 3  # detector runs in a row not confirming the face before it is dropped
DEFAULT_SMOOTHING = 0.5  # EMA weight kept from the previous box (0 = raw boxes)
JUMP_RESET_FRACTION = 0.5  # centre moved more than this x box side: snap, do not smooth
SIZE_RESET_RATIO = 1.5  # box side changed by more than this factor: snap, do not smooth
NEAR_TRACK_FRACTION = 1.0  # a detection within this x box side of the track is the same face
CENTRALITY_WEIGHT = 0.5  # how much a central face beats an off-centre one of the same size
MIN_HIT_FRACTION = 0.5  # candidates with fewer cascade hits than this x the best one are dropped
JITTER_FRACTION = 0.05  # box moves of about this x box side are detector jitter, smoothed hard
MIN_IMAGE_SIDE = 16  # px; smaller frames cannot hold a face worth scoring
FALLBACK_LOG_INTERVAL_S = 30.0  # seconds between "no face" log lines of one cropper

CROPPER_VERSION = 2  # bump when the same frames give other crops (caches key on it);
# 2: the second-chance cascade
CROP_CAP_VERSION = 2  # bump when crops under a max_downscale cap change (only capped
# contracts' caches key on it); 2: the cap stops at the face box
Box = tuple[int, int, int, int]  # x, y, w, h in image pixels
Source = Literal["detected", "tracked", "fallback"]
PadMode = Literal["constant", "edge"]

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


@dataclass(frozen=True)
class CropResult:
    """One frame's face crop."""

    image: np.ndarray  # uint8 [crop_size, crop_size, 3] RGB
    found: bool  # a face was detected or tracked in this frame (False = fallback crop)
    box: Box | None  # the (smoothed) face box the crop is built on; None for the fallback
    source: Source  # how the box was obtained


@dataclass
class CropStats:
    """Counters of one cropper since it was made (reset() keeps them)."""

    frames: int = 0  # frames cropped
    detected: int = 0  # crops from a fresh detection
    tracked: int = 0  # crops from the tracker
    fallback: int = 0  # centre crops, no face found
    detector_runs: int = 0  # full-frame detections run (the expensive part)
    second_chance: int = 0  # detections that only the second cascade made

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass
class _Track:
    """The face being followed, in detection-scale pixels of frames of one size."""

    frame_shape: tuple[int, int]  # (H, W) of the full-size frames this track belongs to
    box: tuple[int, int, int, int]  # last raw box at detection scale
    template: np.ndarray | None  # grey face patch from the last detection (None: untrackable)
    smooth: np.ndarray = field(default_factory=lambda: np.zeros(4))  # cx, cy, w, h, full size
    since_detect: int = 0  # frames since the detector last ran
    misses: int = 0  # consecutive frames the face was not confirmed


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

    crop(image) returns a CropResult; `stats` counts detected / tracked / fallback crops
    and detector runs; reset() forgets the tracked face (new stream, reconnect).
    """

    def __init__(
        self,
        crop_size: int = DEFAULT_CROP_SIZE,
        margin: float = DEFAULT_CROP_MARGIN,
        *,
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
    ) -> None:
        problems = []
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
        if problems:
            raise ValueError("invalid FaceCropper settings: " + "; ".join(problems))
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
        self._cascade = load_cascade(cascade_path)
        self._second: cv2.CascadeClassifier | None = None
        if second_chance:
            self._second = load_cascade(
                second_cascade_path or cv2.data.haarcascades + SECOND_CASCADE_FILE
            )
        self.stats = CropStats()
        self._track: _Track | None = None
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
            **kwargs,
        )

    def reset(self) -> None:
        """Forget the tracked face; the next frame runs a full detection. Stats are kept."""
        self._track = None
        self._idle_skip = 0

    def crop(self, image: np.ndarray) -> CropResult:
        """Detect or track the face in one RGB uint8 frame and return its crop."""
        rgb = as_rgb_frame(image)
        h, w = rgb.shape[:2]
        self.stats.frames += 1
        self._frames_unlogged += 1
        if self._track is None and self._idle_skip > 0:
            self._idle_skip -= 1  # no face lately: detect only every idle_detect_every frames
            return self._fallback(rgb)
        if self._track is not None and self._track.frame_shape != (h, w):
            logger.info("%s: frame size changed to %dx%d, re-detecting the face", self.name, w, h)
            self._track = None
        scale = min(1.0, self.detect_long_side / max(h, w))
        grey = self._grey(rgb, scale)
        found = self._locate(grey, (h, w))
        if found is None:
            return self._fallback(rgb)
        box, source = found
        assert self._track is not None
        smooth = self._smooth(self._track, np.asarray(box, dtype=np.float64) / scale)
        cx, cy, bw, bh = smooth
        side = self.crop_side(max(bw, bh))
        crop = crop_square(rgb, (cx, cy), side, self.crop_size, self.pad_mode)
        out_box = _to_box(smooth, (h, w))
        if source == "detected":
            self.stats.detected += 1
        else:
            self.stats.tracked += 1
        return CropResult(image=crop, found=True, box=out_box, source=source)

    def crop_side(self, face_side: float) -> float:
        """Side, in frame pixels, of the square cropped around a face box of `face_side`:
        the box plus its margin, cut to crop_size * max_downscale when that is smaller, but
        never smaller than the box itself."""
        side = face_side * (1.0 + 2.0 * self.margin)
        if self.max_downscale is not None:
            side = min(side, max(self.crop_size * self.max_downscale, face_side))
        return side

    # -- steps ------------------------------------------------------------------------

    def _locate(
        self, grey: np.ndarray, frame_shape: tuple[int, int]
    ) -> tuple[tuple[int, int, int, int], Source] | None:
        """This frame's face box at detection scale and how it was found, or None."""
        track = self._track
        may_follow = track is not None
        if track is not None:
            track.since_detect += 1
            if track.since_detect < self.detect_every:
                box = self._follow(grey)
                if box is not None:
                    return box, "tracked"
                may_follow = False  # it just failed: detect, and do not follow again
        box = self._detect(grey)
        if box is not None:
            self._start_track(grey, box, frame_shape)
            return box, "detected"
        if self._track is None:
            self._idle_skip = self.idle_detect_every - 1
            return None
        # The detector did not confirm the tracked face: it may still be there (turned,
        # blurred), so follow it, but give it up after max_misses such frames in a row.
        self._track.misses += 1
        if self._track.misses > self.max_misses:
            logger.debug("%s: face not confirmed for %d frames", self.name, self._track.misses)
            self._track = None  # lost: the next frame detects over the whole frame
            return None
        if may_follow:
            box = self._follow(grey)
            if box is not None:
                return box, "tracked"
        return None

    @staticmethod
    def _grey(rgb: np.ndarray, scale: float) -> np.ndarray:
        grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        if scale < 1.0:
            h, w = grey.shape
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
        return np.asarray(grey, dtype=np.uint8)

    def _detect(self, grey: np.ndarray) -> tuple[int, int, int, int] | None:
        """Full-frame detection; the face nearest the track, else the largest central one."""
        self.stats.detector_runs += 1
        if self._track is not None:
            self._track.since_detect = 0
        boxes, hit_counts = self._cascade_boxes(self._cascade, grey)
        if len(boxes) == 0 and self._second is not None:
            boxes, hit_counts = self._cascade_boxes(self._second, grey)
            if len(boxes) == 0:
                return None
            self.stats.second_chance += 1
            centres = boxes[:, :2] + boxes[:, 2:] / 2
            boxes[:, 2:] *= SECOND_CASCADE_SCALE
            boxes[:, :2] = np.maximum(centres - boxes[:, 2:] / 2, 0.0)
            gh, gw = grey.shape
            boxes[:, 2] = np.minimum(boxes[:, 2], gw - boxes[:, 0])
            boxes[:, 3] = np.minimum(boxes[:, 3], gh - boxes[:, 1])
        if len(boxes) == 0:
            return None
        centres = boxes[:, :2] + boxes[:, 2:] / 2
        if self._track is not None:
            tx, ty, tw, th = self._track.box
            dist = np.hypot(*(centres - (tx + tw / 2, ty + th / 2)).T) / max(tw, th)
            best = int(np.argmin(dist))
            if dist[best] <= NEAR_TRACK_FRACTION:
                return _int_box(boxes[best])
        # A real face is hit at many neighbouring positions and scales; a big false face in
        # textured background at few. Drop weak candidates before preferring the largest.
        strong = hit_counts >= MIN_HIT_FRACTION * hit_counts.max()
        gh, gw = grey.shape
        off_centre = np.hypot(*(centres - (gw / 2, gh / 2)).T) / (np.hypot(gw, gh) / 2)
        score = boxes[:, 2] * boxes[:, 3] * (1.0 - CENTRALITY_WEIGHT * off_centre)
        score[~strong] = -np.inf
        return _int_box(boxes[int(np.argmax(score))])

    def _cascade_boxes(
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

    def _start_track(
        self, grey: np.ndarray, box: tuple[int, int, int, int], frame_shape: tuple[int, int]
    ) -> None:
        x, y, w, h = box
        patch = grey[y : y + h, x : x + w]
        template = patch.copy() if float(patch.std()) >= MIN_TEMPLATE_STD else None
        old = self._track
        if old is None or old.frame_shape != frame_shape:
            self._track = _Track(frame_shape=frame_shape, box=box, template=template)
        else:
            old.box, old.template, old.since_detect, old.misses = box, template, 0, 0

    def _follow(self, grey: np.ndarray) -> tuple[int, int, int, int] | None:
        """Find the last detected face patch near the last box, or None if it is gone."""
        track = self._track
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

    def _smooth(self, track: _Track, box: np.ndarray) -> np.ndarray:
        """Smooth the box (centre and size, full-frame pixels) against jitter.

        A speed-adaptive EMA, in the spirit of the 1-euro filter: moves of the order of the
        detector's jitter are averaged with weight `smoothing` on the previous box, faster
        moves are followed with little lag, and jumps (a cut, another face) snap at once.
        """
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


def _int_box(b: np.ndarray) -> tuple[int, int, int, int]:
    return (int(b[0]), int(b[1]), int(b[2]), int(b[3]))


def _to_box(smooth: np.ndarray, frame_shape: tuple[int, int]) -> Box:
    """Centre/size floats to an (x, y, w, h) box of whole pixels inside the frame."""
    h, w = frame_shape
    cx, cy, bw, bh = smooth.tolist()
    x0 = min(max(0, round(cx - bw / 2)), w - 1)
    y0 = min(max(0, round(cy - bh / 2)), h - 1)
    x1 = min(max(x0 + 1, round(cx + bw / 2)), w)
    y1 = min(max(y0 + 1, round(cy + bh / 2)), h)
    return (x0, y0, x1 - x0, y1 - y0)
