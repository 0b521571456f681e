"""Export a model as an NVIDIA Triton Inference Server model repository.

    REPO/README.md                 how to serve it and point the monitor at it
    REPO/NAME/config.pbtxt         platform, max_batch_size, I/O, dynamic batching, contract
    REPO/NAME/1/model.onnx         (or model.plan) plus its manifest, model.onnx.json

The input contract travels inside config.pbtxt as the parameter `deepfake_monitor.contract`
(JSON), so the triton backend reads it from the server and needs no local files.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from engines.iospec import INPUT, TensorSpec, contract_io
from engines.manifest import (
    find_manifest,
    load_engine_manifest,
    load_onnx_manifest,
    manifest_path,
)
from monitor.contract import InputContract
from monitor.errors import ModelFormatError

logger = logging.getLogger(__name__)

DEFAULT_MODEL_NAME = "deepfake_detector"
DEFAULT_MAX_BATCH = 128  # windows per server-side batch
DEFAULT_PREFERRED_BATCHES = (8, 32)  # what the dynamic batcher tries to form
DEFAULT_QUEUE_DELAY_US = 2_000  # µs a request may wait for the batcher to fill a batch
CONTRACT_PARAMETER = "deepfake_monitor.contract"  # config.pbtxt parameter with the contract JSON
VERSION_DIR = "1"
PLATFORMS = {".onnx": "onnxruntime_onnx", ".plan": "tensorrt_plan", ".engine": "tensorrt_plan"}
MODEL_FILES = {".onnx": "model.onnx", ".plan": "model.plan", ".engine": "model.plan"}
KINDS = ("gpu", "cpu")

# numpy dtype name -> Triton datatype (wire name; config.pbtxt uses "TYPE_" + it)
NUMPY_TO_TRITON = {"float32": "FP32", "float16": "FP16", "uint8": "UINT8", "int64": "INT64"}


@dataclass(frozen=True)
class TritonOptions:
    """How Triton should batch and place the model."""

    name: str = DEFAULT_MODEL_NAME  # model name in the repository and in requests
    max_batch: int = DEFAULT_MAX_BATCH  # max_batch_size; at most the engine profile's max
    preferred_batches: tuple[int, ...] = DEFAULT_PREFERRED_BATCHES
    queue_delay_us: int = DEFAULT_QUEUE_DELAY_US
    instances: int = 1  # model instances per device
    kind: str = "gpu"  # "gpu" (KIND_GPU) or "cpu" (KIND_CPU; ONNX only)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if self.max_batch < 1 or self.instances < 1 or self.queue_delay_us < 0:
            raise ValueError("max_batch and instances must be >= 1, queue_delay_us >= 0")
        if not self.name.replace("_", "").replace("-", "").isalnum():
            raise ValueError(f"model name {self.name!r}: use letters, digits, '_' and '-'")


def _pbtxt_string(text: str) -> str:
    """A protobuf text-format string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _tensor_entry(spec: TensorSpec) -> str:
    dtype = "TYPE_" + NUMPY_TO_TRITON[spec.dtype]
    if spec.row_shape:
        dims = ", ".join(str(d) for d in spec.row_shape)
        return (
            f"  {{\n    name: {_pbtxt_string(spec.name)}\n    data_type: {dtype}\n"
            f"    dims: [ {dims} ]\n  }}"
        )
    # A [B] tensor: Triton needs a non-empty dims, so clients see [B, 1] and the model [B].
    return (
        f"  {{\n    name: {_pbtxt_string(spec.name)}\n    data_type: {dtype}\n    dims: [ 1 ]\n"
        "    reshape: { shape: [ ] }\n  }"
    )


def render_config(contract: InputContract, platform: str, opts: TritonOptions) -> str:
    """The text of config.pbtxt for a contract-following model."""
    specs = contract_io(contract)
    inputs = ",\n".join(_tensor_entry(s) for s in specs if s.mode == INPUT)
    outputs = ",\n".join(_tensor_entry(s) for s in specs if s.mode != INPUT)
    preferred = sorted(b for b in opts.preferred_batches if b <= opts.max_batch) or [opts.max_batch]
    kind = "KIND_GPU" if opts.kind == "gpu" else "KIND_CPU"
    contract_json = json.dumps(contract.to_dict(), sort_keys=True)
    return (
        f"name: {_pbtxt_string(opts.name)}\n"
        f"platform: {_pbtxt_string(platform)}\n"
        f"max_batch_size: {opts.max_batch}\n"
        f"input [\n{inputs}\n]\n"
        f"output [\n{outputs}\n]\n"
        "dynamic_batching {\n"
        f"  preferred_batch_size: [ {', '.join(map(str, preferred))} ]\n"
        f"  max_queue_delay_microseconds: {opts.queue_delay_us}\n"
        "}\n"
        f"instance_group [\n  {{\n    count: {opts.instances}\n    kind: {kind}\n  }}\n]\n"
        "parameters {\n"
        f"  key: {_pbtxt_string(CONTRACT_PARAMETER)}\n"
        f"  value: {{ string_value: {_pbtxt_string(contract_json)} }}\n"
        "}\n"
    )


README_TEMPLATE = """# Triton model repository: {name}

Exported by `deepfake-monitor export-triton` from `{source}` ({kind_text}).

## Serve

```
docker run --gpus all --rm -p 8000:8000 -p 8001:8001 -p 8002:8002 \\
  -v "$PWD":/models nvcr.io/nvidia/tritonserver:<YY.MM>-py3 \\
  tritonserver --model-repository=/models
curl -s localhost:8000/v2/models/{name}/ready && echo ready
```

{engine_note}
## Use from the monitor

```
deepfake-monitor <command> --model triton://<host>:8001/{name} ...
```

The monitor talks gRPC (port 8001) and reads the input contract from the model's
`{param}` parameter in config.pbtxt.

## Model

- inputs: `{audio}` float32 [B, {samples}] (mono {rate} Hz),
  `{faces}` uint8 [B, {k}, {s}, {s}, 3] (RGB face crops)
- outputs: {outputs}: float32 P(fake) per window, served as [B, 1]
- batching: max_batch_size {max_batch}, dynamic batching
  (preferred {preferred}, max delay {delay} µs)
"""

ENGINE_NOTE = """A TensorRT plan only loads in a Triton whose TensorRT version is {trt} (pick the
tritonserver release that ships it) on a GPU of compute capability {cc} ({gpu}); otherwise
rebuild it on the serving machine with `deepfake-monitor build-engine` and export again.
"""


def export_triton(
    model_path: str | Path, repo_dir: str | Path, opts: TritonOptions | None = None
) -> Path:
    """Write a Triton model repository for an ONNX file or TensorRT plan; returns REPO/NAME."""
    opts = opts or TritonOptions()
    src = Path(model_path)
    suffix = src.suffix
    if suffix not in PLATFORMS:
        raise ModelFormatError(
            f"{src}: export-triton takes an ONNX file (.onnx) or a TensorRT plan (.plan)"
        )
    engine_note = ""
    if suffix == ".onnx":
        contract = load_onnx_manifest(src).contract
        kind_text = "ONNX, served by Triton's onnxruntime backend"
        if opts.max_batch > DEFAULT_MAX_BATCH * 8:
            logger.warning("max_batch_size %d is large for a window detector", opts.max_batch)
    else:
        em = load_engine_manifest(src)
        contract = em.contract
        kind_text = f"TensorRT {em.tensorrt_version} plan, {em.precision}, built on {em.gpu_name}"
        if opts.kind != "gpu":
            raise ModelFormatError("a TensorRT plan can only be served with --kind gpu")
        if opts.max_batch > em.max_batch:
            raise ModelFormatError(
                f"max_batch_size {opts.max_batch} exceeds the engine profile's max batch "
                f"{em.max_batch}; rebuild with --max-batch {opts.max_batch} or lower --max-batch"
            )
        engine_note = (
            ENGINE_NOTE.format(trt=em.tensorrt_version, cc=em.compute_capability, gpu=em.gpu_name)
            + "\n"
        )
    model_dir = Path(repo_dir) / opts.name
    version_dir = model_dir / VERSION_DIR
    version_dir.mkdir(parents=True, exist_ok=True)
    dest = version_dir / MODEL_FILES[suffix]
    shutil.copyfile(src, dest)
    src_manifest = find_manifest(src)
    assert src_manifest is not None  # the load_*_manifest call above required it
    shutil.copyfile(src_manifest, manifest_path(dest))
    (model_dir / "config.pbtxt").write_text(render_config(contract, PLATFORMS[suffix], opts))
    preferred = sorted(b for b in opts.preferred_batches if b <= opts.max_batch) or [opts.max_batch]
    (Path(repo_dir) / "README.md").write_text(
        README_TEMPLATE.format(
            name=opts.name,
            source=src.name,
            kind_text=kind_text,
            engine_note=engine_note,
            param=CONTRACT_PARAMETER,
            audio=contract.audio_input,
            faces=contract.faces_input,
            samples=contract.window_samples,
            rate=contract.sample_rate,
            k=contract.k_crops,
            s=contract.crop_size,
            outputs=", ".join(f"`{n}`" for n in contract.output_names),
            max_batch=opts.max_batch,
            preferred=preferred,
            delay=opts.queue_delay_us,
        )
    )
    logger.info("wrote Triton model %s (%s) to %s", opts.name, PLATFORMS[suffix], model_dir)
    return model_dir


def contract_from_config(config: dict[str, object], where: str) -> InputContract:
    """The contract stored in a model config (Triton's JSON form of config.pbtxt)."""
    params = config.get("parameters")
    entry = params.get(CONTRACT_PARAMETER) if isinstance(params, dict) else None
    text = entry.get("string_value") if isinstance(entry, dict) else None
    if not isinstance(text, str):
        raise ModelFormatError(
            f"{where}: the Triton model has no {CONTRACT_PARAMETER} parameter; export its "
            "repository with `deepfake-monitor export-triton`"
        )
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ModelFormatError(f"{where}: {CONTRACT_PARAMETER} is not valid JSON ({exc})") from exc
    return InputContract.from_dict(data)
