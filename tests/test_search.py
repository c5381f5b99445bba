"""End-to-end searches through Ray Tune on fast evaluators (one local Ray for the whole session)."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import shutil
import warnings

import numpy as np
import pytest

from mixopt import testing
from mixopt.errors import MixoptError, MixoptWarning
from mixopt.mixture import EVIDENCE_KEYS, Mixture
from mixopt.objective import Objective
from mixopt.search.config import SearchConfig
from mixopt.store import RunStore, default_path

DOMAINS = ("web", "code", "math", "books")
TOKENS = {"web": 4e9, "code": 1e9, "math": 3e8, "books": 7e8}


@pytest.fixture(scope="module")
def ray_session():
    from mixopt.search.ray_env import ensure_ray

    return ensure_ray(num_cpus=2, dashboard=False)


def config(tmp_path, **kw) -> SearchConfig:
    base = dict(evaluator="mixopt.testing:loglinear", domains=DOMAINS, tokens=TOKENS, budget=10, validate=0,
                concurrency=2, retries=1, out=str(tmp_path / "out" / "mixture.json"))
    base.update(kw)
    return SearchConfig(**base)


def test_search_end_to_end_on_a_fast_evaluator(workspace, tmp_path, ray_session, capsys):
    import signal

    from mixopt.cli.search import render_result
    from mixopt.search.driver import run_search

    events = []
    handler = signal.getsignal(signal.SIGINT)
    res = run_search(config(tmp_path, name="e2e", validate=2), progress=events.append)
    # Tune's SIGINT handler does not outlive its runs: a Ctrl-C during the fit stops the search
    assert signal.getsignal(signal.SIGINT) is handler
    store = RunStore()
    swarm = store.runs(search_id="e2e", role="swarm")
    assert len(swarm) == 10 and {r.status for r in swarm} == {"ok"}
    # `mixopt swarm` plans the mixtures a search of the same options trains (none reused here)
    from mixopt.search.prepare import swarm_plan

    planned = swarm_plan(config(tmp_path, name="e2e", validate=2))[1]
    trained = np.vstack([r.vector(DOMAINS) for r in swarm])
    np.testing.assert_allclose(trained[np.lexsort(trained.T)], planned[np.lexsort(planned.T)], atol=1e-12)
    val = store.runs(search_id="e2e", role="validate")
    assert val and {r.status for r in val} == {"ok"} and all(r.seed in (1, 2) for r in val)
    # every evaluator call is one run in the store: nothing evaluated twice
    assert testing.count_calls(workspace / "searches" / "e2e") == len(swarm) + len(val)

    mix = Mixture.load(tmp_path / "out" / "mixture.json")  # validates against the JSON Schema
    assert mix.weights == pytest.approx(res.weights)
    assert set(mix.meta["provenance"]["run_ids"]) == {r.run_id for r in swarm}
    assert mix.meta["method"] == "regmix" and mix.meta["objective"]["kind"] == "mean_loss"
    assert set(mix.meta["tokens"]["per_domain"]) == set(DOMAINS)
    assert mix.meta["tokens"]["target_tokens"] == pytest.approx(sum(TOKENS.values()))
    names = {c.name for c in res.candidates}
    assert {"proposal", "uniform", "natural", "temperature", "best_run"} <= names
    # the exported mixture is the best validated one
    measured = {c.name: c.measured["mean"] for c in res.candidates if c.measured and c.measured["mean"]}
    assert measured[res.exported] == min(measured.values())
    # a baseline exported in the proposal's place carries the comparison that chose it
    chose = mix.meta["measured"].get("proposal_vs_this")
    assert (chose is None) if res.exported == "proposal" else (chose["diff"] < 0 and chose["paired"])
    assert (workspace / "searches" / "e2e" / "result.json").is_file()
    assert store.require_search("e2e").state == "done"
    # progress: the swarm and the validation phase, counting up to their totals
    done = [e for e in events if getattr(e, "phase", None) == "swarm"]
    assert done[-1].done == done[-1].total == 10 and done[-1].best == pytest.approx(
        min(r.objective for r in swarm))
    # A user's own evaluator has no rung of its own to name: "xs" is only the label its requests carried.
    render_result(res)
    printed = capsys.readouterr().out
    assert "measured" in printed and "(xs)" not in printed and "rung" not in printed
    assert res.shown_rung() is None and not any("at rung" in n for n in res.notes)


def test_the_validation_rung_is_named_where_it_tells_something():
    from mixopt.search.result import shown_rung

    assert shown_rung("xs", rung="xs", corpus=None) is None  # own evaluator, one fidelity
    assert shown_rung("s", rung="xs", corpus=None) == "s"  # validated at another fidelity than the swarm
    assert shown_rung("xs", rung="xs", corpus="default") == "xs"  # a proxy rung is a model size
    assert shown_rung(None, rung="xs", corpus="default") is None  # not validated


def test_failed_runs_are_retried_recorded_and_never_fitted(workspace, tmp_path, ray_session):
    from mixopt.search.driver import run_search

    res = run_search(config(tmp_path, name="flaky", evaluator="mixopt.testing:flaky", retries=2,
                            fidelity={"fail_rate": 0.4}))
    store = RunStore()
    runs = store.runs(search_id="flaky", role="swarm")
    failed = [r for r in runs if r.status == "failed"]
    assert failed and all("simulated transient failure" in r.error for r in failed)
    retried = [r for r in runs if r.attempt > 1]
    assert retried and all(r.seed == 0 for r in retried)  # a crash is retried on the swarm's own seed
    fitted = set(Mixture.load(tmp_path / "out" / "mixture.json").meta["provenance"]["run_ids"])
    assert fitted == {r.run_id for r in runs if r.status == "ok"}
    assert res.runs["failed"] == sum(
        1 for key in {r.label for r in runs} if all(r.status != "ok" for r in runs if r.label == key))
    assert all(r.attempt <= 3 for r in runs)
    assert res.runs["lost"] == ({"failed": res.runs["failed"]} if res.runs["failed"] else {})
    # Runs that diverge are counted as such, not as failures.
    res = run_search(config(tmp_path, name="nans", evaluator="mixopt.testing:flaky", retries=0, reuse=False,
                            fidelity={"fail_rate": 0.4, "diverge": 1}))
    assert res.runs["failed"] > 0 and res.runs["lost"] == {"diverged": res.runs["failed"]}
    assert any(f"lost after 0 retries: {res.runs['failed']} diverged" in n for n in res.notes)


def test_a_hung_run_is_stopped_at_the_trial_timeout_and_retried(workspace, tmp_path, ray_session, caplog):
    from mixopt.report import swarm_outcome
    from mixopt.search.driver import run_search

    with caplog.at_level("WARNING", logger="mixopt.search.searcher"):
        res = run_search(config(tmp_path, name="hang", evaluator="mixopt.testing:hangs_once", budget=4,
                                trial_timeout=3.0, fidelity={"hang": 120}))
    # The retry is said as it happens, and counted in the swarm's outcome.
    said = "-s0001-a1 failed (timed out after 3 s (--trial-timeout)); retrying (attempt 2)"
    assert any(said in r.getMessage() for r in caplog.records)  # .message is set only once formatted
    assert swarm_outcome(res.runs) == "4 ok (1 retry)"
    runs = RunStore().runs(search_id="hang")
    hung = [r for r in runs if r.run_id.endswith("-s0001-a1")]
    assert len(hung) == 1 and hung[0].status == "failed" and "timed out after 3 s" in hung[0].error
    assert res.runs["ok"] == res.runs["fitted"] == 4 and res.runs["failed"] == 0  # the retry finished
    assert res.wall_s < 60  # not the 120 s the hung run would have taken


def test_nan_runs_are_diverged_and_a_search_without_ok_runs_fails_clearly(workspace, tmp_path, ray_session):
    from mixopt.search.driver import run_search

    with pytest.raises(MixoptError, match="too few to fit.*non-finite"):
        run_search(config(tmp_path, name="nan", evaluator="mixopt.testing:nan_loss", budget=2, retries=0))
    runs = RunStore().runs(search_id="nan")
    assert len(runs) == 2 and {r.status for r in runs} == {"diverged"}
    assert all(math.isnan(r.metrics["loss/web"]) for r in runs)
    assert not (tmp_path / "out" / "mixture.json").exists()
    assert RunStore().require_search("nan").state == "failed"


def test_a_nan_metric_the_objective_does_not_read_is_left_out(workspace, tmp_path, ray_session, caplog):
    """A NaN downstream score beside finite losses: the runs count, without it, and it is said once."""
    from mixopt.search.driver import run_search

    with caplog.at_level("WARNING", logger="mixopt.search.searcher"):
        res = run_search(config(tmp_path, name="unread", evaluator="mixopt.testing:unread_nan", budget=4,
                                retries=0, validate=0))
    assert res.runs["ok"] == res.runs["fitted"] == 4
    said = [r.getMessage() for r in caplog.records if "left out" in r.getMessage()]
    assert len(said) == 1 and "downstream/mmlu" in said[0] and "the run counts, without them" in said[0]
    runs = RunStore().runs(search_id="unread", role="swarm")
    assert all(r.status == "ok" and "downstream/mmlu" not in r.metrics and "loss/web" in r.metrics
               and "non-finite metrics left out" in r.error for r in runs)


def test_an_evaluator_that_breaks_the_contract_stops_the_search(workspace, tmp_path, ray_session):
    from mixopt.search.driver import run_search

    with pytest.raises(MixoptError, match=r"^run nometrics-s\d{4}-a1: evaluator returned no metrics.*Fix the "
                                          r"evaluator and run `mixopt search --resume "):  # which run: named
        run_search(config(tmp_path, name="nometrics", evaluator="mixopt.testing:no_metrics", budget=12))
    runs = RunStore().runs(search_id="nometrics")
    assert 1 <= len(runs) <= 4  # stopped after the first batch, not after 12 runs and retries
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    # the same evaluator given as a Python function: the CLI cannot resume that search, so the
    # error says how Python does (a library user's QA pass: it had said `mixopt search --resume`)
    from mixopt import testing

    said = r"no metrics.*Fix the evaluator and run resume_search\('fn', evaluator=<the function>\) from Py"
    with pytest.raises(MixoptError, match=said):
        run_search(config(tmp_path, name="fn", evaluator=None, budget=12), evaluator=testing.no_metrics)


def test_a_search_whose_runs_all_failed_finishes_when_resumed_after_the_fix(workspace, tmp_path, ray_session):
    """Its error says to fix the evaluator and resume: the failed runs get their retries again."""
    from mixopt.search.driver import resume_search, run_search

    flag = tmp_path / "fixed"
    cfg = config(tmp_path, name="crashy", evaluator="mixopt.testing:raises_until_fixed", budget=4, retries=1,
                 fidelity={"fixed": str(flag)})
    with pytest.raises(MixoptError, match=r"too few to fit.*mixopt search --resume crashy") as failed:
        run_search(cfg)
    # the failed search's report says why it failed (it had given only its state)
    from mixopt.report import make_report

    assert f"- error: {failed.value}\n" in make_report("crashy").markdown
    flag.write_text("fixed")
    events: list = []
    res = resume_search("crashy", retries=2, progress=events.append)
    assert "- error:" not in make_report("crashy").markdown  # done now: its result replaced the error
    assert res.runs["ok"] == res.runs["fitted"] == 4 and res.runs["failed"] == 0
    said = [e.message for e in events if getattr(e, "stage", None) == "plan"]
    # 4 runs, not their 8 failed attempts
    assert said == ["resuming search crashy: 4 failed run(s) get their retries again"]
    assert RunStore().require_search("crashy").config["retries"] == 1  # --retries applied to the resume only
    assert len([r for r in RunStore().runs(search_id="crashy") if r.status == "failed"]) == 8


def test_a_budget_of_one_run_is_told_to_raise_the_budget(workspace, tmp_path, ray_session):
    """A QA pass: one run, which finished ok, was met with "first error: no error recorded. Fix the
    evaluator"."""
    from mixopt.search.driver import run_search

    with pytest.raises(MixoptError, match=r"^one run is too few for random, which needs 2 or more; search "
                                          r"again under a new --name with --budget 2 or more \(this run"):
        run_search(config(tmp_path, name="one", budget=1, method="random"))


def test_a_search_whose_runs_all_diverged_finishes_when_resumed_after_the_fix(
    workspace, tmp_path, ray_session
):
    """Nothing trained: the setup was wrong, not the mixtures, so the diverged runs run again."""
    from mixopt.search.driver import resume_search, run_search

    flag = tmp_path / "fixed"
    cfg = config(tmp_path, name="blowup", evaluator="mixopt.testing:diverges_until_fixed", budget=4,
                 retries=0, fidelity={"fixed": str(flag)})
    said = r"finished ok \(4 diverged\), too few to fit.*diverged runs run again"
    with pytest.raises(MixoptError, match=said):
        run_search(cfg)
    flag.write_text("fixed")
    res = resume_search("blowup")
    assert res.runs["ok"] == res.runs["fitted"] == 4 and res.runs["failed"] == 0
    runs = RunStore().runs(search_id="blowup")
    assert sum(r.status == "diverged" for r in runs) == 4 and sum(r.status == "ok" for r in runs) >= 4


def _stopped_then_fixed(tmp_path, name: str) -> None:  # noqa: ANN001
    """A search stopped by its evaluator's contract error (no metrics), then the evaluator fixed."""
    from mixopt.search.driver import run_search

    flag = tmp_path / "fixed"
    cfg = config(tmp_path, name=name, evaluator="mixopt.testing:broken_until_fixed", budget=6,
                 fidelity={"fixed": str(flag)})
    with pytest.raises(MixoptError, match="no metrics"):
        run_search(cfg)
    flag.write_text("fixed")


def test_a_search_stopped_by_a_contract_error_finishes_after_the_fix(workspace, tmp_path, ray_session):
    """The user fixes the evaluator and resumes: the broken slots run again and the search ends."""
    from mixopt.search.driver import resume_search

    _stopped_then_fixed(tmp_path, "fixme")
    res = resume_search("fixme")
    assert res.runs["ok"] == res.runs["fitted"] == 6 and res.runs["failed"] == 0
    broken = [r for r in RunStore().runs(search_id="fixme") if r.status == "failed"]
    assert broken and all(r.error.startswith("requeued by --resume after: evaluator") for r in broken)
    assert RunStore().require_search("fixme").state == "done"


def test_runs_are_reused_by_later_searches_unless_no_reuse(workspace, tmp_path, ray_session):
    from mixopt.search.driver import run_search
    from mixopt.search.prepare import prepare

    run_search(config(tmp_path, name="first", budget=8))
    second = run_search(config(tmp_path, name="second", budget=8))
    assert second.runs["reused"] == 8 and second.runs["planned"] == 0 and second.runs["fitted"] == 8
    assert testing.count_calls(workspace / "searches" / "second") == 0  # no trial ran
    assert second.ray == ["Ray: not started (every run this search needed was in the store)"]
    third = run_search(config(tmp_path, name="third", budget=6, reuse=False, method="random"))
    assert third.runs["reused"] == 0 and testing.count_calls(workspace / "searches" / "third") == 6
    # `random` proposes the best run of its own swarm
    X, y, _ = RunStore().matrix(list(DOMAINS), Objective(), search_id="third")
    assert np.allclose([third.weights[d] for d in DOMAINS], X[int(np.argmin(y))])
    # another rung, another evaluator or other evaluator settings are another fidelity: no reuse
    variants = ({}, {"rung": "s"}, {"evaluator": "mixopt.testing:sleepy"}, {"fidelity": {"noise": 0.1}})
    keys = {prepare(config(tmp_path, **kw)).fidelity_key for kw in variants}
    assert len(keys) == 4


def test_a_rung_or_corpus_found_from_the_current_folder_reaches_the_workers_by_its_absolute_path(
    tiny_workspace, tmp_path, monkeypatch
) -> None:
    """A help audit: a rung in ./proxies/, a relative rung file or a relative corpus folder were found by
    the driver and then not by the Ray workers, whose current folder is Ray's: every run failed
    ("proxy rung 'tiny' is unknown … Fix the evaluator"). They are recorded by absolute path; shipped
    rungs and the workspace's corpora keep their names (and so their reuse keys)."""
    import shutil

    from mixopt.paths import REPO_ROOT
    from mixopt.search.prepare import prepare

    here = tmp_path / "project"
    (here / "proxies").mkdir(parents=True)
    shutil.copy(REPO_ROOT / "proxies" / "xs.toml", here / "proxies" / "mine.toml")
    shutil.copytree(tiny_workspace / "corpora" / "tiny", here / "data" / "tiny", symlinks=False)
    monkeypatch.chdir(here)
    rung_file = str((here / "proxies" / "mine.toml").resolve())
    for rung in ("mine", "proxies/mine.toml", "./proxies/mine.toml"):
        p = prepare(SearchConfig(corpus="tiny", rung=rung, validate_rung=rung, budget=4, validate=1,
                                 name=f"a{len(rung)}"))
        assert p.fidelity["rung"] == p.validate_fidelity["rung"] == p.config.rung == rung_file
        assert p.config.validate_rung == rung_file
    shipped = prepare(SearchConfig(corpus="tiny", rung="xs", budget=4, validate=0, name="b"))
    assert shipped.fidelity["rung"] == "xs" and shipped.fidelity["corpus"] == "tiny"
    p = prepare(SearchConfig(corpus="data/tiny", rung="xs", budget=4, validate=0, name="c"))
    assert p.fidelity["corpus"] == p.config.corpus == str((here / "data" / "tiny").resolve())
    assert p.fidelity_key == shipped.fidelity_key  # the corpus is not in the key: its hash is
    # from another folder, the recorded paths still open (what a worker, or a later resume, does)
    monkeypatch.chdir(tmp_path)
    from mixopt.corpus import Corpus
    from mixopt.proxy.rungs import load_rung

    assert load_rung(rung_file).name == "mine" and Corpus.open(p.config.corpus).name == "tiny"


def test_tokens_equal_to_the_rungs_own_budget_are_the_rungs_fidelity(tiny_workspace) -> None:
    """``--fidelity tokens=N`` with N the rung's own budget trains what the rung trains: it had been
    another reuse key, so no earlier run of that rung was reused."""
    from mixopt.proxy.rungs import DEBUG
    from mixopt.search.prepare import _default_tokens, prepare

    def prep(**kw):  # noqa: ANN003, ANN202
        return prepare(SearchConfig(corpus="tiny", rung="debug", budget=4, validate=0, name="t", **kw))

    plain, same = prep(), prep(fidelity={"tokens": DEBUG.tokens})
    assert same.fidelity_key == plain.fidelity_key and same.config.fidelity == {}
    assert "tokens" not in same.fidelity and "tokens" not in same.validate_fidelity
    # a resume keeps what its search recorded: one started with tokens in its key goes on with it
    old = SearchConfig(corpus="tiny", rung="debug", budget=4, validate=0, fidelity={"tokens": DEBUG.tokens})
    assert prepare(old, search_id="t").fidelity_key != plain.fidelity_key
    more = prep(fidelity={"tokens": 2 * DEBUG.tokens})
    assert more.fidelity_key != plain.fidelity_key and more.config.fidelity == {"tokens": 2 * DEBUG.tokens}
    # kept where another rung trains too (validation at xs would train N tokens, not its own budget)
    both = SearchConfig(corpus="tiny", rung="debug", validate_rung="xs", fidelity={"tokens": DEBUG.tokens})
    assert not _default_tokens(both.fidelity, both)
    assert _default_tokens(both.fidelity, both.replace(validate=0))  # ... unless it does not validate


def test_ray_starts_only_when_a_run_needs_it_and_a_refusal_then_leaves_no_search(workspace, tmp_path,
                                                                                 ray_session, monkeypatch):
    import mixopt.search.driver as driver

    driver.run_search(config(tmp_path, name="lz1", budget=6))
    started = []
    real = driver._ray

    def refused(*args):  # noqa: ANN002, ANN202
        started.append(args[2])
        raise MixoptError("--cpus-per-trial 9: no node of the Ray cluster has that many CPUs")

    monkeypatch.setattr(driver, "_ray", refused)
    # every swarm run reused and nothing to validate: no Ray at all
    res = driver.run_search(config(tmp_path, name="lz2", budget=6, method="linear"))
    assert started == [] and res.ray == ["Ray: not started (every run this search needed was in the store)"]
    # Ray first asked for by validation, and refused: the search ran nothing, so it is gone and its
    # name free for the same command with other settings (a resume could not change them)
    with pytest.raises(MixoptError, match="no node of the Ray cluster"):
        driver.run_search(config(tmp_path, name="lz3", budget=6, method="linear", validate=1))
    assert started == ["lz3"] and RunStore().get_search("lz3") is None
    assert not (workspace / "searches" / "lz3").exists()
    monkeypatch.setattr(driver, "_ray", real)
    again = driver.run_search(config(tmp_path, name="lz3", budget=6, method="linear", validate=1))
    assert again.ray != res.ray and again.candidates[0].measured["n"] == 1


def test_validation_reuses_the_baselines_an_earlier_search_measured(workspace, tmp_path, ray_session, capsys):
    from mixopt.cli.search import render_result
    from mixopt.report import make_report
    from mixopt.search.driver import run_search

    first = run_search(config(tmp_path, name="val1", budget=8, validate=2))
    events = []
    second = run_search(config(tmp_path, name="val2", budget=8, validate=2, method="linear"),
                        progress=events.append)
    before = {c.name: c.measured for c in first.candidates}
    after = {c.name: c.measured for c in second.candidates}
    # the baselines (same mixture, seeds and fidelity) are the first search's runs
    for name in ("uniform", "natural", "temperature"):
        assert after[name]["run_ids"] == before[name]["run_ids"] and after[name]["n"] == 2
        assert after[name]["mean"] == pytest.approx(before[name]["mean"])
    assert not set(after["proposal"]["run_ids"]) & set(before["proposal"]["run_ids"])
    # The best run of the second search is a validation run of the first's proposal (seed 2): its
    # validation skips that run's seed, reuses the first's run at seed 1 and runs seed 3 itself.
    assert after["best_run"]["run_ids"] == ["val1-v-proposal-k0-a1", "val2-v-best_run-k1-a1"]
    # only the new proposal's two seeds and that one ran: no swarm run, no baseline again
    assert testing.count_calls(workspace / "searches" / "val2") == 3
    said = [e.message for e in events if getattr(e, "stage", None) == "validate"]
    assert said == ["validate: 3 of 10 runs to go (7 measured by earlier searches at the same mixture, "
                    "seed and fidelity: reused)"]
    assert len(RunStore().require_search("val2").plan["validation_reused"]) == 7
    assert second.runs["validation_reused"] == 7 and second.runs["validation_trained"] == 3
    assert second.runs["validation_restarted"] == 0  # no stop cut a validation run short
    shown = Mixture.load(second.mixture_path).meta["provenance"]["validation_run_ids"]
    assert shown["uniform"] == before["uniform"]["run_ids"]
    assert shown["best_run"] == after["best_run"]["run_ids"]
    render_result(second)
    assert "8 fitted; validation: 3 trained, 7 reused ·" in capsys.readouterr().out
    assert "7 validation runs reused from earlier searches" in make_report("val2").markdown
    # --no-reuse measures everything itself
    third = run_search(config(tmp_path, name="val3", budget=8, validate=2, method="linear", reuse=False))
    assert all(i.startswith("val3-") for c in third.candidates for i in c.measured["run_ids"])
    assert testing.count_calls(workspace / "searches" / "val3") == 8 + 2 * 5
    # A search whose plan predates validation reuse (stopped in its validation, resumed after an
    # upgrade) borrows no slot it ran itself: a slot both run and borrowed counted twice.
    from mixopt.search.driver import _borrowed
    from mixopt.search.prepare import prepare
    from mixopt.search.validate import Candidate, validation_slots

    plan = RunStore().require_search("val3").plan
    assert "validation_reused" not in plan
    prep = prepare(config(tmp_path, name="val3", budget=8, validate=2, method="linear"), search_id="val3")
    slots = validation_slots([Candidate.from_dict(c) for c in plan["candidates"]], k=2, seed=0)
    assert _borrowed(prep, plan, slots) == {} and plan["validation_reused"] == {}
    # a recorded borrowing that no longer fits its slot (another seed) is dropped: the slot runs
    plan = RunStore().require_search("val2").plan
    prep = prepare(config(tmp_path, name="val2", budget=8, validate=2, method="linear"), search_id="val2")
    slots = validation_slots([Candidate.from_dict(c) for c in plan["candidates"]], k=2, seed=0)
    assert set(_borrowed(prep, plan, slots)) >= {"v-uniform-k0", "v-uniform-k1"}
    plan["validation_reused"]["v-uniform-k0"] = plan["validation_reused"]["v-uniform-k1"]
    kept = _borrowed(prep, plan, slots)
    assert "v-uniform-k0" not in kept and kept["v-uniform-k1"] == "val1-v-uniform-k1-a1"


@pytest.mark.slow  # 13-33 s: in CI with the other slow tests, out of the default suite
def test_reused_runs_outside_the_constraints_inform_the_fit_but_are_no_candidates(workspace, tmp_path,
                                                                                 ray_session):
    from mixopt.search.driver import run_search

    run_search(config(tmp_path, name="free", budget=6, method="random"))
    # Found by a user: with --fix, runs of an earlier search (none at web = 0.3) filled the budget,
    # the best of them became the `best_run` candidate and was exported, breaking the --fix.
    res = run_search(config(tmp_path, name="fixed", budget=5, validate=1, fix={"web": 0.3}))
    assert res.runs["reused"] == 6 and res.runs["planned"] == 5 and res.runs["fitted"] == 11
    assert testing.count_calls(workspace / "searches" / "fixed") >= 5
    for row in res.candidates:
        assert row.weights["web"] == pytest.approx(0.3), row.name
    assert res.weights["web"] == pytest.approx(0.3)
    # the best fitted run is said to be outside the constraints when it is (as `fit` says it)
    fitted = [r.run_id for r in RunStore().runs(role="swarm", status="ok")]  # both searches' 11
    X, y, _ = RunStore().matrix(list(DOMAINS), Objective(), run_ids=fitted)
    assert any(n.startswith("the best run, ") and "is outside the constraints" in n for n in res.notes) == (
        abs(X[int(np.argmin(y))][list(DOMAINS).index("web")] - 0.3) > 1e-6)


@pytest.mark.slow  # 13-33 s: in CI with the other slow tests, out of the default suite
def test_a_model_that_misses_its_own_runs_is_noted(workspace, tmp_path, ray_session):
    from mixopt.search.driver import run_search

    # BiMix fits a domain's loss on its own share; this landscape's loss/math moves with the others
    # too (its mixing-law exponents): the fit misses the runs it was fitted on.
    res = run_search(config(tmp_path, name="misfit", budget=16, method="bimix", kl=0.0, target="math"))
    assert any("fits its own runs poorly: in-sample RMS error" in n for n in res.notes)
    good = run_search(config(tmp_path, name="fits", budget=16, method="mixing-law", reuse=False))
    assert not any("fits its own runs poorly" in n for n in good.notes)


def test_an_unvalidated_proposal_says_when_its_model_ranks_unseen_runs_poorly(workspace, tmp_path,
                                                                              ray_session):
    """A QA pass: a model can fit its own runs closely yet rank new ones at chance; with nothing
    measured after the fit, the search cross-validates it (when cheap) and says so."""
    from mixopt.search.driver import run_search

    said = "5-fold cross-validation: the linear model ranks runs it did not see with Spearman"
    noisy = run_search(config(tmp_path, name="noisy", budget=12, method="linear", fidelity={"noise": 20.0}))

    def info(name: str) -> dict:
        cands = RunStore().require_search(name).plan["candidates"]
        return next(c for c in cands if c["name"] == "proposal")["info"]

    prop = info("noisy")
    assert prop["cv_folds"] == 5 and prop["cv_spearman"] < 0.5
    assert any(n.startswith(said) for n in noisy.notes), noisy.notes
    # the law that made the runs ranks them well: no such note
    clean = run_search(config(tmp_path, name="clean", budget=12, method="loglinear"))
    assert info("clean")["cv_spearman"] > 0.9 and not any("cross-validation:" in n for n in clean.notes)


def test_a_law_with_more_parameters_than_the_budget_is_refused_before_any_run(workspace, tmp_path):
    from mixopt.search.driver import run_search

    doms = tuple("abcdefghij")
    with pytest.raises(MixoptError, match=r"--budget 8: mixing-law has 11 parameters per target over 10 "
                                          r"varying domains, and the search would fit 8 distinct mixtures "
                                          r"\(8 new runs, 0 reused\); raise --budget to 11"):
        run_search(config(tmp_path, name="few", domains=doms, tokens=None, budget=8, method="mixing-law"))
    # bimix fits each domain's loss on its own share (2 parameters), but a fixed domain's share does
    # not vary, so its loss takes the law summed over the other 9 domains: 18 parameters.
    from mixopt.methods import get_method

    spec = get_method("bimix")
    assert spec.min_runs(10, targets=[f"loss/{d}" for d in doms], varying=doms)[0] == 2
    with pytest.raises(MixoptError, match=r"bimix has 18 parameters per target over 9 varying domains.* "
                                          r"raise --budget to 18"):
        run_search(config(tmp_path, name="few", domains=doms, tokens=None, budget=17, method="bimix",
                          fix={"a": 0.1}))
    # Not only the laws: auto cross-validates, which takes 3 runs at least.
    with pytest.raises(MixoptError, match=r"--budget 2: auto needs at least 3 runs, and the search would "
                                          r"fit 2 distinct mixtures \(2 new runs, 0 reused\); raise --budget "
                                          r"to 3$"):
        run_search(config(tmp_path, name="few", budget=2, method="auto"))
    # Nothing is left behind: no search folder, and no empty run store in a fresh workspace.
    assert not (workspace / "searches" / "few").exists() and not default_path().exists()
    assert not any(p.name.endswith(".lock") for p in workspace.iterdir())
    # and the run store's planning lock was let go (mixopt.search.lock.planning_lock)
    import fcntl

    fd = os.open(default_path().parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises BlockingIOError while it is held
    finally:
        os.close(fd)


def test_objective_constraints_and_linear_method(workspace, tmp_path, ray_session):
    from mixopt.search.driver import run_search

    res = run_search(config(tmp_path, name="tgt", budget=8, target="code=0.7,math=0.3", metric="bpb",
                            method="linear", min_weight=0.05, max_weight={"web": 0.5}, fix={"books": 0.1}))
    _, y, _ = RunStore().matrix(list(DOMAINS), Objective.parse("code=0.7,math=0.3", "bpb"), search_id="tgt")
    assert len(y) == 8
    mix = json.loads((tmp_path / "out" / "mixture.json").read_text())
    assert list(mix) == ["schema", "weights", *EVIDENCE_KEYS, "created"]  # as fit's and entropy's
    assert mix["objective"] == {"kind": "weighted_bpb", "metric": "bpb",
                                "weights": {"code": 0.7, "math": 0.3}}
    assert res.method == "linear" == mix["method"]
    assert mix["params"]["constraints"]["ceilings"] == {"web": 0.5}
    assert mix["params"]["constraints"]["fixed"] == {"books": 0.1}
    w = res.weights
    assert w["books"] == pytest.approx(0.1) and w["web"] <= 0.5 + 1e-9 and min(w.values()) >= 0.05 - 1e-9
    for r in RunStore().runs(search_id="tgt", role="swarm"):
        assert r.weights["books"] == pytest.approx(0.1) and r.weights["web"] <= 0.5 + 1e-9
    # each baseline says how the constraints moved it (a QA pass: an exported "uniform" had not)
    moved = [n for n in res.notes if "baseline is moved into the constraints" in n]
    assert [n.split(" baseline")[0] for n in moved] == ["the uniform", "the natural", "the temperature"]
    assert moved[0].endswith("books 0.250 → 0.100") and moved == [n for n in mix["notes"] if n in moved]


def test_search_on_the_tiny_corpus_with_the_proxy_trainer(tiny_workspace, tiny_corpus, tmp_path,
                                                          ray_session):
    from mixopt.search.driver import run_search

    out = tmp_path / "tiny.json"
    res = run_search(SearchConfig(name="tiny", corpus="tiny", rung="debug", budget=5, validate=1,
                                  concurrency=2, retries=0, out=str(out)))
    runs = RunStore().runs(search_id="tiny")
    swarm = [r for r in runs if r.role == "swarm"]
    assert len(swarm) == 5 and {r.status for r in runs} == {"ok"}
    domains = tiny_corpus.domains
    for r in swarm:
        assert {f"loss/{d}" for d in domains} <= set(r.metrics) and r.cost > 0
        assert r.fidelity == {"rung": "debug", "corpus": "tiny"} and r.corpus_hash == tiny_corpus.hash
        # the checkpoints the nested laws fit on, recorded by the driver from what the trial reported
        assert len(r.history) >= 2 and all(f"loss/{domains[0]}" in h and h["tokens"] > 0 for h in r.history)
        assert r.seed == 0 and r.finished is not None
    mix = Mixture.load(out)
    assert mix.meta["provenance"]["corpus"] == tiny_corpus.name
    assert mix.meta["provenance"]["corpus_hash"] == tiny_corpus.hash
    assert set(mix.weights) == set(domains)
    total = sum(tiny_corpus.train_tokens().values())
    assert sum(mix.meta["tokens"]["per_domain"].values()) == pytest.approx(total)
    assert res.validate_rung == "debug" and all(c.measured["n"] == 1 for c in res.candidates)


def test_entropy_is_a_training_free_search_method_validated_like_any(tiny_workspace, tiny_corpus, tmp_path,
                                                                     ray_session, capsys):
    from mixopt.entropy import entropy_mixture
    from mixopt.search.driver import run_search
    from mixopt.search.prepare import prepare

    out = tmp_path / "ent.json"
    res = run_search(SearchConfig(name="ent", corpus="tiny", rung="debug", method="entropy", validate=1,
                                  concurrency=2, retries=0, out=str(out), budget=0))  # no swarm to budget
    runs = RunStore().runs(search_id="ent")
    assert {r.role for r in runs} == {"validate"} and res.runs["fitted"] == 0  # no swarm at all
    want = entropy_mixture(tiny_corpus).weights
    prop = res.row("proposal")
    assert prop.weights == pytest.approx(want) and prop.predicted is None and prop.measured["n"] == 1
    mix = Mixture.load(out)
    assert mix.meta["method"] == "entropy" and any("training-free" in n for n in mix.meta["notes"])
    from mixopt.cli.search import render_result

    render_result(res)  # no "0 ok, 0 fitted", which would read as a swarm that failed
    printed = capsys.readouterr().out
    assert "runs: no swarm (entropy is training-free)" in printed and "0 ok" not in printed
    with pytest.raises(MixoptError, match="--method entropy computes the mixture from a corpus"):
        prepare(config(tmp_path, method="entropy"))


def test_the_mixture_carries_per_domain_predictions(workspace, tmp_path, ray_session):
    """train's report sets each domain's final loss against a prediction: the search writes one per
    domain, from its kind of model refitted on the runs' per-domain losses."""
    from mixopt.search.driver import run_search

    res = run_search(config(tmp_path, name="perdom", budget=16, method="mixing-law"))
    mix = Mixture.load(tmp_path / "out" / "mixture.json")  # the schema admits the new fields
    pred = mix.meta["predicted"]
    assert pred["per_domain_metric"] == "loss" and set(pred["per_domain"]) == set(DOMAINS)
    truth = testing.true_losses(res.weights, rung="xs")  # the rung the runs were at
    rel = [abs(pred["per_domain"][d] - truth[f"loss/{d}"]) / truth[f"loss/{d}"] for d in DOMAINS]
    assert max(rel) < 0.02, rel
    # the per-domain laws agree with the objective's own prediction (the mean over domains)
    assert np.mean(list(pred["per_domain"].values())) == pytest.approx(pred["mean"], rel=0.02)


def test_one_driver_per_search(workspace, tmp_path):
    """A second driver of a running search is refused (it would mark the live runs interrupted and
    run their slots again); the lock goes with the process that held it."""
    from mixopt.search.lock import driver_alive, driver_lock

    folder = tmp_path / "searches" / "busy"
    assert driver_alive(folder) is None  # never driven here (another machine's, with a shared store)
    (folder / "report").mkdir(parents=True)  # a report of another machine's search: no driver here
    assert driver_alive(folder) is None
    (folder / "runs").mkdir()
    # a driver's files without a lock file: an older mixopt's driver, gone (its search had shown
    # running for good)
    assert driver_alive(folder) is False
    shutil.rmtree(folder / "runs")
    with driver_lock(folder, "busy"):
        assert (folder / "driver.lock").read_text().strip() == str(os.getpid())
        assert driver_alive(folder) is True
        busy = r"search 'busy' is being run by another driver \(pid \d+\)"
        with pytest.raises(MixoptError, match=busy), driver_lock(folder, "busy"):
            pass
    assert driver_alive(folder) is False  # `runs searches` shows a running search without it as stopped
    with driver_lock(folder, "busy"):  # released: the next driver takes it
        pass


def test_an_evaluator_a_worker_cannot_import_says_where():
    """The driver checked the import, so a failure inside a trial is the worker's environment."""
    from mixopt.search.trial import resolve_evaluator

    with pytest.raises(MixoptError, match=r"cannot import evaluator module 'no_such_mod'.*on the Ray worker"):
        resolve_evaluator("no_such_mod:evaluate")


def test_a_default_name_taken_in_the_same_second_gets_a_suffix(workspace, tmp_path, monkeypatch):
    from mixopt.search import prepare as prep_mod

    monkeypatch.setattr(prep_mod, "default_name", lambda config: "custom-linear-20261202-101010")
    cfg = config(tmp_path, method="linear")
    first = prep_mod.prepare(cfg)
    first.store.create_search(first.search_id, {}, {})
    assert first.search_id == "custom-linear-20261202-101010"
    assert prep_mod.prepare(cfg).search_id == "custom-linear-20261202-101010-2"
    assert prep_mod.prepare(config(tmp_path, name="mine")).search_id == "mine"  # a given name is kept


@pytest.mark.parametrize("where", ["/proc", "ps"])
def test_kill_children_ends_the_processes_an_evaluator_started(where, monkeypatch):
    """What --trial-timeout does before ending a worker: a training job the evaluator spawned goes too
    (here the worker is a stand-in process, its job a child with a grandchild). Found through Linux's
    /proc, or through ps as on macOS, where there is no /proc."""
    import subprocess
    import sys
    import time
    from pathlib import Path

    import mixopt.search.trial as trial
    from mixopt.search.trial import _kill_children

    if not Path(f"/proc/{os.getpid()}/task").is_dir():
        pytest.skip("the test finds the processes through Linux /proc")
    if where == "ps":
        monkeypatch.setattr(trial, "Path", lambda p: Path("/nonexistent") / str(p).lstrip("/"))
        # The listing leaves out the ps process itself, a child of the caller that has ended when read:
        # every child it lists is alive.
        for kid in trial._ps_children()(os.getpid()):
            os.kill(kid, 0)
    sleeper = "import time; time.sleep(300)"
    job = f"import subprocess,sys,time; subprocess.Popen([sys.executable,'-c',{sleeper!r}]); time.sleep(300)"
    worker = subprocess.Popen([sys.executable, "-c", f"import subprocess,sys,time; "
                               f"subprocess.Popen([sys.executable,'-c',{job!r}]); time.sleep(300)"])

    def descendants(pid: int) -> list[int]:
        tasks = Path(f"/proc/{pid}/task").iterdir()
        kids = [int(c) for t in tasks for c in (t / "children").read_text().split()]
        return kids + [d for k in kids for d in descendants(k)]

    def alive(pid: int) -> bool:
        stat = Path(f"/proc/{pid}/stat")
        return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"

    try:
        deadline = time.time() + 20
        while len(descendants(worker.pid)) < 2 and time.time() < deadline:
            time.sleep(0.1)
        started = descendants(worker.pid)
        assert len(started) == 2
        _kill_children(worker.pid)
        time.sleep(0.5)
        assert not any(alive(p) for p in started) and worker.poll() is None  # the worker itself stays
    finally:
        worker.kill()
        worker.wait(10)


def test_a_trial_evaluates_without_opening_the_run_store(tmp_path):
    """On a cluster node the store's file is not there: only the driver records runs."""
    from mixopt.search.trial import TrialContext, evaluate

    ctx = TrialContext(store_path=str(tmp_path / "absent" / "runs.sqlite"), search_id="n", home=str(tmp_path),
                       workroot=str(tmp_path / "runs"), domains=DOMAINS, objective={"metric": "loss"},
                       objective_key="k", corpus=None, corpus_hash=None, fidelity={}, fidelity_key="f",
                       evaluator="mixopt.testing:loglinear")
    weights = dict(zip(DOMAINS, (0.4, 0.3, 0.2, 0.1), strict=True))
    res = evaluate({"run_id": "n-s0000-a1", "weights": weights, "seed": 0}, ctx)
    assert res["status"] == "ok" and math.isfinite(res["objective"])
    assert set(res["record"]["metrics"]) >= {f"loss/{d}" for d in DOMAINS}
    assert not (tmp_path / "absent").exists()
    # sys.exit("...") in an evaluator is a failed run with its message (it had ended the Ray worker:
    # "the trial died: ... Worker exits with an exit code")
    import sys

    ctx = dataclasses.replace(ctx, evaluator=lambda request: sys.exit("trainer gave up"))
    res = evaluate({"run_id": "n-s0001-a1", "weights": weights, "seed": 0}, ctx)
    assert res["status"] == "failed" and res["error"] == "SystemExit: trainer gave up"
    res = evaluate({"run_id": "n-s0002-a1", "weights": weights, "seed": 0},
                   dataclasses.replace(ctx, evaluator=lambda request: sys.exit()))
    assert res["status"] == "failed" and res["error"] == "SystemExit"  # not "SystemExit: "


def test_a_history_the_store_cannot_encode_is_the_evaluators_contract_error(tmp_path):
    """The driver writes the history as JSON; a datetime in it must fail the run, not the driver."""
    import datetime as dt

    from mixopt.evaluator import EvalResult
    from mixopt.search.trial import FATAL_PREFIX, TrialContext, evaluate

    def odd(request):  # noqa: ANN001, ANN202
        return EvalResult(metrics={f"loss/{d}": 1.0 for d in DOMAINS}, history=[{"at": dt.datetime.now()}])

    ctx = TrialContext(store_path="unused", search_id="n", home=str(tmp_path), workroot=str(tmp_path),
                       domains=DOMAINS, objective={"metric": "loss"}, objective_key="k", corpus=None,
                       corpus_hash=None, fidelity={}, fidelity_key="f", evaluator=odd)
    res = evaluate({"run_id": "n-s0000-a1", "weights": dict.fromkeys(DOMAINS, 0.25), "seed": 0}, ctx)
    assert res["fatal"] and res["record"]["error"].startswith(FATAL_PREFIX + "evaluator returned a history")
    # --metric bpb where the evaluator returns loss/<domain>: the option is named (a QA pass)
    bpb = dataclasses.replace(ctx, objective={"metric": "bpb"}, evaluator=lambda request: {
        f"loss/{d}": 1.0 for d in DOMAINS})
    res = evaluate({"run_id": "n-s0001-a1", "weights": dict.fromkeys(DOMAINS, 0.25), "seed": 0}, bpb)
    assert res["fatal"] and "(a new search with --metric loss reads those)" in res["record"]["error"]
    some = dataclasses.replace(bpb, evaluator=lambda request: {"loss/web": 1.0, "acc/web": 0.5})
    res = evaluate({"run_id": "n-s0002-a1", "weights": dict.fromkeys(DOMAINS, 0.25), "seed": 0}, some)
    assert res["fatal"] and "--metric" not in res["record"]["error"]  # no kind covers every domain


def test_ray_client_addresses_are_refused_by_name():
    from mixopt.search.ray_env import ensure_ray

    with pytest.raises(MixoptError, match=r"Ray Client \(ray://\) is not supported.*--address auto"):
        ensure_ray("ray://head:10001")


@pytest.mark.parametrize("field", ["address", "evaluator", "validate_rung", "rung"])
@pytest.mark.parametrize("blank", ["", " "])
def test_blank_options_are_refused_before_anything(field, blank, monkeypatch):
    """A QA pass: `--address ''` had run on a local Ray as if none was given, `' '` passed Ray's own
    "Invalid address format:  " on; `--evaluator ''` was the built-in proxy, and a blank `--rung` or
    `--validate-rung` a user evaluator's label: a new search refuses them. A search stored with one
    reads back (the review: a stored ' ' rung had made its search impossible to resume)."""
    from mixopt.search.config import SearchConfig
    from mixopt.search.driver import run_search
    from mixopt.search.ray_env import ensure_ray, env_address

    option = "--" + field.replace("_", "-")
    said = f"{option} is empty" if blank == "" else f"{option} ' ' is blank"
    with pytest.raises(MixoptError, match=said):
        run_search(SearchConfig(corpus="c", **{field: blank}))
    if field == "address":  # `bench search --address` reaches Ray without a SearchConfig
        with pytest.raises(MixoptError, match=said):
            ensure_ray(blank)
        monkeypatch.setenv("RAY_ADDRESS", blank)  # a blank RAY_ADDRESS is none, as an empty one is
        assert env_address() is None
    stored = SearchConfig.from_dict({"corpus": "c", field: blank or " "} if field != "rung" else
                                    {"corpus": "c", "rung": " ", "validate_rung": " "})
    if field in ("rung", "validate_rung"):  # kept: its runs are keyed by it
        assert stored.rung == (" " if field == "rung" else "xs") and stored.validate_rung == " "
    else:
        assert getattr(stored, field) is None


@pytest.mark.parametrize(("field", "why"), [
    ("corpus", "it is --corpus's: give --corpus NAME; runs are keyed by the corpus's hash"),
    ("evaluator", "it is the evaluator's name in the runs' reuse key"),
    ("rung_hash", "it is a proxy rung's hash")])
def test_a_fidelity_field_mixopt_sets_itself_is_refused(field, why, workspace, tmp_path):
    """A property test: `--fidelity corpus=a` and `corpus=b` had given their runs one reuse key (the
    key leaves the corpus to its own column, which a user evaluator's runs leave empty), so a search
    reused runs of another corpus; `evaluator=` was overwritten by the key's own. (`rung=` is --rung's.)"""
    from mixopt.search.imports import import_table
    from mixopt.search.prepare import prepare

    said = rf"--fidelity {field}=\.\.\.: mixopt sets {field} itself \({re.escape(why)}.*\); name your"
    with pytest.raises(MixoptError, match=said):
        prepare(config(tmp_path, fidelity={field: "x"}))
    prepare(config(tmp_path, fidelity={field: "x"}), search_id="before")  # a stored search goes on
    (tmp_path / "r.csv").write_text("run,a,b\n1,0.5,0.5\n2,0.25,0.75\n")
    (tmp_path / "m.csv").write_text("run,loss/a,loss/b\n1,2.0,3.0\n2,2.5,2.0\n")
    store = RunStore()
    with pytest.raises(MixoptError, match=said):
        import_table(store, ratios=tmp_path / "r.csv", metrics=tmp_path / "m.csv", evaluator="m:f",
                     fidelity={field: "x"})
    assert list(store.runs()) == []
    import_table(store, ratios=tmp_path / "r.csv", metrics=tmp_path / "m.csv", evaluator="m:f",
                 fidelity={"rung": "1m"})  # a table's rung is given so: an import has no --rung
    assert {r.fidelity["rung"] for r in store.runs()} == {"1m"}


@pytest.mark.parametrize("seed", [-1, 2**32, 2**64])
def test_a_library_seed_past_the_clis_range_is_refused_before_anything(seed, workspace):
    """A property test: SearchConfig(seed=2**64) had reached the store and failed there with an
    OverflowError; the CLI's --seed stops at 2^32 - 1. A stored search is spared (it may have run)."""
    from mixopt.search.config import SearchConfig
    from mixopt.search.driver import run_search

    with pytest.raises(MixoptError, match=rf"--seed is {seed:,}; give a seed from 0 to 4,294,967,295"):
        run_search(SearchConfig(corpus="c", seed=seed))
    assert SearchConfig.from_dict({"corpus": "c", "seed": 2**40}).seed == 2**40


@pytest.mark.parametrize(("kw", "said"), [({"retries": -1}, "--retries is -1"),
                                         ({"concurrency": 0}, "--concurrency is 0"),
                                         ({"trial_timeout": 0.0}, "--trial-timeout is 0.0"),
                                         ({"address": " "}, "--address ' ' is blank")])
def test_a_finished_searchs_resume_refuses_bad_values_it_would_not_use(kw, said, workspace):
    """A QA pass: `--resume DONE --retries -1` had been only "changes nothing", and `--concurrency -1`
    not even that; each is refused as for a search still going, before its stored result is said."""
    from mixopt.search.driver import resume_search
    from mixopt.store import RunStore

    store = RunStore()
    store.create_search("done", {"evaluator": "m:f", "domains": ["a", "b"]})
    store.update_search("done", state="done", result={"search_id": "done"})
    events = []
    with pytest.raises(MixoptError, match=said):
        resume_search("done", progress=events.append, **kw)
    assert events == []


def test_a_resume_with_a_longer_trial_timeout_runs_timed_out_slots_again(workspace, tmp_path, ray_session):
    from mixopt.search.driver import resume_search, run_search

    cfg = config(tmp_path, name="slow", evaluator="mixopt.testing:sleepy", budget=2, retries=0,
                 trial_timeout=1.0, fidelity={"sleep": 4})
    with pytest.raises(MixoptError, match="too few to fit"):
        run_search(cfg)
    assert all(r.error.startswith("timed out after 1 s") for r in RunStore().runs(search_id="slow"))
    res = resume_search("slow", trial_timeout=60)
    assert res.runs["ok"] == res.runs["fitted"] == 2
    # a finished search: the options for its runs change nothing, and it says so
    with pytest.warns(MixoptWarning, match=r"'slow' is finished, so --retries and --trial-timeout change "):
        assert resume_search("slow", retries=3, trial_timeout=90).runs == res.runs
    with pytest.warns(MixoptWarning, match=r"'slow' is finished, so --retries changes nothing"):
        resume_search("slow", retries=3)


def test_the_driver_records_a_trial_that_died_before_it_started_or_after_it_reported(tmp_path):
    """The store and the searcher agree in both odd cases: a failure with no start is a failed run;
    a death after the outcome was reported keeps the outcome."""
    from types import SimpleNamespace

    from mixopt.search.runner import TrialCallback
    from mixopt.search.trial import TrialContext

    store = RunStore(tmp_path / "runs.sqlite")
    ctx = TrialContext(store_path=str(store.path), search_id="n", home=str(tmp_path), workroot=str(tmp_path),
                       domains=DOMAINS, objective={"metric": "loss"}, objective_key="k", corpus=None,
                       corpus_hash=None, fidelity={}, fidelity_key="f")
    cb = TrialCallback(store, "swarm", [], retries=1, progress=None, best=None, ctx=ctx)

    def trial(run_id: str) -> SimpleNamespace:
        return SimpleNamespace(config={"run_id": run_id, "seed": 0, "weights": dict.fromkeys(DOMAINS, 0.25),
                                       "attempt": 1, "failures": 0}, error_file=None)

    cb.on_trial_error(0, [], trial("n-s0000-a1"))
    assert store.get("n-s0000-a1").status == "failed" and store.get("n-s0000-a1").cost is None
    # a run stopped at --trial-timeout: its cost is the time it ran (it had been None)
    cb.ctx = dataclasses.replace(ctx, timeout=0.0)
    cb.on_trial_start(0, [], trial("n-s0002-a1"))
    cb.on_trial_error(0, [], trial("n-s0002-a1"))
    late = store.get("n-s0002-a1")
    assert late.error.startswith("timed out after 0 s") and late.cost is not None and late.cost >= 0
    cb.ctx = ctx
    t = trial("n-s0001-a1")
    cb.on_trial_start(0, [], t)
    record = {"metrics": {"loss/web": 2.0}, "history": [], "error": None}
    cb.on_trial_result(0, [], t, {"run_id": "n-s0001-a1", "status": "ok", "objective": 2.0, "record": record})
    cb.on_trial_error(0, [], t)
    assert store.get("n-s0001-a1").status == "ok" and store.get("n-s0001-a1").metrics == {"loss/web": 2.0}


def test_an_unreachable_ray_address_is_one_error_at_once(monkeypatch):
    import ray

    from mixopt.search.ray_env import ensure_ray, reachable_address

    monkeypatch.setattr(ray, "is_initialized", lambda: False)  # as in a fresh driver
    with pytest.raises(MixoptError) as exc:
        ensure_ray("127.0.0.1:1")
    assert str(exc.value).startswith("cannot reach the Ray cluster at ")  # said once, not wrapped again
    assert str(exc.value).lower().count("check --address") == 1

    with pytest.raises(MixoptError, match=r"cannot reach the Ray cluster at .*:1 \(--address "
                                          r"127\.0\.0\.1:1\): .*drop them to run on a local Ray"):
        reachable_address("127.0.0.1:1")  # Ray itself would retry for minutes
    with pytest.raises(MixoptError, match=r"--address nonsense: Invalid address format"):
        reachable_address("nonsense")


def test_a_search_checks_its_options_before_the_cluster_and_leaves_nothing_when_it_is_down(
        workspace, tmp_path, monkeypatch):
    from mixopt.search import driver
    from mixopt.store import default_path

    monkeypatch.setattr(driver, "_ray_is_up", lambda: False)  # as in a fresh driver
    with pytest.raises(MixoptError, match="nope"):  # the typo, not the cluster
        driver.run_search(config(tmp_path, address="127.0.0.1:1", target="nope"))
    with pytest.raises(MixoptError, match=r"cannot reach the Ray cluster at .*:1 \(--address 127\.0\.0\.1:1"):
        driver.run_search(config(tmp_path, address="127.0.0.1:1"))  # a default name: its folder claimed
    assert not default_path().exists()  # no empty store
    assert list((workspace / "searches").glob("*")) == []  # nor the folder of its default name


def test_a_cluster_that_refuses_the_join_is_one_line_naming_the_cause(monkeypatch, capfd):
    import os

    import ray

    from mixopt.search import ray_env

    def refused(**kwargs):  # Ray's core logs each failed attempt on fd 2, then gives up
        os.write(2, b"[E gcs_client.cc:210] Failed to get cluster ID: Unauthenticated: InvalidAuthToken\n"
                 * 20)
        raise ConnectionError("Failed to connect to Ray cluster")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray_env, "reachable_address", lambda address: address)
    monkeypatch.setattr(ray, "init", refused)
    monkeypatch.setenv("RAY_AUTH_TOKEN", "0" * 32)
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    with pytest.raises(MixoptError, match=r"the Ray cluster at 10\.0\.0\.1:6379 refused the auth token "
                                          r"\(read from the RAY_AUTH_TOKEN environment variable\): "
                                          r"it is not that cluster's"):
        ray_env.ensure_ray("10.0.0.1:6379")
    assert "InvalidAuthToken" not in capfd.readouterr().err  # held back, not shown
    assert "not as a Ray cluster's GCS" in ray_env._join_failure(["grpc status: 404"], "h:1")
    assert ray_env._join_failure(["something else"], "h:1") is None


def test_resume_says_it_does_not_follow_ray_address(workspace, tmp_path, monkeypatch):
    from mixopt.search import driver

    cfg = config(tmp_path, name="oncluster", address="10.0.0.1:6379")
    RunStore().create_search("oncluster", {**cfg.as_dict(), "name": "oncluster"}, {})

    def stop(config, *a, **k):  # what resume hands on, before it would start anything
        raise KeyboardInterrupt(config.address)

    monkeypatch.setattr(driver, "prepare", stop)
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6999")
    said = (r"RAY_ADDRESS=127\.0\.0\.1:6999 is not used: search 'oncluster' goes on at 10\.0\.0\.1:6379, "
            "where it ran")
    with pytest.warns(MixoptWarning, match=said), pytest.raises(KeyboardInterrupt, match="10.0.0.1:6379"):
        driver.resume_search("oncluster")
    with pytest.raises(KeyboardInterrupt, match="127.0.0.1:7000"):  # --address moves it
        driver.resume_search("oncluster", address="127.0.0.1:7000")


def test_a_lost_cluster_is_noticed_by_the_watch():
    import socket
    import threading

    from mixopt.search.ray_env import RayInfo, watch_cluster

    head = socket.socket()
    head.bind(("127.0.0.1", 0))
    head.listen(16)
    info = RayInfo(address=f"127.0.0.1:{head.getsockname()[1]}", started_here=False, num_cpus=2,
                   dashboard_url=None, auth="token", token_source=None)
    lost = threading.Event()
    with watch_cluster(info, lost.set, every_s=0.05, misses=3):
        assert not lost.wait(0.5)  # the head answers
        head.close()
        assert lost.wait(5)  # then stops answering
    local = RayInfo(**{**info.__dict__, "started_here": True})
    lost.clear()
    with watch_cluster(local, lost.set, every_s=0.01, misses=1):  # a Ray of its own: not watched
        assert not lost.wait(0.3)
    lost.clear()  # Ray's own wait raised (a head that comes back, GCS fault tolerance): followed
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAY_gcs_rpc_server_reconnect_timeout_s", "5.5")  # 0.5 s after its 5 s margin
        with watch_cluster(info, lost.set, every_s=0.05, misses=3):
            assert not lost.wait(0.3) and lost.wait(5)


def test_a_dead_trial_is_recorded_with_the_telling_line_of_its_error_file(tmp_path):
    from mixopt.search.runner import _error_summary

    f = tmp_path / "error.txt"
    f.write_text("Failure # 1 (occurred at 2026-12-02)\nTraceback (most recent call last):\n  File \"x\"\n"
                 "ray.exceptions.ActorDiedError: The actor died unexpectedly before finishing this task.\n"
                 "\tclass_name: ImplicitFunc\n\tThe actor's worker process exited with exit code 3.\n\n")
    text = _error_summary(str(f))
    assert text.startswith("The actor's worker process exited with exit code 3. (Ray's error file: ")
    f.write_text("Failure # 1\nThe actor died unexpectedly before finishing this task.\n\tpid: 1\n"
                 "The actor is dead because its worker process has died. Worker exit detail: Worker "
                 "unexpectedly exits with a connection error code 2. End of file. Some common causes "
                 "include: (1) the OOM\n")
    assert _error_summary(str(f)).startswith("The actor is dead because its worker process has died. Worker "
                                             "exit detail: Worker unexpectedly exits with a connection error "
                                             "code 2. End of file. (Ray's error file: ")
    # killed by Ray's memory monitor (a QA pass: `runs list` showed "Refer to the documentat…")
    f.write_text("Failure # 1\nray.exceptions.ActorDiedError: The actor died unexpectedly before finishing "
                 "this task.\nThe actor is dead because its worker process has died. Worker exit type: "
                 "NODE_OUT_OF_MEMORY Worker exit detail: Task was killed due to the node running low on "
                 "memory.\nMemory on the node (IP: 10.0.0.1, ID: ab12) where the task (actor ID: cd34, "
                 "name=ImplicitFunc.__init__, pid=4242, memory used=5.10GB) was running was 21.93GB / "
                 "23.02GB (0.952), which exceeds the memory usage threshold of 0.95.\nRefer to the "
                 "documentation on how to address the out of memory issue: https://docs.ray.io/en/latest/ray-core/oom.html\n")
    assert _error_summary(str(f)).startswith("out of memory: Ray's memory monitor killed the trial (node at "
                                             "21.93GB / 23.02GB); run fewer trials at once (--concurrency)")
    f.write_text("Failure # 1\ntorch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB\n")
    assert _error_summary(str(f)).startswith("torch.OutOfMemoryError: CUDA out of memory")  # not Ray's
    assert _error_summary(None) == "no error file"
    assert _error_summary(str(tmp_path / "gone")).startswith("see ")


def test_a_law_search_notes_its_fit_warnings_but_not_a_fixed_domain(workspace, tmp_path, ray_session):
    from mixopt.search.driver import run_search

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = run_search(config(tmp_path, name="lawfix", budget=10, method="mixing-law", fix={"web": 0.3}))
    said = [str(w.message) for w in caught]
    assert not any("have the same weight in every run" in m for m in [*said, *res.notes])  # --fix holds it
    # A warning of the fit itself is kept in the mixture's notes, as shown: books is held at 0 by a
    # ceiling, not by --fix, so the law says it has no term for it.
    res = run_search(config(tmp_path, name="lawcap", budget=10, method="mixing-law",
                            max_weight={"books": 0.0}, reuse=False, temperature=2.0))
    assert any("domain(s) books have the same weight in every run" in n for n in res.notes)
    # The exact solve's KL prior is the prior the swarm sampled around (--temperature)
    mix = json.loads((tmp_path / "out" / "mixture.json").read_text())
    assert mix["params"]["proposer"]["temperature"] == 2.0


def test_a_trial_bigger_than_any_node_is_refused_and_leaves_no_search(workspace, tmp_path, ray_session):
    from mixopt.search.driver import run_search

    with pytest.raises(MixoptError, match=r"--cpus-per-trial 64: no node of the Ray cluster has that many "
                                          r"CPUs \(the largest has 2\); give at most 2"):
        run_search(config(tmp_path, name="huge", cpus_per_trial=64))  # Tune would wait forever
    assert RunStore().get_search("huge") is None and not (workspace / "searches" / "huge").exists()


def test_gpus_per_trial_are_checked_against_the_cluster_and_the_evaluator(workspace, tmp_path, ray_session):
    """--gpus-per-trial reserves GPUs for a user's evaluator: more than any node has is refused before
    a run (Tune would wait forever), and so is the built-in proxy, which trains on CPUs."""
    from mixopt.search.driver import run_search

    for bad in (1.5, -1.0, math.nan):  # Ray takes a fraction of one GPU, or whole GPUs
        with pytest.raises(MixoptError, match="--gpus-per-trial is .*; give 0, a fraction up to 1"):
            config(tmp_path, gpus_per_trial=bad)
    assert config(tmp_path, gpus_per_trial=0.25).gpus_per_trial == 0.25
    # 64: more than this machine has, with or without GPUs (the review: 0.5 would run on a GPU host)
    with pytest.raises(MixoptError, match=r"--gpus-per-trial 64: (this machine's Ray sees no GPU|no node "
                                          r"of the Ray cluster has 64 GPUs)"):
        run_search(config(tmp_path, name="gpu", gpus_per_trial=64))
    assert RunStore().get_search("gpu") is None and not (workspace / "searches" / "gpu").exists()
    with pytest.raises(MixoptError, match="--gpus-per-trial 1: the built-in proxy trains on CPUs"):
        run_search(SearchConfig(corpus="nope", gpus_per_trial=1))


def test_a_trial_must_fit_one_node_with_its_cpus_and_its_gpus(tmp_path, monkeypatch):
    """The review: CPUs and GPUs per trial checked apart passed a trial of 4 CPUs and 1 GPU on a GPU
    node of 2 CPUs beside a CPU node of 8, and Tune would have waited for it forever."""
    import ray

    from mixopt.search.driver import _check_trial_fits
    from mixopt.search.ray_env import RayInfo

    nodes = [{"Alive": True, "Resources": {"CPU": 2.0, "GPU": 1.0}},
             {"Alive": True, "Resources": {"CPU": 8.0}},
             {"Alive": False, "Resources": {"CPU": 64.0, "GPU": 8.0}}]
    monkeypatch.setattr(ray, "nodes", lambda: nodes)
    info = RayInfo(address="x", started_here=False, num_cpus=10, dashboard_url=None, auth="token",
                   token_source=None, num_gpus=1.0)
    _check_trial_fits(config(tmp_path, cpus_per_trial=2, gpus_per_trial=1), info)
    _check_trial_fits(config(tmp_path, cpus_per_trial=8), info)
    for cpus, gpus, said in ((4, 1, "no one node of the Ray cluster has both"),
                             (9, 0, "--cpus-per-trial 9: no node of the Ray cluster has that many CPUs"),
                             (1, 2, "no node of the Ray cluster has 2 GPUs (the largest has 1)")):
        with pytest.raises(MixoptError, match=re.escape(said)):
            _check_trial_fits(config(tmp_path, cpus_per_trial=cpus, gpus_per_trial=gpus), info)


def test_a_resume_may_change_the_resources_per_trial(workspace, tmp_path, ray_session, capsys):
    """A search that stopped goes on with other --cpus-per-trial/--gpus-per-trial (a cluster of other
    nodes): they decide where runs go, not what they measure."""
    from mixopt.cli import run_cli
    from mixopt.search.driver import resume_search

    _stopped_then_fixed(tmp_path, "moved")
    capsys.readouterr()
    # the CLI passes them on when typed, and does not call them ignored
    assert run_cli(["search", "--resume", "moved", "--gpus-per-trial", "64"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "--gpus-per-trial 64: " in err and "ignoring" not in err
    with pytest.raises(MixoptError, match="--gpus-per-trial 64: "):  # it reached the search's config
        resume_search("moved", gpus_per_trial=64)
    with pytest.raises(MixoptError, match="--cpus-per-trial 64: no node"):
        resume_search("moved", cpus_per_trial=64)
    res = resume_search("moved", cpus_per_trial=2, gpus_per_trial=0)
    assert res.runs["ok"] == 6 and RunStore().require_search("moved").state == "done"


def test_a_proposal_where_runs_diverged_is_noted(workspace, tmp_path, ray_session):
    from mixopt.search.driver import run_search

    # Loss falls with web, but every run with web > 0.5 diverged: a linear fit proposes web = 1.
    res = run_search(config(tmp_path, name="breaks", evaluator="mixopt.testing:diverges_past", budget=12,
                            method="linear", retries=0, reuse=False))
    assert res.runs["lost"].get("diverged", 0) > 0
    note = next(n for n in res.notes if "which diverged, than to any run that trained" in n)
    assert f"; {res.runs['lost']['diverged']} swarm mixtures diverged)" in note  # mixtures, as the table



def test_a_local_evaluator_module_is_shipped_to_a_clusters_workers(tmp_path, monkeypatch):
    """A module beside the driver (its folder, PYTHONPATH) is on no other node: its file or package
    folder goes to the workers as Ray's py_modules. Installed packages, the standard library and
    mixopt itself are not shipped."""
    from mixopt.search.ray_env import user_modules

    (tmp_path / "my_eval_file.py").write_text("def evaluate(request):\n    return {}\n")
    pkg = tmp_path / "my_eval_pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "ev.py").write_text("def evaluate(request):\n    return {}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert user_modules("my_eval_file:evaluate") == [str((tmp_path / "my_eval_file.py").resolve())]
    assert user_modules("my_eval_pkg.sub.ev:evaluate") == [str(pkg.resolve())]  # the top-level package
    for installed in (None, "proxy", "mixopt.testing:loglinear", "json:loads", "numpy:mean", "no_such:f"):
        assert user_modules(installed) == [], installed


def _stopped_search(workspace, tmp_path):  # noqa: ANN001, ANN202
    """A store, a run folder and the trial context of search ``st`` (the driver-stop tests)."""
    from mixopt.search.trial import TrialContext

    store = RunStore()
    root = tmp_path / "runs"
    ctx = TrialContext(store_path=str(store.path), search_id="st", home=str(workspace), workroot=str(root),
                       domains=DOMAINS, objective={"metric": "loss"}, objective_key="k", corpus=None,
                       corpus_hash=None, fidelity={}, fidelity_key="f", evaluator="mixopt.testing:loglinear")
    return store, root, ctx


def test_runs_that_finished_as_the_driver_stopped_are_recorded_from_their_folders(workspace, tmp_path):
    """A trial keeps its report in its run folder; the driver that did not hear it (Ctrl-C during
    Tune's shutdown, kill -9) records it from there instead of running it again."""
    from mixopt.evaluator import EvalRequest
    from mixopt.search.runner import INTERRUPTED, settle_runs
    from mixopt.search.trial import evaluate, keep_outcome
    from mixopt.store import RunRecord

    store, root, ctx = _stopped_search(workspace, tmp_path)
    w = dict.fromkeys(DOMAINS, 0.25)
    for i, status, error in ((1, "running", None), (2, "failed", INTERRUPTED), (3, "running", None)):
        store.begin(RunRecord(run_id=f"st-s{i:04d}-a1", search_id="st", weights=w, seed=i, fidelity={},
                              fidelity_key="f"))
        if status == "failed":
            store.finish(f"st-s{i:04d}-a1", status="failed", error=error)
        if i < 3:  # runs 1 and 2 finished and kept their report; run 3 was cut short
            keep_outcome(root, evaluate({"run_id": f"st-s{i:04d}-a1", "weights": w, "seed": i}, ctx))
    cut = settle_runs(store, "st", root)
    assert cut == ["st-s0003-a1"] and store.get("st-s0003-a1").error.startswith("interrupted")
    for i in (1, 2):
        r = store.get(f"st-s{i:04d}-a1")
        want = testing.loglinear(EvalRequest(mixture=w, fidelity={}, seed=i, run_id=r.run_id,
                                             workdir=str(tmp_path / "again")))
        assert r.status == "ok" and r.error is None and r.metrics == pytest.approx(want.metrics)


def test_a_late_outcome_of_an_attempt_whose_slot_ran_again_is_not_recorded(workspace, tmp_path):
    """A QA pass: kill -9 of the driver, a resume at once; the orphaned trial of s0002-a1 wrote its
    outcome after the resume had marked it interrupted and started s0002-a2, and the next settle
    recorded both ok (two runs of one slot, fitted twice by later searches)."""
    from mixopt.search.runner import INTERRUPTED, settle_runs
    from mixopt.search.trial import evaluate, keep_outcome
    from mixopt.store import RunRecord

    store, root, ctx = _stopped_search(workspace, tmp_path)
    w = dict.fromkeys(DOMAINS, 0.25)

    def attempt(run_id: str, status: str, *, late: bool) -> None:
        store.begin(RunRecord(run_id=run_id, search_id="st", weights=w, seed=0, fidelity={},
                              fidelity_key="f"))
        if status != "running":
            store.finish(run_id, status=status, error=INTERRUPTED if status == "failed" else None,
                         metrics={f"loss/{d}": 1.0 for d in DOMAINS} if status == "ok" else {})
        if late:  # the orphan's outcome, in its folder
            keep_outcome(root, evaluate({"run_id": run_id, "weights": w, "seed": 0}, ctx))

    attempt("st-s0001-a1", "failed", late=True)
    attempt("st-s0001-a2", "ok", late=False)  # the slot ran again and finished
    attempt("st-s0002-a1", "failed", late=True)
    attempt("st-s0002-a2", "running", late=False)  # ... or runs again now
    attempt("st-s0003-a1", "failed", late=True)  # no other attempt: recovered, as before
    settle_runs(store, "st", root)
    status = {r.run_id: r.status for r in store.runs(search_id="st")}
    assert status == {"st-s0001-a1": "failed", "st-s0001-a2": "ok", "st-s0002-a1": "failed",
                      "st-s0002-a2": "failed", "st-s0003-a1": "ok"}
    assert sum(r.status == "ok" for r in store.runs(search_id="st") if "s0001" in r.run_id) == 1


def test_an_outcome_given_after_a_stop_signal_is_not_used(workspace, tmp_path, monkeypatch):
    """A helper's search: SIGTERM to the driver; Ray's shutdown killed the evaluator's training job
    10 s later, the evaluator returned what its first checkpoint had left, and that run was recorded
    ``ok`` (from the report or from its folder) and fitted. An outcome after the signal is not used,
    now or on a later --resume; one from before it still is."""
    from types import SimpleNamespace

    from mixopt.search import runner
    from mixopt.search.runner import CUT_SHORT, TrialCallback, settle_runs
    from mixopt.search.trial import evaluate, keep_outcome
    from mixopt.store import RunRecord

    store, root, ctx = _stopped_search(workspace, tmp_path)
    w = dict.fromkeys(DOMAINS, 0.25)
    outcomes = {}
    for i in (1, 2, 3):
        store.begin(RunRecord(run_id=f"st-s{i:04d}-a1", search_id="st", weights=w, seed=i, fidelity={},
                              fidelity_key="f"))
        outcomes[i] = evaluate({"run_id": f"st-s{i:04d}-a1", "weights": w, "seed": i}, ctx)
        keep_outcome(root, outcomes[i])
    stopped_at = outcomes[1]["finished_at"] + 1e-6  # run 1 ended before the signal, runs 2 and 3 after
    for i in (2, 3):
        outcomes[i]["finished_at"] = stopped_at + 10
        keep_outcome(root, outcomes[i])
    # Tune passes run 3's report on during its shutdown: not recorded as ok
    monkeypatch.setitem(runner._STOP_SIGNAL, "at", stopped_at)
    cb = TrialCallback(store, "swarm", [], 0, None, None, ctx)
    cb.on_trial_result(0, [], None, dict(outcomes[3]))
    assert store.get("st-s0003-a1").status == "failed" and store.get("st-s0003-a1").error == CUT_SHORT
    cut = settle_runs(store, "st", root, stopped_at=stopped_at)
    assert cut == ["st-s0002-a1"]
    assert store.get("st-s0001-a1").status == "ok"
    # a later settle (a --resume, which knows no signal time) does not take the late outcomes up again
    assert settle_runs(store, "st", root) == []
    for i in (2, 3):
        r = store.get(f"st-s{i:04d}-a1")
        assert r.status == "failed" and r.error == CUT_SHORT and r.metrics == {}
    # the slot runs again, and the cut-short attempt does not count against --retries
    from mixopt.search.runner import slot_states
    from mixopt.search.searcher import Slot

    slot = Slot(key="s0002", weights=list(w.values()), seed=2)
    slot_states(store, "st", [slot], retries=0)
    assert (slot.state, slot.attempt) == ("pending", 2)
    # a trial that dies in the shutdown (Ray ends the workers) is cut short too, not a failure of its own
    store.begin(RunRecord(run_id="st-s0004-a1", search_id="st", weights=w, seed=4, fidelity={},
                          fidelity_key="f"))
    dead = SimpleNamespace(config={"run_id": "st-s0004-a1", "failures": 0}, error_file=None)
    cb.on_trial_error(0, [], dead)
    assert store.get("st-s0004-a1").error == CUT_SHORT


def test_the_stop_signal_is_noted_through_tunes_own_handlers(workspace, tmp_path, monkeypatch, capsys):
    """The callback wraps the stop handlers Tune installed for this fit (Tune's SIGUSR1 handler is left
    over from an earlier fit otherwise); the time is kept in the run folder for a driver killed before
    it closes its runs, and read back by the --resume."""
    import signal

    from ray.tune.tune import _setup_signal_catching

    from mixopt.search import runner
    from mixopt.search.runner import STOPPED, TrialCallback, recorded_stop, settle_runs
    from mixopt.search.trial import keep_outcome
    from mixopt.store import RunRecord

    store, root, ctx = _stopped_search(workspace, tmp_path)
    monkeypatch.setitem(runner._STOP_SIGNAL, "at", None)
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGUSR1)}
    try:
        event = _setup_signal_catching()  # what Tune's fit() does before it sets its callbacks up
        TrialCallback(store, "swarm", [], 0, None, None, ctx).setup()
        assert signal.getsignal(signal.SIGINT) is signal.getsignal(signal.SIGUSR1)  # both wrapped
        os.kill(os.getpid(), signal.SIGINT)
        assert event.is_set() and runner.stop_signal_time() is not None  # Tune stops, the time noted
        # said at once: Ray takes seconds to end the runs in flight (a QA pass: 13 s of silence)
        assert capsys.readouterr().err.startswith(runner.STOPPING + "\n")
        assert recorded_stop(root) == runner.stop_signal_time()
        assert signal.getsignal(signal.SIGINT) is saved[signal.SIGINT]  # Tune gave SIGINT back
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
    # a driver killed before it closed its runs: the resume reads the time from the folder
    w = dict.fromkeys(DOMAINS, 0.25)
    store.begin(RunRecord(run_id="st-s0001-a1", search_id="st", weights=w, seed=1, fidelity={},
                          fidelity_key="f"))
    keep_outcome(root, {"run_id": "st-s0001-a1", "status": "ok", "objective": 9.0, "cost": 1.0,
                        "finished_at": recorded_stop(root) + 10, "record": {"metrics": {"loss/web": 9.0}}})
    assert settle_runs(store, "st", root, stopped_at=recorded_stop(root)) == ["st-s0001-a1"]
    assert store.get("st-s0001-a1").status == "failed" and (root / STOPPED).exists()


def test_per_domain_note_when_the_two_fits_disagree() -> None:
    """A helper's GP search: per-domain refits averaging 3.589 against the objective fit's 3.841 ± 0.101
    is said; within 2 sd (or 0.5% without an sd) it is not. The objective's domain weights count."""
    from mixopt.search.driver import per_domain_note
    from mixopt.search.validate import Candidate

    per = {"a": 3.5885, "b": 3.5856, "c": 3.6316, "d": 3.5497}
    cand = Candidate(name="uniform", weights=[0.25] * 4, predicted=3.841, predicted_std=0.101,
                     predicted_per_domain=per)
    note = per_domain_note(cand, Objective(), list(per))
    assert note is not None and "combine to 3.589, against 3.841 from the objective's own fit (2.5 sd" in note
    near = Candidate(name="proposal", weights=[0.25] * 4, predicted=3.7, predicted_std=0.101,
                     predicted_per_domain=per)
    assert per_domain_note(near, Objective(), list(per)) is None
    no_sd = Candidate(name="proposal", weights=[0.25] * 4, predicted=3.60, predicted_per_domain=per)
    assert per_domain_note(no_sd, Objective(), list(per)) is None  # 0.3% apart
    only_c = Objective.parse("c", "loss")  # the objective is domain c's loss alone: 3.6316, 0.9% off
    said = per_domain_note(no_sd, only_c, list(per))
    assert "combine to 3.632, against 3.6 from the objective's own fit:" in said
    assert "combine to 3.55" in per_domain_note(no_sd, Objective.parse("d", "loss"), list(per))
    assert per_domain_note(Candidate(name="random", weights=[0.25] * 4), Objective(), list(per)) is None


def test_reused_repeats_of_one_mixture_count_once_towards_the_budget(workspace, tmp_path) -> None:
    """A helper's search: earlier validation had measured 2 mixtures at many seeds, and those runs
    filled --budget, so no new run was planned. Each mixture counts once; every run is still fitted."""
    from mixopt.evaluator import EvalRequest
    from mixopt.search.driver import _plan, _plan_line
    from mixopt.search.prepare import prepare
    from mixopt.store import RunRecord

    cfg = config(tmp_path, name="again", budget=6)
    prep = prepare(cfg)
    mixtures = [dict(zip(DOMAINS, w, strict=True)) for w in np.random.default_rng(0).dirichlet(np.ones(4), 2)]
    recs = []
    for i, w in enumerate(mixtures):
        for seed in range(5):  # one mixture validated at 5 seeds
            req = EvalRequest(mixture=w, fidelity={}, seed=seed, run_id="r", workdir=str(tmp_path))
            recs.append(RunRecord(run_id=f"old-v{i}-{seed}", search_id="old", role="validate", weights=w,
                                  fidelity={}, fidelity_key=prep.fidelity_key, status="ok", seed=seed,
                                  metrics=testing.loglinear(req).metrics))
    prep.store.add(recs)
    plan = _plan(prep)
    assert len(plan["reused"]) == 10 and plan["reused_counted"] == 2 and len(plan["swarm"]) == 4
    assert _plan_line(prep, plan) == ("search again: 4 new runs, 10 reused (2 mixtures inside the "
                                      "constraints count towards --budget 6; every reused run is fitted)")
    # ten runs of two mixtures are two points for a law's parameters, not ten
    with pytest.raises(MixoptError, match=r"would fit 2 distinct mixtures \(0 new runs, 10 reused\); raise "
                                          r"--budget to \d+"):
        _plan(prepare(config(tmp_path, name="law", budget=2, method="mixing-law")))


def test_default_names_taken_in_the_same_second_get_a_suffix(workspace, tmp_path, monkeypatch) -> None:
    """Two searches started in one second: the second is not told to resume the first's."""
    from mixopt.search import prepare as prepare_mod
    from mixopt.search.driver import run_search
    from mixopt.search.prepare import prepare

    with monkeypatch.context() as m:
        m.setattr(prepare_mod, "default_name", lambda cfg: "custom-regmix-20261203-085706")  # one second
        first, second = prepare(config(tmp_path)), prepare(config(tmp_path))
    assert first.search_id == "custom-regmix-20261203-085706" and second.search_id == first.search_id + "-2"
    assert first.search_dir.is_dir() and second.search_dir.is_dir()
    assert second.search_dir.name == second.search_id
    # a default-named search refused while planning leaves no claimed folder behind
    before = set((workspace / "searches").iterdir())
    with pytest.raises(MixoptError, match="--budget"):
        run_search(config(tmp_path, method="mixing-law", budget=2))
    assert set((workspace / "searches").iterdir()) == before


def test_a_twin_search_leaves_the_mixtures_another_is_running_to_it(workspace, tmp_path) -> None:
    """A helper's two searches over one space, the second started while the first ran: the same
    seeded swarm, so the second measured the first's planned mixtures again."""
    from mixopt.search.driver import _plan, _plan_line
    from mixopt.search.lock import driver_lock
    from mixopt.search.prepare import prepare
    from mixopt.store import RunRecord

    first = prepare(config(tmp_path, name="first", budget=6))
    first_plan = _plan(first)
    prep = prepare(config(tmp_path, name="twin", budget=6))
    assert _plan(prep)["swarm"] == first_plan["swarm"]  # the same seed draws the same swarm
    first.store.create_search("first", {"name": "first"}, first_plan)
    done = first_plan["swarm"][0]
    first.store.add([RunRecord(run_id="first-s0", search_id="first", role="swarm",
                               weights=dict(zip(DOMAINS, done, strict=True)), fidelity={},
                               fidelity_key=prep.fidelity_key, status="ok", seed=0,
                               metrics={f"loss/{d}": 2.0 for d in DOMAINS})])
    first.search_dir.mkdir(parents=True, exist_ok=True)
    with driver_lock(first.search_dir, "first"):  # its driver runs
        plan = _plan(prep)
    assert plan["in_flight_elsewhere"] == 5 and len(plan["reused"]) == 1 and len(plan["swarm"]) == 5
    assert not any(np.allclose(w, v) for w in first_plan["swarm"] for v in plan["swarm"])
    assert _plan_line(prep, plan).endswith("; 5 mixtures that searches running now have yet to finish are "
                                           "left to them (a search started later reuses their runs)")
    assert _plan(prep)["in_flight_elsewhere"] == 0  # its driver gone: nothing is left to it


def test_random_is_not_warned_of_a_fit_it_does_not_make(workspace, tmp_path) -> None:
    import warnings

    from mixopt.search.driver import _plan
    from mixopt.search.prepare import prepare

    with warnings.catch_warnings():
        warnings.simplefilter("error", MixoptWarning)
        assert len(_plan(prepare(config(tmp_path, method="random", budget=2)))["swarm"]) == 2
    with pytest.warns(MixoptWarning, match="a fit on so few runs is unreliable"):
        _plan(prepare(config(tmp_path, method="gp", budget=3)))


def test_a_resume_from_another_folder_says_where_the_search_started(workspace, tmp_path, monkeypatch) -> None:
    """The evaluator module lived next to where the search started; resumed elsewhere it cannot be
    imported, and the error says where to resume from."""
    from mixopt.search.driver import resume_search

    began = tmp_path / "project"
    began.mkdir()
    (tmp_path / "elsewhere").mkdir()
    cfg = config(tmp_path, name="far", evaluator="evfar_module:evaluate")
    RunStore().create_search("far", {**cfg.as_dict(), "name": "far", "started_in": str(began)}, {})
    monkeypatch.chdir(tmp_path / "elsewhere")
    with pytest.raises(MixoptError, match=r"cannot import evaluator module 'evfar_module'.*search 'far' was "
                                          rf"started in {began}: resume it from there"):
        resume_search("far")


def test_a_python_function_as_evaluator(workspace, tmp_path, ray_session, monkeypatch):  # noqa: ANN001
    """Library use, from a QA pass: a function of a module the driver found through a folder it put on
    sys.path (a notebook's) runs in the workers; no module:function string is needed beside it; the
    JSON names the function; a resume without it says how; and two scripts' same-named functions do
    not share runs."""
    import sys

    from mixopt.search.driver import resume_search, run_search
    from mixopt.search.prepare import callable_name

    folder = tmp_path / "nbmods"
    folder.mkdir()
    (folder / "nbmod_qa.py").write_text("from mixopt.testing import loglinear\n\n"
                                        "def evaluate(request):\n    return loglinear(request)\n")
    monkeypatch.syspath_prepend(str(folder))  # the driver's sys.path only: not PYTHONPATH
    import nbmod_qa

    cfg = config(tmp_path, name="fn", evaluator=None, budget=4, retries=0)
    res = run_search(cfg, evaluator=nbmod_qa.evaluate)
    runs = RunStore().runs(search_id="fn")
    assert [r.status for r in runs] == ["ok"] * 4, [r.error for r in runs]
    meta = Mixture.load(res.mixture_path).meta
    assert meta["provenance"]["evaluator"] == "nbmod_qa:evaluate"
    assert meta["params"]["prior"] == "token shares"  # what the KL term pulls towards (a QA pass)
    assert resume_search("fn").mixture_path == res.mixture_path  # finished: no function needed
    os.remove(res.out)  # the mixture it wrote is gone: a resume that says it wrote it does write it
    assert resume_search("fn").out == res.out and Mixture.load(res.out).weights == res.weights
    os.remove(res.out)  # and where it cannot be written again, that is said, not an error
    os.rmdir(os.path.dirname(res.out))
    with open(os.path.dirname(res.out), "w") as f:  # a file where its folder was
        f.write("")
    with pytest.warns(MixoptWarning, match="is gone and cannot be written again"):
        assert resume_search("fn").out is None
    os.remove(os.path.dirname(res.out))
    RunStore().update_search("fn", state="interrupted")  # as if stopped
    with pytest.raises(MixoptError, match=r"ran with the Python function nbmod_qa:evaluate as its evaluator "
                                          r"\(library use\): resume it from Python, resume_search\('fn'"):
        resume_search("fn")
    # given again, the function goes on under the name it began with, wherever it is defined now (a
    # notebook's cell file changes with its kernel)
    def evaluate(request):  # noqa: ANN001, ANN202
        return nbmod_qa.evaluate(request)

    assert resume_search("fn", evaluator=evaluate).search_id == "fn"
    # a function that cannot be pickled for the workers: one line, before anything is made
    import threading

    lock = threading.Lock()
    with pytest.raises(MixoptError, match=r"cannot be pickled for the Ray workers \(.*\); define it at"):
        run_search(config(tmp_path, name="unpicklable", evaluator=None, budget=4),
                   evaluator=lambda request, lock=lock: nbmod_qa.evaluate(request))
    assert not (workspace / "searches" / "unpicklable").exists()
    # two scripts' `evaluate` (module __main__): named by their files, not by the function alone
    names = []
    for sub in ("a", "b"):
        ns = {"__name__": "__main__"}
        exec(compile("def evaluate(request):\n    return {}\n", str(tmp_path / sub / "nb.py"), "exec"), ns)
        names.append(callable_name(ns["evaluate"]))
    assert names == [f"{tmp_path / 'a' / 'nb.py'}:evaluate", f"{tmp_path / 'b' / 'nb.py'}:evaluate"]
    # a notebook by its own path (Jupyter's JPY_SESSION_NAME), not the kernel's cell file
    monkeypatch.setattr(sys, "argv", ["/venv/lib/python3.11/site-packages/ipykernel_launcher.py"])
    monkeypatch.setenv("JPY_SESSION_NAME", "/home/me/mix.ipynb")
    assert callable_name(ns["evaluate"]) == "/home/me/mix.ipynb:evaluate"
    # partials by their function and arguments (every partial had been functools:partial)
    import functools

    one, two = (functools.partial(nbmod_qa.evaluate, scale=s) for s in (1, 2))
    assert callable_name(one).startswith("nbmod_qa:evaluate#partial-")
    assert callable_name(one) != callable_name(two)
    del sys.modules["nbmod_qa"]


def _factory(offset: float):  # noqa: ANN202
    def evaluate(request):  # noqa: ANN001, ANN202
        return {"loss/a": offset}

    return evaluate


def _decorated(fn):  # noqa: ANN001, ANN202 - a decorator whose wrapper is a closure
    import functools

    @functools.wraps(fn)
    def wrapper(request):  # noqa: ANN001, ANN202
        return fn(request)

    return wrapper


@_decorated
def _wrapped_evaluate(request):  # noqa: ANN001, ANN202
    return {"loss/a": 1.0}


class _Evaluator:
    def __init__(self, offset: float) -> None:
        self.offset, self.helper = offset, _factory
        self.table = np.arange(5000.0)  # printed cut short by numpy
        self.tags = {"x", "y", "z"}  # printed in a per-process order

    def __call__(self, request):  # noqa: ANN001, ANN204
        return {"loss/a": self.offset}

    def run(self, request):  # noqa: ANN001, ANN201
        return self(request)


def test_evaluators_made_alike_but_holding_other_values_keep_their_runs_apart():
    """From a library user's QA pass: two closures of one factory, or two instances of one class,
    had one name, so the second search reused the first's runs and never called its own evaluator.
    They are named with a digest of what they hold, the same in every process (no memory address)."""
    import subprocess
    import sys

    from mixopt.search.prepare import callable_name

    mod = _factory.__module__  # test_search or tests.test_search, as pytest imported it
    base = f"{mod}:_factory.<locals>.evaluate#closure-"
    zero, hundred = callable_name(_factory(0.0)), callable_name(_factory(100.0))
    assert zero.startswith(base) and hundred.startswith(base) and zero != hundred
    assert callable_name(_factory(0.0)) == zero  # the same values: the same runs
    one, two = callable_name(_Evaluator(1.0)), callable_name(_Evaluator(2.0))
    assert one.startswith(f"{mod}:_Evaluator#state-") and one != two
    assert callable_name(_Evaluator(1.0).run).split("#")[1] == one.split("#")[1]  # a bound method
    tests = os.path.dirname(os.path.abspath(__file__))
    code = (f"import sys, importlib; sys.path[:0] = [{os.path.dirname(tests)!r}, {tests!r}];"
            f"m = importlib.import_module({mod!r});"
            "from mixopt.search.prepare import callable_name;"
            "print(callable_name(m._factory(0.0)), callable_name(m._Evaluator(1.0)))")
    for _ in range(2):  # string hashing differs per process: a set's order must not reach the name
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True).stdout.split()
        assert out == [zero, one]  # another process names them alike
    # from a review: what repr cuts short or prints in another order still tells them apart
    other = _Evaluator(1.0)
    other.table[2500] = 1.0
    assert callable_name(other) != one
    big = np.zeros(5000)
    assert callable_name(_factory(big)) != callable_name(_factory(np.where(np.arange(5000) == 7, 1.0, big)))
    # a decorated module function is what --evaluator mod:name loads: the plain name, shared with the CLI
    assert callable_name(_wrapped_evaluate) == f"{mod}:_wrapped_evaluate"
    # a value known only by its address: a name of this process alone (runs kept, not reused), said
    import threading

    with pytest.warns(MixoptWarning, match="cannot tell apart from another's"):
        once = callable_name(_factory(threading.Lock()))
    assert "#closure-once-" in once


def test_a_string_of_domains_is_refused_before_any_run():
    """SearchConfig(domains="web") had become domains w, e and b, and eight runs failed on Ray."""
    with pytest.raises(MixoptError, match=r"^domains is the string 'web'; give a sequence of names"):
        SearchConfig(domains="web", method="linear", budget=4)


def test_a_resume_that_cannot_go_on_says_what_changed():
    """It had said "ran on corpus hash None at <key>; rebuild the same corpus" when the evaluator's name
    had changed (a review)."""
    from types import SimpleNamespace

    from mixopt.search.driver import _what_changed
    from mixopt.store import fidelity_key

    plan = {"corpus_hash": None, "fidelity_key": fidelity_key({"rung": "xs"}, "nb:evaluate")}
    now = SimpleNamespace(corpus_hash=None, fidelity_key=fidelity_key({"rung": "xs"}, "/a/nb.py:evaluate"))
    assert _what_changed(plan, now) == ("it ran with evaluator nb:evaluate, and now it is /a/nb.py:evaluate; "
                                        "resume it with that evaluator, or start a new search")
    now = SimpleNamespace(corpus_hash=None, fidelity_key=fidelity_key({"rung": "s"}, "nb:evaluate"))
    assert _what_changed(plan, now).startswith("its runs' fidelity differs in rung (it ran at")
    now = SimpleNamespace(corpus_hash="h2", fidelity_key=plan["fidelity_key"])
    assert _what_changed(plan, now).startswith("it ran on corpus hash None, and the corpus now has h2")


def test_a_host_that_ignores_sigterm_still_does_after_a_search_set_its_handler(monkeypatch):
    import signal

    import mixopt.search.driver as driver

    before, hup = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGHUP)
    monkeypatch.setattr(driver, "_HOST_IGNORES_SIGTERM", None)  # as in a fresh process
    try:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        driver._stop_on_sigterm()  # a search in a library user's process
        assert getattr(signal.getsignal(signal.SIGTERM), "_mixopt", False)
        os.kill(os.getpid(), signal.SIGTERM)  # had been sys.exit(143)
        # ray.init then puts its own handler in (it would exit), which the search wraps again:
        # the host's choice still holds, while a search drives and after
        signal.signal(signal.SIGTERM, lambda *a: pytest.fail("Ray's handler ran"))
        driver._stop_on_sigterm()
        monkeypatch.setattr(driver, "DRIVING", ["a search"])
        os.kill(os.getpid(), signal.SIGTERM)
    finally:
        signal.signal(signal.SIGTERM, before)
        signal.signal(signal.SIGHUP, hup)


def test_sigterm_stops_a_driver_whose_sigint_is_ignored(monkeypatch):
    """A QA pass: a search started by `cmd &` from a script (SIGINT ignored, as shells set it) went on
    fitting for minutes after SIGTERM, which the driver turned into a SIGINT that nothing heard."""
    import signal
    import time

    import mixopt.search.driver as driver

    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    monkeypatch.setattr(driver, "_HOST_IGNORES_SIGTERM", None)
    monkeypatch.setattr(driver, "DRIVING", ["a search"])
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        driver._stop_on_sigterm()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)  # the handler runs at the next bytecode; a second is plenty
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a SIGINT that is heard: as before
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)
        # an ssh session dropped (SIGHUP) stops it the same way (a QA pass: exit 129, runs left running)
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGHUP)
            time.sleep(1)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # nohup: left ignored
        driver._stop_on_sigterm()
        assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
    finally:
        for sig, h in before.items():
            signal.signal(sig, h)


def test_a_sigterm_whose_exception_was_dropped_is_still_seen_while_ray_starts(monkeypatch):
    """A QA pass: Ray's SIGTERM handler during ray.init raises SystemExit, which Python drops when the
    signal lands in a fork handler; the search went on. The signal is seen all the same, and the
    search stops as for any other SIGTERM."""
    import signal

    import mixopt.search.driver as driver

    before = signal.getsignal(signal.SIGTERM)
    try:
        signal.signal(signal.SIGTERM, lambda *a: None)  # a handler whose exception went nowhere
        with driver._stop_seen() as seen:
            os.kill(os.getpid(), signal.SIGTERM)
        assert seen() == signal.SIGTERM and signal.set_wakeup_fd(-1) == -1  # the wakeup fd is given back
        with driver._stop_seen() as quiet:
            pass
        assert quiet() == 0

        def ray_init(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            os.kill(os.getpid(), signal.SIGTERM)
            return None

        monkeypatch.setattr(driver, "ensure_ray", ray_init)
        monkeypatch.setattr(driver, "_HOST_IGNORES_SIGTERM", False)
        with pytest.raises(KeyboardInterrupt):  # the driver's stop: interrupted, with the resume hint
            driver._ray(SearchConfig(evaluator="mixopt.testing:loglinear", domains=("a", "b")), None, "x",
                        "mixopt.testing:loglinear")
    finally:
        signal.signal(signal.SIGTERM, before)


def test_a_resume_that_ray_refuses_keeps_the_state_the_search_had(workspace, tmp_path, ray_session,
                                                                  monkeypatch):
    import mixopt.search.driver as driver

    driver.run_search(config(tmp_path, name="rz", budget=6, validate=1))
    store = RunStore()
    one = store.runs(search_id="rz", role="validate")[0].run_id
    store.finish(one, status="failed", error="the node went away")  # a slot to run again
    store.update_search("rz", state="interrupted")

    def refused(*args):  # noqa: ANN002, ANN202
        raise MixoptError("cannot reach the Ray cluster at 10.0.0.1:6379")

    monkeypatch.setattr(driver, "_ray", refused)
    with pytest.raises(MixoptError, match="cannot reach"):
        driver.resume_search("rz")
    # not "failed": a failed search's resume would also rerun its diverged runs
    assert store.require_search("rz").state == "interrupted"


def test_a_search_folder_is_one_stores(workspace, tmp_path, ray_session) -> None:
    """Search folders are keyed by name alone: a search `dup` in a second store had taken over the
    folder of `dup` in the first (its result, its runs' kept outcomes, which a resume of the first
    then read as its own)."""
    from mixopt.search.driver import run_search
    from mixopt.search.prepare import STORE_MARK, search_dir

    first, second = tmp_path / "a.sqlite", tmp_path / "b.sqlite"
    run_search(config(tmp_path, name="dup", budget=3, method="random", store=str(first)))
    kept = (search_dir("dup") / "result.json").read_text()
    with pytest.raises(MixoptError, match=r"folder of search 'dup' of store .*a\.sqlite; .* another --name"):
        run_search(config(tmp_path, name="dup", budget=3, method="random", store=str(second),
                          out=str(tmp_path / "second.json")))
    assert (search_dir("dup") / "result.json").read_text() == kept and not second.exists()
    assert not (tmp_path / "second.json").exists()
    # the first store moved away: its folder's files are set aside (not deleted), then the folder is
    # the new search's
    first.rename(tmp_path / "moved.sqlite")
    with pytest.warns(MixoptWarning, match=r"held the files of an earlier search 'dup' that no store at hand "
                                           r"holds .*; moved them to .*\.orphaned-dup-"):
        run_search(config(tmp_path, name="dup", budget=3, method="random", store=str(second)))
    assert (search_dir("dup") / STORE_MARK).read_text().strip() == str(second.resolve())
    aside = [p for p in (workspace / "searches").iterdir() if p.name.startswith(".orphaned-dup-")]
    assert len(aside) == 1 and (aside[0] / "result.json").read_text() == kept


def test_a_leftover_search_folder_is_set_aside_and_a_held_one_refused(workspace, tmp_path) -> None:
    """A kept outcome in a folder no store's search owns would be read as the new search's run of
    the same id (the settle after a stop reads it); a folder another driver holds is refused."""
    from mixopt.search.lock import driver_lock
    from mixopt.search.prepare import STORE_MARK, own_search_dir, search_dir

    store = RunStore(tmp_path / "s.sqlite")
    folder = search_dir("old")
    (folder / "runs" / "old-s0000-a1").mkdir(parents=True)
    (folder / "runs" / "old-s0000-a1" / "outcome.json").write_text("{}")  # no mark: an older version's
    # whose store no store at hand names (a --store search's?): refused, not set aside, since its
    # resume would then read the new search's files (an upgrade QA pass)
    with pytest.raises(MixoptError, match=r"holds the files of a search 'old' made by an earlier mixopt, "
                                          r"which did not mark .* if it was a --store search, resume it "
                                          r"with that --store; pick another --name, or move that folder"):
        own_search_dir(folder, store, "old")
    (folder / STORE_MARK).write_text(str(tmp_path / "gone.sqlite"))  # marked, its store gone: set aside
    with pytest.warns(MixoptWarning, match="moved them to"):
        own_search_dir(folder, store, "old")
    assert [p.name for p in folder.iterdir()] == [STORE_MARK]
    assert len(list((workspace / "searches").glob(".orphaned-old-*/runs/old-s0000-a1/outcome.json"))) == 1
    # an unmarked folder (made before the mark) whose search the workspace's store holds is refused
    RunStore().create_search("kept", {"method": "random"}, {})
    (search_dir("kept") / "runs").mkdir(parents=True)
    with pytest.raises(MixoptError, match="folder of search 'kept' of store .*runs.sqlite"):
        own_search_dir(search_dir("kept"), store, "kept")
    # a mark naming a file that is no store: it holds no search, and nothing is written to it
    junk = tmp_path / "junk.sqlite"
    junk.write_text("not a database")
    (search_dir("odd") / "runs").mkdir(parents=True)
    (search_dir("odd") / STORE_MARK).write_text(str(junk))
    with pytest.warns(MixoptWarning, match="moved them to"):
        own_search_dir(search_dir("odd"), store, "odd")
    assert junk.read_text() == "not a database"
    # a new search finds the folder locked by another driver: said as such, with the option to change
    said = (r"is in use by another driver \(pid \d+\), of a search named 'live' in another store or one "
            r"starting now: pick another --name")
    with (driver_lock(search_dir("live"), "live"), pytest.raises(MixoptError, match=said),
          driver_lock(search_dir("live"), "live", new_option="--name")):
        pass


def test_a_resume_in_a_folder_another_stores_search_took_is_refused(workspace, tmp_path) -> None:
    """An upgrade QA pass: a --store search's unmarked folder (an older mixopt's) was set aside for a
    workspace search of its name; the --store search's resume then read that search's kept outcomes
    as its own runs."""
    from mixopt.search.prepare import STORE_MARK, mark_search_dir, search_dir

    team, ws = RunStore(tmp_path / "team.sqlite"), RunStore()
    team.create_search("t1", {"name": "t1"}, {})
    ws.create_search("t1", {"name": "t1"}, {})
    folder = search_dir("t1")
    mark_search_dir(folder, ws)  # the workspace's t1 took the folder
    with pytest.raises(MixoptError, match=r"is the folder of search 't1' of store .*runs\.sqlite, not of "
                                          r"this store's search 't1' .* search again under a new --name"):
        mark_search_dir(folder, team, name="t1")
    # and a new search of that name in a third store is refused even before the folder holds a run
    from mixopt.search.prepare import own_search_dir

    with pytest.raises(MixoptError, match=r"is the folder of search 't1' of store .*runs\.sqlite; search "
                                          r"names are shared"):
        own_search_dir(folder, RunStore(tmp_path / "third.sqlite"), "t1")
    # the marked store moved (it holds no such search now): the resume's store is the folder's
    ws_gone = tmp_path / "elsewhere.sqlite"
    (folder / STORE_MARK).write_text(str(ws_gone))
    mark_search_dir(folder, team, name="t1")
    assert (folder / STORE_MARK).read_text().strip() == str(team.path.resolve())


def test_a_resume_reuses_what_another_search_measured_while_its_driver_was_dead(workspace, tmp_path,
                                                                                  ray_session) -> None:
    """A QA pass: kill -9 a search, start a second like it (the same seeded swarm, its mixtures no
    longer left to a dead driver), resume the first: it had run those mixtures again."""
    from pathlib import Path

    from mixopt.search.driver import _borrow_swarm, _plan, resume_search, run_search
    from mixopt.search.prepare import prepare

    dead = prepare(config(tmp_path, name="k1", budget=6))
    plan = _plan(dead)
    dead.store.create_search("k1", {**dead.config.as_dict(), "name": "k1", "started_in": str(Path.cwd())},
                             plan)  # recorded and never driven: as after a kill -9 before any run
    other = run_search(config(tmp_path, name="k2", budget=6, out=str(tmp_path / "k2.json")))
    assert other.runs["ok"] == 6  # nothing was left to k1, whose driver is gone
    res = resume_search("k1")
    store = RunStore()
    assert store.runs(search_id="k1") == []  # every slot reused, none run again
    assert res.runs["reused"] == 6 and res.runs["fitted"] == 6
    assert _borrow_swarm(dead, store.get_search("k1").plan) == 0  # a reused run counts once


def test_a_store_locked_past_every_wait_ends_the_search_resumable(workspace, tmp_path, ray_session,
                                                                   monkeypatch) -> None:
    """The end-of-search write under another program's lock had been a traceback (a QA pass)."""
    from mixopt.errors import StoreLockedError
    from mixopt.search import driver

    def locked(*args, **kw):
        raise StoreLockedError("the run store x stayed locked by another program for 600 s; close it")

    monkeypatch.setattr(driver, "_stages", locked)
    with pytest.raises(StoreLockedError, match=r"close it: for this search, .*--resume lk.* \(its finished "
                                               r"runs are kept\)"):
        driver.run_search(config(tmp_path, name="lk", budget=6))
    assert RunStore().get_search("lk").state == "running"  # untouched: `runs searches` shows it stopped

    # an error whose bookkeeping meets the lock is still the error the user sees (the review: the
    # lock's own error had replaced it, after ten more minutes)
    def boom(*args, **kw):
        raise MixoptError("the evaluator broke its contract")

    def locked_write(self, *args, **kw):
        assert self._lock_wait is not None  # an error path's writes give up soon
        raise StoreLockedError("locked")

    monkeypatch.setattr(driver, "_stages", boom)
    monkeypatch.setattr(RunStore, "update_search", locked_write)
    with pytest.raises(MixoptError, match="the evaluator broke its contract"):
        driver.run_search(config(tmp_path, name="lk2", budget=6))


def test_a_new_search_named_as_one_running_now_is_told_so(workspace, tmp_path) -> None:
    """Its advice had been --resume, which is refused while the other driver lives (a QA pass)."""
    from mixopt.search.driver import _plan, run_search
    from mixopt.search.lock import driver_lock
    from mixopt.search.prepare import prepare

    first = prepare(config(tmp_path, name="same"))
    first.store.create_search("same", {"name": "same"}, _plan(first))
    with driver_lock(first.search_dir, "same"), pytest.raises(
            MixoptError, match="a search named 'same' is running now; pick another --name, or wait for it"):
        run_search(config(tmp_path, name="same"))
    with pytest.raises(MixoptError, match="exists; continue it with .*--resume same"):  # its driver gone
        run_search(config(tmp_path, name="same"))


def test_runs_of_a_rung_whose_recipe_changed_are_said_not_reused(tiny_workspace, tmp_path) -> None:
    """An upgrade QA pass: proxies/xs.toml changed (its learning rate), and a new search said
    "0 reused" beside runs of that corpus and rung without a word on why."""
    import json

    from mixopt.search.driver import _plan
    from mixopt.search.prepare import prepare
    from mixopt.store import RunRecord

    prep = prepare(SearchConfig(corpus="tiny", rung="xs", budget=4, validate=0, name="px"))
    key = json.loads(prep.fidelity_key)
    older = json.dumps({**key, "rung_hash": "0" * len(key["rung_hash"])}, sort_keys=True)
    # recorded before keys held the hash: whether its recipe changed is unknown, so not counted
    unhashed = json.dumps({k: v for k, v in key.items() if k != "rung_hash"}, sort_keys=True)
    w = dict(zip(prep.domains, [1 / len(prep.domains)] * len(prep.domains), strict=True))
    prep.store.add([RunRecord(run_id=f"old-{i}", search_id="old", role="swarm", weights=w,
                              fidelity=dict(prep.fidelity), fidelity_key=k, corpus_hash=prep.corpus_hash,
                              status="ok", seed=0, metrics={f"loss/{d}": 3.0 for d in prep.domains})
                    for i, k in enumerate([older, older, prep.fidelity_key, unhashed])])
    with pytest.warns(MixoptWarning, match=r"2 earlier run\(s\) of this corpus at rung xs trained under "
                                           r"another recipe of it \(the rung's file changed since"):
        plan = _plan(prep)
    assert plan["reused"] == ["old-2"]


def test_a_gp_proposals_interval_takes_the_seed_noise_validation_measured(workspace, tmp_path, ray_session):
    """A QA pass: the swarm trains every mixture at one seed, so a GP's ± sd had no seed noise in it,
    and the JSON's "95%" interval covered 15–18% of runs at other seeds within ±1 sd."""
    from mixopt.search.driver import run_search
    from mixopt.search.validate import Measured, seed_spread

    res = run_search(config(tmp_path, name="gpseeds", method="gp", validate=2, budget=8,
                            fidelity={"noise": 0.05}))
    mix = Mixture.load(tmp_path / "out" / "mixture.json")
    rows = {r.name: r for r in res.candidates}
    measured = {n: Measured(**{k: v for k, v in r.measured.items()}) for n, r in rows.items() if r.measured}
    sd, mixtures = seed_spread(measured)
    assert mixtures == len({tuple(m.run_ids) for m in measured.values()}) and sd > 0.01
    note = next(n for n in res.notes if "from seed to seed" in n)
    assert f"spread by {sd:.4f}" in note
    assert res.exported == "proposal", res.notes  # this seed's proposal validates best: its JSON has them
    pred = mix.meta["predicted"]
    total = math.sqrt(pred["std"] ** 2 + sd**2)
    assert pred["seed_std"] == pytest.approx(sd)
    assert pred["interval"] == pytest.approx([pred["mean"] - 1.96 * total, pred["mean"] + 1.96 * total])


def test_seed_spread_pools_each_mixture_once() -> None:
    from mixopt.search.validate import Candidate, Measured, seed_spread, with_seed_noise

    def m(values: list[float], ids: list[str]) -> Measured:
        sd = float(np.std(values, ddof=1)) if len(values) > 1 else None
        return Measured(mean=float(np.mean(values)), std=sd, sem=None, n=len(values), planned=2,
                        values=values, run_ids=ids)

    a, b = m([1.0, 1.2], ["a1", "a2"]), m([2.0, 2.4, 2.2], ["b1", "b2", "b3"])
    pooled = math.sqrt((1 * 0.02 + 2 * 0.04) / 3)  # (n−1)·s² summed over (n−1) summed
    assert seed_spread({"p": a, "uniform": a, "b": b, "one": m([3.0], ["c1"])}) == (pytest.approx(pooled), 2)
    assert seed_spread({"one": m([3.0], ["c1"])}) is None
    prop = Candidate(name="proposal", weights=[0.5, 0.5], predicted=2.0, predicted_std=0.01,
                     interval=(1.98, 2.02))
    assert with_seed_noise(prop, None)[:2] == ((1.98, 2.02), None)  # unvalidated: the model's, said so
    interval, sd, note = with_seed_noise(prop, {"p": a, "b": b})
    assert sd == pytest.approx(pooled) and interval[1] - 2.0 == pytest.approx(1.96 * math.hypot(0.01, pooled))
    assert "from seed to seed" in note and "seed_std in the mixture JSON" in note
    assert "in the mixture JSON" not in with_seed_noise(prop, {"p": a, "b": b}, exported=False)[2]
    # validated at another rung: that rung's spread is not the prediction's (the review)
    same, none, said = with_seed_noise(prop, {"p": a, "b": b}, other_rung="s")
    assert (same, none) == ((1.98, 2.02), None) and "validation ran at rung s" in said
    # widened by auto's cross-validation: the note's sd is the widened one, and says so
    wide = Candidate(name="proposal", weights=[0.5, 0.5], predicted=2.0, predicted_std=0.01,
                     interval=(1.96, 2.04), info={"sd_scale": 2.0})
    interval, _, note = with_seed_noise(wide, {"p": a, "b": b})
    assert interval[1] - 2.0 == pytest.approx(1.96 * math.hypot(0.02, pooled))
    assert "model's sd (0.0200, 0.0100 widened ×2.00 by auto's cross-validation)" in note
    no_sd = Candidate(name="proposal", weights=[0.5, 0.5], predicted=2.0)
    assert with_seed_noise(no_sd, {"p": a}) == (None, None, None)  # no sd of the model's: nothing to widen


def test_a_stop_just_before_the_drive_leaves_the_search_interrupted(workspace, tmp_path, monkeypatch) -> None:
    """A stop in the bytecodes between the plan and the drive's own handler had left the search
    `running` after its exit 130 (test_sigterm_stops_a_search_that_never_starts_ray failed so about
    once in seven suites); it is interrupted, and resumable, as anywhere else."""
    import mixopt.search.driver as driver

    monkeypatch.setattr(driver._LazyRay, "__call__", lambda self: None)  # no Ray: the stop comes first

    def stopped(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise KeyboardInterrupt

    monkeypatch.setattr(driver, "_drive", stopped)
    with pytest.raises(KeyboardInterrupt):
        driver.run_search(config(tmp_path, name="edge"))
    assert RunStore(default_path()).require_search("edge").state == "interrupted"


def test_the_table_gives_the_sd_that_autos_cross_validation_widened(capsys) -> None:
    """stop 35's QA pass: the table's "± sd" was the model's own where the note and the JSON gave the
    interval widened by auto's cross-validation."""
    from mixopt.cli.search import render_result
    from mixopt.search.result import SearchResult, candidate_rows
    from mixopt.search.validate import Candidate

    cands = [Candidate(name="proposal", weights=[0.5, 0.5], predicted=2.0, predicted_std=0.01,
                       interval=(1.96, 2.04), info={"sd_scale": 2.5}),
             Candidate(name="uniform", weights=[0.5, 0.5], predicted=2.1, predicted_std=0.02)]
    rows = candidate_rows(cands, ["a", "b"], None, None, "proposal")
    assert [r.sd_scale for r in rows] == [2.5, 2.5]  # the baselines' sds are the same model's
    res = SearchResult(search_id="s", method="auto", objective={"kind": "mean_loss"}, exported="proposal",
                       weights={"a": 0.5, "b": 0.5}, candidates=rows, runs={}, notes=[], out=None,
                       mixture_path="m.json", rung="xs", validate_rung=None, validate=0, wall_s=1.0)
    assert SearchResult.from_dict(res.as_dict()).candidates[0].sd_scale == 2.5  # kept in result.json
    render_result(res)
    out = capsys.readouterr().out
    assert "2.0000 ± 0.0250 (×2.50)" in out and "2.1000 ± 0.0500 (×2.50)" in out


def test_a_law_fitted_per_metric_says_so_before_a_long_fit(workspace, tmp_path, ray_session, monkeypatch):
    """A QA pass: 300 laws of 300 domains fitted for an hour after "fitting loglinear", unsaid."""
    import mixopt.search.driver as driver

    monkeypatch.setattr(driver, "PER_METRIC_SAY", 2)  # said past 2 metrics here (4 domains' losses)
    events = []
    driver.run_search(config(tmp_path, name="perlaw", method="loglinear", budget=12), progress=events.append)
    said = [e.message for e in events if getattr(e, "stage", None) == "fit"]
    assert any("one law per metric, 4 laws of about 5 parameters each" in m for m in said), said


def _previous(tmp_path, shares=None):
    """A previous search's mixture over web, code and books (math is the new domain)."""
    path = tmp_path / "prev.json"
    Mixture(dict(shares or {"web": 0.5, "code": 0.3, "books": 0.2})).save(path)
    return path


@pytest.mark.slow  # ~23 s: in CI with the other slow tests, out of the default suite (its ~10-minute budget)
def test_a_search_reuses_a_mixture_as_one_group_and_trains_every_domain(workspace, tmp_path, ray_session):
    """--reuse-mixture: the swarm varies the group and the new domain; every run trains (and measures)
    every domain at the group's shares, and the mixture is written over every domain."""
    from mixopt.report import make_report
    from mixopt.search.driver import run_search

    prev = _previous(tmp_path)
    shares = {"web": 0.5, "code": 0.3, "books": 0.2}
    res = run_search(config(tmp_path, name="kept", budget=8, validate=1, method="mixing-law",
                            reuse_mixture=str(prev)))
    runs = RunStore().runs(search_id="kept")
    assert runs and all(set(r.weights) == {"reused", "math"} for r in runs)
    for r in runs:  # the evaluator got every domain (it measures what it trains); the objective reads all
        assert set(r.metrics) >= {f"loss/{d}" for d in DOMAINS} and "loss/reused" not in r.metrics
        assert r.objective == pytest.approx(np.mean([r.metrics[f"loss/{d}"] for d in DOMAINS]))
    # the law's per-domain truth at the members' shares: the runs trained the expanded mixture
    r = runs[0]
    trained = {**{m: r.weights["reused"] * s for m, s in shares.items()}, "math": r.weights["math"]}
    truth = testing.true_losses(trained, rung="xs")
    assert r.metrics["loss/code"] == pytest.approx(truth["loss/code"], rel=0.05)
    mix = Mixture.load(tmp_path / "out" / "mixture.json")
    assert list(mix.weights) == list(DOMAINS) and mix.weights == pytest.approx(res.weights)
    group = sum(mix.weights[m] for m in shares)
    assert {m: mix.weights[m] / group for m in shares} == pytest.approx(shares)
    assert mix.meta["params"]["reuse"]["ratios"] == pytest.approx(shares)
    assert mix.meta["params"]["reuse_runs"] is True
    assert set(mix.meta["tokens"]["per_domain"]) == set(DOMAINS)
    assert set(mix.meta["predicted"]["per_domain"]) == set(DOMAINS)  # train's report reads them per domain
    for name, b in mix.meta["baselines"].items():
        assert set(b["weights"]) == set(DOMAINS), name
    assert all(set(c.weights) == set(DOMAINS) for c in res.candidates)
    assert any("kept at the shares" in n for n in res.notes)
    assert any("uniform over the 2 units" in n and "the natural and temperature baselines weigh reused by "
               "the tokens it can use" in n for n in res.notes)
    # its report reads the runs as the search did
    report = make_report("kept")
    assert report.cv is not None and "- objective: **mean loss**" in report.markdown
    # a search with the same group reuses the runs; one over every domain cannot (its units differ)
    again = run_search(config(tmp_path, name="again", budget=8, reuse_mixture=str(prev)))
    assert again.runs["reused"] == 8 + 5 and again.runs["planned"] == 0
    # nor one whose group has other shares (the runs' weights meant another mixture)
    other = _previous(tmp_path / "o", {"web": 0.2, "code": 0.3, "books": 0.5})
    other_run = run_search(config(tmp_path, name="other", budget=6, method="random",
                                  reuse_mixture=str(other)))
    assert other_run.runs["reused"] == 0


def test_a_reuse_search_resumes_with_the_shares_it_began_with(workspace, tmp_path, ray_session):
    """The reused file may be edited or gone by the resume: the search goes on with its recorded
    shares. --target may name a member of the group: the runs measure it. A --recompute-d domain
    is a unit before the group: the mixture is still written in the domains' order."""
    from mixopt.search.driver import resume_search, run_search

    prev = _previous(tmp_path)
    flag = tmp_path / "fixed"
    cfg = config(tmp_path, name="gone", evaluator="mixopt.testing:raises_until_fixed", budget=4, retries=0,
                 fidelity={"fixed": str(flag)}, reuse_mixture=str(prev), target="code,math",
                 recompute=("web",))
    with pytest.raises(MixoptError, match="too few to fit"):
        run_search(cfg)
    prev.unlink()
    flag.write_text("fixed")
    res = resume_search("gone")
    assert res.runs["ok"] == 4
    assert RunStore().require_search("gone").plan["domains"] == ["web", "reused", "math"]
    mix = Mixture.load(tmp_path / "out" / "mixture.json")
    assert list(mix.weights) == list(DOMAINS)
    assert mix.weights["code"] / mix.weights["books"] == pytest.approx(1.5)
    # the notes say whose shares they are: the file's as the search began, by its absolute path
    began = f"kept at the shares {prev.resolve()} gave them when search gone began"
    assert any(began in n for n in res.notes)
    assert mix.meta["params"]["reuse"]["source"] == str(prev.resolve())
    # a resume's --out may not overwrite the reused file either, finished or not (a QA pass)
    Mixture({"web": 0.5, "code": 0.3, "books": 0.2}).save(prev)
    with pytest.raises(MixoptError, match="is the --reuse-mixture file search 'gone' started from; write to"):
        resume_search("gone", out=str(prev))
    assert Mixture.load(prev).weights == {"web": 0.5, "code": 0.3, "books": 0.2}
    assert mix.meta["objective"]["weights"] == {"code": 1.0, "math": 1.0}
    for r in RunStore().runs(search_id="gone", status="ok"):
        assert r.objective == pytest.approx((r.metrics["loss/code"] + r.metrics["loss/math"]) / 2)


def test_a_reuse_search_refuses_what_the_group_cannot_take(workspace, tiny_workspace, tmp_path):
    from mixopt.search.prepare import prepare

    prev = _previous(tmp_path)
    with pytest.raises(MixoptError, match=r"--max-weight web=\.\.\.: web moves with the other domains of "
                                          r"reused .*--recompute web"):
        prepare(config(tmp_path, reuse_mixture=str(prev), max_weight={"web": 0.3}))
    with pytest.raises(MixoptError, match="--out .* is the --reuse-mixture file this command reads"):
        prepare(config(tmp_path, reuse_mixture=str(prev), out=str(prev)))
    with pytest.raises(MixoptError, match="--recompute names domains of a reused mixture.*--reuse-mixture"):
        prepare(config(tmp_path, recompute=("web",)))
    with pytest.raises(MixoptError, match="recompute is the string 'web'"):
        config(tmp_path, reuse_mixture=str(prev), recompute="web")
    tiny = tmp_path / "tiny.json"
    Mixture({"code": 0.6, "docs": 0.4}).save(tiny)
    with pytest.raises(MixoptError, match="--method entropy weighs each domain by its own text and reuses "
                                          "no mixture: drop --reuse-mixture"):
        prepare(SearchConfig(corpus="tiny", method="entropy", budget=0, reuse_mixture=str(tiny)))
    # a group named after a domain the file lacks would have trained the file's domains, not that one
    other = tmp_path / "other.json"
    Mixture({"wiki": 0.6, "arxiv": 0.4}).save(other)
    with pytest.raises(MixoptError, match="'web' is one of the domains; name the group otherwise"):
        prepare(config(tmp_path, reuse_mixture=f"web={other}"))
    with pytest.raises(MixoptError, match=r"none of its domains .* is left to reuse among web, code, math, "
                                          r"books; check the file"):
        prepare(config(tmp_path, reuse_mixture=str(other)))
    with pytest.raises(MixoptError, match=r"--target names reused, the reused group.*: name those "
                                          r"\(web, code, books\) instead"):
        prepare(config(tmp_path, reuse_mixture=str(prev), target="reused,math"))
    with pytest.raises(MixoptError, match="--reuse-mixture is empty"):
        prepare(config(tmp_path, reuse_mixture=""))
    with pytest.warns(MixoptWarning, match="only books of it is left to reuse, so the group reused is books "
                                           "alone"):
        prepare(config(tmp_path, reuse_mixture=str(prev), recompute=("web", "code")))
    with pytest.raises(MixoptError, match="--fidelity reuse_mixture=...: mixopt keeps that name"):
        prepare(config(tmp_path, fidelity={"reuse_mixture": "x"}))
    # a resume whose domains are not those its group was made among (a rebuilt corpus) says so
    from mixopt.reuse import Reuse

    stale = Reuse(name="reused", ratios={"web": 0.5, "wiki": 0.5}, source="/p.json",
                  order=("web", "wiki", "code", "math"))
    with pytest.raises(MixoptError, match=r"search 'old' cannot go on: it reused /p.json among the domains "
                                          r"web, wiki, code, math, and now they are web, code, math, books"):
        prepare(config(tmp_path), search_id="old", group=stale)
    # with --recompute, a member becomes a unit of its own, which a bound may take
    prep = prepare(config(tmp_path, reuse_mixture=str(prev), recompute=("web",), max_weight={"web": 0.3}))
    assert prep.domains == ["web", "reused", "math"] and prep.space.ceilings == {"web": 0.3}


def test_a_proxy_search_reuses_a_mixture_of_a_corpus(tiny_workspace, tiny_corpus, tmp_path, ray_session):
    """The proxy trainer gets the mixture over every domain of the corpus; the plan per domain
    spends the corpus's tokens as a search without reuse does."""
    from mixopt.search.driver import run_search

    prev = tmp_path / "prev.json"
    Mixture({"code": 0.25, "docs": 0.75}).save(prev)
    run_search(SearchConfig(name="tinykept", corpus="tiny", rung="debug", budget=4, validate=0,
                            method="random", concurrency=2, retries=0, out=str(tmp_path / "m.json"),
                            reuse_mixture=str(prev)))
    for r in RunStore().runs(search_id="tinykept"):
        assert r.status == "ok" and set(r.weights) == {"reused", "drama", "legal"}
        assert {f"loss/{d}" for d in tiny_corpus.domains} <= set(r.metrics)
    mix = Mixture.load(tmp_path / "m.json")
    assert set(mix.weights) == set(tiny_corpus.domains)
    assert mix.weights["docs"] == pytest.approx(3 * mix.weights["code"])
    total = sum(tiny_corpus.train_tokens().values())
    assert sum(mix.meta["tokens"]["per_domain"].values()) == pytest.approx(total)


def test_out_may_not_be_the_run_store(workspace, tmp_path, ray_session):
    """A QA pass: `search --out .mixopt/runs.sqlite` (or a resume of a finished search with it) wrote
    the mixture JSON over the store, and every search's runs were gone; its WAL side file too."""
    from mixopt.search.driver import resume_search, run_search

    res = run_search(config(tmp_path, name="kept", budget=5, retries=0))
    store = default_path()
    n_runs = len(RunStore().runs())
    for out in (store, f"{store}-wal"):
        with pytest.raises(MixoptError, match=r"--out .* the run store .*runs\.sqlite, which holds every "
                                              "search's runs; write to another path"):
            run_search(config(tmp_path, name="over", budget=4, out=str(out)))
        with pytest.raises(MixoptError, match="the run store"):
            resume_search("kept", out=str(out))
    other = tmp_path / "other.sqlite"  # a --store of its own
    with pytest.raises(MixoptError, match="is the run store"):
        run_search(config(tmp_path, name="over", budget=4, store=str(other), out=str(other)))
    assert not other.exists()
    assert len(RunStore().runs()) == n_runs and RunStore().get_search("over") is None
    assert resume_search("kept").weights == res.weights
