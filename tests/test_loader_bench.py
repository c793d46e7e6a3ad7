import pytest
from conftest import measured

from benchmarks import loader


def test_loader_benchmark_reports_startup_and_crop_rates_by_name():
    result = loader.run(rows=2000, clips=3, crops=32)
    assert result["rows"] == 2000 and result["feature_files_opened"] == 0
    # Times and rates are the machine's: the test checks they are reported, consistently, never their size.
    assert measured(result["startup_s"]) and measured(result["startup_rss_mb"])
    assert result["startup_s_1m_extrapolated"] == pytest.approx(result["startup_s"] * 500, rel=0.01)
    assert set(result["crops_per_s_per_worker_by_layout"]) == {"float32", "float16", "packed"}
    assert all(measured(rate) for rate in result["crops_per_s_per_worker_by_layout"].values())
    assert result["crops_per_s_per_worker"] == result["crops_per_s_per_worker_by_layout"]["float32"]
    assert result["bytes_per_30s_clip"]["float16"] * 2 == result["bytes_per_30s_clip"]["float32"]


def test_measurements_keep_their_significant_digits_at_any_speed():
    from m3bert.common.tables import rounded

    # A fast machine's 0.4 ms stays 0.4 ms (rounding to 3 decimals made it 0, and a timing test fail).
    assert rounded(0.000412345) == 0.0004123 and rounded(1234.5678) == 1235.0 and rounded(0.0) == 0.0
