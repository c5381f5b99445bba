"""The search driver: from a config to a validated mixture JSON.

``run_search`` checks the input, plans the swarm (reusing runs of earlier searches), runs it as
Ray Tune trials, fits the method on every finished run, proposes, validates the proposal against
the baselines, and writes the mixture JSON atomically. ``resume_search`` continues a search whose
driver stopped (Ctrl-C, kill -9): the plan and every finished run come from the run store, so no
finished run is lost or run again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import os
import re
import shutil
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mixopt import __version__
from mixopt.atomic import write_json
from mixopt.baselines import BASELINES, baseline_temperature, baselines_for, moved_note
from mixopt.errors import (
    MixoptError,
    MixoptWarning,
    RunsFailedError,
    StoreLockedError,
    warn,
    warnings_as_notes,
    warnings_if_ok,
)
from mixopt.fitters.cv import distinct_mixtures
from mixopt.fitters.protocol import predict_objective
from mixopt.fitters.varied import flat, unvaried, varying
from mixopt.objective import per_domain_split
from mixopt.proposers.proposal import best_run_note, proposal_notes, widen
from mixopt.proposers.topk import FLAT_WARNING
from mixopt.reuse import Reuse
from mixopt.search.config import SearchConfig
from mixopt.search.lock import DRIVING, driver_alive, driver_lock, planning_lock
from mixopt.search.prepare import (
    Prepared,
    capped_away_note,
    mark_search_dir,
    own_search_dir,
    prepare,
    reads_of,
)
from mixopt.search.ray_env import (
    RayInfo,
    ensure_ray,
    env_address,
    reachable_address,
    user_modules,
    watch_cluster,
)
from mixopt.search.result import SearchResult, build_mixture, candidate_rows, shown_rung
from mixopt.search.runner import (
    INTERRUPTED,
    REQUEUED,
    TIMED_OUT,
    Progress,
    check_fatal,
    interrupted_attempt,
    recorded_stop,
    run_trials,
    settle_runs,
    slot_key,
    slot_states,
    stop_signal_time,
)
from mixopt.search.searcher import Slot, SwarmSearcher
from mixopt.search.trial import FATAL_PREFIX
from mixopt.search.validate import (
    BEST_RUN,
    PROPOSAL,
    Candidate,
    borrowable,
    choose_export,
    compare,
    dedupe,
    measure,
    measures,
    selection_seeds,
    validation_slots,
    with_seed_noise,
)
from mixopt.store import RunStore, default_path, refuse_store_as_output, store_of_search
from mixopt.swarm import prior_name

logger = logging.getLogger(__name__)

__all__ = ["SearchResult", "StageEvent", "resume_search", "run_search"]


@dataclass(frozen=True, kw_only=True)
class StageEvent:
    """Sent to the ``progress`` callback when a stage starts (trial progress is a ProgressEvent)."""

    stage: str  # plan | ray | swarm | fit | validate | export
    message: str
    search_id: str
    lines: tuple[str, ...] = ()


def run_search(
    config: SearchConfig, *, evaluator: Callable | None = None, progress: Progress | None = None
) -> SearchResult:
    """Run a new search to the end and return its result (the mixture JSON is written).

    Args:
        config: the search; ``config.name`` must not name an existing search.
        evaluator: a callable to use instead of ``config.evaluator`` (library use).
        progress: called with :class:`StageEvent` and :class:`~mixopt.search.runner.ProgressEvent`.

    Raises:
        MixoptError: bad input (found before any trial runs), or an evaluator that breaks its contract.
        KeyboardInterrupt: the search was stopped; ``resume_search(name)`` continues it.
    """
    config.check_new()
    new_store = not Path(config.store or default_path()).exists()
    address = config.address or env_address()
    # The options first (a typo is said as such, not as a cluster that is down), then the cluster:
    # one line, before the plan and its warnings, which wait for both.
    with warnings_if_ok():
        prep = prepare(config, evaluator)
        if address and address != "local" and not address.startswith("ray://") and not _ray_is_up():
            try:
                reachable_address(address)  # up to its timeout: a Ctrl-C here leaves nothing either
            except BaseException:
                _unclaim(prep, new_store=new_store)
                raise
    planning = contextlib.ExitStack()  # until this search is recorded: see planning_lock
    driving = contextlib.ExitStack()  # the search folder's lock, from its claim to the search's end
    option = "name" if callable(prep.evaluator) else "--name"
    try:
        planning.enter_context(planning_lock(prep.store.path))
        if prep.store.get_search(prep.search_id) is not None:
            if driver_alive(prep.search_dir):  # its resume would be refused too (a QA pass)
                raise MixoptError(f"a search named {prep.search_id!r} is running now; pick another "
                                  f"{option}, or wait for it to end")
            raise MixoptError(
                f"a search named {prep.search_id!r} exists; continue it with {prep.resume} or pick "
                f"another {option}"
            )
        if n := prep.store.unrecorded_search_ids().get(prep.search_id):
            # imported (or a benchmark's) runs named so would be read as this search's own
            raise MixoptError(f"{n} run(s) in {prep.store.path} carry the name {prep.search_id!r} (imported, "
                              f"or a benchmark's), and a search's runs are its own; pick another {option}")
        plan = _plan(prep)
        # Last, so that a search refused above makes no folder; under the folder's lock, so that a
        # search of the same name from another store cannot claim it between the check and the mark.
        driving.enter_context(driver_lock(prep.search_dir, prep.search_id, new_option=option))
        own_search_dir(prep.search_dir, prep.store, prep.search_id, option=option)
    except BaseException as exc:
        driving.close()
        planning.close()
        if isinstance(exc, MixoptError):
            _unclaim(prep, new_store=new_store)
        raise
    with planning, driving:
        # Recorded before Ray starts (seconds), so a second search of the same name is refused at once.
        # The folder it started in: a resume elsewhere cannot import a module that lives there.
        # A callable given in place of --evaluator is named, for the record and for its resume.
        given = {"evaluator_callable": prep.evaluator_name} if callable(prep.evaluator) else {}
        prep.store.create_search(prep.search_id, {**prep.config.as_dict(), "name": prep.search_id,
                                                  "started_in": str(Path.cwd()), **given}, plan)
        ray = _LazyRay(config, progress, prep, fresh=True)
        try:
            # A search with nothing to run starts no Ray: its SIGTERM is still a stop. Installed before
            # the plan is said (a SIGTERM on seeing it had found Python's default, and killed the driver)
            # and inside this try (a stop from here on leaves the search interrupted, not running).
            _stop_on_sigterm()
            planning.close()  # recorded, its driver locked: a search planned from now on sees it
            _emit(progress, StageEvent(stage="plan", search_id=prep.search_id,
                                       message=_plan_line(prep, plan)))
            if plan["swarm"]:  # runs to go: Ray now (a cluster that cannot run them: see _LazyRay)
                ray()
            # Inside this try: a stop in the bytecodes before _drive's own handler had left the search
            # `running` after its exit 130 (a test failed so about once in seven suites). _drive marks
            # its own stops and failures; marking them again here writes the same.
            return _drive(prep, plan, ray, progress, resumed=False)
        except KeyboardInterrupt:
            _bookkeep(prep.store, lambda: prep.store.update_search(prep.search_id, state="interrupted"))
            raise
        except (RayRefused, StoreLockedError):  # deleted by _LazyRay; a store that takes nothing now
            raise
        except BaseException as exc:
            failed = failure(exc)
            _bookkeep(prep.store, lambda: prep.store.update_search(prep.search_id, state="failed",
                                                                   result=failed))
            raise


def _unclaim(prep: Prepared, *, new_store: bool) -> None:
    """What a refused new search leaves: no empty store it made, nor the folder that claimed its
    default name."""
    if new_store:
        prep.store.remove_if_empty()
    if prep.config.name is None:
        with contextlib.suppress(OSError):
            prep.search_dir.rmdir()


def _bookkeep(store: RunStore, write: Callable[[], Any]) -> None:
    """An error path's writes to the store, given up after a few seconds of another program's lock:
    the error under way is what the user must see, and a search left ``running`` without its driver
    shows as stopped and resumes (the review: they had waited ten minutes each, and their own
    StoreLockedError had replaced the error)."""
    with contextlib.suppress(StoreLockedError), store.impatient():
        write()


def failure(exc: BaseException) -> dict[str, str]:
    """What a failed search keeps as its result: the error in one line, for its report."""
    text = str(exc) if isinstance(exc, MixoptError) else f"{type(exc).__name__}: {exc}"
    return {"error": " ".join(text.split())[:2000] or type(exc).__name__}


def _what_changed(plan: Mapping[str, Any], prep: Prepared) -> str:
    """Why a resume's runs would not be the search's: its corpus, evaluator or fidelity, in words."""
    if plan.get("corpus_hash") != prep.corpus_hash:
        return (f"it ran on corpus hash {plan.get('corpus_hash')}, and the corpus now has "
                f"{prep.corpus_hash}; rebuild the same corpus, or start a new search")
    try:
        was, now = json.loads(plan.get("fidelity_key") or "{}"), json.loads(prep.fidelity_key)
    except ValueError:
        was, now = {}, {}
    if was.get("evaluator") != now.get("evaluator"):
        return (f"it ran with evaluator {was.get('evaluator')}, and now it is {now.get('evaluator')}; "
                "resume it with that evaluator, or start a new search")
    changed = sorted(k for k in set(was) | set(now) if was.get(k) != now.get(k))
    return (f"its runs' fidelity differs in {', '.join(changed) or 'its key'} (it ran at "
            f"{plan.get('fidelity_key')}, now {prep.fidelity_key}; a rung's recipe changed?); start a new "
            "search")


# A search whose law fits one law per metric says so before fitting past this many: 300 laws of
# 300 domains took about an hour, with nothing on the screen after "fitting" (a QA pass).
PER_METRIC_SAY = 50


def _ray_is_up() -> bool:
    """Whether this process is connected to Ray already (library use: it stays on that Ray)."""
    import ray

    return ray.is_initialized()


_HOST_IGNORES_SIGTERM: bool | None = None  # whether the process ignored SIGTERM before mixopt's handler


def _stop_on_sigterm() -> None:
    """SIGTERM (Kubernetes, Slurm, ``timeout``) stops a search as Ctrl-C does: resumable, said so;
    SIGHUP (an ssh session dropped) too, unless ignored (nohup).

    ``ray.init`` sets SIGTERM to exit at once, which left the search marked failed and printed a
    native stack dump. Installed after it; outside a search the handler does what the one before
    it did (Ray's, or the CLI's).
    """
    if threading.current_thread() is not threading.main_thread():
        return
    global _HOST_IGNORES_SIGTERM
    previous = signal.getsignal(signal.SIGTERM)
    if _HOST_IGNORES_SIGTERM is None:  # the first call, before any ray.init of ours replaced it
        _HOST_IGNORES_SIGTERM = previous == signal.SIG_IGN
    for signum in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):  # Windows has no SIGHUP
        if signum is None:
            continue
        before = signal.getsignal(signum)
        # SIGHUP under nohup stays ignored (named as "not SIGTERM": Windows has no signal.SIGHUP)
        if getattr(before, "_mixopt", False) or (signum != signal.SIGTERM and before == signal.SIG_IGN):
            continue
        handler = functools.partial(_stop_signal, previous=before)
        handler._mixopt = True  # type: ignore[attr-defined]
        signal.signal(signum, handler)


def _stop_signal(signum: int, frame: Any, *, previous: Any) -> None:
    """The search's handler of SIGTERM and SIGHUP; ``previous`` is the handler it replaced (Ray's,
    the CLI's, Python's), called outside a search. SIGHUP is never installed over SIG_IGN (nohup);
    a SIGTERM the host ignored stays ignored here, since Ray's handler replaced that SIG_IGN."""
    if signum == signal.SIGTERM and (_HOST_IGNORES_SIGTERM or previous == signal.SIG_IGN):
        return  # a host process (library use) that ignores it still does, during a search and after
    if DRIVING:
        if callable(signal.getsignal(signal.SIGINT)):  # Tune's stop while trials run, else Python's
            os.kill(os.getpid(), signal.SIGINT)
        else:  # SIGINT ignored (a `cmd &` from a script, nohup): the signal had done nothing, and
            raise KeyboardInterrupt  # a QA pass's SIGTERM went unheard through a 5-minute fit
    elif callable(previous):
        previous(signum, frame)
    else:
        sys.exit(128 + signum)


def resume_search(
    name: str, *, store: str | None = None, evaluator: Callable | None = None,
    progress: Progress | None = None, address: str | None = None, concurrency: int | None = None,
    out: str | None = None, trial_timeout: float | None = None, retries: int | None = None,
    cpus_per_trial: int | None = None, gpus_per_trial: float | None = None,
) -> SearchResult:
    """Continue the search ``name`` where it stopped; a finished search returns its stored result.

    Runs that failed after all their retries run again (with ``retries``, default the search's
    own); diverged runs do not. ``address``, ``concurrency`` and the resources per trial may
    change (a cluster of other nodes); what the runs measure may not.
    """
    if not name.strip():
        raise MixoptError("--resume needs a search's name (`mixopt runs searches` lists them)")
    st = store_of_search(name, store)  # a store that does not exist holds no search: none is made
    rec = st.require_search(name)
    if rec.state == "done" and rec.result:
        overrides = {k: v for k, v in (("retries", retries), ("trial_timeout", trial_timeout),
                                       ("cpus_per_trial", cpus_per_trial), ("gpus_per_trial", gpus_per_trial),
                                       ("concurrency", concurrency), ("address", address)) if v is not None}
        if overrides:  # checked as for a search still going: `--retries -1` had been only "unused"
            try:
                stored = SearchConfig.from_dict(rec.config)
            except MixoptError:  # one of an older mixopt that today's checks refuse: it is done
                stored = None
            if stored is not None:
                stored.replace(**overrides)
        result = SearchResult.from_dict(rec.result)
        said = f"search {name} finished earlier: nothing to run; its result as stored"
        _emit(progress, StageEvent(stage="export", search_id=name, message=said))
        given = ["--" + k.replace("_", "-") for k in overrides]
        if given:  # they apply to the runs of a search still going
            warn(
                f"search {name!r} is finished, so {' and '.join(given)} "
                f"{'change' if len(given) > 1 else 'changes'} nothing (its failed runs stay "
                "failed); a new search with the same settings reuses its finished runs and samples new "
                "ones", MixoptWarning)
        from mixopt.atomic import check_writable
        from mixopt.mixture import Mixture

        gone = result.out and not Path(result.out).exists() and Path(result.mixture_path).is_file()
        if out is None and gone:  # the file the search wrote is gone (moved, deleted): written again
            try:
                Mixture.load(result.mixture_path).save(check_writable(result.out))
            except (MixoptError, OSError) as exc:  # not asked for: said, not an error
                warn(f"{result.out}, which search {name!r} wrote, is gone and cannot be written "
                     f"again ({exc}); its mixture is {result.mixture_path}", MixoptWarning)
                result.out = None
        if out is not None:  # a finished search resumed with --out: write its mixture there too
            # the shares it began with are in its record, but the file is the user's: not replaced
            refuse_store_as_output(out, st.path)
            target = check_writable(out, inputs=reads_of((rec.plan or {}).get("reuse_mixture")),
                                    reader=f"search {name!r} started from")
            Mixture.load(result.mixture_path).save(target)
            result.out = str(target)
        return result
    if rec.config.get("evaluator_callable") and evaluator is None:
        raise MixoptError(
            f"search {name!r} ran with the Python function {rec.config['evaluator_callable']} as its "
            f"evaluator (library use): resume it from Python, resume_search({name!r}, evaluator=<the "
            "function>)"
        )
    cfg = SearchConfig.from_dict(rec.config)
    changes: dict[str, Any] = {"store": str(st.path)}
    if address is not None:
        changes["address"] = address
    elif cfg.address and (env := env_address()) and env != cfg.address:
        warn(f"RAY_ADDRESS={env} is not used: search {name!r} goes on at "
             f"{cfg.address}, where it ran; give --address to move it", MixoptWarning)
    if concurrency is not None:
        changes["concurrency"] = concurrency
    if out is not None:
        changes["out"] = out
    if trial_timeout is not None:  # one too short for every run must not doom the search
        changes["trial_timeout"] = trial_timeout
    if retries is not None:
        changes["retries"] = retries
    if cpus_per_trial is not None:
        changes["cpus_per_trial"] = cpus_per_trial
    if gpus_per_trial is not None:
        changes["gpus_per_trial"] = gpus_per_trial
    cfg = cfg.replace(**changes)
    kept = (rec.plan or {}).get("reuse_mixture")  # the shares it began with, whatever became of the file
    try:
        prep = prepare(cfg, evaluator, search_id=name, callable_as=rec.config.get("evaluator_callable"),
                       group=Reuse.from_state(kept) if kept else None)
    except MixoptError as exc:
        began = rec.config.get("started_in")
        # the evaluator's module, or a --method module:Class, next to where the search was started
        what = next((w for w in ("evaluator", "method") if f"cannot import {w} module" in str(exc)), None)
        if what and began and began != str(Path.cwd()):
            raise MixoptError(f"{exc} (search {name!r} was started in {began}: resume it from there, or put "
                              f"the {what}'s folder on PYTHONPATH)") from exc
        raise
    plan = rec.plan or {}
    if plan.get("fidelity_key") != prep.fidelity_key or plan.get("corpus_hash") != prep.corpus_hash:
        raise MixoptError(f"search {name!r} cannot go on: {_what_changed(plan, prep)}")
    with driver_lock(prep.search_dir, name):
        mark_search_dir(prep.search_dir, st, name=name)  # a folder made before the mark becomes this store's
        ray = _LazyRay(cfg, progress, prep, fresh=False, state_before=rec.state)
        _stop_on_sigterm()
        settle_runs(st, name, prep.workroot, stopped_at=recorded_stop(prep.workroot))
        said: list[str] = []  # what runs again, and why: said as the resume starts

        def runs(ids: list[str]) -> int:  # the runs (slots) behind these attempts
            return len({slot_key(name, i) for i in ids})

        # Slots whose last attempt a stop cut short: closed just now (a killed driver) or by the
        # driver itself as it stopped (Ctrl-C, SIGTERM: a QA pass found those, validation's too, unsaid)
        last: dict[str, Any] = {}
        for r in st.runs(search_id=name):
            if (k := slot_key(name, r.run_id)) not in last or r.attempt > last[k].attempt:
                last[k] = r
        cut = [r for r in last.values() if r.status == "failed" and interrupted_attempt(r)]
        if cut:
            said.append(f"{len(cut)} run(s) cut short when the driver stopped run again")
        requeued = st.retag_errors(name, FATAL_PREFIX, REQUEUED + FATAL_PREFIX)
        if requeued:
            said.append(f"{runs(requeued)} run(s) that broke the evaluator's contract run again")
        # Runs that failed (raised, died) after every retry get their retries again: a resume
        # follows a fix of the evaluator or the cluster. Diverged runs stay (a mixture that blows up
        # would blow up again), and so do timed-out ones unless --trial-timeout changes (below).
        again = st.requeue_failed(name, REQUEUED, keep=(REQUEUED, INTERRUPTED, TIMED_OUT))
        if again:
            said.append(f"{runs(again)} failed run(s) get their retries again")
        from mixopt.methods import get_method

        trained = sum(r.role == "swarm" for r in st.runs(search_id=name, status="ok"))
        if (rec.state == "failed" and not get_method(cfg.method).training_free
                and trained + len(plan.get("reused", [])) < 2):
            # The search failed (not interrupted) for too few runs to fit: what diverged across the
            # swarm is the setup (a learning rate, an evaluator's NaN) rather than the mixtures, and
            # the fix the error asked for is tried on them too.
            again = st.requeue_failed(name, REQUEUED, keep=(REQUEUED, INTERRUPTED), status="diverged")
            if again:
                said.append(f"too few swarm runs trained to fit: its {runs(again)} diverged run(s) run again")
        if trial_timeout is not None:  # runs stopped by the old limit get another chance under the new
            again = st.retag_errors(name, TIMED_OUT, REQUEUED + TIMED_OUT)
            if again:
                said.append(f"{runs(again)} run(s) timed out under the old --trial-timeout run again")
        if cfg.reuse and not get_method(cfg.method).training_free and (n := _borrow_swarm(prep, plan)):
            said.append(f"{n} swarm run(s) that another search measured meanwhile (same mixture, seed and "
                        "fidelity) are reused, not run again")
        line = f"resuming search {name}" + (": " + "; ".join(said) if said else "")
        _emit(progress, StageEvent(stage="plan", search_id=name, message=line))
        st.update_search(name, state="running")
        return _drive(prep, plan, ray, progress, resumed=True)


def _swarm_searcher(prep: Prepared, plan: dict[str, Any]) -> SwarmSearcher:
    """The search's swarm slots, less those a resume found measured by another search (reused)."""
    cfg = prep.config
    searcher = SwarmSearcher.from_rows(plan["swarm"], domains=prep.domains, search_id=prep.search_id,
                                       seed=cfg.seed, retries=cfg.retries)
    for key in plan.get("swarm_borrowed", {}):
        searcher.slots.pop(key, None)
    return searcher


def _borrow_swarm(prep: Prepared, plan: dict[str, Any]) -> int:
    """On a resume, the swarm slots this search has not finished that a run of another search
    measured meanwhile (same mixture, seed, fidelity and a finite objective): taken into the
    plan's reused runs, so they are not run again. A search started while this one's driver was
    dead had planned the same seeded mixtures and run them (a QA pass: a kill -9, a second search,
    a resume, and 8 of 12 mixtures measured twice). Returns how many."""
    if plan.get("candidates") is not None:  # fitted already: a run taken now would not be in the fit
        return 0
    searcher = _swarm_searcher(prep, plan)
    slots = list(searcher.slots.values())
    slot_states(prep.store, prep.search_id, slots, retries=prep.config.retries)
    with planning_lock(prep.store.path):  # a `runs delete` meanwhile: the runs are gone or recorded as used
        found = borrowable(prep.store, [s for s in slots if s.state != "done"], search_id=prep.search_id,
                           corpus_hash=prep.corpus_hash, fidelity_key=prep.fidelity_key, domains=prep.domains,
                           objective=prep.objective)
        taken = set(plan.get("reused", []))
        found = {k: i for k, i in found.items() if i not in taken}  # a run reused once counts once
        if found:
            plan["swarm_borrowed"] = {**plan.get("swarm_borrowed", {}), **found}
            plan["reused"] = [*plan.get("reused", []), *found.values()]
            prep.store.update_search(prep.search_id, plan=plan)
    return len(found)


def _near_diverged_note(store: RunStore, sid: str, domains: list[str], weights: Any,
                        X: np.ndarray) -> str | None:
    """A note when the run nearest the proposal (L1) diverged: the model was fitted on the runs that
    trained and knows nothing of where training breaks. None otherwise."""
    broke = store.runs(search_id=sid, status="diverged", role="swarm")
    if not broke or not len(X):
        return None
    w = np.asarray(weights, dtype=float)
    B = np.vstack([r.vector(domains) for r in broke])
    d_ok, d_broke = np.abs(X - w).sum(1).min(), np.abs(B - w).sum(1)
    if d_broke.min() >= d_ok:
        return None
    near = broke[int(d_broke.argmin())]
    n = len({r.label or r.run_id for r in broke})  # mixtures, not attempts (a retry is another run)
    attempts = f" ({len(broke)} runs with retries)" if len(broke) > n else ""
    return (f"the proposal lies nearer to run {near.run_id}, which diverged, than to any run that trained "
            f"(L1 {d_broke.min():.3f} against {d_ok:.3f}; {n} swarm mixtures diverged{attempts}): the model "
            "knows nothing of where training breaks; validate the proposal, or cap the domains those runs "
            "lean on")


def _failure_kinds(store: RunStore, searcher: SwarmSearcher) -> dict[str, int]:
    """How the swarm's lost slots ended, from their last run's record: diverged, timed out, failed."""
    from collections import Counter

    kinds: Counter[str] = Counter()
    for slot in searcher.slots.values():
        if slot.state != "failed":
            continue
        rec = store.get(slot.run_id) if slot.run_id else None
        if rec is not None and rec.status == "diverged":
            kinds["diverged"] += 1
        elif rec is not None and (rec.error or "").startswith(TIMED_OUT):
            kinds["timed out"] += 1
        else:
            kinds["failed"] += 1
    return dict(kinds)


# ----- stages ------------------------------------------------------------------------------
def _ray(config: SearchConfig, progress: Progress | None, search_id: str,
         evaluator: str | Callable) -> RayInfo:
    with _stop_seen() as seen:
        try:
            info = ensure_ray(config.address, py_modules=user_modules(evaluator))
        except SystemExit as exc:
            # ray.init sets SIGTERM to sys.exit(15) while it starts (seconds): a stop, as it is
            # after (the search had been marked failed, with no resume hint)
            if exc.code == signal.SIGTERM and not _HOST_IGNORES_SIGTERM:
                raise KeyboardInterrupt from exc
            raise
    if seen() == signal.SIGINT or (seen() and not _HOST_IGNORES_SIGTERM):
        raise KeyboardInterrupt  # its exception lost in a fork handler: a stop all the same
    _stop_on_sigterm()
    _check_trial_fits(config, info)
    _emit(progress, StageEvent(stage="ray", message="Ray is up", search_id=search_id,
                               lines=tuple(info.describe())))
    return info


@contextlib.contextmanager
def _stop_seen() -> Iterator[Callable[[], int]]:
    """The stop signal (SIGINT, else SIGTERM, else 0) that came inside the block, whatever its
    handler did with it.

    Ray's SIGTERM handler during ``ray.init`` raises SystemExit, and Ctrl-C KeyboardInterrupt,
    which Python drops (``Exception ignored in: _releaseLock``) when the signal lands in a fork
    handler: the search then went on. Python writes every handled signal's number to the wakeup
    fd, which is borrowed here when no one else holds it (an asyncio loop in this thread would).
    """
    got = {"signal": 0}
    if threading.current_thread() is not threading.main_thread():
        yield lambda: 0
        return
    r, w = os.pipe()
    os.set_blocking(r, False)
    os.set_blocking(w, False)
    try:
        old = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        if old != -1:  # someone's own: given back, and nothing is watched
            signal.set_wakeup_fd(old)
        try:
            yield lambda: got["signal"]
        finally:
            if old == -1:
                signal.set_wakeup_fd(-1)
                with contextlib.suppress(BlockingIOError):
                    came = set(os.read(r, 4096))
                    got["signal"] = next((int(s) for s in (signal.SIGINT, signal.SIGTERM) if s in came), 0)
    finally:
        os.close(r)
        os.close(w)


class RayRefused(MixoptError):
    """Ray could not take the search (unreachable, a trial bigger than any node) before it ran
    anything of this call: a new search is deleted, a resumed one keeps the state it had."""


class _LazyRay:
    """The Ray of one search, started by the first call: a search whose every run is in the store
    (its swarm reused, its validation measured by earlier searches) fits, validates and writes its
    mixture without starting one. While :meth:`watching`, a joined cluster's head is watched from
    when it is up.

    ``fresh``: a new search. When Ray refuses it (unreachable, a trial bigger than any node)
    before it ran anything, it is deleted, folder and all: the same command with other settings
    may take its name again (a resume could not change them). ``state_before``: a resumed
    search's state, which it keeps when Ray refuses it (:class:`RayRefused`).
    """

    def __init__(self, config: SearchConfig, progress: Progress | None, prep: Prepared, *,
                 fresh: bool, state_before: str = "interrupted") -> None:
        self._args = (config, progress, prep.search_id, prep.evaluator)
        self._prep, self._fresh = prep, fresh
        self.state_before = state_before
        self.info: RayInfo | None = None
        self._watch: contextlib.ExitStack | None = None
        self._lost: Callable[[RayInfo], None] | None = None

    def __call__(self) -> RayInfo:
        if self.info is None:
            try:
                self.info = _ray(*self._args)
            except MixoptError as exc:
                prep = self._prep
                if self._fresh and prep.store.delete_search_if_unused(prep.search_id):
                    shutil.rmtree(prep.search_dir, ignore_errors=True)
                raise RayRefused(str(exc)) from exc
            self._watch_now()
        return self.info

    def _watch_now(self) -> None:
        if self.info is not None and self._watch is not None and self._lost is not None:
            info, lost = self.info, self._lost
            self._watch.enter_context(watch_cluster(info, lambda: lost(info)))

    @contextlib.contextmanager
    def watching(self, lost: Callable[[RayInfo], None]) -> Iterator[None]:
        with contextlib.ExitStack() as stack:
            self._watch, self._lost = stack, lost
            self._watch_now()
            try:
                yield
            finally:
                self._watch = self._lost = None

    def describe(self) -> list[str]:
        return list(self.info.describe()) if self.info is not None else [
            "Ray: not started (every run this search needed was in the store)"]


def _check_trial_fits(config: SearchConfig, info: RayInfo) -> None:
    """Refuse a trial no live node can hold (Tune would wait for it forever): more CPUs or GPUs
    than any node has, or both on no one node."""
    import ray

    cpus, gpus = config.cpus_per_trial, config.gpus_per_trial
    try:
        nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    except Exception:  # informative only: Tune would still run what fits
        nodes = []
    if not nodes:  # Ray does not say: the cluster's totals
        nodes = [{"CPU": float(info.num_cpus), "GPU": info.num_gpus}]
    most_cpus = max(n.get("CPU", 0.0) for n in nodes)
    most_gpus = max(n.get("GPU", 0.0) for n in nodes)
    if cpus > most_cpus:
        raise MixoptError(f"--cpus-per-trial {cpus}: no node of the Ray cluster has that many CPUs (the "
                          f"largest has {most_cpus:g}); give at most {int(most_cpus)}")
    if gpus > most_gpus:
        where = ("this machine's Ray sees no GPU" if info.started_here and not most_gpus else
                 f"no node of the Ray cluster has {gpus:g} GPUs (the largest has {most_gpus:g})")
        raise MixoptError(f"--gpus-per-trial {gpus:g}: {where}; run on a cluster with GPU nodes "
                          "(--address), or give fewer")
    if not any(n.get("CPU", 0.0) >= cpus and n.get("GPU", 0.0) >= gpus for n in nodes):
        raise MixoptError(f"--cpus-per-trial {cpus} with --gpus-per-trial {gpus:g}: no one node of the Ray "
                          "cluster has both (a trial runs on one node); give fewer CPUs per trial")


def _emit(progress: Progress | None, event: Any) -> None:
    if progress is not None:
        progress(event)


def _plan(prep: Prepared) -> dict[str, Any]:
    """The swarm (sampled once, stored with the search) and the runs reused from earlier searches."""
    from mixopt.methods import get_method
    from mixopt.swarm import sample_swarm

    cfg = prep.config
    spec = get_method(cfg.method)
    free = spec.training_free  # entropy: no swarm, nothing to fit
    reused = []
    if cfg.reuse and not free:
        reused = prep.store.reusable(corpus_hash=prep.corpus_hash, fidelity_key=prep.fidelity_key,
                                     domains=prep.domains, exclude_search=prep.search_id)
        valued = [r for r in reused if np.isfinite(prep.objective.value(r.metrics, prep.domains))]
        if len(valued) < len(reused):  # imported under other metric names, or measuring fewer domains
            reads = list(prep.objective.metric_weights(prep.domains))
            kept = {r.run_id for r in valued}
            left = [r for r in reused if r.run_id not in kept]
            have = set.intersection(*(set(r.metrics) for r in left))
            lack = [m for m in reads if m not in have]
            shown = ", ".join(lack[:3]) + (", …" if len(lack) > 3 else "")
            # a metric no such run has: named otherwise, or not measured; one some have: left out of
            # the others (a NaN cell at import; a QA pass was sent to --rename for that)
            named = any(all(m not in r.metrics for r in left) for m in lack)
            how = ("`mixopt runs import --rename` names imported metrics, and --target can leave out "
                   "domains the runs did not measure" if named or not lack else
                   "other runs of theirs have them (a NaN or empty cell at import leaves a run's metric "
                   "out)")
            warn(
                f"{len(reused) - len(valued)} earlier run(s) match this search's domains and fidelity but "
                f"lack metrics its objective reads ({shown or 'finite values'}), so they are not reused: "
                f"{how}", MixoptWarning)
        reused = valued
        if stale := _runs_of_another_recipe(prep):  # not reused without a word (an upgrade QA pass)
            rung = json.loads(prep.fidelity_key).get("rung")
            warn(f"{stale} earlier run(s) of this corpus at rung {rung} trained under another recipe of it "
                 "(the rung's file changed since they ran), so they are not reused: they measured "
                 "another proxy model", MixoptWarning)
    existing = np.vstack([r.vector(prep.domains) for r in reused]) if reused else None
    # Every reused run informs the fit, but only the mixtures inside this search's constraints
    # (--fix, --max-weight, ...) count towards its budget, each once (validation measures one
    # mixture at several seeds): the swarm must sample the space it searches.
    inside = distinct_mixtures(existing[prep.space.contains_rows(existing, tol=1e-6)]) if reused else 0
    n_new = 0 if free else max(0, cfg.budget - inside)
    # The swarms of searches running now over the same corpus, fidelity and domains: a twin search
    # started alongside draws the same seeded swarm and would measure them again. Kept away from,
    # as finished runs are; not fitted (they have no result yet; a later search reuses them).
    in_flight = [] if free else _planned_elsewhere(prep)
    avoid = np.vstack([*([existing] if existing is not None else []), *in_flight]) if in_flight else existing
    rows = sample_swarm(prep.space, n_new, seed=cfg.seed, temperature=cfg.temperature, existing=avoid)
    if not free:  # a fit the law would refuse once the swarm has run is refused now, before any run
        new_rows = np.asarray(rows).reshape(-1, len(prep.domains))
        planned = np.vstack([new_rows, existing]) if reused else new_rows
        vary = varying(planned)
        need, why = spec.min_runs(
            int(vary.sum()), targets=list(prep.objective.metric_weights(prep.domains)),
            varying=[d for d, v in zip(prep.domains, vary, strict=True) if v],
        )
        points = distinct_mixtures(planned)  # a mixture measured at 8 seeds: one point for a law's params
        if points < need:
            others = [m for m in ("log-ridge", "gp", "auto") if m != spec.name]
            alt = ("" if need <= 3 else  # auto and log-ridge need 3: only more runs help
                   f" or use a method with fewer parameters ({', '.join(others[:-1])} or {others[-1]})")
            enough = max(cfg.budget, inside) + need - points  # each budget step adds one new mixture
            raise MixoptError(
                f"--budget {cfg.budget}: {why}, and the search would fit {points} distinct "
                f"mixture{'s' * (points != 1)} ({n_new} new run{'s' * (n_new != 1)}, {len(reused)} reused); "
                f"raise --budget to {enough}{alt}"
            )
        # reused runs count: they are fitted too (random fits nothing: it takes the best run)
        if spec.fitter is not None and points < prep.space.n + 1:
            units = "units (the reused group counts once)" if prep.group else "domains"
            warn(
                f"--budget {cfg.budget}: the search would fit {points} distinct "
                f"mixture{'s' * (points != 1)}, fewer than the number of {units} + 1 ({prep.space.n + 1}); "
                "a fit on so few runs is unreliable",
                MixoptWarning,
            )
    if prep.group is not None and cfg.max_epochs is not None and not free:
        capped_away_note(prep.space, np.asarray(rows).reshape(-1, prep.space.n), prep.group.name,
                         cfg.temperature, search=True)
    return {
        **({"reuse_mixture": prep.group.state()} if prep.group is not None else {}),
        "version": 1, "domains": prep.domains, "space": prep.space.as_dict(), "fidelity": prep.fidelity,
        "fidelity_key": prep.fidelity_key, "corpus": prep.corpus_name, "corpus_hash": prep.corpus_hash,
        "reused": [r.run_id for r in reused], "swarm": np.asarray(rows).tolist(),
        "reused_counted": inside, "in_flight_elsewhere": len(in_flight),
    }


def _runs_of_another_recipe(prep: Prepared) -> int:
    """Finished runs over this search's corpus and domains whose fidelity differs from its own only
    in the rung recipe's hash: the rung's file changed since they ran."""
    def without_hash(key: str) -> dict[str, Any] | None:
        try:
            d = json.loads(key)
        except (TypeError, ValueError):
            return None
        return {k: v for k, v in d.items() if k != "rung_hash"} if isinstance(d, dict) else None

    mine = json.loads(prep.fidelity_key)
    if not mine.get("rung_hash"):  # a user's evaluator, or a rung defined in code
        return 0
    base = without_hash(prep.fidelity_key)

    def hashed(key: str) -> bool:  # runs recorded before the hash was (imports of old runs) say nothing
        try:
            return bool(json.loads(key).get("rung_hash"))
        except (TypeError, ValueError, AttributeError):
            return False

    return sum(r.fidelity_key != prep.fidelity_key and hashed(r.fidelity_key)
               and without_hash(r.fidelity_key) == base
               for r in prep.store.runs(corpus_hash=prep.corpus_hash, domains=prep.domains, status="ok"))


def _planned_elsewhere(prep: Prepared) -> list[list[float]]:
    """Swarm rows of the other searches whose driver runs now, over this search's corpus, fidelity
    and domains, less the mixtures they have finished (those are reused)."""
    from mixopt.search.prepare import search_dir

    rows: list[list[float]] = []
    # only the running searches' plans are read: a store's 300 finished ones had cost every search
    # 10 s at its start
    running = [r.search_id for r in prep.store.searches(plans=False)
               if r.state == "running" and r.search_id != prep.search_id]
    for rec in filter(None, map(prep.store.get_search, running)):
        plan = rec.plan or {}
        same = (plan.get("fidelity_key"), plan.get("corpus_hash"), list(plan.get("domains", ()))) == (
            prep.fidelity_key, prep.corpus_hash, list(prep.domains))
        if (rec.search_id == prep.search_id or rec.state != "running" or not same
                or driver_alive(search_dir(rec.search_id)) is not True):
            continue
        swarm = np.asarray(plan.get("swarm", []), dtype=float).reshape(-1, len(prep.domains))
        done = [r.vector(prep.domains) for r in prep.store.runs(search_id=rec.search_id, status="ok")]
        if done and len(swarm):  # rows no finished run of that search matches
            gap = np.abs(swarm[:, None, :] - np.asarray(done)[None, :, :]).max(axis=2)
            swarm = swarm[~(gap <= 1e-9).any(axis=1)]
        rows += swarm.tolist()
    return rows


def _plan_line(prep: Prepared, plan: dict[str, Any]) -> str:
    """``search X: 7 new runs, 137 reused (5 mixtures inside the constraints count towards --budget 12)``."""
    line = f"search {prep.search_id}: {len(plan['swarm'])} new runs, {len(plan['reused'])} reused"
    if plan["reused"]:
        n = plan["reused_counted"]
        line += (f" ({n} mixture{'s' if n != 1 else ''} inside the constraints count{'s' if n == 1 else ''} "
                 f"towards --budget {prep.config.budget}; every reused run is fitted)")
    if plan.get("in_flight_elsewhere"):
        line += (f"; {plan['in_flight_elsewhere']} mixtures that searches running now have yet to finish "
                 "are left to them (a search started later reuses their runs)")
    return line


def _concurrency(prep: Prepared, info: RayInfo) -> int:
    cfg = prep.config
    fits = info.num_cpus // cfg.cpus_per_trial
    if cfg.gpus_per_trial:  # the scarcer of the two sets how many trials run at once
        fits = min(fits, int(info.num_gpus / cfg.gpus_per_trial + 1e-9))
    return cfg.concurrency or max(1, fits)


def _drive(prep: Prepared, plan: dict[str, Any], ray: _LazyRay, progress: Progress | None, *,
           resumed: bool) -> SearchResult:
    t0 = time.perf_counter()
    store, sid = prep.store, prep.search_id

    def lost(info: RayInfo) -> None:  # from the watch's thread, while Tune waits on a cluster that is gone
        with contextlib.suppress(Exception), store.impatient():
            store.update_search(sid, state="interrupted")
        print(f"error: lost the Ray cluster at {info.address} (its head stopped answering); restart it "
              f"and run {prep.resume}: finished runs are kept", file=sys.stderr, flush=True)
        os._exit(2)  # Ray's core would abort the process itself once its 60 s reconnect wait ends

    try:
        with ray.watching(lost):
            result = _stages(prep, plan, ray, progress, resumed=resumed, t0=t0)
        store.update_search(sid, state="done", result=result.as_dict())
    except KeyboardInterrupt:
        _bookkeep(store, lambda: (settle_runs(store, sid, prep.workroot, stopped_at=stop_signal_time()),
                                  store.update_search(sid, state="interrupted")))
        raise
    except RayRefused:  # nothing of this call ran: a new search is gone, a resumed one as it was
        _bookkeep(store, lambda: (settle_runs(store, sid, prep.workroot, stopped_at=stop_signal_time()),
                                  store.update_search(sid, state=ray.state_before)))
        raise
    except StoreLockedError as exc:  # the store takes nothing now: the search stays resumable as it is
        raise StoreLockedError(f"{exc}: for this search, {prep.resume} (its finished runs are kept)") from exc
    except BaseException as exc:
        failed = failure(exc)
        _bookkeep(store, lambda: (settle_runs(store, sid, prep.workroot, stopped_at=stop_signal_time()),
                                  store.update_search(sid, state="failed", result=failed)))
        raise
    return result


def _stages(prep: Prepared, plan: dict[str, Any], ray: _LazyRay, progress: Progress | None, *, resumed: bool,
            t0: float) -> SearchResult:
    from mixopt.methods import get_method

    cfg, store, sid, domains = prep.config, prep.store, prep.search_id, prep.domains
    spec = get_method(cfg.method)
    prep.search_dir.mkdir(parents=True, exist_ok=True)

    # 1. the swarm
    searcher = _swarm_searcher(prep, plan)
    _run_phase(prep, searcher, "swarm", ray, progress, warm=plan.get("reused", []))

    # 2. fit and propose on every finished run (reused ones included)
    swarm_ids = [s.run_id for s in searcher.slots.values() if s.state == "done"]
    X, y, ids = store.matrix(domains, prep.objective, run_ids=swarm_ids + list(plan.get("reused", [])))
    n_failed = sum(s.state == "failed" for s in searcher.slots.values())
    outcomes = _failure_kinds(store, searcher)
    if len(y) == 1 and not spec.training_free and len(searcher.slots) + len(plan.get("reused", [])) == 1:
        # the budget (and the store) gave one run, which finished (had said "fix the evaluator")
        raise MixoptError(
            f"one run is too few for {cfg.method}, which needs 2 or more; search again under a new --name "
            "with --budget 2 or more (this run stays in the store, and a search like this one reuses it)")
    if len(y) < 2 and not spec.training_free:
        first = next((s.error for s in searcher.slots.values() if s.error), "no error recorded")
        ended = ", ".join(f"{n} {kind}" for kind, n in outcomes.items())
        timed = " (timed-out ones under a new --trial-timeout)" if "timed out" in outcomes else ""
        raise RunsFailedError(
            f"only {len(y)} of {len(searcher.slots) + len(plan.get('reused', []))} runs finished ok"
            f"{f' ({ended})' if ended else ''}, too few to fit; first error: "
            f"{first.splitlines()[0] if first else first}. Fix the evaluator (or what made the runs "
            f"diverge) and run {prep.resume}: the failed and diverged runs run again{timed}"
        )
    if not spec.training_free and len(y) >= 3 and flat(y):
        # A launcher that ignores the mixture is a common fault; more runs would not help.
        raise MixoptError(
            f"all {len(y)} runs measured the same objective ({y[0]:.6g}): the evaluator's metrics do not "
            "depend on the mixture (or are rounded coarser than its effect), so there is nothing to fit or "
            "rank. Check that the evaluator trains on the request's mixture, then search again under a new "
            "--name with --no-reuse "
            "(these runs stay in the store, and a search with the same evaluator and fidelity would reuse "
            "them)"
        )
    what = (f"{cfg.method}: conditional entropy of each domain" if spec.training_free
            else f"fitting {cfg.method} on {len(y)} runs")
    n_metrics = len(prep.objective.metric_weights(domains))
    # said before the wait (a QA pass: an hour unsaid); auto fits its laws per metric only up to 32
    if spec.per_metric and spec.fitter != "auto" and n_metrics > PER_METRIC_SAY:
        what += (f": one law per metric, {n_metrics} laws of about {len(domains) + 1} parameters each, which "
                 "takes long at this width (auto, gp and log-ridge fit one model of the objective)")
    _emit(progress, StageEvent(stage="fit", message=what, search_id=sid))
    cands = plan.get("candidates")
    if cands is None:
        cands = _candidates(prep, spec, X, y, ids)
        plan["candidates"] = [c.as_dict() for c in cands]
        store.update_search(sid, plan=plan)  # validation after a resume uses the same candidates
    else:
        cands = [Candidate.from_dict(c) for c in cands]

    # 3. validate
    prop = next(c for c in cands if c.name == PROPOSAL)
    best = next((c for c in cands if c.name == BEST_RUN), None)
    # Without validation, say when the model itself rates the best run higher (with it, the
    # measured comparison below says which is better).
    notes: list[str] = [*(prop.info.get("fit_notes") or [])]
    if not spec.training_free:
        notes += proposal_notes(prop, X, y, domains, cfg.method, fixed=prep.space.fixed, kl=cfg.kl,
                                best=None if best is None else (best.predicted, str(best.run_id)),
                                say_worse=cfg.validate == 0, fit_rms=prop.info.get("fit_rms"),
                                runs_std=prop.info.get("runs_std"),
                                cv=(prop.info["cv_spearman"], prop.info["cv_folds"])
                                if "cv_spearman" in prop.info else None)
    else:
        notes.append("training-free (BiMix): weights from each domain's conditional entropy "
                     f"({prop.info.get('estimator')}); no proxy runs were fitted (--budget unused)")
    if not spec.training_free and (broke := _near_diverged_note(store, sid, domains, prop.weights, X)):
        notes.append(broke)
    if not spec.training_free and (outside := best_run_note(prep.space, X, y, ids)):
        notes.append(outside)  # reused runs outside the constraints (as `fit` says it)
    temp = baseline_temperature(cfg.temperature)  # how the constraints moved each baseline (a QA pass)
    notes += [n for c in cands if c.name in BASELINES and (n := moved_note(c.name, prep.space, temp,
                                                                            inside=np.array(c.weights)))]
    measured = comparisons = None
    exported = PROPOSAL
    # validation runs trained here, borrowed from earlier searches, cut short: 0 without validation (a
    # QA pass: a script found the keys with --validate 2 and not with 0)
    checks = {"validation_trained": 0, "validation_reused": 0, "validation_restarted": 0}
    vrung = cfg.validate_rung or cfg.rung
    if cfg.validate > 0:
        # at another rung no validation run can repeat a swarm run
        selected_at = selection_seeds(cands, store) if vrung == cfg.rung else None
        slots = validation_slots(cands, k=cfg.validate, seed=cfg.seed, selected_at=selected_at)
        borrowed = _borrowed(prep, plan, slots)
        vs = SwarmSearcher(domains=domains, search_id=sid, retries=cfg.retries,
                           slots=[s for s in slots if s.key not in borrowed])
        _run_phase(prep, vs, "validate", ray, progress, borrowed=len(borrowed))
        by_cand: dict[str, list[str]] = {}
        for s in slots:
            if s.key in borrowed:
                by_cand.setdefault(str(s.label), []).append(borrowed[s.key])
        measured = measure(store, sid, cands, prep.objective, domains, cfg.validate, borrowed=by_cand)
        checks = {"validation_trained": sum(s.state == "done" for s in vs.slots.values()),
                  "validation_reused": len(borrowed),
                  # as "restarted" for the swarm: the end line had counted the swarm's alone
                  "validation_restarted": _cut_short(store, sid, "validate")}
        comparisons = {c.name: compare(measured[PROPOSAL], measured[c.name])
                       for c in cands if c.name != PROPOSAL}
        named = shown_rung(vrung, rung=cfg.rung, corpus=prep.corpus_name)
        exported, chosen = choose_export(measured, rung=named, fitted=spec.fitter is not None)
        notes += chosen  # after the fit's own notes (a flat model, a far extrapolation)
    else:
        notes.append("not validated (--validate 0): nothing was measured" if spec.training_free else
                     "not validated (--validate 0): the predicted objective is the model's, not measured")
    interval, seed_std, said = with_seed_noise(
        prop, measured, exported=exported == PROPOSAL,
        other_rung=vrung if cfg.validate and vrung != cfg.rung else None)
    if said:
        notes.append(said)
    chosen_cand = next(c for c in cands if c.name == exported)
    if split := per_domain_note(chosen_cand, prep.objective, domains):
        notes.append(split)
    if repeats := prep.space.repetition_note(chosen_cand.weights):
        notes.append(repeats)
    if prep.group is not None:  # what the group kept, and which baselines it was set against
        chosen_w = prep.group.expand_weights(dict(zip(domains, chosen_cand.weights, strict=True)))
        notes += [prep.group.note(chosen_w, began=f"search {sid}"),
                  prep.group.baselines_note(prep.space.n, natural=prep.space.tokens is not None)]
    if n_failed:
        kinds = ", ".join(f"{n} {kind}" for kind, n in outcomes.items())
        notes.append(f"swarm runs lost after {cfg.retries} {'retry' if cfg.retries == 1 else 'retries'}: "
                     f"{kinds}; they are in the store "
                     "(`mixopt runs list`), not fitted")

    # 4. the mixture JSON
    _emit(progress, StageEvent(stage="export", message="writing the mixture", search_id=sid))
    rows = candidate_rows(cands, domains, measured, comparisons, exported)
    mixture = build_mixture(
        rows=rows, exported=exported, space=prep.space, objective=prep.objective.as_dict(), method=cfg.method,
        params={"budget": cfg.budget, "rung": cfg.rung, "seed": cfg.seed, "temperature": cfg.temperature,
                "validate": cfg.validate, "validate_rung": vrung if cfg.validate else None, "search": sid,
                "retries": cfg.retries, "reuse_runs": cfg.reuse, "proposer": prop.info,
                **({"reuse": prep.group.as_dict()} if prep.group is not None else {}),
                "constraints": prep.space.constraints(),
                # of the KL term and the sampler: Olmix pulls towards the natural mixture
                "prior": prior_name(prep.space, cfg.temperature)},
        provenance={"corpus": prep.corpus_name, "corpus_hash": prep.corpus_hash, "run_ids": ids,
                    "search": sid, "evaluator": prep.evaluator_name, "fidelity": prep.fidelity,
                    # the runs behind each measured mean: this search's, or earlier searches' reused
                    **({"validation_run_ids": {name: m.run_ids for name, m in measured.items()}}
                       if measured else {})},
        notes=notes, interval=interval, seed_std=seed_std, sd_scale=prop.info.get("sd_scale"),
        validate_rung=vrung if cfg.validate else None, group=prep.group, tokens=prep.domain_tokens,
    )
    if prep.group is not None:  # the table and the result over every domain, as the mixture is
        rows = [dataclasses.replace(r, weights=prep.group.expand_weights(r.weights)) for r in rows]
    in_folder = prep.search_dir / "mixture.json"
    mixture.save(in_folder)
    if prep.out is not None:
        mixture.save(prep.out)
    result = SearchResult(
        search_id=sid, method=cfg.method, objective=prep.objective.as_dict(), exported=exported,
        weights=dict(mixture.weights), candidates=rows,
        runs={"planned": len(searcher.slots), "ok": len(swarm_ids), "failed": n_failed, "lost": outcomes,
              "reused": len(plan.get("reused", [])), "fitted": len(y),
              "attempts": sum(s.attempt for s in searcher.slots.values()),
              # attempts a stopped driver cut short, which ran again: no retry (--retries 0 had said 2)
              "restarted": _cut_short(store, sid, "swarm"), **checks},
        notes=notes, out=str(prep.out) if prep.out else None, mixture_path=str(in_folder), rung=cfg.rung,
        validate_rung=vrung if cfg.validate else None, validate=cfg.validate, wall_s=time.perf_counter() - t0,
        ray=ray.describe(), resumed=resumed, selection=prop.info.get("selection"),
        corpus=prep.corpus_name,
    )
    write_json(prep.search_dir / "result.json", {"mixopt_version": __version__, **result.as_dict()})
    return result


def _cut_short(store: RunStore, search_id: str, role: str) -> int:
    """Attempts of a search's ``role`` runs that a stopped driver cut short, which ran again."""
    return sum(interrupted_attempt(r) for r in store.runs(search_id=search_id, role=role))


def _borrowed(prep: Prepared, plan: dict[str, Any], slots: Sequence[Slot]) -> dict[str, str]:
    """Validation slot key → the run of an earlier search that measured it (same mixture, seed and
    fidelity), chosen once and kept in the plan so that a resume counts the same runs; none with
    ``--no-reuse``. A borrowed run deleted since is dropped, and its slot runs."""
    if not prep.config.reuse:
        return {}
    if "validation_reused" not in plan:
        # Only slots with no run of this search's own: a search stopped in its validation by a
        # version without this rule had run some, and a slot both run and borrowed counted twice.
        ran = {slot_key(prep.search_id, r.run_id) for r in prep.store.runs(search_id=prep.search_id)}
        with planning_lock(prep.store.path):  # as a swarm's borrowed runs: see _borrow_swarm
            plan["validation_reused"] = borrowable(
                prep.store, [s for s in slots if s.key not in ran], search_id=prep.search_id,
                corpus_hash=prep.corpus_hash, fidelity_key=prep.validate_fidelity_key, domains=prep.domains,
                objective=prep.objective)
            prep.store.update_search(prep.search_id, plan=plan)
    by_key = {s.key: s for s in slots}

    def still(key: str, run_id: str) -> bool:  # the run is there and is still that slot's mixture and seed
        s, r = by_key.get(key), prep.store.get(run_id)
        return s is not None and r is not None and r.status == "ok" and measures(r, s, prep.domains)

    return {k: i for k, i in plan["validation_reused"].items() if still(k, i)}


def _run_phase(prep: Prepared, searcher: SwarmSearcher, phase: str, ray: _LazyRay,
               progress: Progress | None, *, warm: Sequence[str] = (), borrowed: int = 0) -> None:
    """Run the slots of one phase that the store does not already hold; stop on fatal errors.
    ``borrowed``: slots of the phase that runs of earlier searches measured (said, not run)."""
    cfg, store, sid = prep.config, prep.store, prep.search_id
    slots = list(searcher.slots.values())
    slot_states(store, sid, slots, retries=cfg.retries)
    best = None
    known = store.get_many([*(s.run_id for s in slots if s.state == "done"), *warm])
    for r in known:
        if r is None:
            continue
        v = prep.objective.value(r.metrics, prep.domains)
        searcher.add_evaluated_point({"weights": r.weights, "run_id": r.run_id}, v)
        if np.isfinite(v):
            best = v if best is None else min(best, v)
    todo = sum(s.state == "pending" for s in slots)
    reused = (f" ({borrowed} measured by earlier searches at the same mixture, seed and fidelity: reused)"
              if borrowed else "")
    _emit(progress, StageEvent(stage=phase, message=f"{phase}: {todo} of {len(slots) + borrowed} runs to go"
                               f"{reused}", search_id=sid))
    if todo:
        run_trials(searcher, prep.context(phase), phase=phase, storage=prep.search_dir / "tune",
                   concurrency=_concurrency(prep, ray()), cpus_per_trial=cfg.cpus_per_trial,
                   gpus_per_trial=cfg.gpus_per_trial,
                   progress=progress, best=best)
    check_fatal(store, sid, prep.resume)
    # runs Tune left running when it stopped early (a signal, or a fatal error)
    settle_runs(store, sid, prep.workroot, stopped_at=stop_signal_time())
    slot_states(store, sid, slots, retries=cfg.retries)
    left = [s.key for s in slots if s.state == "pending"]
    if left or stop_signal_time() is not None:  # a stop as the last runs ended stops the search too
        raise KeyboardInterrupt(f"{phase} stopped with {len(left)} runs to go; resume with {prep.resume}")


def _candidates(prep: Prepared, spec: Any, X: np.ndarray, y: np.ndarray, ids: list[str]) -> list[Candidate]:
    """Fit, propose, and line the proposal up with the baselines and the best run, all predicted."""

    cfg, space = prep.config, prep.space
    if spec.training_free:
        return _entropy_candidates(prep)
    t0 = time.perf_counter()
    # A domain constant in every run because --fix holds it there is no news for the laws to tell.
    constant = {prep.domains[i] for i in unvaried(X)}
    quiet = [FLAT_WARNING]  # the search's own note says it, with the budget
    if constant <= set(space.fixed):
        quiet.append(".*have the same weight in every run")
    with warnings.catch_warnings():
        for pattern in quiet:
            warnings.filterwarnings("ignore", message=pattern, category=MixoptWarning)
        metrics = prep.objective.metric_weights(prep.domains)
        Y = prep.store.metric_rows(ids, list(metrics)) if spec.per_metric and len(metrics) > 1 else None
        with warnings_as_notes() as fit_notes:  # a fit that did not converge: in the JSON's notes too
            # Candidates (top-k) and the KL prior (exact) from the prior the swarm sampled around
            prior = {} if spec.proposer == "best_run" else {"temperature": cfg.temperature}
            fitter, proposal = spec.fit_propose(X, y, space, seed=cfg.seed, metrics=metrics, Y=Y,
                                                proposer_params={**spec.kl_option(cfg.kl), **prior})
    proposal.info["fit_notes"] = [n for n in fit_notes if not any(re.match(p, n) for p in quiet)]
    # auto's cross-validation of the model it chose says whether that model's sds held out of fold
    proposal, said = widen(proposal, getattr(fitter, "calibration_", None), "auto's cross-validation")
    if said:
        proposal.info["fit_notes"].append(said)
    fit_seconds = time.perf_counter() - t0
    if fitter is not None and len(y) > 2:  # how well the model fits the runs it was fitted on
        resid = np.asarray(_predict(fitter, X)[0], dtype=float) - y
        proposal.info.update(fit_rms=float(np.sqrt(np.mean(resid**2))), runs_std=float(np.std(y)))
    if fitter is not None and cfg.validate == 0:  # nothing will be measured: how it ranks unseen runs
        from mixopt.fitters.cv import held_out_ranking
        from mixopt.methods import fit_target

        cv = held_out_ranking(fitter, X, fit_target(fitter, y, Y), fit_seconds=fit_seconds, seed=cfg.seed)
        if cv is not None:
            proposal.info.update(cv_spearman=cv[0], cv_folds=cv[1])
    interval = tuple(proposal.interval) if proposal.interval is not None else None
    cands = [Candidate(
        name=PROPOSAL, weights=[float(x) for x in proposal.weights], predicted=proposal.predicted,
        predicted_std=proposal.std, interval=interval, info=_jsonable(dict(proposal.info or {})),
    )]
    for name, w in baselines_for(space, baseline_temperature(cfg.temperature)).items():
        cands.append(Candidate(name=name, weights=[float(x) for x in w]))
    b = space.best_row(X, y)
    if b is not None:  # a run outside the constraints is no candidate: it could be exported
        cands.append(Candidate(name=BEST_RUN, weights=[float(x) for x in X[b]], swarm_value=float(y[b]),
                               run_id=ids[b]))
    if fitter is not None:
        W = np.array([c.weights for c in cands[1:]])
        mean, std = _predict(fitter, W)
        for c, m, s in zip(cands[1:], mean, std, strict=True):
            c.predicted = float(m)
            c.predicted_std = float(s) if s is not None and np.isfinite(s) else None
        per = _per_domain(fitter, prep, X, ids, np.array([c.weights for c in cands]), fit_seconds)
        if per is not None:
            for c, row in zip(cands, per, strict=True):
                c.predicted_per_domain = {d: float(v)
                                          for d, v in zip(measured_domains(prep), row, strict=True)}
    dedupe(cands)
    return cands


def _entropy_candidates(prep: Prepared) -> list[Candidate]:
    """BiMix's entropy mixture of the corpus, inside the space, with the baselines (nothing predicted:
    validation measures them)."""
    from mixopt.entropy import entropy_mixture

    em = entropy_mixture(prep.config.corpus, prep.space)
    info = {"estimator": em.estimator, "entropy_nats_per_token": em.entropy, "raw_weights": em.raw,
            "projected": em.projected}
    cands = [Candidate(name=PROPOSAL, weights=[em.weights[d] for d in prep.domains], info=info)]
    for name, w in baselines_for(prep.space, baseline_temperature(prep.config.temperature)).items():
        cands.append(Candidate(name=name, weights=[float(x) for x in w]))
    dedupe(cands)
    return cands


def measured_domains(prep: Prepared) -> list[str]:
    """The domains a run measures: the space's, or with a reused mixture every domain (the group's
    members and the other units)."""
    return list(prep.objective.domains or prep.domains)


# The per-domain refits (one model per domain's metric, for train's report) may cost about this much.
PER_DOMAIN_SECONDS = 120.0


def _per_domain(
    fitter: Any, prep: Prepared, X: np.ndarray, ids: list[str], W: np.ndarray, fit_seconds: float
) -> np.ndarray | None:
    """Each domain's metric at ``W``, predicted by the objective's kind of model refitted on the runs'
    per-domain metrics (``auto``: its chosen members), so that ``train`` can set each domain's final
    loss against a prediction. None when a run lacks a domain's metric, the fitter cannot do it, or
    the refits would cost more than ``PER_DOMAIN_SECONDS`` (one per domain, ``fit_seconds`` each)."""
    from mixopt.fitters.metricsum import MetricSum, fit_per_metric

    keys = [f"{prep.config.metric}/{d}" for d in measured_domains(prep)]
    if isinstance(fitter, MetricSum) and set(fitter.names) == set(keys):  # it has fitted just these
        pred = fitter.predict_metrics(W)
        return pred[:, [list(fitter.names).index(k) for k in keys]]
    if fit_seconds * len(keys) > PER_DOMAIN_SECONDS:  # e.g. a GP over 64 domains and 512 runs
        logger.info("no per-domain predictions: %d refits of %.1f s each", len(keys), fit_seconds)
        return None
    Y = prep.store.metric_rows(ids, keys)
    if Y is None:
        return None
    try:
        with warnings.catch_warnings():  # the objective's fit already said what there was to say
            warnings.simplefilter("ignore")
            models = [fit_per_metric(m.estimator if isinstance(m, MetricSum) else m, X, Y, keys)
                      for m in getattr(fitter, "members_", [fitter])]
            preds = [np.asarray(m.predict(W), dtype=float).reshape(len(W), len(keys)) for m in models]
    except Exception as exc:  # noqa: BLE001 - an optional extra must not end a search whose swarm ran
        logger.info("no per-domain predictions: %s", exc)
        return None
    out = np.mean(preds, axis=0)
    return out if np.all(np.isfinite(out)) else None


def per_domain_note(cand: Candidate, objective: Any, domains: Sequence[str]) -> str | None:
    """Said when the per-domain refits, combined as the objective combines domains, miss the
    objective's own prediction for ``cand`` (:func:`mixopt.objective.per_domain_split`): two fits
    of the same runs disagree, and ``train``'s report is set against the per-domain ones."""
    per, pred = cand.predicted_per_domain, cand.predicted
    if not per or pred is None:
        return None
    split = per_domain_split(objective, per, pred, cand.predicted_std, domains)
    if split is None:
        return None
    combined, sds = split
    apart = f" ({sds:.1f} sd apart)" if sds is not None else ""
    return (f"the per-domain predictions for {cand.name} (one fit per domain) combine to {combined:.4g}, "
            f"against {pred:.4g} from the objective's own fit{apart}: the two fits of these runs disagree, "
            "so read both as rough; `mixopt train` compares its per-domain losses with the per-domain ones")


def _predict(fitter: Any, W: np.ndarray) -> tuple[np.ndarray, list[float | None]]:
    mean, std = predict_objective(fitter, W, return_std=True)
    if std is None:  # a fitter without uncertainty
        return np.asarray(mean, dtype=float), [None] * len(W)
    return np.asarray(mean, dtype=float), [float(s) for s in np.asarray(std, dtype=float)]


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, np.ndarray):
            v = v.tolist()
        elif isinstance(v, np.generic):
            v = v.item()
        elif isinstance(v, dict):
            v = _jsonable(v)
        elif not isinstance(v, str | int | float | bool | list | type(None)):
            v = repr(v)
        out[str(k)] = v
    return out
