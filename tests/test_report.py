"""``mixopt report``: plots and summary from the run store, written as one folder (no Ray needed)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from mixopt import testing
from mixopt.cli import main, run_cli
from mixopt.evaluator import EvalRequest
from mixopt.objective import Objective
from mixopt.search.result import CandidateRow, SearchResult
from mixopt.store import RunRecord, RunStore, fidelity_key

DOMAINS = ["web", "code", "math"]
PNG = b"\x89PNG\r\n\x1a\n"


def _record(i: int, w: np.ndarray, workdir, *, role: str = "swarm", label: str | None = None, seed: int = 0,
            fail: bool = False) -> RunRecord:
    req = EvalRequest(mixture=dict(zip(DOMAINS, map(float, w), strict=True)), fidelity={"rung": "xs"},
                      seed=seed, run_id="r", workdir=str(workdir))
    weights = req.mixture
    metrics = {} if fail else testing.loglinear(req).metrics
    return RunRecord(
        run_id=f"rep-{role[0]}{i:04d}-a1", search_id="rep", role=role, label=label or f"s{i:04d}",
        weights=weights,
        fidelity={"rung": "xs"}, fidelity_key=fidelity_key({"rung": "xs"}, "mixopt.testing:loglinear"),
        status="failed" if fail else "ok", metrics=metrics, seed=seed, error="boom" if fail else None,
        objective=None if fail else Objective().value(metrics, DOMAINS),
    )


@pytest.fixture
def search(workspace):
    store = RunStore()
    rng = np.random.default_rng(0)
    W = rng.dirichlet(np.ones(3), 20)
    wd = workspace / "calls"
    recs = [_record(i, w, wd, fail=i in (3, 11)) for i, w in enumerate(W)]
    uniform = np.full(3, 1 / 3)
    recs += [_record(100 + k, uniform, wd, role="validate", label="uniform", seed=1 + k) for k in range(2)]
    recs += [_record(200 + k, W[0], wd, role="validate", label="proposal", seed=1 + k) for k in range(2)]
    store.add(recs)
    rows = [
        CandidateRow(name="proposal", weights=dict(zip(DOMAINS, W[0], strict=True)), predicted=2.4,
                     predicted_std=None, swarm_value=None, measured={"mean": 2.45, "sem": 0.01, "n": 2},
                     comparison=None, exported=True),
        CandidateRow(name="uniform", weights=dict(zip(DOMAINS, uniform, strict=True)), predicted=2.5,
                     predicted_std=None, swarm_value=None, measured={"mean": 2.5, "sem": 0.01, "n": 2},
                     comparison={"diff": 0.05, "se": 0.014, "beats": True}),
        CandidateRow(name="best_run", weights=dict(zip(DOMAINS, uniform, strict=True)), predicted=2.5,
                     predicted_std=None, swarm_value=2.5, measured={"mean": 2.5, "sem": 0.01, "n": 2},
                     comparison={"diff": 0.05, "se": 0.014, "beats": True, "paired": False},
                     same_as="uniform"),
    ]
    runs = {"ok": 18, "failed": 2, "reused": 0, "fitted": 18, "planned": 20, "attempts": 20}
    result = SearchResult(search_id="rep", method="linear", objective=Objective().as_dict(),
                          exported="proposal", weights=rows[0].weights, candidates=rows, runs=runs,
                          notes=["a note"], out=None,
                          mixture_path="m.json", rung="xs", validate_rung="xs", validate=2, wall_s=1.0)
    store.create_search("rep", {"method": "linear", "budget": 20, "rung": "xs", "seed": 0,
                                "evaluator": "mixopt.testing:loglinear"}, {"domains": DOMAINS, "reused": []})
    store.update_search("rep", state="done", result=result.as_dict())
    return workspace


def test_report_writes_plots_and_summary(search):
    from mixopt.report import make_report

    rep = make_report("rep")
    folder = search / "searches" / "rep" / "report"
    assert rep.folder == folder
    for name in ("cv.png", "weights.png", "runs.png"):
        assert (folder / name).read_bytes()[:8] == PNG
    md = (folder / "report.md").read_text()
    assert "22 ok" in md and "2 failed" in md and "18 fitted" in md  # 18 swarm + 4 validation runs
    assert "- swarm: 20 planned, 18 ok, 2 failed\n" in md  # as the search printed it: no retries
    assert "| **proposal** |" in md and re.search(r"\| \+0\.0500 ± 0\.0140 ✓ \|", md)
    assert "| +0.0500 ± 0.0140 (unpaired) ✓ |" in md  # under 2 seeds both measured: the means' se
    assert re.search(r"\|\n\n✓/✗: the proposal beats", md)  # the legend apart: not one more row
    # what the figures measure and what "beats" means (a QA pass: report.md said neither)
    assert "- objective: **mean loss** (nats per token; lower is better)" in md
    assert "paired by seed, passes Student's t at z = 2" in md
    assert "| best_run (= uniform) |" in md  # one mixture under two names is said (a QA pass)
    assert "a note" in md and "![cv](cv.png)" in md
    assert rep.cv is not None and rep.cv["spearman"] > 0.5  # the linear fit ranks this landscape well
    # a second report replaces the folder whole; nothing half-written is left next to it
    make_report("rep", folds=3)
    # and the folder it made is marked with its store (a new search of that name checks that store)
    assert sorted(p.name for p in (search / "searches" / "rep").iterdir()) == [".mixopt-store", "report"]


def test_report_through_the_cli_and_of_a_search_that_stopped_early(search, capsys):
    store = RunStore()
    store.create_search("early", {"method": "regmix"}, {"domains": DOMAINS, "reused": []})
    assert run_cli(["report", "early"]) == 0
    out = capsys.readouterr().out
    assert "runs.png" in out and "weights.png" not in out  # no result yet: no weights to compare


def test_report_names_the_cv_model_and_flags_a_constant_one(search, monkeypatch):
    """Trees with RegMix's 20 runs per leaf cannot split 18 runs: their CV figures are flagged; more
    folds than runs say so."""
    from mixopt.fitters.regmix import RegMixFitter
    from mixopt.report import make_report

    monkeypatch.setitem(RegMixFitter.__init__.__kwdefaults__, "min_child_samples", 20)

    store = RunStore()
    rec = store.get_search("rep")
    store.create_search("rep-regmix", {**rec.config, "method": "regmix"}, rec.plan)
    for r in store.runs(search_id="rep"):
        if r.role == "swarm":
            store.add([RunRecord(**{**r.__dict__, "run_id": r.run_id + "-b", "search_id": "rep-regmix"})])
    rep = make_report("rep-regmix", folds=40)
    assert rep.cv_notes[0] == "model: regmix; 18 folds (leave-one-out: 40 folds asked for, 18 runs)"
    assert "predicts one value for every mixture" in rep.cv_notes[1]
    md = rep.markdown
    assert "- model: regmix; 18 folds" in md and "measure nothing" in md
    monkeypatch.setitem(RegMixFitter.__init__.__kwdefaults__, "min_child_samples", None)
    split = make_report("rep-regmix", folds=5)  # regmix's own floor (n/8 runs per leaf) splits them
    assert not any("predicts one value" in n for n in split.cv_notes)
    lin = make_report("rep")
    assert lin.cv_notes == ["model: linear; 5 folds"] and "- model: linear; 5 folds" in lin.markdown


def test_a_law_too_big_for_the_folds_still_gets_its_report(search):
    """12 runs fit a law of 4 parameters, but not in every 5-fold training split of 3: the report
    is written without the CV plot, and says why."""
    from mixopt.report import make_report

    store = RunStore()
    rec = store.get_search("rep")
    store.create_search("rep-law", {**rec.config, "method": "mixing-law"}, rec.plan)
    for r in store.runs(search_id="rep")[:4]:
        if r.role == "swarm" and r.status == "ok":
            store.add([RunRecord(**{**r.__dict__, "run_id": r.run_id + "-c", "search_id": "rep-law"})])
    rep = make_report("rep-law", folds=3)
    assert rep.cv is None and any(n.startswith("no cross-validation: ") for n in rep.cv_notes)
    assert "no cross-validation: " in rep.markdown
    assert (search / "searches" / "rep-law" / "report" / "runs.png").is_file()


def test_report_names_autos_choice_and_the_candidates_it_could_not_cross_validate(search):
    from mixopt.report import make_report

    store = RunStore()
    rec = store.get_search("rep")
    selection = [
        {"name": "gp", "spearman": 0.91, "pearson": 0.9, "mae": 0.01, "rel_error": 0.004, "seconds": 1.0,
         "error": None, "chosen": True, "folds": 5},
        {"name": "linear", "spearman": 0.7, "pearson": 0.72, "mae": 0.03, "rel_error": 0.011, "seconds": 0.1,
         "error": None, "chosen": False, "folds": 5},
        {"name": "bimix", "seconds": 0.2, "error": "bimix has 6 parameters per target but got only 4 runs",
         "chosen": False, "folds": 5},
    ]
    store.create_search("rep-auto", rec.config, rec.plan)
    store.update_search("rep-auto", state="done", result={**rec.result, "selection": selection})
    md = make_report("rep-auto").markdown
    # auto's headline (nested) and its choice table's figure had differed without a word
    from mixopt.report import cv_headline_notes

    assert "again inside each fold (nested" in cv_headline_notes("auto", "auto", 5, 5, 40)[1]
    assert cv_headline_notes("gp", "gp", 5, 5, 40) == ["model: gp; 5 folds"]
    assert cv_headline_notes("gp", "gp", 4, 5, 8, 4) == [
        "model: gp; 4 folds (leave-one-mixture-out: 5 folds asked for, 4 mixtures in 8 runs)"]
    assert "auto chose **gp**: the best Spearman of its own 5-fold cross-validation" in md
    assert "| gp | 0.9100 | 0.9000 | 0.01 | 0.400% | ✓ |" in md
    assert "| bimix | - | - | - | - | no: bimix has 6 parameters per target but got only 4 runs |" in md
    assert "auto's choice" not in make_report("rep").markdown  # a method that chooses nothing


def test_a_report_where_no_search_ran_writes_no_store(workspace, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["report", "x"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "no search named 'x': there is no run store at" in err and "MIXOPT_HOME" in err
    assert not list(workspace.iterdir())  # not even an empty runs.sqlite


def test_runs_plot_draws_reused_runs_before_the_swarm(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    """A search that reused 30 earlier (or imported) runs and ran 5: all 35 are drawn, the reused
    ones first and apart, with whole-number run ticks."""
    import matplotlib.pyplot as plt

    from mixopt.report import _plot_runs

    figs = []
    monkeypatch.setattr(plt, "close", figs.append)
    rng = np.random.default_rng(1)
    old = [_record(i, w, tmp_path) for i, w in enumerate(rng.dirichlet(np.ones(3), 30))]
    new = [_record(100 + i, w, tmp_path) for i, w in enumerate(rng.dirichlet(np.ones(3), 5))]
    from dataclasses import replace

    from mixopt.search.runner import INTERRUPTED

    # an attempt cut short by a stop (its slot ran again) is not drawn as a failed run
    new.insert(2, replace(_record(99, np.full(3, 1 / 3), tmp_path, fail=True), error=INTERRUPTED))
    val = [_record(200, np.full(3, 1 / 3), tmp_path, role="validate", label="uniform", seed=1),
           _record(201, np.full(3, 1 / 3), tmp_path, role="validate", label="uniform", seed=2)]
    _plot_runs(tmp_path / "runs.png", new + val, Objective(), DOMAINS, None,
               reused=[Objective().value(r.metrics, DOMAINS) for r in old], lent={val[1].run_id})
    assert (tmp_path / "runs.png").read_bytes().startswith(PNG)
    ax = figs[0].axes[0]
    drawn = {c.get_label(): c.get_offsets()[:, 0].tolist() for c in ax.collections}
    assert drawn["reused run (30, earlier search or import)"] == list(range(30))
    assert drawn["swarm run"] == list(range(30, 35)) and drawn["validate: uniform"] == [35]
    # a validation run an earlier search measured is drawn hollow, apart from this search's own
    assert drawn["validate: uniform (earlier search's run)"] == [36]
    hollow = next(c for c in ax.collections if c.get_label().endswith("(earlier search's run)"))
    assert hollow.get_facecolors().size == 0 or hollow.get_facecolors()[0][3] == 0
    assert all(float(t).is_integer() for t in ax.get_xticks())
    assert ax.get_xlabel() == "run (in order: reused, swarm, then validation)"
    # 20,000 reused runs (a QA pass): a few short ticks, not "10000125001500017500"
    _plot_runs(tmp_path / "runs.png", new, Objective(), DOMAINS, None,
               reused=list(rng.normal(3.0, 0.1, 20_000)))
    figs[1].canvas.draw()
    labels = [t.get_text() for t in figs[1].axes[0].get_xticklabels() if t.get_text()]
    assert len(labels) <= 8 and "20k" in labels and all(len(t) <= 5 for t in labels), labels
    assert all(t == "0" or t.endswith("k") for t in labels), labels  # one unit (had been "8000, 12k")


def test_attempts_a_stopped_driver_cut_short_are_no_retries() -> None:
    """A QA pass: after a Ctrl-C and a resume the summary said "(2 retries)" with --retries 0."""
    from mixopt.report import swarm_outcome

    runs = {"ok": 12, "planned": 12, "attempts": 14, "restarted": 2}
    assert swarm_outcome(runs) == "12 ok (2 cut short by a stop, run again)"
    assert swarm_outcome({**runs, "attempts": 15}) == "12 ok (1 retry; 2 cut short by a stop, run again)"
    assert swarm_outcome({"ok": 4, "planned": 4, "attempts": 5}) == "4 ok (1 retry)"  # a result before it


def test_validation_runs_a_stop_cut_short_are_counted_too() -> None:
    """Stop 30's note: the end-of-search line counted the swarm's cut-short attempts, not validation's."""
    from mixopt.report import _markdown, validation_outcome

    runs = {"ok": 8, "planned": 8, "attempts": 8, "validation_trained": 10, "validation_restarted": 2}
    assert validation_outcome(runs) == "validation: 10 trained, 2 cut short by a stop, run again"
    assert validation_outcome({**runs, "validation_reused": 3}) == (
        "validation: 10 trained, 3 reused, 2 cut short by a stop, run again")
    assert validation_outcome({**runs, "validation_restarted": 0}) == ""  # the table says the rest
    assert validation_outcome({**runs, "validation_restarted": 0, "validation_reused": 7}) == (
        "validation: 10 trained, 7 reused")  # as before
    md = _markdown("s", "done", {"method": "linear"}, {"runs": runs, "out": "m.json", "exported": "proposal",
                                                    "candidates": [], "weights": {}}, [], 0, 8, None, [], [])
    assert "- swarm: 8 planned, 8 ok\n- validation: 10 trained, 2 cut short by a stop, run again\n" in md


def test_report_md_shows_the_proposal_beside_an_exported_baseline_and_reads_a_poor_cv() -> None:
    """A QA pass: with a baseline exported, the proposal's weights were only in weights.png; a CV
    Spearman of 0.18 was printed without a word on what it means."""
    from mixopt.report import _markdown

    cands = [{"name": "proposal", "weights": {"a": 0.7, "b": 0.3}, "comparison": None, "measured": None},
             {"name": "uniform", "weights": {"a": 0.5, "b": 0.5}, "comparison": None, "measured": None,
              "exported": True}]
    result = {"exported": "uniform", "weights": {"a": 0.5, "b": 0.5}, "candidates": cands, "out": "m.json",
              "mixture_path": "m.json", "objective": {"metric": "bpb", "weights": {"a": 2, "b": 1}}}
    md = _markdown("s", "done", {"method": "regmix"}, result, [], 0, 0,
                   {"spearman": 0.182, "pearson": 0.2, "mae": 0.21, "rel_error": 0.03}, [], [])
    assert "| domain | uniform (exported) | proposal |" in md and "| a | 0.5000 | 0.7000 |" in md
    assert "cross-validation: the regmix model ranks runs it did not see with Spearman 0.18, little" in md
    # the review: said once, where the search's notes say it already; not of `random`'s reference model
    poor = {"spearman": 0.182, "pearson": 0.2, "mae": 0.21, "rel_error": 0.03}
    said = dict(result, notes=["5-fold cross-validation: the regmix model ranks runs it did not see with "
                               "Spearman 0.21, little better than chance"])
    md = _markdown("s", "done", {"method": "regmix"}, said, [], 0, 0, poor, [], [], folds=5)
    assert md.count("ranks runs it did not see") == 1 and "Spearman 0.21" in md
    md = _markdown("s", "done", {"method": "regmix"}, result, [], 0, 0, poor, [], [], folds=5)
    assert "5-fold cross-validation: the regmix model ranks runs it did not see with Spearman 0.18" in md
    md = _markdown("s", "done", {"method": "random"}, result, [], 0, 0, poor, [], [], folds=5)
    assert "ranks runs it did not see" not in md
    assert "- objective: **bpb of a=2, b=1** (bits per byte; lower is better)" in md
    # largest first (a QA pass: 300 domains in their own order read poorly)
    wide = dict(result, exported="proposal", weights={"a": 0.1, "b": 0.6, "c": 0.3})
    md = _markdown("s", "done", {"method": "regmix"}, wide, [], 0, 0, None, [], [])
    rows = [line for line in md.splitlines() if line.startswith("| ") and line.endswith("|")]
    assert [r.split("|")[1].strip() for r in rows[-3:]] == ["b", "c", "a"]


def test_weights_png_shows_the_domains_the_exported_mixture_weights_most(tmp_path: Path, monkeypatch) -> None:
    """With more domains than the plot holds, the natural mixture's largest had filled it (a QA pass)."""
    from mixopt import report

    domains = [f"d{i}" for i in range(30)]
    natural = {d: (0.19 if i < 5 else 0.05 if i == 5 else 0.0) for i, d in enumerate(domains)}
    ours = {d: (0.15 if i >= 25 else 0.05 if i >= 20 else 0.0) for i, d in enumerate(domains)}  # below 0.19
    cands = [{"name": "proposal", "weights": ours, "exported": True}, {"name": "natural", "weights": natural}]
    shown = []
    real = report._pyplot

    def spy():  # noqa: ANN202
        plt = real()
        orig = plt.Axes.set_xticks

        def set_xticks(self, ticks, labels=None, **kw):  # noqa: ANN001, ANN003, ANN202
            shown.extend(labels or [])
            return orig(self, ticks, labels, **kw)

        monkeypatch.setattr(plt.Axes, "set_xticks", set_xticks)
        return plt

    monkeypatch.setattr(report, "_pyplot", spy)
    report.plot_weights(tmp_path / "w.png", cands, domains, "search s", top=5)
    assert sorted(shown) == [f"d{i}" for i in range(25, 30)]


def test_a_running_search_is_told_to_wait_for_its_runs_not_to_search_again(tmp_path: Path) -> None:
    """A QA pass: a report of a search 4 runs into 16 had advised a larger budget."""
    from mixopt.report import _plot_cv

    X, y = np.array([[0.5, 0.5], [0.2, 0.8]]), np.array([2.0, 2.1])
    args = (tmp_path / "cv.png", "regmix", X, y, 5, 2, Objective.parse(None, "loss"), ["a", "b"], None)
    assert _plot_cv(*args, running=True)[1] == ["too few runs (2) for cross-validation; the search is still "
                                                "running: report again when more runs have finished"]
    assert _plot_cv(*args)[1] == ["too few runs (2) for cross-validation"]


def test_a_report_of_an_empty_name_asks_for_one(workspace, capsys):
    """A QA pass: `report ""` (a variable left unset) said "no search named ''"."""
    for name, said in (("", "the search name is empty"), (" ", "the search name ' ' is blank")):
        with pytest.raises(SystemExit) as exc:
            main(["report", name])
        err = capsys.readouterr().err.strip().splitlines()
        assert exc.value.code == 2 and err == [f"error: {said}; give one (`mixopt runs searches` lists them)"]
