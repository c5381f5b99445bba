"""Fitters: registry, RegMix's LightGBM settings, the fast tree scorer, the linear baseline, CV."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from mixopt.errors import MixoptError
from mixopt.fitters import Fitter, available_fitters, get_fitter
from mixopt.fitters.cv import cross_validate, score
from mixopt.fitters.linear import LinearFitter
from mixopt.fitters.regmix import FAST_PREDICT_ROWS, RegMixFitter

RUNS = Path(__file__).parent / "data" / "runs" / "regmix-pile-1m"
# The full reference tables live next to the checkout (../shared/data/runs); tests skip without them.
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "runs"
TARGET = "metric/the_pile_pile_cc_val_loss"


def regmix_slice() -> tuple[np.ndarray, np.ndarray]:
    X = pl.read_csv(RUNS / "train_mixture_1m.csv").drop("index").to_numpy()
    y = pl.read_csv(RUNS / "train_pile_loss_1m.csv")[TARGET].to_numpy()
    return X, y


def test_registry_lists_and_builds() -> None:
    assert {"regmix", "linear"} <= set(available_fitters())
    f = get_fitter("regmix", n_estimators=10)
    assert isinstance(f, RegMixFitter) and f.n_estimators == 10
    assert isinstance(f, Fitter)
    with pytest.raises(MixoptError, match="regmix"):
        get_fitter("lightgbm")
    with pytest.raises(MixoptError, match="learning_rate"):
        get_fitter("regmix", lr=0.1)


def test_regmix_defaults_are_regmix_settings() -> None:
    p = RegMixFitter().get_params()
    assert p["n_estimators"] == 1000 and p["learning_rate"] == 0.01 and p["random_state"] == 42
    assert p["num_leaves"] == 31 and p["min_child_samples"] is None
    X, y = regmix_slice()
    fitted = RegMixFitter(n_estimators=50).fit(X, y)
    model = fitted.models_[0]
    # RegMix's 20 runs per leaf from 160 runs on; fewer runs than that get n/8, so trees can split.
    assert fitted.min_child_samples_ == min(20, len(X) // 8) == model.get_params()["min_child_samples"]
    big = RegMixFitter(n_estimators=5).fit(np.tile(X, (3, 1)), np.tile(y, 3))
    assert big.min_child_samples_ == 20  # RegMix's own from 160 runs on
    small = RegMixFitter(n_estimators=50).fit(X[:32], y[:32])
    assert small.min_child_samples_ == 4 and np.ptp(small.predict(X)) > 0  # 20 per leaf: one constant
    lgb = model.get_params()
    assert lgb["objective"] == "regression" and lgb["boosting_type"] == "gbdt"
    assert model.booster_.num_trees() == 50  # no early stopping: every iteration is kept


def test_regmix_is_deterministic_and_multi_target() -> None:
    X, y = regmix_slice()
    a = RegMixFitter(n_estimators=100).fit(X, y).predict(X)
    b = RegMixFitter(n_estimators=100).fit(X, y).predict(X)
    np.testing.assert_array_equal(a, b)
    Y = pl.read_csv(RUNS / "train_pile_loss_1m.csv").drop("index").to_numpy()[:, :3]
    m = RegMixFitter(n_estimators=100).fit(X, Y)
    P = m.predict(X)
    assert P.shape == (len(X), 3)
    one = RegMixFitter(n_estimators=100).fit(X, Y[:, 1]).predict(X)
    np.testing.assert_allclose(P[:, 1], one)
    mean, std = m.predict(X[:5], return_std=True)
    assert std is None and mean.shape == (5, 3)
    # targets LightGBM's float32 labels cannot hold are refused (a QA pass: 3e299 was predicted
    # as 1e38 for every mixture, 1e-300 as 0; past 1e100 every fitter refuses them, stop 46)
    for scale in (1e40, 1e-300):
        with pytest.raises(MixoptError, match=r"regmix: the target reaches .* in magnitude, outside what "
                                              r"LightGBM's float32 labels hold .*rescale the metric"):
            RegMixFitter(n_estimators=5).fit(X, y * scale)
    RegMixFitter(n_estimators=5).fit(X, y * 1e6)  # large, and held


def test_fast_scorer_equals_lightgbm() -> None:
    X, y = regmix_slice()
    m = RegMixFitter(n_estimators=300).fit(X, y)
    C = np.random.default_rng(0).dirichlet(np.full(X.shape[1], 0.3), FAST_PREDICT_ROWS + 500)
    C[:50] = X[:50]  # training rows sit exactly on thresholds' neighbours
    C[50:60] = 0.0  # and corner cases: all-zero rows
    fast = m.predict(C)
    ref = m.models_[0].booster_.predict(C)
    np.testing.assert_allclose(fast, ref, rtol=0, atol=1e-12)


def test_fast_scorer_on_64_leaf_trees_and_threads() -> None:
    from mixopt.fitters.treescore import TreeScorer

    rng = np.random.default_rng(1)
    X = rng.dirichlet(np.ones(8), 600)
    y = np.sin(7 * X[:, 0]) + X[:, 1] ** 2 + rng.normal(0, 0.01, 600)
    m = RegMixFitter(n_estimators=40, num_leaves=60, min_child_samples=2).fit(X, y)
    booster = m.models_[0].booster_
    scorer = TreeScorer.from_booster(booster)
    assert scorer is not None and scorer.ones.dtype == np.uint64
    C = rng.dirichlet(np.ones(8), 3000)
    ref = booster.predict(C)
    np.testing.assert_allclose(scorer.predict(C, n_threads=3), ref, atol=1e-12)
    scorer.dense = None  # the sparse kernel, used when dense tables would be too large
    np.testing.assert_allclose(scorer.predict(C), ref, atol=1e-12)
    big = RegMixFitter(n_estimators=5, num_leaves=100, min_child_samples=2).fit(X, y)
    assert TreeScorer.from_booster(big.models_[0].booster_) is None  # > 64 leaves: LightGBM predicts
    np.testing.assert_allclose(big.predict(np.vstack([C, C])), big.models_[0].predict(np.vstack([C, C])))


def test_linear_is_least_squares() -> None:
    X, y = regmix_slice()
    m = LinearFitter().fit(X, y)
    from sklearn.linear_model import LinearRegression

    np.testing.assert_allclose(m.predict(X), LinearRegression().fit(X, y).predict(X))
    rng = np.random.default_rng(0)
    Xs = rng.dirichlet(np.ones(4), 50)
    ys = Xs @ np.array([1.0, 2.0, 3.0, 4.0])
    np.testing.assert_allclose(LinearFitter().fit(Xs, ys).predict(Xs), ys, atol=1e-10)


def test_linear_on_fewer_runs_than_its_slopes_says_so() -> None:
    from mixopt.errors import FewRunsWarning

    X = np.random.default_rng(1).dirichlet(np.ones(8), 6)
    y = X @ np.arange(8.0)
    # 8 weights summing to 1: 8 parameters with the intercept; 6 runs fit them exactly
    said = r"^linear has 8 parameters per target \(8 varying domains\) and 6 runs"
    with pytest.warns(FewRunsWarning, match=said):
        LinearFitter().fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FewRunsWarning)
        LinearFitter().fit(np.vstack([X] * 2), np.concatenate([y] * 2))  # 12 runs: enough
        # a held domain is part of the constant: 2 varying weights summing to 0.8 are 2 parameters
        held = np.column_stack([np.random.default_rng(2).dirichlet(np.ones(2), 3) * 0.8, np.full(3, 0.2)])
        LinearFitter().fit(held, held[:, 0])


def test_predict_before_fit_refused() -> None:
    from sklearn.exceptions import NotFittedError

    for name in available_fitters():
        with pytest.raises(NotFittedError):
            get_fitter(name).predict(np.full((2, 3), 1 / 3))


class _Spy:
    """A fitter that records the rows it was fitted on (to prove the test fold is never seen)."""

    seen: list[set[int]] = []

    def __init__(self) -> None:
        pass

    def get_params(self, deep: bool = True) -> dict:
        return {}

    def set_params(self, **p: object) -> _Spy:
        return self

    def fit(self, X: np.ndarray, y: np.ndarray) -> _Spy:
        _Spy.seen.append({int(r) for r in X[:, 0]})
        self.mean_ = float(np.mean(y))
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.full(len(X), self.mean_)


def test_cv_never_fits_on_the_test_fold() -> None:
    _Spy.seen = []
    X = np.column_stack([np.arange(40), np.zeros(40)])
    y = np.arange(40, dtype=float)
    res = cross_validate(_Spy(), X, y, k=4, seed=3)
    assert len(_Spy.seen) == 4
    for i, seen in enumerate(_Spy.seen):
        test = set(np.flatnonzero(res.folds == i).tolist())
        assert len(test) == 10 and not (seen & test)
        assert seen | test == set(range(40))
    assert np.all(res.folds >= 0)
    again = cross_validate(_Spy(), X, y, k=4, seed=3)
    np.testing.assert_array_equal(res.folds, again.folds)
    assert not np.array_equal(res.folds, cross_validate(_Spy(), X, y, k=4, seed=4).folds)


def test_a_library_warning_names_the_users_line_not_mixopts(tmp_path: Path) -> None:
    """mixopt.errors.warn: a notebook's warning points at the notebook's call, however deep in
    mixopt it was raised (it had named mixopt's own files)."""
    from mixopt.errors import FewRunsWarning

    X = np.array([[0.2, 0.3, 0.5], [0.5, 0.4, 0.1], [0.1, 0.1, 0.8]])
    with pytest.warns(FewRunsWarning) as said:
        get_fitter("linear").fit(X, np.array([1.0, 2.0, 3.0]))  # 3 runs for 3 parameters: few
    assert [w.filename for w in said] == [__file__]
    # three calls deep: fit_tables → read_ratios → check_rows, which renormalises rows off by 1e-4
    from mixopt.errors import MixoptWarning
    from mixopt.fit.on_tables import FitConfig, fit_tables

    d = tmp_path
    runs = [f"r{i}" for i in range(8)]
    W = np.random.default_rng(0).dirichlet(np.ones(3), size=8) * 1.0001
    pl.DataFrame({"run": runs, **{c: W[:, j] for j, c in enumerate("abc")}}).write_csv(d / "r.csv")
    pl.DataFrame({"run": runs, "loss": W[:, 0]}).write_csv(d / "m.csv")
    with pytest.warns(MixoptWarning, match="renormalised to 1") as said:
        fit_tables(FitConfig(ratios=d / "r.csv", metrics=d / "m.csv", target="loss", method="linear", cv=2))
    assert {w.filename for w in said} == {__file__}
    # through a cached_property (the review: it named functools.py): the mean of metric columns
    # with another's scale warns
    from mixopt.tables import read_run_tables

    pl.DataFrame({"run": runs, **{c: W[:, j] / 1.0001 for j, c in enumerate("abc")}}).write_csv(d / "r2.csv")
    pl.DataFrame({"run": runs, "loss": W[:, 0], "_step": np.arange(8) * 1000.0}).write_csv(d / "m2.csv")
    table = read_run_tables(d / "r2.csv", d / "m2.csv")
    with pytest.warns(MixoptWarning) as said:
        table.target("mean")
    assert {w.filename for w in said} == {__file__}


def test_held_out_ranking_is_cross_validated_only_when_cheap_and_possible() -> None:
    from mixopt.fitters.cv import held_out_ranking

    rng = np.random.default_rng(0)
    X = rng.dirichlet(np.ones(3), size=20)
    y = X @ np.array([1.0, 2.0, 3.0])
    rho, k = held_out_ranking(get_fitter("linear"), X, y, fit_seconds=0.01)
    assert k == 5 and rho > 0.99
    assert held_out_ranking(get_fitter("linear"), X, y, fit_seconds=5.0) is None  # 5 refits: 25 s > 20 s
    assert held_out_ranking(get_fitter("linear"), X[:6], y[:6], fit_seconds=0.01) is None  # folds of 4 runs
    auto = get_fitter("auto", candidates=("linear", "log-ridge")).fit(X, y)  # its own CV: no refit
    assert held_out_ranking(auto, X, y, fit_seconds=1e9) == (auto.cv_spearman_, auto.cv_folds_)


def test_cv_keeps_the_runs_of_one_mixture_in_one_fold() -> None:
    """A QA pass: each RegMix run copied under another id with a seed's noise raised the 5-fold
    Spearman from 0.984 to 0.994, every run scored beside its twin."""
    from sklearn.model_selection import KFold

    rng = np.random.default_rng(0)
    X0 = rng.dirichlet(np.ones(3), size=10)
    X = np.vstack([X0, X0, X0[:4]])  # 10 mixtures, 24 runs
    y = np.arange(24.0)
    res = cross_validate(get_fitter("linear"), X, y, k=5, seed=1)
    for i in range(10):
        assert len({int(res.folds[j]) for j in (i, i + 10, i + 20) if j < 24}) == 1, i
    # distinct mixtures: scikit-learn's shuffled KFold, as before
    plain = cross_validate(get_fitter("linear"), X0, y[:10], k=5, seed=1)
    for i, (_, test) in enumerate(KFold(n_splits=5, shuffle=True, random_state=1).split(X0)):
        assert set(np.flatnonzero(plain.folds == i)) == set(test)
    said = (r"--cv 11 needs 2 ≤ K ≤ the number of distinct mixtures \(10 in 24 runs: the runs of one "
            r"mixture share a fold\); --cv 10 leaves one mixture out")
    with pytest.raises(MixoptError, match=said):
        cross_validate(get_fitter("linear"), X, y, k=11)
    assert len(cross_validate(get_fitter("linear"), X, y, k=10).fold_metrics) == 10
    # the review: a caller with no option of its own is not told to give "--cv 1"
    said = r"^11 folds needs 2 ≤ K ≤ the number of distinct mixtures .*; 10 folds leaves one mixture out$"
    with pytest.raises(MixoptError, match=said):
        cross_validate(get_fitter("linear"), X, y, k=11, folds_option=None)
    one = np.tile(X0[:1], (10, 1))
    said = r"needs runs of at least 2 distinct mixtures; these 10 run\(s\) hold 1"
    with pytest.raises(MixoptError, match=said):
        cross_validate(get_fitter("linear"), one, y[:10], k=2)
    said = r"auto needs runs of at least 3 distinct mixtures to cross-validate; these 10 run\(s\) hold 2"
    with pytest.raises(MixoptError, match=said):
        get_fitter("auto").fit(np.vstack([one[:5], np.tile(X0[1:2], (5, 1))]), y[:10])


def test_cv_figures_on_regmix_slice() -> None:
    X, y = regmix_slice()
    res = cross_validate(RegMixFitter(n_estimators=200), X, y, k=4, seed=0)
    assert res.pred.shape == y.shape and np.isfinite(res.pred).all()
    assert set(res.metrics) == {"spearman", "pearson", "mae", "rel_error"}
    assert res.metrics["spearman"] > 0.5  # 64 runs: a clear but imperfect ranking
    lin = cross_validate(LinearFitter(), X, y, k=4, seed=0)
    assert lin.metrics["mae"] > 0
    with pytest.raises(MixoptError, match="--cv"):
        cross_validate(LinearFitter(), X, y, k=1)


def test_score_values() -> None:
    s = score(np.array([1.0, 2.0, 4.0]), np.array([1.5, 2.0, 3.0]))
    assert s["spearman"] == pytest.approx(1.0)
    assert s["mae"] == pytest.approx(0.5)
    assert s["rel_error"] == pytest.approx((0.5 + 0 + 0.25) / 3)
    assert np.isnan(score(np.ones(3), np.arange(3.0))["spearman"])


@pytest.mark.skipif(not (SHARED / "regmix-pile-1m").is_dir(), reason="shared RegMix data absent")
def test_regmix_full_split_ranks_test_runs() -> None:
    d = SHARED / "regmix-pile-1m"
    X = pl.read_csv(d / "train_mixture_1m.csv").drop("index").to_numpy()
    y = pl.read_csv(d / "train_pile_loss_1m.csv")[TARGET].to_numpy()
    Xt = pl.read_csv(d / "test_mixture_1m.csv").drop("index").to_numpy()
    yt = pl.read_csv(d / "test_pile_loss_1m.csv")[TARGET].to_numpy()
    assert score(yt, RegMixFitter().fit(X, y).predict(Xt))["spearman"] > 0.985


class _Warns(_Spy):
    """Warns in the folds whose training rows hold run 0 (a figure in the text differs per fold)."""

    def fit(self, X: np.ndarray, y: np.ndarray) -> _Warns:
        from mixopt.errors import MixoptWarning

        if 0 in X[:, 0]:
            warnings.warn(f"odd run found among {len(X)} runs", MixoptWarning, stacklevel=2)
        return super().fit(X, y)


def test_cv_warnings_say_they_are_of_training_folds_once() -> None:
    from mixopt.errors import MixoptWarning

    X = np.column_stack([np.arange(20.0), np.ones(20)])
    with pytest.warns(MixoptWarning) as record:
        cross_validate(_Warns(), X, X[:, 0], k=5, seed=0)
    texts = [str(w.message) for w in record if "odd run" in str(w.message)]
    assert texts == ["cross-validation, in 4 of 5 training folds: odd run found among 16 runs"]


def test_hyper_parameters_of_the_wrong_kind_are_one_line() -> None:
    """LightGBM had answered learning_rate="fast" with "[Fatal] Unknown token fast in data file", and
    the laws took n_starts=-1 or own_share="yes" without a word (a QA pass)."""
    from mixopt.fitters import get_fitter

    X = np.random.default_rng(0).dirichlet(np.ones(3), 20)
    y = 3 + X @ np.array([0.5, -0.3, 0.2])
    for name, params, said in (
        ("regmix", {"learning_rate": "fast"}, "regmix: learning_rate must be a number > 0, got 'fast'"),
        ("regmix", {"n_estimators": -1}, "regmix: n_estimators must be an integer ≥ 1, got -1"),
        ("mixing-law", {"n_starts": -1}, "mixing-law: n_starts must be an integer ≥ 0, got -1"),
        ("loglinear", {"huber_delta": 0}, "loglinear: huber_delta must be a number > 0, got 0"),
        ("bimix", {"own_share": "yes"}, "bimix: own_share must be True or False, got 'yes'"),
        # from a library user's QA pass: each failed inside a library, or was ignored
        ("log-ridge", {"alphas": ()}, "log-ridge: alphas is empty"),  # 'NoneType' has no attribute 'T'
        ("log-ridge", {"eps": -1.0}, "log-ridge: eps must be a number > 0, got -1.0"),  # "contains NaN"
        ("gp", {"kernel": "nope"}, "gp: kernel 'nope' is unknown; use 'rbf' or 'matern'"),
        ("gp", {"kernel": "matern"}, "gp: kernel='matern' applies to engine='sklearn' only"),  # ignored
        ("gp", {"engine": "sklearn", "noise": -1}, "gp: noise must be a number > 0, got -1"),
        ("gp", {"random_state": np.random.RandomState(0)}, "gp: random_state must be an integer seed"),
        ("bimix", {"domains": ("a", "b")}, "bimix: domains names 2 domain(s) (a, b) and the weights have 3"),
        ("auto", {"candidates": "regmix"}, "auto: candidates is the string 'regmix'"),  # 'r', 'e', 'g', …
    ):
        with pytest.raises(MixoptError, match=re.escape(said)):
            get_fitter(name, **params).fit(X, y)


def test_a_fold_that_cannot_be_fitted_suggests_more_folds_only_where_more_runs_would_help() -> None:
    """A QA pass: a negative target for a log law ended "more folds train on more runs (--cv 60)",
    and --cv 60 failed the same way."""
    from sklearn.base import BaseEstimator, RegressorMixin

    from mixopt.errors import TooFewRunsError
    from mixopt.fitters.cv import cross_validate

    class Refuses(RegressorMixin, BaseEstimator):
        def __init__(self, few: bool = False) -> None:
            self.few = few

        def fit(self, X, y):  # noqa: ANN001, ANN201
            if self.few:
                raise TooFewRunsError(f"needs 10 runs, got {len(X)}", needed=10)
            raise MixoptError("loglinear needs positive targets; 3 are ≤ 0")

    X, y = np.random.default_rng(0).dirichlet(np.ones(3), 12), np.arange(12.0)
    with pytest.raises(MixoptError) as exc:
        cross_validate(Refuses(), X, y, k=3)
    assert str(exc.value).endswith("cannot be fitted: loglinear needs positive targets; 3 are ≤ 0")
    with pytest.raises(MixoptError, match=r"more folds train on more runs \(--cv 12, leave-one-out"):
        cross_validate(Refuses(few=True), X, y, k=3)


def test_folds_fitted_in_worker_processes_give_the_same_figures_and_warnings(monkeypatch) -> None:
    """When the first fold takes seconds, the others are fitted in worker processes: every fit is
    seeded and on one thread, so the out-of-fold predictions are the same to the last bit, and the
    folds' warnings are said once, with their count, as from the driver."""
    import os

    import mixopt.fitters.cv as cv
    from mixopt.fitters.linear import LinearFitter
    from mixopt.fitters.loglinear import LogLinearFitter

    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("one core: the folds are fitted in turn")
    rng = np.random.default_rng(3)
    from sklearn.model_selection import KFold

    X = np.hstack([rng.dirichlet(np.ones(4), 30), np.zeros((30, 1))])
    # domain 5 above 0 in one run, which fold 2 holds out: constant there (a warning, from a worker)
    X[list(KFold(4, shuffle=True, random_state=0).split(X))[1][1][0]] = 0.2
    y = np.exp(0.3 + X[:, :4] @ np.array([-0.5, 0.2, 0.1, -0.3])) + rng.normal(0, 0.002, 30)
    fitters = (LogLinearFitter(starts_per_c=3), LinearFitter())
    with warnings.catch_warnings(record=True) as alone:
        warnings.simplefilter("always")
        here = [cv.cross_validate(f, X, y, k=4) for f in fitters]
    from mixopt.fitters import workers

    made = []
    real = workers.pool
    monkeypatch.setattr(workers, "pool", lambda size: made.append(size) or real(size))
    monkeypatch.setattr(cv, "PARALLEL_AFTER_S", 0.0)
    with warnings.catch_warnings(record=True) as spread:
        warnings.simplefilter("always")
        there = [cv.cross_validate(f, X, y, k=4) for f in fitters]
    # the three folds after the first went to workers, one per core, for each fitter
    assert made == [min(len(os.sched_getaffinity(0)), 3)] * 2
    for a, b in zip(here, there, strict=True):
        assert np.array_equal(a.pred, b.pred) and np.array_equal(a.folds, b.folds)
    assert [str(w.message) for w in spread] == [str(w.message) for w in alone]
    assert any("cross-validation, in 1 of 4 training folds: loglinear: domain(s) #4" in str(w.message)
               for w in alone)
    # a fold's error comes back from its worker as from the driver: one negative target, held out
    # by fold 1 only, so that fold 1 fits (here) and fold 2 does not (in a worker)
    first_test = next(KFold(3, shuffle=True, random_state=0).split(X))[1]
    bad = y.copy()
    bad[first_test[-1]] = -1.0
    with pytest.raises(MixoptError, match=r"fold 2 of 3 trains on 20 of the 30 runs and cannot be fitted"):
        cv.cross_validate(LogLinearFitter(starts_per_c=3), X, bad, k=3)


class _Unpicklable:
    """A fitter setting that copies (sklearn's clone) but does not pickle."""

    def __deepcopy__(self, memo):  # noqa: ANN001, ANN204
        return self

    def __reduce__(self):  # noqa: ANN204
        raise TypeError("cannot pickle this setting")


def test_folds_a_worker_cannot_take_are_fitted_here(monkeypatch) -> None:
    """A fitter that does not pickle had failed cross-validation once its folds went to workers."""
    import mixopt.fitters.cv as cv
    from mixopt.fitters.linear import LinearFitter

    class Tagged(LinearFitter):
        def __init__(self, *, tag: object = None, **kw: object) -> None:
            super().__init__(**kw)
            self.tag = tag

    rng = np.random.default_rng(4)
    X = rng.dirichlet(np.ones(3), 20)
    y = X @ np.array([1.0, 2.0, 3.0])
    alone = cv.cross_validate(Tagged(tag=_Unpicklable()), X, y, k=4)
    monkeypatch.setattr(cv, "PARALLEL_AFTER_S", 0.0)
    here = cv.cross_validate(Tagged(tag=_Unpicklable()), X, y, k=4)
    assert np.array_equal(alone.pred, here.pred)
