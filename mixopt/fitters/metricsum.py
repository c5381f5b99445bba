"""The objective as a weighted sum of per-metric models: how the functional laws are fitted.

Data Mixing Laws, BiMix and Olmix fit their law to each validation domain's loss and sum the
predictions with the objective's weights; one law fitted to the averaged loss is another, worse
model (a sum of exponentials is not an exponential: on RegMix's table the mean-loss law ranks
held-out runs at Spearman 0.58, the sum of per-domain laws at 0.96). :class:`MetricSum` takes
one target column per metric and predicts the objective, so every caller that wants one number
per mixture (cross-validation, the proposers, the search's candidate table) can use it as it
uses any fitter.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.utils.validation import check_is_fitted

from mixopt.errors import MixoptError


def fit_per_metric(estimator: Any, X: np.ndarray, Y: np.ndarray, names: Sequence[str] = (),
                   **fit_params: Any) -> Any:
    """A clone of ``estimator`` fitted on every column of Y, told the columns' names where it takes
    them (BiMix's own-share form reads each metric's domain from its name; without them it falls
    back to the form over every domain's share)."""
    est = clone(estimator)
    if names and "targets" in est.get_params():
        est.set_params(targets=tuple(names))
    return est.fit(X, np.asarray(Y, dtype=float), **fit_params)


def weighted_sum(Y: np.ndarray, weights: Sequence[float]) -> np.ndarray:
    """The objective of per-metric values Y (n, n_metrics) with the metrics' ``weights``."""
    Y = np.asarray(Y, dtype=float)
    w = np.asarray(weights, dtype=float)
    if Y.ndim != 2 or Y.shape[1] != len(w):
        raise MixoptError(
            f"expected one column per metric of the objective ({len(w)}), got an array of shape {Y.shape}"
        )
    return Y @ w


class MetricSum(RegressorMixin, BaseEstimator):
    """``Σ_m w_m · model(x)_m``: one multi-output ``estimator`` fitted on a column per metric.

    Args:
        estimator: an unfitted fitter that takes y of shape (n_runs, n_metrics).
        weights: each metric column's weight in the objective (summing to 1 for a mean).
        names: the metric columns' names, for the estimator's messages.

    ``fit(X, Y)`` takes Y (n_runs, n_metrics); :meth:`objective` turns such a Y into the measured
    objective, which is what :meth:`predict` predicts.
    """

    def __init__(
        self, estimator: Any = None, weights: Sequence[float] = (), names: Sequence[str] = ()
    ) -> None:
        self.estimator = estimator
        self.weights = weights
        self.names = names

    def objective(self, Y: np.ndarray) -> np.ndarray:
        """The objective of per-metric values Y (n, n_metrics)."""
        return weighted_sum(Y, self.weights)

    def fit(self, X: np.ndarray, Y: np.ndarray, **fit_params: Any) -> MetricSum:
        """Fit the estimator on every metric column; ``fit_params`` go to its fit (BiMix's ``steps``)."""
        self.objective(Y)  # checks the shape
        self.estimator_ = fit_per_metric(self.estimator, X, Y, self.names, **fit_params)
        self.weights_ = np.asarray(self.weights, dtype=float)
        self.n_features_in_ = self.estimator_.n_features_in_
        return self

    def predict(self, X: np.ndarray, return_std: bool = False):  # noqa: ANN201 - array or (array, std)
        """The predicted objective (n,); with ``return_std``, its std if the metrics' models give one
        (taken as independent) or None."""
        check_is_fitted(self)
        if not return_std:
            return np.asarray(self.estimator_.predict(X), dtype=float).reshape(len(X), -1) @ self.weights_
        mean, std = self.estimator_.predict(X, return_std=True)
        mean = np.asarray(mean, dtype=float).reshape(len(X), -1) @ self.weights_
        if std is None:
            return mean, None
        std = np.asarray(std, dtype=float).reshape(len(X), -1)
        return mean, np.sqrt((std**2) @ self.weights_**2)

    def score(self, X: np.ndarray, Y: np.ndarray, sample_weight: np.ndarray | None = None) -> float:
        """R² of the predicted objective against the objective of the metric columns Y (what ``fit``
        takes): scikit-learn's own compared the one prediction with every column, and its
        ``cross_val_score`` returned NaN for each fold."""
        from sklearn.metrics import r2_score

        return float(r2_score(self.objective(np.asarray(Y, dtype=float)), self.predict(X),
                              sample_weight=sample_weight))

    def predict_metrics(self, X: np.ndarray) -> np.ndarray:
        """Each metric's prediction (n, n_metrics)."""
        check_is_fitted(self)
        return np.asarray(self.estimator_.predict(X), dtype=float).reshape(len(X), -1)

    def __sklearn_tags__(self):  # noqa: ANN204
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.regressor_tags.poor_score = True
        return tags
