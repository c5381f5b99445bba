"""Corpus recipes (``corpora/<name>.toml``): which packages give each domain's text, and how.

A recipe has a ``[corpus]`` table of build parameters and one ``[domains.<name>]`` table per
domain, each with a licence and a list of ``[[domains.<name>.sources]]``::

    [corpus]
    description = "..."
    vocab_size = 8192          # BPE vocabulary (special token included)
    val_documents = 64         # validation documents per domain
    max_doc_chars = 8192       # long texts are cut into documents of at most this size
    seed = 0

    [domains.code]
    description = "Python source"
    licence = "PSF-2.0"
    [[domains.code.sources]]
    kind = "apt"               # apt | pip | path
    package = "libpython3.11-stdlib"
    version = "3.11.2-6"       # optional for apt (the candidate is used), recommended for pip
    include = ["usr/lib/python3.11/*.py"]   # globs inside the package; '*' also crosses '/'
    exclude = []
    extractor = "text"         # see mixopt.corpus.extract.EXTRACTORS
    pack = false               # join short texts into documents of about max_doc_chars
    on_decode_error = "error"  # "skip": leave out files that are not UTF-8; "replace": U+FFFD (counted)

A ``path`` source names a local file, folder or archive (``path = "..."``, relative to the recipe).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from mixopt import paths
from mixopt.corpus.build import DEFAULT_MAX_DOC_CHARS, DEFAULT_SAMPLE_CHARS, DEFAULT_VAL_DOCUMENTS
from mixopt.corpus.documents import check_domain_name
from mixopt.corpus.extract import EXTRACTORS
from mixopt.errors import MixoptError, refuse_blank

SourceKind = Literal["apt", "pip", "path"]
_SOURCE_KEYS = {
    "kind",
    "package",
    "path",
    "version",
    "include",
    "exclude",
    "extractor",
    "licence",
    "pack",
    "on_decode_error",
    "description",
}
_CORPUS_KEYS = {
    "description",
    "vocab_size",
    "val_documents",
    "max_doc_chars",
    "seed",
    "tokenizer_sample_chars",
}


@dataclass(frozen=True, kw_only=True)
class SourceSpec:
    """One package (or local path) and the files taken from it."""

    domain: str
    kind: SourceKind
    package: str  # apt/pip package name; for ``path`` the path as written in the recipe
    version: str | None = None
    include: tuple[str, ...] = ("*",)
    exclude: tuple[str, ...] = ()
    extractor: str = "text"
    licence: str = "unknown"
    pack: bool = False
    on_decode_error: Literal["error", "skip", "replace"] = "error"

    def label(self) -> str:
        v = (
            f"=={self.version}"
            if self.version and self.kind == "pip"
            else (f"={self.version}" if self.version else "")
        )
        return f"{self.kind}:{self.package}{v}"


@dataclass(frozen=True, kw_only=True)
class DomainSpec:
    name: str
    description: str = ""
    licence: str | None = None
    sources: tuple[SourceSpec, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Recipe:
    """A parsed recipe; ``raw`` is the TOML as read (part of the content hash)."""

    name: str
    path: Path
    description: str = ""
    vocab_size: int = 8192
    val_documents: int = DEFAULT_VAL_DOCUMENTS
    max_doc_chars: int = DEFAULT_MAX_DOC_CHARS
    seed: int = 0
    tokenizer_sample_chars: int = DEFAULT_SAMPLE_CHARS
    domains: tuple[DomainSpec, ...] = ()
    raw: dict[str, Any] = field(default_factory=dict, compare=False)

    def base_dir(self) -> Path:
        """Folder that relative ``path`` sources are resolved against."""
        return self.path.parent


def _int(where: str, table: dict[str, Any], key: str, default: int, low: int = 0) -> int:
    v = table.get(key, default)
    if not isinstance(v, int) or isinstance(v, bool) or v < low:
        raise MixoptError(f"{where}: {key} must be an integer >= {low}, got {v!r}")
    return v


_EXAMPLES = {"licence": "MIT", "version": "3.11.2-1", "description": "support tickets"}


def _str(where: str, table: dict[str, Any], key: str, default: str | None = None) -> str | None:
    v = table.get(key, default)
    if v is not None and not isinstance(v, str):  # licence = 5 had broke `corpus info` for good
        raise MixoptError(f"{where}: {key} must be a string (in quotes), got {v!r}; e.g. "
                          f'{key} = "{_EXAMPLES.get(key, "text")}"')
    return v


def _bool(where: str, table: dict[str, Any], key: str) -> bool:
    v = table.get(key, False)
    if not isinstance(v, bool):  # pack = "false" had turned packing on
        raise MixoptError(f"{where}: {key} must be true or false (no quotes), got {v!r}")
    return v


def _globs(where: str, v: Any, key: str) -> tuple[str, ...]:
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise MixoptError(f"{where}: {key} must be a list of glob strings, got {v!r}")
    return tuple(v)


def _source(where: str, domain: str, s: Any, licence: str | None = None) -> SourceSpec:
    if not isinstance(s, dict):
        raise MixoptError(f"{where}: each source must be a table with kind, package, include, ...")
    unknown = set(s) - _SOURCE_KEYS
    if unknown:
        raise MixoptError(
            f"{where}: unknown source keys {sorted(unknown)}; valid keys are {sorted(_SOURCE_KEYS)}"
        )
    kind = s.get("kind")
    if kind not in ("apt", "pip", "path"):
        raise MixoptError(f"{where}: source kind must be 'apt', 'pip' or 'path', got {kind!r}")
    package = s.get("path") if kind == "path" else s.get("package")
    if not isinstance(package, str) or not package:
        need = "path" if kind == "path" else "package"
        raise MixoptError(f'{where}: a {kind} source needs {need} = "..."')
    extractor = s.get("extractor", "text")
    if extractor not in EXTRACTORS:
        raise MixoptError(f"{where}: unknown extractor {extractor!r}; choose one of {', '.join(EXTRACTORS)}")
    policy = s.get("on_decode_error", "error")
    if policy not in ("error", "skip", "replace"):
        raise MixoptError(f"{where}: on_decode_error must be 'error', 'skip' or 'replace', got {policy!r}")
    version = _str(where, s, "version")
    return SourceSpec(
        domain=domain,
        kind=kind,
        package=package,
        version=version,
        include=_globs(where, s.get("include", ["*"]), "include"),
        exclude=_globs(where, s.get("exclude", []), "exclude"),
        extractor=extractor,
        licence=_str(where, s, "licence", licence or "unknown"),  # the domain's, unless it says its own
        pack=_bool(where, s, "pack"),
        on_decode_error=policy,
    )


def parse_recipe(path: Path, name: str | None = None) -> Recipe:
    """Read and check a recipe file; errors name the file and the field."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise MixoptError(f"cannot read recipe {path}: {exc}") from None
    except RecursionError:  # [[[[…]]]] 100,000 deep
        raise MixoptError(f"recipe {path} nests its arrays or tables too deep to read") from None
    except tomllib.TOMLDecodeError as exc:
        # "Cannot declare ('domains', 'prose') twice": a domain written twice, which TOML refuses
        hint = "; write each domain (and each key) once" if "twice" in str(exc) else ""
        raise MixoptError(f"recipe {path} is not valid TOML: {exc}{hint}") from None
    where = str(path)
    tables = sorted(set(raw) - {"corpus", "domains"})
    if tables:  # a typo like [corpus2] or [domain.x] would otherwise be dropped without a word
        raise MixoptError(f"{where}: unknown table(s) {tables}; a recipe has [corpus] and [domains.<name>]")
    corpus = raw.get("corpus", {})
    unknown = set(corpus) - _CORPUS_KEYS
    if unknown:
        raise MixoptError(
            f"{where}: unknown [corpus] keys {sorted(unknown)}; valid keys are {sorted(_CORPUS_KEYS)}"
        )
    domains_raw = raw.get("domains")
    if not isinstance(domains_raw, dict) or not domains_raw:
        raise MixoptError(f"{where} has no [domains.<name>] tables; add at least one domain with sources")
    domains = []
    for dname, d in domains_raw.items():
        check_domain_name(dname)
        dwhere = f"{where} [domains.{dname}]"
        extra = sorted(set(d) - {"description", "licence", "sources"}) if isinstance(d, dict) else []
        if extra:
            raise MixoptError(
                f"{dwhere}: unknown key(s) {extra}; a domain has description, licence and sources"
            )
        srcs = d.get("sources") if isinstance(d, dict) else None
        if not isinstance(srcs, list) or not srcs:
            raise MixoptError(f"{dwhere} has no sources; add [[domains.{dname}.sources]] tables")
        licence = _str(dwhere, d, "licence")
        domains.append(
            DomainSpec(
                name=dname,
                description=_str(dwhere, d, "description", "") or "",
                licence=licence,
                sources=tuple(_source(f"{dwhere} source {i + 1}", dname, s, licence)
                              for i, s in enumerate(srcs)),
            )
        )
    return Recipe(
        name=name or path.stem,
        path=path.resolve(),
        description=str(corpus.get("description", "")),
        vocab_size=_int(where, corpus, "vocab_size", 8192, 258),
        val_documents=_int(where, corpus, "val_documents", DEFAULT_VAL_DOCUMENTS, 1),
        max_doc_chars=_int(where, corpus, "max_doc_chars", DEFAULT_MAX_DOC_CHARS, 64),
        seed=_int(where, corpus, "seed", 0),
        tokenizer_sample_chars=_int(where, corpus, "tokenizer_sample_chars", DEFAULT_SAMPLE_CHARS, 1),
        domains=tuple(domains),
        raw=raw,
    )


def load_recipe(name: str) -> Recipe:
    """The recipe ``name`` from ``corpora/`` (or a path to a .toml file)."""
    refuse_blank(name, "the corpus name", "give a recipe's name (`mixopt corpus list` shows them)")
    path = paths.find_recipe("corpora", name)
    if path is None:
        paths.check_recipe_path(name, "corpus recipe")
        known = paths.available_recipes("corpora")
        hint = f"known recipes: {', '.join(known)}" if known else "no recipes found in ./corpora"
        raise MixoptError(f"unknown corpus {name!r} ({hint}); use `mixopt corpus add` for your own data")
    if not name.endswith(".toml"):
        paths.warn_if_overriding("corpora", path, "corpus recipe")
    return parse_recipe(path, None if name.endswith(".toml") else name)
