"""``mixopt train`` / ``mixopt compare``: the final MoE trainer; ``mixopt bench moe``: its kernels' speed."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from mixopt.cli import app
from mixopt.cli.bench import bench_app
from mixopt.cli.common import (
    CorpusOpt,
    JsonOpt,
    SeedOpt,
    console,
    dumps,
    err_console,
    json_warnings,
    live,
    out_file,
    parse_count,
    print_columns,
)
from mixopt.errors import MixoptError, one_line

ThreadsOpt = Annotated[
    int | None, typer.Option("--threads", "-t", min=1, help="Torch threads (default: torch's own choice).")
]


def _int_list(text: str, what: str, example: str) -> tuple[int, ...]:
    try:
        vals = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError as exc:
        raise MixoptError(f"{what} {text!r} is not a list of integers (e.g. {example})") from exc
    if not vals or min(vals) < 1:
        raise MixoptError(f"{what} {text!r} must list positive integers, e.g. {example}")
    return vals


ModelOpt = Annotated[
    str, typer.Option("--model", help="Model config: moe-xs, moe-s, moe-m (proxies/moe/) or a .toml.")
]
TokensOpt = Annotated[int | None, typer.Option("--tokens", parser=parse_count, metavar="TOKENS",
                                              help="Override the config's token budget (2e5, 200k, 5M).")]
DenseOpt = Annotated[bool, typer.Option("--dense", help="Train the dense twin: same shape, no experts.")]
DeviceOpt = Annotated[str, typer.Option("--device", help="cpu or cuda.")]


PLAIN_EVERY_S = 60.0  # seconds between progress lines in a log file


def _duration(seconds: float) -> str:
    m = round(seconds / 60)
    return f"{seconds:.0f} s" if seconds < 90 else (f"{m} min" if m < 90 else f"{m / 60:.1f} h")


class _TimeLeft:
    """Seconds left at the pace since the first call (steps or runs), None until one is done.

    Counted from the first call, not from 0: a resumed run's or a rerun compare's earlier work
    took no time here.
    """

    def __init__(self) -> None:
        self.started = 0.0
        self._done0: int | None = None

    def __call__(self, done: int, total: int) -> float | None:
        now = time.monotonic()
        if self._done0 is None:
            self.started, self._done0 = now, done
        if done <= self._done0:
            return None
        return (now - self.started) / (done - self._done0) * (total - done)


def _f(v: float | None, fmt: str = ".4f") -> str:
    return "-" if v is None else format(v, fmt)  # the empty cell of every table of mixopt's


def _render_phases(phases: list[dict], updater_from: int | None = None) -> None:
    """The schedule phase by phase: each domain's planned weight and the share of tokens trained;
    ``updater_from``: the step from which an updater set the weights instead."""
    cols = ["domain"]
    for i, p in enumerate(phases):
        first, last = p["steps"]
        cols.append(f"steps {first}–{last} planned / trained" if first <= last
                    else f"phase {i + 1} (until {p['until']:g}): no step")
    domains = list(phases[0]["planned"])
    rows = [[d, *(f"{p['planned'][d]:.3f} / {p['trained'][d]:.3f}" if p["tokens"] else
                  f"{p['planned'][d]:.3f} / —" for p in phases)] for d in domains]
    title = "schedule: weight planned and share trained, per phase"
    if updater_from is not None:
        title += f" (the updater set the weights from step {updater_from})"
    print_columns(title, cols, rows, left=("domain",))


def _render_train(res) -> None:  # noqa: ANN001 (TrainResult)
    rep = res.report
    title = (
        f"{res.config['model']}{' (dense twin)' if res.config['lm']['dense'] else ''} on "
        f"{res.config['corpus']['name']}, mixture {res.config['label']}: {res.tokens:,} tokens, "
        f"{res.tokens_per_s:,.0f} tokens/s"
    )
    has_pred = any("predicted" in r for r in rep.get("domains", []))
    # weight: the mixture's (a schedule's averaged over training); share: what was trained, which an
    # --updater changes as it goes.
    phases = getattr(res, "phases", None) or []
    # The updater's weights at the end; those of the schedule updater are its last phase, which the
    # phase table shows. Any other updater overrides the schedule: its weights are shown.
    upd = res.config.get("updater") or {}
    overrides = bool(upd) and upd.get("name") != "schedule"
    updated = bool(upd) and bool(res.log) and (not phases or overrides)
    final_w = res.log[-1].get("weights", {}) if updated else {}
    weight = "mixture weight" if updated else "weight"
    if phases:
        weight = "weight (schedule mean)"  # no phase had it: the per-phase table below shows each
    cols = ["domain", weight, *(["updater weight"] if updated else []), "trained tokens", "share",
            "loss (nats/tok)", "bpb"]
    if has_pred:  # in the metric the search predicted per domain (loss, or bpb for a bpb objective)
        unit = rep.get("per_domain_metric", "loss")
        cols += [f"predicted {unit}", f"Δ {unit}"]
    load = (res.expert_load or {}).get("summary", {})
    if load:
        cols += ["top expert share", "routing entropy (nats)"]
    total = sum(res.domain_tokens.values()) or 1
    rows: list[list[str]] = []
    for r in rep.get("domains", []):
        n = res.domain_tokens.get(r["domain"], 0)
        row = [
            r["domain"],
            f"{r['weight']:.4f}",
            *([_f(final_w.get(r["domain"]))] if updated else []),
            f"{n:,}",
            f"{n / total:.4f}",
            f"{r['loss']:.4f}",
            _f(r.get("bpb")),
        ]
        if has_pred:
            row += [_f(r.get("predicted")), _f(r.get("difference"), "+.4f")]
        if load:
            ld = load.get(r["domain"], {})
            row += [_f(ld.get("top_share"), ".3f"), _f(ld.get("entropy"), ".3f")]
        rows.append(row)
    print_columns(title, cols, rows, left=("domain",))
    if phases:
        _render_phases(phases, res.config.get("updater_every") if overrides else None)
    console.print(f"objective ({rep.get('objective')}): final model {_f(rep.get('final'))}", markup=False)
    if rep.get("note"):
        console.print(f"  note: {rep['note']}", style="yellow", markup=False)
    if rep.get("predicted") is not None:
        extra = ""
        if "interval" in rep:
            lo, hi = rep["interval"]
            extra = f", 95% interval of a proxy run [{lo:.4f}, {hi:.4f}]"
        console.print(
            f"  search predicted {rep['predicted']:.4f} (proxy scale){extra}; "
            f"final − predicted = {rep['final_minus_predicted']:+.4f}", markup=False
        )
    if split := rep.get("per_domain_split"):
        apart = f", {split['sd_apart']:.1f} sd apart" if split.get("sd_apart") is not None else ""
        console.print(
            f"  note: the search's per-domain predictions combine to {split['combined']:.4f}, not its "
            f"{rep['predicted']:.4f}{apart}: its two fits of the same runs disagree, so read the "
            "predicted column and the prediction above as rough", style="yellow", markup=False)
    if rep.get("proxy_measured") is not None:
        sem = f" ± {rep['proxy_sem']:.4f}" if rep.get("proxy_sem") is not None else ""
        console.print(
            f"  measured at proxy rung {rep.get('proxy_rung')}: {rep['proxy_measured']:.4f}{sem}; "
            f"final − proxy = {rep['final_minus_proxy']:+.4f} (the larger model should be lower)",
            markup=False
        )
    baseline = res.config["label"] in ("uniform", "natural")  # nothing was predicted: nothing to say
    figures = rep.get("predicted") is not None or rep.get("proxy_measured") is not None
    if not (baseline or figures or rep.get("note")):
        console.print(
            "  the mixture has no prediction to compare with (a baseline or hand-made mixture)"
        )
    if (fig := load_figures(res)) is not None:
        _render_load(res, fig)
    console.print(f"run folder: {res.out}", markup=False)


def load_figures(res) -> dict | None:  # noqa: ANN001 (TrainResult)
    """Max load violation per MoE layer (whole run, last log window), its ceiling, collapsed layers."""
    if not res.expert_load:
        return None
    lm = res.config["lm"]
    ceiling = lm["n_experts"] / lm["top_k"] - 1  # every token's k slots on the same k experts
    vio = list(res.expert_load["maxvio"])
    last = res.log[-1] if res.log else {}
    window = list(last.get("maxvio_layers") or [])
    per_step = list(last.get("maxvio_step_layers") or [])
    worst = window or vio  # collapse is a lasting skew: pooled counts, not one step's noise
    return {"maxvio": vio, "maxvio_last_window": window, "maxvio_per_step": per_step, "ceiling": ceiling,
            "collapsed_layers": [i for i, v in enumerate(worst) if ceiling > 0 and v >= 0.5 * ceiling]}


def _collapse(res, fig: dict) -> str | None:  # noqa: ANN001 (TrainResult)
    """The warning for a layer still sending most tokens to a few experts at the end, said on stderr
    and in --json's "warnings"; None when no layer does."""
    if not fig["collapsed_layers"]:
        return None
    lm = res.config["lm"]
    which = ", ".join(str(i) for i in fig["collapsed_layers"])
    # a shipped model's file sits in the installed package: the copy in ./proxies/moe/ is the one to edit
    toml = "the model's TOML (for a shipped model, a copy of it in ./proxies/moe/, which is read first)"
    how = {
        "bias": f"the bias balancing moves {lm['bias_rate']:g} per step, slow for a run of {res.total_steps} "
                f"steps: raise bias_rate in {toml}, or set balance = \"aux\"",
        "aux": f"raise aux_coef in {toml}, or set balance = \"bias\"",
    }.get(lm.get("balance"), f"set balance = \"bias\" or \"aux\" in {toml}")
    return (f"MoE layer(s) {which} (from 0) still send most tokens to a few experts at the end (violation "
            f"≥ half of {fig['ceiling']:.2f}); {how}")


def _render_load(res, fig: dict) -> None:  # noqa: ANN001 (TrainResult)
    """Max load violation per layer, against its ceiling."""
    lm = res.config["lm"]
    def fmt(values: list[float]) -> str:
        return ", ".join(f"{v:.2f}" for v in values)

    window, per_step = fig["maxvio_last_window"], fig["maxvio_per_step"]
    console.print(
        f"expert load (max load violation per MoE layer; 0 = balanced, {fig['ceiling']:.2f} = all tokens on "
        f"{lm['top_k']} of {lm['n_experts']} experts): "
        + (f"per step, mean over the last log window {fmt(per_step)} (what the steps paid for); " if per_step
           else "")
        + (f"pooled over that window {fmt(window)}; " if window else "")
        + f"pooled over the whole run {fmt(fig['maxvio'])}", markup=False
    )
    if res.expert_load.get("summary"):
        console.print(f"  top expert share is at most 1/k = {1 / lm['top_k']:.3g} (each token fills k "
                      "slots); both columns average the layers", style="dim", markup=False)


@app.command("train")
def train_cmd(
    mixture: Annotated[str, typer.Option(
        "--mixture", "-m", help="Mixture JSON, uniform, natural, or weights: code=0.5,math=0.5.")],
    corpus: CorpusOpt = "default",
    model: ModelOpt = "moe-s",
    tokens: TokensOpt = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the run in --out from its checkpoint.")
    ] = False,
    dense: DenseOpt = False,
    out: Annotated[  # str, not Path: typer reads an empty value as Path("."), the current folder
        str | None, typer.Option("--out", "-o", help="Run folder (default: workspace train/).")
    ] = None,
    seed: SeedOpt = 0,
    updater: Annotated[
        str | None,
        typer.Option(
            "--updater", help="Online weight updater: loss[:eta=1,every=20,decay=0.5,epsilon=0.1] "
            "(reweights by training loss), `schedule` (the mixture JSON's schedule, as without "
            "--updater), or module:factory (see mixopt/train/updater.py)."
        ),
    ] = None,
    threads: ThreadsOpt = None,
    device: DeviceOpt = "cpu",
    checkpoint_every: Annotated[
        int | None,
        typer.Option("--checkpoint-every", min=0, help="Steps between checkpoints besides each evaluation's "
                     "(default: every 5% of the run; 0: only at evaluations). Ctrl-C and SIGTERM "
                     "checkpoint too."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Train the MoE language model on a mixture; report per-domain loss and bpb against the prediction."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from mixopt.train.memory import keep_freed_memory
    from mixopt.train.trainer import RunStopped, train

    keep_freed_memory()
    columns = [
        TextColumn("[bold]train"),
        BarColumn(),
        TextColumn("{task.completed}/{task.fields[steps]} steps"),
        TextColumn("loss {task.fields[loss]}"),
        TextColumn("{task.fields[note]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    # On stderr, beside the warnings (stdout may be a file, --json's document); where it is not drawn
    # (a log file, a pipe, TERM=dumb) plain lines go to stderr instead.
    plain = not live()
    with Progress(*columns, console=err_console, transient=True, disable=plain) as progress:
        task = progress.add_task("train", total=None, loss="-", note="", steps="…")

        last_loss = ["-"]
        eta = _TimeLeft()
        last_line: list[float] = []  # when the last plain line was printed

        def on_progress(ev: dict) -> None:
            if "resumed" in ev:  # said whatever the output: where the run goes on from
                done = ev["resumed"] >= ev["steps"]
                err_console.print(f"the run had finished ({ev['steps']} steps); its result:" if done else
                                  f"resuming at step {ev['resumed']} of {ev['steps']}",
                                  markup=False)
                return
            if "eval" in ev:
                progress.update(task, note=f"val {ev['eval']['objective']:.3f}")
                if plain:  # one line per evaluation, so a redirected log shows the run moving
                    err_console.print(f"train step {ev['step']}/{ev['steps']} · loss {last_loss[0]} · "
                                      f"val {ev['eval']['objective']:.4f}", markup=False)
            else:
                last_loss[0] = f"{ev['loss']:.3f}"
                progress.update(task, total=ev["steps"], completed=ev["step"], loss=last_loss[0],
                                steps=ev["steps"])
                left = eta(ev["step"], ev["steps"])
                now = time.monotonic()
                since = now - (last_line[-1] if last_line else eta.started)
                if plain and left is not None and since >= PLAIN_EVERY_S:
                    # and a line a minute between evaluations, with the time left (evaluations apart)
                    err_console.print(f"train step {ev['step']}/{ev['steps']} · loss {last_loss[0]} · "
                                      f"about {_duration(left)} left", markup=False)
                    last_line.append(now)

        try:
            with json_warnings(as_json) as said:
                res = train(
                    mixture,
                    corpus,
                    model,
                    seed=seed,
                    tokens=tokens,
                    dense=dense,
                    out=out,
                    resume=resume,
                    updater=updater,
                    threads=threads,
                    device=device,
                    checkpoint_every=checkpoint_every,
                    on_progress=on_progress,
                )
        except KeyboardInterrupt as exc:
            if as_json:  # a wrapper reads stdout: where the run stopped, rather than nothing
                stopped = {"status": "stopped", "message": str(exc) or "interrupted"}
                if isinstance(exc, RunStopped):
                    stopped |= {"steps": exc.step, "total_steps": exc.steps,
                                "checkpoint": str(exc.checkpoint)}
                print(dumps(stopped, indent=2))
            # A second Ctrl-C (SIGTERM) stops at once (no message): the last checkpoint written is kept.
            err_console.print(f"{exc}; the same command with --resume goes on from there" if str(exc) else
                              "interrupted; if a checkpoint was written, the same command with --resume goes "
                              "on from the last one, else the same command starts over", markup=False)
            raise SystemExit(130) from None  # typer would turn KeyboardInterrupt into exit 0
    fig = load_figures(res)
    # its routing is not what went wrong in a diverged run
    collapse = _collapse(res, fig) if fig is not None and res.status != "diverged" else None
    if as_json:  # the whole log and load counts are in result.json; the load figures here
        if fig is not None:  # each domain's busiest expert share and routing entropy, as in the table
            fig = {**fig, "per_domain": res.expert_load.get("summary", {})}
        print(dumps({**{k: v for k, v in res.as_dict().items() if k not in ("log", "expert_load")},
                     "expert_load": fig, "warnings": said + ([collapse] if collapse else [])}, indent=2))
    else:
        _render_train(res)
    if collapse is not None:
        err_console.print(f"warning: {collapse}", style="yellow", markup=False)
    if res.status == "diverged":  # on stderr, so that --json's stdout stays one JSON object
        err_console.print(f"[red]diverged:[/] {escape(one_line(res.error or ''))}")
        raise SystemExit(1)


@app.command("compare")
def compare_cmd(
    mixtures: Annotated[
        list[str], typer.Argument(
            help="Mixture JSON files, uniform, natural, or weights such as code=0.5,math=0.5 (two or more).")
    ],
    corpus: CorpusOpt = "default",
    model: ModelOpt = "moe-s",
    seeds: Annotated[
        int, typer.Option("--seeds", min=1, help="Seeds per mixture (≥ 2 for standard errors).")
    ] = 3,
    tokens: TokensOpt = None,
    dense: DenseOpt = False,
    z: Annotated[
        float, typer.Option("--z", min=0.0, help="A winner must lead at the confidence of z normal standard "
                     "errors (Student's t on seeds − 1 degrees of freedom).")
    ] = 2.0,
    out: Annotated[  # str, not Path: typer reads an empty value as Path("."), the current folder
        str | None, typer.Option("--out", "-o", help="Comparison folder (default: workspace compare/).")
    ] = None,
    threads: ThreadsOpt = None,
    device: DeviceOpt = "cpu",
    target: Annotated[str | None, typer.Option(
        "--target", help="Objective of the first row: d1,d2 (mean) or d1=0.7,d2=0.3 (default: the one the "
        "mixture files were searched for, else the mean over all domains; mean: that mean).")] = None,
    metric: Annotated[
        str | None, typer.Option("--metric", help="Metric of that objective: loss or bpb.")
    ] = None,
    no_reuse: Annotated[bool, typer.Option(
        "--no-reuse", help="Train every run here, even those the workspace holds finished (another "
        "comparison's or `mixopt train`'s, with the same mixture, model, budget, corpus, seed and device).")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Train each mixture with the same budget and seeds; per-domain losses ± s.e., the winner, a PNG."""
    from mixopt.train.compare import MAX_SEEDS_NEEDED, POWER, compare, seeds_needed
    from mixopt.train.memory import keep_freed_memory

    keep_freed_memory()
    with err_console.status("") as status:

        eta = _TimeLeft()

        def on_run(label: str, seed: int, i: int, n: int) -> None:
            seconds = eta(i, n)
            left = f" · about {_duration(seconds)} left" if seconds is not None else ""
            status.update(f"run {i + 1}/{n}: {label}, seed {seed}{left}")
            if not live():  # a log file: the spinner is not drawn there
                err_console.print(f"compare run {i + 1}/{n}: {label}, seed {seed}{left}",
                                  markup=False)

        def on_reuse(label: str, seed: int, where: Path) -> None:
            err_console.print(f"compare: {label}, seed {seed} is the finished run in {where} (same mixture, "
                              "model, budget, corpus, seed and device): reused, not trained again",
                              soft_wrap=True, markup=False)

        try:
            with json_warnings(as_json) as said:
                cmp = compare(
                    mixtures,
                    corpus,
                    model,
                    seeds=seeds,
                    tokens=tokens,
                    dense=dense,
                    out=out,
                    z=z,
                    threads=threads,
                    device=device,
                    target=target,
                    metric=metric,
                    on_run=on_run,
                    on_reuse=on_reuse,
                    reuse=not no_reuse,
                )
        except KeyboardInterrupt as exc:
            err_console.print(f"{str(exc) or 'interrupted'}; run the same compare again to go on "
                              "(finished runs are kept)", markup=False)
            raise SystemExit(130) from None
    if as_json:
        print(dumps({**cmp.as_dict(), "warnings": said}, indent=2))
        return
    wins = ("wins (needs ≥ 2 seeds)" if cmp.threshold is None  # one seed: no s.e., so no winner
            else f"wins (paired t > {cmp.threshold:.3g})")
    rows = []
    for m in cmp.metrics:
        best = min(cmp.labels, key=lambda lb, m=m: cmp.mean(lb, m))
        cells = []
        for lb in cmp.labels:
            sem = cmp.sem(lb, m)
            text = f"{cmp.mean(lb, m):.4f}" + (f" ± {sem:.4f}" if sem is not None else "")
            cells.append(Text(text, style="bold") if lb == best else text)
        win = cmp.winners[m]
        rows.append([m, *cells, win if win else ("-" if cmp.threshold is None else "within error")])
    units = ("first row bits per byte, domains' loss in nats/token" if cmp.objective.metric == "bpb"
             else "validation loss (nats/token)")
    # the config's name (a TOML path given as --model names its config, as compare.json does)
    print_columns(f"{units}, mean ± s.e. over {len(cmp.seeds)} seed(s) — {cmp.settings.get('model', model)}"
                  + (" (dense twin)" if dense else ""),
                  ["metric", *cmp.labels, wins], rows, left=("metric", wins))
    if cmp.threshold is not None and len(cmp.seeds) < 4:
        console.print(f"with {len(cmp.seeds)} seeds a winner must beat the others by {cmp.threshold:.3g} "
                      "paired standard errors (Student's t): add --seeds to detect smaller differences",
                      style="dim", markup=False)
    row = cmp.objective_row
    if cmp.threshold is not None and cmp.winners[row] is None:
        need = seeds_needed({lb: cmp.values[lb][row] for lb in cmp.labels}, cmp.z)
        lead = min(cmp.labels, key=lambda lb: cmp.mean(lb, row))
        console.print(
            f"no winner on the {row}: " + (
                f"if the paired differences kept their mean and spread, about {need} seeds would show "
                f"{lead} ahead of every other with an {POWER:.0%} chance (a rough estimate from "
                f"{len(cmp.seeds)} seeds)"
                if need is not None
                else f"{lead}'s lead is too small for its spread to show even with {MAX_SEEDS_NEEDED} seeds"
            ), markup=False)
    console.print(f"plot: {cmp.png}\nruns and compare.json: {cmp.out}", markup=False)


def _gf(v: float | None, scale: float = 1e9) -> str:
    return "-" if v is None else f"{v / scale:,.1f}"


@bench_app.command("moe")
def bench_moe(
    quick: Annotated[
        bool, typer.Option("--quick", help="A small subset: E 8 and 64, k 2, 4096 tokens.")
    ] = False,
    device: Annotated[str, typer.Option("--device", help="cpu or cuda.")] = "cpu",
    dtype: Annotated[str, typer.Option("--dtype", help="fp32 or bf16.")] = "fp32",
    experts: Annotated[str | None, typer.Option("--experts", help="Expert counts E [8,32,64].")] = None,
    top_k: Annotated[str | None, typer.Option("--top-k", help="Experts per token k [1,2,8].")] = None,
    tokens: Annotated[
        str | None, typer.Option("--tokens", help="Tokens per layer call [4096,16384].")
    ] = None,
    d_model: Annotated[
        int | None, typer.Option("--d-model", min=8, help="Model width D [512; 2048 on cuda].")
    ] = None,
    hidden: Annotated[
        int | None, typer.Option("--hidden", min=8, help="Expert hidden F [256; 768 on cuda].")
    ] = None,
    rounds: Annotated[int, typer.Option("--rounds", min=1, help="Timed rounds per case (best kept).")] = 2,
    naive: Annotated[
        bool, typer.Option("--naive/--no-naive", help="Also time the loop over experts.")
    ] = True,
    triton: Annotated[
        bool | None,
        typer.Option(
            "--triton/--no-triton",
            help="Also time the gathering Triton kernels (default: on with --device cuda when triton is "
                 "installed).",
        ),
    ] = None,
    training: Annotated[
        bool,
        typer.Option("--train/--no-train", help="Also time end-to-end training of moe-s and its dense twin."),
    ] = True,
    train_model: Annotated[str, typer.Option("--model", help="Model for the training benchmark.")] = "moe-s",
    threads: ThreadsOpt = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Also write the figures as JSON here.", parser=out_file)
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """MoE layer forward+backward throughput against dense GEMM and the naive loop (ratios in one run)."""
    import torch

    from mixopt.atomic import check_writable, write_json
    from mixopt.bench import moe as bench
    from mixopt.train.memory import keep_freed_memory

    if out is not None:
        check_writable(out, example="bench-moe.json")
    bench.check_device(device, dtype)
    if training:  # a model that does not load: said now, not after minutes of layer benchmarks
        from mixopt.train.config import load_model

        load_model(train_model)
    keep_freed_memory()
    if threads:
        from mixopt.proxy.train import check_threads

        torch.set_num_threads(check_threads(threads))
    gpu = device.startswith("cuda")
    from mixopt.train.kernels import has_triton

    if triton is None:
        triton = gpu and has_triton()
    elif triton and not has_triton():
        raise MixoptError(
            "--triton needs triton; install it with `pip install 'mixopt[triton]'` (`pip install -e "
            "'.[triton]'` in a checkout) or drop --triton"
        )
    elif triton and not gpu:
        raise MixoptError("--triton times the Triton kernels on a GPU; use --device cuda or drop --triton")
    grid = (
        dict(bench.GPU_SHAPE)
        if gpu
        else {
            "d_model": 512,
            "hidden": 256,
            "experts": bench.EXPERTS,
            "top_k": bench.TOP_K,
            "tokens": bench.TOKENS,
        }
    )
    if quick:
        grid.update(bench.QUICK if not gpu else {})
    for key, text in (("experts", experts), ("top_k", top_k), ("tokens", tokens)):
        if text is not None:
            example = {"experts": "8,32,64", "top_k": "1,2,8", "tokens": "4096,16384"}[key]
            grid[key] = _int_list(text, f"--{key.replace('_', '-')}", example)
    grid["d_model"] = d_model or grid["d_model"]
    grid["hidden"] = hidden or grid["hidden"]
    cases = bench.layer_cases(**grid)
    bench.check_memory(cases, device, dtype)
    n_threads = torch.get_num_threads()
    results = []
    with console.status("") as status:
        for i, case in enumerate(cases, 1):
            status.update(f"MoE layer {i}/{len(cases)}: E={case.experts} k={case.top_k} T={case.tokens}")
            results.append(
                bench.bench_layer(case, device=device, dtype=dtype, rounds=rounds, naive=naive, triton=triton)
            )
        train_rows = []
        if training:
            from mixopt.bench.moe import bench_training

            status.update(f"end-to-end training: {train_model} and its dense twin")
            train_rows = bench_training(train_model, device=device, dtype=dtype)
    record = {
        "device": bench.device_name(device),
        "dtype": dtype,
        "threads": n_threads,
        "layers": [r.as_dict() for r in results],
        "goals": bench.goals(results, gpu_bf16=gpu and dtype == "bf16"),
        "training": [r.as_dict() for r in train_rows],
        "noisy": bench.reference_spread(results),
    }
    if out is not None:
        write_json(out, record)
    if as_json:
        print(dumps(record, indent=2))
        return
    naive = any(r.vs_naive is not None for r in results)  # --no-naive: no empty columns
    triton = any(r.triton_s is not None for r in results)
    scale, unit = (1e12, "TFLOP/s") if gpu else (1e9, "GFLOP/s")
    cols = ["E", "k", "tokens", "fused", *(["triton"] if triton else []), "dense GEMM",
            *(["naive loop"] if naive else []), "fused/dense", *(["triton/dense"] if triton else []),
            *(["fused/naive"] if naive else [])]
    rows = []
    for r in results:
        c = r.case
        rows.append([
            str(c.experts), str(c.top_k), f"{c.tokens:,}", _gf(r.flops_per_s("fused"), scale),
            *([_gf(r.flops_per_s("triton"), scale)] if triton else []), _gf(r.flops_per_s("dense"), scale),
            *([_gf(r.flops_per_s("naive"), scale)] if naive else []), f"{r.vs_dense:.2f}×",
            *([f"{r.dense_s / r.triton_s:.2f}×" if r.triton_s else "-"] if triton else []),
            *(["-" if r.vs_naive is None else f"{r.vs_naive:.2f}×"] if naive else []),
        ])
    where = f"{n_threads} threads, " if not gpu else ""
    print_columns(f"MoE layer fwd+bwd, expert-matmul {unit} — {record['device']}, {dtype}, {where}"
                  f"D={grid['d_model']} F={grid['hidden']}", cols, rows, keys=3)
    for name, g in record["goals"].items():
        mark = "[green]met[/]" if g["met"] else "[red]not met[/]"
        got = (f"{g['flops'] / 1e12:.0f} TFLOP/s" if "flops" in g
               else f"worst {g['worst']:.2f}×, mean {g['mean']:.2f}×")
        console.print(f"goal {name}: {got} — {mark}")
    if record["noisy"]:
        err_console.print(f"warning: {record['noisy']}", markup=False)
    if train_rows:
        tt = Table(title="end-to-end training (same run)")
        # With the (tied) embedding, which the model TOMLs' "non-embedding" counts leave out.
        for col in ("model", "params with embedding (active)", "tokens/s", "model TFLOP/s", "MFU"):
            tt.add_column(col, justify="right")
        for r in train_rows:
            tt.add_row(
                r.name,
                f"{r.params / 1e6:.1f}M ({r.active_params / 1e6:.1f}M)",
                f"{r.tokens_per_s:,.0f}",
                f"{r.flops_per_s / 1e12:.3f}",
                f"{r.mfu:.1%}",
            )
        console.print(tt)
        console.print(
            f"MFU is model FLOP/s ÷ {train_rows[0].peak_source} ({train_rows[0].peak / 1e9:,.1f} GFLOP/s).",
            markup=False
        )
