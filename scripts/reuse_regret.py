"""What mixture reuse buys: regret of a swarm + fit over every domain against one that reuses a
previous mixture's shares, on a known landscape (docs/DECISIONS.md, "Mixture reuse").

Eight domains, a quadratic loss 3 + (w − w*)ᵀA(w − w*) with its optimum w* off the natural mixture;
five of the domains were searched before, and the previous mixture holds their shares in w*. Each
arm draws ``budget`` runs with `mixopt swarm`'s sampler, measures them on the landscape and
proposes with `mixopt fit --propose`; the regret is the proposal's loss above the optimum, over
five seeds.

    python scripts/reuse_regret.py [--method gp] [--budgets 8,16,32] [--seeds 5]
"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from pathlib import Path

import numpy as np

from mixopt.fit.on_tables import FitConfig, fit_tables
from mixopt.mixture import Mixture
from mixopt.search.config import SearchConfig
from mixopt.search.prepare import swarm_plan
from mixopt.tables import SWARM_RUN, ratios_csv

DOMAINS = tuple(f"d{i}" for i in range(8))
TOKENS = {d: 1e9 * (i + 1) for i, d in enumerate(DOMAINS)}
OPTIMUM = np.array([0.2, 0.05, 0.1, 0.15, 0.1, 0.2, 0.1, 0.1])
CURVATURE = np.diag(np.linspace(1, 4, len(DOMAINS)))
OLD = 5  # the first five domains were searched before


def loss(w: np.ndarray) -> float:
    d = np.asarray(w) - OPTIMUM
    return float(3 + d @ CURVATURE @ d)


def regret(folder: Path, method: str, budget: int, seed: int, reuse: str | None) -> float:
    plan = swarm_plan(SearchConfig(domains=DOMAINS, tokens=TOKENS, budget=budget, seed=seed,
                                   reuse_mixture=reuse))
    rows = plan.rows if plan.reuse is None else plan.reuse.expand(plan.space.domains, plan.rows)
    ratios, metrics, out = folder / "ratios.csv", folder / "metrics.csv", folder / "mixture.json"
    ratios.write_text(ratios_csv(DOMAINS, rows))
    lines = "".join(f"{SWARM_RUN.format(i)},{loss(r)!r}\n" for i, r in enumerate(rows))
    metrics.write_text("run,loss\n" + lines)
    report = fit_tables(FitConfig(ratios=ratios, metrics=metrics, target="loss", method=method, propose=True,
                                  out=out, seed=seed, reuse=reuse))
    return loss([report.proposal["weights"][d] for d in DOMAINS]) - 3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--method", default="gp")
    ap.add_argument("--budgets", default="8,16,32")
    ap.add_argument("--seeds", type=int, default=5)
    args = ap.parse_args()
    warnings.simplefilter("ignore")  # the fits' notes (extrapolation, few runs) are not the figure
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        prev = folder / "previous.json"
        Mixture(dict(zip(DOMAINS[:OLD], OPTIMUM[:OLD] / OPTIMUM[:OLD].sum(), strict=True))).save(prev)
        print(f"{'runs':>5} {'every domain':>14} {'--reuse-mixture':>16}   (mean regret over {args.seeds} "
              f"seeds, {args.method})")
        for budget in map(int, args.budgets.split(",")):
            full = [regret(folder, args.method, budget, s, None) for s in range(args.seeds)]
            reused = [regret(folder, args.method, budget, s, str(prev)) for s in range(args.seeds)]
            print(f"{budget:>5} {np.mean(full):>14.4f} {np.mean(reused):>16.4f}")


if __name__ == "__main__":
    main()
