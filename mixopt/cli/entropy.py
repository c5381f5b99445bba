"""``mixopt entropy``: BiMix's training-free mixture from each domain's conditional entropy."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from mixopt.cli import app
from mixopt.cli.common import (
    CorpusTargetTokensOpt,
    FixOpt,
    JsonOpt,
    MaxEpochsOpt,
    MaxWeightOpt,
    PlainMinWeightOpt,
    assignments,
    console,
    dumps,
    json_warnings,
    largest,
    out_file,
)
from mixopt.errors import MixoptError


@app.command("entropy")
def entropy(
    corpus: Annotated[str, typer.Argument(help="Built corpus name or folder.")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write the mixture JSON here.",
                                              parser=out_file)] = None,
    normalize: Annotated[
        str, typer.Option("--normalize", help="softmax (BiMix) or proportional.")
    ] = "softmax",
    temperature: Annotated[
        float | None, typer.Option("--temperature", help="Softmax temperature [1].")
    ] = None,
    min_weight: PlainMinWeightOpt = 0.0,
    max_weight: MaxWeightOpt = None,
    fix: FixOpt = None,
    max_epochs: MaxEpochsOpt = None,
    target_tokens: CorpusTargetTokensOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Mixture weights from each domain's conditional entropy (smoothed token bigram model); no proxy runs."""
    if temperature is not None and normalize == "proportional":
        raise MixoptError("--temperature is the softmax's; --normalize proportional does not use it (drop "
                          "one of them)")
    from mixopt.entropy import propose_entropy

    with json_warnings(as_json) as said:
        em = propose_entropy(
            corpus,
            out=out,
            normalize=normalize,
            temperature=1.0 if temperature is None else temperature,
            min_weight=min_weight,
            ceilings=assignments(max_weight, "--max-weight"),
            fixed=assignments(fix, "--fix"),
            max_epochs=max_epochs,
            target_tokens=target_tokens,
        )
    if as_json:
        print(dumps({**em.as_dict(), "warnings": said}))
        return
    _render(em, out)


def _render(em, out: Path | None) -> None:  # noqa: ANN001
    t = Table(title=f"entropy mixture ({em.estimator})")
    for col in ("domain", "H (nats/token)", "weight"):
        t.add_column(col, justify="left" if col == "domain" else "right")
    shown, more = largest(em.weights)
    for d in shown:
        t.add_row(Text(d), f"{em.entropy[d]:.3f}", f"{em.weights[d]:.4f}")
    if more:
        t.add_row(more, "", "")
    console.print(t)
    if em.projected:
        console.print("the raw weights broke the bounds and were projected into the space")
    if out is not None:
        console.print(f"wrote {out}", markup=False)
