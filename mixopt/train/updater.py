"""Online mixing: objects that change the domain weights while the final model trains.

The trainer calls a :class:`WeightUpdater` every ``every`` optimizer steps with an
:class:`Observation` and draws the following batches with the weights it returns. Where ``every``
divides the run's steps, the last call comes at the last step, though no batch follows it: an
updater that keeps a running result (DoReMi's average of its weights) then sees the whole run;
otherwise the steps after its last call are not shown to it. It always sees
per-domain training losses and tokens over the last ``every`` steps; what else it asks for:

- ``wants_grads``: each domain's gradient at the current parameters, on a probe batch of
  ``grad_batch`` sequences of that domain (every domain with training data, whatever the last
  batch held; drawn with its own generator, so the training stream is the same with or without),
  over the parameters :meth:`WeightUpdater.grad_param` keeps (all by default; DGA-style methods
  that look at a few layers keep memory to those);
- ``wants_eval``: each domain's held-out loss at the current parameters, on the first
  ``eval_windows`` windows of its validation split (Aioli-style methods fit on held-out losses);
- ``wants_batch``: the last micro-batch itself (token windows and their domains) with each
  sequence's training loss, for methods that score the same examples with a model of their own
  (DoReMi's excess loss against a reference model).

Online methods (DoReMi, Aioli, DGA) implement this interface; the trainer does not change when they
arrive. Two real updaters ship:

- :class:`ScheduleUpdater`: a fixed piecewise-constant schedule (the mixture JSON's schedule, or
  its own), applied at the updater's granularity;
- :class:`LossReweighter`: multiplicative weights on the training loss (online data mixing in
  the spirit of Albalak et al. 2023): domains whose loss stays high get more weight,
  ``w ∝ w_prev^(1-γ) · exp(η · (L_d − mean L))``, mixed with ``ε`` of the initial weights so that
  no domain starves.

Updaters are made by name with :func:`make_updater` (``schedule``, ``loss``, or
``package.module:factory`` for a user's own), with ``key=value`` parameters.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from numbers import Real
from typing import Any

import numpy as np
import torch

from mixopt.errors import MixoptError
from mixopt.mixture import check_domains


@dataclass(frozen=True)
class Observation:
    """What an updater sees at an update.

    Attributes:
        step: optimizer steps done so far.
        total_steps: steps of the whole run.
        domains: domain names, the order of every array.
        weights: (n,) weights in force during the window.
        losses: (n,) mean training cross-entropy per domain over the window (NaN: no tokens).
        tokens: (n,) training tokens per domain over the window.
        grads: domain → flattened gradient of that domain's mean loss on its probe batch, over the
            parameters ``grad_param`` keeps in ``model.named_parameters()`` order, for every domain
            with training data; None unless the updater sets ``wants_grads``.
        eval_losses: (n,) held-out mean loss per domain (NaN: no validation data); None unless
            ``wants_eval``.
        batch: (B, T + 1) token windows of the step's last micro-batch; ``batch_domains`` (B,) their
            domain indices; ``seq_losses`` (B,) each sequence's mean loss at the parameters after the
            step that trained on it (in eval mode; DoReMi scores its batch before the step). None unless
            ``wants_batch``.
    """

    step: int
    total_steps: int
    domains: tuple[str, ...]
    weights: np.ndarray
    losses: np.ndarray
    tokens: np.ndarray
    grads: dict[str, torch.Tensor] | None = None
    eval_losses: np.ndarray | None = None
    batch: np.ndarray | None = None
    batch_domains: np.ndarray | None = None
    seq_losses: np.ndarray | None = None

    @property
    def fraction(self) -> float:
        return self.step / self.total_steps if self.total_steps else 1.0


class WeightUpdater(ABC):
    """Changes the mixture weights during training. Subclasses set ``name`` and implement update."""

    name: str = "updater"
    every: int = 100
    wants_grads: bool = False
    grad_batch: int = 4  # sequences of each domain in the gradient probe
    wants_eval: bool = False
    eval_windows: int = 8  # validation windows of each domain for eval_losses
    wants_batch: bool = False
    fingerprint_name: str | None = None  # the name a checkpoint records, when not ``name``

    _auto_named: bool = False  # ``name`` was set from the class name, not given

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if "name" in cls.__dict__:
            cls.fingerprint_name = None
            cls._auto_named = False
        elif cls.name == WeightUpdater.name or cls._auto_named:
            # errors then say "updater MyUpdater", not "updater updater"; a subclass of such a class
            # gets its own class's name (it had taken its parent's, in errors and output folders)
            cls.name = cls.__name__
            cls._auto_named = True
            cls.fingerprint_name = WeightUpdater.name  # checkpoints written before this keep resuming

    def grad_param(self, name: str, param: torch.nn.Parameter) -> bool:
        """Whether ``grads`` covers this parameter (``model.named_parameters()`` names, e.g.
        ``embed.weight``, ``blocks.1.attn.qkv.weight``, ``blocks.1.ffn.router.weight``)."""
        return param.requires_grad

    def start(self, domains: Sequence[str], weights: np.ndarray, total_steps: int) -> None:  # noqa: B027
        """Called once before training with the mixture's initial weights (override to keep them)."""

    @abstractmethod
    def update(self, obs: Observation) -> np.ndarray | None:
        """New weights (n,), ≥ 0, summing to 1; or None to keep the current ones."""

    def params(self) -> dict[str, Any]:
        """The parameters that define this updater (saved with the run, compared on resume)."""
        return {"every": self.every}

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume exactly (plain Python / numpy values)."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:  # noqa: B027
        """Restore what :meth:`state_dict` returned."""


def check_weights(w: Any, n: int, where: str) -> np.ndarray:
    """Validate an updater's output: (n,) finite, ≥ 0, summing to 1 within 1e-6 (then renormalised)."""
    arr = np.asarray(w, dtype=np.float64)
    if arr.shape != (n,):
        raise MixoptError(f"{where} returned weights of shape {arr.shape}; expected ({n},), one per domain")
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise MixoptError(f"{where} returned weights that are negative or not finite: {arr.tolist()}")
    total = float(arr.sum())
    if abs(total - 1.0) > 1e-6:
        raise MixoptError(f"{where} returned weights summing to {total:.6g}, not 1")
    return arr / total


def _every(every: object, who: str) -> int:
    """``every`` as a step count: a whole number ≥ 1 (2.5, inf, True or "abc" are refused, not cut;
    20.0 and numpy's integers are taken)."""
    ok = isinstance(every, Real) and not isinstance(every, bool) and math.isfinite(every)
    if not ok or every != int(every) or every < 1:
        raise MixoptError(f"updater {who!r}: every={every!r} must be a whole number of steps ≥ 1")
    return int(every)


class ScheduleUpdater(WeightUpdater):
    """Piecewise-constant weights by training fraction: ``[(until, {domain: weight}), ...]``.

    With no schedule of its own it follows the mixture JSON's schedule (or its constant weights).
    """

    name = "schedule"

    def __init__(
        self, schedule: Sequence[tuple[float, Mapping[str, float]]] | None = None, *, every: int = 10
    ) -> None:
        self.schedule = [(float(u), dict(w)) for u, w in (schedule or [])]
        ends = [u for u, _ in self.schedule]
        if any(not a < b for a, b in zip([0.0, *ends], ends, strict=False)):
            # weights_at takes the first phase not yet ended: an unsorted list had silently skipped phases
            raise MixoptError(f"updater 'schedule': phase ends {ends} must increase strictly from 0; "
                              "give the phases in training order")
        self.every = _every(every, "schedule")
        self._domains: tuple[str, ...] = ()
        self._initial: np.ndarray | None = None

    def start(self, domains: Sequence[str], weights: np.ndarray, total_steps: int) -> None:
        self._domains = tuple(domains)
        self._initial = np.asarray(weights, dtype=np.float64)
        for i, (_, w) in enumerate(self.schedule, start=1):  # before training, not at the phase's update
            check_domains(w, self._domains, where=f"updater 'schedule' phase {i}")

    def weights_at(self, fraction: float) -> np.ndarray | None:
        for until, w in self.schedule:
            if fraction < until:
                return np.array([float(w.get(d, 0.0)) for d in self._domains])
        if self.schedule:
            return np.array([float(self.schedule[-1][1].get(d, 0.0)) for d in self._domains])
        return None

    def update(self, obs: Observation) -> np.ndarray | None:
        return self.weights_at(obs.fraction)

    def params(self) -> dict[str, Any]:
        return {"every": self.every, "schedule": [[u, w] for u, w in self.schedule]}


_LOG_MAX = 1e300  # the log-weights' range: far inside float range, so their differences stay finite


class LossReweighter(WeightUpdater):
    """Multiplicative weights on per-domain training loss (see the module doc)."""

    name = "loss"

    def __init__(
        self, *, every: int = 20, eta: float = 1.0, decay: float = 0.5, epsilon: float = 0.1
    ) -> None:
        given = {"every": every, "eta": eta, "decay": decay, "epsilon": epsilon}
        bad = [f"{k}={v!r}" for k, v in given.items() if type(v) not in (int, float)]
        if bad:
            raise MixoptError(f"loss updater: {', '.join(bad)} must be a number")
        if not (eta >= 0 and 0 <= decay <= 1 and 0 <= epsilon <= 1 and math.isfinite(eta)):
            raise MixoptError("loss updater: need eta ≥ 0, 0 ≤ decay ≤ 1, 0 ≤ epsilon ≤ 1")
        self.every = _every(every, "loss")
        self.eta, self.decay, self.epsilon = float(eta), float(decay), float(epsilon)
        self._initial: np.ndarray | None = None
        self._log_w: np.ndarray | None = None

    def start(self, domains: Sequence[str], weights: np.ndarray, total_steps: int) -> None:
        self._initial = np.asarray(weights, dtype=np.float64)
        self._log_w = np.log(np.maximum(self._initial, 1e-12))

    def update(self, obs: Observation) -> np.ndarray | None:
        assert self._initial is not None and self._log_w is not None, "start() was not called"
        seen = np.isfinite(obs.losses) & (self._initial > 0)
        if not seen.any():
            return None
        adv = np.zeros_like(obs.losses)
        live = self._initial > 0
        losses = obs.losses[seen]
        scale = float(np.abs(losses).max()) or 1.0
        with np.errstate(over="ignore", invalid="ignore"):
            # the mean of scaled losses: their sum overflowed near 1e308, and every advantage then
            # became the same -inf, which levelled the weights instead of favouring the worst domain
            adv[seen] = losses - scale * float(np.mean(losses / scale))
            log_w = (1 - self.decay) * self._log_w + self.eta * adv
        # An eta or losses near 1e308 overflowed to NaN weights, which stopped training with no fix
        # named: the log-weights saturate instead, and are shifted to a maximum of 0 (the softmax
        # ignores a common shift), so they never grow past float range over many updates either.
        log_w = np.clip(np.nan_to_num(log_w, nan=0.0), -_LOG_MAX, _LOG_MAX)
        self._log_w = log_w - log_w[live].max()
        z = np.where(live, self._log_w, -np.inf)
        w = np.exp(z - z[live].max())
        w /= w.sum()
        return (1 - self.epsilon) * w + self.epsilon * self._initial

    def params(self) -> dict[str, Any]:
        return {"every": self.every, "eta": self.eta, "decay": self.decay, "epsilon": self.epsilon}

    def state_dict(self) -> dict[str, Any]:
        return {"log_w": None if self._log_w is None else self._log_w.tolist()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("log_w") is not None:
            self._log_w = np.asarray(state["log_w"], dtype=np.float64)


UPDATERS: dict[str, type[WeightUpdater]] = {"schedule": ScheduleUpdater, "loss": LossReweighter}


def _parse_value(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def make_updater(spec: str | WeightUpdater | None) -> WeightUpdater | None:
    """An updater from ``name[:key=value,...]``; name is ``schedule``, ``loss`` or ``module:factory``."""
    if spec is None:
        return None
    if isinstance(spec, WeightUpdater):  # an object built in Python: the same checks as a spec's
        return _checked(spec, spec.name)
    if not isinstance(spec, str):
        raise MixoptError(f"the updater is a {type(spec).__name__}; give a WeightUpdater (a subclass of "
                          "mixopt.train.updater.WeightUpdater) or a spec such as 'loss:every=20'")
    text = spec.strip()
    head, sep, tail = text.rpartition(":")
    target, params = (head, tail) if sep and ("=" in tail or head in UPDATERS) else (text, "")
    kwargs: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in params.split(","))):
        key, sep, val = part.partition("=")
        if not sep:
            raise MixoptError(f"updater {spec!r}: parameter {part!r} is not key=value")
        if key.strip() in kwargs:  # the last had won without a word
            raise MixoptError(f"updater {spec!r} gives {key.strip()} twice; give it once")
        kwargs[key.strip()] = _parse_value(val.strip())
    if target in UPDATERS:
        factory: Any = UPDATERS[target]
    elif ":" in target:
        module, _, attr = target.partition(":")
        from mixopt.evaluator import load_user_object

        factory = load_user_object(module, attr, "updater")
    else:
        raise MixoptError(
            f"updater {target!r} is unknown; use one of {', '.join(UPDATERS)} or module:factory"
        )
    try:
        updater = factory(**kwargs)
    except (TypeError, ValueError) as exc:  # unknown keyword, or a value of the wrong kind
        raise MixoptError(f"updater {target!r}: {exc}; check the parameters' names and values") from exc
    if not isinstance(updater, WeightUpdater):
        raise MixoptError(f"updater {target!r} did not return a WeightUpdater")
    return _checked(updater, target)


def _checked(updater: WeightUpdater, who: str) -> WeightUpdater:
    # every=0 had ended training with a ZeroDivisionError, every=2.5 had called update at step 5;
    # the one check the built-in updaters' own parameters get
    every = _every(updater.every, who)
    if type(updater.every) is not int:  # 20.0 or a numpy integer: the step count the trainer's % wants
        updater.every = every
    return updater
