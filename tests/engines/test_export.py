"""`deepfake-monitor export` on a real (demo preset, random weights) detector checkpoint.

One export (fp32 + fp16, through the CLI) is shared by the module; tests inspect the
files, the manifest and the parity figures, and compare the torch and onnxruntime
backends on the same windows.
"""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

# The shared export (torch import, model build, fp32 + fp16 export, parity) takes ~10-30 s.
pytestmark = pytest.mark.slow

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from engines import load_backend  # noqa: E402
from engines.export import FP16_PARITY_TOLERANCE, PARITY_TOLERANCE, export_checkpoint  # noqa: E402
from engines.manifest import load_onnx_manifest, manifest_path, sha256_file  # noqa: E402
from engines.parity import natural_inputs, random_inputs  # noqa: E402
from monitor.cli import main  # noqa: E402
from monitor.contract import InputContract  # noqa: E402
from monitor.errors import ContractError, ExportError  # noqa: E402
from tests.support.media_factory import write_clip  # noqa: E402

# Smaller windows than the product default keep the export and every forward pass quick.
CONTRACT = InputContract(window_seconds=1.0, hop_seconds=0.5, k_crops=2, crop_size=64)
AGREEMENT_TOLERANCE = 1e-4  # max |p| difference between the torch and onnxruntime backends


@dataclass(frozen=True)
class Exported:
    checkpoint: Path
    onnx: Path
    fp16: Path
    stdout: str


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Exported:
    from train.checkpoint import save_checkpoint
    from train.model import ModelConfig, build_model

    folder = tmp_path_factory.mktemp("export")
    torch.manual_seed(0)
    cfg = ModelConfig.demo().replace(visual_stride=2)  # the crop slice must export too
    ckpt = folder / "detector.pt"
    save_checkpoint(ckpt, build_model(CONTRACT, cfg), CONTRACT, cfg, extra={"epoch": 0})
    out = folder / "detector.onnx"
    clip = write_clip(folder / "call.mp4", seconds=1.5, size=(96, 72))  # real decode + crops
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(["export", str(ckpt), "--out", str(out), "--fp16", "--clip", str(clip)])
    assert rc == 0
    return Exported(ckpt, out, folder / "detector.fp16.onnx", buf.getvalue())


def test_cli_states_the_parity(exported: Exported) -> None:
    text = exported.stdout
    assert f"{exported.onnx}: fp32, opset 18" in text
    assert "parity vs torch cpu fp32 on 18 windows" in text  # 8 random, 8 natural, 2 clip
    assert "<= 0.001" in text and "<= 0.02" in text
    assert f"manifest: {exported.onnx}.json" in text


def test_onnx_graph_is_named_batched_and_checked(exported: Exported) -> None:
    onnx.checker.check_model(str(exported.onnx), full_check=True)
    model = onnx.load(str(exported.onnx))
    dims = {
        v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
        for v in [*model.graph.input, *model.graph.output]
    }
    assert dims == {
        "audio": ["batch", CONTRACT.window_samples],
        "faces": ["batch", 2, 64, 64, 3],
        "p_fused": ["batch"],
        "p_audio": ["batch"],
        "p_visual": ["batch"],
        "p_sync": ["batch"],
    }
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [18]


def test_manifest_records_contract_checksums_and_parity(exported: Exported) -> None:
    m = load_onnx_manifest(exported.onnx)
    assert m.contract == CONTRACT and m.precision == "fp32" and m.opset == 18
    assert m.onnx_sha256 == sha256_file(exported.onnx)
    assert m.source_checkpoint == "detector.pt"
    assert m.source_sha256 == sha256_file(exported.checkpoint)
    assert m.model_config["audio_backbone"] == "resnet10t"
    assert m.parity is not None and m.parity.ok
    assert m.parity.tolerance == PARITY_TOLERANCE
    assert set(m.parity.per_input) == {"random", "natural", "clips"} and m.parity.windows == 18
    assert m.parity.max_abs_diff <= 1e-5  # in practice ~1e-7 for the fp32 file
    assert {"torch", "onnx", "onnxruntime"} <= set(m.tool_versions)
    raw = json.loads(manifest_path(exported.onnx).read_text())
    assert raw["format"] == "deepfake-monitor/onnx" and raw["onnx"]["opset"] == 18


def test_fp16_variant_keeps_io_types_and_an_fp32_front_end(exported: Exported) -> None:
    m = load_onnx_manifest(exported.fp16)
    assert m.precision == "fp16" and m.parity is not None
    assert m.parity.max_abs_diff <= FP16_PARITY_TOLERANCE
    assert m.parity.tolerance == FP16_PARITY_TOLERANCE
    model = onnx.shape_inference.infer_shapes(onnx.load(str(exported.fp16)))
    F32, F16, U8 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.UINT8
    io_types = {
        v.name: v.type.tensor_type.elem_type for v in [*model.graph.input, *model.graph.output]
    }
    outputs = {"p_fused": F32, "p_audio": F32, "p_visual": F32, "p_sync": F32}
    assert io_types == {"audio": F32, "faces": U8, **outputs}
    assert sum(t.data_type == F16 for t in model.graph.initializer) > 10  # weights are fp16
    types = {v.name: v.type.tensor_type.elem_type for v in model.graph.value_info}
    types.update(io_types)
    logs = [n for n in model.graph.node if n.op_type == "Log"]
    assert logs and all(types.get(n.input[0]) == F32 for n in logs)  # dB of fp32 mel power
    # the audio input reaches the STFT without a detour through fp16
    casts = [n for n in model.graph.node if n.op_type == "Cast" and "audio" in n.input]
    assert not casts


def test_torch_and_onnxruntime_backends_agree(exported: Exported) -> None:
    torch_backend = load_backend(exported.onnx, backend="torch", device="cpu")
    ort_backend = load_backend(exported.onnx, backend="onnxruntime", device="cpu")
    assert torch_backend.name == "torch" and ort_backend.name == "onnxruntime"
    assert torch_backend.contract == ort_backend.contract == CONTRACT
    for audio, faces in (random_inputs(CONTRACT, 3), natural_inputs(CONTRACT, 2)):
        a, b = torch_backend.score(audio, faces), ort_backend.score(audio, faces)
        for x, y in zip((a.fused, a.audio, a.visual), (b.fused, b.audio, b.visual), strict=True):
            assert x.shape == y.shape == (len(audio),)
            assert np.all((x >= 0) & (x <= 1))
            np.testing.assert_allclose(x, y, atol=AGREEMENT_TOLERANCE, rtol=0)


def test_onnxruntime_on_the_cpu_refuses_other_contracts(exported: Exported) -> None:
    # device="cpu" both times: on a machine with a CUDA GPU, auto would pick the
    # checkpoint beside the ONNX file (torch on CUDA) instead
    backend = load_backend(exported.onnx, device="cpu")
    assert backend.name == "onnxruntime"
    with pytest.raises(ContractError, match="crop_size: runtime 112 vs detector.onnx 64"):
        load_backend(exported.onnx, device="cpu", contract=replace(CONTRACT, crop_size=112))


def test_failed_parity_keeps_no_file(
    exported: Exported, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import engines.export

    few = {"random": random_inputs(CONTRACT, 2)}  # any difference fails a zero tolerance
    monkeypatch.setattr(engines.export, "parity_sets", lambda contract, clips=(): few)
    out = tmp_path / "strict.onnx"
    manifest_path(out).write_text("{}")  # left by an earlier export to the same path
    with pytest.raises(ExportError, match="differ from torch") as err:
        export_checkpoint(exported.checkpoint, out, tolerance=0.0)
    assert "the file was not kept" in str(err.value)
    assert not out.exists() and not manifest_path(out).exists()


def test_export_refuses_what_is_not_a_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bogus = tmp_path / "bogus.pt"
    bogus.write_bytes(b"not a checkpoint")
    assert main(["export", str(bogus), "--out", str(tmp_path / "x.onnx")]) == 2
    err = capsys.readouterr().err
    assert "not a deepfake-monitor checkpoint" in err
    assert main(["export", str(bogus), "--out", str(tmp_path / "x.txt")]) == 2
    assert "must end in .onnx" in capsys.readouterr().err


def test_torch_backend_keeps_named_modules_in_fp32_under_autocast() -> None:
    from torch import nn

    from engines.torch_backend import keep_fp32

    class Tiny(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.frontend = nn.Linear(8, 8)
            self.head = nn.Linear(8, 1)

        def forward(self, x: Any) -> tuple[Any, Any]:
            z = self.frontend(x)
            return z, self.head(z)

    model = nn.Sequential()
    model.add_module("detector", Tiny())
    x = torch.randn(2, 8)
    tiny = model.get_submodule("detector")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z, y = tiny(x)
    assert z.dtype == y.dtype == torch.bfloat16  # autocast reaches every linear layer
    assert keep_fp32(model) == ["detector.frontend"]
    assert keep_fp32(model) == []  # idempotent
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z, y = tiny(x)
    assert z.dtype == torch.float32 and y.dtype == torch.bfloat16  # front end only
