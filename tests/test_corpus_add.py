"""`mixopt corpus add` for every input format, through the CLI, and `info` / `list`."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import polars as pl
import pytest
from conftest import TINY_DATA, TINY_DOMAINS, tiny_documents

from mixopt.cli import run_cli
from mixopt.corpus import Corpus
from mixopt.corpus.documents import chunk_text

SMALL = ["--vocab-size", "300", "--val-documents", "4"]


def rows() -> list[dict[str, str]]:
    return [
        {"domain": d, "text": chunk, "id": f"{d}-{i}"}
        for d, texts in tiny_documents().items()
        for i, chunk in enumerate(c for t in texts for c in chunk_text(t, 2000))
    ]


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = run_cli(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def check_built(name: str, n_rows: int) -> dict:
    c = Corpus.open(name)
    man = c.manifest
    assert sorted(man["domains"]) == sorted(TINY_DOMAINS)
    assert sum(m["documents"] for m in man["domains"].values()) == n_rows
    assert all(m["val_documents"] == 4 and m["train_tokens"] > 0 for m in man["domains"].values())
    return man


@pytest.mark.parametrize("fmt", ["jsonl", "parquet", "csv"])
def test_add_tables(fmt: str, workspace: Path, tmp_path: Path, capsys) -> None:
    df = pl.DataFrame(rows())
    path = tmp_path / f"data.{fmt}"
    {"jsonl": df.write_ndjson, "parquet": df.write_parquet, "csv": df.write_csv}[fmt](path)
    code, out, err = run(capsys, "corpus", "add", f"my{fmt}", "--from", str(path), *SMALL)
    assert code == 0, err
    check_built(f"my{fmt}", len(df))
    assert "built corpus" in out
    # its steps said as they come (a QA pass: half a gigabyte took minutes without a word)
    assert "corpus: training the tokenizer" in err
    assert re.search(r"corpus: encoding \w+ \(domain 1 of \d", err)


def test_add_table_with_other_column_names_and_folder_of_files(
    workspace: Path, tmp_path: Path, capsys
) -> None:
    df = pl.DataFrame(rows()).rename({"domain": "source", "text": "content"})
    (tmp_path / "parts").mkdir()
    df[: len(df) // 2].write_parquet(tmp_path / "parts" / "a.parquet")
    df[len(df) // 2 :].write_parquet(tmp_path / "parts" / "b.parquet")
    code, _, err = run(
        capsys,
        "corpus",
        "add",
        "parts",
        "--from",
        str(tmp_path / "parts"),
        "--domain-column",
        "source",
        "--text-column",
        "content",
        *SMALL,
    )
    assert code == 0, err
    check_built("parts", len(df))


def test_add_text_folders(workspace: Path, capsys) -> None:
    code, out, err = run(
        capsys, "corpus", "add", "folders", "--from", str(TINY_DATA), "--licence", "mixed", *SMALL
    )
    assert code == 0, err
    man = Corpus.open("folders").manifest
    assert sorted(man["domains"]) == sorted(TINY_DOMAINS)
    assert man["domains"]["code"]["licence"] == "mixed"
    assert man["sources"][0]["sha256"]


def test_a_corpus_of_one_domain_is_built_with_a_warning(workspace: Path, tmp_path: Path, capsys) -> None:
    """A QA pass: it was built silently, and `entropy` on it then said "a search space needs at least
    2 domains"."""
    one = tmp_path / "one"
    one.mkdir()
    (one / "code").symlink_to(TINY_DATA / "code")
    code, _, err = run(capsys, "corpus", "add", "one", "--from", str(one), *SMALL)
    assert code == 0, err
    assert "warning: corpus one has one domain (code): there is nothing to mix" in err
    code, _, err = run(capsys, "entropy", "one")
    assert code == 2 and "there is nothing to mix with 1 domain(s) (code); a mixture needs 2 or more" in err


def test_add_hf_saved_dataset(workspace: Path, tmp_path: Path, capsys) -> None:
    import datasets

    r = rows()
    ds = datasets.Dataset.from_list(r)
    datasets.DatasetDict(
        {"train": ds.select(range(0, len(r), 2)), "test": ds.select(range(1, len(r), 2))}
    ).save_to_disk(str(tmp_path / "hf"))
    code, _, err = run(capsys, "corpus", "add", "hf", "--from", str(tmp_path / "hf"), *SMALL)
    assert code == 0, err
    check_built("hf", len(r))
    ds.shuffle(seed=1).save_to_disk(str(tmp_path / "hf1"))
    code, _, err = run(
        capsys, "corpus", "add", "hf1", "--from", str(tmp_path / "hf1"), "--format", "hf", *SMALL
    )
    assert code == 0, err
    check_built("hf1", len(r))


def test_add_again_is_a_no_op_and_force_rebuilds(workspace: Path, tmp_path: Path, capsys) -> None:
    path = tmp_path / "d.jsonl"
    pl.DataFrame(rows()).write_ndjson(path)
    assert run(capsys, "corpus", "add", "again", "--from", str(path), *SMALL)[0] == 0
    first = json.loads((workspace / "corpora" / "again" / "manifest.json").read_text())
    code, out, _ = run(capsys, "corpus", "add", "again", "--from", str(path), *SMALL)
    assert code == 0 and "up to date" in out
    assert json.loads((workspace / "corpora" / "again" / "manifest.json").read_text()) == first
    code, out, _ = run(capsys, "corpus", "add", "again", "--from", str(path), "--force", *SMALL)
    assert code == 0 and "built corpus" in out
    # Other options, or changed data, from the same path: an update, rebuilt.
    code, out, _ = run(
        capsys, "corpus", "add", "again", "--from", str(path), "--vocab-size", "280", "--val-documents", "4"
    )
    assert code == 0 and "built corpus" in out
    assert Corpus.open("again").vocab_size == 280
    # Another path under the same name: refused, the built corpus left as it was ...
    other = tmp_path / "other.jsonl"
    pl.DataFrame(rows()).write_ndjson(other)
    manifest = workspace / "corpora" / "again" / "manifest.json"
    before = manifest.read_text()
    code, _, err = run(capsys, "corpus", "add", "again", "--from", str(other), *SMALL)
    assert code == 2 and f"a corpus named 'again' is already built from {path.resolve()}" in err
    assert "--force to replace it" in err and manifest.read_text() == before
    # ... unless --force says to replace it.
    assert run(capsys, "corpus", "add", "again", "--from", str(other), *SMALL, "--force")[0] == 0
    # a corpus built from a recipe is named by its recipe, not by the recipe's first source
    man = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**man, "recipe": "/somewhere/again.toml", "hash": "0" * 64}))
    code, _, err = run(capsys, "corpus", "add", "again", "--from", str(path), *SMALL)
    assert code == 2 and "already built from recipe /somewhere/again.toml" in err


def test_info_and_list(tiny_workspace: Path, capsys, monkeypatch) -> None:
    code, out, _ = run(capsys, "corpus", "info", "tiny", "--json")
    assert code == 0
    info = json.loads(out)
    assert [r["domain"] for r in info["domains"]] == list(TINY_DOMAINS)
    assert info["total"]["train_tokens"] == sum(r["train_tokens"] for r in info["domains"])
    # every count of what cleaning left out, as the manifest has them (empty_removed had been missing)
    man = Corpus.open("tiny").manifest["domains"]
    for key in ("duplicates_removed", "empty_removed", "other_validation_removed"):
        assert [r[key] for r in info["domains"]] == [man[d][key] for d in TINY_DOMAINS]
        assert info["total"][key] == sum(man[d][key] for d in TINY_DOMAINS)
    code, out, _ = run(capsys, "corpus", "info", "tiny")
    assert code == 0 and "drama" in out and "total" in out
    from rich.console import Console

    from mixopt.cli import common

    monkeypatch.setattr(common, "console", Console(width=50, force_terminal=False))
    code, out, _ = run(capsys, "corpus", "info", "tiny")  # a narrow terminal: split, never cut (a QA pass)
    assert code == 0 and "…" not in out and "(continued)" in out and f"{info['total']['mb']:.1f}" in out
    code, out, _ = run(capsys, "corpus", "list", "--json")
    listing = json.loads(out)
    assert "default" in [r["name"] for r in listing["recipes"]]
    assert [b["name"] for b in listing["built"]] == ["tiny"]
    # list counts the train tokens info counts (its total with the validation split had read as a
    # mismatch, a help audit); the JSON keeps the total too
    assert listing["built"][0]["train_tokens"] == info["total"]["train_tokens"]
    assert listing["built"][0]["tokens"] > listing["built"][0]["train_tokens"]
    code, out, _ = run(capsys, "corpus", "list")
    assert "train tokens" in out and f"{info['total']['train_tokens']:,}" in out
    # an invalid recipe's message keeps its [brackets] (rich had read them as markup: a QA pass)
    (tiny_workspace.parent / "corpora").mkdir(exist_ok=True)
    (tiny_workspace.parent / "corpora" / "notes.toml").write_text("[settings]\nx = 1\n")
    monkeypatch.chdir(tiny_workspace.parent)
    code, out, _ = run(capsys, "corpus", "list")
    assert code == 0 and "[corpus]" in " ".join(out.split())
    # a dangling link and a folder named x.toml are no recipes (a mypy pass: list died on them)
    (tiny_workspace.parent / "corpora" / "gone.toml").symlink_to(tiny_workspace.parent / "nowhere.toml")
    (tiny_workspace.parent / "corpora" / "dir.toml").mkdir()
    code, out, _ = run(capsys, "corpus", "list", "--json")
    names = [r["name"] for r in json.loads(out)["recipes"]]
    assert code == 0 and "notes" in names and "gone" not in names and "dir" not in names


def test_rows_without_text_are_counted_out_loud(workspace: Path, tmp_path: Path, capsys) -> None:
    data = rows()
    for r in data[:3]:
        r["text"] = None
    path = tmp_path / "nulls.jsonl"
    pl.DataFrame(data).write_ndjson(path)
    code, _, err = run(capsys, "corpus", "add", "nulls", "--from", str(path), *SMALL)
    assert code == 0, err
    said = " ".join(err.split())
    assert f"3 rows have no text in column 'text' and are left out ({data[0]['domain']} 3)" in said


def test_format_detection_of_folders(tmp_path: Path) -> None:
    """Domain folders with a stray index.csv are text (the csv is ignored, said); loose text files
    without domain folders are named as the layout problem they are."""
    import shutil

    from mixopt.corpus.ingest import detect_format
    from mixopt.errors import MixoptError

    folders = tmp_path / "folders"
    shutil.copytree(TINY_DATA, folders)
    (folders / "index.csv").write_text("file,label\na,b\n")
    assert detect_format(folders) == "text"
    loose = tmp_path / "loose"
    loose.mkdir()
    (loose / "a.txt").write_text("hello")
    with pytest.raises(MixoptError, match="has no domain folders; make one sub-folder per domain"):
        detect_format(loose)
    tables = tmp_path / "tables"
    tables.mkdir()
    pl.DataFrame(rows()).write_parquet(tables / "part-0.parquet")
    assert detect_format(tables) == "parquet"
    import gzip

    from mixopt.corpus.ingest import AddOptions, read_documents

    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(MixoptError, match=r"empty.jsonl is empty; give one JSON object per line"):
        read_documents(empty, AddOptions())
    bom = tmp_path / "bom.jsonl"  # saved by a Windows editor
    bom.write_bytes(b"\xef\xbb\xbf" + b'{"domain": "a", "text": "x"}\n{"domain": "b", "text": "y"}\n')
    assert read_documents(bom, AddOptions()) == {"a": ["x"], "b": ["y"]}
    none = tmp_path / "none.parquet"
    pl.DataFrame(schema={"domain": pl.String, "text": pl.String}).write_parquet(none)
    with pytest.raises(MixoptError, match=r"none.parquet has no rows; give a file with one row per document"):
        read_documents(none, AddOptions())
    packed = tmp_path / "data.jsonl.gz"
    packed.write_bytes(gzip.compress(b'{"domain": "a", "text": "x"}\n'))
    for fmt in ("auto", "jsonl"):
        with pytest.raises(MixoptError, match=r"data.jsonl.gz is compressed \(.gz\); corpus add reads plain"):
            read_documents(packed, AddOptions(format=fmt))


def test_on_decode_error_skips_or_replaces_and_says_so(tmp_path: Path) -> None:
    from mixopt.corpus.ingest import AddOptions, read_documents
    from mixopt.errors import MixoptError, MixoptWarning

    folders = tmp_path / "src"
    for d in ("a", "b"):
        (folders / d).mkdir(parents=True)
        (folders / d / "ok.txt").write_text(f"text of {d}\r\nline two")
    (folders / "b" / "latin1.txt").write_bytes("caf\u00e9".encode("latin-1"))
    with pytest.raises(MixoptError, match="latin1.txt is not UTF-8.*--on-decode-error"):
        read_documents(folders, AddOptions())
    with pytest.warns(MixoptWarning, match="1 file left out"):
        docs = read_documents(folders, AddOptions(on_decode_error="skip"))
    assert docs == {"a": ["text of a\nline two"], "b": ["text of b\nline two"]}
    with pytest.warns(MixoptWarning, match="1 character replaced"):
        docs = read_documents(folders, AddOptions(on_decode_error="replace"))
    assert sorted(docs["b"]) == ["caf\ufffd", "text of b\nline two"]
    # a file of NUL bytes is valid UTF-8, and had been taken as 3 documents of text (a QA pass)
    (folders / "b" / "latin1.txt").unlink()
    (folders / "a" / "zeros.txt").write_bytes(b"\x00" * 20000)
    with pytest.raises(MixoptError, match="zeros.txt holds NUL bytes: a binary file, not text"):
        read_documents(folders, AddOptions())
    with pytest.warns(MixoptWarning, match="1 binary file left out"):
        docs = read_documents(folders, AddOptions(on_decode_error="replace"))
    assert docs == {"a": ["text of a\nline two"], "b": ["text of b\nline two"]}
    # a link to nothing (data moved) and a pipe had been passed over in silence (a QA pass)
    (folders / "a" / "zeros.txt").unlink()
    (folders / "a" / "moved.txt").symlink_to(tmp_path / "gone.txt")
    os.mkfifo(folders / "b" / "pipe")
    said = r"2 entries are not files and are not read: a/moved.txt \(a link to nothing\), b/pipe"
    with pytest.warns(MixoptWarning, match=said):
        docs = read_documents(folders, AddOptions())
    assert docs == {"a": ["text of a\nline two"], "b": ["text of b\nline two"]}

    jsonl = tmp_path / "x.jsonl"
    jsonl.write_bytes(
        b'{"domain": "a", "text": "ok"}\n{"domain": "b", "text": "caf\xe9"}\n{"domain": "b", "text": "y"}\n'
    )
    with pytest.warns(MixoptWarning, match="1 line left out"):
        assert read_documents(jsonl, AddOptions(on_decode_error="skip")) == {"a": ["ok"], "b": ["y"]}
    with pytest.warns(MixoptWarning, match="1 character replaced"):
        assert read_documents(jsonl, AddOptions(on_decode_error="replace"))["b"] == ["caf\ufffd", "y"]
    csv = tmp_path / "x.csv"
    csv.write_bytes(b"domain,text\na,ok\nb,caf\xe9\n")
    with pytest.warns(MixoptWarning, match="1 character replaced"):
        assert read_documents(csv, AddOptions(on_decode_error="replace"))["b"] == ["caf\ufffd"]
    with pytest.raises(MixoptError, match="cannot leave out csv rows; use replace"):
        read_documents(csv, AddOptions(on_decode_error="skip"))
    with pytest.raises(MixoptError, match="unknown --on-decode-error 'drop'"):
        AddOptions(on_decode_error="drop")  # type: ignore[arg-type]


def test_a_ctrl_c_after_the_corpus_is_written_says_it_was(workspace: Path, tmp_path: Path, capsys,
                                                          monkeypatch) -> None:
    """A QA pass: Ctrl-C in the second between writing the corpus and its summary said only
    "interrupted", as if a --force rebuild had left the old corpus in place."""
    import mixopt.cli.corpus as cli_corpus

    path = tmp_path / "data.jsonl"
    pl.DataFrame(rows()).write_ndjson(path)

    def pressed(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_corpus, "_warn_unusable_domains", pressed)
    code, _, err = run(capsys, "corpus", "add", "late", "--from", str(path), *SMALL)
    assert code == 130 and "interrupted after the corpus was written, whole, at " in err
    check_built("late", len(rows()))


def test_a_validation_split_thinner_than_a_proxy_scores_is_said(workspace: Path, tmp_path: Path,
                                                                capsys) -> None:  # noqa: ANN001
    """A QA pass: a domain of a million 20-character documents got a validation split of about 460
    tokens, and every search scored it on that, without a word."""
    data = [{"domain": "prose", "text": f"paragraph {i}: " + "words of a longer text here. " * 200}
            for i in range(40)]
    data += [{"domain": "tiny", "text": f"short note {i}"} for i in range(200)]
    path = tmp_path / "data.jsonl"
    pl.DataFrame(data).write_ndjson(path)
    code, _, err = run(capsys, "corpus", "add", "thin", "--from", str(path), *SMALL)
    said = " ".join(err.split())
    assert code == 0, err
    assert re.search(r"domain\(s\) tiny \(\d+ tokens\) have fewer validation tokens than the proxies score "
                     r"per domain \(\d+\)", said), said
    (line,) = [w for w in err.splitlines() if "fewer validation tokens" in w]
    assert "prose" not in line  # its 4 long documents are enough


def test_jsonl_is_read_a_block_at_a_time_with_the_same_documents(tmp_path: Path, monkeypatch) -> None:
    """A jsonl file is read, decoded and parsed a block at a time, so that it is never in memory
    whole (a QA pass: its bytes, its frame and its texts at once, 2.2 GB of peak for 1 GB); every
    block size gives the documents, their order, the warnings and the errors of one whole read."""
    import warnings

    from mixopt.corpus import ingest
    from mixopt.corpus.ingest import AddOptions, read_documents
    from mixopt.errors import MixoptError

    lines = ['{"domain": "a", "text": "first"}', "", '{"domain": "b", "text": "' + "long " * 60 + '"}',
             '{"domain": "a", "text": "caf\u00e9 three", "extra": 1}', '{"domain": "b"}',
             '{"domain": "a", "text": null}', '{"domain": "b", "text": "last"}']
    f = tmp_path / "d.jsonl"
    f.write_bytes(b"\xef\xbb\xbf" + "\n".join(lines).encode())  # a BOM, and no newline at the end

    def read(block: int) -> tuple[dict[str, list[str]], list[str]]:
        monkeypatch.setattr(ingest, "BLOCK_BYTES", block)
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            docs = read_documents(f, AddOptions())
        return docs, [str(w.message) for w in said]

    whole = read(1 << 20)
    assert whole[0] == {"a": ["first", "café three"], "b": ["long " * 60, "last"]}
    assert len(whole[1]) == 1 and "2 rows have no text" in whole[1][0]
    for block in (7, 40, 64, 300):  # blocks shorter than a line, a line at a time, several lines
        assert read(block) == whole, block

    # a key that a later block's objects lack is a missing value there, as in a whole read
    f.write_text('{"domain": "a", "text": "x"}\n{"text": "y"}\n')
    for block in (1 << 20, 10):
        monkeypatch.setattr(ingest, "BLOCK_BYTES", block)
        with pytest.raises(MixoptError, match="1 row has no value in domain column 'domain'"):
            read_documents(f, AddOptions())

    # an offset that is not UTF-8 is the file's, not the block's
    f.write_bytes(b'{"domain": "a", "text": "x"}\n' * 5 + b'{"domain": "a", "text": "\xff"}\n')
    for block in (1 << 20, 30):
        monkeypatch.setattr(ingest, "BLOCK_BYTES", block)
        with pytest.raises(MixoptError, match="byte 0xff at offset 170"):
            read_documents(f, AddOptions())
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            assert read_documents(f, AddOptions(on_decode_error="skip")) == {"a": ["x"] * 5}
        assert any("1 line left out" in str(w.message) for w in said), block


def test_parquet_reads_only_the_two_columns(tmp_path: Path, monkeypatch) -> None:
    """A parquet file's domain and text columns are read, its other columns not at all (urls,
    metadata); a missing column is named among all the file's."""
    from mixopt.corpus.ingest import AddOptions, read_documents
    from mixopt.errors import MixoptError

    df = pl.DataFrame({"url": [f"u{i}" for i in range(50)], "src": ["a", "b", "c", "a", "b"] * 10,
                       "body": [f"document {i}" for i in range(50)]})
    f = tmp_path / "d.parquet"
    df.write_parquet(f, row_group_size=7)
    read: list = []
    real = pl.read_parquet
    monkeypatch.setattr(pl, "read_parquet", lambda *a, **kw: read.append(kw.get("columns")) or real(*a, **kw))
    docs = read_documents(f, AddOptions(domain_column="src", text_column="body"))
    assert docs["a"][:2] == ["document 0", "document 3"] and sum(map(len, docs.values())) == 50
    assert read == [[1, 2]]  # src and body, by position
    with pytest.raises(MixoptError, match=r"has no text column 'text'; its columns are url, src, body"):
        read_documents(f, AddOptions(domain_column="src"))
    # columns named as polars expressions are columns (a review: "*" had been every column), and a
    # dictionary-encoded domain (pandas' category) is text, beside a file of plain strings
    (tmp_path / "odd").mkdir()
    pl.DataFrame({"*": ["b", "a"], "^t.*$": ["x", "y"]}).with_columns(pl.col("*").cast(pl.Categorical)) \
        .write_parquet(tmp_path / "odd" / "0.parquet")
    pl.DataFrame({"*": ["a"], "^t.*$": ["z"]}).write_parquet(tmp_path / "odd" / "1.parquet")
    assert read_documents(tmp_path / "odd", AddOptions(domain_column="*", text_column="^t.*$")) == {
        "b": ["x"], "a": ["y", "z"]}
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(MixoptError, match=r"cannot read .*bad.parquet as parquet: .*; check the file"):
        read_documents(tmp_path / "bad.parquet", AddOptions())


def test_a_saved_dataset_is_read_without_writing_into_it(tmp_path: Path) -> None:
    """A QA pass: reading a saved HF dataset wrote a cache file of the whole data into the user's
    folder, which changed its hash, so the same `corpus add` built it again."""
    import datasets

    from mixopt.corpus.fetch import sha256_of
    from mixopt.corpus.ingest import AddOptions, read_documents

    ds = datasets.Dataset.from_dict({"domain": ["a", "b"] * 5, "text": [f"t{i}" for i in range(10)]})
    ds.save_to_disk(str(tmp_path / "plain"))
    ds.shuffle(seed=0).select(range(4)).save_to_disk(str(tmp_path / "picked"))  # an indices mapping
    for name in ("plain", "picked"):
        before = sorted(p.name for p in (tmp_path / name).iterdir()), sha256_of(tmp_path / name)
        docs = read_documents(tmp_path / name, AddOptions())
        assert (sorted(p.name for p in (tmp_path / name).iterdir()), sha256_of(tmp_path / name)) == before
        assert sum(map(len, docs.values())) == (10 if name == "plain" else 4)
    expected: dict[str, list[str]] = {}
    for row in ds.shuffle(seed=0).select(range(4)):  # the rows in the dataset's own (shuffled) order
        expected.setdefault(row["domain"], []).append(row["text"])
    assert docs == expected


def test_blocks_and_files_give_the_whole_inputs_types(tmp_path: Path, monkeypatch) -> None:
    """Each block or file is typed on its own, but the documents are those of one frame of the whole
    input, as before the streaming (a review: numbers in one block's text column were refused, and
    domains 1 and 2.5 in two blocks became three domains "1", "1.0" and "2.5")."""
    import warnings

    from mixopt.corpus import ingest
    from mixopt.corpus.ingest import AddOptions, read_documents
    from mixopt.errors import MixoptError

    monkeypatch.setattr(ingest, "BLOCK_BYTES", 40)  # about a line a block

    def jsonl(name: str, *rows: dict) -> Path:
        f = tmp_path / name
        f.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return f

    f = jsonl("numbers.jsonl", {"domain": "a", "text": "one"}, {"domain": "a", "text": 5},
              {"domain": "a", "text": "three"})
    assert read_documents(f, AddOptions()) == {"a": ["one", "5", "three"]}
    f = jsonl("domains.jsonl", {"domain": 1, "text": "t0"}, {"domain": 1, "text": "t1"},
              {"domain": 2.5, "text": "t2"})
    assert read_documents(f, AddOptions()) == {"1.0": ["t0", "t1"], "2.5": ["t2"]}
    f = jsonl("mixed.jsonl", {"domain": 1, "text": "t0"}, {"domain": "1", "text": "t1"},
              {"domain": "x", "text": "t2"})
    assert read_documents(f, AddOptions()) == {"1": ["t0", "t1"], "x": ["t2"]}
    f = jsonl("late.jsonl", {"domain": "a"}, {"domain": "a"}, {"domain": "a", "text": "only"})
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        assert read_documents(f, AddOptions()) == {"a": ["only"]}
    assert any("2 rows have no text in column 'text'" in str(w.message) for w in said)
    for rows, dtype in (([{"domain": "a", "text": None}] * 3, "Null"),
                        ([{"domain": "a", "text": 1}] * 3, "Int64")):
        with pytest.raises(MixoptError, match=f"text column 'text' is {dtype}, not text"):
            read_documents(jsonl("no_text.jsonl", *rows), AddOptions())
    with pytest.raises(MixoptError, match=r"has no text column 'txt'; its columns are domain, text"):
        read_documents(f, AddOptions(text_column="txt"))

    # numbers and text across files, in the order read and named as the whole column's type: 1, "1"
    # and 1 are one domain "1" in file order; 1.0 and "1.0" another (a QA pass: reordered, or moved)
    (tmp_path / "mixed").mkdir()
    for i, (dom, n) in enumerate(((1, 2), ("1", 2), (1, 2), (1.0, 1), ("1.0", 1))):
        (tmp_path / "mixed" / f"f{i}.jsonl").write_text(
            "".join(json.dumps({"domain": dom, "text": f"f{i}-{j}"}) + "\n" for j in range(n)))
    assert read_documents(tmp_path / "mixed", AddOptions()) == {
        "1": ["f0-0", "f0-1", "f1-0", "f1-1", "f2-0", "f2-1"], "1.0": ["f3-0", "f4-0"]}

    # a folder of files: the first without the text column, the second with it
    (tmp_path / "csvs").mkdir()
    (tmp_path / "csvs" / "a.csv").write_text("domain\nx\n")
    (tmp_path / "csvs" / "b.csv").write_text("domain,text\ny,hi\n")
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        assert read_documents(tmp_path / "csvs", AddOptions()) == {"y": ["hi"]}
    assert any("1 rows have no text" in str(w.message) for w in said)
