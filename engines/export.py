"""Export a checkpoint to ONNX as a checked pipeline, with a manifest beside the file.

eval -> warm forward -> torch.onnx.export (named inputs/outputs, dynamic batch axis)
-> onnx.checker (full check) -> parity against torch on random and natural inputs
(max |p_onnx - p_torch| <= 1e-3, run by onnxruntime on CPU) -> `<out>.json` manifest.

With fp16, a second file `<stem>.fp16.onnx` is derived from the checked fp32 graph for GPU
engines: weights and math in fp16, I/O types unchanged (float32 audio, uint8 faces,
float32 probabilities), and the audio front end (STFT power, mel, log/dB, and everything
feeding a log) kept in fp32, where fp16 would overflow or underflow. Its parity is stated
against the same torch reference with a looser bound.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engines.manifest import (
    OnnxManifest,
    Parity,
    manifest_path,
    sha256_file,
    utc_now,
    write_manifest,
)
from engines.parity import Comparison, ScoreFn, clip_inputs, compare, natural_inputs, random_inputs
from monitor.backend import Scores
from monitor.contract import InputContract
from monitor.errors import DeepfakeMonitorError, ExportError, ModelFormatError

logger = logging.getLogger(__name__)

DEFAULT_OPSET = 18  # TensorRT 10 and onnxruntime >= 1.14 parse it; Reduce* take axes inputs
PARITY_TOLERANCE = 1e-3  # max |p_onnx - p_torch| on probabilities, fp32 file
FP16_PARITY_TOLERANCE = 2e-2  # the same bound for the fp16 variant (10-bit mantissa)
WARM_BATCH = 2  # windows in the example batch traced by the exporter
EXPORTERS = ("torchscript", "dynamo")
FP16_SUFFIX = ".fp16.onnx"


@dataclass(frozen=True)
class ExportResult:
    """Where export wrote its files and what it measured."""

    onnx_path: Path
    manifest: OnnxManifest
    fp16_path: Path | None = None
    fp16_manifest: OnnxManifest | None = None


def _tool_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    import onnx
    import onnxruntime
    import torch

    try:
        dm_version = version("deepfake-monitor")
    except PackageNotFoundError:  # running from a source tree that was not pip-installed
        dm_version = "source"
    return {
        "deepfake-monitor": dm_version,
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
    }


def _config_dict(cfg: Any) -> dict[str, Any]:
    if is_dataclass(cfg) and not isinstance(cfg, type):
        return asdict(cfg)
    if hasattr(cfg, "model_dump"):
        return dict(cfg.model_dump())
    return dict(vars(cfg)) if cfg is not None else {}


def torch_scorer(module: Any) -> ScoreFn:
    """A numpy-in, Scores-out function over a torch export module (CPU, fp32)."""
    import torch

    def score(audio: np.ndarray, faces: np.ndarray) -> Scores:
        with torch.inference_mode():
            outs = module(torch.from_numpy(audio), torch.from_numpy(faces))
        return Scores.from_outputs([o.float().reshape(-1).numpy().copy() for o in outs])

    return score


def onnx_scorer(path: Path, contract: InputContract) -> ScoreFn:
    """Scores with onnxruntime on CPU (one thread per core), same interface as torch_scorer."""
    from engines.ort_backend import OnnxRuntimeBackend

    return OnnxRuntimeBackend(path, contract, device="cpu").score


def export_onnx(
    module: Any,
    contract: InputContract,
    out: str | Path,
    *,
    opset: int = DEFAULT_OPSET,
    exporter: str = "torchscript",
) -> Path:
    """torch.onnx.export of an export module with named I/O and a dynamic batch axis.

    The TorchScript exporter is the default: it takes about a second where the dynamo
    exporter takes tens of seconds on a small CPU, and its graphs are the ones the
    TensorRT ONNX parser has been exercised on longest. `exporter="dynamo"` uses
    torch.export instead (the only one left once torch drops the TorchScript path).
    """
    import torch

    if exporter not in EXPORTERS:
        raise ExportError(f"unknown exporter {exporter!r} (choose from {EXPORTERS})")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    module = module.eval()
    audio_np, faces_np = random_inputs(contract, WARM_BATCH)
    example = (torch.from_numpy(audio_np), torch.from_numpy(faces_np))
    with torch.inference_mode():
        module(*example)  # warm forward: lazy buffers, shape checks, before tracing
    names_in = [contract.audio_input, contract.faces_input]
    names_out = list(contract.output_names)
    kwargs: dict[str, Any]
    if exporter == "dynamo":
        batch = torch.export.Dim("batch", min=1, max=65_536)
        kwargs = {
            "dynamic_shapes": {contract.audio_input: {0: batch}, contract.faces_input: {0: batch}}
        }
    else:
        kwargs = {"dynamic_axes": {n: {0: "batch"} for n in names_in + names_out}}
    try:
        with warnings.catch_warnings():
            # the TorchScript path is chosen on purpose (see above); its deprecation is noise
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            torch.onnx.export(
                module,
                example,
                str(out),
                input_names=names_in,
                output_names=names_out,
                opset_version=opset,
                dynamo=exporter == "dynamo",
                **kwargs,
            )
    except Exception as exc:  # the exporters raise many unrelated types; report them as one
        raise ExportError(
            f"torch.onnx.export ({exporter}) failed: {type(exc).__name__}: {exc}"
        ) from exc
    return out


def check_onnx(path: Path) -> int:
    """onnx.checker with shape inference; returns the default-domain opset."""
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
        model = onnx.load(str(path), load_external_data=False)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError, OSError) as exc:
        raise ExportError(f"{path}: onnx.checker rejected the exported graph: {exc}") from exc
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def _parity(
    name: str,
    reference: ScoreFn,
    candidate: ScoreFn,
    sets: dict[str, tuple[np.ndarray, np.ndarray]],
    tolerance: float,
    runtime: str,
) -> Parity:
    comps: list[Comparison] = [compare(k, reference, candidate, v) for k, v in sets.items()]
    parity = Parity(
        reference="torch cpu fp32",
        runtime=runtime,
        max_abs_diff=max(c.max_abs_diff for c in comps),
        tolerance=tolerance,
        per_input={c.name: c.max_abs_diff for c in comps},
        windows=sum(c.windows for c in comps),
    )
    if not parity.ok:
        raise ExportError(
            f"{name}: exported probabilities differ from torch by {parity.max_abs_diff:.3g} "
            f"(> {tolerance:g}; per input set {parity.per_input}); the file was not kept"
        )
    return parity


def parity_sets(
    contract: InputContract, clips: Sequence[str | Path] = ()
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The named input sets parity is measured on: random, natural, and clips if given."""
    sets = {"random": random_inputs(contract), "natural": natural_inputs(contract)}
    if clips:
        sets["clips"] = clip_inputs(clips, contract)
    return sets


def export_checkpoint(
    checkpoint: str | Path,
    out: str | Path,
    *,
    fp16: bool = False,
    opset: int = DEFAULT_OPSET,
    exporter: str = "torchscript",
    clips: Sequence[str | Path] = (),
    tolerance: float = PARITY_TOLERANCE,
) -> ExportResult:
    """Export a training checkpoint; returns the files written and their parity."""
    from train.checkpoint import load_checkpoint

    ck_path, out = Path(checkpoint), Path(out)
    if out.suffix != ".onnx":
        raise ExportError(f"--out must end in .onnx, got {out.name}")
    ck = load_checkpoint(ck_path)
    contract = ck.contract
    module = ck.model.export_module().eval()
    reference = torch_scorer(module)
    sets = parity_sets(contract, clips)
    versions = _tool_versions()

    manifest_path(out).unlink(missing_ok=True)  # a stale manifest must not outlive a failure
    export_onnx(module, contract, out, opset=opset, exporter=exporter)
    try:
        opset_found = check_onnx(out)
        parity = _parity(
            out.name,
            reference,
            onnx_scorer(out, contract),
            sets,
            tolerance,
            "onnxruntime CPUExecutionProvider",
        )
    except DeepfakeMonitorError:  # checker, parity or I/O contract: keep nothing
        out.unlink(missing_ok=True)
        raise
    source_sha = getattr(ck, "sha256", "") or sha256_file(ck_path)
    manifest = OnnxManifest(
        contract=contract,
        onnx_file=out.name,
        onnx_sha256=sha256_file(out),
        opset=opset_found,
        precision="fp32",
        source_checkpoint=ck_path.name,
        source_sha256=source_sha,
        parity=parity,
        model_config=_config_dict(ck.model_config),
        tool_versions=versions,
        created_utc=utc_now(),
        calibration=_calibration_of(ck.extra),
    )
    write_manifest(out, manifest)
    result = ExportResult(out, manifest)
    if fp16:
        fp16_path = out.with_name(out.name[: -len(".onnx")] + FP16_SUFFIX)
        fp16_manifest = export_fp16(out, fp16_path, manifest, reference, sets)
        result = ExportResult(out, manifest, fp16_path, fp16_manifest)
    return result


def export_fp16(
    fp32_path: Path,
    out: Path,
    fp32_manifest: OnnxManifest,
    reference: ScoreFn,
    sets: dict[str, tuple[np.ndarray, np.ndarray]],
) -> OnnxManifest:
    """Derive the fp16 variant from a checked fp32 file; parity against torch is stated."""
    import onnx

    from engines.fp16 import to_fp16

    manifest_path(out).unlink(missing_ok=True)
    onnx.save(to_fp16(onnx.load(str(fp32_path))), str(out))
    contract = fp32_manifest.contract
    try:
        opset_found = check_onnx(out)
        scorer, runtime = _fp16_scorer(out, contract)
        parity = _parity(out.name, reference, scorer, sets, FP16_PARITY_TOLERANCE, runtime)
    except DeepfakeMonitorError:  # checker, parity or I/O contract: keep nothing
        out.unlink(missing_ok=True)
        raise
    manifest = OnnxManifest(
        contract=contract,
        onnx_file=out.name,
        onnx_sha256=sha256_file(out),
        opset=opset_found,
        precision="fp16",
        source_checkpoint=fp32_manifest.source_checkpoint,
        source_sha256=fp32_manifest.source_sha256,
        parity=parity,
        model_config=fp32_manifest.model_config,
        tool_versions=fp32_manifest.tool_versions,
        created_utc=utc_now(),
        calibration=fp32_manifest.calibration,
        provenance=fp32_manifest.provenance,
    )
    write_manifest(out, manifest)
    return manifest


def _calibration_of(extra: dict[str, Any]) -> dict[str, Any] | None:
    """A checkpoint's calibrated state settings travel into its ONNX manifest."""
    value = extra.get("calibration")
    return value if isinstance(value, dict) else None


def reference_scorer(path: Path, contract: InputContract) -> ScoreFn:
    """Scores with onnx's numpy reference evaluator (slow; runs fp16 math as numpy fp16)."""
    from onnx.reference import ReferenceEvaluator

    session = ReferenceEvaluator(str(path))
    names = list(contract.output_names)

    def score(audio: np.ndarray, faces: np.ndarray) -> Scores:
        feeds = {contract.audio_input: audio, contract.faces_input: faces}
        outs: Any = session.run(names, feeds)
        return Scores.from_outputs(list(outs))

    return score


def _fp16_scorer(path: Path, contract: InputContract) -> tuple[ScoreFn, str]:
    """onnxruntime if its CPU kernels cover the fp16 graph, else the reference evaluator."""
    try:
        return onnx_scorer(path, contract), "onnxruntime CPUExecutionProvider"
    except ModelFormatError as exc:
        logger.info("onnxruntime cannot run the fp16 graph on CPU (%s); using onnx.reference", exc)
        return reference_scorer(path, contract), "onnx.reference evaluator (numpy fp16)"


def describe(result: ExportResult) -> str:
    """What the export command prints."""
    lines = []
    for path, m in ((result.onnx_path, result.manifest), (result.fp16_path, result.fp16_manifest)):
        if path is None or m is None or m.parity is None:
            continue
        p = m.parity
        sets = ", ".join(f"{k} {v:.2g}" for k, v in p.per_input.items())
        lines.append(
            f"{path}: {m.precision}, opset {m.opset}, sha256 {m.onnx_sha256[:16]}…\n"
            f"  parity vs {p.reference} on {p.windows} windows ({p.runtime}): "
            f"max |Δp| = {p.max_abs_diff:.2e} <= {p.tolerance:g} ({sets})\n"
            f"  manifest: {path}.json"
        )
    return "\n".join(lines)
