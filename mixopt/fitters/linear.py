"""RegMix's linear regression baseline: ordinary least squares on the domain weights."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from mixopt.errors import TooFewRunsError
from mixopt.fitters.fewruns import warn_few_runs
from mixopt.fitters.protocol import check_targets
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

        check_targets("linear", y)
        X, y = validate_data(self, X, y, multi_output=True, y_numeric=True)
        if len(X) < 2:  # it had predicted the one run's value for every mixture without a word
            raise TooFewRunsError(f"linear needs at least 2 runs to fit, got {len(X)} sample(s); add runs",
                                  needed=2)
        # One slope per varying domain and the intercept, less one where the varying weights sum to a
        # constant (always on the simplex, held domains or not).
        keep = varying(X)
        n_varying = int(keep.sum())
        params = n_varying + int(self.fit_intercept and np.ptp(X.sum(axis=1)) > VARY_TOL)
        warn_few_runs("linear", params, n_varying, len(X))
        if self.fit_intercept:
            # A domain no run varied is part of the intercept (its slope 0), as the laws drop it: least
            # squares had fitted slopes to its rounding jitter, and runs of one mixture had predicted
            # 1.0 to 2.9 for other mixtures where every run measured 2.19 on average (a QA pass).
            self.coef_ = np.zeros(np.shape(y)[1:] + (X.shape[1],))
            if keep.any():
                model = LinearRegression().fit(X[:, keep], y)
                self.coef_[..., keep] = model.coef_
                self.intercept_ = model.intercept_
            else:
                self.intercept_ = np.mean(y, axis=0)
        else:  # without an intercept, held domains are what carries the level
            model = LinearRegression(fit_intercept=False).fit(X, y)
            self.coef_, self.intercept_ = model.coef_, model.intercept_
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
