"""Property-based checks of what outsiders feed the monitor: config files and WebRTC
offers. Whatever comes in, the answer is the config or a ConfigError naming the key, and
an accepted offer or an OfferRejected with a status: never another exception."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.errors import ConfigError
from monitor.live.config import MonitorConfig, load_config, parse_config
from monitor.live.sources.webrtc import OfferRejected, WebRTCConfig, WebRTCServer

SECTIONS = ("server", "sources", "buffers", "windows", "scorer", "state", "events", "webrtc")
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
    st.text(max_size=30),
)  # fmt: skip
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(
    data=st.dictionaries(
        st.one_of(st.sampled_from(("model", "backend", "shard", "streams", *SECTIONS)), st.text()),
        values,
        max_size=6,
    )
)
def test_any_mapping_is_a_config_or_a_config_error(data: dict[str, Any]) -> None:
    try:
        cfg = parse_config(data, "fuzz.yaml")
    except ConfigError as exc:
        assert str(exc).startswith("fuzz.yaml")
    else:
        assert isinstance(cfg, MonitorConfig)


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=st.text(max_size=300))
def test_any_file_text_is_a_config_or_a_one_line_error(text: str, tmp_path: Path) -> None:
    path = tmp_path / "monitor.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        load_config(path)
    except ConfigError as exc:
        assert str(exc).startswith(str(path))


@settings(max_examples=60, deadline=None)
@given(
    section=st.sampled_from(SECTIONS),
    key=st.text(st.characters(min_codepoint=97, max_codepoint=122), min_size=3, max_size=12),
)
def test_an_unknown_key_is_named_as_a_dotted_path(section: str, key: str) -> None:
    known = MonitorConfig.model_fields[section].annotation
    fields = getattr(known, "model_fields", {})
    if key in fields:
        return
    try:
        parse_config({"model": "m.onnx", section: {key: 1}}, "c.yaml")
    except ConfigError as exc:
        assert f"{section}.{key}" in str(exc)
    else:
        raise AssertionError(f"{section}.{key} was accepted")


SERVER = WebRTCServer.__new__(WebRTCServer)  # parse_offer needs only the config
SERVER.cfg = WebRTCConfig()

offers = st.one_of(
    st.binary(max_size=200),
    st.builds(lambda d: json.dumps(d).encode(), st.dictionaries(st.text(max_size=8), values)),
    st.builds(
        lambda sdp, name, kind: json.dumps({"sdp": sdp, "type": kind, "name": name}).encode(),
        st.text(max_size=400),
        st.one_of(st.none(), st.text(max_size=40), st.integers()),
        st.sampled_from(("offer", "answer", "", None)),
    ),
)


@settings(max_examples=300, deadline=None)
@given(body=offers)
def test_any_offer_body_is_accepted_or_rejected_with_a_status(body: bytes) -> None:
    try:
        SERVER.parse_offer(body)
    except OfferRejected as exc:
        assert exc.status in (400, 413) and exc.message


def test_yaml_of_a_good_config_round_trips() -> None:
    cfg = MonitorConfig(model="m.onnx", shard="1/3")
    again = parse_config(yaml.safe_load(yaml.safe_dump(cfg.model_dump(mode="json"))))
    assert again == cfg
