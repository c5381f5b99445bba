"""Train one proxy model on a mixture and score it on every domain: :func:`train_proxy`.

Top to bottom: check the mixture against the corpus, draw batches with :class:`MixtureSampler`,
train with AdamW under a warm-up + cosine schedule, evaluate on the fixed validation windows at
the rung's checkpoints, and return an :class:`~mixopt.evaluator.EvalResult` whose ``history``
holds the checkpoint metrics (for step scaling laws) and whose ``cost`` is the wall time.

Determinism: the same seed, mixture, rung and thread count give identical losses on the same
machine (``torch.manual_seed``, a seeded numpy sampler, deterministic algorithms; every CPU kernel
used here is deterministic for a fixed thread count). A NaN or infinite loss ends the run with
status ``diverged`` and the reason; it is a result, not an exception.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mixopt.cpus import usable_cpus
from mixopt.errors import MixoptError, MixoptWarning, warn
from mixopt.evaluator import EvalResult
from mixopt.mixture import Mixture, check_domains
from mixopt.proxy.model import ProxyLM
from mixopt.proxy.rungs import RungConfig, load_rung
from mixopt.proxy.sampler import MixtureSampler, expected_epochs
from mixopt.proxy.valset import ValidationSet
from mixopt.space import DEFAULT_MAX_EPOCHS, epochs_over

log = logging.getLogger(__name__)


@dataclass
class ProxyResult(EvalResult):
    """An EvalResult plus how the time went (kept out of ``metrics``, which are deterministic).

    Attributes:
        train_tokens: tokens trained on.
        train_seconds: wall seconds in training steps (sampling included, evaluations excluded).
        eval_seconds: wall seconds in checkpoint evaluations.
        epochs: passes over each domain's training split that the mixture asked for.
    """

    train_tokens: int = 0
    train_seconds: float = 0.0
    eval_seconds: float = 0.0
    epochs: dict[str, float] = field(default_factory=dict)

    @property
    def tokens_per_s(self) -> float:
        return self.train_tokens / self.train_seconds if self.train_seconds > 0 else 0.0


def check_threads(threads: int, what: str = "--threads") -> int:
    """``threads`` if this process can run that many; past its CPUs torch only slows down (and
    past some thousands its thread pool crashes the process). ``what`` names where it was set."""
    cpus = usable_cpus()
    if int(threads) < 1:
        raise MixoptError(f"{what} is {threads}; give a positive number of threads")
    if int(threads) > cpus:
        raise MixoptError(f"{what} is {threads}, more than the {cpus} CPU(s) this process may use; give at "
                          f"most {cpus}")
    return int(threads)


def check_memory(params: int, what: str) -> None:
    """Refuse a model whose fp32 weights, gradients and AdamW moments (16 bytes a parameter) are
    more than this machine's memory, before any of it is allocated: torch's own refusal is a
    traceback from deep inside the initialisation."""
    need = 16 * params
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):  # not a POSIX system that says
        return
    if need > total:
        raise MixoptError(f"{what} has {params:,} parameters, whose weights, gradients and AdamW state need "
                          f"{need / 2**30:,.1f} GiB, more than this machine's {total / 2**30:,.1f} GiB; "
                          "make it smaller (d_model, n_layer, experts)")


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[int]:
    """Run the block with ``threads`` intra-op threads (None: leave as is); restore afterwards."""
    old = torch.get_num_threads()
    if threads is not None:
        # Past the explicit checks (train, compare): the count may come from a fidelity or the
        # environment (MIXOPT_THREADS, OMP_NUM_THREADS), so the message names them all.
        what = "threads (--threads, fidelity threads, MIXOPT_THREADS or OMP_NUM_THREADS)"
        torch.set_num_threads(check_threads(threads, what))
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(old)


@contextlib.contextmanager
def deterministic() -> Iterator[None]:
    """Deterministic algorithms for the block (free on CPU: no op used here lacks one)."""
    old = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(old)


def build(
    rung: RungConfig, vocab_size: int, seed: int, *, fused: bool = True
) -> tuple[ProxyLM, torch.optim.Optimizer]:
    """A freshly initialised model (seeded) and its AdamW (decay on matrices, not on norms).

    ``fused=False`` builds the plain PyTorch model (same maths), for benchmarks and tests.
    """
    cfg = rung.model_config(vocab_size, fused=fused)
    check_memory(cfg.matmul_params(), f"rung {rung.name!r}")
    torch.manual_seed(seed)
    model = ProxyLM(cfg)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    # fused=True: one kernel for the whole update instead of a few per parameter tensor.
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": rung.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=rung.lr,
        betas=(rung.beta1, rung.beta2),
        fused=True,
    )
    return model, opt


def train_step(
    model: ProxyLM, opt: torch.optim.Optimizer, tokens: torch.Tensor, lr: float, grad_clip: float
) -> float:
    """One optimizer step on tokens (B, T + 1); returns the loss, and skips the update if not finite."""
    for group in opt.param_groups:
        group["lr"] = lr
    loss = model(tokens[:, :-1], tokens[:, 1:])
    value = loss.item()
    if not math.isfinite(value):
        return value
    loss.backward()
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip, foreach=True)
    opt.step()
    opt.zero_grad(set_to_none=True)
    return value


def as_mixture(mixture: Mixture | Mapping[str, float]) -> Mixture:
    return mixture if isinstance(mixture, Mixture) else Mixture(dict(mixture))


def check_epochs(
    mixture: Mixture, train_tokens: Mapping[str, int], budget: float, cap: float, rung: str,
    *, final: bool = False,
) -> dict[str, float]:
    """Epochs per domain at ``budget`` tokens; one MixoptWarning naming the domains above ``cap``.

    ``final``: ``rung`` names a final model (``mixopt train``), which has no ``--max-epochs``; its
    remedy is fewer tokens.
    """
    epochs = expected_epochs(mixture, train_tokens, budget)
    over, listed = epochs_over(epochs, cap)
    if not over:
        return epochs
    what = f"model {rung}" if final else f"rung {rung}"
    used = [d for d, w in mixture.weights.items() if w > 0]
    if set(used) <= set(over):  # every domain trained on repeats: no reweighting helps
        total = sum(train_tokens[d] for d in used)
        fix = (f"the corpus holds {total:,} training tokens of these domains, {budget / total:.1f}× fewer "
               f"than the {budget:,.0f} tokens trained: train fewer tokens{' (--tokens)' if final else ''} "
               "or on a larger corpus")
    else:
        fix = ("lower those domains' weights" + (", or train fewer tokens (--tokens)" if final else
                                                 " (or raise the cap where the command has --max-epochs)"))
    warn(
        f"{what}: the mixture needs more than {cap:g} epochs of {len(over)} domain(s) at {budget:,.0f} "
        f"tokens ({listed}); {fix}",
        MixoptWarning,
    )
    return epochs


def train_proxy(
    corpus: Any,
    mixture: Mixture | Mapping[str, float],
    rung: RungConfig | str,
    *,
    seed: int,
    threads: int | None = None,
    workdir: str | Path | None = None,
    max_epochs: float | None = None,
) -> ProxyResult:
    """Train the rung's model on ``mixture`` of ``corpus`` and evaluate it on every domain.

    Args:
        corpus: a :class:`mixopt.corpus.Corpus` (or its name or folder).
        mixture: a Mixture or a mapping domain → weight (≥ 0, summing to 1; unnamed domains get 0).
        rung: a RungConfig or a rung name.
        seed: seeds the initialisation and the batch sampler.
        threads: torch intra-op threads for this run (None: the process setting).
        workdir: if given, ``result.json`` (metrics, history, config) is written there.
        max_epochs: repetition cap for the warning (default :data:`DEFAULT_MAX_EPOCHS`).

    Returns:
        ProxyResult (an EvalResult) with ``loss/<d>``, ``bpb/<d>``, ``objective``,
        ``objective_bpb`` and ``train/loss`` (mean over the last tenth of steps); ``history``
        with the same metrics plus ``step`` and ``tokens`` at each checkpoint; ``cost`` = wall
        seconds; status ``ok`` or ``diverged``.

    Raises:
        MixoptError: bad weights, unknown domains, a domain too small for one window.
    """
    from mixopt.corpus.shards import Corpus

    t_start = time.perf_counter()
    corpus = corpus if isinstance(corpus, Corpus) else Corpus.open(corpus)
    rung = load_rung(rung)
    mixture = as_mixture(mixture)
    check_domains(mixture.weights, corpus.domains)
    steps = rung.steps
    budget = steps * rung.tokens_per_step
    cap = DEFAULT_MAX_EPOCHS if max_epochs is None else float(max_epochs)
    epochs = check_epochs(mixture, corpus.train_tokens(), budget, cap, rung.name)

    sampler = MixtureSampler(
        {d: corpus.tokens(d, "train") for d in corpus.domains},
        mixture,
        context=rung.context,
        batch=rung.batch,
        seed=seed,
    )
    valset = ValidationSet.from_corpus(corpus, rung.context, rung.eval_tokens)
    eval_steps = set(rung.eval_steps())
    history: list[dict[str, float]] = []
    recent: list[float] = []  # training losses of the last tenth of the run
    status, error = "ok", None
    train_seconds = eval_seconds = 0.0
    done = 0  # optimizer steps taken

    with torch_threads(threads), deterministic():
        model, opt = build(rung, corpus.vocab_size, seed)
        for step in range(steps):
            t0 = time.perf_counter()
            _, batch = sampler.draw(step / steps)
            loss = train_step(model, opt, torch.from_numpy(batch), rung.lr_at(step), rung.grad_clip)
            train_seconds += time.perf_counter() - t0
            if not math.isfinite(loss):
                status = "diverged"
                error = (
                    f"training loss became {loss} at step {step + 1} of {steps} "
                    f"({(step + 1) * rung.tokens_per_step} tokens); lower the learning rate "
                    f"(rung {rung.name}: lr={rung.lr:g})"
                )
                break
            done = step + 1
            if step >= steps - max(1, steps // 10):
                recent.append(loss)
            if step + 1 in eval_steps:
                t0 = time.perf_counter()
                metrics = valset.evaluate(model)
                eval_seconds += time.perf_counter() - t0
                history.append({"step": step + 1, "tokens": (step + 1) * rung.tokens_per_step, **metrics})
                bad = [k for k, v in metrics.items() if not math.isfinite(v)]
                if bad:
                    status, error = (
                        "diverged",
                        f"validation metrics not finite at step {step + 1}: {', '.join(bad)}",
                    )
                    break

    metrics: dict[str, float] = {}
    if status == "ok":
        metrics = {k: v for k, v in history[-1].items() if k not in ("step", "tokens")}
        metrics["train/loss"] = sum(recent) / len(recent)
    result = ProxyResult(
        metrics=metrics,
        cost=time.perf_counter() - t_start,
        status=status,
        error=error,
        history=history,
        train_tokens=done * rung.tokens_per_step,
        train_seconds=train_seconds,
        eval_seconds=eval_seconds,
        epochs=epochs,
    )
    log.info(
        "proxy %s seed %d: %s in %.1f s (%.0f train tokens/s)",
        rung.name,
        seed,
        status,
        result.cost,
        result.tokens_per_s,
    )
    if workdir is not None:
        from mixopt.atomic import write_json

        write_json(
            Path(workdir) / "result.json",
            run_record(
                result,
                corpus=corpus,
                mixture=mixture,
                rung=rung,
                seed=seed,
                threads=threads or torch.get_num_threads(),
            ),
        )
    return result


def run_record(
    result: ProxyResult, *, corpus: Any, mixture: Mixture, rung: RungConfig, seed: int, threads: int
) -> dict[str, Any]:
    """The JSON written for a run: result, resolved config and provenance (code and data versions)."""
    import platform

    import mixopt

    return {
        "schema": "mixopt.proxy-run/v1",
        "status": result.status,
        "error": result.error,
        "metrics": result.metrics,
        "history": result.history,
        "cost_seconds": result.cost,
        "train_tokens": result.train_tokens,
        "train_seconds": result.train_seconds,
        "eval_seconds": result.eval_seconds,
        "tokens_per_s": result.tokens_per_s,
        "epochs": result.epochs,
        "seed": seed,
        "threads": threads,
        "mixture": mixture.to_dict(),
        "rung": rung.as_dict(),
        "corpus": {"name": corpus.name, "hash": corpus.hash, "path": str(corpus.path)},
        "versions": {
            "mixopt": mixopt.__version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
    }
