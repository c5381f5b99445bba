"""Mixture-search methods by name: which fitter and which proposer each uses.

A method is a fitter (None for ``random``) plus a proposer. Batch methods (every method of this
release) propose once after the swarm; sequential ones (Bayesian optimisation, later) propose after
every run. Baselines (uniform, natural, temperature) are not methods: see :mod:`mixopt.baselines`.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from mixopt.errors import MixoptError
from mixopt.fitters.registry import fitter_class, is_user_fitter, make_fitter
from mixopt.mixture import domain_groups
from mixopt.proposers import BestRunProposer, Proposal, TopKProposer
from mixopt.proposers.hold import propose_holding
from mixopt.space import SearchSpace

ProposerName = Literal["topk", "best_run", "exact", "entropy"]


@dataclass(frozen=True, kw_only=True)
class MethodSpec:
    """One method.

    Attributes:
        name: the name users pass to ``--method``.
        description: one line for help texts.
        fitter: registry name of the fitter, None for methods that fit nothing.
        proposer: ``"topk"`` (RegMix: average of the best predicted candidates), ``"best_run"``,
            ``"exact"`` (a convex solve of the fitted law; top-k for models without a convex form)
            or ``"entropy"`` (BiMix's training-free mixture of a corpus: no runs, no fit).
        sequential: proposes after every run (True) or once after the swarm (False).
    """

    name: str
    description: str
    fitter: str | None
    proposer: ProposerName
    sequential: bool = False

    @property
    def per_metric(self) -> bool:
        """Fits one law per metric of the objective and sums them (the functional laws, as their
        papers do, and ``auto``'s law candidates), rather than one model of the objective itself."""
        return self.proposer == "exact"

    def make_fitter(
        self,
        *,
        seed: int | None = None,
        domains: Sequence[str] | None = None,
        metrics: Mapping[str, float] | None = None,
        **params: Any,
    ) -> Any:
        """A new unfitted fitter (None for ``random``).

        ``seed`` sets ``random_state`` and ``domains`` sets ``groups`` (each domain's source, when
        the names are written ``source:topic``) for the fitters that take them. ``metrics`` (metric
        name → weight in the objective): a :meth:`per_metric` method fitted on more than one metric
        becomes a :class:`~mixopt.fitters.metricsum.MetricSum`, to be fitted on one column per
        metric (:func:`fit_target` picks the columns).
        """
        if self.fitter is None:
            if params:
                raise MixoptError(f"method {self.name!r} fits no model; it takes no fitter parameters")
            return None
        groups = domain_groups(domains) if domains is not None else None
        names = tuple(domains) if domains is not None else None
        if metrics is not None and len(metrics) == 1:
            params.setdefault("targets", tuple(metrics))
        several = metrics is not None and len(metrics) > 1 and self.per_metric
        if several and self.fitter == "auto":  # its laws per metric, the other candidates on the objective
            params.setdefault("metric_weights", tuple(metrics.values()))  # type: ignore[union-attr]
            params.setdefault("metric_names", tuple(metrics))  # type: ignore[arg-type]
        fitter = make_fitter(self.fitter, seed=seed, groups=groups, domains=names, **params)
        if several and self.fitter != "auto":
            from mixopt.fitters.metricsum import MetricSum

            return MetricSum(fitter, weights=tuple(metrics.values()), names=tuple(metrics))  # type: ignore[union-attr]
        return fitter

    @property
    def training_free(self) -> bool:
        """Proposes from the corpus alone (``entropy``): a search runs no swarm for it."""
        return self.proposer == "entropy"

    def min_runs(
        self, n_varying: int, *, targets: Sequence[str] | None = None, varying: Sequence[str] | None = None
    ) -> tuple[int, str]:
        """Runs the fitter needs over ``n_varying`` domains whose weight varies, and why: a law's
        parameter count per target (it refuses fewer), else the fewest its fit takes (``MIN_RUNS``).
        ``targets`` (the metrics fitted) and ``varying`` (those domains' names) refine a law's count
        (bimix fits a varying domain's own loss with 2)."""
        if self.training_free:
            return 0, f"{self.name} fits no runs"
        if self.fitter is None:
            return 1, f"{self.name} needs at least 1 run"
        fitter = make_fitter(self.fitter)
        least = int(getattr(fitter, "MIN_RUNS", 2))
        planned = getattr(fitter, "planned_n_params", None)
        n_params = planned(n_varying, targets, varying) if planned is not None else 0
        if n_params > least:
            return n_params, (f"{self.name} has {n_params} parameters per target over {n_varying} varying "
                              "domains")
        return least, f"{self.name} needs at least {least} runs"

    def kl_option(self, kl: float | None) -> dict[str, Any]:
        """``--kl`` as proposer options: ``{"kl": λ}``, ``{}`` when not given.

        Raises:
            MixoptError: λ < 0, or a method whose proposer has no KL term (only the exact solve has).
        """
        if kl is None:
            return {}
        if not kl >= 0:
            raise MixoptError(f"--kl {kl}: the KL weight must be ≥ 0 (0: no pull towards the prior)")
        if self.proposer != "exact":
            exact = [m for m in available_methods() if get_method(m).proposer == "exact"]
            raise MixoptError(
                f"--kl applies to the methods solved exactly ({', '.join(exact)}); "
                f"{self.name!r} proposes by {self.proposer.replace('_', ' ')}"
            )
        return {"kl": float(kl)}

    def make_proposer(self, *, seed: int | None = None, **params: Any) -> Any:
        """A new proposer; ``params`` are its options (n_candidates, k, ... for top-k)."""
        if self.training_free:
            raise MixoptError(
                f"{self.name} proposes from a corpus, not from runs: `mixopt entropy CORPUS --out "
                f"mixture.json`, or `mixopt search --corpus CORPUS --method {self.name}` to validate it"
            )
        if self.proposer == "best_run":
            if params:
                raise MixoptError(f"method {self.name!r} proposes the best run; it takes no proposer options")
            return BestRunProposer()
        if self.proposer == "exact":
            from mixopt.proposers.exact import ExactProposer

            if seed is not None:
                params.setdefault("random_state", seed)
            return ExactProposer(**params)  # top-k options go to its fallback
        valid = [p for p in inspect.signature(TopKProposer).parameters]
        unknown = sorted(set(params) - set(valid))
        if unknown:
            raise MixoptError(
                f"method {self.name!r}: unknown proposer option(s) {', '.join(unknown)}; "
                f"valid: {', '.join(valid)}"
            )
        if seed is not None:
            params.setdefault("random_state", seed)
        return TopKProposer(**params)

    def fit_propose(
        self,
        X: np.ndarray,
        y: np.ndarray,
        space: SearchSpace,
        *,
        seed: int = 0,
        fitter_params: dict[str, Any] | None = None,
        proposer_params: dict[str, Any] | None = None,
        metrics: Mapping[str, float] | None = None,
        Y: np.ndarray | None = None,
    ) -> tuple[Any, Proposal]:
        """Fit on runs (X, y) and propose a mixture inside ``space``: (fitted model or None, proposal).

        ``metrics`` (the objective's metric weights) with ``Y``, the runs' values of those metrics
        (n_runs, n_metrics): a :attr:`per_metric` method fits Y and predicts their weighted sum.
        """
        model = self.make_fitter(seed=seed, domains=space.domains, metrics=metrics if Y is not None else None,
                                 **(fitter_params or {}))
        proposer = self.make_proposer(seed=seed, **(proposer_params or {}))
        if model is None:
            proposal = proposer.propose_from_runs(X, y, space)  # type: ignore[union-attr]
        else:
            model.fit(X, fit_target(model, y, Y))
            proposal = propose_holding(proposer, model, X, space)
        return model, dataclasses.replace(proposal, method=self.name)


def fit_target(model: Any, y: np.ndarray, Y: np.ndarray | None) -> np.ndarray:
    """What ``model`` is fitted on: the per-metric columns ``Y`` for a per-metric sum, else ``y``."""
    from mixopt.fitters.metricsum import MetricSum

    if not isinstance(model, MetricSum) and getattr(model, "metric_weights", None) is None:
        return y
    if Y is None:
        raise MixoptError("a per-metric fit needs each run's value of every metric of the objective")
    return Y


METHODS: dict[str, MethodSpec] = {
    "regmix": MethodSpec(
        name="regmix", fitter="regmix", proposer="topk",
        description="RegMix: LightGBM on the swarm, average of the 128 best of 100k+ predicted candidates",
    ),
    "linear": MethodSpec(
        name="linear", fitter="linear", proposer="topk",
        description="RegMix's linear-regression baseline with the same top-k proposer",
    ),
    "random": MethodSpec(
        name="random", fitter=None, proposer="best_run",
        description="the best run of the swarm, as measured",
    ),
    "entropy": MethodSpec(
        name="entropy", fitter=None, proposer="entropy",
        description="BiMix's training-free mixture from each domain's conditional entropy (needs --corpus; "
                    "no swarm)",
    ),
    "mixing-law": MethodSpec(
        name="mixing-law", fitter="mixing-law", proposer="exact",
        description="Data Mixing Law c + k·exp(t·r), multi-start L-BFGS on a Huber loss, exact convex solve",
    ),
    "loglinear": MethodSpec(
        name="loglinear", fitter="loglinear", proposer="exact",
        description="Olmix's log-linear law exp(c) + exp(t·x), exact convex solve, KL pull to the prior",
    ),
    "bimix": MethodSpec(
        name="bimix", fitter="bimix", proposer="exact",
        description="BiMix: sum of power laws in each domain's share, exact convex solve",
    ),
    "gp": MethodSpec(
        name="gp", fitter="gp", proposer="topk",
        description="Gaussian process (BoTorch, RBF ARD), top-k of its mean, its std reported",
    ),
    "log-ridge": MethodSpec(
        name="log-ridge", fitter="log-ridge", proposer="topk",
        description="ridge on log weights (first-order BiMix), for swarms smaller than the laws need",
    ),
    "auto": MethodSpec(
        name="auto", fitter="auto", proposer="exact",
        description="the fitter with the best K-fold CV Spearman on the runs (or an average of the top 2-3)",
    ),
}


def available_methods() -> list[str]:
    """Names :func:`get_method` accepts."""
    return sorted(METHODS)


def get_method(name: str) -> MethodSpec:
    """The method called ``name``.

    Raises:
        MixoptError: unknown name; the message lists the valid ones.
    """
    if name not in METHODS and is_user_fitter(name):
        fitter_class(name)  # imported now: a bad name is refused before any run
        return MethodSpec(name=name, description=f"your regressor {name} with RegMix's top-k proposer",
                          fitter=name, proposer="topk")
    try:
        return METHODS[name]
    except KeyError:
        raise MixoptError(
            f"method {name!r} is unknown; choose one of {', '.join(available_methods())}, or name a "
            "scikit-learn regressor as module:Class (e.g. sklearn.ensemble:RandomForestRegressor)"
        ) from None
