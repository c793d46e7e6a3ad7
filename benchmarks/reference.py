"""librosa reference for the frame features, used by the tests and the benchmark only.

This is the definition the torch extractors in :mod:`m3bert.features` are checked against. librosa is a
dev/test dependency, so it is imported inside the functions: importing this module costs nothing.

All functions take one mono clip ``y`` of shape ``(samples,)`` and return arrays of shape
``(frames, dims)`` with ``frames = 1 + samples // hop_length``.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from m3bert.features.config import M3BERT_BLOCKS, SpectralConfig

DEFAULT = SpectralConfig()


def _librosa():
    try:
        import librosa
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the librosa reference needs librosa; install the dev extra: pip install -e '.[dev]'"
        ) from err
    return librosa


def reference_blocks(y: np.ndarray, cfg: SpectralConfig = DEFAULT) -> OrderedDict[str, np.ndarray]:
    """The five M3BERT blocks before normalisation, computed with librosa.

    Args:
        y: mono waveform ``(samples,)`` at ``cfg.sample_rate``.
    Returns:
        block name -> array ``(frames, dims)``, in column order (see ``M3BERT_BLOCKS``).
    """
    librosa = _librosa()
    y = np.asarray(y, dtype=np.float32)
    sr, n_fft, hop, win = cfg.sample_rate, cfg.n_fft, cfg.hop_length, cfg.window
    n_frames = 1 + len(y) // hop

    # One power spectrogram feeds chroma, mel and MFCC, as in the original feature script.
    power = np.abs(librosa.stft(y, n_fft=n_fft, hop_length=hop, window=win, center=True, pad_mode="constant")) ** 2
    chroma = librosa.feature.chroma_stft(S=power, sr=sr, n_chroma=12)
    mel = librosa.feature.melspectrogram(S=power, sr=sr, n_mels=cfg.n_mels)
    mfcc = librosa.feature.mfcc(S=librosa.power_to_db(mel), n_mfcc=cfg.n_mfcc)
    delta = librosa.feature.delta(mfcc)
    log_mel = np.log(10.0 * mel + 1e-6)
    cqt_chroma = librosa.feature.chroma_cqt(
        y=y,
        sr=sr,
        hop_length=hop,
        n_chroma=cfg.cqt_bins_per_octave,
        bins_per_octave=cfg.cqt_bins_per_octave,
        n_octaves=cfg.cqt_octaves,
    )
    log_cqt = np.log(10.0 * cqt_chroma + 1e-6)

    blocks = OrderedDict(chroma=chroma, mfcc=mfcc, delta_mfcc=delta, log_mel=log_mel, log_cqt_chroma=log_cqt)
    # chroma_cqt can return one frame more than the STFT when the clip length is odd near a hop boundary
    # (each octave rounds its resampled length up); the STFT frame count is the contract.
    out = OrderedDict((name, b[:, :n_frames].T.astype(np.float32)) for name, b in blocks.items())
    assert list(out) == list(M3BERT_BLOCKS)
    return out


def reference_tuning(y: np.ndarray, cfg: SpectralConfig = DEFAULT) -> tuple[float, float]:
    """librosa's tuning estimates for the two chroma blocks: ``(stft_chroma, cqt_chroma)``, in fractions of a bin."""
    librosa = _librosa()
    y = np.asarray(y, dtype=np.float32)
    power = (
        np.abs(
            librosa.stft(
                y, n_fft=cfg.n_fft, hop_length=cfg.hop_length, window=cfg.window, center=True, pad_mode="constant"
            )
        )
        ** 2
    )
    t_stft = librosa.estimate_tuning(S=power, sr=cfg.sample_rate, bins_per_octave=12)
    t_cqt = librosa.estimate_tuning(y=y, sr=cfg.sample_rate, bins_per_octave=cfg.cqt_bins_per_octave)
    return float(t_stft), float(t_cqt)


def reference_cmvn(x: np.ndarray, eps: float = 1e-8) -> np.ndarray:
    """Per-dimension mean/variance normalisation of one clip ``(frames, dims)``, same formula as ``cmvn``."""
    x = x.astype(np.float64)
    mean = x.mean(axis=0, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=0, keepdims=True)
    return ((x - mean) / np.sqrt(var + eps)).astype(np.float32)


def reference_features(y: np.ndarray, name: str = "m3bert324", cfg: SpectralConfig = DEFAULT) -> np.ndarray:
    """Normalised features of one clip, ``(frames, feature_dim)``, for the feature set ``name``."""
    if name == "m3bert324":
        blocks = reference_blocks(y, cfg)
        return reference_cmvn(np.concatenate(list(blocks.values()), axis=1))
    if name == "logmel128":
        librosa = _librosa()
        y = np.asarray(y, dtype=np.float32)
        mel = librosa.feature.melspectrogram(
            y=y,
            sr=cfg.sample_rate,
            n_fft=cfg.n_fft,
            hop_length=cfg.hop_length,
            window=cfg.window,
            center=True,
            pad_mode="constant",
            n_mels=cfg.n_mels,
        )
        return reference_cmvn(np.log(10.0 * mel + 1e-6).T)
    raise KeyError(f"unknown feature set {name!r}; known: 'm3bert324', 'logmel128'")
