"""The objective: one number, lower is better, computed from a run's metrics.

Default: mean validation loss over all domains. Also a weighted mean over chosen domains, a single
target domain (or held-out set), and bits per byte instead of loss.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from mixopt.errors import MixoptError, MixoptWarning, warn

Metric = Literal["loss", "bpb"]


def refuse_partly_weighted(target: str, what: str) -> None:
    """Refuse a ``--target`` list that weights some names and not others: ``a=0.5,b`` had read ``b`` as
    1, giving ``a`` a third where its 0.5 more likely meant a half (a QA pass).

    Raises:
        MixoptError: naming the names without a weight, and both ways to write the list.
    """
    parts = [p.strip() for p in target.split(",") if p.strip()]
    bare = [p for p in parts if "=" not in p]
    if bare and len(bare) < len(parts):
        raise MixoptError(f"--target {target!r} weights some {what}s and not {', '.join(map(repr, bare))}; "
                          f"give every {what} a weight (the weights are relative), or none for their mean")


def names_the_mean(target: object) -> bool:
    """Whether ``--target`` is the word ``mean``: the mean over all domains (as `fit --target mean`)."""
    return isinstance(target, str) and target.strip() == "mean"


def normalised(weights: Mapping[str, float]) -> dict[str, float]:
    """``weights`` (≥ 0, some > 0) divided by their sum, each first by the largest: a=1e308,b=1e308
    had summed to inf and made every weight 0."""
    top = max(weights.values())
    total = sum(v / top for v in weights.values())
    return {k: v / top / total for k, v in weights.items()}


@dataclass(frozen=True, kw_only=True)
class Objective:
    """Weighted mean of ``<metric>/<domain>``; an empty ``weights`` means all domains equally.

    ``domains``: the domains whose metrics it reads, when they are not the mixture's: a search
    that reuses a mixture varies the group as one unit, and its runs still measure every member
    (:mod:`mixopt.reuse`). Empty: the domains each call is given; set, it stands in for the
    ``domains`` that :meth:`value`, :meth:`metric_weights` and :meth:`check_domains` are given.
    """

    metric: Metric = "loss"
    weights: Mapping[str, float] = field(default_factory=dict)
    domains: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "domains", tuple(self.domains))
        if self.metric not in ("loss", "bpb"):
            raise MixoptError(f"objective metric {self.metric!r} is unknown; use 'loss' or 'bpb'")
        for d, w in self.weights.items():
            if not (math.isfinite(w) and w >= 0):
                raise MixoptError(f"objective weight of {d!r} is {w}; it must be ≥ 0")
        if self.weights and sum(self.weights.values()) <= 0:
            raise MixoptError("objective weights are all zero; give at least one positive weight")

    @classmethod
    def parse(cls, target: str | None = None, metric: str = "loss", *, stored: bool = False) -> Objective:
        """Parse ``--target``: None or ``mean`` (all domains), ``d1,d2`` (their mean), ``d1=0.7,d2=0.3``.

        ``stored``: a stored search's target (its resume, its report), read as it was when it began;
        a list weighting some names and not others (``a=0.5,b``) is refused only when given anew."""
        if target is None or names_the_mean(target):  # `fit --target mean`'s word for it, taken here too
            return cls(metric=metric)  # type: ignore[arg-type]
        if not target.replace(",", "").strip():  # `--target ""` from a script whose variable was unset
            raise MixoptError(f"--target {target!r} names no domain; give d1,d2 or d1=0.7,d2=0.3, or leave "
                              "it out for the mean over all domains")
        weights: dict[str, float] = {}
        for part in target.split(","):
            part = part.strip()
            if not part:
                continue
            name = part.partition("=")[0].strip()
            if not name:  # it had been "unknown domain(s) ;" with the empty name unseen
                raise MixoptError(f"--target {target!r}: {part!r} has no domain name; give d1=0.7,d2=0.3")
            if name in weights:
                raise MixoptError(f"--target names {name!r} twice; give each domain once")
            if "=" in part:
                name, _, val = part.partition("=")
                try:
                    weights[name.strip()] = float(val)
                except ValueError as exc:
                    raise MixoptError(f"--target: weight {val!r} of {name!r} is not a number") from exc
            else:
                weights[part] = 1.0
        if not stored:
            refuse_partly_weighted(target, "domain")
        bad = [f"{d}={v:g}" for d, v in weights.items() if not (v >= 0 and math.isfinite(v))]
        if bad:
            raise MixoptError(f"--target: weights must be ≥ 0 and finite, got {', '.join(bad)}")
        if weights and not sum(weights.values()) > 0:
            raise MixoptError("--target: the weights are all 0; give at least one positive weight")
        # Weights are relative (d1=2,d2=1 is d1=2/3,d2=1/3): metric_weights normalises them.
        return cls(metric=metric, weights=weights)  # type: ignore[arg-type]

    @property
    def kind(self) -> str:
        if not self.weights:
            return f"mean_{self.metric}"
        if len(self.weights) == 1:
            return f"target_{self.metric}"
        return f"weighted_{self.metric}"

    @staticmethod
    def say_if_mean_is_a_domain(target: str | None, domains: Sequence[str]) -> None:
        """``--target mean`` is the mean over all domains: said where one of them is named ``mean``
        (a QA pass: it was taken silently), with the spelling that names that domain alone."""
        if names_the_mean(target) and "mean" in domains:
            warn("--target mean is the mean over all domains, not the domain named mean; give --target "
                 "mean=1 for that domain alone", MixoptWarning)

    def check_domains(self, domains: Sequence[str]) -> None:
        domains = self.domains or domains
        unknown = sorted(set(self.weights) - set(domains))
        if unknown:
            raise MixoptError(
                f"--target names unknown domain(s) {', '.join(unknown)}; domains are {', '.join(domains)}"
            )

    def metric_weights(self, domains: Sequence[str]) -> dict[str, float]:
        """Metric name → weight (summing to 1)."""
        domains = self.domains or domains
        self.check_domains(domains)
        w = dict(self.weights) if self.weights else {d: 1.0 for d in domains}
        return {f"{self.metric}/{d}": v for d, v in normalised(w).items() if w[d] > 0}

    def value(self, metrics: Mapping[str, float], domains: Sequence[str]) -> float:
        """The objective for one run; NaN if a needed metric is missing or not finite."""
        total = 0.0
        for name, w in self.metric_weights(domains).items():
            v = metrics.get(name)
            if v is None or not math.isfinite(float(v)):
                return math.nan
            total += w * float(v)
        return total

    def key(self) -> str:
        """A stable string: runs are reused across searches with the same objective key."""
        over = {"domains": list(self.domains)} if self.domains else {}  # without: the key as it was
        return json.dumps(
            {"metric": self.metric, "weights": dict(sorted(self.weights.items())), **over}, sort_keys=True
        )

    def as_dict(self) -> dict:
        return {"kind": self.kind, "metric": self.metric, "weights": dict(self.weights)}

    def describe(self) -> str:
        """``mean loss``, ``mean bpb``, ``loss of code, math`` or ``loss of code=0.7, math=0.3``
        (weights as given, relative)."""
        if not self.weights:
            return f"mean {self.metric}"
        equal = len(set(self.weights.values())) == 1
        parts = [d if equal else f"{d}={w:g}" for d, w in self.weights.items()]
        return f"{self.metric} of {', '.join(parts)}"

    @property
    def unit(self) -> str:
        return "bits per byte" if self.metric == "bpb" else "nats per token"


def per_domain_split(
    objective: Objective,
    per_domain: Mapping[str, float | None],
    predicted: float,
    sd: float | None,
    domains: Sequence[str],
) -> tuple[float, float | None] | None:
    """Do per-domain predictions, combined as ``objective`` combines domains, miss ``predicted``?

    Two fits of the same runs (one per domain, one of the objective) can disagree. Returns
    (the combination, how many ``sd`` apart, None without an sd) when they miss by more than 2 sd
    (0.5 % of ``predicted`` without an sd, or when that is larger), else None; also None when a
    domain the objective weighs has no per-domain prediction.
    """
    weights = objective.metric_weights(domains)
    prefix = f"{objective.metric}/"
    if any(per_domain.get(name.removeprefix(prefix)) is None for name in weights):
        return None
    combined = sum(w * float(per_domain[name.removeprefix(prefix)]) for name, w in weights.items())
    limit = max(2 * sd if sd else 0.0, 0.005 * abs(predicted))
    if abs(combined - predicted) <= limit:
        return None
    return combined, (abs(combined - predicted) / sd if sd else None)
