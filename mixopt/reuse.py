"""Mixture reuse: a previous mixture's domains searched as one, their shares within it kept.

Olmix's answer to a corpus that changes between training runs (domains added, revised, split or
removed): keep the ratios the last search found among the domains the change leaves alone, and
search only the share of that group next to the new (or ``--recompute``-d) domains. A swarm over a
few units needs far fewer runs than one over every domain again.

A :class:`Reuse` maps between the two views of a mixture: over the domains a training job reads,
and over the units a swarm varies and a fitter sees (the group, named ``reused`` unless given a
name, in place of its members). A domain of the previous mixture that is gone is dropped and the
others' shares renormalised (Olmix: a removal needs no new swarm).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mixopt.errors import MixoptError, MixoptWarning, listed, warn
from mixopt.objective import Objective
from mixopt.space import SearchSpace

DEFAULT_NAME = "reused"
# A row's members may differ from the group's shares by a table's rounding: half a unit in the 4th
# decimal per cell (a spreadsheet's display; a QA pass had 9 of 64 rows refused at 1e-6), also in the
# group's sum of its k members, or 0.1% of the member's weight, whichever is larger.
ROW_ATOL, ROW_RTOL = 5e-5, 1e-3


@dataclass(frozen=True)
class Reuse:
    """The group: ``name``, its members' shares within it (summing to 1), the file they came from.

    Attributes:
        name: the unit's name among the units (a column of a ratios table in units).
        ratios: member → share of the group's weight, in the order of the domains.
        source: the mixture file the shares were read from.
        dropped: domains of that mixture no longer among the domains (their share renormalised away).
        recompute: domains of that mixture searched on their own again.
    """

    name: str
    ratios: Mapping[str, float]
    source: str
    dropped: tuple[str, ...] = ()
    recompute: tuple[str, ...] = ()
    order: tuple[str, ...] = ()  # every domain, in the order given (a table's columns, --domains)

    def __post_init__(self) -> None:  # built by hand in library use: shares that expand to a mixture
        bad = [f"{m}={r!r}" for m, r in self.ratios.items() if not (r >= 0 and math.isfinite(r))]
        total = sum(self.ratios.values()) if not bad else math.nan
        if not self.ratios:
            raise MixoptError(f"the group {self.name!r} has no domains; give it one or more, with shares "
                              "summing to 1")
        if bad or abs(total - 1) > 1e-9:
            raise MixoptError(f"the group's shares must be ≥ 0 and sum to 1; got "
                              f"{', '.join(bad) or listed([f'{m}={r:g}' for m, r in self.ratios.items()], 6)}"
                              f"{'' if bad else f' (sum {total:.6g})'}")

    # ----- the two views ----------------------------------------------------------------------
    def units(self, domains: Sequence[str]) -> tuple[str, ...]:
        """``domains`` with the members replaced by the group, at the first member's place (a
        list already in units is returned as it is)."""
        out: list[str] = []
        for d in domains:
            if d in self.ratios or d == self.name:
                if self.name not in out:
                    out.append(self.name)
            else:
                out.append(d)
        return tuple(out)

    def domains(self, units: Sequence[str]) -> tuple[str, ...]:
        """``units`` with the group replaced by its members, in the domains' own order where they
        are those the group was made among (a QA pass: --recompute had moved domains about)."""
        out: list[str] = []
        for u in units:
            out.extend(self.ratios if u == self.name else [u])
        if set(out) == set(self.order):
            return tuple(self.order)
        return tuple(out)

    def expand(self, units: Sequence[str], W: np.ndarray) -> np.ndarray:
        """Rows over ``units`` as rows over :meth:`domains` (``units``): the group's weight split
        by its shares."""
        W = np.atleast_2d(np.asarray(W, dtype=float))
        cols: dict[str, np.ndarray] = {}
        for j, u in enumerate(units):
            if u == self.name:
                cols.update({m: W[:, j] * r for m, r in self.ratios.items()})
            else:
                cols[u] = W[:, j]
        return np.column_stack([cols[d] for d in self.domains(units)])

    def collapse(self, domains: Sequence[str], W: np.ndarray, ids: Sequence[str], where: str,
                 fix: str = "fit them without it, or leave those rows out"
                 ) -> tuple[tuple[str, ...], np.ndarray]:
        """(units, rows over them) for rows ``W`` over ``domains``: the members summed into the
        group. A table already in units passes as it is. ``fix``: the way out an error offers.

        Raises:
            MixoptError: a member missing from ``domains``, or rows whose members are not in the
                group's shares (a run not drawn with this reuse), naming them.
        """
        units = self.units(domains)
        if self.name in domains:
            both = [m for m in self.ratios if m in domains]
            if both:  # the columns would be read by the wrong names (a review: a wrong prediction, unsaid)
                raise MixoptError(f"{where} has both {self.name} and its domain(s) {listed(both, 5)}; give "
                                  f"one column for the group or one per domain, not both")
            return units, np.asarray(W, dtype=float)
        lacking = [m for m in self.ratios if m not in domains]
        if lacking:
            raise MixoptError(f"{where} lacks {listed(lacking, 5)} of {self.name} (--reuse-mixture "
                              f"{self.source}); give a column for each of its domains, or one for "
                              f"{self.name}")
        W = np.asarray(W, dtype=float)
        idx = [list(domains).index(m) for m in self.ratios]
        shares = np.array(list(self.ratios.values()))
        group = W[:, idx].sum(axis=1)
        want = group[:, None] * shares[None, :]
        # a rounded cell errs by up to ROW_ATOL, and the group's sum by k of them, split by the share
        tol = np.maximum(ROW_ATOL * (1 + shares * len(idx))[None, :], ROW_RTOL * want)
        excess = np.abs(W[:, idx] - want) / tol
        bad = np.flatnonzero((excess > 1).any(axis=1))
        if bad.size:
            i = int(bad[0])
            worst = int(np.argmax(excess[i]))  # the member furthest past its tolerance
            m = list(self.ratios)[worst]
            raise MixoptError(
                f"{where}: {len(bad)} row(s) ({listed([str(ids[b]) for b in bad], 5)}) do not keep the "
                f"shares {self.source} gives within {self.name} (row {ids[i]}: {m} is "
                f"{W[i, idx[worst]]:.6g}, {want[i, worst]:.6g} at its share): they were drawn without "
                f"this --reuse-mixture, with another --recompute, or rounded to fewer than 4 decimals; {fix}")
        cols = [group if u == self.name else W[:, list(domains).index(u)] for u in units]
        return units, np.column_stack(cols)

    def expand_weights(self, weights: Mapping[str, float]) -> dict[str, float]:
        """A mixture over the units as one over the domains (what a run trains on)."""
        units = list(weights)
        return dict(zip(self.domains(units), map(float, self.expand(units, [list(weights.values())])[0]),
                        strict=True))

    def tokens(self, tokens: Mapping[str, float]) -> dict[str, float]:
        """Token counts over the units: the group holds the tokens it can use at its shares before
        any member runs out, min over members of tokens / share (so a repetition cap on the group is
        the tightest of its members')."""
        unknown = [d for d in tokens if d not in self.order and d != self.name]
        if unknown and self.order:  # named among the domains, not the units (a QA pass)
            raise MixoptError(f"--tokens names unknown domain(s) {listed(unknown, 5)}; the domains are "
                              f"{listed(list(self.order), 8)} (or {self.name} for the group)")
        if self.name in tokens:
            both = [m for m in self.ratios if m in tokens]
            if both:
                raise MixoptError(f"--tokens gives both {self.name} and its domain(s) {listed(both, 5)}; "
                                  "give one count for the group or one per domain, not both")
            return dict(tokens)
        missing = [m for m in self.ratios if m not in tokens]
        if missing:
            raise MixoptError(f"--tokens lacks {listed(missing, 5)} of {self.name} (--reuse-mixture); give a "
                              f"count for each of its domains, or one for {self.name}")
        empty = [m for m, r in self.ratios.items() if r > 0 and not float(tokens[m]) > 0]
        if empty:  # the group would hold 0 tokens, and the error name the group (a review)
            raise MixoptError(f"--tokens gives {listed(empty, 5)} of {self.name} no tokens; a domain of the "
                              f"group must have data (or --recompute it and keep it out with --fix d=0)")
        usable = min(float(tokens[m]) / r for m, r in self.ratios.items() if r > 0)
        out: dict[str, float] = {}
        for d, t in tokens.items():
            if d in self.ratios:
                out.setdefault(self.name, usable)
            else:
                out[d] = float(t)
        return out

    def check_bounds(self, bounds: Mapping[str, Any], option: str) -> None:
        """Refuse a bound on one member: the group moves as one.

        Raises:
            MixoptError: naming the member and the two ways out.
        """
        inside = [d for d in bounds if d in self.ratios]
        if inside:
            d = inside[0]
            raise MixoptError(f"{option} {d}=...: {d} moves with the other domains of {self.name} "
                              f"(--reuse-mixture {self.source}); bound the group ({option} {self.name}=...), "
                              f"or search {d} on its own with --recompute {d}")

    def plan_space(self, space: SearchSpace, tokens: Mapping[str, float] | None) -> SearchSpace:
        """A space over the domains of ``space``'s units with their own ``tokens`` and its budget,
        for a mixture's token plan per domain (its bounds are the units' space's). Tokens given for
        the group, not its members, leave the plan without passes per domain."""
        domains = self.domains(space.domains)
        known = tokens is not None and all(d in tokens for d in domains)
        return SearchSpace(domains=domains, target_tokens=space.target_tokens,
                           tokens={d: float(tokens[d]) for d in domains} if known else None)

    def note(self, w: Mapping[str, float], *, began: str | None = None) -> str:
        """What a proposal's notes say of the group, ``w`` its weights over the domains. ``began``: what
        read the file (``search X``), whose shares they are whatever became of the file since."""
        share = sum(w[m] for m in self.ratios)
        when = f"gave them when {began} began" if began else "gives them"
        return (f"{listed(list(self.ratios), 6)} kept at the shares {self.source} {when}, as one group "
                f"{self.name} ({share:.4f} of the mixture): only the group's total and the other domains "
                f"were searched" + (f"; {listed(list(self.dropped), 5)} of that file, no longer "
                                            "among the domains, left out" if self.dropped else ""))

    def baselines_note(self, units: int, *, natural: bool = False) -> str:
        """Which baselines a proposal over ``units`` units is set against (a QA pass read 1/7)."""
        return (f"the uniform baseline is uniform over the {units} units ({self.name} counts once), which "
                "keeps the group's shares; uniform over every domain would not"
                + (f"; the natural and temperature baselines weigh {self.name} by the tokens it can use at "
                   "those shares" if natural else ""))

    def as_dict(self) -> dict[str, Any]:
        """What a mixture JSON records of the reuse."""
        return {"name": self.name, "source": self.source, "ratios": dict(self.ratios),
                "dropped": list(self.dropped), "recompute": list(self.recompute)}

    def state(self) -> dict[str, Any]:
        """What a search keeps of the group, from which :meth:`from_state` makes it again: a resume
        goes on with the shares it began with, whatever became of the file since."""
        return {**self.as_dict(), "order": list(self.order)}

    @classmethod
    def from_state(cls, d: Mapping[str, Any]) -> Reuse:
        return cls(name=d["name"], ratios=dict(d["ratios"]), source=d["source"], dropped=tuple(d["dropped"]),
                   recompute=tuple(d["recompute"]), order=tuple(d.get("order") or ()))

    def option(self) -> list[str]:
        """The command-line options that give this reuse again (for a hint line)."""
        out = ["--reuse-mixture", self.source if self.name == DEFAULT_NAME else f"{self.name}={self.source}"]
        if self.recompute:
            out += ["--recompute", ",".join(self.recompute)]
        return out


# What a search's runs keep of the group in their fidelity key: their weights are over the units, which
# mean one mixture only with these shares (rounded, so that a file saved again keeps its runs' key).
KEY = "reuse_mixture"


def key_entry(group: Reuse) -> dict[str, Any]:
    """The fidelity key's entry for the runs of a search that reuses ``group``."""
    return {KEY: {"name": group.name, "ratios": {m: float(f"{r:.12g}") for m, r in group.ratios.items()}}}


def trained_weights(weights: Mapping[str, float], fidelity_key: str | None) -> dict[str, float]:
    """The mixture a run trained: its ``weights``, or, for a run of a search that reused a mixture
    (over its units), those weights with the group split by the shares its key records."""
    import json

    try:
        entry = json.loads(fidelity_key or "{}").get(KEY)
    except (ValueError, AttributeError):
        entry = None
    if not entry or entry.get("name") not in weights:
        return dict(weights)
    group = Reuse(name=entry["name"], ratios=_normalised(entry["ratios"]), source="")
    return group.expand_weights(weights)


def measured(objective: Objective, group: Reuse | None, units: Sequence[str]) -> Objective:
    """``objective`` as a search over ``units`` reads it: with ``group``, from every domain's metric
    (its runs train and measure each member), not the units'."""
    from dataclasses import replace

    return objective if group is None else replace(objective, domains=group.domains(units))


def _normalised(ratios: Mapping[str, float]) -> dict[str, float]:
    total = sum(ratios.values())
    return {m: r / total for m, r in ratios.items()}


def recompute_names(recompute: Sequence[str]) -> tuple[str, ...]:
    """``--recompute``'s names, each once, in order.

    Raises:
        MixoptError: a string where a sequence is wanted ("dclm:health" had been read letter by
            letter in library use).
    """
    if isinstance(recompute, str):
        raise MixoptError(f"recompute is the string {recompute!r}; give a sequence of names, e.g. "
                          f"({recompute!r},)")
    return tuple(dict.fromkeys(recompute))


def expand_recompute(recompute: Sequence[str], names: Sequence[str], present: Sequence[str] | None = None,
                     ) -> tuple[str, ...]:
    """``--recompute``'s names over the reused mixture's domains ``names``: a domain; a source, each
    of its parts (``dclm:science`` of ``dclm``, as Olmix names a source's topics; its partial reuse
    recomputes one source inside the reused rest); or a pattern with ``*``, ``?`` or ``[``
    (``dclm:s*``). A source's or pattern's domains that are gone (not in ``present``) are left out:
    they are dropped from the group anyway. A name that matches nothing stays, for the caller to
    refuse."""
    import fnmatch

    out: list[str] = []
    for name in recompute:
        if name in names:
            out.append(name)
            continue
        hits = ([d for d in names if fnmatch.fnmatchcase(d, name)] if any(c in name for c in "*?[")
                else _parts(name, names))
        # all of them gone: named, for the caller to say they are not among the domains
        out += [d for d in hits if present is None or d in present] or hits or [name]
    return tuple(dict.fromkeys(out))


def _split(spec: str | os.PathLike[str]) -> tuple[str, str]:
    """(name, path) of ``NAME=FILE`` or ``FILE`` (a path object is the file): a name holds no path
    separator.

    Raises:
        MixoptError: ``=FILE`` or ``NAME=``, a name or a file left empty.
    """
    if not isinstance(spec, str):  # a Path in library use (FitConfig's tables are Paths too)
        return DEFAULT_NAME, os.fspath(spec)
    if not spec.strip():  # `--reuse-mixture "$PREV"` with PREV unset had read the current folder
        raise MixoptError("--reuse-mixture is empty; give the mixture JSON to reuse, MIXTURE.json or "
                          "NAME=MIXTURE.json")
    name, eq, path = spec.partition("=")
    if eq and Path(spec).expanduser().is_file():  # a file named v=2.json (a review)
        return DEFAULT_NAME, spec
    if eq and "/" not in name and "\\" not in name:
        if not name.strip():
            raise MixoptError(f"--reuse-mixture {spec}: give the group a name before '=' (NAME=FILE), or "
                              "just the file")
        if not path.strip():  # `g=$PREV` with PREV unset had read the current folder ("." is a folder)
            raise MixoptError(f"--reuse-mixture {spec}: give the mixture JSON after '=' (NAME=FILE)")
        return name.strip(), path
    return DEFAULT_NAME, spec


def reuse_name(spec: str | os.PathLike[str]) -> str:
    """The group's name in ``--reuse-mixture [NAME=]FILE``."""
    return _split(spec)[0]


def reuse_path(spec: str | os.PathLike[str]) -> Path:
    """The mixture file of ``--reuse-mixture [NAME=]FILE`` (an input no output may overwrite)."""
    return Path(_split(spec)[1]).expanduser()


def _parts(source: str, domains: Sequence[str]) -> list[str]:
    """The domains named as parts of ``source`` (``s2pdf:games`` of ``s2pdf``): a split source."""
    n = len(source)
    return [d for d in domains if len(d) > n + 1 and d.startswith(source) and d[n] in ":/_-."]


def resolve_reuse(spec: str | os.PathLike[str] | None, domains: Sequence[str], recompute: Sequence[str] = (),
                  *, table: bool = False) -> Reuse | None:
    """:func:`load_reuse` for an option that may be absent (None), refusing ``--recompute`` alone.

    Raises:
        MixoptError: as :func:`load_reuse`, or ``--recompute`` without ``--reuse-mixture``.
    """
    if spec is None:
        if recompute:
            raise MixoptError("--recompute names domains of a reused mixture to search on their own again; "
                              "add --reuse-mixture FILE")
        return None
    return load_reuse(spec, domains, recompute, table=table)


def load_reuse(spec: str | os.PathLike[str], domains: Sequence[str], recompute: Sequence[str] = (), *,
               table: bool = False) -> Reuse:
    """The group ``--reuse-mixture [NAME=]MIXTURE.json`` makes among ``domains`` (the domains, or, with
    ``table``, a table's columns, which may be in units already), less the ``--recompute`` domains.

    Raises:
        MixoptError: an unreadable or scheduled mixture, a name taken by a domain, recompute names
            outside the mixture, or nothing left to reuse.
    """
    import difflib

    from mixopt.mixture import Mixture
    from mixopt.tables import ID_COLUMNS

    recompute = recompute_names(recompute)
    domains = list(domains)  # a generator had been spent by the first look
    name, path = _split(spec)
    # the name is a column of tables and a key of --max-weight/--tokens lists (a QA pass: "a,b")
    if name in ID_COLUMNS or any(c in name for c in ",=@") or any(c.isspace() for c in name):
        raise MixoptError(f"--reuse-mixture {spec}: {name!r} cannot name the group ("
                          + (f"{', '.join(ID_COLUMNS)} name a table's rows" if name in ID_COLUMNS else
                             "it would not read back from --max-weight and --tokens lists")
                          + f"); give a name of letters, digits and '_-.:', e.g. existing={path}")
    spec = f"{name}={path}" if name != DEFAULT_NAME else path
    prev = Mixture.load(Path(path).expanduser())
    if prev.schedule:
        raise MixoptError(f"--reuse-mixture {path} is a scheduled mixture; reuse one with a single set of "
                          "weights")
    # a table's column may be the group (Olmix's `existing`); the domains a job trains cannot (a QA pass:
    # a search's group named after a domain it lacked trained the file's domains and not that one)
    units_table = table and name in domains and not any(d in domains for d in prev.weights)
    # in a table over units the file's domains are no columns: a source's parts are all taken out
    recompute = expand_recompute(recompute, list(prev.weights), None if units_table else domains)
    unknown = [d for d in recompute if d not in prev.weights]
    if unknown:
        raise MixoptError(f"--recompute {listed(unknown, 5)}: not a domain of {path}, nor a source or "
                          f"pattern of its domains (its domains: {listed(list(prev.weights), 8)}); a domain "
                          "that file lacks is searched on its own already: drop it from --recompute")
    absent = [d for d in recompute if d not in domains]
    if absent and not units_table:  # in a table over units, --recompute takes a gone domain out
        raise MixoptError(f"--recompute {listed(absent, 5)}: not among the domains "
                          f"({listed(list(domains), 8)}); a domain of the file that is gone is left out "
                          "without it")
    kept = [d for d in prev.weights if d not in recompute]
    if not kept:
        raise MixoptError(f"--recompute names every domain of {path}: nothing is left to reuse; drop "
                          "--reuse-mixture and --recompute")
    # a domain of the file, or one beside the group's members, cannot name the group
    if name in prev.weights or (name in domains and (not table or any(d in domains for d in kept))):
        which = "one of the domains" if name in domains else f"a domain of {path}"
        raise MixoptError(f"--reuse-mixture {spec}: {name!r} is {which}; name the group otherwise "
                          f"(--reuse-mixture existing={path})")
    if name in domains:  # a table in units: the group is a column, its members are not
        split = {m: parts for m in kept if (parts := _parts(m, domains))}
        if split:  # the source in the group and its parts beside it: counted twice (a QA pass)
            m, parts = next(iter(split.items()))
            raise MixoptError(f"{m} of {path} is in {name}, and its parts {listed(parts, 3)} are columns "
                              "beside it: a split source would be counted twice; take it out of the group "
                              f"with --recompute {','.join(split)}")
        members, dropped, order = kept, [], []
        for d in domains:
            order.extend(kept if d == name else [d])
    else:
        members = [d for d in domains if d in kept]
        dropped = [d for d in kept if d not in domains]
        order = list(domains)
    total = sum(prev.weights[m] for m in members)
    if not members or total <= 0:
        columns = [d for d in domains if d not in prev.weights]
        hint = (f" (a table with one column for the group names it: --reuse-mixture {columns[0]}={path})"
                if table and not members and columns else "")
        raise MixoptError(f"--reuse-mixture {path}: none of its domains with a weight > 0 is left to reuse "
                          f"among {listed(list(domains), 8)}{hint}; check the file, or drop --reuse-mixture")
    if not [d for d in domains if d not in members and d != name]:
        gone = (f" ({listed(dropped, 3)} of it no longer among them: the mixture to train is the file "
                f"without {'it' if len(dropped) == 1 else 'them'}, renormalised, as Olmix trains a removal)"
                if dropped else "")
        raise MixoptError(f"--reuse-mixture {path} holds every domain ({listed(list(domains), 8)}){gone}: "
                          "nothing is left to search beside it; reuse it when domains are added, or "
                          "--recompute some of its domains")
    if dropped:
        new = [d for d in domains if d not in prev.weights]
        split = {d: parts for d in dropped if (parts := _parts(d, new))}
        alike = {d: difflib.get_close_matches(d, new, n=1, cutoff=0.6) for d in dropped if d not in split}
        renamed = [f"{d} → {m[0]}" for d, m in alike.items() if m]
        said = [f"split? {d} → {listed(parts, 3)}: its share is left out, and the parts are searched beside "
                f"{name}" for d, parts in split.items()]
        if renamed:  # a revised source is new data: only the same data renamed keeps its share
            said.append(f"renamed? {', '.join(renamed)}: if it is the same data under a new name, rename it "
                        "in that file too to keep its share; a revised source is searched beside the group")
        warn(f"--reuse-mixture {path}: {listed(dropped, 5)} {'is' if len(dropped) == 1 else 'are'} no longer "
             f"among the domains; the rest of {name} keep their shares, renormalised"
             + (f" ({'; '.join(said)})" if said else ""), MixoptWarning)
    zero = [m for m in members if prev.weights[m] == 0]
    if zero:
        warn(f"--reuse-mixture {path}: {listed(zero, 5)} {'has' if len(zero) == 1 else 'have'} weight 0 "
             f"there and stay{'s' if len(zero) == 1 else ''} at 0 in every mixture; --recompute "
             f"{'it' if len(zero) == 1 else 'them'} to search {'it' if len(zero) == 1 else 'them'}",
             MixoptWarning)
    if len(members) == 1:  # no shares to keep: the group is that domain under another name
        warn(f"--reuse-mixture {path}: only {members[0]} of it is left to reuse, so the group {name} is "
             f"{members[0]} alone and keeps nothing; search without --reuse-mixture (then runs over "
             "every domain, which other searches can reuse)", MixoptWarning)
    # its absolute path: what a mixture records of it is read from anywhere (a QA pass: "mix1.json")
    return Reuse(name=name, ratios={m: prev.weights[m] / total for m in members},
                 source=str(Path(path).expanduser().resolve()),
                 dropped=tuple(dropped), recompute=recompute, order=tuple(order))
