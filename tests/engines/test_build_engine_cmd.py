"""`build-engine --if-stale`: when an existing plan is kept and when it is rebuilt.

The decision needs no TensorRT: the runtime facts (TensorRT version, GPU name and compute
capability) are given as a RuntimeInfo, and the command's wiring is tested with the
runtime probe and the builder replaced by fakes.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from engines.commands.build_engine import stale_reasons, wanted_precision
from engines.iospec import contract_io
from engines.manifest import (
    EngineManifest,
    load_onnx_manifest,
    manifest_path,
    sha256_file,
    write_manifest,
)
from engines.trt_plan import RuntimeInfo
from monitor.cli import main
from monitor.contract import InputContract

CONTRACT = InputContract()
ONNX_SHA = "ab" * 32
H100 = RuntimeInfo("10.13.0.35", "NVIDIA H100 80GB HBM3", "9.0")
WANTED: dict[str, Any] = {"precision": "fp16", "min_batch": 1, "opt_batch": 32, "max_batch": 128}


def _plan(tmp_path: Path, **changes: Any) -> Path:
    """A plan file and its manifest, as build-engine writes them (fields overridable)."""
    plan = tmp_path / "model.plan"
    plan.write_bytes(b"an engine")
    m = EngineManifest(
        contract=CONTRACT,
        plan_file=plan.name,
        plan_sha256=sha256_file(plan),
        onnx_file="model.onnx",
        onnx_sha256=ONNX_SHA,
        tensorrt_version=H100.tensorrt_version,
        gpu_name=H100.gpu_name,
        compute_capability=H100.compute_capability,
        precision="fp16",
        min_batch=1,
        opt_batch=32,
        max_batch=128,
        workspace_mib=2048,
        io=tuple(s.to_dict() for s in contract_io(CONTRACT)),
    )
    write_manifest(plan, replace(m, **changes))
    return plan


def test_a_plan_built_here_from_this_onnx_file_is_current(tmp_path: Path) -> None:
    assert stale_reasons(_plan(tmp_path), ONNX_SHA, H100, **WANTED) == []


def test_a_missing_plan_is_stale(tmp_path: Path) -> None:
    assert stale_reasons(tmp_path / "model.plan", ONNX_SHA, H100, **WANTED) == [
        f"{tmp_path / 'model.plan'} does not exist"
    ]


@pytest.mark.parametrize(
    ("here", "changes", "why"),
    [
        (RuntimeInfo("10.14.1.48", H100.gpu_name, "9.0"), {}, "TensorRT 10.13.0.35, this is 10.14"),
        (RuntimeInfo(H100.tensorrt_version, "NVIDIA A100-SXM4-80GB", "8.0"), {}, "sm 8.0"),
        (RuntimeInfo(H100.tensorrt_version, "NVIDIA H100 PCIe", "9.0"), {}, "NVIDIA H100 PCIe"),
        (H100, {"onnx_sha256": "cd" * 32}, "another ONNX file (sha256 cdcdcdcdcdcd"),
        (H100, {"precision": "fp32"}, "it is fp32, fp16 was asked for"),
        (H100, {"max_batch": 64}, "batch profile is 1/32/64, 1/32/128 was asked for"),
        (H100, {"calibration": {"state": {}}}, "calibration changed"),
    ],
)
def test_a_plan_for_another_runtime_model_or_setting_is_stale(
    tmp_path: Path, here: RuntimeInfo, changes: dict[str, Any], why: str
) -> None:
    reasons = stale_reasons(_plan(tmp_path, **changes), ONNX_SHA, here, **WANTED)
    assert len(reasons) == 1, reasons
    assert why in reasons[0]


def test_a_replaced_plan_or_a_lost_manifest_is_stale(tmp_path: Path) -> None:
    plan = _plan(tmp_path)
    plan.write_bytes(b"half an engine")  # a build that died while writing
    assert "does not match its manifest" in stale_reasons(plan, ONNX_SHA, H100, **WANTED)[0]
    manifest_path(plan).unlink()
    assert "no manifest beside the engine" in stale_reasons(plan, ONNX_SHA, H100, **WANTED)[0]


def test_precision_follows_the_onnx_file_and_the_flag() -> None:
    assert wanted_precision("fp16", fp16=False) == "fp16"
    assert wanted_precision("fp32", fp16=True) == "fp16"
    assert wanted_precision("fp32", fp16=False) == "fp32"


@pytest.fixture
def fake_gpu(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """runtime_info answers H100; build_engine records its calls and writes nothing."""
    import engines.trt_build
    import engines.trt_common

    built: list[Path] = []

    def fake_build(onnx: Any, out: Any, opts: Any) -> EngineManifest:
        built.append(Path(out))
        raise SystemExit(0)  # the real builder needs TensorRT; stop here

    monkeypatch.setattr(engines.trt_common, "runtime_info", lambda device=0: H100)
    monkeypatch.setattr(engines.trt_build, "build_engine", fake_build)
    return built


def test_if_stale_keeps_a_current_plan_and_builds_a_stale_one(
    tmp_path: Path, fake_gpu: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    from engines.toy import make_toy_onnx

    onnx_path = make_toy_onnx(CONTRACT, tmp_path / "model.onnx")
    source = load_onnx_manifest(onnx_path)
    plan = _plan(tmp_path, onnx_sha256=source.onnx_sha256, precision=source.precision)
    args = ["build-engine", str(onnx_path), "--out", str(plan), "--if-stale"]

    assert main(args) == 0
    assert fake_gpu == []
    assert "current" in capsys.readouterr().out

    with pytest.raises(SystemExit):
        main([*args, "--max-batch", "64"])
    assert fake_gpu == [plan]
    assert "batch profile is 1/32/128, 1/32/64 was asked for" in capsys.readouterr().out

    with pytest.raises(SystemExit):  # without --if-stale it always builds
        main(args[:-1])
    assert fake_gpu == [plan, plan]


def test_if_stale_without_tensorrt_says_how_to_get_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from engines.loader import SystemProbe
    from engines.toy import make_toy_onnx

    if SystemProbe().has_tensorrt():
        pytest.skip("TensorRT is installed here")
    onnx_path = make_toy_onnx(CONTRACT, tmp_path / "model.onnx")
    plan = tmp_path / "model.plan"
    assert main(["build-engine", str(onnx_path), "--out", str(plan), "--if-stale"]) == 2
    assert "TensorRT Python library is not available" in capsys.readouterr().err
    assert not plan.exists()
