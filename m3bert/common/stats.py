"""Seeds and significance: the statistics every comparison of runs uses (the report, reproduce's tables).

A configuration's result is a sample over seeds; :func:`mean_std` summarises it and :func:`welch` says whether it
differs from a reference configuration's by more than the seeds' spread explains: Welch's t-test (unequal
variances), which holds up for the small, unequal samples a sweep gives (3 seeds here, 2 there).
"""

from __future__ import annotations

import math
import statistics
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

from m3bert.common.tables import ABSENT, significant

LEVEL = 0.05  # the significance level a difference must reach to "hold"


def finite(values: Sequence[float | None]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(v)]


def mean_std(values: Sequence[float | None]) -> tuple[float, float, int]:
    """Mean, sample standard deviation (nan for one value) and count of the finite ``values``; an exact 0 std
    for identical values."""
    values = finite(values)
    if not values:
        return math.nan, math.nan, 0
    # statistics computes exactly (in fractions): identical values have a std of 0, not 7e-17 of rounding.
    mean = float(statistics.mean(values))
    std = float(statistics.stdev(values)) if len(values) > 1 else math.nan
    return mean, std, len(values)


def format_mean_std(mean: float, std: float, n: int, digits: int | None = None) -> str:
    """``mean ± std (n)``, each with the tables' significant digits (or ``digits`` decimals, as older tables)."""
    if n == 0:
        return ABSENT

    def number(value: float) -> str:
        return f"{value:.{digits}f}" if digits is not None else significant(value)

    return f"{number(mean)} (1)" if n == 1 else f"{number(mean)} ± {number(std)} ({n})"


@dataclass(frozen=True)
class Welch:
    """A sample against a reference sample: ``difference`` of the means (sample - reference) and Welch's
    two-sided p-value; ``p`` is None when either side has fewer than two finite values (no spread to test
    against), nan when both sides have no spread and the same mean."""

    difference: float
    p: float | None
    n: int
    n_reference: int

    @property
    def holds(self) -> bool | None:
        """Whether the difference holds at :data:`LEVEL`; None where it cannot be tested."""
        return None if self.p is None else bool(self.p < LEVEL)

    def verdict(self) -> str:
        if self.p is None:
            return f"untested (n < 2: {self.n} vs {self.n_reference})"
        return "yes" if self.holds else "no"


def welch(sample: Sequence[float | None], reference: Sequence[float | None]) -> Welch:
    """Welch's t-test of ``sample`` against ``reference`` (``scipy.stats.ttest_ind(equal_var=False)``,
    two-sided), over their finite values."""
    from scipy import stats

    sample, reference = finite(sample), finite(reference)
    difference = mean_std(sample)[0] - mean_std(reference)[0]
    if len(sample) < 2 or len(reference) < 2:
        return Welch(difference, None, len(sample), len(reference))
    if max(sample) == min(sample) and max(reference) == min(reference):
        # No spread on either side: scipy warns and answers nan for equal means; different constants differ.
        p = math.nan if difference == 0 else 0.0
    else:
        with warnings.catch_warnings():
            # One side without spread (an accuracy of 1.000 on every seed) is a real sample: scipy's warning about
            # "nearly identical" data is about that side's variance, which is exactly 0 and enters as such.
            warnings.filterwarnings("ignore", "Precision loss", RuntimeWarning)
            p = float(stats.ttest_ind(sample, reference, equal_var=False).pvalue)
    return Welch(difference, p, len(sample), len(reference))
