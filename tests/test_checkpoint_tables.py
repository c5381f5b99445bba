"""Run tables of checkpoints: a metrics file with a row per run and checkpoint (a tokens or step
column). `fit` fits each run's last row; `runs import` keeps every row as the run's history, which
`fit --fidelity-law` fits along (bimix's law over mixtures and steps, or the step law)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mixopt.cli import main
from mixopt.errors import MixoptError, MixoptWarning
from mixopt.fit.across_scale import ScaleFitConfig, fit_across_scale
from mixopt.fit.on_tables import FitConfig, fit_tables
from mixopt.search.imports import import_table
from mixopt.store import RunStore
from mixopt.tables import read_run_tables

DOMAINS = ("a", "b", "c")
# BiMix's law, L_i = A_i·(r_i + ε)^(−α_i)·(B_i·(D/1e5)^(−β_i) + C_i), as in test_laws_scale
A, ALPHA = np.array([1.0, 1.3, 0.8]), np.array([0.15, 0.08, 0.25])
B, BETA, C = np.array([3.0, 0.2, 0.5]), np.array([0.7, 0.3, 0.4]), np.array([1.0, 2.5, 1.8])
STEPS = (100, 200, 400, 800)
TOKENS_PER_STEP = 256


def law(r: np.ndarray, tokens: float) -> np.ndarray:
    return A * (r + 1e-3) ** -ALPHA * (B * (tokens / 1e5) ** -BETA + C)


def write_tables(folder: Path, n: int = 8, *, by: str = "tokens", shuffled: bool = True) -> tuple[Path, Path]:
    """RegMix-style ratios (``run`` + weights) and a metrics table of every run's checkpoints, its rows
    in no particular order (as a log export may be)."""
    mixtures = np.random.default_rng(0).dirichlet(np.ones(3), n)
    ratios = ["run," + ",".join(DOMAINS)] + [f"r{i}," + ",".join(repr(float(w)) for w in m)
                                             for i, m in enumerate(mixtures)]
    rows = []
    for i, m in enumerate(mixtures):
        for step in STEPS:
            losses = ",".join(repr(float(v)) for v in law(m, step * TOKENS_PER_STEP))
            at = step * TOKENS_PER_STEP if by == "tokens" else step
            rows.append(f"r{i},{at},{losses}")
    if shuffled:
        rows = [rows[i] for i in np.random.default_rng(1).permutation(len(rows))]
    header = f"run,{by}," + ",".join(f"loss/{d}" for d in DOMAINS)
    (folder / "ratios.csv").write_text("\n".join(ratios) + "\n")
    (folder / "metrics.csv").write_text("\n".join([header, *rows]) + "\n")
    return folder / "ratios.csv", folder / "metrics.csv"


def test_a_checkpoint_table_reads_as_each_runs_last_row_with_its_history(tmp_path: Path) -> None:
    ratios, metrics = write_tables(tmp_path)
    table = read_run_tables(ratios, metrics)
    assert table.run_ids == [f"r{i}" for i in range(8)] and table.checkpoints == "tokens"
    last = table.metrics.to_numpy()
    assert table.metric_names == [f"loss/{d}" for d in DOMAINS]  # tokens is the histories', no metric
    np.testing.assert_allclose(last[0], law(table.X[0], STEPS[-1] * TOKENS_PER_STEP))
    hist = table.history["r3"]
    assert [h["tokens"] for h in hist] == [s * TOKENS_PER_STEP for s in STEPS]  # in order, though shuffled
    assert hist[1]["loss/b"] == pytest.approx(law(table.X[3], 200 * TOKENS_PER_STEP)[1])


def test_checkpoint_tables_that_cannot_be_read_are_refused(tmp_path: Path) -> None:
    ratios, metrics = write_tables(tmp_path, shuffled=False)
    lines = metrics.read_text().splitlines()
    metrics.write_text("\n".join([*lines, lines[1]]) + "\n")  # one checkpoint twice
    twice = r"a run's checkpoint appears twice \(r0 at tokens 25600\); give each run one row per tokens"
    with pytest.raises(MixoptError, match=twice):
        read_run_tables(ratios, metrics)
    head, first, *rest = lines
    metrics.write_text("\n".join([head, first.replace(",25600,", ",,", 1), *rest]) + "\n")
    empty = (r"column 'tokens' orders each run's checkpoints, and it is empty, negative or not a finite "
             r"number in run\(s\) r0")
    with pytest.raises(MixoptError, match=empty):
        read_run_tables(ratios, metrics)
    # Repeated ids with nothing to order them: refused as before, saying what a checkpoint table needs
    metrics.write_text("\n".join([head.replace("tokens", "seed"), *lines[1:]]) + "\n")
    dups = (r"duplicate run ids in column 'run': r0, .*each run must appear once \(a table of checkpoints, "
            r"a row per run and checkpoint, needs a tokens or step column\)")
    with pytest.raises(MixoptError, match=dups):
        read_run_tables(ratios, metrics)


def test_fit_fits_each_runs_last_checkpoint_and_says_how_to_fit_along_them(tmp_path: Path) -> None:
    ratios, metrics = write_tables(tmp_path)
    last = tmp_path / "last.csv"  # the same runs' last rows alone: the table a user would cut by hand
    rows = [ln for ln in metrics.read_text().splitlines()[1:] if f",{STEPS[-1] * TOKENS_PER_STEP}," in ln]
    last.write_text("\n".join([metrics.read_text().splitlines()[0], *rows]) + "\n")
    config = FitConfig(ratios=ratios, metrics=metrics, target="loss/a", method="linear", propose=True,
                       out=tmp_path / "along.json")
    with pytest.warns(MixoptWarning, match=r"holds checkpoints \(up to 4 rows per run, by tokens\): each "
                                           r"run's last row is fitted; .*`mixopt runs import`.*fidelity-law"):
        along = fit_tables(config)
    alone = fit_tables(FitConfig(ratios=ratios, metrics=last, target="loss/a", method="linear", propose=True,
                                 out=tmp_path / "alone.json"))
    assert along.proposal["weights"] == alone.proposal["weights"]
    assert along.n_runs == 8


def test_imported_checkpoints_are_fitted_along_by_bimix(tmp_path: Path, workspace: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    ratios, metrics = write_tables(tmp_path)
    store = tmp_path / "t.sqlite"
    main(["runs", "import", "--ratios", str(ratios), "--metrics", str(metrics), "--store", str(store),
          "--evaluator", "mine:train", "--fidelity", "rung=tiny,params=1e6"])
    assert "8 runs over 3 domains" in capsys.readouterr().out
    run = RunStore(store).get("ratios:r2")
    assert len(run.history) == 4 and run.metrics["loss/a"] == run.history[-1]["loss/a"]
    D = 2e6  # 10x the runs' last 204,800 tokens
    res = fit_across_scale(ScaleFitConfig(store=str(store), method="bimix", target_tokens=D, kl=0.0))
    assert res["n_runs"] == 8
    laws = res["laws"]["bimix"]
    assert [laws[f"loss/{d}"]["beta"] for d in DOMAINS] == pytest.approx(BETA, abs=1e-3)
    assert [laws[f"loss/{d}"]["alpha"] for d in DOMAINS] == pytest.approx(ALPHA, abs=1e-3)
    w = np.array([res["proposal"]["weights"][d] for d in DOMAINS])
    assert res["proposal"]["predicted"] == pytest.approx(float(law(w, D).mean()), rel=1e-3)
    # the step law (mixing-law's nested use) reads the same histories, one rung: no size law
    res = fit_across_scale(ScaleFitConfig(store=str(store), method="mixing-law", target_tokens=D))
    assert res["sizes"] == [1e6] and len(res["laws"]["step"]) == 3


def test_checkpoints_by_step_need_the_tokens_of_a_step(tmp_path: Path, workspace: Path) -> None:
    ratios, metrics = write_tables(tmp_path, by="step")
    store = RunStore(tmp_path / "t.sqlite")
    with pytest.warns(MixoptWarning, match=r"the checkpoints are by step alone.*delete them \(`mixopt runs "
                                           r"delete --prefix ratios:`\) and import the tables again with "
                                           r"--tokens-per-step N"):
        import_table(store, ratios=ratios, metrics=metrics, evaluator="mine:train",
                     fidelity={"rung": "tiny", "params": 1e6})
    with pytest.raises(MixoptError, match=r"run ratios:r0's checkpoints have no token counts \(imported by "
                                          r"step alone\); import its tables again with --tokens-per-step N"):
        fit_across_scale(ScaleFitConfig(store=str(store.path), method="bimix"))
    again = RunStore(tmp_path / "again.sqlite")
    summary = import_table(again, ratios=ratios, metrics=metrics, evaluator="mine:train",
                           fidelity={"rung": "tiny", "params": 1e6}, tokens_per_step=TOKENS_PER_STEP)
    assert summary["checkpoints"] == 32
    first = again.get("ratios:r1").history[0]
    assert first["step"] == 100 and first["tokens"] == 100 * TOKENS_PER_STEP
    res = fit_across_scale(ScaleFitConfig(store=str(again.path), method="bimix", target_tokens=2e6, kl=0.0))
    assert [res["laws"]["bimix"][f"loss/{d}"]["beta"] for d in DOMAINS] == pytest.approx(BETA, abs=1e-3)
    (tmp_path / "by-tokens").mkdir()
    _, by_tokens = write_tables(tmp_path / "by-tokens")
    for table, has in ((by_tokens, "has a tokens column already"),
                       (tmp_path / "one.csv", "has one row per run, not a row per run and step")):
        if table.name == "one.csv":
            table.write_text("run,loss/a\n" + "".join(f"r{i},1.5\n" for i in range(8)))
        with pytest.raises(MixoptError, match=r"--tokens-per-step turns a checkpoint table's steps into "
                                              rf"tokens, and .* {has}; leave it out"):
            import_table(again, ratios=ratios, metrics=table, prefix="u:", tokens_per_step=256)


def test_imported_runs_without_a_model_size_are_told_how_to_give_one(tmp_path: Path, workspace: Path) -> None:
    ratios, metrics = write_tables(tmp_path)
    store = RunStore(tmp_path / "t.sqlite")
    import_table(store, ratios=ratios, metrics=metrics, evaluator="mine:train", fidelity={"rung": "1m"})
    unknown = (r"run ratios:r0: the model size of imported runs of rung '1m' is unknown \(no params, and "
               r"'1m' is no proxy rung of mixopt's\); give it with `mixopt runs import … --fidelity "
               r"rung=NAME,params=N`")
    with pytest.raises(MixoptError, match=unknown):
        fit_across_scale(ScaleFitConfig(store=str(store.path), method="bimix"))
    json.dumps(store.get("ratios:r0").history)  # plain JSON, as the store keeps it


def test_what_a_qa_pass_of_checkpoint_tables_found(tmp_path: Path, workspace: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    ratios, metrics = write_tables(tmp_path, shuffled=False)
    head, *rows = metrics.read_text().splitlines()
    # an evaluation before training (0 tokens) is kept, and no law in tokens is fitted through it;
    # a metric missing at the first checkpoint is missing there only (it had been missing everywhere)
    zero = [f"r{i},0,9.0,9.0,9.0" for i in range(8)]
    first = [",".join(r.split(",")[:3] + ["", *r.split(",")[4:]]) if int(r.split(",")[1]) == STEPS[0] * 256
             else r for r in rows]  # loss/b missing at each run's first checkpoint after 0 tokens
    metrics.write_text("\n".join([head, *zero, *first]) + "\n")
    store = tmp_path / "t.sqlite"
    assert main(["runs", "import", "--ratios", str(ratios), "--metrics", str(metrics), "--store", str(store),
                 "--evaluator", "mine:train", "--fidelity", "params=1e6"]) is None
    assert "40 checkpoints" in capsys.readouterr().out
    res = fit_across_scale(ScaleFitConfig(store=str(store), method="mixing-law", target_tokens=4e5))
    assert res["sizes"] == [1e6] and res["rungs"] == {"1e+06": "1000000 params"}  # the size alone is a rung
    bimix = fit_across_scale(ScaleFitConfig(store=str(store), method="bimix", target_tokens=4e5, kl=0.0))
    assert [bimix["laws"]["bimix"][f"loss/{d}"]["beta"] for d in DOMAINS] == pytest.approx(BETA, abs=1e-3)
    # ... and beside runs with no history, which are said to be left out; imports and a search's runs
    # cannot be fitted as one, and the way out is said
    import_table(RunStore(store), ratios=ratios, metrics=write_one_row(tmp_path, 8), prefix="one:",
                 evaluator="mine:train")
    with pytest.warns(MixoptWarning, match=r"8 of the 16 finished runs have no checkpoint history"):
        fit_across_scale(ScaleFitConfig(store=str(store), method="bimix", kl=0.0))
    # a target far past the runs is warned of
    far = r"--target-tokens 1e\+10 is 4\.88e\+04× the runs' last checkpoint"
    with pytest.warns(MixoptWarning, match=far):
        fit_across_scale(ScaleFitConfig(store=str(store), method="bimix", target_tokens=1e10, kl=0.0))
    # a step law short of points names the run (it had said "curve 0")
    gaps = tmp_path / "gaps.csv"
    cells = [r.split(",") for r in rows]
    for c in cells:  # run r0 measured loss/a at its first checkpoint only
        if c[0] == "r0" and float(c[1]) > STEPS[0] * TOKENS_PER_STEP:
            c[2] = ""
    gaps.write_text("\n".join([head, *(",".join(c) for c in cells)]) + "\n")
    import_table(RunStore(tmp_path / "g.sqlite"), ratios=ratios, metrics=gaps, fidelity={"params": 1e6})
    with pytest.raises(MixoptError, match=r"step law \(loss/a, 1e\+06 params\): run ratios:r0 has 1 distinct "
                                          r"scale\(s\) with a value"):
        fit_across_scale(ScaleFitConfig(store=str(tmp_path / "g.sqlite"), target_tokens=4e5))
    # the checkpoints' columns: negative, or tokens and steps in two orders, are refused
    bad = tmp_path / "bad.csv"
    bad.write_text("run,tokens,step,loss/a\nr0,100,1,2.0\nr0,200,3,1.9\nr0,300,2,1.8\n")
    with pytest.raises(MixoptError, match=r"run r0's tokens and steps put its checkpoints in different "):
        read_run_tables(ratios, bad)
    bad.write_text("run,tokens,loss/a\nr0,100,2.0\nr0,-5,1.9\n")
    with pytest.raises(MixoptError, match=r"column 'tokens' .* empty, negative or not a finite number in "
                                          r"run\(s\) r0"):
        read_run_tables(ratios, bad)
    # checkpoints 1 token apart are two checkpoints (they had been compared to 6 digits)
    bad.write_text("run,tokens,loss/a\nr0,4000000,2.0\nr0,4000001,1.9\n")
    assert len(read_run_tables(ratios, bad).history["r0"]) == 2


def write_one_row(folder: Path, n: int) -> Path:
    path = folder / "one.csv"
    path.write_text("run,loss/a,loss/b,loss/c\n" + "".join(f"r{i},3.0,3.1,3.2\n" for i in range(n)))
    return path


def test_imports_say_what_fit_along_checkpoints_needs(tmp_path: Path, workspace: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    ratios, metrics = write_tables(tmp_path, by="step")
    store = tmp_path / "t.sqlite"
    # --tokens-per-step as counts are written; a table with no model size is warned of at import
    with pytest.warns(MixoptWarning, match=r"the model size of imported runs of rung '1m' is unknown \(no "
                                           r"params, and '1m' is no proxy rung of mixopt's\)"):
        import_table(RunStore(store), ratios=ratios, metrics=metrics, fidelity={"rung": "1m"},
                     tokens_per_step=1000)
    assert main(["runs", "import", "--ratios", str(ratios), "--metrics", str(metrics), "--store",
                 str(tmp_path / "u.sqlite"), "--tokens-per-step", "1k", "--fidelity", "params=1e6",
                 "--evaluator", "mine:train"]) is None
    assert RunStore(tmp_path / "u.sqlite").get("ratios:r0").history[0]["tokens"] == 100_000
    # a fit that is refused says so in one line, its notes on the runs held back
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(["fit", "--fidelity-law", "--store", str(tmp_path / "u.sqlite"), "--method", "bimix",
              "--min-weight", "0.4"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "--min-weight 0.4" in err[0], err


def test_what_the_review_of_checkpoint_tables_found(tmp_path: Path, workspace: Path) -> None:
    ratios, metrics = write_tables(tmp_path, shuffled=False)
    head, *rows = metrics.read_text().splitlines()
    # runs that stopped early are said by fit, with the spread of their last rows
    short = tmp_path / "short.csv"
    short.write_text("\n".join([head, *(r for r in rows if not (r.startswith("r0,") and
                                                              int(r.split(",")[1]) > 51200))]) + "\n")
    early = r"the last rows are at 5\.12e\+04 to 2\.05e\+05 tokens, so runs that stopped early are fitted"
    with pytest.warns(MixoptWarning, match=early):
        fit_tables(FitConfig(ratios=ratios, metrics=short, target="loss/a", method="linear", cv=2))
    # a run missing a metric at its last checkpoint is not compared there by an earlier value
    gap = tmp_path / "gap.csv"
    gap.write_text("\n".join([head, *(",".join(r.split(",")[:2] + [""] + r.split(",")[3:])
                                      if r.startswith("r1,") and int(r.split(",")[1]) == 204800 else r
                                      for r in rows)]) + "\n")
    store = RunStore(tmp_path / "gap.sqlite")
    import_table(store, ratios=ratios, metrics=gap, evaluator="mine:train", fidelity={"params": 1e6})
    last = r"run\(s\) ratios:r1 have no finite loss/a at their last checkpoint, where the runs are compared"
    with pytest.raises(MixoptError, match=last):
        fit_across_scale(ScaleFitConfig(store=str(store.path), method="mixing-law"))
    assert fit_across_scale(ScaleFitConfig(store=str(store.path), method="mixing-law", target_tokens=3e5))
    # a rung name of mixopt's without params is taken at that rung's size, and said; one rung name
    # given two sizes is refused
    other = RunStore(tmp_path / "other.sqlite")
    with pytest.warns(MixoptWarning, match=r"imported runs of rung 'm' are taken at the size of mixopt's"):
        import_table(other, ratios=ratios, metrics=metrics, evaluator="mine:train", fidelity={"rung": "m"})
    import_table(other, ratios=ratios, metrics=metrics, evaluator="mine:train", prefix="big:",
                 fidelity={"rung": "m", "params": 6e7})
    with pytest.raises(MixoptError, match=r"rung 'm' holds runs of 2 model sizes \(4\.9.*e\+06, 6e\+07\): "
                                          r"name the searches to use with --search, or give imported tables"):
        fit_across_scale(ScaleFitConfig(store=str(other.path), method="bimix"))


def test_a_stored_target_of_mean_keeps_naming_its_domain() -> None:
    """Before 2026-12-06 `--target mean` could only name a domain called mean; a search stored then
    resumes with that domain, and a new one stores the mean over all domains as the default."""
    from mixopt.search.config import SearchConfig

    old = SearchConfig.from_dict({"evaluator": "m:f", "domains": ["a", "mean"], "target": "mean"})
    assert old.target == "mean=1"
    new = SearchConfig(evaluator="m:f", domains=("a", "mean"), target="mean")
    assert new.as_dict()["target"] is None and SearchConfig.from_dict(new.as_dict()).target is None
    # stored `mean` that night, before it was stored as None, where no domain had that name: the mean
    that_night = {"evaluator": "m:f", "domains": ["a", "b"], "target": "mean"}
    assert SearchConfig.from_dict(that_night).target is None


def test_imports_named_as_groups_are_fitted_apart_and_wandb_steps_are_read(
        tmp_path: Path, workspace: Path) -> None:
    """`runs import --search NAME` names the runs, so one store can hold two tables that a law must
    not fit as one (two evaluators), each picked by --search; W&B's `_step` is the step column."""
    ratios, metrics = write_tables(tmp_path, by="step")
    metrics.write_text(metrics.read_text().replace("run,step,", "run,_step,", 1))
    store = RunStore(tmp_path / "t.sqlite")
    summary = import_table(store, ratios=ratios, metrics=metrics, evaluator="mine:train", search="ours",
                           fidelity={"params": 1e6}, tokens_per_step=TOKENS_PER_STEP)
    assert summary["search"] == "ours" and summary["checkpoints"] == 32
    first = law(store.get("ratios:r0").vector(DOMAINS), 100 * TOKENS_PER_STEP)
    assert store.get("ratios:r0").history[0] == pytest.approx(
        {"step": 100, "tokens": 100 * TOKENS_PER_STEP, **dict(zip([f"loss/{d}" for d in DOMAINS], first,
                                                                  strict=True))})
    import_table(store, ratios=ratios, metrics=metrics, evaluator="theirs:train", search="theirs",
                 fidelity={"params": 1e6}, tokens_per_step=TOKENS_PER_STEP, prefix="t:")
    assert store.unrecorded_search_ids() == {"ours": 8, "theirs": 8}
    blank = tmp_path / "blank.csv"  # an empty cell is named by the file's column, not the name it is read as
    head, first, *rest = metrics.read_text().splitlines()
    run, _, tail = first.split(",", 2)
    blank.write_text("\n".join([head, f"{run},,{tail}", *rest]) + "\n")
    with pytest.raises(MixoptError, match=r"column '_step' orders each run's checkpoints, and it is empty"):
        read_run_tables(ratios, blank)
    with pytest.raises(MixoptError, match=r"the runs come from 2 evaluators .*name its searches with "):
        fit_across_scale(ScaleFitConfig(store=str(store.path), method="bimix", kl=0.0))
    res = fit_across_scale(ScaleFitConfig(store=str(store.path), method="bimix", kl=0.0,
                                          searches=("theirs",), target_tokens=2e6))
    assert res["n_runs"] == 8
    assert [res["laws"]["bimix"][f"loss/{d}"]["beta"] for d in DOMAINS] == pytest.approx(BETA, abs=1e-3)


def test_an_imported_table_exports_and_lists_in_its_own_order(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """A QA pass: Olmix's run ids are random strings, and `runs export` wrote an import's runs in
    their ids' order, so a round trip shuffled the table and `fit --cv` (whose folds follow the rows)
    scored 0.862 on it where the original scored 0.844. The table's order is kept."""
    from mixopt.search.imports import export_tables

    ids = ["zq81", "0a5n", "m10", "m9", "b"]
    (tmp_path / "r.csv").write_text("run,name,index,a,b\n" + "".join(
        f"{r},n{i},{i},{0.1 + 0.2 * i},{0.9 - 0.2 * i}\n" for i, r in enumerate(ids)))
    (tmp_path / "m.csv").write_text("run,name,index,loss/a\n" + "".join(
        f"{r},n{i},{i},{1 + i}\n" for i, r in enumerate(ids)))
    store = RunStore(tmp_path / "s.sqlite")
    import_table(store, ratios=tmp_path / "r.csv", metrics=tmp_path / "m.csv", evaluator="mine:train",
                 prefix="", search="olmixlike")
    export_tables(store, ratios=tmp_path / "r2.csv", metrics=tmp_path / "m2.csv", searches=["olmixlike"])
    assert (tmp_path / "r2.csv").read_text() == (tmp_path / "r.csv").read_text()
    assert main(["runs", "list", "--store", str(store.path), "--json"]) is None
    assert [r["run_id"] for r in json.loads(capsys.readouterr().out)] == ids
    main(["runs", "list", "--help"])  # (it had said "one import's runs by run id")
    assert "an import's in its table's order" in " ".join(capsys.readouterr().out.split())


def test_a_search_exports_in_run_id_order_whatever_order_its_runs_started(tmp_path: Path) -> None:
    """A review: `runs export` wrote a search's runs in the order their trials started, which
    --concurrency 2 and retries change from one run of the same search to the next, so a rerun's
    tables came back in another order and `fit --cv` (folds follow the rows) gave other figures. A
    search's runs come in run-id order, after the import it reused, whose table order is kept."""
    from mixopt.search.imports import export_tables
    from mixopt.store import RunRecord

    store = RunStore(tmp_path / "s.sqlite")
    key = json.dumps({"evaluator": "e:f", "rung": "xs"})

    def run(rid: str, search: str, at: str, role: str = "swarm") -> RunRecord:
        return RunRecord(run_id=rid, search_id=search, weights={"a": 0.5, "b": 0.5}, fidelity={},
                         fidelity_key=key, status="ok", metrics={"loss/a": 1.0}, role=role,
                         created=f"2026-01-01T00:00:{at}+00:00")

    store.add([run("zz", "imp", "00.000001", "import"), run("aa", "imp", "00.000002", "import"),
               # started as two trials at once and a retry: s0001 after s0002, s0000's retry last
               run("srch-s0002-a1", "srch", "01.000"), run("srch-s0001-a1", "srch", "01.001"),
               run("srch-s0000-a2", "srch", "02.000")])
    store.create_search("srch", {"method": "regmix"}, {"reused": ["zz", "aa"]})
    export_tables(store, ratios=tmp_path / "r.csv", metrics=tmp_path / "m.csv", searches=["srch"])
    assert read_run_tables(tmp_path / "r.csv", tmp_path / "m.csv").run_ids == [
        "zz", "aa", "srch-s0000-a2", "srch-s0001-a1", "srch-s0002-a1"]


def test_runs_export_as_tables_that_import_and_fit_read_back(tmp_path: Path, workspace: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """`runs export` writes Olmix's layout (run, name, index + a column each): `fit --ratios` and
    `runs import` read it as it is, checkpoints included, so a store's runs travel as tables."""
    from mixopt.search.imports import export_tables

    ratios, metrics = write_tables(tmp_path)
    store = RunStore(tmp_path / "t.sqlite")
    import_table(store, ratios=ratios, metrics=metrics, evaluator="mine:train", search="ours",
                 fidelity={"params": 1e6})
    import_table(store, ratios=ratios, metrics=write_one_row(tmp_path, 8), prefix="one:",
                 evaluator="mine:train", fidelity={"params": 1e6})
    out = tmp_path / "out"
    summary = export_tables(store, ratios=out / "r.csv", metrics=out / "m.csv", searches=["ours"],
                            checkpoints=True)
    assert summary["runs"] == 8 and summary["rows"] == 32 and summary["checkpoints"] == ["tokens"]
    assert (out / "r.csv").read_text().splitlines()[0] == "run,name,index,a,b,c"
    back = RunStore(tmp_path / "back.sqlite")
    import_table(back, ratios=out / "r.csv", metrics=out / "m.csv", evaluator="mine:train", prefix="",
                 fidelity={"params": 1e6})
    for run in store.runs(search_id="ours"):
        again = back.get(run.run_id)
        assert again.history == [pytest.approx(h) for h in run.history]
        assert again.metrics == pytest.approx(run.metrics)
        assert again.vector(DOMAINS) == pytest.approx(run.vector(DOMAINS), abs=1e-15)
    res = fit_across_scale(ScaleFitConfig(store=str(back.path), method="bimix", target_tokens=2e6, kl=0.0))
    assert [res["laws"]["bimix"][f"loss/{d}"]["beta"] for d in DOMAINS] == pytest.approx(BETA, abs=1e-3)
    # every run's final metrics, by default; runs without a history are left out of --checkpoints, said
    assert main(["runs", "export", "--store", str(store.path), "--ratios", str(out / "r2.csv"), "--metrics",
                 str(out / "m2.csv"), "--role", "import", "--json"]) is None
    assert json.loads(capsys.readouterr().out)["runs"] == 16
    table = read_run_tables(out / "r2.csv", out / "m2.csv")
    assert len(table.run_ids) == 16 and table.names[0] == "r0" and not table.history
    with pytest.warns(MixoptWarning, match=r"8 of the 16 runs have no checkpoint history .* left out"):
        res = export_tables(store, ratios=out / "r3.csv", metrics=out / "m3.csv", checkpoints=True)
    assert res["runs"] == 8
    refusals = [
        (dict(status="done"), r"--status 'done' is unknown; use one of ok, diverged"),
        (dict(role="baseline"), r"--role 'baseline' is unknown; use one of swarm, validate, import"),
        (dict(searches=["nosuch"]), r"no search named 'nosuch'"),
        (dict(status="failed"), r"no failed run in .*t\.sqlite; `mixopt runs list` lists the runs"),
        (dict(metrics=out / "r4.csv"), r"--ratios and --metrics are both .*r4\.csv; give each table its own"),
        (dict(status="diverged"), r"no diverged run in"),
        (dict(ratios=store.path), r"--ratios .*t\.sqlite is the --store file this command reads"),
        (dict(searches=["ours"], checkpoints=True, metrics=out / "x" / "m.csv", ratios=out / "x" / "r.csv"),
         None),
    ]
    for kw, why in refusals:
        args = {"ratios": out / "r4.csv", "metrics": out / "m4.csv", **kw}
        if why is None:
            assert export_tables(store, **args)["rows"] == 32
            continue
        with pytest.raises(MixoptError, match=why):
            export_tables(store, **args)
    assert not (out / "r4.csv").exists() and not (out / "m4.csv").exists()
    other = RunStore(tmp_path / "two.sqlite")
    import_table(other, ratios=ratios, metrics=metrics, evaluator="mine:train", fidelity={"params": 1e6})
    (tmp_path / "r5.csv").write_text("run,a,b\nq,0.5,0.5\n")
    (tmp_path / "m5.csv").write_text("run,loss/a\nq,1.0\n")
    import_table(other, ratios=tmp_path / "r5.csv", metrics=tmp_path / "m5.csv", evaluator="mine:train")
    with pytest.raises(MixoptError, match=r"cover different domain sets, and a table has one; export one "):
        export_tables(other, ratios=out / "r4.csv", metrics=out / "m4.csv")
    # runs of two fidelities (the same mixtures at two sizes) would read as repeats of one run
    import_table(store, ratios=ratios, metrics=metrics, evaluator="mine:train", fidelity={"params": 4e6},
                 prefix="big:")
    with pytest.raises(MixoptError, match=r"measured at 2 fidelities \(rungs, or evaluators\), and a table "
                                          r"has no column for it"):
        export_tables(store, ratios=out / "r4.csv", metrics=out / "m4.csv")
    # metrics named as id columns could not be read back; runs with no metric make no table
    from mixopt.store import RunRecord

    odd = RunStore(tmp_path / "odd.sqlite")
    odd.add(RunRecord(run_id="q", weights={"a": 0.5, "b": 0.5}, fidelity={}, fidelity_key="{}", status="ok",
                      metrics={"loss/a": 1.0, "index": 2.0}))  # an evaluator's own "index"
    with pytest.raises(MixoptError, match=r"metric 'index' has the name of a run table's id column"):
        export_tables(odd, ratios=out / "r4.csv", metrics=out / "m4.csv")
    odd.add(RunRecord(run_id="f", weights={"a": 0.5, "b": 0.5}, fidelity={}, fidelity_key="{}",
                      status="failed", error="boom"))
    with pytest.raises(MixoptError, match=r"the failed runs of .* hold no metric, so the metrics table "):
        export_tables(odd, ratios=out / "r4.csv", metrics=out / "m4.csv", status="failed")
    assert not (out / "r4.csv").exists() and not (out / "m4.csv").exists()


def test_a_search_exports_the_runs_it_fitted_over_every_domain(workspace: Path, tmp_path: Path) -> None:
    """A search's runs are the ones it fitted, reused ones included (a QA pass: a search of reused
    runs only had nothing to export); a reuse search's runs are written as they trained."""
    from mixopt.reuse import key_entry
    from mixopt.search.imports import export_tables
    from mixopt.store import RunRecord

    store = RunStore(tmp_path / "s.sqlite")
    key = json.dumps({"evaluator": "e:f", "rung": "xs"})
    grouped = json.dumps({"evaluator": "e:f", "rung": "xs", **key_entry(type("G", (), {
        "name": "reused", "ratios": {"a": 0.25, "b": 0.75}})())})
    earlier = [RunRecord(run_id=f"old{i}", search_id="first", weights={"a": 0.2, "b": 0.3, "c": 0.5},
                         fidelity={}, fidelity_key=key, status="ok", metrics={"loss/a": 1.0 + i},
                         role="import", created="2026-01-01T00:00:00.000+00:00") for i in range(3)]
    store.add(earlier)
    store.create_search("second", {"method": "regmix"}, {"reused": ["old0", "old1"],
                                                          "validation_reused": {"v0": "old2"}})
    store.add(RunRecord(run_id="new0", search_id="second", weights={"a": 0.6, "b": 0.2, "c": 0.2},
                        fidelity={}, fidelity_key=key, status="ok", metrics={"loss/a": 0.5}))
    res = export_tables(store, ratios=tmp_path / "r.csv", metrics=tmp_path / "m.csv", searches=["second"])
    assert res["runs"] == 4 and read_run_tables(tmp_path / "r.csv", tmp_path / "m.csv").run_ids == [
        "old0", "old1", "old2", "new0"]  # oldest first, as `runs list` lists them
    # --role picks the search's own runs by role: the reused ones were fitted as its swarm (a review)
    assert export_tables(store, ratios=tmp_path / "r.csv", metrics=tmp_path / "m.csv", searches=["second"],
                         role="swarm")["runs"] == 3
    assert export_tables(store, ratios=tmp_path / "r.csv", metrics=tmp_path / "m.csv", searches=["second"],
                         prefix="old")["runs"] == 3
    assert export_tables(store, ratios=tmp_path / "r.csv", metrics=tmp_path / "m.csv", searches=["second"],
                         role="validate")["runs"] == 1  # the validation run it borrowed (a QA pass)
    with pytest.raises(MixoptError, match=r"no ok run of role validate in search first"):
        export_tables(store, ratios=tmp_path / "r.csv", metrics=tmp_path / "m.csv", searches=["first"],
                      role="validate")
    store.create_search("third", {"method": "regmix"}, {"reused": []})
    store.add(RunRecord(run_id="g0", search_id="third", weights={"reused": 0.4, "c": 0.6}, fidelity={},
                        fidelity_key=grouped, status="ok", metrics={"loss/a": 0.7}))
    with pytest.warns(MixoptWarning, match=r"1 run\(s\) of a search that reused a mixture are written over "
                                           r"every domain, as they trained"):
        export_tables(store, ratios=tmp_path / "r.csv", metrics=tmp_path / "m.csv", searches=["third"])
    table = read_run_tables(tmp_path / "r.csv", tmp_path / "m.csv")
    assert dict(zip(table.domains, table.X[0], strict=True)) == pytest.approx({"a": 0.1, "b": 0.3, "c": 0.6})
    # checkpoints counted in tokens by some runs and in steps by others have no one column to order by
    store.add([RunRecord(run_id=f"h{i}", search_id="hist", weights={"a": 0.5, "b": 0.5, "c": 0.0},
                         fidelity={}, fidelity_key=key, status="ok", metrics={"loss/a": 1.0},
                         history=[{"tokens" if i else "step": 10, "loss/a": 1.0}]) for i in range(2)])
    with pytest.raises(MixoptError, match=r"are not all counted in tokens, nor all in steps"):
        export_tables(store, ratios=tmp_path / "r.csv", metrics=tmp_path / "m.csv", searches=["hist"],
                      checkpoints=True)


def test_fit_across_scale_draws_its_laws(tmp_path: Path, workspace: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """`fit --fidelity-law --report DIR`: each rung's runs along their checkpoints with the step law
    carried to the target, each mixture's size law, and report.md with the laws' figures."""
    ratios, metrics = write_tables(tmp_path)
    store = tmp_path / "t.sqlite"
    for params, prefix in (("1e6", "s:"), ("4e6", "m:")):
        scaled = tmp_path / f"m{params}.csv"  # the larger model: 0.8 times the smaller's losses
        head, *rows = metrics.read_text().splitlines()
        k = 1.0 if params == "1e6" else 0.8
        scaled.write_text("\n".join([head, *(",".join([*r.split(",")[:2], *(repr(float(v) * k)
                                                                              for v in r.split(",")[2:])])
                                              for r in rows)]) + "\n")
        main(["runs", "import", "--ratios", str(ratios), "--metrics", str(scaled), "--store", str(store),
              "--evaluator", "mine:train", "--fidelity", f"params={params}", "--prefix", prefix])
    capsys.readouterr()
    rep = tmp_path / "rep"
    assert main(["fit", "--fidelity-law", "--store", str(store), "--method", "mixing-law", "--target-tokens",
                 "2e6", "--target-size", "1.6e7", "--size-exponent", "0.3", "--report", str(rep),
                 "--json"]) is None
    doc = json.loads(capsys.readouterr().out)
    assert doc["report"] == [str(rep / n) for n in ("steps.png", "sizes.png", "report.md")]
    assert all((rep / n).stat().st_size > 5000 for n in ("steps.png", "sizes.png"))
    md = (rep / "report.md").read_text()
    beta = doc["laws"]["size"]["loss/a"]["beta"]
    assert f"| size | every rung | loss/a | {beta:.3f} (fixed by --size-exponent) |" in md
    assert f"**{doc['proposal']['predicted']:.4f}**" in md and "| step, in tokens | 1e+06 | loss/b |" in md
    assert "## Mixtures drawn" in md and "| 1 | " in md
    # bimix draws its one law; a fit with no target scale fits no law to draw
    res = fit_across_scale(ScaleFitConfig(store=str(store), method="bimix", target_tokens=2e6, kl=0.0,
                                          report=rep))
    assert [Path(p).name for p in res["report"]] == ["steps.png", "report.md"]
    with pytest.warns(MixoptWarning, match="no --target-tokens"):
        res = fit_across_scale(ScaleFitConfig(store=str(store), method="bimix", kl=0.0, report=rep))
    assert [Path(p).name for p in res["report"]] == ["steps.png", "report.md"]  # along the checkpoints
    md = (rep / "report.md").read_text()
    assert "no --target-tokens: bimix is fitted over the largest rung's checkpoints" in md  # its warning
    res = fit_across_scale(ScaleFitConfig(store=str(store), method="mixing-law", target_tokens=2e6,
                                          report=rep))
    assert [Path(p).name for p in res["report"]] == ["steps.png", "report.md"]  # one rung's law: no sizes.png
    with pytest.warns(MixoptWarning, match="no --target-size or --target-tokens"):
        res = fit_across_scale(ScaleFitConfig(store=str(store), method="mixing-law", report=rep))
    assert [Path(p).name for p in res["report"]] == ["report.md"]
    assert "Nothing to draw: the step law is drawn with --target-tokens" in (rep / "report.md").read_text()
    # a target size below the largest rung: the size law is drawn to it, ★ at it (a review)
    res = fit_across_scale(ScaleFitConfig(store=str(store), method="mixing-law", target_tokens=1e5,
                                          target_size=2e6, size_exponent=0.3, report=rep))
    assert [Path(p).name for p in res["report"]] == ["steps.png", "sizes.png", "report.md"]
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("mine")
    with pytest.raises(MixoptError, match=r"holds other files \(keep\.txt\)"):
        fit_across_scale(ScaleFitConfig(store=str(store), method="bimix", target_tokens=2e6,
                                        report=tmp_path / "busy"))


def test_a_proxy_ladders_step_law_is_drawn_in_the_lr_areas(tmp_path: Path, workspace: Path) -> None:
    """mixopt's proxy runs know their schedules, so their step law runs in the learning rate's areas:
    drawn at each run's checkpoints (what was fitted) and for whole runs of each length (what is
    carried to the target); a review had found the second alone, which missed the points it fits."""
    import shutil

    store = tmp_path / "lengths.sqlite"  # a copy: the kept store is not written
    shutil.copy(Path(__file__).parents[1] / "docs" / "data" / "lengths-seed0.sqlite", store)
    res = fit_across_scale(ScaleFitConfig(store=str(store), searches=("lengths-300000",), method="gp",
                                          target_tokens=2.4e6, report=tmp_path / "rep"))
    assert [Path(p).name for p in res["report"]] == ["steps.png", "report.md"]
    assert (tmp_path / "rep" / "steps.png").stat().st_size > 5000
    assert "| step, in learning-rate area, C = " in (tmp_path / "rep" / "report.md").read_text()
