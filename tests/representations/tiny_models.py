"""Small models and generated audio shared by the representation tests (plain helpers, not fixtures: a second
conftest.py here would shadow the top-level one)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from benchmarks.synth import synthetic_music
from m3bert.inference.pretrained import save_pretrained
from m3bert.models import M3BERT, M3BERTConfig


def tiny_encoder(input_dim: int = 324, downsample: int = 1, seed: int = 0, **overrides) -> M3BERT:
    """A 2-layer, 32-wide encoder in eval mode (dropout is configured, as in training, but inactive)."""
    torch.manual_seed(seed)
    cfg = dict(input_dim=input_dim, hidden_size=32, num_layers=2, num_heads=4, ffn_size=64, downsample=downsample)
    return M3BERT(M3BERTConfig(**{**cfg, **overrides})).eval()


def export_tiny(
    folder: Path, feature_set: str = "m3bert324", downsample: int = 1, training_frames: int = 64, seed: int = 0
) -> Path:
    dims = {"m3bert324": 324, "logmel128": 128}
    return save_pretrained(
        tiny_encoder(dims[feature_set], downsample, seed), folder, feature_set, training_frames=training_frames
    )


def write_audio(
    path: Path, seconds: float, sample_rate: int = 44100, channels: int = 1, seed: int = 0, subtype: str | None = None
) -> Path:
    """Synthetic music (each channel its own seed) written with soundfile; returns the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    clips = [synthetic_music(seconds, sample_rate, seed=seed + c) for c in range(channels)]
    sf.write(path, np.stack(clips, axis=1) if channels > 1 else clips[0], sample_rate, subtype=subtype)
    return path
