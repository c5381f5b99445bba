"""The one error type for bad user input.

Library code raises :class:`MixoptError` (a ``ValueError``) with a message that names what is
wrong and how to fix it; the CLI turns it into one line on stderr and exit code 2.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

T = TypeVar("T")


def is_control(ch: str) -> bool:
    """Whether ``ch`` is a control character (a newline, a tab, DEL, C1's NEL) or a Unicode line or
    paragraph separator: what no one line of a terminal, a table or an export can carry."""
    import unicodedata

    return unicodedata.category(ch) in ("Cc", "Zl", "Zp")


MAX_INT_DIGITS = 300  # digits of an integer read exactly from a user's text (see int_or_float)


def int_or_float(text: str) -> int | float:
    """A whole number written in a user's text: an int, exactly, up to :data:`MAX_INT_DIGITS` digits
    (ids and seeds of 19 digits and more stay exact), else a float (10**400 as inf, which the checks
    refuse by name: as an int it overflowed every float comparison with a traceback).

    Raises:
        ValueError: ``text`` is not a number.
    """
    return int(text) if len(text.strip().lstrip("+-")) <= MAX_INT_DIGITS else float(text)


def finite_json(obj: Any) -> Any:
    """``obj`` with NaN and ±inf as None (null), numpy values as Python's: ``json.dumps`` writes them
    as bare ``NaN`` and ``Infinity``, which strict parsers (jq, JavaScript) refuse."""
    import math

    import numpy as np

    if isinstance(obj, np.generic | np.ndarray):
        obj = obj.tolist()
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite_json(v) for v in obj]
    return obj


def refuse_blank(value: str | None, what: str, fix: str) -> None:
    """Refuse a value left empty (``''``: a variable left unset) or blank (``' '``), in one wording:
    "``what`` is empty; ``fix``" or "``what`` ' ' is blank; ``fix``". None (not given) passes.

    Raises:
        MixoptError: naming ``what`` (the option) and ``fix``.
    """
    if value is not None and not value.strip():
        said = "is empty" if value == "" else f"{value!r} is blank"
        raise MixoptError(f"{what} {said}; {fix}")


MAX_LINE = 2000  # characters of an error or warning line; a 5,000-character value is cut in its middle


def one_line(text: str, limit: int = MAX_LINE) -> str:
    """``text`` as one terminal line: control characters (a newline, an escape, C1's, U+2028) that a
    value brought in are shown escaped, as Python writes them (a path with a newline had split the
    error in two, an escape sequence drove the terminal), and a text over ``limit`` characters keeps
    its start and end."""
    if any(is_control(ch) for ch in text):
        text = "".join(repr(ch)[1:-1] if is_control(ch) else ch for ch in text)
    if len(text) > limit:
        head, tail = limit * 2 // 3, limit // 3
        text = f"{text[:head]} … ({len(text) - head - tail:,} characters cut) … {text[-tail:]}"
    return text


def listed(items: Sequence[str], n: int) -> str:
    """The first ``n`` items of a message's list and how many more: ``a, b, c and 4 more``."""
    return ", ".join(items[:n]) + (f" and {len(items) - n} more" if len(items) > n else "")


class MixoptError(ValueError):
    """Bad input from a user: one line naming the problem and the fix (the CLI exits with 2)."""

    exit_code = 2


class RunsFailedError(MixoptError):
    """A search whose runs failed, diverged or timed out, leaving too few to fit: the input was
    good and the evaluator or its jobs were not. The CLI exits with 1, so that a pipeline can tell
    it from a wrong option (2)."""

    exit_code = 1


class StoreLockedError(MixoptError):
    """The run store stayed locked by another program past every wait: nothing about the input is
    wrong, and the same command works once the lock is gone. The CLI exits with 1."""

    exit_code = 1


class NoSpaceError(MixoptError):
    """The disk filled (or a file size limit was reached) while a command wrote: its input was right,
    so the CLI exits with 1, as for the OSError it stands for; the message says what was kept and
    how to go on from it."""

    exit_code = 1


class TooFewRunsError(MixoptError):
    """A fit refused for having fewer runs than ``needed`` (a fold's runs, when cross-validating)."""

    def __init__(self, message: str, *, needed: int = 0) -> None:  # a default: exceptions unpickle by args
        super().__init__(message)
        self.needed = needed


# ----- the machine failing a command: a full disk, a read-only mount --------------------------
NEARLY_FULL_BYTES = 1 << 20  # less free than this on a path's device: it is full, for what mixopt writes


def nearly_full(path: str | os.PathLike[str]) -> bool:
    """Whether the device holding ``path`` (or its nearest existing parent) has next to no space."""
    import shutil
    from pathlib import Path

    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        usage = shutil.disk_usage(p)
    except OSError:
        return False
    # total 0: a pseudo or FUSE file system that reports no sizes, not a full one (the review)
    return usage.total > 0 and usage.free < NEARLY_FULL_BYTES


def as_os_error(exc: BaseException, path: str | os.PathLike[str] | None = None) -> OSError | None:
    """The OSError that ``exc`` stands for, when a library reported one in its own words (a QA pass:
    each had ended a command in a traceback): tokenizers' bare ``Exception`` "… (os error 28)",
    numpy's ``OSError`` "N requested and M written", SQLite's "database or disk is full", and,
    where ``path``'s disk is full, SQLite's "disk I/O error" and torch's checkpoint writer. Only
    those types and words: any other error (a bug, a refusal of input) is None, full disk or not."""
    import errno
    import re
    import sqlite3

    def full() -> OSError:
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), None if path is None else str(path))

    text = str(exc)
    if isinstance(exc, MixoptError):
        return None
    if isinstance(exc, OSError):
        if exc.errno:
            return exc
        return full() if re.search(r"\d+ requested and \d+ written", text) else None
    if type(exc) is Exception and (m := re.search(r"\(os error (\d+)\)", text)):
        code = int(m.group(1))
        return OSError(code, os.strerror(code), None if path is None else str(path))
    on_full_disk = path is not None and nearly_full(path)
    if isinstance(exc, sqlite3.DatabaseError):
        if "database or disk is full" in text or ("disk I/O error" in text and on_full_disk):
            return full()
        return None
    # torch.save's zip writer: "[enforce fail at inline_container.cc:…] . unexpected pos …"
    if isinstance(exc, RuntimeError) and "inline_container" in text and on_full_disk:
        return full()
    return None


def environment_message(err: OSError) -> tuple[str, int] | None:
    """One line and an exit code for a machine's refusal to write: 1 where the command was right and
    the disk is full, 2 where it names a place that cannot be written. None for other errors."""
    import errno

    where = f" ({err.filename})" if err.filename else ""
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        if not err.filename:  # also the inotify watch limit, a full /dev/shm: not surely the disk
            return (f"no space left on a device ({err.strerror}): free some (the workspace's, --out's or "
                    "--store's disk, /dev/shm), and run the command again", 1)
        return (f"no space left on the device{where}: free some, or point MIXOPT_HOME, --out or --store "
                "elsewhere, and run the command again (nothing half-written was kept)", 1)
    if err.errno == errno.EFBIG:
        return (f"a file grew past this process's file size limit{where} (`ulimit -f`): raise it, or write "
                "elsewhere, and run the command again (nothing half-written was kept)", 1)
    if err.errno == errno.EIO and err.filename:  # SQLite's "disk I/O error" where the disk is not full
        return (f"input/output error writing {err.filename}: a file size limit (`ulimit -f`), a quota or the "
                "disk itself; fix it, and run the command again (nothing half-written was kept)", 1)
    if err.errno == errno.EROFS:
        return (f"read-only file system{where}: point MIXOPT_HOME, --out or --store at a writable folder", 2)
    if err.errno in (errno.EACCES, errno.EPERM) and err.filename:  # without a path: not a path's mode
        return (f"permission denied{where}: check the path's owner and mode, or give another path", 2)
    return None


class MixoptWarning(UserWarning):
    """Something suspicious that does not stop the run (renormalised rows, epoch caps, ...)."""


class FewRunsWarning(MixoptWarning):
    """A model with few runs per parameter: said of a fit, not of each cross-validation fold (whose
    figures are the check the warning asks for)."""


_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep
# Standard-library plumbing between a user's call and mixopt's code (a cached_property, a context
# manager): not the user's line either.
_PLUMBING = frozenset({"functools", "contextlib"})


def warn(message: str, category: type[Warning] = MixoptWarning) -> None:
    """:func:`warnings.warn` at the first caller outside mixopt (what Python 3.12's
    ``skip_file_prefixes`` does), so that a library user's warning names the line of their own code
    that led to it and Python's once-per-line filter counts their lines. Code that mixopt runs in a
    thread or another process (cross-validation workers, Ray trials) has no user's line above it:
    its warnings name the thread's or worker's entry point."""
    frame, level = sys._getframe(1), 2  # stacklevel 2: warn's caller
    while frame is not None and (frame.f_code.co_filename.startswith(_PACKAGE)
                                 or frame.f_globals.get("__name__") in _PLUMBING):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)


@contextlib.contextmanager
def warnings_as_notes() -> Iterator[list[str]]:
    """Collect the MixoptWarnings raised inside (for a result's notes) and still show every warning.

    A fit that did not converge warns on the console; the mixture JSON it writes should say so too.
    The list is filled when the block ends, each message once.
    """
    notes: list[str] = []
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:  # type: ignore[assignment]
            warnings.simplefilter("always")
            yield notes
    finally:  # shown as they would have been, under the caller's filters, even if the block raised
        for w in caught:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)
    notes.extend(dict.fromkeys(str(w.message) for w in caught if issubclass(w.category, MixoptWarning)))


@contextlib.contextmanager
def warnings_if_ok() -> Iterator[list[warnings.WarningMessage]]:
    """Show the warnings raised inside only if the block ends without an error; yields the list
    they are recorded in (a report keeps them too).

    Notes about an input (rows renormalised, runs left out) above a refusal of another argument are
    noise: the user gets one error line, and the notes once the command goes on.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught
    for w in caught:  # under the caller's filters
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)


def warn_if_ok(fn: Callable[..., T]) -> Callable[..., T]:
    """``fn`` under :func:`warnings_if_ok`: its warnings shown only if it returns."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        with warnings_if_ok():
            return fn(*args, **kwargs)

    return wrapper
