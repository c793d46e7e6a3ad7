"""Training objectives: the :class:`Objective` contract the trainer relies on, and its implementations."""

from m3bert.objectives.base import Objective, StepOutput
from m3bert.objectives.multitask import MultiTaskModel
from m3bert.objectives.reconstruction import MaskedReconstruction, ReconstructionHead

__all__ = ["MaskedReconstruction", "MultiTaskModel", "Objective", "ReconstructionHead", "StepOutput"]
