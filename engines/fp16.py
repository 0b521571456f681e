"""The fp16 variant of an exported ONNX graph, for GPU engines.

onnxruntime's float16 converter (shipped with onnxruntime; no extra package) turns
weights and ops to fp16, keeps the I/O types, and leaves blocked nodes in fp32 with
casts around them. Blocked here: the audio front end (everything feeding a Log, i.e.
reflect padding, the STFT convolution, the power spectrum and the mel matmul, whose
values reach ~1e5 and ~1e-10, outside fp16's range) and the modules named in `scopes`
(dB scaling, top-dB floor, mel normalisation).

The converter leaves two blemishes this module repairs: fp32 -> fp16 -> fp32 cast pairs
(the audio input would be rounded to fp16 before an fp32 front end) and nodes out of
topological order (onnx.checker refuses those).
"""

from __future__ import annotations

import ast
import logging
from collections import defaultdict, deque
from typing import Any

logger = logging.getLogger(__name__)

DEFAULT_FP32_SCOPES = ("frontend", "mel_norm")  # module names kept in fp32
ONNX_FLOAT = 1  # TensorProto.FLOAT
ONNX_FLOAT16 = 10  # TensorProto.FLOAT16
NAME_SCOPES_KEY = "pkg.torch.onnx.name_scopes"  # dynamo exporter's module path metadata


def fp32_nodes(model: Any, scopes: tuple[str, ...] = DEFAULT_FP32_SCOPES) -> list[str]:
    """Names of nodes to keep in fp32: every ancestor of a Log, and nodes in `scopes`.

    Ancestry catches the power spectrum and the clamp before log10 whatever the node
    names are; the scope match (TorchScript names like "/detector/frontend/...", the
    dynamo exporter's name_scopes metadata) catches what follows the log.
    """
    producer = {o: n for n in model.graph.node for o in n.output}
    keep: set[str] = set()
    stack = [n for n in model.graph.node if n.op_type == "Log"]
    while stack:
        node = stack.pop()
        if node.name in keep:
            continue
        keep.add(node.name)
        stack.extend(producer[i] for i in node.input if i in producer)
    for n in model.graph.node:
        if _in_scopes(n, scopes):
            keep.add(n.name)
    return sorted(keep)


def _in_scopes(node: Any, scopes: tuple[str, ...]) -> bool:
    """Whether a node comes from a module named in `scopes`.

    TorchScript names nodes by module path ("/detector/frontend/Conv"); the dynamo exporter
    leaves names like "node_conv1d" and records the path as metadata
    ("['', 'detector', 'detector.frontend', 'conv1d']").
    """
    parts = set(node.name.split("/"))
    for prop in node.metadata_props:
        if prop.key == NAME_SCOPES_KEY:
            try:
                path = ast.literal_eval(prop.value)
            except (ValueError, SyntaxError):
                continue
            parts |= {seg for p in path if isinstance(p, str) for seg in p.split(".")}
    return any(s in parts for s in scopes)


def _cast_to(node: Any) -> int | None:
    if node.op_type != "Cast":
        return None
    return next((int(a.i) for a in node.attribute if a.name == "to"), None)


def remove_round_trips(model: Any) -> int:
    """Bypass Cast(fp32) of Cast(fp16) of an fp32 tensor; returns how many were removed."""
    producer = {o: n for n in model.graph.node for o in n.output}
    graph_outputs = {o.name for o in model.graph.output}
    replace: dict[str, str] = {}
    for n in model.graph.node:
        if _cast_to(n) != ONNX_FLOAT or not n.input or n.output[0] in graph_outputs:
            continue
        inner = producer.get(n.input[0])
        if (
            inner is not None
            and _cast_to(inner) == ONNX_FLOAT16
            and _is_float32(model, inner.input[0], producer)
        ):
            replace[n.output[0]] = inner.input[0]
    if not replace:
        return 0
    for n in model.graph.node:
        for i, name in enumerate(n.input):
            if name in replace:
                n.input[i] = replace[name]
    drop_dead_nodes(model)
    return len(replace)


def _is_float32(model: Any, name: str, producer: dict[str, Any]) -> bool:
    for vi in list(model.graph.input) + list(model.graph.value_info):
        if vi.name == name:
            return bool(vi.type.tensor_type.elem_type == ONNX_FLOAT)
    node = producer.get(name)
    return node is not None and _cast_to(node) == ONNX_FLOAT


def drop_dead_nodes(model: Any) -> None:
    """Remove nodes none of whose outputs is used (repeatedly)."""
    graph_outputs = {o.name for o in model.graph.output}
    while True:
        used = {i for n in model.graph.node for i in n.input} | graph_outputs
        dead = [n for n in model.graph.node if not any(o in used for o in n.output)]
        if not dead:
            return
        for n in dead:
            model.graph.node.remove(n)


def topological_sort(model: Any) -> None:
    """Reorder graph nodes so every input is produced before it is used (stable)."""
    nodes = list(model.graph.node)
    producer = {o: i for i, n in enumerate(nodes) for o in n.output}
    deps: dict[int, set[int]] = {}
    users: dict[int, list[int]] = defaultdict(list)
    for i, n in enumerate(nodes):
        deps[i] = {producer[x] for x in n.input if x in producer and producer[x] != i}
        for d in deps[i]:
            users[d].append(i)
    ready = deque(i for i in range(len(nodes)) if not deps[i])
    order = []
    while ready:
        i = ready.popleft()
        order.append(i)
        for u in users[i]:
            deps[u].discard(i)
            if not deps[u]:
                ready.append(u)
    if len(order) != len(nodes):
        raise ValueError("graph has a cycle; cannot sort it")
    del model.graph.node[:]
    model.graph.node.extend(nodes[i] for i in order)


def to_fp16(model: Any, scopes: tuple[str, ...] = DEFAULT_FP32_SCOPES) -> Any:
    """fp16 copy of an fp32 ONNX model with the front end in fp32 and I/O types kept."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    for i, n in enumerate(model.graph.node):  # the converter blocks nodes by name
        if not n.name:
            n.name = f"node_{i}_{n.op_type}"
    keep = fp32_nodes(model, scopes)
    logger.info("fp16: keeping %d of %d nodes in fp32", len(keep), len(model.graph.node))
    # The converter re-infers intermediate types; stale ones (the dynamo exporter writes
    # value_info for every tensor) would contradict its casts and fail onnx.checker.
    del model.graph.value_info[:]
    half = convert_float_to_float16(model, keep_io_types=True, node_block_list=keep)
    removed = remove_round_trips(half)
    topological_sort(half)
    logger.info("fp16: removed %d fp32->fp16->fp32 cast pairs", removed)
    return half
