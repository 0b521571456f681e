"""Face crop speed and detection rate: both croppers (CNN and Haar) at 480p and 720p.

Speed: frames show the astronaut photograph (scikit-image) at video-call size (face about
a quarter of the frame height) drifting over a textured background; rows time detection
on every frame, tracking with a detection every N frames, and a "no face" stream (a full
detection on every frame, the fallback path). Detection: the real-photograph set of
tests/monitor/media/test_face_photos.py (rolls, profiles, sizes, JPEG, exposure, noise,
occlusion, two faces, no face), faces found and false hits per case. Both print markdown
tables for BENCHMARKS.md. Run from the repo root:

    .venv/bin/python bench/faces_speed.py [--frames 60] [--threads 1] [--no-photos]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from skimage import data as skdata

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from monitor.contract import CROPPER_CNN, CROPPER_HAAR
from monitor.media.faces import FaceCropper

SIZES = {"480p": (480, 640), "720p": (720, 1280)}  # name -> (H, W)
FACE_HEIGHT_FRACTION = 0.25  # face box height / frame height, a typical video call
HEAD_BOX = (0, 300, 100, 360)  # rows, cols of the astronaut photo: head and shoulders
FACE_SIDE_IN_HEAD = 95  # px, the face box side inside HEAD_BOX at full resolution
DRIFT_PX = (4, 2)  # px per frame the head moves right, down
WARMUP_FRAMES = 3  # not timed: model load, first allocations
CROP_SIZE = 112  # px, the contract's default
CROPPERS = {"cnn": CROPPER_CNN, "haar": CROPPER_HAAR}


def make_frames(h: int, w: int, n: int, with_face: bool = True) -> list[np.ndarray]:
    r0, r1, c0, c1 = HEAD_BOX
    head = skdata.astronaut()[r0:r1, c0:c1]
    scale = FACE_HEIGHT_FRACTION * h / FACE_SIDE_IN_HEAD
    head = cv2.resize(head, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    hh, hw = head.shape[:2]
    rng = np.random.default_rng(0)
    blobs = rng.integers(40, 200, (h // 40 + 1, w // 40 + 1, 3), dtype=np.uint8)
    bg = cv2.resize(blobs, (w, h), interpolation=cv2.INTER_CUBIC)
    frames = []
    for i in range(n):
        frame = bg.copy()
        if with_face:
            x = min(w - hw, w // 4 + DRIFT_PX[0] * i)
            y = min(h - hh, h // 8 + DRIFT_PX[1] * i)
            frame[y : y + hh, x : x + hw] = head
        frames.append(frame)
    return frames


def time_cropper(
    cropper: FaceCropper, frames: list[np.ndarray]
) -> tuple[float, float, float, int, float]:
    """Median and mean wall ms per frame, CPU ms per frame (all threads), detector runs
    and the fraction of frames whose face was found."""
    for f in frames[:WARMUP_FRAMES]:
        cropper.crop(f)
    cropper.reset()
    runs0 = cropper.stats.detector_runs
    times, found = [], 0
    cpu0 = time.process_time()
    for f in frames:
        t0 = time.perf_counter()
        res = cropper.crop(f)
        times.append((time.perf_counter() - t0) * 1e3)
        found += res.found
    cpu_ms = (time.process_time() - cpu0) * 1e3 / len(frames)
    runs = cropper.stats.detector_runs - runs0
    return statistics.median(times), statistics.fmean(times), cpu_ms, runs, found / len(frames)


def speed_table(n_frames: int, detect_every: int) -> list[str]:
    lines = [
        "| size | cropper | mode | median ms | mean ms | CPU ms | fps | detector runs | found |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, (h, w) in SIZES.items():
        face_frames = make_frames(h, w, n_frames)
        blank = make_frames(h, w, n_frames, with_face=False)
        for label, cropper_name in CROPPERS.items():
            rows = [
                ("detect every frame", face_frames, 1),
                (f"track, detect every {detect_every}", face_frames, detect_every),
                ("no face (fallback)", blank, 1),
            ]
            for mode, frames, every in rows:
                cropper = FaceCropper(
                    crop_size=CROP_SIZE, detect_every=every, cropper=cropper_name, name="bench"
                )
                med, mean, cpu, runs, found = time_cropper(cropper, frames)
                lines.append(
                    f"| {name} | {label} | {mode} | {med:.1f} | {mean:.1f} | {cpu:.1f} | "
                    f"{1e3 / mean:.0f} | {runs} | {found:.0%} |"
                )
    return lines


def photo_table() -> str:
    from tests.monitor.media.test_face_photos import photo_cases, score, table

    cases = photo_cases()
    results = {
        label: score(cases, FaceCropper(cropper=name).find_faces)
        for label, name in CROPPERS.items()
    }
    return table(results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=60, help="timed frames per row")
    parser.add_argument(
        "--threads", type=int, default=-1, help="cv2.setNumThreads (-1: OpenCV's default)"
    )
    parser.add_argument("--detect-every", type=int, default=5, help="tracking mode's N")
    parser.add_argument("--no-photos", action="store_true", help="skip the detection table")
    args = parser.parse_args()
    if args.threads >= 0:
        cv2.setNumThreads(args.threads)
    print(
        f"OpenCV {cv2.__version__}, {cv2.getNumThreads()} OpenCV threads, onnxruntime 1 "
        f"thread per call, {args.frames} frames/row, crops {CROP_SIZE} px, detection at 320 px, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
    )
    print()
    print("\n".join(speed_table(args.frames, args.detect_every)))
    if not args.no_photos:
        print()
        print(photo_table())


if __name__ == "__main__":
    main()
