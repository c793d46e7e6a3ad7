"""Downstream tasks: what a task is, its labelled datasets, the heads that sit on an encoder for it, and metrics.
The objective that trains them is :class:`m3bert.objectives.MultiTaskModel`."""

from m3bert.tasks.task import MultiTaskDataset, Task, TaskDataset, resolve_task

__all__ = ["MultiTaskDataset", "Task", "TaskDataset", "resolve_task"]
