"""The pre-training objectives beside masked reconstruction: BEST-RQ, multi-target and clip contrastive.

Each trains on the same M3BERT encoder, resumes exactly, and leaves its encoder where export, extraction and
fine-tuning find it; the BEST-RQ targets are a deterministic function of the seed, saved with the run.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F
from conftest import CONF, crash_after_checkpoint, make_config
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from test_objectives import finetune_gtzan
from test_trainer import QUICK, losses, one_and_two_processes

from benchmarks.synth import synthetic_music
from m3bert.common import checkpoints
from m3bert.common.errors import ConfigError
from m3bert.data import Batch
from m3bert.export import export
from m3bert.extract import extract
from m3bert.inference.pretrained import fingerprint, load_pretrained
from m3bert.masking import Masker
from m3bert.models import M3BERTConfig
from m3bert.objectives import BestRQ, ClipContrastive, MultiTarget
from m3bert.objectives.codes import RandomProjectionQuantizer, code_statistics, masked_tokens
from m3bert.objectives.contrastive import halves
from m3bert.train import run
from m3bert.training.schemas import check_train_config

OBJECTIVES = ["bestrq", "multi_target", "contrastive"]
STEPS = 16
TRAIN = [
    *QUICK,
    "masking=cfm",
    "masking.ratio=0.5",
    f"trainer.max_steps={STEPS}",
    "trainer.save_every=8",
    "trainer.val_every=8",
    "optimizer.lr=3e-3",
    "scheduler.warmup_steps=2",
    "model.downsample=2",  # targets at the token rate, two frames a token, as the demo recipes
]


def overrides(objective: str) -> list[str]:
    return [*TRAIN, f"objective={objective}"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    """objective -> a finished run folder of STEPS steps (a fixture: several tests read one run)."""
    root = tmp_path_factory.mktemp("objectives")
    for objective in OBJECTIVES:
        run(make_config(*overrides(objective)), root / objective)
    return {objective: root / objective for objective in OBJECTIVES}


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_each_objective_trains_with_a_falling_finite_loss(objective, trained):
    history = losses(trained[objective])
    assert sorted(history) == list(range(1, STEPS + 1))
    assert all(math.isfinite(v) for v in history.values())
    first, last = sum(history[s] for s in range(1, 5)), sum(history[s] for s in range(STEPS - 3, STEPS + 1))
    assert last < first


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_each_objective_resumes_exactly(objective, trained, tmp_path, monkeypatch):
    crashed = tmp_path / "crashed"
    crash_after_checkpoint(make_config(*overrides(objective)), crashed, 8, monkeypatch)
    run(make_config(*overrides(objective)), crashed)
    expected, got = losses(trained[objective]), losses(crashed)
    assert sorted(got) == list(range(1, STEPS + 1))
    torch.testing.assert_close(
        torch.tensor([got[s] for s in sorted(got)]),
        torch.tensor([expected[s] for s in sorted(got)]),
        rtol=1e-5,
        atol=1e-6,
    )
    a = checkpoints.load(trained[objective] / f"checkpoints/step_{STEPS:07d}.pt")["model"]
    b = checkpoints.load(crashed / f"checkpoints/step_{STEPS:07d}.pt")["model"]
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_each_objective_exports_its_encoder_and_fine_tunes_frozen(objective, trained, tmp_path):
    export(trained[objective], tmp_path / "model")
    exported, from_run = load_pretrained(tmp_path / "model"), load_pretrained(trained[objective])
    assert fingerprint(exported.encoder) == fingerprint(from_run.encoder)
    assert exported.encoder.config.downsample == 2 and exported.front_end.feature_set == "m3bert324"
    # The exported encoder is the one the objective trained, not a fresh one.
    state = checkpoints.load(trained[objective] / "checkpoints/best.pt")["model"]
    torch.testing.assert_close(exported.encoder.input_projection.weight, state["encoder.input_projection.weight"])
    summary = run(make_config(*finetune_gtzan(tmp_path, tmp_path / "model", "encoder.mode=frozen")), tmp_path / "ft")
    assert 0 <= summary["test"]["gtzan/test/accuracy"] <= 1


def test_an_encoder_trained_by_bestrq_extracts_embeddings(trained, tmp_path):
    (tmp_path / "audio").mkdir()
    sf.write(tmp_path / "audio/a.wav", synthetic_music(2.0, 22050, seed=0), 22050)
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            "extract",
            [
                "progress=false",
                f"model_path={trained['bestrq']}",
                f"input={tmp_path / 'audio'}",
                f"output={tmp_path}/e",
            ],
        )
    assert extract(cfg)["done"] == 1
    embeddings = [np.load(f) for f in (tmp_path / "e").rglob("*.npy")]
    assert embeddings and all(np.isfinite(e).all() for e in embeddings)


def test_bestrq_logs_accuracy_and_code_statistics(trained):
    rows = [json.loads(line) for line in (trained["bestrq"] / "log.jsonl").read_text().splitlines()]
    train = next(r for r in rows if "train/loss" in r)
    val = next(r for r in rows if "val/loss" in r)
    for metrics, split in ((train, "train"), (val, "val")):
        assert 0 <= metrics[f"{split}/accuracy"] <= 1
        assert 1 <= metrics[f"{split}/code_perplexity"] <= 1024 and 0 < metrics[f"{split}/code_usage"] <= 1
    assert abs(train["train/masked_tokens"] - 0.5) < 0.15  # half the frames masked; a token needs one of two


def test_bestrq_targets_are_a_function_of_the_seed_saved_with_the_run(trained):
    cfg = make_config(*overrides("bestrq"))
    a, b = instantiate(cfg.objective, _convert_="all"), instantiate(cfg.objective, _convert_="all")
    other = instantiate(make_config(*overrides("bestrq"), "seed=1").objective, _convert_="all")
    assert torch.equal(a.codes.quantizer.codebooks, b.codes.quantizer.codebooks)
    assert torch.equal(a.codes.quantizer.projection, b.codes.quantizer.projection)
    assert not torch.equal(a.codes.quantizer.codebooks, other.codes.quantizer.codebooks)
    # Saved (buffers), unchanged by training: the run's last checkpoint holds the quantiser its seed draws.
    state = checkpoints.load(trained["bestrq"] / f"checkpoints/step_{STEPS:07d}.pt")["model"]
    assert torch.equal(state["codes.quantizer.codebooks"], a.codes.quantizer.codebooks)
    assert torch.equal(state["codes.quantizer.projection"], a.codes.quantizer.projection)
    features = torch.randn(2, 10, 324)
    lengths = torch.tensor([10, 7])
    assert torch.equal(a.codes.codes(features, lengths), b.codes.codes(features, lengths))


def test_the_quantiser_picks_the_nearest_code_by_cosine_in_float32():
    quantizer = RandomProjectionQuantizer(input_dim=12, num_codebooks=3, codebook_size=50, codebook_dim=4, seed=0)
    tokens = torch.randn(2, 30, 12)
    codes = quantizer(tokens)
    assert codes.shape == (2, 30, 3)
    for k in range(3):
        projected = tokens @ quantizer.projection[k]
        cosine = F.cosine_similarity(projected[:, :, None, :], quantizer.codebooks[k][None, None], dim=-1)
        assert torch.equal(codes[..., k], cosine.argmax(-1))
    assert torch.equal(quantizer(3.0 * tokens), codes)  # cosine: the scale of a frame does not matter
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(quantizer(tokens), codes)
    assert torch.allclose(quantizer.codebooks.norm(dim=-1), torch.ones(3, 50))


def test_codes_are_of_the_frames_stacked_to_the_token_rate():
    model = M3BERTConfig(input_dim=6, hidden_size=8, num_layers=1, num_heads=2, ffn_size=8, downsample=2)
    objective = BestRQ(model, Masker(0.5, frames={}), num_codebooks=2, codebook_size=16, codebook_dim=3, columns=[2, 5])
    assert objective.codes.quantizer.projection.shape == (2, 3 * 2, 3)  # columns 2..5 of two frames
    features = torch.randn(1, 9, 6)
    codes = objective.codes.codes(features, torch.tensor([9]))
    assert codes.shape == (1, 5, 2)  # ceil(9 / 2) tokens
    stacked = torch.cat([features[0, 2, 2:5], features[0, 3, 2:5]])  # token 1: frames 2 and 3
    assert torch.equal(codes[0, 1], objective.codes.quantizer(stacked[None, None])[0, 0])


def test_a_token_is_a_target_when_any_of_its_frames_is_masked():
    mask = torch.zeros(2, 7, 3, dtype=torch.bool)
    mask[0, 1, 0] = True  # one channel of frame 1: token 0
    mask[0, 4:6] = True  # frames 4 and 5: tokens 2
    mask[1, 6] = True  # frame 6: token 3 (its second frame is padding)
    tokens = masked_tokens(mask, torch.tensor([7, 7]), downsample=2)
    assert tokens.tolist() == [[True, False, True, False], [False, False, False, True]]


def test_code_statistics_of_even_and_collapsed_targets():
    even = code_statistics(torch.tensor([[5, 5, 5, 5]]))
    collapsed = code_statistics(torch.tensor([[20, 0, 0, 0]]))
    assert even["code_usage"].item() == 1.0 and abs(even["code_perplexity"].item() - 4.0) < 1e-4
    assert collapsed["code_usage"].item() == 0.25 and abs(collapsed["code_perplexity"].item() - 1.0) < 1e-4


def test_multi_target_heads_follow_the_feature_blocks():
    cfg = make_config(*overrides("multi_target"))
    objective = instantiate(cfg.objective, _convert_="all")
    assert objective.specs["log_mel_codes"]["columns"] == (52, 180)
    assert objective.specs["cqt_chroma_reconstruction"]["columns"] == (180, 324)
    assert objective.heads["log_mel_codes"].quantizer.projection.shape[1] == 128 * 2
    assert objective.heads["cqt_chroma_reconstruction"].net[-1].out_features == 144 * 2
    batch = Batch(torch.randn(2, 16, 324), torch.tensor([16, 11]), torch.arange(2))
    out = objective(batch, torch.Generator().manual_seed(0))
    # The loss is the weighted sum of the targets' means (equal weights here).
    expected = out.logs["log_mel_codes_loss"] + out.logs["cqt_chroma_reconstruction_loss"]
    torch.testing.assert_close(out.loss_sum.detach(), expected)
    reweighted = make_config(*overrides("multi_target"), "objective.targets.log_mel_codes.weight=0.0")
    objective = instantiate(reweighted.objective, _convert_="all")
    out = objective(batch, torch.Generator().manual_seed(0))
    torch.testing.assert_close(out.loss_sum.detach(), out.logs["cqt_chroma_reconstruction_loss"])


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"kind": "teacher"}, ".kind=teacher: must be one of codes, reconstruction"),
        ({"kind": "codes", "columns": [0, 400]}, r".columns=\[0, 400\]: must be \[start, stop\) inside"),
        ({"kind": "codes", "codebook_size": 0}, ".codebook_size=0: must be >= 1"),
        ({"kind": "reconstruction", "loss": "l2"}, ".loss=l2: must be one of huber, l1"),
        ({"kind": "reconstruction", "codebook_size": 8}, r": unknown keys \['codebook_size'\]"),
    ],
)
def test_bad_targets_are_refused_naming_the_key(bad, message):
    model = M3BERTConfig(input_dim=324, hidden_size=8, num_layers=1, num_heads=2, ffn_size=8)
    with pytest.raises(ValueError, match=f"objective.targets.x{message}"):
        MultiTarget(model, Masker(0.5, frames={}), {"x": bad})


def test_the_two_views_are_the_halves_of_each_clip():
    features = torch.arange(10.0)[None, :, None].expand(2, -1, 1).clone()
    (first, first_lengths), (second, second_lengths) = halves(features, torch.tensor([10, 7]))
    assert first_lengths.tolist() == [5, 3] and second_lengths.tolist() == [5, 4]
    assert first[0, :5, 0].tolist() == [0, 1, 2, 3, 4] and second[0, :5, 0].tolist() == [5, 6, 7, 8, 9]
    assert first[1, :3, 0].tolist() == [0, 1, 2] and second[1, :4, 0].tolist() == [3, 4, 5, 6]


def test_contrastive_loss_rewards_matching_halves():
    model = M3BERTConfig(input_dim=4, hidden_size=8, num_layers=1, num_heads=2, ffn_size=8, dropout=0.0)
    objective = ClipContrastive(model, Masker(None), temperature=0.1).eval()
    # Clips that are one frame repeated: both halves are the same, so each view's nearest other view is its positive.
    frames = torch.randn(6, 1, 4) * 3
    batch = Batch(frames.expand(-1, 12, -1).contiguous(), torch.full((6,), 12), torch.arange(6))
    out = objective(batch, torch.Generator())
    assert out.count.item() == 12 and out.logs["accuracy"].item() == 1.0
    assert out.loss_sum.item() / 12 < math.log(11)  # better than chance among the 11 other views


def test_bestrq_on_two_processes_matches_one_process(tmp_path):
    common = [
        "+experiment=smoke",
        "objective=bestrq",
        "logger=none",
        "trainer.progress=false",
        "trainer.max_steps=3",
        "trainer.log_every=1",
        "trainer.image_every=0",
        "trainer.val_every=3",
        "model.dropout=0.0",
        # Masks are drawn per process; unmasked, every token is a target, so the two runs compute the same sums.
        "masking=none",
    ]
    one, two = one_and_two_processes(tmp_path, common)
    assert sorted(one) == sorted(two) == [1, 2, 3]
    torch.testing.assert_close(torch.tensor(list(two.values())), torch.tensor(list(one.values())), rtol=1e-4, atol=1e-5)


def test_multi_target_of_a_log_mel_only_feature_set():
    cfg = make_config(*overrides("multi_target"), "features=logmel128", "~objective.targets.cqt_chroma_reconstruction")
    objective = instantiate(cfg.objective, _convert_="all")
    assert list(objective.specs) == ["log_mel_codes"] and objective.specs["log_mel_codes"]["columns"] == (0, 128)


@pytest.mark.parametrize(
    "objective, override",
    [
        ("bestrq", "objective.codebook_size=0"),
        ("bestrq", "objective.num_codebooks=0"),
        ("bestrq", "objective.codebook_dim=0"),
        ("contrastive", "objective.temperature=0"),
        ("contrastive", "objective.projection_dim=0"),
        ("bestrq", "masking.frames.span_seconds=[0.3,0.1]"),
    ],
)
def test_bad_objective_and_masking_values_are_refused_before_a_run_starts(objective, override):
    key = override.split("=")[0]
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        check_train_config(make_config(*overrides(objective), override))


def test_an_encoder_trained_contrastively_fine_tunes_unfrozen(trained, tmp_path):
    summary = run(
        make_config(*finetune_gtzan(tmp_path, trained["contrastive"], "encoder.mode=finetune")), tmp_path / "ft"
    )
    assert 0 <= summary["test"]["gtzan/test/accuracy"] <= 1
