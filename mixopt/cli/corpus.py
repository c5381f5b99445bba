"""``mixopt corpus``: build a corpus from a recipe, add your own data, and inspect what is built."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from mixopt.cli import app
from mixopt.cli.common import JsonOpt, SeedOpt, console, dumps, in_path, json_warnings, print_columns

corpus_app = typer.Typer(
    help="Corpora: build one from a recipe in corpora/, add your own data, list and inspect what is built.",
    no_args_is_help=True,
)
app.add_typer(corpus_app, name="corpus")

NameArg = Annotated[str, typer.Argument(help="Corpus name: a recipe in corpora/, or a .toml path.")]
NewNameArg = Annotated[str, typer.Argument(help="Name of the corpus to build from your data.")]
BuiltArg = Annotated[str, typer.Argument(help="Name of a built corpus (or its folder).")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Rebuild even if up to date.")]
AddForceOpt = Annotated[bool, typer.Option("--force", help="Rebuild even if up to date, and replace a corpus "
                                          "of that name built from other data.")]


def _print_table(s: dict[str, Any]) -> None:
    # Compact cells so the licence column fits in 80 columns (a pipe or CI log); a narrower terminal
    # gets the columns in several tables, never a figure cut (a QA pass at 50 columns: "7.2…").
    def row(r: dict[str, Any], name: str, licence: str) -> list[str]:
        return [name, f"{r['train_documents']:,} +{r['val_documents']:,}", f"{r['train_tokens'] / 1e6:.2f}M",
                f"{r['val_tokens'] / 1e3:.0f}k", f"{r['mb']:.1f}", f"{r['bytes_per_token']:.2f}", licence]

    # str(): a manifest written before licences were checked
    rows: list[list[str | Text]] = [row(r, r["domain"], str(r["licence"])) for r in s["domains"]]
    rows.append([Text("total", style="bold"), *row(s["total"], "total", "")[1:]])
    print_columns(f"corpus {s['name']}  (vocab {s['vocab_size']}, hash {s['hash'][:12]})",
                  ["domain", "docs (+val)", "tokens", "val tok", "MB", "B/tok", "licence"], rows,
                  left=("domain", "licence"))


def _show(s: dict[str, Any], as_json: bool, note: str, said: list[str] | None = None) -> None:
    if as_json:
        print(dumps(s if said is None else {**s, "warnings": said}))
        return
    _print_table(s)
    if s.get("skipped_domains"):
        skipped = ", ".join(f"{d} ({why})" for d, why in s["skipped_domains"].items())
        console.print(f"[yellow]skipped domains:[/] {escape(skipped)}")
    console.print(note, markup=False)


def _warn_unusable_domains(corpus: Any) -> None:
    """Name the domains no proxy rung can draw one window from: a search must leave them out (and a
    corpus of one domain, which no mixture command can use)."""

    from mixopt.errors import MixoptWarning, warn
    from mixopt.proxy.rungs import ladder
    from mixopt.proxy.sampler import short_domains

    if len(corpus.domains) < 2:
        warn(f"corpus {corpus.name} has one domain ({', '.join(corpus.domains)}): there is nothing "
             "to mix, and search, entropy and compare need 2 or more; add a domain",
             MixoptWarning)

    rungs = ladder()
    if not rungs:
        return
    context = min(r.context for r in rungs)
    short = short_domains(corpus.train_tokens(), context)
    if short:
        names = ", ".join(f"{d} ({n} tokens)" for d, n in short.items())
        fix = " ".join(f"--fix {d}=0" for d in short)
        warn(f"domain(s) {names} have fewer training tokens than one window of the shortest "
             f"proxy rung (context + 1 = {context + 1}): a search on this corpus must leave them "
             f"out ({fix}), or add text to them", MixoptWarning)
    # A validation split of a few hundred tokens (64 documents of 20 characters) scores every search
    # on that little text, without a word (a QA pass): said when it is under what the proxies score.
    scored = min(r.eval_tokens for r in rungs)
    val = {d: int(m["val_tokens"]) for d, m in corpus.manifest["domains"].items()}
    thin = {d: n for d, n in val.items() if n < scored and d not in short}
    if thin:
        names = ", ".join(f"{d} ({n} tokens)" for d, n in thin.items())
        warn(f"domain(s) {names} have fewer validation tokens than the proxies score per domain "
             f"({scored}): their loss is measured on that little text and is noisy; raise val_documents "
             "(--val-documents for corpus add), or add text to them", MixoptWarning)


@corpus_app.command("build")
def build(name: NameArg = "default", force: ForceOpt = False, as_json: JsonOpt = False) -> None:
    """Fetch a recipe's sources (cached), extract, deduplicate, split, tokenize and write shards."""
    from mixopt.corpus import Corpus
    from mixopt.corpus.assemble import build_recipe
    from mixopt.corpus.catalog import summary

    with json_warnings(as_json) as said, _steps_said():
        out = build_recipe(name, force=force)
        with _built(out.path):
            _warn_unusable_domains(Corpus(out.path))
    with _built(out.path):
        s = summary(Corpus(out.path))
        s["up_to_date"] = out.up_to_date
        if out.up_to_date:
            note = (f"corpus {s['name']!r} is up to date (hash {s['hash'][:12]}); nothing to do. "
                    "--force rebuilds.")
        else:
            note = f"built corpus {s['name']!r} in {out.seconds:.0f} s at {out.path}"
        _show(s, as_json, note, said)


@corpus_app.command("add")
def add(
    name: NewNameArg,
    source: Annotated[Path, typer.Option("--from", help="File or folder with your data.", parser=in_path)],
    fmt: Annotated[
        str, typer.Option("--format", help="auto, jsonl, parquet, csv, text (one folder per domain), hf.")
    ] = "auto",
    domain_column: Annotated[
        str, typer.Option("--domain-column", help="Column naming each row's domain.")
    ] = "domain",
    text_column: Annotated[str, typer.Option("--text-column", help="Column holding the text.")] = "text",
    vocab_size: Annotated[int, typer.Option("--vocab-size", help="BPE vocabulary size.")] = 8192,
    val_documents: Annotated[
        int, typer.Option("--val-documents", help="Validation documents per domain.")
    ] = 64,
    licence: Annotated[str, typer.Option("--licence", help="Licence recorded for every domain.")] = "unknown",
    on_decode_error: Annotated[
        str,
        typer.Option(
            "--on-decode-error",
            help="Input that is not UTF-8: error (name the file), skip (leave out the text file or jsonl "
            "line), replace (U+FFFD for the bad bytes). Skipped and replaced input is counted and said.",
        ),
    ] = "error",
    seed: SeedOpt = 0,
    force: AddForceOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Build a corpus from your own data: jsonl, parquet, csv, text folders or a saved HF dataset."""
    from mixopt.corpus import Corpus
    from mixopt.corpus.catalog import summary
    from mixopt.corpus.ingest import AddOptions, add_corpus
    from mixopt.corpus.shards import corpus_dir

    opts = AddOptions(
        format=fmt,
        domain_column=domain_column,
        text_column=text_column,
        vocab_size=vocab_size,
        val_documents=val_documents,
        seed=seed,
        licence=licence,
        on_decode_error=on_decode_error,  # type: ignore[arg-type]  # checked by AddOptions
    )
    with json_warnings(as_json) as said, _steps_said():
        _, up_to_date = add_corpus(name, source, opts, force=force)
        with _built(corpus_dir(name)):
            _warn_unusable_domains(Corpus(corpus_dir(name)))
    with _built(corpus_dir(name)):
        s = summary(Corpus(corpus_dir(name)))
        s["up_to_date"] = up_to_date
        note = (
            f"corpus {name!r} is up to date; nothing to do. --force rebuilds."
            if up_to_date
            else f"built corpus {name!r} at {corpus_dir(name)}"
        )
        _show(s, as_json, note, said)


@contextlib.contextmanager
def _steps_said() -> Iterator[None]:
    """The build's steps on stderr as they come (reading, each domain cleaned, the tokenizer, each
    domain encoded): half a gigabyte took minutes without a word (a QA pass)."""
    import logging

    class Said(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            kind = "corpus" if record.levelno < logging.WARNING else record.levelname.lower()
            return f"{kind}: {record.getMessage()}"

    logger = logging.getLogger("mixopt.corpus")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(Said())
    level, propagate = logger.level, logger.propagate
    logger.setLevel(min(logging.INFO, logger.getEffectiveLevel()))
    logger.addHandler(handler)
    logger.propagate = False  # once, not again through the root's handler (MIXOPT_LOG=INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


@contextlib.contextmanager
def _built(path: Path) -> Iterator[None]:
    """A Ctrl-C after the corpus is written says so: "interrupted" alone had read as if the old one
    were still in place (a QA pass, with --force)."""
    try:
        yield
    except KeyboardInterrupt:
        print(f"interrupted after the corpus was written, whole, at {path} (`mixopt corpus info` shows it)",
              file=sys.stderr)
        raise SystemExit(130) from None


@corpus_app.command("info")
def info(name: BuiltArg, as_json: JsonOpt = False) -> None:
    """Domains, documents, tokens, MB, bytes per token and licence of a built corpus."""
    from mixopt.corpus.catalog import open_corpus, summary

    c = open_corpus(name)
    s = summary(c)
    _show(s, as_json, f"{c.path}  built {s['created']}")


@corpus_app.command("list")
def list_(as_json: JsonOpt = False) -> None:
    """Recipes that can be built and corpora that are built."""
    from mixopt.corpus.catalog import built_corpora, recipes

    rec, built = recipes(), built_corpora()
    if as_json:
        print(dumps({"recipes": rec, "built": built}))
        return
    t = Table(title="corpus recipes (mixopt corpus build NAME)")
    for col in ("name", "domains", "description"):
        t.add_column(col)
    for r in rec:  # not markup: an invalid recipe's message names [corpus] and [domains.<name>]
        t.add_row(escape(r["name"]), str(r["domains"]), escape(r["description"]))
    console.print(t)
    b = Table(title="built corpora (mixopt corpus info NAME)")
    for col in ("name", "domains", "train tokens", "MB", "created"):
        b.add_column(col, justify="left" if col in ("name", "created") else "right")
    for r in built:  # train tokens, as `corpus info` counts them (the total had read as a mismatch)
        b.add_row(r["name"], str(r["domains"]), f"{r['train_tokens']:,}", f"{r['mb']:.1f}", str(r["created"]))
    console.print(b if built else "no corpus is built yet; run `mixopt corpus build default`", markup=False)
