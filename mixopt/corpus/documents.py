"""Documents of one domain: chunking long texts, exact-duplicate removal, the train/validation split.

A document is the unit of the split and of deduplication, so a whole novel or a 20 MB file is
first cut at paragraph boundaries into documents of at most ``max_chars`` characters; a domain of
many short texts keeps them as they are.
"""

from __future__ import annotations

import hashlib
import re
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from mixopt.errors import MixoptError

EOT = "<|endoftext|>"
DOMAIN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
RESERVED_NAMES = frozenset({"manifest.json", "tokenizer.json"})
# A paragraph and the blank lines that follow it (the last one may end without them).
_PARAGRAPH = re.compile(r".*?(?:\n[ \t\r\f\v]*\n\s*|\Z)", re.S)


def decode_utf8(data: bytes, policy: str) -> tuple[str | None, int, int | None]:
    """``data`` as text under a not-UTF-8 ``policy`` (a recipe's ``on_decode_error``, ``corpus add
    --on-decode-error``): (text, characters replaced, offset of the first bad byte or None).

    "replace" puts U+FFFD for the bad bytes (counting only those, not U+FFFD the input had);
    "skip" gives no text; "error" raises the ``UnicodeDecodeError`` for the caller to word.
    """
    try:
        return data.decode("utf-8"), 0, None
    except UnicodeDecodeError as exc:
        if policy == "replace":
            text = data.decode("utf-8", errors="replace")
            return text, text.count("\ufffd") - data.count("\ufffd".encode()), exc.start
        if policy == "skip":
            return None, 0, exc.start
        raise


def check_domain_name(name: str) -> str:
    """Domains become folder names and metric names (``loss/<domain>``): keep them plain."""
    if not isinstance(name, str) or not DOMAIN_NAME.match(name):
        raise MixoptError(
            f"domain name {name!r} is not valid; use ASCII letters, digits, '_', '-' or '.', starting with a "
            "letter or digit (at most 64, no '/')"
        )
    if name in RESERVED_NAMES:  # each domain is a folder next to these files of the corpus
        raise MixoptError(f"domain name {name!r} is the name of a corpus file; rename the domain")
    from mixopt.tables import refuse_id_columns

    refuse_id_columns([name])  # built, its swarm and run tables were refused (a fuzzing pass)
    return name


def _pieces(text: str, max_chars: int) -> Iterator[str]:
    """Paragraphs of ``text``; a paragraph longer than ``max_chars`` is cut at lines, then hard."""
    for m in _PARAGRAPH.finditer(text):
        para = m.group(0)
        if not para:
            continue
        if len(para) <= max_chars:
            yield para
            continue
        for line in para.splitlines(keepends=True):
            for i in range(0, len(line), max_chars):
                yield line[i : i + max_chars]


def chunk_text(text: str, max_chars: int = 8192) -> list[str]:
    """Cut ``text`` into documents of at most ``max_chars`` characters at paragraph boundaries.

    Paragraphs are packed greedily, so chunks are usually between ``max_chars / 2`` and
    ``max_chars``; joining the chunks gives back ``text`` exactly.
    """
    if len(text) <= max_chars:
        return [text]
    chunks: list[str] = []
    cur: list[str] = []
    size = 0
    for piece in _pieces(text, max_chars):
        if size + len(piece) > max_chars and cur:
            chunks.append("".join(cur))
            cur, size = [], 0
        cur.append(piece)
        size += len(piece)
    if cur:
        chunks.append("".join(cur))
    return chunks


@dataclass(frozen=True, kw_only=True)
class DomainDocs:
    """One domain's cleaned documents, in input order, and what cleaning removed."""

    name: str
    documents: list[str]
    duplicates_removed: int
    empty_removed: int
    digest: str  # sha256 over the kept documents, for content hashes


def document_key(text: str) -> bytes:
    """The key by which two documents are the same text (duplicates, a validation document
    trained on elsewhere)."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()


def clean_documents(name: str, texts: Iterable[str], *, max_chars: int = 8192) -> DomainDocs:
    """Chunk long texts, drop whitespace-only documents and exact duplicates (first one kept)."""
    seen: set[bytes] = set()
    docs: list[str] = []
    dups = empty = 0
    digest = hashlib.sha256()
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise MixoptError(
                f"domain {name!r}: document {i} is {type(text).__name__}, not text; pass strings"
            )
        if EOT in text:  # the separator must never occur inside a document
            text = text.replace(EOT, "")
        for chunk in chunk_text(text, max_chars):
            if not chunk.strip():
                empty += 1
                continue
            try:
                h = document_key(chunk)
            except UnicodeEncodeError as exc:
                raise MixoptError(
                    f"domain {name!r}: document {i} holds invalid Unicode at character {exc.start}; "
                    "decode the source as UTF-8 without surrogate escapes"
                ) from None
            if h in seen:
                dups += 1
                continue
            seen.add(h)
            digest.update(h)
            docs.append(chunk)
    return DomainDocs(
        name=name, documents=docs, duplicates_removed=dups, empty_removed=empty, digest=digest.hexdigest()
    )


def split_indices(domain: str, n_docs: int, val_documents: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded document-level split: ``val_documents`` documents for validation, the rest for training.

    The draw depends on the seed and the domain's name only, so adding a domain to a corpus does
    not change the split of the others. Both index arrays are sorted (input order kept).
    """
    need = 2 * val_documents
    if n_docs < need:
        raise MixoptError(
            f"domain {domain!r} has {n_docs} document{'' if n_docs == 1 else 's'} after deduplication but "
            f"needs at least {need} "
            f"({val_documents} for validation and as many for training); "
            + ("add text, or lower val_documents (the recipe's key; --val-documents for corpus add)"
               if val_documents > 1 and n_docs >= 2 else
               "add text to it (or leave the domain out): one validation and one training document are "
               "the least a domain can have")
        )
    rng = np.random.default_rng([seed, zlib.crc32(domain.encode("utf-8"))])
    perm = rng.permutation(n_docs)
    val = np.sort(perm[:val_documents])
    train = np.sort(perm[val_documents:])
    return train, val


def pack_texts(texts: Iterable[str], max_chars: int) -> Iterator[str]:
    """Join consecutive short texts (blank line between) into documents of at most ``max_chars``.

    For sources of many tiny files (licence rules, quotations): one document per file would give
    mostly end-of-text tokens and a validation split of a few hundred tokens. Longer texts pass
    through unchanged (the build chunks them).
    """
    cur: list[str] = []
    size = 0
    for t in texts:
        t = t.strip("\n")
        if not t.strip():
            continue
        if len(t) >= max_chars:
            yield t + "\n"
            continue
        if cur and size + len(t) + 2 > max_chars:
            yield "\n\n".join(cur) + "\n"
            cur, size = [], 0
        cur.append(t)
        size += len(t) + 2
    if cur:
        yield "\n\n".join(cur) + "\n"
