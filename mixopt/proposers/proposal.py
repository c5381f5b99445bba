"""The result of a proposer: weights inside the space, with what the model expects of them."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mixopt.errors import MixoptError, listed
from mixopt.stats import normal_interval


@dataclass(frozen=True, kw_only=True)
class Proposal:
    """A proposed mixture.

    Attributes:
        weights: one weight per domain of the space, in its order; inside the space.
        predicted: objective the model predicts for ``weights`` (the measured value for a run).
        std: predictive standard deviation, where the model has one.
        interval: (low, high) predictive interval, where the model has one.
        method: name of the method that proposed it.
        info: proposer details (candidates scored, k, whether the average was projected, ...).
    """

    weights: np.ndarray
    predicted: float
    std: float | None = None
    interval: tuple[float, float] | None = None
    method: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    def as_dict(self, domains: tuple[str, ...] | list[str]) -> dict[str, Any]:
        """JSON-ready form with weights by domain name."""
        return {
            "weights": {d: float(w) for d, w in zip(domains, self.weights, strict=True)},
            "predicted": self.predicted,
            "std": self.std,
            "interval": list(self.interval) if self.interval is not None else None,
            "method": self.method,
            "info": self.info,
        }


def widen(prop: Proposal, cal: dict[str, float] | None, measured_by: str) -> tuple[Proposal, str | None]:
    """The proposal with its 95% interval widened by the sd scale a cross-validation measured
    (:func:`mixopt.fitters.cv.calibration`), where the model's sds came out too narrow on runs it
    did not see (past :data:`~mixopt.fitters.cv.ABOUT_RIGHT`), and the note that says so; never
    narrowed. ``measured_by`` names that cross-validation (``--cv 5``, "auto's cross-validation").

    A QA pass: a GP fitted on 32 runs had mean z² 3.7 on held-out runs; its "95%" interval held 77%."""
    import dataclasses

    from mixopt.fitters.cv import ABOUT_RIGHT

    if cal is None or prop.std is None or cal["sd_scale"] <= ABOUT_RIGHT:  # as calibration_line says
        return prop, None
    scale = cal["sd_scale"]
    note = (f"the model's sds were too narrow on the runs it did not see ({measured_by}: "
            f"{cal['within_95']:.0%} inside the 95% interval, mean z² {cal['mean_z2']:.2f}); the proposal's "
            f"interval is widened ×{scale:.2f} to match (sd_scale in the JSON; std stays the model's)")
    return dataclasses.replace(prop, interval=normal_interval(prop.predicted, prop.std * scale),
                               info={**prop.info, "sd_scale": scale}), note


def model_domains(model: Any) -> tuple[str, ...] | None:
    """The domain names a fitted model knows, in its column order, or None: sklearn's
    ``feature_names_in_`` (fitted on a DataFrame), else the ``domains`` a fitter was given (the laws,
    ``auto``), looked up through a per-metric wrapper's estimator."""
    for m in (model, getattr(model, "estimator_", None), getattr(model, "estimator", None)):
        for attr in ("feature_names_in_", "domains"):
            names = getattr(m, attr, None)
            if names is not None and len(names) == getattr(model, "n_features_in_", len(names)):
                return tuple(str(n) for n in names)
    return None


def check_space(model: Any, space: Any) -> None:
    """Refuse a space that is not the model's: another number of domains, or, where the model knows
    its domains' names, other names or the same names in another order. Weights are read by position,
    so a reordered space had the best domain's weight put on another (a library user's QA pass).

    Raises:
        MixoptError: the space does not match the model's domains.
    """
    fitted = getattr(model, "n_features_in_", space.n)
    if fitted != space.n:  # numpy's matmul error (or sklearn's) had been all a user saw
        raise MixoptError(f"the model was fitted on {fitted} domains and the space has {space.n} "
                          f"({', '.join(space.domains)}); propose in the space of its runs")
    names = model_domains(model)
    if names is None or names == tuple(space.domains):
        return
    if set(names) == set(space.domains):
        raise MixoptError(f"the space lists the model's domains in another order "
                          f"({', '.join(space.domains)}) than it was fitted on ({', '.join(names)}); weights "
                          "are read by position, so give the space's domains in the model's order")
    missing, extra = sorted(set(names) - set(space.domains)), sorted(set(space.domains) - set(names))
    raise MixoptError(f"the model was fitted on domains the space lacks ({', '.join(missing)}), and the "
                      f"space has domains the model was not fitted on ({', '.join(extra)}); propose in the "
                      "space of its runs")


def extrapolation_note(predicted: float | None, y: np.ndarray, method: str) -> str | None:
    """A note when a proposal's predicted objective lies further below the best run than the runs'
    whole spread: the model is then extrapolating beyond its data (linear-in-log laws do this on
    sparse swarms), and its prediction is not evidence; None otherwise (and for no prediction)."""
    y = np.asarray(y, dtype=float)
    y = y[np.isfinite(y)]
    if predicted is None or len(y) < 2 or not np.isfinite(predicted):
        return None
    best, spread = float(y.min()), float(np.ptp(y))
    gain = best - float(predicted)
    if spread <= 0 or gain <= spread:
        return None
    return (f"the {method} model predicts {predicted:.4g} for its proposal, {gain:.3g} below the best run "
            f"({best:.4g}): more than the runs' whole spread ({spread:.3g}), so it is extrapolating beyond "
            "its data; validate the mixture before using it, or bound the space (--max-weight, --min-weight)")


def beyond_runs_note(weights: np.ndarray, X: np.ndarray, domains: tuple[str, ...] | list[str],
                     method: str, fixed: Iterable[str] = ()) -> str | None:
    """A note naming the domains the proposal gives clearly more weight than any run had.

    No run says what such a weight does: the model extrapolates along that domain (Olmix's
    64-domain table has domains above 0 in one run of 512). "Clearly": over 1.5× the largest weight
    of the runs and at least 0.01 more. None when there is none.
    """
    X = np.asarray(X, dtype=float)
    if X.ndim != 2 or len(X) == 0:
        return None
    top = X.max(axis=0)
    w = np.asarray(weights, dtype=float)
    held = set(fixed)  # a weight --fix sets is the user's, not the model's reach
    over = [i for i in np.argsort(-(w - top))
            if w[i] > 1.5 * top[i] and w[i] - top[i] >= 0.01 and domains[i] not in held]
    if not over:
        return None
    named = listed([f"{domains[i]} {w[i]:.3g} (runs: at most {top[i]:.3g})" for i in over], 3)
    first = over[0]
    return (f"the proposal gives more weight than any run had to {named}: the {method} model "
            "extrapolates there; validate it, or cap those domains (e.g. --max-weight "
            f"{domains[first]}={top[first]:.3g})")


def _apart(a: float, b: float) -> tuple[str, str]:
    """``a`` and ``b`` with the fewest significant digits (5 or more) that tell them apart: at 5, a
    QA pass read "3.0526 against 3.0526" in a note that one is worse."""
    for digits in range(5, 17):
        if f"{a:.{digits}g}" != f"{b:.{digits}g}":
            break
    return f"{a:.{digits}g}", f"{b:.{digits}g}"


def worse_than_best_note(predicted: float | None, best_predicted: float | None, best_run: str,
                         method: str) -> str | None:
    """A note when the model predicts its own proposal worse than the best run (None otherwise).

    Top-k proposers average the k best of their sampled candidates, which can land between optima.
    """
    if predicted is None or best_predicted is None or not predicted > best_predicted + 1e-12:
        return None
    ours, theirs = _apart(predicted, best_predicted)
    return (f"the {method} proposal is predicted worse than the best run inside the constraints "
            f"({ours} against {theirs} for run {best_run}, by the same model); "
            "that run's mixture may be the better choice")


def misfit_note(fit_rms: float | None, runs_std: float | None, method: str) -> str | None:
    """A note when the model misses the runs it was fitted on: in-sample RMS error above half the
    runs' own spread (None otherwise)."""
    if fit_rms is None or not runs_std or not fit_rms > 0.5 * runs_std:
        return None
    return (f"the {method} model fits its own runs poorly: in-sample RMS error {fit_rms:.3g} against the "
            f"runs' spread (std) {runs_std:.3g}; its predictions are rough, try another method")


# Below this cross-validated Spearman a model ranks mixtures it did not see little better than chance.
POOR_RANKING = 0.5
RANKS = "ranks runs it did not see"  # the words of that note, by which a report finds it said


PROPOSAL_ADVICE = ("its proposal is a guess until validated (add runs, measure it with validation seeds, or "
                   "use another method)")


def ranking_note(spearman: float | None, method: str, folds: int | None = None,
                 advice: str = PROPOSAL_ADVICE) -> str | None:
    """A note when cross-validation says the model ranks held-out runs poorly (Spearman below
    :data:`POOR_RANKING`; None otherwise), ending in ``advice`` (of a proposal, by default). The
    in-sample misfit note cannot see this: a tree fits its own 32 runs closely while ranking new ones
    at 0.18 (a QA pass)."""
    if spearman is None or not math.isfinite(spearman) or spearman >= POOR_RANKING:
        return None
    where = f"{folds}-fold cross-validation" if folds else "cross-validation"
    return (f"{where}: the {method} model {RANKS} with Spearman {spearman:.2f}, little better than chance; "
            f"{advice}")


def kl_note(info: dict[str, Any], predicted: float | None, best: float | None, best_run: str) -> str | None:
    """The note for a proposal the KL term held predicted worse than the best run inside the
    constraints (None otherwise)."""
    kl = float(info.get("kl") or 0.0)
    if kl <= 0 or predicted is None or best is None or not predicted > best:
        return None
    ours, theirs = _apart(predicted, best)
    return (f"the proposal is predicted worse than the best run inside the constraints ({ours} "
            f"against {theirs} for run {best_run} by the same model): the KL term (λ = {kl:g}, as Olmix, "
            "in the objective's units) holds it near the prior mixture; --kl 0 gives the law's own optimum")


def unused_kl_note(info: dict[str, Any], kl: float | None, method: str) -> str | None:
    """The note for a ``--kl`` the proposal could not use: the fitted model (one ``auto`` chose, a
    tree ensemble) has no convex form, so the top-k sampler proposed, and it has no KL term."""
    if kl is None or not kl > 0 or "no convex form" not in str(info.get("solver", "")):
        return None
    chosen = next((r.get("name") for r in info.get("selection") or [] if r.get("chosen")), None)
    model = f"{chosen} ({method}'s choice)" if chosen else method
    return (f"--kl {kl:g} was not used: {model} has no convex form, so the proposal comes from the top-k "
            "sampler, which has no KL term; bound the weights with --max-weight/--min-weight instead")


def best_run_note(space: Any, X: np.ndarray, y: np.ndarray, run_ids: Sequence[str], *,
                  listed: bool = False) -> str | None:
    """Said when the best of the fitted runs is outside the constraints (reused or imported runs
    inform the fit wherever they lie, but only runs inside them are candidates): which is the best
    inside, or that none is. None when the best run is inside. ``listed``: the caller lists the best
    run among its baselines all the same (`fit`), marked as outside the constraints."""
    inside, top = space.best_row(X, y), int(np.argmin(y))
    if inside is None and listed:
        # `fit` keeps it as its best_run baseline: "not among the baselines" had contradicted the
        # report's table beside it (a QA pass)
        return (f"no run is inside the constraints: the best run, {run_ids[top]}, listed beside the "
                "proposal, is outside them (inside_constraints false): the proposal could not be it")
    if inside is None:
        # "compared with no measured run" read oddly under --fidelity-law, whose runs' values at the
        # target scale are carried there by laws, not measured
        return (f"no run is inside the constraints (the best, {run_ids[top]}, is not), so no run's mixture "
                "is among the baselines")
    if inside != top:
        return (f"the best run, {run_ids[top]} ({y[top]:.4g}), is outside the constraints; the best inside "
                f"them is {run_ids[inside]} ({y[inside]:.4g})")
    return None


def held_note(info: dict[str, Any]) -> str | None:
    """The note for a proposal whose solve held domains no run varied (None when it held none)."""
    held = info.get("held") or {}
    if not held:
        return None
    # a Dirichlet draw's 1.9e-89 is a weight of 0 to anyone reading it (a QA pass)
    which = ", ".join(f"{d} at {w:.4g}" if w > 1e-9 else f"{d} at 0" for d, w in held.items())
    return (f"held {which}: every run had that weight (or, past a bound, the bound is the nearest), so the "
            "fitted model cannot say whether another is better")


def tied_note(info: dict[str, Any], method: str) -> str | None:
    """A note when the top-k proposer's best candidates all share one prediction (a tree model's leaf):
    their average is then not ranked above other mixtures at that value (a QA pass saw the proposal,
    uniform and the best run all predicted at 2.8694, without a word)."""
    top, first = info.get("top_k_predicted_mean"), info.get("best_candidate_predicted")
    if top is None or first is None or not math.isclose(top, first, rel_tol=1e-12, abs_tol=1e-15):
        return None
    if info.get("top_k_spread", 0.0) <= 1e-6:  # one mixture (a corner every candidate was projected to)
        return None
    return (f"the {info.get('k', 'k')} best candidates the {method} model scored share one prediction "
            f"({first:.4g}): their average is the proposal, but the model does not rank it above other "
            "mixtures it gives that value (a tree's leaf); validate it, or use a smoother model "
            "(--method gp, or auto)")


def proposal_notes(
    prop: Proposal | Any, X: np.ndarray, y: np.ndarray, domains: tuple[str, ...] | list[str], method: str, *,
    fixed: Iterable[str] = (), kl: float | None = None, best: tuple[float | None, str] | None = None,
    say_worse: bool = True, fit_rms: float | None = None, runs_std: float | None = None,
    cv: tuple[float, int] | None = None,
) -> list[str]:
    """What a model's proposal carries in its mixture JSON, the same for ``fit --propose`` and ``search``.

    ``prop``: a :class:`Proposal`, or anything with its ``weights``, ``predicted`` and ``info`` (a
    search's candidate).
    ``best``: (predicted objective, run id) of the best run inside the constraints, where there is
    one; ``say_worse``: also say when the model rates that run above its proposal (a search that
    validates says so by measuring instead). ``fit_rms``/``runs_std``: the model's in-sample RMS
    error and the runs' spread; ``cv``: the cross-validated Spearman and its number of folds, where
    one was computed.
    """
    info = prop.info
    notes = [held_note(info), unused_kl_note(info, kl, method)]
    if best is not None:
        worse = worse_than_best_note(prop.predicted, *best, method) if say_worse else None
        notes.append(kl_note(info, prop.predicted, *best) or worse)
    if not info.get("constant_model"):  # a flat model's misfit is its flatness, said below
        notes += [misfit_note(fit_rms, runs_std, method), tied_note(info, method)]
        if cv is not None:
            notes.append(ranking_note(cv[0], method, cv[1]))
    else:
        notes.append(f"the {method} model predicts the same value for every candidate mixture (too few runs: "
                     f"{len(y)}); its proposal is arbitrary. Fit more runs (a search's --budget), or use "
                     "--method auto, which picks the method that ranks these runs best")
    notes += [extrapolation_note(prop.predicted, y, method),
              beyond_runs_note(prop.weights, X, domains, method, fixed=fixed)]
    return [n for n in notes if n]
