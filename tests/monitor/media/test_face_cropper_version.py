"""The contract names its face cropper: old models keep Haar crops, caches never mix."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from monitor.contract import (
    CROPPER_CNN,
    CROPPER_CNN_ONCE,
    CROPPER_HAAR,
    DEFAULT_CROPPER,
    HEAD_OUTPUTS,
    LEGACY_CROPPER,
    InputContract,
)
from monitor.errors import ContractError
from monitor.media.decode import FRAME_PICK
from monitor.media.faces import CROPPER_VERSION, FaceCropper
from tests.monitor.media.test_faces import scene
from train.cache import CACHE_FORMAT, CacheSpec


def test_new_contracts_name_the_cnn_cropper_and_old_ones_read_as_haar(tmp_path: Path) -> None:
    new = InputContract()
    assert new.cropper == DEFAULT_CROPPER == CROPPER_CNN
    assert new.to_dict()["cropper"] == CROPPER_CNN and "centerface-1" in new.summary()
    assert InputContract.from_dict(new.to_dict()) == new
    # a manifest written before croppers had names: Haar crops, and it reads back as such
    old_json = {k: v for k, v in new.to_dict().items() if k != "cropper"}
    (tmp_path / "model.onnx.json").write_text(json.dumps(old_json))
    old = InputContract.load_json(tmp_path / "model.onnx.json")
    assert old.cropper == LEGACY_CROPPER == CROPPER_HAAR
    assert "cropper" not in old.to_dict() and old.to_dict() == old_json  # saved as before
    with pytest.raises(ContractError, match="cropper: runtime 'centerface-1' vs model 'haar-2'"):
        new.check_compatible(old)
    with pytest.raises(ContractError, match="cropper='dlib-3'.*upgrade deepfake-monitor"):
        InputContract.from_dict({**new.to_dict(), "cropper": "dlib-3"})


def test_a_model_is_cropped_with_the_cropper_it_was_trained_with() -> None:
    frame, _ = scene(360, 480, 60, 40, "texture")
    old = InputContract.from_dict({"version": 1})
    res = FaceCropper.from_contract(old).crop(frame)
    same = FaceCropper(cropper=CROPPER_HAAR).crop(frame)
    assert res.found and np.array_equal(res.image, same.image) and res.roll_deg == 0.0
    new = FaceCropper.from_contract(InputContract()).crop(frame)
    assert new.found and new.landmarks is not None and not np.array_equal(new.image, res.image)


def test_cache_keys_keep_old_caches_and_never_mix_croppers(tmp_path: Path) -> None:
    haar = InputContract(cropper=CROPPER_HAAR, crop_size=64)
    cnn = InputContract(cropper=CROPPER_CNN, crop_size=64)
    # the Haar contract's key is built as before croppers had names: no cropper in its dict
    spec = {
        "format": CACHE_FORMAT,
        "cropper": CROPPER_VERSION,
        "contract": {**haar.to_dict(), "output_names": list(HEAD_OUTPUTS)},
        "max_windows": 8,
        "audio_dtype": "float16",
        "frames": FRAME_PICK,
    }
    assert "cropper" not in spec["contract"]
    before = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
    assert CacheSpec(tmp_path, haar).key == before
    assert CacheSpec(tmp_path, cnn).folder != CacheSpec(tmp_path, haar).folder
    once = InputContract(cropper=CROPPER_CNN_ONCE, crop_size=64)
    assert CacheSpec(tmp_path, once).folder not in (
        CacheSpec(tmp_path, cnn).folder,
        CacheSpec(tmp_path, haar).folder,
    )
    with pytest.raises(
        ContractError, match="cropper: runtime 'centerface-1' vs model 'centerface-2'"
    ):
        cnn.check_compatible(once)
