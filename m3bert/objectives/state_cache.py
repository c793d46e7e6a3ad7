"""A frozen encoder's hidden states, computed once per training crop and kept in memory.

A frozen encoder (in eval mode, no dropout) maps a crop to the same states every time, and its forward pass is
most of a frozen-encoder training step. With the training split cropped to ``windows`` (half-overlapping windows,
a finite set per clip; see :func:`m3bert.data.manifest.crop_start`) every crop recurs, so after the first epoch
only the heads train. States are kept in float16 and always served through that rounding, cached or not, so a
run gives the same numbers whether a crop was a hit or a miss (and after a resume, with an empty cache).
"""

from __future__ import annotations

import logging

import torch
from torch.nn.utils.rnn import pad_sequence

log = logging.getLogger(__name__)


class StateCache:
    """``states(encoder, batch)`` -> (hidden states of every layer, each (batch, tokens, hidden), token lengths),
    keyed by (clip index, crop start, frames); at most ``max_gb`` of states are kept, later crops are computed
    each time."""

    def __init__(self, max_gb: float):
        self.max_bytes = int(max_gb * 2**30)
        self.entries: dict[tuple[int, int, int], torch.Tensor] = {}  # key -> (layers, tokens, hidden) float16
        self.bytes, self.full, self.hits, self.misses = 0, False, 0, 0

    def states(self, encoder, batch) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        if batch.starts is None:
            raise ValueError("StateCache needs the crop starts of a batch (m3bert.data.collate sets them)")
        keys = [tuple(k) for k in torch.stack([batch.indices, batch.starts, batch.lengths], 1).tolist()]
        missing = [row for row, key in enumerate(keys) if key not in self.entries]
        self.hits, self.misses = self.hits + len(keys) - len(missing), self.misses + len(missing)
        computed = {}
        if missing:
            rows = torch.tensor(missing, device=batch.features.device)
            frames = int(batch.lengths[rows].max())
            with torch.no_grad():
                out = encoder(batch.features[rows, :frames], batch.lengths[rows])
            stacked = torch.stack(out.hidden_states, 1).to(torch.float16)  # (clips, layers, tokens, hidden)
            for i, row in enumerate(missing):
                computed[row] = stacked[i, :, : int(out.lengths[i])].cpu()
            self._keep({keys[row]: computed[row] for row in missing})
        items = [computed[row] if row in computed else self.entries[keys[row]] for row in range(len(keys))]
        lengths = torch.tensor([item.shape[1] for item in items], device=batch.features.device)
        # (batch, tokens, layers, hidden), zero-padded, then one tensor per layer as the encoder returns them.
        padded = pad_sequence([item.transpose(0, 1) for item in items], batch_first=True)
        padded = padded.to(batch.features.device, torch.float32)
        return tuple(padded.unbind(2)), lengths

    def _keep(self, new: dict[tuple[int, int, int], torch.Tensor]) -> None:
        for key, value in new.items():
            size = value.numel() * value.element_size()
            if self.bytes + size > self.max_bytes:
                if not self.full:
                    log.warning(
                        "Frozen-encoder state cache full (%.1f GB, encoder.cache_gb); further crops are encoded "
                        "each time they come",
                        self.bytes / 2**30,
                    )
                    self.full = True
                return
            self.entries[key] = value
            self.bytes += size
