import json

import pandas as pd
import pytest

from m3bert import demo


@pytest.mark.slow
def test_quick_demo_runs_end_to_end_and_reuses_its_work(tmp_path, monkeypatch):
    pytest.importorskip("fluidsynth", reason="the demo corpus needs pyfluidsynth and libfluidsynth")
    for name, folder in (("M3BERT_AUDIO", "audio"), ("M3BERT_DATA", "data"), ("M3BERT_EXPERIMENTS", "runs")):
        monkeypatch.setenv(name, str(tmp_path / folder))
    table = demo.main(["--quick", "logger=none", "trainer.progress=false"])
    assert list(table.columns) == ["task", "metric", "frozen", "finetune", "scratch", "baseline"]
    assert len(table) == 5 and table[["frozen", "finetune", "scratch", "baseline"]].notna().all().all()
    report = tmp_path / "runs/demo_quick/report"
    for name in ("README.md", "results.csv", "pretrain_loss.png", "reconstruction.png", "clip_probe.csv"):
        assert (report / name).exists(), name
    verdict = pd.read_csv(report / "clip_probe_verdict.csv")
    assert set(verdict["label"]) == {"style", "meter", "instrument"} and verdict["baseline_accuracy"].notna().all()
    steps = json.loads((report / "results.json").read_text())["pretrain"]["steps"]
    # A second run finds every stage finished and only rewrites the report.
    checkpoints = sorted((tmp_path / "runs/demo_quick/pretrain/checkpoints").iterdir())
    stamps = [p.stat().st_mtime_ns for p in checkpoints]
    demo.main(["--quick", "logger=none", "trainer.progress=false"])
    assert [p.stat().st_mtime_ns for p in checkpoints] == stamps
    assert json.loads((report / "results.json").read_text())["pretrain"]["steps"] == steps
