"""Hand-fused CPU autograd functions for the proxy model, each with its plain reference.

Profiling the plain model (``torch.profiler``, rung ``s``, 2 threads) showed where a CPU step goes
besides the matmuls: the (B·T, V) logits of the output projection and their log-softmax and
backward (about a third of the step: ~128 MB written and read several times, and
``log_softmax_backward`` is slow on CPU), then the many small elementwise kernels and temporary
copies of RoPE and SwiGLU under autograd. The functions here remove those costs:

- :func:`linear_cross_entropy`: output projection + softmax cross-entropy, computed chunk by
  chunk of rows so a chunk's logits stay in cache; the gradients are computed in the forward pass
  (the loss is a scalar at the end of the graph, so nothing is lost) and the logits never exist
  in full.
- :func:`rope`: rotary embedding with a hand-written backward (the transpose rotation), no
  ``cat`` and no saved intermediates.
- :func:`swiglu`: ``silu(gate) * up`` with its backward written straight into one buffer laid
  out like the fused gate/up projection's output, so autograd needs no concatenation.

``torch.compile`` was measured as the alternative on this machine (torch 2.13 CPU): ~40 s to
compile and a slower step, so these hand-written functions are used instead.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# Rows of logits handled at once. None: chosen from the model width by :func:`ce_chunk_rows`; tests
# set an int to force ragged chunks.
CE_CHUNK_ROWS: int | None = None
# Below this target probability, -log(p) loses precision (or is inf); such rows use logsumexp.
_TINY = 1e-30


# ----- output projection + cross-entropy ------------------------------------------------------
def ce_chunk_rows(d_model: int) -> int:
    """Rows of logits per chunk: the largest power of two ≤ d_model, within [64, 256].

    A chunk runs three GEMMs: (c, D) @ (D, V), (c, V) @ (V, D) and (V, c) @ (c, D). With a
    narrow model they move more memory than they compute, so the chunk's (c, V) probabilities
    should stay in the core's own cache (64 × 8192 × 4 B = 2 MB); with a wide one, more rows make
    the products more efficient. Measured on one thread (V = 8192, Intel Xeon, 2026-12-03),
    GFLOP/s of the whole function: D = 64: 48 at 64 rows vs 32 at 256 rows (two threads: 92 vs
    59; an `xs` proxy run 16-18% faster end to end, two 1-thread runs at once); D = 192: 78 at
    128 vs 58 at 256; D = 320: 88 at 256 vs 80 at 128. The rule depends on the width only, never
    on the machine or the thread count, so a run's numbers do not change with either (the
    chunking sets the order of the sums).
    """
    if CE_CHUNK_ROWS is not None:
        return CE_CHUNK_ROWS
    return max(64, min(256, 1 << (max(1, d_model).bit_length() - 1)))


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        # h (N, D), weight (V, D), targets (N,) -> mean loss, a 0-dim tensor
        n = h.shape[0]
        need_grad = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        grad_h = torch.empty_like(h) if need_grad else None
        grad_w = torch.zeros_like(weight) if need_grad else None
        total = h.new_zeros(())
        chunk = ce_chunk_rows(h.shape[1])
        for start in range(0, n, chunk):
            h_c, y_c = h[start : start + chunk], targets[start : start + chunk]
            rows = torch.arange(h_c.shape[0])
            logits = h_c @ weight.t()  # (c, V)
            p = torch.softmax(logits, dim=-1)  # (c, V)
            p_y = p[rows, y_c]  # (c,)
            loss_c = -torch.log(p_y)
            tiny = p_y < _TINY
            if bool(tiny.any()):
                loss_c[tiny] = torch.logsumexp(logits[tiny], dim=-1) - logits[tiny, y_c[tiny]]
            total += loss_c.sum()
            if need_grad:
                p[rows, y_c] -= 1.0  # d(sum of losses)/d(logits) = softmax - onehot
                torch.mm(p, weight, out=grad_h[start : start + chunk])  # (c, D)
                grad_w.addmm_(p.t(), h_c)  # (V, D)
        if need_grad:
            ctx.save_for_backward(grad_h, grad_w)
        ctx.n = n
        return total / n

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):  # noqa: ANN205
        grad_h, grad_w = ctx.saved_tensors
        scale = grad_out / ctx.n
        return grad_h * scale, grad_w * scale, None


def linear_cross_entropy(h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy (nats/token) of ``softmax(h @ weight.T)`` against ``targets``.

    Args:
        h: (N, D) final hidden states.
        weight: (V, D) output projection (the tied embedding).
        targets: (N,) token ids.
    """
    return _LinearCrossEntropy.apply(h, weight, targets)


def linear_cross_entropy_reference(
    h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor
) -> torch.Tensor:
    return F.cross_entropy(h @ weight.t(), targets)


@torch.no_grad()
def token_losses(h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-token cross-entropy (N,) in nats, chunked like :func:`linear_cross_entropy`."""
    out = torch.empty(h.shape[0], dtype=h.dtype)
    chunk = ce_chunk_rows(h.shape[1])
    for start in range(0, h.shape[0], chunk):
        logits = h[start : start + chunk] @ weight.t()  # (c, V)
        out[start : start + chunk] = F.cross_entropy(logits, targets[start : start + chunk], reduction="none")
    return out


# ----- rotary embedding -----------------------------------------------------------------------
def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, sign: float) -> torch.Tensor:
    # pairs (x1, x2) = the two halves of the last dim; out = (x1·cos - s·x2·sin, x2·cos + s·x1·sin)
    x1, x2 = x.chunk(2, dim=-1)
    out = torch.empty(x.shape, dtype=x.dtype)
    o1, o2 = out.chunk(2, dim=-1)
    torch.mul(x1, cos, out=o1)
    o1.addcmul_(x2, sin, value=-sign)
    torch.mul(x2, cos, out=o2)
    o2.addcmul_(x1, sin, value=sign)
    return out


class _Rope(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        ctx.save_for_backward(cos, sin)
        return _rotate(x, cos, sin, 1.0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # noqa: ANN205
        cos, sin = ctx.saved_tensors
        return _rotate(grad, cos, sin, -1.0), None, None  # a rotation's inverse is its transpose


def rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x (..., T, Hd) by position with tables cos, sin (T, Hd/2); halves are the pairs."""
    return _Rope.apply(x, cos, sin)


def rope_reference(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)


# ----- SwiGLU ---------------------------------------------------------------------------------
class _SwiGLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, gate_up: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        ctx.save_for_backward(gate_up)
        gate, up = gate_up.chunk(2, dim=-1)
        return F.silu(gate).mul_(up)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # noqa: ANN205
        (gate_up,) = ctx.saved_tensors
        gate, up = gate_up.chunk(2, dim=-1)
        out = torch.empty_like(gate_up)
        d_gate, d_up = out.chunk(2, dim=-1)
        s = torch.sigmoid(gate)
        silu = gate * s
        torch.mul(silu, grad, out=d_up)  # d/d up = silu(gate) · grad
        dsilu = silu.mul(s).neg_().add_(silu).add_(s)  # silu'(gate) = s + silu · (1 - s)
        torch.mul(grad, up, out=d_gate).mul_(dsilu)
        return out


def swiglu(gate_up: torch.Tensor) -> torch.Tensor:
    """``silu(gate) * up`` for gate_up (..., 2F) holding gate then up; returns (..., F)."""
    return _SwiGLU.apply(gate_up)


def swiglu_reference(gate_up: torch.Tensor) -> torch.Tensor:
    gate, up = gate_up.chunk(2, dim=-1)
    return F.silu(gate) * up
