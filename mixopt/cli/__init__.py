"""The ``mixopt`` command: a thin layer over the library.

Each command parses its options, calls one library function and renders a rich summary. Verbs
follow the workflow: ``corpus`` → ``proxy`` → ``search`` → ``fit`` → ``export`` → ``report`` →
``train``. A :class:`~mixopt.errors.MixoptError` becomes one line on stderr and exit code 2.
Command groups live in sibling modules (one per verb) and register themselves on :data:`app`.
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import logging
import os
import re
import sys
import threading
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import typer

from mixopt.errors import MixoptError, MixoptWarning, one_line

app = typer.Typer(
    name="mixopt",
    help="Find the data mixture that trains the best model: proxy swarms, fitted laws, exported mixtures.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def version_line() -> str:
    """``mixopt 0.1.0 (python 3.11.9, torch 2.13.0, ray 2.60.0)``: what a bug report needs, read from
    the installed packages' metadata (importing torch and Ray would take seconds)."""
    from importlib.metadata import PackageNotFoundError, version

    from mixopt import __version__

    parts = [f"python {sys.version.split()[0]}"]
    for pkg in ("torch", "ray", "lightgbm", "botorch"):
        try:
            parts.append(f"{pkg} {version(pkg)}")
        except PackageNotFoundError:
            parts.append(f"{pkg} not installed")
    return f"mixopt {__version__} ({', '.join(parts)})"


def _version(value: bool) -> None:
    if value:
        print(version_line())
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", is_eager=True, callback=_version,
                                 help="Print mixopt's version and its main dependencies, and exit."),
) -> None:
    # Only for the options before any command (--version); the help is the app's.
    pass


# Modules that hold command groups; each adds its commands to ``app`` on import.
_COMMAND_MODULES: tuple[str, ...] = (
    "corpus",
    "bench",
    "proxy",
    "search",
    "swarm",
    "runs",
    "report",
    "fit",
    "entropy",
    "export",
    "train",
)


def _register() -> None:
    for name in _COMMAND_MODULES:
        importlib.import_module(f"mixopt.cli.{name}")


_shown: set[str] = set()  # this command's warnings so far


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    if issubclass(category, MixoptWarning):
        # Once per command: Python's own once-per-place rule is undone by every catch_warnings in
        # torch or the fitters, and compare would repeat a budget note for each of its runs.
        if str(message) not in _shown:
            _shown.add(str(message))
            print(f"warning: {one_line(str(message))}", file=sys.stderr)
    else:
        logging.getLogger("py.warnings").debug("%s:%s: %s", filename, lineno, message)


class _Formatter(logging.Formatter):
    """mixopt's own warnings read as its warnings.warn lines do (``warning: …``); debug and info
    lines (MIXOPT_LOG=INFO) and other libraries' keep level and logger name."""

    def format(self, record: logging.LogRecord) -> str:
        if record.name.startswith("mixopt") and record.levelno >= logging.WARNING:
            return f"{record.levelname.lower()}: {record.getMessage()}"
        return super().format(record)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the app, turning user errors into one line and exit code 2."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    _tolerate_legacy_encodings()
    logging.basicConfig(
        level=os.environ.get("MIXOPT_LOG", "WARNING"), format="%(levelname)s %(name)s: %(message)s"
    )
    for handler in logging.getLogger().handlers:
        handler.setFormatter(_Formatter("%(levelname)s %(name)s: %(message)s"))
    warnings.showwarning = _show_warning
    _shown.clear()
    _register()
    from mixopt import mixture

    mixture.COMMAND = list(sys.argv[1:] if argv is None else argv)  # what made a mixture: made_by()
    from mixopt.cli.common import WORK_DONE

    WORK_DONE.clear()  # (run_cli runs commands one after another in one process)
    try:
        with _stops_as_ctrl_c():
            _run(argv)
    finally:
        mixture.COMMAND = None
        if "ray" in sys.modules:
            _quiet_ray_exit()


def run_cli(args: Sequence[str]) -> int:
    """Run ``mixopt ARGS`` in this process and return its exit code (what a shell would see), for
    tests and notebooks that drive the CLI as a user does."""
    try:
        main(list(args))
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


@contextlib.contextmanager
def _stops_as_ctrl_c() -> Iterator[None]:
    """SIGTERM (Slurm, Kubernetes, ``kill``) and SIGHUP (an ssh session dropped) stop a command as
    Ctrl-C does: its cleanup runs and it says "interrupted", exit 130. By default they had killed it
    where it stood: `fit`'s cross-validation workers ran on (one for over half an hour, holding a
    pipeline open), a corpus build's temporary folder stayed, and the exit was 143 with no word (a QA
    pass). A signal the parent set to be ignored (nohup) stays ignored; a search and a training run
    put their own handlers in on top (they stop at a resumable point)."""
    import signal

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    stops = [s for s in (signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s is not None]  # Windows: no HUP
    before = {s: signal.getsignal(s) for s in stops}
    for s, handler in before.items():
        if handler == signal.SIG_DFL:
            signal.signal(s, stop)
    try:
        yield
    finally:
        for s, handler in before.items():
            if handler is not None:
                signal.signal(s, handler)


def _tolerate_legacy_encodings() -> None:
    """Under a locale that is not UTF-8 (LANG=en_US.ISO-8859-1, or C without Python's UTF-8 mode),
    print what the encoding cannot say as "?": a finished search's table had ended in a
    UnicodeEncodeError traceback on its "·", exit 1, after its mixture was written (a QA pass)."""
    import codecs

    # stderr keeps Python's backslashreplace there, which loses nothing of an error's path
    for stream, errors in ((sys.stdout, "replace"), (sys.stderr, "backslashreplace")):
        encoding = getattr(stream, "encoding", None) or "utf-8"
        try:
            utf = codecs.lookup(encoding).name.startswith("utf")
        except LookupError:
            utf = False
        if not utf and hasattr(stream, "reconfigure"):
            stream.reconfigure(errors=errors)


def _quiet_ray_exit() -> None:
    """Ignore Ctrl-C while Ray's own atexit handler shuts the local cluster down.

    The command's work is done (its files written, its exit status set); a Ctrl-C pressed during
    that shutdown printed "Exception ignored in atexit callback" and a KeyboardInterrupt traceback.
    atexit runs handlers last-registered first, so this one runs before Ray's.
    """
    import atexit
    import signal

    # Ray's cli_logger calls colorama.init, whose exit handler wrote ESC[0m after a --json document
    # on a terminal (a QA pass: "Extra data" for a parser)
    if (colorama := sys.modules.get("colorama.initialise")) is not None:
        atexit.unregister(colorama.reset_all)
    global _quiet_registered
    if not _quiet_registered:
        atexit.register(signal.signal, signal.SIGINT, signal.SIG_IGN)
        _quiet_registered = True


_quiet_registered = False


def _run(argv: list[str] | None) -> None:
    try:
        # prog_name: click takes it from sys.argv[0], which run_cli's caller owns: usage errors had said
        # "see '-c export --help'" under python -c (ipykernel_launcher.py in a notebook; a QA pass)
        code = app(args=argv, standalone_mode=False, prog_name="mixopt")
        # Non-standalone typer returns, not raises, the code of a typer.Exit, and turns Ctrl-C into
        # Exit(130) on the way: hand both on as the process's exit status.
        if code == 130:
            raise KeyboardInterrupt
        if isinstance(code, int) and not isinstance(code, bool) and code != 0:
            raise SystemExit(code)
    except MixoptError as exc:
        print(f"error: {one_line(str(exc))}", file=sys.stderr)
        raise SystemExit(exc.exit_code) from None
    except KeyboardInterrupt:
        from mixopt.cli.common import WORK_DONE

        if WORK_DONE.is_set():  # saved already: what is left is printing it
            raise SystemExit(0) from None
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    except SystemExit:
        raise
    except OSError as exc:
        if exc.errno != errno.ENAMETOOLONG:
            _refuse_as_environment(exc)
            raise
        # pathlib's is_file()/exists() raise this one instead of answering False, wherever a path is
        # first looked at: one line for every command rather than a check in each.
        name = str(exc.filename or "")
        shown = one_line(name if len(name) <= 80 else f"{name[:40]}…{name[-30:]} ({len(name)} characters)")
        print(f"error: path too long for this file system: {shown}; give a shorter path", file=sys.stderr)
        raise SystemExit(2) from None
    except Exception as exc:  # click's usage errors arrive here in non-standalone mode
        _refuse_as_environment(exc)
        usage, abort = _click_exceptions()
        if isinstance(exc, abort):
            print("aborted", file=sys.stderr)
            raise SystemExit(130) from None
        if isinstance(exc, usage):
            _show_usage_error(exc)
            raise SystemExit(2) from None
        raise


def _refuse_as_environment(exc: Exception) -> None:
    """A full disk, a file size limit, a read-only mount or a denied path, in whatever words the
    library that met it used: one line and exit 1 (the disk) or 2 (the path), not a traceback."""
    from mixopt.errors import as_os_error, environment_message

    err = as_os_error(exc)
    said = environment_message(err) if err is not None else None
    if said is not None:
        logging.getLogger("mixopt").debug("the error behind it (MIXOPT_LOG=DEBUG shows this)", exc_info=exc)
        print(f"error: {one_line(said[0])}", file=sys.stderr)
        raise SystemExit(said[1]) from None


def _click_exceptions() -> tuple[tuple[type, ...], tuple[type, ...]]:
    """Click's usage-error and abort classes, from typer's own copy of click and from click.

    Newer typer releases ship click inside (``typer._click``) and raise its classes, older ones
    raise ``click``'s: checking only one of them let usage errors escape as tracebacks.
    """
    usage: list[type] = []
    abort: list[type] = [typer.Abort]
    for module in ("typer._click.exceptions", "click.exceptions"):
        try:
            mod = importlib.import_module(module)
        except ImportError:
            continue
        usage.append(mod.ClickException)
        if hasattr(mod, "Abort"):
            abort.append(mod.Abort)
    return tuple(usage), tuple(abort)


def _show_usage_error(exc: Exception) -> None:
    """One line: what was wrong and where the command's help is (help itself for a bare group)."""
    message = exc.format_message()  # type: ignore[attr-defined]
    if type(exc).__name__ == "NoArgsIsHelpError":  # ``mixopt`` or ``mixopt runs`` alone: show help
        if message.strip():  # typer's rich help is printed already, and its message is empty
            print(message, file=sys.stderr)
        return
    ctx = getattr(exc, "ctx", None)
    where = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
    # click's own line breaks joined, a value's spaces kept ('   ' had shown as ' ')
    message = re.sub(r"[ \t]*\n\s*", " ", message.strip())
    print(f"error: {one_line(message)}{where}", file=sys.stderr)
