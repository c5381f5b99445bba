"""Validation: fixed, deterministic windows of every domain's validation split, and their scores.

The windows depend only on the validation tokens, the context and the per-domain token cap, so
every run on a corpus (any mixture, seed or rung with the same context) is scored on exactly the
same tokens, and differences between runs are paired. Windows of ``context + 1`` tokens are
spread evenly over the split (not just its start, which is one or two documents); all ``context``
predictions of a window count. Metrics, per domain ``d``:

- ``loss/<d>``: mean next-token cross-entropy in nats per token;
- ``bpb/<d>``: bits per byte = loss / ln 2 / (validation bytes per token of ``d``), comparable
  across tokenizers;

plus ``objective`` (mean loss over domains) and ``objective_bpb`` (mean bits per byte).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from mixopt.errors import MixoptError

EVAL_BATCH = 32  # windows per forward pass


def fixed_windows(tokens: np.ndarray, context: int, max_tokens: int) -> np.ndarray:
    """Evenly spaced windows (n, context + 1) covering at most ``max_tokens`` predicted tokens.

    A split shorter than one window gives one shorter window holding all of it.
    """
    n_tok = len(tokens)
    if n_tok < 2:
        return np.zeros((0, 2), dtype=np.int64)
    if n_tok < context + 1:
        return np.asarray(tokens, dtype=np.int64)[None, :]
    n_win = max(1, min(max_tokens // context, (n_tok - 1) // context))
    starts = np.linspace(0, n_tok - context - 1, n_win).round().astype(np.int64)
    return np.asarray(tokens[starts[:, None] + np.arange(context + 1)], dtype=np.int64)


@dataclass(frozen=True)
class ValidationSet:
    """Fixed validation windows per domain, and the bytes per token that convert loss to bpb."""

    windows: dict[str, np.ndarray]  # domain -> (n, T + 1) int64
    bytes_per_token: dict[str, float]

    @classmethod
    def from_corpus(cls, corpus, context: int, max_tokens: int) -> ValidationSet:  # noqa: ANN001 (Corpus)
        windows, bpt = {}, {}
        for d in corpus.domains:
            w = fixed_windows(corpus.tokens(d, "val"), context, max_tokens)
            if len(w) == 0:
                raise MixoptError(
                    f"domain {d!r} of corpus {corpus.name!r} has an empty validation split; "
                    "rebuild the corpus with more documents in that domain"
                )
            windows[d] = w
            bpt[d] = corpus.bytes_per_token(d, "val")
        return cls(windows, bpt)

    @property
    def tokens(self) -> int:
        """Predicted tokens per evaluation, over all domains."""
        return sum(w.shape[0] * (w.shape[1] - 1) for w in self.windows.values())

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module) -> dict[str, float]:
        """Score ``model`` (a ProxyLM) on every domain; returns the metrics named in the module doc."""
        was_training = model.training
        model.eval()
        metrics: dict[str, float] = {}
        try:
            for d, win in self.windows.items():
                total, count = 0.0, 0
                for i in range(0, len(win), EVAL_BATCH):
                    x = torch.from_numpy(win[i : i + EVAL_BATCH])
                    losses = model.token_losses(x[:, :-1], x[:, 1:])  # (b, T)
                    total += float(losses.double().sum())
                    count += losses.numel()
                loss = total / count
                metrics[f"loss/{d}"] = loss
                metrics[f"bpb/{d}"] = loss / math.log(2) / self.bytes_per_token[d]
        finally:
            model.train(was_training)
        domains = list(self.windows)
        metrics["objective"] = sum(metrics[f"loss/{d}"] for d in domains) / len(domains)
        metrics["objective_bpb"] = sum(metrics[f"bpb/{d}"] for d in domains) / len(domains)
        return metrics
