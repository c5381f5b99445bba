"""Routed-expert computation: the fused grouped-GEMM path and the naive loop it is tested against.

Shape suffixes (as in torchtitan's moe.py): T tokens, D model width, F expert hidden width,
H = 2F (gate and up projections side by side), E experts, K experts per token (top-k),
N = T·K routed token slots, in expert-sorted order where it matters.

The fused path (:func:`routed_experts`) is dropless: every token slot is computed, none is
dropped for capacity. It sorts the N slots by expert, runs one grouped GEMM per projection
(``torch._grouped_mm``: gate+up as one (E, D, H) weight, down as (E, F, D)) and adds the K
outputs of each token. Each slot's gate scales its SwiGLU activation before the down projection
(a row scale commutes with the GEMM), which touches (N, F) instead of (N, D) and leaves no
output to keep for the gates' gradient. Forward and backward are written by hand so
that every permutation is a *gather* (``index_select``) with the sort order or its inverse, never
a scatter-add (a permutation is a bijection, so the inverse gather is exact): scatter-adds are
slow and serial on CPUs and non-deterministic on GPUs. The permuted input copy is not saved for
backward; it is gathered again (T·K·D reads, cheap next to the GEMMs).

:func:`naive_experts` loops over the experts with plain autograd (as Hugging Face's Mixtral
does); it is the reference of the tests (it runs in float64 for gradcheck) and the baseline of
``mixopt bench moe``.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass

import torch
import torch.nn.functional as F

_GMM_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


@dataclass(frozen=True)
class Routing:
    """Where each routed token slot goes, computed once per layer call (no gradients).

    Attributes:
        tok_N: source token of each expert-sorted slot.
        order_N: flat slot index (t·K + k) of each expert-sorted slot.
        inv_N: sorted position of each flat slot (the inverse permutation of ``order_N``).
        counts_E: slots per expert.
        offs_E: int32 cumulative counts (the end row of each expert's group).
    """

    tok_N: torch.Tensor
    order_N: torch.Tensor
    inv_N: torch.Tensor
    counts_E: torch.Tensor
    offs_E: torch.Tensor


def make_routing(ids_TK: torch.Tensor, n_experts: int) -> Routing:
    """Sort the T·K slots of ``ids_TK`` (T, K) by expert (stable, so deterministic)."""
    K = ids_TK.shape[1]
    ids_N = ids_TK.reshape(-1)
    order_N = torch.argsort(ids_N, stable=True)
    inv_N = torch.empty_like(order_N)
    inv_N[order_N] = torch.arange(order_N.numel(), device=order_N.device)
    counts_E = torch.bincount(ids_N, minlength=n_experts)
    offs_E = torch.cumsum(counts_E, 0, dtype=torch.int32)
    return Routing(tok_N=order_N // K, order_N=order_N, inv_N=inv_N, counts_E=counts_E, offs_E=offs_E)


# ----- grouped GEMM ---------------------------------------------------------------------------
def _aligned(t: torch.Tensor) -> bool:
    # torch._grouped_mm needs the base address and the batch strides 16-byte aligned, and of the last
    # two dims one contiguous and the other's stride 16-byte aligned *whatever its size*: a dim of
    # size 1 (one routed slot in all, an expert width of 1) had passed here and raised in the op.
    step = 16 // t.element_size()
    lead = zip(t.stride()[:-2], t.shape[:-2], strict=True)
    if t.data_ptr() % 16 or any(s % step for s, n in lead if s != 1 and n > 1):
        return False
    (m, n), (sm, sn) = t.shape[-2:], t.stride()[-2:]
    if sn == 1 and sm >= max(1, n):  # row-major, as torch decides it
        return sm % step == 0
    return sm == 1 and sn >= max(1, m) and sn % step == 0


def _grouped_mm_loop(a: torch.Tensor, b: torch.Tensor, offs_E: torch.Tensor) -> torch.Tensor:
    ends = offs_E.tolist()
    starts = [0, *ends[:-1]]
    if b.dim() == 3:  # a (N, I) @ b (E, I, O) -> (N, O), rows of group e use b[e]
        out = a.new_empty(a.shape[0], b.shape[2])
        for e, (s, t) in enumerate(zip(starts, ends, strict=True)):
            if t > s:
                torch.mm(a[s:t], b[e], out=out[s:t])
        return out
    # a (I, N) @ b (N, O) -> (E, I, O): per group, the product over that group's columns/rows
    out = a.new_zeros(len(ends), a.shape[0], b.shape[1])
    for e, (s, t) in enumerate(zip(starts, ends, strict=True)):
        if t > s:
            torch.mm(a[:, s:t], b[s:t], out=out[e])
    return out


def grouped_mm(a: torch.Tensor, b: torch.Tensor, offs_E: torch.Tensor) -> torch.Tensor:
    """One GEMM per expert group, without gradients (the callers write their own backward).

    Two forms, as ``torch._grouped_mm``: ``a`` (N, I) and ``b`` (E, I, O) give (N, O), the rows
    of group e multiplied by ``b[e]``; ``a`` (I, N) and ``b`` (N, O) give (E, I, O), the weight
    gradient form. ``offs_E`` holds each group's end (int32, the last one equal to N).
    ``torch._grouped_mm`` is used where it applies (float32/bfloat16/float16, 16-byte aligned);
    otherwise (float64 for gradcheck, odd widths) a loop of ``torch.mm`` gives the same result.
    """
    if a.dtype in _GMM_DTYPES and b.dtype == a.dtype and _aligned(a) and _aligned(b):
        # Rows past the last offset are left unwritten by _grouped_mm; offs_E[-1] == N always here.
        return torch._grouped_mm(a, b, offs=offs_E)
    return _grouped_mm_loop(a, b, offs_E)


# ----- SwiGLU on the fused gate/up buffer -----------------------------------------------------
@functools.cache
def has_triton() -> bool:
    """Whether the optional ``triton`` package is installed."""
    return importlib.util.find_spec("triton") is not None


def _triton_swiglu(*ts: torch.Tensor) -> bool:
    # On a GPU, one Triton pass instead of torch's several elementwise kernels over strided halves.
    return all(t.is_cuda and t.is_contiguous() for t in ts) and has_triton()


def swiglu_forward(h_NH: torch.Tensor, scale_N1: torch.Tensor | None = None) -> torch.Tensor:
    """silu(gate) · up (· scale per row) for h (N, 2F) holding gate then up; returns (N, F)."""
    if _triton_swiglu(h_NH):
        from mixopt.train import triton_gather

        return triton_gather.swiglu_forward(h_NH, scale_N1)
    gate, up = h_NH.chunk(2, dim=-1)
    a = F.silu(gate).mul_(up)
    return a if scale_N1 is None else a.mul_(scale_N1)


def swiglu_backward(
    h_NH: torch.Tensor, g_NF: torch.Tensor, scale_N1: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient (N, 2F) of ``sum(g · scale · swiglu_forward(h))`` with respect to h, and the
    (unscaled) activation (N, F).

    The activation comes for free (silu(gate) is needed anyway), so backward recomputes it here
    instead of saving it in forward.
    """
    if _triton_swiglu(h_NH, g_NF):
        from mixopt.train import triton_gather

        return triton_gather.swiglu_backward(h_NH, g_NF, scale_N1)
    if scale_N1 is not None:
        g_NF = g_NF * scale_N1
    gate, up = h_NH.chunk(2, dim=-1)
    out = torch.empty_like(h_NH)
    d_gate, d_up = out.chunk(2, dim=-1)
    silu = F.silu(gate)
    torch.mul(silu, g_NF, out=d_up)
    torch.ops.aten.silu_backward.grad_input(g_NF * up, gate, grad_input=d_gate)  # one fused pass
    return out, silu.mul_(up)


def gate_rows(gates_TK: torch.Tensor, order_N: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(N, 1) gate of each expert-sorted slot, in ``dtype``."""
    return gates_TK.reshape(-1).index_select(0, order_N).to(dtype).unsqueeze(1)


def gated_swiglu_backward(
    h_NH: torch.Tensor,
    u_NF: torch.Tensor,
    gates_TK: torch.Tensor,
    order_N: torch.Tensor,
    inv_N: torch.Tensor,
    need_gates: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Backward through ``gate · swiglu(h)`` given ``u`` = d out / d (gate · swiglu(h)), sorted slots.

    Returns the gradient (N, 2F) with respect to h, the gated activation gate · swiglu(h) (N, F)
    that fed the down projection (for its weight gradient), and the gates' gradient (T, K) in the
    gates' dtype (``u · swiglu(h)`` per slot; None unless ``need_gates``).
    """
    gate_N1 = gate_rows(gates_TK, order_N, u_NF.dtype)
    g_hNH, a_NF = swiglu_backward(h_NH, u_NF, gate_N1)
    g_gates = None
    if need_gates:
        g_N = torch.linalg.vecdot(a_NF, u_NF)  # slot p's gate multiplies a_p, so d/d gate = a_p · u_p
        g_gates = g_N.index_select(0, inv_N).view(gates_TK.shape).to(gates_TK.dtype)
    return g_hNH, a_NF.mul_(gate_N1), g_gates


# ----- weight gradients -----------------------------------------------------------------------
def _accumulating_grad(param: torch.Tensor | None) -> torch.Tensor | None:
    """``param.grad`` when this backward may add its weight gradient into it in place.

    A fresh (E, ·, ·) weight gradient on a CPU is a large new allocation every step, and the
    page faults of that memory cost as much as a quarter of the expert weight-gradient GEMMs at
    E = 64 (measured). When the trainer keeps gradients allocated (``zero_grad(set_to_none=False)``),
    the GEMMs add straight into ``.grad``; the buffer is then detached from the parameter and
    returned, so autograd's AccumulateGrad re-attaches it without a copy (torchtitan's in-place
    WGRAD accumulation). Only when autograd will run the parameter's AccumulateGrad (not under
    ``torch.autograd.grad``), so the semantics of backward do not change.
    """
    if param is None or param.grad is None or param.grad.dtype != param.dtype:
        return None
    node = torch.autograd.graph.get_gradient_edge(param).node
    try:
        return param.grad if torch._C._will_engine_execute_node(node) else None
    except RuntimeError:  # autograd.grad() captures this leaf: it returns gradients, never accumulates
        return None


def _weight_grad(
    a_IN: torch.Tensor, b_NO: torch.Tensor, offs_E: torch.Tensor, param: torch.Tensor | None
) -> torch.Tensor:
    grad = _accumulating_grad(param)
    if grad is None:
        return grouped_mm(a_IN, b_NO, offs_E)
    ends = offs_E.tolist()
    for e, (s, t) in enumerate(zip([0, *ends[:-1]], ends, strict=True)):
        if t > s:
            grad[e].addmm_(a_IN[:, s:t], b_NO[s:t])
    param.grad = None  # handed back through autograd, which re-attaches this very buffer
    return grad


# ----- fused routed experts -------------------------------------------------------------------
class _RoutedExperts(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x_TD, gates_TK, w13_EDH, w2_EFD, tok_N, order_N, inv_N, offs_E):  # noqa: ANN001, ANN205
        T, K = gates_TK.shape
        D = x_TD.shape[1]
        x_ND = x_TD.index_select(0, tok_N)  # gather: permute token copies into expert order
        h_NH = grouped_mm(x_ND, w13_EDH, offs_E)
        # The gate scales each slot's row, which commutes with the down projection: scaling the
        # (N, F) activation before it costs less than scaling the (N, D) output, and the output
        # need not be kept for the gates' gradient (backward gets it from the activation instead).
        a_NF = swiglu_forward(h_NH, gate_rows(gates_TK, order_N, h_NH.dtype))
        y_ND = grouped_mm(a_NF, w2_EFD, offs_E)
        out_TD = y_ND.index_select(0, inv_N).view(T, K, D).sum(1)  # un-permute, add each token's K
        ctx.save_for_backward(x_TD, gates_TK, w13_EDH, w2_EFD, tok_N, order_N, inv_N, offs_E, h_NH)
        # Leaf CPU weights may take their gradient by in-place accumulation (see _accumulating_grad).
        ctx.params = tuple(
            w if (w.is_leaf and w.requires_grad and w.device.type == "cpu") else None
            for w in (w13_EDH, w2_EFD)
        )
        return out_TD

    @staticmethod
    def backward(ctx, g_TD):  # noqa: ANN001, ANN205
        x_TD, gates_TK, w13_EDH, w2_EFD, tok_N, order_N, inv_N, offs_E, h_NH = ctx.saved_tensors
        T, K = gates_TK.shape
        D = x_TD.shape[1]
        g_ND = g_TD.contiguous().index_select(0, tok_N)  # d out / d y for each slot: its token's g
        u_NF = grouped_mm(g_ND, w2_EFD.transpose(1, 2), offs_E)  # d out / d (gate · a)
        g_hNH, ga_NF, g_gates = gated_swiglu_backward(
            h_NH, u_NF, gates_TK, order_N, inv_N, ctx.needs_input_grad[1]
        )
        g_w2 = None
        if ctx.needs_input_grad[3]:
            g_w2 = _weight_grad(ga_NF.t(), g_ND, offs_E, ctx.params[1])
        g_w13 = None
        if ctx.needs_input_grad[2]:
            g_w13 = _weight_grad(x_TD.index_select(0, tok_N).t(), g_hNH, offs_E, ctx.params[0])
        g_x = None
        if ctx.needs_input_grad[0]:
            g_xND = grouped_mm(g_hNH, w13_EDH.transpose(1, 2), offs_E)
            g_x = g_xND.index_select(0, inv_N).view(T, K, D).sum(1)  # each token's K copies
        return g_x, g_gates, g_w13, g_w2, None, None, None, None


def routed_experts(
    x_TD: torch.Tensor,
    gates_TK: torch.Tensor,
    ids_TK: torch.Tensor,
    w13_EDH: torch.Tensor,
    w2_EFD: torch.Tensor,
    routing: Routing | None = None,
) -> torch.Tensor:
    """Dropless MoE expert output ``Σ_k gates[t, k] · expert_{ids[t, k]}(x[t])``, fused.

    Args:
        x_TD: (T, D) token inputs.
        gates_TK: (T, K) combine weights (any float dtype; gradients flow to it).
        ids_TK: (T, K) expert of each slot, int64 in [0, E).
        w13_EDH: (E, D, 2F) gate and up projections of every expert (gate first).
        w2_EFD: (E, F, D) down projections.
        routing: the sort of ``ids_TK`` if already made (:func:`make_routing`).

    Returns:
        (T, D) in x's dtype.
    """
    r = routing if routing is not None else make_routing(ids_TK, w13_EDH.shape[0])
    return _RoutedExperts.apply(x_TD, gates_TK, w13_EDH, w2_EFD, r.tok_N, r.order_N, r.inv_N, r.offs_E)


def naive_experts(
    x_TD: torch.Tensor,
    gates_TK: torch.Tensor,
    ids_TK: torch.Tensor,
    w13_EDH: torch.Tensor,
    w2_EFD: torch.Tensor,
) -> torch.Tensor:
    """The same as :func:`routed_experts` by a loop over experts with plain autograd (reference).

    Written as Hugging Face's Mixtral block is: per expert, find its (token, slot) pairs, run the
    expert on those rows and ``index_add_`` the gated result into a zero buffer.
    """
    out_TD = x_TD.new_zeros(x_TD.shape)
    F_ = w2_EFD.shape[1]
    for e in range(w13_EDH.shape[0]):
        tok, slot = torch.nonzero(ids_TK == e, as_tuple=True)
        if tok.numel() == 0:
            continue
        h = x_TD[tok] @ w13_EDH[e]  # (n, 2F)
        y = (F.silu(h[:, :F_]) * h[:, F_:]) @ w2_EFD[e]  # (n, D)
        out_TD.index_add_(0, tok, y * gates_TK[tok, slot].unsqueeze(1).to(y.dtype))
    return out_TD
