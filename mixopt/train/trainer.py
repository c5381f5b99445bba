"""Train the MoE language model on a mixture: :func:`train`.

Top to bottom: resolve the mixture (a JSON file, ``uniform`` or ``natural``) against the corpus,
build the model from its config, draw every sequence's domain by the weights in force (the proxy
sampler; a schedule in the JSON, or a weight updater, changes them), take AdamW steps with the
routers' balancing bias moved after each, log every ``log_every`` steps training loss, each
domain's share of the sequences (``share/<d>``) and expert load (``expert_load``: per domain, the
busiest expert's share of its tokens and the routing entropy, over that window) and the maximum
load violation, evaluate loss and bits per byte per domain on the fixed validation windows (the
proxy's), checkpoint atomically at each evaluation, every 5% of the run and on Ctrl-C (at the end
of the step under way), and end with the comparison of measured losses against the search's
prediction.

On a GPU (``device="cuda"``, not tested on this project's CPU machines) the forward runs under
bf16 autocast; the routers stay in float32.

Determinism: the same seed, config, mixture and thread count give the same losses; a run stopped
and resumed from its checkpoint gives the same losses as one that never stopped (the model,
optimizer, balancing biases, sampler state and logs are all in the checkpoint).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mixopt import paths
from mixopt.atomic import check_folder_named, check_writable_dir, first_missing, remove_made, write_json
from mixopt.corpus.shards import Corpus
from mixopt.errors import MixoptError, MixoptWarning, NoSpaceError, warn
from mixopt.mixture import Mixture, check_domains, made_by, made_differently
from mixopt.proxy.job import is_inline, label_before, mixture_from_spec, spec_label
from mixopt.proxy.sampler import MixtureSampler
from mixopt.proxy.train import (
    DEFAULT_MAX_EPOCHS,
    check_epochs,
    check_memory,
    check_threads,
    deterministic,
    torch_threads,
)
from mixopt.proxy.valset import ValidationSet
from mixopt.search.lock import folder_lock
from mixopt.train import checkpoint
from mixopt.train.config import LMConfig, ModelSpec, load_model
from mixopt.train.device import device_key, resolve_device
from mixopt.train.load import ExpertLoad
from mixopt.train.model import MoELM
from mixopt.train.prediction import prediction_report
from mixopt.train.updater import Observation, ScheduleUpdater, WeightUpdater, check_weights, make_updater

log = logging.getLogger(__name__)
Progress = Callable[[dict[str, Any]], None]


class RunStopped(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped the run at a step's end, where its checkpoint was just written."""

    def __init__(self, message: str, *, step: int, steps: int, checkpoint: Path) -> None:
        super().__init__(message)
        self.step, self.steps, self.checkpoint = step, steps, checkpoint


@dataclass
class TrainResult:
    """What a training run produced (also written to ``<out>/result.json``).

    Attributes:
        status: ``ok``, ``diverged`` (non-finite loss; ``error`` says when) or ``stopped``
            (``until_step`` reached; resume to go on).
        metrics: the last evaluation: ``loss/<d>``, ``bpb/<d>``, ``objective``, ``objective_bpb``.
        history: every evaluation, with ``step`` and ``tokens``.
        log: training records every ``log_every`` steps (loss, per-domain loss and share, lr,
            aux loss, MaxVio, weights, tokens/s).
        expert_load: whole-run routed slots per (layer, domain, expert), MaxVio and a summary.
        report: the final model against the search's prediction (see prediction.py).
    """

    status: str
    out: Path
    metrics: dict[str, float]
    history: list[dict[str, Any]]
    log: list[dict[str, Any]]
    steps: int
    total_steps: int
    tokens: int
    train_seconds: float
    eval_seconds: float
    flops_per_token: float
    config: dict[str, Any]
    domain_tokens: dict[str, int] = field(default_factory=dict)
    expert_load: dict[str, Any] | None = None
    report: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    phases: list[dict[str, Any]] = field(default_factory=list)  # a schedule's phases: planned and trained

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.train_seconds if self.train_seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items()}
        d["out"] = str(self.out)
        d["tokens_per_s"] = self.tokens_per_s
        return d


def resolve_mixture(mixture: Mixture | str | Path, corpus: Corpus) -> tuple[Mixture, str]:
    """A Mixture and a short label from a Mixture, a JSON path, ``uniform``, ``natural`` or weights
    written out (``code=0.5,math=0.5``: domains left out get 0)."""
    if isinstance(mixture, Mixture):
        return mixture, str(mixture.meta.get("method") or "mixture")
    text = str(mixture)
    mix = mixture_from_spec(text, corpus)
    name = f"mixture {text!r}" if is_inline(text) else f"mixture {Path(text).name}"
    made_on = (mix.meta.get("provenance") or {}).get("corpus_hash")
    if made_on and made_on != corpus.hash:
        warn(
            f"{name} was made on corpus {mix.meta['provenance'].get('corpus')!r} "
            f"(hash {made_on[:12]}), not on {corpus.name!r} (hash {corpus.hash[:12]}); its predictions "
            "do not carry over",
            MixoptWarning,
        )
    unlisted = [d for d in corpus.domains if d not in mix.weights]
    if unlisted and not (set(mix.weights) - set(corpus.domains)):  # (unknown domains: an error later)
        they = "it is" if len(unlisted) == 1 else "they are"
        warn(f"{name} does not list {', '.join(unlisted)}: {they} not trained on "
             "(weight 0)", MixoptWarning)
    return mix, spec_label(text)


def mixture_key(m: Mixture) -> dict[str, Any]:
    """A mixture as a run's fingerprint holds it: its weights and schedule."""
    return {"weights": dict(m.weights), "schedule": [[u, dict(w)] for u, w in m.schedule]}


def _fingerprint(spec: ModelSpec, lm: LMConfig, corpus: Corpus, mix: Mixture, seed: int,
                 upd: WeightUpdater | None) -> dict[str, Any]:
    """What a run trains: its checkpoint is refused by a run of another fingerprint."""
    return {
        "model": spec.name,
        "lm": lm.__dict__,
        "train": spec.as_dict()["train"],
        "corpus": {"name": corpus.name, "hash": corpus.hash},
        "mixture": mixture_key(mix),
        "seed": seed,
        "updater": None if upd is None else {"name": upd.fingerprint_name or upd.name, **upd.params()},
    }


def plain_fingerprint(mix: Mixture, corpus: Corpus, spec: ModelSpec, *, seed: int,
                      dense: bool = False) -> dict[str, Any]:
    """The fingerprint of a run without a weight updater, as its ``result.json`` keeps it (JSON)."""
    lm = spec.lm_config(corpus.vocab_size, dense=dense)
    return json.loads(json.dumps(_fingerprint(spec, lm, corpus, mix, seed, None)))


def finished_json(folder: Path) -> dict[str, Any] | None:
    """The result.json of the run in ``folder`` if it trained to its end (status ok), else None."""
    try:
        d = json.loads((folder / "result.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return d if isinstance(d, dict) and d.get("status") == "ok" else None


def result_from_json(d: dict[str, Any], folder: Path) -> TrainResult | None:
    """A result.json's TrainResult, its ``out`` where it lies now (None: another version's)."""
    d = {k: v for k, v in d.items() if k != "tokens_per_s"}  # a property
    try:
        return TrainResult(**{**d, "out": folder})
    except TypeError:
        return None


def default_out(
    spec: ModelSpec,
    label: str,
    mixture: Mixture,
    seed: int,
    dense: bool,
    corpus: Corpus | None = None,
    *,
    updater: dict[str, Any] | None = None,
    legacy: bool = False,
) -> Path:
    """``train/<model>-<label>-<hash>-s<seed>``; the hash covers the mixture, the corpus, the token
    budget and the updater (its name and settings, when there is one), so another corpus, budget or
    updater gets its own folder instead of meeting a foreign checkpoint. ``legacy``: the folder of
    runs started before 2026-12-02, whose hash covered the mixture only."""
    if legacy:
        key: dict[str, Any] = mixture_key(mixture)
    else:
        key = {"mixture": mixture_key(mixture), "tokens": spec.train.tokens}
        if corpus is not None:
            key["corpus"] = corpus.hash
        if updater is not None:  # absent without one: the folders of plain runs keep their names
            key["updater"] = updater
    h = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:8]
    return paths.home() / "train" / f"{spec.name}{'-dense' if dense else ''}-{label}-{h}-s{seed}"


def build(
    lm: LMConfig, spec: ModelSpec, seed: int, device: torch.device
) -> tuple[MoELM, torch.optim.Optimizer]:
    """A seeded model and its AdamW (decoupled decay on matrices and expert weights, not on norms)."""
    torch.manual_seed(seed)
    model = MoELM(lm, fused_ops=device.type == "cpu").to(device)
    tc = spec.train
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": tc.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=tc.lr,
        betas=(tc.beta1, tc.beta2),
        fused=True,
    )
    return model, opt


class _Window:
    """Sums over a span of steps: per-domain loss·tokens and tokens, aux loss, MaxVio."""

    def __init__(self, n: int) -> None:
        self.loss = np.zeros(n)
        self.tokens = np.zeros(n, dtype=np.int64)
        self.seqs = np.zeros(n, dtype=np.int64)
        self.aux = 0.0
        self.micro = 0
        self.maxvio: list[float] = []  # per step, the worst layer
        self.vio_layers: list[list[float]] = []  # per step, every MoE layer

    def state(self) -> dict[str, Any]:
        return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in self.__dict__.items()}

    def load(self, s: Mapping[str, Any]) -> None:
        for k, v in s.items():
            cur = getattr(self, k)
            setattr(self, k, np.asarray(v, dtype=cur.dtype) if isinstance(cur, np.ndarray) else v)

    def mean_losses(self) -> np.ndarray:
        return np.divide(self.loss, self.tokens, out=np.full(len(self.loss), np.nan), where=self.tokens > 0)


@contextlib.contextmanager
def _probing(model: MoELM) -> Iterator[None]:
    """Eval mode for an updater's probes: the routers count no load (balancing sees training only)."""
    was = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was)


def _probe_grads(model: MoELM, sampler: MixtureSampler, upd: WeightUpdater, seed: int, step: int,
                 dev: torch.device) -> dict[str, torch.Tensor]:
    """Each domain's gradient at the current parameters on ``upd.grad_batch`` of its sequences."""
    params = [p for name, p in model.named_parameters() if p.requires_grad and upd.grad_param(name, p)]
    if not params:
        names = [n for n, _ in model.named_parameters()]
        raise MixoptError(f"updater {upd.name} wants gradients but its grad_param keeps no parameter; the "
                          f"model's are named {', '.join(names[:4])}, …, {names[-1]}")
    rng = np.random.default_rng([seed, step, 0x6772])  # the probe's own stream: resumable, apart
    out = {}
    with _probing(model):
        for g, d in enumerate(sampler.domains):
            if sampler._n_starts[g] < 1:  # no window of training data: no gradient to give
                continue
            x = torch.from_numpy(sampler.windows_of(g, upd.grad_batch, rng)).to(dev)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=dev.type == "cuda"):
                loss, _ = model(x[:, :-1], x[:, 1:])
            grads = torch.autograd.grad(loss.float(), params, allow_unused=True)
            out[d] = torch.cat([(x_ if x_ is not None else torch.zeros_like(p)).reshape(-1).detach()
                                for x_, p in zip(grads, params, strict=True)])
    return out


def _probe_eval(model: MoELM, valset: ValidationSet, domains: list[str], windows: int) -> np.ndarray:
    """Each domain's mean held-out loss on the first ``windows`` windows of its validation split."""
    out = np.full(len(domains), np.nan)
    with _probing(model):
        for g, d in enumerate(domains):
            win = valset.windows.get(d)
            if win is not None and len(win):
                x = torch.from_numpy(np.asarray(win[:windows]))
                out[g] = float(model.token_losses(x[:, :-1], x[:, 1:]).double().mean())
    return out


def _probe_batch(model: MoELM, batch: np.ndarray) -> np.ndarray:
    """Each sequence's mean training loss at the current parameters."""
    with _probing(model):
        x = torch.from_numpy(batch)
        return model.token_losses(x[:, :-1], x[:, 1:]).double().mean(1).cpu().numpy()


def train(
    mixture: Mixture | str | Path,
    corpus: Corpus | str,
    model: ModelSpec | str = "moe-s",
    *,
    seed: int = 0,
    tokens: int | None = None,
    dense: bool = False,
    out: str | Path | None = None,
    resume: bool = False,
    updater: WeightUpdater | str | None = None,
    threads: int | None = None,
    device: str = "cpu",
    until_step: int | None = None,
    checkpoint_every: int | None = None,
    on_progress: Progress | None = None,
) -> TrainResult:
    """Train the model config ``model`` on ``mixture`` of ``corpus``; see the module doc.

    Args:
        mixture: a Mixture, a mixture JSON path, ``uniform`` or ``natural``.
        corpus: a Corpus or a built corpus's name or folder.
        model: a ModelSpec or a model config name (``moe-s``, ...).
        seed: seeds the initialisation and the sampler.
        tokens: overrides the config's token budget.
        dense: train the dense twin (same shape, no experts).
        out: the run folder (default under the workspace's ``train/``).
        resume: continue from ``out/checkpoint.pt`` (refused if it belongs to another run).
        updater: a WeightUpdater or its spec (see :func:`mixopt.train.updater.make_updater`).
        threads: torch intra-op threads (None: as the process has).
        device: ``cpu`` or ``cuda``.
        until_step: stop after this optimizer step (checkpointed; resume goes on).
        checkpoint_every: optimizer steps between checkpoints besides those at each evaluation
            (None: every 5% of the run; 0: only at evaluations). Ctrl-C also checkpoints, at the
            end of the step under way, so a resumed run goes on from there.
        on_progress: called with a dict after every step (``step``, ``loss``, ...), every
            evaluation (``eval``) and once on resuming (``resumed``: the step it goes on from).

    Raises:
        MixoptError: unknown domains, bad configs, a checkpoint of another run, an existing
            checkpoint without ``resume``.
    """
    check_folder_named(out)
    if threads is not None:
        check_threads(threads)  # before any folder is made
    corpus = corpus if isinstance(corpus, Corpus) else Corpus.open(corpus)
    spec = load_model(model)
    if tokens is not None:
        spec = spec.with_tokens(tokens)
    mix, label = resolve_mixture(mixture, corpus)
    check_domains(mix.weights, corpus.domains,
                  where=f"mixture {mixture!r}" if is_inline(str(mixture)) else f"mixture {label}")
    lm = spec.lm_config(corpus.vocab_size, dense=dense)
    check_memory(lm.params()["total"], f"model {spec.name!r}")
    tc = spec.train
    steps = tc.steps(lm.context)
    upd = make_updater(updater)
    dev = resolve_device(device)
    domains = corpus.domains
    fingerprint = _fingerprint(spec, lm, corpus, mix, seed, upd)
    folder = (Path(out) if out is not None
              else default_out(spec, label, mix, seed, dense, corpus, updater=fingerprint["updater"]))
    if resume and out is None and not (folder / checkpoint.CHECKPOINT).exists():
        # Runs started before the default folder named the corpus and budget live under the old
        # name (mixture only), and a long inline mixture's under its old label; the checkpoint's
        # fingerprint still decides whether it is this run.
        before = label_before(str(mixture)) if not isinstance(mixture, Mixture) else None
        older = [default_out(spec, lb, mix, seed, dense, corpus, updater=fingerprint["updater"], legacy=old)
                 for lb in filter(None, (label, before)) for old in (False, True)]
        folder = next((f for f in older if (f / checkpoint.CHECKPOINT).exists()), folder)
    # One process per run folder: two runs into one --out (or a --resume while the run still trains, a
    # requeued job) had both trained, each overwriting the other's checkpoint (a QA pass)
    busy = (f"run folder {folder} is in use by another training run (mixopt train or compare into the same "
            "folder, or a --resume of it, still under way); wait for it to end, or give another --out")
    if not resume and folder.is_dir():
        with folder_lock(folder, busy):  # a run under way: said as such, not as a checkpoint to --resume
            pass
    if not resume and (folder / checkpoint.CHECKPOINT).exists():
        if finished_json(folder) is not None:  # nothing to continue
            raise MixoptError(
                f"{folder} holds a finished run; --resume prints its result, or choose another --out (or "
                "delete the folder) to train again"
            )
        raise MixoptError(
            f"{folder} already holds a checkpoint; pass --resume to continue it, or choose another --out"
        )
    if not resume and out is not None:  # a default folder is mixopt's own
        writes = f"{checkpoint.CHECKPOINT} and result.json"
        checkpoint.refuse_foreign_folder(folder, ours=False, writes=writes)
    on = device_key(device)
    with contextlib.ExitStack() as held:  # the run folder's lock, held until its result is written
        if resume:
            held.enter_context(folder_lock(folder, busy))
        state = checkpoint.load(folder, fingerprint, on) if resume else None  # before any folder is made
        if resume:
            checkpoint.remove_stale(folder)  # a killed write's temporary file (the folder is held: ours)
        if state is not None and not (type(state["step"]) is int and 0 <= state["step"] <= steps):
            at = folder / checkpoint.CHECKPOINT
            raise MixoptError(f"checkpoint {at} is at step {state['step']!r}, outside this run's 0–{steps}: "
                              "it is damaged or no run's of these settings; train into another --out")
        if state is not None and state["step"] >= steps and (done := finished_json(folder)) is not None:
            # nothing to train: the result as the run wrote it (printing it had rewritten its made_by)
            finished = result_from_json(done, folder.absolute())
            if finished is not None:
                if on_progress is not None:
                    on_progress({"resumed": state["step"], "steps": steps})
                return finished
        if upd is not None and upd.every >= steps:  # (a QA pass: loss:every=2**70 was taken without a word)
            warn(f"updater {upd.name} updates every {upd.every:,} steps and this run trains {steps:,}: it "
                 f"never changes the weights; give every below {steps:,}", MixoptWarning)
        follows_json = isinstance(upd, ScheduleUpdater) and not upd.schedule  # it plays the JSON's schedule
        if upd is not None and mix.schedule and not follows_json:
            warn(
                f"the mixture's schedule is followed only until updater {upd.name}'s first update (step "
                f"{upd.every}); from then on the updater sets the weights, starting from those of the phase "
                "under way (later phases' weights are not used)",
                MixoptWarning,
            )
        empty = [i for i, (a, b) in enumerate(_phase_steps(mix, steps)) if a > b] if mix.schedule else []
        if empty:
            shown = ", ".join(f"{i + 1} (until {mix.schedule[i][0]:g})" for i in empty)
            warn(
                f"schedule phase(s) {shown} get no step of the run's {steps}: their weights are never "
                "trained; give more --tokens or make the phases longer",
                MixoptWarning,
            )
        tokens_per_step = tc.tokens_per_step(lm.context)
        if tokens is not None and steps * tokens_per_step != tc.tokens:  # the configs' round budgets: no word
            warn(
                f"{tc.tokens:,} tokens is not a whole number of steps of {tokens_per_step:,} tokens "
                f"(batch × grad_accum × context); training {steps:,} step{'s' if steps != 1 else ''} = "
                f"{steps * tokens_per_step:,} tokens",
                MixoptWarning,
            )
        check_epochs(mix, corpus.train_tokens(), steps * tokens_per_step, DEFAULT_MAX_EPOCHS, spec.name,
                     final=True)

        G = len(domains)
        sampler = MixtureSampler(
            {d: corpus.tokens(d, "train") for d in domains}, mix, context=lm.context, batch=tc.batch,
            seed=seed,
        )
        valset = ValidationSet.from_corpus(corpus, lm.context, tc.eval_tokens)
        eval_steps = set(tc.eval_steps(steps))
        config = {
            **fingerprint,
            "params": lm.params(),
            "flops_per_token": lm.train_flops_per_token(),
            "steps": steps,
            "tokens_per_step": tokens_per_step,
            "device": on,
            # the threads it trains on: another count gives other last digits (compare says when it reuses
            # a run of another count: a QA pass saw a 2-thread run read back for a 1-thread comparison)
            "threads": threads or torch.get_num_threads(),
            "made_by": made_by(),  # versions, revision and command line, to rerun it
            "label": label,
            # its step count, which a custom updater's params() may leave out of the fingerprint
            "updater_every": None if upd is None else upd.every,
        }

        every = max(1, steps // 20) if checkpoint_every is None else checkpoint_every
        made = first_missing(folder)  # the folders check_writable_dir creates, from this one down
        check_writable_dir(folder)  # before any training, not at the first checkpoint
        if not resume:
            held.enter_context(folder_lock(folder, busy))
            if (folder / checkpoint.CHECKPOINT).exists():  # a run that held the folder a moment ago wrote it
                raise MixoptError(f"{folder} already holds a checkpoint; pass --resume to continue it, or "
                                  "choose another --out")
            checkpoint.remove_stale(folder)
        with (
            torch_threads(threads),
            deterministic(),
            _drop_if_unused(folder, made, fresh=state is None),
            _stop_at_step_end() as stop,
        ):
            net, opt = build(lm, spec, seed, dev)
            n_moe = len(net.moe_layers())
            load_all = ExpertLoad(n_moe, domains, lm.n_experts)
            load_at_log = load_all.counts.copy()  # counts at the last log record: a window's load is the rise
            win, upd_win = _Window(G), _Window(G)
            logs: list[dict[str, Any]] = []
            history: list[dict[str, Any]] = []
            domain_tokens = np.zeros(G, dtype=np.int64)
            ends = [u for u, _ in mix.schedule]  # a schedule's phase ends; each step's tokens by phase
            phase_tokens = np.zeros((max(len(ends), 1), G), dtype=np.int64)
            upd_w: np.ndarray | None = None
            step, train_s, eval_s = 0, 0.0, 0.0
            if upd is not None:
                upd.start(domains, sampler.weights_at(0.0), steps)
            if state is not None:
                net.load_state_dict(state["model"])
                opt.load_state_dict(state["opt"])
                sampler.rng.bit_generator.state = state["sampler_rng"]
                step, train_s, eval_s = state["step"], state["train_seconds"], state["eval_seconds"]
                logs, history = state["log"], state["history"]
                win.load(state["window"])
                upd_win.load(state["updater_window"])
                # reshaped: a dense run's (0, G, E) counts come back from the checkpoint as []
                shape = load_all.counts.shape
                load_all.counts[:] = np.asarray(state["expert_load"], dtype=np.int64).reshape(shape)
                load_at_log[:] = np.asarray(state.get("expert_load_at_log", state["expert_load"]),
                                            dtype=np.int64).reshape(shape)
                domain_tokens[:] = state["domain_tokens"]
                if "phase_tokens" in state:  # checkpoints before 2026-12-02 lack them
                    phase_tokens[:] = np.asarray(state["phase_tokens"], dtype=np.int64)
                if state["updater_weights"] is not None:
                    upd_w = np.asarray(state["updater_weights"])
                if upd is not None:
                    upd.load_state_dict(state["updater"])
                log.info("resumed %s at step %d of %d", folder, step, steps)
                before = state.get("threads")
                if before is not None and before != torch.get_num_threads() and step < steps:  # not finished
                    # Another split of the sums: losses drift from the uninterrupted run's in the last digits.
                    warn(
                        f"resuming with {torch.get_num_threads()} threads where the run had {before}: it "
                        "goes on, but not bit for bit as if never stopped "
                        f"(pass --threads {before} for that)",
                        MixoptWarning)
                # Another trainer or torch may compute the next steps' sums otherwise (the upgrade QA: a
                # checkpoint of older code resumed to 3.4115 where its own run reached 3.4103), said as
                # the threads are; checkpoints before 2026-12-06 record no code and say nothing
                changed = made_differently(state.get("made_by"), config["made_by"])
                if changed and step < steps:
                    warn(f"resuming a checkpoint made by other code ({'; '.join(changed)}): it goes on, but "
                         "its losses may differ in the last digits from a run never stopped", MixoptWarning)
                if on_progress is not None:
                    on_progress({"resumed": step, "steps": steps})

            def weights_now(fraction: float) -> np.ndarray:
                return upd_w if upd_w is not None else sampler.weights_at(fraction)

            def save_checkpoint() -> None:
                checkpoint.save(
                    folder,
                    {
                        "fingerprint": fingerprint,
                        "device": on,
                        "step": step,
                        "model": net.state_dict(),
                        "opt": opt.state_dict(),
                        "sampler_rng": sampler.rng.bit_generator.state,
                        "threads": torch.get_num_threads(),
                        "made_by": config["made_by"],  # its code: a resume by other code says so
                        "train_seconds": train_s,
                        "eval_seconds": eval_s,
                        "log": logs,
                        "history": history,
                        "window": win.state(),
                        "updater_window": upd_win.state(),
                        "expert_load": load_all.counts.tolist(),
                        "expert_load_at_log": load_at_log.tolist(),
                        "domain_tokens": domain_tokens.tolist(),
                        "phase_tokens": phase_tokens.tolist(),
                        "updater_weights": None if upd_w is None else upd_w.tolist(),
                        "updater": {} if upd is None else upd.state_dict(),
                    },
                )

            status, error = "ok", None
            t_win = time.perf_counter()
            while step < steps:
                if until_step is not None and step >= until_step:
                    status = "stopped"
                    break
                if stop.requested:  # Ctrl-C or SIGTERM: at a step's end, where a checkpoint resumes exactly
                    save_checkpoint()
                    raise RunStopped(
                        f"{stop.by}: stopped at step {step} of {steps}; its checkpoint is in {folder}",
                        step=step, steps=steps, checkpoint=folder / checkpoint.CHECKPOINT)
                t0 = time.perf_counter()
                fraction = step / steps
                w_now = weights_now(fraction)
                if upd_w is not None:  # the updater owns the weights: the sampler draws with them
                    sampler.mixture = Mixture(dict(zip(domains, w_now.tolist(), strict=True)))
                for group in opt.param_groups:
                    group["lr"] = tc.lr_at(step, steps)
                loss_step = 0.0
                for _micro in range(tc.grad_accum):
                    dom, batch = sampler.draw(fraction)
                    x = torch.from_numpy(batch).to(dev)
                    present = np.unique(dom)
                    groups = [torch.from_numpy(np.flatnonzero(dom == g)).to(dev) for g in present]
                    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=dev.type == "cuda"):
                        losses, aux = net.group_losses(x[:, :-1], x[:, 1:], groups)
                    losses, aux = losses.float(), aux.float()
                    sizes = torch.tensor([len(r) for r in groups], dtype=losses.dtype, device=dev) / len(dom)
                    ce = (losses * sizes).sum()
                    ce_value = float(ce.detach())
                    if not math.isfinite(ce_value):
                        status = "diverged"
                        error = (
                            f"training loss became {ce_value} at step {step + 1} of {steps}; "
                            f"lower the learning rate (model {spec.name}: lr={tc.lr:g})"
                        )
                        break
                    ((ce + aux) / tc.grad_accum).backward()
                    loss_step += ce_value / tc.grad_accum
                    lv = losses.detach().double().cpu().numpy()
                    n_tok = np.array([len(r) for r in groups]) * lm.context
                    for w_ in (win, upd_win):
                        w_.loss[present] += lv * n_tok
                        w_.tokens[present] += n_tok
                        w_.seqs[present] += n_tok // lm.context
                        w_.aux += float(aux.detach())
                        w_.micro += 1
                    domain_tokens[present] += n_tok
                    phase_tokens[sum(fraction >= u for u in ends[:-1]), present] += n_tok  # as weights_at
                    if n_moe:
                        load_all.add(net.routing(), dom, lm.context)
                if status == "diverged":
                    break
                if tc.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(net.parameters(), tc.grad_clip, foreach=True)
                opt.step()
                opt.zero_grad(set_to_none=False)  # keep the buffers: the expert GEMMs add into them in place
                vio = net.end_step()
                step += 1
                for w_ in (win, upd_win):
                    w_.maxvio.append(max(vio) if vio else 0.0)
                win.vio_layers.append(list(vio))
                train_s += time.perf_counter() - t0

                if upd is not None and step % upd.every == 0:
                    obs = Observation(
                        step=step,
                        total_steps=steps,
                        domains=tuple(domains),
                        weights=w_now,
                        losses=upd_win.mean_losses(),
                        tokens=upd_win.tokens.copy(),
                        grads=_probe_grads(net, sampler, upd, seed, step, dev) if upd.wants_grads else None,
                        eval_losses=(_probe_eval(net, valset, domains, upd.eval_windows) if upd.wants_eval
                                     else None),
                        batch=batch if upd.wants_batch else None,
                        batch_domains=dom if upd.wants_batch else None,
                        seq_losses=_probe_batch(net, batch) if upd.wants_batch else None,
                    )
                    try:
                        new = upd.update(obs)
                    except MixoptError:
                        raise
                    except Exception as exc:  # a user's updater: say whose error it is, in one line
                        raise MixoptError(
                            f"updater {upd.name} raised {type(exc).__name__} at step {step}: {exc}"
                        ) from exc
                    if new is not None:
                        upd_w = check_weights(new, G, f"updater {upd.name}")
                        short = [
                            d
                            for d, w, n in zip(domains, upd_w, sampler._n_starts, strict=True)
                            if w > 0 and n < 1
                        ]
                        if short:
                            raise MixoptError(
                                f"updater {upd.name} gave weight to {', '.join(short)}, which hold "
                                f"fewer training tokens than one window of {lm.context + 1}"
                            )
                    upd_win = _Window(G)
                if step % tc.log_every == 0 or step == steps:
                    now = time.perf_counter()
                    rec = _log_record(
                        step,
                        tokens_per_step,
                        tc.lr_at(step - 1, steps),
                        win,
                        domains,
                        w_now,
                        (win.micro * tc.batch * lm.context) / max(now - t_win, 1e-9),
                    )
                    if n_moe:  # which experts each domain's tokens went to in this window
                        window = ExpertLoad(n_moe, domains, lm.n_experts)
                        window.counts[:] = load_all.counts - load_at_log
                        rec["expert_load"] = window.summary()
                        rec["maxvio_layers"] = window.maxvio().tolist()  # over the window's slots
                        load_at_log[:] = load_all.counts
                    logs.append(rec)
                    win, t_win = _Window(G), now
                if on_progress is not None:
                    on_progress(
                        {"step": step, "steps": steps, "loss": loss_step, "tokens": step * tokens_per_step}
                    )
                if step in eval_steps:
                    t1 = time.perf_counter()
                    metrics = valset.evaluate(net)
                    eval_s += time.perf_counter() - t1
                    history.append(
                        {
                            "step": step,
                            "tokens": step * tokens_per_step,
                            **metrics,
                            "maxvio": float(load_all.maxvio().max()) if n_moe else 0.0,
                        }
                    )
                    save_checkpoint()
                    if on_progress is not None:
                        on_progress({"step": step, "steps": steps, "eval": metrics})
                    t_win += time.perf_counter() - t1
                elif every and step % every == 0 and step < steps:
                    save_checkpoint()
            if status == "stopped":
                save_checkpoint()
            if stop.requested and step == steps:
                log.warning(f"{stop.by} came during the last step: the run is finished, nothing to resume")

        metrics = (
            {k: v for k, v in history[-1].items() if k not in ("step", "tokens", "maxvio")} if history else {}
        )
        result = TrainResult(
            status=status,
            out=folder.absolute(),  # as the first run wrote it, whatever folder a --resume is given from
            metrics=metrics,
            history=history,
            log=logs,
            steps=step,
            total_steps=steps,
            tokens=step * tokens_per_step,
            train_seconds=train_s,
            eval_seconds=eval_s,
            flops_per_token=lm.train_flops_per_token(),
            config=config,
            domain_tokens={d: int(n) for d, n in zip(domains, domain_tokens, strict=True)},
            expert_load=load_all.as_dict() if n_moe else None,
            report=prediction_report(mix, metrics, domains, corpus_hash=corpus.hash) if metrics else {},
            error=error,
            phases=_phases(mix, domains, phase_tokens, steps),
        )
        try:
            write_json(folder / "result.json", result.as_dict())
        except OSError as exc:
            full = _no_space(exc, folder, again=state is not None)
            if full is None:
                raise
            raise full from exc
        return result


def _phase_steps(mix: Mixture, steps: int) -> list[tuple[int, int]]:
    """The first and last step (from 1) of each phase of the schedule; first > last: no step."""
    out, first = [], 1
    for i, (until, _) in enumerate(mix.schedule):
        # step s (from 1) draws with the weights at fraction (s - 1) / steps, in phase i while that
        # is < until; until · steps rounds (0.07 · 100 is 7.000000000000001, whose ceil had counted
        # a step of the next phase), so the last step is settled by the comparison weights_at makes
        last = steps if i == len(mix.schedule) - 1 else min(steps, math.ceil(until * steps))
        while last > 0 and (last - 1) / steps >= until:
            last -= 1
        while last < steps and last / steps < until:
            last += 1
        out.append((first, last))
        first = max(first, last + 1)
    return out


def _phases(mix: Mixture, domains: list[str], tokens: np.ndarray, steps: int) -> list[dict[str, Any]]:
    """Each phase of the mixture's schedule: its steps, planned weights and the shares trained."""
    out = []
    for i, ((until, w), (first, last)) in enumerate(zip(mix.schedule, _phase_steps(mix, steps), strict=True)):
        total = int(tokens[i].sum())
        trained = {d: (int(n) / total if total else 0.0) for d, n in zip(domains, tokens[i], strict=True)}
        out.append({"until": until, "steps": [first, last], "tokens": total,
                    "planned": {d: float(w.get(d, 0.0)) for d in domains}, "trained": trained})
    return out


class _StopRequest:
    requested = False
    by = "Ctrl-C"  # the signal's name as a user knows it, for the messages


# SIGHUP: an ssh session dropped under a run started without nohup (Windows has none)
_STOPS = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM",
          **({signal.SIGHUP: "SIGHUP"} if hasattr(signal, "SIGHUP") else {})}


@contextlib.contextmanager
def _stop_at_step_end() -> Iterator[_StopRequest]:
    """Ctrl-C, or SIGTERM (a Slurm or Kubernetes preemption, ``timeout``), asks the loop to stop at
    the end of the step under way (it checkpoints there); a second one stops at once. Outside the
    main thread (no signals there) it never asks."""
    req = _StopRequest()
    main = threading.current_thread() is threading.main_thread()
    previous = {s: signal.getsignal(s) for s in _STOPS} if main else {}
    # Not the main thread (no signals), a handler set from C (None: not restorable), or a signal
    # ignored on purpose (Ctrl-C in a job started with &, a host that ignores SIGTERM): leave it alone.
    ours = [s for s, h in previous.items() if h is not None and h is not signal.SIG_IGN]

    def ask(signum: int, frame: Any) -> None:
        req.requested, req.by = True, _STOPS[signal.Signals(signum)]
        for s in ours:  # the next one of either stops at once
            signal.signal(s, previous[s])
        again = "a second Ctrl-C" if req.by == "Ctrl-C" else f"another {req.by}"
        log.warning(f"{req.by}: stopping at the end of this step (it checkpoints there); "
                    f"{again} stops at once")

    for s in ours:
        signal.signal(s, ask)
    try:
        yield req
    finally:
        for s in ours:
            signal.signal(s, previous[s])


@contextlib.contextmanager
def _drop_if_unused(folder: Path, made: Path | None, *, fresh: bool) -> Iterator[None]:
    """Remove the folders this call created (``made`` and below, down to ``folder``) when training
    fails before writing anything in them.

    A run stopped by an error of its input (a MixoptError: an updater that breaks its contract at
    step N) keeps the checkpoint it wrote, as a crash or a Ctrl-C does: hours of training are not
    thrown away for a bug at step 5000. The error says so and how to go on.
    """
    try:
        yield
    except BaseException as exc:
        remove_made(folder, made)
        kept = (folder / checkpoint.CHECKPOINT).is_file()
        how = "" if fresh else " again"
        if isinstance(exc, MixoptError) and kept:
            raise MixoptError(f"{exc}; the run's last checkpoint is kept in {folder}: fix the cause and "
                              f"--resume{how}, or delete the folder to start over") from exc
        full = _no_space(exc, folder, again=not fresh) if isinstance(exc, OSError) and kept else None
        if full is not None:
            raise full from exc
        raise


def _no_space(exc: OSError, folder: Path, *, again: bool) -> NoSpaceError | None:
    """A full disk where the run folder holds a checkpoint, as an error that says to --resume: the
    CLI's "run the command again" would be refused there (the folder holds a checkpoint)."""
    if exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return None
    where = f" ({exc.filename})" if exc.filename else ""
    resume = "--resume again" if again else "--resume"
    return NoSpaceError(f"no space left to write the run's files{where} ({exc.strerror}): free some; the "
                        f"last checkpoint is kept in {folder}, and {resume} goes on from it")


def _log_record(
    step: int,
    tokens_per_step: int,
    lr: float,
    win: _Window,
    domains: list[str],
    weights: np.ndarray,
    tokens_per_s: float,
) -> dict[str, Any]:
    mean = win.mean_losses()
    total = win.tokens.sum()
    rec: dict[str, Any] = {
        "step": step,
        "tokens": step * tokens_per_step,
        "lr": lr,
        "loss": float(win.loss.sum() / total) if total else math.nan,
        "aux": win.aux / max(win.micro, 1),
        "maxvio": float(np.mean(win.maxvio)) if win.maxvio else 0.0,
        "maxvio_max": float(np.max(win.maxvio)) if win.maxvio else 0.0,
        # each layer's violation step by step, averaged: the imbalance each step paid for, which the
        # window's pooled counts (maxvio_layers) smooth away
        "maxvio_step_layers": np.mean(win.vio_layers, axis=0).tolist() if win.vio_layers and win.vio_layers[0]
        else [],
        "tokens_per_s": tokens_per_s,
        "weights": {d: float(w) for d, w in zip(domains, weights, strict=True)},
    }
    seqs = win.seqs.sum()
    for g, d in enumerate(domains):
        rec[f"share/{d}"] = float(win.seqs[g] / seqs) if seqs else 0.0
        if win.tokens[g]:
            rec[f"loss/{d}"] = float(mean[g])
    return rec
