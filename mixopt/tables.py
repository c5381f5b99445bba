"""Run tables made elsewhere: mixture weights in one CSV, metrics in another, joined per run.

RegMix writes ``index`` + one column per domain weight, and ``index`` + one column per validation
loss; Olmix writes ``run,name,index`` + weights (``ratios.csv``) and ``run,name,index`` + metrics
(``metrics.csv``), each after pandas' unnamed index column. Rows are joined on ``run`` when both
files have it, else on ``index``; every other numeric column of the ratios file is a domain weight,
of the metrics file a metric. Unnamed columns (a pandas index written out) are dropped.

A metrics file may hold checkpoints instead: several rows per run, ordered by a ``tokens`` (or
``step``) column. Each run's last row is then its metrics, and all its rows are its history
(:attr:`RunTable.history`), which ``mixopt runs import`` keeps for ``mixopt fit --fidelity-law``.

Checks: duplicate run ids, negative or missing weights, and rows that do not sum to 1 are errors
naming the rows. Runs that only one file has are left out with a warning (runs with no metrics);
integer ids that match better shifted by a constant (an index shifted by one) are an error.
Rows within tolerance of 1 are renormalised with a warning. The tolerance is 1e-3,
or the rounding error of the row's own precision when that is larger: RegMix's weights are rounded
to 3 decimals, so 17 of them sum to anywhere in 1 ± 17 × 0.0005 (RegMix's 1M training table runs
from 0.996 to 1.003), and those rows are read as they are, not refused. NaN metrics stay NaN in the
table; :meth:`RunTable.target` leaves such runs out with a warning.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import stat
import sys
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import polars as pl

from mixopt.errors import MixoptError, MixoptWarning, refuse_blank, warn
from mixopt.magic import binary_kind, has_nul
from mixopt.mixture import RENORM_TOL, check_domain_names, has_control_char, is_pattern, spelling_note
from mixopt.objective import normalised, refuse_partly_weighted

log = logging.getLogger(__name__)

ID_COLUMNS = ("run", "name", "index")
MEAN_TARGET = "mean"
# A metrics file's columns that describe a run, not measure it: never averaged by --target mean (a
# QA pass: a user's seed and step columns made a sixth of the objective each)
BOOKKEEPING = frozenset({"seed", "step", "steps", "tokens", "epoch", "epochs", "runtime", "time", "wall_time",
                         "timestamp", "rung"})
LOSS_NAME = re.compile(r"(^|[/_.])(loss|bpb|ppl|perplexity)([/_.]|$)", re.IGNORECASE)
# A metrics file's columns that order a run's checkpoints when it has several rows per run
CHECKPOINT_COLUMNS = ("tokens", "step")
SWARM_RUN = "mix-{:04d}"  # a planned run's name in a ratios table mixopt writes (`mixopt swarm`)


@dataclass(frozen=True, kw_only=True)
class RunTable:
    """Runs with their weights and metrics, aligned row by row.

    Attributes:
        domains: weight column names, in file order.
        X: weights (n_runs, n_domains); rows sum to 1.
        metrics: one column per metric (float, NaN where missing), rows aligned with X.
        run_ids: the join key of each run as text.
        key: the column rows were joined on (``run`` or ``index``).
        names: Olmix's ``name`` column when the ratios file has one.
        sources: the files read.
        sha256: the sha256 of each file's bytes as read (``ratios``, ``metrics``).
        broken: metric columns of numbers with text among them, each with the error that names the
            cells; left out of ``metrics``, and refused only where used (:meth:`refuse_broken`), so a
            broken cell in one column of 110 does not stop a fit of another.
        history: for a metrics file of checkpoints (several rows per run, ordered by its
            ``checkpoints`` column, ``tokens`` or ``step``), each run's rows in order, as dicts of
            ``tokens``/``step`` and the finite metrics; ``metrics`` holds each run's last row.
            Empty for a file of one row per run.
    """

    domains: tuple[str, ...]
    X: np.ndarray
    metrics: pl.DataFrame
    run_ids: list[str]
    key: str
    names: list[str] | None = None
    sources: dict[str, str] = field(default_factory=dict)
    sha256: dict[str, str] = field(default_factory=dict)
    broken: dict[str, str] = field(default_factory=dict)
    history: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    checkpoints: str | None = None

    @property
    def last_row(self) -> str:
        """Where a run's metrics are read, for messages: a checkpoint table's runs' last rows."""
        return f"'s last row (by {self.checkpoints})" if self.checkpoints else ""

    @property
    def metric_names(self) -> list[str]:
        return list(self.metrics.columns)

    def refuse_broken(self, columns: Sequence[str] | None = None, *, why: str = "") -> None:
        """Raise the error of the first broken column among ``columns`` (all when None), after ``why``."""
        for col, message in self.broken.items():
            if columns is None or col in columns:
                raise MixoptError(why + message)

    def target_weights(self, name: str) -> dict[str, float]:
        """The metric columns that make target ``name`` and their weights (summing to 1).

        ``name``: a column; ``mean`` (every column, equally); or columns ``a,b`` (equally) or
        ``a=0.7,b=0.3`` (weighted; the weights are normalised), as ``search --target`` takes them.
        """
        if name == MEAN_TARGET:  # (bookkeeping columns, _step or _runtime, are not averaged)
            self.refuse_broken([c for c in self.broken if not c.startswith("_")],
                               why=f"--target {MEAN_TARGET} averages every column, and ")
            cols = self._mean_columns
            return {c: 1.0 / len(cols) for c in cols}
        if name in self.metrics.columns:
            return {name: 1.0}
        self.refuse_broken([name])
        parts: dict[str, float] = {}
        refuse_partly_weighted(name, "column")
        # Read as search --target reads domains: spaces around names and weights, an empty part (a
        # trailing comma) and a weight of 0 are taken, where they had been refused here alone.
        for part in (p.strip() for p in name.split(",")):
            if not part:
                continue
            col, eq, w = part.rpartition("=") if "=" in part else (part, "", "1")
            col = col if col in self.metrics.columns else col.strip()
            self.refuse_broken([col])
            try:
                weight = float(w)
            except ValueError:
                weight = float("nan")
            if col == MEAN_TARGET and col not in self.metrics.columns:
                raise MixoptError(f"--target {name!r}: {MEAN_TARGET!r} (every column) cannot be combined "
                                  f"with columns; give --target {MEAN_TARGET}, or the columns alone")
            if col not in self.metrics.columns:
                which = f"--target {name!r}" if col == name else f"--target {name!r}: {col!r}"
                raise MixoptError(
                    f"{which} is not a metric column; give one of: {MEAN_TARGET}, "
                    + ", ".join(self.metric_names) + " (or several: c1,c2 or c1=0.7,c2=0.3)"
                    + spelling_note([col], self.metric_names)
                )
            if col in parts:
                raise MixoptError(f"--target {name!r} names {col!r} twice; give each column once")
            if not (weight >= 0 and np.isfinite(weight)):
                raise MixoptError(f"--target {name!r}: {part!r} needs a finite weight ≥ 0")
            parts[col] = weight
        if not parts:
            raise MixoptError(f"--target {name!r} names no column; give c1,c2 or c1=0.7,c2=0.3, or "
                              f"{MEAN_TARGET}")
        if not sum(parts.values()) > 0:
            raise MixoptError(f"--target {name!r}: the weights are all 0; give at least one positive weight")
        # a column weighted 0 adds nothing, so a run need not have it
        return normalised({c: w for c, w in parts.items() if w > 0})

    @cached_property
    def _mean_columns(self) -> tuple[str, ...]:
        """The columns ``mean`` averages: all but bookkeeping ones (``_step``, ``_runtime``: a
        wandb export's), with a warning when their scales are far apart (then the mean is mostly
        the largest one's). Worked out, and said, once per table: a fit asks for it thrice."""
        book = [c for c in self.metric_names if c.startswith("_") or c.lower() in BOOKKEEPING]
        cols = [c for c in self.metric_names if c not in book]
        if not cols:
            raise MixoptError("the metrics file has no numeric metric columns to average"
                              + (f" (only bookkeeping ones: {_preview(book)})" if book else ""))
        if book:
            warn(f"--target {MEAN_TARGET} leaves out bookkeeping column(s) {_preview(book)}",
                 MixoptWarning)
        M = self._values(cols)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column: said elsewhere
            scale = np.nanmedian(np.abs(M), axis=0)
        ok = np.isfinite(scale) & (scale > 0)
        if ok.sum() >= 2 and scale[ok].max() > 100 * scale[ok].min():
            mid = np.sqrt(scale[ok].max() * scale[ok].min())  # between the largest and the smallest
            big = [f"{c} ~{v:.3g}" for c, v in sorted(zip(cols, scale, strict=True), key=lambda t: -t[1])
                   if np.isfinite(v) and v > mid]
            small = float(np.median(scale[ok][scale[ok] <= mid]))
            warn(
                f"--target {MEAN_TARGET} averages columns on very different scales ({_preview(big, 4)}; "
                f"most ~{small:.3g}): the mean follows the largest; name the columns to average "
                "(--target c1,c2) or drop the others from the metrics file",
                MixoptWarning)
        # mixopt's own runs measure each domain twice, in nats and in bits per byte (runs export)
        nats = [c for c in cols if c.startswith("loss/") and f"bpb/{c[5:]}" in cols]
        # a search's runs export holds its objective too: the target most users of it want (a QA pass)
        own = "give --target objective (the search's own objective), or " if "objective" in cols else ""
        if nats:
            warn(f"--target {MEAN_TARGET} averages loss/<domain> and bpb/<domain> columns of {len(nats)} "
                 f"domain(s), the same losses in two units; {own}name one kind's columns "
                 f"(--target {','.join(nats[:2])}{',…' if len(nats) > 2 else ''})", MixoptWarning)
        # losses beside other scores: a score where higher is better would be minimised with them
        lossy = [c for c in cols if LOSS_NAME.search(c)]
        if lossy and (others := [c for c in cols if c not in lossy]):
            named = nats or lossy  # of one unit where both are there (the example had mixed them)
            warn(f"--target {MEAN_TARGET} averages the loss columns with {_preview(others, 4)}, which are "
                 f"minimised with them (an accuracy would be made worse); {own}name the columns to "
                 f"average (--target {','.join(named[:2])}{',…' if len(named) > 2 else ''})", MixoptWarning)
        return tuple(cols)

    def _values(self, columns: Iterable[str]) -> np.ndarray:
        """(n_runs, len(columns)) floats, NaN where missing."""
        return _floats(self.metrics, columns).to_numpy()

    def target(self, name: str) -> np.ndarray:
        """Values of target ``name`` per run (see :meth:`target_weights`); may hold NaN."""
        weights = self.target_weights(name)
        Y = self._values(weights)
        return Y @ np.array(list(weights.values()))

    def target_parts(self, name: str, run_ids: Sequence[str]) -> tuple[np.ndarray, dict[str, float]]:
        """The metric columns that make target ``name`` at the runs ``run_ids``: (their values
        (n, n_columns), column → weight in the target)."""
        weights = self.target_weights(name)
        row = {r: i for i, r in enumerate(self.run_ids)}
        Y = self._values(weights)
        return Y[[row[r] for r in run_ids]], weights

    def target_rows(self, name: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """(X, y, run ids) of the runs whose target is finite; the others are left out with a warning."""
        if name == MEAN_TARGET and MEAN_TARGET in self.metrics.columns:  # as search says of a domain
            warn(f"--target {MEAN_TARGET} averages every metric column, not the column named {MEAN_TARGET}; "
                 f"give --target {MEAN_TARGET}=1 for that column alone", MixoptWarning)
        y = self.target(name)
        ok = np.isfinite(y)
        if ok.sum() == 0:
            weights = self.target_weights(name)
            Y = self._values(weights)
            empty = [c for c, col in zip(weights, Y.T, strict=True) if not np.isfinite(col).any()]
            if len(weights) > 1 and empty:
                fix = ("name the columns to use (--target c1,c2)" if name == MEAN_TARGET
                       else "leave them out of --target")
                raise MixoptError(
                    f"target {name!r} has no finite value in any run{self.last_row}: column(s) "
                    f"{_preview(empty)} have none; {fix} or fix the metrics file"
                )
            raise MixoptError(f"target {name!r} has no finite value in any run{self.last_row}; check the "
                              "metrics file")
        if not ok.all():
            bad = [self.run_ids[i] for i in np.flatnonzero(~ok)]
            warn(
                f"target {name!r} is NaN, infinite or missing{self.last_row} for {len(bad)} run(s) "
                f"({_preview(bad)}); "
                "they are left out",
                MixoptWarning,
            )
        return self.X[ok], y[ok], [r for r, k in zip(self.run_ids, ok, strict=True) if k]


def _preview(items: list[str], n: int = 8) -> str:
    head = ", ".join(str(i) if len(str(i)) <= 60 else str(i)[:60] + "…" for i in items[:n])  # one line
    return head + (f", … ({len(items) - n} more)" if len(items) > n else "")


def _floats(df: pl.DataFrame, columns: Iterable[str]) -> pl.DataFrame:
    """``columns`` of ``df`` as floats, NaN where missing, each taken by its place: ``pl.col`` reads a
    name ``*`` as every column and ``^…$`` as a pattern, so a domain named ``*`` had ended the read in
    polars' DuplicateError (found by a property test)."""
    at = {c: i for i, c in enumerate(df.columns)}
    return df.select([pl.nth(at[c]).cast(pl.Float64).fill_null(np.nan) for c in columns])


def _is_stdin(path: str | Path) -> bool:
    """``-``, or a path to this process's standard input (``/dev/stdin``, ``/dev/fd/0``)."""
    if str(path) == "-":
        return True
    try:
        return os.path.samestat(os.stat(path), os.fstat(0))
    except (OSError, ValueError):  # no such file, no standard input
        return False


def _read_bytes(path: Path, what: str) -> bytes:
    """The file's bytes, read once: a pipe (``<(…)``, ``/dev/stdin``, or ``-`` for standard input)
    can be read only once, and every check below reads from these bytes."""
    if str(path) == "-":
        return sys.stdin.buffer.read()
    if path.is_dir() or not path.exists():
        what_is = "is a folder" if path.is_dir() else "does not exist"
        raise MixoptError(f"{what} file {path} {what_is}; give the path to a CSV file")
    mode = path.stat().st_mode
    if not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode)):  # /dev/zero had been read until memory ran out
        raise MixoptError(f"{what} file {path} is not a file or a pipe (a device, a terminal or a socket); "
                          "give the path to a CSV file")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise MixoptError(f"cannot read {what} file {path}: {exc.strerror or exc}") from None


def _read_csv(path: str | Path, what: str) -> tuple[pl.DataFrame, str]:
    """The table, and the sha256 of the bytes it was read from (a pipe cannot be read again to hash)."""
    refuse_blank(str(path), f"the {what} file's name", "give the path to a CSV file")  # Path: '.'
    path = Path(path)
    data = _read_bytes(path, what)
    digest = hashlib.sha256(data).hexdigest()
    text = _check_text(data, path, what)
    import csv

    try:
        header = next(csv.reader(io.StringIO(text, newline="")), [])
    except csv.Error:
        header = []  # polars says why below
    if bad := [h for h in header if has_control_char(h)]:  # a warning naming it had coloured the terminal
        raise MixoptError(f"{what} file {path}: column {bad[0]!r} holds a control character (a newline, an "
                          "escape); name columns with printable characters")
    # polars reads a name ^…$ as a pattern of column names, in its own methods too (a series so named
    # had ended the read in an IndexError: a property test)
    if bad := [h for h in header if is_pattern(h)]:
        raise MixoptError(f"{what} file {path}: column {bad[0]!r} begins with '^' and ends with '$', which "
                          "the table reader takes for a pattern of column names; rename it")
    # run ids and names as written: read as numbers, 007 had become 7 and 1e3 1000 (a QA pass)
    as_text = {h: pl.Utf8 for h in header if h.strip() in ("run", "name")}
    try:
        df = pl.read_csv(io.BytesIO(data), infer_schema_length=None, null_values=list(_NULLS),
                         schema_overrides=as_text)
    except (pl.exceptions.PolarsError, OSError, UnicodeDecodeError) as exc:
        why = _ragged_line(text) or str(exc).splitlines()[0]
        if len(why) > 300:  # polars quotes the cell it could not parse, whatever its length
            why = why[:300] + "…"
        raise MixoptError(f"cannot read {what} file {path} as CSV: {why}") from exc
    # polars keeps a quoted header's escaped quotes doubled; repeated names are refused below
    if (any('""' in c for c in df.columns) and len(header) == len(df.columns)
            and len(set(header)) == len(header)):
        df = df.rename({old: new for old, new in zip(df.columns, header, strict=True) if '""' in old})
    df = _drop_blank_rows(df)
    # polars renames a repeated header "a" to "a_duplicated_0": two columns claim one domain
    # or metric, and which one is meant cannot be guessed; so do "a" and " a" once stripped
    found = (re.fullmatch(r"(.+)_duplicated_\d+", c) for c in df.columns)
    names = set(df.columns)  # a set and a Counter: a list's count() per column took minutes at 5,000
    repeated = {m.group(1) for m in found if m and m.group(1) in names}
    repeated |= {c for c, n in Counter(c.strip() for c in df.columns).items() if n > 1 and c}
    repeated = sorted(repeated)
    if repeated:
        raise MixoptError(
            f"{what} file {path} names column(s) {_preview(repeated)} more than once; "
            "rename or drop the repeats so each column has one header"
        )
    # "a, b": " b" is b; a header of spaces stays as it is, and is unnamed below
    df = df.rename({c: c.strip() for c in df.columns if c != c.strip() and c.strip()})
    unnamed = [c for c in df.columns
               if not c.strip() or c.startswith("Unnamed:") or c.startswith("_duplicated_")]
    if unnamed:
        # pandas' to_csv writes its index as a headerless column of increasing integers, and a comma
        # at the end of every line makes an empty one: drop those. Any other column without a
        # header (a domain's weights that lost their name) is refused: dropped, it would surface as
        # rows that do not sum to 1.
        def droppable(col: pl.Series) -> bool:
            if col.null_count() == len(col):
                return True
            if not col.dtype.is_integer() or col.null_count():
                return False
            increasing = bool((col.diff().drop_nulls() > 0).all())
            # first and unique: the index of a sampled or shuffled frame (df.sample(...).to_csv());
            # first, counting 0, 1, … and starting again at 0, beside a unique named id column: the
            # indexes of frames joined by pd.concat (a QA pass, after `mixopt swarm --extend`)
            first = col.name == df.columns[0] and bool((col >= 0).all())
            values = col.to_list()
            restarts = values[0] == 0 and all(b in (a + 1, 0) for a, b in zip(values, values[1:],
                                                                               strict=False))
            named = any(k in df.columns and df[k].n_unique() == df.height for k in ("run", "index"))
            return increasing or (first and (col.n_unique() == len(col) or (restarts and named)))

        other = [df.columns.index(c) + 1 for c in unnamed if not droppable(df[c])]
        if other:
            raise MixoptError(f"{what} file {path}: column(s) {_preview([str(i) for i in other])} have no "
                              "header; name each (a domain or metric), or delete it")
        log.debug("%s: dropping unnamed column(s) %s (a pandas index)", path, unnamed)
        df = df.drop(unnamed)
    if df.height == 0:
        raise MixoptError(f"{what} file {path} has no rows")
    return _strip_cells(df), digest


_NULLS = ("", "NA", "nan", "NaN", "null")


def _drop_blank_rows(df: pl.DataFrame) -> pl.DataFrame:
    """Without the rows that are blank in every column: an empty line (or one of spaces) at the end
    of a file, which polars reads as a row of missing values, is no run."""
    blank = [pl.nth(i).is_null() | (pl.nth(i).str.strip_chars() == "") if df[c].dtype == pl.String
             else pl.nth(i).is_null() for i, c in enumerate(df.columns)]  # by place: see _floats
    return df.filter(~pl.all_horizontal(blank)) if blank else df


def _strip_cells(df: pl.DataFrame) -> pl.DataFrame:
    """Text cells without surrounding spaces, and text columns that are all numbers once stripped
    read as numbers (the id columns excepted: stripped, they stay text).

    polars reads ``1, 0.5`` (a space after the comma) and ``Infinity`` (JavaScript's and Java's
    spelling) as text, which would drop the whole column as a label.
    """
    cols = []
    for c in df.columns:
        col = df[c]
        if col.dtype == pl.String:
            col = col.str.strip_chars()
            col = pl.Series(c, [None if v in _NULLS else v for v in col.to_list()], dtype=pl.String)
            parsed = col.cast(pl.Float64, strict=False)
            numbers = col.null_count() < len(col) and parsed.null_count() == col.null_count()
            if numbers and c not in ID_COLUMNS:
                col = parsed
        cols.append(col)
    return pl.DataFrame(cols)


def _ragged_line(text: str) -> str | None:
    """"line 3 has 4 fields, the header 3": the first row whose field count differs from the
    header's, which polars' own error ("found more fields than defined in 'Schema'") does not name."""
    import csv

    try:
        rows = csv.reader(io.StringIO(text, newline=""))
        width = len(next(rows, []))
        for row in rows:
            if row and len(row) != width:
                return (f"line {rows.line_num} has {len(row)} fields, the header {width}; fix or delete "
                        "that line")
    except csv.Error:
        return None
    return None


def _check_text(data: bytes, path: Path, what: str) -> str:
    """The file's text, refusing a file that is not comma-separated UTF-8 text and saying which it
    is. A binary file (Parquet, Excel, gzip) is named as such (its header is noise that reads as any
    separator); a file in another encoding by its first bad byte (polars reads such bytes as U+FFFD,
    so a Latin-1 "é" in a header had named no domain); a header with no comma but semicolons or tabs
    (a European-locale export) as such (read as CSV it is one column, and the join or decimal-comma
    errors would not say why)."""
    head = data[:4096]
    kind = binary_kind(head)
    if kind is not None or has_nul(head):
        raise MixoptError(
            f"{what} file {path} is {kind or 'binary, not text'}; mixopt reads comma-separated CSV text: "
            "save it as such (pandas: df.to_csv(path); polars: df.write_csv(path))"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise MixoptError(
            f"{what} file {path} is not UTF-8 text (byte {exc.start}, line {line}: "
            f"{data[exc.start:exc.start + 1]!r}); save it as UTF-8 (Excel: CSV UTF-8; or "
            f"iconv -f latin1 -t utf-8 {path.name} > {path.stem}-utf8.csv)"
        ) from None
    text = text.removeprefix("\ufeff")
    if "\r" in text and "\n" not in text.rstrip("\r"):
        # polars reads lines ended by CR alone (classic Mac OS, some Excel exports) as one header
        raise MixoptError(f"{what} file {path} ends its lines with CR alone (old Mac line endings); save it "
                          "with LF or CRLF line endings (e.g. tr '\\r' '\\n' < in.csv > out.csv)")
    header = text.split("\n", 1)[0]
    for sep, name in ((";", "semicolon"), ("\t", "tab")):
        if "," not in header and sep in header:
            raise MixoptError(
                f"{what} file {path} looks {name}-separated; mixopt reads comma-separated CSV with "
                "decimal points: save it as such (pandas: df.to_csv(path))"
            )
    return text


def _looks_transposed(df: pl.DataFrame) -> bool:
    """Headers after the first that are all numbers: one column per run, one row per domain."""
    rest = df.columns[1:]
    return len(rest) >= 2 and all(re.fullmatch(r"-?\d+(\.\d*)?", c.strip()) for c in rest)


_TRANSPOSED = "transposed: one column per run; give one row per run"


def _row_ids(df: pl.DataFrame, key: str, path: str | Path) -> list[str]:
    """Each row's run id as text, repeats and all."""
    col = df[key]
    if col.null_count():
        raise MixoptError(
            f"{path}: column {key!r} is empty in {col.null_count()} row(s); every run needs an id"
        )
    values = col.to_list()
    # pandas writes an integer id column as 1.0, 2.0 once it held a gap; the other file says 1, 2
    if col.dtype.is_float() and all(float(v).is_integer() for v in values):
        values = [int(v) for v in values]
    elif col.dtype == pl.Utf8 and all(re.fullmatch(r"[+-]?\d+\.0+", v) for v in values):
        values = [int(float(v)) for v in values]
    return [str(v) for v in values]


def _repeats(items: Sequence[str]) -> list[str]:
    seen: set[str] = set()
    dups: list[str] = []
    for i in items:
        if i in seen and i not in dups:
            dups.append(i)
        seen.add(i)
    return dups


def _ids(df: pl.DataFrame, key: str, path: str | Path, hint: str = "") -> list[str]:
    ids = _row_ids(df, key, path)
    if dups := _repeats(ids):
        raise MixoptError(
            f"{path}: duplicate run ids in column {key!r}: {_preview(dups)}; each run must appear once{hint}"
        )
    return ids


def _checkpoint_rows(mdf: pl.DataFrame, ids: list[str], path: str | Path, metric_cols: Sequence[str],
                     shown: Mapping[str, str] | None = None,
                     ) -> tuple[pl.DataFrame, dict[str, list[dict[str, float]]], str]:
    """A metrics file of checkpoints (several rows per run, ordered by a ``tokens`` or ``step``
    column): each run's last row, and every run's rows in order as its history (the keys ``tokens``
    and ``step`` where the file has them, and the metrics that are finite there). ``ids``: each
    row's run id, as read; ``shown``: a column's name in the file, where it was read as another.

    Raises:
        MixoptError: an empty or non-numeric checkpoint cell, or one run's checkpoint given twice.
    """
    kept = [c for c in CHECKPOINT_COLUMNS if c in mdf.columns]
    order = kept[0]
    for c in kept:
        col = mdf[c]
        if not col.dtype.is_numeric() or col.null_count() or not col.is_finite().all() or (col < 0).any():
            cells = col.cast(pl.Float64, strict=False).to_list()
            bad = list(dict.fromkeys(ids[i] for i, v in enumerate(cells)
                                     if v is None or not np.isfinite(v) or v < 0))
            named = (shown or {}).get(c, c)
            raise MixoptError(f"{path}: column {named!r} orders each run's checkpoints, and it is empty, "
                              f"negative or not a finite number in run(s) {_preview(bad)}; give every row "
                              f"its {named} (≥ 0)")
    at = mdf[order].cast(pl.Float64).to_list()
    twice = _repeats([f"{r} at {order} {t:.12g}" for r, t in zip(ids, at, strict=True)])
    if twice:
        raise MixoptError(f"{path}: a run's checkpoint appears twice ({_preview(twice)}); give each run one "
                          f"row per {order} (several seeds of one mixture? give each its own run id)")
    rows: dict[str, list[int]] = {}
    for i, r in enumerate(ids):
        rows.setdefault(r, []).append(i)
    columns = [*kept, *metric_cols]
    values = _floats(mdf, columns).to_numpy()
    history: dict[str, list[dict[str, float]]] = {}
    last: list[int] = []
    for r, idx in rows.items():
        idx = sorted(idx, key=lambda i: at[i])
        if len(kept) == 2 and np.any(np.diff(values[idx, 1]) <= 0):  # steps grow with the tokens
            raise MixoptError(f"{path}: run {r}'s tokens and steps put its checkpoints in different orders "
                              "(or give one step two token counts); fix the rows, or drop one of the columns")
        last.append(idx[-1])
        history[r] = [{name: float(v) for name, v in zip(columns, values[i], strict=True) if np.isfinite(v)}
                      for i in idx]
    # the checkpoint columns are the history's, not metrics of the run
    return mdf[last].drop(kept), history, order


def _int_ids(ids: list[str]) -> list[int] | None:
    # ids of up to 18 digits are numbers; longer ones (past int64, or past Python's 4300-digit
    # limit on reading one) join as text
    return [int(i) for i in ids] if all(re.fullmatch(r"-?\d{1,18}", i) for i in ids) else None


def _same_numbers(rids: list[str], mids: list[str]) -> dict[str, str]:
    """Metrics ids written otherwise than the ratios' same integers (``1`` for ``001``), each to the
    ratios' spelling; empty unless both files' ids are distinct integers. Run ids are read as text
    (``007`` stays ``007``), and such tables had joined when they were read as numbers."""
    r, m = _int_ids(rids), _int_ids(mids)
    if r is None or m is None or len(set(r)) != len(r) or len(set(m)) != len(m):
        return {}
    spelled = dict(zip(r, rids, strict=True))
    return {mid: spelled[v] for mid, v in zip(mids, m, strict=True) if v in spelled and spelled[v] != mid}


def _shift(rids: list[str], mids: list[str]) -> tuple[int, int] | None:
    """The offset c ≠ 0 by which integer metrics ids follow the ratios ids (``m = r + c``), and the
    runs it would join, where it joins more than the ids as written and covers nine in ten of the
    smaller file; else None.

    A file that only lacks runs (metrics for the first 300 of 1,000 planned runs) matches best as
    written; ids shifted by one (a pandas index against a 1-based one) match best shifted."""
    r, m = _int_ids(rids), _int_ids(mids)
    if not r or not m:
        return None
    ms = set(m)

    def joined(c: int) -> int:
        return sum(i + c in ms for i in r)

    best = max(sorted({min(m) - min(r), max(m) - max(r), 1, -1} - {0}), key=joined)
    n = joined(best)
    return (best, n) if n > joined(0) and n >= 0.9 * min(len(r), len(m)) else None


def _numeric_columns(df: pl.DataFrame, path: str | Path, what: str, ids: list[str],
                     broken: dict[str, str] | None = None) -> list[str]:
    """Numeric columns other than the ids; a text column is ignored with a warning (a label).

    Raises:
        MixoptError: a column of numbers with some text among them (a broken cell, not a label),
            unless ``broken`` is given: then the column is left out and its error kept there.
    """
    cols = [c for c in df.columns if c not in ID_COLUMNS]
    # An empty column (every cell missing; polars may type it as text) is a metric with no values.
    numeric = [c for c in cols if df[c].dtype.is_numeric() or df[c].null_count() == df.height]
    other = [c for c in cols if c not in numeric]
    for c in other:
        if df[c].dtype != pl.String:
            continue  # booleans, dates: a label, ignored below
        given = df[c].drop_nulls()
        if len(given) and given.str.contains(r"^-?[0-9.]+(e-?[0-9]+)?\s*%$").all():
            raise MixoptError(
                f"{path}: column {c!r} holds percentages written as text ({given[0]!r}); write them as "
                "fractions (20.9% → 0.209) so the column is read as numbers"
            )
        parsed = df[c].cast(pl.Float64, strict=False)
        bad = (parsed.is_null() & df[c].is_not_null()).to_list()
        # At least as many numbers as words: broken cells. Mostly words: a label column.
        if sum(bad) and parsed.is_not_null().sum() >= sum(bad):
            cells = [f"{ids[i]} ({df[c][i]!r})" for i, b in enumerate(bad) if b]
            message = (f"{path}: column {c!r} holds numbers and non-numeric value(s) in run(s) "
                       f"{_preview(cells)}; fix those cells (leave a cell empty for a missing value)")
            if broken is None:
                raise MixoptError(message)
            broken[c] = message
    other = [c for c in other if broken is None or c not in broken]
    if other:
        warn(f"{path}: ignoring non-numeric column(s) {_preview(other)} (not {what})",
             MixoptWarning)
    return numeric


def check_same_domains(got: Sequence[str], want: Sequence[str], path: str | Path) -> None:
    """Raise when a file's domain columns differ from the ones the runs were fitted on."""
    missing = [d for d in want if d not in got]
    extra = [d for d in got if d not in want]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"lacks {', '.join(missing)}")
        if extra:
            parts.append(f"has unknown {', '.join(extra)}")
        raise MixoptError(f"{path}: its domains differ from the training runs' ({'; '.join(parts)}); give it "
                          "one weight column per domain of the ratios file, named the same")


def _check_domains(domains: tuple[str, ...], path: str | Path) -> None:
    if len(domains) < 2:
        raise MixoptError(f"{path}: found {len(domains)} weight column(s); a mixture needs 2 or more")
    check_domain_names(domains, str(path))  # before a fit, not at the mixture it proposes


def rounding_tolerance(W: np.ndarray) -> np.ndarray:
    """Per row, the largest row-sum error its cells' decimal precision explains (0: full precision).

    A row's precision is that of its finest rounded cell (≤ 6 decimals; a cell with more is a full
    float and counts as exact), so one full-precision cell added to a rounded table keeps its
    row's tolerance and leaves the other rows' alone. Only 3 to 6 decimals count as rounding
    (weights written with 1 or 2 decimals are more likely exact by hand); never more than 0.01.
    """
    prec = np.full(W.shape, 99)  # decimals of each cell; 99: more than 6 (a full float) or NaN
    for p in range(6, -1, -1):
        scaled = W * 10.0**p
        prec[np.isfinite(W) & (np.abs(scaled - np.round(scaled)) < 1e-6)] = p
    rounded = prec <= 6
    finest = np.where(rounded, prec, -1).max(axis=1)
    tol = rounded.sum(axis=1) * 0.5 * 10.0 ** -np.clip(finest, 0, None)
    return np.where(finest >= 3, np.minimum(tol, 0.01), 0.0)


def _why_rows_are_off(W: np.ndarray, domains: Sequence[str] | None) -> str:
    """A likely cause when rows do not sum to 1: percentages, or a column that is not a weight."""
    s = W.sum(axis=1)
    if np.all(np.abs(s - 100) <= 1):
        return "; the weights look like percentages: divide them by 100"
    above = [j for j in range(W.shape[1]) if (W[:, j] > 1 + 1e-9).any()]
    rest = np.delete(W, above, axis=1).sum(axis=1)
    if above and domains and np.all(np.abs(rest - 1) <= 0.01):  # the other columns are the mixture
        return (f"; column(s) {_preview([domains[j] for j in above])} hold values above 1, and the others "
                "sum to 1, so those are not weights (a seed, a step, a metric?): drop them from the file")
    one_sum = bool(np.all(np.abs(s - s[0]) <= 0.01 * abs(s[0])))  # every row sums to about one number
    if one_sum and s[0] > 1:  # weights scaled (token counts / 1e9?)
        return f"; every row sums to {s[0]:.4g}: divide each row by its sum"
    if one_sum and 0 < s[0] < 1:  # a column held at a weight, left out
        return (f"; every row sums to {s[0]:.4g}: is a domain's column missing (one held at "
                f"{1 - s[0]:.4g})? add it")
    return ""


def check_rows(W: np.ndarray, ids: list[str], path: str | Path, tol: float = RENORM_TOL,
               domains: Sequence[str] | None = None, hint: str = "") -> np.ndarray:
    """Refuse negative/missing weights and rows far from summing to 1; renormalise the others (rows
    within 1e-12 of 1, which are 1 but for rounding, are kept as written).

    ``domains`` (the columns of W) and ``hint`` (the caller's guess, e.g. swapped files) help the
    error say why the rows are off.
    """
    bad = ~np.isfinite(W).all(axis=1)
    if bad.any():
        raise MixoptError(
            f"{path}: missing, non-numeric or infinite weights in run(s) "
            f"{_preview([ids[i] for i in np.flatnonzero(bad)])} (by run id); give every domain a number "
            "(0 where the run did not use it)"
        )
    neg = (W < 0).any(axis=1)
    if neg.any():
        rows = _preview([ids[i] for i in np.flatnonzero(neg)])
        raise MixoptError(f"{path}: negative weights in run(s) {rows} (by run id); weights must be ≥ 0")
    s = W.sum(axis=1)
    limit = np.maximum(tol, rounding_tolerance(W))
    far = np.abs(s - 1) > limit
    if far.any():
        worst = sorted(np.flatnonzero(far), key=lambda i: -abs(s[i] - 1))  # the worst rows first
        rows = [f"{ids[i]} (sum {s[i]:.6g})" for i in worst]
        within = f"±{limit[worst[0]]:.3g}" if np.ptp(limit[far]) == 0 else "their rounding tolerance"
        raise MixoptError(
            f"{path}: {len(rows)} run(s) do not sum to 1 (beyond {within}): {_preview(rows, 10)}; "
            "fix them or normalise each row" + (hint or _why_rows_are_off(W, domains))
        )
    off = np.abs(s - 1) > 1e-9
    if off.any():
        lo, hi = f"{s.min():.6g}", f"{s.max():.6g}"
        if lo == hi:  # a table rounded to 7 decimals had "summed to 1–1" (a QA pass)
            lo, hi = f"{s.min():.10g}", f"{s.max():.10g}"
        msg = f"{path}: {int(off.sum())} row(s) summed to {lo}–{hi}; renormalised to 1"
        if limit.max() > tol:
            msg += f" (weights are rounded; accepted within up to ±{limit.max():.3g})"
        warn(msg, MixoptWarning)
    # rows that sum to 1 but for the last bits are kept as written: divided, they changed in their
    # last digit at every export and import (a QA pass)
    return W / np.where(np.abs(s - 1) > 1e-12, s, 1.0)[:, None]


def read_ratios(
    path: str | Path, *, key: str | None = None, what: str = "ratios", domains: Sequence[str] | None = None
) -> tuple[list[str], tuple[str, ...], np.ndarray, str]:
    """Read a ratios file alone: (run ids, domains, weights with rows summing to 1, key column).

    ``what`` names the file in errors (the option it came from); ``domains``, when given, are the
    columns the file must have (checked before the rows, so a missing one is named as such).
    """
    df, _ = _read_csv(path, what)
    key = key or next((k for k in ("run", "index") if k in df.columns), None)
    if key is None or key not in df.columns:
        raise MixoptError(f"{path}: no 'run' or 'index' column to name the rows; add one"
                          + (f" (it looks {_TRANSPOSED})" if _looks_transposed(df) else ""))
    ids = _ids(df, key, path)
    found = tuple(_numeric_columns(df, path, "a domain weight", ids))
    if domains is not None:
        check_same_domains(found, domains, path)
    _check_domains(found, path)
    W = _floats(df, found).to_numpy()
    return ids, found, check_rows(W, ids, path, domains=found), key


def read_run_tables(ratios: str | Path, metrics: str | Path) -> RunTable:
    """Read and join a ratios file and a metrics file (RegMix or Olmix layout, as they are).

    Raises:
        MixoptError: missing file, no common key, duplicate ids, bad weights, nothing in common.
    """
    if _is_stdin(ratios) and _is_stdin(metrics):  # the second read would find the stream empty
        raise MixoptError("--ratios and --metrics cannot both be read from standard input (- or /dev/stdin); "
                          "give one of them as a file")
    # its metric columns would read as domains ('' and '' are two empty names, said by _read_csv)
    if str(ratios).strip() and Path(ratios).resolve() == Path(metrics).resolve():
        raise MixoptError(
            f"--ratios and --metrics are the same file ({ratios}); give the weights and the metrics in two "
            "files, each with the run id column (run or index): weights in one, metrics in the other"
        )
    rdf, ratios_sha = _read_csv(ratios, "ratios")
    mdf, metrics_sha = _read_csv(metrics, "metrics")
    key = next((k for k in ("run", "index") if k in rdf.columns and k in mdf.columns), None)
    shown: dict[str, str] = {}
    if "_step" in mdf.columns and "step" not in mdf.columns and key and mdf[key].is_duplicated().any():
        mdf = mdf.rename({"_step": "step"})  # W&B's history export: a row per run and step
        shown["step"] = "_step"
    if key is None:
        flipped = [str(p) for p, df in ((ratios, rdf), (metrics, mdf)) if _looks_transposed(df)]
        raise MixoptError(
            f"cannot join {ratios} and {metrics}: they share neither a 'run' nor an 'index' column; "
            "give both files the same run id column"
            + (f" ({' and '.join(flipped)} look(s) {_TRANSPOSED})" if flipped else "")
        )
    rids = _ids(rdf, key, ratios)
    checkpointed = any(c in mdf.columns for c in CHECKPOINT_COLUMNS)
    if checkpointed:  # several rows per run, one per checkpoint, may follow
        mids = _row_ids(mdf, key, metrics)
    else:
        mids = _ids(mdf, key, metrics, hint=(" (a table of checkpoints, a row per run and checkpoint, "
                                             "needs a tokens or step column)"))
    domains = tuple(_numeric_columns(rdf, ratios, "a domain weight", rids))
    _check_domains(domains, ratios)
    broken: dict[str, str] = {}
    metric_cols = _numeric_columns(mdf, metrics, "a metric", mids, broken)
    if not metric_cols and broken:
        raise MixoptError(next(iter(broken.values())))
    if not metric_cols:
        raise MixoptError(f"{metrics}: no numeric metric columns besides {', '.join(ID_COLUMNS)}")
    for col in metric_cols:  # loss/café beside a domain café in another Unicode spelling (a QA pass)
        if note := spelling_note([col.rpartition("/")[2]], domains):
            raise MixoptError(f"{metrics}: column {col!r} names a domain of {Path(ratios).name} in another "
                              f"spelling{note}")
    history: dict[str, list[dict[str, float]]] = {}
    checkpoints = None
    if checkpointed and _repeats(mids):
        metric_cols = [c for c in metric_cols if c not in CHECKPOINT_COLUMNS]
        if not metric_cols:
            raise MixoptError(f"{metrics}: no numeric metric columns besides the run ids and the "
                              f"checkpoints' {', '.join(c for c in CHECKPOINT_COLUMNS if c in mdf.columns)}")
        mdf, history, checkpoints = _checkpoint_rows(mdf, mids, metrics, metric_cols, shown)
        mids = _ids(mdf, key, metrics)
    if remap := _same_numbers(rids, mids):  # 001 in one file, 1 in the other: the ratios' spelling
        mids = [remap.get(i, i) for i in mids]
        history = {remap.get(k, k): v for k, v in history.items()}
    mpos = {r: i for i, r in enumerate(mids)}
    both = [i for i, r in enumerate(rids) if r in mpos]
    only_r = [r for r in rids if r not in mpos]
    only_m = sorted(set(mids) - set(rids))
    if not both:
        raise MixoptError(  # the ids say which side is off (a prefix, another swarm's numbering)
            f"no run of {ratios} ({_preview(rids)}) appears in {metrics} ({_preview(mids)}), joined on "
            f"{key!r}; are they the same swarm?"
        )
    if only_r or only_m:
        parts = ([f"{len(only_r)} run(s) of {Path(ratios).name} have no metrics ({_preview(only_r)})"]
                 if only_r else [])
        parts += ([f"{len(only_m)} run(s) of {Path(metrics).name} have no weights ({_preview(only_m)})"]
                  if only_m else [])
        if (shift := _shift(rids, mids)) is not None:
            # The rows that do join would pair one run's weights with another's metrics (a QA pass:
            # an index shifted by one joined 511 of 512 runs and cross-validated at Spearman -0.02).
            raise MixoptError(
                f"the run ids of {metrics} look shifted by {shift[0]:+d} from those of {ratios}: "
                f"{' and '.join(parts)} (joined on {key!r}), while shifted they would match "
                f"{shift[1]} runs; give both files the same ids for the same runs"
            )
        warn(f"{' and '.join(parts)}; they are left out ({len(both)} runs joined on {key!r})",
             MixoptWarning)
    ids = [rids[i] for i in both]
    W = _floats(rdf, domains).to_numpy()[both]
    M = _floats(mdf, metric_cols)
    M = M[[mpos[r] for r in ids]]
    sums = M.to_numpy().sum(axis=1)
    swapped = ("; the metrics file's rows sum to 1: are the ratios and metrics files swapped?"
               if len(metric_cols) > 1 and np.all(np.abs(sums - 1) <= 0.01) else "")
    X = check_rows(W, ids, ratios, domains=domains, hint=swapped)
    # a blank name cell (or one of _NULLS: "NA") names its run by its id: str(None) had named it 'None'
    names = ([rid if v is None else str(v) for v, rid in zip(rdf["name"].to_list(), rids, strict=True)]
             if "name" in rdf.columns else None)
    return RunTable(
        domains=domains, X=X, metrics=M, run_ids=ids, key=key,
        names=[names[i] for i in both] if names is not None else None,
        sources={"ratios": str(ratios), "metrics": str(metrics)},
        sha256={"ratios": ratios_sha, "metrics": metrics_sha},
        broken=broken,
        history={r: history[r] for r in ids} if history else {},
        checkpoints=checkpoints,
    )



def ratios_csv(domains: Sequence[str], W: np.ndarray, *, start: int = 0) -> str:
    """A ratios table in the layout :func:`read_ratios` reads back: ``run,index`` then one column
    per domain, a row per mixture (``run`` = ``mix-0000``…, ``index`` from ``start``). Weights are
    written in full (``repr``), so that each row sums to 1 as drawn, not to a rounding of it.

    Raises:
        MixoptError: a domain named as an id column (``run``, ``name``, ``index``), which would be
            read back as the rows' names, not as a weight.
    """
    refuse_id_columns(domains)
    W = np.asarray(W, dtype=float).reshape(-1, len(domains))
    return csv_text(["run", "index", *domains], ([SWARM_RUN.format(i), i, *(repr(float(v)) for v in row)]
                                                 for i, row in enumerate(W, start=start)))


def extension_csv(table: str | Path, domains: Sequence[str], W: np.ndarray, *, start: int) -> str:
    """New rows for the ratios table ``table`` (:func:`ratios_csv`'s rows), in its own columns and
    their order, so that its rows and these append into one table (``tail -n +2 NEW >> table``): a
    swarm's domain order had swapped the weights of rows appended below a table in another order,
    and a table without an ``index`` column had been given ragged rows. ``run`` and ``name`` get
    ``mix-NNNN``; ``index`` and a pandas index column (no header, or ``Unnamed: 0``) the number;
    another column is blank.
    """
    import csv

    with Path(table).open(encoding="utf-8-sig", newline="") as f:
        header, *old = list(csv.reader(f)) or [[]]
    W = np.asarray(W, dtype=float).reshape(-1, len(domains))
    at = {d: j for j, d in enumerate(domains)}

    def pandas_index(j: int) -> int:
        """Where the new rows' pandas index starts, as the reader accepts the column: at 0 after one
        that restarts at 0 (frames joined by pd.concat), a frame of its own; else past its largest."""
        values = [int(r[j]) for r in old if j < len(r) and re.fullmatch(r"\d+", r[j].strip())]
        restarts = bool(values) and values[0] == 0 and 0 in values[1:] and all(
            b in (a + 1, 0) for a, b in zip(values, values[1:], strict=False))
        return 0 if restarts else max(values, default=-1) + 1

    first = {j: pandas_index(j) for j, c in enumerate(header)
             if not c.strip() or c.strip().startswith("Unnamed:")}

    def cell(j: int, k: int, i: int, row: np.ndarray) -> object:
        name = header[j].strip()
        if name in at:
            return repr(float(row[at[name]]))
        if j in first:  # pandas' index, written with or without a header
            return first[j] + k
        return {"run": SWARM_RUN.format(i), "name": SWARM_RUN.format(i), "index": i}.get(name, "")

    return csv_text(header, ([cell(j, k, i, row) for j in range(len(header))]
                             for k, (i, row) in enumerate(enumerate(W, start=start))))


def id_columns_in(names: Sequence[str]) -> list[str]:
    """The names a run table would read as its id columns (headers are read stripped)."""
    return [n for n in names if n.strip() in ID_COLUMNS]


def refuse_id_columns(names: Sequence[str], what: str = "domain",
                      fix: str = "its weights would be read back as the rows' names; rename the domain",
                      ) -> None:
    """Refuse a domain (``what``) named as a run table's id column, which a table written with it
    would read back as the rows' names; ``fix`` says what to do."""
    if clash := id_columns_in(names):
        raise MixoptError(f"{what} {clash[0]!r} has the name of a run table's id column "
                          f"({', '.join(ID_COLUMNS)}): {fix}")


def csv_text(header: Sequence[object], rows: Iterable[Sequence[object]]) -> str:
    """A CSV table as text, with Unix line ends, as the run tables are written."""
    import csv
    import io

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def next_index(ids: Sequence[str]) -> int:
    """The first ``index`` after the rows ``ids`` (a ratios table's run ids, or its indices): past
    the largest number in them, or their count where they hold none."""
    numbers = [int(m.group(1)) for i in ids if (m := re.fullmatch(r"(?:mix-)?(\d+)", str(i)))]
    return max(max(numbers) + 1, len(ids)) if numbers else len(ids)
