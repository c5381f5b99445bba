"""``mixopt bench proxy``: training throughput and model FLOPs utilisation of each proxy rung.

For each rung, in a fresh process (so peak memory is that rung's own and thread settings do not
leak): train steps of the real training loop (:func:`mixopt.proxy.train.train_step`, batches from
:class:`~mixopt.proxy.sampler.MixtureSampler`), on a built corpus when one is given, else on a
synthetic corpus of random tokens (vocabulary 8192) so the benchmark runs anywhere.

Reported per rung:

- tokens/s: tokens per step ÷ the median wall time of a step (the median resists the noise of a
  shared machine); matmul GFLOP/s: the median of the measurements of P below;
- peak RSS of the process;
- non-embedding parameters;
- MFU = F × tokens/s ÷ P, where F is the training FLOPs per token and P the fp32 matmul FLOP/s
  that the same process measures with the same threads (``torch.mm`` of two 2048 × 2048 fp32
  matrices, best of several). The machine is shared, so the steps run in blocks of about a
  second, each followed by its own measurement of P, and MFU is the median over blocks of
  (block FLOPs / block seconds) / P. The formula for F (PaLM, appendix B)::

      F = 6 · N_matmul + 12 · n_layer · d_model · context

  with N_matmul the parameters that take part in matmuls: per layer 4·d² (q, k, v, output) +
  3·d·f (SwiGLU gate, up, down), plus the tied output projection V·d. The embedding lookup and
  the norms are not counted. ``mfu_6n`` leaves the attention term out (a lower bound).
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import resource
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any

SYNTHETIC_VOCAB = 8192
SYNTHETIC_DOMAINS = 4
SYNTHETIC_TOKENS = 1 << 20  # per domain
BLOCK_SECONDS = 1.0


@dataclass(frozen=True, kw_only=True)
class ProxyBench:
    """One rung's figures (see the module doc for definitions)."""

    rung: str
    impl: str  # "fused" (what training uses) or "plain" (the PyTorch reference, for comparison)
    threads: int
    data: str
    vocab_size: int
    non_embedding_params: int
    matmul_params: int
    flops_per_token: float
    tokens_per_step: int
    steps: int
    step_seconds: float
    tokens_per_s: float
    matmul_flops: float
    mfu: float
    mfu_6n: float
    peak_rss_mb: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def matmul_flops(n: int = 2048, repeats: int = 3) -> float:
    """fp32 FLOP/s of ``torch.mm`` on two n × n matrices with the current threads (best of repeats)."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    out = torch.empty(n, n)
    torch.mm(a, b, out=out)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b, out=out)
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n**3 / best


def _synthetic_shards(seed: int = 0) -> dict[str, Any]:
    import numpy as np

    rng = np.random.default_rng(seed)
    return {
        f"synthetic{i}": rng.integers(0, SYNTHETIC_VOCAB, SYNTHETIC_TOKENS, dtype=np.uint16)
        for i in range(SYNTHETIC_DOMAINS)
    }


def _orphaned() -> bool:
    """Whether this worker's parent has died. A harness that SIGKILLs ``bench proxy`` had left its
    worker training to the end of ``--seconds`` (40 minutes of a shared core, once)."""
    parent = multiprocessing.parent_process()
    return parent is not None and not parent.is_alive()


def bench_rung(
    rung_name: str,
    threads: int,
    corpus: str | None = None,
    seconds: float = 6.0,
    min_steps: int = 5,
    fused: bool = True,
) -> ProxyBench:
    """Measure one rung in this process (call it in a fresh process; see :func:`bench_proxy`)."""
    import torch

    from mixopt.mixture import Mixture
    from mixopt.proxy.rungs import load_rung
    from mixopt.proxy.sampler import MixtureSampler
    from mixopt.proxy.train import build, train_step

    torch.set_num_threads(threads)
    rung = load_rung(rung_name)
    if corpus is None:
        shards, vocab, data = _synthetic_shards(), SYNTHETIC_VOCAB, "synthetic"
    else:
        from mixopt.corpus.shards import Corpus

        c = Corpus.open(corpus)
        shards, vocab, data = {d: c.tokens(d, "train") for d in c.domains}, c.vocab_size, c.name
    sampler = MixtureSampler(
        shards, Mixture.uniform(list(shards)), context=rung.context, batch=rung.batch, seed=0
    )
    cfg = rung.model_config(vocab, fused=fused)
    model, opt = build(rung, vocab, seed=0, fused=fused)

    def step(i: int) -> None:
        _, batch = sampler.draw(0.0)
        train_step(model, opt, torch.from_numpy(batch), rung.lr_at(min(i, rung.steps - 1)), rung.grad_clip)

    for i in range(3):  # warm-up: allocator, thread pool, first-call dispatch
        step(i)
    # Blocks of about BLOCK_SECONDS of steps between matmul measurements: on a shared machine the
    # load changes over seconds, so each block is compared with the larger of the peaks measured
    # just before and just after it, and the median over blocks is reported.
    step_times: list[float] = []
    ratios: list[float] = []
    peaks: list[float] = [matmul_flops()]
    f = cfg.train_flops_per_token()
    t_end = time.perf_counter() + seconds
    while len(step_times) < min_steps or time.perf_counter() < t_end:
        if _orphaned():
            os._exit(1)  # nobody is left to read the figures (SIGTERM and Ctrl-C reach the pool)
        block: list[float] = []
        t_block = time.perf_counter() + BLOCK_SECONDS
        while not block or time.perf_counter() < t_block:
            t0 = time.perf_counter()
            step(len(step_times) + len(block))
            block.append(time.perf_counter() - t0)
        peaks.append(matmul_flops())
        step_times += block
        ratios.append(f * rung.tokens_per_step * len(block) / sum(block) / max(peaks[-2:]))
    step_s = statistics.median(step_times)
    tps = rung.tokens_per_step / step_s
    mfu = statistics.median(ratios)
    return ProxyBench(
        rung=rung.name,
        impl="fused" if fused else "plain",
        threads=threads,
        data=data,
        vocab_size=vocab,
        non_embedding_params=cfg.non_embedding_params(),
        matmul_params=cfg.matmul_params(),
        flops_per_token=f,
        tokens_per_step=rung.tokens_per_step,
        steps=len(step_times),
        step_seconds=step_s,
        tokens_per_s=tps,
        matmul_flops=statistics.median(peaks),
        mfu=mfu,
        mfu_6n=mfu * 6.0 * cfg.matmul_params() / f,
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
    )


def bench_proxy(
    rungs: list[str],
    *,
    threads: int,
    corpus: str | None = None,
    seconds: float = 6.0,
    compare_plain: bool = False,
) -> list[ProxyBench]:
    """Benchmark each rung in its own fresh process (one after the other); see the module doc."""
    from mixopt.proxy.rungs import load_rung
    from mixopt.proxy.train import check_threads

    check_threads(threads)  # in the worker, too many had broken its process pool with a traceback
    for r in rungs:
        load_rung(r)  # unknown rungs fail here, with the list of known ones, before any process starts
    if corpus is not None:
        from mixopt.corpus.shards import Corpus

        Corpus.open(corpus)
    out: list[ProxyBench] = []
    ctx = multiprocessing.get_context("spawn")
    for r in rungs:
        for fused in (True, False) if compare_plain else (True,):
            with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
                out.append(pool.submit(bench_rung, r, threads, corpus, seconds, 5, fused).result())
    return out
