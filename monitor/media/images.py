"""Still images (the challenge's image track, FFDI): safe decoding and one model window.

`load_image(path)` returns RGB uint8 [H, W, 3] or raises a MediaError whose class names
the reason for the errors report (`media_error_reason`):

1. the path is a regular file (`check_regular_file`: missing -> `medianotfound`; a
   directory, FIFO or symlink loop -> `notafile`), not empty (`notimage`) and at most
   MAX_IMAGE_BYTES long (`imagefiletoolarge`); at most that many bytes are ever read;
2. the bytes are a JPEG or a PNG by their leading magic bytes, whatever the suffix says
   (a PNG named `.jpg` is decoded as a PNG; a video, a text or anything else with an
   image suffix is `notimage`), so OpenCV's other decoders never see the bytes;
3. width and height are read from the header by hand (PNG `IHDR`, JPEG `SOFn`) and
   checked against MIN_DIMENSION..MAX_DIMENSION px per side (the video path's limits)
   *before* any pixel is decoded: a header declaring 100000 x 100000 px is refused
   (`badimagedimensions`) without allocating anything; a header that cannot be parsed is
   `corruptimage`;
4. a JPEG must end its scan with the end-of-image marker: a truncated JPEG is
   `corruptimage` whatever the OpenCV version would make of it (some fill the missing
   part with grey and only warn);
5. `cv2.imdecode(IMREAD_COLOR)` decodes: greyscale becomes RGB, an alpha channel is
   dropped (as `as_rgb_frame` drops it for video frames), 16-bit samples are scaled to
   8 bits, and a JPEG's EXIF orientation is applied (the photo as a viewer shows it).
   Decoding that fails is `corruptimage`.

`image_window` turns a photograph into the model's input for one window, the way the
detector's face path sees a frame: the shared `FaceCropper` (built from the model's
contract) crops the face once, the window's K crops are that crop repeated, and the
audio input is silence. Offline scoring reports the model's visual head (`p_visual`) on
it: the fused head mixes in the audio head, which here would only score the silence.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from monitor.contract import InputContract
from monitor.errors import BadDimensionsError, CorruptMediaError, MediaError, NotMediaError
from monitor.media.decode import MAX_DIMENSION, MIN_DIMENSION, check_regular_file
from monitor.media.faces import CropResult, FaceCropper

logger = logging.getLogger(__name__)

MAX_IMAGE_BYTES = 128 << 20  # a larger "photo" is refused unread (an 8192 px PNG fits)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
JPEG_EOI = b"\xff\xd9"
_JPEG_SOS = 0xDA
_JPEG_EOI_MARKER = 0xD9
# Frame headers (SOF0..SOF15) carry the picture size; C4 (DHT), C8 (JPG), CC (DAC) do not.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers without a length field: TEM, RST0..RST7, SOI.
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8), 0xD8})


class NotImageError(NotMediaError):
    reason = "not a JPEG or PNG image"


class CorruptImageError(CorruptMediaError):
    reason = "truncated or corrupt image (decoding failed)"


class BadImageDimensionsError(BadDimensionsError):
    reason = "absurd image dimensions"


class ImageFileTooLargeError(MediaError):
    reason = "image file too large"


def _png_size(src: str, data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk, the first chunk of every PNG."""
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise CorruptImageError(src, "PNG without its IHDR header")
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def _jpeg_size(src: str, data: bytes) -> tuple[int, int, int]:
    """(width, height, offset of the first scan) from a JPEG's marker segments."""
    n, i = len(data), 2
    size: tuple[int, int] | None = None
    while True:
        if i < n and data[i] != 0xFF:  # stray bytes before a marker: skipped, as libjpeg does
            i = data.find(b"\xff", i)
        if i < 0 or i >= n:
            raise CorruptImageError(src, "JPEG header ends before its first scan")
        while i < n and data[i] == 0xFF:  # fill bytes before a marker
            i += 1
        if i >= n:
            raise CorruptImageError(src, "JPEG header ends before its first scan")
        marker = data[i]
        i += 1
        if marker in _JPEG_STANDALONE:
            continue
        if marker == _JPEG_EOI_MARKER:
            raise CorruptImageError(src, "JPEG ends before its first scan")
        if marker == _JPEG_SOS:
            if size is None:
                raise CorruptImageError(src, "JPEG scan before any frame header")
            return size[0], size[1], i - 2
        if i + 2 > n:
            raise CorruptImageError(src, "JPEG header ends inside a segment")
        length = int.from_bytes(data[i : i + 2], "big")
        if length < 2 or i + length > n:
            raise CorruptImageError(src, f"JPEG segment of {length} bytes at byte {i} overruns")
        if marker in _JPEG_SOF and size is None:
            if length < 8:
                raise CorruptImageError(src, "JPEG frame header too short")
            height = int.from_bytes(data[i + 3 : i + 5], "big")
            width = int.from_bytes(data[i + 5 : i + 7], "big")
            size = (width, height)
        i += length


def _check_size(src: str, width: int, height: int, what: str) -> None:
    ok = MIN_DIMENSION <= width <= MAX_DIMENSION and MIN_DIMENSION <= height <= MAX_DIMENSION
    if not ok:
        raise BadImageDimensionsError(
            src, f"{what} {width}x{height}, allowed {MIN_DIMENSION}..{MAX_DIMENSION} px per side"
        )


def read_image_bytes(path: str | Path) -> bytes:
    """The bytes of a regular, non-empty image file of at most MAX_IMAGE_BYTES."""
    src = str(path)
    size = check_regular_file(src)
    if size == 0:
        raise NotImageError(src, "empty file")
    if size > MAX_IMAGE_BYTES:
        raise ImageFileTooLargeError(src, f"{size} bytes, at most {MAX_IMAGE_BYTES}")
    try:
        with open(src, "rb") as fh:
            data = fh.read(MAX_IMAGE_BYTES + 1)
    except OSError as exc:
        raise CorruptImageError(src, f"cannot read: {exc.strerror or exc}") from exc
    if len(data) > MAX_IMAGE_BYTES:  # grew since the stat
        raise ImageFileTooLargeError(src, f"more than {MAX_IMAGE_BYTES} bytes")
    if not data:
        raise NotImageError(src, "empty file")
    return data


def image_format(src: str, data: bytes) -> str:
    """The format by the leading bytes, "png" or "jpeg"; NotImageError for anything else."""
    if data.startswith(PNG_MAGIC):
        return "png"
    if data.startswith(JPEG_MAGIC):
        return "jpeg"
    raise NotImageError(src, f"starts with {data[:8]!r}")


def decode_image(data: bytes, src: str = "<bytes>") -> np.ndarray:
    """JPEG or PNG bytes -> RGB uint8 [H, W, 3], checked as the module doc says."""
    fmt = image_format(src, data)
    if fmt == "png":
        width, height = _png_size(src, data)
    else:
        width, height, scan = _jpeg_size(src, data)
    _check_size(src, width, height, "header declares")
    if fmt == "jpeg" and data.rfind(JPEG_EOI) < scan:  # scan data never holds FF D9
        raise CorruptImageError(src, "JPEG truncated: no end-of-image marker after its scan")
    try:
        bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    except cv2.error as exc:
        raise CorruptImageError(src, f"{fmt} decoder: {exc}") from exc
    if bgr is None:
        raise CorruptImageError(src, f"the {fmt} decoder could not read it")
    if bgr.ndim != 3 or bgr.shape[2] != 3 or bgr.dtype != np.uint8:
        raise CorruptImageError(src, f"decoded to {bgr.dtype} {bgr.shape}, not 8-bit colour")
    _check_size(src, int(bgr.shape[1]), int(bgr.shape[0]), "decoded to")
    return np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


def load_image(path: str | Path) -> np.ndarray:
    """A JPEG or PNG file as RGB uint8 [H, W, 3]; a MediaError saying why not otherwise."""
    src = str(path)
    return decode_image(read_image_bytes(src), src)


@dataclass(frozen=True)
class ImageWindow:
    """One photograph as one model window."""

    audio: np.ndarray  # float32 [1, window_samples]: silence
    faces: np.ndarray  # uint8 [1, K, S, S, 3]: the photograph's face crop, K times
    found: np.ndarray  # bool [1, K]: the cropper found a face (False: the centre crop)
    crop: CropResult  # the one crop, with its box


def image_window(
    image: np.ndarray, contract: InputContract, cropper: FaceCropper | None = None
) -> ImageWindow:
    """The model input for a photograph (RGB uint8): see the module doc."""
    cropper = cropper or FaceCropper.from_contract(contract, name="image")
    crop = cropper.crop(image)
    k = contract.k_crops
    faces = np.ascontiguousarray(np.broadcast_to(crop.image, (1, k, *crop.image.shape)))
    return ImageWindow(
        audio=np.zeros((1, contract.window_samples), dtype=np.float32),
        faces=faces,
        found=np.full((1, k), crop.found, dtype=bool),
        crop=crop,
    )
