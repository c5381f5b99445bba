"""Scaling laws in one variable: the step law L(S) = E + B·S^(−β) and the size law L(N) = E + B·N^(−β).

Both have the same form, fitted to many curves at once (one curve per run and metric for the
step law, one per mixture and metric for the size law) with the exponent β shared by all curves,
as Data Mixing Laws ties it (yegcjs/mixinglaws ``pipeline/steplaw.py`` and ``sizelaw.py``,
``tie_alpha="all"``): a shared exponent is what makes two or three rungs enough. For a given β the
law is linear in (E, B), so each curve's E and B come from least squares (B ≥ 0: loss never rises
with scale) and only β is searched: a grid over log β, then a bounded scalar refinement. The fit is
therefore deterministic and exact for its β.

A curve needs at least 2 points (E, B) and all curves together one more (β); with ``exponent``
given, 2 points per curve are enough and nothing is searched.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mixopt.errors import MixoptError

BETA_RANGE = (1e-3, 3.0)


@dataclass(frozen=True, kw_only=True)
class PowerLaw:
    """``E_c + B_c·x^(−β)`` for curves c; x is normalised by ``x_ref`` (the largest x fitted).

    Attributes:
        E, B: per-curve floor and coefficient, shape (n_curves,).
        beta: the shared exponent.
        x_ref: the normalisation of x.
        rms: root-mean-square residual of the fit.
    """

    E: np.ndarray
    B: np.ndarray
    beta: float
    x_ref: float
    rms: float

    def predict(self, x: float | np.ndarray) -> np.ndarray:
        """Every curve at x: shape (n_curves,) for a scalar x, (n_curves, len(x)) for an array."""
        u = np.asarray(x, dtype=float) / self.x_ref
        if u.ndim == 0:
            return self.E + self.B * u ** (-self.beta)
        return self.E[:, None] + self.B[:, None] * u[None, :] ** (-self.beta)


def _solve(u: list[np.ndarray], y: list[np.ndarray], beta: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Per-curve least squares (E, B ≥ 0) for one β; (E, B, sum of squared residuals)."""
    E, B, sse = np.empty(len(u)), np.empty(len(u)), 0.0
    for c, (uc, yc) in enumerate(zip(u, y, strict=True)):
        z = uc ** (-beta)
        zc = z - z.mean()
        b = float(zc @ (yc - yc.mean()) / (zc @ zc)) if zc @ zc > 0 else 0.0
        b = max(b, 0.0)
        e = float(yc.mean() - b * z.mean())
        E[c], B[c] = e, b
        sse += float(np.sum((e + b * z - yc) ** 2))
    return E, B, sse


def fit_power_law(
    x: list[np.ndarray], y: list[np.ndarray], *, exponent: float | None = None, what: str = "scaling law",
    remedy: str = "add a rung or a checkpoint, or give the exponent",
) -> PowerLaw:
    """Fit ``E_c + B_c·x^(−β)`` with β shared by every curve c.

    Args:
        x, y: one array of scales (steps, tokens or parameters; > 0) and one of losses per curve.
        exponent: a fixed β (then nothing is searched).
        what: the law's name, for error messages.
        remedy: what the user can do when the points are too few (the options of the caller).

    Raises:
        MixoptError: a curve with fewer than 2 distinct scales, non-positive scales, NaN losses, or
            too few points in all for a free exponent.
    """
    from scipy.optimize import minimize_scalar

    if not x:
        raise MixoptError(f"{what}: no curves to fit")
    xs = [np.asarray(a, dtype=float).ravel() for a in x]
    ys = [np.asarray(b, dtype=float).ravel() for b in y]
    for c, (a, b) in enumerate(zip(xs, ys, strict=True)):
        if a.shape != b.shape:
            raise MixoptError(f"{what}: curve {c} has {len(a)} scales but {len(b)} losses")
        if not (np.all(np.isfinite(b)) and np.all(np.isfinite(a))):
            raise MixoptError(f"{what}: curve {c} has NaN or infinite values; leave that run out")
        if np.any(a <= 0):
            raise MixoptError(
                f"{what}: curve {c} has a scale ≤ 0; scales (steps, tokens, parameters) must be > 0"
            )
        if len(np.unique(a)) < 2:
            raise MixoptError(
                f"{what}: curve {c} has {len(np.unique(a))} distinct scale(s); a curve needs 2 or "
                "more (more checkpoints, or another rung)"
            )
    n_points = sum(len(a) for a in xs)
    if exponent is None and n_points < 2 * len(xs) + 1:
        raise MixoptError(
            f"{what}: {n_points} points cannot fit {2 * len(xs) + 1} parameters (E and B per curve, "
            f"a shared exponent); {remedy}"
        )
    x_ref = max(float(a.max()) for a in xs)
    us = [a / x_ref for a in xs]
    if exponent is not None:
        beta = float(exponent)
    else:
        grid = np.exp(np.linspace(np.log(BETA_RANGE[0]), np.log(BETA_RANGE[1]), 61))
        sse = [_solve(us, ys, b)[2] for b in grid]
        i = int(np.argmin(sse))
        lo, hi = np.log(grid[max(i - 1, 0)]), np.log(grid[min(i + 1, len(grid) - 1)])
        res = minimize_scalar(
            lambda lb: _solve(us, ys, float(np.exp(lb)))[2],
            bounds=(lo, hi),
            method="bounded",
            options={"xatol": 1e-10},
        )
        beta = float(np.exp(res.x)) if res.fun <= sse[i] else float(grid[i])
    E, B, sse_b = _solve(us, ys, beta)
    return PowerLaw(E=E, B=B, beta=beta, x_ref=x_ref, rms=float(np.sqrt(sse_b / n_points)))
