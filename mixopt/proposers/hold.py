"""Domains no run varied are held at the weight the runs had, whatever the model.

A model fitted on runs that all gave a domain the same weight knows nothing of other weights: a
law drops the domain (its effect is in the constant), a GP or a tree sees a constant input, a
ridge on log weights extrapolates. Proposing another weight for it is a guess the runs cannot
back (a helper saw log-ridge move a domain every run held at 0.1 to 0.6, predicting a loss the
mixture did not reach), so every proposal holds it, at that weight or, where a floor or ceiling
excludes it, at the bound nearest it (a QA pass saw a domain every run held at 0 left free by
--min-weight, and the solve put 4% of the mixture on it), and says so.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

import numpy as np

from mixopt.errors import MixoptError
from mixopt.fitters.varied import unvaried
from mixopt.space import SearchSpace

log = logging.getLogger(__name__)


def hold(held: Mapping[int, float], space: SearchSpace) -> tuple[SearchSpace, dict[str, float]]:
    """``space`` with the columns ``held`` fixed at their weight; (space, domain → weight held).

    A weight outside its domain's bounds is held at the bound nearest it. A domain already fixed,
    or bounds that leave no room for the rest, keep the space as it was.
    """
    named = {space.domains[i]: v for i, v in held.items()
             if i < space.n and space.domains[i] not in space.fixed}
    if not named:
        return space, {}
    lo, hi = space.bounds()
    idx = {d: space.domains.index(d) for d in named}
    named = {d: float(np.clip(v, lo[idx[d]], hi[idx[d]])) for d, v in named.items()}
    try:
        candidate = dataclasses.replace(space, fixed={**space.fixed, **named})  # checks feasibility
    except MixoptError:
        return space, {}
    log.info("holding %s at the weight every run had", ", ".join(named))
    return candidate, named


def propose_holding(proposer: Any, model: Any, X: np.ndarray, space: SearchSpace) -> Any:
    """``proposer.propose(model, space)`` with the domains no run of ``X`` varied held (``info["held"]``)."""
    space, held = hold(unvaried(X) if len(X) > 1 else {}, space)  # one run varies nothing, says nothing
    prop = proposer.propose(model, space)
    if held:
        prop = dataclasses.replace(prop, info={**prop.info, "held": {**prop.info.get("held", {}), **held}})
    return prop
