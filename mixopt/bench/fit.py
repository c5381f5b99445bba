"""``mixopt bench fit``: how fast RegMix fits and proposes, and how well it ranks held-out runs.

On RegMix's 1M-parameter Pile swarm (../shared/data/runs/regmix-pile-1m): time to fit the
LightGBM model on the 512 training runs (goal ≤ 5 s), time to propose over 1M candidates (goal
≤ 10 s; also over Olmix's 64 domains when ../shared/data/runs/olmix-64dom-512 is there), and the
Spearman correlation of its predictions with the 256 test runs' ``metric/the_pile_pile_cc_val_loss``
(goal ≥ 0.99; RegMix's notebook reports 0.990). The scorer's speed is also given as a ratio to
LightGBM's own predict on the same rows, measured in the same run, since the machine is shared.

Two Spearman figures are reported: mixopt's pipeline (rows renormalised to sum to 1, as every table
mixopt reads) and RegMix's own features (the file's 3-decimal weights as they are, which sum to
0.996–1.003). Nothing here is tuned on the test runs.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from mixopt.cpus import usable_cpus
from mixopt.errors import MixoptError
from mixopt.paths import REPO_ROOT

SHARED_RUNS = REPO_ROOT.parent / "shared" / "data" / "runs"
TARGET = "metric/the_pile_pile_cc_val_loss"
GOALS = {"fit_seconds": 5.0, "propose_seconds": 10.0, "spearman": 0.99}


def _timed(fn: Any) -> tuple[Any, float]:
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def _timed_cpu(fn: Any) -> tuple[Any, float, float]:
    """(result, wall seconds, CPU seconds of this process): on a shared machine the CPU time shows
    the work done, whatever other jobs took from the cores meanwhile."""
    c = time.process_time()
    out, wall = _timed(fn)
    return out, wall, time.process_time() - c


def regmix_tables(data: str | Path | None = None) -> dict[str, Path]:
    """RegMix's four 1M tables in ``data`` (its ``regmix-pile-1m`` folder; default: the project's
    shared copy beside this checkout).

    Raises:
        MixoptError: a table is missing (said before any benchmark runs).
    """
    folder = Path(data) if data is not None else SHARED_RUNS / "regmix-pile-1m"
    files = {n: folder / f"{n}.csv" for n in ("train_mixture_1m", "train_pile_loss_1m", "test_mixture_1m",
                                               "test_pile_loss_1m")}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        # an installed mixopt has no checkout beside it: the tables are the user's to point at
        raise MixoptError(f"RegMix's 1M tables are missing ({', '.join(missing)}); give --data the folder "
                          "holding regmix-pile-1m/ (RegMix's published run tables)")
    return files


def bench_fit(
    *,
    data: str | Path | None = None,
    olmix: str | Path | None = None,
    n_candidates: int = 1_000_000,
    k: int = 128,
    scorer_rows: int = 50_000,
) -> dict[str, Any]:
    """Run the benchmark; returns the figures and printable ``rows`` (name, value, goal).

    Raises:
        MixoptError: RegMix's tables are not in ``data``.
    """
    import warnings

    import polars as pl
    from scipy.stats import spearmanr

    from mixopt.fitters.regmix import RegMixFitter
    from mixopt.proposers import TopKProposer
    from mixopt.space import SearchSpace
    from mixopt.tables import read_run_tables

    load = os.getloadavg()[0]
    files = regmix_tables(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the renormalisation warnings are expected here
        train = read_run_tables(files["train_mixture_1m"], files["train_pile_loss_1m"])
        test = read_run_tables(files["test_mixture_1m"], files["test_pile_loss_1m"])
    y, y_test = train.target(TARGET), test.target(TARGET)

    model, fit_s = _timed(lambda: RegMixFitter().fit(train.X, y))
    spearman = float(spearmanr(model.predict(test.X), y_test)[0])
    raw = [pl.read_csv(files[n]).drop("index").to_numpy() for n in ("train_mixture_1m", "test_mixture_1m")]
    spearman_raw = float(spearmanr(RegMixFitter().fit(raw[0], y).predict(raw[1]), y_test)[0])

    space = SearchSpace(domains=train.domains)
    proposer = TopKProposer(n_candidates=n_candidates, k=k, random_state=0)
    model.predict(test.X[:1].repeat(8192, axis=0))  # compile the scorer outside the timing (numba JIT)
    proposal, propose_s, propose_cpu = _timed_cpu(lambda: proposer.propose(model, space))

    cand = np.random.default_rng(1).dirichlet(np.full(len(train.domains), 0.5), scorer_rows)
    fast, fast_s = _timed(lambda: model.predict(cand))
    ref, ref_s = _timed(lambda: model.models_[0].booster_.predict(cand))
    if not np.allclose(fast, ref, rtol=0, atol=1e-9):
        raise AssertionError("the compiled scorer disagrees with LightGBM's predict")

    out: dict[str, Any] = {
        "fit_seconds": fit_s, "propose_seconds": propose_s, "propose_cpu_seconds": propose_cpu,
        "n_candidates": n_candidates, "cores": usable_cpus(), "load_before": load,
        "spearman": spearman, "spearman_regmix_features": spearman_raw,
        "scorer_speedup_vs_lightgbm": ref_s / fast_s, "proposal_predicted": proposal.predicted,
        "n_train": len(y), "n_test": len(y_test), "n_domains": len(train.domains),
    }
    rows = [
        {"name": f"fit regmix on {len(y)} runs (s)", "value": f"{fit_s:.2f}", "goal": "≤ 5",
         "met": fit_s <= GOALS["fit_seconds"]},
        {"name": f"propose over {n_candidates:,} candidates, {len(train.domains)} domains (s)",
         "value": f"{propose_s:.2f} (CPU {propose_cpu:.1f})", "goal": "≤ 10",
         "met": propose_s <= GOALS["propose_seconds"]},
    ]
    olmix_dir = Path(olmix) if olmix is not None else SHARED_RUNS / "olmix-64dom-512"
    if (olmix_dir / "full_recomputation_ratios.csv").is_file():
        ot = read_run_tables(olmix_dir / "full_recomputation_ratios.csv",
                             olmix_dir / "full_recomputation_metrics.csv")
        om = RegMixFitter().fit(ot.X, ot.target("mean"))
        om.predict(ot.X[:1].repeat(8192, axis=0))
        _, o_s, o_cpu = _timed_cpu(lambda: TopKProposer(n_candidates=n_candidates, k=k).propose(
            om, SearchSpace(domains=ot.domains)))
        out["propose_seconds_64"] = o_s
        out["propose_cpu_seconds_64"] = o_cpu
        rows.append({"name": f"propose over {n_candidates:,} candidates, {len(ot.domains)} domains (s)",
                     "value": f"{o_s:.2f} (CPU {o_cpu:.1f})", "goal": "≤ 10",
                     "met": o_s <= GOALS["propose_seconds"]})
    rows += [
        {"name": f"Spearman on {len(y_test)} test runs ({TARGET})", "value": f"{spearman:.4f}",
         "goal": "≥ 0.99", "met": spearman >= GOALS["spearman"]},
        {"name": "  same, RegMix's features (rows not renormalised)", "value": f"{spearman_raw:.4f}",
         "goal": "RegMix: 0.990", "met": None},
        {"name": f"scorer vs LightGBM predict, {scorer_rows:,} rows (speed-up)",
         "value": f"{ref_s / fast_s:.1f}×", "goal": "-", "met": None},
    ]
    rows.append({"name": "load average before / after (cores)", "goal": "-", "met": None,
                 "value": f"{load:.1f} / {os.getloadavg()[0]:.1f} ({out['cores']})"})
    out["rows"] = rows
    return out
