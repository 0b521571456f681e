"""The monitor's YAML configuration, validated by pydantic.

Every section forbids unknown keys, every number has bounds, every field a description
(`deepfake-monitor serve --check-config` prints the offending key as a dotted path, with
a "did you mean" for typos). Example:

```yaml
model: runs/demo/model.onnx
backend: auto
server: {host: 127.0.0.1, port: 8080}
streams:
  - {id: lobby, url: "rtsp://user:pass@10.0.0.5:554/stream1"}
  - {id: demo, url: demo/fake_0001.mp4, loop: true}
events: {path: events.jsonl}
```
"""

from __future__ import annotations

import difflib
import ipaddress
import logging
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from monitor.errors import ConfigError
from monitor.live.evidence import EvidenceSettings
from monitor.live.sources.base import STREAM_ID_PATTERN
from monitor.live.sources.webrtc_config import WebRTCConfig
from monitor.live.state import StateParams, Thresholds
from monitor.redaction import register_url
from monitor.shard import Shard

logger = logging.getLogger(__name__)

TOKEN_ENV = "DEEPFAKE_MONITOR_TOKEN"  # overrides server.token, keeps secrets out of YAML


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerConfig(_Section):
    host: str = Field("127.0.0.1", description="address for /metrics, /healthz, /readyz, WebRTC")
    port: int = Field(8080, ge=0, le=65535, description="TCP port (0: any free port)")
    token: SecretStr | None = Field(
        None, description=f"bearer token for the WebRTC routes and page (env {TOKEN_ENV} wins)"
    )
    shutdown_timeout_s: float = Field(10.0, gt=0, le=120, description="graceful shutdown limit")
    idle_timeout_s: float = Field(
        15.0,
        gt=0,
        le=3600,
        description="close a connection that sends no complete request for this long "
        "(slow or stuck clients; idle keep-alive)",
    )

    def bearer_token(self) -> str | None:
        env = os.environ.get(TOKEN_ENV)
        if env:
            return env
        return self.token.get_secret_value() if self.token is not None else None

    def is_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


class SourceConfig(_Section):
    transport: Literal["tcp", "udp"] = Field("tcp", description="RTSP lower transport")
    open_timeout_s: float = Field(10.0, gt=0, le=120, description="connect/handshake timeout")
    read_timeout_s: float = Field(5.0, gt=0, le=120, description="one blocked read timeout")
    stall_timeout_s: float = Field(8.0, gt=0, le=300, description="no media this long = stalled")
    backoff_initial_s: float = Field(0.5, gt=0, le=60, description="first reconnect delay")
    backoff_max_s: float = Field(30.0, gt=0, le=600, description="reconnect delay cap")
    backoff_jitter: float = Field(0.2, ge=0, le=1, description="+- fraction of random spread")


class BufferConfig(_Section):
    audio_seconds: float = Field(8.0, ge=1, le=120, description="audio ring length per stream")
    video_frames: int = Field(32, ge=4, le=1024, description="sampled frames kept per stream")


class WindowConfig(_Section):
    hop_seconds: float | None = Field(
        None, gt=0, le=30, description="stride between windows (default: the model's)"
    )
    crop_workers: int = Field(2, ge=1, le=64, description="threads for RGB conversion + crops")
    stagger: bool = Field(
        True,
        description="spread the streams' window closings over the hop (each stream's windows "
        "shift by its own fraction of the hop after its first), so that streams opened "
        "together do not hand the crop stage and the scorer their windows at one moment",
    )


class ScorerConfig(_Section):
    max_batch: int = Field(32, ge=1, le=1024, description="windows per backend call")
    max_delay_ms: float = Field(50.0, ge=0, le=5000, description="longest wait to fill a batch")
    max_pending: int = Field(256, ge=1, le=100_000, description="queue bound; oldest dropped")

    @model_validator(mode="after")
    def _pending_holds_a_batch(self) -> ScorerConfig:
        if self.max_pending < self.max_batch:
            raise ValueError(f"max_pending ({self.max_pending}) must be >= max_batch")
        return self


class HeadThresholdsConfig(_Section):
    suspicious_on: float = Field(ge=0, le=1, description="enter SUSPICIOUS at this score")
    suspicious_off: float = Field(ge=0, le=1, description="leave SUSPICIOUS below this")
    alert_on: float = Field(ge=0, le=1, description="enter ALERT at this score")
    alert_off: float = Field(ge=0, le=1, description="leave ALERT below this")


class StateConfig(_Section):
    smoothing: Literal["ema", "median"] = Field("ema", description="rolling score method")
    ema_alpha: float = Field(0.5, gt=0, le=1, description="EMA weight of the newest window")
    median_windows: int = Field(5, ge=1, le=100, description="windows in the running median")
    suspicious_on: float = Field(0.5, ge=0, le=1, description="enter SUSPICIOUS at this score")
    suspicious_off: float = Field(0.4, ge=0, le=1, description="leave SUSPICIOUS below this")
    alert_on: float = Field(0.8, ge=0, le=1, description="enter ALERT at this score")
    alert_off: float = Field(0.65, ge=0, le=1, description="leave ALERT below this")
    min_escalate_s: float = Field(2.0, ge=0, le=600, description="hold time to raise a level")
    min_deescalate_s: float = Field(3.0, ge=0, le=600, description="hold time to lower a level")
    min_face_fraction: float = Field(0.5, ge=0, le=1, description="crops with a face, else NO_FACE")
    silence_rms: float = Field(0.003, ge=0, le=1, description="audio RMS floor, else SILENCE")
    min_gate_s: float = Field(2.0, ge=0, le=600, description="hold time for NO_FACE/SILENCE")
    heads: dict[Literal["fused", "audio", "visual", "sync"], HeadThresholdsConfig] = Field(
        default_factory=dict,
        description="thresholds of single heads, overriding the shared four (calibrate "
        "writes them into the model)",
    )

    @model_validator(mode="after")
    def _ordered(self) -> StateConfig:
        try:
            self.params()
        except ValueError as exc:
            raise ValueError(str(exc)) from None
        return self

    def params(self) -> StateParams:
        data = self.model_dump(exclude={"heads"})
        per_head = tuple(
            (head, Thresholds(**th.model_dump())) for head, th in sorted(self.heads.items())
        )
        return StateParams(**data, per_head=per_head)


def effective_state(
    state: StateConfig, calibration: dict[str, Any] | None
) -> tuple[StateConfig, str]:
    """The state machine's settings: the model's calibrated ones (when it has them) with
    every key the config file sets on top; and one line saying which were used."""
    if not calibration or not isinstance(calibration.get("state"), dict):
        return state, "state machine: the configuration's settings (the model is not calibrated)"
    merged = dict(calibration["state"])
    own = state.model_dump(include=state.model_fields_set)
    heads = {**dict(merged.get("heads") or {}), **dict(own.pop("heads", None) or {})}
    merged.update(own)
    if heads:
        merged["heads"] = heads
    try:
        effective = StateConfig.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(f"the model's calibrated state settings are invalid: {exc}") from exc
    budget = calibration.get("false_alerts_per_hour")
    why = "state machine: the model's calibrated settings"
    if budget is not None:
        why += f" (false-alarm budget {budget:g} per stream-hour)"
    if own:
        why += f", overridden by the configuration's {', '.join(sorted(own))}"
    return effective, why


class EventsConfig(_Section):
    path: Path | None = Field(None, description="JSON-lines file, one line per state change")
    webhook_url: str | None = Field(None, description="POST each event here (JSON)")
    webhook_queue: int = Field(256, ge=1, le=100_000, description="events waiting; oldest dropped")
    webhook_retries: int = Field(3, ge=0, le=20, description="retries after a failed POST")
    webhook_timeout_s: float = Field(5.0, gt=0, le=120, description="per POST")
    webhook_backoff_s: float = Field(0.5, gt=0, le=60, description="first retry delay, doubles")
    spool_dir: Path | None = Field(
        None,
        description="keep undelivered webhook events here across restarts (default: "
        "<events.path folder>/webhook-spool when events.path is set)",
    )

    def spool_folder(self) -> Path | None:
        if self.spool_dir is not None:
            return self.spool_dir
        return self.path.parent / "webhook-spool" if self.path is not None else None


class TimelineConfig(_Section):
    dir: Path | None = Field(
        None, description="write each stream's per-window timeline CSV here (<stream>.csv)"
    )


class EvidenceConfig(_Section):
    enabled: bool = Field(
        False, description="on ALERT, save the stream's last seconds of audio and video"
    )
    dir: Path = Field(Path("evidence"), description="folder for the evidence files")
    seconds: float = Field(10.0, ge=1, le=120, description="how much before the ALERT to keep")
    max_files: int = Field(100, ge=1, le=100_000, description="oldest files beyond are deleted")
    max_age_hours: float = Field(72.0, gt=0, le=24 * 365, description="older files are deleted")

    def settings(self) -> EvidenceSettings:
        return EvidenceSettings(self.dir, self.seconds, self.max_files, self.max_age_hours * 3600)


class StreamConfig(_Section):
    id: str = Field(pattern=STREAM_ID_PATTERN, description="stream id: [A-Za-z0-9_.-], <= 64")
    url: str = Field(min_length=1, description="rtsp://..., any URL PyAV opens, or a file path")
    loop: bool = Field(False, description="files: start again at the end")
    realtime: bool = Field(True, description="files: pace at the media's own rate")


class MonitorConfig(_Section):
    model: str = Field(
        "default",
        min_length=1,
        description="exported model (.onnx / engine / checkpoint); default: the shipped detector",
    )
    backend: str = Field("auto", min_length=1, description="auto | onnxruntime | torch | tensorrt")
    max_streams: int = Field(64, ge=1, le=4096, description="streams one process accepts")
    ingest_workers: int = Field(
        0, ge=0, le=256, description="processes decoding the configured streams (0: this one)"
    )
    shard: str = Field(
        "0/1",
        description="i/n: this replica takes the configured streams whose stable hash of the "
        "stream id mod n is i (N replicas of one config cover every stream once)",
    )
    server: ServerConfig = Field(default_factory=ServerConfig)
    sources: SourceConfig = Field(default_factory=SourceConfig)
    buffers: BufferConfig = Field(default_factory=BufferConfig)
    windows: WindowConfig = Field(default_factory=WindowConfig)
    scorer: ScorerConfig = Field(default_factory=ScorerConfig)
    state: StateConfig = Field(default_factory=StateConfig)
    events: EventsConfig = Field(default_factory=EventsConfig)
    timeline: TimelineConfig = Field(default_factory=TimelineConfig)
    evidence: EvidenceConfig = Field(default_factory=EvidenceConfig)
    webrtc: WebRTCConfig = Field(default_factory=WebRTCConfig)
    streams: list[StreamConfig] = Field(default_factory=list, description="RTSP/file streams")

    def shard_spec(self) -> Shard:
        return Shard.parse(self.shard)

    def own_streams(self) -> list[StreamConfig]:
        """The configured streams this replica's shard takes."""
        spec = self.shard_spec()
        return [s for s in self.streams if spec.takes_name(s.id)]

    @model_validator(mode="after")
    def _streams_fit(self) -> MonitorConfig:
        try:
            self.shard_spec()
        except ConfigError as exc:
            raise ValueError(f"shard: {exc}") from None
        seen: set[str] = set()
        for s in self.streams:
            if s.id in seen:
                raise ValueError(f"stream id {s.id!r} is used twice")
            seen.add(s.id)
        if len(self.streams) > self.max_streams:
            raise ValueError(
                f"{len(self.streams)} streams configured, max_streams is {self.max_streams}"
            )
        return self


def _dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _known_keys(loc: tuple[Any, ...]) -> list[str]:
    """Field names valid at the parent of `loc`, for "did you mean" hints."""
    model: Any = MonitorConfig
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return []
        ann = field.annotation
        inner = getattr(ann, "__args__", None)
        if inner:  # list[StreamConfig]
            ann = inner[0]
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return []
        model = ann
    return list(getattr(model, "model_fields", {}))


def format_errors(exc: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid configuration ({exc.error_count()} problem(s)):"]
    for err in exc.errors(include_url=False, include_input=False):
        loc = tuple(err["loc"])
        msg = err["msg"]
        if err["type"] == "extra_forbidden" and loc:
            close = difflib.get_close_matches(str(loc[-1]), _known_keys(loc), n=1)
            msg = "unknown key" + (f"; did you mean {close[0]!r}?" if close else "")
        elif msg.startswith("Value error, "):
            msg = msg.removeprefix("Value error, ")
        lines.append(f"  {_dotted(loc)}: {msg}")
    return "\n".join(lines)


def _register_secrets(data: dict[str, Any]) -> None:
    """Register the config's URLs' credentials before anything can quote them."""
    streams = data.get("streams")
    for s in streams if isinstance(streams, list) else []:
        if isinstance(s, dict) and isinstance(s.get("url"), str):
            register_url(s["url"])
    events = data.get("events")
    if isinstance(events, dict) and isinstance(events.get("webhook_url"), str):
        register_url(events["webhook_url"])


def parse_config(data: Any, source: str = "<config>") -> MonitorConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the configuration must be a YAML mapping")
    _register_secrets(data)
    try:
        return MonitorConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_errors(exc, source)) from None


def load_config(path: str | Path) -> MonitorConfig:
    """Read and validate a YAML config; ConfigError names the file, key and problem."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read configuration: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"{p}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    return parse_config(data if data is not None else {}, str(p))
