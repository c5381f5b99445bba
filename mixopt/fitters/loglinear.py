"""Olmix's log-linear law: ``ŷ = exp(c) + exp(t·x)`` per metric, Huber loss (δ = 0.02), many starts.

The form and defaults follow allenai/olmix (``olmix/fit/utils.py``: ``mixing_law``,
``init_params_log_linear_law``, ``LogLinearRegressor``; ``olmix/fit/law.py``): 300 starts, 10 values
of c in linspace(-2, 1.5) times 30 random t (one random domain gets -U(0, 1), the others U(0, 0.1)),
Huber loss summed over runs with δ = 0.02 in the metric's own units, L-BFGS, the start with the
lowest loss kept. Here the 300 starts take their first L-BFGS steps together and the best are then
run to convergence (:func:`~mixopt.fitters.lawfit.multistart_lbfgs`), and the least-squares starts
of :mod:`mixopt.fitters.mixing_law` are added. It is the Data Mixing Law with a positive floor
``exp(c)``; the exact proposer (:mod:`mixopt.proposers.exact`) solves its mixture in closed convex
form, as Olmix's ``LogLinearExactProposer`` does.
"""

from __future__ import annotations

import numpy as np

from mixopt.fitters.lawfit import MAX_EXPONENT, FitReport, LawFitter, multistart_lbfgs
from mixopt.fitters.mixing_law import exp_affine_batch, exp_terms, loglinear_starts

# Olmix: for log_c_i in np.linspace(-2, 1.5, 10): for _ in range(30): ...
OLMIX_LOG_C = np.linspace(-2.0, 1.5, 10)
OLMIX_T_PER_C = 30


def positive_floor_starts(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The least-squares starts ``[c, b, t]`` of ``c + exp(b + t·x)`` as ``[log c, 0, t']`` of
    ``exp(log c) + exp(t'·x)``, the same law: those with a floor c > 0 (below min(y) > 0).

    The offset b is folded into t' = t + b/s, where every row of X sums to s: the varying domains'
    share, below 1 when a domain held at one weight was dropped. (t + b, right only for s = 1, had
    started such fits away from the law their own least squares found.)
    """
    k = X.shape[1]
    ls = loglinear_starts(X, y) if y.min() > 0 else np.empty((0, k + 2))
    ls = ls[ls[:, 0] > 0]
    if len(ls):
        sums = X.sum(axis=1)
        # rows of unequal sums (not mixtures) have no exact fold: b is added as for s = 1; a sum
        # within rounding of 1 is 1, so fits over every domain start bit for bit as before
        s = float(sums[0]) if np.allclose(sums, sums[0]) and sums[0] > 0 else 1.0
        s = 1.0 if abs(s - 1.0) <= 1e-9 else s
        ls[:, 0] = np.log(ls[:, 0])
        ls[:, 2:] += ls[:, [1]] / s
        ls[:, 1] = 0.0
    return ls


class LogLinearFitter(LawFitter):
    """``exp(c) + exp(t·x)`` per target (Olmix's default law).

    Args:
        huber_delta: Huber threshold in the target's units (Olmix: 0.02).
        starts_per_c: random t per value of c (Olmix: 30, with 10 values of c: 300 starts).
        n_polish: best starts run to convergence.
        random_state: seed of the random starts (Olmix seeds numpy with 42).

    Fitted: ``params_`` per target ``[c, 0, t_1..t_k]`` (the 0 is the unused offset of the shared
    exp-affine form), over the varying domains ``keep_``.
    """

    law = "loglinear"
    positive = True

    def __init__(
        self,
        *,
        huber_delta: float = 0.02,
        starts_per_c: int = OLMIX_T_PER_C,
        n_polish: int = 4,
        random_state: int | None = 42,
        domains: tuple[str, ...] | None = None,
        targets: tuple[str, ...] | None = None,
    ) -> None:
        self.huber_delta = huber_delta
        self.starts_per_c = starts_per_c
        self.n_polish = n_polish
        self.random_state = random_state
        self.domains = domains  # names for messages only
        self.targets = targets

    def _n_params(self, k: int) -> int:
        return k + 1  # c and t

    def _fit_target(
        self, X: np.ndarray, y: np.ndarray, rng: np.random.Generator, extra: np.ndarray | None = None
    ) -> tuple[np.ndarray, FitReport]:
        k = X.shape[1]
        rows = []
        for log_c in OLMIX_LOG_C:
            for _ in range(self.starts_per_c):
                t = rng.uniform(0.0, 0.1, k)
                t[rng.integers(k)] = -rng.uniform(0.0, 1.0)
                rows.append(np.concatenate([[log_c, 0.0], t]))
        starts = np.vstack([np.array(rows).reshape(-1, k + 2), positive_floor_starts(X, y)])
        lo = np.concatenate([[-MAX_EXPONENT, 0.0], np.full(k, -200.0)])
        hi = np.concatenate([[MAX_EXPONENT, 0.0], np.full(k, 200.0)])
        return multistart_lbfgs(
            lambda th: exp_affine_batch(th, X, y, self.huber_delta, positive_floor=True),
            starts,
            bounds=(lo, hi),
            n_polish=self.n_polish,
        )

    def _predict_target(
        self, params: np.ndarray, X: np.ndarray, extra: np.ndarray | None = None
    ) -> np.ndarray:
        return np.exp(params[0]) + np.exp(np.clip(X @ params[2:], -MAX_EXPONENT, MAX_EXPONENT))

    def exp_terms(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each target as ``const + exp(offset + A·x)``: (const (m,), offset (m,), A (m, K))."""
        return exp_terms(self, lambda p: float(np.exp(p[0])))
