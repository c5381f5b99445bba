"""The proxy ladder: rungs (model shape, token budget, schedule, cost), read from ``proxies/*.toml``.

One TOML file per rung, named after it (``proxies/xs.toml`` → rung ``xs``), so a rung is found by
name with :func:`mixopt.paths.find_recipe` and a user adds a rung by dropping in a file. A rung
is the fidelity later stages optimise over: a bigger rung costs more and predicts the large
model better. Keys (see ``proxies/s.toml`` for a commented example)::

    description = "..."
    n_layer, d_model, n_head, context       # model shape (ffn_hidden optional, 0 = 8/3 · d_model)
    batch, tokens                           # sequences per step, training token budget
    lr, min_lr, warmup, weight_decay        # AdamW, linear warm-up (fraction of steps) then cosine
    grad_clip, eval_tokens, eval_at         # clip norm, val tokens per domain, checkpoint fractions
    [cost] seconds, threads, flops          # measured wall time of one run (train + evals) here

The ``debug`` rung lives in code (:data:`DEBUG`) for tests and CI.
"""

from __future__ import annotations

import hashlib
import json
import math
import tomllib
from collections.abc import Callable
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from mixopt import paths
from mixopt.errors import MixoptError, warn
from mixopt.proxy.model import ModelConfig
from mixopt.schedule import check_optimizer, eval_steps, warmup_cosine
from mixopt.toml_fields import check_field_types, field_types


@dataclass(frozen=True, kw_only=True)
class RungConfig:
    """One rung of the proxy ladder: what to train, on how many tokens, and what it costs.

    Attributes:
        name: the rung's name (``xs``, ``s``, ``m``, ``debug``...).
        n_layer, d_model, n_head, context, ffn_hidden: the model shape (see ModelConfig).
        batch: sequences per optimizer step; batch × context tokens per step.
        tokens: training token budget (rounded down to whole steps).
        lr, min_lr: peak and final learning rate of the cosine schedule.
        warmup: fraction of steps spent in linear warm-up from 0 to ``lr``.
        weight_decay: AdamW decoupled weight decay on matrices (not on norms).
        beta1, beta2: AdamW moments.
        grad_clip: clip the global gradient norm to this (0 = off).
        eval_tokens: validation tokens scored per domain at each checkpoint (a cap; fixed windows).
        eval_at: fractions of training at which to evaluate; 1.0 (the final one) is always added.
        cost_seconds: measured wall seconds of one run (train + evals) on ``cost_threads`` threads.
        cost_threads: threads the cost was measured with.
        cost_flops: training FLOPs of one run at vocabulary 8192 (6N + attention per token × tokens).
        description: one line for ``mixopt proxy rungs``.
    """

    name: str
    n_layer: int
    d_model: int
    n_head: int
    context: int
    batch: int
    tokens: int
    lr: float
    min_lr: float
    warmup: float = 0.05
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    eval_tokens: int = 4096
    eval_at: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)
    ffn_hidden: int = 0
    cost_seconds: float = 0.0
    cost_threads: int = 1
    cost_flops: float = 0.0
    description: str = ""
    source: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        where = f"proxy rung {self.name!r}" + (f" ({self.source})" if self.source else "")
        for key in ("n_layer", "d_model", "n_head", "context", "batch", "tokens", "eval_tokens"):
            v = getattr(self, key)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise MixoptError(f"{where}: {key} is {v!r}; it must be a positive integer")
        if self.d_model % self.n_head:
            raise MixoptError(
                f"{where}: d_model {self.d_model} is not divisible by n_head {self.n_head}; "
                "choose a width that is a multiple of the heads"
            )
        if (self.d_model // self.n_head) % 2:
            raise MixoptError(
                f"{where}: head width d_model/n_head = {self.d_model // self.n_head} is odd; "
                "RoPE needs an even head width"
            )
        if self.tokens < self.batch * self.context:
            raise MixoptError(
                f"{where}: tokens {self.tokens} is less than one step of batch × context = "
                f"{self.batch * self.context}; raise tokens or lower batch/context"
            )
        at = check_optimizer(self, where, ("cost_seconds", "cost_flops"))
        if self.ffn_hidden < 0:
            raise MixoptError(
                f"{where}: ffn_hidden is {self.ffn_hidden}; use 0 (automatic) or a positive width"
            )
        object.__setattr__(self, "eval_at", at)

    # ----- derived ------------------------------------------------------------------------
    @property
    def steps(self) -> int:
        return self.tokens // (self.batch * self.context)

    @property
    def tokens_per_step(self) -> int:
        return self.batch * self.context

    def model_config(self, vocab_size: int, *, fused: bool = True) -> ModelConfig:
        return ModelConfig(
            vocab_size=vocab_size,
            n_layer=self.n_layer,
            d_model=self.d_model,
            n_head=self.n_head,
            context=self.context,
            ffn_hidden=self.ffn_hidden,
            fused=fused,
        )

    def non_embedding_params(self, vocab_size: int = 8192) -> int:
        return self.model_config(vocab_size).non_embedding_params()

    def train_flops(self, vocab_size: int = 8192) -> float:
        """Training FLOPs of one run: FLOPs per token (see ModelConfig) × tokens actually trained."""
        return self.model_config(vocab_size).train_flops_per_token() * self.steps * self.tokens_per_step

    def lr_at(self, step: int) -> float:
        """Learning rate at optimizer step ``step`` (0-based): linear warm-up, then cosine to min_lr."""
        return float(warmup_cosine(step, self.steps, lr=self.lr, min_lr=self.min_lr, warmup=self.warmup))

    def lr_schedule(self, tokens: float | None = None) -> Callable[[np.ndarray], np.ndarray]:
        """The rates at given 0-based steps of this rung's run, or of the same run stretched to
        ``tokens`` (steps of the same size, the same warm-up fraction and decay)."""
        steps = self.steps if tokens is None else max(1, int(tokens) // self.tokens_per_step)
        return lambda s: warmup_cosine(s, steps, lr=self.lr, min_lr=self.min_lr, warmup=self.warmup)

    def eval_steps(self) -> list[int]:
        """Optimizer steps after which to evaluate (distinct, ascending, ending at ``steps``)."""
        return eval_steps(self.eval_at, self.steps)

    def with_tokens(self, tokens: int) -> RungConfig:
        """The same rung with another token budget (a fidelity override)."""
        return replace(self, tokens=int(tokens))

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["eval_at"] = list(self.eval_at)
        d.pop("source")
        return d


# The rung the tests and CI use: trains in well under a second.
DEBUG = RungConfig(
    name="debug",
    n_layer=1,
    d_model=32,
    n_head=2,
    context=32,
    batch=8,
    tokens=8 * 32 * 24,
    lr=3e-3,
    min_lr=3e-4,
    warmup=0.1,
    eval_tokens=256,
    eval_at=(0.5, 1.0),
    description="tiny model for tests and CI",
)

_KNOWN = {f.name for f in fields(RungConfig)} - {
    "name",
    "source",
    "cost_seconds",
    "cost_threads",
    "cost_flops",
}


def rung_from_dict(name: str, data: dict[str, Any], *, source: str = "") -> RungConfig:
    """Build a rung from a parsed TOML table; unknown keys are an error (a typo would be silent)."""
    data = dict(data)
    cost = data.pop("cost", {}) or {}
    if not isinstance(cost, dict):
        raise MixoptError(f"proxy rung {name!r} ({source}): cost is {cost!r}; give a [cost] table (seconds, "
                          "threads, flops)")
    unknown = sorted(set(data) - _KNOWN)
    if unknown:
        raise MixoptError(
            f"proxy rung {name!r} ({source}): unknown key(s) {', '.join(unknown)}; "
            f"known keys are {', '.join(sorted(_KNOWN))} and a [cost] table"
        )
    # named as a model config names them (Python's "__init__() missing 6 required keyword-only
    # arguments" had been the line, a sweep)
    missing = sorted(f.name for f in fields(RungConfig)
                     if f.default is MISSING and f.default_factory is MISSING
                     and f.name not in ("name", "source") and f.name not in data)
    if missing:
        raise MixoptError(f"proxy rung {name!r} ({source}): missing key(s) {', '.join(missing)}")
    types = field_types(RungConfig)
    data = check_field_types(f"proxy rung {name!r} ({source})", data, types)
    if "eval_at" in data:
        data["eval_at"] = tuple(data["eval_at"])
    bad = sorted(f"cost_{k}" for k in set(cost) - {"seconds", "threads", "flops"})
    if bad:
        raise MixoptError(
            f"proxy rung {name!r} ({source}): unknown [cost] key(s) {bad}; use seconds, threads, flops"
        )
    cost = check_field_types(f"proxy rung {name!r} ({source}): [cost]", cost,
                             {k.removeprefix("cost_"): t for k, t in types.items() if k.startswith("cost_")})
    extra = {f"cost_{k}": v for k, v in cost.items()}
    try:
        return RungConfig(name=name, source=source, **data, **extra)
    except TypeError as exc:
        raise MixoptError(f"proxy rung {name!r} ({source}): {exc}") from exc


def load_rung(name: str | RungConfig) -> RungConfig:
    """The rung ``name`` (``debug``, a recipe in ``proxies/``, or a path to a .toml file)."""
    if isinstance(name, RungConfig):
        return name
    if name == DEBUG.name:
        return DEBUG
    path = paths.find_recipe("proxies", name)
    if path is None:
        paths.check_recipe_path(name, "proxy rung")
        known = ", ".join(available_rungs())  # as `proxy rungs` lists them: the debug rung is for tests
        raise MixoptError(f"proxy rung {name!r} is unknown; known rungs: {known} (or give a path to a .toml)")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError) as exc:
        raise MixoptError(f"cannot read proxy rung {path}: {exc}") from None
    return rung_from_dict(Path(path).stem, data, source=str(path))


def warn_if_local(name: str) -> None:
    """Say so when the rung ``name``, looked up by name, is the current folder's ``proxies/`` copy of
    a shipped rung that differs from it (`search` said so; `proxy train` and `proxy rungs`, and
    `corpus build`'s check against the ladder, had used it silently: a docs audit)."""
    path = None if name == DEBUG.name else paths.find_recipe("proxies", name)
    if path is not None and path.stem == name:
        paths.warn_if_overriding("proxies", path, "proxy rung")


def rung_hash(rung: str) -> str:
    """Hash of what a proxy rung trains (shape, tokens, optimiser): a changed rung is another fidelity.

    Raises:
        MixoptError: the rung is unknown (before any trial runs).
    """
    spec = asdict(load_rung(rung))
    for k in ("name", "source", "description", "cost_seconds", "cost_threads", "cost_flops"):
        spec.pop(k, None)
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:16]


def imported_size(rung: Any, params: Any) -> tuple[float | None, str | None]:
    """The model size of runs imported from tables with ``--fidelity rung=…,params=…``, and what to
    say of it: their ``params``; else the size of mixopt's rung of that name, said to be assumed (a
    user's "m" is not mixopt's 5M-parameter rung); else None, said to be unknown."""
    how = "give it with `mixopt runs import … --fidelity rung=NAME,params=N`"
    if params is not None:
        try:  # checked at import since 2026-12-07; an older import may hold text ("5M")
            size = float(params)
        except (TypeError, ValueError):
            size = math.nan
        if not (math.isfinite(size) and size > 0):
            return None, f"imported runs' params={params!r} is no model size; {how}"
        return size, None
    if rung is not None:
        try:
            size = float(load_rung(str(rung)).non_embedding_params())
        except MixoptError:
            return None, (f"the model size of imported runs of rung {rung!r} is unknown (no params, and "
                          f"{rung!r} is no proxy rung of mixopt's); {how}")
        return size, (f"imported runs of rung {rung!r} are taken at the size of mixopt's rung {rung} "
                      f"({size:.3g} non-embedding params), as no params were given; if they are another "
                      f"size, {how}")
    return None, f"the model size of imported runs without a rung or params is unknown; {how}"


def available_rungs() -> list[str]:
    """Rung names found in ``proxies/`` (sorted by name; :func:`ladder` orders them by cost)."""
    return paths.available_recipes("proxies")


def ladder() -> list[RungConfig]:
    """Every rung in ``proxies/``, ordered by training FLOPs. A file that is no rung (a TOML of
    something else in ``./proxies/``) is left out with a warning: it had hidden the whole ladder
    from `proxy rungs` (a QA pass), and failed a corpus build's check of its domains after the build."""
    good = []
    for name in available_rungs():
        warn_if_local(name)
        try:
            good.append(load_rung(name))
        except MixoptError as exc:
            warn(f"left out of the ladder: {exc}")
    return sorted(good, key=lambda r: r.train_flops())
