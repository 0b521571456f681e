"""`make model`: rebuild the detector shipped in monitor/models/default/ with the project's
own commands, on its own generated data, from a fixed seed.

    .venv/bin/python -m train.default_model [--work runs/default-model] [--out DIR]

Steps (each reused when its output exists, so an interrupted build resumes):
1. `synth` the training data (synth1k: 1,000 / 200 / 200 clips, seed 1, procedural voices);
2. `train` the `default` recipe (train/recipes/default.yaml) with seed 0;
3. `export` best.pt to ONNX with the parity check, into the output folder;
4. `synth` calibration calls (2 x 1,000 clips of 8-10 s, seeds 11 and 12: scenes training
   never saw), merged into one val split;
5. `calibrate` the alert settings for 1 false ALERT per stream-hour, into the manifest;
6. write the provenance into the manifest: the data recipe and its checksum, the
   checksums of the generated label files, the resolved training config, the commands.

About an hour and a half on 2 cores (the two `synth` steps ~45 min, training ~30-70 min).
The generated data stays in the work folder. The same commands on the same code give the
same data (`synth` is seeded); training on a CPU is seeded too, but its figures, not its
bits, are what the tests check (tests/monitor/test_default_model.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from monitor.errors import DatasetError
from monitor.models import DEFAULT_DIR

RECIPE = "default"  # train/recipes/default.yaml
TRAIN_SEED = 0
FALSE_ALERTS_PER_HOUR = 1.0
# The data recipes: `synth` arguments after the output folder. Their checksum goes into
# the manifest, so a model names the data it came from.
TRAIN_DATA = (
    "synth1k",
    ["--train", "1000", "--val", "200", "--test", "200", "--seed", "1", "--voices", "procedural"],
)
# Calibration calls: two 1,000-clip val splits of 8-10 s (seeds 11 and 12) merged into one,
# so each half of calibrate's choose / report split holds over an hour of real calls.
CALIBRATION_PARTS = tuple(
    (
        f"synthcal-{seed}",
        ["--train", "0", "--val", "1000", "--test", "0", "--seed", str(seed),
         "--min-duration", "8", "--max-duration", "10", "--voices", "procedural"],
    )
    for seed in (11, 12)
)  # fmt: skip
CALIBRATION_DATA = (
    "synthcal",
    [arg for _, args in CALIBRATION_PARTS for arg in ["+", *args]][1:],
)
LABEL_FILES = ("train_label.txt", "val_label.txt", "test_label.txt", "manifest.csv")


def _cli(*args: str) -> None:
    print("+ deepfake-monitor " + " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", "monitor.cli", *args], check=True)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def recipe_checksum(name: str, args: list[str]) -> str:
    """The sha256 of a data recipe: its name and its `synth` arguments, as canonical JSON."""
    return sha256_bytes(json.dumps({"name": name, "synth": args}, sort_keys=True).encode())


def _data(work: Path, recipe: tuple[str, list[str]]) -> Path:
    name, args = recipe
    root = work / name
    if (root / "manifest.csv").is_file():
        print(f"data {name}: reusing {root}", flush=True)
        return root
    _cli("synth", str(root), *args, "--overwrite")
    return root


def merge_val_splits(parts: list[Path], out: Path) -> Path:
    """One val split made of several generated ones: clips linked, label and manifest rows
    concatenated in part order (each part's names are unique hashes of its seed)."""
    if (out / "manifest.csv").is_file():
        return out
    (out / "valset").mkdir(parents=True, exist_ok=True)
    labels: list[str] = ["video_name,target"]
    manifest: list[str] = []
    for part in parts:
        for clip in sorted((part / "valset").glob("*.mp4")):
            link = out / "valset" / clip.name
            if link.is_symlink() and link.resolve() != clip.resolve():
                raise DatasetError(f"{clip.name} is in two of the merged splits ({part})")
            if not link.exists():
                link.symlink_to(clip.resolve())
        names = (part / "val_label.txt").read_text().splitlines()[1:]
        labels += names
        listed = {line.split(",")[0] for line in names}
        rows = (part / "manifest.csv").read_text().splitlines()
        manifest += rows[:1] if not manifest else []
        manifest += [r for r in rows[1:] if r.split(",")[0] in listed]  # the val rows
    (out / "val_label.txt").write_text("\n".join(labels) + "\n")
    (out / "manifest.csv").write_text("\n".join(manifest) + "\n")
    return out


def data_record(root: Path, recipe: tuple[str, list[str]]) -> dict[str, Any]:
    """What the manifest says about a dataset: its recipe, the recipe's checksum and the
    checksums of the label files it produced (so a rebuilt set can be compared)."""
    name, args = recipe
    files = {f: sha256_bytes((root / f).read_bytes()) for f in LABEL_FILES if (root / f).is_file()}
    commands = " ".join(args).split(" + ")
    return {
        "name": name,
        "command": " ; ".join(f"deepfake-monitor synth DIR {c}" for c in commands),
        "recipe_sha256": recipe_checksum(name, args),
        "label_files_sha256": files,
    }


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parents[1],
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return ""
    return out.stdout.strip()


def provenance(run: Path, data: Path, calibration_data: Path, train_command: str) -> dict[str, Any]:
    import yaml

    config_text = (run / "config.yaml").read_text()
    return {
        "recipe": RECIPE,
        "train_command": train_command,
        "train_config": yaml.safe_load(config_text),
        "train_config_sha256": sha256_bytes(config_text.encode()),
        "data": data_record(data, TRAIN_DATA),
        "calibration_data": data_record(calibration_data, CALIBRATION_DATA),
        "calibrate_command": (
            f"deepfake-monitor calibrate model.onnx DIR --false-alerts-per-hour "
            f"{FALSE_ALERTS_PER_HOUR:g}"
        ),
        "code_commit": _git_commit(),
        "rebuild": "make model",
    }


def write_provenance(model: Path, record: dict[str, Any]) -> None:
    from engines.manifest import load_onnx_manifest, write_manifest

    manifest = load_onnx_manifest(model)
    write_manifest(model, dataclasses.replace(manifest, provenance=record))


def build(work: Path, out: Path) -> Path:
    work.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    data = _data(work, TRAIN_DATA)
    run = work / "run"
    train_args = ["train", str(data), "--out", str(run), "--config", RECIPE]
    train_args += ["--seed", str(TRAIN_SEED), "--no-progress"]
    if not _finished(run):
        _cli(*train_args, *(["--resume"] if (run / "last.pt").is_file() else []))
    model = out / "model.onnx"
    staged = work / "model.onnx"
    _cli("export", str(run / "best.pt"), "--out", str(staged))
    cal = merge_val_splits([_data(work, part) for part in CALIBRATION_PARTS], work / "synthcal")
    report = work / "calibration.json"
    budget = f"{FALSE_ALERTS_PER_HOUR:g}"
    _cli("calibrate", str(staged), str(cal), "--false-alerts-per-hour", budget, "--no-progress",
         "--out", str(report))  # fmt: skip
    command = f"deepfake-monitor train DIR --config {RECIPE} --seed {TRAIN_SEED}"
    write_provenance(staged, provenance(run, data, cal, command))
    for name in ("model.onnx", "model.onnx.json"):
        shutil.copyfile(work / name, out / name)
    print(f"default model written to {model} (update {out / 'CARD.md'} with the new figures)")
    return model


def _finished(run: Path) -> bool:
    """Whether the run's metrics reached the recipe's last epoch."""
    import yaml

    metrics = run / "metrics.jsonl"
    if not (metrics.is_file() and (run / "best.pt").is_file()):
        return False
    lines = [x for x in metrics.read_text().splitlines() if x.strip()]
    epochs = int(yaml.safe_load((run / "config.yaml").read_text())["epochs"])
    return bool(lines) and int(json.loads(lines[-1])["epoch"]) >= epochs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m train.default_model", description=__doc__)
    ap.add_argument("--work", type=Path, default=Path("runs/default-model"), help="work folder")
    ap.add_argument("--out", type=Path, default=DEFAULT_DIR, help="where the model goes")
    args = ap.parse_args(argv)
    build(args.work, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
