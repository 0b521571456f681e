"""Per-clip window cache: decode and crop each clip once, then train from .npz files.

Decoding H.264 and finding faces costs far more than a training step of a small model,
so every clip goes through `monitor.media.clip.extract_windows` exactly once per input
contract, in worker processes, and its windows are stored as one uncompressed .npz
(audio float16/float32 [N, S], crops uint8 [N, K, H, W, 3], face_found bool [N, K]).
Later epochs and later runs only read these files.

Keys: the cache folder is named by a hash of the contract and caching options; each
clip's file by a hash of its absolute path, size and mtime, so an edited or replaced
clip is re-cached and a different contract never reads another's windows. A clip that
fails to decode leaves a small `.failed.json` marker with the reason, so it is reported
and skipped without being decoded again on every run.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import io
import json
import logging
import multiprocessing
import os
import struct
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

from monitor.contract import HEAD_OUTPUTS, InputContract
from monitor.errors import MediaError
from monitor.media.decode import FRAME_PICK
from monitor.media.faces import CROP_CAP_VERSION, CROPPER_VERSION
from train.splits import ClipRecord

logger = logging.getLogger(__name__)

CACHE_FORMAT = 1  # bump when the .npz layout changes; old caches are then ignored
POOL_CHUNKSIZE = 2  # clips handed to a worker process at a time


@dataclass(frozen=True)
class CacheSpec:
    """Where and how clips are cached for one input contract."""

    root: Path  # cache root; entries go under root/<key>/
    contract: InputContract
    max_windows: int = 8  # windows kept per clip, spread evenly over it
    audio_dtype: str = "float16"  # storage type of audio windows

    @property
    def key(self) -> str:
        spec = {
            "format": CACHE_FORMAT,
            # the Haar cropper's version; a CNN contract's dict names its own cropper
            # (`cropper: centerface-1`), a Haar one leaves it out, so Haar caches keep
            # their keys and crops of two croppers never share a folder
            "cropper": CROPPER_VERSION,
            # the outputs do not change the crops: keys stay those of 3-output contracts
            "contract": {**self.contract.to_dict(), "output_names": list(HEAD_OUTPUTS)},
            "max_windows": self.max_windows,
            "audio_dtype": self.audio_dtype,
            "frames": FRAME_PICK,  # crops of another frame choice never share a folder
        }
        if self.contract.max_crop_downscale is not None:
            spec["crop_cap"] = CROP_CAP_VERSION  # uncapped contracts keep their keys
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]

    @property
    def folder(self) -> Path:
        return self.root / self.key

    def stem(self, clip: Path) -> str:
        """Entry name for a clip: its stem plus a hash of path, size and mtime."""
        st = clip.stat()
        ident = f"{clip.resolve()}|{st.st_size}|{st.st_mtime_ns}"
        return f"{clip.stem}-{hashlib.sha256(ident.encode()).hexdigest()[:16]}"


@dataclass(frozen=True)
class CachedClip:
    """A cached clip ready to be read by a dataset."""

    record: ClipRecord
    npz: Path
    n_windows: int


@dataclass(frozen=True)
class CacheOutcome:
    """What caching one clip did (returned from worker processes)."""

    name: str
    npz: str | None  # path of the .npz on success
    n_windows: int = 0
    reused: bool = False
    error: str | None = None  # reason on failure
    no_audio: bool = False
    no_video: bool = False
    faces_found: float = 0.0  # fraction of crops that came from a detected or tracked face


@dataclass
class CacheReport:
    """The clips a split can train on and what was skipped, for the run's summary."""

    clips: list[CachedClip] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # name -> reason
    built: int = 0
    reused: int = 0
    no_audio: int = 0
    no_video: int = 0
    no_face: int = 0  # clips where not a single crop found a face

    def summary(self) -> str:
        reasons = Counter(r.split(":", 1)[0] for r in self.failed.values())
        fail = ", ".join(f"{n} {r}" for r, n in reasons.most_common()) or "none"
        return (
            f"{len(self.clips)} clips cached ({self.built} decoded, {self.reused} reused), "
            f"{len(self.failed)} failed to decode ({fail}); fallbacks: {self.no_audio} without "
            f"audio, {self.no_video} without video, {self.no_face} without a face"
        )


def _write_atomic(path: Path, write: Callable[[BinaryIO], object]) -> None:
    # Write beside the target and rename: a killed worker never leaves a half-written entry.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as f:
            write(f)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def cache_clip(clip: str, name: str, spec: CacheSpec) -> CacheOutcome:
    """Cache one clip (or reuse its entry); decode failures are returned, not raised."""
    from monitor.media.clip import extract_windows  # keeps OpenCV out of processes that never crop

    path = Path(clip)
    try:
        stem = spec.stem(path)
    except OSError as exc:
        return CacheOutcome(name, None, error=f"unreadable: {exc}")
    npz = spec.folder / f"{stem}.npz"
    failed = spec.folder / f"{stem}.failed.json"
    if npz.is_file():
        try:
            with np.load(npz) as z:
                n = int(z["audio"].shape[0])
                meta = json.loads(str(z["meta"]))
            return CacheOutcome(name, str(npz), n, reused=True, **meta)
        except (OSError, ValueError, KeyError) as exc:
            logger.warning("%s: cache entry %s unreadable (%s), rebuilding", name, npz, exc)
    if failed.is_file():
        reason = json.loads(failed.read_text()).get("error", "failed before")
        return CacheOutcome(name, None, reused=True, error=reason)
    try:
        cw = extract_windows(path, spec.contract, max_windows=spec.max_windows)
    except MediaError as exc:
        reason = f"{type(exc).__name__}: {exc}"
        _write_atomic(failed, lambda f: f.write(json.dumps({"error": reason}).encode()))
        return CacheOutcome(name, None, error=reason)
    meta = {
        "no_audio": not cw.has_audio,
        "no_video": not cw.has_video,
        "faces_found": float(cw.face_found.mean()) if cw.face_found.size else 0.0,
    }
    starts = np.array([w.start_s for w in cw.windows], dtype=np.float32)

    def write(f: BinaryIO) -> None:
        np.savez(
            f,
            audio=cw.audio.astype(spec.audio_dtype),
            faces=cw.faces,
            face_found=cw.face_found,
            starts=starts,
            meta=np.array(json.dumps(meta)),
        )

    _write_atomic(npz, write)
    return CacheOutcome(name, str(npz), len(cw), **meta)


def _cache_job(job: tuple[str, str, CacheSpec]) -> CacheOutcome:
    return cache_clip(*job)


def build_cache(
    records: list[ClipRecord] | tuple[ClipRecord, ...],
    spec: CacheSpec,
    workers: int = 0,
    progress: bool = False,
    what: str = "clips",
    quiet: bool = False,
) -> CacheReport:
    """Cache every record (in `workers` processes; 0 = here), skipping and counting failures.

    `quiet` demotes the summary to DEBUG, for a second pass that only collects entries.
    """
    from tqdm import tqdm

    spec.folder.mkdir(parents=True, exist_ok=True)
    jobs = [(str(r.path), r.name, spec) for r in records]
    by_name = {r.name: r for r in records}
    report = CacheReport()
    bar = tqdm(total=len(jobs), desc=f"caching {what}", unit="clip", disable=not progress)
    outcomes: Iterator[CacheOutcome]
    if workers <= 0 or len(jobs) <= 1:
        outcomes = map(_cache_job, jobs)
        pool = None
    else:
        # spawn: the parent may hold torch/OpenMP threads, which do not survive fork.
        ctx = multiprocessing.get_context("spawn")
        pool = concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=ctx)
        outcomes = pool.map(_cache_job, jobs, chunksize=POOL_CHUNKSIZE)
    try:
        for out in outcomes:
            bar.update(1)
            if out.error is not None or out.npz is None:
                report.failed[out.name] = out.error or "unknown error"
                if not out.reused:
                    logger.warning("%s: skipped, cannot decode: %s", out.name, out.error)
                continue
            report.reused += out.reused
            report.built += not out.reused
            report.no_audio += out.no_audio
            report.no_video += out.no_video
            report.no_face += out.faces_found == 0.0 and not out.no_video
            report.clips.append(CachedClip(by_name[out.name], Path(out.npz), out.n_windows))
    finally:
        bar.close()
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    logger.log(logging.DEBUG if quiet else logging.INFO, "%s: %s", what, report.summary())
    if report.failed and not quiet:
        logger.warning(
            "%s: %d of %d clips skipped because they could not be decoded (see above)",
            what,
            len(report.failed),
            len(jobs),
        )
    return report


@dataclass(frozen=True)
class Windows:
    """All cached windows of one clip, audio as float32."""

    audio: np.ndarray  # float32 [N, S]
    faces: np.ndarray  # uint8 [N, K, H, W, 3]
    face_found: np.ndarray  # bool [N, K]


def load_windows(npz: Path) -> Windows:
    with np.load(npz) as z:
        return Windows(z["audio"].astype(np.float32), z["faces"], z["face_found"])


def load_window(npz: Path, index: int) -> tuple[np.ndarray, np.ndarray]:
    """One window (audio float32 [S], faces uint8 [K, H, W, 3]) of a cached clip.

    Reads that window's bytes alone (the entries are stored uncompressed, so a row sits
    at a fixed offset in the file): a training draw costs about a tenth of loading the
    clip's whole crop array. Any other layout falls back to np.load.
    """
    try:
        with open(npz, "rb") as f, zipfile.ZipFile(f) as z:
            audio = _read_row(f, z.getinfo("audio.npy"), index)
            faces = _read_row(f, z.getinfo("faces.npy"), index)
        return audio.astype(np.float32), faces
    except _RowUnreadable:
        pass
    with np.load(npz) as z:
        audio_all, faces_all = z["audio"], z["faces"]
        i = index % audio_all.shape[0]
        return audio_all[i].astype(np.float32), np.ascontiguousarray(faces_all[i])


class _RowUnreadable(Exception):
    """The entry is not a plain uncompressed C-order .npy; np.load reads it instead."""


_ZIP_LOCAL_HEADER = struct.Struct("<4s22xHH")  # signature ... name length, extra length


def _read_row(f: io.BufferedReader, info: zipfile.ZipInfo, index: int) -> np.ndarray:
    """Row `index % rows` of an uncompressed .npy entry of an open .npz file."""
    if info.compress_type != zipfile.ZIP_STORED:
        raise _RowUnreadable
    f.seek(info.header_offset)
    signature, name_len, extra_len = _ZIP_LOCAL_HEADER.unpack(f.read(_ZIP_LOCAL_HEADER.size))
    if signature != b"PK\x03\x04":
        raise _RowUnreadable
    f.seek(info.header_offset + _ZIP_LOCAL_HEADER.size + name_len + extra_len)
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
    except ValueError as exc:
        raise _RowUnreadable from exc
    if fortran or dtype.hasobject or not shape or shape[0] == 0:
        raise _RowUnreadable
    row_shape = tuple(shape[1:])
    row_bytes = int(np.prod(row_shape, dtype=np.int64)) * dtype.itemsize
    f.seek(f.tell() + (index % shape[0]) * row_bytes)
    row = np.empty(row_shape, dtype=dtype)  # read straight into it: one copy, not two
    if f.readinto(row.data.cast("B")) != row_bytes:
        raise _RowUnreadable
    return row
