"""Options shared by several commands, declared once, and small rendering helpers."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console

console = Console()
err_console = Console(stderr=True)

CorpusOpt = Annotated[str, typer.Option("--corpus", "-c", help="Corpus name (a recipe in corpora/) or path.")]
RungOpt = Annotated[str, typer.Option("--rung", "-r", help="Proxy rung from proxies/ (xs, s, m, ...).")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")]
# Spelled out (not imported from mixopt.methods) to keep `mixopt --help` fast; a test keeps it in step.
METHOD_HELP = "regmix, linear, random, mixing-law, loglinear, bimix, gp, log-ridge or auto."


def opt(*names: str, help: str) -> Any:  # noqa: A002 - typer's own keyword
    """A typer option in an ``Annotated`` hint, kept short for long option lists."""
    return typer.Option(*names, help=help)
