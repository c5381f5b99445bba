"""BiMix's training-free mixture: weights from each domain's conditional entropy, no proxy runs.

BiMix (Ge et al., 2024) observes that domains whose text is harder to predict need more of the
budget, and sets the mixture from an entropy estimate per domain, normalised by a softmax
(``r_i = exp(H_i / τ) / Σ_j exp(H_j / τ)``, τ = 1; ``proportional`` gives ``r_i ∝ H_i`` instead).

The conditional entropy H_i = H(X_t | X_{t−1}) of domain i is estimated here with a smoothed
**token bigram model**: counted on the domain's training tokens (the corpus's own tokenizer),
interpolated absolute discounting (D = 0.75, Kneser–Ney style) down to an add-one unigram, and
scored as cross-entropy in nats per token on the domain's validation tokens (pairs that span two
documents are left out). A held-out estimate keeps small domains from looking predictable only
because their bigrams were memorised. The weights are then fitted into the search space (floors,
ceilings, repetition caps) by Euclidean projection, with a note when that moved them.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from mixopt.errors import MixoptError, MixoptWarning, warn

log = logging.getLogger(__name__)

DISCOUNT = 0.75
DEFAULT_MAX_TOKENS = 2_000_000


def _pairs(tokens: np.ndarray, offsets: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(previous, next) token pairs within documents."""
    prev = tokens[:-1].astype(np.int64)
    nxt = tokens[1:].astype(np.int64)
    if offsets is not None and len(offsets) > 2:
        starts = np.asarray(offsets[1:-1], dtype=np.int64)  # first token of every document but the first
        ok = np.ones(len(nxt), dtype=bool)
        ok[starts[(starts > 0) & (starts <= len(nxt))] - 1] = False
        prev, nxt = prev[ok], nxt[ok]
    return prev, nxt


def _head(tokens: np.ndarray, offsets: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` tokens and their document offsets, the cut being the last document's end
    (an offset kept as the end had let one bigram across two documents)."""
    if len(tokens) <= n:
        return tokens, offsets
    return tokens[:n], np.append(offsets[offsets < n], n)


def bigram_entropy(
    train: np.ndarray,
    val: np.ndarray,
    vocab_size: int,
    *,
    train_offsets: np.ndarray | None = None,
    val_offsets: np.ndarray | None = None,
) -> float:
    """Held-out cross-entropy (nats/token) of a smoothed bigram model: an estimate of H(X_t | X_{t−1}).

    Raises:
        MixoptError: fewer than 2 training or validation tokens.
    """
    if len(train) < 2 or len(val) < 2:
        raise MixoptError(
            f"need at least 2 training and 2 validation tokens, got {len(train)} and {len(val)}"
        )
    V = int(vocab_size)
    p_tr, n_tr = _pairs(np.asarray(train), train_offsets)
    uni = np.bincount(np.asarray(train, dtype=np.int64), minlength=V).astype(float)
    p_uni = (uni + 1.0) / (uni.sum() + V)
    codes, counts = np.unique(p_tr * V + n_tr, return_counts=True)
    ctx = codes // V
    c_ctx = np.bincount(ctx, weights=counts, minlength=V)  # c(v·)
    n_types = np.bincount(ctx, minlength=V).astype(float)  # N1+(v·): distinct followers of v
    p_va, n_va = _pairs(np.asarray(val), val_offsets)
    q = p_va * V + n_va
    pos = np.clip(np.searchsorted(codes, q), 0, len(codes) - 1)
    c_pair = np.where(codes[pos] == q, counts[pos], 0).astype(float)
    cv = c_ctx[p_va]
    seen = cv > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(
            seen,
            np.maximum(c_pair - DISCOUNT, 0.0) / cv + DISCOUNT * n_types[p_va] / cv * p_uni[n_va],
            p_uni[n_va],
        )
    return float(-np.mean(np.log(p)))


@dataclass(frozen=True, kw_only=True)
class EntropyMixture:
    """The entropy mixture and how it was found.

    Attributes:
        weights: domain → weight (inside the space).
        entropy: domain → conditional entropy estimate (nats/token).
        raw: domain → weight before fitting into the space.
        projected: whether the space's bounds moved the weights.
        tokens_used: training tokens counted per domain.
    """

    weights: dict[str, float]
    entropy: dict[str, float]
    raw: dict[str, float]
    projected: bool
    tokens_used: dict[str, int] = field(default_factory=dict)
    estimator: str = "smoothed token bigram (absolute discounting 0.75 + add-one unigram), held-out"

    def as_dict(self) -> dict[str, Any]:
        return {
            "weights": self.weights,
            "entropy": self.entropy,
            "raw": self.raw,
            "projected": self.projected,
            "tokens_used": self.tokens_used,
            "estimator": self.estimator,
        }


def entropy_weights(
    entropy: np.ndarray,
    *,
    normalize: Literal["softmax", "proportional"] = "softmax",
    temperature: float = 1.0,
) -> np.ndarray:
    """Mixture weights from per-domain entropies (BiMix: softmax)."""
    h = np.asarray(entropy, dtype=float)
    if normalize == "softmax":
        if not (temperature > 0 and math.isfinite(temperature)):  # inf: uniform, written as Infinity
            raise MixoptError(f"--temperature must be a finite number > 0, got {temperature}")
        z = np.exp((h - h.max()) / temperature)
        return z / z.sum()
    if normalize == "proportional":
        return h / h.sum()
    raise MixoptError(f"normalize {normalize!r} is unknown; use softmax or proportional")


def entropy_mixture(
    corpus: Any,
    space: Any = None,
    *,
    normalize: Literal["softmax", "proportional"] = "softmax",
    temperature: float = 1.0,
    max_tokens: int = DEFAULT_MAX_TOKENS,
) -> EntropyMixture:
    """BiMix's entropy mixture for a built corpus (a :class:`~mixopt.corpus.Corpus` or its name).

    Args:
        corpus: the corpus whose domains are mixed.
        space: a :class:`~mixopt.space.SearchSpace` over the corpus's domains (None: no bounds).
        normalize, temperature: how entropies become weights (BiMix: softmax, τ = 1).
        max_tokens: training tokens counted per domain at most (the first ones; the bigram counts
            settle long before the 2M default).

    Raises:
        MixoptError: the corpus is not built, a domain is too small, the space's domains differ.
    """
    from mixopt.corpus.shards import Corpus
    from mixopt.swarm import project

    corpus = corpus if isinstance(corpus, Corpus) else Corpus.open(corpus)
    domains = corpus.domains
    if space is not None and tuple(space.domains) != tuple(domains):
        raise MixoptError(
            f"the search space's domains ({', '.join(space.domains)}) are not the corpus's "
            f"({', '.join(domains)})"
        )
    H, used = {}, {}
    for d in domains:
        tr = corpus.tokens(d, "train")
        off = corpus.doc_offsets(d, "train")
        tr, off = _head(tr, off, max_tokens)
        try:
            H[d] = bigram_entropy(
                tr,
                corpus.tokens(d, "val"),
                corpus.vocab_size,
                train_offsets=off,
                val_offsets=corpus.doc_offsets(d, "val"),
            )
        except MixoptError as exc:
            raise MixoptError(f"domain {d!r}: {exc}; rebuild the corpus with more text for it") from None
        used[d] = int(len(tr))
        log.info("conditional entropy of %s: %.4f nats/token (%d tokens)", d, H[d], used[d])
    raw = entropy_weights(np.array([H[d] for d in domains]), normalize=normalize, temperature=temperature)
    w, projected = raw, False
    if space is not None and not space.contains(raw):
        log.info("entropy mixture outside the space (%s); projected", "; ".join(space.violations(raw)[:3]))
        w, projected = project(space, raw), True
    return EntropyMixture(
        weights={d: float(x) for d, x in zip(domains, w, strict=True)},
        entropy=H,
        raw={d: float(x) for d, x in zip(domains, raw, strict=True)},
        projected=projected,
        tokens_used=used,
    )


def propose_entropy(
    corpus: Any,
    *,
    out: str | Path | None = None,
    normalize: Literal["softmax", "proportional"] = "softmax",
    temperature: float = 1.0,
    min_weight: float = 0.0,
    ceilings: Mapping[str, float] | None = None,
    fixed: Mapping[str, float] | None = None,
    max_epochs: float | None = None,
    target_tokens: float | None = None,
) -> EntropyMixture:
    """``mixopt entropy``: the entropy mixture of a built corpus inside its space, saved as mixture JSON.

    Raises:
        MixoptError: corpus not built, infeasible bounds (named), a domain too small.
    """
    from mixopt.corpus.shards import Corpus
    from mixopt.mixture import Mixture, evidence
    from mixopt.space import SearchSpace, default_target_tokens

    corpus = corpus if isinstance(corpus, Corpus) else Corpus.open(corpus)
    tokens = corpus.train_tokens()
    # As a search does: epochs read as passes at the corpus's own size.
    target_tokens = default_target_tokens(target_tokens, tokens)
    space = SearchSpace(
        domains=tuple(corpus.domains),
        tokens=tokens,
        min_weight=min_weight,
        ceilings=dict(ceilings or {}),
        fixed=dict(fixed or {}),
        max_epochs=max_epochs,
        target_tokens=target_tokens,
    )
    if out is not None:
        from mixopt.atomic import check_writable

        check_writable(out)
    em = entropy_mixture(corpus, space, normalize=normalize, temperature=temperature)
    w = [em.weights[d] for d in space.domains]
    if repeats := space.repetition_note(w):
        warn(repeats, MixoptWarning)
    if out is not None:
        notes = ["training-free: no proxy runs; weights from each domain's conditional entropy"]
        if em.projected:
            notes.append("the raw entropy weights broke the space's bounds and were projected into it")
        if repeats:
            notes.append(repeats)
        Mixture(
            em.weights,
            meta=evidence(**{
                "objective": {"kind": "none", "metric": "loss", "weights": {}},
                "method": "entropy",
                "params": {
                    "normalize": normalize,
                    **({"temperature": temperature} if normalize == "softmax" else {}),
                    "estimator": em.estimator,
                    "entropy_nats_per_token": em.entropy,
                    "raw_weights": em.raw,
                    "constraints": {
                        k: v for k, v in space.as_dict().items() if k not in ("domains", "tokens")
                    },
                },
                "tokens": space.token_plan(w),
                "provenance": {
                    "corpus": corpus.name,
                    "corpus_hash": corpus.hash,
                    "run_ids": [],
                },
                "notes": notes,
            }),
        ).save(out)
    return em
