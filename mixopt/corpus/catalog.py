"""What corpora exist: recipes that can be built, corpora that are built, and per-domain summaries."""

from __future__ import annotations

import json
from typing import Any

from mixopt import paths
from mixopt.corpus.recipe import parse_recipe
from mixopt.corpus.shards import Corpus
from mixopt.errors import MixoptError


def summary(corpus: Corpus) -> dict[str, Any]:
    """One row per domain (documents, tokens, MB, bytes per token, licence) and a totals row."""
    rows = []
    for d, m in corpus.manifest["domains"].items():
        rows.append(
            {
                "domain": d,
                "train_documents": m["train_documents"],
                "val_documents": m["val_documents"],
                "train_tokens": m["train_tokens"],
                "val_tokens": m["val_tokens"],
                "mb": m["bytes"] / 1e6,
                "bytes_per_token": m["bytes_per_token"],
                "duplicates_removed": m["duplicates_removed"],
                # what cleaning left out besides duplicates (manifests before 2026-12-06 lack the last)
                "empty_removed": m.get("empty_removed", 0),
                "other_validation_removed": m.get("other_validation_removed", 0),
                "licence": m["licence"],
            }
        )
    keys = ("train_documents", "val_documents", "train_tokens", "val_tokens", "mb", "duplicates_removed",
            "empty_removed", "other_validation_removed")
    total = {k: sum(r[k] for r in rows) for k in keys}
    total_bytes = sum(m["train_bytes"] for m in corpus.manifest["domains"].values())
    total["bytes_per_token"] = total_bytes / max(1, total["train_tokens"])
    man = corpus.manifest
    return {
        "name": corpus.name,
        "path": str(corpus.path),
        "hash": corpus.hash,
        "vocab_size": corpus.vocab_size,
        "created": man.get("created"),
        "build_seconds": man.get("build_seconds"),
        "skipped_domains": man.get("skipped_domains", {}),
        "domains": rows,
        "total": total,
        "sources": man.get("sources", []),
    }


def built_corpora() -> list[dict[str, Any]]:
    """Corpora built in the workspace: name, domains, tokens, MB, created."""
    root = paths.home() / "corpora"
    out = []
    if root.is_dir():
        for p in sorted(root.iterdir()):
            # a dot folder is a build's temporary copy or previous version (a QA pass: listed as corpora)
            if p.name.startswith(".") or not (p / "manifest.json").is_file():
                continue
            try:
                man = json.loads((p / "manifest.json").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            doms = man.get("domains") if isinstance(man, dict) else None
            if not isinstance(doms, dict):  # a damaged manifest: `corpus info` says what is wrong
                continue
            out.append(
                {
                    "name": p.name,
                    "domains": len(doms),
                    "tokens": sum(
                        int(m.get("train_tokens", 0)) + int(m.get("val_tokens", 0)) for m in doms.values()
                    ),
                    # what `corpus info`, the natural mixture and a search's budget count
                    "train_tokens": sum(int(m.get("train_tokens", 0)) for m in doms.values()),
                    "mb": sum(int(m.get("bytes", 0)) for m in doms.values()) / 1e6,
                    "created": man.get("created"),
                    "path": str(p),
                }
            )
    return out


def recipes() -> list[dict[str, Any]]:
    """Recipes found in ``corpora/``: name, domains, description, and whether a broken one fails."""
    out = []
    for name in paths.available_recipes("corpora"):
        path = paths.find_recipe("corpora", name)
        if path is None:  # gone since it was listed
            continue
        try:
            r = parse_recipe(path, name)
            out.append(
                {"name": name, "domains": len(r.domains), "description": r.description, "path": str(path)}
            )
        except MixoptError as exc:
            out.append({"name": name, "domains": 0, "description": f"invalid: {exc}", "path": str(path)})
    return out


def open_corpus(name: str) -> Corpus:
    """A built corpus by name or path; the error lists what is built and which recipes exist."""
    from pathlib import Path

    if not name.strip():
        return Corpus.open(name)  # its error: the name is empty
    p = Path(name)
    if (p / "manifest.json").is_file():
        return Corpus(p)
    if (paths.home() / "corpora" / name / "manifest.json").is_file():
        return Corpus(paths.home() / "corpora" / name)
    built = [c["name"] for c in built_corpora()]
    known = paths.available_recipes("corpora")
    if name in known:
        raise MixoptError(f"corpus {name!r} is not built yet; run `mixopt corpus build {name}`")
    if p.is_dir():  # a folder, but no corpus: "unknown corpus" would send the user to the names
        raise MixoptError(
            f"folder {name!r} holds no built corpus (no manifest.json); give a corpus's folder or a "
            f"name ({', '.join(built) or 'none built'}), or make one with `mixopt corpus add`"
        )
    raise MixoptError(
        f"unknown corpus {name!r}; built: {', '.join(built) or 'none'}; recipes: {', '.join(known) or 'none'}"
    )
