"""The result of a proposer: weights inside the space, with what the model expects of them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True, kw_only=True)
class Proposal:
    """A proposed mixture.

    Attributes:
        weights: one weight per domain of the space, in its order; inside the space.
        predicted: objective the model predicts for ``weights`` (the measured value for a run).
        std: predictive standard deviation, where the model has one.
        interval: (low, high) predictive interval, where the model has one.
        method: name of the method that proposed it.
        info: proposer details (candidates scored, k, whether the average was projected, ...).
    """

    weights: np.ndarray
    predicted: float
    std: float | None = None
    interval: tuple[float, float] | None = None
    method: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    def as_dict(self, domains: tuple[str, ...] | list[str]) -> dict[str, Any]:
        """JSON-ready form with weights by domain name."""
        return {
            "weights": {d: float(w) for d, w in zip(domains, self.weights, strict=True)},
            "predicted": self.predicted,
            "std": self.std,
            "interval": list(self.interval) if self.interval is not None else None,
            "method": self.method,
            "info": self.info,
        }


def extrapolation_note(predicted: float | None, y: np.ndarray, method: str) -> str | None:
    """A note when a proposal's predicted objective lies further below the best run than the runs'
    whole spread: the model is then extrapolating beyond its data (linear-in-log laws do this on
    sparse swarms), and its prediction is not evidence; None otherwise (and for no prediction)."""
    y = np.asarray(y, dtype=float)
    y = y[np.isfinite(y)]
    if predicted is None or len(y) < 2 or not np.isfinite(predicted):
        return None
    best, spread = float(y.min()), float(np.ptp(y))
    gain = best - float(predicted)
    if spread <= 0 or gain <= spread:
        return None
    return (f"the {method} model predicts {predicted:.4g} for its proposal, {gain:.3g} below the best run "
            f"({best:.4g}): more than the runs' whole spread ({spread:.3g}), so it is extrapolating beyond "
            "its data; validate the mixture before using it, or bound the space (--max-weight, --min-weight)")


def beyond_runs_note(weights: np.ndarray, X: np.ndarray, domains: tuple[str, ...] | list[str],
                     method: str, fixed: Iterable[str] = ()) -> str | None:
    """A note naming the domains the proposal gives clearly more weight than any run had.

    No run says what such a weight does: the model extrapolates along that domain (Olmix's
    64-domain table has domains above 0 in one run of 512). "Clearly": over 1.5× the largest weight
    of the runs and at least 0.01 more. None when there is none.
    """
    X = np.asarray(X, dtype=float)
    if X.ndim != 2 or len(X) == 0:
        return None
    top = X.max(axis=0)
    w = np.asarray(weights, dtype=float)
    held = set(fixed)  # a weight --fix sets is the user's, not the model's reach
    over = [i for i in np.argsort(-(w - top))
            if w[i] > 1.5 * top[i] and w[i] - top[i] >= 0.01 and domains[i] not in held]
    if not over:
        return None
    named = ", ".join(f"{domains[i]} {w[i]:.3g} (runs: at most {top[i]:.3g})" for i in over[:3])
    more = f" and {len(over) - 3} more" if len(over) > 3 else ""
    first = over[0]
    return (f"the proposal gives more weight than any run had to {named}{more}: the {method} model "
            "extrapolates there; validate it, or cap those domains (e.g. --max-weight "
            f"{domains[first]}={top[first]:.3g})")


def worse_than_best_note(predicted: float | None, best_predicted: float | None, best_run: str,
                         method: str) -> str | None:
    """A note when the model predicts its own proposal worse than the best run (None otherwise).

    Top-k proposers average the k best of their sampled candidates, which can land between optima.
    """
    if predicted is None or best_predicted is None or not predicted > best_predicted + 1e-12:
        return None
    return (f"the {method} proposal is predicted worse than the best run inside the constraints "
            f"({predicted:.5g} against {best_predicted:.5g} for run {best_run}, by the same model); "
            "that run's mixture may be the better choice")


def misfit_note(fit_rms: float | None, runs_std: float | None, method: str) -> str | None:
    """A note when the model misses the runs it was fitted on: in-sample RMS error above half the
    runs' own spread (None otherwise)."""
    if fit_rms is None or not runs_std or not fit_rms > 0.5 * runs_std:
        return None
    return (f"the {method} model fits its own runs poorly: in-sample RMS error {fit_rms:.3g} against the "
            f"runs' spread (std) {runs_std:.3g}; its predictions are rough, try another method")
