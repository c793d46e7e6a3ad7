"""Audio file I/O: decode with libsndfile (soundfile), mix down, resample with soxr.

Formats are whatever the installed libsndfile reads: WAV/AIFF/FLAC/OGG-Vorbis always, Opus and MP3 with
libsndfile >= 1.0.29 / 1.1.0. Every failure is an ``AudioError`` that names the file and what went wrong.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import soundfile as sf
import soxr


class AudioError(RuntimeError):
    """A file could not be used as audio (missing, unreadable, corrupt or empty). ``path`` names the file."""

    def __init__(self, path: str | os.PathLike, problem: str) -> None:
        self.path = os.fspath(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


@dataclass(frozen=True)
class AudioInfo:
    """Header facts about an audio file (no decoding). duration_s = frames / sample_rate."""

    path: str
    sample_rate: int
    frames: int
    channels: int
    duration_s: float
    format: str
    subtype: str


def _check_exists(path: str | os.PathLike) -> None:
    if not os.path.exists(path):
        raise AudioError(path, "file not found")
    if os.path.isdir(path):
        raise AudioError(path, "is a directory, not an audio file")


def audio_info(path: str | os.PathLike) -> AudioInfo:
    """Sample rate, length and channels from the file header, without decoding the samples."""
    _check_exists(path)
    try:
        info = sf.info(os.fspath(path))
    except (sf.SoundFileError, RuntimeError) as err:
        raise AudioError(path, f"unreadable or corrupt audio ({err})") from err
    return AudioInfo(
        path=os.fspath(path),
        sample_rate=int(info.samplerate),
        frames=int(info.frames),
        channels=int(info.channels),
        duration_s=float(info.frames) / info.samplerate if info.samplerate else 0.0,
        format=info.format,
        subtype=info.subtype,
    )


def load_audio(
    path: str | os.PathLike,
    sample_rate: int,
    mono: bool = True,
    offset_s: float = 0.0,
    duration_s: float | None = None,
) -> np.ndarray:
    """Decode (part of) an audio file at ``sample_rate`` Hz.

    Args:
        path: audio file.
        sample_rate: target rate in Hz; the file is resampled with soxr (HQ) when it differs.
        mono: average the channels. offset_s / duration_s: the excerpt to read, in seconds of the file
            (``duration_s=None`` reads to the end); only that excerpt is decoded.
    Returns:
        float32 ``(samples,)`` if ``mono`` else ``(channels, samples)``, in [-1, 1] for integer formats.
    Raises:
        AudioError: missing, unreadable/corrupt, or empty (including an offset past the end).
    """
    if offset_s < 0 or (duration_s is not None and duration_s <= 0):
        raise ValueError(f"offset_s must be >= 0 and duration_s > 0, got offset_s={offset_s}, duration_s={duration_s}")
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    _check_exists(path)
    try:
        with sf.SoundFile(os.fspath(path)) as f:
            sr_in = f.samplerate
            start = int(round(offset_s * sr_in))
            n = -1 if duration_s is None else int(round(duration_s * sr_in))
            if start:
                if f.seekable():
                    f.seek(min(start, f.frames))
                else:  # a few codecs cannot seek: decode and drop the head
                    f.read(start, dtype="float32")
            x = f.read(frames=n, dtype="float32", always_2d=True)  # (frames, channels)
    except (sf.SoundFileError, RuntimeError) as err:
        raise AudioError(path, f"unreadable or corrupt audio ({err})") from err
    if x.shape[0] == 0:
        where = f" at offset {offset_s} s" if offset_s else ""
        raise AudioError(path, f"no audio samples{where}")
    if not np.isfinite(x).all():
        raise AudioError(path, "contains NaN or infinite samples (corrupt float data)")
    if mono:
        x = x.mean(axis=1, keepdims=True)
    if sr_in != sample_rate:
        x = soxr.resample(x, sr_in, sample_rate, quality="HQ")
    x = np.ascontiguousarray(x.T, dtype=np.float32)
    return x[0] if mono else x


def expected_length(frames: int, sr_in: int, sr_out: int) -> int:
    """Samples that ``load_audio`` returns for ``frames`` input samples resampled from ``sr_in`` to ``sr_out``."""
    # soxr rounds the output length to the nearest sample, dividing by the rate ratio in double precision.
    return frames if sr_in == sr_out else int(frames / (sr_in / sr_out) + 0.5)
