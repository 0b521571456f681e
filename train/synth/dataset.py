"""`generate_dataset`: a synthetic dataset in the competition's layout.

```
OUT/trainset/<32 hex>.mp4   OUT/train_label.txt   video_name,target (1 = fake)
OUT/valset/<32 hex>.mp4     OUT/val_label.txt
OUT/testset/<32 hex>.mp4    OUT/test_label.txt    (labels for local scoring)
OUT/manifest.csv            one row per clip: split, label, method, identity, scene...
```

Each split is balanced: its fakes and reals come in pairs rendered from one scene (see
`scene.py`), so everything but the manipulation has the same distribution in both
classes; an odd count adds one unpaired clip. Identities are disjoint between splits
(test faces and voices are unseen in training), except that the photo-based identities
(names ending in "p", one in six) are all variants of the same photograph. Fake methods
are spread evenly over a split's fakes; `holdout` methods appear only in the test split,
to measure how a detector generalises to unseen manipulation families.

`voices="real"` voices the calls with real recordings and speech synthesizers
(voices.py): every identity of a split speaks with the voice of one of the split's real
speakers, splits are speaker-disjoint and voice-disjoint (`voices.make_cast`), and
`holdout` may also name a synthesizer engine or a speaker. A NOTICE.md in OUT credits the
recordings and synthesizers.

Everything derives from `seed`: labels, manifest and decoded frames are the same on
every run, whatever the number of worker processes.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import logging
import math
import multiprocessing
import os
import shutil
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from monitor.errors import ConfigError, DatasetError
from train.synth import voices as real_voices
from train.synth.fakes import (
    METHODS,
    NEEDS_DONOR,
    PROCEDURAL_METHODS,
    TTS_METHODS,
    FakePlan,
    pick_donor,
    sample_fake_plan,
)
from train.synth.render import ClipSpec, SceneJob, render_job
from train.synth.scene import DEFAULT_DURATION_S, Identity, make_identity, sample_scene

logger = logging.getLogger(__name__)

# split name -> (folder, label file), in the order they are generated and listed
SPLITS: dict[str, tuple[str, str]] = {
    "train": ("trainset", "train_label.txt"),
    "val": ("valset", "val_label.txt"),
    "test": ("testset", "test_label.txt"),
}
LABEL_HEADER = ("video_name", "target")
CLIPS_PER_IDENTITY = 4  # average clips of one person in a split
PHOTO_EVERY = 6  # one identity in 6 is a variant of the shipped photograph (name ends "p")
MIN_IDENTITIES = 3  # per split, so that swaps and conversions have donors
MANIFEST_COLUMNS = (
    "video_name",
    "split",
    "target",
    "audio_fake",
    "video_fake",
    "method",
    "family",
    "identity",
    "donor",
    "scene",
    "seed",
    "duration",
    "fps",
    "width",
    "height",
    "crf",
    "audio_bitrate",
    "lead_silence",
    "trail_silence",
    "rms_dbfs",
    "face_height_px",
    "face_x",
    "face_y",
    "params",
    "engine",  # what made the voice heard: procedural, recording, dsp or a synthesizer
    "voice",  # the voice heard: a speaker, or engine/voice of a synthesizer
    "speaker",  # the scene's real speaker (real voices), for reals and fakes alike
    "language",
)
VOICINGS = ("procedural", "real")  # how calls are voiced (`auto` picks one of them)
NOTICE_NAME = "NOTICE.md"  # credits of the recordings and synthesizers (real voices)


@dataclass(frozen=True)
class Holdout:
    """What `--holdout` named: methods, synthesizer engines and real speakers."""

    methods: tuple[str, ...] = ()  # held-out methods, engines' methods included
    engines: tuple[str, ...] = ()
    speakers: tuple[str, ...] = ()


@dataclass(frozen=True)
class DatasetSummary:
    """What `generate_dataset` wrote."""

    root: Path
    counts: dict[str, tuple[int, int]]  # split -> (real, fake)
    seconds: float  # wall time
    workers: int
    voices: str = "procedural"  # how the calls were voiced

    @property
    def n_clips(self) -> int:
        return sum(r + f for r, f in self.counts.values())


def _seed(*parts: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(p) for p in parts]))


def _name(seed: int, split: str, index: int, role: str) -> str:
    digest = hashlib.blake2b(f"{seed}/{split}/{index}/{role}".encode(), digest_size=16)
    return digest.hexdigest() + ".mp4"


def _identities(seed: int, split_no: int, split: str, n_clips: int) -> list[Identity]:
    n = max(MIN_IDENTITIES, math.ceil(n_clips / CLIPS_PER_IDENTITY))
    prefix = {"train": "tr", "val": "va", "test": "te"}[split]
    out = []
    for k in range(n):
        photo = k % PHOTO_EVERY == 2  # small pools (3 identities) include one too
        name = f"{prefix}{k:03d}" + ("p" if photo else "")
        out.append(make_identity(name, int(_seed(seed, split_no, 1, k).integers(2**31)), photo))
    return out


def _method_cycle(methods: Sequence[str], n: int, rng: np.random.Generator) -> list[str]:
    """`n` methods, each used floor(n / len) or ceil(n / len) times, in random order."""
    out: list[str] = []
    while len(out) < n:
        out.extend(methods[i] for i in rng.permutation(len(methods)))
    return out[:n]


@dataclass(frozen=True)
class ClipRow:
    """One clip of the dataset as planned: its file name, split, scene and fake (if any)."""

    name: str  # 32 hex + ".mp4"
    split: str  # "train", "val" or "test"
    scene_index: int  # scenes are numbered per split; a real clip and its fake share one
    fake: FakePlan | None  # None: a real clip


def _pick_method(able: Sequence[str], used: dict[str, int], rng: np.random.Generator) -> str:
    """The least-used of the methods that can fake a scene (ties drawn at random)."""
    if not able:
        raise ConfigError(f"no fake method of {sorted(used)} can voice this scene")
    fewest = min(used[m] for m in able)
    tied = [m for m in able if used[m] == fewest]
    method = tied[int(rng.integers(len(tied)))]
    used[method] += 1
    return method


def _real_donor(
    identity: Identity, speaker: str, pool: list[Identity], rng: np.random.Generator
) -> Identity:
    """Another identity whose voice is audibly higher or lower than the speaker's."""
    others = [p for p in pool if p.name != identity.name]
    if not others:
        raise ValueError("a donor needs at least two identities in the split")
    distinct = [p for p in others if real_voices.far_enough(speaker, p.voice)]
    choices = distinct or others
    return choices[int(rng.integers(len(choices)))]


def plan_split(
    seed: int,
    split: str,
    n_clips: int,
    methods: Sequence[str],
    duration_s: tuple[float, float] = DEFAULT_DURATION_S,
    *,
    voices: str = "procedural",
    cast: real_voices.Cast | None = None,
) -> tuple[list[SceneJob], list[tuple[ClipRow, SceneJob]]]:
    """The scenes of one split and, for every clip, its row and its scene's job.

    Clip paths are bare file names here; `generate_dataset` places them in the split's
    folder once the output root is known. With `voices="real"` each identity speaks with
    the voice of one of the split's speakers in `cast` (default `voices.make_cast()`),
    each scene draws its language and channel, and a fake's method is the least-used one
    that can voice the scene's language in this split. Procedural speech leaves out the
    synthesizer methods, and plans exactly what it planned before real voices existed.
    """
    if voices not in VOICINGS:
        raise ConfigError(f"voices must be one of {', '.join(VOICINGS)}, got {voices!r}")
    real = voices == "real"
    methods = [m for m in methods if real or m not in TTS_METHODS]
    split_no = list(SPLITS).index(split)
    rng = _seed(seed, split_no, 0)
    n_fake = n_clips // 2 + (n_clips % 2) * int(rng.integers(2))
    n_real = n_clips - n_fake
    n_pairs = min(n_fake, n_real)
    n_scenes = n_pairs + abs(n_fake - n_real)
    pool = _identities(seed, split_no, split, n_clips)
    fake_methods = _method_cycle(methods, n_fake, rng)
    speaker_of: dict[str, str] = {}
    used = dict.fromkeys(methods, 0)
    if real and n_scenes:
        cast = cast or real_voices.make_cast()
        speakers = cast.speakers.get(split, ())
        if not speakers:
            raise ConfigError(f"no real speaker is left for the {split} split (see --holdout)")
        speaker_of = {ident.name: speakers[k % len(speakers)] for k, ident in enumerate(pool)}
    jobs: list[SceneJob] = []
    rows: list[tuple[ClipRow, SceneJob]] = []
    for j in range(n_scenes):
        srng = _seed(seed, split_no, 2, j)
        identity = pool[int(srng.integers(len(pool)))]
        scene = sample_scene(srng, identity, duration_s)
        has_real = j < n_pairs or n_real > n_fake
        has_fake = j < n_pairs or n_fake > n_real
        voicing = None
        if real:  # its own generator: procedural scenes draw what they drew before
            vrng = _seed(seed, split_no, 4, j)
            voicing = real_voices.plan_voicing(speaker_of[identity.name], vrng)
        clips: list[tuple[ClipRow, ClipSpec]] = []
        if has_real:
            name = _name(seed, split, j, "real")
            clips.append((ClipRow(name, split, j, None), ClipSpec(name, split, None)))
        if has_fake:
            frng = _seed(seed, split_no, 3, j)
            if voicing is None:
                method = fake_methods.pop()
                donor = pick_donor(identity, pool, frng) if method in NEEDS_DONOR else None
                plan = sample_fake_plan(method, frng, donor)
            else:
                assert cast is not None
                v, c = voicing, cast
                able = [m for m in methods if c.can_voice(m, split, v.language)]
                method = _pick_method(able, used, vrng)
                needs = method in NEEDS_DONOR
                donor = _real_donor(identity, v.speaker, pool, frng) if needs else None
                plan = sample_fake_plan(method, frng, donor)
                if method in TTS_METHODS:
                    speaker = real_voices.SPEAKERS[v.speaker]
                    tts = c.pick_tts(method, split, speaker, v.language, frng)
                    plan = dataclasses.replace(plan, tts=tts)
            name = _name(seed, split, j, "fake")
            clips.append((ClipRow(name, split, j, plan), ClipSpec(name, split, plan)))
        job = SceneJob(scene, tuple(c for _, c in clips), voicing)
        jobs.append(job)
        rows.extend((r, job) for r, _ in clips)
    return jobs, rows


def _manifest_row(row: ClipRow, job: SceneJob) -> dict[str, str]:
    s = job.scene
    plan = row.fake
    spec = plan.spec if plan else None
    params = ""
    if plan is not None:
        bits = []
        if plan.vocoder is not None:
            bits.append(f"vocoder_rate={plan.vocoder.rate};gl_iters={plan.vocoder.iters}")
        if plan.face_fx is not None:
            fx = plan.face_fx
            bits.append(f"lowres={fx.lowres_factor:.2f};noise_keep={fx.noise_keep:.2f}")
        if spec and spec.name in ("face_swap", "swap_vc"):
            bits.append(f"swap_res={plan.swap_resolution:.2f};colour={plan.swap_colour_match:.2f}")
        if plan.method == "desync_shift":
            bits.append(f"shift_s={plan.shift_s:.3f}")
        if plan.tts is not None:
            bits.append(f"speed={plan.tts.speed:.2f};pitch={plan.tts.pitch}")
        params = ";".join(bits)
    if job.voicing is not None:
        v = job.voicing
        kind = "narrow" if v.channel.narrow else "wide"
        band = f"channel={kind};cutoff={v.channel.cutoff_hz:.0f}"
        params = ";".join(b for b in (params, band) if b)
    return {
        "video_name": row.name,
        "split": row.split,
        "target": str(int(plan is not None)),
        "audio_fake": str(int(bool(spec and spec.audio_fake))),
        "video_fake": str(int(bool(spec and spec.video_fake))),
        "method": plan.method if plan else "real",
        "family": spec.family if spec else "real",
        "identity": s.identity.name,
        "donor": plan.donor.name if plan and plan.donor else "",
        "scene": f"{row.split}-{row.scene_index:05d}",
        "seed": str(s.seed),
        "duration": f"{s.duration_s:.3f}",
        "fps": str(s.fps),
        "width": str(s.width),
        "height": str(s.height),
        "crf": str(s.crf),
        "audio_bitrate": str(s.audio_bitrate),
        "lead_silence": f"{s.lead_s:.3f}",
        "trail_silence": f"{s.trail_s:.3f}",
        "rms_dbfs": f"{s.room.target_rms_db:.2f}",
        "face_height_px": f"{2.0 * s.face_unit_px:.1f}",
        "face_x": f"{s.face_x:.3f}",
        "face_y": f"{s.face_y:.3f}",
        "params": params,
        **_voice_columns(plan, job),
    }


def _voice_columns(plan: FakePlan | None, job: SceneJob) -> dict[str, str]:
    """engine, voice, speaker and language of a clip."""
    converted = plan is not None and plan.spec.audio_fake
    v = job.voicing
    if v is None:
        return {
            "engine": "dsp" if converted else "procedural",
            "voice": job.scene.identity.name,
            "speaker": "",
            "language": "",
        }
    if plan is not None and plan.tts is not None:
        voice, engine = plan.tts.label, plan.tts.engine
    else:
        voice, engine = v.speaker, "dsp" if converted else "recording"
    return {"engine": engine, "voice": voice, "speaker": v.speaker, "language": v.language}


def voicing_methods(voices: str = "procedural") -> tuple[str, ...]:
    """The fake methods of a voicing: the synthesizer methods need real voices."""
    return tuple(METHODS) if voices == "real" else PROCEDURAL_METHODS


def split_methods(split: str, holdout: Iterable[str] = (), voices: str = "procedural") -> list[str]:
    """Fake methods used in `split`: held-out methods only in the test split."""
    held = set(holdout)
    return [m for m in voicing_methods(voices) if split == "test" or m not in held]


def resolve_voices(voices: str) -> str:
    """`auto` -> `real` where every package the real voices need is installed."""
    if voices == "auto":
        return "real" if not real_voices.missing_packages() else "procedural"
    if voices not in VOICINGS:
        raise ConfigError(f"voices must be auto, {' or '.join(VOICINGS)}; got {voices!r}")
    if voices == "real":
        missing = real_voices.missing_packages()
        if missing:
            raise ConfigError(
                "real voices need Debian packages that are not installed: "
                f"{real_voices.install_hint(missing)} (or use --voices procedural)"
            )
    return voices


def _check_args(
    counts: dict[str, int], holdout: Iterable[str], voices: str = "procedural"
) -> Holdout:
    for split, n in counts.items():
        if n < 0:
            raise ConfigError(f"--{split} must be >= 0, got {n}")
    names = tuple(sorted(set(holdout)))
    kinds = (METHODS, real_voices.ENGINES, real_voices.SPEAKERS)
    unknown = [m for m in names if not any(m in k for k in kinds)]
    if unknown:
        raise ConfigError(
            f"unknown method(s) to hold out: {unknown}; choose from methods "
            f"{', '.join(METHODS)}; engines {', '.join(real_voices.ENGINES)}; "
            f"speakers {', '.join(real_voices.SPEAKERS)}"
        )
    engines = tuple(n for n in names if n in real_voices.ENGINES)
    speakers = tuple(n for n in names if n in real_voices.SPEAKERS)
    methods = {n for n in names if n in METHODS}
    methods |= {real_voices.ENGINE_METHODS[e] for e in engines}
    if set(voicing_methods(voices)) <= methods:
        raise ConfigError("cannot hold out every method: train and val would have no fakes")
    needs_real = sorted((methods & TTS_METHODS) | set(engines) | set(speakers))
    if voices != "real" and needs_real:
        raise ConfigError(f"holding out {', '.join(needs_real)} needs --voices real")
    return Holdout(tuple(sorted(methods)), engines, speakers)


def _prepare_root(root: Path, overwrite: bool) -> None:
    ours = [root / folder for folder, _ in SPLITS.values()]
    ours += [root / label for _, label in SPLITS.values()] + [root / "manifest.csv"]
    ours.append(root / NOTICE_NAME)
    existing = [p for p in ours if p.exists()]
    if existing and not overwrite:
        raise DatasetError(
            f"{root} already holds a dataset ({existing[0].name}); "
            "choose an empty folder or pass overwrite=True (--overwrite)"
        )
    for p in existing:
        if p.is_dir():
            shutil.rmtree(p)
        else:
            p.unlink()
    for folder, _ in SPLITS.values():
        (root / folder).mkdir(parents=True, exist_ok=True)


def _run_jobs(jobs: list[SceneJob], workers: int) -> None:
    total = sum(len(j.clips) for j in jobs)
    step = max(1, total // 10)
    done = 0

    def _progress(n: int) -> None:
        nonlocal done
        before, done = done, done + n
        if done // step != before // step or done == total:
            logger.info("rendered %d/%d clips", done, total)

    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            _progress(len(_render(job)))
        return
    # "spawn": a clean interpreter per worker, whatever threads the parent runs
    # (OpenCV, PyAV and BLAS thread pools do not survive fork reliably).
    ctx = multiprocessing.get_context("spawn")
    # Longest jobs first keeps the workers busy until the end.
    order = sorted(jobs, key=lambda j: -j.scene.duration_s * j.scene.width * len(j.clips))
    ex = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker)
    try:
        for written in ex.map(_render, order, chunksize=1):
            _progress(len(written))
    except BaseException:
        ex.shutdown(wait=True, cancel_futures=True)  # do not render the rest for nothing
        raise
    ex.shutdown()


def _render(job: SceneJob) -> list[str]:
    """render_job, naming the clips in the error if it fails (errors cross processes)."""
    try:
        return render_job(job)
    except Exception as exc:
        names = ", ".join(Path(c.path).name for c in job.clips)
        raise DatasetError(f"rendering {names} failed: {type(exc).__name__}: {exc}") from exc


def _init_worker() -> None:
    import cv2

    cv2.setNumThreads(1)  # one process per core already


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def generate_dataset(
    out: str | Path,
    n_train: int,
    n_val: int,
    n_test: int,
    seed: int,
    workers: int | None = None,
    *,
    holdout: Iterable[str] = (),
    duration_s: tuple[float, float] = DEFAULT_DURATION_S,
    overwrite: bool = False,
    voices: str = "procedural",
) -> DatasetSummary:
    """Write a synthetic competition-format dataset to `out` (see the module docstring).

    workers: processes rendering clips in parallel (default: every available core).
    holdout: methods generated only in the test split; with real voices also synthesizer
    engines (their voices and method) and speakers.
    duration_s: range of clip lengths in seconds (default 3-10 s).
    voices: "procedural" (source-filter speech), "real" (recordings and synthesizers,
    voices.py; ConfigError naming the missing Debian packages) or "auto" (real where
    installed).
    """
    started = time.monotonic()
    root = Path(out)
    counts = {"train": n_train, "val": n_val, "test": n_test}
    voices = resolve_voices(voices)
    held = _check_args(counts, holdout, voices)
    lo, hi = duration_s
    if not 1.0 <= lo <= hi <= 60.0:
        raise ConfigError(f"duration range {duration_s} must satisfy 1 <= min <= max <= 60 s")
    cast = real_voices.make_cast(held.speakers, held.engines) if voices == "real" else None
    _prepare_root(root, overwrite)
    all_jobs: list[SceneJob] = []
    rows: list[tuple[ClipRow, SceneJob]] = []
    for split, n in counts.items():
        methods = split_methods(split, held.methods, voices)
        jobs, split_rows = plan_split(seed, split, n, methods, duration_s, voices=voices, cast=cast)
        folder = root / SPLITS[split][0]
        placed = {id(j): _placed(j, folder) for j in jobs}
        all_jobs.extend(placed.values())
        rows.extend((r, placed[id(j)]) for r, j in split_rows)
    n_workers = workers or default_workers()
    logger.info(
        "rendering %d clips (%d scenes) with %d workers into %s",
        len(rows),
        len(all_jobs),
        n_workers,
        root,
    )
    _run_jobs(all_jobs, n_workers)
    missing = [r.name for r, j in rows if not (root / SPLITS[r.split][0] / r.name).is_file()]
    if missing:
        raise DatasetError(f"{len(missing)} clips were not written, e.g. {missing[0]}")
    summary: dict[str, tuple[int, int]] = {}
    for split, (_, label_file) in SPLITS.items():
        labelled = sorted((r for r, _ in rows if r.split == split), key=lambda r: r.name)
        with (root / label_file).open("w", newline="") as fh:
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(LABEL_HEADER)
            w.writerows((r.name, int(r.fake is not None)) for r in labelled)
        n_fake = sum(r.fake is not None for r in labelled)
        summary[split] = (len(labelled) - n_fake, n_fake)
    order = {s: i for i, s in enumerate(SPLITS)}
    with (root / "manifest.csv").open("w", newline="") as fh:
        dw = csv.DictWriter(fh, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
        dw.writeheader()
        for r, job in sorted(rows, key=lambda rj: (order[rj[0].split], rj[0].name)):
            dw.writerow(_manifest_row(r, job))
    if cast is not None:
        (root / NOTICE_NAME).write_text(real_voices.notice_text(cast))
    seconds = time.monotonic() - started
    logger.info("wrote %d clips to %s in %.1f s", len(rows), root, seconds)
    return DatasetSummary(
        root=root, counts=summary, seconds=seconds, workers=n_workers, voices=voices
    )


def _placed(job: SceneJob, folder: Path) -> SceneJob:
    clips = tuple(
        ClipSpec(path=str(folder / Path(c.path).name), split=c.split, fake=c.fake)
        for c in job.clips
    )
    return SceneJob(scene=job.scene, clips=clips, voicing=job.voicing)
