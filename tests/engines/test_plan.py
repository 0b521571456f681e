"""Engine logic that needs no GPU: batch padding, TensorRT profiles, buffers, manifests."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from engines.batching import graph_batch_sizes, pad_rows, padded_size, plan_replays, split_batch
from engines.iospec import INPUT, OUTPUT, TensorSpec, check_io, contract_io
from engines.manifest import (
    EngineManifest,
    find_manifest,
    load_engine_manifest,
    manifest_path,
    sha256_file,
    write_manifest,
)
from engines.trt_plan import (
    Profile,
    RuntimeInfo,
    check_engine_compat,
    plan_buffers,
    profile_shapes,
    total_bytes,
)
from monitor.contract import InputContract
from monitor.errors import BackendUnavailableError, ContractError, ModelFormatError

CONTRACT = InputContract()  # 2 s at 16 kHz, K=4 crops of 112 px


# --- CUDA-graph batch ladder and padding -------------------------------------------------


def test_graph_sizes_are_powers_of_two_up_to_max() -> None:
    assert graph_batch_sizes(128) == (1, 2, 4, 8, 16, 32, 64, 128)
    assert graph_batch_sizes(100) == (1, 2, 4, 8, 16, 32, 64, 100)
    assert graph_batch_sizes(1) == (1,)
    with pytest.raises(ValueError):
        graph_batch_sizes(0)


def test_padded_size_picks_next_captured_size() -> None:
    sizes = graph_batch_sizes(128)
    assert [padded_size(n, sizes) for n in (1, 2, 3, 5, 9, 33, 64, 65, 128)] == [
        1,
        2,
        4,
        8,
        16,
        64,
        64,
        128,
        128,
    ]
    with pytest.raises(ValueError, match="split"):
        padded_size(129, sizes)
    with pytest.raises(ValueError):
        padded_size(0, sizes)


def test_plan_replays_splits_then_pads_the_remainder() -> None:
    sizes = graph_batch_sizes(8)
    assert plan_replays(3, sizes) == [(0, 3, 4)]
    assert plan_replays(8, sizes) == [(0, 8, 8)]
    assert plan_replays(19, sizes) == [(0, 8, 8), (8, 16, 8), (16, 19, 4)]
    covered = [i for a, b, _ in plan_replays(300, graph_batch_sizes(128)) for i in range(a, b)]
    assert covered == list(range(300))


def test_split_and_pad_rows() -> None:
    assert list(split_batch(5, 2)) == [(0, 2), (2, 4), (4, 5)]
    assert list(split_batch(0, 4)) == []
    x = np.arange(6, dtype=np.float32).reshape(3, 2)
    padded = pad_rows(x, 4)
    assert padded.shape == (4, 2) and padded.dtype == np.float32
    assert np.array_equal(padded[:3], x) and not padded[3].any()
    assert pad_rows(x, 3) is x
    with pytest.raises(ValueError):
        pad_rows(x, 2)


# --- I/O specs, profile, buffers ---------------------------------------------------------


def test_contract_io_and_profile_shapes() -> None:
    specs = contract_io(CONTRACT)
    assert [(s.name, s.mode, s.dtype) for s in specs] == [
        ("audio", INPUT, "float32"),
        ("faces", INPUT, "uint8"),
        ("p_fused", OUTPUT, "float32"),
        ("p_audio", OUTPUT, "float32"),
        ("p_visual", OUTPUT, "float32"),
        ("p_sync", OUTPUT, "float32"),
    ]
    shapes = profile_shapes(CONTRACT, Profile.for_max_batch(64))
    assert shapes == {
        "audio": ((1, 32000), (32, 32000), (64, 32000)),
        "faces": ((1, 4, 112, 112, 3), (32, 4, 112, 112, 3), (64, 4, 112, 112, 3)),
    }
    assert Profile.for_max_batch(8) == Profile(1, 8, 8)  # opt capped at max
    assert Profile.for_max_batch(128, opt_batch=16).opt_batch == 16
    with pytest.raises(ValueError):
        Profile(1, 64, 32)
    with pytest.raises(ValueError):
        Profile.for_max_batch(0)


def test_buffer_plan_sizes_per_tensor() -> None:
    bufs = {b.name: b for b in plan_buffers(contract_io(CONTRACT), 8)}
    assert bufs["audio"].shape == (8, 32000) and bufs["audio"].nbytes == 8 * 32000 * 4
    assert bufs["faces"].shape == (8, 4, 112, 112, 3)
    assert bufs["faces"].nbytes == 8 * 4 * 112 * 112 * 3  # uint8: one byte per value
    assert bufs["p_fused"].shape == (8,) and bufs["p_fused"].nbytes == 32
    total = total_bytes(plan_buffers(contract_io(CONTRACT), 128))
    assert total == 128 * (32000 * 4 + 4 * 112 * 112 * 3 + 4 * 4)  # ≈ 35.6 MiB at max batch
    # an engine may report outputs as [B, 1]: the buffer follows the engine's shape
    odd = (TensorSpec("p", OUTPUT, "float16", (-1, 1)),)
    assert plan_buffers(odd, 3)[0].nbytes == 6
    with pytest.raises(ValueError):
        plan_buffers(contract_io(CONTRACT), 0)


def test_check_io_refuses_mismatches() -> None:
    good = contract_io(CONTRACT)
    check_io(CONTRACT, good, "m")
    as_column = tuple(replace(s, shape=(-1, 1)) if s.mode == OUTPUT else s for s in good)
    check_io(CONTRACT, as_column, "m")  # [B, 1] outputs are accepted
    cases = {
        "fixed batch": tuple(
            replace(s, shape=(2, *s.row_shape)) if s.name == "audio" else s for s in good
        ),
        "wrong dtype": tuple(replace(s, dtype="float32") if s.name == "faces" else s for s in good),
        "wrong crop": tuple(
            replace(s, shape=(-1, 4, 96, 96, 3)) if s.name == "faces" else s for s in good
        ),
        "missing": good[:-1],
        "renamed": tuple(replace(s, name="logits") if s.name == "p_fused" else s for s in good),
    }
    for what, specs in cases.items():
        with pytest.raises(ContractError, match="does not follow its input contract"):
            check_io(CONTRACT, specs, what)


# --- engine manifest and compatibility ---------------------------------------------------


def _engine_manifest(tmp_path: Path, **changes: object) -> tuple[Path, EngineManifest]:
    plan = tmp_path / "model.plan"
    plan.write_bytes(b"not really an engine")
    m = EngineManifest(
        contract=CONTRACT,
        plan_file=plan.name,
        plan_sha256=sha256_file(plan),
        onnx_file="model.onnx",
        onnx_sha256="ab" * 32,
        tensorrt_version="10.13.0.35",
        gpu_name="NVIDIA H100 80GB HBM3",
        compute_capability="9.0",
        precision="fp16",
        min_batch=1,
        opt_batch=32,
        max_batch=128,
        workspace_mib=2048,
        io=tuple(s.to_dict() for s in contract_io(CONTRACT)),
    )
    m = replace(m, **changes)  # type: ignore[arg-type]
    write_manifest(plan, m)
    return plan, m


H100 = RuntimeInfo("10.13.0.35", "NVIDIA H100 80GB HBM3", "9.0")


def test_engine_manifest_round_trip(tmp_path: Path) -> None:
    plan, m = _engine_manifest(tmp_path)
    assert manifest_path(plan).name == "model.plan.json"
    assert find_manifest(plan) == manifest_path(plan)
    loaded = load_engine_manifest(plan)
    assert loaded == m
    data = json.loads(manifest_path(plan).read_text())
    assert data["tensorrt_version"] == "10.13.0.35"
    assert data["gpu"] == {"name": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0"}
    assert data["profile"] == {"min": 1, "opt": 32, "max": 128}
    assert data["onnx"]["sha256"] == "ab" * 32
    assert [TensorSpec.from_dict(t) for t in data["io"]] == list(contract_io(CONTRACT))


def test_engine_for_same_machine_is_accepted(tmp_path: Path) -> None:
    _, m = _engine_manifest(tmp_path)
    check_engine_compat(m, H100)


def test_engine_for_other_tensorrt_version_is_refused(tmp_path: Path) -> None:
    _, m = _engine_manifest(tmp_path, tensorrt_version="10.3.0.26")
    with pytest.raises(BackendUnavailableError) as err:
        check_engine_compat(m, H100)
    msg = str(err.value)
    assert "TensorRT 10.3.0.26" in msg and "10.13.0.35" in msg
    assert "build-engine model.onnx --out model.plan" in msg


def test_engine_for_other_gpu_architecture_is_refused(tmp_path: Path) -> None:
    _, m = _engine_manifest(tmp_path, gpu_name="NVIDIA A100-SXM4-80GB", compute_capability="8.0")
    with pytest.raises(BackendUnavailableError, match=r"compute capability 8\.0.*rebuild"):
        check_engine_compat(m, H100)


def test_same_architecture_other_card_is_allowed_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _, m = _engine_manifest(tmp_path, gpu_name="NVIDIA H100 PCIe")
    with caplog.at_level(logging.WARNING, logger="engines.trt_plan"):
        check_engine_compat(m, H100)
    assert "built on NVIDIA H100 PCIe" in caplog.text


def test_replaced_plan_or_bad_manifest_is_refused(tmp_path: Path) -> None:
    plan, _ = _engine_manifest(tmp_path)
    plan.write_bytes(b"another engine")
    with pytest.raises(ModelFormatError, match="does not match its manifest"):
        load_engine_manifest(plan)
    manifest_path(plan).write_text("{not json")
    with pytest.raises(ModelFormatError, match="cannot read manifest"):
        load_engine_manifest(plan)
    manifest_path(plan).unlink()
    with pytest.raises(ModelFormatError, match="build-engine"):
        load_engine_manifest(plan)


def test_manifest_with_unknown_contract_version_is_refused(tmp_path: Path) -> None:
    plan, _ = _engine_manifest(tmp_path)
    data = json.loads(manifest_path(plan).read_text())
    data["contract"]["version"] = 99
    manifest_path(plan).write_text(json.dumps(data))
    with pytest.raises(ContractError, match="version 99 is not supported"):
        load_engine_manifest(plan)
    data["contract"]["version"] = 1
    data["manifest_version"] = 7
    manifest_path(plan).write_text(json.dumps(data))
    with pytest.raises(ModelFormatError, match="manifest version 7"):
        load_engine_manifest(plan)


def test_build_engine_command_without_tensorrt(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from engines.loader import SystemProbe
    from engines.toy import make_toy_onnx
    from monitor.cli import main

    if SystemProbe().has_tensorrt():
        pytest.skip("TensorRT is installed here")
    onnx_path = make_toy_onnx(CONTRACT, tmp_path / "m.onnx")
    assert main(["build-engine", str(onnx_path), "--out", str(tmp_path / "m.plan")]) == 2
    err = capsys.readouterr().err
    assert "TensorRT Python library is not available" in err
    assert "nvcr.io/nvidia/tensorrt" in err
    assert not (tmp_path / "m.plan").exists()
