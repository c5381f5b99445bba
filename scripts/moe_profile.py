"""Where the MoE layer's forward+backward spends its GPU time, kernel by kernel (torch.profiler).

Runs the layer at the benchmark's GPU shape in bf16 with each kernel (``grouped``, ``triton``) and
prints the CUDA kernels that take the most time, so the gap between the layer and the dense GEMM
can be placed (grouped GEMMs vs gathers, SwiGLU, routing). Usage: ``python3 scripts/moe_profile.py``.
"""

from __future__ import annotations

import torch
from torch.profiler import ProfilerActivity, profile

from mixopt.bench.moe import GPU_SHAPE
from mixopt.train.moe import MoE, MoEConfig


def main() -> None:
    T, D, F = GPU_SHAPE["tokens"][0], GPU_SHAPE["d_model"], GPU_SHAPE["hidden"]
    E, K = GPU_SHAPE["experts"][0], GPU_SHAPE["top_k"][0]
    for kernel in ("grouped", "triton"):
        torch.manual_seed(0)
        layer = MoE(MoEConfig(d_model=D, n_experts=E, top_k=K, expert_hidden=F, kernel=kernel)).cuda()
        layer.w13.data, layer.w2.data = layer.w13.data.bfloat16(), layer.w2.data.bfloat16()
        x = torch.randn(T, D, device="cuda", dtype=torch.bfloat16, requires_grad=True)
        g = torch.randn(T, D, device="cuda", dtype=torch.bfloat16)

        def step(layer=layer, x=x, g=g) -> None:
            out, aux = layer(x)
            torch.autograd.backward([out, aux], [g, torch.ones_like(aux)])

        for _ in range(3):
            step()
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(5):
                step()
            torch.cuda.synchronize()
        print(f"== {kernel}: 5 steps")
        print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=14, max_name_column_width=70))


if __name__ == "__main__":
    main()
