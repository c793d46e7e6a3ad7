"""The M3BERT encoder and its pre-training head."""

from m3bert.models.encoder import M3BERT, EncoderOutput, M3BERTConfig
from m3bert.models.pretraining import MaskedReconstruction, ReconstructionHead, StepOutput

__all__ = ["EncoderOutput", "M3BERT", "M3BERTConfig", "MaskedReconstruction", "ReconstructionHead", "StepOutput"]
