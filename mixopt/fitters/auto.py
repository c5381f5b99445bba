"""``auto``: pick the fitter that ranks held-out runs best, by K-fold cross-validation on the runs at hand.

Every candidate fitter is cross-validated on the training runs only (:func:`mixopt.fitters.cv.cross_validate`:
each fold's model is fitted on the other folds); a candidate that cannot fit (fewer runs than its
parameters) is skipped and the reason kept. The score is the out-of-fold Spearman correlation,
since a proposer needs the ranking of mixtures more than their exact values. The averages of the
best two and best three candidates are scored from the same out-of-fold predictions (no extra
fits); an average wins only if it ranks better than the best single fitter. The winner is refitted
on all runs. ``cv_table_`` holds one row per candidate (and per average) for the CLI to print.

Which fitter wins depends on the swarm: small swarms favour laws and GPs, large ones boosted trees
(Olmix found LightGBM needed more than about 118 runs). On Olmix's 512-run, 64-domain table the
mean-BPB 5-fold Spearman measured before this module was GP 0.903, LightGBM 0.889, log-linear 0.837.
"""

from __future__ import annotations

import logging
import time
import warnings
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from mixopt.errors import FewRunsWarning, MixoptError, MixoptWarning, TooFewRunsError
from mixopt.fitters.fewruns import ADVICE, FEWER
from mixopt.fitters.protocol import check_targets
from mixopt.fitters.varied import unvaried

log = logging.getLogger(__name__)

DEFAULT_CANDIDATES = ("loglinear", "mixing-law", "bimix", "gp", "regmix", "linear", "log-ridge")
# The laws, fitted one per metric when auto is given the objective's metric columns (as the methods
# of the same names are); beyond this many metrics each law fit costs minutes per fold (Olmix's 110
# metrics: 8 minutes for 5 folds), so they are fitted on the objective itself, as before.
LAWS = ("loglinear", "mixing-law", "bimix")
MAX_PER_METRIC = 32


class AutoFitter(RegressorMixin, BaseEstimator):
    """The candidate (or average of the top 2–3) with the best K-fold CV Spearman.

    Args:
        candidates: fitter names from the registry, tried in this order (ties go to the earlier).
        k: folds (fewer when there are fewer runs).
        ensemble: also score the averages of the best 2 and 3 candidates.
        random_state: seeds the folds and every candidate.
        groups: each domain's group (source), passed to the candidates that use it (log-ridge).
        metric_weights, metric_names: the objective as a weighted sum of metrics. Given, ``fit``
            takes one column per metric; the laws are fitted one per metric (up to
            ``MAX_PER_METRIC`` metrics) and every other candidate on the objective.
        domains, targets: the weight and target columns' names, handed to the candidates as they
            would get them alone (bimix finds a domain's own loss by them).

    Fitted: ``chosen_`` (a name, or ``mean(a, b)``), ``members_`` and ``member_weights_`` (the refitted
    models and their weights in the average), ``cv_table_`` (rows: name, spearman, pearson, mae,
    rel_error, seconds, error, chosen), ``cv_spearman_`` and ``cv_folds_`` (the chosen model's
    cross-validated Spearman and its folds).
    """

    MIN_RUNS = 3  # fewest runs a fit takes; a search checks its budget against it before any run

    def __init__(
        self,
        *,
        candidates: tuple[str, ...] = DEFAULT_CANDIDATES,
        k: int = 5,
        ensemble: bool = True,
        random_state: int | None = 0,
        groups: tuple[str, ...] | None = None,
        metric_weights: tuple[float, ...] | None = None,
        metric_names: tuple[str, ...] | None = None,
        domains: tuple[str, ...] | None = None,
        targets: tuple[str, ...] | None = None,
    ) -> None:
        self.domains = domains
        self.targets = targets
        self.metric_weights = metric_weights
        self.metric_names = metric_names
        self.candidates = candidates
        self.k = k
        self.ensemble = ensemble
        self.random_state = random_state
        self.groups = groups

    def _make(self, name: str, per_metric: bool = False) -> Any:
        from mixopt.fitters.metricsum import MetricSum
        from mixopt.fitters.registry import make_fitter

        # Names as the candidate gets them alone (`--method NAME`): bimix fits a domain's own loss
        # on its own share, and only knows which target is which domain's loss from them.
        model = make_fitter(name, seed=self.random_state, groups=self.groups, domains=self.domains,
                            targets=None if per_metric else self.targets)
        if per_metric and name in LAWS:
            return MetricSum(model, weights=self.metric_weights, names=self.metric_names or ())
        return model

    def objective(self, Y: np.ndarray) -> np.ndarray:
        """The objective of metric columns Y (n, n_metrics) (with ``metric_weights``), else Y itself."""
        from mixopt.fitters.metricsum import weighted_sum

        Y = np.asarray(Y, dtype=float)
        if Y.ndim == 1 or Y.shape[1] == 1:
            return Y.ravel()
        if self.metric_weights is None:
            raise MixoptError("auto: several target columns need metric_weights (the objective's weights)")
        return weighted_sum(Y, self.metric_weights)

    def fit(self, X: np.ndarray, y: np.ndarray) -> AutoFitter:
        """Cross-validate every candidate on (X, y), keep the best, refit it on all runs.

        Raises:
            MixoptError: NaN or infinite targets, fewer than 3 runs, or no candidate could be fitted.
        """
        from mixopt.fitters.cv import SCORES, calibration, cross_validate, distinct_mixtures, score

        check_targets("auto", y)
        from mixopt.fitters.registry import available_fitters

        # A misspelt candidate had been scored as an error row and left out without a word.
        usable = [f for f in available_fitters() if f != "auto"]
        if isinstance(self.candidates, str):  # "regmix" had been tried as 'r', 'e', 'g', …
            raise MixoptError(f"auto: candidates is the string {self.candidates!r}; give a sequence of "
                              f"fitter names, e.g. ({self.candidates!r},)")
        if unknown := [c for c in self.candidates if c not in usable]:
            raise MixoptError(f"auto: candidate(s) {', '.join(map(repr, unknown))} are not fitters auto can "
                              f"try; use some of {', '.join(usable)}")
        X, y = validate_data(self, X, y, y_numeric=True, multi_output=True)
        X, Y = np.asarray(X, dtype=float), np.asarray(y, dtype=float)
        y = self.objective(Y)
        # Domains no run varied, at the weight the runs had: no candidate can say whether another
        # weight is better, so a proposer holds them there (as it does for a law's dropped domains).
        self.held_ = unvaried(X)
        # The laws per metric where the metric columns are given and few enough (see MAX_PER_METRIC).
        per_metric = Y.ndim == 2 and Y.shape[1] > 1 and Y.shape[1] <= MAX_PER_METRIC
        self.per_metric_ = per_metric

        def target(name: str) -> np.ndarray:
            return Y if per_metric and name in LAWS else y

        n = len(y)
        if n < self.MIN_RUNS:
            raise TooFewRunsError(f"auto needs at least {self.MIN_RUNS} runs to cross-validate, got {n} "
                                  "sample(s); add runs", needed=self.MIN_RUNS)
        m = distinct_mixtures(X)  # runs of one mixture share a fold
        if m < self.MIN_RUNS:
            raise TooFewRunsError(f"auto needs runs of at least {self.MIN_RUNS} distinct mixtures to "
                                  f"cross-validate; these {n} run(s) hold {m}: add runs of other mixtures",
                                  needed=self.MIN_RUNS)
        k = min(self.k, m)
        rows: list[dict[str, Any]] = []
        oof: dict[str, np.ndarray] = {}
        oof_std: dict[str, np.ndarray | None] = {}
        for name in self.candidates:
            t = time.perf_counter()
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", MixoptWarning)  # per-fold notes; the refit warns once
                    res = cross_validate(self._make(name, per_metric), X, target(name), k=k,
                                         seed=self.random_state or 0, folds_option=None)
            except MixoptError as exc:  # the reason, less the advice to use auto (this is auto)
                why = str(exc).replace(f" or {FEWER}", "")
                rows.append({"name": name, **dict.fromkeys(SCORES),
                             "seconds": round(time.perf_counter() - t, 2), "error": why,
                             "per_metric": per_metric and name in LAWS})
                continue
            oof[name], oof_std[name] = res.pred, res.std
            rows.append(
                {"name": name, **res.metrics, "seconds": round(time.perf_counter() - t, 2), "error": None,
                 "per_metric": per_metric and name in LAWS}
            )
        ok = [r for r in rows if r["error"] is None and np.isfinite(r["spearman"])]
        if not ok:
            reasons = "; ".join(f"{r['name']}: {r['error']}" for r in rows if r["error"])
            raise MixoptError(
                f"auto: no candidate could be cross-validated ({reasons or 'constant predictions'})"
            )
        ranked = sorted(ok, key=lambda r: -r["spearman"])  # stable: ties keep the candidates' order
        best = {"members": [ranked[0]["name"]], "spearman": ranked[0]["spearman"]}
        if self.ensemble:
            for m in (2, 3):
                if len(ranked) < m:
                    break
                names = [r["name"] for r in ranked[:m]]
                metrics = score(y, np.mean([oof[nm] for nm in names], axis=0))
                # per_metric null: each member's own row says how it fits (every row has the same keys)
                rows.append({"name": f"mean({', '.join(names)})", **metrics, "seconds": 0.0, "error": None,
                             "per_metric": None})
                if metrics["spearman"] > best["spearman"]:
                    best = {"members": names, "spearman": metrics["spearman"]}
        members = best["members"]
        self.chosen_ = members[0] if len(members) == 1 else f"mean({', '.join(members)})"
        for r in rows:
            r["chosen"] = r["name"] == self.chosen_
            r["folds"] = k
        self.cv_table_ = rows
        self.cv_spearman_, self.cv_folds_ = best["spearman"], k  # the chosen model's, as ranked
        # how its sds held out of fold, as predict() gives them (the members' mean), where all have one
        stds = [oof_std[nm] for nm in members]
        self.calibration_ = None if any(sd is None for sd in stds) else calibration(
            y, np.mean([oof[nm] for nm in members], axis=0), np.mean(stds, axis=0))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            self.members_ = [self._make(nm, per_metric).fit(X, target(nm)) for nm in members]
        for w in caught:  # a member's few-runs advice ("use auto") is auto's to give differently
            msg = str(w.message)
            if issubclass(w.category, FewRunsWarning):
                msg = msg.replace(ADVICE, f"; auto chose it by cross-validation over {n} runs, which is "
                                          "the check: more runs firm it up")
            warnings.warn_explicit(msg, w.category, w.filename, w.lineno)
        self.member_weights_ = [1.0 / len(members)] * len(members)
        log.info(
            "auto chose %s (CV Spearman %.4f over %d candidates)", self.chosen_, best["spearman"], len(ok)
        )
        return self

    def predict(self, X: np.ndarray, return_std: bool = False):  # noqa: ANN201
        """The chosen model's predictions; the standard deviation when every member has one."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False)
        means, stds = [], []
        for m in self.members_:
            mean, std = m.predict(X, return_std=True)
            means.append(np.asarray(mean, dtype=float))
            stds.append(None if std is None else np.asarray(std, dtype=float))
        w = np.asarray(self.member_weights_)
        mean = np.tensordot(w, np.array(means), axes=1)
        if not return_std:
            return mean
        if any(s is None for s in stds):
            return mean, None
        # Members' errors are correlated; the weighted mean of their std is a conservative bound.
        return mean, np.tensordot(w, np.array(stds), axes=1)

    def __sklearn_tags__(self):  # noqa: ANN204
        tags = super().__sklearn_tags__()
        tags.regressor_tags.poor_score = True
        tags.target_tags.multi_output = True  # the objective's metric columns (metric_weights)
        return tags
