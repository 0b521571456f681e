"""A tiny competition-format dataset written with PyAV, for the training and data tests.

Fakes carry artefacts a small detector learns within a few dozen steps, one per
modality so the per-modality heads have something to find: a faked voice has an
added narrow band near 5 kHz (a vocoder whine), a faked face has fine vertical stripes
(an upsampling grid). Reals are the same picture and voice without them. Clips are
short, small and few, so a dataset is written in about a second.
"""

from __future__ import annotations

import csv
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from monitor.contract import InputContract

AUDIO_RATE = 16_000  # Hz, mono AAC
FPS = 10  # frames per second
SIZE = 64  # px, square frames
SECONDS = 2.0  # clip length
WHINE_HZ = 5_000.0  # the audio artefact of a fake voice
STRIPE_PERIOD_PX = 16  # the visual artefact of a fake face (8 px in a 32 px crop)
STRIPE_AMPLITUDE = 40  # grey levels
# method -> (audio_fake, video_fake)
METHODS = {"real": (0, 0), "voice_clone": (1, 0), "face_swap": (0, 1), "both": (1, 1)}
FAMILIES = {"real": "real", "voice_clone": "audio", "face_swap": "face", "both": "both"}

# A contract small enough for CPU tests: 3 windows of 1 s per 2 s clip, 2 crops of 32 px.
TINY_CONTRACT = InputContract(window_seconds=1.0, hop_seconds=0.5, k_crops=2, crop_size=32)


def _audio(rng: np.random.Generator, fake: bool) -> np.ndarray:
    t = np.arange(round(SECONDS * AUDIO_RATE)) / AUDIO_RATE
    f0 = rng.uniform(110.0, 220.0)
    x = sum(np.sin(2 * np.pi * f0 * h * t + rng.uniform(0, 6.3)) / h for h in range(1, 6))
    x = 0.2 * x * (0.6 + 0.4 * np.sin(2 * np.pi * rng.uniform(2.0, 4.0) * t))
    x = x + rng.normal(0.0, 0.01, t.size)
    if fake:
        x = x + 0.08 * np.sin(2 * np.pi * WHINE_HZ * t)
    return np.clip(x, -1, 1).astype(np.float32)


def _frames(rng: np.random.Generator, fake: bool) -> list[np.ndarray]:
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    base = rng.uniform(60, 180, size=3)
    slope = rng.uniform(-1.0, 1.0, size=2)
    img = base[None, None, :] + (slope[0] * xx + slope[1] * yy)[..., None]
    if fake:
        stripes = np.where((xx // (STRIPE_PERIOD_PX // 2)) % 2 == 0, 1.0, -1.0)
        img = img + STRIPE_AMPLITUDE * stripes[..., None]
    frames = []
    for _ in range(round(SECONDS * FPS)):
        noisy = img + rng.normal(0.0, 3.0, img.shape)
        frames.append(np.clip(noisy, 0, 255).astype(np.uint8))
    return frames


def write_clip(path: Path, audio_fake: bool, video_fake: bool, seed: int) -> Path:
    """An H.264 + AAC mp4 of SECONDS seconds with the chosen artefacts."""
    rng = np.random.default_rng(seed)
    audio = _audio(rng, audio_fake)
    with av.open(str(path), mode="w", format="mp4") as out:
        vs = out.add_stream("libx264", rate=FPS)
        vs.width, vs.height, vs.pix_fmt = SIZE, SIZE, "yuv420p"
        vs.options = {"preset": "ultrafast", "crf": "20"}
        a_s = out.add_stream("aac", rate=AUDIO_RATE)
        a_s.layout = "mono"
        for i, img in enumerate(_frames(rng, video_fake)):
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, FPS)
            for pkt in vs.encode(frame):
                out.mux(pkt)
        for pkt in vs.encode():
            out.mux(pkt)
        chunk = 1024
        for start in range(0, audio.size, chunk):
            af = av.AudioFrame.from_ndarray(audio[None, start : start + chunk], "flt", "mono")
            af.sample_rate, af.pts, af.time_base = AUDIO_RATE, start, Fraction(1, AUDIO_RATE)
            for pkt in a_s.encode(af):
                out.mux(pkt)
        for pkt in a_s.encode():
            out.mux(pkt)
    return path


def write_dataset(
    root: Path,
    n_per_method: dict[str, int],
    seed: int = 0,
    manifest: bool = True,
    label_names: tuple[str, ...] = ("train_label.txt", "val_label.txt"),
) -> Path:
    """Write trainset/ and valset/ with n clips per method each (val gets half, at least 1)."""
    rows: list[tuple[str, str, int, int, int, str, str, float]] = []
    for split, label_name, scale in (
        ("trainset", label_names[0], 1.0),
        ("valset", label_names[1], 0.5),
    ):
        folder = root / split
        folder.mkdir(parents=True, exist_ok=True)
        lines = ["video_name,target"]
        for method, n in n_per_method.items():
            a, v = METHODS[method]
            for j in range(max(1, round(n * scale))):
                seed_j = seed * 100_003 + len(rows)
                name = f"{split[:3]}_{method}_{j:03d}.mp4"
                write_clip(folder / name, bool(a), bool(v), seed_j)
                target = int(a or v)
                lines.append(f"{name},{target}")
                face_px = 100.0 + 60.0 * (j % 3)  # nominal: lets `evaluate` bin by face size
                rows.append((name, split, target, a, v, method, FAMILIES[method], face_px))
        (root / label_name).write_text("\n".join(lines) + "\n")
    if manifest:
        with (root / "manifest.csv").open("w", newline="") as f:
            w = csv.writer(f)
            header = "video_name,split,target,audio_fake,video_fake,method,family,face_height_px"
            w.writerow(header.split(","))
            w.writerows(rows)
    return root


def write_corrupt(path: Path) -> Path:
    """A clip whose bytes are cut in half: a real mp4 header, no index, undecodable."""
    write_clip(path, False, False, seed=12345)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path
