"""The run store: records, filters, fitting matrix, reuse keys, concurrency, searches."""

from __future__ import annotations

import dataclasses
import json
import math
import multiprocessing as mp
import os
import re
import sqlite3
import warnings
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from mixopt.cli import run_cli as _cli
from mixopt.errors import MixoptError, MixoptWarning
from mixopt.objective import Objective
from mixopt.search.config import SearchConfig
from mixopt.store import RunRecord, RunStore, default_path, domains_key, fidelity_key, natural_sorted

DOMAINS = ["a", "b", "c"]
FID = {"corpus": "toy", "rung": "xs"}
FKEY = fidelity_key(FID, "proxy")


def rec(run_id: str, w: list[float], loss: float | None, *, status="ok", search="s1", **kw) -> RunRecord:
    metrics = {} if loss is None else {f"loss/{d}": loss + i for i, d in enumerate(DOMAINS)}
    return RunRecord(
        run_id=run_id, search_id=search, weights=dict(zip(DOMAINS, w, strict=True)), fidelity=FID,
        fidelity_key=FKEY, status=status, corpus="toy", corpus_hash="h1", metrics=metrics, seed=0, **kw,
    )


@pytest.fixture
def store(tmp_path, monkeypatch) -> RunStore:
    monkeypatch.setenv("MIXOPT_HOME", str(tmp_path / "home"))
    return RunStore()


def test_default_path_is_in_the_workspace_and_wal(store, tmp_path):
    assert store.path == tmp_path / "home" / "runs.sqlite"
    con = sqlite3.connect(store.path)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_roundtrip_and_matrix_excludes_failed_and_diverged(store):
    store.add([
        rec("r1", [0.2, 0.3, 0.5], 2.0),
        rec("r2", [0.5, 0.5, 0.0], 3.0),
        rec("r3", [0.1, 0.1, 0.8], None, status="failed", error="boom"),
        rec("r4", [0.3, 0.3, 0.4], math.nan, status="diverged", error="nan loss"),
    ])
    r3 = store.get("r3")
    assert r3.status == "failed" and r3.error == "boom" and r3.weights["c"] == 0.8
    assert math.isnan(store.get("r4").metrics["loss/a"])  # diverged metrics are kept, not fitted
    X, y, ids = store.matrix(DOMAINS, Objective())
    assert ids == ["r1", "r2"]
    np.testing.assert_allclose(X, [[0.2, 0.3, 0.5], [0.5, 0.5, 0.0]])
    np.testing.assert_allclose(y, [3.0, 4.0])  # mean of loss, loss+1, loss+2
    X, y, _ = store.matrix(DOMAINS, Objective.parse("c"))
    np.testing.assert_allclose(y, [4.0, 5.0])
    # a different domain order gives columns in that order
    X2, _, _ = store.matrix(["c", "a", "b"], Objective())
    np.testing.assert_allclose(X2[0], [0.5, 0.2, 0.3])


def test_matrix_rows_are_in_run_id_order_not_the_order_runs_started(store):
    """Ray starts a search's trials in an order of its own timing; cross-validation folds are drawn
    over the matrix's rows, so two identical searches reported different figures (a QA pass)."""
    at = "2026-12-06T10:00:0{}+00:00".format
    store.add([rec("s-0002", [0.2, 0.3, 0.5], 2.0, created=at(1)),
               rec("s-0000", [0.5, 0.5, 0.0], 3.0, created=at(2)),
               rec("s-0001", [0.1, 0.1, 0.8], 1.0, created=at(3))])
    assert [r.run_id for r in store.runs()] == ["s-0002", "s-0000", "s-0001"]  # listings: oldest first
    X, y, ids = store.matrix(DOMAINS, Objective())
    assert ids == ["s-0000", "s-0001", "s-0002"]
    np.testing.assert_allclose(y, [4.0, 2.0, 3.0])
    assert store.matrix(DOMAINS, Objective(), run_ids=["s-0001", "s-0002"])[2] == ["s-0001", "s-0002"]


def test_frame_has_weight_and_metric_columns(store):
    store.add([rec("r1", [0.2, 0.3, 0.5], 2.0), rec("r2", [0.5, 0.5, 0.0], None, status="failed")])
    df = store.frame(search_id="s1")
    assert df.height == 2
    assert {"weight/a", "loss/c", "status", "error", "objective"} <= set(df.columns)
    assert df.filter(df["status"] == "ok")["loss/c"].to_list() == [4.0]
    # a metric named like a run's own column does not overwrite it (an evaluator's "cost", a QA pass)
    flat = {"loss/a": 2.0, "cost": 12.5, "seed": 99.0, "status": 3.0}  # as an evaluator's flat dict
    store.add([dataclasses.replace(rec("r3", [0.2, 0.3, 0.5], 2.0, cost=1.5), metrics=flat)])
    row = store.frame(search_id="s1").filter(pl.col("run_id") == "r3").row(0, named=True)
    assert (row["cost"], row["seed"], row["status"]) == (1.5, 0, "ok")
    assert (row["metric/cost"], row["metric/seed"], row["metric/status"]) == (12.5, 99.0, 3.0)


def test_duplicate_run_ids_are_an_error_and_nothing_is_written(store):
    store.add(rec("r1", [0.2, 0.3, 0.5], 2.0))
    with pytest.raises(MixoptError, match="already in the store.*r1"):
        store.add([rec("r9", [0.2, 0.3, 0.5], 2.0), rec("r1", [0.2, 0.3, 0.5], 2.0)])
    assert store.get("r9") is None
    with pytest.raises(MixoptError, match="duplicate run ids: r5"):
        store.add([rec("r5", [0.2, 0.3, 0.5], 2.0), rec("r5", [0.2, 0.3, 0.5], 2.0)])


def test_a_run_the_store_cannot_hold_is_one_error_and_writes_nothing(store):
    """Stop 44's property tests: in library use, an attempt past 2^63, a lone surrogate in an id or a
    set in a fidelity raised OverflowError, UnicodeEncodeError or TypeError from inside the write."""
    bad = [rec("r1", [0.2, 0.3, 0.5], 2.0, attempt=2**63), rec("\ud800", [0.2, 0.3, 0.5], 2.0),
           dataclasses.replace(rec("r3", [0.2, 0.3, 0.5], 2.0), fidelity={"rung": {"xs"}}),
           rec("r4", [0.2, 0.3, 0.5], 2.0, label="\udfff")]
    for r in bad:
        with pytest.raises(MixoptError, match=r"cannot hold it \(.*\); give text that is valid"):
            store.add([rec("r0", [0.2, 0.3, 0.5], 2.0), r])
        with pytest.raises(MixoptError, match="the run store cannot hold it"):
            store.begin(dataclasses.replace(r, status="running"))
    assert store.runs() == []  # nothing half-written: the good run of the batch is not in either
    store.add(rec("r1", [0.2, 0.3, 0.5], 2.0, attempt=2**63 - 1))  # the largest that fits
    assert store.get("r1").attempt == 2**63 - 1


def test_numpy_scalars_are_stored_as_the_numbers_they_are(store):
    """A review: a library caller's np.int64 seed or np.float32 cost went in as its buffer, a BLOB, and
    came back as 8 (or 4) bytes instead of the number."""
    store.add(dataclasses.replace(rec("r1", [0.2, 0.3, 0.5], 2.0, cost=np.float32(2.5), attempt=np.int32(1)),
                                  seed=np.int64(3)))
    got = store.get("r1")
    assert (got.seed, got.cost, got.attempt) == (3, 2.5, 1)
    assert type(got.seed) is int and type(got.cost) is float and type(got.attempt) is int
    with pytest.raises(MixoptError, match="cannot hold it"):  # still checked once a Python int
        store.add(dataclasses.replace(rec("r2", [0.2, 0.3, 0.5], 2.0), seed=np.uint64(2**64 - 1)))


def test_begin_finish_and_interrupt(store):
    store.begin(rec("r1", [0.2, 0.3, 0.5], None, status="running"))
    assert store.get("r1").status == "running"
    store.begin(rec("r1", [0.2, 0.3, 0.5], None, status="running"))  # a restarted trial replaces its own row
    assert store.finish("r1", status="ok", metrics={"loss/a": 1.0}, objective=1.0, cost=0.5)
    r = store.get("r1")
    assert (r.status, r.metrics, r.cost, r.objective) == ("ok", {"loss/a": 1.0}, 0.5, 1.0) and r.finished
    with pytest.raises(MixoptError, match="already finished"):
        store.begin(rec("r1", [0.2, 0.3, 0.5], None, status="running"))
    store.begin(rec("r2", [0.2, 0.3, 0.5], None, status="running"))
    assert store.interrupt("s1", "driver killed") == ["r2"]
    assert store.get("r2").status == "failed" and store.get("r2").error == "driver killed"
    assert not store.finish("r2", status="failed", error="late", only_if_running=True)


def test_reuse_filters_by_corpus_fidelity_and_domains(store):
    other_fid = {"corpus": "toy", "rung": "s"}
    store.add([
        rec("r1", [0.2, 0.3, 0.5], 2.0),
        rec("r2", [0.2, 0.3, 0.5], 2.0, search="s2"),
        rec("r3", [0.2, 0.3, 0.5], None, status="failed"),
        RunRecord(run_id="r4", weights={"a": 0.5, "b": 0.5}, fidelity=FID, fidelity_key=FKEY, status="ok",
                  corpus_hash="h1", metrics={"loss/a": 1.0}),
        RunRecord(run_id="r5", weights=dict(zip(DOMAINS, [0.2, 0.3, 0.5], strict=True)), fidelity=other_fid,
                  fidelity_key=fidelity_key(other_fid), status="ok", corpus_hash="h1",
                  metrics={"loss/a": 1.0}),
        RunRecord(run_id="r6", weights=dict(zip(DOMAINS, [0.2, 0.3, 0.5], strict=True)), fidelity=FID,
                  fidelity_key=FKEY, status="ok", corpus_hash="h2", metrics={"loss/a": 1.0}),
    ])
    got = store.reusable(corpus_hash="h1", fidelity_key=FKEY, domains=["c", "b", "a"])
    assert [r.run_id for r in got] == ["r1", "r2"]
    got = store.reusable(corpus_hash="h1", fidelity_key=FKEY, domains=DOMAINS, exclude_search="s1")
    assert [r.run_id for r in got] == ["r2"]
    assert domains_key(["b", "a"]) == domains_key(["a", "b"])
    assert fidelity_key({"rung": "xs"}, "m:f") != fidelity_key({"rung": "xs"}, "proxy")


def _writer(path: str, worker: int, n: int) -> None:
    st = RunStore(path)
    for i in range(n):
        st.begin(rec(f"w{worker}-{i}", [0.2, 0.3, 0.5], None, status="running"))
        st.finish(f"w{worker}-{i}", status="ok", metrics={"loss/a": float(i)}, objective=float(i))


def test_concurrent_writers_from_processes_lose_nothing(store):
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(store.path), w, 40)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert len(store.runs(status="ok")) == 120


def test_searches_table(store):
    store.create_search("s1", {"method": "regmix"}, {"swarm": [[0.5, 0.5]]})
    with pytest.raises(MixoptError, match="resume it with --resume s1"):
        store.create_search("s1", {})
    store.update_search("s1", state="done", result={"best": 1.0})
    s = store.require_search("s1")
    assert (s.state, s.result) == ("done", {"best": 1.0})
    assert (s.plan, s.config) == ({"swarm": [[0.5, 0.5]]}, {"method": "regmix"})
    with pytest.raises(MixoptError, match="no search named 'nope'.*s1"):
        store.require_search("nope")


def test_unreadable_store_is_one_clear_error(tmp_path):
    with pytest.raises(MixoptError, match="is a folder; give --store a file path"):
        RunStore(tmp_path)
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"not a database at all" * 100)
    with pytest.raises(MixoptError, match="cannot open run store"):
        RunStore(bad)


@pytest.mark.parametrize("create", [True, False])
def test_a_store_of_a_newer_schema_is_refused_before_anything_is_written_to_it(tmp_path, create):
    # a newer mixopt's store (tables renamed, no WAL) had been given this version's tables and
    # switched to WAL mode before the version was read and refused
    path = tmp_path / "newer.sqlite"
    con = sqlite3.connect(path)
    con.executescript("CREATE TABLE runs_v3 (x); CREATE TABLE searches_v3 (y); PRAGMA user_version = 3;")
    con.close()
    before = path.read_bytes()
    with pytest.raises(MixoptError, match=r"schema version 3, newer than this mixopt \(1\); upgrade mixopt"):
        RunStore(path, create=create)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["newer.sqlite"]


def _make_readonly(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The store file and its folder as another user sees them: readable, not writable."""
    path.chmod(0o444)
    path.parent.chmod(0o555)
    if os.geteuid() == 0:  # root ignores file modes; the store then sees what any other user would
        monkeypatch.setattr("mixopt.store._can_write", lambda p: False)


def test_a_store_this_user_cannot_write_is_read_and_writes_are_refused(store, monkeypatch, capsys):
    store.add([rec("r1", [0.2, 0.3, 0.5], 1.0), rec("r2", [0.5, 0.3, 0.2], 2.0)])
    path = store.path
    assert not Path(f"{path}-shm").exists()  # the last connection closed: nothing but the file left
    before = path.read_bytes()
    _make_readonly(path, monkeypatch)
    try:
        ro = RunStore(path, create=False)
        assert ro.readonly
        assert [r.run_id for r in ro.runs()] == ["r1", "r2"]
        with pytest.raises(MixoptError, match="read-only for this user.*--store"):
            ro.add(rec("r3", [1 / 3] * 3, 3.0))
        assert _cli(["runs", "list", "--store", str(path), "--json"]) == 0
        assert [r["run_id"] for r in json.loads(capsys.readouterr().out)] == ["r1", "r2"]
        assert _cli(["runs", "searches", "--store", str(path), "--json"]) == 0
        # Reading wrote nothing: the same bytes, and no -wal or -shm in someone else's folder.
        assert path.read_bytes() == before
        assert [p.name for p in path.parent.iterdir()] == [path.name]
    finally:
        path.parent.chmod(0o755)
        path.chmod(0o644)


def test_a_readonly_store_with_an_open_writer_shows_the_writers_commits(store, monkeypatch):
    store.add(rec("r1", [0.2, 0.3, 0.5], 1.0))
    writer = sqlite3.connect(store.path)  # another process's open connection keeps the WAL and -shm
    try:
        writer.execute("SELECT COUNT(*) FROM runs").fetchone()
        store.add(rec("r2", [0.5, 0.3, 0.2], 2.0))  # committed to the WAL, not yet checkpointed
        assert Path(f"{store.path}-shm").exists()
        monkeypatch.setattr("mixopt.store._can_write", lambda p: False)
        assert [r.run_id for r in RunStore(store.path, create=False).runs()] == ["r1", "r2"]
    finally:
        writer.close()


def test_a_write_sqlite_finds_read_only_is_the_same_clear_error(store, monkeypatch):
    """Modes are not the only way to be read-only (an immutable file, a read-only mount as root)."""
    store.add(rec("r1", [0.2, 0.3, 0.5], 1.0))
    connect = sqlite3.connect
    monkeypatch.setattr("mixopt.store.sqlite3.connect",
                        lambda path, **kw: connect(f"file:{path}?mode=ro", uri=True, **kw))
    with pytest.raises(MixoptError, match="read-only for this user.*--store"):
        store.add(rec("r2", [0.5, 0.3, 0.2], 2.0))
    monkeypatch.undo()
    assert [r.run_id for r in store.runs()] == ["r1"]


def test_a_store_locked_by_another_program_is_waited_for_then_one_clear_error(store, monkeypatch, capsys):
    """A QA pass: a database browser holding a write transaction past the busy timeout had given a
    search a traceback, and a run's result was recorded failed."""
    import threading

    from mixopt.errors import StoreLockedError

    store.add(rec("r1", [0.2, 0.3, 0.5], 1.0))
    monkeypatch.setattr("mixopt.store.BUSY_TIMEOUT_S", 0.05)
    monkeypatch.setattr("mixopt.store.LOCK_PATIENCE_S", 0.3)
    browser = sqlite3.connect(store.path, isolation_level=None, check_same_thread=False)
    browser.execute("BEGIN IMMEDIATE")
    with pytest.raises(StoreLockedError, match=r"stayed locked by another program for \d+ s .*close it, then "
                                               "run the command again"):
        store.add(rec("r2", [0.5, 0.3, 0.2], 2.0))
    # said on stderr as the wait begins, not as a warning a command holds until it succeeds (the review)
    assert "warning: the run store" in capsys.readouterr().err
    assert StoreLockedError.exit_code == 1  # not bad input: the same command works once it is closed
    # an error path's bookkeeping gives up sooner than the patience
    monkeypatch.setattr("mixopt.store.LOCK_PATIENCE_S", 30.0)
    with store.impatient(0.1), pytest.raises(StoreLockedError):
        store.add(rec("r2", [0.5, 0.3, 0.2], 2.0))
    # ... and only its own: a write on another thread (Tune's callbacks) meanwhile keeps the patience
    with store.impatient(0.1):
        seen: list[float | None] = []
        other = threading.Thread(target=lambda: seen.append(store._lock_wait))
        other.start()
        other.join()
        assert seen == [None] and store._lock_wait == 0.1
    assert store._lock_wait is None
    # a lock let go within the patience: the write waits for it and goes through, said once
    threading.Timer(0.4, lambda: browser.execute("ROLLBACK")).start()
    store.add(rec("r2", [0.5, 0.3, 0.2], 2.0))
    assert capsys.readouterr().err.count("locked by another program") == 1
    assert [r.run_id for r in store.runs()] == ["r1", "r2"]
    # a lock in exclusive mode stops even a read's connection: the same line, not a traceback
    monkeypatch.setattr("mixopt.store._can_write", lambda path: False)
    theirs = RunStore(store.path, create=False)
    assert theirs.readonly
    browser.execute("PRAGMA locking_mode = EXCLUSIVE")
    browser.execute("BEGIN IMMEDIATE")
    browser.execute("UPDATE runs SET cost = 1")
    with pytest.raises(StoreLockedError, match="stayed locked by another program"):
        store.runs()
    # ... and a read-only store's reads (a colleague's store), which set no journal mode first
    with pytest.raises(StoreLockedError, match="stayed locked by another program"):
        RunStore(store.path, create=False)
    with pytest.raises(StoreLockedError, match="stayed locked by another program"):
        theirs.runs()
    browser.execute("ROLLBACK")
    browser.close()
    assert [r.run_id for r in theirs.runs()] == ["r1", "r2"]


def test_a_readonly_sqlite_file_that_is_no_store_is_one_clear_error(tmp_path, monkeypatch):
    other = tmp_path / "other.sqlite"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE t (x)")
    con.close()
    monkeypatch.setattr("mixopt.store._can_write", lambda p: False)
    with pytest.raises(MixoptError, match="not a run store"):
        RunStore(other, create=False)


RUNS = __import__("pathlib").Path(__file__).parent / "data" / "runs"


def test_import_regmix_and_olmix_tables_through_the_cli(store, capsys):
    rm = RUNS / "regmix-pile-1m"
    args = ["runs", "import", "--ratios", str(rm / "train_mixture_1m.csv"), "--metrics",
            str(rm / "train_pile_loss_1m.csv"), "--fidelity", "rung=1m", "--json"]
    assert _cli(args) == 0
    said = capsys.readouterr()
    summary = json.loads(said.out)
    # its warnings in the document too, each as stderr says it (a scripts' QA: only fit's and search's were)
    assert summary["warnings"] and all(w in " ".join(said.err.split()) for w in summary["warnings"])
    runs = store.runs(role="import")
    assert summary["runs"] == len(runs) > 10 and len(summary["domains"]) == 17
    r = runs[0]
    assert r.run_id.startswith("train_mixture_1m:") and r.status == "ok" and r.fidelity == {"rung": "1m"}
    assert abs(sum(r.weights.values()) - 1) < 1e-9
    assert "metric/the_pile_pile_cc_val_loss" in r.metrics
    # the same table again: duplicate run ids, one line, exit 2, nothing added
    assert _cli(args) == 2
    assert "already in the store" in capsys.readouterr().err
    assert len(store.runs(role="import")) == len(runs)
    # the test split has its own ids (prefix from the file name)
    assert _cli(["runs", "import", "--ratios", str(rm / "test_mixture_1m.csv"), "--metrics",
                 str(rm / "test_pile_loss_1m.csv"), "--fidelity", "rung=1m"]) == 0
    om = RUNS / "olmix-64dom-512"
    assert _cli(["runs", "import", "--ratios", str(om / "full_recomputation_ratios.csv"), "--metrics",
                 str(om / "full_recomputation_metrics.csv"), "--prefix", "olmix/"]) == 0
    olmix = [r for r in store.runs(role="import") if r.run_id.startswith("olmix/")]
    assert olmix and len(olmix[0].weights) == 64 and olmix[0].label.startswith("5xC-30m")
    capsys.readouterr()
    assert _cli(["runs", "list", "--json", "--limit", "0"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert len(listed) == len(store.runs())
    # an import's runs share one time, so they list in their ids' order (a QA pass: by the millisecond)
    train = [r["run_id"] for r in listed if r["run_id"].startswith("train_mixture_1m:")]
    assert train == natural_sorted(train) and len(train) > 10
    assert any("metric/the_pile_pile_cc_val_loss" in r["metrics"] for r in listed)  # tables go back out
    # at 80 columns every run id is whole, on one line (the table splits instead)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("COLUMNS", "80")
        assert _cli(["runs", "list", "--limit", "5"]) == 0
    text = capsys.readouterr().out
    # the tables' lines (a note below them stays one line in a log, however long)
    assert all(len(line) <= 80 for line in text.splitlines() if line[:1] in "┏┃┡│└"), text
    assert all(r["run_id"] in text for r in listed[-5:])
    # the newest 5 read whole, the others by id only (a listing had decoded 40,000 runs to show 50)
    read: list[int] = []
    real = RunStore.runs

    def counted(self, **kw):  # noqa: ANN001, ANN003, ANN202
        out = real(self, **kw)
        read.append(len(out))
        return out

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(RunStore, "runs", counted)
        assert _cli(["runs", "list", "--limit", "5", "--json"]) == 0
    assert read == [5] and [r["run_id"] for r in json.loads(capsys.readouterr().out)] == [
        r["run_id"] for r in listed[-5:]]
    # imported tables have no checkpoint curves: --fidelity-law says so, and nothing about a target scale
    assert _cli(["fit", "--fidelity-law", "--target", "metric/the_pile_pile_cc_val_loss"]) == 2
    err = capsys.readouterr().err
    assert "or from an evaluator that returns no checkpoint history, hold one value each" in err
    assert "--target-size" not in err


def test_import_of_a_missing_file_is_one_line(store, capsys, tmp_path):
    missing = str(tmp_path / "no.csv")
    assert _cli(["runs", "import", "--ratios", missing, "--metrics", missing]) == 2
    assert capsys.readouterr().err.startswith("error: ")
    # into a new store: the refused import leaves no empty store behind
    fresh = tmp_path / "new.sqlite"
    assert _cli(["runs", "import", "--ratios", missing, "--metrics", missing, "--store", str(fresh)]) == 2
    assert not fresh.exists() and not list(tmp_path.glob("new.sqlite*"))
    deep = tmp_path / "a" / "b" / "s.sqlite"  # nor the folders it would have lived in
    assert _cli(["runs", "import", "--ratios", missing, "--metrics", missing, "--store", str(deep)]) == 2
    assert not (tmp_path / "a").exists()


def test_imported_proxy_runs_are_reused_by_a_search_of_the_same_corpus_and_rung(tiny_workspace, tmp_path):
    """The import computes the key a search does (rung hash included), so the search finds the runs."""
    from mixopt.search.config import SearchConfig
    from mixopt.search.imports import import_table
    from mixopt.search.prepare import prepare

    domains = ["code", "docs", "drama", "legal"]
    rng = np.random.default_rng(0)
    W = rng.dirichlet(np.ones(4), size=6)
    ratios, metrics = tmp_path / "r.csv", tmp_path / "m.csv"
    rows = [",".join([str(i), *(f"{w:.6f}" for w in row)]) for i, row in enumerate(W)]
    ratios.write_text("\n".join(["index," + ",".join(domains), *rows]) + "\n")
    rows = [",".join([str(i), *(f"{5 - w:.4f}" for w in row)]) for i, row in enumerate(W)]
    metrics.write_text("\n".join(["index," + ",".join(f"loss/{d}" for d in domains), *rows]) + "\n")
    st = RunStore(tmp_path / "s.sqlite")
    summary = import_table(st, ratios=ratios, metrics=metrics, corpus="tiny", fidelity={"rung": "xs"})
    prep = prepare(SearchConfig(corpus="tiny", rung="xs", method="random", budget=8, store=str(st.path)))
    assert summary["fidelity_key"] == prep.fidelity_key and "rung_hash" in prep.fidelity_key
    assert len(st.reusable(corpus_hash=prep.corpus_hash, fidelity_key=prep.fidelity_key,
                           domains=prep.domains)) == 6
    # a rung mixopt does not know (RegMix's 1m) is stored under its name alone
    with pytest.warns(MixoptWarning, match=r"no --corpus: runs of the built-in proxy \(--evaluator proxy, "
                                           r"the default\) are reused by searches of their corpus only"):
        other = import_table(st, ratios=ratios, metrics=metrics, fidelity={"rung": "1m"}, prefix="x:")
    assert "rung_hash" not in other["fidelity_key"]


def test_runs_list_json_is_strict_json_with_a_diverged_run(store, capsys):
    """jq and other strict parsers read it: NaN and inf become null."""
    metrics = {"loss/a": math.nan, "loss/b": math.inf, "loss/c": 2.0}
    store.add([RunRecord(run_id="d1", weights={"a": 1.0}, fidelity=FID, fidelity_key=FKEY, status="diverged",
                         metrics=metrics, objective=math.nan)])
    assert _cli(["runs", "list", "--json"]) == 0
    out = capsys.readouterr().out
    rec = json.loads(out, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))[0]
    assert rec["metrics"] == {"loss/a": None, "loss/b": None, "loss/c": 2.0} and rec["objective"] is None


def test_imported_regmix_runs_need_loss_names_to_be_reused(workspace, tmp_path):
    """RegMix's metrics are ``metric/the_pile_x_val_loss``: without --rename no search can use them (a
    warning at import and at the search's plan says so); renamed to ``loss/train_the_pile_x`` they
    are reused by an evaluator search over the same domains and fidelity."""
    from mixopt.search.config import SearchConfig
    from mixopt.search.driver import _plan
    from mixopt.search.imports import import_table
    from mixopt.search.prepare import prepare
    from mixopt.tables import read_run_tables

    runs = Path(__file__).parent / "data" / "runs" / "regmix-pile-1m"
    ratios, metrics = runs / "train_mixture_1m.csv", runs / "train_pile_loss_1m.csv"
    with pytest.warns(MixoptWarning):  # rounded rows, renormalised
        domains = list(read_run_tables(ratios, metrics).domains)
    ev = "mixopt.testing:loglinear"
    st = RunStore(tmp_path / "s.sqlite")
    with pytest.warns(MixoptWarning, match=r"no metric is named loss/<domain>.*--rename "
                                           r"'metric/\(\.\*\)_val_loss=loss/train_\\1'"):
        import_table(st, ratios=ratios, metrics=metrics, fidelity={"rung": "1m"}, evaluator=ev, prefix="a:")
    # domains not named train_<x> (the hint had named RegMix's loss/train_\1, which matched none)
    plain = tmp_path / "r.csv"
    plain.write_text("run,a,b\nr1,0.5,0.5\nr2,0.2,0.8\n")
    losses = tmp_path / "m.csv"
    losses.write_text("run,metric/a_val_loss,metric/b_val_loss\nr1,2.0,3.0\nr2,2.5,2.8\n")
    with pytest.warns(MixoptWarning, match=r"--rename 'metric/\(\.\*\)_val_loss=loss/\\1'"):
        import_table(RunStore(tmp_path / "p.sqlite"), ratios=plain, metrics=losses, fidelity={"rung": "1m"},
                     evaluator=ev)
    # RegMix measured 13 of its 17 training domains: the objective is their mean loss
    header = metrics.read_text().splitlines()[0].split(",")[1:]
    target = ",".join("train_" + c.removeprefix("metric/").removesuffix("_val_loss") for c in header)
    cfg = SearchConfig(evaluator=ev, domains=domains, rung="1m", method="random", budget=40, target=target,
                       store=str(st.path))
    with pytest.warns(MixoptWarning, match=r"^\d+ earlier run\(s\) match .* lack metrics its objective reads "
                                           r"\(loss/train_the_pile_arxiv, .*--rename"):
        plan = _plan(prepare(cfg))
    assert plan["reused"] == []
    with warnings.catch_warnings():
        warnings.simplefilter("error", MixoptWarning)
        warnings.filterwarnings("ignore", message=".*renormalised", category=MixoptWarning)
        summary = import_table(st, ratios=ratios, metrics=metrics, fidelity={"rung": "1m"}, evaluator=ev,
                               prefix="b:", rename=[r"metric/(.*)_val_loss=loss/train_\1"])
    n = summary["runs"]
    rec = st.get(summary["first"])
    assert "loss/train_the_pile_pile_cc" in rec.metrics
    assert not any(m.startswith("metric/") for m in rec.metrics)
    with pytest.warns(MixoptWarning, match=r"earlier run\(s\) match"):  # the first import's are still there
        plan = _plan(prepare(cfg, search_id="again"))
    assert len(plan["reused"]) == n
    # a metric some of the runs lack (a NaN cell at import), not a naming: no --rename advice (a QA pass)
    holes, three = tmp_path / "h.csv", tmp_path / "r3.csv"
    holes.write_text("run,loss/a,loss/b\nr1,2.0,3.0\nr2,,2.8\nr3,2.2,\n")
    three.write_text("run,a,b\nr1,0.5,0.5\nr2,0.2,0.8\nr3,0.7,0.3\n")
    with pytest.warns(MixoptWarning):
        import_table(RunStore(tmp_path / "h.sqlite"), ratios=three, metrics=holes, fidelity={"rung": "1m"},
                     evaluator=ev)
    hcfg = SearchConfig(evaluator=ev, domains=["a", "b"], rung="1m", method="random", budget=4,
                        store=str(tmp_path / "h.sqlite"))
    with pytest.warns(MixoptWarning, match=r"^2 earlier run\(s\) match .* \(loss/a, loss/b\), so they are "
                                           r"not reused: other runs of theirs have them \(a NaN or empty"):
        _plan(prepare(hcfg))
    for bad, said in ((["metric/x"], "give PATTERN=REPLACEMENT"), (["(=y"], "not a regular expression"),
                      ([r"metric/.*=loss"], "two metrics the name 'loss'")):
        with warnings.catch_warnings(record=True) as shown:  # the refusal alone: no notes on the table
            warnings.simplefilter("always")
            with pytest.raises(MixoptError, match=re.escape(said)):
                import_table(st, ratios=ratios, metrics=metrics, prefix="c:", rename=bad)
        assert not shown, [str(w.message) for w in shown]
    with pytest.warns(MixoptWarning, match=r"^--rename metrics/\(\.\*\)=loss/\\1 matches no metric name"):
        import_table(st, ratios=ratios, metrics=metrics, prefix="d:", rename=[r"metrics/(.*)=loss/\1"])


def test_runs_searches_shows_a_running_search_without_its_driver_as_stopped(store, capsys):
    from mixopt.search.lock import driver_lock
    from mixopt.search.prepare import search_dir

    store.create_search("alive", {"method": "random"}, {})
    store.create_search("dead", {"method": "random"}, {})
    (search_dir("dead")).mkdir(parents=True)
    (search_dir("dead") / "driver.lock").write_text("4242\n")  # a driver killed with -9 left it
    with driver_lock(search_dir("alive"), "alive"):
        assert _cli(["runs", "searches", "--json"]) == 0
    states = {r["search"]: r["state"] for r in json.loads(capsys.readouterr().out)}
    assert states == {"alive": "running", "dead": "stopped"}


def test_an_import_names_its_bad_values_and_refuses_another_corpus_domains(tiny_workspace, tmp_path):
    from mixopt.search.imports import import_table

    domains = ["code", "docs", "drama", "legal"]
    ratios, metrics = tmp_path / "r.csv", tmp_path / "m.csv"
    ratios.write_text("index," + ",".join(domains) + "\n1,0.25,0.25,0.25,0.25\n2,0.1,0.2,0.3,0.4\n")
    metrics.write_text("index,loss/code,loss/docs,acc\n1,nan,2.0,nan\n2,3.0,inf,\n")
    st = RunStore(tmp_path / "s.sqlite")
    with pytest.warns(MixoptWarning) as said:
        summary = import_table(st, ratios=ratios, metrics=metrics, corpus="tiny", fidelity={"rung": "xs"})
    # a column empty in every run is said once and not counted; the scattered bad values per run
    assert [str(w.message) for w in said] == [
        "metric column(s) acc have no finite value in any run; they are left out",
        "2 metric value(s) that are NaN or infinite left out of 2 imported run(s) (1, 2)",
    ]
    assert summary["metrics"] == 2
    # the metric names a warning lists are the ones stored: not the column left out for being empty
    odd = tmp_path / "m2.csv"
    odd.write_text("index,acc,ppl,f1,em,gone\n1,0.5,9.0,0.4,0.3,nan\n2,0.6,8.0,0.5,0.2,\n")
    with pytest.warns(MixoptWarning) as said:
        summary = import_table(st, ratios=ratios, metrics=odd, corpus="tiny", prefix="odd:")
    (named,) = [str(w.message) for w in said if "no metric is named" in str(w.message)]
    assert "(the metrics are acc, ppl, f1, … (4 in all))" in named and summary["metrics"] == 4
    # downstream scores (Olmix's): no rename could make them a domain's loss, so none is suggested
    assert "none is a domain's own loss (downstream scores?)" in named and "--rename" not in named
    other = tmp_path / "r2.csv"
    other.write_text("index,code,docs,poems\n1,0.5,0.25,0.25\n")
    with pytest.raises(MixoptError, match=r"not corpus 'tiny''s: the corpus lacks poems; the table lacks "
                                          r"drama, legal\. Import runs trained on tiny"):
        import_table(st, ratios=other, metrics=metrics, corpus="tiny", prefix="o:")
    # A corpus not built here (a typo of a built name did this): no search could reuse the runs,
    # and their ids would be taken. Refused, nothing stored.
    with pytest.raises(MixoptError, match=r"--corpus 'nosuch' is not built here, and runs are reused by the "
                                          r"hash of a built corpus: build it first"):
        import_table(st, ratios=ratios, metrics=metrics, corpus="nosuch", prefix="n:")
    assert import_table(st, ratios=ratios, metrics=metrics, corpus="tiny", prefix="n:")["runs"] > 0
    for bad in ("", "not a module", "mod.only"):
        with pytest.raises(MixoptError, match="give the module:function the runs were measured with"):
            import_table(st, ratios=ratios, metrics=metrics, evaluator=bad, prefix="e:")


def test_runs_whose_search_id_has_no_search_record_are_named(store, capsys):
    # a benchmark's runs (bench fit --tasks lengths) carry a search id that no search recorded:
    # `runs searches` said "0 searches" and --search NAME errors said "the store has no searches yet"
    store.add([rec("r1", [0.5, 0.5, 0.0], 1.0, search="lengths-150000"),
               rec("r2", [0.2, 0.3, 0.5], 1.1, search="lengths-150000"),
               rec("r3", [1, 0, 0], 2.0, search="x")])
    store.create_search("s1", {"method": "regmix"}, {})
    store.add(rec("r4", [0.0, 0.5, 0.5], 1.2, search="s1"))
    store.add(rec("r5", [0.1, 0.4, 0.5], None, search="s1", status="failed", error="boom"))
    assert store.unrecorded_search_ids() == {"lengths-150000": 2, "x": 1}
    assert store.run_counts() == {"lengths-150000": (2, 2), "x": (1, 1), "s1": (1, 2)}
    with pytest.raises(MixoptError, match=r"'lengths-150000' in .* names 2 run\(s\) but no search: no "
                                          r"`mixopt search` made them .*`mixopt runs list --search "
                                          r"lengths-150000`"):
        store.require_search("lengths-150000")
    with pytest.raises(MixoptError, match=r"no search named 'nosuch' .*; known searches: s1; runs without a "
                                          r"search carry lengths-150000, x$"):
        store.require_search("nosuch")
    capsys.readouterr()
    assert _cli(["runs", "searches", "--store", str(store.path)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "1 search in" in out and "carry lengths-150000 (2 runs), x (1 run)" in out
    # its failed run (a retry's) is counted apart: "2" had read as two runs for a budget of one
    assert "2 (1 ok)" in out
    assert _cli(["runs", "searches", "--store", str(store.path), "--json"]) == 0  # a script sees them too
    rows = json.loads(capsys.readouterr().out)
    assert [(r["search"], r["state"], r["runs"]) for r in rows[1:]] == [("lengths-150000", "no record", 2),
                                                                       ("x", "no record", 1)]
    assert rows[0]["search"] == "s1" and (rows[0]["runs_ok"], rows[0]["runs"]) == (1, 2)
    assert [r["runs_ok"] for r in rows[1:]] == [2, 1]
    assert _cli(["report", "lengths-150000", "--store", str(store.path)]) == 2
    assert "names 2 run(s) but no search" in capsys.readouterr().err


def test_runs_list_says_where_a_cut_error_is_whole(store, capsys) -> None:  # noqa: ANN001
    """``runs list`` cuts an error to 40 characters of its first line; it says so, and where to read it."""
    store.add([rec("r1", [0.2, 0.3, 0.5], 2.0)])
    assert _cli(["runs", "list"]) == 0
    assert "errors are cut" not in capsys.readouterr().out  # nothing was cut
    traceback = "Traceback (most recent call last):\n  File x.py, line 3\nRuntimeError: CUDA out of memory"
    store.add([rec("r2", [0.5, 0.5, 0.0], None, status="failed", error=traceback)])
    assert _cli(["runs", "list"]) == 0
    said = " ".join(capsys.readouterr().out.split())
    assert "cut to their first line, at 40 characters; `mixopt runs list --json` prints them whole" in said
    assert _cli(["runs", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[-1]["error"] == traceback


def test_searches_plan_one_at_a_time_per_store(tmp_path) -> None:  # noqa: ANN001
    """Two searches started together had planned before either was recorded, and ran the same seeded
    swarm twice (a QA pass): planning holds a lock on the store until the search is recorded."""
    import threading

    from mixopt.search.lock import planning_lock

    path = tmp_path / "runs.sqlite"
    held, release, second = threading.Event(), threading.Event(), threading.Event()

    def first() -> None:
        with planning_lock(path):
            held.set()
            release.wait(10)

    def other() -> None:
        with planning_lock(path):
            second.set()

    a = threading.Thread(target=first)
    a.start()
    assert held.wait(10)
    b = threading.Thread(target=other)
    b.start()
    assert not second.wait(0.5)  # waits while the first plans
    release.set()
    a.join(10)
    b.join(10)
    assert second.is_set()


def test_the_store_refuses_weights_that_are_no_mixture(store) -> None:  # noqa: ANN001
    """Library use (a QA pass): NaN, negative or unnormalised weights had been stored and fitted on."""
    for w in ([float("nan"), 0.5, 0.5], [-0.2, 0.7, 0.5], [0.5, 0.5, 0.5]):
        with pytest.raises(MixoptError, match="its weights are not a mixture"):
            store.add([rec("bad", w, 2.0)])
        with pytest.raises(MixoptError, match="its weights are not a mixture"):
            store.begin(rec("bad", w, None, status="running"))
    assert store.runs() == []


def test_a_full_disk_under_the_store_is_an_oserror_naming_it(store, monkeypatch):
    """A QA pass: a full disk gave `runs import` "cannot rollback - no transaction is active" (a second
    ROLLBACK hid SQLite's own error), and other commands a bare "disk I/O error"."""
    import errno

    store.add(rec("r1", [0.2, 0.3, 0.5], 1.0))
    begin = RunStore._begin_write

    def cramped(self, con):  # noqa: ANN001, ANN202 - the database may not grow: SQLite's "disk is full"
        begin(self, con)
        pages = con.execute("PRAGMA page_count").fetchone()[0]
        con.execute(f"PRAGMA max_page_count = {pages}")

    monkeypatch.setattr(RunStore, "_begin_write", cramped)
    big = [rec(f"b{i}", [0.2, 0.3, 0.5], 1.0, error="x" * 4000) for i in range(50)]
    with pytest.raises(OSError) as full:
        store.add(big)
    assert full.value.errno == errno.ENOSPC and full.value.filename == str(store.path)
    monkeypatch.undo()
    assert [r.run_id for r in RunStore(store.path, create=False).runs()] == ["r1"]  # nothing half-written


def test_a_store_a_full_disk_stops_being_made_is_the_full_disk_and_is_not_kept(tmp_path, monkeypatch):
    """A QA pass: a search whose --store was on a full disk said "cannot create run store …" with exit
    2 (not the full disk's line and exit 1) and left a 4 KB file without tables where the store was to be."""
    import contextlib
    import errno

    from mixopt.errors import environment_message

    connect = RunStore._connect

    @contextlib.contextmanager
    def cramped(self):  # noqa: ANN001, ANN202 - the new file may not grow past its first page
        with connect(self) as con:
            con.execute("PRAGMA max_page_count = 1")
            yield con

    monkeypatch.setattr(RunStore, "_connect", cramped)
    path = tmp_path / "runs.sqlite"
    with pytest.raises(OSError) as full:
        RunStore(path)
    assert full.value.errno == errno.ENOSPC and full.value.filename == str(path)
    assert environment_message(full.value)[1] == 1
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_a_search_on_a_store_it_cannot_write_is_told_so(store, monkeypatch):
    """A QA pass: a search with --store on a read-only mount read "cannot open run store …: unable to
    open database file" rather than that the store is read-only and what to do."""
    import contextlib

    store.add(rec("r1", [0.2, 0.3, 0.5], 1.0))
    monkeypatch.setattr("mixopt.store._can_write", lambda p: False)

    @contextlib.contextmanager
    def refused(self):  # noqa: ANN001, ANN202 - SQLite's word where it cannot make the WAL's files
        raise sqlite3.OperationalError("unable to open database file")
        yield

    monkeypatch.setattr(RunStore, "_connect", refused)
    with pytest.raises(MixoptError, match="is read-only for this user, and this command writes to it"):
        RunStore(store.path)


def test_a_disk_io_error_is_one_line(store) -> None:  # noqa: ANN001
    """Under `ulimit -f`, SQLite's COMMIT said "disk I/O error" on a disk with room: a traceback (a QA
    pass). It is the OSError it stands for, and the CLI's line says what to look at, exit 1."""
    import errno

    from mixopt.errors import environment_message

    with pytest.raises(OSError) as io:
        store._raise_if_disk_full(sqlite3.OperationalError("disk I/O error"))
    assert io.value.errno == errno.EIO and io.value.filename == str(store.path)
    said, code = environment_message(io.value)
    assert code == 1 and said.startswith(f"input/output error writing {store.path}: a file size limit")


def test_runs_of_no_search_are_deleted_and_a_searchs_runs_are_kept(store, tmp_path, capsys):
    """`runs delete` removes an import made with the wrong options (or a benchmark's runs): never a
    search's runs, nor runs a search reused, nor a running one; it asks first, or takes --yes."""
    from mixopt.search.imports import import_table

    ratios, metrics = tmp_path / "r.csv", tmp_path / "m.csv"
    ratios.write_text("run,a,b\n" + "".join(f"x{i},{i / 10},{1 - i / 10}\n" for i in range(11)))
    metrics.write_text("run,loss/a,loss/b\n" + "".join(f"x{i},{2 - i / 10},{1 + i / 10}\n"
                                                       for i in range(11)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MixoptWarning)
        import_table(store, ratios=ratios, metrics=metrics, search="mine", prefix="m:")
        import_table(store, ratios=ratios, metrics=metrics, search="mine", prefix="n:")  # adds to it
        import_table(store, ratios=ratios, metrics=metrics, prefix="o:")
    assert len(store.runs(search_id="mine")) == 22 and len(store.runs(prefix="o:")) == 11
    store.create_search("s1", {"method": "regmix"}, {"reused": ["o:x3"], "swarm": []})
    store.add(rec("s1-run", [0.5, 0.5, 0.0], 1.0, search="s1"))
    store.add(rec("half", [0.5, 0.5, 0.0], None, search=None, status="running"))
    # an import's name is not a search's, and a search's name is not an import's
    with pytest.raises(MixoptError, match=r"--search 's1' is a search of .*imported runs join no search"):
        import_table(store, ratios=ratios, metrics=metrics, search="s1", prefix="p:")
    with pytest.raises(MixoptError, match=r"--search 'a b' is not a valid name"):
        import_table(store, ratios=ratios, metrics=metrics, search="a b", prefix="p:")
    from mixopt.search.config import SearchConfig
    from mixopt.search.driver import run_search

    with pytest.raises(MixoptError, match=r"22 run\(s\) in .* carry the name 'mine' \(imported, or a "
                                          r"benchmark's\), and a search's runs are its own; pick another "
                                          r"--name"):
        run_search(SearchConfig(evaluator="mixopt.testing:loglinear", domains=("a", "b"), budget=4,
                                validate=0, name="mine", store=str(store.path)))
    for ids, why in ((["s1-run"], r"runs of search 's1' are its record"),
                     (["o:x3", "o:x4"], r"search s1 reused 1 of these 2 runs \(o:x3\), which its resume "
                                        r"and report read, so nothing was deleted; --skip-used deletes the "
                                        r"other 1"),
                     (["half"], r"run 'half' is running"), (["nosuch"], r"no run 'nosuch' in")):
        with pytest.raises(MixoptError, match=why):
            store.delete_runs(ids)
    assert len(store.runs()) == 35  # nothing went
    path = str(store.path)
    capsys.readouterr()
    assert _cli(["runs", "delete", "--search", "mine", "--store", path]) == 2  # no terminal: --yes
    assert "deleting 22 runs (m:x0 … n:x10) from" in capsys.readouterr().err
    assert len(store.runs(search_id="mine")) == 22
    assert _cli(["runs", "delete", "--search", "mine", "--prefix", "n:", "--yes", "--store", path]) == 0
    assert "deleted 11 runs (n:x0 … n:x10)" in " ".join(capsys.readouterr().out.split())
    assert [r.run_id for r in store.runs(search_id="mine")][:2] == ["m:x0", "m:x1"]
    assert _cli(["runs", "delete", "--prefix", "o:", "--yes", "--store", path]) == 2  # o:x3 was reused
    assert "search s1 reused 1 of these 11 runs (o:x3)" in capsys.readouterr().err
    # a mistyped --run deletes nothing (the others had gone)
    assert _cli(["runs", "delete", "--run", "o:x1", "--run", "o:x99", "--yes", "--store", path]) == 2
    assert "no run 'o:x99' in" in capsys.readouterr().err and store.get("o:x1") is not None
    assert _cli(["runs", "delete", "--run", "o:x1", "--run", "o:x2", "-y", "--store", path, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["run_ids"] == ["o:x1", "o:x2"]
    assert _cli(["runs", "delete", "--prefix", "q:", "--store", path]) == 2
    assert "no run in" in capsys.readouterr().err and len(store.runs()) == 22
    assert _cli(["runs", "delete", "--store", path]) == 2
    assert "say which runs to delete" in capsys.readouterr().err
    assert _cli(["runs", "delete", "--prefix", "", "--store", path]) == 2
    assert "--prefix '' matches every run" in capsys.readouterr().err
    assert _cli(["runs", "import", "--ratios", str(ratios), "--metrics", str(metrics), "--prefix", "g:",
                 "--search", "g2", "--evaluator", "m:f", "--store", path]) == 0
    assert " as 'g2' (ids g:x0 … g:x10" in " ".join(capsys.readouterr().out.split())
    assert _cli(["runs", "list", "--search", "g2", "--store", path, "--json"]) == 0
    assert {r["search_id"] for r in json.loads(capsys.readouterr().out)} == {"g2"}
    assert _cli(["runs", "list", "--search", "g2", "--status", "failed", "--store", path, "--json"]) == 0
    assert capsys.readouterr().out.strip() == "[]"  # none failed: no refusal that names the command run
    # only the run ids a search's plan and result hold are its: a run named like a candidate is not
    store.create_search("s2", {"method": "regmix"}, {"reused": []})
    store.update_search("s2", result={"candidates": [{"name": "proposal", "measured": {"run_ids": ["v1"]}}]})
    store.add([rec("proposal", [1, 0, 0], 1.0, search=None), rec("v1", [1, 0, 0], 1.0, search=None)])
    assert store.delete_runs(["proposal"]) == ["proposal"]
    with pytest.raises(MixoptError, match=r"search s2 reused this run \(v1\)"):
        store.delete_runs(["v1"])
    # a run two searches used is named once, by both; --skip-used deletes the others of a selection
    store.update_search("s1", plan={"reused": ["o:x3"], "validation_reused": {"slot": "v1"}})
    with pytest.raises(MixoptError, match=r"searches s1, s2 reused 2 of these 3 runs \(o:x3, v1\), which "
                                          r"their resume and report read, .*--skip-used deletes the other 1"):
        store.delete_runs(["o:x3", "v1", "o:x5"])
    assert _cli(["runs", "delete", "--run", "o:x3", "--run", "o:x5", "--skip-used", "-y", "--store",
                 path]) == 0
    out = capsys.readouterr()
    assert "1 of the 2 matching runs were reused by search s1 and are kept (--skip-used)" in out.err
    assert "deleted 1 run (o:x5)" in out.out and store.get("o:x3") is not None and store.get("o:x5") is None
    assert _cli(["runs", "delete", "--run", "o:x3", "--skip-used", "-y", "--store", path]) == 2
    assert "search s1 reused all 1 of these runs, so --skip-used leaves none" in capsys.readouterr().err
    # a metric renamed to a run table's id column would be read back as ids
    from mixopt.search.imports import import_table as imp

    with pytest.raises(MixoptError, match=r"--rename gives a metric the name ' index', a run table's id "):
        imp(store, ratios=ratios, metrics=metrics, prefix="ren:", rename=["loss/a= index"], evaluator="m:f")


def test_a_delete_gives_the_space_back_to_the_disk(store, capsys, monkeypatch) -> None:  # noqa: ANN001
    """SQLite keeps a deleted row's pages in the file until VACUUM: a mistaken import of many runs
    had left the store as large after `runs delete` as before (a QA pass at 40,000 runs)."""
    store.add([rec(f"imp{i}", [0.2, 0.3, 0.5], 1.0, search=None, error="e" * 2000) for i in range(1500)])
    store.add(rec("keep", [0.5, 0.5, 0.0], 1.0, search=None))
    big = store._size()
    assert big > 3 << 20
    capsys.readouterr()
    assert _cli(["runs", "delete", "--prefix", "imp", "-y", "--store", str(store.path), "--json"]) == 0
    said = json.loads(capsys.readouterr().out)
    assert said["deleted"] == 1500 and said["store_bytes"]["before"] >= big
    assert said["store_bytes"]["after"] == store._size() < big / 4
    assert [r.run_id for r in store.runs()] == ["keep"]
    assert store.compact() is None  # little lies free now: no rewrite of the whole file for it
    # held by another program's write, the delete still ends at once, and says why the space stays
    many = [rec(f"imp{i}", [0.2, 0.3, 0.5], 1.0, search=None, error="e" * 2000) for i in range(1500)]
    store.add(many)
    store.delete_runs([r.run_id for r in many])
    other = sqlite3.connect(store.path, isolation_level=None)
    try:
        other.execute("BEGIN EXCLUSIVE")
        monkeypatch.setattr("mixopt.store.BUSY_TIMEOUT_S", 0.2)
        assert store.compact() == "another program writes to the store"
    finally:
        other.execute("ROLLBACK")
        other.close()
    # a reader holds off the checkpoint that would shrink the file: said, not shown as a shrink
    reader = sqlite3.connect(store.path, isolation_level=None)
    try:
        reader.execute("BEGIN")
        reader.execute("SELECT COUNT(*) FROM runs").fetchone()
        assert store.compact() == "another program reads the store: the file shrinks once it is done"
    finally:
        reader.execute("COMMIT")
        reader.close()
    store.add(many)
    assert _cli(["runs", "delete", "--prefix", "imp", "-y", "--store", str(store.path)]) == 0
    assert re.search(r"the store's file shrank from \d+\.\d MB to \d+ KB", capsys.readouterr().out)
    assert [r.run_id for r in store.runs()] == ["keep"]
    # and on demand, under 1 MB too; a store in use says why, exit 1 (the machine's state, not the input)
    store.add(many[:10])
    store.delete_runs([r.run_id for r in many[:10]])
    assert _cli(["runs", "compact", "--store", str(store.path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["store_bytes"]["after"] == store._size()
    other = sqlite3.connect(store.path, isolation_level=None)
    try:
        other.execute("BEGIN EXCLUSIVE")
        assert _cli(["runs", "compact", "--store", str(store.path)]) == 1
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert "was not compacted: another program writes to the store" in capsys.readouterr().err
    readonly = RunStore(store.path, create=False)
    readonly.readonly = True  # as for a store another user owns (root writes anywhere)
    with pytest.raises(MixoptError, match="read-only"):
        readonly.compact()


def test_a_delete_waits_for_a_search_that_is_planning(store) -> None:  # noqa: ANN001
    """A search chooses the runs it reuses before it is recorded: a delete meanwhile would remove runs
    it fits (a QA pass), so the delete waits for its planning lock."""
    import threading

    from mixopt.search.imports import delete_runs
    from mixopt.search.lock import planning_lock

    store.add(rec("imp", [1, 0, 0], 1.0, search=None))
    done = threading.Event()
    with planning_lock(store.path):
        worker = threading.Thread(target=lambda: (delete_runs(store, ["imp"]), done.set()))
        worker.start()
        assert not done.wait(1.0) and store.get("imp") is not None
    worker.join(10)
    assert done.is_set() and store.get("imp") is None


def test_delete_and_export_without_a_store_make_none(workspace, tmp_path, capsys) -> None:  # noqa: ANN001
    for verb in (["delete", "--prefix", "x"], ["export", "--ratios", str(tmp_path / "r.csv"), "--metrics",
                                                str(tmp_path / "m.csv")]):
        assert _cli(["runs", *verb]) == 2
        assert "no run store at" in capsys.readouterr().err and not default_path().exists()


def test_many_run_ids_are_read_in_chunks_under_sqlites_parameter_cap(store, monkeypatch):
    """A QA pass at scale: `runs delete` of 40,000 --run ids gave "too many SQL variables" on an SQLite
    that caps a statement at 32,766 parameters (999 before 3.32); adding 50,000 runs took a minute in
    the duplicate check alone. Here the cap is 999, as old SQLite builds have it."""
    import mixopt.store as store_mod

    real = sqlite3.connect

    def capped(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        con = real(*args, **kwargs)
        con.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)
        return con

    monkeypatch.setattr(store_mod.sqlite3, "connect", capped)
    recs = [RunRecord(run_id=f"r{i}", weights={"a": 0.5, "b": 0.5}, fidelity={}, fidelity_key="{}",
                      status="ok" if i % 3 else "failed", metrics={"loss/a": float(i)}) for i in range(2500)]
    store.add(recs)
    ids = [f"r{i}" for i in range(2499, -1, -1)] + ["r7", "nope"]  # any order, an id twice, one unknown
    got = store.runs(run_ids=ids)
    assert [r.run_id for r in got] == [r.run_id for r in store.runs()]  # each once, oldest first
    assert len(store.runs(run_ids=ids, status="ok")) == sum(1 for i in range(2500) if i % 3)
    with pytest.raises(MixoptError, match="duplicate run ids: d1, d2; every run needs its own id"):
        store.add([dataclasses.replace(recs[0], run_id=i) for i in ("d2", "d1", "x", "d1", "d2")])


@pytest.mark.parametrize("args", [
    ("runs", "list"), ("runs", "searches"), ("fit", "--fidelity-law"),
    ("runs", "import", "--ratios", "r.csv", "--metrics", "m.csv", "--prefix", "t:"),
    ("search", "--corpus", "nope", "--budget", "2", "--out", "m.json"),
    ("bench", "fit", "--no-timing", "--tasks", "store"),
], ids=["list", "searches", "fidelity-law", "import", "search", "bench-fit"])
def test_an_empty_store_option_is_refused_by_every_command(args, tmp_path, monkeypatch, capsys):
    """A QA pass: `--store ''` had been the workspace's store to `fit --fidelity-law` and `search`, and
    the folder `.` to `runs list`. A search stored so reads back with the workspace's store."""
    monkeypatch.setenv("MIXOPT_HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    assert _cli([*args, "--store", " "]) == 2
    assert "--store ' ' is blank" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
    assert SearchConfig.from_dict({"corpus": "c", "store": ""}).store is None


@pytest.mark.parametrize(("plan", "result"), [
    ({"reused": ["imp"]}, None),
    ({"swarm_borrowed": {"slot-3": "imp"}}, None),
    ({"validation_reused": {"proposal/seed0": "imp"}}, None),
    ({}, {"candidates": [{"name": "uniform", "measured": {"run_ids": ["imp"]}}]}),
], ids=["reused", "swarm-borrowed", "validation-reused", "measured"])
def test_each_way_a_search_uses_a_run_keeps_it_from_deletion(plan, result, store):
    """A mutation pass: with any one of these four left out of what a search uses, no test failed (the
    one test that named them gave each run two ways)."""
    store.add(rec("imp", [0.5, 0.25, 0.25], 1.0, search=None))
    store.create_search("s1", {"method": "regmix"}, plan)
    if result is not None:
        store.update_search("s1", result=result)
    with pytest.raises(MixoptError, match=r"search s1 reused this run \(imp\)"):
        store.delete_runs(["imp"])
    assert store.get("imp") is not None


def test_a_run_whose_weights_sum_past_the_tolerance_is_refused(store):
    """A mutation pass: the tests had passed with the store's tolerance on a run's sum of weights ten
    times looser (1e-2 for 1e-3, the mixture's)."""
    store.add(rec("near", [0.5005, 0.25, 0.25], 1.0))  # within it: kept as given
    with pytest.raises(MixoptError, match="its weights are not a mixture"):
        store.add(rec("off", [0.502, 0.25, 0.25], 1.0))
    assert [r.run_id for r in store.runs()] == ["near"]


def _count_connections(monkeypatch) -> list[int]:  # noqa: ANN001
    """How many connections the store opens (one element per connection)."""
    opened: list[int] = []
    real = RunStore._connect

    def counted(self):  # noqa: ANN001, ANN202
        opened.append(1)
        return real(self)

    monkeypatch.setattr(RunStore, "_connect", counted)
    return opened


def test_matrix_of_some_runs_reads_only_those(store, monkeypatch):
    """A scale QA pass: a search's report and fit of its 2,000 runs read every run of the store over
    its domains (50,000: 22 s and 1.8 GB) and kept those it named."""
    import mixopt.store as store_mod

    store.add([rec(f"r{i:02d}", [0.2, 0.3, 0.5], 2.0 + i / 100) for i in range(30)])
    decoded: list[str] = []
    real = store_mod._record

    def counted(row):  # noqa: ANN001, ANN202
        decoded.append(row["run_id"])
        return real(row)

    monkeypatch.setattr(store_mod, "_record", counted)
    X, y, ids = store.matrix(DOMAINS, Objective(), run_ids=["r07", "r03", "r21", "nope"])
    assert ids == ["r03", "r07", "r21"] and sorted(decoded) == ids
    np.testing.assert_allclose(y, [3.03, 3.07, 3.21])


def test_metric_rows_and_get_many_read_in_one_query(store, monkeypatch):
    """A scale QA pass: each run's metrics, and the runs a search starts from, had been read with a
    connection per run (a search reusing 20,000 runs: 40 s of its 90)."""
    store.add([rec(f"r{i:02d}", [0.2, 0.3, 0.5], 2.0 + i) for i in range(12)])
    opened = _count_connections(monkeypatch)
    Y = store.metric_rows(["r05", "r01", "r10"], ["loss/b", "loss/a"])
    np.testing.assert_allclose(Y, [[8.0, 7.0], [4.0, 3.0], [13.0, 12.0]])
    assert len(opened) == 1
    assert store.metric_rows(["r05", "nope"], ["loss/a"]) is None
    assert store.metric_rows(["r05"], ["loss/x"]) is None
    opened.clear()
    got = store.get_many(["r03", "nope", "r00", "r03"])
    assert [r.run_id if r else None for r in got] == ["r03", None, "r00", "r03"] and len(opened) == 1
    assert got[0] == store.get("r03")


def test_a_search_phase_reads_its_done_and_warm_runs_at_once(store, monkeypatch, tmp_path):
    """A scale QA pass: a phase read each finished slot's run and each reused run with ``get`` (a
    connection each); it reads them together, and warms the searcher with them in the same order."""
    from types import SimpleNamespace

    from mixopt.search.driver import _run_phase
    from mixopt.search.searcher import SwarmSearcher

    rows = [[0.2, 0.3, 0.5], [0.5, 0.5, 0.0], [0.1, 0.1, 0.8]]
    searcher = SwarmSearcher.from_rows(rows, domains=DOMAINS, search_id="me", seed=0)
    store.add([rec(f"me-s{i:04d}-a1", w, 2.0 + i, search="me") for i, w in enumerate(rows)]
              + [rec(f"old-{i}", [0.4, 0.4, 0.2], 1.0 + i, search="old") for i in range(4)])
    monkeypatch.setattr(RunStore, "get", lambda self, run_id: pytest.fail(f"get({run_id}) one by one"))
    prep = SimpleNamespace(config=SimpleNamespace(retries=1), store=store, search_id="me",
                           objective=Objective(), domains=DOMAINS, resume="mixopt search --resume me",
                           workroot=tmp_path)
    _run_phase(prep, searcher, "swarm", lambda: None, None, warm=["old-2", "old-0"])
    assert [o["run_id"] for o in searcher.observations] == [
        "me-s0000-a1", "me-s0001-a1", "me-s0002-a1", "old-2", "old-0"]
    np.testing.assert_allclose([o["value"] for o in searcher.observations], [3.0, 4.0, 5.0, 4.0, 2.0])


def test_borrowable_compares_each_slot_with_the_runs_near_it_only(store, monkeypatch):
    """A scale QA pass: a resume matched each of its slots against every earlier run at its seed
    (1,000 slots and 5,000 runs: 4 minutes before any run). The same first run in the store's order
    measures each slot, and a slot is compared with only the runs next to its mixture."""
    import mixopt.search.validate as validate
    from mixopt.search.searcher import Slot

    rng = np.random.default_rng(3)
    W = rng.dirichlet(np.ones(3), 60)
    at = "2026-12-06T10:00:{:02d}+00:00".format
    store.add([rec(f"old-{i:02d}", list(w), 2.0, search="old", created=at(i)) for i, w in enumerate(W)]
              + [rec("twin", list(W[7]), 2.0, search="old", created=at(59)),  # later: not the one taken
                 dataclasses.replace(rec("seed1", list(W[9]), 2.0, search="old"), seed=1)])
    nudged = W[3] + np.array([4e-10, -4e-10, 0.0])
    off = W[4] + np.array([3e-9, -3e-9, 0.0])
    slots = [Slot(key=k, weights=list(w), seed=seed, role="swarm", label=k) for k, w, seed in (
        ("a", W[7], 0), ("b", nudged, 0), ("c", off, 0), ("d", W[9], 1), ("e", W[11], 2), ("f", W[11], 0))]
    calls: list[str] = []
    real = validate.measures

    def counted(run, slot, domains):  # noqa: ANN001, ANN202
        calls.append(run.run_id)
        return real(run, slot, domains)

    monkeypatch.setattr(validate, "measures", counted)
    found = validate.borrowable(store, slots, search_id="me", corpus_hash="h1", fidelity_key=FKEY,
                                domains=DOMAINS, objective=Objective())
    assert found == {"a": "old-07", "b": "old-03", "d": "seed1", "f": "old-11"}
    assert len(calls) <= 8, calls  # a scan had compared each slot with all 61 runs at seed 0


def test_listings_and_a_new_search_read_no_finished_search_plans(store, monkeypatch, capsys):
    """A scale QA pass: `runs list` (for the names of the last 10 searches), `runs searches` and every
    new search decoded each search's plan, the swarm and every reused run's id (300 searches reusing
    5,000 runs: 14 s and 570 MB to list 50 runs). A plan that is not read cannot break them either."""
    from types import SimpleNamespace

    from mixopt.search.driver import _planned_elsewhere

    store.add(rec("r1", [0.2, 0.3, 0.5], 2.0, search="done"))
    store.create_search("done", {"method": "linear", "budget": 4}, {"swarm": [[0.2, 0.3, 0.5]]})
    store.update_search("done", state="done")
    store.create_search("going", {"method": "linear"}, {"swarm": [[0.5, 0.5, 0.0]], "domains": DOMAINS})
    with sqlite3.connect(store.path) as con:  # a plan read would fail
        con.execute("UPDATE searches SET plan = 'not json' WHERE search_id = 'done'")
    assert _cli(["runs", "list"]) == 0
    assert "searches: done (done), going (running)" in capsys.readouterr().out
    assert _cli(["runs", "searches", "--json"]) == 0
    assert [s["search"] for s in json.loads(capsys.readouterr().out)] == ["done", "going"]
    read: list[str] = []
    real = RunStore.get_search
    monkeypatch.setattr(RunStore, "get_search", lambda self, sid: read.append(sid) or real(self, sid))
    prep = SimpleNamespace(store=store, search_id="me", fidelity_key=FKEY, corpus_hash="h1", domains=DOMAINS)
    assert _planned_elsewhere(prep) == [] and read == ["going"]  # its driver is not alive


def test_a_failed_command_keeps_a_store_another_process_made_meanwhile(tmp_path, monkeypatch):
    """made_store had judged the store its own by its absence a moment before it opened it: a store
    another process made in between (a search starting beside `runs import`) was removed when the
    command failed. And a store another process has open is not removed from under it."""
    import mixopt.atomic as atomic
    from mixopt.store import made_store

    path = tmp_path / "s.sqlite"
    real = atomic.first_missing

    def other_process_makes_it(folder):  # noqa: ANN001, ANN202 - runs after the absence was seen
        RunStore(path)
        return real(folder)

    monkeypatch.setattr(atomic, "first_missing", other_process_makes_it)
    with pytest.raises(RuntimeError), made_store(path):
        raise RuntimeError("refused")
    assert path.is_file()
    monkeypatch.setattr(atomic, "first_missing", real)

    path.unlink()
    with pytest.raises(RuntimeError), made_store(path) as st:
        other = sqlite3.connect(st.path)  # another process reading it now
        other.execute("SELECT COUNT(*) FROM runs").fetchone()
        raise RuntimeError("refused")
    assert path.is_file() and other.execute("SELECT COUNT(*) FROM runs").fetchone() == (0,)
    other.close()
    with pytest.raises(RuntimeError), made_store(tmp_path / "new" / "t.sqlite"):  # its own: removed
        raise RuntimeError("refused")
    assert not (tmp_path / "new").exists()


def test_run_ids_may_be_any_iterable(store):
    """get_many and metric_rows read their ids twice (a query, then their order): a generator had
    given [] and an empty matrix; matrix(run_ids=...) had taken any iterable before it filtered in
    SQL (len() of a generator)."""
    store.add([rec(f"r{i}", [0.2, 0.3, 0.5], 2.0 + i) for i in range(3)])
    assert [r.run_id for r in store.get_many(i for i in ["r2", "r0"])] == ["r2", "r0"]
    np.testing.assert_allclose(store.metric_rows((i for i in ["r2", "r0"]), ["loss/a"]), [[4.0], [2.0]])
    assert store.matrix(DOMAINS, Objective(), run_ids=(i for i in ["r2", "r0"]))[2] == ["r0", "r2"]
    assert store.matrix(DOMAINS, Objective(), run_ids={"r1"})[2] == ["r1"]
    assert store.matrix(DOMAINS, Objective(), run_ids=[])[2] == []
    many = [f"x{i}" for i in range(700)] + ["r1", "r1"]  # past a chunk, and an id twice
    assert store.matrix(DOMAINS, Objective(), run_ids=iter(many))[2] == ["r1"]
    assert [r and r.run_id for r in store.get_many(iter(many))][-3:] == [None, "r1", "r1"]
