"""GPU backends: torch fp16 + CUDA graphs, onnxruntime CUDA, TensorRT build and runtime.

Skipped without an NVIDIA GPU (marker gpu) or the TensorRT libraries (marker tensorrt).
Every backend that can run is compared with the torch CPU reference on the same windows.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest

from engines.parity import natural_inputs, random_inputs
from monitor.contract import InputContract

CONTRACT = InputContract(window_seconds=1.0, hop_seconds=0.5, k_crops=2, crop_size=64)
FP32_TOLERANCE = 1e-3  # |p| vs torch CPU for fp32 GPU runtimes (TF32 convolutions included)
FP16_TOLERANCE = 2e-2  # |p| vs torch CPU for fp16 runtimes


@dataclass(frozen=True)
class Models:
    checkpoint: Path
    onnx: Path
    fp16_onnx: Path


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Models:
    torch = pytest.importorskip("torch")
    from engines.export import export_checkpoint
    from train.checkpoint import save_checkpoint
    from train.model import ModelConfig, build_model

    folder = tmp_path_factory.mktemp("gpu_models")
    torch.manual_seed(0)
    cfg = ModelConfig.demo()
    ckpt = folder / "model.pt"
    save_checkpoint(ckpt, build_model(CONTRACT, cfg), CONTRACT, cfg)
    result = export_checkpoint(ckpt, folder / "model.onnx", fp16=True)
    assert result.fp16_path is not None
    return Models(ckpt, result.onnx_path, result.fp16_path)


@pytest.fixture(scope="module")
def windows() -> tuple[np.ndarray, np.ndarray]:
    ra, rf = random_inputs(CONTRACT, 5)
    na, nf = natural_inputs(CONTRACT, 6)
    return np.concatenate([ra, na]), np.concatenate([rf, nf])  # 11 windows: not a power of 2


def reference(models: Models, windows: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    from engines.torch_backend import TorchBackend

    s = TorchBackend.from_checkpoint(models.checkpoint, device="cpu").score(*windows)
    return np.stack([s.fused, s.audio, s.visual])


def assert_close(
    backend: object, want: np.ndarray, windows: tuple[np.ndarray, np.ndarray], tol: float
) -> None:
    s = backend.score(*windows)  # type: ignore[attr-defined]
    got = np.stack([s.fused, s.audio, s.visual])
    assert got.shape == want.shape
    assert np.max(np.abs(got - want)) <= tol, np.max(np.abs(got - want))


@pytest.mark.gpu
def test_torch_cuda_graphs_agree_with_cpu(
    models: Models, windows: tuple[np.ndarray, np.ndarray]
) -> None:
    from engines.torch_backend import TorchBackend

    want = reference(models, windows)
    backend = TorchBackend.from_checkpoint(models.checkpoint, device="cuda", max_graph_batch=4)
    assert backend.graph_sizes == (1, 2, 4)
    assert_close(backend, want, windows, FP16_TOLERANCE)  # 11 rows: replays of 4, 4, 3 -> 4
    assert sorted(backend._graphs) == [4]
    assert_close(backend, want[:, :1], (windows[0][:1], windows[1][:1]), FP16_TOLERANCE)
    assert sorted(backend._graphs) == [1, 4]
    eager = TorchBackend.from_checkpoint(
        models.checkpoint, device="cuda", fp16=False, cuda_graphs=False
    )
    assert_close(eager, want, windows, FP32_TOLERANCE)
    backend.close()


@pytest.mark.gpu
def test_onnxruntime_cuda_agrees(models: Models, windows: tuple[np.ndarray, np.ndarray]) -> None:
    import onnxruntime as ort

    from engines.ort_backend import OnnxRuntimeBackend

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("this onnxruntime has no CUDA execution provider")
    want = reference(models, windows)
    backend = OnnxRuntimeBackend(models.onnx, CONTRACT, device="cuda")
    assert backend.device == "cuda"
    assert_close(backend, want, windows, FP32_TOLERANCE)
    assert_close(
        OnnxRuntimeBackend(models.fp16_onnx, CONTRACT, device="cuda"), want, windows, FP16_TOLERANCE
    )


@pytest.mark.gpu
@pytest.mark.tensorrt
def test_tensorrt_build_manifest_and_scores(
    models: Models, windows: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    from engines import load_backend
    from engines.manifest import load_engine_manifest, manifest_path
    from engines.trt_build import BuildOptions, build_engine
    from engines.trt_common import runtime_info
    from monitor.errors import BackendUnavailableError

    cache = tmp_path / "timing.cache"
    plan = tmp_path / "model.plan"
    m = build_engine(
        models.onnx, plan, BuildOptions(max_batch=8, timing_cache=cache, workspace_mib=512)
    )
    here = runtime_info()
    assert (m.tensorrt_version, m.gpu_name, m.compute_capability) == (
        here.tensorrt_version,
        here.gpu_name,
        here.compute_capability,
    )
    assert (m.min_batch, m.opt_batch, m.max_batch, m.precision) == (1, 8, 8, "fp32")
    assert load_engine_manifest(plan) == m and cache.stat().st_size > 0
    want = reference(models, windows)
    backend = load_backend(plan, backend="tensorrt", workers=2)
    assert backend.name == "tensorrt"
    assert_close(backend, want, windows, FP32_TOLERANCE)  # 11 rows > max batch 8: split

    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(3):
                assert_close(backend, want, windows, FP32_TOLERANCE)
        except BaseException as exc:  # collected and re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    backend.close()

    fp16_plan = tmp_path / "model16.plan"
    m16 = build_engine(models.fp16_onnx, fp16_plan, BuildOptions(max_batch=16, timing_cache=cache))
    assert m16.precision == "fp16"
    assert_close(load_backend(fp16_plan, backend="tensorrt"), want, windows, FP16_TOLERANCE)

    data = json.loads(manifest_path(plan).read_text())
    data["tensorrt_version"] = "9.0.0"
    manifest_path(plan).write_text(json.dumps(data))
    with pytest.raises(BackendUnavailableError, match="rebuild it here"):
        load_backend(plan, backend="tensorrt")


@pytest.mark.gpu
@pytest.mark.tensorrt
def test_tensorrt_parser_errors_are_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import onnx
    from onnx import TensorProto, helper

    from engines.manifest import OnnxManifest, sha256_file, write_manifest
    from engines.trt_build import build_engine
    from monitor.errors import ModelFormatError

    # a graph using an op from a domain TensorRT does not know
    node = helper.make_node("Mystery", ["audio"], ["p_fused"], domain="com.example")
    graph = helper.make_graph(
        [node],
        "bad",
        [
            helper.make_tensor_value_info(
                "audio", TensorProto.FLOAT, ["batch", CONTRACT.window_samples]
            )
        ],
        [helper.make_tensor_value_info("p_fused", TensorProto.FLOAT, ["batch"])],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("com.example", 1)]
    )
    path = tmp_path / "bad.onnx"
    onnx.save(model, path)
    write_manifest(
        path,
        OnnxManifest(replace(CONTRACT), path.name, sha256_file(path), 18, "fp32", "", "", None),
    )
    with (
        caplog.at_level(logging.ERROR, logger="engines.trt_build"),
        pytest.raises(ModelFormatError, match="parser errors"),
    ):
        build_engine(path, tmp_path / "bad.plan")
    assert "ONNX parser error 1/" in caplog.text
