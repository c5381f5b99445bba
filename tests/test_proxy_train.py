"""Proxy training on the tiny corpus with the debug rung: metrics, history, determinism, divergence,
bad input, fixed validation windows, and the evaluator contract."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from mixopt.errors import MixoptError, MixoptWarning
from mixopt.evaluator import EvalRequest, EvalResult, coerce_result
from mixopt.mixture import Mixture
from mixopt.proxy import train as train_mod
from mixopt.proxy.evaluate import evaluate
from mixopt.proxy.rungs import DEBUG
from mixopt.proxy.train import train_proxy
from mixopt.proxy.valset import ValidationSet, fixed_windows


@pytest.fixture(scope="module")
def uniform_run(tiny_corpus):  # noqa: ANN001, ANN201
    return train_proxy(tiny_corpus, Mixture.uniform(tiny_corpus.domains), DEBUG, seed=0, threads=1)


def test_metrics_cover_every_domain_and_bpb_follows_loss(tiny_corpus, uniform_run) -> None:  # noqa: ANN001
    res = uniform_run
    assert res.status == "ok" and res.error is None and res.cost > 0
    for d in tiny_corpus.domains:
        loss = res.metrics[f"loss/{d}"]
        assert 0 < loss < math.log(tiny_corpus.vocab_size) + 0.5  # it learnt something, and is sane
        assert res.metrics[f"bpb/{d}"] == pytest.approx(
            loss / math.log(2) / tiny_corpus.bytes_per_token(d, "val")
        )
    losses = [res.metrics[f"loss/{d}"] for d in tiny_corpus.domains]
    assert res.metrics["objective"] == pytest.approx(np.mean(losses))
    assert res.metrics["objective_bpb"] == pytest.approx(
        np.mean([res.metrics[f"bpb/{d}"] for d in tiny_corpus.domains])
    )
    assert res.train_tokens == DEBUG.steps * DEBUG.tokens_per_step and res.tokens_per_s > 0


def test_history_has_checkpoints_with_steps_tokens_and_metrics(uniform_run) -> None:  # noqa: ANN001
    hist = uniform_run.history
    assert [h["step"] for h in hist] == DEBUG.eval_steps() == [DEBUG.steps // 2, DEBUG.steps]
    assert [h["tokens"] for h in hist] == [s * DEBUG.tokens_per_step for s in DEBUG.eval_steps()]
    assert {k: v for k, v in hist[-1].items() if k not in ("step", "tokens")} == {
        k: v for k, v in uniform_run.metrics.items() if not k.startswith("train/")
    }
    assert hist[-1]["objective"] < hist[0]["objective"]  # training helps


def test_same_seed_same_metrics_other_seed_differs(tiny_corpus, uniform_run) -> None:  # noqa: ANN001
    again = train_proxy(tiny_corpus, Mixture.uniform(tiny_corpus.domains), DEBUG, seed=0, threads=1)
    assert again.metrics == uniform_run.metrics
    assert again.history == uniform_run.history
    other = train_proxy(tiny_corpus, Mixture.uniform(tiny_corpus.domains), DEBUG, seed=1, threads=1)
    assert other.metrics["objective"] != uniform_run.metrics["objective"]


def test_the_mixture_moves_the_per_domain_losses(tiny_corpus) -> None:  # noqa: ANN001
    rung = replace(DEBUG, tokens=DEBUG.tokens * 2)
    only_code = train_proxy(tiny_corpus, {"code": 1.0}, rung, seed=0, threads=1)
    only_drama = train_proxy(tiny_corpus, {"drama": 1.0}, rung, seed=0, threads=1)
    assert only_code.metrics["loss/code"] < only_drama.metrics["loss/code"]
    assert only_drama.metrics["loss/drama"] < only_code.metrics["loss/drama"]
    assert only_code.epochs["drama"] == 0.0 and only_code.epochs["code"] > 0


def test_validation_windows_are_fixed_and_spread(tiny_corpus) -> None:  # noqa: ANN001
    a = ValidationSet.from_corpus(tiny_corpus, DEBUG.context, DEBUG.eval_tokens)
    b = ValidationSet.from_corpus(tiny_corpus, DEBUG.context, DEBUG.eval_tokens)
    for d in tiny_corpus.domains:
        assert np.array_equal(a.windows[d], b.windows[d])
        assert a.windows[d].shape == (DEBUG.eval_tokens // DEBUG.context, DEBUG.context + 1)
    val = np.asarray(tiny_corpus.tokens("code", "val"))
    w = fixed_windows(val, 32, 32 * 4)
    assert np.array_equal(w[0], val[:33]) and np.array_equal(w[-1], val[-33:])  # first and last window
    short = fixed_windows(np.arange(10), 32, 1000)
    assert short.shape == (1, 10)


def test_nan_loss_ends_the_run_as_diverged(tiny_corpus) -> None:  # noqa: ANN001
    res = train_proxy(
        tiny_corpus,
        Mixture.uniform(tiny_corpus.domains),
        replace(DEBUG, lr=1e6, min_lr=0.0, grad_clip=0.0),
        seed=0,
        threads=1,
    )
    assert res.status == "diverged" and "lower the learning rate" in res.error
    assert res.metrics == {} and coerce_result(res).status == "diverged"


def test_nan_from_a_forward_hook_is_diverged_with_the_step(tiny_corpus, monkeypatch) -> None:  # noqa: ANN001
    real_build = train_mod.build
    calls = {"n": 0}

    def poisoned_build(rung, vocab_size, seed, **kw):  # noqa: ANN001, ANN003, ANN202
        model, opt = real_build(rung, vocab_size, seed, **kw)

        def hook(module, args, output):  # noqa: ANN001, ANN202
            calls["n"] += 1
            return output * float("nan") if calls["n"] == 5 else output

        model.norm.register_forward_hook(hook)
        return model, opt

    monkeypatch.setattr(train_mod, "build", poisoned_build)
    res = train_proxy(tiny_corpus, Mixture.uniform(tiny_corpus.domains), DEBUG, seed=0, threads=1)
    assert res.status == "diverged"
    assert "nan at step 5 of" in res.error
    assert res.train_tokens == 4 * DEBUG.tokens_per_step


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ({"code": 0.7, "docs": 0.7}, "sum to 1.4"),
        ({"code": 1.5, "docs": -0.5}, "negative"),
        ({"code": 0.5, "poetry": 0.5}, "lacks: poetry"),
    ],
)
def test_bad_mixtures_are_refused(tiny_corpus, weights, message) -> None:  # noqa: ANN001
    with pytest.raises(MixoptError, match=message):
        train_proxy(tiny_corpus, weights, DEBUG, seed=0, threads=1)


def test_too_many_epochs_warns_with_the_count(tiny_corpus) -> None:  # noqa: ANN001
    # Every domain trained on repeats: no reweighting helps, so the warning says what does.
    with pytest.warns(MixoptWarning, match=r"needs more than 0.01 epochs of 1 domain\(s\) at [\d,]+ tokens "
                                           r"\(code \d+\.\d\); the corpus holds [\d,]+ training tokens"):
        res = train_proxy(tiny_corpus, {"code": 1.0}, DEBUG, seed=0, threads=1, max_epochs=0.01)
    assert res.status == "ok"
    with pytest.warns(MixoptWarning) as record:  # one warning for all the domains, not one each
        train_proxy(tiny_corpus, {"code": 0.2, "docs": 0.2, "drama": 0.6}, DEBUG, seed=0, threads=1,
                    max_epochs=0.001)
    assert len([w for w in record if "epochs of" in str(w.message)]) == 1


def test_threads_are_restored_after_a_run(tiny_corpus) -> None:  # noqa: ANN001
    before = torch.get_num_threads()
    train_proxy(tiny_corpus, {"code": 1.0}, DEBUG, seed=0, threads=1)
    assert torch.get_num_threads() == before
    with pytest.raises(MixoptError, match="threads"):
        train_proxy(tiny_corpus, {"code": 1.0}, DEBUG, seed=0, threads=0)


def test_evaluator_contract(tiny_corpus, tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("MIXOPT_THREADS", "1")
    request = EvalRequest(
        mixture={"code": 0.25, "docs": 0.25, "drama": 0.5, "legal": 0.0},
        fidelity={"corpus": str(tiny_corpus.path), "rung": "debug", "tokens": 4096},
        seed=3,
        run_id="r1",
        workdir=str(tmp_path),
    )
    res = coerce_result(evaluate(request))
    assert isinstance(res, EvalResult) and res.status == "ok"
    for d in tiny_corpus.domains:  # a weight-0 domain is still scored
        assert math.isfinite(res.metrics[f"loss/{d}"]) and math.isfinite(res.metrics[f"bpb/{d}"])
    assert res.history and res.history[-1]["tokens"] == 4096  # the token override: 16 steps of 256
    saved = json.loads((tmp_path / "result.json").read_text())
    assert saved["metrics"] == res.metrics and saved["rung"]["tokens"] == 4096 and saved["threads"] == 1
    assert saved["corpus"]["hash"] == tiny_corpus.hash
    # the mapping form of a request works too
    again = evaluate({**request.as_dict(), "workdir": ""})
    assert again.metrics == res.metrics


def test_evaluator_needs_a_corpus() -> None:
    with pytest.raises(MixoptError, match=r"fidelity\['corpus'\]"):
        evaluate(EvalRequest(mixture={"a": 1.0}, fidelity={"rung": "debug"}, seed=0, run_id="x", workdir=""))
