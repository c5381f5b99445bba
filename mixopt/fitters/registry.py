"""Fitters by name, imported lazily: one dict of name -> "module:Class".

A new fitter adds its line to :data:`FITTERS`.
"""

from __future__ import annotations

import importlib
from typing import Any

from mixopt.errors import MixoptError

FITTERS: dict[str, str] = {
    "regmix": "mixopt.fitters.regmix:RegMixFitter",
    "linear": "mixopt.fitters.linear:LinearFitter",
    "mixing-law": "mixopt.fitters.mixing_law:MixingLawFitter",
    "loglinear": "mixopt.fitters.loglinear:LogLinearFitter",
    "bimix": "mixopt.fitters.bimix:BiMixFitter",
    "gp": "mixopt.fitters.gp:GPFitter",
    "log-ridge": "mixopt.fitters.logridge:LogRidgeFitter",
    "auto": "mixopt.fitters.auto:AutoFitter",
}


def available_fitters() -> list[str]:
    """Names :func:`get_fitter` accepts."""
    return sorted(FITTERS)


def fitter_class(name: str) -> type:
    """The class registered as ``name`` (imported now)."""
    try:
        target = FITTERS[name]
    except KeyError:
        raise MixoptError(
            f"fitter {name!r} is unknown; choose one of {', '.join(available_fitters())}"
        ) from None
    module, _, cls = target.partition(":")
    return getattr(importlib.import_module(module), cls)


def get_fitter(name: str, **params: Any) -> Any:
    """A new, unfitted fitter ``name`` with hyper-parameters ``params``.

    Raises:
        MixoptError: unknown name (the message lists the valid ones) or unknown parameter.
    """
    cls = fitter_class(name)
    valid = cls._get_param_names()
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise MixoptError(
            f"fitter {name!r} has no parameter(s) {', '.join(unknown)}; its parameters are {', '.join(valid)}"
        )
    return cls(**params)


def make_fitter(
    name: str,
    *,
    seed: int | None = None,
    groups: tuple[str, ...] | None = None,
    domains: tuple[str, ...] | None = None,
    targets: tuple[str, ...] | None = None,
    **params: Any,
) -> Any:
    """:func:`get_fitter`, with ``seed`` as ``random_state``, ``groups`` (each domain's source) and
    the ``domains`` and ``targets`` names (for messages) for the fitters that take them; the others
    ignore them. Explicit ``params`` win."""
    accepts = fitter_class(name)._get_param_names()
    given = {"random_state": seed, "groups": groups, "domains": domains, "targets": targets}
    for key, value in given.items():
        if value is not None and key in accepts:
            params.setdefault(key, value)
    return get_fitter(name, **params)
