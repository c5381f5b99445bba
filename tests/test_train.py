"""The final trainer on the tiny corpus with the debug MoE: metrics, resume, schedules, updaters, refusals."""

from __future__ import annotations

import json
import math
import re
import shutil
import warnings
from dataclasses import replace
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch

from mixopt.corpus.shards import Corpus
from mixopt.errors import MixoptError, MixoptWarning
from mixopt.mixture import Mixture
from mixopt.train import checkpoint
from mixopt.train.config import DEBUG, TrainConfig
from mixopt.train.trainer import train
from mixopt.train.updater import LossReweighter, Observation, ScheduleUpdater, WeightUpdater

# One step per log record, so the shares of every step can be read back.
STEPWISE = replace(DEBUG, train=replace(DEBUG.train, log_every=1))


@pytest.fixture(scope="module")
def uniform_run(tiny_corpus, tmp_path_factory):  # noqa: ANN001, ANN201
    out = tmp_path_factory.mktemp("uniform") / "run"
    return train("uniform", tiny_corpus, DEBUG, seed=0, threads=1, out=out)


def test_run_reports_metrics_load_and_writes_result(tiny_corpus, uniform_run) -> None:  # noqa: ANN001
    res = uniform_run
    steps = DEBUG.train.steps(DEBUG.shape["context"])
    assert res.status == "ok" and res.steps == res.total_steps == steps
    for d in tiny_corpus.domains:
        loss = res.metrics[f"loss/{d}"]
        assert 0 < loss < math.log(tiny_corpus.vocab_size)
        assert res.metrics[f"bpb/{d}"] == pytest.approx(
            loss / math.log(2) / tiny_corpus.bytes_per_token(d, "val")
        )
    assert [h["step"] for h in res.history] == DEBUG.train.eval_steps(steps)
    assert res.history[-1]["objective"] < res.history[0]["objective"] < math.log(tiny_corpus.vocab_size)
    # expert load: every routed slot of every step is counted, per layer, domain and expert
    counts = np.asarray(res.expert_load["counts"])
    assert counts.shape == (1, 4, 4)
    assert counts.sum() == res.tokens * DEBUG.shape["top_k"]
    assert counts.sum(axis=(0, 2)).tolist() == [res.domain_tokens[d] * 2 for d in tiny_corpus.domains]
    assert all(v >= 0 for v in res.expert_load["maxvio"]) and "maxvio" in res.log[-1]
    # per step, one figure per MoE layer; a step's counts are fewer than the window's, so no more balanced
    last = res.log[-1]
    assert len(last["maxvio_step_layers"]) == len(last["maxvio_layers"]) == 1
    assert last["maxvio_step_layers"][0] >= last["maxvio_layers"][0] - 1e-9
    assert last["maxvio_step_layers"][0] == pytest.approx(last["maxvio"])  # one layer: the worst one
    assert set(res.expert_load["summary"]) == set(tiny_corpus.domains)
    window = res.log[-1]["expert_load"]  # per log window: each domain's busiest expert and entropy
    assert set(window) <= set(tiny_corpus.domains) and all(0 < v["top_share"] <= 1 for v in window.values())
    on_disk = json.loads((res.out / "result.json").read_text())
    assert on_disk["metrics"] == res.metrics and on_disk["status"] == "ok"
    assert (res.out / checkpoint.CHECKPOINT).is_file()


def test_resume_reproduces_the_uninterrupted_run(tiny_corpus, uniform_run, tmp_path: Path) -> None:  # noqa: ANN001
    out = tmp_path / "run"
    first = train("uniform", tiny_corpus, DEBUG, seed=0, threads=1, out=out, until_step=7)
    assert first.status == "stopped" and first.steps == 7
    import shutil

    shutil.copytree(out, tmp_path / "other")
    with pytest.warns(MixoptWarning, match="resuming with 2 threads where the run had 1.*--threads 1"):
        train("uniform", tiny_corpus, DEBUG, seed=0, threads=2, out=tmp_path / "other", resume=True)
    # a checkpoint made by other code (another revision, another torch) resumes, and says so
    shutil.copytree(out, tmp_path / "older")
    state = torch.load(tmp_path / "older" / checkpoint.CHECKPOINT, weights_only=False)
    assert state["made_by"]["versions"]["torch"] == torch.__version__
    state["made_by"] = {**state["made_by"], "revision": "v0.0.9-3-gabc", "versions": {
        **state["made_by"]["versions"], "torch": "2.12.0"}}
    torch.save(state, tmp_path / "older" / checkpoint.CHECKPOINT)
    with pytest.raises(MixoptError, match=r"is damaged: its contents differ from what was written"):
        train("uniform", tiny_corpus, DEBUG, seed=0, threads=1, out=tmp_path / "older", resume=True)
    del state["digest"]  # as an older mixopt wrote them
    torch.save(state, tmp_path / "older" / checkpoint.CHECKPOINT)
    with pytest.warns(MixoptWarning, match=r"made by other code \(.*torch 2\.12\.0, now .*\): it goes on"):
        train("uniform", tiny_corpus, DEBUG, seed=0, threads=1, out=tmp_path / "older", resume=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", MixoptWarning)  # the same threads: nothing to warn about
        second = train("uniform", tiny_corpus, DEBUG, seed=0, threads=1, out=out, resume=True)
    assert second.status == "ok"
    assert second.metrics == uniform_run.metrics
    with warnings.catch_warnings():  # a finished run trains nothing more: other threads change nothing
        warnings.simplefilter("error", MixoptWarning)
        done = train("uniform", tiny_corpus, DEBUG, seed=0, threads=2, out=out, resume=True)
    assert done.metrics == second.metrics
    assert [r["loss"] for r in second.log] == [r["loss"] for r in uniform_run.log]
    assert second.expert_load["counts"] == uniform_run.expert_load["counts"]
    a = torch.load(out / checkpoint.CHECKPOINT, weights_only=False)["model"]
    b = torch.load(uniform_run.out / checkpoint.CHECKPOINT, weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)  # balancing biases included
    assert any(k.endswith("expert_bias") and a[k].abs().sum() > 0 for k in a)


def test_a_dense_run_resumes(tiny_corpus, tmp_path: Path) -> None:  # noqa: ANN001
    """The dense twin has no expert load: its empty counts come back from the checkpoint as []."""
    whole = train("uniform", tiny_corpus, DEBUG, seed=0, threads=1, out=tmp_path / "whole", dense=True)
    out = tmp_path / "run"
    cut = train("uniform", tiny_corpus, DEBUG, seed=0, threads=1, out=out, until_step=5, dense=True)
    assert cut.steps == 5
    again = train("uniform", tiny_corpus, DEBUG, seed=0, threads=1, out=out, resume=True, dense=True)
    assert again.status == "ok" and again.metrics == whole.metrics
    done = train("uniform", tiny_corpus, DEBUG, seed=0, threads=1, out=out, resume=True, dense=True)
    assert done.metrics == whole.metrics  # a finished dense run resumed: its result again


def test_same_seed_same_run_and_dense_twin_trains(tiny_corpus, uniform_run, tmp_path: Path) -> None:  # noqa: ANN001
    again = train("uniform", tiny_corpus, DEBUG, seed=0, threads=1, out=tmp_path / "again")
    assert again.metrics == uniform_run.metrics
    dense = train("uniform", tiny_corpus, DEBUG, seed=0, threads=1, out=tmp_path / "dense", dense=True)
    assert dense.status == "ok" and dense.expert_load is None and dense.metrics != uniform_run.metrics
    assert dense.config["params"]["total"] < uniform_run.config["params"]["total"]


def test_schedule_changes_domain_shares_at_the_right_steps(tiny_corpus, tmp_path: Path) -> None:  # noqa: ANN001
    first = {"code": 0.0, "docs": 0.0, "drama": 1.0, "legal": 0.0}
    second = {"code": 0.5, "docs": 0.0, "drama": 0.0, "legal": 0.5}
    mix = Mixture(first, schedule=((0.25, first), (1.0, second)))
    res = train(mix, tiny_corpus, STEPWISE, seed=0, threads=1, out=tmp_path / "sched")
    steps = res.total_steps
    switch = math.ceil(0.25 * steps)  # step i draws with the weights at fraction i / steps
    for rec in res.log:
        i = rec["step"] - 1  # the record of the i-th step (0-based)
        if i < switch:
            assert rec["share/drama"] == 1.0, rec
        else:
            assert rec["share/drama"] == 0.0 and rec["share/docs"] == 0.0
            assert rec["share/code"] + rec["share/legal"] == 1.0
    late = sum(r["share/code"] for r in res.log if r["step"] > switch) / (steps - switch)
    assert 0.25 < late < 0.75  # half of the later sequences, give or take sampling noise
    # the result says so phase by phase: the steps of each, planned weights and shares trained
    p1, p2 = res.phases
    assert p1["steps"] == [1, switch] and p2["steps"] == [switch + 1, steps]
    assert p1["trained"]["drama"] == 1.0 and p1["planned"] == first and p2["planned"] == second
    assert p2["trained"]["drama"] == p2["trained"]["docs"] == 0.0
    assert p2["trained"]["code"] == pytest.approx(late, abs=0.1)
    assert p1["tokens"] + p2["tokens"] == res.tokens
    # --updater schedule plays the JSON's schedule: the same shares, and no warning that it overrides it
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*schedule is followed only until")
        again = train(mix, tiny_corpus, STEPWISE, seed=0, threads=1, out=tmp_path / "sched2",
                      updater="schedule:every=2")
    assert [r["share/drama"] for r in again.log] == [r["share/drama"] for r in res.log]


def test_a_schedule_phase_too_short_for_a_step_is_warned_of(tiny_corpus, tmp_path: Path) -> None:  # noqa: ANN001
    a = {"code": 1.0, "docs": 0.0, "drama": 0.0, "legal": 0.0}
    b = {"code": 0.0, "docs": 1.0, "drama": 0.0, "legal": 0.0}
    c = {"code": 0.0, "docs": 0.0, "drama": 0.5, "legal": 0.5}
    mix = Mixture(a, schedule=((0.001, a), (0.002, b), (1.0, c)))  # b would need a run of 1000 steps
    with pytest.warns(MixoptWarning, match=r"schedule phase\(s\) 2 \(until 0.002\) get no step of the run's"):
        res = train(mix, tiny_corpus, DEBUG, seed=0, threads=1, out=tmp_path / "short")
    assert res.phases[1]["tokens"] == 0 and res.phases[1]["steps"][0] > res.phases[1]["steps"][1]
    assert res.phases[0]["steps"] == [1, 1] and res.phases[2]["steps"][0] == 2


class Recorder(WeightUpdater):
    """Sees every observation; after the first, puts all weight on 'legal'."""

    name = "recorder"

    def __init__(self, every: int, wants_grads: bool) -> None:
        self.every, self.wants_grads = every, wants_grads
        self.seen: list[Observation] = []

    def update(self, obs: Observation) -> np.ndarray | None:
        self.seen.append(obs)
        return np.array([0.0, 0.0, 0.0, 1.0])


def test_updater_is_called_every_n_steps_and_its_weights_are_used(tiny_corpus, tmp_path: Path) -> None:  # noqa: ANN001
    rec = Recorder(every=5, wants_grads=True)
    res = train("uniform", tiny_corpus, STEPWISE, seed=0, threads=1, out=tmp_path / "upd", updater=rec)
    assert [o.step for o in rec.seen] == list(range(5, res.total_steps + 1, 5))
    first = rec.seen[0]
    assert first.weights.tolist() == [0.25] * 4 and first.tokens.sum() == 5 * 8 * 32
    assert np.all(np.isfinite(first.losses[first.tokens > 0]))
    n_params = sum(p.numel() for p in _model_like(res).parameters())
    assert list(first.grads) == list(tiny_corpus.domains)  # every domain, whatever the last batch held
    assert all(g.shape == (n_params,) and g.abs().sum() > 0 for g in first.grads.values())
    assert first.eval_losses is None and first.batch is None  # not asked for
    shares = [r["share/legal"] for r in res.log]
    assert all(s == 1.0 for s in shares[5:]) and any(s < 1.0 for s in shares[:5])
    assert res.log[-1]["weights"]["legal"] == 1.0
    assert res.config["updater_every"] == 5  # for the report, whatever params() records


class Prober(Recorder):
    """Asks for everything: gradients of the embedding only, held-out losses, the batch."""

    name = "prober"
    wants_eval = wants_batch = True
    grad_batch = 2

    def grad_param(self, name: str, param: torch.nn.Parameter) -> bool:
        return name == "embed.weight"

    def update(self, obs: Observation) -> np.ndarray | None:
        self.seen.append(obs)
        return None


def test_updater_probes_leave_training_as_it_was(tiny_corpus, uniform_run, tmp_path: Path) -> None:  # noqa: ANN001
    """Gradients on a probe batch of each domain (over the parameters the updater keeps), held-out
    losses and the step's batch with its per-sequence losses: none changes the training run."""
    probe = Prober(every=4, wants_grads=True)
    res = train("uniform", tiny_corpus, DEBUG, seed=0, threads=1, out=tmp_path / "probe", updater=probe)
    assert [r["loss"] for r in res.log] == [r["loss"] for r in uniform_run.log]  # the same run
    assert res.expert_load["counts"] == uniform_run.expert_load["counts"]  # probes route no counted load
    obs = probe.seen[0]
    n_embed = _model_like(res).embed.weight.numel()
    assert list(obs.grads) == list(tiny_corpus.domains)
    assert all(g.shape == (n_embed,) for g in obs.grads.values())
    assert obs.eval_losses.shape == (4,) and np.all(np.isfinite(obs.eval_losses) & (obs.eval_losses > 0))
    B = obs.batch.shape[0]
    assert obs.batch_domains.shape == (B,) and obs.seq_losses.shape == (B,) and np.all(obs.seq_losses > 0)


def _model_like(res):  # noqa: ANN001, ANN202
    from mixopt.train.config import LMConfig
    from mixopt.train.model import MoELM

    return MoELM(LMConfig(**res.config["lm"]))


def test_schedule_updater_and_loss_reweighter() -> None:
    sched = ScheduleUpdater([(0.5, {"a": 1.0, "b": 0.0}), (1.0, {"a": 0.2, "b": 0.8})], every=2)
    sched.start(["a", "b"], np.array([0.5, 0.5]), 10)
    obs = Observation(
        step=2,
        total_steps=10,
        domains=("a", "b"),
        weights=np.array([0.5, 0.5]),
        losses=np.array([1.0, 2.0]),
        tokens=np.array([10, 10]),
    )
    assert sched.update(obs).tolist() == [1.0, 0.0]
    assert sched.update(replace(obs, step=6)).tolist() == [0.2, 0.8]
    rw = LossReweighter(every=1, eta=1.0, decay=0.0, epsilon=0.0)
    rw.start(["a", "b", "c"], np.array([0.4, 0.4, 0.2]), 10)
    w = rw.update(
        Observation(
            step=1,
            total_steps=10,
            domains=("a", "b", "c"),
            weights=np.array([0.4, 0.4, 0.2]),
            losses=np.array([1.0, 3.0, np.nan]),
            tokens=np.array([5, 5, 0]),
        )
    )
    assert w[1] > 0.4 > w[0] and w.sum() == pytest.approx(1.0)
    state = rw.state_dict()
    other = LossReweighter(every=1, eta=1.0, decay=0.0, epsilon=0.0)
    other.start(["a", "b", "c"], np.array([0.4, 0.4, 0.2]), 10)
    other.load_state_dict(state)
    assert other._log_w.tolist() == rw._log_w.tolist()


def test_loss_reweighter_runs_in_training_and_resumes(tiny_corpus, tmp_path: Path) -> None:  # noqa: ANN001
    full = train(
        "uniform", tiny_corpus, STEPWISE, seed=0, threads=1, out=tmp_path / "a", updater="loss:every=4"
    )
    assert full.log[-1]["weights"] != full.log[0]["weights"]
    train(
        "uniform",
        tiny_corpus,
        STEPWISE,
        seed=0,
        threads=1,
        out=tmp_path / "b",
        updater="loss:every=4",
        until_step=10,
    )
    resumed = train(
        "uniform",
        tiny_corpus,
        STEPWISE,
        seed=0,
        threads=1,
        out=tmp_path / "b",
        updater="loss:every=4",
        resume=True,
    )
    assert resumed.metrics == full.metrics and resumed.log == _without_speed(resumed.log, full.log)


def test_an_updater_that_would_never_update_is_said(tiny_corpus, tmp_path: Path) -> None:  # noqa: ANN001
    """A QA pass: loss:every=2**70 was taken without a word, and the updater never ran."""
    with pytest.warns(MixoptWarning, match=r"updater loss updates every 1,180,591,620,717,411,303,424 steps "
                      r"and this run trains \d+: it never changes the weights; give every below"):
        res = train("uniform", tiny_corpus, STEPWISE, seed=0, threads=1, out=tmp_path / "a",
                    updater=f"loss:every={2**70}")
    assert res.log[-1]["weights"] == res.log[0]["weights"]


def _without_speed(a: list[dict], b: list[dict]) -> list[dict]:
    """``b`` with each record's tokens/s taken from ``a`` (wall-clock figures differ between runs)."""
    return [{**rb, "tokens_per_s": ra["tokens_per_s"]} for ra, rb in zip(a, b, strict=True)]


def test_refuses_unknown_domains_and_foreign_checkpoints(tiny_corpus, tmp_path: Path) -> None:  # noqa: ANN001
    with pytest.raises(MixoptError, match="lacks: math, poetry"):
        train(Mixture({"code": 0.5, "math": 0.25, "poetry": 0.25}), tiny_corpus, DEBUG, out=tmp_path / "x")
    out = tmp_path / "run"
    train("uniform", tiny_corpus, DEBUG, seed=0, threads=1, out=out, until_step=2)
    with pytest.raises(MixoptError, match="already holds a checkpoint"):
        train("uniform", tiny_corpus, DEBUG, seed=0, threads=1, out=out)
    with pytest.raises(MixoptError, match="differs in model config"):
        train("uniform", tiny_corpus, DEBUG, seed=0, threads=1, out=out, resume=True, dense=True)
    with pytest.raises(MixoptError, match="differs in seed"):
        train("uniform", tiny_corpus, DEBUG, seed=1, threads=1, out=out, resume=True)
    other = tmp_path / "other-corpus"  # the same files under another content hash
    shutil.copytree(tiny_corpus.path, other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["hash"] = "0" * 16
    (other / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(MixoptError, match="differs in corpus"):
        train("uniform", Corpus(other), DEBUG, seed=0, threads=1, out=out, resume=True)
    with pytest.raises(MixoptError, match="no checkpoint"):
        train("uniform", tiny_corpus, DEBUG, out=tmp_path / "empty" / "deep", resume=True)
    assert not (tmp_path / "empty").exists()  # a refused --resume makes no folder


def test_one_process_per_run_folder_and_what_a_resume_finds_there(tiny_corpus, uniform_run,  # noqa: ANN001
                                                                    tmp_path: Path) -> None:
    """A QA pass of `mixopt train`: two runs into one --out (or a --resume while the run still trained)
    both trained, each overwriting the other's checkpoint; a resume of a finished run rewrote its
    result.json's record of how it was made; a killed write's temporary file stayed; a changed
    --tokens was told to use a config file that --tokens overrides again."""
    from mixopt.search.lock import FolderBusy, folder_lock

    out = tmp_path / "run"
    train("uniform", tiny_corpus, DEBUG, seed=0, threads=1, out=out, until_step=2)
    with folder_lock(out, "held"):  # another process's hold (flock: per open folder, so one here too)
        with pytest.raises(FolderBusy, match=r"run folder .*run is in use by another training run"):
            train("uniform", tiny_corpus, DEBUG, seed=0, threads=1, out=out, resume=True)
        with pytest.raises(FolderBusy):  # not "pass --resume", which the lock would refuse in turn
            train("uniform", tiny_corpus, DEBUG, seed=0, threads=1, out=out)
        fresh = tmp_path / "fresh"
        fresh.mkdir()  # made by both at once (played: this call takes it for its own), locked by the other
        with folder_lock(fresh, "held"), pytest.raises(FolderBusy), \
                mock.patch("mixopt.train.trainer.first_missing", return_value=fresh):
            train("uniform", tiny_corpus, DEBUG, seed=0, threads=1, out=fresh)
        assert fresh.is_dir()  # the other process's folder: not removed as one this call made
    # a refused resume lets the folder go at once, though its error lives on (a library caller's retry)
    with pytest.raises(MixoptError, match=r"differs in seed: checkpoint 0, now 1\)") as refused:
        train("uniform", tiny_corpus, DEBUG, seed=1, threads=1, out=out, resume=True)
    retried = train("uniform", tiny_corpus, DEBUG, seed=0, threads=1, out=out, resume=True, until_step=3)
    assert retried.steps == 3 and refused.traceback is not None  # the error, still held, held no lock
    stale = out / f".{checkpoint.CHECKPOINT}.a1b2.tmp"
    stale.write_bytes(b"x" * 1000)
    done = train("uniform", tiny_corpus, DEBUG, seed=0, threads=1, out=out, resume=True)
    assert not stale.exists() and done.metrics == uniform_run.metrics
    written = (out / "result.json").read_bytes()
    stale.write_bytes(b"x" * 1000)
    again = train("uniform", tiny_corpus, DEBUG, seed=0, threads=2, out=out, resume=True)
    assert again.metrics == done.metrics and (out / "result.json").read_bytes() == written
    assert not stale.exists()  # a finished run's folder too
    # --tokens changed: the hint is the budget, not a config file that --tokens would override again
    budget = replace(DEBUG, train=replace(DEBUG.train, tokens=2 * DEBUG.train.tokens))
    with pytest.raises(MixoptError, match=rf"differs in training settings: train.tokens: [^;]*\); resume "
                                          rf"with --tokens {DEBUG.train.tokens}, the budget it was started "
                                          r"with, or train into another --out$"):
        train("uniform", tiny_corpus, budget, seed=0, threads=1, out=out, resume=True)
    assert not (out / "checkpoint-config").exists()
    # a checkpoint whose step lies outside the run (no digest: as an older mixopt wrote it)
    state = torch.load(out / checkpoint.CHECKPOINT, weights_only=False)
    del state["digest"]
    torch.save({**state, "step": 10**6}, out / checkpoint.CHECKPOINT)
    with pytest.raises(MixoptError, match=r"is at step 1000000, outside this run's 0–\d+: it is damaged"):
        train("uniform", tiny_corpus, DEBUG, seed=0, threads=1, out=out, resume=True)


def test_a_full_disk_at_a_checkpoint_says_to_resume(tiny_corpus, tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    """The CLI's "run the command again" was refused there: the folder holds the last checkpoint."""
    import errno

    from mixopt.errors import NoSpaceError

    out = tmp_path / "run"
    train("uniform", tiny_corpus, DEBUG, seed=0, threads=1, out=out, until_step=2)

    def full(folder, state):  # noqa: ANN001, ANN202
        raise OSError(errno.ENOSPC, "No space left on device", str(folder / checkpoint.CHECKPOINT))

    monkeypatch.setattr(checkpoint, "save", full)
    with pytest.raises(NoSpaceError, match=r"no space left to write the run's files .*: free some; the last "
                                           r"checkpoint is kept in .*run, and --resume again goes on"):
        train("uniform", tiny_corpus, DEBUG, seed=0, threads=1, out=out, resume=True)
    assert NoSpaceError.exit_code == 1


def test_a_run_whose_shipped_config_changed_resumes_with_the_config_it_was_made_with(
        tiny_corpus, tmp_path: Path) -> None:  # noqa: ANN001
    """An upgrade QA pass: moe-xs's bias step changed between versions, and a run started before
    could only be resumed by rebuilding the old TOML by hand."""
    out = tmp_path / "run"
    train("uniform", tiny_corpus, DEBUG, seed=0, threads=1, out=out, until_step=2)
    changed = replace(DEBUG, shape={**DEBUG.shape, "bias_rate": 0.05})  # the shipped file, updated
    made = out / "checkpoint-config" / "moe-debug.toml"
    with pytest.raises(MixoptError, match=rf"differs in model config: lm.bias_rate: .*if the model config "
                                          rf"changed since it started .* --model {re.escape(str(made))}"):
        train("uniform", tiny_corpus, changed, seed=0, threads=1, out=out, resume=True)
    res = train("uniform", tiny_corpus, str(made), seed=0, threads=1, out=out, resume=True)
    full = train("uniform", tiny_corpus, DEBUG, seed=0, threads=1, out=tmp_path / "full")
    assert res.metrics == full.metrics  # the file is the checkpoint's config: the run goes on as it was
    with pytest.raises(MixoptError, match="differs in model config") as no_file:  # --dense: no file helps
        train("uniform", tiny_corpus, DEBUG, seed=0, threads=1, out=tmp_path / "full", resume=True,
              dense=True)
    assert "--model" not in str(no_file.value)


def test_ctrl_c_checkpoints_at_the_step_end_and_resume_reproduces(tiny_corpus, uniform_run,  # noqa: ANN001
                                                                  tmp_path: Path) -> None:
    import os
    import signal

    out = tmp_path / "run"

    def interrupt(ev: dict) -> None:
        if ev.get("step") == 5 and "eval" not in ev:
            os.kill(os.getpid(), signal.SIGINT)  # arrives mid-run; the step under way finishes

    # A suite started in the background (`cmd &`) inherits SIGINT ignored, which train leaves alone
    # on purpose: this test sets Python's own handler, as an interactive shell gives it.
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt, match="stopped at step 5 of"):
            train("uniform", tiny_corpus, DEBUG, seed=0, threads=1, out=out, on_progress=interrupt,
                  checkpoint_every=0)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
    finally:
        signal.signal(signal.SIGINT, inherited)
    assert torch.load(out / checkpoint.CHECKPOINT, weights_only=False)["step"] == 5
    again = train("uniform", tiny_corpus, DEBUG, seed=0, threads=1, out=out, resume=True)
    assert again.metrics == uniform_run.metrics
    assert [r["loss"] for r in again.log] == [r["loss"] for r in uniform_run.log]
    assert [r["expert_load"] for r in again.log] == [r["expert_load"] for r in uniform_run.log]


def test_sigterm_checkpoints_at_the_step_end_as_ctrl_c_does(tiny_corpus, uniform_run,  # noqa: ANN001
                                                             tmp_path: Path) -> None:
    """A preemption (Slurm, Kubernetes: SIGTERM, then SIGKILL after a grace period) had killed the
    run where it stood, losing every step since the last checkpoint."""
    import os
    import signal

    out = tmp_path / "run"

    def preempt(ev: dict) -> None:
        if ev.get("step") == 5 and "eval" not in ev:
            os.kill(os.getpid(), signal.SIGTERM)

    inherited = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt, match="SIGTERM: stopped at step 5 of"):
        train("uniform", tiny_corpus, DEBUG, seed=0, threads=1, out=out, on_progress=preempt,
              checkpoint_every=0)
    assert signal.getsignal(signal.SIGTERM) is inherited  # restored
    # an ssh session dropped: the same stop. A suite run under nohup (CI) inherits SIGHUP ignored,
    # which train leaves alone on purpose: this sets the default, as an interactive shell gives it.
    hup = signal.signal(signal.SIGHUP, signal.SIG_DFL)
    try:
        with pytest.raises(KeyboardInterrupt, match="SIGHUP: stopped at step 5 of"):
            train("uniform", tiny_corpus, DEBUG, seed=0, threads=1, out=tmp_path / "hup",
                  on_progress=lambda ev: ev.get("step") == 5 and "eval" not in ev
                  and os.kill(os.getpid(), signal.SIGHUP), checkpoint_every=0)
        assert signal.getsignal(signal.SIGHUP) == signal.SIG_DFL
    finally:
        signal.signal(signal.SIGHUP, hup)
    assert torch.load(out / checkpoint.CHECKPOINT, weights_only=False)["step"] == 5
    again = train("uniform", tiny_corpus, DEBUG, seed=0, threads=1, out=out, resume=True)
    assert again.metrics == uniform_run.metrics


def test_checkpoints_every_n_steps_and_a_failing_updater_is_one_error(tiny_corpus, tmp_path: Path) -> None:  # noqa: ANN001
    seen = []

    def spy(ev: dict) -> None:
        if "eval" not in ev and (tmp_path / "every" / checkpoint.CHECKPOINT).is_file():
            seen.append(torch.load(tmp_path / "every" / checkpoint.CHECKPOINT, weights_only=False)["step"])

    res = train("uniform", tiny_corpus, DEBUG, seed=0, threads=1, out=tmp_path / "every", checkpoint_every=3,
                on_progress=spy)
    evals = set(DEBUG.train.eval_steps(res.total_steps))
    assert {s for s in seen if s not in evals} == {s for s in range(3, res.total_steps, 3) if s not in evals}

    class Broken(Recorder):
        def update(self, obs):  # noqa: ANN001, ANN201
            raise ZeroDivisionError("oops")

    with pytest.raises(MixoptError, match=r"updater recorder raised ZeroDivisionError at step 1: oops"):
        train("uniform", tiny_corpus, DEBUG, threads=1, out=tmp_path / "broken" / "deep", checkpoint_every=0,
              updater=Broken(every=1, wants_grads=False))
    assert not (tmp_path / "broken").exists()  # nothing was written: no folder left behind, parents included

    class Late(Recorder):
        broken = True

        def update(self, obs):  # noqa: ANN001, ANN201
            if obs.step >= 4 and self.broken:
                raise ZeroDivisionError("late")

    # Its checkpoint (step 2) is kept, as after a crash: fixed, the updater resumes from it.
    kept = r"ZeroDivisionError at step 4: late; the run's last checkpoint is kept in .*late: fix the cause"
    with pytest.raises(MixoptError, match=kept + " and --resume, or delete"):
        train("uniform", tiny_corpus, DEBUG, threads=1, out=tmp_path / "late", checkpoint_every=2,
              updater=Late(every=1, wants_grads=False))
    assert (tmp_path / "late" / checkpoint.CHECKPOINT).is_file()
    events: list[dict] = []
    Late.broken = False  # the bug fixed, the updater's settings unchanged
    res = train("uniform", tiny_corpus, DEBUG, threads=1, out=tmp_path / "late", checkpoint_every=2,
                updater=Late(every=1, wants_grads=False), resume=True, on_progress=events.append)
    assert res.status == "ok" and events[0]["resumed"] == 2


def test_bad_configs_are_refused() -> None:
    from mixopt.train.config import spec_from_dict

    base = dict(DEBUG.shape, batch=8, tokens=100_000, lr=1e-3, min_lr=1e-4)
    with pytest.raises(MixoptError, match="not divisible by n_head"):
        spec_from_dict("bad", {**base, "d_model": 30, "n_head": 4})
    with pytest.raises(MixoptError, match="top_k 5 is more than n_experts 4"):
        spec_from_dict("bad", {**base, "top_k": 5})
    with pytest.raises(MixoptError, match="unknown key"):
        spec_from_dict("bad", {**base, "n_expert": 4})
    with pytest.raises(MixoptError, match="less than one step"):
        spec_from_dict("bad", {**base, "tokens": 10})
    with pytest.raises(MixoptError):
        TrainConfig(batch=8, tokens=1000, lr=1e-3, min_lr=1e-2)


def test_shipped_model_configs_load() -> None:
    from mixopt.proxy.rungs import ladder
    from mixopt.train.config import available_models, load_model

    assert {"moe-xs", "moe-s", "moe-m"} <= set(available_models())
    assert "moe-debug" not in available_models()  # the test config loads by name, but is not offered
    for name in ("moe-xs", "moe-s", "moe-m"):
        cfg = load_model(name).lm_config(8192)
        p, twin = cfg.params(), cfg.twin().params()
        assert p["total"] > p["active"] and abs(twin["active"] - p["active"]) < 0.01 * p["active"]
    s = load_model("moe-s").lm_config(8192).params()
    biggest_rung = max(r.non_embedding_params() for r in ladder())
    assert s["total"] - s["embedding"] > biggest_rung  # bigger than every proxy


def test_model_config_carries_every_moe_option() -> None:
    """LMConfig's flat fields feed MoEConfig by name: a MoE option it lacked would be dropped silently."""
    from dataclasses import fields

    from mixopt.train.config import LMConfig
    from mixopt.train.moe import MoEConfig

    assert {f.name for f in fields(MoEConfig)} <= {f.name for f in fields(LMConfig)}
    cfg = LMConfig(vocab_size=64, n_layer=1, d_model=16, n_head=2, context=8, n_experts=4, top_k=2,
                   expert_hidden=8, balance="aux", z_coef=0.0, kernel="naive")
    moe = cfg.moe_config()
    assert (moe.balance, moe.z_coef, moe.kernel, moe.n_experts) == ("aux", 0.0, "naive", 4)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("loss:eta=abc", "eta='abc' must be a number"),
        ("loss:every=0", "every=0 must be a whole number of steps ≥ 1"),
        ("loss:every=inf", "every=inf must be a whole number"),
        ("schedule:every=2.5", "every=2.5 must be a whole number"),
        ("loss:eta=-1", "need eta ≥ 0"),
        ("loss:speed=2", "speed"),
        ("schedule:every=abc", "updater 'schedule'"),
        ("nope", "updater 'nope' is unknown"),
    ],
)
def test_bad_updater_specs_are_one_clear_error(spec: str, message: str) -> None:
    from mixopt.train.updater import make_updater

    with pytest.raises(MixoptError, match=re.escape(message)):
        make_updater(spec)


def test_an_updater_module_that_fails_to_import_is_one_clear_error(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    from mixopt.train.updater import make_updater

    (tmp_path / "upd_syntax.py").write_text("def make(:\n")
    (tmp_path / "upd_raises.py").write_text("raise RuntimeError('no GPU here')\n")
    monkeypatch.chdir(tmp_path)  # a user's module next to where the command runs
    with pytest.raises(MixoptError, match="cannot import updater module 'upd_syntax': SyntaxError"):
        make_updater("upd_syntax:make")
    with pytest.raises(MixoptError, match="module 'upd_raises': RuntimeError: no GPU here"):
        make_updater("upd_raises:make")
    with pytest.raises(MixoptError, match=re.escape("names a file; give a module name: from the folder that "
                                                    "holds it, --updater upd_syntax:make")):
        make_updater("./upd_syntax.py:make")
    with pytest.raises(MixoptError, match="updater module 'upd_ok' has no 'make'"):
        (tmp_path / "upd_ok.py").write_text("x = 1\n")
        make_updater("upd_ok:make")


def test_a_mixture_from_another_corpus_is_flagged(tiny_corpus, tmp_path: Path) -> None:  # noqa: ANN001
    from mixopt.errors import MixoptWarning
    from mixopt.train.trainer import resolve_mixture

    w = {d: 1 / len(tiny_corpus.domains) for d in tiny_corpus.domains}
    other = Mixture(w, meta={"provenance": {"corpus": "web", "corpus_hash": "f" * 64}})
    other = other.save(tmp_path / "o.json")
    with pytest.warns(MixoptWarning, match="was made on corpus 'web'"):
        resolve_mixture(str(other), tiny_corpus)
    same = Mixture(w, meta={"provenance": {"corpus": "tiny", "corpus_hash": tiny_corpus.hash}})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        resolve_mixture(str(same.save(tmp_path / "s.json")), tiny_corpus)
    # A mixture that lists only some domains trains the others at 0: said, not silent.
    first, *rest = tiny_corpus.domains
    part = Mixture({first: 1.0}).save(tmp_path / "p.json")
    with pytest.warns(MixoptWarning, match=f"p.json does not list {', '.join(rest)}: they are not trained"):
        resolve_mixture(str(part), tiny_corpus)


def test_report_sets_each_domain_against_its_prediction() -> None:
    from mixopt.train.prediction import prediction_report

    w = {"code": 0.5, "math": 0.5}
    metrics = {"loss/code": 4.0, "loss/math": 3.0, "bpb/code": 2.5, "bpb/math": 2.0, "objective": 3.5}
    loss = Mixture(w, meta={"predicted": {"mean": 3.4, "per_domain": {"code": 4.2, "math": 2.9}}})
    rep = prediction_report(loss, metrics, ["code", "math"])
    rows = {r["domain"]: r for r in rep["domains"]}
    assert rows["code"]["difference"] == pytest.approx(-0.2)
    assert rows["math"]["difference"] == pytest.approx(0.1)
    # The search's caveat is kept: its per-domain fits combine to 3.55, not its 3.4.
    assert rep["per_domain_split"] == {"combined": pytest.approx(3.55), "sd_apart": None}
    for agreeing in ({"mean": 3.55}, {"mean": 3.4, "std": 0.1}):  # equal; 1.5 sd apart
        meta = {"predicted": {**agreeing, "per_domain": {"code": 4.2, "math": 2.9}}}
        assert "per_domain_split" not in prediction_report(Mixture(w, meta=meta), metrics, ["code", "math"])
    per = {"code": 4.2, "math": 2.9}
    with_sd = Mixture(w, meta={"predicted": {"mean": 3.4, "std": 0.05, "per_domain": per}})
    split = prediction_report(with_sd, metrics, ["code", "math"])["per_domain_split"]
    assert split["sd_apart"] == pytest.approx(3.0)
    bpb = Mixture(w, meta={"predicted": {"mean": 2.2, "per_domain": {"code": 3.0, "math": 2.0},
                                         "per_domain_metric": "bpb"}})
    rep = prediction_report(bpb, metrics, ["code", "math"])
    rows = {r["domain"]: r for r in rep["domains"]}
    assert rows["code"]["difference"] == pytest.approx(-0.5)  # bpb against bpb, not against loss
    assert rep["per_domain_metric"] == "bpb"  # and the table's columns say so
    extra = {"code": 4.2, "math": 2.9, "bogus": 1.0}
    bogus = Mixture(w, meta={"predicted": {"mean": 3.4, "per_domain": extra}})
    with pytest.warns(MixoptWarning, match=r"predicted.per_domain names bogus, which the corpus lacks"):
        prediction_report(bogus, metrics, ["code", "math"])
    # A hand-written objective naming only its kind is measured in that kind's metric.
    kind_only = Mixture(w, meta={"objective": {"kind": "bpb"}, "predicted": {"mean": 3.0}})
    rep = prediction_report(kind_only, metrics, ["code", "math"])
    assert rep["objective"] == "mean_bpb" and rep["final"] == pytest.approx(2.25)
    assert rep["final_minus_predicted"] == pytest.approx(-0.75) and rep["note"] is None
    # One the trained model cannot measure (a fit's table column, perplexity) is not compared.
    for objective in ({"kind": "metric", "metric": "metric/pile_cc_val_loss"}, {"metric": "perplexity"}):
        rep = prediction_report(Mixture(w, meta={"objective": objective, "predicted": {"mean": 3.0},
                                                 "measured": {"mean": 3.1}}), metrics, ["code", "math"])
        assert rep["objective"] == "mean_loss" and rep["final"] == pytest.approx(3.5)
        assert rep["predicted"] is None and rep["proxy_measured"] is None and "not set against" in rep["note"]
    # A mixture searched on another build of the corpus: its prediction is of other data.
    other = Mixture(w, meta={"predicted": {"mean": 3.0}, "measured": {"mean": 3.1},
                             "provenance": {"corpus_hash": "a" * 64}})
    rep = prediction_report(other, metrics, ["code", "math"], corpus_hash="b" * 64)
    assert rep["predicted"] is None and rep["proxy_measured"] is None and "another build" in rep["note"]
    same = prediction_report(other, metrics, ["code", "math"], corpus_hash="a" * 64)
    assert same["predicted"] == 3.0 and same["note"] is None
    # One searched with a user's evaluator (or fitted on tables) had been set against the final
    # model as "measured at proxy rung xs": its figures are of other data and tokens.
    for prov, how in (({"corpus": None, "evaluator": "myeval:evaluate"}, "the evaluator myeval:evaluate"),
                      ({"corpus": "web", "corpus_hash": "b" * 64, "evaluator": "my:ev"}, "evaluator my:ev"),
                      ({"corpus": None, "tables": {}}, "fitted on run tables, not on a corpus")):
        mine = Mixture(w, meta={"predicted": {"mean": 3.0}, "measured": {"mean": 3.1, "rung": "xs"},
                                "provenance": prov})
        rep = prediction_report(mine, metrics, ["code", "math"], corpus_hash="b" * 64)
        assert rep["predicted"] is None and rep["proxy_measured"] is None
        assert how in rep["note"] and "not set against the final model" in rep["note"]
    ours = {"corpus": "web", "corpus_hash": "b" * 64, "evaluator": "proxy"}
    proxy = Mixture(w, meta={"predicted": {"mean": 3.0}, "provenance": ours})
    assert prediction_report(proxy, metrics, ["code", "math"], corpus_hash="b" * 64)["predicted"] == 3.0


def test_resume_finds_a_run_in_the_older_default_folder(tiny_corpus, tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    """Default folders name the corpus and budget since 2026-12-02; --resume without --out still
    finds a run started under the older name (the checkpoint's fingerprint still vets it)."""
    from mixopt.train.trainer import default_out, resolve_mixture

    monkeypatch.setenv("MIXOPT_HOME", str(tmp_path / "home"))
    mix, label = resolve_mixture("uniform", tiny_corpus)
    old = default_out(DEBUG, label, mix, 0, False, legacy=True)
    assert old != default_out(DEBUG, label, mix, 0, False, tiny_corpus)
    first = train("uniform", tiny_corpus, DEBUG, seed=0, threads=1, out=old)
    again = train("uniform", tiny_corpus, DEBUG, seed=0, threads=1, resume=True)
    assert again.out == old and again.metrics["objective"] == first.metrics["objective"]
    # a long inline mixture's run started under its label of before 2026-12-05 (cut at 40 characters)
    from mixopt.proxy.job import label_before

    spec = "code=0.25,docs=0.25,drama=0.25,legal=0.25"
    mix, label = resolve_mixture(spec, tiny_corpus)
    assert label_before(spec) == "code_0.25_docs_0.25_drama_0.25_legal_0.2" != label
    before = default_out(DEBUG, label_before(spec), mix, 0, False, tiny_corpus)
    first = train(spec, tiny_corpus, DEBUG, seed=0, threads=1, out=before, until_step=1)
    assert train(spec, tiny_corpus, DEBUG, seed=0, threads=1, resume=True).out == before
    # a relative --out is kept as the absolute folder, in the result and its result.json, on resume too
    monkeypatch.chdir(tmp_path)
    rel = train("uniform", tiny_corpus, DEBUG, seed=0, threads=1, out="rel")
    again = train("uniform", tiny_corpus, DEBUG, seed=0, threads=1, out="rel", resume=True)
    assert rel.out == again.out == tmp_path / "rel"
    assert json.loads((tmp_path / "rel" / "result.json").read_text())["out"] == str(tmp_path / "rel")


def test_an_updater_without_a_name_is_called_by_its_class() -> None:
    from mixopt.train.updater import WeightUpdater

    class Fixed(WeightUpdater):
        def update(self, obs):  # noqa: ANN001, ANN201
            return None

    class Named(Fixed):
        name = "mine"

    class Child(Named):
        pass

    class Sub(Fixed):  # unnamed under an unnamed parent: its own class's name (it had been "Fixed")
        pass

    assert Fixed().name == "Fixed" and Named().name == "mine" and Child().name == "mine"
    assert Sub().name == "Sub"
    # checkpoints record what they recorded before unnamed updaters got their class's name
    assert Fixed.fingerprint_name == "updater" and Named.fingerprint_name is None is Child.fingerprint_name
    assert Sub.fingerprint_name == "updater"


def test_an_updater_object_gets_the_checks_a_spec_gets() -> None:
    """From a library user's QA pass: train(updater=obj) took any object as it was; every=0 ended
    training with a ZeroDivisionError, every=2.5 called update at step 5, a duck-typed object failed
    on .strip()."""
    from mixopt.train.updater import WeightUpdater, make_updater

    class Flip(WeightUpdater):
        def update(self, obs):  # noqa: ANN001, ANN201
            return None

    ok = Flip()
    assert make_updater(ok) is ok
    for whole in (20.0, np.int64(20)):  # taken as the built-in updaters take them (a review)
        obj = Flip()
        obj.every = whole
        assert make_updater(obj).every == 20 and type(obj.every) is int
    for every in (0, 2.5, -1, True):
        bad = Flip()
        bad.every = every
        with pytest.raises(MixoptError, match=re.escape(f"updater 'Flip': every={every!r} must be a whole")):
            make_updater(bad)

    class Duck:
        every = 5

        def update(self, obs):  # noqa: ANN001, ANN202
            return None

    with pytest.raises(MixoptError, match="the updater is a Duck; give a WeightUpdater"):
        make_updater(Duck())  # type: ignore[arg-type]


def test_a_run_with_an_updater_gets_its_own_default_folder(tiny_corpus, tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    # the same mixture with and without an updater are two runs: the second is not sent to --resume
    # the first (which then refused it as another run)
    monkeypatch.setenv("MIXOPT_HOME", str(tmp_path / "home"))
    plain = train("uniform", tiny_corpus, DEBUG, seed=0, threads=1)
    upd = train("uniform", tiny_corpus, DEBUG, seed=0, threads=1, updater="loss:every=2")
    other = train("uniform", tiny_corpus, DEBUG, seed=0, threads=1, updater="loss:every=3")
    assert len({plain.out, upd.out, other.out}) == 3
    again = train("uniform", tiny_corpus, DEBUG, seed=0, threads=1, updater="loss:every=2", resume=True)
    assert again.out == upd.out


def test_a_mixture_written_out_as_weights(tiny_corpus, tmp_path: Path) -> None:  # noqa: ANN001
    """``-m code=0.5,docs=0.5`` (the --fix syntax) trains without a JSON file; a QA pass had been refused."""
    from mixopt.errors import MixoptWarning
    from mixopt.train.trainer import resolve_mixture

    first, second, *rest = tiny_corpus.domains
    text = f"{first}=0.25, {second}=0.75"
    with pytest.warns(MixoptWarning, match=f"does not list {', '.join(rest)}: they are not trained"):
        mix, label = resolve_mixture(text, tiny_corpus)
    assert mix.weights == {first: 0.25, second: 0.75} and mix.meta["method"] == "inline"
    assert label == f"{first}_0.25_{second}_0.75"  # a folder name: no '=' or ','
    # a long one keeps whole pairs (cut at 40 characters, legal=0.25 had read 0.2) and a digest
    from mixopt.proxy.job import spec_label

    long = spec_label("code=0.25,docs=0.25,drama=0.25,legal=0.25")
    assert re.fullmatch(r"code_0\.25_docs_0\.25_and_2_more_[0-9a-f]{6}", long)
    assert long != spec_label("code=0.25,docs=0.25,drama=0.2,legal=0.3")
    with pytest.raises(MixoptError, match=r"weights sum to 0\.5, not 1; fix them or normalise"):
        resolve_mixture(f"{first}=0.25,{second}=0.25", tiny_corpus)
    with pytest.raises(MixoptError, match=f"mixture '{first}=0.5,{second}': part '{second}' is not domain="):
        resolve_mixture(f"{first}=0.5,{second}", tiny_corpus)
    # weights of many domains make a name too long for a file: still weights, not "path too long"
    many = ",".join(f"domain_number_{i}=0.05" for i in range(20))
    with pytest.raises(MixoptError, match="names domains the corpus lacks: domain_number_0, domain_number_1"):
        train(mixture=many, corpus=tiny_corpus, model=DEBUG, out=tmp_path / "many", threads=1)
    with pytest.raises(MixoptError, match="an existing mixture JSON file, or domain=weight"):
        resolve_mixture("mixtrue.jsn", tiny_corpus)
    # a file whose name holds '=' is still read as the file
    even = {d: 1 / len(tiny_corpus.domains) for d in tiny_corpus.domains}
    path = Mixture(even).save(tmp_path / "lr=1.json")
    assert resolve_mixture(str(path), tiny_corpus)[1] == "lr=1"


class _RunsCode:
    def __reduce__(self):  # what a crafted checkpoint would hold: a call made as it unpickles
        return (print, ("ran code",))


def _with_entry(archive: Path, suffix: str, body: bytes) -> bytes:
    """``archive`` (a zip) with the entry ending in ``suffix`` replaced by ``body``."""
    import io
    import zipfile

    with zipfile.ZipFile(archive) as z:
        entries = [(i, z.read(i.filename)) for i in z.infolist()]
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        for info, data in entries:
            z.writestr(info, body if info.filename.endswith(suffix) else data)
    return out.getvalue()


def test_a_checkpoint_holding_python_objects_is_refused_unloaded(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    """torch.load had unpickled whatever a checkpoint held (weights_only=False): a checkpoint handed on
    from elsewhere could run code on --resume. Only tensors and plain data load now."""
    path = tmp_path / checkpoint.CHECKPOINT
    torch.save({"format": checkpoint.FORMAT, "fingerprint": {}, "x": _RunsCode()}, path)
    refused = (r"holds Python objects besides tensors and plain data \(it names print\), which could run "
               r"code as they load: .*train into another --out")
    with pytest.raises(MixoptError, match=refused):
        checkpoint.load(tmp_path, {})
    assert "ran code" not in capsys.readouterr().out
    # a weight updater's state may hold numpy values (the review: its resume had been refused); they
    # are written as tensors, since numpy's own unpickling trusts the file's bytes (a second review
    # crashed the loader with a crafted dtype), and given back as numpy
    updater = {"w": np.arange(3.0), "lr": np.float32(0.5), "n": np.int64(2), "mask": np.array([True]),
               "rows": [np.zeros((2, 2), dtype=np.float32)], "t": torch.ones(2)}
    checkpoint.save(tmp_path, {"fingerprint": {}, "updater": updater})
    back = checkpoint.load(tmp_path, {}, required=())["updater"]
    assert isinstance(back["w"], np.ndarray) and back["w"].tolist() == [0.0, 1.0, 2.0]
    assert isinstance(back["lr"], np.float32) and back["lr"] == 0.5 and isinstance(back["n"], np.int64)
    assert back["mask"].dtype == bool and back["rows"][0].shape == (2, 2)
    assert torch.equal(back["t"], torch.ones(2))
    with pytest.raises(MixoptError, match=r"a checkpoint cannot keep a numpy value of dtype object"):
        checkpoint.save(tmp_path, {"fingerprint": {}, "updater": {"o": np.array([print], dtype=object)}})
    assert checkpoint.load(tmp_path, {}, required=())["updater"]["n"] == 2  # the last good checkpoint stays
    torch.save({"format": checkpoint.FORMAT, "fingerprint": {}, "a": np.arange(2)}, path)  # numpy as pickled
    with pytest.raises(MixoptError, match=r"holds Python objects besides tensors and plain data"):
        checkpoint.load(tmp_path, {})
    # unreadable, damaged or no run's: one line each saying which, never torch's paragraph or a KeyError
    good = tmp_path / "good.pt"
    checkpoint.save(tmp_path, {"fingerprint": {}, "t": torch.arange(4096.0), "step": 3})
    path.rename(good)
    for content, why in (
        (b"", "cannot be read: it is empty"),
        (b"PK\x03\x04 truncated",
         "cannot be read: it is no PyTorch archive \\(cut short, or another file\\)"),
        (good.read_bytes()[:-100], "cannot be read: it is no PyTorch archive"),
        (good.read_bytes().replace(np.float32(4000.0).tobytes(), np.float32(0.0).tobytes()),
         "is damaged: its contents differ from what was written"),
        (_with_entry(good, "data.pkl", b"\x80\x02garbage"),  # torch's own text offers an unsafe load
         "cannot be read: its archive is damaged \\(its list of objects cannot be read\\)"),
    ):
        path.write_bytes(content)
        with pytest.raises(MixoptError, match=rf"checkpoint .* {why}.*; resume from a copy of it if there is "
                                              r"one, or train into another --out$"):
            checkpoint.load(tmp_path, {}, required=())
    path.write_bytes(good.read_bytes())
    with pytest.raises(MixoptError, match=r"lacks 'model', 'opt', .*which a resume reads: it is no mixopt "
                                          r"train run's"):
        checkpoint.load(tmp_path, {})
    assert checkpoint.load(tmp_path, {}, required=())["step"] == 3
