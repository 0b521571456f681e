"""Training: cached windows -> detector, validated every epoch, checkpointed, resumable.

One function, `train(data_dir, out_dir, cfg)`, serves a laptop CPU and a GPU cluster:
under `torchrun` (WORLD_SIZE > 1) it joins a process group, shards every epoch's draws
by rank and wraps the model in DistributedDataParallel; rank 0 validates and writes
`best.pt`, `last.pt`, `config.yaml` and `metrics.jsonl` in `out_dir`.

Loss = BCE(fused, target) + w_a * BCE(audio head, audio_fake) + w_v * BCE(visual head,
video_fake) + w_s * sync loss; a per-modality term covers only the clips whose modality
label is known (the manifest of a synthetic set has them, competition labels do not).
The sync loss trains the sync head on the real windows (in sync) and the mismatched
pairing built from each (see train.sampling.head_labels for why fakes are left out).
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from monitor.errors import ConfigError, DatasetError
from monitor.offline.evaluation import log_loss
from train.augment import Augmenter
from train.cache import CacheReport, CacheSpec, build_cache
from train.config import TrainConfig, load_config, resume_differences
from train.ema import WeightAverage
from train.evaluate import clip_metrics, headline, resolve_device, score_clips
from train.sampling import EpochSampler, WindowDataset
from train.splits import load_split, split_exists

logger = logging.getLogger(__name__)

BEST_NAME, LAST_NAME = "best.pt", "last.pt"
CONFIG_NAME, METRICS_NAME = "config.yaml", "metrics.jsonl"
PROCESS_GROUP_TIMEOUT = timedelta(hours=2)  # rank 0 may spend long caching before a barrier


@dataclass(frozen=True)
class DistEnv:
    """This process's place in a torchrun job (rank 0 of 1 when run plainly)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_environ(cls) -> DistEnv:
        return cls(
            rank=int(os.environ.get("RANK", "0")),
            world_size=int(os.environ.get("WORLD_SIZE", "1")),
            local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        )


@dataclass
class TrainResult:
    out_dir: Path
    best: Path
    last: Path
    epochs_run: int  # epochs trained by this call (0 when a resumed run was already done)
    history: list[dict[str, Any]] = field(default_factory=list)  # metrics.jsonl lines written
    skipped: dict[str, int] = field(default_factory=dict)  # e.g. {"trainset missing": 3}
    # (val AUC, TPR@FPR=1e-3, -val log loss), see _score_key
    best_score: tuple[float, ...] = (-math.inf, -math.inf, -math.inf)
    # best.pt scored on every val window, when the epochs were validated on a subset
    # (cfg.val_windows): the figures `evaluate` gives
    best_full_val: dict[str, float] | None = None
    # per-modality heads of best.pt whose val AUC is below WEAK_HEAD_AUC: {"visual": 0.65}
    weak_heads: dict[str, float] = field(default_factory=dict)


# A per-modality head that ends below this val AUC has not found its modality's cue: with
# some seeds the visual branch never leaves its starting plateau (visual AUC 0.54 on
# synth1k val, 0.65 on 2,000 clips, against 0.97-0.99 for the runs that learn;
# docs/experiments.md, 2026-11-24).
WEAK_HEAD_AUC = 0.7


def weak_heads(val: dict[str, Any], floor: float = WEAK_HEAD_AUC) -> dict[str, float]:
    """The per-modality heads of a val record scoring an AUC below `floor`.

    Heads without val labels (no manifest: the AUC is absent or NaN) are not judged.
    """
    weak = {}
    for head in ("audio", "visual"):
        auc = val.get(f"{head}_auc")
        if auc is not None and math.isfinite(auc) and auc < floor:
            weak[head] = float(auc)
    return weak


def best_record(metrics_file: Path) -> dict[str, Any] | None:
    """The metrics.jsonl line of the epoch best.pt holds (the last one marked best)."""
    if not metrics_file.is_file():
        return None
    best = None
    for line in metrics_file.read_text().splitlines():
        record = json.loads(line)
        if record.get("best"):
            best = record
    return best


def _warn_weak_heads(weak: dict[str, float], epoch: int) -> None:
    for head, auc in weak.items():
        logger.warning(
            "the %s head of best.pt (epoch %d) scores val AUC %.3f, below %.2f: its branch "
            "has not learnt its cue. Check the run before using it; training again with "
            "another seed or with augment.degrade_warmup_epochs may fix it.",
            head,
            epoch,
            auc,
            WEAK_HEAD_AUC,
        )


def _barrier(env: DistEnv) -> None:
    if env.world_size > 1:
        dist.barrier()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """Global RNG states (torch CPU/CUDA, numpy, random) as plain types and tensors."""
    np_state: tuple[Any, ...] = tuple(np.random.get_state())
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
        "python": random.getstate(),
    }


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), *rest))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))


def build_model_config(cfg: TrainConfig) -> Any:
    from train.model import ModelConfig

    base = ModelConfig.demo() if cfg.preset == "demo" else ModelConfig.default()
    if not cfg.model:
        return base
    try:
        return ModelConfig.from_dict({**base.to_dict(), **cfg.model})
    except (TypeError, ValueError, KeyError) as exc:
        raise ConfigError(f"model: invalid model settings {cfg.model}: {exc}") from exc


def modality_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean BCE over the entries whose label is known (>= 0); 0 when none is."""
    known = (labels >= 0).float()
    per = F.binary_cross_entropy_with_logits(
        logits.float(), labels.clamp(min=0.0), reduction="none"
    )
    return (per * known).sum() / known.sum().clamp(min=1.0)


def compute_loss(
    outputs: tuple[torch.Tensor, ...],
    batch: dict[str, torch.Tensor],
    cfg: TrainConfig,
) -> tuple[torch.Tensor, dict[str, float]]:
    fused, audio, visual = outputs[:3]
    l_f = F.binary_cross_entropy_with_logits(fused.float(), batch["target"])
    l_a = modality_loss(audio, batch["audio_fake"])
    l_v = modality_loss(visual, batch["video_fake"])
    total = l_f + cfg.audio_loss_weight * l_a + cfg.visual_loss_weight * l_v
    l_s = torch.zeros((), device=fused.device)
    if len(outputs) == 5:
        l_s = sync_loss(outputs[3], outputs[4], batch["sync_fake"], batch.get("sync_mismatch"))
        total = total + cfg.sync_loss_weight * l_s
    return total, {
        "loss": total.item(),
        "fused": l_f.item(),
        "audio": l_a.item(),
        "visual": l_v.item(),
        "sync": l_s.item(),
    }


def sync_loss(
    in_sync: torch.Tensor,
    out_of_sync: torch.Tensor,
    sync_labels: torch.Tensor,
    mismatch: torch.Tensor | None = None,
) -> torch.Tensor:
    """Sync-head BCE per window of known sync (`sync_labels` 0 in sync, 1 out of sync,
    < 0 unknown). An in-sync window gives two terms: its true pairing against 0 and
    the mismatched pairing built from its own crops (out of sync by construction)
    against 1; an out-of-sync fake gives its true pairing against 1. 0 when no window's
    sync is known. Where `mismatch` is 0 (crops degraded below the detail floor, in
    which a mouth's motion no longer shows) the mismatched pairing is left out, so the
    head never learns lost detail as "out of step"."""
    bce = F.binary_cross_entropy_with_logits
    known = (sync_labels >= 0).float()
    in_step = (sync_labels == 0).float()
    if mismatch is not None:
        in_step = in_step * mismatch.float()
    true_pair = bce(in_sync.float(), sync_labels.clamp(min=0.0).float(), reduction="none")
    mismatched = bce(out_of_sync.float(), torch.ones_like(known), reduction="none")
    total = (true_pair * known).sum() + (mismatched * in_step).sum()
    return total / known.sum().clamp(min=1.0)


def cosine_schedule(warmup: int, total: int) -> Any:
    """LR factor per step: linear warm-up to 1, then cosine decay to 0 at `total`."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        span = max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup) / span)))

    return factor


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    # Norm scales and biases are not decayed: shrinking them only fights normalisation.
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    rest = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


def _cache_split(
    data_dir: Path,
    split: str,
    limit: int | None,
    spec: CacheSpec,
    cfg: TrainConfig,
    env: DistEnv,
    skipped: dict[str, int],
) -> CacheReport:
    index = load_split(data_dir, split, limit)
    records = list(index.records)
    if env.world_size == 1:
        report = build_cache(records, spec, cfg.workers, cfg.progress, what=index.split)
    else:
        # Each rank decodes its share; after the barrier every rank collects all entries.
        mine = records[env.rank :: env.world_size]
        build_cache(mine, spec, cfg.workers, cfg.progress and env.main, what=index.split)
        _barrier(env)
        report = build_cache(records, spec, workers=0, what=index.split, quiet=not env.main)
    skipped[f"{index.split} missing"] = len(index.missing)
    skipped[f"{index.split} undecodable"] = len(report.failed)
    if not report.clips:
        raise DatasetError(f"{index.split}: no clip could be decoded ({len(report.failed)} failed)")
    return report


def _score_key(val: dict[str, Any]) -> tuple[float, float, float]:
    """Best checkpoint: highest val AUC, then TPR@1e-3, then lowest log loss (a small
    val set often ties at AUC 1.0 early, when the scores are still poorly separated)."""
    auc, tpr = val.get("auc", math.nan), val.get("tpr_at_fpr_1e-3", math.nan)
    loss = val.get("logloss", math.nan)
    return (
        auc if math.isfinite(auc) else -1.0,
        tpr if math.isfinite(tpr) else -1.0,
        -loss if math.isfinite(loss) else -math.inf,
    )


def _check_run_dir(out: Path, cfg: TrainConfig, resume: bool, env: DistEnv) -> None:
    last = out / LAST_NAME
    if resume:
        if not last.is_file():
            raise ConfigError(f"--resume: {last} does not exist; start the run without --resume")
        diffs = resume_differences(load_config(out / CONFIG_NAME), cfg)
        if diffs:
            raise ConfigError(f"--resume with a different config ({'; '.join(diffs)})")
    elif env.main and last.exists():
        raise ConfigError(f"{out} already holds a run; pass --resume or choose another --out")


class _Trainer:
    """The state of one run: model, optimiser, schedule, data, and where it writes."""

    def __init__(self, data: Path, out: Path, cfg: TrainConfig, env: DistEnv) -> None:
        from train.model import build_model

        self.cfg, self.env, self.out = cfg, env, out
        self.device = resolve_device(cfg.device, env.local_rank)
        self.contract = cfg.build_contract()
        self.mcfg = build_model_config(cfg)
        seed_everything(cfg.seed)
        self.model = build_model(self.contract, self.mcfg).to(self.device)
        self.opt = torch.optim.AdamW(_param_groups(self.model, cfg.weight_decay), lr=cfg.lr)
        self.ema = WeightAverage(self.model, cfg.ema_decay) if cfg.ema_decay > 0 else None
        self.use_amp = cfg.amp and self.device.type == "cuda"
        bf16 = self.use_amp and torch.cuda.is_bf16_supported()
        self.amp_dtype = torch.bfloat16 if bf16 else torch.float16
        fp16 = self.use_amp and not bf16  # bf16 needs no loss scaling
        self.scaler = torch.amp.GradScaler("cuda", enabled=fp16)
        self.epoch, self.step = 0, 0
        self.best_score: tuple[float, ...] = (-math.inf, -math.inf, -math.inf)
        self.data = data

    @property
    def eval_model(self) -> nn.Module:
        """What is validated and saved: the weight average when there is one."""
        return self.ema.module if self.ema is not None else self.model

    def resume_from(self, last: Path) -> None:
        from train.checkpoint import load_checkpoint

        ck = load_checkpoint(last, expect_contract=self.contract)
        if ck.model_config != self.mcfg:
            raise ConfigError(f"{last} was trained with another model config than {CONFIG_NAME}")
        state = ck.extra["resume"]
        # With EMA, the checkpoint's model is the average; the live weights ride along.
        self.model.load_state_dict(state.get("live_weights") or ck.model.state_dict())
        if self.ema is not None:
            self.ema.load_state_dict(state.get("ema") or {"updates": 0}, ck.model.state_dict())
        self._resume_state = state

    def prepare_data(self) -> None:
        cfg, env = self.cfg, self.env
        spec = CacheSpec(cfg.cache_dir, self.contract, cfg.max_windows, cfg.cache_audio_dtype)
        self.skipped: dict[str, int] = {}
        args = (spec, cfg, env, self.skipped)
        clips = _cache_split(self.data, "train", cfg.max_train_clips, *args).clips
        self.val_clips = None
        if split_exists(self.data, "val"):
            self.val_clips = _cache_split(self.data, "val", cfg.max_val_clips, *args).clips
        elif env.main:
            logger.warning("%s has no valset: best.pt will simply be the last epoch", self.data)
        self.dataset = WindowDataset(
            clips,
            Augmenter(cfg.augment, self.contract.k_crops / self.contract.window_seconds),
            cfg.seed,
            sample_rate=self.contract.sample_rate,
        )
        targets = [c.record.target for c in clips]
        self.sampler = EpochSampler(
            targets, cfg.seed, cfg.balance_classes, env.rank, env.world_size
        )
        batch_size = min(cfg.batch_size, len(self.sampler))
        self.loader: torch.utils.data.DataLoader[dict[str, Any]] = torch.utils.data.DataLoader(
            self.dataset,  # type: ignore[arg-type]  # a map-style dataset by protocol
            batch_size=batch_size,
            sampler=self.sampler,
            num_workers=cfg.resolved_loader_workers(self.device.type),
            pin_memory=self.device.type == "cuda",
            drop_last=True,
        )
        self.steps_per_epoch = len(self.sampler) // batch_size
        schedule = cosine_schedule(cfg.warmup_steps, self.steps_per_epoch * cfg.epochs)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, schedule)
        state = getattr(self, "_resume_state", None)
        if state is not None:
            self.opt.load_state_dict(state["optimizer"])
            self.sched.load_state_dict(state["scheduler"])
            self.scaler.load_state_dict(state["scaler"])
            restore_rng(state["rng"])
            self.epoch, self.step = int(state["epoch"]), int(state["step"])
            saved = [float(x) for x in state["best_score"]]
            self.best_score = tuple(saved + [-math.inf] * (3 - len(saved)))
            logger.info("resuming %s after epoch %d (step %d)", self.out, self.epoch, self.step)

    def train_epoch(self, net: nn.Module) -> dict[str, Any]:
        """One pass over the epoch's draws; returns the epoch's training figures."""
        from tqdm import tqdm

        cfg, env, dev = self.cfg, self.env, self.device
        self.sampler.set_epoch(self.epoch)
        self.dataset.set_epoch(self.epoch)
        net.train()
        sums = {"loss": 0.0, "fused": 0.0, "audio": 0.0, "visual": 0.0, "sync": 0.0}
        seen, t0 = 0, time.perf_counter()
        waited = 0.0  # seconds spent waiting for the loader: > 0 means input-bound
        fallbacks = 0.0  # voice re-synthesis draws that found no voice (kept the fake)
        bar = tqdm(
            self.loader,
            total=self.steps_per_epoch,
            desc=f"epoch {self.epoch + 1}/{cfg.epochs}",
            unit="step",
            disable=not (cfg.progress and env.main),
        )
        t_wait = time.perf_counter()
        for batch in bar:
            waited += time.perf_counter() - t_wait
            fallbacks += float(batch.pop("voice_fallback").sum())
            b = {k: v.to(dev, non_blocking=True) for k, v in batch.items()}
            with torch.autocast(dev.type, dtype=self.amp_dtype, enabled=self.use_amp):
                outputs = net(b["audio"], b["faces"], sync_pairs=cfg.sync_loss_weight > 0)
            loss, parts = compute_loss(outputs, b, cfg)
            self.opt.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if cfg.grad_clip > 0:
                self.scaler.unscale_(self.opt)
                nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
            self.scaler.step(self.opt)
            self.scaler.update()
            self.sched.step()
            if self.ema is not None:
                self.ema.update(self.model)
            self.step += 1
            n = int(b["target"].shape[0])
            seen += n
            for k in sums:
                sums[k] += parts[k] * n
            rate = seen * env.world_size / max(time.perf_counter() - t0, 1e-9)
            bar.set_postfix(loss=f"{parts['loss']:.4f}", clips_s=f"{rate:.1f}")
            t_wait = time.perf_counter()
        bar.close()
        elapsed = time.perf_counter() - t0
        totals = torch.tensor([*sums.values(), fallbacks, float(seen)], dtype=torch.float64)
        if env.world_size > 1:
            dist.all_reduce(totals)
        n_all = max(totals[-1].item(), 1.0)
        self.epoch += 1
        record: dict[str, Any] = {"epoch": self.epoch, "step": self.step}
        record["lr"] = self.sched.get_last_lr()[0]
        record.update({f"train_{k}": totals[i].item() / n_all for i, k in enumerate(sums)})
        if cfg.augment.voice_resynth_prob > 0:
            n_fallbacks = int(totals[-2].item())
            record["voice_resynth_fallbacks"] = n_fallbacks
            if n_fallbacks > 0 and env.main:
                logger.info(
                    "epoch %d: %d voice re-synthesis draws found a window without voice "
                    "and kept their fake clip",
                    self.epoch,
                    n_fallbacks,
                )
        record.update(clips=int(n_all), epoch_s=round(elapsed, 3), data_wait_s=round(waited, 3))
        record["clips_per_s"] = round(n_all / max(elapsed, 1e-9), 2)
        return record

    def validate(self, record: dict[str, Any]) -> bool:
        """Score valset into `record`; True when this epoch is the best so far."""
        key: tuple[float, ...]
        if self.val_clips is None:
            key = (float(self.epoch), 0.0, 0.0)
        else:
            t0 = time.perf_counter()
            scores = score_clips(
                self.eval_model,
                self.val_clips,
                self.device,
                self.cfg.batch_size,
                self.use_amp,
                max_windows=self.cfg.val_windows,
            )
            metrics = clip_metrics(scores)
            record["val"] = headline(metrics)
            targets = [r.target for r in scores.records]
            record["val"]["logloss"] = log_loss(targets, scores.fused)
            if "per_method" in metrics:
                per = metrics["per_method"].items()
                record["val_per_method_auc"] = {m: v["auc"] for m, v in per}
            record["val_s"] = round(time.perf_counter() - t0, 3)
            key = _score_key(record["val"])
        improved = key > self.best_score
        if improved:
            self.best_score = key
        record["best"] = improved
        return improved

    def score_best_on_all_windows(self) -> dict[str, float] | None:
        """Headline val figures of best.pt over every cached window of each val clip."""
        from train.checkpoint import load_checkpoint

        if self.val_clips is None or not (self.out / BEST_NAME).is_file():
            return None
        model = load_checkpoint(self.out / BEST_NAME).model.to(self.device)
        scores = score_clips(model, self.val_clips, self.device, self.cfg.batch_size, self.use_amp)
        figures = headline(clip_metrics(scores))
        logger.info(
            "best.pt on every val window (epochs were validated on %d per clip): "
            "AUC %.4f, TPR@1e-3 %.3f",
            self.cfg.val_windows,
            figures["auc"],
            figures["tpr_at_fpr_1e-3"],
        )
        return figures

    def save(self, record: dict[str, Any], improved: bool) -> None:
        from train.checkpoint import save_checkpoint

        extra: dict[str, Any] = {"epoch": self.epoch, "step": self.step, "metrics": record}
        extra["train_config"] = self.cfg.model_dump(mode="json")
        resume_state = {
            "epoch": self.epoch,
            "step": self.step,
            "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng_state(),
            "best_score": list(self.best_score),
        }
        if self.ema is not None:
            resume_state["ema"] = self.ema.state_dict()
            resume_state["live_weights"] = self.model.state_dict()
        # save_checkpoint writes atomically: an interrupted save keeps the previous file.
        args = (self.eval_model, self.contract, self.mcfg)
        save_checkpoint(self.out / LAST_NAME, *args, extra={**extra, "resume": resume_state})
        if improved:
            save_checkpoint(self.out / BEST_NAME, *args, extra=extra)
        with (self.out / METRICS_NAME).open("a") as f:
            f.write(json.dumps(record) + "\n")


def train(
    data_dir: str | Path,
    out_dir: str | Path,
    cfg: TrainConfig,
    resume: bool = False,
    stop_after: int | None = None,
) -> TrainResult:
    """Train on DATA_DIR/trainset, validate on valset, write checkpoints to out_dir.

    `stop_after` ends this call after that many epochs (the schedule still spans
    cfg.epochs), for preemptible jobs that continue with `resume=True`.
    """
    data, out = Path(data_dir), Path(out_dir)
    env = DistEnv.from_environ()
    _check_run_dir(out, cfg, resume, env)
    device = resolve_device(cfg.device, env.local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)  # NCCL and pinned memory then use this rank's GPU
    if env.world_size > 1:
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=PROCESS_GROUP_TIMEOUT)
    try:
        run = _Trainer(data, out, cfg, env)
        if resume:  # before caching: refuse an incompatible checkpoint at once
            run.resume_from(out / LAST_NAME)
        if env.main:
            out.mkdir(parents=True, exist_ok=True)
            cfg.save_yaml(out / CONFIG_NAME)
        run.prepare_data()
        result = TrainResult(out, out / BEST_NAME, out / LAST_NAME, 0)
        net: nn.Module = run.model
        if env.world_size > 1:
            ids = [run.device.index] if run.device.type == "cuda" else None
            net = nn.parallel.DistributedDataParallel(run.model, device_ids=ids)
        while run.epoch < cfg.epochs and (stop_after is None or result.epochs_run < stop_after):
            record = run.train_epoch(net)
            if env.main:
                improved = run.validate(record)
                run.save(record, improved)
                logger.info("epoch %d: %s", run.epoch, _describe(record))
            result.history.append(record)
            result.epochs_run += 1
            _barrier(env)
        result.best_score = run.best_score
        result.skipped = run.skipped
        if env.main and result.epochs_run and cfg.val_windows is not None:
            result.best_full_val = run.score_best_on_all_windows()
        best = best_record(out / METRICS_NAME) if env.main else None
        if best is not None:
            result.weak_heads = weak_heads(best.get("val", {}))
            _warn_weak_heads(result.weak_heads, int(best["epoch"]))
        if env.main and any(run.skipped.values()):
            skips = ", ".join(f"{n} {what}" for what, n in run.skipped.items() if n)
            logger.warning("clips skipped in this run (see the log above): %s", skips)
        return result
    finally:
        if env.world_size > 1 and dist.is_initialized():
            dist.destroy_process_group()


def _describe(record: dict[str, Any]) -> str:
    parts = [f"loss {record['train_loss']:.4f}", f"{record['clips_per_s']:.1f} clips/s"]
    val = record.get("val")
    if val:
        parts.append(f"val AUC {val['auc']:.4f} TPR@1e-3 {val['tpr_at_fpr_1e-3']:.3f}")
    if record.get("best"):
        parts.append("best so far")
    return ", ".join(parts)
