"""Build a corpus from its recipe: fetch sources, extract text, hash, and build (or do nothing).

The content hash covers the recipe as parsed, every source's sha256 and the build parameters;
when the built corpus already carries that hash, a rebuild is a no-op. Sources apt cannot
deliver are skipped with a warning, and so is a domain left with no source; the manifest names
both (``skipped_domains``, ``skipped_sources``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mixopt.atomic import refuse_holding_cwd, sweep_leftovers
from mixopt.corpus.archive import iter_members
from mixopt.corpus.build import build_from_documents, build_params, built_from
from mixopt.corpus.documents import decode_utf8, pack_texts
from mixopt.corpus.extract import get_extractor
from mixopt.corpus.fetch import Fetched, SourceUnavailable, fetch
from mixopt.corpus.recipe import Recipe, load_recipe
from mixopt.corpus.shards import check_corpus_name, corpus_dir
from mixopt.errors import MixoptError, MixoptWarning, listed, warn

log = logging.getLogger(__name__)

# Bump when an extractor's output changes, so built corpora are rebuilt.
EXTRACT_VERSION = 2


@dataclass(kw_only=True)
class BuildOutcome:
    """What ``build_recipe`` did: the manifest, whether it was already up to date, what was skipped."""

    manifest: dict[str, Any]
    path: Path
    up_to_date: bool
    seconds: float
    skipped_domains: dict[str, str] = field(default_factory=dict)


def recipe_hash(recipe: Recipe, fetched: list[Fetched]) -> str:
    """Content hash of the recipe, its sources' sha256 and the build parameters."""
    params = build_params(
        vocab_size=recipe.vocab_size,
        val_documents=recipe.val_documents,
        seed=recipe.seed,
        max_doc_chars=recipe.max_doc_chars,
        tokenizer_sample_chars=recipe.tokenizer_sample_chars,
    )
    blob = {
        "recipe": recipe.raw,
        "params": params,
        "extract_version": EXTRACT_VERSION,
        "sources": sorted((f.source.domain, f.source.kind, f.source.package, f.sha256) for f in fetched),
    }
    return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()


def _texts(f: Fetched, max_chars: int, stats: dict[str, int], skipped: list[str]) -> Iterator[str]:
    """The texts of one fetched source, decoded and extracted (and packed if the recipe says so);
    ``skipped`` gets the files left out for not being UTF-8."""
    src = f.source
    files = dict(iter_members(f.path, src.include, src.exclude))
    if not files:
        raise MixoptError(
            f"source {src.label()} of domain {src.domain!r} has no file matching include={list(src.include)} "
            f"exclude={list(src.exclude)}; fix the globs in the recipe"
        )

    stats["files"] = len(files)

    def decode(name: str, data: bytes) -> str | None:
        try:
            t, replaced, bad = decode_utf8(data, src.on_decode_error)
        except UnicodeDecodeError as exc:
            raise MixoptError(
                f"{src.label()}: file {name} is not UTF-8 "
                f"(byte 0x{data[exc.start]:02x} at offset {exc.start}); "
                'convert it, exclude it, or set on_decode_error = "skip" or "replace"'
            ) from None
        if t is None:
            stats["files_skipped_not_utf8"] += 1
            skipped.append(name)
            log.info("%s: skipping %s (not UTF-8 at byte %d)", src.label(), name, bad)
            return None
        if bad is not None:
            stats["chars_replaced_not_utf8"] += replaced
            log.info("%s: %s is not UTF-8 at byte %d; invalid bytes replaced", src.label(), name, bad)
        return t.removeprefix("\ufeff").replace("\r\n", "\n")

    texts = (t for _, t in get_extractor(src.extractor)(files, decode))
    for t in pack_texts(texts, max_chars) if src.pack else texts:
        stats["chars"] += len(t)
        yield t


def build_recipe(name: str, *, force: bool = False) -> BuildOutcome:
    """Build the corpus of recipe ``name`` into the workspace, unless it is already up to date."""
    t0 = time.perf_counter()
    recipe = load_recipe(name)
    check_corpus_name(recipe.name)  # before fetching anything: the name becomes the corpus's folder
    if force:  # a rebuild replaces the folder whole: not the one the shell is in (before the work)
        refuse_holding_cwd(corpus_dir(recipe.name), f"the folder of corpus {recipe.name!r},")
    fetched: dict[str, list[Fetched]] = {}
    skipped_sources: list[dict[str, str]] = []
    skipped_domains: dict[str, str] = {}
    for dom in recipe.domains:
        got = []
        for src in dom.sources:
            try:
                got.append(fetch(src, recipe.base_dir()))
            except SourceUnavailable as exc:
                skipped_sources.append({"domain": dom.name, "source": src.label(), "reason": str(exc)})
                warn(
                    f"skipping {src.label()} (domain {dom.name}): {exc}", MixoptWarning
                )
        if got:
            fetched[dom.name] = got
        else:
            skipped_domains[dom.name] = "; ".join(
                dict.fromkeys(s["reason"] for s in skipped_sources if s["domain"] == dom.name)
            )
    if skipped_domains:
        warn(
            f"corpus {recipe.name!r}: skipped domains {', '.join(skipped_domains)} "
            "(their apt packages are unavailable here)",
            MixoptWarning,
        )
    if not fetched:
        raise MixoptError(
            f"no source of corpus {recipe.name!r} could be fetched; install apt-get or check the network"
        )

    all_fetched = [f for fs in fetched.values() for f in fs]
    digest = recipe_hash(recipe, all_fetched)
    out = corpus_dir(recipe.name)
    sweep_leftovers(out)  # a killed build's, even when this one finds nothing to do
    if not force and (out / "manifest.json").is_file():
        try:
            old = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            old = {}
        if old.get("hash") == digest:
            return BuildOutcome(
                manifest=old,
                path=out,
                up_to_date=True,
                seconds=time.perf_counter() - t0,
                skipped_domains=skipped_domains,
            )
        # A recipe file is named by its stem: ./elsewhere/default.toml would replace the built
        # default corpus, and every run, search and mixture JSON made on it (as `corpus add` refuses).
        before = old.get("recipe")
        if not before and (added := built_from(old)):  # `corpus add` of the user's own data
            raise MixoptError(
                f"a corpus named {recipe.name!r} is already built by `corpus add` from {added}; rename "
                f"{name} (the corpus takes the file's name), or pass --force to replace it"
            )
        if name.endswith(".toml") and before and Path(before).resolve() != recipe.path.resolve():
            raise MixoptError(
                f"a corpus named {recipe.name!r} is already built from recipe {before}; rename {name} (the "
                "corpus takes the file's name), or pass --force to replace it"
            )
    refuse_holding_cwd(out, f"the folder of corpus {recipe.name!r},")  # rebuilt: before reading the sources

    records: list[dict[str, Any]] = []
    docs: dict[str, list[str]] = {}
    for dom in recipe.domains:
        if dom.name not in fetched:
            continue
        docs[dom.name] = []
        skipped: list[str] = []
        for f in fetched[dom.name]:
            stats = {"files": 0, "files_skipped_not_utf8": 0, "chars_replaced_not_utf8": 0, "chars": 0}
            docs[dom.name].extend(_texts(f, recipe.max_doc_chars, stats, skipped))
            records.append({**f.record(), **stats})
            log.info(
                "%s %s: %d files, %.1f MB", dom.name, f.source.label(), stats["files"], stats["chars"] / 1e6
            )
            if stats["chars_replaced_not_utf8"]:  # said as corpus add says it (it was in the manifest only)
                warn(f"{f.source.label()} of domain {dom.name!r}: input that is not UTF-8: "
                     f"{stats['chars_replaced_not_utf8']} invalid byte run(s) replaced by U+FFFD "
                     "(on_decode_error)", MixoptWarning)
        if skipped and not any(t.strip() for t in docs[dom.name]):
            raise MixoptError(
                f"domain {dom.name!r}: every file of its sources was left out as not UTF-8 "
                f"({listed(skipped, 3)}; on_decode_error = \"skip\"): convert them to UTF-8, or set "
                'on_decode_error = "replace"'
            )
        if skipped:
            warn(f"domain {dom.name!r}: input that is not UTF-8: {len(skipped)} file(s) left out "
                 f"({listed(skipped, 3)}; on_decode_error)", MixoptWarning)
    licences = {d.name: d.licence for d in recipe.domains if d.licence}
    manifest = build_from_documents(
        recipe.name,
        docs,
        out,
        vocab_size=recipe.vocab_size,
        val_documents=recipe.val_documents,
        seed=recipe.seed,
        sources=records,
        licences=licences,
        recipe_hash=digest,
        max_doc_chars=recipe.max_doc_chars,
        tokenizer_sample_chars=recipe.tokenizer_sample_chars,
        extra={
            "description": recipe.description,
            "recipe": str(recipe.path),
            "skipped_domains": skipped_domains,
            "skipped_sources": skipped_sources,
        },
    )
    return BuildOutcome(
        manifest=manifest,
        path=out,
        up_to_date=False,
        seconds=time.perf_counter() - t0,
        skipped_domains=skipped_domains,
    )
