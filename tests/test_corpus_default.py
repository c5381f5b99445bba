"""The full default corpus, built from Debian and PyPI packages (slow: about 2 minutes)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from mixopt.corpus import Corpus
from mixopt.corpus.assemble import build_recipe
from mixopt.corpus.recipe import load_recipe


@pytest.mark.slow
def test_default_corpus_builds(workspace: Path) -> None:
    out = build_recipe("default")
    c = Corpus(out.path)
    man = c.manifest
    recipe = load_recipe("default")
    if shutil.which("apt-get"):
        assert not out.skipped_domains
        assert len(man["domains"]) >= 8
        assert sum(m["bytes"] for m in man["domains"].values()) >= 150e6
    else:
        assert set(man["domains"]) == {"legal", "drama", "literature"}
        assert set(out.skipped_domains) == {d.name for d in recipe.domains} - set(man["domains"])
    assert len(man["sources"]) == sum(len(d.sources) for d in recipe.domains if d.name in man["domains"])
    for s in man["sources"]:
        assert len(s["sha256"]) == 64 and s["version"] and s["licence"] != "unknown" and s["files"] > 0
    tok = c.tokenizer()
    for d in c.domains:
        toks = np.asarray(c.tokens(d, "val"))
        off = c.doc_offsets(d, "val")
        assert off[-1] == len(toks) and int(toks.max()) < c.vocab_size
        doc = tok.decode(toks[off[0] : off[1] - 1].tolist())
        assert tok.decode(tok.encode(doc).ids) == doc
        assert man["domains"][d]["val_tokens"] >= 20_000, d
    if "literature" in man["domains"] and any(s["package"] == "r-cran-janeaustenr" for s in man["sources"]):
        lit = tok.decode(np.asarray(c.tokens("literature", "train")).tolist())
        assert "Elizabeth" in lit and "Darcy" in lit
    again = build_recipe("default")
    assert again.up_to_date and again.manifest["hash"] == man["hash"]
