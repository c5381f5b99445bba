"""Options shared by several commands, declared once, and small rendering helpers."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

console = Console()
err_console = Console(stderr=True)

CorpusOpt = Annotated[str, typer.Option("--corpus", "-c", help="Corpus name (a recipe in corpora/) or path.")]
RungOpt = Annotated[str, typer.Option("--rung", "-r", help="Proxy rung from proxies/ (xs, s, m, ...).")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")]
