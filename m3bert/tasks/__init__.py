"""Downstream tasks: labelled datasets, the multi-task model with its heads, and metrics."""

from m3bert.tasks.model import MultiTaskModel, load_encoder
from m3bert.tasks.task import MultiTaskDataset, Task, TaskDataset, resolve_task

__all__ = ["MultiTaskDataset", "MultiTaskModel", "Task", "TaskDataset", "load_encoder", "resolve_task"]
