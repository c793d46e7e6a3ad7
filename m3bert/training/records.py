"""Run records: what every run folder says about itself, so runs can be compared, resumed and told apart.

``run.json`` in a run folder (written atomically, rewritten as the run goes on)::

    {"status": "running" | "finished" | "failed" | "preempted",
     "stage": "pretrain" | "finetune" | "probe",
     "name": ..., "seed": ..., "overrides": [...],    # the command-line overrides that made the run
     "folder_key": "...",                             # the overrides the folder name stands for (collision check)
     "sweep": {"id", "job", "swept"} | null,          # the multirun it belongs to
     "config": {...},                                  # the resolved config
     "metrics": {"final", "best", "test"},             # from metrics.json once finished
     "wall_time_s", "git_commit", "started", "ended", "error",
     "environment": {"git_dirty", "torch", "python", "cpu", "threads",   # what produced the numbers (start)
                     "precision", "device"}}                          # as the trainer resolved them (finish)

A preempted run saved its state and is requeued (or waits for the same command). A run that was killed stays
``running`` forever: a reader cannot tell it from one still going, and says so.

Sweeps: :class:`SweepCallback` (a Hydra callback, see ``conf/train.yaml``) runs once per multirun before any job
and puts the sweep's identity into the environment (``M3BERT_SWEEP``), which every job, in-process or launched
elsewhere, inherits: its id (``<name>-<hash of the sweep's overrides>-<start time>``, unique per invocation, so
each invocation is one W&B group, while the job folders depend on the overrides alone and a rerun of the same
command skips or resumes its jobs) and the swept keys, which always go into the jobs' folder names and W&B tags.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import logging
import os
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from m3bert.common.files import write_json

log = logging.getLogger(__name__)

RECORD = "run.json"
WORK = ("log.jsonl", "checkpoints", "metrics.json")  # what a run that got going has written
SWEEP_ENV = "M3BERT_SWEEP"
STAGES = ("pretrain", "finetune", "probe")


class FolderCollision(RuntimeError):
    """Two different runs would write into one folder."""


def stage_of(cfg: DictConfig) -> str:
    """``probe`` for the probing stage, ``finetune`` when the config selects tasks, else ``pretrain``."""
    if str(cfg.get("stage", {}).get("_target_", "")).endswith("probing.run"):
        return "probe"
    return "finetune" if cfg.get("tasks") else "pretrain"


def git_commit() -> str | None:
    """The commit of the code that runs, or None outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_dirty() -> bool | None:
    """Whether the checkout that runs has uncommitted changes to tracked files (so ``git_commit`` alone does not
    say what ran), or None outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            cwd=Path(__file__).parent,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return bool(out.stdout.strip()) if out.returncode == 0 else None


def environment() -> dict[str, Any]:
    """What produced a run's numbers besides its config: the checkout's state, the torch and Python versions, the
    CPU's capability (``avx2``, ``avx512+avx512_bf16``: whether bf16 is native) and the threads torch uses.
    :func:`finish` adds the precision and device the trainer resolved (``precision=auto`` is bf16 or fp32 by
    machine)."""
    import platform

    import torch

    from m3bert.common.devices import cpu_capability

    return {
        "git_dirty": git_dirty(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu": cpu_capability(),
        "threads": torch.get_num_threads(),
    }


def environment_of(record: dict[str, Any]) -> dict[str, Any]:
    """A record's provenance in one flat mapping (``git_commit``, ``wall_time_s`` and the ``environment``
    fields); fields an older record lacks are absent."""
    out = {key: record[key] for key in ("git_commit", "wall_time_s") if record.get(key) is not None}
    return {**out, **(record.get("environment") or {})}


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


# ------------------------------------------------------------------------------------------------------ sweeps
def parse_overrides(overrides: Sequence[str]):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create().parse_overrides([str(o) for o in overrides])


def sweep_identity(name: str, overrides: Sequence[str], started: datetime.datetime | None = None) -> dict[str, Any]:
    """The sweep of one multirun invocation: ``{"id": "<name>-<8 hex>-<YYYYmmdd-HHMMSS>", "command": "<8 hex>",
    "swept": [keys with several values]}``; ``command`` (the hash of the overrides) is the same for every
    invocation of one command, the id is not."""
    parsed = parse_overrides(overrides)
    digest = hashlib.sha1("\n".join(sorted(map(str, overrides))).encode()).hexdigest()[:8]
    swept = sorted({o.key_or_group for o in parsed if o.is_sweep_override()})
    stamp = (started or datetime.datetime.now()).strftime("%Y%m%d-%H%M%S")
    return {"id": f"{name}-{digest}-{stamp}", "command": digest, "swept": swept}


def current_sweep() -> dict[str, Any] | None:
    """The sweep this process's jobs belong to (set by :class:`SweepCallback`), or None outside a multirun."""
    raw = os.environ.get(SWEEP_ENV)
    return json.loads(raw) if raw else None


try:
    from hydra.experimental.callback import Callback
except ImportError:  # pragma: no cover - hydra < 1.1
    Callback = object


class SweepCallback(Callback):
    """Announces the sweep to its jobs through the environment (see the module docstring)."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        overrides = list(config.hydra.overrides.task)
        identity = sweep_identity(str(config.get("name", "sweep")), overrides)
        os.environ[SWEEP_ENV] = json.dumps(identity)
        log.info("Sweep %s over %s", identity["id"], ", ".join(identity["swept"]) or "nothing")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        os.environ.pop(SWEEP_ENV, None)


def folder_key(
    overrides: Sequence[str], exclude_keys: Sequence[str], swept: Sequence[str] = (), canonical: bool = True
) -> str:
    """What a run folder's name stands for: the overrides, sorted, except ``exclude_keys`` (keys that don't change
    what is trained), keeping every swept key, so no two jobs of one sweep share a folder; as Hydra's
    ``override_dirname`` (``k=v,k=v``). ``canonical`` writes values as Hydra re-serialises them (``false`` and
    ``False`` alike), so the key of a command compares equal however it was typed."""
    lines = [
        canonical_line(o) if canonical else o.input_line
        for o in parse_overrides(overrides)
        if o.key_or_group not in exclude_keys or o.key_or_group in swept
    ]
    return ",".join(sorted(lines))


def canonical_line(override) -> str:
    return f"{override.get_key_element()}={override.get_value_element_as_str()}"


def same_overrides(a: Sequence[str], b: Sequence[str]) -> bool:
    return sorted(map(canonical_line, parse_overrides(a))) == sorted(map(canonical_line, parse_overrides(b)))


def run_folder_name(overrides: str) -> str:
    """A single path component from Hydra's ``override_dirname``: slashes in values (paths) are replaced, and
    a name too long for a file system is cut and suffixed with a hash of the whole, so it stays unique."""
    name = overrides.replace("/", "_")
    if len(name) > 180:
        name = f"{name[:160]}-{hashlib.sha1(name.encode()).hexdigest()[:10]}"
    return name


def sweep_folder(overrides, exclude_keys) -> str:
    """The ``sweep_folder`` resolver: a job's sub-folder of a multirun (see :func:`folder_key`)."""
    sweep = current_sweep()
    swept = sweep["swept"] if sweep else ()
    return run_folder_name(folder_key(list(overrides), list(exclude_keys), swept, canonical=False))


# ------------------------------------------------------------------------------------------------ comparisons
#: Config keys that never make runs differ in what they measure (where they ran, how they logged).
IGNORED_KEYS = (
    "seed",
    "paths",
    "logger",
    "stage",
    "hydra",
    "trainer.device",
    "trainer.num_workers",
    "trainer.progress",
    "probe.progress",
)


def _ignored(path: str, ignore: Iterable[str]) -> bool:
    return any(path == key or path.startswith(f"{key}.") for key in ignore)


def _display(value) -> Any:
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    return value


def differing_keys(configs: Sequence[dict], ignore: Iterable[str] = IGNORED_KEYS) -> dict[str, list]:
    """Config keys (dotted) whose values differ between ``configs``, with each config's value. A mapping whose
    named entries differ (a task mix: ``tasks`` with other tasks) is one key valued by its entry names joined by
    '+'; a setting that only some configs have (one added to the code since) is a key of its own, None where
    missing."""
    ignore, out = tuple(ignore), {}

    def walk(nodes: list, path: str) -> None:
        if path and _ignored(path, ignore):
            return
        if all(isinstance(n, dict) for n in nodes):
            partial = set().union(*nodes) - set.intersection(*(set(n) for n in nodes))
            if path and any(isinstance(n.get(key), dict) for n in nodes for key in partial):
                out[path] = ["+".join(sorted(n)) for n in nodes]
                return
            for key in sorted(set().union(*nodes)):
                walk([n.get(key) for n in nodes], f"{path}.{key}" if path else str(key))
            return
        values = [_display(n) for n in nodes]
        if len({json.dumps(v, sort_keys=True, default=str) for v in values}) > 1:
            out[path] = values

    if configs:
        walk([dict(c) for c in configs], "")
    return out


def recorded_config(cfg: DictConfig) -> dict[str, Any]:
    """``cfg`` as a run record keeps it: resolved, or as written where it can't resolve (it fails later with its
    own message)."""
    try:
        return OmegaConf.to_container(cfg, resolve=True)
    except Exception as err:  # noqa: BLE001
        log.debug("Config not resolvable for the record (%s); keeping it unresolved", err)
        return OmegaConf.to_container(cfg, resolve=False)


def recipe_changes(record: dict[str, Any] | None, cfg: DictConfig) -> list[str]:
    """The config keys in which the run of ``record`` (:func:`read`) differs from ``cfg``; empty when there is no
    run yet (None), or it has the same recipe. Unlike :func:`differing_keys`'s default, the seed counts."""
    if record is None:
        return []
    ignore = [key for key in IGNORED_KEYS if key != "seed"]
    return sorted(differing_keys([record["config"], recorded_config(cfg)], ignore))


# ----------------------------------------------------------------------------------------------------- records
def read(run_dir: str | Path) -> dict[str, Any] | None:
    path = Path(run_dir) / RECORD
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err}); delete it and rerun to start the record afresh") from err


def check_folder(run_dir: str | Path, key: str, overrides: Sequence[str], sweep: dict | None, cfg: DictConfig) -> str:
    """What to do in ``run_dir`` for the run of ``cfg``: ``new`` (no run yet), ``resume`` (an unfinished or
    extendable run of the same overrides) or ``skip`` (that run finished with exactly these overrides and this
    recipe). Raises :class:`FolderCollision` when the folder belongs to a run of other overrides, to another job of
    the same sweep, or to a finished run of these overrides whose resolved config has changed since (the recipe
    file or the code changed under the same command)."""
    record = read(run_dir)
    if record is None:
        return "new"
    if record.get("folder_key") is not None and record["folder_key"] != key:
        raise FolderCollision(
            f"{run_dir} holds the run of overrides [{record['folder_key']}], not [{key}]: their folder names "
            "coincide. Two runs never share a folder: set name=... or hydra.run.dir=... for this one"
        )
    theirs, ours = record.get("sweep") or {}, sweep or {}
    # Within one invocation (one sweep id) a folder belongs to one job; a rerun is another sweep and may reuse it.
    if theirs.get("id") and theirs.get("id") == ours.get("id") and theirs.get("job") != ours.get("job"):
        raise FolderCollision(
            f"{run_dir}: jobs {theirs.get('job')} and {ours.get('job')} of sweep {ours['id']} resolve to one "
            "folder (the same overrides twice?); list each value once"
        )
    if record.get("status") == "finished" and same_overrides(record.get("overrides") or [], overrides):
        changed = recipe_changes(record, cfg)
        if changed:
            raise FolderCollision(
                f"{run_dir} holds a finished run of these overrides made with another recipe ({', '.join(changed)} "
                "differ): the config files or the code changed since. Move the folder aside (or delete it) to "
                "redo the run, or run into another folder"
            )
        return "skip"
    return "resume"


def holds_work(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` holds a record or anything a run made: a training log, checkpoints, metrics (Hydra's
    own ``.hydra/`` and log file, written before the run starts, don't count)."""
    return any((Path(run_dir) / name).exists() for name in (RECORD, *WORK))


def discard_if_idle(run_dir: str | Path) -> bool:
    """Remove the folder of a run that failed before making anything (nothing of :data:`WORK` in it), so that no
    stub is left behind; returns whether it did."""
    run_dir = Path(run_dir)
    if any((run_dir / name).exists() for name in WORK):
        return False
    shutil.rmtree(run_dir, ignore_errors=True)
    with contextlib.suppress(OSError):  # the recipe's folder Hydra made for it, if nothing else is in it
        run_dir.parent.rmdir()
    return True


def start(
    run_dir: str | Path, cfg: DictConfig, overrides: Sequence[str] | None, key: str | None, sweep: dict | None
) -> dict[str, Any]:
    """Write the ``running`` record of a run about to start (or resume) in ``run_dir``."""
    previous = read(run_dir) or {}
    record = {
        "status": "running",
        "stage": stage_of(cfg),
        "name": cfg.get("name"),
        "seed": cfg.get("seed"),
        "overrides": list(overrides) if overrides is not None else None,
        "folder_key": key,
        "sweep": sweep,
        "config": recorded_config(cfg),
        "metrics": None,
        "git_commit": git_commit(),
        "environment": environment(),
        "started": previous.get("started") or _now(),
        "resumed": previous.get("status") is not None,
        "ended": None,
        "wall_time_s": None,
        "error": None,
    }
    write_json(record, Path(run_dir) / RECORD)
    return record


def finish(run_dir: str | Path, record: dict[str, Any], summary: dict[str, Any], seconds: float) -> dict[str, Any]:
    """Mark the run finished with its metrics (``final``, ``best``, ``test`` of its summary) and the precision and
    device its summary says the trainer used (``trainer.precision=auto`` resolved on this machine)."""
    resolved = {key: summary[key] for key in ("precision", "device") if summary.get(key) is not None}
    record = {
        **record,
        "environment": {**(record.get("environment") or {}), **resolved},
        "status": "finished",
        "metrics": {k: summary.get(k) or {} for k in ("final", "best", "test")},
        "steps": summary.get("steps"),
        "wall_time_s": summary.get("wall_time_s", seconds),
        "ended": _now(),
    }
    write_json(record, Path(run_dir) / RECORD)
    return record


def preempt(run_dir: str | Path, record: dict[str, Any], step: int, seconds: float) -> None:
    """Mark the run preempted at ``step`` (its checkpoint saved; the same command resumes it)."""
    record = {**record, "status": "preempted", "steps": step, "ended": _now(), "wall_time_s": seconds}
    write_json(record, Path(run_dir) / RECORD)


def fail(run_dir: str | Path, record: dict[str, Any], error: BaseException, seconds: float) -> None:
    """Mark the run failed with the error's type and message."""
    record = {**record, "status": "failed", "error": f"{type(error).__name__}: {error}", "ended": _now()}
    record["wall_time_s"] = seconds
    write_json(record, Path(run_dir) / RECORD)


def wandb_labels(run_dir: str | Path, cfg: DictConfig) -> dict[str, Any]:
    """``group``, ``job_type`` and ``tags`` of a run's W&B record: the stage is the job type; runs of one sweep
    share its id as group (else the experiment name; ``logger.group`` wins); tags are the swept overrides and the
    encoder mode, besides ``logger.tags``."""
    record = read(run_dir) or {}
    sweep = record.get("sweep") or {}
    tags = list(cfg.logger.get("tags") or [])
    swept = set(sweep.get("swept") or ())
    for override in parse_overrides(record.get("overrides") or []):
        if override.key_or_group in swept:
            tags.append(override.input_line.lstrip("+~"))
    if cfg.get("encoder") is not None and cfg.encoder.get("mode"):
        tags.append(f"encoder.mode={cfg.encoder.mode}")
    return {
        "group": cfg.logger.get("group") or sweep.get("id") or cfg.name,
        "job_type": record.get("stage") or stage_of(cfg),
        "tags": list(dict.fromkeys(t[:64] for t in tags)),  # W&B limits a tag to 64 characters
    }
