"""The proxy model: fused CPU functions match their plain references; shapes, params, causality."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from mixopt.proxy import fused
from mixopt.proxy.model import ModelConfig, ProxyLM, rope_tables

CFG = ModelConfig(vocab_size=97, n_layer=2, d_model=32, n_head=4, context=16)


def test_linear_cross_entropy_matches_reference_across_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fused, "CE_CHUNK_ROWS", 7)  # 30 rows: 4 full chunks and a ragged one
    g = torch.Generator().manual_seed(0)
    h = torch.randn(30, 16, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(50, 16, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 50, (30,), generator=g)
    loss = fused.linear_cross_entropy(h, w, y)
    (2.5 * loss).backward()  # a non-unit upstream gradient must scale the saved gradients
    h2, w2 = h.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
    ref = fused.linear_cross_entropy_reference(h2, w2, y)
    (2.5 * ref).backward()
    torch.testing.assert_close(loss, ref)
    torch.testing.assert_close(h.grad, h2.grad)
    torch.testing.assert_close(w.grad, w2.grad)
    per_token = fused.token_losses(h.detach(), w.detach(), y)
    torch.testing.assert_close(per_token.mean(), ref.detach())


def test_ce_chunk_rows_follow_the_width_only() -> None:
    # powers of two at or below the width, clamped to [64, 256]: xs (64), s (192), m (320)
    assert [fused.ce_chunk_rows(d) for d in (16, 64, 100, 128, 192, 256, 320, 4096)] == [
        64, 64, 64, 128, 128, 256, 256, 256
    ]


def test_linear_cross_entropy_matches_reference_with_width_chosen_chunks() -> None:
    g = torch.Generator().manual_seed(2)
    h = torch.randn(300, 64, generator=g, dtype=torch.float64, requires_grad=True)  # 64-row chunks
    w = torch.randn(40, 64, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 40, (300,), generator=g)
    fused.linear_cross_entropy(h, w, y).backward()
    h2, w2 = h.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
    fused.linear_cross_entropy_reference(h2, w2, y).backward()
    torch.testing.assert_close(h.grad, h2.grad)
    torch.testing.assert_close(w.grad, w2.grad)


def test_linear_cross_entropy_stays_finite_when_target_probability_underflows() -> None:
    h = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    w = torch.tensor([[200.0, 0.0], [0.0, 0.0], [-200.0, 0.0]])  # target 2 of row 0 is 400 nats below
    y = torch.tensor([2, 1])
    loss = fused.linear_cross_entropy(h, w, y)
    ref = torch.nn.functional.cross_entropy(h @ w.t(), y)
    assert torch.isfinite(loss)
    torch.testing.assert_close(loss, ref)


def test_rope_and_swiglu_match_reference_with_gradients() -> None:
    g = torch.Generator().manual_seed(1)
    cos, sin = rope_tables(8, 5, 10000.0)
    x = torch.randn(2, 3, 5, 8, generator=g, dtype=torch.float64, requires_grad=True)
    x2 = x.detach().clone().requires_grad_()
    up = torch.randn(2, 3, 5, 8, generator=g, dtype=torch.float64)
    (fused.rope(x, cos.double(), sin.double()) * up).sum().backward()
    (fused.rope_reference(x2, cos.double(), sin.double()) * up).sum().backward()
    torch.testing.assert_close(x.grad, x2.grad)
    gu = torch.randn(4, 6, 10, generator=g, dtype=torch.float64, requires_grad=True)
    gu2 = gu.detach().clone().requires_grad_()
    up = torch.randn(4, 6, 5, generator=g, dtype=torch.float64)
    a, b = fused.swiglu(gu), fused.swiglu_reference(gu2)
    torch.testing.assert_close(a, b)
    (a * up).sum().backward()
    (b * up).sum().backward()
    torch.testing.assert_close(gu.grad, gu2.grad)


def test_fused_model_equals_plain_model() -> None:
    torch.manual_seed(0)
    a = ProxyLM(CFG).double()
    b = ProxyLM(replace(CFG, fused=False)).double()
    b.load_state_dict(a.state_dict())
    x = torch.randint(0, CFG.vocab_size, (3, CFG.context + 1))
    la, lb = a(x[:, :-1], x[:, 1:]), b(x[:, :-1], x[:, 1:])
    la.backward()
    lb.backward()
    torch.testing.assert_close(la, lb)
    for (name, p), (_, q) in zip(a.named_parameters(), b.named_parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, msg=name)


def test_parameter_counts_match_the_module() -> None:
    m = ProxyLM(CFG)
    total = sum(p.numel() for p in m.parameters())
    assert CFG.non_embedding_params() == total - CFG.vocab_size * CFG.d_model
    norms = sum(p.numel() for p in m.parameters() if p.dim() == 1)
    assert CFG.matmul_params() == total - norms  # every matrix, the tied embedding counted once
    assert CFG.train_flops_per_token() == 6 * CFG.matmul_params() + 12 * 2 * 32 * 16


def test_model_is_causal() -> None:
    torch.manual_seed(0)
    m = ProxyLM(CFG)
    x = torch.randint(0, CFG.vocab_size, (1, CFG.context + 1))
    y = x.clone()
    y[0, 10:] = (y[0, 10:] + 1) % CFG.vocab_size  # change tokens from position 10 on
    la = m.token_losses(x[:, :-1], x[:, 1:])
    lb = m.token_losses(y[:, :-1], x[:, 1:])  # same targets, different later inputs
    torch.testing.assert_close(la[0, :10], lb[0, :10])
    assert not torch.allclose(la[0, 10:], lb[0, 10:])


def test_bad_head_split_is_refused() -> None:
    with pytest.raises(ValueError, match="heads"):
        ModelConfig(vocab_size=10, n_layer=1, d_model=30, n_head=4, context=8)
