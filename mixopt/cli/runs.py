"""``mixopt runs``: list the run store, import run tables made elsewhere (RegMix, Olmix)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from mixopt.cli import app
from mixopt.cli.common import JsonOpt, console, dumps, err_console, json_warnings, parse_count, print_columns
from mixopt.errors import one_line

ERROR_CHARS = 40  # of a run's error in `runs list` (`runs list --json` has it whole)
runs_app = typer.Typer(help="The run store: every run ever evaluated.", no_args_is_help=True)
app.add_typer(runs_app, name="runs")

StoreOpt = Annotated[str | None, typer.Option("--store", help="Run store file (default: the workspace's).")]


@runs_app.command("list")
def list_runs(
    search: Annotated[str | None, typer.Option(
        "--search", "-s", help="Only this search's runs (or an import's, named by `runs import --search`).",
    )] = None,
    status: Annotated[str | None, typer.Option("--status", help="ok, diverged, failed or running.")] = None,
    prefix: Annotated[str | None, typer.Option(
        "--prefix", help="Only runs whose id starts with this (an import's --prefix, e.g. 'train:').",
    )] = None,
    limit: Annotated[int, typer.Option("--limit", min=0, help="Show at most this many (newest); "
                                       "0: all.")] = 50,
    store: StoreOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the runs as one JSON array, metrics "
                                          "included.")] = False,
) -> None:
    """List runs with status, objective, cost and error (newest last; an import's in its table's order)."""
    from mixopt.errors import MixoptError
    from mixopt.store import RUN_STATUSES, RunStore, default_path, natural_key, store_of_search

    if status is not None and status not in RUN_STATUSES:
        raise MixoptError(f"--status {status!r} is unknown; use one of {', '.join(RUN_STATUSES)}")
    # Listing writes nothing, not even an empty store.
    if search is None and store is None and not default_path().is_file():
        if as_json:
            print("[]")
        else:
            console.print(f"0 runs: no run store at {default_path()} yet (a search or `mixopt runs import` "
                          "creates one)", markup=False)
        return
    st = store_of_search(search, store) if search is not None else RunStore(store, create=False)
    def order(created: str, run_id: str) -> tuple[str, list[Any]]:
        return created, natural_key(run_id)

    # the ids first, and only the runs shown read whole (the newest 50 of 40,000 had read all: 400 MB)
    keys = sorted(st.run_keys(search_id=search, status=status, prefix=prefix), key=lambda k: order(*k))
    if search is not None and not keys:
        st.require_search_or_group(search)  # one line naming the searches the store knows
    picked = [i for _, i in (keys[-limit:] if limit > 0 else keys)]
    n_runs = len(keys)
    if as_json:
        shown = sorted(st.runs(run_ids=picked), key=lambda r: order(r.created, r.run_id))
        if len(shown) < n_runs:  # a QA pass: a script read the newest 50 as every run, unsaid
            err_console.print(f"note: the newest {len(shown)} of {n_runs} runs (--limit 0 lists all)",
                              markup=False)

        print(dumps([{
            "run_id": r.run_id, "search_id": r.search_id, "role": r.role, "label": r.label,
            "status": r.status, "objective": r.objective, "seed": r.seed, "attempt": r.attempt,
            "cost": r.cost, "error": r.error, "weights": r.weights, "metrics": r.metrics,
            "fidelity": r.fidelity, "corpus": r.corpus, "created": r.created,
        } for r in shown], indent=2))  # dumps: a diverged run's NaN is null (jq)
        return
    # the text shows no weights or metrics: read without them (40,000 runs had taken 500 MB)
    listed = sorted(st.summaries(picked), key=lambda r: order(r["created"], r["run_id"]))
    title = f"{n_runs} runs in {st.path}"
    title += f" (last {len(listed)})" if len(listed) < n_runs else ""
    rows = []
    cut = False
    for r in listed:
        err = (r["error"] or "").splitlines()[0] if r["error"] else ""
        cut = cut or len(err) > ERROR_CHARS or len((r["error"] or "").splitlines()) > 1
        rows.append([r["run_id"], r["search_id"] or "", r["role"], r["status"],
                     f"{r['objective']:.4f}" if r["objective"] is not None else "-",
                     "" if r["seed"] is None else str(r["seed"]),
                     f"{r['cost']:.1f}" if r["cost"] is not None else "-",
                     err if len(err) <= ERROR_CHARS else err[: ERROR_CHARS - 1] + "…"])
    heads = ["run", "search", "role", "status", "objective", "seed", "cost s", "error"]
    if not any(row[-1] for row in rows):  # no errors: no empty column to split the table over
        heads, rows = heads[:-1], [row[:-1] for row in rows]
    # Whole cells, in more tables where the terminal is narrow: ids differ at their ends.
    print_columns(title, heads, rows, left=("run", "search", "role", "status", "error"))
    if cut:
        console.print(f"errors are cut to their first line, at {ERROR_CHARS} characters; "
                      "`mixopt runs list --json` prints them whole", markup=False)
    searches = st.searches(plans=False) if search is None else []
    if searches:
        more = f" (the last 10 of {len(searches)}: `mixopt runs searches`)" if len(searches) > 10 else ""
        console.print(f"searches{more}: " + ", ".join(f"{s.search_id} ({s.state})" for s in searches[-10:]),
                      markup=False)


@runs_app.command("searches")
def list_searches(
    store: StoreOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON array: a search per item, then each "
                                          "name that runs carry with no search record (an import's, a "
                                          "benchmark's), with state 'no record'.")] = False,
) -> None:
    """List every search in the store (oldest first): state, method, runs and the exported objective.

    Runs are counted as those that finished ok, and all the search recorded: retries of failed runs and
    validation runs are among them."""
    from mixopt.store import RunStore, default_path

    if store is None and not default_path().is_file():
        if as_json:
            print("[]")
        else:
            console.print(f"0 searches: no run store at {default_path()} yet", markup=False)
        return
    from mixopt.search.lock import shown_state
    from mixopt.search.prepare import search_dir

    st = RunStore(store, create=False)
    rows = []
    counts = st.run_counts()
    for s in st.searches(plans=False):
        res = s.result or {}
        state = shown_state(s.state, search_dir(s.search_id))
        exported = next((c for c in res.get("candidates", []) if c.get("exported")), {})
        value, how = (exported.get("measured") or {}).get("mean"), "measured"
        if value is None:
            value, how = exported.get("predicted"), "predicted"
        rows.append({"search": s.search_id, "state": state, "method": s.config.get("method"),
                     "corpus": s.config.get("corpus"), "evaluator": s.config.get("evaluator"),
                     "budget": s.config.get("budget"), "runs_ok": counts.get(s.search_id, (0, 0))[0],
                     "runs": counts.get(s.search_id, (0, 0))[1],
                     "exported": res.get("exported"), "objective": value,
                     "objective_is": how if value is not None else None, "created": s.created,
                     "error": res.get("error") if s.state == "failed" else None})
    others = st.unrecorded_search_ids()
    if as_json:  # the text form names these below its table; a script had not seen them (a QA pass)
        print(dumps(rows + [{"search": k, "state": "no record", "runs_ok": counts.get(k, (0, 0))[0],
                             "runs": n} for k, n in others.items()],
                    indent=2))
        return
    # a search with its own evaluator has no corpus: its evaluator says what it measured (a QA pass)
    cells = [[r["search"], r["state"], str(r["method"]),
              str(r["corpus"] or r["evaluator"] or "-"),
              str(r["budget"]), f"{r['runs']} ({r['runs_ok']} ok)",
              r["exported"] or "-",
              "-" if r["objective"] is None else f"{r['objective']:.4f}" + (
                  " (pred.)" if r["objective_is"] == "predicted" else ""),
              r["created"][:16].replace("T", " ")] for r in rows]
    # runs alone had read as the budget's, retries and validation runs counted (a failed search of 32: 64)
    heads = ["search", "state", "method", "corpus / evaluator", "budget", "runs", "exported", "objective",
             "created"]
    if rows:
        print_columns(f"{len(rows)} search{'es' if len(rows) != 1 else ''} in {st.path}", heads, cells,
                      left=("search", "state", "method", "corpus / evaluator", "exported", "created"))
    else:  # an empty table's headings, split over two tables on a narrow terminal, said nothing
        console.print(f"0 searches in {st.path}", markup=False)
    if others:
        first = list(others.items())[:10]
        listed = ", ".join(f"{k} ({n} run{'s' if n != 1 else ''})" for k, n in first)
        more = f", … ({len(others) - 10} more)" if len(others) > 10 else ""
        console.print(f"runs with no search record (a benchmark's, or imported) carry {listed}{more}: "
                      "`mixopt runs list --search ID` lists them", style="dim", markup=False)
    if any(r["state"] == "stopped" for r in rows):
        console.print("stopped: its driver ended without saying so (kill -9, a lost node); "
                      "`mixopt search --resume NAME` goes on", style="dim")
    failed = [r for r in rows if r["error"]]
    if failed:  # why, in a line each: the report keeps it too
        for r in failed[-5:]:
            console.print(one_line(f"{r['search']} failed: {r['error']}"), style="dim", soft_wrap=True,
                          markup=False)
        if len(failed) > 5:
            console.print(f"({len(failed) - 5} earlier failed searches: --json has every error)", style="dim",
                          markup=False)
    if any(r["objective_is"] == "predicted" for r in rows):
        console.print("objective: the exported mixture's measured value, or the model's prediction "
                      "(pred.) where it was not validated", style="dim")


@runs_app.command("import")
def import_runs(
    ratios: Annotated[str, typer.Option("--ratios", help="CSV of mixtures: run/index + weights (- reads "
                                                       "standard input).")],
    metrics: Annotated[str, typer.Option("--metrics", help="CSV of metrics, joined on run or index (- "
                                                        "reads standard input).")],
    corpus: Annotated[str | None, typer.Option(
        "--corpus", help="Corpus the runs trained on (its hash makes them reusable by searches).")] = None,
    fidelity: Annotated[list[str] | None, typer.Option(
        "--fidelity", help="Fidelity of the runs, e.g. rung=xs or rung=1m,params=1e6 (repeatable).")] = None,
    prefix: Annotated[str | None, typer.Option(
        "--prefix", help="Run id prefix (default: the ratios file's name and ':').")] = None,
    evaluator: Annotated[str, typer.Option(
        "--evaluator", help="What produced the runs, for the reuse key (default: proxy).")] = "proxy",
    rename: Annotated[list[str] | None, typer.Option(
        "--rename", help="Rename metrics, PATTERN=REPLACEMENT (regex, repeatable), so searches can use them: "
        "e.g. 'metric/(.*)_val_loss=loss/train_\\1' for RegMix's tables.")] = None,
    tokens_per_step: Annotated[int | None, typer.Option(
        "--tokens-per-step", metavar="N", parser=parse_count,
        help="A metrics table of checkpoints by step alone: the tokens of one step (batch × context, e.g. "
        "1048576; 1M is 1,000,000), so that `fit --fidelity-law` can fit along them.")] = None,
    search: Annotated[str | None, typer.Option(
        "--search", "-s", help="Name the imported runs as a group (no search of its own), so that "
        "`runs list --search` and `fit --fidelity-law --search` pick them out; a later import may add to it.",
    )] = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Load run tables made elsewhere into the run store (duplicate run ids are an error).

    A metrics table of checkpoints (a row per run and checkpoint, by tokens or step) is kept whole."""
    from mixopt.search.config import parse_fidelity
    from mixopt.search.imports import import_table
    from mixopt.store import made_store

    fid = parse_fidelity(fidelity)
    # refused, failed or interrupted: no empty store or folders left behind
    with made_store(store) as st, json_warnings(as_json) as said:
        summary = import_table(st, ratios=ratios, metrics=metrics, corpus=corpus, fidelity=fid,
                               prefix=prefix, evaluator=evaluator, rename=rename or (),
                               tokens_per_step=tokens_per_step, search=search)
    if as_json:
        print(dumps({**summary, "warnings": said}, indent=2))
        return
    ids = summary["first"] if summary["runs"] == 1 else f"{summary['first']} … {summary['last']}"
    named = f" as {search!r}" if search else ""
    console.print(f"imported {summary['runs']} run{'s' if summary['runs'] != 1 else ''} over "
                  f"{len(summary['domains'])} domains into {st.path}{named} (ids {ids}; {summary['metrics']} "
                  f"metrics{_checkpoints_said(summary)})", markup=False)


def _checkpoints_said(summary: dict) -> str:
    n = summary.get("checkpoints") or 0
    return f"; {n} checkpoints, kept as the runs' histories" if n else ""


@runs_app.command("export")
def export_runs(
    ratios: Annotated[str, typer.Option("--ratios", help="Write the runs' mixtures here (CSV: run, name, "
                                        "index and a column per domain).")],
    metrics: Annotated[str, typer.Option("--metrics", help="Write the runs' metrics here (CSV: run, name, "
                                         "index and a column per metric).")],
    search: Annotated[list[str] | None, typer.Option(
        "--search", "-s", help="The runs this search fitted, reused ones included, or an import's named by "
        "`runs import --search` (repeatable; default: the store's runs).")] = None,
    status: Annotated[str, typer.Option("--status", help="ok, diverged, failed or running.")] = "ok",
    prefix: Annotated[str | None, typer.Option(
        "--prefix", help="Only runs whose id starts with this (one import of several under one name).",
    )] = None,
    role: Annotated[str | None, typer.Option(
        "--role", help="Only runs of this role: swarm, validate or import (default: all).")] = None,
    checkpoints: Annotated[bool, typer.Option(
        "--checkpoints", help="A metrics row per run and checkpoint (tokens, step), not the final metrics.",
    )] = False,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Write runs as a ratios and a metrics table (Olmix's layout) for `fit`, `runs import`, RegMix, Olmix.

    The tables have run, name and index columns, then a column per domain (ratios) or per metric."""
    from mixopt.search.imports import export_tables
    from mixopt.store import existing_store

    st = existing_store(store, "export")
    with json_warnings(as_json) as said:
        summary = export_tables(st, ratios=ratios, metrics=metrics, searches=search or (), status=status,
                                role=role, prefix=prefix, checkpoints=checkpoints)
    if as_json:
        print(dumps({**summary, "warnings": said}, indent=2))
        return
    rows = f", {summary['rows']} checkpoint rows" if checkpoints else ""
    n_metrics, files = len(summary["metric_names"]), f"{summary['ratios']} and {summary['metrics']}"
    console.print(f"wrote {summary['runs']} runs over {len(summary['domains'])} domains ({n_metrics} metrics"
                  f"{rows}): {files}", markup=False)


@runs_app.command("delete")
def delete_runs(
    search: Annotated[str | None, typer.Option(
        "--search", "-s", help="Runs named so on import (`runs import --search`), or a benchmark's.")] = None,
    prefix: Annotated[str | None, typer.Option(
        "--prefix", help="Runs whose id starts with this (an import's --prefix, e.g. 'train:').")] = None,
    run: Annotated[list[str] | None, typer.Option("--run", help="A run id (repeatable).")] = None,
    skip_used: Annotated[bool, typer.Option(
        "--skip-used", help="Keep the matching runs a search reused, and delete the others (without it, "
        "such runs refuse the whole delete, as a running run does always).")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Delete without asking.")] = False,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Delete runs of no search: imports made with the wrong options, a benchmark's runs.

    Runs matching every filter given go; a search's runs, and runs a search reused, are kept."""
    import sys

    from mixopt.errors import MixoptError
    from mixopt.search.imports import delete_runs as delete
    from mixopt.store import existing_store, natural_sorted

    given = [f"{k} {v!r}" for k, v in (("--search", search), ("--prefix", prefix)) if v is not None]
    given += [f"--run {r!r}" for r in run or ()]
    if not given:
        raise MixoptError("say which runs to delete: --search NAME, --prefix P or --run ID")
    if prefix == "":
        raise MixoptError("--prefix '' matches every run; give the start of the run ids to delete")
    st = existing_store(store, "delete")
    if run and (missing := set(run) - {i for _, i in st.run_keys(run_ids=run)}):  # a typo deletes nothing
        raise MixoptError(f"no run {sorted(missing)[0]!r} in {st.path}, so nothing was deleted; `mixopt runs "
                          "list` lists the runs")
    ids = natural_sorted(i for _, i in st.run_keys(search_id=search, prefix=prefix, run_ids=run))
    if not ids:
        raise MixoptError(f"no run in {st.path} matches {', '.join(given)}; `mixopt runs list` lists them")
    going = st.delete_runs(ids, dry_run=True, skip_used=skip_used)  # a refusal before the question
    if len(going) < len(ids):  # --skip-used: the ones a search reused stay
        users = list(st.runs_used_by(ids))
        by = f"search{'es' if len(users) > 1 else ''} {', '.join(users)}"
        err_console.print(f"{len(ids) - len(going)} of the {len(ids)} matching runs were reused by {by} and "
                          "are kept (--skip-used)", markup=False)
    if not yes:
        if not sys.stdin.isatty():  # the question goes to stderr: stdout may be a pipe (--json)
            raise MixoptError(f"deleting {_runs_said(going, st)} needs --yes (no terminal to ask on); "
                              "nothing was deleted")
        if not typer.confirm(f"delete {_runs_said(going, st)}?", default=False, err=True):
            err_console.print("nothing was deleted", markup=False)
            raise typer.Exit(1)
    # checked again: a search that started after the question may have reused some (kept with
    # --skip-used, else the delete is refused)
    gone = delete(st, going, skip_used=skip_used)
    sizes = st.compact()  # a deleted import's space had stayed in the file (a QA pass at 40,000 runs)
    if as_json:
        shrank = {"before": sizes[0], "after": sizes[1]} if isinstance(sizes, tuple) else None
        print(dumps({"deleted": len(gone), "run_ids": gone, "store": str(st.path), "store_bytes": shrank,
                     "not_compacted": sizes if isinstance(sizes, str) else None}, indent=2))
        return
    console.print(f"deleted {_runs_said(gone, st)}", markup=False)
    if isinstance(sizes, str):
        console.print(f"the store's file keeps the space for now ({sizes}); later runs reuse it, and "
                      "`mixopt runs compact` gives it back to the disk", style="dim", markup=False)
    elif sizes is not None:
        console.print(f"the store's file shrank from {_bytes_said(sizes[0])} to {_bytes_said(sizes[1])}",
                      style="dim", markup=False)


@runs_app.command("compact")
def compact_runs(store: StoreOpt = None, as_json: JsonOpt = False) -> None:
    """Give the space of deleted runs back to the disk now (SQLite's VACUUM).

    It rewrites the store; `runs delete` does it by itself when 1 MB or more lies free."""
    from mixopt.store import existing_store

    st = existing_store(store, "compact")
    sizes = st.compact(least=0)
    if isinstance(sizes, str):  # the machine's state, not the command: exit 1, as for a locked store
        err_console.print(f"error: {st.path} was not compacted: {sizes}; run it again when that has "
                          "changed", markup=False)
        raise typer.Exit(1)
    assert sizes is not None
    if as_json:
        shrank = {"before": sizes[0], "after": sizes[1]}
        print(dumps({"store": str(st.path), "store_bytes": shrank}, indent=2))
        return
    console.print(f"compacted {st.path}: {_bytes_said(sizes[0])} → {_bytes_said(sizes[1])}", markup=False)


def _bytes_said(n: int) -> str:
    """A file's size in KB, MB or GB (a 28 KB store had shrunk "to 0.0 MB")."""
    for unit, size in (("GB", 2**30), ("MB", 2**20)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{max(1, round(n / 1024))} KB"


def _runs_said(ids: list[str], st: Any) -> str:
    """``N runs (first … last) from STORE``."""
    first = f"{ids[0]}{f' … {ids[-1]}' if len(ids) > 1 else ''}" if ids else ""
    return f"{len(ids)} run{'s' if len(ids) != 1 else ''} ({first}) from {st.path}"
