"""bf16 encoding (what ``dtype=auto`` picks where the CPU computes bf16 natively) against fp32."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from tiny_models import tiny_encoder

from m3bert.inference.pretrained import FrontEnd
from m3bert.inference.representations import Representations


def test_bf16_embeddings_match_fp32_to_cosine_0999():
    features = torch.randn(200, 128, generator=torch.Generator().manual_seed(1))
    states = {}
    for dtype in ("float32", "bfloat16"):  # one encoder each: Representations casts its encoder
        rep = Representations(tiny_encoder(input_dim=128, num_layers=4), FrontEnd("logmel128"), dtype=dtype)
        (states[dtype],) = rep.encode([features])
    fp32, bf16 = states["float32"], states["bfloat16"].float()
    assert states["bfloat16"].dtype == torch.bfloat16 and bf16.shape == fp32.shape == (5, 200, 32)
    frame_cosine = F.cosine_similarity(bf16, fp32, dim=-1)  # (layers, frames)
    pooled_cosine = F.cosine_similarity(bf16.mean(1), fp32.mean(1), dim=-1)  # (layers,)
    assert frame_cosine.min() >= 0.999 and pooled_cosine.min() >= 0.999
    assert not torch.equal(bf16, fp32)  # bf16 really ran


def test_auto_dtype_follows_native_bf16(monkeypatch):
    import m3bert.common.devices as devices

    for native, expected in ((True, torch.bfloat16), (False, torch.float32)):
        monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda native=native: native)
        rep = Representations(tiny_encoder(input_dim=128), FrontEnd("logmel128"), dtype="auto")
        assert rep.dtype == expected and next(rep.encoder.parameters()).dtype == expected
