"""Pre-training throughput: M3BERT's training step against a Hugging Face ``BertModel`` build of the same network.

Both run the same work per step (input projection, 3 x 768 transformer, reconstruction head, masked Huber loss,
AdamW), interleaved step by step so that background load affects them alike. Reported in valid frames per second.
"""

from __future__ import annotations

import time
from statistics import median

import torch
from torch import nn

from m3bert.common.devices import cpu_has_native_bf16, native_bf16
from m3bert.data import Batch
from m3bert.features.config import M3BERT_BLOCKS, block_columns
from m3bert.masking import Masker
from m3bert.models import M3BERTConfig
from m3bert.objectives import MaskedReconstruction, ReconstructionHead, StepOutput

# The CCM band of the paper's recipe: the spectral blocks of the m3bert324 features.
SPECTRAL_COLUMNS = block_columns(M3BERT_BLOCKS, ("log_mel", "log_cqt_chroma"), "m3bert324")
M3BERT_DIM = next(reversed(M3BERT_BLOCKS.values())).stop

# Peak dense bf16 throughput, for model-FLOPs utilisation on GPUs we know.
PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12}


class BertReference(nn.Module):
    """The same encoder from ``transformers.BertModel`` (eager attention, fp32), with our projection and head."""

    def __init__(self, cfg: M3BERTConfig, masker: Masker):
        super().__init__()
        from transformers import BertConfig, BertModel

        bert_cfg = BertConfig(
            vocab_size=1,
            type_vocab_size=1,
            hidden_size=cfg.hidden_size,
            num_hidden_layers=cfg.num_layers,
            num_attention_heads=cfg.num_heads,
            intermediate_size=cfg.ffn_size,
            hidden_dropout_prob=cfg.dropout,
            attention_probs_dropout_prob=cfg.attention_dropout,
            max_position_embeddings=cfg.max_positions,
        )
        bert_cfg._attn_implementation = "eager"
        self.projection = nn.Linear(cfg.input_dim, cfg.hidden_size)
        self.bert = BertModel(bert_cfg, add_pooling_layer=False)
        self.head = ReconstructionHead(cfg)
        self.masker = masker

    def forward(self, batch: Batch, generator: torch.Generator):
        features, lengths = batch.features, batch.lengths
        masked = self.masker(features, lengths, generator)
        attention_mask = (torch.arange(features.shape[1])[None, :] < lengths[:, None]).long()
        hidden = self.bert(inputs_embeds=self.projection(masked.inputs), attention_mask=attention_mask)
        prediction = self.head(hidden.last_hidden_state, features.shape[1])
        error = nn.functional.huber_loss(prediction, features, reduction="none")
        return StepOutput((error * masked.mask).sum(), masked.mask.sum(), {})


def _step(model, optimizer, batch, generator, dtype):
    start = time.perf_counter()
    device = batch.features.device
    with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
        out = model(batch, generator)
    loss = out.loss_sum / out.count
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def training_flops(cfg: M3BERTConfig, batch: int, frames: int) -> float:
    """Matmul FLOPs of one training step (forward + backward = 3 x forward)."""
    h, f, layers = cfg.hidden_size, cfg.ffn_size, cfg.num_layers
    tokens = batch * frames
    per_token = 2 * (layers * (4 * h * h + 2 * h * f) + cfg.input_dim * h + h * h + h * cfg.input_dim)
    attention = 2 * 2 * layers * batch * frames * frames * h
    return 3 * (per_token * tokens + attention)


def matmul_gflops(dtype: torch.dtype, n: int = 1024, repeats: int = 5) -> float:
    """Throughput of an ``n x n`` matmul in ``dtype`` on the CPU (median of ``repeats``): the hardware's answer to
    whether bf16 is native, beside the flags :func:`m3bert.common.devices.native_bf16` reads."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * n**3 / median(times) / 1e9


def compare_cpu(layers: int = 3, batch: int = 8, frames: int = 512, steps: int = 3, compile: bool = True) -> dict:
    torch.manual_seed(0)
    cfg = M3BERTConfig(input_dim=M3BERT_DIM, num_layers=layers)
    masker = Masker(0.15, frames={}, channels={"channel_range": SPECTRAL_COLUMNS})
    features = torch.randn(batch, frames, cfg.input_dim)
    lengths = torch.full((batch,), frames)
    clips = Batch(features, lengths, torch.arange(batch))
    ours = MaskedReconstruction(cfg, masker)
    reference = BertReference(cfg, masker)
    precisions = {"fp32": None}
    if native_bf16():
        precisions["bf16"] = torch.bfloat16
    runs = [("reference_fp32", reference, None)] + [(f"m3bert_{p}", ours, d) for p, d in precisions.items()]
    if compile:  # what trainer.compile=true runs; compiling takes a minute or two, not counted
        runs.append(("m3bert_fp32_compiled", torch.compile(ours), None))
    times = {name: [] for name, _, _ in runs}
    # The reference gets the optimiser transformers users get by default; ours the one conf/optimizer/adamw.yaml
    # configures (fused). Both are timed in the step.
    optimizers = {
        name: torch.optim.AdamW(model.parameters(), lr=1e-4, fused=not name.startswith("reference"))
        for name, model, _ in runs
    }
    generator = torch.Generator().manual_seed(0)
    for name, model, dtype in runs:  # warm-up (and compilation)
        _step(model, optimizers[name], clips, generator, dtype)
    for _ in range(steps):  # interleaved, so background load hits every variant alike
        for name, model, dtype in runs:
            times[name].append(_step(model, optimizers[name], clips, generator, dtype))
    frames_per_s = {name: batch * frames / median(t) for name, t in times.items()}

    # Host-side preparation per batch: masking and the positional-encoding lookup.
    prep = []
    for _ in range(10):
        start = time.perf_counter()
        masked = masker(features, lengths, generator)
        _ = ours.encoder.positions[:frames] + masked.inputs.new_zeros(())
        prep.append(time.perf_counter() - start)
    result = {
        "model": f"m3bert_small ({layers} x {cfg.hidden_size})",
        "batch": batch,
        "frames": frames,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "native_bf16": cpu_has_native_bf16(),
        "matmul_gflops": {"fp32": matmul_gflops(torch.float32), "bf16": matmul_gflops(torch.bfloat16)},
        "threads": torch.get_num_threads(),
        "frames_per_s": frames_per_s,
        "speedup_fp32_vs_reference": frames_per_s["m3bert_fp32"] / frames_per_s["reference_fp32"],
        "speedup_fp32_compiled_vs_reference": frames_per_s.get("m3bert_fp32_compiled", float("nan"))
        / frames_per_s["reference_fp32"],
        "host_prep_s": median(prep),
        "host_prep_share_of_step": median(prep) / median(times["m3bert_fp32"]),
        "achieved_gflops_fp32": training_flops(cfg, batch, frames) / median(times["m3bert_fp32"]) / 1e9,
    }
    if "bf16" in precisions:
        result["speedup_bf16_vs_reference_fp32"] = frames_per_s["m3bert_bf16"] / frames_per_s["reference_fp32"]
    else:
        result["bf16"] = (
            f"skipped: this CPU ({result['cpu_capability']}) has no bf16 matmul instructions (no avx512_bf16, "
            "amx_bf16 or bf16 flag), so bf16 autocast is emulated and far slower than fp32"
        )
    return result


def gpu(frames: int = 1292, batch: int = 16, steps: int = 10) -> dict:
    """m3bert_base in bf16 on 30-s clips (1,292 frames): throughput and model-FLOPs utilisation."""
    torch.manual_seed(0)
    cfg = M3BERTConfig(input_dim=M3BERT_DIM, max_positions=2048)
    device = torch.device("cuda")
    model = MaskedReconstruction(cfg, Masker(0.15, frames={}, channels={"channel_range": SPECTRAL_COLUMNS})).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    features = torch.randn(batch, frames, cfg.input_dim, device=device)
    clips = Batch(features, torch.full((batch,), frames, device=device), torch.arange(batch, device=device))
    generator = torch.Generator(device).manual_seed(0)
    for _ in range(3):
        _step(model, optimizer, clips, generator, torch.bfloat16)
    times = [_step(model, optimizer, clips, generator, torch.bfloat16) for _ in range(steps)]
    step = median(times)
    name = torch.cuda.get_device_name()
    peak = next((v for k, v in PEAK_BF16_FLOPS.items() if k in name), None)
    flops = training_flops(cfg, batch, frames) / step
    return {
        "device": name,
        "model": "m3bert_base",
        "batch": batch,
        "frames": frames,
        "frames_per_s": batch * frames / step,
        "tflops": flops / 1e12,
        "mfu": flops / peak if peak else None,
    }
