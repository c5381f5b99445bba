"""Boundaries and behaviours of the search, the baselines, the schedule and the proxy's data that the
tests had checked only far from the threshold, or not at all: a second mutation pass changed each (the
change in its docstring) and no test failed. Each fails on it now."""

from __future__ import annotations

import dataclasses
import math
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from mixopt.errors import MixoptError


# ----- search/searcher.py -------------------------------------------------------------------
def test_a_slot_planned_twice_or_with_the_wrong_number_of_weights_is_refused() -> None:
    """The tests had passed with this changed: `if slot.key in self.slots` -> `if False`, and
    `if len(slot.weights) != len(self.domains)` -> `if False` (in MixtureSearcher.add_slot)."""
    from mixopt.search.searcher import MixtureSearcher, Slot

    s = MixtureSearcher(domains=["a", "b"], search_id="s")
    s.add_slot(Slot(key="s0000", weights=[0.5, 0.5], seed=1))
    with pytest.raises(ValueError, match="slot s0000 planned twice"):
        s.add_slot(Slot(key="s0000", weights=[0.2, 0.8], seed=1))
    with pytest.raises(ValueError, match="slot s0001: 3 weights for 2 domains"):
        s.add_slot(Slot(key="s0001", weights=[0.2, 0.3, 0.5], seed=1))
    assert s.slots["s0000"].weights == [0.5, 0.5]


def test_a_restored_searcher_keeps_the_fatal_error_that_stopped_it(tmp_path: Path) -> None:
    """The tests had passed with this changed: `self.fatal = state["fatal"]` dropped from set_state."""
    from ray.tune.search import Searcher

    from mixopt.search.searcher import SwarmSearcher

    s = SwarmSearcher.from_rows([[0.5, 0.5], [0.2, 0.8]], domains=["a", "b"], search_id="s", seed=0)
    s.suggest("t0")
    s.on_trial_complete("t0", {"objective": math.nan, "status": "failed", "fatal": True,
                               "error": "no metrics"})
    s.save(str(tmp_path / "state.json"))
    r = SwarmSearcher(domains=["a", "b"], search_id="other")
    r.restore(str(tmp_path / "state.json"))
    assert r.fatal == s.fatal and "no metrics" in r.fatal
    assert r.done() and r.suggest("t1") == Searcher.FINISHED  # the other slot is not run after a resume


def test_a_pruned_point_is_no_warm_start_observation() -> None:
    """The tests had passed with this changed: `if error or pruned or v is None` ->
    `if error or v is None`."""
    from mixopt.search.searcher import MixtureSearcher

    s = MixtureSearcher(domains=["a", "b"], search_id="s")
    s.add_evaluated_point({"a": 0.5, "b": 0.5}, 2.0, pruned=True)
    assert s.observations == []


# ----- search/validate.py -------------------------------------------------------------------
def test_each_candidate_is_measured_by_its_own_runs_with_the_sample_sd(tmp_path: Path) -> None:
    """The tests had passed with this changed: `r.search_id != search_id or r.label == src` ->
    `r.label == src` (every run of the search counted for every candidate), and `np.std(vals, ddof=1)`
    -> `ddof=0` in measure."""
    from mixopt.objective import Objective
    from mixopt.search.validate import Candidate, measure
    from mixopt.store import RunRecord, RunStore

    store = RunStore(tmp_path / "runs.sqlite")

    def run(run_id: str, label: str, seed: int, loss: float, search: str = "s") -> RunRecord:
        return RunRecord(run_id=run_id, weights={"a": 0.5, "b": 0.5}, fidelity={}, fidelity_key="k",
                         status="ok", search_id=search, role="validate", label=label, seed=seed,
                         metrics={"loss/a": loss, "loss/b": loss})

    store.add([run("p1", "proposal", 1, 2.0), run("p2", "proposal", 2, 2.2),
               run("u1", "uniform", 1, 3.0), run("u2", "uniform", 2, 3.4), run("old", "x", 3, 3.2, "old")])
    cands = [Candidate(name="proposal", weights=[0.6, 0.4]), Candidate(name="uniform", weights=[0.5, 0.5])]
    got = measure(store, "s", cands, Objective(), ["a", "b"], k=2, borrowed={"uniform": ["old"]})
    assert got["proposal"].n == 2 and sorted(got["proposal"].run_ids) == ["p1", "p2"]
    assert got["proposal"].mean == pytest.approx(2.1) and got["proposal"].std == pytest.approx(0.2 / 2**0.5)
    assert sorted(got["uniform"].run_ids) == ["old", "u1", "u2"]  # a borrowed run of another search counts
    assert got["uniform"].std == pytest.approx(0.2)


def test_a_run_at_another_seed_does_not_measure_a_slot() -> None:
    """The tests had passed with this changed: `run.seed == slot.seed and bool(gap <= tol)` ->
    `bool(gap <= tol)` in measures (the driver's check that a reused validation run is still its slot's)."""
    from mixopt.search.searcher import Slot
    from mixopt.search.validate import measures
    from mixopt.store import RunRecord

    run = RunRecord(run_id="r", weights={"a": 0.5, "b": 0.5}, fidelity={}, fidelity_key="k", status="ok",
                    seed=5)
    assert measures(run, Slot(key="v-uniform-k0", weights=[0.5, 0.5], seed=5), ["a", "b"])
    assert not measures(run, Slot(key="v-uniform-k0", weights=[0.5, 0.5], seed=1), ["a", "b"])


def test_unpaired_means_pass_the_t_of_the_smaller_count() -> None:
    """The tests had passed with this changed: `critical_t(Z, min(prop.n, base.n))` -> `max(...)`."""
    from mixopt.search.validate import Measured, compare
    from mixopt.stats import Z, critical_t

    def m(values: list[float], seeds: list[int]) -> Measured:
        sd = float(np.std(values, ddof=1))
        return Measured(mean=float(np.mean(values)), std=sd, sem=sd / len(values) ** 0.5, n=len(values),
                        planned=len(values), values=values, run_ids=[], seeds=seeds)

    prop = m([2.0, 2.1], [1, 2])
    base = m([2.5 + 0.01 * i for i in range(10)], list(range(11, 21)))  # no seed in common: unpaired
    c = compare(prop, base)
    assert not c.paired and c.threshold == pytest.approx(critical_t(Z, 2))
    assert c.threshold > critical_t(Z, 10)


def test_a_baseline_whose_runs_all_failed_is_undecided() -> None:
    """The tests had passed with this changed: `if prop.mean is None or base.mean is None` ->
    `if prop.mean is None` in compare (the driver compares every candidate, failed ones too)."""
    from mixopt.search.validate import Measured, compare

    prop = Measured(mean=2.0, std=0.1, sem=0.07, n=2, planned=2, values=[1.93, 2.07], run_ids=[],
                    seeds=[1, 2])
    gone = Measured(mean=None, std=None, sem=None, n=0, planned=2, values=[], run_ids=[])
    c = compare(prop, gone)
    assert (c.diff, c.se, c.beats) == (None, None, None)


def test_a_gap_under_the_critical_t_is_within_the_noise() -> None:
    """The tests had passed with this changed: `gap > self.threshold * self.se` -> `gap > self.se` in
    Comparison.clear."""
    from mixopt.search.validate import Comparison

    c = Comparison(diff=-0.02, se=0.01, beats=False, threshold=4.5)
    assert not c.clear(0.02) and c.clear(0.05)


def test_the_export_note_names_the_seeds_both_measured_only_where_a_seed_was_lost() -> None:
    """The tests had passed with this changed: `if common and common < max(prop.n, b.n)` -> `if common`.
    The paired gap itself is always given (a QA pass: the means' ± alone read as noise)."""
    from mixopt.search.validate import Measured, choose_export

    def m(values: list[float]) -> Measured:
        return Measured(mean=sum(values) / 3, std=0.01, sem=0.01, n=3, planned=3, values=values, run_ids=[],
                        seeds=[1, 2, 3])

    name, notes = choose_export({"proposal": m([2.8, 2.9, 3.0]), "uniform": m([2.5, 2.6, 2.7])}, rung="xs")
    assert name == "uniform" and "seeds both measured" not in notes[0]
    said = "(2.9000 ± 0.0100 vs 2.6000 ± 0.0100 over 3 and 3 seeds; paired by seed, worse by 0.3000 ± 0.0000)"
    assert said in notes[0]


def test_a_proposal_whose_runs_all_failed_is_said_once() -> None:
    """The tests had passed with this changed: `if name not in done and name != PROPOSAL` ->
    `if name not in done` (the proposal was also listed among the baselines not compared)."""
    from mixopt.search.validate import Measured, choose_export

    gone = Measured(mean=None, std=None, sem=None, n=0, planned=2, values=[], run_ids=[])
    ok = Measured(mean=2.5, std=0.1, sem=0.07, n=2, planned=2, values=[2.43, 2.57], run_ids=[], seeds=[1, 2])
    name, notes = choose_export({"proposal": gone, "uniform": ok}, rung=None)
    assert name == "uniform" and len(notes) == 1 and notes[0].startswith("the proposal's validation runs")


# ----- search/result.py ---------------------------------------------------------------------
def test_the_mixture_json_gives_the_interval_and_seed_sd_of_the_proposal_only() -> None:
    """The tests had passed with these changed in build_mixture: `if interval and exported == PROPOSAL`
    -> `if interval`; `if exported == PROPOSAL:` -> `if True:` (seed_std); dropping
    `if r.name == exported: continue` (the export listed among its own baselines); `row.measured and
    row.measured.get("mean") is not None` -> `row.measured`; `positive / positive.sum()` -> `positive`."""
    from mixopt.mixture import Mixture
    from mixopt.search.result import CandidateRow, build_mixture
    from mixopt.space import SearchSpace

    def row(name: str, w: dict[str, float], mean: float | None) -> CandidateRow:
        measured = {"mean": mean, "std": None, "sem": None, "n": 0 if mean is None else 1}
        return CandidateRow(name=name, weights=w, predicted=2.0, predicted_std=0.1, swarm_value=None,
                            measured=measured, comparison=None)

    rows = [row("proposal", {"a": 0.6, "b": 0.6}, 2.1), row("uniform", {"a": 0.5, "b": 0.5}, None)]
    space = SearchSpace(domains=("a", "b"))

    def build(exported: str) -> Mixture:
        return build_mixture(rows=rows, exported=exported, space=space, objective={"metric": "loss"},
                             method="linear", params={}, provenance={}, notes=[], interval=(1.8, 2.2),
                             validate_rung="xs", seed_std=0.05)

    mix = build("proposal")
    assert mix.weights == pytest.approx({"a": 0.5, "b": 0.5})  # a proposer's unnormalised row, normalised
    assert mix.meta["predicted"]["interval"] == [1.8, 2.2] and mix.meta["predicted"]["seed_std"] == 0.05
    assert list(mix.meta["baselines"]) == ["uniform"] and mix.meta["measured"]["mean"] == 2.1
    mix = build("uniform")
    assert mix.meta["predicted"]["interval"] is None and "seed_std" not in mix.meta["predicted"]
    assert mix.meta["measured"] is None and list(mix.meta["baselines"]) == ["proposal"]
    # a baseline exported in the proposal's place keeps the comparison that chose it (a QA pass: it
    # had been dropped with the baseline's entry)
    chose = {"diff": -0.06, "se": 0.0012, "beats": False, "threshold": 4.5, "paired": True}
    rows[1] = dataclasses.replace(rows[1], measured={"mean": 2.04, "std": 0.01, "sem": 0.006, "n": 3},
                                  comparison=chose)
    assert build("uniform").meta["measured"] == {"mean": 2.04, "std": 0.01, "sem": 0.006, "n": 3,
                                                 "rung": "xs", "proposal_vs_this": chose}
    assert "proposal_vs_this" not in build("proposal").meta["measured"]


def test_a_row_without_a_model_sd_shows_no_widening() -> None:
    """The tests had passed with this changed: `sd_scale=... if c.predicted_std is not None else None`
    -> `sd_scale=finite_or_none(scale)` in candidate_rows."""
    from mixopt.search.result import candidate_rows
    from mixopt.search.validate import Candidate

    cands = [Candidate(name="proposal", weights=[0.6, 0.4], predicted=2.0, predicted_std=0.1,
                       info={"sd_scale": 1.5}),
             Candidate(name="best_run", weights=[0.5, 0.5], swarm_value=2.2)]
    rows = candidate_rows(cands, ["a", "b"], None, None, "proposal")
    assert [r.sd_scale for r in rows] == [1.5, None]


# ----- search/config.py ---------------------------------------------------------------------
@pytest.mark.parametrize(("kwargs", "refused"), [
    ({"budget": 100_000}, None),
    ({"validate": 100}, None),
    ({"retries": 100}, None),
    ({"retries": 101}, "--retries is 101; give at most 100"),
    ({"trial_timeout": 0.0}, "--trial-timeout is 0.0; it must be a number of seconds > 0"),
    ({"temperature": 0.0}, "--temperature is 0.0; it must be a finite number > 0"),
    ({"temperature": float("inf")}, "--temperature is inf; it must be a finite number > 0"),  # inf is > 0
])
def test_search_counts_at_their_bounds(kwargs: dict, refused: str | None) -> None:
    """The tests had passed with these changed in SearchConfig: `budget > MAX_BUDGET` -> `>=`,
    `validate > MAX_SEEDS` -> `>=`, dropping `retries > MAX_SEEDS`, `t > 0` -> `t >= 0` (trial timeout),
    `temperature > 0` -> `>= 0`."""
    from mixopt.search.config import SearchConfig

    def make() -> SearchConfig:
        return SearchConfig(evaluator="mixopt.testing:loglinear", domains=("a", "b"), **kwargs)

    if refused is None:
        make()
    else:
        with pytest.raises(MixoptError, match=refused):
            make()


def test_a_pair_given_twice_with_one_value_is_kept() -> None:
    """The tests had passed with this changed: `if name in out and out[name] != value` -> `if name in out`."""
    from mixopt.search.config import parse_assignments

    assert parse_assignments("a=0.5,b=0.2,a=0.5", option="--fix") == {"a": 0.5, "b": 0.2}
    with pytest.raises(MixoptError, match="--fix gives a twice"):
        parse_assignments("a=0.5,a=0.4", option="--fix")


# ----- search/prepare.py --------------------------------------------------------------------
def test_a_group_just_past_the_dominant_share_is_said() -> None:
    """The tests had passed with this changed: `share > DOMINANT_PRIOR` -> `share > 0.99`."""
    from mixopt.search.prepare import _dominant_group_note
    from mixopt.space import SearchSpace

    space = SearchSpace(domains=("reused", "new1"), tokens={"reused": 92e9, "new1": 8e9})  # 92% at T = 1
    with pytest.warns(UserWarning, match=r"reused holds 92\.0% of the swarm's prior"):
        _dominant_group_note(space, "reused", 1.0, counted=False)


def test_the_capped_away_note_at_its_bounds() -> None:
    """The tests had passed with these changed: `len(rows) < 4` -> `< 2`, and `< expected / 4` ->
    `< expected / 8` in capped_away_note."""
    from mixopt.search.prepare import capped_away_note
    from mixopt.space import SearchSpace

    space = SearchSpace(domains=("reused", "new1"), tokens={"reused": 1e9, "new1": 1e9})  # the others: 50%
    rows = np.array([[0.9, 0.1]] * 4)  # they get 10% of every row: under a quarter of 50%
    with pytest.warns(UserWarning, match="median share of 10.0%"):
        capped_away_note(space, rows, "reused", 1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        capped_away_note(space, rows[:3], "reused", 1.0)  # three rows tell nothing yet
        capped_away_note(space, np.array([[0.85, 0.15]] * 4), "reused", 1.0)  # 15%: above a quarter


# ----- fingerprint.py -----------------------------------------------------------------------
def test_fingerprints_tell_shapes_and_slots_apart_and_not_dict_order() -> None:
    """The tests had passed with these changed: the array's shape dropped from its digest; the dict's
    items fed in their order instead of `sorted(...)`; `state[name] = getattr(value, name)` -> `pass`
    (an object's __slots__ left out)."""
    from mixopt.fingerprint import fingerprint

    a = np.arange(6.0)
    assert fingerprint(a.reshape(2, 3)) != fingerprint(a.reshape(3, 2))
    assert fingerprint({"lr": 1.0, "seed": 2}) == fingerprint({"seed": 2, "lr": 1.0})

    class Slotted:
        __slots__ = ("scale",)

        def __init__(self, scale: float) -> None:
            self.scale = scale

    assert fingerprint(Slotted(1.0)) is not None
    assert fingerprint(Slotted(1.0)) == fingerprint(Slotted(1.0)) != fingerprint(Slotted(2.0))


# ----- baselines.py -------------------------------------------------------------------------
def test_the_temperature_baseline_of_a_natural_prior_search_is_regmixs() -> None:
    """The tests had passed with this changed: `search_temperature if search_temperature != 1.0 else
    DEFAULT_TEMPERATURE` -> `search_temperature`."""
    from mixopt.baselines import baseline_temperature

    assert baseline_temperature(1.0) == 2.0 and baseline_temperature(3.0) == 3.0


def test_a_baseline_moved_a_little_or_in_many_domains_is_said() -> None:
    """The tests had passed with these changed in moved_note: `abs(a - b) > 5e-4` -> `> 5e-2`, and
    `more = f" and {len(moved) - 5} more" ...` -> `more = ""`."""
    from mixopt.baselines import moved_note
    from mixopt.space import SearchSpace

    space = SearchSpace(domains=("a", "b"), ceilings={"a": 0.49})
    assert moved_note("uniform", space) == "the uniform baseline is moved into the constraints: a 0.500 → " \
                                           "0.490, b 0.500 → 0.510"
    seven = SearchSpace(domains=tuple("abcdefg"), fixed={"a": 0.4})
    note = moved_note("uniform", seven)
    assert note is not None and note.endswith(" and 2 more")


# ----- schedule.py --------------------------------------------------------------------------
def _opt(**kw: object) -> SimpleNamespace:
    base = {"lr": 1e-3, "min_lr": 1e-4, "weight_decay": 0.1, "grad_clip": 1.0, "warmup": 0.05,
            "beta1": 0.9, "beta2": 0.95, "eval_at": (0.5, 1.0)}
    return SimpleNamespace(**{**base, **kw})


@pytest.mark.parametrize(("kw", "said"), [
    ({"min_lr": 2e-3}, "need lr > 0 and min_lr ≤ lr"),
    ({"warmup": 1.0}, "warmup is 1.0; it is a fraction of steps in"),
    ({"beta2": 1.0}, r"betas must be in \[0, 1\)"),
    ({"eval_at": (0.0, 0.5)}, r"must hold fractions in \(0, 1\]"),
])
def test_optimiser_settings_at_their_bounds_are_refused(kw: dict, said: str) -> None:
    """The tests had passed with these changed in check_optimizer: dropping `cfg.min_lr > cfg.lr`;
    `0 <= cfg.warmup < 1` -> `<= 1`; betas `< 1` -> `<= 1`; eval_at `0 < f <= 1` -> `0 <= f <= 1`."""
    from mixopt.schedule import check_optimizer

    assert check_optimizer(_opt(min_lr=1e-3, warmup=0.0, beta2=0.0), "x") == (0.5, 1.0)  # the bounds inside
    with pytest.raises(MixoptError, match=said):
        check_optimizer(_opt(**kw), "x")


def test_an_evaluation_early_in_a_short_run_is_after_its_first_step() -> None:
    """The tests had passed with this changed: `max(1, round(f * steps))` -> `round(f * steps)` in
    eval_steps."""
    from mixopt.schedule import eval_steps

    assert eval_steps([0.001, 0.5, 1.0], 100) == [1, 50, 100]


# ----- entropy.py ---------------------------------------------------------------------------
def test_an_unseen_context_falls_back_to_the_add_one_unigram() -> None:
    """The tests had passed with this changed: `(uni + 1.0) / (uni.sum() + V)` ->
    `(uni + 1.0) / uni.sum()`."""
    from mixopt.entropy import bigram_entropy

    # no validation context was seen in training: each token costs -log((0 + 1) / (2 + 4))
    assert bigram_entropy(np.array([0, 1]), np.array([2, 3]), 4) == pytest.approx(math.log(6))


def test_the_softmax_of_entropies_takes_its_temperature() -> None:
    """The tests had passed with this changed: `np.exp((h - h.max()) / temperature)` ->
    `np.exp(h - h.max())`."""
    from mixopt.entropy import entropy_weights

    w = entropy_weights(np.array([1.0, 2.0]), temperature=2.0)
    assert w == pytest.approx([1 / (1 + math.exp(0.5)), 1 / (1 + math.exp(-0.5))])


# ----- proxy/sampler.py ---------------------------------------------------------------------
def test_a_domain_of_exactly_one_window_is_not_short_and_every_start_is_drawn() -> None:
    """The tests had passed with these changed: `n < context + 1` -> `n < context` in short_domains, and
    the valid starts `len(s) - context` -> `len(s) - context - 1` (the last window never drawn)."""
    from mixopt.mixture import Mixture
    from mixopt.proxy.sampler import MixtureSampler, short_domains

    assert short_domains({"a": 4, "b": 5, "c": 6}, 4) == {"a": 4}
    s = MixtureSampler({"a": np.arange(6), "b": np.arange(100, 200)}, Mixture({"a": 0.5, "b": 0.5}),
                       context=4, batch=64, seed=0)
    dom, out = s.draw()
    assert {int(r[0]) for r in out[dom == 0]} == {0, 1}  # both windows of a's six tokens


def test_a_short_domain_weighted_in_a_later_phase_is_refused() -> None:
    """The tests had passed with this changed: `any(w.get(d, 0.0) > 0 for w in phases)` ->
    `mixture.weights.get(d, 0.0) > 0`."""
    from mixopt.mixture import Mixture
    from mixopt.proxy.sampler import MixtureSampler

    a, b = {"a": 1.0, "b": 0.0}, {"a": 0.5, "b": 0.5}
    mix = Mixture(a, schedule=((0.5, a), (1.0, b)))
    with pytest.raises(MixoptError, match="domain 'b' has 3 training tokens"):
        MixtureSampler({"a": np.arange(100), "b": np.arange(3)}, mix, context=4, batch=2, seed=0)


def test_a_weighted_domain_without_training_tokens_takes_infinite_epochs() -> None:
    """The tests had passed with this changed: `float("inf") if share[d] > 0 else 0.0` -> `0.0`."""
    from mixopt.mixture import Mixture
    from mixopt.proxy.sampler import expected_epochs

    got = expected_epochs(Mixture({"a": 0.5, "b": 0.5, "c": 0.0}), {"a": 100, "b": 0, "c": 0}, 1000)
    assert got == {"a": 5.0, "b": math.inf, "c": 0.0}


# ----- proxy/valset.py ----------------------------------------------------------------------
def test_a_split_of_exactly_context_tokens_is_one_shorter_window() -> None:
    """The tests had passed with this changed: `n_tok < context + 1` -> `n_tok < context` in fixed_windows."""
    from mixopt.proxy.valset import fixed_windows

    w = fixed_windows(np.arange(8), context=8, max_tokens=64)
    assert w.shape == (1, 8) and w[0].tolist() == list(range(8))


def test_a_domain_with_an_empty_validation_split_is_refused() -> None:
    """The tests had passed with this changed: `if len(w) == 0` -> `if False` in ValidationSet.from_corpus."""
    from mixopt.proxy.valset import ValidationSet

    corpus = SimpleNamespace(domains=["a", "b"], name="c", bytes_per_token=lambda d, split: 4.0,
                             tokens=lambda d, split: np.arange(50) if d == "a" else np.arange(1))
    with pytest.raises(MixoptError, match="domain 'b' of corpus 'c' has an empty validation split"):
        ValidationSet.from_corpus(corpus, context=8, max_tokens=64)


# ----- proxy/rungs.py / train/config.py -----------------------------------------------------
@pytest.mark.parametrize(("kw", "said"), [
    ({"tokens": 15}, "tokens 15 is less than one step of batch × context = 16"),
    ({"d_model": 6}, "head width d_model/n_head = 3 is odd"),
    ({"ffn_hidden": -1}, "ffn_hidden is -1"),
])
def test_a_rung_that_cannot_train_is_refused(kw: dict, said: str) -> None:
    """The tests had passed with these changed in RungConfig.__post_init__: dropping the check of
    `tokens < batch * context`, of an odd head width, and of `ffn_hidden < 0`."""
    from mixopt.proxy.rungs import RungConfig

    base = {"name": "t", "n_layer": 1, "d_model": 8, "n_head": 2, "context": 8, "batch": 2, "tokens": 16,
            "lr": 1e-3, "min_lr": 1e-4}
    RungConfig(**base)
    with pytest.raises(MixoptError, match=said):
        RungConfig(**{**base, **kw})


def test_a_step_of_the_final_trainer_holds_its_accumulated_batches() -> None:
    """The tests had passed with this changed: `batch * grad_accum * context` -> `batch * context`."""
    from mixopt.train.config import TrainConfig

    cfg = TrainConfig(batch=2, tokens=1024, lr=1e-3, min_lr=1e-4, grad_accum=4)
    assert cfg.tokens_per_step(8) == 64 and cfg.steps(8) == 16
