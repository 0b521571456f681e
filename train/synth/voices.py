"""Real voices and real speech synthesizers: `synth --voices real`.

Real calls are voiced by recordings of professional speakers that Debian packages (the
Asterisk telephony prompts); fake calls by real speech synthesizers (eSpeak NG, Flite,
Festival) or by the project's signal-processing conversions applied to the recordings
(`vocoder`, `voice_conversion`: in-speaker fakes). Nothing is downloaded: every source is
a Debian package (`REAL_VOICE_PACKAGES`, listed in scripts/system-deps.sh).

This module is the catalogue: who speaks, which synthesizers and voices exist, what is
installed, the cast of each split and the voicing plan of a scene (`Channel`: wideband or
narrowband; a speaker whose recordings are narrowband gets narrowband scenes only, the
others a narrowband call in NARROW_PROB of their scenes). takes.py turns a plan into
audio, through one chain for every voice.

Splits are speaker-disjoint for real voices and voice-disjoint for synthesizers
(`make_cast`): each speaker and each synthetic voice belongs to one split. A scene's
language is its speaker's; a synthesizer speaks that language (sentences of the same
telephone-prompt kind as the recordings, `TEXTS`), so language does not separate the
classes either. An engine that cannot speak a scene's language is not used for it.
"""

from __future__ import annotations

import functools
import math
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from train.synth.speech import Voice

SOUNDS_DIR = Path("/usr/share/asterisk/sounds")
FESTIVAL_VOICES_DIR = Path("/usr/share/festival/voices")
LANGUAGES = ("en", "es", "fr", "it", "ru")
SKIP_PROMPTS = ("beep", "tone", "silence")  # prompt files that hold no speech
MIN_PROMPTS = 20  # a speaker folder with fewer prompt files counts as not installed
NARROW_PROB = 0.3  # share of a wideband speaker's scenes that come over a narrowband call
WIDE_RATE, NARROW_RATE = 16_000, 8_000
WIDE_CUTOFF_HZ = (6_000.0, 7_200.0)
NARROW_CUTOFF_HZ = (3_300.0, 3_700.0)
TTS_SPEED = (0.85, 1.15)  # synthesizer speaking-rate factor
MIN_PITCH_RATIO_OCTAVES = 0.15  # a converted voice differs by at least ~2 semitones
FORMANT_SCALE = {"m": 1.0, "f": 1.15}  # vocal-tract factor of the speech.Voice model


@dataclass(frozen=True)
class Speaker:
    """A real speaker: prompt recordings in one or more languages, from Debian packages."""

    name: str
    sex: str  # "f" or "m"
    f0_hz: float  # median pitch, measured on the recordings (autocorrelation)
    narrowband: bool  # 8 kHz GSM recordings (else 16 kHz G.722)
    folders: tuple[tuple[str, str], ...]  # (language, folder under SOUNDS_DIR)
    packages: tuple[str, ...]
    licence: str
    credit: str

    @property
    def languages(self) -> tuple[str, ...]:
        return tuple(lang for lang, _ in self.folders)


SPEAKERS: dict[str, Speaker] = {
    s.name: s
    for s in (
        Speaker(
            "allison",
            "f",
            205.0,
            False,
            (("en", "en_US_f_Allison"), ("es", "es_MX_f_Allison")),
            ("asterisk-core-sounds-en-g722", "asterisk-core-sounds-es-g722"),
            "CC-BY-SA-3.0",
            "Allison Smith, Asterisk core sounds (c) 2003-2010",
        ),
        Speaker(
            "june",
            "f",
            200.0,
            False,
            (("fr", "fr_CA_f_June"),),
            ("asterisk-core-sounds-fr-g722",),
            "CC-BY-SA-3.0",
            "June Wallack, Asterisk core sounds (c) 2006-2008",
        ),
        Speaker(
            "carlo",
            "m",
            130.0,
            False,
            (("it", "it_IT_m_Carlo"),),
            ("asterisk-core-sounds-it-g722",),
            "CC-BY-3.0",
            "Carlo Flora, Asterisk core sounds (c) 2012 <http://www.segreterietelefoniche.it>",
        ),
        Speaker(
            "ivrvoice",
            "f",
            215.0,
            False,
            (("ru", "ru_RU_f_IvrvoiceRU"),),
            ("asterisk-core-sounds-ru-g722",),
            "CC-BY-3.0",
            "IvrvoiceRU, Asterisk core sounds (c) 2010 Maxim",
        ),
        Speaker(
            "armelle",
            "f",
            210.0,
            True,
            (("fr", "fr"),),
            ("asterisk-prompt-fr-armelle",),
            "BSD-style (redistribution with the copyright notice; no endorsement)",
            "Armelle Desjardins (voice), (c) 2006 Michel Gutierrez",
        ),
        Speaker(
            "menardi",
            "f",
            185.0,
            True,
            (("it", "it_IT_f_Menardi"),),
            ("asterisk-prompt-it-menardi-gsm",),
            "CC-BY-SA-3.0",
            "Paola Dal Zot (voice), (c) 2006-2011 Marco Menardi",
        ),
        Speaker(
            "july",
            "f",
            225.0,
            True,
            (("es", "es"),),
            ("asterisk-prompt-es-co",),
            "GPL-2",
            "July E. Jimenez (voice), Avatar Ltda.",
        ),
    )
}
# Speaker-disjoint splits: which split each speaker belongs to unless held out.
DEFAULT_SPEAKER_SPLIT = {
    "allison": "train",
    "june": "train",
    "menardi": "train",
    "ivrvoice": "train",
    "july": "val",
    "carlo": "test",
    "armelle": "test",
}


@dataclass(frozen=True)
class SynthVoice:
    """One voice of a speech synthesizer."""

    engine: str  # "espeak-ng", "flite" or "festival"
    name: str  # the engine's voice name (eSpeak NG: the variant)
    languages: tuple[str, ...]
    sex: str
    split: str  # the split it belongs to unless its engine is held out

    @property
    def label(self) -> str:
        return f"{self.engine}/{self.name}"


ENGINES = ("espeak-ng", "flite", "festival")
ENGINE_METHODS = {"espeak-ng": "tts_espeak_ng", "flite": "tts_flite", "festival": "tts_festival"}
ENGINE_PACKAGES: dict[str, tuple[str, ...]] = {
    "espeak-ng": ("espeak-ng",),
    "flite": ("flite",),
    "festival": (
        "festival",
        "festvox-kallpc16k",
        "festvox-us-slt-hts",
        "festvox-italp16k",
        "festvox-itapc16k",
        "festvox-ru",
    ),
}
ENGINE_LICENCES = {
    "espeak-ng": "GPL-3+ (eSpeak NG, formant synthesis)",
    "flite": "BSD-style CMU licence (Flite; voices awb, kal, kal16, rms, slt)",
    "festival": "BSD-style Edinburgh/CMU licences (Festival; voices kal_diphone,"
    " cmu_us_slt_arctic_hts, msu_ru_nsh_clunits); GPL-2+ (Italian voices lp_diphone,"
    " pc_diphone)",
}
GSM_PACKAGE = "libgsm-tools"  # toast/untoast: the narrowband channel's GSM 06.10 codec
_ESPEAK_ALL = LANGUAGES
SYNTH_VOICES: tuple[SynthVoice, ...] = (
    # eSpeak NG: one formant model per language, voice variants shared by all languages.
    *(SynthVoice("espeak-ng", v, _ESPEAK_ALL, v[0], "train") for v in ("m1", "m2", "m3")),
    *(SynthVoice("espeak-ng", v, _ESPEAK_ALL, v[0], "train") for v in ("f1", "f2")),
    *(SynthVoice("espeak-ng", v, _ESPEAK_ALL, v[0], "val") for v in ("m4", "f3")),
    *(SynthVoice("espeak-ng", v, _ESPEAK_ALL, v[0], "test") for v in ("m5", "m6", "f4", "f5")),
    # Flite (English only): diphone (kal), clustergen/cluster-unit voices.
    SynthVoice("flite", "slt", ("en",), "f", "train"),
    SynthVoice("flite", "rms", ("en",), "m", "train"),
    SynthVoice("flite", "kal16", ("en",), "m", "train"),
    SynthVoice("flite", "kal", ("en",), "m", "val"),
    SynthVoice("flite", "awb", ("en",), "m", "test"),
    # Festival: diphone (kal, lp, pc), statistical parametric (slt HTS), cluster units (ru).
    SynthVoice("festival", "kal_diphone", ("en",), "m", "train"),
    SynthVoice("festival", "lp_diphone", ("it",), "f", "train"),
    SynthVoice("festival", "msu_ru_nsh_clunits", ("ru",), "m", "train"),
    SynthVoice("festival", "cmu_us_slt_arctic_hts", ("en",), "f", "test"),
    SynthVoice("festival", "pc_diphone", ("it",), "m", "test"),
)
FESTIVAL_VOICE_DIRS = {
    "kal_diphone": "english/kal_diphone",
    "cmu_us_slt_arctic_hts": "us/cmu_us_slt_arctic_hts",
    "lp_diphone": "italian/lp_diphone",
    "pc_diphone": "italian/pc_diphone",
    "msu_ru_nsh_clunits": "russian/msu_ru_nsh_clunits",
}

# What the synthesizers say: telephone-prompt sentences like the recorded ones (ASCII in
# Italian: Festival's Italian voices read Latin-1, not UTF-8).
TEXTS: dict[str, tuple[str, ...]] = {
    "en": (
        "Please enter your account number, followed by the pound key.",
        "Your call is important to us. Please stay on the line.",
        "The person you are calling is not available.",
        "Please leave your message after the tone.",
        "You have two new messages.",
        "To repeat this menu, press star.",
        "Your password has been changed.",
        "The conference is now locked.",
        "Please hold while I try to connect you.",
        "That extension is invalid. Please try again.",
        "Thank you for calling. Goodbye.",
        "For the operator, press zero.",
    ),
    "es": (
        "Por favor, marque su numero de cuenta seguido de la tecla numeral.",
        "Su llamada es muy importante para nosotros.",
        "La persona que usted llama no esta disponible.",
        "Por favor, deje su mensaje despues del tono.",
        "Usted tiene dos mensajes nuevos.",
        "Para repetir este menu, oprima asterisco.",
        "Su contrasena ha sido cambiada.",
        "La conferencia esta bloqueada.",
        "Por favor espere mientras lo comunico.",
        "Esa extension no es valida. Intente de nuevo.",
        "Gracias por llamar. Hasta luego.",
        "Para hablar con la operadora, marque cero.",
    ),
    "fr": (
        "Veuillez composer votre numéro de compte, suivi de la touche dièse.",
        "Votre appel est important pour nous. Restez en ligne.",
        "La personne que vous appelez n'est pas disponible.",
        "Veuillez laisser votre message après le signal sonore.",
        "Vous avez deux nouveaux messages.",
        "Pour réécouter ce menu, appuyez sur étoile.",
        "Votre mot de passe a été modifié.",
        "La conférence est maintenant verrouillée.",
        "Veuillez patienter, nous recherchons votre correspondant.",
        "Ce poste n'est pas valide. Veuillez réessayer.",
        "Merci de votre appel. Au revoir.",
        "Pour joindre la standardiste, composez le zéro.",
    ),
    "it": (
        "Prego, inserisca il numero del conto, seguito dal tasto cancelletto.",
        "La sua chiamata per noi e importante. Resti in linea.",
        "La persona chiamata non e al momento raggiungibile.",
        "Lasci un messaggio dopo il segnale acustico.",
        "Ci sono due nuovi messaggi.",
        "Per ascoltare di nuovo il menu, prema asterisco.",
        "La password e stata cambiata.",
        "La conferenza adesso e bloccata.",
        "Attenda in linea, stiamo trasferendo la chiamata.",
        "Interno non valido. Riprovi, prego.",
        "Grazie per aver chiamato. Arrivederci.",
        "Per parlare con un operatore, prema zero.",
    ),
    "ru": (
        "Пожалуйста, введите номер вашего счёта и нажмите решётку.",
        "Ваш звонок очень важен для нас. Оставайтесь на линии.",
        "Абонент, которому вы звоните, недоступен.",
        "Пожалуйста, оставьте сообщение после сигнала.",
        "У вас два новых сообщения.",
        "Чтобы прослушать меню ещё раз, нажмите звёздочку.",
        "Ваш пароль изменён.",
        "Конференция заблокирована.",
        "Пожалуйста, подождите, идёт соединение.",
        "Неверный добавочный номер. Попробуйте ещё раз.",
        "Спасибо за звонок. До свидания.",
        "Чтобы связаться с оператором, нажмите ноль.",
    ),
}


# ---- what is installed -----------------------------------------------------------------


def _speaker_folder(folder: str) -> Path:
    return SOUNDS_DIR / folder


@functools.cache
def prompt_files(speaker: str, language: str) -> tuple[Path, ...]:
    """The speaker's prompt recordings in `language`, sorted (top-level files only: the
    sub-folders hold single digits and letters)."""
    folder = dict(SPEAKERS[speaker].folders)[language]
    root = _speaker_folder(folder)
    if not root.is_dir():
        return ()
    suffix = ".gsm" if SPEAKERS[speaker].narrowband else ".g722"
    return tuple(
        sorted(
            p
            for p in root.iterdir()
            if p.suffix == suffix and p.is_file() and not any(w in p.name for w in SKIP_PROMPTS)
        )
    )


def _festival_voice_present(name: str) -> bool:
    return (FESTIVAL_VOICES_DIR / FESTIVAL_VOICE_DIRS[name]).is_dir()


def missing_packages() -> list[str]:
    """Debian packages `--voices real` needs that are not installed (empty: all there)."""
    missing: list[str] = []
    for s in SPEAKERS.values():
        for (lang, _), package in zip(s.folders, s.packages, strict=True):
            if len(prompt_files(s.name, lang)) < MIN_PROMPTS:
                missing.append(package)
    if shutil.which("espeak-ng") is None:
        missing.append("espeak-ng")
    if shutil.which("flite") is None:
        missing.append("flite")
    if shutil.which("text2wave") is None:
        missing.append("festival")
    voice_packages = {
        "kal_diphone": "festvox-kallpc16k",
        "cmu_us_slt_arctic_hts": "festvox-us-slt-hts",
        "lp_diphone": "festvox-italp16k",
        "pc_diphone": "festvox-itapc16k",
        "msu_ru_nsh_clunits": "festvox-ru",
    }
    missing.extend(p for v, p in voice_packages.items() if not _festival_voice_present(v))
    if shutil.which("toast") is None or shutil.which("untoast") is None:
        missing.append(GSM_PACKAGE)
    return list(dict.fromkeys(missing))


def all_packages() -> list[str]:
    """Every Debian package the real voices use (scripts/system-deps.sh lists the same)."""
    out = [p for s in SPEAKERS.values() for p in s.packages]
    out += [p for e in ENGINES for p in ENGINE_PACKAGES[e]] + [GSM_PACKAGE]
    return list(dict.fromkeys(out))


def install_hint(missing: Sequence[str]) -> str:
    return "apt-get install " + " ".join(missing)


# ---- the cast: who speaks in which split ----------------------------------------------


@dataclass(frozen=True)
class Channel:
    """The call's audio channel, shared by a scene's real and fake clip."""

    narrow: bool  # 8 kHz GSM (else 16 kHz G.722)
    cutoff_hz: float  # low-pass corner

    @property
    def rate(self) -> int:
        return NARROW_RATE if self.narrow else WIDE_RATE


@dataclass(frozen=True)
class VoicePlan:
    """How a scene is voiced: whose recordings, in which language, over which channel."""

    speaker: str
    language: str
    channel: Channel
    seed: int  # prompt choice and pauses of the real clip


@dataclass(frozen=True)
class TtsPlan:
    """A synthesizer's take on a scene: which voice says which sentences."""

    engine: str
    voice: str
    language: str
    speed: float  # speaking-rate factor (1 = the engine's default)
    pitch: int  # eSpeak NG pitch 0-99 (the other engines keep their voice's own)
    seed: int  # sentence choice and pauses

    @property
    def label(self) -> str:
        return f"{self.engine}/{self.voice}"


@dataclass(frozen=True)
class Cast:
    """Which speakers and synthetic voices each split uses (disjoint between splits)."""

    speakers: dict[str, tuple[str, ...]]  # split -> speaker names
    voices: dict[str, tuple[SynthVoice, ...]]  # split -> synthesizer voices

    def engine_voices(self, split: str, engine: str, language: str) -> list[SynthVoice]:
        return [v for v in self.voices[split] if v.engine == engine and language in v.languages]

    def can_voice(self, method: str, split: str, language: str) -> bool:
        """Whether `method` can make a fake of a scene in `language` in `split`."""
        engine = method_engine(method)
        if engine is None:
            return True
        return bool(self.engine_voices(split, engine, language))

    def pick_tts(
        self, method: str, split: str, speaker: Speaker, language: str, rng: np.random.Generator
    ) -> TtsPlan:
        """A voice of the method's engine for this split and language; one of the speaker's
        sex when the split has one (a voice of the other sex would give the fake away by
        its pitch)."""
        engine = method_engine(method)
        if engine is None:
            raise ValueError(f"{method} is not a synthesizer method")
        pool = self.engine_voices(split, engine, language)
        if not pool:
            raise ValueError(f"no {engine} voice speaks {language} in the {split} split")
        same = [v for v in pool if v.sex == speaker.sex]
        voice = (same or pool)[int(rng.integers(len(same or pool)))]
        nominal = 200.0 if voice.sex == "f" else 120.0
        pitch = 50.0 + 60.0 * math.log2(speaker.f0_hz / nominal) + rng.uniform(-8.0, 8.0)
        return TtsPlan(
            engine=engine,
            voice=voice.name,
            language=language,
            speed=float(rng.uniform(*TTS_SPEED)),
            pitch=int(np.clip(round(pitch), 5, 95)),
            seed=int(rng.integers(2**31)),
        )


def method_engine(method: str) -> str | None:
    """The synthesizer a method uses (None: not a synthesizer method)."""
    return next((e for e, m in ENGINE_METHODS.items() if m == method), None)


def make_cast(
    held_speakers: Iterable[str] = (), held_engines: Iterable[str] = (), splits: Sequence[str] = ()
) -> Cast:
    """Speakers and synthesizer voices per split.

    By default each speaker and each voice belongs to the split of DEFAULT_SPEAKER_SPLIT
    and SYNTH_VOICES. A held-out speaker goes to the test split; a held-out engine's
    voices all go there, and when no test speaker speaks a language that engine
    speaks, the first training speaker who does moves to the test split with them (an
    engine is only used in its scene's language).
    """
    split_of = dict(DEFAULT_SPEAKER_SPLIT)
    for s in held_speakers:
        split_of[s] = "test"
    held_e = set(held_engines)
    for engine in sorted(held_e):
        langs = {lang for v in SYNTH_VOICES if v.engine == engine for lang in v.languages}
        test_langs = {
            lang
            for s, where in split_of.items()
            if where == "test"
            for lang in SPEAKERS[s].languages
        }
        if langs & test_langs:
            continue
        movable = [
            s
            for s, where in split_of.items()
            if where == "train" and set(SPEAKERS[s].languages) & langs
        ]
        if movable:
            split_of[movable[0]] = "test"
    names = splits or ("train", "val", "test")
    speakers = {sp: tuple(s for s in SPEAKERS if split_of[s] == sp) for sp in names}
    voices = {
        sp: tuple(
            v
            for v in SYNTH_VOICES
            if (v.split == sp and v.engine not in held_e) or (v.engine in held_e and sp == "test")
        )
        for sp in names
    }
    return Cast(speakers=speakers, voices=voices)


def plan_voicing(speaker: str, rng: np.random.Generator) -> VoicePlan:
    """A scene's language (one of the speaker's) and channel."""
    s = SPEAKERS[speaker]
    language = s.languages[int(rng.integers(len(s.languages)))]
    narrow = s.narrowband or bool(rng.random() < NARROW_PROB)
    cutoff = float(rng.uniform(*(NARROW_CUTOFF_HZ if narrow else WIDE_CUTOFF_HZ)))
    return VoicePlan(speaker, language, Channel(narrow, cutoff), int(rng.integers(2**31)))


def speaker_voice(speaker: str) -> Voice:
    """A speech.Voice with the speaker's pitch and vocal-tract factor (voice conversion
    reads only these two)."""
    s = SPEAKERS[speaker]
    return Voice(s.f0_hz, 3.0, FORMANT_SCALE[s.sex], 0.05, 0.6, 0.006, 4.5)


def far_enough(speaker: str, voice: Voice) -> bool:
    """Whether converting the speaker to `voice` moves the pitch audibly."""
    return abs(math.log2(voice.f0_hz / SPEAKERS[speaker].f0_hz)) >= MIN_PITCH_RATIO_OCTAVES


# ---- attribution -----------------------------------------------------------------------


def notice_text(cast: Cast | None = None) -> str:
    """NOTICE.md for a dataset voiced with real recordings and synthesizers."""
    used = {s for names in cast.speakers.values() for s in names} if cast else set(SPEAKERS)
    lines = [
        "# Voices in this dataset",
        "",
        "Generated by `deepfake-monitor synth --voices real`. The real (bona fide) calls are",
        "voiced with prompt recordings from Debian packages, resampled, band-limited,",
        "re-encoded and cut into new sequences (modified works); the fake calls with speech",
        "synthesizers or with signal-processing conversions of those recordings.",
        "Redistributing these clips means keeping this notice with them.",
        "",
        "## Recorded voices",
        "",
        "| speaker | languages | Debian package(s) | licence | credit |",
        "|---|---|---|---|---|",
    ]
    for s in SPEAKERS.values():
        if s.name in used:
            lines.append(
                f"| {s.name} | {', '.join(s.languages)} | {', '.join(s.packages)} | "
                f"{s.licence} | {s.credit} |"
            )
    lines += [
        "",
        "Full licence texts: /usr/share/doc/<package>/copyright on a Debian system.",
        "",
        "## Speech synthesizers (fake voices)",
        "",
        "| engine | Debian package(s) | licence |",
        "|---|---|---|",
    ]
    for e in ENGINES:
        lines.append(f"| {e} | {', '.join(ENGINE_PACKAGES[e])} | {ENGINE_LICENCES[e]} |")
    lines += [
        "",
        f"Narrowband calls are coded with GSM 06.10 by {GSM_PACKAGE} (toast; TU-Berlin-2.0).",
        "",
    ]
    return "\n".join(lines)
