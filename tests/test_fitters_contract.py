"""scikit-learn's estimator checks over every registered fitter (one contract test).

RegMix runs with 100 iterations here instead of 1000 to keep the suite fast; the checks exercise
the estimator protocol (parameters, fitted state, input validation, pickling, determinism), which
does not depend on the number of trees.
"""

from __future__ import annotations

from sklearn.utils.estimator_checks import parametrize_with_checks

from mixopt.fitters import available_fitters, get_fitter

_FAST = {"regmix": {"n_estimators": 100}}
ESTIMATORS = [get_fitter(name, **_FAST.get(name, {})) for name in available_fitters()]


@parametrize_with_checks(ESTIMATORS)
def test_sklearn_contract(estimator, check) -> None:  # noqa: ANN001
    check(estimator)
