"""The ``random`` method's proposal: the best run of the swarm, as measured."""

from __future__ import annotations

import logging

import numpy as np

from mixopt.errors import MixoptError
from mixopt.proposers.proposal import Proposal
from mixopt.space import SearchSpace

log = logging.getLogger(__name__)


class BestRunProposer:
    """Propose the run with the lowest measured objective among those inside the space."""

    def propose_from_runs(self, X: np.ndarray, y: np.ndarray, space: SearchSpace) -> Proposal:
        """Best run of ``X`` (n_runs, n_domains) by ``y`` (n_runs,); NaN runs are ignored.

        Raises:
            MixoptError: no run has a finite objective inside the space.
        """
        X = np.asarray(X, dtype=float)
        y = np.asarray(y, dtype=float).ravel()
        if X.ndim != 2 or X.shape[1] != space.n or len(X) != len(y):
            raise MixoptError(f"expected runs of shape (n, {space.n}) with one objective each, got {X.shape}")
        inside = space.contains_rows(X, tol=1e-6)
        ok = np.isfinite(y) & inside
        if not ok.any():  # a QA pass: `fit --method random --fix b=0.4` had been told to run a swarm
            finite = int(np.isfinite(y).sum())
            if not finite:
                raise MixoptError(f"none of the {len(y)} runs has a finite objective: check the runs' "
                                  "metrics (the objective's are missing or NaN in every run)")
            raise MixoptError(f"none of the {finite} runs with a finite objective is inside the constraints "
                              f"({'; '.join(space.violations(X[np.isfinite(y)][0])[:2])} in the first): "
                              "random proposes a measured run; relax the constraints (an exact --fix "
                              "weight is one runs seldom have), or use a method that models the runs "
                              "(e.g. regmix, gp)")
        best_all = int(np.nanargmin(np.where(np.isfinite(y), y, np.inf)))
        i = int(np.flatnonzero(ok)[np.argmin(y[ok])])
        if i != best_all:
            log.info("best run %d lies outside the search space; proposing run %d, the best inside",
                     best_all, i)
        return Proposal(
            weights=X[i].copy(), predicted=float(y[i]), method="random",
            info={"run_index": i, "measured": float(y[i]), "runs_considered": int(ok.sum())},
        )
