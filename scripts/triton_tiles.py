"""Time the gathering Triton kernels' tile shapes on a GPU at the benchmark's GPU shape (bf16).

A sweep for choosing :data:`mixopt.train.triton_gather.GPU_BF16`: each candidate replaces it, and
the MoE layer's forward+backward is timed by :func:`mixopt.bench.moe.bench_layer` (the fused
grouped-GEMM path alongside, as the reference in the same run). Prints one line per candidate.
Usage: ``python3 scripts/triton_tiles.py [--tokens 16384]``.
"""

from __future__ import annotations

import argparse

from mixopt.bench.moe import GPU_SHAPE, LayerCase, bench_layer
from mixopt.train import triton_gather
from mixopt.train.triton_gather import Blocks

CANDIDATES = [
    Blocks(m=64, n=64, k=32, warps=4, stages=2),
    Blocks(m=128, n=128, k=64, warps=8, stages=3),
    Blocks(m=128, n=128, k=32, warps=4, stages=4),
    Blocks(m=128, n=64, k=64, warps=4, stages=3),
    Blocks(m=64, n=128, k=64, warps=4, stages=3),
    Blocks(m=128, n=256, k=64, warps=8, stages=3),
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=GPU_SHAPE["tokens"][0])
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    case = LayerCase(
        experts=GPU_SHAPE["experts"][0],
        top_k=GPU_SHAPE["top_k"][0],
        tokens=args.tokens,
        d_model=GPU_SHAPE["d_model"],
        hidden=GPU_SHAPE["hidden"],
    )
    print(f"case {case}; TFLOP/s of the active expert matmuls, forward+backward, bf16")
    for b in CANDIDATES:
        triton_gather.GPU_BF16 = b
        try:
            r = bench_layer(case, device="cuda", dtype="bf16", rounds=args.rounds, naive=False, triton=True)
        except Exception as exc:  # noqa: BLE001 - a tile that does not fit (shared memory) is a result too
            print(f"{b}: failed: {type(exc).__name__}: {str(exc)[:200]}")
            continue
        print(
            f"{b}: triton {r.flops_per_s('triton') / 1e12:6.1f}  fused {r.flops_per_s('fused') / 1e12:6.1f}"
            f"  dense {r.flops_per_s('dense') / 1e12:6.1f}"
        )


if __name__ == "__main__":
    main()
