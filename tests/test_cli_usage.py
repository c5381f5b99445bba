"""Usage mistakes (unknown option or command, missing or ill-typed value) end as one error line and
exit code 2, like every other bad input, whichever copy of click typer raises them from."""

from __future__ import annotations

import re
import sys

import pytest

from mixopt.cli import main


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["fit", "--bogus"], "No such option: --bogus"),
        (["export", "m.json"], "Missing option '--format'"),
        (["nosuchcmd"], "No such command 'nosuchcmd'"),
        (["fit", "--cv", "abc"], "Invalid value for '--cv'"),
        (["proxy", "train", "--tokens", "0"], "Invalid value for '--tokens'"),
        (["runs", "import"], "Missing option '--ratios'"),
        (["proxy", "train", "--seed", "-1"], "Invalid value for '--seed'"),
        (["search", "--seed", str(2**40)], "Invalid value for '--seed'"),
        # a value's spaces are kept (they had been collapsed: '   ' showed as ' ')
        (["fit", "--propose", "--out", "   "], "the output '   ' is blank"),
        # an input path left empty had been '.', and the error named the current folder
        (["fit", "--ratios", "", "--metrics", "m.csv"], "'--ratios': the path is empty"),
        (["corpus", "add", "c", "--from", " "], "'--from': the path ' ' is blank"),
        (["swarm", "--domains", "a,b", "--extend", ""], "'--extend': the path is empty"),
    ],
)
def test_usage_errors_are_one_line(argv: list[str], match: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and match in lines[0], err
    assert "--help" in lines[0]  # where to look next


def test_usage_errors_name_mixopt_whatever_runs_it(monkeypatch, capsys) -> None:  # noqa: ANN001
    """run_cli from `python -c` or a notebook: the help to see is mixopt's, not '-c swarm --help' (the
    program name click had read from sys.argv[0]; a QA pass)."""
    from mixopt.cli import run_cli

    monkeypatch.setattr(sys, "argv", ["-c"])
    assert run_cli(["swarm", "--budget", "x"]) == 2
    assert capsys.readouterr().err.rstrip().endswith("(see 'mixopt swarm --help')")


def test_bare_group_shows_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["runs"])
    assert exc.value.code == 2
    out = capsys.readouterr()
    assert "Traceback" not in out.err and "import" in out.out + out.err
    assert out.err.strip() or not out.err  # no empty line on stderr (a QA pass)


def test_a_domain_twice_in_one_list_is_refused() -> None:
    from mixopt.cli.common import assignments
    from mixopt.errors import MixoptError

    with pytest.raises(MixoptError, match="--fix gives a twice"):
        assignments(["a=0.2,a=0.3"], "--fix")
    assert assignments(["a=0.2,b=0.3", "c=0.1"], "--fix") == {"a": 0.2, "b": 0.3, "c": 0.1}


def test_token_counts_are_read_as_people_write_them() -> None:
    import typer

    from mixopt.cli.common import parse_count

    for text, want in [("2e5", 200_000), ("200k", 200_000), ("200_000", 200_000), ("2.01M", 2_010_000),
                       ("4.02k", 4020), ("1.07G", 1_070_000_000), ("5M", 5_000_000)]:
        assert parse_count(text) == want, text
    for text in ("2.5", "0", "-5", "abc", "inf", "nan", "", "1e30", "1e400"):  # 1e400 overflowed a float
        with pytest.raises(typer.BadParameter):
            parse_count(text)


def test_json_output_is_strict_json():
    import json

    import numpy as np

    from mixopt.cli.common import dumps

    text = dumps({"spearman": float("nan"), "folds": [np.float64("inf"), 0.5], "n": np.int64(3)})
    assert json.loads(text, parse_constant=lambda c: pytest.fail(f"bare {c}")) == {
        "spearman": None, "folds": [None, 0.5], "n": 3}


def test_warnings_become_notes_and_are_still_shown_even_when_the_block_raises():
    import warnings

    from mixopt.errors import MixoptWarning, warnings_as_notes

    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        with warnings_as_notes() as notes:
            warnings.warn("no convergence", MixoptWarning, stacklevel=1)
            warnings.warn("no convergence", MixoptWarning, stacklevel=1)
            warnings.warn("a library's own", UserWarning, stacklevel=1)
        with pytest.raises(ValueError), warnings_as_notes():
            warnings.warn("before the error", MixoptWarning, stacklevel=1)
            raise ValueError("boom")
    assert notes == ["no convergence"]  # MixoptWarnings only, each once
    assert [str(w.message) for w in shown] == ["no convergence", "no convergence", "a library's own",
                                               "before the error"]


@pytest.mark.parametrize(
    "argv",
    [
        ["fit", "--ratios", "{long}.csv", "--metrics", "m.csv", "--target", "t", "--cv", "2"],
        ["runs", "list", "--store", "{long}"],
        ["export", "{tmp}/m.json", "--format", "hf", "--out", "{tmp}/{long}.json"],
    ],
)
def test_a_path_too_long_for_the_file_system_is_one_line(argv, tmp_path, monkeypatch, capsys) -> None:  # noqa: ANN001
    from mixopt.mixture import Mixture

    monkeypatch.setenv("MIXOPT_HOME", str(tmp_path / "home"))
    Mixture({"a": 0.5, "b": 0.5}).save(tmp_path / "m.json")
    long = "x" * 300  # one name past the 255 bytes a Linux file system allows
    with pytest.raises(SystemExit) as exc:
        main([a.format(long=long, tmp=tmp_path) for a in argv])
    assert exc.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: path too long for this file system: "), lines
    assert re.search(r"…x+(\.\w+)? \(\d{3} characters\); give a shorter path$", lines[0])  # shortened
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "home") == ["m.json"]


def test_version_names_mixopt_and_its_main_dependencies(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.metadata import version

    import mixopt

    main(["--version"])  # exit status 0: main returns
    out = capsys.readouterr().out.strip()
    assert out.startswith(f"mixopt {mixopt.__version__} (python 3.")
    assert f"torch {version('torch')}" in out and f"ray {version('ray')}" in out


def test_no_help_text_loses_words_to_rich_markup() -> None:
    """Rich reads "[on with …]" as a style tag and drops it: bench moe's --triton help had lost its
    default that way (a README/help audit)."""
    import typer

    from mixopt.cli import _register, app

    _register()
    texts: list[tuple[str, str]] = []

    def walk(cmd: object, where: str) -> None:
        texts.append((where, getattr(cmd, "help", None) or ""))
        for p in getattr(cmd, "params", []):
            texts.append((f"{where} {p.name}", getattr(p, "help", None) or ""))
        for name, sub in getattr(cmd, "commands", {}).items():
            walk(sub, f"{where} {name}")

    walk(typer.main.get_command(app), "mixopt")
    assert len(texts) > 200  # every command and option was reached
    lost = [(w, t) for w, t in texts if re.search(r"(?<!\\)\[[a-zA-Z/]", t)]
    assert not lost, lost


def test_every_option_a_help_text_names_is_one_of_its_commands() -> None:
    """A help audit: entropy's --min-weight spoke of --reuse-mixture and its --target-tokens of
    --tokens, options entropy does not have. Another command's options are named in `backticks`."""
    import typer

    from mixopt.cli import _register, app

    _register()
    foreign = {"--data-path"}  # Megatron's own flag, in export's --format help
    wrong: list[tuple[str, str]] = []

    def walk(cmd: object, where: str) -> None:
        params = getattr(cmd, "params", [])
        own = {o for p in params for o in [*p.opts, *getattr(p, "secondary_opts", [])]} | {"--help"}
        for text in [getattr(cmd, "help", None) or "", *(getattr(p, "help", None) or "" for p in params)]:
            for opt in re.findall(r"--[a-z][a-z0-9-]*", re.sub(r"`[^`]*`", "", text)):
                if params and opt not in own | foreign and opt.removesuffix("-ed") not in own:  # --fix-ed
                    wrong.append((where, opt))
        for name, sub in getattr(cmd, "commands", {}).items():
            walk(sub, f"{where} {name}")

    walk(typer.main.get_command(app), "mixopt")
    assert not wrong, wrong


def test_target_tokens_help_says_its_default_where_domains_come_with_tokens() -> None:
    """Without a corpus (--domains with --tokens) the default --target-tokens is the sum of --tokens,
    not a corpus size (a help audit); entropy takes a corpus only."""
    import typer

    from mixopt.cli import _register, app

    _register()
    top = typer.main.get_command(app)
    helps = {name: next(p.help for p in top.commands[name].params if p.name == "target_tokens")
             for name in ("search", "swarm", "entropy")}
    assert "the sum of --tokens" in helps["search"] and "the sum of --tokens" in helps["swarm"]
    assert "--tokens" not in helps["entropy"] and "the corpus size" in helps["entropy"]


def test_the_docs_show_only_options_their_commands_have_and_name_every_verb() -> None:
    """A docs audit: each `mixopt CMD … --opt` line of the README and docs/ names options CMD has,
    and DECISIONS.md's list of the CLI's verbs had left out `swarm`."""
    from pathlib import Path

    import typer

    from mixopt.cli import _register, app

    _register()
    top = typer.main.get_command(app)
    root = Path(__file__).resolve().parents[1]
    if not (root / "docs" / "DECISIONS.md").is_file():
        pytest.skip("no checkout (an installed package has no docs)")

    def options(cmd: object) -> set[str]:
        params = getattr(cmd, "params", [])
        return {o for p in params for o in [*p.opts, *getattr(p, "secondary_opts", [])]} | {"--help"}

    wrong = []
    for doc in [root / "README.md", *sorted((root / "docs").glob("*.md"))]:
        lines = doc.read_text(encoding="utf-8").splitlines()
        for n, line in enumerate(lines, 1):
            for m in re.finditer(r"mixopt ([a-z]+)(?: ([a-z]+))?([^`|#(]*)", line):
                cmd = top.commands.get(m[1])
                if cmd is None:
                    continue
                label, rest = m[1], m[3]
                if m[2] and m[2] in getattr(cmd, "commands", {}):
                    label, cmd = f"{m[1]} {m[2]}", cmd.commands[m[2]]
                elif m[2]:
                    rest = f" {m[2]}{rest}"
                shown = re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", rest)
                wrong += [f"{doc.name}:{n}: {label} {o}" for o in shown if o not in options(cmd)]
    assert not wrong, wrong
    text = (root / "docs" / "DECISIONS.md").read_text(encoding="utf-8")
    verbs = re.search(r"Each verb \(([^)]*)\)", text)
    assert verbs is not None
    assert set(re.findall(r"`([a-z]+)`", verbs[1])) == set(top.commands)


def test_a_locale_that_is_not_utf8_prints_question_marks_not_a_traceback(monkeypatch) -> None:  # noqa: ANN001
    """A QA pass: under LANG=en_US.ISO-8859-1 `mixopt --help` (its "→") and a finished search's table
    (its "·") ended in a UnicodeEncodeError traceback, exit 1."""
    import io
    import sys

    from rich.console import Console

    from mixopt.cli import _register, common

    # the command modules bind common.console at import: imported under the patch below, they had
    # kept the Latin-1 console for every later test (a later `corpus build` test's line went there)
    _register()
    out = io.TextIOWrapper(io.BytesIO(), encoding="latin-1")
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(common, "console", Console(file=out))  # as at import, under that locale
    main(["--help"])  # returns: no traceback
    common.console.print("mixture → written · 日本")
    out.flush()
    text = out.buffer.getvalue().decode("latin-1")
    assert "Usage" in text and "mixture ? written · ??" in text


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGHUP"])
def test_sigterm_and_sighup_stop_a_command_as_ctrl_c_does(signame, tmp_path, monkeypatch, capsys) -> None:  # noqa: ANN001
    """A QA pass: SIGTERM (a scheduler's stop) killed `fit` where it stood, leaving its workers running
    and a pipeline open, and every command but search and train exited 143 without a word."""
    import os
    import signal
    import threading
    import time

    import mixopt.search.imports as imports

    def slow(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        time.sleep(30)

    monkeypatch.setattr(imports, "import_table", slow)
    monkeypatch.setenv("MIXOPT_HOME", str(tmp_path))
    sig = getattr(signal, signame)
    before = signal.getsignal(sig)
    signal.signal(sig, signal.SIG_DFL)  # as a shell starts a command
    try:
        threading.Timer(0.5, os.kill, (os.getpid(), sig)).start()
        t0 = time.monotonic()
        with pytest.raises(SystemExit) as stopped:
            main(["runs", "import", "--ratios", "r.csv", "--metrics", "m.csv"])
        assert stopped.value.code == 130 and time.monotonic() - t0 < 20
        assert capsys.readouterr().err.strip().endswith("interrupted")
        assert signal.getsignal(sig) == signal.SIG_DFL  # given back as it was
    finally:
        signal.signal(sig, before)
