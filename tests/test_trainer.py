import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import ROOT, TINY, crash_after_checkpoint, make_config

from m3bert.common import checkpoints
from m3bert.common.errors import ConfigError
from m3bert.train import run

QUICK = [
    *TINY,
    "dataset=random",
    "dataset.max_frames=64",
    "trainer.batch_size=4",
    "trainer.log_every=1",
    "trainer.image_every=0",
    "scheduler.warmup_steps=2",
]


def losses(run_dir):
    rows = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    return {r["step"]: r["train/loss"] for r in rows if "train/loss" in r}


def test_resume_continues_exactly_as_if_never_stopped(tmp_path, monkeypatch):
    # Dropout, random masks, shuffling and several epochs (64 clips / 4 per step = 16 steps an epoch) all in play.
    overrides = [
        *QUICK,
        "trainer.max_steps=24",
        "trainer.save_every=10",
        "trainer.val_every=100",
        "trainer.grad_accum=2",
    ]
    straight = tmp_path / "straight"
    run(make_config(*overrides), straight)

    crashed = tmp_path / "crashed"
    crash_after_checkpoint(make_config(*overrides), crashed, 10, monkeypatch)
    assert max(losses(crashed)) == 10
    run(make_config(*overrides), crashed)

    expected, got = losses(straight), losses(crashed)
    assert sorted(got) == list(range(1, 25))  # the log reads as one run
    torch.testing.assert_close(
        torch.tensor([got[s] for s in range(1, 25)]),
        torch.tensor([expected[s] for s in range(1, 25)]),
        rtol=1e-5,
        atol=1e-6,
    )
    a = checkpoints.load(straight / "checkpoints/step_0000024.pt")["model"]
    b = checkpoints.load(crashed / "checkpoints/step_0000024.pt")["model"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)


def test_a_scheduler_signal_checkpoints_the_step_then_hands_over_to_the_scheduler(tmp_path, monkeypatch):
    # SLURM / submitit send SIGUSR2 before a time limit; submitit's own handler (here a stand-in) requeues the job.
    from m3bert.training.preemption import SIGNAL
    from m3bert.training.trainer import Trainer

    overrides = [*QUICK, "trainer.max_steps=12", "trainer.save_every=5", "trainer.val_every=100"]
    straight = tmp_path / "straight"
    run(make_config(*overrides), straight)

    requeued = []

    def scheduler(signum, frame):
        requeued.append(signum)
        raise SystemExit(42)

    train_step = Trainer.train_step

    def signalled_at_step_7(self, batches):
        if self.step == 6:
            os.kill(os.getpid(), SIGNAL)  # arrives mid-step, as a real one would
        return train_step(self, batches)

    monkeypatch.setattr(Trainer, "train_step", signalled_at_step_7)
    previous = signal.signal(SIGNAL, scheduler)
    try:
        preempted = tmp_path / "preempted"
        with pytest.raises(SystemExit) as stopped:
            run(make_config(*overrides), preempted)
    finally:
        signal.signal(SIGNAL, previous)
    assert stopped.value.code == 42 and requeued == [SIGNAL]  # the scheduler's handler ran once, after the save
    assert signal.getsignal(SIGNAL) is previous  # and got its signal back
    record = json.loads((preempted / "run.json").read_text())
    assert record["status"] == "preempted" and record["steps"] == 7
    assert [p.name for p in checkpoints.step_checkpoints(preempted / "checkpoints")][-1] == "step_0000007.pt"

    monkeypatch.setattr(Trainer, "train_step", train_step)
    run(make_config(*overrides), preempted)  # the requeued job: same command, same folder
    assert json.loads((preempted / "run.json").read_text())["status"] == "finished"
    expected, got = losses(straight), losses(preempted)
    assert sorted(got) == list(range(1, 13))
    torch.testing.assert_close(torch.tensor([got[s] for s in got]), torch.tensor([expected[s] for s in got]))


def test_without_a_scheduler_a_signal_saves_and_exits_for_a_rerun(tmp_path, monkeypatch):
    from m3bert.training.preemption import EXIT_PREEMPTED, SIGNAL
    from m3bert.training.trainer import Trainer

    train_step = Trainer.train_step

    def signalled(self, batches):
        if self.step == 2:
            os.kill(os.getpid(), SIGNAL)
        return train_step(self, batches)

    monkeypatch.setattr(Trainer, "train_step", signalled)
    with pytest.raises(SystemExit) as stopped:
        run(make_config(*QUICK, "trainer.max_steps=8", "trainer.save_every=100"), tmp_path)
    assert stopped.value.code == EXIT_PREEMPTED
    assert checkpoints.step_checkpoints(tmp_path / "checkpoints")[-1].name == "step_0000003.pt"


def test_finished_run_continues_when_max_steps_is_raised(tmp_path, caplog):
    run(make_config(*QUICK, "trainer.max_steps=4", "trainer.save_every=2", "trainer.keep=1"), tmp_path)
    assert [p.name for p in checkpoints.step_checkpoints(tmp_path / "checkpoints")] == ["step_0000004.pt"]
    with caplog.at_level("INFO"):
        summary = run(make_config(*QUICK, "trainer.max_steps=6", "trainer.save_every=2"), tmp_path)
    assert "Resuming from" in caplog.text and "at step 4" in caplog.text
    assert summary["steps"] == 6 and sorted(losses(tmp_path)) == [1, 2, 3, 4, 5, 6]


def test_resume_with_another_architecture_fails_clearly(tmp_path):
    run(make_config(*QUICK, "trainer.max_steps=2"), tmp_path)
    with pytest.raises(RuntimeError, match="does not fit the configured model"):
        run(make_config(*QUICK, "trainer.max_steps=4", "model.hidden_size=64"), tmp_path)


def test_training_reduces_the_reconstruction_loss(tmp_path):
    summary = run(
        make_config(*QUICK, "trainer.max_steps=60", "optimizer.lr=3e-3", "trainer.val_every=20", "model.dropout=0.0"),
        tmp_path,
    )
    history = losses(tmp_path)
    assert sum(history[s] for s in range(51, 61)) < 0.8 * sum(history[s] for s in range(1, 11))
    assert summary["best"]["val/loss"] < summary["final"]["train/loss"] * 1.5


def test_run_folder_holds_summary_figures_and_checkpoints(tmp_path):
    summary = run(
        make_config(
            *QUICK,
            "trainer.max_steps=4",
            "trainer.val_every=2",
            "trainer.image_every=2",
            "trainer.save_every=2",
            "trainer.keep=1",
        ),
        tmp_path,
    )
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert on_disk["steps"] == summary["steps"] == 4
    for key in ("final", "best", "frames_per_s", "wall_time_s", "git_commit", "precision"):
        assert key in on_disk
    assert on_disk["frames_per_s"] > 0 and on_disk["best"]["step"] in (2, 4)
    assert (tmp_path / "figures/reconstruction_step0000004.png").stat().st_size > 10_000
    assert (tmp_path / "loss_curves.png").exists()
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["best.pt", "step_0000004.pt"]  # keep=1, and no temporary files left behind
    state = checkpoints.load(tmp_path / "checkpoints/step_0000004.pt")
    assert {"model", "optimizer", "scheduler", "scaler", "step", "rng", "sampler", "config"} <= set(state)


def test_non_finite_loss_stops_with_the_step(tmp_path):
    with pytest.raises(FloatingPointError, match=r"non-finite loss .* at step (\d+)") as err:
        run(
            make_config(
                *QUICK, "trainer.max_steps=20", "optimizer.lr=1e30", "trainer.grad_clip=0", "trainer.save_every=1"
            ),
            tmp_path,
        )
    failed_at = int(re.search(r"at step (\d+)", str(err.value)).group(1))
    assert failed_at > 1
    # Checkpoints hold only steps before the divergence.
    saved = [int(p.stem.split("_")[1]) for p in checkpoints.step_checkpoints(tmp_path / "checkpoints")]
    assert saved and max(saved) < failed_at


def test_bf16_autocast_on_cpu_trains(tmp_path):
    summary = run(make_config(*QUICK, "trainer.max_steps=3", "trainer.precision=bf16"), tmp_path)
    assert summary["precision"] == "bf16" and torch.isfinite(torch.tensor(summary["final"]["train/loss"]))


def test_fp16_without_cuda_is_refused(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("fp16 is valid where CUDA is present")
    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
        run(make_config(*QUICK, "trainer.precision=fp16"), tmp_path)


def test_tensorboard_logger_writes_events(tmp_path):
    run(make_config(*QUICK, "trainer.max_steps=2", "logger=tensorboard", "trainer.image_every=2"), tmp_path)
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


def test_tensorboard_is_an_optional_extra_named_when_missing(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if not installed: importing it fails
    with pytest.raises(ConfigError, match=r"logger=tensorboard needs the tensorboard package .*m3bert\[tensorboard\]"):
        run(make_config(*QUICK, "trainer.max_steps=2", "logger=tensorboard"), tmp_path)


def test_wandb_logger_runs_offline_and_resumes_the_same_run(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    run(make_config(*QUICK, "trainer.max_steps=2", "logger=wandb"), tmp_path)
    run_id = (tmp_path / "wandb_id.txt").read_text()
    offline = list((tmp_path / "wandb").glob(f"offline-run-*-{run_id}"))
    assert offline and list(offline[0].glob("*.wandb"))
    run(make_config(*QUICK, "trainer.max_steps=3", "logger=wandb"), tmp_path)
    assert (tmp_path / "wandb_id.txt").read_text() == run_id


def cli(*args, env=None, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "WANDB_MODE": "offline", **(env or {})},
    )


def torchrun(*overrides: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "m3bert.train",
        *overrides,
    ]


def test_sweep_writes_one_run_per_value(tmp_path):
    out = cli(
        "m3bert.train",
        "-m",
        "+experiment=smoke",
        "masking.ratio=0.1,0.2",
        "trainer.max_steps=2",
        "logger=none",
        "trainer.progress=false",
        env={"M3BERT_MULTIRUN": str(tmp_path)},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    runs = sorted(p.parent.name for p in tmp_path.glob("smoke/*/metrics.json"))
    assert runs == ["masking.ratio=0.1", "masking.ratio=0.2"]


def test_sweep_jobs_differing_in_an_excluded_key_get_their_own_folders(tmp_path):
    """trainer.max_steps is left out of run folder names, but a swept key always counts; a rerun skips them."""
    args = ["m3bert.train", "-m", "+experiment=smoke", "trainer.max_steps=4,6", "trainer.val_every=2"]
    args += ["logger=none", "trainer.progress=false"]
    out = cli(*args, env={"M3BERT_MULTIRUN": str(tmp_path)})
    assert out.returncode == 0, out.stderr[-3000:]
    steps = {p.parent.name: json.loads(p.read_text())["steps"] for p in tmp_path.glob("smoke/*/metrics.json")}
    assert steps == {"trainer.max_steps=4,trainer.val_every=2": 4, "trainer.max_steps=6,trainer.val_every=2": 6}
    sweeps = {json.loads(p.read_text())["sweep"]["id"] for p in tmp_path.glob("smoke/*/run.json")}
    assert len(sweeps) == 1 and sweeps.pop().startswith("smoke-")
    again = cli(*args, env={"M3BERT_MULTIRUN": str(tmp_path)})
    assert again.returncode == 0 and again.stderr.count("Skipping") + again.stdout.count("Skipping") == 2


@pytest.mark.slow
def test_sweep_with_the_joblib_launcher(tmp_path):
    out = cli(
        "m3bert.train",
        "-m",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "+experiment=smoke",
        "masking=cfm,patch",
        "trainer.max_steps=2",
        "logger=none",
        "trainer.progress=false",
        env={"M3BERT_MULTIRUN": str(tmp_path)},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert len(list(tmp_path.glob("smoke/*/metrics.json"))) == 2


def one_and_two_processes(tmp_path, overrides: list[str]) -> tuple[dict, dict]:
    """The losses by step of ``overrides`` run by one process with 8 clips a step (in ``tmp_path/one``) and by two
    data-parallel processes with 4 each (``tmp_path/two``)."""
    single = cli("m3bert.train", *overrides, "trainer.batch_size=8", f"hydra.run.dir={tmp_path / 'one'}")
    assert single.returncode == 0, single.stderr[-3000:]
    double = subprocess.run(
        torchrun(*overrides, "trainer.batch_size=4", f"hydra.run.dir={tmp_path / 'two'}"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert double.returncode == 0, double.stderr[-3000:]
    return losses(tmp_path / "one"), losses(tmp_path / "two")


def test_ddp_on_two_cpu_processes_matches_one_process(tmp_path):
    common = [
        "+experiment=smoke",
        "logger=none",
        "trainer.progress=false",
        "trainer.max_steps=4",
        "trainer.log_every=1",
        "trainer.image_every=0",
        "model.dropout=0.0",
        "trainer.val_every=4",
        # Masks are drawn per process, so equality is checked on the unmasked objective.
        "masking=none",
    ]
    one, two = one_and_two_processes(tmp_path, common)
    assert sorted(one) == sorted(two) == [1, 2, 3, 4]
    torch.testing.assert_close(torch.tensor(list(two.values())), torch.tensor(list(one.values())), rtol=1e-4, atol=1e-5)
    metrics = json.loads((tmp_path / "two/metrics.json").read_text())
    assert metrics["world_size"] == 2
    torch.testing.assert_close(
        metrics["best"]["val/loss"],
        json.loads((tmp_path / "one/metrics.json").read_text())["best"]["val/loss"],
        rtol=1e-4,
        atol=1e-5,
    )


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("precision", ["bf16", "fp16", "fp32"])
def test_cuda_amp_trains_and_resumes(tmp_path, precision):
    overrides = [*QUICK, "trainer.device=cuda", f"trainer.precision={precision}", "trainer.save_every=3"]
    summary = run(make_config(*overrides, "trainer.max_steps=3"), tmp_path)
    assert summary["precision"] == precision and summary["device"].startswith("cuda")
    state = checkpoints.load(tmp_path / "checkpoints/step_0000003.pt")
    assert (state["scaler"] is not None) == (precision == "fp16")  # a GradScaler only for fp16
    summary = run(make_config(*overrides, "trainer.max_steps=6"), tmp_path)
    assert summary["steps"] == 6 and all(torch.isfinite(torch.tensor(v)) for v in losses(tmp_path).values())


def test_early_stopping_stops_and_stays_stopped(tmp_path, caplog):
    # A monitor that can only get worse after the first evaluation: the validation loss, maximised.
    overrides = [
        *QUICK,
        "trainer.max_steps=40",
        "trainer.val_every=2",
        "trainer.patience=2",
        "trainer.monitor_mode=max",
        "trainer.save_every=100",
        "optimizer.lr=3e-3",
        "model.dropout=0.0",
    ]
    summary = run(make_config(*overrides), tmp_path)
    assert summary["steps"] < 40 and summary["best"]["step"] == summary["steps"] - 4
    with caplog.at_level("INFO"):
        again = run(make_config(*overrides), tmp_path)
    assert again["steps"] == summary["steps"] and "stopped early" in caplog.text


@pytest.mark.slow
def test_two_processes_killed_and_resumed_match_an_uninterrupted_run(tmp_path):
    # Dropout and masking on: each rank's own random streams must be restored for the runs to agree bitwise.
    common = [
        "+experiment=smoke",
        "logger=none",
        "trainer.progress=false",
        "trainer.max_steps=30",
        "trainer.save_every=5",
        "trainer.keep=10",
        "trainer.log_every=1",
        "trainer.image_every=0",
        "trainer.val_every=100",
        "trainer.batch_size=4",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    straight = subprocess.run(
        torchrun(*common, f"hydra.run.dir={tmp_path / 'straight'}"),
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert straight.returncode == 0, straight.stderr[-3000:]

    killed = tmp_path / "killed"
    process = subprocess.Popen(
        torchrun(*common, f"hydra.run.dir={killed}"),
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 240
    while not (killed / "checkpoints/step_0000010.pt").exists() and process.poll() is None:
        assert time.monotonic() < deadline, "the run never reached step 10"
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not (killed / "metrics.json").exists(), "the run finished before it could be killed"
    resumed = subprocess.run(
        torchrun(*common, f"hydra.run.dir={killed}"), cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Resuming from" in resumed.stderr + resumed.stdout

    expected, got = losses(tmp_path / "straight"), losses(killed)
    assert sorted(got) == sorted(expected) == list(range(1, 31))
    assert [got[s] for s in range(1, 31)] == [expected[s] for s in range(1, 31)]
    a = checkpoints.load(tmp_path / "straight/checkpoints/step_0000030.pt")
    b = checkpoints.load(killed / "checkpoints/step_0000030.pt")
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert len(b["rng"]) == 2 and not torch.equal(b["rng"][0]["torch"], b["rng"][1]["torch"])
