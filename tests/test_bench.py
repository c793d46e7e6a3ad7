import pytest
from conftest import measured

from benchmarks import pretrain


def test_pretraining_benchmark_runs_on_a_tiny_shape():
    pytest.importorskip("transformers", reason="the reference model needs the bench extra: pip install -e .[bench]")
    result = pretrain.compare_cpu(layers=1, batch=2, frames=32, steps=1, compile=False)
    # Reported, never judged: how fast a step runs (and how its time splits) is the machine's.
    assert measured(result["frames_per_s"]["m3bert_fp32"]) and measured(result["frames_per_s"]["reference_fp32"])
    assert measured(result["host_prep_share_of_step"])


def test_training_flops_count_matmuls():
    cfg = pretrain.M3BERTConfig(input_dim=4, hidden_size=8, num_layers=1, num_heads=2, ffn_size=16)
    per_token = 2 * (4 * 64 + 2 * 8 * 16 + 4 * 8 + 64 + 8 * 4)
    attention = 2 * 2 * 1 * 3 * 10 * 10 * 8
    assert pretrain.training_flops(cfg, batch=3, frames=10) == 3 * (per_token * 30 + attention)


def test_objective_costs_are_measured_against_reconstruction():
    from benchmarks import objectives

    tiny = ["model=m3bert_tiny", "dataset.max_frames=32", "trainer.batch_size=2"]
    result = objectives.run(steps=1, precision="fp32", overrides=tiny)
    assert set(result["seconds_per_step"]) == set(objectives.RECIPES) and result["batch"] == [2, 32, 324]
    assert result["relative_to_reconstruction"]["masked_reconstruction"] == 1.0
    assert all(s > 0 for s in result["seconds_per_step"].values()) and result["precision"] == "fp32"
