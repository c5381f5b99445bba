"""Run tables made elsewhere (RegMix, Olmix) loaded into the run store, reusable by searches; and
the store's runs written as such tables, for `mixopt fit`, RegMix's and Olmix's scripts, or a colleague."""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import math
import re
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mixopt.errors import MixoptError, MixoptWarning, warn, warn_if_ok
from mixopt.evaluator import PROXY
from mixopt.mixture import has_control_char
from mixopt.search.prepare import check_fidelity_names, reuse_key
from mixopt.store import NO_HISTORY, RunRecord, RunStore, sample
from mixopt.tables import CHECKPOINT_COLUMNS, read_run_tables


@warn_if_ok  # notes on the table are noise above a refusal (ids taken, a --rename that breaks)
def import_table(
    store: RunStore,
    *,
    ratios: str | Path,
    metrics: str | Path,
    corpus: str | None = None,
    fidelity: Mapping[str, Any] | None = None,
    prefix: str | None = None,
    evaluator: str = "proxy",
    rename: Sequence[str] = (),
    tokens_per_step: float | None = None,
    search: str | None = None,
) -> dict[str, Any]:
    """Load a ratios + metrics table pair made elsewhere (RegMix, Olmix) into the store.

    Run ids are ``<prefix><id>`` (default prefix: the ratios file's name and ``:``), so RegMix's
    train and test tables (both numbered from 1) do not collide; an id already in the store is an
    error and nothing is written. NaN metrics are left out of a run (a run with no finite metric
    is recorded as ``diverged``). With ``corpus`` naming a built corpus, the runs carry its hash and
    are reused by searches on that corpus at the same fidelity.

    A search's objective reads ``loss/<domain>`` (or ``bpb/<domain>``); ``rename`` holds
    ``PATTERN=REPLACEMENT`` regular expressions applied to every metric name in turn, e.g.
    ``metric/(.*)_val_loss=loss/train_\\1`` for RegMix's tables. Without such names the runs are
    stored but no search can use them, and a warning says so.

    A metrics table of checkpoints (several rows per run, by a ``tokens`` or ``step`` column) is
    kept as each run's history, which ``mixopt fit --fidelity-law`` fits along; the last row is the
    run's metrics. Its laws run in tokens: a table by step alone takes ``tokens_per_step``.

    ``search`` names the imported runs as a group (no search record is made), so that commands that
    take ``--search`` pick them out of a store that holds other runs too; later imports may add to it.
    """
    rules = _rename_rules(rename)
    if prefix is not None and has_control_char(prefix):  # run ids are printed, and escapes drive terminals
        raise MixoptError(f"--prefix {prefix!r} holds a control character (a newline, an escape); give "
                          "printable characters")
    piped = Path(ratios).exists() and not (Path(ratios).is_file() or Path(ratios).is_dir())
    if prefix is None and (str(ratios) == "-" or piped):
        # "63:" of /dev/fd/63 names nothing, and a second pipe would take the same ids
        raise MixoptError(f"the ratios come from a pipe ({ratios}), whose name cannot be the run ids' "
                          "prefix; name them with --prefix P (e.g. --prefix 'train:')")
    if search is not None:
        check_group_name(store, search)
    if evaluator != PROXY and (evaluator.count(":") != 1 or not all(evaluator.split(":"))
                               or any(c.isspace() for c in evaluator)):
        raise MixoptError(f"--evaluator {evaluator!r}: give the module:function the runs were measured "
                          "with, as `mixopt search --evaluator` names it")
    table = read_run_tables(ratios, metrics)
    table.refuse_broken()  # the store keeps every metric: a broken cell is fixed, not dropped
    if tokens_per_step is not None:
        if not (math.isfinite(tokens_per_step) and tokens_per_step > 0):
            raise MixoptError(f"--tokens-per-step is {tokens_per_step:g}; give the tokens of one optimizer "
                              "step (a number > 0)")
        if table.checkpoints != "step" or any("tokens" in h for hs in table.history.values() for h in hs):
            has = ("has a tokens column already" if table.checkpoints else
                   "has one row per run, not a row per run and step")
            raise MixoptError(f"--tokens-per-step turns a checkpoint table's steps into tokens, and "
                              f"{metrics} {has}; leave it out")
    if corpus is None and evaluator == PROXY:
        warn(
            "no --corpus: runs of the built-in proxy (--evaluator proxy, the default) are reused by searches "
            "of their corpus only, so these match no search; give --corpus NAME, or --evaluator "
            "module:function for runs of your own evaluator", MixoptWarning)
    prefix = f"{Path(ratios).stem}:" if prefix is None else prefix
    fid = dict(fidelity or {})
    check_fidelity_names(fid)
    if "params" in fid:  # the runs' model size, for `fit --fidelity-law`: a number, or a count (60M)
        fid["params"] = _model_size(fid["params"])
    if table.history:  # what `fit --fidelity-law` will take their size to be
        from mixopt.proxy.rungs import imported_size

        if said := imported_size(fid.get("rung"), fid.get("params"))[1]:
            warn(f"{said} (`mixopt fit --fidelity-law` fits along the checkpoints with it)", MixoptWarning)
    corpus_hash = None
    if corpus is not None:
        from mixopt.corpus import Corpus

        try:
            c = Corpus.open(corpus)
        except MixoptError as exc:
            # Stored under a name alone, no search could reuse them (a search matches the corpus's
            # hash), and the ids would be taken: a typo of a built name did exactly that.
            raise MixoptError(
                f"--corpus {corpus!r} is not built here, and runs are reused by the hash of a built corpus: "
                f"build it first (`mixopt corpus build` or `corpus add`), or leave out --corpus ({exc})"
            ) from None
        else:
            ours, theirs = set(table.domains), set(c.domains)
            if ours != theirs:  # a search reuses runs over its corpus's domains only
                diff = [f"the {who} lacks {sample(sorted(names), 6)}"
                        for who, names in (("corpus", ours - theirs), ("table", theirs - ours)) if names]
                raise MixoptError(
                    f"the table's domains are not corpus {c.name!r}'s: {'; '.join(diff)}. Import runs "
                    f"trained on {c.name} (its domains: {', '.join(c.domains)}), or leave out --corpus"
                )
            corpus, corpus_hash = c.name, c.hash
            fid["corpus"] = corpus
    # The key a search of this corpus and rung computes, rung hash included, so the runs are reused;
    # a rung mixopt does not know (RegMix's 1m) keys them by its name alone.
    try:
        key = reuse_key(fid, evaluator, proxy=evaluator == PROXY and "rung" in fid)
    except MixoptError:
        key = reuse_key(fid, evaluator, proxy=False)
    names = _renamed(table.metric_names, rules)
    values = table.metrics.to_numpy().astype(float)
    finite = np.isfinite(values)
    empty = [m for m, any_ in zip(names, finite.any(axis=0), strict=True) if not any_]
    if empty:  # said once as columns, not as a missing value in every run
        kept_in = (" of the runs' metrics (the histories keep what the checkpoints have)" if table.history
                   else "")
        warn(f"metric column(s) {sample(empty)} have no finite value in any run{table.last_row}; they are "
             f"left out{kept_in}", MixoptWarning)
    usable = [f"{kind}/{d}" for d in table.domains for kind in ("loss", "bpb")]
    kept = [m for m in names if m not in empty]  # the metrics stored, as the summary counts them
    if not set(usable) & set(kept):
        from mixopt.mixture import metric_domain

        said = (f"no metric is named loss/<domain> or bpb/<domain> (the metrics are {sample(kept)}), so no "
                "search can use these runs (a search's objective reads those names); ")
        if any(metric_domain(m, table.domains) is not None for m in kept):
            # RegMix names its domains train_<x> and their losses metric/<x>_val_loss
            named = "train_" if all(d.startswith("train_") for d in table.domains) else ""
            said += (f"rename them on import, e.g. --rename 'metric/(.*)_val_loss=loss/{named}\\1', or fit "
                     "the tables with `mixopt fit --target COLUMN`")
        else:  # Olmix's are downstream tasks' scores: no rename makes them a domain's loss
            said += ("none is a domain's own loss (downstream scores?) for a rename to name: fit the tables "
                     "with `mixopt fit --target COLUMN` (or --target mean)")
        warn(said, MixoptWarning)
    n_used = len(kept)
    histories = _histories(table, dict(zip(table.metric_names, names, strict=True)), tokens_per_step, prefix,
                           search)
    records, bad_runs, n_bad = [], [], 0
    # the table's order, a microsecond a row: `runs list` and `runs export` keep it, and a round trip
    # gives Olmix's table back in its order (a QA pass: by id it came back shuffled, and `fit --cv`,
    # whose folds follow the rows, scored 0.862 where the original scored 0.844)
    at = _dt.datetime.now(_dt.UTC)
    for i, rid in enumerate(table.run_ids):
        stamp = (at + _dt.timedelta(microseconds=i)).isoformat(timespec="microseconds")
        row = {m: float(v) for m, v in zip(names, values[i], strict=True) if math.isfinite(v)}
        if len(row) < n_used:
            n_bad += n_used - len(row)
            bad_runs.append(str(rid))
        records.append(RunRecord(
            run_id=f"{prefix}{rid}", search_id=search, role="import",
            label=table.names[i] if table.names else rid,
            weights={d: float(w) for d, w in zip(table.domains, table.X[i], strict=True)}, fidelity=fid,
            fidelity_key=key, status="ok" if row else "diverged", corpus=corpus, corpus_hash=corpus_hash,
            metrics=row, history=histories.get(rid, []),
            error=None if row else "no finite metric in the imported table", created=stamp, finished=stamp,
        ))
    if n_bad:
        warn(f"{n_bad} metric value(s) that are NaN or infinite left out of {len(bad_runs)} "
             f"imported run(s) ({sample(bad_runs, 5)})", MixoptWarning)
    from mixopt.search.lock import planning_lock

    with planning_lock(store.path) if search is not None else contextlib.nullcontext():
        if search is not None:  # a search of that name recorded since the check above: refused
            check_group_name(store, search)
        store.add(records)
    return {
        "runs": len(records), "domains": list(table.domains), "metrics": n_used, "key": table.key,
        "first": records[0].run_id, "last": records[-1].run_id, "store": str(store.path),
        "fidelity_key": key, "corpus_hash": corpus_hash,
        "checkpoints": sum(len(h) for h in histories.values()), "search": search,
    }


def export_tables(
    store: RunStore,
    *,
    ratios: str | Path,
    metrics: str | Path,
    searches: Sequence[str] = (),
    status: str = "ok",
    role: str | None = None,
    prefix: str | None = None,
    checkpoints: bool = False,
) -> dict[str, Any]:
    """Write the store's runs as a ratios and a metrics table in Olmix's layout (``run,name,index``
    then a column per domain / per metric), which ``fit --ratios/--metrics`` and ``runs import``
    read back as they are, and RegMix's and Olmix's scripts read (by ``index``, or ``run``).

    A search's runs are those it fitted or validated with: its own (``role``: of that role only),
    and the ones it reused from earlier searches or imports for its swarm or its validation.
    ``prefix``: only runs whose id starts with it (one import of several under one name). Runs of
    one fidelity (rung) only: a table has no column for it. With ``checkpoints``, a metric the last
    checkpoint lacks (a run's train loss, kept beside its histories) is not in the table. A run of a
    search that reused a mixture is written over every domain, as it trained (the group at the
    shares it kept).
    ``checkpoints``: the metrics table has a row per run and checkpoint of its history (``tokens``
    and ``step`` columns), as ``runs import`` keeps checkpoints; runs without a history are left
    out, said. Both files are written before either is put in place.

    Raises:
        MixoptError: no run matches, or none has a metric; the runs cover several domain sets or
            fidelities; a metric named as an id column; an output path that cannot be written, or is
            the other output or the store.
    """
    from mixopt.atomic import atomic_path, check_writable
    from mixopt.reuse import KEY, trained_weights
    from mixopt.store import RUN_ROLES, RUN_STATUSES, natural_key
    from mixopt.tables import csv_text, refuse_id_columns

    for option, value, known in (("--status", status, RUN_STATUSES), ("--role", role, RUN_ROLES)):
        if value is not None and value not in known:
            raise MixoptError(f"{option} {value!r} is unknown; use one of {', '.join(known)}")
    # the runs the searches fitted or validated with that earlier searches (or imports) measured
    lent: dict[str, list[str]] = {"swarm": [], "validate": []}
    for name in searches:  # a mistyped name is no search, not one without runs
        store.require_search_or_group(name)
        if (rec := store.get_search(name)) is not None:
            lent["swarm"] += (rec.plan or {}).get("reused", [])
            lent["validate"] += list((rec.plan or {}).get("validation_reused", {}).values())
    r_out = check_writable(ratios, "--ratios", inputs={"--store": store.path}, example="ratios.csv")
    m_out = check_writable(metrics, "--metrics", inputs={"--store": store.path}, example="metrics.csv")
    if r_out.resolve() == m_out.resolve():
        raise MixoptError(f"--ratios and --metrics are both {m_out}; give each table its own file")
    found = store.runs(search_id=list(searches) or None, status=status, role=role, prefix=prefix)
    borrowed = [i for kind, ids in lent.items() if role in (None, kind) for i in ids]
    if borrowed:  # as the searches used them: in their swarm, or as their validation
        have = {r.run_id for r in found}
        found += [r for r in store.runs(run_ids=borrowed, status=status, prefix=prefix)
                  if r.run_id not in have]
    # One search's or import's runs together, the oldest first; an import's in its table's order (its
    # stamps), a search's in run-id order, not the order Ray happened to start them: by start time a
    # rerun of a search (--concurrency 2, a retry) exported its runs in another order, and `fit --cv`,
    # whose folds follow the rows, moved (a review)
    first: dict[str, str] = {}
    for r in found:
        first[r.search_id or ""] = min(first.get(r.search_id or "", r.created), r.created)
    runs = sorted(found, key=lambda r: (first[r.search_id or ""], r.search_id or "",
                                        r.created if r.role == "import" else "", natural_key(r.run_id)))
    where = (f"search{'es' if len(searches) > 1 else ''} {', '.join(searches)}" if searches
             else str(store.path)) + (f" with ids from {prefix!r}" if prefix else "")
    if not runs:
        of_role = f" of role {role}" if role else ""
        raise MixoptError(f"no {status} run{of_role} in {where}; `mixopt runs list` lists the runs")
    weights = {r.run_id: trained_weights(r.weights, r.fidelity_key) for r in runs}  # over every domain
    if len({tuple(sorted(w)) for w in weights.values()}) > 1:
        # an import made without --search has no NAME: its --prefix picks it out (a QA pass)
        raise MixoptError(f"the runs of {where} cover different domain sets, and a table has one; export "
                          "one search's or one import's runs at a time: --search NAME, or --prefix P for "
                          "an import")
    keys = {json.dumps({k: v for k, v in json.loads(r.fidelity_key).items() if k != KEY}, sort_keys=True)
            for r in runs}
    if len(keys) > 1:  # the same mixture at two rungs would read as two measurements of one run
        raise MixoptError(f"the runs of {where} were measured at {len(keys)} fidelities (rungs, or "
                          "evaluators), and a table has no column for it; export one at a time: --search "
                          "NAME, --prefix P for one import of several, or --role swarm (--role validate) for "
                          "a search that validated at another rung")
    domains = list(weights[runs[0].run_id])
    refuse_id_columns(domains)
    left_out = [r.run_id for r in runs if checkpoints and not r.history]
    kept = [r for r in runs if r.run_id not in left_out]
    if not kept:
        raise MixoptError(f"no run of {where} has a checkpoint history ({NO_HISTORY}); leave out "
                          "--checkpoints to write the runs' final metrics")
    rows = [(r, h) for r in kept for h in (r.history if checkpoints else [r.metrics])]
    # the columns every checkpoint has: a blank one could not be read back
    marks = [c for c in CHECKPOINT_COLUMNS if all(c in h for _, h in rows)] if checkpoints else []
    if checkpoints and not marks:
        raise MixoptError(f"the checkpoints of {where} are not all counted in tokens, nor all in steps, and "
                          "a table orders them by one; export them apart (--prefix P for one import of "
                          "several)")

    def number(v: Any) -> bool:  # an evaluator's history may keep text beside its numbers
        return isinstance(v, int | float | np.number) and not isinstance(v, bool)

    names = list(dict.fromkeys(k for _, h in rows for k, v in h.items() if k not in marks and number(v)))
    if not names:
        raise MixoptError(f"the {status} runs of {where} hold no metric, so the metrics table would be "
                          "empty; export runs that finished (--status ok)")
    refuse_id_columns(names, "metric", "the table could not be read back; rename it (in the evaluator, or "
                      "on import with --rename)")

    def cell(v: Any, whole: bool = False) -> str:  # a checkpoint's tokens and step as integers
        return "" if not number(v) else str(int(v)) if whole and float(v).is_integer() else repr(float(v))

    ids = {r.run_id: [r.run_id, r.label or r.run_id, i] for i, r in enumerate(kept)}  # run, name, index
    ratios_text = csv_text(["run", "name", "index", *domains],
                           ([*ids[r.run_id], *(cell(weights[r.run_id][d]) for d in domains)] for r in kept))
    metrics_text = csv_text(["run", "name", "index", *marks, *names],
                            ([*ids[r.run_id], *(cell(h.get(k), True) for k in marks),
                              *(cell(h.get(k)) for k in names)] for r, h in rows))
    with atomic_path(r_out) as r_tmp, atomic_path(m_out) as m_tmp:
        r_tmp.write_text(ratios_text, encoding="utf-8")
        m_tmp.write_text(metrics_text, encoding="utf-8")
    if left_out:
        warn(f"{len(left_out)} of the {len(runs)} runs have no checkpoint history ({NO_HISTORY}) and are "
             f"left out ({sample(left_out)})", MixoptWarning)
    if grouped := [r.run_id for r in kept if weights[r.run_id] != r.weights]:
        warn(f"{len(grouped)} run(s) of a search that reused a mixture are written over every domain, as "
             "they trained; `mixopt fit --reuse-mixture FILE` (that mixture) fits them over its group again",
             MixoptWarning)
    return {"runs": len(kept), "rows": len(rows), "domains": domains, "metric_names": names,
            "checkpoints": marks, "ratios": str(r_out), "metrics": str(m_out)}


def delete_runs(store: RunStore, run_ids: Sequence[str], *, skip_used: bool = False) -> list[str]:
    """Delete runs of no search (:meth:`RunStore.delete_runs`), under the store's planning lock: a
    search that starts meanwhile has chosen the runs it reuses only once it is recorded, so it
    either sees them gone or is recorded as reusing them, and they are kept. Returns the runs
    deleted."""
    from mixopt.search.lock import planning_lock

    with planning_lock(store.path):
        return store.delete_runs(run_ids, skip_used=skip_used)


def check_group_name(store: RunStore, name: str) -> None:
    """Refuse ``--search NAME`` for an import: a name that is no valid search name, or a search's.

    Imported runs join no search (a search's runs are what its driver planned and ran: its resume
    and report read them as its own), so the name must not be a recorded search's."""
    from mixopt import paths

    paths.check_name(name, "--search")
    if store.get_search(name) is not None:
        raise MixoptError(f"--search {name!r} is a search of {store.path}, and imported runs join no search "
                          "(its resume and report read its runs as its own); give the import a name of its "
                          "own, and name both with --search where a command takes several")


def _model_size(value: Any) -> int | float:
    """``--fidelity params=…`` as a number > 0: kept as given when it is one, read as a count (60M)
    when it is text (a QA pass: "5M" had crashed the fit with a ValueError)."""
    from mixopt.search.config import scaled_number

    given = value
    if isinstance(value, bool) or not isinstance(value, int | float):
        try:
            number = scaled_number(str(value))
            value = int(number) if number == number.to_integral_value() else float(number)
        except (ValueError, ArithmeticError):
            value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise MixoptError(f"--fidelity params={given}: give the runs' non-embedding parameters, a number > 0 "
                          "(6e7, 60M)")
    return value


def _histories(table: Any, names: Mapping[str, str], tokens_per_step: float | None, prefix: str,
               search: str | None = None) -> dict[str, list[dict[str, float]]]:
    """Each run's checkpoints as the store keeps a history: metrics under their stored names, and
    ``tokens`` (a table by step alone: ``step × tokens_per_step``, or none, with a warning)."""
    out: dict[str, list[dict[str, float]]] = {}
    for rid, rows in table.history.items():
        out[rid] = [{names.get(k, k) if k not in CHECKPOINT_COLUMNS else k: v for k, v in h.items()}
                    for h in rows]
        if tokens_per_step is not None:
            for h in out[rid]:
                h["tokens"] = h["step"] * tokens_per_step
    # the runs of this import: its --prefix (and its --search name, which other imports may share)
    which = " ".join([*([f"--search {search}"] if search else []),
                      f"--prefix {shlex.quote(prefix)}" if prefix else "--run ID for each"])
    if out and tokens_per_step is None and table.checkpoints == "step":
        warn("the checkpoints are by step alone, and mixopt's laws across training run in tokens: "
             "`mixopt fit --fidelity-law` cannot use them as imported; for that, delete them (`mixopt runs "
             f"delete {which}`) and import the tables again with --tokens-per-step N (the tokens of one "
             "optimizer step)",
             MixoptWarning)
    return out


def _rename_rules(rename: Sequence[str]) -> list[tuple[re.Pattern[str], str]]:
    rules = []
    for rule in rename:
        pattern, sep, repl = rule.partition("=")
        if not sep or not pattern:
            raise MixoptError(f"--rename {rule!r}: give PATTERN=REPLACEMENT, e.g. "
                              "'metric/(.*)_val_loss=loss/\\1'")
        try:
            rules.append((re.compile(pattern), repl))
        except re.error as exc:
            raise MixoptError(f"--rename {rule!r}: {pattern!r} is not a regular expression ({exc})") from exc
    return rules


def _renamed(names: Sequence[str], rules: Sequence[tuple[re.Pattern[str], str]]) -> list[str]:
    out = list(names)
    for pattern, repl in rules:
        if not any(pattern.search(n) for n in out):  # a typo, or a rule for another table
            warn(f"--rename {pattern.pattern}={repl} matches no metric name (the metrics are "
                 f"{sample(out)}); it renames nothing", MixoptWarning)
        try:
            out = [pattern.sub(repl, n) for n in out]
        except (re.error, IndexError) as exc:
            raise MixoptError(f"--rename {pattern.pattern}={repl}: {exc}") from exc
    if empty := [old for old, n in zip(names, out, strict=True) if not n.strip()]:
        raise MixoptError(f"--rename leaves metric {empty[0]!r} with no name; make the replacement name it")
    if odd := [n for n in out if has_control_char(n)]:  # a table's header may not hold them either
        raise MixoptError(f"--rename gives a metric the name {odd[0]!r}, with a control character (a "
                          "newline, an escape); name metrics with printable characters")
    twice = sorted({n for n in out if out.count(n) > 1})
    if twice:
        raise MixoptError(f"--rename gives two metrics the name {twice[0]!r}; make the rules keep them apart")
    from mixopt.tables import ID_COLUMNS, id_columns_in

    if clash := [n for n in id_columns_in(out) if n not in names]:  # tables would read it as ids
        raise MixoptError(f"--rename gives a metric the name {clash[0]!r}, a run table's id column "
                          f"({', '.join(ID_COLUMNS)}); rename it to something else")
    return out
