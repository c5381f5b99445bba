"""Options shared by several commands, declared once, and small rendering helpers."""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.text import Text

from mixopt.evaluator import MAX_SEED

# Lines in a log stay one line each (grep-able, and a path or command in them copied whole): rich
# would break them at 80 columns when the stream is not a terminal. Tables keep the width.
# No highlighting: rich coloured numbers and words mid-sentence by its own guesses (a QA pass).
console = Console(highlight=False)
console.soft_wrap = not console.is_terminal
err_console = Console(stderr=True, highlight=False)
err_console.soft_wrap = not err_console.is_terminal


# Set by a command once its work is done and saved, before it prints its result: a Ctrl-C from then
# on (while the result prints, or a local Ray shuts down) ends it with status 0, not "interrupted"
# (a CI run pressed Ctrl-C just after "written to" and got 130 for a search that had finished).
WORK_DONE = threading.Event()


def live() -> bool:
    """Whether progress is drawn (a bar, a spinner) on stderr: a terminal that animates. Elsewhere (a
    log file, a pipe, TERM=dumb, where rich draws nothing until the end) commands print a plain
    line per step instead, with or without --json (its stdout holds the JSON alone)."""
    return err_console.is_interactive

CorpusOpt = Annotated[str, typer.Option("--corpus", "-c", help="Corpus name (a recipe in corpora/) or path.")]
RungOpt = Annotated[str, typer.Option("--rung", "-r", help="Proxy rung from proxies/ (xs, s, m, ...).")]
SeedOpt = Annotated[int, typer.Option("--seed", min=0, max=MAX_SEED, help="Random seed.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")]
# Spelled out (not imported from mixopt.methods) to keep `mixopt --help` fast; a test keeps it in step.
_OWN = " Or a scikit-learn regressor as module:Class (sklearn.ensemble:RandomForestRegressor)."
METHOD_HELP = "regmix, linear, random, mixing-law, loglinear, bimix, gp, log-ridge or auto." + _OWN
SEARCH_METHOD_HELP = (METHOD_HELP.removesuffix(" or auto." + _OWN) + ", auto or entropy (with --corpus)."
                      + _OWN)

# The search space's options, as `search` and `swarm` take them (one space, one sampler).
_FLOOR_HELP = ("Floor of every weight not --fix-ed (a floor: RegMix's and Olmix's minimum instead zeroes "
               "smaller weights")
MinWeightOpt = Annotated[float, typer.Option("--min-weight", help=_FLOOR_HELP + "; with --reuse-mixture, the "
                                             "group's total is floored and its domains keep their shares of "
                                             "it).")]
# entropy's: it has no --reuse-mixture for the help to name (an audit found it named there)
PlainMinWeightOpt = Annotated[float, typer.Option("--min-weight", help=_FLOOR_HELP + ").")]
MaxWeightOpt = Annotated[list[str] | None, typer.Option("--max-weight", help="Ceiling d=x (repeat, or "
                                                        "d=x,e=y, or @FILE).")]
FixOpt = Annotated[list[str] | None, typer.Option("--fix", help="Fixed weight d=w (repeat, or d=w,e=v, or "
                                                               "@FILE).")]
def recompute_opt(doing: str) -> Any:
    """``--recompute`` as `search`, `swarm` and `fit` take it: ``doing`` is what each does with the
    domains (``to search``, ``to draw``, ``fitted``)."""
    return typer.Option("--recompute", help=f"--reuse-mixture: domains of that mixture {doing} on their own "
                        "again, a,b or @FILE; a source (dclm, for each dclm:… domain) or a pattern (dclm:s*) "
                        "names several.")


MaxEpochsOpt = Annotated[float | None, typer.Option("--max-epochs", help="Most passes over any domain at "
                                                   "--target-tokens.")]
TargetTokensOpt = Annotated[int | None, typer.Option("--target-tokens", parser=lambda t: parse_count(t),
                                                     metavar="TOKENS", help="Token budget of the final "
                                                     "training job, as --tokens counts are written (1e9, 2B) "
                                                     "(default: the corpus size, or the sum of --tokens).")]
# entropy's: a corpus alone, no --tokens
CorpusTargetTokensOpt = Annotated[int | None, typer.Option("--target-tokens", parser=lambda t: parse_count(t),
                                                           metavar="TOKENS", help="Token budget of the final "
                                                           "training job (1e9, 2B) (default: the corpus "
                                                           "size).")]


# Weight tables show the largest domains (a QA pass: `fit` printed 100 rows); the JSON has them all.
MAX_WEIGHT_ROWS = 20


def largest(weights: Mapping[str, float]) -> tuple[list[str], str | None]:
    """The domains a weight table shows, largest first, and its last row's label for the rest."""
    order = sorted(weights, key=lambda d: -weights[d])
    rest = len(order) - MAX_WEIGHT_ROWS
    return order[:MAX_WEIGHT_ROWS], (f"… {rest} more" if rest > 0 else None)


def opt(*names: str, help: str, **checks: Any) -> Any:  # noqa: A002 - typer's own keyword
    """A typer option in an ``Annotated`` hint, kept short for long option lists; ``checks`` are
    typer's own (``min=1``: a usage error naming the option)."""
    return typer.Option(*names, help=help, **checks)


@contextlib.contextmanager
def busy(text: str) -> Iterator[None]:
    """A spinner with the time elapsed on a terminal's stderr while a long step runs (a nested
    cross-validation of ``auto`` takes minutes with nothing else to show); nothing in a log."""
    if not live():
        yield
        return
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=err_console, transient=True) as bar:
        bar.add_task(text, total=None)
        yield


@contextlib.contextmanager
def json_warnings(as_json: bool) -> Iterator[list[str]]:
    """With --json, mixopt's warnings said inside are also kept, each once, for the document's
    "warnings" key (scripts read them there); each is still shown on stderr as it comes, not when
    the block ends (a training run's warning would wait hours). Without --json, an empty list."""
    said: list[str] = []
    if not as_json:
        yield said
        return
    import warnings

    from mixopt.errors import MixoptWarning

    with warnings.catch_warnings():
        warnings.filterwarnings("always", category=MixoptWarning)  # once per message, not per place
        show = warnings.showwarning

        def tee(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001, ANN202
            if issubclass(category, MixoptWarning) and str(message) not in said:
                said.append(str(message))
            show(message, category, filename, lineno, file, line)

        warnings.showwarning = tee
        yield said


def _usage_error(check: Callable[[], Any]) -> Any:
    """``check()``, its MixoptError as typer's usage error (click's message names the option)."""
    from mixopt.errors import MixoptError

    try:
        return check()
    except MixoptError as exc:
        raise typer.BadParameter(str(exc)) from None


def out_file(value: str) -> Path:
    """typer's ``parser`` of an ``--out`` file option: the text as typed (see ``output_path``)."""
    from mixopt.atomic import output_path

    return _usage_error(lambda: output_path(value, what=""))


def in_path(value: str) -> Path:
    """typer's ``parser`` of an input file or folder option (``--ratios``, ``--from``, ``--data``):
    ``''`` (a variable left unset) is refused as typed; ``Path`` makes it ``.``, and the error then
    named the current folder."""
    from mixopt.errors import refuse_blank

    _usage_error(lambda: refuse_blank(value, "the path", "give one"))
    return Path(value)


def out_folder(value: str) -> Path:
    """typer's ``parser`` of an output folder option (``--report``, ``--exports``): ``''`` is refused
    as typed (``Path`` makes it ``.``, the current folder, which such a folder would replace)."""
    from mixopt.atomic import refuse_odd_name

    _usage_error(lambda: refuse_odd_name(value, what=""))
    return Path(value)


def assignments(values: list[str] | None, option: str) -> dict[str, float]:
    """``--fix a=0.2 --fix b=0.1`` or ``--fix a=0.2,b=0.1`` (repeatable options) as one dict.

    Raises:
        MixoptError: a malformed pair, or a domain given twice.
    """
    from mixopt.search.config import at_file, parse_assignments

    # One list of pairs: parse_assignments refuses a domain given twice with two values; each value
    # may be @FILE (a file of the pairs)
    if not values:
        return {}
    return parse_assignments(",".join(at_file(v, option) or "" for v in values), option=option, files=False)


def render_selection(rows: list[dict[str, Any]]) -> None:
    """``auto``'s table: every candidate's cross-validation, the chosen one ticked; the candidates
    that could not be cross-validated are listed below it with why."""
    from rich import box
    from rich.table import Table

    k = next((r["folds"] for r in rows if r.get("folds")), None)
    chosen = next((r["name"] for r in rows if r.get("chosen")), None)
    # No vertical rules and short headings: the table fits an 80-column terminal whole.
    t = Table(title=f"auto's choice of model: its own {k or 'K'}-fold cross-validation of every candidate",
              caption="fit s: seconds to cross-validate the candidate", box=box.SIMPLE_HEAD)
    for col in ("fitter", "Spearman", "Pearson", "MAE", "rel. err", "fit s", "chosen"):
        # a long ensemble name wraps at its commas; figures are never cut
        t.add_column(col, justify="left" if col == "fitter" else "right", no_wrap=col != "fitter")
    failed = []
    for r in rows:
        if r.get("error"):
            t.add_row(Text(r["name"]), "-", "-", "-", "-", f"{r['seconds']:.1f}", "[dim]no[/]")
            failed.append(r)
            continue
        name = r["name"] + (" (per metric)" if r.get("per_metric") else "")
        t.add_row(Text(name), f"{r['spearman']:.4f}", f"{r['pearson']:.4f}", f"{r['mae']:.4g}",
                  f"{r['rel_error']:.3%}", f"{r['seconds']:.1f}", "✓" if r.get("chosen") else "")
    console.print(t)
    for r in failed:
        console.print(f"  {r['name']} could not be cross-validated: {r['error']}", style="dim",
                      soft_wrap=False, markup=False)
    if chosen:
        console.print(f"auto chose [bold]{chosen}[/]: the best Spearman of its cross-validation")


def goal_table(title: str, rows: list[dict[str, Any]]) -> None:
    """A benchmark's figures against its goals (``bench fit``, ``bench search``): met yes / no, or
    - for a figure without a goal."""
    from rich.table import Table

    t = Table(title=title)
    for col in ("figure", "measured", "goal", "met"):
        t.add_column(col)
    for row in rows:
        met = row.get("met")
        t.add_row(row["name"], row["value"], row["goal"], "-" if met is None else ("yes" if met else "no"))
    console.print(t)


def parse_count(text: str, what: str = "tokens", *, least: int = 1, most: int | None = None) -> int:
    """A count as people write it: 200000, 200_000, 2e5, 200k, 5M, 1.5G (a whole number ≥ ``least``,
    and at most ``most``); ``what`` names the unit in errors (tokens: the ``--tokens`` options' parser)."""
    from mixopt.search.config import MAX_COUNT, scaled_number

    # a comma separates thousands (1,000,000), and only them: 1,5B (a decimal comma) had read as 15B
    thousands = r"\s*[+-]?\d{1,3}(,\d{3})+(\.\d*)?([eE][+-]?\d+)?\s*[kKmMgGbB]?\s*"
    if "," in str(text) and not re.fullmatch(thousands, str(text)):
        raise typer.BadParameter(f"{text!r}: a comma in a count separates thousands: group the digits in "
                                 "threes (1,000,000), or write a decimal with a point (1.5B)")
    try:  # decimal, not float: 2.01M is 2,010,000 exactly
        value = scaled_number(str(text).replace(",", ""))
    except ValueError:
        example = "32, 1e3 or 1k" if what == "runs" else "200000, 2e5 or 200k"
        raise typer.BadParameter(f"{text!r} is not a count of {what}; write e.g. {example}") from None
    if not value.is_finite() or value < least or value != value.to_integral_value():
        raise typer.BadParameter(f"{text!r} is not a whole number of {what} ≥ {least}")
    if most is not None and value > most:  # 1e15 and 1e20 alike (they had been told apart)
        raise typer.BadParameter(f"{text!r} is more than {most:,} {what}; give at most {most:,}")
    if value > MAX_COUNT:  # 1e30 would start a run of 10^26 steps; 1e400 overflowed a float
        why = " (the largest pre-training runs are ~4e13)" if what == "tokens" else ""
        raise typer.BadParameter(f"{text!r} is more than {MAX_COUNT:.0e} {what}{why}; check the exponent")
    return int(value)


def parse_budget(text: str) -> int:
    """``--budget``: 32, 1e3 or 1k (a QA pass: typer refused 1e3 as no integer); 0 is the search's to
    judge (entropy trains no runs)."""
    from mixopt.search.config import MAX_BUDGET

    return parse_count(text, "runs", least=0, most=MAX_BUDGET)


MAX_CANDIDATES = 10**9  # hours on 2 cores already; RegMix scores 1M


def parse_candidates(text: str) -> int:
    """``fit --candidates``: 100000, 1e5 or 100k, as ``--tokens`` takes counts."""
    n = parse_count(text, "candidates")
    if n > MAX_CANDIDATES:  # 1e12 would score for weeks
        raise typer.BadParameter(f"{text!r} is more than {MAX_CANDIDATES:.0e} candidates, which take hours "
                                 "to score; RegMix scores 1M (--candidates 1M), and more rarely changes the "
                                 "proposal")
    return n


# Past this many rows a table is printed as plain aligned columns: rich lays out a table at about
# 1 ms a row (a listing of 40,000 runs took 44 s of its 51 in rich's rendering).
PLAIN_ROWS = 2000


def _print_plain(title: str, heads: list[str], rows: list[list[str]], widths: list[int],
                 left: list[bool]) -> None:
    """A table as aligned text: the title, the headers, a rule, a line per row (cells whole)."""
    from rich.cells import cell_len

    widths = [max(w, cell_len(h)) for w, h in zip(widths, heads, strict=True)]

    def line(cells: list[str]) -> str:  # padded by cells on screen: 数据 takes four
        pads = [" " * (w - cell_len(c)) for c, w in zip(cells, widths, strict=True)]
        return "  ".join(c + pad if lf else pad + c
                         for c, pad, lf in zip(cells, pads, left, strict=True)).rstrip()

    text = [title, line(heads), "  ".join("─" * w for w in widths), *(line(r) for r in rows)]
    console.print("\n".join(text), markup=False, highlight=False, soft_wrap=True)


def print_columns(
    title: str, columns: list[str], rows: Sequence[Sequence[str | Text]], *, keys: int = 1,
    left: tuple[str, ...] = (),
) -> None:
    """Print a table of short cells whole: split into several tables when the terminal is too narrow.

    Rich would squeeze every column of a wide table into an 80-column terminal and cut the numbers
    ("0.20…"). Here no cell is cut: the columns are laid out in as many tables as the width needs,
    the first ``keys`` columns (the row names) repeated in each.

    Args:
        title: the first table's title (the others say "continued"), plain text as the cells are.
        columns: headers, plain text; a header wraps at its spaces, a cell never does.
        rows: one list of cells per row, as long as ``columns``: plain text (a domain named
            ``[bold]x`` is shown as it is; markup had crashed the table), or a rich ``Text`` for a
            styled cell.
        keys: how many leading columns name the row.
        left: columns justified left (the others right).

    More than :data:`PLAIN_ROWS` rows are printed as plain aligned columns, in the same groups.
    """
    from rich.cells import cell_len
    from rich.table import Table

    # each column's widest cell, measured once (a 20,000-run listing had measured every cell 31 times)
    cell_w = [max((c.cell_len if isinstance(c := r[i], Text) else cell_len(c) for r in rows), default=0)
              for i in range(len(columns))]

    def width(i: int, wrap: bool = True) -> int:  # a column's whole width, plus border and padding
        head = max((len(w) for w in columns[i].split()), default=0) if wrap else len(columns[i])
        return max(head, cell_w[i]) + 3

    budget = console.width - 1
    # Row names fold to at most half the width: a 70-character domain name in an 80-column log had
    # squeezed every weight to "0.…" (a QA pass). Not narrower for a column wider than the rest of
    # the width (a licence's text): that one folds instead (the review).
    key_w = {i: width(i) for i in range(keys)}
    room = budget // 2
    while keys and sum(key_w.values()) > room:
        widest = max(key_w, key=key_w.__getitem__)
        if key_w[widest] <= 12:  # no narrower: a terminal this narrow folds the figures instead
            break
        key_w[widest] = max(12, key_w[widest] - (sum(key_w.values()) - room))
    fixed = sum(key_w.values())
    groups: list[list[int]] = [[]]
    used = fixed
    for i in range(keys, len(columns)):
        if groups[-1] and used + width(i) > budget:
            groups.append([])
            used = fixed
        groups[-1].append(i)
        used += width(i)
    for n, group in enumerate(groups):
        cols = [*range(keys), *group]
        name = title if n == 0 else f"{title} (continued)"
        if len(rows) > PLAIN_ROWS:
            _print_plain(name, [columns[i] for i in cols], [[str(r[i]) for i in cols] for r in rows],
                         [cell_w[i] for i in cols], [columns[i] in left for i in cols])
            continue
        t = Table(title=Text(name))  # plain text: a store path /tmp/a[x] is no markup
        wrap = fixed + sum(width(i, wrap=False) for i in group) > budget  # headers on one line where they fit
        for i in cols:
            # a fixed width: rich would widen a column whose header could be longer, past the budget
            # a row name wider than its room folds rather than lose its distinguishing end
            # (never under 8: a terminal narrower than the row names still gets its figures)
            w = min(key_w[i], width(i, wrap)) if i < keys else min(width(i, wrap), max(budget - fixed, 8))
            t.add_column(Text(columns[i]), justify="left" if columns[i] in left else "right", width=w - 3,
                         overflow="fold" if i < keys or w < width(i, wrap) else "ellipsis")
        for r in rows:  # a str as plain text: a domain named y[/] is not a closing tag
            t.add_row(*(c if isinstance(c := r[i], Text) else Text(c) for i in cols))
        console.print(t)


def dumps(obj: Any, **kw: Any) -> str:
    """JSON for ``--json``: NaN and ±inf (a fold with a constant prediction) become null.

    ``json.dumps`` writes them as bare ``NaN``, which strict parsers (jq, JavaScript) refuse.
    """
    import json

    from mixopt.errors import finite_json

    return json.dumps(finite_json(obj), **{**kw, "allow_nan": False})
