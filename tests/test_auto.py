"""``auto``: it picks the law that generated the data, never fits on a test fold, prints its CV table
through ``mixopt fit``; and the law methods work end to end through the CLI, bad input included."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.base import BaseEstimator, RegressorMixin

from mixopt.cli import run_cli
from mixopt.errors import MixoptError
from mixopt.fitters.auto import AutoFitter
from mixopt.fitters.registry import FITTERS

LAWS = ("linear", "loglinear", "bimix", "gp")
RUNS = Path(__file__).parent / "data" / "runs" / "regmix-pile-1m"
TARGET = "metric/the_pile_pile_cc_val_loss"
FIT = [
    "fit",
    "--ratios",
    str(RUNS / "train_mixture_1m.csv"),
    "--metrics",
    str(RUNS / "train_pile_loss_1m.csv"),
    "--target",
    TARGET,
]


def swarm(n: int, k: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).dirichlet(np.ones(k), n)


def test_auto_picks_the_log_linear_law_on_its_data() -> None:
    X = swarm(40)
    y = 1.0 + np.exp(X @ np.array([-2.0, 0.7, 0.4]))
    m = AutoFitter(candidates=LAWS, ensemble=False).fit(X, y)
    assert m.chosen_ == "loglinear"
    assert {r["name"] for r in m.cv_table_} == set(LAWS)


def test_auto_picks_bimix_on_its_data() -> None:
    X = swarm(40, seed=1)
    y = (np.array([0.6, 0.9, 0.4]) * (X + 1e-3) ** -np.array([0.25, 0.15, 0.35])).sum(axis=1)
    m = AutoFitter(candidates=LAWS).fit(X, y)
    assert m.chosen_ == "bimix"


class Spy(RegressorMixin, BaseEstimator):
    """Records the run ids (first column of X) of every fit and every predict."""

    fits: list[set[float]] = []
    predicts: list[set[float]] = []

    def __init__(self, *, random_state: int | None = 0) -> None:
        self.random_state = random_state

    def fit(self, X: np.ndarray, y: np.ndarray) -> Spy:
        Spy.fits.append(set(np.asarray(X)[:, 0].tolist()))
        self.mean_ = float(np.mean(y))
        self.coef_ = np.linalg.lstsq(np.column_stack([X, np.ones(len(X))]), y, rcond=None)[0]
        return self

    def predict(self, X: np.ndarray, return_std: bool = False):  # noqa: ANN201
        Spy.predicts.append(set(np.asarray(X)[:, 0].tolist()))
        p = np.column_stack([X, np.ones(len(X))]) @ self.coef_
        return (p, None) if return_std else p


def test_cross_validation_never_fits_on_a_test_fold(monkeypatch: pytest.MonkeyPatch) -> None:
    from sklearn.model_selection import KFold

    monkeypatch.setitem(FITTERS, "spy", f"{__name__}:Spy")
    X = swarm(30, seed=2)
    X[:, 0] = np.arange(30) / 1000  # the first column names the run
    y = X @ np.array([1.0, 2.0, 3.0])
    for train, test in KFold(4, shuffle=True, random_state=0).split(X):
        Spy.fits, Spy.predicts = [], []
        AutoFitter(candidates=("spy",), k=5).fit(X[train], y[train])
        outer_test = set(X[test, 0].tolist())
        assert len(Spy.fits) == 6  # 5 inner folds + the refit on all training runs
        for seen in Spy.fits:
            assert not seen & outer_test  # the outer test fold is never fitted on
        inner = Spy.fits[:5]
        for fitted, predicted in zip(inner, Spy.predicts[:5], strict=True):
            assert not fitted & predicted  # each inner fold predicts only runs it did not see
        assert set().union(*Spy.predicts[:5]) == set(X[train, 0].tolist())


def test_auto_skips_laws_with_too_many_parameters_and_explains() -> None:
    X = swarm(12, k=8, seed=3)
    y = X @ np.arange(8.0)
    m = AutoFitter(candidates=("bimix", "linear")).fit(X, y)
    rows = {r["name"]: r for r in m.cv_table_}
    assert "add runs" in rows["bimix"]["error"] and m.chosen_ == "linear"
    assert "auto" not in rows["bimix"]["error"]  # auto itself is what runs
    # every row has the same keys, a failed candidate's figures null (for scripts reading --json)
    assert len({tuple(r) for r in m.cv_table_}) == 1 and rows["bimix"]["spearman"] is None
    with_ensemble = AutoFitter(candidates=("linear", "gp", "loglinear")).fit(X, y).cv_table_
    assert len({tuple(r) for r in with_ensemble}) == 1 and with_ensemble[-1]["name"].startswith("mean(")
    with pytest.raises(MixoptError, match="no candidate could be cross-validated"):
        AutoFitter(candidates=("bimix",)).fit(X, y)
    # a misspelt candidate had been an error row, left out without a word (a QA pass)
    with pytest.raises(MixoptError, match=r"auto: candidate\(s\) 'nope', 'gpp', 'auto' are not fitters auto "
                                          r"can try; use some of bimix, gp, linear"):
        AutoFitter(candidates=("linear", "nope", "gpp", "auto")).fit(X, y)
    with pytest.raises(MixoptError, match="at least 3 runs"):
        AutoFitter().fit(X[:2], y[:2])


AUTO_ARGS = [
    *FIT,
    "--method",
    "auto",
    "--json",
]


def test_fit_auto_prints_its_cv_table(
    workspace: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two cheap candidates keep this fast; the default list is checked by the slow test below.
    monkeypatch.setitem(AutoFitter.__init__.__kwdefaults__, "candidates", ("linear", "mixing-law"))
    assert run_cli(AUTO_ARGS) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    names = [r["name"] for r in out["selection"]]
    assert names[:2] == ["linear", "mixing-law"] and names[2].startswith("mean(")
    assert sum(r["chosen"] for r in out["selection"]) == 1
    assert all(r["spearman"] > 0.5 for r in out["selection"])
    chosen = next(r["name"] for r in out["selection"] if r["chosen"])
    monkeypatch.setenv("COLUMNS", "80")
    assert run_cli(AUTO_ARGS[:-1]) == 0
    table = capsys.readouterr().out
    assert "its own 5-fold cross-validation of every candidate" in " ".join(table.split())
    # Whole at 80 columns: every heading and the tick of the chosen candidate; the choice said in words.
    assert all(len(line) <= 80 for line in table.splitlines())
    assert all(h in table for h in ("Spearman", "Pearson", "rel. err", "fit s", "chosen"))
    assert table.count("✓") == 1 and f"auto chose {chosen}: the best Spearman" in table
    # with --cv, the second Spearman is of the whole choice (nested), and says so (a QA pass)
    monkeypatch.setitem(AutoFitter.__init__.__kwdefaults__, "candidates", ("linear",))
    assert run_cli([*AUTO_ARGS[:-1], "--cv", "3"]) == 0
    said = " ".join(capsys.readouterr().out.split())
    assert "3-fold cross-validation of auto's whole choice, made again in each fold" in said
    assert "scores each candidate on the runs the choice was made on, which flatters the one chosen" in said


@pytest.mark.slow
def test_fit_auto_default_candidates(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(AUTO_ARGS) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"loglinear", "mixing-law", "bimix", "gp", "regmix", "linear"} <= {
        r["name"] for r in out["selection"]
    }


@pytest.mark.parametrize("method", ["loglinear", "mixing-law", "bimix"])
def test_fit_propose_with_a_law_writes_an_exact_mixture(
    method: str, workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = workspace / "mix.json"
    args = [
        *FIT,
        "--method",
        method,
        "--propose",
        "--out",
        str(out),
        "--max-weight",
        "train_the_pile_pile_cc=0.3",
        "--min-weight",
        "0.01",
        "--json",
    ]
    assert run_cli(args) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (
        report["proposal"]["info"]["solver"] == "SLSQP" and report["proposal"]["info"]["kkt_residual"] < 1e-5
    )
    mix = json.loads(out.read_text())
    w = mix["weights"]
    assert abs(sum(w.values()) - 1) < 1e-9 and w["train_the_pile_pile_cc"] <= 0.3 + 1e-9
    assert min(w.values()) >= 0.01 - 1e-12
    assert mix["method"] == method


def test_kl_pull_is_recorded_explained_and_can_be_turned_off(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The exact proposer's KL term (Olmix's λ = 0.1) can leave the proposal predicted worse than the
    best run: the mixture JSON records λ, a note says why, and --kl 0 solves the law alone."""
    out = workspace / "mix.json"
    base = [
        *FIT,
        "--method",
        "loglinear",
        "--propose",
        "--out",
        str(out),
    ]
    assert run_cli(base) == 0
    mix = json.loads(out.read_text())
    assert mix["params"]["proposer"]["kl"] == 0.1 and mix["params"]["proposer"]["solver"] == "SLSQP"
    assert mix["params"]["constraints"]["min_weight"] == 0.0
    pulled = mix["predicted"]["mean"]
    best = mix["baselines"]["best_run"]["predicted"]
    assert pulled > best  # on this table the pull towards the prior costs predicted loss
    assert any("--kl 0" in n for n in mix["notes"]) and "--kl 0" in capsys.readouterr().err
    assert run_cli([*base, "--kl", "0"]) == 0
    free = json.loads(out.read_text())
    assert free["params"]["proposer"]["kl"] == 0.0 and not any("--kl" in n for n in free["notes"])
    assert free["predicted"]["mean"] <= min(pulled, best) + 1e-9  # the law's own optimum
    # no weight is left as dust (1e-20): a domain is in the mixture or it is not
    assert all(w == 0 or w > 1e-12 for w in free["weights"].values())
    assert mix["params"]["prior"] == "uniform (no token counts)"
    # --tokens: the pull goes towards the token shares (Olmix's natural mixture) instead
    domains = list(mix["weights"])
    heavy = domains[0]
    tokens = ",".join(f"{d}={1e12 if d == heavy else 1e6:g}" for d in domains)
    assert run_cli([*base, "--kl", "10", "--tokens", tokens]) == 0
    natural = json.loads(out.read_text())
    assert natural["params"]["prior"] == "token shares" and natural["weights"][heavy] > 0.5
    assert run_cli([*base, "--kl", "10"]) == 0
    assert json.loads(out.read_text())["weights"][heavy] < 0.5
    capsys.readouterr()
    assert run_cli([*base, "--kl", "-1"]) == 2 and "must be ≥ 0" in capsys.readouterr().err
    gp = [*base[:8], "gp", *base[9:]]
    assert (
        run_cli([*gp, "--kl", "0"]) == 2
        and "--kl applies to the methods solved exactly" in capsys.readouterr().err
    )


def test_law_bad_inputs_through_the_cli(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = FIT
    # Infeasible constraints for the exact solver: the conflicting bounds are named.
    assert (
        run_cli(
            [
                *base,
                "--method",
                "loglinear",
                "--propose",
                "--out",
                str(workspace / "m.json"),
                "--min-weight",
                "0.1",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "the lower bounds sum to 1.7 > 1 (--min-weight 0.1 × 17 domain(s))" in err
    # Fewer runs than parameters: a clear error suggesting a simpler method or more runs.
    few = workspace / "few.csv"
    few_m = workspace / "few_m.csv"
    lines = (RUNS / "train_mixture_1m.csv").read_text().splitlines()
    few.write_text("\n".join(lines[:11]) + "\n")
    few_m.write_text("\n".join((RUNS / "train_pile_loss_1m.csv").read_text().splitlines()[:11]) + "\n")
    assert (
        run_cli(
            [
                "fit",
                "--ratios",
                str(few),
                "--metrics",
                str(few_m),
                "--target",
                TARGET,
                "--method",
                "mixing-law",
                "--cv",
                "2",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "mixing-law has 18 parameters" in err
    assert "use a method with fewer parameters (log-ridge, gp or auto)" in err
    assert run_cli([*base, "--fidelity-law", "--method", "loglinear"]) == 2
    assert "--fidelity-law reads the run store" in capsys.readouterr().err


def test_fit_report_says_per_metric_only_when_auto_fitted_its_laws_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mixopt.fitters.auto as auto_mod
    from mixopt.fit.on_tables import FitConfig, fit_tables

    monkeypatch.setitem(AutoFitter.__init__.__kwdefaults__, "candidates", ("linear", "loglinear"))
    X = swarm(24, seed=3)
    rng = np.random.default_rng(3)
    cols = {f"m{j}": 2 + np.exp(X @ rng.normal(size=3)) for j in range(3)}
    ratios, metrics = tmp_path / "r.csv", tmp_path / "m.csv"
    ratios.write_text("index,a,b,c\n" + "".join(f"{i},{','.join(map(str, x))}\n" for i, x in enumerate(X)))
    metrics.write_text("index," + ",".join(cols) + "\n" + "".join(
        f"{i},{','.join(str(c[i]) for c in cols.values())}\n" for i in range(len(X))))
    config = FitConfig(ratios=ratios, metrics=metrics, target="mean", method="auto", cv=None)
    assert fit_tables(config).per_metric == 3
    # more metric columns than auto fits one law each: its laws fit the mean, and the report says none
    monkeypatch.setattr(auto_mod, "MAX_PER_METRIC", 2)
    report = fit_tables(config)
    assert report.per_metric == 0 and not any(r.get("per_metric") for r in report.selection)


def test_a_chosen_members_few_runs_warning_gives_autos_advice() -> None:
    """linear warns 'use … gp or auto' on few runs; chosen by auto, that advice would point at itself."""
    import warnings

    from mixopt.errors import FewRunsWarning

    rng = np.random.default_rng(0)
    X = rng.dirichlet(np.ones(4), 5)
    y = X @ np.array([1.0, 2.0, 3.0, 4.0]) + rng.normal(0, 0.01, 5)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        AutoFitter(candidates=("linear",)).fit(X, y)
    said = [str(w.message) for w in caught if issubclass(w.category, FewRunsWarning)]
    assert len(said) == 1 and "auto chose it by cross-validation over 5 runs" in said[0]
    assert "or auto)" not in said[0]


def test_auto_measures_how_its_chosen_models_sds_held_out_of_fold() -> None:
    """auto's cross-validation has the chosen model's out-of-fold sds: a proposal's interval is
    widened by them where they were too narrow (search and fit, without --cv)."""
    from mixopt.fitters.cv import calibration, cross_validate

    X = swarm(30, k=3, seed=5)
    y = np.log(X + 0.05) @ np.array([-0.3, -0.1, -0.2]) + np.random.default_rng(1).normal(0, 0.02, 30)
    m = AutoFitter(candidates=("gp",), ensemble=False, random_state=0).fit(X, y)
    res = cross_validate(m._make("gp"), X, y, k=m.cv_folds_, seed=0, folds_option=None)
    assert m.calibration_ == pytest.approx(calibration(y, res.pred, res.std))
    assert AutoFitter(candidates=("linear",)).fit(X, y).calibration_ is None  # no sds: no figures

    from mixopt.proposers.proposal import Proposal, widen

    prop = Proposal(weights=np.ones(3) / 3, predicted=1.0, std=0.1, interval=(0.804, 1.196))
    wide, note = widen(prop, {**m.calibration_, "sd_scale": 2.0}, "auto's cross-validation")
    assert wide.interval == pytest.approx((1 - 0.392, 1 + 0.392)) and wide.info["sd_scale"] == 2.0
    assert "auto's cross-validation" in note and "widened ×2.00" in note
    assert widen(prop, {**m.calibration_, "sd_scale": 0.5}, "x") == (prop, None)  # never narrowed
    assert widen(prop, {**m.calibration_, "sd_scale": 1.1}, "x") == (prop, None)  # nor for √(mean z²)'s noise
