"""The image track (FFDI) through `deepfake-monitor score`: real photographs, hostile files.

Images are written at test time: the face photographs that ship in installed packages
(scikit-image's astronaut and cameraman, matplotlib's Grace Hopper, as in
tests/monitor/media/test_face_photos.py), a texture without a face, and hostile files
(truncated, not an image, empty, headers declaring absurd sizes, a directory, a dangling
symlink). The model is engines.toy (p_visual from the face crops' brightness, p_audio from
the audio energy): an image's expected score is computed by cropping the photograph with
the shared FaceCropper and calling the backend directly, so the file's numbers are
checked exactly, and against the fused head they must not be.
"""

from __future__ import annotations

import json
import shutil
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage import data as skdata

from engines.toy import make_toy_onnx, toy_scores
from monitor.backend import load_backend
from monitor.cli import main
from monitor.contract import InputContract
from monitor.errors import DatasetError
from monitor.media.faces import FaceCropper
from monitor.media.images import (
    BadImageDimensionsError,
    CorruptImageError,
    NotImageError,
    load_image,
)
from monitor.offline.inputs import INPUT_IMAGE, INPUT_VIDEO, Shard, list_inputs
from monitor.offline.merge import merge_shards
from monitor.offline.predictions import (
    read_errors,
    read_notes,
    read_prediction_file,
    read_predictions,
)
from monitor.offline.scoring import ScoreOptions, score_videos
from tests.support.media_factory import write_clip
from train.splits import load_split

# One window of 1 s, 3 crops of 48 px: an image's window is its one crop 3 times.
CONTRACT = InputContract(window_seconds=1.0, hop_seconds=0.5, k_crops=3, crop_size=48)
GOOD = (
    "astronaut.jpg", "hopper.png", "astronaut_rgb.png", "astronaut_rgba.png",
    "camera_gray.png", "camera_gray16.png", "png_named.jpg", "bricks.png",
)  # fmt: skip
HOSTILE = {  # file -> reason in the errors report
    "truncated.jpg": "corruptimage",
    "no_end_marker.jpg": "corruptimage",
    "text.jpg": "notimage",
    "video.png": "notimage",
    "empty.jpg": "notimage",
    "huge_header.png": "badimagedimensions",
    "huge_header.jpg": "badimagedimensions",
    "tiny.png": "badimagedimensions",
    "folder.jpg": "notafile",
    "dangling.png": "medianotfound",
}


def run_cli(*args: str | Path) -> int:
    return main([str(a) for a in args])


def rgb_photo(name: str) -> np.ndarray:
    if name == "grace_hopper":
        import matplotlib.cbook

        path = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
        bgr = cv2.imread(str(path))
        assert bgr is not None
        return np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    img = np.asarray(getattr(skdata, name)())
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    return np.ascontiguousarray(img[..., :3].astype(np.uint8))


def write_rgb(path: Path, rgb: np.ndarray) -> Path:
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


def png_chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body) & 0xFFFFFFFF
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def huge_png(width: int, height: int) -> bytes:
    """A well-formed PNG header (right CRCs) declaring width x height, with a few pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 4096)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )


def with_size(jpeg: bytes, width: int, height: int) -> bytes:
    """A baseline JPEG with its frame header (SOF0) claiming another size."""
    at = jpeg.index(b"\xff\xc0")
    return jpeg[: at + 5] + struct.pack(">HH", height, width) + jpeg[at + 9 :]


def with_exif_orientation(jpeg: bytes, orientation: int) -> bytes:
    """A JPEG with an EXIF APP1 segment holding only the orientation tag."""
    ifd = struct.pack(">H", 1) + struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0)
    tiff = b"MM\x00\x2a" + struct.pack(">I", 8) + ifd + struct.pack(">I", 0)
    app1 = b"Exif\x00\x00" + tiff
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + jpeg[2:]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_toy_onnx(CONTRACT, tmp_path_factory.mktemp("model") / "toy.onnx")


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The good images of GOOD and the hostile files of HOSTILE, plus files to ignore."""
    d = tmp_path_factory.mktemp("images")
    astronaut = rgb_photo("astronaut")
    write_rgb(d / "astronaut.jpg", astronaut)
    write_rgb(d / "hopper.png", rgb_photo("grace_hopper"))
    write_rgb(d / "astronaut_rgb.png", astronaut)
    alpha = np.tile(np.linspace(0, 255, astronaut.shape[1]).astype(np.uint8), (512, 1))
    bgra = np.dstack([cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR), alpha])
    assert cv2.imwrite(str(d / "astronaut_rgba.png"), bgra)  # alpha is dropped, not blended
    camera = np.asarray(skdata.camera(), dtype=np.uint8)
    assert cv2.imwrite(str(d / "camera_gray.png"), camera)
    assert cv2.imwrite(str(d / "camera_gray16.png"), camera.astype(np.uint16) * 257)
    shutil.copyfile(d / "hopper.png", d / "png_named.jpg")  # decoded by content, not suffix
    write_rgb(d / "bricks.png", rgb_photo("brick"))  # no face: the centre crop, noted
    jpeg = (d / "astronaut.jpg").read_bytes()
    (d / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (d / "no_end_marker.jpg").write_bytes(jpeg[:-2])
    (d / "text.jpg").write_text("not an image at all\n" * 10)
    write_clip(d / "video.png", seconds=1.0, fps=5, size=(48, 48), audio_rate=None)  # an mp4
    (d / "empty.jpg").write_bytes(b"")
    (d / "huge_header.png").write_bytes(huge_png(100_000, 100_000))
    (d / "huge_header.jpg").write_bytes(with_size(jpeg, 60_000, 60_000))
    assert cv2.imwrite(str(d / "tiny.png"), np.zeros((8, 8, 3), np.uint8))
    (d / "folder.jpg").mkdir()
    (d / "dangling.png").symlink_to(d / "gone.png")
    (d / "notes.txt").write_text("not an image suffix: ignored\n")
    (d / ".hidden.jpg").write_bytes(jpeg)  # hidden: ignored
    return d


def face_path_scores(path: Path, model: Path) -> tuple[float, float, bool]:
    """(p_visual, p_fused, face found) of a photograph, computed here: decoded with OpenCV,
    cropped once by the shared cropper, K copies over silent audio, the backend called."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert bgr is not None
    crop = FaceCropper.from_contract(CONTRACT).crop(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    faces = np.stack([crop.image] * CONTRACT.k_crops)[None]
    audio = np.zeros((1, CONTRACT.window_samples), dtype=np.float32)
    backend = load_backend(model, "onnxruntime", "cpu")
    try:
        s = backend.score(audio, faces)
    finally:
        backend.close()
    assert float(s.visual[0]) == pytest.approx(float(toy_scores(audio, faces)[2][0]), abs=1e-6)
    return float(s.visual[0]), float(s.fused[0]), crop.found


def score_opts(model: Path, out: Path, **kw: object) -> ScoreOptions:
    base: dict[str, object] = {"model": str(model), "out": out, "workers": 0, "progress": False}
    base.update(kw)
    return ScoreOptions(**base)  # type: ignore[arg-type]


# --- end to end --------------------------------------------------------------------------


def test_image_folder_scored_by_the_face_path(model: Path, images: Path, tmp_path: Path) -> None:
    out = tmp_path / "prediction.txt"
    windows = tmp_path / "windows.csv"
    rc = run_cli(
        "score", images, "--model", model, "--out", out, "--workers", "2",
        "--batch-size", "4", "--windows-out", windows, "--no-progress",
    )  # fmt: skip
    assert rc == 0
    assert out.read_text().splitlines()[0] == "img_name,y_pred"
    rows = read_predictions(out)
    assert [r.video_name for r in rows] == sorted([*GOOD, *HOSTILE])  # one row each, sorted
    got = {r.video_name: r.y_pred for r in rows}

    # Each bad file: the neutral score and an errors entry naming it and the reason.
    for name in HOSTILE:
        assert got[name] == 0.5, name
    errs = read_errors(out.with_name(out.name + ".errors.json"))
    assert {e.name: e.reason for e in errs} == HOSTILE
    assert all(e.name in e.detail for e in errs)

    # A face photograph: the visual head on its face crop, as computed here; not fused.
    for name in ("astronaut.jpg", "hopper.png"):
        visual, fused, found = face_path_scores(images / name, model)
        assert found, name
        assert got[name] == pytest.approx(visual, abs=1e-6), name
        assert abs(got[name] - fused) > 0.01, name
    assert abs(got["astronaut.jpg"] - got["hopper.png"]) > 0.01
    assert got["png_named.jpg"] == got["hopper.png"]
    # Greyscale, 16-bit and RGBA files give the picture an 8-bit RGB file gives.
    assert got["camera_gray16.png"] == got["camera_gray.png"]
    assert got["camera_gray.png"] == pytest.approx(
        face_path_scores(images / "camera_gray.png", model)[0], abs=1e-6
    )
    assert got["astronaut_rgba.png"] == got["astronaut_rgb.png"]

    notes = read_notes(out.with_name(out.name + ".errors.json"))
    assert [(n.name, n.kind) for n in notes] == [("bricks.png", "noface")]
    summary = json.loads(out.with_name(out.name + ".summary.json").read_text())
    assert (summary["track"], summary["head"]) == ("image", "p_visual")
    assert (summary["videos"], summary["scored"], summary["failed"]) == (18, 8, 10)
    assert (summary["windows"], summary["no_audio"], summary["no_face"]) == (8, 0, 1)

    lines = windows.read_text().splitlines()
    assert lines[0].startswith("img_name,window,start_s,p_fused,p_audio,p_visual")
    assert len(lines) == 1 + len(GOOD)
    silence = float(toy_scores(np.zeros((1, 16), np.float32), np.zeros((1, 1), np.uint8))[1][0])
    for line in lines[1:]:
        _, window, start, _, p_audio, _, crops_found = line.split(",")
        assert (window, start) == ("0", "0.000")
        assert float(p_audio) == pytest.approx(silence, abs=1e-6)  # the audio is silence
        assert crops_found == ("0" if line.startswith("bricks.png") else str(CONTRACT.k_crops))
    assert list(out.parent.glob(".prediction.txt*.tmp")) == []


def test_label_file_as_input_keeps_order_and_gives_metrics(
    model: Path, images: Path, tmp_path: Path
) -> None:
    valset = tmp_path / "valset"
    valset.mkdir()
    for name in ("astronaut.jpg", "hopper.png", "camera_gray.png", "text.jpg"):
        shutil.copyfile(images / name, valset / name)
    order = ["hopper.png", "gone.jpg", "camera_gray.png", "astronaut.jpg", "text.jpg"]
    labels = tmp_path / "val_label.txt"  # the image track's label file: img_name,target
    labels.write_text("img_name,target\n" + "".join(f"{n},{i % 2}\n" for i, n in enumerate(order)))
    out = tmp_path / "p.txt"
    rc = run_cli(
        "score", labels, "--model", model, "--out", out, "--labels", labels,
        "--workers", "0", "--no-progress",
    )  # fmt: skip
    assert rc == 0
    column, rows = read_prediction_file(out)
    assert column == "img_name"
    assert [r.video_name for r in rows] == order  # the list's order; valset/ was found
    assert (rows[1].y_pred, rows[4].y_pred) == (0.5, 0.5)
    errs = {e.name: e.reason for e in read_errors(out.with_name(out.name + ".errors.json"))}
    assert errs == {"gone.jpg": "medianotfound", "text.jpg": "notimage"}
    assert rows[0].y_pred == pytest.approx(
        face_path_scores(images / "hopper.png", model)[0], abs=1e-6
    )
    metrics = json.loads(out.with_name(out.name + ".metrics.json").read_text())
    assert metrics["metrics"]["n"] == 5 and metrics["head"] == "visual"


def test_mixed_folder_is_one_error_line(
    model: Path, images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    shutil.copyfile(images / "astronaut.jpg", mixed / "a.jpg")
    write_clip(mixed / "b.mp4", seconds=1.0, fps=5, size=(48, 48), audio_rate=None)
    out = tmp_path / "p.txt"
    capsys.readouterr()
    assert run_cli("score", mixed, "--model", model, "--out", out, "--no-progress") == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "both videos (1: b.mp4) and images (1: a.jpg)" in err
    assert "Traceback" not in err and not out.exists()
    names = tmp_path / "names.txt"
    names.write_text("a.jpg\nb.mp4\n")
    with pytest.raises(DatasetError, match="both videos"):
        list_inputs(names, mixed)


def test_list_kinds(images: Path, tmp_path: Path) -> None:
    bare = tmp_path / "bare.txt"
    bare.write_text("hopper.png\nastronaut.jpg\n")
    assert {v.kind for v in list_inputs(bare, images)} == {INPUT_IMAGE}
    headed = tmp_path / "headed.txt"
    headed.write_text("img_name\nhopper.png\n")
    assert list_inputs(headed, images)[0].kind == INPUT_IMAGE
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("video_name\nhopper.png\n")
    with pytest.raises(DatasetError, match="use the header 'img_name'"):
        list_inputs(wrong, images)
    videos = tmp_path / "videos.txt"
    videos.write_text("video_name\nx.mp4\n")
    (tmp_path / "x.mp4").write_bytes(b"")
    assert list_inputs(videos, tmp_path)[0].kind == INPUT_VIDEO


def test_shards_merge_and_resume(model: Path, images: Path, tmp_path: Path) -> None:
    folder = tmp_path / "some"
    folder.mkdir()
    for name in ("astronaut.jpg", "hopper.png", "bricks.png", "text.jpg", "empty.jpg"):
        shutil.copyfile(images / name, folder / name)
    single = tmp_path / "single.txt"
    score_videos(folder, score_opts(model, single))
    assert single.read_text().startswith("img_name,y_pred\n")
    shards = []
    for i in range(2):
        shard = tmp_path / f"shard{i}.txt"
        score_videos(folder, score_opts(model, shard, shard=Shard(i, 2)))
        shards.append(shard)
    merged = tmp_path / "merged.txt"
    assert run_cli("merge", merged, *shards, "--names", folder) == 0
    assert merged.read_bytes() == single.read_bytes()
    assert run_cli("merge", tmp_path / "bysummary.txt", *shards) == 0
    assert (tmp_path / "bysummary.txt").read_bytes() == single.read_bytes()
    merged_errs = read_errors(merged.with_name(merged.name + ".errors.json"))
    assert [e.name for e in merged_errs] == ["empty.jpg", "text.jpg"]

    # --resume from the finished journal: nothing rescored, the same file.
    first = single.read_bytes()
    summary = score_videos(folder, score_opts(model, single, resume=True))
    assert (summary.resumed, summary.profile.videos) == (5, 0)
    assert single.read_bytes() == first

    video_file = tmp_path / "videos.txt"
    video_file.write_text("video_name,y_pred\nx.mp4,0.5\n")
    with pytest.raises(DatasetError, match="cannot be merged"):
        merge_shards(tmp_path / "m.txt", [shards[0], video_file], names=folder)


# --- decoding ------------------------------------------------------------------------------


def test_huge_headers_are_refused_before_decoding(
    images: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_decoding(*args: object) -> None:
        raise AssertionError("cv2.imdecode called on a file whose header is absurd")

    monkeypatch.setattr(cv2, "imdecode", no_decoding)
    for name in ("huge_header.png", "huge_header.jpg", "tiny.png"):
        with pytest.raises(BadImageDimensionsError, match="header declares"):
            load_image(images / name)
    with pytest.raises(CorruptImageError, match="end-of-image"):
        load_image(images / "no_end_marker.jpg")
    with pytest.raises(NotImageError, match="empty file"):
        load_image(images / "empty.jpg")


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    wide = np.zeros((40, 80, 3), np.uint8)
    wide[:, :40] = 255  # left half white
    ok, enc = cv2.imencode(".jpg", wide)
    assert ok
    path = tmp_path / "rotated.jpg"
    path.write_bytes(with_exif_orientation(enc.tobytes(), 6))  # "rotate 90 clockwise"
    shown = load_image(path)
    assert shown.shape == (80, 40, 3)
    assert shown[:30].mean() > 200 and shown[-30:].mean() < 50  # the white half on top


def test_training_refuses_image_track_labels(images: Path, tmp_path: Path) -> None:
    root = tmp_path / "ffdi" / "phase1"
    (root / "trainset").mkdir(parents=True)
    shutil.copyfile(images / "astronaut.jpg", root / "trainset" / "a.jpg")
    (root / "trainset_label.txt").write_text("img_name,target\na.jpg,0\n")
    with pytest.raises(DatasetError, match="image-track .* trains on videos only") as exc:
        load_split(tmp_path / "ffdi", "train")
    assert "\n" not in str(exc.value)
