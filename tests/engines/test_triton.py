"""Triton: the exported model repository, and the triton backend against a real gRPC server.

No Triton server runs here, so the server side is a small stand-in speaking Triton's own
gRPC protocol (tritonclient's service definitions): it serves the exported config.pbtxt
and runs the exported ONNX file with onnxruntime, so requests, config parsing and
responses all go through the real client library.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent import futures
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engines import load_backend
from engines.iospec import contract_io
from engines.manifest import EngineManifest, load_onnx_manifest, sha256_file, write_manifest
from engines.toy import make_toy_onnx, toy_scores
from engines.triton_backend import TritonTarget, request_tensors
from engines.triton_repo import (
    CONTRACT_PARAMETER,
    TritonOptions,
    contract_from_config,
    export_triton,
    render_config,
)
from monitor.contract import InputContract
from monitor.errors import BackendUnavailableError, ContractError, ModelFormatError

SMALL = InputContract(window_seconds=0.5, hop_seconds=0.5, k_crops=2, crop_size=32)
NAME = "deepfake_detector"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    onnx_path = make_toy_onnx(SMALL, tmp_path / "export" / "detector.onnx")
    export_triton(onnx_path, tmp_path / "repo", TritonOptions(max_batch=16))
    return tmp_path / "repo"


def parse_config(path: Path) -> Any:
    """config.pbtxt through Triton's own ModelConfig protobuf (rejects any syntax error)."""
    pytest.importorskip("tritonclient.grpc")
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def batch(n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(n)
    audio = (rng.standard_normal((n, SMALL.window_samples)) * 0.2).astype(np.float32)
    return audio, rng.integers(0, 256, (n, *SMALL.faces_shape), dtype=np.uint8)


def test_repository_layout(repo: Path) -> None:
    model_dir = repo / NAME
    assert (model_dir / "config.pbtxt").is_file()
    assert (model_dir / "1" / "model.onnx").is_file()
    manifest = load_onnx_manifest(model_dir / "1" / "model.onnx")  # copied, checksum still holds
    assert manifest.contract == SMALL
    readme = (repo / "README.md").read_text()
    assert "tritonserver --model-repository=/models" in readme
    assert f"triton://<host>:8001/{NAME}" in readme
    assert "max_batch_size 16" in readme


def test_config_content(repo: Path) -> None:
    cfg = parse_config(repo / NAME / "config.pbtxt")
    from tritonclient.grpc import model_config_pb2 as mc

    assert cfg.name == NAME and cfg.platform == "onnxruntime_onnx"
    assert cfg.max_batch_size == 16
    inputs = {i.name: (mc.DataType.Name(i.data_type), list(i.dims)) for i in cfg.input}
    assert inputs == {
        "audio": ("TYPE_FP32", [SMALL.window_samples]),
        "faces": ("TYPE_UINT8", [2, 32, 32, 3]),
    }
    for out in cfg.output:  # [B] tensors: clients see [B, 1], the model [B]
        assert mc.DataType.Name(out.data_type) == "TYPE_FP32"
        assert list(out.dims) == [1] and out.HasField("reshape") and list(out.reshape.shape) == []
    assert [o.name for o in cfg.output] == list(SMALL.output_names)
    assert list(cfg.dynamic_batching.preferred_batch_size) == [8]  # 32 > max_batch dropped
    assert cfg.dynamic_batching.max_queue_delay_microseconds == 2000
    assert [(g.count, mc.ModelInstanceGroup.Kind.Name(g.kind)) for g in cfg.instance_group] == [
        (1, "KIND_GPU")
    ]
    contract_json = cfg.parameters[CONTRACT_PARAMETER].string_value
    assert InputContract.from_dict(json.loads(contract_json)) == SMALL


def test_requests_match_the_config(repo: Path) -> None:
    cfg = parse_config(repo / NAME / "config.pbtxt")
    from tritonclient.grpc import model_config_pb2 as mc

    audio, faces = batch(3)
    tensors = request_tensors(SMALL, audio, faces)
    served = {i.name: i for i in cfg.input}
    assert [t.name for t in tensors] == [i.name for i in cfg.input]
    for t in tensors:
        assert "TYPE_" + t.datatype == mc.DataType.Name(served[t.name].data_type)
        assert list(t.shape[1:]) == list(served[t.name].dims) and t.shape[0] == 3
        assert t.shape[0] <= cfg.max_batch_size


def test_bad_urls_and_configs() -> None:
    assert TritonTarget.parse("triton://gpu:9001/det/3") == TritonTarget("gpu", 9001, "det", "3")
    assert TritonTarget.parse("triton://gpu/det").address == "gpu:8001"
    for bad in ("http://gpu:8001/det", "triton://gpu:8001/", "triton://gpu:8001/a/b/c"):
        with pytest.raises(BackendUnavailableError, match="bad Triton URL"):
            TritonTarget.parse(bad)
    with pytest.raises(ModelFormatError, match="export-triton"):
        contract_from_config({"parameters": {}}, "x")
    with pytest.raises(ValueError):
        TritonOptions(kind="tpu")
    with pytest.raises(ValueError):
        TritonOptions(name="my model")


def test_engine_repository(tmp_path: Path) -> None:
    plan = tmp_path / "model.plan"
    plan.write_bytes(b"engine bytes")
    manifest = EngineManifest(
        contract=SMALL,
        plan_file=plan.name,
        plan_sha256=sha256_file(plan),
        onnx_file="model.onnx",
        onnx_sha256="0" * 64,
        tensorrt_version="10.13.0.35",
        gpu_name="NVIDIA L4",
        compute_capability="8.9",
        precision="fp16",
        min_batch=1,
        opt_batch=32,
        max_batch=64,
        workspace_mib=1024,
        io=tuple(s.to_dict() for s in contract_io(SMALL)),
    )
    write_manifest(plan, manifest)
    with pytest.raises(ModelFormatError, match="exceeds the engine profile's max batch 64"):
        export_triton(plan, tmp_path / "repo", TritonOptions(max_batch=128))
    with pytest.raises(ModelFormatError, match="--kind gpu"):
        export_triton(plan, tmp_path / "repo", TritonOptions(max_batch=64, kind="cpu"))
    model_dir = export_triton(plan, tmp_path / "repo", TritonOptions(max_batch=64))
    assert (model_dir / "1" / "model.plan").read_bytes() == b"engine bytes"
    assert 'platform: "tensorrt_plan"' in (model_dir / "config.pbtxt").read_text()
    readme = (tmp_path / "repo" / "README.md").read_text()
    assert "TensorRT version is 10.13.0.35" in readme and "compute capability 8.9" in readme


# --- a real gRPC round trip ----------------------------------------------------------------


@pytest.fixture
def server(repo: Path) -> Iterator[tuple[str, list[int]]]:
    """(triton:// URL, batch sizes the server has scored)."""
    grpc = pytest.importorskip("grpc")
    pytest.importorskip("tritonclient.grpc")
    import onnxruntime as ort
    from google.protobuf import json_format  # noqa: F401  (tritonclient needs it)
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    config = parse_config(repo / NAME / "config.pbtxt")
    session = ort.InferenceSession(str(repo / NAME / "1" / "model.onnx"))
    dtypes = {"FP32": np.float32, "UINT8": np.uint8}
    calls: list[int] = []

    class Servicer(service_pb2_grpc.GRPCInferenceServiceServicer):
        def ServerLive(self, request: Any, context: Any) -> Any:
            return service_pb2.ServerLiveResponse(live=True)

        def ModelReady(self, request: Any, context: Any) -> Any:
            return service_pb2.ModelReadyResponse(ready=request.name == NAME)

        def ModelConfig(self, request: Any, context: Any) -> Any:
            return service_pb2.ModelConfigResponse(config=config)

        def ModelInfer(self, request: Any, context: Any) -> Any:
            feeds = {
                inp.name: np.frombuffer(raw, dtype=dtypes[inp.datatype]).reshape(tuple(inp.shape))
                for inp, raw in zip(request.inputs, request.raw_input_contents, strict=True)
            }
            calls.append(len(next(iter(feeds.values()))))
            wanted = [o.name for o in request.outputs]
            results = session.run(wanted, feeds)
            response = service_pb2.ModelInferResponse(model_name=request.model_name, id=request.id)
            for name, arr in zip(wanted, results, strict=True):
                served = arr.astype(np.float32).reshape(-1, 1)  # the [B, 1] the config promises
                out = response.outputs.add(name=name, datatype="FP32")
                out.shape.extend(served.shape)
                response.raw_output_contents.append(served.tobytes())
            return response

    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(Servicer(), srv)
    port = srv.add_insecure_port("127.0.0.1:0")
    srv.start()
    try:
        yield f"triton://127.0.0.1:{port}/{NAME}", calls
    finally:
        srv.stop(0)


def test_triton_backend_round_trip(server: tuple[str, list[int]]) -> None:
    url, calls = server
    backend = load_backend(url)
    assert backend.name == "triton" and backend.contract == SMALL
    audio, faces = batch(5)
    scores = backend.score(audio, faces)
    heads = (scores.fused, scores.audio, scores.visual, scores.sync)
    for got, want in zip(heads, toy_scores(audio, faces), strict=True):
        assert got.shape == (5,)
        np.testing.assert_allclose(got, want, atol=1e-6)
    assert calls == [5]  # one request per batch; Triton does the cross-client batching
    with pytest.raises(ContractError):
        backend.score(audio[:, :100], faces)
    assert calls == [5]  # refused before it was sent
    big_audio, big_faces = batch(20)  # above the model's max_batch_size of 16: split
    big = backend.score(big_audio, big_faces)
    assert calls == [5, 16, 4] and len(big) == 20
    np.testing.assert_allclose(big.visual, toy_scores(big_audio, big_faces)[2], atol=1e-6)
    with pytest.raises(ContractError, match="window_seconds"):
        load_backend(url, contract=replace(SMALL, window_seconds=1.0))
    backend.close()


def test_triton_backend_reports_unknown_model_and_dead_server(
    server: tuple[str, list[int]],
) -> None:
    with pytest.raises(BackendUnavailableError, match="no ready model 'nope'"):
        load_backend(server[0].rsplit("/", 1)[0] + "/nope")
    with pytest.raises(BackendUnavailableError, match="cannot reach Triton"):
        load_backend("triton://127.0.0.1:1/deepfake_detector")


def test_render_config_is_deterministic() -> None:
    opts = TritonOptions()
    assert render_config(SMALL, "onnxruntime_onnx", opts) == render_config(
        SMALL, "onnxruntime_onnx", opts
    )


def test_export_triton_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from monitor.cli import main

    onnx_path = make_toy_onnx(SMALL, tmp_path / "m.onnx")
    args = ["export-triton", str(onnx_path), "--out", str(tmp_path / "repo"), "--name", "det"]
    assert main([*args, "--max-batch", "64", "--preferred-batch", "4", "--kind", "cpu"]) == 0
    assert "Triton model 'det'" in capsys.readouterr().out
    text = (tmp_path / "repo" / "det" / "config.pbtxt").read_text()
    assert "max_batch_size: 64" in text and "preferred_batch_size: [ 4 ]" in text
    assert "kind: KIND_CPU" in text
    assert main([*args, "--name", "bad name"]) == 2
    assert "use letters, digits" in capsys.readouterr().err
