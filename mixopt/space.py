"""The search space: which mixtures a search may propose.

Domains with their available tokens; a floor and a ceiling per domain; a repetition cap (at most
``max_epochs`` passes over any domain at ``target_tokens``, as RegMix and Olmix do); weights fixed
by the user. Every proposer and sampler receives this object and must stay inside it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mixopt.errors import MixoptError, listed

# Passes over a domain beyond which repeated data stops helping (Muennighoff et al. 2023: up to ~4
# epochs are almost as good as new data); proxies and mixtures without a --max-epochs warn above it.
DEFAULT_MAX_EPOCHS = 4.0


def epochs_over(epochs: Mapping[str, float], cap: float) -> tuple[dict[str, float], str]:
    """The domains repeated more than ``cap`` times, and their listing (the 5 most repeated, most
    first: ``"fortunes 11.2, manual 7.9 and 2 more"``; empty when none)."""
    over = dict(sorted(((d, e) for d, e in epochs.items() if e > cap), key=lambda kv: -kv[1]))
    return over, listed([f"{d} {e:.1f}" for d, e in over.items()], 5)


def default_target_tokens(target: float | None, tokens: Mapping[str, float] | None) -> float | None:
    """The final run's budget: ``target`` when given, else as many tokens as the domains hold (so
    epochs read as passes at the data's full size), else unknown."""
    if target is not None or not tokens:
        return target
    total = float(sum(tokens.values()))
    if not math.isfinite(total):  # it had been called "--target-tokens is inf", an option not given
        raise MixoptError("the domains' token counts (--tokens) sum to more than a float holds, and that "
                          "sum is the default --target-tokens; give counts that sum below 1e308, or "
                          "--target-tokens")
    return total or None


def check_finite_positive(option: str, value: float | None) -> None:
    """Refuse an option's value unless it is None or a finite number > 0.

    Raises:
        MixoptError: naming the option and its value.
    """
    # not (0 < x < inf): NaN fails it too; inf would be written to the JSON as Infinity
    if value is not None and not 0 < value < float("inf"):
        raise MixoptError(f"{option} is {value}; it must be a finite number > 0")


def _past_one(total: float) -> str:
    """A sum of bounds that misses 1, with the digits that show it does: 3 × 0.3334 had been "1 > 1"."""
    for digits in (4, 6, 9):
        shown = f"{total:.{digits}g}"
        if float(shown) != 1:
            return shown
    return repr(float(total))


@dataclass(frozen=True, kw_only=True)
class SearchSpace:
    """Feasible mixtures over ``domains``.

    Attributes:
        domains: domain names, in the order of every weight vector.
        tokens: available (training) tokens per domain; None when unknown (no repetition cap).
        min_weight: floor applied to every domain that is not fixed.
        floors: per-domain floors (max'ed with ``min_weight``).
        ceilings: per-domain ceilings.
        fixed: domains whose weight the user will not move.
        max_epochs: most passes over any domain at ``target_tokens`` (None: no cap).
        target_tokens: the token budget of the training job the mixture is for.
    """

    domains: tuple[str, ...]
    tokens: Mapping[str, float] | None = None
    min_weight: float = 0.0
    floors: Mapping[str, float] = field(default_factory=dict)
    ceilings: Mapping[str, float] = field(default_factory=dict)
    fixed: Mapping[str, float] = field(default_factory=dict)
    max_epochs: float | None = None
    target_tokens: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.domains, str):  # tuple("abc") would be three one-letter domains
            raise MixoptError(f"domains is the string {self.domains!r}; give a sequence of names, "
                              "e.g. ('web', 'code')")
        object.__setattr__(self, "domains", tuple(self.domains))
        if len(self.domains) < 2:
            raise MixoptError(f"there is nothing to mix with {len(self.domains)} domain(s) "
                              f"({', '.join(self.domains) or 'none'}); a mixture needs 2 or more (add a "
                              "domain to the corpus, or to --domains)")
        if len(set(self.domains)) != len(self.domains):
            twice = sorted({d for d in self.domains if self.domains.count(d) > 1})
            raise MixoptError(f"duplicate domain names: {listed(twice, 5)}; give each name once")
        for what, m in (
            ("floor", self.floors),
            ("ceiling", self.ceilings),
            ("fixed weight", self.fixed),
            ("token count", self.tokens or {}),
        ):
            unknown = sorted(set(m) - set(self.domains))
            if unknown:
                raise MixoptError(
                    f"{what} given for unknown domain(s) {', '.join(unknown)}; "
                    f"domains are {', '.join(self.domains)}"
                )
            for d, v in m.items():
                if what == "token count" and not (0 < float(v) < float("inf")):  # 0: no data to train on
                    raise MixoptError(f"{what} of domain {d!r} is {v}; give a finite number > 0 (a domain "
                                      "with no data cannot be trained on: drop it from the domains, or keep "
                                      f"it out of the mixture with --fix {d}=0 and any count > 0)")
                if what != "token count" and not 0 <= float(v) <= 1:
                    raise MixoptError(f"{what} of domain {d!r} is {v}; it must be in [0, 1]")
        if self.tokens is not None:
            missing = [d for d in self.domains if d not in self.tokens]
            if missing:
                raise MixoptError(f"token counts missing for domain(s) {', '.join(missing)}")
        if not 0 <= self.min_weight < 1:
            raise MixoptError(f"--min-weight is {self.min_weight}; it must be in [0, 1)")
        check_finite_positive("--max-epochs", self.max_epochs)
        check_finite_positive("--target-tokens", self.target_tokens)
        if self.max_epochs is not None:  # a cap built by hand had been dropped without a word
            if self.tokens is None:
                raise MixoptError("max_epochs needs the token counts per domain (tokens=...): a pass over a "
                                  "domain is its token count")
            # the budget the CLI assumes too: as many tokens as the domains hold
            object.__setattr__(self, "target_tokens", default_target_tokens(self.target_tokens, self.tokens))
        self.check_feasible()

    # ----- bounds -------------------------------------------------------------------------
    @property
    def n(self) -> int:
        return len(self.domains)

    def epoch_cap(self) -> np.ndarray:
        """Upper bound per domain from the repetition cap (1 where there is none)."""
        if self.tokens is None or self.max_epochs is None or self.target_tokens is None:
            return np.ones(self.n)
        toks = np.array([float(self.tokens[d]) for d in self.domains])
        return np.minimum(1.0, self.max_epochs * toks / self.target_tokens)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """(lower, upper) weight per domain, with fixed domains pinned."""
        lo = np.array([max(self.min_weight, float(self.floors.get(d, 0.0))) for d in self.domains])
        hi = np.minimum(np.array([float(self.ceilings.get(d, 1.0)) for d in self.domains]), self.epoch_cap())
        for i, d in enumerate(self.domains):
            if d in self.fixed:
                lo[i] = hi[i] = float(self.fixed[d])
        return lo, hi

    def check_feasible(self) -> None:
        """Raise a MixoptError naming the conflicting bounds when no mixture satisfies them."""
        lo, hi = self.bounds()
        cap = self.epoch_cap()
        for i, d in enumerate(self.domains):
            # bounds() pins a fixed domain, hiding a ceiling, cap or floor it breaks: check those here.
            if d in self.fixed:
                w = float(self.fixed[d])
                broken = []
                if d in self.ceilings and w > float(self.ceilings[d]) + 1e-12:
                    broken.append(f"ceiling {self.ceilings[d]:.4g}")
                if w > cap[i] + 1e-12:
                    broken.append(f"repetition cap {cap[i]:.4g} (max_epochs × tokens / target_tokens)")
                if d in self.floors and w < float(self.floors[d]) - 1e-12:
                    broken.append(f"floor {self.floors[d]:.4g}")
                if broken:
                    raise MixoptError(
                        f"domain {d!r} is fixed at {w:g}, outside its {', '.join(broken)}; "
                        "change the fixed weight or drop the other bound"
                    )
            if lo[i] > hi[i] + 1e-12:
                why = []
                if d in self.fixed:
                    why.append(f"fixed at {self.fixed[d]}")
                why.append(f"floor {lo[i]:.4g}")
                if d in self.ceilings:  # the upper bound is the lower of the ceiling and the cap
                    why.append(f"ceiling {float(self.ceilings[d]):.4g}")
                if self.epoch_cap()[i] < 1:
                    why.append(
                        f"repetition cap {self.epoch_cap()[i]:.4g} (max_epochs × tokens / target_tokens)"
                    )
                raise MixoptError(f"domain {d!r} has no feasible weight: {', '.join(why)}; relax one of them")
        if lo.sum() > 1 + 1e-9:
            parts = self._bound_parts(lo, low=True)
            raise MixoptError(f"the lower bounds sum to {_past_one(lo.sum())} > 1 ({parts}); lower one of "
                              "them")
        if hi.sum() < 1 - 1e-9:
            parts = self._bound_parts(hi, low=False)
            raise MixoptError(f"the upper bounds sum to {_past_one(hi.sum())} < 1 ({parts}); raise one of "
                              "them")

    def _bound_parts(self, bound: np.ndarray, *, low: bool) -> str:
        """Which options make up the sum of the lower (or upper) bounds, each with its domains."""
        cap = self.epoch_cap()
        fixed, floors, ceilings, caps, rest = [], [], [], [], []
        for i, d in enumerate(self.domains):
            v = f"{d}={bound[i]:.4g}"
            if d in self.fixed:
                fixed.append(v)
            elif low and d in self.floors and bound[i] > self.min_weight:
                floors.append(v)
            elif not low and cap[i] < float(self.ceilings.get(d, 1.0)):
                caps.append(v)
            elif not low and d in self.ceilings:
                ceilings.append(v)
            else:
                rest.append(d)
        parts = [f"--fix {', '.join(fixed)}"] if fixed else []
        if floors:
            parts.append(f"floors {', '.join(floors)}")
        if low and rest and self.min_weight > 0:
            other = "other " if fixed or floors else ""
            # named where few: with --reuse-mixture one of them is the group, floored as one
            names = f": {', '.join(rest)}" if len(rest) <= 8 else ""
            parts.append(f"--min-weight {self.min_weight:g} × {len(rest)} {other}domain(s){names}")
        if ceilings:
            parts.append(f"--max-weight {', '.join(ceilings)}")
        if caps:
            parts.append(f"repetition caps (--max-epochs × tokens / --target-tokens) {', '.join(caps)}")
        if not low and rest:
            parts.append(f"{len(rest)} domain(s) without a bound")
        return "; ".join(parts) or "no bounds"

    # ----- membership ---------------------------------------------------------------------
    def violations(self, w: Sequence[float] | np.ndarray, tol: float = 1e-9) -> list[str]:
        """Human-readable reasons why weight vector ``w`` is outside the space (empty if inside)."""
        w = np.asarray(w, dtype=float)
        out: list[str] = []
        if w.shape != (self.n,):
            return [f"expected {self.n} weights, got shape {w.shape}"]
        if abs(w.sum() - 1) > 1e-6:
            out.append(f"weights sum to {w.sum():.6g}")
        lo, hi = self.bounds()
        for i, d in enumerate(self.domains):
            if w[i] < lo[i] - tol:
                out.append(f"{d}: {w[i]:.4g} below floor {lo[i]:.4g}")
            if w[i] > hi[i] + tol:
                out.append(f"{d}: {w[i]:.4g} above ceiling {hi[i]:.4g}")
        return out

    def snap(self, w: Sequence[float] | np.ndarray, tol: float = 1e-9) -> np.ndarray:
        """``w`` with each weight within ``tol`` of a bound set on it, and the sum's remainder given to
        the weight furthest from its bounds: a proposer's float error had exported a ceiling of 0.25
        as 0.25000000000000006, which a strict ``w <= cap`` check downstream refuses."""
        lo, hi = self.bounds()
        given = np.clip(np.asarray(w, dtype=float), 0.0, None)
        to_lo, to_hi = np.abs(given - lo), np.abs(given - hi)
        # on the nearer bound: a range narrower than tol (a cap of 1e-9) had its ceiling set on its floor
        out = np.where(np.minimum(to_lo, to_hi) > tol, given, np.where(to_lo <= to_hi, lo, hi))
        # The remainder is the input's float error plus the snaps' own moves, which add up past tol
        # (hypothesis: an exact solve's six weights of 5e-10 set on 0 left the sum 3.2e-9 short, and the
        # mixture, renormalised, put a ceiling of 0.3 at 0.300000001); a real gap in the input is not hidden.
        if abs(1.0 - given.sum()) <= tol:
            gap = 1.0 - out.sum()
            slack = np.minimum(out - lo, hi - out)
            # the weight furthest from its bounds takes it; where every weight was set on a bound (a
            # weight of 1 − 1e-9 on its ceiling of 1 beside five caps of 3.3e-10: hypothesis), one with
            # room on the side the remainder needs (the sum had stayed 1e-9 over)
            room = hi - out if gap > 0 else out - lo
            i = int(np.argmax(slack)) if slack.max() > 0 else int(np.argmax(room))
            out[i] = np.clip(out[i] + gap, lo[i], hi[i])
        return out

    def contains(self, w: Sequence[float] | np.ndarray, tol: float = 1e-9) -> bool:
        return not self.violations(w, tol)

    def contains_rows(self, W: np.ndarray, tol: float = 1e-9) -> np.ndarray:
        """Vectorised :meth:`contains` over rows of ``W`` (n_rows, n_domains)."""
        lo, hi = self.bounds()
        W = np.asarray(W, dtype=float)
        return (
            (np.abs(W.sum(axis=1) - 1) <= 1e-6)
            & np.all(lo - tol <= W, axis=1)
            & np.all(hi + tol >= W, axis=1)
        )

    def best_row(self, W: np.ndarray, y: np.ndarray) -> int | None:
        """Index of the lowest finite ``y`` among the rows of ``W`` inside the space (float noise of
        1e-6 allowed), or None when no row is: the best run a proposal could have been."""
        y = np.asarray(y, dtype=float).ravel()
        ok = np.isfinite(y) & self.contains_rows(W, tol=1e-6)
        if not ok.any():
            return None
        return int(np.flatnonzero(ok)[np.argmin(y[ok])])

    def epochs(self, w: Sequence[float] | np.ndarray) -> dict[str, float] | None:
        """Passes over each domain at ``target_tokens`` for weights ``w`` (None when unknown)."""
        if self.tokens is None or self.target_tokens is None:
            return None
        w = np.asarray(w, dtype=float)
        # counts are > 0 (checked): as epoch_cap reads them, also below 1 (a library user's billions),
        # where a floor of 1 token had halved the passes reported for 0.5
        target = self.target_tokens
        return {d: float(w[i] * target / float(self.tokens[d])) for i, d in enumerate(self.domains)}

    def token_plan(self, w: Sequence[float] | np.ndarray) -> dict[str, Any]:
        """A mixture JSON's ``tokens`` block for weights ``w``: the target budget and, when it is
        known, each domain's tokens at it and (with the domains' sizes) its epochs."""
        plan: dict[str, Any] = {"target_tokens": self.target_tokens}
        if (target := self.target_tokens) is not None:
            plan["per_domain"] = {d: float(x * target) for d, x in zip(self.domains, w, strict=True)}
            epochs = self.epochs(w)
            if epochs is not None:
                plan["epochs"] = epochs
        return plan

    def repetition_note(self, w: Sequence[float] | np.ndarray) -> str | None:
        """Said when no --max-epochs caps the space and weights ``w`` repeat a domain more than
        :data:`DEFAULT_MAX_EPOCHS` times at the target budget (a small domain of a large corpus)."""
        epochs = self.epochs(w)
        if self.max_epochs is not None or not epochs:
            return None
        over, named = epochs_over(epochs, DEFAULT_MAX_EPOCHS)
        if not over:
            return None
        cap = f"{DEFAULT_MAX_EPOCHS:g}"
        return (f"at the target budget ({self.target_tokens:,.0f} tokens) this mixture repeats "
                f"{named} times (epochs), more than the {cap} passes repeated data stays useful "
                f"for; --max-epochs {cap} caps it (as RegMix and Olmix do)")

    def constraints(self) -> dict:
        """The bounds a mixture must keep (:meth:`as_dict` without the domain list), for its JSON."""
        return {k: v for k, v in self.as_dict().items() if k != "domains"}

    def as_dict(self) -> dict:
        return {
            "domains": list(self.domains),
            "tokens": dict(self.tokens) if self.tokens is not None else None,
            "min_weight": self.min_weight,
            "floors": dict(self.floors),
            "ceilings": dict(self.ceilings),
            "fixed": dict(self.fixed),
            "max_epochs": self.max_epochs,
            "target_tokens": self.target_tokens,
        }
