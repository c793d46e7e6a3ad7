from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

import m3bert.config  # noqa: F401  (registers the typed schemas)

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
# Small enough to run in about a second on 2 CPU cores.
TINY = ["model=m3bert_tiny", "logger=none", "trainer.device=cpu", "trainer.num_workers=0", "trainer.progress=false"]


def make_config(*overrides: str) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=list(overrides))


@pytest.fixture
def config():
    return make_config


def write_manifest(folder: Path, lengths: list[int], dim: int = 8, name: str = "train.csv", seed: int = 0,
                   **labels) -> Path:
    """A manifest of random .npy feature files in ``folder``; returns the csv's path."""
    rng = np.random.default_rng(seed)
    (folder / "features").mkdir(parents=True, exist_ok=True)
    paths = []
    for i, length in enumerate(lengths):
        rel = f"features/{Path(name).stem}_{i}.npy"
        np.save(folder / rel, rng.standard_normal((length, dim)).astype(np.float32))
        paths.append(rel)
    path = folder / name
    pd.DataFrame({"file_path": paths, "length": lengths, **labels}).to_csv(path, index=False)
    return path
