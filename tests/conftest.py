"""Shared fixtures: a clean workspace per test, and a tiny real-text corpus built once per session.

The tiny corpus is four clearly different domains of real text committed under
``tests/data/tiny`` (Python source, licence texts, a Shakespeare play, Python's reference docs;
see ``tests/data/tiny/SOURCES.md``), with a 512-token vocabulary so it builds in about a second.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

from mixopt.corpus import Corpus

# CI replays the same examples on every run (a red CI then means a change broke something, not that
# hypothesis drew a new case); local runs keep exploring, and what they find becomes a named test.
settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

TINY_DATA = Path(__file__).parent / "data" / "tiny"
TINY_DOMAINS = ("code", "docs", "drama", "legal")
TINY_PARAMS = {"vocab_size": 512, "val_documents": 8, "seed": 0, "max_doc_chars": 2048}


def tiny_documents() -> dict[str, list[str]]:
    """The tiny corpus's texts: one list of file contents per domain folder, in name order."""
    return {
        d: [p.read_text(encoding="utf-8") for p in sorted((TINY_DATA / d).iterdir()) if p.is_file()]
        for d in TINY_DOMAINS
    }


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh, empty workspace: MIXOPT_HOME points at this test's tmp folder."""
    monkeypatch.setenv("MIXOPT_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    """The tiny corpus, built once per session in its own workspace (opened by path)."""
    from mixopt.corpus.build import build_from_documents

    home = tmp_path_factory.mktemp("tiny-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MIXOPT_HOME", str(home))
        licences = {
            "code": "PSF-2.0",
            "docs": "PSF-2.0",
            "drama": "public-domain",
            "legal": "verbatim copying permitted (GPL-3.0, Apache-2.0, MPL-2.0 texts)",
        }
        build_from_documents(
            "tiny",
            tiny_documents(),
            home / "corpora" / "tiny",
            licences=licences,
            tokenizer_sample_chars=200_000,
            **TINY_PARAMS,
        )
    return Corpus(home / "corpora" / "tiny")


@pytest.fixture
def tiny_workspace(workspace: Path, tiny_corpus: Corpus) -> Path:
    """A fresh workspace in which the tiny corpus is built, so ``Corpus.open("tiny")`` works."""
    (workspace / "corpora").mkdir(exist_ok=True)
    os.symlink(tiny_corpus.path, workspace / "corpora" / "tiny")
    return workspace
