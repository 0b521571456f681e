"""Real voices in the synthetic data (`synth --voices real`, train/synth/voices.py).

Planning is checked without rendering (who speaks in which split, which fake voices
which scene, held-out engines and speakers). With the Debian packages installed
(scripts/system-deps.sh), the signal chain is checked pair by pair (a real voice and each
fake family's voice of the same scene end alike in bandwidth, level and silences), and a
small rendered dataset is checked end to end: no feature of the clips, spectral bandwidth
included, tells reals from fakes, and the same seed gives the same data.
"""

from __future__ import annotations

import csv
import dataclasses
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from scipy import signal

from monitor.cli import main as cli_main
from monitor.errors import ConfigError
from monitor.media.decode import load_audio, probe
from tests.train.test_synth import ANALYSIS_RATE, AUC_TOLERANCE, ClipFacts, _features, auc
from train.synth import takes, voices
from train.synth.audio_fakes import VocoderParams, vocoder, voice_conversion
from train.synth.dataset import (
    SPLITS,
    _check_args,
    _manifest_row,
    generate_dataset,
    plan_split,
    split_methods,
)
from train.synth.fakes import METHODS, TTS_METHODS
from train.synth.room import apply_room, level, sample_room
from train.synth.speech import AUDIO_RATE

MISSING = voices.missing_packages()
needs_voices = pytest.mark.skipif(
    bool(MISSING), reason=f"real voices need: {voices.install_hint(MISSING)}"
)
SEED = 11
COUNTS = {"train": 16, "val": 4, "test": 4}
DURATION_S = (3.0, 4.0)
PLAN_CLIPS = 120  # planned (not rendered) clips per split


def _plan(split: str, n: int = PLAN_CLIPS, holdout: tuple[str, ...] = (), seed: int = SEED):
    held = _check_args({split: n}, holdout, "real")
    cast = voices.make_cast(held.speakers, held.engines)
    methods = split_methods(split, held.methods, "real")
    _, rows = plan_split(seed, split, n, methods, (3.0, 6.0), voices="real", cast=cast)
    return [(r, j, _manifest_row(r, j)) for r, j in rows]


# ---- planning (no packages needed) -------------------------------------------------------


def test_cast_is_speaker_disjoint_and_voice_disjoint() -> None:
    for held_speakers, held_engines in (((), ()), (("june",), ("festival",)), ((), ("flite",))):
        cast = voices.make_cast(held_speakers, held_engines)
        placed = [s for names in cast.speakers.values() for s in names]
        assert sorted(placed) == sorted(voices.SPEAKERS)  # every speaker in exactly one split
        labels = [v.label for vs in cast.voices.values() for v in vs]
        assert len(labels) == len(set(labels)) == len(voices.SYNTH_VOICES)
        for s in held_speakers:
            assert s in cast.speakers["test"]
        for e in held_engines:
            assert all(v.engine != e for sp in ("train", "val") for v in cast.voices[sp])
            test_langs = {
                lang for s in cast.speakers["test"] for lang in voices.SPEAKERS[s].languages
            }
            assert any(test_langs & set(v.languages) for v in cast.voices["test"] if v.engine == e)
    # Flite speaks English only: holding it out brings the English speaker to the test split.
    assert "allison" in voices.make_cast((), ("flite",)).speakers["test"]


def test_speaker_alone_cannot_predict_the_label_within_the_training_split() -> None:
    rows = [m for _, _, m in _plan("train")]
    by_speaker: dict[str, Counter[str]] = {}
    for m in rows:
        by_speaker.setdefault(m["speaker"], Counter())[m["target"]] += 1
    assert len(by_speaker) >= 3
    # The best rule that sees only the speaker predicts each speaker's majority label.
    correct = sum(max(c.values()) for c in by_speaker.values())
    assert correct / len(rows) <= 0.5 + 1.0 / len(rows)
    for speaker, c in by_speaker.items():
        assert abs(c["1"] - c["0"]) <= 1, (speaker, c)
    # Language and channel come with the scene, so they are shared by each real/fake pair.
    for key in ("language",):
        counts = Counter((m[key], m["target"]) for m in rows)
        for value in {m[key] for m in rows}:
            assert abs(counts[(value, "1")] - counts[(value, "0")]) <= 1, (key, value)
    bands = Counter((m["params"].split("channel=")[1][:4], m["target"]) for m in rows)
    assert abs(bands[("wide", "1")] - bands[("wide", "0")]) <= 1


def test_splits_are_speaker_and_synthesizer_voice_disjoint() -> None:
    speakers: dict[str, set[str]] = {}
    tts_voices: dict[str, set[str]] = {}
    for split in SPLITS:
        rows = [m for _, _, m in _plan(split, 60)]
        speakers[split] = {m["speaker"] for m in rows}
        tts_voices[split] = {m["voice"] for m in rows if m["method"] in TTS_METHODS}
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        assert not speakers[a] & speakers[b], (a, b)
        assert not tts_voices[a] & tts_voices[b], (a, b)
    assert tts_voices["train"] and tts_voices["test"]


def test_fake_voices_speak_the_scene_language_and_methods_are_spread() -> None:
    planned = _plan("train")
    used = Counter(m["method"] for _, _, m in planned if m["target"] == "1")
    assert set(used) == set(METHODS)  # every method, the three synthesizers included
    assert max(used.values()) - min(used.values()) <= 12
    for row, job, m in planned:
        plan = row.fake
        assert job.voicing is not None
        if plan is None or plan.tts is None:
            assert m["engine"] in ("recording", "dsp")
            assert m["voice"] == m["speaker"] == job.voicing.speaker
            continue
        assert plan.tts.language == job.voicing.language == m["language"]
        voice = next(
            v
            for v in voices.SYNTH_VOICES
            if v.engine == plan.tts.engine and v.name == plan.tts.voice
        )
        assert plan.tts.language in voice.languages
        assert voice.split == "train"
        assert m["engine"] == plan.tts.engine and m["method"] == voices.ENGINE_METHODS[voice.engine]


def test_holdout_of_an_engine_and_of_a_speaker() -> None:
    holdout = ("festival", "june")
    for split in ("train", "val"):
        rows = [m for _, _, m in _plan(split, 60, holdout)]
        assert not [m for m in rows if m["engine"] == "festival"]
        assert "june" not in {m["speaker"] for m in rows}
    test_rows = [m for _, _, m in _plan("test", 60, holdout)]
    assert [m for m in test_rows if m["engine"] == "festival"]
    assert "june" in {m["speaker"] for m in test_rows}


def test_holdout_names_and_procedural_mode() -> None:
    with pytest.raises(ConfigError, match="needs --voices real"):
        _check_args({"train": 2}, ["festival"], "procedural")
    with pytest.raises(ConfigError, match="needs --voices real"):
        _check_args({"train": 2}, ["carlo"], "procedural")
    with pytest.raises(ConfigError, match="unknown method.*engines espeak-ng.*speakers"):
        _check_args({"train": 2}, ["nobody"], "real")
    held = _check_args({"train": 2}, ["flite", "vocoder", "july"], "real")
    assert held.methods == ("tts_flite", "vocoder") and held.engines == ("flite",)
    assert held.speakers == ("july",)
    # Procedural planning never uses a synthesizer method, and plans what it planned before.
    _, rows = plan_split(3, "train", 40, list(METHODS))
    assert not {r.fake.method for r, _ in rows if r.fake} & TTS_METHODS
    assert all(j.voicing is None for _, j in rows)


def test_cli_names_match_the_voice_catalogue() -> None:
    from train.commands.synth import ENGINE_NAMES, SPEAKER_NAMES

    assert ENGINE_NAMES == voices.ENGINES
    assert tuple(voices.SPEAKERS) == SPEAKER_NAMES
    assert set(voices.DEFAULT_SPEAKER_SPLIT) == set(voices.SPEAKERS)


def test_real_voices_without_the_packages_name_them_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(voices, "missing_packages", lambda: ["espeak-ng", "festvox-ru"])
    rc = cli_main(["synth", str(tmp_path / "d"), "--train", "2", "--voices", "real"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert "apt-get install espeak-ng festvox-ru" in err[0]
    assert not (tmp_path / "d").exists()
    # auto falls back to procedural voices and says what real ones would need.
    rc = cli_main(["synth", str(tmp_path / "p"), "--train", "0", "--val", "0", "--test", "0"])
    assert rc == 0
    assert "apt-get install espeak-ng festvox-ru" in capsys.readouterr().err


def test_mouth_track_follows_the_envelope() -> None:
    rate = AUDIO_RATE
    t = np.arange(3 * rate) / rate
    syllables = (np.sin(2 * np.pi * 4.0 * t) > 0).astype(np.float32)
    x = (0.3 * np.sin(2 * np.pi * 800.0 * t) * syllables).astype(np.float32)
    jaw = takes.mouth_track(x, rate)
    assert jaw.size == 300 and jaw.min() >= 0.0 and jaw.max() <= 1.0
    on = syllables[::441][:300] > 0
    assert jaw[on].mean() > 0.7 and jaw[~on].mean() < 0.3


# ---- the signal chain (needs the packages) -------------------------------------------------


def _band_edge(x: np.ndarray, rate: int) -> float:
    """Highest frequency whose long-term level is within 50 dB of the spectrum's peak."""
    f, psd = signal.welch(x, rate, nperseg=2048)
    db = 10.0 * np.log10(psd + 1e-20)
    return float(f[np.flatnonzero(db > db.max() - 50.0)[-1]])


def _active_db(x: np.ndarray, rate: int) -> float:
    hop = rate // 100
    n = x.size // hop
    e = 10.0 * np.log10(np.square(x[: n * hop].reshape(n, hop)).mean(axis=1) + 1e-12)
    act = e[e > e.max() - takes.TRIM_DB]
    return float(10.0 * np.log10(np.mean(10.0 ** (act / 10.0))))


def _speech_bounds(x: np.ndarray, rate: int) -> tuple[float, float]:
    hop = rate // 100
    n = x.size // hop
    e = 10.0 * np.log10(np.square(x[: n * hop].reshape(n, hop)).mean(axis=1) + 1e-12)
    act = np.flatnonzero(e > e.max() - 40.0)
    return act[0] / 100.0, (n - 1 - act[-1]) / 100.0


@needs_voices
@pytest.mark.slow
def test_every_fake_family_leaves_the_chain_like_the_real_voice() -> None:
    """Pair by pair: bandwidth, sample count, level and silences of each fake family's
    voice after the channel equal the real voice's (wide and narrow channels)."""
    cast = voices.make_cast()
    rng = np.random.default_rng(5)
    cases = [
        ("allison", "en", ("tts_flite", "tts_festival", "tts_espeak_ng", "vocoder")),
        ("ivrvoice", "ru", ("tts_festival", "voice_conversion")),
        ("menardi", "it", ("tts_espeak_ng", "tts_festival", "vocoder")),
    ]
    duration, lead, trail = 4.0, 0.45, 0.35
    for speaker, language, methods in cases:
        for narrow in (False, True):
            if voices.SPEAKERS[speaker].narrowband and not narrow:
                continue
            cutoff = 3_500.0 if narrow else 6_500.0
            plan = voices.VoicePlan(speaker, language, voices.Channel(narrow, cutoff), 17)
            pre, real, _ = takes.real_take(plan, duration, lead, trail)
            for method in methods:
                if method in TTS_METHODS:
                    tts = cast.pick_tts(method, "train", voices.SPEAKERS[speaker], language, rng)
                    fake, _ = takes.tts_take(plan, tts, duration, lead, trail)
                elif method == "vocoder":
                    conv = vocoder(pre, VocoderParams(22_050, 4), 3)
                    fake, _ = takes.converted_take(plan, conv, duration, lead, trail)
                else:
                    target = dataclasses.replace(voices.speaker_voice(speaker), f0_hz=110.0)
                    conv = voice_conversion(pre, voices.speaker_voice(speaker), target)
                    fake, _ = takes.converted_take(plan, conv, duration, lead, trail)
                where = f"{speaker} {method} {'narrow' if narrow else 'wide'}"
                assert fake.shape == real.shape == (round(duration * AUDIO_RATE),), where
                e_real, e_fake = _band_edge(real, AUDIO_RATE), _band_edge(fake, AUDIO_RATE)
                assert abs(e_real - e_fake) <= 600.0, (where, e_real, e_fake)
                assert max(e_real, e_fake) <= cutoff + 900.0, (where, e_real, e_fake)
                assert abs(_active_db(real, AUDIO_RATE) - _active_db(fake, AUDIO_RATE)) < 1.0
                (lead_r, trail_r), (lead_f, trail_f) = (
                    _speech_bounds(real, AUDIO_RATE),
                    _speech_bounds(fake, AUDIO_RATE),
                )
                # Speech starts at the lead exactly (segments are trimmed) and is cut where
                # the trailing silence starts, unless the cut falls in a pause of a sentence.
                assert abs(lead_r - lead_f) <= 0.06 and abs(trail_r - trail_f) <= 0.15, where
                # Through one room, at one level, as render.py does for a pair.
                room = sample_room(np.random.default_rng(1))
                rms = float(np.sqrt(np.mean(np.square(real[np.abs(real) > 1e-4]))))
                a = level(apply_room(real, rms, room, 2), room.target_rms_db)
                b = level(apply_room(fake, rms, room, 2), room.target_rms_db)
                assert abs(_active_db(a[0], AUDIO_RATE) - _active_db(b[0], AUDIO_RATE)) < 1.5


@needs_voices
def test_real_take_mouth_follows_its_speech_and_another_take_does_not() -> None:
    plan = voices.VoicePlan("carlo", "it", voices.Channel(False, 7_000.0), 3)
    _, dry, utt = takes.real_take(plan, 6.0, 0.3, 0.3)
    hop = AUDIO_RATE // 100
    env = np.sqrt(np.square(dry[: utt.n * hop]).reshape(utt.n, hop).mean(axis=1))
    t = np.arange(utt.n) / 100.0
    other = takes.real_take(plan, 6.0, 0.3, 0.3, seed=99)[2]
    own = np.corrcoef(env, utt.jaw_at(t))[0, 1]
    assert own > 0.6
    assert np.corrcoef(env, other.jaw_at(t))[0, 1] < own - 0.3


# ---- a rendered dataset (needs the packages) ----------------------------------------------


@pytest.fixture(scope="module")
def real_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if MISSING:
        pytest.skip(f"real voices need: {voices.install_hint(MISSING)}")
    root = tmp_path_factory.mktemp("synth_voices")
    summary = generate_dataset(
        root,
        COUNTS["train"],
        COUNTS["val"],
        COUNTS["test"],
        SEED,
        duration_s=DURATION_S,
        voices="real",
    )
    assert summary.voices == "real" and summary.n_clips == sum(COUNTS.values())
    return root


def _rows(root: Path) -> list[dict[str, str]]:
    with (root / "manifest.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


def _spectral_bandwidth(audio: np.ndarray, rate: int) -> tuple[float, float]:
    """(95 % roll-off, band edge) in Hz of the clip's speech frames."""
    f, psd = signal.welch(audio, rate, nperseg=1024)
    cum = np.cumsum(psd) / psd.sum()
    return float(f[np.searchsorted(cum, 0.95)]), _band_edge(audio, rate)


@needs_voices
@pytest.mark.slow
def test_real_voice_dataset_has_no_shortcut(real_dataset: Path) -> None:
    rows = _rows(real_dataset)
    assert (real_dataset / "NOTICE.md").is_file()
    notice = (real_dataset / "NOTICE.md").read_text()
    assert "CC-BY-SA-3.0" in notice and "asterisk-core-sounds-en-g722" in notice
    facts = []
    for r in rows:
        folder = SPLITS[r["split"]][0]
        path = real_dataset / folder / r["video_name"]
        info = probe(path)
        assert info.audio_rate == 44_100 and info.audio_codec == "aac"
        facts.append(
            ClipFacts(
                name=r["video_name"],
                split=r["split"],
                target=int(r["target"]),
                path=path,
                info=info,
                size_bytes=path.stat().st_size,
                audio_16k=load_audio(path, ANALYSIS_RATE),
                faces=[None],
            )
        )
        assert r["engine"] and r["speaker"] and r["language"] and r["voice"]
    assert {r["engine"] for r in rows if r["target"] == "0"} == {"recording"}
    labels = [f.target for f in facts]
    bad = {}
    for f, feats in zip(facts, (_features(f) for f in facts), strict=True):
        rolloff, edge = _spectral_bandwidth(f.audio_16k, ANALYSIS_RATE)
        feats["rolloff_95"], feats["band_edge"] = rolloff, edge
        f.__dict__["feats"] = feats
    for key in facts[0].__dict__["feats"]:
        if key.startswith("face"):
            continue  # one face box per clip was not sampled here; test_synth checks faces
        a = auc([f.__dict__["feats"][key] for f in facts], labels)
        if abs(a - 0.5) > AUC_TOLERANCE:
            bad[key] = round(a, 3)
    assert not bad, f"features that give the label away (AUC): {bad}"


@needs_voices
@pytest.mark.slow
def test_real_voices_same_seed_same_data(tmp_path: Path) -> None:
    a = generate_dataset(
        tmp_path / "a", 2, 0, 0, 4, workers=1, duration_s=(1.5, 2.0), voices="real"
    )
    b = generate_dataset(
        tmp_path / "b", 2, 0, 0, 4, workers=2, duration_s=(1.5, 2.0), voices="real"
    )
    assert (a.root / "manifest.csv").read_bytes() == (b.root / "manifest.csv").read_bytes()
    for clip in sorted((a.root / "trainset").iterdir()):
        assert np.array_equal(load_audio(clip), load_audio(b.root / "trainset" / clip.name))
