"""The `webrtc:` section of the monitor's config: pydantic only, no aiortc import, so the
config schema loads (and `serve --check-config` runs) without the WebRTC stack."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator


class IceServer(BaseModel):
    """One STUN or TURN server, offered to aiortc and to the browser page."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    urls: list[str] = Field(
        min_length=1,
        max_length=8,
        description="stun:, turn: or turns: URLs of one server, e.g. 'stun:stun.example.org:3478'",
    )
    username: str | None = Field(default=None, max_length=256, description="TURN user name")
    credential: SecretStr | None = Field(default=None, description="TURN password (never logged)")

    @model_validator(mode="after")
    def _check_urls(self) -> IceServer:
        for url in self.urls:
            if not re.match(r"^(stun|turn|turns):[^\s]{1,250}$", url):
                raise ValueError(f"ice_servers.urls: {url!r} is not a stun:, turn: or turns: URL")
        return self


class WebRTCConfig(BaseModel):
    """User configuration of the WebRTC source (the `webrtc:` section of the config file)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(default=True, description="serve the page and accept WebRTC callers")
    max_peers: int = Field(
        default=8, ge=1, le=256, description="concurrent callers; more are refused with HTTP 503"
    )
    token: SecretStr | None = Field(
        default=None,
        min_length=8,
        max_length=256,
        description="bearer token required by /offer and /api/*; None = no authentication "
        "(loopback or a trusted LAN only)",
    )
    max_body_bytes: int = Field(
        default=64 * 1024,
        ge=1024,
        le=1024 * 1024,
        description="largest /offer request body (bytes)",
    )
    max_sdp_bytes: int = Field(
        default=32 * 1024, ge=512, le=1024 * 1024, description="largest SDP inside an offer (bytes)"
    )
    ice_servers: list[IceServer] = Field(
        default_factory=list,
        max_length=8,
        description="STUN/TURN servers; empty (default) = host candidates only, which is "
        "enough on loopback and a LAN. STUN is off unless listed here.",
    )
    connect_timeout_s: float = Field(
        default=15.0,
        gt=0,
        le=120,
        description="drop a caller whose ICE has not connected by then (s)",
    )
    media_timeout_s: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description="drop a connected caller that sent no audio or video for this long (s); "
        "catches callers that vanish without hanging up",
    )
    status_interval_ms: int = Field(
        default=500, ge=100, le=10_000, description="how often the page polls its stream's status"
    )

    @model_validator(mode="after")
    def _check_sizes(self) -> WebRTCConfig:
        if self.max_sdp_bytes > self.max_body_bytes:
            raise ValueError(
                f"max_sdp_bytes ({self.max_sdp_bytes}) must not exceed max_body_bytes "
                f"({self.max_body_bytes})"
            )
        return self
