"""Face detection, tracking and crops on a real face photograph (skimage's astronaut).

Most behaviour holds for both croppers (the CNN default and the Haar cropper older
models were trained with) and is tested on both; roll alignment, landmarks and the
cropper's version are in test_face_align.py and test_face_cropper_version.py."""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from skimage import data as skdata

from monitor.contract import CROPPER_CNN, CROPPER_HAAR, LEGACY_CROPPER, InputContract
from monitor.errors import ContractError, ModelFormatError
from monitor.media.clip import extract_windows
from monitor.media.faces import (
    FALLBACK_LOG_INTERVAL_S,
    CropResult,
    CropStats,
    FaceCropper,
    as_rgb_frame,
    centre_crop,
    crop_square,
    load_cascade,
)
from monitor.media.landmarks import crop_rotated, pose_from_box

# The astronaut photograph's face (Eileen Collins, frontal), cut to a head-and-shoulders
# patch; FACE is the face box inside HEAD (x, y, w, h), found once by eye and cascade.
ASTRONAUT = skdata.astronaut()
HEAD = np.ascontiguousarray(ASTRONAUT[0:300, 100:360])  # 300 x 260 px
FACE = (77, 66, 95, 95)
MIN_IOU = 0.5  # a box this close to the true face is the face
BOTH = pytest.mark.parametrize("cropper", [CROPPER_CNN, CROPPER_HAAR])


def like(
    res: CropResult, frame: np.ndarray, centre: tuple[float, float], side: float
) -> np.ndarray:
    """The crop `res` should be near: a `side` square at `centre`, turned as `res` was."""
    size = res.image.shape[0]
    return crop_rotated(frame, centre, side, np.radians(res.roll_deg), size)


def background(h: int, w: int, kind: str = "flat", seed: int = 0) -> np.ndarray:
    if kind == "flat":
        return np.full((h, w, 3), 90, dtype=np.uint8)
    if kind == "gradient":
        ramp = np.linspace(30, 200, w, dtype=np.float32)[None, :, None]
        return np.broadcast_to(ramp, (h, w, 3)).astype(np.uint8).copy()
    # "texture": smooth random blobs, like an out-of-focus room
    rng = np.random.default_rng(seed)
    small = rng.integers(40, 200, (h // 40 + 1, w // 40 + 1, 3), dtype=np.uint8)
    return np.asarray(cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC), dtype=np.uint8)


def scene(
    h: int, w: int, x: int, y: int, kind: str = "flat", scale: float = 1.0
) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A frame with the head patch at (x, y), and the true face box in it."""
    frame = background(h, w, kind)
    head = HEAD
    if scale != 1.0:
        head = cv2.resize(HEAD, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    hh, hw = head.shape[:2]
    x0, y0, x1, y1 = max(0, x), max(0, y), min(w, x + hw), min(h, y + hh)
    frame[y0:y1, x0:x1] = head[y0 - y : y1 - y, x0 - x : x1 - x]
    fx, fy, fw, fh = (round(v * scale) for v in FACE)
    return frame, (x + fx, y + fy, fw, fh)


def iou(a: tuple[int, ...] | None, b: tuple[int, ...]) -> float:
    assert a is not None
    ax1, ay1, bx1, by1 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = max(0, min(ax1, bx1) - max(a[0], b[0]))
    ih = max(0, min(ay1, by1) - max(a[1], b[1]))
    inter = iw * ih
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def ncc(a: np.ndarray, b: np.ndarray) -> float:
    """Normalised cross-correlation of two images of one shape (1 = identical up to gain)."""
    x, y = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    x, y = x - x.mean(), y - y.mean()
    return float(x @ y / (np.linalg.norm(x) * np.linalg.norm(y) + 1e-9))


def moving(n: int, h: int = 360, w: int = 480, step: tuple[int, int] = (8, 3)):
    x0, y0 = 20, 10
    for i in range(n):
        yield scene(h, w, x0 + i * step[0], y0 + i * step[1], "gradient")


@BOTH
@pytest.mark.parametrize(
    ("h", "w", "x", "y", "kind", "scale"),
    [
        (360, 480, 20, 30, "flat", 1.0),  # top-left of a small frame
        (480, 640, 330, 150, "gradient", 1.0),  # right of a VGA frame
        (720, 1280, 500, 100, "texture", 2.0),  # 720p, face about 190 px
        (512, 512, 0, 0, "texture", 0.8),  # corner, face clipped by nothing but the margin
    ],
)
def test_crop_is_centred_on_the_face(
    cropper: str, h: int, w: int, x: int, y: int, kind: str, scale: float
) -> None:
    frame, truth = scene(h, w, x, y, kind, scale)
    res = FaceCropper(crop_size=112, margin=0.25, cropper=cropper).crop(frame)
    assert res.found and res.source == "detected"
    assert res.image.shape == (112, 112, 3) and res.image.dtype == np.uint8
    assert iou(res.box, truth) >= MIN_IOU, (res.box, truth)
    # the crop shows the face with its margin: it matches a crop around the true face
    # (turned as the cropper turned it) far better than one shifted by a third of a face
    assert res.box is not None
    tx, ty, tw, th = truth
    side = res.box[2] * 1.5
    centre = (tx + tw / 2, ty + th / 2)
    if cropper == CROPPER_CNN:  # the CNN frames a face a little lower (chin included)
        pose = pose_from_box(truth)
        centre = (pose.cx, pose.cy)
    true_crop = like(res, frame, centre, side)
    shifted = like(res, frame, (centre[0] + tw / 3, centre[1]), side)
    assert ncc(res.image, true_crop) > 0.8
    assert ncc(res.image, true_crop) > ncc(res.image, shifted) + 0.2


@BOTH
def test_tracking_follows_motion_and_skips_detections(cropper: str) -> None:
    cropper_ = FaceCropper(crop_size=96, margin=0.25, detect_every=5, name="cam-1", cropper=cropper)
    sources = []
    for frame, truth in moving(20):
        res = cropper_.crop(frame)
        assert res.found, f"lost the face at {truth}"
        assert iou(res.box, truth) >= MIN_IOU, (res.box, truth)
        sources.append(res.source)
    s = cropper_.stats
    assert s == CropStats(frames=20, detected=4, tracked=16, fallback=0, detector_runs=4)
    assert sources[:6] == ["detected", "tracked", "tracked", "tracked", "tracked", "detected"]
    assert s.as_dict()["detector_runs"] == 4


@BOTH
def test_detect_every_frame_when_asked(cropper: str) -> None:
    faces = FaceCropper(detect_every=1, smoothing=0.0, cropper=cropper)
    for frame, truth in moving(4):
        res = faces.crop(frame)
        assert res.source == "detected" and iou(res.box, truth) >= 0.6
    assert faces.stats.detector_runs == 4 and faces.stats.tracked == 0


@BOTH
def test_smoothing_reduces_jitter(cropper: str) -> None:
    # the head shakes by up to 2 px and the detector adds its own jitter
    rng = np.random.default_rng(0)
    shakes = rng.integers(-2, 3, (8, 2)).tolist()
    frames = [scene(360, 480, 100 + dx, 50 + dy, "gradient")[0] for dx, dy in shakes]

    def jitter(smoothing: float) -> float:
        faces = FaceCropper(detect_every=1, smoothing=smoothing, cropper=cropper)
        boxes = np.array([faces.crop(f).box for f in frames], dtype=np.float64)
        return float(np.abs(np.diff(boxes, axis=0)).mean())

    assert jitter(0.5) < 0.75 * jitter(0.0)


def test_second_cascade_finds_the_face_the_first_misses_with_the_same_framing() -> None:
    frame, truth = scene(360, 480, 120, 40, "texture")
    haar = {"cropper": CROPPER_HAAR, "crop_size": 112}
    first = FaceCropper(**haar).crop(frame)  # the default cascade finds it itself
    # A first cascade that finds no face here (a number-plate one) stands in for a face
    # the default cascade misses; the second chance then finds it.
    plate = cv2.data.haarcascades + "haarcascade_license_plate_rus_16stages.xml"
    rescued = FaceCropper(**haar, cascade_path=plate)
    res = rescued.crop(frame)
    assert res.found and res.source == "detected"
    assert rescued.stats.second_chance == 1 and rescued.stats.detector_runs == 1
    assert iou(res.box, truth) >= MIN_IOU, (res.box, truth)
    assert first.box is not None and res.box is not None
    assert abs(res.box[2] / first.box[2] - 1.0) < 0.15  # boxes rescaled to the same framing
    assert ncc(res.image, first.image) > 0.8
    without = FaceCropper(**haar, cascade_path=plate, second_chance=False)
    assert without.crop(frame).source == "fallback" and without.stats.second_chance == 0


@BOTH
def test_fallback_on_blank_and_noise_is_counted_and_logged(
    cropper: str, caplog: pytest.LogCaptureFixture
) -> None:
    rng = np.random.default_rng(1)
    frames = [
        np.zeros((240, 320, 3), np.uint8),
        np.full((240, 320, 3), 200, np.uint8),
        rng.integers(0, 256, (240, 320, 3), dtype=np.uint8),
        rng.integers(0, 256, (300, 200, 3), dtype=np.uint8),
    ]
    faces = FaceCropper(crop_size=64, name="lobby-cam", cropper=cropper)
    with caplog.at_level(logging.INFO, logger="monitor.media.faces"):
        for frame in frames:
            res = faces.crop(frame)
            assert not res.found and res.source == "fallback" and res.box is None
            assert np.array_equal(res.image, centre_crop(frame, 64))
    assert faces.stats.fallback == 4 and faces.stats.frames == 4
    assert faces.stats.detector_runs == 4  # nothing to track: detect every frame
    assert faces.stats.second_chance == 0  # the second cascade invents no face either
    assert faces.stats.haar_fallback == 0
    lines = [r.getMessage() for r in caplog.records if "no face" in r.getMessage()]
    assert len(lines) == 1, f"not rate-limited to one line per {FALLBACK_LOG_INTERVAL_S}s"
    assert "lobby-cam" in lines[0]


@BOTH
def test_idle_detect_every_backs_off_without_a_face(cropper: str) -> None:
    faces = FaceCropper(idle_detect_every=3, cropper=cropper)
    blank = background(360, 480, "gradient")
    assert not any(faces.crop(blank).found for _ in range(7))
    assert faces.stats.detector_runs == 3  # frames 1, 4 and 7
    assert faces.stats.fallback == 7
    frames = [f for f, _ in moving(3)]
    found = [faces.crop(f).found for f in frames]
    assert found == [False, False, True]  # the face is looked for again on frame 10


@BOTH
def test_face_leaves_then_returns(cropper: str) -> None:
    faces = FaceCropper(max_misses=2, cropper=cropper)
    frames = [f for f, _ in moving(3)]
    for f in frames:
        assert faces.crop(f).found
    blank = background(360, 480, "gradient")
    results = [faces.crop(blank) for _ in range(4)]
    assert [r.source for r in results] == ["fallback"] * 4
    runs = faces.stats.detector_runs
    faces.crop(blank)
    assert faces.stats.detector_runs == runs + 1  # lost: full detection on every frame
    frame, truth = scene(360, 480, 200, 40, "gradient")
    res = faces.crop(frame)
    assert res.source == "detected" and iou(res.box, truth) >= MIN_IOU


@BOTH
def test_prefers_the_tracked_face_over_a_newcomer(cropper: str) -> None:
    faces = FaceCropper(detect_every=2, cropper=cropper)
    h, w = 480, 720
    for i in range(4):
        frame, truth = scene(h, w, 10 + 2 * i, 20, "flat")
        if i >= 2:  # a second face enters, bigger and more central
            big = cv2.resize(HEAD, None, fx=1.3, fy=1.3, interpolation=cv2.INTER_AREA)
            frame[60 : 60 + big.shape[0], 330 : 330 + big.shape[1]] = big
        res = faces.crop(frame)
        assert iou(res.box, truth) >= MIN_IOU, (i, res.box, truth)
    assert faces.stats.detector_runs >= 2
    # a fresh cropper picks the larger, central face
    fresh = FaceCropper(cropper=cropper).crop(frame)
    assert fresh.box is not None and fresh.box[0] > 330


@BOTH
def test_border_padding_keeps_the_face_centred(cropper: str) -> None:
    # face right at the top-left corner: the margin square sticks out of the frame
    frame, truth = scene(360, 480, -60, -50, "flat")
    zero = FaceCropper(crop_size=100, margin=0.5, cropper=cropper).crop(frame)
    assert zero.found and iou(zero.box, truth) >= MIN_IOU
    assert zero.image.shape == (100, 100, 3)
    assert not zero.image[:8, :8].any()  # zero padding outside the frame
    edge = FaceCropper(crop_size=100, margin=0.5, pad_mode="edge", cropper=cropper).crop(frame)
    assert edge.image[:8, :8].min() > 0
    assert np.array_equal(zero.image[40:60, 40:60], edge.image[40:60, 40:60])


def test_crop_square_geometry() -> None:
    img = np.zeros((100, 200, 3), np.uint8)
    img[40:60, 90:110] = 255  # a white square in the middle
    out = crop_square(img, (100, 50), 40, 40)
    assert out.shape == (40, 40, 3) and out[10:30, 10:30].min() == 255 and out[:10].max() == 0
    up = crop_square(img, (100, 50), 20, 80)  # upscaled with INTER_LINEAR
    assert up.shape == (80, 80, 3) and up.min() == 255
    corner = crop_square(img, (0, 0), 50, 50)  # three quarters outside the frame
    assert corner[:25].max() == 0 and corner[:, :25].max() == 0
    assert crop_square(img, (-500, -500), 10, 16).shape == (16, 16, 3)
    cc = centre_crop(img, 100)
    assert np.array_equal(cc, img[:, 50:150])


@BOTH
def test_bad_input_raises_clear_errors(cropper: str) -> None:
    faces = FaceCropper(cropper=cropper)
    frame, _ = scene(240, 320, 20, 0)
    with pytest.raises(ValueError, match="uint8"):
        faces.crop(frame.astype(np.float32) / 255)
    with pytest.raises(ValueError, match="shape"):
        faces.crop(frame[:, :, :2])
    with pytest.raises(ValueError, match="shape"):
        faces.crop(np.zeros(100, np.uint8))
    with pytest.raises(ValueError, match="too small"):
        faces.crop(np.zeros((8, 300, 3), np.uint8))
    with pytest.raises(ValueError, match="numpy"):
        faces.crop(frame.tolist())
    with pytest.raises(ValueError, match="detect_every"):
        FaceCropper(detect_every=0)
    with pytest.raises(ValueError, match="margin"):
        FaceCropper(margin=-0.1)
    with pytest.raises(ValueError, match="cropper="):
        FaceCropper(cropper="dlib-1")
    assert faces.stats.frames == 0
    assert not faces.crop(np.full((20, 20, 3), 128, np.uint8)).found  # tiny but valid
    # convertible inputs: greyscale, [H, W, 1], RGBA, a non-contiguous view
    grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    assert as_rgb_frame(grey).shape == (240, 320, 3)
    res = faces.crop(grey[:, :, None])
    assert res.found and res.image.shape == (112, 112, 3)
    rgba = np.dstack([frame, np.full(frame.shape[:2], 255, np.uint8)])
    assert faces.crop(rgba).found
    assert faces.crop(frame[:, ::-1]).image.shape == (112, 112, 3)


@BOTH
def test_deterministic_and_reset(cropper: str) -> None:
    frames = [f for f, _ in moving(7)]
    a = FaceCropper(name="a", cropper=cropper)
    b = FaceCropper(name="b", cropper=cropper)
    ra = [a.crop(f) for f in frames]
    rb = [b.crop(f) for f in frames]
    for x, y in zip(ra, rb, strict=True):
        assert x.box == y.box and x.source == y.source
        assert np.array_equal(x.image, y.image)
    assert a.stats == b.stats
    assert a.stats.detector_runs == 2  # frames 1 and 6
    assert a.crop(frames[6]).source == "tracked"
    a.reset()
    assert a.crop(frames[6]).source == "detected"
    assert a.stats.frames == 9 and a.stats.detector_runs == 3  # reset keeps the counters


@BOTH
def test_shared_detectors_are_safe_across_threads(cropper: str, tmp_path: Path) -> None:
    assert load_cascade() is load_cascade()  # loaded once per process
    with pytest.raises(ModelFormatError, match="opencv-python-headless"):
        load_cascade(str(tmp_path / "missing.xml"))
    frames = [f for f, _ in moving(6)]
    expected = [r.box for r in map(FaceCropper(detect_every=2, cropper=cropper).crop, frames)]
    got: dict[int, list] = {}

    def work(i: int) -> None:
        faces = FaceCropper(detect_every=2, name=f"thread-{i}", cropper=cropper)
        got[i] = [faces.crop(f).box for f in frames]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == {0: expected, 1: expected}


@BOTH
def test_frame_size_change_redetects(cropper: str) -> None:
    faces = FaceCropper(cropper=cropper)
    f1, _ = scene(360, 480, 30, 30)
    f2, truth = scene(480, 640, 300, 100)
    assert faces.crop(f1).source == "detected"
    res = faces.crop(f2)
    assert res.source == "detected" and iou(res.box, truth) >= MIN_IOU


def test_from_contract_uses_crop_size_margin_and_cropper() -> None:
    contract = InputContract(crop_size=64, crop_margin=0.1)
    cropper = FaceCropper.from_contract(contract, name="x", detect_every=3)
    assert (cropper.crop_size, cropper.margin, cropper.detect_every) == (64, 0.1, 3)
    assert cropper.max_downscale is None and cropper.cropper == CROPPER_CNN
    capped = InputContract(crop_size=64, max_crop_downscale=1.5)
    assert FaceCropper.from_contract(capped).max_downscale == 1.5
    # a model whose contract predates named croppers was trained on Haar crops
    old = InputContract.from_dict({k: v for k, v in contract.to_dict().items() if k != "cropper"})
    assert FaceCropper.from_contract(old).cropper == LEGACY_CROPPER == CROPPER_HAAR


def test_crop_side_is_capped_by_max_downscale() -> None:
    free = FaceCropper(crop_size=100, margin=0.25)
    capped = FaceCropper(crop_size=100, margin=0.25, max_downscale=1.5)
    assert free.crop_side(40) == capped.crop_side(40) == 60  # 60 px: under the cap
    assert free.crop_side(120) == 180 and capped.crop_side(120) == 150  # the margin goes
    # ... but never the face: a box bigger than the cap is kept whole, shrunk to fit
    assert free.crop_side(200) == 300 and capped.crop_side(200) == 200
    with pytest.raises(ValueError, match="max_downscale"):
        FaceCropper(max_downscale=0.0)


def test_contract_crop_downscale_cap_is_optional_and_checked() -> None:
    # unset, the field is left out of the dict: such contracts read (and hash) as before
    assert "max_crop_downscale" not in InputContract().to_dict()
    capped = InputContract(crop_size=224, max_crop_downscale=1.0)
    assert capped.to_dict()["max_crop_downscale"] == 1.0
    assert InputContract.from_dict(capped.to_dict()) == capped
    assert InputContract.from_dict(InputContract().to_dict()).max_crop_downscale is None
    with pytest.raises(ContractError, match="max_crop_downscale=0.1"):
        InputContract(max_crop_downscale=0.1)
    with pytest.raises(ContractError, match="max_crop_downscale"):
        InputContract().check_compatible(capped.__class__(max_crop_downscale=2.0))


@BOTH
def test_big_face_is_cropped_tighter_at_native_resolution(cropper: str) -> None:
    # a face of about 190 px (Haar's box; the CNN's face, chin included, is 1.2 x that)
    scale = 2.0 if cropper == CROPPER_HAAR else 1.75
    frame, truth = scene(720, 1280, 500, 100, "texture", scale)
    free = FaceCropper(crop_size=224, margin=0.25, cropper=cropper).crop(frame)
    res = FaceCropper(crop_size=224, margin=0.25, max_downscale=1.0, cropper=cropper).crop(frame)
    assert res.found and res.box is not None and iou(res.box, truth) >= MIN_IOU
    # the capped crop is the frame's own pixels around the face centre, not resampled...
    x, y, w, h = res.box
    centre = (x + w / 2, y + h / 2) if res.pose is None else (res.pose.cx, res.pose.cy)
    native = like(res, frame, centre, 224)
    assert ncc(res.image, native) > 0.97
    # ...while the uncapped one shows the face and its margin shrunk about 1.3 times
    assert ncc(free.image, native) < 0.8
    assert free.box is not None
    x, y, w, h = free.box
    centre, side = (x + w / 2, y + h / 2), max(w, h)
    if free.pose is not None:
        centre, side = (free.pose.cx, free.pose.cy), free.pose.size
    whole = like(free, frame, centre, side * 1.5)
    assert ncc(free.image, whole) > 0.97
    # a face bigger than the cap loses its margin but none of itself: the box, shrunk
    box_only = FaceCropper(crop_size=112, margin=0.25, max_downscale=1.0, cropper=cropper)
    small_res = box_only.crop(frame)
    assert small_res.box is not None
    x, y, w, h = small_res.box
    centre, side = (x + w / 2, y + h / 2), max(w, h)
    if small_res.pose is not None:
        centre, side = (small_res.pose.cx, small_res.pose.cy), small_res.pose.size
    assert ncc(small_res.image, like(small_res, frame, centre, side)) > 0.97
    # a face that fits under the cap is cropped exactly as without one
    small, _ = scene(360, 480, 20, 30, "flat", 1.0)
    capped_small = FaceCropper(crop_size=112, margin=0.25, max_downscale=1.5, cropper=cropper)
    assert np.array_equal(
        capped_small.crop(small).image,
        FaceCropper(crop_size=112, margin=0.25, cropper=cropper).crop(small).image,
    )


@BOTH
def test_capped_crop_of_a_face_far_bigger_than_the_crop_keeps_the_mouth_in_its_band(
    cropper: str,
) -> None:
    from train.model import MOUTH_BOX

    # a face of about 290 px, 2.6 x a 112-px crop, with a green bar where the mouth is
    # (about 0.8 of the box down); cut at the cap around the face's centre, the crop would
    # end above it
    frame, (x, y, w, h) = scene(720, 1280, 400, 60, "texture", 3.0)
    row, left, right = y + round(0.8 * h), x + round(0.35 * w), x + round(0.65 * w)
    frame[row - 3 : row + 3, left:right] = (0, 255, 0)
    faces = FaceCropper(crop_size=112, margin=0.25, max_downscale=1.0, cropper=cropper)
    res = faces.crop(frame)
    assert res.found and res.box is not None and iou(res.box, (x, y, w, h)) >= MIN_IOU
    img = res.image.astype(int)
    green = (img[..., 1] > 180) & (img[..., 0] < 90) & (img[..., 2] < 90)
    rows, cols = np.nonzero(green)
    assert rows.size > 20
    top, bottom, lo, hi = MOUTH_BOX
    assert top * 112 < rows.mean() < bottom * 112
    assert lo * 112 < cols.mean() < hi * 112


def write_talking_head(path: Path, seconds: float = 3.0, fps: int = 10) -> None:
    """An H.264 + AAC MP4: the astronaut's head drifting over a gradient, a tone as voice."""
    w, h, sr = 480, 360, 44_100
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = w, h, "yuv420p"
        video.options = {"preset": "ultrafast", "crf": "23"}
        audio = out.add_stream("aac", rate=sr)
        audio.layout = "stereo"
        n_frames = round(seconds * fps)
        for i in range(n_frames):
            frame, _ = scene(h, w, 20 + 5 * i, 20 + (i % 10), "gradient")
            vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
            for packet in video.encode(vf):
                out.mux(packet)
        t = np.arange(round(seconds * sr)) / sr
        tone = (0.2 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
        chunk = 1024  # AAC frame size
        for start in range(0, tone.shape[0], chunk):
            part = np.ascontiguousarray(np.stack([tone[start : start + chunk]] * 2))
            af = av.AudioFrame.from_ndarray(part, format="fltp", layout="stereo")
            af.sample_rate, af.pts, af.time_base = sr, start, Fraction(1, sr)
            for packet in audio.encode(af):
                out.mux(packet)
        for stream in (video, audio):
            for packet in stream.encode(None):
                out.mux(packet)


@BOTH
def test_extract_windows_on_a_generated_mp4(cropper: str, tmp_path: Path) -> None:
    path = tmp_path / "talking_head.mp4"
    write_talking_head(path)
    contract = InputContract(cropper=cropper)  # 2 s windows, hop 1 s, K = 4, 112 px crops
    faces = FaceCropper.from_contract(contract, name=path.name)
    clip = extract_windows(path, contract, cropper=faces)
    assert len(clip) == 2 and clip.has_audio and clip.has_video
    assert clip.audio.shape == (2, contract.window_samples) and clip.audio.dtype == np.float32
    assert clip.faces.shape == (2, *contract.faces_shape) and clip.faces.dtype == np.uint8
    assert clip.face_found.shape == (2, 4) and clip.face_found.all()
    # 2 overlapping windows x 4 crops share 2 frame times: 6 distinct frames are cropped once
    assert faces.stats.frames == 6 and faces.stats.fallback == 0
    assert faces.stats.detector_runs < 8  # frames 0.5 s apart are still tracked
    assert np.abs(clip.audio).max() > 0.05
    # every crop shows the face: it matches the same cropper's crop of the photograph
    still, _ = scene(360, 480, 40, 20, "gradient")
    ref = FaceCropper.from_contract(contract).crop(still).image
    for crop in clip.faces.reshape(-1, 112, 112, 3):
        assert ncc(crop, ref) > 0.7
    # a contract that caps the downscale crops that face (a 142-px square) at 112 px:
    # its windows carry the tighter, unresampled crops without being handed a cropper
    capped = replace(contract, max_crop_downscale=1.0)
    tight = extract_windows(path, capped)
    native = FaceCropper.from_contract(capped).crop(still).image
    for crop in tight.faces.reshape(-1, 112, 112, 3):
        assert ncc(crop, native) > 0.7 and ncc(crop, native) > ncc(crop, ref)
