"""The one-command stack (deploy/compose.yaml): `docker-compose config` accepts it, every
file it mounts from the repository exists, and its services are wired to each other.

`docker-compose config` needs no Docker daemon (Debian's docker-compose package;
scripts/system-deps.sh installs it). One host folder is allowed to be missing, and only
this one: the camera clips, which `make demo` writes (demo/camera-real.mp4 +
camera-fake.mp4) and DEEPFAKE_DEMO_DIR moves elsewhere. The model folder defaults to the
shipped model (monitor/models/default); DEEPFAKE_MODEL_DIR moves it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

from monitor.live.config import load_config
from monitor.mixin import GRAFANA_DASHBOARDS_DIR, PROMETHEUS_URL, load_mixin_config
from tests.support import REPO_ROOT

DEPLOY = REPO_ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
COMPOSE_DIR = DEPLOY / "compose"
MONITORING = DEPLOY / "monitoring"
ENV_FOLDERS = ("DEEPFAKE_MODEL_DIR", "DEEPFAKE_DEMO_DIR")  # documented in compose.yaml
MADE_BY_MAKE_DEMO = {REPO_ROOT / "demo"}  # the only host path allowed missing
DEMO_CLIPS = {"camera-real.mp4", "camera-fake.mp4"}  # what `make demo` writes (monitor/demo)


def _compose_command() -> list[str]:
    found = shutil.which("docker-compose")
    if found is not None:
        return [found]
    docker = shutil.which("docker")
    if docker is not None:
        plugin = subprocess.run([docker, "compose", "version"], capture_output=True, timeout=60)
        if plugin.returncode == 0:
            return [docker, "compose"]
    pytest.skip("docker-compose not installed (scripts/system-deps.sh installs it)")


def compose_config(compose_file: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    """`docker-compose -f FILE config`, parsed; the documented variables unset unless given."""
    run_env = {k: v for k, v in os.environ.items() if k not in ENV_FOLDERS}
    run_env.update(env or {})
    result = subprocess.run(
        [*_compose_command(), "-f", str(compose_file), "config"],
        capture_output=True,
        text=True,
        env=run_env,
        timeout=120,
    )
    assert result.returncode == 0, f"docker-compose config:\n{result.stderr}"
    return yaml.safe_load(result.stdout)


def bind_mounts(service: dict[str, Any]) -> dict[str, Path]:
    """container path -> host path of each bind mount (short or long volume syntax)."""
    mounts = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
            if source.startswith("/"):
                mounts[target] = Path(source)
        elif volume.get("type") == "bind":
            mounts[volume["target"]] = Path(volume["source"])
    return mounts


def missing_host_paths(
    config: dict[str, Any], made_by_make_demo: set[Path] = MADE_BY_MAKE_DEMO
) -> list[str]:
    """Every bind-mounted host path and build input that does not exist, except the
    folders `make demo` makes."""
    missing = []
    for name, service in config["services"].items():
        for target, source in bind_mounts(service).items():
            if not source.exists() and source not in made_by_make_demo:
                missing.append(f"{name}: {source} (mounted at {target})")
        build = service.get("build")
        if build:
            context = Path(build["context"])
            for path in (context, context / build.get("dockerfile", "Dockerfile")):
                if not path.exists():
                    missing.append(f"{name}: build input {path}")
    return missing


def test_compose_file_is_valid_and_every_mounted_file_exists() -> None:
    config = compose_config(COMPOSE)
    assert set(config["services"]) == {"monitor", "camera", "prometheus", "alertmanager", "grafana"}
    assert missing_host_paths(config) == []
    allowed = [
        (name, target)
        for name, service in config["services"].items()
        for target, source in bind_mounts(service).items()
        if source in MADE_BY_MAKE_DEMO
    ]
    assert sorted(allowed) == [("camera", "/demo")]
    models = bind_mounts(config["services"]["monitor"])["/models"]
    assert models == REPO_ROOT / "monitor" / "models" / "default"
    assert (models / "model.onnx").is_file() and (models / "model.onnx.json").is_file()


def test_a_deleted_mounted_file_is_reported(tmp_path: Path) -> None:
    copy = tmp_path / "deploy"
    shutil.copytree(DEPLOY, copy, ignore=shutil.ignore_patterns("k8s"))
    (copy / "monitoring" / "alertmanager" / "alertmanager.yaml").unlink()
    shutil.rmtree(copy / "monitoring" / "grafana" / "dashboards")
    (tmp_path / "monitor" / "models" / "default").mkdir(parents=True)  # the model, beside it
    missing = missing_host_paths(compose_config(copy / "compose.yaml"), {tmp_path / "demo"})
    assert len(missing) == 2, missing
    assert any(m.startswith("alertmanager: ") and "alertmanager.yaml" in m for m in missing)
    assert any(
        m.startswith("grafana: ") and m.endswith(GRAFANA_DASHBOARDS_DIR + ")") for m in missing
    )


def test_model_and_clip_folders_follow_the_environment(tmp_path: Path) -> None:
    env = {"DEEPFAKE_MODEL_DIR": str(tmp_path / "models"), "DEEPFAKE_DEMO_DIR": str(tmp_path / "c")}
    services = compose_config(COMPOSE, env)["services"]
    assert bind_mounts(services["monitor"])["/models"] == tmp_path / "models"
    assert bind_mounts(services["camera"])["/demo"] == tmp_path / "c"


# --- how the services fit together (the raw file; no docker-compose needed) ----------------


def _raw() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def _mounts(service: str) -> dict[str, Path]:
    """container path -> host path, relative paths resolved against deploy/."""
    out = {}
    for volume in _raw()["services"][service].get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/", "$")):
            out[target] = (DEPLOY / source).resolve() if source.startswith(".") else Path(source)
    return out


def test_every_image_is_pinned() -> None:
    for name, service in _raw()["services"].items():
        image = service["image"]
        repo, _, tag = image.rpartition(":")
        assert repo and tag and tag != "latest", f"{name}: {image} is not pinned"
    assert _raw()["services"]["grafana"]["image"].startswith("grafana/grafana:11.6.")
    assert re.fullmatch(
        r"prom/prometheus:v\d+\.\d+\.\d+", _raw()["services"]["prometheus"]["image"]
    )
    monitor = _raw()["services"]["monitor"]
    assert monitor["build"] == {"context": "..", "dockerfile": "deploy/docker/Dockerfile"}
    assert monitor["read_only"] is True and "/tmp" in monitor["tmpfs"]


def test_the_monitor_scores_the_demo_cameras_with_the_mounted_model() -> None:
    mounts = _mounts("monitor")
    config_file = mounts["/etc/deepfake-monitor/monitor.yaml"]
    assert config_file == COMPOSE_DIR / "monitor.yaml"
    cfg = load_config(config_file)
    assert Path(cfg.model).parent == Path("/models")
    volumes = _raw()["services"]["monitor"]["volumes"]
    assert "${DEEPFAKE_MODEL_DIR:-../monitor/models/default}:/models:ro" in volumes
    assert (
        f"127.0.0.1:{cfg.server.port}:{cfg.server.port}" in _raw()["services"]["monitor"]["ports"]
    )

    camera = _mounts("camera")
    assert camera["/mediamtx.yml"] == COMPOSE_DIR / "mediamtx.yml"
    assert "${DEEPFAKE_DEMO_DIR:-../demo}:/demo:ro" in _raw()["services"]["camera"]["volumes"]
    paths = yaml.safe_load((COMPOSE_DIR / "mediamtx.yml").read_text())["paths"]
    clips = {name: re.search(r"-i (\S+)", p["runOnInit"]).group(1) for name, p in paths.items()}
    assert {Path(c).parent for c in clips.values()} == {Path("/demo")}
    assert {Path(c).name for c in clips.values()} == DEMO_CLIPS
    assert {s.url for s in cfg.streams} == {f"rtsp://camera:8554/{name}" for name in paths}


def test_prometheus_scrapes_the_monitor_under_the_mixins_job_and_loads_its_rules() -> None:
    mounts = _mounts("prometheus")
    prometheus_yml = mounts["/etc/prometheus/prometheus.yml"]
    prom = yaml.safe_load(prometheus_yml.read_text())
    job = re.fullmatch(r'job="([^"]+)"', load_mixin_config(MONITORING / "mixin.yaml").selector)
    assert job is not None
    (scrape,) = [s for s in prom["scrape_configs"] if s["job_name"] == job.group(1)]
    port = load_config(COMPOSE_DIR / "monitor.yaml").server.port
    assert scrape["static_configs"] == [{"targets": [f"monitor:{port}"]}]
    assert scrape.get("metrics_path", "/metrics") == "/metrics"

    rules = {t: s for t, s in mounts.items() if s.parent == MONITORING / "prometheus"}
    assert list(rules.values()) == [MONITORING / "prometheus" / "deepfake-monitor.rules.yaml"]
    (target,) = rules
    assert any(Path(target).match(pattern) for pattern in prom["rule_files"])
    (am,) = prom["alerting"]["alertmanagers"]
    assert am["static_configs"] == [{"targets": ["alertmanager:9093"]}]
    alertmanager = _mounts("alertmanager")
    assert alertmanager["/etc/alertmanager/alertmanager.yml"] == (
        MONITORING / "alertmanager" / "alertmanager.yaml"
    )

    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (scripts/system-deps.sh installs prometheus)")
    result = subprocess.run(
        [promtool, "check", "config", "--syntax-only", str(prometheus_yml)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_grafana_gets_the_provisioning_and_the_dashboard_where_they_expect() -> None:
    mounts = _mounts("grafana")
    grafana = MONITORING / "grafana"
    assert mounts[GRAFANA_DASHBOARDS_DIR] == grafana / "dashboards"
    for kind in ("datasources", "dashboards"):
        assert mounts[f"/etc/grafana/provisioning/{kind}"] == grafana / "provisioning" / kind
    (provider_file,) = (grafana / "provisioning" / "dashboards").glob("*.yaml")
    (provider,) = yaml.safe_load(provider_file.read_text())["providers"]
    assert provider["options"]["path"] == GRAFANA_DASHBOARDS_DIR
    home = _raw()["services"]["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (grafana / "dashboards" / Path(home).relative_to(GRAFANA_DASHBOARDS_DIR)).is_file()
    datasource = urlparse(PROMETHEUS_URL)
    assert datasource.hostname in _raw()["services"]
    assert f"127.0.0.1:{datasource.port}:9090" in _raw()["services"]["prometheus"]["ports"]
