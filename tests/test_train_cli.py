"""``mixopt train``, ``mixopt compare`` and ``mixopt bench moe`` through the CLI, bad input included."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

from mixopt.cli import run_cli
from mixopt.train.compare import critical_t, seeds_needed, verdict

DEBUG_TOML = """
n_layer = 1
d_model = 32
n_head = 2
context = 32
n_experts = 4
top_k = 2
expert_hidden = 16
batch = 8
tokens = 4096
lr = 3e-3
min_lr = 3e-4
eval_tokens = 256
eval_at = [1.0]
log_every = 4
"""


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = run_cli(argv)
    out, err = capsys.readouterr()
    return code, out, err


def _mixture(path: Path, weights: dict, **extra) -> Path:  # noqa: ANN003
    path.write_text(json.dumps({"schema": "mixopt.mixture/v1", "weights": weights, **extra}))
    return path


@pytest.fixture
def model_toml(tmp_path: Path) -> Path:
    p = tmp_path / "tiny-moe.toml"
    p.write_text(DEBUG_TOML)
    return p


def test_train_cli_reports_against_the_prediction(tiny_workspace: Path, model_toml: Path, capsys) -> None:  # noqa: ANN001
    mix = _mixture(
        tiny_workspace / "searched.json",
        {"code": 0.4, "docs": 0.2, "drama": 0.2, "legal": 0.2},
        objective={"kind": "mean_loss", "metric": "loss", "weights": {}},
        predicted={"mean": 3.5, "std": 0.1, "interval": [3.2, 3.8],
                   "per_domain": {"code": 4.4, "docs": 3.5, "drama": 3.6, "legal": 3.5}},
        measured={"mean": 3.6, "std": 0.05, "sem": 0.03, "n": 3, "rung": "xs"},
    )
    out = tiny_workspace / "run"
    code, stdout, err = run(
        [
            "train",
            "--mixture",
            str(mix),
            "--corpus",
            "tiny",
            "--model",
            str(model_toml),
            "--out",
            str(out),
            "--threads",
            "1",
        ],
        capsys,
    )
    assert code == 0, err
    assert "search predicted 3.5000" in stdout and "interval of a proxy run [3.2000, 3.8000]" in stdout
    # the per-domain predictions combine to 3.75, 2.5 sd from the objective's 3.5: the search's caveat
    flat = " ".join(stdout.split())  # rich wraps long lines
    assert "per-domain predictions combine to 3.7500, not its 3.5000, 2.5 sd apart" in flat
    assert "┃ predicted ┃" in stdout and "┃      loss ┃" in stdout  # the unit of the per-domain prediction
    assert "measured at proxy rung xs: 3.6000 ± 0.0300" in stdout and "max load violation" in stdout
    assert "train step " in err and " · val " in err  # no terminal here: a line per evaluation
    assert " left" not in err  # and one a minute between them (this run is shorter)
    res = json.loads((out / "result.json").read_text())
    assert res["report"]["predicted"] == 3.5 and res["report"]["final"] == pytest.approx(
        res["metrics"]["objective"]
    )
    # the interval is a proxy run's: shown, never a verdict on a larger model (a QA pass)
    assert res["report"]["interval"] == [3.2, 3.8] and "inside_interval" not in res["report"]
    # the same command again refuses to overwrite; --resume of a finished run just reports it
    code, _, err = run(
        ["train", "--mixture", str(mix), "--corpus", "tiny", "--model", str(model_toml), "--out", str(out)],
        capsys,
    )
    assert code == 2 and "holds a finished run; --resume prints its result" in err
    code, stdout, err = run(
        [
            "train",
            "--mixture",
            str(mix),
            "--corpus",
            "tiny",
            "--model",
            str(model_toml),
            "--out",
            str(out),
            "--resume",
            "--json",
        ],
        capsys,
    )
    assert code == 0 and json.loads(stdout)["metrics"] == res["metrics"]
    assert "the run had finished (" in err  # said, not a silent reprint
    load = json.loads(stdout)["expert_load"]  # the per-layer load figures reach scripts too
    assert load["maxvio"] == res["expert_load"]["maxvio"] and load["ceiling"] > 0
    assert load["per_domain"] == res["expert_load"]["summary"] and load["per_domain"]  # as the table has them


def test_diverged_training_exits_1_and_keeps_json_clean(tiny_workspace: Path, model_toml: Path,  # noqa: ANN001
                                                         tmp_path: Path, capsys) -> None:  # noqa: ANN001
    """Exit 1 when the loss blows up; the reason goes to stderr so --json's stdout parses."""
    toml = tmp_path / "div.toml"
    toml.write_text(DEBUG_TOML.replace("lr = 3e-3", "lr = 1e30").replace("min_lr = 3e-4", "min_lr = 0.0")
                    + "grad_clip = 0.0\n")
    code, out, err = run(["train", "--mixture", "uniform", "--corpus", "tiny", "--model", str(toml),
                          "--out", str(tmp_path / "run"), "--threads", "1", "--json"], capsys)
    assert code == 1 and "diverged" in err
    assert json.loads(out)["status"] == "diverged"
    assert "bias_rate" not in err
    code, out, err = run(["train", "--mixture", "code=0.5,docs=0.5", "--corpus", "tiny", "--model",
                          str(model_toml), "--out", str(tmp_path / "fine"), "--threads", "1", "--json"],
                         capsys)
    # the per-evaluation lines of a log, with --json too (a QA pass: it had said nothing while it ran)
    assert code == 0 and json.loads(out)["status"] == "ok" and re.search(r"train step \d+/\d+ · .* val", err)
    # and its warnings in the document, as fit's and search's are, besides stderr
    warned = json.loads(out)["warnings"]
    said = [w for w in warned if w.startswith("mixture 'code=0.5,docs=0.5' does not list drama, legal")]
    assert len(said) == 1 and said[0] in err and all(w in err for w in warned), warned
    # one that blows up after some steps has a routing to speak of; its advice is noise there
    toml.write_text(DEBUG_TOML.replace("lr = 3e-3", "lr = 1e6").replace("min_lr = 3e-4", "min_lr = 0.0")
                    + "grad_clip = 0.0\n")
    code, out, err = run(["train", "--mixture", "uniform", "--corpus", "tiny", "--model", str(toml),
                          "--out", str(tmp_path / "run6"), "--threads", "1", "--json"], capsys)
    assert code == 1 and "training loss became nan" in err and "bias_rate" not in err


@pytest.mark.parametrize(("device", "message"), [("tpu", "not a device name"), ("meta", "not supported")])
def test_unknown_device_exits_2(tiny_workspace: Path, model_toml: Path, device: str, message: str, capsys) -> None:  # noqa: ANN001, E501
    argv = ["train", "--mixture", "uniform", "--corpus", "tiny", "--model", str(model_toml),
            "--device", device]
    code, _, err = run(argv, capsys)
    assert code == 2 and message in err and "Traceback" not in err


def test_tokens_not_a_whole_number_of_steps_warns(tiny_workspace: Path, model_toml: Path, tmp_path: Path,  # noqa: ANN001
                                                   capsys) -> None:
    """--tokens 1000 at 256 tokens a step trains 3 steps (768 tokens), and says so."""
    code, out, err = run(["train", "--mixture", "uniform", "--corpus", "tiny", "--model", str(model_toml),
                          "--tokens", "1000", "--out", str(tmp_path / "run"), "--threads", "1", "--json"],
                         capsys)
    assert code == 0, err
    assert "1,000 tokens is not a whole number of steps of 256 tokens" in err and "768 tokens" in err
    assert json.loads(out)["tokens"] == 768


def test_cuda_ordinal_beyond_the_machine_is_refused(monkeypatch) -> None:  # noqa: ANN001
    """cuda:7 on a 1-GPU machine is refused by name, not left to fail inside torch's first allocation."""
    import torch

    from mixopt.errors import MixoptError
    from mixopt.train.device import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("cuda:0") == torch.device("cuda:0")
    assert resolve_device("cuda") == torch.device("cuda")
    with pytest.raises(MixoptError, match="has 1 CUDA device"):
        resolve_device("cuda:7")


def test_unwritable_out_is_refused_before_training(tiny_workspace: Path, model_toml: Path, tmp_path: Path,  # noqa: ANN001
                                                   monkeypatch, capsys) -> None:
    import mixopt.train.trainer as trainer

    def no_training(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("training started before the output was checked")

    monkeypatch.setattr(trainer, "MoELM", no_training)
    afile = tmp_path / "afile"
    afile.write_text("x")
    argv = ["train", "--mixture", "uniform", "--corpus", "tiny", "--model", str(model_toml), "--out"]
    code, _, err = run([*argv, str(afile)], capsys)
    assert code == 2 and "is a file; give a folder path" in err
    code, _, err = run([*argv, str(afile / "run")], capsys)
    assert code == 2 and "is a file, not a folder" in err
    code, _, err = run([*argv, str(afile), "--resume"], capsys)
    assert code == 2 and f"--resume: {afile} is a file; give the run's folder" in err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--threads", "100000"], "--threads is 100000, more than the"),  # torch's pool crashed past ~10k
        (["--out", ""], "--out is empty; give a folder"),  # not the current folder
        (["--corpus", "{corpus}/code"], "holds no built corpus (no manifest.json)"),  # a folder, not a name
        (["--out", "{corpus}"], "is not empty and holds no mixopt run; give a new or empty folder"),
    ],
)
@pytest.mark.parametrize("command", ["train", "compare"])
def test_bad_options_are_refused_before_any_folder(tiny_workspace: Path, model_toml: Path,  # noqa: ANN001
                                                   command: str, extra: list[str], message: str,
                                                   monkeypatch, capsys) -> None:
    from mixopt.corpus.shards import corpus_dir

    monkeypatch.chdir(tiny_workspace)
    rel = os.path.relpath(corpus_dir("tiny"), tiny_workspace)  # a relative path, as a user types it
    extra = [a.format(corpus=rel) for a in extra]
    argv = [command, *(["--mixture", "uniform"] if command == "train" else ["uniform", "natural"]),
            "--corpus", "tiny", "--model", str(model_toml), *extra]
    before = sorted(p.relative_to(tiny_workspace) for p in tiny_workspace.rglob("*"))
    code, _, err = run(argv, capsys)
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert sorted(p.relative_to(tiny_workspace) for p in tiny_workspace.rglob("*")) == before


def test_a_folder_of_someone_elses_files_is_refused_but_not_a_killed_writes_leftover(tmp_path: Path) -> None:
    from mixopt.errors import MixoptError
    from mixopt.train.checkpoint import refuse_foreign_folder

    (tmp_path / ".checkpoint.pt.x1y2.tmp").write_bytes(b"")  # a kill -9 during the first checkpoint
    refuse_foreign_folder(tmp_path, ours=False, writes="checkpoint.pt")
    refuse_foreign_folder(tmp_path / "new", ours=False, writes="checkpoint.pt")
    (tmp_path / "notes.txt").write_text("mine")
    refuse_foreign_folder(tmp_path, ours=True, writes="checkpoint.pt")
    with pytest.raises(MixoptError, match=r"is not empty and holds no mixopt run.*writes checkpoint.pt"):
        refuse_foreign_folder(tmp_path, ours=False, writes="checkpoint.pt")


def test_a_model_too_big_for_the_machine_is_refused_before_it_is_allocated(tiny_workspace: Path,  # noqa: ANN001
                                                                           capsys) -> None:
    huge = tiny_workspace / "huge.toml"
    huge.write_text(DEBUG_TOML.replace("d_model = 32", "d_model = 1000000000"))
    for argv in (["train", "--mixture", "uniform"], ["compare", "uniform", "natural"]):
        code, _, err = run([*argv, "--corpus", "tiny", "--model", str(huge)], capsys)
        assert code == 2 and "'huge' has" in err and "more than this machine's" in err, err
    assert not (tiny_workspace / "compare").exists() and not (tiny_workspace / "train").exists()


def test_ctrl_c_exits_130(tiny_workspace: Path, model_toml: Path, monkeypatch, capsys) -> None:  # noqa: ANN001
    import mixopt.train.trainer as trainer

    def interrupted(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "train", interrupted)
    argv = ["train", "--mixture", "uniform", "--corpus", "tiny", "--model", str(model_toml)]
    code, _, err = run(argv, capsys)
    # before any checkpoint, --resume would find none (a QA pass): both ways are said
    said = " ".join(err.split())
    assert code == 130 and ("interrupted; if a checkpoint was written, the same command with --resume goes "
                            "on from the last one, else the same command starts over") in said

    def stopped(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise trainer.RunStopped("stopped at step 3 of 10; its checkpoint is in runs/x", step=3, steps=10,
                                 checkpoint=Path("runs/x/checkpoint.pt"))

    monkeypatch.setattr(trainer, "train", stopped)
    code, _, err = run(argv, capsys)
    assert code == 130 and "in runs/x; the same command with --resume goes on" in " ".join(err.split())
    # --json: a wrapper reads where the run stopped on stdout (it had printed nothing)
    code, out, _ = run([*argv, "--json"], capsys)
    assert code == 130 and json.loads(out) == {"status": "stopped", "message": "stopped at step 3 of 10; its "
                                               "checkpoint is in runs/x", "steps": 3, "total_steps": 10,
                                               "checkpoint": "runs/x/checkpoint.pt"}


@pytest.mark.parametrize(
    ("weights", "extra", "message"),
    [
        ({"code": 0.5, "math": 0.3, "poems": 0.2}, {}, "lacks: math, poems"),
        (
            {"code": 1.0},
            {
                "schedule": [
                    {"until": 0.6, "weights": {"code": 1.0}},
                    {"until": 0.4, "weights": {"code": 1.0}},
                ]
            },
            "phase 2 ends at fraction 0.4, but fractions must increase",
        ),
    ],
)
def test_bad_mixtures_exit_2(tiny_workspace: Path, weights, extra, message, capsys) -> None:  # noqa: ANN001
    mix = _mixture(tiny_workspace / "bad.json", weights, **extra)
    code, _, err = run(["train", "--mixture", str(mix), "--corpus", "tiny", "--model", "moe-debug"], capsys)
    assert code == 2 and message in err and err.count("\n") == 1
    assert "bad.json" in err or "mixture bad " in err  # the file is named


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("d_model = 30\nn_head = 4", "not divisible by n_head"),
        ("top_k = 6", "top_k 6 is more than n_experts 4"),
        ("eval_at = 0.5", "eval_at = 0.5 must be a list of numbers"),
        ('eval_at = "half"', "eval_at = 'half' must be a list of numbers"),
        ('lr = "0.1"', "lr = '0.1' must be a number"),
        ('route_norm = "false"', "route_norm = 'false' must be true or false"),
        ("batch = 8.5", "batch = 8.5 must be an integer"),
        ("lr = -1.0", "bad.toml): train config: lr is -1.0"),  # the file holding it is named
    ],
)
def test_bad_model_configs_exit_2(tiny_workspace: Path, change: str, message: str, capsys) -> None:  # noqa: ANN001
    lines = [
        ln
        for ln in DEBUG_TOML.splitlines()
        if ln.split(" = ")[0] not in {c.split(" = ")[0] for c in change.splitlines()}
    ]
    bad = tiny_workspace / "bad.toml"
    bad.write_text("\n".join(lines) + "\n" + change + "\n")
    code, _, err = run(["train", "--mixture", "uniform", "--corpus", "tiny", "--model", str(bad)], capsys)
    assert code == 2 and message in err


def test_foreign_checkpoint_refused_through_cli(tiny_workspace: Path, model_toml: Path, capsys) -> None:  # noqa: ANN001
    out = tiny_workspace / "run"
    code, _, err = run(
        [
            "train",
            "--mixture",
            "uniform",
            "--corpus",
            "tiny",
            "--model",
            str(model_toml),
            "--out",
            str(out),
            "--threads",
            "1",
        ],
        capsys,
    )
    assert code == 0, err
    code, _, err = run(
        [
            "train",
            "--mixture",
            "natural",
            "--corpus",
            "tiny",
            "--model",
            str(model_toml),
            "--out",
            str(out),
            "--resume",
        ],
        capsys,
    )
    assert code == 2 and "belongs to another run (differs in mixture" in err


def test_compare_cli_tables_winner_and_png(tiny_workspace: Path, model_toml: Path, capsys) -> None:  # noqa: ANN001
    drama = _mixture(
        tiny_workspace / "drama-heavy.json", {"code": 0.05, "docs": 0.05, "drama": 0.85, "legal": 0.05}
    )
    out = tiny_workspace / "cmp"
    code, stdout, err = run(
        [
            "compare",
            str(drama),
            "uniform",
            "--corpus",
            "tiny",
            "--model",
            str(model_toml),
            "--seeds",
            "2",
            "--out",
            str(out),
            "--threads",
            "1",
            "--tokens",
            "4000",
        ],
        capsys,
    )
    assert code == 0, err
    assert "drama-heavy" in stdout and "uniform" in stdout and "±" in stdout
    assert "seed(s) — tiny-moe" in " ".join(stdout.split()) and str(model_toml) not in stdout
    assert err.count("is not a whole number of steps") == 1  # said once, not for each of the 4 runs
    assert "compare run 4/4: uniform, seed 1 · about" in err  # no terminal here: a line per run, time left
    assert "compare run 1/4: drama-heavy, seed 0\n" in err  # (none before a run has finished)
    data = json.loads((out / "compare.json").read_text())
    assert data["labels"] == ["drama-heavy", "uniform"] and len(data["values"]["uniform"]["drama"]) == 2
    assert data["metrics"][0] == "mean loss" and len(data["values"]["uniform"]["mean loss"]) == 2
    assert data["settings"]["corpus"]["name"] == "tiny" and data["settings"]["tokens"] == 4000
    assert data["settings"]["model"] == "tiny-moe" and data["settings"]["dense"] is False
    assert data["settings"]["tokens_trained"] == 3840
    assert set(data["seeds_needed"]) == {m for m, w in data["winners"].items() if w is None}
    assert ("no winner on the mean loss: " in stdout) == (data["winners"]["mean loss"] is None)
    assert (out / "compare.png").stat().st_size > 1000
    assert (out / "uniform" / "seed1" / "result.json").is_file()
    # a drama-heavy mixture is better on drama than uniform at the same budget
    assert data["mean"]["drama-heavy"]["drama"] < data["mean"]["uniform"]["drama"]
    # a second call reuses the finished runs (nothing retrained: same numbers)
    code, stdout2, _ = run(
        [
            "compare",
            str(drama),
            "uniform",
            "--corpus",
            "tiny",
            "--model",
            str(model_toml),
            "--seeds",
            "2",
            "--out",
            str(out),
            "--tokens",
            "4000",
            "--json",
        ],
        capsys,
    )
    assert code == 0 and json.loads(stdout2)["values"] == data["values"]
    # --target: the first row is that objective, from the same runs (nothing retrained)
    code, stdout3, err = run(["compare", str(drama), "uniform", "--corpus", "tiny", "--model",
                              str(model_toml), "--seeds", "2", "--out", str(out), "--tokens", "4000",
                              "--target", "drama=2,legal=1"], capsys)
    assert code == 0, err
    # its own finished runs are read back, not run again: no "compare run" line
    assert "compare run" not in err and "loss of drama=2, legal=1" in stdout3
    data3 = json.loads((out / "compare.json").read_text())
    assert data3["metrics"][0] == "loss of drama=2, legal=1" and data3["metrics"][1:] == data["metrics"][1:]
    assert data3["objective"] == {"kind": "weighted_loss", "metric": "loss",
                                  "weights": {"drama": 2.0, "legal": 1.0}, "row": "loss of drama=2, legal=1"}
    for lb in data3["labels"]:
        v = data["values"][lb]
        expect = [(2 * a + b) / 3 for a, b in zip(v["drama"], v["legal"], strict=True)]
        assert data3["values"][lb]["loss of drama=2, legal=1"] == pytest.approx(expect)
    assert "validation loss (nats/token), mean ± s.e." in " ".join(stdout3.split())
    # a bpb first row: the title names both units (the domains' rows stay losses)
    code, stdout4, err = run(["compare", str(drama), "uniform", "--corpus", "tiny", "--model",
                              str(model_toml), "--seeds", "2", "--out", str(out), "--tokens", "4000",
                              "--metric", "bpb"], capsys)
    assert code == 0, err
    assert "first row bits per byte, domains' loss in nats/token" in " ".join(stdout4.split())
    code, _, err = run(["compare", str(drama), "uniform", "--corpus", "tiny", "--model", str(model_toml),
                        "--out", str(out), "--target", "nosuch"], capsys)
    assert code == 2 and "--target names unknown domain(s) nosuch" in err
    code, _, err = run(["compare", "uniform", "--corpus", "tiny", "--model", str(model_toml)], capsys)
    assert code == 2 and "at least two mixtures" in err
    code, _, err = run(["compare", "uniform", "natural", "--corpus", "tiny", "--model", str(model_toml),
                        "--z", "inf"], capsys)
    assert code == 2 and "--z is inf; give a finite number" in err  # a bar no mixture could pass
    # The same folder with another budget: compare's own words (it has no --resume)
    code, _, err = run(["compare", str(drama), "uniform", "--corpus", "tiny", "--model", str(model_toml),
                        "--seeds", "2", "--out", str(out), "--tokens", "8192"], capsys)
    assert code == 2 and "holds a run of another comparison (it differs in training settings" in err
    assert "resume" not in err
    # A bad mixture is named; one given twice is refused.
    bad = tiny_workspace / "bad.json"
    bad.write_text(json.dumps({"weights": {"code": 0.6, "docs": 0.6}}))
    code, _, err = run(["compare", str(bad), "uniform", "--corpus", "tiny", "--model", str(model_toml)],
                       capsys)
    assert code == 2 and err.startswith(f"error: {bad} fails the mixture schema") and err.count(str(bad)) == 1
    code, _, err = run(["compare", "uniform", str(_mixture(tiny_workspace / "u.json", dict.fromkeys(
        ("code", "docs", "drama", "legal"), 0.25))), "--corpus", "tiny", "--model", str(model_toml)], capsys)
    assert code == 2 and "u.json is the same mixture as uniform: give each mixture once" in err


def test_the_objective_a_comparison_reads_from_its_mixtures() -> None:
    from mixopt.errors import MixoptError
    from mixopt.mixture import Mixture
    from mixopt.objective import Objective
    from mixopt.train.compare import comparison_objective, objective_row

    doms = ["code", "math", "prose"]
    w = {"code": 0.5, "math": 0.25, "prose": 0.25}

    def searched(weights: dict, metric: str = "loss") -> Mixture:
        return Mixture(w, meta={"objective": {"kind": "weighted", "metric": metric, "weights": weights}})

    cm = searched({"code": 1.0, "math": 1.0})
    plain = Mixture.uniform(doms)
    # the objective a search recorded; uniform/natural record none and do not vote
    obj, notes = comparison_objective([cm, plain], ["a.json", "uniform"], doms)
    assert objective_row(obj) == "loss of code, math" and notes == []
    assert comparison_objective([plain, plain], ["uniform", "natural"], doms) == (Objective(), [])
    # the same objective with weights on another scale is one objective
    same = searched({"code": 0.5, "math": 0.5})
    obj, notes = comparison_objective([cm, same], ["a.json", "b.json"], doms)
    assert objective_row(obj) == "loss of code, math" and notes == []
    # a table fit's objective (metrics-file columns) does not vote
    fit = Mixture(w, meta={"objective": {"kind": "metric", "metric": "loss", "weights": {},
                                         "columns": {"loss": 1.0}}})
    obj, notes = comparison_objective([fit, cm], ["fit.json", "a.json"], doms)
    assert obj.weights == {"code": 1.0, "math": 1.0} and notes == []
    other = searched({"code": 1.0})
    obj, notes = comparison_objective([cm, other], ["a.json", "b.json"], doms)
    assert objective_row(obj) == "mean loss"
    assert notes == ["the mixtures were searched for different objectives (a.json: loss of code, math; "
                     "b.json: loss of code); the first row is the mean loss: give --target to compare on one "
                     "of them"]
    # a recorded domain the corpus lacks: that file's objective is set aside, said by name
    lacking = searched({"code": 1.0, "maths": 1.0})
    obj, notes = comparison_objective([lacking, cm], ["h.json", "a.json"], doms)
    assert objective_row(obj) == "loss of code, math"
    assert notes == ["h.json was searched for domain(s) maths, which the corpus lacks: its objective is left "
                     "aside"]
    # --metric keeps the recorded domains, --target the recorded metric; an unknown --target is refused
    assert objective_row(comparison_objective([cm], ["a.json"], doms, metric="bpb")[0]) == "bpb of code, math"
    bpb = searched({"code": 1.0, "math": 1.0}, "bpb")
    assert objective_row(comparison_objective([bpb], ["a.json"], doms, "math")[0]) == "bpb of math"
    with pytest.raises(MixoptError, match=r"--target names unknown domain\(s\) maths"):
        comparison_objective([cm], ["a.json"], doms, "maths")


def test_verdict_needs_a_margin_beyond_the_error() -> None:
    clear = {"a": [1.0, 1.1, 0.9], "b": [1.5, 1.62, 1.41]}
    assert verdict(clear, 2.0)[0] == "a"
    noisy = {"a": [1.0, 1.5, 0.6], "b": [1.2, 1.1, 1.0]}
    assert verdict(noisy, 2.0)[0] is None
    assert verdict({"a": [1.0], "b": [2.0]}, 2.0) == (None, None)  # one seed: no error estimate
    # Student's t, not z: with 3 seeds a lead of 3 standard errors is not enough (t crit 4.5)...
    three = {"a": [1.0, 1.1, 0.9], "b": [1.3, 1.5, 1.1]}  # diffs 0.3, 0.4, 0.2: t = 5.2
    assert verdict(three, 2.0)[0] == "a"
    shaky = {"a": [1.0, 1.1, 0.9], "b": [1.2, 1.5, 1.0]}  # diffs 0.2, 0.4, 0.1: t = 2.6
    assert verdict(shaky, 2.0) == (None, pytest.approx(2.6458, abs=1e-3))
    assert critical_t(2.0, 3) == pytest.approx(4.53, abs=0.01)
    assert critical_t(2.0, 1000) == pytest.approx(2.0, abs=0.01)


def test_seeds_needed_gives_the_verdict_an_80_percent_chance_to_call_the_lead() -> None:
    """A QA pass: sized to clear the bar exactly, the figure gave a winner about half the time."""
    shaky = {"a": [1.0, 1.1, 0.9], "b": [1.2, 1.5, 1.0]}  # diffs 0.2, 0.4, 0.1: no winner with 3 seeds
    n = seeds_needed(shaky, 2.0)
    assert n is not None and n > 3
    diffs = np.array([0.2, 0.4, 0.1])
    mean, sd = diffs.mean(), diffs.std(ddof=1)
    rng = np.random.default_rng(0)

    def called(k: int, trials: int = 1500) -> float:  # how often k seeds of that true gap give a winner
        wins = 0
        for _ in range(trials):
            wins += verdict({"a": [0.0] * k, "b": list(rng.normal(mean, sd, k))}, 2.0)[0] == "a"
        return wins / trials

    assert 0.74 <= called(n) <= 0.9 and called(max(3, n // 2)) < 0.7
    # against three rivals as close, the chance is of beating all three (the review: 47% against four)
    rivals = {"a": [1.0, 1.1, 0.9], **{r: [1.2, 1.5, 1.0] for r in ("b", "c", "d")}}
    k = seeds_needed(rivals, 2.0)
    wins = 0
    for _ in range(1000):
        wins += verdict({"a": [0.0] * k, **{r: list(rng.normal(mean, sd, k)) for r in "bcd"}}, 2.0)[0] == "a"
    assert k > n and 0.7 <= wins / 1000 <= 0.9  # about 80%: the tests share the leader's runs
    # The closest rival decides; a clear winner needs no more seeds than it has.
    assert seeds_needed({**shaky, "c": [2.0, 2.1, 1.9]}, 2.0) == n
    # a lead 3 seeds called (t 5.2 > 4.5) would be called 80% of the time by 4 (shown only with no winner)
    assert seeds_needed({"a": [1.0, 1.1, 0.9], "b": [1.3, 1.5, 1.1]}, 2.0) == 4
    assert seeds_needed({"a": [1.0, 2.0], "b": [1.0, 2.0]}, 2.0) is None  # a tie
    assert seeds_needed({"a": [1.0], "b": [2.0]}, 2.0) is None  # one seed: no spread to go on
    assert seeds_needed({"a": [1.0, 1.0], "b": [1.5, 0.501]}, 2.0) is None  # beyond MAX_SEEDS_NEEDED


def test_bench_moe_cli_small_grid(tiny_workspace: Path, capsys) -> None:  # noqa: ANN001
    out = tiny_workspace / "bench.json"
    code, stdout, err = run(
        [
            "bench",
            "moe",
            "--experts",
            "4,8",
            "--top-k",
            "1,2",
            "--tokens",
            "256",
            "--d-model",
            "32",
            "--hidden",
            "16",
            "--rounds",
            "1",
            "--no-train",
            "--threads",
            "1",
            "--out",
            str(out),
        ],
        capsys,
    )
    assert code == 0, err
    assert "fused/dense" in stdout and "goal fused ≥ 1.5× naive at E=8" in stdout
    data = json.loads(out.read_text())
    assert len(data["layers"]) == 4 and all(r["vs_dense"] > 0 and r["vs_naive"] > 0 for r in data["layers"])
    code, _, err = run(["bench", "moe", "--device", "cuda", "--quick"], capsys)
    assert code == 2 and "no CUDA device" in err
    code, stdout, err = run(["bench", "moe", "--quick", "--triton"], capsys)  # Triton is timed on a GPU
    assert code == 2 and "fused/dense" not in stdout
    assert ("use --device cuda or drop --triton" in err) or ("--triton needs triton" in err)
    code, _, err = run(["bench", "moe", "--experts", "2", "--top-k", "4"], capsys)
    assert code == 2 and "grid is empty" in err
    code, stdout, err = run(["bench", "moe", "--quick", "--model", "foo"], capsys)  # before any layer
    assert code == 2 and "model 'foo' is unknown" in err and "fused/dense" not in stdout


@pytest.mark.parametrize("option", [["--tokens", str(2**62)], ["--d-model", str(2**40)],
                                    ["--hidden", str(2**40)]])
def test_bench_moe_sizes_beyond_memory_are_one_line(option: list[str], capsys, tmp_path: Path) -> None:  # noqa: ANN001
    """A QA pass: torch's allocation traceback and exit 1 (2**62 tokens overflowed its size sum)."""
    out = tmp_path / "b.json"
    code, stdout, err = run(["bench", "moe", "--no-train", "--no-naive", *option, "--out", str(out)], capsys)
    assert code == 2 and err.startswith("error: the case E=") and err.count("\n") == 1
    assert "lower --tokens, --d-model, --hidden or --experts" in err and not stdout and not out.exists()


def test_bench_moe_memory_check_counts_the_fp32_weights_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A review: the fp32 weights as made (freed by the cast to bf16) were counted on top of all the
    rest, which refused a bf16 case that fits: here 26.1 GiB said, 20.1 GiB held at most."""
    from mixopt.bench import moe as bench
    from mixopt.errors import MixoptError

    sizes = {"SC_PHYS_PAGES": 24 * 2**18, "SC_PAGE_SIZE": 2**12}  # a 24 GiB machine
    monkeypatch.setattr(os, "sysconf", lambda name: sizes[name])
    cases = bench.layer_cases(experts=(64,), top_k=(1,), tokens=(2**18,), d_model=4096, hidden=4096)
    bench.check_memory(cases, "cpu", "bf16")  # 6 GiB of bf16 weights, 14 of inputs and the dense reference
    with pytest.raises(MixoptError, match=r"needs at least 40.2 GiB, more than the 24.0 GiB of cpu"):
        bench.check_memory(cases, "cpu", "fp32")  # fp32: 12 GiB of weights and 28 of the rest
    small = bench.layer_cases(experts=(64,), top_k=(1,), tokens=(16,), d_model=4096, hidden=4096)
    assert bench.least_bytes(small[0], "bf16") == 12 * 64 * 4096 * 4096  # the fp32 weights as made


def test_compare_png_draws_points_not_bars_on_its_zoomed_axes(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Stop 44's walkthrough: bars on axes zoomed to the losses' spread (not starting at 0) overstated
    the gaps between mixtures; each panel had its own scale, unsaid."""
    from mixopt import plots
    from mixopt.train import compare as cmp_mod

    figs = []
    real = plots.save
    monkeypatch.setattr(plots, "save", lambda fig, path: (figs.append(fig), real(fig, path)))
    metrics = ["mean loss", "loss/a"]
    values = {lb: {m: [5.0 + i * 0.05 + j * 0.3 + s * 0.01 for s in range(3)] for j, m in enumerate(metrics)}
              for i, lb in enumerate(("m.json", "uniform", "natural"))}
    c = cmp_mod.Comparison(labels=list(values), metrics=metrics, seeds=[0, 1, 2], values=values,
                           winners={"mean loss": "m.json"}, margins={}, z=2.0, out=tmp_path)
    cmp_mod.plot(c, tmp_path / "compare.png")
    (fig,) = figs
    assert "each panel has its own scale" in fig._suptitle.get_text()
    for ax in fig.axes:
        assert not ax.patches  # no bars
        assert ax.get_ylim()[0] > 0  # zoomed: a bar's length here would mislead
        assert len(ax.containers) == 3  # one point ± s.e. per mixture


def test_bench_training_rows() -> None:
    from mixopt.bench.moe import bench_training

    rows = bench_training("moe-debug", steps=1, vocab_size=512)
    assert [r.name for r in rows] == ["moe-debug", "moe-debug dense twin"]
    assert all(r.tokens_per_s > 0 and 0 < r.mfu < 2 for r in rows)
    assert rows[0].params > rows[1].params


def test_keep_freed_memory_can_be_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from mixopt.train.memory import keep_freed_memory

    monkeypatch.setenv("MIXOPT_KEEP_FREED_MEMORY", "0")
    assert keep_freed_memory() is False
    monkeypatch.setenv("MIXOPT_KEEP_FREED_MEMORY", "1")
    assert keep_freed_memory() is sys.platform.startswith("linux")  # glibc on the Linux test machines


def test_an_updated_run_shows_the_updaters_last_weights(tiny_workspace: Path, model_toml: Path,  # noqa: ANN001
                                                        capsys) -> None:
    argv = ["train", "--mixture", "uniform", "--corpus", "tiny", "--model", str(model_toml), "--threads", "1",
            "--updater", "loss:every=2", "--out", str(tiny_workspace / "upd")]
    code, stdout, err = run(argv, capsys)
    assert code == 0, err
    assert "mixtu" in stdout and "updat" in stdout  # the updater's last weights, next to the mixture's


def test_a_wide_table_is_split_not_cut_in_a_narrow_terminal(monkeypatch, capsys):
    from rich.console import Console

    from mixopt.cli import common

    monkeypatch.setattr(common, "console", Console(width=80, force_terminal=False))
    cols = ["domain", "weight", "trained tokens", "share", "loss (nats/tok)", "bpb", "predicted", "Δ",
            "top expert share", "routing entropy"]
    rows = [[d, "0.2000", "1,234,567", "0.2001", "5.1234", "1.2345", "5.0012", "+0.1234", "0.412", "1.873"]
            for d in ("prose", "science_papers")]
    common.print_columns("title", cols, rows, left=("domain",))
    out = capsys.readouterr().out
    assert "…" not in out and "(continued)" in out
    assert max(len(line) for line in out.splitlines()) <= 80
    for cell in [*rows[1], *cols[1:]]:  # every cell and header whole, the row names in each table
        assert cell in out
    assert out.count("science_papers") == 2


def test_a_long_row_name_folds_so_that_no_figure_is_cut(monkeypatch, capsys):
    """A QA pass: a 70-character domain name in an 80-column log had cut every weight to "0.…"."""
    from rich.console import Console

    from mixopt.cli import common

    long = "HuggingFaceFW_fineweb-edu_sample-10BT_quality-filtered_dedup_minhash_v3_english"
    cols = ["domain", "★ proposed", "uniform", "best_run"]
    rows = [[d, "0.123456", "0.333333", "0.654321"] for d in ("web", long)]
    monkeypatch.setattr(common, "console", Console(width=12, force_terminal=False))
    common.print_columns("weights", cols, rows, left=("domain",))  # absurdly narrow: no error
    capsys.readouterr()
    for width in (80, 60, 40):
        monkeypatch.setattr(common, "console", Console(width=width, force_terminal=False))
        common.print_columns("weights", cols, rows, left=("domain",))
        out = capsys.readouterr().out
        assert "…" not in out and max(len(line) for line in out.splitlines()) <= width, out
        for cell in [*rows[1][1:], "domain", "proposed", "uniform", "best_run"]:
            assert cell in out, out
        names = "".join(line.split("│")[1].strip() for line in out.splitlines() if line.startswith("│"))
        assert long in names  # folded over lines, whole
    # a text column wider than the rest of the width (a licence) folds; the row names stay whole (the review)
    monkeypatch.setattr(common, "console", Console(width=80, force_terminal=False))
    lic = "Apache-2.0 WITH LLVM-exception OR MIT; see the NOTICE file shipped with the dataset for details"
    common.print_columns("corpus", ["domain", "tokens", "licence"], [["wikipedia", "1.00M", lic]],
                         left=("domain", "licence"))
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= 80 and out.count("wikipedia") == 2
    assert "…" not in out and "details" in out


def test_cells_are_plain_text_so_a_name_with_brackets_is_shown_as_it_is(monkeypatch, capsys):
    """A QA pass: a domain named ``y[/]`` crashed the search's closing table (rich read it as a closing
    tag) after the mixture was written, and ``[bold]x`` was shown as ``x``. A styled cell is a Text."""
    from rich.console import Console
    from rich.text import Text

    from mixopt.cli import common

    monkeypatch.setattr(common, "console", Console(width=80, force_terminal=False))
    rows = [["[bold]x", "0.5000"], ["y[/]", Text("0.2500", style="bold")], ["a\\[b]", "0.2500"]]
    common.print_columns("weights", ["domain", "weight"], rows, left=("domain",))
    out = capsys.readouterr().out
    assert "│ [bold]x " in out and "│ y[/] " in out and "│ a\\[b] " in out and "0.2500" in out


def test_a_long_table_is_printed_as_plain_aligned_columns(monkeypatch, capsys):
    """Past PLAIN_ROWS rows rich's layout takes about 1 ms a row (`runs list --limit 0` of 40,000 runs:
    44 s); such a table is printed as aligned text, cells whole, in the same column groups."""
    from rich.console import Console
    from rich.text import Text

    from mixopt.cli import common

    monkeypatch.setattr(common, "console", Console(width=80, force_terminal=False))
    monkeypatch.setattr(common, "PLAIN_ROWS", 2)
    rows = [["web", "0.5", "run [1]"], ["code_and_math", Text("0.25", style="bold"), "-"],
            ["数据", "0.25", ""]]
    common.print_columns("3 runs in /tmp/a[x]", ["run", "objective", "note"], rows, left=("run", "note"))
    assert capsys.readouterr().out.splitlines() == [  # the title as written; 数据 is four cells wide
        "3 runs in /tmp/a[x]",
        "run            objective  note",
        "─────────────  ─────────  ───────",
        "web                  0.5  run [1]",
        "code_and_math       0.25  -",
        "数据                0.25",
    ]
    monkeypatch.setattr(common, "PLAIN_ROWS", 2000)  # rich's table: the same title and headers, as written
    common.print_columns("3 runs in /tmp/a[x]", ["run [id]", "objective"], [r[:2] for r in rows])
    out = capsys.readouterr().out
    assert "3 runs in /tmp/a[x]" in out and "run [id]" in out


def test_a_log_file_gets_a_line_with_the_time_left_between_evaluations(tiny_workspace, model_toml, capsys,
                                                                     monkeypatch):  # noqa: ANN001
    import mixopt.cli.train as cli_train

    monkeypatch.setattr(cli_train, "PLAIN_EVERY_S", 0.0)
    code, _, err = run(["train", "--mixture", "uniform", "--corpus", "tiny", "--model", str(model_toml),
                        "--out", str(tiny_workspace / "eta"), "--threads", "1"], capsys)
    assert code == 0, err
    assert re.search(r"train step \d+/\d+ · loss \d\.\d{3} · about \d+ s left", err)



def test_a_collapsed_moe_layer_is_named_against_its_ceiling(capsys):  # noqa: ANN001
    from types import SimpleNamespace

    from mixopt.cli.train import _collapse, _render_load, load_figures

    lm = {"n_experts": 8, "top_k": 2, "balance": "bias", "bias_rate": 1e-3}
    res = SimpleNamespace(config={"lm": lm}, expert_load={"maxvio": [0.3, 2.75], "summary": {}},
                          log=[{"maxvio_layers": [0.1, 2.9], "maxvio_step_layers": [0.9, 2.95]}],
                          total_steps=195)
    fig = load_figures(res)
    assert fig == {"maxvio": [0.3, 2.75], "maxvio_last_window": [0.1, 2.9], "maxvio_per_step": [0.9, 2.95],
                   "ceiling": 3.0, "collapsed_layers": [1]}  # what --json prints
    _render_load(res, fig)
    out = " ".join(capsys.readouterr().out.split())
    err = _collapse(res, fig)
    assert ("3.00 = all tokens on 2 of 8 experts): per step, mean over the last log window 0.90, 2.95 "
            "(what the steps paid for); pooled over that window 0.10, 2.90; pooled over the whole run "
            "0.30, 2.75") in out
    assert err.startswith("MoE layer(s) 1 (from 0) still send most tokens to a few experts")
    assert "raise bias_rate" in err
    lm["balance"] = "none"
    assert 'set balance = "bias" or "aux"' in _collapse(res, fig)
    res.log = [{"maxvio_layers": [0.1, 0.4]}]  # balanced by the end: no warning, whatever the whole run was
    assert _collapse(res, load_figures(res)) is None


def test_a_schedule_is_shown_phase_by_phase(capsys):  # noqa: ANN001
    from mixopt.cli.train import _render_phases

    phases = [{"until": 0.25, "steps": [1, 8], "tokens": 100, "planned": {"code": 1.0, "math": 0.0},
               "trained": {"code": 1.0, "math": 0.0}},
              {"until": 1.0, "steps": [9, 32], "tokens": 300, "planned": {"code": 0.5, "math": 0.5},
               "trained": {"code": 0.47, "math": 0.53}}]
    _render_phases(phases)
    out = " ".join(capsys.readouterr().out.split())
    assert "steps 1–8 planned / trained" in out and "steps 9–32 planned / trained" in out
    assert "│ code │ 1.000 / 1.000 │ 0.500 / 0.470 │" in out
    assert "│ math │ 0.000 / 0.000 │ 0.500 / 0.530 │" in out


def test_a_schedule_run_shows_its_mean_weight_and_no_last_phase_as_the_updater_weight(capsys):  # noqa: ANN001
    from types import SimpleNamespace

    from mixopt.cli.train import _render_train

    phases = [{"until": 0.5, "steps": [1, 4], "tokens": 100, "planned": {"code": 1.0, "math": 0.0},
               "trained": {"code": 1.0, "math": 0.0}},
              {"until": 1.0, "steps": [5, 8], "tokens": 100, "planned": {"code": 0.0, "math": 1.0},
               "trained": {"code": 0.0, "math": 1.0}}]
    res = SimpleNamespace(
        config={"model": "moe-debug", "lm": {"dense": False}, "corpus": {"name": "tiny"}, "label": "sched",
                "updater": {"name": "schedule"}},
        tokens=200, tokens_per_s=1000.0,
        log=[{"step": 8, "loss": 3.0, "weights": {"code": 0.0, "math": 1.0}}],
        phases=phases, expert_load=None, domain_tokens={"code": 100, "math": 100}, out="runs/sched",
        report={"objective": "mean loss", "final": 3.0,
                "domains": [{"domain": "code", "weight": 0.5, "loss": 3.1}, {"domain": "math", "weight": 0.5,
                                                                            "loss": 2.9}]},
    )
    _render_train(res)
    out = capsys.readouterr().out
    assert "(schedule" in out and "mean)" in out and "updater" not in out  # headings wrap in cells
    assert "steps 5–8 planned / trained" in " ".join(out.split())
    # another updater overrides the schedule from its first update: its weights are shown, and said
    res.config["updater"], res.config["updater_every"] = {"name": "loss", "every": 4}, 4
    res.phases = [phases[0], {**phases[1], "steps": [5, 4], "tokens": 0}]  # and a phase with no step
    _render_train(res)
    out = " ".join(capsys.readouterr().out.split())
    assert "┃ (schedule ┃ updater ┃" in out and "│ math │ 0.5000 │ 1.0000 │ 100 │" in out
    assert "(the updater set the weights from step 4)" in out and "phase 2 (until 1): no step" in out
    # a custom updater whose params() leave out its step count: the run's config keeps it
    res.config["updater"], res.config["updater_every"] = {"name": "MyUpdater", "eta": 2.0}, 6
    _render_train(res)
    assert "(the updater set the weights from step 6)" in " ".join(capsys.readouterr().out.split())


def test_bench_moe_says_when_its_dense_reference_moved() -> None:
    """The same dense GEMM (T·K rows, D, F) at 41 and at 142 GFLOP/s in one run: the machine was
    busy, and the verdicts moved with it (a helper's run read 'met' at 19.8× from such a run)."""
    from mixopt.bench.moe import LayerCase, LayerResult, reference_spread

    def res(e: int, dense_gflops: float, k: int = 2) -> LayerResult:
        case = LayerCase(experts=e, top_k=k, tokens=4096, d_model=512, hidden=256)
        return LayerResult(case=case, fused_s=1.0, dense_s=case.flops / (dense_gflops * 1e9), naive_s=None)

    said = reference_spread([res(8, 41.4), res(64, 141.9), res(8, 90.0, k=8)])
    assert said is not None and said.startswith(
        "the dense GEMM ran 3.4× faster at E=64 than at E=8 on the same shape (k=2, 4,096 tokens: 141.9")
    assert reference_spread([res(8, 100.0), res(64, 120.0), res(8, 30.0, k=8)]) is None  # k=8: another shape


def test_bench_moe_gpu_goal_takes_the_faster_kernel_at_the_gpu_shape() -> None:
    """The 150 TFLOP/s goal is checked on bf16 GPU runs only, at the Qwen3-30B-A3B-like shape, on the
    faster of the fused and Triton paths; CPU runs keep the ratio goals alone."""
    from mixopt.bench.moe import GPU_SHAPE, LayerCase, LayerResult, goals

    width = {"d_model": GPU_SHAPE["d_model"], "hidden": GPU_SHAPE["hidden"], "tokens": 16384}
    gpu = LayerCase(experts=128, top_k=8, **width)
    other = LayerCase(experts=8, top_k=2, **width)

    def res(case: LayerCase, fused_tflops: float, triton_tflops: float | None) -> LayerResult:
        t = None if triton_tflops is None else case.flops / (triton_tflops * 1e12)
        return LayerResult(case=case, fused_s=case.flops / (fused_tflops * 1e12), dense_s=1.0, naive_s=None,
                           triton_s=t)

    key = "≥ 150 TFLOP/s at the Qwen3-30B-A3B-like shape"
    g = goals([res(gpu, 120.0, 160.0), res(other, 10.0, None)], gpu_bf16=True)
    assert g[key]["met"] and g[key]["flops"] == pytest.approx(160e12)  # the other shape does not count
    g = goals([res(gpu, 140.0, None)], gpu_bf16=True)
    assert not g[key]["met"] and g[key]["flops"] == pytest.approx(140e12)
    assert key not in goals([res(gpu, 400.0, None)])  # not a bf16 GPU run
    assert key not in goals([res(other, 400.0, None)], gpu_bf16=True)  # no case at the shape


def test_compare_checks_the_device_before_any_run_or_folder(tiny_workspace: Path, model_toml: Path,
                                                             capsys) -> None:  # noqa: ANN001
    out = tiny_workspace / "cmp-dev"
    code, stdout, err = run(["compare", "natural", "uniform", "--corpus", "tiny", "--model", str(model_toml),
                             "--seeds", "1", "--out", str(out), "--device", "tpu"], capsys)
    assert code == 2 and "--device 'tpu' is not a device name" in err
    assert "compare run" not in stdout + err and not out.exists()


def test_compare_into_a_folder_a_killed_comparison_left_goes_on(tiny_workspace: Path, model_toml: Path,  # noqa: ANN001
                                                                 monkeypatch) -> None:
    """A comparison killed before its first checkpoint leaves only an empty label/seedN folder: that
    is its own folder, not someone else's, so the same command goes on there."""
    import mixopt.train.compare as compare_mod
    from mixopt.errors import MixoptError

    def reached(**kw):  # noqa: ANN003, ANN202
        raise RuntimeError(f"training {kw['out']}")

    monkeypatch.setattr(compare_mod, "train", reached)
    out = tiny_workspace / "cmp-killed"
    (out / "uniform" / "seed0").mkdir(parents=True)
    with pytest.raises(RuntimeError, match="training .*cmp-killed/uniform/seed0"):
        compare_mod.compare(["uniform", "natural"], corpus="tiny", model=str(model_toml), seeds=1, out=out)
    (out / "uniform" / "seed0").rmdir()
    (out / "uniform").rmdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(MixoptError, match="is not empty and holds no mixopt run"):
        compare_mod.compare(["uniform", "natural"], corpus="tiny", model=str(model_toml), seeds=1, out=out)


def test_compare_reuses_runs_the_workspace_holds_finished(tiny_workspace: Path, model_toml: Path,  # noqa: ANN001
                                                          capsys) -> None:
    """A second comparison with a mixture of the first trains only what is new: the runs of the
    same mixture, model, budget, corpus, seed and device are read back (and `mixopt train`'s)."""
    drama = _mixture(tiny_workspace / "drama.json",
                     {"code": 0.05, "docs": 0.05, "drama": 0.85, "legal": 0.05})
    common = ["--corpus", "tiny", "--model", str(model_toml), "--seeds", "2", "--threads", "1", "--json"]
    code, first, err = run(["compare", str(drama), "uniform", *common], capsys)
    assert code == 0, err
    assert "reused" not in err
    first = json.loads(first)
    code, second, err = run(["compare", "natural", "uniform", *common], capsys)
    assert code == 0, err
    second = json.loads(second)
    assert err.count("reused, not trained again") == 2 and "compare run 2/2: natural, seed 1" in err
    assert "uniform" not in [line.split(": ")[1].split(",")[0] for line in err.splitlines()
                             if line.startswith("compare run")]
    assert second["runs"]["uniform"] == first["runs"]["uniform"]  # the first comparison's folders
    assert second["values"]["uniform"] == first["values"]["uniform"]
    # another budget is another run; so is --no-reuse
    code, third, err = run(["compare", "natural", "uniform", *common, "--tokens", "2048"], capsys)
    assert code == 0 and "reused" not in err and err.count("compare run") == 4
    # runs of another thread count are reused, and said: their last digits differ (a QA pass)
    code, _, err = run(["compare", "natural", "uniform", *common[:5], "1", "--threads", "2", "--json"],
                       capsys)
    said = " ".join(err.split())
    assert code == 0 and "compare run" not in err, err
    assert "compare: 2 reused run(s) trained on 1 thread(s), not the 2 of this comparison" in said
    code, _, err = run(["compare", "natural", "uniform", *common, "--no-reuse", "--out",
                        str(tiny_workspace / "fresh")], capsys)
    assert code == 0 and "reused" not in err and err.count("compare run") == 4
    # a run of `mixopt train` in its default folder counts too
    code, _, err = run(["train", "--mixture", str(drama), "--corpus", "tiny", "--model", str(model_toml),
                        "--seed", "2", "--threads", "1"], capsys)
    assert code == 0, err
    code, fourth, err = run(["compare", str(drama), "natural", *common[:5], "3", *common[6:]], capsys)
    assert code == 0, err
    fourth = json.loads(fourth)
    assert err.count("reused, not trained again") == 5 and "compare run 1/1: natural, seed 2" in err
    assert "/train/" in fourth["runs"]["drama"][2]


def test_compare_names_its_runs_by_absolute_path(tiny_workspace: Path, model_toml: Path, monkeypatch) -> None:
    """A QA pass: after a rerun of a comparison under a relative --out, the runs it read back were
    listed relative and the ones it trained absolute."""
    from mixopt.train.compare import compare

    monkeypatch.chdir(tiny_workspace)
    kw = dict(corpus="tiny", model=str(model_toml), seeds=1, threads=1, out="rel")
    first = compare(["code=0.5,docs=0.5", "uniform"], **kw)
    again = compare(["code=0.5,docs=0.5", "uniform"], **kw)
    assert again.runs == first.runs and all(Path(p).is_absolute() for ps in again.runs.values() for p in ps)


def test_compare_reads_back_runs_robustly(tiny_workspace: Path, model_toml: Path) -> None:  # noqa: ANN001
    """Where a finished run is found: its own folder without its checkpoint, a moved workspace, past
    a broken result.json; the same training written differently; another device is not it."""
    import shutil

    from mixopt.errors import MixoptError
    from mixopt.train.compare import compare
    from mixopt.train.trainer import train

    kw = dict(corpus="tiny", model=str(model_toml), seeds=1, threads=1)
    first = compare(["code=0.5,docs=0.5", "uniform"], **kw)
    uni = Path(first.runs["uniform"][0])
    (uni / "checkpoint.pt").unlink()  # to free disk: its result.json still says what it measured
    calls = []
    again = compare(["code=0.5,docs=0.5", "uniform"], **kw, on_run=lambda *a: calls.append(a))
    assert calls == [] and again.values == first.values
    # a moved workspace: the runs are named where they are now
    moved = first.out.parent / "moved"
    shutil.move(first.out, moved)
    seen = []
    third = compare(["natural", "uniform"], **kw, on_reuse=lambda lb, s, where: seen.append(where))
    assert seen == [moved / "uniform" / "seed0"]
    assert third.runs["uniform"] == [str(moved / "uniform" / "seed0")]
    # a result.json that is not a run's (null), or of another version (one key more), is passed over
    # for the next run found, not an error
    other_version = {**json.loads((moved / "uniform" / "seed0" / "result.json").read_text()), "extra": 1}
    odd_weights = {**other_version, "config": {**other_version["config"],
                                               "mixture": {"weights": {"code": "a lot"}, "schedule": []}}}
    for name, text in (("a", "null"), ("b", json.dumps(other_version)), ("c", json.dumps(odd_weights))):
        bad = tiny_workspace / "compare" / name / "uniform" / "seed0"
        bad.mkdir(parents=True)
        (bad / "result.json").write_text(text)
    seen.clear()
    compare(["code=0.25,docs=0.75", "uniform"], **kw, on_reuse=lambda lb, s, where: seen.append(where))
    assert seen == [moved / "uniform" / "seed0"]
    # the same training written otherwise: zero weights, a schedule of one phase
    seen.clear()
    quarters = {"code": 0.25, "docs": 0.25, "drama": 0.25, "legal": 0.25}
    one_phase = _mixture(tiny_workspace / "one.json", quarters,
                         schedule=[{"until": 1.0, "weights": quarters}])
    compare(["code=0.5,docs=0.5,drama=0,legal=0", str(one_phase)], **kw,
            on_reuse=lambda lb, s, where: seen.append(where))
    assert seen == [moved / "code_0.5_docs_0.5" / "seed0", moved / "uniform" / "seed0"]
    # a run is not resumed on another device (its numerics would mix, and its result name one);
    # cpu:0 is the CPU. A checkpoint made on a GPU is played here by rewriting its device.
    import torch

    out = tiny_workspace / "dev"
    train("uniform", "tiny", str(model_toml), seed=0, out=out, threads=1, until_step=1)
    train("uniform", "tiny", str(model_toml), seed=0, out=out, threads=1, until_step=2, resume=True,
          device="cpu:0")
    state = torch.load(out / "checkpoint.pt", weights_only=False)
    assert state["device"] == "cpu"
    state.pop("digest")  # by a version of the day, before checkpoints kept one
    torch.save({**state, "device": "cpu:0"}, out / "checkpoint.pt")  # as given
    train("uniform", "tiny", str(model_toml), seed=0, out=out, threads=1, until_step=3, resume=True)
    state = torch.load(out / "checkpoint.pt", weights_only=False)
    state.pop("digest")
    torch.save({**state, "device": "cuda"}, out / "checkpoint.pt")
    with pytest.raises(MixoptError, match=r"trained with --device cuda:0: resume it with --device cuda:0"):
        train("uniform", "tiny", str(model_toml), seed=0, out=out, threads=1, resume=True)


def test_the_updater_help_names_its_choices_plainly(monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    # It read "schedule follows the mixture JSON's schedule, as no updater does" (a walkthrough).
    monkeypatch.setenv("COLUMNS", "400")
    run_cli(["train", "--help"])
    text = " ".join(capsys.readouterr().out.replace("│", " ").split())
    assert "as no updater does" not in text
    assert "`schedule` (the mixture JSON's schedule, as without --updater)" in text
    assert "decay=0.5,epsilon=0.1" in text
