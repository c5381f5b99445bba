"""The mixture sampler: domain shares follow the weights, zero weights never appear, schedules switch."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mixopt.errors import MixoptError
from mixopt.mixture import Mixture
from mixopt.proxy.sampler import MixtureSampler, expected_epochs

DOMAINS = ["a", "b", "c", "d", "e"]
# Domain i's tokens are i·10000 + position, so a window tells which domain and where it came from.
SHARDS = {d: (i * 10_000 + np.arange(3000 + 700 * i)).astype(np.uint16) for i, d in enumerate(DOMAINS)}


@st.composite
def mixtures(draw: st.DrawFn) -> Mixture:
    raw = draw(st.lists(st.floats(0.0, 1.0), min_size=len(DOMAINS), max_size=len(DOMAINS)))
    zero = draw(st.lists(st.booleans(), min_size=len(DOMAINS), max_size=len(DOMAINS)))
    w = np.array([0.0 if z else r for r, z in zip(raw, zero, strict=True)])
    if w.sum() <= 1e-6:
        w[draw(st.integers(0, len(DOMAINS) - 1))] = 1.0
    w = w / w.sum()
    return Mixture(dict(zip(DOMAINS, w.tolist(), strict=True)))


@settings(max_examples=25, deadline=None)
@given(mixture=mixtures(), seed=st.integers(0, 2**31 - 1))
def test_domain_shares_follow_the_weights(mixture: Mixture, seed: int) -> None:
    sampler = MixtureSampler(SHARDS, mixture, context=16, batch=500, seed=seed)
    counts = np.zeros(len(DOMAINS))
    n = 0
    for _ in range(8):
        dom, toks = sampler.draw(0.0)
        counts += np.bincount(dom, minlength=len(DOMAINS))
        n += len(dom)
        assert np.array_equal(toks[:, 0] // 10_000, dom)  # each window comes from its drawn domain
    w = np.array(mixture.vector(DOMAINS))
    # 5 binomial sd, plus 3 draws: a weight of 5e-6 expects 0.02 of 4,000 windows, and one draw
    # (2% of the time) is 25 of its sd (the normal bound alone failed on that, rarely)
    sigma = np.sqrt(n * w * (1 - w))
    assert np.all(np.abs(counts - n * w) <= 5 * sigma + 3), (counts / n, w)
    assert np.all(counts[w == 0] == 0)  # a weight-0 domain never appears


def test_windows_are_contiguous_slices_inside_the_shard() -> None:
    sampler = MixtureSampler(SHARDS, Mixture.uniform(DOMAINS), context=32, batch=256, seed=3)
    dom, toks = sampler.draw()
    assert toks.shape == (256, 33) and toks.dtype == np.int64
    assert np.all(np.diff(toks, axis=1) == 1)  # consecutive positions of one shard
    pos = toks % 10_000
    sizes = np.array([len(SHARDS[d]) for d in DOMAINS])
    assert np.all(pos[:, -1] < sizes[dom])
    assert pos[:, 0].min() < 100 and (sizes[dom] - 1 - pos[:, -1]).min() < 100  # both ends reachable


def test_schedule_switches_at_phase_boundaries() -> None:
    mix = Mixture({"a": 1.0, "b": 0.0}, schedule=((0.5, {"a": 1.0, "b": 0.0}), (1.0, {"a": 0.0, "b": 1.0})))
    sampler = MixtureSampler({"a": SHARDS["a"], "b": SHARDS["b"]}, mix, context=8, batch=200, seed=0)
    assert set(sampler.draw(0.0)[0]) == {0}
    assert set(sampler.draw(0.49)[0]) == {0}
    assert set(sampler.draw(0.5)[0]) == {1}
    assert set(sampler.draw(0.99)[0]) == {1}


def test_same_seed_same_batches_and_common_random_numbers() -> None:
    mix = Mixture.uniform(DOMAINS)
    a = MixtureSampler(SHARDS, mix, context=8, batch=64, seed=7)
    b = MixtureSampler(SHARDS, mix, context=8, batch=64, seed=7)
    c = MixtureSampler(SHARDS, mix, context=8, batch=64, seed=8)
    for _ in range(3):
        da, ta = a.draw()
        db, tb = b.draw()
        assert np.array_equal(da, db) and np.array_equal(ta, tb)
    assert not np.array_equal(a.draw()[1], c.draw()[1])


def test_a_domain_smaller_than_one_window_needs_weight_zero() -> None:
    shards = {"big": SHARDS["a"], "tiny": np.arange(5, dtype=np.uint16)}
    with pytest.raises(MixoptError, match="'tiny' has 5 training tokens"):
        MixtureSampler(shards, Mixture({"big": 0.5, "tiny": 0.5}), context=8, batch=4, seed=0)
    sampler = MixtureSampler(shards, Mixture({"big": 1.0, "tiny": 0.0}), context=8, batch=4, seed=0)
    assert set(sampler.draw()[0]) == {0}


def test_unknown_domain_is_refused() -> None:
    with pytest.raises(MixoptError, match="lacks: zzz"):
        MixtureSampler(SHARDS, Mixture({"a": 0.5, "zzz": 0.5}), context=8, batch=4, seed=0)


def test_expected_epochs_integrate_a_schedule() -> None:
    mix = Mixture({"a": 1.0, "b": 0.0}, schedule=((0.25, {"a": 1.0, "b": 0.0}), (1.0, {"a": 0.0, "b": 1.0})))
    e = expected_epochs(mix, {"a": 100, "b": 300}, budget=400)
    assert e == pytest.approx({"a": 1.0, "b": 1.0})
