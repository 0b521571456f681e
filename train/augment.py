"""Augmentations of one cached window (audio + face-crop stack), numpy and OpenCV only.

They run in DataLoader worker processes on uint8 crops and float32 audio, before the
model. Each one imitates something the delivery path of a real call or upload does to
a clip, so the detector cannot lean on the training set's exact codec, scale, exposure
or loudness; generator artefacts that survive these are what it must learn.

Photometric changes are drawn once per window and applied to the whole crop stack: the
K crops of a window come from one camera and one encoder, and jittering them
independently would invent a flicker no real clip has. SpecAugment lives inside the
model (it needs the mel front end).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from fractions import Fraction

import av
import cv2
import numpy as np
from av.video.reformatter import VideoReformatter

from monitor.contract import SAMPLE_RATE
from monitor.live.crops import to_rgb
from train.config import AugmentConfig
from train.delivery import AUDIO_CLIP, audio_noise, delivery, rms
from train.synth import dsp
from train.synth.encode import X264_PRESET, x264_params

logger = logging.getLogger(__name__)

PIXEL_MAX = 255.0  # uint8 full scale
# ITU-R BT.601 luma weights, for saturation changes around each pixel's grey level.
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)
RESIZE_INTERPOLATIONS = (cv2.INTER_LINEAR, cv2.INTER_AREA, cv2.INTER_CUBIC, cv2.INTER_NEAREST)
MIN_RESIZED_PX = 8  # never downscale a crop below this many pixels per side
MIN_CODED_PX = 16  # H.264 codes at least one macroblock per side (smaller crops are padded)
NOISE_BANK_SIZE = 1 << 22  # unit normals shared by gaussian_noise draws (16 MB, made once)
NOISE_BANK_SEED = 20240601
_NOISE_BANK: np.ndarray | None = None
DEFAULT_CROP_RATE = 4.0  # the contract's default: 8 crops over a 2-s window
VOICE_FFT = 512  # 32 ms at 16 kHz: the resolution a speech vocoder works at
VOICE_MIN_CHANGE = 0.1  # smallest RMS change (relative) a voice pseudo-fake may make
VOICE_SPEECH_RMS = 3e-3  # a window quieter than this holds too little voice to re-synthesise


def jpeg_recompress(faces: np.ndarray, quality: int) -> np.ndarray:
    """Encode and decode every RGB crop of a stack as JPEG at `quality` (5..100)."""
    out = np.empty_like(faces)
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    for i, crop in enumerate(faces):
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(crop, cv2.COLOR_RGB2BGR), params)
        decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR) if ok else None
        if decoded is None:  # OpenCV only fails here on absurd inputs; keep the crop
            logger.debug("JPEG round trip failed for a %s crop, left unchanged", crop.shape)
            out[i] = crop
            continue
        out[i] = cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)
    return out


def h264_recompress(faces: np.ndarray, crf: int, rate: float, steps: int = 1) -> np.ndarray:
    """Encode a [K, H, W, 3] RGB crop stack as H.264 at `rate` crops a second and constant
    rate factor `crf` (0..51), and decode it.

    What a call's video encoder does that JPEG does not: 4:2:0 chroma, the deblocking
    filter's smear, and at low bitrates skipped blocks that hold part of the previous
    picture. With `steps` > 1, `steps - 1` cross-faded frames are coded between each two
    crops, as a camera's frames lie between the instants a window samples: each changes
    the picture a little, so at a low bitrate x264 skips the blocks that changed least and
    updates the others, and the crop comes back a patchwork of fresh and stale blocks (a
    mouth that stops while the voice goes on, a seam across the face). Only the crops'
    own frames are returned. x264 runs single-threaded with the synthetic clips' preset,
    so the round trip is deterministic.
    """
    k, h, w = faces.shape[:3]
    # 4:2:0 needs even sides, and x264 one macroblock at least
    even_h, even_w = max(MIN_CODED_PX, h + h % 2), max(MIN_CODED_PX, w + w % 2)
    if (even_h, even_w) != (h, w):
        faces = np.stack(
            [
                cv2.copyMakeBorder(c, 0, even_h - h, 0, even_w - w, cv2.BORDER_REPLICATE)
                for c in faces
            ]
        )
    steps = max(1, int(steps))
    enc = av.CodecContext.create("libx264", "w")
    enc.width, enc.height, enc.pix_fmt = even_w, even_h, "yuv420p"
    enc.time_base = Fraction(1, 1000)
    enc.framerate = Fraction(rate * steps).limit_denominator(1000)
    enc.thread_count = 1
    enc.options = {"crf": str(int(crf)), "preset": X264_PRESET, **x264_params()}

    def frames() -> Iterator[np.ndarray]:
        yield faces[0]
        for i in range(1, k):
            a, b = faces[i - 1].astype(np.float32), faces[i].astype(np.float32)
            for j in range(1, steps):
                yield np.rint(a + (b - a) * (j / steps)).astype(np.uint8)
            yield faces[i]

    # one-thread conversions: PyAV's own would start swscale threads for every frame
    to_yuv, from_yuv = VideoReformatter(), VideoReformatter()
    packets = []
    for n, image in enumerate(frames()):
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        frame = to_yuv.reformat(frame, format="yuv420p", threads=1)
        frame.pts = round(n * 1000 / (rate * steps))
        frame.time_base = enc.time_base
        packets.extend(enc.encode(frame))
    packets.extend(enc.encode(None))
    dec = av.CodecContext.create("h264", "r")
    dec.thread_count = 1
    decoded = [f for p in packets for f in dec.decode(p)]
    decoded.extend(dec.decode(None))
    n_coded = 1 + (k - 1) * steps
    if len(decoded) != n_coded:  # x264 returns every frame it is given; keep the crops if not
        logger.debug("H.264 round trip gave %d of %d frames, left unchanged", len(decoded), n_coded)
        return faces[:, :h, :w]
    out = np.empty((k, h, w, 3), dtype=np.uint8)
    for i in range(k):
        out[i] = to_rgb(decoded[i * steps], from_yuv)[:h, :w]
    return out


def h264_at_scale(
    faces: np.ndarray, crf: int, scale: float, rate: float, steps: int = 1
) -> np.ndarray:
    """`h264_recompress` of the crops downscaled by `scale` (area), upscaled back: a face
    that filled fewer pixels of the frame the encoder sent."""
    if scale >= 1.0:
        return h264_recompress(faces, crf, rate, steps)
    return _through_small(
        faces, scale, cv2.INTER_AREA, lambda tiny: h264_recompress(tiny, crf, rate, steps)
    )


def freeze(faces: np.ndarray, start: int, length: int) -> np.ndarray:
    """Crops start..start+length-1 of a [K, H, W, 3] stack all show crop `start`: the
    picture of a stalled call or a starved encoder, held while the voice goes on."""
    k = faces.shape[0]
    if not (start >= 0 and length >= 1 and start + length <= k):
        raise ValueError(f"a freeze of {length} crops from {start} does not fit {k} crops")
    out = faces.copy()
    out[start + 1 : start + length] = faces[start]
    return out


def resize_down_up(
    faces: np.ndarray, scale: float, interpolation: int, quality: int | None = None
) -> np.ndarray:
    """Downscale each crop by `scale` and back to its size: the blur of a low-res source.
    With `quality`, the small crops are JPEG-compressed before the upscale: a frame sent
    at low resolution, its encoder's blocks as large as the upscale makes them."""
    code = None if quality is None else (lambda tiny: jpeg_recompress(tiny, quality))
    return _through_small(faces, scale, interpolation, code)


def _through_small(
    faces: np.ndarray,
    scale: float,
    interpolation: int,
    code: Callable[[np.ndarray], np.ndarray] | None = None,
) -> np.ndarray:
    """Each crop downscaled by `scale`, `code`d at that size if given, and upscaled back."""
    h, w = faces.shape[1:3]
    small = (max(MIN_RESIZED_PX, round(w * scale)), max(MIN_RESIZED_PX, round(h * scale)))
    tiny = np.stack([cv2.resize(crop, small, interpolation=interpolation) for crop in faces])
    if code is not None:
        tiny = code(tiny)
    out = np.empty_like(faces)
    for i, crop in enumerate(tiny):
        out[i] = cv2.resize(crop, (w, h), interpolation=cv2.INTER_LINEAR)
    return out


def _noise_bank() -> np.ndarray:
    global _NOISE_BANK
    if _NOISE_BANK is None:
        _NOISE_BANK = np.random.default_rng(NOISE_BANK_SEED).standard_normal(
            NOISE_BANK_SIZE, dtype=np.float32
        )
    return _NOISE_BANK


def gaussian_noise(faces: np.ndarray, std: float, rng: np.random.Generator) -> np.ndarray:
    """Add sensor-like Gaussian noise of `std` (in 0..255 units), independent per pixel.

    The unit normals are a slice of a fixed bank at an offset drawn from `rng`: drawing
    fresh ones took 3 of the 4 ms a training draw spends on augmentation. Any slice of
    the bank is i.i.d. normal, and which slice a window gets does not depend on its label.
    """
    bank = _noise_bank()
    n = faces.size
    if n > bank.size:  # stacks this large are not trained on; draw fresh normals
        unit = rng.standard_normal(faces.shape, dtype=np.float32)
    else:
        start = int(rng.integers(0, bank.size - n + 1))
        unit = bank[start : start + n].reshape(faces.shape)
    noisy = faces.astype(np.float32)
    noisy += unit * np.float32(std)
    np.clip(noisy, 0, PIXEL_MAX, out=noisy)
    np.rint(noisy, out=noisy)  # a bare cast truncates: every pixel 0.5 levels darker
    return noisy.astype(np.uint8)


def denoise(faces: np.ndarray, sigma_color: float, sigma_space: float) -> np.ndarray:
    """Edge-preserving smoothing of every crop (a bilateral filter, 5-px neighbourhood).

    What a camera's or a call client's noise suppression does: flat skin loses its sensor
    noise while eyes, lips and the face outline stay sharp. A real face then looks as
    clean as a generated one, so the detector cannot call "no sensor noise" fake.
    """
    out = np.empty_like(faces)
    for i, crop in enumerate(faces):
        out[i] = cv2.bilateralFilter(np.ascontiguousarray(crop), 5, sigma_color, sigma_space)
    return out


def color_jitter(
    faces: np.ndarray, brightness: float, contrast: float, saturation: float
) -> np.ndarray:
    """Scale brightness, contrast (around the stack's mean grey) and saturation; 1.0 = same.

    The three steps compose into one affine colour map per pixel (brightness and
    saturation keep each pixel's grey level proportional, so the stack's mean grey is
    known up front), applied in one OpenCV pass with rounding and saturation to uint8.
    """
    luma = LUMA_WEIGHTS.astype(np.float64)
    rows = np.ascontiguousarray(faces).reshape(-1, faces.shape[-2], 3)
    channel_means = np.array(cv2.mean(rows)[:3])  # a SIMD pass; numpy's mean took 2 ms
    mean_grey = float(channel_means @ luma) * brightness
    towards_grey = np.outer(np.ones(3), luma)  # RGB -> (grey, grey, grey)
    linear = brightness * contrast * (saturation * np.eye(3) + (1.0 - saturation) * towards_grey)
    affine = np.concatenate([linear, np.full((3, 1), (1.0 - contrast) * mean_grey)], axis=1)
    return np.asarray(cv2.transform(rows, affine)).reshape(faces.shape)


def blend_mask(size: int, rng: np.random.Generator) -> np.ndarray:
    """Soft elliptical mask [size, size] over the inner face of a centred face crop.

    Face crops are centred on the detected face box plus a margin, so the eyes, nose and
    mouth sit in an ellipse around the middle; its centre, axes and edge softness are
    jittered so the boundary is not always in one place.
    """
    cx = size * (0.5 + rng.uniform(-0.04, 0.04))
    cy = size * (0.55 + rng.uniform(-0.04, 0.06))
    ax = size * rng.uniform(0.18, 0.3)
    ay = size * rng.uniform(0.22, 0.34)
    mask = np.zeros((size, size), np.float32)
    cv2.ellipse(mask, (round(cx), round(cy)), (round(ax), round(ay)), 0, 0, 360, 1.0, -1)
    sigma = size * rng.uniform(0.02, 0.08)
    return cv2.GaussianBlur(mask, (0, 0), sigma)


def self_blend(faces: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A pseudo-fake from a real crop stack: the inner face blended back in, altered.

    What face-swap and re-enactment generators leave behind is a region pasted into a
    real frame: a blending boundary, a colour or brightness step, a different
    resolution or sharpness. Blending each crop with a transformed copy of itself
    (self-blended images) teaches exactly those traces without any generator, so the
    detector learns cues shared by manipulation families it has never seen. One
    transform and one mask per window, as a generator would apply to the whole clip.
    """
    mask = blend_mask(faces.shape[1], rng)[None, :, :, None]
    source = faces
    if rng.random() < 0.7:  # resolution: generators render the face smaller and upscale it
        scale = float(rng.uniform(0.2, 0.7))
        source = resize_down_up(source, scale, cv2.INTER_LINEAR)
    elif rng.random() < 0.5:  # or sharpen it (over-enhanced output)
        blur = np.stack([cv2.GaussianBlur(c, (0, 0), 1.0) for c in source])
        source = np.clip(source * 1.8 - blur * 0.8, 0, PIXEL_MAX).astype(np.uint8)
    x = source.astype(np.float32)
    if rng.random() < 0.8:  # colour / brightness mismatch of the pasted region
        x = x * rng.uniform(0.88, 1.12) + rng.uniform(-14.0, 14.0, size=3).astype(np.float32)
    blended = mask * x + (1.0 - mask) * faces.astype(np.float32)
    return np.clip(blended, 0, PIXEL_MAX).astype(np.uint8)


def voice_resynth(audio: np.ndarray, rate: int, rng: np.random.Generator) -> np.ndarray:
    """A pseudo-fake voice from a real window: the same speech, re-synthesised.

    Every voice generator (text-to-speech, voice conversion, neural codecs) ends by
    rebuilding a waveform from a spectral representation it predicted, and what that
    leaves is shared across families: phase that was estimated rather than recorded,
    a spectrogram smoother than a real one over time, and a top band filled in from the
    envelope instead of the real harmonics. Each of those is applied here (one or more
    per window, random strengths) to the window's own voice, so the timing, words,
    pitch and formants stay the recording's own: nothing of a particular converter (no
    pitch or formant shift, no mel filterbank) is taught, only the re-synthesis traces.
    A third of the time only a stretch of the window is re-synthesised and cross-faded
    in, as a partly edited recording would be. The level is matched to the original.
    """
    spec = dsp.stft(audio, VOICE_FFT)
    mag = np.abs(spec).astype(np.float32)
    phase = np.angle(spec).astype(np.float32)
    bins_hz = np.fft.rfftfreq(VOICE_FFT, 1.0 / rate)
    ops = rng.random(3) < 0.5
    if not ops.any():
        ops[rng.integers(3)] = True
    if ops[0]:  # over-smoothed over time, as a predicted spectrogram is
        width = int(rng.integers(3, 10))
        smooth = cv2.blur(np.log(mag + 1e-6), (1, width))  # frames are rows
        mag = np.exp(smooth).astype(np.float32)
    if ops[1]:  # top band rebuilt from the envelope: shaped noise, not harmonics
        cutoff = float(rng.uniform(3_000.0, 0.45 * rate))
        top = bins_hz >= cutoff
        env = cv2.blur(mag, (9, 1))  # 9 bins ~ 280 Hz: wider than any pitch's harmonics
        mag = np.where(top[None, :], env, mag).astype(np.float32)
        phase = np.where(top[None, :], rng.uniform(-np.pi, np.pi, phase.shape), phase)
    if ops[2]:  # phase estimated, not recorded: random start, a few Griffin-Lim passes
        cutoff = float(rng.choice([0.0, rng.uniform(500.0, 3_000.0)]))
        phase = _estimated_phase(mag, phase, bins_hz >= cutoff, audio.size, rng)
    out = _resynthesise(mag, phase, audio.size)
    if _relative_change(out, audio) < VOICE_MIN_CHANGE:
        # The drawn changes missed this voice (a top band it has no energy in, a steady
        # vowel the smoothing leaves alone): a pseudo-fake must differ from its real
        # source, or it is a real window labelled fake. Its whole phase is re-estimated.
        phase = _estimated_phase(mag, phase, np.ones_like(bins_hz, bool), audio.size, rng)
        out = _resynthesise(mag, phase, audio.size)
    if rng.random() < 1.0 / 3.0:  # only a stretch re-synthesised, cross-faded at both ends
        n = audio.size
        length = int(rng.uniform(0.4, 0.8) * n)
        start = int(rng.integers(0, n - length + 1))
        fade = min(length // 4, int(0.02 * rate))
        w = np.zeros(n, np.float32)
        w[start : start + length] = 1.0
        ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)
        w[start : start + fade] = ramp
        w[start + length - fade : start + length] = ramp[::-1]
        out = w * out + (1.0 - w) * audio
    level, out_level = rms(audio), rms(out)
    if out_level > 0.0:
        out = out * np.float32(level / out_level)
    return np.clip(out, -AUDIO_CLIP, AUDIO_CLIP).astype(np.float32)


def _estimated_phase(
    mag: np.ndarray, phase: np.ndarray, bins: np.ndarray, n: int, rng: np.random.Generator
) -> np.ndarray:
    """`phase` with the selected bins replaced: random, then 0-4 Griffin-Lim passes."""
    above = bins[None, :]
    phase = np.where(above, rng.uniform(-np.pi, np.pi, phase.shape), phase)
    for _ in range(int(rng.integers(0, 5))):
        rebuilt = dsp.stft(_resynthesise(mag, phase, n), VOICE_FFT)
        phase = np.where(above, np.angle(rebuilt), phase)
    return phase


def _resynthesise(mag: np.ndarray, phase: np.ndarray, n: int) -> np.ndarray:
    """n samples rebuilt from a VOICE_FFT magnitude and phase."""
    return dsp.istft((mag * np.exp(1j * phase)).astype(np.complex64), VOICE_FFT, n)


def _relative_change(out: np.ndarray, audio: np.ndarray) -> float:
    return rms(out - audio) / max(rms(audio), 1e-12)


def has_voice(audio: np.ndarray) -> bool:
    """Whether a window is loud enough to hold speech worth re-synthesising."""
    return rms(audio) >= VOICE_SPEECH_RMS


def av_offset(audio: np.ndarray, shift: int) -> np.ndarray:
    """The window's voice `shift` samples later against its crops (earlier when negative).

    The gap at one end is filled with the window's own audio mirrored at that edge, so
    no silence marks a moved window. |shift| must be below the window's length.
    """
    n, m = audio.shape[0], abs(shift)
    if m == 0:
        return audio
    if m >= n:
        raise ValueError(f"a shift of {shift} samples does not fit a {n}-sample window")
    padded = np.pad(audio, (m, m), mode="reflect")
    return padded[m - shift : m - shift + n]


def audio_gain(audio: np.ndarray, gain_db: float) -> np.ndarray:
    return np.clip(audio * np.float32(10.0 ** (gain_db / 20.0)), -AUDIO_CLIP, AUDIO_CLIP)


class Augmenter:
    """Applies the configured augmentations with a caller-supplied generator (deterministic)."""

    def __init__(self, cfg: AugmentConfig, crop_rate: float = DEFAULT_CROP_RATE) -> None:
        self.cfg = cfg
        self.crop_rate = crop_rate  # crops a second of a window: the H.264 step's frame rate

    def wants_self_blend(self, rng: np.random.Generator) -> bool:
        """Draw whether a fake draw is replaced by a self-blended pseudo-fake of a real clip."""
        c = self.cfg
        return c.enabled and c.self_blend_prob > 0 and rng.random() < c.self_blend_prob

    def self_blend(self, faces: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return self_blend(faces, rng)

    def wants_voice_resynth(self, rng: np.random.Generator) -> bool:
        """Draw whether a fake draw is replaced by a re-synthesised real voice.

        No draw while it is off, so configs without it draw what they drew before.
        """
        c = self.cfg
        return c.enabled and c.voice_resynth_prob > 0 and rng.random() < c.voice_resynth_prob

    def voice_resynth(self, audio: np.ndarray, rate: int, rng: np.random.Generator) -> np.ndarray:
        return voice_resynth(audio, rate, rng)

    def degrade_strength(self, epoch: int) -> float:
        """Factor on the crop-degrading probabilities in `epoch` (0-based): the warm-up ramp.

        A detector's visual branch first has to find the pixel-level trace of a re-rendered
        face; denoising, rescaling, noise and re-compression blur exactly that trace, and
        with all of them on from the first step some seeds never leave the starting
        plateau (docs/experiments.md, 2026-11-24). The ramp lets the branch find the cue on
        clean crops, then teaches it to keep the cue through degraded ones.
        """
        n = self.cfg.degrade_warmup_epochs
        return 1.0 if n <= 0 else min(1.0, epoch / n)

    def faces(
        self,
        faces: np.ndarray,
        rng: np.random.Generator,
        strength: float = 1.0,
        keep_timing: bool = False,
    ) -> np.ndarray:
        """Augment [K, H, W, 3] crops; `strength` scales the degrading augmentations' odds.

        Only the odds are scaled, never what is drawn, so at strength 1 (after the warm-up,
        or without one) a sample gets exactly the augmentations it got before the warm-up
        existed. With `keep_timing` no freeze is applied (it is still drawn).
        """
        return self.faces_detail(faces, rng, strength, keep_timing)[0]

    def faces_detail(
        self,
        faces: np.ndarray,
        rng: np.random.Generator,
        strength: float = 1.0,
        keep_timing: bool = False,
        keep_detail: bool = False,
    ) -> tuple[np.ndarray, bool]:
        """`faces`, and whether the crops were degraded below the detail floor
        (`detail_floor_scale`, `detail_floor_jpeg`). With `keep_detail` (a fake whose face
        is its evidence) a downscale or JPEG quality drawn below the floor is raised to it:
        the same draws, so every other augmentation of the window is unchanged."""
        c = self.cfg
        if not c.enabled:
            return faces, False
        below = False
        k = faces.shape[0]
        if c.freeze_prob > 0 and k >= 2:
            # Its own generator, so that every other crop augmentation draws as before.
            child = rng.spawn(1)[0]
            if child.random() < c.freeze_prob:
                length = int(child.integers(2, min(c.freeze_max_steps, k) + 1))
                start = int(child.integers(0, k - length + 1))
                if not keep_timing:
                    faces = freeze(faces, start, length)
        # First: the camera's own processing. No draw while it is off, so that configs
        # without it draw the same augmentations as before it existed.
        if c.denoise_prob > 0 and rng.random() < c.denoise_prob * strength:
            faces = denoise(faces, float(rng.uniform(5.0, c.denoise_sigma_max)), 2.0)
        resize: tuple[float, int] | None = None
        source_scale = 1.0  # the side factor the source was downscaled to, if it was
        if rng.random() < c.resize_prob * strength:
            scale = float(rng.uniform(c.resize_min_scale, 1.0))
            if keep_detail:
                scale = max(scale, c.detail_floor_scale)
            source_scale = scale
            below = below or scale < c.detail_floor_scale
            interp = RESIZE_INTERPOLATIONS[int(rng.integers(len(RESIZE_INTERPOLATIONS)))]
            if c.codec_at_scale:
                resize = (scale, interp)  # after the camera's steps, with the JPEG if any
            else:
                faces = resize_down_up(faces, scale, interp)
        if rng.random() < c.color_prob:
            b, k, s = rng.uniform(-1.0, 1.0, size=3)
            faces = color_jitter(
                faces, 1.0 + b * c.brightness, 1.0 + k * c.contrast, 1.0 + s * c.saturation
            )
        if rng.random() < c.noise_prob * strength:
            faces = gaussian_noise(faces, float(rng.uniform(0.0, c.noise_std_max)), rng)
        # Last, as in delivery: whatever the camera did, the encoder compresses it.
        if rng.random() < c.jpeg_prob * strength:
            q = int(rng.integers(c.jpeg_quality_min, c.jpeg_quality_max + 1))
            codec = self._h264_draw(rng) if c.h264_prob > 0 else None
            if codec is not None:
                crf, sent = codec
                sent = min(sent, source_scale)  # a low-resolution source is sent as such
                if resize is not None:  # the source's own blur, then the sent frame's codec
                    faces = resize_down_up(faces, *resize)
                if keep_detail and 0 < c.detail_floor_crf < crf:
                    # A fake face is never coded past the floor, and a draw past it is not
                    # raised to it but left uncoded: at every CRF under the floor, fakes
                    # and reals are then coded equally often (a raised draw would make
                    # "coded at the floor" a mark of the fakes).
                    return faces, below
                if keep_detail:
                    sent = max(sent, c.detail_floor_scale)
                below = below or sent < c.detail_floor_scale or 0 < c.detail_floor_crf < crf
                steps = max(1, round(c.h264_frame_rate / self.crop_rate))
                return h264_at_scale(faces, crf, sent, self.crop_rate, steps), below
            if keep_detail:
                q = max(q, c.detail_floor_jpeg)
            below = below or q < c.detail_floor_jpeg
            if resize is not None:
                faces, resize = resize_down_up(faces, *resize, quality=q), None
            else:
                faces = jpeg_recompress(faces, q)
        if resize is not None:
            faces = resize_down_up(faces, *resize)
        return faces, below

    def _h264_draw(self, rng: np.random.Generator) -> tuple[int, float] | None:
        """Whether the compression step is H.264, and its CRF and scale. A child generator:
        spawning draws nothing from `rng`, so every other draw is what it was without it."""
        c = self.cfg
        child = rng.spawn(1)[0]
        if child.random() >= c.h264_prob:
            return None
        crf = int(child.integers(c.h264_crf_min, c.h264_crf_max + 1))
        return crf, float(child.uniform(c.h264_min_scale, 1.0))

    def audio(
        self, audio: np.ndarray, rng: np.random.Generator, keep_timing: bool = False
    ) -> np.ndarray:
        """Augment one window's audio; with `keep_timing` no skew is applied (still drawn)."""
        c = self.cfg
        if not c.enabled:
            return audio
        if rng.random() < c.audio_gain_prob:
            audio = audio_gain(audio, float(rng.uniform(-c.audio_gain_db, c.audio_gain_db)))
        if rng.random() < c.audio_noise_prob:
            snr = float(rng.uniform(c.audio_snr_db_min, c.audio_snr_db_max))
            audio = audio_noise(audio, snr, rng)
        prob = c.audio_delivery_prob
        if prob > 0:
            # A child generator: spawning draws nothing from `rng`, so every other
            # augmentation of this window is the one it got before delivery existed.
            child = rng.spawn(1)[0]
            if child.random() < prob:
                audio = delivery(audio, SAMPLE_RATE, child)
        if c.av_offset_prob > 0:
            # A child generator too, spawned after delivery's, so delivery draws as before.
            child = rng.spawn(1)[0]
            if child.random() < c.av_offset_prob:
                most = min(round(c.av_offset_max_s * SAMPLE_RATE), audio.shape[0] - 1)
                shift = int(child.integers(-most, most + 1))
                if not keep_timing:
                    audio = av_offset(audio, shift)
        return audio.astype(np.float32, copy=False)

    def __call__(
        self,
        audio: np.ndarray,
        faces: np.ndarray,
        rng: np.random.Generator,
        epoch: int = 0,
        keep_timing: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Augment one window. `keep_timing` (a fake whose evidence is its audio-video
        timing) leaves out the skew and the freeze: moved by up to av_offset_max_s, a
        desync fake 0.25 s out of step would come as close to in step as a skewed real."""
        audio, faces, _ = self.window(audio, faces, rng, epoch, keep_timing)
        return audio, faces

    def window(
        self,
        audio: np.ndarray,
        faces: np.ndarray,
        rng: np.random.Generator,
        epoch: int = 0,
        keep_timing: bool = False,
        keep_detail: bool = False,
    ) -> tuple[np.ndarray, np.ndarray, bool]:
        """`__call__`, with `keep_detail` (see `faces_detail`) and whether the crops were
        degraded below the detail floor."""
        strength = self.degrade_strength(epoch)
        audio = self.audio(audio, rng, keep_timing)
        faces, below = self.faces_detail(faces, rng, strength, keep_timing, keep_detail)
        return audio, faces, below
