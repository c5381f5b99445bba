"""Boundaries and behaviours that the tests had checked only far from the threshold, or not at all: a
mutation pass changed each (the change in its docstring) and no test failed. Each fails on it now.
The run tables' two are in test_tables.py."""

from __future__ import annotations

import warnings
from types import SimpleNamespace

import numpy as np
import pytest

from mixopt.errors import MixoptError, MixoptWarning


# ----- mixture.py ---------------------------------------------------------------------------
def test_schedule_phases_of_zero_length_are_refused() -> None:
    """The tests had passed with this changed: `prev < until` -> `prev <= until`."""
    from mixopt.mixture import Mixture

    w = {"a": 0.5, "b": 0.5}
    with pytest.raises(MixoptError, match="increase strictly"):
        Mixture(w, schedule=((0.5, w), (0.5, w), (1.0, w)))


def test_a_slightly_negative_weight_is_refused() -> None:
    """The tests had passed with this changed: `w < 0` -> `w < -0.01`."""
    from mixopt.mixture import Mixture

    with pytest.raises(MixoptError, match="negative"):
        Mixture({"a": -0.005, "b": 1.005})


def test_a_sum_just_past_the_renormalising_tolerance_is_refused() -> None:
    """The tests had passed with this changed: `abs(total - 1) > tol` -> `> 10 * tol`."""
    from mixopt.mixture import Mixture

    with pytest.raises(MixoptError, match="sum to 1.002"):
        Mixture({"a": 0.502, "b": 0.5})


def test_a_metric_two_domains_could_own_is_nobodys() -> None:
    """The tests had passed with this changed: `found[0] if len(found) == 1` -> `found[0] if found`."""
    from mixopt.mixture import metric_domain

    assert metric_domain("metric/arxiv_val_loss", ["arxiv", "train_arxiv"]) is None


# ----- objective.py / stats.py --------------------------------------------------------------
def test_a_negative_objective_weight_is_refused_in_library_use() -> None:
    """The tests had passed with this changed: dropping `w >= 0` from Objective.__post_init__."""
    from mixopt.objective import Objective

    with pytest.raises(MixoptError, match="must be ≥ 0"):
        Objective(weights={"a": -1.0, "b": 2.0})


def test_a_mixture_identical_to_its_baseline_does_not_beat_it() -> None:
    """The tests had passed with this changed: t_statistic's `mean > 0` -> `mean >= 0` (0/0 counted
    as a certain win)."""
    from mixopt.search.validate import Measured, compare
    from mixopt.stats import t_statistic

    assert t_statistic(0.0, 0.0) == 0.0
    vals, seeds = [3.0, 3.1, 3.2], [1, 2, 3]
    same = Measured(mean=3.1, std=0.1, sem=0.1 / 3**0.5, n=3, planned=3, values=vals, run_ids=[], seeds=seeds)
    assert compare(same, same).beats is False


def test_the_interval_is_95_percent() -> None:
    """The tests had passed with this changed: 1.96 -> 1.645 in normal_interval."""
    from mixopt.stats import normal_interval

    assert normal_interval(1.0, 0.5) == pytest.approx((0.02, 1.98))


def test_infinity_is_not_a_finite_number() -> None:
    """The tests had passed with this changed: `math.isfinite(f)` -> `not math.isnan(f)` in finite_or_none."""
    from mixopt.stats import finite_or_none

    assert finite_or_none(float("inf")) is None and finite_or_none("-inf") is None


# ----- space.py -----------------------------------------------------------------------------
def test_a_floor_below_min_weight_does_not_lower_it() -> None:
    """The tests had passed with this changed: `max(min_weight, floor)` -> `floor if given else
    min_weight`."""
    from mixopt.space import SearchSpace

    space = SearchSpace(domains=("a", "b", "c"), min_weight=0.1, floors={"a": 0.05})
    assert space.bounds()[0][0] == pytest.approx(0.1)
    assert not space.contains([0.07, 0.43, 0.5])


def test_a_weight_just_past_its_ceiling_is_a_violation() -> None:
    """The tests had passed with this changed: `w > hi + tol` -> `w > hi + 1e-3` in violations."""
    from mixopt.space import SearchSpace

    space = SearchSpace(domains=("a", "b"), ceilings={"a": 0.3})
    assert space.violations([0.3005, 0.6995])


def test_snap_does_not_hide_weights_that_do_not_sum_to_one() -> None:
    """The tests had passed with this changed: dropping `abs(1 - out.sum()) <= tol` from snap."""
    from mixopt.space import SearchSpace

    space = SearchSpace(domains=("a", "b"))
    np.testing.assert_array_equal(space.snap([0.5, 0.4]), [0.5, 0.4])


def test_floors_summing_just_past_one_are_infeasible() -> None:
    """The tests had passed with this changed: `lo.sum() > 1 + 1e-9` -> `> 1 + 1e-2`."""
    from mixopt.space import SearchSpace

    with pytest.raises(MixoptError, match="lower bounds sum to 1.005"):
        SearchSpace(domains=("a", "b"), floors={"a": 0.505, "b": 0.5})


# ----- proposers/exact.py -------------------------------------------------------------------
def _two_target_law():  # noqa: ANN202
    from mixopt.fitters.loglinear import LogLinearFitter

    rng = np.random.default_rng(2)
    X = rng.dirichlet(np.ones(3), 60)
    Y = np.column_stack([1 + np.exp(X @ np.array([-2.0, 0.0, 0.0])),
                         1 + np.exp(X @ np.array([0.0, -2.0, 0.0]))])
    return LogLinearFitter(starts_per_c=3).fit(X, Y)


def test_target_weights_are_relative() -> None:
    """The tests had passed with this changed: `_weights` returning w without `/ w.sum()`."""
    from mixopt.proposers.exact import ExactProposer
    from mixopt.space import SearchSpace

    model, space = _two_target_law(), SearchSpace(domains=("a", "b", "c"))
    half = ExactProposer(kl=0.1, target_weights=np.array([0.5, 0.5])).propose(model, space)
    two = ExactProposer(kl=0.1, target_weights=np.array([2.0, 2.0])).propose(model, space)
    np.testing.assert_allclose(two.weights, half.weights, atol=1e-6)
    assert two.predicted == pytest.approx(float(model.predict(two.weights[None])[0].mean()), rel=1e-9)


def test_an_ensembles_objective_is_its_members_weighted_average() -> None:
    """The tests had passed with this changed: `part.scaled(s)` -> `part` in convex_objective's
    ensemble branch."""
    from mixopt.proposers.exact import convex_objective

    class Law:
        def __init__(self, a: list[float]) -> None:
            self.a = np.array([a])

        def exp_terms(self):  # noqa: ANN202
            return np.array([1.0]), np.array([0.0]), self.a

    a, b = Law([1.0, 0.0, 0.0]), Law([0.0, 2.0, 0.0])
    ens = SimpleNamespace(members_=[a, b], member_weights_=[0.8, 0.2])
    x = np.array([0.2, 0.3, 0.5])
    want = 0.8 * convex_objective(a)(x)[0] + 0.2 * convex_objective(b)(x)[0]
    assert convex_objective(ens)(x)[0] == pytest.approx(want)


# ----- proposers/topk.py --------------------------------------------------------------------
class _Shallow:
    """A bowl whose predictions span about 1e-4 around 3.0: small, but not flat."""

    def __init__(self) -> None:
        self.rows = 0

    def predict(self, X: np.ndarray, return_std: bool = False):  # noqa: ANN201
        X = np.asarray(X)
        self.rows += len(X)
        out = 3.0 + 1e-4 * ((X - np.array([0.4, 0.3, 0.2, 0.1])) ** 2).sum(axis=1)
        return (out, None) if return_std else out


def test_a_model_with_a_small_but_real_spread_is_not_called_flat() -> None:
    """The tests had passed with this changed: flat threshold 1e-9 -> 1e-3 (relative)."""
    from mixopt.proposers import TopKProposer
    from mixopt.space import SearchSpace

    with warnings.catch_warnings():
        warnings.simplefilter("error", MixoptWarning)
        p = TopKProposer(n_candidates=5000, k=8).propose(_Shallow(),
                                                         SearchSpace(domains=("a", "b", "c", "d")))
    assert not p.info["constant_model"]


def test_exactly_n_candidates_are_scored() -> None:
    """The tests had passed with this changed: the last chunk sized chunk_size, not the remainder."""
    from mixopt.proposers import TopKProposer
    from mixopt.space import SearchSpace

    model = _Shallow()
    TopKProposer(n_candidates=1000, k=8, chunk_size=300, n_threads=1).propose(
        model, SearchSpace(domains=("a", "b", "c", "d")))
    assert model.rows == 1000 + 1  # the candidates, then the proposal itself


# ----- fitters/loglinear.py -----------------------------------------------------------------
def test_loglinear_predicts_its_planted_law_and_its_exp_terms_agree() -> None:
    """The tests had passed with this changed: predict using c, not exp(c); or exp_terms giving c as
    its const."""
    from mixopt.fitters.loglinear import LogLinearFitter

    X = np.random.default_rng(2).dirichlet(np.ones(4), 80)
    c, t = np.log(1.2), np.array([-1.0, 0.4, 0.8, 0.1])
    y = np.exp(c) + np.exp(X @ t)
    m = LogLinearFitter(starts_per_c=5).fit(X, y)
    pred = np.asarray(m.predict(X)).ravel()
    np.testing.assert_allclose(pred, y, atol=1e-3)
    const, off, A = m.exp_terms()
    np.testing.assert_allclose(const[0] + np.exp(off[0] + X @ A[0]), pred, rtol=1e-9)


# ----- fitters/cv.py ------------------------------------------------------------------------
def test_mixtures_apart_in_the_third_decimal_are_two_mixtures() -> None:
    """The tests had passed with this changed: mixture_groups rounding to 2 decimals, not 9."""
    from mixopt.fitters.cv import distinct_mixtures

    assert distinct_mixtures(np.array([[0.5, 0.5], [0.501, 0.499], [0.5, 0.5]])) == 2


def test_a_fold_without_sds_leaves_the_whole_without_sds() -> None:
    """The tests had passed with this changed: `std = None` -> `pass` when a fold's model gives no sd."""
    from sklearn.base import BaseEstimator, RegressorMixin

    from mixopt.fitters.cv import cross_validate

    class SdsSometimes(BaseEstimator, RegressorMixin):
        def fit(self, X, y):  # noqa: ANN001, ANN201
            self.mean_, self.sd_ = float(np.mean(y)), bool(np.any(X[:, 0] == 1.0))
            return self

        def predict(self, X, return_std=False):  # noqa: ANN001, ANN201
            m = np.full(len(X), self.mean_)
            return (m, np.ones(len(X)) if self.sd_ else None) if return_std else m

    rng = np.random.default_rng(0)
    X = rng.dirichlet(np.ones(2), 20)
    X[0] = [1.0, 0.0]
    res = cross_validate(SdsSometimes(), X, rng.normal(size=20), k=4, seed=0)
    assert res.std is None and res.calibration is None


# ----- export.py ----------------------------------------------------------------------------
def test_olmix_export_keeps_zero_weight_domains() -> None:
    """The tests had passed with this changed: olmix export dropping weights ≤ 1e-9 (parse_export
    does not put them back)."""
    from mixopt.export import export_mixture, parse_export
    from mixopt.mixture import Mixture

    mix = Mixture({"a": 0.6, "b": 0.4, "c": 0.0})
    assert parse_export(export_mixture(mix, "olmix"), "olmix") == {"a": 0.6, "b": 0.4, "c": 0.0}


# ----- the readers of a user's counts and text (cli/common.py, errors.py) --------------------
def test_counts_at_their_caps() -> None:
    """The tests had passed with these changed in parse_count: `value > most` -> `value > most + 1`,
    and `value > MAX_COUNT` -> `value > 10 * MAX_COUNT` (they were tried only far past both)."""
    import typer

    from mixopt.cli.common import parse_budget, parse_count
    from mixopt.search.config import MAX_BUDGET, MAX_COUNT

    assert parse_budget(str(MAX_BUDGET)) == MAX_BUDGET
    with pytest.raises(typer.BadParameter, match="more than 100,000 runs"):
        parse_budget(str(MAX_BUDGET + 1))
    assert parse_count(str(MAX_COUNT)) == MAX_COUNT
    with pytest.raises(typer.BadParameter, match="check the exponent"):
        parse_count(str(MAX_COUNT + 1))


def test_a_signed_whole_number_of_the_most_digits_stays_exact() -> None:
    """The tests had passed with this changed in int_or_float: the sign counted as a digit (`-` and
    300 digits had become a float)."""
    from mixopt.errors import MAX_INT_DIGITS, int_or_float

    n = int_or_float("-" + "9" * MAX_INT_DIGITS)
    assert isinstance(n, int) and n == -(10**MAX_INT_DIGITS - 1)
    assert isinstance(int_or_float("9" * (MAX_INT_DIGITS + 1)), float)


def test_a_line_just_past_the_limit_is_cut() -> None:
    """The tests had passed with this changed in one_line: `len(text) > limit` -> `> 2 * limit` (tried
    only at 5,000 characters)."""
    from mixopt.errors import MAX_LINE, one_line

    assert one_line("x" * MAX_LINE) == "x" * MAX_LINE
    assert "characters cut" in one_line("x" * (MAX_LINE + 1))


def test_bounds_that_miss_one_by_a_little_show_the_digits_that_miss_it() -> None:
    # A QA pass: --min-weight 0.3334 over 3 domains was refused with "the lower bounds sum to 1 > 1".
    from mixopt.space import SearchSpace

    with pytest.raises(MixoptError, match=r"the lower bounds sum to 1\.0002 > 1 "):
        SearchSpace(domains=("a", "b", "c"), min_weight=0.3334)
    with pytest.raises(MixoptError, match=r"the upper bounds sum to 0\.99999 < 1 "):
        SearchSpace(domains=("a", "b"), ceilings={"a": 0.5, "b": 0.49999})
