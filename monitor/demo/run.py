"""`make demo`: the product's main job on the shipped detector (CPU + onnxruntime).

Steps, each reused when its output already exists (so a second run starts in seconds):
1. generate the demo's camera clips: a small synthetic test split in the competition
   layout (`synth`, 12 clips of scenes the shipped model never saw);
2. the model: the detector shipped in monitor/models/default/ (trained by `make model`,
   calibrated for 1 false ALERT per stream-hour); with `--train` (`make demo-train`)
   instead a dataset of 320 + 64 clips is generated and the small demo model trained on
   the CPU (`train --config demo`) and exported to ONNX with a parity check;
3. serve one real and one fake test clip as two RTSP cameras on localhost (GStreamer's
   RTSP server, looping), and run `serve` on them with the WebRTC page enabled, printing
   the page and /metrics URLs and a live table. The fake camera reaches ALERT, the real
   one stays CLEAR. Ctrl-C stops everything.

Run: `deepfake-monitor demo --dir demo [--seconds S] [--train]` (or `python -m monitor.demo`).
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt

from monitor.demo.cameras import camera_command, gi_python
from monitor.models import DEFAULT_NAME, describe_model

logger = logging.getLogger("monitor.demo")

DEMO_TRAIN, DEMO_VAL, DEMO_TEST = 320, 64, 12  # clips per split (--train; else test only)
DEMO_DURATION_S = (3.0, 5.0)  # short clips keep --train's set-up on 2 cores ~10 min
DEMO_SEED = 7
LOOP_REPEATS = 150  # the demo cameras replay their clip this many times (~10 min of video)
RTSP_PORTS = (8554, 8555)  # real camera, fake camera
HTTP_PORT = 8080
TRAIN_CONFIG = "demo"  # the demo model's training recipe, train/recipes/demo.yaml
DEMO_FAKE_METHOD = "swap_vc"  # voice and face both replaced: both heads have something to see


def _cli(*args: str) -> None:
    cmd = [sys.executable, "-m", "monitor.cli", *args]
    print("+ deepfake-monitor " + " ".join(args), flush=True)
    subprocess.run(cmd, check=True)


def _step_data(root: Path, train: bool) -> Path:
    """The demo's dataset: its test split (the cameras' clips) and, with --train, the
    train and val splits. A folder from the other mode is regenerated."""
    data = root / "data"
    n_train, n_val = (DEMO_TRAIN, DEMO_VAL) if train else (0, 0)
    if (data / "test_label.txt").is_file() and _has_train_split(data) == train:
        print(f"[1/4] dataset: reusing {data}", flush=True)
        return data
    print(f"[1/4] dataset: generating {n_train}+{n_val}+{DEMO_TEST} clips", flush=True)
    if data.exists():
        shutil.rmtree(data)  # a partial dataset from an interrupted run, or the other mode's
    _cli(
        "synth", str(data), "--train", str(n_train), "--val", str(n_val),
        "--test", str(DEMO_TEST), "--seed", str(DEMO_SEED),
        "--min-duration", str(DEMO_DURATION_S[0]), "--max-duration", str(DEMO_DURATION_S[1]),
        "--voices", "procedural",  # the same clips on any machine, whatever is installed
    )  # fmt: skip
    return data


def _has_train_split(data: Path) -> bool:
    labels = data / "train_label.txt"
    return labels.is_file() and len(labels.read_text().splitlines()) > 1


def _step_train(root: Path, data: Path) -> Path:
    run = root / "run"
    best = run / "best.pt"
    if best.is_file():
        print(f"[2/4] model: reusing {best}", flush=True)
        return best
    print(f"[2/4] model: training on the CPU (recipe {TRAIN_CONFIG})", flush=True)
    args = ["train", str(data), "--out", str(run), "--config", TRAIN_CONFIG]
    if (run / "last.pt").is_file():
        args.append("--resume")
    _cli(*args)
    return best


def _step_export(root: Path, best: Path) -> Path:
    onnx = root / "model.onnx"
    if onnx.is_file() and onnx.stat().st_mtime >= best.stat().st_mtime:
        print(f"[3/4] export: reusing {onnx}", flush=True)
        return onnx
    print("[3/4] export: ONNX with parity check", flush=True)
    _cli("export", str(best), "--out", str(onnx))
    return onnx


def pick_clips(data: Path) -> tuple[Path, Path]:
    """One real and one fake (voice + face swapped) clip of the test split."""
    with (data / "manifest.csv").open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == "test"]
    real = next(r for r in rows if r["target"] == "0")
    fakes = [r for r in rows if r["target"] == "1"]
    fake = next((r for r in fakes if r["method"] == DEMO_FAKE_METHOD), fakes[0])
    return data / "testset" / real["video_name"], data / "testset" / fake["video_name"]


def loop_clip(src: Path, dst: Path, repeats: int = LOOP_REPEATS) -> Path:
    """The clip `repeats` times back to back as a long camera feed: the video remuxed (no
    re-encoding), the audio decoded, cut to the video's span and encoded once.

    Each copy is exactly as long in sound as in pictures. Copying the AAC packets instead
    would restart the audio stream's encoder priming in every copy: a sample-counting
    decoder then hears each copy about 20 ms longer than it shows it, and after 20 copies
    the voice trails the mouth by 0.4 s, a genuine desync in a real camera.
    """
    if dst.is_file():
        return dst
    tmp = dst.with_suffix(".tmp.mp4")
    with av.open(str(src)) as inp:
        video = inp.streams.video[0] if inp.streams.video else None
        audio = inp.streams.audio[0] if inp.streams.audio else None
        packets: list[tuple[av.Packet, int, int]] = []  # packet, its dts and pts
        for pkt in inp.demux(video) if video is not None else ():
            if pkt.dts is not None and pkt.pts is not None and pkt.size:
                packets.append((pkt, pkt.dts, pkt.pts))
        pcm: npt.NDArray[np.float32] | None = None
        rate, layout = 0, "mono"
        if audio is not None:
            rate, layout = audio.rate, audio.layout.name
            inp.seek(0)
            resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate)
            chunks = [
                f.to_ndarray() for frame in inp.decode(audio) for f in resampler.resample(frame)
            ]
            chunks += [f.to_ndarray() for f in resampler.resample(None)]
            if chunks:
                pcm = np.concatenate(chunks, axis=1).astype(np.float32)
        with av.open(str(tmp), "w") as out:
            v_out = out.add_stream_from_template(video) if video is not None else None
            a_out = out.add_stream("aac", rate=rate, layout=layout) if pcm is not None else None
            span, n_copy = Fraction(0), 0
            tb = (video.time_base if video is not None else None) or Fraction(1, 90_000)
            if packets:
                first = min(dts for _, dts, _ in packets)
                end = max(dts + (pkt.duration or 1) for pkt, dts, _ in packets)
                span = (end - first) * tb  # seconds of pictures in one copy
            if pcm is not None:
                span = span or Fraction(pcm.shape[1], rate)
                n_copy = round(span * rate)  # samples of sound in one copy
                if pcm.shape[1] < n_copy:
                    pcm = np.pad(pcm, ((0, 0), (0, n_copy - pcm.shape[1])))
                pcm = np.ascontiguousarray(pcm[:, :n_copy])
            sent = 0  # audio samples encoded so far
            for copy in range(repeats):
                if v_out is not None:
                    shift = round(copy * span / tb)
                    for pkt, dts, pts in packets:
                        pkt.dts, pkt.pts = dts + shift, pts + shift
                        pkt.stream = v_out
                        out.mux(pkt)
                if a_out is not None and pcm is not None:
                    frame = av.AudioFrame.from_ndarray(pcm, format="fltp", layout=layout)
                    frame.sample_rate, frame.pts = rate, sent
                    frame.time_base = Fraction(1, rate)
                    out.mux(a_out.encode(frame))
                    sent += n_copy
            if a_out is not None:
                out.mux(a_out.encode(None))
    tmp.replace(dst)
    return dst


@contextmanager
def rtsp_cameras(clips: list[Path]) -> Iterator[list[str]]:
    """Serve each clip at rtsp://127.0.0.1:PORT/live; fall back to looping files without
    GStreamer (the monitor reads both the same way)."""
    if gi_python()[0] is None:
        print(f"  ({gi_python()[1]}: streaming the clips as files)")
        yield [str(c) for c in clips]
        return
    procs = []
    try:
        for clip, port in zip(clips, RTSP_PORTS, strict=False):
            p = subprocess.Popen(
                camera_command(clip.resolve(), port),
                stdout=subprocess.PIPE,
                text=True,
            )
            procs.append(p)
            line = p.stdout.readline().strip() if p.stdout else ""
            if line != "ready":
                raise RuntimeError(f"RTSP server for {clip} did not start (port {port} in use?)")
        yield [f"rtsp://127.0.0.1:{port}/live" for port in RTSP_PORTS[: len(clips)]]
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()


def write_config(root: Path, model: str | Path, urls: list[str]) -> Path:
    names = ("camera-real", "camera-fake")
    is_file = not urls[0].startswith("rtsp://")
    lines = [
        f"model: {model}",
        "backend: onnxruntime",
        f"server: {{host: 127.0.0.1, port: {HTTP_PORT}}}",
        "webrtc: {enabled: true}",
        f"events: {{path: {root / 'events.jsonl'}}}",
        "streams:",
    ]
    for name, url in zip(names, urls, strict=True):
        loop = ", loop: true" if is_file else ""
        lines.append(f"  - {{id: {name}, url: {url!r}{loop}}}")
    cfg = root / "monitor.yaml"
    cfg.write_text("\n".join(lines) + "\n")
    return cfg


def main(argv: list[str] | None = None) -> int:
    from monitor.commands.demo import add_arguments

    ap = argparse.ArgumentParser(prog="python -m monitor.demo", description=__doc__)
    add_arguments(ap)
    return run(ap.parse_args(argv))


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    root = Path(args.dir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    data = _step_data(root, args.train)
    if args.train:
        onnx = _step_export(root, _step_train(root, data))
        model = str(onnx)
    else:
        model = DEFAULT_NAME
        print(f"[2/4] {describe_model(model)}", flush=True)
        print("[3/4] export: not needed (the shipped model is an ONNX file)", flush=True)
    real, fake = pick_clips(data)
    feeds = [loop_clip(real, root / "camera-real.mp4"), loop_clip(fake, root / "camera-fake.mp4")]
    print(f"[4/4] serve: cameras from {real.name} (real) and {fake.name} (fake)", flush=True)
    with rtsp_cameras(feeds) as urls:
        cfg = write_config(root, model, urls)
        print(
            f"\n  browser page (join with camera + microphone): http://127.0.0.1:{HTTP_PORT}/\n"
            f"  Prometheus metrics:                            http://127.0.0.1:{HTTP_PORT}/metrics\n"
            f"  state-change events:                           {root / 'events.jsonl'}\n"
            f"  cameras: {', '.join(urls)}\n"
            f"  set-up took {time.monotonic() - t0:.0f} s; Ctrl-C to stop\n",
            flush=True,
        )
        serve = ["serve", "--config", str(cfg), "--table"]
        if args.seconds:
            serve += ["--duration", str(args.seconds)]
        with suppress(KeyboardInterrupt):
            _cli(*serve)
    return 0
