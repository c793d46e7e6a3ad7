"""Two torchrun agents (two "nodes" on this machine, loopback only) train as one data-parallel run."""

import json
import os
import socket
import subprocess
import sys

import pytest
import torch
from conftest import ROOT
from test_trainer import cli, losses

COMMON = [
    "+experiment=smoke",
    "logger=none",
    "trainer.progress=false",
    "trainer.log_every=1",
    "trainer.image_every=0",
    "trainer.save_every=2",
    "trainer.val_every=2",
    "model.dropout=0.0",
    "masking=none",  # masks are drawn per process, so equality is checked on the unmasked objective
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def two_nodes(run_dir, *overrides):
    """``torchrun --nnodes 2 --nproc_per_node 1`` twice, as two nodes would each run it, meeting at a c10d
    rendezvous on 127.0.0.1."""
    port = free_port()
    agents = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--nnodes=2",
                "--nproc_per_node=1",
                "--rdzv_backend=c10d",
                f"--rdzv_endpoint=127.0.0.1:{port}",
                "--rdzv_id=m3bert-test",
                "--max_restarts=0",
                "-m",
                "m3bert.train",
                *COMMON,
                *overrides,
                "trainer.batch_size=4",
                f"hydra.run.dir={run_dir}",
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline"},
        )
        for _ in range(2)
    ]
    for agent in agents:
        _, err = agent.communicate(timeout=400)
        assert agent.returncode == 0, err[-3000:]


@pytest.mark.slow
def test_two_nodes_train_checkpoint_and_resume_like_one_process_with_twice_the_batch(tmp_path):
    single = cli(
        "m3bert.train", *COMMON, "trainer.max_steps=4", "trainer.batch_size=8", f"hydra.run.dir={tmp_path / 'one'}"
    )
    assert single.returncode == 0, single.stderr[-3000:]
    # Two nodes stop at step 2 (a checkpoint), then a second launch with a higher max_steps resumes from it.
    two_nodes(tmp_path / "two", "trainer.max_steps=2")
    assert (tmp_path / "two/checkpoints/step_0000002.pt").is_file()
    two_nodes(tmp_path / "two", "trainer.max_steps=4")
    one, two = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert sorted(one) == sorted(two) == [1, 2, 3, 4]
    torch.testing.assert_close(
        torch.tensor([two[s] for s in range(1, 5)]), torch.tensor([one[s] for s in range(1, 5)]), rtol=1e-4, atol=1e-5
    )
    metrics = json.loads((tmp_path / "two/metrics.json").read_text())
    assert metrics["world_size"] == 2
