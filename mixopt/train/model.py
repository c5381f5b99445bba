"""The final model: a decoder-only transformer whose feed-forward layers are mixtures of experts.

The attention, RMSNorm, rotary tables, SwiGLU and the chunked output cross-entropy are the proxy
model's (:mod:`mixopt.proxy.model`, :mod:`mixopt.proxy.fused`): the final model differs from the
proxies only in its feed-forward layers, so what the proxies learned about a mixture transfers
through the same architecture. ``LMConfig.dense`` swaps each MoE layer for the proxy's SwiGLU of
the same active width (the dense twin).

Shape legend: B batch, S sequence (context), D width, V vocabulary, G groups (domains).
The model returns the mean cross-entropy and, separately, the routers' auxiliary losses (z-loss,
and the Switch loss when chosen), which the trainer adds to the loss it minimises.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from mixopt.proxy import fused
from mixopt.proxy.model import Attention, ModelConfig, RMSNorm, SwiGLU, rope_tables
from mixopt.train.config import LMConfig
from mixopt.train.moe import MoE


def proxy_config(cfg: LMConfig, *, fused_ops: bool) -> ModelConfig:
    """The proxy model config whose attention and (dense) SwiGLU these blocks reuse."""
    return ModelConfig(
        vocab_size=cfg.vocab_size,
        n_layer=cfg.n_layer,
        d_model=cfg.d_model,
        n_head=cfg.n_head,
        context=cfg.context,
        ffn_hidden=cfg.dense_hidden,
        fused=fused_ops,
    )


class Block(nn.Module):
    def __init__(self, cfg: LMConfig, pcfg: ModelConfig) -> None:
        super().__init__()
        self.norm1 = RMSNorm(cfg.d_model)
        self.attn = Attention(pcfg)
        self.norm2 = RMSNorm(cfg.d_model)
        self.ffn: nn.Module = SwiGLU(pcfg) if cfg.dense else MoE(cfg.moe_config())

    def forward(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x = x + self.attn(self.norm1(x), cos, sin)
        if isinstance(self.ffn, MoE):
            y, aux = self.ffn(self.norm2(x))
            return x + y, aux
        return x + self.ffn(self.norm2(x)), x.new_zeros((), dtype=torch.float32)


class MoELM(nn.Module):
    """Decoder-only MoE language model with tied input and output embeddings.

    Args:
        cfg: the shape.
        fused_ops: use the proxy's hand-fused CPU functions (RoPE, SwiGLU, chunked cross-entropy);
            they are CPU-only, so pass False on a GPU.
    """

    def __init__(self, cfg: LMConfig, *, fused_ops: bool = True) -> None:
        super().__init__()
        self.cfg = cfg
        self.fused_ops = fused_ops
        pcfg = proxy_config(cfg, fused_ops=fused_ops)
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg, pcfg) for _ in range(cfg.n_layer))
        self.norm = RMSNorm(cfg.d_model)
        cos, sin = rope_tables(cfg.d_model // cfg.n_head, cfg.context, 10000.0)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # GPT-2 style, as the proxy: N(0, 0.02), and every projection that writes into the residual
        # stream (attention out, SwiGLU/expert down) scaled by 1/sqrt(2 · n_layer).
        out_std = 0.02 / math.sqrt(2 * self.cfg.n_layer)
        for name, p in self.named_parameters():
            if p.dim() == 2 and not name.endswith("router.weight"):
                std = out_std if name.endswith(("proj.weight", "down.weight")) else 0.02
                nn.init.normal_(p, mean=0.0, std=std)
        for layer in self.moe_layers():
            layer.reset_parameters(std=0.02, out_std=out_std)

    def moe_layers(self) -> list[MoE]:
        return [b.ffn for b in self.blocks if isinstance(b.ffn, MoE)]

    def hidden(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Final normed hidden states (B, S, D) for ids (B, S), and the summed auxiliary loss."""
        S = idx.shape[1]
        cos, sin = self.rope_cos[:S], self.rope_sin[:S]
        x = self.embed(idx)  # (B, S, D)
        aux = x.new_zeros((), dtype=torch.float32)
        for block in self.blocks:
            x, a = block(x, cos, sin)
            aux = aux + a
        return self.norm(x), aux

    def _ce(self, h: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if self.fused_ops:
            return fused.linear_cross_entropy(h, self.embed.weight, targets)
        return fused.linear_cross_entropy_reference(h, self.embed.weight, targets)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean next-token cross-entropy (nats/token) over ids (B, S) → targets (B, S), and aux loss."""
        h, aux = self.hidden(idx)
        return self._ce(h.view(-1, self.cfg.d_model), targets.reshape(-1)), aux

    def group_losses(
        self, idx: torch.Tensor, targets: torch.Tensor, groups: list[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean cross-entropy of each group of rows (e.g. each domain's sequences), and aux loss.

        Args:
            groups: G index tensors of rows of the batch (disjoint, non-empty).

        Returns:
            (G,) losses and the aux loss; Σ_g (rows_g / B) · loss_g is the batch mean.
        """
        h, aux = self.hidden(idx)
        losses = [
            self._ce(h[rows].reshape(-1, self.cfg.d_model), targets[rows].reshape(-1)) for rows in groups
        ]
        return torch.stack(losses), aux

    @torch.no_grad()
    def token_losses(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Per-token cross-entropy (B, S) in nats, for evaluation (inputs moved to the model's device)."""
        dev = self.embed.weight.device
        h, _ = self.hidden(idx.to(dev))
        h, t = h.reshape(-1, self.cfg.d_model), targets.reshape(-1).to(dev)
        if self.fused_ops:
            return fused.token_losses(h, self.embed.weight, t).view(targets.shape)
        return torch.nn.functional.cross_entropy(h @ self.embed.weight.t(), t, reduction="none").view(
            targets.shape
        )

    @torch.no_grad()
    def end_step(self) -> list[float]:
        """After an optimizer step: move every router's balancing bias; the step's MaxVio per layer."""
        return [layer.router.update_bias() for layer in self.moe_layers()]

    def routing(self) -> list[torch.Tensor]:
        """The expert ids (B·S, K) each MoE layer chose in the last forward pass."""
        return [layer.router.last_ids for layer in self.moe_layers() if layer.router.last_ids is not None]
