"""``mixopt search --method NAME`` with the law methods: the driver fits the law and solves it exactly
(a Ray end-to-end test on the fast log-linear landscape of :mod:`mixopt.testing`)."""

from __future__ import annotations

import pytest

from mixopt import testing
from mixopt.mixture import Mixture
from mixopt.search.config import SearchConfig

DOMAINS = ("web", "code", "math", "books")
TOKENS = {"web": 4e9, "code": 1e9, "math": 3e8, "books": 7e8}


@pytest.mark.slow
@pytest.mark.parametrize("method", ["loglinear", "auto"])
def test_search_with_a_law(method: str, workspace, tmp_path) -> None:  # noqa: ANN001
    from mixopt.search.driver import run_search
    from mixopt.search.ray_env import ensure_ray

    ensure_ray(num_cpus=2, dashboard=False)
    out = tmp_path / "mixture.json"
    res = run_search(
        SearchConfig(
            evaluator="mixopt.testing:loglinear",
            domains=DOMAINS,
            tokens=TOKENS,
            budget=24,
            validate=0,
            concurrency=2,
            method=method,
            name=f"law-{method}",
            out=str(out),
            max_weight={"web": 0.6},
            kl=0.05,  # --kl reaches the exact solve
        )
    )
    mix = Mixture.load(out)
    assert mix.meta["method"] == method and mix.weights["web"] <= 0.6 + 1e-9
    if method == "loglinear":  # auto solves exactly only when it chose a law, else it samples top-k
        assert mix.meta["params"]["proposer"]["kl"] == 0.05
    prop, best_run = res.row("proposal"), res.row("best_run")
    assert prop is not None and best_run is not None
    # The proposal is no worse, on the true landscape, than the best of the 24 runs.
    assert list(prop.weights) == list(DOMAINS)
    assert testing.true_objective(prop.weights) <= testing.true_objective(best_run.weights) + 0.02
