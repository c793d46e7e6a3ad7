from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from m3bert.training import schemas

schemas.register()  # the typed schemas and resolvers, as every entry point registers them

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
# Small enough to run in about a second on 2 CPU cores.
TINY = ["model=m3bert_tiny", "logger=none", "trainer.device=cpu", "trainer.num_workers=0", "trainer.progress=false"]


def measured(value) -> bool:
    """Whether ``value`` is what a benchmark reports for a time or a rate: a finite, non-negative number. Its size
    is the machine's business: a test never asserts how fast anything ran."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


def make_config(*overrides: str) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=list(overrides))


@pytest.fixture
def config():
    return make_config


def write_manifest(
    folder: Path, lengths: list[int], dim: int = 8, name: str = "train.csv", seed: int = 0, **labels
) -> Path:
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


def write_task_data(
    root: Path,
    kind: str,
    label,
    clips: int = 24,
    dim: int = 324,
    seed: int = 0,
    shuffle: bool = False,
    num_classes: int = 3,
) -> Path:
    """train/valid/test manifests of a task whose label is written into the features: class k (or a target value)
    raises channel band k, so mean-pooled features predict it.

    ``shuffle`` breaks the link in the training split: each class's clips get every label equally often (cycling
    through them), so the features carry no information about the training labels."""
    rng = np.random.default_rng(seed)
    classes = [chr(ord("a") + c) for c in range(num_classes)]
    (root / "features").mkdir(parents=True, exist_ok=True)
    for split, n in (("train", clips), ("valid", clips // 2), ("test", clips // 2)):
        rows, seen = [], [0] * num_classes
        for i in range(n):
            k = i % num_classes
            x = rng.standard_normal((int(rng.integers(40, 64)), dim)).astype(np.float32) * 0.5
            x[:, 20 * k : 20 * k + 20] += 2.0
            path = f"features/{split}_{i}.npy"
            np.save(root / path, x)
            row = {"file_path": path, "length": len(x)}
            shown = (k + seen[k]) % num_classes if shuffle and split == "train" else k
            seen[k] += 1
            if kind == "multiclass":
                row[label] = classes[shown]
            elif kind == "multilabel":
                row[label] = "/".join(sorted({classes[shown], "x"}))
            else:
                for j, column in enumerate(label):
                    row[column] = float(shown + j)
            rows.append(row)
        pd.DataFrame(rows).to_csv(root / f"{split}.csv", index=False)
    return root


def task_overrides(cfg: DictConfig, root: Path) -> list[str]:
    """Overrides pointing every task of ``cfg`` at generated data under ``root``."""
    out = []
    for name, spec in cfg.get("tasks", {}).items():
        write_task_data(root / name, spec.type, spec.label)
        out.append(f"tasks.{name}.root={root / name}")
    return out


@pytest.fixture(scope="session")
def pretrained(tmp_path_factory) -> Path:
    """A pre-training run folder of the tiny model on generated 324-dim features."""
    from m3bert.train import run

    folder = tmp_path_factory.mktemp("pretrained")
    run(
        make_config("+experiment=smoke", *TINY, "trainer.max_steps=2", "trainer.val_every=2", "trainer.image_every=0"),
        folder,
    )
    return folder


def crash_after_checkpoint(cfg: DictConfig, run_dir: Path, step: int, monkeypatch) -> None:
    """Run ``cfg`` in ``run_dir`` and crash it right after its step-``step`` checkpoint (as a kill would)."""
    from m3bert.train import run
    from m3bert.training.trainer import Trainer

    save = Trainer.save

    def save_then_crash(self, name=None):
        save(self, name)
        if self.step == step:
            raise KeyboardInterrupt(f"simulated crash after the step-{step} checkpoint")

    monkeypatch.setattr(Trainer, "save", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        run(cfg, run_dir)
    monkeypatch.setattr(Trainer, "save", save)
