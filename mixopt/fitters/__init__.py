"""Fitters: models of how the mixture drives a metric, in scikit-learn's shape.

``fit(X, y) -> self`` with X the weights (n_runs, n_domains) and y one metric (or several columns,
one model each; ``auto`` takes several columns only as the metrics of one objective, with
``metric_weights``); ``predict(X, return_std=False)``. Look fitters up by name with
:func:`get_fitter`; each lives in its own module and is imported only when asked for.
"""

from mixopt.fitters.protocol import Fitter
from mixopt.fitters.registry import FITTERS, available_fitters, get_fitter

__all__ = ["FITTERS", "Fitter", "available_fitters", "get_fitter"]
