"""The fp16 graph pass: which nodes stay fp32, cast round trips, topological order."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

from engines.fp16 import fp32_nodes, remove_round_trips, to_fp16, topological_sort
from engines.toy import make_toy_onnx, toy_scores
from monitor.contract import InputContract

SMALL = InputContract(window_seconds=0.5, hop_seconds=0.5, k_crops=2, crop_size=32)


def _node(
    op: str, inputs: list[str], outputs: list[str], name: str, **attrs: Any
) -> onnx.NodeProto:
    return helper.make_node(op, inputs, outputs, name=name, **attrs)


def test_scopes_match_torchscript_names_and_dynamo_metadata() -> None:
    ts = _node("Conv", ["x"], ["a"], "/detector/frontend/Conv")
    dyn = _node("Conv", ["x"], ["b"], "node_conv1d")
    dyn.metadata_props.add(
        key="pkg.torch.onnx.name_scopes", value="['', 'detector', 'detector.frontend', 'conv1d']"
    )
    other = _node("Conv", ["x"], ["c"], "/detector/visual_backbone/conv1/Conv")
    other_dyn = _node("Relu", ["x"], ["d"], "node_relu")
    other_dyn.metadata_props.add(
        key="pkg.torch.onnx.name_scopes", value="['', 'detector', 'detector.frontend_x']"
    )
    upstream = _node("Mul", ["x", "x"], ["sq"], "square")  # no scope, but feeds a Log
    log = _node("Log", ["sq"], ["e"], "log")
    graph = helper.make_graph(
        [ts, dyn, other, other_dyn, upstream, log],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1]) for n in "abcde"],
    )
    assert fp32_nodes(helper.make_model(graph)) == sorted(
        ["/detector/frontend/Conv", "node_conv1d", "square", "log"]
    )


def test_round_trips_removed_and_nodes_sorted(tmp_path: Path) -> None:
    nodes = [
        _node("Log", ["back"], ["y"], "log"),  # out of order on purpose
        _node("Cast", ["half"], ["back"], "to32", to=TensorProto.FLOAT),
        _node("Cast", ["audio"], ["half"], "to16", to=TensorProto.FLOAT16),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("audio", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    assert remove_round_trips(model) == 1
    topological_sort(model)
    assert [n.name for n in model.graph.node] == ["log"]
    assert list(model.graph.node[0].input) == ["audio"]
    onnx.checker.check_model(model, full_check=True)
    x = np.array([1.0001, 3.0], dtype=np.float32)  # 1.0001 is not representable in fp16
    session = ort.InferenceSession(model.SerializeToString())
    np.testing.assert_allclose(session.run(None, {"audio": x})[0], np.log(x), rtol=1e-6)


def test_to_fp16_keeps_io_types_and_scores(tmp_path: Path) -> None:
    path = make_toy_onnx(SMALL, tmp_path / "toy.onnx")
    half = to_fp16(onnx.load(str(path)))
    onnx.checker.check_model(half, full_check=True)
    io = {v.name: v.type.tensor_type.elem_type for v in [*half.graph.input, *half.graph.output]}
    assert io["audio"] == TensorProto.FLOAT and io["faces"] == TensorProto.UINT8
    assert io["p_fused"] == TensorProto.FLOAT
    assert any(t.data_type == TensorProto.FLOAT16 for t in half.graph.initializer)
    rng = np.random.default_rng(1)
    audio = (rng.standard_normal((3, SMALL.window_samples)) * 0.2).astype(np.float32)
    faces = rng.integers(0, 256, (3, *SMALL.faces_shape), dtype=np.uint8)
    got = ort.InferenceSession(half.SerializeToString()).run(None, {"audio": audio, "faces": faces})
    for g, want in zip(got, toy_scores(audio, faces), strict=True):
        np.testing.assert_allclose(g, want, atol=1e-2)
