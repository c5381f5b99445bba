"""``log-ridge``: ridge regression on the log weights, ``y ≈ a + Σ_i b_i·log(r_i + ε)``.

The first-order form of BiMix's power law (``F·(r + ε)^(−α) ≈ F − F·α·log(r + ε)`` for small α), linear
in its parameters, so it can be fitted by ridge regression with the penalty chosen by efficient
leave-one-out cross-validation (scikit-learn's ``RidgeCV``). It is meant for swarms with fewer runs
than the laws have parameters (32 runs over 64 domains), where the laws refuse to fit and a GP's
length scales are poorly determined; ``auto`` weighs it against the others by cross-validation.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from mixopt.errors import MixoptError

ALPHAS = tuple(float(a) for a in np.logspace(-4, 3, 29))


class LogRidgeFitter(RegressorMixin, BaseEstimator):
    """Ridge on ``log(r + eps)``, penalty by leave-one-out CV.

    Args:
        eps: added to every weight before the log (a domain left out of a run stays finite).
        alphas: penalties tried.
    """

    def __init__(self, *, eps: float = 1e-3, alphas: tuple[float, ...] = ALPHAS) -> None:
        self.eps = eps
        self.alphas = alphas

    def _features(self, X: np.ndarray) -> np.ndarray:
        return np.log(np.clip(np.asarray(X, dtype=float), 0.0, None) + self.eps)

    def fit(self, X: np.ndarray, y: np.ndarray) -> LogRidgeFitter:
        """Fit on weights X (n_runs, n_domains) and y (n_runs,) or (n_runs, n_targets)."""
        from sklearn.linear_model import RidgeCV

        y_arr = np.asarray(y)
        if y_arr.dtype.kind in "fc" and np.isnan(y_arr).any():
            raise MixoptError(
                "log-ridge: the target is NaN in some runs; leave those runs out or fix their metrics"
            )
        X, y = validate_data(self, X, y, multi_output=True, y_numeric=True)
        if len(X) < 3:
            raise MixoptError(f"log-ridge needs at least 3 runs, got {len(X)} sample(s); add runs")
        self.model_ = RidgeCV(alphas=np.asarray(self.alphas, dtype=float)).fit(self._features(X), y)
        self.multi_output_ = np.ndim(y) == 2
        return self

    def predict(self, X: np.ndarray, return_std: bool = False):  # noqa: ANN201 - array or (array, None)
        """Predicted metric, shape (n,) or (n, n_targets); no standard deviation (None)."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False)
        pred = self.model_.predict(self._features(X))
        return (pred, None) if return_std else pred

    def __sklearn_tags__(self):  # noqa: ANN204
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
