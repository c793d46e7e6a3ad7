"""Masking strategies for masked-reconstruction pre-training (CFM, CCM, patches)."""

from m3bert.masking.masker import ChannelMasking, FrameMasking, MaskedInput, Masker, PatchMasking

__all__ = ["ChannelMasking", "FrameMasking", "MaskedInput", "Masker", "PatchMasking"]
