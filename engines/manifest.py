"""Manifests: the JSON file beside every exported model that makes it self-describing.

An ONNX file `model.onnx` carries `model.onnx.json`; a TensorRT engine `model.plan` carries
`model.plan.json`. (A manifest named after the stem, `model.json`, is read too.) Each
records the input contract, the artifact's sha256 (so a manifest can never describe some
other file), and how the artifact was made: opset and parity for ONNX; TensorRT version,
GPU, precision and optimization profile for an engine. Runtimes read nothing else.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from monitor.contract import InputContract
from monitor.errors import ContractError, ModelFormatError

logger = logging.getLogger(__name__)

MANIFEST_VERSION = 1  # bump when a manifest field changes meaning
ONNX_FORMAT = "deepfake-monitor/onnx"
ENGINE_FORMAT = "deepfake-monitor/tensorrt-plan"
MANIFEST_SUFFIX = ".json"
HASH_CHUNK_BYTES = 1 << 20  # 1 MiB reads while hashing large model files


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(HASH_CHUNK_BYTES):
                h.update(chunk)
    except OSError as exc:
        raise ModelFormatError(f"cannot read {path}: {exc}") from exc
    return h.hexdigest()


def manifest_path(model_path: str | Path) -> Path:
    """Where the manifest of `model_path` is written: the file name plus `.json`."""
    p = Path(model_path)
    return p.with_name(p.name + MANIFEST_SUFFIX)


def find_manifest(model_path: str | Path) -> Path | None:
    """The manifest beside `model_path` (`model.onnx.json`, else `model.json`), if any."""
    p = Path(model_path)
    for cand in (manifest_path(p), p.with_suffix(MANIFEST_SUFFIX)):
        if cand.is_file():
            return cand
    return None


def _with_calibration(calibration: dict[str, Any] | None, d: dict[str, Any]) -> dict[str, Any]:
    # Absent, not null, when uncalibrated: manifests written before it read the same.
    if calibration is not None:
        d["calibration"] = calibration
    return d


def _calibration(data: dict[str, Any], where: str) -> dict[str, Any] | None:
    value = data.get("calibration")
    if value is not None and not isinstance(value, dict):
        raise ModelFormatError(f"{where}: calibration must be a mapping")
    return value


def _provenance(data: dict[str, Any], where: str) -> dict[str, Any] | None:
    value = data.get("provenance")
    if value is not None and not isinstance(value, dict):
        raise ModelFormatError(f"{where}: provenance must be a mapping")
    return value


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Parity:
    """How far the exported model's probabilities are from the torch reference."""

    reference: str  # what produced the reference numbers, e.g. "torch cpu fp32"
    runtime: str  # what ran the exported file, e.g. "onnxruntime CPUExecutionProvider"
    max_abs_diff: float  # max |p_export - p_torch| over all outputs and all parity inputs
    tolerance: float  # the bound export enforced
    per_input: dict[str, float] = field(default_factory=dict)  # input set -> max abs diff
    windows: int = 0  # windows compared in total

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= self.tolerance


@dataclass(frozen=True)
class OnnxManifest:
    """What `deepfake-monitor export` wrote beside an ONNX file."""

    contract: InputContract
    onnx_file: str  # file name (not path) of the ONNX model
    onnx_sha256: str
    opset: int  # default-domain opset of the graph
    precision: str  # "fp32" or "fp16" (fp16 weights and math; I/O types are the contract's)
    source_checkpoint: str  # checkpoint file name the model was exported from
    source_sha256: str  # sha256 of that checkpoint file
    parity: Parity | None  # None only for hand-made ONNX files
    model_config: dict[str, Any] = field(default_factory=dict)  # the detector's config
    tool_versions: dict[str, str] = field(default_factory=dict)  # torch, onnx, ...
    created_utc: str = ""
    calibration: dict[str, Any] | None = None  # `deepfake-monitor calibrate`'s settings
    # Where the model came from (the data recipe and its checksum, the training recipe,
    # the commands); written for the shipped default model (train/default_model.py).
    provenance: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        d = self._fields()
        if self.provenance is not None:  # absent, not null, when unknown
            d["provenance"] = self.provenance
        return d

    def _fields(self) -> dict[str, Any]:
        return _with_calibration(
            self.calibration,
            {
                "format": ONNX_FORMAT,
                "manifest_version": MANIFEST_VERSION,
                "contract": self.contract.to_dict(),
                "onnx": {
                    "file": self.onnx_file,
                    "sha256": self.onnx_sha256,
                    "opset": self.opset,
                    "precision": self.precision,
                },
                "source": {
                    "checkpoint": self.source_checkpoint,
                    "sha256": self.source_sha256,
                    "model_config": self.model_config,
                },
                "parity": asdict(self.parity) if self.parity is not None else None,
                "tool_versions": self.tool_versions,
                "created_utc": self.created_utc,
            },
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "manifest") -> OnnxManifest:
        _check_header(data, ONNX_FORMAT, where)
        try:
            onnx_part, source = data["onnx"], data["source"]
            parity = Parity(**data["parity"]) if data.get("parity") else None
            return cls(
                contract=InputContract.from_dict(data["contract"]),
                onnx_file=str(onnx_part["file"]),
                onnx_sha256=str(onnx_part["sha256"]),
                opset=int(onnx_part["opset"]),
                precision=str(onnx_part["precision"]),
                source_checkpoint=str(source["checkpoint"]),
                source_sha256=str(source["sha256"]),
                parity=parity,
                model_config=dict(source.get("model_config") or {}),
                tool_versions=dict(data.get("tool_versions") or {}),
                created_utc=str(data.get("created_utc", "")),
                calibration=_calibration(data, where),
                provenance=_provenance(data, where),
            )
        except ContractError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFormatError(f"{where}: malformed ONNX manifest ({exc!r})") from exc


@dataclass(frozen=True)
class EngineManifest:
    """What `deepfake-monitor build-engine` wrote beside a TensorRT plan."""

    contract: InputContract
    plan_file: str  # file name of the serialized engine
    plan_sha256: str
    onnx_file: str  # the ONNX file the engine was built from
    onnx_sha256: str
    tensorrt_version: str  # tensorrt.__version__ at build time; engines are tied to it
    gpu_name: str  # e.g. "NVIDIA H100 80GB HBM3"
    compute_capability: str  # "major.minor", e.g. "9.0"; engines are tied to it
    precision: str  # "fp32" or "fp16"
    min_batch: int  # optimization profile: smallest batch the engine accepts
    opt_batch: int  # batch size the kernels were tuned for
    max_batch: int  # largest batch the engine accepts; bigger ones are split
    workspace_mib: int  # builder workspace limit
    io: tuple[dict[str, Any], ...] = ()  # TensorSpec.to_dict() of every I/O tensor
    created_utc: str = ""
    calibration: dict[str, Any] | None = None  # copied from the ONNX file's manifest

    def to_dict(self) -> dict[str, Any]:
        return _with_calibration(
            self.calibration,
            {
                "format": ENGINE_FORMAT,
                "manifest_version": MANIFEST_VERSION,
                "contract": self.contract.to_dict(),
                "plan": {"file": self.plan_file, "sha256": self.plan_sha256},
                "onnx": {"file": self.onnx_file, "sha256": self.onnx_sha256},
                "tensorrt_version": self.tensorrt_version,
                "gpu": {"name": self.gpu_name, "compute_capability": self.compute_capability},
                "precision": self.precision,
                "profile": {"min": self.min_batch, "opt": self.opt_batch, "max": self.max_batch},
                "workspace_mib": self.workspace_mib,
                "io": list(self.io),
                "created_utc": self.created_utc,
            },
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "manifest") -> EngineManifest:
        _check_header(data, ENGINE_FORMAT, where)
        try:
            prof = data["profile"]
            return cls(
                contract=InputContract.from_dict(data["contract"]),
                plan_file=str(data["plan"]["file"]),
                plan_sha256=str(data["plan"]["sha256"]),
                onnx_file=str(data["onnx"]["file"]),
                onnx_sha256=str(data["onnx"]["sha256"]),
                tensorrt_version=str(data["tensorrt_version"]),
                gpu_name=str(data["gpu"]["name"]),
                compute_capability=str(data["gpu"]["compute_capability"]),
                precision=str(data["precision"]),
                min_batch=int(prof["min"]),
                opt_batch=int(prof["opt"]),
                max_batch=int(prof["max"]),
                workspace_mib=int(data["workspace_mib"]),
                io=tuple(dict(t) for t in data.get("io") or ()),
                created_utc=str(data.get("created_utc", "")),
                calibration=_calibration(data, where),
            )
        except ContractError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFormatError(f"{where}: malformed engine manifest ({exc!r})") from exc


def _check_header(data: Any, fmt: str, where: str) -> None:
    if not isinstance(data, dict):
        raise ModelFormatError(f"{where}: manifest must be a JSON object")
    if data.get("format") != fmt:
        raise ModelFormatError(f"{where}: not a {fmt} manifest (format={data.get('format')!r})")
    version = data.get("manifest_version")
    if version != MANIFEST_VERSION:
        raise ModelFormatError(
            f"{where}: manifest version {version!r} is not supported (this runtime reads "
            f"version {MANIFEST_VERSION}); re-export the model with this deepfake-monitor"
        )


def write_manifest(model_path: str | Path, manifest: OnnxManifest | EngineManifest) -> Path:
    """Write the manifest beside `model_path`; returns its path."""
    out = manifest_path(model_path)
    out.write_text(json.dumps(manifest.to_dict(), indent=2, sort_keys=False) + "\n")
    logger.info("wrote manifest %s", out)
    return out


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelFormatError(f"cannot read manifest {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ModelFormatError(f"{path}: manifest must be a JSON object")
    return data


def _require_manifest(model_path: Path, what: str, how: str) -> Path:
    found = find_manifest(model_path)
    if found is None:
        raise ModelFormatError(
            f"{model_path}: no manifest beside the {what} ({manifest_path(model_path).name}); {how}"
        )
    return found


def _verify_hash(model_path: Path, want: str, mpath: Path) -> None:
    got = sha256_file(model_path)
    if got != want:
        raise ModelFormatError(
            f"{model_path} does not match its manifest {mpath.name} (sha256 {got[:12]}… vs "
            f"{want[:12]}…): the file was replaced or corrupted; re-export or rebuild it"
        )


def load_onnx_manifest(onnx_path: str | Path, *, verify: bool = True) -> OnnxManifest:
    """Read and check the manifest of an ONNX file (sha256 verified unless verify=False)."""
    p = Path(onnx_path)
    mpath = _require_manifest(
        p, "ONNX file", "export it with `deepfake-monitor export CHECKPOINT --out FILE.onnx`"
    )
    manifest = OnnxManifest.from_dict(_read_json(mpath), str(mpath))
    if verify:
        _verify_hash(p, manifest.onnx_sha256, mpath)
    return manifest


def load_engine_manifest(plan_path: str | Path, *, verify: bool = True) -> EngineManifest:
    """Read and check the manifest of a TensorRT plan (sha256 verified unless verify=False)."""
    p = Path(plan_path)
    mpath = _require_manifest(
        p, "engine", "build it with `deepfake-monitor build-engine MODEL.onnx --out FILE.plan`"
    )
    manifest = EngineManifest.from_dict(_read_json(mpath), str(mpath))
    if verify:
        _verify_hash(p, manifest.plan_sha256, mpath)
    return manifest
