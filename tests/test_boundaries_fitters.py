"""Boundaries and behaviours of the fitters and proposers that the tests had checked only far from the
threshold, or not at all: a mutation pass changed each (the change in its docstring) and no test failed.
Each fails on it now."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from mixopt.errors import MixoptError, MixoptWarning, TooFewRunsError


# ----- regmix.py ----------------------------------------------------------------------------
def test_regmix_refuses_a_single_run() -> None:
    """The tests had passed with this changed: `len(y) < 2` -> `len(y) < 1` in RegMixFitter.fit."""
    from mixopt.fitters.regmix import RegMixFitter

    with pytest.raises(TooFewRunsError, match="at least 2 runs"):
        RegMixFitter(n_estimators=5).fit(np.array([[0.5, 0.5]]), np.array([3.0]))


def test_regmix_leaf_floor_is_two_runs_on_a_tiny_swarm() -> None:
    """The tests had passed with this changed: `max(2, len(Y) // 8)` -> `max(1, len(Y) // 8)`."""
    from mixopt.fitters.regmix import RegMixFitter

    rng = np.random.default_rng(0)
    X = rng.dirichlet(np.ones(3), 12)
    m = RegMixFitter(n_estimators=5).fit(X, X[:, 0])
    assert m.min_child_samples_ == 2
    assert m.models_[0].get_params()["min_child_samples"] == 2


def test_regmix_predicts_many_rows_through_the_fast_scorer(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests had passed with this changed: `len(X) >= FAST_PREDICT_ROWS` -> `len(X) >= 10**9` (the
    compiled scorer never used; the same numbers, ten times slower)."""
    from mixopt.fitters.regmix import FAST_PREDICT_ROWS, RegMixFitter
    from mixopt.fitters.treescore import TreeScorer

    rows: list[int] = []
    real = TreeScorer.predict

    def counted(self: TreeScorer, X: np.ndarray, n_threads: int | None = None) -> np.ndarray:
        rows.append(len(X))
        return real(self, X, n_threads)

    monkeypatch.setattr(TreeScorer, "predict", counted)
    rng = np.random.default_rng(0)
    X = rng.dirichlet(np.ones(3), 40)
    m = RegMixFitter(n_estimators=5).fit(X, X[:, 0])
    m.predict(rng.dirichlet(np.ones(3), FAST_PREDICT_ROWS - 1))
    assert rows == []
    m.predict(rng.dirichlet(np.ones(3), FAST_PREDICT_ROWS))
    assert rows == [FAST_PREDICT_ROWS]


# ----- treescore.py -------------------------------------------------------------------------
def _thresholds(booster: object) -> list[tuple[int, float]]:
    out: list[tuple[int, float]] = []

    def walk(node: dict) -> None:
        if "split_index" in node:
            out.append((int(node["split_feature"]), float(node["threshold"])))
            walk(node["left_child"])
            walk(node["right_child"])

    for tree in booster.dump_model()["tree_info"]:  # type: ignore[attr-defined]
        walk(tree["tree_structure"])
    return out


def test_fast_scorer_sends_a_value_equal_to_the_threshold_left() -> None:
    """The tests had passed with this changed: `thr[mid] < x` -> `thr[mid] <= x` in the scorer's binary
    search (a value exactly at a split's threshold is ``<=`` it, and goes left)."""
    from mixopt.fitters.regmix import RegMixFitter
    from mixopt.fitters.treescore import TreeScorer

    rng = np.random.default_rng(0)
    X = rng.dirichlet(np.ones(4), 200)
    booster = RegMixFitter(n_estimators=20).fit(X, X[:, 0] ** 2 + np.sin(5 * X[:, 1])).models_[0].booster_
    thr = _thresholds(booster)
    C = np.tile(X[:1], (len(thr), 1))
    for i, (f, t) in enumerate(thr):
        C[i, f] = t
    scorer = TreeScorer.from_booster(booster)
    assert scorer is not None
    np.testing.assert_allclose(scorer.predict(C), booster.predict(C), rtol=0, atol=1e-12)


def test_fast_scorer_declines_zero_as_missing_splits() -> None:
    """The tests had passed with this changed: dropping `missing_type == "Zero"` from the splits
    TreeScorer.from_booster declines (a 0 there goes LightGBM's default way, not by the threshold)."""
    import lightgbm

    from mixopt.fitters.treescore import TreeScorer

    rng = np.random.default_rng(0)
    X = rng.dirichlet(np.ones(4), 200)
    X[::3, 0] = 0.0
    model = lightgbm.LGBMRegressor(n_estimators=10, zero_as_missing=True, min_child_samples=5, verbosity=-1)
    model.fit(X, X[:, 0] + np.sin(5 * X[:, 1]))
    assert TreeScorer.from_booster(model.booster_) is None


# ----- fewruns.py ---------------------------------------------------------------------------
def test_few_runs_warning_names_the_runs_needed_rounded_up() -> None:
    """The tests had passed with this changed: `math.ceil(RUNS_PER_PARAMETER * params)` -> `int(...)`
    (3 parameters need 4.5 runs: "fewer than 4" had been said of 4 runs)."""
    from mixopt.errors import FewRunsWarning
    from mixopt.fitters.fewruns import warn_few_runs

    with pytest.warns(FewRunsWarning, match="with fewer than 5 runs"):
        warn_few_runs("linear", 3, 2, 4)


# ----- bimix.py -----------------------------------------------------------------------------
def test_bimix_own_share_law_sits_in_its_domains_column_past_a_dropped_domain() -> None:
    """The tests had passed with this changed: `col = int(np.count_nonzero(self.keep_[:own]))` ->
    `col = own` (with a constant domain before it, a domain's own law went into the next one's column)."""
    from mixopt.fitters.bimix import BiMixFitter

    rng = np.random.default_rng(7)
    X = np.column_stack([np.full(12, 0.25), rng.dirichlet(np.ones(3), 12) * 0.75])
    A, alpha = 2.0, 0.3
    y = A * (X[:, 2] + 1e-3) ** -alpha  # the loss of "c", the second varying domain
    with pytest.warns(MixoptWarning, match="same weight in every run"):
        m = BiMixFitter(domains=("a", "b", "c", "d"), targets=("loss/c",)).fit(X, y)
    assert m.own_ == [2]
    F, ah, _ = m.power_terms()
    np.testing.assert_allclose(F[0], [0.0, 0.0, A, 0.0], atol=1e-4)
    np.testing.assert_allclose(ah[0, 2], alpha, atol=1e-4)
    np.testing.assert_allclose(m.predict(X), y, rtol=1e-5)


# ----- groups.py ----------------------------------------------------------------------------
def test_a_group_of_one_domain_adds_no_feature() -> None:
    """The tests had passed with this changed: `groups.count(g) > 1` -> `groups.count(g) >= 1` in
    group_matrix (a source of one topic had added a copy of that topic's weight)."""
    from mixopt.fitters.groups import group_matrix

    G = group_matrix(("web", "web", "code", "books", "books"), 5, fitter="gp")
    np.testing.assert_array_equal(G, [[1, 0], [1, 0], [0, 0], [0, 1], [0, 1]])
    assert group_matrix(("a", "b", "c"), 3, fitter="gp").shape == (3, 0)


def _checkpoints(n: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of n two-domain mixtures at steps 250, 500 and 1000, on a planted BiMix law."""
    X = np.repeat(np.random.default_rng(seed).dirichlet(np.ones(2), n), 3, axis=0)
    steps = np.tile([250.0, 500.0, 1000.0], n)
    y = ((X + 1e-3) ** -np.array([0.2, 0.4]) * (np.array([0.3, 0.5]) * (steps[:, None] / 1000) ** -0.5
                                                 + np.array([1.0, 0.6]))).sum(axis=1)
    return X, y, steps


def test_bimix_refuses_a_step_of_zero_and_an_at_step_of_zero() -> None:
    """The tests had passed with this changed: `steps.min() <= 0` -> `steps.min() < 0`, and
    `self.at_step > 0` -> `self.at_step >= 0` in BiMixFitter.fit."""
    from mixopt.fitters.bimix import BiMixFitter

    X, y, steps = _checkpoints()
    with pytest.raises(MixoptError, match="steps must be one positive number per run"):
        BiMixFitter(n_starts=2).fit(X, y, steps=np.where(steps == 250.0, 0.0, steps))
    with pytest.raises(MixoptError, match="at_step must be a positive number"):
        BiMixFitter(n_starts=2, at_step=0.0).fit(X, y, steps=steps)


def test_bimix_refuses_an_at_step_when_every_row_is_at_one_step() -> None:
    """The tests had passed with this changed: dropping the refusal of ``at_step`` when every row is at
    one step (the law then has no step term: its predictions at ``at_step`` were the last step's)."""
    from mixopt.fitters.bimix import BiMixFitter

    X, y, _ = _checkpoints()
    with pytest.raises(MixoptError, match="no step term can be fitted"):
        BiMixFitter(n_starts=2, at_step=2000.0).fit(X, y, steps=np.full(len(X), 1000.0))


def test_bimix_at_step_is_where_predict_and_power_terms_evaluate() -> None:
    """The tests had passed with this changed: `steps = self.at_step if self.at_step is not None else
    self.step_ref_` -> `steps = self.step_ref_`, and the step factor's sign in power_terms
    (`np.exp(prm[:k] - ...)` -> `np.exp(prm[:k] + ...)`, the same at the last training step only)."""
    from mixopt.fitters.bimix import BiMixFitter

    X, y, steps = _checkpoints()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MixoptWarning)
        m = BiMixFitter(n_starts=4, at_step=2000.0).fit(X, y, steps=steps)
    W = X[::3]
    far = m.predict(W)
    np.testing.assert_allclose(far, m.predict(W, steps=2000.0))
    assert np.all(far < m.predict(W, steps=1000.0))  # the loss still falls past the last checkpoint
    F, alpha, eps = m.power_terms()
    np.testing.assert_allclose((F * (W + eps) ** -alpha).sum(axis=1), far, rtol=1e-9)


# ----- varied.py ----------------------------------------------------------------------------
def test_rounding_jitter_is_no_variation_and_a_millionth_is() -> None:
    """The tests had passed with these changed: `np.ptp(X, axis=0) > VARY_TOL` -> `> 0` (a renormalised
    row's 1e-17 jitter counted as a varied domain), and `VARY_TOL = 1e-9` -> `1e-3`."""
    from mixopt.fitters.varied import unvaried, varying

    X = np.array([[0.1, 0.2, 0.7], [np.nextafter(0.1, 1.0), 0.200001, 0.699999], [0.1, 0.2, 0.7]])
    np.testing.assert_array_equal(varying(X), [False, True, True])
    assert unvaried(X) == {0: 0.1}


def test_targets_equal_to_nine_digits_are_flat_and_zeros_are_flat() -> None:
    """The tests had passed with these changed: `np.ptp(y) <= FLAT_RTOL * ...` -> `<` (all-zero targets
    were a landscape), and `FLAT_RTOL = 1e-9` -> `1e-13`."""
    from mixopt.fitters.varied import flat

    assert flat(np.zeros(4))
    assert flat(3.0 + 1e-12 * np.arange(4))
    assert not flat(3.0 + 1e-8 * np.arange(4))


# ----- lawfit.py ----------------------------------------------------------------------------
def test_a_positive_law_refuses_a_target_of_exactly_zero() -> None:
    """The tests had passed with this changed: `(Y <= 0).any()` -> `(Y < 0).any()` in LawFitter._check_xy."""
    from mixopt.fitters.bimix import BiMixFitter

    X = np.random.default_rng(3).dirichlet(np.ones(2), 8)
    y = 1.0 + X[:, 0]
    y[3] = 0.0
    with pytest.raises(MixoptError, match=r"values ≤ 0 \(the smallest 0\)"):
        BiMixFitter(n_starts=2).fit(X, y)


def test_bimix_with_steps_needs_four_rows_per_domain() -> None:
    """The tests had passed with this changed: `n < 4 * k` -> `n < 3 * k` in BiMixFitter._fit_target
    (P, Q, α and β per domain: 7 checkpoints of 2 domains had been fitted)."""
    from mixopt.fitters.bimix import BiMixFitter

    X, y, steps = _checkpoints()
    with pytest.raises(MixoptError, match="bimix with steps has 8 parameters per target but got only 7"):
        BiMixFitter(n_starts=2).fit(X[:7], y[:7], steps=steps[:7])


def test_robust_scale_is_the_normal_consistent_mad() -> None:
    """The tests had passed with these changed in robust_scale: `1.4826 * median|y - m|` -> `1.0 * ...`
    (the Huber threshold is set in units of the standard deviation it estimates), and dropping the
    fall-back to the standard deviation where over half the runs are equal (the scale was then 1)."""
    from mixopt.fitters.lawfit import robust_scale

    assert robust_scale(np.array([1.0, 2.0, 3.0, 4.0, 100.0])) == pytest.approx((3.0, 1.4826))
    y = np.random.default_rng(0).normal(5.0, 2.0, 20_000)
    assert robust_scale(y)[1] == pytest.approx(2.0, rel=0.03)
    tied = np.array([3.0, 3.0, 3.0, 3.0, 3.05, 3.1])
    assert robust_scale(tied) == (3.0, pytest.approx(float(tied.std())))


def test_multistart_polishes_the_n_polish_best_starts() -> None:
    """The tests had passed with this changed: `[: max(1, n_polish)]` -> `[:1]` in _multistart (only the
    best screened start was run to convergence)."""
    from mixopt.fitters.lawfit import multistart_lbfgs

    def fun(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return ((theta - 1.0) ** 2).sum(axis=1), 2 * (theta - 1.0)

    starts = np.random.default_rng(0).normal(size=(6, 2))
    x, report = multistart_lbfgs(fun, starts, n_polish=3)
    assert report.n_polished == 3 and report.n_starts == 6 and report.converged
    np.testing.assert_allclose(x, [1.0, 1.0], atol=1e-6)


# ----- gp.py --------------------------------------------------------------------------------
def test_gp_refuses_a_single_run() -> None:
    """The tests had passed with this changed: `len(X) < 2` -> `len(X) < 1` in GPFitter.fit."""
    from mixopt.fitters.gp import GPFitter

    with pytest.raises(TooFewRunsError, match="gp needs at least 2 runs, got 1"):
        GPFitter().fit(np.array([[0.5, 0.5]]), np.array([3.0]))


def test_gp_std_is_of_a_new_runs_metric_noise_included() -> None:
    """The tests had passed with these changed in _predict_botorch: `observation_noise=True` -> `False`
    (the std of the mean alone: at the runs themselves, narrower than the runs' scatter about it), and
    `post.variance.clamp_min(0).sqrt()` -> `post.variance.clamp_min(0)` (the variance given as the std)."""
    from mixopt.fitters.gp import GPFitter

    rng = np.random.default_rng(0)
    X = rng.dirichlet(np.ones(3), 30)
    y = 3 + X[:, 0] - X[:, 1] ** 2 + rng.normal(0, 0.1, 30)
    mean, std = GPFitter().fit(X, y).predict(X, return_std=True)
    assert std.min() > np.std(mean - y)


# ----- proposers/proposal.py ----------------------------------------------------------------
def test_a_predicted_gain_of_exactly_the_runs_spread_is_no_extrapolation() -> None:
    """The tests had passed with this changed: `gain <= spread` -> `gain < spread` in extrapolation_note."""
    from mixopt.proposers.proposal import extrapolation_note

    y = np.array([3.0, 3.5, 4.0])
    assert extrapolation_note(2.0, y, "loglinear") is None  # 1.0 below the best run, the whole spread
    assert "extrapolating beyond its data" in (extrapolation_note(1.99, y, "loglinear") or "")


def test_beyond_the_runs_means_over_one_and_a_half_times_and_a_hundredth_more() -> None:
    """The tests had passed with these changed in beyond_runs_note: `w - top >= 0.01` -> `>= 0.0`, and
    dropping `domains[i] not in held` (a weight --fix sets is the user's, not the model's reach)."""
    from mixopt.proposers.proposal import beyond_runs_note

    X = np.array([[0.2, 0.004, 0.796], [0.1, 0.002, 0.898]])
    doms = ("a", "b", "c")
    assert beyond_runs_note(np.array([0.29, 0.0, 0.71]), X, doms, "gp") is None  # 1.45×
    assert beyond_runs_note(np.array([0.2, 0.009, 0.791]), X, doms, "gp") is None  # 2.25×, +0.005
    note = beyond_runs_note(np.array([0.31, 0.0, 0.69]), X, doms, "gp")
    assert note is not None and note.startswith("the proposal gives more weight than any run had to a 0.31")
    assert beyond_runs_note(np.array([0.31, 0.0, 0.69]), X, doms, "gp", fixed=("a",)) is None



def test_a_cv_spearman_of_exactly_one_half_is_not_poor() -> None:
    """The tests had passed with this changed: `spearman >= POOR_RANKING` -> `>` in ranking_note."""
    from mixopt.proposers.proposal import POOR_RANKING, ranking_note

    assert ranking_note(POOR_RANKING, "gp", 5) is None
    assert "5-fold cross-validation: the gp model" in (ranking_note(0.49, "gp", 5) or "")



# ----- auto.py ------------------------------------------------------------------------------
def test_auto_candidates_given_as_one_string_are_refused_as_such() -> None:
    """The tests had passed with this changed: dropping the `isinstance(self.candidates, str)` refusal in
    AutoFitter.fit ("regmix" was then read as the candidates 'r', 'e', 'g', …)."""
    from mixopt.fitters.auto import AutoFitter

    X = np.random.default_rng(0).dirichlet(np.ones(3), 6)
    with pytest.raises(MixoptError, match=r"candidates is the string 'regmix'.*\('regmix',\)"):
        AutoFitter(candidates="regmix").fit(X, X[:, 0])  # type: ignore[arg-type]


def test_auto_needs_three_distinct_mixtures_and_folds_no_more_than_them() -> None:
    """The tests had passed with these changed in AutoFitter.fit: `m < self.MIN_RUNS` -> `m < 2`, and
    `k = min(self.k, m)` -> `k = self.k`."""
    from mixopt.fitters.auto import AutoFitter

    X = np.random.default_rng(0).dirichlet(np.ones(3), 4)
    y = X @ np.array([1.0, 2.0, 3.0])
    with pytest.raises(TooFewRunsError, match="at least 3 distinct mixtures.*these 4 run\\(s\\) hold 2"):
        AutoFitter(candidates=("linear",)).fit(X[[0, 0, 1, 1]], y[[0, 0, 1, 1]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MixoptWarning)
        m = AutoFitter(candidates=("linear",)).fit(X, y)
    assert m.cv_folds_ == 4 and {r["folds"] for r in m.cv_table_} == {4}


def test_auto_takes_an_average_only_when_it_ranks_strictly_better() -> None:
    """The tests had passed with this changed: `metrics["spearman"] > best["spearman"]` -> `>=` (an
    average that only tied the best single fitter was chosen over it)."""
    from mixopt.fitters.auto import AutoFitter

    X = np.random.default_rng(0).dirichlet(np.ones(3), 12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MixoptWarning)
        m = AutoFitter(candidates=("linear", "loglinear")).fit(X, 2 + X[:, 0])
    rows = {r["name"]: r["spearman"] for r in m.cv_table_}
    assert rows == {"linear": 1.0, "loglinear": 1.0, "mean(linear, loglinear)": 1.0}
    assert m.chosen_ == "linear" and len(m.members_) == 1


def test_auto_scores_the_average_of_the_best_three() -> None:
    """The tests had passed with this changed: `for m in (2, 3)` -> `for m in (2,)` in AutoFitter.fit."""
    from mixopt.fitters.auto import AutoFitter

    X = np.random.default_rng(0).dirichlet(np.ones(3), 12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MixoptWarning)
        m = AutoFitter(candidates=("linear", "log-ridge", "loglinear")).fit(X, X @ np.array([1.0, 2.0, 3.0]))
    names = [r["name"] for r in m.cv_table_]
    assert names[-2:] == ["mean(linear, loglinear)", "mean(linear, loglinear, log-ridge)"]


def test_auto_with_no_finite_cv_score_says_so() -> None:
    """The tests had passed with this changed: `r["error"] is None and np.isfinite(r["spearman"])` ->
    `r["error"] is None` (a NaN Spearman was ranked, and chosen)."""
    from mixopt.fitters.auto import AutoFitter

    X = np.random.default_rng(0).dirichlet(np.ones(3), 8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MixoptWarning)
        said = r"no candidate could be cross-validated \(constant predictions\)"
        with pytest.raises(MixoptError, match=said):
            AutoFitter(candidates=("linear",)).fit(X, np.full(8, 3.0))


def test_auto_holds_the_domains_no_run_varied() -> None:
    """The tests had passed with this changed: `self.held_ = unvaried(X)` -> `self.held_ = {}` in
    AutoFitter.fit (a proposer then moved a domain every run had at one weight)."""
    from mixopt.fitters.auto import AutoFitter

    X = np.column_stack([np.full(6, 0.2), np.random.default_rng(0).dirichlet(np.ones(2), 6) * 0.8])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MixoptWarning)
        m = AutoFitter(candidates=("linear",)).fit(X, X @ np.array([1.0, 2.0, 3.0]))
    assert m.held_ == {0: pytest.approx(0.2)}


# ----- scaling.py ---------------------------------------------------------------------------
def test_a_power_law_refuses_a_scale_of_zero() -> None:
    """The tests had passed with this changed: `np.any(a <= 0)` -> `np.any(a < 0)` in fit_power_law."""
    from mixopt.fitters.scaling import fit_power_law

    with pytest.raises(MixoptError, match="curve 0 has a scale ≤ 0"):
        fit_power_law([np.array([0.0, 1.0, 2.0])], [np.array([4.0, 3.0, 2.5])])


def test_the_annealing_coefficient_needs_its_own_point() -> None:
    """The tests had passed with this changed: `2 * len(xs) + n_shared` -> `2 * len(xs) + (exponent is
    None)` in fit_power_law (the shared annealing coefficient C was not counted)."""
    from mixopt.fitters.scaling import fit_power_law

    x, y, z = [np.array([1.0, 2.0])], [np.array([4.0, 3.0])], [np.array([0.0, 0.5])]
    said = "2 points cannot fit 3 parameters .*a shared annealing coefficient"
    with pytest.raises(MixoptError, match=said):
        fit_power_law(x, y, exponent=0.5, anneal=z)


def test_a_power_law_is_normalised_by_the_largest_scale_fitted() -> None:
    """The tests had passed with this changed: `x_ref = max(...)` -> `x_ref = min(...)` in fit_power_law
    (the same predictions, but E and B were of another unit than PowerLaw documents)."""
    from mixopt.fitters.scaling import fit_power_law

    x = [np.array([1.0, 2.0, 4.0]), np.array([2.0, 4.0, 8.0])]
    y = [3.0 + 2.0 * (a / 8.0) ** -0.5 for a in x]
    law = fit_power_law(x, y)
    assert law.x_ref == 8.0
    np.testing.assert_allclose(law.B, [2.0, 2.0], rtol=1e-6)
    np.testing.assert_allclose(law.E, [3.0, 3.0], rtol=1e-6)


def test_a_power_law_subtracts_its_annealing_term_at_an_array_of_scales() -> None:
    """The tests had passed with this changed: `- self.C * zz` -> `+ self.C * zz` in PowerLaw.predict for
    an array of x (the scalar path and ``each`` had been checked)."""
    from mixopt.fitters.scaling import PowerLaw

    law = PowerLaw(E=np.array([1.0]), B=np.array([2.0]), beta=0.5, x_ref=4.0, rms=0.0, C=0.25)
    x, z = np.array([1.0, 4.0]), np.array([1.0, 2.0])
    np.testing.assert_allclose(law.predict(x, z), [[1.0 + 4.0 - 0.25, 1.0 + 2.0 - 0.5]])
    each = [law.each(np.array([a]), b)[0] for a, b in zip(x, z, strict=True)]
    np.testing.assert_allclose(law.predict(x, z)[0], each)


# ----- logridge.py --------------------------------------------------------------------------
def test_log_ridge_refuses_two_runs() -> None:
    """The tests had passed with this changed: `len(X) < self.MIN_RUNS` -> `len(X) < 2` in
    LogRidgeFitter.fit (a search checks its budget against MIN_RUNS)."""
    from mixopt.fitters.logridge import LogRidgeFitter

    X = np.array([[0.2, 0.8], [0.6, 0.4]])
    with pytest.raises(TooFewRunsError, match="log-ridge needs at least 3 runs, got 2"):
        LogRidgeFitter().fit(X, np.array([3.0, 2.5]))


# ----- proposers/best_run.py ----------------------------------------------------------------
def test_a_run_at_a_ceiling_by_rounding_is_inside() -> None:
    """The tests had passed with this changed: `space.contains_rows(X, tol=1e-6)` -> `tol=0.0` in
    BestRunProposer (a run at a ceiling up to float rounding, as a table stores it, was refused)."""
    from mixopt.proposers import BestRunProposer
    from mixopt.space import SearchSpace

    space = SearchSpace(domains=("a", "b"), ceilings={"a": 0.8})
    X = np.array([[0.5, 0.5], [0.8 + 1e-9, 0.2 - 1e-9], [0.9, 0.1]])
    p = BestRunProposer().propose_from_runs(X, np.array([2.0, 1.0, 0.5]), space)
    assert p.info["run_index"] == 1 and p.info["runs_considered"] == 2


# ----- nested.py ----------------------------------------------------------------------------
def _log_curves(metric: str, top: float) -> list:
    """Three runs whose metric falls by 0.15 per doubling of tokens from ``top``: no floor to find."""
    from mixopt.fitters.nested import Curve

    tokens = np.array([1e4, 2e4, 4e4, 8e4, 16e4])
    rows = np.random.default_rng(0).dirichlet(np.ones(2), 3)
    return [Curve(run_id=f"r{i}", weights=w, size=1e5, tokens=tokens,
                  losses={metric: top + 0.01 * i - 0.15 * np.log2(tokens / 1e4)}) for i, w in enumerate(rows)]


def test_a_step_law_without_a_floor_is_said_past_twice_the_runs_tokens() -> None:
    """The tests had passed with this changed: `reach > 2` -> `reach > 4` in predict_at_scale."""
    from mixopt.fitters.nested import predict_at_scale

    curves = _log_curves("loss/a", 3.0)
    with pytest.warns(MixoptWarning, match=r"finds no floor .*at 3× the runs' tokens"):
        predict_at_scale(curves, ["loss/a"], target_tokens=3 * 16e4)


def test_a_metric_some_run_measured_at_zero_may_be_predicted_below_it() -> None:
    """The tests had passed with this changed: `v > 0` -> `v >= 0` in _nonpositive's measured_above_0 (a
    metric measured at 0 is no loss, and its prediction below 0 had been refused as one)."""
    from mixopt.fitters.nested import predict_at_scale

    curves = _log_curves("score", 0.6)  # run r0 reaches 0.0 at its last checkpoint
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MixoptWarning)
        pred = predict_at_scale(curves, ["score"], target_tokens=4 * 16e4)
    assert pred.Y.min() < 0 and pred.nonpositive == {}


def test_repeated_runs_of_a_mixture_at_a_rung_are_averaged() -> None:
    """The tests had passed with this changed: the mean over a mixture's runs at a rung -> its first run
    only, in predict_at_scale."""
    from mixopt.fitters.nested import Curve, predict_at_scale

    tokens = np.array([1e4, 2e4])
    w = [np.array([0.3, 0.7]), np.array([0.3, 0.7]), np.array([0.6, 0.4])]
    last = [3.0, 3.2, 2.9]
    losses = [{"loss/a": np.array([4.0, v])} for v in last]
    curves = [Curve(run_id=f"r{i}", weights=wi, size=1e5, tokens=tokens, losses=ls)
              for i, (wi, ls) in enumerate(zip(w, losses, strict=True))]
    pred = predict_at_scale(curves, ["loss/a"])
    np.testing.assert_allclose(pred.Y[:, 0], [3.1, 2.9])
    assert pred.run_ids == [["r0", "r1"], ["r2"]]


# ----- metricsum.py -------------------------------------------------------------------------
def test_metric_sum_tells_bimix_which_metric_is_which_domains_loss() -> None:
    """The tests had passed with this changed: dropping `est.set_params(targets=tuple(names))` from
    fit_per_metric (BiMix then fitted every metric as a sum over all domains: 8 parameters on 6 runs)."""
    from mixopt.fitters.bimix import BiMixFitter
    from mixopt.fitters.metricsum import MetricSum

    doms = ("a", "b", "c", "d")
    X = np.random.default_rng(7).dirichlet(np.ones(4), 6)
    Y = np.array([1.2, 2.0, 1.6, 2.4]) * (X + 1e-3) ** -np.array([0.3, 0.2, 0.1, 0.4])
    m = MetricSum(BiMixFitter(domains=doms), weights=(0.25,) * 4, names=tuple(f"loss/{d}" for d in doms))
    m.fit(X, Y)
    assert m.estimator_.own_ == [0, 1, 2, 3]
    np.testing.assert_allclose(m.predict(X), Y.mean(axis=1), rtol=1e-4)


def test_metric_sum_std_adds_the_metrics_variances() -> None:
    """The tests had passed with this changed: `np.sqrt((std**2) @ self.weights_**2)` -> `std @ weights_`
    in MetricSum.predict (the metrics' errors, taken as independent, add in quadrature)."""
    from mixopt.fitters.gp import GPFitter
    from mixopt.fitters.metricsum import MetricSum

    rng = np.random.default_rng(0)
    X = rng.dirichlet(np.ones(3), 12)
    Y = np.column_stack([3 + X[:, 0], 2 - X[:, 1] ** 2]) + rng.normal(0, 0.05, (12, 2))
    m = MetricSum(GPFitter(), weights=(0.7, 0.3)).fit(X, Y)
    mean, std = m.predict(X[:4], return_std=True)
    _, sds = m.estimator_.predict(X[:4], return_std=True)
    np.testing.assert_allclose(std, np.hypot(0.7 * sds[:, 0], 0.3 * sds[:, 1]), rtol=1e-9)
    assert np.all(std < 0.7 * sds[:, 0] + 0.3 * sds[:, 1])


# ----- proposers/hold.py --------------------------------------------------------------------
def test_holding_keeps_what_the_proposer_itself_held() -> None:
    """The tests had passed with this changed: `{**prop.info.get("held", {}), **held}` -> `held` in
    propose_holding (the domains the proposer's own solve held went unsaid)."""
    from mixopt.proposers.hold import propose_holding
    from mixopt.proposers.proposal import Proposal
    from mixopt.space import SearchSpace

    class Holds:
        def propose(self, model: object, space: SearchSpace) -> Proposal:
            return Proposal(weights=np.array([0.3, 0.2, 0.1, 0.4]), predicted=1.0, info={"held": {"a": 0.3}})

    rng = np.random.default_rng(0)
    X = np.hstack([rng.dirichlet(np.ones(3), 5) * 0.9, np.full((5, 1), 0.1)])
    prop = propose_holding(Holds(), None, X, SearchSpace(domains=("a", "b", "c", "d")))
    assert prop.info["held"] == {"a": 0.3, "d": pytest.approx(0.1)}
