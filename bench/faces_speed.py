"""Face crop speed: ms per frame, detect-every-frame vs tracking, at 480p and 720p.

Frames show the astronaut photograph (scikit-image) at video-call size (face about a
quarter of the frame height) drifting over a textured background; a "no face" row shows
the cost of the fallback path (a full detection on every frame). Run from the repo root:

    .venv/bin/python bench/faces_speed.py [--frames 60] [--threads 0]
"""

from __future__ import annotations

import argparse
import statistics
import time

import cv2
import numpy as np
from skimage import data as skdata

from monitor.media.faces import SCALE_FACTOR, FaceCropper

SIZES = {"480p": (480, 640), "720p": (720, 1280)}  # name -> (H, W)
FACE_HEIGHT_FRACTION = 0.25  # face box height / frame height, a typical video call
HEAD_BOX = (0, 300, 100, 360)  # rows, cols of the astronaut photo: head and shoulders
FACE_SIDE_IN_HEAD = 95  # px, the face box side inside HEAD_BOX at full resolution
DRIFT_PX = (4, 2)  # px per frame the head moves right, down
WARMUP_FRAMES = 3  # not timed: cascade load, first allocations
CROP_SIZE = 112  # px, the contract's default


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=60, help="timed frames per row")
    parser.add_argument(
        "--threads", type=int, default=-1, help="cv2.setNumThreads (-1: OpenCV's default)"
    )
    parser.add_argument("--detect-every", type=int, default=5, help="tracking mode's N")
    parser.add_argument("--scale-factor", type=float, default=SCALE_FACTOR, help="Haar step")
    parser.add_argument(
        "--no-second-chance",
        action="store_true",
        help="no second cascade when the first finds no face (the cost before 2026-11-24)",
    )
    args = parser.parse_args()
    if args.threads >= 0:
        cv2.setNumThreads(args.threads)
    print(
        f"OpenCV {cv2.__version__}, {cv2.getNumThreads()} threads, {args.frames} frames/row, "
        f"scale factor {args.scale_factor}, crops {CROP_SIZE} px, "
        f"second chance {'off' if args.no_second_chance else 'on'}"
    )
    print(
        f"{'size':6} {'mode':22} {'median ms':>10} {'mean ms':>8} {'cpu ms':>7} {'fps':>7} "
        f"{'det runs':>9} {'found':>6}"
    )
    for name, (h, w) in SIZES.items():
        rows = [
            ("detect every frame", make_frames(h, w, args.frames), 1),
            (f"track, detect every {args.detect_every}", None, args.detect_every),
            ("no face (fallback)", make_frames(h, w, args.frames, with_face=False), 1),
        ]
        face_frames = rows[0][1]
        for mode, frames, every in rows:
            frames = frames if frames is not None else face_frames
            assert frames is not None
            cropper = FaceCropper(
                crop_size=CROP_SIZE,
                detect_every=every,
                scale_factor=args.scale_factor,
                second_chance=not args.no_second_chance,
                name=f"bench-{name}",
            )
            med, mean, cpu, runs, found = time_cropper(cropper, frames)
            print(
                f"{name:6} {mode:22} {med:10.2f} {mean:8.2f} {cpu:7.2f} {1e3 / mean:7.1f} "
                f"{runs:>9} {found:6.0%}"
            )


if __name__ == "__main__":
    main()
