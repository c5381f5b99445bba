"""``mixopt report``: plots and a markdown summary of one search, from the run store.

Three PNG plots (matplotlib, Agg) and ``report.md``, written together into
``<workspace>/searches/<name>/report/`` (a new folder replaces the old one only when complete):

``cv.png``        cross-validated predicted vs measured objective of the swarm runs (the fit's
                  honesty: a model that cannot predict held-out runs should not be trusted);
``weights.png``   the exported mixture next to the proposal and the baselines, per domain;
``runs.png``      objective of every run in order, failed runs marked, validation runs by candidate.

``mixopt fit --report DIR`` writes the first two, and its own ``report.md``, for a fit on run tables.
"""

from __future__ import annotations

import logging
import math
import shlex
from collections.abc import Sequence, Set
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from mixopt.atomic import atomic_dir
from mixopt.errors import MixoptError
from mixopt.fitters.cv import AUTO_CV_NOTE, distinct_mixtures
from mixopt.objective import Objective
from mixopt.plots import color as _color
from mixopt.plots import md_cell, save
from mixopt.plots import pyplot as _pyplot
from mixopt.proposers.proposal import RANKS, ranking_note
from mixopt.store import RunRecord, RunStore, store_of_search

logger = logging.getLogger(__name__)

CV_FOLDS = 5


@dataclass(frozen=True, kw_only=True)
class Report:
    search_id: str
    folder: Path
    files: list[Path]
    cv: dict[str, float] | None
    markdown: str
    cv_notes: list[str] = field(default_factory=list)  # model and folds used, and what to make of it


def make_report(name: str, *, store: str | Path | None = None, folds: int = CV_FOLDS) -> Report:
    """Write the plots and summary of search ``name`` (a search still running: as far as it got)."""
    from mixopt.search.lock import shown_state
    from mixopt.search.prepare import mark_search_dir, search_dir

    st = store_of_search(name, store)
    rec = st.require_search(name)
    cfg, plan = rec.config, rec.plan or {}
    # a failed search keeps only its error (driver.failure); a done one, everything it found
    result = rec.result if rec.result and "candidates" in rec.result else None
    error = (rec.result or {}).get("error") if rec.state == "failed" else None
    domains = list(plan.get("domains") or [])
    if not domains:
        raise MixoptError(f"search {name!r} has no plan yet (it stopped before sampling); nothing to report")
    from mixopt.search.config import stored_target

    objective = Objective.parse(stored_target(cfg.get("target"), domains), cfg.get("metric", "loss"),
                                stored=True)
    kept = plan.get("reuse_mixture")  # runs over the units of a reused mixture, measuring every domain
    if kept:
        from mixopt.reuse import Reuse, measured

        objective = measured(objective, Reuse.from_state(kept), domains)
    runs = st.runs(search_id=name)
    reused = list(plan.get("reused", []))
    swarm_ids = [r.run_id for r in runs if r.role == "swarm" and r.status == "ok"]
    X, y, ids = st.matrix(domains, objective, run_ids=swarm_ids + reused)
    folder = search_dir(name) / "report"
    # before the report's folder is made: a search folder holding only a report is no driver's
    state = shown_state(rec.state, search_dir(name))
    mark_search_dir(search_dir(name), st)  # a folder it makes is its store's (a new search checks it)
    cv = None
    with atomic_dir(folder) as tmp:
        files = []
        n_mix = distinct_mixtures(X)  # runs of one mixture share a fold
        cv, cv_notes = _plot_cv(tmp / "cv.png", cfg.get("method", "regmix"), X, y, folds, n_mix, objective,
                                domains, st.metric_rows(ids, list(objective.metric_weights(domains))),
                                running=state == "running")
        if cv is not None:
            files.append(folder / "cv.png")
        if result:
            plot_weights(tmp / "weights.png", result["candidates"],
                         list(result["weights"]) if kept else domains, f"search {result['search_id']}")
            files.append(folder / "weights.png")
        own = set(swarm_ids)  # the fitted runs the search reused: their objective, as matrix read it
        lent = _borrowed_validation(st, plan)
        _plot_runs(tmp / "runs.png", runs + lent, objective, domains, result,
                   reused=[v for v, i in zip(y, ids, strict=True) if i not in own],
                   lent={r.run_id for r in lent})
        files.append(folder / "runs.png")
        md = _markdown(name, state, cfg, result, runs, len(reused), len(y),
                       cv, cv_notes, files, n_lent=len(lent), error=error,
                       folds=min(folds, n_mix))
        (tmp / "report.md").write_text(md, encoding="utf-8")
    files.append(folder / "report.md")
    return Report(search_id=name, folder=folder, files=files, cv=cv, markdown=md, cv_notes=cv_notes)


def write_fit_report(fit: Any, folder: str | Path, *, ratios: str | Path, metrics: str | Path) -> list[Path]:
    """Plots and a summary of ``mixopt fit`` on run tables (a :class:`~mixopt.fit.on_tables.FitReport`)
    into ``folder``, written whole: ``cv.png`` (with ``--cv``: each run's held-out prediction against
    its measured target), ``weights.png`` (with ``--propose``: the proposal, the best run and the
    uniform mixture) and ``report.md``. Returns the files.

    Raises:
        MixoptError: ``folder`` holds files other than an earlier report's (replaced whole, they
            would be lost), or is otherwise no folder for a report (:func:`mixopt.plots.check_report_dir`).
    """
    from mixopt.plots import check_report_dir

    folder = check_report_dir(folder, out=fit.out)
    prop = fit.proposal
    names = []
    with atomic_dir(folder) as tmp:
        if fit.held_out and fit.cv:
            held = fit.held_out
            plot_held_out(tmp / "cv.png", np.asarray(held["measured"]), np.asarray(held["predicted"]), fit.cv,
                          title=f"{fit.cv['k']}-fold CV, {fit.method}", measured=fit.target)
            names.append("cv.png")
        cands = []
        if prop is not None:
            best = prop["baselines"]["best_run"]
            cands = [{"name": "proposal", "weights": prop["weights"], "exported": True,
                      "predicted": prop["predicted"], "std": prop.get("std")},
                     # marked where the proposal could not have been it (the JSON's inside_constraints)
                     {"name": f"best run ({best['run_id']}"
                      + (", outside the constraints)" if best.get("inside_constraints") is False else ")"),
                      "weights": best["weights"],
                      "predicted": best.get("predicted"), "measured": best["measured"]},
                     {"name": "uniform", **prop["baselines"]["uniform"]}]
            plot_weights(tmp / "weights.png", cands, list(prop["weights"]), f"fit {fit.method}")
            names.append("weights.png")
        md = _fit_markdown(fit, cands, names, ratios=ratios, metrics=metrics)
        (tmp / "report.md").write_text(md, encoding="utf-8")
    return [folder / n for n in [*names, "report.md"]]


def _fit_markdown(fit: Any, cands: list[dict[str, Any]], plots: list[str], *, ratios: str | Path,
                  metrics: str | Path) -> str:
    left = f" ({fit.n_excluded} left out: no finite target)" if fit.n_excluded else ""
    # absolute, to be found from anywhere; `-` is no file in the current folder
    here = {k: "standard input" if str(v) == "-" else Path(v).absolute()
            for k, v in (("ratios", ratios), ("metrics", metrics))}
    lines = [f"# `mixopt fit`: {fit.method} on run tables", "",
             f"- tables: `{here['ratios']}` (mixtures) and `{here['metrics']}` (metrics)",
             f"- target: **{fit.target}** (lower is better), {fit.n_runs} runs fitted{left}, "
             f"{len(fit.domains)} {'units' if fit.reuse else 'domains'}", ""]
    if fit.cv is not None:
        c = fit.cv
        lines += [f"## Cross-validation ({c['k']} folds)", "", *_cv_table(c), ""]
        said = any(RANKS in n for n in (fit.proposal or {}).get("notes") or [])  # the proposal's notes say it
        notes = [AUTO_CV_NOTE] if fit.method == "auto" else []
        if not said and (poor := ranking_note(c["spearman"], fit.method, c["k"])):
            notes.append(poor)
        lines += [f"- {n}" for n in notes] + ([""] if notes else [])
    if fit.selection:
        lines += _selection_markdown(fit.selection)
    if cands:
        lines += ["## Proposal" + (f" → `{Path(fit.out).absolute()}`" if fit.out else ""), "",
                  "| mixture | predicted | measured |", "|---|---:|---:|"]
        for c in cands:
            sd = f" ± {c['std']:.4f}" if c.get("std") else ""
            star = "**" if c.get("exported") else ""
            lines.append(f"| {star}{md_cell(c['name'])}{star} | {_f(c.get('predicted'))}{sd} "
                         f"| {_f(c.get('measured'))} |")
        domains = sorted(cands[0]["weights"], key=lambda d: -cands[0]["weights"][d])  # largest first
        lines += ["", "## Weights", "", "| domain | " + " | ".join(md_cell(c["name"]) for c in cands) + " |",
                  "|---|" + "---:|" * len(cands)]
        lines += [f"| {md_cell(d)} | " + " | ".join(f"{c['weights'].get(d, 0.0):.4f}" for c in cands) + " |"
                  for d in domains]
        lines.append("")
        lines += _settings_markdown(fit.proposal.get("params") or {})
        if fit.proposal.get("notes"):
            lines += ["## Notes", ""] + [f"- {n}" for n in fit.proposal["notes"]] + [""]
    lines += ["## Plots", ""] + [f"![{Path(p).stem}]({p})" for p in plots] + [""]
    return "\n".join(lines)


# the mixture JSON's constraint names as the options that set them (per-domain floors come from the
# library's SearchSpace only, and keep their name)
_CONSTRAINT_OPTIONS = {"min_weight": "--min-weight", "ceilings": "--max-weight",
                       "fixed": "--fix", "tokens": "--tokens", "max_epochs": "--max-epochs",
                       "target_tokens": "--target-tokens"}


def _settings_markdown(params: dict[str, Any]) -> list[str]:
    """The options a proposal was made with, which a rerun needs to make it again (the mixture JSON
    keeps them too)."""
    if not params:
        return []
    prop = params.get("proposer") or {}
    lines = ["## Settings", "", f"- --seed {params.get('seed')}"]
    if "n_candidates" in prop:
        lines.append(f"- --candidates {prop['n_candidates']}, --top-k {prop.get('k')}")
    if "kl" in prop:
        lines.append(f"- --kl {prop['kl']}")
    if params.get("prior"):
        lines.append(f"- prior: {params['prior']}")
    if reuse := params.get("reuse"):  # the group's options, as its hint line gives them
        from mixopt.reuse import Reuse

        lines.append(f"- {shlex.join(Reuse.from_state(reuse).option())}")
    for name, value in (params.get("constraints") or {}).items():
        if value in (None, {}, 0, 0.0):  # unset
            continue
        option = _CONSTRAINT_OPTIONS.get(name, name.replace("_", " "))
        # as a rerun reads them back: every digit (1.23457e+09 was a rounding), names quoted
        shown = (",".join(f"{d}={float(v)!r}" for d, v in value.items()) if isinstance(value, dict)
                 else repr(float(value)))
        lines.append(f"- {option} {shlex.quote(shown)}")
    return [*lines, ""]


def _borrowed_validation(st: RunStore, plan: dict[str, Any]) -> list[RunRecord]:
    """The runs of earlier searches that this search's validation reused, as validation runs of the
    candidate whose slot (``v-<candidate>-k<j>``) each stands for."""
    from mixopt.search.validate import slot_prefix

    names = {slot_prefix(c["name"]): c["name"] for c in plan.get("candidates") or []}
    out = []
    for key, run_id in (plan.get("validation_reused") or {}).items():
        name = next((n for prefix, n in names.items() if key.startswith(prefix)), None)
        if name is not None and (r := st.get(run_id)) is not None:
            out.append(replace(r, role="validate", label=name))
    return out


def cv_headline_notes(method: str, fit_name: str, k: int, folds: int, n_runs: int,
                      n_mixtures: int | None = None) -> list[str]:
    """What the report's cross-validation figures are of (``n_mixtures``: the distinct mixtures
    among the runs, where some repeat: runs of one mixture share a fold)."""
    if n_mixtures is None or n_mixtures == n_runs:
        fewer = f" (leave-one-out: {folds} folds asked for, {n_runs} runs)"
    else:
        fewer = f" (leave-one-mixture-out: {folds} folds asked for, {n_mixtures} mixtures in {n_runs} runs)"
    notes = [f"model: {fit_name}; {k} folds" + (fewer if k < folds else "")]
    if method == "auto":  # the headline and the choice table's figure differ, for this reason
        notes.append(AUTO_CV_NOTE)
    return notes


def _plot_cv(path: Path, method: str, X: np.ndarray, y: np.ndarray, folds: int, n_mix: int,
             objective: Objective, domains: list[str],
             Y: np.ndarray | None, *, running: bool = False) -> tuple[dict[str, float] | None, list[str]]:
    """Out-of-fold predictions against the measured objective; (metrics or None, notes). ``n_mix``: the
    distinct mixtures among the runs (the most folds). ``Y``: the runs' values of the objective's
    metrics, which per-metric laws are fitted on (as the search does). ``running``: the search goes
    on, so the advice is to wait for its runs rather than to search again."""
    more = ("the search is still running: report again when more runs have finished" if running
            else "search with a larger budget")
    from sklearn.base import clone

    from mixopt.fitters.cv import cross_validate
    from mixopt.methods import fit_target, get_method

    metrics = objective.metric_weights(domains) if Y is not None else None
    try:
        fitter = get_method(method).make_fitter(domains=domains, metrics=metrics)
    except MixoptError as exc:  # a user's module:Class that cannot be imported here: the rest stands
        return None, [f"no cross-validation: {exc} (report from the folder the search was started in, or "
                      "put the module's folder on PYTHONPATH)"]
    fit_name = method
    if fitter is None:  # `random` fits nothing; show how well RegMix's regressor would have predicted
        fitter, fit_name = get_method("regmix").make_fitter(), "regmix (for reference; random fits nothing)"
    k = min(folds, n_mix)  # n_mix: the distinct mixtures among the runs
    if k < 3:
        few = f"runs ({len(y)})" if n_mix == len(y) else f"distinct mixtures ({n_mix} in {len(y)} runs)"
        return None, [f"too few {few} for cross-validation" + (f"; {more}" if running else "")]
    notes = cv_headline_notes(method, fit_name, k, folds, len(y), n_mix)
    target = fit_target(fitter, y, Y)
    try:
        if np.ptp(np.asarray(clone(fitter).fit(X, target).predict(X), dtype=float)) == 0:
            # Each fold's model predicts its training mean, which anti-correlates with the held-out run.
            notes.append(f"the {fit_name.split()[0]} model predicts one value for every mixture on these "
                         f"{len(y)} runs, so its cross-validation figures measure nothing; {more}")
        res = cross_validate(fitter, X, target, k=k, seed=0, folds_option="--folds")
    except MixoptError as exc:  # a law with more parameters than a fold's runs: the rest of the report stands
        return None, [*notes, f"no cross-validation: {str(exc).removeprefix('cross-validation: ')}"]
    m = res.metrics
    plot_held_out(path, y, np.asarray(res.pred, dtype=float), m, title=f"{k}-fold CV, {fit_name}",
                  measured=f"{objective.kind} ({objective.unit})")
    return {k2: float(v) for k2, v in m.items()}, notes


def plot_held_out(path: Path, y: np.ndarray, pred: np.ndarray, m: dict[str, float], *, title: str,
                  measured: str) -> None:
    """Out-of-fold predictions against the measured values, with the y = x line: ``m``, the
    cross-validation's figures; ``measured``, what the values are (and their unit)."""
    y, pred = np.asarray(y, dtype=float), np.asarray(pred, dtype=float)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.scatter(y, pred, s=22, alpha=0.8, color="#1f77b4", edgecolor="white", linewidth=0.5)
    lo, hi = float(min(y.min(), pred.min())), float(max(y.max(), pred.max()))
    pad = 0.05 * (hi - lo or 1.0)
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="grey", linestyle="--", linewidth=1,
            label="y = x")
    ax.set_xlim(lo - pad, hi + pad)
    ax.set_ylim(lo - pad, hi + pad)
    ax.set_title(f"{title}\nSpearman {m['spearman']:.3f} · Pearson {m['pearson']:.3f} · "
                 f"MAE {m['mae']:.4f}", fontsize=10)
    ax.set_xlabel(f"measured {measured}")
    ax.set_ylabel(f"predicted {measured}, held out")
    ax.legend(loc="upper left", frameon=False)
    ax.grid(alpha=0.3)
    save(fig, path)


def plot_weights(path: Path, cands: list[dict[str, Any]], domains: list[str], what: str,
                 top: int = 20) -> None:
    """Each mixture's weight per domain, side by side (``cands``: name, weights, and exported for
    the one written); the ``top`` domains the exported mixture and the proposal weight most."""
    plt = _pyplot()
    shown = domains
    if len(domains) > top:  # many domains: the ones the exported mixture and the proposal weight most
        # (by every candidate's, the natural mixture's largest had filled the plot: a QA pass, 300 domains)
        ours = [c for c in cands if c.get("exported") or c["name"] == "proposal"] or cands
        shown = sorted(domains, key=lambda d: -max(c["weights"][d] for c in ours))[:top]
    n, c = len(shown), len(cands)
    fig, ax = plt.subplots(figsize=(min(16.0, max(6.5, 0.22 * n * c + 2)), 4.8))
    width = 0.8 / c
    x = np.arange(n)
    for i, cand in enumerate(cands):
        w = [cand["weights"][d] for d in shown]
        label = cand["name"] + (" (exported)" if cand.get("exported") else "")
        ax.bar(x - 0.4 + width * (i + 0.5), w, width, label=label, color=_color(i),
               edgecolor="black" if cand.get("exported") else "none", linewidth=1.2)
    rotate = n > 6 or max(map(len, shown), default=0) > 12  # a long name had run over its neighbours
    ax.set_xticks(x, shown, rotation=30 if rotate else 0, ha="right" if rotate else "center")
    ax.set_ylabel("weight")
    more = f" (the {n} of {len(domains)} domains it weights most)" if n < len(domains) else ""
    ax.set_title(f"{what}: proposed weights vs baselines{more}", pad=28)
    # legend in a row between the title and the axes, clear of the bars and the rotated labels
    ax.legend(frameon=False, fontsize=8, ncols=min(c, 5), loc="lower center", bbox_to_anchor=(0.5, 1.0))
    ax.grid(axis="y", alpha=0.3)
    save(fig, path)


def _plot_runs(path: Path, runs: list[RunRecord], objective: Objective, domains: list[str],
               result: dict[str, Any] | None, reused: Sequence[float] = (),
               lent: Set[str] = frozenset()) -> None:
    """The objective of every run the fit saw, in order: runs reused from earlier searches (or
    imported; ``reused`` holds their objective values), this search's swarm, then the validation
    runs (hollow: the ``lent`` ones, which earlier searches measured); with the best so far."""
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.8))
    from mixopt.search.runner import interrupted_attempt

    swarm = [r for r in runs if r.role == "swarm" and not interrupted_attempt(r)]  # not drawn as failed
    before = len(reused)
    vals = [objective.value(r.metrics, domains) if r.status == "ok" else math.nan for r in swarm]
    ok = [(i, v) for i, v in enumerate([*reused, *vals]) if math.isfinite(v)]
    if ok:
        xs, ys = zip(*ok, strict=True)
        mine = [(x, y) for x, y in ok if x >= before]
        if before:
            old = [(x, y) for x, y in ok if x < before]
            ax.scatter(*zip(*old, strict=True), s=10, color="#c8c8c8",
                       label=f"reused run ({before}, earlier search or import)")
        if mine:
            ax.scatter(*zip(*mine, strict=True), s=18, color="#4c72b0", label="swarm run")
        ax.step(xs, np.minimum.accumulate(ys), where="post", color="#4c72b0", alpha=0.6, linewidth=1,
                label="best so far")
    order = [c["name"] for c in result["candidates"]] if result else sorted({r.label or "?" for r in runs
                                                                           if r.role == "validate"})
    # grouped by candidate, then seed: runs reused from earlier searches sit with this one's
    val = sorted((r for r in runs if r.role == "validate" and r.status == "ok"),
                 key=lambda r: (order.index(r.label) if r.label in order else len(order), r.seed or 0))
    vvals = [objective.value(r.metrics, domains) for r in val]
    finite = [v for _, v in ok] + [v for v in vvals if math.isfinite(v)]
    lo, hi = (min(finite), max(finite)) if finite else (0.0, 1.0)
    bad = [before + i for i, r in enumerate(swarm) if r.status in ("failed", "diverged")]
    if bad:  # drawn in a shaded band above the data: a failed run has no objective (its height is none)
        pad = hi - lo or 1.0
        ax.axhspan(hi + 0.04 * pad, hi + 0.12 * pad, color="0.9", zorder=0)
        ax.scatter(bad, [hi + 0.08 * pad] * len(bad), marker="x", color="black", s=30,
                   label="failed / diverged (no value: shaded band)")
    if before and swarm:
        ax.axvline(before - 0.5, color="grey", linewidth=0.8, linestyle=":")
    start = before + len(swarm)
    for j, lab in enumerate(order):
        pts = [(start + i, v, r.run_id in lent) for i, (r, v) in enumerate(zip(val, vvals, strict=True))
               if r.label == lab and math.isfinite(v)]
        for borrowed in (False, True):
            if sel := [(x, v) for x, v, b in pts if b == borrowed]:
                xs, ys = zip(*sel, strict=True)
                ax.scatter(xs, ys, s=34, marker="D", color=_color(j), facecolors="none" if borrowed else None,
                           label=f"validate: {lab}" + (" (earlier search's run)" if borrowed else ""))
    if val:
        ax.axvline(start - 0.5, color="grey", linewidth=0.8, linestyle=":")
    ax.set_xlabel(f"run (in order: {'reused, ' if before else ''}swarm, then validation)")
    # few, short ticks: a QA pass's 20,000 runs had run "10000125001500017500" together
    ax.xaxis.set_major_locator(MaxNLocator(nbins=6, integer=True))
    if before + len(vals) >= 10_000:  # one unit for every tick (had been "4000, 8000, 12k")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v / 1000:g}k" if v else "0"))
    ax.set_ylabel(f"{objective.kind} ({objective.unit})")
    ax.set_title("objective by run" + (f" · exported: {result['exported']}" if result else ""))
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:  # a search with no finished run yet has nothing to name
        ax.legend(frameon=False, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    save(fig, path)


def swarm_outcome(runs: dict[str, Any]) -> str:
    """``"18 ok, 1 diverged, 1 timed out (3 retries)"``: a search's swarm slots by how they ended,
    after retries, and how many retries that took (its ``runs``); attempts a stopped driver cut
    short are counted apart (``restarted``)."""
    lost = runs.get("lost") or ({"failed": runs["failed"]} if runs.get("failed") else {})
    text = f"{runs['ok']} ok" + "".join(f", {n} {kind}" for kind, n in lost.items())
    restarted = int(runs.get("restarted") or 0)
    retries = int(runs.get("attempts") or 0) - int(runs.get("planned") or 0) - restarted
    said = ([f"{retries} {'retry' if retries == 1 else 'retries'}"] if retries > 0 else []) + (
        [f"{restarted} cut short by a stop, run again"] if restarted else [])
    return text + (f" ({'; '.join(said)})" if said else "")


def validation_outcome(runs: dict[str, Any]) -> str:
    """``"validation: 8 trained, 4 reused, 2 cut short by a stop, run again"``, or ``""`` when
    validation neither reused runs nor was cut short (the table says the rest)."""
    reused, cut = int(runs.get("validation_reused") or 0), int(runs.get("validation_restarted") or 0)
    if not (reused or cut):
        return ""
    return (f"validation: {runs.get('validation_trained', 0)} trained"
            + (f", {reused} reused" if reused else "")
            + (f", {cut} cut short by a stop, run again" if cut else ""))


def _markdown(name: str, state: str, cfg: dict[str, Any], result: dict[str, Any] | None,
              runs: list[RunRecord], n_reused: int, n_fit: int, cv: dict[str, float] | None,
              cv_notes: list[str], files: list[Path], n_lent: int = 0, error: str | None = None,
              folds: int | None = None) -> str:
    status = {s: sum(r.status == s for r in runs) for s in ("ok", "diverged", "failed", "running")}
    source = f"corpus `{cfg['corpus']}`" if cfg.get("corpus") else f"evaluator `{cfg.get('evaluator')}`"
    lines = [f"# Search `{name}`", "",
             f"- state: **{state}**; method **{cfg.get('method')}**, budget {cfg.get('budget')}, "
             f"rung `{cfg.get('rung')}`, seed {cfg.get('seed')}",
             *([f"- error: {error}"] if error else []),
             f"- source: {source}",
             # Every attempt has a record: a run retried after a failure counts once failed, once ok.
             f"- run records of this search (every attempt, validation runs included): {status['ok']} ok, "
             f"{status['diverged']} diverged, {status['failed']} failed, {status['running']} running; "
             f"{n_reused} reused from earlier searches; {n_fit} fitted"
             + (f"; {n_lent} validation runs reused from earlier searches (same mixture, seed and fidelity)"
                if n_lent else "")]
    if result and result.get("objective"):  # what every figure below measures (a QA pass: never named)
        o = result["objective"]
        obj = Objective(metric=o.get("metric", "loss"), weights=o.get("weights") or {})
        lines.append(f"- objective: **{obj.describe()}** ({obj.unit}; lower is better)")
    if result and (result.get("runs") or {}).get("planned"):  # the swarm as the search printed it
        r = result["runs"]
        lines.append(f"- swarm: {r.get('planned', '?')} planned, {swarm_outcome(r)}")
    if result and (checked := validation_outcome(result.get("runs") or {})):
        lines.append(f"- {checked}")
    lines.append("")
    if cv is not None:
        lines += ["## Cross-validation", "", *_cv_table(cv), ""]
        said = any(RANKS in n for n in (result or {}).get("notes") or [])  # the search's own, kept
        # a QA pass: a Spearman of 0.18 was printed without a word (not for `random`: the figures are
        # of a reference model, which proposed nothing)
        method = str(cfg.get("method"))
        if method != "random" and not said and (poor := ranking_note(cv["spearman"], method, folds)):
            cv_notes = [*cv_notes, poor]
        lines += [f"- {n}" for n in cv_notes] + [""]
    elif cv_notes:
        lines += [f"Cross-validation: {'; '.join(cv_notes)}.", ""]
    if result and result.get("selection"):
        lines += _selection_markdown(result["selection"])
    if result:
        from mixopt.search.validate import BEATS_RULE, better_by

        where = result.get("out") or result["mixture_path"]
        lines += ["## Mixtures", "", f"Exported: **{result['exported']}** → `{where}`", ""]
        head = "| mixture | predicted | swarm | measured (mean ± se, n) | proposal better by |"
        lines += [head, "|---|---:|---:|---:|---:|"]
        for c in result["candidates"]:
            m = c.get("measured") or {}
            meas = "-" if m.get("mean") is None else f"{m['mean']:.4f} ± {_f(m.get('sem'))} ({m['n']})"
            better = better_by(c.get("comparison"))
            star = "**" if c.get("exported") else ""
            same = f" (= {c['same_as']})" if c.get("same_as") else ""  # one mixture under two names
            lines.append(f"| {star}{md_cell(c['name'])}{star}{md_cell(same)} | {_f(c.get('predicted'))} "
                         f"| {_f(c.get('swarm_value'))} | {meas} | {better} |")
        if any((c.get("comparison") or {}).get("beats") is not None for c in result["candidates"]):
            lines += ["", BEATS_RULE, ""]  # a blank line ends the table (it had read as one more row)
        lines.append("")
        # largest first, as the terminal's table (a QA pass: 300 domains in their order read poorly)
        domains = sorted(result["weights"], key=lambda d: -result["weights"][d])
        prop = next((c for c in result["candidates"] if c["name"] == "proposal"), None)
        if result["exported"] != "proposal" and prop is not None:  # what the model proposed, beside it
            lines += ["## Exported weights", "", f"| domain | {result['exported']} (exported) | proposal |",
                      "|---|---:|---:|"]
            lines += [f"| {md_cell(d)} | {result['weights'][d]:.4f} | {prop['weights'].get(d, 0.0):.4f} |"
                      for d in domains]
        else:
            lines += ["## Exported weights", "", "| domain | weight |", "|---|---:|"]
            lines += [f"| {md_cell(d)} | {result['weights'][d]:.4f} |" for d in domains]
        lines.append("")
        if result.get("notes"):
            lines += ["## Notes", ""] + [f"- {n}" for n in result["notes"]] + [""]
    lines += ["## Plots", ""] + [f"![{p.stem}]({p.name})" for p in files if p.suffix == ".png"] + [""]
    return "\n".join(lines)


def _cv_cells(m: dict[str, Any]) -> str:
    """Cross-validation figures as markdown table cells, as every report gives them."""
    return f"| {m['spearman']:.4f} | {m['pearson']:.4f} | {m['mae']:.4g} | {m['rel_error']:.3%} |"


def _cv_table(m: dict[str, Any]) -> list[str]:
    return ["| Spearman | Pearson | MAE | relative error |", "|---:|---:|---:|---:|", _cv_cells(m)]


def _selection_markdown(rows: list[dict[str, Any]]) -> list[str]:
    """``auto``'s choice: its cross-validation of every candidate, as the search printed it."""
    chosen = next((r["name"] for r in rows if r.get("chosen")), None)
    k = next((r["folds"] for r in rows if r.get("folds")), "K")
    lines = ["## auto's choice of model", "",
             f"auto chose **{chosen}**: the best Spearman of its own {k}-fold cross-validation "
             "of every candidate." if chosen else "auto chose no candidate.", "",
             "| fitter | Spearman | Pearson | MAE | relative error | chosen |",
             "|---|---:|---:|---:|---:|---|"]
    for r in rows:
        if r.get("error"):
            lines.append(f"| {md_cell(r['name'])} | - | - | - | - | no: {md_cell(r['error'])} |")
        else:
            lines.append(f"| {md_cell(r['name'])} {_cv_cells(r)} {'✓' if r.get('chosen') else ''} |")
    return lines + [""]


def _f(x: float | None) -> str:
    return "-" if x is None else f"{x:.4f}"

