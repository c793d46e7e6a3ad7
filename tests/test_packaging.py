"""An installed (not editable) m3bert runs from any folder: the wheel carries conf/ as m3bert/conf."""

import subprocess
import sys
import venv

import pytest
from conftest import ROOT


@pytest.mark.slow
def test_a_wheel_install_trains_the_smoke_recipe_from_another_folder(tmp_path):
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", str(ROOT), "-w", str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = tmp_path.glob("m3bert-*.whl")
    # The environment's packages (torch, hydra, ...) are reused; only m3bert itself comes from the wheel.
    venv.create(tmp_path / "env", system_site_packages=True, with_pip=True)
    python = tmp_path / "env" / "bin" / "python"
    install = subprocess.run(
        [python, "-m", "pip", "install", "--no-deps", "-q", str(wheel)], capture_output=True, text=True, timeout=300
    )
    assert install.returncode == 0, install.stderr[-2000:]
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {"PATH": "/usr/bin:/bin", "WANDB_MODE": "offline", "HOME": str(tmp_path)}
    where = subprocess.run(
        [python, "-c", "import m3bert, m3bert.common.configs as c; print(m3bert.__file__); print(c.config_dir())"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
    )
    module_file, conf = where.stdout.split()
    assert str(tmp_path / "env") in module_file and str(tmp_path / "env") in conf, where.stdout
    train = subprocess.run(
        [
            python,
            "-m",
            "m3bert.train",
            "+experiment=smoke",
            "trainer.max_steps=2",
            "trainer.progress=false",
            "logger=none",
        ],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert train.returncode == 0, train.stderr[-3000:]
    assert list(work.glob("experiments/smoke/**/checkpoints/step_0000002.pt"))
