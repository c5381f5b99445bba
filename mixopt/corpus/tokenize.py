"""The corpus tokenizer: one byte-level BPE (HF ``tokenizers``) for every domain, and fast encoding.

The tokenizer is trained on a sample balanced across domains (the same number of characters
from each, where a domain has them), so a large domain does not own the vocabulary. Byte-level
BPE with no normaliser decodes back to the exact input text.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping, Sequence

import numpy as np

from mixopt.corpus.documents import EOT
from mixopt.errors import MixoptError

log = logging.getLogger(__name__)

MIN_VOCAB = 256 + 1 + 1  # the byte alphabet, the end-of-text token and at least one merge


def balanced_sample(docs: Mapping[str, Sequence[str]], chars_per_domain: int, seed: int) -> list[str]:
    """Up to ``chars_per_domain`` characters of documents from each domain, drawn in a seeded order."""
    rng = np.random.default_rng(seed)
    sample: list[str] = []
    for domain in sorted(docs):
        texts = docs[domain]
        taken = 0
        for i in rng.permutation(len(texts)):
            if taken >= chars_per_domain:
                break
            t = texts[int(i)][: chars_per_domain - taken]
            sample.append(t)
            taken += len(t)
    return sample


def check_vocab_size(vocab_size: int, what: str = "vocab_size") -> None:
    """Refuse a vocabulary the corpus cannot store, naming ``what`` (the option or recipe key)."""
    if isinstance(vocab_size, bool) or not MIN_VOCAB <= vocab_size <= 65536:
        raise MixoptError(
            f"{what} {vocab_size} is out of range; use {MIN_VOCAB}..65536 (tokens are stored as uint16)"
        )


def train_tokenizer(texts: Sequence[str], vocab_size: int):  # -> tokenizers.Tokenizer
    """Train a byte-level BPE with an end-of-text special token on ``texts``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    check_vocab_size(vocab_size)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    with parallel_tokenizers():
        tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    return tok


@contextlib.contextmanager
def parallel_tokenizers() -> Iterator[None]:
    """Let ``tokenizers`` use all cores here (the CLI turns its parallelism off for fork safety)."""
    old = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "true"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = old


def encode_documents(tok, texts: Sequence[str], eot_id: int, *, batch: int = 512) -> Iterator[np.ndarray]:
    """Token ids of each document followed by the end-of-text id, as uint16 arrays, one batch
    encoded at a time: a generator, so that a domain's tokens go to its shard as they come (a list
    of them, then one array, had held a large domain's tokens three times over at once)."""
    encode = getattr(tok, "encode_batch_fast", tok.encode_batch)  # _fast skips offsets (tokenizers>=0.21)
    eot = np.array([eot_id], dtype=np.uint16)
    for start in range(0, len(texts), batch):
        with parallel_tokenizers():
            encoded = encode(list(texts[start : start + batch]), add_special_tokens=False)
        for enc in encoded:
            yield np.concatenate([np.asarray(enc.ids, dtype=np.uint16), eot])
