"""Baseline mixtures a proposal is compared to: uniform, natural and temperature-scaled.

``uniform`` gives every domain the same weight; ``natural`` follows the domains' token counts;
``temperature`` uses token shares ** (1/T) (T = 2 by default: RegMix's TEMP = 0.5 exponent). Baselines
are computed without looking at the constraints first, then fitted into the space: fixed domains
keep their weight and the others are rescaled to the remaining mass; if that still breaks a floor,
ceiling or repetition cap the vector is projected into the space (Euclidean); :func:`moved_note`
says how it was moved.
"""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np

from mixopt.errors import MixoptError
from mixopt.space import SearchSpace
from mixopt.swarm import project

log = logging.getLogger(__name__)

BaselineName = Literal["uniform", "natural", "temperature"]
BASELINES: tuple[str, ...] = ("uniform", "natural", "temperature")
DEFAULT_TEMPERATURE = 2.0


def baseline_temperature(search_temperature: float) -> float:
    """The temperature baseline's T for a search sampled at ``search_temperature``: the same, except
    that a search at T = 1 (its prior the natural mixture) compares with T = 2, RegMix's."""
    return search_temperature if search_temperature != 1.0 else DEFAULT_TEMPERATURE


def _raw(name: str, space: SearchSpace, temperature: float) -> np.ndarray:
    if name == "uniform":
        return np.full(space.n, 1.0 / space.n)
    if name not in ("natural", "temperature"):
        raise MixoptError(f"baseline {name!r} is unknown; choose one of {', '.join(BASELINES)}")
    if space.tokens is None:
        raise MixoptError(
            f"the {name} baseline needs token counts per domain; give them (--tokens) or use uniform"
        )
    if not temperature > 0:
        raise MixoptError(f"temperature must be > 0, got {temperature}")
    toks = np.array([max(float(space.tokens[d]), 0.0) for d in space.domains])
    if toks.sum() <= 0:
        raise MixoptError("token counts are all zero; the natural baseline is undefined")
    t = 1.0 if name == "natural" else temperature
    w = (toks / toks.sum()) ** (1.0 / t)
    return w / w.sum()


def baseline_weights(
    name: BaselineName | str, space: SearchSpace, temperature: float = DEFAULT_TEMPERATURE
) -> np.ndarray:
    """Weights of baseline ``name`` over ``space.domains``, inside the space.

    Raises:
        MixoptError: unknown name, or ``natural``/``temperature`` without token counts.
    """
    return _inside(name, _raw(name, space, temperature), space)


def moved_note(name: str, space: SearchSpace, temperature: float = DEFAULT_TEMPERATURE, *,
               inside: np.ndarray | None = None) -> str | None:
    """How the constraints moved baseline ``name`` (a QA pass: an exported "uniform" of 0.1/0.45/0.45
    had said nothing of it), or None where they left it as it is. ``inside``: its weights inside the
    space, where the caller has them (:func:`baseline_weights`)."""
    raw = _raw(name, space, temperature)
    w = _inside(name, raw, space) if inside is None else inside
    moved = [(d, a, b) for d, a, b in zip(space.domains, raw, w, strict=True) if abs(a - b) > 5e-4]
    if not moved:
        return None
    shown = ", ".join(f"{d} {a:.3f} → {b:.3f}" for d, a, b in moved[:5])
    more = f" and {len(moved) - 5} more" if len(moved) > 5 else ""
    return f"the {name} baseline is moved into the constraints: {shown}{more}"


def _inside(name: str, w: np.ndarray, space: SearchSpace) -> np.ndarray:
    """``w`` fitted into ``space``: fixed weights set, the rest rescaled, then projected if need be."""
    if space.fixed:
        fixed = np.array([d in space.fixed for d in space.domains])
        fixed_w = np.array([float(space.fixed.get(d, 0.0)) for d in space.domains])
        rest = 1.0 - fixed_w.sum()
        free_sum = w[~fixed].sum()
        w = np.where(fixed, fixed_w, w * (rest / free_sum if free_sum > 0 else 0.0))
    why = space.violations(w)
    if why:
        log.info("baseline %s is outside the search space (%s); projected into it", name, "; ".join(why[:5]))
        w = project(space, w)
    return w


def baselines_for(space: SearchSpace, temperature: float = DEFAULT_TEMPERATURE) -> dict[str, np.ndarray]:
    """Every baseline that applies to ``space`` (those needing token counts are skipped without them)."""
    out: dict[str, np.ndarray] = {}
    for name in BASELINES:
        if name != "uniform" and space.tokens is None:
            log.info("baseline %s skipped: the search space has no token counts", name)
            continue
        out[name] = baseline_weights(name, space, temperature)
    return out
