"""Proposers and methods: top-k average inside the space, seeded, thread-independent; best run."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from mixopt.errors import MixoptError, MixoptWarning
from mixopt.methods import available_methods, get_method
from mixopt.proposers import BestRunProposer, TopKProposer
from mixopt.space import SearchSpace

RUNS = Path(__file__).parent / "data" / "runs" / "regmix-pile-1m"


class Bowl:
    """A known landscape: squared distance to ``best`` (lowest at ``best``)."""

    def __init__(self, best: np.ndarray) -> None:
        self.best = np.asarray(best)
        self.calls = 0

    def predict(self, X: np.ndarray, return_std: bool = False):  # noqa: ANN201
        self.calls += 1
        out = ((np.asarray(X) - self.best) ** 2).sum(axis=1)
        return (out, np.full(len(out), 0.1)) if return_std else out


def test_topk_finds_the_bowl_and_stays_inside() -> None:
    space = SearchSpace(domains=("a", "b", "c", "d"))
    best = np.array([0.4, 0.3, 0.2, 0.1])
    p = TopKProposer(n_candidates=50_000, k=32, random_state=0).propose(Bowl(best), space)
    assert space.contains(p.weights)
    assert np.abs(p.weights - best).max() < 0.05
    assert p.predicted == pytest.approx(((p.weights - best) ** 2).sum())
    assert p.std == pytest.approx(0.1)
    assert p.info["k"] == 32 and p.info["n_candidates"] == 50_000 and not p.info["projected"]


def test_topk_respects_constraints() -> None:
    space = SearchSpace(domains=("a", "b", "c", "d"), fixed={"d": 0.25}, ceilings={"a": 0.2}, min_weight=0.05)
    # The bowl's bottom is outside the space: all on a.
    p = TopKProposer(n_candidates=20_000, k=16).propose(Bowl(np.array([1.0, 0, 0, 0])), space)
    assert space.contains(p.weights)
    assert p.weights[3] == pytest.approx(0.25)
    assert p.weights[0] == pytest.approx(0.2, abs=0.02)


def test_topk_is_seeded_and_independent_of_threads() -> None:
    space = SearchSpace(domains=("a", "b", "c"))
    bowl = Bowl(np.array([0.2, 0.5, 0.3]))
    opts = {"n_candidates": 30_000, "k": 8, "random_state": 5, "chunk_size": 4096}
    one = TopKProposer(**opts, n_threads=1).propose(bowl, space)
    two = TopKProposer(**opts, n_threads=2).propose(bowl, space)
    np.testing.assert_array_equal(one.weights, two.weights)
    other = TopKProposer(n_candidates=30_000, k=8, random_state=6, chunk_size=4096).propose(bowl, space)
    assert not np.array_equal(one.weights, other.weights)
    assert bowl.calls >= 3 * 8  # predicted chunk by chunk, never all candidates at once


def test_topk_bad_models_and_options() -> None:
    space = SearchSpace(domains=("a", "b"))

    class NaNModel:
        def predict(self, X, return_std=False):  # noqa: ANN001, ANN201
            return np.full(len(X), np.nan)

    class TwoTargets:
        def predict(self, X, return_std=False):  # noqa: ANN001, ANN201
            return np.zeros((len(X), 2))

    with pytest.raises(MixoptError, match="NaN"):
        TopKProposer(n_candidates=1000, k=4).propose(NaNModel(), space)
    with pytest.raises(MixoptError, match="2 targets"):
        TopKProposer(n_candidates=1000, k=4).propose(TwoTargets(), space)
    with pytest.raises(MixoptError, match="cannot exceed"):
        TopKProposer(n_candidates=10, k=20)


def test_best_run() -> None:
    space = SearchSpace(domains=("a", "b"), ceilings={"a": 0.8})
    X = np.array([[0.5, 0.5], [0.9, 0.1], [0.2, 0.8], [0.3, 0.7]])
    y = np.array([2.0, 0.5, np.nan, 1.0])
    p = BestRunProposer().propose_from_runs(X, y, space)
    # Run 1 is best but breaks the ceiling on a; run 2 has no result.
    assert p.info["run_index"] == 3 and p.predicted == 1.0 and p.method == "random"
    np.testing.assert_array_equal(p.weights, X[3])
    with pytest.raises(MixoptError, match="none of the"):
        BestRunProposer().propose_from_runs(X[:3], np.array([np.nan, 1.0, np.nan]), space)


def test_methods_registry() -> None:
    assert {"linear", "random", "regmix"} <= set(available_methods())
    for name in available_methods():
        m = get_method(name)
        assert m.name == name and m.sequential is False
    assert get_method("random").make_fitter() is None
    assert isinstance(get_method("random").make_proposer(), BestRunProposer)
    prop = get_method("regmix").make_proposer(seed=7)
    assert isinstance(prop, TopKProposer) and prop.k == 128 and prop.n_candidates >= 100_000
    assert prop.random_state == 7
    assert get_method("regmix").make_fitter(seed=3).random_state == 3
    with pytest.raises(MixoptError, match="linear, .*random, regmix"):
        get_method("uniform")
    with pytest.raises(MixoptError, match="unknown proposer option"):
        get_method("regmix").make_proposer(topk=3)


@pytest.mark.parametrize("name", ["regmix", "linear", "random"])
def test_fit_propose_on_regmix_slice(name: str) -> None:
    X = pl.read_csv(RUNS / "train_mixture_1m.csv").drop("index").to_numpy()
    X = X / X.sum(axis=1, keepdims=True)
    y = pl.read_csv(RUNS / "train_pile_loss_1m.csv")["metric/the_pile_pile_cc_val_loss"].to_numpy()
    space = SearchSpace(domains=tuple(f"d{i}" for i in range(X.shape[1])))
    method = get_method(name)
    fitter_params = {"n_estimators": 100} if name == "regmix" else None
    proposer_params = None if name == "random" else {"n_candidates": 20_000, "k": 32}
    model, p = method.fit_propose(X, y, space, seed=0, fitter_params=fitter_params,
                                  proposer_params=proposer_params)
    assert p.method == name and space.contains(p.weights)
    assert (model is None) == (name == "random")
    if name == "random":
        assert p.predicted == y.min()
    else:
        # The proposal is predicted to beat the average run of the swarm.
        assert p.predicted < np.median(model.predict(X))


def test_flat_model_is_flagged() -> None:
    from mixopt.errors import MixoptWarning
    from mixopt.fitters.regmix import RegMixFitter

    rng = np.random.default_rng(0)
    X = rng.dirichlet(np.ones(3), 32)
    model = RegMixFitter(n_estimators=50, min_child_samples=20).fit(X, X[:, 0])  # 32 < 2 x 20: no split
    space = SearchSpace(domains=("a", "b", "c"))
    with pytest.warns(MixoptWarning, match="same value for every candidate"):
        p = TopKProposer(n_candidates=5000, k=16).propose(model, space)
    assert p.info["constant_model"] and space.contains(p.weights)
    with pytest.warns(MixoptWarning, match="same value for every candidate"):  # one best row kept per chunk
        assert TopKProposer(n_candidates=1000, k=1).propose(model, space).info["constant_model"]
    assert not TopKProposer(n_candidates=5000, k=16).propose(Bowl(np.array([0.2, 0.3, 0.5])),
                                                             space).info["constant_model"]

    class Ulp:  # flat but for rounding (a QA pass: 6.921743192631992 against ...991 passed as a model)
        def predict(self, X, return_std=False):  # noqa: ANN001, ANN202
            out = 6.921743192631991 + np.where(X[:, 0] > 0.5, 8.9e-16, 0.0)
            return (out, None) if return_std else out

    with pytest.warns(MixoptWarning, match="same value for every candidate"):
        assert TopKProposer(n_candidates=5000, k=16).propose(Ulp(), space).info["constant_model"]
    # --fix a=1 leaves one mixture: every candidate is it, and that is not a flat model
    one = SearchSpace(domains=("a", "b", "c"), fixed={"a": 1.0})
    with warnings.catch_warnings():
        warnings.simplefilter("error", MixoptWarning)
        p = TopKProposer(n_candidates=5000, k=16).propose(model, one)
    assert not p.info["constant_model"] and p.weights == pytest.approx([1.0, 0.0, 0.0])


@pytest.mark.parametrize("method", ["log-ridge", "regmix", "linear", "mixing-law"])
def test_a_domain_no_run_varied_is_held_by_every_method(method: str) -> None:
    # A helper's table: d held at 0.1 in every run; log-ridge had proposed d = 0.6, gp 0.088.
    from mixopt.proposers.proposal import held_note

    rng = np.random.default_rng(0)
    X = np.hstack([rng.dirichlet(np.ones(3), 40) * 0.9, np.full((40, 1), 0.1)])
    y = 2 + np.exp(X @ np.array([-1.0, 0.5, 0.3, -2.0]))
    space = SearchSpace(domains=("a", "b", "c", "d"))
    params = {"n_candidates": 2000, "k": 16} if get_method(method).proposer == "topk" else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, prop = get_method(method).fit_propose(X, y, space, seed=0, proposer_params=params)
    assert prop.weights[3] == pytest.approx(0.1) and prop.info["held"] == {"d": pytest.approx(0.1)}
    assert held_note(prop.info).startswith("held d at 0.1: every run had that weight")
    # a weight a Dirichlet draw left at 1.9e-89 reads as 0 (a QA pass)
    assert held_note({"held": {"a": 1.887e-89, "d": 0.1}}).startswith("held a at 0, d at 0.1: every run")
    # past a floor or a ceiling it is held at the bound nearest it (a QA pass: a domain every run had at
    # 0 was left free by --min-weight, and the solve gave it 4%); a fixed domain, or bounds that leave
    # no room, keep the space as it was
    from mixopt.fitters.varied import unvaried
    from mixopt.proposers.hold import hold

    assert unvaried(X) == {3: pytest.approx(0.1)}
    assert hold({3: 0.1}, SearchSpace(domains=("a", "b", "c", "d"), fixed={"d": 0.2}))[1] == {}
    assert hold({3: 0.1}, SearchSpace(domains=("a", "b", "c", "d"), min_weight=0.15))[1] == {"d": 0.15}
    assert hold({3: 0.1}, SearchSpace(domains=("a", "b", "c", "d"), ceilings={"d": 0.05}))[1] == {"d": 0.05}
    assert hold({3: 0.1}, SearchSpace(domains=("a", "b", "c", "d"), fixed={"a": 0.95}))[1] == {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        capped = SearchSpace(domains=("a", "b", "c", "d"), ceilings={"d": 0.05})
        _, prop = get_method(method).fit_propose(X, y, capped, seed=0, proposer_params=params)
    assert prop.weights[3] == pytest.approx(0.05) and prop.info["held"] == {"d": pytest.approx(0.05)}


def test_regmix_on_one_run_is_too_few_runs_not_a_lightgbm_error() -> None:
    from mixopt.errors import TooFewRunsError
    from mixopt.fitters.regmix import RegMixFitter

    with pytest.raises(TooFewRunsError, match="regmix needs at least 2 runs to fit, got 1 sample"):
        RegMixFitter().fit(np.array([[0.5, 0.5]]), np.array([2.0]))


def test_topk_announces_a_proposal_that_takes_minutes(monkeypatch: pytest.MonkeyPatch) -> None:
    """--candidates 1e9 had run for an hour with nothing on the screen: the first chunk's time says how
    long the rest will take, and the result does not depend on that first chunk running alone."""
    space = SearchSpace(domains=("a", "b", "c"))
    bowl = Bowl(np.array([0.6, 0.3, 0.1]))
    quiet = TopKProposer(n_candidates=4_000, k=8, chunk_size=500, n_threads=1).propose(bowl, space)
    monkeypatch.setattr(TopKProposer, "SAY_AFTER_S", 0.0)
    for threads in (1, 2, 3):  # the same proposal, however the chunks are scheduled
        with pytest.warns(MixoptWarning, match=r"scoring 4,000 candidates takes about \d+ more minute"):
            said = TopKProposer(n_candidates=4_000, k=8, chunk_size=500, n_threads=threads)
            said = said.propose(bowl, space)
        assert np.array_equal(said.weights, quiet.weights)
    with warnings.catch_warnings():  # one chunk: nothing left to announce
        warnings.simplefilter("error")
        TopKProposer(n_candidates=400, k=8, chunk_size=500).propose(bowl, space)


def test_fit_and_search_say_the_same_notes_of_a_proposal() -> None:
    """One list of notes for `fit --propose` and `search` (they had been assembled twice, and `fit`
    had left out the flat-model note a search gives)."""
    from mixopt.proposers.proposal import Proposal, proposal_notes

    X = np.array([[0.5, 0.5, 0.0], [0.2, 0.3, 0.5], [0.4, 0.4, 0.2]])
    y = np.array([1.0, 1.1, 1.2])
    flat = Proposal(weights=np.array([0.3, 0.3, 0.4]), predicted=1.05, info={"constant_model": True})
    (note,) = proposal_notes(flat, X, y, ("a", "b", "c"), "regmix")
    assert note.startswith("the regmix model predicts the same value for every candidate mixture (too few "
                           "runs: 3)")
    # the model rates the best run above its proposal: said without validation only
    worse = Proposal(weights=np.array([0.5, 0.5, 0.0]), predicted=1.05)
    (said,) = proposal_notes(worse, X, y, "abc", "gp", best=(1.0, "r0"))
    assert "predicted worse than the best run" in said
    assert proposal_notes(worse, X, y, "abc", "gp", best=(1.0, "r0"), say_worse=False) == []
    # the KL term's note says why instead, validated or not; a proposal beyond the runs is named
    held = Proposal(weights=np.array([0.1, 0.1, 0.8]), predicted=1.05, info={"kl": 0.1})
    kl, beyond = proposal_notes(held, X, y, "abc", "loglinear", best=(1.0, "r0"), say_worse=False)
    assert "the KL term (λ = 0.1" in kl
    assert beyond.startswith("the proposal gives more weight than any run had to c 0.8")


def test_top_k_keeps_only_the_running_best_and_matches_one_sort_of_every_candidate() -> None:
    """Chunks are merged as they finish, at most ``k`` rows kept (1e12 candidates had held every
    chunk's seeds and best rows until memory ran out); the result is one stable sort's."""
    from mixopt.proposers.topk import TopKProposer, _RunningBest
    from mixopt.swarm import sample_candidates

    space = SearchSpace(domains=("a", "b", "c", "d"))
    target = np.array([0.2, 0.3, 0.1, 0.4])
    model = Bowl(target)
    for threads in (1, 2):
        proposer = TopKProposer(n_candidates=10_001, k=16, random_state=5, chunk_size=100, n_threads=threads)
        p = proposer.propose(model, space)
        seqs = np.random.SeedSequence(5).spawn(101)
        every = np.vstack([sample_candidates(space, 100 if i < 100 else 1, seed=np.random.default_rng(s))
                           for i, s in enumerate(seqs)])
        pred = model.predict(every)
        best = every[np.argsort(pred, kind="stable")[:16]]
        assert np.allclose(p.weights, space.snap(best.mean(axis=0)))
    running = _RunningBest(2)
    for part in ((np.eye(3), np.array([3.0, 1.0, 2.0]), 3.0), (np.ones((2, 3)), np.array([1.0, 0.5]), 1.0)):
        running.add(part)
    assert running.pred.tolist() == [0.5, 1.0] and running.cand.tolist() == [[1, 1, 1], [0, 1, 0]]
    assert running.highest == 3.0 and running.chunks == 2


def test_a_space_in_another_order_than_the_model_is_refused_by_both_proposers() -> None:
    """From a library user's QA pass: the space (d, c, b, a) for a model fitted on (a, b, c, d) put the
    best domain's weight on the worst one (predicted 2.0, true 3.5), without a word. Weights are read by
    position, so where the model knows its domains' names, another order or other names are refused."""
    import pandas as pd

    from mixopt.fitters.registry import get_fitter
    from mixopt.proposers.exact import ExactProposer

    rng = np.random.default_rng(0)
    X = rng.dirichlet(np.ones(4), size=60)
    y = 3 - 1.0 * X[:, 0] + 0.5 * X[:, 3]
    linear = get_fitter("linear").fit(pd.DataFrame(X, columns=list("abcd")), y)  # names from the frame
    law = get_fitter("loglinear", domains=tuple("abcd"), starts_per_c=2, n_polish=1).fit(X, y)  # given
    for proposer, model in ((TopKProposer(n_candidates=2000, k=8), linear), (ExactProposer(kl=0), law)):
        ok = proposer.propose(model, SearchSpace(domains=tuple("abcd"), ceilings={"a": 0.5}))
        assert ok.weights[0] == pytest.approx(0.5, abs=0.05)  # the best domain, at its ceiling
        with pytest.raises(MixoptError, match=r"lists the model's domains in another order \(d, c, b, a\) "
                                              r"than it was fitted on \(a, b, c, d\)"):
            proposer.propose(model, SearchSpace(domains=tuple("dcba")))
        with pytest.raises(MixoptError, match=r"domains the space lacks \(a, b, c, d\).*\(w, x, y, z\)"):
            proposer.propose(model, SearchSpace(domains=tuple("wxyz")))
        with pytest.raises(MixoptError, match=r"fitted on 4 domains and the space has 3 \(a, b, c\)"):
            proposer.propose(model, SearchSpace(domains=tuple("abc")))  # top-k: sklearn's error before
    # a model fitted on a bare array knows no names: the space's order is taken as given
    bare = get_fitter("linear").fit(X, y)
    prop = TopKProposer(n_candidates=500, k=4).propose(bare, SearchSpace(domains=tuple("wxyz")))
    assert prop.weights.shape == (4,)


def test_top_k_candidates_that_tie_are_said() -> None:
    """A QA pass: regmix on 20 runs put its 128 best candidates in one leaf; the proposal, uniform
    and the best run were all predicted at 2.8694 without a word."""
    from types import SimpleNamespace

    from mixopt.proposers.proposal import proposal_notes

    X = np.random.default_rng(0).dirichlet(np.ones(3), 20)
    y = 3 + X[:, 0]
    tied = SimpleNamespace(weights=np.full(3, 1 / 3), predicted=2.8694,
                           info={"top_k_predicted_mean": 2.869392362467885, "k": 128, "top_k_spread": 0.4,
                                 "best_candidate_predicted": 2.869392362467885})
    notes = proposal_notes(tied, X, y, ("a", "b", "c"), "regmix")
    assert any(n.startswith("the 128 best candidates the regmix model scored share one prediction (2.869)")
               for n in notes)
    ranked = SimpleNamespace(weights=tied.weights, predicted=2.86,
                             info={**tied.info, "best_candidate_predicted": 2.85})
    notes = proposal_notes(ranked, X, y, ("a", "b", "c"), "regmix")
    assert not any("share one prediction" in n for n in notes)
    one = SimpleNamespace(weights=tied.weights, predicted=2.8694, info={**tied.info, "top_k_spread": 0.0})
    notes = proposal_notes(one, X, y, ("a", "b", "c"), "linear")  # one mixture, not a tie
    assert not any("share one prediction" in n for n in notes)


def test_the_best_run_outside_the_constraints_is_named() -> None:
    """Runs outside the constraints (reused, imported) inform the fit but are no candidates: said."""
    from mixopt.proposers.proposal import best_run_note
    from mixopt.space import SearchSpace

    X = np.array([[0.8, 0.2], [0.3, 0.7], [0.5, 0.5]])
    y = np.array([1.0, 2.0, 1.5])
    space = SearchSpace(domains=("a", "b"), ceilings={"a": 0.6})
    assert best_run_note(space, X, y, ["r0", "r1", "r2"]) == (
        "the best run, r0 (1), is outside the constraints; the best inside them is r2 (1.5)")
    assert best_run_note(SearchSpace(domains=("a", "b")), X, y, ["r0", "r1", "r2"]) is None
    assert best_run_note(SearchSpace(domains=("a", "b"), ceilings={"a": 0.2}), X, y, ["r0", "r1", "r2"]) == (
        "no run is inside the constraints (the best, r0, is not), so no run's mixture is among the baselines")


def test_a_slow_proposal_names_candidates_only_where_more_than_regmixs_were_asked_for() -> None:
    """A QA pass: a search (which has no --candidates) was told to pass --candidates 1M."""
    for n, hint in ((100_000, False), (2_000_000, True)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            TopKProposer(n_candidates=n)._say_duration(100.0, 4, 1)
        said = [str(w.message) for w in caught if issubclass(w.category, MixoptWarning)]
        assert len(said) == 1 and ("--candidates 1M" in said[0]) == hint and "minute" in said[0]
