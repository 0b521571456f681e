"""`deepfake-monitor serve --config monitor.yaml`: the long-running monitor service.

Runs the configured RTSP/file streams, the WebRTC endpoint (when available), /metrics,
/healthz and /readyz until SIGTERM or SIGINT, then shuts down within the configured
limit. `--check-config` only validates the YAML and reports each bad key as a dotted
path with the reason (exit 0 when valid, 2 when not).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

HELP = "run the monitor service from a YAML config (RTSP/file/WebRTC streams, /metrics)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, metavar="YAML", help="monitor configuration file")
    p.add_argument("--check-config", action="store_true", help="validate the config and exit")
    p.add_argument(
        "--shard",
        default=None,
        metavar="I/N",
        help="take the configured streams whose stable hash mod N is I (overrides shard:)",
    )
    p.add_argument("--table", action="store_true", help="print a live table of stream states")
    p.add_argument("--duration", type=float, default=None, metavar="S", help="stop after S seconds")


def run(args: argparse.Namespace) -> int:
    from monitor.live.config import load_config
    from monitor.live.service import Service, describe_streams
    from monitor.models import describe_model, is_default

    cfg = load_config(args.config)  # ConfigError -> "error: ..." and exit 2 (monitor.cli)
    if args.shard is not None:
        from monitor.shard import Shard

        cfg = cfg.model_copy(update={"shard": str(Shard.parse(args.shard))})
    if args.check_config:
        model_line = check_model(cfg)  # ModelFormatError etc.: one line, exit 2
        print(f"{args.config}: OK ({len(cfg.streams)} stream(s), {describe_model(cfg.model)})")
        own = {s.id for s in cfg.own_streams()}
        for line, s in zip(describe_streams(cfg), cfg.streams, strict=True):
            mark = "" if cfg.shard == "0/1" else ("  [this shard]" if s.id in own else "")
            print(f"  {line}{mark}")
        if cfg.shard != "0/1":
            print(f"shard {cfg.shard}: {len(own)} of {len(cfg.streams)} stream(s)")
        print(model_line)
        for line in describe_state(cfg):
            print(line)
        sys.stdout.flush()
        return 0
    if is_default(cfg.model):  # say so: the config did not name it
        print(describe_model(cfg.model), file=sys.stderr, flush=True)
    asyncio.run(_serve(Service(cfg), args.table, args.duration))
    return 0


def check_model(cfg: Any) -> str:
    """Load the configured model with its backend (a missing or unloadable model is an
    error here, not when the service starts); one line saying what loaded."""
    from monitor.backend import load_backend

    backend = load_backend(cfg.model, cfg.backend)
    try:
        return f"model {cfg.model}: loads (backend {backend.name}, {backend.contract.summary()})"
    finally:
        backend.close()


def describe_state(cfg: Any) -> list[str]:
    """The state machine's effective settings: the model's calibrated ones, then the config's."""
    from monitor.backend import read_model_calibration
    from monitor.live.config import effective_state
    from monitor.live.state import HEADS

    try:
        calibration = read_model_calibration(cfg.model)
    except Exception as exc:  # the model is checked again, loudly, when serving starts
        calibration = None
        print(f"  (cannot read the model's manifest: {exc})")
    state, why = effective_state(cfg.state, calibration)
    p = state.params()
    lines = [
        f"{why}:",
        f"  smoothing {p.smoothing} (ema_alpha {p.ema_alpha:g}, median_windows "
        f"{p.median_windows}); hold {p.min_escalate_s:g} s up, {p.min_deescalate_s:g} s down",
    ]
    for head in HEADS:
        th = p.thresholds(head)
        lines.append(
            f"  {head:7s} suspicious {th.suspicious_on:g}/{th.suspicious_off:g}  "
            f"alert {th.alert_on:g}/{th.alert_off:g} (on/off)"
        )
    return lines


async def _serve(service: Any, table: bool, duration: float | None) -> None:
    from monitor.commands.watch import print_table, render_table

    printer = None
    if table:
        out = sys.stdout
        printer = asyncio.get_running_loop().create_task(print_table(service, out, out.isatty()))
    try:
        await service.run(duration_s=duration)
    finally:
        if printer is not None:
            printer.cancel()
            await asyncio.gather(printer, return_exceptions=True)
            print(render_table(service.final_statuses), flush=True)
