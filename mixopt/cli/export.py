"""``mixopt export``: write a mixture JSON as a Megatron blend, HF probabilities, Olmix or RegMix YAML."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mixopt.cli import app
from mixopt.cli.common import err_console, out_file


@app.command("export")
def export(
    mixture: Annotated[str, typer.Argument(help="Mixture JSON (mixopt.mixture/v1).")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="megatron (--data-path weight/prefix "
                                       "pairs), hf (JSON of datasets and probabilities for "
                                       "interleave_datasets), olmix ([{domain, weight}]), olmix-mix (a "
                                       "launch config's mix: section) or yaml (RegMix's train:/valid:).")],
    prefix: Annotated[list[str] | None, typer.Option("--prefix", help="Name or path of a domain in the "
                                                     "training job, domain=path (repeatable, or "
                                                     "a=/x,b=/y, or @FILE of them, one per line).")] = None,
    valid: Annotated[list[str] | None, typer.Option(
        "--valid", help="yaml: a validation set of RegMix's valid: section, name=weight (repeatable; "
        "default: the objective's domains).")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write here instead of stdout.",
                                                           parser=out_file)] = None,
) -> None:
    """Write a mixture in the form a training job reads."""
    from mixopt.atomic import check_writable, write_text
    from mixopt.cli.common import assignments
    from mixopt.export import export_mixture, export_notes, parse_prefixes
    from mixopt.mixture import Mixture

    if out is not None:
        named = {"megatron": "blend.txt", "hf": "hf.json", "olmix": "olmix.json", "olmix-mix": "mix.yaml"}
        check_writable(out, inputs={"mixture": mixture}, example=named.get(fmt, "mixture.yaml"))
    mix = Mixture.load(mixture)
    valid_sets = assignments(valid, "--valid")
    from mixopt.search.config import at_file

    # @FILE as --tokens and --fix take it (a QA pass pasted 64 prefixes into one argument)
    prefixes = parse_prefixes([at_file(p, "--prefix") or "" for p in prefix or []], list(mix.weights))
    text = export_mixture(mix, fmt, prefixes, valid_sets)
    if out is None:
        _check_printable(text)
    for note in export_notes(mix, fmt, valid_sets, prefixes):
        err_console.print(f"note: {note}", markup=False)
    if out is None:
        typer.echo(text, nl=False)
    else:
        write_text(out, text)
        err_console.print(f"wrote {out}", markup=False)


def _check_printable(text: str) -> None:
    """Refuse to print an export the terminal's encoding cannot say: under a locale that is not UTF-8
    its unsayable characters would come out as "?", a blend naming domains that do not exist."""
    import sys

    from mixopt.errors import MixoptError

    encoding = getattr(sys.stdout, "encoding", None) or "utf-8"
    try:
        text.encode(encoding)
    except UnicodeEncodeError as exc:
        raise MixoptError(f"the export holds {exc.object[exc.start:exc.end]!r}, which this locale's encoding "
                          f"({encoding}) cannot print; write it to a file with --out (UTF-8), or run under a "
                          "UTF-8 locale (LANG=C.UTF-8)") from None
    except LookupError:
        return
