"""Real photographs, transformed, through both face detectors: detection rate and false hits.

The faces are the photographs that ship in installed packages: scikit-image's astronaut
(Eileen Collins, frontal) and cameraman (a three-quarter view, greyscale) and
matplotlib's Grace Hopper portrait. Each is put into a video-call-sized frame over a
textured backdrop and transformed the ways calls and uploads change faces: roll -45..45
degrees, a three-quarter profile (a horizontal perspective squeeze), face heights
40-500 px, JPEG quality down to 15, dark and over-exposed gamma, sensor noise, partial
occlusion, two faces in one frame; and frames with no face at all (scikit-image's other
photographs: a cat, coffee, a rocket, textures...) count false hits.

`photo_cases()` builds the set (bench/faces_speed.py prints the same table); the test
holds the CNN cropper to >= 95 % of faces found over all transforms and fewer false hits
than the Haar cropper.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache

import cv2
import numpy as np
import pytest
from skimage import data as skdata

from monitor.contract import CROPPER_CNN, CROPPER_HAAR
from monitor.media.faces import FaceCropper, FoundFace

Box = tuple[float, float, float, float]  # x, y, w, h

# The photographs and their true face boxes (x, y, w, h, photo pixels): forehead to chin,
# ear to ear, set by eye over both detectors' boxes.
FACE_BOXES: dict[str, Box] = {
    "astronaut": (182.0, 62.0, 88.0, 114.0),
    "grace_hopper": (180.0, 115.0, 182.0, 222.0),
    "cameraman": (195.0, 110.0, 64.0, 92.0),
}
NO_FACE_PHOTOS = (
    "chelsea", "coffee", "rocket", "brick", "grass", "gravel", "hubble_deep_field",
    "immunohistochemistry", "cell", "coins", "moon", "clock", "text", "page", "horse",
    "checkerboard", "logo", "colorwheel", "retina", "microaneurysms",
)  # fmt: skip
FRAME = (480, 640)  # H, W of a webcam frame
FACE_PX = 120  # face height in the frames of the transform cases
ROLLS_DEG = (-45, -35, -25, -15, 15, 25, 35, 45)
SQUEEZES = (-0.5, -0.35, 0.35, 0.5)  # three-quarter profile: share of the far side lost
SIZES_PX = (40, 60, 90, 160, 250, 350, 500)  # face heights (350 and 500: 720p frames)
JPEG_QUALITIES = (15, 25, 40)
GAMMAS = {"dark": (2.5, 3.5), "bright": (0.4, 0.25)}  # out = in ** gamma (0..1 scale)
NOISE_SIGMAS = (15.0, 30.0)  # grey levels
MIN_SIZE_RATIO, MAX_SIZE_RATIO = 0.5, 2.0  # a hit's size against the true face's
MIN_FOUND = 0.95  # the CNN cropper finds at least this share of all faces


@dataclass
class Case:
    """One test frame: a transform of a photograph and the true face boxes in it."""

    group: str  # roll, profile, size, jpeg, dark, bright, noise, occlusion, two, none
    name: str
    image: np.ndarray  # uint8 RGB
    faces: list[Box] = field(default_factory=list)


@cache
def photo(name: str) -> np.ndarray:
    if name == "grace_hopper":
        import matplotlib.cbook

        path = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
        bgr = cv2.imread(str(path))
        return np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    img = np.asarray(getattr(skdata, "camera" if name == "cameraman" else name)())
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    return np.ascontiguousarray(img[..., :3].astype(np.uint8))


def backdrop(h: int, w: int, seed: int) -> np.ndarray:
    """Smooth random blobs, like an out-of-focus room."""
    rng = np.random.default_rng(seed)
    small = rng.integers(40, 200, (h // 40 + 2, w // 40 + 2, 3), dtype=np.uint8)
    return np.asarray(cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC), np.uint8)


def place(
    name: str, face_px: float, frame: tuple[int, int], centre: tuple[float, float], seed: int = 0
) -> tuple[np.ndarray, Box]:
    """The photograph scaled to a `face_px`-high face centred at `centre` of a backdrop."""
    src = photo(name)
    fx, fy, fw, fh = FACE_BOXES[name]
    k = face_px / fh
    m = np.array([[k, 0.0, centre[0] - k * (fx + fw / 2)], [0.0, k, centre[1] - k * (fy + fh / 2)]])
    h, w = frame
    interp = cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR
    warped = cv2.warpAffine(src, m, (w, h), flags=interp)
    inside = cv2.warpAffine(np.full(src.shape[:2], 255, np.uint8), m, (w, h), flags=interp)
    a = (inside.astype(np.float32) / 255.0)[..., None]
    out = warped * a + backdrop(h, w, seed) * (1.0 - a)
    return out.round().astype(np.uint8), (fx * k + m[0, 2], fy * k + m[1, 2], fw * k, fh * k)


def warp_box(box: Box, matrix: np.ndarray) -> Box:
    """The axis-aligned bounds of `box` after a 2x3 or 3x3 transform."""
    x, y, w, h = box
    pts = np.array([[x, y], [x + w, y], [x, y + h], [x + w, y + h]], np.float64)
    m = matrix if matrix.shape == (3, 3) else np.vstack([matrix, [0, 0, 1]])
    p = np.hstack([pts, np.ones((4, 1))]) @ m.T
    p = p[:, :2] / p[:, 2:]
    return (p[:, 0].min(), p[:, 1].min(), np.ptp(p[:, 0]), np.ptp(p[:, 1]))


def over_backdrop(img: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """`img` warped by a 2x3 or 3x3 matrix, over a fresh backdrop where nothing maps (no
    mirrored copies of the face at the edges)."""
    h, w = img.shape[:2]
    warp = cv2.warpAffine if matrix.shape == (2, 3) else cv2.warpPerspective
    out = warp(img, matrix, (w, h), flags=cv2.INTER_LINEAR)
    cover = warp(np.full((h, w), 255, np.uint8), matrix, (w, h), flags=cv2.INTER_LINEAR)
    a = (cover.astype(np.float32) / 255.0)[..., None]
    return (out * a + backdrop(h, w, 7) * (1.0 - a)).round().astype(np.uint8)


def rolled(img: np.ndarray, box: Box, deg: float) -> tuple[np.ndarray, Box]:
    x, y, w, h = box
    m = cv2.getRotationMatrix2D((x + w / 2, y + h / 2), deg, 1.0)
    out = over_backdrop(img, m)
    # a rolled face's own extent: the box turned, its bounds shrunk back to the face's
    # height (the turned box's corners are background)
    bx, by, bw, bh = warp_box(box, m)
    c, s = abs(math.cos(math.radians(deg))), abs(math.sin(math.radians(deg)))
    shrink = 1.0 / (c + s)
    return out, (bx + bw * (1 - shrink) / 2, by + bh * (1 - shrink) / 2, bw * shrink, bh * shrink)


def squeezed(img: np.ndarray, box: Box, amount: float) -> tuple[np.ndarray, Box]:
    """A yaw seen as a perspective squeeze: one side of the face narrower and shorter."""
    x, y, w, h = box
    cx = x + w / 2
    half = 0.8 * h  # the squeezed region: the head, a little more than the face
    x0, x1, y0, y1 = cx - half, cx + half, y + h / 2 - half, y + h / 2 + half
    near_h = 0.5 * abs(amount) * (y1 - y0) * 0.3  # the far side gets this much shorter
    dst_x0, dst_x1 = x0 + abs(amount) * half * 0.6, x1 - abs(amount) * half * 0.6
    src = np.float32([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
    if amount > 0:  # the right side turns away
        dst = np.float32([[dst_x0, y0], [dst_x1, y0 + near_h], [dst_x1, y1 - near_h], [dst_x0, y1]])
    else:
        dst = np.float32([[dst_x0, y0 + near_h], [dst_x1, y0], [dst_x1, y1], [dst_x0, y1 - near_h]])
    m = cv2.getPerspectiveTransform(src, dst)
    return over_backdrop(img, m), warp_box(box, m)


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(
        ".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    assert ok
    return np.ascontiguousarray(
        cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    )


def gamma(img: np.ndarray, g: float) -> np.ndarray:
    lut = np.clip(255.0 * (np.arange(256) / 255.0) ** g * (1.25 if g < 1 else 1.0), 0, 255)
    return lut.astype(np.uint8)[img]


def noisy(img: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(img + rng.normal(0, sigma, img.shape), 0, 255).astype(np.uint8)


def occluded(img: np.ndarray, box: Box, kind: str) -> np.ndarray:
    out = img.copy()
    x, y, w, h = box
    if kind == "mask":  # a face mask over the nose tip, mouth and chin
        region = (x + 0.05 * w, y + 0.55 * h, x + 0.95 * w, y + 1.0 * h)
        colour = (120, 170, 200)
    elif kind == "hand":  # a hand over one eye and part of the nose
        region = (x + 0.05 * w, y + 0.2 * h, x + 0.55 * w, y + 0.6 * h)
        colour = (200, 150, 120)
    else:  # "mic": a microphone / cup in front of the mouth
        region = (x + 0.3 * w, y + 0.6 * h, x + 0.7 * w, y + 1.0 * h)
        colour = (40, 40, 40)
    x0, y0, x1, y1 = (round(v) for v in region)
    out[max(0, y0) : y1, max(0, x0) : x1] = colour
    return out


def no_face_photo(name: str) -> np.ndarray:
    img = np.asarray(getattr(skdata, name)())
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    img = img[..., :3]
    if img.dtype != np.uint8:
        img = (255 * (img.astype(np.float64) / max(1e-9, float(img.max())))).astype(np.uint8)
    h, w = img.shape[:2]
    k = min(FRAME[1] / w, FRAME[0] / h)
    if k < 1:
        img = cv2.resize(img, (round(w * k), round(h * k)), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(img)


def photo_cases() -> list[Case]:
    """The whole set: every transform of every photograph, two-face frames, no-face frames."""
    cases: list[Case] = []
    h, w = FRAME
    centre = (w * 0.5, h * 0.45)
    for i, name in enumerate(FACE_BOXES):
        base, box = place(name, FACE_PX, FRAME, centre, seed=i)
        cases.append(Case("upright", name, base, [box]))
        for deg in ROLLS_DEG:
            img, b = rolled(base, box, deg)
            cases.append(Case("roll", f"{name} {deg:+d}°", img, [b]))
        for amount in SQUEEZES:
            img, b = squeezed(base, box, amount)
            cases.append(Case("profile", f"{name} squeeze {amount:+.2f}", img, [b]))
        for px in SIZES_PX:
            frame = FRAME if px <= 250 else (720, 1280)
            img, b = place(name, px, frame, (frame[1] * 0.5, frame[0] * 0.5), seed=i)
            cases.append(Case("size", f"{name} {px}px", img, [b]))
        for q in JPEG_QUALITIES:
            cases.append(Case("jpeg", f"{name} q{q}", jpeg(base, q), [box]))
        for group, values in GAMMAS.items():
            for g in values:
                cases.append(Case(group, f"{name} gamma {g}", gamma(base, g), [box]))
        for sigma in NOISE_SIGMAS:
            cases.append(Case("noise", f"{name} sigma {sigma:g}", noisy(base, sigma, i), [box]))
        for kind in ("mask", "hand", "mic"):
            cases.append(Case("occlusion", f"{name} {kind}", occluded(base, box, kind), [box]))
    names = list(FACE_BOXES)
    for j in range(len(names)):
        a, b = names[j], names[(j + 1) % len(names)]
        left, box_a = place(a, 110, FRAME, (w * 0.27, h * 0.45), seed=10 + j)
        right, box_b = place(b, 110, FRAME, (w * 0.73, h * 0.45), seed=10 + j)
        img = np.concatenate([left[:, : w // 2], right[:, w // 2 :]], axis=1)
        cases.append(Case("two", f"{a} + {b}", np.ascontiguousarray(img), [box_a, box_b]))
    for name in NO_FACE_PHOTOS:
        cases.append(Case("none", name, no_face_photo(name)))
    for seed in range(3):
        cases.append(Case("none", f"backdrop {seed}", backdrop(h, w, 100 + seed)))
    return cases


def matches(found: FoundFace, truth: Box) -> bool:
    """A hit: its centre inside the true face box, its size within 0.5-2x of the face's."""
    x, y, w, h = found.box
    cx, cy = x + w / 2, y + h / 2
    tx, ty, tw, th = truth
    ratio = max(w, h) / max(tw, th)
    inside = tx <= cx <= tx + tw and ty <= cy <= ty + th
    return inside and MIN_SIZE_RATIO <= ratio <= MAX_SIZE_RATIO


@dataclass
class Tally:
    faces: int = 0
    found: int = 0
    false_hits: int = 0
    frames: int = 0


def score(cases: list[Case], find: Callable[[np.ndarray], list[FoundFace]]) -> dict[str, Tally]:
    """Per group: faces, faces found, false hits (detections matching no true face), frames."""
    out: dict[str, Tally] = {}
    for case in cases:
        t = out.setdefault(case.group, Tally())
        got = find(case.image)
        t.frames += 1
        t.faces += len(case.faces)
        t.found += sum(any(matches(f, truth) for f in got) for truth in case.faces)
        t.false_hits += sum(not any(matches(f, truth) for truth in case.faces) for f in got)
    return out


def table(results: dict[str, dict[str, Tally]]) -> str:
    """Markdown: per group, found / faces and false hits for each detector."""
    names = list(results)
    head = "| case | frames | " + " | ".join(f"{n} found | {n} false hits" for n in names) + " |"
    lines = [head, "|" + "---|" * (2 + 2 * len(names))]
    groups = list(next(iter(results.values())))
    for g in [*groups, "all"]:
        cells = []
        for n in names:
            tallies = results[n].values() if g == "all" else [results[n][g]]
            faces = sum(t.faces for t in tallies)
            found = sum(t.found for t in tallies)
            hits = sum(t.false_hits for t in tallies)
            cells.append(f"{found}/{faces} ({found / faces:.0%})" if faces else "-")
            cells.append(str(hits))
        frames = sum(
            t.frames for t in (results[names[0]].values() if g == "all" else [results[names[0]][g]])
        )
        lines.append(f"| {g} | {frames} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


@pytest.fixture(scope="module")
def cases() -> list[Case]:
    return photo_cases()


@pytest.mark.slow  # about 120 frames through both detectors: 15-30 s on 2 cores
def test_the_cnn_finds_real_faces_under_every_transform_with_fewer_false_hits_than_haar(
    cases: list[Case],
) -> None:
    cnn = score(cases, FaceCropper(cropper=CROPPER_CNN).find_faces)
    haar = score(cases, FaceCropper(cropper=CROPPER_HAAR).find_faces)
    report = table({"cnn": cnn, "haar": haar})
    print("\n" + report)
    faces = sum(t.faces for t in cnn.values())
    found = sum(t.found for t in cnn.values())
    assert faces >= 90 and found / faces >= MIN_FOUND, report
    for group in ("roll", "profile", "jpeg", "dark", "bright", "noise", "two"):
        assert cnn[group].found >= 0.9 * cnn[group].faces, report
    cnn_false = sum(t.false_hits for t in cnn.values())
    haar_false = sum(t.false_hits for t in haar.values())
    assert cnn_false < haar_false, report
    # and the CNN finds more of the faces than the cascades do
    assert found > sum(t.found for t in haar.values()), report
