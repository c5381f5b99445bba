"""Which domains the runs varied: a weight the same in every run says nothing of other weights.

Laws drop such a domain (its effect is part of their constant), ``auto`` and the proposers hold it
at the runs' weight, a search's plan counts the domains its swarm varies.
"""

from __future__ import annotations

import numpy as np

# Renormalised rows leave a weight constant by design jittering by ~1e-17: that is no variation.
VARY_TOL = 1e-9
# Targets equal to 9 significant digits are one value: losses 3 + 1e-12·w had passed as a landscape
# (a QA pass), and no fitter ranks mixtures on float noise.
FLAT_RTOL = 1e-9


def varying(X: np.ndarray) -> np.ndarray:
    """Boolean mask of the columns of runs ``X`` (n_runs, n_domains) whose weight varies."""
    X = np.asarray(X, dtype=float)
    if len(X) == 0:
        return np.zeros(X.shape[1] if X.ndim == 2 else 0, dtype=bool)
    return np.ptp(X, axis=0) > VARY_TOL


def unvaried(X: np.ndarray) -> dict[int, float]:
    """Column → the weight every run gave it, for the columns of ``X`` that do not vary."""
    X = np.asarray(X, dtype=float)
    if len(X) == 0:
        return {}
    return {int(i): float(np.median(X[:, i])) for i in np.flatnonzero(~varying(X))}


def flat(y: np.ndarray) -> bool:
    """Whether the targets ``y`` are one value to 9 significant digits: nothing to fit or rank."""
    y = np.asarray(y, dtype=float)
    return len(y) > 0 and float(np.ptp(y)) <= FLAT_RTOL * float(np.abs(y).max())
