"""The test both comparisons of mixtures use: the search's validation and ``mixopt compare``.

Runs of two mixtures with the same seed share their random numbers (initialisation, data order),
so their difference is paired by seed. One mixture *beats* another when the mean paired difference
passes Student's t at the confidence ``z`` standard errors give a normal (z = 2: 97.7% one-sided),
on n − 1 degrees of freedom: 4.5 standard errors with 3 seeds, 14 with 2, since a standard error
estimated from 2 or 3 runs is itself uncertain.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

Z = 2.0
# Seeds per mixture a command runs at most (search --validate and --retries, compare --seeds): each
# is a run, and a count past any budget had hung before any output
MAX_SEEDS = 100


def finite_or_none(v: Any) -> float | None:
    """``v`` as a float where it is a finite number, else None (a diverged run's NaN, text, None)."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def normal_interval(predicted: float, std: float | None) -> tuple[float, float] | None:
    """The 95% predictive interval of a normal prediction (None without a standard deviation)."""
    return None if std is None else (predicted - 1.96 * std, predicted + 1.96 * std)


def critical_t(z: float, n: int) -> float:
    """Student's t on n − 1 degrees of freedom at the one-sided confidence of z for a normal."""
    from scipy.stats import norm
    from scipy.stats import t as student_t

    return float(student_t.ppf(norm.cdf(z), df=n - 1))


def paired_difference(worse: Sequence[float], better: Sequence[float]) -> tuple[float, float]:
    """Mean and standard error of ``worse − better``, paired by position (two or more pairs)."""
    diff = np.asarray(worse, dtype=float) - np.asarray(better, dtype=float)
    return float(diff.mean()), float(np.std(diff, ddof=1) / math.sqrt(len(diff)))


def t_statistic(mean: float, se: float) -> float:
    """mean / se, with a difference that never varies counted as certain (or as nothing at 0)."""
    if se > 0:
        return mean / se
    return math.inf if mean > 0 else (-math.inf if mean < 0 else 0.0)
