"""`mixopt proxy train`, `mixopt proxy rungs` and `mixopt bench proxy` through the CLI."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mixopt.cli import run_cli
from mixopt.errors import MixoptError
from mixopt.proxy.rungs import DEBUG, load_rung


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = run_cli(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_train_prints_losses_and_writes_the_result(tiny_workspace: Path, capsys) -> None:  # noqa: ANN001
    out = tiny_workspace / "res" / "r.json"
    code, stdout, err = run(
        capsys,
        "proxy",
        "train",
        "--corpus",
        "tiny",
        "--rung",
        "debug",
        "--mixture",
        "natural",
        "--seed",
        "2",
        "--threads",
        "1",
        "--out",
        str(out),
    )
    assert code == 0, err
    rec = json.loads(out.read_text())
    assert rec["schema"] == "mixopt.proxy-run/v1" and rec["status"] == "ok" and rec["seed"] == 2
    assert rec["rung"]["name"] == "debug" and rec["mixture"]["method"] == "natural"
    assert len(rec["history"]) == len(DEBUG.eval_steps())
    for d in ("code", "docs", "drama", "legal"):
        assert d in stdout and f"loss/{d}" in rec["metrics"]
    assert f"{rec['metrics']['objective']:.4f}" in stdout
    assert not list(out.parent.glob(".*tmp"))  # atomic write left no temporary behind


def test_train_default_output_is_under_the_workspace(tiny_workspace: Path, capsys, tmp_path: Path) -> None:  # noqa: ANN001
    mix = tmp_path / "mix.json"
    mix.write_text(json.dumps({"schema": "mixopt.mixture/v1", "weights": {"code": 0.5, "legal": 0.5}}))
    code, _, err = run(
        capsys, "proxy", "train", "-c", "tiny", "-r", "debug", "-m", str(mix), "--threads", "1"
    )
    assert code == 0, err
    (written,) = (tiny_workspace / "runs" / "proxy").glob("tiny-debug-mix-seed0-*.json")
    assert json.loads(written.read_text())["mixture"]["weights"] == {"code": 0.5, "legal": 0.5}


def test_a_schedule_shows_its_mean_weights(tiny_workspace: Path, capsys, tmp_path: Path) -> None:  # noqa: ANN001
    """The sampler follows the phases, so the table shows their mean, not the top-level weights."""
    mix = tmp_path / "s.json"
    mix.write_text(json.dumps({
        "schema": "mixopt.mixture/v1", "weights": {"code": 0.5, "legal": 0.5, "drama": 0.0},
        "schedule": [{"until": 0.5, "weights": {"code": 0.5, "legal": 0.5}},
                     {"until": 1.0, "weights": {"code": 0.2, "legal": 0.3, "drama": 0.5}}]}))
    code, out, err = run(capsys, "proxy", "train", "-c", "tiny", "-r", "debug", "-m", str(mix), "-t", "1")
    assert code == 0, err
    assert "schedule" in out  # the weight column says it is the schedule's mean (its heading may wrap)
    rows = {line.split("│")[1].strip(): line.split("│")[2].strip() for line in out.splitlines()
            if line.count("│") > 3 and line.split("│")[1].strip() in ("code", "legal", "drama")}
    assert rows == {"code": "0.3500", "legal": "0.4000", "drama": "0.2500"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--mixture", "code=0.7,docs=0.7"], "sum to 1.4"),
        (["--mixture", "code=1.5,docs=-0.5"], "negative"),
        (["--mixture", "code=0.5,poetry=0.5"], "lacks: poetry"),
        (["--mixture", "code=abc"], "not a number"),
        (["--mixture", "missing.json"], "does not exist"),
        (["--mixture", "tilted"], "not 'natural', 'uniform'"),
        (["--rung", "xxl"], "proxy rung 'xxl' is unknown"),
        (["--corpus", "nope"], "corpus 'nope' is not built; there is no recipe of that name either"),
        (["--out", "."], "is a folder; give a file path such as "),  # before training, not after
    ],
)
def test_bad_input_exits_2_with_one_line(tiny_workspace: Path, capsys, args, message) -> None:  # noqa: ANN001
    base = {"--corpus": "tiny", "--rung": "debug", "--mixture": "uniform"}
    for k, v in zip(args[::2], args[1::2], strict=True):
        base[k] = v
    flat = [x for kv in base.items() for x in kv]
    code, _, err = run(capsys, "proxy", "train", *flat, "--threads", "1")
    assert code == 2
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert args[0] != "--out" or err.rstrip().endswith(" result.json")  # what proxy train writes
    assert not (tiny_workspace / "runs").exists()  # nothing written for a refused run


def test_out_over_the_mixture_or_rung_it_reads_is_refused_before_training(tiny_workspace: Path, capsys,  # noqa: ANN001
                                                                          tmp_path: Path) -> None:
    """A QA pass: --out equal to --mixture trained, then wrote the result JSON over the mixture."""
    mix = tmp_path / "m.json"
    mix.write_text(json.dumps({"schema": "mixopt.mixture/v1", "weights": {"code": 0.5, "docs": 0.5}}))
    rung = tmp_path / "r.toml"
    rung.write_text("n_layer = 1\nd_model = 32\nn_head = 2\ncontext = 32\nbatch = 8\ntokens = 4096\n"
                    "lr = 1e-3\nmin_lr = 0.0\ngrad_clip = 1.0\neval_tokens = 256\n")
    before = {p: p.read_text() for p in (mix, rung)}
    for option, path in (("--mixture", mix), ("--rung", rung)):
        code, _, err = run(capsys, "proxy", "train", "--corpus", "tiny", "--rung", str(rung), "--mixture",
                           str(mix), "--threads", "1", "--out", str(path))
        said = f"error: --out {path} is the {option} file this command reads; write to another path\n"
        assert code == 2 and err == said
    assert {p: p.read_text() for p in (mix, rung)} == before


def test_diverged_run_exits_1_and_still_writes_json(tiny_workspace: Path, capsys, tmp_path: Path) -> None:  # noqa: ANN001
    rung = tmp_path / "hot.toml"
    rung.write_text(
        "n_layer = 1\nd_model = 32\nn_head = 2\ncontext = 32\nbatch = 8\ntokens = 4096\n"
        "lr = 1e6\nmin_lr = 0.0\ngrad_clip = 0.0\neval_tokens = 256\n"
    )
    out = tmp_path / "hot.json"
    code, _, err = run(
        capsys,
        "proxy",
        "train",
        "-c",
        "tiny",
        "-r",
        str(rung),
        "-m",
        "uniform",
        "--threads",
        "1",
        "-o",
        str(out),
    )
    assert code == 1 and err.startswith("diverged: training loss became nan")
    assert json.loads(out.read_text())["status"] == "diverged"


def test_bad_rung_files_are_refused(tmp_path: Path) -> None:
    bad = tmp_path / "odd.toml"
    bad.write_text(
        "n_layer = 1\nd_model = 30\nn_head = 4\ncontext = 32\nbatch = 8\ntokens = 4096\nlr = 1e-3\n"
        "min_lr = 1e-4\n"
    )
    with pytest.raises(MixoptError, match="d_model 30 is not divisible by n_head 4"):
        load_rung(str(bad))
    bad.write_text(
        "n_layer = 1\nd_model = 32\nn_head = 2\ncontext = 32\nbatch = 8\ntokens = 4096\nlr = 1e-3\n"
        "min_lr = 1e-4\nlayers = 3\n"
    )
    with pytest.raises(MixoptError, match="unknown key"):
        load_rung(str(bad))


def test_the_ladder_has_the_three_sizes(capsys) -> None:  # noqa: ANN001
    sizes = {r: load_rung(r).non_embedding_params() for r in ("xs", "s", "m")}
    assert 0.05e6 < sizes["xs"] < 0.2e6 and 0.5e6 < sizes["s"] < 2e6 and 3e6 < sizes["m"] < 8e6
    for r in ("xs", "s", "m"):
        rung = load_rung(r)
        assert rung.cost_seconds > 0 and rung.cost_flops == pytest.approx(rung.train_flops(), rel=0.01)
        lrs = [rung.lr_at(s) for s in range(rung.steps)]
        assert max(lrs) == pytest.approx(rung.lr) and lrs[-1] == pytest.approx(rung.min_lr, rel=0.05)
    code, out, _ = run(capsys, "proxy", "rungs", "--json")
    assert code == 0
    assert [r["name"] for r in json.loads(out)] == ["xs", "s", "m"]


def test_a_toml_of_something_else_in_proxies_leaves_the_ladder_listed(tmp_path, monkeypatch, capsys) -> None:
    """A QA pass from an installed wheel: one bad file in ./proxies/ had made `proxy rungs` exit 2."""
    (tmp_path / "proxies").mkdir()
    (tmp_path / "proxies" / "http.toml").write_text("[http]\nport = 80\n")
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "proxy", "rungs", "--json")
    assert code == 0 and [r["name"] for r in json.loads(out)] == ["xs", "s", "m"]
    assert "warning: left out of the ladder: proxy rung 'http'" in " ".join(err.split())
    # the one ladder every caller reads (a corpus build's check of its domains had failed on it too)
    from mixopt.errors import MixoptWarning
    from mixopt.proxy.rungs import ladder

    with pytest.warns(MixoptWarning, match="left out of the ladder: proxy rung 'http'"):
        assert [r.name for r in ladder()] == ["xs", "s", "m"]


def test_bench_runs_on_synthetic_data(capsys) -> None:  # noqa: ANN001
    code, out, err = run(
        capsys, "bench", "proxy", "--rungs", "debug", "--threads", "1", "--seconds", "0.5", "--json"
    )
    assert code == 0, err
    (row,) = json.loads(out)
    assert row["data"] == "synthetic" and row["rung"] == "debug" and row["tokens_per_s"] > 0
    assert 0 < row["mfu_6n"] < row["mfu"] < 1.5 and row["peak_rss_mb"] > 0 and row["matmul_flops"] > 1e9


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(k) for k in out.split()]


def _running(pid: int) -> bool:  # a zombie (reaped by init later) no longer runs
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc").is_dir() or shutil.which("pgrep") is None, reason="needs /proc, pgrep")
def test_a_killed_bench_leaves_no_worker_training() -> None:
    """A harness that SIGKILLs `bench proxy` had left its worker training to the end of --seconds."""
    exe = Path(sys.executable).with_name("mixopt")
    if not exe.is_file():
        pytest.skip("no mixopt script beside this Python")
    proc = subprocess.Popen([str(exe), "bench", "proxy", "--rungs", "debug", "--threads", "1",
                             "--seconds", "300"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kids: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(kids) < 2:  # the pool's worker, the resource tracker
            time.sleep(0.5)
            kids = _children(proc.pid)
        assert kids, "bench proxy started no worker"
        time.sleep(3)  # into its measurement
        proc.kill()
        proc.wait()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(map(_running, kids)):
            time.sleep(0.5)
        assert not any(map(_running, kids))
    finally:
        proc.kill()
        for k in kids:
            with contextlib.suppress(OSError):
                os.kill(k, signal.SIGKILL)


def test_default_result_names_keep_an_inline_mixture_whole() -> None:
    from mixopt.proxy.job import default_out

    assert default_out("c", "xs", "code=0.5,math=0.5", 0).name.startswith("c-xs-code_0_5_math_0_5-seed0-")
    assert default_out("c", "xs", "/a/b/my.mix.json", 1).name.startswith("c-xs-my_mix-seed1-")
    # a long one keeps its digest: two long specs with the same first pairs get two names
    a, b = "code=0.25,docs=0.25,drama=0.25,legal=0.25", "code=0.25,docs=0.25,drama=0.2,legal=0.3"
    name_a, name_b = (default_out("c", "xs", s, 0).name.split("-seed0-")[0] for s in (a, b))
    assert name_a != name_b and re.fullmatch(r"c-xs-code_0_25_docs_0_25_and_2_more_[0-9a-f]{6}", name_a)
