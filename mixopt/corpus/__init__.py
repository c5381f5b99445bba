"""Corpora: recipes → deduplicated, split, tokenized shards with a manifest."""

from mixopt.corpus.shards import Corpus, corpus_dir

__all__ = ["Corpus", "corpus_dir"]
