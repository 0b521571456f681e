"""Per-window timeline of one stream: raw and smoothed scores, state, face and speech.

One CSV row per scored window, written by the live pipeline when `timeline.dir` is
configured (one file per stream) and by `replay`. It is what an analyst opens after an
alert: `replay` also plots it (`plot_timeline`).
"""

from __future__ import annotations

import csv
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

logger = logging.getLogger(__name__)

COLUMNS = (
    "stream_time",  # s, end of the window on the stream's clock
    "wall_time",  # epoch s when it was scored
    "fused_raw",
    "audio_raw",
    "visual_raw",
    "sync_raw",  # empty for a model without the sync output
    "fused",  # smoothed; empty while the head is gated or not yet scored
    "audio",
    "visual",
    "sync",
    "state",
    "raised_by",
    "face_fraction",  # share of the window's crops with a face found
    "speech",  # 1 when the window has audio above the silence floor
    "audio_rms",
)
HEAD_NAMES = ("fused", "audio", "visual", "sync")


@dataclass(frozen=True)
class TimelineRow:
    stream_time: float
    raw: tuple[float, float, float, float | None]
    smoothed: dict[str, float | None]
    state: str
    raised_by: str | None
    face_fraction: float
    speech: bool
    audio_rms: float
    wall_time: float = 0.0

    def cells(self) -> list[str]:
        def num(x: float | None, digits: int = 4) -> str:
            return "" if x is None or math.isnan(x) else f"{x:.{digits}f}"

        return [
            f"{self.stream_time:.3f}",
            f"{self.wall_time or time.time():.3f}",
            *(num(x) for x in self.raw),
            *(num(self.smoothed.get(h)) for h in HEAD_NAMES),
            self.state,
            self.raised_by or "",
            f"{self.face_fraction:.2f}",
            "1" if self.speech else "0",
            num(self.audio_rms, 5),
        ]


class TimelineWriter:
    """Appends rows to one CSV file (header when the file is new), flushed per row."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        new = not path.exists() or path.stat().st_size == 0
        self._fh: IO[str] | None = path.open("a", newline="")
        self._csv = csv.writer(self._fh)
        if new:
            self._csv.writerow(COLUMNS)
        self.rows = 0

    def write(self, row: TimelineRow) -> None:
        if self._fh is None:
            return
        try:
            self._csv.writerow(row.cells())
            self._fh.flush()
            self.rows += 1
        except OSError as exc:  # a full disk must not stop scoring: log once and stop
            logger.error("timeline %s: %s; no more rows are written", self.path, exc)
            self.close()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def read_timeline(path: Path) -> list[dict[str, Any]]:
    """The rows of a timeline CSV, numbers as floats (None where empty)."""
    out = []
    with path.open(newline="") as fh:
        for rec in csv.DictReader(fh):
            row: dict[str, Any] = {}
            for key, value in rec.items():
                if key in ("state", "raised_by"):
                    row[key] = value or None
                else:
                    row[key] = float(value) if value not in ("", None) else None
            out.append(row)
    return out


STATE_COLORS = {
    "CLEAR": "#d8f0d8",
    "SUSPICIOUS": "#ffe2b3",
    "ALERT": "#ffc4c4",
    "NO_FACE": "#d6e4ff",
    "NO_AUDIO": "#e8dcff",
    "SILENCE": "#e8dcff",
    "DOWN": "#cccccc",
    "STARTING": "#f2f2f2",
    "ENDED": "#f2f2f2",
}
HEAD_COLORS = {"fused": "black", "audio": "tab:purple", "visual": "tab:blue", "sync": "tab:orange"}
HEAD_LABELS = {"fused": "fused", "audio": "voice", "visual": "face", "sync": "lip sync"}


def plot_timeline(
    rows: list[dict[str, Any]],
    path: Path,
    title: str,
    thresholds: dict[str, float],
) -> Path:
    """Score curves (smoothed solid, raw faint) over stream time, the alert and suspicious
    thresholds dashed, state bands behind, and each state change marked with what raised
    it. Needs matplotlib (the `train` extra); raises ImportError without it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(12, 4.5), dpi=100)
    t = [r["stream_time"] for r in rows]
    if t:
        edges = [*t, t[-1] + (t[-1] - t[-2] if len(t) > 1 else 1.0)]
        for i, r in enumerate(rows):
            ax.axvspan(edges[i], edges[i + 1], color=STATE_COLORS.get(r["state"], "white"), lw=0)
    for head in HEAD_NAMES:
        raw = [r.get(f"{head}_raw") for r in rows]
        smooth = [r.get(head) for r in rows]
        if all(v is None for v in raw):
            continue
        color = HEAD_COLORS[head]
        ax.plot(t, [math.nan if v is None else v for v in raw], color=color, alpha=0.25, lw=1)
        ax.plot(
            t,
            [math.nan if v is None else v for v in smooth],
            color=color,
            lw=2,
            label=HEAD_LABELS[head],
        )
    for name in ("alert_on", "suspicious_on"):
        if name in thresholds:
            ax.axhline(thresholds[name], ls="--", color="red" if "alert" in name else "orange")
            ax.text(t[0] if t else 0, thresholds[name] + 0.01, name, fontsize=7, color="dimgray")
    prev = None
    for r in rows:
        if r["state"] != prev:
            label = r["state"] + (f" ({r['raised_by']})" if r.get("raised_by") else "")
            ax.axvline(r["stream_time"], color="dimgray", lw=0.8)
            ax.text(r["stream_time"], 1.02, label, rotation=30, fontsize=7, va="bottom")
            prev = r["state"]
    ax.set_ylim(0, 1)
    ax.set_xlabel("stream time (s)")
    ax.set_ylabel("P(fake) / P(out of step)")
    ax.set_title(title, pad=28)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
