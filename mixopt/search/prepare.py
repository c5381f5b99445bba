"""Turning a :class:`SearchConfig` into what a search runs on, checking every input first.

Everything that can be wrong with the input is found here, before the first trial: an unknown
corpus or method, an evaluator that cannot be imported, an unwritable output, an infeasible
search space, an objective naming unknown domains. A budget too small to fit on is a warning.
"""

from __future__ import annotations

import datetime as _dt
import inspect
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from mixopt import paths
from mixopt.atomic import check_writable
from mixopt.errors import MixoptError, MixoptWarning, listed, warn
from mixopt.evaluator import PROXY, load_evaluator
from mixopt.objective import Objective
from mixopt.reuse import KEY, Reuse, key_entry, measured, resolve_reuse, reuse_name
from mixopt.search.config import SearchConfig
from mixopt.search.ray_env import user_modules
from mixopt.search.trial import PROXY_EVALUATOR, PickledEvaluator, TrialContext
from mixopt.space import SearchSpace, default_target_tokens
from mixopt.store import RunStore, default_path, fidelity_key, refuse_store_as_output
from mixopt.swarm import sample_swarm


@dataclass(frozen=True, kw_only=True)
class Prepared:
    """A checked search: space, objective, fidelities, evaluator, folders."""

    config: SearchConfig
    search_id: str
    space: SearchSpace
    objective: Objective
    corpus_name: str | None
    corpus_hash: str | None
    fidelity: dict[str, Any]
    fidelity_key: str
    validate_fidelity: dict[str, Any]
    validate_fidelity_key: str
    evaluator: str | Callable
    evaluator_name: str  # proxy, the user's module:function, or the callable's (callable_name)
    shipped_evaluator: str | PickledEvaluator  # what the trials get (a callable pickled: _shipped)
    store: RunStore
    search_dir: Path
    out: Path | None
    group: Reuse | None = None  # --reuse-mixture: the space is over its units, the runs train every domain
    domain_tokens: dict[str, float] | None = None  # as given (per domain, or the group's); the space's: units

    @property
    def domains(self) -> list[str]:
        """The space's domains: the units, with a reused mixture's group in place of its members."""
        return list(self.space.domains)

    @property
    def resume(self) -> str:
        """How this search is resumed, for messages: see :func:`resume_hint`."""
        return resume_hint(self.search_id, self.evaluator, self.config.store)

    @property
    def workroot(self) -> Path:
        """The runs' folders (each its evaluator's ``workdir``)."""
        return self.search_dir / "runs"

    def context(self, phase: str) -> TrialContext:
        """What the trials of ``phase`` (``swarm`` or ``validate``) need."""
        validate = phase == "validate"
        return TrialContext(
            store_path=str(self.store.path), search_id=self.search_id, home=str(paths.home()),
            workroot=str(self.workroot), domains=tuple(self.space.domains),
            objective={"metric": self.objective.metric, "weights": dict(self.objective.weights),
                       "domains": list(self.objective.domains)},
            objective_key=self.objective.key(), corpus=self.corpus_name, corpus_hash=self.corpus_hash,
            fidelity=self.validate_fidelity if validate else self.fidelity,
            fidelity_key=self.validate_fidelity_key if validate else self.fidelity_key,
            evaluator=self.shipped_evaluator, cpus=self.config.cpus_per_trial,
            sys_path=(str(Path.cwd()), *(str(Path(m).parent) for m in user_modules(self.evaluator))),
            timeout=self.config.trial_timeout, reuse=self.group,
        )


def reads_of(group: Reuse | Mapping[str, Any] | None) -> dict[str, Path | None]:
    """The files a search reads, which its ``--out`` may not be: the reused mixture (its path as
    the search recorded it, so a resume from another folder finds it too)."""
    source = group.get("source") if isinstance(group, Mapping) else group.source if group else None
    return {"--reuse-mixture": Path(source) if source else None}


def resume_hint(search_id: str, evaluator: str | Callable, store: str | None = None) -> str:
    """How a stopped search is resumed: the CLI command, or, for a Python function given to
    ``run_search`` (which the CLI cannot import), ``resume_search`` with that function; with the
    run store it is in, when that is not the workspace's."""
    if store and Path(store).resolve() == default_path().resolve():
        store = None  # a resumed search records its store's full path, the workspace's too
    if callable(evaluator):
        where = f", store={str(store)!r}" if store else ""
        return f"resume_search({search_id!r}{where}, evaluator=<the function>) from Python"
    return f"`mixopt search --resume {search_id}{f' --store {store}' if store else ''}`"


def search_dir(search_id: str) -> Path:
    return paths.home() / "searches" / search_id


# The store whose search a folder of searches/ is: the folder is keyed by name alone, so two stores'
# searches of one name had shared it (its run folders' outcomes, its stop time, its result).
STORE_MARK = ".mixopt-store"


def own_search_dir(folder: Path, store: RunStore, name: str, *, option: str = "--name") -> None:
    """Make ``folder`` the new search ``name``'s folder in ``store``, marked as that store's; called
    with the folder's driver lock held, so that two new searches of one name cannot both claim it.

    Files of a search that no store at hand holds (its store moved or deleted, a refused search)
    are moved aside to ``.orphaned-<name>-<time>`` beside it, with a warning: a trial's kept outcome
    left there would be read as this search's run of the same id, and nothing of them is deleted.

    Raises:
        MixoptError: the folder is the folder of a search another store holds, or was made before
            folders were marked, by a search no store at hand holds (whose store is unknown).
    """
    import shutil

    mine = str(Path(store.path).resolve())
    held = ([p for p in folder.iterdir() if p.name not in (STORE_MARK, "driver.lock")]
            if folder.is_dir() else [])
    owner = _marked_store(folder)  # None: a folder made before the mark
    # A folder marked by another store's search of this name is that search's even when it holds
    # nothing else yet (its driver killed before its first run): its resume would be refused.
    if (owner is not None or held) and (
            taken := _holds(owner or str(default_path().resolve()), name, other_than=mine)):
        raise MixoptError(f"{folder} is the folder of search {name!r} of store {taken}; search names "
                          f"are shared by every store in the workspace: pick another {option}")
    if held:
        if owner is None:
            # The search may be a --store search, which no store at hand names: setting its files
            # aside would leave its resume to read the new search's (an upgrade QA pass).
            raise MixoptError(
                f"{folder} holds the files of a search {name!r} made by an earlier mixopt, which did not "
                "mark a folder with its store, and no store at hand holds it: if it was a --store "
                "search, resume it with that --store; pick another "
                f"{option}, or move that folder away if its search is gone")
        aside = folder.parent / f".orphaned-{name}-{_dt.datetime.now():%Y%m%d-%H%M%S-%f}"
        aside.mkdir(parents=True)
        for p in held:
            shutil.move(str(p), aside / p.name)
        warn(f"{folder} held the files of an earlier search {name!r} that no store at hand holds (its store "
             f"{owner} moved or deleted?); moved them to {aside}", MixoptWarning)
    mark_search_dir(folder, store, replace=True)


def _marked_store(folder: Path) -> str | None:
    """The store path ``folder``'s mark names; None for a folder without one."""
    try:
        return (folder / STORE_MARK).read_text(encoding="utf-8").strip()
    except OSError:
        return None


def _holds(path: str, name: str, *, other_than: str) -> str | None:
    """``path`` when it is a store other than ``other_than`` that holds a search ``name``, else None."""
    if path == other_than:
        return None
    try:
        return path if RunStore(path, create=False).get_search(name) is not None else None
    except MixoptError:  # not there (moved, deleted) or not a store: it holds no search
        return None


def mark_search_dir(folder: Path, store: RunStore, *, replace: bool = False, name: str | None = None) -> None:
    """Write the mark of ``store`` into ``folder``. A resume (``name``: its search) marks a folder
    made before the mark, and one whose marked store is gone (moved: this store is it now).

    Raises:
        MixoptError: (a resume) another store's search ``name`` holds the folder now: a search of
            that name there took it while this one's folder was unmarked, and this one's runs'
            kept outcomes are gone (an upgrade QA pass: the resume read the other's as its own).
    """
    mark = folder / STORE_MARK
    mine = str(Path(store.path).resolve())
    if name is not None and (owner := _marked_store(folder)) is not None:
        if taken := _holds(owner, name, other_than=mine):
            raise MixoptError(
                f"{folder} is the folder of search {name!r} of store {taken}, not of this store's search "
                f"{name!r} (a search of that name there took it, or this store is a copy of that one), so "
                "this one cannot go on there; search again under a new --name with the same settings (and "
                "the same --store): its finished runs are reused")
        replace = owner != mine
    if replace or not mark.exists():
        folder.mkdir(parents=True, exist_ok=True)
        mark.write_text(mine + "\n", encoding="utf-8")


def _claim(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True)
    except FileExistsError:
        return False
    return True


def default_name(config: SearchConfig) -> str:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(config.corpus).name if config.corpus else "custom"
    return f"{base}-{config.method}-{stamp}"


def resolve_evaluator(config: SearchConfig, evaluator: Callable | None) -> str | Callable:
    """The evaluator the trials import: ``proxy``, the user's ``module:function``, or a callable."""
    if evaluator is not None:
        if not callable(evaluator):
            raise MixoptError(f"evaluator {evaluator!r} is not callable")
        return evaluator
    if config.domains and not config.evaluator:
        raise MixoptError(
            "--domains without a corpus needs your own --evaluator module:function "
            "(the built-in proxy trainer trains on a built corpus)"
        )
    if config.evaluator:
        load_evaluator(config.evaluator)  # fail now, with one line, if it cannot be imported
        return config.evaluator
    try:
        load_evaluator(PROXY_EVALUATOR)
    except MixoptError as exc:
        raise MixoptError(
            f"the built-in proxy evaluator is not available ({exc}); "
            "give your own --evaluator module:function"
        ) from exc
    return PROXY


# A trial runs in a Ray worker whose current folder is Ray's, not the driver's: what the driver found
# through its own folder (a corpus folder or rung file given relative to it, a rung in its
# ./proxies/) is handed on as an absolute path. Every run of such a search had failed in the worker
# ("proxy rung 'tiny' is unknown … Fix the evaluator"). What the workspace or the package holds keeps
# its name, which workers find in their own workspace (a cluster's nodes may mount it elsewhere).
def _portable_corpus(arg: str, opened: Path) -> str:
    """The workspace's corpus of that name by its name; any other corpus folder by its absolute path."""
    named = paths.home() / "corpora" / arg
    return arg if named.resolve() == opened.resolve() else str(opened.resolve())


def _portable_rung(rung: str) -> str:
    """A shipped rung by its name; a rung recipe found another way (the current folder's proxies/, a
    relative path) by its absolute path. An unknown rung is left as given, for load_rung to refuse."""
    from mixopt.proxy.rungs import DEBUG

    found = None if rung == DEBUG.name else paths.find_recipe("proxies", rung)
    if found is None:
        return rung
    found = found.resolve()
    if found.parent in paths.shipped_dirs("proxies"):
        return found.stem
    if rung == found.stem:  # looked up by name: the current folder's, perhaps hiding a shipped one
        paths.warn_if_overriding("proxies", found, "proxy rung")
    return str(found)


def _domains_and_tokens(config: SearchConfig, group: str | None = None
                        ) -> tuple[list[str], dict[str, float] | None, str | None, str | None, str | None]:
    """(domains, tokens per domain or None, corpus name for the trials, corpus name, corpus hash).
    ``group``: a reused mixture's group, whose count ``--tokens`` may give for its domains'."""
    if config.corpus is not None:
        from mixopt.corpus import Corpus

        corpus = Corpus.open(config.corpus)
        domains = corpus.domains
        tokens: dict[str, float] | None = {d: float(t) for d, t in corpus.train_tokens().items()}
        corpus_arg, name, chash = _portable_corpus(str(config.corpus), corpus.path), corpus.name, corpus.hash
    else:
        domains = list(config.domains or ())
        tokens = dict(config.tokens) if config.tokens else None
        corpus_arg = name = chash = None
    if tokens is not None and group in tokens:  # counted for the group: Reuse.tokens checks the rest
        return list(domains), tokens, corpus_arg, name, chash
    if tokens is not None:
        unknown = [d for d in tokens if d not in domains]
        if unknown:
            raise MixoptError(
                f"--tokens names unknown domain(s) {', '.join(unknown)}; the domains are {', '.join(domains)}"
            )
        missing = [d for d in domains if d not in tokens]
        if missing:
            raise MixoptError(f"--tokens lacks domain(s) {', '.join(missing)}; give a count for every domain")
    return list(domains), tokens, corpus_arg, name, chash


def _space(config: SearchConfig, domains: Sequence[str], tokens: dict[str, float] | None,
           reuse: Reuse | None = None) -> SearchSpace:
    """The space of ``config`` over ``domains``; with ``reuse``, over its units (the group's tokens
    those it can use at its shares, the budget still that of every domain)."""
    target = default_target_tokens(config.target_tokens, tokens)
    if config.max_epochs is not None and tokens is None:
        raise MixoptError("--max-epochs needs token counts per domain (a corpus, or --tokens a=1e9,...)")
    if reuse is not None:
        reuse.check_bounds(config.max_weight, "--max-weight")
        reuse.check_bounds(config.fix, "--fix")
        domains, tokens = reuse.units(domains), reuse.tokens(tokens) if tokens is not None else None
    return SearchSpace(
        domains=tuple(domains), tokens=tokens, min_weight=config.min_weight, ceilings=dict(config.max_weight),
        fixed=dict(config.fix), max_epochs=config.max_epochs, target_tokens=target,
    )


class Grouped(NamedTuple):
    """The domains of a config and its space, over the units of its reused mixture if any."""

    domains: list[str]  # every domain, in their order
    tokens: dict[str, float] | None  # as given (per domain, or with the group's count), or None
    corpus_arg: str | None
    corpus_name: str | None
    corpus_hash: str | None
    group: Reuse | None
    space: SearchSpace


def grouped_space(config: SearchConfig, *, group: Reuse | None = None,
                  resuming: str | None = None) -> Grouped:
    """The space of ``config``; with ``config.reuse_mixture`` over its units (the group read from the
    file), or over those of ``group``, as search ``resuming`` recorded it.

    Raises:
        MixoptError: as :func:`mixopt.reuse.load_reuse` and the space's own checks; on a resume,
            domains that are not those the recorded group was made among (a rebuilt corpus).
    """
    spec = config.reuse_mixture
    named = group.name if group is not None else reuse_name(spec) if spec else None
    domains, tokens, corpus_arg, name, chash = _domains_and_tokens(config, group=named)
    if group is None:
        group = resolve_reuse(config.reuse_mixture, domains, config.recompute)
    elif group.order and set(group.order) != set(domains):  # else its tokens' error, of --tokens unasked
        raise MixoptError(f"search {resuming!r} cannot go on: it reused {group.source} among the domains "
                          f"{listed(list(group.order), 8)}, and now they are {listed(domains, 8)} (the "
                          "corpus was rebuilt?); start a new search")
    return Grouped(domains, tokens, corpus_arg, name, chash, group, _space(config, domains, tokens, group))


def say_dominant(config: SearchConfig, space: SearchSpace, group: Reuse) -> None:
    """:func:`_dominant_group_note`, offering ``--tokens`` where the counts are the user's and the group
    has none yet."""
    _dominant_group_note(space, group.name, config.temperature,
                         counted=config.corpus is None and group.name not in (config.tokens or {}))


# A group holding more of the swarm's prior than this leaves the new domains little to vary.
DOMINANT_PRIOR = 0.9


def _dominant_group_note(space: SearchSpace, name: str, temperature: float, *, counted: bool) -> None:
    """Warn when a reused group's tokens dominate the swarm's prior (a group of a trillion-token
    corpus beside a new domain of billions: 99% of the prior, and half the rows above 0.999).
    ``counted``: the tokens are the user's ``--tokens`` (a corpus's own counts cannot be given)."""
    from mixopt.swarm import prior

    share = float(prior(space, temperature)[space.domains.index(name)])
    if share > DOMINANT_PRIOR:
        warn(f"{name} holds {share:.1%} of the swarm's prior (its tokens beside the other domains', at "
             f"--temperature {temperature:g}), so most rows keep it near that and vary the others little; "
             "a higher --temperature (e.g. 3) flattens the prior"
             + (f", or --tokens {name}=COUNT sets its part (as Olmix's manual prior does; it is also the "
                "group's repetition cap)" if counted else ""), MixoptWarning)


def capped_away_note(space: SearchSpace, rows: np.ndarray, name: str, temperature: float, *,
                     search: bool = False) -> None:
    """Warn when the repetition caps leave the domains beside a reused group far below their prior
    in the drawn rows (a QA pass: Olmix's stack-edu at 35% of the prior, a median row at 0.8%: the
    caps of its small languages rejected the draws that weighted it, and the fit extrapolated).
    ``search``: said by a search, which adds how to draw such a swarm for one's own jobs."""
    from mixopt.swarm import prior

    if len(rows) < 4:
        return
    i = space.domains.index(name)
    expected = 1.0 - float(prior(space, temperature)[i])
    drawn = 1.0 - rows[:, i]
    if expected >= 0.1 and float(np.median(drawn)) < expected / 4:
        warn(f"the rows give the domains beside {name} a median share of {np.median(drawn):.1%} in all (at "
             f"most {drawn.max():.0%}), where the prior gives them {expected:.0%}: the repetition caps "
             "(--max-epochs) reject most draws that weight them; a swarm drawn without --max-epochs varies "
             "them more, and fit --max-epochs still caps the proposal (Olmix caps only the fit"
             + ("; `mixopt swarm` draws such a swarm for your jobs, then `mixopt fit`)" if search else ")"),
             MixoptWarning)


class SwarmPlan(NamedTuple):
    """What :func:`swarm_plan` draws: rows over ``space.domains`` (the units, with ``reuse``)."""

    space: SearchSpace
    rows: np.ndarray
    start: int
    reuse: Reuse | None = None
    tokens: dict[str, float] | None = None  # as given (per domain, or with the group's count), or None


def swarm_plan(config: SearchConfig, *, extend: str | Path | None = None) -> SwarmPlan:
    """The ``config.budget`` mixtures a search of ``config`` trains first where the store holds no
    run to reuse (the same rows, for the same space, seed and temperature), for a user who trains
    them elsewhere (``mixopt swarm``). ``extend``: a ratios table of mixtures already planned or run,
    which the new rows keep away from (as a search's keep away from reused runs) and number on
    after. With ``config.reuse_mixture``, its domains (less ``config.recompute``) are drawn as one,
    at that mixture's shares (:mod:`mixopt.reuse`)."""
    from mixopt.tables import next_index, read_ratios

    domains, tokens, *_, group, space = grouped_space(config)
    if group is not None:
        say_dominant(config, space, group)
    before, start = None, 0
    if extend is not None:
        ids, found, W, _ = read_ratios(extend, what="--extend")
        if set(found) != set(domains):
            raise MixoptError(f"--extend {extend} has the domains {', '.join(found)}, not this swarm's "
                              f"{', '.join(domains)}; give the table of a swarm over the same domains")
        W = W[:, [found.index(d) for d in domains]]
        if group is not None:
            W = group.collapse(domains, W, ids, f"--extend {extend}", fix="extend a table drawn with the "
                               "same --reuse-mixture and --recompute, or draw without them")[1]
        before, start = W, next_index(ids)
    rows = np.asarray(sample_swarm(space, config.budget, seed=config.seed, temperature=config.temperature,
                                   existing=before)).reshape(-1, space.n)
    if group is not None and config.max_epochs is not None:
        capped_away_note(space, rows, group.name, config.temperature)
    return SwarmPlan(space, rows, start, group, tokens)


def prepare(
    config: SearchConfig, evaluator: Callable | None = None, *, search_id: str | None = None,
    callable_as: str | None = None, group: Reuse | None = None,
) -> Prepared:
    """Check every input of a search and resolve it; nothing is run or written here.

    ``callable_as``: the name a callable ``evaluator`` was recorded under when the search began (a
    resume: the function given again is taken to be that one, wherever it is defined now).
    ``group``: the reused mixture's group as the search recorded it (a resume goes on with the
    shares it began with); else ``config.reuse_mixture`` is read."""
    from mixopt.methods import get_method

    spec = get_method(config.method)
    spec.kl_option(config.kl)  # unknown method (listing the names) or a bad --kl
    if config.gpus_per_trial and evaluator is None and not config.evaluator:
        raise MixoptError(f"--gpus-per-trial {config.gpus_per_trial:g}: the built-in proxy trains on CPUs "
                          "(--cpus-per-trial); GPUs per trial are for your own --evaluator's training jobs")
    if spec.training_free and not config.corpus:
        raise MixoptError(f"--method {spec.name} computes the mixture from a corpus's text: give --corpus "
                          "(the runs of an --evaluator cannot stand in for it)")
    if spec.training_free and (config.reuse_mixture or config.recompute):
        raise MixoptError(f"--method {spec.name} weighs each domain by its own text and reuses no mixture: "
                          "drop --reuse-mixture and --recompute, or search with a method that fits runs")
    check_fidelity_names(config.fidelity, stored=search_id is not None)
    domains, tokens, corpus_arg, corpus_name, corpus_hash, group, space = grouped_space(
        config, group=group, resuming=search_id)
    if search_id is None:  # a new search (one begun before this check resumes as it began)
        from mixopt.tables import refuse_id_columns

        refuse_id_columns(space.domains)  # runs export and swarm write them as a table's columns
    objective = Objective.parse(config.target, config.metric, stored=search_id is not None)
    if group is not None and group.name in objective.weights:
        raise MixoptError(f"--target names {group.name}, the reused group, whose runs measure each of "
                          f"its domains: name those ({listed(list(group.ratios), 6)}) instead")
    objective = measured(objective, group, space.domains)
    objective.check_domains(space.domains)
    Objective.say_if_mean_is_a_domain(config.target, objective.domains or space.domains)
    ev = resolve_evaluator(config, evaluator)
    ev_name = callable_as if callable(ev) and callable_as else evaluator_name(config, ev)
    shipped = _shipped(ev, ev_name)
    # a resume takes the shares from its record, not from the file: the file is still the user's
    reader = f"search {search_id!r} started from" if search_id else "this command reads"
    if config.out is not None:  # the store's own words first: check_writable refuses any SQLite file
        refuse_store_as_output(config.out, config.store)
    out = (check_writable(config.out, inputs=reads_of(group), reader=reader)
           if config.out is not None else None)
    fid = dict(config.fidelity)
    if ev == PROXY:  # checked here: a bad value failed only inside the first trial, Ray started
        from mixopt.proxy.evaluate import check_fidelity

        check_fidelity(fid, unknown_ok=search_id is not None)  # a resume goes on as it started
        if search_id is None and _default_tokens(fid, config):
            # tokens=<the rung's own budget> trains what the rung trains: the same fidelity, so the same
            # reuse key, and recorded without it (a resume recomputes the key from the record)
            fid.pop("tokens")
            config = replace(config, fidelity=fid)
            fid = dict(fid)
    if ev == PROXY and search_id is None:  # recorded so: a resume finds them from any folder
        vr = config.validate_rung
        config = replace(config, rung=_portable_rung(config.rung),
                         validate_rung=None if vr is None else _portable_rung(vr))
    if corpus_arg is not None and search_id is None:
        config = replace(config, corpus=corpus_arg)
    fid["rung"] = config.rung
    vfid = dict(fid)
    vfid["rung"] = config.validate_rung or config.rung
    if corpus_arg is not None:
        fid["corpus"] = vfid["corpus"] = corpus_arg
    proxy = ev == PROXY
    # The keys load the rungs: an unknown or broken one is refused before the store or the search's
    # folder is made.
    # A run's weights are over the units, which mean one mixture only with the group's shares: its key
    # holds them, so that only a search with the same group reuses it (the evaluator is not sent them).
    kept = key_entry(group) if group is not None else {}
    fkey = reuse_key({**fid, **kept}, ev_name, proxy=proxy)
    vkey = reuse_key({**vfid, **kept}, ev_name, proxy=proxy)
    if proxy and space.tokens is not None:
        # the rungs that will train: the swarm's (none for a training-free method), validation's
        rungs = {**({"--rung": config.rung} if not spec.training_free else {}),
                 **({"--validate-rung": config.validate_rung or config.rung} if config.validate > 0 else {})}
        _check_windows(space, rungs, config.corpus, resuming=search_id is not None, group=group,
                       tokens=tokens)
    store = RunStore(config.store) if config.store is not None else RunStore()
    sid = search_id or config.name
    if sid is None:  # a default name (to the second) taken by a search started in the same second
        base = sid = default_name(config)
        n = 1
        # Claimed by making its folder, which only one process can do: two searches started together
        # get …-HHMMSS and …-HHMMSS-2 (run_search removes the folder if the search is refused).
        grouped = store.unrecorded_search_ids()  # imported runs' names are taken too
        while store.get_search(sid) is not None or sid in grouped or not _claim(search_dir(sid)):
            n += 1
            sid = f"{base}-{n}"
    if group is not None and search_id is None:  # a new search's, said once the input has passed
        say_dominant(config, space, group)
    return Prepared(
        config=config, search_id=sid, space=space, objective=objective, corpus_name=corpus_name,
        corpus_hash=corpus_hash, fidelity=fid, fidelity_key=fkey,
        validate_fidelity=vfid, validate_fidelity_key=vkey, evaluator=ev, evaluator_name=ev_name,
        store=store, search_dir=search_dir(sid), out=out, shipped_evaluator=shipped, group=group,
        domain_tokens=tokens,
    )


def _default_tokens(fid: Mapping[str, Any], config: SearchConfig) -> bool:
    """Whether ``fid`` gives ``tokens`` equal to the budget of every rung the search trains (the
    validation rung only when it validates)."""
    from mixopt.proxy.rungs import load_rung

    if fid.get("tokens") is None:
        return False
    rungs = {config.rung, *([config.validate_rung or config.rung] if config.validate > 0 else [])}
    return all(load_rung(r).tokens == int(float(fid["tokens"])) for r in rungs)


def _check_windows(space: SearchSpace, rungs: Mapping[str, str], corpus: object, *, resuming: bool,
                   group: Reuse | None = None, tokens: Mapping[str, float] | None = None) -> None:
    """Refuse a domain the proxy cannot draw one window from, when the search may weight it.

    ``rungs``: option → rung of each phase that trains. The sampler refuses such a domain too, but
    only inside a trial, after Ray has started and runs have been recorded, and a resume of that
    search would meet it again: its constraints cannot change. ``group``: a reused mixture's, whose
    members are trained at their shares (``tokens``: every domain's; the space's are the units').
    """
    from mixopt.proxy.rungs import load_rung
    from mixopt.proxy.sampler import short_domains

    def weighted(d: str) -> bool:  # the search may give d weight
        if group is not None and d in group.ratios:
            if group.ratios[d] == 0:
                return False
            d = group.name
        return space.fixed.get(d, None) != 0 and space.ceilings.get(d, 1.0) > 0

    counts = tokens if group is not None and tokens is not None else space.tokens or {}
    for option, rung in rungs.items():
        context = load_rung(rung).context
        short = {d: n for d, n in short_domains(counts, context).items() if weighted(d)}
        if not short:
            continue
        names = ", ".join(f"{d!r} ({n} tokens)" for d, n in short.items())
        members = [d for d in short if group is not None and d in group.ratios]
        fix = ((f"--recompute {','.join(members)} " if members else "")
               + " ".join(f"--fix {d}=0" for d in short))
        how = (f"this search cannot go on (a resume keeps its constraints): start a new one with {fix}"
               if resuming else f"search without them ({fix})")
        other = " or a --validate-rung with a shorter context," if option == "--validate-rung" else ""
        raise MixoptError(
            f"corpus {corpus}: domain(s) {names} have fewer training tokens than one window of {option} "
            f"{rung} (context + 1 = {context + 1}), so it cannot train on them; {how},{other} or add text to "
            "them and rebuild the corpus"
        )


# The fidelity fields mixopt sets itself, and why a user's own value under the name would be lost:
# read by no reuse key (two searches with corpus=a and corpus=b had shared their runs) or overwritten.
# (A search's `rung` is refused by SearchConfig: it is --rung's; a table's import gives its rung so.)
OWN_FIDELITY = {
    "corpus": "it is --corpus's: give --corpus NAME; runs are keyed by the corpus's hash, not by this field",
    "evaluator": "it is the evaluator's name in the runs' reuse key",
    "rung_hash": "it is a proxy rung's hash in the runs' reuse key",
}


def check_fidelity_names(fidelity: Mapping[str, Any], *, stored: bool = False) -> None:
    """Refuse a ``--fidelity`` field named as one mixopt sets itself: the reused group's
    :data:`~mixopt.reuse.KEY`, and unless ``stored`` (a search that ran with it goes on) those of
    :data:`OWN_FIDELITY`."""
    if KEY in fidelity:  # the runs' key holds the reused group's shares under this name
        raise MixoptError(f"--fidelity {KEY}=...: mixopt keeps that name for --reuse-mixture's group; "
                          "name the field otherwise")
    if taken := [k for k in fidelity if k in OWN_FIDELITY and not stored]:
        k = taken[0]
        raise MixoptError(f"--fidelity {k}=...: mixopt sets {k} itself ({OWN_FIDELITY[k]}); name your field "
                          "otherwise")


def reuse_key(fid: Mapping[str, Any], ev_name: str, *, proxy: bool) -> str:
    """The store key under which runs of this fidelity are reused; a proxy rung adds its hash."""
    if proxy:
        from mixopt.proxy.rungs import rung_hash  # torch loads with it: a user's evaluator needs none

        return fidelity_key({**fid, "rung_hash": rung_hash(str(fid["rung"]))}, ev_name)
    return fidelity_key(fid, ev_name)


def _shipped(ev: str | Callable, name: str) -> str | PickledEvaluator:
    """A callable pickled now, before any folder or Ray: one that cannot be had failed in the trials."""
    if not callable(ev):
        return ev
    from ray import cloudpickle

    try:
        return PickledEvaluator(name=name, data=cloudpickle.dumps(ev))
    except Exception as exc:  # noqa: BLE001 - whatever pickling the user's object raises
        raise MixoptError(f"the evaluator {name} cannot be pickled for the Ray workers ({exc}); define it at "
                          "module level, without open files, locks or connections in what it holds") from exc


def evaluator_name(config: SearchConfig, ev: str | Callable) -> str:
    """``proxy``, the user's ``module:function``, or the name of the callable given in its place."""
    return callable_name(ev) if callable(ev) else config.evaluator_name


def callable_name(fn: Callable) -> str:
    """The name a callable evaluator's runs are kept and reused under: ``module:function``, as
    ``--evaluator`` names it, so library and CLI runs of one importable function are shared.

    A function of ``__main__`` is named by where it is defined: a script by its file (two folders'
    ``nb.py:evaluate`` had shared runs under the script's name alone), a notebook by its own path
    (Jupyter's ``JPY_SESSION_NAME``; every notebook's had been ``ipykernel_launcher``'s), else by
    the cell's file, which changes with the kernel (a notebook then reuses nothing across kernels
    rather than another's runs). A ``functools.partial`` is its function's name and a digest of
    its arguments (every partial had been ``functools:partial``); likewise a closure that its module
    does not hold under its name (a factory's) and the values it captured, and a callable object (or
    a bound method) and its attributes: two evaluators made by one factory, or two instances of one
    class, had shared runs under one name. The digest is :func:`mixopt.fingerprint.fingerprint`'s;
    what has none (an object known only by its address) gets a name of this process alone, said in
    a warning: its runs are kept, not reused by later searches."""
    import functools

    if isinstance(fn, functools.partial):
        return callable_name(fn.func) + _digest("partial", (fn.args, fn.keywords))
    if inspect.ismethod(fn) and not inspect.isclass(fn.__self__):
        return _plain_name(fn.__func__) + _digest("state", fn.__self__)
    if inspect.isfunction(fn):
        if not fn.__closure__ or _importable(fn):  # a decorated module function is what --evaluator loads
            return _plain_name(fn)
        return _plain_name(fn) + _digest("closure", [_cell(c) for c in fn.__closure__])
    if not inspect.isroutine(fn) and not inspect.isclass(fn):
        return _plain_name(fn) + _digest("state", fn)
    return _plain_name(fn)


def _importable(fn: Callable) -> bool:
    """Whether ``fn`` is what its module holds under its qualified name."""
    obj: Any = sys.modules.get(getattr(fn, "__module__", None) or "")
    for part in (getattr(fn, "__qualname__", "") or "<none>").split("."):
        obj = getattr(obj, part, None)
    return obj is fn


def _digest(what: str, state: object) -> str:
    from mixopt.fingerprint import fingerprint

    digest = fingerprint(state)
    if digest is None:  # no form that another process would give alike: reuse nothing rather than wrong
        import uuid

        from mixopt.errors import MixoptWarning

        digest = f"once-{uuid.uuid4().hex[:12]}"
        warn("the evaluator holds a value mixopt cannot tell apart from another's (an object known "
             "only by its address); its runs are kept under a name of this process alone and not "
             "reused by later searches: hold plain values, arrays or named functions instead",
             MixoptWarning)
    return f"#{what}-{digest}"


def _cell(cell: Any) -> object:
    try:
        return cell.cell_contents
    except ValueError:  # a cell not filled yet (a function that refers to itself before it is bound)
        return None


def _plain_name(fn: Callable) -> str:
    """``module:qualname``, with ``__main__`` replaced by where the function is defined (see
    :func:`callable_name`)."""
    mod = getattr(fn, "__module__", None) or "?"
    name = getattr(fn, "__qualname__", None) or type(fn).__name__
    if mod != "__main__":
        return f"{mod}:{name}"
    notebook = os.environ.get("JPY_SESSION_NAME")
    if notebook and "ipykernel" in Path(sys.argv[0]).name:
        return f"{notebook}:{name}"
    try:  # a function's file; a callable object's, its __call__'s (a class of __main__ has no file)
        where = inspect.getfile(fn if inspect.isroutine(fn) else type(fn).__call__)
    except (TypeError, OSError):
        where = sys.argv[0]
    where = str(Path(where).resolve()) if where and not where.startswith("<") else where or mod
    return f"{where}:{name}"
