"""The gathering Triton kernels, run on CPU under the Triton interpreter (skipped without triton).

Triton picks interpreter mode when ``triton.language`` is first imported, so the checks run in a
fresh Python process started with ``TRITON_INTERPRET=1`` (this file run as a script); the pytest
test below starts it and reports its output.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest
import torch

from mixopt.train import kernels


def check_gather_and_scatter_grouped_mm(tg) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(20, 16, generator=g)
    w = torch.randn(3, 16, 24, generator=g)
    ids = torch.randint(0, 3, (20, 2), generator=g)
    ids[ids == 1] = 2  # expert 1 has no slots
    r = kernels.make_routing(ids, 3)
    x_perm = x.index_select(0, r.tok_N)
    expected = kernels.grouped_mm(x_perm, w, r.offs_E)
    got = tg.gather_grouped_mm(x, w, r.offs_E, in_idx=r.tok_N)
    assert (got - expected).abs().max() <= 1e-4
    scattered = tg.gather_grouped_mm(x_perm, w, r.offs_E, out_idx=r.order_N, out_rows=40)
    assert (scattered - expected.index_select(0, r.inv_N)).abs().max() <= 1e-4
    dy = torch.randn(40, 24, generator=g)
    dw = tg.grouped_wgrad(x, dy, r.offs_E, x_idx=r.tok_N)
    assert (dw - kernels.grouped_mm(x_perm.t().contiguous(), dy, r.offs_E)).abs().max() <= 1e-4
    assert dw[1].abs().max() == 0


def check_routed_experts_match_naive(tg, E: int, K: int) -> None:
    g = torch.Generator().manual_seed(E * 10 + K)
    T, D, F = 40, 16, 24
    x = torch.randn(T, D, generator=g).requires_grad_()
    w13 = (0.3 * torch.randn(E, D, 2 * F, generator=g)).requires_grad_()
    w2 = (0.3 * torch.randn(E, F, D, generator=g)).requires_grad_()
    gates = torch.rand(T, K, generator=g).requires_grad_()
    ids = torch.rand(T, E, generator=g).argsort(-1)[:, :K]
    grad = torch.randn(T, D, generator=g)
    results = []
    for fn in (tg.routed_experts, kernels.naive_experts):
        for p in (x, gates, w13, w2):
            p.grad = None
        out = fn(x, gates, ids, w13, w2)
        out.backward(grad)
        results.append([out.detach()] + [p.grad.clone() for p in (x, gates, w13, w2)])
    for a, b in zip(*results, strict=True):
        assert (a - b).abs().max().item() <= 1e-4


def check_swiglu_matches_torch(tg) -> None:
    g = torch.Generator().manual_seed(5)
    h = torch.randn(37, 2 * 24, generator=g)  # 24 columns: a partial Triton block
    grad = torch.randn(37, 24, generator=g)
    scale = torch.rand(37, 1, generator=g)
    for s in (None, scale):
        want_a = kernels.swiglu_forward(h, s)  # CPU tensors: torch's own path
        assert (tg.swiglu_forward(h, s) - want_a).abs().max() <= 1e-5
        want_dh, want_act = kernels.swiglu_backward(h, grad, s)
        got_dh, got_act = tg.swiglu_backward(h, grad, s)
        assert (got_dh - want_dh).abs().max() <= 1e-5 and (got_act - want_act).abs().max() <= 1e-5
    # the torch path against autograd, so both are checked against the definition
    hh = h.clone().requires_grad_()
    gate, up = hh.chunk(2, dim=-1)
    (torch.nn.functional.silu(gate) * up * scale).backward(grad)
    assert (kernels.swiglu_backward(h, grad, scale)[0] - hh.grad).abs().max() <= 1e-5


def _main() -> None:
    assert os.environ.get("TRITON_INTERPRET") == "1" and "triton" not in sys.modules
    from mixopt.train import triton_gather

    check_gather_and_scatter_grouped_mm(triton_gather)
    check_swiglu_matches_torch(triton_gather)
    for E, K in [(4, 2), (3, 1), (2, 2)]:
        check_routed_experts_match_naive(triton_gather, E, K)
    print("triton interpreter checks passed")


def test_triton_kernels_under_the_interpreter() -> None:
    if importlib.util.find_spec("triton") is None:
        pytest.skip("triton is not installed (optional extra mixopt[triton])")
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    proc = subprocess.run([sys.executable, __file__], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "triton interpreter checks passed" in proc.stdout


def test_triton_refuses_cpu_without_interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    from mixopt.errors import MixoptError
    from mixopt.train import triton_gather

    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(MixoptError, match="CUDA"):
        triton_gather._check_device(torch.zeros(1))


if __name__ == "__main__":
    _main()
