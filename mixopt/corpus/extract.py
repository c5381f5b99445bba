"""Text extractors: turn a source's selected files into plain texts, one registry entry per format.

An extractor receives the selected files of one source (path → bytes) and a ``decode`` function
that applies the recipe's policy for bytes that are not UTF-8, and yields ``(path, text)``.
Names are used in recipes (``extractor = "html"``); :data:`EXTRACTORS` lists them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from html.parser import HTMLParser
from pathlib import PurePosixPath

from mixopt.corpus.archive import gunzip
from mixopt.errors import MixoptError

Decode = Callable[[str, bytes], str | None]
Extractor = Callable[[Mapping[str, bytes], Decode], Iterator[tuple[str, str]]]


def _each(files: Mapping[str, bytes], decode: Decode) -> Iterator[tuple[str, str]]:
    for name, data in files.items():
        text = decode(name, data)
        if text is not None:
            yield name, text


def text(files: Mapping[str, bytes], decode: Decode) -> Iterator[tuple[str, str]]:
    """Each file as it is."""
    yield from _each(files, decode)


def gzip_text(files: Mapping[str, bytes], decode: Decode) -> Iterator[tuple[str, str]]:
    """Gzip or dictzip (``.dz``) files, decompressed (dictd dictionaries, for instance)."""
    for name, data in files.items():
        t = decode(name, gunzip(data, name, "exclude it from the recipe"))
        if t is not None:
            yield name, t


class _HTMLText(HTMLParser):
    _SKIP = {"head", "script", "style", "nav"}
    _BLOCK = {
        "p",
        "div",
        "br",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "li",
        "dt",
        "dd",
        "tr",
        "pre",
        "table",
        "hr",
        "dl",
        "ul",
        "ol",
        "blockquote",
        "section",
        "article",
        "header",
        "footer",
        "caption",
    }

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skip = 0  # depth inside skipped elements
        self.pre = 0
        self.stack: list[tuple[str, bool]] = []  # open div/span: (tag, skipped?)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        cls = dict(attrs).get("class") or ""
        # texinfo's navigation bar ("Next: ..., Previous: ...") is a div of class header
        skipped = tag in self._SKIP or (tag == "div" and cls.split()[:1] == ["header"])
        if tag in self._SKIP or tag == "div":
            self.stack.append((tag, skipped))
            self.skip += skipped
        if tag == "pre":
            self.pre += 1
        if tag in self._BLOCK:
            self.out.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if (tag in self._SKIP or tag == "div") and self.stack:
            while self.stack:
                t, skipped = self.stack.pop()
                self.skip -= skipped
                if t == tag:
                    break
        if tag == "pre" and self.pre:
            self.pre -= 1
        if tag in self._BLOCK:
            self.out.append("\n")

    def handle_data(self, data: str) -> None:
        if self.skip:
            return
        if self.pre:
            self.out.append(data)
            return
        # collapse layout whitespace, but not U+00A0 (&nbsp;), which is part of the text
        d = re.sub(r"[ \t\n\r\f\v]+", " ", data)
        if not self.out or self.out[-1].endswith("\n"):
            d = d.lstrip(" ")
        if d:
            self.out.append(d)

    def text(self) -> str:
        t = re.sub(r"[ \t]+\n", "\n", "".join(self.out))
        return re.sub(r"\n{3,}", "\n\n", t).strip("\n") + "\n"


def html_to_text(markup: str) -> str:
    """Visible text of an HTML page: no head, scripts, styles or navigation; blocks on their own lines."""
    p = _HTMLText()
    p.feed(markup)
    p.close()
    return p.text()


def html(files: Mapping[str, bytes], decode: Decode) -> Iterator[tuple[str, str]]:
    """HTML pages as plain text."""
    for name, t in _each(files, decode):
        body = html_to_text(t)
        if body.strip():
            yield name, body


def metamath(files: Mapping[str, bytes], decode: Decode) -> Iterator[tuple[str, str]]:
    """Metamath databases with every proof (``$= ... $.``) replaced by ``$= ? $.``.

    Compressed proofs are long runs of capital letters that would drown the statements and
    comments; the ``?`` proof is Metamath's own notation for an omitted proof.
    """
    for name, t in _each(files, decode):
        yield name, re.sub(r"\$=.*?\$\.", "$= ? $.", t, flags=re.S)


def fortune(files: Mapping[str, bytes], decode: Decode) -> Iterator[tuple[str, str]]:
    """fortune(6) cookie files: the ``%`` separator lines become blank lines."""
    for name, t in _each(files, decode):
        yield name, re.sub(r"(?m)^%\n", "\n", t)


_GUT_START = re.compile(r"^\*\*\* ?START OF (THIS|THE) PROJECT GUTENBERG.*$", re.M | re.I)
_GUT_END = re.compile(
    r"^(\*\*\* ?END OF (THIS|THE) PROJECT GUTENBERG|End of (the )?Project Gutenberg).*$", re.M | re.I
)


def gutenberg(files: Mapping[str, bytes], decode: Decode) -> Iterator[tuple[str, str]]:
    """Project Gutenberg texts without the licence header and footer (kept as is when absent)."""
    for name, t in _each(files, decode):
        start = _GUT_START.search(t)
        if start:
            t = t[start.end() :]
        end = _GUT_END.search(t)
        if end:
            t = t[: end.start()]
        yield name, t.strip("\n") + "\n"


def front_matter(files: Mapping[str, bytes], decode: Decode) -> Iterator[tuple[str, str]]:
    """Files that start with a ``---`` YAML block (ScanCode's licence data): the body only."""
    for name, t in _each(files, decode):
        if t.startswith("---"):
            end = t.find("\n---", 3)
            if end >= 0:
                t = t[end + 4 :].lstrip("\n")
        if t.strip():
            yield name, t


def rdata(files: Mapping[str, bytes], decode: Decode) -> Iterator[tuple[str, str]]:
    """Character vectors of R lazy-load databases (select both ``*.rdb`` and ``*.rdx``), one text each.

    Each element of a character vector is a line (janeaustenr stores a novel per vector).
    """
    from mixopt.corpus.rdata import read_lazyload_bytes

    for name, data in sorted(files.items()):
        if not name.endswith(".rdb"):
            continue
        idx = name.removesuffix(".rdb") + ".rdx"
        if idx not in files:
            raise MixoptError(
                f"{name} needs its index {PurePosixPath(idx).name}; include '*.rdx' in the recipe"
            )
        try:
            objects = read_lazyload_bytes(data, files[idx])
        except ValueError as exc:
            raise MixoptError(f"{name} is not a readable R lazy-load database ({exc}); exclude it") from None
        for var, obj in objects.items():
            if getattr(obj, "kind", None) == "character":
                yield f"{name}:{var}", "\n".join(x or "" for x in obj.value) + "\n"


def jsonl(files: Mapping[str, bytes], decode: Decode) -> Iterator[tuple[str, str]]:
    """JSON Lines (``.jsonl``, gzipped or not): each line's ``"text"`` is one document, as most
    exported datasets write them (another field: convert, or use ``mixopt corpus add``)."""
    import json

    for name, t in gzip_text(files, decode):
        for i, line in enumerate(t.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise MixoptError(f"{name} line {i} is not JSON ({exc}); fix or exclude the file") from None
            if isinstance(row, dict) and "text" in row and not isinstance(row["text"], str):
                kind = type(row["text"]).__name__
                raise MixoptError(f"{name} line {i}: its \"text\" is of type {kind}, not a string; the "
                                  "jsonl extractor reads each line's \"text\" as the document")
            if not isinstance(row, dict) or not isinstance(row.get("text"), str):
                keys = ", ".join(map(str, row)) if isinstance(row, dict) else type(row).__name__
                raise MixoptError(f"{name} line {i} has no \"text\" string (it has: {keys}); the jsonl "
                                  "extractor reads each line's \"text\"")
            if row["text"].strip():
                yield f"{name}:{i}", row["text"]


EXTRACTORS: dict[str, Extractor] = {
    "text": text,
    "gzip": gzip_text,
    "html": html,
    "metamath": metamath,
    "fortune": fortune,
    "gutenberg": gutenberg,
    "front-matter": front_matter,
    "rdata": rdata,
    "jsonl": jsonl,
}


def get_extractor(name: str) -> Extractor:
    try:
        return EXTRACTORS[name]
    except KeyError:
        raise MixoptError(f"unknown extractor {name!r}; choose one of {', '.join(EXTRACTORS)}") from None
