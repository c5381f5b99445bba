"""Swarm sampler, projection and baselines: rows inside random spaces, seeded, distinct, fast."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from mixopt.baselines import baseline_weights, baselines_for
from mixopt.errors import MixoptError
from mixopt.space import SearchSpace
from mixopt.swarm import STRENGTHS, prior, project, sample_candidates, sample_swarm


@st.composite
def spaces(draw: st.DrawFn) -> SearchSpace:
    n = draw(st.integers(2, 12))
    domains = tuple(f"d{i}" for i in range(n))
    tokens = None
    if draw(st.booleans()):
        tokens = {d: draw(st.floats(1e6, 2e7)) for d in domains}
    min_weight = draw(st.sampled_from([0.0, 0.0, 0.01, 0.5 / n]))
    idx = list(range(n))
    fixed = {}
    if draw(st.booleans()):
        i = draw(st.sampled_from(idx))
        fixed[domains[i]] = draw(st.floats(0.0, 0.3))
    ceilings = {}
    for i in draw(st.lists(st.sampled_from(idx), max_size=3, unique=True)):
        if domains[i] not in fixed:
            ceilings[domains[i]] = draw(st.floats(0.05, 1.0))
    floors = {}
    for i in draw(st.lists(st.sampled_from(idx), max_size=2, unique=True)):
        if domains[i] not in fixed:
            floors[domains[i]] = draw(st.floats(0.0, 0.2))
    max_epochs = target = None
    if tokens is not None and draw(st.booleans()):
        max_epochs = draw(st.floats(0.5, 10.0))
        target = draw(st.floats(1e6, 1e10))
    try:
        space = SearchSpace(domains=domains, tokens=tokens, min_weight=min_weight, floors=floors,
                            ceilings={d: max(c, floors.get(d, 0.0)) for d, c in ceilings.items()},
                            fixed=fixed, max_epochs=max_epochs, target_tokens=target)
    except MixoptError:
        assume(False)
    lo, hi = space.bounds()
    # Leave room for distinct rows: two domains that can move, and mass to move between them.
    assume(int((hi - lo > 1e-2).sum()) >= 2 and hi.sum() - 1 > 1e-2 and 1 - lo.sum() > 1e-2)
    return space


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(space=spaces(), seed=st.integers(0, 2**31 - 1))
def test_swarm_rows_inside_space_distinct_and_seeded(space: SearchSpace, seed: int) -> None:
    rows = sample_swarm(space, 40, seed=seed, min_distance=1e-4)
    assert rows.shape == (40, space.n)
    assert space.contains_rows(rows).all(), [space.violations(r) for r in rows if not space.contains(r)][:2]
    d = np.abs(rows[:, None, :] - rows[None, :, :]).sum(-1)
    np.fill_diagonal(d, np.inf)
    assert d.min() > 1e-4
    again = sample_swarm(space, 40, seed=seed, min_distance=1e-4)
    np.testing.assert_array_equal(rows, again)


@settings(max_examples=25, deadline=None)
@given(space=spaces(), seed=st.integers(0, 1000))
def test_candidates_and_projection_inside_space(space: SearchSpace, seed: int) -> None:
    cand = sample_candidates(space, 500, seed=seed)
    assert cand.shape == (500, space.n)
    assert space.contains_rows(cand).all()
    rng = np.random.default_rng(seed)
    raw = rng.normal(size=(50, space.n))
    proj = project(space, raw)
    assert space.contains_rows(proj).all()


def test_projection_is_nearest_point() -> None:
    space = SearchSpace(domains=("a", "b", "c"), ceilings={"a": 0.5}, min_weight=0.1)
    v = np.array([0.9, 0.1, 0.0])
    p = project(space, v)
    assert space.contains(p)
    # Any other feasible point is at least as far away.
    others = sample_candidates(space, 2000, seed=1)
    assert np.linalg.norm(p - v) <= np.linalg.norm(others - v, axis=1).min() + 1e-12
    np.testing.assert_allclose(p, [0.5, 0.3, 0.2], atol=1e-9)


def test_constraints_are_honoured() -> None:
    doms = tuple(f"d{i}" for i in range(6))
    space = SearchSpace(
        domains=doms, tokens={d: 10.0 ** (i + 3) for i, d in enumerate(doms)},
        min_weight=0.02, ceilings={"d5": 0.4}, fixed={"d0": 0.1}, max_epochs=4, target_tokens=2e4,
    )
    rows = sample_swarm(space, 300, seed=3)
    assert np.all(rows[:, 0] == 0.1)
    assert rows[:, 1:].min() >= 0.02 - 1e-12
    assert rows[:, 5].max() <= 0.4 + 1e-12
    # repetition cap: d1 has 1e4 tokens, 4 epochs of a 2e4-token job -> at most 2 x 1e4 / 2e4... = 1.0;
    # d0 (1e3 tokens) is fixed; d2.. are uncapped. Check the cap the space reports.
    _, hi = space.bounds()
    assert np.all(rows <= hi + 1e-12)
    epochs = np.array([list(space.epochs(r).values()) for r in rows])
    assert epochs[:, 1:].max() <= 4 + 1e-9


def test_near_duplicates_of_existing_rejected_linf() -> None:
    space = SearchSpace(domains=("a", "b"))
    existing = np.array([[0.5, 0.5]])
    rows = sample_swarm(space, 10, seed=0, existing=existing, min_distance=0.04, distance="linf")
    assert np.abs(rows - existing).max(axis=1).min() > 0.04
    gaps = np.abs(rows[:, None, :] - rows[None, :, :]).max(-1)
    np.fill_diagonal(gaps, np.inf)
    assert gaps.min() > 0.04


def test_too_many_rows_for_distance_is_an_error() -> None:
    space = SearchSpace(domains=("a", "b"))
    with pytest.raises(MixoptError, match="holds only"):
        sample_swarm(space, 50, seed=0, min_distance=0.2, distance="linf", max_tries=5)


def test_tight_caps_fall_back_to_projection() -> None:
    # 20 domains capped at 0.051: a Dirichlet draw almost never meets every cap.
    doms = tuple(f"d{i}" for i in range(20))
    space = SearchSpace(domains=doms, ceilings={d: 0.051 for d in doms})
    rows = sample_swarm(space, 30, seed=0, max_tries=3)
    assert space.contains_rows(rows).all()


def test_prior_temperature_and_strengths() -> None:
    space = SearchSpace(domains=("a", "b"), tokens={"a": 1.0, "b": 9.0})
    np.testing.assert_allclose(prior(space, 1.0), [0.1, 0.9])
    np.testing.assert_allclose(prior(space, 2.0), np.array([1, 3]) / 4)
    np.testing.assert_allclose(STRENGTHS[[0, -1]], [0.1, 5.0])
    assert len(STRENGTHS) == 15
    np.testing.assert_allclose(prior(SearchSpace(domains=("a", "b", "c")), 1.0), 1 / 3)


def test_swarm_follows_prior() -> None:
    space = SearchSpace(domains=("a", "b", "c"), tokens={"a": 1.0, "b": 1.0, "c": 8.0})
    # Without the duplicate check the mean is the prior (Dirichlet mean = normalised concentrations).
    rows = sample_swarm(space, 4000, seed=0, min_distance=0)
    np.testing.assert_allclose(rows.mean(axis=0), [0.1, 0.1, 0.8], atol=0.03)
    # Small concentrations put all mass on one domain; those exact copies are dropped by default.
    distinct = sample_swarm(space, 400, seed=0)
    assert len(np.unique(distinct, axis=0)) == 400


def test_sampling_at_scale() -> None:
    # Speed is measured by `mixopt bench fit` (propose over 1M candidates), not asserted here.
    doms = tuple(f"d{i}" for i in range(64))
    space = SearchSpace(domains=doms, min_weight=0.001)
    rows = sample_swarm(space, 4096, seed=0)
    assert rows.shape == (4096, 64)
    cand = sample_candidates(space, 100_000, seed=0)
    assert cand.shape == (100_000, 64)
    for x in (rows, cand):
        np.testing.assert_allclose(x.sum(axis=1), 1.0, atol=1e-9)
        assert x.min() >= 0.001 - 1e-12


def test_baselines() -> None:
    space = SearchSpace(domains=("a", "b", "c"), tokens={"a": 1.0, "b": 3.0, "c": 12.0})
    np.testing.assert_allclose(baseline_weights("uniform", space), 1 / 3)
    np.testing.assert_allclose(baseline_weights("natural", space), [1 / 16, 3 / 16, 12 / 16])
    t = np.sqrt([1.0, 3.0, 12.0])
    np.testing.assert_allclose(baseline_weights("temperature", space, temperature=2.0), t / t.sum())
    assert set(baselines_for(space)) == {"uniform", "natural", "temperature"}
    assert set(baselines_for(SearchSpace(domains=("a", "b")))) == {"uniform"}
    with pytest.raises(MixoptError, match="token counts"):
        baseline_weights("natural", SearchSpace(domains=("a", "b")))
    with pytest.raises(MixoptError, match="unknown"):
        baseline_weights("best", space)


def test_baselines_are_fitted_into_the_space() -> None:
    space = SearchSpace(domains=("a", "b", "c"), tokens={"a": 1.0, "b": 3.0, "c": 12.0},
                        fixed={"a": 0.5}, ceilings={"c": 0.3})
    for name in ("uniform", "natural", "temperature"):
        w = baseline_weights(name, space)
        assert space.contains(w), (name, w)
        assert w[0] == pytest.approx(0.5)
    # Only the fixed weight applies: the rest keeps its natural proportions.
    space2 = SearchSpace(domains=("a", "b", "c"), tokens={"a": 1.0, "b": 3.0, "c": 12.0}, fixed={"a": 0.2})
    np.testing.assert_allclose(baseline_weights("natural", space2), [0.2, 0.8 * 0.2, 0.8 * 0.8])
    # ... and says how (a QA pass: an exported "uniform" of 0.1/0.45/0.45 had said nothing)
    from mixopt.baselines import moved_note

    assert moved_note("uniform", space) == ("the uniform baseline is moved into the constraints: "
                                            "a 0.333 → 0.500, b 0.333 → 0.250, c 0.333 → 0.250")
    assert moved_note("uniform", space2) == ("the uniform baseline is moved into the constraints: "
                                             "a 0.333 → 0.200, b 0.333 → 0.400, c 0.333 → 0.400")
    assert moved_note("natural", space).startswith("the natural baseline is moved into the constraints: ")
    assert moved_note("uniform", SearchSpace(domains=("a", "b"), ceilings={"a": 0.6})) is None  # left as is
    assert moved_note("uniform", space2, inside=np.array([0.2, 0.4, 0.4])) == moved_note("uniform", space2)


@pytest.mark.parametrize("distance", ["l1", "linf"])
@pytest.mark.parametrize("threshold", [1e-3, 0.05, 0.5])
def test_near_duplicate_screen_matches_brute_force(distance: str, threshold: float) -> None:
    from mixopt.swarm import _near_duplicates

    rng = np.random.default_rng(0)
    base = rng.dirichlet(np.ones(5), 40)
    cand = np.vstack([base, base + rng.normal(0, 3e-4, base.shape), base[:5]])  # near and exact copies
    kept = rng.dirichlet(np.ones(5), 30)
    got = _near_duplicates(cand, kept, threshold, distance)  # type: ignore[arg-type]

    def dist(a: np.ndarray, b: np.ndarray) -> float:
        d = np.abs(a - b)
        return float(d.sum() if distance == "l1" else d.max())

    want = []
    for i, row in enumerate(cand):
        ok = all(dist(row, k) > threshold for k in kept)
        ok = ok and all(dist(row, cand[j]) > threshold for j in range(i) if want[j])
        want.append(ok)
    np.testing.assert_array_equal(got, want)


def test_a_tight_corner_of_the_simplex_still_fills() -> None:
    # Found by hypothesis: two big domains capped at 1/16 leave a small corner; Dirichlet draws around
    # the token prior almost all break the caps and projection piles them onto one vertex.
    space = SearchSpace(domains=("d0", "d1", "d2"), tokens={"d0": 9847251.0, "d1": 18609422.0, "d2": 1e6},
                        ceilings={"d0": 0.0625, "d1": 0.0625})
    rows = sample_swarm(space, 40, seed=0, min_distance=1e-4)
    assert space.contains_rows(rows).all()
    d = np.abs(rows[:, None, :] - rows[None, :, :]).sum(-1)
    np.fill_diagonal(d, np.inf)
    assert d.min() > 1e-4


def test_a_space_of_one_mixture_is_refused_by_name() -> None:
    space = SearchSpace(domains=("a", "b", "c"), fixed={"a": 1.0})
    with pytest.raises(MixoptError, match=r"add up to 1 \(--fix a=1\), which leaves a single mixture"):
        sample_swarm(space, 4, seed=0)


def test_a_space_built_by_hand_keeps_its_repetition_cap() -> None:
    """Library use (a QA pass): max_epochs without target_tokens had been dropped silently, and a
    string of domains read as one-letter domains."""
    space = SearchSpace(domains=("a", "b"), tokens={"a": 1e9, "b": 1e6}, max_epochs=1)
    assert space.target_tokens == 1.001e9  # as the CLI assumes: as many tokens as the domains hold
    assert not space.contains(np.array([0.1, 0.9]))
    with pytest.raises(MixoptError, match=r"max_epochs needs the token counts per domain \(tokens=...\)"):
        SearchSpace(domains=("a", "b"), max_epochs=1)
    with pytest.raises(MixoptError, match="domains is the string 'abc'; give a sequence of names"):
        SearchSpace(domains="abc")
    free = SearchSpace(domains=("a", "b", "c"))
    for n in (2.5, -1):  # 2.5 had met a TypeError about slice indices
        with pytest.raises(MixoptError, match=f"cannot sample {n} mixtures; ask for a whole number n ≥ 0"):
            sample_swarm(free, n, seed=0)
    assert len(sample_swarm(free, np.int64(3), seed=0)) == 3


def test_snap_sets_weights_within_float_error_of_a_bound_on_it() -> None:
    """A QA pass: --max-weight c=0.25 was exported as 0.25000000000000006, past the ceiling."""
    space = SearchSpace(domains=("a", "b", "c", "e"), ceilings={"c": 0.25}, fixed={"e": 0.15})
    w = space.snap([0.3, 0.3 - 8e-17, 0.25000000000000006, 0.15000000000000002])
    assert w[2] == 0.25 and w[3] == 0.15 and abs(w.sum() - 1) < 1e-15 and space.contains(w, tol=0.0)


def test_candidates_stop_rejecting_when_the_caps_accept_almost_nothing(monkeypatch) -> None:  # noqa: ANN001
    """A QA pass: caps binding on most of 300 domains accepted 0.04% of draws, and five rounds of 4×
    the rows wanted took 86 s and 4.3 GB for 100k candidates. One round shows it; the rest are
    projected."""
    import mixopt.swarm as swarm

    n_dom = 60
    tokens = {f"d{i}": 2e7 for i in range(n_dom)}  # every domain capped at 2%: spiky draws break one
    space = SearchSpace(domains=tuple(tokens), tokens=tokens, max_epochs=1, target_tokens=1e9)
    drawn = []
    real = swarm._Layout.draw

    def counting(self, m, rng, **kw):  # noqa: ANN001, ANN003, ANN202
        drawn.append(m)
        return real(self, m, rng, **kw)

    monkeypatch.setattr(swarm._Layout, "draw", counting)
    W = sample_candidates(space, 2000, seed=0)
    assert W.shape == (2000, n_dom) and space.contains_rows(W, tol=1e-6).all()
    assert drawn == [2200, 2000]  # one round of rejection (1.1× the rows), then the projected rest
