"""What a training epoch draws: which clips (class-balanced), which window, which augmentation.

Both classes here are plain Python (no torch import): a torch DataLoader accepts any
object with `__len__`/`__getitem__` as a dataset and any iterable as a sampler.

Determinism: every random choice of an epoch comes from generators seeded with
(seed, epoch, draw position), never from process-global state, so a run gives the same
batches whatever the number of loader workers, and `--resume` continues exactly.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from monitor.contract import SAMPLE_RATE
from train.augment import Augmenter, has_voice
from train.cache import CachedClip, load_window

logger = logging.getLogger(__name__)

LABEL_UNKNOWN = -1.0  # per-modality label absent (competition labels give only the target)
SYNC_FAMILY = "sync"  # manifest family of fakes that only desynchronise mouth and voice
_SAMPLER_STREAM = 1  # generator sub-stream ids, so sampler and items never share draws
_ITEM_STREAM = 2

Draw = tuple[int, int]  # (clip index, position of the draw in the epoch)


def _label(v: int | None) -> np.float32:
    return np.float32(LABEL_UNKNOWN if v is None else v)


def head_labels(
    target: int, audio_fake: int | None, video_fake: int | None, family: str | None
) -> tuple[np.float32, np.float32, np.float32]:
    """(audio, visual, sync) training labels of a clip; LABEL_UNKNOWN where not known.

    The visual head judges what the crops show, so a fake whose frames are untouched
    and only out of step with the voice (family "sync") is not a visual example either
    way: it is left out of the visual loss rather than taught as "this face looks
    fake". The sync label is 0 for a real clip (a genuine recording is in sync) and
    unknown for every fake: the sync head learns from real windows and their mismatched
    pairings only. Labelling the sync-family fakes 1 as well (and the other fakes 0)
    stalled the sync head at chance in 1,000-clip runs (BENCHMARKS.md, Training): their
    mismatch is subtler than a re-ordered window, and the fused loss pulls every fake's
    sync logit up at the same time.
    """
    visual = LABEL_UNKNOWN if family == SYNC_FAMILY else _label(video_fake)
    sync = 0.0 if target == 0 else LABEL_UNKNOWN
    return _label(audio_fake), np.float32(visual), np.float32(sync)


class WindowDataset:
    """Item (clip, position) = one random window of that clip, augmented.

    With self-blending on, a fake draw is replaced, with augment.self_blend_prob, by a
    self-blended window of a random real clip (labelled fake face, real voice). With
    voice re-synthesis on, a fake draw that is not self-blended is replaced, with
    augment.voice_resynth_prob, by a window of a random real clip whose voice is
    re-synthesised (labelled fake voice, real face); a window too quiet to hold speech
    keeps the original fake draw instead (the item's "voice_fallback" is 1, and the
    training loop counts them per epoch).
    A clip drawn twice in an epoch (balanced sampling draws the rarer class with
    replacement) gets a different window and augmentation each time.
    """

    def __init__(
        self,
        clips: Sequence[CachedClip],
        augmenter: Augmenter | None,
        seed: int,
        sample_rate: int = SAMPLE_RATE,
    ) -> None:
        self.clips = list(clips)
        self.augmenter = augmenter
        self.seed = seed
        self.sample_rate = sample_rate
        self.epoch = 0
        self._reals = np.array(
            [i for i, c in enumerate(self.clips) if c.record.target == 0], dtype=np.int64
        )

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, item: Draw | int) -> dict[str, Any]:
        i, pos = item if isinstance(item, tuple) else (item, item)
        rng = np.random.default_rng([self.seed, _ITEM_STREAM, self.epoch, pos])
        c = self.clips[i]
        r = c.record
        target, audio_fake, video_fake, family = r.target, r.audio_fake, r.video_fake, r.family
        blend = (
            self.augmenter is not None
            and target == 1
            and self._reals.size > 0
            and self.augmenter.wants_self_blend(rng)
        )
        resynth = (
            self.augmenter is not None
            and not blend
            and target == 1
            and self._reals.size > 0
            and self.augmenter.wants_voice_resynth(rng)
        )
        if blend:
            # This fake draw becomes a pseudo-fake made from a random real clip (its face
            # self-blended, its voice left real), so the classes stay balanced.
            c = self.clips[int(self._reals[rng.integers(self._reals.size)])]
            target, audio_fake, video_fake, family = 1, 0, 1, "face"
        fallback = False
        if resynth:
            real = self.clips[int(self._reals[rng.integers(self._reals.size)])]
            audio, faces = load_window(real.npz, int(rng.integers(real.n_windows)))
            if has_voice(audio):
                c, target, audio_fake, video_fake, family = real, 1, 1, 0, "audio"
            else:
                resynth, fallback = False, True
                logger.debug("no voice in a window of %s; kept the fake draw", real.npz.name)
        if not resynth:
            audio, faces = load_window(c.npz, int(rng.integers(c.n_windows)))
        below_floor = False
        if self.augmenter is not None:
            if blend:
                faces = self.augmenter.self_blend(faces, rng)
            if resynth:
                audio = self.augmenter.voice_resynth(audio, self.sample_rate, rng)
            keep_timing = target == 1 and family == SYNC_FAMILY
            # A fake whose face is (or may be) its evidence keeps the detail that shows it.
            keep_detail = target == 1 and family != SYNC_FAMILY and video_fake != 0
            audio, faces, below_floor = self.augmenter.window(
                audio, faces, rng, self.epoch, keep_timing, keep_detail
            )
        audio_label, visual_label, sync_label = head_labels(target, audio_fake, video_fake, family)
        return {
            "audio": np.ascontiguousarray(audio, dtype=np.float32),
            "faces": np.ascontiguousarray(faces),
            "target": np.float32(target),
            "audio_fake": audio_label,
            "video_fake": visual_label,
            "sync_fake": sync_label,
            "voice_fallback": np.float32(fallback),
            # 0: crops degraded below the detail floor give the sync loss no mismatched pair
            "sync_mismatch": np.float32(not below_floor),
        }


class EpochSampler:
    """Draws one epoch of (clip, position) pairs, class-balanced if asked, sharded by rank.

    Balanced: half the draws are fakes and half reals; each class is walked in fresh
    random permutations, so a clip repeats only after all of its class were drawn. The
    epoch has as many draws as there are clips (rounded up to a multiple of the world
    size); rank r takes positions r, r + world, ... like DistributedSampler.
    """

    def __init__(
        self,
        targets: Sequence[int],
        seed: int,
        balance: bool = True,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world of {world_size}")
        self.targets = np.asarray(targets, dtype=np.int64)
        if self.targets.size == 0:
            raise ValueError("no clips to sample from")
        self.seed, self.rank, self.world = seed, rank, world_size
        self.balance = balance and 0 < int(self.targets.sum()) < self.targets.size
        if balance and not self.balance:
            logger.warning("training set holds a single class; sampling without balancing")
        self.total = -(-self.targets.size // world_size) * world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.total // self.world

    def epoch_order(self) -> np.ndarray:
        """Clip indices of the whole epoch (all ranks), in draw order."""
        rng = np.random.default_rng([self.seed, _SAMPLER_STREAM, self.epoch])
        if not self.balance:
            return _cycled(np.arange(self.targets.size), self.total, rng)
        n_fake = self.total // 2 + int(rng.integers(2)) * (self.total % 2)
        parts = [
            _cycled(np.flatnonzero(self.targets == 1), n_fake, rng),
            _cycled(np.flatnonzero(self.targets == 0), self.total - n_fake, rng),
        ]
        order = np.concatenate(parts)
        return order[rng.permutation(order.size)]

    def __iter__(self) -> Iterator[Draw]:
        order = self.epoch_order()
        for pos in range(self.rank, self.total, self.world):
            yield int(order[pos]), pos


def _cycled(pool: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """n items walking `pool` in successive random permutations."""
    reps = -(-n // pool.size)
    return np.concatenate([pool[rng.permutation(pool.size)] for _ in range(reps)])[:n]
