"""RegMix's linear regression baseline: ordinary least squares on the domain weights."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from mixopt.fitters.fewruns import warn_few_runs
from mixopt.fitters.varied import VARY_TOL, varying


class LinearFitter(RegressorMixin, BaseEstimator):
    """Least squares ``y ≈ X @ coef_ + intercept_``, as RegMix's linear baseline.

    Weights on the simplex are collinear with the intercept; the least-squares solver returns the
    minimum-norm solution, whose predictions are the same as any other.

    Args:
        fit_intercept: fit an intercept (RegMix does, scikit-learn's default).
    """

    def __init__(self, *, fit_intercept: bool = True) -> None:
        self.fit_intercept = fit_intercept

    def fit(self, X: np.ndarray, y: np.ndarray) -> LinearFitter:
        from sklearn.linear_model import LinearRegression

        X, y = validate_data(self, X, y, multi_output=True, y_numeric=True)
        # One slope per varying domain and the intercept, less one where the varying weights sum to a
        # constant (always on the simplex, held domains or not).
        n_varying = int(varying(X).sum())
        params = n_varying + int(self.fit_intercept and np.ptp(X.sum(axis=1)) > VARY_TOL)
        warn_few_runs("linear", params, n_varying, len(X))
        model = LinearRegression(fit_intercept=self.fit_intercept).fit(X, y)
        self.coef_ = model.coef_
        self.intercept_ = model.intercept_
        return self

    def predict(self, X: np.ndarray, return_std: bool = False):  # noqa: ANN201 - array or (array, None)
        check_is_fitted(self)
        X = validate_data(self, X, reset=False)
        pred = X @ np.asarray(self.coef_).T + self.intercept_
        return (pred, None) if return_std else pred

    def __sklearn_tags__(self):  # noqa: ANN204
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
