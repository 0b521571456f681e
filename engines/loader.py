"""Choosing and loading a backend for a model: `load_backend(model_path, backend, device)`.

The model path may be a TensorRT plan, an ONNX file, a torch checkpoint, a folder holding
them, or `triton://host:port/model`. Artifacts that share a stem are found together
(`detector.onnx` finds `detector.plan` and `detector.pt` beside it), so `auto` can pick:

    tensorrt     if an engine (.plan) and the TensorRT library are present
    torch        else, on CUDA, if a checkpoint is present (fp16 + CUDA graphs)
    onnxruntime  else (CPU; the embedded default)

The chosen backend and the reason are logged. torch and TensorRT are imported only when
their backend is chosen, so the slim runtime never imports them.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

from engines.manifest import load_engine_manifest, load_onnx_manifest
from monitor.backend import Backend
from monitor.contract import InputContract
from monitor.errors import BackendUnavailableError, ModelFormatError
from monitor.models import DEFAULT_MODEL, resolve_model

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "tensorrt", "torch", "onnxruntime", "triton")
PLAN_SUFFIXES = (".plan", ".engine")
ONNX_SUFFIXES = (".onnx",)
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")
TRITON_SCHEME = "triton://"
DEFAULT_STEM = "model"  # file stem looked for inside a model folder


@dataclass(frozen=True)
class Artifacts:
    """The model files found for one model path."""

    plan: Path | None = None
    onnx: Path | None = None
    checkpoint: Path | None = None
    triton_url: str | None = None  # triton://host:port/model[/version]

    def describe(self) -> str:
        found = [f"{k}={v}" for k, v in vars(self).items() if v is not None]
        return ", ".join(found) or "nothing"


def _first(folder: Path, stem: str, suffixes: tuple[str, ...]) -> Path | None:
    for suf in suffixes:
        cand = folder / f"{stem}{suf}"
        if cand.is_file():
            return cand
    return None


def _only(folder: Path, suffixes: tuple[str, ...]) -> Path | None:
    found = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in suffixes)
    return found[0] if len(found) == 1 else None


def find_artifacts(model_path: str | Path) -> Artifacts:
    """Locate the plan, ONNX file and checkpoint that belong to `model_path` (`default`:
    the detector shipped in monitor/models/default/)."""
    model_path = resolve_model(model_path)
    text = str(model_path)
    if text.startswith(TRITON_SCHEME):
        return Artifacts(triton_url=text)
    p = Path(model_path)
    if p.is_dir():
        groups = (PLAN_SUFFIXES, ONNX_SUFFIXES, CHECKPOINT_SUFFIXES)
        plan, onnx, ckpt = (_first(p, DEFAULT_STEM, g) or _only(p, g) for g in groups)
        found = Artifacts(plan=plan, onnx=onnx, checkpoint=ckpt)
    elif p.is_file():
        folder, stem, suf = p.parent, p.stem, p.suffix
        found = Artifacts(
            plan=p if suf in PLAN_SUFFIXES else _first(folder, stem, PLAN_SUFFIXES),
            onnx=p if suf in ONNX_SUFFIXES else _first(folder, stem, ONNX_SUFFIXES),
            checkpoint=p
            if suf in CHECKPOINT_SUFFIXES
            else _first(folder, stem, CHECKPOINT_SUFFIXES),
        )
        if suf not in PLAN_SUFFIXES + ONNX_SUFFIXES + CHECKPOINT_SUFFIXES:
            raise ModelFormatError(
                f"{p}: unknown model file type {suf!r}; expected a TensorRT plan "
                f"({', '.join(PLAN_SUFFIXES)}), an ONNX file (.onnx) or a torch checkpoint "
                f"({', '.join(CHECKPOINT_SUFFIXES)})"
            )
    elif p == DEFAULT_MODEL:
        raise ModelFormatError(
            f"the shipped default model is missing ({p}): reinstall the package, rebuild it "
            "with `make model`, or give a model with --model"
        )
    else:
        raise ModelFormatError(f"{model_path}: no such model file or folder")
    if found.checkpoint is None and found.onnx is not None:
        found = _with_source_checkpoint(found)
    return found


def _with_source_checkpoint(found: Artifacts) -> Artifacts:
    """The checkpoint an ONNX file was exported from, if its manifest names one beside it."""
    assert found.onnx is not None
    try:
        name = load_onnx_manifest(found.onnx, verify=False).source_checkpoint
    except ModelFormatError:
        return found
    cand = found.onnx.parent / Path(name).name
    if name and cand.is_file() and cand.suffix in CHECKPOINT_SUFFIXES:
        return Artifacts(plan=found.plan, onnx=found.onnx, checkpoint=cand)
    return found


class Probe(Protocol):
    """What this machine offers; tests substitute a fixed answer."""

    def has_tensorrt(self) -> bool: ...
    def has_torch(self) -> bool: ...
    def torch_cuda(self) -> bool: ...


class SystemProbe:
    """Looks at the installed libraries and GPU, importing each library at most once."""

    @cached_property
    def _tensorrt(self) -> bool:
        if (
            importlib.util.find_spec("tensorrt") is None
            or importlib.util.find_spec("pycuda") is None
        ):
            return False
        try:
            import tensorrt
        except ImportError as exc:  # libraries present but unloadable (no driver, wrong CUDA)
            logger.info("tensorrt is installed but cannot be imported: %s", exc)
            return False
        # a bare `tensorrt/` folder (e.g. left by type stubs) imports as an empty namespace
        return hasattr(tensorrt, "Runtime")

    @cached_property
    def _cuda(self) -> bool:
        if not self.has_torch():
            return False
        import torch

        return bool(torch.cuda.is_available())

    def has_tensorrt(self) -> bool:
        return self._tensorrt

    def has_torch(self) -> bool:
        return importlib.util.find_spec("torch") is not None

    def torch_cuda(self) -> bool:
        return self._cuda


@dataclass(frozen=True)
class Choice:
    """Which backend to build, on what file and device, and why."""

    backend: str
    path: str
    device: str
    reason: str


def choose_backend(
    found: Artifacts, backend: str = "auto", device: str = "auto", probe: Probe | None = None
) -> Choice:
    """Apply the selection rule; raise BackendUnavailableError naming what is missing."""
    probe = probe or SystemProbe()
    if backend not in BACKENDS:
        raise BackendUnavailableError(
            f"unknown backend {backend!r} (choose from {', '.join(BACKENDS)})"
        )
    cpu_only = device == "cpu"
    if found.triton_url is not None:
        if backend not in ("auto", "triton"):
            raise BackendUnavailableError(
                f"{found.triton_url} can only be served by the triton backend"
            )
        return Choice("triton", found.triton_url, "remote", "model path is a Triton server URL")
    if backend == "auto":
        return _auto_choice(found, cpu_only, device, probe)
    return _asked_choice(found, backend, cpu_only, device, probe)


def _asked_choice(
    found: Artifacts, backend: str, cpu_only: bool, device: str, probe: Probe
) -> Choice:
    """The backend named on the command line, or why it cannot run these files."""
    if backend == "tensorrt":
        if found.plan is None:
            raise BackendUnavailableError(
                "backend tensorrt needs an engine (.plan): build one with "
                "`deepfake-monitor build-engine MODEL.onnx --out MODEL.plan`"
            )
        if not probe.has_tensorrt():
            raise BackendUnavailableError(
                "backend tensorrt needs the TensorRT and pycuda libraries "
                "(pip install 'deepfake-monitor[tensorrt]', or use the NVIDIA TensorRT container)"
            )
        return Choice("tensorrt", str(found.plan), "cuda", "asked for tensorrt")
    if backend == "torch":
        if found.checkpoint is None:
            raise BackendUnavailableError(
                "backend torch needs a torch checkpoint (.pt) beside the model"
            )
        if not probe.has_torch():
            raise BackendUnavailableError(
                "backend torch needs torch: pip install 'deepfake-monitor[train]'"
            )
        dev = "cpu" if cpu_only or not probe.torch_cuda() else "cuda"
        if device.startswith("cuda") and dev == "cpu":
            raise BackendUnavailableError(
                f"device {device!r} asked for, but torch sees no CUDA GPU"
            )
        return Choice("torch", str(found.checkpoint), dev, "asked for torch")
    if backend == "onnxruntime":
        if found.onnx is None:
            raise BackendUnavailableError(
                "backend onnxruntime needs an ONNX file: export one with "
                "`deepfake-monitor export CHECKPOINT --out MODEL.onnx`"
            )
        return Choice("onnxruntime", str(found.onnx), device, "asked for onnxruntime")
    raise BackendUnavailableError(
        "backend triton needs a model path of the form triton://host:port/model"
    )


def _auto_choice(found: Artifacts, cpu_only: bool, device: str, probe: Probe) -> Choice:
    """tensorrt if an engine and the library are present, else torch on CUDA, else
    onnxruntime, else the torch CPU reference."""
    if found.plan is not None and not cpu_only:
        if probe.has_tensorrt():
            return Choice(
                "tensorrt",
                str(found.plan),
                "cuda",
                "an engine and the TensorRT library are present",
            )
        logger.info("engine %s found but the TensorRT library is not installed", found.plan)
    if found.checkpoint is not None and not cpu_only and probe.has_torch() and probe.torch_cuda():
        return Choice(
            "torch",
            str(found.checkpoint),
            "cuda",
            "no usable engine; a checkpoint and a CUDA GPU are present",
        )
    if found.onnx is not None:
        why = "cpu asked for" if cpu_only else "no usable engine and no checkpoint on a CUDA GPU"
        return Choice("onnxruntime", str(found.onnx), device, f"{why}; an ONNX file is present")
    if found.checkpoint is not None and probe.has_torch():
        return Choice(
            "torch",
            str(found.checkpoint),
            "cpu",
            "only a checkpoint is present (torch CPU reference)",
        )
    raise BackendUnavailableError(
        f"no backend can run the model files found ({found.describe()}): "
        "export an ONNX file with `deepfake-monitor export CHECKPOINT --out MODEL.onnx`"
    )


def load_backend(
    model_path: str | Path,
    backend: str = "auto",
    device: str = "auto",
    *,
    contract: InputContract | None = None,
    workers: int = 1,
    probe: Probe | None = None,
) -> Backend:
    """Build the backend for a model; its contract comes from the manifest or checkpoint.

    `contract`, if given, is the contract this runtime was set up for; a model with any
    other contract is refused (ContractError). `workers` is the number of threads that
    may call `score` at the same time (one TensorRT execution context each).
    """
    choice = choose_backend(find_artifacts(model_path), backend, device, probe)
    logger.info(
        "backend %s on %s (%s): %s", choice.backend, choice.device, choice.path, choice.reason
    )
    built: OnnxRuntimeBackend | TensorRTBackend | TorchBackend | TritonBackend
    calibration: dict[str, Any] | None = None
    if choice.backend == "onnxruntime":
        from engines.ort_backend import OnnxRuntimeBackend

        manifest = load_onnx_manifest(choice.path)
        _check_expected(contract, manifest.contract, choice.path)
        built = OnnxRuntimeBackend(choice.path, manifest.contract, device=choice.device)
        calibration = manifest.calibration
    elif choice.backend == "tensorrt":
        from engines.trt_backend import TensorRTBackend

        emanifest = load_engine_manifest(choice.path)
        _check_expected(contract, emanifest.contract, choice.path)
        built = TensorRTBackend(choice.path, emanifest, workers=workers)
        calibration = emanifest.calibration
    elif choice.backend == "torch":
        from engines.torch_backend import TorchBackend

        built = TorchBackend.from_checkpoint(choice.path, device=choice.device)
        _check_expected(contract, built.contract, choice.path)
        calibration = built.checkpoint_calibration
    else:
        from engines.triton_backend import TritonBackend

        built = TritonBackend.from_url(choice.path)
        _check_expected(contract, built.contract, choice.path)
    # The state machine's calibrated settings travel with the model; the monitor reads them
    # from the backend (monitor.backend.model_calibration).
    built.calibration = calibration
    return built


def model_calibration(model_path: str | Path) -> dict[str, Any] | None:
    """The calibrated state settings of the model auto would choose on a CPU: from the ONNX
    or engine manifest (a checkpoint's are read when torch loads it)."""
    found = find_artifacts(model_path)
    if found.onnx is not None:
        return load_onnx_manifest(found.onnx).calibration
    if found.plan is not None:
        return load_engine_manifest(found.plan).calibration
    return None


def _check_expected(expected: InputContract | None, model: InputContract, where: str) -> None:
    if expected is not None:
        expected.check_compatible(model, what=Path(where).name or where)
