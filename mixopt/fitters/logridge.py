"""``log-ridge``: ridge regression on the log weights, ``y ≈ a + g·H(r) + Σ_i b_i·log(r_i + ε)``.

The first-order form of BiMix's power law (``F·(r + ε)^(−α) ≈ F − F·α·log(r + ε)`` for small α), linear
in its parameters, so it can be fitted by ridge regression with the penalty chosen by efficient
leave-one-out cross-validation (scikit-learn's ``RidgeCV``). It is meant for swarms with fewer runs
than the laws have parameters (32 runs over 64 domains), where the laws refuse to fit and a GP's
length scales are poorly determined; ``auto`` weighs it against the others by cross-validation.

``H(r) = −Σ r_i·log r_i``, the mixture's entropy, is an unpenalised covariate (partialled out before
the ridge): with 32 runs over 64 domains the ridge shrinks every per-domain slope towards zero, and
how spread a mixture is — one number, which BiMix's entropy-driven mixtures build on — is then the
strongest signal left. ``ε`` is chosen among ``eps`` by the same leave-one-out error as the penalty.

With ``groups`` (each domain's source, :func:`mixopt.mixture.domain_groups` reads them from names
like ``dclm:health``), each source's total weight adds a feature ``s·log(R_g + ε)``: topics of one
source tend to act alike, and one slope per source is learnt from far fewer runs than one per
topic. The scale ``s`` sets how much less that slope is penalised than a topic's, and is chosen by
leave-one-out error from ``group_scales`` (0 turns the source features off).
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from mixopt.errors import MixoptError, TooFewRunsError
from mixopt.fitters.groups import group_matrix
from mixopt.fitters.protocol import check_param, check_targets

ALPHAS = tuple(float(a) for a in np.logspace(-4, 3, 29))
EPS = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
GROUP_SCALES = (0.0, 1.0, 2.0, 4.0, 8.0)


def mixture_entropy(X: np.ndarray) -> np.ndarray:
    """Shannon entropy (nats) of each row of weights; zero weights contribute nothing."""
    from scipy.special import entr

    return entr(np.clip(np.asarray(X, dtype=float), 0.0, None)).sum(axis=1)


def _log_weights(X: np.ndarray, eps: float) -> np.ndarray:
    return np.log(np.clip(np.asarray(X, dtype=float), 0.0, None) + eps)


class LogRidgeFitter(RegressorMixin, BaseEstimator):
    """Ridge on ``log(r + eps)`` with the mixture's entropy as an unpenalised covariate.

    Args:
        eps: added to every weight before the log (a domain left out of a run stays finite); a
            tuple is a grid, the value with the lowest leave-one-out error is kept (``eps_``).
        alphas: penalties tried.
        entropy: add the mixture's entropy as an unpenalised covariate.
        groups: each domain's group (source), one per column of X; None for flat domains.
        group_scales: scales of the group features tried (with ``groups``); the one with the
            lowest leave-one-out error is kept (``group_scale_``).
    """

    MIN_RUNS = 3  # fewest runs a fit takes; a search checks its budget against it before any run

    def __init__(
        self,
        *,
        eps: float | tuple[float, ...] = EPS,
        alphas: tuple[float, ...] = ALPHAS,
        entropy: bool = True,
        groups: tuple[str, ...] | None = None,
        group_scales: tuple[float, ...] = GROUP_SCALES,
    ) -> None:
        self.eps = eps
        self.alphas = alphas
        self.entropy = entropy
        self.groups = groups
        self.group_scales = group_scales

    def _check_params(self) -> None:
        # An empty grid had failed inside sklearn ("'NoneType' object has no attribute 'T'"), a
        # negative eps as "Input X contains NaN" (the log of a negative weight).
        for name, above in (("eps", True), ("alphas", True), ("group_scales", False)):
            value = getattr(self, name)
            grid = (value,) if np.ndim(value) == 0 else tuple(value)
            if not grid:
                raise MixoptError(f"log-ridge: {name} is empty; give one value or more")
            for v in grid:
                check_param("log-ridge", name, v, above=above)

    def _features(self, X: np.ndarray, eps: float, scale: float) -> np.ndarray:
        F = _log_weights(X, eps)
        if scale == 0.0:  # always the case without groups (fit tries no other scale then)
            return F
        return np.hstack([F, scale * _log_weights(np.asarray(X, dtype=float) @ self.group_matrix_, eps)])

    def fit(self, X: np.ndarray, y: np.ndarray) -> LogRidgeFitter:
        """Fit on weights X (n_runs, n_domains) and y (n_runs,) or (n_runs, n_targets)."""
        from sklearn.linear_model import RidgeCV

        check_targets("log-ridge", y)
        self._check_params()
        X, y = validate_data(self, X, y, multi_output=True, y_numeric=True)
        if len(X) < self.MIN_RUNS:
            raise TooFewRunsError(f"log-ridge needs at least {self.MIN_RUNS} runs, got {len(X)} sample(s); "
                                  "add runs", needed=self.MIN_RUNS)
        self.group_matrix_ = group_matrix(self.groups, X.shape[1], fitter="log-ridge")
        scales = tuple(float(v) for v in self.group_scales) if self.group_matrix_.shape[1] else (0.0,)
        self.multi_output_ = np.ndim(y) == 2
        y = np.asarray(y, dtype=float).reshape(len(X), -1)  # one column per target, always
        self.y_mean_ = y.mean(axis=0)
        yc = y - self.y_mean_
        h = mixture_entropy(X)
        self.h_mean_ = float(h.mean())
        hc = h - self.h_mean_
        # An entropy that barely varies (every run alike) would make the partialling-out unstable.
        use_h = self.entropy and len(X) > 3 and float(hc.std()) > 1e-9 * max(1.0, abs(self.h_mean_))
        q = hc / np.linalg.norm(hc) if use_h else np.zeros_like(hc)

        def partial(a: np.ndarray) -> np.ndarray:  # remove the entropy direction (no-op without it)
            return a - np.multiply.outer(q, q @ a)

        grid = (self.eps,) if np.ndim(self.eps) == 0 else tuple(self.eps)
        best = None
        for eps in grid:
            for scale in scales:
                F = self._features(X, float(eps), scale)
                f_mean = F.mean(axis=0)
                Fc = F - f_mean
                model = RidgeCV(alphas=np.asarray(self.alphas, dtype=float), fit_intercept=False)
                model.fit(partial(Fc), partial(yc))
                if best is None or model.best_score_ > best[0]:
                    best = (model.best_score_, float(eps), scale, model, f_mean, Fc)
        _, self.eps_, self.group_scale_, self.model_, self.f_mean_, Fc = best
        # RidgeCV ravels a one-column target's coefficients; keep (n_targets, n_features): the
        # domains' slopes, then the groups' (already multiplied by their scale).
        self.feature_coef_ = self.model_.coef_.reshape(y.shape[1], -1)
        self.coef_ = self.feature_coef_[:, : X.shape[1]]
        self.group_coef_ = self.feature_coef_[:, X.shape[1] :] * self.group_scale_
        # The entropy slope: least squares of what the penalised part leaves, on the entropy alone.
        rest = yc - Fc @ self.feature_coef_.T
        self.entropy_coef_ = (hc @ rest) / (hc @ hc) if use_h else np.zeros_like(self.y_mean_)
        return self

    def predict(self, X: np.ndarray, return_std: bool = False):  # noqa: ANN201 - array or (array, None)
        """Predicted metric, shape (n,) or (n, n_targets); no standard deviation (None)."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False)
        F = self._features(X, self.eps_, self.group_scale_) - self.f_mean_
        h = mixture_entropy(X) - self.h_mean_
        pred = self.y_mean_ + F @ self.feature_coef_.T + np.multiply.outer(h, self.entropy_coef_)
        if not self.multi_output_:
            pred = pred[:, 0]
        return (pred, None) if return_std else pred

    def __sklearn_tags__(self):  # noqa: ANN204
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
