"""The M3BERT encoder. Models take tensors and import nothing else of m3bert."""

from m3bert.models.encoder import M3BERT, EncoderOutput, M3BERTConfig
from m3bert.models.pooling import POOLINGS, masked_pool, pooled_dim

__all__ = ["EncoderOutput", "M3BERT", "M3BERTConfig", "POOLINGS", "masked_pool", "pooled_dim"]
