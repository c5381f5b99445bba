"""The result of a proposer: weights inside the space, with what the model expects of them."""

from __future__ import annotations

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
