"""The learning-rate schedule that the proxy trainer and the final trainer share, and its areas.

``warmup_cosine`` is the schedule itself: linear warm-up over a fraction of the steps, then cosine
decay to a floor. ``lr_areas`` turns any schedule into the two quantities of the step law with
learning-rate annealing (Tissue et al. 2024, "Scaling Law with Learning Rate Annealing"):
the forward area S1 (the sum of the learning rates so far) and the annealing area S2 (the sum, over
the steps so far, of how far the rate has fallen below its running peak). A loss curve then
follows ``L = E + B·S1^(−β) − C·S2``, which is what lets the checkpoints of one cosine run stand for
the end of a longer run: a checkpoint halfway through a cosine run has seen a high rate that a
shorter run would have annealed.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

# Schedules are summed on at most this many points: a target of 1e12 tokens is ~1e9 steps.
MAX_POINTS = 200_000


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


def lr_areas(
    lr: Callable[[np.ndarray], np.ndarray], steps: int, at: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(S1, S2) after each step count in ``at`` (1-based: after ``at`` optimizer steps) of a run of
    ``steps`` steps whose rate at 0-based steps ``s`` is ``lr(s)``, in units of the run's peak rate.

    S2 uses no momentum (Tissue et al.'s λ → 1): with the few hundred steps of a proxy run, λ = 0.999
    and λ = 1 differ by little, and λ = 1 predicted longer proxy runs slightly better. Runs of more
    than ``MAX_POINTS`` steps are summed on an even grid of that many steps, scaled up.
    """
    at = np.asarray(at, dtype=float)
    stride = max(1, -(-steps // MAX_POINTS))
    grid = np.arange(0, steps, stride)
    rates = np.asarray(lr(grid), dtype=float)
    peak = float(rates.max())
    if not peak > 0:
        raise ValueError("a learning-rate schedule whose rates are all ≤ 0 has no areas")
    rates = rates / peak
    s1 = np.cumsum(rates) * stride
    s2 = np.cumsum(np.maximum.accumulate(rates) - rates) * stride
    idx = np.clip(np.ceil(at / stride).astype(int) - 1, 0, len(grid) - 1)
    return s1[idx], s2[idx]
