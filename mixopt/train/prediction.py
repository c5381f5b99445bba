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

from collections.abc import Mapping, Sequence
from typing import Any

from mixopt.errors import MixoptError, MixoptWarning, warn
from mixopt.evaluator import PROXY
from mixopt.mixture import Mixture
from mixopt.objective import Objective, per_domain_split
from mixopt.stats import finite_or_none


def objective_of(mixture: Mixture) -> tuple[Objective, str, str | None]:
    """The objective the mixture was searched for: (objective, its name, None), or mean loss and a
    note saying why when the JSON names one a trained model cannot measure (then its predictions,
    in another metric, must not be set against the final loss)."""
    obj = mixture.meta.get("objective") or {}
    kind = str(obj.get("kind") or "")
    # A hand-written objective may give only its kind ("bpb", "mean_bpb"): the metric follows it.
    metric = obj.get("metric") or ("bpb" if kind.split("_")[-1] == "bpb" else "loss")
    weights = obj.get("weights") or {}
    if metric in ("loss", "bpb"):
        try:
            objective = Objective(metric=metric, weights=dict(weights))
        except (ValueError, MixoptError):
            pass
        else:
            return objective, objective.kind, None
    if isinstance(metric, str) and "/" in metric:  # a single metric such as loss/code
        m, _, domain = metric.partition("/")
        if m in ("loss", "bpb"):
            return Objective(metric=m, weights={domain: 1.0}), metric, None
    return Objective(), "mean_loss", (
        f"the mixture's objective ({metric!r}) is not a loss or bits per byte of the corpus's domains; "
        "the final model's mean loss is shown, not set against the prediction"
    )


def prediction_report(
    mixture: Mixture, metrics: Mapping[str, float], domains: Sequence[str], *, corpus_hash: str | None = None
) -> dict[str, Any]:
    """Compare final metrics with the mixture JSON's prediction and proxy measurement.

    ``corpus_hash``: the corpus trained on; a mixture searched on another build of it has its
    prediction left out (its losses are of other data and another tokenizer).
    """
    objective, kind, note = objective_of(mixture)
    prov = mixture.meta.get("provenance") or {}
    made_on = prov.get("corpus_hash")
    if note is None and corpus_hash and made_on and made_on != corpus_hash:
        note = (f"the mixture was searched on another build of the corpus (hash {str(made_on)[:12]}, not "
                f"{corpus_hash[:12]}): its prediction is of other data, not set against the final model")
    own = prov.get("evaluator") not in (None, PROXY)
    if note is None and corpus_hash and (own or ("corpus" in prov and prov["corpus"] is None)):
        # a user's evaluator or tables made elsewhere: their losses are of other models, data or tokens
        how = (f"searched with the evaluator {prov['evaluator']}" if own
               else "fitted on run tables, not on a corpus")
        note = f"the mixture was {how}: its figures are that evaluation's, not set against the final model"
    present = [d for d in domains if f"loss/{d}" in metrics]
    try:
        final = objective.value(metrics, present)
    except (ValueError, MixoptError):  # the objective names a domain this run has no metric for
        objective, kind = Objective(), "mean_loss"
        note = "the mixture's objective names domains the corpus lacks; the final model's mean loss is shown"
        final = objective.value(metrics, present)
    pred = mixture.meta.get("predicted") or {}
    meas = mixture.meta.get("measured") or {}
    if note is not None:  # figures in another metric than the final one: nothing to compare
        pred, meas = {}, {}
    p_mean = finite_or_none(pred.get("mean")) if isinstance(pred, Mapping) else None
    interval = pred.get("interval") if isinstance(pred, Mapping) else None
    per_pred = {}
    per_metric = "loss"
    if isinstance(pred, Mapping):
        per = pred.get("per_domain") or {}
        if pred.get("per_domain_metric") in ("loss", "bpb"):
            per_metric = pred["per_domain_metric"]
        per_pred = {d: finite_or_none(per.get(d, pred.get(f"{per_metric}/{d}"))) for d in present}
        if unknown := sorted(set(per) - set(domains)) if isinstance(per, Mapping) else []:
            warn(f"the mixture's predicted.per_domain names {', '.join(unknown)}, which the corpus "
                 "lacks; left out of the report", MixoptWarning)
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
        "note": note,
        "final": final,
        "domains": rows,
        "per_domain_metric": per_metric,  # the metric of the rows' predicted and difference
        "predicted": p_mean,
        "proxy_measured": finite_or_none(meas.get("mean")) if meas else None,
        "proxy_sem": finite_or_none(meas.get("sem")) if meas else None,
        "proxy_rung": meas.get("rung") if meas else None,
    }
    if p_mean is not None:
        out["final_minus_predicted"] = final - p_mean
        # the search's caveat, kept with the run: its two fits disagree, and the Δ column is set
        # against the per-domain one
        split = (per_domain_split(objective, per_pred, p_mean, finite_or_none(pred.get("std")), present)
                 if objective.metric == per_metric else None)
        if split is not None:
            out["per_domain_split"] = {"combined": split[0], "sd_apart": split[1]}
    if interval and len(interval) == 2 and all(finite_or_none(v) is not None for v in interval):
        # shown, not tested against: it is of a proxy run, and the final model, larger, is expected
        # below it (a QA pass: "final inside/outside" had read as a verdict on the prediction)
        out["interval"] = [float(interval[0]), float(interval[1])]
    if out["proxy_measured"] is not None:
        out["final_minus_proxy"] = final - out["proxy_measured"]
    return out
