"""The fitter protocol every model of mixture → metric keeps (scikit-learn estimator shape)."""

from __future__ import annotations

from typing import Any, Protocol, Self, runtime_checkable

import numpy as np


@runtime_checkable
class Fitter(Protocol):
    """A scikit-learn style regressor from mixture weights to a metric.

    ``__init__`` takes keyword-only hyper-parameters and only stores them; ``fit`` sets attributes
    ending in ``_`` and returns ``self``; ``predict`` refuses to run before ``fit``; randomness comes
    from ``random_state``. Rows of X are checked to lie on the simplex at the boundary (tables,
    store, proposers), not here, so scikit-learn's own estimator checks run over every fitter.
    """

    def fit(self, X: np.ndarray, y: np.ndarray) -> Self:
        """Fit on weights X (n_runs, n_domains) and metric y (n_runs,) or (n_runs, n_targets)."""
        ...

    def predict(
        self, X: np.ndarray, return_std: bool = False
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray | None]:
        """Predicted metric for rows of X; with ``return_std``, also its standard deviation
        (None for models without one)."""
        ...

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Hyper-parameters, as scikit-learn's ``BaseEstimator`` gives them."""
        ...
