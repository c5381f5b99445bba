"""The fitter protocol every model of mixture → metric keeps (scikit-learn estimator shape)."""

from __future__ import annotations

import inspect
from numbers import Integral, Real
from typing import Any, Protocol, Self, runtime_checkable

import numpy as np

from mixopt.errors import MixoptError


@runtime_checkable
class Fitter(Protocol):
    """A scikit-learn style regressor from mixture weights to a metric.

    ``__init__`` takes keyword-only hyper-parameters and only stores them; ``fit`` sets attributes
    ending in ``_`` and returns ``self``; ``predict`` refuses to run before ``fit``; randomness comes
    from ``random_state``. Rows of X are checked to lie on the simplex at the boundary (tables,
    store, proposers), not here, so scikit-learn's own estimator checks run over every fitter.
    """

    def fit(self, X: np.ndarray, y: np.ndarray) -> Self:
        """Fit on weights X (n_runs, n_domains) and metric y (n_runs,) or (n_runs, n_targets)."""
        ...

    def predict(
        self, X: np.ndarray, return_std: bool = False
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray | None]:
        """Predicted metric for rows of X; with ``return_std``, also its standard deviation
        (None for models without one)."""
        ...

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Hyper-parameters, as scikit-learn's ``BaseEstimator`` gives them."""
        ...


def check_param(owner: str, name: str, value: Any, *, integer: bool = False, low: float = 0,
                above: bool = False, none_ok: bool = False) -> None:
    """Refuse a hyper-parameter of the wrong kind or range with one line (``regmix:
    learning_rate must be a number > 0, got 'fast'``), where the library under it would have
    failed later with its own words (LightGBM: "Unknown token fast in data file") or not at all.

    Raises:
        MixoptError: naming the fitter, the parameter, what it must be and what it got.
    """
    if value is None and none_ok:
        return
    kind = Integral if integer else Real
    ok = isinstance(value, kind) and not isinstance(value, bool) and (value > low if above else value >= low)
    if not ok:
        what = "an integer" if integer else "a number"
        raise MixoptError(f"{owner}: {name} must be {what} {'>' if above else '≥'} {low:g}"
                          f"{' or None' if none_ok else ''}, got {value!r}")


# The largest target magnitude a fitter takes: squares of 1e154 overflow a float, and no loss or
# metric a training run reports comes near this.
MAX_TARGET = 1e100


def check_targets(owner: str, y: Any) -> None:
    """Refuse targets that are NaN or infinite, naming the runs (rows) that hold them (or past
    :data:`MAX_TARGET` in magnitude): scikit-learn's
    input check says only "Input y contains NaN" (a QA pass: regmix and linear let it out, and every
    fitter did so for an infinite target). Targets that are not numbers are left to that check.

    Raises:
        MixoptError: naming the fitter, how many runs and which rows.
    """
    try:
        Y = np.asarray(y, dtype=float)
    except (TypeError, ValueError):
        return
    if Y.ndim == 0 or Y.size == 0:
        return
    if np.isfinite(Y).all():
        top = float(np.abs(Y).max())
        if top > MAX_TARGET:  # linear's cross-validation had been all NaN, its proposal 300 digits long
            raise MixoptError(f"{owner}: the target reaches {top:.3g} in magnitude, past 1e100, where a "
                              "fit's squared errors overflow; rescale the metric (its log, or another unit)")
        return
    bad = np.flatnonzero(~np.isfinite(Y.reshape(len(Y), -1)).all(axis=1))
    what = " or ".join(kind for kind, held in (("NaN", np.isnan), ("infinite", np.isinf)) if held(Y).any())
    rows = ", ".join(map(str, bad[:8])) + (", …" if len(bad) > 8 else "")
    raise MixoptError(f"{owner}: the target is {what} in {len(bad)} run(s) (rows {rows}); leave those "
                      "runs out or fix their metrics")


def _gives_std(model: Any) -> bool:
    """``model.predict`` names a ``return_std`` parameter (every fitter of mixopt's, scikit-learn's
    GP). A user's regressor named as module:Class may not, and one that takes ``**params`` only
    (BaggingRegressor, TransformedTargetRegressor: metadata routing) refuses it (a review)."""
    try:
        return "return_std" in inspect.signature(model.predict).parameters
    except (TypeError, ValueError):  # no signature to read (a compiled method): asked, as before
        return True


def predict_objective(model: Any, X: np.ndarray, return_std: bool = False) -> Any:
    """``model.predict`` as one value per row (a (n, 1) output is flattened); with ``return_std``,
    (mean, std or None: a model without ``return_std`` has no std)."""
    if return_std and _gives_std(model):
        mean, std = model.predict(X, return_std=True)
    else:
        mean, std = model.predict(X), None
    mean = np.asarray(mean, dtype=float)
    if mean.ndim == 2 and mean.shape[1] == 1:
        mean = mean[:, 0]
    if mean.ndim != 1:
        raise MixoptError(f"the model predicts {mean.shape[1]} targets per mixture; fit it on one objective")
    if return_std:
        return mean, None if std is None else np.asarray(std, dtype=float).reshape(len(mean))
    return mean
