"""Validation: retrain the proposal and the baselines with K seeds, compare, choose what to export.

A fitted model can be confidently wrong when runs are few, so the proposal is retrained next to
the baselines (uniform, natural, temperature, the best run of the swarm) with K seeds at the
search's rung or a larger one. The proposal *beats* a baseline when its measured mean is lower by
more than the noise of the difference, by the test ``mixopt compare`` uses (:mod:`mixopt.stats`:
paired by seed, Student's t at z = 2). The search never exports a mixture that
validated worse than the best validated one: it exports the best one and says why.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mixopt.objective import Objective
from mixopt.search.searcher import Slot
from mixopt.stats import Z, critical_t, normal_interval, paired_difference, t_statistic
from mixopt.store import RunRecord, RunStore

PROPOSAL = "proposal"
BEST_RUN = "best_run"


@dataclass(kw_only=True)
class Candidate:
    """A mixture the search compares: the proposal or a baseline.

    Attributes:
        name: ``proposal``, ``uniform``, ``natural``, ``temperature`` or ``best_run``.
        weights: in the search's domain order.
        predicted, predicted_std, interval: the fitted model's prediction (None for ``random``).
        swarm_value: the objective measured in the swarm (the best run only).
        run_id: the swarm run behind ``best_run``.
        same_as: another candidate with the same weights (validated once, reported for both).
        predicted_per_domain: each domain's metric predicted by the same kind of model, fitted on the
            runs' per-domain metrics (None when the method fits nothing).
    """

    name: str
    weights: list[float]
    predicted: float | None = None
    predicted_std: float | None = None
    interval: tuple[float, float] | None = None
    swarm_value: float | None = None
    run_id: str | None = None
    same_as: str | None = None
    info: dict[str, Any] = field(default_factory=dict)
    predicted_per_domain: dict[str, float] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "weights": list(self.weights), "predicted": self.predicted,
            "predicted_std": self.predicted_std, "interval": list(self.interval) if self.interval else None,
            "swarm_value": self.swarm_value, "run_id": self.run_id, "same_as": self.same_as,
            "info": self.info, "predicted_per_domain": self.predicted_per_domain,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Candidate:
        d = dict(d)
        if d.get("interval") is not None:
            d["interval"] = tuple(d["interval"])
        return cls(**d)


@dataclass(frozen=True, kw_only=True)
class Measured:
    """Validation runs of one candidate: mean, std and standard error over the seeds that finished."""

    mean: float | None
    std: float | None
    sem: float | None
    n: int
    planned: int
    values: list[float]
    run_ids: list[str]
    seeds: list[int] = field(default_factory=list)  # each value's seed: runs of one seed are paired

    def as_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std, "sem": self.sem, "n": self.n, "planned": self.planned,
                "values": self.values, "run_ids": self.run_ids, "seeds": self.seeds}


@dataclass(frozen=True, kw_only=True)
class Comparison:
    """Proposal against one baseline: ``diff`` = baseline mean − proposal mean (> 0: proposal better)."""

    diff: float | None
    se: float | None
    beats: bool | None  # None: not decidable (a side without runs, or one seed each: no standard error)
    threshold: float | None = None  # the critical t the difference had to pass, in standard errors
    paired: bool = False  # se of the seed-paired differences (else of the two means')

    def as_dict(self) -> dict[str, Any]:
        return {"diff": self.diff, "se": self.se, "beats": self.beats, "threshold": self.threshold,
                "paired": self.paired}

    def clear(self, gap: float) -> bool:
        """Whether ``gap`` (in the objective's units) lies beyond this comparison's noise."""
        return self.se is not None and self.threshold is not None and gap > self.threshold * self.se


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_") or "x"


def slot_prefix(name: str) -> str:
    """The key of candidate ``name``'s validation slots, less the seed's index: ``v-<name>-k``."""
    return f"v-{slug(name)}-k"


def dedupe(cands: Sequence[Candidate], tol: float = 1e-9) -> None:
    """Mark candidates whose weights equal an earlier one's (``same_as``), in place."""
    for i, c in enumerate(cands):
        for prev in cands[:i]:
            if prev.same_as is None and np.max(np.abs(np.subtract(c.weights, prev.weights))) <= tol:
                c.same_as = prev.name
                break


def selection_seeds(cands: Sequence[Candidate], store: RunStore) -> dict[str, int]:
    """Validated candidate → the seed of the stored run it was chosen for (the best run's).

    Keyed by the candidate that is validated for it: with ``--method random`` the best run *is*
    the proposal, and only the proposal's slots run.
    """
    out = {}
    for c in cands:
        rec = store.get(c.run_id) if c.run_id else None
        if rec is not None and rec.seed is not None:
            out[c.same_as or c.name] = rec.seed
    return out


def validation_slots(cands: Sequence[Candidate], *, k: int, seed: int,
                     selected_at: dict[str, int] | None = None) -> list[Slot]:
    """K slots per distinct candidate, seeds ``seed+1 … seed+K`` (never the swarm's training seed).

    ``selected_at``: candidate name → the seed of the run that made it a candidate (the best run,
    reused from an earlier search whose seed may fall in that range): that seed is skipped, else one
    validation run would repeat the run it was chosen for, winner's luck included.
    """
    slots = []
    for c in cands:
        if c.same_as is not None:
            continue
        skip = (selected_at or {}).get(c.name)
        seeds = [s for s in range(seed + 1, seed + 2 + k) if s != skip][:k]
        slots += [Slot(key=f"{slot_prefix(c.name)}{j}", weights=list(c.weights), seed=s, role="validate",
                       label=c.name) for j, s in enumerate(seeds)]
    return slots


def measures(run: RunRecord, slot: Slot, domains: Sequence[str], tol: float = 1e-9) -> bool:
    """Whether ``run`` is a measurement of ``slot``: its seed and its mixture (to float error)."""
    gap = np.max(np.abs(run.vector(domains) - np.asarray(slot.weights)))
    return run.seed == slot.seed and bool(gap <= tol)


def borrowable(store: RunStore, slots: Sequence[Slot], *, search_id: str, corpus_hash: str | None,
               fidelity_key: str, domains: Sequence[str], objective: Objective) -> dict[str, str]:
    """Slot key → a finished run of another search that already measured that slot.

    A validation slot is a mixture, a seed and a fidelity; a run of an earlier search with the same
    three (the baselines at seeds ``seed+1…``, validated by every search of the corpus) measured
    what the slot would, as a reused swarm run does, so it is not run again. Only runs whose metrics
    give this search's objective count.
    """
    pool: dict[int, list[RunRecord]] = {}
    for r in store.reusable(corpus_hash=corpus_hash, fidelity_key=fidelity_key, domains=domains,
                            exclude_search=search_id):
        if r.seed is not None and math.isfinite(objective.value(r.metrics, domains)):
            pool.setdefault(int(r.seed), []).append(r)
    # Each slot's first measuring run in the pool's order, found among the runs near it along a
    # projection (a run within `tol` of the slot lies within tol·|v|₁ of it there) rather than by
    # a scan of the whole pool per slot: a resume of 1,000 slots over 5,000 runs at its seed had
    # taken 4 minutes before any run.
    v = np.random.default_rng(0).uniform(0.5, 1.5, len(domains))
    window = 2e-9 * float(v.sum())  # measures' tol (1e-9), with room for rounding
    near: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for seed, runs in pool.items():
        proj = np.array([r.vector(domains) for r in runs]).reshape(len(runs), len(domains)) @ v
        order = np.argsort(proj, kind="stable")
        near[seed] = (order, proj[order])
    out = {}
    for s in slots:
        if s.seed not in near:
            continue
        order, sorted_proj = near[s.seed]
        p = float(np.asarray(s.weights, dtype=float) @ v)
        lo = np.searchsorted(sorted_proj, p - window, side="left")
        hi = np.searchsorted(sorted_proj, p + window, side="right")
        runs = pool[s.seed]
        if (i := min((i for i in order[lo:hi] if measures(runs[i], s, domains)), default=None)) is not None:
            out[s.key] = runs[i].run_id
    return out


def measure(
    store: RunStore, search_id: str, cands: Sequence[Candidate], objective: Objective, domains: Sequence[str],
    k: int, borrowed: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, Measured]:
    """Measured objective per candidate from the store's ``validate`` runs of this search, and the
    runs of earlier searches it reused (``borrowed``: validated candidate → run ids)."""
    runs = store.runs(search_id=search_id, role="validate", status="ok")
    out: dict[str, Measured] = {}
    for c in cands:
        src = c.same_as or c.name
        theirs = [store.get(i) for i in (borrowed or {}).get(src, [])]
        vals, ids, seeds = [], [], []
        for r in [*(r for r in theirs if r is not None and r.status == "ok"), *runs]:
            if r.search_id != search_id or r.label == src:
                v = objective.value(r.metrics, domains)
                if math.isfinite(v):
                    vals.append(v)
                    ids.append(r.run_id)
                    seeds.append(int(r.seed))
        n = len(vals)
        mean = float(np.mean(vals)) if n else None
        std = float(np.std(vals, ddof=1)) if n >= 2 else None
        sem = std / math.sqrt(n) if std is not None else None
        out[c.name] = Measured(mean=mean, std=std, sem=sem, n=n, planned=k, values=vals, run_ids=ids,
                               seeds=seeds)
    return out


def seed_spread(measured: Mapping[str, Measured]) -> tuple[float, int] | None:
    """(sd, mixtures): how far runs of one mixture spread from seed to seed, pooled over the
    validated mixtures with two or more seeds (each mixture once, however many names it has), or
    None where none has two.

    A swarm trains every mixture at one seed, so a model fitted on it has no seed noise in its ± sd:
    a QA pass measured a GP's sd covering 15–18% of runs at other seeds within ±1 sd where seed
    noise was three times the sd. Validation measures that spread; the proposal's interval takes it."""
    seen, ss, dof, n = set(), 0.0, 0, 0
    for m in measured.values():
        key = tuple(m.run_ids)
        if m.n < 2 or m.std is None or key in seen:
            continue
        seen.add(key)
        ss += (m.n - 1) * m.std**2
        dof += m.n - 1
        n += 1
    return (math.sqrt(ss / dof), n) if dof else None


def with_seed_noise(prop: Candidate, measured: Mapping[str, Measured] | None, *, exported: bool = True,
                    other_rung: str | None = None,
                    ) -> tuple[tuple[float, float] | None, float | None, str | None]:
    """(interval, seed sd, note) of the proposal: its model's 95% interval, made of the model's sd
    (as :func:`~mixopt.proposers.proposal.widen` left it) and :func:`seed_spread`'s together where
    validation measured one at the swarm's rung; the note says which (None for a model without an
    sd). ``exported``: the proposal's interval goes into the mixture JSON; ``other_rung``: the
    rung validation ran at, where it is not the swarm's (its spread is not the prediction's)."""
    if prop.predicted is None or prop.predicted_std is None:
        return prop.interval, None, None
    scale = prop.info.get("sd_scale", 1.0)
    model_sd = prop.predicted_std * scale
    sd_said = f"{model_sd:.4f}" + (f", {prop.predicted_std:.4f} widened ×{scale:.2f} by auto's "
                                   "cross-validation" if scale != 1.0 else "")
    said = f"the model's sd ({sd_said}) is of runs like its own (a swarm trains every mixture at one seed)"
    spread = seed_spread(measured) if measured and other_rung is None else None
    if other_rung is not None:
        return prop.interval, None, (f"{said}; validation ran at rung {other_rung}, whose seed spread is not "
                                     "the swarm rung's, so the interval is the model's alone")
    if spread is None:
        return prop.interval, None, (f"{said}: a run at another seed varies more, by what validation "
                                     "(--validate 2 or more) would measure")
    sd, mixtures = spread
    total = math.sqrt(model_sd**2 + sd**2)
    where = "; interval and seed_std in the mixture JSON" if exported else ""
    return normal_interval(prop.predicted, total), sd, (
        f"{said}; runs of one mixture spread by {sd:.4f} from seed to seed (pooled over the {mixtures} "
        f"validated mixtures), so the proposal's 95% interval is of both (sd {total:.4f}{where})")


def compare(prop: Measured, base: Measured) -> Comparison:
    """The proposal against one baseline, by the test ``mixopt compare`` uses (:mod:`mixopt.stats`):
    the difference paired by seed where two or more seeds measured both (runs of one seed share
    their random numbers), else the two means' standard errors; it must pass Student's t at z = 2.
    A difference of one standard error had been called a win: with 2 seeds, noise alone."""
    if prop.mean is None or base.mean is None:
        return Comparison(diff=None, se=None, beats=None)
    diff = base.mean - prop.mean
    mine, theirs = _by_seed(prop), _by_seed(base)
    both = sorted(set(mine) & set(theirs))
    if len(both) >= 2:
        # The difference is the paired one too, over the seeds both measured: with a seed lost to a
        # failed run, the two means over all seeds had differed in sign from the test (a QA pass:
        # "-0.0047 ✓", a proposal ahead at every common seed, behind on means that one "low" seed
        # entered on one side only)
        gap, se = paired_difference([theirs[s] for s in both], [mine[s] for s in both])
        threshold = critical_t(Z, len(both))
        return Comparison(diff=gap, se=se, beats=t_statistic(gap, se) > threshold, threshold=threshold,
                          paired=True)
    if prop.sem is None or base.sem is None:
        return Comparison(diff=diff, se=None, beats=None)
    se = math.sqrt(prop.sem**2 + base.sem**2)
    threshold = critical_t(Z, min(prop.n, base.n))
    return Comparison(diff=diff, se=se, beats=t_statistic(diff, se) > threshold, threshold=threshold)


def better_by(comparison: Mapping[str, Any] | None) -> str:
    """A comparison as the tables write it: the paired difference, its standard error, ✓ or ✗.

    The ± is the difference's own (a QA pass: beside the means' larger ± alone, a proposal that lost
    by 0.06 ± 0.0012 at every seed read as noise)."""
    if not comparison or comparison.get("diff") is None:
        return ""
    se = f" ± {comparison['se']:.4f}" if comparison.get("se") is not None else ""
    if se and comparison.get("paired") is False:  # under 2 seeds both measured: the means' se (a result
        se += " (unpaired)"  # stored before the field was kept says nothing of it)
    return f"{comparison['diff']:+.4f}{se}" + {True: " ✓", False: " ✗", None: ""}[comparison.get("beats")]


# The legend of every ✓/✗ (the search's table, report.md).
BEATS_RULE = ("✓/✗: the proposal beats that baseline, or not, beyond the seeds' noise: the difference, "
              "paired by seed, passes Student's t at z = 2 (14 standard errors with 2 seeds, 4.5 with 3), "
              "the test `mixopt compare` uses. \"Proposal better by\" is that paired difference, over the "
              "seeds both measured, ± its standard error (the JSON's proposal_vs_this.se), which is of the "
              "differences, not the ± se of each mixture's own runs. Each ✓ is one test (a false win about "
              "2% of the time): with four baselines, one false ✓ somewhere is about four times as likely. "
              "Validation trains each mixture at seeds seed+1 … seed+K, the swarm at the search's seed.")


def _by_seed(m: Measured) -> dict[int, float]:
    """Each seed's value; none where the seeds are not known (a result written before they were)."""
    return dict(zip(m.seeds, m.values, strict=True)) if len(m.seeds) == len(m.values) else {}


def choose_export(measured: dict[str, Measured], *, rung: str | None,
                  fitted: bool = True) -> tuple[str, list[str]]:
    """The candidate to export and the notes that explain the choice.

    The proposal, unless a validated candidate measured better (lower by more than a millionth, by
    :func:`compare`'s difference: paired by seed where two or more seeds measured both) or the
    proposal has no finished validation run. ``rung``: the validation rung to
    name in the notes, None to name none. ``fitted``: the proposal came from a fitted model (the
    note then says what a clear loss means for it).
    """
    notes: list[str] = []
    at = f" at rung {rung}" if rung else ""
    prop = measured[PROPOSAL]
    done = {name: m for name, m in measured.items() if m.mean is not None}
    if not done:
        notes.append("every validation run failed or diverged; exported the proposal unvalidated")
        return PROPOSAL, notes
    lost = [name for name in measured if name not in done and name != PROPOSAL]
    if lost:  # a QA pass: a baseline whose every seed diverged showed "-" and n 0, unsaid
        notes.append(f"every validation run of {', '.join(lost)} failed or diverged: the proposal is not "
                     "compared with it (`mixopt runs list` shows why)")
    if prop.mean is None:
        best = min(done, key=lambda name: done[name].mean)
        notes.append(
            f"the proposal's validation runs all failed or diverged; exported {best} instead, the best "
            f"validated mixture ({done[best].mean:.4f}{at})"
        )
        return best, notes
    # A candidate measured better than the proposal by compare()'s difference: paired by seed where
    # two or more seeds measured both, so that a seed one side lost does not decide it. A gap below
    # a millionth is rounding (a QA pass: 1.93333341 vs 1.93333333, a proposal all but the best
    # run's mixture, printed "1.9333 vs 1.9333" and exported the other): a tie, kept.
    gaps = {name: compare(prop, m) for name, m in done.items() if name != PROPOSAL}
    better = [name for name, c in gaps.items() if c.diff is not None
              and c.diff < -max(1e-6 * abs(prop.mean), 1e-12)]
    if better:
        # the one no other of them beats, each pair compared as the proposal was (the review: ranked by
        # their gaps to the proposal alone, over different seeds, one beaten by another was exported)
        unbeaten = [x for x in better
                    if not any((d := compare(done[x], done[o]).diff) is not None and d < 0
                               for o in better if o != x)]
        best = min(unbeaten or better, key=lambda name: (gaps[name].diff, done[name].mean))
        b, c = done[best], gaps[best]  # c.diff = b − proposal < 0 here
        if not c.clear(-c.diff):  # one seed, or a gap the seeds' noise explains
            why = ("the gap is within the seeds' noise" if c.se is not None else "one seed cannot tell noise "
                   "from a real gap") + ": more --validate seeds would tell which is better"
        elif fitted:
            why = "the fit is not trustworthy with these runs: add runs or try another method"
        else:
            why = "the proposal is worse than that baseline here"
        # The gap as the test took it, paired by seed: the means' ± are mostly the seeds' shared
        # spread, which pairing takes out (a QA pass: 6.9128 ± 0.0232 vs 6.8528 ± 0.0227 read as
        # noise, where the proposal lost at each seed by 0.058–0.062, ± 0.0012)
        common = len(set(_by_seed(prop)) & set(_by_seed(b))) if c.paired else 0
        over = f" over the {common} seeds both measured" if common and common < max(prop.n, b.n) else ""
        pm = f" ± {c.se:.4f}" if c.se is not None else ""
        paired = f"; paired by seed, worse by {-c.diff:.4f}{pm}{over}" if c.paired else ""
        notes.append(
            f"the proposal validated worse than {best}{at} ({prop.mean:.4f}{_pm(prop)} vs "
            f"{b.mean:.4f}{_pm(b)} over {prop.n} and {b.n} seeds{paired}); exported {best} instead, the "
            f"best validated mixture ({why})"
        )
        return best, notes
    return PROPOSAL, notes


def _pm(m: Measured) -> str:
    return f" ± {m.sem:.4f}" if m.sem is not None else ""
