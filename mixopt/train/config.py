"""Model configs of the final trainer: the MoE language model's shape and how it is trained.

A named config (``moe-xs``, ``moe-s``, ``moe-m``) is one TOML file in ``proxies/moe/``, next to
the proxy rungs (``proxies/moe/moe-s.toml`` → ``moe-s``; a path to a .toml file works too). They
live in a subfolder because every ``proxies/*.toml`` is a proxy rung. Keys are flat: the shape
(:class:`LMConfig` fields but ``vocab_size``, which comes from the corpus) and the training
settings (:class:`TrainConfig`), plus ``description``. ``moe-debug`` lives in code for tests.

Every config is checked when it is made: a width not divisible by the heads, an odd head width
(RoPE pairs), top-k larger than the experts, or a step larger than the budget is a
:class:`~mixopt.errors.MixoptError` naming the fix.
"""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

from mixopt import paths
from mixopt.errors import MixoptError
from mixopt.schedule import check_optimizer, eval_steps, warmup_cosine
from mixopt.toml_fields import check_field_types, field_types
from mixopt.train.moe import MoEConfig

MODEL_DIR = "moe"  # under each proxies/ recipe folder


@dataclass(frozen=True, kw_only=True)
class LMConfig:
    """The MoE language model's shape (``dense=True``: its dense twin).

    Attributes:
        vocab_size: V, from the corpus tokenizer.
        n_layer, d_model, n_head, context: as in the proxy model (D divisible by H, D/H even).
        n_experts, top_k, expert_hidden, n_shared: E, K, F and shared experts of every layer.
        score_func, route_norm, balance, bias_rate, aux_coef, z_coef, kernel: see MoEConfig.
        dense: replace every MoE layer by one SwiGLU of width (top_k + n_shared) · F, the same
            active matmul work per token (the comparison the issue asks for).
    """

    vocab_size: int
    n_layer: int
    d_model: int
    n_head: int
    context: int
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
    kernel: Literal["grouped", "naive", "triton"] = "grouped"
    dense: bool = False

    def __post_init__(self) -> None:
        for key in ("vocab_size", "n_layer", "d_model", "n_head", "context"):
            v = getattr(self, key)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise MixoptError(f"model config: {key} is {v!r}; it must be a positive integer")
        if self.d_model % self.n_head:
            raise MixoptError(
                f"model config: d_model {self.d_model} is not divisible by n_head {self.n_head}; "
                "choose a width that is a multiple of the heads"
            )
        if (self.d_model // self.n_head) % 2:
            raise MixoptError(
                f"model config: head width d_model/n_head = {self.d_model // self.n_head} is odd; "
                "RoPE needs an even head width"
            )
        self.moe_config()  # checks E, K, F and the routing options

    def moe_config(self) -> MoEConfig:
        """Every MoE layer's config: this config's fields that :class:`MoEConfig` has."""
        keys = {f.name for f in fields(MoEConfig)}
        return MoEConfig(**{f.name: getattr(self, f.name) for f in fields(self) if f.name in keys})

    @property
    def dense_hidden(self) -> int:
        """The dense twin's SwiGLU width: the routed plus shared experts' active width."""
        return (self.top_k + self.n_shared) * self.expert_hidden

    def twin(self) -> LMConfig:
        """The same shape with the other kind of feed-forward layer."""
        return replace(self, dense=not self.dense)

    def params(self) -> dict[str, int]:
        """Parameter counts: ``total``, ``active`` (per token) and ``embedding`` (tied, counted once)."""
        D, F, L = self.d_model, self.expert_hidden, self.n_layer
        attn = 4 * D * D
        norms = 2 * D
        if self.dense:
            ffn_total = ffn_active = 3 * D * self.dense_hidden
        else:
            shared = 3 * D * F * self.n_shared
            router = self.n_experts * D
            ffn_total = 3 * D * F * self.n_experts + shared + router
            ffn_active = 3 * D * F * self.top_k + shared + router
        emb = self.vocab_size * D
        return {
            "total": L * (attn + ffn_total + norms) + D + emb,
            "active": L * (attn + ffn_active + norms) + D + emb,
            "embedding": emb,
        }

    def train_flops_per_token(self) -> float:
        """6 · active matmul parameters (+ the tied output projection) + 12 · L · D · T for attention.

        The same accounting as the proxy model (PaLM appendix B); experts a token does not visit
        cost nothing, so an MoE and its dense twin have nearly the same FLOPs per token.
        """
        D, L = self.d_model, self.n_layer
        p = self.params()
        matmul = p["active"] - L * 2 * D - D  # norms are not matmuls; the embedding is, as the output
        return 6.0 * matmul + 12.0 * L * D * self.context


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """How the model is trained.

    Attributes:
        batch: sequences per micro-batch; grad_accum micro-batches make one optimizer step.
        grad_accum: micro-batches per optimizer step (the balancing bias moves once per step).
        tokens: training token budget (rounded down to whole steps).
        lr, min_lr, warmup, weight_decay, beta1, beta2, grad_clip: AdamW, linear warm-up (fraction
            of steps) then cosine to min_lr, decoupled decay on matrices only, global-norm clip.
        eval_tokens: validation tokens per domain at each evaluation (fixed windows).
        eval_at: fractions of training at which to evaluate (1.0 always added); a checkpoint is
            written at each.
        log_every: optimizer steps between records of training loss and expert load.
    """

    batch: int
    tokens: int
    lr: float
    min_lr: float
    grad_accum: int = 1
    warmup: float = 0.05
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    eval_tokens: int = 8192
    eval_at: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)
    log_every: int = 10

    def __post_init__(self) -> None:
        for key in ("batch", "tokens", "grad_accum", "eval_tokens", "log_every"):
            v = getattr(self, key)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise MixoptError(f"train config: {key} is {v!r}; it must be a positive integer")
        object.__setattr__(self, "eval_at", check_optimizer(self, "train config"))

    def tokens_per_step(self, context: int) -> int:
        return self.batch * self.grad_accum * context

    def steps(self, context: int) -> int:
        return self.tokens // self.tokens_per_step(context)

    def lr_at(self, step: int, steps: int) -> float:
        """Learning rate at optimizer step ``step`` of ``steps``: linear warm-up, then cosine to min_lr."""
        return float(warmup_cosine(step, steps, lr=self.lr, min_lr=self.min_lr, warmup=self.warmup))

    def eval_steps(self, steps: int) -> list[int]:
        """Optimizer steps after which to evaluate (and checkpoint), ending at ``steps``."""
        return eval_steps(self.eval_at, steps)


_SHAPE_KEYS = [f.name for f in fields(LMConfig) if f.name not in ("vocab_size", "dense")]
_TRAIN_KEYS = [f.name for f in fields(TrainConfig)]


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """A named model config: the shape (without vocabulary) and the training settings."""

    name: str
    shape: dict[str, Any]
    train: TrainConfig
    description: str = ""
    source: str = field(default="", compare=False)

    def lm_config(self, vocab_size: int, *, dense: bool = False, **overrides: Any) -> LMConfig:
        try:
            cfg = LMConfig(vocab_size=vocab_size, dense=dense, **{**self.shape, **overrides})
        except MixoptError as exc:
            raise MixoptError(
                f"model {self.name!r}{f' ({self.source})' if self.source else ''}: {exc}"
            ) from exc
        if self.train.tokens < self.train.tokens_per_step(cfg.context):
            raise MixoptError(
                f"model {self.name!r}: tokens {self.train.tokens} is less than one step of "
                f"batch × grad_accum × context = {self.train.tokens_per_step(cfg.context)}; "
                "raise tokens or lower batch/context"
            )
        return cfg

    def with_tokens(self, tokens: int) -> ModelSpec:
        return replace(self, train=replace(self.train, tokens=int(tokens)))

    def as_dict(self) -> dict[str, Any]:
        train = asdict(self.train)
        train["eval_at"] = list(self.train.eval_at)
        return {"name": self.name, "shape": dict(self.shape), "train": train, "description": self.description}


def spec_from_dict(name: str, data: dict[str, Any], *, source: str = "") -> ModelSpec:
    """Build a spec from flat TOML keys; unknown keys are an error (a typo would be silent)."""
    data = dict(data)
    description = str(data.pop("description", ""))
    unknown = sorted(set(data) - set(_SHAPE_KEYS) - set(_TRAIN_KEYS))
    if unknown:
        raise MixoptError(
            f"model {name!r} ({source}): unknown key(s) {', '.join(unknown)}; known keys are "
            f"{', '.join(sorted(_SHAPE_KEYS + _TRAIN_KEYS))} and description"
        )
    missing = sorted(
        {"n_layer", "d_model", "n_head", "context", "n_experts", "top_k", "expert_hidden"} - set(data)
    )
    if missing:
        raise MixoptError(f"model {name!r} ({source}): missing key(s) {', '.join(missing)}")
    data = check_field_types(f"model {name!r} ({source})", data, field_types(LMConfig, TrainConfig))
    shape = {k: data[k] for k in _SHAPE_KEYS if k in data}
    train = {k: data[k] for k in _TRAIN_KEYS if k in data}
    if "eval_at" in train:
        train["eval_at"] = tuple(train["eval_at"])
    try:
        tc = TrainConfig(**train)
    except TypeError as exc:
        raise MixoptError(f"model {name!r} ({source}): {exc}") from exc
    except MixoptError as exc:  # a bad value: say which file holds it
        raise MixoptError(f"model {name!r} ({source}): {exc}") from exc
    spec = ModelSpec(name=name, shape=shape, train=tc, description=description, source=source)
    spec.lm_config(vocab_size=256)  # check the shape now, whatever the corpus
    return spec


# The config the tests and CI use: trains in about a second on one CPU thread.
DEBUG = ModelSpec(
    name="moe-debug",
    shape={
        "n_layer": 1,
        "d_model": 32,
        "n_head": 2,
        "context": 32,
        "n_experts": 4,
        "top_k": 2,
        "expert_hidden": 16,
        "n_shared": 1,
    },
    train=TrainConfig(
        batch=8,
        tokens=8 * 32 * 24,
        lr=3e-3,
        min_lr=3e-4,
        warmup=0.1,
        eval_tokens=256,
        eval_at=(0.5, 1.0),
        log_every=4,
    ),
    description="tiny MoE for tests and CI",
)


def model_dirs() -> list[Path]:
    return [d / MODEL_DIR for d in paths.recipe_dirs("proxies") if (d / MODEL_DIR).is_dir()]


def available_models() -> list[str]:
    """Model configs in ``proxies/moe/``, the ones ``--help`` names; ``moe-debug`` (tests and CI)
    still loads by name but is not offered to users."""
    return sorted({p.stem for d in model_dirs() for p in d.glob("*.toml")})


def load_model(name: str | ModelSpec) -> ModelSpec:
    """The model config ``name`` (``moe-debug``, a file in ``proxies/moe/``, or a path to a .toml)."""
    if isinstance(name, ModelSpec):
        return name
    if name == DEBUG.name:
        return DEBUG
    p = Path(name)
    path = (
        p
        if p.suffix == ".toml" and p.is_file()
        else next((d / f"{name}.toml" for d in model_dirs() if (d / f"{name}.toml").is_file()), None)
    )
    if path is None:
        paths.check_recipe_path(name, "model config")
        raise MixoptError(
            f"model {name!r} is unknown; known models: {', '.join(available_models())} "
            "(or give a path to a .toml)"
        )
    if path is not p:  # found by name
        paths.warn_if_overriding("proxies", path, "model config")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError) as exc:
        raise MixoptError(f"cannot read model config {path}: {exc}") from None
    return spec_from_dict(path.stem, data, source=str(path))
