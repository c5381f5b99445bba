"""``mixopt fit`` through the CLI: what the library receives, the outputs, and every bad input."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from mixopt.cli import run_cli
from mixopt.mixture import EVIDENCE_KEYS, Mixture

RUNS = Path(__file__).parent / "data" / "runs"
R = str(RUNS / "regmix-pile-1m" / "train_mixture_1m.csv")
M = str(RUNS / "regmix-pile-1m" / "train_pile_loss_1m.csv")
T = "metric/the_pile_pile_cc_val_loss"
OR = str(RUNS / "olmix-64dom-512" / "full_recomputation_ratios.csv")
OM = str(RUNS / "olmix-64dom-512" / "full_recomputation_metrics.csv")
# Small proposer and model keep these tests fast; the defaults are covered by the library tests.
FAST = ["--candidates", "20000", "--top-k", "16"]


@pytest.fixture(autouse=True)
def _fast_regmix(monkeypatch: pytest.MonkeyPatch, workspace: Path) -> None:
    from mixopt.fitters.regmix import RegMixFitter

    # 100 trees instead of RegMix's 1000: same code path, a tenth of the time.
    monkeypatch.setitem(RegMixFitter.__init__.__kwdefaults__, "n_estimators", 100)


def test_options_reach_the_library(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import mixopt.fit.on_tables as api

    seen = {}

    def fake(config):  # noqa: ANN001, ANN202
        seen["config"] = config
        return api.FitReport(method=config.method, target=config.target, domains=("a", "b"), n_runs=2,
                             n_excluded=0)

    monkeypatch.setattr(api, "fit_tables", fake)
    out = tmp_path / "mix.json"
    assert run_cli(["fit", "--ratios", R, "--metrics", M, "--target", T, "--method", "linear", "--propose",
                    "--out", str(out), "--seed", "7", "--min-weight", "0.001", "--max-weight",
                    "train_the_pile_pile_cc=0.5", "--max-weight",
                    "train_the_pile_github=0.2,train_the_pile_arxiv=0.1",
                    "--fix", "train_the_pile_europarl=0.01", "--candidates", "5000", "--top-k", "8"]) == 0
    c = seen["config"]
    assert c.method == "linear" and c.propose and c.out == out and c.seed == 7 and c.min_weight == 0.001
    assert dict(c.ceilings) == {"train_the_pile_pile_cc": 0.5, "train_the_pile_github": 0.2,
                                "train_the_pile_arxiv": 0.1}
    assert dict(c.fixed) == {"train_the_pile_europarl": 0.01}
    assert c.n_candidates == 5000 and c.k == 8 and c.cv is None and c.predict is None


def test_cv_json_is_one_object(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["fit", "--ratios", R, "--metrics", M, "--target", T, "--cv", "4", "--json"]) == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)  # nothing else on stdout
    assert doc["cv"]["k"] == 4 and doc["n_runs"] == 64 and doc["method"] == "regmix"
    assert set(doc["cv"]) >= {"spearman", "pearson", "mae", "rel_error"}
    assert 0.3 < doc["cv"]["spearman"] <= 1
    assert "renormalised" in captured.err
    # every warning is in the document too (a QA pass: a script saw only the proposal's notes)
    said = doc["warnings"]
    assert any("renormalised" in w for w in said) and len(said) == len(set(said))


def test_a_long_fit_shows_a_spinner_on_a_terminal_only(monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    import io

    from rich.console import Console

    import mixopt.cli.common as common

    tty = io.StringIO()
    monkeypatch.setattr(common, "err_console", Console(file=tty, force_terminal=True, width=100))
    assert run_cli(["fit", "--ratios", R, "--metrics", M, "--target", T, "--method", "linear", "--cv", "3",
                    "--json"]) == 0
    assert "fitting linear, 3-fold cross-validation" in tty.getvalue()
    assert json.loads(capsys.readouterr().out)["cv"]["k"] == 3  # stdout stays one JSON object
    monkeypatch.setattr(common, "err_console", Console(file=io.StringIO(), force_terminal=False))
    with common.busy("nothing to show"):
        pass
    assert common.err_console.file.getvalue() == ""


def test_cv_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["fit", "--ratios", OR, "--metrics", OM, "--target", "mean", "--method", "linear",
                    "--cv", "3"]) == 0
    out = capsys.readouterr().out
    assert "3-fold cross-validation" in out and "Spearman" in out


def test_a_weighted_target_of_columns_is_called_a_weighted_mean(tmp_path: Path, capsys) -> None:
    rng = np.random.default_rng(2)
    X = rng.dirichlet(np.ones(3), 12)
    runs = [f"r{i}" for i in range(12)]
    pl.DataFrame({"run": runs, "a": X[:, 0], "b": X[:, 1], "c": X[:, 2]}).write_csv(tmp_path / "r.csv")
    pl.DataFrame({"run": runs, "loss/a": 3 - X[:, 0], "loss/b": 3 - X[:, 1]}).write_csv(tmp_path / "m.csv")
    args = ["fit", "--ratios", str(tmp_path / "r.csv"), "--metrics", str(tmp_path / "m.csv"), "--method",
            "loglinear", "--cv", "3", "--target"]
    assert run_cli([*args, "loss/a=0.7,loss/b=0.3"]) == 0
    out = capsys.readouterr().out
    assert "one loglinear law per metric column (2); the target is their weighted mean" in out
    assert run_cli([*args, "mean"]) == 0
    assert "the target is their mean" in capsys.readouterr().out
    # a weight for some columns and none for others is refused, as search's --target is (a QA pass)
    assert run_cli([*args, "loss/a=0.7,loss/b"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: --target 'loss/a=0.7,loss/b' weights some columns and not 'loss/b'; give every "
                   "column a weight (the weights are relative), or none for their mean"]


def test_predict_writes_predictions(tmp_path: Path) -> None:
    out = tmp_path / "p.csv"
    new = str(RUNS / "regmix-pile-1m" / "test_mixture_1m.csv")
    assert run_cli(["fit", "--ratios", R, "--metrics", M, "--target", T, "--method", "linear",
                    "--predict", new, "--out", str(out)]) == 0
    df = pl.read_csv(out)
    assert df.columns == ["index", f"predicted/{T}"] and df.height == 32
    from mixopt.fitters.linear import LinearFitter
    from mixopt.tables import read_ratios, read_run_tables

    t = read_run_tables(R, M)
    _, _, W, _ = read_ratios(new)
    expect = LinearFitter().fit(t.X, t.target(T)).predict(W)
    np.testing.assert_allclose(df[f"predicted/{T}"].to_numpy(), expect)
    # A model with uncertainty writes its predictive standard deviation next to the mean.
    assert run_cli(["fit", "--ratios", R, "--metrics", M, "--target", T, "--method", "gp",
                    "--predict", new, "--out", str(out)]) == 0
    df = pl.read_csv(out)
    assert df.columns == ["index", f"predicted/{T}", f"std/{T}"] and (df[f"std/{T}"] > 0).all()


def test_one_prediction_is_said_as_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A QA pass: one row read "wrote 1 predictions (1.398 … 1.398)"."""
    new = tmp_path / "one.csv"
    lines = (RUNS / "regmix-pile-1m" / "test_mixture_1m.csv").read_text().splitlines()
    new.write_text("\n".join(lines[:2]) + "\n")
    assert run_cli(["fit", "--ratios", R, "--metrics", M, "--target", T, "--method", "linear",
                    "--predict", str(new), "--out", str(tmp_path / "p.csv")]) == 0
    said = " ".join(capsys.readouterr().out.split())
    assert "wrote 1 prediction (" in said and "…" not in said.split("wrote 1 prediction")[1].split(")")[0]


def test_propose_writes_a_valid_mixture(tmp_path: Path) -> None:
    out = tmp_path / "mix.json"
    assert run_cli(["fit", "--ratios", R, "--metrics", M, "--target", T, "--propose", "--out", str(out),
                    "--max-weight", "train_the_pile_pile_cc=0.6", "--fix", "train_the_pile_github=0.05",
                    "--min-weight", "0.001", *FAST]) == 0
    mix = Mixture.load(out)
    w = mix.weights
    assert w["train_the_pile_pile_cc"] <= 0.6 + 1e-9 and w["train_the_pile_github"] == pytest.approx(0.05)
    assert min(w.values()) >= 0.001 - 1e-12
    assert mix.meta["method"] == "regmix" and isinstance(mix.meta["predicted"]["mean"], float)
    assert len(mix.meta["provenance"]["run_ids"]) == 64 and mix.meta["tokens"] == {"target_tokens": None}
    # the keys of a search's mixture, null where a fit has no such evidence (they had been missing)
    assert list(json.loads(out.read_text())) == ["schema", "weights", *EVIDENCE_KEYS, "created"]
    assert mix.meta["measured"] is None and mix.meta["provenance"]["corpus"] is None
    # The proposer's options, then what it reported (as the search records it).
    proposer = mix.meta["params"]["proposer"]
    assert (proposer["n_candidates"], proposer["k"], proposer["constant_model"]) == (20000, 16, False)
    assert mix.meta["params"]["fitter"]["learning_rate"] == 0.01
    assert "uniform" in mix.meta["baselines"] and "best_run" in mix.meta["baselines"]
    assert "cv" not in mix.meta["params"]  # no --cv, no figures


def test_the_baselines_beside_a_constrained_proposal(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """A QA pass: with --fix a=0.1 the JSON's uniform was 1/3 each, unflagged, and the table's best run
    (outside the constraints, predicted better than the proposal) was flagged in the JSON only."""
    rows = [(0.6, .2, .2, 2.5), (.2, .6, .2, 2.4), (.2, .2, .6, 2.6), (.4, .4, .2, 2.35), (.4, .2, .4, 2.55),
            (.2, .4, .4, 2.45), (.5, .3, .2, 2.42), (.3, .5, .2, 2.38), (.1, .5, .4, 2.41)]
    runs = [f"r{i}" for i in range(len(rows))]
    pl.DataFrame({"run": runs, **{d: [r[j] for r in rows] for j, d in enumerate("abc")}}).write_csv(
        tmp_path / "r.csv")
    pl.DataFrame({"run": runs, "loss": [r[3] for r in rows]}).write_csv(tmp_path / "m.csv")
    out = tmp_path / "mix.json"
    base = ["fit", "--ratios", str(tmp_path / "r.csv"), "--metrics", str(tmp_path / "m.csv"),
            "--target", "loss", "--propose", "--out", str(out), *FAST]
    assert run_cli([*base, "--method", "linear", "--fix", "a=0.1"]) == 0
    mix = Mixture.load(out)
    assert mix.meta["baselines"]["uniform"]["weights"] == pytest.approx({"a": 0.1, "b": 0.45, "c": 0.45})
    said = " ".join(capsys.readouterr().err.split())
    for note in ("the uniform baseline is moved into the constraints: a 0.333 → 0.100, b 0.333 → 0.450, "
                 "c 0.333 → 0.450",
                 "the best run, r3 (2.35), is outside the constraints; the best inside them is r8 (2.41)"):
        assert note in mix.meta["notes"] and note in said
    # random proposes a measured run: none at a=0.2 exactly is refused in its own words
    out.unlink()
    assert run_cli([*base, "--method", "random", "--fix", "a=0.25"]) == 2 and not out.exists()
    assert ("none of the 9 runs with a finite objective is inside the constraints (a: 0.6 above ceiling 0.25 "
            "in the first): random proposes a measured run") in " ".join(capsys.readouterr().err.split())
    from mixopt.errors import MixoptError
    from mixopt.proposers import BestRunProposer
    from mixopt.space import SearchSpace

    with pytest.raises(MixoptError, match=r"^none of the 2 runs has a finite objective: check the runs'"):
        BestRunProposer().propose_from_runs(np.full((2, 2), 0.5), np.full(2, np.nan),
                                            SearchSpace(domains=("a", "b")))


def test_a_proposal_from_a_model_that_ranks_held_out_runs_poorly_says_so(tmp_path: Path) -> None:
    """--cv measured it: the mixture's notes say what a low Spearman means for the proposal."""
    rng = np.random.default_rng(0)
    W = rng.dirichlet(np.ones(3), size=20)
    runs = [f"r{i}" for i in range(20)]
    pl.DataFrame({"run": runs, **{d: W[:, j] for j, d in enumerate("abc")}}).write_csv(tmp_path / "r.csv")
    pl.DataFrame({"run": runs, "loss": rng.normal(3.0, 0.1, 20)}).write_csv(tmp_path / "m.csv")
    out = tmp_path / "mix.json"
    args = ["fit", "--ratios", str(tmp_path / "r.csv"), "--metrics", str(tmp_path / "m.csv"),
            "--target", "loss", "--method", "linear", "--propose", "--out", str(out), *FAST]
    assert run_cli([*args, "--cv", "5"]) == 0
    said = "5-fold cross-validation: the linear model ranks runs it did not see with Spearman"
    assert any(n.startswith(said) for n in Mixture.load(out).meta["notes"])
    out.unlink()
    assert run_cli(args) == 0  # not measured, not said
    assert not any("cross-validation" in n for n in Mixture.load(out).meta["notes"])


def test_random_proposes_the_best_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "mix.json"
    assert run_cli(["fit", "--ratios", OR, "--metrics", OM, "--target", "mean", "--method", "random",
                    "--propose", "--out", str(out), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    from mixopt.tables import read_run_tables

    t = read_run_tables(OR, OM)
    y = t.target("mean")
    assert doc["proposal"]["info"]["run_id"] == t.run_ids[int(np.argmin(y))]
    assert Mixture.load(out).meta["predicted"]["mean"] == pytest.approx(y.min())
    # the table says the value was measured, on which run (it said "predicted")
    assert run_cli(["fit", "--ratios", OR, "--metrics", OM, "--target", "mean", "--method", "random",
                    "--propose", "--out", str(out)]) == 0
    said = " ".join(capsys.readouterr().out.split())
    assert f"proposed mixture (measured mean, run {t.run_ids[int(np.argmin(y))]}: {y.min():.4f})" in said
    assert "… 44 more" in said  # 20 of 64 domains (a QA pass: 100 rows)


def test_a_far_fetched_proposal_is_flagged(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Runs only reach a = 0.2; a linear fit proposes a ≈ 1 and predicts far below every run."""
    rng = np.random.default_rng(0)
    a = rng.uniform(0.0, 0.2, 40)
    b = rng.uniform(0.0, 1.0, 40) * (1 - a)
    pl.DataFrame({"run": [f"r{i}" for i in range(40)], "a": a, "b": b, "c": 1 - a - b}).write_csv(
        tmp_path / "r.csv")
    pl.DataFrame({"run": [f"r{i}" for i in range(40)], "loss": 3.0 - 2.0 * a}).write_csv(tmp_path / "m.csv")
    out = tmp_path / "mix.json"
    assert run_cli(["fit", "--ratios", str(tmp_path / "r.csv"), "--metrics", str(tmp_path / "m.csv"),
                    "--target", "loss", "--method", "linear", "--propose", "--out", str(out), *FAST]) == 0
    notes = Mixture.load(out).meta["notes"]
    assert len(notes) == 2 and "extrapolating beyond its data" in notes[0]
    # and along which domain: a ≈ 1 where no run went past 0.2
    assert re.search(r"more weight than any run had to a 1 \(runs: at most 0\.19\d\).*--max-weight a=0\.19",
                     notes[1])
    assert "warning: the linear model predicts" in capsys.readouterr().err


def test_a_model_that_misses_its_own_runs_is_noted_by_fit_as_by_search(tmp_path: Path) -> None:
    """A bump in a's weight: a linear fit cannot follow it (search said so; fit said nothing)."""
    from mixopt.proposers.proposal import misfit_note

    rng = np.random.default_rng(1)
    X = rng.dirichlet(np.ones(3), 40)
    runs = [f"r{i}" for i in range(40)]
    pl.DataFrame({"run": runs, "a": X[:, 0], "b": X[:, 1], "c": X[:, 2]}).write_csv(tmp_path / "r.csv")
    loss = 3.0 - np.exp(-60 * (X[:, 0] - 0.3) ** 2)
    pl.DataFrame({"run": runs, "loss": loss}).write_csv(tmp_path / "m.csv")
    out = tmp_path / "mix.json"
    assert run_cli(["fit", "--ratios", str(tmp_path / "r.csv"), "--metrics", str(tmp_path / "m.csv"),
                    "--target", "loss", "--method", "linear", "--propose", "--out", str(out), *FAST]) == 0
    assert any(n.startswith("the linear model fits its own runs poorly: in-sample RMS error")
               for n in Mixture.load(out).meta["notes"])
    assert misfit_note(0.1, 0.3, "m") is None and misfit_note(None, 0.3, "m") is None
    assert misfit_note(0.2, 0.3, "gp").startswith("the gp model fits its own runs poorly")


def test_notes_for_a_proposal_past_the_runs_or_worse_than_the_best_run() -> None:
    from mixopt.proposers.proposal import beyond_runs_note, worse_than_best_note

    X = np.array([[0.5, 0.5, 0.0], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1]])
    assert beyond_runs_note(np.array([0.6, 0.3, 0.1]), X, ("a", "b", "c"), "m") is None
    assert beyond_runs_note(np.array([0.5, 0.4, 0.14]), X, ("a", "b", "c"), "m") is None  # < 1.5x the max
    note = beyond_runs_note(np.array([0.4, 0.3, 0.3]), X, ("a", "b", "c"), "m")
    assert note.startswith("the proposal gives more weight than any run had to c 0.3 (runs: at most 0.1)")
    assert worse_than_best_note(2.0, 2.0, "r1", "m") is None
    assert worse_than_best_note(None, 1.0, "r1", "m") is None
    assert "predicted worse than the best run inside the constraints (2.1 against 2 for run r1" in \
        worse_than_best_note(2.1, 2.0, "r1", "regmix")
    # a QA pass read "3.0526 against 3.0526": as many digits as tell them apart
    assert "(3.05261 against 3.05258 for run r1" in worse_than_best_note(3.05261, 3.05258, "r1", "regmix")


def test_extrapolation_note_only_beyond_the_spread() -> None:
    from mixopt.proposers.proposal import extrapolation_note

    y = np.array([2.0, 2.5, 3.0])
    assert extrapolation_note(1.2, y, "m") is None  # 0.8 below the best, the runs span 1.0
    assert "1.1 below the best run (2)" in extrapolation_note(0.9, y, "m")
    assert extrapolation_note(0.0, np.array([2.0, 2.0]), "m") is None  # no spread to compare with
    assert extrapolation_note(None, y, "random") is None  # a method without a model predicts nothing


def test_nan_metrics_warn_and_are_excluded(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    m = pl.read_csv(M).with_columns(pl.when(pl.col("index") <= 3).then(None).otherwise(pl.col(T)).alias(T))
    m.write_csv(tmp_path / "m.csv")
    assert run_cli(["fit", "--ratios", R, "--metrics", str(tmp_path / "m.csv"), "--target", T, "--method",
                    "linear", "--cv", "3", "--json"]) == 0
    cap = capsys.readouterr()
    assert json.loads(cap.out)["n_excluded"] == 3
    assert "NaN, infinite or missing for 3 run(s) (1, 2, 3)" in cap.err


def bad(args: list[str], capsys: pytest.CaptureFixture[str], match: str, out: Path | None = None) -> None:
    assert run_cli(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("error:")]
    assert len(errors) == 1 and match in errors[0], err
    if out is not None:
        assert not out.exists() and not list(out.parent.glob(f".{out.name}.*"))


def test_a_bad_target_is_the_only_line_not_after_the_tables_notes(capsys: pytest.CaptureFixture[str],
                                                                   tmp_path: Path) -> None:
    # RegMix's rounded rows are always renormalised with a warning; before a refused --target that
    # warning was noise above the error line
    assert run_cli(["fit", "--ratios", R, "--metrics", M, "--target", "zz", "--cv", "3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --target 'zz' is not a metric column"), err
    # nor above a --predict file that is not there (a QA pass)
    assert run_cli(["fit", "--ratios", R, "--metrics", M, "--target", T, "--predict", "/no/such.csv", "--out",
                    str(tmp_path / "p.csv")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: --predict file /no/such.csv does not exist; give the path to a CSV file"], err
    ok = ["fit", "--ratios", R, "--metrics", M, "--target", T, "--cv", "3", "--method", "linear"]
    assert run_cli(ok) == 0
    assert "renormalised" in capsys.readouterr().err  # said when the fit goes on


def test_bad_inputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "mix.json"
    base = ["fit", "--ratios", R, "--metrics", M]
    bad([*base, "--target", T, "--method", "lightgbm", "--propose", "--out", str(out)], capsys,
        "method 'lightgbm' is unknown; choose one of", out)
    bad([*base, "--target", T, "--method", "", "--cv", "3"], capsys, "method '' is unknown")  # not regmix
    bad([*base, "--target", "loss", "--propose", "--out", str(out)], capsys,
        "give one of: mean, metric/the_pile_arxiv_val_loss", out)
    bad([*base, "--target", T, "--propose", "--out", str(out), "--fix", "train_the_pile_arxiv=0.7",
         "--fix", "train_the_pile_github=0.6"], capsys, "sum to 1.3", out)
    bad([*base, "--target", T, "--propose", "--out", str(out), "--max-weight", "web=0.5"], capsys,
        "unknown domain(s) web", out)
    bad([*base, "--target", T, "--propose"], capsys, "--propose needs --out")
    # bounds that leave one mixture, as search refuses them (a QA pass: fit wrote it, with two warnings)
    bad([*base, "--target", T, "--method", "linear", "--propose", "--out", str(out), "--fix",
         "train_the_pile_arxiv=1"], capsys, "(--fix train_the_pile_arxiv=1), which leaves a single mixture "
        "and nothing to propose: use that mixture as it is, or free a domain", out)
    bad([*base, "--target", T, "--method", "random", "--cv", "3"], capsys, "cannot --cv")
    bad([*base, "--target", T, "--method", "entropy", "--propose", "--out", str(out)], capsys,
        "entropy proposes from a corpus, not from runs: `mixopt entropy CORPUS", out)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    bad([*base, "--target", T, "--propose", "--out", str(blocker / "mix.json")], capsys,
        "is a file, not a folder")
    rows = tmp_path / "r.csv"
    rows.write_text("index,a,b\n1,0.5,0.5\n2,0.2,0.7\n3,0.6,0.6\n")
    metrics = tmp_path / "m.csv"
    metrics.write_text("index,loss\n1,1\n2,2\n3,3\n")
    bad(["fit", "--ratios", str(rows), "--metrics", str(metrics), "--target", "loss", "--propose", "--out",
         str(out)], capsys, "2 run(s) do not sum to 1 (beyond ±0.001): 3 (sum 1.2), 2 (sum 0.9)", out)
    before = metrics.read_text()
    bad(["fit", "--ratios", str(rows), "--metrics", str(metrics), "--target", "loss", "--propose", "--out",
         str(metrics)], capsys, f"--out {metrics} is the --metrics file this command reads")
    assert metrics.read_text() == before
    empty = tmp_path / "empty.csv"
    empty.write_text("index,loss,acc\n1,,0.1\n2,,0.2\n3,,0.3\n")
    good = tmp_path / "good.csv"
    good.write_text("index,a,b\n1,0.5,0.5\n2,0.2,0.8\n3,0.6,0.4\n")
    bad(["fit", "--ratios", str(good), "--metrics", str(empty), "--target", "loss", "--cv", "2"], capsys,
        "target 'loss' has no finite value in any run")
    dup = tmp_path / "dup.csv"
    dup.write_text("index,a,b\n1,0.5,0.5\n1,0.2,0.8\n")
    bad(["fit", "--ratios", str(dup), "--metrics", str(metrics), "--target", "loss", "--cv", "2"], capsys,
        "duplicate run ids in column 'index': 1")
    bad(["fit", "--ratios", str(good), "--metrics", str(metrics), "--target", "loss"], capsys,
        "nothing was asked of the fit: add --cv K")
    # a misspelt method is named before anything else is asked
    bad(["fit", "--ratios", str(good), "--metrics", str(metrics), "--target", "loss", "--method", "nope"],
        capsys, "method 'nope' is unknown; choose one of")
    twice = tmp_path / "twice.csv"
    twice.write_text("index,a,b,a\n1,0.5,0.5,0.1\n2,0.2,0.8,0.1\n")
    bad(["fit", "--ratios", str(twice), "--metrics", str(metrics), "--target", "loss", "--cv", "2"], capsys,
        "names column(s) a more than once")
    # the top-k options mean nothing to an exact or best-run proposer: not checked there
    from mixopt.fit.on_tables import FitConfig

    FitConfig(ratios=good, metrics=metrics, target="loss", method="loglinear", cv=2, n_candidates=64)
    # nor when nothing is proposed: --cv alone with --candidates 10 (below the default --top-k 128)
    FitConfig(ratios=good, metrics=metrics, target="loss", method="regmix", cv=2, n_candidates=10)
    for extra, said in ((["--candidates", "0"], "'0' is not a whole number of candidates ≥ 1"),
                        (["--candidates", "1e12"], "'1e12' is more than 1e+09 candidates, which take hours"),
                        (["--top-k", "0"], "--candidates 100000 and --top-k 0: both must be at least 1"),
                        (["--candidates", "10"], "--top-k 128 exceeds --candidates 10")):
        bad(["fit", "--ratios", str(good), "--metrics", str(metrics), "--target", "loss", "--propose",
             "--out", str(tmp_path / "m.json"), *extra], capsys, said, tmp_path / "m.json")
    bad(["fit", "--ratios", str(good), "--metrics", str(metrics), "--target", "loss", "--predict", str(good),
         "--out", str(tmp_path / "p.json")], capsys, "--predict writes a CSV", tmp_path / "p.json")
    new = tmp_path / "new.csv"
    new.write_text("index,a,c\n1,0.5,0.5\n")
    good = tmp_path / "g.csv"
    good.write_text("index,a,b\n1,0.5,0.5\n2,0.2,0.8\n3,0.6,0.4\n")
    pout = tmp_path / "p.csv"
    bad(["fit", "--ratios", str(good), "--metrics", str(metrics), "--target", "loss", "--method", "linear",
         "--predict", str(new), "--out", str(pout)], capsys, "lacks b; has unknown c", pout)
    bad(["fit", "--ratios", str(good), "--metrics", str(metrics), "--target", "loss", "--method", "linear",
         "--predict", str(tmp_path / "none.csv"), "--out", str(pout)], capsys, "--predict file", pout)
    bad([*base, "--target", T, "--propose", "--out", str(tmp_path)], capsys,
        f"is a folder; give a file path such as {tmp_path / 'mixture.json'}")
    bad(["fit", "--ratios", str(good), "--metrics", str(metrics), "--target", "loss", "--method", "linear",
         "--predict", str(new), "--out", str(tmp_path)], capsys, f"such as {tmp_path / 'predictions.csv'}")
    # a target that is the same in every run ranks nothing: refused, not scored NaN
    flat = tmp_path / "flat.csv"
    flat.write_text("index,loss\n1,2.5\n2,2.5\n3,2.5\n")
    bad(["fit", "--ratios", str(good), "--metrics", str(flat), "--target", "loss", "--cv", "3"], capsys,
        "'loss' is 2.5 in every run (to 9 significant digits), so there is nothing to fit")
    # float noise is no landscape either, as in a search (it had been fitted and ranked)
    flat.write_text("index,loss\n1,2.5\n2,2.500000000001\n3,2.5\n")
    bad(["fit", "--ratios", str(good), "--metrics", str(flat), "--target", "loss", "--cv", "3"], capsys,
        "'loss' is 2.5 in every run (to 9 significant digits)")
    # runs of one mixture: every model would predict their mean for any mixture (regmix, gp, log-ridge
    # and linear had, without a word); a method that fits nothing still takes the best run
    same = tmp_path / "same.csv"
    same.write_text("index,a,b\n1,0.5,0.5\n2,0.5,0.5\n3,0.5,0.5\n")
    for m in ("regmix", "gp", "log-ridge", "linear", "mixing-law"):
        bad(["fit", "--ratios", str(same), "--metrics", str(metrics), "--target", "loss", "--method", m,
             "--propose", "--out", str(tmp_path / "m.json")], capsys,
            "all 3 runs have the same mixture, so no model can say how the mixture moves the target",
            tmp_path / "m.json")
    assert run_cli(["fit", "--ratios", str(same), "--metrics", str(metrics), "--target", "loss", "--method",
                    "random", "--propose", "--out", str(tmp_path / "m.json")]) == 0
    # folds that would fit on one run: leave-one-out suggested where it helps
    bad(["fit", "--ratios", str(good), "--metrics", str(metrics), "--target", "loss", "--method", "linear",
         "--cv", "2"], capsys, "--cv 2 on 3 runs fits fold 1 on 1 run; --cv 3 (leave-one-out) trains on 2")
    two = tmp_path / "two.csv"
    two.write_text("index,a,b\n1,0.5,0.5\n2,0.2,0.8\n")
    bad(["fit", "--ratios", str(two), "--metrics", str(metrics), "--target", "loss", "--method", "linear",
         "--cv", "2"], capsys, "cross-validation needs at least 3 runs")


def test_bench_fit_on_the_slice(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from mixopt.bench.fit import bench_fit
    from mixopt.errors import MixoptError

    res = bench_fit(data=RUNS / "regmix-pile-1m", olmix=RUNS / "olmix-64dom-512", n_candidates=20_000,
                    scorer_rows=5000)
    assert res["n_train"] == 64 and res["n_test"] == 32 and res["n_domains"] == 17
    assert -1 <= res["spearman"] <= 1 and res["propose_seconds"] > 0 and "propose_seconds_64" in res
    assert [r["met"] for r in res["rows"][:1]] == [res["fit_seconds"] <= 5]
    # every row has "met", null where it has no goal, as bench search's rows and bench laws' and bench
    # moe's goals (scripts read one key)
    assert all("met" in r for r in res["rows"]) and res["rows"][-1]["met"] is None
    with pytest.raises(MixoptError, match="give --data the folder holding regmix-pile-1m/"):
        bench_fit(data=tmp_path)
    assert run_cli(["bench", "fit", "--data", str(tmp_path)]) == 2
    # bench search refuses so before any trial runs (a QA pass: minutes of trials, then this error)
    from mixopt.bench.search import bench_search

    with pytest.raises(MixoptError, match="give --data the folder"):
        bench_search(fit_data=tmp_path, address="no-such-host:1")  # Ray would refuse that address


def test_source_groups_are_reported(capsys: pytest.CaptureFixture[str]) -> None:
    """Olmix's domains are written source:topic; log-ridge groups them and says so."""
    assert run_cli(["fit", "--ratios", OR, "--metrics", OM, "--target", "mean", "--method", "log-ridge",
                    "--cv", "3"]) == 0
    assert "domains grouped by source, from their names: arxiv 1, dclm 24" in capsys.readouterr().out
    assert run_cli(["fit", "--ratios", OR, "--metrics", OM, "--target", "mean", "--method", "log-ridge",
                    "--cv", "3", "--json"]) == 0
    groups = json.loads(capsys.readouterr().out)["groups"]
    assert groups["dclm"] == 24 and groups["stack-edu"] == 15 and sum(groups.values()) == 64
    assert run_cli(["fit", "--ratios", R, "--metrics", M, "--target", T, "--method", "log-ridge",
                    "--cv", "3", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["groups"] is None  # RegMix's names are flat


@pytest.mark.parametrize("method", ["gp", "log-ridge"])
def test_propose_json_is_one_object(method: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The proposal's info (numpy flags and figures included) goes through --json."""
    out = tmp_path / "mix.json"
    assert run_cli(["fit", "--ratios", OR, "--metrics", OM, "--target", "mean", "--method", method,
                    "--propose", "--out", str(out), "--json", *FAST]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["proposal"]["info"]["constant_model"] is False
    assert abs(sum(res["proposal"]["weights"].values()) - 1) < 1e-9
    saved = Mixture.load(out).meta
    assert saved["method"] == method
    # stdout explains the proposal as the file does (a QA pass: notes, interval and baselines had
    # reached only stderr and --out; a GP's top-k proposal had a std and no interval)
    assert res["proposal"]["notes"] == saved["notes"] and res["proposal"]["baselines"] == saved["baselines"]
    std = res["proposal"]["std"]
    if method == "gp":
        low, high = res["proposal"]["interval"]
        assert std > 0 and high - low == pytest.approx(2 * 1.96 * std)
    else:
        assert std is None and res["proposal"]["interval"] is None


def test_a_kl_the_sampler_cannot_use_is_noted() -> None:
    from mixopt.proposers.proposal import unused_kl_note

    info = {"solver": "topk (no convex form)", "selection": [{"name": "gp", "chosen": False},
                                                              {"name": "mean(gp, regmix)", "chosen": True}]}
    assert unused_kl_note(info, 0.5, "auto").startswith("--kl 0.5 was not used: mean(gp, regmix) (auto's "
                                                        "choice) has no convex form")
    assert unused_kl_note(info, None, "auto") is None and unused_kl_note(info, 0.0, "auto") is None
    assert unused_kl_note({"solver": "SLSQP"}, 0.5, "auto") is None


def test_fit_without_tables_says_which_are_missing(capsys: pytest.CaptureFixture[str]) -> None:
    bad(["fit", "--ratios", R, "--target", T, "--cv", "3"], capsys,
        "mixopt fit reads run tables: give --metrics")
    bad(["fit", "--store", "x.sqlite", "--target", T, "--cv", "3"], capsys,
        "give --ratios, --metrics (--store is read only with --fidelity-law")


def test_the_fits_own_warnings_are_notes_of_the_mixture(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(0)
    a = rng.uniform(0.1, 0.7, 30)
    runs = [f"r{i}" for i in range(30)]
    pl.DataFrame({"run": runs, "a": a, "b": 0.8 - a, "c": np.full(30, 0.2)}).write_csv(tmp_path / "r.csv")
    pl.DataFrame({"run": runs, "loss": 2.0 + np.exp(-2 * a)}).write_csv(tmp_path / "m.csv")
    out = tmp_path / "mix.json"
    assert run_cli(["fit", "--ratios", str(tmp_path / "r.csv"), "--metrics", str(tmp_path / "m.csv"),
                    "--target", "loss", "--method", "loglinear", "--propose", "--out", str(out)]) == 0
    assert "have the same weight in every run" in capsys.readouterr().err  # shown as it ran, and kept:
    notes = Mixture.load(out).meta["notes"]
    assert any("have the same weight in every run" in n for n in notes)


def test_fit_proposes_under_a_repetition_cap(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    domains = [c for c in pl.read_csv(R).columns if c != "index"]
    tokens = {d: (1e6 if i == 0 else 1e8) for i, d in enumerate(domains)}  # the first domain is small
    toks = ",".join(f"{d}={t:g}" for d, t in tokens.items())
    out = tmp_path / "capped.json"
    assert run_cli(["fit", "--ratios", R, "--metrics", M, "--target", T, "--method", "loglinear", "--kl", "0",
                    "--propose", "--out", str(out), "--tokens", toks, "--max-epochs", "2",
                    "--target-tokens", "100M"]) == 0  # a count as people write it, as search takes it
    w = Mixture.load(out).weights
    assert w[domains[0]] <= 2 * 1e6 / 1e8 + 1e-9  # two passes over 1M tokens of a 100M-token run
    assert Mixture.load(out).meta["params"]["constraints"]["max_epochs"] == 2
    plan = Mixture.load(out).meta["tokens"]  # the contract's token plan at the target budget, as search's
    first = domains[0]
    assert plan["target_tokens"] == 1e8 and plan["per_domain"][first] == pytest.approx(w[first] * 1e8)
    assert plan["epochs"][first] == pytest.approx(w[first] * 100) and max(plan["epochs"].values()) <= 2
    # --tokens alone: the budget is the tokens the domains hold, as a search takes it
    assert run_cli(["fit", "--ratios", R, "--metrics", M, "--target", T, "--method", "loglinear", "--kl", "0",
                    "--propose", "--out", str(out), "--tokens", toks, "--min-weight", "0.01"]) == 0
    plan = Mixture.load(out).meta["tokens"]
    assert plan["target_tokens"] == pytest.approx(sum(tokens.values())) and set(plan["epochs"]) == set(tokens)
    # uncapped, the small domain is repeated: said, with the cap that would prevent it
    repeated = [n for n in Mixture.load(out).meta["notes"] if "times (epochs)" in n]
    assert plan["epochs"][first] > 4 and repeated and f"repeats {first} " in repeated[0]
    bad(["fit", "--ratios", R, "--metrics", M, "--target", T, "--propose", "--out", str(out),
         "--max-epochs", "2"], capsys, "--max-epochs needs the tokens of each domain")
    # the form's example is a count where a count is asked (it had been a weight, web=0.5)
    bad(["fit", "--ratios", R, "--metrics", M, "--target", T, "--propose", "--out", str(out),
         "--tokens", "web"], capsys, "is not of the form domain=value (e.g. --tokens web=4e9)")
    # a QA pass: --target-tokens alone was taken, recorded and used for nothing
    bad(["fit", "--ratios", R, "--metrics", M, "--target", T, "--propose", "--out", str(out),
         "--target-tokens", "3e9"], capsys, "--target-tokens needs the tokens of each domain")
    # the mirror of --predict's check: a mixture JSON had been written into x.csv without a word
    bad(["fit", "--ratios", R, "--metrics", M, "--target", T, "--propose", "--out", str(tmp_path / "x.csv")],
        capsys, "--propose writes a mixture JSON, not")
    assert not (tmp_path / "x.csv").exists()
    bad(["fit", "--ratios", R, "--metrics", M, "--target", T, "--cv", "3", "--target-size", "1e9"], capsys,
        "--target-size goes with --fidelity-law (fitting across rungs from the store); drop it")
    # --metric is read only from a store's runs: it had been taken and ignored (a help audit)
    bad(["fit", "--ratios", R, "--metrics", M, "--target", T, "--cv", "3", "--metric", "bpb",
         "--size-exponent", "0"], capsys, "--size-exponent, --metric go with --fidelity-law")


def test_an_out_that_names_a_folder_or_stdout_is_refused_by_every_command(tmp_path, capsys) -> None:
    # typer's Path drops the slash: "--out outdir/" wrote a file called outdir
    mix = tmp_path / "m.json"
    Mixture(weights={"a": 0.5, "b": 0.5}).save(mix)
    for args in (["fit", "--ratios", R, "--metrics", M, "--target", T,
                  "--method", "linear", "--propose", *FAST],
                 ["export", str(mix), "--format", "hf"],
                 ["entropy", "nosuch"], ["proxy", "train", "--corpus", "nosuch"], ["bench", "moe"]):
        for out, said in ((f"{tmp_path}/outdir/", "outdir/ names a folder (it ends with '/', '.' or '..')"),
                          (f"{tmp_path}/outdir/.", "outdir/. names a folder"),
                          ("-", "'-' is not stdout here")):
            capsys.readouterr()
            assert run_cli([*args, "--out", out]) == 2, args
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and said in err[0], err
            assert err[0].startswith("error: Invalid value for '--out'"), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json"]


def test_fit_takes_candidates_as_counts_are_written(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from mixopt.cli.common import parse_candidates

    assert parse_candidates("1e5") == parse_candidates("100k") == 100_000  # "1e6" was "not a valid integer"
    args = ["fit", "--ratios", R, "--metrics", M, "--target", T, "--method", "linear", "--propose",
            "--out", str(tmp_path / "m.json")]
    assert run_cli([*args, "--candidates", "2.5k", "--top-k", "16"]) == 0
    capsys.readouterr()
    bad([*args, "--candidates", "0.5"], capsys, "'0.5' is not a whole number of candidates ≥ 1")


def test_a_flat_model_is_said_once_with_its_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """fit --propose gives the flat-model note a search gives (it had given none), once: the top-k
    proposer's own warning had been said too, and a misfit note that only restated it."""
    ratios, metrics, out = tmp_path / "r.csv", tmp_path / "m.csv", tmp_path / "m.json"
    ratios.write_text("index,a,b\n1,0.5,0.5\n2,0.2,0.8\n3,0.7,0.3\n")
    metrics.write_text("index,loss\n1,3.0\n2,3.1\n3,2.9\n")
    assert run_cli(["fit", "--ratios", str(ratios), "--metrics", str(metrics), "--target", "loss", "--method",
                    "regmix", "--propose", "--out", str(out), *FAST]) == 0
    err = capsys.readouterr().err
    assert err.count("predicts the same value") == 1 and "fits its own runs poorly" not in err
    (note,) = Mixture.load(out).meta["notes"]
    assert note.startswith("the regmix model predicts the same value for every candidate mixture (too few "
                           "runs: 3); its proposal is arbitrary")


def test_a_scikit_learn_regressor_named_as_module_class_is_a_method(tmp_path: Path, capsys,  # noqa: ANN001
                                                                    monkeypatch) -> None:  # noqa: ANN001
    """`--method module:Class` takes any scikit-learn regressor (a library's, or one next to where the
    command runs), as --evaluator takes a function: cross-validated, and proposed by top-k."""
    assert run_cli(["fit", "--ratios", R, "--metrics", M, "--target", T, "--method",
                    "sklearn.neighbors:KNeighborsRegressor", "--cv", "3", "--json"]) == 0
    cv = json.loads(capsys.readouterr().out)["cv"]
    assert 0.5 < cv["spearman"] < 1

    # a class of the user's own, whose predict takes no return_std (the proposal asks for one)
    (tmp_path / "myfit.py").write_text(
        "import numpy as np\n"
        "from sklearn.base import BaseEstimator, RegressorMixin\n"
        "from sklearn.linear_model import Ridge\n"
        "class Quad(RegressorMixin, BaseEstimator):\n"
        "    def __init__(self, alpha=1e-3):\n"
        "        self.alpha = alpha\n"
        "    def fit(self, X, y):\n"
        "        self.m_ = Ridge(alpha=self.alpha).fit(np.hstack([X, X ** 2]), y)\n"
        "        return self\n"
        "    def predict(self, X):\n"
        "        return self.m_.predict(np.hstack([X, X ** 2]))\n"
        "not_a_class = 3\n"
        "class NoParams:\n"
        "    def fit(self, X, y): return self\n"
        "    def predict(self, X): return X[:, 0]\n")
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "m.json"
    assert run_cli(["fit", "--ratios", R, "--metrics", M, "--target", T, "--method", "myfit:Quad",
                    "--propose", "--out", str(out), *FAST]) == 0
    capsys.readouterr()
    mix = json.loads(out.read_text())
    assert mix["method"] == "myfit:Quad" and abs(sum(mix["weights"].values()) - 1) < 1e-9

    # scikit-learn's own regressors whose predict takes **params only (metadata routing): no std asked
    for method in ("sklearn.compose:TransformedTargetRegressor", "sklearn.ensemble:BaggingRegressor"):
        assert run_cli(["fit", "--ratios", R, "--metrics", M, "--target", T, "--method", method,
                        "--propose", "--out", str(out), *FAST]) == 0, method
        capsys.readouterr()
        assert json.loads(out.read_text())["method"] == method

    for method, said in (("sklearn.ensemble:VotingRegressor",
                          "VotingRegressor: the class cannot be made with its defaults"),
                         ("myfit:not_a_class", "--method myfit:not_a_class: not_a_class is not a class; "
                                               "name a scikit-learn regressor class"),
                         ("myfit:NoParams", "NoParams is a class without get_params"),
                         ("myfit:Nope", "method module 'myfit' has no 'Nope'"),
                         ("nosuchmodule:X", "cannot import method module 'nosuchmodule'"),
                         ("regmx", "method 'regmx' is unknown; choose one of auto, bimix")):
        assert run_cli(["fit", "--ratios", R, "--metrics", M, "--target", T, "--method", method,
                        "--cv", "3"]) == 2, method
        assert said in capsys.readouterr().err, method


def test_made_differently_names_the_code_not_the_command() -> None:
    from mixopt.mixture import made_by, made_differently

    now = made_by()
    assert made_differently(now, now) == [] and made_differently(None, now) == []  # older records: none
    before = {**now, "command": "mixopt train …", "revision": "abc123",
              "versions": {**now["versions"], "numpy": "1.0.0", "gone": "1"}}
    said = made_differently(before, {**now, "revision": "def456"})
    assert said == ["mixopt revision abc123, now def456", f"numpy 1.0.0, now {now['versions']['numpy']}"]
    assert made_differently({**now, "revision": None}, {**now, "revision": "x"}) == []  # a wheel's: unknown


def test_a_mixture_says_what_made_it(tmp_path: Path, monkeypatch) -> None:
    """A QA pass: a mixture named only mixopt's version (which every commit of a clone shares), no
    library versions, no command and no contents of the tables it was fitted on."""
    import hashlib
    import shutil
    import subprocess

    from mixopt.mixture import _revision, made_by

    out = tmp_path / "m.json"
    assert run_cli(["fit", "--ratios", R, "--metrics", M, "--target", T, "--method", "linear",
                    "--propose", "--out", str(out), *FAST]) == 0
    prov = json.loads(out.read_text())["provenance"]
    assert prov["command"] == (f"mixopt fit --ratios {R} --metrics {M} --target {T} --method linear "
                               f"--propose --out {out} {' '.join(FAST)}")
    assert {"python", "numpy", "lightgbm", "torch", "scikit-learn"} <= set(prov["versions"])
    assert "revision" in prov and prov["mixopt_version"]
    assert prov["tables_sha256"]["ratios"] == hashlib.sha256(Path(R).read_bytes()).hexdigest()
    Mixture.load(out)  # the schema takes them
    assert made_by()["command"] is None  # library use: no command line of mixopt's

    # the checksum is of the table as read, not as it is when the mixture is written (a review)
    from mixopt.fit import on_tables as api

    ratios = tmp_path / "ratios.csv"
    ratios.write_bytes(Path(R).read_bytes())
    real_save = api._save_mixture

    def rewritten_meanwhile(*a, **kw):  # noqa: ANN002, ANN003, ANN202
        with open(ratios, "a") as fh:
            fh.write("\n")
        return real_save(*a, **kw)

    monkeypatch.setattr(api, "_save_mixture", rewritten_meanwhile)
    assert run_cli(["fit", "--ratios", str(ratios), "--metrics", M, "--target", T, "--method", "linear",
                    "--propose", "--out", str(out), *FAST]) == 0
    again = json.loads(out.read_text())["provenance"]["tables_sha256"]
    now = hashlib.sha256(ratios.read_bytes()).hexdigest()
    assert again["ratios"] == prov["tables_sha256"]["ratios"] != now

    # the revision of a clone, asked without git's index lock and of this clone whatever GIT_DIR says
    repo = Path(__file__).resolve().parent.parent
    if (repo / ".git").exists() and shutil.which("git"):
        calls: list = []
        real = subprocess.run
        monkeypatch.setenv("GIT_DIR", str(tmp_path / "elsewhere.git"))
        monkeypatch.setattr(subprocess, "run", lambda cmd, **kw: calls.append((cmd, kw)) or real(cmd, **kw))
        _revision.cache_clear()
        try:
            rev = _revision()
        finally:
            _revision.cache_clear()
        assert rev and calls and all("--dirty" not in cmd for cmd, _ in calls)
        assert all("GIT_DIR" not in kw["env"] and kw["env"]["GIT_OPTIONAL_LOCKS"] == "0" for _, kw in calls)


def test_cv_measures_whether_predictive_sds_hold_and_propose_widens_a_narrow_interval(tmp_path: Path,
                                                                                      capsys) -> None:
    """A QA pass: a GP's "95%" interval held 77% of held-out runs when fitted on 32 runs, unsaid."""
    from mixopt.fitters.cv import calibration

    rng = np.random.default_rng(0)
    y, sd = rng.normal(0, 2.0, 4000), np.full(4000, 1.0)  # sds half the truth
    cal = calibration(y, np.zeros_like(y), sd)
    assert cal["sd_scale"] == pytest.approx(2.0, rel=0.05)
    assert cal["within_1sd"] == pytest.approx(0.383, abs=0.03)
    cal = calibration(y, np.zeros_like(y), 2 * sd)
    assert cal["within_1sd"] == pytest.approx(0.683, abs=0.03)
    assert cal["within_95"] == pytest.approx(0.95, abs=0.02)
    assert calibration(y, y, np.zeros_like(y)) is None  # no positive sd: nothing to say

    out = tmp_path / "mix.json"
    assert run_cli(["fit", "--ratios", R, "--metrics", M, "--target", T, "--method", "gp", "--cv", "5",
                    "--propose", "--out", str(out), "--json", *FAST]) == 0
    doc = json.loads(capsys.readouterr().out)
    cal = doc["cv"]["calibration"]
    assert cal["n"] == 64 and 0 < cal["within_1sd"] <= cal["within_95"] <= 1
    # the file keeps --cv's figures, its own evidence of the fit (a QA pass: they were on screen only)
    kept = Mixture.load(out).meta["params"]["cv"]
    assert kept == {k: v for k, v in doc["cv"].items() if k not in ("folds", "calibration")}
    assert kept["k"] == 5 and kept["spearman"] == doc["cv"]["spearman"]
    pred = Mixture.load(out).meta["predicted"]
    from mixopt.fitters.cv import ABOUT_RIGHT

    scale = cal["sd_scale"] if cal["sd_scale"] > ABOUT_RIGHT else 1.0  # never narrowed, nor for noise
    assert pred.get("sd_scale", 1.0) == pytest.approx(scale)
    assert pred["interval"] == pytest.approx([pred["mean"] - 1.96 * scale * pred["std"],
                                              pred["mean"] + 1.96 * scale * pred["std"]])
    assert run_cli(["fit", "--ratios", R, "--metrics", M, "--target", T, "--method", "linear", "--cv", "3",
                    "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["cv"]["calibration"] is None  # no sds, no figures


def test_cv_says_when_the_model_ranks_held_out_runs_near_chance(tmp_path: Path, capsys) -> None:
    """A QA pass: 300 domains and 100 runs cross-validated at Spearman −0.1 to 0.2, with no word."""
    rng = np.random.default_rng(0)
    W = rng.dirichlet(np.ones(40), 30)
    ratios, metrics = tmp_path / "r.csv", tmp_path / "m.csv"
    pl.DataFrame({"index": range(30), **{f"d{j}": W[:, j] for j in range(40)}}).write_csv(ratios)
    pl.DataFrame({"index": range(30), "loss": rng.normal(3, 0.1, 30)}).write_csv(metrics)  # noise alone
    assert run_cli(["fit", "--ratios", str(ratios), "--metrics", str(metrics), "--target", "loss",
                    "--method", "linear", "--cv", "5"]) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert "5-fold cross-validation: the linear model ranks runs it did not see with Spearman" in err
    assert "30 runs over 40 domains are fewer runs than domains" in err


def test_the_printed_proposal_gives_the_widened_interval_beside_the_models_sd(capsys) -> None:
    """A QA pass: the console gave the model's ± sd alone while the JSON's interval was widened."""
    from mixopt.cli.fit import _render_proposal

    _render_proposal({"weights": {"a": 0.6, "b": 0.4}, "predicted": 3.0, "std": 0.05,
                      "interval": [2.8, 3.2], "info": {"sd_scale": 2.04}}, "predicted loss")
    out = " ".join(capsys.readouterr().out.split())
    assert "3.0000 ± 0.0500 (1 sd); 95% interval [2.8000, 3.2000], the sd widened ×2.04" in out


def test_fit_report_marks_a_best_run_outside_the_constraints(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    """A QA pass: with no run inside --fix/--max-weight, fit's note said "no run's mixture is among the
    baselines" while its JSON and report.md listed the best run (outside them) as "best run (203)",
    unmarked, predicted far below the proposal it could not have been."""
    rep, out = tmp_path / "rep", tmp_path / "m.json"
    assert run_cli(["fit", "--ratios", R, "--metrics", M, "--target", T, *FAST, "--propose",
                    "--out", str(out), "--fix", "train_the_pile_arxiv=0.1",
                    "--max-weight", "train_the_pile_pile_cc=0.3", "--report", str(rep), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    best = doc["proposal"]["baselines"]["best_run"]
    assert best["inside_constraints"] is False
    md = (rep / "report.md").read_text()
    assert f"| best run ({best['run_id']}, outside the constraints) | {best['predicted']:.4f} |" in md
    notes = " ".join(doc["proposal"]["notes"])
    assert "among the baselines" not in notes and "listed beside the proposal, is outside them" in notes


def test_fit_report_plots_the_held_out_predictions_and_the_proposal(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    """`fit --report DIR` explains a fit on tables as `report` explains a search: held-out predictions
    against the measured target, the proposal beside the best run and uniform, and report.md."""
    rep, out = tmp_path / "rep", tmp_path / "m.json"
    args = ["fit", "--ratios", R, "--metrics", M, "--target", T, *FAST]
    assert run_cli([*args, "--cv", "4", "--propose", "--out", str(out), "--report", str(rep), "--json",
                    "--min-weight", "0.001"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["report"] == [str(rep / n) for n in ("cv.png", "weights.png", "report.md")]
    md = (rep / "report.md").read_text()
    assert f"| {doc['cv']['spearman']:.4f} |" in md and "## Proposal → `" in md
    best = doc["proposal"]["baselines"]["best_run"]
    # every run has a weight below the floor: the best run is marked as outside the constraints
    assert f"| best run ({best['run_id']}, outside the constraints) | {best['predicted']:.4f} | " \
           f"{best['measured']:.4f} |" in md
    # the options a rerun needs to make the proposal again (only the mixture JSON had kept them)
    settings = md.split("## Settings")[1].split("##")[0]
    assert "- --seed 0\n- --candidates 20000, --top-k 16\n" in settings
    assert "- --min-weight 0.001\n" in settings and "--max-weight" not in settings  # only what was set
    assert all((rep / n).stat().st_size > 1000 for n in ("cv.png", "weights.png"))
    # a report alone of the cross-validation; the folder of an earlier report is replaced whole
    assert run_cli([*args, "--cv", "3", "--report", str(rep)]) == 0
    assert sorted(p.name for p in rep.iterdir()) == ["cv.png", "report.md"]
    assert "report: " in capsys.readouterr().out
    # refused before the fit: nothing to draw, a folder of other files, --out inside it, a file
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    for extra, why in ((["--predict", R, "--out", str(tmp_path / "p.csv")],
                        "--report draws the cross-validation (--cv K) and the proposal (--propose)"),
                       (["--cv", "3", "--report", str(tmp_path / "busy")],
                        "holds other files (notes.txt), and a report replaces its folder whole"),
                       (["--propose", "--out", str(rep / "m.json")], "is inside --report"),
                       (["--cv", "3", "--report", str(tmp_path / "busy" / "notes.txt")], "is a file")):
        report = [] if "--report" in extra else ["--report", str(rep)]
        assert run_cli([*args, *extra, *report]) == 2
        assert why in capsys.readouterr().err
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine" and not (tmp_path / "p.csv").exists()
    # --out inside the folder by a symlink or a "..", which the report would delete with it (a QA pass)
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    for o, r in ((tmp_path / "real" / "m.json", tmp_path / "link"),
                 (tmp_path / "x" / ".." / "real" / "m.json", tmp_path / "real")):
        assert run_cli([*args, "--propose", "--out", str(o), "--report", str(r)]) == 2
        assert "is inside --report" in capsys.readouterr().err
    # a folder named through itself is replaced, not lost; the current folder is no report's
    assert run_cli([*args, "--cv", "3", "--report", str(tmp_path / "real")]) == 0
    assert run_cli([*args, "--cv", "3", "--report", str(tmp_path / "real" / ".." / "real")]) == 0
    assert sorted(p.name for p in (tmp_path / "real").iterdir()) == ["cv.png", "report.md"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".real")]
    import os

    here = os.getcwd()
    try:
        os.chdir(tmp_path / "real")
        assert run_cli([*args, "--cv", "3", "--report", "."]) == 2
    finally:
        os.chdir(here)
    assert "is the current folder or holds it" in capsys.readouterr().err


def test_a_report_escapes_a_pipe_in_a_domain_name():
    """A QA pass: a domain named a|b split its row of report.md's weights table in two cells."""
    from types import SimpleNamespace

    from mixopt.report import _fit_markdown

    w = {"a|b": 0.7, "c": 0.3}
    fit = SimpleNamespace(method="linear", n_excluded=0, target="loss", n_runs=8, domains=("a|b", "c"),
                          reuse=None, cv=None, selection=None, out=None, proposal={"params": {}, "notes": []})
    cands = [{"name": "proposal", "weights": w, "predicted": 1.0, "exported": True},
             {"name": "best run (r|1)", "weights": w, "measured": 1.1}]
    md = _fit_markdown(fit, cands, [], ratios="r.csv", metrics="m.csv")
    assert "| a\\|b | 0.7000 | 0.7000 |" in md and "| best run (r\\|1) |" in md


def test_the_settings_give_a_reused_mixture_as_its_options():
    """A QA pass: fit --report's Settings left out --reuse-mixture and --recompute, so pasting them
    back gave another proposal."""
    from mixopt.report import _settings_markdown

    reuse = {"name": "grp", "source": "my mix.json", "ratios": {"a": 0.5, "b": 0.5}, "dropped": [],
             "recompute": ["a"]}
    lines = _settings_markdown({"seed": 3, "proposer": {}, "reuse": reuse})
    assert "- --reuse-mixture 'grp=my mix.json' --recompute a" in lines


def test_a_target_of_mean_with_spaces_is_the_mean(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A review: `--target " mean"` (search reads it as the mean) was read as a list naming 'mean', and
    refused: "'mean' (every column) cannot be combined with columns", though it named nothing else."""
    ratios, metrics = tmp_path / "r.csv", tmp_path / "m.csv"
    ratios.write_text("index,a,b\n1,0.2,0.8\n2,0.5,0.5\n3,0.7,0.3\n4,0.9,0.1\n")
    metrics.write_text("index,l1,l2\n1,3.0,2.0\n2,2.5,2.2\n3,2.2,2.6\n4,2.0,3.1\n")
    out = tmp_path / "m.json"
    assert run_cli(["fit", "--ratios", str(ratios), "--metrics", str(metrics), "--target", " mean ",
                    "--method", "linear", "--propose", "--out", str(out)]) == 0, capsys.readouterr().err
    assert json.loads(out.read_text())["params"]["target"] == "mean"
