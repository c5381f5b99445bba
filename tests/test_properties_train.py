"""Properties of the final trainer's mixture schedule, its weight updaters, the batch sampler and the
MoE routing, on random inputs: a schedule's weights at any fraction are its phase's (the one the trainer
counts tokens under and reports steps for), on the simplex; the learning-rate areas of a long run
match the exact sums; every updater's weights stay on the simplex and above its floor whatever the
losses (NaN, inf, no tokens, one domain), are deterministic and resume identically from their state;
the sampler's shares follow the mixture, never draw a weight-0 domain and stay inside each shard;
the router picks valid distinct experts with gates normalised as documented, and the fused
grouped-GEMM experts equal the naive loop, gradients included. The named tests below them are cases
hypothesis found."""

from __future__ import annotations

import bisect
import json
import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mixopt import schedule
from mixopt.errors import MixoptError
from mixopt.mixture import Mixture
from mixopt.proxy.sampler import MixtureSampler, expected_epochs
from mixopt.train import kernels
from mixopt.train.moe import MoEConfig, Router
from mixopt.train.trainer import _phase_steps
from mixopt.train.updater import LossReweighter, Observation, ScheduleUpdater, check_weights

SLOW = [HealthCheck.too_slow]
NAMES = ("a", "b", "c", "d", "e")


@st.composite
def simplex(draw: st.DrawFn, n: int) -> list[float]:
    """n weights ≥ 0 summing to 1, with exact zeros often and at least one positive."""
    raw = draw(st.lists(st.floats(0.0, 1.0) | st.just(0.0), min_size=n, max_size=n))
    w = np.array(raw)
    if w.sum() <= 1e-6:
        w[draw(st.integers(0, n - 1))] = 1.0
    return (w / w.sum()).tolist()


@st.composite
def ends(draw: st.DrawFn) -> list[float]:
    """Strictly increasing phase ends in (0, 1], the last 1.0: decimals a person writes (0.07, 0.3,
    whose products with a step count round up past a whole number) or any float."""
    k = draw(st.integers(0, 4))
    inner = draw(st.lists(st.integers(1, 99).map(lambda i: i / 100)
                          | st.integers(1, 999).map(lambda i: i / 1000)
                          | st.floats(1e-6, 1 - 1e-6),
                          min_size=k, max_size=k, unique=True))
    return [*sorted(set(inner)), 1.0]


@st.composite
def scheduled(draw: st.DrawFn) -> Mixture:
    n = draw(st.integers(1, len(NAMES)))
    phases = [(u, dict(zip(NAMES[:n], draw(simplex(n)), strict=True))) for u in draw(ends())]
    return Mixture(dict(phases[0][1]), schedule=tuple(phases))


def phase_of(ends_: list[float], fraction: float) -> int:
    """The oracle: phase i holds fractions in [end_(i-1), end_i), the last one up to 1 and past it."""
    return min(bisect.bisect_right(ends_, fraction), len(ends_) - 1)


def around(u: float) -> list[float]:
    return [math.nextafter(u, -math.inf), u, math.nextafter(u, math.inf)]


# ----- the mixture's schedule ----------------------------------------------------------------
@settings(max_examples=150, deadline=None)
@given(mix=scheduled(), extra=st.lists(st.floats(0.0, 1.0), max_size=5))
def test_a_schedules_weights_are_its_phases_and_every_reader_agrees(mix: Mixture, extra: list[float]) -> None:
    ends_ = [u for u, _ in mix.schedule]
    domains = list(mix.weights)
    shards = {d: np.arange(50, dtype=np.int64) for d in domains}
    sampler = MixtureSampler(shards, mix, context=4, batch=1, seed=0)
    upd = ScheduleUpdater(mix.schedule, every=1)
    upd.start(domains, sampler.weights_at(0.0), 10)
    for f in [0.0, 1.0, *extra, *(g for u in ends_ for g in around(u) if 0 <= g <= 1)]:
        i = phase_of(ends_, f)
        w = mix.weights_at(f)
        assert w == mix.schedule[i][1]
        assert min(w.values()) >= 0 and sum(w.values()) == pytest.approx(1.0, abs=1e-12)
        assert sum(f >= u for u in ends_[:-1]) == i  # the trainer's phase for its token counts
        assert sampler.weights_at(f).tolist() == [w[d] for d in domains]
        assert upd.weights_at(f).tolist() == [w[d] for d in domains]
    mean = mix.mean_weights()
    assert sum(mean.values()) == pytest.approx(1.0, abs=1e-12) and min(mean.values()) >= 0
    epochs = expected_epochs(mix, dict.fromkeys(domains, 1000), 5000.0)
    assert all(epochs[d] == pytest.approx(mean[d] * 5, rel=1e-12, abs=1e-12) for d in domains)


@settings(max_examples=150, deadline=None)
@given(mix=scheduled(), steps=st.integers(1, 400) | st.sampled_from([50, 100, 200, 1000, 5000]))
def test_each_phases_reported_steps_are_the_steps_that_draw_with_its_weights(mix: Mixture,
                                                                             steps: int) -> None:
    """Step s (from 1) draws at fraction (s - 1) / steps: the phases' [first, last] must partition the
    steps exactly as weights_at assigns them (the report's steps and the empty-phase warning)."""
    ends_ = [u for u, _ in mix.schedule]
    drawn = [phase_of(ends_, (s - 1) / steps) for s in range(1, steps + 1)]
    for i, (first, last) in enumerate(_phase_steps(mix, steps)):
        assert [s for s in range(1, steps + 1) if drawn[s - 1] == i] == list(range(first, last + 1)), i


def test_a_phase_ending_at_0_07_of_100_steps_ends_at_step_7() -> None:
    """0.07 · 100 is 7.000000000000001 in floats, so ceil had said phase 1 ran to step 8; step 8 draws at
    fraction 0.07, which is phase 2's (weights_at: 0.07 < 0.07 is false). A phase (0.07, 0.08) then
    had its one step reported as none, and a warning said its weights were never trained."""
    a, b, c = {"x": 1.0, "y": 0.0}, {"x": 0.0, "y": 1.0}, {"x": 0.5, "y": 0.5}
    mix = Mixture(a, schedule=((0.07, a), (0.08, b), (1.0, c)))
    assert _phase_steps(mix, 100) == [(1, 7), (8, 8), (9, 100)]
    assert mix.weights_at(7 / 100) == b


def test_one_routed_slot_or_an_expert_width_of_1_takes_the_loop_not_an_error() -> None:
    """torch._grouped_mm checks a size-1 dim's stride too; `_aligned` had skipped those, so one token
    routed to one expert (batch 1, context 1, top_k 1) or expert_hidden 1 raised "strides should be
    multiple of 16 bytes" out of the layer."""
    from mixopt.train.moe import MoE

    for kw, shape in (({"expert_hidden": 1}, (2, 4, 8)), ({"expert_hidden": 6}, (1, 1, 8))):
        torch.manual_seed(0)
        layer = MoE(MoEConfig(d_model=8, n_experts=2, top_k=1, **kw))
        x = torch.randn(*shape, requires_grad=True)
        out, _ = layer(x)
        out.sum().backward()
        assert out.shape == shape and torch.isfinite(x.grad).all()


@settings(max_examples=40, deadline=None)
@given(steps=st.integers(1500, 6000), warmup=st.floats(0.0, 0.5), floor=st.floats(0.0, 1.0),
       decay=st.sampled_from([0.0, 0.5, 0.9]), at=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=6))
def test_the_lr_areas_of_a_long_run_summed_on_a_grid_match_the_exact_sums(
        steps: int, warmup: float, floor: float, decay: float, at: list[float]) -> None:
    def lr(s: np.ndarray) -> np.ndarray:
        return schedule.warmup_cosine(s, steps, lr=1.0, min_lr=floor, warmup=warmup)

    rates = lr(np.arange(steps))
    assert np.all(rates > 0) and np.all(rates <= 1.0 + 1e-12)
    warm = max(1, round(warmup * steps)) if warmup > 0 else 0
    assert np.all(np.diff(rates[warm:]) <= 1e-12) and np.all(rates[warm:] >= floor - 1e-12)
    counts = np.array(sorted({max(1, round(f * steps)) for f in at}))
    s1, s2 = schedule.lr_areas(lr, steps, counts, decay=decay)
    assert np.all(np.diff(s1) > 0) and np.all(s2 >= -1e-9)
    with pytest.MonkeyPatch.context() as m:
        m.setattr(schedule, "MAX_POINTS", 500)  # a stride of 3 to 12 steps
        g1, g2 = schedule.lr_areas(lr, steps, counts, decay=decay)
    # the grid holds each bucket's first rate: off by at most the rate's whole fall (≤ 1) per stride
    stride = -(-steps // 500)
    np.testing.assert_allclose(g1, s1, rtol=0, atol=2 * stride)
    # S2 is summed exactly over its window, but below the grid's running peak, which may miss the true
    # one by the cosine's fall over a stride, (π · stride / decay steps)² / 4 (~1e-10 at MAX_POINTS)
    fall = (np.pi * stride / (steps - warm)) ** 2 / 4
    np.testing.assert_allclose(g2, s2, rtol=2 * fall, atol=2 * fall / (1 - decay) + 1e-9)


# ----- the weight updaters -------------------------------------------------------------------
LOSS = (st.floats(0.0, 30.0) | st.sampled_from([math.nan, math.inf, -math.inf, 0.0]))


@st.composite
def observations(draw: st.DrawFn) -> tuple[list[float], list[tuple[list[float], list[int]]]]:
    """Initial weights and a run of (losses, tokens) windows; a domain without tokens has loss NaN,
    as the trainer's window gives it."""
    n = draw(st.integers(1, len(NAMES)))
    initial = draw(simplex(n))
    runs = []
    for _ in range(draw(st.integers(1, 12))):
        tokens = draw(st.lists(st.sampled_from([0, 0, 64, 512]), min_size=n, max_size=n))
        losses = draw(st.lists(LOSS, min_size=n, max_size=n))
        runs.append(([lo if t else math.nan for lo, t in zip(losses, tokens, strict=True)], tokens))
    return initial, runs


def _observe(step: int, total: int, weights: np.ndarray, losses: list[float],
             tokens: list[int]) -> Observation:
    return Observation(step=step, total_steps=total, domains=NAMES[:len(losses)], weights=weights,
                       losses=np.array(losses), tokens=np.array(tokens, dtype=np.int64))


def _run(upd: LossReweighter, initial: list[float], runs: list, start: int = 0,
         weights: np.ndarray | None = None) -> list[np.ndarray | None]:
    w = np.array(initial) if weights is None else weights
    out = []
    for k, (losses, tokens) in enumerate(runs[start:], start=start):
        new = upd.update(_observe((k + 1) * upd.every, len(runs) * upd.every, w, losses, tokens))
        out.append(new)
        if new is not None:
            w = check_weights(new, len(initial), "updater loss")
    return out


@settings(max_examples=200, deadline=None, suppress_health_check=SLOW)
@given(obs=observations(), eta=st.floats(0.0, 50.0), decay=st.floats(0.0, 1.0), eps=st.floats(0.0, 1.0),
       cut=st.integers(0, 12))
def test_the_loss_reweighter_stays_on_the_simplex_above_its_floor_and_resumes_identically(
        obs: tuple, eta: float, decay: float, eps: float, cut: int) -> None:
    initial, runs = obs
    n = len(initial)
    init = np.array(initial)
    make = lambda: LossReweighter(every=3, eta=eta, decay=decay, epsilon=eps)  # noqa: E731
    upd = make()
    upd.start(NAMES[:n], init, 3 * len(runs))
    whole = _run(upd, initial, runs)
    for (losses, _), w in zip(runs, whole, strict=True):
        seen = [i for i in range(n) if math.isfinite(losses[i]) and initial[i] > 0]
        assert (w is None) == (not seen)  # nothing to learn from: keep the weights
        if w is None:
            continue
        check_weights(w, n, "updater loss")  # finite, ≥ 0, sums to 1 within 1e-6
        assert w.sum() == pytest.approx(1.0, abs=1e-12)
        assert np.all(w >= eps * init * (1 - 1e-12))  # ε of the initial weights: no domain starves
        assert np.all(w[init == 0] == 0)  # a domain the mixture leaves out stays out
    # deterministic: another updater given the same run gives the same weights
    again = make()
    again.start(NAMES[:n], init, 3 * len(runs))
    assert _same(_run(again, initial, runs), whole)
    # resumed after `cut` updates from its state, through a checkpoint's plain values, as the trainer does
    cut = min(cut, len(runs))
    first = make()
    first.start(NAMES[:n], init, 3 * len(runs))
    before = _run(first, initial, runs[:cut])
    state = json.loads(json.dumps(first.state_dict()))
    resumed = make()
    resumed.start(NAMES[:n], init, 3 * len(runs))
    resumed.load_state_dict(state)
    last = next((w for w in reversed(before) if w is not None), None)
    after = _run(resumed, initial, runs, start=cut, weights=None if last is None else last)
    assert _same(before + after, whole)


def _same(a: list[np.ndarray | None], b: list[np.ndarray | None]) -> bool:
    return len(a) == len(b) and all(
        (x is None and y is None) or (x is not None and y is not None and np.array_equal(x, y))
        for x, y in zip(a, b, strict=True))


@settings(max_examples=100, deadline=None)
@given(mix=scheduled(), every=st.integers(1, 7), total=st.integers(1, 60))
def test_the_schedule_updater_gives_the_phase_of_each_update_and_has_nothing_to_resume(
        mix: Mixture, every: int, total: int) -> None:
    domains = list(mix.weights)
    ends_ = [u for u, _ in mix.schedule]
    upd = ScheduleUpdater(mix.schedule, every=every)
    upd.start(domains, np.array(mix.vector(domains)), total)
    for step in range(every, total + 1, every):
        w = upd.update(_observe(step, total, np.zeros(len(domains)), [1.0] * len(domains),
                                [1] * len(domains)))
        phase = mix.schedule[phase_of(ends_, step / total)][1]
        assert w.tolist() == [phase[d] for d in domains]
        check_weights(w, len(domains), "updater schedule")
    assert upd.state_dict() == {}
    plain = ScheduleUpdater(every=every)  # no schedule of its own: the mixture's is followed
    plain.start(domains, np.array(mix.vector(domains)), total)
    assert plain.update(_observe(every, total, np.zeros(len(domains)), [1.0] * len(domains),
                                 [1] * len(domains))) is None


@settings(max_examples=100, deadline=None)
@given(ends_=st.lists(st.floats(-1.0, 2.0) | st.sampled_from([0.0, 0.5, 1.0, math.nan]),
                      min_size=1, max_size=5))
def test_the_schedule_updater_takes_phases_only_in_training_order(ends_: list[float]) -> None:
    phases = [(u, {"a": 1.0}) for u in ends_]
    if all(a < b for a, b in zip([0.0, *ends_], ends_, strict=False)):
        ScheduleUpdater(phases)
    else:
        with pytest.raises(MixoptError, match="must increase strictly from 0; give the phases in training"):
            ScheduleUpdater(phases)


def test_a_schedule_updaters_phases_out_of_order_or_naming_an_unknown_domain_are_refused() -> None:
    """[(0.8, A), (0.5, B)] had trained A to 0.8 and then B, never B before A, without a word; a phase
    naming a domain the corpus lacks had given weights summing below 1, refused only at that phase's
    first update (hours into a run) as "returned weights summing to 0.5"."""
    with pytest.raises(MixoptError, match=r"phase ends \[0.8, 0.5\] must increase strictly"):
        ScheduleUpdater([(0.8, {"a": 1.0}), (0.5, {"b": 1.0})])
    upd = ScheduleUpdater([(0.5, {"a": 1.0}), (1.0, {"a": 0.5, "cod": 0.5})])
    with pytest.raises(MixoptError, match="'schedule' phase 2 names domains the corpus lacks: cod; known"):
        upd.start(["a", "code"], np.array([1.0, 0.0]), 100)


# ----- the sampler ---------------------------------------------------------------------------
@st.composite
def shards_and_mixture(draw: st.DrawFn) -> tuple[dict[str, np.ndarray], Mixture, int]:
    n = draw(st.integers(1, len(NAMES)))
    context = draw(st.integers(1, 12))
    mix = draw(scheduled().filter(lambda m: len(m.weights) == n)) if draw(st.booleans()) else \
        Mixture(dict(zip(NAMES[:n], draw(simplex(n)), strict=True)))
    phases = [w for _, w in mix.schedule] or [mix.weights]
    shards = {}
    for i, d in enumerate(NAMES[:n]):
        used = any(w[d] > 0 for w in phases)
        # a used domain holds at least one window (context + 1 tokens, exactly that often)
        size = draw(st.integers(context + 1, context + 200) if used else st.integers(0, context + 50))
        shards[d] = i * 100_000 + np.arange(size, dtype=np.int64)  # a token says its domain and place
    return shards, mix, context


@settings(max_examples=60, deadline=None, suppress_health_check=SLOW)
@given(data=shards_and_mixture(), seed=st.integers(0, 2**32 - 1),
       fraction=st.floats(0.0, 1.0) | st.sampled_from([0.0, 1.0]))
def test_draws_follow_the_weights_in_force_stay_in_their_shard_and_repeat_for_a_seed(
        data: tuple, seed: int, fraction: float) -> None:
    shards, mix, context = data
    sampler = MixtureSampler(shards, mix, context=context, batch=400, seed=seed)
    twin = MixtureSampler(shards, mix, context=context, batch=400, seed=seed)
    w = np.array([mix.weights_at(fraction)[d] for d in shards])
    counts = np.zeros(len(shards))
    for _ in range(5):
        dom, toks = sampler.draw(fraction)
        dom2, toks2 = twin.draw(fraction)
        assert np.array_equal(dom, dom2) and np.array_equal(toks, toks2)
        assert toks.shape == (400, context + 1) and toks.dtype == np.int64
        assert np.all(w[dom] > 0)  # a weight-0 domain never appears
        assert np.array_equal(toks[:, 0] // 100_000, dom)  # each window from its own domain's shard
        pos = toks % 100_000
        assert np.all(np.diff(pos, axis=1) == 1)  # consecutive tokens
        assert np.all(pos[:, -1] < np.array([len(shards[d]) for d in shards])[dom])  # inside the shard
        counts += np.bincount(dom, minlength=len(shards))
    n = counts.sum()
    sigma = np.sqrt(n * w * (1 - w))
    assert np.all(np.abs(counts - n * w) <= 5 * sigma + 3), (counts / n, w)
    for g, d in enumerate(shards):  # the gradient probe's windows, with a generator of their own
        if len(shards[d]) >= context + 1:
            a = sampler.windows_of(g, 7, np.random.default_rng(seed))
            assert np.array_equal(a, twin.windows_of(g, 7, np.random.default_rng(seed)))
            assert np.all(a // 100_000 == g) and np.all(a % 100_000 < len(shards[d]))


# ----- MoE routing and experts ---------------------------------------------------------------
@settings(max_examples=80, deadline=None, suppress_health_check=SLOW)
@given(E=st.integers(1, 8), k=st.integers(1, 8), T=st.integers(1, 20),
       score=st.sampled_from(["softmax", "sigmoid"]),
       norm=st.booleans(), balance=st.sampled_from(["bias", "aux", "none"]), seed=st.integers(0, 2**31),
       bias=st.floats(0.0, 1.0))
def test_the_router_picks_distinct_valid_experts_with_gates_as_documented(
        E: int, k: int, T: int, score: str, norm: bool, balance: str, seed: int, bias: float) -> None:
    K = min(k, E)
    cfg = MoEConfig(d_model=6, n_experts=E, top_k=K, expert_hidden=4, score_func=score, route_norm=norm,
                    balance=balance)
    g = torch.Generator().manual_seed(seed)
    router = Router(cfg)
    router.weight.data = torch.randn(E, 6, generator=g)
    router.expert_bias += bias * torch.randn(E, generator=g)
    x = torch.randn(T, 6, generator=g)
    gates, ids, aux = router(x)
    assert ids.shape == (T, K) and gates.shape == (T, K) and gates.dtype == torch.float32
    assert ids.min() >= 0 and ids.max() < E
    assert all(len(set(row)) == K for row in ids.tolist())  # K distinct experts per token
    logits = x @ router.weight.T
    scores = torch.softmax(logits, -1) if score == "softmax" else torch.sigmoid(logits)
    choice = scores + router.expert_bias if balance == "bias" else scores  # the bias only selects
    chosen = choice.gather(1, ids)
    if K < E:
        rest = choice.masked_fill(torch.zeros_like(choice, dtype=torch.bool).scatter(1, ids, True), -math.inf)
        assert torch.all(chosen.min(1).values >= rest.max(1).values - 1e-6)  # the top K
    raw = scores.gather(1, ids)
    want = raw / raw.sum(1, keepdim=True) if norm and K > 1 else raw
    torch.testing.assert_close(gates, want, rtol=1e-5, atol=1e-6)
    if norm and K > 1:
        torch.testing.assert_close(gates.sum(1), torch.ones(T), rtol=0, atol=1e-5)
    assert torch.isfinite(aux) and aux >= 0
    assert router.step_load.sum() == T * K  # every slot counted toward balancing
    load, before = router.step_load.clone(), router.expert_bias.clone()
    vio = router.update_bias()  # the step's end: MaxVio, and each bias a step toward the mean load
    assert vio == pytest.approx(float((load.max() - load.mean()) / load.mean()), rel=1e-6) and vio >= 0
    moved = torch.sign(load.mean() - load) * cfg.bias_rate if balance == "bias" else torch.zeros(E)
    torch.testing.assert_close(router.expert_bias - before, moved, rtol=0, atol=1e-6)
    assert router.step_load.sum() == 0


@settings(max_examples=60, deadline=None, suppress_health_check=SLOW)
@given(T=st.integers(1, 24), D=st.sampled_from([1, 3, 4, 8, 12]), Fh=st.sampled_from([1, 2, 4, 5, 8]),
       E=st.integers(1, 6), K=st.integers(1, 3), seed=st.integers(0, 2**31), distinct=st.booleans())
def test_the_grouped_experts_equal_the_naive_loop_forward_and_backward(
        T: int, D: int, Fh: int, E: int, K: int, seed: int, distinct: bool) -> None:
    g = torch.Generator().manual_seed(seed)
    if distinct:  # as the router gives them
        K = min(K, E)
        ids = torch.stack([torch.randperm(E, generator=g)[:K] for _ in range(T)])
    else:  # any slots, one expert twice in a token and experts with no token included
        ids = torch.randint(0, E, (T, K), generator=g)
    x = torch.randn(T, D, generator=g)
    gates = torch.rand(T, K, generator=g)
    w13 = torch.randn(E, D, 2 * Fh, generator=g) * 0.5
    w2 = torch.randn(E, Fh, D, generator=g) * 0.5
    up = torch.randn(T, D, generator=g)
    results = []
    for fn in (kernels.routed_experts, kernels.naive_experts):
        leaves = [t.clone().requires_grad_() for t in (x, gates, w13, w2)]
        out = fn(leaves[0], leaves[1], ids, leaves[2], leaves[3])
        (out * up).sum().backward()
        results.append([out.detach()] + [t.grad for t in leaves])
    for name, a, b in zip(("out", "x", "gates", "w13", "w2"), *results, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)
