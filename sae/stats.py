"""Claims with their uncertainty: n, mean ± sample sd, and whether a difference is larger than the
noise (Welch's t-test at 5%), in one place for the console, the report and the docs' tables.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

ALPHA = 0.05
"""Significance level of every comparison: Welch's two-sided t-test (unequal variances)."""
TEST_NAME = "Welch's t-test, two-sided, at 5%"
NOT_DISTINGUISHABLE = "not distinguishable"
IMPORTANCE_TRIALS = 20
"""Parameter importances from fewer complete trials than this are marked as indicative only."""


def importance_caveat(complete: int) -> str:
    """``from 6 trials: indicative only, fewer than 20``; empty from IMPORTANCE_TRIALS on."""
    if complete >= IMPORTANCE_TRIALS:
        return ""
    return f"from {complete} trials: indicative only, fewer than {IMPORTANCE_TRIALS}"


@dataclass(frozen=True)
class Summary:
    """n finite values: their mean and sample standard deviation (NaN when n < 2)."""

    n: int
    mean: float
    sd: float

    def __str__(self) -> str:
        return describe(self)


def _finite(values: Iterable[float]) -> np.ndarray:
    arr = np.asarray([float(v) for v in values], dtype=float)
    return arr[np.isfinite(arr)]


def summarize(values: Iterable[float]) -> Summary:
    """The finite values' n, mean and sample sd (ddof 1); NaN and inf are left out."""
    arr = _finite(values)
    if arr.size == 0:
        return Summary(0, math.nan, math.nan)
    sd = float(arr.std(ddof=1)) if arr.size > 1 else math.nan
    return Summary(int(arr.size), float(arr.mean()), sd)


def describe(s: Summary, digits: int = 3) -> str:
    """``0.00485 ± 0.00059 (n=5)``; ``0.00485 (n=1)`` without a spread."""
    if s.n == 0:
        return "no value"
    spread = f" ± {s.sd:.2g}" if s.n > 1 else ""
    return f"{s.mean:.{digits}g}{spread} (n={s.n})"


@dataclass(frozen=True)
class Comparison:
    """Ours against theirs: the two summaries, Welch's p-value, and the verdict in words."""

    ours: Summary
    theirs: Summary
    p: float
    """NaN when the test cannot be made (fewer than two values on a side, or no spread)."""
    direction: str
    """``lower``, ``higher`` or ``not distinguishable``: the difference of the means, said only
    when Welch's test finds it at ALPHA."""

    @property
    def significant(self) -> bool:
        return self.direction != NOT_DISTINGUISHABLE


def compare(ours: Iterable[float], theirs: Iterable[float], alpha: float = ALPHA) -> Comparison:
    """Welch's t-test of two samples; ``direction`` says which way only when p < alpha."""
    from scipy import stats as scipy_stats

    x, y = _finite(ours), _finite(theirs)
    a, b = summarize(x), summarize(y)
    p = math.nan
    if a.n >= 2 and b.n >= 2 and (a.sd > 0 or b.sd > 0):
        with warnings.catch_warnings():
            # scipy warns of precision loss when one side has no spread (a probe at 1.0 on every
            # seed); the p-value still holds, and a warning would break the console's lines
            warnings.simplefilter("ignore", RuntimeWarning)
            p = float(scipy_stats.ttest_ind(x, y, equal_var=False).pvalue)
    direction = NOT_DISTINGUISHABLE
    if math.isfinite(p) and p < alpha:
        direction = "lower" if a.mean < b.mean else "higher"
    return Comparison(a, b, p, direction)


def verdict(c: Comparison, lower_is_better: bool = True) -> str:
    """``better``, ``worse`` or ``not distinguishable`` (with the reason when it was not tested)."""
    if not c.significant:
        if c.ours.n < 2 or c.theirs.n < 2:
            return f"{NOT_DISTINGUISHABLE} (n={c.ours.n} vs n={c.theirs.n}: too few to test)"
        return NOT_DISTINGUISHABLE
    better = (c.direction == "lower") == lower_is_better
    return "better" if better else "worse"


def in_words(label: str, c: Comparison, lower_is_better: bool = True, digits: int = 3) -> str:
    """``test MSE 0.0061 ± 0.0002 (n=3) vs 0.0049 ± 0.0006 (n=5): worse (p=0.01)``."""
    p = f" (p={c.p:.2g})" if math.isfinite(c.p) else ""
    return (
        f"{label} {describe(c.ours, digits)} vs {describe(c.theirs, digits)}: "
        f"{verdict(c, lower_is_better)}{p}"
    )
