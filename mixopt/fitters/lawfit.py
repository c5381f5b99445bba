"""Fitting machinery shared by the functional mixing laws (mixing-law, loglinear, bimix).

:func:`multistart_lbfgs` minimises a robust (Huber) loss from many starts: every start has
its loss is evaluated once (all starts in one batch), the best ``n_screen`` take a few L-BFGS
steps, and the best few of those are run to convergence; the best of those wins. (Moving all
starts as one stacked L-BFGS problem was tried and dropped: the shared line search, set by the
worst starts, threw the good ones into degenerate corners.)

:class:`LawFitter` is the scikit-learn estimator around a law: input checks, constant domains
dropped with a warning, one law per target column, too few runs refused with a message that says
what to do, and a warning with the residuals when no start converged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from mixopt.errors import MixoptError, MixoptWarning, TooFewRunsError, warn
from mixopt.fitters.fewruns import FEWER, warn_few_runs
from mixopt.fitters.protocol import check_param, check_targets
from mixopt.fitters.varied import unvaried, varying

log = logging.getLogger(__name__)

# Largest exponent evaluated: keeps exp() finite for any start (e^60 ≈ 1e26).
MAX_EXPONENT = 60.0

BatchLoss = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def huber(r: np.ndarray, delta: float) -> tuple[np.ndarray, np.ndarray]:
    """Huber loss of residuals ``r`` (elementwise) and its derivative with respect to ``r``."""
    a = np.abs(r)
    quad = a <= delta
    loss = np.where(quad, 0.5 * r * r, delta * (a - 0.5 * delta))
    return loss, np.clip(r, -delta, delta)


@dataclass(frozen=True, kw_only=True)
class FitReport:
    """How one law's fit went.

    Attributes:
        loss: Huber loss of the chosen start.
        converged: L-BFGS reported convergence for the chosen start.
        n_starts: starts tried; ``n_polished``: starts refined to convergence.
        message: the optimiser's message for the chosen start.
    """

    loss: float
    converged: bool
    n_starts: int
    n_polished: int
    message: str


def robust_scale(y: np.ndarray) -> tuple[float, float]:
    """(median, 1.4826 × median absolute deviation) of ``y``: the standard deviation for normal
    data, unmoved by an outlier. The Huber threshold is set in these units; with the standard
    deviation, one run at 1e8 had made every other residual "small" and the fit followed it."""
    y = np.asarray(y, dtype=float)
    mid = float(np.median(y))
    scale = 1.4826 * float(np.median(np.abs(y - mid)))
    if not scale > 0:  # over half the runs equal: fall back to the spread there is
        scale = float(y.std())
    return mid, scale if scale > 0 else 1.0


def multistart_lbfgs(
    fun: BatchLoss,
    starts: np.ndarray,
    *,
    bounds: tuple[np.ndarray, np.ndarray] | None = None,
    batch_iter: int = 15,
    n_screen: int = 32,
    n_polish: int = 4,
    maxiter: int = 3000,
) -> tuple[np.ndarray, FitReport]:
    """Minimise ``fun`` from every row of ``starts``; return the best parameters found.

    Args:
        fun: maps parameters (S, P) to losses (S,) and gradients (S, P), one row per start.
        starts: initial parameters (S, P).
        bounds: (lower, upper) per parameter (P,), or None.
        n_screen: starts kept after evaluating every start's loss once (the lowest).
        batch_iter: L-BFGS iterations each kept start takes before the best are polished.
        n_polish: how many of the best starts are then run to convergence one by one.
        maxiter: iteration cap of each polishing run.
    """
    from threadpoolctl import threadpool_limits

    # These problems are small (a few hundred runs): BLAS threads only add contention, which on a
    # busy machine made each L-BFGS step 30x slower.
    with threadpool_limits(limits=1, user_api="blas"):
        return _multistart(
            fun, np.asarray(starts, dtype=float), bounds, n_screen, batch_iter, n_polish, maxiter
        )


def _multistart(
    fun: BatchLoss,
    starts: np.ndarray,
    bounds: tuple[np.ndarray, np.ndarray] | None,
    n_screen: int,
    batch_iter: int,
    n_polish: int,
    maxiter: int,
) -> tuple[np.ndarray, FitReport]:
    from scipy.optimize import minimize

    S, P = starts.shape
    lo, hi = bounds if bounds is not None else (np.full(P, -np.inf), np.full(P, np.inf))
    starts = np.clip(starts, lo, hi)

    def one(p: np.ndarray) -> tuple[float, np.ndarray]:
        loss, grad = fun(p[None, :])
        if not (np.isfinite(loss[0]) and np.isfinite(grad).all()):
            return 1e30, np.zeros(P)  # an overflowing start: L-BFGS backtracks from it
        return float(loss[0]), grad[0]

    bnds = list(zip(lo, hi, strict=True))
    first, _ = fun(starts)
    keep = np.argsort(np.where(np.isfinite(first), first, np.inf), kind="stable")[: max(1, n_screen)]
    theta = starts[keep].copy()
    if batch_iter > 0:
        for i in range(len(theta)):
            theta[i] = minimize(
                one, theta[i], jac=True, method="L-BFGS-B", bounds=bnds, options={"maxiter": batch_iter}
            ).x
    losses, _ = fun(theta)
    losses = np.where(np.isfinite(losses), losses, np.inf)
    order = np.argsort(losses, kind="stable")[: max(1, n_polish)]

    best: Any = None
    polished = []
    for i in order:
        res = minimize(
            one,
            theta[i],
            jac=True,
            method="L-BFGS-B",
            bounds=bnds,
            options={"maxiter": maxiter, "gtol": 1e-9, "ftol": 1e-12},
        )
        polished.append(res)
        if res.fun < 1e30 and (best is None or res.fun < best.fun):
            best = res
    if best is None:
        raise MixoptError(
            "every start of the law's fit gave a non-finite loss; check the targets for "
            "huge or infinite values"
        )
    return best.x, FitReport(
        loss=float(best.fun),
        converged=bool(best.success) or _at_minimum(best, polished, lo, hi),
        n_starts=S,
        n_polished=len(order),
        message=_said(str(best.message)),
    )


def _said(message: str) -> str:
    """SciPy's L-BFGS-B message, with the reason it leaves out of a failed line search ("ABNORMAL: ")."""
    if message.rstrip().rstrip(":") == "ABNORMAL":
        return "ABNORMAL: the line search found no lower loss from the last point"
    return message


def _at_minimum(best: Any, polished: list[Any], lo: np.ndarray, hi: np.ndarray) -> bool:
    """Whether an L-BFGS-B run that stopped in its line search ("ABNORMAL") is at a minimum anyway.

    At a minimum, rounding makes the line search fail before the tolerances are met; SciPy then says
    only "ABNORMAL". It is a minimum when the projected gradient is ~0, or another start stopped at
    the same loss. An iteration cap reached is never taken for one.
    """
    if not str(best.message).startswith("ABNORMAL"):
        return False
    scale = max(1.0, abs(float(best.fun)))
    g = np.asarray(best.jac, dtype=float)
    free = ~(((best.x <= lo) & (g > 0)) | ((best.x >= hi) & (g < 0)))  # gradients into a bound are no slope
    if np.max(np.abs(g[free]), initial=0.0) <= 1e-6 * scale:
        return True
    # another start, from elsewhere, stopped at the same loss (the same start twice agrees by rote)
    return any(r is not best and r.fun < 1e30 and abs(r.fun - best.fun) <= 1e-9 * scale
               and not np.allclose(r.x, best.x) for r in polished)


class LawFitter(RegressorMixin, BaseEstimator):
    """A functional law fitted per target column; subclasses give the law.

    Subclasses implement ``_n_params(k)`` (parameters per target over k varying domains),
    ``_fit_target(X, y, rng, extra) -> (params, FitReport)`` and ``_predict_target(params, X, extra)``;
    ``extra`` is a per-run covariate that is not a weight (BiMix's training step), or None.
    Fitted state: ``keep_`` (varying domains), ``params_`` (one array per target), ``reports_``.
    """

    law: str = "law"
    # A law whose every value is > 0 (a sum of exponentials, BiMix's product of powers): a target with
    # values ≤ 0 is refused, since the fit could only be a constant above them (a QA pass: silently).
    positive: bool = False

    def _n_params(self, k: int) -> int:
        raise NotImplementedError

    def _fit_target(
        self, X: np.ndarray, y: np.ndarray, rng: np.random.Generator, extra: np.ndarray | None
    ) -> tuple[np.ndarray, FitReport]:
        raise NotImplementedError

    def _predict_target(self, params: np.ndarray, X: np.ndarray, extra: np.ndarray | None) -> np.ndarray:
        raise NotImplementedError

    def planned_n_params(
        self, k: int, targets: Sequence[str] | None = None, varying: Sequence[str] | None = None
    ) -> int:
        """Parameters per target before any fit: of a law over k varying domains (named ``varying``)
        fitted on ``targets`` (metric names); what a search checks its budget against."""
        return self._n_params(k)

    def _target_n_params(self, k: int, j: int, m: int) -> int:
        """Parameters of target j's law (of m) over k varying domains; every target alike unless a
        law fits some targets on fewer domains (BiMix: a domain's own loss on its own share)."""
        return self._n_params(k)

    def _fit_one(
        self, X: np.ndarray, y: np.ndarray, rng: np.random.Generator, extra: np.ndarray | None, j: int, m: int
    ) -> tuple[np.ndarray, FitReport]:
        """Fit target j of m; ``_fit_target`` unless a law fits some targets differently."""
        return self._fit_target(X, y, rng, extra)

    # ----- scikit-learn API -------------------------------------------------------------------
    def fit(self, X: np.ndarray, y: np.ndarray) -> LawFitter:
        """Fit one law per column of y (n_runs,) or (n_runs, n_targets) on weights X (n_runs, n_domains).

        Raises:
            MixoptError: NaN or infinite targets, or fewer runs than the law has parameters.
        """
        X, Y = self._check_xy(X, y)
        self._fit_columns(X, Y)
        return self

    def _check_params(self) -> None:
        """The hyper-parameters every law shares, where it has them (each its own set)."""
        for name, low in (("n_starts", 0), ("starts_per_c", 0), ("n_polish", 1)):
            if hasattr(self, name):
                check_param(self.law, name, getattr(self, name), integer=True, low=low)
        for name in ("huber_delta", "eps"):
            if hasattr(self, name):
                check_param(self.law, name, getattr(self, name), above=True)
        if hasattr(self, "own_share") and not isinstance(self.own_share, bool):
            raise MixoptError(f"{self.law}: own_share must be True or False, got {self.own_share!r}")

    def _check_xy(self, X: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
        self._check_params()
        check_targets(self.law, y)
        X, y = validate_data(self, X, y, multi_output=True, y_numeric=True)
        names = getattr(self, "domains", None)
        if names is not None and len(names) != X.shape[1]:  # had fallen back to another form silently
            raise MixoptError(f"{self.law}: domains names {len(names)} domain(s) "
                              f"({', '.join(map(str, names))}) and the weights have {X.shape[1]} columns; "
                              "give one name per column")
        self.multi_output_ = y.ndim == 2
        Y = np.asarray(y, dtype=float).reshape(len(y), -1)
        if self.positive and (Y <= 0).any():
            raise MixoptError(
                f"{self.law}'s law is positive everywhere, and the target has values ≤ 0 (the smallest "
                f"{Y.min():.4g}); fit a loss or another positive metric (not its negative), or use "
                "mixing-law (c + k·exp(t·r), of either sign)"
            )
        return np.asarray(X, dtype=float), Y

    def _fit_columns(self, X: np.ndarray, Y: np.ndarray, extra: np.ndarray | None = None) -> None:
        n = len(X)
        if n == 1:  # nothing varies in one run: "0 parameters (0 varying domains)" had been said
            need = max(self._n_params(X.shape[1]), 2)
            raise TooFewRunsError(f"{self.law} got 1 sample (run); a law is fitted on runs of different "
                                  f"mixtures: add runs (at least {need}) or {FEWER}", needed=need)
        keep = varying(X)
        dropped = np.flatnonzero(~keep)
        if n > 1 and not keep.any():  # (SciPy's nnls aborts the process on the empty matrix that follows)
            raise MixoptError(
                f"{self.law}: all {n} runs have the same mixture, so the law has no weight to fit; add runs "
                "of other mixtures"
            )
        if len(dropped) and n > 1:
            names = self._names(dropped)
            warn(
                f"{self.law}: domain(s) {names} have the same weight in every run and are dropped from the "
                "law (their effect is part of its constant; the proposal keeps them at that weight, or at "
                "the bound nearest it)",
                MixoptWarning,
            )
        self.keep_ = keep
        # What the runs held the dropped domains at: the law knows nothing of other values.
        self.held_ = unvaried(X)
        k = int(keep.sum())
        p = max(self._target_n_params(k, j, Y.shape[1]) for j in range(Y.shape[1]))
        if n < max(p, 2):
            raise TooFewRunsError(
                f"{self.law} has {p} parameters per target ({k} varying domains) but got only {n} sample(s) "
                f"(runs); add runs (at least {max(p, 2)}) or {FEWER}",
                needed=max(p, 2),
            )
        warn_few_runs(self.law, p, k, n)
        rng = np.random.default_rng(self.random_state)
        Xk = X[:, keep]
        self.params_, self.reports_ = [], []
        # Predictions are held within the targets' range widened by its span on each side: an
        # exponent fitted on 64 domains can blow up away from the runs (one of Olmix's 110 metrics
        # predicted 1e11 for a held-out run, ruining the sum). The convex form the exact solve uses
        # is not clipped; it only grows upward there, where a minimiser does not go.
        span = np.ptp(Y, axis=0)
        self.range_ = np.column_stack([Y.min(axis=0) - span, Y.max(axis=0) + span])
        unconverged = []
        for j in range(Y.shape[1]):
            params, report = self._fit_one(Xk, Y[:, j], rng, extra, j, Y.shape[1])
            self.params_.append(params)
            self.reports_.append(report)
            if not report.converged:
                resid = self._predict_target(params, Xk, extra) - Y[:, j]
                unconverged.append((j, report.message, float(np.sqrt(np.mean(resid**2))),
                                    float(np.max(np.abs(resid)))))
        if unconverged:  # one warning for all targets: a fit over 110 metrics must not print 110 lines
            j, message, rms, worst = max(unconverged, key=lambda u: u[2])
            label = self._target_label(j, Y.shape[1])
            which = (f"the fit of {label}" if len(unconverged) == 1
                     else f"the fits of {len(unconverged)} of {Y.shape[1]} targets (worst: {label})")
            warn(
                f"{self.law}: {which} did not converge ({message}); residuals: RMS {rms:.4g}, "
                f"max |r| {worst:.4g}; predictions may be poor: check them by cross-validation (fit --cv 5, "
                "or --method auto, which scores every method so), or add runs",
                MixoptWarning,
            )

    def _names(self, idx: np.ndarray) -> str:
        names = getattr(self, "domains", None) or getattr(self, "feature_names_in_", None)
        if names is not None and len(names) != self.n_features_in_:
            names = None
        return ", ".join(str(names[i]) if names is not None else f"#{i}" for i in idx)

    def _target_label(self, j: int, n: int) -> str:
        names = getattr(self, "targets", None)
        if names is not None and len(names) == n:
            return repr(names[j])
        return f"target {j}" if n > 1 else "the target"

    def predict(self, X: np.ndarray, return_std: bool = False):  # noqa: ANN201 - array or (array, None)
        """Predicted metric, shape (n,) or (n, n_targets); no standard deviation (None)."""
        check_is_fitted(self)
        X = np.asarray(validate_data(self, X, reset=False), dtype=float)[:, self.keep_]
        return self._finish(X, None, return_std)

    def _finish(self, X: np.ndarray, extra: np.ndarray | None, return_std: bool):  # noqa: ANN202
        cols = [self._predict_target(p, X, extra) for p in self.params_]
        if extra is None:  # over mixtures only; along training steps the law extrapolates on purpose
            cols = [np.clip(c, lo, hi) for c, (lo, hi) in zip(cols, self.range_, strict=True)]
        pred = np.column_stack(cols) if self.multi_output_ else cols[0]
        return (pred, None) if return_std else pred

    def __sklearn_tags__(self):  # noqa: ANN204
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        # A law is a fixed functional form: on arbitrary regression data it may fit poorly.
        tags.regressor_tags.poor_score = True
        tags.target_tags.positive_only = self.positive
        return tags
