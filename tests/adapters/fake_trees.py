"""Helpers for the adapter tests: fake dataset trees in tmp_path. Adapters never decode audio, so most audio files
are empty files with the right names; a few tests write real (tiny) wav files to show nothing depends on that.

A plain module rather than a conftest.py: the suite's tests import ``conftest`` by name, and a second conftest.py
here would shadow tests/conftest.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf


def touch(path: Path, text: str = "") -> Path:
    """A file (and its folders) holding ``text``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def write_wav(path: Path, seconds: float = 0.05, sample_rate: int = 8000) -> Path:
    """A real, silent wav file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.zeros(int(seconds * sample_rate), dtype=np.float32), sample_rate)
    return path


def capture_warnings(caplog: pytest.LogCaptureFixture):
    """Start capturing the adapters' warnings; returns a function giving the messages so far."""
    caplog.set_level("WARNING", logger="m3bert.adapters")
    return lambda: [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
