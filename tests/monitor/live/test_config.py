"""YAML config validation and `serve --check-config` messages (dotted keys, reasons)."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.cli import main
from monitor.errors import ConfigError
from monitor.live.config import TOKEN_ENV, MonitorConfig, ServerConfig, load_config, parse_config
from tests.support.live_media import toy_model

GOOD = """
model: runs/demo/model.onnx
backend: onnxruntime
server: {host: 0.0.0.0, port: 9000, token: s3cret-token}
scorer: {max_batch: 8, max_delay_ms: 20, max_pending: 64}
state: {smoothing: median, median_windows: 3}
events: {path: events.jsonl, webhook_url: "http://127.0.0.1:9/hook"}
webrtc: {enabled: false}
streams:
  - {id: lobby, url: "rtsp://admin:hunter2@10.0.0.5:554/stream1"}
  - {id: demo.file, url: demo/fake.mp4, loop: true, realtime: false}
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "monitor.yaml"
    p.write_text(text)
    return p


def test_a_good_config_loads(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, GOOD))
    assert cfg.scorer.max_batch == 8 and cfg.state.params().smoothing == "median"
    assert [s.id for s in cfg.streams] == ["lobby", "demo.file"]
    assert cfg.streams[1].loop and not cfg.streams[1].realtime
    assert cfg.server.bearer_token() == "s3cret-token"
    assert "s3cret" not in repr(cfg.server)  # SecretStr


def test_token_from_the_environment_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, "from-env-token")
    assert ServerConfig(token="yaml-token").bearer_token() == "from-env-token"


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        ("scorer: {max_batch: 0}", "scorer.max_batch: Input should be greater than or equal to 1"),
        ("scorer: {max_batch: 64, max_pending: 8}", "max_pending (8) must be >= max_batch"),
        ("scorer: {max_bacth: 8}", "scorer.max_bacth: unknown key; did you mean 'max_batch'?"),
        ("streams: [{id: 'bad id!', url: x.mp4}]", "streams[0].id: String should match pattern"),
        (
            "streams: [{id: a, url: x.mp4, lop: true}]",
            "streams[0].lop: unknown key; did you mean 'loop'?",
        ),
        ("streams: [{id: a, url: x.mp4}, {id: a, url: y.mp4}]", "stream id 'a' is used twice"),
        ("state: {suspicious_on: 0.9, alert_on: 0.8}", "suspicious_on <= alert_on"),
        ("server: {port: 70000}", "server.port: Input should be less than or equal to 65535"),
        ("modle: x.onnx", "modle: unknown key; did you mean 'model'?"),
        ("webrtc: {max_peers: 0}", "webrtc.max_peers"),
    ],
)
def test_bad_keys_are_named_with_a_reason(patch: str, expected: str) -> None:
    import yaml

    data = {"model": "m.onnx", **yaml.safe_load(patch)}
    with pytest.raises(ConfigError) as err:
        parse_config(data, "monitor.yaml")
    assert expected in str(err.value)
    assert str(err.value).startswith("monitor.yaml: invalid configuration")


def test_no_model_means_the_shipped_one_and_not_a_mapping(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "backend: auto\n")).model == "default"
    with pytest.raises(ConfigError, match=r"model: String should have at least 1 character"):
        load_config(write(tmp_path, "model: ''\n"))
    with pytest.raises(ConfigError, match="must be a YAML mapping"):
        load_config(write(tmp_path, "- just\n- a list\n"))
    with pytest.raises(ConfigError, match="not valid YAML at line 2"):
        load_config(write(tmp_path, "model: x\n  bad: [indent\n"))
    with pytest.raises(ConfigError, match="cannot read configuration"):
        load_config(tmp_path / "missing.yaml")


def test_check_config_ok_and_redacts_credentials(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = toy_model(tmp_path / "model")
    text = GOOD.replace("runs/demo/model.onnx", str(model))
    rc = main(["serve", "--config", str(write(tmp_path, text)), "--check-config"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "OK (2 stream(s)" in out and "lobby: rtsp://***@10.0.0.5:554/stream1" in out
    assert "hunter2" not in out and "admin" not in out
    assert f"model {model}: loads (backend onnxruntime, v1 16000Hz" in out


def test_check_config_refuses_a_model_that_is_missing_or_does_not_load(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(["serve", "--config", str(write(tmp_path, GOOD)), "--check-config"])
    captured = capsys.readouterr()
    assert rc == 2 and "OK" not in captured.out
    assert "error: runs/demo/model.onnx: no such model file or folder" in captured.err
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an onnx file")
    rc = main(["serve", "--config", str(write(tmp_path, f"model: {broken}\n")), "--check-config"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err


def test_check_config_reports_the_bad_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = GOOD.replace("max_delay_ms: 20", "max_delay_ms: -5").replace("loop: true", "looop: true")
    rc = main(["serve", "--config", str(write(tmp_path, bad)), "--check-config"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "scorer.max_delay_ms: Input should be greater than or equal to 0" in err
    assert "streams[1].looop: unknown key; did you mean 'loop'?" in err
    assert "hunter2" not in err


def test_defaults_are_sane() -> None:
    cfg = MonitorConfig(model="m.onnx")
    assert cfg.server.host == "127.0.0.1" and cfg.server.is_loopback()
    assert not ServerConfig(host="0.0.0.0").is_loopback()
    assert cfg.sources.transport == "tcp" and cfg.scorer.max_pending >= cfg.scorer.max_batch
