"""Searchers: the adapters between mixopt's methods and Ray Tune's ``Searcher`` interface.

A searcher hands Tune one trial config at a time: the mixture, its seed and its run id. It keeps
a queue of planned evaluations ("slots"), retries a slot whose trial raised, diverged, was killed
or reported a NaN objective (a new run id, ``attempt`` + 1; another seed only after a divergence),
and stops the search on a fatal error (an evaluator that breaks its contract). Its state is an
explicit JSON dict (Tune's save/restore). mixopt's own resume does not restore it: it rebuilds the
slots from the run store (:func:`mixopt.search.runner.slot_states`), which keeps the runs an older
Tune checkpoint would forget; restored from one, a slot's next attempt may reuse a run id at another
seed, since an attempt's number and seed follow the outcomes before it.

:class:`MixtureSearcher` is the common base; a method family fills the queue:
:class:`SwarmSearcher` (RegMix-style batch methods: the whole swarm is planned up front, and Tune's
``ConcurrencyLimiter`` runs it, one trial per core) — a sequential method (Bayesian optimisation) overrides
:meth:`MixtureSearcher.more` to plan the next slot from the observations so far.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from ray.tune.search import Searcher

from mixopt.atomic import write_text
from mixopt.evaluator import NONFINITE_LEFT_OUT
from mixopt.stats import finite_or_none

logger = logging.getLogger(__name__)

STATE_VERSION = 1
METRIC = "objective"
# A retry must not reuse the seed of a run that diverged; far from the validation seeds seed+1..K.
RETRY_SEED_STRIDE = 1_000_003


@dataclass(kw_only=True)
class Slot:
    """One planned evaluation: a mixture (weights in the searcher's domain order) and a seed.

    ``key`` names the slot across attempts (``s0007``, ``v-uniform-k1``); the run id of an
    attempt is ``<search>-<key>-a<attempt>``.
    """

    key: str
    weights: list[float]
    seed: int
    role: str = "swarm"
    label: str | None = None
    attempt: int = 1
    state: str = "pending"  # pending | live | done | failed
    run_id: str | None = None
    error: str | None = None
    reseeds: int = 0  # earlier attempts that diverged
    failures: int = 0  # earlier attempts that count against --retries (not interrupted or requeued ones)

    def seed_for_attempt(self) -> int:
        # Only a divergence moves the seed: a run that raised or was interrupted is run again with
        # the slot's seed, so the swarm keeps one training seed (common random numbers) and a
        # resumed search matches an uninterrupted one.
        return self.seed + RETRY_SEED_STRIDE * self.reseeds


def run_id_for(search_id: str, key: str, attempt: int) -> str:
    return f"{search_id}-{key}-a{attempt}"


class MixtureSearcher(Searcher):
    """Queue of slots with retries, NaN-as-failure, fatal stop and JSON state.

    Args:
        domains: domain names, the order of every slot's weights.
        slots: the evaluations planned so far.
        search_id: prefix of run ids.
        retries: extra attempts per slot after a failure.
    """

    #: Whether Tune must hold new trials until the whole batch has finished
    #: (``ConcurrencyLimiter(batch=True)``): only for a method that plans each batch from the results
    #: of the previous one (q-batch Bayesian optimisation). A plan fixed up front gains nothing from
    #: the wait and loses a lot: measured on 2 cores, the second trial of every batch waited for a
    #: fresh actor (2.5-6 s) and a core idled until the slower trial of the batch ended (84% core
    #: use over a 40-run xs swarm; with 2-s trials, concurrency fell to 1 after the first batch).
    syncs_batches: bool = False

    def __init__(
        self, *, domains: Sequence[str], slots: Sequence[Slot] = (), search_id: str, retries: int = 1,
        metric: str = METRIC, mode: str = "min",
    ) -> None:
        super().__init__(metric=metric, mode=mode)
        self.domains = list(domains)
        self.search_id = search_id
        self.retries = int(retries)
        self.slots: dict[str, Slot] = {}
        self.live: dict[str, str] = {}  # Tune trial id -> slot key
        self.observations: list[dict[str, Any]] = []  # {"weights", "value", "run_id"}
        self.fatal: str | None = None
        self.timeout: float | None = None  # --trial-timeout, set by the runner: names a timed-out trial
        self.suggested: dict[str, float] = {}  # Tune trial id -> when it was suggested (monotonic)
        self.reported: dict[str, dict[str, Any]] = {}  # Tune trial id -> the outcome it reported
        self._left_out_said = False  # a run's unread non-finite metrics, warned of once
        for s in slots:
            self.add_slot(s)

    # ----- the queue ----------------------------------------------------------------------
    def add_slot(self, slot: Slot) -> None:
        if slot.key in self.slots:
            raise ValueError(f"slot {slot.key} planned twice")
        if len(slot.weights) != len(self.domains):
            raise ValueError(f"slot {slot.key}: {len(slot.weights)} weights for {len(self.domains)} domains")
        self.slots[slot.key] = slot

    def pending(self) -> list[Slot]:
        return [s for s in self.slots.values() if s.state == "pending"]

    def more(self, n_live: int) -> list[Slot]:
        """New slots to plan when the queue is empty; batch methods plan everything up front."""
        return []

    def done(self) -> bool:
        return self.fatal is not None or (not self.pending() and not self.live)

    # ----- Tune interface -----------------------------------------------------------------
    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if self.fatal is not None:
            return Searcher.FINISHED if not self.live else None
        queue = self.pending()
        if not queue:
            for s in self.more(len(self.live)):
                self.add_slot(s)
            queue = self.pending()
        if not queue:
            return None if self.live else Searcher.FINISHED
        slot = queue[0]
        slot.state = "live"
        slot.run_id = run_id_for(self.search_id, slot.key, slot.attempt)
        self.live[trial_id] = slot.key
        self.suggested[trial_id] = time.monotonic()
        return self.config_for(slot)

    def config_for(self, slot: Slot) -> dict[str, Any]:
        return {
            "run_id": slot.run_id,
            "slot": slot.key,
            "weights": dict(zip(self.domains, slot.weights, strict=True)),
            "seed": slot.seed_for_attempt(),
            "attempt": slot.attempt,
            "failures": slot.failures,  # before this attempt: the progress counts a slot out by it
            "role": slot.role,
            "label": slot.label,
        }

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id in self.live and result and "status" in result:
            self.reported[trial_id] = {k: result.get(k) for k in (self.metric, "status", "error", "fatal")}

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        reported = self.reported.pop(trial_id, None)
        if error and not result and reported is not None:
            # It died after reporting (a lost node): Tune passes no result, but the driver recorded the
            # outcome reported (TrialCallback) and counted it; a retry would measure the slot twice.
            result, error = reported, False
        key = self.live.pop(trial_id, None)
        ran = time.monotonic() - self.suggested.pop(trial_id, time.monotonic())
        if key is None:
            logger.debug("completion of unknown trial %s ignored", trial_id)
            return
        slot = self.slots[key]
        value = finite_or_none(result.get(self.metric)) if result else None
        status = result.get("status") if result else None
        if not error and status == "ok" and value is not None:
            slot.state = "done"
            slot.error = None
            note = (result or {}).get("error") or ""
            # once a search phase: every run of the evaluator does it
            if note.startswith(NONFINITE_LEFT_OUT) and not self._left_out_said:
                self._left_out_said = True
                logger.warning("run %s: %s; the run counts, without them", slot.run_id, note)
            self.observations.append({"weights": list(slot.weights), "value": value, "run_id": slot.run_id})
            return
        why = (result or {}).get("error")
        if not why:
            if not error:
                why = f"status {status!r}, objective {value}"
            elif self.timeout is not None and ran >= self.timeout:
                why = f"timed out after {self.timeout:g} s (--trial-timeout)"
            else:
                why = "the trial process died; `mixopt runs list` shows its error"
        slot.error = str(why)
        if result and result.get("fatal"):
            self.fatal = f"run {slot.run_id}: {why}"
            slot.state = "failed"
            return
        slot.failures += 1
        what = "diverged" if status in ("diverged", "ok") else "failed"  # "ok" here: a NaN objective
        if slot.failures <= self.retries:
            # Said, not only logged: a run that timed out and then succeeded is otherwise invisible.
            logger.warning("run %s %s (%s); retrying (attempt %d)", slot.run_id, what, why, slot.attempt + 1)
            slot.attempt += 1
            slot.reseeds += status in ("diverged", "ok")  # "ok" here: a NaN objective
            slot.state = "pending"
        else:
            logger.warning("run %s %s (%s); no retries left, the search goes on without it", slot.run_id,
                           what, why)
            slot.state = "failed"

    def add_evaluated_point(
        self, parameters: dict, value: float, error: bool = False, pruned: bool = False,
        intermediate_values: list[float] | None = None,
    ) -> None:
        """Warm start: a run evaluated elsewhere (e.g. reused from the run store)."""
        v = finite_or_none(value)
        if error or pruned or v is None:
            return
        weights = parameters.get("weights", parameters)
        w = [float(weights[d]) for d in self.domains]
        self.observations.append({"weights": w, "value": v, "run_id": parameters.get("run_id")})

    # ----- state --------------------------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "kind": type(self).__name__,
            "search_id": self.search_id,
            "domains": list(self.domains),
            "retries": self.retries,
            "metric": self.metric,
            "mode": self.mode,
            "slots": [asdict(s) for s in self.slots.values()],
            "live": dict(self.live),
            "observations": [dict(o) for o in self.observations],
            "fatal": self.fatal,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"searcher state version {state.get('version')} is not {STATE_VERSION}")
        self.search_id = state["search_id"]
        self.domains = list(state["domains"])
        self.retries = int(state["retries"])
        self._metric, self._mode = state["metric"], state["mode"]
        self.slots = {s["key"]: Slot(**s) for s in state["slots"]}
        self.live = dict(state["live"])
        self.reported = {}  # Tune runs the trials out at the save again: they report again
        self.observations = [dict(o) for o in state["observations"]]
        self.fatal = state["fatal"]

    def save(self, checkpoint_path: str) -> None:
        write_text(checkpoint_path, json.dumps(self.get_state()))

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, encoding="utf-8") as f:
            self.set_state(json.load(f))


class SwarmSearcher(MixtureSearcher):
    """Batch methods (RegMix, linear, random): every slot is planned before the first trial."""

    @classmethod
    def from_rows(
        cls, rows: Sequence[Sequence[float]], *, domains: Sequence[str], search_id: str, seed: int,
        retries: int = 1, role: str = "swarm", prefix: str = "s", labels: Sequence[str | None] | None = None,
    ) -> SwarmSearcher:
        """One slot per weight row, keyed ``<prefix><index>``, all trained with ``seed``.

        One training seed for the whole swarm (common random numbers): differences between runs
        then come from the mixtures, not from the initialisation.
        """
        labels = list(labels) if labels is not None else [None] * len(rows)
        slots = [
            Slot(key=f"{prefix}{i:04d}", weights=[float(x) for x in row], seed=int(seed), role=role,
                 label=labels[i] if labels[i] is not None else f"{prefix}{i:04d}")
            for i, row in enumerate(rows)
        ]
        return cls(domains=domains, slots=slots, search_id=search_id, retries=retries)


