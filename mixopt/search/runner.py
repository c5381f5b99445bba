"""Running planned slots as Ray Tune trials, and reading their state back from the run store.

The run store, not Tune's experiment folder, is the record of what ran: :func:`slot_states`
rebuilds every slot (done, failed for good, or still to run with its next attempt number) from
the store, which is how ``--resume`` continues a search whose driver was killed (kill -9
included) without losing or re-running a finished run.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray import tune
from ray.tune import Callback
from ray.tune.search import ConcurrencyLimiter

from mixopt.errors import MixoptError, StoreLockedError
from mixopt.search.searcher import MixtureSearcher, Slot
from mixopt.search.trial import FATAL_PREFIX, OUTCOME, TrialContext, trainable
from mixopt.store import RunRecord, RunStore

logger = logging.getLogger(__name__)

# The error text of runs that were still running when their driver stopped; such an attempt is
# not counted against --retries (the run itself did nothing wrong).
INTERRUPTED = "interrupted: the search's driver stopped before this run finished"
# Those still running when a stop signal came: a run whose evaluator ends after the signal may have
# lost its training job to the shutdown (Ray kills workers' child processes) and returned what that
# job left behind, so its outcome is not used, however late it comes (the attempt runs again).
CUT_SHORT = INTERRUPTED + " (stopped by a signal; an outcome it gave after the signal is not used)"
# A contract error seen before a --resume: the user may have fixed the evaluator, so its slot runs
# again, and (like an interruption) it does not count against --retries.
REQUEUED = "requeued by --resume after: "
TIMED_OUT = "timed out after "  # the error of a run stopped by --trial-timeout


def interrupted_attempt(run: RunRecord) -> bool:
    """An attempt its driver's stop cut short (:data:`INTERRUPTED`): no outcome, and its slot ran
    again; neither a failure nor a retry."""
    return (run.error or "").startswith(INTERRUPTED)


@dataclass(frozen=True, kw_only=True)
class ProgressEvent:
    """Sent to the ``progress`` callback after every finished trial (and once at the start)."""

    phase: str  # "swarm" or "validate"
    done: int  # slots finished for good (ok, or failed with no retries left)
    total: int
    failed: int  # of ``done``, the ones that failed
    best: float | None  # lowest objective so far in this phase (reused runs included)
    last: str | None = None  # run id of the trial that just finished
    last_status: str | None = None


Progress = Callable[[ProgressEvent], None]


def slot_key(search_id: str, run_id: str) -> str:
    """The slot of a run id ``<search>-<key>-a<attempt>``."""
    return run_id[len(search_id) + 1 : run_id.rindex("-a")]


def slot_states(store: RunStore, search_id: str, slots: Sequence[Slot], *, retries: int) -> None:
    """Set each slot's state, attempt and run id from the store's runs of ``search_id`` (in place)."""
    by_key: dict[str, list[RunRecord]] = {}
    for r in store.runs(search_id=search_id):
        by_key.setdefault(slot_key(search_id, r.run_id), []).append(r)
    for s in slots:
        runs = sorted(by_key.get(s.key, []), key=lambda r: r.attempt)
        ok = [r for r in runs if r.status == "ok"]
        if ok:
            s.state, s.attempt, s.run_id, s.error = "done", ok[-1].attempt, ok[-1].run_id, None
            continue
        if not runs:
            s.state, s.attempt = "pending", 1
            continue
        counted = [r for r in runs if r.status in ("failed", "diverged")
                   and not (r.error or "").startswith((INTERRUPTED, REQUEUED))]
        last = runs[-1]
        s.error = last.error
        s.run_id = last.run_id
        s.reseeds = sum(r.status == "diverged" for r in runs)
        s.failures = len(counted)
        if any((r.error or "").startswith(FATAL_PREFIX) for r in runs) or len(counted) > retries:
            s.state, s.attempt = "failed", last.attempt
        else:
            s.state, s.attempt = "pending", last.attempt + 1


def settle_runs(store: RunStore, search_id: str, workroot: str | Path,
                stopped_at: float | None = None) -> list[str]:
    """Close the runs of a search whose driver did not hear their end; returns the ids cut short.

    A run whose trial kept its outcome (:data:`~mixopt.search.trial.OUTCOME`) finished while the
    driver stopped (a killed driver, a report Tune did not pass on): it is recorded from there, so
    a resume does not run it again. The others are marked :data:`INTERRUPTED` and run again.
    ``stopped_at``: when a stop signal came (:func:`stop_signal_time`, or :func:`recorded_stop` on a
    resume); an outcome given after it is not used, and the runs not recorded are marked
    :data:`CUT_SHORT`, which a later settle leaves alone (they run again as new attempts).
    """
    import json

    runs = store.runs(search_id=search_id)
    open_runs = [r.run_id for r in runs if r.status == "running"
                 or (r.status == "failed" and interrupted_attempt(r)
                     and not (r.error or "").startswith(CUT_SHORT))]
    # A slot with an ok run, or another attempt going, takes no late outcome of an earlier attempt: a
    # driver killed with -9 and resumed at once had rerun a slot whose orphaned trial then wrote its
    # outcome, and both attempts were recorded ok (one mixture fitted twice by later searches).
    taken = {slot_key(search_id, r.run_id) for r in runs if r.status == "ok"}
    going = {}
    for r in runs:
        if r.status == "running":
            going.setdefault(slot_key(search_id, r.run_id), set()).add(r.run_id)
    recovered = []
    for run_id in open_runs:
        slot = slot_key(search_id, run_id)
        if slot in taken or going.get(slot, set()) - {run_id}:
            continue
        try:
            result = json.loads((Path(workroot) / run_id / OUTCOME).read_text(encoding="utf-8"))
        except (OSError, ValueError):  # still running elsewhere, or killed before it ended
            continue
        if after_stop(result, stopped_at):
            continue
        record = result.get("record") or {}
        status = result.get("status") or "failed"
        store.finish(run_id, status=status, metrics=record.get("metrics") or {},
                     objective=result.get("objective"), history=record.get("history") or [],
                     cost=result.get("cost"), error=record.get("error"))
        recovered.append(run_id)
        if status == "ok":
            taken.add(slot)
    if recovered:
        logger.info("%d runs finished as the driver stopped; recorded from their folders", len(recovered))
    return store.interrupt(search_id, INTERRUPTED if stopped_at is None else CUT_SHORT)


# When a stop signal (Ctrl-C; SIGTERM, which the driver turns into one; SIGUSR1, Tune's own) came
# during the trials of this process's last run_trials; None when none came.
_STOP_SIGNAL: dict[str, float | None] = {"at": None}
# The same time, kept in the search's run folder by the handler: a driver killed after the signal,
# before it closed its runs, leaves it for the --resume (and the next run_trials removes it).
STOPPED = ".mixopt-stopped"


STOPPING = ("stopping: Ray is ending the runs in flight, which run again on resume (finished runs are "
            "kept); a second Ctrl-C or SIGTERM stops at once")


def stop_signal_time() -> float | None:
    """When a stop signal came while trials ran (``time.time()``), or None."""
    return _STOP_SIGNAL["at"]


def recorded_stop(workroot: str | Path) -> float | None:
    """The stop signal's time that a search's last driver kept in its run folder, or None."""
    try:
        return float((Path(workroot) / STOPPED).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def after_stop(result: Mapping[str, Any], stopped_at: float | None) -> bool:
    """Whether a trial's outcome came after the stop signal (one that says no time counts as after).
    The trial's clock is the worker's: on a cluster the nodes' clocks must agree to within the
    seconds Ray's shutdown takes."""
    return stopped_at is not None and not result.get("finished_at", math.inf) <= stopped_at


def _noting_stop(tune_handler: Callable[[int, Any], Any], stop_file: Path) -> Callable[[int, Any], None]:
    """Tune's stop handler, which first notes when the stop came (in memory and in ``stop_file``)."""
    from mixopt.atomic import write_text

    def handler(signum: int, frame: Any) -> None:
        if _STOP_SIGNAL["at"] is None:
            _STOP_SIGNAL["at"] = time.time()
            with contextlib.suppress(OSError, MixoptError):  # the time in memory still serves this driver
                write_text(stop_file, repr(_STOP_SIGNAL["at"]))
            # Ray takes seconds (13 s in a QA pass) to end the runs in flight: say so now, not then
            with contextlib.suppress(OSError, ValueError):
                print(STOPPING, file=sys.stderr, flush=True)
        tune_handler(signum, frame)  # Tune stops gracefully; it gives SIGINT back, so a second stops at once

    return handler


def fatal_error(store: RunStore, search_id: str) -> str | None:
    """The first contract error of a search's evaluator, if any (the search cannot go on), with the
    run that met it (a QA pass: where only some runs lacked a metric, which ones was unsaid)."""
    for r in store.runs(search_id=search_id, status="failed"):
        if (r.error or "").startswith(FATAL_PREFIX):
            return f"run {r.run_id}: {r.error[len(FATAL_PREFIX):]}"
    return None


class TrialCallback(Callback):
    """Tune callback in the driver: records every run in the store and reports progress.

    ``running`` when Tune starts a trial, the outcome when it reports, ``failed`` when it dies (or
    timed out, when it died after ``ctx.timeout``). The trials never open the store themselves.
    """

    def __init__(self, store: RunStore, phase: str, slots: Sequence[Slot], retries: int,
                 progress: Progress | None, best: float | None, ctx: TrialContext | None = None) -> None:
        self.store, self.phase, self.retries, self.progress = store, phase, retries, progress
        self.ctx = ctx
        self.total = len(slots)
        self.done = sum(s.state in ("done", "failed") for s in slots)
        self.failed = sum(s.state == "failed" for s in slots)
        self.best = best
        self.started: dict[str, float] = {}
        self.reported: set[str] = set()
        self.locked = False  # the last write failed on another program's lock

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its callbacks with the experiment; a progress display (locks, a console) stays here.
        state = dict(self.__dict__)
        state["progress"] = None
        return state

    def emit(self, last: str | None = None, status: str | None = None) -> None:
        if self.progress is not None:
            self.progress(ProgressEvent(phase=self.phase, done=self.done, total=self.total,
                                        failed=self.failed, best=self.best, last=last, last_status=status))

    def _begin(self, trial: Any) -> str | None:
        cfg, ctx = trial.config, self.ctx
        run_id = cfg.get("run_id")
        if not run_id or ctx is None:
            return None
        self.started[run_id] = time.monotonic()
        self.store.begin(RunRecord(
            run_id=run_id, search_id=ctx.search_id, role=cfg.get("role", "swarm"), label=cfg.get("label"),
            corpus=ctx.corpus, corpus_hash=ctx.corpus_hash, fidelity=dict(ctx.fidelity),
            fidelity_key=ctx.fidelity_key, objective_key=ctx.objective_key, seed=int(cfg["seed"]),
            weights=dict(cfg["weights"]), attempt=int(cfg.get("attempt", 1)),
        ))
        return run_id

    def _record(self, what: str, write: Callable[[], Any]) -> Any:
        # Tune stops the whole experiment when a callback raises: a run the store cannot take is
        # logged and recorded as failed instead.
        try:
            done = write()
            self.locked = False
            return done
        except Exception as exc:
            logger.error("could not record %s in the run store: %s", what, exc)
            self.locked = isinstance(exc, StoreLockedError)
            return None

    def on_trial_start(self, iteration, trials, trial, **info) -> None:  # noqa: ANN001
        self._record(f"the start of {trial.config.get('run_id')}", lambda: self._begin(trial))

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:  # noqa: ANN001
        run_id = result.get("run_id")
        record = result.pop("record", None)  # in the store; Tune would keep it in its own state too
        status = result.get("status")
        value = result.get("objective")
        if run_id and after_stop(result, stop_signal_time()):
            self._cut_short(run_id)  # perhaps on what a killed training job left: run it again
            return
        if run_id and record is not None and self.ctx is not None:
            def write() -> bool:
                return self.store.finish(
                    run_id, status=status or "failed", metrics=record.get("metrics") or {}, objective=value,
                    history=record.get("history") or [], cost=result.get("cost"), error=record.get("error"),
                    only_if_running=True,
                )

            if self._record(f"the outcome of {run_id}", write):
                self.reported.add(run_id)
            elif not self.locked:  # a store another program keeps locked would take no failure either
                self._record(f"the failure of {run_id}", lambda: self.store.finish(
                    run_id, status="failed", only_if_running=True, error="the run store could not take "
                    "this run's result (see the driver's log)"))
        if status == "ok" and value is not None and math.isfinite(value):
            self.done += 1
            self.best = value if self.best is None else min(self.best, value)
        elif result.get("fatal") or self._out_of_retries(trial):
            self.done += 1
            self.failed += 1
        self.emit(result.get("run_id"), status)

    def _cut_short(self, run_id: str) -> None:
        """Record a run that ended in the shutdown after a stop signal as :data:`CUT_SHORT`."""
        self._record(f"the interruption of {run_id}", lambda: self.store.finish(
            run_id, status="failed", only_if_running=True, error=CUT_SHORT))

    def setup(self, **info) -> None:  # noqa: ANN003
        """Tune has installed its stop handlers for this fit (SIGINT, SIGUSR1): note when one is used."""
        usr1 = getattr(signal, "SIGUSR1", None)
        if self.ctx is None or usr1 is None or threading.current_thread() is not threading.main_thread():
            return
        tune_handler = signal.getsignal(usr1)
        if getattr(tune_handler, "__name__", "") != "signal_interrupt_tune_run":
            return  # not Tune's (a Tune that changed): its stop stays as it was
        handler = _noting_stop(tune_handler, Path(self.ctx.workroot) / STOPPED)  # type: ignore[arg-type]
        signal.signal(usr1, handler)
        if signal.getsignal(signal.SIGINT) is tune_handler:  # unless TUNE_DISABLE_SIGINT_HANDLER
            signal.signal(signal.SIGINT, handler)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:  # noqa: ANN001
        run_id = trial.config.get("run_id")
        if not run_id or run_id in self.reported:
            return  # it died after reporting (a lost node): its outcome is recorded and counted
        if stop_signal_time() is not None:  # Ray's shutdown ended it: no failure of its own
            self._cut_short(run_id)
            self.emit(run_id, "failed")
            return
        if run_id not in self.started:  # failed before it started (an actor that never came up)
            self._record(f"the start of {run_id}", lambda: self._begin(trial))
        timeout = self.ctx.timeout if self.ctx is not None else None
        ran = time.monotonic() - self.started.get(run_id, time.monotonic())
        cost = None
        if timeout is not None and ran >= timeout:
            error = f"{TIMED_OUT}{timeout:g} s (--trial-timeout); the run was stopped"
            cost = ran  # what the run took before it was stopped
        else:
            error = f"the trial died: {_error_summary(trial.error_file)}"
        self._record(f"the failure of {run_id}", lambda: self.store.finish(
            run_id, status="failed", only_if_running=True, error=error, cost=cost))
        if self._out_of_retries(trial):
            self.done += 1
            self.failed += 1
        self.emit(run_id, "failed")

    def _out_of_retries(self, trial: Any) -> bool:
        # The failures the slot had before this trial, plus this one (as the searcher counts them).
        return int(trial.config.get("failures", 0)) + 1 > self.retries


def _error_summary(path: str | None) -> str:
    """The telling line of a dead trial's Ray error file (the exception, an exit code), and its path.

    The file sits in Ray's session folder, which goes when Ray stops: the store keeps the line.
    """
    if not path:
        return "no error file"
    try:
        lines = [ln.strip() for ln in Path(path).read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return f"see {path}"
    # Ray's memory monitor, not a CUDA or torch out-of-memory error (the evaluator reports those)
    oom = next((ln for ln in lines if "ray.exceptions.OutOfMemoryError" in ln or "NODE_OUT_OF_MEMORY" in ln
                or "low on memory" in ln), None)
    if oom is not None:  # a QA pass: runs list showed "Refer to the documentat…", Ray's last line
        used = next((m.group(0) for ln in lines if (m := re.search(r"\d[\d.]*GB / [\d.]+GB", ln))), None)
        at = f" (node at {used})" if used else ""
        return (f"out of memory: Ray's memory monitor killed the trial{at}; run fewer trials at once "
                f"(--concurrency) or give each more memory (Ray's error file: {path})")
    telling = [ln for ln in lines if "exit code" in ln or "exited" in ln or "exits" in ln or "Error:" in ln]
    line = (telling or lines or ["(empty)"])[-1]
    line = line.split(" Some common causes")[0]  # Ray's list of guesses (OOM, ray stop, SIGSEGV) goes on
    if len(line) > 300:
        line = line[:300].rsplit(". ", 1)[0] + "."
    return f"{line} (Ray's error file: {path})"


def _trial_dirname(trial: Any) -> str:
    return str(trial.config.get("run_id") or trial.trial_id)


def run_trials(
    searcher: MixtureSearcher,
    ctx: TrialContext,
    *,
    phase: str,
    storage: Path,
    concurrency: int,
    cpus_per_trial: int,
    gpus_per_trial: float = 0.0,
    progress: Progress | None = None,
    best: float | None = None,
) -> None:
    """Run the searcher's pending slots as Tune trials until the searcher is finished or Tune stops.

    The caller reads the outcome from the store (:func:`slot_states`, :func:`check_fatal`): a
    Ctrl-C makes Tune stop early and return.
    """
    slots = list(searcher.slots.values())
    searcher.timeout = ctx.timeout
    _STOP_SIGNAL["at"] = None  # a stop of an earlier phase, or of the driver a resume continues, is past
    with contextlib.suppress(OSError):
        (Path(ctx.workroot) / STOPPED).unlink()
    cb = TrialCallback(RunStore(ctx.store_path), phase, slots, searcher.retries, progress, best, ctx)
    cb.emit()
    if not searcher.pending():
        return
    # Per-trial loggers (CSV/JSON/TensorBoard) duplicate the run store and cost time per trial.
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # Without those loggers Tune's result grid warns that it finds no metrics files; the store has them.
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    # On Ctrl-C Tune suggests Tuner.restore; mixopt resumes from the store (--resume NAME) instead.
    # Its "Trials did not complete" error after failed trials too: mixopt reports each run itself.
    logging.getLogger("ray.tune.tune").setLevel(logging.CRITICAL)
    # A trial that dies or times out is recorded (its error in the store) and reported by mixopt in
    # one line; Tune's own report of it is a traceback of a hundred lines per trial.
    logging.getLogger("ray.tune.execution.tune_controller").setLevel(logging.CRITICAL)
    alg = ConcurrencyLimiter(searcher, max_concurrent=max(1, concurrency), batch=searcher.syncs_batches)
    resources = {"cpu": cpus_per_trial, **({"gpu": gpus_per_trial} if gpus_per_trial else {})}
    fn = tune.with_resources(tune.with_parameters(trainable, ctx=ctx), resources)
    name = f"{phase}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    tuner = tune.Tuner(
        fn,
        tune_config=tune.TuneConfig(search_alg=alg, num_samples=-1, reuse_actors=True,
                                    trial_dirname_creator=_trial_dirname),
        run_config=tune.RunConfig(
            name=name, storage_path=str(storage), verbose=0, callbacks=[cb],
            failure_config=tune.FailureConfig(max_failures=0),
        ),
    )
    logger.info("running %d %s trials (%d at a time) in %s", len(searcher.pending()), phase, concurrency,
                storage / name)
    # Tune installs its own stop handlers (SIGINT, SIGUSR1; the callback wraps them to note when the
    # stop came) and leaves them after fit() returns: a Ctrl-C during the fit or the validation that
    # follow would only set Tune's flag, and the search would go on.
    main = threading.current_thread() is threading.main_thread()
    stops = [sig for sig in (signal.SIGINT, getattr(signal, "SIGUSR1", None)) if sig is not None]
    handlers = {sig: signal.getsignal(sig) for sig in stops} if main else {}
    try:
        tuner.fit()
    finally:
        for sig, handler in handlers.items():
            if handler is not None:  # None: a handler not set from Python, which cannot be put back
                signal.signal(sig, handler)


def check_fatal(store: RunStore, search_id: str, resume: str) -> None:
    """Raise the fatal error a trial recorded, with how to resume (``resume``: ``Prepared.resume``)."""
    err = fatal_error(store, search_id)
    if err is not None:
        hint = f"Fix the evaluator and run {resume}: its finished runs are kept"
        raise MixoptError(f"{err.rstrip('.')}. {hint}")
