"""Nested use of the laws across scale (Data Mixing Laws' pipeline, ``--fidelity-law``).

From proxy runs of the same mixtures at several rungs, each with losses at several checkpoints:

1. step law per run (:func:`~mixopt.fitters.scaling.fit_power_law`, exponent shared by the runs of
   one rung and metric) → each run's loss at ``target_tokens`` training tokens. Where the runs'
   learning-rate schedule is known (mixopt's proxies), the law's scale is the schedule's forward
   area and it has an annealing term (:mod:`mixopt.schedule`), and the target is a run of
   ``target_tokens`` on the same schedule stretched: a cosine run's middle checkpoint has not
   annealed as a shorter run would have. Otherwise the scale is tokens;
2. size law per mixture and metric across the rungs (one exponent shared by every mixture and
   metric: the exponent belongs to the model family, and 2–3 rungs give a curve too few points to
   fit one per metric) → each mixture's loss at ``target_size`` non-embedding parameters;
3. these predictions are the targets of a mixing law (or any fitter) over the mixtures, which is
   then solved for the target scale.

Steps 1 and 2 are optional: without ``target_tokens`` the last checkpoint is used, without
``target_size`` the largest rung. Mixtures must appear at every rung used (a swarm sampled with
the same seed and space is the same at every rung); the others are dropped with a warning.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mixopt.errors import MixoptError, MixoptWarning, warn
from mixopt.fitters.scaling import BETA_RANGE, fit_power_law
from mixopt.schedule import lr_areas

# The step law in the learning rate's areas is evaluated up to this many steps of a proxy's schedule
# (1e15 steps of xs's 1,024 tokens is 1e18 tokens, beyond any training run).
MAX_STEPS = 10**15


@dataclass(frozen=True, kw_only=True)
class Curve:
    """One run: its mixture, its model size and its metrics at each checkpoint.

    Attributes:
        run_id: the run's id.
        weights: mixture weights (n_domains,).
        size: non-embedding parameters of its model.
        tokens: training tokens at each checkpoint (n_checkpoints,).
        losses: metric name → values at each checkpoint (n_checkpoints,).
        steps: optimizer steps at each checkpoint (None: not recorded).
        lr_schedule: tokens → the learning rates at 0-based steps of a run of that many tokens on
            this run's schedule (None: unknown; the step law then runs in tokens).
    """

    run_id: str
    weights: np.ndarray
    size: float
    tokens: np.ndarray
    losses: dict[str, np.ndarray]
    rung: str = ""  # the proxy rung's name, for the reports
    search_id: str | None = None  # the search that ran it (where its corpus's token counts are)
    steps: np.ndarray | None = None
    lr_schedule: Callable[[float], Callable[[np.ndarray], np.ndarray]] | None = None

    def areas(self, tokens: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(S1, S2) at this run's checkpoints, or at the end of a run of ``tokens`` on its schedule.

        Raises:
            MixoptError: ``tokens`` is less than one of this run's optimizer steps.
        """
        assert self.steps is not None and self.lr_schedule is not None
        per_step = float(self.tokens.max()) / float(self.steps.max())
        if tokens is None:
            return lr_areas(self.lr_schedule(float(self.tokens.max())), int(self.steps.max()), self.steps)
        n = int(tokens // per_step)
        if n < 1:
            raise MixoptError(f"--target-tokens {tokens:g} is less than one optimizer step of run "
                              f"{self.run_id} ({per_step:g} tokens)")
        if n > MAX_STEPS:
            raise MixoptError(f"--target-tokens {tokens:g} is {n:.3g} optimizer steps of run {self.run_id}'s "
                              f"schedule ({per_step:g} tokens each); the step law is not carried beyond "
                              f"{MAX_STEPS:.0e} steps: give fewer tokens")
        return lr_areas(self.lr_schedule(float(tokens)), n, np.array([n]))


@dataclass(frozen=True, kw_only=True)
class ScalePrediction:
    """Each mixture's metrics predicted at the target scale.

    Attributes:
        X: mixtures (n_mixtures, n_domains); Y: predictions (n_mixtures, n_metrics).
        metrics: metric names (columns of Y).
        sizes: the rungs' sizes used; run_ids: the runs behind each mixture.
        laws: exponents and residuals of every step and size law fitted.
    """

    X: np.ndarray
    Y: np.ndarray
    metrics: list[str]
    sizes: list[float]
    run_ids: list[list[str]]
    laws: dict[str, Any] = field(default_factory=dict)
    nonpositive: dict[str, int] = field(default_factory=dict)  # metric → runs predicted ≤ 0 (see below)
    # the fitted laws themselves, for plots: "step" → {(size, metric): (law, its runs, annealed)},
    # "size" → (law, mixture keys, sizes, the values it was fitted on (n_sizes, n_mix, n_metrics))
    fits: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


def mixture_key(w: np.ndarray) -> tuple[float, ...]:
    return tuple(np.round(np.asarray(w, dtype=float), 6))


def _check_metrics(curves: Sequence[Curve], metrics: Sequence[str]) -> list[str]:
    if not curves:
        raise MixoptError("no runs with checkpoint histories to extrapolate from; run proxies first")
    for c in curves:
        missing = [m for m in metrics if m not in c.losses or not np.isfinite(c.losses[m]).any()]
        if missing:
            raise MixoptError(
                f"run {c.run_id} has no history of {', '.join(missing)}; leave it out or "
                "choose metrics every run recorded"
            )
    return list(metrics)


@dataclass(frozen=True, kw_only=True)
class Checkpoints:
    """Every checkpoint of one rung's runs as a row: what BiMix fits over mixtures and steps.

    Attributes:
        X: each row's mixture (n_rows, n_domains); tokens: its training tokens (n_rows,);
        Y: its metrics (n_rows, n_metrics); size: the rung's non-embedding parameters;
        run_ids: the runs behind the rows, one each.
    """

    X: np.ndarray
    tokens: np.ndarray
    Y: np.ndarray
    metrics: list[str]
    size: float
    run_ids: list[str]


def checkpoint_rows(curves: Sequence[Curve], metrics: Sequence[str]) -> Checkpoints:
    """The largest rung's checkpoints as rows (those at 0 tokens or missing a metric are left out).

    Raises:
        MixoptError: no curves, a metric missing from a run, an infinite value, or no checkpoint left.
    """
    metrics = _check_metrics(curves, metrics)
    size = max(float(c.size) for c in curves)
    X, tokens, Y, ids = [], [], [], []
    for c in curves:
        if float(c.size) != size:
            continue
        vals = np.column_stack([c.losses[m] for m in metrics])
        # a gap (NaN) is no row; an infinite loss is a run that blew up, refused as the step law refuses
        # it (a QA pass: bimix fitted around it, without a word)
        if np.isinf(vals).any():
            m = metrics[int(np.flatnonzero(np.isinf(vals).any(axis=0))[0])]
            raise MixoptError(f"run {c.run_id} has an infinite {m} at a checkpoint (a loss that blew up); "
                              "leave that run out")
        for t, v in zip(c.tokens, vals, strict=True):
            if t > 0 and np.all(np.isfinite(v)):
                X.append(c.weights)
                tokens.append(float(t))
                Y.append(v)
                ids.append(c.run_id)
    if not X:
        raise MixoptError(f"no checkpoint of the runs at {size:.3g} params has a finite value of every "
                          f"metric ({', '.join(metrics)}) after 0 tokens; nothing to fit")
    return Checkpoints(
        X=np.array(X, dtype=float).reshape(len(X), -1),
        tokens=np.array(tokens),
        Y=np.array(Y, dtype=float).reshape(len(Y), len(metrics)),
        metrics=metrics,
        size=size,
        run_ids=ids,
    )


def _nonpositive(Y: np.ndarray, metrics: Sequence[str], curves: Sequence[Curve]) -> dict[str, int]:
    """Metric → how many mixtures are predicted at or below 0, for the metrics every checkpoint
    measured above 0.

    A loss cannot fall below 0; a law that says so was carried past any floor its runs show (a
    step law with no bend, at a target far beyond them), and a mixture fitted on such values
    would be fitted on nothing real.
    """
    def measured_above_0(v: np.ndarray) -> bool:  # a table's gaps are no measurement
        v = np.asarray(v, dtype=float)
        return bool(np.all(v[~np.isnan(v)] > 0))

    return {m: int((Y[:, j] <= 0).sum()) for j, m in enumerate(metrics)
            if np.any(Y[:, j] <= 0) and all(measured_above_0(c.losses[m]) for c in curves)}


def _refuse_nonpositive(
    bad: Sequence[str], curves: Sequence[Curve], target_tokens: float | None, target_size: float | None,
) -> None:
    trained = max(float(np.max(c.tokens)) for c in curves)
    where = " and ".join(x for x in (
        f"{target_tokens:.3g} tokens ({target_tokens / trained:.3g}× the runs' {trained:.3g})"
        if target_tokens is not None else "",
        f"{target_size:.3g} params" if target_size is not None else "") if x)
    given = ", ".join(o for o, v in (("--target-tokens", target_tokens), ("--target-size", target_size))
                      if v is not None)
    raise MixoptError(
        f"the fitted laws predict a value ≤ 0 for {', '.join(bad[:3])}{', …' if len(bad) > 3 else ''} at "
        f"{where}, which every run measured above 0: the laws are carried past any floor their runs "
        f"show. Give a target nearer to the runs ({given}), or train the runs longer so the step law "
        "can find its floor"
    )


def predict_at_scale(
    curves: Sequence[Curve],
    metrics: Sequence[str],
    *,
    target_tokens: float | None = None,
    target_size: float | None = None,
    size_exponent: float | None = None,
    allow_nonpositive: bool = False,
) -> ScalePrediction:
    """Predict every mixture's ``metrics`` at (target_tokens, target_size); see the module doc.

    ``allow_nonpositive`` keeps predictions ≤ 0 of metrics measured above 0 (a benchmark scores
    them; ``nonpositive`` of the result counts them); otherwise they are refused.

    Raises:
        MixoptError: no curves, a metric missing from a run, one rung only with a target size,
            too few points for a law, or a prediction ≤ 0 of a metric every run measured above 0.
    """
    metrics = _check_metrics(curves, metrics)
    sizes = sorted({float(c.size) for c in curves})
    laws: dict[str, Any] = {"step": {}, "size": {}}
    fits: dict[str, Any] = {"step": {}}
    # 1. each run's loss at the target tokens
    at_tokens: dict[str, np.ndarray] = {}
    for size in sizes:
        group = [c for c in curves if c.size == size]
        vals = np.empty((len(group), len(metrics)))
        flat: list[str] = []  # metrics whose step law found no floor (a run's E held at 0, or β at its bound)
        annealed = target_tokens is not None and all(
            c.steps is not None and c.lr_schedule is not None for c in group
        )
        if annealed:
            areas = [c.areas() for c in group]
            ends = [c.areas(float(target_tokens)) for c in group]  # each run's target: one point
            target_areas = tuple(np.array([float(a[k][0]) for a in ends]) for k in (0, 1))
        for j, m in enumerate(metrics):
            if target_tokens is None:  # each run at its last checkpoint
                ends = [c.losses[m][int(np.argmax(c.tokens))] for c in group]
                # a loss that blew up is no gap: --target-tokens would not carry it anywhere (a QA pass)
                if blown := [c.run_id for c, v in zip(group, ends, strict=True) if np.isinf(v)]:
                    raise MixoptError(
                        f"run(s) {', '.join(blown[:5])}{' …' if len(blown) > 5 else ''} have an infinite {m} "
                        "at their last checkpoint (a loss that blew up); leave them out")
                if gaps := [c.run_id for c, v in zip(group, ends, strict=True) if not np.isfinite(v)]:
                    raise MixoptError(
                        f"run(s) {', '.join(gaps[:5])}{' …' if len(gaps) > 5 else ''} have no finite {m} at "
                        "their last checkpoint, where the runs are compared: give --target-tokens (every run "
                        "is then carried to one count along its checkpoints), or leave them out")
                vals[:, j] = ends
                continue
            # a checkpoint without this metric (a table's gap) is no point of its curve; an infinite
            # value is a loss that blew up, and is refused below
            has = [~np.isnan(c.losses[m]) for c in group]
            ys = [c.losses[m][k] for c, k in zip(group, has, strict=True)]
            labels = [f"run {c.run_id}" for c in group]
            rungs = sorted({c.rung for c in group if c.rung and not c.rung.endswith(" params")})
            what = f"step law ({m}, {'rung ' + ', '.join(rungs) + ' of ' if rungs else ''}{size:.3g} params)"
            remedy = "record 3 or more checkpoints per run (the rung's eval_at fractions)"
            if annealed:
                law = fit_power_law([a[0][k] for a, k in zip(areas, has, strict=True)], ys,
                                    anneal=[a[1][k] for a, k in zip(areas, has, strict=True)], what=what,
                                    remedy=remedy, labels=labels)
                vals[:, j] = law.each(*target_areas)
            else:
                law = fit_power_law([c.tokens[k] for c, k in zip(group, has, strict=True)], ys, what=what,
                                    remedy=remedy, labels=labels)
                vals[:, j] = law.predict(float(target_tokens))
            fits["step"][(size, m)] = (law, group, annealed)
            laws["step"][f"{size:.6g}/{m}"] = {
                "beta": law.beta, "rms": law.rms, "scale": "lr-area" if annealed else "tokens",
                **({"C": law.C} if annealed else {}),
            }
            if law.beta <= 1.01 * BETA_RANGE[0] or np.any(np.abs(law.E) <= 1e-9):  # E at its bound
                flat.append(m)
        for c, v in zip(group, vals, strict=True):
            at_tokens[c.run_id] = v
        reach = float(target_tokens or 0) / max(float(c.tokens.max()) for c in group)
        if flat and reach > 2:
            warn(
                f"the step law of {len(flat)} of {len(metrics)} metrics ({', '.join(flat[:3])}"
                f"{', …' if len(flat) > 3 else ''}) at {size:.3g} params finds no floor in some runs' "
                f"checkpoints (their floor held at 0, or the exponent at its bound {BETA_RANGE[0]}): they do "
                f"not bend, so their loss at {reach:.3g}× the runs' tokens is their early fall carried on "
                "(on proxy runs 4× longer the step law erred by about 4%); train the runs longer, or check "
                "the prediction with --target-tokens nearer to them",
                MixoptWarning,
            )
    if target_size is not None and target_tokens is None:
        last = {float(c.size): float(np.max(c.tokens)) for c in curves}
        if max(last.values()) > 1.01 * min(last.values()):  # rungs whose budgets differ
            shown = ", ".join(f"{t:.3g}" for _, t in sorted(last.items()))
            warn(
                f"the rungs' last checkpoints are at different token counts ({shown}), so the size law "
                "mixes model size with data; give --target-tokens to compare every rung at one count",
                MixoptWarning,
            )
    # 2. each mixture across the rungs
    by_mix: dict[tuple[float, ...], dict[float, list[Curve]]] = {}
    for c in curves:
        by_mix.setdefault(mixture_key(c.weights), {}).setdefault(float(c.size), []).append(c)
    use_sizes = sizes if target_size is not None else sizes[-1:]
    complete = {k: v for k, v in by_mix.items() if all(s in v for s in use_sizes)}
    if len(complete) < len(by_mix):
        warn(
            f"{len(by_mix) - len(complete)} mixture(s) were not run at every rung used "
            f"({', '.join(f'{s:.3g}' for s in use_sizes)} params) and are left out",
            MixoptWarning,
        )
    if not complete:
        raise MixoptError(
            "no mixture was run at every rung; run the same swarm (same seed and space) at each rung"
        )
    keys = list(complete)
    # Repeated runs of a mixture at one rung (seeds) are averaged.
    per_size = {
        s: np.array([np.mean([at_tokens[c.run_id] for c in complete[k][s]], axis=0) for k in keys])
        for s in use_sizes
    }
    if target_size is None:
        Y = per_size[use_sizes[0]]
    else:
        if len(use_sizes) < 2:
            raise MixoptError(
                f"a size law needs runs at 2 or more rungs; found one ({use_sizes[0]:.3g} params). "
                "Run the swarm at another rung, or leave out the target size"
            )
        # One curve per (metric, mixture), all sharing β: with 2–3 rungs a curve has 2–3 points, and
        # an exponent per metric fitted on so few was unstable (it hit its bounds on the ladder).
        n_mix, n_met = len(keys), len(metrics)
        curves_y = [[per_size[s][i, j] for s in use_sizes] for j in range(n_met) for i in range(n_mix)]
        law = fit_power_law(
            [np.array(use_sizes)] * len(curves_y), curves_y, exponent=size_exponent, what="size law",
            remedy="run the swarm at a third rung, or fix the size law's exponent with --size-exponent "
                   "(Chinchilla's is 0.34)",
        )
        Y = law.predict(float(target_size)).reshape(n_met, n_mix).T
        fits["size"] = (law, keys, list(use_sizes), np.array([per_size[s] for s in use_sizes]))
        fitted = law.predict(np.array(use_sizes)).reshape(n_met, n_mix, len(use_sizes))
        for j, m in enumerate(metrics):
            resid = fitted[j] - np.array(curves_y[j * n_mix : (j + 1) * n_mix])
            laws["size"][m] = {"beta": law.beta, "rms": float(np.sqrt(np.mean(resid**2)))}
    nonpositive = _nonpositive(Y, metrics, curves)
    if nonpositive and not allow_nonpositive:
        _refuse_nonpositive(list(nonpositive), curves, target_tokens, target_size)
    run_ids = [[c.run_id for s in use_sizes for c in complete[k][s]] for k in keys]
    return ScalePrediction(
        X=np.array([complete[k][use_sizes[0]][0].weights for k in keys], dtype=float),
        Y=Y,
        metrics=metrics,
        sizes=use_sizes,
        run_ids=run_ids,
        laws=laws,
        nonpositive=nonpositive,
        fits=fits,
    )
