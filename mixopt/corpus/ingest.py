"""A user's own data as a corpus: jsonl, parquet, csv, plain-text folders or a saved HF dataset.

Tables (jsonl, parquet, csv; one file or a folder of them) and saved ``datasets`` datasets need
a text column and a domain column; a folder of plain-text folders gives one domain per
sub-folder and one document per file. Reading is done by polars and ``datasets``; the corpus is
then built exactly like a recipe's (:func:`mixopt.corpus.build.build_from_documents`).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
from collections import defaultdict
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NoReturn

from mixopt import paths
from mixopt.atomic import check_can_create, refuse_holding_cwd, sweep_leftovers
from mixopt.corpus.build import (
    DEFAULT_MAX_DOC_CHARS,
    DEFAULT_SAMPLE_CHARS,
    build_from_documents,
    build_params,
    built_from,
)
from mixopt.corpus.documents import decode_utf8
from mixopt.corpus.fetch import sha256_of
from mixopt.corpus.shards import check_corpus_name, corpus_dir
from mixopt.errors import MixoptError, MixoptWarning, is_control, listed, warn
from mixopt.magic import binary_kind, has_nul

log = logging.getLogger(__name__)

Format = Literal["auto", "jsonl", "parquet", "csv", "text", "hf"]
FORMATS: tuple[str, ...] = ("auto", "jsonl", "parquet", "csv", "text", "hf")
DecodePolicy = Literal["error", "skip", "replace"]
DECODE_POLICIES: tuple[str, ...] = ("error", "skip", "replace")
_SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet", ".csv": "csv"}


@dataclass(frozen=True, kw_only=True)
class AddOptions:
    """How to read a user's data and build it."""

    format: Format = "auto"
    domain_column: str = "domain"
    text_column: str = "text"
    vocab_size: int = 8192
    val_documents: int = 64
    seed: int = 0
    max_doc_chars: int = DEFAULT_MAX_DOC_CHARS
    tokenizer_sample_chars: int = DEFAULT_SAMPLE_CHARS
    licence: str = "unknown"
    # What to do with input that is not UTF-8, as a recipe's ``on_decode_error``: "error" names the
    # file and offset; "skip" leaves out the document (a text file, a jsonl line); "replace" puts
    # U+FFFD for the invalid bytes. Either of the last two is counted and said.
    on_decode_error: DecodePolicy = "error"

    def __post_init__(self) -> None:
        from mixopt.corpus.tokenize import check_vocab_size

        check_vocab_size(self.vocab_size, "--vocab-size")  # before the data is read and a tokenizer trained
        if self.format not in FORMATS:
            raise MixoptError(f"unknown format {self.format!r}; choose one of {', '.join(FORMATS)}")
        if self.on_decode_error not in DECODE_POLICIES:
            raise MixoptError(
                f"unknown --on-decode-error {self.on_decode_error!r}; "
                f"choose one of {', '.join(DECODE_POLICIES)}"
            )
        # recorded per domain and shown by `corpus info`: a blank one or one that breaks its line says nothing
        if not self.licence.strip() or any(map(is_control, self.licence)):
            raise MixoptError(f"--licence {self.licence!r} is blank or holds a control character; give its "
                              "SPDX name (e.g. --licence CC-BY-4.0), or leave it out for 'unknown'")
        if self.format == "text" and (self.domain_column, self.text_column) != ("domain", "text"):
            raise MixoptError(_NO_COLUMNS)


# --domain-column and --text-column had been ignored without a word for folders of text files
_NO_COLUMNS = ("--format text reads one folder per domain, which has no columns; drop --domain-column and "
               "--text-column (a domain is its folder's name)")


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise MixoptError(f"cannot read {path}: {exc.strerror}; check the path and its permissions") from None


def _utf8(path: Path, data: bytes, policy: str, stats: dict[str, int], *, lines: bool = False,
          base: int = 0) -> str | None:
    """``data`` (found at offset ``base`` of ``path``) decoded under ``policy``; None when "skip"
    leaves the whole file out.

    With ``lines`` (jsonl), "skip" leaves out only the lines that are not UTF-8.
    """
    try:
        text, replaced, bad = decode_utf8(data, policy)
    except UnicodeDecodeError as exc:
        raise MixoptError(
            f"{path} is not UTF-8 (byte 0x{data[exc.start]:02x} at offset {base + exc.start}); convert it to "
            "UTF-8, or pass --on-decode-error skip or replace"
        ) from None
    if text is not None:
        if bad is not None:
            stats["characters replaced"] += replaced
        return text
    if lines:
        kept = [t for line in data.split(b"\n") if (t := decode_utf8(line, "skip")[0]) is not None]
        stats["lines left out"] += data.count(b"\n") + 1 - len(kept)
        return "\n".join(kept)
    stats["files left out"] += 1
    return None


def _text_file(path: Path, policy: str, stats: dict[str, int]) -> str | None:
    """A text file of a domain folder, decoded under ``policy``. NUL bytes are valid UTF-8, so a
    binary file (a file of zeros, an image that happens to decode) had been taken as text: it is
    refused, or left out under --on-decode-error skip or replace."""
    data = _read_bytes(path)
    if has_nul(data[:65536]):
        if policy == "error":
            raise MixoptError(f"{path} holds NUL bytes: a binary file, not text; remove it, or pass "
                              "--on-decode-error skip to leave such files out")
        stats["binary files left out"] += 1
        return None
    return _utf8(path, data, policy, stats)


def _say_decoded(path: Path, stats: dict[str, int]) -> None:
    if stats:
        # "1 file left out", not "1 files": the first word of each count is a plural noun
        said = ", ".join(f"{n:,} {what if n != 1 else what.replace('s ', ' ', 1)}"
                         for what, n in sorted(stats.items()))
        warn(
            f"{path}: input that is not UTF-8: {said} (--on-decode-error)", MixoptWarning
        )


def detect_format(path: Path) -> str:
    """The format of ``path``, from its suffix or its folder layout."""
    if path.is_dir():
        if (
            (path / "dataset_info.json").is_file()
            or (path / "state.json").is_file()
            or (path / "dataset_dict.json").is_file()
        ):
            return "hf"
        if not any(path.iterdir()):
            raise MixoptError(
                f"folder {path} is empty; --from takes one folder of text files per domain, or table files"
            )
        subdirs = [p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")]
        # Domain folders of text files win over a stray index.csv beside them (said as ignored).
        if any(f.is_file() and f.suffix not in _SUFFIXES for d in subdirs for f in d.rglob("*")):
            return "text"
        kinds = {_SUFFIXES[p.suffix] for p in path.iterdir() if p.is_file() and p.suffix in _SUFFIXES}
        if len(kinds) == 1:
            return kinds.pop()
        if subdirs:
            return "text"
        if not kinds:  # loose text files: the layout, not the format, is what is wrong
            raise MixoptError(
                f"{path} has no domain folders; make one sub-folder per domain with text files in it"
            )
        raise MixoptError(
            f"cannot tell the format of folder {path}; pass --format (one of {', '.join(FORMATS[1:])})"
        )
    if path.suffix in _SUFFIXES:
        return _SUFFIXES[path.suffix]
    raise MixoptError(
        f"cannot tell the format of {path} from its suffix; pass --format (one of {', '.join(FORMATS[1:])})"
    )


def _table_files(path: Path, fmt: str) -> list[Path]:
    if path.is_file():
        return [path]
    suffixes = [s for s, f in _SUFFIXES.items() if f == fmt]
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in suffixes)
    if not files:
        raise MixoptError(f"folder {path} has no {' or '.join(suffixes)} files; check the path or --format")
    return files


def _check_magic(path: Path, data: bytes, fmt: str) -> None:
    """A binary file read as text is named for what it is: "not UTF-8" (and --on-decode-error replace,
    which reads it as garbage) would not help."""
    kind = binary_kind(data[:8])
    if kind is not None:
        fix = ("pass --format parquet (or name it .parquet)" if kind == "a Parquet file"
               else "decompress it first" if kind == "gzip-compressed" else f"save it as {fmt} text")
        raise MixoptError(f"{path} is {kind}, not {fmt} text; {fix}")


BLOCK_BYTES = 64 << 20  # a jsonl file is read, decoded and parsed this much at a time


def _blocks(path: Path) -> Iterator[tuple[int, bytes]]:
    """(offset, bytes) pieces of ``path`` of about :data:`BLOCK_BYTES` bytes, each ending at a line's
    end (the last at the file's): lines are never cut, so neither is a UTF-8 character."""
    try:
        fh = open(path, "rb")  # noqa: SIM115 (a generator's file: closed in its finally)
    except OSError as exc:
        raise MixoptError(f"cannot read {path}: {exc.strerror}; check the path and its permissions") from None
    try:
        base = 0
        pending: list[bytes] = []  # the start of a line that goes on in the next block (or blocks)
        while block := fh.read(BLOCK_BYTES):
            cut = block.rfind(b"\n") + 1
            if cut == 0:  # no line ends in this block: joined once a line end comes
                pending.append(block)
                continue
            data = b"".join([*pending, block[:cut]]) if pending else block[:cut]
            pending = [block[cut:]] if cut < len(block) else []
            yield base, data
            base += len(data)
        if pending:
            yield base, b"".join(pending)
    finally:
        fh.close()


def _jsonl_frames(f: Path, policy: str, stats: dict[str, int]):  # -> Iterator[polars.DataFrame]
    """One jsonl file as data frames of a block each: the file is never held whole (a QA pass had
    its bytes, its frame and its texts in memory at once: 2.2 GB of peak for 1 GB of jsonl)."""
    import polars as pl

    blank = True
    for base, raw in _blocks(f):
        if base == 0:
            _check_magic(f, raw, "jsonl")
        # decoded here: polars' own message gives neither the offset nor always the file
        text = _utf8(f, raw, policy, stats, lines=True, base=base) or ""
        if policy == "error":  # the bytes as read, valid: no copy re-encoded beside them
            del text
            data = raw.removeprefix(b"\xef\xbb\xbf") if base == 0 else raw  # a BOM is no JSON
        else:
            data = (text.removeprefix("\ufeff") if base == 0 else text).encode()
            del text
        del raw
        if not data.strip():
            continue
        blank = False
        try:
            frame = pl.read_ndjson(io.BytesIO(data), infer_schema_length=None)
        except (pl.exceptions.PolarsError, OSError, ValueError) as exc:
            _cannot_read(f, "jsonl", exc)
        del data  # the bytes go before the next block's
        yield frame
        del frame  # and the frame, once its texts are taken
    if blank:
        raise MixoptError(f"{f} is empty; give one JSON object per line (a domain and a text)")


def _cannot_read(f: Path, fmt: str, exc: Exception) -> NoReturn:
    first = str(exc).strip().splitlines()[0].rstrip(".") if str(exc).strip() else type(exc).__name__
    where = _bad_json_line(f) if fmt == "jsonl" else None  # polars names no line
    raise MixoptError(f"cannot read {f} as {fmt}: {where or first}; check the file or --format") from None


def _parquet_frame(f: Path, columns: tuple[str, ...]):  # -> polars.DataFrame
    """A parquet file's ``columns`` (every column where one of them is missing, for the error to
    list): its other columns (urls, metadata) are not read. Read whole by polars: reading it a
    batch at a time through pyarrow had peaked 40% higher (pyarrow's pool keeps what it freed: a
    QA pass measured 1.26 against 0.90 GB on its 300 MB of text). Columns are named by position:
    polars reads names as expressions (a column named ``*``), and one column may be both."""
    import polars as pl

    try:
        names = list(pl.read_parquet_schema(f))
        wanted = ([names.index(c) for c in dict.fromkeys(columns)] if set(columns) <= set(names)
                  else None)
        return pl.read_parquet(f, columns=wanted)
    except (pl.exceptions.PolarsError, OSError, ValueError) as exc:
        _cannot_read(f, "parquet", exc)


def _table_frames(path: Path, fmt: str, policy: str = "error",
                  columns: tuple[str, ...] = ()):  # -> Iterator[polars.DataFrame]
    """The rows of the table files at ``path`` as data frames: a jsonl block, or a whole parquet
    file (``columns`` only, where the file has them all) or csv file at a time."""
    import polars as pl

    if fmt == "csv" and policy == "skip":  # a quoted field can span lines: no line is one row
        raise MixoptError(
            "--on-decode-error skip cannot leave out csv rows; use replace, or convert to UTF-8"
        )
    stats: dict[str, int] = defaultdict(int)
    for f in _table_files(path, fmt):
        _say_reading(f)
        if fmt == "jsonl":
            yield from _jsonl_frames(f, policy, stats)
            continue
        if fmt == "parquet":
            frame = _parquet_frame(f, columns)
        else:
            raw = _read_bytes(f)
            _check_magic(f, raw, fmt)
            text = _utf8(f, raw, policy, stats) or ""
            data = raw if policy == "error" else text.removeprefix("\ufeff").encode()
            del raw, text
            try:
                frame = pl.read_csv(io.BytesIO(data), infer_schema_length=0)
            except (pl.exceptions.PolarsError, OSError, ValueError) as exc:
                _cannot_read(f, fmt, exc)
            del data
        yield frame
        del frame
    _say_decoded(path, stats)


SAY_READING_BYTES = 64 << 20


def _say_reading(path: Path) -> None:
    """A progress line for a file that takes seconds to read; a small one's would only stand above
    the one line of a refusal of its content."""
    size = path.stat().st_size
    if size >= SAY_READING_BYTES:
        log.info("reading %s (%.0f MB)", path, size / 1e6)


def _bad_json_line(path: Path) -> str | None:
    """``line N: <what json says>`` for the first line of a jsonl file that is not a JSON object."""
    with open(path, encoding="utf-8-sig") as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                # json's msg may end in "at" already ("Invalid control character at")
                return f"line {n} is not valid JSON ({exc.msg.removesuffix(' at')} at column {exc.colno})"
            if not isinstance(obj, dict):
                return f"line {n} is not a JSON object"
    return None


def _hf_frames(path: Path):  # -> Iterator[polars.DataFrame]
    """A dataset saved with ``save_to_disk`` (every split of a DatasetDict: our own split replaces
    theirs), a batch of rows at a time: its Arrow files are memory-mapped, and only a batch is
    copied into a frame at once. Read through ``Dataset.iter``, which follows a shuffle or select
    without writing anything (``flatten_indices`` had written a cache file of the whole data into
    the user's folder, which changed its hash: the same `corpus add` built it again, a QA pass)."""
    import datasets
    import polars as pl

    try:
        ds = datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError, OSError) as exc:
        raise MixoptError(f"{path} is not a dataset saved with `save_to_disk` ({exc})") from None
    parts = [ds[k] for k in sorted(ds)] if isinstance(ds, datasets.DatasetDict) else [ds]
    for part in parts:
        for batch in part.with_format("arrow").iter(batch_size=HF_BATCH_ROWS):
            yield pl.from_arrow(batch)


HF_BATCH_ROWS = 65536


def _short(text: str, n: int = 40) -> str:
    return text if len(text) <= n else f"{text[: n - 1]}…"


def _check_columns(cols: list[str], where: str, domain_column: str, text_column: str) -> None:
    """Both columns must be among ``cols`` (every column of every frame read)."""
    for kind, col in (("domain", domain_column), ("text", text_column)):
        if col not in cols:
            flag = "--domain-column" if kind == "domain" else "--text-column"
            shown = listed([_short(c) for c in cols], 20)
            raise MixoptError(
                f"{where} has no {kind} column {col!r}; its columns are {shown} (choose one with {flag})"
            )


def _supertype(dtypes: Iterable[Any]) -> Any:  # -> polars.DataType
    """The type polars gives a column of these types when it puts the frames together (the
    ``diagonal_relaxed`` merge of the whole-input read: Int64 and Float64 give Float64)."""
    import polars as pl

    frames = [pl.DataFrame({"c": pl.Series([], dtype=d)}) for d in dtypes]
    return pl.concat(frames, how="vertical_relaxed").schema["c"]


def _group(frames: Generator[Any, None, None], where: str, domain_column: str,
           text_column: str) -> dict[str, list[str]]:
    """Texts per domain, in the order read, from data frames of rows; each frame is let go once its
    texts are taken. The result is the whole input's, as one frame of every row would give it: a
    frame without a column has no value there, numbers in the text column are text where any frame
    has text in it, and domain values are named by the type of the whole column (1 and 2.5 in two
    blocks are domains "1.0" and "2.5")."""
    import polars as pl

    docs: dict[str, list[str]] = defaultdict(list)
    missing: dict[str, int] = defaultdict(int)
    # Once a frame's domain values are not text (numbers), every later row is kept in order with
    # its value and type until the whole column's type names them: 1, "1" and 1.0 in three files
    # are one domain or two, as a whole read has it, in the order read (a QA pass).
    rest: list[tuple[type, Any, str | None]] | None = None
    columns: dict[str, None] = {}
    text_types: list[Any] = []
    domain_types: list[Any] = []
    rows = nulls = 0
    with contextlib.closing(frames):  # the generator's open file is closed on an error too
        for df in frames:
            cols = list(df.columns)
            if not columns and cols and cols[0].lstrip().startswith(("{", "[")) and domain_column not in cols:
                # JSON Lines read as CSV: its "columns" are pieces of the first record
                raise MixoptError(f"{where} does not read as CSV: its first line is JSON "
                                  f"({_short(', '.join(cols))}); give --format jsonl")
            columns.update(dict.fromkeys(cols))
            rows += df.height
            if df.height == 0:
                continue
            if text_column in cols and df.schema[text_column] not in text_types:
                text_types.append(df.schema[text_column])
            if domain_column not in cols:
                nulls += df.height
                continue
            domains = df[domain_column]
            if isinstance(domains.dtype, pl.Categorical | pl.Enum):  # text, as a whole read made it
                domains = domains.cast(pl.String)
            if domains.dtype not in domain_types:
                domain_types.append(domains.dtype)
            nulls += domains.null_count()
            if nulls:  # refused below: no need to keep texts
                continue
            texts: list[Any] = [None] * df.height
            if text_column in cols:
                col = df[text_column]
                if col.dtype not in (pl.String, pl.Null):  # numbers: text, where another frame has text
                    try:
                        col = col.cast(pl.String)
                    except pl.exceptions.PolarsError:
                        raise MixoptError(
                            f"{where}: text column {text_column!r} is {col.dtype}, not text; "
                            "choose the column that holds the documents with --text-column") from None
                texts = col.to_list()
            del df
            if rest is None and domains.dtype == pl.String:
                for dom, text in zip(domains.to_list(), texts, strict=True):
                    if text is not None:
                        docs[dom].append(text)
                    else:
                        missing[dom] += 1
            else:
                rest = [] if rest is None else rest
                rest += [(type(dom), dom, text) for dom, text in zip(domains.to_list(), texts, strict=True)]
    if rows == 0:
        raise MixoptError(f"{where} has no rows; give a file with one row per document")
    _check_columns(list(columns), where, domain_column, text_column)
    if pl.String not in text_types:  # numbers or nothing in every row: no column of documents
        shown = next((t for t in text_types if t != pl.Null), pl.Null)
        raise MixoptError(f"{where}: text column {text_column!r} is {shown}, not text; "
                          "choose the column that holds the documents with --text-column")
    if nulls:
        raise MixoptError(
            f"{where}: {nulls} row{'s have' if nulls != 1 else ' has'} no value in domain column "
            f"{domain_column!r}; fill or drop {'them' if nulls != 1 else 'it'}"
        )
    if rest is not None:  # numbers as domain names: written as the whole column's type
        try:
            kind = _supertype(domain_types)
        except pl.exceptions.PolarsError:
            types = ", ".join(map(str, domain_types))
            raise MixoptError(f"{where}: domain column {domain_column!r} holds values of types that do "
                              f"not go together ({types}); make them text") from None
        # by type and value: 1 == 1.0 in Python, and they may name two domains ("1" and "1.0")
        name = {(t, k): str(pl.Series([k]).cast(kind).cast(pl.String)[0])
                for t, k in dict.fromkeys((t, k) for t, k, _ in rest)}
        for t, k, text in rest:
            if text is not None:
                docs[name[t, k]].append(text)
            else:
                missing[name[t, k]] += 1
    if missing:  # a null text is no document; said, since a whole domain can thin out this way
        per = ", ".join(f"{d} {n}" for d, n in sorted(missing.items()))
        warn(f"{where}: {sum(missing.values())} rows have no text in column {text_column!r} and are "
             f"left out ({per})", MixoptWarning)
    return dict(docs)


def _read_text_folders(path: Path, policy: str = "error") -> dict[str, list[str]]:
    stray = sorted(p.name for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    if stray:  # a README or licence next to the domain folders is common; it is no domain's text
        warn(
            f"ignoring {len(stray)} file{'s' * (len(stray) != 1)} next to the domain folders in {path} "
            f"({', '.join(stray[:3])})",
            MixoptWarning,
        )
    docs: dict[str, list[str]] = {}
    stats: dict[str, int] = defaultdict(int)
    unread: list[str] = []  # a link to nothing (data moved), a pipe, a socket: not read, but said
    for d in sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")):
        entries = [f for f in d.rglob("*") if not f.name.startswith(".")]
        here = [str(f.relative_to(path)) + (" (a link to nothing)" if f.is_symlink() and not f.exists()
                                             else "") for f in entries if not (f.is_file() or f.is_dir())]
        unread += here
        files = sorted(f for f in entries if f.is_file())
        if not files:
            what = "holds no files, only links to nothing or pipes" if here else "is empty"
            raise MixoptError(f"domain folder {d} {what}; add text files or remove it")
        texts = [t for f in files if (t := _text_file(f, policy, stats)) is not None]
        if not texts:
            raise MixoptError(f"domain folder {d} has no UTF-8 file left; convert its files or remove it")
        # as read_text would: universal newlines
        docs[d.name] = [t.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n") for t in texts]
    _say_decoded(path, stats)
    if unread:
        more = f", … ({len(unread) - 3} more)" if len(unread) > 3 else ""
        warn(f"{path}: {len(unread)} entries are not files and are not read: "
             f"{', '.join(sorted(unread)[:3])}{more}", MixoptWarning)
    if not docs:
        raise MixoptError(
            f"{path} has no domain folders; make one sub-folder per domain with text files in it"
        )
    return docs


def _missing(path: Path, fmt: str) -> str:
    """The error for a --from that does not exist; a Hub id (``org/name``) is said to be one."""
    said = f"{path} does not exist; pass an existing file or folder with --from"
    hub_like = len(path.parts) == 2 and not path.suffix and not str(path).startswith((".", "/", "~"))
    if fmt == "hf" or hub_like:
        said += (" (a Hugging Face Hub id is not downloaded here: where there is network, save it with "
                 "datasets.load_dataset(ID).save_to_disk(FOLDER) and pass that folder)")
    return said


def read_documents(path: Path, opts: AddOptions) -> dict[str, list[str]]:
    """Documents per domain from ``path`` in ``opts.format`` (detected when ``auto``)."""
    if not path.exists():
        raise MixoptError(_missing(path, opts.format))
    if path.is_file() and path.suffix in (".gz", ".bz2", ".xz", ".zst", ".zip"):
        raise MixoptError(
            f"{path} is compressed ({path.suffix}); corpus add reads plain jsonl, csv and parquet: "
            "decompress it first (a recipe's jsonl extractor reads .jsonl.gz as it is)"
        )
    fmt = detect_format(path) if opts.format == "auto" else opts.format
    if fmt == "text":
        if (opts.domain_column, opts.text_column) != ("domain", "text"):  # detected as text
            raise MixoptError(f"{path} is a folder of text files: {_NO_COLUMNS}")
        if not path.is_dir():
            raise MixoptError(f"--format text needs a folder of domain folders, and {path} is a file")
        return _read_text_folders(path, opts.on_decode_error)
    frames = (_hf_frames(path) if fmt == "hf" else
              _table_frames(path, fmt, opts.on_decode_error, (opts.domain_column, opts.text_column)))
    return _group(frames, str(path), opts.domain_column, opts.text_column)


def add_corpus(
    name: str, source: Path, opts: AddOptions, *, force: bool = False
) -> tuple[dict[str, Any], bool]:
    """Build corpus ``name`` from a user's data; return (manifest, up_to_date).

    The content hash covers the input's bytes and the options, so running the same command again
    does nothing; ``force`` rebuilds.
    """
    check_corpus_name(name)
    if paths.find_recipe("corpora", name) is not None and not force:
        raise MixoptError(f"{name!r} is the name of a corpus recipe; choose another name (or pass --force)")
    if not source.exists():
        raise MixoptError(_missing(source, opts.format))
    sweep_leftovers(corpus_dir(name))  # a killed build's, even when this one finds nothing to do
    # before hashing, reading and tokenizing the input (a QA pass: minutes of work, then "read-only")
    check_can_create(corpus_dir(name), "corpus folder")
    refuse_holding_cwd(corpus_dir(name), f"the folder of corpus {name!r},")
    params = build_params(
        vocab_size=opts.vocab_size,
        val_documents=opts.val_documents,
        seed=opts.seed,
        max_doc_chars=opts.max_doc_chars,
        tokenizer_sample_chars=opts.tokenizer_sample_chars,
    )
    blob = {
        "input": sha256_of(source),
        "format": opts.format,
        "domain_column": opts.domain_column,
        "text_column": opts.text_column,
        "licence": opts.licence,
        "params": params,
    }
    if opts.on_decode_error != "error":  # only then: corpora added before the option keep their hash
        blob["on_decode_error"] = opts.on_decode_error
    digest = hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()
    out = corpus_dir(name)
    if not force and (out / "manifest.json").is_file():
        try:
            old = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            old = {}
        if not isinstance(old, dict):  # a damaged manifest: rebuilt over
            old = {}
        if old.get("hash") == digest:
            return old, True
        # Built from the same path, it is rebuilt (the data or options changed: an update). From
        # another path it is most likely a name taken twice: runs, searches and mixture JSONs made on
        # the first would point at a corpus that is gone.
        made_from = built_from(old)
        if made_from and made_from != str(source.resolve()):
            raise MixoptError(
                f"a corpus named {name!r} is already built from {made_from} (hash "
                f"{str(old.get('hash', '?'))[:12]}); choose another name for {source}, or pass --force to "
                "replace it"
            )
    docs = read_documents(source, opts)
    src = {
        "kind": "path",
        "package": str(source.resolve()),
        "version": "local",
        "licence": opts.licence,
        "sha256": blob["input"],
    }
    manifest = build_from_documents(
        name,
        docs,
        out,
        vocab_size=opts.vocab_size,
        val_documents=opts.val_documents,
        seed=opts.seed,
        sources=[{**src, "domain": d} for d in docs],
        recipe_hash=digest,
        max_doc_chars=opts.max_doc_chars,
        tokenizer_sample_chars=opts.tokenizer_sample_chars,
        extra={
            "description": f"added from {source}",
            "input": {"path": str(source.resolve()), "format": opts.format},
        },
    )
    return manifest, False
