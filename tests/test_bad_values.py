"""Values past what a reader holds, from a fuzzing pass of every command that reads a user's file:
huge numbers, deep nesting, long ids, lines ended by CR alone, mistyped recipe values. Each is one
error line (a MixoptError, exit 2) or read as meant; each had been a traceback or a wrong reading."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from mixopt.cli import run_cli
from mixopt.errors import MixoptError
from mixopt.mixture import Mixture
from mixopt.tables import read_run_tables

HUGE = "1" + "0" * 400  # an integer no float holds


def test_a_run_id_of_thousands_of_digits_joins_as_text(tmp_path: Path) -> None:
    """Python refuses to read an int of more than 4,300 digits: the shift check had raised on it."""
    long_id = "3" * 4301
    (tmp_path / "r.csv").write_text(f"run,a,b\n1,0.5,0.5\n2,0.25,0.75\n{long_id},0.75,0.25\n")
    (tmp_path / "m.csv").write_text(f"run,loss\n1,3.0\n2,3.1\n{long_id},3.2\n")
    table = read_run_tables(tmp_path / "r.csv", tmp_path / "m.csv")
    assert table.run_ids == ["1", "2", long_id] and list(table.target("loss")) == [3.0, 3.1, 3.2]


def test_lines_ended_by_cr_alone_are_named(tmp_path: Path) -> None:
    """polars reads such a file as one header row: "names column 0.25 more than once", or minutes of
    work on a large table, had not said why."""
    (tmp_path / "r.csv").write_bytes(b"index,a,b\r1,0.5,0.5\r2,0.25,0.75\r")
    (tmp_path / "m.csv").write_text("index,loss\n1,3.0\n2,3.1\n")
    with pytest.raises(MixoptError, match=r"ratios file .*r\.csv ends its lines with CR alone .*LF or CRLF"):
        read_run_tables(tmp_path / "r.csv", tmp_path / "m.csv")
    (tmp_path / "r.csv").write_bytes(b"index,a,b\r\n1,0.5,0.5\r\n2,0.25,0.75\r\n")  # CRLF reads
    assert read_run_tables(tmp_path / "r.csv", tmp_path / "m.csv").X.shape == (2, 2)


def test_a_mixture_json_with_huge_integers_or_deep_nesting_is_refused(tmp_path: Path) -> None:
    base = {"schema": "mixopt.mixture/v1", "weights": {"a": 0.5, "b": 0.5}}
    path = tmp_path / "m.json"
    path.write_text(json.dumps(base).replace('"a": 0.5, "b": 0.5', f'"a": {HUGE}, "b": 0'))
    with pytest.raises(MixoptError, match="weights/a: inf is greater than the maximum of 1"):
        Mixture.load(path)
    path.write_text(json.dumps(base).replace('"a": 0.5, "b": 0.5', f'"a": {"3" * 4301}, "b": 0'))
    with pytest.raises(MixoptError, match="weights/a: inf"):
        Mixture.load(path)
    path.write_text(json.dumps(base)[:-1] + ', "params": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(MixoptError, match="nests its arrays or objects too deep"):
        Mixture.load(path)
    path.write_text(json.dumps({**base, "params": {"seed": 12345678901234567890123}}))  # kept exactly
    assert Mixture.load(path).meta["params"]["seed"] == 12345678901234567890123


def test_an_export_refuses_passes_no_repetition_factor_holds(tmp_path: Path, capsys) -> None:
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"schema": "mixopt.mixture/v1", "weights": {"a": 0.5, "b": 0.5},
                                "tokens": {"epochs": {"a": 1e307}}}))
    assert run_cli(["export", str(path), "--format", "olmix-mix", "--out", str(tmp_path / "o.yaml")]) == 2
    assert "tokens.epochs give a 1e+307 passes, too many" in capsys.readouterr().err
    assert not (tmp_path / "o.yaml").exists()
    path.write_text(json.dumps({"schema": "mixopt.mixture/v1", "weights": {"a": 0.5, "b": 0.5}})[:-1]
                    + f', "params": {{"constraints": {{"max_epochs": {HUGE}}}}}}}')
    assert run_cli(["export", str(path), "--format", "olmix-mix", "--out", str(tmp_path / "o.yaml")]) == 2
    assert "params.constraints.max_epochs is inf" in capsys.readouterr().err


def test_numbers_past_every_range_in_options(workspace: Path) -> None:
    from mixopt.search.config import parse_assignments, parse_fidelity, scaled_number
    from mixopt.space import default_target_tokens

    with pytest.raises(ValueError, match="too large a number"):
        scaled_number("1e999999k")  # decimal's Overflow had escaped as a traceback
    with pytest.raises(MixoptError, match="--tokens: value '1e999999k' of 'a' is not a count"):
        parse_assignments("a=1e999999k,b=1", option="--tokens", counts=True)
    # an integer of 400 digits is a float (inf) the checks name, not an int no comparison holds
    for key in ("params", "steps"):
        with pytest.raises(MixoptError, match=f"--fidelity {key}={HUGE}: give a finite number"):
            parse_fidelity(f"{key}={HUGE}")
    with pytest.raises(MixoptError, match=f"--fidelity tokens={HUGE}: a token count must be"):
        parse_fidelity(f"tokens={HUGE}")
    with pytest.raises(MixoptError, match="--fidelity lr=nan: give a finite number"):
        parse_fidelity("lr=nan")  # stored, it had read back as null
    # ids and seeds of 19 digits and more stay exact: as floats, two fidelities had matched
    assert parse_fidelity("seed=12345678901234567891") == {"seed": 12345678901234567891}
    with pytest.raises(MixoptError, match=r"token counts \(--tokens\) sum to more than a float holds"):
        default_target_tokens(None, {"a": 1e308, "b": 1e308})  # it had named --target-tokens, not given


def test_runs_import_refuses_names_that_no_table_or_terminal_takes(workspace: Path, tmp_path: Path,
                                                                  capsys) -> None:
    (tmp_path / "r.csv").write_text("index,a,b\n1,0.5,0.5\n2,0.25,0.75\n")
    (tmp_path / "m.csv").write_text("index,loss\n1,3.0\n2,3.1\n")
    store = tmp_path / "s.sqlite"
    base = ["runs", "import", "--ratios", str(tmp_path / "r.csv"), "--metrics", str(tmp_path / "m.csv"),
            "--store", str(store)]
    for extra, said in ((["--prefix", "\x1b[2J\x1b[31mX:"], "--prefix '\\x1b[2J\\x1b[31mX:' holds a "),
                        (["--prefix", "p:", "--rename", "loss="], "--rename leaves metric 'loss' with no "),
                        (["--prefix", "p:", "--rename", "loss=a\nb"], "the name 'a\\nb', with a control"),
                        # a rung name too long for a file name is no recipe: imported, not "path too long"
                        (["--prefix", "p:", "--fidelity", "rung=" + "a" * 300, "--json"], None)):
        code = run_cli(base + extra)
        err = capsys.readouterr().err
        if said is None:
            assert code == 0, err
        else:
            assert code == 2 and said in err and not store.exists(), err


def test_runs_import_leaves_no_store_behind_when_it_fails_otherwise(workspace: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The refused import's clean-up had run for a MixoptError only: an OSError left an empty store."""
    from mixopt.search import imports

    (tmp_path / "r.csv").write_text("index,a,b\n1,0.5,0.5\n2,0.25,0.75\n")
    (tmp_path / "m.csv").write_text("index,loss\n1,3.0\n2,3.1\n")
    store = tmp_path / "new" / "s.sqlite"

    def fails(*args: object, **kwargs: object) -> None:
        raise OSError(36, "File name too long")

    monkeypatch.setattr(imports, "import_table", fails)
    code = run_cli(["runs", "import", "--ratios", str(tmp_path / "r.csv"), "--metrics",
                    str(tmp_path / "m.csv"), "--store", str(store), "--prefix", "p:"])
    assert code != 0 and not store.exists() and not store.parent.exists()


def test_a_corpus_domain_may_not_be_named_as_a_run_tables_id_column() -> None:
    """Built, its swarm and its run tables were refused (they would read the weights as ids)."""
    from mixopt.corpus.documents import check_domain_name

    for name in ("index", "run", "name"):
        with pytest.raises(MixoptError, match=f"domain '{name}' has the name of a run table's id column"):
            check_domain_name(name)
    assert check_domain_name("names") == "names"


@pytest.mark.parametrize(("line", "said"), [
    ("eval_at = 0.5", "eval_at = 0.5 must be a list of numbers"),
    ('eval_at = "0.5"', "eval_at = '0.5' must be a list of numbers"),
    ("eval_at = [true]", r"eval_at = \[True\] must be a list of numbers"),
    ("lr = true", "lr = True must be a number"),
    ('warmup = "5%"', "warmup = '5%' must be a number"),
    ('cost = "16s"', r"cost is '16s'; give a \[cost\] table"),
    ('[cost]\nseconds = "16s"', r"\[cost\]: seconds = '16s' must be a number"),
])
def test_a_rung_value_of_the_wrong_type_is_named(workspace: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch, line: str,
                                                  said: str) -> None:
    """They had been tracebacks (``eval_at = 0.5``, ``cost = "16s"``), Python's words (``'<=' not
    supported``), or read as something else (``lr = true`` trained at 1)."""
    from mixopt.proxy.rungs import load_rung

    key = line.split()[0].strip("[]")
    shipped = Path(__import__("mixopt").__file__).parent / "recipes" / "proxies" / "xs.toml"
    kept = [t for t in shipped.read_text().split("\n[cost]")[0].splitlines()
            if t.split("=")[0].strip() != key]
    (tmp_path / "proxies").mkdir()
    (tmp_path / "proxies" / "zz.toml").write_text("\n".join(kept) + "\n" + line + "\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(MixoptError, match=said):
        load_rung("zz")
    shutil.rmtree(tmp_path / "proxies")


# ----- option values (a pass that gave every option of every command extreme values) ---------------
def test_an_empty_exports_folder_is_not_the_current_folder(workspace: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """``--exports ""`` is ``.``: an empty current folder had been replaced whole, leaving the shell in a
    deleted folder."""
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    inode = here.stat().st_ino
    for exports, said in (("", "'--exports': the output is empty; give a path"),
                          (".", "is the current folder or holds it"),
                          (str(tmp_path), "is the current folder or holds it"),
                          (" ", "'--exports': the output ' ' is blank")):
        code = run_cli(["swarm", "--domains", "a,b,c", "--budget", "2", "--out", str(tmp_path / "s.csv"),
                        "--exports", exports, "--format", "megatron"])
        assert code == 2 and said in capsys.readouterr().err
    assert here.stat().st_ino == inode and not (tmp_path / "s.csv").exists()


def test_output_names_that_are_blank_or_hold_control_characters(workspace: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch,
                                                                 capsys) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "r.csv").write_text("index,a,b\n1,0.5,0.5\n2,0.25,0.75\n3,0.75,0.25\n")
    (tmp_path / "m.csv").write_text("index,loss\n1,3.0\n2,3.1\n3,3.3\n")
    fit = ["fit", "--ratios", "r.csv", "--metrics", "m.csv", "--target", "loss", "--method", "linear",
           "--propose", "--out"]
    for out, said in ((" ", "' ' is blank"), ("a\x1b[2Jb.json", "holds a control character"),
                      ("", "'--out' / '-o': the output is empty")):  # it had been "--out . is a folder"
        assert run_cli([*fit, out]) == 2 and said in capsys.readouterr().err
    assert run_cli([*fit, "m.json", "--report", ""]) == 2  # it had been "--report /cwd is the current…"
    assert "'--report': the output is empty" in capsys.readouterr().err
    # search's --out '' had written the search folder's mixture.json alone
    search = ["search", "--evaluator", "mixopt.testing:loglinear", "--domains", "a,b"]
    assert run_cli([*search, "--out", ""]) == 2
    assert "--out is empty; give a path" in capsys.readouterr().err
    assert run_cli(["runs", "import", "--ratios", "r.csv", "--metrics", "m.csv", "--store", " ",
                    "--prefix", "p:"]) == 2
    assert "--store ' ' is blank" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.csv", "r.csv"]


def test_errors_and_warnings_are_one_printable_line(workspace: Path, capsys) -> None:
    """A value's newline had split the error in two, its escape sequence reached the terminal, and a
    5,000-character value made a 5,000-character line."""
    from mixopt.errors import MAX_LINE, one_line

    assert run_cli(["runs", "list", "--store", "a\nb\x1b[31m"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "run store a\\nb\\x1b[31m does not exist" in err
    long = one_line("x" * 5000 + " end")
    assert len(long) < MAX_LINE + 40 and long.endswith(" end") and "characters cut" in long
    assert one_line("café · 2\u20283") == "café · 2\\u20283"


def test_counts_past_what_a_command_can_run_are_refused_before_work(tiny_workspace: Path, tmp_path: Path,
                                                                    capsys) -> None:
    from mixopt.train.compare import compare

    with pytest.raises(MixoptError, match="--seeds is 100,000,000,000,000,000,000; give at most 100"):
        compare(["uniform", "natural"], "tiny", "moe-xs", seeds=10**20)  # it had hung before any output
    with pytest.raises(MixoptError, match="tokens 1000 is less than one step"):
        compare(["uniform", "natural"], "tiny", "moe-xs", seeds=1, tokens=1000, out=tmp_path / "c")
    assert not (tmp_path / "c").exists()  # refused before its folder was made
    assert run_cli(["proxy", "rungs", "--vocab", "9" * 400]) == 2  # an OverflowError traceback
    assert "less than or equal to 65536" in capsys.readouterr().err
    assert run_cli(["bench", "proxy", "--rungs", "xs", "--seconds", "0.5", "-t", "99999"]) == 2
    assert "--threads is 99999, more than the" in capsys.readouterr().err
    assert run_cli(["bench", "proxy", "--rungs", "xs", "--seconds", "inf"]) == 2  # it had run forever
    assert "less than or equal to 3600" in capsys.readouterr().err


def test_options_that_took_what_they_should_refuse(workspace: Path) -> None:
    from mixopt.corpus.ingest import AddOptions
    from mixopt.fit.across_scale import ScaleFitConfig
    from mixopt.train.updater import make_updater

    with pytest.raises(MixoptError, match="--size-exponent is inf; it must be a finite number > 0"):
        ScaleFitConfig(size_exponent=float("inf"))
    with pytest.raises(MixoptError, match="gives eta twice"):
        make_updater("loss:eta=1,eta=2")  # the last had won
    with pytest.raises(MixoptError, match="--vocab-size 70000 is out of range"):
        AddOptions(vocab_size=70000)  # said after the data was read and a tokenizer trained


def test_a_proposal_from_standard_input_records_what_it_read(workspace: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The provenance hash had read the table a second time: from a pipe, the fit then read nothing."""
    import hashlib
    import io

    runs = Path(__file__).parent / "data" / "runs" / "regmix-pile-1m"
    ratios = (runs / "test_mixture_1m.csv").read_bytes()
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(ratios)))
    out = tmp_path / "p.json"
    assert run_cli(["fit", "--ratios", "-", "--metrics", str(runs / "test_pile_loss_1m.csv"), "--target",
                    "metric/the_pile_pile_cc_val_loss", "--method", "linear", "--propose", "--candidates",
                    "2000", "--out", str(out)]) == 0
    sha = json.loads(out.read_text())["provenance"]["tables_sha256"]
    assert sha["ratios"] == hashlib.sha256(ratios).hexdigest()


def test_a_deleted_current_folder_and_deep_toml(workspace: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from mixopt.atomic import refuse_holding_cwd
    from mixopt.proxy.rungs import load_rung

    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()
    refuse_holding_cwd(tmp_path / "out", "--exports")  # nothing to protect: it had raised FileNotFoundError
    monkeypatch.chdir(tmp_path)
    (tmp_path / "deep.toml").write_text("eval_at = " + "[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(MixoptError, match="cannot read proxy rung"):
        load_rung(str(tmp_path / "deep.toml"))  # a RecursionError traceback


def test_swarm_extends_a_file_not_a_pipe(workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys) -> None:
    """The table is read for its rows, its numbering and its last line: a pipe, empty the second time,
    had given a traceback and a table of blank lines (a QA pass of this session's pipe reading)."""
    import io
    import os
    import threading

    runs = Path(__file__).parent / "data" / "runs" / "regmix-pile-1m" / "train_mixture_1m.csv"
    domains = runs.read_text().splitlines()[0].split(",")[1:]
    out = tmp_path / "sw.csv"
    fifo = tmp_path / "t.fifo"
    os.mkfifo(fifo)
    threading.Thread(target=lambda: fifo.write_bytes(runs.read_bytes()), daemon=True).start()
    base = ["swarm", "--domains", ",".join(domains), "--budget", "8", "--out", str(out), "--extend"]
    assert run_cli([*base, str(fifo)]) == 2 and "is a pipe or a device" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(runs.read_bytes())))
    assert run_cli([*base, "-"]) == 2 and "from standard input" in capsys.readouterr().err
    assert not out.exists()
    assert run_cli([*base, str(runs)]) == 0  # a file extends as before
    assert len(out.read_text().splitlines()) == 9


def test_a_whole_float_is_an_integer_in_a_rung(workspace: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """TOML reads ``tokens = 2e6`` as a float, and token counts are written so: it had been refused as
    "must be an integer" (a QA pass). A fraction still is."""
    from mixopt.proxy.rungs import load_rung

    shipped = Path(__import__("mixopt").__file__).parent / "recipes" / "proxies" / "xs.toml"
    text = shipped.read_text()
    want = load_rung("xs")
    (tmp_path / "proxies").mkdir()
    monkeypatch.chdir(tmp_path)
    floated = re.sub(r"(?m)^tokens = .*$", f"tokens = {float(want.tokens):e}", text)
    assert floated != text
    (tmp_path / "proxies" / "zf.toml").write_text(floated)
    got = load_rung("zf")
    assert got.tokens == want.tokens and type(got.tokens) is int
    (tmp_path / "proxies" / "zh.toml").write_text(re.sub(r"(?m)^batch = .*$", "batch = 1.5", text))
    with pytest.raises(MixoptError, match="batch = 1.5 must be an integer"):
        load_rung("zh")


def test_an_output_inside_a_built_corpus_is_refused(workspace: Path, tiny_corpus,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """`entropy C --out <C>/manifest.json` (and proxy train's, swarm's --out) had replaced the manifest
    the command had just read: the corpus could not be opened until rebuilt (a bad-input sweep)."""
    from mixopt.atomic import check_writable

    corpus = workspace / "corpora" / "mine"  # a copy: the session's corpus is shared by other tests
    shutil.copytree(tiny_corpus.path, corpus)
    manifest = (corpus / "manifest.json").read_bytes()
    assert run_cli(["entropy", "mine", "--out", str(corpus / "manifest.json")]) == 2
    assert "is inside the built corpus" in capsys.readouterr().err
    assert (corpus / "manifest.json").read_bytes() == manifest
    domain = next(p for p in corpus.iterdir() if p.is_dir())
    with pytest.raises(MixoptError, match="inside the built corpus"):
        check_writable(domain / "new.json")
    (workspace / "notes").mkdir()
    (workspace / "notes" / "manifest.json").write_text('{"name": "an app"}')  # not a corpus's
    assert check_writable(workspace / "notes" / "m.json") == (workspace / "notes" / "m.json").resolve()


def test_an_empty_mixture_is_said_to_be_empty(tiny_corpus) -> None:
    """`train -m ""` (a variable left unset) had been "mixture '' is a folder" (Path('') is '.')."""
    from mixopt.proxy.job import mixture_from_spec

    with pytest.raises(MixoptError, match="the mixture is empty; give natural, uniform"):
        mixture_from_spec("", tiny_corpus)
    with pytest.raises(MixoptError, match="the mixture ' ' is blank"):
        mixture_from_spec(" ", tiny_corpus)


def test_another_programs_sqlite_file_is_no_run_store(workspace: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """A store of no runs table had been given mixopt's tables by `runs import`, and by `runs list`,
    `runs searches` and `runs compact` too, which only read (a bad-input sweep)."""
    import sqlite3

    other = tmp_path / "app.sqlite"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE users (name TEXT)")
    con.commit()
    con.close()
    (tmp_path / "r.csv").write_text("run,a,b\nr1,0.5,0.5\nr2,0.25,0.75\n")
    (tmp_path / "m.csv").write_text("run,loss\nr1,3.0\nr2,3.1\n")
    tables = ["--ratios", str(tmp_path / "r.csv"), "--metrics", str(tmp_path / "m.csv")]
    for args in (["runs", "import", *tables], ["runs", "list"], ["runs", "searches"], ["runs", "compact"]):
        assert run_cli([*args, "--store", str(other)]) == 2
        assert "is a SQLite file but not a run store (no runs table)" in capsys.readouterr().err
    con = sqlite3.connect(other)
    assert [r[0] for r in con.execute("SELECT name FROM sqlite_master")] == ["users"]
    con.close()


def test_bench_fit_ladder_refusals_leave_no_store(workspace: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """`bench fit --ladder nope` had made the store before the corpus was opened, and left it empty;
    `--ladder-seed -1` had been numpy's traceback (a bad-input sweep)."""
    store = tmp_path / "new" / "s.sqlite"
    base = ["bench", "fit", "--no-timing", "--no-laws", "--store", str(store)]
    for option in ("--ladder", "--lengths"):
        assert run_cli([*base, option, "nope"]) == 2
        assert "corpus 'nope' is not built" in capsys.readouterr().err
        assert not store.exists() and not store.parent.exists()
    assert run_cli([*base, "--ladder", "nope", "--ladder-seed", "-1"]) == 2
    assert "'--ladder-seed'" in capsys.readouterr().err


def test_proxy_train_json_carries_its_warnings(tiny_workspace: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """Every other --json document has a warnings key; proxy train's had none (a bad-input sweep)."""
    code = run_cli(["proxy", "train", "-c", "tiny", "-r", "xs", "--tokens", "2048", "--max-epochs", "0",
                    "--threads", "1", "--json", "--out", str(tmp_path / "r.json")])
    out, err = capsys.readouterr()
    doc = json.loads(out)
    assert code == 0 and doc["warnings"] and "epochs" in doc["warnings"][0] and "warning:" in err


def test_a_rung_missing_keys_names_them_as_a_model_config_does(workspace: Path, tmp_path: Path) -> None:
    """Python's "RungConfig.__init__() missing 6 required keyword-only arguments" had been the line
    (a bad-input sweep); a model config's said "missing key(s)" already."""
    from mixopt.proxy.rungs import load_rung

    (tmp_path / "half.toml").write_text("n_layer = 2\nd_model = 64\n")
    with pytest.raises(MixoptError, match=r"missing key\(s\) batch, context, lr, min_lr, n_head, tokens$"):
        load_rung(str(tmp_path / "half.toml"))


def test_an_output_that_is_a_symlink_loop_is_one_error(tmp_path: Path) -> None:
    """`--out loop` (a link to itself) had been Python's "RuntimeError: Symlink loop" traceback, which
    the corpus-folder walk now meets first."""
    from mixopt.atomic import check_writable

    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    with pytest.raises(MixoptError, match="loop is a symbolic link that loops; give another path"):
        check_writable(tmp_path / "loop")
