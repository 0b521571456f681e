"""Every exception deepfake-monitor raises on purpose, each saying what to do next."""

from __future__ import annotations

from pathlib import Path


class DeepfakeMonitorError(Exception):
    """Base class: catch this at a per-stream or per-file boundary."""


class ContractError(DeepfakeMonitorError):
    """A model and a runtime disagree on the input contract."""


class ConfigError(DeepfakeMonitorError):
    """User configuration is invalid; the message names the bad key."""


class BackendUnavailableError(DeepfakeMonitorError):
    """An inference backend cannot be used here (library missing, no GPU, no engine)."""


class ModelFormatError(DeepfakeMonitorError):
    """A checkpoint, ONNX file or engine is unreadable or of the wrong kind."""


class DatasetError(DeepfakeMonitorError):
    """A dataset folder or label file does not follow the competition format."""


class MediaError(DeepfakeMonitorError):
    """A media file or stream cannot be used. `path` and `reason` are kept for reports."""

    reason = "unreadable media"

    def __init__(self, path: str | Path, detail: str = "") -> None:
        self.path = str(path)
        self.detail = detail
        msg = f"{self.path}: {self.reason}"
        if detail:
            msg += f" ({detail})"
        super().__init__(msg)


class MediaNotFoundError(MediaError):
    reason = "file not found"


class NotAFileError(MediaNotFoundError):
    """A directory, FIFO, device or symlink loop where a media file was expected."""

    reason = "not a regular file"


class NotMediaError(MediaError):
    reason = "not a media file (no audio or video stream could be read)"


class CorruptMediaError(MediaError):
    reason = "truncated or corrupt media (decoding failed)"


class NoAudioStreamError(MediaError):
    reason = "no audio stream"


class NoVideoStreamError(MediaError):
    reason = "no video stream"


class ZeroDurationError(MediaError):
    reason = "zero duration (no decodable samples or frames)"


class BadDimensionsError(MediaError):
    reason = "absurd video dimensions"


class StreamError(MediaError):
    """A live source failed (connect, read, stall); the supervisor will retry."""

    reason = "stream failed"


class OutputError(DeepfakeMonitorError):
    """An output file or folder cannot be written (read-only, full disk, a directory in the
    way); the message names the file and what to do."""


class ExportError(DeepfakeMonitorError):
    """Exporting a model failed a check (exporter, onnx.checker, numeric parity); no file kept."""
