"""The extraction benchmark runs and reports real-time factors (no timing asserts: the machine is shared)."""

from m3bert.bench import embeddings as extract


def test_extraction_benchmark_reports_real_time_factors():
    result = extract.run("cpu", seconds=1.0, n_clips=1, sizes=("tiny",), repeats=1, feature_set="logmel128")
    tiny = result["models"]["tiny"]
    assert result["device"] == "cpu" and result["clip_seconds"] == 1.0
    assert tiny["rtf"] > 0 and tiny["encoder_rtf"] > 0 and tiny["features_s"] > 0 and tiny["parameters"] > 0
