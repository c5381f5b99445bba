"""K-fold cross-validation of a fitter, and the accuracy figures mixopt reports.

Each fold's model is a fresh clone fitted on the other folds only; every run gets exactly one
out-of-fold prediction. Figures: Spearman and Pearson correlation (ranking is what a proposer
needs), mean absolute error and mean relative error ``mean(|pred - y| / |y|)``.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mixopt.errors import FewRunsWarning, MixoptError, MixoptWarning, TooFewRunsError
from mixopt.fitters.protocol import check_targets, predict_objective

log = logging.getLogger(__name__)

# Said wherever auto is cross-validated (fit --cv, report), since its two Spearmans differ.
AUTO_CV_NOTE = (
    "auto chooses its model again inside each fold (nested cross-validation): this scores the choice "
    "itself on runs it never saw, where auto's choice table scores each candidate on the runs the "
    "choice was made on, which flatters the one chosen"
)


SCORES = ("spearman", "pearson", "mae", "rel_error")  # the keys of score()'s figures


def score(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Spearman, Pearson, MAE and mean relative error of predictions (NaN where undefined)."""
    from scipy.stats import pearsonr, spearmanr

    y_true = np.asarray(y_true, dtype=float).ravel()
    y_pred = np.asarray(y_pred, dtype=float).ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true has {y_true.shape} values but y_pred {y_pred.shape}")
    err = np.abs(y_pred - y_true)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = float(np.mean(err / np.abs(y_true))) if len(y_true) else float("nan")
    constant = len(y_true) < 2 or np.ptp(y_true) == 0 or np.ptp(y_pred) == 0
    return {
        "spearman": float("nan") if constant else float(spearmanr(y_true, y_pred)[0]),
        "pearson": float("nan") if constant else float(pearsonr(y_true, y_pred)[0]),
        "mae": float(err.mean()) if len(err) else float("nan"),
        "rel_error": rel,
    }


@dataclass(frozen=True, kw_only=True)
class CVResult:
    """Out-of-fold predictions and their figures.

    Attributes:
        pred: out-of-fold prediction for every run, in input order, shape (n_runs,).
        folds: fold index of every run.
        metrics: :func:`score` of ``pred`` against y.
        fold_metrics: :func:`score` within each fold.
    """

    pred: np.ndarray
    folds: np.ndarray
    metrics: dict[str, float]
    fold_metrics: list[dict[str, float]] = field(default_factory=list)
    std: np.ndarray | None = None  # out-of-fold predictive sd, where every fold's model gives one
    calibration: dict[str, float] | None = None  # :func:`calibration` of ``std``

    def as_dict(self) -> dict[str, Any]:
        return {"k": len(self.fold_metrics), **self.metrics, "folds": self.fold_metrics,
                "calibration": self.calibration}


def calibration(y_true: np.ndarray, y_pred: np.ndarray, std: np.ndarray) -> dict[str, float] | None:
    """How well predictive sds held on runs the model did not see: the share of runs within ±1 sd
    (68% if calibrated) and within the ±1.96 sd of a 95% interval, the mean of z² (1 if calibrated),
    and ``sd_scale`` = √(mean z²), what the sds would need multiplying by. None without positive sds.

    A QA pass: a GP fitted on 32 runs had mean z² 3.7 on RegMix's and Olmix's tables (51% / 77%
    of held-out runs within ±1 / ±2 sd) and 0.9–1.2 with all their runs, unsaid either way."""
    y_true, y_pred, std = (np.asarray(a, dtype=float).ravel() for a in (y_true, y_pred, std))
    ok = np.isfinite(y_true) & np.isfinite(y_pred) & np.isfinite(std) & (std > 0)
    if not ok.any():
        return None
    z = (y_true[ok] - y_pred[ok]) / std[ok]
    mean_z2 = float(np.mean(z**2))
    return {"within_1sd": float(np.mean(np.abs(z) <= 1.0)), "within_95": float(np.mean(np.abs(z) <= 1.96)),
            "mean_z2": mean_z2, "sd_scale": float(np.sqrt(mean_z2)), "n": int(ok.sum())}


# sd scales within this factor of 1 are "about right": √(mean z²) over a few dozen held-out runs is
# that noisy (its standard error is about 1/√(2n)), and a proposal's interval is widened only past it.
ABOUT_RIGHT = 1.2


def calibration_line(cal: dict[str, float]) -> str:
    """One line of :func:`calibration`'s figures for a person, with what they would be if calibrated."""
    scale = cal["sd_scale"]
    verdict = ("the sds are too narrow" if scale > ABOUT_RIGHT else "the sds are too wide"
               if scale < 1 / ABOUT_RIGHT else "about right") + f": ×{scale:.2f} would calibrate them"
    return (f"  predictive sd, out of fold: {cal['within_1sd']:.0%} of runs within ±1 sd (68% if "
            f"calibrated), {cal['within_95']:.0%} within the 95% interval (95%), mean z² "
            f"{cal['mean_z2']:.2f} (1): {verdict}")


# Folds go to worker processes once the first took this long (a worker starts in seconds).
PARALLEL_AFTER_S = 2.0

_Fold = tuple[np.ndarray | None, np.ndarray | None, list[tuple[Any, ...]], MixoptError | None]


def _fit_fold(fitter: Any, X: np.ndarray, Y: np.ndarray, train: np.ndarray, test: np.ndarray) -> _Fold:
    """One fold: its out-of-fold predictions and predictive sds (None where the model has none), the
    warnings its fit gave (as warn_explicit's arguments, which a worker can send back) and the
    MixoptError it could not be fitted with."""
    from sklearn.base import clone

    std = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.simplefilter("ignore", FewRunsWarning)
        try:
            model = clone(fitter).fit(X[train], Y[train])
        except MixoptError as exc:
            pred, error = None, exc
        else:
            (pred, std), error = predict_objective(model, X[test], return_std=True), None
    said = [(str(w.message), w.category, w.filename, w.lineno) for w in caught]
    return pred, std, said, error


def _fit_folds(fitter: Any, X: np.ndarray, Y: np.ndarray,
               splits: list[tuple[np.ndarray, np.ndarray]]) -> Iterator[_Fold]:
    """Each fold's :func:`_fit_fold`, in order. The first is fitted here; when it took seconds the
    others go to worker processes, one per core (the numbers are the same: every fit is seeded and
    runs on one thread). Where workers cannot take a fold (a fitter that does not pickle, no
    process could start, a worker killed for memory), it is fitted here."""
    import pickle
    import time
    from concurrent.futures.process import BrokenProcessPool

    from mixopt.cpus import usable_cpus
    from mixopt.fitters import workers

    t = time.perf_counter()
    first = _fit_fold(fitter, X, Y, *splits[0])
    yield first
    rest = splits[1:]
    jobs = min(usable_cpus(), len(rest))
    if first[3] is not None or jobs < 2 or workers.in_worker() or time.perf_counter() - t < PARALLEL_AFTER_S:
        for train, test in rest:
            yield _fit_fold(fitter, X, Y, train, test)
        return
    cannot = (pickle.PicklingError, BrokenProcessPool, OSError)
    try:
        ex = workers.pool(jobs)
        futures = [ex.submit(_fit_fold, fitter, X, Y, train, test) for train, test in rest]
    except cannot as exc:
        log.info("cross-validation folds fitted in this process: no worker could take them (%s)", exc)
        futures, ex = [], None
    done = False
    try:
        for i, (train, test) in enumerate(rest):
            try:
                fold = futures[i].result() if futures else _fit_fold(fitter, X, Y, train, test)
            except cannot as exc:
                log.info("fold %d fitted in this process: its worker could not take it (%s)", i + 2, exc)
                fold = _fit_fold(fitter, X, Y, train, test)
            yield fold
        done = True
    finally:
        if not done and ex is not None:  # a stop, or an error the caller raised: no fold keeps running
            ex.shutdown(wait=False, kill_workers=True)


def _say_once(caught: list[warnings.WarningMessage], k: int) -> None:
    """Warn each fold's warnings once: the same message (but for its figures) from several folds
    is one warning that says in how many folds it came."""
    seen: dict[tuple[type, str], tuple[warnings.WarningMessage, int]] = {}
    for w in caught:
        key = (w.category, re.sub(r"[-+]?\d[\d.e+-]*", "#", str(w.message)))
        first, n = seen.get(key, (w, 0))
        seen[key] = (first, n + 1)
    for first, n in seen.values():
        if not issubclass(first.category, MixoptWarning):  # a library's own warning: as it was said
            warnings.warn_explicit(first.message, first.category, first.filename, first.lineno)
            continue
        # Said of a fold's training runs, not of the whole table (a domain above 0 in one run is
        # constant in the folds that hold that run out).
        where = f"in {n} of {k} training folds" if n > 1 else f"in 1 of {k} training folds"
        text = f"cross-validation, {where}: {first.message}"
        warnings.warn_explicit(text, first.category, first.filename, first.lineno)


def mixture_groups(X: np.ndarray) -> np.ndarray:
    """Each run's mixture as a group number: runs of one mixture (repeated seeds) share one. Weights
    equal to 9 decimals are one mixture, as a search's budget counts them."""
    if not len(X):
        return np.zeros(0, dtype=int)
    return np.unique(np.round(np.asarray(X, dtype=float), 9), axis=0, return_inverse=True)[1].ravel()


def distinct_mixtures(X: np.ndarray) -> int:
    """How many different mixtures the runs hold (repeats at other seeds count once): the most
    folds cross-validation can make, and the points a law's parameters are fitted on."""
    return int(mixture_groups(X).max()) + 1 if len(X) else 0


def kfold_splits(X: np.ndarray, k: int, seed: int,
                 groups: np.ndarray | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Shuffled K-fold (train, test) row indices that keep the runs of one mixture in one fold.

    A mixture run at several seeds split across folds is scored on its own twin: its held-out
    error is then a seed's noise, not the model's (a QA pass: copies of RegMix's runs raised the
    5-fold Spearman from 0.984 to 0.994). Runs of distinct mixtures split as scikit-learn's
    shuffled KFold does."""
    from sklearn.model_selection import KFold

    groups = mixture_groups(X) if groups is None else groups
    n_groups = int(groups.max()) + 1 if len(groups) else 0
    kf = KFold(n_splits=k, shuffle=True, random_state=seed)
    if n_groups == len(groups):  # no repeats: the folds as they always were
        return list(kf.split(X))
    return [(np.flatnonzero(np.isin(groups, tr)), np.flatnonzero(np.isin(groups, te)))
            for tr, te in kf.split(np.arange(n_groups))]


def cross_validate(fitter: Any, X: np.ndarray, y: np.ndarray, *, k: int = 5, seed: int = 0,
                   folds_option: str | None = "--cv") -> CVResult:
    """Shuffled K-fold cross-validation of ``fitter`` (cloned per fold; the original is not fitted),
    with the runs of one mixture in one fold (:func:`kfold_splits`).

    ``y``: the objective per run, or for a :class:`~mixopt.fitters.metricsum.MetricSum` its metric
    columns (n_runs, n_metrics), scored on the objective they make. ``folds_option``: the caller's
    option that sets ``k``, named when a fold has too few runs to fit (None: none to name).

    Raises:
        MixoptError: ``k`` < 2 or more folds than distinct mixtures, or a NaN or infinite target.
    """
    X = np.asarray(X, dtype=float)
    Y = np.asarray(y, dtype=float)
    if Y.ndim == 2 and hasattr(fitter, "objective"):  # metric columns (MetricSum): scored on the objective
        y = fitter.objective(Y)
    else:
        Y = y = Y.ravel()
    if len(X) != len(y):
        raise MixoptError(f"{len(X)} weight rows but {len(y)} metric values; give one metric per run")
    # Here, where the rows are the caller's: a fold's fitter counted them within its training runs,
    # and a user's regressor let out scikit-learn's ValueError.
    check_targets("cross-validation", y)
    groups = mixture_groups(X)
    sizes = np.bincount(groups) if len(X) else np.zeros(0, dtype=int)
    m = len(sizes)
    # the most folds: one run (or one mixture's runs) held out each, training on up to `most` runs
    loo = "leave-one-out" if m == len(y) else "leave-one-mixture-out"
    most = len(y) - int(sizes.min(initial=len(y)))
    upto = "" if m == len(y) else "up to "

    def asked(folds: int) -> str:  # as the caller's option spells it, where it has one
        return f"{folds_option} {folds}" if folds_option else f"{folds} folds"

    if m < 2:
        raise MixoptError(f"cross-validation needs runs of at least 2 distinct mixtures; these {len(y)} "
                          f"run(s) hold {m} (runs of one mixture share a fold)")
    if k < 2 or k > m:
        if m == len(y):
            raise MixoptError(f"{asked(k)} needs 2 ≤ K ≤ the number of runs ({len(y)}); {asked(len(y))} is "
                              "leave-one-out")
        raise MixoptError(f"{asked(k)} needs 2 ≤ K ≤ the number of distinct mixtures ({m} in {len(y)} runs: "
                          f"the runs of one mixture share a fold); {asked(m)} leaves one mixture out")
    pred = np.full(len(y), np.nan)
    std: np.ndarray | None = np.full(len(y), np.nan)
    folds = np.full(len(y), -1)
    per_fold = []
    caught: list[warnings.WarningMessage] = []
    splits = kfold_splits(X, k, seed, groups)
    with warnings.catch_warnings(record=True) as scoring:  # as before: scipy's, said once too
        warnings.simplefilter("always")
        for i, ((train, test), (fold_pred, fold_std, said, exc)) in enumerate(
                zip(splits, _fit_folds(fitter, X, Y, splits), strict=False)):
            caught += [warnings.WarningMessage(*w) for w in said]
            # A fitter that refuses one run only (linear, regmix, gp) is answered by the check of one
            # run below, which names the fold count that does; one that needs more says how many.
            if exc is not None and not (len(train) < 2 and isinstance(exc, TooFewRunsError)
                                        and exc.needed <= 2):
                # The fitter counts the fold's runs, not the table's: say which the user gave.
                # (only where the fold has too few runs: not for the data, a negative target for a log law)
                more, few = "", isinstance(exc, TooFewRunsError)
                if few and most < exc.needed:  # not even leave-one-out has enough
                    more = (f"; even {loo} trains on only {most}: add runs (at least "
                            f"{exc.needed + len(y) - most})")
                elif few and folds_option and k < m:
                    more = (f"; more folds train on more runs ({folds_option} {m}, {loo}, "
                            f"trains on {upto}{most})")
                raise MixoptError(
                    f"cross-validation: fold {i + 1} of {k} trains on {len(train)} of the {len(y)} runs "
                    f"and cannot be fitted: {exc}{more}"
                ) from exc
            if len(train) < 2:  # a model of one run fits it exactly: its figures would mean nothing
                how = (f"{asked(m)} ({loo}) trains on {upto}{most}" if most > 1
                       else "cross-validation needs at least 3 runs")
                raise MixoptError(f"{asked(k)} on {len(y)} runs fits fold {i + 1} on {len(train)} run; {how}")
            pred[test] = fold_pred
            if std is not None and fold_std is not None:
                std[test] = fold_std
            else:  # a fold's model without sds: none for the whole
                std = None
            folds[test] = i
            per_fold.append(score(y[test], pred[test]))
    _say_once(caught + scoring, k)
    return CVResult(pred=pred, folds=folds, metrics=score(y, pred), fold_metrics=per_fold, std=std,
                    calibration=None if std is None else calibration(y, pred, std))


def own_ranking(model: Any) -> tuple[float, int] | None:
    """(cross-validated Spearman, folds) a fitted model measured itself (``auto``'s selection), or None."""
    spearman = getattr(model, "cv_spearman_", None)
    return None if spearman is None else (float(spearman), int(model.cv_folds_))


def held_out_ranking(fitter: Any, X: np.ndarray, y: np.ndarray, *, fit_seconds: float, seed: int = 0,
                     k: int = 5, budget_s: float = 20.0) -> tuple[float, int] | None:
    """How well a fitted model ranks runs it did not see: (K-fold Spearman, K), for a search that
    measures nothing after its fit (the in-sample fit cannot tell overfitting). ``auto`` kept its own
    cross-validation; another model is cross-validated here when its ``k`` refits, at
    ``fit_seconds`` each, fit in ``budget_s`` and every fold trains on at least 5 distinct
    mixtures (None where not, or where a fold cannot be fitted)."""
    if (own := own_ranking(fitter)) is not None:
        return own
    n = distinct_mixtures(X)
    k = min(k, n)
    if k < 2 or n - -(-n // k) < 5 or fit_seconds * k > budget_s:
        return None
    with warnings.catch_warnings():  # the fit's own warnings were said; the folds' would repeat them
        warnings.simplefilter("ignore")
        try:
            res = cross_validate(fitter, X, y, k=k, seed=seed, folds_option=None)
        except MixoptError:
            return None
    rho = res.metrics["spearman"]
    return (float(rho), k) if np.isfinite(rho) else None
