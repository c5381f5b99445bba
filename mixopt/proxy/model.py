"""The proxy model: a small decoder-only transformer, in nanoGPT's spirit.

Pre-norm blocks (RMSNorm), rotary position embeddings, a SwiGLU feed-forward layer, tied input and
output embeddings, and ``torch.nn.functional.scaled_dot_product_attention`` with a causal mask.
No biases. Everything runs in fp32 on the CPU (bf16 matmuls are not faster on most CPUs).

Shape legend used in the comments: B batch, T context (sequence length), D model width,
H heads, Hd head width (D / H), F feed-forward width, V vocabulary.

Speed notes (measured by ``mixopt bench proxy``): the query/key/value projections are one matmul
and the SwiGLU gate and up projections are another, because on a CPU a few large GEMMs beat many
small ones; rotary embeddings use the split-halves form (no strided interleave).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mixopt.proxy import fused


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """The shape of one proxy model.

    Attributes:
        vocab_size: V, the corpus tokenizer's vocabulary.
        n_layer: number of transformer blocks.
        d_model: D, the residual width.
        n_head: H, attention heads; D must be divisible by H and D / H must be even (RoPE pairs).
        context: T, the longest sequence the model sees.
        ffn_hidden: F, the SwiGLU hidden width (0: about 8/3 · D rounded up to a multiple of 16).
        rope_base: the RoPE frequency base.
        fused: use the hand-fused CPU functions of :mod:`mixopt.proxy.fused` (same maths; False
            runs the plain PyTorch reference, for tests and for measuring the difference).
    """

    vocab_size: int
    n_layer: int
    d_model: int
    n_head: int
    context: int
    ffn_hidden: int = 0
    rope_base: float = 10000.0
    fused: bool = True

    def __post_init__(self) -> None:
        if self.d_model % self.n_head or (self.d_model // self.n_head) % 2:
            raise ValueError(f"d_model {self.d_model} must split into {self.n_head} heads of even width")

    @property
    def hidden(self) -> int:
        if self.ffn_hidden:
            return self.ffn_hidden
        return 16 * math.ceil(8 * self.d_model / 3 / 16)

    def non_embedding_params(self) -> int:
        """Parameters outside the (tied) embedding: attention, feed-forward and norms."""
        d, f = self.d_model, self.hidden
        per_block = 4 * d * d + 3 * d * f + 2 * d
        return self.n_layer * per_block + d

    def matmul_params(self) -> int:
        """Parameters that take part in matmuls: every projection plus the tied output projection."""
        d, f = self.d_model, self.hidden
        return self.n_layer * (4 * d * d + 3 * d * f) + d * self.vocab_size

    def train_flops_per_token(self) -> float:
        """Training FLOPs per token: 6 · matmul parameters + 12 · n_layer · D · T (attention).

        The first term is the forward (2 FLOPs per multiply-add) plus backward (twice the forward)
        of every weight matmul; the second is the same for the two attention products QKᵀ and AV,
        counted over the full T×T square as in PaLM's appendix B (the causal mask halves the
        useful work, so this counts the attention term generously).
        """
        return 6.0 * self.matmul_params() + 12.0 * self.n_layer * self.d_model * self.context


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)


def rope_tables(head_dim: int, context: int, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables, each (T, Hd/2), for rotating the two halves of every head."""
    inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
    angles = torch.outer(torch.arange(context, dtype=torch.float64), inv_freq)
    return angles.cos().float(), angles.sin().float()


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_head = cfg.n_head
        self.rope = fused.rope if cfg.fused else fused.rope_reference
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=False)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        q, k, v = (
            self.qkv(x).view(B, T, 3, self.n_head, D // self.n_head).permute(2, 0, 3, 1, 4)
        )  # (B, H, T, Hd)
        q, k = self.rope(q, cos, sin), self.rope(k, cos, sin)  # pairs: (x[..., i], x[..., i + Hd/2])
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, H, T, Hd)
        return self.proj(y.transpose(1, 2).reshape(B, T, D))


class SwiGLU(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.gate_up = nn.Linear(cfg.d_model, 2 * cfg.hidden, bias=False)
        self.down = nn.Linear(cfg.hidden, cfg.d_model, bias=False)
        self.act = fused.swiglu if cfg.fused else fused.swiglu_reference

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(self.act(self.gate_up(x)))  # (B, T, 2F) -> silu(gate) * up (B, T, F) -> (B, T, D)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.norm1 = RMSNorm(cfg.d_model)
        self.attn = Attention(cfg)
        self.norm2 = RMSNorm(cfg.d_model)
        self.mlp = SwiGLU(cfg)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), cos, sin)
        return x + self.mlp(self.norm2(x))


class ProxyLM(nn.Module):
    """Decoder-only language model; ``forward(idx, targets)`` returns the mean next-token loss."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.norm = RMSNorm(cfg.d_model)
        cos, sin = rope_tables(cfg.d_model // cfg.n_head, cfg.context, cfg.rope_base)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # GPT-2 style: N(0, 0.02), and the projections that write into the residual stream scaled
        # down by 1/sqrt(2 · n_layer) so the residual's variance does not grow with depth.
        for name, p in self.named_parameters():
            if p.dim() == 2:
                std = (
                    0.02 / math.sqrt(2 * self.cfg.n_layer)
                    if name.endswith(("proj.weight", "down.weight"))
                    else 0.02
                )
                nn.init.normal_(p, mean=0.0, std=std)

    def hidden(self, idx: torch.Tensor) -> torch.Tensor:
        """Final normed hidden states (B, T, D) for token ids idx (B, T)."""
        T = idx.shape[1]
        cos, sin = self.rope_cos[:T], self.rope_sin[:T]
        x = self.embed(idx)  # (B, T, D)
        for block in self.blocks:
            x = block(x, cos, sin)
        return self.norm(x)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy (nats/token) of predicting targets (B, T) from idx (B, T)."""
        h = self.hidden(idx).view(-1, self.cfg.d_model)  # (B·T, D)
        ce = fused.linear_cross_entropy if self.cfg.fused else fused.linear_cross_entropy_reference
        return ce(h, self.embed.weight, targets.reshape(-1))  # tied output projection

    @torch.no_grad()
    def token_losses(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Per-token cross-entropy (B, T) in nats, for evaluation."""
        h = self.hidden(idx).view(-1, self.cfg.d_model)  # (B·T, D)
        return fused.token_losses(h, self.embed.weight, targets.reshape(-1)).view(targets.shape)
