"""Input normalisation as a choice: per file (the paper's CMVN) or with training-split statistics, and the round trip
prepare -> pre-train -> export -> extract / HEAR / fine-tune applying identical encoder inputs everywhere."""

import json

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from conftest import CONF, TINY, make_config
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

import m3bert.hear as hear
from m3bert.common import checkpoints
from m3bert.data import ManifestDataset, ManifestError, stats_path
from m3bert.export import export
from m3bert.features import Normalization, build_feature_extractor, cmvn, cmvn_with_stats, load_audio
from m3bert.features.normalize import dataset_statistics
from m3bert.inference.pretrained import CONFIG_FILE, load_pretrained
from m3bert.inference.representations import Representations
from m3bert.prepare import prepare
from m3bert.train import run
from m3bert.training.trainer import Trainer

RATE = 22050


def test_cmvn_statistics_undo_the_normalisation_and_cmvn_is_unchanged():
    x = torch.randn(3, 50, 7) * 5 + 3
    x[:, :, 2] = -1131.0  # a constant channel (MFCC-0 of silence)
    lengths = torch.tensor([50, 30, 10])
    normalised, stats = cmvn_with_stats(x, lengths)
    assert torch.equal(normalised, cmvn(x, lengths))
    for row, n in enumerate(lengths.tolist()):
        torch.testing.assert_close(stats[row, 0], x[row, :n].mean(0), atol=1e-4, rtol=1e-5)
        spread = x[row, :n, [0, 1, 3]].std(0, unbiased=False)
        torch.testing.assert_close(stats[row, 1, [0, 1, 3]], spread, rtol=1e-4, atol=0)
        undone = normalised[row, :n] * stats[row, 1] + stats[row, 0]
        torch.testing.assert_close(undone, x[row, :n], atol=1e-3, rtol=1e-5)
    assert (normalised[:, :, 2] == 0).all()


def test_dataset_statistics_pool_clips_by_their_frames():
    rng = np.random.default_rng(0)
    clips = [rng.normal(loc=i, scale=1 + i, size=(n, 4)) for i, n in enumerate([10, 40, 25])]
    stats = np.stack(
        [cmvn_with_stats(torch.from_numpy(c)[None])[1][0].numpy() for c in clips]
    )  # float64 in, float64 statistics out
    mean, std = dataset_statistics(stats, np.array([len(c) for c in clips]))
    every = np.concatenate(clips)
    np.testing.assert_allclose(mean, every.mean(0), rtol=1e-10)
    np.testing.assert_allclose(std, every.std(0), rtol=1e-7)


def test_dataset_normalisation_of_per_file_features_is_the_raw_features_standardised():
    raw = torch.tensor([[1.0, 10.0], [3.0, 30.0], [5.0, 20.0]])
    per_file, stats = cmvn_with_stats(raw[None])
    norm = Normalization("dataset", (2.0, 20.0), (2.0, 5.0))
    expected = torch.tensor([[-0.5, -2.0], [0.5, 2.0], [1.5, 0.0]])
    torch.testing.assert_close(norm.apply(per_file[0], stats[0]), expected, atol=1e-6, rtol=0)
    x = per_file[0]
    assert Normalization().apply(x, None) is x
    assert Normalization.from_dict(norm.to_dict()) == norm and Normalization.from_dict(None) == Normalization()
    with pytest.raises(ValueError, match="features.normalization must be one of"):
        Normalization("global")
    with pytest.raises(ValueError, match="positive standard deviations"):
        Normalization("dataset", (0.0,), (0.0,))


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """Eight 3-s clips (two labelled kinds at different levels and pitches), prepared as logmel128 features."""
    root = tmp_path_factory.mktemp("norm")
    audio = root / "audio"
    for i in range(8):
        kind = ("loud", "soft")[i % 2]
        t = np.arange(int(3.0 * RATE)) / RATE
        noise = np.random.default_rng(i).standard_normal(len(t))
        wave = (0.5 if kind == "loud" else 0.05) * np.sin(2 * np.pi * 110 * (1 + i % 3) * t) + 0.01 * noise
        (audio / kind).mkdir(parents=True, exist_ok=True)
        sf.write(audio / kind / f"clip{i}.wav", wave.astype(np.float32), RATE)
    out = root / "prepared"
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            "prepare",
            overrides=[
                "dataset=folder",
                f"dataset.root={audio}",
                f"out={out}",
                "dataset.source.label_from_parent=genre",
                "features=logmel128",
                "dataset.feature_dim=128",
                "workers=0",
                "progress=false",
                "clip.seconds=3",
                "clip.min_seconds=2",
                "split.fractions=[0.5,0.25,0.25]",
            ],
        )
    summary = prepare(cfg)
    return root, audio, out, summary


def test_prepare_stores_per_file_features_clip_statistics_and_training_split_statistics(prepared):
    _, _, out, summary = prepared
    manifest = pd.read_csv(out / "manifest.csv")
    raw_extractor = build_feature_extractor("logmel128", normalize=False)
    train_raw = []
    for row in manifest.itertuples():
        stored, stats = np.load(out / row.file_path), np.load(stats_path(out / row.file_path))
        assert stats.shape == (2, 128)
        np.testing.assert_allclose(stored.mean(0), 0.0, atol=1e-4)  # still the paper's per-file CMVN
        if row.split == "train":
            train_raw.append(stored * stats[1] + stats[0])
    every = np.concatenate(train_raw)
    with np.load(out / "normalization.npz") as stored:
        np.testing.assert_allclose(stored["mean"], every.mean(0), atol=2e-3, rtol=1e-4)
        np.testing.assert_allclose(stored["std"], every.std(0), atol=2e-3, rtol=1e-3)
    assert summary["normalization"] == {
        "file": "normalization.npz",
        "split": "train",
        "clips": len(train_raw),
        "frames": len(every),
    }
    assert summary["stored_normalization"] == "per_file" and raw_extractor.feature_dim == 128


def test_a_folder_without_clip_statistics_fails_clearly_under_dataset_normalisation(prepared, tmp_path):
    _, _, out, _ = prepared
    manifest = pd.read_csv(out / "train.csv")
    first = manifest.iloc[0]
    (tmp_path / first.file_path).parent.mkdir(parents=True)
    (tmp_path / first.file_path).write_bytes((out / first.file_path).read_bytes())
    manifest.iloc[:1].to_csv(tmp_path / "train.csv", index=False)
    (tmp_path / "normalization.npz").write_bytes((out / "normalization.npz").read_bytes())
    with pytest.raises(ManifestError, match="no readable clip statistics.*rerun python -m m3bert.prepare"):
        ManifestDataset(str(tmp_path / "train.csv"), 128, normalization="dataset")
    assert len(ManifestDataset(str(tmp_path / "train.csv"), 128)) == 1  # per_file needs none


def test_dataset_normalisation_round_trips_through_pretraining_export_extraction_hear_and_finetuning(
    prepared, tmp_path
):
    root, audio, out, _ = prepared
    overrides = [
        *TINY,
        "dataset=manifest",
        f"dataset.root={out}",
        "features=logmel128",
        "features.normalization=dataset",
        "dataset.max_frames=64",
        "masking=cfm",
        "trainer.max_steps=2",
        "trainer.batch_size=2",
        "trainer.val_every=2",
        "trainer.save_every=2",
        "trainer.image_every=0",
    ]
    pretrain = tmp_path / "pretrain"
    run(make_config(*overrides), pretrain)
    expected = Normalization.from_folder(out)
    state = checkpoints.load(pretrain / "checkpoints" / "best.pt")
    assert Normalization.from_dict(state["normalization"]) == expected

    model = export(pretrain, tmp_path / "model")
    config = json.loads((model / CONFIG_FILE).read_text())
    assert config["format_version"] == 2 and config["features"]["normalization"]["kind"] == "dataset"
    assert load_pretrained(model).front_end.normalization == expected

    # What the pre-training data served for each clip (whole clips: no crop) ...
    manifest = pd.read_csv(out / "manifest.csv")
    served = ManifestDataset(str(out / "manifest.csv"), 128, normalization="dataset")
    # ... is what extraction and HEAR compute from the audio, and what fine-tuning reads.
    rep = Representations.from_pretrained(model)
    hear_model = hear.load_model(str(model))
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                *TINY,
                "+experiment=finetune_mtl",
                "tasks=[gtzan]",
                f"tasks.gtzan.root={out}",
                "features=logmel128",  # per_file here: the encoder's own choice must win
                f"encoder.checkpoint={model}",
            ],
        )
    cfg.trainer.max_steps, cfg.trainer.val_every, cfg.trainer.batch_size = 2, 2, 2
    trainer = Trainer(cfg, tmp_path / "finetune")  # the objective hands the encoder's normalisation to each split
    finetune = trainer.train_set
    assert finetune.normalization == expected
    assert trainer.val_set.normalization == expected and trainer.build_split("test").normalization == expected
    for row in range(len(manifest)):
        path = audio / (manifest.iloc[row].track_id + ".wav")
        reference = served[row].features
        torch.testing.assert_close(torch.from_numpy(rep.file_features(path)), reference, atol=1e-4, rtol=1e-5)
        wave = torch.from_numpy(load_audio(path, 44100))
        torch.testing.assert_close(hear_model.representations.features([wave])[0], reference, atol=1e-4, rtol=1e-5)
    train_rows = manifest.index[manifest.split == "train"]
    for i, row in enumerate(train_rows):
        torch.testing.assert_close(finetune.parts[0].features[i].features, served[row].features)
    # The model reads the features it was trained on: not the per-file-normalised ones.
    assert not torch.allclose(served[0].features, torch.from_numpy(np.load(out / manifest.file_path[0])), atol=0.1)
    # A fine-tuning run on top trains on those inputs (two steps) and records the encoder's normalisation.
    run(cfg, tmp_path / "finetune")
    state = checkpoints.load(tmp_path / "finetune" / "checkpoints" / "best.pt")
    assert Normalization.from_dict(state["normalization"]) == expected


def test_per_file_models_keep_format_1_and_folders_without_a_normalisation_load_as_per_file(pretrained, tmp_path):
    model = export(pretrained, tmp_path / "model")
    config = json.loads((model / CONFIG_FILE).read_text())
    assert config["format_version"] == 1 and config["features"]["normalization"] == {"kind": "per_file"}
    del config["features"]["normalization"]  # as written before normalisation was a choice
    (model / CONFIG_FILE).write_text(json.dumps(config))
    assert load_pretrained(model).front_end.normalization == Normalization()


def write_corpus(folder, lengths, level: float, seed: int, dim: int = 8):
    """A prepared folder of per-file features whose clips' unnormalised level is ``level`` (+ clip noise), with
    its clip statistics and its training split's normalization.npz as prepare writes them."""
    from conftest import write_manifest

    rng = np.random.default_rng(seed)
    stats = []
    for split in ("train", "valid"):
        manifest = write_manifest(folder, lengths, dim=dim, name=f"{split}.csv", seed=seed)
        for path in pd.read_csv(manifest)["file_path"]:
            clip = np.stack([level + rng.standard_normal(dim), 0.5 + rng.random(dim)]).astype(np.float32)
            np.save(stats_path(folder / path), clip)
            stats += [clip] if split == "train" else []
    mean, std = dataset_statistics(np.stack(stats), np.array(lengths))
    np.savez(folder / "normalization.npz", mean=mean.astype(np.float32), std=std.astype(np.float32))
    return np.stack(stats)


def test_several_corpora_share_one_pooled_normalisation(tmp_path):
    from m3bert.data import SourcesDataset

    a = write_corpus(tmp_path / "a", [20, 30], level=-3.0, seed=0)
    b = write_corpus(tmp_path / "b", [10, 10, 40], level=5.0, seed=1)
    sources = {"a": {"root": str(tmp_path / "a"), "weight": None}, "b": {"root": str(tmp_path / "b"), "weight": None}}
    data = SourcesDataset(sources, "train", feature_dim=8, normalization="dataset")
    # Unweighted: the statistics of all training frames together, as if one folder held both corpora.
    mean, std = dataset_statistics(np.concatenate([a, b]), np.array([20, 30, 10, 10, 40]))
    assert data.normalization.kind == "dataset"
    assert np.allclose(data.normalization.mean, mean, atol=1e-5) and np.allclose(data.normalization.std, std, atol=1e-5)
    assert all(part.normalization == data.normalization for part in data.parts)
    valid = SourcesDataset(sources, "valid", feature_dim=8, normalization="dataset")
    assert valid.normalization == data.normalization  # statistics of the training split serve every split
    # Weighted 1:3, the mixture's moments follow the draws, not the folder sizes.
    weighted = {name: {**spec, "weight": w} for (name, spec), w in zip(sources.items(), (1.0, 3.0))}
    pooled = SourcesDataset(weighted, "train", feature_dim=8, normalization="dataset").normalization
    na, nb = Normalization.from_folder(tmp_path / "a"), Normalization.from_folder(tmp_path / "b")
    expected = 0.25 * np.array(na.mean) + 0.75 * np.array(nb.mean)
    assert np.allclose(pooled.mean, expected, atol=1e-5)
    assert SourcesDataset(sources, "train", feature_dim=8).normalization.kind == "per_file"


def test_pretraining_on_several_corpora_records_the_pooled_normalisation(tmp_path):
    for name, level, seed in (("a", -1.0, 0), ("b", 2.0, 1)):
        write_corpus(tmp_path / name, [24, 24, 24], level=level, seed=seed, dim=324)
    cfg = make_config(
        *TINY,
        "dataset=sources",
        f"+dataset.sources={{a: {{root: {tmp_path / 'a'}, weight: 1}}, b: {{root: {tmp_path / 'b'}, weight: 2}}}}",
        "features.normalization=dataset",
        "trainer.max_steps=2",
        "trainer.batch_size=2",
        "dataset.max_frames=16",
    )
    run(cfg, tmp_path / "run")
    saved = checkpoints.load(tmp_path / "run" / "checkpoints" / "step_0000002.pt")["normalization"]
    data = instantiate(cfg.dataset.train)
    assert saved == data.normalization.to_dict() and saved["kind"] == "dataset" and len(saved["mean"]) == 324
