"""The HEAR 2021 common API (https://hearbenchmark.com/hear-api.html) over an m3bert model.

    import m3bert.hear as hear
    model = hear.load_model("models/m3bert-base")                     # exported folder or pre-training run folder
    emb, ts = hear.get_timestamp_embeddings(audio, model)             # audio: (n, samples) at model.sample_rate
    scene = hear.get_scene_embeddings(audio, model)                   # (n, scene_embedding_size)

    hear-validator m3bert.hear --model models/m3bert-base             # the reference validator

Timestamp embeddings are the encoder's output frames (one per 1024 samples, ~23 ms at 44.1 kHz), timestamps the
centre of each frame's audio in milliseconds from the start of the clip. With the default ``layer="mean"`` an
embedding is the average of every hidden state (embedding output and all layers; s3prl/MARBLE-style probing finds the
best layer varies by task, and the average is a robust single choice); ``"last"``, an index, or ``"concat"`` (all
hidden states side by side) are the alternatives. Scene embeddings pool each hidden state over time, then combine
the layers as ``layer`` says: ``scene_pooling="mean_std_max"`` (default: mean ⊕ std ⊕ max, three times as wide; with
``layer="mean"`` this is m3bert's default clip embedding, the one ``extract`` writes to ``clip/`` and ``evaluate``
measures as ``mean_over_layers``), ``"mean"``, ``"max"`` or ``"mean_std"``.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from m3bert.inference.representations import Representations
from m3bert.models.pooling import CLIP_POOLING, check_pooling, masked_pool, pooled_dim

# The paper's base model with the default layer="mean" and scene_pooling="mean_std_max", for tools that read these
# before loading a model; a loaded model's own attributes are what counts.
sample_rate = 44100
scene_embedding_size = 3 * 768
timestamp_embedding_size = 768
MODEL_ENV = "M3BERT_HEAR_MODEL"  # where load_model() without a path looks
CLIPS_PER_PASS = 4


class HearModel(nn.Module):
    """A :class:`Representations` with the attributes HEAR asks for: ``sample_rate`` (Hz), ``scene_embedding_size``
    and ``timestamp_embedding_size`` (ints)."""

    def __init__(self, representations: Representations, layer: str | int = "mean", scene_pooling: str = CLIP_POOLING):
        super().__init__()
        self.representations = representations
        count = len(representations.layers)
        if not (layer in ("mean", "last", "concat") or (isinstance(layer, int) and -count <= layer < count)):
            raise ValueError(
                f"layer must be mean, last, concat or a hidden-state index in [{-count}, {count}), got {layer!r}"
            )
        self.layer = layer
        self.sample_rate = int(representations.sample_rate)
        width = representations.hidden_size
        self.timestamp_embedding_size = width * count if layer == "concat" else width
        check_pooling(scene_pooling)
        self.scene_pooling = scene_pooling
        self.scene_embedding_size = pooled_dim(self.timestamp_embedding_size, scene_pooling)

    def combine(self, states: torch.Tensor) -> torch.Tensor:
        """(layers, frames, hidden) -> (frames, timestamp_embedding_size)."""
        if self.layer == "mean":
            return states.float().mean(0)
        if self.layer == "concat":
            return states.permute(1, 0, 2).reshape(states.shape[1], -1)
        return states[-1 if self.layer == "last" else self.layer]


def load_model(
    model_file_path: str = "",
    layer: str | int = "mean",
    window_frames: int | None = None,
    batch_size: int = 16,
    dtype: str = "auto",
    scene_pooling: str = CLIP_POOLING,
) -> HearModel:
    """Load a model for HEAR.

    Args:
        model_file_path: exported model folder or pre-training run folder; empty reads ``$M3BERT_HEAR_MODEL``
            (m3bert ships no default weights).
        layer: ``mean`` (default), ``last``, ``concat`` or a hidden-state index (0 = embedding output).
        window_frames / batch_size / dtype: see :class:`m3bert.inference.representations.Representations`
            (``auto``: bf16 where this CPU computes it natively, cosine >= 0.999 to fp32's embeddings).
        scene_pooling: ``mean_std_max`` (default), ``mean``, ``max`` or ``mean_std``: how the scene embeddings pool
            each hidden state over time (before the layers are combined).
    """
    path = model_file_path or os.environ.get(MODEL_ENV, "")
    if not path:
        raise ValueError(
            f"m3bert.hear.load_model needs a model: pass model_file_path (an exported model folder or a "
            f"pre-training run folder) or set ${MODEL_ENV}"
        )
    # Every hidden state is kept so that `layer` can pick, average or concatenate them.
    rep = Representations.from_pretrained(
        path, layers="all", window_frames=window_frames, batch_size=batch_size, device="cpu", dtype=dtype
    )
    return HearModel(rep, layer, scene_pooling)


def _check_audio(audio: torch.Tensor, model: HearModel) -> None:
    if not isinstance(audio, torch.Tensor) or audio.dim() != 2 or not audio.is_floating_point():
        raise ValueError(
            f"audio must be a float tensor (n_sounds, n_samples) at {model.sample_rate} Hz, got "
            f"{type(audio).__name__} {tuple(getattr(audio, 'shape', ()))}"
        )
    if audio.shape[1] == 0:
        raise ValueError("audio has no samples")


def _clip_states(audio: torch.Tensor, model: HearModel):
    """Each clip's hidden states (layers, frames, hidden), a few clips at a time (every hidden state of every frame
    is held until the caller reduces it), without a last frame that stands for audio past the clip's end, and the
    frames' timestamps in milliseconds."""
    _check_audio(audio, model)
    rep = model.representations
    for group in audio.to(rep.device).split(CLIPS_PER_PASS):
        for states in rep.encode(rep.features(list(group))):
            stamps = rep.timestamps(states.shape[1]) * 1000.0
            # With frame stacking the last output frame can stand for audio centred past the clip's end; it goes.
            keep = int((stamps <= 1000.0 * audio.shape[1] / model.sample_rate).sum().clamp_min(1))
            yield states[:, :keep], stamps[:keep].float()


@torch.no_grad()
def get_timestamp_embeddings(audio: torch.Tensor, model: HearModel) -> tuple[torch.Tensor, torch.Tensor]:
    """Frame embeddings of a batch of equal-length clips.

    Args:
        audio: (n_sounds, n_samples) float, mono, at ``model.sample_rate``, values in [-1, 1].
    Returns:
        embeddings (n_sounds, n_frames, timestamp_embedding_size) float32, and timestamps (n_sounds, n_frames)
        float32 milliseconds: the centre of each frame's audio, evenly spaced, none past the end of the clip.
    """
    clips = [(model.combine(states).float(), stamps) for states, stamps in _clip_states(audio, model)]
    embeddings = torch.stack([embedding for embedding, _ in clips])
    timestamps = clips[0][1].to(embeddings.device).expand(len(audio), embeddings.shape[1])
    return embeddings, timestamps.contiguous()


@torch.no_grad()
def get_scene_embeddings(audio: torch.Tensor, model: HearModel) -> torch.Tensor:
    """(n_sounds, scene_embedding_size) float32: each hidden state pooled over time (``model.scene_pooling``), the
    layers then combined as ``model.layer`` says (the default: m3bert's clip embedding, see
    :func:`m3bert.models.pooling.clip_embedding`)."""
    pooled = [masked_pool(states, None, model.scene_pooling) for states, _ in _clip_states(audio, model)]
    return torch.stack([model.combine(p[:, None]).float()[0] for p in pooled])
