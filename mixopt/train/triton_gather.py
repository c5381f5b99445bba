"""Triton kernels that gather rows into the grouped GEMM instead of copying them (ScatterMoE-style).

The torch path in :mod:`mixopt.train.kernels` materialises the expert-sorted copy of the input
(T·K·D) and un-permutes the output with another gather. These kernels read each expert's rows
straight from the token-major tensors through an index (``in_idx``) and write results straight to
their token-major slot (``out_idx``), as ScatterMoE (Tan et al. 2024) does, so neither permuted
copy exists in forward, and backward needs only the (N, 2F) and (N, F) activations it must have.

Kernels:

- :func:`gather_grouped_mm`: ``Y[out_idx[p]] = X[in_idx[p]] @ W[e(p)]`` for the expert-sorted
  slots p (either index optional). Programs are (row block, column block); the row blocks are laid
  out per expert so that no block straddles two experts (a block table made on the device, with
  an upper bound on its length, so nothing waits on the host).
- :func:`grouped_wgrad`: ``dW[e] = X[x_idx[p]]ᵀ @ DY[dy_idx[p]]`` summed over expert e's slots.
- :func:`swiglu_forward` / :func:`swiglu_backward`: SwiGLU on the (N, 2F) gate/up buffer in one
  pass each (torch's elementwise kernels take the strided halves one operation at a time, about a
  fifth of the layer's GPU time measured on an H200); :mod:`mixopt.train.kernels` uses them for
  contiguous CUDA tensors when triton is installed, on both the grouped and the Triton path.

Requires ``triton`` (the optional extra ``mixopt[triton]``) and a GPU; under ``TRITON_INTERPRET=1``
the same kernels run on CPU tensors (slowly), which is how the tests check them. The kernels are
built on first use, after reading ``TRITON_INTERPRET``, so a test can switch the interpreter on.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import torch

from mixopt.errors import MixoptError
from mixopt.train import kernels
from mixopt.train.kernels import gate_rows, gated_swiglu_backward, make_routing


@dataclass(frozen=True)
class Blocks:
    """Tile shape and launch settings of both kernels.

    ``m`` rows of slots per program (and the row step of the weight-gradient loop is ``k``), ``n``
    output columns (and ``n`` × ``n`` weight-gradient tiles), ``k`` the reduction step; ``warps``
    and ``stages`` as Triton's ``num_warps`` and ``num_stages``.
    """

    m: int = 64
    n: int = 64
    k: int = 32
    warps: int = 4
    stages: int = 2


# Small tiles for the interpreter and fp32 (the tests' shapes); larger ones for bf16/fp16 on a
# GPU, where 64×64 tiles leave the tensor cores waiting on loads.
SMALL = Blocks()
GPU_BF16 = Blocks(m=128, n=128, k=64, warps=8, stages=3)


def blocks_for(dtype: torch.dtype) -> Blocks:
    """The tiles a call uses: :data:`GPU_BF16` for 16-bit inputs on a GPU, :data:`SMALL` otherwise."""
    if dtype in (torch.bfloat16, torch.float16) and not _interpreting():
        return GPU_BF16
    return SMALL


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


@functools.cache
def _build(interpret: bool):  # noqa: ANN202 - returns triton and the four jitted kernels
    del interpret  # part of the cache key only: triton.jit reads TRITON_INTERPRET when it decorates
    try:
        import triton
        import triton.language as tl
    except ImportError as exc:
        raise MixoptError(
            "the triton MoE kernel needs triton; install it with "
            "`pip install 'mixopt[triton]'` or use kernel = \"grouped\""
        ) from exc

    @triton.jit
    def gmm_kernel(
        X,
        W,
        Y,
        in_idx,
        out_idx,
        blk_e,
        blk_start,
        blk_end,
        n_in,
        n_out,
        sx0,
        sx1,
        sw0,
        sw1,
        sw2,
        sy0,
        sy1,
        n_experts,
        GATHER: tl.constexpr,
        SCATTER: tl.constexpr,
        PREC: tl.constexpr,
        BM: tl.constexpr,
        BN: tl.constexpr,
        BK: tl.constexpr,
    ):
        pid_m = tl.program_id(0)
        pid_n = tl.program_id(1)
        e = tl.load(blk_e + pid_m)
        if e < n_experts:  # blocks past the table's real length hold e == n_experts: nothing to do
            start = tl.load(blk_start + pid_m)
            end = tl.load(blk_end + pid_m)
            rows = start + tl.arange(0, BM)
            mask_m = rows < end
            if GATHER:  # noqa: SIM108 - a constexpr branch, resolved when the kernel compiles
                src = tl.load(in_idx + rows, mask=mask_m, other=0)
            else:
                src = rows
            cols = pid_n * BN + tl.arange(0, BN)
            mask_n = cols < n_out
            acc = tl.zeros((BM, BN), dtype=tl.float32)
            for k0 in range(0, n_in, BK):
                ks = k0 + tl.arange(0, BK)
                mask_k = ks < n_in
                a = tl.load(
                    X + src[:, None] * sx0 + ks[None, :] * sx1,
                    mask=mask_m[:, None] & mask_k[None, :],
                    other=0.0,
                )
                b = tl.load(
                    W + e * sw0 + ks[:, None] * sw1 + cols[None, :] * sw2,
                    mask=mask_k[:, None] & mask_n[None, :],
                    other=0.0,
                )
                acc += tl.dot(a, b, input_precision=PREC)
            if SCATTER:  # noqa: SIM108 - a constexpr branch, resolved when the kernel compiles
                dst = tl.load(out_idx + rows, mask=mask_m, other=0)
            else:
                dst = rows
            tl.store(
                Y + dst[:, None] * sy0 + cols[None, :] * sy1,
                acc.to(Y.dtype.element_ty),
                mask=mask_m[:, None] & mask_n[None, :],
            )

    @triton.jit
    def wgrad_kernel(
        X,
        DY,
        DW,
        x_idx,
        dy_idx,
        offs,
        n_in,
        n_out,
        sx0,
        sx1,
        sd0,
        sd1,
        sw0,
        sw1,
        sw2,
        GATHER_X: tl.constexpr,
        GATHER_DY: tl.constexpr,
        PREC: tl.constexpr,
        BI: tl.constexpr,
        BO: tl.constexpr,
        BM: tl.constexpr,
    ):
        e = tl.program_id(0)
        ii = tl.program_id(1) * BI + tl.arange(0, BI)
        oo = tl.program_id(2) * BO + tl.arange(0, BO)
        mask_i = ii < n_in
        mask_o = oo < n_out
        start = tl.load(offs + e - 1, mask=e > 0, other=0)
        end = tl.load(offs + e)
        acc = tl.zeros((BI, BO), dtype=tl.float32)
        for m0 in range(start, end, BM):
            rows = m0 + tl.arange(0, BM)
            mask_m = rows < end
            if GATHER_X:  # noqa: SIM108 - a constexpr branch, resolved when the kernel compiles
                xr = tl.load(x_idx + rows, mask=mask_m, other=0)
            else:
                xr = rows
            if GATHER_DY:  # noqa: SIM108 - a constexpr branch, resolved when the kernel compiles
                dr = tl.load(dy_idx + rows, mask=mask_m, other=0)
            else:
                dr = rows
            xt = tl.load(
                X + xr[None, :] * sx0 + ii[:, None] * sx1, mask=mask_i[:, None] & mask_m[None, :], other=0.0
            )  # (BI, BM)
            dy = tl.load(
                DY + dr[:, None] * sd0 + oo[None, :] * sd1, mask=mask_m[:, None] & mask_o[None, :], other=0.0
            )  # (BM, BO)
            acc += tl.dot(xt, dy, input_precision=PREC)
        tl.store(
            DW + e * sw0 + ii[:, None] * sw1 + oo[None, :] * sw2,
            acc.to(DW.dtype.element_ty),
            mask=mask_i[:, None] & mask_o[None, :],
        )

    @triton.jit
    def swiglu_fwd_kernel(H, S, A, n_hidden, HAS_SCALE: tl.constexpr, BLOCK: tl.constexpr):
        row = tl.program_id(0).to(tl.int64)
        cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
        mask = cols < n_hidden
        gate = tl.load(H + row * 2 * n_hidden + cols, mask=mask, other=0.0).to(tl.float32)
        up = tl.load(H + row * 2 * n_hidden + n_hidden + cols, mask=mask, other=0.0).to(tl.float32)
        a = gate * tl.sigmoid(gate) * up
        if HAS_SCALE:
            a = a * tl.load(S + row).to(tl.float32)
        tl.store(A + row * n_hidden + cols, a.to(A.dtype.element_ty), mask=mask)

    @triton.jit
    def swiglu_bwd_kernel(H, G, S, DH, A, n_hidden, HAS_SCALE: tl.constexpr, BLOCK: tl.constexpr):
        row = tl.program_id(0).to(tl.int64)
        cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
        mask = cols < n_hidden
        gate = tl.load(H + row * 2 * n_hidden + cols, mask=mask, other=0.0).to(tl.float32)
        up = tl.load(H + row * 2 * n_hidden + n_hidden + cols, mask=mask, other=0.0).to(tl.float32)
        g = tl.load(G + row * n_hidden + cols, mask=mask, other=0.0).to(tl.float32)
        if HAS_SCALE:
            g = g * tl.load(S + row).to(tl.float32)
        sig = tl.sigmoid(gate)
        silu = gate * sig
        d_gate = g * up * sig * (1.0 + gate * (1.0 - sig))
        tl.store(DH + row * 2 * n_hidden + cols, d_gate.to(DH.dtype.element_ty), mask=mask)
        tl.store(DH + row * 2 * n_hidden + n_hidden + cols, (g * silu).to(DH.dtype.element_ty), mask=mask)
        tl.store(A + row * n_hidden + cols, (silu * up).to(A.dtype.element_ty), mask=mask)

    return triton, gmm_kernel, wgrad_kernel, swiglu_fwd_kernel, swiglu_bwd_kernel


def _kernels():  # noqa: ANN202
    return _build(_interpreting())


def _check_device(*ts: torch.Tensor) -> None:
    if not _interpreting() and any(t.device.type != "cuda" for t in ts):
        raise MixoptError(
            "the triton MoE kernel runs on a CUDA device (or on CPU under TRITON_INTERPRET=1); "
            'use kernel = "grouped" on CPU'
        )


def _prec(dtype: torch.dtype) -> str:
    # fp32 inputs: exact IEEE products (tests compare at 1e-4); bf16/fp16: the tensor-core default.
    return "ieee" if dtype == torch.float32 else "tf32"


def _block_table(offs_E: torch.Tensor, n_rows: int, bm: int) -> tuple[torch.Tensor, ...]:
    """Row blocks laid out per expert: (expert, start row, end row) per block, padded with expert E.

    Its length is the bound N // BM + E (each expert adds at most one partial block), so the grid
    size is known without reading the counts back to the host.
    """
    E = offs_E.numel()
    offs = offs_E.long()
    starts_E = offs - torch.diff(offs, prepend=offs.new_zeros(1))
    nblk_E = (offs - starts_E + bm - 1) // bm
    cum_E = torch.cumsum(nblk_E, 0)
    n_blocks = n_rows // bm + E
    b = torch.arange(n_blocks, device=offs.device)
    e_B = torch.searchsorted(cum_E, b, right=True)  # expert of each block; E past the end
    e_safe = e_B.clamp(max=E - 1)
    first_B = cum_E[e_safe] - nblk_E[e_safe]
    start_B = starts_E[e_safe] + (b - first_B) * bm
    return e_B.contiguous(), start_B.contiguous(), offs[e_safe].contiguous()


def gather_grouped_mm(
    x: torch.Tensor,
    w: torch.Tensor,
    offs_E: torch.Tensor,
    *,
    in_idx: torch.Tensor | None = None,
    out_idx: torch.Tensor | None = None,
    out_rows: int | None = None,
    blocks: Blocks | None = None,
) -> torch.Tensor:
    """``Y[out_idx[p]] = X[in_idx[p]] @ W[e(p)]`` for the N expert-sorted slots p (no gradients).

    Args:
        x: (rows of X, I); row ``in_idx[p]`` (or p) feeds slot p.
        w: (E, I, O) expert weights (any strides).
        offs_E: int32 end of each expert's slots; offs_E[-1] = N.
        in_idx, out_idx: optional int64 (N,) row maps.
        out_rows: rows of Y (default N).
        blocks: tiles (default :func:`blocks_for` x's dtype).
    """
    triton, gmm_kernel, *_ = _kernels()
    _check_device(x, w)
    idx = in_idx if in_idx is not None else out_idx
    n = int(idx.numel()) if idx is not None else int(x.shape[0])
    E, n_in, n_out = w.shape
    b = blocks or blocks_for(x.dtype)
    y = x.new_empty(out_rows if out_rows is not None else n, n_out)
    blk_e, blk_s, blk_end = _block_table(offs_E, n, b.m)
    grid = (blk_e.numel(), triton.cdiv(n_out, b.n))
    gmm_kernel[grid](
        x,
        w,
        y,
        blk_e if in_idx is None else in_idx,
        blk_e if out_idx is None else out_idx,
        blk_e,
        blk_s,
        blk_end,
        n_in,
        n_out,
        x.stride(0),
        x.stride(1),
        w.stride(0),
        w.stride(1),
        w.stride(2),
        y.stride(0),
        y.stride(1),
        E,
        GATHER=in_idx is not None,
        SCATTER=out_idx is not None,
        PREC=_prec(x.dtype),
        BM=b.m,
        BN=b.n,
        BK=b.k,
        num_warps=b.warps,
        num_stages=b.stages,
    )
    return y


def grouped_wgrad(
    x: torch.Tensor,
    dy: torch.Tensor,
    offs_E: torch.Tensor,
    *,
    x_idx: torch.Tensor | None = None,
    dy_idx: torch.Tensor | None = None,
    blocks: Blocks | None = None,
) -> torch.Tensor:
    """``dW[e] = Σ_{p in expert e} X[x_idx[p]]ᵀ · DY[dy_idx[p]]``, shape (E, I, O)."""
    triton, _, wgrad_kernel, *_ = _kernels()
    _check_device(x, dy)
    E = offs_E.numel()
    n_in, n_out = x.shape[1], dy.shape[1]
    b = blocks or blocks_for(x.dtype)
    dw = x.new_empty(E, n_in, n_out)
    grid = (E, triton.cdiv(n_in, b.n), triton.cdiv(n_out, b.n))
    wgrad_kernel[grid](
        x,
        dy,
        dw,
        offs_E if x_idx is None else x_idx,
        offs_E if dy_idx is None else dy_idx,
        offs_E,
        n_in,
        n_out,
        x.stride(0),
        x.stride(1),
        dy.stride(0),
        dy.stride(1),
        dw.stride(0),
        dw.stride(1),
        dw.stride(2),
        GATHER_X=x_idx is not None,
        GATHER_DY=dy_idx is not None,
        PREC=_prec(x.dtype),
        BI=b.n,
        BO=b.n,
        BM=b.k,
        num_warps=b.warps,
        num_stages=b.stages,
    )
    return dw


SWIGLU_BLOCK = 1024


def swiglu_forward(h_NH: torch.Tensor, scale_N1: torch.Tensor | None = None) -> torch.Tensor:
    """:func:`mixopt.train.kernels.swiglu_forward` in one pass (gate and up are the two halves of
    each row of a contiguous ``h_NH``), computed in fp32 and stored in h's dtype."""
    triton, _, _, fwd, _ = _kernels()
    _check_device(h_NH)
    N, H = h_NH.shape
    a = h_NH.new_empty(N, H // 2)
    scale = scale_N1 if scale_N1 is not None else h_NH
    fwd[(N, triton.cdiv(H // 2, SWIGLU_BLOCK))](
        h_NH, scale, a, H // 2, HAS_SCALE=scale_N1 is not None, BLOCK=SWIGLU_BLOCK
    )
    return a


def swiglu_backward(
    h_NH: torch.Tensor, g_NF: torch.Tensor, scale_N1: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`mixopt.train.kernels.swiglu_backward` in one pass: reads h and g once, writes the
    gradient and the activation once."""
    triton, _, _, _, bwd = _kernels()
    _check_device(h_NH, g_NF)
    N, H = h_NH.shape
    dh = torch.empty_like(h_NH)
    a = h_NH.new_empty(N, H // 2)
    scale = scale_N1 if scale_N1 is not None else h_NH
    bwd[(N, triton.cdiv(H // 2, SWIGLU_BLOCK))](
        h_NH, g_NF, scale, dh, a, H // 2, HAS_SCALE=scale_N1 is not None, BLOCK=SWIGLU_BLOCK
    )
    return dh, a


class _TritonRoutedExperts(torch.autograd.Function):
    """The same computation as :class:`mixopt.train.kernels._RoutedExperts` (gates folded into
    the down projection's input), with every permutation read or written through an index."""

    @staticmethod
    def forward(ctx, x_TD, gates_TK, w13_EDH, w2_EFD, tok_N, order_N, inv_N, offs_E):  # noqa: ANN001, ANN205
        T, K = gates_TK.shape
        D = x_TD.shape[1]
        h_NH = gather_grouped_mm(x_TD, w13_EDH, offs_E, in_idx=tok_N)  # rows read through tok_N
        a_NF = kernels.swiglu_forward(h_NH, gate_rows(gates_TK, order_N, h_NH.dtype))
        y_TKD = gather_grouped_mm(a_NF, w2_EFD, offs_E, out_idx=order_N, out_rows=T * K).view(T, K, D)
        ctx.save_for_backward(x_TD, gates_TK, w13_EDH, w2_EFD, tok_N, order_N, inv_N, offs_E, h_NH)
        return y_TKD.sum(1)

    @staticmethod
    def backward(ctx, g_TD):  # noqa: ANN001, ANN205
        x_TD, gates_TK, w13_EDH, w2_EFD, tok_N, order_N, inv_N, offs_E, h_NH = ctx.saved_tensors
        T, K = gates_TK.shape
        D = x_TD.shape[1]
        g_TD = g_TD.contiguous()
        u_NF = gather_grouped_mm(g_TD, w2_EFD.transpose(1, 2), offs_E, in_idx=tok_N)
        g_hNH, ga_NF, g_gates = gated_swiglu_backward(
            h_NH, u_NF, gates_TK, order_N, inv_N, ctx.needs_input_grad[1]
        )
        g_w2 = grouped_wgrad(ga_NF, g_TD, offs_E, dy_idx=tok_N) if ctx.needs_input_grad[3] else None
        g_w13 = grouped_wgrad(x_TD, g_hNH, offs_E, x_idx=tok_N) if ctx.needs_input_grad[2] else None
        g_x = None
        if ctx.needs_input_grad[0]:
            g_x = (
                gather_grouped_mm(g_hNH, w13_EDH.transpose(1, 2), offs_E, out_idx=order_N, out_rows=T * K)
                .view(T, K, D)
                .sum(1)
            )
        return g_x, g_gates, g_w13, g_w2, None, None, None, None


def routed_experts(
    x_TD: torch.Tensor,
    gates_TK: torch.Tensor,
    ids_TK: torch.Tensor,
    w13_EDH: torch.Tensor,
    w2_EFD: torch.Tensor,
) -> torch.Tensor:
    """Same contract as :func:`mixopt.train.kernels.routed_experts`, with the gathering Triton kernels."""
    r = make_routing(ids_TK, w13_EDH.shape[0])
    return _TritonRoutedExperts.apply(
        x_TD.contiguous(), gates_TK, w13_EDH, w2_EFD, r.tok_N, r.order_N, r.inv_N, r.offs_E
    )
