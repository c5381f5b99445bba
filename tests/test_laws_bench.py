"""``mixopt bench fit``'s fitter benchmark on the committed table slices, and the extrapolation task
on a synthetic ladder in a store (no timing is asserted: the machine is shared)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mixopt.bench.laws import bench_extrapolation, bench_laws
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


def test_the_kept_ladder_draw_reads_and_scores_as_documented() -> None:
    """docs/data/ladder-seed4.sqlite holds a real ladder draw (74 min to retrain) so that a new law
    can be checked in a second: it must stay readable, unchanged by reading, and score as
    docs/benchmarks.md says until the law changes (then update both)."""
    import hashlib

    path = Path(__file__).parents[1] / "docs" / "data" / "ladder-seed4.sqlite"
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    out = bench_extrapolation(RunStore(path))
    assert out is not None
    s = out["summary"]
    assert (s["mixtures"], s["metrics"], len(s["rungs"])) == (6, 9, 4)
    assert s["mean_rel_error"] == pytest.approx(0.01007, abs=5e-5)
    assert s["no_change_rel_error"] == pytest.approx(0.02355, abs=5e-5)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    assert not list(path.parent.glob("ladder-seed4.sqlite-*"))  # no -wal/-shm left beside it


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
    main(["bench", "fit", "--no-timing", "--no-laws", "--ladder", "default", "--ladder-mixtures", "3",
          "--ladder-seed", "7", "--store", str(tmp_path / "s.sqlite")])
    assert seen == {"corpus": "default", "n_mixtures": 3, "seed": 7, "jobs": None}


@pytest.mark.parametrize(("args", "said"), [
    (["bench", "fit", "--tasks", "zz"], "error: --tasks zz: choose from regmix-pile-cc"),
    (["bench", "fit", "--no-timing", "--fitters", "zz"], "error: --fitters zz: choose from regmix"),
    (["bench", "fit", "--no-timing", "--no-laws"], "leaves nothing to run"),
    (["bench", "fit", "--jobs", "-1"], "Invalid value for '--jobs'"),
    (["bench", "proxy", "--rungs", ","], "error: --rungs is empty"),
    (["bench", "search", "--trials", "0"], "Invalid value for '--trials'"),
    (["bench", "search", "--work", "-5"], "Invalid value for '--work'"),
])
def test_bench_options_that_cannot_work_are_refused(args: list[str], said: str,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from mixopt.cli import main

    with pytest.raises(SystemExit) as exc:
        main(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1 and said in err[0]
