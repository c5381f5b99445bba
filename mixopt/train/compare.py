"""Mixtures against each other at the final model's scale: :func:`compare`.

Every mixture (a JSON file, ``uniform`` or ``natural``) is trained with the same model config,
token budget and seeds. A seed fixes both the initialisation and the sampler, so runs with the
same seed share their random numbers and differences between mixtures are paired by seed. For
each domain, and the objective (what the mixtures were searched for, or ``--target``; the mean
validation loss by default: :func:`comparison_objective`), the report gives mean ± standard error
over seeds per mixture, and names the best mixture as the winner when it beats every other by
more than its error: the paired difference's t statistic must pass Student's t at the confidence
``z`` standard errors give a normal (z = 2: 97.7% one-sided), on n − 1 degrees of freedom. With a
few seeds that is stricter than z itself (4.5 s.e. for 3 seeds, 14 for 2): a standard error
estimated from 2 or 3 runs is itself uncertain. Otherwise no mixture wins. Runs live in
``<out>/<label>/seed<k>/``; finished runs are reused and interrupted ones resumed, so re-running the
same comparison continues where it stopped. A run that the workspace holds finished elsewhere (another
comparison's, ``mixopt train``'s) with the same fingerprint and device is read back, not trained again.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mixopt import paths
from mixopt.atomic import atomic_path, check_folder_named, check_writable_dir, write_json
from mixopt.corpus.shards import Corpus
from mixopt.errors import MixoptError, MixoptWarning, warn
from mixopt.mixture import Mixture, check_domains
from mixopt.objective import Objective
from mixopt.proxy.job import spec_label
from mixopt.proxy.train import check_memory, check_threads
from mixopt.stats import MAX_SEEDS, critical_t, paired_difference, t_statistic
from mixopt.train import checkpoint
from mixopt.train.config import load_model
from mixopt.train.device import device_key, resolve_device
from mixopt.train.trainer import (
    TrainResult,
    finished_json,
    mixture_key,
    plain_fingerprint,
    resolve_mixture,
    result_from_json,
    train,
)

log = logging.getLogger(__name__)
OBJECTIVE = "objective"  # the training result's metric
# The objective's row in the comparison: a name no domain can have (domain names have no spaces),
# so a domain called "objective" keeps its own row. "mean loss" is the default objective's.
OBJECTIVE_ROW = "mean loss"


def objective_row(objective: Objective) -> str:
    """The row name of ``objective`` (:meth:`Objective.describe`)."""
    return objective.describe()


def comparison_objective(
    mixtures: Sequence[Mixture],
    names: Sequence[str],
    domains: Sequence[str],
    target: str | None = None,
    metric: str | None = None,
) -> tuple[Objective, list[str]]:
    """What the comparison's first row measures, and notes on what it set aside.

    The objective the mixture files record (a search's ``--target`` and ``--metric``), when those
    that name the corpus's domains all agree (weights compared as normalised); else mean loss.
    ``target`` replaces its domains and ``metric`` its metric (``--target``, ``--metric``). A table
    fit's objective (columns of a metrics file, not domains) and ``uniform``/``natural`` record none.
    """
    from mixopt.train.prediction import objective_of

    notes: list[str] = []
    recorded: dict[str, Objective] = {}
    for mix, name in zip(mixtures, names, strict=True):
        meta = mix.meta.get("objective")
        if not meta or meta.get("columns") or meta.get("kind") in ("metric", "mean"):
            continue
        obj, _, why = objective_of(mix)
        if why is not None:
            continue
        missing = sorted(set(obj.weights) - set(domains))
        if missing:
            notes.append(f"{name} was searched for domain(s) {', '.join(missing)}, which the corpus lacks: "
                         "its objective is left aside")
            continue
        recorded[name] = obj
    keys = {json.dumps([o.metric, sorted((d, round(w, 12)) for d, w in o.metric_weights(domains).items())])
            for o in recorded.values()}
    base = Objective()
    if len(keys) == 1:
        base = next(iter(recorded.values()))
    elif len(keys) > 1 and target is None:
        said = "; ".join(f"{n}: {objective_row(o)}" for n, o in recorded.items())
        notes.append(f"the mixtures were searched for different objectives ({said}); the first row is the "
                     f"mean {metric or 'loss'}: give --target to compare on one of them")
    if target is not None:
        base = Objective.parse(target, base.metric)
    if metric is not None:
        base = Objective(metric=metric, weights=base.weights)  # type: ignore[arg-type]
    base.check_domains(domains)
    Objective.say_if_mean_is_a_domain(target, domains)
    return base, notes


@dataclass
class Comparison:
    """Per-mixture, per-metric values over seeds, and the verdicts.

    Attributes:
        labels: mixture labels, in the order given.
        metrics: row names: the objective's (:func:`objective_row`; ``mean loss`` by default), then
            the domains.
        values: label → metric → per-seed values (validation loss, nats/token).
        winners: metric → label of the mixture that wins beyond its error (module doc), or None.
        margins: metric → smallest paired difference (others − best) over its standard error.
        settings: model, dense, corpus (name, hash), token budget, tokens trained (whole steps) and device.
    """

    labels: list[str]
    metrics: list[str]
    seeds: list[int]
    values: dict[str, dict[str, list[float]]]
    winners: dict[str, str | None]
    margins: dict[str, float | None]
    z: float
    out: Path
    png: Path | None = None
    runs: dict[str, list[str]] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    objective: Objective = field(default_factory=Objective)

    @property
    def objective_row(self) -> str:
        return objective_row(self.objective)

    @property
    def threshold(self) -> float | None:
        """The t a winner must pass with these seeds (None with one seed: no error estimate)."""
        return critical_t(self.z, len(self.seeds)) if len(self.seeds) > 1 else None

    def mean(self, label: str, metric: str) -> float:
        return float(np.mean(self.values[label][metric]))

    def sem(self, label: str, metric: str) -> float | None:
        v = self.values[label][metric]
        return float(np.std(v, ddof=1) / math.sqrt(len(v))) if len(v) > 1 else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "labels": self.labels,
            "objective": {**self.objective.as_dict(), "row": self.objective_row},
            "metrics": self.metrics,
            "seeds": self.seeds,
            "z": self.z,
            "values": self.values,
            "winners": self.winners,
            "margins": self.margins,
            "critical_t": self.threshold,
            # Metrics without a winner: seeds that would call one if the differences held (or None).
            "seeds_needed": {m: seeds_needed({lb: self.values[lb][m] for lb in self.labels}, self.z)
                             for m in self.metrics if self.winners[m] is None},
            "mean": {lb: {m: self.mean(lb, m) for m in self.metrics} for lb in self.labels},
            "sem": {lb: {m: self.sem(lb, m) for m in self.metrics} for lb in self.labels},
            "runs": self.runs,
            "png": None if self.png is None else str(self.png),
            "settings": self.settings,
        }


def verdict(values: dict[str, list[float]], z: float) -> tuple[str | None, float | None]:
    """The label whose mean is lowest if it beats every other beyond its error (module doc).

    Returns (winner or None, the smallest t = mean difference / its standard error).
    """
    means = {lb: float(np.mean(v)) for lb, v in values.items()}
    best = min(means, key=means.get)
    ts = []
    for lb, v in values.items():
        if lb == best:
            continue
        if len(v) < 2:
            return None, None
        ts.append(max(t_statistic(*paired_difference(v, values[best])), 0.0))  # paired by seed
    if not ts:
        return None, None
    t_min = min(ts)
    n = len(values[best])
    return (best if t_min > critical_t(z, n) else None), t_min


MAX_SEEDS_NEEDED = 1000
POWER = 0.8  # the chance seeds_needed() sizes for


def seeds_needed(values: dict[str, list[float]], z: float) -> int | None:
    """Seeds at which the leader (lowest mean) would beat every other by :func:`verdict`'s bar with
    an 80% chance (:data:`POWER`), if each paired difference's true mean d and standard deviation sd
    are the ones seen so far: the chance of beating one rival at n seeds is taken as
    Φ(d·√n/sd − t), t the bar, and of beating all as the product over rivals (a far rival counts as
    beaten; the tests share the leader's runs, so this is a little optimistic).

    A QA pass: sized to clear the bar exactly, the figure gave a winner about half the time; the
    review: sized at 80% against each rival, 47% against four as close at once. A planning figure
    for a comparison without a winner: the spread of 2 or 3 seeds is itself rough, so read it as an
    order of magnitude. None when it cannot be said: fewer than 2 seeds, a tie (a rival's mean
    difference is not above 0), or more than :data:`MAX_SEEDS_NEEDED` seeds.
    """
    from statistics import NormalDist

    means = {lb: float(np.mean(v)) for lb, v in values.items()}
    best = min(means, key=means.get)
    gaps = []  # (d, sd) of each rival with a spread; one without is beaten at any 2 seeds
    for lb, v in values.items():
        if lb == best:
            continue
        diff = np.asarray(v) - np.asarray(values[best])  # paired by seed
        if len(diff) < 2:
            return None
        d, sd = float(diff.mean()), float(np.std(diff, ddof=1))
        if d <= 0:
            return None
        if sd > 0:
            gaps.append((d, sd))
    phi = NormalDist().cdf

    def passes(n: int) -> bool:
        t = critical_t(z, n)
        return math.prod(phi(d * math.sqrt(n) / sd - t) for d, sd in gaps) >= POWER

    if not passes(MAX_SEEDS_NEEDED):
        return None
    # each rival's chance grows with n (d·√n/sd grows, the bar falls): bisect for the first n past it
    lo, hi = 1, MAX_SEEDS_NEEDED  # passes(hi); lo stands for "not yet"
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if passes(mid) else (mid, hi)
    return max(2, hi)


def _labels(raw: Sequence[str]) -> list[str]:
    out: list[str] = []
    for r in raw:
        base = spec_label(r)
        label, k = base, 2
        while label in out:
            label, k = f"{base}-{k}", k + 1
        out.append(label)
    return out


def _trained_as(key: dict[str, Any]) -> dict[str, Any]:
    """A mixture key (``mixture_key``, or a fingerprint's from JSON) as trained: weights to 12
    digits, zero weights dropped, a one-phase schedule read as none, and a schedule's phases alone
    (training follows them, not the top-level weights). Mixtures equal in this sense train alike:
    ``compare`` refuses both in one comparison, and reuses one's run for the other."""
    def nonzero(w: Any) -> Any:
        return {d: round(v, 12) for d, v in w.items() if v} if isinstance(w, dict) else w

    phases = key.get("schedule") or []
    if len(phases) == 1 and isinstance(phases[0], list | tuple) and len(phases[0]) == 2:
        return {"weights": nonzero(phases[0][1]), "schedule": []}
    if phases:
        return {"weights": None, "schedule": [[round(u, 12), nonzero(w)] for u, w in phases]}
    return {"weights": nonzero(key.get("weights")), "schedule": []}


def _same_mixture(a: Mixture, b: Mixture) -> bool:
    return _trained_as(mixture_key(a)) == _trained_as(mixture_key(b))


class _FinishedRuns:
    """The finished runs of the workspace (a comparison's ``<label>/seed<k>``, ``mixopt train``'s
    own folders), read once per comparison and kept as their config and metrics (a result.json
    carries the whole log: the one that matches is read again)."""

    def __init__(self) -> None:
        self._by_seed: dict[int, list[tuple[Path, dict[str, Any]]]] = {}

    def of_seed(self, seed: int) -> list[tuple[Path, dict[str, Any]]]:
        if seed not in self._by_seed:
            home = paths.home()
            folders = [*sorted(p.parent for p in (home / "compare").glob(f"*/*/seed{seed}/result.json")),
                       *sorted(p.parent for p in (home / "train").glob(f"*-s{seed}/result.json"))]
            self._by_seed[seed] = [(f, {"config": d.get("config"), "metrics": d.get("metrics")})
                                   for f in folders if (d := finished_json(f)) is not None]
        return self._by_seed[seed]


def finished_run(fingerprint: dict[str, Any], device: str, seed: int, *, prefer: Path | None = None,
                 elsewhere: _FinishedRuns | None = None) -> TrainResult | None:
    """A finished run of ``fingerprint`` on ``device``: in ``prefer`` (the comparison's own folder
    for it) first, then among ``elsewhere``'s. Its losses are what training again would give, so
    a comparison reads it back rather than training again. Its ``out`` is where it was found.
    """
    wanted, on = {**fingerprint, "mixture": _trained_as(fingerprint["mixture"])}, device_key(device)
    own = [(prefer, d)] if prefer is not None and (d := finished_json(prefer)) is not None else []
    for folder, done in [*own, *(elsewhere.of_seed(seed) if elsewhere is not None else [])]:
        cfg, metrics = done.get("config"), done.get("metrics")
        if not (isinstance(cfg, dict) and isinstance(metrics, dict) and OBJECTIVE in metrics
                and isinstance(cfg.get("mixture"), dict) and device_key(str(cfg.get("device"))) == on):
            continue
        try:
            theirs = {**{k: cfg.get(k) for k in fingerprint}, "mixture": _trained_as(cfg["mixture"])}
        except (TypeError, ValueError, AttributeError):  # a hand-edited or foreign result.json
            continue
        if theirs != wanted:
            continue
        # elsewhere's runs keep only config and metrics: the whole result.json is read for the one used
        full = done if own and folder == prefer else finished_json(folder)
        if full is not None and (res := result_from_json(full, folder)) is not None:
            return res
    return None


def _run_one(folder: Path, **kw: Any) -> TrainResult:
    resume = (folder / checkpoint.CHECKPOINT).exists()
    try:
        return train(out=folder, resume=resume, **kw)
    except checkpoint.CheckpointMismatch as exc:  # in compare's words: it has no --resume
        raise MixoptError(
            f"{folder} holds a run of another comparison (it differs in {exc.differences}); run compare "
            "with that comparison's settings to go on with it, or give another --out"
        ) from exc


def compare(
    mixtures: Sequence[str],
    corpus: Corpus | str,
    model: str = "moe-s",
    *,
    seeds: int = 3,
    tokens: int | None = None,
    dense: bool = False,
    out: str | Path | None = None,
    z: float = 2.0,
    threads: int | None = None,
    device: str = "cpu",
    target: str | None = None,
    metric: str | None = None,
    on_run: Callable[[str, int, int, int], None] | None = None,
    on_reuse: Callable[[str, int, Path], None] | None = None,
    reuse: bool = True,
) -> Comparison:
    """Train every mixture with seeds 0..seeds-1 and compare per-domain validation losses.

    Args:
        mixtures: mixture JSON paths, ``uniform`` or ``natural`` (at least two).
        seeds: runs per mixture (≥ 2 for standard errors; 1 gives means only).
        out: comparison folder (default: workspace ``compare/<model>-<labels>``).
        target, metric: the objective of the first row, as ``search --target``/``--metric`` take
            them (default: the one the mixture files record, see :func:`comparison_objective`).
        on_run: called with (label, seed, run index, number of runs to train) before each run.
        on_reuse: called with (label, seed, folder) for each run not trained because the
            workspace holds it finished (another comparison's, or ``mixopt train``'s) with the same
            mixture, model, budget, corpus, seed and device.
        reuse: look for such runs (False: train every run in ``out``).

    Raises:
        MixoptError: fewer than two mixtures, seeds < 1, or any bad mixture (checked before training).
    """
    check_folder_named(out)
    if len(mixtures) < 2:
        raise MixoptError("compare needs at least two mixtures (JSON files, uniform, natural, or weights "
                          "such as code=0.5,math=0.5)")
    if seeds < 1:
        raise MixoptError(f"--seeds is {seeds}; give at least 1 (2 or more for standard errors)")
    if seeds > MAX_SEEDS:
        raise MixoptError(f"--seeds is {seeds:,}; give at most {MAX_SEEDS} seeds per mixture")
    if not (math.isfinite(z) and z >= 0):  # an infinite bar is one no mixture can ever pass
        raise MixoptError(f"--z is {z}; give a finite number of standard errors ≥ 0 (2 is the default)")
    corpus = corpus if isinstance(corpus, Corpus) else Corpus.open(corpus)
    spec = load_model(model)
    resolved = []
    for raw in mixtures:  # every mixture checked before any run, its errors naming it
        try:
            resolved.append(resolve_mixture(raw, corpus)[0])
        except MixoptError as exc:
            if str(raw) in str(exc):  # the file's own errors name it already
                raise
            raise MixoptError(f"{raw}: {exc}") from exc
    for m, raw in zip(resolved, mixtures, strict=True):
        check_domains(m.weights, corpus.domains, where=f"mixture {raw}")
    for j, (m, raw) in enumerate(zip(resolved, mixtures, strict=True)):
        same = next((mixtures[i] for i in range(j) if _same_mixture(resolved[i], m)), None)
        if same is not None:
            raise MixoptError(f"{raw} is the same mixture as {same}: give each mixture once")
    names = [str(m) for m in mixtures]
    objective, notes = comparison_objective(resolved, names, corpus.domains, target, metric)
    for note in notes:
        warn(note, MixoptWarning)
    row = objective_row(objective)
    budgeted = spec.with_tokens(tokens) if tokens is not None else spec
    # lm_config refuses a budget under one step, here before any folder is made
    check_memory(budgeted.lm_config(corpus.vocab_size, dense=dense).params()["total"], f"model {spec.name!r}")
    resolve_device(device)  # before any folder or run: `cuda` without a GPU, a device torch lacks
    if threads is not None:
        check_threads(threads)
    labels = _labels(mixtures)
    budget = budgeted.train.tokens
    # The corpus, the budget and a device other than the CPU name the folder too: another of any
    # is another comparison (a run on one device is not resumed on another).
    on = "" if device_key(device) == "cpu" else "-" + re.sub(r"[^A-Za-z0-9]+", "", device_key(device))
    folder = (
        Path(out)
        if out is not None
        else (paths.home() / "compare"
              / f"{spec.name}{'-dense' if dense else ''}-{'-'.join(labels)}-{corpus.name}-{budget}{on}")
    )
    if out is not None:  # a comparison folder holds compare.json or its runs' label/seedN folders (a
        # comparison killed before its first checkpoint leaves one empty)
        ours = (folder / "compare.json").exists() or any(p.is_dir() for p in folder.glob("*/seed[0-9]*"))
        checkpoint.refuse_foreign_folder(folder, ours=ours, writes="compare.json, compare.png and a folder "
                                         "per mixture")
    check_writable_dir(folder)
    values: dict[str, dict[str, list[float]]] = {lb: {} for lb in labels}
    runs: dict[str, list[str]] = {lb: [] for lb in labels}
    done: dict[tuple[str, int], TrainResult] = {}  # finished already: read back, found before any training
    finished = _FinishedRuns()
    # the CPU's thread count changes a run's last digits (a GPU's numerics are its own)
    cpu_threads = (threads or torch.get_num_threads()) if device_key(device) == "cpu" else None
    for label, mix in zip(labels, resolved, strict=True):
        for seed in range(seeds):
            own = folder / label / f"seed{seed}"
            fp = plain_fingerprint(mix, corpus, budgeted, seed=seed, dense=dense)
            # its own finished run (its checkpoint may be deleted to free disk), or, unless told
            # not to, another's; an own run cut short resumes below
            others = finished if reuse and not (own / checkpoint.CHECKPOINT).exists() else None
            if (res := finished_run(fp, device, seed, prefer=own, elsewhere=others)) is not None:
                done[label, seed] = res
                if on_reuse is not None and res.out.resolve() != own.resolve():
                    on_reuse(label, seed, res.out)
    # The CPU's thread count changes a run's last digits (a QA pass: 7.1127 on 1 thread, 7.1167 on 2),
    # far less than a seed does: a run of another count is reused, and said (results record theirs
    # since 2026-12-06)
    other = sorted({t for r in done.values() if (t := r.config.get("threads")) not in (None, cpu_threads)})
    if cpu_threads is not None and other:
        n = sum(r.config.get("threads") in other for r in done.values())
        warn(f"compare: {n} reused run(s) trained on {'/'.join(map(str, other))} thread(s), not the "
             f"{cpu_threads} of this comparison: their last digits differ from a run trained here, far less "
             "than one seed from another; --threads as theirs matches them, and a new --out with "
             "--no-reuse trains them all here", MixoptWarning)
    total, i, trained = len(labels) * seeds - len(done), 0, 0
    for label, mix in zip(labels, resolved, strict=True):
        for seed in range(seeds):
            if (label, seed) in done:
                res = done[label, seed]
            else:
                if on_run is not None:
                    on_run(label, seed, i, total)
                i += 1
                res = _run_one(
                    folder / label / f"seed{seed}",
                    mixture=mix,
                    corpus=corpus,
                    model=spec,
                    seed=seed,
                    tokens=tokens,
                    dense=dense,
                    threads=threads,
                    device=device,
                )
            if res.status != "ok":
                raise MixoptError(
                    f"compare: {label} seed {seed} ended {res.status}: {res.error}; "
                    "fix the config (e.g. a lower learning rate) and run compare again"
                )
            # absolute whether trained or read back (a rerun had listed reused runs relative: a QA pass)
            runs[label].append(str(Path(res.out).absolute()))
            trained = res.tokens  # whole steps: the budget rounded down, the same for every run
            # the trainer's own mean over the domains it evaluates, or the objective's weighted mean
            value = (res.metrics[OBJECTIVE] if row == OBJECTIVE_ROW
                     else objective.value(res.metrics, corpus.domains))
            values[label].setdefault(row, []).append(value)
            for d in corpus.domains:
                values[label].setdefault(d, []).append(res.metrics[f"loss/{d}"])
    metrics = [row, *corpus.domains]
    winners, margins = {}, {}
    for m in metrics:
        winners[m], margins[m] = verdict({lb: values[lb][m] for lb in labels}, z)
    cmp = Comparison(
        labels=labels,
        metrics=metrics,
        seeds=list(range(seeds)),
        values=values,
        winners=winners,
        margins=margins,
        z=z,
        out=folder,
        runs=runs,
        objective=objective,
        # What makes the figures comparable with another comparison's, kept with them.
        settings={
            "model": spec.name,
            "dense": dense,
            "corpus": {"name": corpus.name, "hash": corpus.hash},
            "tokens": budget,
            "tokens_trained": trained,
            "device": device_key(device),
        },
    )
    cmp.png = plot(cmp, folder / "compare.png")
    write_json(folder / "compare.json", cmp.as_dict())
    return cmp


def plot(cmp: Comparison, path: Path) -> Path:
    """Points ± 1 s.e.: validation loss per metric (objective and domains) per mixture.

    Each panel zooms on its own spread, since losses differ in the second decimal; points, not bars,
    because a bar's length on an axis that does not start at 0 would overstate the differences."""
    from mixopt import plots

    n_m, n_l = len(cmp.metrics), len(cmp.labels)
    fig, axes = plots.pyplot().subplots(1, n_m, figsize=(max(6.0, 1.6 * n_m + 1.0 * n_l), 3.8), squeeze=False)
    for ax, metric in zip(axes[0], cmp.metrics, strict=True):
        means = [cmp.mean(lb, metric) for lb in cmp.labels]
        errs = [cmp.sem(lb, metric) or 0.0 for lb in cmp.labels]
        for i, (m, e) in enumerate(zip(means, errs, strict=True)):
            ax.errorbar(i, m, yerr=e, fmt="o", capsize=3, color=plots.color(i))
        ax.grid(axis="y", alpha=0.3)
        ax.set_xlim(-0.5, n_l - 0.5)
        lo = min(m - e for m, e in zip(means, errs, strict=True))
        hi = max(m + e for m, e in zip(means, errs, strict=True))
        pad = max(hi - lo, 1e-3) * 0.6
        ax.set_ylim(lo - pad, hi + pad)  # losses differ in the second decimal: zoom on them
        win = cmp.winners.get(metric)
        ax.set_title(f"{metric}" + (f"\nwinner: {win}" if win else "\nno clear winner"), fontsize=9)
        ax.set_xticks(range(n_l), cmp.labels, rotation=45, ha="right", fontsize=8)
        ax.tick_params(axis="y", labelsize=8)
    loss_label = "validation loss (nats/token)"
    axes[0][0].set_ylabel("bits per byte" if cmp.objective.metric == "bpb" else loss_label)
    if cmp.objective.metric == "bpb" and len(axes[0]) > 1:
        axes[0][1].set_ylabel(loss_label)
    fig.suptitle(f"mean ± s.e. over {len(cmp.seeds)} seed(s); each panel has its own scale", fontsize=10)
    with atomic_path(path) as tmp:
        plots.save(fig, tmp)
    return path
