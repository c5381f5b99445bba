"""``mixopt proxy``: train one proxy on a mixture, list the rung ladder; ``mixopt bench proxy``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from mixopt.cli import app
from mixopt.cli.bench import bench_app
from mixopt.cli.common import (
    CorpusOpt,
    JsonOpt,
    RungOpt,
    SeedOpt,
    console,
    dumps,
    json_warnings,
    out_file,
    parse_count,
)
from mixopt.errors import one_line

proxy_app = typer.Typer(
    help="Proxy models: train one on a mixture, list the rung ladder.", no_args_is_help=True
)
app.add_typer(proxy_app, name="proxy")

ThreadsOpt = Annotated[
    int | None,
    typer.Option("--threads", "-t", min=1, help="Torch threads (default: OMP_NUM_THREADS or all cores)."),
]


def _result_table(job, seed: int) -> Table:  # noqa: ANN001 (ProxyJob)
    res = job.result
    t = Table(
        title=f"proxy {job.record['rung']['name']} on {job.record['corpus']['name']} "
        f"(seed {seed}, {res.train_tokens:,} tokens)"
    )
    t.add_column("domain", no_wrap=True)
    # A schedule's phases are what the sampler followed: its mean over training is what was trained
    # (the epochs column), not the mixture's top-level weights.
    weights = job.mixture.mean_weights()
    for col in ("weight (schedule mean)" if job.mixture.schedule else "weight", "epochs", "loss (nats/tok)",
                "bpb"):
        t.add_column(col, justify="right")
    for d in (k.removeprefix("loss/") for k in res.metrics if k.startswith("loss/")):
        t.add_row(
            d,
            f"{weights.get(d, 0.0):.4f}",
            f"{res.epochs.get(d, 0.0):.3g}",
            f"{res.metrics[f'loss/{d}']:.4f}",
            f"{res.metrics[f'bpb/{d}']:.4f}",
        )
    t.add_section()
    t.add_row(
        "mean (objective)",
        "",
        "",
        f"{res.metrics['objective']:.4f}",
        f"{res.metrics['objective_bpb']:.4f}",
        style="bold",
    )
    return t


@proxy_app.command("train")
def train(
    corpus: CorpusOpt = "default",
    rung: RungOpt = "s",
    mixture: Annotated[
        str,
        typer.Option("--mixture", "-m", help="natural, uniform, a mixture JSON file, or domain=weight,..."),
    ] = "natural",
    seed: SeedOpt = 0,
    threads: ThreadsOpt = None,
    tokens: Annotated[
        int | None,
        typer.Option("--tokens", parser=parse_count, metavar="TOKENS",
                     help="Override the rung's token budget (2e5, 5M)."),
    ] = None,
    max_epochs: Annotated[
        float | None,
        typer.Option("--max-epochs", min=0.0, help="Warn above this many epochs of a domain [4]."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Result JSON (default: in the workspace, runs/proxy/).",
                                   parser=out_file)
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Train one proxy on a mixture; print per-domain loss and bits per byte; write a result JSON.

    Exit code 0 when the run finished, 1 when it diverged (the JSON is written either way), 2 on bad input.
    """
    from mixopt.proxy.job import run_proxy_job

    with json_warnings(as_json) as said:  # in the document too, as every other --json command has them
        job = run_proxy_job(
            corpus=corpus,
            rung=rung,
            mixture=mixture,
            seed=seed,
            threads=threads,
            tokens=tokens,
            max_epochs=max_epochs,
            out=out,
        )
    res = job.result
    if as_json:
        print(dumps({**job.record, "warnings": said}))
    else:
        if res.status == "ok":
            console.print(_result_table(job, seed), markup=False)
        console.print(
            f"status {res.status}; {res.cost:.1f} s ({res.train_seconds:.1f} s training at "
            f"{res.tokens_per_s:,.0f} tokens/s, {res.eval_seconds:.1f} s evaluating); result: {job.out}",
            markup=False
        )
    if res.status != "ok":
        print(one_line(f"{res.status}: {res.error}"), file=sys.stderr)
        raise SystemExit(1)


@proxy_app.command("rungs")
def rungs(
    vocab: Annotated[
        int, typer.Option("--vocab", min=2, max=65536, help="Vocabulary size for the embedding and FLOPs "
                          "(at most 65536, as a corpus's tokenizer).")
    ] = 8192,
    as_json: JsonOpt = False,
) -> None:
    """List the proxy ladder (proxies/*.toml): shape, budget, parameters, FLOPs and measured cost."""
    from mixopt.proxy.rungs import ladder

    rows = []
    for r in ladder():
        cfg = r.model_config(vocab)
        rows.append(
            {
                **r.as_dict(),
                "steps": r.steps,
                "non_embedding_params": cfg.non_embedding_params(),
                "embedding_params": vocab * r.d_model,
                "train_flops": r.train_flops(vocab),
            }
        )
    if as_json:
        print(dumps(rows))
        return
    t = Table(title=f"proxy ladder (vocabulary {vocab}; L layers, d width, H heads, T context, B batch)")
    for col in ("rung", "L×d/H", "T×B", "tokens", "steps", "params", "FLOPs", "cost"):
        t.add_column(col, justify="left" if col == "rung" else "right", no_wrap=True)
    for r in rows:
        cost = f"{r['cost_seconds']:.0f}s/{r['cost_threads']}t" if r["cost_seconds"] else "-"
        t.add_row(
            r["name"],
            f"{r['n_layer']}×{r['d_model']}/{r['n_head']}",
            f"{r['context']}×{r['batch']}",
            f"{r['tokens'] / 1e6:.2f}M",
            f"{r['steps']:,}",
            f"{r['non_embedding_params'] / 1e6:.2f}M",
            f"{r['train_flops']:.1e}",
            cost,
        )
    console.print(t)
    console.print(
        "params: non-embedding; FLOPs: training FLOPs of one run; cost: measured seconds / threads."
    )


@bench_app.command("proxy")
def bench_proxy(
    rungs: Annotated[str, typer.Option("--rungs", help="Comma-separated rungs.")] = "xs,s,m",
    threads: Annotated[int | None, typer.Option("--threads", "-t", min=1, help="Torch threads (default: 2, "
                                                "or 1 on a one-CPU machine).")] = None,
    corpus: Annotated[
        str | None, typer.Option("--corpus", "-c", help="A built corpus (default: synthetic random tokens).")
    ] = None,
    seconds: Annotated[
        float, typer.Option("--seconds", min=0.5, max=3600,
                            help="Timed training seconds per rung (at most an hour: inf had run forever).")
    ] = 8.0,
    compare_plain: Annotated[
        bool, typer.Option("--compare-plain", help="Also time the plain PyTorch model (no fused functions).")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Tokens/s, peak memory, parameters and MFU of each rung (MFU against this run's own fp32 matmul)."""
    from mixopt.bench.proxy import bench_proxy as run_bench
    from mixopt.cpus import usable_cpus
    from mixopt.errors import MixoptError

    names = [r.strip() for r in rungs.split(",") if r.strip()]
    if not names:
        raise MixoptError("--rungs is empty; give rungs such as xs,s,m (`mixopt proxy rungs` lists them)")
    if threads is None:  # two, as the README's figures were measured, where the machine has them
        threads = min(2, usable_cpus())
    results = run_bench(names, threads=threads, corpus=corpus, seconds=seconds, compare_plain=compare_plain)
    if as_json:
        print(dumps([r.as_dict() for r in results]))
        return
    t = Table(
        title=f"proxy training benchmark ({threads} thread{'s' if threads > 1 else ''}, "
        f"{results[0].data if results else ''} data)"
    )
    for col in ("rung", "impl", "params", "tok/step", "tok/s", "GFLOP/s", "MFU", "MFU6N", "RSS MB"):
        t.add_column(col, justify="left" if col in ("rung", "impl") else "right", no_wrap=True)
    for r in results:
        t.add_row(
            r.rung,
            r.impl,
            f"{r.non_embedding_params / 1e6:.2f}M",
            f"{r.tokens_per_step:,}",
            f"{r.tokens_per_s:,.0f}",
            f"{r.matmul_flops / 1e9:.0f}",
            f"{100 * r.mfu:.0f}%",
            f"{100 * r.mfu_6n:.0f}%",
            f"{r.peak_rss_mb:.0f}",
        )
    console.print(t)
    console.print(
        "MFU = (6·N_matmul + 12·n_layer·d_model·context) × tokens/s ÷ fp32 torch.mm FLOP/s measured "
        "in the same process with the same threads; MFU6N leaves out attention; params: non-embedding."
    )
