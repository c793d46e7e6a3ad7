"""Audio front end: loading, and batched torch feature extraction that matches the librosa reference.

>>> fx = build_feature_extractor("m3bert324")          # nn.Module; .to("cuda") to run on the GPU
>>> feats, frame_lengths = fx(waveforms, lengths)      # (batch, frames, 324), (batch,)
>>> fx.blocks["log_mel"]                               # slice(52, 180)
"""

from m3bert.features.audio import AudioError, AudioInfo, audio_info, load_audio
from m3bert.features.config import LOGMEL_BLOCKS, M3BERT_BLOCKS, SpectralConfig
from m3bert.features.extractor import FEATURE_SETS, M3BERT324, FeatureExtractor, LogMel128, build_feature_extractor
from m3bert.features.normalize import NORMALIZATIONS, Normalization, cmvn, cmvn_with_stats

__all__ = [
    "AudioError",
    "AudioInfo",
    "FEATURE_SETS",
    "FeatureExtractor",
    "LOGMEL_BLOCKS",
    "LogMel128",
    "M3BERT324",
    "M3BERT_BLOCKS",
    "NORMALIZATIONS",
    "Normalization",
    "SpectralConfig",
    "audio_info",
    "build_feature_extractor",
    "cmvn",
    "cmvn_with_stats",
    "load_audio",
]
