import json

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import TINY, make_config, write_manifest
from test_trainer import losses

from m3bert.data import ManifestDataset, ManifestError
from m3bert.data.packing import pack
from m3bert.train import run
from m3bert.training.trainer import Trainer


def prepared_folder(root, dim=324):
    """A per-file folder like prepare's: train.csv, valid.csv and manifest.csv (their union)."""
    rng = np.random.default_rng(0)
    write_manifest(root, rng.integers(70, 100, 24).tolist(), dim=dim, name="train.csv")
    write_manifest(root, rng.integers(70, 100, 8).tolist(), dim=dim, name="valid.csv", seed=1)
    pd.concat([pd.read_csv(root / "train.csv"), pd.read_csv(root / "valid.csv")]).to_csv(
        root / "manifest.csv", index=False
    )
    return root


def test_packed_shards_give_the_same_clips_through_the_same_dataset(tmp_path):
    files = prepared_folder(tmp_path / "files", dim=8)
    summary = pack(files, tmp_path / "packed", feature_dim=8, shard_mb=0.01)  # ~10 kB: several shards
    assert summary["clips"] == 32 and summary["shards"] > 2
    packed_table = pd.read_csv(tmp_path / "packed/train.csv")
    assert packed_table["file_path"].str.startswith("shards/").all() and "offset" in packed_table
    assert json.loads((tmp_path / "packed/validated.json").read_text())["manifests"]["train.csv"]["by"] == "pack"
    for split in ("train", "valid"):
        a = ManifestDataset(str(files / f"{split}.csv"), 8, max_frames=32)
        b = ManifestDataset(str(tmp_path / f"packed/{split}.csv"), 8, max_frames=32)
        assert len(a) == len(b)
        for row in range(len(a)):
            for key in (row, (row, 0, 1), (row, 3, 7)):
                assert torch.equal(a[key].features, b[key].features)
    # A row pointing past its shard fails clearly when read, and up front once the manifest changes.
    packed_table.loc[2, "offset"] = 10**6
    packed_table.to_csv(tmp_path / "packed/train.csv", index=False)
    with pytest.raises(ManifestError, match="row 4 .*run past the shard"):
        ManifestDataset(str(tmp_path / "packed/train.csv"), 8)


def test_pack_refuses_bad_clips_naming_the_file(tmp_path):
    files = prepared_folder(tmp_path / "files", dim=8)
    values = np.load(files / "features/valid_3.npy")
    values[0, 0] = np.nan
    np.save(files / "features/valid_3.npy", values)
    with pytest.raises(ManifestError, match="valid_3.npy \\(row 29 .*NaN or inf"):
        pack(files, tmp_path / "packed", feature_dim=8)


def test_training_on_packed_data_resumes_mid_epoch_exactly_as_on_files(tmp_path, monkeypatch):
    files = prepared_folder(tmp_path / "files")
    pack(files, tmp_path / "packed", feature_dim=324, shard_mb=0.05)
    common = [
        *TINY,
        "dataset=manifest",
        "dataset.max_frames=64",
        "trainer.batch_size=4",  # 24 clips: 6 steps an epoch, so the crash at step 4 is mid-epoch
        "trainer.log_every=1",
        "trainer.image_every=0",
        "trainer.max_steps=8",
        "trainer.save_every=4",
        "trainer.val_every=100",
    ]
    run(make_config(*common, f"dataset.root={files}"), tmp_path / "straight")
    save = Trainer.save

    def save_then_crash(self):
        save(self)
        if self.step == 4:
            raise KeyboardInterrupt("simulated crash after the step-4 checkpoint")

    monkeypatch.setattr(Trainer, "save", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        run(make_config(*common, f"dataset.root={tmp_path / 'packed'}"), tmp_path / "crashed")
    monkeypatch.setattr(Trainer, "save", save)
    run(make_config(*common, f"dataset.root={tmp_path / 'packed'}"), tmp_path / "crashed")
    expected, got = losses(tmp_path / "straight"), losses(tmp_path / "crashed")
    assert sorted(got) == list(range(1, 9))
    assert [got[s] for s in range(1, 9)] == [expected[s] for s in range(1, 9)]


def test_a_packed_folder_carries_the_statistics_of_dataset_normalisation(tmp_path):
    from test_normalization import write_corpus

    write_corpus(tmp_path / "files", [30, 40, 50], level=2.0, seed=0)
    pd.concat([pd.read_csv(tmp_path / "files" / f"{s}.csv") for s in ("train", "valid")]).to_csv(
        tmp_path / "files" / "manifest.csv", index=False
    )
    pack(tmp_path / "files", tmp_path / "packed", feature_dim=8, shard_mb=0.001)
    assert (tmp_path / "packed" / "normalization.npz").read_bytes() == (
        tmp_path / "files" / "normalization.npz"
    ).read_bytes()
    for split in ("train", "valid"):
        a = ManifestDataset(str(tmp_path / f"files/{split}.csv"), 8, max_frames=16, normalization="dataset")
        b = ManifestDataset(str(tmp_path / f"packed/{split}.csv"), 8, max_frames=16, normalization="dataset")
        assert a.normalization == b.normalization
        for row in range(len(a)):
            assert torch.equal(a[(row, 0, 1)].features, b[(row, 0, 1)].features)


def test_a_packed_folder_without_statistics_says_how_to_get_them(tmp_path):
    files = prepared_folder(tmp_path / "files", dim=8)  # no clip statistics, as folders made before prepare wrote them
    pack(files, tmp_path / "packed", feature_dim=8)
    np.savez(tmp_path / "packed/normalization.npz", mean=np.zeros(8, np.float32), std=np.ones(8, np.float32))
    with pytest.raises(ManifestError, match="pack it again from a folder that python -m m3bert.prepare made"):
        ManifestDataset(str(tmp_path / "packed/train.csv"), 8, normalization="dataset")
