"""K-fold cross-validation of a fitter, and the accuracy figures mixopt reports.

Each fold's model is a fresh clone fitted on the other folds only; every run gets exactly one
out-of-fold prediction. Figures: Spearman and Pearson correlation (ranking is what a proposer
needs), mean absolute error and mean relative error ``mean(|pred - y| / |y|)``.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mixopt.errors import FewRunsWarning, MixoptError, MixoptWarning, TooFewRunsError

# Said wherever auto is cross-validated (fit --cv, report), since its two Spearmans differ.
AUTO_CV_NOTE = (
    "auto chooses its model again inside each fold (nested cross-validation): this scores the choice "
    "itself on runs it never saw, where auto's choice table scores each candidate on the runs the "
    "choice was made on, which flatters the one chosen"
)


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

    def as_dict(self) -> dict[str, Any]:
        return {"k": len(self.fold_metrics), **self.metrics, "folds": self.fold_metrics}


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


def cross_validate(fitter: Any, X: np.ndarray, y: np.ndarray, *, k: int = 5, seed: int = 0,
                   folds_option: str | None = "--cv") -> CVResult:
    """Shuffled K-fold cross-validation of ``fitter`` (cloned per fold; the original is not fitted).

    ``y``: the objective per run, or for a :class:`~mixopt.fitters.metricsum.MetricSum` its metric
    columns (n_runs, n_metrics), scored on the objective they make. ``folds_option``: the caller's
    option that sets ``k``, named when a fold has too few runs to fit (None: none to name).

    Raises:
        MixoptError: ``k`` < 2 or more folds than runs.
    """
    from sklearn.base import clone
    from sklearn.model_selection import KFold

    X = np.asarray(X, dtype=float)
    Y = np.asarray(y, dtype=float)
    if Y.ndim == 2 and hasattr(fitter, "objective"):  # metric columns (MetricSum): scored on the objective
        y = fitter.objective(Y)
    else:
        Y = y = Y.ravel()
    if len(X) != len(y):
        raise MixoptError(f"{len(X)} weight rows but {len(y)} metric values; give one metric per run")
    if k < 2 or k > len(y):
        raise MixoptError(f"--cv {k} needs 2 ≤ K ≤ the number of runs ({len(y)}); --cv {len(y)} is "
                          "leave-one-out")
    pred = np.full(len(y), np.nan)
    folds = np.full(len(y), -1)
    per_fold = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.simplefilter("ignore", FewRunsWarning)
        for i, (train, test) in enumerate(KFold(n_splits=k, shuffle=True, random_state=seed).split(X)):
            try:
                model = clone(fitter).fit(X[train], Y[train])
            except MixoptError as exc:
                # The fitter counts the fold's runs, not the table's: say which the user gave.
                more = ""
                if not isinstance(exc, TooFewRunsError):  # the data (a negative target for a log law)
                    pass
                elif len(y) - 1 < exc.needed:  # not even leave-one-out has enough: more folds cannot help
                    more = (f"; even leave-one-out trains on only {len(y) - 1}: add runs (at least "
                            f"{exc.needed + 1})")
                elif folds_option and k < len(y):
                    more = (f"; more folds train on more runs ({folds_option} {len(y)}, leave-one-out, "
                            f"trains on {len(y) - 1})")
                raise MixoptError(
                    f"cross-validation: fold {i + 1} of {k} trains on {len(train)} of the {len(y)} runs "
                    f"and cannot be fitted: {exc}{more}"
                ) from exc
            if len(train) < 2:  # a model of one run fits it exactly: its figures would mean nothing
                how = (f"--cv {len(y)} (leave-one-out) trains on {len(y) - 1}" if len(y) > 2
                       else "cross-validation needs at least 3 runs")
                raise MixoptError(f"--cv {k} on {len(y)} runs fits fold {i + 1} on {len(train)} run; {how}")
            pred[test] = np.asarray(model.predict(X[test]), dtype=float).ravel()
            folds[test] = i
            per_fold.append(score(y[test], pred[test]))
    _say_once(caught, k)
    return CVResult(pred=pred, folds=folds, metrics=score(y, pred), fold_metrics=per_fold)
