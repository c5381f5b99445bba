"""Bad input to `mixopt corpus`: one line on stderr, exit code 2, and nothing half-written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import TINY_DATA

from mixopt.cli import run_cli


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = run_cli(list(args))
    return code, capsys.readouterr().err


def assert_refused(capsys, workspace: Path, *args: str, match: str) -> str:
    code, err = run(capsys, *args)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert match in lines[0], lines[0]
    corpora = workspace / "corpora"
    assert not corpora.exists() or not list(corpora.iterdir()), list(corpora.iterdir())
    return lines[0]


def text_folders(root: Path, sizes: dict[str, int]) -> Path:
    for d, n in sizes.items():
        (root / d).mkdir(parents=True)
        for i in range(n):
            (root / d / f"{i}.txt").write_text(f"{d} document {i}\n" + "some words here. " * (i + 3))
    return root


def test_unknown_corpus_lists_known_recipes(workspace: Path, capsys) -> None:
    line = assert_refused(
        capsys, workspace, "corpus", "build", "nosuchcorpus", match="unknown corpus 'nosuchcorpus'"
    )
    assert "default" in line
    assert_refused(capsys, workspace, "corpus", "info", "nosuchcorpus", match="unknown corpus 'nosuchcorpus'")
    # a folder that holds no corpus is said to be one, not an unknown name
    plain = text_folders(workspace / "plain", {"a": 1})
    assert_refused(capsys, workspace, "corpus", "info", str(plain),
                   match=f"folder '{plain}' holds no built corpus (no manifest.json)")
    # a path is a path: said to be missing or a folder, not an unknown name
    missing = str(workspace / "rec" / "nosuch.toml")
    assert_refused(capsys, workspace, "corpus", "build", missing,
                   match=f"corpus recipe file {missing} does not exist")
    assert_refused(capsys, workspace, "corpus", "build", str(workspace),
                   match=f"corpus recipe {workspace} is a folder; give the path to a .toml")


def test_model_and_rung_paths_that_lead_nowhere_are_named() -> None:
    from mixopt.errors import MixoptError
    from mixopt.proxy.rungs import load_rung
    from mixopt.train.config import load_model

    with pytest.raises(MixoptError, match=r"^model config file \./nosuch\.toml does not exist"):
        load_model("./nosuch.toml")
    with pytest.raises(MixoptError, match=r"^proxy rung file x/nope\.toml does not exist"):
        load_rung("x/nope.toml")
    with pytest.raises(MixoptError, match=r"^model 'nope' is unknown; known models") as model_err:
        load_model("nope")
    with pytest.raises(MixoptError, match=r"^proxy rung 'nope' is unknown; known rungs") as rung_err:
        load_rung("nope")
    # the lists name what --help and `proxy rungs` name, not the configs kept for tests
    assert "moe-xs" in str(model_err.value) and "debug" not in str(model_err.value)
    assert "xs" in str(rung_err.value) and "debug" not in str(rung_err.value)
    assert load_model("moe-debug").name == "moe-debug" and load_rung("debug").name == "debug"


def test_domain_too_small_for_validation(workspace: Path, tmp_path: Path, capsys) -> None:
    src = text_folders(tmp_path / "src", {"big": 30, "small": 5})
    assert_refused(
        capsys,
        workspace,
        "corpus",
        "add",
        "x",
        "--from",
        str(src),
        "--vocab-size",
        "300",
        "--val-documents",
        "4",
        match="'small' has 5 documents after deduplication but needs at least 8",
    )


@pytest.mark.parametrize("name", ["", "..", "../escaped", "a/b", "/abs/victim", ".hidden", "xy\n"])
def test_corpus_name_must_be_a_plain_folder_name(name: str, workspace: Path, tmp_path: Path, capsys) -> None:
    """A corpus replaces its folder: a path or an empty name would replace (and delete) another one."""
    src = text_folders(tmp_path / "src", {"a": 20, "b": 20})
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "x.txt").write_text("precious")
    if name == "/abs/victim":
        name = str(victim)
    assert_refused(capsys, workspace, "corpus", "add", name, "--from", str(src), match="is not valid")
    assert (victim / "x.txt").read_text() == "precious"

def test_empty_source_folder(workspace: Path, tmp_path: Path, capsys) -> None:
    empty = tmp_path / "nothing"
    empty.mkdir()
    assert_refused(capsys, workspace, "corpus", "add", "x", "--from", str(empty), match="is empty")


def test_a_hub_id_is_said_to_be_one(workspace: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    """No network here: a Hub id fails at once, and the error says how to bring the data in."""
    monkeypatch.chdir(tmp_path)
    for extra in ([], ["--format", "hf"]):
        assert_refused(capsys, workspace, "corpus", "add", "h1", "--from", "Salesforce/wikitext", *extra,
                       match="(a Hugging Face Hub id is not downloaded here: where there is network, save it "
                             "with datasets.load_dataset(ID).save_to_disk(FOLDER) and pass that folder)")
    for missing in (str(tmp_path / "no.jsonl"), "data/no.jsonl"):  # a file's path is no Hub id
        line = assert_refused(capsys, workspace, "corpus", "add", "h1", "--from", missing,
                              match="no.jsonl does not exist; pass an existing file or folder with --from")
        assert "Hugging Face" not in line


def test_empty_domain_folder(workspace: Path, tmp_path: Path, capsys) -> None:
    src = text_folders(tmp_path / "src", {"a": 20})
    (src / "empty").mkdir()
    assert_refused(capsys, workspace, "corpus", "add", "x", "--from", str(src), match="domain folder")


def test_domain_of_blank_documents_is_empty(workspace: Path, tmp_path: Path, capsys) -> None:
    src = text_folders(tmp_path / "src", {"a": 20})
    (src / "blank").mkdir()
    (src / "blank" / "1.txt").write_text("\n \n")
    assert_refused(
        capsys,
        workspace,
        "corpus",
        "add",
        "x",
        "--from",
        str(src),
        "--vocab-size",
        "300",
        "--val-documents",
        "2",
        match="domain 'blank' of corpus 'x' is empty",
    )


def test_a_binary_file_read_as_text_is_named_for_what_it_is(workspace: Path, tmp_path: Path, capsys) -> None:
    """A Parquet file given --format csv (or called .csv) is not "not UTF-8"; replacing bytes won't help."""
    import polars as pl

    pq = tmp_path / "ok.parquet"
    pl.DataFrame({"domain": ["x"] * 6, "text": [f"hello world {i}" for i in range(6)]}).write_parquet(pq)
    for args in (["--from", str(pq), "--format", "csv"],
                 ["--from", str(pq), "--format", "csv", "--on-decode-error", "replace"]):
        assert_refused(capsys, workspace, "corpus", "add", "x", *args,
                       match="ok.parquet is a Parquet file, not csv text; pass --format parquet")
    misnamed = tmp_path / "data.jsonl"
    misnamed.write_bytes(pq.read_bytes())
    assert_refused(capsys, workspace, "corpus", "add", "x", "--from", str(misnamed),
                   match="data.jsonl is a Parquet file, not jsonl text")


def test_non_utf8_file_named_with_offset(workspace: Path, tmp_path: Path, capsys) -> None:
    src = text_folders(tmp_path / "src", {"a": 20, "b": 20})
    (src / "b" / "latin1.txt").write_bytes("caf\u00e9 au lait".encode("latin-1"))
    line = assert_refused(
        capsys, workspace, "corpus", "add", "x", "--from", str(src), match="latin1.txt is not UTF-8"
    )
    assert "offset 3" in line and "0xe9" in line
    jsonl = tmp_path / "bad.jsonl"
    data = b'{"domain": "a", "text": "ok"}\n{"domain": "b", "text": "caf\xe9"}\n'
    jsonl.write_bytes(data)
    assert_refused(
        capsys, workspace, "corpus", "add", "x", "--from", str(jsonl), match=f"offset {data.index(0xE9)}"
    )


def test_a_broken_jsonl_line_is_named(workspace: Path, tmp_path: Path, capsys) -> None:
    jsonl = tmp_path / "broken.jsonl"
    jsonl.write_text('{"domain": "a", "text": "ok"}\n\n{"domain": "b", "text": "ok"}\n{"domain" "b"}\n')
    assert_refused(capsys, workspace, "corpus", "add", "x", "--from", str(jsonl),
                   match="broken.jsonl as jsonl: line 4 is not valid JSON (Expecting ':' delimiter at "
                         "column 11)")


def test_unreadable_file(workspace: Path, tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"this is not parquet")
    assert_refused(capsys, workspace, "corpus", "add", "x", "--from", str(bad), match="cannot read")
    assert_refused(
        capsys,
        workspace,
        "corpus",
        "add",
        "x",
        "--from",
        str(tmp_path / "missing.jsonl"),
        match="does not exist",
    )


def test_a_file_the_user_cannot_read_is_one_line(workspace: Path, tmp_path: Path, capsys) -> None:
    """A QA pass: a file in a domain folder that raises EACCES (chmod 000; as root, a write-only
    file of /sys) had ended `corpus add` in a PermissionError traceback, exit 1."""
    import os

    import pytest

    rescan = Path("/sys/bus/pci/rescan")  # write-only: EACCES even for root
    if os.geteuid() == 0:
        try:
            rescan.read_bytes()
            pytest.skip("no file root cannot read here")
        except PermissionError:
            pass
        except OSError:
            pytest.skip("no file root cannot read here")
    for d in ("a", "b"):
        (tmp_path / "src" / d).mkdir(parents=True)
        for i in range(30):
            (tmp_path / "src" / d / f"p{i}.txt").write_text(f"{d} text {i} " * 50)
    locked = tmp_path / "src" / "a" / "locked.txt"
    if os.geteuid() == 0:
        locked.symlink_to(rescan)
    else:
        locked.write_text("secret")
        locked.chmod(0)
    assert_refused(capsys, workspace, "corpus", "add", "x", "--from", str(tmp_path / "src"),
                   "--val-documents", "5", match=f"cannot read {locked}")


def test_absent_columns_listed(workspace: Path, tmp_path: Path, capsys) -> None:
    f = tmp_path / "d.jsonl"
    f.write_text('{"label": "a", "body": "x"}\n{"label": "b", "body": "y"}\n')
    line = assert_refused(
        capsys, workspace, "corpus", "add", "x", "--from", str(f), match="no domain column 'domain'"
    )
    assert "label, body" in line and "--domain-column" in line
    assert_refused(
        capsys,
        workspace,
        "corpus",
        "add",
        "x",
        "--from",
        str(f),
        "--domain-column",
        "label",
        match="no text column 'text'",
    )
    # JSON Lines read as CSV: said as such, not its first record printed as the columns (a help audit)
    line = assert_refused(capsys, workspace, "corpus", "add", "x", "--from", str(f), "--format", "csv",
                          "--domain-column", "label", match="does not read as CSV: its first line is JSON")
    assert line.endswith("give --format jsonl")
    wide = tmp_path / "wide.csv"  # column names are cut, and many are counted, not listed
    wide.write_text(",".join(f"c{i}_" + "x" * 60 for i in range(30)) + "\n" + ",".join("1" * 30) + "\n")
    line = assert_refused(capsys, workspace, "corpus", "add", "x", "--from", str(wide),
                          match="no domain column 'domain'")
    assert "and 10 more" in line and len(line) < 1200


def test_recipe_errors(workspace: Path, tmp_path: Path, capsys) -> None:
    r = tmp_path / "r.toml"
    r.write_text('[domains.a]\nlicence = "x"\n')
    assert_refused(capsys, workspace, "corpus", "build", str(r), match="has no sources")
    r.write_text(
        f'[domains.a]\n[[domains.a.sources]]\nkind = "path"\npath = "{TINY_DATA / "code"}"\n'
        'include = ["*.nothing"]\n'
    )
    assert_refused(capsys, workspace, "corpus", "build", str(r), match="has no file matching")
    r.write_text('[domains.a]\n[[domains.a.sources]]\nkind = "path"\npath = "nowhere"\n')
    assert_refused(capsys, workspace, "corpus", "build", str(r), match="does not exist")
    r.write_text('[domains.a]\n[[domains.a.sources]]\nkind = "ftp"\npackage = "x"\n')
    assert_refused(capsys, workspace, "corpus", "build", str(r), match="source kind must be")
    r.write_text('[corpus]\nvocab = 3\n[domains.a]\n[[domains.a.sources]]\nkind = "path"\npath = "."\n')
    assert_refused(capsys, workspace, "corpus", "build", str(r), match="unknown [corpus] keys ['vocab']")
    r.write_text('[corpus2]\nseed = 3\n[domains.a]\n[[domains.a.sources]]\nkind = "path"\npath = "."\n')
    assert_refused(capsys, workspace, "corpus", "build", str(r), match="unknown table(s) ['corpus2']")
    r.write_text('[domains.a]\nlicense = "y"\n[[domains.a.sources]]\nkind = "path"\npath = "."\n')
    assert_refused(capsys, workspace, "corpus", "build", str(r), match="unknown key(s) ['license']")


def test_failed_rebuild_keeps_the_old_corpus(workspace: Path, tmp_path: Path, capsys) -> None:
    src = text_folders(tmp_path / "src", {"a": 20, "b": 20})
    assert (
        run(
            capsys, "corpus", "add", "keep", "--from", str(src), "--vocab-size", "300", "--val-documents", "4"
        )[0]
        == 0
    )
    before = (workspace / "corpora" / "keep" / "manifest.json").read_text()
    (src / "b" / "bad.txt").write_bytes(b"\xff\xfe")
    code, err = run(
        capsys, "corpus", "add", "keep", "--from", str(src), "--vocab-size", "300", "--val-documents", "4"
    )
    assert code == 2 and "bad.txt is not UTF-8" in err
    assert (workspace / "corpora" / "keep" / "manifest.json").read_text() == before
    assert sorted(p.name for p in (workspace / "corpora").iterdir()) == ["keep"]
    assert json.loads(before)["name"] == "keep"


def test_a_damaged_corpus_folder_is_one_error_naming_the_damage(
    workspace: Path, tmp_path: Path, tiny_corpus, capsys
) -> None:
    import shutil

    def damaged(name: str) -> Path:
        c = tmp_path / name
        shutil.copytree(tiny_corpus.path, c)
        return c

    c = damaged("json")
    (c / "manifest.json").write_text("{bad")
    assert_refused(capsys, workspace, "corpus", "info", str(c), match="manifest.json is not valid JSON")
    c = damaged("list")
    (c / "manifest.json").write_text("[]")
    assert_refused(capsys, workspace, "corpus", "info", str(c), match="is not a mixopt.corpus")
    c = damaged("bare")
    (c / "manifest.json").write_text('{"schema": "mixopt.corpus/v1"}')
    assert_refused(capsys, workspace, "entropy", str(c), match="lacks name, hash, domains")
    c = damaged("shards")
    shutil.rmtree(c / "code")
    line = assert_refused(capsys, workspace, "entropy", str(c),
                          match="is missing code/train.bin, code/train.idx")
    assert "rebuild it" in line
    # a shard cut short had been read as it was (a QA pass: code's natural share 0.87, not 0.22)
    c = damaged("cut")
    with open(c / "code" / "train.bin", "r+b") as f:
        f.truncate(1000)
    assert_refused(capsys, workspace, "entropy", str(c),
                   match="is damaged: code/train.bin holds 500 tokens, its manifest ")


def test_an_empty_corpus_name_is_said_as_such(workspace: Path, capsys) -> None:
    for args in (["entropy", ""], ["corpus", "info", " "], ["corpus", "build", ""]):
        assert_refused(capsys, workspace, *args, match="the corpus name is empty")


def test_corpus_add_over_a_damaged_manifest_rebuilds(workspace: Path, tmp_path: Path, capsys) -> None:
    src = text_folders(tmp_path / "src", {"a": 20, "b": 20})
    args = ["corpus", "add", "x", "--from", str(src), "--vocab-size", "300", "--val-documents", "4"]
    assert run(capsys, *args)[0] == 0
    (workspace / "corpora" / "x" / "manifest.json").write_text("[]")  # it had crashed here
    code, err = run(capsys, *args)
    assert code == 0, err
    assert json.loads((workspace / "corpora" / "x" / "manifest.json").read_text())["name"] == "x"


@pytest.mark.parametrize(("args", "match"), [
    (("--licence", " "), "--licence ' ' is blank"),
    (("--licence", "MIT\x1b[31m"), "holds a control character"),
    (("--format", "text", "--text-column", "body"), "--format text reads one folder per domain"),
    (("--domain-column", "topic"), "is a folder of text files: --format text reads"),  # detected as text
], ids=["blank-licence", "control-licence", "text-columns", "detected-text-columns"])
def test_options_a_text_folder_or_a_manifest_cannot_carry_are_refused(args, match, workspace: Path,  # noqa: ANN001
                                                                      capsys) -> None:  # noqa: ANN001
    """A QA pass: column options were ignored for folders of text files without a word, and any
    --licence was recorded (a blank one, an escape sequence that `corpus info` then printed)."""
    assert_refused(capsys, workspace, "corpus", "add", "c", "--from", str(TINY_DATA), "--vocab-size", "300",
                   *args, match=match)


def test_adding_a_corpus_from_inside_its_folder_is_refused_before_work(workspace: Path, capsys,  # noqa: ANN001
                                                                       monkeypatch) -> None:  # noqa: ANN001
    """A QA pass: the guard in the corpus's atomic write refused it only after the tokenizer was trained."""
    import mixopt.corpus.ingest as ingest

    inside = workspace / "corpora" / "c" / "sub"
    inside.mkdir(parents=True)
    monkeypatch.chdir(inside)
    monkeypatch.setattr(ingest, "read_documents", lambda *a: pytest.fail("the input was read"))
    code, err = run(capsys, "corpus", "add", "c", "--from", str(TINY_DATA), "--vocab-size", "300")
    assert code == 2 and "the folder of corpus 'c'," in err and "is the current folder or holds" in err, err
