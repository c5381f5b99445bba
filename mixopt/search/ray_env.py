"""Connecting to Ray: a local Ray by default, an existing cluster with ``--address``/``RAY_ADDRESS``.

Ray 2.60 starts local clusters with token authentication on: the dashboard and the cluster's
APIs answer 401 without the token. mixopt leaves it on and tells the user where the token is and
how to pass it (tests may turn it off for their own throw-away clusters, nothing else does).
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import logging
import os
import signal
import socket
import sys
import sysconfig
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from mixopt.errors import MixoptError, nearly_full, refuse_blank

logger = logging.getLogger(__name__)

DEFAULT_TOKEN_PATH = Path.home() / ".ray" / "auth_token"


@dataclass(frozen=True, kw_only=True)
class RayInfo:
    """What a user needs to know about the Ray the search runs on."""

    address: str
    started_here: bool
    num_cpus: int
    dashboard_url: str | None
    auth: str  # "token" or "disabled"
    token_source: str | None
    logs: str | None = None  # this machine's Ray session logs folder (None: not known)
    num_gpus: float = 0.0

    def describe(self) -> list[str]:
        """Lines for the CLI: where the dashboard is and how to get past its token check."""
        where = "a local Ray started here" if self.started_here else f"the Ray cluster at {self.address}"
        gpus = f", {self.num_gpus:g} GPU{'' if self.num_gpus == 1 else 's'}" if self.num_gpus else ""
        lines = [f"Ray: {where} ({self.num_cpus} CPUs{gpus})"]
        if self.dashboard_url:
            url = self.dashboard_url if "://" in self.dashboard_url else f"http://{self.dashboard_url}"
            lines.append(f"Ray dashboard: {url}")
            if self.auth == "token":
                lines.append(
                    f"  token authentication is on; the token is in {self.token_source}. Paste it when the "
                    "dashboard asks (`ray get-auth-token` prints it), or send the header "
                    "'Authorization: Bearer <token>'"
                )
        # Trials' output (what an evaluator prints, its training job's too) is kept out of the
        # search's own output (log_to_driver=False: Ray's worker noise), but not lost (a QA pass).
        if self.logs and self.started_here:
            lines.append(f"  what the trials print: {self.logs}/worker-*.out and .err")
        elif self.logs:
            lines.append(f"  what the trials print: {self.logs}/worker-*.out and .err on this node, each "
                         "node's own session folder on the others (the dashboard's Logs tab)")
        else:
            lines.append("  what the trials print: each node's Ray session folder, logs/worker-*.out "
                         "(the dashboard's Logs tab)")
        return lines


CONNECT_TIMEOUT_S = 5.0


def env_address() -> str | None:
    """``RAY_ADDRESS``, where it names one: a blank one (``export RAY_ADDRESS=' '``) is none, as an
    empty one is (it had reached the reachability check as "--address  : Invalid address format")."""
    return os.environ.get("RAY_ADDRESS", "").strip() or None


def check_address(address: str | None) -> None:
    """Refuse a blank ``--address``: "" had run on a local Ray as if none was given, and " " passed
    Ray's own "Invalid address format:  " on."""
    refuse_blank(address, "--address", "give host:port of the cluster's head, auto (the cluster of `ray "
                 "start` here) or local, or leave it out")


def reachable_address(address: str) -> str:
    """``address`` as host:port (``auto`` resolved), after checking its GCS port answers.

    Ray itself retries an unreachable or dead cluster for minutes with log lines and no error;
    one TCP connect with a timeout says at once what is wrong.

    Raises:
        MixoptError: ``auto`` finds no cluster, or nothing answers at the address.
    """
    try:
        from ray._private import services  # private: where it moves, check the address as given

        resolved = services.canonicalize_bootstrap_address(address)
    except (ImportError, AttributeError):
        if address == "auto":
            return address  # Ray resolves it
        resolved = address
    except ConnectionError:  # "auto" found none
        resolved = None
    except ValueError as exc:
        raise MixoptError(f"--address {address}: {exc}; give host:port of the cluster's head (its GCS, "
                          "port 6379 by default)") from exc
    if resolved is None:
        raise MixoptError(f"--address {address}: no Ray cluster was started on this machine (`ray start "
                          "--head`); give host:port of a cluster's head, or drop --address to run on a "
                          "local Ray")
    host, _, port = resolved.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S):
            pass
    except (OSError, ValueError) as exc:
        why = "timed out" if isinstance(exc, TimeoutError) else (getattr(exc, "strerror", None) or str(exc))
        given = f" (--address {address})" if address != resolved else ""
        raise MixoptError(
            f"cannot reach the Ray cluster at {resolved}{given}: "
            f"{why}; is it running (`ray status --address {resolved}`)? Check --address / RAY_ADDRESS, "
            "or drop them to run on a local Ray (--address local on a --resume)"
        ) from None
    return resolved


def token_source() -> str | None:
    """Where Ray reads its auth token from, in Ray's own order; None if there is none."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return "the RAY_AUTH_TOKEN environment variable"
    path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    if path:
        return path if Path(path).is_file() else None
    return str(DEFAULT_TOKEN_PATH) if DEFAULT_TOKEN_PATH.is_file() else None


def user_modules(evaluator: str | Callable | None) -> list[str]:
    """Where the user's evaluator module lives, when no installed package holds it: ``[path]``.

    A cluster's workers import the evaluator by name, and a module next to the driver (its folder,
    PYTHONPATH, a folder a notebook put on ``sys.path``) is on no other node; Ray ships such a
    module (its top-level package folder or ``.py`` file) to every worker as
    ``runtime_env={"py_modules": ...}``. Installed packages and mixopt itself must be installed on
    the nodes. Empty for the proxy trainer and for a function of ``__main__`` (pickled whole).
    ``evaluator``: ``module:function``, or a callable (its module's).
    """
    if callable(evaluator):
        top = str(getattr(evaluator, "__module__", None) or "").split(".")[0]
    elif evaluator and ":" in evaluator:
        top = evaluator.partition(":")[0].split(".")[0]
    else:
        return []
    if top in ("", "__main__", "mixopt"):
        return []
    try:
        mod = sys.modules.get(top) or importlib.import_module(top)
    except Exception:  # prepare() reports an evaluator that does not import
        return []
    folders = list(getattr(mod, "__path__", None) or [])
    where = folders[0] if len(folders) == 1 else getattr(mod, "__file__", None)
    if not where or len(folders) > 1:  # a namespace package spread over folders: install it
        return []
    loc = Path(where).resolve()
    if any(part in ("site-packages", "dist-packages") for part in loc.parts):
        return []
    stdlib = Path(sysconfig.get_paths()["stdlib"]).resolve()
    if loc.is_relative_to(stdlib):
        return []
    return [str(loc)]


def ensure_ray(
    address: str | None = None, *, num_cpus: int | None = None, dashboard: bool = True,
    py_modules: list[str] | None = None,
) -> RayInfo:
    """Connect to Ray once per process; reuse a connection that is already up.

    Args:
        address: cluster address (``host:6379``, or ``auto`` for the cluster of the last ``ray start``
            on this machine; Ray Client's ``ray://`` is refused); None reads ``RAY_ADDRESS``, and
            without it (or with ``local``) starts a Ray of this process's own.
        num_cpus: CPUs of that local Ray (default: all of this machine's).
        dashboard: start the dashboard of a local Ray on 127.0.0.1.
        py_modules: local modules to ship to the workers of a cluster joined by address
            (:func:`user_modules`); a local Ray's workers find them through the folders the trials
            put on their ``sys.path`` (:attr:`mixopt.search.trial.TrialContext.sys_path`).
    """
    import ray

    check_address(address)
    started_here = False
    client = address or env_address() or ""
    if client.startswith("ray://"):
        # Ray Client runs Tune on the cluster's head, and with it the callback that writes the run
        # store, which belongs to this machine: the search would never see its runs.
        raise MixoptError(
            f"--address {client}: Ray Client (ray://) is not supported; run `mixopt search` on a node "
            "of the cluster with --address auto (or host:6379), or submit it as a Ray job"
        )
    if not ray.is_initialized():
        address = address or env_address()
        if address == "local":
            address = None
        # Ray warns at every start that token auth is on and how to switch it off; mixopt keeps it
        # on and says where the token is (RayInfo.describe), so that line only misleads here.
        auth_log = logging.getLogger("ray._private.authentication.authentication_token_setup")
        level = auth_log.level
        auth_log.setLevel(logging.ERROR)
        # ray.init puts in a SIGTERM handler that exits at once (status 15, no cleanup): a Python
        # handler set before (the CLI's, a stop as Ctrl-C) is put back once Ray is up (the review).
        main = threading.current_thread() is threading.main_thread()
        sigterm = signal.getsignal(signal.SIGTERM) if main else None
        try:
            if address:
                address = reachable_address(address)
                if token_source() is not None and "RAY_AUTH_MODE" not in os.environ:
                    # Given an explicit address, Ray's client sends no token unless told to, and a
                    # 2.60 cluster (token auth on by default) refuses it after 20 s of retries. A
                    # client in token mode also reaches a cluster whose auth is off (checked).
                    from ray._raylet import Config

                    os.environ["RAY_AUTH_MODE"] = "token"
                    Config.initialize("")  # Ray caches the mode at import; as ray.init does for "auto"
                env = {"py_modules": list(py_modules)} if py_modules else None
                # Ray's core logs every failed attempt to join (a wrong token: 20 lines in 20 s); held
                # back, and read for the cause if the join fails.
                failed: Exception | None = None
                with _stderr_held() as held:
                    try:
                        ctx = ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING,
                                       runtime_env=env)
                    except (ConnectionError, RuntimeError, ValueError, ray.exceptions.RayError) as exc:
                        failed = exc
                if failed is not None:
                    cause = _join_failure(held, address)
                    if cause is not None:
                        raise MixoptError(cause) from None
                    raise failed
            else:
                # Ray runs workers at nice 15 so that its own daemons stay responsive; here the workers
                # ARE the workload (one training run per core), and at nice 15 any other process on a
                # shared machine starves them (measured: 2 trials got 0.6 core each next to one
                # nice-0 job). A user's own RAY_worker_niceness wins.
                os.environ.setdefault("RAY_worker_niceness", "0")
                with _own_process_group():
                    ctx = ray.init(
                        # "local": a Ray of this search's own. Without it Ray joins the cluster of the last
                        # `ray start` on this machine (another user's, or a dead one it then waits on
                        # forever); --address auto asks for that cluster.
                        address="local", num_cpus=num_cpus, include_dashboard=dashboard,
                        dashboard_host="127.0.0.1", log_to_driver=False, logging_level=logging.WARNING,
                    )
                started_here = True
        except MixoptError:  # the address check's own message says it all
            raise
        except OSError as exc:  # Ray writing its auth token under a read-only HOME (a QA pass)
            if exc.filename is None or exc.errno not in (errno.EROFS, errno.EACCES, errno.EPERM,
                                                         errno.ENOSPC):
                raise
            why = ("it keeps its auth token under HOME/.ray; set HOME to a writable folder"
                   if ".ray" in Path(str(exc.filename)).parts else
                   "set RAY_TMPDIR (its session files) and HOME (its auth token, in ~/.ray) to writable "
                   "folders with space")
            raise MixoptError(f"Ray cannot write {exc.filename} ({exc.strerror}): {why}") from exc
        except (ConnectionError, RuntimeError, ValueError, ray.exceptions.RayError) as exc:
            target = f"the Ray cluster at {address}" if address else "a local Ray"
            try:  # Ray's own choice: RAY_TMPDIR, TMPDIR, /tmp
                from ray._common.utils import get_default_system_temp_dir

                tmp = get_default_system_temp_dir()
            except Exception:  # a private helper, moved
                tmp = os.environ.get("RAY_TMPDIR") or tempfile.gettempdir()
            if not address and nearly_full(tmp):  # Ray's session files could not be written
                raise MixoptError(f"cannot start a local Ray: its temporary folder {tmp} is full (Ray keeps "
                                  "its session files there); free space, or set RAY_TMPDIR to another "
                                  "folder") from exc
            raise MixoptError(
                f"cannot start or reach {target}: {exc}; check --address / RAY_ADDRESS, "
                "and that the auth token of that cluster is in ~/.ray/auth_token or RAY_AUTH_TOKEN"
            ) from exc
        finally:
            auth_log.setLevel(level)
            if callable(sigterm):
                signal.signal(signal.SIGTERM, sigterm)
        url = getattr(ctx, "dashboard_url", None) or None
    else:
        try:
            url = ray._private.worker.get_dashboard_url() or None
        except Exception:  # informative only; a private helper may move between Ray versions
            url = None
    _quiet_worker_deaths()
    from ray._raylet import AuthenticationMode, get_authentication_mode

    auth = "token" if get_authentication_mode() == AuthenticationMode.TOKEN else "disabled"
    resources = ray.cluster_resources()
    cpus = int(resources.get("CPU", 1))
    gcs = ray.get_runtime_context().gcs_address
    try:  # a private helper, informative only
        logs = ray._private.worker._global_node.get_logs_dir_path()
        logs = logs if Path(logs).is_dir() else None
    except Exception:
        logs = None
    return RayInfo(
        address=str(gcs), started_here=started_here, num_cpus=cpus, dashboard_url=url, auth=auth,
        token_source=token_source() if auth == "token" else None, logs=logs,
        num_gpus=float(resources.get("GPU", 0.0)),
    )


@contextlib.contextmanager
def _own_process_group() -> Iterator[None]:
    """Start a local Ray's processes in a process group apart from the driver's: a signal sent to
    the driver's whole group (GNU ``timeout``, ``kill -TERM -PGID``) then reaches the driver, which
    stops the search as Ctrl-C does and ends Ray itself, and not Ray's GCS and raylet, whose deaths
    had left the driver waiting 60 s on them and dying of Ray's fatal error, the search unrecorded
    (a QA pass). The driver joins a group of its own while Ray starts, then goes back, so the
    terminal's Ctrl-C and job control still reach it. A driver that leads its group (a command run
    from an interactive shell) cannot leave it; its Ray shares its group, as before (POSIX only).
    While Ray starts (seconds), a signal to the old group would miss the driver: a
    :class:`_GroupSentinel` left there passes it on (a QA pass: a ``kill -9 -PGID`` in that window had
    left the driver, re-parented to init, to finish the whole search unattended)."""
    if os.name != "posix" or (before := os.getpgrp()) == os.getpid():
        yield  # (a group leader cannot leave its group)
        return
    try:  # started first, so that it is in the group the driver leaves
        sentinel: _GroupSentinel | None = _GroupSentinel()
    except OSError as exc:  # no interpreter to start (an embedded Python): no sentinel, as before
        logger.debug("no process group sentinel: %s", exc)
        sentinel = None
    try:
        moved = os.setpgid(0, 0) is None
    except OSError:  # a session leader, or not allowed: Ray shares the group
        moved = False
    try:
        if not moved and sentinel is not None:
            sentinel.stop(pass_on=False)  # the driver stayed in the group: it gets a signal itself
        yield
    finally:
        if sentinel is not None:
            sentinel.stop()
        if moved:
            try:
                os.setpgid(0, before)
            except OSError as exc:  # the group it left is gone: it stays in its own
                logger.debug("could not rejoin process group %d: %s", before, exc)


class _GroupSentinel:
    """A child that stays in the process group the driver leaves while Ray starts. A signal sent to
    that group ends it, and the driver then sends itself the same signal, as it would have got it. It
    sleeps until then, and ends itself once its parent is gone (a driver killed alone)."""

    _CODE = ("import os, signal, sys, time\n"
             "signal.signal(signal.SIGINT, signal.SIG_DFL)\n"  # as a shell's child: Ctrl-C ends it
             "while os.getppid() == int(sys.argv[1]):\n    time.sleep(0.5)\n")

    def __init__(self) -> None:
        import subprocess

        self._lock = threading.Lock()
        self._stopping = False  # stop() has begun: the watcher leaves the end's code to it
        self._passed = False  # a signal passed on: once, whichever thread saw it first
        self._proc = subprocess.Popen([sys.executable, "-S", "-c", self._CODE, str(os.getpid())],
                                      stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL)
        threading.Thread(target=self._watch, name="mixopt-group-sentinel", daemon=True).start()

    def _watch(self) -> None:
        code = self._proc.wait()
        with self._lock:
            if self._stopping:
                return
        self._pass_on(code)

    def _pass_on(self, code: int) -> None:
        with self._lock:
            if code >= 0 or self._passed:  # (0: it saw its parent gone)
                return
            self._passed = True
        os.kill(os.getpid(), -code)

    def stop(self, *, pass_on: bool = True) -> None:
        """End the sentinel. A signal that ended it before (one sent to the group as Ray finished
        starting, which the watcher thread had not yet passed on: a review found it dropped) is passed
        on, unless ``pass_on`` is False; a SIGKILL then cannot be told from this kill's own."""
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
        self._proc.kill()  # none once it is reaped: Popen knows its pid is no longer its child's
        code = self._proc.wait()
        if pass_on and code != -signal.SIGKILL:
            self._pass_on(code)


@contextlib.contextmanager
def _stderr_held() -> Iterator[list[str]]:
    """Write what this process (Ray's C++ core included) prints on fd 2 to a file, not the terminal;
    the list holds that text once the block ends. Left unread, it is dropped (debug log)."""
    sys.stderr.flush()
    saved = os.dup(2)
    held: list[str] = []
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield held
        finally:
            with contextlib.suppress(Exception):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            held.append(tmp.read().decode(errors="replace"))
            if held[0].strip():
                logger.debug("Ray, joining the cluster:\n%s", held[0])


def _join_failure(held: list[str], address: str) -> str | None:
    """What Ray's held-back lines say went wrong joining ``address``; None if they do not say."""
    text = "".join(held)
    if "InvalidAuthToken" in text or "Unauthenticated" in text:
        where = token_source() or "nowhere"
        return (f"the Ray cluster at {address} refused the auth token (read from {where}): it is not that "
                "cluster's; copy ~/.ray/auth_token from its head node, or set RAY_AUTH_TOKEN")
    if "Method not found" in text or "status: 404" in text:  # Ray Client's port; an HTTP server
        return (f"{address} answers, but not as a Ray cluster's GCS (a Ray Client or dashboard port?); "
                "give host:port of the head's GCS, 6379 unless `ray start --port` chose another")
    return None


WATCH_EVERY_S = 3.0
WATCH_MISSES = 5  # ~15 s without an answer; Ray itself aborts the process after 60 s
RAY_RECONNECT_ENV = "RAY_gcs_rpc_server_reconnect_timeout_s"  # Ray's wait for a head that went away


@contextlib.contextmanager
def watch_cluster(
    info: RayInfo, on_lost: Callable[[], None], *, every_s: float = WATCH_EVERY_S, misses: int = WATCH_MISSES
) -> Iterator[None]:
    """While the block runs, check that a joined cluster's head still answers; after ``misses``
    checks ``every_s`` apart without an answer, call ``on_lost`` (from a thread).

    A cluster lost under a running search made Ray's core wait 60 s and abort the process with its
    own line, and no word on how to go on. A local Ray started here goes down with this process.
    """
    if info.started_here:
        yield
        return
    wait = os.environ.get(RAY_RECONNECT_ENV)
    # A cluster that outlives its head (GCS fault tolerance) raises Ray's own wait: follow it
    with contextlib.suppress(ValueError):
        misses = max(misses, int((float(wait) - 5.0) / every_s)) if wait else misses
    host, _, port = info.address.rpartition(":")
    stop = threading.Event()

    def watch() -> None:
        missed = 0
        while not stop.wait(every_s):
            try:
                socket.create_connection((host.strip("[]"), int(port)), timeout=every_s).close()
                missed = 0
            except (OSError, ValueError):
                missed += 1
                if missed >= misses and not stop.is_set():
                    on_lost()
                    return

    thread = threading.Thread(target=watch, name="mixopt-cluster-watch", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()


WORKER_DIED = "A worker died or was killed while executing a task"


def _quiet_worker_deaths() -> None:
    """Drop the raylet's paragraph on each dead worker from the driver's output.

    Every trial's worker that dies (a --trial-timeout ends its worker on purpose) is recorded by the
    driver with its reason and reported in one line; Ray's own notice adds ten lines of guesses (OOM
    killer, ``ray stop``, SIGSEGV) per worker. It still reaches Ray's logs. Ray prints it from a
    private helper: where that moves, the notice shows as before.
    """
    try:
        from ray._private import worker
    except ImportError:
        return
    original = getattr(worker, "print_to_stdstream", None)
    if original is None or getattr(original, "_mixopt_quiet", False):
        return

    def print_to_stdstream(data: dict, ignore_prefix: bool) -> None:  # noqa: FBT001 (Ray's signature)
        if data.get("pid") == "raylet" and any(WORKER_DIED in str(line) for line in data.get("lines", ())):
            logging.getLogger(__name__).debug("ray: %s", " ".join(map(str, data["lines"])))
            return
        original(data, ignore_prefix)

    print_to_stdstream._mixopt_quiet = True  # type: ignore[attr-defined]
    worker.print_to_stdstream = print_to_stdstream
