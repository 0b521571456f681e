"""Offline scoring throughput: ten-second 720p videos per second, exact vs keyframe sampling.

Writes (once, cached in --clips) N ten-second H.264 + AAC clips: the astronaut photograph
(scikit-image) as a talking head drifting over a textured background, light sensor
noise, 44.1 kHz stereo speech-like audio. Then:

1. profile: where one video's time goes, single process (probe, audio decode, frame
   sampling exact / keyframe, full decode for comparison, face crops, inference);
2. end to end: `score_videos` over all clips with --workers decoder processes, for
   `--sampling exact` and `--sampling keyframe`: videos/s, and how far the two modes'
   scores differ (mean / max |y_pred difference|);
3. with --data/--labels (e.g. a synthetic test split and a trained model): AUC of both
   modes on it.

The model defaults to engines.toy for the contract (inference costs nothing, so the
figure is the decode side); pass --model for a real one. Run from the repo root:

    .venv/bin/python bench/offline_throughput.py [--videos 16] [--workers N] [--gop 250]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
from skimage import data as skdata

from monitor.contract import InputContract
from monitor.media.decode import iter_frames, load_audio, probe, sample_frames, sample_keyframes
from monitor.media.faces import FaceCropper
from monitor.windows import plan_windows

SECONDS = 10.0  # clip length
SIZE = (1280, 720)  # W, H
FPS = 25
AUDIO_RATE = 44_100  # Hz, stereo AAC like the competition's clips
HEAD_BOX = (0, 300, 100, 360)  # rows, cols of the astronaut photo: head and shoulders
FACE_HEIGHT_FRACTION = 0.25  # face box height / frame height, a typical video call
FACE_SIDE_IN_HEAD = 95  # px, the face box side inside HEAD_BOX at full resolution
DRIFT_PX = 40  # amplitude of the head's slow sway, px
NOISE_STD = 2.0  # grey levels of per-frame sensor noise
X264_PRESET = "veryfast"
X264_CRF = "23"


def write_clip(path: Path, seed: int, gop: int) -> Path:
    w, h = SIZE
    rng = np.random.default_rng(seed)
    r0, r1, c0, c1 = HEAD_BOX
    head = skdata.astronaut()[r0:r1, c0:c1]
    scale = FACE_HEIGHT_FRACTION * h / FACE_SIDE_IN_HEAD
    head = cv2.resize(head, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    hh, hw = head.shape[:2]
    blobs = rng.integers(40, 200, (h // 40 + 1, w // 40 + 1, 3), dtype=np.uint8)
    bg = cv2.resize(blobs, (w, h), interpolation=cv2.INTER_CUBIC)
    t = np.arange(round(SECONDS * AUDIO_RATE)) / AUDIO_RATE
    f0 = rng.uniform(100, 220)
    voice = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 8))
    voice = 0.15 * voice * (0.5 + 0.5 * np.sin(2 * np.pi * 3.0 * t)) ** 2
    audio = np.stack([voice, voice]).astype(np.float32)
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=FPS)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        vs.codec_context.gop_size = gop
        vs.options = {"preset": X264_PRESET, "crf": X264_CRF, "sc_threshold": "0"}
        a_s = out.add_stream("aac", rate=AUDIO_RATE)
        a_s.layout = "stereo"
        for i in range(round(SECONDS * FPS)):
            frame = bg.copy()
            x = (w - hw) // 2 + int(DRIFT_PX * np.sin(i / 20.0))
            y = max(0, (h - hh) // 3 + int(DRIFT_PX / 2 * np.sin(i / 13.0)))
            frame[y : y + hh, x : x + hw] = head[: h - y, : w - x]
            noisy = frame + rng.normal(0, NOISE_STD, frame.shape)
            vf = av.VideoFrame.from_ndarray(np.clip(noisy, 0, 255).astype(np.uint8), "rgb24")
            vf.pts, vf.time_base = i, Fraction(1, FPS)
            for pkt in vs.encode(vf):
                out.mux(pkt)
        for pkt in vs.encode():
            out.mux(pkt)
        for start in range(0, audio.shape[1], 1024):
            chunk = audio[:, start : start + 1024]
            inter = np.empty((1, chunk.shape[1] * 2), dtype=np.float32)
            inter[0, 0::2], inter[0, 1::2] = chunk[0], chunk[1]
            af = av.AudioFrame.from_ndarray(inter, format="flt", layout="stereo")
            af.sample_rate, af.pts, af.time_base = AUDIO_RATE, start, Fraction(1, AUDIO_RATE)
            for pkt in a_s.encode(af):
                out.mux(pkt)
        for pkt in a_s.encode():
            out.mux(pkt)
    return path


def make_clips(folder: Path, n: int, gop: int, workers: int = 1) -> list[Path]:
    """The first n clips of the folder, writing the missing ones with `workers` processes
    (about 18 s of one core per clip)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"clip_{i:04d}.mp4" for i in range(n)]
    missing = [(i, p) for i, p in enumerate(paths) if not p.is_file()]
    if missing:
        t0 = time.perf_counter()
        # a clip is written under a temporary name first, so an interrupted run leaves no
        # truncated clip behind to be reused
        with ProcessPoolExecutor(max(1, min(workers, len(missing)))) as pool:
            jobs = [pool.submit(_write_new, p, i, gop) for i, p in missing]
            for job in as_completed(jobs):
                print(f"  wrote {job.result().name} ({time.perf_counter() - t0:.1f} s)", flush=True)
    return paths


def _write_new(path: Path, seed: int, gop: int) -> Path:
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    write_clip(tmp, seed, gop)
    tmp.replace(path)
    return path


def profile(
    clips: list[Path], contract: InputContract, backend: Any
) -> dict[str, dict[str, float]]:
    """Median wall and CPU (this process, all threads) ms per video of each stage."""
    stages: dict[str, list[tuple[float, float]]] = {}

    def timed(name: str, fn: Any) -> Any:
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        stages.setdefault(name, []).append((1000 * wall, 1000 * cpu))
        return out

    for clip in clips:
        info = timed("probe", lambda c=clip: probe(c))
        timed("audio_decode", lambda c=clip: load_audio(c, contract.sample_rate))
        windows = plan_windows(info.duration_s, contract)
        times = sorted({round(t, 6) for w in windows for t in w.frame_times})
        frames = timed("frames_exact", lambda c=clip, ts=times: sample_frames(c, ts))
        timed("frames_keyframe", lambda c=clip, ts=times: sample_keyframes(c, ts))
        timed("full_decode_all_frames", lambda c=clip: sum(1 for _ in iter_frames(c)))
        cropper = FaceCropper.from_contract(contract)
        crops = timed("face_crops", lambda fr=frames, cr=cropper: [cr.crop(f.image) for f in fr])
        n, k, s = len(windows), contract.k_crops, contract.crop_size
        faces = np.zeros((n, k, s, s, 3), dtype=np.uint8)
        for j in range(min(n * k, len(crops))):
            faces[j // k, j % k] = crops[j].image
        audio = np.zeros((n, contract.window_samples), dtype=np.float32)
        timed("inference", lambda a=audio, f=faces: backend.score(a, f))
    out = {
        k: {
            "wall_ms": statistics.median(w for w, _ in v),
            "cpu_ms": statistics.median(c for _, c in v),
        }
        for k, v in stages.items()
    }
    out["frames_sampled"] = {"count": float(len(times))}
    out["faces_found"] = {"count": float(sum(c.found for c in crops))}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--videos", type=int, default=16, help="clips in the end-to-end runs")
    ap.add_argument("--profile-videos", type=int, default=3, help="clips in the profile")
    ap.add_argument("--workers", type=int, default=None, help="decoder processes (default: cores)")
    ap.add_argument("--gop", type=int, default=250, help="frames between keyframes (x264: 250)")
    ap.add_argument("--clips", type=Path, default=None, help="clip cache folder")
    ap.add_argument("--model", default=None, help="model to score with (default: toy ONNX)")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--max-windows", type=int, default=None)
    ap.add_argument("--data", default=None, help="a labelled split to compare AUCs on")
    ap.add_argument("--labels", type=Path, default=None, help="its video_name,target file")
    ap.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = ap.parse_args()

    from engines.loader import load_backend
    from engines.toy import make_toy_onnx
    from monitor.offline.predictions import read_predictions
    from monitor.offline.scoring import ScoreOptions, default_workers, score_videos

    tmp = Path(tempfile.mkdtemp(prefix="offline_bench_"))
    clip_dir = args.clips or Path(tempfile.gettempdir()) / f"offline_bench_clips_gop{args.gop}"
    print(f"clips in {clip_dir} ({SIZE[0]}x{SIZE[1]}, {FPS} fps, {SECONDS:.0f} s, gop {args.gop})")
    workers = default_workers() if args.workers is None else args.workers
    clips = make_clips(clip_dir, max(args.videos, args.profile_videos), args.gop, workers)
    model = args.model or str(make_toy_onnx(InputContract(), tmp / "toy.onnx"))
    backend = load_backend(model, args.backend)
    report: dict[str, Any] = {"videos": args.videos, "workers": workers, "gop": args.gop}
    report["model"] = "toy" if args.model is None else args.model
    report["profile_ms"] = profile(clips[: args.profile_videos], backend.contract, backend)
    print("profile, median per 10 s video (one process):    wall ms    CPU ms")
    for k, v in report["profile_ms"].items():
        print(f"  {k:24s} " + "  ".join(f"{x:9.1f}" for x in v.values()))
    folder = tmp / "videos"
    folder.mkdir()
    for c in clips[: args.videos]:
        (folder / c.name).symlink_to(c.resolve())
    scores: dict[str, dict[str, float]] = {}
    for mode in ("exact", "keyframe"):
        out = tmp / f"pred_{mode}.txt"
        opts = ScoreOptions(
            model=model,
            out=out,
            backend=args.backend,
            sampling=mode,
            workers=workers,
            max_windows=args.max_windows,
            progress=False,
        )
        s = score_videos(folder, opts, backend=backend)
        p = s.profile
        report[mode] = {
            "videos_per_s": p.videos_per_s,
            "steady_videos_per_s": p.steady_videos_per_s,
            "startup_s": p.first_s,
            "loop_s": p.loop_s,
            "decode_worker_s_per_video": p.decode_s / max(1, p.videos),
            "inference_s": p.inference_s,
            "wait_s": p.wait_s,
            "windows": p.windows,
        }
        scores[mode] = {r.video_name: r.y_pred for r in read_predictions(out)}
        print(f"{mode:8s}: {p.videos_per_s:6.2f} videos/s with {workers} workers")
        print(s.describe())
    d = np.array([abs(scores["exact"][n] - scores["keyframe"][n]) for n in scores["exact"]])
    report["keyframe_vs_exact_abs_diff"] = {"mean": float(d.mean()), "max": float(d.max())}
    print(f"|y_pred exact - keyframe|: mean {d.mean():.4f}, max {d.max():.4f}")
    if args.data and args.labels:
        for mode in ("exact", "keyframe"):
            opts = ScoreOptions(
                model=model,
                out=tmp / f"labelled_{mode}.txt",
                labels=args.labels,
                sampling=mode,
                workers=workers,
                max_windows=args.max_windows,
                progress=False,
            )
            s = score_videos(args.data, opts, backend=backend)
            assert s.metrics is not None
            report[f"labelled_{mode}"] = s.metrics["metrics"]
            print(f"labelled {mode}: {s.describe()}")
    backend.close()
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
