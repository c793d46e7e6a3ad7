"""The objective contract (m3bert.objectives.base) and the feature set as a config group of training."""

import json

import pytest
import torch
from conftest import CONF, TINY, make_config, write_task_data
from omegaconf import OmegaConf

from m3bert.common import checkpoints
from m3bert.export import export
from m3bert.features import FEATURE_SETS
from m3bert.objectives import Objective, StepOutput
from m3bert.train import run


def finetune_gtzan(tmp_path, checkpoint, *extra: str) -> list[str]:
    """Two steps of one-task fine-tuning on generated genre data."""
    root = write_task_data(tmp_path / "data", "multiclass", "genre", clips=12)
    return [
        *TINY,
        "+experiment=finetune_mtl",
        "tasks=[gtzan]",
        f"tasks.gtzan.root={root}",
        f"encoder.checkpoint={checkpoint}",
        "trainer.max_steps=2",
        "trainer.val_every=2",
        "trainer.batch_size=4",
        "dataset.max_frames=32",
        *extra,
    ]


class MeanRegression(Objective):
    """The smallest objective: predict each clip's mean feature value from its first frame."""

    def __init__(self, feature_dim: int):
        super().__init__()
        self.linear = torch.nn.Linear(feature_dim, 1)

    def forward(self, batch, generator=None) -> StepOutput:
        error = (self.linear(batch.features[:, 0]).squeeze(1) - batch.features.mean((1, 2))) ** 2
        return StepOutput(error.sum(), torch.tensor(len(error)), {"first_error": error[0].detach()})

    @torch.no_grad()
    def eval_batch(self, batch, generator=None):
        out = self(batch)
        return {"loss_sum": out.loss_sum.reshape(1), "count": out.count.float().reshape(1)}

    def eval_metrics(self, state):
        return {"loss": (state["loss_sum"].sum() / state["count"].sum()).item()}


def test_an_objective_trains_through_the_contract_alone(tmp_path):
    cfg = make_config("+experiment=smoke", *TINY, "trainer.max_steps=2", "trainer.log_every=1", "trainer.val_every=2")
    OmegaConf.set_struct(cfg, False)
    cfg.objective = {"_target_": f"{__name__}.MeanRegression", "feature_dim": "${features.dim}"}
    summary = run(cfg, tmp_path)
    assert summary["steps"] == 2 and summary["best"]["val/loss"] > 0
    rows = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    # Every entry of StepOutput.logs reaches the log, named train/<key>.
    assert [r["step"] for r in rows if "train/first_error" in r] == [1, 2]


def test_something_that_is_not_an_objective_is_refused(tmp_path):
    cfg = make_config("+experiment=smoke", *TINY, "trainer.max_steps=1")
    OmegaConf.set_struct(cfg, False)
    cfg.objective = {"_target_": "torch.nn.Linear", "in_features": 2, "out_features": 1}
    with pytest.raises(TypeError, match="not an m3bert.objectives.Objective"):
        run(cfg, tmp_path)


def test_multitask_training_logs_each_task_loss(tmp_path, pretrained):
    run(make_config(*finetune_gtzan(tmp_path, pretrained, "trainer.log_every=1")), tmp_path / "run")
    rows = [json.loads(line) for line in (tmp_path / "run/log.jsonl").read_text().splitlines()]
    assert all(r["gtzan/train/loss"] > 0 for r in rows if "train/loss" in r)


@pytest.mark.parametrize("name", sorted(FEATURE_SETS))
def test_feature_set_configs_describe_the_extractors(name):
    cfg = OmegaConf.load(CONF / "features" / f"{name}.yaml")
    blocks = {block: [s.start, s.stop] for block, s in FEATURE_SETS[name].blocks.items()}
    assert OmegaConf.to_container(cfg.blocks) == blocks
    assert cfg.dim == max(stop for _, stop in blocks.values())


def test_logmel_pretraining_with_the_default_masking_runs_and_records_its_features(tmp_path):
    cfg = make_config("+experiment=smoke", *TINY, "features=logmel128", "trainer.max_steps=2", "trainer.val_every=2")
    assert cfg.model.input_dim == cfg.dataset.feature_dim == 128
    assert list(cfg.masking.channels.channel_range) == [0, 128]  # CCM keeps to the blocks the feature set has
    run(cfg, tmp_path / "run")
    state = checkpoints.load(tmp_path / "run/checkpoints/best.pt")
    assert state["config"]["features"]["name"] == "logmel128"
    export(tmp_path / "run", tmp_path / "model")
    assert json.loads((tmp_path / "model/config.json").read_text())["features"]["feature_set"] == "logmel128"


def test_channel_masking_of_the_paper_features_covers_the_spectral_blocks():
    cfg = make_config("+experiment=smoke")
    assert list(cfg.masking.channels.channel_range) == [52, 324]  # log-mel and log CQT-chroma


def test_an_exported_model_folder_fine_tunes(tmp_path, pretrained):
    export(pretrained, tmp_path / "model")
    summary = run(make_config(*finetune_gtzan(tmp_path, tmp_path / "model")), tmp_path / "run")
    assert 0 <= summary["test"]["gtzan/test/accuracy"] <= 1
