"""The detector: front end vs torchaudio, shapes, batch independence, augmentation,
checkpoints, ONNX export parity, gradients, and that the fused head can learn A/V sync."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torchaudio

from monitor.contract import HEAD_OUTPUTS, InputContract
from monitor.errors import ConfigError, ContractError, ModelFormatError
from train.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from train.model import (
    MOUTH_BOX,
    Detector,
    ModelConfig,
    build_model,
    instant_weights,
    mismatch_steps,
)
from train.model.blocks import mean_max
from train.model.frontend import HighPassResidual, LogMelFrontend, SpecAugment
from train.model.raw import SincFilterbank

SR = 16_000  # Hz
FRONTEND_TOL_DB = 1e-2  # max |ours - torchaudio| in dB, anywhere above the -100 dB floor
ONNX_TOL = 1e-3  # max |onnxruntime - torch| on probabilities
# A small contract keeps the CPU tests quick; the export test uses the real default one.
SMALL = InputContract(window_seconds=1.0, hop_seconds=0.5, k_crops=4, crop_size=32)
TINY_CFG = ModelConfig.demo().replace(n_mels=32, visual_downsample=1)


def speech_like(seconds: float, seed: int = 0, level: float = 0.3) -> torch.Tensor:
    """Voiced harmonics with gliding pitch, three formants, syllable rhythm and breath noise."""
    g = torch.Generator().manual_seed(seed)
    n = round(seconds * SR)
    t = torch.arange(n, dtype=torch.float64) / SR
    f0 = 120 + 30 * torch.sin(2 * math.pi * 0.7 * t)
    phase = 2 * math.pi * torch.cumsum(f0, 0) / SR
    x = torch.zeros(n, dtype=torch.float64)
    for h in range(1, 40):
        fh = h * f0
        env = (
            torch.exp(-(((fh - 500) / 300) ** 2))
            + 0.5 * torch.exp(-(((fh - 1500) / 400) ** 2))
            + 0.2 * torch.exp(-(((fh - 2500) / 500) ** 2))
        )
        x += env * torch.sin(h * phase) * (fh < 7900)
    x *= 0.5 * (1 + torch.sin(2 * math.pi * 4 * t))
    x += 0.003 * torch.randn(n, generator=g, dtype=torch.float64)
    return (level * x / x.abs().max()).to(torch.float32)


def random_batch(
    contract: InputContract, batch: int, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    audio = 0.1 * torch.randn(batch, contract.window_samples, generator=g)
    faces = torch.randint(0, 256, (batch, *contract.faces_shape), dtype=torch.uint8, generator=g)
    return audio, faces


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    # The CI box has 2 cores shared with other jobs; intra-op threads fighting over them
    # make these small models several times slower than one thread.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_model() -> Detector:
    torch.manual_seed(0)
    return build_model(SMALL, TINY_CFG).eval()


# --- front end ---------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:At least one mel filterbank has all zero values")
@pytest.mark.parametrize("top_db", [None, 80.0])
def test_frontend_matches_torchaudio(top_db: float | None) -> None:
    x = speech_like(2.0).unsqueeze(0)
    ours = LogMelFrontend(top_db=top_db)(x)
    mel = torchaudio.transforms.MelSpectrogram(
        sample_rate=SR, n_fft=512, hop_length=160, n_mels=128, f_min=20.0, f_max=8000.0
    )
    ref = torchaudio.transforms.AmplitudeToDB(stype="power", top_db=top_db)(mel(x))
    assert ours.shape == ref.shape == (1, 128, 201)
    above_floor = ref > -100.0 + 1e-3  # the lowest mel bands are empty at n_fft=512
    assert above_floor.float().mean() > 0.9
    diff = (ours - ref).abs()[above_floor]
    assert float(diff.max()) <= FRONTEND_TOL_DB, float(diff.max())
    assert float(ref[above_floor].max() - ref[above_floor].min()) > 60.0  # a real dynamic range


def test_frontend_top_db_is_per_window() -> None:
    # torchaudio takes the top_db peak over the whole 3-D batch; ours is per window, so a
    # loud neighbour must not change a quiet window's features.
    fe = LogMelFrontend(top_db=80.0)
    quiet = speech_like(1.0, seed=1, level=1e-2)
    loud = speech_like(1.0, seed=2, level=0.9)
    alone = fe(quiet.unsqueeze(0))
    together = fe(torch.stack([quiet, loud]))
    assert float((together[:1] - alone).abs().max()) <= FRONTEND_TOL_DB
    # (torchaudio's batch-wide peak would lift this window's floor by tens of dB)
    floor_alone = float(alone.amax() - 80.0)
    assert float(together[0].min()) == pytest.approx(floor_alone, abs=FRONTEND_TOL_DB)
    assert float(together[1].min()) > floor_alone + 20.0


def test_frontend_stays_fp32_under_autocast() -> None:
    fe = LogMelFrontend()
    x = speech_like(1.0, seed=4).unsqueeze(0)
    x[0, :4000] = 1.0  # full-scale DC: its power (~65536) would overflow fp16
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = fe(x)
    assert mixed.dtype == torch.float32
    assert torch.equal(mixed, fe(x))


def _reference_phase(x: torch.Tensor, fe: LogMelFrontend) -> torch.Tensor:
    """The band phase deviation [B, 2, M, T-1] from torch.stft's complex output."""
    window = torch.hann_window(fe.n_fft, periodic=True, dtype=torch.float64)
    spec = torch.stft(
        x.double(), fe.n_fft, fe.hop_length, window=window, center=True, return_complex=True
    )
    k = torch.arange(fe.n_freq, dtype=torch.float64)
    rotate = torch.exp(-2j * math.pi * k * fe.hop_length / fe.n_fft)[:, None]
    p = spec[..., 1:] * spec[..., :-1].conj() * rotate
    fb = fe.fbank_t.double()
    band = torch.matmul(fb.to(torch.complex128), p) / torch.matmul(fb, p.abs())
    return torch.stack([band.real, band.imag], dim=1)


def test_phase_advance_matches_the_complex_stft() -> None:
    fe = LogMelFrontend()
    x = torch.stack([speech_like(1.0, seed=5), speech_like(1.0, seed=6, level=0.05)])
    db, phase = fe.mel_and_phase(x)
    assert db.shape == (2, 128, 101) and phase.shape == (2, 2, 128, 101)
    assert float((db - fe(x)).abs().max()) == 0.0  # the same log-mel as forward()
    assert torch.equal(phase[..., 0], phase[..., 1])  # the first frame repeats the second
    ref = _reference_phase(x, fe)
    loud = torch.matmul(fe.fbank_t, fe.power(x))[..., 1:] > 1e-3  # bands with energy
    assert loud.float().mean() > 0.5
    diff = (phase[..., 1:] - ref.float()).abs().amax(dim=1)[loud]
    assert float(diff.max()) < 1e-3, float(diff.max())
    assert float(phase.abs().max()) <= 1.0 + 1e-5


def test_phase_advance_is_steady_for_a_steady_tone_and_follows_its_frequency() -> None:
    # A steady tone advances by the same angle every frame, so its band's feature is
    # constant in time and moves with the tone's offset from the bin; a tone whose phase
    # jumps at random every 10 ms (what a frame-by-frame resynthesis can do) is not steady.
    fe = LogMelFrontend()
    t = torch.arange(SR, dtype=torch.float64) / SR
    f0 = 64 * SR / fe.n_fft  # 2 kHz, a bin centre

    def band_angle(x: torch.Tensor) -> torch.Tensor:
        _, phase = fe.mel_and_phase(x.float().unsqueeze(0))
        band = int(torch.matmul(fe.fbank_t, fe.power(x.float()[None]))[0, :, 50].argmax())
        return torch.atan2(phase[0, 1, band, 10:-10], phase[0, 0, band, 10:-10])

    steady = band_angle(0.5 * torch.sin(2 * math.pi * f0 * t))
    shifted = band_angle(0.5 * torch.sin(2 * math.pi * (f0 + 10.0) * t))
    g = torch.Generator().manual_seed(0)
    jumps = torch.repeat_interleave(2 * math.pi * torch.rand(100, generator=g), 160).double()
    jumpy = band_angle(0.5 * torch.sin(2 * math.pi * f0 * t + jumps))
    assert float(steady.std()) < 0.01 and float(shifted.std()) < 0.01
    assert abs(float(shifted.mean() - steady.mean())) > 0.3  # 10 Hz: 0.63 rad at the bin
    assert float(jumpy.std()) > 0.2


def test_sinc_filters_pass_their_band_and_stop_the_rest() -> None:
    bank = SincFilterbank(n_filters=8, kernel_size=129, sample_rate=SR)
    low, high = (e.detach()[:, 0] for e in bank.edges())
    assert float(low[0]) == pytest.approx(30.0, abs=0.1)
    assert float(high[-1]) == pytest.approx(SR / 2 - 50.0, abs=1.0)  # 50 Hz: narrowest band
    assert bool((high[:-1] <= low[1:] + 1e-3).all())  # mel-spaced, side by side
    t = torch.arange(SR) / SR
    for i in (3, 6):  # bands wide enough for 129 taps to resolve
        centre, far = float(low[i] + high[i]) / 2, float(low[i]) / 4
        with torch.no_grad():
            inside = bank(torch.sin(2 * math.pi * centre * t)[None, None])[0, i, 500:-500]
            outside = bank(torch.sin(2 * math.pi * far * t)[None, None])[0, i, 500:-500]
        assert float(inside.abs().max()) == pytest.approx(1.0, abs=0.1)  # unit gain
        assert float(outside.abs().max()) < 0.05


def test_raw_audio_input_learns_from_the_samples() -> None:
    cfg = TINY_CFG.replace(audio_input="raw", raw_channels=[8, 16], raw_filters=8)
    model = build_model(SMALL, cfg)
    assert model.raw_encoder is not None and not hasattr(model, "audio_backbone")
    audio, faces = random_batch(SMALL, 2, seed=5)
    audio[0] = speech_like(SMALL.window_seconds, seed=5)
    model.eval()
    with torch.no_grad():
        emb, at_crops = model.audio_features(audio)
        louder, _ = model.audio_features(audio * 4.0)
    assert emb.shape == (2, cfg.audio_dim) and at_crops.shape == (2, 1, SMALL.k_crops, cfg.sync_dim)
    # the encoder sees each window at unit RMS: level alone does not move its embedding
    raw_only = model.audio_proj(mean_max(model.raw_encoder(audio), dim=2))
    raw_louder = model.audio_proj(mean_max(model.raw_encoder(audio * 4.0), dim=2))
    assert torch.allclose(raw_only, raw_louder, atol=1e-4)
    assert torch.allclose(emb, louder, atol=1e-4)
    # the cut-off frequencies are learnt: the voice head's loss reaches them
    model.train()
    _, a_logit, _ = model(audio, faces)
    a_logit.sum().backward()
    grad = model.raw_encoder.sinc.low_hz.grad
    assert grad is not None and float(grad.abs().sum()) > 0


@pytest.mark.parametrize(
    "changes",
    [
        {"audio_input": "wave"},
        {"audio_input": "raw", "audio_phase": True},
        {"audio_input": "raw", "audio_weights": "x.pt"},
        {"raw_kernel": 128},
        {"raw_channels": []},
    ],
)
def test_raw_audio_options_are_checked(changes: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        ModelConfig.demo().replace(**changes)


def test_raw_channels_survive_the_checkpoint_dict() -> None:
    cfg = ModelConfig.demo().replace(audio_input="raw", raw_channels=[16, 32])
    again = ModelConfig.from_dict(cfg.to_dict())
    assert again == cfg and again.raw_channels == (16, 32)


def test_audio_phase_feeds_three_channels_to_the_audio_cnn() -> None:
    model = build_model(SMALL, TINY_CFG.replace(audio_phase=True)).eval()
    first = next(m for m in model.audio_backbone.modules() if isinstance(m, torch.nn.Conv2d))
    assert first.in_channels == 3
    audio, faces = random_batch(SMALL, 2, seed=4)
    audio[0] = speech_like(SMALL.window_seconds, seed=4)
    with torch.no_grad():
        emb, _ = model.audio_features(audio)
        fused, a, _ = model(audio, faces)
    assert torch.isfinite(emb).all() and torch.isfinite(fused).all() and torch.isfinite(a).all()
    # the same audio with each frame's phase changed and its magnitude kept gives another
    # embedding: the phase channels reach the CNN
    spec = torch.stft(audio[0], 512, 160, window=torch.hann_window(512), return_complex=True)
    g = torch.Generator().manual_seed(0)
    scrambled = spec.abs() * torch.exp(2j * math.pi * torch.rand(spec.shape, generator=g))
    other = torch.istft(scrambled, 512, 160, window=torch.hann_window(512), length=audio.shape[1])
    with torch.no_grad():
        emb2, _ = model.audio_features(torch.stack([other, audio[1]]))
    assert float((emb2[0] - emb[0]).norm()) > 1e-3


def test_spec_augment_masks_only_in_training() -> None:
    aug = SpecAugment(freq_masks=2, freq_mask_bins=8, time_masks=2, time_mask_frames=10)
    image = torch.randn(4, 32, 50) + 5.0
    assert torch.equal(aug.eval()(image), image)
    torch.manual_seed(1)
    masked = aug.train()(image)
    zeroed = masked == 0
    assert zeroed.any() and not zeroed.all()
    assert torch.equal(masked[~zeroed], image[~zeroed])


def test_instant_weights_average_a_short_span_around_each_crop() -> None:
    times = (0.25, 0.75, 1.25, 1.75)
    w = instant_weights(201, 0.01, times, 0.12)
    torch.testing.assert_close(w.sum(dim=0), torch.ones(4))
    t = torch.arange(201.0) * 0.01
    torch.testing.assert_close((w * t[:, None]).sum(dim=0), torch.tensor(times), atol=1e-6, rtol=0)
    assert [int((w[:, k] > 0).sum()) for k in range(4)] == [13] * 4  # ±60 ms of 10 ms frames
    # a span narrower than a frame still takes the nearest frame
    narrow = instant_weights(10, 0.1, (0.42,), 0.01)
    assert torch.equal(narrow[:, 0], torch.eye(10)[4])


def test_outputs_shapes_dtypes_ranges(tiny_model: Detector) -> None:
    audio, faces = random_batch(SMALL, 3)
    with torch.no_grad():
        logits = tiny_model(audio, faces, with_sync=True)  # fused, audio, visual, sync
        probs = tiny_model.export_module()(audio, faces)
    assert len(tiny_model(audio, faces)) == 3 and len(probs) == 4 == len(SMALL.output_names)
    for logit, prob in zip(logits, probs, strict=True):
        assert logit.shape == prob.shape == (3,)
        assert logit.dtype == prob.dtype == torch.float32
        assert torch.isfinite(logit).all()
        assert ((prob >= 0) & (prob <= 1)).all()
        torch.testing.assert_close(prob, torch.sigmoid(logit))
    assert tiny_model.export_module().output_names == SMALL.output_names


def test_silence_and_clipping_stay_finite(tiny_model: Detector) -> None:
    audio = torch.zeros(2, SMALL.window_samples)
    audio[1] = 1.0  # DC at full scale
    faces = torch.zeros(2, *SMALL.faces_shape, dtype=torch.uint8)
    faces[1] = 255
    with torch.no_grad():
        assert all(torch.isfinite(o).all() for o in tiny_model(audio, faces))


def test_batch_independence(tiny_model: Detector) -> None:
    audio, faces = random_batch(SMALL, 4, seed=3)
    audio[1] *= 1e-3  # very different neighbours: quiet, loud, silent
    audio[2] = 0.0
    faces[3] = 0
    with torch.no_grad():
        together = tiny_model(audio, faces)
        for i in range(4):
            alone = tiny_model(audio[i : i + 1], faces[i : i + 1])
            for t, a in zip(together, alone, strict=True):
                torch.testing.assert_close(t[i : i + 1], a, atol=1e-5, rtol=1e-4)


def test_augmentation_only_in_training() -> None:
    torch.manual_seed(0)
    no_dropout = TINY_CFG.replace(dropout=0.0)
    model = build_model(SMALL, no_dropout)
    plain = build_model(SMALL, no_dropout.replace(augment=False))
    plain.load_state_dict(model.state_dict())
    audio, faces = random_batch(SMALL, 4, seed=5)
    with torch.no_grad():
        model.eval()
        first, second = model(audio, faces), model(audio, faces)
        for a, b in zip(first, second, strict=True):
            assert torch.equal(a, b)
        # training mode (batch-norm on batch statistics) without augmentation: deterministic
        plain.train()
        for a, b in zip(plain(audio, faces), plain(audio, faces), strict=True):
            assert torch.equal(a, b)
        # with augmentation: every call sees a different gain/masks/flip
        model.train()
        torch.manual_seed(1)
        t1 = model(audio, faces)
        torch.manual_seed(2)
        t2 = model(audio, faces)
        assert not torch.equal(t1[1], t2[1])  # audio head: gain + SpecAugment
        assert not torch.equal(t1[2], t2[2])  # visual head: flips


def test_gradients_reach_all_heads_and_backbones(tiny_model: Detector) -> None:
    model = build_model(SMALL, TINY_CFG).train()
    audio, faces = random_batch(SMALL, 4, seed=7)
    target = torch.tensor([0.0, 1.0, 0.0, 1.0])
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    fused, a, v = model(audio, faces)[:3]
    (bce(fused, target) + bce(a, target) + bce(v, target)).backward()
    for name, p in model.named_parameters():
        if name.startswith("sync_head."):  # its own loss is tested below
            continue
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
    assert model.fusion_head is not None
    for head in (model.fusion_head, model.audio_head, model.visual_head, model.sync_net):
        assert any(float(p.grad.abs().sum()) > 0 for p in head.parameters() if p.grad is not None)
    # the fused loss alone trains both backbones through the fusion and sync paths
    model.zero_grad()
    fused, _, _ = model(audio, faces)
    bce(fused, target).backward()
    parts = (model.audio_backbone, model.visual_backbone, model.sync_audio, model.sync_visual)
    for part in parts:
        assert sum(float(p.grad.abs().sum()) for p in part.parameters() if p.grad is not None) > 0


def test_bad_configs_are_refused() -> None:
    with pytest.raises(ConfigError, match="mel_norm"):
        ModelConfig(mel_norm="loud")
    with pytest.raises(ConfigError, match="does not know"):
        ModelConfig.from_dict({**ModelConfig.demo().to_dict(), "bogus": 1})
    with pytest.raises(ConfigError, match="divisible"):
        build_model(InputContract(crop_size=33), ModelConfig.demo())
    with pytest.raises(ConfigError, match="does not exist"):
        build_model(SMALL, TINY_CFG.replace(visual_weights="/nonexistent/weights.pt"))
    with pytest.raises(ConfigError, match="invalid model config"):
        ModelConfig.from_dict({"n_fft": "512"})
    assert ModelConfig.from_dict(ModelConfig.demo().to_dict()) == ModelConfig.demo()
    assert ModelConfig.from_dict(ModelConfig.default().to_dict()) == ModelConfig.default()


def test_local_backbone_weights_are_loaded(tmp_path: Path) -> None:
    donor = build_model(SMALL, TINY_CFG)
    path = tmp_path / "visual.pt"
    torch.save(donor.visual_backbone.net.state_dict(), path)
    model = build_model(SMALL, TINY_CFG.replace(visual_weights=str(path)))
    for k, v in donor.visual_backbone.state_dict().items():
        assert torch.equal(model.visual_backbone.state_dict()[k], v), k
    # an RGB stem is adapted to the 1-channel mel input
    rgb = build_model(SMALL, TINY_CFG)  # visual net: in_chans=3, same architecture
    torch.save(rgb.visual_backbone.net.state_dict(), path)
    audio_from_rgb = build_model(SMALL, TINY_CFG.replace(audio_weights=str(path)))
    stem = next(iter(audio_from_rgb.audio_backbone.state_dict().values()))
    assert stem.shape[1] == 1


# --- checkpoints -------------------------------------------------------------------------


def _trained_once(contract: InputContract, cfg: ModelConfig) -> tuple[Detector, dict]:
    model = build_model(contract, cfg).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    audio, faces = random_batch(contract, 4, seed=11)
    sum(o.mean() for o in model(audio, faces)).backward()
    opt.step()
    return model.eval(), opt.state_dict()


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    model, opt_state = _trained_once(SMALL, TINY_CFG)
    extra = {"epoch": 3, "metrics": {"auc": 0.91}, "optimizer": opt_state, "names": ["a", "b"]}
    path = tmp_path / "ckpt" / "model.pt"
    digest = save_checkpoint(path, model, SMALL, TINY_CFG, extra=extra)
    ckpt = load_checkpoint(path, expect_contract=SMALL)
    assert isinstance(ckpt, Checkpoint)
    assert ckpt.sha256 == digest and len(digest) == 64
    assert ckpt.contract == SMALL and ckpt.model_config == TINY_CFG
    assert ckpt.extra["epoch"] == 3 and ckpt.extra["metrics"] == {"auc": 0.91}
    assert ckpt.extra["optimizer"]["state"].keys() == opt_state["state"].keys()
    assert not ckpt.model.training
    assert all(p.device.type == "cpu" for p in ckpt.model.parameters())
    audio, faces = random_batch(SMALL, 3, seed=12)
    with torch.no_grad():
        for a, b in zip(model(audio, faces), ckpt.model(audio, faces), strict=True):
            assert torch.equal(a, b)
    # a wrapped model (as DataParallel / DDP give) saves the same weights; on a machine
    # with a GPU, DataParallel moves the model there, and the checkpoint loads on the CPU
    with torch.no_grad():
        expected = model(audio, faces)[0]
    wrapped = torch.nn.DataParallel(model)
    save_checkpoint(tmp_path / "wrapped.pt", wrapped, SMALL, TINY_CFG)
    again = load_checkpoint(tmp_path / "wrapped.pt")
    assert all(p.device.type == "cpu" for p in again.model.parameters())
    with torch.no_grad():
        assert torch.equal(again.model(audio, faces)[0], expected)


def test_a_checkpoint_from_before_the_sync_output_gains_it(
    tmp_path: Path, tiny_model: Detector
) -> None:
    old = replace(SMALL, output_names=HEAD_OUTPUTS)  # what checkpoints used to store
    save_checkpoint(tmp_path / "old.pt", tiny_model, old, TINY_CFG)
    ckpt = load_checkpoint(tmp_path / "old.pt", expect_contract=SMALL)
    assert ckpt.contract == SMALL and ckpt.contract.has_sync
    audio, faces = random_batch(SMALL, 2, seed=3)
    with torch.no_grad():
        probs = ckpt.model.export_module()(audio, faces)
        sync_logit = tiny_model(audio, faces, with_sync=True)[3]
    assert len(probs) == 4
    torch.testing.assert_close(probs[3], torch.sigmoid(sync_logit))


def test_checkpoint_refusals(tmp_path: Path, tiny_model: Detector) -> None:
    path = tmp_path / "model.pt"
    with pytest.raises(ModelFormatError, match=r"extra\['auc'\] is a numpy.float64"):
        save_checkpoint(path, tiny_model, SMALL, TINY_CFG, extra={"auc": np.float64(0.9)})
    save_checkpoint(path, tiny_model, SMALL, TINY_CFG)
    with pytest.raises(ContractError, match="k_crops"):
        load_checkpoint(path, expect_contract=dataclasses.replace(SMALL, k_crops=8))
    payload = torch.load(path, weights_only=True)
    payload["contract"]["version"] = 99
    torch.save(payload, tmp_path / "future.pt")
    with pytest.raises(ContractError, match="version 99"):
        load_checkpoint(tmp_path / "future.pt")
    payload["contract"]["version"] = 1
    payload["format_version"] = 7
    torch.save(payload, tmp_path / "format.pt")
    with pytest.raises(ModelFormatError, match="format version 7"):
        load_checkpoint(tmp_path / "format.pt")
    torch.save(tiny_model.state_dict(), tmp_path / "bare.pt")
    with pytest.raises(ModelFormatError, match="not a deepfake-monitor checkpoint"):
        load_checkpoint(tmp_path / "bare.pt")
    (tmp_path / "junk.pt").write_bytes(b"\x00not a checkpoint" * 10)
    with pytest.raises(ModelFormatError):
        load_checkpoint(tmp_path / "junk.pt")
    with pytest.raises(ModelFormatError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
    # an object torch.load(weights_only=True) could not read back is refused at save time
    with pytest.raises(ModelFormatError, match="plain python"):
        save_checkpoint(tmp_path / "bad.pt", tiny_model, SMALL, TINY_CFG, extra={"x": Path(".")})
    assert not (tmp_path / "bad.pt").exists()


# --- export ------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # dynamo=False is deprecated
@pytest.mark.parametrize(
    ("highpass", "phase", "audio_input"),
    [(False, False, "mel"), (True, False, "mel"), (False, True, "mel"), (False, False, "raw")],
    ids=["rgb", "rgb+highpass+mouth_box+or_fusion+sync_offsets", "audio_phase", "raw_audio"],
)
def test_onnx_export_and_onnxruntime_parity(
    tmp_path: Path, highpass: bool, phase: bool, audio_input: str
) -> None:
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    contract = InputContract()  # the real default shapes: 2 s, K=4, 112 px
    torch.manual_seed(0)
    cfg = ModelConfig.demo().replace(
        visual_highpass=highpass,
        mouth_box=MOUTH_BOX if highpass else None,
        fusion="or" if highpass else "mlp",
        audio_phase=phase,
        audio_input=audio_input,
        sync_offsets_ms=(-40.0, 0.0, 80.0) if highpass else (0.0,),
    )
    model, _ = _trained_once(contract, cfg)  # non-trivial batch-norm stats
    probs = model.export_module().eval()
    path = tmp_path / "demo.onnx"
    names = [*probs.input_names, *probs.output_names]
    torch.onnx.export(
        probs,
        probs.example_inputs(2),
        str(path),
        input_names=list(probs.input_names),
        output_names=list(probs.output_names),
        dynamic_axes={n: {0: "batch"} for n in names},
        opset_version=17,
        dynamo=False,
    )
    graph = onnx.load(str(path))
    onnx.checker.check_model(graph)
    ops = {n.op_type for n in graph.graph.node}
    assert not ops & {"STFT", "DFT", "If", "Loop", "NonZero", "AdaptiveAvgPool2d"}, ops
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["audio", "faces"]
    assert [o.name for o in session.get_outputs()] == list(contract.output_names)
    for batch in (1, 3):  # not the traced batch size
        audio, faces = random_batch(contract, batch, seed=batch)
        audio[0] = speech_like(contract.window_seconds, seed=batch)
        got = session.run(None, {"audio": audio.numpy(), "faces": faces.numpy()})
        with torch.no_grad():
            want = probs(audio, faces)
        for g, w in zip(got, want, strict=True):
            assert g.shape == (batch,) and g.dtype == np.float32
            assert np.abs(g - w.numpy()).max() <= ONNX_TOL


# --- audio-visual synchronisation ---------------------------------------------------------

SYNC_STEPS = 50  # Adam steps of batch 16; the fused head is right on ~100 % by step ~40
MICRO = {"channels": [8, 16, 32, 64], "stem_width": 8}  # an even smaller resnet10t


def desync_batch(
    contract: InputContract, n: int, g: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each of K slices is "speaking" (a voiced burst in the audio) or not, and the crop
    at the slice centre shows an open mouth (a dark patch low in the face) or a closed
    one (skin). Real: the mouth pattern is the speech pattern. Fake: a different random
    pattern. Both patterns are uniformly random, so neither modality alone says anything
    about the label."""
    k, size, s = contract.k_crops, contract.crop_size, contract.window_samples
    speech = torch.randint(0, 2, (n, k), generator=g)
    fake = torch.rand(n, generator=g) < 0.5
    mouth = speech.clone()
    for i in torch.nonzero(fake).flatten().tolist():
        while torch.equal(mouth[i], speech[i]):
            mouth[i] = torch.randint(0, 2, (k,), generator=g)
    t = torch.arange(s) / contract.sample_rate
    voiced = sum(torch.sin(2 * math.pi * h * 220.0 * t) / h for h in range(1, 6))
    slice_len = s // k
    envelope = torch.zeros(k, s)
    for j in range(k):  # a burst over the middle 80 % of slice j
        envelope[j, j * slice_len + slice_len // 10 : (j + 1) * slice_len - slice_len // 10] = 1
    audio = 0.3 * (speech.float() @ envelope) * voiced + 0.01 * torch.randn(n, s, generator=g)
    skin = 150.0 + 20.0 * torch.randn(n, k, size, size, 3, generator=g)
    rows, cols = slice(int(0.6 * size), int(0.8 * size)), slice(int(0.3 * size), int(0.7 * size))
    skin[:, :, rows, cols, :] -= 110.0 * mouth.float()[:, :, None, None, None]
    faces = skin.clamp(0, 255).to(torch.uint8)
    return audio, faces, fake.float()


@pytest.mark.slow
def test_fused_head_learns_audio_visual_desync() -> None:
    cfg = ModelConfig.demo().replace(
        n_mels=32,
        audio_backbone_kwargs=MICRO,
        visual_backbone_kwargs=MICRO,
        audio_dim=32,
        visual_dim=32,
        sync_dim=16,
        fusion_hidden=32,
        augment=False,
        dropout=0.0,
    )
    torch.manual_seed(0)
    model = build_model(SMALL, cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=6e-3)
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    g = torch.Generator().manual_seed(1)
    model.train()
    for _ in range(SYNC_STEPS):
        audio, faces, y = desync_batch(SMALL, 16, g)
        fused, a, v = model(audio, faces)
        loss = bce(fused, y) + bce(a, y) + bce(v, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    audio, faces, y = desync_batch(SMALL, 128, torch.Generator().manual_seed(99))
    with torch.no_grad():
        fused, a, v = model.eval()(audio, faces)
    accuracy = [float(((z > 0).float() == y).float().mean()) for z in (fused, a, v)]
    assert accuracy[0] >= 0.9, accuracy  # only the sync path can see the mismatch
    assert accuracy[1] <= 0.7 and accuracy[2] <= 0.7, accuracy  # single modalities: chance


def test_mismatch_steps_pair_each_window_with_its_own_crops_out_of_order() -> None:
    torch.manual_seed(0)
    m = torch.randn(64, 4, 8)
    out = mismatch_steps(m)
    assert out.shape == m.shape
    kinds = {"rotated": 0, "backwards": 0}
    for i in range(64):
        assert not torch.equal(out[i], m[i])  # never the true pairing
        if torch.equal(out[i], m[i].flip(0)):
            kinds["backwards"] += 1
        else:  # own crops, rotated by 1..K-1 steps in time
            assert any(torch.equal(out[i], torch.roll(m[i], -s, dims=0)) for s in (1, 2, 3))
            kinds["rotated"] += 1
    assert min(kinds.values()) > 10  # both kinds of mismatch are drawn
    with pytest.raises(ValueError, match="2 crops"):
        mismatch_steps(m[:, :1])


def test_sync_pairs_give_two_extra_logits_and_train_the_sync_path() -> None:
    model = build_model(SMALL, TINY_CFG).train()
    audio, faces = random_batch(SMALL, 4, seed=3)
    out = model(audio, faces, sync_pairs=True)
    assert len(out) == 5 and all(o.shape == (4,) for o in out)
    assert len(model(audio, faces)) == 3  # the exported signature is unchanged
    from train.loop import sync_loss

    labels = torch.tensor([0.0, 0.0, -1.0, -1.0])  # two in-sync windows, two unknown
    loss = sync_loss(out[3], out[4], labels)
    loss.backward()
    for part in (model.sync_head, model.sync_net, model.sync_visual, model.sync_audio):
        assert sum(float(p.grad.abs().sum()) for p in part.parameters() if p.grad is not None) > 0
    # windows of unknown sync do not count, neither as a pair nor as a mismatch source
    assert sync_loss(out[3], out[4], torch.full((4,), -1.0)).item() == 0.0
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    in_sync, mismatched = out[3].detach(), out[4].detach()
    expected = (
        bce(in_sync[:2], torch.zeros(2), reduction="sum")
        + bce(mismatched[:2], torch.ones(2), reduction="sum")
    ) / 2
    assert sync_loss(in_sync, mismatched, labels).item() == pytest.approx(expected.item())
    # a known out-of-sync fake trains the true pairing towards 1 and makes no mismatch
    desync = torch.tensor([1.0, -1.0, -1.0, -1.0])
    expected = bce(in_sync[:1], torch.ones(1))
    assert sync_loss(in_sync, mismatched, desync).item() == pytest.approx(expected.item())
    # crops degraded below the detail floor: the true pairing still counts, no mismatch
    floor = torch.tensor([1.0, 0.0, 1.0, 1.0])
    expected = (
        bce(in_sync[:2], torch.zeros(2), reduction="sum")
        + bce(mismatched[:1], torch.ones(1), reduction="sum")
    ) / 2
    assert sync_loss(in_sync, mismatched, labels, floor).item() == pytest.approx(expected.item())


def test_visual_stride_feeds_every_nth_crop_to_the_visual_cnn() -> None:
    model = build_model(SMALL, TINY_CFG.replace(visual_stride=2)).eval()
    audio, faces = random_batch(SMALL, 2, seed=5)
    assert model.visual_features(faces).shape == (2, 2, TINY_CFG.visual_dim)  # crops 0 and 2
    assert model.mouth_features(faces).shape == (2, 4, TINY_CFG.sync_dim)  # all four
    with torch.no_grad():
        base = model(audio, faces)
        odd_changed = faces.clone()
        odd_changed[:, 1::2] = 255 - odd_changed[:, 1::2]
        visual_only = model.visual_features(odd_changed)
        assert torch.equal(visual_only, model.visual_features(faces))  # odd crops unseen
        assert not torch.allclose(model(audio, odd_changed)[0], base[0])  # ...by the visual CNN
    with pytest.raises(ConfigError, match="visual_stride"):
        build_model(SMALL, TINY_CFG.replace(visual_stride=5))
    with pytest.raises(ConfigError, match="visual_stride"):
        TINY_CFG.replace(visual_stride=0)


def test_mouth_box_limits_the_mouth_cnn_to_that_band_of_the_crop() -> None:
    box = (0.5, 1.0, 0.25, 0.875)  # rows 16..31, cols 8..27 of a 32-px crop
    model = build_model(SMALL, TINY_CFG.replace(mouth_box=box)).eval()
    _, faces = random_batch(SMALL, 2, seed=6)
    with torch.no_grad():
        base = model.mouth_features(faces)
        assert base.shape == (2, 4, TINY_CFG.sync_dim)
        outside = faces.clone()
        outside[:, :, :16] = 255 - outside[:, :, :16]  # the upper half: eyes, hair
        outside[:, :, :, :8] = 0  # a strip left of the box
        outside[:, :, :, 28:] = 0  # and right of it
        assert torch.equal(model.mouth_features(outside), base)
        inside = faces.clone()
        inside[:, :, 20:28, 10:26] = 0  # a dark open mouth
        assert not torch.allclose(model.mouth_features(inside), base)
    cfg = TINY_CFG.replace(mouth_box=box)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg and cfg.mouth_box == box
    with pytest.raises(ConfigError, match="mouth_box"):
        TINY_CFG.replace(mouth_box=(0.6, 0.4, 0.0, 1.0))
    with pytest.raises(ConfigError, match="at least 16x16"):
        build_model(SMALL, TINY_CFG.replace(mouth_box=(0.0, 0.25, 0.0, 1.0)))  # 8 rows


def test_highpass_residual_ignores_shading_and_keeps_sensor_noise() -> None:
    hp = HighPassResidual(clip=8.0)
    flat = torch.full((1, 24, 24, 3), 120, dtype=torch.uint8)
    ramp = (torch.arange(24) * 9).view(1, 1, 24, 1).expand(1, 24, 24, 3).to(torch.uint8)
    assert hp(flat).abs().max().item() < 1e-5
    assert hp(ramp).abs().max().item() < 1e-5  # every kernel sums to zero along a line
    g = torch.Generator().manual_seed(0)
    clean = torch.full((1, 48, 48, 3), 128.0)
    noisy = (clean + 3.0 * torch.randn(clean.shape, generator=g)).round().to(torch.uint8)
    out = hp(noisy)
    assert out.shape == (1, 3, 48, 48)
    assert out.abs().max().item() <= 1.0  # truncated at +-clip grey levels, then scaled
    assert torch.all(out[:, :, :2] == 0) and torch.all(out[:, :, :, -2:] == 0)  # zero border
    inner = out[:, :, 2:-2, 2:-2]
    assert 0.1 < inner.std().item() < 0.8  # 3 grey levels of noise are clearly visible
    # halving the noise halves the residual: it measures the noise, not the picture
    quiet = (clean + 1.5 * torch.randn(clean.shape, generator=g)).round().to(torch.uint8)
    ratio = inner.std().item() / hp(quiet)[:, :, 2:-2, 2:-2].std().item()
    assert 1.6 < ratio < 2.5


@pytest.mark.parametrize("stem", ["unshuffle", "pool"])
def test_visual_highpass_feeds_residual_channels_to_the_visual_cnn(stem: str) -> None:
    cfg = TINY_CFG.replace(visual_highpass=True, visual_downsample=2, visual_stem=stem)
    model = build_model(SMALL, cfg).eval()
    first = next(m for m in model.visual_backbone.modules() if isinstance(m, torch.nn.Conv2d))
    assert first.in_channels == (6 * 4 if stem == "unshuffle" else 6)
    # the same faces with 2 grey levels of noise added: the RGB input barely moves, the
    # residual channels do, so the visual features must differ more than for RGB alone
    audio, faces = random_batch(SMALL, 2, seed=3)
    smooth = torch.full_like(faces, 100)
    g = torch.Generator().manual_seed(1)
    noisy = (smooth.float() + 2.0 * torch.randn(smooth.shape, generator=g)).round()
    noisy_u8 = noisy.clamp(0, 255).to(torch.uint8)
    plain = build_model(SMALL, cfg.replace(visual_highpass=False)).eval()
    with torch.no_grad():
        gap_hp = (model.visual_features(noisy_u8) - model.visual_features(smooth)).norm()
        gap_plain = (plain.visual_features(noisy_u8) - plain.visual_features(smooth)).norm()
        fused, _, visual = model(audio, faces)
    assert torch.isfinite(fused).all() and torch.isfinite(visual).all()
    assert gap_hp > gap_plain


def test_fusion_dropout_acts_on_the_fusion_input_only() -> None:
    assert build_model(SMALL, TINY_CFG).fusion_dropout.p == TINY_CFG.dropout  # None: same
    cfg = TINY_CFG.replace(dropout=0.0, fusion_dropout=0.9, augment=False)
    model = build_model(SMALL, cfg)
    assert model.fusion_dropout.p == 0.9
    audio, faces = random_batch(SMALL, 4, seed=3)
    with torch.no_grad():
        model.train()
        torch.manual_seed(1)
        f1, a1, v1 = model(audio, faces)
        torch.manual_seed(2)
        f2, a2, v2 = model(audio, faces)
        assert torch.equal(a1, a2) and torch.equal(v1, v2)  # heads see no dropout
        assert not torch.allclose(f1, f2)  # the fusion MLP does
        model.eval()
        first, second = model(audio, faces), model(audio, faces)
        assert all(torch.equal(x, y) for x, y in zip(first, second, strict=True))
    with pytest.raises(ConfigError, match="fusion_dropout"):
        TINY_CFG.replace(fusion_dropout=1.0)


def test_or_fusion_is_a_soft_or_of_the_three_heads() -> None:
    with pytest.raises(ConfigError, match="fusion"):
        TINY_CFG.replace(fusion="xor")
    model = build_model(SMALL, TINY_CFG.replace(fusion="or"))
    assert model.fusion_head is None and model.head_weights is None
    assert not any(name.startswith("fusion_head") for name, _ in model.named_parameters())
    audio, faces = random_batch(SMALL, 4, seed=5)
    model.eval()
    with torch.no_grad():
        fused, a, v, in_sync, _ = model(audio, faces, sync_pairs=True)
    heads = torch.stack([a, v, in_sync], dim=1)
    torch.testing.assert_close(fused, torch.logsumexp(heads, dim=1))
    assert (fused >= heads.amax(dim=1)).all()  # never below its most suspicious head
    assert (fused <= heads.amax(dim=1) + math.log(3) + 1e-5).all()
    # the fused loss alone reaches every head and both backbones (fused-only labels)
    model.train()
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    bce(model(audio, faces)[0], torch.tensor([0.0, 1.0, 0.0, 1.0])).backward()
    parts = (
        model.audio_head,
        model.visual_head,
        model.sync_head,
        model.audio_backbone,
        model.visual_backbone,
        model.sync_visual,
    )
    for part in parts:
        assert sum(float(p.grad.abs().sum()) for p in part.parameters() if p.grad is not None) > 0


# --- sync offsets ----------------------------------------------------------------------


def test_sync_offsets_keep_the_offset_most_in_step() -> None:
    """With offsets, the sync logit is the least of the logits each offset alone gives
    (same weights), and the mlp fusion takes that offset's embedding."""
    offsets = (-80.0, 0.0, 120.0)
    torch.manual_seed(3)
    both = build_model(SMALL, TINY_CFG.replace(sync_offsets_ms=offsets)).eval()
    state = both.state_dict()
    audio, faces = random_batch(SMALL, 3, seed=4)
    audio[0] = speech_like(SMALL.window_seconds, seed=4)
    singles = []
    for offset in offsets:
        one = build_model(SMALL, TINY_CFG.replace(sync_offsets_ms=(offset,))).eval()
        one.load_state_dict(state)  # the instants are not weights: the same state fits
        with torch.no_grad():
            singles.append(one(audio, faces, with_sync=True))
    with torch.no_grad():
        fused, _, _, sync = both(audio, faces, with_sync=True)
        _, a = both.audio_features(audio)
    assert a.shape == (3, len(offsets), SMALL.k_crops, TINY_CFG.sync_dim)
    per_offset = torch.stack([s[3] for s in singles], dim=1)  # [B, O]
    assert not torch.allclose(per_offset[:, 0], per_offset[:, 2])  # the offsets differ
    torch.testing.assert_close(sync, per_offset.amin(dim=1))
    best = per_offset.argmin(dim=1)
    want_fused = torch.stack([singles[int(o)][0][i] for i, o in enumerate(best)])
    torch.testing.assert_close(fused, want_fused)


def test_sync_offsets_shift_the_audio_instants() -> None:
    late = build_model(SMALL, TINY_CFG.replace(sync_offsets_ms=(0.0, 100.0)))
    frame_s = TINY_CFG.hop_length / SMALL.sample_rate
    t = torch.arange(late.instants.shape[0], dtype=torch.float32) * frame_s
    centres = (late.instants * t[:, None]).sum(dim=0)  # [O*K]
    k = SMALL.k_crops
    moved = centres[k:] - centres[:k]
    torch.testing.assert_close(moved[:-1], torch.full((k - 1,), 0.1), atol=2e-3, rtol=0)
    assert 0.05 < float(moved[-1]) < 0.1  # the last crop's span is cut by the window's end


@pytest.mark.parametrize("offsets", [(), (0.0, 0.0), (0.0, 300.0)])
def test_bad_sync_offsets_are_refused(offsets: tuple[float, ...]) -> None:
    with pytest.raises(ConfigError, match="sync_offsets_ms"):
        TINY_CFG.replace(sync_offsets_ms=offsets)


def test_sync_offsets_survive_the_config_dict_and_default_to_none_searched() -> None:
    cfg = TINY_CFG.replace(sync_offsets_ms=[-40, 0, 40])
    assert cfg.sync_offsets_ms == (-40.0, 0.0, 40.0)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    old = TINY_CFG.to_dict()
    del old["sync_offsets_ms"]  # a checkpoint saved before the option
    assert ModelConfig.from_dict(old).sync_offsets_ms == (0.0,)
