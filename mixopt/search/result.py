"""What a search returns, and the mixture JSON it writes.

:class:`SearchResult` is what the CLI renders (the proposal next to the baselines, predicted and
measured) and what ``mixopt report`` reads back from the search's folder (``result.json``).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from mixopt.mixture import Mixture, evidence
from mixopt.reuse import Reuse
from mixopt.search.validate import PROPOSAL, Candidate, Comparison, Measured
from mixopt.space import SearchSpace
from mixopt.stats import finite_or_none


@dataclass(kw_only=True)
class CandidateRow:
    """One line of the summary table."""

    name: str
    weights: dict[str, float]
    predicted: float | None
    predicted_std: float | None
    swarm_value: float | None
    measured: dict[str, Any] | None
    comparison: dict[str, Any] | None
    exported: bool = False
    predicted_per_domain: dict[str, float] | None = None
    same_as: str | None = None  # an earlier candidate with these weights (its runs are this one's)
    sd_scale: float | None = None  # auto's cross-validation widened the model's sd by it (the table shows it)


@dataclass(kw_only=True)
class SearchResult:
    """A finished search: the exported mixture, the candidates, the runs, the notes."""

    search_id: str
    method: str
    objective: dict[str, Any]
    exported: str
    weights: dict[str, float]
    candidates: list[CandidateRow]
    # planned, ok, failed, reused, fitted, attempts; lost: {how: count}; restarted (swarm attempts
    # a stop cut short); validation_trained, validation_reused (validation runs of earlier searches
    # that stood in for this one's) and validation_restarted
    runs: dict[str, Any]
    notes: list[str]
    out: str | None
    mixture_path: str
    rung: str
    validate_rung: str | None
    validate: int
    wall_s: float
    ray: list[str] = field(default_factory=list)
    resumed: bool = False
    selection: list[dict[str, Any]] | None = None  # auto: the cross-validation of every candidate
    corpus: str | None = None  # None: the user's own evaluator

    def shown_rung(self) -> str | None:
        """The validation rung where naming it tells something (:func:`shown_rung`)."""
        return shown_rung(self.validate_rung, rung=self.rung, corpus=self.corpus)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SearchResult:
        d = dict(d)
        d["candidates"] = [CandidateRow(**c) for c in d["candidates"]]
        return cls(**d)

    def row(self, name: str) -> CandidateRow | None:
        return next((c for c in self.candidates if c.name == name), None)


def shown_rung(validate_rung: str | None, *, rung: str, corpus: str | None) -> str | None:
    """The validation rung to name next to a measurement: always for the proxy trainer, whose rungs
    are model sizes; for a user's own evaluator only when it differs from the swarm's (there the
    rung is just the fidelity label its requests carried, "xs" unless the user chose one)."""
    if validate_rung is None or (corpus is None and validate_rung == rung):
        return None
    return validate_rung


def candidate_rows(
    cands: list[Candidate], domains: list[str], measured: dict[str, Measured] | None,
    comparisons: dict[str, Comparison] | None, exported: str,
) -> list[CandidateRow]:
    rows = []
    # auto's cross-validation measured the model's sds too narrow: every row's sd is that model's
    scale = next((c.info["sd_scale"] for c in cands if (c.info or {}).get("sd_scale")), None)
    for c in cands:
        rows.append(CandidateRow(
            name=c.name, weights=dict(zip(domains, c.weights, strict=True)),
            predicted=finite_or_none(c.predicted),
            predicted_std=finite_or_none(c.predicted_std), swarm_value=finite_or_none(c.swarm_value),
            measured=measured[c.name].as_dict() if measured else None,
            comparison=comparisons[c.name].as_dict() if comparisons and c.name in comparisons else None,
            exported=c.name == exported, predicted_per_domain=c.predicted_per_domain, same_as=c.same_as,
            sd_scale=finite_or_none(scale) if c.predicted_std is not None else None,
        ))
    return rows


def build_mixture(
    *, rows: list[CandidateRow], exported: str, space: SearchSpace, objective: dict[str, Any],
    method: str, params: dict[str, Any], provenance: dict[str, Any], notes: list[str],
    interval: tuple[float, float] | None, validate_rung: str | None, seed_std: float | None = None,
    sd_scale: float | None = None, group: Reuse | None = None, tokens: Mapping[str, float] | None = None,
) -> Mixture:
    """The mixture JSON: exported weights, prediction, measurement, baselines, tokens, provenance.

    ``group``: a reused mixture's, whose units ``rows`` are over: the mixture (its baselines, its
    token plan from ``tokens`` per domain) is written over every domain, what a training job reads."""
    row = next(r for r in rows if r.name == exported)
    w = [row.weights[d] for d in space.domains]
    predicted = None
    if row.predicted is not None:
        predicted = {"mean": row.predicted, "std": row.predicted_std,
                     "interval": list(interval) if interval and exported == PROPOSAL else None}
        if exported == PROPOSAL:  # what the interval is made of besides the model's own sd
            extra = {"seed_std": seed_std, "sd_scale": sd_scale}
            predicted.update({k: v for k, v in extra.items() if v is not None})
        if row.predicted_per_domain:  # what train's report sets each domain's final loss against
            predicted["per_domain"] = dict(row.predicted_per_domain)
            predicted["per_domain_metric"] = objective.get("metric", "loss")
    measured = None
    if row.measured and row.measured.get("mean") is not None:
        measured = {**{k: row.measured[k] for k in ("mean", "std", "sem", "n")}, "rung": validate_rung}
        if exported != PROPOSAL and row.comparison is not None:  # the comparison that chose it (a QA
            # pass: a baseline exported in the proposal's place is left out of baselines, and it with it)
            measured["proposal_vs_this"] = row.comparison
    baselines = {}
    for r in rows:
        if r.name == exported:
            continue
        entry: dict[str, Any] = {"weights": r.weights if group is None else group.expand_weights(r.weights),
                                 "predicted": r.predicted}
        if r.swarm_value is not None:
            entry["swarm_value"] = r.swarm_value
        if r.measured and r.measured.get("mean") is not None:
            entry["measured"] = {k: r.measured[k] for k in ("mean", "std", "sem", "n")}
        if r.comparison is not None:
            entry["proposal_vs_this"] = r.comparison
        baselines[r.name] = entry
    # A proposer's float error must neither fail the schema (a weight below 0) nor step past a bound.
    positive = np.clip(np.asarray(w, dtype=float), 0.0, None)
    weights = {d: float(x) for d, x in zip(space.domains, space.snap(positive / positive.sum()), strict=True)}
    planner = space
    if group is not None:
        weights, planner = group.expand_weights(weights), group.plan_space(space, tokens)
    plan = planner.token_plan(list(weights.values()))  # of the weights written
    prov = {**provenance, "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")}
    meta = evidence(
        objective=objective, method=method, params={**params, "exported": exported},
        predicted=predicted, measured=measured, baselines=baselines, tokens=plan,
        provenance=prov, notes=list(notes),
    )
    return Mixture(weights, meta=meta)
