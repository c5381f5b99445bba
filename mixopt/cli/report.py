"""``mixopt report NAME``: plots (CV predicted vs measured, weights vs baselines, runs) and a summary."""

from __future__ import annotations

from typing import Annotated

import typer

from mixopt.cli import app
from mixopt.cli.common import JsonOpt, console, dumps


@app.command("report")
def report(
    name: Annotated[str, typer.Argument(help="Search name (see `mixopt runs searches`).")],
    folds: Annotated[int, typer.Option("--folds", min=3, help="Cross-validation folds (more than the runs: "
                                       "leave-one-out).")] = 5,
    store: Annotated[str | None, typer.Option("--store", help="Run store file (default: workspace).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Write PNG plots and report.md for a search into its folder in the workspace."""
    from mixopt.report import make_report

    rep = make_report(name, store=store, folds=folds)
    if as_json:
        files = [str(f) for f in rep.files]
        print(dumps({"search": rep.search_id, "folder": str(rep.folder), "files": files, "cv": rep.cv,
                          "cv_notes": rep.cv_notes}, indent=2))
        return
    console.print(f"report of search {rep.search_id} in {rep.folder}:", markup=False)
    for f in rep.files:
        console.print(f"  {f.name}", markup=False)
    if rep.cv is not None:
        console.print("cross-validation: " + ", ".join(f"{k} {v:.4f}" for k, v in rep.cv.items()),
                      markup=False)
    for note in rep.cv_notes:
        console.print(f"  {note}", markup=False)
