"""The Ray Tune trial: evaluate one mixture and report the outcome to Tune.

The trial does not touch the run store: the driver records each run (``running`` when Tune starts
the trial, the outcome when it reports; :class:`mixopt.search.runner.TrialCallback`). Only the
driver's machine opens the SQLite file, so a trial on another node of a cluster needs no shared
file system for it (and SQLite's WAL mode does not work across machines). The trial also leaves
its outcome in its run folder (:data:`OUTCOME`), from which the driver records a run whose report
it did not hear (it stopped, or was killed, as the run finished). An evaluator that
raises, or returns NaN, is a failed or diverged run, not a crashed trial: the trial reports it
and Tune's actor is reused.
An evaluator that breaks the contract (returns no metrics, lacks a metric the objective needs)
is *fatal*: the searcher stops the search and the driver reports one clear error.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mixopt.errors import MixoptError
from mixopt.evaluator import EvalRequest, coerce_result, load_evaluator
from mixopt.objective import Objective
from mixopt.reuse import Reuse
from mixopt.store import json_default

PROXY_EVALUATOR = "mixopt.proxy.evaluate:evaluate"
# Marks the error text of a run whose evaluator broke the contract: the driver stops the search.
FATAL_PREFIX = "evaluator contract: "
# The trial's report, kept in its run folder: a run that finished while its driver stopped is
# recorded from it on --resume instead of run again (a dot file: the folder is the evaluator's).
OUTCOME = ".mixopt-outcome.json"
_EVALUATORS: dict[str, Callable] = {}


@dataclass(frozen=True)
class PickledEvaluator:
    """A user's callable, pickled by the driver and unpickled by the trial after it has put the
    driver's folders on ``sys.path``: Ray would unpickle a callable itself on the way in, before
    the trial runs, and a function of a module the driver found through a folder it added to its
    ``sys.path`` (a notebook's) then failed to import in every worker."""

    name: str
    data: bytes

    def load(self) -> Callable:
        from ray import cloudpickle  # (Ray's own copy: how Tune would have pickled it)

        return cloudpickle.loads(self.data)


@dataclass(frozen=True, kw_only=True)
class TrialContext:
    """Everything a trial needs besides its config; shipped once to the workers by Tune."""

    store_path: str
    search_id: str
    home: str
    workroot: str
    domains: tuple[str, ...]
    objective: dict[str, Any]
    objective_key: str
    corpus: str | None
    corpus_hash: str | None
    fidelity: dict[str, Any]
    fidelity_key: str
    evaluator: str | PickledEvaluator = "proxy"
    cpus: int = 1
    sys_path: tuple[str, ...] = field(default_factory=tuple)
    timeout: float | None = None  # seconds; a run still going then is recorded failed, its worker ended
    reuse: Reuse | None = None  # a reused mixture's group: ``weights`` over its units, run over every domain


def resolve_evaluator(spec: str | PickledEvaluator | Callable) -> Callable:
    """The evaluator callable for ``proxy``, a ``module:function`` or a callable (cached per process)."""
    if callable(spec):
        return spec
    if isinstance(spec, PickledEvaluator):
        key = f"{spec.name}#{hash(spec.data)}"
        if key not in _EVALUATORS:
            try:
                _EVALUATORS[key] = spec.load()
            except Exception as exc:  # noqa: BLE001 - a module not installed here, or the object's own error
                import platform

                raise MixoptError(
                    f"the evaluator {spec.name} cannot be loaded on the Ray worker on {platform.node()} "
                    f"({exc}), although the driver could: install its module on every node"
                ) from exc
        return _EVALUATORS[key]
    if spec not in _EVALUATORS:
        try:
            _EVALUATORS[spec] = load_evaluator(PROXY_EVALUATOR if spec == "proxy" else spec)
        except MixoptError as exc:
            # The driver imported it before any trial ran, so it is this worker that cannot.
            import platform

            raise MixoptError(
                f"{exc} (on the Ray worker on {platform.node()}, although the driver could import it: "
                "install it on every node; a module outside installed packages is shipped to the "
                "workers of a cluster given by --address, but not the local modules it imports)"
            ) from exc
    return _EVALUATORS[spec]


def _set_threads(cpus: int, evaluator: str | PickledEvaluator) -> None:
    # One trial per core: BLAS and torch must not spawn a thread per machine core.
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(cpus)
    if evaluator == "proxy" or "torch" in sys.modules:
        import torch

        if torch.get_num_threads() != cpus:
            torch.set_num_threads(cpus)


def evaluate(config: dict[str, Any], ctx: TrialContext) -> dict[str, Any]:
    """Evaluate ``config`` (from a searcher); returns what the trial reports (the driver records it)."""
    os.environ["MIXOPT_HOME"] = ctx.home  # Ray workers do not inherit the driver's later env changes
    for p in ctx.sys_path:
        if p not in sys.path:
            sys.path.insert(0, p)
    _set_threads(ctx.cpus, ctx.evaluator)
    run_id = config["run_id"]
    workdir = Path(ctx.workroot) / run_id
    workdir.mkdir(parents=True, exist_ok=True)
    objective = Objective(metric=ctx.objective["metric"], weights=ctx.objective.get("weights") or {},
                          domains=tuple(ctx.objective.get("domains") or ()))
    fidelity = dict(ctx.fidelity)
    mixture = dict(config["weights"]) if ctx.reuse is None else ctx.reuse.expand_weights(config["weights"])
    request = EvalRequest(mixture=mixture, fidelity=fidelity, seed=int(config["seed"]),
                          run_id=run_id, workdir=str(workdir))
    t0 = time.perf_counter()
    fatal = False
    status, error, metrics, history, value = "failed", None, {}, [], math.nan
    timed_out = False
    try:
        fn = resolve_evaluator(ctx.evaluator)
        if ctx.timeout is None:
            out = fn(request)
        else:
            out, timed_out = _call_with_timeout(fn, request, ctx.timeout)
            if timed_out:  # never reported: the trainable ends this worker, the driver records why
                return {"run_id": run_id, "timed_out": True}
        res = coerce_result(out, cost=time.perf_counter() - t0,
                            needed=set(objective.metric_weights(ctx.domains)))
        if res.status == "ok":
            value = objective.value(res.metrics, ctx.domains)
            missing = [m for m in objective.metric_weights(ctx.domains) if m not in res.metrics]
            if missing:
                # loss/<d> returned where --metric bpb reads bpb/<d>: the option is what to fix
                wanted = {m.split("/", 1)[1] for m in missing}  # the domains the objective reads
                kinds = {k.split("/")[0] for k in res.metrics if "/" in k} - {objective.metric}
                other = sorted(p for p in kinds if all(f"{p}/{d}" in res.metrics for d in wanted))
                raise MixoptError(
                    f"evaluator returned no {', '.join(missing[:5])} (needed by the objective); "
                    f"it returned {', '.join(sorted(res.metrics)[:8])}"
                    + (f" (a new search with --metric {other[0]} reads those)" if other else "")
                )
        try:  # the driver stores it as JSON: an object it cannot encode must fail here, as this run
            history = json.loads(json.dumps(res.history, default=json_default))
        except (TypeError, ValueError) as exc:
            raise MixoptError(f"evaluator returned a history that is not JSON ({exc}); return numbers, "
                              "strings, lists and dicts") from exc
        status, error, metrics = res.status, res.error, res.metrics
        cost = res.cost
    except MixoptError as exc:
        error, fatal, cost = FATAL_PREFIX + str(exc), True, time.perf_counter() - t0
    except (Exception, SystemExit) as exc:  # anything the user's evaluator raises (sys.exit too) is a
        # failed run, not a crash of the worker
        tb = traceback.format_exception(type(exc), exc, exc.__traceback__)
        said = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__  # sys.exit() says nothing
        error, cost = f"{said}\n" + "".join(tb[-6:]), time.perf_counter() - t0
    return {
        "objective": value, "status": status, "run_id": run_id, "cost": cost,
        # wall clock: the driver does not use an outcome given after a stop signal (settle_runs)
        "finished_at": time.time(),
        "error": (error or "").split("\n", 1)[0] or None, "fatal": fatal, "timed_out": timed_out,
        # for the run store (the driver writes it); the searcher reads the fields above
        "record": {"metrics": metrics, "history": history, "error": error},
    }


def _call_with_timeout(fn: Callable, request: EvalRequest, timeout: float) -> tuple[Any, bool]:
    """``fn(request)`` in a thread, waited for ``timeout`` seconds; (its result, whether it timed out).

    A thread cannot be stopped, so after a timeout the trial ends its worker process (see
    :func:`trainable`); what the evaluator raises is raised here.
    """
    import threading

    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["out"] = fn(request)
        except BaseException as exc:  # handed to the trial's thread, which records it
            box["exc"] = exc

    th = threading.Thread(target=target, name=f"evaluate-{request.run_id}", daemon=True)
    th.start()
    th.join(timeout)
    if th.is_alive():
        return None, True
    if "exc" in box:
        raise box["exc"]
    return box.get("out"), False


def keep_outcome(workroot: str | Path, result: dict[str, Any]) -> None:
    """Write the trial's report into its run folder, whole or not at all (see :data:`OUTCOME`)."""
    from mixopt.atomic import write_text

    try:
        write_text(Path(workroot) / result["run_id"] / OUTCOME, json.dumps(result, default=json_default))
    except (OSError, MixoptError, TypeError, ValueError) as exc:  # the report to Tune still carries it
        logging.getLogger(__name__).warning("run %s: could not keep its outcome (%s)", result["run_id"], exc)


def trainable(config: dict[str, Any], ctx: TrialContext) -> None:
    """The Tune function trainable (bound to ``ctx`` with ``tune.with_parameters``)."""
    from ray import tune

    result = evaluate(config, ctx)
    if result["timed_out"]:
        # The evaluator's thread is still running and would hold this worker's CPU through the next
        # trial (actors are reused): end the process. Tune sees a dead trial, the driver records it
        # as timed out (it knows the limit and the time) and the searcher retries the slot.
        logging.getLogger(__name__).warning("run %s timed out; ending its worker", result["run_id"])
        _kill_children(os.getpid())  # a training job the evaluator started goes too
        os._exit(1)
    keep_outcome(ctx.workroot, result)
    tune.report(result)


def _kill_children(pid: int) -> None:
    """SIGKILL every descendant of ``pid``, deepest first, so that none is re-parented and missed.
    Children are read from Linux's ``/proc``, elsewhere (macOS, the BSDs) from one ``ps`` listing."""
    children = _proc_children if Path("/proc/self/task").is_dir() else _ps_children()
    _kill_tree(pid, children)


def _kill_tree(pid: int, children: Callable[[int], set[int]]) -> None:
    import contextlib
    import signal

    for child in children(pid):
        _kill_tree(child, children)
        with contextlib.suppress(OSError):  # it may have ended already
            os.kill(child, signal.SIGKILL)


def _proc_children(pid: int) -> set[int]:
    """The processes whose parent is ``pid``, from ``/proc`` (none when it has gone)."""
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return set()
    children: set[int] = set()
    for task in tasks:
        try:
            children.update(int(c) for c in (task / "children").read_text().split())
        except (OSError, ValueError):
            continue
    return children


def _ps_children() -> Callable[[int], set[int]]:
    """Parent → children as POSIX ``ps`` lists them now, without the ``ps`` process itself (it has
    ended when read, and its pid may be reused); nothing when ``ps`` cannot run."""
    import subprocess

    table: dict[int, set[int]] = {}
    try:
        ps = subprocess.Popen(["ps", "-A", "-o", "pid=,ppid="], stdout=subprocess.PIPE, text=True)
    except OSError:
        return lambda pid: set()
    try:
        out, _ = ps.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        ps.kill()
        ps.communicate()
        return lambda pid: set()
    for line in out.splitlines():
        fields = line.split()
        if len(fields) == 2 and fields[0].isdigit() and fields[1].isdigit() and int(fields[0]) != ps.pid:
            table.setdefault(int(fields[1]), set()).add(int(fields[0]))
    return lambda pid: table.get(pid, set())
