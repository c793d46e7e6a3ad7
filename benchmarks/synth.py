"""Deterministic music-like test audio for the feature tests and the benchmark.

Pure tones make a poor test of a chroma/CQT front end (almost every bin sits at the numerical floor), so the
clips mix what the features meet in real recordings: harmonic notes with decaying partials, chords, a
log-frequency sweep, percussive noise bursts, and a quiet noise floor under everything.
"""

from __future__ import annotations

import numpy as np


def _note(f0: float, n: int, sr: int, rng: np.random.Generator, n_partials: int = 8) -> np.ndarray:
    """One harmonic note of ``n`` samples with an attack/decay envelope; peak amplitude ~1."""
    t = np.arange(n) / sr
    out = np.zeros(n)
    for h in range(1, n_partials + 1):
        f = f0 * h * (1 + 2e-4 * rng.standard_normal())  # slight inharmonicity, like real strings
        if f >= 0.45 * sr:
            break
        out += np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi)) / h**1.2 * np.exp(-t * (1.0 + 0.6 * h))
    attack = np.minimum(1.0, t / 0.01)
    return out * attack


def synthetic_music(seconds: float = 4.0, sample_rate: int = 44100, seed: int = 0) -> np.ndarray:
    """A mono clip ``(round(seconds * sample_rate),)`` float32 in [-1, 1].

    The layout cycles through: melody notes, a chord, a sweep, a noise burst; tuned ~+18 cents off A440 so the
    tuning estimators have something to find.
    """
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sample_rate))
    y = np.zeros(n)
    tune = 2 ** (18 / 1200)
    seg = int(0.5 * sample_rate)
    pos, k = 0, 0
    while pos < n:
        m = min(seg, n - pos)
        kind = k % 4
        if kind == 0:  # two melody notes
            for j in range(2):
                start, length = pos + j * m // 2, m - j * m // 2
                midi = rng.integers(45, 80)
                y[start : start + length] += 0.5 * _note(440 * tune * 2 ** ((midi - 69) / 12), length, sample_rate, rng)
        elif kind == 1:  # a triad with the bass an octave down
            root = rng.integers(40, 60)
            for iv in (0, 4, 7, -12):
                y[pos : pos + m] += 0.25 * _note(440 * tune * 2 ** ((root + iv - 69) / 12), m, sample_rate, rng)
        elif kind == 2:  # log sweep 60 Hz -> 6 kHz
            t = np.arange(m) / sample_rate
            dur = m / sample_rate
            f0, f1 = 60.0, 6000.0
            phase = 2 * np.pi * f0 * dur / np.log(f1 / f0) * (np.exp(t / dur * np.log(f1 / f0)) - 1)
            y[pos : pos + m] += 0.3 * np.sin(phase)
        else:  # decaying noise burst (a drum-like hit) over a low note
            t = np.arange(m) / sample_rate
            y[pos : pos + m] += 0.4 * rng.standard_normal(m) * np.exp(-t * 12)
            y[pos : pos + m] += 0.3 * _note(440 * tune * 2 ** ((rng.integers(36, 48) - 69) / 12), m, sample_rate, rng)
        pos += m
        k += 1
    # Low-passed noise floor (~ -45 dB) so no bin sits at exact silence.
    floor = rng.standard_normal(n)
    floor = np.convolve(floor, np.ones(4) / 4, mode="same") * 10 ** (-45 / 20)
    y = y + floor
    y = y / max(1e-9, np.max(np.abs(y))) * 0.9
    return y.astype(np.float32)
