"""Errors that are the user's to fix, and the one way every entry point reports them.

Bad input (a wrong config value, a missing or corrupt file, a full disk) ends a command with one line on stderr that
names the file or the config key as written on the command line, the problem and the fix, and exit status 2; no
traceback unless ``M3BERT_DEBUG=1`` or ``HYDRA_FULL_ERROR=1`` asks for one. Anything else is a bug and keeps its
traceback. Entry points get this by decorating their ``main`` with :func:`reports_errors` (under ``hydra.main``:
Hydra would otherwise print the exception with a traceback of its own).
"""

from __future__ import annotations

import errno
import functools
import os
import re
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

DEBUG_ENV = "M3BERT_DEBUG"
EXIT_USER_ERROR = 2
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
WORKER_TRACEBACK = "Original Traceback (most recent call last)"  # torch.utils.data's re-raised worker errors


class UserError(Exception):
    """Bad input: the message names the file or config key, the problem and the fix."""


class ConfigError(UserError, ValueError):
    """A config value out of its range or not among its choices, named as on the command line
    (``trainer.batch_size``)."""


class DiskFullError(UserError):
    """No space left (or the quota reached) while writing ``path``; the earlier file at ``path`` is intact."""

    def __init__(self, path: str | os.PathLike | None):
        self.path = None if path is None else str(path)
        where = f"{self.path}: no space left on the device while writing it" if path else "no space left on the device"
        super().__init__(
            f"{where} (earlier outputs are intact); free some space or write to another folder, then rerun the "
            "same command"
        )


def is_disk_full(err: BaseException) -> bool:
    """Whether ``err`` means the disk is full: ENOSPC / EDQUOT, or NumPy's short-write error (its ``tofile``
    reports a full disk as "N requested and M written" without an errno)."""
    if isinstance(err, DiskFullError):
        return True
    if not isinstance(err, OSError):
        return False
    return err.errno in NO_SPACE or bool(re.search(r"\d+ requested and \d+ written", str(err)))


def debug_requested() -> bool:
    return any(os.environ.get(name, "") not in ("", "0") for name in (DEBUG_ENV, "HYDRA_FULL_ERROR"))


def user_message(err: BaseException) -> str | None:
    """The one-line report of ``err`` if it is bad input rather than a bug, else None."""
    from hydra.errors import InstantiationException
    from omegaconf.errors import MissingMandatoryValue

    if isinstance(err, InstantiationException) and err.__cause__ is not None:
        return user_message(err.__cause__)  # what the built object raised (instantiate wraps it)
    composition = composition_message(err)  # a config composed in code (demo, reproduce) from the user's overrides
    if composition is not None:
        return composition
    if isinstance(err, MissingMandatoryValue):
        key = err.full_key or "a required key"
        message = f"{key}: no value given; set {key}=... on the command line"
    elif is_disk_full(err):
        message = str(err) if isinstance(err, DiskFullError) else str(DiskFullError(getattr(err, "filename", None)))
    elif isinstance(err, (UserError, ValueError, FloatingPointError, FileNotFoundError, NotADirectoryError)):
        message = str(err)
    elif isinstance(err, (IsADirectoryError, PermissionError)):
        message = f"{err.filename}: {err.strerror}" if err.filename else str(err)
    else:
        return None
    if WORKER_TRACEBACK in message:
        # Re-raised from a DataLoader worker: the message carries the worker's traceback; its last line is the
        # original "ManifestError: <message>".
        last = message.strip().splitlines()[-1]
        message = last.split(": ", 1)[1] if ": " in last else last
    return " ".join(message.split()) or type(err).__name__


def report(err: BaseException, program: str | None = None) -> None:
    """Print the one-line report of ``err`` to stderr and exit with status 2; re-raise what isn't bad input (and
    everything when a traceback was asked for)."""
    message = user_message(err)
    if message is None or debug_requested():
        raise err
    sys.stderr.write(f"{program or _program()}: error: {message}\n")
    sys.stderr.flush()
    raise SystemExit(EXIT_USER_ERROR) from None


def _program() -> str:
    """``m3bert.train`` for ``python -m m3bert.train``; just ``m3bert`` in a process something else started
    (a sweep launcher's worker)."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    name = spec.name.removesuffix(".__main__") if spec is not None else ""
    return name if name.startswith("m3bert") else "m3bert"


# Hydra launcher options whose plugin is an optional extra of m3bert (pyproject.toml), by the option's name.
LAUNCHER_EXTRAS = {"joblib": "joblib", "submitit_local": "slurm", "submitit_slurm": "slurm"}


def composition_message(err: BaseException) -> str | None:
    """The one-line report of a Hydra composition error (a misspelt key, a value of the wrong type, an unknown
    option or recipe, an override that does not parse), or None for anything else."""
    from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException

    cause = err.__cause__
    reason = " ".join(str(cause).split("full_key:")[0].split()) if cause is not None else ""
    if isinstance(err, MissingConfigException):
        wanted = re.search(r"Could not find '([^']+)'", str(err))
        if wanted and "/" in wanted.group(1):
            group, option = wanted.group(1).rsplit("/", 1)
            plus = "+" if group == "experiment" else ""
            choices = ", ".join(err.options or ())
            extra = LAUNCHER_EXTRAS.get(option) if group == "hydra/launcher" else None
            if extra:  # an optional plugin, not installed
                return f"{group}={option}: Hydra's {option} launcher is not installed; pip install 'm3bert[{extra}]'"
            return f"{plus}{group}={option}: no such {group} config; choose one of {choices}"
        return " ".join(str(err).split("Available options")[0].split("Config search path")[0].split())
    if isinstance(err, OverrideParseException):
        first = str(err).splitlines()[0]
        return f"an override does not parse ({first}); write key=value, a list in quotes as 'key=[a,b]'"
    if isinstance(err, ConfigCompositionException):
        text = str(err).splitlines()[0]
        key = re.search(r"Could not override '([^']+)'", text)
        if key:
            name = key.group(1)
            message = f"{name}: no such config key ({reason}); check the spelling, or add a new key with +{name}=..."
            if re.search(rf"use \+{re.escape(name)}=\{{", str(err)):  # a mapping given for a mapping: merged, not set
                message += f"; to replace a whole mapping, write '~{name}' '+{name}={{...}}'"
            return message
        merging = re.search(r"Error merging override (\S+)", text)
        if merging:
            return f"{merging.group(1)}: {reason or 'the value does not fit the key'}; give a value of the key's type"
        return f"{text} {reason}".strip()
    return None


def _report_composition_errors() -> None:
    """Make Hydra's command-line front end report composition errors as one line with exit status 2, like every
    other bad input. Hydra prints them over several lines and exits 1 from ``hydra._internal.utils.run_and_report``
    (private, stable since Hydra 1.1); where that is missing, Hydra's own report stands."""
    try:
        from hydra._internal import utils as hydra_utils
    except ImportError:
        return
    original = getattr(hydra_utils, "run_and_report", None)
    if original is None or getattr(original, "m3bert_reports", False):
        return

    def run_and_report(func: Callable[[], Any]) -> Any:
        try:
            return func()
        except Exception as err:  # noqa: BLE001 (anything that is not a composition error goes to Hydra's report)
            message = None if debug_requested() else composition_message(err)
            if message is None:
                failure = err  # ``err`` is unbound once the except clause ends

                def again() -> Any:
                    raise failure

                return original(again)
            sys.stderr.write(f"{_program()}: error: {message}\n")
            sys.stderr.flush()
            raise SystemExit(EXIT_USER_ERROR) from None

    run_and_report.m3bert_reports = True
    hydra_utils.run_and_report = run_and_report


def reports_errors(main: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate an entry point's ``main`` so that bad input ends it as :func:`report` says. Under ``hydra.main``
    it goes below the Hydra decorator (SystemExit passes through Hydra's own error printing); composition errors,
    which Hydra raises before ``main`` runs, are reported the same way."""
    _report_composition_errors()
    program = main.__module__ if main.__module__ != "__main__" else None  # None: found when reporting

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except Exception as err:  # noqa: BLE001 (report() re-raises whatever is not bad input)
            if user_message(err) is not None and not debug_requested():
                _remove_stub_output()
            report(err, program)

    return wrapper


def _remove_stub_output() -> None:
    """After bad input, remove the output folder Hydra made for this command if it holds nothing but Hydra's
    own config copy and log (``out=...`` of prepare, extract, analyze), so that a failed command leaves no stub in
    the folder the user named. A folder with anything else in it, or the working directory, is left alone."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return
    hydra_cfg = HydraConfig.get()
    folder = Path(hydra_cfg.runtime.output_dir).resolve()
    own = {hydra_cfg.output_subdir, f"{hydra_cfg.job.name}.log"} - {None}
    if not folder.is_dir() or folder in (Path.cwd(), *Path.cwd().parents):
        return
    if {entry.name for entry in folder.iterdir()} <= own:
        shutil.rmtree(folder, ignore_errors=True)
