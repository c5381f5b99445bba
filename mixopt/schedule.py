"""The learning-rate schedule that the proxy trainer and the final trainer share, and its areas.

``warmup_cosine`` is the schedule itself: linear warm-up over a fraction of the steps, then cosine
decay to a floor. ``lr_areas`` turns any schedule into the two quantities of the step law with
learning-rate annealing (Tissue et al. 2024, "Scaling Law with Learning Rate Annealing"):
the forward area S1 (the sum of the learning rates so far) and the annealing area S2 (how far the
rate has fallen below its running peak, summed over the steps with a momentum that forgets old
drops). A loss curve then follows ``L = E + B·S1^(−β) − C·S2``, which is what lets the checkpoints
of one cosine run stand for the end of a longer run: a checkpoint halfway through a cosine run has
seen a high rate that a shorter run would have annealed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy.signal import lfilter

from mixopt.errors import MixoptError

# Schedules are summed on at most this many points: a target of 1e12 tokens is ~1e9 steps.
MAX_POINTS = 200_000
# Tissue et al.'s momentum of the annealing area (their λ, 0.999 in their fits): below 1, the area
# of a run of any length is at most the whole drop over (1 − λ), 900 steps at the peak rate for a
# decay to a tenth of it.
DECAY = 0.999


def warmup_cosine(
    step: int | np.ndarray, steps: int, *, lr: float, min_lr: float, warmup: float
) -> float | np.ndarray:
    """Learning rate at optimizer step ``step`` (0-based) of ``steps``: linear warm-up over the
    fraction ``warmup`` of the steps, then cosine from ``lr`` to ``min_lr``. ``step`` may be an array."""
    warm = max(1, round(warmup * steps)) if warmup > 0 else 0
    s = np.asarray(step, dtype=float)
    progress = np.clip((s - warm) / max(1, steps - warm), 0.0, 1.0)
    cosine = min_lr + 0.5 * (lr - min_lr) * (1 + np.cos(np.pi * progress))
    out = np.where(s < warm, lr * (s + 1) / max(warm, 1), cosine)
    return float(out) if out.ndim == 0 else out


def check_optimizer(cfg: Any, where: str, numbers: Sequence[str] = ()) -> tuple[float, ...]:
    """Refuse an optimiser's settings that cannot train, in the words of ``where`` (a rung's file, the
    train config): lr, min_lr, weight_decay, grad_clip and ``numbers`` finite and ≥ 0, lr > 0 and
    min_lr ≤ lr, warm-up a fraction, betas in [0, 1), eval_at fractions. Returns eval_at sorted, with 1.0
    (the proxy trainer and the final trainer take the same settings, checked the same way)."""
    for key in ("lr", "min_lr", "weight_decay", "grad_clip", "warmup", "beta1", "beta2", *numbers):
        v = getattr(cfg, key)  # a bool is an int to Python: lr = true had trained at 1
        if not isinstance(v, int | float) or isinstance(v, bool) or not math.isfinite(v) or v < 0:
            raise MixoptError(f"{where}: {key} is {v!r}; it must be a finite number ≥ 0")
    fractions = cfg.eval_at
    if (isinstance(fractions, str | bytes) or not isinstance(fractions, Sequence)
            or any(not isinstance(f, int | float) or isinstance(f, bool) for f in fractions)):
        raise MixoptError(f"{where}: eval_at is {fractions!r}; give a list of fractions of the run, e.g. "
                          "[0.25, 0.5, 1.0]")
    if cfg.lr <= 0 or cfg.min_lr > cfg.lr:
        # min_lr 0 is a cosine to zero, as nanoGPT's; the message had said 0 < min_lr
        raise MixoptError(f"{where}: need lr > 0 and min_lr ≤ lr, got lr={cfg.lr}, min_lr={cfg.min_lr}")
    if not 0 <= cfg.warmup < 1:
        raise MixoptError(f"{where}: warmup is {cfg.warmup}; it is a fraction of steps in [0, 1)")
    if not (0 <= cfg.beta1 < 1 and 0 <= cfg.beta2 < 1):
        raise MixoptError(f"{where}: betas must be in [0, 1), got {cfg.beta1}, {cfg.beta2}")
    at = sorted({float(f) for f in cfg.eval_at} | {1.0})
    if any(not 0 < f <= 1 for f in at):
        raise MixoptError(f"{where}: eval_at {list(cfg.eval_at)} must hold fractions in (0, 1]")
    return tuple(at)


def eval_steps(fractions: Sequence[float], steps: int) -> list[int]:
    """Optimizer steps after which to evaluate: each fraction of ``steps``, distinct and ascending."""
    return sorted({max(1, round(f * steps)) for f in fractions})


def lr_areas(
    lr: Callable[[np.ndarray], np.ndarray], steps: int, at: np.ndarray, *, decay: float = DECAY
) -> tuple[np.ndarray, np.ndarray]:
    """(S1, S2) after each step count in ``at`` (1-based: after ``at`` optimizer steps) of a run of
    ``steps`` steps whose rate at 0-based steps ``s`` is ``lr(s)``, in units of the run's peak rate.

    S1 is the sum of the rates. S2 is Tissue et al.'s annealing area with momentum ``decay`` (λ):
    ``m_i = λ·m_(i−1) + Δ_i``, ``S2 = Σ m_i``, where Δ_i is how much further below its running peak
    the rate fell at step i (so a warm-up adds nothing). Summed, ``S2_n = (g_n − λ·m_n)/(1 − λ)``
    with g_n the rate's gap below the peak: bounded by the whole drop over (1 − λ), which is what
    keeps a long run's annealing benefit finite. Runs of more than ``MAX_POINTS`` steps are summed
    for S1 on an even grid of that many steps, and m_n is taken over the last ``30/(1 − λ)`` steps
    (what came before weighs λ^(30/(1−λ)) < 1e-13).
    """
    if not 0 <= decay < 1:
        raise ValueError(f"decay is {decay}; it must be in [0, 1)")
    at = np.asarray(at, dtype=int)
    if at.size and not (at.min() >= 1 and at.max() <= steps):
        raise ValueError(f"step counts {at.min()}..{at.max()} lie outside the run's 1..{steps} steps")
    if steps <= MAX_POINTS:
        rates = np.asarray(lr(np.arange(steps)), dtype=float)
        peak = _peak(rates)
        rates = rates / peak
        gap = np.maximum.accumulate(rates) - rates
        m = lfilter([1.0], [1.0, -decay], np.diff(gap, prepend=0.0))
        return np.cumsum(rates)[at - 1], np.cumsum(m)[at - 1]
    stride = -(-steps // MAX_POINTS)
    grid = np.arange(0, steps, stride)
    rates = np.asarray(lr(grid), dtype=float)
    peak = _peak(rates)
    # Whole buckets of ``stride`` steps, each at its first step's rate, then the part of the next.
    full = at // stride
    before = np.concatenate([[0.0], np.cumsum(rates)])[full] * stride
    s1 = (before + (at - full * stride) * rates[np.minimum(full, len(grid) - 1)]) / peak
    window = int(np.ceil(30 / (1 - decay)))
    s2 = np.empty(len(at))
    for j, n in enumerate(at):
        lo = max(0, n - window - 1)
        seen = rates[grid < lo]  # the running peak before the window, from the grid
        w = np.asarray(lr(np.arange(lo, n)), dtype=float)
        top = np.maximum.accumulate(np.maximum(w, seen.max() if len(seen) else 0.0))
        gap = (top - w) / peak
        drops = np.diff(gap, prepend=gap[0] if lo > 0 else 0.0)
        m = float(drops @ decay ** np.arange(len(drops) - 1, -1, -1))
        s2[j] = (gap[-1] - decay * m) / (1 - decay)
    return s1, s2


def _peak(rates: np.ndarray) -> float:
    peak = float(rates.max())
    if not peak > 0:
        raise ValueError("a learning-rate schedule whose rates are all ≤ 0 has no areas")
    return peak
