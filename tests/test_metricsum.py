"""The laws fit the objective as the sum of one law per metric (as Data Mixing Laws, BiMix and Olmix
do), not as one law of the averaged loss: MetricSum, its exact solve, cross-validation, `fit`."""

from __future__ import annotations

import numpy as np
import pytest

from mixopt import testing
from mixopt.errors import MixoptError, MixoptWarning
from mixopt.fitters.cv import cross_validate
from mixopt.fitters.metricsum import MetricSum
from mixopt.fitters.mixing_law import MixingLawFitter
from mixopt.methods import fit_target, get_method
from mixopt.proposers.exact import ExactProposer
from mixopt.space import SearchSpace

DOMAINS = ("web", "code", "math", "books")


def landscape(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Mixtures and their noise-free per-domain losses on mixopt.testing's landscape (one
    c + k·exp(t·r) per domain: the mean of them is not of that form)."""
    X = np.random.default_rng(seed).dirichlet(np.ones(len(DOMAINS)), n)
    Y = np.array([list(testing.true_losses(dict(zip(DOMAINS, x, strict=True))).values()) for x in X])
    return X, Y


def test_sum_of_per_domain_laws_predicts_the_objective() -> None:
    X, Y = landscape(60, seed=0)
    Xte, Yte = landscape(200, seed=1)
    w = np.full(len(DOMAINS), 0.25)
    model = MetricSum(MixingLawFitter(n_starts=8), weights=tuple(w)).fit(X, Y)
    np.testing.assert_allclose(model.predict(Xte), Yte @ w, rtol=1e-4)
    np.testing.assert_allclose(model.predict_metrics(Xte), Yte, rtol=1e-4)
    mean, std = model.predict(Xte[:3], return_std=True)
    assert std is None and mean.shape == (3,)
    # One law on the mean misses by far more: the reason the laws are fitted per metric.
    single = MixingLawFitter(n_starts=8).fit(X, Y @ w)
    assert np.abs(single.predict(Xte) - Yte @ w).max() > 20 * np.abs(model.predict(Xte) - Yte @ w).max()


@pytest.mark.slow  # 13-33 s: in CI with the other slow tests, out of the default suite
def test_exact_solve_of_the_sum_finds_the_true_optimum() -> None:
    X, Y = landscape(60, seed=2)
    space = SearchSpace(domains=DOMAINS, ceilings={"web": 0.5})
    model = MetricSum(MixingLawFitter(n_starts=8), weights=(0.25,) * 4).fit(X, Y)
    prop = ExactProposer(kl=0.0).propose(model, space)
    assert prop.info["solver"] == "SLSQP" and prop.weights[0] <= 0.5 + 1e-9
    # Brute force over the true objective inside the same space.
    cand = np.random.default_rng(3).dirichlet(np.ones(4), 50_000)
    cand = cand[space.contains_rows(cand)]
    best = min(testing.true_objective(dict(zip(DOMAINS, c, strict=True))) for c in cand)
    got = testing.true_objective(dict(zip(DOMAINS, prop.weights, strict=True)))
    assert got <= best + 1e-4
    assert prop.predicted == pytest.approx(got, abs=1e-3)


def test_cross_validation_scores_the_objective_of_the_columns() -> None:
    X, Y = landscape(40, seed=4)
    model = MetricSum(MixingLawFitter(n_starts=4), weights=(0.25,) * 4)
    res = cross_validate(model, X, Y, k=4, seed=0)
    assert res.metrics["spearman"] > 0.99
    np.testing.assert_allclose(res.pred, Y.mean(axis=1), rtol=1e-3)


def test_methods_wrap_only_the_laws_on_several_metrics() -> None:
    metrics = {f"loss/{d}": 0.25 for d in DOMAINS}
    for name in ("mixing-law", "loglinear", "bimix"):
        m = get_method(name).make_fitter(domains=DOMAINS, metrics=metrics)
        assert isinstance(m, MetricSum) and list(m.names) == list(metrics)
        one = get_method(name).make_fitter(domains=DOMAINS, metrics={"loss/web": 1.0})
        assert not isinstance(one, MetricSum) and one.targets == ("loss/web",)
    for name in ("regmix", "gp", "auto", "log-ridge"):
        assert not isinstance(get_method(name).make_fitter(domains=DOMAINS, metrics=metrics), MetricSum)
    y, Y = np.zeros(3), np.zeros((3, 4))
    law = get_method("mixing-law").make_fitter(metrics=metrics)
    assert fit_target(law, y, Y) is Y and fit_target(get_method("regmix").make_fitter(), y, Y) is y
    with pytest.raises(MixoptError, match="every metric"):
        fit_target(law, y, None)
    with pytest.raises(MixoptError, match="one column per metric"):
        law.fit(np.full((3, 4), 0.25), np.zeros((3, 2)))


def test_fit_cli_mean_target_fits_one_law_per_column(tmp_path) -> None:  # noqa: ANN001
    from mixopt.fit.on_tables import FitConfig, fit_tables

    X, Y = landscape(40, seed=5)
    ratios = tmp_path / "r.csv"
    metrics = tmp_path / "m.csv"
    ratios.write_text("run," + ",".join(DOMAINS) + "\n"
                      + "".join(f"{i}," + ",".join(f"{v:.12f}" for v in x) + "\n" for i, x in enumerate(X)))
    metrics.write_text("run," + ",".join(f"loss_{d}" for d in DOMAINS) + "\n"
                       + "".join(f"{i}," + ",".join(f"{v:.12f}" for v in y) + "\n" for i, y in enumerate(Y)))
    rep = fit_tables(FitConfig(ratios=ratios, metrics=metrics, target="mean", method="mixing-law", cv=4,
                               propose=True, out=tmp_path / "mix.json", kl=0.0))
    assert rep.cv["spearman"] > 0.99 and rep.per_metric == 4
    got = testing.true_objective(rep.proposal["weights"])
    assert rep.proposal["predicted"] == pytest.approx(got, abs=1e-3)


@pytest.mark.parametrize("per_metric", [False, True])
def test_a_domain_no_run_varied_is_held_where_the_runs_had_it(per_metric: bool) -> None:
    X, Y = landscape(40, seed=6)
    X = np.column_stack([X * 0.9, np.full(len(X), 0.1)])  # a fifth domain at 0.1 in every run
    X = X / X.sum(axis=1, keepdims=True)  # renormalised: the constant column jitters by ~1e-17
    doms = (*DOMAINS, "held")
    space = SearchSpace(domains=doms)
    law = MixingLawFitter(n_starts=4, domains=doms)
    model = MetricSum(law, weights=(0.25,) * 4) if per_metric else law
    with pytest.warns(MixoptWarning, match="held have the same weight in every run"):
        model.fit(X, Y if per_metric else Y.mean(axis=1))
    prop = ExactProposer(kl=0.1).propose(model, space)  # the KL term alone would move it to 0.2
    assert prop.weights[4] == pytest.approx(0.1, abs=1e-12) and prop.info["held"] == {"held": 0.1}
    # A ceiling below that weight holds it at the ceiling (it had been left free, for the KL term to
    # move anywhere below it); floors that leave no room for it free the solve (found by review: that
    # raised instead).
    capped = SearchSpace(domains=doms, ceilings={"held": 0.05})
    prop = ExactProposer(kl=0.1).propose(model, capped)
    assert prop.weights[4] == pytest.approx(0.05, abs=1e-12) and prop.info["held"] == {"held": 0.05}
    floored = SearchSpace(domains=doms, floors={"web": 0.5, "code": 0.45})
    prop = ExactProposer(kl=0.1).propose(model, floored)
    assert "held" not in prop.info and prop.weights[4] < 0.1


def test_law_predictions_stay_within_the_targets_range_widened_by_its_span() -> None:
    # Runs on a corner of the simplex only: far from them the fitted exponent blows up.
    X = np.random.default_rng(7).dirichlet([20.0, 1.0, 1.0, 1.0], 30)
    y = 2.0 + np.exp(8.0 * X[:, 1] - 3.0 * X[:, 0])
    law = MixingLawFitter(n_starts=4).fit(X, y)
    far = np.array([[0.0, 1.0, 0.0, 0.0]])
    lo, hi = y.min() - np.ptp(y), y.max() + np.ptp(y)
    assert lo <= law.predict(far)[0] <= hi
    const, off, A = law.exp_terms()  # the convex form the exact solve uses is the law itself
    assert const[0] + np.exp(off[0] + far[0, law.keep_] @ A[0]) > hi


def test_auto_fits_its_law_candidates_per_metric_given_the_metric_columns() -> None:
    X, Y = landscape(40, seed=8)
    metrics = {f"loss/{d}": 0.25 for d in DOMAINS}
    auto = get_method("auto").make_fitter(domains=DOMAINS, metrics=metrics)
    auto.set_params(candidates=("mixing-law", "linear"))
    target = fit_target(auto, Y.mean(axis=1), Y)
    assert target is Y
    auto.fit(X, target)
    rows = {r["name"]: r for r in auto.cv_table_}
    assert rows["mixing-law"]["per_metric"] and not rows["linear"]["per_metric"]
    assert auto.chosen_ == "mixing-law" and rows["mixing-law"]["spearman"] > 0.99
    Xte, Yte = landscape(100, seed=9)
    np.testing.assert_allclose(auto.predict(Xte), Yte.mean(axis=1), rtol=1e-3)
    prop = ExactProposer(kl=0.0).propose(auto, SearchSpace(domains=DOMAINS))  # the sum, solved exactly
    assert prop.info["solver"] == "SLSQP"
    true = testing.true_objective(dict(zip(DOMAINS, prop.weights, strict=True)))
    assert prop.predicted == pytest.approx(true, abs=1e-3)


def test_auto_holds_a_domain_no_run_varied_whatever_it_chose() -> None:
    """auto's top-k path (a GP, trees) held nothing: candidates spread the constant domain over
    weights no run tried. Now auto, like a law, holds it where the runs had it."""
    from mixopt.fitters.auto import AutoFitter

    X, Y = landscape(40, seed=7)
    X = np.column_stack([X * 0.9, np.full(len(X), 0.1)])
    doms = (*DOMAINS, "held")
    space = SearchSpace(domains=doms)
    for candidates in (("gp", "linear"), ("mixing-law",)):  # top-k fallback, and the exact solve
        model = AutoFitter(candidates=candidates, k=3, ensemble=False).fit(X, Y.mean(axis=1))
        prop = ExactProposer(kl=0.1).propose(model, space)
        assert prop.weights[4] == pytest.approx(0.1, abs=1e-9) and prop.info["held"] == {"held": 0.1}


def test_per_domain_refits_take_the_objective_fits_form() -> None:
    """A search's per-domain predictions refit the objective's law on every domain's loss; BiMix had
    been refitted without the metrics' names, so in its form over every domain's share, and with
    --target c,d its loss/c (1.70) disagreed with the objective's own fit of it (1.39; a QA pass)."""
    from types import SimpleNamespace

    from mixopt.fitters.bimix import BiMixFitter
    from mixopt.objective import Objective
    from mixopt.search.driver import _per_domain

    X, Y = landscape(40, 3)
    domains = [f"d{i}" for i in range(X.shape[1])]
    keys = [f"loss/{d}" for d in domains]
    sub = [1, 2]  # --target d1,d2
    law = BiMixFitter(domains=tuple(domains))
    fitter = MetricSum(law, weights=[0.5, 0.5], names=[keys[i] for i in sub]).fit(X, Y[:, sub])
    W = X[:3]
    store = SimpleNamespace(metric_rows=lambda ids, names: Y[:, [keys.index(n) for n in names]])
    prep = SimpleNamespace(config=SimpleNamespace(metric="loss"), domains=domains, store=store,
                           objective=Objective())
    per = _per_domain(fitter, prep, X, [str(i) for i in range(len(X))], W, fit_seconds=0.0)
    np.testing.assert_allclose(per[:, sub], fitter.predict_metrics(W), rtol=1e-6)


def test_scikit_learn_scores_the_objective() -> None:
    """sklearn's cross_val_score had returned NaN for each fold of a MetricSum (a QA pass)."""
    from sklearn.model_selection import cross_val_score

    X, Y = landscape(40, 5)
    ms = MetricSum(MixingLawFitter(n_starts=4), weights=[0.25] * 4, names=[f"loss/{d}" for d in DOMAINS])
    scores = cross_val_score(ms, X, Y, cv=3)
    assert np.all(np.isfinite(scores)) and scores.min() > 0.9
