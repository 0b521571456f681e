"""MP4 writing with PyAV: H.264 (yuv420p) video and AAC stereo audio at 44.1 kHz.

Real and fake clips go through exactly this function with the scene's settings, so codec,
preset, rate control, GOP and audio bitrate carry no information about the label. x264
runs single-threaded: output is then bit-exact for a given input (the dataset is
deterministic) and parallelism comes from the worker processes instead. Its SIMD code is
capped at AVX2 on CPUs with AVX-512 (see `x264_params`).
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Iterable
from pathlib import Path

import av
import numpy as np

from train.synth.speech import AUDIO_RATE

logger = logging.getLogger(__name__)

X264_PRESET = "veryfast"
GOP_SECONDS = 2  # keyframe interval, like a streaming encoder
AAC_FRAME = 1024  # samples per AAC frame
AAC_CODER = "fast"  # FFmpeg's AAC coder choice: "fast" is several times quicker than the
# default "twoloop" at the same bitrate, and the same coder is used for every clip


CPUINFO = Path("/proc/cpuinfo")


def x264_params(cpuinfo: str | None = None) -> dict[str, str]:
    """Extra libx264 options for this machine: on a CPU with AVX-512, cap x264's SIMD at
    AVX2.

    With its AVX-512 code (which x264 picks wherever the CPU has it), PyAV 18.1's
    libx264 encoded the same frames into different bitstreams from one call to the
    next, on an AMD EPYC with AVX-512: decoded frames then differed by up to 46 grey
    levels, and "same seed, same data" no longer held. Capped at AVX2 the output is the
    same every time, at the same speed (61 against 63 ms for a 26-frame clip). Without
    SIMD at all it is also the same, but 3 times slower. Elsewhere x264 picks for
    itself. `cpuinfo` is the text of /proc/cpuinfo (read when None; absent off Linux).
    """
    text = _cpuinfo() if cpuinfo is None else cpuinfo
    flags = next(
        (line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")),
        [],
    )
    return {"x264-params": "asm=avx2"} if "avx512f" in flags and "avx2" in flags else {}


@functools.cache
def _cpuinfo() -> str:
    try:
        return CPUINFO.read_text()
    except OSError:
        return ""


def write_mp4(
    path: str | Path,
    frames: Iterable[np.ndarray],
    audio: np.ndarray,
    fps: int,
    width: int,
    height: int,
    crf: int,
    audio_bitrate: int,
) -> None:
    """Encode RGB uint8 frames and stereo float32 audio [2, n] (AUDIO_RATE Hz) to `path`.

    The file is written under a temporary name and renamed, so an interrupted run never
    leaves a truncated clip under the final name.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".part")
    try:
        _encode(tmp, frames, audio, fps, width, height, crf, audio_bitrate)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def _encode(
    tmp: Path,
    frames: Iterable[np.ndarray],
    audio: np.ndarray,
    fps: int,
    width: int,
    height: int,
    crf: int,
    audio_bitrate: int,
) -> None:
    with av.open(str(tmp), mode="w", format="mp4") as out:
        options = {"crf": str(crf), "preset": X264_PRESET, **x264_params()}
        vs = out.add_stream("libx264", rate=fps, options=options)
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        vs.codec_context.thread_count = 1
        vs.codec_context.gop_size = GOP_SECONDS * fps
        aus = out.add_stream(
            "aac", rate=AUDIO_RATE, layout="stereo", options={"aac_coder": AAC_CODER}
        )
        aus.bit_rate = audio_bitrate
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            out.mux(vs.encode(frame))
        out.mux(vs.encode(None))
        pcm = np.ascontiguousarray(audio, dtype=np.float32)
        for start in range(0, pcm.shape[1], AAC_FRAME):
            chunk = np.ascontiguousarray(pcm[:, start : start + AAC_FRAME])
            af = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
            af.sample_rate = AUDIO_RATE
            af.pts = start
            out.mux(aus.encode(af))
        out.mux(aus.encode(None))
