"""Hostile media for robustness tests, generated with PyAV at test time (no committed binaries).

One function per case. Each writes one entry into `folder` (created if needed) and returns
its path; `name` overrides the default file name, so a case can be given an odd name or a
misleading suffix. The files are tiny (tens of kB, a few seconds) and take well under a
second each to write; `very_long` (10 min, not part of the corpus) takes about a second.

    from tests.support import hostile_media as hm
    path = hm.truncated(tmp_path, 0.5)          # one case
    corpus = hm.write_corpus(tmp_path / "bad")  # every file case: {case name: path}

What each case is meant to provoke is in its docstring; `EXPECT` says, per case of
`CASES`, whether offline scoring scores it ("scored", possibly with a counted fallback or
a note) or gives it an error row ("error"). The live `watch` path can reuse the same files.

Cases that are not regular files (a directory, a symlink loop, a dangling symlink, a FIFO
with a video suffix) are in `NON_FILES`; odd but valid file names are in `ODD_NAMES`.
"""

from __future__ import annotations

import io
import os
import re
import wave
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from tests.support.media_factory import index_frame, tone, write_clip

SIZE = (48, 48)  # px: big enough for MIN_DIMENSION, cheap to decode
FPS = 10
SECONDS = 2.0
RATE = 16_000  # Hz, audio of the plain clips
HUGE_MBS = 1000  # macroblocks per side claimed by `huge_dimensions`: 16000 x 16000 px

# File names that are valid on Linux but trip naive CSV writers, shells and loggers.
ODD_NAMES = (
    "with space.mp4",
    " leading and trailing space .mp4",
    "ünïcödé-видео-视频.mp4",
    "-leading-dash.mp4",
    "comma,in,name.mp4",
    "new\nline.mp4",
    "carriage\rreturn.mp4",
    'quote"in"name.mp4',
    "tab\tname.mp4",
    "back\\slash.mp4",
)


def _dir(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def good(folder: Path, name: str = "good.mp4", seconds: float = SECONDS) -> Path:
    """A plain valid H.264 + AAC clip (the baseline every other case departs from)."""
    return write_clip(
        _dir(folder) / name, seconds=seconds, fps=FPS, size=SIZE, audio_rate=RATE, channels=1
    )


def odd_name(folder: Path, name: str) -> Path:
    """A valid clip under an odd file name (see ODD_NAMES)."""
    return good(folder, name)


def zero_byte(folder: Path, name: str = "zero.mp4") -> Path:
    """An empty file with a video suffix."""
    p = _dir(folder) / name
    p.write_bytes(b"")
    return p


def truncated(folder: Path, fraction: float, name: str | None = None) -> Path:
    """A clip cut after `fraction` of its bytes (moov at the end: the index is lost)."""
    src = good(_dir(folder), f".src-{fraction}.mp4", seconds=4.0)
    data = src.read_bytes()
    src.unlink()
    p = folder / (name or f"truncated-{round(fraction * 100)}.mp4")
    p.write_bytes(data[: max(1, int(len(data) * fraction))])
    return p


def truncated_faststart(folder: Path, fraction: float, name: str | None = None) -> Path:
    """A faststart clip (moov first) cut after `fraction` of its bytes: the header
    promises 4 s that the payload no longer holds."""
    src = good(_dir(folder), f".src-fs-{fraction}.mp4", seconds=4.0)
    fast = folder / f".fast-{fraction}.mp4"
    with (
        av.open(str(src)) as inp,
        av.open(str(fast), "w", options={"movflags": "faststart"}) as out,
    ):
        streams = {s.index: out.add_stream_from_template(s) for s in inp.streams}
        for pkt in inp.demux():
            if pkt.dts is None:
                continue
            pkt.stream = streams[pkt.stream.index]
            out.mux(pkt)
    data = fast.read_bytes()
    src.unlink()
    fast.unlink()
    p = folder / (name or f"truncated-faststart-{round(fraction * 100)}.mp4")
    p.write_bytes(data[: int(len(data) * fraction)])
    return p


def wav_named_mp4(folder: Path, name: str = "wav-inside.mp4") -> Path:
    """A PCM WAV file (audio only) under an .mp4 name: the wrong container for its suffix."""
    p = _dir(folder) / name
    samples = (tone(300.0, SECONDS, RATE, 1)[0] * 32767).astype("<i2")
    with wave.open(str(p), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(samples.tobytes())
    return p


def mkv_named_mp4(folder: Path, name: str = "mkv-inside.mp4") -> Path:
    """A Matroska clip under an .mp4 name."""
    return write_clip(
        _dir(folder) / name,
        seconds=SECONDS,
        fps=FPS,
        size=SIZE,
        audio_rate=RATE,
        channels=1,
        container="matroska",
    )


def garbage(folder: Path, name: str = "garbage.mp4", size: int = 64 * 1024, seed: int = 0) -> Path:
    """Random bytes under a media name."""
    p = _dir(folder) / name
    p.write_bytes(np.random.default_rng(seed).bytes(size))
    return p


def garbage_with_magic(folder: Path, name: str = "garbage-ftyp.mp4", seed: int = 1) -> Path:
    """An MP4 `ftyp` box followed by random bytes: looks like media, is not."""
    p = _dir(folder) / name
    head = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2"
    p.write_bytes(head + np.random.default_rng(seed).bytes(32 * 1024))
    return p


def audio_only(folder: Path, name: str = "audio-only.mp4") -> Path:
    """An MP4 with an AAC track and no video track."""
    return write_clip(
        _dir(folder) / name, seconds=SECONDS, audio_rate=RATE, channels=1, video=False
    )


def video_only(folder: Path, name: str = "video-only.mp4") -> Path:
    """An MP4 with an H.264 track and no audio track."""
    return write_clip(_dir(folder) / name, seconds=SECONDS, fps=FPS, size=SIZE, audio_rate=None)


def short_audio(folder: Path, name: str = "short-audio.mp4", audio_fraction: float = 0.5) -> Path:
    """A valid MP4 whose audio track covers only `audio_fraction` of its 4 s video track
    (a camera that started recording sound late, an edited clip)."""
    return _av_clip(_dir(folder) / name, video_s=4.0, audio_s=4.0 * audio_fraction)


def short_video(folder: Path, name: str = "short-video.mp4", video_fraction: float = 0.5) -> Path:
    """A valid MP4 whose video track covers only `video_fraction` of its 4 s audio track."""
    return _av_clip(_dir(folder) / name, video_s=4.0 * video_fraction, audio_s=4.0)


def variable_frame_rate(folder: Path, name: str = "vfr.mp4") -> Path:
    """A variable-frame-rate MP4, as screen and phone recorders write them: 30 fps for
    2 s, 2 fps for 1 s, then one frame held for 2 s. Audio stops at the last frame's
    start (3 s), so the video track (5 s) outlasts it by 40 %."""
    times = [i / 30 for i in range(60)] + [2.0, 2.5, 3.0]
    return _av_clip(
        _dir(folder) / name, video_s=5.0, audio_s=3.0, frame_times=times, last_frame_s=2.0
    )


def audio_8k_mono(folder: Path, name: str = "audio-8k-mono.mp4") -> Path:
    """H.264 + AAC at 8 kHz, one channel."""
    return _av_clip(
        _dir(folder) / name, video_s=SECONDS, audio_s=SECONDS, rate=8_000, layout="mono"
    )


def audio_44k_6ch(folder: Path, name: str = "audio-44k-6ch.mp4") -> Path:
    """H.264 + AAC at 44.1 kHz, six channels (5.1)."""
    return _av_clip(
        _dir(folder) / name, video_s=SECONDS, audio_s=SECONDS, rate=44_100, layout="5.1"
    )


def very_long(folder: Path, name: str = "very-long.mov", seconds: float = 600.0) -> Path:
    """A long clip made cheap to write and read: a QuickTime file of 1 fps, 16x16 px
    H.264 and 8 kHz mono PCM (10 min by default, about 10 MB). Not in CASES: it costs a
    few seconds to score, so tests use it on its own."""
    return _av_clip(
        _dir(folder) / name,
        video_s=seconds,
        audio_s=seconds,
        fps=1,
        size=(16, 16),
        rate=8_000,
        layout="mono",
        gop=60,
        container="mov",
        audio_codec="pcm_s16le",
    )


def resolution_change(folder: Path, name: str = "resolution-change.ts") -> Path:
    """MPEG-TS whose H.264 stream switches from 48x48 to 96x64 px after 1 s (new in-band
    SPS), with a continuous AAC track."""
    p = _dir(folder) / name
    with av.open(str(p), "w", format="mpegts") as out:
        vs = out.add_stream("h264", rate=FPS)
        vs.width, vs.height = SIZE
        a_s = out.add_stream("aac", rate=RATE)
        a_s.layout = "mono"
        tb = Fraction(1, 90_000)
        n = round(SECONDS * FPS)
        for seg, (w, h) in enumerate((SIZE, (96, 64))):
            enc = _h264_encoder(w, h, FPS)
            first, last = seg * n // 2, (seg + 1) * n // 2
            pkts = _encode_frames(enc, [i / FPS for i in range(first, last)], w, h, offset=first)
            for data, pts, key in pkts:
                pkt = av.Packet(data)
                pkt.pts = pkt.dts = round(pts / tb)
                pkt.time_base, pkt.stream = tb, vs
                pkt.is_keyframe = key
                out.mux(pkt)
        _mux_audio(out, a_s, [(RATE, "mono", SECONDS)])
    return p


def sample_rate_change(folder: Path, name: str = "sample-rate-change.ts") -> Path:
    """MPEG-TS whose AAC stream switches from 44.1 kHz to 8 kHz (mono both) after 1 s
    (a new ADTS configuration mid-stream), with continuous video."""
    p = _dir(folder) / name
    with av.open(str(p), "w", format="mpegts") as out:
        vs = out.add_stream("libx264", rate=FPS)
        vs.width, vs.height, vs.pix_fmt = *SIZE, "yuv420p"
        vs.options = {"preset": "ultrafast"}
        a_s = out.add_stream("aac", rate=44_100)
        a_s.layout = "mono"
        for i in range(round(SECONDS * FPS)):
            frame = av.VideoFrame.from_ndarray(index_frame(i, *SIZE), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, FPS)
            for pkt in vs.encode(frame):
                out.mux(pkt)
        for pkt in vs.encode(None):
            out.mux(pkt)
        _mux_audio(out, a_s, [(44_100, "mono", SECONDS / 2), (8_000, "mono", SECONDS / 2)])
    return p


def huge_dimensions(folder: Path, name: str = "huge-dimensions.mp4") -> Path:
    """A raw H.264 stream (Annex B) of 48x48 px frames whose SPS claims 16000x16000 px,
    under an .mp4 name. Decoding it naively allocates gigabytes of frame buffers."""
    enc = _h264_encoder(*SIZE, FPS, profile="baseline")
    packets = _encode_frames(enc, [i / FPS for i in range(round(SECONDS * FPS))], *SIZE)
    stream = b"".join(data for data, _, _ in packets)
    p = _dir(folder) / name
    p.write_bytes(_patch_sps_dimensions(stream, HUGE_MBS, HUGE_MBS))
    return p


def huge_dimensions_mp4(folder: Path, name: str = "huge-dimensions-container.mp4") -> Path:
    """The stream of `huge_dimensions` muxed into a real MP4 container, whose sample
    description then also claims 16000x16000 px."""
    raw = huge_dimensions(_dir(folder), ".huge.h264")
    p = folder / name
    limit = {"max_pixels": str(1 << 20)}  # do not decode the huge frames while copying
    with (
        av.open(str(raw), format="h264", options=limit) as inp,
        av.open(str(p), "w", format="mp4") as out,
    ):
        src = inp.streams.video[0]
        vs = out.add_stream_from_template(src)
        for i, pkt in enumerate(inp.demux(src)):
            if pkt.size == 0:
                continue
            pkt.pts = pkt.dts = i
            pkt.duration = 1
            pkt.time_base = Fraction(1, FPS)
            pkt.stream = vs
            out.mux(pkt)
    raw.unlink()
    return p


# --- entries that are not regular files ----------------------------------------------------


def directory(folder: Path, name: str = "a-directory.mp4") -> Path:
    """A directory with a video suffix."""
    p = _dir(folder) / name
    p.mkdir()
    return p


def symlink_loop(folder: Path, name: str = "loop.mp4") -> Path:
    """A symlink that points at itself (ELOOP on open)."""
    p = _dir(folder) / name
    p.symlink_to(name)
    return p


def dangling_symlink(folder: Path, name: str = "dangling.mp4") -> Path:
    """A symlink to a file that does not exist."""
    p = _dir(folder) / name
    p.symlink_to("no-such-target.mp4")
    return p


def fifo(folder: Path, name: str = "fifo.mp4") -> Path:
    """A named pipe with a video suffix: opening it for reading would block forever."""
    p = _dir(folder) / name
    os.mkfifo(p)
    return p


# --- the corpus --------------------------------------------------------------------------

Case = Callable[[Path], Path]

CASES: dict[str, Case] = {
    "zero_byte": zero_byte,
    "truncated_2": lambda d: truncated(d, 0.02),
    "truncated_50": lambda d: truncated(d, 0.5),
    "truncated_98": lambda d: truncated(d, 0.98),
    "truncated_faststart_40": lambda d: truncated_faststart(d, 0.4),
    "truncated_faststart_3": lambda d: truncated_faststart(d, 0.03),
    "wav_named_mp4": wav_named_mp4,
    "mkv_named_mp4": mkv_named_mp4,
    "garbage": garbage,
    "garbage_with_magic": garbage_with_magic,
    "audio_only": audio_only,
    "video_only": video_only,
    "short_audio": short_audio,
    "short_video": short_video,
    "variable_frame_rate": variable_frame_rate,
    "audio_8k_mono": audio_8k_mono,
    "audio_44k_6ch": audio_44k_6ch,
    "resolution_change": resolution_change,
    "sample_rate_change": sample_rate_change,
    "huge_dimensions": huge_dimensions,
    "huge_dimensions_mp4": huge_dimensions_mp4,
}

# What offline scoring must do with each of CASES: score it ("scored", perhaps with a
# counted fallback or a note) or give it the neutral score and an errors entry ("error").
EXPECT: dict[str, str] = {
    "zero_byte": "error",
    "truncated_2": "error",
    "truncated_50": "error",
    "truncated_98": "error",
    "truncated_faststart_40": "error",
    "truncated_faststart_3": "error",
    "wav_named_mp4": "scored",
    "mkv_named_mp4": "scored",
    "garbage": "error",
    "garbage_with_magic": "error",
    "audio_only": "scored",
    "video_only": "scored",
    "short_audio": "scored",
    "short_video": "scored",
    "variable_frame_rate": "scored",
    "audio_8k_mono": "scored",
    "audio_44k_6ch": "scored",
    "resolution_change": "scored",
    "sample_rate_change": "scored",
    "huge_dimensions": "error",
    "huge_dimensions_mp4": "error",
}

# Cases whose headers are intact, so `probe` (which reads headers only) calls them fine;
# decoding finds what is missing.
HEADER_INTACT = frozenset({"truncated_faststart_40", "truncated_faststart_3"})

NON_FILES: dict[str, Case] = {
    "directory": directory,
    "symlink_loop": symlink_loop,
    "dangling_symlink": dangling_symlink,
    "fifo": fifo,
}


def write_corpus(
    folder: Path, *, non_files: bool = False, odd_names: bool = False
) -> dict[str, Path]:
    """Every case of CASES in `folder` (plus NON_FILES and the ODD_NAMES clips if asked):
    {case name: path}. Odd-name clips are keyed `odd_name_<i>`."""
    out = {case: make(folder) for case, make in CASES.items()}
    if non_files:
        out.update({case: make(folder) for case, make in NON_FILES.items()})
    if odd_names:
        out.update({f"odd_name_{i}": odd_name(folder, n) for i, n in enumerate(ODD_NAMES)})
    return out


# --- writers -------------------------------------------------------------------------------


def _h264_encoder(width: int, height: int, fps: int, profile: str | None = None) -> Any:
    enc = av.CodecContext.create("libx264", "w")
    enc.width, enc.height, enc.pix_fmt = width, height, "yuv420p"
    enc.time_base = Fraction(1, 1000)
    enc.framerate = Fraction(fps, 1)
    opts = {"preset": "ultrafast", "tune": "zerolatency"}
    if profile:
        opts["profile"] = profile
    enc.options = opts
    return enc


def _encode_frames(
    enc: Any, times: list[float], width: int, height: int, offset: int = 0
) -> list[tuple[bytes, float, bool]]:
    """Encode one frame per time (brightness = index); (Annex B bytes, pts s, keyframe)."""
    out: list[tuple[bytes, float, bool]] = []
    for i, t in enumerate(times):
        img = index_frame(i + offset, width, height)
        frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")
        frame.pts, frame.time_base = round(t * 1000), Fraction(1, 1000)
        out += [(bytes(p), float(p.pts) / 1000, p.is_keyframe) for p in enc.encode(frame)]
    out += [(bytes(p), float(p.pts) / 1000, p.is_keyframe) for p in enc.encode(None)]
    return out


def _adts_frames(rate: int, layout: str, seconds: float) -> list[bytes]:
    """A tone encoded as AAC with ADTS headers (each frame carries its own rate and
    channel configuration), split into frames."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="adts") as out:
        stream = out.add_stream("aac", rate=rate)
        stream.layout = layout
        channels = len(av.AudioLayout(layout).channels)
        x = tone(330.0, seconds, rate, channels)
        for a in range(0, x.shape[1], 1024):
            af = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(x[:, a : a + 1024]), format="fltp", layout=layout
            )
            af.sample_rate, af.pts, af.time_base = rate, a, Fraction(1, rate)
            for pkt in stream.encode(af):
                out.mux(pkt)
        for pkt in stream.encode(None):
            out.mux(pkt)
    data, frames, at = buf.getvalue(), [], 0
    while at + 7 <= len(data):
        length = ((data[at + 3] & 0x03) << 11) | (data[at + 4] << 3) | (data[at + 5] >> 5)
        frames.append(data[at : at + length])
        at += length
    return frames


def _mux_audio(out: Any, stream: Any, parts: list[tuple[int, str, float]]) -> None:
    """Tone segments [(rate, layout, seconds)] into an MPEG-TS audio `stream`, as ADTS
    frames: a segment with another rate or layout is a configuration change mid-stream."""
    t = 0.0
    for rate, layout, seconds in parts:
        for frame in _adts_frames(rate, layout, seconds):
            pkt = av.Packet(frame)
            pkt.stream = stream
            pkt.time_base = Fraction(1, 90_000)
            pkt.pts = pkt.dts = round(t * 90_000)
            pkt.duration = round(1024 / rate * 90_000)
            out.mux(pkt)
            t += 1024 / rate


def _av_clip(
    path: Path,
    *,
    video_s: float,
    audio_s: float,
    fps: int = FPS,
    size: tuple[int, int] = SIZE,
    rate: int = RATE,
    layout: str = "mono",
    frame_times: list[float] | None = None,
    gop: int | None = None,
    last_frame_s: float | None = None,
    container: str = "mp4",
    audio_codec: str = "aac",
) -> Path:
    """H.264 + AAC MP4 with independent track lengths, optional explicit frame times
    and an optional display time of the last frame."""
    width, height = size
    times = (
        frame_times if frame_times is not None else [i / fps for i in range(round(video_s * fps))]
    )
    with av.open(str(path), "w", format=container) as out:
        vs = out.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        vs.time_base = Fraction(1, 1000)
        vs.codec_context.time_base = Fraction(1, 1000)
        opts: dict[str, object] = {"preset": "ultrafast"}
        if gop:
            vs.codec_context.gop_size = gop
            opts["x264-params"] = f"keyint={gop}:min-keyint={gop}:scenecut=0"
        vs.options = opts
        a_s: Any = out.add_stream(audio_codec, rate=rate)
        a_s.layout = layout
        pcm = audio_codec.startswith("pcm_s16")
        for i, t in enumerate(times):
            frame = av.VideoFrame.from_ndarray(index_frame(i, width, height), format="rgb24")
            frame.pts, frame.time_base = round(t * 1000), Fraction(1, 1000)
            for pkt in vs.encode(frame):
                out.mux(pkt)
        tail = list(vs.encode(None))
        if tail and last_frame_s is not None:
            tail[-1].duration = round(last_frame_s * 1000)  # time base 1/1000
        for pkt in tail:
            out.mux(pkt)
        channels = len(av.AudioLayout(layout).channels)
        chunk = 1024
        n = round(audio_s * rate)
        for a in range(0, n, chunk * 64):  # a tone generated in pieces: long clips stay cheap
            x = tone(330.0, min(chunk * 64, n - a) / rate, rate, channels)
            for b in range(0, x.shape[1], chunk):
                part = np.ascontiguousarray(x[:, b : b + chunk])
                if pcm:  # packed 16-bit samples, channels interleaved
                    packed = (part.T.reshape(1, -1) * 32767).astype(np.int16)
                    af = av.AudioFrame.from_ndarray(packed, format="s16", layout=layout)
                else:
                    af = av.AudioFrame.from_ndarray(part, format="fltp", layout=layout)
                af.sample_rate, af.pts, af.time_base = rate, a + b, Fraction(1, rate)
                for pkt in a_s.encode(af):
                    out.mux(pkt)
        for pkt in a_s.encode(None):
            out.mux(pkt)
    return path


# --- H.264 SPS rewriting (for huge_dimensions) ---------------------------------------------


def _ue(value: int) -> str:
    """Exp-Golomb code of an unsigned value, as a bit string."""
    b = bin(value + 1)[2:]
    return "0" * (len(b) - 1) + b


class _BitReader:
    def __init__(self, data: bytes) -> None:
        self.bits = "".join(f"{b:08b}" for b in data)
        self.pos = 0

    def u(self, n: int) -> int:
        v = int(self.bits[self.pos : self.pos + n] or "0", 2)
        self.pos += n
        return v

    def ue(self) -> int:
        zeros = 0
        while self.bits[self.pos] == "0":
            zeros += 1
            self.pos += 1
        self.pos += 1
        return (1 << zeros) - 1 + self.u(zeros)


def _unescape(rbsp: bytes) -> bytes:
    return rbsp.replace(b"\x00\x00\x03", b"\x00\x00")


def _escape(rbsp: bytes) -> bytes:
    out, zeros = bytearray(), 0
    for x in rbsp:
        if zeros >= 2 and x <= 3:
            out.append(3)
            zeros = 0
        out.append(x)
        zeros = zeros + 1 if x == 0 else 0
    return bytes(out)


def _patch_sps(nal: bytes, width_mbs: int, height_mbs: int) -> bytes:
    """A baseline-profile SPS NAL unit with its picture size replaced (in macroblocks)."""
    r = _BitReader(_unescape(nal[1:]))
    profile = r.u(8)
    if profile != 66:
        raise ValueError(f"only baseline SPS (profile 66) can be patched, got {profile}")
    r.u(16)  # constraint flags, level
    r.ue()  # seq_parameter_set_id
    r.ue()  # log2_max_frame_num_minus4
    poc_type = r.ue()
    if poc_type == 0:
        r.ue()  # log2_max_pic_order_cnt_lsb_minus4
    elif poc_type == 1:
        raise ValueError("pic_order_cnt_type 1 is not supported")
    r.ue()  # max_num_ref_frames
    r.u(1)  # gaps_in_frame_num_value_allowed_flag
    start = r.pos
    r.ue()  # pic_width_in_mbs_minus1
    r.ue()  # pic_height_in_map_units_minus1
    tail = r.bits[r.pos :].rstrip("0")  # the rest, up to and including the stop bit
    bits = r.bits[:start] + _ue(width_mbs - 1) + _ue(height_mbs - 1) + tail
    bits += "0" * (-len(bits) % 8)
    body = bytes(int(bits[i : i + 8], 2) for i in range(0, len(bits), 8))
    return nal[:1] + _escape(body)


def _patch_sps_dimensions(stream: bytes, width_mbs: int, height_mbs: int) -> bytes:
    """An Annex B H.264 stream with every SPS claiming width_mbs x height_mbs macroblocks."""
    parts = re.split(b"(\x00\x00\x00\x01|\x00\x00\x01)", stream)
    out = bytearray()
    for part in parts:
        is_start_code = part in (b"\x00\x00\x00\x01", b"\x00\x00\x01")
        if part and not is_start_code and part[0] & 0x1F == 7:
            part = _patch_sps(part, width_mbs, height_mbs)
        out += part
    return bytes(out)
