import pytest

from m3bert.bench import loader


def test_loader_benchmark_reports_startup_and_crop_rates_by_name():
    result = loader.run(rows=2000, clips=3, crops=32)
    assert result["rows"] == 2000 and result["feature_files_opened"] == 0
    assert 0 < result["startup_s"]
    assert result["startup_s_1m_extrapolated"] == pytest.approx(result["startup_s"] * 500, rel=0.01)
    assert set(result["crops_per_s_per_worker_by_layout"]) == {"float32", "float16", "packed"}
    assert result["crops_per_s_per_worker"] == result["crops_per_s_per_worker_by_layout"]["float32"] > 0
    assert result["bytes_per_30s_clip"]["float16"] * 2 == result["bytes_per_30s_clip"]["float32"]
