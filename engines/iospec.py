"""The I/O tensors a contract-following model has, and the check every runtime makes.

Every artifact (ONNX file, TensorRT engine, Triton model) must expose exactly the
contract's inputs and outputs: float32 audio [B, samples], uint8 faces [B, K, H, W, 3]
and three float32 probabilities [B], with a dynamic batch axis. Precision does not change
the boundary: an fp16 model keeps these types and casts inside.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from monitor.contract import InputContract
from monitor.errors import ContractError

INPUT = "input"
OUTPUT = "output"
DYNAMIC = -1  # a dimension whose size is chosen per call (the batch axis)

# ONNX element type names (as onnxruntime prints them) -> numpy dtype names
ONNX_TYPE_TO_NUMPY = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(uint8)": "uint8",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
    "tensor(double)": "float64",
    "tensor(bool)": "bool",
}


@dataclass(frozen=True)
class TensorSpec:
    """One model I/O tensor; shape has DYNAMIC (-1) for the batch axis."""

    name: str
    mode: str  # INPUT or OUTPUT
    dtype: str  # numpy dtype name: "float32", "uint8", "float16"
    shape: tuple[int, ...]  # e.g. (-1, 4, 112, 112, 3)

    @property
    def row_shape(self) -> tuple[int, ...]:
        """The shape of one batch row."""
        return self.shape[1:]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "mode": self.mode,
            "dtype": self.dtype,
            "shape": list(self.shape),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TensorSpec:
        return cls(
            str(d["name"]), str(d["mode"]), str(d["dtype"]), tuple(int(x) for x in d["shape"])
        )


def contract_io(contract: InputContract) -> tuple[TensorSpec, ...]:
    """Inputs then outputs, in the contract's order."""
    specs = [
        TensorSpec(contract.audio_input, INPUT, "float32", (DYNAMIC, contract.window_samples)),
        TensorSpec(contract.faces_input, INPUT, "uint8", (DYNAMIC, *contract.faces_shape)),
    ]
    specs += [TensorSpec(name, OUTPUT, "float32", (DYNAMIC,)) for name in contract.output_names]
    return tuple(specs)


def _shape_ok(want: TensorSpec, have: TensorSpec) -> bool:
    if not have.shape or have.shape[0] != DYNAMIC:
        return False  # a fixed batch axis: the exporter lost the dynamic axis
    if want.mode == OUTPUT:
        return have.shape in ((DYNAMIC,), (DYNAMIC, 1))  # [B] or [B, 1]
    return have.row_shape == want.row_shape


def check_io(contract: InputContract, found: tuple[TensorSpec, ...], where: str) -> None:
    """Refuse a model whose I/O tensors differ from what its contract says (ContractError)."""
    want = {s.name: s for s in contract_io(contract)}
    have = {s.name: s for s in found}
    problems = []
    for name in sorted(set(want) | set(have)):
        w, h = want.get(name), have.get(name)
        if w is None:
            problems.append(f"unexpected tensor {name!r}")
        elif h is None:
            problems.append(f"missing {w.mode} {name!r}")
        elif (w.mode, w.dtype) != (h.mode, h.dtype):
            problems.append(f"{name!r} is {h.mode} {h.dtype}, expected {w.mode} {w.dtype}")
        elif not _shape_ok(w, h):
            problems.append(f"{name!r} has shape {list(h.shape)}, expected {list(w.shape)}")
    if problems:
        raise ContractError(
            f"{where}: model I/O does not follow its input contract ({'; '.join(problems)}); "
            "re-export the model from its checkpoint with `deepfake-monitor export`"
        )


def dims_from_onnx(shape: list[Any]) -> tuple[int, ...]:
    """onnxruntime's shape list (ints, symbolic names or None) -> ints with DYNAMIC."""
    return tuple(d if isinstance(d, int) and d >= 0 else DYNAMIC for d in shape)
