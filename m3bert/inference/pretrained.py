"""Trained encoders as folders that load with one call: ``config.json`` + ``model.safetensors``.

    save_pretrained(encoder, "my-model", feature_set="m3bert324")   # writes my-model/config.json + weights
    encoder = from_pretrained("my-model")                           # or a pre-training run folder (best checkpoint)
    model = load_pretrained("my-model")                             # encoder + the front end it expects

``config.json`` records the architecture (``M3BERTConfig``), the front end the encoder was trained on (feature set,
sample rate in Hz, hop in samples, and its input normalisation: ``per_file``, or ``dataset`` with the per-channel
statistics it was pre-trained with), the pre-training crop length in frames (the natural window for long inputs) and
the m3bert version that wrote it. Weights are safetensors: no pickle, so loading a downloaded model runs no code.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from m3bert.common import checkpoints
from m3bert.common.checkpoints import find_checkpoint, named  # noqa: F401  (find_checkpoint: its old import path)
from m3bert.common.files import write_bytes, write_json
from m3bert.common.version import package_version
from m3bert.features import FEATURE_SETS, Normalization, SpectralConfig, build_feature_extractor
from m3bert.features.extractor import FeatureExtractor
from m3bert.models.encoder import M3BERT, M3BERTConfig

FORMAT = "m3bert-encoder"
# Raise when config.json changes incompatibly; older readers then refuse newer folders. A folder gets the lowest
# version that describes it: 2 added features.normalization, so per-file-normalised models are still written as 1.
FORMAT_VERSION = 2
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


@dataclass(frozen=True)
class FrontEnd:
    """The features an encoder reads: feature set name, input sample rate (Hz), frame hop (samples) and the
    normalisation that turns per-file-normalised features into its input."""

    feature_set: str
    sample_rate: int = SpectralConfig.sample_rate
    hop_length: int = SpectralConfig.hop_length
    normalization: Normalization = field(default_factory=Normalization)

    def __post_init__(self) -> None:
        if self.feature_set not in FEATURE_SETS:
            raise ValueError(f"unknown feature set {self.feature_set!r}; known: {sorted(FEATURE_SETS)}")
        if self.sample_rate <= 0 or self.hop_length <= 0:
            raise ValueError(f"sample_rate and hop_length must be positive, got {self.sample_rate}, {self.hop_length}")
        self.normalization.check_dim(self.feature_dim, f"front end {self.feature_set}")

    def describe(self) -> str:
        return f"{self.feature_set} ({self.sample_rate} Hz, hop {self.hop_length})"

    def same_features(self, other: FrontEnd) -> bool:
        """Whether ``other`` computes the same features (normalisation aside)."""
        return (self.feature_set, self.sample_rate, self.hop_length) == (
            other.feature_set,
            other.sample_rate,
            other.hop_length,
        )

    @property
    def feature_dim(self) -> int:
        return feature_dim(self.feature_set)

    @property
    def frame_rate(self) -> float:
        """Frames per second."""
        return self.sample_rate / self.hop_length

    def build(self, normalize: bool = True) -> FeatureExtractor:
        return build_feature_extractor(
            self.feature_set, self.sample_rate, normalize=normalize, hop_length=self.hop_length
        )

    def to_dict(self) -> dict[str, Any]:
        # Derived values are written too, for people reading the file; loading ignores them.
        return {
            "feature_set": self.feature_set,
            "sample_rate": self.sample_rate,
            "hop_length": self.hop_length,
            "normalization": self.normalization.to_dict(),
            "feature_dim": self.feature_dim,
            "frame_rate": self.frame_rate,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FrontEnd:
        """From :meth:`to_dict`'s output; one without ``normalization`` (format 1) was normalised per file."""
        known = {f.name: data[f.name] for f in fields(cls) if f.name in data and f.name != "normalization"}
        return cls(**known, normalization=Normalization.from_dict(data.get("normalization")))


@dataclass
class Pretrained:
    """What :func:`load_pretrained` returns."""

    encoder: M3BERT  # in eval mode, on the CPU unless map_location said otherwise
    front_end: FrontEnd
    training_frames: int | None  # frames per pre-training crop; None where the source does not record it
    source: Path  # the folder or checkpoint file it was read from


def feature_dim(feature_set: str) -> int:
    """Columns of a registered feature set, without building its filterbanks."""
    if feature_set not in FEATURE_SETS:
        raise ValueError(f"unknown feature set {feature_set!r}; known: {sorted(FEATURE_SETS)}")
    return next(reversed(FEATURE_SETS[feature_set].blocks.values())).stop


def infer_feature_set(input_dim: int, where: str) -> str:
    """The one registered feature set with ``input_dim`` columns; an error when none or several match."""
    matches = [name for name in FEATURE_SETS if feature_dim(name) == input_dim]
    if len(matches) != 1:
        found = f"candidates: {', '.join(matches)}" if matches else "no registered feature set has that size"
        raise ValueError(
            f"{where}: cannot tell which features a {input_dim}-dim encoder reads ({found}); name them "
            "(feature_set=... / features=...)"
        )
    return matches[0]


def _check_fits(encoder: M3BERT, front_end: FrontEnd, where: str) -> None:
    if front_end.feature_dim != encoder.config.input_dim:
        raise ValueError(
            f"{where}: feature-set mismatch: {front_end.feature_set} gives {front_end.feature_dim} "
            f"channels per frame but the encoder takes {encoder.config.input_dim}"
        )


def save_pretrained(
    encoder: M3BERT,
    folder: str | Path,
    feature_set: str | None = None,
    sample_rate: int = SpectralConfig.sample_rate,
    hop_length: int = SpectralConfig.hop_length,
    training_frames: int | None = None,
    source: str | None = None,
    normalization: Normalization | None = None,
) -> Path:
    """Write ``encoder`` as ``folder/config.json`` + ``folder/model.safetensors`` (each atomically).

    Args:
        feature_set: the features the encoder was trained on; None infers it from ``input_dim`` (324: m3bert324,
            128: logmel128). sample_rate: Hz. hop_length: samples per frame.
        training_frames: frames per pre-training crop, used as the default window for long inputs.
        source: where the weights came from (recorded for provenance only).
        normalization: the input normalisation the encoder was trained with (None: per file, the paper's).
    Returns:
        the folder.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"{folder}: exists and is not a folder; choose another output folder")
    front_end = FrontEnd(
        feature_set or infer_feature_set(encoder.config.input_dim, str(folder)),
        sample_rate,
        hop_length,
        normalization or Normalization(),
    )
    _check_fits(encoder, front_end, str(folder))
    from safetensors.torch import save as safetensors_bytes

    state = {name: tensor.detach().cpu().contiguous() for name, tensor in encoder.state_dict().items()}
    blob = safetensors_bytes(state, metadata={"format": "pt", "m3bert": FORMAT})
    # Weights first, config last: a folder with a config.json always holds the weights that go with it.
    write_bytes(blob, folder / WEIGHTS_FILE)
    config = {
        "format": FORMAT,
        "format_version": 1 if front_end.normalization.kind == "per_file" else FORMAT_VERSION,
        "m3bert_version": package_version(),
        "architecture": encoder.config.to_dict(),
        "features": front_end.to_dict(),
        "training_frames": training_frames,
        "source": source,
    }
    write_json(config, folder / CONFIG_FILE)
    return folder


def load_pretrained(
    path: str | Path,
    features: str | FrontEnd | None = None,
    map_location: str | torch.device = "cpu",
    key: str | None = None,
) -> Pretrained:
    """Load an exported model folder, or the best (else latest) checkpoint of a pre-training run: the one door to
    a trained encoder, used by fine-tuning, probing, analysis, extraction and HEAR alike.

    Args:
        path: a folder written by :func:`save_pretrained` / ``python -m m3bert.export``, a pre-training run folder
            (``checkpoints/best.pt`` or ``checkpoints/step_*.pt``) or a checkpoint file.
        features: the feature set (name, or a full :class:`FrontEnd`) the caller expects. Where the source records
            its own, a difference is an error; a run that records none takes this one (else the one feature set
            whose size matches the encoder's input).
        key: the config key ``path`` came from (``encoder.checkpoint``), named in errors.
    Raises:
        FileNotFoundError: ``path`` does not exist, or a folder lacks its weights.
        ValueError: ``path`` is not an m3bert model, its files are corrupt, or the feature sets don't agree.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{named(path, key)}: no such model folder or checkpoint")
    if (path / CONFIG_FILE).is_file():
        loaded = _load_folder(path, map_location)
    elif checkpoints.is_run(path):
        loaded = _load_run(path, features, map_location, key)
    else:
        raise ValueError(
            f"{named(path, key)}: not an m3bert model: expected an exported folder ({CONFIG_FILE} + {WEIGHTS_FILE}, "
            "written by `python -m m3bert.export` or save_pretrained) or a pre-training run folder "
            "(checkpoints/best.pt or checkpoints/step_*.pt)"
        )
    _check_expected(loaded.front_end, features, str(loaded.source))
    _check_fits(loaded.encoder, loaded.front_end, str(loaded.source))
    loaded.encoder.eval()
    return loaded


def from_pretrained(
    path: str | Path, feature_set: str | None = None, map_location: str | torch.device = "cpu"
) -> M3BERT:
    """The encoder alone (in eval mode) of :func:`load_pretrained`; ``feature_set`` is checked if given."""
    return load_pretrained(path, feature_set, map_location).encoder


def _check_expected(front_end: FrontEnd, expected: str | FrontEnd | None, where: str) -> None:
    if expected is None:
        return
    # The features asked for are checked; the normalisation is the model's own, whatever the caller assumed.
    wanted = (
        expected if isinstance(expected, FrontEnd) else FrontEnd(expected, front_end.sample_rate, front_end.hop_length)
    )
    if not wanted.same_features(front_end):
        raise ValueError(
            f"{where}: feature-set mismatch: the model was trained on {front_end.describe()} but "
            f"{wanted.describe()} was asked for; use features that match the model"
        )


def _load_folder(folder: Path, map_location) -> Pretrained:
    config_file, weights_file = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    try:
        config = json.loads(config_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{config_file}: not valid JSON ({err}); re-export the model") from err
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise ValueError(
            f"{config_file}: not an m3bert model config (format is "
            f"{config.get('format') if isinstance(config, dict) else None!r}, expected {FORMAT!r})"
        )
    if config.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(
            f"{config_file}: written by a newer m3bert (format_version {config['format_version']} > "
            f"{FORMAT_VERSION}); upgrade m3bert to load it"
        )
    try:
        architecture = M3BERTConfig(**config["architecture"])
        front_end = FrontEnd.from_dict(config["features"])
    except (KeyError, TypeError) as err:
        raise ValueError(f"{config_file}: missing or unknown entries ({err}); re-export the model") from err
    if not weights_file.is_file():
        raise FileNotFoundError(f"{weights_file}: missing; the folder holds a config but no weights (re-export it)")
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(weights_file, device=str(map_location))
    except (SafetensorError, OSError) as err:
        raise ValueError(f"{weights_file}: unreadable weights ({err}); re-export the model") from err
    encoder = M3BERT(architecture)
    try:
        encoder.load_state_dict(state)
    except RuntimeError as err:
        raise ValueError(f"{weights_file}: weights don't match the architecture in {CONFIG_FILE} ({err})") from err
    return Pretrained(encoder.to(map_location), front_end, config.get("training_frames"), folder)


def _load_run(path: Path, features: str | FrontEnd | None, map_location, key: str | None) -> Pretrained:
    file, state = checkpoints.load_encoder_checkpoint(path, key)
    try:
        encoder = M3BERT(M3BERTConfig(**checkpoints.encoder_config(state)))
    except (TypeError, ValueError) as err:
        raise ValueError(f"{file}: the architecture it records is not valid ({err})") from err
    try:
        encoder.load_state_dict(checkpoints.encoder_state(state))
    except RuntimeError as err:
        raise ValueError(f"{file}: encoder weights don't match the architecture recorded with them ({err})") from err
    # The statistics the run's training clips were normalised with (checkpoints from before: per file).
    normalization = Normalization.from_dict(checkpoints.recorded_normalization(state))
    recorded = checkpoints.recorded_front_end(state)
    if recorded:
        front_end = FrontEnd(**recorded, normalization=normalization)
    elif isinstance(features, FrontEnd):
        front_end = FrontEnd(features.feature_set, features.sample_rate, features.hop_length, normalization)
    else:
        name = features or infer_feature_set(encoder.config.input_dim, str(file))
        front_end = FrontEnd(name, normalization=normalization)
    return Pretrained(encoder.to(map_location), front_end, checkpoints.training_frames(state), file)


def fingerprint(encoder: M3BERT) -> str:
    """sha256 of the architecture and every weight: tells whether two encoders compute the same thing."""
    digest = hashlib.sha256(json.dumps(encoder.config.to_dict(), sort_keys=True).encode())
    for name, tensor in sorted(encoder.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
