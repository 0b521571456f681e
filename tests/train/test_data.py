"""Competition folders, label files, manifest, the per-clip cache, sampling, augmentation."""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from monitor.contract import CROPPER_HAAR, InputContract
from monitor.errors import DatasetError
from monitor.media.faces import CROPPER_VERSION
from tests.support.tiny_dataset import TINY_CONTRACT, write_clip, write_corrupt, write_dataset
from train.augment import (
    NOISE_BANK_SIZE,
    RESIZE_INTERPOLATIONS,
    Augmenter,
    blend_mask,
    color_jitter,
    denoise,
    freeze,
    gaussian_noise,
    h264_recompress,
    has_voice,
    jpeg_recompress,
    resize_down_up,
    self_blend,
    voice_resynth,
)
from train.cache import CacheSpec, build_cache, load_window, load_windows
from train.config import AugmentConfig
from train.sampling import LABEL_UNKNOWN, EpochSampler, WindowDataset, head_labels
from train.splits import ClipRecord, find_split, load_split, read_labels, read_manifest

# --- label files -------------------------------------------------------------------------


def _labels(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "train_label.txt"
    p.write_text(text)
    return p


def test_read_labels_ok_with_bom_and_blank_lines(tmp_path: Path) -> None:
    p = tmp_path / "l.txt"
    p.write_bytes("\ufeffvideo_name,target\na.mp4,1\n\nb.mp4, 0\n".encode())
    assert read_labels(p) == [("a.mp4", 1), ("b.mp4", 0)]


@pytest.mark.parametrize(
    ("text", "where", "what"),
    [
        ("video_name,label\na.mp4,1\n", ":1:", "header"),
        ("video_name,target\na.mp4,1\nb.mp4\n", ":3:", "expected 2 columns"),
        ("video_name,target\na.mp4,1,x\n", ":2:", "expected 2 columns"),
        ("video_name,target\na.mp4,1\nb.mp4,0.7\n", ":3:", "target must be 0 or 1"),
        ("video_name,target\na.mp4,yes\n", ":2:", "target must be 0 or 1"),
        ("video_name,target\n,1\n", ":2:", "empty video_name"),
        ("video_name,target\n../x.mp4,1\n", ":2:", "plain file name"),
        ("video_name,target\na.mp4,1\na.mp4,0\n", ":3:", "already listed on line 2"),
        ("video_name,target\n", "", "lists no clips"),
    ],
)
def test_read_labels_errors_name_file_and_line(
    tmp_path: Path, text: str, where: str, what: str
) -> None:
    p = _labels(tmp_path, text)
    with pytest.raises(DatasetError, match=what) as err:
        read_labels(p)
    assert str(p) + where in str(err.value)


def test_manifest_errors(tmp_path: Path) -> None:
    p = tmp_path / "manifest.csv"
    p.write_text("video_name,split,target,audio_fake,video_fake,method\na.mp4,trainset,1,1,2,x\n")
    with pytest.raises(DatasetError, match=r"manifest.csv:2: video_fake must be 0 or 1"):
        read_manifest(p)
    p.write_text("video_name,target,audio_fake\na.mp4,1\n")
    with pytest.raises(DatasetError, match=r"manifest.csv:2: row has"):
        read_manifest(p)
    p.write_text("name,target\n")
    with pytest.raises(DatasetError, match="'video_name' column"):
        read_manifest(p)
    p.write_text("video_name,target,audio_fake,video_fake\na.mp4,1,,1\n")
    row = read_manifest(p)["a.mp4"]
    assert (row.target, row.audio_fake, row.video_fake, row.method) == (1, None, 1, None)
    assert row.family is None
    p.write_text("video_name,target,audio_fake,video_fake,method,family\na.mp4,1,0,1,m,sync\n")
    assert read_manifest(p)["a.mp4"].family == "sync"
    assert read_manifest(p)["a.mp4"].face_px is None  # no face_height_px column


def test_manifest_face_height(tmp_path: Path) -> None:
    p = tmp_path / "manifest.csv"
    p.write_text("video_name,target,face_height_px\na.mp4,1,163.5\nb.mp4,0,\n")
    rows = read_manifest(p)
    assert rows["a.mp4"].face_px == 163.5 and rows["b.mp4"].face_px is None
    for bad in ("-3", "0", "big", "nan", "inf"):
        p.write_text(f"video_name,target,face_height_px\na.mp4,1,{bad}\n")
        with pytest.raises(DatasetError, match=r"manifest.csv:2: face_height_px must be a posi"):
            read_manifest(p)


def test_head_labels_keep_sync_fakes_out_of_the_visual_loss() -> None:
    u = LABEL_UNKNOWN
    # (target, audio_fake, video_fake, family) -> (audio, visual, sync) labels
    assert head_labels(0, 0, 0, "real") == (0, 0, 0)
    assert head_labels(0, None, None, None) == (u, u, 0)  # a real is in sync
    assert head_labels(1, 0, 1, "sync") == (0, u, u)  # untouched frames: not visual
    assert head_labels(1, 0, 1, "face") == (0, 1, u)  # fakes: sync learnt from reals only
    assert head_labels(1, 1, 0, "audio") == (1, 0, u)
    assert head_labels(1, None, None, None) == (u, u, u)  # competition labels only


# --- folders -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tiny")
    return write_dataset(root, {"real": 4, "voice_clone": 2, "face_swap": 2}, seed=3)


def test_load_split_with_manifest(tiny: Path) -> None:
    idx = load_split(tiny, "train")
    assert idx.split == "trainset" and len(idx) == 8 and idx.n_fake == 4 and not idx.missing
    by_method = {r.method for r in idx.records}
    assert by_method == {"real", "voice_clone", "face_swap"}
    clone = next(r for r in idx.records if r.method == "voice_clone")
    assert (clone.target, clone.audio_fake, clone.video_fake) == (1, 1, 0)
    assert clone.family == "audio"
    assert load_split(tiny, "valset").split == "valset"


def test_phase1_layout_and_long_label_names(tmp_path: Path) -> None:
    root = tmp_path / "data"
    write_dataset(
        root / "phase1",
        {"real": 1, "both": 1},
        manifest=False,
        label_names=("trainset_label.txt", "valset_label.txt"),
    )
    clip_dir, label = find_split(root, "val")
    assert clip_dir == root / "phase1" / "valset" and label.name == "valset_label.txt"
    idx = load_split(root, "train")
    assert len(idx) == 2 and idx.manifest is None
    assert all(r.audio_fake is None and r.method is None for r in idx.records)
    with pytest.raises(DatasetError, match="no 'testset/' folder"):
        find_split(root, "test")


def test_missing_clips_are_skipped_and_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "trainset").mkdir()
    write_clip(tmp_path / "trainset" / "here.mp4", False, False, seed=1)
    (tmp_path / "train_label.txt").write_text(
        "video_name,target\nhere.mp4,0\ngone1.mp4,1\ngone2.mp4,0\n"
    )
    with caplog.at_level(logging.WARNING):
        idx = load_split(tmp_path, "train")
    assert [r.name for r in idx.records] == ["here.mp4"]
    assert idx.missing == ("gone1.mp4", "gone2.mp4")
    assert "2 of 3 listed clips are missing" in caplog.text
    (tmp_path / "train_label.txt").write_text("video_name,target\ngone1.mp4,1\n")
    with pytest.raises(DatasetError, match="none of the 1 listed clips"):
        load_split(tmp_path, "train")


def test_manifest_disagreeing_with_labels_is_refused(tmp_path: Path) -> None:
    (tmp_path / "trainset").mkdir()
    write_clip(tmp_path / "trainset" / "a.mp4", False, False, seed=1)
    (tmp_path / "train_label.txt").write_text("video_name,target\na.mp4,0\n")
    (tmp_path / "manifest.csv").write_text("video_name,target,audio_fake,video_fake\na.mp4,1,1,0\n")
    with pytest.raises(DatasetError, match="manifest and labels disagree"):
        load_split(tmp_path, "train")


# --- cache -------------------------------------------------------------------------------


def test_cache_builds_once_skips_corrupt_and_reuses(
    tiny: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    records = list(load_split(tiny, "train").records[:3])
    bad = write_corrupt(tmp_path / "bad.mp4")
    records.append(ClipRecord("bad.mp4", bad, 0))
    spec = CacheSpec(tmp_path / "cache", TINY_CONTRACT, max_windows=8)
    with caplog.at_level(logging.WARNING):
        rep = build_cache(records, spec, workers=0)
    assert rep.built == 3 and rep.reused == 0 and list(rep.failed) == ["bad.mp4"]
    assert "CorruptMediaError" in rep.failed["bad.mp4"]
    assert "bad.mp4: skipped, cannot decode" in caplog.text
    assert "1 failed to decode (1 CorruptMediaError)" in rep.summary()
    w = load_windows(rep.clips[0].npz)
    assert w.audio.dtype == np.float32 and w.audio.shape == (3, TINY_CONTRACT.window_samples)
    assert w.faces.shape == (3, *TINY_CONTRACT.faces_shape) and w.faces.dtype == np.uint8
    assert rep.clips[0].n_windows == 3

    # Second pass: nothing decoded again, the corrupt clip's marker is honoured.
    rep2 = build_cache(records, spec, workers=0)
    assert rep2.built == 0 and rep2.reused == 3 and list(rep2.failed) == ["bad.mp4"]

    # A touched clip gets a new entry; another contract gets another folder.
    st = records[0].path.stat()
    os.utime(records[0].path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert build_cache(records[:1], spec, workers=0).built == 1
    other = CacheSpec(tmp_path / "cache", TINY_CONTRACT, max_windows=2)
    rep3 = build_cache(records[:1], other, workers=0)
    assert other.folder != spec.folder and rep3.built == 1 and rep3.clips[0].n_windows == 2
    # crops made by another version of the face cropper are never reused
    folder = spec.folder
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("train.cache.CROPPER_VERSION", CROPPER_VERSION + 1)
        assert spec.folder != folder


def test_load_window_reads_one_row_like_np_load(tiny: Path, tmp_path: Path) -> None:
    records = list(load_split(tiny, "train").records[:1])
    rep = build_cache(records, CacheSpec(tmp_path / "cache", TINY_CONTRACT), workers=0)
    npz = rep.clips[0].npz
    full = load_windows(npz)
    n = full.audio.shape[0]
    for index in (0, n - 1, n + 1):  # the index wraps around the clip's windows
        audio, faces = load_window(npz, index)
        assert audio.dtype == np.float32 and np.array_equal(audio, full.audio[index % n])
        assert np.array_equal(faces, full.faces[index % n])
        assert faces.flags.c_contiguous and faces.flags.writeable  # augmentable in place


@pytest.mark.parametrize("layout", ["compressed", "fortran"])
def test_load_window_falls_back_for_other_layouts(tmp_path: Path, layout: str) -> None:
    rng = np.random.default_rng(0)
    audio = rng.standard_normal((3, 40)).astype(np.float16)
    faces = rng.integers(0, 256, (3, 2, 4, 4, 3), dtype=np.uint8)
    path = tmp_path / "clip.npz"
    if layout == "compressed":
        np.savez_compressed(path, audio=audio, faces=faces)
    else:
        np.savez(path, audio=np.asfortranarray(audio), faces=np.asfortranarray(faces))
    got_audio, got_faces = load_window(path, 4)
    assert np.array_equal(got_audio, audio[1].astype(np.float32))
    assert np.array_equal(got_faces, faces[1])


def test_cache_keys_move_only_for_contracts_whose_crops_changed() -> None:
    root = Path("cache")
    # The cap's rule changed (it stops at the face box): capped contracts' caches are
    # re-made, while an uncapped contract's key stayed what it was before the cap existed
    # ("acc1f4ac37f95ef0"). Every key moved when crops began to come from the frame nearest
    # to their time instead of the frame on screen (FRAME_PICK), since every crop can.
    plain = CacheSpec(root, InputContract(cropper=CROPPER_HAAR)).key
    assert plain == "485206830ce9e102"
    capped = InputContract(crop_size=224, max_crop_downscale=1.0, cropper=CROPPER_HAAR)
    assert CacheSpec(root, capped).key not in {"cbcf78e31f70007c", "acc1f4ac37f95ef0", plain}
    assert (
        CacheSpec(root, capped).key != CacheSpec(root, replace(capped, max_crop_downscale=2.0)).key
    )


def test_cache_in_worker_processes(tiny: Path, tmp_path: Path) -> None:
    records = list(load_split(tiny, "val").records)
    records.append(ClipRecord("bad.mp4", write_corrupt(tmp_path / "bad.mp4"), 1))
    spec = CacheSpec(tmp_path / "cache", TINY_CONTRACT)
    rep = build_cache(records, spec, workers=2)
    assert rep.built == len(records) - 1 and list(rep.failed) == ["bad.mp4"]
    assert sorted(c.record.name for c in rep.clips) == sorted(r.name for r in records[:-1])


# --- sampling and datasets ---------------------------------------------------------------


def test_epoch_sampler_balances_and_shards() -> None:
    targets = [1] * 9 + [0] * 3
    s = EpochSampler(targets, seed=5, balance=True)
    order = s.epoch_order()
    assert order.size == 12 and int(np.isin(order, np.arange(9)).sum()) == 6
    # the 3 reals are drawn twice each before any repeats a third time
    assert sorted(np.bincount(order[order >= 9] - 9, minlength=3).tolist()) == [2, 2, 2]
    again = EpochSampler(targets, seed=5, balance=True)
    assert np.array_equal(order, again.epoch_order())
    s.set_epoch(1)
    assert not np.array_equal(order, s.epoch_order())
    shards = [list(EpochSampler(targets, 5, True, rank=r, world_size=5)) for r in range(5)]
    assert [len(x) for x in shards] == [3] * 5
    positions = sorted(p for sh in shards for _, p in sh)
    assert positions == list(range(15))
    plain = EpochSampler(targets, seed=0, balance=False).epoch_order()
    assert sorted(plain.tolist()) == list(range(12))


def test_window_dataset_items_are_deterministic(tiny: Path, tmp_path: Path) -> None:
    idx = load_split(tiny, "train")
    spec = CacheSpec(tmp_path / "cache", TINY_CONTRACT)
    clips = build_cache(list(idx.records), spec).clips
    aug = Augmenter(AugmentConfig())
    ds = WindowDataset(clips, aug, seed=1)
    a, b = ds[(0, 4)], WindowDataset(clips, aug, seed=1)[(0, 4)]
    assert np.array_equal(a["faces"], b["faces"]) and np.array_equal(a["audio"], b["audio"])
    assert a["audio"].dtype == np.float32 and a["faces"].shape == TINY_CONTRACT.faces_shape
    real = next(i for i, c in enumerate(clips) if c.record.method == "real")
    assert ds[real]["target"] == 0 and ds[real]["audio_fake"] == 0
    bare = replace(clips[0], record=ClipRecord(clips[0].record.name, clips[0].record.path, 1))
    unlabelled = WindowDataset([bare], None, seed=1)
    assert unlabelled[0]["audio_fake"] == LABEL_UNKNOWN == unlabelled[0]["video_fake"]


# --- augmentation ------------------------------------------------------------------------


def test_augmentations_change_pixels_but_keep_shapes() -> None:
    rng = np.random.default_rng(0)
    faces = rng.integers(0, 256, size=(3, 32, 32, 3), dtype=np.uint8)
    j = jpeg_recompress(faces, 20)
    assert j.shape == faces.shape and j.dtype == np.uint8
    assert 2 < np.abs(j.astype(int) - faces).mean() < 80
    r = resize_down_up(faces, 0.5, 1)
    assert r.shape == faces.shape and not np.array_equal(r, faces)
    flat = np.full((2, 8, 8, 3), 100, dtype=np.uint8)
    assert (color_jitter(flat, 1.2, 1.0, 1.0) == 120).all()  # brightness scales levels
    assert (color_jitter(flat, 1.0, 0.5, 1.0) == 100).all()  # contrast keeps the mean grey
    off = Augmenter(AugmentConfig(enabled=False))
    audio = rng.normal(0, 0.1, 1000).astype(np.float32)
    a2, f2 = off(audio, faces, rng)
    assert a2 is audio and f2 is faces
    on = Augmenter(AugmentConfig(audio_gain_prob=1.0, audio_noise_prob=1.0, jpeg_prob=1.0))
    a3, f3 = on(audio, faces, rng)
    assert a3.dtype == np.float32 and not np.array_equal(a3, audio)
    assert f3.shape == faces.shape and not np.array_equal(f3, faces)


def _grid_step(faces: np.ndarray, period: int) -> float:
    """Mean |horizontal step| across column boundaries that are multiples of `period`,
    over the mean step elsewhere: > 1 where a codec's blocks of that size show."""
    grey = faces.astype(float).mean(axis=-1)
    steps = np.abs(np.diff(grey, axis=2)).mean(axis=(0, 1))  # step between col j and j+1
    on = np.arange(steps.size) % period == period - 1
    return float(steps[on].mean() / steps[~on].mean())


def test_codec_at_scale_compresses_the_small_frame_with_the_same_draws() -> None:
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[0:128, 0:128]
    shade = 128 + 60 * np.sin(xx / 9.0) * np.cos(yy / 13.0)
    faces = np.clip(shade[None, :, :, None] + rng.normal(0, 6, (2, 128, 128, 3)), 0, 255)
    faces = faces.astype(np.uint8)
    # compressed at a quarter of the size, the blocks are 32 px once upscaled, not 8
    small_first = resize_down_up(faces, 0.25, 1, quality=10)
    crop_after = jpeg_recompress(resize_down_up(faces, 0.25, 1), 10)
    assert _grid_step(crop_after, 8) > 1.5 > _grid_step(small_first, 8)
    assert _grid_step(small_first, 32) > 1.5
    # the augmenter draws exactly what it drew without the option, applied in that order
    only = dict(resize_prob=1.0, jpeg_prob=1.0, noise_prob=0.0, color_prob=0.0)
    plain, at_scale = AugmentConfig(**only), AugmentConfig(**only, codec_at_scale=True)
    for seed in range(4):
        r1, r2 = np.random.default_rng(seed), np.random.default_rng(seed)
        f_plain = Augmenter(plain).faces(faces, r1)
        f_scale = Augmenter(at_scale).faces(faces, r2)
        assert r1.random() == r2.random()  # the same draws were taken
        draw = np.random.default_rng(seed)
        draw.random()
        scale = float(draw.uniform(plain.resize_min_scale, 1.0))
        interp = RESIZE_INTERPOLATIONS[int(draw.integers(len(RESIZE_INTERPOLATIONS)))]
        draw.random(), draw.random(), draw.random()  # colour, noise, JPEG: all drawn
        q = int(draw.integers(plain.jpeg_quality_min, plain.jpeg_quality_max + 1))
        assert np.array_equal(f_scale, resize_down_up(faces, scale, interp, quality=q))
        assert np.array_equal(f_plain, jpeg_recompress(resize_down_up(faces, scale, interp), q))


@pytest.mark.parametrize("b,c,s", [(1.15, 0.8, 1.2), (0.85, 1.2, 0.8), (1.0, 1.0, 0.0)])
def test_color_jitter_is_brightness_then_saturation_then_contrast(
    b: float, c: float, s: float
) -> None:
    rng = np.random.default_rng(1)
    faces = rng.integers(0, 256, size=(2, 16, 16, 3), dtype=np.uint8)
    luma = np.array([0.299, 0.587, 0.114])
    x = faces.astype(np.float64) * b
    grey = (x @ luma)[..., None]
    x = grey + (x - grey) * s  # saturation around each pixel's own grey level
    x = grey.mean() + (x - grey.mean()) * c  # contrast around the stack's mean grey
    expected = np.clip(np.round(x), 0, 255)
    got = color_jitter(faces, b, c, s)
    assert got.dtype == np.uint8 and got.shape == faces.shape
    assert np.abs(got.astype(np.float64) - expected).max() <= 1.0
    if s == 0.0:  # no saturation left: every pixel is grey
        assert (got[..., 0] == got[..., 1]).all() and (got[..., 1] == got[..., 2]).all()


def test_gaussian_noise_is_unit_normal_scaled_and_differs_between_draws() -> None:
    flat = np.full((4, 48, 48, 3), 128, dtype=np.uint8)
    rng = np.random.default_rng(5)
    a = gaussian_noise(flat, 6.0, rng).astype(np.float64) - 128
    b = gaussian_noise(flat, 6.0, rng).astype(np.float64) - 128
    assert abs(a.std() - 6.0) < 0.15 and abs(a.mean()) < 0.1  # rounded, not truncated
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] < 0.05  # a new draw, not the same noise
    # neighbouring pixels are independent, as sensor noise is
    assert abs(np.corrcoef(a[..., :-1, :].ravel(), a[..., 1:, :].ravel())[0, 1]) < 0.05
    again = gaussian_noise(flat, 6.0, np.random.default_rng(5)).astype(np.float64) - 128
    assert np.array_equal(again, a)  # the generator decides the draw
    huge = np.full((1, 2, NOISE_BANK_SIZE, 1), 128, dtype=np.uint8)  # more than the bank
    out = gaussian_noise(huge, 6.0, rng).astype(np.float64) - 128
    assert out.shape == huge.shape and 5.5 < out.std() < 6.5


def test_denoise_removes_sensor_noise_and_keeps_edges() -> None:
    rng = np.random.default_rng(2)
    clean = np.full((2, 64, 64, 3), 150.0)
    clean[:, 20:44, 24:40] = 60.0  # a dark feature with sharp edges (an open mouth)
    noisy = np.clip(clean + rng.normal(0.0, 3.0, clean.shape), 0, 255).astype(np.uint8)
    out = denoise(noisy, 20.0, 2.0)
    assert out.shape == noisy.shape and out.dtype == np.uint8
    flat = (slice(None), slice(2, 16), slice(2, 60))  # skin, away from the edges
    assert out[flat].std() < noisy[flat].std() / 2  # the noise is mostly gone...
    edge_in = out[:, 30, 25].astype(float).mean()  # ...the feature's edge pixels are not
    edge_out = out[:, 30, 22].astype(float).mean()
    assert edge_out - edge_in > 80.0  # 90 levels of step, kept to within a few levels
    others_off = dict(resize_prob=0, color_prob=0, noise_prob=0, jpeg_prob=0)
    on = Augmenter(AugmentConfig(denoise_prob=1.0, **others_off))
    smoothed = on.faces(noisy, np.random.default_rng(0))
    assert smoothed[flat].std() < noisy[flat].std() / 2
    off = Augmenter(AugmentConfig(denoise_prob=0.0, **others_off))
    assert np.array_equal(off.faces(noisy, np.random.default_rng(0)), noisy)


def test_degrading_augmentations_ramp_up_over_the_warm_up() -> None:
    ramp = Augmenter(AugmentConfig(degrade_warmup_epochs=4))
    assert [ramp.degrade_strength(e) for e in range(6)] == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    assert Augmenter(AugmentConfig()).degrade_strength(0) == 1.0  # no warm-up: full odds
    rng = np.random.default_rng(4)
    faces = rng.integers(0, 256, size=(2, 48, 48, 3), dtype=np.uint8)
    degrade_all = dict(denoise_prob=1.0, resize_prob=1.0, noise_prob=1.0, jpeg_prob=1.0)
    cfg = AugmentConfig(color_prob=0.0, degrade_warmup_epochs=4, **degrade_all)
    # epoch 0: the crops are left alone; colour jitter would still fire (it is off here)
    assert np.array_equal(Augmenter(cfg).faces(faces, rng, strength=0.0), faces)
    # strength 1 draws exactly what a config without a warm-up draws
    after = Augmenter(cfg).faces(faces, np.random.default_rng(9), strength=1.0)
    plain = Augmenter(cfg.model_copy(update={"degrade_warmup_epochs": 0}))
    assert np.array_equal(after, plain.faces(faces, np.random.default_rng(9)))
    assert not np.array_equal(after, faces)
    # half way: each degrading augmentation fires in about half the samples
    fired = [
        not np.array_equal(Augmenter(cfg).faces(faces, np.random.default_rng(s), 0.5), faces)
        for s in range(200)
    ]
    assert 0.85 < np.mean(fired) < 0.99  # 1 - 0.5 ** 4 = 0.94 of samples touched


def test_freeze_holds_one_crop_over_a_run_and_nothing_else() -> None:
    faces = np.random.default_rng(0).integers(0, 256, size=(8, 16, 16, 3), dtype=np.uint8)
    out = freeze(faces, 2, 3)
    assert all(np.array_equal(out[i], faces[2]) for i in (2, 3, 4))
    assert all(np.array_equal(out[i], faces[i]) for i in (0, 1, 5, 6, 7))
    assert np.array_equal(freeze(faces, 7, 1), faces)
    with pytest.raises(ValueError, match="does not fit 8 crops"):
        freeze(faces, 6, 3)


def test_the_augmenter_freezes_a_run_of_crops_without_moving_other_draws() -> None:
    rng = np.random.default_rng(3)
    faces = rng.integers(0, 256, size=(8, 32, 32, 3), dtype=np.uint8)
    audio = rng.standard_normal(16_000).astype(np.float32)
    # crop by crop augmentations (colour jitter's contrast pivots on the stack's mean)
    degrade_all = dict(resize_prob=1.0, noise_prob=1.0, jpeg_prob=1.0, color_prob=0.0)
    off = AugmentConfig(**degrade_all)
    on = off.model_copy(update={"freeze_prob": 1.0, "freeze_max_steps": 4})
    lengths = set()
    for seed in range(12):
        a_off, f_off = Augmenter(off)(audio, faces, np.random.default_rng(seed))
        a_on, f_on = Augmenter(on)(audio, faces, np.random.default_rng(seed))
        assert np.array_equal(a_on, a_off)  # the voice is untouched
        changed = [i for i in range(8) if not np.array_equal(f_on[i], f_off[i])]
        # one run of 1..3 crops after its first differs; every other crop got its own
        # augmentations exactly as without the freeze
        assert changed and changed == list(range(changed[0], changed[-1] + 1))
        assert len(changed) <= 3 and changed[0] >= 1
        lengths.add(len(changed) + 1)
    assert lengths == {2, 3, 4}
    # with nothing else on, the frozen crops are the run's first, pixel for pixel
    bare = AugmentConfig(color_prob=0.0, resize_prob=0.0, noise_prob=0.0, jpeg_prob=0.0)
    held = Augmenter(bare.model_copy(update={"freeze_prob": 1.0}))
    out = held.faces(faces, np.random.default_rng(5))
    same = [i for i in range(1, 8) if np.array_equal(out[i], out[i - 1])]
    assert 1 <= len(same) <= 3 and np.array_equal(out[same[0] - 1], faces[same[0] - 1])


def test_the_window_dataset_applies_the_warm_up_of_its_epoch(tiny: Path, tmp_path: Path) -> None:
    idx = load_split(tiny, "train")
    clips = build_cache(list(idx.records), CacheSpec(tmp_path / "cache", TINY_CONTRACT)).clips
    real = next(i for i, c in enumerate(clips) if c.record.method == "real")
    degrade_only = AugmentConfig(
        color_prob=0.0, denoise_prob=1.0, resize_prob=1.0, noise_prob=1.0, jpeg_prob=1.0
    )
    warm = WindowDataset(
        clips, Augmenter(degrade_only.model_copy(update={"degrade_warmup_epochs": 3})), seed=1
    )
    bare = WindowDataset(clips, None, seed=1)
    for epoch, untouched in [(0, True), (3, False)]:
        warm.set_epoch(epoch)
        bare.set_epoch(epoch)
        same = np.array_equal(warm[(real, 0)]["faces"], bare[(real, 0)]["faces"])
        assert same == untouched, epoch


def test_the_window_dataset_spares_a_desync_fakes_timing(tiny: Path, tmp_path: Path) -> None:
    idx = load_split(tiny, "train")
    clips = build_cache(list(idx.records), CacheSpec(tmp_path / "cache", TINY_CONTRACT)).clips
    real = next(c for c in clips if c.record.method == "real")
    fake = next(c for c in clips if c.record.target == 1)
    # the same media, once as a fake whose evidence is its timing
    desync = replace(fake, record=replace(fake.record, family="sync"))
    timing_only = AugmentConfig(
        color_prob=0.0, resize_prob=0.0, noise_prob=0.0, jpeg_prob=0.0,
        audio_gain_prob=0.0, audio_noise_prob=0.0, self_blend_prob=0.0,
        av_offset_prob=1.0, freeze_prob=1.0,
    )  # fmt: skip
    augmented = WindowDataset([real, fake, desync], Augmenter(timing_only), seed=1)
    bare = WindowDataset([real, fake, desync], None, seed=1)
    for i, spared in [(0, False), (1, False), (2, True)]:
        a, b = augmented[(i, 0)], bare[(i, 0)]
        assert np.array_equal(a["audio"], b["audio"]) == spared, i
        assert np.array_equal(a["faces"], b["faces"]) == spared, i


def test_detail_floor_spares_a_fake_face_and_flags_degraded_windows() -> None:
    rng = np.random.default_rng(5)
    faces = rng.integers(0, 256, size=(2, 96, 96, 3), dtype=np.uint8)
    only = dict(resize_prob=1.0, jpeg_prob=1.0, noise_prob=0.0, color_prob=0.0)
    plain = AugmentConfig(**only, resize_min_scale=0.1, jpeg_quality_min=10)
    floor = AugmentConfig(
        **only, resize_min_scale=0.1, jpeg_quality_min=10,
        detail_floor_scale=0.5, detail_floor_jpeg=50,
    )  # fmt: skip
    seen = {True: 0, False: 0}
    for seed in range(12):
        draw = np.random.default_rng(seed)
        draw.random()
        scale = float(draw.uniform(0.1, 1.0))
        interp = RESIZE_INTERPOLATIONS[int(draw.integers(len(RESIZE_INTERPOLATIONS)))]
        draw.random(), draw.random(), draw.random()  # colour, noise, JPEG: all drawn
        q = int(draw.integers(10, 96))
        expect_below = scale < 0.5 or q < 50
        seen[expect_below] += 1
        # any other window: the crops it got without the floor, flagged when below it
        r1, r2 = np.random.default_rng(seed), np.random.default_rng(seed)
        f_plain = Augmenter(plain).faces(faces, r1)
        f_any, below = Augmenter(floor).faces_detail(faces, r2)
        assert np.array_equal(f_plain, f_any) and below == expect_below, seed
        after = r1.random()
        assert r2.random() == after
        # a fake face: its downscale and JPEG raised to the floor, the same draws taken
        r3 = np.random.default_rng(seed)
        f_kept, below = Augmenter(floor).faces_detail(faces, r3, keep_detail=True)
        assert not below and r3.random() == after
        small = resize_down_up(faces, max(scale, 0.5), interp)
        assert np.array_equal(f_kept, jpeg_recompress(small, max(q, 50))), seed
    assert min(seen.values()) > 0  # both kinds of window were drawn
    # off (the default): nothing is ever below it
    for seed in range(6):
        assert not Augmenter(plain).faces_detail(faces, np.random.default_rng(seed))[1]


def _talking_stack(k: int = 8, size: int = 64) -> np.ndarray:
    """A textured face-sized stack whose lower half (the mouth) changes from crop to crop."""
    rng = np.random.default_rng(0)
    grey = cv2.GaussianBlur(rng.integers(0, 256, (size, size), dtype=np.uint8), (0, 0), 1.0)
    # detail in the luma, smooth colour: what 4:2:0 keeps of a face
    base = np.stack([grey, grey * 0.8 + 20, grey * 0.6 + 30], axis=-1).astype(np.uint8)
    out = np.repeat(base[None], k, axis=0)
    for i in range(k):
        mouth = out[i, size // 2 :].astype(np.int16) + (12 if i % 2 else -12)
        out[i, size // 2 :] = np.clip(np.roll(mouth, 3 * i, axis=1), 0, 255)
    return out


def test_h264_round_trip_keeps_the_stack_and_loses_more_at_a_higher_crf() -> None:
    faces = _talking_stack()
    gentle, harsh = h264_recompress(faces, 10, 4.0), h264_recompress(faces, 51, 4.0)
    assert gentle.shape == faces.shape and gentle.dtype == np.uint8
    assert np.array_equal(harsh, h264_recompress(faces, 51, 4.0))  # single-threaded: repeatable

    def err(x: np.ndarray) -> float:
        return float(np.abs(x.astype(np.int16) - faces).mean())

    assert err(gentle) < 3.0 < 10.0 < err(harsh)

    def mouth_motion(x: np.ndarray) -> float:
        return float(np.abs(np.diff(x[:, 32:].astype(np.int16), axis=0)).mean())

    # at the lowest bitrate x264 keeps part of the previous picture: the mouth moves less
    assert mouth_motion(harsh) < 0.8 * mouth_motion(gentle)
    # sides no 4:2:0 encoder takes (odd, under a macroblock) are padded and cut back
    odd = faces[:, :7, :9]
    assert h264_recompress(odd, 30, 4.0).shape == odd.shape


def test_h264_with_camera_frames_between_crops_comes_back_fresh_and_stale_blocks() -> None:
    talking = _talking_stack()
    faces = np.stack([np.roll(c, i, axis=0) for i, c in enumerate(talking)])  # the head drifts

    def block_motion(x: np.ndarray) -> np.ndarray:
        """Mean change of each 16-px block from one crop to the next."""
        d = np.abs(np.diff(x.astype(np.int16), axis=0))
        return d.reshape(7, 4, 16, 4, 16, 3).mean(axis=(2, 4, 5))

    true = block_motion(faces)
    alone = block_motion(h264_recompress(faces, 40, 4.0)) / true
    filled = h264_recompress(faces, 40, 4.0, steps=8)
    assert filled.shape == faces.shape
    kept = block_motion(filled) / true
    # crops coded alone all move; with the frames between, x264 skips some blocks (stale)
    # while it updates others
    assert (alone < 0.3).mean() == 0.0
    assert (kept < 0.3).mean() > 0.1 and (kept > 0.5).mean() > 0.1
    # at a high quality the crops themselves come back
    assert np.abs(h264_recompress(faces, 10, 4.0, steps=8).astype(np.int16) - faces).mean() < 3


def test_h264_step_replaces_jpeg_and_keeps_a_fake_face_above_the_crf_floor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    faces = _talking_stack(size=32)
    only = dict(resize_prob=0.0, jpeg_prob=1.0, noise_prob=0.0, color_prob=0.0)
    # a share too small to be drawn: every crop and every later draw as without the step
    for seed in range(4):
        r1, r2 = np.random.default_rng(seed), np.random.default_rng(seed)
        plain = Augmenter(AugmentConfig(**only)).faces(faces, r1)
        rare = Augmenter(AugmentConfig(**only, h264_prob=1e-12)).faces(faces, r2)
        assert np.array_equal(plain, rare) and r1.random() == r2.random()
    coded: list[tuple[int, float, float, int]] = []

    def spy(x: np.ndarray, crf: int, scale: float, rate: float, steps: int) -> np.ndarray:
        coded.append((crf, scale, rate, steps))
        return x

    monkeypatch.setattr("train.augment.h264_at_scale", spy)
    cfg = AugmentConfig(
        **only, h264_prob=1.0, h264_crf_min=45, h264_crf_max=51, h264_min_scale=0.3,
        detail_floor_crf=36, detail_floor_scale=0.5,
    )  # fmt: skip
    aug = Augmenter(cfg, crop_rate=5.0)
    for seed in range(8):
        _, below = aug.faces_detail(faces, np.random.default_rng(seed))
        crf, scale, rate, steps = coded.pop()
        assert below and 45 <= crf <= 51 and 0.3 <= scale <= 1.0
        assert (rate, steps) == (5.0, 6)  # 30 camera frames a second, 5 crops a second
        # a fake whose face is its evidence: a draw past the floor leaves it uncoded
        out, below = aug.faces_detail(faces, np.random.default_rng(seed), keep_detail=True)
        assert not below and not coded and np.array_equal(out, faces)
    # under the floor a fake is coded as drawn, at no less than the floor's scale
    mild = Augmenter(cfg.model_copy(update={"h264_crf_min": 20, "h264_crf_max": 40}))
    crfs = set()
    for seed in range(16):
        _, below = mild.faces_detail(faces, np.random.default_rng(seed), keep_detail=True)
        assert not below
        if coded:
            crf, scale, _, _ = coded.pop()
            assert crf <= 36 and scale >= 0.5
            crfs.add(crf)
    assert len(crfs) > 3  # not raised or lowered to one value
    # a source downscaled below the sent frame's scale is coded at its own
    low = Augmenter(cfg.model_copy(update={"resize_prob": 1.0, "resize_min_scale": 0.1}))
    for seed in range(8):
        draw = np.random.default_rng(seed)
        draw.random()
        source = float(draw.uniform(0.1, 1.0))
        low.faces_detail(faces, np.random.default_rng(seed))
        assert coded.pop()[1] <= source
    # without a CRF floor nothing is flagged for the codec alone
    free = Augmenter(cfg.model_copy(update={"detail_floor_crf": 0, "h264_min_scale": 0.6}))
    assert not free.faces_detail(faces, np.random.default_rng(0))[1]


def test_the_window_dataset_keeps_a_fake_faces_detail(tiny: Path, tmp_path: Path) -> None:
    idx = load_split(tiny, "train")
    clips = build_cache(list(idx.records), CacheSpec(tmp_path / "cache", TINY_CONTRACT)).clips
    real = next(c for c in clips if c.record.method == "real")
    fake = next(c for c in clips if c.record.target == 1)
    face_fake = replace(fake, record=replace(fake.record, video_fake=1, family="face"))
    voice_fake = replace(fake, record=replace(fake.record, video_fake=0, family="audio"))
    heavy = dict(
        color_prob=0.0, noise_prob=0.0, jpeg_prob=0.0, self_blend_prob=0.0,
        resize_prob=1.0, resize_min_scale=0.05,
    )  # fmt: skip
    with_floor = AugmentConfig(**heavy, detail_floor_scale=1.0)
    clips3 = [real, face_fake, voice_fake]
    ds = WindowDataset(clips3, Augmenter(with_floor), seed=1)
    bare = WindowDataset(clips3, None, seed=1)
    for i, kept in [(0, False), (1, True), (2, False)]:
        a, b = ds[(i, 0)], bare[(i, 0)]
        # a scale of 1 (the floor) leaves the face fake's crops untouched
        assert np.array_equal(a["faces"], b["faces"]) == kept, i
        # every other window was downscaled below the floor: no mismatched sync pair
        assert a["sync_mismatch"] == (1.0 if kept else 0.0), i
    assert bare[(0, 0)]["sync_mismatch"] == 1.0


def test_self_blend_alters_the_inner_face_only() -> None:
    rng = np.random.default_rng(3)
    # a textured crop stack: fine detail that a lower-resolution paste would lose
    faces = rng.integers(0, 256, size=(4, 112, 112, 3), dtype=np.uint8)
    mask = blend_mask(112, np.random.default_rng(5))
    assert mask.shape == (112, 112) and mask.max() > 0.95 and mask[:6, :6].max() < 1e-3
    for seed in range(6):
        out = self_blend(faces, np.random.default_rng(seed))
        assert out.shape == faces.shape and out.dtype == np.uint8
        diff = np.abs(out.astype(int) - faces).mean(axis=(0, 3))  # [H, W]
        centre, corners = diff[46:66, 46:66].mean(), diff[:10, :10].mean()
        assert centre > 5.0 and corners < 0.5, (seed, centre, corners)
    # one transform per window: every crop of the stack is altered the same way
    flat = np.full((3, 64, 64, 3), 120, dtype=np.uint8)
    out = self_blend(flat, np.random.default_rng(1))
    assert np.array_equal(out[0], out[1]) and np.array_equal(out[1], out[2])


def test_self_blended_pseudo_fakes_replace_fake_draws(tiny: Path, tmp_path: Path) -> None:
    idx = load_split(tiny, "train")
    clips = build_cache(list(idx.records), CacheSpec(tmp_path / "cache", TINY_CONTRACT)).clips
    real = next(i for i, c in enumerate(clips) if c.record.method == "real")
    fake = next(i for i, c in enumerate(clips) if c.record.target == 1)
    always = WindowDataset(clips, Augmenter(AugmentConfig(self_blend_prob=1.0)), seed=1)
    never = WindowDataset(clips, Augmenter(AugmentConfig(self_blend_prob=0.0)), seed=1)
    # reals stay reals (the class balance of the sampler is kept) ...
    assert (always[(real, 0)]["target"], always[(real, 0)]["video_fake"]) == (0, 0)
    # ... and a fake draw becomes a real clip's self-blended face with its real voice
    item, plain = always[(fake, 0)], never[(fake, 0)]
    assert (item["target"], item["audio_fake"], item["video_fake"]) == (1, 0, 1)
    assert item["sync_fake"] == LABEL_UNKNOWN  # a fake: kept out of the sync loss
    assert plain["video_fake"] == clips[fake].record.video_fake
    assert plain["audio_fake"] == clips[fake].record.audio_fake
    assert not np.array_equal(item["faces"], plain["faces"])


def _voice(rate: int = 16_000, seconds: float = 2.0) -> np.ndarray:
    """A voiced test signal: 14 harmonics of a gliding 140 Hz pitch, in three syllables."""
    t = np.arange(int(rate * seconds)) / rate
    f0 = 140.0 + 20.0 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    tone = sum(np.sin(h * phase) / h for h in range(1, 15))
    syllables = np.clip(np.sin(2 * np.pi * 1.5 * t), 0.0, None) ** 0.5  # three bursts, pauses
    return (0.1 * tone * syllables).astype(np.float32)


def _frame_rms(x: np.ndarray, frame: int = 320) -> np.ndarray:
    n = x.size // frame
    return np.sqrt(np.mean(x[: n * frame].reshape(n, frame) ** 2, axis=1))


def _median_f0(x: np.ndarray, rate: int = 16_000) -> float:
    """Median pitch (Hz) of the loud 64-ms frames, from each frame's cepstral peak.

    The cepstrum reads the harmonic spacing of the magnitude spectrum, so a change of
    phase alone does not move it.
    """
    frame, lags = 1024, np.arange(rate // 400, rate // 80)  # pitch 80..400 Hz
    frames = x[: x.size // frame * frame].reshape(-1, frame)
    loud = frames[_frame_rms(x, frame) > 0.5 * _frame_rms(x, frame).max()]
    spectra = np.log(np.abs(np.fft.rfft(loud * np.hanning(frame), axis=1)) + 1e-6)
    cepstra = np.fft.irfft(spectra, axis=1)
    return float(np.median(rate / lags[cepstra[:, lags].argmax(axis=1)]))


def test_voice_resynth_keeps_the_speech_and_changes_the_waveform() -> None:
    voice = _voice()
    level = np.sqrt(np.mean(voice**2))
    changes = []
    for seed in range(12):
        out = voice_resynth(voice, 16_000, np.random.default_rng(seed))
        assert out.shape == voice.shape and out.dtype == np.float32 and np.isfinite(out).all()
        assert np.sqrt(np.mean(out**2)) == pytest.approx(level, rel=1e-3)  # level matched
        # timing kept: the syllables and pauses stay where they were
        assert np.corrcoef(_frame_rms(voice), _frame_rms(out))[0, 1] > 0.9, seed
        # pitch kept: the strongest harmonic moves by under 3 % (a voice conversion's
        # shift is several times that)
        assert _median_f0(out) == pytest.approx(_median_f0(voice), rel=0.03), seed
        changes.append(np.sqrt(np.mean((out - voice) ** 2)) / level)
    # every draw re-synthesises something audible (a partial one, in its stretch alone)
    assert min(changes) > 0.05
    again = voice_resynth(voice, 16_000, np.random.default_rng(3))
    assert np.array_equal(again, voice_resynth(voice, 16_000, np.random.default_rng(3)))
    assert has_voice(voice) and not has_voice(np.zeros(32_000, np.float32))
    assert not has_voice(voice * 0.01)  # -40 dB: too quiet to hold speech worth re-making


def test_voice_resynth_pseudo_fakes_replace_fake_draws(
    tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    idx = load_split(tiny, "train")
    clips = build_cache(list(idx.records), CacheSpec(tmp_path / "cache", TINY_CONTRACT)).clips
    real = next(i for i, c in enumerate(clips) if c.record.method == "real")
    fake = next(i for i, c in enumerate(clips) if c.record.target == 1)
    quiet = AugmentConfig(self_blend_prob=0.0, audio_gain_prob=0.0, audio_noise_prob=0.0)
    always = WindowDataset(
        clips, Augmenter(quiet.model_copy(update={"voice_resynth_prob": 1.0})), seed=1
    )
    never = WindowDataset(clips, Augmenter(quiet), seed=1)
    # off (the default) draws exactly what a config without it drew
    assert AugmentConfig().voice_resynth_prob == 0.0
    for pos in range(4):
        a, b = never[(fake, pos)], WindowDataset(clips, Augmenter(quiet), seed=1)[(fake, pos)]
        assert np.array_equal(a["audio"], b["audio"]) and np.array_equal(a["faces"], b["faces"])
    # reals stay reals
    assert (always[(real, 0)]["target"], always[(real, 0)]["audio_fake"]) == (0, 0)
    # the voice is a real clip's window passed through voice_resynth (tested above)
    calls: list[tuple[np.ndarray, int]] = []

    def halved(self: Augmenter, audio: np.ndarray, rate: int, rng: object) -> np.ndarray:
        calls.append((audio, rate))
        return audio * np.float32(0.5)

    monkeypatch.setattr(Augmenter, "voice_resynth", halved)
    real_windows = [w for c in clips if c.record.target == 0 for w in load_windows(c.npz).audio]
    for pos in range(6):
        item = always[(fake, pos)]
        assert (item["target"], item["audio_fake"], item["video_fake"]) == (1, 1, 0)
        assert item["sync_fake"] == LABEL_UNKNOWN and item["voice_fallback"] == 0
        source, rate = calls[-1]
        assert rate == TINY_CONTRACT.sample_rate
        assert any(np.array_equal(source, w) for w in real_windows)
        assert np.array_equal(item["audio"], source * np.float32(0.5))
    # a window without voice keeps the fake draw, and says so for the epoch's count
    monkeypatch.setattr("train.sampling.has_voice", lambda audio: False)
    item = always[(fake, 0)]
    record = clips[fake].record
    assert (item["target"], item["voice_fallback"]) == (1, 1)
    assert item["audio_fake"] == record.audio_fake and item["video_fake"] == record.video_fake
