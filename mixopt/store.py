"""The run store: every run ever evaluated, in one SQLite file, read into polars for fitting.

One file in the workspace (``<MIXOPT_HOME>/runs.sqlite`` unless a path is given), in WAL mode
with a busy timeout, so Ray trials in other processes and the driver write to it side by side.
Two tables:

``runs``      one row per evaluation (a retry is a new row with ``attempt`` + 1): run id, search
              id, role (``swarm``, ``validate``, ``import``) and label, corpus name and hash, the
              fidelity (JSON) and its key, the domains, the objective key and value, status
              (``running`` → ``ok`` | ``diverged`` | ``failed``), seed, weights, metrics, history,
              cost, error text, attempt, created and finished times.
``searches``  one row per search: its resolved config, its plan (the sampled swarm), its state
              and its result (a failed search's: ``{"error": its one-line message}``).

A failed or diverged run is recorded, never lost, and never fitted: :meth:`RunStore.matrix`
returns only ``ok`` runs with a finite objective. Runs of the same corpus hash, fidelity key and
domains are reusable by later searches (:meth:`RunStore.reusable`).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import json
import math
import os
import re
import sqlite3
import sys
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from mixopt import paths
from mixopt.errors import MixoptError, StoreLockedError, refuse_blank
from mixopt.mixture import RENORM_TOL
from mixopt.objective import Objective

RunStatus = Literal["ok", "diverged", "failed", "running"]
RUN_STATUSES = ("ok", "diverged", "failed", "running")
RUN_ROLES = ("swarm", "validate", "import")  # a search's proxy runs, its validation runs, a table's
SCHEMA_VERSION = 1
# Long enough for a writer to wait out another process's commit on a loaded 2-core machine.
BUSY_TIMEOUT_S = 60.0
# How long a write waits in all for a lock another program holds (a database browser with a
# transaction open), warned of after the first busy timeout: a search's result waits rather than
# being lost, and a command ends with one line rather than a traceback (a QA pass).
LOCK_PATIENCE_S = 600.0

# what runs without a checkpoint history are
NO_HISTORY = ("runs imported from tables of one row per run, or from an evaluator that returns no checkpoint "
              "history")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id        TEXT PRIMARY KEY,
    search_id     TEXT,
    role          TEXT NOT NULL DEFAULT 'swarm',
    label         TEXT,
    corpus        TEXT,
    corpus_hash   TEXT,
    fidelity      TEXT NOT NULL,
    fidelity_key  TEXT NOT NULL,
    domains_key   TEXT NOT NULL,
    objective_key TEXT,
    objective     REAL,
    status        TEXT NOT NULL CHECK (status IN ('ok', 'diverged', 'failed', 'running')),
    seed          INTEGER,
    weights       TEXT NOT NULL,
    metrics       TEXT NOT NULL DEFAULT '{}',
    history       TEXT NOT NULL DEFAULT '[]',
    cost          REAL,
    error         TEXT,
    attempt       INTEGER NOT NULL DEFAULT 1,
    created       TEXT NOT NULL,
    finished      TEXT
);
CREATE INDEX IF NOT EXISTS runs_reuse ON runs (corpus_hash, fidelity_key, domains_key, status);
CREATE INDEX IF NOT EXISTS runs_search ON runs (search_id);
CREATE TABLE IF NOT EXISTS searches (
    search_id TEXT PRIMARY KEY,
    config    TEXT NOT NULL,
    plan      TEXT,
    state     TEXT NOT NULL,
    result    TEXT,
    created   TEXT NOT NULL,
    updated   TEXT NOT NULL
);
"""


def _runs_used(plan: Mapping[str, Any] | None, result: Mapping[str, Any] | None) -> set[str]:
    """The run ids of other searches (or imports) that a search's plan and result name: the swarm's
    reused runs and those a resume borrowed, the validation runs it borrowed, and every candidate's
    validation runs."""
    plan, result = plan or {}, result or {}
    used = {*plan.get("reused", []), *plan.get("swarm_borrowed", {}).values(),
            *plan.get("validation_reused", {}).values()}
    for c in result.get("candidates", []):
        used.update((c.get("measured") or {}).get("run_ids") or [])
    return used


# what RunStore.runs filters on (its keyword arguments)
_FILTERS = frozenset({"search_id", "corpus_hash", "fidelity_key", "domains", "status", "role", "run_ids",
                      "prefix"})
_CHUNK = 500  # run ids per IN (…): SQLite caps a statement's parameters (32,766; 999 before 3.32)


def _chunks(ids: Iterable[str], size: int = _CHUNK) -> Iterator[list[str]]:
    """``ids`` once each, in chunks of ``size``: SQLite caps a statement's parameters, and an id
    given twice would be found in two chunks."""
    unique = list(dict.fromkeys(ids))
    for i in range(0, len(unique), size):
        yield unique[i : i + size]


def _in_chunks(con: sqlite3.Connection, statement: str, ids: Sequence[str]) -> list[Any]:
    """``statement WHERE run_id IN (…)`` over ``ids`` in chunks, and the rows it returned."""
    return [row for chunk in _chunks(ids)
            for row in con.execute(f"{statement} WHERE run_id IN ({', '.join('?' for _ in chunk)})", chunk)]


def natural_key(run_id: str) -> list[Any]:
    """A run id's sort key with its numbers in numeric order (train:2 before train:10)."""
    return [int(t) if i % 2 else t for i, t in enumerate(re.split(r"(\d+)", run_id))]


def natural_sorted(ids: Iterable[str]) -> list[str]:
    return sorted(ids, key=natural_key)


def sample(names: Sequence[str], k: int = 3) -> str:
    """The first ``k`` names, and how many there are in all when there are more."""
    return ", ".join(names[:k]) + (f", … ({len(names)} in all)" if len(names) > k else "")


def now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="milliseconds")


def _can_write(path: Path) -> bool:
    """Whether this process may write the store and create its WAL files beside it."""
    return os.access(path, os.W_OK) and os.access(path.parent, os.W_OK | os.X_OK)


def _locked(exc: sqlite3.DatabaseError) -> bool:
    """SQLite's busy error: another connection holds the lock past the busy timeout."""
    return "locked" in str(exc) or "busy" in str(exc)


def _readonly_uri(path: Path) -> str:
    """SQLite URI opening ``path`` read-only.

    Reading a WAL store takes its -shm file. Where none exists, no connection is open (the last one
    to close checkpoints the WAL into the file and removes both), so the store is read as
    immutable: without locks and without creating files in a folder that is someone else's.
    """
    uri = f"file:{urllib.parse.quote(str(path.resolve()))}?mode=ro"
    if not Path(f"{path}-shm").exists():
        uri += "&immutable=1"
    return uri


def default_path() -> Path:
    return paths.home() / "runs.sqlite"


def refuse_store_as_output(out: str | Path, store: str | Path | None, what: str = "--out") -> None:
    """Refuse an output file that is the run store ``store`` (None: the workspace's) or one of the
    files SQLite keeps beside it: a mixture written over it had replaced every search's runs (a QA
    pass)."""
    base = Path(store).expanduser() if store is not None else default_path()
    target = Path(out).expanduser().resolve()
    for suffix in ("", "-wal", "-shm", "-journal"):
        if target == Path(f"{base}{suffix}").resolve():
            which = "the run store" if not suffix else f"the {suffix[1:]} file of the run store"
            raise MixoptError(f"{what} {out} is {which} {base}, which holds every search's runs; write to "
                              "another path")


def store_of_search(name: str, store: str | Path | None = None) -> RunStore:
    """The existing store that should hold search ``name`` (``store``, else the workspace's).

    A command that reads a search writes nothing, so the workspace's store is not created: where
    none exists yet the search cannot either.

    Raises:
        MixoptError: no store there (``require_search`` then names a missing search in one that is).
    """
    # `report ""` (a variable left unset) had been "no search named ''"
    refuse_blank(name, "the search name", "give one (`mixopt runs searches` lists them)")
    if store is None and not default_path().is_file():
        raise MixoptError(f"no search named {name!r}: there is no run store at {default_path()} yet (run "
                          "`mixopt search` here, or set MIXOPT_HOME or --store to where one ran)")
    return RunStore(store, create=False)


def check_store_path(path: str | os.PathLike[str] | None) -> None:
    """Refuse an empty ``--store``: it had been the workspace's store to some commands and ``.`` (a
    folder) to others."""
    refuse_blank(None if path is None else os.fspath(path), "--store",
                 "give a run store file (runs.sqlite), or leave --store out for the workspace's")


@contextlib.contextmanager
def made_store(store: str | Path | None) -> Iterator[RunStore]:
    """The store ``store`` (else the workspace's), made if missing, for a command that adds runs to it:
    one this call made is removed again, with the folders made for it, when the command fails or is
    interrupted before a run or search is in it (no empty store is left behind)."""
    from mixopt.atomic import first_missing, remove_made

    path = (Path(store) if store else default_path()).absolute()
    made = first_missing(path.parent)
    st = RunStore(store)
    try:
        yield st
    except BaseException:
        with contextlib.suppress(Exception):  # a failed clean-up must not hide why the command failed
            # st.made, not "missing before": a store another process made between the two had been
            # taken for this call's, and removed
            if st.made and st.remove_if_empty():
                remove_made(path.parent, made)
        raise


def existing_store(store: str | Path | None, doing: str) -> RunStore:
    """The existing store (``store``, else the workspace's) for a command that works on its runs
    (``doing``: delete, export); none is made where none is yet."""
    if store is None and not default_path().is_file():
        raise MixoptError(f"no run store at {default_path()} yet, so no runs to {doing} (--store names one)")
    return RunStore(store, create=False)


def domains_key(domains: Iterable[str]) -> str:
    """Order-free key of a domain set: runs over the same domains are comparable."""
    return json.dumps(sorted(domains))


def fidelity_key(fidelity: Mapping[str, Any], evaluator: str = "proxy") -> str:
    """Stable key of a fidelity: everything but the corpus (a column of its own), plus the evaluator."""
    body = {k: v for k, v in fidelity.items() if k != "corpus"}
    body["evaluator"] = evaluator
    return json.dumps(body, sort_keys=True, default=str)


def _dumps(obj: Any) -> str:
    # NaN is kept (Python's json reads it back): a diverged run's metrics are evidence too.
    return json.dumps(obj, sort_keys=False, default=json_default)


def json_default(o: Any) -> Any:
    """``json.dumps`` default for numpy scalars and arrays (a numpy bool or float64 in a result)."""
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


@dataclass(frozen=True, kw_only=True)
class RunRecord:
    """One evaluation of one mixture at one fidelity."""

    run_id: str
    weights: dict[str, float]
    fidelity: dict[str, Any]
    fidelity_key: str
    status: RunStatus = "running"
    search_id: str | None = None
    role: str = "swarm"
    label: str | None = None
    corpus: str | None = None
    corpus_hash: str | None = None
    objective_key: str | None = None
    objective: float | None = None
    seed: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    cost: float | None = None
    error: str | None = None
    attempt: int = 1
    created: str = field(default_factory=now)
    finished: str | None = None

    def __post_init__(self) -> None:
        if self.status not in RUN_STATUSES:
            raise MixoptError(
                f"run {self.run_id}: status {self.status!r} is not one of {', '.join(RUN_STATUSES)}"
            )

    @property
    def domains(self) -> list[str]:
        return list(self.weights)

    def vector(self, domains: Sequence[str]) -> np.ndarray:
        return np.array([float(self.weights.get(d, 0.0)) for d in domains])


@dataclass(frozen=True, kw_only=True)
class SearchRecord:
    search_id: str
    config: dict[str, Any]
    plan: dict[str, Any] | None
    state: str
    result: dict[str, Any] | None
    created: str
    updated: str


_RUN_COLUMNS = (
    "run_id", "search_id", "role", "label", "corpus", "corpus_hash", "fidelity", "fidelity_key",
    "domains_key", "objective_key", "objective", "status", "seed", "weights", "metrics", "history", "cost",
    "error", "attempt", "created", "finished",
)


def _row_values(r: RunRecord) -> tuple:
    """The run's row; one MixoptError for what SQLite or JSON cannot hold (in library use: the CLI
    makes none of these), where a set in a fidelity, an int past 64 bits or a lone surrogate in an id
    had raised TypeError, OverflowError or UnicodeEncodeError from inside the write."""
    obj = r.objective if r.objective is None or math.isfinite(r.objective) else None
    try:
        values = (
            r.run_id, r.search_id, r.role, r.label, r.corpus, r.corpus_hash, _dumps(r.fidelity),
            r.fidelity_key, domains_key(r.weights), r.objective_key, obj, r.status, r.seed, _dumps(r.weights),
            _dumps(r.metrics), _dumps(r.history), r.cost, r.error, r.attempt, r.created, r.finished,
        )
        # a numpy scalar (a library caller's np.int64 seed, np.float32 cost) as the Python number it
        # is: sqlite3 had stored its buffer as a BLOB, read back as 8 bytes, not the number
        values = tuple(v.item() if isinstance(v, np.generic) else v for v in values)
        for v in values:
            if isinstance(v, int) and not -(2**63) <= v < 2**63:
                raise OverflowError(f"{v} does not fit SQLite's 64-bit integers")
            if isinstance(v, str):
                v.encode("utf-8")
    except (TypeError, ValueError, OverflowError) as e:  # UnicodeEncodeError is a ValueError
        raise MixoptError(f"run {r.run_id!a}: the run store cannot hold it ({e}); give text that is "
                          "valid Unicode, integers below 2^63, and fidelity values that are text, "
                          "numbers or lists") from None
    return values


def _record(row: sqlite3.Row) -> RunRecord:
    return RunRecord(
        run_id=row["run_id"], search_id=row["search_id"], role=row["role"], label=row["label"],
        corpus=row["corpus"], corpus_hash=row["corpus_hash"], fidelity=json.loads(row["fidelity"]),
        fidelity_key=row["fidelity_key"], objective_key=row["objective_key"], objective=row["objective"],
        status=row["status"], seed=row["seed"], weights=json.loads(row["weights"]),
        metrics=json.loads(row["metrics"]), history=json.loads(row["history"]), cost=row["cost"],
        error=row["error"], attempt=row["attempt"], created=row["created"], finished=row["finished"],
    )


def _check_weights(record: RunRecord) -> None:
    """A run's weights are a mixture: finite, ≥ 0, summing to 1 (RENORM_TOL). The store had kept NaN
    or negative weights from a library caller, and ``matrix()`` handed them to the fitters."""
    w = list(record.weights.values())
    if not w or not all(math.isfinite(x) and x >= 0 for x in w) or abs(sum(w) - 1) > RENORM_TOL:
        raise MixoptError(f"run {record.run_id}: its weights are not a mixture (finite, ≥ 0, summing to 1): "
                          f"{dict(record.weights)}")


class RunStore:
    """The SQLite run store. Cheap to construct; every call opens its own short connection.

    A connection per call keeps the store safe to use from Ray trials (other processes), from
    threads, and after a fork; SQLite's WAL lets readers go on while one writer commits.
    """

    def __init__(self, path: str | Path | None = None, *, create: bool = True) -> None:
        """Open the store at ``path`` (default: the workspace's), creating it unless ``create`` is False.

        Commands that only read a store the user named pass ``create=False``, so a mistyped
        ``--store`` is an error instead of a new, empty store that reports "no runs".
        """
        check_store_path(path)
        if create and path is not None:  # a store named ' ' or with a newline is made by mistake
            from mixopt.atomic import refuse_odd_name

            refuse_odd_name(os.fspath(path), "--store")
        self.path = Path(path) if path is not None else default_path()
        if create and self.path.is_dir():  # SQLite's own word: "unable to open database file"
            raise MixoptError(f"run store {self.path} is a folder; give --store a file path (runs.sqlite)")
        if not create and not self.path.is_file():
            what = "is a folder" if self.path.is_dir() else "does not exist"
            raise MixoptError(
                f"run store {self.path} {what}; check --store (a search or `mixopt runs import` "
                "creates one)"
            )
        if not create:  # SQLite would turn any empty file (a results.csv named by mistake) into a store
            try:
                with open(self.path, "rb") as f:
                    head = f.read(16)
            except OSError as exc:
                raise MixoptError(f"cannot read run store {self.path}: {exc.strerror}") from None
            if head != b"SQLite format 3\x00":
                raise MixoptError(f"{self.path} is {'empty' if not head else 'not a SQLite file'}, so no "
                                  "run store; check --store")
        # A store this user may not write (a colleague's, a read-only mount) is still readable: the
        # commands that pass create=False only read, and any write is refused by name (_write).
        self.readonly = not create and not _can_write(self.path)
        # impatient()'s limit per thread: an error path's 5 s must not cut short the writes another
        # thread (Tune's callbacks beside the driver) makes at the same time on this Store.
        self._lock_waits: dict[int, float] = {}
        made = self.made = False  # whether this call made the store's file (see _make_file)
        try:
            if self.readonly:
                with self._connect() as con:
                    tables = self._peek(con)
                if not {"runs", "searches"} <= tables:
                    raise self._not_a_store()
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                if create:
                    made = self.made = self._make_file()
                if self.path.is_file():
                    # read before anything is written: a newer mixopt's store had been given this
                    # version's tables, and WAL mode, before it was refused (a QA pass)
                    con = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S)
                    try:
                        tables = self._peek(con)
                    finally:
                        con.close()
                    # another program's database: its tables are not to be joined by a run store's (a
                    # sweep: `runs import --store app.sqlite` and even `runs list` had added them)
                    if tables and "runs" not in tables:
                        raise self._not_a_store()
                with self._connect() as con:
                    con.executescript(_SCHEMA)
                    if con.execute("PRAGMA user_version").fetchone()[0] == 0:
                        con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except sqlite3.DatabaseError as exc:
            if made and not _locked(exc):  # (a lock: another process is making it now)
                self._remove_unmade()
            if _locked(exc):
                raise self._locked_error(BUSY_TIMEOUT_S) from exc
            self._raise_if_disk_full(exc)  # a full disk had read as a store to replace (a QA pass)
            if not self.readonly and self.path.is_file() and not _can_write(self.path):
                # a search on a read-only mount's store had read "unable to open database file" (a QA pass)
                raise self._readonly_error() from exc
            raise MixoptError(f"cannot open run store {self.path}: {exc}; give another --store path") from exc
        except OSError as exc:
            # a store this call began and could not finish (a full disk: a 4 KB file without tables
            # was left, a QA pass) is removed, as nothing half-written is kept
            if made:
                self._remove_unmade()
            if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO):
                raise  # the CLI's line for a full disk, exit 1 (it had said "cannot create", exit 2)
            raise MixoptError(f"cannot create run store {self.path}: {exc.strerror}") from exc

    def _make_file(self) -> bool:
        """Make the store's file, empty, unless it exists: whether this call made it. Exclusive, so two
        processes that make the same store at once do not both take it for theirs (and remove it)."""
        try:
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            return False
        return True

    def _remove_unmade(self) -> None:
        """Remove the store file this process began and could not finish, unless it holds tables by
        now (another process made the same store meanwhile and finished it)."""
        try:
            con = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, timeout=1.0)
            try:
                if con.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0]:
                    return
            finally:
                con.close()
        except (sqlite3.DatabaseError, OSError):
            return  # what it holds cannot be told: kept, rather than another process's store removed
        for suffix in ("", "-wal", "-shm", "-journal"):
            with contextlib.suppress(OSError):
                Path(f"{self.path}{suffix}").unlink()

    def __repr__(self) -> str:
        return f"RunStore({str(self.path)!r})"

    def _peek(self, con: sqlite3.Connection) -> set[str]:
        """The file's tables, after refusing a newer mixopt's store (read before anything is written)."""
        version = con.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise MixoptError(
                f"run store {self.path} has schema version {version}, newer than this mixopt "
                f"({SCHEMA_VERSION}); upgrade mixopt"
            )
        return {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}

    def _not_a_store(self) -> MixoptError:
        return MixoptError(f"{self.path} is a SQLite file but not a run store (no runs table); check --store")

    def remove_if_empty(self) -> bool:
        """Delete the store's files when it holds no run and no search (a refused command's store).

        Returns:
            Whether the files were removed.
        """
        with self.impatient(1.0), self._connect() as con:
            # out of WAL only while no other connection is open (SQLite refuses it then): a process
            # that opened the store to add its runs had had the file deleted under it
            try:
                if con.execute("PRAGMA journal_mode = DELETE").fetchone()[0] != "delete":
                    return False
            except sqlite3.OperationalError as exc:
                if _locked(exc):
                    return False
                raise
            con.execute("BEGIN EXCLUSIVE")  # no other process reads or writes until it is gone
            n = sum(con.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("runs", "searches"))
            if n:
                con.execute("ROLLBACK")
                con.execute("PRAGMA journal_mode = WAL")
                return False
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(f"{self.path}{suffix}").unlink(missing_ok=True)
        return True

    # ----- connections --------------------------------------------------------------------
    @contextlib.contextmanager
    def impatient(self, seconds: float = 5.0) -> Iterator[None]:
        """Writes inside wait at most ``seconds`` for another program's lock, then raise
        :class:`~mixopt.errors.StoreLockedError`: an error path's bookkeeping must not hold its
        error back for the ten minutes a write waits otherwise (the review of the lock wait)."""
        me = threading.get_ident()
        before = self._lock_waits.get(me)
        self._lock_waits[me] = seconds if before is None else min(before, seconds)
        try:
            yield
        finally:
            if before is None:
                del self._lock_waits[me]
            else:
                self._lock_waits[me] = before

    @property
    def _lock_wait(self) -> float | None:
        return self._lock_waits.get(threading.get_ident())

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        busy = BUSY_TIMEOUT_S if self._lock_wait is None else min(BUSY_TIMEOUT_S, self._lock_wait)
        if self.readonly:
            con = sqlite3.connect(_readonly_uri(self.path), uri=True, timeout=busy, isolation_level=None)
        else:
            con = sqlite3.connect(self.path, timeout=busy, isolation_level=None)
        try:
            con.row_factory = sqlite3.Row
            con.execute(f"PRAGMA busy_timeout = {int(busy * 1000)}")
            if not self.readonly:  # setting the journal mode writes the file's header
                try:
                    con.execute("PRAGMA journal_mode = WAL")
                    con.execute("PRAGMA synchronous = NORMAL")
                except sqlite3.OperationalError as exc:  # a lock in exclusive mode stops even this
                    if _locked(exc):
                        raise self._locked_error(busy) from exc
                    self._raise_if_disk_full(exc)
                    raise
            try:
                yield con
            except sqlite3.OperationalError as exc:  # a read under another program's exclusive lock
                if _locked(exc):
                    raise self._locked_error(busy) from exc
                self._raise_if_disk_full(exc)
                raise
        finally:
            con.close()

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that takes the lock up front (no read→write upgrade deadlocks)."""
        if self.readonly:
            raise self._readonly_error()
        try:
            with self._connect() as con:
                self._begin_write(con)
                try:
                    yield con
                except BaseException:
                    # SQLite rolls back by itself on a full disk, and a second ROLLBACK's "no
                    # transaction is active" had hidden the error that mattered (a QA pass)
                    if con.in_transaction:
                        con.execute("ROLLBACK")
                    raise
                con.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            # Modes are not the only way to be read-only (an immutable file, a read-only mount as
            # root): SQLite finds out at the first write.
            if "readonly" in str(exc):
                raise self._readonly_error() from exc
            self._raise_if_disk_full(exc)
            raise

    def _raise_if_disk_full(self, exc: sqlite3.DatabaseError) -> None:
        """SQLite's "database or disk is full", or its "disk I/O error" where the store's disk is
        full (its -shm file cannot grow), as the OSError it is: the CLI's one line names the disk."""
        from mixopt.errors import as_os_error

        if "full" in str(exc) or "disk I/O error" in str(exc):
            err = as_os_error(exc, self.path)
            if err is not None:
                raise err from exc
        if "disk I/O error" in str(exc):  # a file size limit (ulimit -f), a quota: a traceback (a QA pass)
            raise OSError(errno.EIO, os.strerror(errno.EIO), str(self.path)) from exc

    def _begin_write(self, con: sqlite3.Connection) -> None:
        """``BEGIN IMMEDIATE``, waiting out a lock held by another program for up to
        :data:`LOCK_PATIENCE_S` in all (each try waits :data:`BUSY_TIMEOUT_S`)."""
        t0 = time.monotonic()
        patience = LOCK_PATIENCE_S if self._lock_wait is None else self._lock_wait
        warned = False
        while True:
            try:
                con.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if not _locked(exc):
                    raise
                waited = time.monotonic() - t0
                if waited >= patience:
                    raise self._locked_error(waited) from exc
                if not warned and self._lock_wait is None:  # an impatient write says nothing of waiting
                    # Straight to stderr: a command that holds its warnings until it succeeds (runs
                    # import) would say nothing until the wait ended in an error (the review).
                    print(f"warning: the run store {self.path} has been locked by another program for "
                          f"{waited:.0f} s (a database browser with a transaction open?); waiting up to "
                          f"{patience - waited:.0f} s more for it", file=sys.stderr, flush=True)
                    warned = True

    def _locked_error(self, waited: float) -> StoreLockedError:
        return StoreLockedError(
            f"the run store {self.path} stayed locked by another program for {waited:.0f} s (a database "
            "browser with a transaction open, or a stuck process); close it, then run the command again")

    def _readonly_error(self) -> MixoptError:
        return MixoptError(f"run store {self.path} is read-only for this user, and this command writes "
                           "to it; copy the store (with its -wal file) somewhere writable and give that as "
                           "--store, or ask its owner")

    # ----- runs: writing ------------------------------------------------------------------
    def add(self, records: RunRecord | Sequence[RunRecord]) -> int:
        """Insert complete or running records; any run id already stored is an error (nothing written)."""
        recs = [records] if isinstance(records, RunRecord) else list(records)
        for r in recs:
            _check_weights(r)
        ids = [r.run_id for r in recs]
        dup_in = sorted(i for i, n in Counter(ids).items() if n > 1)  # list.count per id: 60 s at 50k runs
        if dup_in:
            raise MixoptError(f"duplicate run ids: {', '.join(dup_in[:10])}; every run needs its own id")
        cols = ", ".join(_RUN_COLUMNS)
        marks = ", ".join("?" for _ in _RUN_COLUMNS)
        rows = [_row_values(r) for r in recs]  # checked before the write: all or nothing
        with self._write() as con:
            existing = self._existing(con, ids)
            if existing:
                more = f" (and {len(existing) - 10} more)" if len(existing) > 10 else ""
                raise MixoptError(
                    f"run ids already in the store {self.path}: {', '.join(existing[:10])}{more}; "
                    "give the runs new ids (e.g. another --prefix)"
                )
            con.executemany(f"INSERT INTO runs ({cols}) VALUES ({marks})", rows)
        return len(recs)

    def delete_runs(self, run_ids: Sequence[str], *, dry_run: bool = False, skip_used: bool = False,
                    ) -> list[str]:
        """Delete runs that no search holds: runs of no recorded search (imported, a benchmark's),
        that no search reused or measured with, and that are not running; checked and deleted in one
        transaction. A search plans its reuse before it is recorded: hold its planning lock around
        this (``mixopt.search.imports.delete_runs`` does). ``dry_run``: check only (a command asks
        before it deletes). ``skip_used``: keep the runs a search used and delete the others, rather
        than refuse. Returns the runs deleted (or that would be).

        Raises:
            MixoptError: a run is not in the store, is a recorded search's, is running, or a search's
                plan or result names it; nothing is deleted.
        """
        ids = list(dict.fromkeys(run_ids))
        with self._write() as con:
            found = _in_chunks(con, "SELECT run_id, search_id, status FROM runs", ids)
            rows = {r["run_id"]: r for r in found}
            if missing := [i for i in ids if i not in rows]:
                raise MixoptError(f"no run {missing[0]!r} in {self.path}; `mixopt runs list` lists them")
            searches = {r[0] for r in con.execute("SELECT search_id FROM searches")}
            owned = sorted({rows[i]["search_id"] for i in ids} & searches)
            if owned:
                raise MixoptError(
                    f"runs of search {owned[0]!r} are its record (its resume and report read them), and "
                    "a search's runs are kept, so nothing was deleted; only runs of no search (imported, "
                    "a benchmark's) are deleted")
            if running := [i for i in ids if rows[i]["status"] == "running"]:
                raise MixoptError(f"run {running[0]!r} is running, so nothing was deleted; delete it when "
                                  "its command has ended")
            by = self._used_by(con, ids)
            users, used = list(by), {i for v in by.values() for i in v}
            if used and skip_used and used >= set(ids):
                raise MixoptError(
                    f"search{'es' if len(users) > 1 else ''} {sample(users)} reused all {len(ids)} of these "
                    "runs, so --skip-used leaves none to delete; nothing was deleted")
            if used and not skip_used:
                them = f"{len(used)} of these {len(ids)} runs" if len(ids) > 1 else "this run"
                rest = (f"; --skip-used deletes the other {len(ids) - len(used)}" if len(used) < len(ids)
                        else "")
                raise MixoptError(
                    f"search{'es' if len(users) > 1 else ''} {sample(users)} reused {them} "
                    f"({sample(natural_sorted(used))}), which {'their' if len(users) > 1 else 'its'} resume "
                    f"and report read, so nothing was deleted{rest}")
            ids = [i for i in ids if i not in used]
            if dry_run:
                return ids
            _in_chunks(con, "DELETE FROM runs", ids)
        return ids

    def compact(self, *, least: int = 1 << 20) -> tuple[int, int] | str | None:
        """Give the space of deleted rows back to the disk (SQLite only reuses it for later rows
        until ``VACUUM``, which rewrites the whole file). Returns the store's size in bytes before
        and after; None where less than ``least`` bytes lie free (not worth a rewrite); or why it
        could not be done now: another program writes or reads the store, or the disk lacks room
        for the copy that ``VACUUM`` makes. Nothing is lost then; later runs reuse the space.

        Raises:
            MixoptError: the store is read-only for this user (as any write is refused)."""
        if self.readonly:
            raise self._readonly_error()
        with self._connect() as con:
            pages, size = (con.execute(f"PRAGMA {p}").fetchone()[0] for p in ("freelist_count", "page_size"))
        if pages * size < least:
            return None
        before = self._size()
        try:  # a running search's writes come first: this waits for them a few seconds at most
            with self.impatient(5.0), self._connect() as con:
                con.execute("VACUUM")
                # in WAL mode the rewritten pages sit in the -wal file until a checkpoint, which a
                # reader holds off (it says so in its first column, without raising)
                if con.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]:
                    return "another program reads the store: the file shrinks once it is done"
        except StoreLockedError:
            return "another program writes to the store"
        except OSError as exc:  # the store's own disk errors (_raise_if_disk_full)
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                return "the disk lacks room for the copy of the store that VACUUM writes"
            return f"writing its copy failed: {exc.strerror}"
        except sqlite3.OperationalError as exc:
            return f"SQLite could not rewrite it: {exc}"
        return before, self._size()

    def _size(self) -> int:
        return sum(p.stat().st_size for p in (self.path, Path(f"{self.path}-wal")) if p.is_file())

    def runs_used_by(self, run_ids: Sequence[str]) -> dict[str, list[str]]:
        """Search → the runs of ``run_ids`` its plan or result names (reused, borrowed, validation)."""
        with self._connect() as con:
            return self._used_by(con, run_ids)

    @staticmethod
    def _used_by(con: sqlite3.Connection, run_ids: Sequence[str]) -> dict[str, list[str]]:
        wanted, out = set(run_ids), {}
        for row in con.execute("SELECT search_id, plan, result FROM searches ORDER BY created"):
            named = _runs_used(*(json.loads(row[c]) if row[c] else None for c in ("plan", "result")))
            if hit := named & wanted:
                out[row["search_id"]] = natural_sorted(hit)
        return out

    @staticmethod
    def _existing(con: sqlite3.Connection, ids: Sequence[str]) -> list[str]:
        return sorted(row[0] for row in _in_chunks(con, "SELECT run_id FROM runs", ids))

    def begin(self, record: RunRecord) -> None:
        """Record a run as ``running`` before it starts (so a killed run leaves a trace).

        A ``running`` row with the same id (the same trial started again by Ray) is replaced; a
        finished one is an error.
        """
        _check_weights(record)
        values = _row_values(replace(record, status="running"))
        with self._write() as con:
            row = con.execute("SELECT status FROM runs WHERE run_id = ?", (record.run_id,)).fetchone()
            if row is not None and row["status"] != "running":
                raise MixoptError(
                    f"run {record.run_id} already finished ({row['status']}); it is not run twice"
                )
            if row is not None:
                con.execute("DELETE FROM runs WHERE run_id = ?", (record.run_id,))
            cols = ", ".join(_RUN_COLUMNS)
            marks = ", ".join("?" for _ in _RUN_COLUMNS)
            con.execute(f"INSERT INTO runs ({cols}) VALUES ({marks})", values)

    def finish(
        self,
        run_id: str,
        *,
        status: RunStatus,
        metrics: Mapping[str, float] | None = None,
        objective: float | None = None,
        history: list[dict[str, Any]] | None = None,
        cost: float | None = None,
        error: str | None = None,
        only_if_running: bool = False,
    ) -> bool:
        """Set the outcome of a run; returns False if there was nothing to update."""
        if status == "running":
            raise ValueError("finish() needs a final status")
        obj = objective if objective is not None and math.isfinite(objective) else None
        q = (
            "UPDATE runs SET status = ?, metrics = COALESCE(?, metrics), objective = ?, "
            "history = COALESCE(?, history), cost = COALESCE(?, cost), error = ?, finished = ? "
            "WHERE run_id = ?"
        )
        args: list[Any] = [
            status, _dumps(dict(metrics)) if metrics is not None else None, obj,
            _dumps(history) if history is not None else None, cost, error, now(), run_id,
        ]
        if only_if_running:
            q += " AND status = 'running'"
        with self._write() as con:
            return con.execute(q, args).rowcount > 0

    def interrupt(self, search_id: str, reason: str) -> list[str]:
        """Mark a search's ``running`` runs failed (their driver is gone); returns their ids."""
        with self._write() as con:
            ids = [r[0] for r in con.execute(
                "SELECT run_id FROM runs WHERE search_id = ? AND status = 'running'", (search_id,))]
            con.execute(
                "UPDATE runs SET status = 'failed', error = ?, finished = ? "
                "WHERE search_id = ? AND status = 'running'",
                (reason, now(), search_id),
            )
        return ids

    def retag_errors(self, search_id: str, prefix: str, new_prefix: str) -> list[str]:
        """Replace ``prefix`` by ``new_prefix`` in the errors of a search's failed runs; their ids."""
        with self._write() as con:
            where = "WHERE search_id = ? AND status = 'failed' AND substr(error, 1, ?) = ?"
            args = (search_id, len(prefix), prefix)
            ids = [r[0] for r in con.execute(f"SELECT run_id FROM runs {where}", args)]
            con.execute(f"UPDATE runs SET error = ? || substr(error, ?) {where}",
                        (new_prefix, len(prefix) + 1, *args))
        return ids

    def requeue_failed(self, search_id: str, tag: str, keep: Sequence[str],
                       status: str = "failed") -> list[str]:
        """Prefix ``tag`` to the errors of a search's runs of ``status`` (failed; or diverged), except
        those starting with one of ``keep`` (already requeued or interrupted); their ids."""
        with self._write() as con:
            rows = con.execute("SELECT run_id, error FROM runs WHERE search_id = ? AND status = ?",
                               (search_id, status)).fetchall()
            ids = [r[0] for r in rows if not (r[1] or "").startswith(tuple(keep))]
            con.executemany("UPDATE runs SET error = ? || COALESCE(error, '') WHERE run_id = ?",
                            [(tag, i) for i in ids])
        return ids

    # ----- runs: reading ------------------------------------------------------------------
    def get(self, run_id: str) -> RunRecord | None:
        with self._connect() as con:
            row = con.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        return _record(row) if row is not None else None

    def get_many(self, run_ids: Sequence[str]) -> list[RunRecord | None]:
        """:meth:`get` of each of ``run_ids``, in their order, in one query per 500 ids rather than a
        connection per run (a search reusing 20,000 runs had spent 40 s opening them one by one)."""
        ids = list(run_ids)  # read twice: a generator had given []
        found = {r.run_id: r for r in self.runs(run_ids=ids)}
        return [found.get(i) for i in ids]

    def metric_rows(self, run_ids: Sequence[str], keys: Sequence[str]) -> np.ndarray | None:
        """Each run's values of the metrics ``keys`` (n_runs, n_keys); None when a run lacks one or
        has a non-finite one."""
        # one query, not a connection per run (a search's 5,000 reused runs: seconds)
        ids = list(run_ids)  # read twice: a generator had given an empty matrix
        found = {r["run_id"]: json.loads(r["metrics"])
                 for r in self._select("run_id, created, metrics", run_ids=ids)}
        rows = []
        for rid in ids:
            metrics = found.get(rid)
            vals = [metrics.get(k) for k in keys] if metrics is not None else [None]
            if any(v is None or not math.isfinite(v) for v in vals):
                return None
            rows.append(vals)
        return np.asarray(rows, dtype=float).reshape(len(rows), len(keys))

    def runs(
        self,
        *,
        search_id: str | Sequence[str] | None = None,
        corpus_hash: str | None | Literal["any"] = "any",
        fidelity_key: str | None = None,
        domains: Sequence[str] | None = None,
        status: str | Sequence[str] | None = None,
        role: str | Sequence[str] | None = None,
        run_ids: Sequence[str] | None = None,
        prefix: str | None = None,
    ) -> list[RunRecord]:
        """Runs matching every filter, oldest first; ``corpus_hash=None`` matches runs without a corpus,
        ``prefix`` the runs whose id starts with it."""
        return [_record(r) for r in self._select(
            "*", search_id=search_id, corpus_hash=corpus_hash, fidelity_key=fidelity_key, domains=domains,
            status=status, role=role, run_ids=run_ids, prefix=prefix)]

    def summaries(self, run_ids: Sequence[str]) -> list[sqlite3.Row]:
        """What a listing shows of each run (id, search, role, status, objective, seed, cost, error,
        created), oldest first, without its weights, metrics and history: listing 40,000 runs had
        decoded every run whole (500 MB)."""
        return list(self._select("run_id, search_id, role, status, objective, seed, cost, error, created",
                                 run_ids=run_ids))

    def run_keys(self, **filters: Any) -> list[tuple[str, str]]:
        """``(created, run_id)`` of the runs :meth:`runs` would return for ``filters``, oldest first,
        without reading their weights, metrics and histories (a listing of the newest 50 of 40,000
        runs had decoded every one: 400 MB)."""
        return [(r["created"], r["run_id"]) for r in self._select("created, run_id", **filters)]

    def _select(self, columns: str, **filters: Any) -> Iterator[sqlite3.Row]:
        """The rows of :meth:`runs` for its ``filters``, ``columns`` of them, as the cursor gives them
        (not all held twice)."""
        if unknown := set(filters) - _FILTERS:
            raise TypeError(f"unknown run filter(s) {sorted(unknown)}")
        run_ids = filters.pop("run_ids", None)
        if run_ids is not None and not isinstance(run_ids, str):  # any iterable, as matrix() had taken
            run_ids = list(run_ids)
        search_id, corpus_hash = filters.get("search_id"), filters.get("corpus_hash", "any")
        fidelity_key, domains = filters.get("fidelity_key"), filters.get("domains")
        status, role, prefix = filters.get("status"), filters.get("role"), filters.get("prefix")
        if run_ids is not None and len(run_ids) > _CHUNK:
            found = [r for chunk in _chunks(run_ids) for r in self._select(columns, run_ids=chunk, **filters)]
            yield from sorted(found, key=lambda r: (r["created"], r["run_id"]))
            return
        where: list[str] = []
        args: list[Any] = []

        def _in(col: str, val: str | Sequence[str]) -> None:
            vals = [val] if isinstance(val, str) else list(val)
            where.append(f"{col} IN ({', '.join('?' for _ in vals)})" if vals else "0")
            args.extend(vals)

        if search_id is not None:
            _in("search_id", search_id)
        if corpus_hash != "any":
            where.append("corpus_hash IS ?")
            args.append(corpus_hash)
        if fidelity_key is not None:
            where.append("fidelity_key = ?")
            args.append(fidelity_key)
        if domains is not None:
            where.append("domains_key = ?")
            args.append(domains_key(domains))
        if status is not None:
            _in("status", status)
        if role is not None:
            _in("role", role)
        if run_ids is not None:
            _in("run_id", run_ids)
        if prefix is not None:
            where.append("substr(run_id, 1, ?) = ?")  # LIKE would read its % and _ as wildcards
            args.extend([len(prefix), prefix])
        q = f"SELECT {columns} FROM runs" + (f" WHERE {' AND '.join(where)}" if where else "")
        q += " ORDER BY created, run_id"
        with self._connect() as con:
            yield from con.execute(q, args)

    def reusable(
        self,
        *,
        corpus_hash: str | None,
        fidelity_key: str,
        domains: Sequence[str],
        exclude_search: str | None = None,
    ) -> list[RunRecord]:
        """Finished ``ok`` runs of any search over the same corpus, fidelity and domains."""
        runs = self.runs(corpus_hash=corpus_hash, fidelity_key=fidelity_key, domains=domains, status="ok")
        return [r for r in runs if exclude_search is None or r.search_id != exclude_search]

    def frame(self, **filters: Any):  # -> polars.DataFrame
        """Runs as a polars DataFrame: scalar columns, ``weight/<domain>`` and one column per metric
        (``metric/<name>`` for a metric named like one of the other columns: an evaluator's ``cost``
        among its metrics had overwritten the run's cost)."""
        import polars as pl

        runs = self.runs(**filters)
        rows = []
        for r in runs:
            row: dict[str, Any] = {
                "run_id": r.run_id, "search_id": r.search_id, "role": r.role, "label": r.label,
                "corpus": r.corpus, "corpus_hash": r.corpus_hash, "fidelity_key": r.fidelity_key,
                "status": r.status, "seed": r.seed, "attempt": r.attempt, "objective": r.objective,
                "cost": r.cost, "error": r.error, "created": r.created, "finished": r.finished,
            }
            row.update({f"weight/{d}": float(w) for d, w in r.weights.items()})
            row.update({(f"metric/{k}" if k in row else k): float(v) for k, v in r.metrics.items()})
            rows.append(row)
        if not rows:
            return pl.DataFrame(schema={"run_id": pl.Utf8, "status": pl.Utf8, "objective": pl.Float64})
        return pl.DataFrame(rows, infer_schema_length=None)

    def matrix(
        self,
        domains: Sequence[str],
        objective: Objective,
        *,
        search_id: str | Sequence[str] | None = None,
        corpus_hash: str | None | Literal["any"] = "any",
        fidelity_key: str | None = None,
        role: str | Sequence[str] | None = None,
        run_ids: Sequence[str] | None = None,
    ) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Fitting data: (X of shape (n_runs, n_domains), y of shape (n_runs,), run ids).

        Only ``ok`` runs over exactly ``domains`` whose objective is finite; failed and diverged
        runs are never fitted. Rows are in run-id order, not the order the runs were made in: that
        is Ray's timing, and cross-validation folds are drawn over rows, so two identical searches
        had reported different figures, and ``auto`` could choose another model (a QA pass: 5-fold
        Spearman 0.10 and -0.64 over the same eight runs).
        """
        # run_ids in the query: a search's 2,000 runs had read every run of the store over its
        # domains (50,000: 22 s, 1.8 GB) to keep those
        runs = self.runs(search_id=search_id, corpus_hash=corpus_hash, fidelity_key=fidelity_key,
                         domains=domains, status="ok", role=role, run_ids=run_ids)
        runs.sort(key=lambda r: r.run_id)
        X, y, ids = [], [], []
        for r in runs:
            v = objective.value(r.metrics, domains)
            if math.isfinite(v):
                X.append(r.vector(domains))
                y.append(v)
                ids.append(r.run_id)
        if not X:
            return np.zeros((0, len(domains))), np.zeros(0), []
        return np.vstack(X), np.asarray(y, dtype=float), ids

    # ----- searches -----------------------------------------------------------------------
    def create_search(
        self, search_id: str, config: Mapping[str, Any], plan: Mapping[str, Any] | None = None
    ) -> None:
        t = now()
        with self._write() as con:
            if con.execute("SELECT 1 FROM searches WHERE search_id = ?", (search_id,)).fetchone():
                raise MixoptError(
                    f"a search named {search_id!r} exists; resume it with --resume {search_id} "
                    "or pick another --name"
                )
            con.execute(
                "INSERT INTO searches (search_id, config, plan, state, result, created, updated) "
                "VALUES (?, ?, ?, 'running', NULL, ?, ?)",
                (search_id, _dumps(dict(config)), _dumps(dict(plan)) if plan is not None else None, t, t),
            )

    def update_search(
        self, search_id: str, *, state: str | None = None, plan: Mapping[str, Any] | None = None,
        result: Mapping[str, Any] | None = None,
    ) -> None:
        sets, args = ["updated = ?"], [now()]
        if state is not None:
            sets.append("state = ?")
            args.append(state)
        if plan is not None:
            sets.append("plan = ?")
            args.append(_dumps(dict(plan)))
        if result is not None:
            sets.append("result = ?")
            args.append(_dumps(dict(result)))
        with self._write() as con:
            con.execute(f"UPDATE searches SET {', '.join(sets)} WHERE search_id = ?", [*args, search_id])

    def delete_search_if_unused(self, search_id: str) -> bool:
        """Delete the record of a search that has no runs (one refused before any trial); whether it did."""
        with self._write() as con:
            if con.execute("SELECT 1 FROM runs WHERE search_id = ? LIMIT 1", (search_id,)).fetchone():
                return False
            return con.execute("DELETE FROM searches WHERE search_id = ?", (search_id,)).rowcount > 0

    def get_search(self, search_id: str) -> SearchRecord | None:
        with self._connect() as con:
            row = con.execute("SELECT * FROM searches WHERE search_id = ?", (search_id,)).fetchone()
        return self._search(row) if row is not None else None

    def searches(self, *, plans: bool = True) -> list[SearchRecord]:
        """Every search, oldest first. ``plans=False``: their plans left unread (``plan`` is None), for
        a listing: a plan holds the swarm and every reused run's id (300 searches reusing 5,000
        runs: 14 s and 570 MB to list their names)."""
        columns = "*" if plans else "search_id, config, NULL AS plan, state, result, created, updated"
        with self._connect() as con:
            return [self._search(r) for r in con.execute(f"SELECT {columns} FROM searches ORDER BY created")]

    @staticmethod
    def _search(row: sqlite3.Row) -> SearchRecord:
        return SearchRecord(
            search_id=row["search_id"], config=json.loads(row["config"]),
            plan=json.loads(row["plan"]) if row["plan"] else None, state=row["state"],
            result=json.loads(row["result"]) if row["result"] else None, created=row["created"],
            updated=row["updated"],
        )

    def unrecorded_search_ids(self) -> dict[str, int]:
        """Search ids that runs carry with no search record (runs that ``mixopt bench fit`` trained,
        or imported ones), oldest first, with their number of runs."""
        with self._connect() as con:
            rows = con.execute(
                "SELECT search_id, COUNT(*) FROM runs WHERE search_id IS NOT NULL AND search_id NOT IN "
                "(SELECT search_id FROM searches) GROUP BY search_id ORDER BY MIN(created)"
            ).fetchall()
        return {r[0]: r[1] for r in rows}

    def run_counts(self) -> dict[str, tuple[int, int]]:
        """Each search id that runs carry (a search's, an import's, a benchmark's): its number of runs
        that finished ``ok``, and of all its runs (failed, diverged and running ones too: a failed
        search of budget 32 holds 64 runs with its retries)."""
        with self._connect() as con:
            rows = con.execute("SELECT search_id, SUM(status = 'ok'), COUNT(*) FROM runs "
                               "WHERE search_id IS NOT NULL GROUP BY search_id").fetchall()
        return {r[0]: (int(r[1]), int(r[2])) for r in rows}

    def require_search_or_group(self, name: str) -> None:
        """Refuse a ``--search`` that names neither a search nor runs (an import's name): one line
        naming the searches there are (a mistyped name is no search, not a search without runs)."""
        if self.get_search(name) is None:
            with self._connect() as con:
                if con.execute("SELECT 1 FROM runs WHERE search_id = ? LIMIT 1", (name,)).fetchone() is None:
                    self.require_search(name)

    def require_search(self, search_id: str) -> SearchRecord:
        rec = self.get_search(search_id)
        if rec is None:
            others = self.unrecorded_search_ids()
            if search_id in others:
                with self._connect() as con:  # checkpoints: fitted along; one row each: fitted as tables
                    curves = con.execute("SELECT 1 FROM runs WHERE search_id = ? AND history != '[]' LIMIT 1",
                                         (search_id,)).fetchone()
                fits = (f"`mixopt fit --fidelity-law --search {search_id}` fits them" if curves else
                        f"`mixopt runs export --search {search_id}` writes them as tables for `mixopt fit`")
                raise MixoptError(
                    f"{search_id!r} in {self.path} names {others[search_id]} run(s) but no search: no "
                    "`mixopt search` made them (a benchmark's or imported runs); `mixopt runs list --search "
                    f"{search_id}` lists them and {fits}"
                )
            known = [s.search_id for s in self.searches(plans=False)]
            if not known:
                hint = "the store has no searches yet"
            elif len(known) > 10:
                hint = (f"the 10 newest of its {len(known)} searches: {', '.join(known[-10:])} "
                        "(`mixopt runs searches` lists them all)")
            else:
                hint = f"known searches: {', '.join(known)}"
            if others:
                hint += f"; runs without a search carry {', '.join(list(others)[:10])}"
            raise MixoptError(f"no search named {search_id!r} in {self.path}; {hint}")
        return rec
