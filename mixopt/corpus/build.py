"""Build a corpus folder (shards + tokenizer + manifest) from documents grouped by domain.

This is the one place that writes the format described in :mod:`mixopt.corpus.shards`; recipes
(:mod:`mixopt.corpus.recipe`) and a user's own files (:mod:`mixopt.corpus.ingest`) both end here.
Everything is written into a temporary folder that replaces ``out_dir`` only when the build has
succeeded, so a failed build leaves nothing behind and an old corpus intact.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mixopt.atomic import atomic_dir, write_json
from mixopt.corpus.documents import (
    EOT,
    DomainDocs,
    check_domain_name,
    clean_documents,
    document_key,
    split_indices,
)
from mixopt.corpus.shards import CORPUS_SCHEMA, write_split
from mixopt.corpus.tokenize import balanced_sample, encode_documents, train_tokenizer
from mixopt.errors import MixoptError, MixoptWarning, warn

log = logging.getLogger(__name__)

DEFAULT_VAL_DOCUMENTS = 64
DEFAULT_MAX_DOC_CHARS = 8192
DEFAULT_SAMPLE_CHARS = 1_500_000  # per domain, for tokenizer training


def built_from(manifest: Mapping[str, Any]) -> str | None:
    """What a built corpus was made from, as its manifest says: ``recipe <path>`` (``corpus build``),
    the one source path of ``corpus add``, or None (not known)."""
    if manifest.get("recipe"):
        return f"recipe {manifest['recipe']}"
    srcs = manifest.get("sources") or [{}]
    return srcs[0].get("package") if isinstance(srcs[0], dict) else None


def build_params(
    *, vocab_size: int, val_documents: int, seed: int, max_doc_chars: int, tokenizer_sample_chars: int
) -> dict[str, int]:
    """The build parameters that change the output (part of the content hash)."""
    return {
        "vocab_size": vocab_size,
        "val_documents": val_documents,
        "seed": seed,
        "max_doc_chars": max_doc_chars,
        "tokenizer_sample_chars": tokenizer_sample_chars,
    }


def _drop_other_domains_validation(name: str, train: dict[str, list[str]],
                                   val: dict[str, list[str]]) -> dict[str, int]:
    """Leave out of each domain's training split the documents that are, verbatim, in another
    domain's validation split, and say so; returns how many per domain. Duplicates are removed
    within a domain only (each domain's split depends on its own documents), and a QA pass found 41
    of a domain's 64 validation documents in another domain's training split: a search then saw
    that domain's validation loss fall with the other's weight, by memorisation."""
    owner: dict[bytes, str] = {}
    for d, texts in val.items():
        for t in texts:
            owner.setdefault(document_key(t), d)
    removed: dict[str, int] = {}
    for d, texts in train.items():
        keep = [t for t in texts if owner.get(document_key(t), d) == d]
        if not keep:
            raise MixoptError(f"domain {d!r} of corpus {name!r}: every training document is verbatim in "
                              "another domain's validation split; give it text of its own or leave it out")
        if len(keep) < len(texts):
            removed[d] = len(texts) - len(keep)
            train[d] = keep
    if removed:
        said = ", ".join(f"{n} of {d}" for d, n in removed.items())
        warn(f"corpus {name!r}: training documents that were verbatim in another domain's validation split "
             f"were left out of training ({said}), so that validation stays unseen; the manifest counts "
             "them as other_validation_removed", MixoptWarning)
    return removed


def build_from_documents(
    name: str,
    docs: Mapping[str, Iterable[str]],
    out_dir: Path,
    *,
    vocab_size: int = 8192,
    val_documents: int = DEFAULT_VAL_DOCUMENTS,
    seed: int = 0,
    sources: list[dict[str, Any]] | None = None,
    licences: Mapping[str, str] | None = None,
    recipe_hash: str | None = None,
    max_doc_chars: int = DEFAULT_MAX_DOC_CHARS,
    tokenizer_sample_chars: int = DEFAULT_SAMPLE_CHARS,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Deduplicate, split, tokenize and write a corpus; return its manifest.

    Args:
        name: corpus name, recorded in the manifest.
        docs: texts per domain (any iterable of ``str``; long texts are chunked into documents).
        out_dir: the corpus folder to (re)place, usually ``corpus_dir(name)``.
        vocab_size: BPE vocabulary size, special token included.
        val_documents: validation documents per domain (a domain needs twice as many in all).
        seed: seeds the split and the tokenizer's training sample.
        sources: source records (``domain, package, version, licence, sha256, kind``).
        licences: licence per domain; by default the licences of the domain's sources.
        recipe_hash: content hash to record; by default a hash of the documents and parameters.
        max_doc_chars: longer texts are cut at paragraph boundaries into documents of this size.
        tokenizer_sample_chars: characters per domain in the tokenizer's training sample.
        extra: more top-level manifest fields (e.g. skipped domains, the recipe).
    """
    t0 = time.perf_counter()
    if not docs:
        raise MixoptError(f"corpus {name!r} has no domains; give at least one domain with text")
    if val_documents < 1:
        raise MixoptError(f"val_documents (--val-documents for corpus add) must be at least 1, got "
                          f"{val_documents}")
    params = build_params(
        vocab_size=vocab_size,
        val_documents=val_documents,
        seed=seed,
        max_doc_chars=max_doc_chars,
        tokenizer_sample_chars=tokenizer_sample_chars,
    )
    bad = []
    for domain in docs:  # every bad name at once, before any text is cleaned (a QA pass: one per try)
        try:
            check_domain_name(domain)
        except MixoptError as exc:
            bad.append(exc)
    if len(bad) == 1:
        raise bad[0]
    if bad:
        raise MixoptError(f"{len(bad)} domain names are not valid: " + "; ".join(map(str, bad)))
    cleaned: dict[str, DomainDocs] = {}
    for domain in docs:
        dd = clean_documents(domain, docs[domain], max_chars=max_doc_chars)
        if not dd.documents:
            raise MixoptError(f"domain {domain!r} of corpus {name!r} is empty; give it text or leave it out")
        cleaned[domain] = dd
    splits = {d: split_indices(d, len(dd.documents), val_documents, seed) for d, dd in cleaned.items()}
    for d, dd in cleaned.items():  # said once the input passed its checks: a refusal stays one line
        log.info("%s: %d documents (%d duplicates, %d empty left out)", d, len(dd.documents),
                 dd.duplicates_removed, dd.empty_removed)
    train_docs = {d: [dd.documents[i] for i in splits[d][0]] for d, dd in cleaned.items()}
    val_docs = {d: [dd.documents[i] for i in splits[d][1]] for d, dd in cleaned.items()}
    leaked = _drop_other_domains_validation(name, train_docs, val_docs)

    if recipe_hash is None:
        h = hashlib.sha256(json.dumps(params, sort_keys=True).encode())
        for d in sorted(cleaned):
            h.update(f"\0{d}\0{cleaned[d].digest}".encode())
        recipe_hash = h.hexdigest()

    t1 = time.perf_counter()
    log.info("training the tokenizer (vocabulary %d)", vocab_size)
    tok = train_tokenizer(balanced_sample(train_docs, tokenizer_sample_chars, seed), vocab_size)
    eot_id = tok.token_to_id(EOT)
    log.info("tokenizer: %d tokens in %.1fs", tok.get_vocab_size(), time.perf_counter() - t1)
    if tok.get_vocab_size() < 0.9 * vocab_size:  # BPE stops merging when the sample runs out of pairs
        warn(f"corpus {name!r}: the tokenizer learned {tok.get_vocab_size():,} tokens of the "
             f"{vocab_size:,} asked for (too little text for more merges); the corpus is built "
             "with that vocabulary", MixoptWarning)

    sources = list(sources or [])
    domains_meta: dict[str, dict[str, Any]] = {}
    with atomic_dir(out_dir) as tmp:
        tok.save(str(tmp / "tokenizer.json"))
        for k, (d, dd) in enumerate(cleaned.items(), start=1):
            log.info("encoding %s (domain %d of %d, %.0f MB)", d, k, len(cleaned),
                     sum(len(t) for t in train_docs[d]) / 1e6)
            meta: dict[str, Any] = {}
            for split, texts in (("train", train_docs[d]), ("val", val_docs[d])):
                ids = encode_documents(tok, texts, eot_id)
                n_docs, n_tok = write_split(tmp / d, split, ids, "uint16")
                meta[f"{split}_documents"] = n_docs
                meta[f"{split}_tokens"] = n_tok
                meta[f"{split}_bytes"] = sum(len(t.encode("utf-8")) for t in texts)
            dom_sources = [s for s in sources if s.get("domain") == d]
            licence = (
                (licences or {}).get(d)
                or "; ".join(dict.fromkeys(str(s["licence"]) for s in dom_sources if s.get("licence")))
                or "unknown"
            )
            domains_meta[d] = {
                "documents": meta["train_documents"] + meta["val_documents"],
                "train_documents": meta["train_documents"],
                "val_documents": meta["val_documents"],
                "train_tokens": meta["train_tokens"],
                "val_tokens": meta["val_tokens"],
                "bytes": meta["train_bytes"] + meta["val_bytes"],
                "train_bytes": meta["train_bytes"],
                "val_bytes": meta["val_bytes"],
                "bytes_per_token": meta["train_bytes"] / meta["train_tokens"],
                "val_bytes_per_token": meta["val_bytes"] / meta["val_tokens"],
                "duplicates_removed": dd.duplicates_removed,
                "empty_removed": dd.empty_removed,
                "other_validation_removed": leaked.get(d, 0),
                "licence": licence,
                "sources": dom_sources,
            }
            log.info("%s: %d train / %d val tokens", d, meta["train_tokens"], meta["val_tokens"])
        manifest: dict[str, Any] = {
            "schema": CORPUS_SCHEMA,
            "name": name,
            "hash": recipe_hash,
            "vocab_size": tok.get_vocab_size(),
            "dtype": "uint16",
            "eot_id": eot_id,
            "tokenizer": "tokenizer.json",
            "domains": domains_meta,
            "sources": sources,
            "build": params,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            **dict(extra or {}),
        }
        manifest["build_seconds"] = round(time.perf_counter() - t0, 2)
        write_json(tmp / "manifest.json", manifest)
    return manifest
