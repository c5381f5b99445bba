"""``mixopt search``, ``runs``, ``report`` through the CLI: what the library gets, bad input, a real run."""

from __future__ import annotations

import json
import pathlib
import re
import sys

import pytest

from mixopt.cli import run_cli
from mixopt.store import RunStore

FAST = ["--evaluator", "mixopt.testing:loglinear", "--domains", "web,code,math,books"]


def test_options_reach_the_library_as_a_config(workspace, monkeypatch, capsys):
    import mixopt.search.driver as driver

    seen = {}

    def fake_run_search(config, *, evaluator=None, progress=None):
        seen["config"] = config
        raise KeyboardInterrupt  # stop before anything runs

    monkeypatch.setattr(driver, "run_search", fake_run_search)
    code = run_cli(["search", *FAST, "--tokens", "web=4e9,code=1e9,math=3e8,books=7e8", "--budget", "20",
                    "--rung", "s", "--method", "linear", "--no-reuse", "--max-weight", "web=0.5",
                    "--max-weight", "code=0.4", "--fix", "books=0.1", "--min-weight", "0.01", "--target",
                    "code=0.7,math=0.3", "--metric", "bpb",
                    "--fidelity", "noise=0.05,tag=a", "--validate", "3", "--validate-rung", "m",
                    "--retries", "4",
                    "--seed", "7", "--temperature", "2", "--concurrency", "1", "--name", "n1",
                    "--max-epochs", "4", "--target-tokens", "1e9", "--kl", "0.5",
                    "--reuse-mixture", "old=prev.json", "--recompute", "code,math"])
    assert code == 130
    # stopped before the search was recorded: no resume to offer (a QA pass: `--resume n1` it gave
    # then said "no search named 'n1'")
    assert capsys.readouterr().err.strip() == ("stopped before the search was recorded: nothing to resume; "
                                               "run the command again")
    c = seen["config"]
    assert c.domains == ("web", "code", "math", "books") and c.tokens["web"] == 4e9
    assert (c.budget, c.rung, c.method, c.reuse) == (20, "s", "linear", False)
    assert (c.validate, c.validate_rung) == (3, "m")
    # Repeated --max-weight/--fix add up (as in fit), not the last one wins.
    assert c.max_weight == {"web": 0.5, "code": 0.4} and c.fix == {"books": 0.1} and c.min_weight == 0.01
    assert (c.target, c.metric, c.retries, c.seed, c.temperature) == ("code=0.7,math=0.3", "bpb", 4, 7, 2.0)
    assert c.fidelity == {"noise": 0.05, "tag": "a"} and c.concurrency == 1 and c.name == "n1"
    assert (c.max_epochs, c.target_tokens, c.kl) == (4.0, 1e9, 0.5)
    assert c.reuse_mixture == "old=prev.json" and c.recompute == ("code", "math")
    RunStore().create_search("n1", {"method": "linear"})
    assert run_cli(["search", *FAST, "--name", "n1"]) == 130
    # 3 seeds by default, in the CLI and the library: with 2, a win needs 14 paired standard errors
    from mixopt.search.config import SearchConfig

    assert seen["config"].validate == 3 == SearchConfig(corpus="x").validate
    assert "Continue with:\n  mixopt search --resume n1\n" in capsys.readouterr().err
    # in another store: the hint names it (the review: it sent the resume to the workspace's)
    other = str(workspace / "other.sqlite")
    RunStore(other).create_search("n2", {"method": "linear"})
    assert run_cli(["search", *FAST, "--name", "n2", "--store", other]) == 130
    assert f"Continue with:\n  mixopt search --resume n2 --store {other}\n" in capsys.readouterr().err
    from mixopt.search.prepare import resume_hint
    from mixopt.store import default_path

    assert resume_hint("n2", "m:f", other) == f"`mixopt search --resume n2 --store {other}`"
    assert resume_hint("n2", "m:f", str(default_path())) == "`mixopt search --resume n2`"
    said = f"resume_search('n2', store={other!r}, evaluator=<the function>) from Python"
    assert resume_hint("n2", print, other) == said


@pytest.mark.parametrize("args, message", [
    (["search", "--corpus", "nope"], "not built"),
    (["search", *FAST, "--method", "nope"], "nope"),
    (["search", "--domains", "a,b,c"], "needs your own --evaluator"),
    (["search"], "give --corpus"),
    (["search", "--evaluator", "no_such_module_xyz:f", "--domains", "a,b"], "cannot import evaluator module"),
    (["search", "--evaluator", "mixopt.testing:nothing_here", "--domains", "a,b"], "has no 'nothing_here'"),
    (["search", "--evaluator", "mixopt.testing:RUNG_OFFSET", "--domains", "a,b"], "not callable"),
    (["search", "--evaluator", "./ev.py:evaluate", "--domains", "a,b"], "names a file; give a module name: "
     "from the folder that holds it, --evaluator ev:evaluate"),
    (["search", *FAST, "--tokens", "web=lots"], "--tokens"),
    (["search", *FAST, "--tokens", "web=1e9,code=1e9,math=1e9,books=1e9,nosuch=1e9"],
     "--tokens names unknown domain(s) nosuch"),
    (["search", *FAST, "--max-weight", "web"], "--max-weight"),
    (["search", *FAST, "--fidelity", "noise"], "--fidelity: 'noise' is not of the form key=value"),
    (["search", *FAST, "--fix", "web=0.7,code=0.7"], "sum to"),
    (["search", *FAST, "--fix", "web=0.3", "--fix", "web=0.4"], "--fix gives web twice"),
    (["search", *FAST, "--target", "nowhere"], "--target names unknown domain"),
    (["search", *FAST, "--target", ""], "--target '' names no domain"),
    (["search", *FAST, "--target", " , "], "--target ' , ' names no domain"),
    (["search", *FAST, "--target", "code,code=2"], "--target names 'code' twice"),
    (["search", *FAST, "--target", "code=1,=1"], "--target 'code=1,=1': '=1' has no domain name"),
    # a list left empty (a variable unset) had been no list: no token counts, no fixes, unsaid
    (["search", *FAST, "--fix", ""], "--fix is empty; give domain=value"),
    (["search", *FAST, "--tokens", " "], "--tokens ' ' is blank"),
    (["search", *FAST, "--fidelity", ","], "--fidelity is empty; give key=value"),
    (["swarm", "--domains", "a,b", "--max-weight", ""], "--max-weight is empty"),
    (["search", *FAST, "--method", "entropy"], "--method entropy computes the mixture from a corpus"),
    (["search", *FAST, "--budget", "0"], "--budget"),
    (["search", *FAST, "--budget", "1000000000"], "'1000000000' is more than 100,000 runs; give at most"),
    (["search", *FAST, "--budget", "1e20"], "'1e20' is more than 100,000 runs; give at most 100,000"),
    (["search", *FAST, "--budget", "0k"], "--budget is 0; it must be at least 1"),
    (["search", *FAST, "--validate", "1000000"], "give at most 100 seeds per mixture"),
    (["search", *FAST, "--metric", "acc"], "--metric"),
    (["search", *FAST, "--name", "bad name!"], "--name"),
    (["search", *FAST, "--max-epochs", "2"], "token counts"),
    # a domain left out by a typo had been dropped silently; a name with '=' could never be fixed
    (["search", "--evaluator", "mixopt.testing:loglinear", "--domains", "web,,code"],
     "--domains 'web,,code' has an empty name between its commas"),
    (["search", "--evaluator", "mixopt.testing:loglinear", "--domains", "a=1,b,c"],
     "--domains names 'a=1': a domain name cannot hold '='"),
    # refused before the swarm trains (a QA pass: a tab was refused only at the mixture, after every
    # run; "index" was refused by runs export of the search's runs)
    (["search", "--evaluator", "mixopt.testing:loglinear", "--domains", "a\ttab,z,w"],
     "--domains: domain name 'a\\ttab' holds a control character"),
    (["search", "--evaluator", "mixopt.testing:loglinear", "--domains", "caf\u00e9,cafe\u0301,z"],
     "--domains: domains 'caf\u00e9' and 'cafe\u0301' are one name in two Unicode spellings"),
    (["search", "--evaluator", "mixopt.testing:loglinear", "--domains", "index,x"],
     "domain 'index' has the name of a run table's id column (run, name, index)"),
    (["search", *FAST, "--gpus-per-trial", "1.5"], "--gpus-per-trial is 1.5; give 0, a fraction up to 1"),
    (["search", *FAST, "--tokens", "web=0,code=1e9,math=1e9,books=1e9"],
     "token count of domain 'web' is 0.0; give a finite number > 0 (a domain with no data cannot be trained "
     "on: drop it from the domains, or keep it out of the mixture with --fix web=0 and any count > 0)"),
    # caps that leave one mixture had said "lower --budget", after a warning
    (["search", *FAST, "--tokens", "web=4e9,code=1e9,math=3e8,books=1e8", "--max-epochs", "1"],
     "the ceilings (with the repetition caps, --max-epochs 1 × each domain's tokens / --target-tokens "
     "5.4e+09) add up to 1, which leaves a single mixture and nothing to search: raise --max-epochs"),
    (["search", *FAST, "--max-weight", "web=0.4,code=0.3,math=0.2,books=0.1"],
     "the ceilings add up to 1, which leaves a single mixture and nothing to search: raise a --max-weight"),
    # one free domain: a QA pass saw "holds only 1 mixtures … lower --budget"
    (["search", *FAST, "--fix", "web=0.1,code=0.2,math=0.3"],
     "only books is free (--fix web=0.1, code=0.2, math=0.3), so its weight is what the others leave and "
     "the space holds a single mixture: use that mixture as it is, or free another domain"),
    (["search", "--resume", "never-ran"], "no search named 'never-ran'"),
    (["search", "--resume", ""], "--resume needs a search's name"),  # had been taken as no --resume
    (["search", "--resume", "x", "--store", "nodir/none.sqlite"],
     "run store nodir/none.sqlite does not exist"),
    (["runs", "list", "--status", "weird"], "--status"),
    (["runs", "list", "--limit", "-3"], "--limit"),
    (["search", *FAST, "--method", "gp", "--kl", "0"], "--kl applies to the methods solved exactly"),
    (["search", *FAST, "--method", "loglinear", "--kl", "-1"], "must be ≥ 0"),
    (["runs", "list", "--store", "no-such-store.sqlite"], "run store no-such-store.sqlite does not exist"),
    (["report", "x", "--store", "no-such-store.sqlite"], "does not exist; check --store"),
    (["report", "never-ran"], "no search named 'never-ran'"),
])
def test_bad_input_is_one_line_and_exit_2(workspace, capsys, monkeypatch, args, message):
    monkeypatch.chdir(workspace)  # relative paths: in the test's folder
    assert run_cli(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and message in err[-1]
    assert not (workspace / "nodir").exists()  # a resume in a store that is not there had created it


@pytest.mark.parametrize(("fidelity", "message"), [
    ("foo=1", "--fidelity foo: the built-in proxy reads only tokens, max_epochs and threads"),
    ("tokens=abc", "--fidelity tokens=abc: a token count must be a number ≥ 1"),
    ("max_epochs=-1", "--fidelity max_epochs=-1: give a positive number"),
    ("threads=0", "fidelity threads is 0; give a positive integer"),
    # it had trained int(2500.5) tokens without a word
    ("tokens=2500.5", "--fidelity tokens=2500.5: the built-in proxy trains a whole number of tokens; give "
                      "e.g. tokens=2500"),
])
def test_the_proxys_fidelity_is_checked_before_ray_starts(tiny_workspace, capsys, fidelity, message):
    assert run_cli(["search", "--corpus", "tiny", "--fidelity", fidelity, "--name", "fid"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert RunStore().get_search("fid") is None


@pytest.mark.parametrize("rung", [["--rung", "nope"], ["--validate-rung", "nope"],
                                  ["--method", "entropy", "--rung", "nope"]])
def test_an_unknown_rung_leaves_no_search_folder_and_no_store(tiny_workspace, capsys, rung):
    assert run_cli(["search", "--corpus", "tiny", "--budget", "4", *rung]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "proxy rung 'nope' is unknown" in err[0], err
    assert not (tiny_workspace / "searches").exists() and not (tiny_workspace / "runs.sqlite").exists()


def test_resume_of_no_search_is_one_line_whatever_else_is_given(workspace, capsys):
    assert run_cli(["search", "--resume", "nosuch", "--corpus", "default"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: no search named 'nosuch'"), err


def test_a_cluster_that_is_not_there_is_one_line_before_any_plan(workspace, capsys, monkeypatch):
    from mixopt.search import driver

    monkeypatch.setattr(driver, "_ray_is_up", lambda: False)  # as in a fresh driver
    assert run_cli(["search", *FAST, "--budget", "2", "--address", "not a host"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --address not a host: Invalid address format"), err


def test_a_search_started_with_a_field_the_proxy_ignores_still_resumes(tiny_workspace, monkeypatch):
    """Fields the proxy does not read are refused since 2026-12-03; a search started before goes on."""
    from mixopt.errors import MixoptError
    from mixopt.proxy.evaluate import check_fidelity
    from mixopt.search.config import SearchConfig
    from mixopt.search.prepare import prepare

    cfg = SearchConfig(corpus="tiny", fidelity={"steps": 1000}, budget=4, validate=0)
    with pytest.raises(MixoptError, match="--fidelity steps: the built-in proxy reads only"):
        prepare(cfg)
    assert prepare(cfg, search_id="old").fidelity["steps"] == 1000  # as a resume prepares it
    with pytest.raises(MixoptError, match="--fidelity tokens='x'"):  # values are checked still
        check_fidelity({"tokens": "x"}, unknown_ok=True)
    monkeypatch.setenv("OMP_NUM_THREADS", "8,1")  # an OpenMP list, in the driver: not the workers' env
    check_fidelity({})


def test_a_store_named_by_mistake_is_refused_and_left_as_it_was(workspace, tmp_path, capsys):
    csv = tmp_path / "results.csv"
    csv.write_text("")  # SQLite had turned it into a 28 KB database
    assert run_cli(["runs", "list", "--store", str(csv)]) == 2
    assert "results.csv is empty, so no run store; check --store" in capsys.readouterr().err
    assert csv.read_bytes() == b""
    csv.write_text("run,loss\nr1,2.0\n")
    assert run_cli(["runs", "searches", "--store", str(csv)]) == 2
    assert "is not a SQLite file" in capsys.readouterr().err
    assert run_cli(["runs", "list", "--store", str(tmp_path)]) == 2
    assert f"run store {tmp_path} is a folder" in capsys.readouterr().err


def test_unwritable_output_is_refused_before_any_trial(workspace, tmp_path, capsys):
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    assert run_cli(["search", *FAST, "--out", str(blocker / "m.json"), "--name", "never"]) == 2
    assert "--out" in capsys.readouterr().err
    assert RunStore().get_search("never") is None and not (workspace / "searches" / "never").exists()
    assert run_cli(["search", *FAST, "--out", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err


@pytest.fixture(scope="module")
def ray_session():
    from mixopt.search.ray_env import ensure_ray

    return ensure_ray(num_cpus=2, dashboard=False)


def test_an_evaluator_returning_no_metrics_is_exit_2_and_writes_nothing(workspace, tmp_path, capsys,
                                                                          ray_session):
    out = tmp_path / "m.json"
    code = run_cli(["search", "--evaluator", "mixopt.testing:no_metrics", "--domains", "a,b,c",
                    "--budget", "4", "--validate", "0", "--out", str(out), "--name", "nm"])
    assert code == 2
    assert "returned no metrics" in capsys.readouterr().err.strip().splitlines()[-1]
    assert not out.exists()
    assert {r.status for r in RunStore().runs(search_id="nm")} == {"failed"}  # recorded, not lost


def test_a_ctrl_c_after_the_mixture_is_written_exits_0(workspace, tmp_path, capsys, monkeypatch, ray_session):
    """A CI run pressed Ctrl-C just after "written to": the search had finished and saved its mixture,
    yet it said "interrupted", exit 130 (a Ctrl-C before then still does)."""
    import mixopt.cli.search as cli_search

    def ctrl_c_while_printing(result):  # noqa: ANN001, ANN202
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_search, "render_result", ctrl_c_while_printing)
    out = tmp_path / "m.json"
    assert run_cli(["search", *FAST, "--budget", "6", "--validate", "0", "--method", "linear", "--out",
                    str(out)]) == 0
    assert out.is_file() and "interrupted" not in capsys.readouterr().err


def test_search_runs_list_report_through_the_cli(workspace, tmp_path, capsys, ray_session):
    out = tmp_path / "m.json"
    code = run_cli(["search", *FAST, "--tokens", "web=4e9,code=1e9,math=3e8,books=7e8", "--budget", "4",
                    "--validate", "1", "--out", str(out), "--name", "cli"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "warning: --budget 4: the search would fit 4 distinct mixtures, fewer than the" in captured.err
    assert "search cli" in captured.out and "uniform" in captured.out and "best_run" in captured.out
    # no terminal here, so progress comes as one plain line per finished run
    assert "swarm 4/4 · best swarm run " in captured.err and "validate 1/" in captured.err
    assert "best validate run " in captured.err  # the validation's own best, not the swarm's
    # RegMix's trees are flat on 4 runs: said once, as the search's note, not also as a warning
    assert "predicts the same value" not in captured.err
    assert "note: the regmix model predicts the same value" in " ".join(captured.out.split())
    assert json.loads(out.read_text())["schema"] == "mixopt.mixture/v1"

    assert run_cli(["runs", "list", "--search", "cli", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {r["role"] for r in listed} == {"swarm", "validate"} and all(r["status"] == "ok" for r in listed)
    # cut by --limit: said on stderr, the JSON left whole (a QA pass: a script read 50 as all)
    assert run_cli(["runs", "list", "--search", "cli", "--json", "--limit", "2"]) == 0
    said = capsys.readouterr()
    assert len(json.loads(said.out)) == 2 and f"the newest 2 of {len(listed)} runs (--limit 0" in said.err
    assert run_cli(["runs", "searches", "--json"]) == 0  # an evaluator's search has no corpus: null
    (row,) = json.loads(capsys.readouterr().out)
    assert row["corpus"] is None and row["evaluator"] == "mixopt.testing:loglinear"
    assert run_cli(["runs", "searches"]) == 0  # named in the table instead (a QA pass: "-" said nothing)
    assert "mixopt.testing:loglinear" in capsys.readouterr().out

    assert run_cli(["report", "cli", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    names = {p.rsplit("/", 1)[-1] for p in rep["files"]}
    assert {"weights.png", "runs.png", "report.md", "cv.png"} <= names

    # a finished search resumed is its stored result, nothing runs again; --out writes its mixture there
    n_runs = len(RunStore().runs(search_id="cli"))
    assert run_cli(["search", "--resume", "cli", "--json", "--out", str(tmp_path / "again.json")]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["search_id"] == "cli" and again["weights"] == json.loads(out.read_text())["weights"]
    assert again["runs"]["validation_restarted"] == 0
    assert json.loads((tmp_path / "again.json").read_text())["weights"] == again["weights"]
    assert len(RunStore().runs(search_id="cli")) == n_runs
    # options a resume cannot honour are named, not silently dropped
    assert run_cli(["search", "--resume", "cli", "--budget", "100", "--method", "gp", "--json"]) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert "--resume continues cli as it was started; ignoring --budget, --method" in err
    # the name is taken now
    assert run_cli(["search", *FAST, "--name", "cli"]) == 2
    assert "--resume cli" in capsys.readouterr().err


def test_method_help_names_every_method() -> None:
    from mixopt.cli.common import METHOD_HELP, SEARCH_METHOD_HELP
    from mixopt.methods import available_methods, get_method

    assert all(m in SEARCH_METHOD_HELP for m in available_methods())
    # fit's help names the methods fit takes: not the training-free ones, which need a corpus
    assert all((m in METHOD_HELP) != get_method(m).training_free for m in available_methods())


def test_runs_list_in_a_workspace_without_a_store_writes_nothing(workspace, capsys):
    assert run_cli(["runs", "list"]) == 0
    assert "0 runs: no run store at" in capsys.readouterr().out
    assert run_cli(["runs", "list", "--json"]) == 0 and json.loads(capsys.readouterr().out) == []
    assert run_cli(["runs", "list", "--search", "nope"]) == 2
    assert "no search named 'nope'" in capsys.readouterr().err
    assert not (workspace / "runs.sqlite").exists()


def test_fidelity_options_add_up_and_never_override_the_rung(workspace, capsys):
    from mixopt.errors import MixoptError
    from mixopt.search.config import SearchConfig, parse_fidelity

    assert parse_fidelity(["steps=5", "lr=1e-3,steps=5"]) == {"steps": 5, "lr": 0.001}
    # tokens is a count (5k as --tokens 5k); other keys keep their text (rung=1m names a rung)
    assert parse_fidelity("tokens=5k,rung=1m,size=2M") == {"tokens": 5000, "rung": "1m", "size": "2M"}
    assert parse_fidelity("tokens=2.5k") == {"tokens": 2500}
    assert parse_fidelity("tokens=1.5") == {"tokens": 1.5}  # a count ≥ 1, as a user's evaluator reads it
    # exact (decimal): 2.01M is the same key as 2010000, not 2009999.9999999998
    assert parse_fidelity("tokens=2.01M") == parse_fidelity("tokens=2010000") == {"tokens": 2010000}
    # a count for any evaluator: a user's own got -5000 from tokens=-5k
    for bad in ("infk", "-5k", "0", "nan", "lots", "0.5"):
        with pytest.raises(MixoptError, match=rf"--fidelity tokens={bad}: a token count must be a number ≥"):
            parse_fidelity(f"tokens={bad}")
    with pytest.raises(MixoptError, match=r"--fidelity tokens=-5000: a token count"):  # the library's way in
        SearchConfig(evaluator="mixopt.testing:loglinear", domains=("a", "b"), fidelity={"tokens": -5000})
    with pytest.raises(MixoptError, match=r"--fidelity gives steps twice \(5 and 6\); give it once"):
        parse_fidelity("steps=5,steps=6")
    with pytest.raises(MixoptError, match=r"--fidelity: 'rung=' is not of the form key=value"):
        parse_fidelity("rung=")  # a value left empty had been taken as ''
    assert run_cli(["search", *FAST, "--fidelity", "rung=big"]) == 2
    assert "a search's rung is --rung; give --rung big" in capsys.readouterr().err


def test_runs_searches_lists_every_search_and_the_miss_hint_says_when_it_is_cut(workspace, capsys):
    st = RunStore()
    for i in range(12):
        st.create_search(f"s{i:02d}", {"method": "regmix", "budget": 8, "corpus": None})
    st.update_search("s03", state="done", result={"exported": "proposal", "candidates": [
        {"name": "proposal", "exported": True, "predicted": 2.5, "measured": {"mean": 2.4567}}]})
    assert run_cli(["runs", "searches"]) == 0
    out = capsys.readouterr().out
    assert "12 searches in" in out and "s00" in out and "s11" in out and "2.4567" in out
    assert run_cli(["runs", "searches", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 12 and rows[3]["objective"] == 2.4567 and rows[0]["objective"] is None
    # a failed search says why, in the table's notes and the JSON
    st.update_search("s05", state="failed", result={"error": "a run store cannot take it"})
    assert run_cli(["runs", "searches"]) == 0
    assert "s05 failed: a run store cannot take it" in capsys.readouterr().out
    assert run_cli(["runs", "searches", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[5]["error"] == "a run store cannot take it" and rows[3]["error"] is None
    assert run_cli(["search", "--resume", "nosuch"]) == 2
    err = capsys.readouterr().err
    assert "the 10 newest of its 12 searches" in err and "mixopt runs searches" in err


def test_a_domain_shorter_than_a_window_is_refused_before_ray(workspace, tmp_path, capsys):
    """The sampler would refuse it inside the first trial (Ray up, a search recorded) and on every
    resume; the search says so up front, with the constraint that leaves the domain out."""
    import shutil
    from pathlib import Path

    from mixopt.errors import MixoptError
    from mixopt.search.config import SearchConfig
    from mixopt.search.prepare import prepare

    tiny = Path(__file__).parent / "data" / "tiny"
    src = tmp_path / "src"
    shutil.copytree(tiny / "code", src / "a")
    shutil.copytree(tiny / "legal", src / "b")
    (src / "one").mkdir()
    (src / "one" / "x.txt").write_text("just one small document here.\n")
    (src / "one" / "y.txt").write_text("another small document, different.\n")
    assert run_cli(["corpus", "add", "f1", "--from", str(src), "--vocab-size", "300",
                    "--val-documents", "1"]) == 0
    said = " ".join(capsys.readouterr().err.split())  # built, with a warning naming the domain
    assert "warning: domain(s) one (" in said and "shortest proxy rung (context + 1 = 129)" in said, said
    assert "(--fix one=0)" in said
    assert run_cli(["search", "--corpus", "f1", "--budget", "4", "--validate", "0", "--method", "random",
                    "--name", "f1s"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "domain(s) 'one' (" in err[0] and "--fix one=0" in err[0], err
    assert "context + 1 = 129" in err[0]
    assert RunStore().get_search("f1s") is None and not (workspace / "searches" / "f1s").exists()
    # the constraint it names is enough (here only checked, nothing is run); a ceiling of 0 too
    prepare(SearchConfig(corpus="f1", method="random", budget=4, validate=0, fix={"one": 0.0}, name="a"))
    prepare(SearchConfig(corpus="f1", method="random", budget=4, validate=0, max_weight={"one": 0.0},
                         name="b"))
    # only the rungs that train are checked: a training-free method without validation trains none
    prepare(SearchConfig(corpus="f1", method="entropy", validate=0, name="c"))
    with pytest.raises(MixoptError, match=r"one window of --validate-rung xs \(context \+ 1 = 129\).*or a "
                                          r"--validate-rung with a shorter context"):
        prepare(SearchConfig(corpus="f1", method="entropy", validate=2, name="d"))
    # a resume keeps its constraints: the advice is a new search
    with pytest.raises(MixoptError, match=r"this search cannot go on \(a resume keeps its constraints\): "
                                          r"start a new one with --fix one=0"):
        prepare(SearchConfig(corpus="f1", method="random", budget=4, validate=0), search_id="old")


def test_an_evaluator_that_ignores_the_mixture_is_named_not_asked_for_more_runs(workspace, tmp_path, capsys):
    out = tmp_path / "m.json"
    assert run_cli(["search", "--evaluator", "mixopt.testing:noop", "--domains", "a,b,c", "--budget", "4",
                    "--validate", "0", "--name", "flat", "--out", str(out)]) == 2
    err = [line for line in capsys.readouterr().err.strip().splitlines() if line.startswith("error:")]
    assert len(err) == 1 and "all 4 runs measured the same objective (1)" in err[0], err
    assert "do not depend on the mixture" in err[0] and "--no-reuse" in err[0]
    assert not out.exists()
    assert len(RunStore().runs(search_id="flat")) == 4  # kept, as every run is
    # flat to 9 digits is flat (a QA pass: losses 1 + 1e-12·w were fitted and a proposal exported)
    assert run_cli(["search", "--evaluator", "mixopt.testing:noop", "--domains", "a,b,c", "--budget", "4",
                    "--validate", "0", "--name", "tilted", "--fidelity", "tilt=1e-12",
                    "--out", str(out)]) == 2
    assert "all 4 runs measured the same objective (1)" in capsys.readouterr().err and not out.exists()


def test_domains_are_parsed_strictly_but_a_trailing_comma_is_harmless():
    from mixopt.errors import MixoptError
    from mixopt.search.config import parse_domains
    from mixopt.space import SearchSpace
    from mixopt.swarm import sample_swarm

    assert parse_domains("web, code,math,") == ("web", "code", "math")
    assert parse_domains(None) is None
    for bad, said in ((",web,code", "empty name"), ("", "--domains is empty"), (" , ", "--domains is empty")):
        with pytest.raises(MixoptError, match=said):
            parse_domains(bad)
    # a non-ASCII name under LANG=C (no UTF-8 mode) arrives as surrogates: said, not sent to Ray (a QA
    # pass: "cannot start or reach a local Ray")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "getfilesystemencoding", lambda: "ascii")
        with pytest.raises(MixoptError, match=r"--domains 'café,b': its non-ASCII characters could not "
                                              r"be read in this locale \(its encoding is ascii, not UTF-8\); "
                                              r"run under a UTF-8 locale \(export LANG=C.UTF-8\)"):
            parse_domains("caf\udcc3\udca9,b")
    # under a UTF-8 locale, the bytes themselves were not UTF-8 (a script saved as Latin-1: a review)
    with pytest.raises(MixoptError, match=r"--domains 'caf.,b' is not valid UTF-8 text \(its bytes were "
                                          r"written in another encoding\); give the names in UTF-8"):
        parse_domains("caf\udce9,b")
    from mixopt.search.config import parse_assignments
    with pytest.raises(MixoptError, match=r"--fix 'café=0.5' is not valid UTF-8 text"):
        parse_assignments("caf\udcc3\udca9=0.5", option="--fix")
    assert parse_domains("café,b") == ("café", "b")
    # fixed weights that, with the ceilings, leave one mixture are named as such
    space = SearchSpace(domains=("a", "b", "c"), fixed={"a": 0.5}, ceilings={"b": 0.3, "c": 0.2})
    with pytest.raises(MixoptError, match=r"the ceilings and the fixed weights \(--fix a=0.5\) add up to 1"):
        sample_swarm(space, 4, seed=0)


def test_the_search_says_where_what_its_trials_print_is_kept(workspace, tmp_path, monkeypatch, capsys,  # noqa: ANN001
                                                             ray_session):  # noqa: ANN001
    """A QA pass: what a user's evaluator (and its training job) printed reached neither the search's
    output nor any file the README named; Ray keeps it in its session's worker logs."""
    import uuid

    marker = f"training job says {uuid.uuid4().hex}"
    (tmp_path / "loud_eval.py").write_text(
        "from mixopt.testing import loglinear\n"
        "def evaluate(request):\n"
        f"    print({marker!r}, flush=True)\n"
        "    return loglinear(request)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert run_cli(["search", "--evaluator", "loud_eval:evaluate", "--domains", "a,b,c", "--budget", "4",
                    "--validate", "0", "--name", "loud"]) == 0
    err = capsys.readouterr().err
    logs = re.search(r"what the trials print: (\S+)/worker-\*\.out", err)
    assert logs is not None, err
    kept = pathlib.Path(logs.group(1)).glob("worker-*.out")
    assert any(marker in f.read_text(errors="replace") for f in kept)


def test_json_stdout_is_the_document_alone_and_failed_runs_exit_1(workspace, tmp_path, monkeypatch, capsys,
                                                                   ray_session):
    """A QA pass for scripts: what an evaluator module printed on import came before the JSON; a search
    whose runs all crashed exited 2, as a wrong option does."""
    (tmp_path / "chatty_eval.py").write_text('print("chatty: loading my config")\n'
                                             "from mixopt.testing import loglinear as evaluate\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert run_cli(["search", "--evaluator", "chatty_eval:evaluate", "--domains", "a,b,c,d", "--budget", "4",
                    "--validate", "0", "--name", "chatty", "--json"]) == 0
    said = capsys.readouterr()
    assert json.loads(said.out)["search_id"] == "chatty" and "chatty: loading my config" in said.err
    # progress on stderr, as the README says (a QA pass: --json had made a search silent while it ran)
    assert "swarm 4/4 · best" in said.err and "search chatty:" in said.err
    # and its warnings in the document as well (--budget 4 fits few mixtures: said)
    warned = json.loads(said.out)["warnings"]
    assert any(w.startswith("--budget 4: the search would fit 4 distinct mixtures") for w in warned), said.err
    code = run_cli(["search", "--evaluator", "mixopt.testing:failing", "--domains", "a,b,c", "--budget", "3",
                    "--validate", "0", "--retries", "0", "--name", "crashing", "--json"])
    said = capsys.readouterr()
    assert code == 1 and said.out == "" and "too few to fit" in said.err


def test_a_search_fits_a_users_own_regressor_named_as_module_class(workspace, tmp_path, monkeypatch,  # noqa: ANN001
                                                                  capsys, ray_session):  # noqa: ANN001
    """`search --method module:Class` fits the user's regressor (here one without return_std) and
    proposes with top-k; `report` from another folder, where it cannot be imported, keeps the rest."""
    (tmp_path / "myreg.py").write_text(
        "from sklearn.base import BaseEstimator, RegressorMixin\n"
        "from sklearn.linear_model import LinearRegression\n"
        "class Lin(RegressorMixin, BaseEstimator):\n"
        "    def fit(self, X, y):\n"
        "        self.m_ = LinearRegression().fit(X, y)\n"
        "        return self\n"
        "    def predict(self, X):\n"
        "        return self.m_.predict(X)\n")
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "m.json"
    assert run_cli(["search", "--evaluator", "mixopt.testing:loglinear", "--domains", "a,b,c", "--method",
                    "myreg:Lin", "--budget", "8", "--validate", "0", "--name", "own", "--out", str(out),
                    "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["method"] == "myreg:Lin"
    proposal = next(c for c in res["candidates"] if c["name"] == "proposal")
    assert proposal["predicted"] is not None and proposal.get("predicted_sd") is None
    assert json.loads(out.read_text())["method"] == "myreg:Lin"
    # reported from another folder, where the class cannot be imported: all but the cross-validation
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    monkeypatch.delitem(sys.modules, "myreg")
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(tmp_path)])
    assert run_cli(["report", "own"]) == 0
    said = " ".join(capsys.readouterr().out.split())
    assert "no cross-validation: cannot import method module 'myreg'" in said
    assert "report from the folder the search was started in" in said


SWARM = ["swarm", "--domains", "web,code,math", "--tokens", "web=1e9,code=2e8,math=5e7", "--max-epochs", "2",
         "--target-tokens", "1B", "--min-weight", "0.01"]  # a count as --tokens takes them (a QA pass)


def test_swarm_writes_the_table_a_search_would_train_and_fit_reads_it_back(workspace, tmp_path, capsys):
    """`mixopt swarm`: the swarm to train on one's own cluster, as a ratios table `fit` reads, and a
    data config per run; --extend draws more, numbered on, away from the first."""
    import numpy as np

    from mixopt.export import parse_export
    from mixopt.search.config import SearchConfig
    from mixopt.search.prepare import swarm_plan
    from mixopt.tables import read_ratios

    out, blends = tmp_path / "swarm.csv", tmp_path / "blends"
    # --budget as counts are written elsewhere (a QA pass: typer refused 1.2e1 as no integer)
    assert run_cli([*SWARM, "--budget", "1.2e1", "--seed", "3", "-o", str(out), "--exports", str(blends),
                    "--format", "megatron", "--prefix", "web=/data/web"]) == 0
    said = capsys.readouterr().err
    assert f"wrote 12 mixtures over 3 domains (seed 3) to {out}" in said and "mixopt fit --ratios" in said
    # the fit it suggests keeps to the swarm's space (a QA pass: without it a proposal went past a cap)
    assert ("--min-weight 0.01 --tokens web=1e9,code=2e8,math=5e7 --max-epochs 2 --target-tokens 1e9 "
            "--propose") in " ".join(said.split())
    ids, domains, W, key = read_ratios(out)
    assert key == "run" and ids == [f"mix-{i:04d}" for i in range(12)] and domains == ("web", "code", "math")
    space, planned, start, *_ = swarm_plan(SearchConfig(
        domains=domains, tokens={"web": 1e9, "code": 2e8, "math": 5e7}, max_epochs=2, target_tokens=1e9,
        min_weight=0.01, budget=12, seed=3))
    import polars as pl

    raw = pl.read_csv(out).select(domains).to_numpy()
    assert start == 0 and np.array_equal(raw, planned)  # written in full: the rows as drawn
    assert space.contains_rows(W, tol=1e-9).all() and (W[:, 2] <= 0.1 + 1e-9).all()  # math: 2 epochs of 5e7
    assert sorted(p.name for p in blends.iterdir()) == [f"mix-{i:04d}.txt" for i in range(12)]
    back = parse_export((blends / "mix-0004.txt").read_text(), "megatron", {"web": "/data/web"}, domains)
    assert back == pytest.approx(dict(zip(domains, W[4], strict=True)), abs=1e-12)

    # the user trains them and fits the losses, joined on the run names
    rng = np.random.default_rng(0)
    loss = 3 - W @ np.array([0.3, 0.5, 0.2]) + rng.normal(0, 0.01, len(W))
    metrics = tmp_path / "metrics.csv"
    metrics.write_text("run,loss\n" + "".join(f"{r},{float(v)!r}\n" for r, v in zip(ids, loss, strict=True)))
    assert run_cli(["fit", "--ratios", str(out), "--metrics", str(metrics), "--target", "loss", "--method",
                    "linear", "--propose", "--out", str(tmp_path / "mix.json")]) == 0

    more = tmp_path / "more.csv"
    assert run_cli([*SWARM, "--budget", "5", "--seed", "3", "--extend", str(out), "-o", str(more)]) == 0
    ids2, _, W2, _ = read_ratios(more)
    assert ids2 == [f"mix-{i:04d}" for i in range(12, 17)]
    assert np.abs(W2[:, None, :] - W[None, :, :]).sum(axis=2).min() > 1e-5  # none repeats a planned one
    # below a table in another column order, and without an index: its columns, in its order (a QA
    # pass: the rows came in --domains order, and appended as told, their weights were swapped)
    other = tmp_path / "my runs.csv"
    other.write_text("run,math,web,code\n" + "".join(
        f"r{i},{float(W[i, 2])!r},{float(W[i, 0])!r},{float(W[i, 1])!r}\n" for i in range(len(W))))
    capsys.readouterr()
    assert run_cli([*SWARM, "--budget", "3", "--seed", "4", "--extend", str(other), "-o", str(more)]) == 0
    assert f"(tail -n +2 {more} >> '{other}')" in " ".join(capsys.readouterr().err.split())
    new_rows = more.read_text().splitlines()
    assert new_rows[0] == "run,math,web,code"
    with other.open("a") as f:
        f.write("\n".join(new_rows[1:]) + "\n")
    ids3, found, W3, _ = read_ratios(other)
    drawn, _, W4, _ = read_ratios(more)
    assert found == ("math", "web", "code") and ids3[-3:] == drawn == ["mix-0012", "mix-0013", "mix-0014"]
    assert np.array_equal(W3[-3:], W4)
    # pandas' index, restarting at 0 for each frame pd.concat joined: the new rows are a frame of
    # their own, which the reader accepts (a QA pass: 7, 8 after 0…3, 0…2 was refused); a table
    # without a newline at its end gets one first
    frames, more2 = tmp_path / "frames.csv", tmp_path / "more2.csv"
    frames.write_text(",run,web,code,math\n0,a,0.2,0.3,0.5\n1,b,0.3,0.3,0.4\n0,c,0.1,0.6,0.3")
    assert run_cli([*SWARM, "--budget", "2", "--seed", "5", "--extend", str(frames), "-o", str(more2)]) == 0
    said = " ".join(capsys.readouterr().err.split())
    assert f"(echo >> {frames} && tail -n +2 {more2} >> {frames})" in said
    assert [line.split(",")[:2] for line in more2.read_text().splitlines()[1:]] == [["0", "mix-0003"],
                                                                                  ["1", "mix-0004"]]
    with frames.open("a") as f:
        f.write("\n" + "".join(more2.read_text().splitlines(keepends=True)[1:]))
    assert read_ratios(frames)[0] == ["a", "b", "c", "mix-0003", "mix-0004"]
    capsys.readouterr()
    assert run_cli([*SWARM, "--budget", "2"]) == 0  # no --out: the table on stdout
    printed = capsys.readouterr()
    assert printed.out.startswith("run,index,web,code,math\nmix-0000,0,") and "drew 2 mixtures" in printed.err


@pytest.mark.parametrize(("args", "message"), [
    (["swarm", "--budget", "3"], "give --corpus NAME, or --domains"),
    ([*SWARM, "--exports", "{tmp}/x"], "--exports and --format go together"),
    ([*SWARM, "--prefix", "web=/w"], "--prefix goes into --exports files"),
    ([*SWARM, "--exports", "{tmp}/full", "--format", "hf"], "is not an empty folder"),
    ([*SWARM, "--exports", "{tmp}/x", "--format", "parquet"], "--format 'parquet' is unknown"),
    ([*SWARM, "--extend", "{tmp}/other.csv"], "has the domains a, b, not this swarm's web, code, math"),
    (["swarm", "--domains", "web,index", "--budget", "2"], "domain 'index' has the name of a run table's id"),
    ([*SWARM, "--max-weight", "web=0.1,code=0.1"], "the upper bounds sum to 0.3 < 1"),  # the space's own
])
def test_swarm_refuses_bad_input_in_one_line_writing_nothing(args, message, workspace, tmp_path, capsys):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    (tmp_path / "other.csv").write_text("index,a,b\n0,0.5,0.5\n")
    out = tmp_path / "swarm.csv"
    assert run_cli([a.replace("{tmp}", str(tmp_path)) for a in args] + ["-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err
    assert not out.exists() and not (tmp_path / "x").exists() and (tmp_path / "full" / "keep.txt").exists()


def test_swarm_out_in_its_exports_folder_or_exports_unwritable_is_refused_before_the_draw(
        workspace, tmp_path, capsys):  # noqa: ANN001
    """A QA pass: -o equal to --exports published the files, then failed on the table and left them;
    an unwritable --exports was found after the draw, its notes printed, the option not named."""
    blends = tmp_path / "bl"
    for out in (blends, blends / "s.csv"):
        assert run_cli([*SWARM, "--budget", "4", "-o", str(out), "--exports", str(blends), "--format",
                        "hf"]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: --out {out} is ") and err.count("\n") == 1 and "written whole" in err
        assert not blends.exists() and list(tmp_path.iterdir()) == []
    assert run_cli([*SWARM, "--budget", "4", "-o", str(tmp_path / "s.csv"), "--exports", "/proc/bl",
                    "--format", "hf"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --exports /proc/bl: cannot write in /proc") and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_swarm_of_a_corpus_draws_over_its_domains(tiny_corpus, workspace, tmp_path):  # noqa: ANN001
    from mixopt.tables import read_ratios

    out = tmp_path / "s.csv"
    assert run_cli(["swarm", "--corpus", str(tiny_corpus.path), "--budget", "6", "-o", str(out)]) == 0
    ids, domains, W, _ = read_ratios(out)
    assert list(domains) == list(tiny_corpus.domains) and len(ids) == 6


def test_list_options_read_at_file(workspace, tmp_path, capsys):
    """300 domains with token counts are a file (a QA pass): --domains, --tokens, --fix and
    --max-weight take @FILE, one item per line or comma-separated; an unreadable one is one line."""
    from mixopt.errors import MixoptError
    from mixopt.search.config import SearchConfig, parse_assignments, parse_domains

    doms, toks = tmp_path / "doms.txt", tmp_path / "tok.txt"
    doms.write_text("# my domains\nweb\ncode, math\n\nbooks\n")  # a comment line is none (a QA pass)
    toks.write_text("web=1e9\ncode=2e8,math=5e7\nbooks=100M\n")
    assert parse_domains(f"@{doms}") == ("web", "code", "math", "books")
    bom = tmp_path / "bom.txt"
    bom.write_bytes("web\ncode\n".encode("utf-8-sig"))  # Windows Notepad's (the review)
    assert parse_domains(f"@{bom}") == ("web", "code")
    assert parse_assignments(f"@{toks}", option="--tokens", counts=True)["books"] == 1e8
    caps = tmp_path / "caps.txt"
    caps.write_text("web=0.5\n")
    assert run_cli(["swarm", "--domains", f"@{doms}", "--tokens", f"@{toks}", "--max-weight", f"@{caps}",
                    "--fix", "math=0.01", "--budget", "3"]) == 0
    assert capsys.readouterr().out.startswith("run,index,web,code,math,books\n")
    for bad, said in ((f"@{tmp_path / 'nope.txt'}", "cannot read"), ("@/dev/null", "is empty")):
        assert run_cli(["swarm", "--domains", bad, "--budget", "3"]) == 2
        assert said in capsys.readouterr().err
    # lines end at a newline only: U+2028 inside a name had split it in two, unchecked (a QA pass)
    sep = tmp_path / "sep.txt"
    sep.write_text("a\u2028b\nc\n", encoding="utf-8")
    with pytest.raises(MixoptError, match=r"domain name 'a\\u2028b' holds a control character"):
        SearchConfig(evaluator="mixopt.testing:loglinear", domains=parse_domains(f"@{sep}"))


def test_swarm_olmix_mix_files_carry_the_repetition_the_rows_need(workspace, tmp_path):
    """A QA pass: every olmix-mix file of a swarm said repetition_factor 1.0, under --max-epochs 2
    and for a row 13 passes over a domain."""
    import yaml

    from mixopt.tables import read_ratios

    out, files = tmp_path / "s.csv", tmp_path / "mix"
    assert run_cli([*SWARM, "--budget", "6", "-o", str(out), "--exports", str(files),
                    "--format", "olmix-mix"]) == 0
    _, domains, W, _ = read_ratios(out)
    tokens = {"web": 1e9, "code": 2e8, "math": 5e7}
    for i, row in enumerate(W):
        mix = yaml.safe_load((files / f"mix-{i:04d}.yaml").read_text())["mix"]
        for d, w in zip(domains, row, strict=True):
            assert mix[d]["repetition_factor"] >= max(2.0, w * 1e9 / tokens[d] - 0.01)
