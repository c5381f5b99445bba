"""Training batches drawn from a mixture: a domain per sequence, then a window from its shard.

Each sequence's domain is drawn independently with the mixture's weights in force at the current
training fraction (``Mixture.weights_at``), so a domain of weight 0 never appears and a schedule
switches at its phase boundaries. The window is ``context + 1`` consecutive tokens starting at a
uniformly random position of that domain's training shard (documents are stored back to back, so
a window may span an end-of-text token, as in GPT-2-style training).

Both draws use one seeded ``numpy.random.Generator`` and take the same number of uniforms per batch
whatever the mixture, so two runs with the same seed and different mixtures see common random
numbers (their differences come from the mixture, not from sampling noise).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from mixopt.errors import MixoptError
from mixopt.mixture import Mixture, check_domains


def short_domains(tokens: Mapping[str, float], context: int) -> dict[str, int]:
    """Domain → its tokens, for the domains with fewer than one window (context + 1 tokens): no
    sequence can be drawn from them."""
    return {d: int(n) for d, n in tokens.items() if n < context + 1}


class MixtureSampler:
    """Draws (batch, context + 1) token windows from per-domain training shards.

    Args:
        shards: domain → 1-D token array (a memmap is fine); the order fixes domain indices.
        mixture: the weights (and optional schedule); domains it does not name get weight 0.
        context: T; each window holds T + 1 tokens (inputs and shifted targets).
        batch: B, sequences per draw.
        seed: seeds the generator.
    """

    def __init__(
        self, shards: Mapping[str, np.ndarray], mixture: Mixture, *, context: int, batch: int, seed: int
    ) -> None:
        self.domains = list(shards)
        self.shards = [shards[d] for d in self.domains]
        check_domains(mixture.weights, self.domains)
        self.mixture = mixture
        self.context = context
        self.batch = batch
        self.rng = np.random.default_rng(seed)
        self._n_starts = np.array(
            [len(s) - context for s in self.shards], dtype=np.int64
        )  # valid window starts
        self._offsets = np.arange(context + 1, dtype=np.int64)
        phases = [w for _, w in mixture.schedule] or [mixture.weights]
        short = short_domains({d: len(s) for d, s in zip(self.domains, self.shards, strict=True)}, context)
        for d, n in short.items():
            if any(w.get(d, 0.0) > 0 for w in phases):
                raise MixoptError(
                    f"domain {d!r} has {n} training tokens, fewer than one window of "
                    f"context + 1 = {context + 1}; give it weight 0, add text to it, or train with a shorter "
                    "context (another rung or model config)"
                )

    def weights_at(self, fraction: float) -> np.ndarray:
        """Weights (n_domains,) in force at training fraction ``fraction``."""
        w = self.mixture.weights_at(fraction)
        return np.array([w.get(d, 0.0) for d in self.domains], dtype=np.float64)

    def draw(self, fraction: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """One batch at training fraction ``fraction``.

        Returns:
            domain indices (B,) into ``self.domains``, and tokens (B, T + 1) as int64.
        """
        w = self.weights_at(fraction)
        u_domain = self.rng.random(self.batch)
        u_start = self.rng.random(self.batch)
        # Inverse-CDF over the positive-weight domains only: a zero weight can never be drawn, even
        # when a uniform lands exactly on a CDF step.
        live = np.flatnonzero(w > 0)
        cdf = np.cumsum(w[live])
        cdf /= cdf[-1]
        dom = live[np.minimum(np.searchsorted(cdf, u_domain, side="right"), len(live) - 1)]
        starts = (u_start * self._n_starts[dom]).astype(np.int64)  # (B,) uniform over valid starts
        out = np.empty((self.batch, self.context + 1), dtype=np.int64)
        for d in np.unique(dom):
            rows = np.flatnonzero(dom == d)
            out[rows] = self.shards[d][starts[rows, None] + self._offsets]  # (k, T + 1) gather
        return dom, out


    def windows_of(self, domain: int, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` windows (n, T + 1) of domain index ``domain`` drawn with ``rng`` (not the batch
        generator: a probe drawn here leaves the training stream as it was)."""
        starts = (rng.random(n) * self._n_starts[domain]).astype(np.int64)
        return np.asarray(self.shards[domain][starts[:, None] + self._offsets], dtype=np.int64)


def expected_epochs(mixture: Mixture, train_tokens: Mapping[str, int], budget: float) -> dict[str, float]:
    """Passes over each domain's training split that ``budget`` tokens of ``mixture`` take.

    A schedule is integrated phase by phase (each phase's share of the budget × its weights).
    """
    phases = list(mixture.schedule) or [(1.0, mixture.weights)]
    share = {d: 0.0 for d in train_tokens}
    prev = 0.0
    for until, w in phases:
        for d in share:
            share[d] += (until - prev) * w.get(d, 0.0)
        prev = until
    return {
        d: (
            share[d] * budget / train_tokens[d]
            if train_tokens[d] > 0
            else (float("inf") if share[d] > 0 else 0.0)
        )
        for d in share
    }
