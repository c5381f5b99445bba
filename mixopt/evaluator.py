"""The evaluator contract: anything that turns a mixture into metrics.

A user's evaluator is a callable ``evaluate(request) -> result``. The request carries the mixture
(domain → weight), the fidelity (e.g. ``{"rung": "s", "params": 1e6, "tokens": 2e7}``), the seed,
a run id and a work folder. The result is either a plain dict of metrics (``loss/<domain>`` and
anything else) or an :class:`EvalResult` (or a dict with ``metrics``, ``cost``, ``status``). The
built-in evaluator is the proxy trainer (:mod:`mixopt.proxy`).
"""

from __future__ import annotations

import importlib
import math
import sys
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from mixopt.errors import MixoptError
from mixopt.mixture import has_control_char

# The built-in evaluator's name, where an evaluator is named (a search's config, a run's provenance)
PROXY = "proxy"
Status = Literal["ok", "diverged", "failed"]
STATUSES = ("ok", "diverged", "failed")
MAX_SEED = 2**32 - 1  # the seeds an evaluator is handed: numpy and torch both take seeds in [0, 2^32)


_REQUEST_KEYS = ("mixture", "fidelity", "seed", "run_id", "workdir")


@dataclass(frozen=True)
class EvalRequest(Mapping):
    """What an evaluator is asked to do. Also a read-only mapping of its five fields
    (``request["mixture"]``, ``request.get("seed")``, ``"seed" in request``, ``dict(request)``)."""

    mixture: dict[str, float]
    fidelity: dict[str, Any]
    seed: int
    run_id: str
    workdir: str

    def __getitem__(self, key: str) -> Any:
        if key not in _REQUEST_KEYS:  # getattr had raised AttributeError, or TypeError for an int
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(_REQUEST_KEYS)

    def __len__(self) -> int:
        return len(_REQUEST_KEYS)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class EvalResult:
    """What an evaluator returns.

    Attributes:
        metrics: name → value, per-domain losses as ``loss/<domain>`` (and ``bpb/<domain>``).
        cost: seconds spent.
        status: ``ok``, ``diverged`` (NaN/inf loss; ``error`` says why) or ``failed``.
        error: the error text for a run that did not finish.
        history: metrics at checkpoints during training, each with ``step`` and ``tokens``.
    """

    metrics: dict[str, float]
    cost: float = 0.0
    status: Status = "ok"
    error: str | None = None
    history: list[dict[str, float]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


Evaluator = Callable[[EvalRequest], "EvalResult | Mapping[str, Any]"]


NONFINITE_LEFT_OUT = "non-finite metrics left out (the objective does not read them): "


def coerce_result(obj: Any, *, cost: float = 0.0, needed: Collection[str] | None = None) -> EvalResult:
    """Turn whatever an evaluator returned into an :class:`EvalResult`.

    A non-finite metric among ``needed`` (the objective's; None: every metric) makes the run
    ``diverged``; one the objective does not read (a downstream score, a domain outside --target)
    is left out of the run, and ``error`` names it. No metrics at all is an error of the evaluator.
    """
    if isinstance(obj, EvalResult):
        res = EvalResult(metrics=obj.metrics, cost=obj.cost, status=obj.status, error=obj.error,
                         history=obj.history)
    elif isinstance(obj, Mapping):
        if "metrics" in obj and (isinstance(obj["metrics"], Mapping) or obj["metrics"] is None):
            res = EvalResult(metrics=obj["metrics"], cost=obj.get("cost", cost),
                             status=obj.get("status", "ok"), error=obj.get("error"),
                             history=obj.get("history", []))
        elif obj.get("status") in ("failed", "diverged") and "metrics" not in obj:
            # {"status": "failed", "error": "OOM"}: a failed run needs no metrics (a QA pass: its
            # "status" had been read as a metric, and the search stopped)
            res = EvalResult(metrics={}, cost=obj.get("cost", cost), status=obj["status"],
                             error=obj.get("error"), history=obj.get("history", []))
        else:
            fields = [k for k in ("status", "cost", "error", "history") if k in obj]
            if fields:  # beside flat metrics they had been read as metrics, "cost" silently
                raise MixoptError(f"evaluator returned {', '.join(map(repr, fields))} among its metrics; "
                                  "return {'metrics': {...}, 'cost': ..., 'status': ...} (or an EvalResult) "
                                  "to give them, or a flat dict of metrics alone")
            res = EvalResult(metrics=dict(obj), cost=cost)
    else:
        raise MixoptError(
            f"evaluator returned {type(obj).__name__}; return a dict of metrics (e.g. {{'loss/code': 2.1}}) "
            "or an EvalResult"
        )
    # The same checks for both forms: an EvalResult's fields had reached the store unchecked (a
    # status the store refuses, a cost of "1m30s", a history of characters).
    if res.status not in STATUSES:
        raise MixoptError(f"evaluator returned status {res.status!r}; use one of {', '.join(STATUSES)}")
    if res.metrics is None and res.status != "ok":  # a failed or diverged run: nothing measured
        res.metrics = {}
    if not isinstance(res.metrics, Mapping):
        raise MixoptError(f"evaluator returned metrics of type {type(res.metrics).__name__}; give a dict "
                          "such as {'loss/code': 2.1}")
    try:
        if isinstance(res.cost, bool):
            raise TypeError
        res.cost = float(res.cost or cost)
    except (TypeError, ValueError):
        raise MixoptError(f"evaluator returned cost {res.cost!r}; give the run's cost as a number (seconds, "
                          "GPU-hours: your unit)") from None
    if not (math.isfinite(res.cost) and res.cost >= 0):  # a QA pass: -5 and inf had been stored
        raise MixoptError(f"evaluator returned cost {res.cost!r}; give a finite cost ≥ 0 (or none: the "
                          "run's wall time is taken)")
    # any iterable of dicts (a list, a generator); not a string or a dict, which iterate as characters/keys
    history = [] if res.history is None else res.history
    if isinstance(history, str | bytes | Mapping) or not hasattr(history, "__iter__"):
        history = None
    else:
        history = list(history)
    if history is None or not all(isinstance(h, Mapping) for h in history):
        raise MixoptError("evaluator returned a history that is not a list of checkpoint dicts "
                          "(e.g. [{'tokens': 1e6, 'loss/code': 2.3}, ...])")
    res.history = history
    clean: dict[str, float] = {}
    for k, v in res.metrics.items():
        name = str(k)
        # a table's column could not carry it: exported, "" was a column with no header, " a" read
        # back as "a" (a QA pass), and a newline broke the rows
        if not name.strip() or name != name.strip() or has_control_char(name):
            raise MixoptError(f"evaluator returned a metric named {name!r}; name metrics with printable "
                              "text and no blanks at either end (e.g. 'loss/code')")
        if v is None:  # nothing measured: as NaN (diverged if the objective reads it, else left out)
            clean[str(k)] = math.nan
            continue
        if isinstance(v, bool | str | bytes):  # True read as 1.0, "1.5" as 1.5 (a QA pass): refused
            raise MixoptError(f"evaluator metric {k!r} is {type(v).__name__} {v!r}, not a number; return "
                              "numbers (float, int, numpy scalars)")
        try:
            clean[str(k)] = float(v)
        except (TypeError, ValueError) as exc:
            raise MixoptError(f"evaluator metric {k!r} is not a number ({v!r})") from exc
    res.metrics = clean
    if res.status == "ok":
        if not clean:
            raise MixoptError(
                "evaluator returned no metrics; return at least one, e.g. {'loss/<domain>': value}"
            )
        bad = [k for k, v in clean.items() if not math.isfinite(v)]
        fatal = [k for k in bad if needed is None or k in needed]
        if fatal:
            res.status = "diverged"
            res.error = f"non-finite metrics: {', '.join(bad)}"
        elif bad:
            res.metrics = {k: v for k, v in clean.items() if k not in bad}
            said = f"{NONFINITE_LEFT_OUT}{', '.join(bad)}"
            res.error = f"{said}; {res.error}" if res.error else said  # the evaluator's own text kept
    if res.status != "ok" and not res.error:  # had ended the search with "first error: no error recorded"
        res.error = f"evaluator returned status {res.status!r} with no error text"
    if not res.cost:  # none, 0 or "0": the wall time the caller measured
        res.cost = cost
    return res


def import_user_module(name: str) -> Any:
    """Import a user's module by name, the current folder first on the path (as ``python -c`` has
    it): ``mypkg.mod:fn`` next to where the command runs needs no PYTHONPATH."""
    cwd = str(Path.cwd())
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    return importlib.import_module(name)


def load_user_object(mod_name: str, attr: str, what: str) -> Any:
    """``attr`` of the user's module ``mod_name`` (``--evaluator``, ``--updater``); one MixoptError
    naming ``what`` when the name is a file path, the import fails in any way, or the module lacks it.
    """
    option = f"--{what}"
    if "/" in mod_name or "\\" in mod_name or mod_name.endswith(".py"):  # a path, not a module name
        stem = Path(mod_name).with_suffix("").name if mod_name.endswith(".py") else Path(mod_name).name
        raise MixoptError(
            f"{option} {f'{mod_name}:{attr}'!r} names a file; give a module name: from the folder that "
            f"holds it, {option} {stem}:{attr} (or put the folder on PYTHONPATH)"
        )
    try:
        mod = import_user_module(mod_name)
    except Exception as exc:  # an import error of the user's module can be anything (a SyntaxError too)
        raise MixoptError(f"cannot import {what} module {mod_name!r}: {type(exc).__name__}: {exc}") from exc
    obj = getattr(mod, attr, None)
    if obj is None:
        raise MixoptError(f"{what} module {mod_name!r} has no {attr!r}")
    return obj


def load_evaluator(spec: str) -> Evaluator:
    """Import ``module:function`` (the current folder is on the path, as for ``python -m``)."""
    mod_name, sep, func_name = spec.partition(":")
    if not sep or not mod_name or not func_name:
        raise MixoptError(
            f"--evaluator {spec!r} is not of the form module:function (e.g. mypkg.evals:evaluate)"
        )
    fn = load_user_object(mod_name, func_name, "evaluator")
    if not callable(fn):
        raise MixoptError(f"{spec} is a {type(fn).__name__}, not callable; name a function")
    return fn
