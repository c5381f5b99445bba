"""``mixopt fit --fidelity-law`` as a library call: propose a mixture for a larger scale from the store.

Reads the run store's ``ok`` runs (all, or those of the named searches) with their checkpoint
histories, turns each into a :class:`~mixopt.fitters.nested.Curve` (model size from its proxy
rung), predicts every mixture's metrics at the target tokens and size
(:func:`~mixopt.fitters.nested.predict_at_scale`), fits the method on those predictions (laws: one
per metric, then the objective's weighted sum; other fitters: on the objective) and proposes. The
mixture JSON records the laws fitted at each stage.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mixopt.errors import MixoptError, MixoptWarning, warn, warn_if_ok, warnings_if_ok
from mixopt.fitters.nested import (
    Checkpoints,
    Curve,
    ScalePrediction,
    checkpoint_rows,
    mixture_key,
    predict_at_scale,
)
from mixopt.space import SearchSpace, check_finite_positive
from mixopt.store import NO_HISTORY

# --target-tokens this many times the runs' last checkpoint is warned of (a unit slip, or a guess):
# the README's example goes 2,680× past the xs rung's runs
FAR = 1e4


@dataclass(frozen=True, kw_only=True)
class ScaleFitConfig:
    """What ``mixopt fit --fidelity-law`` was asked to do.

    Attributes:
        store: run store path (None: the workspace's).
        searches: searches whose runs are used (empty: every ok run in the store).
        method: the fitter/proposer method (``mixing-law`` by default, as in Data Mixing Laws).
        target: objective domains (``d1,d2`` or ``d1=0.7,d2=0.3``; empty: all); metric: loss or bpb.
        target_tokens: training tokens to extrapolate each run to (None: its last checkpoint).
        target_size: non-embedding parameters to extrapolate each mixture to (None: the largest rung).
        size_exponent: a fixed exponent for the size law (needed with only two rungs).
        out: mixture JSON path (None: nothing written).
        seed, min_weight, ceilings, fixed, kl: as for ``mixopt fit``.
        max_epochs: the proposal's repetition cap at ``target_tokens``, over the domains' tokens
            as the runs' searches recorded them.
        report: a folder for the laws' plots and report.md (:mod:`mixopt.fit.scale_report`);
            checked by :func:`mixopt.plots.check_report_dir` before the fit.
    """

    store: str | None = None
    searches: Sequence[str] = ()
    method: str = "mixing-law"
    target: str | None = None
    metric: str = "loss"
    target_tokens: float | None = None
    target_size: float | None = None
    size_exponent: float | None = None
    out: Path | None = None
    seed: int = 0
    min_weight: float = 0.0
    ceilings: Mapping[str, float] = field(default_factory=dict)
    fixed: Mapping[str, float] = field(default_factory=dict)
    kl: float | None = None
    max_epochs: float | None = None
    report: Path | None = None

    def __post_init__(self) -> None:
        for name in ("max_epochs", "target_tokens", "target_size", "size_exponent"):
            check_finite_positive(f"--{name.replace('_', '-')}", getattr(self, name))


def searched_tokens(store: Any, domains: Sequence[str], searches: Sequence[str]) -> dict[str, float] | None:
    """Each domain's training tokens as ``searches`` (those of the runs fitted) recorded them, or None
    when none did (runs imported, or from an evaluator without --tokens).

    Raises:
        MixoptError: the searches recorded different counts (runs of two corpora).
    """
    found: dict[str, dict[str, float]] = {}
    for name in searches:
        rec = store.get_search(name)
        tokens = (((rec.plan or {}).get("space") or {}).get("tokens")) if rec is not None else None
        if tokens and sorted(tokens) == sorted(domains):
            found[name] = {d: float(tokens[d]) for d in domains}
    counts = list(found.values())
    if any(c != counts[0] for c in counts[1:]):
        raise MixoptError(
            f"the searches of these runs recorded different token counts per domain ({', '.join(found)}): "
            "runs of different corpora; name one corpus's searches with --search"
        )
    return counts[0] if counts else None


def curves_from_store(store: Any, searches: Sequence[str] = ()) -> tuple[list[str], list[Curve]]:
    """(domains, curves) of the store's ok runs with a history; one domain set only."""
    from mixopt.reuse import trained_weights

    ok = store.runs(search_id=list(searches) or None, status="ok")
    runs = sorted((r for r in ok if r.history), key=lambda r: r.run_id)  # not Ray's timing (store.matrix)
    if not runs:
        where = (f"search{'es' if len(searches) > 1 else ''} {', '.join(searches)} "
                 f"{'have' if len(searches) > 1 else 'has'}" if searches else "the store has")
        bare = (f" ({len(ok)} finished runs have none: {NO_HISTORY}, hold one value each; fit tables with "
                "--ratios/--metrics)" if ok else "")
        raise MixoptError(f"{where} no finished runs with checkpoint histories{bare}; --fidelity-law "
                          "needs the runs of a search (at two or more rungs for a size law), or a table of "
                          "checkpoints loaded with `mixopt runs import`")
    # what each run trained: a search that reused a mixture keeps its runs over its units
    trained = {r.run_id: trained_weights(r.weights, r.fidelity_key) for r in runs}
    sets = {tuple(sorted(trained[r.run_id])) for r in runs}
    if len(sets) > 1:
        raise MixoptError(
            f"the runs cover {len(sets)} different domain sets; name the searches to use with --search"
        )
    # Runs of two evaluators (or corpora) at one mixture are two landscapes: one law through both
    # fitted neither (a QA pass: a shared exponent of 0.36–0.47 where each had 0.5).
    for what, values in (("evaluators", {json.loads(r.fidelity_key).get("evaluator") for r in runs}),
                         ("corpora", {r.corpus_hash for r in runs})):
        if len(values) > 1:
            shown = ", ".join(sorted(str(v) if v is not None else "none" for v in values))
            # imported runs belong to no search that --search could name (a QA pass)
            mixed = len({r.role == "import" for r in runs}) > 1
            way = ("; runs imported from tables belong to no search: name them on import (`mixopt runs "
                   "import --search NAME`) and fit them with --search NAME, or import them into a store of "
                   "their own (--store)" if mixed else "")
            raise MixoptError(f"the runs come from {len(values)} {what} ({shown}); a law across scale "
                              f"fits the runs of one: name its searches with --search{way}")
    if len(runs) < len(ok):  # said, not dropped unseen (a QA pass: "30 runs" of a store of 60)
        warn(f"{len(ok) - len(runs)} of the {len(ok)} finished runs have no checkpoint history "
             f"({NO_HISTORY}) and are left out", MixoptWarning)
    domains = sorted(sets.pop())
    sizes: dict[str, set[float]] = {}  # rung name → the sizes its runs were given
    shipped: dict[str, tuple[float, Any]] = {}  # mixopt's rungs: size and learning-rate schedule
    assumed: dict[str, str] = {}  # imported runs sized by a rung of mixopt's name: what to say
    hashes: dict[str, str] = {}
    changed: set[str] = set()  # rungs whose recipe changed since some of the runs trained
    curves = []
    for r in runs:
        rung, size, schedule = _size_of(r, shipped, assumed)
        sizes.setdefault(rung, set()).add(size)
        if any("tokens" not in h for h in r.history):  # a table's checkpoints by step alone
            fix = (" (imported by step alone); import its tables again with --tokens-per-step N, after "
                   "`mixopt runs delete --prefix P` with that import's --prefix"
                   if r.role == "import" else "; its evaluator's history must give each checkpoint's tokens")
            raise MixoptError(f"run {r.run_id}'s checkpoints have no token counts{fix}")
        # A checkpoint at 0 tokens (a table's evaluation before training) is on no law in tokens
        hist = sorted((h for h in r.history if h["tokens"] > 0), key=lambda h: h["tokens"])
        if not hist:
            raise MixoptError(f"run {r.run_id} has no checkpoint after 0 tokens; leave it out")
        # every metric any checkpoint has (a table's first row may lack one)
        names = set().union(*hist).difference({"step", "tokens"})
        # The proxy's learning rates are its rung's (as long as the rung is the one they trained
        # with); a user's evaluator's are unknown, and so are an imported table's.
        key = json.loads(r.fidelity_key)
        schedule = schedule if key.get("evaluator") == "proxy" and r.role != "import" else None
        if schedule is not None and key.get("rung_hash"):
            if rung not in hashes:
                from mixopt.proxy.rungs import rung_hash

                hashes[rung] = rung_hash(str(rung))
            if key["rung_hash"] != hashes[rung]:
                changed.add(str(rung))
                schedule = None
        steps = np.array([h.get("step", np.nan) for h in hist], dtype=float)
        known = schedule is not None and bool(np.all(steps > 0))
        curves.append(
            Curve(
                run_id=r.run_id,
                weights=np.array([trained[r.run_id].get(d, 0.0) for d in domains]),
                size=size,
                rung=rung,
                search_id=r.search_id,
                tokens=np.array([h["tokens"] for h in hist], dtype=float),
                losses={m: np.array([h.get(m, np.nan) for h in hist], dtype=float) for m in names},
                steps=steps if known else None,
                lr_schedule=schedule if known else None,
            )
        )
    if twice := {name: v for name, v in sizes.items() if len(v) > 1}:  # one name, two sizes: which is it?
        name, v = next(iter(twice.items()))
        shown = ", ".join(f"{x:.6g}" for x in sorted(v))
        raise MixoptError(f"rung {name!r} holds runs of {len(v)} model sizes ({shown}): name the searches to "
                          "use with --search, or give imported tables of each size a rung name of its own "
                          "(`runs import --fidelity rung=NAME,params=N`)")
    for said in assumed.values():
        warn(said, MixoptWarning)
    if changed:
        warn(
            f"rung {', '.join(sorted(changed))} changed since some of these runs trained (its recipe in "
            "proxies/ differs from theirs): their learning rates are unknown, so their step law runs in "
            "tokens",
            MixoptWarning,
        )
    return domains, curves


def _size_of(r: Any, shipped: dict[str, tuple[float, Any]], assumed: dict[str, str],
             ) -> tuple[str, float, Any]:
    """(rung name, non-embedding parameters, the rung's learning-rate schedule or None) of run ``r``;
    ``shipped`` caches mixopt's rungs, ``assumed`` collects what to say of imported runs' sizes."""
    from mixopt.proxy.rungs import imported_size, load_rung

    rung, params = r.fidelity.get("rung"), r.fidelity.get("params")
    if r.role == "import":  # a table's runs: their params, or a shipped rung's size said to be assumed
        size, said = imported_size(rung, params)
        if size is None:
            raise MixoptError(f"run {r.run_id}: {said}")
        if said:
            assumed[str(rung)] = said
        return (str(rung) if rung is not None else f"{size:.12g} params"), size, None
    if params is not None:  # a rung defined in code (the benchmark's ladder) records its size, not its rates
        return (str(rung) if rung is not None else f"{float(params):.12g} params"), float(params), None
    if rung is None:
        raise MixoptError(f"run {r.run_id} has no proxy rung in its fidelity; its model size is unknown")
    if rung not in shipped:
        config = load_rung(str(rung))
        shipped[rung] = (float(config.non_embedding_params()), config.lr_schedule)
    return str(rung), *shipped[rung]


@warn_if_ok  # notes on the runs are noise above a refusal (a QA pass: --min-weight's, one line no more)
def fit_across_scale(config: ScaleFitConfig) -> dict[str, Any]:
    """Extrapolate the store's runs to the target scale, fit ``config.method`` and propose; with
    ``config.report``, draw the laws there, the fit's warnings among the report's notes.

    Raises:
        MixoptError: no usable runs, too few rungs or checkpoints for a law, bad constraints.
    """
    with warnings_if_ok() as caught:  # shown as they were raised, and kept for the report
        report, draw = _fit_across_scale(config)
    if draw is not None:
        said = list(dict.fromkeys(str(w.message) for w in caught if issubclass(w.category, MixoptWarning)))
        report["report"] = [str(p) for p in draw(warned=said)]
    return report


def _fit_across_scale(config: ScaleFitConfig) -> tuple[dict[str, Any], Callable[..., list[Path]] | None]:
    """:func:`fit_across_scale`'s fit: (its result, what draws its report, or None without one)."""
    from mixopt.methods import fit_target, get_method
    from mixopt.objective import Objective
    from mixopt.store import RunStore, refuse_store_as_output

    t0 = time.perf_counter()
    method = get_method(config.method)
    kl_params = method.kl_option(config.kl)
    if method.fitter is None:
        raise MixoptError(
            f"method {method.name!r} fits no model; use mixing-law, loglinear, bimix, gp or auto"
        )
    objective = Objective.parse(config.target, config.metric)  # a bad --metric before the store
    if config.out is not None:  # before the fit, not after it; nor over the store the fit reads
        from mixopt.atomic import check_writable

        refuse_store_as_output(config.out, config.store)
        check_writable(config.out)
    if config.report is not None:  # a folder the report cannot replace: before the fit, not after it
        from mixopt.plots import check_report_dir

        config = dataclasses.replace(config, report=check_report_dir(config.report, out=config.out))
    store = RunStore(config.store, create=False) if config.store is not None else RunStore()
    for name in config.searches:  # a mistyped --search is no search, not a search without runs
        store.require_search_or_group(name)
    bivariate = method.fitter == "bimix"  # BiMix's own law has the step term: fitted on every checkpoint
    if bivariate and (config.target_size is not None or config.size_exponent is not None):
        raise MixoptError(
            "bimix's law has a step term and no model-size term: --target-size/--size-exponent need a "
            "size law (--method mixing-law or loglinear); drop them to fit bimix over the largest rung's "
            "checkpoints and extrapolate in --target-tokens"
        )
    domains, curves = curves_from_store(store, config.searches)
    last = max(float(c.tokens.max()) for c in curves)
    if config.target_tokens is not None and config.target_tokens > FAR * last:
        warn(f"--target-tokens {config.target_tokens:.3g} is {config.target_tokens / last:.3g}× the runs' "
             f"last checkpoint ({last:.3g} tokens): check that both count tokens (a table's in billions?); "
             "a law carried that far is a rough guide", MixoptWarning)
    if config.target_tokens is None and config.target_size is None:  # said once the runs are usable
        warn(
            "no --target-tokens: bimix is fitted over the largest rung's checkpoints and proposes for "
            "the last one, with nothing extrapolated" if bivariate else
            "no --target-size or --target-tokens: the mixing law is fitted on the largest rung's last "
            "checkpoint, with nothing extrapolated; give a target scale to use the step and size laws",
            MixoptWarning,
        )
    Objective.say_if_mean_is_a_domain(config.target, domains)
    weights = objective.metric_weights(domains)
    rows = None
    if bivariate:
        rows = checkpoint_rows(curves, list(weights))
        metrics = rows.metrics
    else:
        pred = predict_at_scale(
            curves,
            list(weights),
            target_tokens=config.target_tokens,
            target_size=config.target_size,
            size_exponent=config.size_exponent,
        )
        metrics = pred.metrics
    w = np.array([weights[m] for m in metrics])
    # The repetition cap and token plan at the target budget, over the corpus the runs trained on
    used = config.searches or sorted({c.search_id for c in curves if c.search_id})
    tokens = searched_tokens(store, domains, used)
    if config.max_epochs is not None and (tokens is None or config.target_tokens is None):
        raise MixoptError(
            "--max-epochs caps passes over each domain at --target-tokens: give --target-tokens"
            if tokens is not None else
            "--max-epochs needs each domain's tokens, and the searches of these runs recorded none "
            "(a search over a corpus, or with --tokens, records them)"
        )
    space = SearchSpace(
        domains=tuple(domains),
        min_weight=config.min_weight,
        ceilings=dict(config.ceilings),
        fixed=dict(config.fixed),
        tokens=tokens,
        max_epochs=config.max_epochs,
        target_tokens=config.target_tokens if tokens is not None else None,
    )
    from mixopt.swarm import single_mixture

    if (single := single_mixture(space, "propose")) is not None:  # as `fit --propose` and search refuse it
        raise single  # (a review: it wrote that mixture, its baselines "moved into the constraints")
    model = method.make_fitter(seed=config.seed, domains=space.domains,
                               metrics={m: weights[m] for m in metrics},
                               **({"at_step": config.target_tokens} if bivariate else {}))
    if rows is not None:
        if config.target_tokens is not None and np.ptp(rows.tokens) == 0:
            raise MixoptError(
                f"the runs of the largest rung record one checkpoint each (at {rows.tokens[0]:.6g} tokens), "
                "so bimix cannot fit its step term to extrapolate to --target-tokens; use runs with 2 or "
                "more checkpoints (the rung's eval_at), or drop --target-tokens"
            )
        model.fit(rows.X, fit_target(model, rows.Y @ w, rows.Y), steps=rows.tokens)
        pred = _bimix_prediction(model, rows)
    else:
        model.fit(pred.X, fit_target(model, pred.Y @ w, pred.Y))
    from mixopt.proposers.hold import propose_holding

    prop = propose_holding(method.make_proposer(seed=config.seed, **kl_params), model, pred.X, space)
    prop = dataclasses.replace(prop, method=method.name)
    report = {
        "method": method.name,
        "domains": domains,
        "n_runs": sum(len(ids) for ids in pred.run_ids),  # the runs behind the mixtures used
        "n_mixtures": len(pred.X),
        "sizes": pred.sizes,
        "rungs": {f"{c.size:.6g}": c.rung for c in curves if c.rung},  # size → rung name
        "metrics": pred.metrics,
        "target_tokens": config.target_tokens,
        "target_size": config.target_size,
        "size_exponent": config.size_exponent,  # the size law's β, fixed (None: fitted)
        "laws": pred.laws,
        "predicted_objective": {"min": float((pred.Y @ w).min()), "max": float((pred.Y @ w).max())},
        "proposal": prop.as_dict(domains),
        "out": str(config.out) if config.out else None,
        "seconds": round(time.perf_counter() - t0, 3),
    }
    from mixopt.proposers.proposal import proposal_notes

    report["baselines"], moved = _baselines(model, pred, w, space, carried=not bivariate)
    best = report["baselines"]["best_run"]
    # What `fit` on tables and `search` say of a proposal, judged on the runs extrapolated to the
    # target scale (what the model was fitted on): past its runs, held near the prior by the KL term,
    # or predicted worse than the best run's mixture (a docs audit: bimix's 1.9596 beside 1.9537 for
    # the best run, without a word)
    notes = proposal_notes(prop, pred.X, pred.Y @ w, domains, method.name, fixed=space.fixed,
                           kl=kl_params.get("kl"),
                           best=(best["predicted"], best["run_id"]) if best["inside_constraints"] else None)
    if repeats := space.repetition_note(prop.weights):
        notes.append(repeats)
    if rows is not None and len({c.size for c in curves}) > 1:
        notes.append(f"bimix has no model-size term: only the largest rung's runs ({rows.size:.3g} params) "
                     "were fitted")
    if space.target_tokens is not None:
        report["tokens"] = space.token_plan(prop.weights)
    report["notes"] = notes + moved
    if config.out is not None:
        _save(config, prop, method.name, domains, objective, pred, report)
    if config.report is None:
        return report, None
    from mixopt.fit.scale_report import write_scale_report

    return report, functools.partial(write_scale_report, config.report, report, pred=pred, curves=curves,
                                     weights=weights, model=model if bivariate else None)


def _baselines(model: Any, pred: ScalePrediction, w: np.ndarray, space: SearchSpace, *,
               carried: bool) -> tuple[dict[str, Any], list[str]]:
    """What the proposal's prediction is read against, at the target scale, and the notes on them: the
    model's prediction for uniform (and natural and temperature where the searches recorded tokens)
    and for the best run's mixture inside the constraints (a walkthrough: a JSON predicting 4.57 with
    nothing beside it). ``carried``: the runs' values were carried there by their own step and size
    laws, and are recorded beside the model's (BiMix's are its own prediction: nothing to add)."""
    from mixopt.baselines import baselines_for, moved_note
    from mixopt.fitters.protocol import predict_objective
    from mixopt.proposers.proposal import best_run_note

    def entry(x: np.ndarray) -> dict[str, Any]:
        return {"weights": {d: float(v) for d, v in zip(space.domains, x, strict=True)},
                "predicted": float(predict_objective(model, x[None, :])[0])}

    named = baselines_for(space)
    out = {name: entry(x) for name, x in named.items()}
    # as `fit` on tables and `search` say them: a "uniform" that --fix or a bound moved, and a best
    # run outside the constraints (the proposal could not have been it)
    notes = [n for name, x in named.items() if (n := moved_note(name, space, inside=x))]
    extrapolated = pred.Y @ w
    ids = [run_ids[-1] for run_ids in pred.run_ids]
    inside = space.best_row(pred.X, extrapolated)
    best = inside if inside is not None else int(np.argmin(extrapolated))
    out["best_run"] = {"run_id": ids[best], "run_ids": list(pred.run_ids[best]),
                       "inside_constraints": inside is not None,
                       **({"extrapolated": float(extrapolated[best])} if carried else {}),
                       **entry(pred.X[best])}
    if note := best_run_note(space, pred.X, extrapolated, ids, listed=True):
        notes.append(note)
    return out, notes


def _bimix_prediction(model: Any, rows: Checkpoints) -> ScalePrediction:
    """BiMix fitted on ``rows``: each mixture's metrics at its ``at_step``, with the law's exponents and
    its RMS residual over the checkpoints, in the form of :func:`predict_at_scale`'s result."""
    from mixopt.fitters.metricsum import MetricSum

    law = model.estimator_ if isinstance(model, MetricSum) else model
    m = len(rows.metrics)
    fitted = np.asarray(law.predict(rows.X, steps=rows.tokens), dtype=float).reshape(-1, m)
    rms = np.sqrt(np.mean((fitted - rows.Y) ** 2, axis=0))
    # R² over the checkpoints: the RMS alone reads badly next to a step law's, which fits each run
    # on its own (most of BiMix's residual is across mixtures, its own-share form's misfit).
    r2 = 1.0 - rms**2 / np.maximum(rows.Y.var(axis=0), 1e-300)
    # each mixture once, at its first run's own weights: the key is rounded to 6 decimals, and those
    # rounded weights, as the best run's baseline, were not the run's and could miss a sum of 1 by more
    # than the constraints' 1e-6 (hypothesis: "no run is inside the constraints" with none given)
    keys: dict[tuple[float, ...], tuple[np.ndarray, list[str]]] = {}
    for x, rid in zip(rows.X, rows.run_ids, strict=True):
        ids = keys.setdefault(mixture_key(x), (x, []))[1]
        if rid not in ids:
            ids.append(rid)
    X = np.array([x for x, _ in keys.values()], dtype=float).reshape(len(keys), rows.X.shape[1])
    return ScalePrediction(
        X=X,
        Y=np.asarray(law.predict(X), dtype=float).reshape(-1, m),
        metrics=rows.metrics,
        sizes=[rows.size],
        run_ids=[ids for _, ids in keys.values()],
        laws={"step": {}, "size": {},
              "bimix": {name: {**e, "rms": float(r), "r2": float(q)}
                        for name, e, r, q in zip(rows.metrics, law.exponents(), rms, r2, strict=True)}},
    )


def _save(
    config: ScaleFitConfig,
    prop: Any,
    method: str,
    domains: list[str],
    objective: Any,
    pred: ScalePrediction,
    report: dict[str, Any],
) -> None:
    from mixopt.mixture import Mixture, evidence

    sizes = ", ".join(f"{s:.3g}" for s in pred.sizes)
    extrapolated = config.target_tokens is not None or config.target_size is not None
    Mixture(
        {d: float(x) for d, x in zip(domains, prop.weights, strict=True)},
        meta=evidence(**{
            "objective": objective.as_dict(),
            "method": method,
            "params": {
                "fidelity_law": True,
                "target_tokens": config.target_tokens,
                "target_size": config.target_size,
                "size_exponent": config.size_exponent,
                "seed": config.seed,
                "laws": pred.laws,
                "proposer": _plain(prop.info),
            },
            "predicted": {
                "mean": prop.predicted,
                "std": prop.std,
                "interval": list(prop.interval) if prop.interval is not None else None,
            },
            "provenance": {
                "run_ids": [r for ids in pred.run_ids for r in ids],
                "searches": list(config.searches),
                "store": config.store,
            },
            **({"tokens": report["tokens"]} if "tokens" in report else {}),
            "baselines": report["baselines"],
            "notes": [f"extrapolated from rungs of {sizes} parameters" if extrapolated else
                      f"proposed for the last checkpoint of rung(s) of {sizes} params, nothing extrapolated",
                      *report["notes"]],
        }),
    ).save(config.out)


def _plain(d: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in d.items()}
