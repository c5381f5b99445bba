"""``mixopt bench moe``: how fast the MoE layer's experts run, as ratios measured in one run.

For each (E experts, K per token, T tokens) the MoE layer (router + routed experts, forward and
backward) is timed three ways, interleaved round by round so that a noisy neighbour slows all
three alike, best round kept:

- ``fused``: the grouped-GEMM path (:func:`mixopt.train.kernels.routed_experts`);
- ``naive``: the loop over experts (:func:`mixopt.train.kernels.naive_experts`);
- ``triton`` (with ``triton=True``; GPUs): the gathering Triton kernels
  (:mod:`mixopt.train.triton_gather`), which read rows through the routing index instead of
  copying them into expert order;
- ``dense``: the same six GEMMs as the experts' forward and backward (N = T·K rows: two forward
  products, four backward) done by ``torch.mm`` on one contiguous matrix each, i.e. what the
  expert matmuls would cost if routing, permutation and small groups were free.

Throughput is FLOP/s of the active expert matmuls, 18·N·D·F per forward+backward (forward
2·N·D·2F + 2·N·F·D, backward twice that); router, SwiGLU and permutations count as overhead. The
ratios fused/dense and fused/naive are what the goals speak of (≥ 0.7× dense; ≥ 1.5× naive at
E = 8 and ≥ 5× at E = 64), because absolute figures on a shared machine move with the load.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

import torch

from mixopt.errors import MixoptError
from mixopt.train.moe import MoE, MoEConfig

log = logging.getLogger(__name__)

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
EXPERTS = (8, 32, 64)
TOP_K = (1, 2, 8)
TOKENS = (4096, 16384)
QUICK = {"experts": (8, 64), "top_k": (2,), "tokens": (4096,)}
# A Qwen3-30B-A3B-like layer (d_model 2048, expert hidden 768, E = 128, K = 8), for GPUs.
GPU_SHAPE = {"d_model": 2048, "hidden": 768, "experts": (128,), "top_k": (8,), "tokens": (16384,)}


@dataclass(frozen=True, kw_only=True)
class LayerCase:
    experts: int
    top_k: int
    tokens: int
    d_model: int
    hidden: int

    @property
    def flops(self) -> float:
        """Active expert matmul FLOPs of one forward+backward: 18 · T·K · D · F."""
        return 18.0 * self.tokens * self.top_k * self.d_model * self.hidden


@dataclass(frozen=True, kw_only=True)
class LayerResult:
    case: LayerCase
    fused_s: float
    dense_s: float
    naive_s: float | None
    triton_s: float | None = None

    def flops_per_s(self, which: str) -> float | None:
        s = getattr(self, f"{which}_s")
        return None if s is None else self.case.flops / s

    @property
    def vs_dense(self) -> float:
        return self.dense_s / self.fused_s

    @property
    def vs_naive(self) -> float | None:
        return None if self.naive_s is None else self.naive_s / self.fused_s

    def as_dict(self) -> dict:
        return {
            **asdict(self.case),
            "fused_flops": self.flops_per_s("fused"),
            "dense_flops": self.flops_per_s("dense"),
            "naive_flops": self.flops_per_s("naive"),
            "triton_flops": self.flops_per_s("triton"),
            "vs_dense": self.vs_dense,
            "vs_naive": self.vs_naive,
        }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timer(fn: Callable[[], object], device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def _layer_step(layer: MoE, x: torch.Tensor, grad: torch.Tensor) -> Callable[[], None]:
    def step() -> None:
        layer.zero_grad(set_to_none=False)  # as the trainer does every step: gradients stay allocated
        out, aux = layer(x)
        torch.autograd.backward([out, aux], [grad, torch.ones_like(aux)])

    return step


def _dense_step(case: LayerCase, device: torch.device, dtype: torch.dtype) -> Callable[[], None]:
    N, D, F = case.tokens * case.top_k, case.d_model, case.hidden
    g = torch.Generator(device=device).manual_seed(1)

    def r(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g, device=device, dtype=dtype)

    x, w13, a, w2, dy, dh = r(N, D), r(D, 2 * F), r(N, F), r(F, D), r(N, D), r(N, 2 * F)

    def step() -> None:
        torch.mm(x, w13)  # h = x @ w13
        torch.mm(a, w2)  # y = a @ w2
        torch.mm(dy, w2.t())  # da
        torch.mm(a.t(), dy)  # dw2
        torch.mm(dh, w13.t())  # dx
        torch.mm(x.t(), dh)  # dw13

    return step


def bench_layer(
    case: LayerCase,
    *,
    device: str = "cpu",
    dtype: str = "fp32",
    rounds: int = 3,
    naive: bool = True,
    triton: bool = False,
    seed: int = 0,
) -> LayerResult:
    """Time one case: best of ``rounds`` interleaved rounds (after one warm-up round)."""
    dev = torch.device(device)
    dt = DTYPES[dtype]
    torch.manual_seed(seed)
    cfg = MoEConfig(d_model=case.d_model, n_experts=case.experts, top_k=case.top_k, expert_hidden=case.hidden)
    fused = MoE(cfg).to(dev)
    fused.w13.data = fused.w13.data.to(dt)
    fused.w2.data = fused.w2.data.to(dt)
    x = torch.randn(case.tokens, case.d_model, device=dev, dtype=dt, requires_grad=True)
    grad = torch.randn(case.tokens, case.d_model, device=dev, dtype=dt)
    layers = {"fused": fused}
    for kernel, wanted in (("naive", naive), ("triton", triton)):
        if wanted:  # the same weights, another kernel
            other = MoE(MoEConfig(**{**cfg.__dict__, "kernel": kernel})).to(dev)
            other.load_state_dict(fused.state_dict())
            other.w13.data = other.w13.data.to(dt)
            other.w2.data = other.w2.data.to(dt)
            layers[kernel] = other
    steps: dict[str, Callable[[], None]] = {name: _layer_step(m, x, grad) for name, m in layers.items()}
    steps["dense"] = _dense_step(case, dev, dt)
    best = {k: float("inf") for k in steps}
    for r in range(rounds + 1):
        for name, fn in steps.items():
            t = _timer(fn, dev)
            if r > 0:  # round 0 warms caches, allocator and (on GPU) kernels and Triton's compiler
                best[name] = min(best[name], t)
        for mod in layers.values():
            mod.router.step_load.zero_()
    res = LayerResult(
        case=case,
        fused_s=best["fused"],
        dense_s=best["dense"],
        naive_s=best.get("naive"),
        triton_s=best.get("triton"),
    )
    log.info("moe bench %s: %s", case, res.as_dict())
    return res


def layer_cases(
    *,
    experts: Iterable[int] = EXPERTS,
    top_k: Iterable[int] = TOP_K,
    tokens: Iterable[int] = TOKENS,
    d_model: int = 512,
    hidden: int = 256,
) -> list[LayerCase]:
    """The grid of cases; a K larger than E is skipped (it cannot route)."""
    cases = [
        LayerCase(experts=e, top_k=k, tokens=t, d_model=d_model, hidden=hidden)
        for e in experts
        for k in top_k
        for t in tokens
        if k <= e
    ]
    if not cases:
        raise MixoptError("the benchmark grid is empty: every top-k is larger than every expert count")
    return cases


def least_bytes(case: LayerCase, dtype: str) -> int:
    """Bytes one case surely holds at once: the layer's fp32 expert weights as made (3·E·D·F), or,
    once cast to ``dtype``, those weights with the input and its gradient and the dense reference's
    six matrices; activations come on top. (The cast frees the fp32 weights: counted on top of the
    rest, they had refused bf16 cases that fit.)"""
    size = DTYPES[dtype].itemsize
    T, N, D, F = case.tokens, case.tokens * case.top_k, case.d_model, case.hidden
    weights = 3 * case.experts * D * F
    return max(4 * weights, size * (weights + 2 * T * D + 2 * N * D + 3 * N * F + 3 * D * F))


def check_memory(cases: Iterable[LayerCase], device: str, dtype: str) -> None:
    """Refuse a grid whose largest case cannot fit the device's memory, before any case runs: a
    QA pass's --tokens 2**62 (or --d-model 2**40) ended in torch's allocation traceback, exit 1."""
    import os

    try:
        if device.startswith("cuda"):
            total = torch.cuda.get_device_properties(torch.device(device)).total_memory
        else:
            total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError, RuntimeError):  # a system that does not say
        return
    big = max(cases, key=lambda c: least_bytes(c, dtype))
    need = least_bytes(big, dtype)
    if need > total:
        raise MixoptError(f"the case E={big.experts} k={big.top_k} T={big.tokens} (D={big.d_model}, "
                          f"F={big.hidden}) needs at least {need / 2**30:,.3g} GiB, more than the "
                          f"{total / 2**30:,.1f} GiB of {device}; lower --tokens, --d-model, --hidden or "
                          "--experts")


def check_device(device: str, dtype: str) -> None:
    """Refuse a device or dtype this machine cannot run, with the fix."""
    from mixopt.train.device import resolve_device

    if dtype not in DTYPES:
        raise MixoptError(f"dtype {dtype!r} is not benchmarked; use one of {', '.join(DTYPES)}")
    resolve_device(device)


def device_name(device: str) -> str:
    """The device in words, recorded with every figure."""
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    import platform

    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            name = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), name)
    except OSError:
        pass
    return f"CPU {name}"


GPU_GOAL_FLOPS = 150e12  # forward+backward, bf16, at GPU_SHAPE on an H100-class GPU


def goals(results: list[LayerResult], *, gpu_bf16: bool = False) -> dict[str, dict]:
    """The issue's goals checked on a run: worst ratio of each kind and whether it is met.

    With ``gpu_bf16`` (a bf16 run on a GPU) also the absolute goal at the Qwen3-30B-A3B-like shape:
    the faster of the fused and Triton paths at ≥ 150 TFLOP/s (key ``flops``, not a ratio).
    """
    out: dict[str, dict] = {}
    shape = [
        r for r in results
        if (r.case.d_model, r.case.hidden) == (GPU_SHAPE["d_model"], GPU_SHAPE["hidden"])
        and r.case.experts in GPU_SHAPE["experts"] and r.case.top_k in GPU_SHAPE["top_k"]
    ]
    if gpu_bf16 and shape:
        best = [max(f for f in (r.flops_per_s("fused"), r.flops_per_s("triton")) if f) for r in shape]
        out[f"≥ {GPU_GOAL_FLOPS / 1e12:.0f} TFLOP/s at the Qwen3-30B-A3B-like shape"] = {
            "flops": min(best),
            "met": min(best) >= GPU_GOAL_FLOPS,
        }
    if results:
        worst = min(results, key=lambda r: r.vs_dense)
        out["fused ≥ 0.7× dense"] = {
            "worst": worst.vs_dense,
            "met": worst.vs_dense >= 0.7,
            "mean": sum(r.vs_dense for r in results) / len(results),
        }
    for e, target in ((8, 1.5), (64, 5.0)):
        sel = [r.vs_naive for r in results if r.case.experts == e and r.vs_naive is not None]
        if sel:
            out[f"fused ≥ {target}× naive at E={e}"] = {
                "worst": min(sel),
                "met": min(sel) >= target,
                "mean": sum(sel) / len(sel),
            }
    return out


def reference_spread(results: list[LayerResult], limit: float = 1.5) -> str | None:
    """Said when the dense GEMM, timed on the same shape in several cases (same T·K rows, D, F:
    only E differs), ran more than ``limit``× faster in one than in another: the machine was
    busy during part of the run, and ratios against it move with that. None otherwise."""
    groups: dict[tuple[int, int, int], list[LayerResult]] = {}
    for r in results:
        c = r.case
        groups.setdefault((c.tokens * c.top_k, c.d_model, c.hidden), []).append(r)
    worst: tuple[float, LayerResult, LayerResult] | None = None
    for rs in groups.values():
        rs = sorted(rs, key=lambda r: r.flops_per_s("dense"))
        fast, slow = rs[-1], rs[0]
        spread = fast.flops_per_s("dense") / slow.flops_per_s("dense")
        if worst is None or spread > worst[0]:
            worst = (spread, fast, slow)
    if worst is None or worst[0] <= limit:
        return None
    spread, fast, slow = worst
    return (f"the dense GEMM ran {spread:.1f}× faster at E={fast.case.experts} than at "
            f"E={slow.case.experts} on the same shape (k={fast.case.top_k}, {fast.case.tokens:,} tokens: "
            f"{fast.flops_per_s('dense') / 1e9:.1f} vs {slow.flops_per_s('dense') / 1e9:.1f} GFLOP/s): the "
            "machine was busy during part of the run, so the ratios and verdicts moved with it; rerun on a "
            "quiet machine for figures to act on")


# ----- end-to-end training ----------------------------------------------------------------------
# bf16 dense peak of known GPUs (no sparsity), for MFU; other devices use this run's own GEMM.
GPU_PEAK = {"H100": 989e12, "H200": 989e12, "A100": 312e12}


@dataclass(frozen=True, kw_only=True)
class TrainRow:
    name: str
    params: int
    active_params: int
    tokens_per_s: float
    flops_per_token: float
    peak: float
    peak_source: str

    @property
    def flops_per_s(self) -> float:
        return self.tokens_per_s * self.flops_per_token

    @property
    def mfu(self) -> float:
        return self.flops_per_s / self.peak

    def as_dict(self) -> dict:
        return {**asdict(self), "flops_per_s": self.flops_per_s, "mfu": self.mfu}


def gemm_peak(device: str, dtype: str, n: int = 2048, rounds: int = 3) -> tuple[float, str]:
    """FLOP/s this device reaches on a large square matmul now (the CPU's practical peak).

    On a shared machine one measurement can be slowed by a neighbour (then MFU comes out above
    100%), so :func:`bench_training` measures it again in every round and keeps the best.
    """
    dev = torch.device(device)
    if dev.type == "cuda":
        name = torch.cuda.get_device_name(dev)
        for key, peak in GPU_PEAK.items():
            if key in name and dtype == "bf16":
                return peak, f"{key} bf16 dense peak"
    a = torch.randn(n, n, device=dev, dtype=DTYPES[dtype])
    b = torch.randn(n, n, device=dev, dtype=DTYPES[dtype])
    _timer(lambda: torch.mm(a, b), dev)  # warm-up
    best = min(_timer(lambda: torch.mm(a, b), dev) for _ in range(max(rounds, 1)))
    return 2.0 * n**3 / best, f"this run's {dtype} GEMM ({n}³)"


def bench_training(
    model: str = "moe-s",
    *,
    device: str = "cpu",
    dtype: str = "fp32",
    steps: int = 3,
    vocab_size: int = 8192,
    seed: int = 0,
) -> list[TrainRow]:
    """Tokens/s and MFU of training steps of ``model`` and its dense twin, on random tokens.

    One step (forward, backward, clip, AdamW, balancing-bias update) is the unit; the first is a
    warm-up, the best of ``steps`` interleaved steps counts. FLOPs per token as the trainer
    counts them (6 × active matmul parameters + attention), so both models do nearly the same
    work per token and the ratio of their tokens/s is the price of routing.
    """
    from mixopt.train.config import load_model
    from mixopt.train.trainer import build

    if dtype != "fp32" and device == "cpu":
        raise MixoptError("the training benchmark runs fp32 on CPU; use --dtype fp32 or --no-train")
    spec = load_model(model)
    dev = torch.device(device)
    peak, source = gemm_peak(device, dtype, rounds=0)
    runs = {}
    for dense in (False, True):
        lm = spec.lm_config(vocab_size, dense=dense)
        net, opt = build(lm, spec, seed, dev)
        g = torch.Generator().manual_seed(seed)
        x = torch.randint(0, vocab_size, (spec.train.batch, lm.context + 1), generator=g).to(dev)

        def step(net=net, opt=opt, x=x) -> None:
            # bf16 as the trainer runs it: autocast over fp32 weights, the router and the balancing
            # bias kept in fp32 (a bf16 bias stops moving at 0.5 under steps of 1e-3)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dtype == "bf16"):
                ce, aux = net(x[:, :-1], x[:, 1:])
            (ce + aux).backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0, foreach=True)
            opt.step()
            opt.zero_grad(set_to_none=False)
            net.end_step()

        runs[dense] = (lm, step)
    best = {k: float("inf") for k in runs}
    for r in range(steps + 1):
        for k, (_, fn) in runs.items():
            t = _timer(fn, dev)
            if r > 0:
                best[k] = min(best[k], t)
        if source.startswith("this run"):  # the peak is measured in the same rounds, best kept
            peak = max(peak, gemm_peak(device, dtype, rounds=0)[0])
    rows = []
    for dense, (lm, _) in runs.items():
        p = lm.params()
        rows.append(
            TrainRow(
                name=f"{spec.name}{' dense twin' if dense else ''}",
                params=p["total"],
                active_params=p["active"],
                tokens_per_s=spec.train.batch * lm.context / best[dense],
                flops_per_token=lm.train_flops_per_token(),
                peak=peak,
                peak_source=source,
            )
        )
    return rows
