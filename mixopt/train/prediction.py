"""The end-of-training report: what the final model measured against what the search predicted.

A mixture JSON from ``mixopt search``/``mixopt fit`` carries ``objective`` (what was minimised),
``predicted`` (the fitted model's value of that objective, with std or interval when it has one)
and ``measured`` (the proposal's validation at a proxy rung: mean, std, sem, n). Both are at proxy
scale; the final model is larger, so its losses are expected to be lower. The report gives the
final model's objective next to them, the gap, and per-domain losses (and per-domain predictions
when the JSON has them, as ``predicted.per_domain`` in ``predicted.per_domain_metric``, loss by
default, or as ``predicted["loss/<domain>"]``; ``mixopt search`` writes them).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from mixopt.mixture import Mixture
from mixopt.objective import Objective


def objective_of(mixture: Mixture) -> tuple[Objective, str]:
    """The objective the mixture was searched for (mean loss when it names none we can compute)."""
    obj = mixture.meta.get("objective") or {}
    metric = obj.get("metric", "loss")
    weights = obj.get("weights") or {}
    if metric in ("loss", "bpb"):
        try:
            return Objective(metric=metric, weights=dict(weights)), str(obj.get("kind") or f"mean_{metric}")
        except ValueError:
            pass
    if isinstance(metric, str) and "/" in metric:  # a single metric such as loss/code
        kind, _, domain = metric.partition("/")
        if kind in ("loss", "bpb"):
            return Objective(metric=kind, weights={domain: 1.0}), metric
    return Objective(), "mean_loss"


def _num(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def prediction_report(
    mixture: Mixture, metrics: Mapping[str, float], domains: Sequence[str]
) -> dict[str, Any]:
    """Compare final metrics with the mixture JSON's prediction and proxy measurement."""
    objective, kind = objective_of(mixture)
    present = [d for d in domains if f"loss/{d}" in metrics]
    try:
        final = objective.value(metrics, present)
    except ValueError:  # the objective names a domain this run has no metric for
        objective, kind = Objective(), "mean_loss"
        final = objective.value(metrics, present)
    pred = mixture.meta.get("predicted") or {}
    meas = mixture.meta.get("measured") or {}
    p_mean = _num(pred.get("mean")) if isinstance(pred, Mapping) else None
    interval = pred.get("interval") if isinstance(pred, Mapping) else None
    per_pred = {}
    per_metric = "loss"
    if isinstance(pred, Mapping):
        per = pred.get("per_domain") or {}
        if pred.get("per_domain_metric") in ("loss", "bpb"):
            per_metric = pred["per_domain_metric"]
        per_pred = {d: _num(per.get(d, pred.get(f"{per_metric}/{d}"))) for d in present}
    rows = []
    mean_w = mixture.mean_weights()  # a schedule's weights averaged over training, not its first phase
    for d in present:
        row = {
            "domain": d,
            "weight": mean_w.get(d, 0.0),
            "loss": metrics[f"loss/{d}"],
            "bpb": metrics.get(f"bpb/{d}"),
        }
        measured = metrics.get(f"{per_metric}/{d}")
        if per_pred.get(d) is not None and measured is not None:
            row["predicted"] = per_pred[d]
            row["difference"] = measured - per_pred[d]  # in the prediction's metric (loss or bpb)
        rows.append(row)
    out: dict[str, Any] = {
        "objective": kind,
        "final": final,
        "domains": rows,
        "predicted": p_mean,
        "proxy_measured": _num(meas.get("mean")) if meas else None,
        "proxy_sem": _num(meas.get("sem")) if meas else None,
        "proxy_rung": meas.get("rung") if meas else None,
    }
    if p_mean is not None:
        out["final_minus_predicted"] = final - p_mean
    if interval and len(interval) == 2 and all(_num(v) is not None for v in interval):
        lo, hi = float(interval[0]), float(interval[1])
        out["interval"] = [lo, hi]
        out["inside_interval"] = lo <= final <= hi
    if out["proxy_measured"] is not None:
        out["final_minus_proxy"] = final - out["proxy_measured"]
    return out
