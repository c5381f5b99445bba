"""``mixopt search``: run a proxy swarm on Ray Tune, fit, propose, validate, write the mixture JSON."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from mixopt.cli import app
from mixopt.cli.bench import bench_app
from mixopt.cli.common import (
    MAX_SEED,
    SEARCH_METHOD_HELP,
    WORK_DONE,
    FixOpt,
    JsonOpt,
    MaxEpochsOpt,
    MaxWeightOpt,
    MinWeightOpt,
    TargetTokensOpt,
    assignments,
    console,
    dumps,
    err_console,
    goal_table,
    in_path,
    json_warnings,
    largest,
    live,
    opt,
    parse_budget,
    print_columns,
    recompute_opt,
    render_selection,
)

Str = str | None


# What --resume takes from the command line; everything else comes from the stored search.
RESUME_OPTIONS = {"resume", "store", "address", "concurrency", "cpus_per_trial", "gpus_per_trial", "out",
                  "trial_timeout", "retries", "as_json"}


@app.command("search")
def search(
    ctx: typer.Context,
    corpus: Annotated[Str, opt("--corpus", "-c", help="Built corpus name or folder.")] = None,
    method: Annotated[str, opt("--method", "-m", help=SEARCH_METHOD_HELP)] = "regmix",
    budget: Annotated[int, opt("--budget", "-b", help="Distinct mixtures inside the constraints to fit "
                                      "on: reused ones count (once each), new runs fill the rest (all "
                                      "reusable runs are fitted).", parser=parse_budget,
                                      metavar="N")] = 32,
    rung: Annotated[str, opt("--rung", "-r", help="Proxy rung of the swarm.")] = "xs",
    out: Annotated[Str, opt("--out", "-o", help="Where to write the mixture JSON.")] = None,
    name: Annotated[Str, opt("--name", help="Search name (default: corpus-method-time).")] = None,
    evaluator: Annotated[Str, opt("--evaluator", help="Your evaluator, module:function "
                                  "(default: the built-in proxy trainer).")] = None,
    domains: Annotated[Str, opt("--domains", help="Domains a,b,c (with --evaluator), or @FILE of "
                                                  "them.")] = None,
    tokens: Annotated[Str, opt("--tokens", help="Tokens per domain a=1e9,b=2B,c=500M, or @FILE.")] = None,
    fidelity: Annotated[list[str] | None, opt("--fidelity", help="Extra fidelity fields for the evaluator, "
                                              "k=v,k2=v2 (repeatable).")] = None,
    seed: Annotated[int, typer.Option("--seed", min=0, max=MAX_SEED,
                                      help="Seed of the swarm, the runs and the proposer.")] = 0,
    validate: Annotated[int, opt("--validate", help="Seeds per candidate when retraining the proposal and "
                                 "the baselines (0: skip; a win needs 4.5 paired standard errors "
                                 "with 3 seeds, 14 with 2).")] = 3,
    validate_rung: Annotated[Str, opt("--validate-rung", help="Rung of the validation runs "
                                      "(default: --rung).")] = None,
    retries: Annotated[int, opt("--retries", help="Extra attempts for a failed run.")] = 1,
    no_reuse: Annotated[bool, opt("--no-reuse", help="Do not reuse runs of earlier searches.")] = False,
    resume: Annotated[Str, opt("--resume", help="Continue the stopped search NAME.")] = None,
    address: Annotated[Str, opt("--address", help="Ray cluster address: host:6379, or auto for the "
                                "cluster of `ray start` on this machine, or local for a Ray of this "
                                "search's own (default: RAY_ADDRESS, else local; --resume: the search's "
                                "own).")] = None,
    min_weight: MinWeightOpt = 0.0,
    max_weight: MaxWeightOpt = None,
    fix: FixOpt = None,
    max_epochs: MaxEpochsOpt = None,
    target_tokens: TargetTokensOpt = None,
    target: Annotated[Str, opt("--target", help="Objective: d1,d2 (mean) or d1=0.7,d2=0.3 "
                               "(a weighted mean; the weights are relative: a=2,b=1 is a=2/3,b=1/3), or "
                               "mean: the mean over all domains (default).")] = None,
    metric: Annotated[str, opt("--metric", help="loss or bpb.")] = "loss",
    temperature: Annotated[float, opt("--temperature", help="Temperature T of the prior, token shares ** "
                                      "(1/T), of the swarm, the proposers' candidates and KL term, and the "
                                      "temperature baseline (default 1: that baseline uses 2, RegMix's): "
                                      "T > 1 flattens it (Olmix's mix_temperature t and RegMix's TEMP are "
                                      "exponents: give T = 1/t).")] = 1.0,
    kl: Annotated[float | None, opt("--kl", help="Laws solved exactly: weight λ of KL(mixture ‖ prior) "
                                    "in the objective's units (default 0.1, Olmix's, for BPB; 0: the "
                                    "law's own optimum).")] = None,
    concurrency: Annotated[int | None, opt("--concurrency", help="Trials at once "
                                           "(default: CPUs / --cpus-per-trial, or GPUs / "
                                           "--gpus-per-trial if fewer).")] = None,
    cpus_per_trial: Annotated[int, opt("--cpus-per-trial", help="CPUs (torch threads) per trial.")] = 1,
    gpus_per_trial: Annotated[float, opt("--gpus-per-trial", help="GPUs Ray reserves for each trial of "
                                         "your --evaluator (0.5: two trials share one); the trial's "
                                         "CUDA_VISIBLE_DEVICES names them.")] = 0.0,
    trial_timeout: Annotated[float | None, opt("--trial-timeout", help="Seconds a run may take; a run "
                                               "still going then is stopped, recorded failed and "
                                               "retried (default: no limit).")] = None,
    store: Annotated[Str, opt("--store", help="Run store file (default: the workspace's). The search's "
                                               "folder stays in the workspace: a --name that another "
                                               "store's search uses is refused.")] = None,
    reuse_mixture: Annotated[Str, opt("--reuse-mixture", help="Mixture reuse (Olmix): MIXTURE.json or "
                                      "NAME=MIXTURE.json, whose domains are searched as one group NAME "
                                      "(default reused) at that mixture's shares, beside the domains it "
                                      "lacks; the runs train every domain, and the mixture is written over "
                                      "every domain.")] = None,
    recompute: Annotated[Str, recompute_opt("to search")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Search for the best mixture: swarm of proxy runs → fit → propose → validate → mixture JSON."""
    from mixopt.search.config import SearchConfig, parse_assignments, parse_domains, parse_fidelity
    from mixopt.search.driver import resume_search, run_search

    # With --json, stdout is the document's alone: what the user's evaluator module prints as it is
    # imported had come first (a QA pass), so the work's stdout goes to stderr.
    work_out = contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext()
    with work_out, _Progress() as progress, json_warnings(as_json) as said:
        try:
            if resume is not None:
                ignored = sorted(p for p in ctx.params if p not in RESUME_OPTIONS
                                 and (src := ctx.get_parameter_source(p)) is not None
                                 and src.name == "COMMANDLINE")
                if ignored and resume.strip():
                    from mixopt.store import store_of_search

                    # a name that is no search: its error alone, not a warning about options first
                    store_of_search(resume, store).require_search(resume)
                    err_console.print(
                        f"warning: --resume continues {resume} as it was started; ignoring "
                        + ", ".join("--" + p.replace("_", "-") for p in ignored)
                        + " (start a new search to change them)", markup=False
                    )
                def given(param: str, value: Any) -> Any:  # options with a default: only when typed
                    src = ctx.get_parameter_source(param)
                    return value if src is not None and src.name == "COMMANDLINE" else None

                result = resume_search(resume, store=store, progress=progress, address=address,
                                       concurrency=concurrency, out=out, trial_timeout=trial_timeout,
                                       retries=given("retries", retries),
                                       cpus_per_trial=given("cpus_per_trial", cpus_per_trial),
                                       gpus_per_trial=given("gpus_per_trial", gpus_per_trial))
            else:
                config = SearchConfig(
                    name=name, corpus=corpus, evaluator=evaluator,
                    domains=parse_domains(domains),
                    tokens=parse_assignments(tokens, option="--tokens", counts=True) or None, method=method,
                    budget=budget,
                    rung=rung, fidelity=parse_fidelity(fidelity), seed=seed, validate=validate,
                    validate_rung=validate_rung, retries=retries, reuse=not no_reuse, address=address,
                    concurrency=concurrency, cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial,
                    trial_timeout=trial_timeout,
                    min_weight=min_weight,
                    max_weight=assignments(max_weight, "--max-weight"),
                    fix=assignments(fix, "--fix"), max_epochs=max_epochs,
                    target_tokens=target_tokens, target=target, metric=metric,  # type: ignore[arg-type]
                    temperature=temperature, kl=kl, out=out, store=store, reuse_mixture=reuse_mixture,
                    recompute=parse_domains(recompute, "--recompute") or (),
                )
                result = run_search(config, progress=progress)
        except KeyboardInterrupt:
            sid = resume or progress.search_id or (name if name and _recorded(name, store) else None)
            # The command on a line of its own, never wrapped, so that it pastes whole.
            err_console.print("stopped; finished runs are in the run store. Continue with:" if sid else
                              "stopped before the search was recorded: nothing to resume; run the command "
                              "again", markup=False)
            if sid:  # with the store it is in (the review: a --store search was sent to the workspace's)
                err_console.print(f"  mixopt search --resume {sid}" + (f" --store {store}" if store else ""),
                                  soft_wrap=True, markup=False)
            # SystemExit, not KeyboardInterrupt: typer turns the latter into a return value (exit 0)
            raise SystemExit(130) from None
    WORK_DONE.set()  # the mixture and the store are written: a Ctrl-C now stops only the printing
    if as_json:
        print(dumps({**result.as_dict(), "warnings": said}, indent=2))
        return
    render_result(result)


def _recorded(name: str, store: str | None) -> bool:
    """Whether the run store holds search ``name`` (a Ctrl-C while Ray starts may come before it does)."""
    from mixopt.errors import MixoptError
    from mixopt.store import store_of_search

    try:
        return store_of_search(name, store).get_search(name) is not None
    except MixoptError:  # no store yet
        return False


@bench_app.command("search")
def bench_search(
    trials: Annotated[int, opt("--trials", help="No-op trials for the overhead figure.", min=1,
                                    max=10_000)] = 40,
    work_trials: Annotated[int, opt("--work-trials", help="CPU-bound trials per throughput run.",
                                              min=1, max=1000)] = 8,
    work: Annotated[int, opt("--work", help="Work per CPU-bound trial (×10k Python steps).", min=1,
                                  max=100_000)] = 3000,
    repeats: Annotated[int, typer.Option("--repeats", min=1, max=100,
                                         help="Interleaved 1-vs-2 pairs; the median ratio is reported.")] = 5,
    address: Annotated[Str, opt("--address", help="Ray cluster address: host:6379, auto or local "
                                "(default: RAY_ADDRESS, else a local Ray).")] = None,
    no_fit: Annotated[bool, opt("--no-fit", help="Skip the fit figures (mixopt bench fit).")] = False,
    data: Annotated[Path | None, opt("--data", help="The fit figures' tables: the folder holding "
                                     "regmix-pile-1m/, or that folder (default: the project's shared copy "
                                     "beside the checkout).", parser=in_path)] = None,
    as_json: JsonOpt = False,
) -> None:
    """Per-trial overhead, 2-vs-1 throughput through Ray Tune, and the fit figures."""
    from mixopt.bench.search import bench_search as run_bench

    if data is not None and (data / "regmix-pile-1m").is_dir():  # as bench fit reads it
        data = data / "regmix-pile-1m"
    res = run_bench(trials=trials, work_trials=work_trials, work=work, address=address,
                    include_fit=not no_fit, fit_data=data, repeats=repeats)
    if as_json:
        print(dumps(res, default=str))
        return
    goal_table(f"mixopt bench search ({res['ray_cpus']} CPUs; load {res['load_before']:.1f} → "
               f"{res['load_after']:.1f})", res["rows"])


class _Progress:
    """Rich progress for the stages and trials of a search, on stderr (with --json too)."""

    def __init__(self) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.search_id: str | None = None
        # Without a terminal that animates (a log file, CI, TERM=dumb) rich draws no bar until the
        # end: print a line per finished run instead.
        self.plain = not live()
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            # the lowest objective of one run of this phase (a validation candidate's mean comes in
            # the table; the swarm's best run is not a validation run's)
            TextColumn("best {task.fields[phase]} run {task.fields[best]}"), TimeElapsedColumn(),
            TextColumn("ETA"), TimeRemainingColumn(),
            # rich's default estimates speed over the last 30 s, so runs further apart (any proxy
            # above xs) never showed an ETA; the whole phase is the window here.
            speed_estimate_period=24 * 3600,
            # Disabled without a terminal too: a stopped live display there only leaves a blank line.
            console=err_console, disable=self.plain, transient=False,
        )
        self.tasks: dict[str, Any] = {}
        self.started: dict[str, tuple[float, int]] = {}

    def __enter__(self) -> _Progress:
        import logging
        import sys

        self.progress.start()
        # Log lines (a retry, a run given up) go through rich's stderr proxy while the bar is live,
        # so they print above it instead of through it.
        self.streams = [(h, h.setStream(sys.stderr)) for h in logging.getLogger().handlers
                        if type(h) is logging.StreamHandler and not self.progress.disable]
        return self

    def __exit__(self, *exc: object) -> None:
        for handler, stream in self.streams:
            if stream is not None:  # None: it was rich's stream already
                handler.setStream(stream)
        self.progress.stop()

    def __call__(self, event: Any) -> None:
        from mixopt.search.driver import StageEvent

        if isinstance(event, StageEvent):
            self.search_id = event.search_id
            for line in (event.message, *event.lines) if event.stage != "ray" else event.lines:
                self.progress.console.print(line, style="dim" if event.stage == "ray" else None, markup=False)
            return
        best = f"{event.best:.4f}" if event.best is not None else "-"
        if event.phase not in self.tasks:
            self.tasks[event.phase] = self.progress.add_task(f"{event.phase} runs", total=event.total,
                                                             best=best, phase=event.phase)
        self.progress.update(self.tasks[event.phase], completed=event.done, total=event.total, best=best)
        if self.plain:
            self._plain_line(event, best)

    def _plain_line(self, event: Any, best: str) -> None:
        import time

        now = time.monotonic()
        t0, done0 = self.started.setdefault(event.phase, (now, event.done))
        if event.last is None:  # the event sent at the start of a phase
            return
        elapsed, rate = now - t0, (event.done - done0) / max(now - t0, 1e-9)
        eta = f"{(event.total - event.done) / rate:.0f}s" if rate > 0 else "-"
        failed = f" ({event.failed} failed)" if event.failed else ""
        line = f"{event.phase} {event.done}/{event.total}{failed} · best {event.phase} run {best}"
        self.progress.console.print(f"{line} · {elapsed:.0f}s elapsed · ETA {eta}", markup=False)


def _fmt(x: float | None, nd: int = 4) -> str:
    return "-" if x is None else f"{x:.{nd}f}"


def render_result(result: Any) -> None:
    """The summary: objective of the exported mixture next to the baselines, then their weights."""
    from mixopt.report import swarm_outcome, validation_outcome
    from mixopt.search.validate import better_by

    cols = ["mixture", "predicted (± sd)", "swarm"]
    if result.validate:
        shown = result.shown_rung()
        cols += [f"measured ({shown})" if shown else "measured", "± se", "n", "proposal better by"]
    rows = []
    for row in result.candidates:
        sd, scale = row.predicted_std, row.sd_scale
        # widened where auto's cross-validation found the model's sds too narrow (the notes say so)
        widened = f" ± {sd * scale:.4f} (×{scale:.2f})" if sd is not None and scale else None
        predicted = _fmt(row.predicted) + (widened or (f" ± {sd:.4f}" if sd is not None else ""))
        same = f" (= {row.same_as})" if row.same_as else ""  # one mixture under two names
        cells = [("★ " if row.exported else "  ") + row.name + same, predicted, _fmt(row.swarm_value)]
        if result.validate:
            m = row.measured or {}
            cells += [_fmt(m.get("mean")), _fmt(m.get("sem")), str(m.get("n", 0)), better_by(row.comparison)]
        rows.append(cells)
    print_columns(f"search {result.search_id} · {result.method} · {result.objective['kind']}", cols, rows,
                  left=("mixture",))

    domains, more = largest(result.weights)
    rows = [[d, *[f"{row.weights[d]:.3f}" for row in result.candidates]] for d in domains]
    if more:
        rows.append([more, *["" for _ in result.candidates]])
    print_columns("weights (★ exported)",
                  ["domain", *[("★" if row.exported else "") + row.name for row in result.candidates]], rows,
                  left=("domain",))
    runs = result.runs
    checks = validation_outcome(runs)  # reused runs of earlier searches, attempts a stop cut short
    checks = f"; {checks}" if checks else ""
    if runs.get("planned") or runs.get("reused"):
        console.print(f"runs: {swarm_outcome(runs)}, {runs['reused']} reused, "
                      f"{runs['fitted']} fitted{checks} · {result.wall_s:.0f} s", markup=False)
    else:  # entropy: "0 ok, 0 fitted" would read as a swarm that failed
        console.print(f"runs: no swarm ({result.method} is training-free){checks} · {result.wall_s:.0f} s",
                      markup=False)
    marks = {(row.comparison or {}).get("beats") for row in result.candidates} & {True, False}
    if result.validate and marks:  # the legend of marks the table shows (none with one seed)
        from mixopt.search.validate import BEATS_RULE

        console.print(BEATS_RULE, markup=False)
    if result.selection:
        render_selection(result.selection)
    for note in result.notes:
        console.print(f"note: {note}", style="yellow", soft_wrap=not console.is_terminal, markup=False)
    console.print(f"mixture ({result.exported}) written to {result.out or result.mixture_path}", markup=False)
