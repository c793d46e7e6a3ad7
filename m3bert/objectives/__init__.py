"""Training objectives: the :class:`Objective` contract the trainer relies on, and its implementations."""

from m3bert.objectives.base import Objective, StepOutput
from m3bert.objectives.bestrq import BestRQ
from m3bert.objectives.contrastive import ClipContrastive
from m3bert.objectives.multi_target import MultiTarget
from m3bert.objectives.multitask import MultiTaskModel
from m3bert.objectives.reconstruction import MaskedReconstruction, ReconstructionHead

__all__ = [
    "BestRQ",
    "ClipContrastive",
    "MaskedReconstruction",
    "MultiTarget",
    "MultiTaskModel",
    "Objective",
    "ReconstructionHead",
    "StepOutput",
]
