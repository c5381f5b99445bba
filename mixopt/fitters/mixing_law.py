"""Data Mixing Laws (Ye et al., 2024): ``L(r) = c + k·exp(Σ_j t_j·r_j)`` per target.

One law per target column (a validation domain's loss, or the objective itself); the objective of
several targets is the weighted sum of their predictions, which the exact proposer
(:mod:`mixopt.proposers.exact`) minimises directly. The law is written ``c + exp(b + t·r)``
(k = e^b > 0) and fitted on the target centred and scaled robustly (median, 1.4826 × MAD) by
multi-start L-BFGS on a Huber loss
(:func:`~mixopt.fitters.lawfit.multistart_lbfgs`); the family is closed under positive affine maps
of the target, so the parameters are mapped back exactly. Starts: log-linear least squares of
``log(y - c)`` on the weights for a ladder of floors c below the smallest target (close to the
optimum when the law holds), plus random ones. On the simplex (rows sum to 1) t is defined up to a
constant shift, which is moved into b so that t has mean 0.

Nested use across scale (step and size laws before the mixing law) lives in
:mod:`mixopt.fitters.scaling`.
"""

from __future__ import annotations

import numpy as np

from mixopt.fitters.lawfit import (
    MAX_EXPONENT,
    FitReport,
    LawFitter,
    huber,
    multistart_lbfgs,
    robust_scale,
)

# Floors tried for the log-linear starts, as multiples of the target's range below its minimum.
FLOOR_LADDER = (0.02, 0.1, 0.3, 1.0, 3.0)


def exp_affine_batch(
    theta: np.ndarray, X: np.ndarray, y: np.ndarray, delta: float, *, positive_floor: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Huber loss and gradient of ``floor + exp(b + X t)`` for S parameter rows ``[c, b, t]``.

    ``positive_floor`` makes the floor ``exp(c)`` (Olmix's log-linear form) instead of ``c``.
    Shapes: theta (S, 2 + K), X (n, K), y (n,) -> losses (S,), gradients (S, 2 + K).
    """
    c, b, T = theta[:, 0], theta[:, 1], theta[:, 2:]
    z = np.clip(b[:, None] + T @ X.T, -MAX_EXPONENT, MAX_EXPONENT)
    E = np.exp(z)
    floor = np.exp(np.clip(c, -MAX_EXPONENT, MAX_EXPONENT)) if positive_floor else c
    R = floor[:, None] + E - y[None, :]
    loss, psi = huber(R, delta)
    dc = psi.sum(axis=1) * (floor if positive_floor else 1.0)
    PE = psi * E
    grad = np.column_stack([dc, PE.sum(axis=1), PE @ X])
    return loss.sum(axis=1), grad


def loglinear_starts(X: np.ndarray, y: np.ndarray, ladder: tuple[float, ...] = FLOOR_LADDER) -> np.ndarray:
    """Starts ``[c, b, t]`` from least squares of ``log(y - c)`` on X for floors c below min(y)."""
    span = max(float(np.ptp(y)), 1e-12)
    A = np.column_stack([np.ones(len(X)), X])
    out = []
    for s in ladder:
        c = float(y.min()) - s * span
        coef = np.linalg.lstsq(A, np.log(y - c), rcond=None)[0]
        out.append(np.concatenate([[c], coef]))
    return np.array(out)


def center_on_simplex(params: np.ndarray, row_sum: float | None) -> np.ndarray:
    """Move the mean of t into b when every row sums to ``row_sum`` (then only t's differences matter)."""
    if row_sum is None or len(params) <= 2:
        return params
    p = params.copy()
    shift = p[2:].mean()
    p[2:] -= shift
    p[1] += shift * row_sum
    return p


class MixingLawFitter(LawFitter):
    """``L(r) = c + exp(b + t·r)`` per target, fitted by multi-start L-BFGS on a Huber loss.

    Args:
        n_starts: random starts besides the least-squares ones.
        huber_delta: Huber threshold in units of the target's robust scale (1.4826 MAD).
        n_polish: best starts refined to convergence.
        random_state: seed of the random starts.

    Fitted: ``params_`` per target ``[c, b, t_1..t_k]`` in the target's units, over the varying
    domains ``keep_``; ``reports_`` per target.
    """

    law = "mixing-law"

    def __init__(
        self,
        *,
        n_starts: int = 32,
        huber_delta: float = 0.5,
        n_polish: int = 4,
        random_state: int | None = 0,
        domains: tuple[str, ...] | None = None,
        targets: tuple[str, ...] | None = None,
    ) -> None:
        self.n_starts = n_starts
        self.huber_delta = huber_delta
        self.n_polish = n_polish
        self.random_state = random_state
        self.domains = domains  # names for messages only
        self.targets = targets

    def _n_params(self, k: int) -> int:
        return k + 1  # c, k and t; on the simplex one of (k, t) is redundant

    def _fit_target(
        self, X: np.ndarray, y: np.ndarray, rng: np.random.Generator, extra: np.ndarray | None = None
    ) -> tuple[np.ndarray, FitReport]:
        mu, sd = robust_scale(y)
        ys = (y - mu) / sd
        k = X.shape[1]
        starts = [loglinear_starts(X, ys)]
        if self.n_starts > 0:
            rnd = np.column_stack(
                [
                    ys.min() - rng.uniform(0.05, 2.0, self.n_starts),
                    rng.normal(0.0, 1.0, self.n_starts),
                    rng.normal(0.0, 2.0, (self.n_starts, k)),
                ]
            )
            starts.append(rnd)
        lo = np.concatenate([[-1e3, -MAX_EXPONENT], np.full(k, -200.0)])
        hi = np.concatenate([[1e3, MAX_EXPONENT], np.full(k, 200.0)])
        theta, report = multistart_lbfgs(
            lambda th: exp_affine_batch(th, X, ys, self.huber_delta),
            np.vstack(starts),
            bounds=(lo, hi),
            n_polish=self.n_polish,
        )
        params = np.concatenate([[theta[0] * sd + mu, theta[1] + np.log(sd)], theta[2:]])
        sums = X.sum(axis=1)
        return center_on_simplex(params, float(sums[0]) if np.allclose(sums, sums[0]) else None), report

    def _predict_target(
        self, params: np.ndarray, X: np.ndarray, extra: np.ndarray | None = None
    ) -> np.ndarray:
        z = np.clip(params[1] + X @ params[2:], -MAX_EXPONENT, MAX_EXPONENT)
        return params[0] + np.exp(z)

    def exp_terms(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each target as ``const + exp(offset + A·x)``: (const (m,), offset (m,), A (m, K)), all domains."""
        return exp_terms(self, lambda p: p[0])


def exp_terms(model: LawFitter, floor: object) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(const, offset, A)`` of a fitted exp-affine law; dropped domains get 0 in A."""
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(model)
    m, K = len(model.params_), len(model.keep_)
    A = np.zeros((m, K))
    const, offset = np.empty(m), np.empty(m)
    for j, p in enumerate(model.params_):
        const[j] = floor(p)  # type: ignore[operator]
        offset[j] = p[1]
        A[j, model.keep_] = p[2:]
    return const, offset, A
