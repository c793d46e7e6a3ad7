"""Where the Hydra configs are: the top-level ``conf/`` of a source checkout (editable installs), else the copy
that a wheel carries as the package data ``m3bert/conf``, so ``python -m m3bert.train`` runs from any folder."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def config_dir() -> str:
    """Absolute path of the folder holding ``train.yaml`` and the config groups."""
    checkout = Path(__file__).resolve().parents[2] / "conf"
    if (checkout / "train.yaml").is_file():
        return str(checkout)
    installed = Path(str(resources.files("m3bert"))) / "conf"
    if (installed / "train.yaml").is_file():
        return str(installed)
    raise FileNotFoundError(
        f"m3bert's configs are missing: neither {checkout} nor {installed} holds train.yaml; reinstall m3bert"
    )
