"""The statistics comparisons use (m3bert.common.stats) and how tables print numbers (m3bert.common.tables)."""

import math

import pytest
from scipy import stats

from m3bert.common.stats import format_mean_std, mean_std, welch
from m3bert.common.tables import exact, significant


@pytest.mark.parametrize(
    "sample, reference",
    [([0.61, 0.63, 0.62], [0.60, 0.64, 0.59]), ([0.35, 0.88, 0.44, 0.32], [0.40, 0.87]), ([1.0, 2.0], [5.0, 9.0, 7.5])],
)
def test_welch_is_scipys_unequal_variance_t_test(sample, reference):
    expected = stats.ttest_ind(sample, reference, equal_var=False)
    result = welch(sample, reference)
    assert result.p == pytest.approx(expected.pvalue, rel=1e-12)
    assert result.difference == pytest.approx(sum(sample) / len(sample) - sum(reference) / len(reference))
    assert result.holds == (expected.pvalue < 0.05) and (result.n, result.n_reference) == (len(sample), len(reference))


def test_welch_by_hand():
    # Welch's t and Welch-Satterthwaite degrees of freedom, then the t distribution's two-sided tail.
    a, b = [1.0, 2.0, 3.0, 4.0], [3.0, 5.0, 7.0]
    va, vb = 5 / 3 / 4, 4.0 / 3
    t = (2.5 - 5.0) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / 3 + vb**2 / 2)
    assert welch(a, b).p == pytest.approx(2 * stats.t.sf(abs(t), df), rel=1e-12)


def test_welch_needs_two_runs_a_side_and_says_so():
    result = welch([0.7], [0.5, 0.6, 0.55])
    assert result.p is None and result.holds is None and result.difference == pytest.approx(0.15)
    assert result.verdict() == "untested (n < 2: 1 vs 3)"
    assert welch([0.386] * 3, [0.386] * 3).verdict() == "no"  # no spread and no difference: nothing holds
    assert welch([0.5, 0.5], [0.4, 0.4]).verdict() == "yes"
    assert welch([0.5, math.nan, 0.6], [0.4, 0.45]).n == 2  # non-finite values are not runs


def test_mean_std_and_its_cell():
    assert mean_std([1.0, 2.0, 3.0]) == (2.0, 1.0, 3)
    assert format_mean_std(*mean_std([0.6285, 0.6201, 0.6330])) == "0.627 ± 0.00655 (3)"
    assert format_mean_std(*mean_std([1.0])) == "1.00 (1)"
    assert format_mean_std(*mean_std([])) == "–"
    assert mean_std([22 / 57] * 3)[1] == 0.0  # the same accuracy on every seed: no spread, not rounding noise


@pytest.mark.parametrize(
    "value, text",
    [(5e-4, "5e-4"), (1.0e-3, "1e-3"), (2.5e-5, "2.5e-5"), (0.15, "0.15"), (0.1, "0.1"), (4, "4"), (True, "true"),
     (None, "null"), ("rotary", "rotary"), ([8, 32], "[8, 32]"), (1 / 3, "0.3333333333333333")],
)  # fmt: skip
def test_config_values_print_exactly_as_configured(value, text):
    assert exact(value) == text
    if isinstance(value, float):
        assert float(text) == value  # reads back as the same number


def test_measured_values_keep_three_significant_digits():
    assert [significant(v) for v in (0.628, 1.0, 0.0123456, 12.345, math.nan)] == [
        "0.628",
        "1.00",
        "0.0123",
        "12.3",
        "–",
    ]
