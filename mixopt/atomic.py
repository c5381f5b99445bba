"""Write files and folders so that a crash never leaves a half-written result.

Everything is written to a temporary sibling first and renamed into place at the end; a rename on
the same filesystem is atomic on POSIX.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mixopt.errors import MixoptError, as_os_error, is_control, nearly_full, refuse_blank


def _check_parent(path: Path) -> None:
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MixoptError(f"cannot create folder {parent}: {exc.strerror}; choose a writable path") from exc
    if not os.access(parent, os.W_OK):
        raise MixoptError(f"output folder {parent} is not writable; choose a writable path")


def _target(path: Path, what: str, *, folder: bool = False) -> Path:
    """Where a write to ``path`` lands: a symlink's target (the link stays; a corpus folder linked to
    another disk stays there), and never a device, a pipe, or a file where a ``folder`` goes, which
    the final rename would replace rather than write into."""
    try:
        if folder:  # a ".." through the folder itself ("out/../out") would not resolve once it is moved aside
            path = path.resolve() if path.name in ("", ".", "..") else path.parent.resolve() / path.name
        if path.is_symlink():
            path = path.resolve()
    except RuntimeError:  # Python's "Symlink loop from …" had been a traceback
        raise MixoptError(f"{what} {path} is a symbolic link that loops; give another path") from None
    if folder and path.exists() and not path.is_dir():
        raise MixoptError(f"cannot write folder {path}: a file is in its place; move it or choose another")
    if not folder and path.exists() and not path.is_dir() and not path.is_file():
        raise MixoptError(f"{what} {path} is not a regular file (a device, pipe or socket); give a file path")
    return path


def refuse_holding_cwd(folder: str | os.PathLike[str], what: str, example: str | None = None) -> None:
    """Refuse a folder that a command replaces whole when it is the current folder or holds it (an
    empty ``--exports ""`` is ``.``): the shell would be left in a deleted folder.

    Raises:
        MixoptError: naming ``what`` (the option, or the folder's role), and ``example``, a new folder
        to give instead (None: the command has no option for it, so only ``cd`` helps).
    """
    try:
        cwd = Path.cwd().resolve()
    except OSError:  # the current folder is gone already: nothing to protect
        return
    if cwd.is_relative_to(Path(folder).expanduser().resolve()):
        fix = f"give a new folder, such as {example}" if example else "run it from another folder"
        raise MixoptError(f"{what} {os.fspath(folder) or repr('')} is the current folder or holds it, and "
                          f"it is replaced whole; {fix}")


def first_missing(folder: Path) -> Path | None:
    """The highest of ``folder`` and its parents that does not exist yet (None: ``folder`` exists):
    what creating ``folder`` makes, for :func:`remove_made` to undo."""
    if folder.exists():
        return None
    top = folder
    while not top.parent.exists():
        top = top.parent
    return top


def remove_made(folder: Path, made: Path | None) -> None:
    """Remove ``folder`` and its parents up to ``made`` (:func:`first_missing`'s answer before they
    were created) while they are empty: a failed command leaves no empty folders behind."""
    path = folder
    while made is not None and path.is_dir() and not any(path.iterdir()):
        path.rmdir()
        if path == made:
            break
        path = path.parent


def _check_folder(folder: Path, out: Path, what: str, *, create: bool = True) -> None:
    """Check a file can be written in ``folder`` by writing a probe (``os.access`` says yes to root
    everywhere, and some filesystems refuse new files whatever the modes say).

    ``create``: make ``folder`` now; else a missing one is probed by a folder made and removed in
    its nearest existing parent, so a command that fails later leaves no empty folders behind.
    """
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise MixoptError(f"{what} {out}: {probe} is a file, not a folder; choose a writable path")
    # before making anything: an empty probe file fits on a full disk, the output would not
    if nearly_full(probe):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(probe))
    try:
        if create:
            folder.mkdir(parents=True, exist_ok=True)
        if folder.is_dir():
            fd, tmp = tempfile.mkstemp(prefix=".write.", suffix=".check", dir=folder)
            os.close(fd)
            os.unlink(tmp)
        else:
            os.rmdir(tempfile.mkdtemp(prefix=".write.", suffix=".check", dir=probe))
    except OSError as exc:
        raise MixoptError(
            f"{what} {out}: cannot write in {folder} ({exc.strerror}); choose a writable path"
        ) from exc


def refuse_odd_name(text: str, what: str) -> None:
    """Refuse an output name that is blank (``' '`` had made a file named by a space) or holds a control
    character (a newline, an escape: every later listing or "wrote" line prints it to a terminal).

    Raises:
        MixoptError: naming ``what`` (the option).
    """
    # '' is '.' to Path: "--out . is a folder" named a path the user had not typed
    refuse_blank(text, what or "the output", "give a path")
    if any(is_control(ch) for ch in text):
        raise MixoptError(f"{what or 'the output'} {text!r} holds a control character (a newline, an "
                          "escape); give a name of printable characters")


def output_path(value: str | os.PathLike[str], what: str = "--out") -> Path:
    """An output file path as the user typed it: ``-`` (stdout elsewhere) and ``dir/`` (a folder,
    which ``Path`` would turn into a file called ``dir``) are refused. Also typer's ``parser`` of
    the commands' ``--out`` file options, which see the text before ``Path`` drops the slash."""
    text = os.fspath(value)
    refuse_odd_name(text, what)
    named = f"{what} {text}" if what else text
    if text == "-":
        raise MixoptError(f"{what + ' ' if what else ''}'-' is not stdout here; give a file path")
    # an existing folder is left to check_writable, whose message suggests a file name in it
    if (text.endswith(("/", os.sep)) or os.path.basename(text) in (".", "..")) and not Path(text).is_dir():
        raise MixoptError(f"{named} names a folder (it ends with '/', '.' or '..'); give the path of a file "
                          "in it")
    return Path(text)


def check_writable(
    path: str | os.PathLike[str], what: str = "--out", inputs: dict[str, Any] | None = None,
    example: str = "mixture.json", reader: str = "this command reads",
) -> Path:
    """Refuse an output file path that cannot be written, before any work is spent on it.

    ``inputs``: option → path of the files the command reads (``reader`` says whose they are where
    it is not this command's); the output may be none of them.
    ``example``: a file name the error suggests when ``path`` is a folder.
    Creates nothing (the write makes the parent folder). Returns the absolute path.
    """
    out = _target(output_path(path, what).expanduser(), what)
    for option, src in (inputs or {}).items():
        if src is not None and out.resolve() == Path(src).expanduser().resolve():
            raise MixoptError(f"{what} {out} is the {option} file {reader}; write to another path")
    if out.is_dir():
        raise MixoptError(f"{what} {out} is a folder; give a file path such as {out / example}")
    if (corpus := _built_corpus_holding(out)) is not None:
        # `entropy tiny --out <corpus>/manifest.json` had replaced the manifest it had just read: the
        # corpus was unreadable until rebuilt (a bad-input sweep)
        raise MixoptError(f"{what} {out} is inside the built corpus {corpus}, whose files no command "
                          "but `corpus build` / `corpus add` may write; write to another path")
    _check_folder(out.parent, out, what, create=False)
    if out.exists() and not os.access(out, os.W_OK):
        raise MixoptError(f"{what} {out} exists and is read-only; choose another path")
    if _is_sqlite(out):  # no output of mixopt's is one: `export --out .mixopt/runs.sqlite` lost every run
        raise MixoptError(f"{what} {out} is a SQLite database (a run store?), which this command would "
                          "replace whole; write to another path")
    for suffix in ("-wal", "-shm", "-journal"):  # its side files: a running search's WAL holds its last runs
        if out.name.endswith(suffix) and _is_sqlite(base := out.with_name(out.name.removesuffix(suffix))):
            raise MixoptError(f"{what} {out} is the {suffix[1:]} file of the SQLite database {base} (a run "
                              "store?), which this command would replace; write to another path")
    return out.resolve()


def _built_corpus_holding(path: Path) -> Path | None:
    """The built corpus folder (a manifest.json of the corpus schema) that holds ``path``, if any."""
    from mixopt.corpus.shards import CORPUS_SCHEMA

    for folder in path.resolve().parents:
        manifest = folder / "manifest.json"
        if not manifest.is_file():
            continue
        try:
            data = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, ValueError):  # unreadable, or some other program's manifest
            continue
        if isinstance(data, dict) and data.get("schema") == CORPUS_SCHEMA:
            return folder
    return None


def _is_sqlite(path: Path) -> bool:
    if not path.is_file():  # a FIFO or a terminal would block the read
        return False
    try:
        with open(path, "rb") as f:
            return f.read(16) == b"SQLite format 3\x00"
    except OSError:  # not there, or not a file that can be read: nothing to lose
        return False


def check_folder_named(path: str | os.PathLike[str] | None, what: str = "--out") -> None:
    """Refuse an empty folder name given on purpose (None: the command's default folder): it would
    otherwise be the current folder."""
    if path is not None and not str(path).strip():
        raise MixoptError(f"{what} is empty; give a folder, or leave it out for the workspace's default")
    if path is not None:
        refuse_odd_name(str(path), what)


def check_writable_dir(path: str | os.PathLike[str], what: str = "--out") -> Path:
    """Create the output folder ``path`` (or find it) and check a file can be written in it.

    For commands that write a folder of results after long work (training): a file in its place or
    an unwritable parent fails here, before the work. Returns the folder.
    """
    refuse_odd_name(os.fspath(path), what)
    out = Path(path).expanduser()
    if out.exists() and not out.is_dir():
        raise MixoptError(f"{what} {out} is a file; give a folder path")
    _check_folder(out, out, what)
    return out


def check_can_create(path: str | os.PathLike[str], what: str) -> None:
    """Check that folder ``path`` could be written (made, if missing) and its disk is not full,
    creating nothing: for commands that write it only after long work (a corpus build)."""
    out = Path(path).expanduser()
    _check_folder(out.parent, out, what, create=False)


def _umask() -> int:
    try:  # Linux shows it without changing it (other threads may be creating files meanwhile)
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


def _publish_mode(tmp: Path, path: Path, directory: bool = False) -> None:
    """Give the temporary file the mode a plain ``open(path, "w")`` would have.

    ``mkstemp``/``mkdtemp`` create 0600/0700 entries, which would leave an exported mixture
    unreadable to a training job running as another user: keep an overwritten file's mode, else
    apply the umask to 0666 (0777 for folders).
    """
    try:
        mode = path.stat().st_mode & 0o7777 if path.exists() else (0o777 if directory else 0o666) & ~_umask()
        os.chmod(tmp, mode)
    except OSError:
        pass  # a filesystem without modes: the file is still written


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary file path next to ``path``; rename it onto ``path`` on success (onto a
    symlink's target, so the link stays)."""
    path = _target(Path(path), "output")
    if path.is_dir():
        raise MixoptError(f"cannot write {path}: it is a folder; give a file path")
    _check_parent(path)
    _sweep_orphans(path)
    try:  # named by its process, as atomic_dir's are, so that a kill -9's copy is swept later
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{_owner()}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise MixoptError(f"cannot write in {path.parent} ({exc.strerror}); choose a writable path") from exc
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        with _named(path):
            yield tmp_path
        _publish_mode(tmp_path, path)
        try:
            os.replace(tmp_path, path)
        except OSError as exc:
            raise MixoptError(f"cannot write {path} ({exc.strerror}); choose a writable path") from exc
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def _named(path: Path) -> Iterator[None]:
    """A write into ``path``'s temporary copy that the machine refused (a full disk, a file size
    limit), in whatever words the writer used, raised as the OSError it is with ``path`` named."""
    try:
        yield
    except Exception as exc:
        err = as_os_error(exc, path.parent)
        if err is None or err.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            raise
        raise OSError(err.errno, err.strerror, str(path)) from exc


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def _host() -> str:
    import socket

    return socket.gethostname().replace(".", "_")  # dots separate the parts of a temporary name


def _owner() -> str:
    """This process, as a temporary folder's name records it: host and pid."""
    return f"{_host()}-{os.getpid()}"


def sweep_leftovers(path: str | os.PathLike[str]) -> None:
    """Tidy what killed :func:`atomic_dir` calls on this host left beside ``path``: each previous
    version, ``.<name>.<host>-<pid>.old``, is put back if the kill came between the two renames
    (``path`` gone and that process's temporary folder still there: a corpus had vanished), else
    removed; then the temporary folders (see :func:`_sweep_orphans`). Only a dead process's: a live
    one's renames are under way (the review). Also called where a build finds nothing to do (a QA
    pass: a 31 MB temporary folder had outlived "up to date")."""
    path = Path(path)
    host = _host()
    for old in path.parent.glob(f".{path.name}.{host}-*.old"):
        owner = old.name.removeprefix(f".{path.name}.").removesuffix(".old")
        if not _dead(owner.rsplit("-", 1)[-1]):
            continue
        if not path.exists() and any(path.parent.glob(f".{path.name}.{owner}.*.tmp")):
            os.replace(old, path)
        else:
            shutil.rmtree(old, ignore_errors=True)
    legacy = path.with_name(f".{path.name}.old")  # mixopt before 2026-12-06 named it by no process
    if legacy.is_dir() and path.exists():
        shutil.rmtree(legacy, ignore_errors=True)
    _sweep_orphans(path)


def _dead(pid: str) -> bool:
    """Whether process ``pid`` of this host is gone (a name that is no pid: not ours to judge)."""
    if not pid.isdigit() or int(pid) == os.getpid():
        return False
    if os.name != "posix":  # Windows: os.kill(pid, 0) sends a console Ctrl+C, and tells nothing
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:  # alive, another user's
        return False
    return False


def _sweep_orphans(path: Path) -> None:
    """Remove temporary folders and files of ``path`` left by processes of this host that died
    (kill -9 mid-build, a corpus's can hold gigabytes; mid-write of a checkpoint or an export, whose
    copies had stayed for good, a QA pass). Another host's, on a shared file system, stay."""
    # mkstemp's and mkdtemp's random part holds no dot: a name matched whole is this path's copy, not
    # that of a file whose name goes on (out.json.HOST-PID: its writer's pid follows), and a name's
    # glob characters ([, *) are its own
    mine = re.compile(rf"\.{re.escape(path.name)}\.{re.escape(_host())}-(\d+)\.[^.]+\.tmp")
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        if (m := mine.fullmatch(tmp.name)) and _dead(m.group(1)):
            if tmp.is_dir() and not tmp.is_symlink():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    tmp.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary folder next to ``path``; it replaces ``path`` only if the block succeeds
    (a symlinked folder: its target, so the link stays)."""
    refuse_odd_name(os.fspath(path), "output folder")
    refuse_holding_cwd(path, "output folder")
    path = _target(Path(path), "output", folder=True)
    _check_parent(path)
    sweep_leftovers(path)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.{_owner()}.", suffix=".tmp", dir=path.parent))
    except OSError as exc:
        raise MixoptError(f"cannot write in {path.parent} ({exc.strerror}); choose a writable path") from exc
    try:
        with _named(path):
            yield tmp
        _publish_mode(tmp, path, directory=True)
        try:
            if path.exists():
                old = path.with_name(f".{path.name}.{_owner()}.old")  # whose: see sweep_leftovers
                shutil.rmtree(old, ignore_errors=True)
                os.replace(path, old)
                os.replace(tmp, path)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, path)
        except OSError as exc:
            raise MixoptError(f"cannot replace {path} ({exc.strerror}); choose another path") from exc
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
