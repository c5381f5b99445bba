"""Fitters by name, imported lazily: one dict of name -> "module:Class".

A new fitter adds its line to :data:`FITTERS`. A user's own regressor is named as ``module:Class``
(``--method sklearn.ensemble:RandomForestRegressor``, or a class of their own next to where the
command runs), as ``--evaluator`` names a function: any scikit-learn estimator with ``fit`` and
``predict``.
"""

from __future__ import annotations

import importlib
import inspect
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


def is_user_fitter(name: str) -> bool:
    """``name`` is a user's ``module:Class``, not a registered fitter."""
    return name not in FITTERS and ":" in name


def fitter_class(name: str) -> type:
    """The class registered as ``name``, or the user's ``module:Class`` (imported now).

    Raises:
        MixoptError: an unknown name, a module that cannot be imported, or a class that is no
            scikit-learn regressor (``fit``, ``predict``, ``get_params``: cross-validation clones it).
    """
    if is_user_fitter(name):
        from mixopt.evaluator import load_user_object

        module, _, attr = name.partition(":")
        if not module or not attr:
            raise MixoptError(f"--method {name!r} is not of the form module:Class (e.g. "
                              "sklearn.ensemble:RandomForestRegressor)")
        cls = load_user_object(module, attr, "method")
        lacks = [m for m in ("fit", "predict", "get_params") if not callable(getattr(cls, m, None))]
        if not isinstance(cls, type) or lacks:
            what = "not a class" if not isinstance(cls, type) else f"a class without {', '.join(lacks)}"
            raise MixoptError(f"--method {name}: {attr} is {what}; name a scikit-learn regressor class "
                              "(fit(X, y), predict(X); subclass sklearn.base.BaseEstimator)")
        return cls
    try:
        target = FITTERS[name]
    except KeyError:
        raise MixoptError(
            f"fitter {name!r} is unknown; choose one of {', '.join(available_fitters())}, or name a "
            "scikit-learn regressor class as module:Class"
        ) from None
    module, _, cls = target.partition(":")
    return getattr(importlib.import_module(module), cls)


def param_names(cls: type) -> list[str]:
    """The hyper-parameters of a fitter class, as scikit-learn's ``get_params`` names them."""
    get = getattr(cls, "_get_param_names", None)
    if get is not None:
        return list(get())
    params = inspect.signature(cls.__init__).parameters.values()
    return [p.name for p in params if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def get_fitter(name: str, **params: Any) -> Any:
    """A new, unfitted fitter ``name`` with hyper-parameters ``params``.

    Raises:
        MixoptError: unknown name (the message lists the valid ones) or unknown parameter.
    """
    cls = fitter_class(name)
    valid = param_names(cls)
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise MixoptError(
            f"fitter {name!r} has no parameter(s) {', '.join(unknown)}; its parameters are {', '.join(valid)}"
        )
    try:
        return cls(**params)
    except TypeError as exc:  # VotingRegressor(estimators), a class of the user's with no defaults
        if not is_user_fitter(name):
            raise
        raise MixoptError(f"--method {name}: the class cannot be made with its defaults ({exc}); subclass "
                          "it with a constructor whose parameters all have defaults") from None


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
    accepts = param_names(fitter_class(name))
    given = {"random_state": seed, "groups": groups, "domains": domains, "targets": targets}
    for key, value in given.items():
        if value is not None and key in accepts:
            params.setdefault(key, value)
    return get_fitter(name, **params)
