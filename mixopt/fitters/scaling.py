"""Scaling laws in one variable: the step law L(S) = E + B·S^(−β) and the size law L(N) = E + B·N^(−β).

Both have the same form, fitted to many curves at once (one curve per run and metric for the
step law, one per mixture and metric for the size law) with the exponent β shared by all curves,
as Data Mixing Laws ties it (yegcjs/mixinglaws ``pipeline/steplaw.py`` and ``sizelaw.py``,
``tie_alpha="all"``): a shared exponent is what makes two or three rungs enough. For a given β the
law is linear in (E, B), so each curve's E and B come from least squares with E, B ≥ 0 (loss never
rises with scale, and its floor is a loss: the reference writes it exp(log c)) and only β is
searched: a grid over log β, then a bounded scalar refinement. The fit is therefore deterministic and
exact for its β. Without E ≥ 0, a curve that falls with the log of its scale (no bend) took a floor
of −700 and a B of +720 at β's lower bound, and long extrapolations went below zero.

A curve needs at least 2 points (E, B) and all curves together one more (β); with ``exponent``
given, 2 points per curve are enough and nothing is searched.

The step law of a run whose learning rate decays takes its scale as the forward area S1 (the sum
of the rates, :func:`mixopt.schedule.lr_areas`) and one more term, ``− C·S2`` with the annealing
area S2 and C ≥ 0 shared by the curves (Tissue et al. 2024): still linear for a given β, so C comes
from the same least squares.
"""

from __future__ import annotations

from collections.abc import Sequence
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
        C: the shared coefficient of the annealing term ``− C·z`` (0 without one).
    """

    E: np.ndarray
    B: np.ndarray
    beta: float
    x_ref: float
    rms: float
    C: float = 0.0

    def predict(self, x: float | np.ndarray, z: float | np.ndarray = 0.0) -> np.ndarray:
        """Every curve at x (and annealing area z): shape (n_curves,) for a scalar x, (n_curves,
        len(x)) for an array; a z of the same shape as x, or one per curve for a scalar x."""
        u = np.asarray(x, dtype=float) / self.x_ref
        zz = np.asarray(z, dtype=float)
        if u.ndim == 0:
            return self.E + self.B * u ** (-self.beta) - self.C * zz
        return self.E[:, None] + self.B[:, None] * u[None, :] ** (-self.beta) - self.C * zz

    def each(self, x: np.ndarray, z: np.ndarray | float = 0.0) -> np.ndarray:
        """Curve c at its own x[c] (and annealing area z[c]): shape (n_curves,)."""
        u = np.asarray(x, dtype=float) / self.x_ref
        return self.E + self.B * u ** (-self.beta) - self.C * np.asarray(z, dtype=float)


@dataclass(frozen=True)
class _Curves:
    """Curves of any lengths, one row each: row c holds curve c's points where ``m[c]``, and 0 past
    them (one numpy pass over every curve: a loop over curves took minutes at 2,000 runs).

    ``floors[c]``: every value of curve c is > 0 (a loss), so its E ≥ 0; else its floor is free."""

    u: np.ndarray
    y: np.ndarray
    z: np.ndarray | None
    m: np.ndarray
    floors: np.ndarray

    @classmethod
    def of(cls, u: list[np.ndarray], y: list[np.ndarray], z: list[np.ndarray] | None = None) -> _Curves:
        lengths = np.array([len(a) for a in u])
        m = np.arange(lengths.max())[None, :] < lengths[:, None]

        def rows(parts: list[np.ndarray], pad: float) -> np.ndarray:
            out = np.full(m.shape, pad)
            out[m] = np.concatenate(parts)  # row-major: curve by curve, in order
            return out

        return cls(u=rows(u, 1.0), y=rows(y, 0.0), z=None if z is None else rows(z, 0.0), m=m,
                   floors=np.array([bool(np.all(yc > 0)) for yc in y]))

    def split(self, a: np.ndarray) -> list[np.ndarray]:
        return [a[c, self.m[c]] for c in range(len(a))]


def _dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise dot products."""
    return np.einsum("ij,ij->i", a, b)


def _solve(cv: _Curves, beta: float) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Per-curve least squares (E, B ≥ 0) for one β, with a shared C ≥ 0 of ``− C·z`` when the curves
    have z; (E, B, C, sum of squared residuals). A curve with a value ≤ 0 (a metric that is no loss)
    keeps a free floor."""
    v = np.where(cv.m, cv.u ** (-beta), 0.0)
    C = 0.0 if cv.z is None else _shared_c(v, cv)
    target = cv.y if cv.z is None else cv.y + C * cv.z
    E, B = _e_b(v, target, cv.m, cv.floors)
    r = np.where(cv.m, E[:, None] + B[:, None] * v - target, 0.0)
    return E, B, C, float(np.sum(r * r))


def _e_b(v: np.ndarray, y: np.ndarray, m: np.ndarray, floors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each curve's least squares ``y ≈ e + b·v`` with b ≥ 0 and (``floors``) e ≥ 0, exactly; v and y
    are rows, 0 past each curve's points (``m``).

    Two unknowns and a convex loss: when the free optimum breaks a bound, the optimum lies on one of
    the two edges (b = 0, or e = 0), each solved in closed form and clipped to its own bound.
    """
    n = m.sum(axis=1)
    vm, ym = v.sum(axis=1) / n, y.sum(axis=1) / n
    vc = np.where(m, v - vm[:, None], 0.0)
    den = _dot(vc, vc)
    # y centred too, though vc sums to 0: near-constant v at a high loss level lost 7 digits (a review)
    b = _dot(vc, np.where(m, y - ym[:, None], 0.0)) / np.where(den > 0, den, 1.0)
    e = ym - b * vm
    free = (den > 0) & (b >= 0) & ((e >= 0) | ~floors)
    e1 = np.where(floors, np.maximum(ym, 0.0), ym)  # edge b = 0
    vv = _dot(v, v)
    b2 = np.where(vv > 0, np.maximum(_dot(v, y) / np.where(vv > 0, vv, 1.0), 0.0), 0.0)  # edge e = 0
    r1, r2 = np.where(m, e1[:, None] - y, 0.0), np.where(m, b2[:, None] * v - y, 0.0)
    second = floors & (_dot(r2, r2) < _dot(r1, r1))
    return (np.where(free, e, np.where(second, 0.0, e1)), np.where(free, b, np.where(second, b2, 0.0)))


def _off_free_terms(x: np.ndarray, v: np.ndarray, m: np.ndarray, e_held: np.ndarray, b_held: np.ndarray,
                    ) -> np.ndarray:
    """Each row of x projected off the span of its curve's own terms (1 for E, v for B) that are not
    held at their bound of 0."""
    n = m.sum(axis=1)
    xc = np.where(m, x - (x.sum(axis=1) / n)[:, None], 0.0)  # off 1
    vc = np.where(m, v - (v.sum(axis=1) / n)[:, None], 0.0)
    dd, vv = _dot(vc, vc), _dot(v, v)
    off_both = xc - (_dot(vc, xc) / np.where(dd > 0, dd, 1.0))[:, None] * vc  # v ∝ 1: off 1 alone
    off_v = x - (_dot(v, x) / np.where(vv > 0, vv, 1.0))[:, None] * v
    return np.where((~e_held & ~b_held)[:, None], off_both,
                    np.where((e_held & ~b_held)[:, None], off_v,
                             np.where((~e_held & b_held)[:, None], xc, x)))


def _shared_c(v: np.ndarray, cv: _Curves) -> float:
    """The C ≥ 0 of ``y_c ≈ e_c + b_c·v_c − C·z_c`` with every b_c ≥ 0 (and e_c ≥ 0 where ``floors``),
    by active set: C from the parts of y and z that no curve's own free terms explain (each projected
    off the span of those of 1 and v not held at 0), then each (e, b) given C, until the terms held at
    0 stop changing. A term is held when it lies within rounding of 0 (an exact test had flipped on a
    free optimum of 1e-13, and the set cycled); should the set still not settle, the whole problem is
    solved by scipy's bounded least squares instead."""
    y, z, m, floors = cv.y, cv.z, cv.m, cv.floors
    assert z is not None
    tol = 1e-12 * max(1.0, float(np.abs(y).max()))
    e_held = b_held = np.zeros(len(y), dtype=bool)
    scale = float(np.sum(z * z))
    for _ in range(2 * len(y) + 1):
        ry, rz = (_off_free_terms(a, v, m, e_held, b_held) for a in (y, z))
        num, den = -float(np.sum(rz * ry)), float(np.sum(rz * rz))  # y = … − C·z
        # z nearly constant within every curve: its own E absorbs it, and C is not identified.
        C = max(num / den, 0.0) if den > 1e-12 * scale else 0.0
        e, b = _e_b(v, y + C * z, m, floors)
        now_e, now_b = floors & (e <= tol), b <= tol
        if np.array_equal(now_e, e_held) and np.array_equal(now_b, b_held):
            return C
        e_held, b_held = now_e, now_b
    return _shared_c_bvls(cv.split(v), cv.split(y), cv.split(z), list(floors))


def _shared_c_bvls(
    v: list[np.ndarray], y: list[np.ndarray], z: list[np.ndarray], floors: list[bool]
) -> float:
    """C of the stacked problem (every curve's e and b, and C) by scipy's bounded least squares."""
    from scipy.optimize import lsq_linear

    n = len(v)
    rows = [np.r_[np.eye(n)[c], np.eye(n)[c] * vc[p], -zc[p]]
            for c, (vc, zc) in enumerate(zip(v, z, strict=True)) for p in range(len(vc))]
    lower = np.r_[[0.0 if f else -np.inf for f in floors], np.zeros(n + 1)]
    res = lsq_linear(np.array(rows), np.concatenate(y), bounds=(lower, np.inf), method="bvls", tol=1e-12)
    return max(float(res.x[-1]), 0.0)


def fit_power_law(
    x: list[np.ndarray], y: list[np.ndarray], *, exponent: float | None = None, what: str = "scaling law",
    remedy: str = "add a rung or a checkpoint, or give the exponent", anneal: list[np.ndarray] | None = None,
    labels: Sequence[str] | None = None,
) -> PowerLaw:
    """Fit ``E_c + B_c·x^(−β)`` with β shared by every curve c (``− C·z_c`` added with ``anneal``).

    Args:
        x, y: one array of scales (steps, tokens or parameters; > 0) and one of losses per curve.
        exponent: a fixed β (then nothing is searched).
        anneal: one array of annealing areas z per curve (the points of x), for ``− C·z`` with C ≥ 0
            shared by the curves; it needs one more point in all.
        what: the law's name, for error messages.
        remedy: what the user can do when the points are too few (the options of the caller).
        labels: each curve's name in errors (``run r3``; default ``curve 0``, …).

    Raises:
        MixoptError: a curve with fewer than 2 distinct scales, non-positive scales, NaN losses, or
            too few points in all for a free exponent.
    """
    from scipy.optimize import minimize_scalar

    if not x:
        raise MixoptError(f"{what}: no curves to fit")
    xs = [np.asarray(a, dtype=float).ravel() for a in x]
    ys = [np.asarray(b, dtype=float).ravel() for b in y]
    zs = None if anneal is None else [np.asarray(a, dtype=float).ravel() for a in anneal]
    for c, (a, b) in enumerate(zip(xs, ys, strict=True)):
        name = labels[c] if labels is not None else f"curve {c}"
        if a.shape != b.shape or (zs is not None and zs[c].shape != a.shape):
            raise MixoptError(f"{what}: {name} has {len(a)} scales but {len(b)} losses"
                              + ("" if zs is None else f" and {len(zs[c])} annealing areas"))
        if not (np.all(np.isfinite(b)) and np.all(np.isfinite(a))):
            raise MixoptError(f"{what}: {name} has NaN or infinite values; leave that run out")
        if np.any(a <= 0):
            raise MixoptError(
                f"{what}: {name} has a scale ≤ 0; scales (steps, tokens, parameters) must be > 0"
            )
        if len(np.unique(a)) < 2:
            raise MixoptError(
                f"{what}: {name} has {len(np.unique(a))} distinct scale(s) with a value; a curve needs 2 or "
                "more (more checkpoints, or another rung)"
            )
    n_points = sum(len(a) for a in xs)
    n_shared = (exponent is None) + (zs is not None)
    if n_points < 2 * len(xs) + n_shared:
        shared = " and ".join(n for n, on in (("a shared exponent", exponent is None),
                                               ("a shared annealing coefficient", zs is not None)) if on)
        raise MixoptError(
            f"{what}: {n_points} points cannot fit {2 * len(xs) + n_shared} parameters (E and B per curve, "
            f"{shared}); {remedy}"
        )
    x_ref = max(float(a.max()) for a in xs)
    cv = _Curves.of([a / x_ref for a in xs], ys, zs)
    if exponent is not None:
        beta = float(exponent)
    else:
        grid = np.exp(np.linspace(np.log(BETA_RANGE[0]), np.log(BETA_RANGE[1]), 61))
        sse = [_solve(cv, b)[3] for b in grid]
        i = int(np.argmin(sse))
        lo, hi = np.log(grid[max(i - 1, 0)]), np.log(grid[min(i + 1, len(grid) - 1)])
        res = minimize_scalar(
            lambda lb: _solve(cv, float(np.exp(lb)))[3],
            bounds=(lo, hi),
            method="bounded",
            options={"xatol": 1e-10},
        )
        beta = float(np.exp(res.x)) if res.fun <= sse[i] else float(grid[i])
    E, B, C, sse_b = _solve(cv, beta)
    return PowerLaw(E=E, B=B, beta=beta, x_ref=x_ref, rms=float(np.sqrt(sse_b / n_points)), C=C)
