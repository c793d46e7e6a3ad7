"""The extraction benchmark runs and reports real-time factors (no timing asserts: the machine is shared, and a
test never says how fast a machine must be)."""

from conftest import measured

from benchmarks import embeddings as extract


def test_extraction_benchmark_reports_real_time_factors():
    result = extract.run("cpu", seconds=1.0, n_clips=1, sizes=("tiny",), repeats=1, feature_set="logmel128")
    tiny = result["models"]["tiny"]
    assert result["device"] == "cpu" and result["clip_seconds"] == 1.0 and tiny["parameters"] > 0
    assert set(tiny) == {"parameters", "total_s", "rtf", "features_s", "encoder_s", "encoder_rtf"}
    assert all(measured(tiny[k]) for k in ("total_s", "rtf", "features_s", "encoder_s", "encoder_rtf"))
