"""The exact proposer: minimise a convex law over the search space by a solver, not by sampling.

For the log-linear law and the Data Mixing Law every target is ``const + exp(b_j + A_j·x)``; for
BiMix it is ``Σ_i F_ji·(x_i + ε)^(−α_ji)``. Both are convex in x, so the mixture

    minimise  Σ_j w_j·f_j(x) + λ·KL(x ‖ prior)   subject to  Σx = 1,  lo ≤ x ≤ hi

(w_j: weights of the targets in the objective; lo, hi: floors, ceilings, fixed weights and the
repetition cap of :class:`~mixopt.space.SearchSpace`; λ·KL: Olmix's pull towards the prior, λ = 0.1
as in Olmix's ``LogLinearExactProposer``) has one optimum, found by scipy's SLSQP with analytic
gradients over the free domains (fixed ones are taken out first). The answer is checked against
the KKT conditions of this problem (the projected-gradient step, in weight units) and the residual
reported. Models without a convex form (GP,
LightGBM, an ensemble with one) fall back to RegMix's top-k proposer, and the proposal says so.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from mixopt.errors import MixoptError, MixoptWarning, warn
from mixopt.proposers.proposal import Proposal, check_space
from mixopt.space import SearchSpace
from mixopt.stats import normal_interval

log = logging.getLogger(__name__)

# Projected-gradient residual (in weight units) above which the solve is reported as inexact.
KKT_TOL = 1e-5
# A weight below this is set to 0 in the solution.
DUST = 1e-12
# Smallest weight inside log(x): keeps the KL gradient finite at a zero floor.
TINY = 1e-300


@dataclass(frozen=True)
class ConvexObjective:
    """``Σ_j w_j·f_j(x)`` for convex laws: exp-affine terms and power terms, both optional.

    Attributes:
        exp: (w·const (m,), offset (m,), A (m, K), w (m,)) or None.
        power: (w·F (m, K), α (m, K), ε) or None.
    """

    exp: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
    power: tuple[np.ndarray, np.ndarray, float] | None = None

    def __call__(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """Value and gradient at weights x (K,)."""
        val, grad = 0.0, np.zeros_like(x)
        if self.exp is not None:
            wc, off, A, w = self.exp
            e = w * np.exp(np.clip(off + A @ x, -700, 700))
            val += float(wc.sum() + e.sum())
            grad += A.T @ e
        if self.power is not None:
            F, alpha, eps = self.power
            base = np.clip(x, 0.0, None)[None, :] + eps
            p = F * base ** (-alpha)
            val += float(p.sum())
            grad += (-alpha * p / base).sum(axis=0)
        return val, grad

    def scaled(self, s: float) -> ConvexObjective:
        """The same objective times ``s`` (members of an ensemble are averaged)."""
        exp = None if self.exp is None else (self.exp[0] * s, self.exp[1], self.exp[2], self.exp[3] * s)
        power = None if self.power is None else (self.power[0] * s, self.power[1], self.power[2])
        return ConvexObjective(exp=exp, power=power)

    def plus(self, other: ConvexObjective) -> ConvexObjective:
        def cat(a: Any, b: Any, n: int) -> Any:
            if a is None or b is None:
                return a if b is None else b
            return tuple(np.concatenate([a[i], b[i]]) for i in range(n)) + tuple(a[n:])

        if self.power is not None and other.power is not None and self.power[2] != other.power[2]:
            raise MixoptError("cannot add BiMix laws fitted with different eps")
        power = cat(self.power, other.power, 2)
        return ConvexObjective(exp=cat(self.exp, other.exp, 4), power=power)


def convex_objective(model: Any, target_weights: np.ndarray | None = None) -> ConvexObjective | None:
    """The fitted model as a :class:`ConvexObjective`, or None if it has no convex form.

    ``target_weights`` weight the model's targets (default: their mean).
    """
    from mixopt.fitters.metricsum import MetricSum

    if isinstance(model, MetricSum):  # per-metric laws: the objective's weighted sum of them
        return convex_objective(model.estimator_, model.weights_)
    members = getattr(model, "members_", None)
    if members is not None:  # an ensemble (``auto``): the average of its members
        total: ConvexObjective | None = None
        for m, s in zip(members, model.member_weights_, strict=True):
            part = convex_objective(m, target_weights)
            if part is None:
                return None
            total = part.scaled(s) if total is None else total.plus(part.scaled(s))
        return total
    if hasattr(model, "exp_terms"):
        const, off, A = model.exp_terms()
        w = _weights(len(const), target_weights)
        return ConvexObjective(exp=(w * const, off, A, w))
    if hasattr(model, "power_terms"):
        F, alpha, eps = model.power_terms()
        w = _weights(len(F), target_weights)
        return ConvexObjective(power=(w[:, None] * F, alpha, eps))
    return None


def _weights(m: int, w: np.ndarray | None) -> np.ndarray:
    if w is None:
        return np.full(m, 1.0 / m)
    w = np.asarray(w, dtype=float)
    if w.shape != (m,) or (w < 0).any() or w.sum() <= 0:
        raise MixoptError(f"target weights must be {m} non-negative numbers, not all zero; got {w}")
    return w / w.sum()


def solve(
    objective: Callable[[np.ndarray], tuple[float, np.ndarray]],
    space: SearchSpace,
    *,
    kl: float = 0.1,
    prior: np.ndarray | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Minimise ``objective(x) + kl·KL(x ‖ prior)`` over ``space``; (weights, solver info).

    Raises:
        MixoptError: the space's bounds conflict (the message names them), or the solver failed.
    """
    from scipy.optimize import minimize

    space.check_feasible()
    lo, hi = space.bounds()
    fixed = np.isclose(lo, hi, rtol=0, atol=1e-12)
    free = np.flatnonzero(~fixed)
    x_full = np.where(fixed, lo, 0.0)
    mass = 1.0 - x_full.sum()
    # Floored only where it underflowed to 0 (log(x/q) stays finite): a floor of 1e-12 had changed the
    # problem, and a prior of 1e-14 (1e3 of 1e10 tokens at T = 0.5) took 6.2% where its optimum is 1.9%.
    q = np.full(space.n, 1.0 / space.n) if prior is None else np.maximum(np.asarray(prior, dtype=float), TINY)
    q = q / q.sum()

    def full(z: np.ndarray) -> np.ndarray:
        x = x_full.copy()
        x[free] = z
        return x

    def fun(z: np.ndarray) -> tuple[float, np.ndarray]:
        x = full(z)
        val, grad = objective(x)
        g = grad[free]
        if kl > 0:
            xz = np.maximum(z, TINY)
            val += kl * float(np.sum(xz * np.log(xz / q[free])))
            g = g + kl * (np.log(xz / q[free]) + 1.0)
        return val, g

    info: dict[str, Any] = {"solver": "SLSQP", "kl": kl}  # plus a log-space polish when kl > 0
    if len(free) == 0:
        x = x_full
    else:
        zlo, zhi = lo[free], hi[free]
        # Start at the prior's share of the free mass, projected into the box.
        from mixopt.swarm import project

        z0 = project(space, np.where(fixed, lo, q * mass / max(q[free].sum(), 1e-300)))[free]
        def slsqp(start: np.ndarray) -> Any:
            return minimize(
                fun,
                start,
                jac=True,
                method="SLSQP",
                bounds=list(zip(zlo, zhi, strict=True)),
                constraints=[{"type": "eq", "fun": lambda z: z.sum() - mass,
                              "jac": lambda z: np.ones_like(z)}],
                options={"maxiter": 1000, "ftol": 1e-14},
            )

        def descend(start: np.ndarray) -> tuple[np.ndarray | None, Any, int, bool]:
            """SLSQP from ``start``, restarted where it stopped early, then made exact: (z, result,
            iterations, whether dust was zeroed); z is None where the solver left no finite numbers."""
            res = slsqp(start)
            nit = int(res.nit)
            f_start = fun(start)[0]
            kept = bool(np.all(np.isfinite(res.x)) and res.fun > f_start)
            if kept:  # it left a better start behind: that is the answer, and SLSQP again would repeat it
                res.x, res.fun = start.copy(), f_start
                res.message = f"SLSQP ended above its start ({res.message}); the start is kept"
            # SLSQP can stop early beside a bound where the KL term's log is steep (hypothesis drew a
            # law it left 3.5e-4 from the optimum, "terminated successfully"); started again from its
            # answer it goes on, and at an optimum it stops at once.
            for _ in range(0 if kept else 3):
                if not np.all(np.isfinite(res.x)):
                    break
                again = slsqp(np.clip(res.x, zlo, zhi))
                nit += int(again.nit)
                lower = again.fun < res.fun - 1e-15 * max(1.0, abs(res.fun))
                if not (np.all(np.isfinite(again.x)) and lower):
                    break
                res = again
            if not np.all(np.isfinite(res.x)):
                return None, res, nit, False
            z = np.clip(res.x, zlo, zhi)
            z = _fix_sum(z, zlo, zhi, mass)
            if kl > 0:
                z = _polish_kl(lambda v: objective(full(v))[1][free], fun, z, q[free], zlo, zhi, mass, kl)
            # Weights the optimum puts at 1e-20 are zeros to a training job (Megatron would build a
            # dataset for each); a domain with a floor keeps it.
            dust = (z < DUST) & (zlo <= 0)
            if dust.any() and not dust.all():
                keep = ~dust
                z = np.where(dust, 0.0, z)
                z[keep] = _fix_sum(z[keep], zlo[keep], zhi[keep], mass)  # the mass goes to the others only
            return z, res, nit, bool(dust.any() and not dust.all())

        def kkt(z: np.ndarray) -> float:
            if kl > 0:
                # In weight units: a weight at 1e-283 whose optimum is 1e-27 is off by 1e-27, although
                # the KL gradient there is large (a projected-gradient step would flag it as far off).
                def step(v: np.ndarray) -> np.ndarray:
                    return _kl_fixed_point(objective(full(v))[1][free], q[free], zlo, zhi, mass, kl)

                fp = step(z)
                residual = float(np.abs(z - fp).max())
                if residual > KKT_TOL:
                    # Where the law curves sharply against λ the map overshoots: its Jacobian J has
                    # eigenvalues −k (k > 1), so z − fp = (I − J)(z − x*) is (1 + k)× the distance to
                    # the optimum x*; k is read from the next step. Hypothesis drew such a law: 1.2e-5
                    # here, for a solution 6.4e-7 from the optimum (2.5e-12 above it in the objective).
                    k = float(np.abs(step(fp) - fp).max()) / residual
                    if k > 1:
                        residual /= 1 + k
                return residual
            f_z, g_z = fun(z)
            return _kkt_residual(g_z, z, zlo, zhi, f_z)

        found = descend(z0)
        if found[0] is None:
            raise MixoptError(
                f"the exact solver failed ({found[1].message}); use --method regmix or relax the bounds"
            )
        residual = kkt(found[0])
        if residual > KKT_TOL:
            # SLSQP can stop "successfully" short of the optimum of a steep law, the problem convex
            # as it is (hypothesis: objective 86.6 where a feasible sample had 4.53; 8538 where the
            # optimum, a vertex, is 3328). Start again from the best of sampled mixtures, and from
            # projected gradient descent, which converges on a convex problem however steep; keep
            # whichever answer is lowest.
            from mixopt.swarm import sample_candidates

            cands = sample_candidates(space, 512, seed=0)[:, free]
            starts = {"the best of 512 sampled mixtures": cands[int(np.argmin([fun(c)[0] for c in cands]))],
                      "projected gradient descent": _projected_descent(fun, found[0], zlo, zhi, mass)}
            for label, start in starts.items():
                other = descend(start)
                if other[0] is not None and fun(other[0])[0] < fun(found[0])[0]:
                    found, residual = other, kkt(other[0])
                    info["started_again_from"] = label
        z, res, nit, zeroed = found
        if zeroed:
            info["zeroed_below"] = DUST
        x = full(z)
        info.update(iterations=nit, message=str(res.message), status=int(res.status))
        info["kkt_residual"] = residual
        if info["kkt_residual"] > KKT_TOL:
            warn(
                f"the exact solver stopped with KKT residual {info['kkt_residual']:.2g} "
                f"({res.message}); the mixture may be slightly off the optimum",
                MixoptWarning,
            )
    info["objective"] = float(fun(x[free])[0]) if len(free) else float(objective(x)[0])
    return x, info


def _fix_sum(z: np.ndarray, lo: np.ndarray, hi: np.ndarray, mass: float) -> np.ndarray:
    """Spread a rounding error in Σz over coordinates with room, so the sum is exact."""
    for _ in range(3):
        err = mass - z.sum()
        if abs(err) < 1e-15:
            break
        room = (hi - z) if err > 0 else (z - lo)
        if room.sum() <= 0:
            break
        z = np.clip(z + err * room / room.sum(), lo, hi)
    return z


def _projected_descent(
    fun: Callable[[np.ndarray], tuple[float, np.ndarray]],
    z: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    mass: float,
    iters: int = 10_000,
) -> np.ndarray:
    """Projected gradient descent over {Σz = mass, lo ≤ z ≤ hi}, its step found by backtracking on the
    quadratic upper bound and doubled after each success: slower than SLSQP, but it cannot stop short
    of a convex problem's optimum, however steep the law."""
    f, g = fun(z)
    step = 1.0 / max(float(np.abs(g).max()), 1e-300)
    for _ in range(iters):
        while True:
            cand = _box_simplex_projection(z - step * g, lo, hi, mass)
            fc, gc = fun(cand)
            d = cand - z
            if fc <= f + g @ d + d @ d / (2 * step) or step < 1e-300:
                break
            step *= 0.5
        if float(np.abs(d).max()) < 1e-15 or not np.isfinite(fc):
            break
        # At SLSQP's ftol (1e-14) nothing is left to gain; at a stationary point the doubled step's
        # float noise moves z without lowering f, and all 10,000 steps had been taken (14 s a solve)
        done = not f - fc > 1e-14 * max(abs(f), 1.0)
        z, f, g, step = cand, fc, gc, step * 2
        if done:
            break
    return z


def _polish_kl(
    grad: Callable[[np.ndarray], np.ndarray],
    fun: Callable[[np.ndarray], tuple[float, np.ndarray]],
    z: np.ndarray,
    q: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    mass: float,
    kl: float,
    iters: int = 100,
) -> np.ndarray:
    """Refine z on the KL problem's own optimality condition, x_i = clip(q_i·exp(−(g_i + μ)/λ − 1), lo, hi).

    SLSQP stops at about 1e-8 in weight units, which leaves weights that belong at 1e-20 at 1e-8;
    this fixed-point step (damped so the objective never rises) settles them in log space.
    """

    f = fun(z)[0]
    for _ in range(iters):
        t = _kl_fixed_point(grad(z), q, lo, hi, mass, kl)
        step = 1.0
        while step > 1e-6:
            cand = _fix_sum(
                np.clip(
                    np.exp((1 - step) * np.log(np.maximum(z, 1e-300)) + step * np.log(np.maximum(t, 1e-300))),
                    lo,
                    hi,
                ),
                lo,
                hi,
                mass,
            )
            fc = fun(cand)[0]
            if fc <= f:
                break
            step *= 0.5
        else:
            break
        moved = float(np.abs(cand - z).max())
        z, f = cand, fc
        if moved < 1e-15:
            break
    return z


def _kl_fixed_point(
    g: np.ndarray, q: np.ndarray, lo: np.ndarray, hi: np.ndarray, mass: float, kl: float
) -> np.ndarray:
    """The minimiser of ``g·x + λ·KL(x ‖ q)`` over the box simplex: clip(q·exp(−(g + μ)/λ − 1), lo, hi).

    With ``g`` the objective's gradient at z, the KL problem's optimum is the fixed point of this map.
    """
    base = np.log(q) - g / kl - 1.0
    m_lo, m_hi = float(np.min(base - np.log(np.maximum(hi, 1e-300)))), float(np.max(base)) + 800.0
    for _ in range(200):  # Σ clip(exp(base − μ/λ)) falls as μ grows: bisection on μ/λ
        mid = 0.5 * (m_lo + m_hi)
        if np.clip(np.exp(np.minimum(base - mid, 700)), lo, hi).sum() > mass:
            m_lo = mid
        else:
            m_hi = mid
    return _fix_sum(np.clip(np.exp(np.minimum(base - 0.5 * (m_lo + m_hi), 700)), lo, hi), lo, hi, mass)


def _box_simplex_projection(v: np.ndarray, lo: np.ndarray, hi: np.ndarray, mass: float) -> np.ndarray:
    """Euclidean projection of v onto {Σz = mass, lo ≤ z ≤ hi}: clip(v − τ) for the τ that sums right."""
    t_lo, t_hi = float(np.min(v - hi)) - 1.0, float(np.max(v - lo)) + 1.0
    for _ in range(200):
        mid = 0.5 * (t_lo + t_hi)
        if np.clip(v - mid, lo, hi).sum() > mass:
            t_lo = mid
        else:
            t_hi = mid
    return np.clip(v - 0.5 * (t_lo + t_hi), lo, hi)


def _kkt_residual(g: np.ndarray, z: np.ndarray, lo: np.ndarray, hi: np.ndarray, f: float = 0.0) -> float:
    """Stationarity of z for min f over {Σz = Σz, lo ≤ z ≤ hi}: ‖z − P(z − g/‖g‖∞)‖∞ (0 at the optimum).

    The projected-gradient step is measured in weight units, so a coordinate that should be 1e-12
    and is 1e-9 counts as 1e-9, not as the large gradient of the KL term there. A gradient too small
    to move the objective ``f`` anywhere in the simplex (to first order, by less than 1e-7 of
    ``max(|f|, 1)``, the precision of a gradient at SLSQP's ftol of 1e-14) counts as zero:
    normalised, the 1e-9 noise of a law's gradient at its interior optimum would look like a full step.
    """
    scale = float(np.abs(g).max())
    if 2 * scale <= 1e-7 * max(abs(f), 1.0):
        return 0.0
    return float(np.abs(z - _box_simplex_projection(z - g / scale, lo, hi, float(z.sum()))).max())


def _hold_unvaried(model: Any, space: SearchSpace) -> tuple[SearchSpace, dict[str, float]]:
    """``space`` with the domains the law dropped (the same weight in every run) fixed at that weight.

    The law has no term for such a domain, so the solve would move it only for the KL term's sake
    (towards the prior), into weights no run has tried. Held only where the space allows it.
    """
    from mixopt.fitters.metricsum import MetricSum
    from mixopt.proposers.hold import hold

    inner = model.estimator_ if isinstance(model, MetricSum) else model
    return hold(getattr(inner, "held_", {}), space)


class ExactProposer:
    """Solve the fitted convex law for the best mixture in the space.

    Args:
        kl: λ, weight of KL(x ‖ prior) (Olmix: 0.1); 0 for none.
        temperature: prior = token shares ** (1/temperature) (uniform without token counts).
        target_weights: weights of the model's targets in the objective (default: equal).
        random_state: seed of the top-k fallback for models without a convex form.
        fallback: options of the :class:`~mixopt.proposers.topk.TopKProposer` fallback.
    """

    def __init__(
        self,
        kl: float = 0.1,
        *,
        temperature: float = 1.0,
        target_weights: np.ndarray | None = None,
        random_state: int = 0,
        **fallback: Any,
    ) -> None:
        if not (math.isfinite(kl) and kl >= 0):  # NaN had acted as 0, inf returned uniform with NaN
            raise MixoptError(f"the KL weight must be a finite number ≥ 0, got {kl}")
        self.kl = float(kl)
        self.temperature = temperature
        self.target_weights = target_weights
        self.random_state = random_state
        self.fallback = fallback

    def propose(self, model: Any, space: SearchSpace) -> Proposal:
        """The mixture minimising the model's objective (plus λ·KL) inside ``space``."""
        from mixopt.swarm import prior

        t0 = time.perf_counter()
        check_space(model, space)
        obj = convex_objective(model, self.target_weights)
        extra = {"selection": model.cv_table_} if hasattr(model, "cv_table_") else {}
        space, held = _hold_unvaried(model, space)
        if held:
            extra["held"] = held
        if obj is None:
            from mixopt.proposers.topk import TopKProposer

            log.info("%s has no convex form; proposing with the top-k sampler instead", type(model).__name__)
            options = {"temperature": self.temperature, **self.fallback}
            p = TopKProposer(random_state=self.random_state, **options).propose(model, space)
            return Proposal(
                weights=p.weights,
                predicted=p.predicted,
                std=p.std,
                interval=p.interval,
                method=p.method,
                info={**p.info, "solver": "topk (no convex form)", **extra},
            )
        x, info = solve(obj, space, kl=self.kl, prior=prior(space, self.temperature))
        x = space.snap(x)  # a weight a float error past its bound is set on it
        pred, std = self._predict(model, x)
        interval = normal_interval(pred, std)
        return Proposal(
            weights=x,
            predicted=pred,
            std=std,
            interval=interval,
            method="",
            info={
                **info,
                "temperature": self.temperature,
                "seconds": round(time.perf_counter() - t0, 3),
                **extra,
            },
        )

    def _predict(self, model: Any, x: np.ndarray) -> tuple[float, float | None]:
        out = model.predict(x[None, :], return_std=True)
        mean, std = out
        mean = np.asarray(mean, dtype=float).reshape(-1)
        w = _weights(len(mean), self.target_weights)
        s = (
            None
            if std is None
            else float(np.sqrt(np.sum((w * np.asarray(std, dtype=float).reshape(-1)) ** 2)))
        )
        return float(w @ mean), s
