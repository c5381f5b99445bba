"""Recipes: sources read from archives and folders, extractors, caching, apt fallback, no-op rebuilds."""

from __future__ import annotations

import gzip
import io
import json
import re
import struct
import subprocess
import tarfile
import zipfile
import zlib
from pathlib import Path

import pytest
from conftest import TINY_DATA, TINY_DOMAINS

from mixopt.cli import main
from mixopt.corpus import Corpus, fetch
from mixopt.corpus.archive import iter_members
from mixopt.corpus.assemble import build_recipe
from mixopt.corpus.extract import EXTRACTORS, html_to_text
from mixopt.corpus.recipe import SourceSpec, parse_recipe
from mixopt.errors import MixoptError, MixoptWarning

RECIPE = """
[corpus]
description = "tiny"
vocab_size = 300
val_documents = 4
max_doc_chars = 2048
"""


def path_recipe(tmp_path: Path, extra: str = "") -> Path:
    body = RECIPE + "".join(
        f'[domains.{d}]\nlicence = "L-{d}"\n[[domains.{d}.sources]]\n'
        f'kind = "path"\npath = "{TINY_DATA / d}"\n'
        f'licence = "L-{d}"\n'
        for d in TINY_DOMAINS
    )
    r = tmp_path / "tinyrecipe.toml"
    r.write_text(body + extra)
    return r


def test_path_recipe_builds_and_records_sources(workspace: Path, tmp_path: Path) -> None:
    out = build_recipe(str(path_recipe(tmp_path)))
    assert not out.up_to_date
    man = Corpus.open("tinyrecipe").manifest
    assert list(man["domains"]) == list(TINY_DOMAINS)
    assert [s["domain"] for s in man["sources"]] == list(TINY_DOMAINS)
    for s in man["sources"]:
        assert len(s["sha256"]) == 64 and s["licence"] == f"L-{s['domain']}" and s["files"] > 0
    assert man["domains"]["drama"]["licence"] == "L-drama"


def test_rebuild_is_a_no_op_until_something_changes(workspace: Path, tmp_path: Path, capsys) -> None:
    recipe = path_recipe(tmp_path)
    build_recipe(str(recipe))
    manifest = workspace / "corpora" / "tinyrecipe" / "manifest.json"
    first = manifest.read_text()
    main(["corpus", "build", str(recipe)])
    assert "up to date" in capsys.readouterr().out
    assert manifest.read_text() == first
    assert build_recipe(str(recipe), force=True).up_to_date is False
    assert json.loads(manifest.read_text())["hash"] == json.loads(first)["hash"]
    recipe.write_text(recipe.read_text().replace("vocab_size = 300", "vocab_size = 290"))
    out = build_recipe(str(recipe))
    assert not out.up_to_date and out.manifest["vocab_size"] == 290
    assert build_recipe(str(recipe)).up_to_date
    # another file of the same name elsewhere is another recipe: it does not replace this corpus
    other = tmp_path / "elsewhere" / "tinyrecipe.toml"
    other.parent.mkdir()
    other.write_text(recipe.read_text().replace("vocab_size = 290", "vocab_size = 280"))
    with pytest.raises(MixoptError, match=r"named 'tinyrecipe' is already built from recipe .*; rename"):
        build_recipe(str(other))
    assert json.loads(manifest.read_text())["vocab_size"] == 290
    assert build_recipe(str(other), force=True).manifest["vocab_size"] == 280


def test_a_recipe_does_not_replace_a_corpus_built_by_corpus_add(workspace: Path, tmp_path: Path) -> None:
    """`corpus add tinyrecipe --from data/` then `corpus build ./tinyrecipe.toml`: the user's own
    corpus is not silently replaced (it was, while a recipe of another path was already refused)."""
    from mixopt.corpus.ingest import AddOptions, add_corpus

    add_corpus("tinyrecipe", TINY_DATA, AddOptions(format="text", vocab_size=300, val_documents=4))
    manifest = workspace / "corpora" / "tinyrecipe" / "manifest.json"
    first = manifest.read_text()
    said = rf"named 'tinyrecipe' is already built by `corpus add` from {TINY_DATA}; rename"
    with pytest.raises(MixoptError, match=said):
        build_recipe(str(path_recipe(tmp_path)))
    assert manifest.read_text() == first
    assert build_recipe(str(path_recipe(tmp_path)), force=True).manifest.get("recipe")


def _deb(path: Path, files: dict[str, bytes]) -> Path:
    """A minimal Debian package (ar archive holding data.tar.xz) with ``files``."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:xz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo("./" + name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    members = {"debian-binary": b"2.0\n", "control.tar.xz": b"", "data.tar.xz": buf.getvalue()}
    out = b"!<arch>\n"
    for name, data in members.items():
        out += f"{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}`\n".encode() + data
        out += b"\n" if len(data) % 2 else b""
    path.write_bytes(out)
    return path


def test_archives_select_members_and_gunzip(tmp_path: Path) -> None:
    files = {
        "usr/share/doc/a.rst.gz": gzip.compress(b"alpha"),
        "usr/share/doc/sub/b.rst": b"beta",
        "usr/share/doc/translations/c.rst": b"gamma",
        "usr/bin/tool": b"\x7fELF",
    }
    deb = _deb(tmp_path / "x_1.0_all.deb", files)
    whl = tmp_path / "x-1.0-py3-none-any.whl"
    with zipfile.ZipFile(whl, "w") as z:
        for n, d in files.items():
            z.writestr(n, d)
    tgz = tmp_path / "x-1.0.tar.gz"
    with tarfile.open(tgz, "w:gz") as tar:
        for n, d in files.items():
            info = tarfile.TarInfo("x-1.0/" + n)
            info.size = len(d)
            tar.addfile(info, io.BytesIO(d))
    for archive in (deb, whl, tgz):
        got = dict(iter_members(archive, ["*/doc/*.rst"], ["*/translations/*"]))
        assert sorted(got.values()) == [b"alpha", b"beta"], archive
        assert all(n.endswith(".rst") for n in got)
    if subprocess.run(["which", "dpkg-deb"], capture_output=True).returncode == 0:
        listing = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True)
        assert listing.returncode == 0 and "a.rst.gz" in listing.stdout  # the test .deb is a real one


def test_a_damaged_deb_is_one_error_naming_it(tmp_path: Path) -> None:
    good = _deb(tmp_path / "x_1.0_all.deb", {"usr/share/doc/a.rst": b"alpha"}).read_bytes()
    size_at = 8 + 48  # the first member's size field
    damaged = {
        "cut.deb": good[:-40],  # a download cut off inside data.tar.xz
        "size.deb": good[:size_at] + b"zz".ljust(10) + good[size_at + 10:],  # had been a ValueError
        "name.deb": good[:8] + bytes(range(128, 144)) + good[24:],  # had been a UnicodeDecodeError
        "magic.deb": good[:66] + b"xx" + good[68:],  # no "`\n" closing the header
    }
    for name, blob in damaged.items():
        (tmp_path / name).write_bytes(blob)
        with pytest.raises(MixoptError, match=rf"{name} is a damaged Debian package .*delete it from the "):
            list(iter_members(tmp_path / name, ["*"]))
    whl = tmp_path / "x-1.0-py3-none-any.whl"
    with zipfile.ZipFile(whl, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("a.txt", "alpha " * 1000)
    data = bytearray(whl.read_bytes())
    data[40:80] = bytes(b ^ 0x55 for b in data[40:80])  # inside the deflated member: had been zlib.error
    whl.write_bytes(bytes(data))
    with pytest.raises(MixoptError, match=r"x-1\.0-py3-none-any\.whl is not a readable zip archive"):
        list(iter_members(whl, ["*"]))
    bad_gz = bytearray(gzip.compress(b"alpha beta gamma " * 300))
    bad_gz[14:30] = bytes(b ^ 0x55 for b in bad_gz[14:30])  # inside the deflate stream: had been zlib.error
    for fed, said in (({"a.jsonl.gz": bytes(bad_gz)}, "jsonl"), ({"a.dz": bytes(bad_gz)}, "gzip")):
        with pytest.raises(MixoptError, match=r"a\.(jsonl\.gz|dz) is not a readable gzip file \(.*\); "):
            list(EXTRACTORS[said](fed, lambda n, b: b.decode()))
    (tmp_path / "doc.rst.gz").write_bytes(bytes(bad_gz))
    with pytest.raises(MixoptError, match=r"doc\.rst\.gz is not a readable gzip file"):
        list(iter_members(tmp_path, ["*.rst"]))
    (tmp_path / "zst.deb").write_bytes(good.replace(b"data.tar.xz ", b"data.tar.zst"))
    if subprocess.run(["which", "dpkg-deb"], capture_output=True).returncode == 0:  # had been a traceback
        with pytest.raises(MixoptError, match=r"dpkg-deb cannot unpack .*zst\.deb \(.+\); delete it"):
            list(iter_members(tmp_path / "zst.deb", ["*"]))


def _decode_all(name: str, files: dict[str, bytes]) -> list[str]:
    return [t for _, t in EXTRACTORS[name](files, lambda n, b: b.decode())]


def test_extractors() -> None:
    page = (
        "<html><head><title>T</title><style>p {}</style></head><body><div class='header'>Next: x</div>"
        "<h2>Line&nbsp;Styles</h2><p>Solid   line.\n Dashed.</p><pre>  a = 1;\n  b = 2;</pre></body></html>"
    )
    text = html_to_text(page)
    assert "Next" not in text and "p {}" not in text and "T\n" not in text
    assert "Line\u00a0Styles" in text and "Solid line. Dashed." in text and "  a = 1;\n  b = 2;" in text
    mm = "  ax $p |- ( ph -> ph ) $=\n    ( wi ) AABCD $.\n  $( comment $)\n"
    assert _decode_all("metamath", {"s.mm": mm.encode()}) == [
        "  ax $p |- ( ph -> ph ) $= ? $.\n  $( comment $)\n"
    ]
    assert _decode_all("fortune", {"f": b"one\n%\ntwo\n%\n"}) == ["one\n\ntwo\n\n"]
    gut = b"head\n*** START OF THIS PROJECT GUTENBERG EBOOK X ***\n"
    gut += b"body\n*** END OF THIS PROJECT GUTENBERG EBOOK\nlegal"
    assert _decode_all("gutenberg", {"g": gut}) == ["body\n"]
    assert _decode_all("front-matter", {"r.RULE": b"---\nkey: mit\n---\n\nPermission is granted\n"}) == [
        "Permission is granted\n"
    ]
    assert _decode_all("gzip", {"d.dz": gzip.compress(b"dictionary entry")}) == ["dictionary entry"]


def _xdr_lazyload(objects: dict[str, list[str]]) -> tuple[bytes, bytes]:
    """A minimal R lazy-load database (rdb, rdx) holding character vectors, written per R's XDR format."""

    def i(v: int) -> bytes:
        return struct.pack(">i", v)

    def chars(s: str) -> bytes:
        b = s.encode()
        return i(9 | (1 << 15) << 0) + i(len(b)) + b  # CHARSXP, UTF-8 level bit

    def strsxp(values: list[str]) -> bytes:
        return i(16) + i(len(values)) + b"".join(chars(v) for v in values)

    header = b"X\n" + i(3) + i(0x040200) + i(0x030500) + i(5) + b"UTF-8"
    rdb = b""
    pos: list[tuple[int, int]] = []
    for values in objects.values():
        ser = header + strsxp(values)
        blob = struct.pack(">I", len(ser)) + zlib.compress(ser)
        pos.append((len(rdb), len(blob)))
        rdb += blob

    def named_list(items: list[bytes], names: list[str]) -> bytes:
        attr = i(2 | (1 << 10)) + i(1) + chars("names") + strsxp(names) + i(254)  # pairlist: names = ...
        return i(19 | (1 << 9)) + i(len(items)) + b"".join(items) + attr

    variables = named_list([i(13) + i(2) + i(o) + i(n) for o, n in pos], list(objects))
    index = named_list([variables, named_list([], []), i(254)], ["variables", "references", "compressed"])
    return rdb, gzip.compress(header + index)


def test_rdata_reads_character_vectors() -> None:
    rdb, rdx = _xdr_lazyload(
        {
            "emma": ["EMMA", "", "By Jane Austen", "Emma Woodhouse, handsome, clever"],
            "persuasion": ["Persuasion", "Sir Walter Elliot"],
        }
    )
    got = dict(EXTRACTORS["rdata"]({"d/Rdata.rdb": rdb, "d/Rdata.rdx": rdx}, lambda n, b: b.decode()))
    assert got == {
        "d/Rdata.rdb:emma": "EMMA\n\nBy Jane Austen\nEmma Woodhouse, handsome, clever\n",
        "d/Rdata.rdb:persuasion": "Persuasion\nSir Walter Elliot\n",
    }
    with pytest.raises(MixoptError, match="include '\\*.rdx'"):
        list(EXTRACTORS["rdata"]({"d/Rdata.rdb": rdb}, lambda n, b: b.decode()))


@pytest.mark.timeout(60)  # the old reader looped 10⁹ times on the last case
def test_a_damaged_r_database_is_one_error_and_never_a_hang() -> None:
    rdb, rdx = _xdr_lazyload({"emma": ["EMMA", "By Jane Austen"]})

    def read(rdb: bytes, rdx: bytes) -> list:
        return list(EXTRACTORS["rdata"]({"d/Rdata.rdb": rdb, "d/Rdata.rdx": rdx}, lambda n, b: b.decode()))

    refused = r"d/Rdata\.rdb is not a readable R lazy-load database \({}.*\); exclude it"
    with pytest.raises(MixoptError, match=refused.format("zlib: Error -3")):  # had been zlib.error
        read(rdb[:6] + bytes(b ^ 0xFF for b in rdb[6:12]) + rdb[12:], rdx)
    with pytest.raises(MixoptError, match=refused.format("EOFError")):  # a download cut short
        read(rdb, rdx[:-9])
    with pytest.raises(MixoptError, match=refused.format("BadGzipFile")):  # had been an OSError
        read(rdb, rdx[:-8] + b"\0" * 8)
    # A vector of 10⁹ strings, each a length that steps back over itself: read as is, the same bytes
    # forever (it had hung).
    stepping = b"X\n" + struct.pack(">iiiii", 2, 0, 0, 16, 10**9) + struct.pack(">ii", 9, -8)
    blob = struct.pack(">I", len(stepping)) + zlib.compress(stepping)
    with pytest.raises(MixoptError, match=refused.format(r"a negative length \(-8\)")):
        read(blob + rdb[len(blob):], rdx)


def test_cached_downloads_are_reused_without_network(workspace: Path, monkeypatch) -> None:
    (workspace / "cache" / "apt").mkdir(parents=True)
    (workspace / "cache" / "pip").mkdir(parents=True)
    deb = _deb(workspace / "cache" / "apt" / "fortunes-x_1%3a1.9-2_all.deb", {"usr/share/f/a": b"x"})
    whl = workspace / "cache" / "pip" / "some_pkg-2.0-py3-none-any.whl"
    with zipfile.ZipFile(whl, "w") as z:
        z.writestr("a.txt", "x")

    def no_network(*a, **k):
        raise AssertionError("must not download")

    monkeypatch.setattr(fetch.subprocess, "run", no_network)
    got = fetch.fetch(SourceSpec(domain="d", kind="apt", package="fortunes-x"), workspace)
    assert got.path == deb and got.version == "1:1.9-2" and len(got.sha256) == 64
    got = fetch.fetch(SourceSpec(domain="d", kind="pip", package="some-pkg", version="2.0"), workspace)
    assert got.path == whl and got.version == "2.0"


def test_without_apt_the_apt_only_domains_are_skipped(workspace: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(fetch.shutil, "which", lambda name: None)
    extra = (
        '[domains.fortunes]\n[[domains.fortunes.sources]]\nkind = "apt"\npackage = "fortunes-not-cached"\n'
    )
    recipe = path_recipe(tmp_path, extra)
    with pytest.warns(MixoptWarning) as caught:
        out = build_recipe(str(recipe))
    assert any("skipped domains fortunes" in str(w.message) for w in caught)
    assert out.skipped_domains == {"fortunes": "apt-get is not installed"}
    man = Corpus.open("tinyrecipe").manifest
    assert "fortunes" not in man["domains"] and man["skipped_domains"] == out.skipped_domains
    only_apt = tmp_path / "aptonly.toml"
    only_apt.write_text(extra)
    with pytest.warns(MixoptWarning), pytest.raises(MixoptError, match="no source of corpus 'aptonly'"):
        build_recipe(str(only_apt))


def test_default_recipe_parses() -> None:
    r = parse_recipe(Path(__file__).parents[1] / "corpora" / "default.toml", "default")
    assert len(r.domains) >= 8
    assert all(s.licence != "unknown" for d in r.domains for s in d.sources)
    assert all(s.version for d in r.domains for s in d.sources if s.kind == "pip")


def test_own_jsonl_data_is_a_domain_next_to_a_recipes_own(workspace: Path, tmp_path: Path) -> None:
    """README: your data as one more domain of a recipe (a copy of the default one, say): a
    ``path`` source with the ``jsonl`` extractor, each line's "text" one document."""
    data = tmp_path / "mine.jsonl"
    rows = [{"text": f"support ticket {i}: the printer on floor {i % 7} is jammed again.", "id": i}
            for i in range(60)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows) + "\n")
    extra = f'[domains.mine]\nlicence = "own"\n[[domains.mine.sources]]\nkind = "path"\npath = "{data}"\n'
    extra += 'extractor = "jsonl"\nlicence = "own"\n'
    build_recipe(str(path_recipe(tmp_path, extra)))
    c = Corpus.open("tinyrecipe")
    assert list(c.domains) == [*TINY_DOMAINS, "mine"]
    assert c.manifest["domains"]["mine"]["licence"] == "own"
    assert _decode_all("jsonl", {"a.jsonl": b'{"text": "one"}\n\n{"text": "two"}\n'}) == ["one", "two"]
    with pytest.raises(MixoptError, match=r'a.jsonl line 2 has no "text" string \(it has: body\)'):
        _decode_all("jsonl", {"a.jsonl": b'{"text": "one"}\n{"body": "two"}\n'})
    with pytest.raises(MixoptError, match=r"a.jsonl line 1 is not JSON"):
        _decode_all("jsonl", {"a.jsonl": b"text: one\n"})
    with pytest.raises(MixoptError, match=r'a.jsonl line 1: its "text" is of type int, not a string'):
        _decode_all("jsonl", {"a.jsonl": b'{"text": 5}\n'})
    twice = tmp_path / "twice.toml"
    twice.write_text(RECIPE + '[domains.a]\nlicence = "x"\n[domains.a]\nlicence = "y"\n')
    said = r"is not valid TOML: .*twice.*; write each domain \(and each key\) once"
    with pytest.raises(MixoptError, match=said):
        build_recipe(str(twice))


def test_a_source_without_a_licence_takes_its_domains(tmp_path: Path) -> None:
    r = tmp_path / "mine.toml"
    r.write_text('[domains.tickets]\nlicence = "proprietary"\n[[domains.tickets.sources]]\nkind = "path"\n'
                 'path = "t.jsonl"\n[[domains.tickets.sources]]\nkind = "path"\npath = "u.jsonl"\n'
                 'licence = "CC0"\n')
    assert [s.licence for s in parse_recipe(r).domains[0].sources] == ["proprietary", "CC0"]


@pytest.mark.parametrize(("line", "said"), [
    # a QA pass: licence = 5 built a corpus whose `corpus info` then failed for good; pack = "false"
    # turned packing on
    ("licence = 5", r'source 1: licence must be a string \(in quotes\), got 5; e.g. licence = "MIT"'),
    ('pack = "false"', r"source 1: pack must be true or false \(no quotes\), got 'false'"),
    ('version = 2', r"source 1: version must be a string \(in quotes\), got 2"),
])
def test_a_recipe_value_of_the_wrong_type_is_refused(tmp_path: Path, line: str, said: str) -> None:
    r = tmp_path / "typed.toml"
    r.write_text(f'[domains.t]\n[[domains.t.sources]]\nkind = "path"\npath = "t.jsonl"\n{line}\n')
    with pytest.raises(MixoptError, match=said):
        parse_recipe(r)
    r.write_text('[domains.t]\nlicence = 5\n[[domains.t.sources]]\nkind = "path"\npath = "t.jsonl"\n')
    with pytest.raises(MixoptError, match=r"\[domains.t\]: licence must be a string"):
        parse_recipe(r)


@pytest.mark.parametrize(("policy", "counted"), [("skip", "files_skipped_not_utf8"),
                                                  ("replace", "chars_replaced_not_utf8")])
def test_a_recipe_source_skips_or_replaces_what_is_not_utf8(workspace: Path, tmp_path: Path, policy: str,
                                                           counted: str) -> None:
    import shutil

    data = tmp_path / "data"
    shutil.copytree(TINY_DATA, data)
    (data / "code" / "latin1.txt").write_bytes("caf\u00e9 au lait".encode("latin-1"))
    body = RECIPE + "".join(
        f'[domains.{d}]\nlicence = "L"\n[[domains.{d}.sources]]\nkind = "path"\npath = "{data / d}"\n'
        + (f'on_decode_error = "{policy}"\n' if d == "code" else "")
        for d in TINY_DOMAINS
    )
    recipe = tmp_path / "decoded.toml"
    recipe.write_text(body)
    said = ("domain 'code': input that is not UTF-8: 1 file(s) left out (latin1.txt" if policy == "skip"
            else "of domain 'code': input that is not UTF-8: 1 invalid byte run(s) replaced by U+FFFD")
    with pytest.warns(MixoptWarning, match=re.escape(said)):  # it had been in the manifest only
        sources = {s["domain"]: s for s in build_recipe(str(recipe)).manifest["sources"]}
    assert sources["code"][counted] == 1 and sources["docs"][counted] == 0
    if policy == "skip":  # a domain whose every file was left out says why it is empty
        (data / "poems").mkdir()
        (data / "poems" / "p.txt").write_bytes("caf\u00e9".encode("latin-1"))
        recipe.write_text(body + f'[domains.poems]\n[[domains.poems.sources]]\nkind = "path"\n'
                                 f'path = "{data / "poems"}"\non_decode_error = "skip"\n')
        with pytest.raises(MixoptError, match=r"domain 'poems': every file of its sources was left out as "
                                              r"not UTF-8 \(p.txt; on_decode_error = \"skip\"\): convert"):
            build_recipe(str(recipe), force=True)


def test_a_rebuild_from_inside_the_corpus_folder_is_refused_before_the_work(workspace: Path, tmp_path: Path,
                                                                          monkeypatch) -> None:  # noqa: ANN001
    """The review: `corpus build NAME --force` run from inside the corpus's folder was refused only by
    the atomic write, after the sources were fetched and tokenized."""
    import mixopt.corpus.assemble as assemble

    recipe = path_recipe(tmp_path)
    inside = workspace / "corpora" / "tinyrecipe" / "sub"
    inside.mkdir(parents=True)
    monkeypatch.chdir(inside)
    monkeypatch.setattr(assemble, "fetch", lambda *a: pytest.fail("a source was fetched"))
    with pytest.raises(MixoptError, match="the folder of corpus 'tinyrecipe', .* is the current folder or"):
        build_recipe(str(recipe), force=True)
