import json

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import write_manifest
from torch.utils.data import DataLoader

from m3bert.data import EpochSampler, ManifestDataset, ManifestError, RandomFeatureDataset, collate


def test_manifest_reads_crops_and_pads(tmp_path):
    manifest = write_manifest(tmp_path, [30, 12, 50], dim=8, genre=["rock", "jazz", "pop"])
    data = ManifestDataset(str(manifest), feature_dim=8, max_frames=20, crop="start")
    assert len(data) == 3 and data.table["genre"].tolist() == ["rock", "jazz", "pop"]
    clip = data[0]
    full = np.load(tmp_path / "features/train_0.npy")
    assert torch.equal(clip.features, torch.from_numpy(full[:20]))
    batch = collate([data[1], data[2]])
    assert batch.features.shape == (2, 20, 8) and batch.lengths.tolist() == [12, 20]
    assert batch.features[0, 12:].abs().sum() == 0


def test_random_crops_are_keyed_and_in_bounds(tmp_path):
    manifest = write_manifest(tmp_path, [100], dim=4)
    data = ManifestDataset(str(manifest), feature_dim=4, max_frames=10)
    full = torch.from_numpy(np.load(tmp_path / "features/train_0.npy"))
    starts = set()
    for epoch in range(30):
        crop = data[(0, 0, epoch)].features
        assert crop.shape == (10, 4)
        start = int((full[:, 0] == crop[0, 0]).nonzero()[0])
        assert torch.equal(crop, full[start : start + 10])
        starts.add(start)
    assert len(starts) > 10
    assert torch.equal(data[(0, 0, 3)].features, data[(0, 0, 3)].features)


@pytest.mark.parametrize(
    "problem, match",
    [
        ("missing_column", "missing column"),
        ("missing_file", "feature file is missing"),
        ("wrong_dim", r"shape \(5, 3\), expected \(frames, 8\)"),
        ("not_npy", "not a readable .npy"),
        ("bad_length", "row 3 has length"),
        ("no_csv", "manifest not found"),
    ],
)
def test_bad_manifests_name_file_row_and_problem(tmp_path, problem, match):
    manifest = write_manifest(tmp_path, [5, 6], dim=8)
    table = pd.read_csv(manifest)
    if problem == "missing_column":
        table.drop(columns="length").to_csv(manifest, index=False)
    elif problem == "missing_file":
        (tmp_path / table.file_path[1]).unlink()
    elif problem == "wrong_dim":
        np.save(tmp_path / table.file_path[1], np.zeros((5, 3), np.float32))
    elif problem == "not_npy":
        (tmp_path / table.file_path[1]).write_bytes(b"not an array")
    elif problem == "bad_length":
        table["length"] = table["length"].astype(object)
        table.loc[1, "length"] = "ten"
        table.to_csv(manifest, index=False)
    elif problem == "no_csv":
        manifest = tmp_path / "nowhere.csv"
    with pytest.raises(ManifestError, match=match) as err:
        ManifestDataset(str(manifest), feature_dim=8)
    if problem in ("missing_file", "wrong_dim", "not_npy"):
        assert "row 3" in str(err.value) and table.file_path[1] in str(err.value)


@pytest.mark.parametrize(
    "problem, match",
    [
        ("zero_frames", "has no frames"),
        ("length_disagrees", "has 6 frames but the manifest's length says 9"),
        ("nan", "NaN or inf"),
        ("inf", "NaN or inf"),
        ("float64", "dtype float64, expected float32 or float16"),
    ],
)
def test_prepared_data_is_checked_up_front_naming_row_and_file(tmp_path, problem, match):
    manifest = write_manifest(tmp_path, [5, 6, 7], dim=8)
    table = pd.read_csv(manifest)
    bad = tmp_path / table.file_path[1]
    if problem == "zero_frames":  # issue 12, cause 8: a (0, dim) file whose row says 200 frames
        np.save(bad, np.zeros((0, 8), np.float32))
        table.loc[1, "length"] = 200
        table.to_csv(manifest, index=False)
    elif problem == "length_disagrees":
        table.loc[1, "length"] = 9
        table.to_csv(manifest, index=False)
    elif problem in ("nan", "inf"):
        values = np.ones((6, 8), np.float32)
        values[4, 2] = np.nan if problem == "nan" else -np.inf
        np.save(bad, values)
    elif problem == "float64":
        np.save(bad, np.ones((6, 8)))
    with pytest.raises(ManifestError, match=match) as err:
        ManifestDataset(str(manifest), feature_dim=8)
    assert f"row 3 of {manifest}" in str(err.value) and str(bad) in str(err.value)
    assert not (tmp_path / "validated.json").exists()  # a failed pass is not remembered


def test_validation_is_stored_and_trusted_until_the_manifest_changes(tmp_path, monkeypatch):
    import m3bert.data.manifest as manifest_module

    manifest = write_manifest(tmp_path, [5, 6, 7], dim=8)
    ManifestDataset(str(manifest), feature_dim=8)
    record = json.loads((tmp_path / "validated.json").read_text())
    assert record["manifests"]["train.csv"]["clips"] == 3 and record["manifests"]["train.csv"]["nan_scan"]

    opened = []
    real_open = manifest_module.read_header
    monkeypatch.setattr(manifest_module, "read_header", lambda *a: opened.append(a) or real_open(*a))
    data = ManifestDataset(str(manifest), feature_dim=8)  # trusted: start-up opens no feature file
    assert opened == []
    data[0]
    assert len(opened) == 1

    # A file broken after validation still fails clearly when it is read.
    values = np.ones((6, 8), np.float32)
    values[0, 0] = np.inf
    np.save(tmp_path / "features/train_1.npy", values)
    with pytest.raises(ManifestError, match="row 3 .*NaN or inf"):
        data[1]
    np.save(tmp_path / "features/train_2.npy", np.ones((4, 8), np.float32))
    with pytest.raises(ManifestError, match="has 4 frames but the manifest's length says 7"):
        data[2]

    # Another feature width, or an edited manifest, is a different key: validated again (and found bad here).
    opened.clear()
    with pytest.raises(ManifestError, match="expected \\(frames, 4\\)"):
        ManifestDataset(str(manifest), feature_dim=4)
    table = pd.read_csv(manifest)
    table.loc[0, "length"] = 4
    table.to_csv(manifest, index=False)
    with pytest.raises(ManifestError, match="has 5 frames but the manifest's length says 4"):
        ManifestDataset(str(manifest), feature_dim=8)


def test_float16_files_read_as_float32(tmp_path):
    manifest = write_manifest(tmp_path, [12], dim=4)
    full = np.load(tmp_path / "features/train_0.npy")
    np.save(tmp_path / "features/train_0.npy", full.astype(np.float16))
    clip = ManifestDataset(str(manifest), feature_dim=4, crop="start")[0].features
    assert clip.dtype == torch.float32
    assert torch.equal(clip, torch.from_numpy(full.astype(np.float16).astype(np.float32)))


def test_sampler_shards_global_batches_and_resumes():
    one = list(EpochSampler(20, batch_size=4, seed=3))
    ranks = [list(EpochSampler(20, batch_size=2, world_size=2, rank=r, seed=3)) for r in range(2)]
    # Global batch b of one process = rank 0's then rank 1's share of batch b.
    for b in range(5):
        assert one[4 * b : 4 * b + 4] == ranks[0][2 * b : 2 * b + 2] + ranks[1][2 * b : 2 * b + 2]
    resumed = EpochSampler(20, batch_size=4, seed=3)
    resumed.set_position(0, 2)
    assert list(resumed) == one[8:]
    resumed.set_position(1, 0)
    assert [k[0] for k in resumed] != [k[0] for k in one]  # a new epoch, a new order
    with pytest.raises(ValueError, match="fewer than one global batch"):
        EpochSampler(3, batch_size=4)


def test_random_dataset_is_deterministic_and_loads_in_workers():
    data = RandomFeatureDataset(8, feature_dim=5, min_frames=10, max_frames=20, seed=0)
    assert torch.equal(data[3].features, data[3].features)
    assert 10 <= data[3].features.shape[0] <= 20
    batches = list(DataLoader(data, batch_size=4, collate_fn=collate, num_workers=2))
    assert torch.equal(batches[0].features[1, : batches[0].lengths[1]], data[1].features)


def test_sources_dataset_concatenates_folders_with_per_source_weights(tmp_path):
    from m3bert.data import SourcesDataset

    for name, clips in (("a", 2), ("b", 6)):
        for split in ("train", "valid"):
            write_manifest(tmp_path / name, [20] * clips, dim=8, name=f"{split}.csv")
    sources = {"a": {"root": str(tmp_path / "a"), "weight": 3.0}, "b": {"root": str(tmp_path / "b"), "weight": 1.0}}
    data = SourcesDataset(sources, "train", feature_dim=8)
    assert len(data) == 8 and data.locate(3) == (1, 1) and data[(7, 0, 0)].index == 7
    weights = data.sampling_weights
    assert weights[:2].sum().item() == pytest.approx(0.75) and weights[2:].sum().item() == pytest.approx(0.25)
    unweighted = {name: {"root": spec["root"], "weight": None} for name, spec in sources.items()}
    assert SourcesDataset(unweighted, "valid", feature_dim=8).sampling_weights is None
    with pytest.raises(ValueError, match=r"\['b'\] have no weight"):
        SourcesDataset({**sources, "b": {"root": sources["b"]["root"]}}, "train", feature_dim=8)


def test_paper_pretraining_reads_four_corpora(config):
    cfg = config("+experiment=pretrain_paper")
    assert list(cfg.dataset.sources) == ["msd", "music4all", "mtg_jamendo", "fma"]
    assert cfg.dataset.train._target_ == "m3bert.data.SourcesDataset" and cfg.model.num_layers == 12
