"""Time to alert: a fake stream's first scored window -> the webhook delivery, through a
real Prometheus and Alertmanager with the shipped mixin settings (deploy/monitoring/mixin.yaml).

    .venv/bin/python bench/alert_latency.py [--scrape 15s] [--evaluation 15s] [--runs 3]

Each run starts Prometheus, Alertmanager, a webhook receiver and the monitor on one looping
fake clip (the toy detector), then records when the monitor enters ALERT, when Prometheus
first sees the alert (pending), when it fires, and when the webhook receives it. Needs
Debian's prometheus and prometheus-alertmanager (scripts/system-deps.sh). Prints a
markdown table for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.support holds the stack harness

from monitor.live.config import MonitorConfig  # noqa: E402
from monitor.live.service import Service  # noqa: E402
from monitor.live.state import ALERT  # noqa: E402
from monitor.mixin import load_mixin_config  # noqa: E402
from tests.support.alert_stack import (  # noqa: E402
    AlertStack,
    MonitorThread,
    Receiver,
    missing_binaries,
    wait_for,
)
from tests.support.live_media import FAKE, toy_model, write_clip  # noqa: E402
from tests.support.rtsp import free_port  # noqa: E402

TIMEOUT_S = 300.0


def one_run(work: Path, scrape: str, evaluation: str) -> dict[str, float]:
    clip = write_clip(work / "fake.mp4", seconds=8.0, **FAKE)
    port = free_port()
    cfg = MonitorConfig.model_validate(
        {
            "model": str(toy_model(work / "model")),
            "backend": "onnxruntime",
            "server": {"host": "127.0.0.1", "port": port},
            "webrtc": {"enabled": False},
            "streams": [{"id": "fake", "url": str(clip), "loop": True}],
        }
    )
    receiver = Receiver()
    mixin = load_mixin_config(ROOT / "deploy" / "monitoring" / "mixin.yaml")
    mixin = mixin.model_copy(update={"webhook_url": receiver.url})
    stack = AlertStack(work / "stack", mixin, port, scrape, evaluation)
    stack.workdir.mkdir()
    service = Service(cfg)
    marks: dict[str, float] = {}

    def alert_state() -> str | None:
        for a in stack.prometheus_alerts():
            if a["labels"]["alertname"] == "DeepfakeDetected":
                return str(a["state"])
        return None

    with receiver.running(), MonitorThread(service) as monitor, stack.running():
        marks["window"] = wait_for(
            "first window", lambda: monitor.first_window_at("fake"), 60, 0.02
        )
        p = service.pipeline
        assert p is not None
        rt = p.streams["fake"]
        marks["alert_state"] = wait_for(
            "ALERT", lambda: time.monotonic() if rt.state.state == ALERT else None, 60, 0.02
        )
        marks["pending"] = wait_for(
            "pending", lambda: time.monotonic() if alert_state() else None, TIMEOUT_S, 0.1
        )
        marks["firing"] = wait_for(
            "firing",
            lambda: time.monotonic() if alert_state() == "firing" else None,
            TIMEOUT_S,
            0.1,
        )
        delivery = wait_for(
            "webhook", lambda: receiver.first("DeepfakeDetected", stream="fake"), TIMEOUT_S, 0.05
        )
        marks["webhook"] = delivery.at
    t0 = marks["window"]
    return {k: v - t0 for k, v in marks.items() if k != "window"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scrape", default="15s", help="Prometheus scrape interval")
    ap.add_argument("--evaluation", default="15s", help="Prometheus rule evaluation interval")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    why = missing_binaries()
    if why:
        print(why, file=sys.stderr)
        return 2
    rows = []
    for i in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            rows.append(one_run(Path(tmp), args.scrape, args.evaluation))
        print(f"run {i + 1}: " + ", ".join(f"{k} {v:.1f} s" for k, v in rows[-1].items()))
    print(f"\nscrape {args.scrape}, evaluation {args.evaluation}, {args.runs} runs")
    print("| from the first window to | median s | min s | max s |\n|---|---|---|---|")
    for key, label in (
        ("alert_state", "the monitor's ALERT"),
        ("pending", "Prometheus pending"),
        ("firing", "Prometheus firing"),
        ("webhook", "webhook delivery"),
    ):
        values = [r[key] for r in rows]
        print(
            f"| {label} | {statistics.median(values):.1f} | {min(values):.1f} | {max(values):.1f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
