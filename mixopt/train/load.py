"""Expert load accounting: which domain's tokens go to which expert, and how unbalanced the load is.

:class:`ExpertLoad` sums, per MoE layer l, domain d and expert e, the routed token slots
``counts[l, d, e]``. From it: each domain's share of slots per expert (does a domain have experts
of its own?), and the maximum load violation (MaxVio, Wang et al. 2024):
``(max_e load_e − mean load) / mean load`` over all domains' slots, 0 at perfect balance.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy.special import entr


class ExpertLoad:
    """Routed slots per (layer, domain, expert), added batch by batch."""

    def __init__(self, n_layers: int, domains: Sequence[str], n_experts: int) -> None:
        self.domains = list(domains)
        self.n_experts = n_experts
        self.counts = np.zeros((n_layers, len(self.domains), n_experts), dtype=np.int64)

    def add(self, routing: Sequence[torch.Tensor], domain_of_row: np.ndarray, seq_len: int) -> None:
        """Add one forward pass: ids (B·S, K) per layer; rows are sequences of ``seq_len`` tokens."""
        G, E = len(self.domains), self.n_experts
        dom_tok = torch.from_numpy(np.repeat(domain_of_row.astype(np.int64), seq_len))  # (B·S,)
        for layer, ids in enumerate(routing):
            flat = (dom_tok.to(ids.device).unsqueeze(1) * E + ids).reshape(-1)
            self.counts[layer] += torch.bincount(flat, minlength=G * E).view(G, E).cpu().numpy()

    def shares(self) -> np.ndarray:
        """(L, G, E): each domain's slots split over the experts (rows sum to 1; 0 for unseen domains)."""
        tot = self.counts.sum(-1, keepdims=True)
        return np.divide(self.counts, tot, out=np.zeros(self.counts.shape), where=tot > 0)

    def maxvio(self) -> np.ndarray:
        """(L,) MaxVio of each layer over every slot counted."""
        load = self.counts.sum(1).astype(np.float64)  # (L, E)
        mean = load.mean(-1)
        return np.divide(load.max(-1) - mean, mean, out=np.zeros(len(load)), where=mean > 0)

    def summary(self) -> dict[str, dict[str, float]]:
        """Per domain, averaged over layers: the busiest expert's share and the routing entropy (nats).

        A domain spread evenly over E experts has top share 1/E and entropy ln E; a domain that
        keeps to a few experts has a high top share and a low entropy.
        """
        sh = self.shares()
        out: dict[str, dict[str, float]] = {}
        for g, d in enumerate(self.domains):
            s = sh[:, g, :]  # (L, E)
            if self.counts[:, g].sum() == 0:
                continue
            ent = entr(s).sum(-1)
            out[d] = {"top_share": float(s.max(-1).mean()), "entropy": float(ent.mean())}
        return out

    def as_dict(self) -> dict:
        return {
            "domains": self.domains,
            "counts": self.counts.tolist(),
            "maxvio": self.maxvio().tolist(),
            "summary": self.summary(),
        }
