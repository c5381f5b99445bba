"""``mixopt fit``: fit a method on run tables made elsewhere (RegMix, Olmix, yours); ``mixopt bench fit``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from mixopt.cli import app
from mixopt.cli.bench import bench_app
from mixopt.cli.common import (
    MAX_SEED,
    METHOD_HELP,
    FixOpt,
    JsonOpt,
    MaxWeightOpt,
    MinWeightOpt,
    SeedOpt,
    assignments,
    busy,
    console,
    dumps,
    err_console,
    goal_table,
    in_path,
    json_warnings,
    largest,
    opt,
    out_file,
    out_folder,
    parse_candidates,
    parse_count,
    recompute_opt,
    render_selection,
)
from mixopt.fitters.cv import AUTO_CV_NOTE, calibration_line
from mixopt.store import json_default


@app.command("fit")
def fit(
    ratios: Annotated[Path | None, opt("--ratios", help="CSV of mixture weights: a run or index column + one "
                                       "column per domain (- reads standard input).", parser=in_path)] = None,
    metrics: Annotated[Path | None, opt("--metrics", help="CSV of metrics: the same run or index column + "
                                        "metrics (- reads standard input).", parser=in_path)] = None,
    target: Annotated[str | None, opt("--target", help="Metric column to model, columns c1,c2 or "
                                      "c1=0.7,c2=0.3 (their weighted mean; the weights are relative), or "
                                      "'mean' (all metric columns but _bookkeeping ones); --fidelity-law: "
                                      "objective domains d1,d2 or "
                                      "d1=0.7,d2=0.3, or mean.")] = None,
    method: Annotated[str | None, opt("--method", "-m", help=METHOD_HELP + " Default: regmix; "
                                      "mixing-law with --fidelity-law.")] = None,
    cv: Annotated[int | None, opt("--cv", help="K-fold cross-validation: Spearman, Pearson, MAE, "
                                  "relative error.")] = None,
    predict: Annotated[Path | None, opt("--predict", help="New mixtures (CSV) to predict.",
                                        parser=in_path)] = None,
    propose: Annotated[bool, opt("--propose", help="Propose a mixture (write its JSON to --out).")] = False,
    out: Annotated[Path | None, opt("--out", "-o", help="Output of --predict (CSV) or --propose.",
                                                  parser=out_file)] = None,
    report_dir: Annotated[Path | None, opt(
        "--report", help="Write plots and report.md into this folder: held-out predictions vs measured (with "
        "--cv), the proposal vs the best run and uniform (with --propose); with --fidelity-law, the step law "
        "through the runs (with --target-tokens) and the size law (with --target-size). A new or empty "
        "folder, or an earlier report's, which is replaced whole.", parser=out_folder,
    )] = None,
    as_json: JsonOpt = False,
    seed: SeedOpt = 0,
    min_weight: MinWeightOpt = 0.0,
    max_weight: MaxWeightOpt = None,
    fix: FixOpt = None,
    candidates: Annotated[int, opt("--candidates", help="Candidates the top-k proposer predicts (1e5, 100k; "
                                   "at most 1e9).", parser=parse_candidates, metavar="N")] = 100_000,
    top_k: Annotated[int, opt("--top-k", help="How many best candidates are averaged.")] = 128,
    kl: Annotated[float | None, opt("--kl", help="Laws solved exactly: weight λ of KL(mixture ‖ prior) "
                                    "in the objective's units (default 0.1, Olmix's, for BPB; 0: the "
                                    "law's own optimum).")] = None,
    tokens: Annotated[str | None, opt("--tokens", help="Tokens per domain a=1e9,b=2B: the prior of --kl "
                                      "and of the sampled candidates is then the token shares (Olmix's "
                                      "natural mixture) instead of uniform.")] = None,
    fidelity_law: Annotated[bool, opt("--fidelity-law", help="Use the run store's proxy runs at several "
                                      "rungs: step law per run, size law per mixture, then the mixing law at "
                                      "the target scale (bimix: its law over every checkpoint).")] = False,
    store: Annotated[str | None, opt("--store", help="--fidelity-law: run store path.")] = None,
    search: Annotated[list[str] | None, opt(
        "--search", help="--fidelity-law: searches (or imports named by `runs import --search`) whose runs "
        "are used (repeatable; default all).")] = None,
    target_tokens: Annotated[int | None, opt("--target-tokens", parser=parse_count,
                                             metavar="TOKENS", help="Tokens of the final run (2e9, 2B): with "
                                               "--max-epochs, the repetition cap (default: the sum of "
                                               "--tokens); --fidelity-law: training tokens to extrapolate to "
                                               "(default: the last checkpoint).")] = None,
    max_epochs: Annotated[float | None, opt("--max-epochs", help="--propose: at most this many passes over "
                                            "any domain at --target-tokens (needs --tokens; with "
                                            "--fidelity-law, the runs' searches give the tokens).")] = None,
    target_size: Annotated[float | None, opt("--target-size", help="--fidelity-law: non-embedding parameters "
                                             "to extrapolate to (default: the largest rung).")] = None,
    size_exponent: Annotated[float | None, opt("--size-exponent", help="--fidelity-law: fixed size-law "
                                               "exponent (needed with two rungs).")] = None,
    metric: Annotated[str, opt("--metric", help="--fidelity-law: loss or bpb.")] = "loss",
    reuse: Annotated[str | None, opt("--reuse-mixture", help="Mixture reuse (Olmix): MIXTURE.json or "
                                     "NAME=MIXTURE.json, whose domains are fitted as one group NAME (default "
                                     "reused) at that mixture's shares, as `mixopt swarm --reuse-mixture` "
                                     "drew them; the proposal is written over every domain.")] = None,
    recompute: Annotated[str | None, recompute_opt("fitted")] = None,
) -> None:
    """Fit on RegMix/Olmix-style run tables; cross-validate, predict new mixtures or propose one."""
    from mixopt.errors import MixoptError
    from mixopt.fit.on_tables import FitConfig, fit_tables
    from mixopt.search.config import parse_assignments, parse_domains

    if fidelity_law:
        from mixopt.fit.across_scale import ScaleFitConfig, fit_across_scale

        if any(v is not None for v in (ratios, metrics, cv, predict, tokens, reuse, recompute)):
            raise MixoptError(
                "--fidelity-law reads the run store (and each domain's tokens from its searches); drop "
                "--ratios/--metrics/--cv/--predict/--tokens/--reuse-mixture/--recompute"
            )
        with busy(f"fitting {'mixing-law' if method is None else method} across scale"), \
                json_warnings(as_json) as said:
            res = fit_across_scale(ScaleFitConfig(
                store=store, searches=tuple(search or ()), method="mixing-law" if method is None else method,
                target=target, metric=metric, target_tokens=target_tokens, target_size=target_size,
                size_exponent=size_exponent, out=out, seed=seed, min_weight=min_weight,
                ceilings=assignments(max_weight, "--max-weight"), fixed=assignments(fix, "--fix"), kl=kl,
                max_epochs=max_epochs, report=report_dir,
            ))
        if as_json:
            print(dumps({**res, "warnings": said}, default=json_default))
            return
        _render_scale(res)
        if res.get("report"):
            files = ", ".join(Path(p).name for p in res["report"])
            console.print(f"report: {escape(str(report_dir))} ({files})")
        return
    if ratios is None or metrics is None or target is None:
        missing = ", ".join(n for n, v in (("--ratios", ratios), ("--metrics", metrics), ("--target", target))
                            if v is None)
        also = (" (--store is read only with --fidelity-law; the runs of a store are fitted by `mixopt "
                "search`, which reuses them)" if store is not None else " (or --fidelity-law: the store)")
        raise MixoptError(f"mixopt fit reads run tables: give {missing}{also}")
    law_only = [o for o, v in (("--target-size", target_size), ("--size-exponent", size_exponent),
                               ("--search", search), ("--store", store)) if v is not None]
    if metric != "loss":  # read only from a store's runs: a table's columns are named by --target
        law_only.append("--metric")
    if law_only:
        one = len(law_only) == 1
        raise MixoptError(f"{', '.join(law_only)} {'goes' if one else 'go'} with --fidelity-law (fitting "
                          f"across rungs from the store); drop {'it' if one else 'them'} to fit the run "
                          "tables")

    config = FitConfig(
        ratios=ratios, metrics=metrics, target=target, method="regmix" if method is None else method, cv=cv,
        predict=predict,
        propose=propose, out=out, seed=seed, min_weight=min_weight,
        ceilings=assignments(max_weight, "--max-weight"), fixed=assignments(fix, "--fix"),
        n_candidates=candidates, k=top_k, kl=kl,
        tokens=parse_assignments(tokens, option="--tokens", counts=True) or None,
        max_epochs=max_epochs, target_tokens=target_tokens, reuse=reuse,
        recompute=parse_domains(recompute, "--recompute") or (),
    )
    written: list[Path] = []
    if report_dir is not None:
        from mixopt.plots import check_report_dir

        if cv is None and not propose:
            raise MixoptError("--report draws the cross-validation (--cv K) and the proposal (--propose): "
                              "add one or both")
        report_dir = check_report_dir(report_dir, out=out)  # before the fit, not after it
    # with --json, the warnings are collected for the document (and shown when the fit ends)
    with busy(f"fitting {config.method}" + (f", {cv}-fold cross-validation" if cv else "")), \
            json_warnings(as_json) as said:
        report = fit_tables(config)
        if report_dir is not None:
            from mixopt.report import write_fit_report

            written = write_fit_report(report, report_dir, ratios=ratios, metrics=metrics)
    if as_json:  # every warning shown on stderr, in the document too (a QA pass: the CV's were not)
        files = {"report": [str(p) for p in written]} if written else {}
        print(dumps({**report.as_dict(), **files, "warnings": said}, default=json_default))
        return
    _render(report)
    if written:
        console.print(f"report: {escape(str(report_dir))} ({', '.join(p.name for p in written)})")


def _combined(target: str) -> str:
    """How a target of several columns combines them: ``mean``, or ``c1=0.7,c2=0.3`` weighted."""
    return "weighted mean" if "=" in target else "mean"


def _render(report: Any) -> None:
    console.print(f"[bold]{report.method}[/] on {report.n_runs} runs, target [bold]{escape(report.target)}[/]"
                  + (f" ({report.n_excluded} runs left out)" if report.n_excluded else ""))
    if report.per_metric and report.method == "auto":
        console.print(f"auto's law candidates fit one law per metric column ({report.per_metric}); the "
                      f"target is their {_combined(report.target)}; the other candidates fit the target "
                      "itself", markup=False)
    elif report.per_metric:
        console.print(f"one {report.method} law per metric column ({report.per_metric}); the target is "
                      f"their {_combined(report.target)}", markup=False)
    if report.groups:
        console.print("domains grouped by source, from their names: "
                      + ", ".join(f"{g} {n}" for g, n in report.groups.items()), markup=False)
    if report.selection:
        render_selection(report.selection)
    if report.cv:
        nested = " of auto's whole choice, made again in each fold" if report.selection else ""
        t = Table(title=f"{report.cv['k']}-fold cross-validation{nested}")
        for col in ("Spearman", "Pearson", "MAE", "rel. error"):
            t.add_column(col, justify="right")
        c = report.cv
        t.add_row(f"{c['spearman']:.4f}", f"{c['pearson']:.4f}", f"{c['mae']:.4g}", f"{c['rel_error']:.4%}")
        console.print(t)
        if nested:  # the two Spearmans differ, and a user should know why
            console.print(f"  ({AUTO_CV_NOTE})", markup=False)
        if cal := c.get("calibration"):
            console.print(calibration_line(cal), markup=False, soft_wrap=True)
    if not (report.cv or report.predictions or report.proposal or report.selection):
        console.print("nothing was asked of the fit: add --cv K (accuracy), --predict FILE --out P.csv, or "
                      "--propose --out mixture.json")
    if report.predictions:
        p = report.predictions
        span = f"{p['min']:.4g}" if p["n"] == 1 else f"{p['min']:.4g} … {p['max']:.4g}"
        console.print(f"wrote {p['n']} prediction{'s' if p['n'] != 1 else ''} ({span}) to {p['path']}",
                      markup=False)
    if report.proposal:
        run = report.proposal["info"].get("run_id")  # random: the best run, measured
        target = escape(str(report.target))  # rich markup: a column or run id may hold brackets
        _render_proposal(report.proposal, f"measured {target}, run {escape(str(run))}" if run is not None
                         else f"predicted {target}")
        console.print(f"wrote {report.out}", markup=False)


def _render_proposal(prop: dict[str, Any], what: str) -> None:
    """The proposed weights, largest first, under the prediction (± its sd where the model has one)."""
    sd = f" ± {prop['std']:.4f} (1 sd)" if prop.get("std") is not None else ""
    if (scale := (prop.get("info") or {}).get("sd_scale")) and prop.get("interval"):  # as the JSON has it
        lo, hi = prop["interval"]
        sd += f"; 95% interval [{lo:.4f}, {hi:.4f}], the sd widened ×{scale:.2f}"
    t = Table(title=f"proposed mixture ({what}: {prop['predicted']:.4f}{sd})")
    t.add_column("domain")
    t.add_column("weight", justify="right")
    shown, more = largest(prop["weights"])
    for d in shown:
        t.add_row(Text(d), f"{prop['weights'][d]:.4f}")
    if more:
        t.add_row(more, "")
    console.print(t)


def _render_scale(res: dict[str, Any]) -> None:
    tokens = f"{res['target_tokens']:.3g}" if res["target_tokens"] else "the last checkpoint's"
    size = f"{res['target_size']:.3g}" if res["target_size"] else "the largest rung's"
    where = ("at the largest rung's last checkpoint (nothing extrapolated)"
             if not (res["target_tokens"] or res["target_size"])
             else f"extrapolated to {tokens} tokens, {size} params")
    console.print(f"[bold]{res['method']}[/] on {res['n_mixtures']} mixtures ({res['n_runs']} runs at "
                  f"{', '.join(f'{s:.3g}' for s in res['sizes'])} params), {where}")
    for name, law in res["laws"]["step"].items():
        size, _, metric = name.partition("/")
        rung = res.get("rungs", {}).get(size)
        label = f"rung {rung} ({float(size):.3g} params), {metric}" if rung else name
        form = (f"in the learning rate's area, annealing C = {law['C']:.3g}" if law.get("scale") == "lr-area"
                else "in tokens")  # "scale" absent: a result of before 2026-12-04, in tokens
        console.print(f"  step law {label}: β = {law['beta']:.3f} {form}, RMS residual {law['rms']:.4g}",
                      markup=False)
    for metric, law in res["laws"].get("bimix", {}).items():
        step = f"β = {law['beta']:.3f} (step)" if law["beta"] is not None else "no step term (one checkpoint)"
        console.print(f"  bimix {metric}: α = {law['alpha']:.3f}, {step}; over the checkpoints RMS residual "
                      f"{law['rms']:.4g}, R² {law['r2']:.2f}", markup=False)
    size_laws = res["laws"]["size"]
    if size_laws:  # one exponent for every metric (mixopt.fitters.nested)
        beta = next(iter(size_laws.values()))["beta"]
        console.print(f"  size law: β = {beta:.3f} (all metrics); RMS residual "
                      + ", ".join(f"{name} {law['rms']:.4g}" for name, law in size_laws.items()),
                      markup=False)
    _render_proposal(res["proposal"], "predicted objective at target scale")
    base = res.get("baselines") or {}
    if base:  # what the proposal's prediction is read against, at the same scale
        shown = [f"{name} {b['predicted']:.4f}" for name, b in base.items() if name != "best_run"]
        if best := base.get("best_run"):  # (none under bimix: its runs' values there are its own prediction)
            carried = (f" (its runs carried there: {best['extrapolated']:.4f})" if "extrapolated" in best
                       else "")
            shown.append(f"the runs' best mixture {best['predicted']:.4f}{carried}")
        console.print("predicted at target scale: " + "; ".join(shown), markup=False)
    for note in res.get("notes", ()):
        console.print(f"[yellow]note:[/] {escape(note)}")
    if res["out"]:
        console.print(f"wrote {res['out']}", markup=False)


@bench_app.command("fit")
def bench_fit(
    data: Annotated[Path | None, opt("--data", help="Folder of the reference tables (regmix-pile-1m/, "
                                     "olmix-64dom-512/; default: shared/data/runs beside the checkout), or "
                                     "the regmix-pile-1m folder itself.", parser=in_path)] = None,
    candidates: Annotated[int, opt("--candidates", help="Candidates for the propose timing (1e6, 1M; at "
                                   "least 128).", parser=_bench_candidates, metavar="N")] = 1_000_000,
    as_json: JsonOpt = False,
    timing: Annotated[bool, opt("--timing/--no-timing", help="RegMix's fit/propose timings.")] = True,
    laws: Annotated[bool, opt("--laws/--no-laws", help="Every fitter on the reference tables and the store: "
                              "Spearman, Pearson, MAE, relative error, fit time.")] = True,
    tasks: Annotated[str | None, opt("--tasks", help="Comma list of regmix-pile-cc, olmix-mean-cv5, "
                                     "small-32, store, extrapolation, lengths (default: all).")] = None,
    fitters: Annotated[str | None, opt("--fitters", help="Comma list of fitters (default: all).")] = None,
    jobs: Annotated[int | None, opt("--jobs", help="Processes for --laws (default: all cores).", min=1)] = (
        None),
    store: Annotated[str | None, opt("--store", help="Run store of the store and extrapolation tasks.")] = (
         None),
    ladder: Annotated[str | None, opt("--ladder", help="First train the extrapolation ladder (4 widths × "
                                      "--ladder-mixtures mixtures) on this built corpus into the store.")] = (
                                      None),
    lengths: Annotated[str | None, opt("--lengths", help="First train the lengths runs (--ladder-mixtures "
                                       "mixtures at rung xs for --lengths-factors × its tokens) on this "
                                       "built corpus into the store.")] = None,
    lengths_factors: Annotated[str, opt("--lengths-factors", help="Multiples of the rung's tokens the "
                                        "lengths runs train for; the smallest is fitted, the others "
                                        "predicted.")] = "1,2,4",
    ladder_mixtures: Annotated[int, opt("--ladder-mixtures", help="Mixtures of the ladder and of the lengths "
                                        "runs.", min=2)] = 8,
    ladder_seed: Annotated[int, opt("--ladder-seed", help="Seed of their mixtures and training "
                                    "(another seed: another draw of the figure).", min=0,
                                    max=MAX_SEED)] = 0,
) -> None:
    """RegMix's fit/propose timings, and every fitter's accuracy on held-out runs (tables and store)."""
    from mixopt.bench.laws import FITTERS, TASKS
    from mixopt.errors import MixoptError

    if not (timing or laws or ladder or lengths):
        raise MixoptError("--no-timing with --no-laws leaves nothing to run; drop one of them")
    def listed(value: str | None, default: tuple[str, ...]) -> tuple[str, ...]:
        return default if value is None else tuple(x.strip() for x in value.split(",") if x.strip())

    task_list, fitter_list = listed(tasks, TASKS), listed(fitters, FITTERS)
    for option, given, known in (("--tasks", task_list, TASKS), ("--fitters", fitter_list, FITTERS)):
        unknown = [x for x in given if x not in known]
        if unknown or not given:
            raise MixoptError(f"{option} {','.join(unknown) or repr('')}: choose from {', '.join(known)}")
    factors = _factors(lengths_factors)  # before anything runs
    for built in (ladder, lengths):  # likewise: a corpus name mistyped had failed after the timings
        if built is not None:
            from mixopt.corpus import Corpus

            Corpus.open(built).manifest  # noqa: B018 - read to check it
    res: dict[str, Any] = {}
    root = data  # the tables' root, or RegMix's folder in it
    if data is not None and (data / "regmix-pile-1m").is_dir():
        data = data / "regmix-pile-1m"
    if data is not None and data.name == "regmix-pile-1m":
        root = data.parent
    if timing:
        from mixopt.bench.fit import bench_fit as run_bench

        res = run_bench(data=data, n_candidates=candidates)
    if ladder is not None:
        from mixopt.bench.laws import ladder_runs
        from mixopt.store import made_store

        with made_store(store) as st:  # a refused ladder leaves no empty store
            n = ladder_runs(ladder, st, n_mixtures=ladder_mixtures, seed=ladder_seed, jobs=jobs)
        console.print(f"trained {n} ladder runs on {ladder}", markup=False)
    if lengths is not None:
        from mixopt.bench.laws import length_runs
        from mixopt.store import made_store

        with made_store(store) as st:
            n = length_runs(lengths, st, n_mixtures=ladder_mixtures, seed=ladder_seed, jobs=jobs,
                            factors=factors)
        console.print(f"trained {n} lengths runs on {lengths}", markup=False)
    if laws:
        from mixopt.bench.laws import bench_laws

        res["laws"] = bench_laws(data=root, jobs=jobs, store=store, tasks=task_list, fitters=fitter_list)
        skipped = res["laws"]["skipped"]
        if not res["laws"]["rows"] and not timing:  # nothing was measured: say why, not an empty table
            from mixopt.errors import MixoptError

            raise MixoptError("nothing to benchmark: " + "; ".join(f"{t}: {w}" for t, w in skipped.items()))
        for task, why in skipped.items():  # on stderr: --json keeps stdout one JSON object
            err_console.print(f"note: {task} skipped: {escape(why)}")
    if as_json:
        print(dumps(res, default=json_default))
        return
    if timing:
        goal_table("mixopt bench fit", res["rows"])
    if laws:
        _render_laws(res["laws"])


def _factors(text: str) -> tuple[int, ...]:
    """``--lengths-factors``: two or more distinct whole multiples ≥ 1."""
    from mixopt.errors import MixoptError

    try:
        factors = tuple(sorted({int(x) for x in text.split(",") if x.strip()}))
    except ValueError:
        factors = ()
    if len(factors) < 2 or factors[0] < 1:
        raise MixoptError(f"--lengths-factors {text!r}: give two or more whole multiples ≥ 1 of the rung's "
                          "tokens, e.g. 1,2,4 (the smallest is fitted, the others predicted)")
    return factors


def _bench_candidates(text: str) -> int:
    """``bench fit --candidates``: counts as ``fit --candidates`` takes them (1M, 1e6), at least 128."""
    n = parse_candidates(text)
    if n < 128:
        raise typer.BadParameter(f"{text!r} is fewer than 128 candidates (the top-k proposer averages 128)")
    return n


def _render_laws(res: dict[str, Any]) -> None:
    from rich import box

    rows = []
    for r in res["rows"]:
        if "error" in r:
            rows.append([r["task"], r["fitter"], "-", "-", "-", "-", f"{r['seconds']:.1f}", r["error"][:50]])
            continue
        note = ", ".join(r.get("chosen", [])) if r.get("chosen") else ""
        if "spearman_min" in r:
            note = f"min {r['spearman_min']:.3f}" + (f"; {note}" if note else "")
        if r.get("nonpositive"):  # a law that predicted a loss ≤ 0: scored, but not a usable law there
            bad = ", ".join(m.split("/", 1)[-1] for m in r["nonpositive"])
            note = f"≤0: {bad}" + (f"; {note}" if note else "")
        f = {k: r.get(k) for k in ("spearman", "pearson", "mae")}
        rows.append([r["task"], r["fitter"], *("-" if v is None else f"{v:.4f}" for v in f.values()),
                     f"{r['rel_error']:.3%}", f"{r['seconds']:.1f}", note])
    cols = ("task", "fitter", "Spearman", "Pearson", "MAE", "rel. error", "fit s", "note")
    # A column no row fills (the lengths task has no ranks, most rows no note) only costs width:
    # the table should fit an 80-column terminal without wrapping its task names.
    keep = [i for i, c in enumerate(cols)
            if c in ("task", "fitter") or any(row[i] not in ("", "-") for row in rows)]
    t = Table(title="every fitter on runs it was not fitted on", box=box.SIMPLE_HEAD)
    for i in keep:
        text = cols[i] in ("task", "fitter", "note")
        # figures are never cut; the text columns wrap (a lengths task name is one line at 80)
        t.add_column(cols[i], justify="left" if text else "right", no_wrap=not text,
                     overflow="fold" if text else "ellipsis")
    for row in rows:
        t.add_row(*(row[i] for i in keep))
    console.print(t)
    for name, summary in res["summary"].items():
        console.print(f"{name}: {escape(_figure(summary))}")


def _figure(v: Any) -> str:
    """A summary as text: floats to 4 significant digits (the table above has full precision),
    a dict as ``key value`` pairs, nested ones in parentheses."""
    if isinstance(v, dict):
        return ", ".join(f"{k} " + (f"({_figure(x)})" if isinstance(x, dict) else _figure(x))
                         for k, x in v.items())
    if isinstance(v, bool):  # a goal's "met", as the tables say it
        return "yes" if v else "no"
    return f"{v:.4g}" if isinstance(v, float) else str(v)
