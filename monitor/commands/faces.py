"""`deepfake-monitor faces FILE... [--out DIR] [--json]`: the faces the cropper finds.

For an image, and for frames of a video (one every `--step` seconds, at most
`--max-frames`), print each face: box, landmarks, score and the detector that accepted
it, or why there is none. `--json` prints one JSON object per file, with a `faces` list;
`--out DIR` writes each frame annotated (boxes, the five landmarks, the upright crop's
square). The faces are found exactly as the monitor finds them (FaceCropper.find_faces),
with the cropper named by `--cropper` (the default: what new models are trained with).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

HELP = "print the faces found in images and videos (box, landmarks, score, detector)"

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
BOX_COLOUR = (0, 220, 0)  # RGB: the CNN's faces
FALLBACK_COLOUR = (255, 160, 0)  # faces only a Haar cascade confirmed
POINT_COLOUR = (255, 0, 0)
SQUARE_COLOUR = (0, 160, 255)  # the turned square the crop is cut from


def add_arguments(p: argparse.ArgumentParser) -> None:
    from monitor.contract import CROPPERS, DEFAULT_CROPPER

    p.add_argument("files", nargs="+", metavar="FILE", help="images or videos")
    p.add_argument("--out", type=Path, help="write annotated frames into this folder")
    p.add_argument("--json", action="store_true", help="one JSON object per file")
    p.add_argument(
        "--cropper",
        choices=CROPPERS,
        default=DEFAULT_CROPPER,
        help=f"which face cropper's detector (default {DEFAULT_CROPPER})",
    )
    p.add_argument("--step", type=float, default=1.0, help="videos: seconds between frames (1.0)")
    p.add_argument("--max-frames", type=int, default=10, help="videos: frames at most (10)")


def run(args: argparse.Namespace) -> int:
    from monitor.media.faces import FaceCropper

    if args.step <= 0 or args.max_frames < 1:
        print("deepfake-monitor faces: --step must be > 0 and --max-frames >= 1", file=sys.stderr)
        return 2
    finder = FaceCropper(cropper=args.cropper, name="faces")
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
    failed = 0
    for name in args.files:
        report = describe_file(name, finder, args.step, args.max_frames, args.out)
        failed += report.get("error") is not None
        if args.json:
            print(json.dumps(report, sort_keys=True))
        else:
            for line in text_lines(report):
                print(line)
    sys.stdout.flush()
    return 1 if failed else 0


def describe_file(
    name: str, finder: Any, step: float, max_frames: int, out: Path | None
) -> dict[str, Any]:
    """The faces of one file as a JSON-ready dict (an `error` key when it is unusable)."""
    report: dict[str, Any] = {"file": name, "cropper": finder.cropper, "faces": [], "frames": 0}
    try:
        frames = read_frames(name, step, max_frames)
    except Exception as exc:  # any unreadable file is reported, the others go on
        logger.debug("faces %s", name, exc_info=True)
        report["error"] = f"{type(exc).__name__}: {exc}"
        return report
    report["kind"] = "image" if frames[0][0] is None else "video"
    report["frames"] = len(frames)
    empty = 0
    for t, image in frames:
        try:
            found = finder.find_faces(image)
        except ValueError as exc:  # a frame too small or of an odd shape
            report.setdefault("reasons", []).append(str(exc))
            empty += 1
            continue
        if not found:
            empty += 1
        for i, face in enumerate(found):
            report["faces"].append(face_dict(face, t, i))
        if out is not None:
            path = out / annotated_name(name, t)
            write_annotated(path, image, found, finder.crop_side)
            report.setdefault("annotated", []).append(str(path))
    if not report["faces"]:
        report["reason"] = no_face_reason(finder, report.get("reasons"))
    elif empty:
        report["frames_without_face"] = empty
    return report


def read_frames(name: str, step: float, max_frames: int) -> list[tuple[float | None, np.ndarray]]:
    """[(None, image)] for an image file, else [(t, frame)] sampled from the video."""
    import cv2

    path = Path(name)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError("not a readable image (missing, empty or not an image format)")
        return [(None, np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))]
    from monitor.media.decode import probe, sample_frames

    info = probe(name)
    if not info.has_video:
        raise ValueError("no video stream")
    n = max(1, min(max_frames, math.ceil(info.duration_s / step)))  # times before the end
    times = [round(i * step, 6) for i in range(n)]
    return [(f.t, f.image) for f in sample_frames(name, times)]


def face_dict(face: Any, t: float | None, index: int) -> dict[str, Any]:
    out: dict[str, Any] = {
        "index": index,
        "box": [round(v, 1) for v in face.box],
        "score": round(face.score, 3),
        "detector": face.detector,
        "roll_deg": round(math.degrees(face.pose.roll), 1),
        "landmarks": None,
    }
    if t is not None:
        out["t"] = round(t, 3)
    if face.landmarks is not None:
        out["landmarks"] = {
            n: [round(float(x), 1), round(float(y), 1)]
            for n, (x, y) in zip(LANDMARK_NAMES, face.landmarks, strict=True)
        }
    return out


def no_face_reason(finder: Any, problems: list[str] | None) -> str:
    if problems:
        return "; ".join(sorted(set(problems)))
    if finder.cropper.startswith("haar"):
        return "no face: the Haar cascades found none"
    return (
        "no face: the CNN scored nothing as a face, and no weaker candidate was confirmed by "
        "a Haar cascade (a face under about 20 px at 320-px detection scale is too small)"
    )


def text_lines(report: dict[str, Any]) -> list[str]:
    name = report["file"]
    if report.get("error"):
        return [f"{name}: ERROR {report['error']}"]
    if not report["faces"]:
        return [f"{name}: {report['reason']}"]
    lines = []
    for f in report["faces"]:
        where = f"{name}@{f['t']:.2f}s" if "t" in f else name
        x, y, w, h = f["box"]
        text = (
            f"{where}: face {f['index'] + 1} box {x:.0f},{y:.0f} {w:.0f}x{h:.0f} "
            f"score {f['score']:.2f} {f['detector']} roll {f['roll_deg']:+.0f}°"
        )
        if f["landmarks"]:
            pts = " ".join(f"{k}={v[0]:.0f},{v[1]:.0f}" for k, v in f["landmarks"].items())
            text += f" landmarks {pts}"
        lines.append(text)
    if report.get("frames_without_face"):
        lines.append(
            f"{name}: no face in {report['frames_without_face']} of {report['frames']} frames"
        )
    return lines


def annotated_name(name: str, t: float | None) -> str:
    stem = Path(name).name
    return f"{stem}.faces.png" if t is None else f"{stem}.{t:07.2f}s.faces.png"


def write_annotated(path: Path, image: np.ndarray, faces: list[Any], crop_side: Any) -> None:
    """The frame with each face's box, landmarks and the turned square its crop comes from."""
    import cv2

    out = image.copy()
    thick = max(1, round(max(out.shape[:2]) / 400))
    for face in faces:
        x, y, w, h = (round(v) for v in face.box)
        colour = BOX_COLOUR if face.detector == "cnn" else FALLBACK_COLOUR
        cv2.rectangle(out, (x, y), (x + w, y + h), colour, thick)
        p = face.pose
        half = crop_side(p.size) / 2
        c, s = math.cos(p.roll), math.sin(p.roll)
        corners = [(-half, -half), (half, -half), (half, half), (-half, half)]
        square = np.array([(p.cx + c * u - s * v, p.cy + s * u + c * v) for u, v in corners])
        cv2.polylines(out, [square.round().astype(np.int32)], True, SQUARE_COLOUR, thick)
        if face.landmarks is not None:
            for px, py in face.landmarks:
                cv2.circle(out, (round(px), round(py)), 2 * thick, POINT_COLOUR, -1)
        label = f"{face.detector} {face.score:.2f}"
        cv2.putText(
            out, label, (x, max(12, y - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.4 * thick, colour, thick
        )
    cv2.imwrite(str(path), cv2.cvtColor(out, cv2.COLOR_RGB2BGR))
