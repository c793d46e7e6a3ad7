"""Derive the study's folders from an earlier `make real-music` (probe + pretrain prepared folders): the soundtracks
megaglest and naev move from the probe set into the pre-training corpus, as `make real-music
PRETRAIN=megaglest-data,naev-data` would put them, without extracting the features again."""

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from m3bert.common import prepared
from m3bert.features.normalize import dataset_statistics

src, out = Path(sys.argv[1]), Path(sys.argv[2])
MOVE = {"megaglest", "naev"}


def absolute(table, folder):
    return table.assign(file_path=[str((folder / p).resolve()) for p in table["file_path"]])


probe = absolute(pd.read_csv(src / "probe" / prepared.MANIFEST), src / "probe")
pre = absolute(pd.read_csv(src / "pretrain" / prepared.MANIFEST), src / "pretrain")
moved = probe[probe["soundtrack"].isin(MOVE)]
folders = {"probe": probe[~probe["soundtrack"].isin(MOVE)], "pretrain": pd.concat([pre, moved], ignore_index=True)}
for name, table in folders.items():
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    table.to_csv(folder / prepared.MANIFEST, index=False)
    for split in prepared.SPLITS:
        table[table["split"] == split].to_csv(prepared.split_manifest(folder, split), index=False)
    train = table[table["split"] == "train"]
    stats = np.stack([np.load(prepared.stats_path(p)) for p in train["file_path"]])
    mean, std = dataset_statistics(stats, train["length"].to_numpy())
    np.savez(folder / prepared.NORMALIZATION, mean=mean.astype(np.float32), std=std.astype(np.float32))
    hours = table["duration_s"].sum() / 3600
    print(name, len(table), "clips", f"{hours:.2f} h", table.groupby("soundtrack").size().to_dict())
