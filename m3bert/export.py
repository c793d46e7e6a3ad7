"""Export a pre-training run as a model folder: ``python -m m3bert.export run=<run folder> out=<folder>``.

The folder (``config.json`` + ``model.safetensors``, see ``m3bert.inference.pretrained``) holds the encoder of
the run's best checkpoint (else its latest), the front end it was trained on and its pre-training crop length; it
loads with ``load_pretrained(out)`` or ``Representations.from_pretrained(out)``, fine-tunes and probes as
``encoder.checkpoint=out`` and feeds ``python -m m3bert.extract``.
Add ``features=<name>`` to state the feature set when the run doesn't record one (it is then checked against the
encoder's input size), or to check that it is the one you expect.
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig

from m3bert.common.configs import config_dir
from m3bert.common.errors import reports_errors
from m3bert.features import SpectralConfig
from m3bert.inference.pretrained import FrontEnd, load_pretrained, save_pretrained

log = logging.getLogger(__name__)


def front_end_of(features: DictConfig | None) -> FrontEnd | None:
    """The feature-group config (``conf/features/*.yaml``) as a FrontEnd; None when not chosen."""
    if features is None:
        return None
    return FrontEnd(
        features.name,
        int(features.get("sample_rate", SpectralConfig.sample_rate)),
        int(features.get("hop_length", SpectralConfig.hop_length)),
    )


def export(run: str | Path, out: str | Path, features: FrontEnd | str | None = None) -> Path:
    """Write the encoder of ``run`` to ``out``; returns ``out``."""
    loaded = load_pretrained(run, features)
    save_pretrained(
        loaded.encoder,
        out,
        loaded.front_end.feature_set,
        loaded.front_end.sample_rate,
        loaded.front_end.hop_length,
        training_frames=loaded.training_frames,
        source=str(Path(loaded.source).resolve()),
        normalization=loaded.front_end.normalization,
    )
    cfg = loaded.encoder.config
    log.info(
        "Exported %s -> %s: %d layers x %d hidden, %s features at %d Hz (normalised %s), training crop %s frames",
        loaded.source,
        out,
        cfg.num_layers,
        cfg.hidden_size,
        loaded.front_end.feature_set,
        loaded.front_end.sample_rate,
        loaded.front_end.normalization.kind,
        loaded.training_frames,
    )
    return Path(out)


@hydra.main(config_path=config_dir(), config_name="export", version_base="1.3")
@reports_errors
def main(cfg: DictConfig) -> None:
    export(cfg.run, cfg.out, front_end_of(cfg.get("features")))


if __name__ == "__main__":
    main()
