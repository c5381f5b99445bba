"""Stateful properties of the Tune searcher, without Ray: random interleavings of suggestions (several
trials out at once, under Tune's ``ConcurrencyLimiter`` or not, in batches or not), completions in any
order (ok, a NaN objective, diverged, failed, a dead trial, a fatal contract error, a death after the
outcome was reported), warm-start points, saves restored into a fresh searcher (with trials out, as
``Tuner.restore`` does), restores of an older checkpoint, and mixopt's own resume (a fresh searcher whose
slots :func:`slot_states` rebuilds from the run store, the trials out at the kill closed as
interrupted).

A model of every slot says what the searcher must do; a twin that is never saved must suggest exactly
what the saved-and-restored searcher suggests."""

from __future__ import annotations

import copy
import math
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)
from ray.tune.search import ConcurrencyLimiter, Searcher

from mixopt.search.runner import INTERRUPTED, slot_key, slot_states
from mixopt.search.searcher import RETRY_SEED_STRIDE, SwarmSearcher, run_id_for
from mixopt.search.trial import FATAL_PREFIX
from mixopt.search.validate import BEST_RUN, PROPOSAL, Candidate, dedupe, slot_prefix, validation_slots

DOMAINS = ["a", "b", "c"]
SID = "srch"
WEIGHTS = [[0.2, 0.3, 0.5], [0.6, 0.2, 0.2], [1 / 3, 1 / 3, 1 / 3], [1.0, 0.0, 0.0]]
# How a trial ends. "reported_then_died": the trial reported its outcome and then died (a lost node):
# Tune calls on_trial_result with it and then on_trial_complete(error=True), without the result.
OUTCOMES = ["ok", "ok_nan", "ok_missing", "diverged", "failed", "died", "fatal", "reported_then_died"]
RESEEDS = {"ok_nan", "ok_missing", "diverged"}  # a divergence: the retry moves the seed


@dataclass
class SlotModel:
    key: str
    weights: list[float]
    seed: int
    state: str = "pending"
    attempt: int = 1
    failures: int = 0
    reseeds: int = 0
    run_id: str | None = None
    oks: int = 0


@dataclass
class Model:
    slots: dict[str, SlotModel]
    retries: int
    fatal: bool = False
    base_live: dict[str, str] = field(default_factory=dict)  # trial id -> slot key, unheard by the searcher
    observations: list[dict[str, Any]] = field(default_factory=list)
    seen: dict[str, tuple[str, int, int]] = field(default_factory=dict)  # run id -> (slot, seed, attempt)

    def next_slot(self) -> SlotModel | None:
        return next((s for s in self.slots.values() if s.state == "pending"), None)

    def hear(self, trial_id: str, outcome: str, value: float) -> None:
        """The searcher hears a trial's end: what the slot must become."""
        s = self.slots[self.base_live.pop(trial_id)]
        if outcome in ("ok", "reported_then_died"):
            s.state, s.oks = "done", s.oks + 1
            self.observations.append({"weights": list(s.weights), "value": value, "run_id": s.run_id})
            return
        if outcome == "fatal":
            self.fatal, s.state = True, "failed"
            return
        s.failures += 1
        if s.failures <= self.retries:
            s.attempt += 1
            s.reseeds += outcome in RESEEDS
            s.state = "pending"
        else:
            s.state = "failed"


class FakeStore:
    """The run store as the driver's Tune callback writes it (what :func:`slot_states` reads)."""

    def __init__(self) -> None:
        self.records: dict[str, SimpleNamespace] = {}

    def runs(self, search_id: str | None = None, **_: Any) -> list[SimpleNamespace]:
        return [r for r in self.records.values() if search_id is None or r.search_id == search_id]


def result_for(outcome: str, run_id: str, value: float) -> tuple[dict[str, Any] | None, bool]:
    """What Tune hands ``on_trial_complete`` for ``outcome``: (result, error)."""
    if outcome == "ok":
        return {"objective": value, "status": "ok", "run_id": run_id, "error": None}, False
    if outcome == "ok_nan":
        return {"objective": math.nan, "status": "ok", "run_id": run_id, "error": None}, False
    if outcome == "ok_missing":
        return {"status": "ok", "run_id": run_id}, False
    if outcome == "diverged":
        return {"objective": math.nan, "status": "diverged", "run_id": run_id, "error": "non-finite"}, False
    if outcome == "failed":
        return {"objective": math.nan, "status": "failed", "run_id": run_id,
                "error": "RuntimeError: x"}, False
    if outcome == "fatal":
        return {"objective": math.nan, "status": "failed", "run_id": run_id, "fatal": True,
                "error": FATAL_PREFIX + "evaluator returned no metrics"}, False
    return None, True  # died, reported_then_died


def stored(outcome: str, value: float) -> tuple[str, str | None, float | None]:
    """What the driver's callback records for ``outcome``: (status, error, objective)."""
    return {
        "ok": ("ok", None, value), "reported_then_died": ("ok", None, value),
        # recorded ok with no objective (the store keeps finite objectives only); see kill_and_resume
        "ok_nan": ("ok", None, None), "ok_missing": ("ok", None, None),
        "diverged": ("diverged", "non-finite", None), "failed": ("failed", "RuntimeError: x", None),
        "died": ("failed", "the trial died: exit code 1", None),
        "fatal": ("failed", FATAL_PREFIX + "evaluator returned no metrics", None),
    }[outcome]


class Driver:
    """A searcher with the ConcurrencyLimiter Tune would put in front of it (or none)."""

    def __init__(self, searcher: SwarmSearcher, limit: int | None, batch: bool) -> None:
        self.searcher, self.limit, self.batch = searcher, limit, batch
        self.alg: Searcher = (ConcurrencyLimiter(searcher, max_concurrent=limit, batch=batch)
                              if limit is not None else searcher)

    def save(self, path: Path) -> dict[str, Any] | None:
        """As Tune's SearchGenerator.save_to_dir: the wrapper's state, and the base searcher's file."""
        self.alg.save(str(path))
        return self.alg.get_state() if self.limit is not None else None

    @classmethod
    def restored(cls, path: Path, wrapper: dict[str, Any] | None, limit: int | None, batch: bool,
                 into: SwarmSearcher | None = None) -> Driver:
        fresh = into if into is not None else SwarmSearcher(domains=["zz"], search_id="other", retries=9)
        d = cls(fresh, limit, batch)
        if wrapper is not None:
            d.alg.set_state(copy.deepcopy(wrapper))
        d.alg.restore(str(path))
        return d


class SearcherMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="mixopt-searcher-"))
        self.n = 0
        self.snapshot: dict[str, Any] | None = None
        self.rolled_back = False  # Tune's own restore of an older checkpoint (see kill_and_resume)

    # ----- setup ----------------------------------------------------------------------------
    @initialize(
        rows=st.lists(st.sampled_from(range(len(WEIGHTS))), min_size=1, max_size=5),
        retries=st.integers(0, 2), seed=st.integers(0, 50), limit=st.none() | st.integers(1, 3),
        batch=st.booleans(), validate=st.none() | st.tuples(
            st.integers(1, 3), st.lists(st.sampled_from(range(len(WEIGHTS))), min_size=1, max_size=3),
            st.none() | st.integers(0, 5)),
    )
    def setup(self, rows: list[int], retries: int, seed: int, limit: int | None, batch: bool,
              validate: tuple[int, list[int], int | None] | None) -> None:
        self.retries, self.seed, self.limit, self.batch = retries, seed, limit, batch
        if validate is None:
            self.make = lambda: SwarmSearcher.from_rows([WEIGHTS[i] for i in rows], domains=DOMAINS,
                                                        search_id=SID, seed=seed, retries=retries)
        else:
            k, picks, skip = validate
            slots = self.check_validation_slots(k, picks, None if skip is None else seed + skip)
            self.make = lambda: SwarmSearcher(domains=DOMAINS, search_id=SID, retries=retries,
                                              slots=copy.deepcopy(slots))
        base = self.make()
        self.model = Model(slots={s.key: SlotModel(key=s.key, weights=list(s.weights), seed=s.seed)
                                  for s in base.slots.values()}, retries=retries)
        self.d = Driver(base, limit, batch)
        self.twin = Driver(self.make(), limit, batch)
        self.lim_live: set[str] = set()  # trials the limiter counts (cached ones included)
        self.cache: dict[str, tuple[str, float]] = {}  # batch mode: ended, not yet handed on
        self.out: dict[str, tuple[str, str]] = {}  # trials Tune runs: trial id -> (slot, run id)
        self.ended: list[str] = []
        self.out_runs: dict[str, str] = {}  # every trial id -> its run id
        self.store = FakeStore()

    def check_validation_slots(self, k: int, picks: list[int], skip: int | None) -> list[Any]:
        """Validation's slots: K per distinct candidate at seeds seed+1…seed+K, the best run's own seed
        skipped (docs/DECISIONS.md, "Validation seeds"), never the swarm's seed."""
        names = [PROPOSAL, BEST_RUN, "uniform"][: len(picks)]
        cands = [Candidate(name=n, weights=list(WEIGHTS[i])) for n, i in zip(names, picks, strict=True)]
        dedupe(cands)
        selected = {BEST_RUN: skip} if skip is not None else None
        slots = validation_slots(cands, k=k, seed=self.seed, selected_at=selected)
        assert len({s.key for s in slots}) == len(slots)
        for c in cands:
            mine = [s for s in slots if s.label == c.name]
            if c.same_as is not None:
                assert not mine
                continue
            seeds = [s.seed for s in mine]
            assert [s.key for s in mine] == [f"{slot_prefix(c.name)}{j}" for j in range(k)]
            assert all(s.role == "validate" and s.weights == c.weights for s in mine)
            assert seeds == sorted(set(seeds)) and len(seeds) == k and self.seed not in seeds
            own = skip if c.name == BEST_RUN else None
            assert own not in seeds
            want = [s for s in range(self.seed + 1, self.seed + k + 2) if s != own][:k]
            assert seeds == want
        return slots

    # ----- rules ------------------------------------------------------------------------------
    @rule(k=st.integers(1, 3))
    def suggest_some(self, k: int) -> None:
        """Tune asks again and again while it has room (one trial per free core)."""
        for _ in range(k):
            self.suggest()

    def suggest(self) -> None:
        tid = f"t{self.n}"
        self.n += 1
        got = self.d.alg.suggest(tid)
        assert got == self.twin.alg.suggest(tid)  # a restored searcher suggests what one never saved does
        m = self.model
        if self.limit is not None and len(self.lim_live) >= self.limit:
            assert got is None
            return
        if m.fatal:
            assert got == (None if m.base_live else Searcher.FINISHED)
            return
        slot = m.next_slot()
        if slot is None:
            assert got == (None if m.base_live else Searcher.FINISHED)
            return
        assert isinstance(got, dict), got
        run_id = run_id_for(SID, slot.key, slot.attempt)
        want_seed = slot.seed + RETRY_SEED_STRIDE * slot.reseeds
        assert got["slot"] == slot.key and got["run_id"] == run_id and got["attempt"] == slot.attempt
        assert got["seed"] == want_seed and got["failures"] == slot.failures
        assert got["weights"] == dict(zip(DOMAINS, slot.weights, strict=True))
        # a run id is handed out once, as one attempt of one slot at one seed
        assert run_id not in m.seen
        m.seen[run_id] = (slot.key, want_seed, slot.attempt)
        assert run_id not in {r for _, r in self.out.values()}
        slot.state, slot.run_id = "live", run_id
        m.base_live[tid] = slot.key
        if self.limit is not None:
            self.lim_live.add(tid)
        self.out[tid] = (slot.key, run_id)
        self.out_runs[tid] = run_id
        self.store.records[run_id] = SimpleNamespace(run_id=run_id, search_id=SID, attempt=slot.attempt,
                                                     status="running", error=None, seed=want_seed,
                                                     objective=None, weights=list(slot.weights))

    @precondition(lambda self: self.out)
    @rule(data=st.data(), ends=st.lists(st.tuples(st.sampled_from(OUTCOMES), st.floats(0.5, 5.0)), min_size=1,
                                        max_size=3))
    def complete_some(self, data: st.DataObject, ends: list[tuple[str, float]]) -> None:
        """Trials end in any order, several between two suggestions."""
        for outcome, value in ends:
            if self.out:
                self.complete(data.draw(st.sampled_from(sorted(self.out)), label="trial"), outcome, value)

    def complete(self, tid: str, outcome: str, value: float) -> None:
        _, run_id = self.out.pop(tid)
        self.ended.append(tid)
        status, error, objective = stored(outcome, value)
        rec = self.store.records[run_id]
        rec.status, rec.error, rec.objective = status, error, objective
        for d in (self.d, self.twin):
            result, err = result_for(outcome, run_id, value)
            if outcome == "reported_then_died":
                d.alg.on_trial_result(tid, {"objective": value, "status": "ok", "run_id": run_id})
            d.alg.on_trial_complete(tid, result, error=err)
        self.deliver(tid, outcome, value)

    def deliver(self, tid: str, outcome: str, value: float) -> None:
        """What the limiter hands on to the searcher, and when (Ray's ConcurrencyLimiter)."""
        if self.limit is None:
            self.model.hear(tid, outcome, value)
            return
        if not self.batch:
            self.lim_live.discard(tid)
            self.model.hear(tid, outcome, value)
            return
        self.cache[tid] = (outcome, value)
        if len(self.cache) >= len(self.lim_live):
            for t, (o, v) in self.cache.items():
                self.model.hear(t, o, v)
                self.lim_live.discard(t)
            self.cache = {}

    @precondition(lambda self: self.ended)
    @rule(data=st.data())
    def complete_again(self, data: st.DataObject) -> None:
        """Tune never ends a trial twice, but a searcher must not count a stray completion."""
        tid = data.draw(st.sampled_from(self.ended), label="ended trial")
        if tid in self.cache:
            return  # the limiter would count it again (Ray's, not mixopt's)
        before = self.d.searcher.get_state()
        self.d.alg.on_trial_complete(tid, {"objective": 1.0, "status": "ok"})
        self.twin.alg.on_trial_complete(tid, {"objective": 1.0, "status": "ok"})
        assert self.d.searcher.get_state() == before

    @rule(w=st.sampled_from(range(len(WEIGHTS))), value=st.sampled_from([1.0, 2.5, math.nan, math.inf]),
          error=st.booleans(), nested=st.booleans())
    def add_point(self, w: int, value: float, error: bool, nested: bool) -> None:
        weights = dict(zip(DOMAINS, WEIGHTS[w], strict=True))
        params = {"weights": weights, "run_id": f"old-{w}"} if nested else dict(weights)
        for d in (self.d, self.twin):
            d.alg.add_evaluated_point(params, value, error=error)
        if not error and math.isfinite(value):
            self.model.observations.append({"weights": list(WEIGHTS[w]), "value": value,
                                            "run_id": f"old-{w}" if nested else None})

    @rule(fresh=st.booleans())
    def save_and_restore(self, fresh: bool) -> None:
        """Tune saves the searcher (trials may be out) and ``Tuner.restore`` loads it into a new one:
        the trials that were out run on under their trial ids, and end there."""
        path = self.tmp / f"searcher-{self.n}.json"
        before = self.d.searcher.get_state()
        wrapper = self.d.save(path)
        into = None if fresh else self.d.searcher
        self.d = Driver.restored(path, wrapper, self.limit, self.batch, into=into)
        assert self.d.searcher.get_state() == before
        assert self.d.searcher.metric == "objective" and self.d.searcher.mode == "min"

    @rule()
    def checkpoint(self) -> None:
        path = self.tmp / f"snap-{self.n}.json"
        wrapper = self.d.save(path)
        self.snapshot = {"path": path, "wrapper": wrapper, "twin": copy.deepcopy(self.twin),
                         "model": copy.deepcopy(self.model), "lim_live": set(self.lim_live),
                         "cache": dict(self.cache), "out": dict(self.out), "ended": list(self.ended),
                         "store": copy.deepcopy(self.store)}

    @precondition(lambda self: self.snapshot is not None)
    @rule(fresh=st.booleans())
    def restore_checkpoint(self, fresh: bool) -> None:
        """Back to an older checkpoint (Tune's experiment state is saved now and then): what happened
        since is forgotten, by Tune and the searcher alike."""
        snap = self.snapshot
        assert snap is not None
        into = None if fresh else self.d.searcher
        self.d = Driver.restored(snap["path"], snap["wrapper"], self.limit, self.batch, into=into)
        self.twin = copy.deepcopy(snap["twin"])
        # Its run ids handed out since come again, and need not mean the same runs: an attempt's
        # number and seed follow the outcomes before it, which the restore forgot. (mixopt does not
        # restore Tune's checkpoints: its resume reads the store, which keeps those runs.)
        self.model = copy.deepcopy(snap["model"])
        self.lim_live, self.cache = set(snap["lim_live"]), dict(snap["cache"])
        self.out, self.ended = dict(snap["out"]), list(snap["ended"])
        self.store = copy.deepcopy(snap["store"])
        self.rolled_back = True
        assert self.d.searcher.get_state() == self.twin.searcher.get_state()

    @precondition(lambda self: not self.rolled_back and not self.model.fatal and not any(
        r.status == "ok" and r.objective is None for r in self.store.records.values()))
    @rule()
    def kill_and_resume(self) -> None:
        """mixopt's own resume: the driver is killed, the runs out are closed as interrupted, and a fresh
        searcher of the same plan gets its slots from the store (``_run_phase``).

        Not after a restore of an older Tune checkpoint either: mixopt resumes from the store alone, and
        the store keeps what Tune forgot (the runs handed out since that checkpoint).

        Not after a fatal error (the resume requeues it first) nor after an ``ok`` run without a finite
        objective: the searcher retries that one as a divergence, while :func:`slot_states` counts the
        store's ``ok`` as done. The trial cannot report one: the objective is a weighted mean (weights
        summing to 1) of metrics it has checked finite, which overflows only with losses near 1.8e308."""
        for run_id in [r for _, r in self.out.values()]:
            rec = self.store.records[run_id]
            rec.status, rec.error = "failed", INTERRUPTED
        m = self.model
        for tid, (outcome, value) in self.cache.items():  # recorded, though the limiter held them back
            m.hear(tid, outcome, value)
        for tid in list(m.base_live):  # cut short: run again, on the slot's seed, not a failure
            s = m.slots[m.base_live.pop(tid)]
            s.attempt += 1
            s.state = "pending"
        searcher = self.make()
        slots = list(searcher.slots.values())
        slot_states(self.store, SID, slots, retries=self.retries)
        m.observations = []
        for s in slots:
            if s.state == "done":
                rec = self.store.records[s.run_id]
                searcher.add_evaluated_point({"weights": dict(zip(DOMAINS, rec.weights, strict=True)),
                                              "run_id": rec.run_id}, rec.objective)
        for key, s in searcher.slots.items():
            want = m.slots[key]
            assert (s.state, s.attempt, s.run_id) == (want.state, want.attempt, want.run_id), (key, s, want)
            # what the slot's next attempt is run with: its failures so far and its seed (a slot done or
            # given up runs no more: the store and the searcher need not agree on those there, and do
            # not: the searcher stops counting at the last retry, the store counts every attempt, which
            # a resume that requeues a slot given up relies on)
            if s.state == "pending":
                assert (s.failures, s.reseeds) == (want.failures, want.reseeds), (key, s, want)
            want.failures, want.reseeds = s.failures, s.reseeds
        for s in m.slots.values():
            if s.state == "done":
                rec = self.store.records[s.run_id]
                m.observations.append({"weights": list(s.weights), "value": rec.objective,
                                       "run_id": s.run_id})
        self.d = Driver(searcher, self.limit, self.batch)
        self.twin = Driver(copy.deepcopy(searcher), self.limit, self.batch)
        self.lim_live, self.cache, self.out = set(), {}, {}
        self.snapshot = None  # an older Tune checkpoint belongs to the driver that died

    # ----- invariants -------------------------------------------------------------------------
    @invariant()
    def agrees_with_the_model(self) -> None:
        if not hasattr(self, "model"):
            return
        s, m = self.d.searcher, self.model
        assert s.get_state() == self.twin.searcher.get_state()
        assert set(s.live) == set(m.base_live) and (s.fatal is not None) == m.fatal
        for key, want in m.slots.items():
            got = s.slots[key]
            assert (got.state, got.attempt, got.failures) == (want.state, want.attempt, want.failures), (
                key, got, want)
            assert got.reseeds == want.reseeds, (key, got, want)
            assert want.oks <= 1  # a slot is filled once
            assert want.failures <= self.retries + 1
        assert s.observations == m.observations
        # a slot the store holds an ok run of is done: the searcher neither retries it nor gives it up
        held = {self.out_runs.get(t) for t in self.cache}
        for rec in self.store.records.values():
            if rec.status == "ok" and rec.objective is not None and rec.run_id not in held:
                assert s.slots[slot_key(SID, rec.run_id)].state == "done", rec.run_id

    def teardown(self) -> None:
        try:
            if hasattr(self, "model"):
                self.finish()
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def finish(self) -> None:
        """Every slot ends filled once, or given up after its retries, or the search stopped."""
        for _ in range(500):  # run the rest of the search: suggest all Tune may, then end them all ok
            before = len(self.out)
            self.suggest()
            if len(self.out) > before:
                continue
            if not self.out:
                break
            for t in sorted(self.out):
                self._end_ok(t)
        self.agrees_with_the_model()
        m = self.model
        assert not self.out and not m.base_live
        assert self.d.searcher.suggest("last") == Searcher.FINISHED and self.d.searcher.done()
        if not m.fatal:
            for s in m.slots.values():
                assert (s.state == "done" and s.oks == 1) or (s.state == "failed"
                                                              and s.failures == self.retries + 1), s

    def _end_ok(self, tid: str) -> None:
        _, run_id = self.out.pop(tid)
        self.ended.append(tid)
        rec = self.store.records[run_id]
        rec.status, rec.objective = "ok", 1.0
        for d in (self.d, self.twin):
            d.alg.on_trial_complete(tid, {"objective": 1.0, "status": "ok", "run_id": run_id})
        self.deliver(tid, "ok", 1.0)


# No explain phase: on a failure it replays the machine for minutes to annotate the shrunk steps.
SearcherMachine.TestCase.settings = settings(
    max_examples=60, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow],
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink])
TestSearcher = SearcherMachine.TestCase
