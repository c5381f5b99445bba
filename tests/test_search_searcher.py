"""The Tune searcher contract, without Ray running: queue, retries, NaN as failure, save/restore."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from ray.tune.search import ConcurrencyLimiter, Searcher

from mixopt.search.searcher import MixtureSearcher, Slot, SwarmSearcher

DOMAINS = ["a", "b", "c"]
ROWS = [[0.2, 0.3, 0.5], [0.6, 0.2, 0.2], [1 / 3, 1 / 3, 1 / 3]]


def make(retries: int = 1) -> SwarmSearcher:
    return SwarmSearcher.from_rows(ROWS, domains=DOMAINS, search_id="s", seed=7, retries=retries)


def ok(value: float, run_id: str = "") -> dict:
    return {"objective": value, "status": "ok", "run_id": run_id}


def test_suggest_returns_each_slot_then_waits_then_finishes():
    s = make()
    cfgs = [s.suggest(f"t{i}") for i in range(3)]
    assert [c["run_id"] for c in cfgs] == ["s-s0000-a1", "s-s0001-a1", "s-s0002-a1"]
    assert cfgs[1]["weights"] == dict(zip(DOMAINS, ROWS[1], strict=True)) and cfgs[1]["seed"] == 7
    assert s.suggest("t3") is None  # nothing left to hand out while trials are live
    for i in range(3):
        s.on_trial_complete(f"t{i}", ok(1.0 + i))
    assert s.suggest("t4") == Searcher.FINISHED
    assert [o["value"] for o in s.observations] == [1.0, 2.0, 3.0]


@pytest.mark.parametrize(("outcome", "reseed"), [
    ({"result": {"objective": math.nan, "status": "ok"}, "error": False}, True),
    ({"result": {"objective": 2.0, "status": "diverged", "error": "non-finite"}, "error": False}, True),
    ({"result": {"objective": math.nan, "status": "failed", "error": "RuntimeError: boom"}, "error": False},
     False),
    ({"result": None, "error": True}, False),
    ({"result": {"status": "ok"}, "error": False}, True),  # no objective reported
])
def test_failures_are_retried_with_a_new_run_id_and_a_new_seed_after_a_divergence(outcome, reseed):
    """A diverged run gets another seed; one that raised or died keeps the swarm's seed (common
    random numbers: the runs of a swarm differ by their mixtures only)."""
    s = make(retries=1)
    first = s.suggest("t0")
    s.on_trial_complete("t0", outcome["result"], error=outcome["error"])
    assert not s.observations
    again = s.suggest("t1")
    assert again["slot"] == first["slot"] and again["attempt"] == 2
    assert again["run_id"] == "s-s0000-a2" and (again["seed"] != first["seed"]) == reseed
    s.on_trial_complete("t1", outcome["result"], error=outcome["error"])
    assert s.slots["s0000"].state == "failed" and s.slots["s0000"].error
    nxt = s.suggest("t2")
    assert nxt["slot"] == "s0001"  # the search goes on


def test_a_trial_that_dies_after_reporting_keeps_its_outcome():
    """A lost node after the report: Tune calls on_trial_complete(error=True) without the result. The
    driver recorded the reported outcome and counted the slot done; the searcher had retried it (found
    by tests/test_properties_searcher.py), measuring the slot twice."""
    s = make(retries=1)
    s.suggest("t0")
    s.on_trial_result("t0", ok(1.5, "s-s0000-a1"))
    s.on_trial_complete("t0", None, error=True)
    assert s.slots["s0000"].state == "done" and s.observations == [
        {"weights": ROWS[0], "value": 1.5, "run_id": "s-s0000-a1"}]
    assert s.suggest("t1")["slot"] == "s0001"
    # a reported failure still counts as one, and a death with no report as before
    s.on_trial_result("t1", {"objective": math.nan, "status": "diverged", "error": "non-finite"})
    s.on_trial_complete("t1", None, error=True)
    assert s.slots["s0001"].error == "non-finite" and s.slots["s0001"].reseeds == 1
    s.suggest("t2")
    s.on_trial_complete("t2", None, error=True)
    assert s.slots["s0001"].state == "failed" and s.slots["s0001"].error.startswith("the trial process died")


def test_fatal_error_stops_the_search():
    s = make()
    s.suggest("t0")
    s.suggest("t1")
    s.on_trial_complete("t0", {"objective": math.nan, "status": "failed", "fatal": True,
                               "error": "evaluator returned no metrics"})
    assert s.fatal and "no metrics" in s.fatal
    assert s.suggest("t2") is None  # t1 still live
    s.on_trial_complete("t1", ok(1.0))
    assert s.suggest("t3") == Searcher.FINISHED


def test_save_and_restore_mid_search_is_explicit_json(tmp_path):
    s = make()
    s.suggest("t0")
    s.suggest("t1")
    s.on_trial_complete("t0", ok(1.5))
    s.on_trial_complete("t1", None, error=True)  # retry pending
    s.suggest("t2")  # live: s0001 attempt 2
    path = tmp_path / "searcher.json"
    s.save(str(path))
    state = json.loads(path.read_text())  # a plain JSON dict, not a pickle
    assert state["live"] == {"t2": "s0001"} and state["version"] == 1

    r = SwarmSearcher(domains=["x", "y"], search_id="other", retries=5)
    r.restore(str(path))
    assert r.get_state() == s.get_state()
    # the restored searcher continues exactly where the first one was
    r.on_trial_complete("t2", ok(2.5))
    s.on_trial_complete("t2", ok(2.5))
    assert r.suggest("t3") == s.suggest("t3")
    assert r.observations == s.observations


def test_restore_refuses_another_state_version(tmp_path):
    s = make()
    state = s.get_state()
    state["version"] = 99
    with pytest.raises(ValueError, match="version 99"):
        s.set_state(state)


def test_add_evaluated_point_warm_starts_and_skips_failures():
    s = make()
    s.add_evaluated_point({"weights": {"a": 0.5, "b": 0.5, "c": 0.0}, "run_id": "old"}, 2.0)
    s.add_evaluated_point({"a": 0.1, "b": 0.1, "c": 0.8}, math.nan)
    s.add_evaluated_point({"a": 0.1, "b": 0.1, "c": 0.8}, 1.0, error=True)
    assert s.observations == [{"weights": [0.5, 0.5, 0.0], "value": 2.0, "run_id": "old"}]


def test_under_a_batch_concurrency_limiter_results_arrive_per_batch():
    s = make()
    lim = ConcurrencyLimiter(s, max_concurrent=2, batch=True)
    a, b = lim.suggest("t0"), lim.suggest("t1")
    assert lim.suggest("t2") is None  # limit reached
    lim.on_trial_complete("t0", ok(1.0))
    assert not s.observations and lim.suggest("t3") is None  # waits for the whole batch
    lim.on_trial_complete("t1", ok(2.0))
    assert len(s.observations) == 2
    c = lim.suggest("t4")
    assert {a["slot"], b["slot"], c["slot"]} == {"s0000", "s0001", "s0002"}
    assert not SwarmSearcher.syncs_batches  # a fixed plan: the driver never holds trials for a batch


class _Sequential(MixtureSearcher):
    """A sequential method plans its next slot from what it has seen (as Bayesian optimisation does)."""

    def more(self, n_live: int) -> list[Slot]:
        if n_live or len(self.slots) >= 3:
            return []
        best = [1 / 3] * 3
        if self.observations:
            best = min(self.observations, key=lambda o: o["value"])["weights"]
        w = np.asarray(best) * 0.5 + 0.5 / 3
        return [Slot(key=f"q{len(self.slots)}", weights=w.tolist(), seed=0)]


def test_a_sequential_searcher_fits_the_same_driver_interface():
    s = _Sequential(domains=DOMAINS, search_id="bo")
    seen = []
    for i in range(5):
        cfg = s.suggest(f"t{i}")
        if cfg == Searcher.FINISHED:
            break
        assert s.suggest(f"x{i}") is None  # waits for the result before planning the next point
        seen.append(cfg["slot"])
        s.on_trial_complete(f"t{i}", ok(3.0 - i))
    assert seen == ["q0", "q1", "q2"]
    assert s.suggest("last") == Searcher.FINISHED


def test_a_resumed_slot_keeps_the_retries_its_uncounted_attempts_did_not_use(tmp_path):
    """Interrupted and requeued attempts do not count against --retries, in the store's view and the
    searcher's alike: a resumed slot that then fails once is retried, not given up on."""
    from mixopt.search.runner import INTERRUPTED, REQUEUED, slot_states
    from mixopt.store import RunRecord, RunStore

    store = RunStore(tmp_path / "runs.sqlite")
    fid = {"rung": "xs"}
    store.add([
        RunRecord(run_id="s-s0000-a1", search_id="s", weights=dict(zip(DOMAINS, ROWS[0], strict=True)),
                  fidelity=fid, fidelity_key="k", status="failed", error=REQUEUED + "evaluator contract: x",
                  attempt=1, seed=7),
        RunRecord(run_id="s-s0000-a2", search_id="s", weights=dict(zip(DOMAINS, ROWS[0], strict=True)),
                  fidelity=fid, fidelity_key="k", status="failed", error=INTERRUPTED, attempt=2, seed=7),
    ])
    s = make(retries=1)
    slot_states(store, "s", list(s.slots.values()), retries=1)
    slot = s.slots["s0000"]
    assert (slot.state, slot.attempt, slot.failures) == ("pending", 3, 0)
    cfg = s.suggest("t0")
    assert cfg["run_id"] == "s-s0000-a3" and cfg["failures"] == 0 and cfg["seed"] == 7
    s.on_trial_complete("t0", {"objective": math.nan, "status": "failed", "error": "boom"})
    assert (slot.state, slot.attempt, slot.failures) == ("pending", 4, 1)  # one retry left, as the store says


def test_the_export_note_says_whether_the_proposal_lost_beyond_noise() -> None:
    from mixopt.search.validate import Measured, choose_export

    def m(mean: float, sem: float | None, n: int) -> Measured:
        return Measured(mean=mean, std=None, sem=sem, n=n, planned=n, values=[mean] * n, run_ids=[])

    # One seed each: the better baseline is exported, and the note does not blame the fit.
    name, notes = choose_export({"proposal": m(2.4903, None, 1), "uniform": m(2.4901, None, 1)}, rung="xs")
    assert name == "uniform" and "one seed cannot tell noise from a real gap" in notes[0]
    name, notes = choose_export({"proposal": m(2.50, 0.01, 3), "uniform": m(2.49, 0.01, 3)}, rung="xs")
    assert "within the seeds' noise" in notes[0]
    _, notes = choose_export({"proposal": m(2.60, 0.01, 3), "uniform": m(2.49, 0.01, 3)}, rung="xs")
    assert "the fit is not trustworthy" in notes[0]
    lost = {"proposal": m(2.60, 0.01, 3), "uniform": m(2.49, 0.01, 3)}
    _, notes = choose_export(lost, rung="xs", fitted=False)
    assert "worse than that baseline here" in notes[0] and "fit" not in notes[0].split("(")[-1]
    assert " at rung xs " in notes[0]
    _, notes = choose_export(lost, rung=None)  # a user's own evaluator at the swarm's fidelity
    assert "worse than uniform (2.6000" in notes[0] and "rung" not in notes[0]
    # a baseline whose every seed failed is said (a QA pass: "-" and n 0 in the table, unsaid)
    gone = Measured(mean=None, std=None, sem=None, n=0, planned=2, values=[], run_ids=[])
    name, notes = choose_export({"proposal": m(2.5, 0.01, 2), "uniform": gone, "natural": m(2.6, 0.01, 2)},
                                rung="xs")
    assert name == "proposal" and notes == ["every validation run of uniform failed or diverged: the "
                                            "proposal is not compared with it (`mixopt runs list` shows why)"]
    # a gap of rounding is a tie: the proposal stays (a QA pass: 1.93333341 vs 1.93333333 swapped it)
    assert choose_export({"proposal": m(1.93333340894, None, 1), "best_run": m(1.93333333333, None, 1)},
                         rung="xs") == ("proposal", [])
    # relative, also near 0 (the review: an absolute 1e-6 there hid a third of the objective)
    assert choose_export({"proposal": m(1.5e-6, None, 1), "best_run": m(1.0e-6, None, 1)}, rung=None)[0] == (
        "best_run")


def test_beats_is_the_paired_test_mixopt_compare_uses() -> None:
    """A QA pass: "✓ beats" was a difference of one standard error of the two means, so with 2 seeds
    a gap of 0.01 against per-run noise of 0.0115 was a win. It is now the test of `mixopt compare`:
    paired by seed, Student's t at z = 2 (12.7 standard errors with 2 seeds, 4.5 with 3)."""
    import numpy as np

    from mixopt.search.validate import Measured, compare
    from mixopt.stats import critical_t

    def m(values: list[float], seeds: list[int]) -> Measured:
        sd = float(np.std(values, ddof=1)) if len(values) > 1 else None
        sem = None if sd is None else sd / len(values) ** 0.5
        return Measured(mean=float(np.mean(values)), std=sd, sem=sem, n=len(values), planned=len(values),
                        values=values, run_ids=[], seeds=seeds)

    prop, uniform = m([2.7158, 2.7286], [1, 2]), m([2.72866, 2.72856], [1, 2])  # the QA pass's case
    c = compare(prop, uniform)
    assert c.diff > (prop.sem**2 + uniform.sem**2) ** 0.5  # what had been called a win
    assert c.paired and not c.beats and c.threshold == pytest.approx(critical_t(2.0, 2))
    # a gap that holds seed by seed beats, even where the seeds' spread is far larger than the gap
    prop, base = m([3.00, 3.20, 3.40], [1, 2, 3]), m([3.05, 3.26, 3.44], [1, 2, 3])
    c = compare(prop, base)
    assert c.paired and c.beats and c.threshold == pytest.approx(4.53, abs=0.01)
    assert not compare(prop, m([3.05, 3.26, 3.44], [4, 5, 6])).paired  # no common seeds: the means' errors
    assert compare(m([3.0], [1]), m([3.1], [1])).beats is None  # one seed: undecidable
    assert compare(prop, base).as_dict()["threshold"] == c.threshold


def test_a_seed_one_side_lost_decides_neither_the_difference_nor_the_export() -> None:
    """A QA pass: the proposal lost seed 3 (a failed run), a seed every mixture did well at; the table
    read "-0.0047 ✓" (means over all seeds beside a paired test) and uniform was exported."""
    from mixopt.search.validate import Measured, choose_export, compare

    def m(values: list[float], seeds: list[int]) -> Measured:
        return Measured(mean=sum(values) / len(values), std=0.01, sem=0.01, n=len(values), planned=3,
                        values=values, run_ids=[], seeds=seeds)

    prop, uniform = m([2.70, 2.72], [1, 2]), m([2.73, 2.751, 2.50], [1, 2, 3])
    assert uniform.mean < prop.mean  # on all its seeds' mean uniform looks better
    c = compare(prop, uniform)
    assert c.paired and c.diff == pytest.approx(0.0305) and c.beats  # the proposal is ahead seed by seed
    assert choose_export({"proposal": prop, "uniform": uniform}, rung="xs") == ("proposal", [])
    # behind at the common seeds: the baseline is exported, and the note gives the paired gap
    worse = m([2.76, 2.78], [1, 2])
    name, notes = choose_export({"proposal": worse, "uniform": uniform}, rung="xs")
    assert name == "uniform" and "paired by seed, worse by 0.0295 ± " in notes[0]
    assert "over the 2 seeds both measured" in notes[0]


def test_a_dead_trial_is_named_timed_out_only_past_the_trial_timeout():
    s = make(retries=2)
    s.suggest("t0")
    s.on_trial_complete("t0", None, error=True)
    assert s.slots["s0000"].error.startswith("the trial process died")  # no --trial-timeout
    s.timeout = 0.0  # every trial has run past it
    s.suggest("t1")
    s.on_trial_complete("t1", None, error=True)
    assert s.slots["s0000"].error == "timed out after 0 s (--trial-timeout)"
    s.timeout = 3600.0
    s.suggest("t2")
    s.on_trial_complete("t2", None, error=True)
    assert s.slots["s0000"].error.startswith("the trial process died")


def test_validation_skips_the_seed_the_best_run_was_chosen_at():
    from mixopt.search.validate import BEST_RUN, PROPOSAL, Candidate, validation_slots

    cands = [Candidate(name=PROPOSAL, weights=[0.5, 0.5]), Candidate(name=BEST_RUN, weights=[0.2, 0.8]),
             Candidate(name="uniform", weights=[0.5, 0.5], same_as=PROPOSAL)]
    seeds = {}
    for s in validation_slots(cands, k=3, seed=0, selected_at={BEST_RUN: 2}):
        seeds.setdefault(s.label, []).append(s.seed)
    # the best run (reused from a search whose swarm trained at seed 2) is not measured at 2 again
    assert seeds == {PROPOSAL: [1, 2, 3], BEST_RUN: [1, 3, 4]}
    assert len({s.key for s in validation_slots(cands, k=3, seed=0, selected_at={BEST_RUN: 2})}) == 6


def test_the_best_run_s_seed_is_skipped_where_it_is_validated(tmp_path):
    """With --method random the best run is the proposal: the proposal's slots skip its seed."""
    from mixopt.search.validate import (
        BEST_RUN,
        PROPOSAL,
        Candidate,
        dedupe,
        selection_seeds,
        validation_slots,
    )
    from mixopt.store import RunRecord, RunStore

    store = RunStore(tmp_path / "s.sqlite")
    store.add([RunRecord(run_id="old-s0007-a1", weights={"a": 0.2, "b": 0.8}, fidelity={}, fidelity_key="k",
                         status="ok", seed=1, metrics={"loss/a": 2.0})])
    cands = [Candidate(name=PROPOSAL, weights=[0.2, 0.8]),
             Candidate(name=BEST_RUN, weights=[0.2, 0.8], run_id="old-s0007-a1")]
    dedupe(cands)
    assert cands[1].same_as == PROPOSAL and selection_seeds(cands, store) == {PROPOSAL: 1}
    slots = validation_slots(cands, k=2, seed=0, selected_at=selection_seeds(cands, store))
    assert [(s.label, s.seed) for s in slots] == [(PROPOSAL, 2), (PROPOSAL, 3)]


def test_left_out_metrics_are_said_once_and_an_ok_runs_own_error_is_not(caplog):
    from mixopt.evaluator import NONFINITE_LEFT_OUT

    s = make()
    for i in range(3):
        s.suggest(f"t{i}")
    with caplog.at_level("WARNING", logger="mixopt.search.searcher"):
        s.on_trial_complete("t0", {**ok(1.0), "error": "slow node"})  # the evaluator's own note on an ok run
        s.on_trial_complete("t1", {**ok(1.0), "error": NONFINITE_LEFT_OUT + "mmlu"})
        s.on_trial_complete("t2", {**ok(1.0), "error": NONFINITE_LEFT_OUT + "mmlu"})
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 and said[0].startswith("run s-s0001-a1: non-finite metrics left out")
    assert len(s.observations) == 3


def test_a_validation_slot_borrows_only_a_run_of_the_same_mixture_seed_fidelity_and_objective(tmp_path):
    from mixopt.objective import Objective
    from mixopt.search.validate import borrowable
    from mixopt.store import RunRecord, RunStore, fidelity_key

    store = RunStore(tmp_path / "runs.sqlite")
    fid, other = {"rung": "xs"}, {"rung": "s"}
    uni = {"a": 0.5, "b": 0.5}
    loss = {"loss/a": 2.0, "loss/b": 3.0}

    def run(run_id, weights=uni, seed=1, f=fid, metrics=loss, search="old", status="ok", corpus="h"):
        return RunRecord(run_id=run_id, weights=weights, fidelity=f, fidelity_key=fidelity_key(f),
                         status=status, search_id=search, seed=seed, metrics=metrics, corpus_hash=corpus)

    store.add([run("other-seed", seed=3), run("other-mix", weights={"a": 0.6, "b": 0.4}),
               run("other-rung", f=other), run("other-corpus", corpus="g"), run("failed", status="failed"),
               run("no-b", metrics={"loss/a": 2.0}), run("mine", search="new"),
               run("good", seed=2)])
    slots = [Slot(key=f"v-uniform-k{j}", weights=[0.5, 0.5], seed=s, role="validate", label="uniform")
             for j, s in enumerate((1, 2))]
    got = borrowable(store, slots, search_id="new", corpus_hash="h", fidelity_key=fidelity_key(fid),
                     domains=["a", "b"], objective=Objective())
    assert got == {"v-uniform-k1": "good"}  # seed 1 has no run but the new search's own and broken ones


def test_the_export_is_the_candidate_no_other_beats_seed_by_seed() -> None:
    """The review: ranked by their gaps to the proposal alone (over the seeds each shares with it), A
    was exported though B beat it over the 3 seeds both measured."""
    from mixopt.search.validate import Measured, choose_export

    def m(values: list[float], seeds: list[int]) -> Measured:
        return Measured(mean=sum(values) / len(values), std=0.01, sem=0.01, n=len(values), planned=3,
                        values=values, run_ids=[str(v) for v in values], seeds=seeds)

    cands = {"proposal": m([2.70, 2.72], [1, 2]), "a": m([2.60, 2.62, 2.90], [1, 2, 3]),
             "b": m([2.65, 2.67, 2.40], [1, 2, 3])}
    assert choose_export(cands, rung="xs")[0] == "b"
