"""The fault suite: damaged run files, full disks, bad config values and kills, each behaving as the README's
"What happens when things go wrong" table says (one clear line naming the file or key; earlier outputs intact;
a rerun of the same command continues)."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import CONF, ROOT, TINY, crash_after_checkpoint, make_config, task_overrides
from hydra import compose, initialize_config_dir

from benchmarks.synth import synthetic_music
from m3bert.common import checkpoints, files
from m3bert.common.errors import ConfigError, DiskFullError, user_message
from m3bert.data.manifest import ManifestError
from m3bert.extract import extract
from m3bert.inference.pretrained import load_pretrained, save_pretrained
from m3bert.models import M3BERT, M3BERTConfig
from m3bert.prepare import check_prepare_config, prepare
from m3bert.train import run
from m3bert.training.schemas import check_train_config

QUICK = [
    *TINY,
    "dataset=random",
    "dataset.max_frames=64",
    "trainer.batch_size=4",
    "trainer.log_every=1",
    "trainer.image_every=0",
    "trainer.val_every=100",
    "scheduler.warmup_steps=2",
]


def compose_config(name: str, *overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(name, overrides=list(overrides))


def log_rows(run_dir):
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


def losses(run_dir):
    return {r["step"]: r["train/loss"] for r in log_rows(run_dir) if "train/loss" in r}


def cli(*args: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "WANDB_MODE": "offline", **(env or {})},
    )


def assert_one_line_error(done: subprocess.CompletedProcess, *fragments: str) -> str:
    """Exit status 2 and one line on stderr holding every fragment, no traceback."""
    assert done.returncode == 2, done.stderr[-3000:]
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if ": error: " in line]
    assert len(errors) == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


SIX_STEPS = [*QUICK, "trainer.max_steps=6", "trainer.save_every=2"]


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """An uninterrupted 6-step run (checkpoints every 2 steps) to compare resumed runs with."""
    folder = tmp_path_factory.mktemp("straight")
    run(make_config(*SIX_STEPS), folder)
    return folder


def crash_after_step_4(run_dir, monkeypatch) -> None:
    """The 6-step run, stopped right after its step-4 checkpoint."""
    crash_after_checkpoint(make_config(*SIX_STEPS), run_dir, 4, monkeypatch)


def assert_same_run(got, expected, step: int = 6) -> None:
    """Bitwise-equal losses at every step and weights at the end."""
    assert losses(got) == losses(expected)
    a = checkpoints.load(expected / f"checkpoints/step_{step:07d}.pt")["model"]
    b = checkpoints.load(got / f"checkpoints/step_{step:07d}.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


# ------------------------------------------------------------------------- 1: unreadable checkpoints
DAMAGE = {
    "random bytes": lambda path: path.write_bytes(np.random.default_rng(0).bytes(4096)),
    "not a checkpoint": lambda path: torch.save({"weights": torch.zeros(3)}, path),
    "truncated": lambda path: path.write_bytes(path.read_bytes()[:1000]),
    "empty": lambda path: path.write_bytes(b""),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_every_kind_of_damaged_checkpoint_is_refused_naming_the_file(tmp_path, damage):
    path = tmp_path / "step_0000004.pt"
    checkpoints.save({"model": {}, "step": 4}, path)
    DAMAGE[damage](path)
    with pytest.raises(checkpoints.CheckpointError, match=f"^{path}: (cannot read|not an m3bert)"):
        checkpoints.load(path, required=checkpoints.TRAINING_KEYS)


# One kind in the default suite (the resume loop treats every CheckpointError alike), all of them in `slow`.
@pytest.mark.parametrize(
    "damage", [d if d == "random bytes" else pytest.param(d, marks=pytest.mark.slow) for d in DAMAGE]
)
def test_an_unreadable_latest_checkpoint_is_set_aside_and_the_one_before_used(
    straight, tmp_path, caplog, monkeypatch, damage
):
    crash_after_step_4(tmp_path, monkeypatch)
    latest = tmp_path / "checkpoints" / "step_0000004.pt"
    DAMAGE[damage](latest)
    with caplog.at_level("INFO"):
        run(make_config(*SIX_STEPS), tmp_path)
    assert "step_0000004.pt" in caplog.text and "set aside as step_0000004.pt.corrupt" in caplog.text
    assert "Resuming from" in caplog.text and "at step 2" in caplog.text
    assert (tmp_path / "checkpoints" / "step_0000004.pt.corrupt").is_file()  # kept, not deleted
    assert_same_run(tmp_path, straight)


@pytest.mark.parametrize("damage", ["random bytes", "not a checkpoint"])
def test_loading_a_damaged_checkpoint_as_a_model_names_the_file_and_the_key(tmp_path, damage):
    bad = tmp_path / "best.pt"
    DAMAGE[damage](bad)
    with pytest.raises((checkpoints.CheckpointError, ValueError), match=f"^{bad}: "):
        load_pretrained(bad)
    with pytest.raises((checkpoints.CheckpointError, ValueError), match=f"encoder.checkpoint={bad}"):
        load_pretrained(bad, key="encoder.checkpoint")


def test_a_random_bytes_encoder_checkpoint_names_the_key(tmp_path):
    bad = tmp_path / "rand.pt"
    DAMAGE["random bytes"](bad)
    overrides = [
        "+experiment=finetune_mtl",
        "tasks=[gtzan]",
        *TINY,
        "trainer.batch_size=4",
        f"encoder.checkpoint={bad}",
    ]
    cfg = make_config(*overrides, *task_overrides(make_config(*overrides), tmp_path / "data"))
    with pytest.raises(Exception) as caught:  # noqa: B017 (instantiate wraps it; the message is what counts)
        run(cfg, tmp_path / "run")
    assert user_message(caught.value).startswith(f"encoder.checkpoint={bad}: cannot read the checkpoint")


def test_export_of_a_random_bytes_checkpoint_is_one_line(tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    DAMAGE["random bytes"](run_dir / "checkpoints" / "best.pt")
    done = cli("m3bert.export", f"run={run_dir}", f"out={tmp_path / 'model'}")
    assert_one_line_error(done, str(run_dir / "checkpoints" / "best.pt"), "cannot read the checkpoint")
    assert not (tmp_path / "model").exists()


# ---------------------------------------------------------------------------------- 2: torn log.jsonl
def test_a_torn_last_log_line_is_dropped_and_the_run_continues(straight, tmp_path, caplog, monkeypatch):
    crash_after_step_4(tmp_path, monkeypatch)
    with open(tmp_path / "log.jsonl", "a") as handle:
        handle.write('{"step": 5, "train/lo')  # an append cut short by a kill or a full disk
    with caplog.at_level("WARNING"):
        run(make_config(*SIX_STEPS), tmp_path)
    assert "dropped its last line" in caplog.text
    assert_same_run(tmp_path, straight)


def test_a_damaged_log_line_before_the_last_names_the_file_and_line(tmp_path):
    run(make_config(*QUICK, "trainer.max_steps=2", "trainer.save_every=2"), tmp_path)
    rows = (tmp_path / "log.jsonl").read_text().splitlines()
    (tmp_path / "log.jsonl").write_text("\n".join([rows[0][:10], *rows[1:]]) + "\n")
    with pytest.raises(ValueError, match=r"log.jsonl, line 1: not a JSON row"):
        run(make_config(*QUICK, "trainer.max_steps=4", "trainer.save_every=2"), tmp_path)


# ------------------------------------------------------------------------------------ 3, 4: full disks
def raise_enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_disk_full_while_writing_keeps_the_old_file_and_leaves_no_temp_file(tmp_path, monkeypatch):
    target = tmp_path / "report.md"
    files.write_text("the earlier report", target)
    monkeypatch.setattr(os, "fsync", raise_enospc)
    with pytest.raises(DiskFullError) as caught:
        files.write_text("a new report", target)
    assert str(target) in str(caught.value) and "no space left" in str(caught.value)
    assert user_message(caught.value) == str(caught.value)
    assert target.read_text() == "the earlier report" and [p.name for p in tmp_path.iterdir()] == ["report.md"]


def test_numpy_short_write_counts_as_a_full_disk(tmp_path, monkeypatch):
    def short_write(*args, **kwargs):
        raise OSError("56052 requested and 26592 written")  # what NumPy's tofile says on a full disk

    monkeypatch.setattr(files.np, "save", short_write)
    with pytest.raises(DiskFullError, match=r"features\.npy: no space left"):
        files.write_npy(np.zeros((3, 2)), tmp_path / "features.npy")


@pytest.mark.parametrize("free", [True, False])
def test_torch_saves_short_write_counts_as_a_full_disk_only_when_the_disk_is_full(tmp_path, monkeypatch, free):
    def zip_writer_error(state, handle):
        handle.write(b"PK")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 278400 vs 278288")

    monkeypatch.setattr(checkpoints.torch, "save", zip_writer_error)
    monkeypatch.setattr(files, "nearly_full", lambda folder: not free)
    with pytest.raises(RuntimeError if free else DiskFullError):
        checkpoints.save({"step": 1}, tmp_path / "step_0000001.pt")
    assert list(tmp_path.iterdir()) == []


def test_disk_full_at_a_checkpoint_names_it_and_keeps_the_earlier_ones(tmp_path, monkeypatch):
    save = checkpoints.torch.save

    def save_until_full(state, handle):
        if state["step"] == 4:
            raise_enospc()
        save(state, handle)

    monkeypatch.setattr(checkpoints.torch, "save", save_until_full)
    with pytest.raises(DiskFullError, match=r"step_0000004\.pt: no space left"):
        run(make_config(*QUICK, "trainer.max_steps=6", "trainer.save_every=2"), tmp_path)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step_0000002.pt"]
    assert checkpoints.load(tmp_path / "checkpoints" / "step_0000002.pt")["step"] == 2


def test_disk_full_while_appending_to_the_log_names_it(tmp_path, monkeypatch):
    def full(text, path):
        raise DiskFullError(path)

    monkeypatch.setattr("m3bert.training.trainer.append_text", full)
    with pytest.raises(DiskFullError, match=r"log\.jsonl: no space left"):
        run(make_config(*QUICK, "trainer.max_steps=2"), tmp_path)


def write_tone(path, seconds: float, seed: int = 0, rate: int = 22050):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, synthetic_music(seconds, rate, seed=seed), rate)


def prepare_config(audio, out, *overrides):
    return compose_config(
        "prepare",
        "dataset=folder",
        f"dataset.root={audio}",
        f"out={out}",
        "workers=0",
        "progress=false",
        "features=logmel128",
        "dataset.feature_dim=128",
        "clip.seconds=2",
        "clip.min_seconds=1",
        *overrides,
    )


def test_prepare_on_a_full_disk_names_the_feature_file_and_keeps_earlier_outputs(tmp_path, monkeypatch):
    audio, out = tmp_path / "audio", tmp_path / "prepared"
    write_tone(audio / "a.wav", 2.0)
    prepare(prepare_config(audio, out))
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and ".hydra" not in str(p)}
    write_tone(audio / "b.wav", 2.0, seed=1)
    monkeypatch.setattr(files.np, "save", raise_enospc)
    with pytest.raises(DiskFullError, match=r"features/b(\.stats)?\.npy: no space left"):
        prepare(prepare_config(audio, out))
    after = {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and ".hydra" not in str(p)}
    assert after == before  # manifests, summary and the first file untouched, no temp file left


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    torch.manual_seed(0)
    encoder = M3BERT(M3BERTConfig(input_dim=128, hidden_size=32, num_layers=2, num_heads=4, ffn_size=64)).eval()
    return save_pretrained(encoder, tmp_path_factory.mktemp("model") / "tiny", "logmel128", training_frames=64)


def extract_config(model, audio, out, *overrides):
    return compose_config(
        "extract", f"model_path={model}", f"input={audio}", f"output={out}", "progress=false", *overrides
    )


def test_extract_on_a_full_disk_stops_with_the_path_and_keeps_what_was_done(model, tmp_path, monkeypatch):
    audio, out = tmp_path / "audio", tmp_path / "emb"
    write_tone(audio / "a.wav", 2.0)
    extract(extract_config(model, audio, out))
    done = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    write_tone(audio / "b.wav", 2.0, seed=1)
    # Memory maps are allocated up front, so a full disk raises ENOSPC there instead of killing with SIGBUS.
    monkeypatch.setattr(files.os, "posix_fallocate", raise_enospc, raising=False)
    with pytest.raises(DiskFullError, match="no space left"):
        extract(extract_config(model, audio, out))
    assert not list(out.glob(".scratch-*")) and not list(out.rglob("*.tmp"))
    for path, data in done.items():
        if path.name != "extract.json":  # rewritten (same settings) before any embedding
            assert path.read_bytes() == data, path


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 1.5 MiB tmpfs (root on Linux only; skipped elsewhere)."""
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1536k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def test_extract_into_a_real_full_tmpfs_fails_cleanly(model, tmp_path, small_tmpfs):
    audio = tmp_path / "audio"
    for i in range(4):
        write_tone(audio / f"{i}.wav", 30.0, seed=i)  # about 1 MiB of frame-level output each
    with pytest.raises(DiskFullError, match=f"{small_tmpfs}.*no space left"):
        extract(extract_config(model, audio, small_tmpfs))
    assert not list(small_tmpfs.glob(".scratch-*")) and not list(small_tmpfs.rglob("*.tmp"))


# ------------------------------------------------------------------------------- 4: leftovers of kills
def test_leftovers_of_a_killed_run_are_removed_by_the_next_run(model, tmp_path):
    run_dir = tmp_path / "run"
    run(make_config(*QUICK, "trainer.max_steps=2", "trainer.save_every=2"), run_dir)
    (run_dir / "checkpoints" / ".step_0000004.pt.k2j4.tmp").write_bytes(b"half a checkpoint")
    (run_dir / ".metrics.json.x8s1.tmp").write_bytes(b"{")
    run(make_config(*QUICK, "trainer.max_steps=4", "trainer.save_every=2"), run_dir)
    assert not list(run_dir.rglob("*.tmp"))

    audio, out = tmp_path / "audio", tmp_path / "emb"
    write_tone(audio / "sub" / "a.wav", 2.0)
    (out / ".scratch-ab12cd").mkdir(parents=True)
    (out / ".scratch-ab12cd" / "features.npy").write_bytes(b"\0" * 100)
    (out / "frames" / "sub").mkdir(parents=True)
    (out / "frames" / "sub" / ".a.npy.4242.tmp").write_bytes(b"\0" * 100)
    extract(extract_config(model, audio, out))
    assert not list(out.glob(".scratch-*")) and not list(out.rglob("*.tmp"))
    assert (out / "frames" / "sub" / "a.npy").is_file()


# ------------------------------------------------------------------- 5, 6, 7: values out of range
@pytest.mark.parametrize(
    "override",
    [
        "trainer.batch_size=0",
        "trainer.save_every=0",
        "trainer.log_every=0",
        "trainer.val_every=0",
        "trainer.grad_accum=0",
        "trainer.max_steps=-3",
        "trainer.precision=fp64",
        "trainer.monitor_mode=up",
        "masking.ratio=1.5",
        "optimizer.lr=0",
        "scheduler.warmup_steps=-1",
        "dataset.max_frames=0",
        "model.dropout=2",
        "model.num_heads=5",
    ],
)
def test_train_values_out_of_range_name_the_key(override):
    key = override.split("=")[0]
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        check_train_config(make_config("+experiment=smoke", *TINY, override))


def test_the_recipes_pass_the_checks():
    for name in ("smoke", "pretrain_msd"):
        check_train_config(make_config(f"+experiment={name}"))
    for name in ("finetune_mtl", "probe"):  # they load a pre-trained encoder: it must be named
        check_train_config(make_config(f"+experiment={name}", "encoder.checkpoint=experiments/pretrain_msd"))
        with pytest.raises(ConfigError, match="encoder.checkpoint: .* needs a pre-trained encoder"):
            check_train_config(make_config(f"+experiment={name}"))
    check_train_config(make_config("+experiment=finetune_mtl", "encoder.mode=baseline"))


@pytest.mark.parametrize("override", ["clip.seconds=0", "clip.seconds=-5", "split.fractions=[0.9,0.2,0.1]"])
def test_prepare_values_out_of_range_name_the_key(tmp_path, override):
    with pytest.raises(ConfigError, match=override.split("=")[0].replace(".", r"\.")):
        check_prepare_config(prepare_config(tmp_path, tmp_path / "out", override))


@pytest.mark.parametrize("override", ["window.frames=0", "window.overlap_frames=-1", "batch_size=0"])
def test_extract_values_out_of_range_name_the_key(model, tmp_path, override):
    with pytest.raises(ConfigError, match=override.split("=")[0].replace(".", r"\.")):
        extract(extract_config(model, tmp_path, tmp_path / "out", override))
    assert not (tmp_path / "out").exists()


def test_a_bad_value_on_the_command_line_is_one_line_and_makes_no_run_folder(tmp_path):
    done = cli(
        "m3bert.train",
        "+experiment=smoke",
        "logger=none",
        "trainer.batch_size=0",
        env={"M3BERT_EXPERIMENTS": str(tmp_path)},
    )
    assert_one_line_error(done, "trainer.batch_size=0", ">= 1")
    assert list(tmp_path.iterdir()) == []
    done = cli(
        "m3bert.prepare",
        f"dataset.root={tmp_path / 'audio'}",
        f"out={tmp_path / 'prepared'}",
        "clip.seconds=0",
    )
    assert_one_line_error(done, "clip.seconds=0", "> 0")
    assert not (tmp_path / "prepared").exists()


COMPOSITION_ERRORS = {
    "misspelt key": (["trainer.max_stepz=3"], ["trainer.max_stepz: no such config key", "+trainer.max_stepz="]),
    "wrong type": (["trainer.max_steps=abc"], ["trainer.max_steps=abc", "Integer"]),
    "unknown option": (["masking=nope"], ["masking=nope: no such masking config", "cfm_ccm"]),
    "unknown recipe": (["+experiment=nope"], ["+experiment=nope: no such experiment config", "pretrain_msd"]),
    "unparsable": (["trainer.max_steps=[1"], ["does not parse", "'[1'"]),
}


@pytest.mark.parametrize("case", COMPOSITION_ERRORS)
def test_a_composition_error_is_one_line_and_makes_no_run_folder(tmp_path, case):
    overrides, fragments = COMPOSITION_ERRORS[case]
    done = cli("m3bert.train", "+experiment=smoke", *overrides, env={"M3BERT_EXPERIMENTS": str(tmp_path)})
    assert_one_line_error(done, *fragments)
    assert list(tmp_path.iterdir()) == []


def test_a_composition_error_of_another_entry_point_is_one_line(tmp_path):
    done = cli("m3bert.prepare", "dataset=nope", f"out={tmp_path / 'prepared'}")
    assert_one_line_error(done, "dataset=nope: no such dataset config", "gtzan")
    assert not (tmp_path / "prepared").exists()


def test_a_launcher_whose_optional_plugin_is_missing_names_the_extra_to_install():
    from hydra.errors import MissingConfigException

    from m3bert.common.errors import composition_message

    missing = MissingConfigException("Could not find 'hydra/launcher/joblib'", "hydra/launcher/joblib", ["basic"])
    assert composition_message(missing) == (
        "hydra/launcher=joblib: Hydra's joblib launcher is not installed; pip install 'm3bert[joblib]'"
    )
    unknown = MissingConfigException("Could not find 'hydra/launcher/nope'", "hydra/launcher/nope", ["basic", "slurm"])
    assert (
        composition_message(unknown) == "hydra/launcher=nope: no such hydra/launcher config; choose one of basic, slurm"
    )


def test_commands_that_fail_before_doing_work_leave_no_stub_folder(tmp_path, model):
    missing = tmp_path / "nothing_here"
    missing.mkdir()
    done = cli("m3bert.train", "logger=none", f"dataset.root={missing}", f"hydra.run.dir={tmp_path / 'run'}")
    assert_one_line_error(done, "train.csv: manifest not found", "python -m m3bert.prepare dataset=folder")
    done = cli("m3bert.prepare", "dataset=folder", f"dataset.root={missing}", f"out={tmp_path / 'prepared'}")
    assert_one_line_error(done, "no audio files found")
    done = cli("m3bert.extract", f"model_path={model}", f"input={missing}", f"output={tmp_path / 'embeddings'}")
    assert_one_line_error(done, str(missing))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nothing_here"]
    # A folder that holds something else keeps it, and only gains Hydra's log of the failure.
    (tmp_path / "prepared").mkdir()
    (tmp_path / "prepared" / "notes.txt").write_text("mine")
    cli("m3bert.prepare", "dataset=folder", f"dataset.root={missing}", f"out={tmp_path / 'prepared'}")
    assert (tmp_path / "prepared" / "notes.txt").read_text() == "mine"


def test_a_missing_task_folder_names_the_prepare_command(tmp_path):
    done = cli(
        "m3bert.train",
        "+experiment=finetune_mtl",
        "encoder.mode=baseline",
        "tasks=[mtg_moodtheme]",
        "logger=none",
        env={"M3BERT_DATA": str(tmp_path / "data"), "M3BERT_EXPERIMENTS": str(tmp_path / "runs")},
    )
    assert_one_line_error(
        done, "mtg_jamendo_moodtheme/train.csv", "python -m m3bert.prepare dataset=mtg_jamendo_moodtheme"
    )
    assert list((tmp_path / "runs").iterdir()) == []


def test_a_traceback_when_asked_for(tmp_path):
    done = cli(
        "m3bert.train",
        "+experiment=smoke",
        "logger=none",
        "trainer.grad_accum=0",
        env={"M3BERT_EXPERIMENTS": str(tmp_path), "M3BERT_DEBUG": "1"},
    )
    assert done.returncode != 0 and "Traceback" in done.stderr and "trainer.grad_accum=0" in done.stderr


class BrokenClips(torch.utils.data.Dataset):
    def __len__(self):
        return 2

    def __getitem__(self, i):
        raise ManifestError(f"data/x/train.csv, row {i + 2} (features/a.npy): feature file is missing")


def test_an_error_in_a_data_loading_worker_is_reported_as_its_own_one_line():
    loader = torch.utils.data.DataLoader(BrokenClips(), num_workers=1)
    with pytest.raises(ManifestError) as caught:
        next(iter(loader))
    assert "Traceback" in str(caught.value)  # torch puts the worker's traceback into the message
    assert user_message(caught.value) == "data/x/train.csv, row 2 (features/a.npy): feature file is missing"


# ------------------------------------------------------------------------------------------ kill -9
KILLED_RUN = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    from conftest import make_config
    from m3bert.train import run
    from m3bert.common import checkpoints
    from m3bert.training import trainer

    kill_at, during_save = int(sys.argv[2]), sys.argv[3] == "save"
    if during_save:
        save = checkpoints.torch.save
        def save_half_then_die(state, handle):
            if state["step"] == kill_at:
                handle.write(b"PK half a checkpoint")
                handle.flush()
                os.kill(os.getpid(), signal.SIGKILL)
            save(state, handle)
        checkpoints.torch.save = save_half_then_die
    else:
        step = trainer.Trainer.train_step
        def step_then_die(self, batches):
            out = step(self, batches)
            if self.step + 1 == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            return out
        trainer.Trainer.train_step = step_then_die
    run(make_config(*sys.argv[4:]), Path(sys.argv[1]))
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("moment", ["training", "save"])
def test_kill_9_then_resume_is_bitwise_an_uninterrupted_run(straight, tmp_path, moment):
    script = tmp_path / "killed_run.py"
    script.write_text(KILLED_RUN.format(tests=str(ROOT / "tests")))
    overrides = SIX_STEPS
    killed = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "run"), "5" if moment == "training" else "4", moment, *overrides],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    if moment == "save":
        assert list((tmp_path / "run" / "checkpoints").glob(".step_0000004.pt.*.tmp"))  # the torn write
    run(make_config(*overrides), tmp_path / "run")
    assert not list((tmp_path / "run").rglob("*.tmp"))
    assert_same_run(tmp_path / "run", straight)


def test_the_demo_checks_its_overrides_before_building_anything(tmp_path):
    env = {name: str(tmp_path / folder) for name, folder in (("M3BERT_DATA", "data"), ("M3BERT_EXPERIMENTS", "runs"))}
    done = cli("m3bert.reproduce", "scale=tour_quick", "extra=['trainer.max_stepz=3']", env=env)
    assert_one_line_error(done, "trainer.max_stepz: no such config key")
    done = cli("m3bert.reproduce", "scale=tour_quick", "extra=['trainer.batch_size=0']", env=env)
    assert_one_line_error(done, "trainer.batch_size=0")
    assert list(tmp_path.iterdir()) == []
