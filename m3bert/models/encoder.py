"""The M3BERT encoder: frame stacking, sinusoidal (or rotary) positions and a BERT-style transformer stack.

Shapes follow the convention ``(batch, frames, features)``. Every forward returns the hidden states of every layer
(index 0 is the embedding output), so downstream code can pick a layer or learn a weighted sum of them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

POSITIONS = ("sinusoidal", "rotary")


@dataclass
class M3BERTConfig:
    """Architecture of the encoder. Defaults are the paper's base model; ``input_dim`` comes from the feature set
    (``features.dim`` in the configs)."""

    input_dim: int  # feature channels per frame
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    ffn_size: int = 3072
    dropout: float = 0.1
    # 0 keeps PyTorch's fused attention kernels; the original M3BERT used 0.1.
    attention_dropout: float = 0.0
    # Stack this many consecutive frames into one token (the original's "downsample rate").
    downsample: int = 1
    # Longest sequence, in tokens after stacking, that the positional table covers.
    max_positions: int = 4096
    # sinusoidal: absolute positions added to the embeddings (BERT, the original M3BERT); rotary: positions rotate
    # the queries and keys only (RoFormer), so the hidden states carry content alone and a clip's states do not
    # depend on where a frame sits in the window.
    positions: str = "sinusoidal"
    norm_first: bool = False  # False: post-LN as in BERT; True: pre-LN (more stable for deep models)
    layer_norm_eps: float = 1e-12

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"model.hidden_size={self.hidden_size} is not divisible by model.num_heads={self.num_heads}; "
                "pick sizes with hidden_size % num_heads == 0"
            )
        if self.positions not in POSITIONS:
            raise ValueError(f"model.positions must be one of {', '.join(POSITIONS)}, got {self.positions!r}")
        if self.positions == "rotary" and (self.hidden_size // max(self.num_heads, 1)) % 2:
            raise ValueError(
                f"model.positions=rotary rotates channel pairs, so hidden_size / num_heads must be even, got "
                f"{self.hidden_size} / {self.num_heads}"
            )
        for name in ("input_dim", "hidden_size", "num_layers", "num_heads", "ffn_size", "downsample"):
            if getattr(self, name) < 1:
                raise ValueError(f"model.{name} must be >= 1, got {getattr(self, name)}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def of(cls, model: M3BERTConfig | Mapping) -> M3BERTConfig:
        """``model`` itself, or the config of its fields (the ``model`` mapping an objective is built with)."""
        return model if isinstance(model, cls) else cls(**model)


class EncoderOutput(NamedTuple):
    hidden_states: tuple[torch.Tensor, ...]  # num_layers + 1 tensors of (batch, tokens, hidden)
    lengths: torch.Tensor  # (batch,) valid tokens per clip

    @property
    def last_hidden_state(self) -> torch.Tensor:
        return self.hidden_states[-1]


def position_angles(positions: int, dim: int) -> torch.Tensor:
    """(positions, ceil(dim / 2)) angles: position times the geometric frequencies of "Attention is all you need"."""
    inv_freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    return torch.arange(positions, dtype=torch.float32)[:, None] * inv_freq


def sinusoidal_table(positions: int, dim: int) -> torch.Tensor:
    """(positions, dim) sine/cosine table of "Attention is all you need"."""
    angles = position_angles(positions, dim)
    table = torch.zeros(positions, dim)
    table[:, 0::2] = angles.sin()
    table[:, 1::2] = angles[:, : dim // 2].cos()
    return table


def rotary_table(positions: int, dim: int) -> torch.Tensor:
    """(2, positions, dim // 2): cosines and sines of the rotation angle of each position and channel pair."""
    angles = position_angles(positions, dim)
    return torch.stack([angles.cos(), angles.sin()])


def rotate(x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Rotate each channel pair (2i, 2i + 1) of x (batch, heads, tokens, head_dim) by its position's angle, so a
    query-key product depends on the two positions only through their distance."""
    cos, sin = table[:, : x.shape[2]].to(x.dtype)
    even, odd = x[..., 0::2], x[..., 1::2]
    return torch.stack([even * cos - odd * sin, even * sin + odd * cos], -1).flatten(-2)


def stack_frames(x: torch.Tensor, lengths: torch.Tensor, rate: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(batch, frames, dim) -> (batch, ceil(frames / rate), dim * rate); the tail is zero-padded."""
    if rate == 1:
        return x, lengths
    pad = (-x.shape[1]) % rate
    x = F.pad(x, (0, 0, 0, pad))
    return rearrange(x, "b (t r) d -> b t (r d)", r=rate), torch.div(lengths + rate - 1, rate, rounding_mode="floor")


def unstack_frames(x: torch.Tensor, frames: int, rate: int) -> torch.Tensor:
    """Inverse of :func:`stack_frames`: (batch, tokens, dim * rate) -> (batch, frames, dim)."""
    if rate == 1:
        return x
    return rearrange(x, "b t (r d) -> b (t r) d", r=rate)[:, :frames]


def padding_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """(batch, max_len) bool, True on valid positions."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


class SelfAttention(nn.Module):
    def __init__(self, cfg: M3BERTConfig):
        super().__init__()
        self.num_heads = cfg.num_heads
        self.dropout = cfg.attention_dropout
        self.qkv = nn.Linear(cfg.hidden_size, 3 * cfg.hidden_size)
        self.out = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        if cfg.positions == "rotary":
            table = rotary_table(cfg.max_positions, cfg.hidden_size // cfg.num_heads)
            self.register_buffer("rotary", table, persistent=False)
        else:
            self.rotary = None

    def _qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        q, k, v = rearrange(self.qkv(x), "b t (three h d) -> three b h t d", three=3, h=self.num_heads)
        if self.rotary is not None:
            q, k = rotate(q, self.rotary), rotate(k, self.rotary)
        return q, k, v

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
        q, k, v = self._qkv(x)
        dropout = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout)
        return self.out(rearrange(y, "b h t d -> b t (h d)"))

    def attention_weights(self, x: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
        """(batch, heads, tokens, tokens) attention probabilities, for analysis plots (not used in training)."""
        q, k, _ = self._qkv(x)
        scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
        if attn_mask is not None:
            scores = scores.masked_fill(~attn_mask, float("-inf"))
        return scores.softmax(-1)


class TransformerLayer(nn.Module):
    def __init__(self, cfg: M3BERTConfig):
        super().__init__()
        self.norm_first = cfg.norm_first
        self.attention = SelfAttention(cfg)
        self.ffn = nn.Sequential(
            nn.Linear(cfg.hidden_size, cfg.ffn_size),
            nn.GELU(),
            nn.Linear(cfg.ffn_size, cfg.hidden_size),
        )
        self.norm1 = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.norm2 = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
        if self.norm_first:
            x = x + self.dropout(self.attention(self.norm1(x), attn_mask))
            return x + self.dropout(self.ffn(self.norm2(x)))
        x = self.norm1(x + self.dropout(self.attention(x, attn_mask)))
        return self.norm2(x + self.dropout(self.ffn(x)))


class M3BERT(nn.Module):
    """Transformer encoder over frame features.

    forward(features (batch, frames, input_dim), lengths (batch,)) -> EncoderOutput with num_layers + 1 hidden states
    of shape (batch, ceil(frames / downsample), hidden_size).
    """

    def __init__(self, config: M3BERTConfig):
        super().__init__()
        self.config = config
        self.input_projection = nn.Linear(config.input_dim * config.downsample, config.hidden_size)
        # A buffer, not a parameter: built once, moved with the module, and not saved in checkpoints.
        if config.positions == "sinusoidal":
            table = sinusoidal_table(config.max_positions, config.hidden_size)
            self.register_buffer("positions", table, persistent=False)
        else:
            self.positions = None  # rotary positions live in the attention layers
        self.embedding_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.embedding_dropout = nn.Dropout(config.dropout)
        self.layers = nn.ModuleList(TransformerLayer(config) for _ in range(config.num_layers))
        # Pre-LN stacks need a final norm; post-LN layers already end in one.
        self.final_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps) if config.norm_first else None
        self.apply(_init_weights)

    def embed(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if features.shape[-1] != self.config.input_dim:
            raise ValueError(
                f"features have {features.shape[-1]} channels per frame but the model expects "
                f"model.input_dim={self.config.input_dim}"
            )
        x, lengths = stack_frames(features, lengths, self.config.downsample)
        if x.shape[1] > self.config.max_positions:
            raise ValueError(
                f"{x.shape[1]} tokens exceed model.max_positions={self.config.max_positions}; "
                "crop the input (dataset.max_frames) or raise model.max_positions"
            )
        x = self.input_projection(x)
        if self.positions is not None:
            x = x + self.positions[: x.shape[1]]
        return self.embedding_dropout(self.embedding_norm(x)), lengths

    def forward(self, features: torch.Tensor, lengths: torch.Tensor | None = None) -> EncoderOutput:
        if lengths is None:
            lengths = torch.full((features.shape[0],), features.shape[1], device=features.device)
        x, lengths = self.embed(features, lengths)
        # Key-padding mask, broadcast over heads and queries: padded frames are never attended to.
        attn_mask = padding_mask(lengths, x.shape[1])[:, None, None, :]
        hidden = [x]
        for layer in self.layers:
            x = layer(x, attn_mask)
            hidden.append(x)
        if self.final_norm is not None:
            hidden[-1] = self.final_norm(hidden[-1])
        return EncoderOutput(tuple(hidden), lengths)

    @torch.no_grad()
    def attention_maps(self, features: torch.Tensor, lengths: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Attention probabilities of every layer, each (batch, heads, tokens, tokens)."""
        if lengths is None:
            lengths = torch.full((features.shape[0],), features.shape[1], device=features.device)
        x, lengths = self.embed(features, lengths)
        attn_mask = padding_mask(lengths, x.shape[1])[:, None, None, :]
        maps = []
        for layer in self.layers:
            inputs = layer.norm1(x) if layer.norm_first else x
            maps.append(layer.attention.attention_weights(inputs, attn_mask))
            x = layer(x, attn_mask)
        return maps


def _init_weights(module: nn.Module) -> None:
    # BERT's initialisation: N(0, 0.02) weights, zero biases, unit LayerNorm.
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
