"""The learning-rate schedule shared by the proxy and the final trainer, and its forward and
annealing areas (the step law with learning-rate annealing)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mixopt.proxy.rungs import load_rung
from mixopt.schedule import lr_areas, warmup_cosine
from mixopt.train.config import TrainConfig


def _scalar(step: int, steps: int, lr: float, min_lr: float, warmup: float) -> float:
    """The schedule as the trainers computed it step by step before it was shared."""
    warm = max(1, round(warmup * steps)) if warmup > 0 else 0
    if step < warm:
        return lr * (step + 1) / warm
    progress = (step - warm) / max(1, steps - warm)
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * min(1.0, progress)))


@pytest.mark.parametrize("steps,warmup", [(146, 0.05), (10, 0.0), (7, 0.5), (1, 0.05)])
def test_warmup_cosine_is_the_trainers_schedule_for_scalars_and_arrays(steps: int, warmup: float) -> None:
    want = [_scalar(s, steps, 3e-3, 3e-4, warmup) for s in range(steps + 2)]
    got = warmup_cosine(np.arange(steps + 2), steps, lr=3e-3, min_lr=3e-4, warmup=warmup)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert isinstance(warmup_cosine(3, steps, lr=3e-3, min_lr=3e-4, warmup=warmup), float)


def test_the_proxy_and_the_final_trainer_follow_it() -> None:
    rung = load_rung("xs")
    assert [rung.lr_at(s) for s in range(rung.steps)] == pytest.approx(
        [_scalar(s, rung.steps, rung.lr, rung.min_lr, rung.warmup) for s in range(rung.steps)], rel=1e-12
    )
    tc = TrainConfig(batch=8, tokens=10_000, lr=1e-3, min_lr=1e-4, warmup=0.1)
    assert tc.lr_at(5, 100) == pytest.approx(_scalar(5, 100, tc.lr, tc.min_lr, tc.warmup), rel=1e-12)
    # The rung's schedule stretched to 4× its tokens: the same shape over 4× the steps.
    long = rung.lr_schedule(4 * rung.tokens)
    n = 4 * rung.tokens // rung.tokens_per_step
    assert long(np.array([n - 1]))[0] == pytest.approx(_scalar(n - 1, n, rung.lr, rung.min_lr, rung.warmup))


def _areas_by_loop(rates: np.ndarray, decay: float) -> tuple[np.ndarray, np.ndarray]:
    """Tissue et al.'s areas step by step, as their paper writes them (rates in units of the peak)."""
    s1, s2, m, top, gap_before = [], [], 0.0, 0.0, 0.0
    for r in rates:
        top = max(top, r)
        m = decay * m + (top - r) - gap_before
        gap_before = top - r
        s1.append((s1[-1] if s1 else 0.0) + r)
        s2.append((s2[-1] if s2 else 0.0) + m)
    return np.array(s1), np.array(s2)


def test_areas_of_a_constant_rate_a_drop_and_a_warm_up() -> None:
    s1, s2 = lr_areas(lambda s: np.full(len(s), 0.5), 100, np.array([1, 50, 100]))
    np.testing.assert_allclose(s1, [1, 50, 100])  # in units of the peak
    np.testing.assert_allclose(s2, [0, 0, 0])
    # A drop to 0.25 of the peak after step 60 (0-based): a drop of 0.75 whose momentum halves each
    # step with λ = 0.5, so the area grows by 0.75, 0.375, … towards 1.5.
    drop = lambda s: np.where(s < 60, 1.0, 0.25)  # noqa: E731
    s1, s2 = lr_areas(drop, 100, np.array([60, 61, 62, 100]), decay=0.5)
    np.testing.assert_allclose(s1, [60, 60.25, 60.5, 70])
    np.testing.assert_allclose(s2, [0, 0.75, 1.125, 1.5])
    # λ = 0: the area is the gap below the peak; the default λ is 0.999.
    np.testing.assert_allclose(lr_areas(drop, 100, np.array([100]), decay=0.0)[1], [0.75])
    want = _areas_by_loop(drop(np.arange(100)), 0.999)[1][-1]
    assert lr_areas(drop, 100, np.array([100]))[1][0] == pytest.approx(want, rel=1e-12)
    # A warm-up does not count as annealing: the rate is below its peak only after it.
    s1, s2 = lr_areas(lambda s: np.minimum((s + 1) / 10, 1.0), 20, np.array([10, 20]))
    np.testing.assert_allclose(s2, [0, 0])
    with pytest.raises(ValueError, match="decay is 1"):
        lr_areas(drop, 100, np.array([100]), decay=1.0)
    for outside in (0, 101):
        with pytest.raises(ValueError, match="outside the run's 1..100 steps"):
            lr_areas(drop, 100, np.array([outside]))


def test_areas_match_the_papers_loop_on_a_proxys_schedule() -> None:
    rung = load_rung("xs")
    rates = np.array([rung.lr_at(s) for s in range(rung.steps)]) / rung.lr
    want1, want2 = _areas_by_loop(rates, 0.999)
    at = np.array(rung.eval_steps())
    s1, s2 = lr_areas(rung.lr_schedule(), rung.steps, at)
    np.testing.assert_allclose(s1, want1[at - 1], rtol=1e-12)
    np.testing.assert_allclose(s2, want2[at - 1], rtol=1e-9)


def test_a_long_runs_area_is_bounded_and_summed_within_a_tiny_error() -> None:
    n = 3_000_000
    lr = lambda s: warmup_cosine(s, n, lr=1.0, min_lr=0.1, warmup=0.01)  # noqa: E731
    at = np.array([n // 2 + 7, n])  # not on the grid's buckets
    s1, s2 = lr_areas(lr, n, at)
    exact = np.asarray(lr(np.arange(n)))
    gap = np.maximum.accumulate(exact) - exact
    from scipy.signal import lfilter

    m = lfilter([1.0], [1.0, -0.999], np.diff(gap, prepend=0.0))
    np.testing.assert_allclose(s1, np.cumsum(exact)[at - 1], rtol=1e-4)
    np.testing.assert_allclose(s2, np.cumsum(m)[at - 1], rtol=1e-6)
    # The whole drop (0.9 of the peak) over 1 − λ bounds it, however long the run.
    assert s2[-1] < 0.9 / 0.001 and s2[-1] == pytest.approx(900, rel=1e-3)
