"""Small real clips for the live-monitor tests, written with PyAV.

A "talking head" is skimage's astronaut photograph (a real frontal face the Haar cascade
finds) on a flat background; `gain` scales the whole frame's brightness and `tone_amp`
the voice's loudness. With the toy ONNX detector (`engines.toy`: P(fake) rises with
brightness and audio energy) a bright, loud clip plays "fake" and a dark, quiet one
"real". Audio and video packets are interleaved so the file streams well over RTSP.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import TypedDict

import av
import cv2
import numpy as np
from skimage import data as skdata

from engines.toy import make_toy_onnx
from monitor.contract import InputContract

HEAD = np.ascontiguousarray(skdata.astronaut()[0:300, 100:360])  # head and shoulders
FRAME_SIZE = (320, 240)  # px, small: decoding stays cheap on 2 cores
AUDIO_RATE = 44_100  # Hz, like the competition clips
AAC_FRAME = 1024  # samples per AAC frame


class Look(TypedDict):
    gain: float  # brightness factor of the whole frame
    tone_amp: float  # amplitude of the "voice" tone


FAKE: Look = {"gain": 1.5, "tone_amp": 0.7}  # bright + loud: the toy model says fake
REAL: Look = {"gain": 0.4, "tone_amp": 0.05}  # dark + quiet: the toy model says real


def face_frame(gain: float = 1.0, face: bool = True, shift: int = 0) -> np.ndarray:
    w, h = FRAME_SIZE
    frame = np.full((h, w, 3), 90, dtype=np.uint8)
    if face:
        head = cv2.resize(HEAD, None, fx=0.6, fy=0.6, interpolation=cv2.INTER_AREA)
        hh, hw = head.shape[:2]
        x, y = 70 + shift, 40
        frame[y : y + hh, x : x + hw] = head
    return np.clip(frame.astype(np.float32) * gain, 0, 255).astype(np.uint8)


def write_clip(
    path: Path,
    *,
    seconds: float = 4.0,
    fps: int = 10,
    gain: float = 1.0,
    tone_amp: float = 0.2,
    audio: bool = True,
    face: bool = True,
    black: bool = False,
    gop: int = 10,
    then: Look | None = None,
    turn_at: float | None = None,
) -> Path:
    """An H.264 (+ AAC) MP4 with a still talking head and a tone, packets interleaved; with
    `then` and `turn_at`, the look changes to `then` at `turn_at` seconds (a call that
    turns fake mid-way)."""
    w, h = FRAME_SIZE
    with av.open(str(path), "w", format="mp4") as out:
        vs = out.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        vs.codec_context.gop_size = gop  # a keyframe every second: RTSP clients can join
        vs.options = {
            "preset": "ultrafast",
            "crf": "23",
            "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes=0",
        }
        a_s = None
        if audio:
            a_s = out.add_stream("aac", rate=AUDIO_RATE)
            a_s.layout = "mono"
        still = np.zeros((h, w, 3), np.uint8) if black else face_frame(gain, face)
        n_frames = round(seconds * fps)
        t = np.arange(round(seconds * AUDIO_RATE)) / AUDIO_RATE
        amp = np.full(t.shape, tone_amp)
        turned = still
        if then is not None and turn_at is not None:
            amp[t >= turn_at] = then["tone_amp"]
            turned = face_frame(then["gain"], face)
        tone = (amp * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
        a_pos = 0
        for i in range(n_frames):
            picture = turned if turn_at is not None and i / fps >= turn_at else still
            vf = av.VideoFrame.from_ndarray(picture, format="rgb24")
            vf.pts, vf.time_base = i, Fraction(1, fps)
            for pkt in vs.encode(vf):
                out.mux(pkt)
            if a_s is None:
                continue
            until = round((i + 1) / fps * AUDIO_RATE)
            while a_pos < min(until, tone.shape[0]):
                part = tone[a_pos : a_pos + AAC_FRAME]
                af = av.AudioFrame.from_ndarray(part[None, :], format="fltp", layout="mono")
                af.sample_rate, af.pts, af.time_base = AUDIO_RATE, a_pos, Fraction(1, AUDIO_RATE)
                for pkt in a_s.encode(af):
                    out.mux(pkt)
                a_pos += part.shape[0]
        for stream in (vs, a_s):
            if stream is not None:
                for pkt in stream.encode(None):
                    out.mux(pkt)
    return path


def toy_model(folder: Path, contract: InputContract | None = None) -> Path:
    """The toy ONNX detector (+ manifest) in `folder`, loadable with engines.load_backend."""
    folder.mkdir(parents=True, exist_ok=True)
    return make_toy_onnx(contract or InputContract(), folder / "model.onnx")
