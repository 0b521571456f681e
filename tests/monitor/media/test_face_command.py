"""`deepfake-monitor faces`: faces of images and videos, as text, JSON and annotated images."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import pytest
from skimage import data as skdata

from monitor.commands import faces
from tests.monitor.media.test_faces import write_talking_head


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    faces.add_arguments(parser)
    return faces.run(parser.parse_args(argv))


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    face = tmp_path / "astronaut.png"
    cv2.imwrite(str(face), cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2BGR))
    none = tmp_path / "coffee.jpg"
    cv2.imwrite(str(none), cv2.cvtColor(skdata.coffee(), cv2.COLOR_RGB2BGR))
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    video = tmp_path / "call.mp4"
    write_talking_head(video, seconds=2.0, fps=10)
    return {"face": face, "none": none, "broken": broken, "video": video}


def test_json_has_one_object_per_file_with_its_faces(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "annotated"
    paths = [str(files[k]) for k in ("face", "none", "broken", "video")]
    assert run([*paths, "--json", "--out", str(out)]) == 1  # one file was unreadable
    reports = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["file"] for r in reports] == paths
    face, none, broken, video = reports
    (f,) = face["faces"]
    assert f["detector"] == "cnn" and f["score"] > 0.5 and face["kind"] == "image"
    x, y, w, h = f["box"]
    assert 170 < x + w / 2 < 280 and 60 < y + h / 2 < 180  # the astronaut's face
    assert set(f["landmarks"]) == {"left_eye", "right_eye", "nose", "mouth_left", "mouth_right"}
    assert f["landmarks"]["left_eye"][0] < f["landmarks"]["right_eye"][0]
    assert none["faces"] == [] and "no face" in none["reason"]
    assert "not a readable image" in broken["error"]
    assert video["kind"] == "video" and video["frames"] == 2
    assert [g["t"] for g in video["faces"]] == [0.0, 1.0]
    written = sorted(p.name for p in out.iterdir())
    assert "astronaut.png.faces.png" in written and "coffee.jpg.faces.png" in written
    assert sum(n.startswith("call.mp4.") for n in written) == 2
    annotated = cv2.imread(str(out / "astronaut.png.faces.png"))
    assert annotated.shape == (512, 512, 3)


def test_text_lines_and_the_haar_cropper(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run([str(files["face"]), str(files["none"])]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"{files['face']}: face 1 box ") and "cnn" in lines[0]
    assert "landmarks left_eye=" in lines[0]
    assert lines[1].startswith(f"{files['none']}: no face")
    assert run([str(files["face"]), "--cropper", "haar-2"]) == 0
    line = capsys.readouterr().out.strip()
    assert " haar " in line and "landmarks" not in line
