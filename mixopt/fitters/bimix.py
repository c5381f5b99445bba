"""BiMix (Ge et al., 2024): a bivariate law in each domain's share and the training step.

BiMix models domain i's validation loss as ``L_i(r_i, s) = A_i·r_i^(−α_i)·(B_i·s^(−β_i) + C_i)``:
a power law in the domain's own share r_i times a power law in the step s. A target that is one
domain's loss (``loss/<d>``, ``bpb/<d>``, or RegMix's ``metric/<d>_val_loss`` for domain
``train_<d>``; :func:`mixopt.mixture.metric_domain`) is fitted in exactly that form, on its
domain's share alone: 2 parameters (4 with steps), so a handful of runs suffices. Any other
target (a downstream score, a mean, a domain whose share never varies), or every target with
``own_share=False``, is fitted as a sum of such terms over all domains, the form Olmix fits as
``BimixRegressor``. Both are one family:

    ŷ(r, s) = Σ_i (r_i + ε)^(−α_i) · (P_i·(s/s₀)^(−β_i) + Q_i)    (P_i = A_i·B_i, Q_i = A_i·C_i)

with s₀ the last step seen in training, and the own-share form the case where only the target's
own domain has non-zero coefficients. Without steps (only final losses, as in run tables) the
step factor is one constant per domain: ``Σ_i F_i·(r_i + ε)^(−α_i)``. ε keeps the law finite at
zero weight (swarms often leave a domain out entirely). Fitted on the target divided by its robust
scale, 1.4826 × MAD (the family is closed under positive scaling) by multi-start L-BFGS on a Huber
loss; every coefficient is kept positive by fitting its logarithm. The objective, a weighted sum
of such targets, is convex in r and minimised exactly by
:class:`~mixopt.proposers.exact.ExactProposer`.

BiMix's training-free mixture (weights from each domain's conditional entropy) is
:mod:`mixopt.entropy`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.utils.validation import check_is_fitted, validate_data

from mixopt.errors import MixoptError
from mixopt.fitters.lawfit import (
    MAX_EXPONENT,
    FitReport,
    LawFitter,
    huber,
    multistart_lbfgs,
    robust_scale,
)
from mixopt.mixture import metric_domain

LOG_BOUND = 30.0
# Largest exponent α or β: beyond it (r + ε)^(−α) is no longer a plausible loss curve.
MAX_POWER = 5.0


class BiMixFitter(LawFitter):
    """``Σ_i (r_i + ε)^(−α_i)·(P_i·(s/s₀)^(−β_i) + Q_i)`` per target; the step factor only with steps.

    A target that is a domain's loss keeps only its own domain's term (BiMix's own form).

    Args:
        eps: added to every weight, so a domain left out of a run has a finite loss term.
        n_starts: random draws of the exponents (besides one with every α = 0.3); the coefficients of
            each start come from non-negative least squares.
        huber_delta: Huber threshold in units of the target's robust scale (1.4826 MAD).
        n_polish: best starts run to convergence.
        random_state: seed of the random starts.
        own_share: fit a domain's own loss on that domain's share alone, as BiMix does; False fits
            every target as a sum over all domains (Olmix's variant, 2 parameters per domain).
        domains, targets: the weight columns' and target columns' names; the targets that are a
            domain's loss are found from them (``own_``: that domain per target, or None).
        at_step: the step (in the units of ``fit``'s steps) where :meth:`predict` and
            :meth:`power_terms` evaluate the law by default, e.g. a longer run's; None: the last step
            seen in training. Only with steps.

    ``fit(X, y, steps=None)``: with ``steps`` (n_runs,), rows are checkpoints (a mixture may appear at
    several steps) and the full bivariate law is fitted; ``predict(X, steps=None)`` predicts at
    ``steps`` or, by default, at ``at_step``.
    """

    law = "bimix"
    positive = True

    def __init__(
        self,
        *,
        eps: float = 1e-3,
        n_starts: int = 16,
        huber_delta: float = 0.5,
        n_polish: int = 3,
        random_state: int | None = 0,
        own_share: bool = True,
        domains: tuple[str, ...] | None = None,
        targets: tuple[str, ...] | None = None,
        at_step: float | None = None,
    ) -> None:
        self.eps = eps
        self.n_starts = n_starts
        self.huber_delta = huber_delta
        self.n_polish = n_polish
        self.random_state = random_state
        self.own_share = own_share
        self.domains = domains
        self.targets = targets
        self.at_step = at_step

    def fit(self, X: np.ndarray, y: np.ndarray, steps: np.ndarray | None = None) -> BiMixFitter:
        """Fit on weights X (n, K), targets y (n,) or (n, m) and optional training steps (n,).

        Raises:
            MixoptError: NaN targets, non-positive steps or ``at_step``, or fewer rows than parameters.
        """
        if self.at_step is not None and not (np.isfinite(self.at_step) and self.at_step > 0):
            raise MixoptError(f"bimix: at_step must be a positive number of steps, got {self.at_step}")
        X, Y = self._check_xy(X, y)
        s = None
        self.step_ref_ = None
        if steps is not None:
            steps = np.asarray(steps, dtype=float).ravel()
            if steps.shape != (len(X),) or not np.all(np.isfinite(steps)) or steps.min() <= 0:
                raise MixoptError(
                    f"bimix: steps must be one positive number per run ({len(X)}), got {steps.shape}"
                )
            self.step_ref_ = float(steps.max())
            s = steps / self.step_ref_
            if np.ptp(s) == 0:
                s = None  # one step only: the step factor is a constant per domain
                if self.at_step is not None:
                    raise MixoptError(
                        f"bimix: every row is at step {self.step_ref_:.6g}, so no step term can be fitted "
                        f"to predict at step {self.at_step:.6g}; give checkpoints at 2 or more steps"
                    )
        self.with_steps_ = s is not None
        self._fit_columns(X, Y, s)
        return self

    def predict(self, X: np.ndarray, return_std: bool = False, *, steps: np.ndarray | float | None = None):  # noqa: ANN201
        """Predictions at ``steps`` (default: ``at_step``, else the last training step); no standard
        deviation (None)."""
        check_is_fitted(self)
        X = np.asarray(validate_data(self, X, reset=False), dtype=float)[:, self.keep_]
        s = None
        if self.with_steps_:
            s = np.broadcast_to(self._relative_step(steps), (len(X),))
        return self._finish(X, s, return_std)

    def _relative_step(self, steps: np.ndarray | float | None) -> np.ndarray:
        """``steps`` (default ``at_step``, else the last training step) over the last training step."""
        if steps is None:
            steps = self.at_step if self.at_step is not None else self.step_ref_
        return np.asarray(steps, dtype=float) / self.step_ref_

    # ----- the law ----------------------------------------------------------------------------
    def _n_params(self, k: int) -> int:
        return 2 * k  # (F_i, α_i); with steps the fit checks again below

    def _own_domain(self, j: int, m: int) -> int | None:
        """The domain (a column of X) whose loss target j of m is, if BiMix's own form applies."""
        names = self.domains if self.domains is not None else getattr(self, "feature_names_in_", None)
        if not self.own_share or names is None or len(names) != self.n_features_in_:
            return None
        if self.targets is None or len(self.targets) != m:
            return None
        i = metric_domain(str(self.targets[j]), [str(d) for d in names])
        return i if i is not None and self.keep_[i] else None  # a share that never varies explains nothing

    def _target_n_params(self, k: int, j: int, m: int) -> int:
        return self._n_params(k) if self._own_domain(j, m) is None else 2

    def planned_n_params(
        self, k: int, targets: Sequence[str] | None = None, varying: Sequence[str] | None = None
    ) -> int:
        own = (self.own_share and targets and varying is not None
               and all(metric_domain(t, varying) is not None for t in targets))
        return 2 if own else self._n_params(k)

    def _fit_one(
        self, X: np.ndarray, y: np.ndarray, rng: np.random.Generator, extra: np.ndarray | None, j: int, m: int
    ) -> tuple[np.ndarray, FitReport]:
        if j == 0:
            self.own_ = [self._own_domain(t, m) for t in range(m)]
        own = self.own_[j]
        if own is None:
            return self._fit_target(X, y, rng, extra)
        col = int(np.count_nonzero(self.keep_[:own]))  # its place among the varying domains
        params, report = self._fit_target(X[:, [col]], y, rng, extra)
        # Into the full layout, [coefficients…, log exponents…] in groups of k: the other domains'
        # coefficients are 0 (log −inf), their exponents any finite value.
        k, groups = X.shape[1], len(params)
        n_coef = 1 if extra is None else 2
        full = np.concatenate([np.full(k, -np.inf if g < n_coef else 0.0) for g in range(groups)])
        full[np.arange(groups) * k + col] = params
        return full, report

    def _logs(self, X: np.ndarray) -> np.ndarray:
        return np.log(np.clip(X, 0.0, None) + self.eps)

    def _fit_target(
        self, X: np.ndarray, y: np.ndarray, rng: np.random.Generator, extra: np.ndarray | None = None
    ) -> tuple[np.ndarray, FitReport]:
        n, k = X.shape
        if extra is not None and n < 4 * k:
            raise MixoptError(
                f"bimix with steps has {4 * k} parameters per target but got only {n} sample(s) "
                "(checkpoints); add runs or fit on final losses only (no steps)"
            )
        sd = robust_scale(y)[1]  # the law is closed under scaling, not shifting: scaled only
        ys = y / sd
        LX = self._logs(X)
        ls = None if extra is None else np.log(extra)
        # Starts: exponents drawn at random (plus one with every α = 0.3, β = 0.5); for fixed exponents
        # the law is linear in its coefficients, so those come from non-negative least squares.
        alphas = np.vstack([np.full(k, 0.3), rng.uniform(0.02, 0.8, (self.n_starts, k))])
        betas = (
            None if extra is None else np.vstack([np.full(k, 0.5), rng.uniform(0.1, 1.5, (self.n_starts, k))])
        )
        # Starts from the targets held within 20 robust sds of their median: least squares on an
        # outlier (one run at 1e8) started where the Huber fit then fled to zero coefficients.
        mid = float(np.median(ys))
        yw = np.clip(ys, mid - 20.0, mid + 20.0)
        starts = np.array(
            [
                self._nnls_start(LX, ls, yw, alphas[i], None if betas is None else betas[i])
                for i in range(len(alphas))
            ]
        )
        ncoef = k if extra is None else 2 * k  # F, or P and Q; then the exponents
        P = starts.shape[1]
        hi = np.full(P, np.log(MAX_POWER))
        hi[:ncoef] = LOG_BOUND
        params, report = multistart_lbfgs(
            lambda th: self._batch(th, LX, ls, ys, k),
            starts,
            bounds=(np.full(P, -LOG_BOUND), hi),
            n_polish=self.n_polish,
        )
        params = params.copy()
        params[:ncoef] += np.log(sd)  # undo the scaling of the target
        return params, report

    @staticmethod
    def _nnls_start(
        LX: np.ndarray, ls: np.ndarray | None, y: np.ndarray, alpha: np.ndarray, beta: np.ndarray | None
    ) -> np.ndarray:
        """Log-coefficients by NNLS for the given exponents, then ``[coefficients, log α, (log β)]``."""
        from scipy.optimize import nnls

        g = np.exp(np.minimum(-alpha[None, :] * LX, MAX_EXPONENT))
        A = g if ls is None else np.hstack([g * np.exp(-beta[None, :] * ls[:, None]), g])
        coef = nnls(A, y, maxiter=50 * A.shape[1])[0]
        # Zero coefficients would sit where the log-parametrised gradient vanishes: lift them a little.
        coef = np.maximum(coef, 1e-3 * max(float(np.abs(y).mean()), 1e-12) / A.shape[1])
        parts = [np.log(coef), np.log(alpha)] + ([] if beta is None else [np.log(beta)])
        return np.concatenate(parts)

    def _batch(
        self, theta: np.ndarray, LX: np.ndarray, ls: np.ndarray | None, y: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Huber loss and gradient for S parameter rows; shapes (S, P) -> (S,), (S, P)."""
        if ls is None:
            f, a = theta[:, :k], theta[:, k:]
            alpha = np.exp(a)
            G = np.exp(
                np.minimum(-alpha[:, None, :] * LX[None, :, :] + f[:, None, :], MAX_EXPONENT)
            )  # F_i g_i
            R = G.sum(axis=2) - y[None, :]
            loss, psi = huber(R, self.huber_delta)
            df = np.einsum("sn,snk->sk", psi, G)
            da = np.einsum("sn,snk,nk->sk", psi, G, -LX) * alpha
            return loss.sum(axis=1), np.hstack([df, da])
        p, q, a, b = theta[:, :k], theta[:, k : 2 * k], theta[:, 2 * k : 3 * k], theta[:, 3 * k :]
        alpha, beta = np.exp(a), np.exp(b)
        g = np.exp(np.minimum(-alpha[:, None, :] * LX[None, :, :], MAX_EXPONENT))  # (S, n, k)
        Ps = np.exp(
            np.minimum(p[:, None, :] - beta[:, None, :] * ls[None, :, None], MAX_EXPONENT)
        )  # P_i s^-β_i
        Qs = np.exp(q)[:, None, :]
        H = Ps + Qs
        R = (g * H).sum(axis=2) - y[None, :]
        loss, psi = huber(R, self.huber_delta)
        dp = np.einsum("sn,snk->sk", psi, g * Ps)
        dq = np.einsum("sn,snk->sk", psi, g * Qs)
        da = np.einsum("sn,snk,nk->sk", psi, g * H, -LX) * alpha
        db = np.einsum("sn,snk,n->sk", psi, g * Ps, -ls) * beta
        return loss.sum(axis=1), np.hstack([dp, dq, da, db])

    def _predict_target(
        self, params: np.ndarray, X: np.ndarray, extra: np.ndarray | None = None
    ) -> np.ndarray:
        k = X.shape[1]
        LX = self._logs(X)
        if not getattr(self, "with_steps_", False):
            return np.exp(np.minimum(params[:k] - np.exp(params[k:]) * LX, MAX_EXPONENT)).sum(axis=1)
        s = np.ones(len(X)) if extra is None else extra
        p, q, a, b = params[:k], params[k : 2 * k], params[2 * k : 3 * k], params[3 * k :]
        H = np.exp(p[None, :] - np.exp(b)[None, :] * np.log(s)[:, None]) + np.exp(q)[None, :]
        return (np.exp(-np.exp(a)[None, :] * LX) * H).sum(axis=1)

    def exponents(self) -> list[dict[str, float | None]]:
        """Per target, the median α (share) and β (step; None without steps, so a JSON stays strict)
        over the domains in its law (one for a domain's own loss), for reports."""
        check_is_fitted(self)
        k = int(self.keep_.sum())
        out = []
        for prm in self.params_:
            if self.with_steps_:
                active = np.isfinite(prm[:k]) | np.isfinite(prm[k : 2 * k])
                alpha, beta = np.exp(prm[2 * k : 3 * k]), np.exp(prm[3 * k :])
            else:
                active = np.isfinite(prm[:k])
                alpha, beta = np.exp(prm[k:]), None
            out.append({"alpha": float(np.median(alpha[active])),
                        "beta": None if beta is None else float(np.median(beta[active]))})
        return out

    def power_terms(self, steps: float | None = None) -> tuple[np.ndarray, np.ndarray, float]:
        """The law at one step (default: ``at_step``, else the last training step) as
        ``Σ_i F_i·(r_i + ε)^(−α_i)`` per target: (F (m, K), α (m, K), ε).

        Dropped (constant) domains get F = 0.
        """
        check_is_fitted(self)
        m, K = len(self.params_), len(self.keep_)
        k = int(self.keep_.sum())
        F, A = np.zeros((m, K)), np.zeros((m, K))
        s = float(self._relative_step(steps)) if self.with_steps_ else 1.0
        for j, prm in enumerate(self.params_):
            if self.with_steps_:
                coef = np.exp(prm[:k] - np.exp(prm[3 * k :]) * np.log(s)) + np.exp(prm[k : 2 * k])
                alpha = np.exp(prm[2 * k : 3 * k])
            else:
                coef, alpha = np.exp(prm[:k]), np.exp(prm[k:])
            F[j, self.keep_] = coef
            A[j, self.keep_] = alpha
        return F, A, self.eps
