"""The locks that keep two processes apart: one driver per search (:func:`driver_lock`, and
:func:`driver_alive`, which ``runs searches`` asks without importing Ray), one search planning per
run store (:func:`planning_lock`) and one trainer per run folder (:func:`folder_lock`).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from mixopt.errors import MixoptError

log = logging.getLogger(__name__)
DRIVING: list[str] = []  # the searches this process drives now (inside driver_lock)


@contextlib.contextmanager
def driver_lock(folder: Path, name: str, *, new_option: str | None = None) -> Iterator[None]:
    """Hold the search's lock while this process drives it; another driver of it is refused.
    ``new_option``: a new search's name option, named where another driver holds the folder (a
    search of the same name from another store, or one starting now).

    A ``flock`` on ``<search folder>/driver.lock``: the kernel releases it when the process ends,
    kill -9 included, so a dead driver never blocks a resume. Without it, a second ``--resume``
    would mark the first driver's live runs interrupted and run their slots again.
    """
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock, as before
        with _driving(name):
            yield
        return
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "driver.lock", "a+", encoding="utf-8") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise MixoptError(f"cannot lock {f.name} ({exc.strerror}); is the workspace on a file "
                                  "system without locks? Set MIXOPT_HOME to a local folder") from exc
            f.seek(0)
            pid = f.read().strip() or "?"
            if new_option is not None:
                raise MixoptError(f"{folder} is in use by another driver (pid {pid}), of a search named "
                                  f"{name!r} in another store or one starting now: pick another "
                                  f"{new_option}") from None
            raise MixoptError(
                f"search {name!r} is being run by another driver (pid {pid}); wait for it to end, or "
                f"stop it (Ctrl-C) and then run `mixopt search --resume {name}`"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        with _driving(name):
            yield


class FolderBusy(MixoptError):
    """Another process holds the folder (:func:`folder_lock`): nothing of this call's may be removed
    there, not even an empty folder it created, which the other process may be about to write in."""


@contextlib.contextmanager
def folder_lock(folder: Path, busy: str) -> Iterator[None]:
    """Hold ``folder`` while this process writes in it; another process asking meanwhile is refused
    with :class:`FolderBusy` (``busy``). A ``flock`` on the folder itself: no file is left in it, and
    the kernel releases it when the process ends, kill -9 included. A missing folder, or a file
    system without locks, goes on without one, as before."""
    fd, held_elsewhere = _flock_folder(folder)
    if held_elsewhere:
        raise FolderBusy(busy)
    try:
        yield
    finally:
        if fd is not None:
            _close(fd)


def _flock_folder(folder: Path, *, waiting: str | None = None) -> tuple[int | None, bool]:
    """(descriptor holding ``folder``'s flock or None, whether another process holds it). ``waiting``:
    wait for the other process instead, saying this."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        return None, False
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # the caller says what is wrong with the folder
        return None, False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):  # no locks on this file system
            _close(fd)
            return None, False
        if waiting is None:
            _close(fd)
            return None, True
        log.warning(waiting)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:  # Ctrl-C while waiting: the descriptor is closed, not leaked
            _close(fd)
            raise
    return fd, False


@contextlib.contextmanager
def planning_lock(store_path: Path) -> Iterator[None]:
    """Plan one search at a time per run store: a search plans its swarm around the swarms of the
    searches running now, which it sees once they are recorded; two started together had planned
    before either was, and ran the same seeded swarm twice (a QA pass). Held from planning until
    the search is recorded (seconds): a ``flock`` on the store's folder (a lock file beside the
    store would be left behind, or removed under a waiting search). A file system without locks
    plans without it, as before."""
    fd, _ = _flock_folder(Path(store_path).resolve().parent,
                          waiting="waiting for another search on this run store to finish planning (seconds)")
    try:
        yield
    finally:
        if fd is not None:
            _close(fd)


def _close(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)  # (closing the descriptor releases its flock)


@contextlib.contextmanager
def _driving(name: str) -> Iterator[None]:
    DRIVING.append(name)
    try:
        yield
    finally:
        DRIVING.remove(name)



def driver_alive(folder: Path) -> bool | None:
    """Whether a process holds ``folder``'s driver lock now (None: no driver ran here, as for a
    search another machine drives with a shared store, or no locks here).

    A search the store calls running whose lock is free lost its driver (kill -9, a lost node); so
    did one whose folder has no lock file, made by a mixopt older than the lock (2026-12-03; an
    upgrade QA pass found such searches shown running for good).
    """
    try:
        import fcntl
    except ImportError:
        return None
    path = folder / "driver.lock"
    if not path.is_file():  # a driver's own files without its lock: the older mixopt's, gone
        return False if any((folder / n).exists() for n in ("tune", "runs", "result.json")) else None
    with open(path, "a+", encoding="utf-8") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as exc:
            return True if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES) else None
        fcntl.flock(f, fcntl.LOCK_UN)
        return False


def shown_state(state: str, folder: Path) -> str:
    """A search's state as the store has it, ``stopped`` for a ``running`` one whose driver died
    (kill -9, a lost node): `mixopt search --resume` goes on with it."""
    return "stopped" if state == "running" and driver_alive(folder) is False else state
