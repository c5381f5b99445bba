"""The MoE layer: fused grouped-GEMM path against the naive loop, gradients, routing and balancing."""

from __future__ import annotations

import pytest
import torch

from mixopt.errors import MixoptError
from mixopt.train import kernels
from mixopt.train.moe import MoE, MoEConfig

TOL = 1e-4


def _params(T: int, D: int, F: int, E: int, K: int, *, seed: int = 0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(T, D, generator=g, dtype=dtype).requires_grad_()
    w13 = (0.3 * torch.randn(E, D, 2 * F, generator=g, dtype=dtype)).requires_grad_()
    w2 = (0.3 * torch.randn(E, F, D, generator=g, dtype=dtype)).requires_grad_()
    gates = torch.rand(T, K, generator=g, dtype=dtype).requires_grad_()
    ids = torch.rand(T, E, generator=g).argsort(-1)[:, :K]  # K distinct experts per token
    return x, gates, ids, w13, w2


def _run(fn, x, gates, ids, w13, w2, grad):
    for p in (x, gates, w13, w2):
        p.grad = None
    out = fn(x, gates, ids, w13, w2)
    out.backward(grad)
    return [out.detach().clone()] + [p.grad.clone() for p in (x, gates, w13, w2)]


def _assert_agree(x, gates, ids, w13, w2) -> None:
    grad = torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=x.dtype)
    fused = _run(kernels.routed_experts, x, gates, ids, w13, w2, grad)
    naive = _run(kernels.naive_experts, x, gates, ids, w13, w2, grad)
    for name, a, b in zip(("out", "d_x", "d_gates", "d_w13", "d_w2"), fused, naive, strict=True):
        err = (a - b).abs().max().item()
        assert err <= TOL, f"{name}: max abs error {err:.2e}"


@pytest.mark.parametrize(("E", "K"), [(4, 1), (4, 2), (8, 2), (4, 4), (16, 3)])
def test_fused_matches_naive(E: int, K: int) -> None:
    _assert_agree(*_params(48, 32, 24, E, K))


def test_expert_with_no_tokens() -> None:
    x, gates, ids, w13, w2 = _params(40, 16, 16, 6, 2)
    ids = torch.where(ids == 3, torch.full_like(ids, 5), ids)
    ids[:, 1] = torch.where(ids[:, 0] == 5, torch.zeros_like(ids[:, 1]), ids[:, 1])
    assert not (ids == 3).any()
    _assert_agree(x, gates, ids, w13, w2)
    grad = torch.randn(x.shape)
    d_w13, d_w2 = _run(kernels.routed_experts, x, gates, ids, w13, w2, grad)[3:]
    assert d_w13[3].abs().max() == 0 and d_w2[3].abs().max() == 0  # an idle expert learns nothing


def test_all_tokens_to_one_expert() -> None:
    x, gates, _, w13, w2 = _params(33, 16, 8, 5, 1)
    ids = torch.full((33, 1), 2, dtype=torch.long)
    _assert_agree(x, gates, ids, w13, w2)
    grad = torch.randn(x.shape)
    d_w13 = _run(kernels.routed_experts, x, gates, ids, w13, w2, grad)[3]
    assert d_w13[2].abs().max() > 0 and d_w13[[0, 1, 3, 4]].abs().max() == 0


def test_unaligned_widths_and_float64_use_the_loop() -> None:
    # _grouped_mm needs 16-byte strides; width 6 (fp32) and float64 fall back to a loop of mm.
    _assert_agree(*_params(20, 6, 10, 3, 2))
    x, gates, ids, w13, w2 = _params(20, 8, 8, 3, 2, dtype=torch.float64)
    _assert_agree(x, gates, ids, w13, w2)


def test_grouped_mm_forms_match_loop() -> None:
    g = torch.Generator().manual_seed(0)
    a, w = torch.randn(20, 8, generator=g), torch.randn(4, 8, 12, generator=g)
    offs = torch.tensor([5, 5, 13, 20], dtype=torch.int32)
    ref = torch.cat([a[0:5] @ w[0], a[5:13] @ w[2], a[13:20] @ w[3]])
    assert torch.allclose(kernels.grouped_mm(a, w, offs), ref, atol=1e-5)
    dy = torch.randn(20, 12, generator=g)
    dw = kernels.grouped_mm(a.t(), dy, offs)
    assert dw.shape == (4, 8, 12) and dw[1].abs().max() == 0
    assert torch.allclose(dw[2], a[5:13].t() @ dy[5:13], atol=1e-5)
    assert torch.allclose(kernels._grouped_mm_loop(a.t(), dy, offs), dw, atol=1e-5)


def test_reference_gradcheck_float64() -> None:
    x, gates, ids, w13, w2 = _params(6, 4, 3, 3, 2, dtype=torch.float64)
    ids[0] = torch.tensor([2, 2 - 1])
    assert torch.autograd.gradcheck(lambda *a: kernels.naive_experts(a[0], a[1], ids, a[2], a[3]),
                                    (x, gates, w13, w2))
    # the hand-written backward of the fused path passes the same check (float64 runs the mm loop)
    assert torch.autograd.gradcheck(lambda *a: kernels.routed_experts(a[0], a[1], ids, a[2], a[3]),
                                    (x, gates, w13, w2))


def test_routing_permutation_is_consistent() -> None:
    ids = torch.tensor([[2, 0], [0, 1], [2, 1]])
    r = kernels.make_routing(ids, 4)
    assert r.counts_E.tolist() == [2, 2, 2, 0] and r.offs_E.tolist() == [2, 4, 6, 6]
    assert ids.reshape(-1)[r.order_N].tolist() == [0, 0, 1, 1, 2, 2]  # expert-sorted
    assert r.order_N[r.inv_N].tolist() == list(range(6))
    assert r.tok_N.tolist() == (r.order_N // 2).tolist()


def _layer_pair(cfg: MoEConfig, seed: int = 0) -> tuple[MoE, MoE]:
    torch.manual_seed(seed)
    fused = MoE(cfg)
    naive = MoE(MoEConfig(**{**cfg.__dict__, "kernel": "naive"}))
    naive.load_state_dict(fused.state_dict())
    return fused, naive


@pytest.mark.parametrize("kw", [
    {"n_experts": 8, "top_k": 2},
    {"n_experts": 4, "top_k": 1, "n_shared": 1, "score_func": "sigmoid"},
    {"n_experts": 4, "top_k": 4, "balance": "aux"},
])
def test_layer_fused_matches_naive_including_router(kw: dict) -> None:
    cfg = MoEConfig(d_model=32, expert_hidden=16, **kw)
    fused, naive = _layer_pair(cfg)
    x = torch.randn(3, 10, 32)
    results = []
    for layer in (fused, naive):
        xi = x.clone().requires_grad_()
        out, aux = layer(xi)
        (out.square().mean() + aux).backward()
        results.append([out.detach(), xi.grad] + [p.grad for p in layer.parameters()])
    for a, b in zip(*results, strict=True):
        assert (a - b).abs().max().item() <= TOL
    assert fused.router.weight.grad.abs().max() > 0


def test_layer_is_deterministic_for_a_seed() -> None:
    cfg = MoEConfig(d_model=32, n_experts=8, top_k=2, expert_hidden=16, n_shared=1)
    outs = []
    for _ in range(2):
        torch.manual_seed(7)
        layer = MoE(cfg)
        x = torch.randn(4, 16, 32, requires_grad=True)
        out, aux = layer(x)
        (out.sum() + aux).backward()
        outs.append([out.detach(), x.grad, layer.w13.grad, layer.router.weight.grad])
    for a, b in zip(*outs, strict=True):
        assert torch.equal(a, b)


def test_weight_grads_accumulate_in_place_into_kept_buffers() -> None:
    x, gates, ids, w13, w2 = _params(40, 16, 8, 4, 2)
    w13, w2 = torch.nn.Parameter(w13.detach()), torch.nn.Parameter(w2.detach())
    grad = torch.randn(x.shape)
    kernels.routed_experts(x, gates, ids, w13, w2).backward(grad)
    once = (w13.grad.clone(), w2.grad.clone())
    ptrs = (w13.grad.data_ptr(), w2.grad.data_ptr())
    kernels.routed_experts(x, gates, ids, w13, w2).backward(grad)  # accumulates, like a 2nd micro-batch
    assert (w13.grad.data_ptr(), w2.grad.data_ptr()) == ptrs  # the same buffers, no new allocation
    assert torch.allclose(w13.grad, 2 * once[0], atol=1e-5)
    assert torch.allclose(w2.grad, 2 * once[1], atol=1e-5)
    # autograd.grad returns the gradient and leaves .grad alone
    g13, g2 = torch.autograd.grad(kernels.routed_experts(x, gates, ids, w13, w2), (w13, w2), grad)
    assert torch.allclose(g13, once[0], atol=1e-5) and torch.allclose(g2, once[1], atol=1e-5)
    assert torch.allclose(w13.grad, 2 * once[0], atol=1e-5)


def test_z_loss_and_switch_loss_values() -> None:
    cfg = MoEConfig(d_model=16, n_experts=4, top_k=2, expert_hidden=8, balance="aux", aux_coef=0.01,
                    z_coef=1e-3)
    torch.manual_seed(0)
    layer = MoE(cfg)
    x = torch.randn(50, 16)
    _, aux = layer(x)
    logits = x @ layer.router.weight.t()
    probs = logits.softmax(-1)
    ids = layer.router.last_ids
    f = torch.bincount(ids.reshape(-1), minlength=4).float() / ids.numel()
    expected = 1e-3 * torch.logsumexp(logits, -1).square().mean() + 0.01 * 4 * (f * probs.mean(0)).sum()
    assert torch.allclose(aux, expected, atol=1e-6)
    layer.eval()  # no Switch loss outside training; the z-loss stays
    _, aux_eval = layer(x)
    assert torch.allclose(aux_eval, 1e-3 * torch.logsumexp(logits, -1).square().mean(), atol=1e-6)


def test_bias_moves_toward_balance_on_a_skewed_router() -> None:
    cfg = MoEConfig(d_model=16, n_experts=8, top_k=2, expert_hidden=8, bias_rate=1e-2)
    torch.manual_seed(0)
    router = MoE(cfg).router
    with torch.no_grad():
        router.weight.normal_(0, 0.3)
        router.weight[0] += 0.3  # expert 0 wins for most inputs (they have a positive mean)
    x = torch.randn(512, 16, generator=torch.Generator().manual_seed(1)) + 0.5
    router(x)  # two micro-batches make one optimizer step
    router(x)
    load = router.step_load.clone()
    assert load.argmax() == 0 and load[0] > 3 * load.mean()
    vios = [router.update_bias()]
    assert router.step_load.sum() == 0  # counts reset for the next step
    bias = router.expert_bias
    assert torch.allclose(bias[load > load.mean()], torch.tensor(-1e-2))  # overloaded: less likely next
    assert torch.allclose(bias[load < load.mean()], torch.tensor(1e-2))
    for _ in range(80):  # the router's weights never change: only the bias does
        router(x)
        router(x)
        vios.append(router.update_bias())
    assert vios[0] > 2.0 and max(vios[-10:]) < 0.3
    assert router.expert_bias[0] == router.expert_bias.min()


def test_bias_is_saved_but_counts_are_not() -> None:
    layer = MoE(MoEConfig(d_model=16, n_experts=4, top_k=1, expert_hidden=8))
    state = layer.state_dict()
    assert "router.expert_bias" in state and "router.step_load" not in state


@pytest.mark.parametrize("kw", [{"top_k": 5, "n_experts": 4}, {"top_k": 0, "n_experts": 4},
                                {"top_k": 1, "n_experts": 4, "balance": "switch"}])
def test_bad_layer_configs(kw: dict) -> None:
    with pytest.raises(MixoptError):
        MoEConfig(d_model=16, expert_hidden=8, **kw)


def test_bf16_fused_close_to_fp32() -> None:
    x, gates, ids, w13, w2 = _params(64, 32, 32, 8, 2)
    ref = kernels.routed_experts(x, gates, ids, w13, w2).detach()
    out = kernels.routed_experts(x.detach().bfloat16(), gates.detach(), ids, w13.detach().bfloat16(),
                                 w2.detach().bfloat16())
    assert out.dtype == torch.bfloat16
    assert (out.float() - ref).abs().max() <= 0.05 * ref.abs().max()


def test_router_stays_fp32_under_bf16_autocast() -> None:
    """The trainer runs the forward under autocast (bf16 on a GPU), which would cast the router's
    linear to bf16: its logits, top-k choice and z-loss stay fp32 (checked with CPU autocast)."""
    from mixopt.train.moe import Router

    torch.manual_seed(0)
    router = Router(MoEConfig(d_model=64, n_experts=8, top_k=2, expert_hidden=32))
    x = torch.randn(256, 64)
    gates, ids, aux = router(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        gates_ac, ids_ac, aux_ac = router(x)
    assert gates_ac.dtype == aux_ac.dtype == torch.float32
    assert torch.equal(ids_ac, ids) and torch.equal(gates_ac, gates) and torch.equal(aux_ac, aux)


@pytest.mark.parametrize("kernel", ["grouped", "naive"])
def test_layer_backward_under_bf16_autocast(kernel: str) -> None:
    """The trainer's GPU forward runs under bf16 autocast. Inside the experts autocast would cast
    some products (bmm) and not others (the grouped GEMM), and backward met fp32 and bf16 tensors
    in one product (found on an H200); the experts now run wholly in the autocast dtype. Checked
    with CPU autocast: backward runs, gradients reach the fp32 weights, close to the fp32 layer."""
    torch.manual_seed(0)
    layer = MoE(MoEConfig(d_model=64, n_experts=8, top_k=2, expert_hidden=32, n_shared=1, kernel=kernel))
    x = torch.randn(4, 32, 64, requires_grad=True)
    grad = torch.randn(4, 32, 64)
    out32, aux32 = layer(x)
    torch.autograd.backward([out32, aux32], [grad, torch.ones_like(aux32)])
    ref = [p.grad.clone() for p in (x, layer.w13, layer.w2, layer.router.weight)]
    for p in (x, layer.w13, layer.w2, layer.router.weight):
        p.grad = None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, aux = layer(x)
    assert out.dtype == torch.bfloat16 and aux.dtype == torch.float32
    torch.autograd.backward([out, aux], [grad.bfloat16(), torch.ones_like(aux)])
    assert (out.float() - out32).norm() <= 2e-2 * out32.norm()
    for name, p, r in zip(("x", "w13", "w2", "router"), (x, layer.w13, layer.w2, layer.router.weight), ref,
                          strict=True):
        assert p.grad.dtype == torch.float32, name
        assert (p.grad - r).norm() <= 3e-2 * r.norm(), f"{name}: {(p.grad - r).norm() / r.norm():.2e}"


def test_swiglu_with_a_row_scale_matches_autograd() -> None:
    """The torch SwiGLU pair with the gate folded in as a row scale (CPU path; the Triton pass is
    checked against it under the interpreter and on a GPU)."""
    g = torch.Generator().manual_seed(4)
    h = torch.randn(33, 2 * 20, generator=g, dtype=torch.float64)
    grad = torch.randn(33, 20, generator=g, dtype=torch.float64)
    scale = torch.rand(33, 1, generator=g, dtype=torch.float64)
    hh = h.clone().requires_grad_()
    gate, up = hh.chunk(2, dim=-1)
    ref = torch.nn.functional.silu(gate) * up
    (ref * scale).backward(grad)
    assert torch.allclose(kernels.swiglu_forward(h, scale), ref.detach() * scale)
    assert torch.allclose(kernels.swiglu_forward(h), ref.detach())
    dh, act = kernels.swiglu_backward(h, grad, scale)
    assert torch.allclose(dh, hh.grad) and torch.allclose(act, ref.detach())  # the activation is unscaled


def test_triton_tiles_follow_the_dtype(monkeypatch: pytest.MonkeyPatch) -> None:
    """16-bit inputs on a GPU get the large tiles (chosen on an H200); fp32 and the interpreter the small."""
    from mixopt.train import triton_gather as tg

    monkeypatch.setenv("TRITON_INTERPRET", "0")
    assert tg.blocks_for(torch.bfloat16) is tg.GPU_BF16 and tg.blocks_for(torch.float16) is tg.GPU_BF16
    assert tg.blocks_for(torch.float32) is tg.SMALL
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert tg.blocks_for(torch.bfloat16) is tg.SMALL
