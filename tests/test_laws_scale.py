"""``mixopt fit --fidelity-law``: proxy runs of the same mixtures at three rungs, with checkpoint
histories, read from the run store, extrapolated by step and size laws, then the mixing law."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mixopt.errors import MixoptError, MixoptWarning
from mixopt.fit.across_scale import ScaleFitConfig, curves_from_store, fit_across_scale
from mixopt.mixture import EVIDENCE_KEYS
from mixopt.proxy.rungs import load_rung
from mixopt.schedule import lr_areas
from mixopt.store import RunRecord, RunStore, fidelity_key

DOMAINS = ("a", "b", "c")
T = np.array([-1.2, 0.5, 0.3])


def truth(r: np.ndarray, N: float, D: float) -> np.ndarray:
    """Per-domain losses: a mixture-dependent floor, a size term and a data term."""
    base = 2.0 + np.exp(r @ T) + np.array([0.0, 0.3, -0.2])
    return base + 40.0 * N**-0.3 + 60.0 * D**-0.5


def fill_store(
    path: Path, rungs: tuple[str, ...] = ("xs", "s", "m"), n: int = 10, law: Any = truth,
    annealing: float | None = None, rung_hash: str | None = None,
) -> RunStore:
    """Runs of ``n`` mixtures at each rung, their per-domain losses by ``law(r, N, D)`` at each checkpoint.

    By default the runs come from a user's evaluator whose learning rates are unknown, and D is the
    tokens so far. With ``annealing`` they are mixopt's proxy runs on their rungs' schedules: D is the
    forward area in tokens at the peak rate, and each loss has ``− annealing·S2`` (the law with
    learning-rate annealing, :func:`annealed_truth`).
    """
    store = RunStore(path)
    rng = np.random.default_rng(0)
    mixtures = rng.dirichlet(np.ones(3), n)
    recs = []
    for rung in rungs:
        R = load_rung(rung)
        N = R.non_embedding_params()
        fid = {"rung": rung, "corpus": "synthetic"}
        s1, s2 = lr_areas(R.lr_schedule(), R.steps, np.array(R.eval_steps()))
        for i, r in enumerate(mixtures):
            hist = []
            for k, step in enumerate(R.eval_steps()):
                if annealing is None:
                    losses = law(r, N, step * R.tokens_per_step)
                else:
                    losses = law(r, N, s1[k] * R.tokens_per_step) - annealing * s2[k]
                hist.append(
                    {
                        "step": step,
                        "tokens": step * R.tokens_per_step,
                        **{f"loss/{d}": float(v) for d, v in zip(DOMAINS, losses, strict=True)},
                    }
                )
            recs.append(
                RunRecord(
                    run_id=f"{rung}-{i}",
                    weights=dict(zip(DOMAINS, r.tolist(), strict=True)),
                    fidelity=fid,
                    fidelity_key=fidelity_key({**fid, **({"rung_hash": rung_hash} if rung_hash else {})},
                                              "proxy" if annealing is not None else "tests:evaluate"),
                    status="ok",
                    search_id=f"sw-{rung}",
                    metrics={k: v for k, v in hist[-1].items() if k.startswith("loss/")},
                    history=hist,
                )
            )
    store.add(recs)
    return store


def test_curves_come_from_the_store(tmp_path: Path) -> None:
    store = fill_store(tmp_path / "runs.sqlite")
    domains, curves = curves_from_store(store)
    assert domains == list(DOMAINS) and len(curves) == 30
    assert {c.size for c in curves} == {float(load_rung(r).non_embedding_params()) for r in ("xs", "s", "m")}
    assert len(curves[0].tokens) == 4 and "loss/a" in curves[0].losses
    # Another evaluator's runs of the same mixtures are another landscape: not pooled into one law
    # (a QA pass: --fidelity-law over two searches fitted neither), nor are another corpus's.
    other = [dataclasses.replace(r, run_id=f"other-{r.run_id}", search_id="other",
                                 fidelity_key=r.fidelity_key.replace("tests:evaluate", "tests:other"))
             for r in store.runs(search_id="sw-xs")]
    store.add(other)
    with pytest.raises(MixoptError, match=r"the runs come from 2 evaluators \(tests:evaluate, tests:other\); "
                                          r"a law across scale fits the runs of one: name its searches"):
        curves_from_store(store)
    assert len(curves_from_store(store, ["sw-xs", "sw-s", "sw-m"])[1]) == 30


def test_fit_across_scale_predicts_the_target_scale(tmp_path: Path) -> None:
    store = fill_store(tmp_path / "runs.sqlite")
    N, D = 2e7, 2e7
    res = fit_across_scale(
        ScaleFitConfig(store=str(store.path), target_tokens=D, target_size=N, out=tmp_path / "mix.json")
    )
    assert res["n_mixtures"] == 10 and len(res["sizes"]) == 3
    assert all(abs(law["beta"] - 0.3) < 0.02 for law in res["laws"]["size"].values())
    # The proposal's predicted objective is close to the true mean loss of that mixture at (N, D).
    w = np.array([res["proposal"]["weights"][d] for d in DOMAINS])
    true_obj = float(truth(w, N, D).mean())
    assert abs(res["proposal"]["predicted"] - true_obj) / true_obj < 0.01
    mix = json.loads((tmp_path / "mix.json").read_text())
    assert list(mix) == ["schema", "weights", *EVIDENCE_KEYS, "created"]  # as a search's
    assert mix["measured"] is None and mix["tokens"] == {"target_tokens": None}
    assert mix["params"]["fidelity_law"] is True and abs(sum(mix["weights"].values()) - 1) < 1e-9


def test_fidelity_law_cli(tmp_path: Path, workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mixopt.cli import main

    store = fill_store(tmp_path / "runs.sqlite")
    out = tmp_path / "mix.json"
    args = [
        "fit",
        "--fidelity-law",
        "--store",
        str(store.path),
        "--target-size",
        "2e7",
        "--method",
        "loglinear",
        "--search",
        "sw-xs",
        "--search",
        "sw-s",
        "--search",
        "sw-m",
        "--max-weight",
        "a=0.5",
        "--out",
        str(out),
    ]
    main(args)  # returns on success
    text = capsys.readouterr().out
    assert "size law: β" in text and "(all metrics)" in text and "wrote" in text
    assert json.loads(out.read_text())["weights"]["a"] <= 0.5 + 1e-9
    # Two rungs and no exponent: the size law cannot be fitted; the error says what to do.
    with pytest.raises(SystemExit) as exc:
        main(
            [
                "fit",
                "--fidelity-law",
                "--store",
                str(store.path),
                "--target-size",
                "2e7",
                "--search",
                "sw-xs",
                "--search",
                "sw-s",
            ]
        )
    assert exc.value.code == 2
    assert "or fix the size law's exponent with --size-exponent" in capsys.readouterr().err


def test_fidelity_law_without_a_target_scale_says_nothing_is_extrapolated(
    tmp_path: Path, workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No --target-size/--target-tokens: a warning and an honest title; --method regmix is kept."""
    from mixopt.cli import main

    store = fill_store(tmp_path / "runs.sqlite")
    main(["fit", "--fidelity-law", "--store", str(store.path), "--json"])
    captured = capsys.readouterr()
    res = json.loads(captured.out)
    assert "with nothing extrapolated" in " ".join(captured.err.split())
    assert res["method"] == "mixing-law" and res["laws"]["size"] == {} and len(res["sizes"]) == 1
    assert res["n_runs"] == res["n_mixtures"] == 10  # the largest rung's runs, not all 30
    main(["fit", "--fidelity-law", "--store", str(store.path), "--method", "regmix", "--target-size", "2e7"])
    out = capsys.readouterr().out
    assert out.startswith("regmix on 10 mixtures (30 runs")
    assert "extrapolated to the last checkpoint's tokens" in " ".join(out.split())
    main(["fit", "--fidelity-law", "--store", str(store.path), "--method", "gp", "--target-size", "2e7"])
    out = " ".join(capsys.readouterr().out.split())  # the GP's uncertainty comes with its proposal
    assert re.search(r"predicted objective at target scale: [0-9.]+ ± [0-9.]+ \(1 sd\)", out), out


def test_fidelity_law_caps_repetition_with_the_searches_tokens(tmp_path: Path) -> None:
    store = fill_store(tmp_path / "runs.sqlite")
    cfg = {"store": str(store.path), "target_tokens": 2e7, "target_size": 2e7}
    # No search recorded the domains' tokens: a cap cannot be computed, and the error says why.
    with pytest.raises(MixoptError, match="--max-epochs needs each domain's tokens"):
        fit_across_scale(ScaleFitConfig(**cfg, max_epochs=1.0))
    tokens = {"a": 1e6, "b": 5e7, "c": 5e7}  # a is small: at 2e7 tokens, 1 epoch allows 5% of it
    store.create_search("sw-m", {"method": "mixing-law"}, {"space": {"tokens": tokens}})
    free = fit_across_scale(ScaleFitConfig(**cfg, out=tmp_path / "free.json"))
    assert free["proposal"]["weights"]["a"] > 0.05  # the law favours a (its exponent is -1.2)
    assert any("repeats a 16.6 times" in n for n in free["notes"])
    capped = fit_across_scale(ScaleFitConfig(**cfg, max_epochs=1.0, out=tmp_path / "capped.json"))
    assert capped["proposal"]["weights"]["a"] <= 0.05 + 1e-9
    # nothing said of the proposal; of its baselines, that the cap moved them, as a search says it
    assert [n.split(":")[0].split(",")[0] for n in capped["notes"]] == [
        "the uniform baseline is moved into the constraints",
        "the temperature baseline is moved into the constraints", "the best run"]  # natural has a at 1%
    assert capped["baselines"]["uniform"]["weights"]["a"] == pytest.approx(0.05)
    mix = json.loads((tmp_path / "capped.json").read_text())
    assert mix["tokens"]["target_tokens"] == 2e7 and mix["tokens"]["epochs"]["a"] <= 1 + 1e-9
    with pytest.raises(MixoptError, match="give --target-tokens"):
        fit_across_scale(ScaleFitConfig(store=str(store.path), target_size=2e7, max_epochs=1.0))
    # the runs' searches disagree: runs of two corpora (a search of other runs is not read at all)
    store.create_search("elsewhere", {"method": "mixing-law"}, {"space": {"tokens": {**tokens, "a": 9e9}}})
    fit_across_scale(ScaleFitConfig(**cfg, max_epochs=1.0))
    store.create_search("sw-s", {"method": "mixing-law"}, {"space": {"tokens": {**tokens, "a": 9e9}}})
    with pytest.raises(MixoptError, match=r"recorded different token counts per domain \(sw-m, sw-s\)"):
        fit_across_scale(ScaleFitConfig(**cfg, max_epochs=1.0))


def test_a_size_law_over_rungs_of_different_budgets_is_warned_of(tmp_path: Path) -> None:
    store = fill_store(tmp_path / "runs.sqlite")  # the rungs train different token counts
    with pytest.warns(MixoptWarning, match=r"different token counts \(.*\), so the size law mixes"):
        fit_across_scale(ScaleFitConfig(store=str(store.path), target_size=2e7))
    with warnings.catch_warnings():
        warnings.simplefilter("error", MixoptWarning)
        fit_across_scale(ScaleFitConfig(store=str(store.path), target_size=2e7, target_tokens=2e7))


def test_fidelity_law_names_a_bad_metric_or_search_as_such(tmp_path: Path) -> None:
    store = fill_store(tmp_path / "runs.sqlite")
    with pytest.raises(MixoptError, match="objective metric 'acc' is unknown"):
        fit_across_scale(ScaleFitConfig(store=str(store.path), metric="acc"))
    with pytest.raises(MixoptError, match="no search named 'nosuch'"):
        fit_across_scale(ScaleFitConfig(store=str(store.path), searches=("sw-xs", "nosuch")))


def _add_ladder_runs(store: RunStore, mixtures: np.ndarray) -> None:
    """Runs of ``mixtures`` at rungs xs and s, each with the law's losses at every checkpoint."""
    recs = []
    for rung in ("xs", "s"):
        R = load_rung(rung)
        fid = {"rung": rung, "corpus": "synthetic"}
        for i, r in enumerate(mixtures):
            hist = []
            for step in R.eval_steps():
                D = step * R.tokens_per_step
                losses = truth(r, R.non_embedding_params(), D)
                hist.append({"step": step, "tokens": D,
                             **{f"loss/{d}": float(v) for d, v in zip(DOMAINS, losses, strict=True)}})
            recs.append(RunRecord(run_id=f"{rung}-{i}", weights=dict(zip(DOMAINS, r.tolist(), strict=True)),
                                  fidelity=fid, fidelity_key=fidelity_key(fid), status="ok", search_id=rung,
                                  metrics={k: v for k, v in hist[-1].items() if k.startswith("loss/")},
                                  history=hist))
    store.add(recs)


def test_fidelity_law_holds_a_domain_no_run_varied_for_every_method(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.sqlite")
    free = np.random.default_rng(3).dirichlet(np.ones(2), 12) * 0.8
    mixtures = np.column_stack([free, np.full(12, 0.2)])  # c is 0.2 in every run
    _add_ladder_runs(store, mixtures)
    res = fit_across_scale(ScaleFitConfig(store=str(store.path), method="gp", target_tokens=2e6,
                                          target_size=2e7, size_exponent=0.3))
    assert res["proposal"]["weights"]["c"] == pytest.approx(0.2)
    assert any(n.startswith("held c at 0.2") for n in res["notes"])


def test_fidelity_law_says_when_its_proposal_goes_beyond_the_runs(tmp_path: Path) -> None:
    # As `fit` on tables and `search` do (a walkthrough: a --fidelity-law proposal carried no such note).
    store = RunStore(tmp_path / "runs.sqlite")
    rng = np.random.default_rng(4)
    # a lowers every loss (T) but no run gives it more than 0.05: the law carries it far beyond them
    mixtures = np.column_stack([rng.uniform(0.0, 0.05, 12), rng.dirichlet(np.ones(2), 12)])
    mixtures[:, 1:] *= (1.0 - mixtures[:, :1])
    _add_ladder_runs(store, mixtures)
    res = fit_across_scale(ScaleFitConfig(store=str(store.path), target_tokens=2e6, target_size=2e7,
                                          size_exponent=0.3, kl=0.0, out=tmp_path / "m.json"))
    assert res["proposal"]["weights"]["a"] > 0.1
    said = [n for n in res["notes"] if "more weight than any run had to a " in n]
    assert said and "(e.g. --max-weight a=0.0" in said[0]
    saved = json.loads((tmp_path / "m.json").read_text())
    assert saved["notes"][1:] == res["notes"]
    # the baselines its prediction is read against, at the target scale (a walkthrough: none had been
    # written); these searches recorded no tokens, so uniform only, and the mixture best carried there
    assert saved["baselines"] == res["baselines"] and set(res["baselines"]) == {"uniform", "best_run"}
    best = res["baselines"]["best_run"]
    assert best["extrapolated"] == pytest.approx(res["predicted_objective"]["min"])
    assert best["run_id"] in best["run_ids"] and len(best["run_ids"]) == 2  # one run per rung
    assert res["baselines"]["uniform"]["weights"] == pytest.approx(dict.fromkeys(DOMAINS, 1 / 3))
    for b in res["baselines"].values():
        assert np.isfinite(b["predicted"])


def test_the_report_plots_tick_labels_do_not_overlap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A walkthrough's sizes.png over 2.7e4-4e5 params read "3×10⁴4×10⁴" and "3×10⁵4×10⁵".
    import mixopt.fit.scale_report as scale_report

    store = tmp_path / "ladder.sqlite"  # a real ladder draw: 2.7e4-2.2e5 params
    shutil.copy(Path(__file__).parents[1] / "docs" / "data" / "ladder-seed4.sqlite", store)
    overlaps: dict[str, list[tuple[str, str]]] = {}
    real_save = scale_report.save

    def save(fig: Any, path: Any) -> None:
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        for ax in fig.axes:
            ticks = [*ax.xaxis.get_major_ticks(), *ax.xaxis.get_minor_ticks()]
            shown = sorted(((t.label1.get_window_extent(renderer), t.label1.get_text()) for t in ticks
                            if t.label1.get_visible() and t.label1.get_text()
                            and ax.get_xlim()[0] <= t.get_loc() <= ax.get_xlim()[1]), key=lambda b: b[0].x0)
            overlaps[Path(path).name] = [(a[1], b[1]) for a, b in zip(shown, shown[1:], strict=False)
                                         if a[0].x1 > b[0].x0]
        real_save(fig, path)

    monkeypatch.setattr(scale_report, "save", save)
    fit_across_scale(ScaleFitConfig(store=str(store), method="log-ridge", target_size=4e5,
                                    target_tokens=4e6, report=tmp_path / "laws"))
    assert {"sizes.png", "steps.png"} <= set(overlaps)
    assert overlaps == {name: [] for name in overlaps}


# BiMix's own form per domain: A_i·(r_i + ε)^(−α_i)·(B_i·(D/D0)^(−β_i) + C_i)
BI_A, BI_ALPHA = np.array([1.0, 1.3, 0.8]), np.array([0.15, 0.08, 0.25])
BI_B, BI_BETA, BI_C = np.array([3.0, 0.2, 0.5]), np.array([0.7, 0.3, 0.4]), np.array([1.0, 2.5, 1.8])


def bimix_truth(r: np.ndarray, N: float, D: float) -> np.ndarray:
    return BI_A * (r + 1e-3) ** -BI_ALPHA * (BI_B * (D / 1e5) ** -BI_BETA + BI_C)


def test_bimix_is_fitted_over_mixtures_and_checkpoints_and_extrapolated_in_tokens(
    tmp_path: Path, workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from mixopt.cli import main

    store = fill_store(tmp_path / "runs.sqlite", rungs=("xs",), n=8, law=bimix_truth)
    D = 2e6  # 13x the rung's 150k tokens
    res = fit_across_scale(ScaleFitConfig(store=str(store.path), method="bimix", target_tokens=D, kl=0.0,
                                          out=tmp_path / "mix.json"))
    assert res["n_mixtures"] == 8 and res["n_runs"] == 8
    laws = res["laws"]["bimix"]  # one own-share law per domain, from its 8 runs x 4 checkpoints
    assert [laws[f"loss/{d}"]["beta"] for d in DOMAINS] == pytest.approx(BI_BETA, abs=1e-3)
    assert [laws[f"loss/{d}"]["alpha"] for d in DOMAINS] == pytest.approx(BI_ALPHA, abs=1e-3)
    # With no KL pull the proposal is the law's optimum at D, not at the runs' 150k tokens (they differ)
    w = np.array([res["proposal"]["weights"][d] for d in DOMAINS])
    assert res["proposal"]["predicted"] == pytest.approx(float(bimix_truth(w, 0, D).mean()), rel=1e-3)
    cand = np.random.default_rng(0).dirichlet(np.ones(3), 20000)
    at_d = np.array([bimix_truth(c, 0, D).mean() for c in cand])
    at_runs = np.array([bimix_truth(c, 0, 1.5e5).mean() for c in cand])
    assert float(bimix_truth(w, 0, D).mean()) <= at_d.min() + 1e-4
    assert np.abs(cand[at_runs.argmin()] - cand[at_d.argmin()]).max() > 0.02  # the step matters here
    law_a = json.loads((tmp_path / "mix.json").read_text())["params"]["laws"]["bimix"]["loss/a"]
    assert law_a["rms"] < 1e-3 and law_a["r2"] > 0.999
    assert res["proposal"]["method"] == "bimix"
    main(["fit", "--fidelity-law", "--store", str(store.path), "--method", "bimix", "--target-tokens", "2e6"])
    out = " ".join(capsys.readouterr().out.split())
    assert "bimix loss/a: α = 0.150, β = 0.700 (step)" in out, out
    # BiMix has no size term: a target size is refused, saying which methods have one
    with pytest.raises(MixoptError, match="no model-size term: --target-size/--size-exponent need"):
        fit_across_scale(ScaleFitConfig(store=str(store.path), method="bimix", target_size=2e7))


def test_fidelity_law_baselines_keep_to_the_constraints_and_bimix_carries_no_runs_value(
        tmp_path: Path, workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A review: with --fix a=0.6 the "uniform" baseline was 0.6/0.2/0.2 and the best run one the
    proposal could not be, both unsaid (fit on tables and search say them); under bimix the best
    run's "carried there" value was the model's own prediction printed twice."""
    from mixopt.cli import main

    store = fill_store(tmp_path / "runs.sqlite", rungs=("xs",), n=8, law=bimix_truth)
    res = fit_across_scale(ScaleFitConfig(store=str(store.path), method="bimix", target_tokens=2e6, kl=0.0,
                                          fixed={"a": 0.6}))
    base = res["baselines"]
    assert base["uniform"]["weights"] == pytest.approx({"a": 0.6, "b": 0.2, "c": 0.2})
    assert ("the uniform baseline is moved into the constraints: a 0.333 → 0.600, b 0.333 → 0.200, "
            "c 0.333 → 0.200") in res["notes"]
    assert base["best_run"]["inside_constraints"] is False and "extrapolated" not in base["best_run"]
    # listed all the same, so the note says it is outside them (not "not among the baselines")
    assert any(n.startswith("no run is inside the constraints: the best run, ")
               and "listed beside the proposal" in n for n in res["notes"])
    main(["fit", "--fidelity-law", "--store", str(store.path), "--method", "bimix", "--target-tokens", "2e6"])
    out = " ".join(capsys.readouterr().out.split())
    assert "the runs' best mixture " in out and "carried there" not in out


def test_fidelity_law_says_when_its_proposal_is_predicted_worse_than_the_best_run(tmp_path: Path) -> None:
    """A docs audit: `fit --fidelity-law --method bimix` predicted the runs' best mixture (1.9537)
    below its own proposal (1.9596) without a word, where `fit` on tables and `search` name the KL
    term's pull (or the proposal's shortfall) and --kl 0."""
    def steep_in_a(r: np.ndarray, N: float, D: float) -> np.ndarray:  # its optimum far from the prior
        return (r + 1e-3) ** -np.array([0.6, 0.02, 0.02]) * (BI_B * (D / 1e5) ** -BI_BETA + BI_C)

    store = fill_store(tmp_path / "runs.sqlite", rungs=("xs",), n=8, law=steep_in_a)
    pulled = fit_across_scale(ScaleFitConfig(store=str(store.path), method="bimix", target_tokens=2e6,
                                             kl=1.0))
    best = pulled["baselines"]["best_run"]
    assert pulled["proposal"]["predicted"] > best["predicted"] and best["inside_constraints"]
    said = [n for n in pulled["notes"] if n.startswith("the proposal is predicted worse than the best run")]
    assert len(said) == 1 and f"for run {best['run_id']}" in said[0] and "--kl 0" in said[0], pulled["notes"]
    free = fit_across_scale(ScaleFitConfig(store=str(store.path), method="bimix", target_tokens=2e6, kl=0.0))
    assert free["proposal"]["predicted"] <= free["baselines"]["best_run"]["predicted"]
    assert not any("predicted worse than the best run" in n for n in free["notes"])


def test_bimix_across_rungs_fits_the_largest_and_says_so(tmp_path: Path) -> None:
    store = fill_store(tmp_path / "runs.sqlite", rungs=("xs", "s"), n=8, law=bimix_truth)
    with pytest.warns(MixoptWarning, match="bimix is fitted over the largest rung's checkpoints"):
        res = fit_across_scale(ScaleFitConfig(store=str(store.path), method="bimix"))
    assert res["sizes"] == [float(load_rung("s").non_embedding_params())] and res["n_runs"] == 8
    assert any("only the largest rung's runs" in n for n in res["notes"])


def test_bimix_refuses_what_its_law_cannot_fit(tmp_path: Path, workspace: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    # the largest rung holds one mixture only (a baseline's seeds): nothing to fit, said as such
    store = fill_store(tmp_path / "one.sqlite", rungs=("xs",), n=6, law=bimix_truth)
    fill_store(tmp_path / "one.sqlite", rungs=("s",), n=1, law=bimix_truth)
    with pytest.raises(MixoptError, match="all 4 runs have the same mixture"):
        fit_across_scale(ScaleFitConfig(store=str(store.path), method="bimix", target_tokens=2e6))
    # one checkpoint per run: no step term, so no extrapolation in tokens (it was silently ignored)
    flat = RunStore(tmp_path / "flat.sqlite")
    for r in store.runs(status="ok"):
        if r.fidelity["rung"] == "xs":
            flat.add(dataclasses.replace(r, history=r.history[-1:]))
    with pytest.raises(MixoptError, match="one checkpoint each .* cannot fit its step term"):
        fit_across_scale(ScaleFitConfig(store=str(flat.path), method="bimix", target_tokens=2e6))
    with pytest.warns(MixoptWarning, match="nothing extrapolated"):
        fit_across_scale(ScaleFitConfig(store=str(flat.path), method="bimix", out=tmp_path / "m.json"))
    saved = json.loads((tmp_path / "m.json").read_text())
    assert "nothing extrapolated" in saved["notes"][0]
    assert saved["params"]["laws"]["bimix"]["loss/a"]["beta"] is None  # strict JSON: no NaN
    from mixopt.cli import main

    main(["fit", "--fidelity-law", "--store", str(flat.path), "--method", "bimix"])
    out = " ".join(capsys.readouterr().out.split())
    assert "bimix loss/a: α = 0.150, no step term (one checkpoint)" in out and "nan" not in out


def test_proxy_runs_are_extrapolated_along_their_learning_rate_schedule(tmp_path: Path) -> None:
    """A proxy run's checkpoints are points of one cosine run, not the ends of shorter runs: the step
    law reads the rung's schedule and predicts the end of a 4× longer run on the same schedule."""
    from mixopt.fitters.nested import predict_at_scale

    store = fill_store(tmp_path / "runs.sqlite", rungs=("xs",), n=8, annealing=0.002)
    _, curves = curves_from_store(store)
    R = load_rung("xs")
    assert all(c.lr_schedule is not None and list(c.steps) == R.eval_steps() for c in curves)
    metrics = [f"loss/{d}" for d in DOMAINS]
    D = 4 * R.steps * R.tokens_per_step
    pred = predict_at_scale(curves, metrics, target_tokens=D)
    n = D // R.tokens_per_step
    s1, s2 = lr_areas(R.lr_schedule(D), n, np.array([n]))
    N = R.non_embedding_params()
    want = np.array([truth(x, N, s1[0] * R.tokens_per_step) - 0.002 * s2[0] for x in pred.X])
    np.testing.assert_allclose(pred.Y, want, rtol=1e-4)
    laws = pred.laws["step"].values()
    assert all(law["scale"] == "lr-area" and abs(law["C"] - 0.002) < 1e-5 for law in laws)
    # The same checkpoints read as ends of shorter runs (the law in tokens) mislead it.
    plain = [dataclasses.replace(c, lr_schedule=None) for c in curves]
    off = predict_at_scale(plain, metrics, target_tokens=D)
    assert all(law["scale"] == "tokens" for law in off.laws["step"].values())
    assert np.mean(np.abs(off.Y - want) / want) > 10 * np.mean(np.abs(pred.Y - want) / want)
    with pytest.raises(MixoptError, match="less than one optimizer step"):
        predict_at_scale(curves, metrics, target_tokens=100)
    with pytest.raises(MixoptError, match=r"is 9.77e\+26 optimizer steps .* not carried beyond 1e\+15 steps"):
        predict_at_scale(curves, metrics, target_tokens=1e30)
    with pytest.raises(MixoptError, match="--target-tokens is inf; it must be a finite number > 0"):
        ScaleFitConfig(target_tokens=float("inf"))


def test_the_step_laws_form_is_printed(tmp_path: Path, workspace: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    from mixopt.cli import main

    for annealing, form in ((0.002, "β = 0.500 in the learning rate's area, annealing C = 0.002"),
                            (None, "in tokens")):
        store = fill_store(tmp_path / f"runs-{annealing}.sqlite", rungs=("xs",), n=8, annealing=annealing)
        main(["fit", "--fidelity-law", "--store", str(store.path), "--target-tokens", "6e5"])
        text = " ".join(capsys.readouterr().out.split())  # rich wraps long lines
        assert f"step law rung xs ({load_rung('xs').non_embedding_params():.3g} params), loss/a: " in text
        assert form in text


def test_runs_of_a_rung_changed_since_keep_the_step_law_in_tokens(tmp_path: Path) -> None:
    """A search's proxy runs record their rung's hash: when proxies/xs.toml changed since, their
    learning rates are not the file's, and the law says so and runs in tokens."""
    from mixopt.proxy.rungs import rung_hash

    same = fill_store(tmp_path / "same.sqlite", rungs=("xs",), n=3, annealing=0.0, rung_hash=rung_hash("xs"))
    assert all(c.lr_schedule is not None for c in curves_from_store(same)[1])
    old = fill_store(tmp_path / "old.sqlite", rungs=("xs",), n=3, annealing=0.0, rung_hash="0123456789abcdef")
    with pytest.warns(MixoptWarning, match="rung xs changed since some of these runs trained"):
        _, curves = curves_from_store(old)
    assert all(c.lr_schedule is None for c in curves)


def test_a_user_evaluators_runs_keep_the_step_law_in_tokens(tmp_path: Path) -> None:
    store = fill_store(tmp_path / "runs.sqlite", rungs=("xs",), n=4)  # learning rates unknown
    _, curves = curves_from_store(store)
    assert all(c.lr_schedule is None and c.steps is None for c in curves)


def test_a_step_law_without_a_bend_is_said_when_it_reaches_far(tmp_path: Path) -> None:
    """Checkpoints that fall with the log of training show no floor: some runs' floors are held at 0,
    and a target far beyond the runs is said to be their early fall carried on. With the floor at
    least 0 the law alone never predicts a loss below 0; the annealing term, carried far, can."""
    from mixopt.fitters.nested import predict_at_scale

    def log_law(r: np.ndarray, N: float, D: float) -> np.ndarray:
        return truth(r, N, 1e9) - 0.15 * np.log(D)

    store = fill_store(tmp_path / "runs.sqlite", rungs=("xs",), n=6, law=log_law, annealing=0.0)
    _, curves = curves_from_store(store)
    metrics = [f"loss/{d}" for d in DOMAINS]
    tokens = float(curves[0].tokens.max())
    said = (r"step law of 3 of 3 metrics \(loss/a, loss/b, loss/c\) at 1.01e\+05 params finds no floor in "
            r"some runs' checkpoints .*at 1e\+03× the runs' tokens")
    with pytest.warns(MixoptWarning, match=said):
        pred = predict_at_scale(curves, metrics, target_tokens=1000 * tokens)
    assert (pred.Y > 0).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error", MixoptWarning)
        predict_at_scale(curves, metrics, target_tokens=2 * tokens)  # near the runs: nothing to say
    with pytest.warns(MixoptWarning, match="finds no floor"):
        assert (predict_at_scale(curves, metrics, target_tokens=1e11 * tokens).Y > 0).all()
    # On an annealing schedule, − C·S2 carried far enough falls below 0: refused, with the reach named
    store = fill_store(tmp_path / "annealed.sqlite", rungs=("xs",), n=6, law=log_law, annealing=0.002)
    _, curves = curves_from_store(store)
    with pytest.warns(MixoptWarning), pytest.raises(
        MixoptError, match=r"^the fitted laws predict a value ≤ 0 for loss/a, loss/b, loss/c at 1\.5e\+16 "
                           r"tokens \(1e\+11× the runs' 1\.5e\+05\), which every run measured above 0"
    ) as exc:
        predict_at_scale(curves, metrics, target_tokens=1e11 * tokens)
    assert "nearer to the runs (--target-tokens)" in str(exc.value)  # the target given, not --target-size


def test_each_rung_is_extrapolated_along_its_own_schedule(tmp_path: Path) -> None:
    """Two rungs with different steps (batch × context) and budgets: each rung's step law reads its own
    schedule, and without a target size the largest rung's predictions are the answer."""
    from mixopt.fitters.nested import predict_at_scale

    store = fill_store(tmp_path / "runs.sqlite", rungs=("xs", "s"), n=6, annealing=0.002)
    _, curves = curves_from_store(store)
    metrics = [f"loss/{d}" for d in DOMAINS]
    S = load_rung("s")
    D = 3 * S.steps * S.tokens_per_step
    pred = predict_at_scale(curves, metrics, target_tokens=D)
    assert len(pred.laws["step"]) == 2 * len(metrics)
    assert all(law["scale"] == "lr-area" for law in pred.laws["step"].values())
    n = D // S.tokens_per_step
    s1, s2 = lr_areas(S.lr_schedule(D), n, np.array([n]))
    want = np.array([truth(x, S.non_embedding_params(), s1[0] * S.tokens_per_step) - 0.002 * s2[0]
                     for x in pred.X])
    np.testing.assert_allclose(pred.Y, want, rtol=1e-4)


def test_runs_with_too_few_checkpoints_are_named_by_their_rung(tmp_path: Path) -> None:
    """A QA pass: the debug rung's runs (2 checkpoints each) failed the step law's parameter count
    naming only their size, beside other rungs' runs."""
    store = fill_store(tmp_path / "runs.sqlite", rungs=("debug", "xs"), n=6)
    with pytest.raises(MixoptError, match=r"step law \(loss/a, rung debug of 1\.34e\+04 params\): 12 points "
                                          r"cannot fit 13 parameters .*record 3 or more checkpoints per run"):
        fit_across_scale(ScaleFitConfig(store=str(store.path), target_tokens=1e6, target_size=1e6))
    # --target mean, as `fit --target` takes it, is the mean over all domains
    res = fit_across_scale(ScaleFitConfig(store=str(store.path), target="mean", searches=("sw-xs",)))
    assert res["metrics"] == [f"loss/{d}" for d in DOMAINS]


def test_fidelity_law_out_is_checked_before_the_fit_and_never_over_the_store(tmp_path: Path) -> None:
    # A QA pass: `fit --fidelity-law --store S --out S` wrote the mixture JSON over the store (every
    # search's runs gone), and a folder --out was refused only after the fit, without naming --out.
    store = tmp_path / "ladder.sqlite"
    shutil.copy(Path(__file__).parents[1] / "docs" / "data" / "ladder-seed4.sqlite", store)
    before = store.read_bytes()
    for out in (store, Path(f"{store}-wal")):
        with pytest.raises(MixoptError, match=r"--out .* the run store .*, which holds every search's runs; "
                                              "write to another path"):
            fit_across_scale(ScaleFitConfig(store=str(store), method="gp", out=out))
    assert store.read_bytes() == before and not Path(f"{store}-wal").exists()
    (tmp_path / "folder").mkdir()
    with pytest.raises(MixoptError, match=r"--out .*folder is a folder; give a file path"):
        fit_across_scale(ScaleFitConfig(store=str(store), method="gp", out=tmp_path / "folder"))


@pytest.mark.parametrize(("kw", "said"), [
    ({"fixed": {"a": 1.0}}, r"^the fixed weights and floors add up to 1 \(--fix a=1\), which leaves a single "
                            "mixture and nothing to propose: use that mixture as it is, or free a domain"),
    ({"ceilings": {"a": 0.5, "b": 0.5, "c": 0.0}}, "leaves a single mixture and nothing to propose"),
])
def test_fidelity_law_refuses_bounds_that_leave_a_single_mixture(tmp_path: Path, kw: dict, said: str) -> None:
    # A review: `fit --propose` refuses them as search does (stop 46), and `fit --fidelity-law`, which
    # always proposes, wrote that mixture with its baselines "moved into the constraints"
    store = fill_store(tmp_path / "runs.sqlite", rungs=("xs",), n=8, law=bimix_truth)
    out = tmp_path / "mix.json"
    with pytest.raises(MixoptError, match=said):
        fit_across_scale(ScaleFitConfig(store=str(store.path), method="bimix", target_tokens=2e6, out=out,
                                        **kw))
    assert not out.exists()
