"""A tiny hand-built ONNX detector that follows an input contract, for tests and smoke runs.

It needs only the `onnx` package (no torch): p_audio rises with the audio energy, p_visual
with the mean pixel brightness, p_fused averages their logits, and p_sync (when the
contract names it) rises with their difference. Backends, the selector and
the Triton exporter are exercised on it without training or exporting a real model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from engines.manifest import OnnxManifest, sha256_file, utc_now, write_manifest
from monitor.contract import InputContract

TOY_OPSET = 17
AUDIO_GAIN = 40.0  # logit per unit of mean squared amplitude
AUDIO_BIAS = -2.0
VISUAL_GAIN = 4.0  # logit per unit of mean brightness (0..1)
VISUAL_BIAS = -2.0
SYNC_BIAS = -1.0  # p_sync: a loud voice over a dim face reads as "out of step"


def toy_scores(
    audio: np.ndarray, faces: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """What the toy model computes, in numpy: (p_fused, p_audio, p_visual, p_sync)."""
    la = AUDIO_GAIN * np.mean(audio.astype(np.float64) ** 2, axis=1) + AUDIO_BIAS
    lv = VISUAL_GAIN * faces.reshape(len(faces), -1).mean(axis=1) / 255.0 + VISUAL_BIAS

    def sig(x: np.ndarray) -> np.ndarray:
        return (1.0 / (1.0 + np.exp(-x))).astype(np.float32)

    return sig((la + lv) / 2), sig(la), sig(lv), sig((la - lv) / 2 + SYNC_BIAS)


def make_toy_onnx(contract: InputContract, path: str | Path, *, with_manifest: bool = True) -> Path:
    """Write the toy detector for `contract` to `path` (and its manifest beside it)."""
    import onnx
    from onnx import TensorProto, helper

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    k, s = contract.k_crops, contract.crop_size
    audio = helper.make_tensor_value_info(
        contract.audio_input, TensorProto.FLOAT, ["batch", contract.window_samples]
    )
    faces = helper.make_tensor_value_info(
        contract.faces_input, TensorProto.UINT8, ["batch", k, s, s, 3]
    )
    outputs = [
        helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch"])
        for name in contract.output_names
    ]
    fused, p_audio, p_visual = contract.output_names[:3]

    def const(name: str, value: float) -> onnx.TensorProto:
        return helper.make_tensor(name, TensorProto.FLOAT, [], [value])

    inits = [
        const("ga", AUDIO_GAIN),
        const("ba", AUDIO_BIAS),
        const("gv", VISUAL_GAIN / 255.0),
        const("bv", VISUAL_BIAS),
        const("half", 0.5),
        const("bs", SYNC_BIAS),
    ]
    nodes = [
        helper.make_node("Mul", [contract.audio_input, contract.audio_input], ["a2"]),
        helper.make_node("ReduceMean", ["a2"], ["ea"], axes=[1], keepdims=0),
        helper.make_node("Mul", ["ea", "ga"], ["la0"]),
        helper.make_node("Add", ["la0", "ba"], ["la"]),
        helper.make_node("Cast", [contract.faces_input], ["ff"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["ff"], ["ev"], axes=[1, 2, 3, 4], keepdims=0),
        helper.make_node("Mul", ["ev", "gv"], ["lv0"]),
        helper.make_node("Add", ["lv0", "bv"], ["lv"]),
        helper.make_node("Add", ["la", "lv"], ["lsum"]),
        helper.make_node("Mul", ["lsum", "half"], ["lf"]),
        helper.make_node("Sigmoid", ["lf"], [fused]),
        helper.make_node("Sigmoid", ["la"], [p_audio]),
        helper.make_node("Sigmoid", ["lv"], [p_visual]),
    ]
    if contract.has_sync:
        nodes += [
            helper.make_node("Sub", ["la", "lv"], ["ldiff"]),
            helper.make_node("Mul", ["ldiff", "half"], ["ls0"]),
            helper.make_node("Add", ["ls0", "bs"], ["ls"]),
            helper.make_node("Sigmoid", ["ls"], [contract.output_names[3]]),
        ]
    graph = helper.make_graph(nodes, "toy_detector", [audio, faces], outputs, inits)
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", TOY_OPSET)],
        producer_name="deepfake-monitor-toy",
    )
    model.ir_version = 8  # readable by every onnxruntime and TensorRT 10 parser
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, out)
    if with_manifest:
        write_manifest(
            out,
            OnnxManifest(
                contract=contract,
                onnx_file=out.name,
                onnx_sha256=sha256_file(out),
                opset=TOY_OPSET,
                precision="fp32",
                source_checkpoint="(toy)",
                source_sha256="",
                parity=None,
                model_config={"name": "toy"},
                created_utc=utc_now(),
            ),
        )
    return out
