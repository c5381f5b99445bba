"""Swarm sampling: the candidate mixtures that proxy runs (and proposers) look at.

Sampling follows RegMix (sail-sg/regmix mixture_config/synthesize_mixture.py) and Olmix: a prior
from the domains' token counts with a temperature (``tokens ** (1/T)``, uniform when counts are
unknown), Dirichlet draws whose total concentration is picked per row from 15 values log-spaced over
0.1–5 (so the concentration of domain i is 0.1–5 × its prior), and rejection of rows that break a
cap (ceilings, the repetition cap ``max_epochs × tokens / target_tokens``). Floors (``min_weight``
and per-domain floors) are met by construction: the Dirichlet draw spreads only the mass left after
the floors and the fixed weights. Near-duplicates (L1 or L-inf distance at most ``min_distance``) of
each other or of ``existing`` rows are rejected, as RegMix's ``sort_and_deduplicate`` does.

:func:`sample_candidates` is the fast path for proposers (100k–1M rows): no duplicate check, and
rows still missing after a few rounds of rejection are projected into the space instead.
:func:`project` is the Euclidean projection onto the space (box ∩ simplex), used for that and by
baselines and proposers.
"""

from __future__ import annotations

import logging
from numbers import Integral
from typing import Literal

import numpy as np

from mixopt.errors import MixoptError
from mixopt.space import SearchSpace

log = logging.getLogger(__name__)

# RegMix's MIN_STRENGH, MAX_STRENGH and the 15 strengths it picks from.
MIN_STRENGTH = 0.1
MAX_STRENGTH = 5.0
STRENGTHS = np.logspace(np.log10(MIN_STRENGTH), np.log10(MAX_STRENGTH), 15)
# RegMix's sort_and_deduplicate threshold (L1).
DEFAULT_MIN_DISTANCE = 1e-5
# RegMix draws SAMPLE_MULTIPLIER = 100 candidates per requested row before giving up.
DEFAULT_MAX_TRIES = 100

# sample_candidates stops rejecting draws once a round accepts fewer than this share: caps that
# bind on most of 300 domains accepted 0.04%, and five rounds of 4× the rows wanted took 86 s and
# 4.3 GB for 100k candidates where projecting them takes seconds (a QA pass).
MIN_ACCEPT = 0.01
# Largest draw held in memory at once (rows × domains): 32 MB of float64.
_MAX_BATCH_CELLS = 4_000_000

Distance = Literal["l1", "linf"]


def prior_name(space: SearchSpace, temperature: float = 1.0) -> str:
    """What :func:`prior` is, in words, for the mixture JSON (the KL term pulls towards it)."""
    if space.tokens is None:
        return "uniform (no token counts)"
    return "token shares" + (f" ** (1/{temperature:g})" if temperature != 1 else "")


def prior(space: SearchSpace, temperature: float = 1.0) -> np.ndarray:
    """The sampling prior over ``space.domains``: token shares ** (1/temperature), normalised.

    Uniform when the space has no token counts. Shape ``(n_domains,)``, sums to 1.
    """
    if not temperature > 0:
        raise MixoptError(f"temperature must be > 0, got {temperature}")
    if space.tokens is None:
        return np.full(space.n, 1.0 / space.n)
    toks = np.array([max(float(space.tokens[d]), 0.0) for d in space.domains])
    if toks.sum() <= 0:
        raise MixoptError("token counts are all zero; give the domains' token counts or none at all")
    p = (toks / toks.sum()) ** (1.0 / temperature)
    return p / p.sum()


class _Layout:
    """Which domains move, their floors and caps, and the mass the Dirichlet draw spreads."""

    def __init__(self, space: SearchSpace, temperature: float) -> None:
        self.n = space.n
        self.lo, self.hi = space.bounds()
        fixed = np.array([d in space.fixed for d in space.domains])
        self.free = np.flatnonzero(~fixed)
        self.fixed = np.flatnonzero(fixed)
        self.fixed_w = self.lo[self.fixed]
        p = prior(space, temperature)[self.free]
        # A domain without tokens has prior 0 and never gets mass; all-zero priors fall back to uniform.
        self.alpha = p / p.sum() if p.sum() > 0 else np.full(len(self.free), 1.0 / max(len(self.free), 1))
        self.lo_free = self.lo[self.free]
        self.hi_free = self.hi[self.free]
        self.slack = 1.0 - self.fixed_w.sum() - self.lo_free.sum()

    def draw(self, m: int, rng: np.random.Generator, *, fast: bool = False) -> np.ndarray:
        """``m`` rows or fewer (all-zero Dirichlet draws are dropped); floors and fixed weights hold.

        ``fast`` draws the gamma variates in float32 (about 40% quicker; the rows are still float64
        and sum to 1), for candidate sets where the last digits do not matter.
        """
        out = np.empty((m, self.n))
        out[:, self.fixed] = self.fixed_w
        if len(self.free) == 0:
            return out
        strength = STRENGTHS[rng.integers(0, len(STRENGTHS), size=m)]
        shape = self.alpha[None, :] * strength[:, None]
        if fast:
            g = rng.standard_gamma(shape.astype(np.float32), dtype=np.float32)
            total = g.sum(axis=1, dtype=np.float64)
        else:
            g = rng.standard_gamma(shape)
            total = g.sum(axis=1)
        keep = total > 0  # tiny concentrations can underflow every component to 0
        out = out[keep]
        out[:, self.free] = self.lo_free + self.slack * (g[keep] / total[keep, None])
        return out

    def within_caps(self, w: np.ndarray) -> np.ndarray:
        return np.all(w[:, self.free] <= self.hi_free + 1e-12, axis=1)


def project(space: SearchSpace, w: np.ndarray) -> np.ndarray:
    """Euclidean projection of rows ``w`` (n_rows, n_domains) or one row onto the space.

    The projection of ``v`` onto {lo ≤ x ≤ hi, Σx = 1} is ``clip(v - τ, lo, hi)`` for the τ that
    makes it sum to 1; τ is found by bisection, row by row in parallel.
    """
    w = np.asarray(w, dtype=float)
    one = w.ndim == 1
    v = np.atleast_2d(w)
    if v.shape[1] != space.n:
        raise MixoptError(f"expected {space.n} weights per row, got {v.shape[1]}")
    lo, hi = space.bounds()
    t_lo = np.min(v - hi, axis=1) - 1.0  # every coordinate at its ceiling: sum ≥ 1
    t_hi = np.max(v - lo, axis=1) + 1.0  # every coordinate at its floor: sum ≤ 1
    for _ in range(100):
        mid = 0.5 * (t_lo + t_hi)
        s = np.clip(v - mid[:, None], lo, hi).sum(axis=1)
        above = s > 1.0
        t_lo = np.where(above, mid, t_lo)
        t_hi = np.where(above, t_hi, mid)
    x = np.clip(v - 0.5 * (t_lo + t_hi)[:, None], lo, hi)
    # Put the last rounding residue on coordinates strictly inside their bounds.
    resid = 1.0 - x.sum(axis=1)
    room = np.where(resid[:, None] > 0, hi - x, x - lo)
    room_sum = room.sum(axis=1)
    ok = room_sum > 0
    x[ok] += resid[ok, None] * room[ok] / room_sum[ok, None]
    x = np.clip(x, lo, hi)
    return x[0] if one else x


# Above this many candidate pairs per row the projection screen is no better than a KD-tree.
_MAX_PAIRS_PER_ROW = 64


def _screen(n_domains: int, distance: Distance) -> tuple[np.ndarray, float]:
    """A fixed random direction v and the factor c with |v·a - v·b| ≤ c × dist(a, b)."""
    v = np.random.default_rng(0x5EED).standard_normal(n_domains)
    return v, float(np.abs(v).max() if distance == "l1" else np.abs(v).sum())


def _dist(a: np.ndarray, b: np.ndarray, distance: Distance) -> np.ndarray:
    d = np.abs(a - b)
    return d.sum(axis=1) if distance == "l1" else d.max(axis=1)


def _ranges(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All (i, j) with lo[i] ≤ j < hi[i], as two index arrays."""
    counts = np.maximum(hi - lo, 0)
    i = np.repeat(np.arange(len(lo)), counts)
    start = np.repeat(lo - np.cumsum(counts) + counts, counts)
    return i, start + np.arange(counts.sum())


def _near_duplicates(
    cand: np.ndarray, kept: np.ndarray, min_distance: float, distance: Distance
) -> np.ndarray:
    """Mask of candidate rows to keep: not within ``min_distance`` of ``kept`` nor of an earlier candidate.

    Close pairs are screened with a random projection (rows within the distance are within
    ``c × min_distance`` along it), so the usual case of a tiny threshold costs a sort; crowded
    cases (large thresholds) fall back to a KD-tree.
    """
    keep = np.zeros(len(cand), dtype=bool)
    if len(cand) == 0:
        return keep
    # Exact copies first (skewed priors make many): keeps the pair lists below short.
    _, first = np.unique(cand, axis=0, return_index=True)
    keep[first] = True
    v, c = _screen(cand.shape[1], distance)
    bound = c * min_distance * (1 + 1e-9) + 1e-12
    pc = cand @ v
    idx = np.flatnonzero(keep)
    if len(kept):
        pk = kept @ v
        order = np.argsort(pk, kind="stable")
        ks = pk[order]
        lo = np.searchsorted(ks, pc[idx] - bound, side="left")
        hi = np.searchsorted(ks, pc[idx] + bound, side="right")
        if (hi - lo).sum() <= _MAX_PAIRS_PER_ROW * len(idx):
            a, b = _ranges(lo, hi)
            close = _dist(cand[idx[a]], kept[order[b]], distance) <= min_distance
            keep[idx[a[close]]] = False
        else:
            from scipy.spatial import cKDTree

            d, _ = cKDTree(kept).query(cand[idx], k=1, p=1 if distance == "l1" else np.inf,
                                       distance_upper_bound=min_distance * (1 + 1e-12))
            keep[idx[np.isfinite(d)]] = False
    idx = np.flatnonzero(keep)
    order = np.argsort(pc[idx], kind="stable")
    ps = pc[idx][order]
    hi = np.searchsorted(ps, ps + bound, side="right")
    lo = np.arange(len(ps)) + 1
    if (hi - lo).clip(0).sum() <= _MAX_PAIRS_PER_ROW * len(idx):
        a, b = _ranges(lo, hi)
        a, b = idx[order[a]], idx[order[b]]
        close = _dist(cand[a], cand[b], distance) <= min_distance
        pairs = np.column_stack([np.minimum(a, b), np.maximum(a, b)])[close]
    else:
        from scipy.spatial import cKDTree

        pairs = idx[cKDTree(cand[idx]).query_pairs(r=min_distance, p=1 if distance == "l1" else np.inf,
                                                   output_type="ndarray")]
    if len(pairs):
        # Greedy in row order: row j goes if an earlier row that stays is too close to it.
        pairs = pairs[np.argsort(pairs[:, 1], kind="stable")]
        js, starts = np.unique(pairs[:, 1], return_index=True)
        ends = np.append(starts[1:], len(pairs))
        for j, a0, b0 in zip(js, starts, ends, strict=True):
            if keep[pairs[a0:b0, 0]].any():
                keep[j] = False
    return keep


def _box_simplex_draws(lo: np.ndarray, hi: np.ndarray, m: int, rng: np.random.Generator) -> np.ndarray:
    """``m`` rows with ``lo ≤ x ≤ hi`` and ``Σx = 1``: each coordinate, in a random order per row,
    uniform over what the remaining mass and the other coordinates' bounds still allow.

    Not uniform over the polytope, but feasible and spread out however tight the bounds are.
    """
    n = len(lo)
    order = np.argsort(rng.random((m, n)), axis=1)
    lo_o, hi_o = lo[order], hi[order]
    lo_rest = np.cumsum(lo_o[:, ::-1], axis=1)[:, ::-1] - lo_o  # bounds of the coordinates still to come
    hi_rest = np.cumsum(hi_o[:, ::-1], axis=1)[:, ::-1] - hi_o
    vals, rest = np.empty((m, n)), np.ones(m)
    for j in range(n):
        a = np.maximum(lo_o[:, j], rest - hi_rest[:, j])
        b = np.maximum(np.minimum(hi_o[:, j], rest - lo_rest[:, j]), a)
        vals[:, j] = rest if j == n - 1 else a + (b - a) * rng.random(m)
        vals[:, j] = np.clip(vals[:, j], lo_o[:, j], hi_o[:, j])
        rest = rest - vals[:, j]
    out = np.empty((m, n))
    np.put_along_axis(out, order, vals, axis=1)
    return out


def sample_swarm(
    space: SearchSpace,
    n: int,
    *,
    seed: int,
    temperature: float = 1.0,
    existing: np.ndarray | None = None,
    min_distance: float | None = None,
    distance: Distance = "l1",
    max_tries: int = DEFAULT_MAX_TRIES,
) -> np.ndarray:
    """Sample ``n`` distinct mixtures inside ``space``, RegMix/Olmix style.

    Args:
        space: the feasible mixtures (floors, ceilings, fixed weights, repetition cap).
        n: rows wanted.
        seed: the same seed and arguments give the same rows.
        temperature: prior = token shares ** (1/temperature); 1 is the natural distribution.
        existing: rows already run (n_existing, n_domains); new rows keep away from them.
        min_distance: rows closer than this (``distance``) to each other or to ``existing`` are
            near-duplicates and rejected. None: RegMix's 1e-5 (L1); 0 turns the check off.
        distance: ``"l1"`` or ``"linf"``.
        max_tries: at most ``max_tries × n`` draws; rows that still break a cap after that are
            projected into the space (logged), as an over-tight space would otherwise never fill.

    Returns:
        Array (n, n_domains); every row satisfies ``space.contains``.

    Raises:
        MixoptError: the space does not hold ``n`` rows that far apart.
    """
    if not isinstance(n, Integral) or n < 0:  # 2.5 had met a TypeError about slice indices
        raise MixoptError(f"cannot sample {n!r} mixtures; ask for a whole number n ≥ 0")
    if distance not in ("l1", "linf"):
        raise MixoptError(f"distance {distance!r} is unknown; use 'l1' or 'linf'")
    min_distance = DEFAULT_MIN_DISTANCE if min_distance is None else float(min_distance)
    if min_distance < 0:
        raise MixoptError(f"min_distance is {min_distance}; it must be ≥ 0")
    if n > 1 and (single := single_mixture(space)) is not None:  # before any draw is rejected
        raise single
    lay = _Layout(space, temperature)
    rng = np.random.default_rng(seed)
    prev = np.empty((0, space.n))
    if existing is not None:
        prev = np.asarray(existing, dtype=float).reshape(-1, space.n)
    rows = np.empty((0, space.n))

    def add(w: np.ndarray) -> np.ndarray:
        """``rows`` with the draws ``w`` that keep ``min_distance`` from every row so far, up to ``n``."""
        if min_distance > 0:
            w = w[_near_duplicates(w, np.vstack([prev, rows]), min_distance, distance)]
        return np.vstack([rows, w[: n - len(rows)]])

    budget = max(1, max_tries) * max(n, 1)
    drawn = 0
    accept = 1.0  # running estimate of the share of draws that pass the caps
    rejected_caps = 0
    while len(rows) < n and drawn < budget:
        need = n - len(rows)
        m = int(min(budget - drawn, max(256, 1.2 * need / max(accept, 1e-3))))
        m = min(m, max(256, _MAX_BATCH_CELLS // space.n))
        w = lay.draw(m, rng)
        drawn += m
        ok = lay.within_caps(w)
        rejected_caps += int((~ok).sum())
        accept = max(ok.mean() if len(ok) else 0.0, 1e-6)
        rows = add(w[ok])
    if len(rows) < n and rejected_caps > 0:
        # The caps reject almost every draw: fill up with draws projected into the space.
        log.warning(
            "caps rejected %d of %d draws; projecting %d more draws into the space (they may sit on a cap)",
            rejected_caps, drawn, n - len(rows),
        )
        for _ in range(20):
            if len(rows) >= n:
                break
            rows = add(project(space, lay.draw(max(2 * (n - len(rows)), 64), rng)))
    # Projection piles draws onto the same corner of a tight space: draw inside the bounds instead.
    lo, hi = space.bounds()
    for _ in range(20):
        if len(rows) >= n:
            break
        rows = add(_box_simplex_draws(lo, hi, max(2 * (n - len(rows)), 64), rng))
    if len(rows) < n:
        if (single := single_mixture(space)) is not None:
            raise single
        raise MixoptError(
            f"the search space holds only {len(rows)} mixture{'s' if len(rows) != 1 else ''} at least "
            f"{min_distance:g} apart ({distance}) "
            f"after {drawn} draws, not the {n} asked for; lower --budget, or relax the constraints"
        )
    return rows


def single_mixture(space: SearchSpace, task: str = "search") -> MixoptError | None:
    """The error for bounds that leave one mixture (the floors, or the ceilings, add up to 1), with
    nothing to ``task`` (``search``; ``propose``: `fit --propose`, which had written that mixture)."""
    lo, hi = space.bounds()
    fixed = ", ".join(f"{d}={w:g}" for d, w in space.fixed.items())
    if 1.0 - float(lo.sum()) <= 1e-9:  # the lower bounds take the whole simplex
        return MixoptError(
            f"the fixed weights and floors add up to 1{f' (--fix {fixed})' if fixed else ''}, which "
            f"leaves a single mixture and nothing to {task}: use that mixture as it is, or free a domain"
        )
    free = [d for d, a, b in zip(space.domains, lo, hi, strict=True) if b - a > 1e-9]
    if len(free) == 1:  # a QA pass: "lower --budget" had been the advice
        return MixoptError(
            f"only {free[0]} is free{f' (--fix {fixed})' if fixed else ''}, so its weight is what the others "
            "leave and the space holds a single mixture: use that mixture as it is, or free another domain"
        )
    if float(hi.sum()) - 1.0 <= 1e-9:  # every domain at its ceiling is the only mixture
        capped = space.max_epochs is not None and bool(np.any(space.epoch_cap() < 1.0))
        what = "the ceilings" + (
            f" (with the repetition caps, --max-epochs {space.max_epochs:g} × each domain's tokens / "
            f"--target-tokens {space.target_tokens:g})" if capped else "") + (
            f" and the fixed weights (--fix {fixed})" if fixed else "")
        fix = ("raise --max-epochs, lower --target-tokens or raise a --max-weight" if capped
               else "raise a --max-weight")
        return MixoptError(f"{what} add up to 1, which leaves a single mixture and nothing to {task}: {fix}")
    return None


def sample_candidates(
    space: SearchSpace,
    n: int,
    *,
    seed: int | np.random.Generator,
    temperature: float = 1.0,
    rounds: int = 5,
) -> np.ndarray:
    """Fast path for proposers: ``n`` rows inside ``space``, no duplicate check.

    Up to ``rounds`` rounds of rejection against the caps, fewer where a round accepts under
    :data:`MIN_ACCEPT` of its draws; rows still missing are draws projected into the space. Pass a
    ``numpy.random.Generator`` to draw several chunks from one stream.
    """
    lay = _Layout(space, temperature)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    parts: list[np.ndarray] = []
    have = 0
    accept = 1.0
    for _ in range(rounds):
        need = n - have
        if need <= 0:
            break
        m = int(min(max(64, 1.1 * need / max(accept, 0.05)), 4 * need + 64))
        w = lay.draw(m, rng, fast=True)
        ok = lay.within_caps(w)
        accept = ok.mean() if len(ok) else 0.0
        w = w[ok][:need]
        parts.append(w)
        have += len(w)
        if accept < MIN_ACCEPT:  # rejection would add next to nothing: the rest are projected
            break
    if have < n:
        parts.append(project(space, lay.draw(n - have, rng)))
        have += len(parts[-1])
    out = np.vstack(parts) if parts else np.empty((0, space.n))
    if len(out) < n:  # only when every draw underflowed to zero mass, which needs absurd priors
        out = np.vstack([out, project(space, np.full((n - len(out), space.n), 1.0 / space.n))])
    return out[:n]
