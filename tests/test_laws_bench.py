"""``mixopt bench fit``'s fitter benchmark on the committed table slices, and the extrapolation task
on a synthetic ladder in a store (no timing is asserted: the machine is shared)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mixopt.bench.laws import bench_extrapolation, bench_laws, bench_lengths
from mixopt.store import RunRecord, RunStore, fidelity_key

SLICES = Path(__file__).parent / "data" / "runs"


@pytest.mark.slow  # 13-33 s: in CI with the other slow tests, out of the default suite
def test_bench_laws_on_the_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    from mixopt.fitters.auto import AutoFitter

    monkeypatch.setitem(AutoFitter.__init__.__kwdefaults__, "candidates", ("linear", "mixing-law"))
    res = bench_laws(
        data=SLICES,
        fitters=("linear", "mixing-law", "auto"),
        tasks=("regmix-pile-cc", "olmix-mean-cv5", "small-32"),
        n_small=24,
        seeds=2,
        k=3,
        jobs=1,
    )
    rows = {(r["task"], r["fitter"]): r for r in res["rows"]}
    assert {t for t, _ in rows} == {"regmix-pile-cc", "olmix-mean-cv5", "small-24 regmix", "small-24 olmix"}
    good = rows[("regmix-pile-cc", "mixing-law")]
    assert {"spearman", "pearson", "mae", "rel_error", "seconds"} <= set(good) and good["spearman"] > 0.5
    # 64 Olmix domains, 24 runs: the law cannot be fitted and says so; auto falls back to what can.
    assert "add runs" in rows[("small-24 olmix", "mixing-law")]["error"]
    assert "spearman" in rows[("small-24 olmix", "auto")] and rows[("small-24 olmix", "auto")]["chosen"]
    assert set(res["summary"]) == {"regmix-pile-cc", "olmix-mean-cv5", "small-24"}
    assert res["summary"]["regmix-pile-cc"]["best"] in ("linear", "mixing-law", "auto")


def test_extrapolation_task_on_a_synthetic_ladder(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.sqlite")
    rng = np.random.default_rng(0)
    W = rng.dirichlet(np.ones(3), 6)
    recs = []
    for N in (2e4, 5e4, 1e5, 2e5):
        fid = {"rung": f"r{N:g}", "params": N}
        for i, w in enumerate(W):
            hist = [
                {
                    "step": s,
                    "tokens": s * 1000.0,
                    **{
                        f"loss/{d}": 2
                        + w @ [1, -0.5, 0.2]
                        + j * 0.1
                        + 30 * N**-0.3
                        + 5 * (s * 1000.0) ** -0.4
                        for j, d in enumerate("abc")
                    },
                }
                for s in (25, 50, 75, 100)
            ]
            recs.append(
                RunRecord(
                    run_id=f"{N:g}-{i}",
                    weights=dict(zip("abc", w.tolist(), strict=True)),
                    fidelity=fid,
                    fidelity_key=fidelity_key(fid),
                    status="ok",
                    history=hist,
                    metrics={k: v for k, v in hist[-1].items() if k.startswith("loss/")},
                )
            )
    store.add(recs)
    res = bench_extrapolation(store)
    assert res is not None and res["summary"]["mixtures"] == 6 and res["summary"]["metrics"] == 3
    assert res["summary"]["mean_rel_error"] < 1e-3 and res["summary"]["met"]
    # Loss falls with size here, so carrying the next rung's loss over is measurably worse.
    assert res["summary"]["no_change_rel_error"] > 10 * res["summary"]["mean_rel_error"]
    assert [r["fitter"] for r in res["rows"]] == ["step+size law", "no change from 1e+05 params"]


def test_lengths_task_on_runs_that_follow_the_law_with_annealing(tmp_path: Path) -> None:
    """Runs of one rung at 1×, 2× and 4× its tokens whose losses follow E + B·S1^(−½) − C·S2 on the
    rung's schedule: the law in the learning rate's areas predicts the longer runs' ends exactly,
    the law in tokens does not, and no change is worse still."""
    from mixopt.proxy.rungs import load_rung
    from mixopt.schedule import lr_areas

    store = RunStore(tmp_path / "runs.sqlite")
    W = np.random.default_rng(1).dirichlet(np.ones(3), 5)
    base = load_rung("xs")
    recs = []
    for f in (1, 2, 4):
        r = base.with_tokens(f * base.tokens)
        s1, s2 = lr_areas(r.lr_schedule(), r.steps, np.array(r.eval_steps()))
        fid = {"rung": "xs", "tokens": r.tokens, "corpus": "synthetic"}
        for i, w in enumerate(W):
            hist = [{"step": st, "tokens": st * r.tokens_per_step,
                     **{f"loss/{d}": 3 + w @ [1, -0.5, 0.2] + j * 0.1 + (20 + 5 * w[j]) * a1**-0.5
                        - 0.003 * a2 for j, d in enumerate("abc")}}
                    for st, a1, a2 in zip(r.eval_steps(), s1, s2, strict=True)]
            recs.append(RunRecord(run_id=f"{f}-{i}", weights=dict(zip("abc", w.tolist(), strict=True)),
                                  fidelity=fid, fidelity_key=fidelity_key(fid), status="ok",
                                  search_id=f"lengths-{r.tokens}", history=hist,
                                  metrics={k: v for k, v in hist[-1].items() if k.startswith("loss/")}))
    store.add(recs)
    out = bench_lengths(store)
    assert out is not None
    s = out["summary"]
    assert list(s) == ["2x lr-area", "2x tokens", "2x no change", "4x lr-area", "4x tokens", "4x no change"]
    for f in ("2x", "4x"):
        assert s[f"{f} lr-area"] < 1e-6 and s[f"{f} tokens"] > 1e-3 and s[f"{f} no change"] > s[f"{f} tokens"]
    assert [r["fitter"] for r in out["rows"][:3]] == ["step law in lr-area", "step law in tokens",
                                                      "no change"]
    assert all(r["mixtures"] == 5 and r["domains"] == 3 for r in out["rows"])
    # Without two budgets there is nothing to compare.
    assert bench_lengths(RunStore(tmp_path / "empty.sqlite")) is None


def _read_kept(name: str, bench: Any) -> dict[str, Any]:
    """``bench`` on the store docs/data/``name``, checking that reading left it as it was."""
    import hashlib

    path = Path(__file__).parents[1] / "docs" / "data" / name
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    out = bench(RunStore(path))
    assert out is not None
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    assert not list(path.parent.glob(f"{name}-*"))  # no -wal/-shm left beside it
    return out["summary"]


def test_the_kept_ladder_draw_reads_and_scores_as_documented() -> None:
    """docs/data/ladder-seed4.sqlite holds a real ladder draw (74 min to retrain) so that a new law
    can be checked in a second: it must stay readable, unchanged by reading, and score as
    docs/benchmarks.md says until the law changes (then update both)."""
    s = _read_kept("ladder-seed4.sqlite", bench_extrapolation)
    assert (s["mixtures"], s["metrics"], len(s["rungs"])) == (6, 9, 4)
    assert s["mean_rel_error"] == pytest.approx(0.01007, abs=5e-5)
    assert s["no_change_rel_error"] == pytest.approx(0.02355, abs=5e-5)


def test_the_kept_lengths_draw_scores_as_documented() -> None:
    """docs/data/lengths-seed0.sqlite: 8 swarm mixtures at rung xs for 1×, 2×, 4× and 16× its tokens
    (26 min to retrain), scored as docs/benchmarks.md and docs/DECISIONS.md say."""
    s = _read_kept("lengths-seed0.sqlite", bench_lengths)
    want = {"2x lr-area": 0.02327, "2x tokens": 0.02317, "2x no change": 0.02920,
            "4x lr-area": 0.03963, "4x tokens": 0.04953, "4x no change": 0.07163,
            "16x lr-area": 0.10012, "16x tokens": 0.13088, "16x no change": 0.18143}
    assert s == pytest.approx(want, abs=5e-5)
    # With every floor E ≥ 0 (since 2026-12-06), no prediction is ≤ 0; with a free floor the 16×
    # lr-area law predicted −0.35 for math in one run.
    kept = RunStore(Path(__file__).parents[1] / "docs" / "data" / "lengths-seed0.sqlite")
    assert not [r for r in bench_lengths(kept)["rows"] if r.get("nonpositive")]


def test_the_lengths_table_fits_80_columns(workspace: Path, capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The lengths rows have no ranks: their empty columns are left out, and a task name is one line."""
    from mixopt.cli import main

    store = Path(__file__).parents[1] / "docs" / "data" / "lengths-seed0.sqlite"
    monkeypatch.setenv("COLUMNS", "80")
    main(["bench", "fit", "--no-timing", "--tasks", "lengths", "--store", str(store)])
    out = capsys.readouterr().out
    lines = out.splitlines()
    # the table's lines; the summary below it ("lengths: …") stays one line in a log, however long
    assert all(len(line) <= 80 for line in lines if not re.match(r"[\w-]+: ", line))
    rows = [line for line in lines if "lengths 1.5e5→" in line]
    assert len(rows) == 9 and all("%" in line for line in rows)  # a row per line, each with its error
    assert "Spearman" not in out
    assert "2.4e6" in rows[6] and "note" not in out  # no row has a note: its column is left out
    assert "lengths: 2x lr-area 0.02327, 2x tokens 0.02317" in " ".join(out.split())
    # A law's prediction ≤ 0 (scored, as fit would refuse it) is said in the row's note.
    from mixopt.cli.fit import _render_laws

    _render_laws({"rows": [{"task": "lengths 1.5e5→2.4e6", "fitter": "step law in lr-area", "rel_error": 0.1,
                            "seconds": 0.5, "nonpositive": {"loss/math": 1}}], "summary": {}})
    note = capsys.readouterr().out
    assert all(len(line) <= 80 for line in note.splitlines())
    assert [line.split()[-1] for line in note.splitlines() if "≤0" in line] == ["math"]


def test_a_ranked_table_at_80_columns_cuts_no_figure(workspace: Path, capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from mixopt.cli import main

    monkeypatch.setenv("COLUMNS", "80")
    args = ["bench", "fit", "--no-timing", "--data", str(SLICES / "regmix-pile-1m"), "--tasks",
            "regmix-pile-cc", "--fitters", "linear,loglinear", "--jobs", "1"]
    main([*args, "--json"])
    rows = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["laws"]["rows"]
    main(args)
    out = capsys.readouterr().out
    # the table's lines (a summary line below it, "task: …", stays one line in a log)
    assert all(len(line) <= 80 for line in out.splitlines() if not re.match(r"[\w-]+: ", line))
    assert "…" not in out
    for r in rows:  # every figure whole; the long names fold instead of being cut
        assert all(f"{r[k]:.4f}" in out for k in ("spearman", "pearson", "mae"))
        assert f"{r['rel_error']:.3%}" in out
    assert "fit s" in out


def test_bench_fit_cli_laws_only(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mixopt.cli import main

    main(
        [
            "bench",
            "fit",
            "--no-timing",
            "--data",
            str(SLICES / "regmix-pile-1m"),
            "--tasks",
            "regmix-pile-cc",
            "--fitters",
            "linear,loglinear",
            "--jobs",
            "1",
            "--json",
        ]
    )
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [r["fitter"] for r in out["laws"]["rows"]] == ["linear", "loglinear"]
    # the tables' root works as well as RegMix's folder in it
    main(["bench", "fit", "--no-timing", "--data", str(SLICES), "--tasks", "regmix-pile-cc", "--fitters",
          "linear", "--jobs", "1", "--json"])
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again["laws"]["rows"][0]["spearman"] == out["laws"]["rows"][0]["spearman"]


def test_ladder_options_reach_the_library(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import mixopt.bench.laws as laws
    from mixopt.cli import main

    seen: dict = {}

    def fake_ladder(corpus: str, store: object, **kw: object) -> int:
        seen.update(corpus=corpus, **kw)
        return 0

    monkeypatch.setattr(laws, "ladder_runs", fake_ladder)
    from types import SimpleNamespace

    from mixopt.corpus import Corpus

    # the corpus is opened before any work (a bad-input sweep); this test checks the options alone
    monkeypatch.setattr(Corpus, "open", classmethod(lambda cls, name: SimpleNamespace(manifest={})))
    main(["bench", "fit", "--no-timing", "--no-laws", "--ladder", "default", "--ladder-mixtures", "3",
          "--ladder-seed", "7", "--store", str(tmp_path / "s.sqlite")])
    assert seen == {"corpus": "default", "n_mixtures": 3, "seed": 7, "jobs": None}
    seen.clear()
    monkeypatch.setattr(laws, "length_runs", fake_ladder)
    main(["bench", "fit", "--no-timing", "--no-laws", "--lengths", "default", "--ladder-mixtures", "4",
          "--store", str(tmp_path / "s.sqlite")])
    assert seen == {"corpus": "default", "n_mixtures": 4, "seed": 0, "jobs": None, "factors": (1, 2, 4)}
    seen.clear()
    main(["bench", "fit", "--no-timing", "--no-laws", "--lengths", "default", "--lengths-factors", "16,1, 4",
          "--store", str(tmp_path / "s.sqlite")])
    assert seen["factors"] == (1, 4, 16)


@pytest.mark.parametrize(("args", "said"), [
    (["bench", "fit", "--tasks", "zz"], "error: --tasks zz: choose from regmix-pile-cc"),
    (["bench", "fit", "--no-timing", "--fitters", "zz"], "error: --fitters zz: choose from regmix"),
    (["bench", "fit", "--no-timing", "--no-laws"], "leaves nothing to run"),
    (["bench", "fit", "--lengths", "default", "--lengths-factors", "4"],
     "error: --lengths-factors '4': give two or more whole multiples ≥ 1"),
    (["bench", "fit", "--lengths", "default", "--lengths-factors", "0,2"], "whole multiples ≥ 1"),
    (["bench", "fit", "--lengths", "default", "--lengths-factors", "1,x"], "whole multiples ≥ 1"),
    (["bench", "fit", "--jobs", "-1"], "Invalid value for '--jobs'"),
    (["bench", "proxy", "--rungs", ","], "error: --rungs is empty"),
    (["bench", "search", "--trials", "0"], "Invalid value for '--trials'"),
    (["bench", "search", "--work", "-5"], "Invalid value for '--work'"),
    # no upper bound let a typo (an extra zero or three) run for days
    (["bench", "search", "--trials", "1000000"], "Invalid value for '--trials'"),
    (["bench", "search", "--work-trials", "5000"], "Invalid value for '--work-trials'"),
    (["bench", "search", "--work", "10000000"], "Invalid value for '--work'"),
    (["bench", "search", "--repeats", "1000"], "Invalid value for '--repeats'"),
])
def test_bench_options_that_cannot_work_are_refused(args: list[str], said: str,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from mixopt.cli import main

    with pytest.raises(SystemExit) as exc:
        main(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1 and said in err[0]


def test_length_runs_train_each_mixture_at_each_budget_once(tiny_workspace: Path) -> None:
    """The lengths runs as ``bench fit --lengths`` trains them (the tiny corpus, the debug rung):
    recorded as proxy runs with their token budgets, and not trained again when asked twice."""
    from mixopt.bench.laws import length_runs
    from mixopt.proxy.rungs import load_rung

    store = RunStore(tiny_workspace / "runs.sqlite")
    assert length_runs("tiny", store, n_mixtures=2, seed=3, jobs=1, rung="debug", factors=(1, 2)) == 4
    base = load_rung("debug")
    runs = store.runs(status="ok")
    want = [f"lengths-{base.tokens}"] * 2 + [f"lengths-{2 * base.tokens}"] * 2
    assert sorted(r.search_id for r in runs) == sorted(want)
    per_step = base.tokens_per_step
    for r in runs:
        assert r.fidelity["rung"] == "debug" and json.loads(r.fidelity_key)["evaluator"] == "proxy"
        assert r.history[-1]["tokens"] == r.fidelity["tokens"] // per_step * per_step
    assert length_runs("tiny", store, n_mixtures=2, seed=3, jobs=1, rung="debug", factors=(1, 2)) == 0


def test_a_task_with_nothing_to_run_says_why(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A help audit: `bench fit --tasks store` on a workspace without a store, and `--tasks
    extrapolation` on a store without a ladder, printed an empty table and exited 0."""
    from mixopt.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["bench", "fit", "--no-timing", "--tasks", "store", "--data", str(SLICES)])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and err == [
        "error: nothing to benchmark: store: no run store (the workspace has none; give --store)"]
    kept = Path(__file__).parents[1] / "docs" / "data" / "lengths-seed0.sqlite"
    with pytest.raises(SystemExit):
        main(["bench", "fit", "--no-timing", "--tasks", "extrapolation", "--store", str(kept)])
    assert "holds no runs of the same mixtures at 3 or more rungs" in capsys.readouterr().err
    # with something measured, the empty task is a note on stderr: --json's stdout stays one object
    main(["bench", "fit", "--no-timing", "--tasks", "regmix-pile-cc,store", "--fitters", "linear",
          "--data", str(SLICES), "--jobs", "1", "--json"])
    out, err = capsys.readouterr()
    none = "no run store (the workspace has none; give --store)"
    assert json.loads(out)["laws"]["skipped"] == {"store": none}
    assert err.strip() == f"note: store skipped: {none}"
