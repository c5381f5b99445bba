"""Properties of the fitters, cross-validation and the objective, on random run tables: predictions do
not depend on the order of the domains or of the runs; a domain no run varied is ignored; each law
finds parameters planted in data of its own form; cross-validation never trains on the runs it
scores and reports figures an independent computation agrees with; the objective is the weighted
mean the docs give; bad input is one MixoptError. The named tests below them are cases hypothesis
found."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from mixopt.errors import MixoptError, MixoptWarning
from mixopt.fitters import get_fitter
from mixopt.fitters.cv import cross_validate, kfold_splits, mixture_groups
from mixopt.mixture import is_pattern
from mixopt.objective import Objective

SOME = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FEW = settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Settings that keep a fit well under a second (the properties hold at any setting).
FAST = {
    "regmix": {"n_estimators": 100},
    "mixing-law": {"n_starts": 8, "n_polish": 2},
    "loglinear": {"starts_per_c": 3, "n_polish": 2},
    "bimix": {"n_starts": 4, "n_polish": 2},
    "gp": {"mll_maxiter": 30},
    "auto": {"candidates": ("linear", "log-ridge"), "k": 3},
}
LAWS = ("mixing-law", "loglinear", "bimix")
EXACT = ("linear", "log-ridge")  # deterministic closed forms: the same fit up to rounding


def fitter(name: str, **params: object) -> object:
    return get_fitter(name, **{**FAST.get(name, {}), **params})


def fit_quietly(model: object, X: np.ndarray, y: np.ndarray) -> object:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.fit(X, y)


@st.composite
def runs(draw: st.DrawFn, *, k_min: int = 2, k_max: int = 5, n_min: int = 12, n_max: int = 30) -> tuple:
    """(X, y, seed): runs on the simplex with a smooth landscape (a law of the mixing-law family plus
    a little noise), so that every fitter has something to find."""
    k = draw(st.integers(k_min, k_max))
    n = draw(st.integers(max(n_min, k + 3), n_max))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    X = rng.dirichlet(np.full(k, draw(st.sampled_from([0.5, 1.0, 3.0]))), n)
    t = rng.normal(0, 1, k)
    y = 2.0 + np.exp(-0.5 + X @ t) + rng.normal(0, 0.005, n)
    return X, y, seed


def fresh(k: int, seed: int, n: int = 16) -> np.ndarray:
    return np.random.default_rng(seed + 1).dirichlet(np.ones(k), n)


# ---- invariances ---------------------------------------------------------------------------------

def own_form(name: str, data: tuple) -> tuple:
    """A law's invariances are checked on runs of its own form, 4 per parameter (on too few runs, or
    on another form, several fits are as good and the random starts pick one)."""
    X, y, seed = data
    if name not in LAWS:
        return data
    rng = np.random.default_rng(seed)
    k = X.shape[1]
    X = rng.dirichlet(np.full(k, 2.0), 8 * k + 4)
    return X, planted(name, X, rng) + rng.normal(0, NOISE, len(X)), seed


@pytest.mark.parametrize("name", ["linear", "log-ridge", "regmix", *LAWS])
@SOME
@given(data=runs(), perm_seed=st.integers(0, 1000))
def test_permuting_the_domains_permutes_nothing_else(name: str, data: tuple, perm_seed: int) -> None:
    X, y, seed = own_form(name, data)
    k = X.shape[1]
    perm = np.random.default_rng(perm_seed).permutation(k)
    assume(not np.array_equal(perm, np.arange(k)))
    # LightGBM breaks ties between splits of equal gain (the same runs each side) by the column's
    # index: the trees agree on the runs, and may put a new mixture on either side of such a split
    Xt = X if name == "regmix" else fresh(k, seed)
    a = fit_quietly(fitter(name), X, y).predict(Xt)
    b = fit_quietly(fitter(name), X[:, perm], y).predict(Xt[:, perm])
    # closed forms agree to rounding; a law's multistart may stop at another point of the same
    # optimum (random starts are drawn per column), so within the landscape's noise
    tol = 1e-8 if name in EXACT else 1e-6 if name == "regmix" else 0.02 * np.ptp(y) + 0.01
    np.testing.assert_allclose(a, b, atol=tol)


@pytest.mark.parametrize("name", ["linear", "log-ridge", "regmix", *LAWS])
@SOME
@given(data=runs(), perm_seed=st.integers(0, 1000))
def test_permuting_the_runs_gives_the_same_fit(name: str, data: tuple, perm_seed: int) -> None:
    X, y, seed = own_form(name, data)
    perm = np.random.default_rng(perm_seed).permutation(len(X))
    Xt = fresh(X.shape[1], seed)
    a = fit_quietly(fitter(name), X, y).predict(Xt)
    b = fit_quietly(fitter(name), X[perm], y[perm]).predict(Xt)
    tol = 1e-8 if name in EXACT else 1e-6 if name == "regmix" else 0.02 * np.ptp(y) + 0.01
    np.testing.assert_allclose(a, b, atol=tol)


@pytest.mark.parametrize("name", ["linear", "log-ridge", "regmix", *LAWS])
@FEW
@given(data=runs(k_max=4), held=st.sampled_from([0.0, 0.05, 0.2]), where=st.integers(0, 4),
       renormalise=st.booleans())
def test_a_domain_no_run_varied_is_ignored(name: str, data: tuple, held: float, where: int,
                                           renormalise: bool) -> None:
    """The fit with a held domain predicts what the fit without it does, at any weight of it, and a
    law says it dropped it."""
    X, y, seed = data
    k = X.shape[1]
    where = min(where, k)
    Xs = X * (1 - held)
    Xh = np.insert(Xs, where, held, axis=1)
    if renormalise:  # as a table's rows are: the held weight then jitters by ~1e-17
        Xh = Xh / Xh.sum(axis=1, keepdims=True)
    Xt = fresh(k, seed) * (1 - held)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        a = fitter(name).fit(Xh, y)
    b = fit_quietly(fitter(name), Xs, y)
    if name in LAWS:
        assert any(issubclass(w.category, MixoptWarning) and "dropped" in str(w.message) for w in caught)
        assert not a.keep_[where] and a.held_ == {where: pytest.approx(held)}
    want = b.predict(Xt)
    tol = 1e-6 if name in (*EXACT, "regmix") else 1e-4 * np.ptp(y) + 1e-6  # rounding moves L-BFGS a little
    np.testing.assert_allclose(a.predict(np.insert(Xt, where, held, axis=1)), want, atol=tol)
    if name in LAWS:  # the law reads nothing of the held column: any value there gives the same
        np.testing.assert_array_equal(a.predict(np.insert(Xt, where, 0.9, axis=1)),
                                      a.predict(np.insert(Xt, where, held, axis=1)))


@pytest.mark.parametrize("name", ["linear", "log-ridge", "mixing-law"])
@SOME
@given(data=runs(), shift=st.floats(-50, 50))
def test_a_shifted_target_shifts_the_prediction(name: str, data: tuple, shift: float) -> None:
    """Forms with a free constant (linear, log-ridge, the mixing law's c) move with the target."""
    X, y, seed = data
    Xt = fresh(X.shape[1], seed)
    a = fit_quietly(fitter(name), X, y).predict(Xt)
    b = fit_quietly(fitter(name), X, y + shift).predict(Xt)
    tol = 1e-7 * (1 + abs(shift)) if name in EXACT else 0.02 * np.ptp(y) + 0.01
    np.testing.assert_allclose(b - shift, a, atol=tol)


@pytest.mark.parametrize("name", ["linear", "log-ridge", "regmix", *LAWS])
@FEW
@given(data=runs(), copies=st.integers(2, 3))
def test_every_run_repeated_fits_as_the_runs_once(name: str, data: tuple, copies: int) -> None:
    """The same runs each given ``copies`` times: least squares and a Huber loss have the same
    minimum, the ridge's leave-one-out choice aside."""
    X, y, seed = own_form(name, data)
    Xt = fresh(X.shape[1], seed)
    a = fit_quietly(fitter(name), X, y).predict(Xt)
    b = fit_quietly(fitter(name), np.tile(X, (copies, 1)), np.tile(y, copies)).predict(Xt)
    if name in ("log-ridge", "regmix"):  # its penalty (its leaves' run counts) is chosen on the runs given
        assert np.all(np.isfinite(b))
        return
    tol = 1e-8 if name in EXACT else 0.02 * np.ptp(y) + 0.01
    np.testing.assert_allclose(a, b, atol=tol)


# ---- each law finds the parameters planted in data of its own form ------------------------------

NOISE = 0.002


def planted(name: str, X: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Noise-free targets of law ``name`` at X with parameters drawn in the ranges real losses take."""
    k = X.shape[1]
    if name == "mixing-law":  # c + exp(b + t·x)
        return rng.uniform(1, 3) + np.exp(rng.uniform(-1, 0.5) + X @ rng.normal(0, 1, k))
    if name == "loglinear":  # exp(c) + exp(t·x)
        return np.exp(rng.uniform(-0.5, 1)) + np.exp(X @ rng.uniform(-2, 1, k))
    F, alpha = rng.uniform(0.2, 1.0, k), rng.uniform(0.02, 0.3, k)  # Σ F_i (x_i + ε)^(-α_i)
    return ((X + 1e-3) ** -alpha) @ F


@pytest.mark.parametrize("name", LAWS)
@FEW
@given(k=st.integers(2, 4), seed=st.integers(0, 2**31 - 1))
def test_each_law_recovers_its_planted_parameters(name: str, k: int, seed: int) -> None:
    """Fitted on runs of its own form (4 runs per parameter, noise 0.002), a law predicts new
    mixtures within 5% of the landscape's range of the truth, or says that it did not converge.
    New mixtures within the runs' range of each weight: beyond it, several laws fit the runs."""
    rng = np.random.default_rng(seed)
    n = 4 * 2 * k + 4
    X = rng.dirichlet(np.full(k, 2.0), n + 64)
    lo, hi = X[:n].min(axis=0), X[:n].max(axis=0)
    inside = np.all((lo <= X) & (hi >= X), axis=1)
    inside[:n] = True
    X = X[inside]
    truth = planted(name, X, rng)
    y = truth[:n] + rng.normal(0, NOISE, n)
    assume(np.ptp(truth) > 20 * NOISE and y.min() > 0 and len(X) > n + 4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = fitter(name).fit(X[:n], y)
    if any("did not converge" in str(w.message) for w in caught):
        return
    err = np.abs(model.predict(X[n:]) - truth[n:])
    assert err.max() <= 0.05 * np.ptp(truth) + 5 * NOISE, (err.max(), np.ptp(truth))


# ---- cross-validation ----------------------------------------------------------------------------

class Spy:
    """A fitter that predicts its training runs' mean and records, per fit, the rows it saw."""

    seen: list[set[bytes]] = []

    def get_params(self, deep: bool = True) -> dict:
        return {}

    def set_params(self, **params: object) -> Spy:
        return self

    def fit(self, X: np.ndarray, y: np.ndarray) -> Spy:
        Spy.seen.append({row.tobytes() for row in np.asarray(X, dtype=float)})
        self.mean_ = float(np.mean(y))
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.full(len(X), self.mean_)


def figures(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Spearman (Pearson of average ranks), Pearson, MAE and mean relative error, worked out here."""
    from scipy.stats import rankdata

    def pearson(a: np.ndarray, b: np.ndarray) -> float:
        if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
            return math.nan
        a, b = a - a.mean(), b - b.mean()
        return float(a @ b / math.sqrt((a @ a) * (b @ b)))

    return {"spearman": pearson(rankdata(y), rankdata(pred)), "pearson": pearson(y, pred),
            "mae": float(np.mean(np.abs(pred - y))),
            "rel_error": float(np.mean(np.abs(pred - y) / np.abs(y)))}


def same_figures(got: dict[str, float], want: dict[str, float]) -> None:
    for key, value in want.items():
        if math.isnan(value):
            assert math.isnan(got[key]), key
        else:
            assert got[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key


@st.composite
def cv_runs(draw: st.DrawFn) -> tuple:
    """Runs of m distinct mixtures, some run more than once (other seeds), in shuffled order."""
    m = draw(st.integers(2, 14))
    k = draw(st.integers(2, 4))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    mixtures = rng.dirichlet(np.ones(k), m)
    reps = draw(st.lists(st.integers(1, 3), min_size=m, max_size=m))
    which = rng.permutation(np.repeat(np.arange(m), reps))
    y = 2.0 + mixtures[which] @ rng.normal(0, 1, k) + rng.normal(0, 0.05, len(which))
    folds = draw(st.integers(2, m))
    return mixtures[which], y, folds, draw(st.integers(0, 100))


@SOME
@given(data=cv_runs())
def test_cv_trains_each_fold_on_the_other_folds_only(data: tuple) -> None:
    X, y, k, seed = data
    Spy.seen = []
    try:
        res = cross_validate(Spy(), X, y, k=k, seed=seed)
    except MixoptError as exc:  # a fold of one training run: refused, as it says
        assert "fits fold" in str(exc) and "on 1 run" in str(exc)
        return
    assert len(Spy.seen) == len(res.fold_metrics) == k
    assert sorted(set(res.folds.tolist())) == list(range(k))  # every run predicted, by one fold
    groups = mixture_groups(X)
    for i, seen in enumerate(Spy.seen):
        test = res.folds == i
        train = ~test
        assert seen == {row.tobytes() for row in X[train]}  # the other folds, all of them
        assert not seen & {row.tobytes() for row in X[test]}  # not a copy of a test mixture either
        assert not set(groups[test]) & set(groups[train])
        np.testing.assert_allclose(res.pred[test], y[train].mean(), rtol=1e-12)
        same_figures(res.fold_metrics[i], figures(y[test], res.pred[test]))
    same_figures(res.metrics, figures(y, res.pred))
    # the same splits as kfold_splits gives, and as the same seed gives again
    for i, (_, test) in enumerate(kfold_splits(X, k, seed)):
        assert set(test.tolist()) == set(np.flatnonzero(res.folds == i).tolist())


@SOME
@given(data=cv_runs())
def test_cv_figures_of_a_real_fitter_are_its_out_of_fold_predictions(data: tuple) -> None:
    X, y, k, seed = data
    try:
        res = cross_validate(get_fitter("linear"), X, y, k=k, seed=seed)
    except MixoptError as exc:  # a fold of one training run
        assert "on 1 run" in str(exc)
        return
    for train, test in kfold_splits(X, k, seed):
        model = fit_quietly(get_fitter("linear"), X[train], y[train])
        np.testing.assert_allclose(res.pred[test], model.predict(X[test]), rtol=1e-9, atol=1e-9)
    same_figures(res.metrics, figures(y, res.pred))


# ---- the objective -------------------------------------------------------------------------------

DOMAIN = st.text(st.characters(blacklist_categories=("Cc", "Zl", "Zp", "Cs"), blacklist_characters=",="),
                 min_size=1, max_size=12).map(str.strip).filter(bool).filter(
                     lambda d: d != "mean" and not is_pattern(d))
WEIGHT = st.one_of(st.floats(0, 1e6), st.just(0.0), st.integers(0, 5).map(float), st.floats(1e-300, 1e-3))
VALUE = st.one_of(st.floats(-10, 10), st.floats(0, 1e6), st.sampled_from([math.nan, math.inf, -math.inf]))


@SOME
@given(weights=st.dictionaries(DOMAIN, WEIGHT, min_size=1, max_size=6), data=st.data(),
       metric=st.sampled_from(["loss", "bpb"]), spaced=st.booleans())
def test_objective_is_the_weighted_mean_the_target_names(weights: dict, data: st.DataObject, metric: str,
                                                         spaced: bool) -> None:
    """``--target a=2,b=1`` is (2·a + 1·b) / 3 of ``<metric>/<domain>``; names without weights are
    their mean; a metric the objective weighs that is missing or not finite makes it NaN; one of weight 0 is
    not read."""
    assume(sum(weights.values()) > 0)
    others = data.draw(st.lists(DOMAIN.filter(lambda d: d not in weights), max_size=3, unique=True))
    domains = list(weights) + others
    sep = " , " if spaced else ","
    # names alone where every weight is 1 (their mean); a list weighting some names only is refused
    bare = spaced and all(w == 1.0 for w in weights.values())
    text = sep.join(d if bare else f"{d}={w!r}" for d, w in weights.items())
    obj = Objective.parse(text, metric)
    assert dict(obj.weights) == weights
    metrics = {f"{metric}/{d}": data.draw(VALUE) for d in domains}
    if data.draw(st.booleans()):
        metrics.pop(f"{metric}/{data.draw(st.sampled_from(domains))}")
    needed = [d for d, w in weights.items() if w > 0]
    got = obj.value(metrics, domains)
    if any(not math.isfinite(metrics.get(f"{metric}/{d}", math.nan)) for d in needed):
        assert math.isnan(got)
        return
    top = max(weights.values())  # the weights relative to the largest, as 1e308 sums to inf
    want = math.fsum(weights[d] / top * metrics[f"{metric}/{d}"] for d in needed) / math.fsum(
        weights[d] / top for d in needed)
    scale = max(1.0, *(abs(metrics[f"{metric}/{d}"]) for d in needed))
    assert got == pytest.approx(want, rel=1e-9, abs=1e-9 * scale)
    assert sum(obj.metric_weights(domains).values()) == pytest.approx(1.0)
    # the mean over all domains weighs each one equally
    mean = Objective.parse(None, metric).value(metrics, domains)
    values = [metrics.get(f"{metric}/{d}", math.nan) for d in domains]
    if all(math.isfinite(v) for v in values):
        assert mean == pytest.approx(math.fsum(values) / len(values), rel=1e-9, abs=1e-9)
    else:
        assert math.isnan(mean)


@SOME
@given(weights=st.dictionaries(DOMAIN, st.floats(1e-300, 1e308) | st.sampled_from([1.0, 2.0, 1e308]),
                               min_size=1, max_size=5),
       seed=st.integers(0, 1000))
def test_a_tables_target_is_the_weighted_mean_of_its_columns(weights: dict, seed: int) -> None:
    """``fit --target c1=w1,c2=w2`` reads the run table's columns as the objective reads metrics."""
    import polars as pl

    from mixopt.tables import RunTable

    rng = np.random.default_rng(seed)
    cols = {c: rng.normal(2, 1, 5) for c in weights}
    table = RunTable(domains=("a", "b"), X=rng.dirichlet(np.ones(2), 5), metrics=pl.DataFrame(cols),
                     run_ids=[str(i) for i in range(5)], key="run")
    text = ",".join(f"{c}={w!r}" for c, w in weights.items())
    top = max(weights.values())
    share = {c: w / top / math.fsum(v / top for v in weights.values()) for c, w in weights.items()}
    want = [math.fsum(share[c] * cols[c][i] for c in cols) for i in range(5)]
    np.testing.assert_allclose(table.target(text), want, rtol=1e-12, atol=1e-12)
    assert sum(table.target_weights(text).values()) == pytest.approx(1.0)


# ---- bad input -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["regmix", "linear", "gp", "log-ridge", "auto", *LAWS])
@FEW
@given(n=st.integers(1, 8), k=st.integers(1, 4), seed=st.integers(0, 1000),
       spoil=st.sampled_from(["nan", "inf", "-inf", "held", "one mixture", "none"]))
def test_bad_runs_are_one_mixopt_error(name: str, n: int, k: int, seed: int, spoil: str) -> None:
    """Few runs, a NaN or infinite target, domains no run varied: a fit, or one MixoptError; never
    another exception, and never a non-finite prediction."""
    rng = np.random.default_rng(seed)
    X = rng.dirichlet(np.ones(k), n)
    y = 2.0 + rng.normal(0, 0.1, n)
    if spoil in ("nan", "inf", "-inf"):
        y[rng.integers(n)] = float(spoil)
    elif spoil == "held":
        X[:, 0] = X[0, 0]
    elif spoil == "one mixture":
        X[:] = X[0]
    try:
        model = fit_quietly(fitter(name), X, y)
    except MixoptError as exc:
        assert "\n" not in str(exc)
        return
    assert spoil not in ("nan", "inf", "-inf")
    assert np.all(np.isfinite(model.predict(fresh(k, seed))))


# ---- cases hypothesis found ----------------------------------------------------------------------

def test_a_nan_or_infinite_target_is_one_line_for_every_fitter() -> None:
    """regmix and linear let scikit-learn's "Input y contains NaN" out (a ValueError), and every
    fitter did so for an infinite target."""
    rng = np.random.default_rng(0)
    X = rng.dirichlet(np.ones(3), 12)
    for bad, said in ((math.nan, "NaN"), (math.inf, "infinite")):
        y = 2.0 + X @ [0.1, 0.5, -0.2]
        y[3] = bad
        for name in ("regmix", "linear", "gp", "log-ridge", "auto", *LAWS):
            said_here = rf"^{name}: the target is {said} in 1 run\(s\) \(rows 3\)"
            with pytest.raises(MixoptError, match=said_here):
                fitter(name).fit(X, y)


def test_linear_on_runs_of_one_mixture_predicts_their_mean() -> None:
    """Least squares fitted slopes to the rounding of the centred weights: 12 runs of one mixture
    (mean 2.19) predicted 1.02 to 2.92 for other mixtures. One run is refused, as regmix does."""
    rng = np.random.default_rng(0)
    X = rng.dirichlet(np.ones(3), 12)
    y = 2 + X @ [0.1, 0.5, -0.2]
    model = get_fitter("linear").fit(np.tile(X[:1], (12, 1)), y)
    np.testing.assert_allclose(model.predict(X), y.mean(), rtol=1e-12)
    assert not np.any(model.coef_)
    held = np.column_stack([X[:, :2] * 0.8, np.full(12, 0.2)])  # a domain at 0.2 in every run
    two = get_fitter("linear").fit(held, np.column_stack([y, 2 * y]))
    assert two.coef_.shape == (2, 3) and not np.any(two.coef_[:, 2])
    said = r"^linear needs at least 2 runs to fit, got 1 sample\(s\); add runs$"
    with pytest.raises(MixoptError, match=said):
        get_fitter("linear").fit(X[:1], y[:1])


def test_a_tables_target_of_huge_weights_is_their_weighted_mean() -> None:
    """``fit --target a=1e308,b=1e308`` summed the weights to inf and made every weight 0: every
    run's target was 0, silently (the objective had been fixed for it; the table had its own sum)."""
    import polars as pl

    from mixopt.tables import RunTable

    table = RunTable(domains=("a", "b"), X=np.array([[0.5, 0.5], [0.2, 0.8]]),
                     metrics=pl.DataFrame({"a": [2.0, 3.0], "b": [4.0, 5.0]}), run_ids=["1", "2"], key="run")
    assert table.target_weights("a=1e308,b=1e308") == {"a": 0.5, "b": 0.5}
    np.testing.assert_allclose(table.target("a=1e308,b=1e308"), [3.0, 4.0])


def test_cross_validation_names_the_callers_row_of_a_nan_target() -> None:
    """A fold's fitter named the row within its training runs (row 5 for the caller's row 7), and a
    user's scikit-learn regressor let out scikit-learn's ValueError."""
    from sklearn.ensemble import RandomForestRegressor

    rng = np.random.default_rng(0)
    X = rng.dirichlet(np.ones(3), 12)
    y = 2 + X @ [0.1, 0.5, -0.2]
    y[7] = math.nan
    for model in (fitter("mixing-law"), RandomForestRegressor(n_estimators=5)):
        said = r"^cross-validation: the target is NaN in 1 run\(s\) \(rows 7\)"
        with pytest.raises(MixoptError, match=said):
            cross_validate(model, X, y, k=3)



def test_a_target_too_large_for_squared_errors_is_refused_by_every_fitter() -> None:
    """A QA pass: metrics of -1e308 gave `fit --method linear --cv 3` a table of NaN, exit 0, and its
    --propose a predicted loss 300 digits long; regmix alone refused them (LightGBM's float32)."""
    from mixopt.fitters.protocol import MAX_TARGET

    rng = np.random.default_rng(0)
    X = rng.dirichlet(np.ones(3), 12)
    y = -(1 + X @ [0.1, 0.5, 0.2]) * 1e300
    for name in ("linear", "log-ridge", "gp", "mixing-law", "auto"):
        with pytest.raises(MixoptError, match=rf"^{name}: the target reaches 1.\d+e\+300 in magnitude, past "
                                              r"1e100, where a fit's squared errors overflow; rescale"):
            fitter(name).fit(X, y)
    with pytest.raises(MixoptError, match=r"^cross-validation: the target reaches"):
        cross_validate(fitter("linear"), X, y, k=3)
    edge = np.full(12, MAX_TARGET)  # at the bound: taken (refused past it only)
    edge[0] = -MAX_TARGET
    fitter("linear").fit(X, edge)
