import pytest
from conftest import CONF, TINY, make_config, task_overrides
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf
from omegaconf.errors import MissingMandatoryValue

from m3bert.train import run

EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))
# Every recipe runs on the tiny model and generated features here; its own data may not exist on this machine.
FEW_STEPS = [
    *TINY,
    "dataset=random",
    "trainer.max_steps=3",
    "trainer.batch_size=4",
    "trainer.val_every=3",
    "trainer.save_every=3",
    "trainer.log_every=1",
    "trainer.image_every=0",
    "trainer.grad_accum=1",
    "trainer.precision=fp32",
    "dataset.max_frames=64",
    "scheduler.warmup_steps=1",
]


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_and_runs(experiment, tmp_path, pretrained):
    cfg = make_config(f"+experiment={experiment}", *FEW_STEPS)
    if "tasks" in cfg:  # fine-tuning recipes: generated task data, the tiny pre-trained encoder
        overrides = [
            *FEW_STEPS,
            "dataset=tasks",
            *task_overrides(cfg, tmp_path / "data"),
            f"encoder.checkpoint={pretrained}",
        ]
        cfg = make_config(f"+experiment={experiment}", *overrides)
    assert cfg.name == experiment  # its runs land in experiments/<recipe>/, named after the file
    if cfg.stage._target_ == "m3bert.training.probing.run":
        cfg = make_config(
            f"+experiment={experiment}",
            *overrides,
            "probe.epochs=2",
            "probe.learning_rates=[1e-3]",
            "probe.progress=false",
        )
        summary = run(cfg, tmp_path / "run")
        assert {row["layer"] for row in summary["probes"]} == {0, 1, 2, "weighted_sum"}  # tiny model: 2 layers
        assert (tmp_path / "run" / "probe_results.md").exists()
        return
    summary = run(cfg, tmp_path / "run")
    assert summary["steps"] == 3
    assert summary["final"]["train/loss"] > 0 and cfg.trainer.monitor in summary["best"]
    assert (tmp_path / "run" / "checkpoints" / "step_0000003.pt").exists()


def test_experiments_keep_their_recipe():
    cfg = make_config("+experiment=pretrain_msd")
    assert (cfg.model.num_layers, cfg.model.hidden_size, cfg.model.num_heads, cfg.model.ffn_size) == (12, 768, 12, 3072)
    assert cfg.masking.frames is not None and cfg.masking.channels is not None  # CFM + CCM
    assert cfg.dataset.train.manifest.endswith("msd/train.csv")
    assert cfg.model.input_dim == 324
    assert cfg.features.normalization == "per_file"  # the paper's CMVN stays its recipe


def test_demo_recipes_use_the_measured_defaults():
    # README "What moves the representations": dataset statistics and max pooling measured best on the demo.
    pretrain = make_config("+experiment=pretrain_demo")
    finetune = make_config("+experiment=finetune_demo")
    assert pretrain.features.normalization == finetune.features.normalization == "dataset"
    assert pretrain.dataset.train.normalization == "dataset" and finetune.dataset.train.normalization == "dataset"
    assert finetune.objective.pooling == "max"


@pytest.mark.parametrize(
    "override",
    ["trainer.max_steps=abc", "trainer.max_step=5", "model.hidden=5", "model.num_layers=1.5", "masking=cfmm"],
)
def test_bad_overrides_fail_at_compose_time(override):
    with pytest.raises(ConfigCompositionException):
        make_config(override)


def test_manifest_dataset_requires_a_root():
    cfg = make_config()
    with pytest.raises(MissingMandatoryValue, match="root"):
        OmegaConf.to_container(cfg.dataset, resolve=True, throw_on_missing=True)


def test_data_root_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("M3BERT_DATA", "/somewhere/features")
    cfg = make_config("dataset=fma")
    assert cfg.dataset.train.manifest == "/somewhere/features/fma/train.csv"


def test_wandb_is_offline_by_default(monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    assert make_config("logger=wandb").logger.mode == "offline"


@pytest.mark.parametrize("masking", sorted(p.stem for p in (CONF / "masking").glob("*.yaml")))
def test_every_masking_option_builds(masking):
    from hydra.utils import instantiate

    cfg = make_config(f"masking={masking}")
    sized = cfg.masking.ratio is not None  # frame spans or patches; channel bands and no masking have no ratio
    cfg = make_config(f"masking={masking}", *(["masking.ratio=0.2"] if sized else []))
    masker = instantiate(cfg.masking)
    assert masker.enabled == (masking != "none")
    assert sized == (masking in ("cfm", "cfm_ccm", "patch"))


def test_run_folder_names_are_one_safe_path_component():
    from m3bert.training.records import run_folder_name

    assert run_folder_name("masking.ratio=0.1") == "masking.ratio=0.1"
    assert "/" not in run_folder_name("encoder.checkpoint=/runs/a/b")
    long_a, long_b = run_folder_name("x=" + "a" * 300), run_folder_name("x=" + "a" * 299 + "b")
    assert len(long_a) <= 180 and long_a != long_b


def test_masking_in_seconds_follows_the_feature_sets_hop():
    from hydra.utils import instantiate

    spans = ["masking=cfm", "masking.frames.span_seconds=[0.1,0.3]"]
    assert (instantiate(make_config(*spans).masking).frames.min_span) == round(0.1 * 44100 / 1024)  # 4
    finer = instantiate(make_config(*spans, "features.hop_length=512").masking).frames
    assert (finer.min_span, finer.max_span) == (round(0.1 * 44100 / 512), round(0.3 * 44100 / 512))  # 9, 26


def test_a_masking_ratio_that_channel_masking_would_ignore_is_refused_at_compose_time():
    from m3bert.common.errors import ConfigError
    from m3bert.training.schemas import check_train_config

    with pytest.raises(ConfigError, match="masking.ratio=0.3: this masking has no frame spans"):
        check_train_config(make_config("masking=ccm", "masking.ratio=0.3"))


def test_objective_recipes_are_pretrain_demo_with_another_objective_and_masking():
    base = make_config("+experiment=pretrain_demo")
    assert base.objective._target_ == make_config("+experiment=pretrain_msd").objective._target_
    assert base.objective._target_ == "m3bert.objectives.MaskedReconstruction"  # the paper's objective stays
    targets = {"bestrq": "BestRQ", "multi_target": "MultiTarget", "contrastive": "ClipContrastive"}
    for name, target in targets.items():
        cfg = make_config(f"+experiment=pretrain_demo_{name}")
        assert cfg.objective._target_ == f"m3bert.objectives.{target}"
        for group in ("model", "dataset", "trainer", "optimizer", "scheduler", "features"):
            assert cfg[group] == base[group], (name, group)
        assert cfg.masking.ratio == 0.5 and list(cfg.masking.frames.span_seconds) == [0.1, 0.4]
