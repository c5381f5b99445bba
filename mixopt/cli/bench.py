"""``mixopt bench``: benchmarks that print their figures (never timed tests).

Each benchmark reports speeds as ratios measured in the same run (against this machine's own
GEMM, a baseline implementation, ...), because the machines are shared and noisy. Commands are
added to :data:`bench_app` by the verb modules that own each benchmark.
"""

from __future__ import annotations

import typer

from mixopt.cli import app

bench_app = typer.Typer(
    help="Benchmarks: print measured figures (ratios within one run).", no_args_is_help=True
)
app.add_typer(bench_app, name="bench")
