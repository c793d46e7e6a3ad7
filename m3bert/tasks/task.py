"""Downstream tasks: what a task is, how its labels become tensors, and the datasets that serve them.

A task reads a prepared dataset folder (``train.csv`` / ``valid.csv`` / ``test.csv`` manifests, see
:mod:`m3bert.prepare`) and one or more label columns in the suite's label convention.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from m3bert.adapters.base import TAG_SEPARATOR
from m3bert.common.prepared import split_manifest
from m3bert.data import Clip, ClipDataset, ConcatClipDataset, ManifestDataset, read_manifest
from m3bert.features import Normalization

TASK_TYPES = ("multiclass", "multilabel", "regression")
#: The metric each task type is judged by (its ``<task>/test/<metric>`` heads result tables).
PRIMARY_METRICS = {"multiclass": "accuracy", "multilabel": "roc_auc", "regression": "r2"}


@dataclass(frozen=True)
class Task:
    """A resolved task: its vocabulary (classification) or target statistics (regression) come from the training
    split, so every split encodes labels the same way."""

    name: str
    type: str
    root: str
    label: tuple[str, ...]  # label column(s): one for classification, one or more for regression
    classes: tuple[str, ...] = ()  # classification vocabulary, in output order
    mean: tuple[float, ...] = ()  # regression targets are standardised with the training split's statistics
    std: tuple[float, ...] = ()
    weight: float = 1.0  # fixed loss weight (loss_weighting=fixed)

    @property
    def outputs(self) -> int:
        return len(self.label) if self.type == "regression" else len(self.classes)

    @property
    def primary_metric(self) -> str:
        return PRIMARY_METRICS[self.type]

    def manifest(self, split: str) -> Path:
        return split_manifest(self.root, split)

    def encode(self, row: pd.Series) -> torch.Tensor | None:
        """The row's target, or None where the row carries no label for this task."""
        values = [row.get(column) for column in self.label]
        if any(v is None or (isinstance(v, float) and np.isnan(v)) for v in values):
            return None
        if self.type == "multiclass":
            value = str(values[0])
            return torch.tensor(self.classes.index(value)) if value in self.classes else None
        if self.type == "multilabel":
            tags = set(str(values[0]).split(TAG_SEPARATOR))
            return torch.tensor([float(c in tags) for c in self.classes])
        return (torch.tensor([float(v) for v in values]) - torch.tensor(self.mean)) / torch.tensor(self.std)


def resolve_task(name: str, spec: Mapping) -> Task:
    """A task from its config (``type``, ``root``, ``label``, optional ``classes``, ``top_k``, ``weight``)."""
    spec = dict(spec)
    kind = spec.get("type")
    if kind not in TASK_TYPES:
        raise ValueError(f"tasks.{name}.type must be one of {TASK_TYPES}, got {kind!r}")
    label = spec["label"]
    label = (label,) if isinstance(label, str) else tuple(label)
    return _resolve(
        name,
        kind,
        str(spec["root"]),
        label,
        tuple(spec.get("classes") or ()),
        spec.get("top_k"),
        float(spec.get("weight", 1.0)),
        _version(split_manifest(spec["root"], "train")),
    )


def _version(path: Path) -> tuple[int, int] | None:
    """What tells a rewritten manifest from the one read before: (modification time in ns, size); None for a
    missing file (reading it names the problem)."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_mtime_ns, stat.st_size


@cache
def _resolve(name, kind, root, label, classes, top_k, weight, version) -> Task:
    # Cached per manifest version: the objective and every split of a run resolve the same tasks from one read,
    # and a manifest rewritten since (prepare rerun) is read afresh.
    task = Task(name, kind, root, label, classes, weight=weight)
    table = read_manifest(task.manifest("train"))
    missing = [c for c in label if c not in table.columns]
    if missing:
        raise ValueError(
            f"{task.manifest('train')}: task {name} needs label column(s) {missing}; "
            f"the manifest has {list(table.columns)}"
        )
    if kind == "regression":
        values = table[list(label)].astype(float)
        std = values.std().fillna(1.0).replace(0.0, 1.0)
        return Task(name, kind, root, label, mean=tuple(values.mean()), std=tuple(std), weight=weight)
    if classes:
        return task
    column = table[label[0]].dropna().astype(str)
    if kind == "multiclass":
        return Task(name, kind, root, label, tuple(sorted(column.unique())), weight=weight)
    counts = column.str.split(TAG_SEPARATOR).explode().value_counts()
    counts = counts.sort_index(kind="stable").sort_values(ascending=False, kind="stable")  # ties: alphabetical
    vocabulary = counts.index[:top_k] if top_k else counts.index
    return Task(name, kind, root, label, tuple(sorted(vocabulary)), weight=weight)


class TaskDataset(ClipDataset):
    """A split of one prepared folder, served to the tasks that read it: the manifest's clips that carry a label of
    at least one of them, each labelled (under the task's name) for every one of those tasks whose label it carries.

    Tasks that share a folder share its clips, so one forward pass of a clip trains every head it has a label for
    (the demo's five tasks all read one folder).
    """

    def __init__(
        self,
        tasks: Task | Sequence[Task],
        split: str,
        feature_dim: int,
        max_frames: int | None,
        crop: str,
        normalization: str | Mapping | Normalization = "per_file",
    ):
        self.tasks = [tasks] if isinstance(tasks, Task) else list(tasks)
        if len({t.root for t in self.tasks}) != 1:
            raise ValueError(f"TaskDataset serves tasks of one prepared folder, got {[t.root for t in self.tasks]}")
        manifest = self.tasks[0].manifest(split)
        self.features = ManifestDataset(str(manifest), feature_dim, max_frames, crop, normalization=normalization)
        self.normalization = self.features.normalization
        labels = [
            {t.name: y for t in self.tasks if (y := t.encode(row)) is not None}
            for _, row in self.features.table.iterrows()
        ]
        self.rows = [row for row, carried in enumerate(labels) if carried]
        self.labels = [labels[row] for row in self.rows]
        if not self.rows:
            columns = [c for t in self.tasks for c in t.label]
            raise ValueError(
                f"{manifest}: no clip carries a label for task(s) {[t.name for t in self.tasks]} (column(s) {columns})"
            )

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key) -> Clip:
        index, *seed = key if isinstance(key, tuple) else (key,)
        row = self.rows[index]
        clip = self.features[(row, *seed) if seed else row]
        return clip._replace(index=index, labels=self.labels[index])

    def use_crop(self, mode: str) -> None:
        self.features.use_crop(mode)


class MultiTaskDataset(ConcatClipDataset):
    """The clips of several tasks' prepared folders, one folder after the other; each clip is labelled for the
    tasks that read its folder and whose label it carries.

    ``sampling_weights`` draws folders with probability proportional to ``size ** (1 / temperature)``:
    temperature 1 samples clips uniformly (folders in proportion to their size), larger temperatures even them out.

    ``normalization``: ``per_file``, ``dataset`` with each folder's own ``normalization.npz``, or a recorded one
    (``Normalization.to_dict``): the trainer passes a pre-trained encoder's own here (the objective's
    ``input_normalization``), for every split.
    """

    def __init__(
        self,
        tasks: Mapping[str, Mapping],
        split: str,
        feature_dim: int,
        max_frames: int | None = None,
        crop: str = "random",
        temperature: float = 1.0,
        normalization: str | Mapping = "per_file",
    ):
        if not tasks:
            raise ValueError("no tasks selected: choose some, e.g. tasks=[gtzan,deam]")
        self.tasks = [resolve_task(name, spec) for name, spec in tasks.items()]
        folders: dict[str, list[Task]] = {}
        for task in self.tasks:
            folders.setdefault(task.root, []).append(task)
        parts = [TaskDataset(group, split, feature_dim, max_frames, crop, normalization) for group in folders.values()]
        self.temperature = temperature
        shares = None if temperature == 1.0 else [len(p) ** (1.0 / temperature) for p in parts]
        super().__init__(parts, shares)
        # One record for the checkpoint: the first folder's (with dataset statistics per folder, they differ).
        self.normalization = parts[0].normalization
