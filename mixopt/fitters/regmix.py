"""RegMix's regression model: one LightGBM regressor per target on the raw domain weights.

Settings follow RegMix (sail-sg/regmix regression_fitting/regression.ipynb): gbdt, objective
``regression`` (L2), 1000 boosting iterations, learning rate 0.01, seed 42, LightGBM's defaults
otherwise (31 leaves, at least 20 runs per leaf, no bagging, no feature subsampling). RegMix stopped
early on its validation split; mixopt does not, so nothing is tuned on data used to judge the fit.
One departure, for swarms smaller than RegMix's 512 runs: at least 20 runs per leaf cannot split
fewer than 40 runs at all (every prediction the same), so the floor is n/8 runs (at least 2) below
160 runs. On RegMix's Pile-CC table (5 draws each, Spearman on its 256 test runs) that gave
0.90 instead of a constant at 32 runs, 0.95 instead of 0.88 at 64, 0.97 instead of 0.95 at 96.
Predictions of many rows (a proposer's 100k–1M candidates) go through
:class:`~mixopt.fitters.treescore.TreeScorer`, which gives the same numbers as LightGBM's predict
about ten times faster.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from mixopt.errors import MixoptError, TooFewRunsError
from mixopt.fitters.protocol import check_param, check_targets

# From this many rows on, predict through the compiled QuickScorer tables.
FAST_PREDICT_ROWS = 4096
# Compiled scorers, keyed by the LightGBM model they were built from (built on first large predict,
# kept out of the estimator's own attributes so predict never changes its state).
_SCORERS: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
_NO_SCORER = object()
_SCORERS_LOCK = threading.Lock()


# Magnitudes LightGBM's float32 labels hold with room for its sums (float32's max is 3.4e38).
FLOAT32_SAFE = 1e30

class RegMixFitter(RegressorMixin, BaseEstimator):
    """LightGBM on the domain weights, RegMix's settings.

    Args:
        n_estimators: boosting iterations (RegMix: 1000).
        learning_rate: shrinkage (RegMix: 0.01).
        num_leaves: leaves per tree (LightGBM's and RegMix's default: 31).
        min_child_samples: runs per leaf at least; None: LightGBM's and RegMix's 20, lowered to
            n/8 (at least 2) when fewer than 160 runs are fitted (``min_child_samples_``).
        random_state: LightGBM's seed (RegMix: 42).
        n_jobs: LightGBM threads for fitting; 1 by default, since a few hundred runs fit faster
            on one thread than with the cost of starting several.
    """

    def __init__(
        self,
        *,
        n_estimators: int = 1000,
        learning_rate: float = 0.01,
        num_leaves: int = 31,
        min_child_samples: int | None = None,
        random_state: int | None = 42,
        n_jobs: int = 1,
    ) -> None:
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.random_state = random_state
        self.n_jobs = n_jobs

    def fit(self, X: np.ndarray, y: np.ndarray) -> RegMixFitter:
        """Fit one regressor per column of y (RegMix fits one per validation loss)."""
        import lightgbm

        check_param("regmix", "n_estimators", self.n_estimators, integer=True, low=1)
        check_param("regmix", "learning_rate", self.learning_rate, above=True)
        check_param("regmix", "num_leaves", self.num_leaves, integer=True, low=2)
        check_param("regmix", "min_child_samples", self.min_child_samples, integer=True, low=1, none_ok=True)
        check_targets("regmix", y)
        X, y = validate_data(self, X, y, multi_output=True, y_numeric=True)
        if len(y) < 2:  # LightGBM's own message ("Found array with 1 sample(s)") names no remedy
            raise TooFewRunsError(f"regmix needs at least 2 runs to fit, got {len(y)} sample(s); add runs",
                                  needed=2)
        Y = y.reshape(len(y), -1)
        top = float(np.nanmax(np.abs(Y))) if Y.size else 0.0
        if top > FLOAT32_SAFE or 0 < top < 1 / FLOAT32_SAFE:
            # LightGBM keeps labels in float32: 3e299 had been predicted as 1e38 for every mixture,
            # 1e-300 as 0, without a word (a QA pass)
            raise MixoptError(f"regmix: the target reaches {top:.3g} in magnitude, outside what LightGBM's "
                              f"float32 labels hold ({1 / FLOAT32_SAFE:g} to {FLOAT32_SAFE:g}); rescale the "
                              "metric (its log, or another unit)")
        mcs = self.min_child_samples
        self.min_child_samples_ = int(mcs) if mcs is not None else min(20, max(2, len(Y) // 8))
        self.models_ = [
            lightgbm.LGBMRegressor(
                boosting_type="gbdt",
                objective="regression",
                n_estimators=self.n_estimators,
                learning_rate=self.learning_rate,
                num_leaves=self.num_leaves,
                min_child_samples=self.min_child_samples_,
                random_state=self.random_state,
                n_jobs=self.n_jobs,
                deterministic=True,
                verbosity=-1,
            ).fit(X, Y[:, j])
            for j in range(Y.shape[1])
        ]
        self.n_outputs_ = Y.shape[1]
        self.multi_output_ = y.ndim == 2
        return self

    def predict(self, X: np.ndarray, return_std: bool = False):  # noqa: ANN201 - array or (array, None)
        """Predicted metric, shape (n,) or (n, n_targets); no standard deviation (None)."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False)
        cols = [self._predict_one(m, X) for m in self.models_]
        pred = np.column_stack(cols) if self.multi_output_ else cols[0]
        return (pred, None) if return_std else pred

    @staticmethod
    def _predict_one(model: Any, X: np.ndarray) -> np.ndarray:
        if len(X) >= FAST_PREDICT_ROWS:
            with _SCORERS_LOCK:  # a proposer predicts chunks in threads: build the tables once
                scorer = _SCORERS.get(model)
                if scorer is None:
                    from mixopt.fitters.treescore import TreeScorer

                    scorer = TreeScorer.from_booster(model.booster_) or _NO_SCORER
                    _SCORERS[model] = scorer
            if scorer is not _NO_SCORER:
                return scorer.predict(X)
        return model.predict(X)

    def __sklearn_tags__(self):  # noqa: ANN204
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
