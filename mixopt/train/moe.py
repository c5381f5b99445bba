"""The mixture-of-experts feed-forward layer: router, load balancing, routed and shared experts.

Shape suffixes (after torchtitan's moe.py): B batch, S sequence, T = B·S tokens, D model width,
F expert hidden width, E routed experts, K experts per token.

Routing is token-choice top-K. The router's logits and scores are computed in float32 whatever
the model's dtype (small errors there flip expert choices). Scores are ``softmax`` over the E
logits (Mixtral, Qwen3) or ``sigmoid`` (DeepSeek-V3); with K > 1 the K chosen scores are
renormalised to sum to 1 (``route_norm``); with K = 1 they are not, so the router still gets a
gradient from the language-model loss (Switch Transformer).

Load balancing (``balance``):

- ``"bias"`` (default, auxiliary-loss-free; Wang et al. 2024, DeepSeek-V3): a per-expert bias is
  added to the scores only to *select* experts, never to weight their outputs. Token counts are
  summed over every micro-batch of an optimizer step; after the step, :meth:`Router.update_bias`
  moves each bias by ``u · sign(mean load − load_i)`` (u = ``bias_rate``, 1e-3), so an overloaded
  expert becomes a little less likely to be chosen.
- ``"aux"``: the Switch Transformer auxiliary loss ``α · E · Σ_i f_i · P_i`` (f_i the share of slots
  routed to i, P_i the mean router probability of i), for comparison.
- ``"none"``.

The router z-loss ``z · mean(logsumexp(logits)²)`` (ST-MoE, z = 1e-3) keeps logits small in every
mode. Shared experts (DeepSeekMoE) are one dense SwiGLU of width ``n_shared · F`` that every token
passes through, added to the routed output.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from mixopt.errors import MixoptError
from mixopt.train import kernels

Kernel = Literal["grouped", "naive", "triton"]


@dataclass(frozen=True, kw_only=True)
class MoEConfig:
    """One MoE layer.

    Attributes:
        d_model: D.
        n_experts: E routed experts.
        top_k: K experts per token, 1 ≤ K ≤ E.
        expert_hidden: F, each expert's SwiGLU hidden width.
        n_shared: shared experts (each of width F) that every token uses; 0 = none.
        score_func: ``softmax`` or ``sigmoid`` router scores.
        route_norm: renormalise the K chosen scores to sum to 1 (only when K > 1).
        balance: ``bias`` (auxiliary-loss-free), ``aux`` (Switch loss) or ``none``.
        bias_rate: u, the bias step per optimizer step.
        aux_coef: α of the Switch loss.
        z_coef: router z-loss coefficient.
        kernel: ``grouped`` (fused, torch._grouped_mm), ``triton`` (gathering Triton kernels; GPU, or
            the Triton interpreter) or ``naive`` (loop over experts; reference).
    """

    d_model: int
    n_experts: int
    top_k: int
    expert_hidden: int
    n_shared: int = 0
    score_func: Literal["softmax", "sigmoid"] = "softmax"
    route_norm: bool = True
    balance: Literal["bias", "aux", "none"] = "bias"
    bias_rate: float = 1e-3
    aux_coef: float = 1e-2
    z_coef: float = 1e-3
    kernel: Kernel = "grouped"

    def __post_init__(self) -> None:
        for key in ("d_model", "n_experts", "top_k", "expert_hidden"):
            v = getattr(self, key)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise MixoptError(f"MoE layer: {key} is {v!r}; it must be a positive integer")
        if self.top_k > self.n_experts:
            raise MixoptError(
                f"MoE layer: top_k {self.top_k} is more than n_experts {self.n_experts}; "
                "choose top_k ≤ n_experts"
            )
        if not isinstance(self.n_shared, int) or self.n_shared < 0:
            raise MixoptError(f"MoE layer: n_shared is {self.n_shared!r}; use 0 or a positive integer")
        choices = {
            "score_func": ("softmax", "sigmoid"),
            "balance": ("bias", "aux", "none"),
            "kernel": ("grouped", "naive", "triton"),
        }
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise MixoptError(
                    f"MoE layer: {key} is {getattr(self, key)!r}; use one of {', '.join(allowed)}"
                )
        for key in ("bias_rate", "aux_coef", "z_coef"):
            v = getattr(self, key)
            if not isinstance(v, int | float) or not math.isfinite(v) or v < 0:
                raise MixoptError(f"MoE layer: {key} is {v!r}; it must be a finite number ≥ 0")


class Router(nn.Module):
    """Token-choice top-K router in float32 with an expert bias used only for selection."""

    def __init__(self, cfg: MoEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.weight = nn.Parameter(torch.empty(cfg.n_experts, cfg.d_model, dtype=torch.float32))
        # The bias is state, not a parameter: no gradient, changed only by update_bias; saved in
        # checkpoints so a resumed run routes exactly as the uninterrupted one.
        self.register_buffer("expert_bias", torch.zeros(cfg.n_experts, dtype=torch.float32))
        # Slots per expert summed over the micro-batches of the current optimizer step.
        self.register_buffer("step_load", torch.zeros(cfg.n_experts, dtype=torch.float32), persistent=False)
        self.last_ids: torch.Tensor | None = None
        nn.init.normal_(self.weight, std=0.02)

    def forward(self, x_TD: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Route tokens.

        Returns:
            gates_TK: float32 combine weights, ids_TK: int64 experts, aux: float32 scalar
            (z-loss plus the Switch loss when ``balance == "aux"``).
        """
        # Autocast would run this linear in bf16 whatever its inputs: routing stays in fp32.
        with torch.autocast(x_TD.device.type, enabled=False):
            return self._route(x_TD.float())

    def _route(self, x_TD: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        cfg = self.cfg
        logits_TE = F.linear(x_TD, self.weight.float())
        if cfg.score_func == "softmax":
            scores_TE = torch.softmax(logits_TE, dim=-1)
        else:
            scores_TE = torch.sigmoid(logits_TE)
        with torch.no_grad():
            choice_TE = scores_TE + self.expert_bias.float() if cfg.balance == "bias" else scores_TE
            ids_TK = torch.topk(choice_TE, cfg.top_k, dim=-1, sorted=False).indices
        gates_TK = scores_TE.gather(1, ids_TK)
        if cfg.route_norm and cfg.top_k > 1:
            gates_TK = gates_TK / (gates_TK.sum(-1, keepdim=True) + 1e-20)
        counts_E = torch.bincount(ids_TK.reshape(-1), minlength=cfg.n_experts).float()
        self.last_ids = ids_TK.detach()
        if self.training:
            self.step_load += counts_E
        aux = logits_TE.new_zeros(())
        if cfg.z_coef > 0:
            aux = aux + cfg.z_coef * torch.logsumexp(logits_TE, dim=-1).square().mean()
        if cfg.balance == "aux" and cfg.aux_coef > 0 and self.training:
            probs_TE = scores_TE
            if cfg.score_func == "sigmoid":
                probs_TE = scores_TE / scores_TE.sum(-1, keepdim=True)
            f_E = counts_E / counts_E.sum()
            aux = aux + cfg.aux_coef * cfg.n_experts * (f_E * probs_TE.mean(0)).sum()
        return gates_TK, ids_TK, aux

    @torch.no_grad()
    def update_bias(self) -> float:
        """End of an optimizer step: move the bias toward balance; return the step's max violation.

        The max violation (MaxVio, Wang et al. 2024) is ``(max_i load_i − mean load) / mean load``
        over the step's whole token counts; 0 is perfect balance.
        """
        load = self.step_load
        total = float(load.sum())
        if total == 0:
            return 0.0
        mean = load.mean()
        maxvio = float((load.max() - mean) / mean)
        if self.cfg.balance == "bias" and self.cfg.bias_rate > 0:
            self.expert_bias += self.cfg.bias_rate * torch.sign(mean - load)
        load.zero_()
        return maxvio


class SharedExperts(nn.Module):
    """A dense SwiGLU of width n_shared · F applied to every token."""

    def __init__(self, d_model: int, hidden: int) -> None:
        super().__init__()
        self.gate_up = nn.Linear(d_model, 2 * hidden, bias=False)
        self.down = nn.Linear(hidden, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)


class MoE(nn.Module):
    """Routed experts (+ optional shared experts); ``forward(x)`` returns ``(out, aux_loss)``."""

    def __init__(self, cfg: MoEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        E, D, Fh = cfg.n_experts, cfg.d_model, cfg.expert_hidden
        self.router = Router(cfg)
        self.w13 = nn.Parameter(torch.empty(E, D, 2 * Fh))  # (E, D, 2F): gate then up, x @ w13[e]
        self.w2 = nn.Parameter(torch.empty(E, Fh, D))  # (E, F, D): down, a @ w2[e]
        self.shared = SharedExperts(D, cfg.n_shared * Fh) if cfg.n_shared else None
        self.reset_parameters()

    def reset_parameters(self, std: float = 0.02, out_std: float = 0.02) -> None:
        """N(0, std) inputs, N(0, out_std) for the projections that write into the residual stream."""
        nn.init.normal_(self.w13, std=std)
        nn.init.normal_(self.w2, std=out_std)
        nn.init.normal_(self.router.weight, std=std)
        if self.shared is not None:
            nn.init.normal_(self.shared.gate_up.weight, std=std)
            nn.init.normal_(self.shared.down.weight, std=out_std)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = x.shape
        x_TD = x.reshape(-1, shape[-1])
        gates_TK, ids_TK, aux = self.router(x_TD)
        # Under autocast the experts run in its dtype, with autocast off inside: left on, autocast
        # recasts the products it lists (mm, bmm) but not torch._grouped_mm, and backward met
        # tensors of two dtypes (found on an H200). Gradients reach the fp32 weights and inputs
        # through the casts.
        dev = x.device.type
        dt = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else x.dtype
        w13, w2, xe_TD = self.w13.to(dt), self.w2.to(dt), x_TD.to(dt)
        with torch.autocast(dev, enabled=False):
            if self.cfg.kernel == "grouped":
                out_TD = kernels.routed_experts(xe_TD, gates_TK, ids_TK, w13, w2)
            elif self.cfg.kernel == "triton":
                from mixopt.train import triton_gather

                out_TD = triton_gather.routed_experts(xe_TD, gates_TK, ids_TK, w13, w2)
            else:
                out_TD = kernels.naive_experts(xe_TD, gates_TK, ids_TK, w13, w2)
        if self.shared is not None:
            out_TD = out_TD + self.shared(x_TD)
        return out_TD.view(shape), aux
