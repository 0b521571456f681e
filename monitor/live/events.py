"""State-change events: one JSON line per change, to a log file and optionally a webhook.

A line looks like
`{"stream": "cam1", "time": "2025-01-01T12:00:00.123+00:00", "state": "ALERT",
"previous": "SUSPICIOUS", "modality": "fused", "raised_by": "voice",
"scores": {"fused": 0.91, ...},
"stream_time": 12.0}`.

The webhook never slows scoring down: events wait in a bounded queue (the oldest is
dropped and counted when it is full) and one task POSTs them with retries and capped
exponential backoff. Webhook URLs are redacted in every log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from monitor.live.state import StateChange
from monitor.redaction import redact, register_url

logger = logging.getLogger(__name__)

DEFAULT_WEBHOOK_QUEUE = 256  # events waiting for the webhook before dropping the oldest
DEFAULT_WEBHOOK_RETRIES = 3  # extra attempts after the first failed POST
DEFAULT_WEBHOOK_TIMEOUT_S = 5.0  # per POST
DEFAULT_WEBHOOK_BACKOFF_S = 0.5  # first retry delay; doubles per retry
WEBHOOK_BACKOFF_MAX_S = 30.0
RECENT_EVENTS = 100  # kept in memory for the operator page


def event_record(change: StateChange) -> dict[str, Any]:
    """The JSON object written for one state change."""
    record = {
        "id": change.event_id,
        "stream": change.stream_id,
        "time": datetime.fromtimestamp(change.wall_time, tz=UTC).isoformat(timespec="milliseconds"),
        "state": change.state,
        "previous": change.previous,
        "modality": change.modality,
        "raised_by": change.raised_by,
        "scores": {k: (None if v is None else round(v, 4)) for k, v in change.scores.items()},
        "stream_time": None if change.stream_t is None else round(change.stream_t, 3),
    }
    if change.evidence is not None:
        record["evidence"] = change.evidence
    return record


class EventLog:
    """Appends one JSON line per event; flushed per line so `tail -f` sees it at once."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh: IO[str] | None = self.path.open("a", encoding="utf-8")
        self.written = 0

    def write(self, record: dict[str, Any]) -> None:
        if self._fh is None:
            return
        try:
            self._fh.write(json.dumps(record, sort_keys=True) + "\n")
            self._fh.flush()
            self.written += 1
        except OSError as exc:
            logger.error("event log %s: write failed: %s", self.path, exc)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


class Spool:
    """The webhook's queue on disk: events wait in `pending.jsonl` (appended and fsynced
    as they happen) and `offset` says how far delivery got, so events survive a receiver
    that is down for hours and a monitor that restarts meanwhile. Delivery is
    at-least-once: an event being sent when the process stops is sent again after, with
    the same `id`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.pending = folder / "pending.jsonl"
        self.offset_file = folder / "offset"
        self.offset = self._read_offset()

    def _read_offset(self) -> int:
        try:
            value = int(self.offset_file.read_text().strip() or 0)
        except (OSError, ValueError):
            return 0
        size = self.pending.stat().st_size if self.pending.exists() else 0
        return value if 0 <= value <= size else 0

    def append(self, record: dict[str, Any]) -> None:
        with self.pending.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, sort_keys=True) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def peek(self) -> tuple[dict[str, Any], int] | None:
        """The next undelivered event and the offset just after it."""
        if not self.pending.exists():
            return None
        with self.pending.open("rb") as fh:
            fh.seek(self.offset)
            while line := fh.readline():
                end = fh.tell()
                if not line.endswith(b"\n"):
                    return None  # a torn last line (killed mid-write): not an event yet
                try:
                    return json.loads(line), end
                except ValueError:
                    logger.error("webhook spool %s: skipping a damaged line", self.pending)
                    self.offset = end
        return None

    def ack(self, end: int) -> None:
        self.offset = end
        if self.pending.stat().st_size == end:  # all delivered: start the files afresh
            self.pending.write_bytes(b"")
            self.offset = 0
        tmp = self.offset_file.with_suffix(".tmp")
        tmp.write_text(str(self.offset))
        os.replace(tmp, self.offset_file)

    def waiting(self) -> int:
        if not self.pending.exists():
            return 0
        with self.pending.open("rb") as fh:
            fh.seek(self.offset)
            return sum(1 for line in fh if line.endswith(b"\n"))


class Webhook:
    """POSTs events as JSON to a URL from one background task, retrying. With a spool the
    queue is on disk and nothing is given up; without one it is bounded in memory and an
    event is given up after `retries`."""

    def __init__(
        self,
        url: str,
        *,
        queue_size: int = DEFAULT_WEBHOOK_QUEUE,
        retries: int = DEFAULT_WEBHOOK_RETRIES,
        timeout_s: float = DEFAULT_WEBHOOK_TIMEOUT_S,
        backoff_s: float = DEFAULT_WEBHOOK_BACKOFF_S,
        headers: dict[str, str] | None = None,
        on_outcome: Callable[[str], None] | None = None,
        spool: Spool | None = None,
    ) -> None:
        register_url(url)
        self.url = url
        self.retries = retries
        self.timeout_s = timeout_s
        self.backoff_s = backoff_s
        self.headers = headers or {}
        self.on_outcome = on_outcome  # "sent" | "failed" | "dropped"
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=queue_size)
        self._task: asyncio.Task[None] | None = None
        self.spool = spool
        self._wake = asyncio.Event()
        self.sent = 0
        self.failed = 0
        self.dropped = 0

    def _count(self, outcome: str) -> None:
        if self.on_outcome is not None:
            self.on_outcome(outcome)

    def post(self, record: dict[str, Any]) -> None:
        """Queue an event without waiting; the oldest waiting one goes when full (in
        memory; a spool keeps every one)."""
        if self.spool is not None:
            try:
                self.spool.append(record)
            except OSError as exc:  # a full disk: keep the event in memory at least
                logger.error("webhook spool %s: %s; event kept in memory", self.spool.folder, exc)
            else:
                self._wake.set()
                return
        if self._queue.full():
            with contextlib.suppress(asyncio.QueueEmpty):
                self._queue.get_nowait()
                self._queue.task_done()
            self.dropped += 1
            self._count("dropped")
        self._queue.put_nowait(record)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="webhook")

    async def drain(self, timeout_s: float) -> None:
        """Wait (bounded) until every queued event was sent or given up (a spool keeps
        what is left for the next start)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle(), timeout_s)

    async def _idle(self) -> None:
        await self._queue.join()
        while self.spool is not None and self.spool.peek() is not None:
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        import aiohttp

        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        async with aiohttp.ClientSession(timeout=timeout, headers=self.headers) as session:
            while True:
                if self.spool is not None:
                    nxt = self.spool.peek()
                    if nxt is not None:
                        record, end = nxt
                        if await self._deliver(session, record, give_up=False):
                            self.spool.ack(end)
                        continue
                if self._queue.empty() and self.spool is not None:
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                record = await self._queue.get()
                try:
                    await self._deliver(session, record)
                finally:
                    self._queue.task_done()

    async def _deliver(self, session: Any, record: dict[str, Any], give_up: bool = True) -> bool:
        """POST one event with retries; False when it was not delivered (then, with
        give_up=False, after a pause so the caller can try the same event again)."""
        import aiohttp

        delay = self.backoff_s
        for attempt in range(self.retries + 1):
            try:
                async with session.post(self.url, json=record) as resp:
                    if resp.status < 300:
                        self.sent += 1
                        self._count("sent")
                        return True
                    problem = f"HTTP {resp.status}"
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                problem = redact(f"{type(exc).__name__}: {exc}")
            if attempt < self.retries:
                logger.info(
                    "webhook %s: %s, retry %d in %.1f s",
                    redact(self.url),
                    problem,
                    attempt + 1,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(WEBHOOK_BACKOFF_MAX_S, delay * 2)
        self.failed += 1
        self._count("failed")
        if not give_up:
            logger.warning(
                "webhook %s: %s; the %s event for stream %s stays spooled, next try in %.0f s",
                redact(self.url),
                problem,
                record.get("state"),
                record.get("stream"),
                WEBHOOK_BACKOFF_MAX_S,
            )
            await asyncio.sleep(WEBHOOK_BACKOFF_MAX_S)
            return False
        logger.warning(
            "webhook %s: gave up on a %s event for stream %s after %d attempts",
            redact(self.url),
            record.get("state"),
            record.get("stream"),
            self.retries + 1,
        )
        return False


class EventDispatcher:
    """Fans one state change out to the log file and the webhook."""

    def __init__(self, log: EventLog | None = None, webhook: Webhook | None = None) -> None:
        self.log = log
        self.webhook = webhook
        self.emitted = 0
        self.recent: deque[dict[str, Any]] = deque(maxlen=RECENT_EVENTS)  # operator page

    def emit(self, change: StateChange) -> dict[str, Any]:
        record = event_record(change)
        self.emitted += 1
        self.recent.append(record)
        logger.info(
            "stream %s: %s -> %s (%s)",
            change.stream_id,
            change.previous,
            change.state,
            change.modality,
        )
        if self.log is not None:
            self.log.write(record)
        if self.webhook is not None:
            self.webhook.post(record)
        return record

    def start(self) -> None:
        if self.webhook is not None:
            self.webhook.start()

    async def close(self, timeout_s: float = 2.0) -> None:
        if self.webhook is not None:
            await self.webhook.drain(timeout_s)
            await self.webhook.close()
        if self.log is not None:
            self.log.close()
