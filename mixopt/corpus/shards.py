"""The on-disk form of a built corpus, and its reader.

A built corpus is a folder::

    <workspace>/corpora/<name>/
        manifest.json          schema "mixopt.corpus/v1" (see below)
        tokenizer.json         one byte-level BPE tokenizer (HF ``tokenizers``) for all domains
        <domain>/train.bin     token ids, flat numpy memmap of ``manifest["dtype"]`` (uint16)
        <domain>/train.idx     int64 document offsets into train.bin, length n_docs + 1
        <domain>/val.bin, <domain>/val.idx   the same for the validation split

Documents are stored back to back; a window may cross a document boundary (an end-of-text
token separates documents). ``manifest.json`` holds::

    {"schema": "mixopt.corpus/v1", "name": ..., "hash": <content hash of recipe + sources>,
     "vocab_size": int, "dtype": "uint16", "eot_id": int, "tokenizer": "tokenizer.json",
     "domains": {domain: {"documents", "train_documents", "val_documents", "train_tokens",
                          "val_tokens", "bytes", "train_bytes", "val_bytes", "bytes_per_token",
                          "val_bytes_per_token", "duplicates_removed", "licence", "sources": [...]}},
     "sources": [{"domain", "package", "version", "licence", "sha256", "kind"}], "created": ...}
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np

from mixopt import paths
from mixopt.errors import MixoptError, listed

CORPUS_SCHEMA = "mixopt.corpus/v1"
Split = Literal["train", "val"]


def corpus_dir(name: str) -> Path:
    """Where the corpus ``name`` is (or will be) built."""
    return paths.home() / "corpora" / name


def check_corpus_name(name: str) -> str:
    """A corpus about to be built replaces ``corpus_dir(name)``: the name must stay one plain folder
    name under the workspace's corpora/ (an empty name, a path or ``..`` would replace another folder).
    """
    if not paths.FOLDER_NAME.match(name) or ".." in name:
        raise MixoptError(
            f"corpus name {name!r} is not valid; use letters, digits, '.', '_' and '-' (at most 100, "
            "starting with a letter or digit, no '/' or '..')"
        )
    return name


def write_split(
    folder: Path, split: Split, docs_tokens: Iterable[np.ndarray], dtype: str = "uint16"
) -> tuple[int, int]:
    """Write one split's documents as ``<split>.bin`` + ``<split>.idx``; return (documents, tokens).

    Each document's tokens are written as they come (``docs_tokens`` may be a generator), so only
    the offsets are held: a domain of a billion tokens needs no array of its size in memory."""
    folder.mkdir(parents=True, exist_ok=True)
    lengths: list[int] = []
    with open(folder / f"{split}.bin", "wb") as fh:
        for tokens in docs_tokens:
            fh.write(np.ascontiguousarray(tokens, dtype=dtype).data)
            lengths.append(len(tokens))
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(np.array(lengths, dtype=np.int64), out=offsets[1:])
    offsets.tofile(folder / f"{split}.idx")
    return len(lengths), int(offsets[-1])


@dataclass(frozen=True)
class Corpus:
    """A built corpus, read lazily from its folder."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))  # accept a str too

    @classmethod
    def open(cls, name_or_path: str | Path) -> Corpus:
        """Open a built corpus by name (in the workspace) or by folder path."""
        if not str(name_or_path).strip():
            raise MixoptError("the corpus name is empty; give a built corpus's name or folder "
                              "(`mixopt corpus list` shows them)")
        p = Path(name_or_path)
        if not (p / "manifest.json").is_file() and not ("/" in str(name_or_path) and p.exists()):
            p = corpus_dir(str(name_or_path))  # a name; a path that is there is judged as that path
        if not (p / "manifest.json").is_file():
            root = paths.home() / "corpora"
            built = []
            if root.is_dir():
                built = sorted(x.name for x in root.glob("[!.]*") if (x / "manifest.json").is_file())
            hint = f"built corpora: {', '.join(built)}" if built else "no corpus is built yet"
            name = str(name_or_path)
            if paths.find_recipe("corpora", name) is not None:  # a recipe: building it makes it
                fix = f"run `mixopt corpus build {name}`"
            elif not p.exists() and "/" in name:
                fix = f"there is no folder {name}; give a built corpus's folder or name"
            elif p.exists():  # a folder that holds no corpus
                fix = (f"{name} holds no built corpus (no manifest.json); give a corpus folder or name, or "
                       f"make one with `mixopt corpus add NAME --from {name}`")
            else:
                recipes = ", ".join(paths.available_recipes("corpora")) or "none"
                fix = (f"there is no recipe of that name either (recipes: {recipes}); add your own data "
                       f"with `mixopt corpus add {name} --from FOLDER`")
            raise MixoptError(f"corpus {name!r} is not built; {fix} ({hint})")
        return cls(p)

    @cached_property
    def manifest(self) -> dict[str, Any]:
        """The manifest, checked: a damaged corpus folder is one error naming what is wrong."""
        where = self.path / "manifest.json"
        rebuild = "rebuild it (`mixopt corpus build NAME --force`, or `corpus add` again with --force)"
        try:
            data = json.loads(where.read_text(encoding="utf-8"))
        except OSError as exc:
            raise MixoptError(f"cannot read {where}: {exc.strerror}; check its permissions") from None
        except ValueError as exc:
            raise MixoptError(f"{where} is not valid JSON ({exc}); the corpus is damaged: {rebuild}") \
                from None
        if not isinstance(data, dict) or data.get("schema") != CORPUS_SCHEMA:
            raise MixoptError(f"{where} is not a {CORPUS_SCHEMA} manifest; {rebuild}")
        needed = ("name", "hash", "domains", "vocab_size", "dtype", "tokenizer")
        missing = [k for k in needed if k not in data]
        domains = data.get("domains")
        counted = isinstance(domains, dict) and domains and all(
            isinstance(m, dict) and "train_tokens" in m for m in domains.values())
        if not missing and not counted:
            missing = ["domains (each with its token counts)"]
        if missing:
            raise MixoptError(f"{where} lacks {', '.join(missing)}; the corpus is damaged: {rebuild}")
        gone = [f"{d}/{split}.{ext}" for d in domains for split in ("train", "val") for ext in ("bin", "idx")
                if not (self.path / d / f"{split}.{ext}").is_file()]
        if not (self.path / str(data["tokenizer"])).is_file():
            gone.append(str(data["tokenizer"]))
        if gone:
            raise MixoptError(f"corpus {data['name']!r} at {self.path} is missing {listed(gone, 4)}; "
                              f"{rebuild}")
        # A shard cut short (a disk filled, a copy stopped) had been read as it was: a domain's share
        # of the natural mixture and every run on it were wrong without a word. Sizes only: a stat each.
        size = np.dtype(data["dtype"]).itemsize
        short = []
        for d, m in domains.items():
            for split in ("train", "val"):
                want = m.get(f"{split}_tokens")
                got = (self.path / d / f"{split}.bin").stat().st_size
                if isinstance(want, int) and got != want * size:
                    short.append(f"{d}/{split}.bin holds {got / size:,.0f} tokens, its manifest {want:,}")
        if short:
            more = f" (and {len(short) - 1} more)" if len(short) > 1 else ""
            raise MixoptError(f"corpus {data['name']!r} at {self.path} is damaged: {short[0]}{more}; "
                              f"{rebuild}")
        return data

    @property
    def name(self) -> str:
        return str(self.manifest["name"])

    @property
    def hash(self) -> str:
        return str(self.manifest["hash"])

    @property
    def domains(self) -> list[str]:
        return list(self.manifest["domains"])

    @property
    def vocab_size(self) -> int:
        return int(self.manifest["vocab_size"])

    def train_tokens(self) -> dict[str, int]:
        """Training tokens per domain (the natural mixture's weights, and the repetition caps)."""
        return {d: int(m["train_tokens"]) for d, m in self.manifest["domains"].items()}

    def bytes_per_token(self, domain: str, split: Split = "val") -> float:
        m = self.manifest["domains"][domain]
        return float(m["val_bytes_per_token"] if split == "val" else m["bytes_per_token"])

    def _check(self, domain: str) -> None:
        if domain not in self.manifest["domains"]:
            raise MixoptError(
                f"corpus {self.name!r} has no domain {domain!r}; domains are {', '.join(self.domains)}"
            )

    def tokens(self, domain: str, split: Split) -> np.ndarray:
        """All tokens of one split of one domain, as a read-only memmap."""
        self._check(domain)
        f = self.path / domain / f"{split}.bin"
        if f.stat().st_size == 0:
            return np.zeros(0, dtype=self.manifest["dtype"])
        return np.memmap(f, dtype=self.manifest["dtype"], mode="r")

    def doc_offsets(self, domain: str, split: Split) -> np.ndarray:
        self._check(domain)
        return np.fromfile(self.path / domain / f"{split}.idx", dtype=np.int64)

    def tokenizer(self):  # -> tokenizers.Tokenizer
        from tokenizers import Tokenizer

        return Tokenizer.from_file(str(self.path / self.manifest["tokenizer"]))
