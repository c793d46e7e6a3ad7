"""SLURM through submitit: the launcher composes, a scheduler's tasks become one data-parallel run."""

import json

import pytest
import torch
from conftest import make_config
from test_multinode import COMMON
from test_trainer import cli, losses

from m3bert.training.distributed import first_host, scheduler_env


def test_slurm_variables_become_torch_distributed_ones():
    env = {
        "SLURM_PROCID": "5",
        "SLURM_NTASKS": "8",
        "SLURM_LOCALID": "1",
        "SLURM_JOB_NODELIST": "gpu[03-06],cpu1",
        "SLURM_JOB_ID": "4242",
    }
    mapped = scheduler_env(env)
    assert {k: mapped[k] for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR")} == {
        "RANK": "5",
        "WORLD_SIZE": "8",
        "LOCAL_RANK": "1",
        "MASTER_ADDR": "gpu03",
    }
    assert 20_000 <= int(mapped["MASTER_PORT"]) < 60_000
    assert scheduler_env({**env, "SLURM_PROCID": "0"})["MASTER_PORT"] == mapped["MASTER_PORT"]  # every task agrees
    assert scheduler_env({**env, "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "1234"})["MASTER_ADDR"] == "10.0.0.1"
    assert scheduler_env({**env, "RANK": "0"}) == {}  # torchrun inside the job already set them
    assert scheduler_env({**env, "SLURM_NTASKS": "1"}) == {}
    assert scheduler_env({}) == {}
    assert first_host("node7") == "node7" and first_host("a-b[1]") == "a-b1"


def test_the_slurm_launcher_composes():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="needs the slurm extra: pip install .[slurm]")
    from conftest import CONF
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            "train", overrides=["hydra/launcher=slurm", "hydra.launcher.tasks_per_node=4"], return_hydra_config=True
        )
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher") and launcher.tasks_per_node == 4
    # A time limit requeues (submitit's default of 0 timeouts would give up), and the README tells the true lead.
    assert launcher.max_num_timeout >= 1
    readme = (CONF.parent / "README.md").read_text()
    assert f"signal_delay_s` = {launcher.signal_delay_s} s" in readme
    assert f"--signal=USR2@{launcher.signal_delay_s}" in readme
    assert f"max_num_timeout` = {launcher.max_num_timeout} times" in readme
    assert make_config()  # the default composition is untouched


@pytest.mark.slow
def test_a_two_task_submitit_job_trains_as_one_run(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="needs the slurm extra: pip install .[slurm]")
    single = cli(
        "m3bert.train", *COMMON, "trainer.max_steps=4", "trainer.batch_size=8", f"hydra.run.dir={tmp_path / 'one'}"
    )
    assert single.returncode == 0, single.stderr[-3000:]
    job = cli(
        "m3bert.train",
        "-m",
        "hydra/launcher=submitit_local",
        "hydra.launcher.tasks_per_node=2",
        f"hydra.launcher.submitit_folder={tmp_path / 'submitit'}",
        *COMMON,
        "trainer.max_steps=4",
        "trainer.batch_size=4",
        # loopback only: the tasks meet at 127.0.0.1 rather than at this host's name
        env={
            "M3BERT_MULTIRUN": str(tmp_path / "two"),
            "MASTER_ADDR": "127.0.0.1",
            "GLOO_SOCKET_IFNAME": "lo",
            "OMP_NUM_THREADS": "1",
        },
        timeout=400,
    )
    assert job.returncode == 0, job.stderr[-3000:]
    (run_dir,) = [p.parent for p in (tmp_path / "two").glob("smoke/*/metrics.json")]
    assert json.loads((run_dir / "metrics.json").read_text())["world_size"] == 2
    one, two = losses(tmp_path / "one"), losses(run_dir)
    assert sorted(two) == [1, 2, 3, 4]
    torch.testing.assert_close(
        torch.tensor([two[s] for s in range(1, 5)]), torch.tensor([one[s] for s in range(1, 5)]), rtol=1e-4, atol=1e-5
    )


@pytest.mark.slow
def test_a_job_that_hits_its_time_limit_is_requeued_and_resumes_to_the_same_losses(tmp_path):
    # submitit's local executor signals SIGUSR2 30 s before the 1-minute limit, as SLURM's --signal does; the job
    # (about 45 s of training here) is cut at least once and requeued up to three times, resuming each time.
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="needs the slurm extra: pip install .[slurm]")
    steps = ["trainer.max_steps=700", "trainer.save_every=50", "trainer.val_every=50", "trainer.batch_size=4"]
    straight = cli("m3bert.train", *COMMON, *steps, f"hydra.run.dir={tmp_path / 'straight'}")
    assert straight.returncode == 0, straight.stderr[-3000:]
    job = cli(
        "m3bert.train",
        "-m",
        "hydra/launcher=submitit_local",
        "hydra.launcher.timeout_min=1",
        f"hydra.launcher.submitit_folder={tmp_path / 'submitit'}",
        *COMMON,
        *steps,
        env={"M3BERT_MULTIRUN": str(tmp_path / "job")},
        timeout=400,
    )
    assert job.returncode == 0, job.stderr[-3000:]
    (run_dir,) = [p.parent for p in (tmp_path / "job").glob("smoke/*/run.json")]
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "finished" and record["resumed"] and record["steps"] == 700
    submitit_logs = "".join(p.read_text() for p in (tmp_path / "submitit").rglob("*.err"))
    assert "Caught signal SIGUSR2" in submitit_logs and "timed-out" in submitit_logs  # submitit's own account
    one, two = losses(tmp_path / "straight"), losses(run_dir)
    assert sorted(two) == list(range(1, 701))
    torch.testing.assert_close(torch.tensor([two[s] for s in one]), torch.tensor([one[s] for s in one]))
