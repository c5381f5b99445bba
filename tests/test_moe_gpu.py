"""The MoE layer's kernels on a CUDA device (skipped without one; CI has none).

Run on a GPU machine with ``pytest -m gpu tests/test_moe_gpu.py``. The CPU tests
(``test_moe_layer.py``, ``test_moe_triton.py``) check the same contracts on the CPU and under the
Triton interpreter; these check that they hold where the fast paths actually run: the fused
grouped-GEMM path (``torch._grouped_mm``, CUTLASS in bf16 on Hopper) and the compiled Triton
kernels, against the naive loop, in fp32 (max abs error ≤ 1e-4, TF32 off) and in bf16 (relative
error against a float64 reference, since bf16 rounding alone is ~4e-3).
"""

from __future__ import annotations

import importlib.util

import pytest
import torch

from mixopt.train import kernels

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]
HAS_TRITON = importlib.util.find_spec("triton") is not None
KERNELS = ["grouped", pytest.param("triton", marks=pytest.mark.skipif(not HAS_TRITON, reason="no triton"))]


def _fn(kernel: str):  # noqa: ANN202
    if kernel == "triton":
        from mixopt.train import triton_gather

        return triton_gather.routed_experts
    return kernels.routed_experts


@pytest.fixture(autouse=True)
def _no_tf32():  # noqa: ANN202 - fp32 products must be IEEE for the 1e-4 comparisons
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32 = before


def _inputs(E: int, K: int, T: int, D: int, F: int, seed: int, dtype: torch.dtype, device: str = "cuda"):  # noqa: ANN202
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(T, D, generator=g)
    # Weights at the usual 1/√fan-in scale keep every output O(1), so 1e-4 is a real bound on
    # fp32 error rather than on the summation order of values in the hundreds.
    w13 = torch.randn(E, D, 2 * F, generator=g) / D**0.5
    w2 = torch.randn(E, F, D, generator=g) / F**0.5
    gates = torch.rand(T, K, generator=g)
    ids = torch.rand(T, E, generator=g).argsort(-1)[:, :K]
    grad = torch.randn(T, D, generator=g)
    ts = [t.to(device=device, dtype=dtype).requires_grad_() for t in (x, gates, w13, w2)]
    return ts, ids.to(device), grad.to(device=device, dtype=dtype)


def _run(fn, ts, ids, grad) -> list[torch.Tensor]:  # noqa: ANN001
    for t in ts:
        t.grad = None
    x, gates, w13, w2 = ts
    out = fn(x, gates, ids, w13, w2)
    out.backward(grad)
    return [out.detach()] + [t.grad.detach().clone() for t in ts]


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize(("E", "K"), [(8, 2), (8, 1), (4, 4), (64, 8)])
def test_fp32_matches_the_naive_loop(kernel: str, E: int, K: int) -> None:
    ts, ids, grad = _inputs(E, K, T=256, D=64, F=96, seed=E * 10 + K, dtype=torch.float32)
    got = _run(_fn(kernel), ts, ids, grad)
    want = _run(kernels.naive_experts, ts, ids, grad)
    for name, a, b in zip(("out", "x", "gates", "w13", "w2"), got, want, strict=True):
        assert torch.isfinite(a).all(), name
        assert (a - b).abs().max().item() <= 1e-4, name


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("case", ["empty expert", "one expert"])
def test_fp32_edge_cases(kernel: str, case: str) -> None:
    """An expert with no slots (its weight gradient is exactly 0) and every slot on one expert (K = 1)."""
    E = 8
    ts, ids, grad = _inputs(E, 1, T=200, D=64, F=96, seed=3, dtype=torch.float32)
    ids = torch.zeros_like(ids) if case == "one expert" else torch.where(ids == 1, 0, ids)
    got = _run(_fn(kernel), ts, ids, grad)
    want = _run(kernels.naive_experts, ts, ids, grad)
    for a, b in zip(got, want, strict=True):
        assert (a - b).abs().max().item() <= 1e-4
    idle = 1 if case == "empty expert" else E - 1
    assert got[3][idle].abs().max().item() == 0 and got[4][idle].abs().max().item() == 0


@pytest.mark.parametrize("kernel", KERNELS)
def test_bf16_is_close_to_a_float64_reference(kernel: str) -> None:
    E, K = 32, 4
    ts, ids, grad = _inputs(E, K, T=2048, D=256, F=128, seed=7, dtype=torch.bfloat16)
    got = _run(_fn(kernel), ts, ids, grad)
    # The same bf16 values, upcast: the reference sees exactly the inputs the kernel saw.
    ref_ts = [t.detach().double().cpu().requires_grad_() for t in ts]
    want = _run(kernels.naive_experts, ref_ts, ids.cpu(), grad.double().cpu())
    for name, a, b in zip(("out", "x", "gates", "w13", "w2"), got, want, strict=True):
        a = a.double().cpu()
        rel = ((a - b).norm() / b.norm()).item()
        assert rel <= 2e-2, f"{name}: relative error {rel:.2e}"


@pytest.mark.parametrize("kernel", KERNELS)
def test_deterministic_for_a_seed(kernel: str) -> None:
    """Every permutation is a gather and no kernel adds atomically: two runs agree bit for bit."""
    ts, ids, grad = _inputs(16, 2, T=1024, D=128, F=64, seed=11, dtype=torch.bfloat16)
    first = _run(_fn(kernel), ts, ids, grad)
    second = _run(_fn(kernel), ts, ids, grad)
    for a, b in zip(first, second, strict=True):
        assert torch.equal(a, b)


def test_a_bf16_training_step_of_moe_xs_on_cuda() -> None:
    """The trainer's model and optimizer on a GPU under bf16 autocast: finite loss, routing bias in fp32."""
    from mixopt.train.config import load_model
    from mixopt.train.trainer import build

    spec = load_model("moe-xs")
    lm = spec.lm_config(512)
    dev = torch.device("cuda")
    net, opt = build(lm, spec, 0, dev)
    x = torch.randint(0, 512, (2, lm.context + 1), device=dev)
    losses = []
    for _ in range(3):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            ce, aux = net(x[:, :-1], x[:, 1:])
        (ce + aux).backward()
        opt.step()
        opt.zero_grad(set_to_none=False)
        net.end_step()
        losses.append(ce.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0]  # three steps on one batch: it memorises
    biases = [b for n, b in net.named_buffers() if n.endswith("expert_bias")]
    assert biases and all(b.dtype == torch.float32 for b in biases)
    assert any(b.abs().sum() > 0 for b in biases)


@pytest.mark.parametrize("kernel", KERNELS)
def test_the_trainer_runs_on_cuda(tiny_corpus, tmp_path, kernel: str) -> None:  # noqa: ANN001
    """``mixopt train --device cuda`` on the tiny corpus (bf16 autocast): a whole run with evaluations
    and a checkpoint, the loss falling, and a resume from the checkpoint completing."""
    from dataclasses import replace

    from mixopt.train.config import DEBUG
    from mixopt.train.trainer import train

    spec = replace(DEBUG, shape={**DEBUG.shape, "kernel": kernel})
    res = train("uniform", tiny_corpus, spec, seed=0, out=tmp_path / "run", device="cuda")
    assert res.status == "ok" and res.steps == res.total_steps
    assert all(torch.isfinite(torch.tensor(v)) for v in res.metrics.values())
    assert res.history[-1]["objective"] < res.history[0]["objective"]
    half = train("uniform", tiny_corpus, spec, seed=0, out=tmp_path / "half", device="cuda",
                 until_step=res.total_steps // 2)
    assert half.steps == res.total_steps // 2
    done = train("uniform", tiny_corpus, spec, seed=0, out=tmp_path / "half", device="cuda", resume=True)
    assert done.status == "ok" and done.steps == res.total_steps
    # bf16 GPU kernels are not bitwise reproducible across a restart (cuBLAS may pick another
    # algorithm), so the resumed run is close to, not equal to, the uninterrupted one.
    assert done.metrics["objective"] == pytest.approx(res.metrics["objective"], rel=2e-2)


@pytest.mark.skipif(not HAS_TRITON, reason="no triton")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_swiglu_on_cuda_is_the_one_pass_triton_kernel_and_matches_torch(dtype: torch.dtype) -> None:
    from mixopt.train import triton_gather

    g = torch.Generator().manual_seed(2)
    h = torch.randn(1000, 2 * 768, generator=g).to("cuda", dtype)
    grad = torch.randn(1000, 768, generator=g).to("cuda", dtype)
    scale = torch.rand(1000, 1, generator=g).to("cuda", dtype)
    hh = h.float().requires_grad_()
    gate, up = hh.chunk(2, dim=-1)
    ref = torch.nn.functional.silu(gate) * up * scale.float()
    ref.backward(grad.float())
    a = kernels.swiglu_forward(h, scale)
    dh, act = kernels.swiglu_backward(h, grad, scale)
    tol = 1e-5 if dtype == torch.float32 else 1e-2
    assert ((a.float() - ref.detach()).norm() / ref.norm()).item() <= tol
    assert ((dh.float() - hh.grad).norm() / hh.grad.norm()).item() <= tol
    assert ((act.float() * scale.float() - ref.detach()).norm() / ref.norm()).item() <= tol
    assert torch.equal(a, triton_gather.swiglu_forward(h, scale))  # the dispatch took the Triton kernel
