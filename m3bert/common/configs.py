"""Where the Hydra configs are, and how a composed config's values are checked against their valid ranges.

The configs are the top-level ``conf/`` of a source checkout (editable installs), else the copy that a wheel
carries as the package data ``m3bert/conf``, so ``python -m m3bert.train`` runs from any folder."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException


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


@dataclass(frozen=True)
class Rule:
    """The valid values of one config key: a number with ``low <= value`` (``<`` with ``low_open``) and
    ``value <= high``, or one of ``choices``; ``optional`` allows null (the key's "automatic" value)."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    choices: tuple = ()
    optional: bool = False

    def problem(self, value: Any) -> str | None:
        """What is wrong with ``value``, or None."""
        if value is None:
            return None if self.optional else "must be set"
        if self.choices:
            return None if value in self.choices else f"must be one of {', '.join(map(str, self.choices))}"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"must be a number {self.describe()}"
        too_low = self.low is not None and (value <= self.low if self.low_open else value < self.low)
        too_high = self.high is not None and value > self.high
        return f"must be {self.describe()}" if too_low or too_high else None

    def describe(self) -> str:
        if self.low is not None and self.high is not None:
            return f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}]"
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        return f"<= {self.high:g}"


def ranged(default: Any, **rule: Any) -> Any:
    """A dataclass field of a typed schema with its valid values (see :class:`Rule`), checked by
    :func:`check_config` through :func:`schema_rules`."""
    return field(default=default, metadata={"rule": Rule(**rule)})


def schema_rules(schema: type, prefix: str) -> dict[str, Rule]:
    """``{"<prefix>.<field>": Rule}`` of a schema dataclass's :func:`ranged` fields."""
    return {f"{prefix}.{f.name}": f.metadata["rule"] for f in fields(schema) if "rule" in f.metadata}


_ABSENT = object()


def check_config(cfg: DictConfig, rules: Mapping[str, Rule]) -> None:
    """Check every key of ``rules`` that ``cfg`` has (a key of an option not chosen is skipped).

    Raises:
        ConfigError: the first value out of its range, named as on the command line: ``trainer.batch_size=0: must
            be >= 1``.
    """
    from m3bert.common.errors import ConfigError

    for key, rule in rules.items():
        try:
            value = OmegaConf.select(cfg, key, default=_ABSENT, throw_on_missing=False)
        except OmegaConfBaseException:  # an interpolation that only resolves inside a run: checked there
            continue
        if value is _ABSENT:  # also a required key without a value: reported where it is read
            continue
        problem = rule.problem(value)
        if problem:
            raise ConfigError(f"{key}={value}: {problem}; set {key}= to such a value")


class ValidateConfig(Callback):
    """Hydra callback that checks the composed config before Hydra makes the run folder (``hydra.callbacks``
    in the primary config), so a value out of range leaves nothing behind. ``check`` is the dotted name of the
    entry point's ``check(cfg)`` function, which its Python API also calls first.

    Hydra has no hook between composing a sweep job's config and making its folder: a sweep's base config is
    checked before the first job, and a bad swept value when its job starts, whose new folder (holding only
    Hydra's own files) is then removed again.
    """

    def __init__(self, check: str):
        self.check = check

    def _check(self, config: DictConfig, job_folder: str | None = None) -> None:
        from hydra.utils import get_method

        from m3bert.common.errors import report, user_message

        try:
            get_method(self.check)(config)
        except Exception as err:  # noqa: BLE001
            # Hydra turns a callback's exception into a warning; what isn't bad input is left to the run's own
            # check, which raises it with its traceback.
            if user_message(err) is None:
                return
            if job_folder is not None:
                _remove_if_only_hydra_files(Path(job_folder), config.hydra.output_subdir)
            report(err)

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        from hydra.types import RunMode

        if config.hydra.mode == RunMode.MULTIRUN:
            self._check(config, job_folder=config.hydra.runtime.output_dir)


def _remove_if_only_hydra_files(folder: Path, output_subdir: str | None) -> None:
    """Delete a job folder that holds nothing but what Hydra wrote on starting the job (its output subfolder
    and the job's log file): a folder with anything else is an earlier run's and stays."""
    import shutil

    entries = list(folder.iterdir()) if folder.is_dir() else []
    if all(p.name == output_subdir or (p.is_file() and p.suffix == ".log") for p in entries):
        shutil.rmtree(folder, ignore_errors=True)
