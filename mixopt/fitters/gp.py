"""Gaussian-process regression on the mixture weights, with a predictive standard deviation.

Two engines. ``botorch`` (default): BoTorch's ``SingleTaskGP`` (its default RBF kernel with one length
scale per domain and the dimension-scaled log-normal length-scale prior, a learned noise level,
targets standardised), its marginal likelihood maximised by ``fit_gpytorch_mll``. ``sklearn``:
scikit-learn's ``GaussianProcessRegressor`` with the kernel Olmix uses (``olmix/fit/utils.py``
``GPRegressor``: ``C · k(x, x') + White``, targets normalised, several restarts), RBF or Matérn,
ARD or one shared length scale. Either sees the weights as they are or as square roots (``sqrt``,
the default, stretches the small weights, where the loss changes fastest). Measured on RegMix's
1M swarm (Pile-CC, 512 → 256 test runs): the BoTorch GP on square roots ranks the test runs at
Spearman 0.994, scikit-learn's isotropic RBF on raw weights (Olmix's setting) at 0.951.
``predict(X, return_std=True)`` gives the standard deviation of a new run's metric (observation
noise included), which the proposers report with the mixture.

With ``groups`` (each domain's source, read from names like ``dclm:health`` by
:func:`mixopt.mixture.domain_groups`), the GP also sees each source's total weight, and BoTorch's
kernel is the sum of two scaled kernels, one over the topics and one over the sources: the
marginal likelihood sets how much of the loss each level explains. On Olmix's 64 domains (7
sources), 32-run swarms: held-out Spearman 0.52 → 0.73 (mean of 10 draws); 96 runs 0.87 → 0.89;
410 runs 0.956 → 0.955 (measured on draws other than the benchmark's).

For acquisition-driven (BO) proposals the mixture has to be optimised over the simplex: with
BoTorch, the equality constraint ``Σx = 1`` made ``optimize_acqf`` very slow (259 s measured), while a
stick-breaking or softmax reparametrisation with box bounds took 11 s. The batch proposers here
only need predictions at candidates, so no such solve happens in this module.
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from collections.abc import Iterator
from numbers import Integral
from typing import Any, Literal

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.validation import check_is_fitted, validate_data

from mixopt.errors import MixoptError, MixoptWarning, TooFewRunsError, warn
from mixopt.fitters.groups import group_matrix
from mixopt.fitters.protocol import check_param, check_targets

# Rows predicted at once. The posterior's variance goes through the chunk's full test covariance
# (chunk² entries: 2 GB at 16k rows); 32k candidates on 512 runs took 5.9 s in 16k-row chunks and
# 1.6 s in 1k-row chunks (34.8 s vs 1.9 s with the additive kernel of source groups).
CHUNK = 1024
# Runs one GP fits at most (GPFitter.max_runs): above it, the best quarter and a random draw of the rest.
MAX_RUNS = 1000
# gpytorch kernels with ``active_dims`` (the topic and source kernels) are not thread-safe: evaluating
# one switches its ``active_dims`` off for a moment, and a second thread then feeds it every column.
# Top-k predicts candidate chunks from threads, so predictions with those kernels take turns.
_ACTIVE_DIMS_LOCK = threading.Lock()


class GPFitter(RegressorMixin, BaseEstimator):
    """Gaussian process on (transformed) weights, one per target column.

    Args:
        engine: ``botorch`` (SingleTaskGP: RBF, one length scale per domain, with priors) or ``sklearn``.
        kernel: sklearn engine: ``rbf`` (Olmix) or ``matern`` (ν = 5/2).
        ard: sklearn engine: one length scale per domain instead of one shared (Olmix: shared).
        features: the kernel sees the ``weights`` as they are or their ``sqrt``.
        mll_maxiter: botorch engine: L-BFGS iterations of the marginal-likelihood fit. Run to convergence it
            took ~1200 iterations (67 s) on 410 runs × 64 domains; held-out rank correlation was the
            same at 75–300 iterations (0.950 at 150 vs 0.947 converged), so the fit stops at 150.
        n_restarts: sklearn engine: restarts of the marginal-likelihood optimiser (Olmix: 10).
        noise: sklearn engine: initial white-noise level (of the normalised target; Olmix: 0.1).
        random_state: seed of the restarts (sklearn) or of BoTorch's retries, and of the subsample.
        max_runs: runs fitted at most; of more, the best quarter and a random draw of the rest, with
            a warning. An exact GP's time grows faster than the runs squared, its memory as their
            square: one fit took 8 s on 500 runs, 40 s on 1,000 and 3 min on 2,000 (10 domains, a
            shared 2-core machine), and a search reusing a 20,000-run store reached 16 GB. None:
            every run.
        groups: each domain's group (source), one per column; the groups of two or more domains add
            their total weight as features (botorch: a second, additive kernel over them).
    """

    def __init__(
        self,
        *,
        engine: Literal["botorch", "sklearn"] = "botorch",
        kernel: Literal["rbf", "matern"] = "rbf",
        ard: bool = True,
        features: Literal["weights", "sqrt"] = "sqrt",
        mll_maxiter: int = 150,
        n_restarts: int = 3,
        noise: float = 0.1,
        random_state: int | None = 0,
        groups: tuple[str, ...] | None = None,
        max_runs: int | None = MAX_RUNS,
    ) -> None:
        self.engine = engine
        self.kernel = kernel
        self.ard = ard
        self.features = features
        self.mll_maxiter = mll_maxiter
        self.n_restarts = n_restarts
        self.noise = noise
        self.random_state = random_state
        self.groups = groups
        self.max_runs = max_runs

    def _check_params(self) -> None:
        """Refuse unknown choices, and the sklearn engine's options given to the botorch engine, where
        they had been ignored without a word (kernel="matern" gave RBF's predictions)."""
        for name, allowed in (("engine", ("botorch", "sklearn")), ("kernel", ("rbf", "matern")),
                              ("features", ("weights", "sqrt"))):
            if getattr(self, name) not in allowed:
                raise MixoptError(f"gp: {name} {getattr(self, name)!r} is unknown; use "
                                  f"{' or '.join(repr(a) for a in allowed)}")
        if self.engine == "botorch":
            default = GPFitter()
            ignored = [f"{k}={getattr(self, k)!r}" for k in ("kernel", "ard", "n_restarts", "noise")
                       if getattr(self, k) != getattr(default, k)]
            if ignored:
                raise MixoptError(f"gp: {', '.join(ignored)} applies to engine='sklearn' only; the botorch "
                                  "engine fits its own kernel (RBF, a length scale per input): give "
                                  "engine='sklearn' with it, or leave it out")
        else:
            check_param("gp", "n_restarts", self.n_restarts, integer=True)
            check_param("gp", "noise", self.noise, above=True)
        check_param("gp", "mll_maxiter", self.mll_maxiter, integer=True, low=1)
        if self.max_runs is not None:
            check_param("gp", "max_runs", self.max_runs, integer=True, low=2)
        rs = self.random_state  # torch.manual_seed takes an int (a RandomState had failed inside it)
        if rs is not None and not (isinstance(rs, Integral) and not isinstance(rs, bool)):
            raise MixoptError(f"gp: random_state must be an integer seed or None, got {type(rs).__name__}")

    def _features(self, X: np.ndarray) -> np.ndarray:
        X = np.clip(X, 0.0, None)
        if self.group_matrix_.shape[1]:
            X = np.hstack([X, X @ self.group_matrix_])  # the sources' totals after the topics
        if self.features == "sqrt":
            return np.sqrt(X)
        if self.features != "weights":
            raise ValueError(f"features {self.features!r} is unknown; use 'weights' or 'sqrt'")
        return X

    def fit(self, X: np.ndarray, y: np.ndarray) -> GPFitter:
        """Fit on weights X (n_runs, n_domains) and y (n_runs,) or (n_runs, n_targets).

        Raises:
            MixoptError: NaN or infinite targets or fewer than 2 runs.
        """
        self._check_params()
        check_targets("gp", y)
        X, y = validate_data(self, X, y, multi_output=True, y_numeric=True)
        if len(X) < 2:
            raise TooFewRunsError(f"gp needs at least 2 runs, got {len(X)} sample(s); add runs", needed=2)
        self.group_matrix_ = group_matrix(self.groups, X.shape[1], fitter="gp")
        Y = np.asarray(y, dtype=float).reshape(len(X), -1)
        if self.max_runs is not None and len(X) > self.max_runs:
            # A QA pass: a search reusing a 20,000-run store fitted them all, reached 16 GB and did
            # not answer SIGTERM for minutes.
            keep = _subsample(Y, self.max_runs, self.random_state)
            warn(f"gp: fitted on {self.max_runs:,} of the {len(X):,} runs (the best "
                 f"{self.max_runs // 4:,} and the rest drawn at random: an exact GP's time grows faster "
                 "than the runs squared, 40 s for 1,000 runs and 3 min for 2,000 here); regmix, linear or "
                 "log-ridge fit every run",
                 MixoptWarning)
            X, Y = X[keep], Y[keep]
        self.n_fitted_ = len(X)
        F = self._features(np.asarray(X, dtype=float))
        if self.engine == "botorch":
            self.models_ = [
                _fit_botorch(F, Y[:, j], self.random_state, self.mll_maxiter, n_domains=X.shape[1])
                for j in range(Y.shape[1])
            ]
        elif self.engine == "sklearn":
            self.models_ = [self._fit_sklearn(F, Y[:, j]) for j in range(Y.shape[1])]
        else:
            raise ValueError(f"engine {self.engine!r} is unknown; use 'botorch' or 'sklearn'")
        self.multi_output_ = np.ndim(y) == 2
        return self

    def predict(self, X: np.ndarray, return_std: bool = False):  # noqa: ANN201
        """Posterior mean (n,) or (n, n_targets); with ``return_std``, also its standard deviation."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False)
        F = self._features(np.asarray(X, dtype=float))
        means, stds = [], []
        active_dims = self.engine == "botorch" and self.group_matrix_.shape[1] > 0
        with _ACTIVE_DIMS_LOCK if active_dims else contextlib.nullcontext():
            for m in self.models_:
                mu, sd = (_predict_botorch if self.engine == "botorch" else _predict_sklearn)(m, F)
                means.append(mu)
                stds.append(sd)
        mean = np.column_stack(means) if self.multi_output_ else means[0]
        std = np.column_stack(stds) if self.multi_output_ else stds[0]
        return (mean, std) if return_std else mean

    def _fit_sklearn(self, F: np.ndarray, y: np.ndarray) -> Any:
        from sklearn.gaussian_process import GaussianProcessRegressor
        from sklearn.gaussian_process.kernels import RBF, ConstantKernel, Matern, WhiteKernel
        from threadpoolctl import threadpool_limits

        scale = np.ones(F.shape[1]) if self.ard else 1.0
        if self.kernel == "rbf":
            base = RBF(length_scale=scale, length_scale_bounds=(1e-2, 1e3))
        elif self.kernel == "matern":
            base = Matern(length_scale=scale, length_scale_bounds=(1e-2, 1e3), nu=2.5)
        else:
            raise ValueError(f"kernel {self.kernel!r} is unknown; use 'rbf' or 'matern'")
        kern = ConstantKernel(1.0, (1e-3, 1e3)) * base + WhiteKernel(self.noise, (1e-6, 1e1))
        model = GaussianProcessRegressor(
            kernel=kern,
            normalize_y=True,
            n_restarts_optimizer=self.n_restarts,
            random_state=self.random_state,
        )
        with threadpool_limits(limits=1, user_api="blas"), warnings.catch_warnings():
            # A length scale at its bound means that domain barely matters: expected, not a failure.
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(F, y)
        return model

    def __sklearn_tags__(self):  # noqa: ANN204
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags


def _subsample(Y: np.ndarray, n: int, seed: int | None) -> np.ndarray:
    """Rows of ``Y`` (runs × targets) to fit: the ``n // 4`` best by their mean standardised target
    (where the proposal is made) and the rest drawn at random (the landscape around it), sorted."""
    z = (Y - Y.mean(axis=0)) / np.where(Y.std(axis=0) > 0, Y.std(axis=0), 1.0)
    best = np.argsort(z.mean(axis=1), kind="stable")[: n // 4]
    others = np.setdiff1d(np.arange(len(Y)), best)
    rng = np.random.default_rng(0 if seed is None else seed)
    return np.sort(np.concatenate([best, rng.choice(others, n - len(best), replace=False)]))


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Run torch on one thread: for a few hundred runs, a second thread only adds contention (measured:
    a 200-run fit took 0.8 s on one thread and 11.7 s on two on a busy two-core machine)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _additive_covar(n_domains: int, n_features: int) -> Any:
    """Scaled RBF over the topics (first ``n_domains`` columns) + scaled RBF over the sources' totals,
    each with BoTorch's dimension-scaled length-scale prior for its own dimension."""
    from botorch.models.utils.gpytorch_modules import get_covar_module_with_dim_scaled_prior
    from gpytorch.kernels import AdditiveKernel, ScaleKernel

    def part(dims: list[int]) -> Any:
        return ScaleKernel(get_covar_module_with_dim_scaled_prior(ard_num_dims=len(dims), active_dims=dims))

    return AdditiveKernel(part(list(range(n_domains))), part(list(range(n_domains, n_features))))


def _fit_botorch(F: np.ndarray, y: np.ndarray, seed: int | None, max_iter: int, *, n_domains: int) -> Any:
    """SingleTaskGP on features F; columns past ``n_domains`` (sources' totals) get their own kernel."""
    import torch
    from botorch.fit import fit_gpytorch_mll
    from botorch.models import SingleTaskGP
    from botorch.models.transforms import Standardize
    from gpytorch.mlls import ExactMarginalLogLikelihood

    with torch.random.fork_rng(), warnings.catch_warnings(), _one_thread():
        torch.manual_seed(0 if seed is None else seed)  # fit_gpytorch_mll retries from random draws
        warnings.simplefilter("ignore")  # BoTorch's notes on input scaling and optimiser stops
        Xt = torch.as_tensor(F, dtype=torch.float64)
        Yt = torch.as_tensor(y[:, None], dtype=torch.float64)
        covar = _additive_covar(n_domains, F.shape[1]) if F.shape[1] > n_domains else None
        model = SingleTaskGP(Xt, Yt, outcome_transform=Standardize(m=1), covar_module=covar)
        fit_gpytorch_mll(
            ExactMarginalLogLikelihood(model.likelihood, model),
            optimizer_kwargs={"options": {"maxiter": max_iter}},
        )
        model.eval()
    return model


def _predict_botorch(model: Any, F: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import torch

    mean, std = [], []
    with torch.no_grad(), _one_thread():
        for i in range(0, len(F), CHUNK):
            post = model.posterior(
                torch.as_tensor(F[i : i + CHUNK], dtype=torch.float64), observation_noise=True
            )
            mean.append(post.mean.numpy().ravel())
            std.append(post.variance.clamp_min(0).sqrt().numpy().ravel())
    return np.concatenate(mean), np.concatenate(std)


def _predict_sklearn(model: Any, F: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    out = [model.predict(F[i : i + CHUNK], return_std=True) for i in range(0, len(F), CHUNK)]
    return np.concatenate([o[0] for o in out]), np.concatenate([o[1] for o in out])
