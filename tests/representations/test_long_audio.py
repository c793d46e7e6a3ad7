"""Hour-long files must not need hour-sized memory: a 10-minute file goes through in bounded pieces."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from conftest import CONF
from hydra import compose, initialize_config_dir
from tiny_models import export_tiny

from m3bert.extract import extract
from m3bert.features.extractor import FeatureExtractor
from m3bert.models import M3BERT

SR = 44100
MINUTES = 10


def write_tone(path, seconds: int, sample_rate: int = SR) -> None:
    """A 440 Hz tone with a slow tremolo, written a second at a time (the test must not hold it in memory either)."""
    with sf.SoundFile(path, "w", samplerate=sample_rate, channels=1, subtype="PCM_16") as f:
        for second in range(seconds):
            t = second + np.arange(sample_rate) / sample_rate
            f.write(0.3 * np.sin(2 * np.pi * 440 * t) * (1 + 0.5 * np.sin(2 * np.pi * 0.1 * t)))


@pytest.fixture
def one_thread():
    """Hundreds of tiny encoder passes: on a busy shared CPU a second intra-op thread only adds waiting (30x)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_a_ten_minute_file_is_extracted_in_bounded_pieces(tmp_path, monkeypatch, one_thread):
    write_tone(tmp_path / "long.wav", 60 * MINUTES)
    model = export_tiny(tmp_path / "model", "logmel128", training_frames=128)
    samples = 60 * MINUTES * SR

    # Record the largest piece the front end and the encoder are ever given.
    largest = {"front_end_samples": 0, "encoder_batch_frames": 0}
    front_end, encoder = FeatureExtractor.forward, M3BERT.forward

    def spy_front_end(self, waveform, *args, **kwargs):
        largest["front_end_samples"] = max(largest["front_end_samples"], waveform.numel())
        return front_end(self, waveform, *args, **kwargs)

    def spy_encoder(self, features, *args, **kwargs):
        largest["encoder_batch_frames"] = max(largest["encoder_batch_frames"], features.shape[0] * features.shape[1])
        return encoder(self, features, *args, **kwargs)

    monkeypatch.setattr(FeatureExtractor, "forward", spy_front_end)
    monkeypatch.setattr(M3BERT, "forward", spy_encoder)
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            "extract",
            overrides=[
                f"model_path={model}",
                f"input={tmp_path / 'long.wav'}",
                f"output={tmp_path / 'emb'}",
                "progress=false",
                "segment.seconds=60",
                "segment.context_seconds=0.5",
                "batch_size=4",
            ],
        )
    tracemalloc.start()  # numpy's buffers are traced; torch's aren't, hence the spies
    try:
        summary = extract(cfg)
        _, numpy_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert summary["done"] == 1 and summary["failures"] == 0
    frames = np.load(tmp_path / "emb" / "frames" / "long.npy", mmap_mode="r")
    assert frames.shape == (3, 1 + samples // 1024, 32)
    assert np.isfinite(np.load(tmp_path / "emb" / "mean" / "long.npy")).all()
    assert pd.read_csv(tmp_path / "emb" / "index.csv")["duration_s"][0] == 60 * MINUTES
    # Bounded by the settings, not the file: a segment plus its context, and batch_size windows.
    assert largest["front_end_samples"] <= (60 + 2 * 0.5) * SR + 1024
    assert largest["encoder_batch_frames"] <= 4 * 128
    # The decoded file alone is 106 MB of float32 (and its features 13 MB); the run's arrays stay far below.
    assert numpy_peak < 0.5 * samples * 4, f"numpy peak {numpy_peak / 2**20:.0f} MiB"
