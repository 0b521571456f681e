"""onnxruntime backend, backend selection and refusals, on a tiny hand-built ONNX model."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest

from engines import load_backend
from engines.loader import Artifacts, SystemProbe, choose_backend, find_artifacts
from engines.manifest import manifest_path
from engines.ort_backend import OnnxRuntimeBackend, choose_providers
from engines.toy import make_toy_onnx, toy_scores
from monitor.contract import HEAD_OUTPUTS, InputContract
from monitor.errors import BackendUnavailableError, ContractError, ModelFormatError

# A small contract keeps the toy model and its inputs tiny.
SMALL = InputContract(window_seconds=0.5, hop_seconds=0.5, k_crops=2, crop_size=32)


@pytest.fixture
def toy(tmp_path: Path) -> Path:
    return make_toy_onnx(SMALL, tmp_path / "model.onnx")


def batch(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    audio = (rng.standard_normal((n, SMALL.window_samples)) * 0.3).astype(np.float32)
    faces = rng.integers(0, 256, (n, *SMALL.faces_shape), dtype=np.uint8)
    return audio, faces


@dataclass(frozen=True)
class FixedProbe:
    tensorrt: bool = False
    torch: bool = True
    cuda: bool = False

    def has_tensorrt(self) -> bool:
        return self.tensorrt

    def has_torch(self) -> bool:
        return self.torch

    def torch_cuda(self) -> bool:
        return self.cuda


# --- onnxruntime backend -----------------------------------------------------------------


def test_onnxruntime_scores_match_the_model(toy: Path) -> None:
    backend = OnnxRuntimeBackend(toy, SMALL)
    audio, faces = batch(5)
    scores = backend.score(audio, faces)
    assert len(scores) == 5
    assert scores.sync is not None  # the contract names the sync output
    heads = (scores.fused, scores.audio, scores.visual, scores.sync)
    for got, want in zip(heads, toy_scores(audio, faces), strict=True):
        assert got.dtype == np.float32 and got.shape == (5,)
        np.testing.assert_allclose(got, want, atol=1e-6)
    assert backend.device == "cpu" and backend.providers == ("CPUExecutionProvider",)
    one = backend.score(audio[:1], faces[:1])  # batch of one through the dynamic axis
    assert one.row(0) == pytest.approx(scores.row(0), abs=1e-6)
    # pool threads sleep between calls instead of spinning on cores the live stages share
    opts = backend._session.get_session_options()
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    backend.close()


def test_a_model_exported_before_the_sync_output_loads_and_reports_it_absent(
    tmp_path: Path,
) -> None:
    three = replace(SMALL, output_names=HEAD_OUTPUTS)  # a manifest from before p_sync
    assert not three.has_sync and SMALL.has_sync
    backend = load_backend(make_toy_onnx(three, tmp_path / "old.onnx"), "onnxruntime")
    assert backend.contract.output_names == ("p_fused", "p_audio", "p_visual")
    audio, faces = batch(3)
    scores = backend.score(audio, faces)
    assert scores.sync is None and scores.sync_at(0) is None
    np.testing.assert_allclose(scores.fused, toy_scores(audio, faces)[0], atol=1e-6)
    backend.close()


def test_bad_batches_are_refused_before_the_runtime(toy: Path) -> None:
    backend = OnnxRuntimeBackend(toy, SMALL)
    audio, faces = batch(2)
    with pytest.raises(ContractError, match="audio batch has shape"):
        backend.score(audio[:, :-1], faces)
    with pytest.raises(ContractError, match="faces must be uint8"):
        backend.score(audio, faces.astype(np.float32))
    with pytest.raises(ContractError, match="!="):
        backend.score(audio, faces[:1])


def test_cuda_provider_choice() -> None:
    assert choose_providers("cpu", ["CUDAExecutionProvider", "CPUExecutionProvider"]) == [
        "CPUExecutionProvider"
    ]
    assert choose_providers("auto", ["CUDAExecutionProvider", "CPUExecutionProvider"])[0] == (
        "CUDAExecutionProvider"
    )
    assert choose_providers("auto", ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    with pytest.raises(BackendUnavailableError, match="onnxruntime-gpu"):
        choose_providers("cuda:0", ["CPUExecutionProvider"])


def test_corrupt_and_foreign_files_are_refused(tmp_path: Path, toy: Path) -> None:
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x08\x07garbage that is not a protobuf" * 10)
    with pytest.raises(ModelFormatError, match="cannot load this file"):
        OnnxRuntimeBackend(junk, SMALL)
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(toy.read_bytes()[:200])
    with pytest.raises(ModelFormatError):
        OnnxRuntimeBackend(truncated, SMALL)
    with pytest.raises(ModelFormatError, match="not found"):
        OnnxRuntimeBackend(tmp_path / "missing.onnx", SMALL)


def test_model_not_following_its_contract_is_refused(tmp_path: Path) -> None:
    other = InputContract(window_seconds=0.5, hop_seconds=0.5, k_crops=2, crop_size=48)
    path = make_toy_onnx(other, tmp_path / "m.onnx")
    with pytest.raises(ContractError, match=r"'faces' has shape \[-1, 2, 48, 48, 3\]"):
        OnnxRuntimeBackend(path, SMALL)


# --- loading through the manifest ---------------------------------------------------------


def test_load_backend_reads_the_manifest(toy: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="engines.loader"):
        backend = load_backend(toy, probe=FixedProbe())
    assert backend.name == "onnxruntime" and backend.contract == SMALL
    assert "backend onnxruntime" in caplog.text and "ONNX file is present" in caplog.text
    audio, faces = batch(3)
    np.testing.assert_allclose(
        backend.score(audio, faces).fused, toy_scores(audio, faces)[0], atol=1e-6
    )


def test_load_backend_refuses_other_contracts_and_versions(toy: Path) -> None:
    runtime = InputContract(window_seconds=1.0, hop_seconds=0.5, k_crops=2, crop_size=32)
    with pytest.raises(ContractError, match="window_seconds: runtime 1.0 vs model"):
        load_backend(toy, contract=runtime, probe=FixedProbe())
    data = json.loads(manifest_path(toy).read_text())
    data["contract"]["version"] = 2
    manifest_path(toy).write_text(json.dumps(data))
    with pytest.raises(ContractError, match="version 2 is not supported"):
        load_backend(toy, probe=FixedProbe())


def test_onnx_without_manifest_or_with_a_stale_one_is_refused(tmp_path: Path, toy: Path) -> None:
    bare = make_toy_onnx(SMALL, tmp_path / "bare.onnx", with_manifest=False)
    with pytest.raises(ModelFormatError, match="no manifest beside the ONNX file"):
        load_backend(bare, probe=FixedProbe())
    toy.write_bytes(toy.read_bytes() + b"\x00")  # file changed after export
    with pytest.raises(ModelFormatError, match="does not match its manifest"):
        load_backend(toy, probe=FixedProbe())


def test_slim_runtime_does_not_import_torch(toy: Path) -> None:
    code = (
        "import sys, numpy as np, engines\n"
        f"b = engines.load_backend({str(toy)!r}, device='cpu')\n"
        f"s = b.score(np.zeros((2, {SMALL.window_samples}), np.float32), "
        f"np.zeros((2, {', '.join(map(str, SMALL.faces_shape))}), np.uint8))\n"
        "assert len(s) == 2, s\n"
        "assert 'torch' not in sys.modules and 'tensorrt' not in sys.modules, 'heavy import'\n"
        "print(b.name)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "onnxruntime"


# --- selection rules (library presence faked, files real) ---------------------------------


def _files(tmp_path: Path, *names: str) -> Artifacts:
    for n in names:
        (tmp_path / n).write_bytes(b"x")
    return find_artifacts(tmp_path / names[0])


def test_siblings_are_found_by_stem(tmp_path: Path) -> None:
    found = _files(tmp_path, "det.onnx", "det.plan", "det.pt", "other.plan")
    assert found == Artifacts(
        plan=tmp_path / "det.plan", onnx=tmp_path / "det.onnx", checkpoint=tmp_path / "det.pt"
    )
    folder = find_artifacts(tmp_path)  # a folder: model.* first, else the only one of a kind
    assert folder.onnx == tmp_path / "det.onnx" and folder.plan is None  # two plans: ambiguous
    with pytest.raises(ModelFormatError, match="unknown model file type"):
        _files(tmp_path, "det.bin")
    with pytest.raises(ModelFormatError, match="no such model"):
        find_artifacts(tmp_path / "nothing.onnx")


def test_onnx_manifest_points_at_its_checkpoint(tmp_path: Path) -> None:
    onnx_path = make_toy_onnx(SMALL, tmp_path / "exported.onnx")
    data = json.loads(manifest_path(onnx_path).read_text())
    data["source"]["checkpoint"] = "best.pt"
    manifest_path(onnx_path).write_text(json.dumps(data))
    assert find_artifacts(onnx_path).checkpoint is None  # named but absent
    (tmp_path / "best.pt").write_bytes(b"x")
    assert find_artifacts(onnx_path).checkpoint == tmp_path / "best.pt"


def test_auto_rule(tmp_path: Path) -> None:
    everything = _files(tmp_path, "m.onnx", "m.plan", "m.pt")
    pick = lambda probe, device="auto": choose_backend(everything, "auto", device, probe)  # noqa: E731
    assert pick(FixedProbe(tensorrt=True, cuda=True)).backend == "tensorrt"
    c = pick(FixedProbe(tensorrt=False, cuda=True))
    assert (c.backend, c.device, c.path) == ("torch", "cuda", str(tmp_path / "m.pt"))
    c = pick(FixedProbe(tensorrt=False, cuda=False))
    assert (c.backend, c.path) == ("onnxruntime", str(tmp_path / "m.onnx"))
    assert "no usable engine" in c.reason
    c = pick(FixedProbe(tensorrt=True, cuda=True), device="cpu")
    assert c.backend == "onnxruntime" and "cpu asked for" in c.reason
    onnx_only = Artifacts(onnx=tmp_path / "m.onnx")
    assert choose_backend(onnx_only, probe=FixedProbe(tensorrt=True, cuda=True)).backend == (
        "onnxruntime"
    )
    ckpt_only = Artifacts(checkpoint=tmp_path / "m.pt")
    c = choose_backend(ckpt_only, probe=FixedProbe())
    assert (c.backend, c.device) == ("torch", "cpu")
    with pytest.raises(BackendUnavailableError, match="export an ONNX file"):
        choose_backend(ckpt_only, probe=FixedProbe(torch=False))
    plan_only = Artifacts(plan=tmp_path / "m.plan")
    with pytest.raises(BackendUnavailableError, match="no backend can run"):
        choose_backend(plan_only, probe=FixedProbe())


def test_explicit_backends_say_what_is_missing(tmp_path: Path) -> None:
    onnx_only = Artifacts(onnx=tmp_path / "m.onnx")
    with pytest.raises(BackendUnavailableError, match="build-engine"):
        choose_backend(onnx_only, "tensorrt", probe=FixedProbe(tensorrt=True))
    with_plan = Artifacts(plan=tmp_path / "m.plan", onnx=tmp_path / "m.onnx")
    with pytest.raises(BackendUnavailableError, match=r"deepfake-monitor\[tensorrt\]"):
        choose_backend(with_plan, "tensorrt", probe=FixedProbe(tensorrt=False))
    with pytest.raises(BackendUnavailableError, match="checkpoint"):
        choose_backend(onnx_only, "torch", probe=FixedProbe())
    ckpt = Artifacts(checkpoint=tmp_path / "m.pt")
    with pytest.raises(BackendUnavailableError, match="sees no CUDA GPU"):
        choose_backend(ckpt, "torch", "cuda", probe=FixedProbe(cuda=False))
    with pytest.raises(BackendUnavailableError, match="needs an ONNX file"):
        choose_backend(ckpt, "onnxruntime", probe=FixedProbe())
    with pytest.raises(BackendUnavailableError, match="triton://"):
        choose_backend(onnx_only, "triton", probe=FixedProbe())
    with pytest.raises(BackendUnavailableError, match="unknown backend"):
        choose_backend(onnx_only, "openvino", probe=FixedProbe())
    url = find_artifacts("triton://gpu-box:8001/deepfake_detector")
    assert choose_backend(url, probe=FixedProbe()).backend == "triton"
    with pytest.raises(BackendUnavailableError, match="only be served by the triton backend"):
        choose_backend(url, "onnxruntime", probe=FixedProbe())


def test_this_machine_has_no_tensorrt_so_auto_never_picks_it(tmp_path: Path, toy: Path) -> None:
    (tmp_path / "model.plan").write_bytes(b"an engine from elsewhere")
    probe = SystemProbe()
    if probe.has_tensorrt():
        pytest.skip("TensorRT is installed here")
    backend = load_backend(toy, device="cpu")
    assert backend.name == "onnxruntime"
    with pytest.raises(BackendUnavailableError, match="TensorRT"):
        load_backend(tmp_path / "model.plan", backend="tensorrt")
