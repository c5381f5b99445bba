"""The mixture: weights over named domains, an optional schedule, and its JSON form.

A mixture is the product of a search and the input of a training job. Weights are ≥ 0 and sum to
1 (within 1e-9 after normalising); no domain is ever silently dropped or invented. The JSON form
(``"schema": "mixopt.mixture/v1"``) carries the weights plus what a user needs to trust them:
objective, method and parameters, predicted objective (with an interval where the method has
one), baselines, tokens and epochs per domain at the target budget, and provenance. Its JSON
Schema ships as ``mixopt/schemas/mixture.v1.json``.
"""

from __future__ import annotations

import copy
import datetime as _dt
import json
import math
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from mixopt.errors import (
    MixoptError,
    MixoptWarning,
    finite_json,
    int_or_float,
    is_control,
    listed,
    refuse_blank,
    warn,
)

SCHEMA_ID = "mixopt.mixture/v1"
SCHEMA_PATH = Path(__file__).with_name("schemas") / "mixture.v1.json"
SUM_TOL = 1e-9
# Rows read from files made elsewhere are rounded; within this they are renormalised with a warning.
RENORM_TOL = 1e-3


# The evidence every mixture mixopt writes carries, in this order, null or empty where its maker has
# none (`fit` measures nothing, `entropy` predicts nothing): a script reads one shape whichever
# command made the file (a QA pass: `fit`'s file had lacked keys a search's holds as null).
EVIDENCE_KEYS = ("objective", "method", "params", "predicted", "measured", "baselines", "tokens",
                 "provenance", "notes")
_DEFAULTS: dict[str, Any] = {"params": {}, "predicted": None, "measured": None, "baselines": {},
                             "tokens": {"target_tokens": None}, "provenance": {}, "notes": []}
_PROVENANCE: dict[str, Any] = {"corpus": None, "corpus_hash": None, "run_ids": []}


# The libraries whose versions decide a result's numbers (fitters, proposers, proxies, the store).
_LIBRARIES = ("python", "numpy", "scipy", "scikit-learn", "lightgbm", "torch", "botorch", "gpytorch",
              "polars", "tokenizers", "ray")


@lru_cache(maxsize=1)
def _revision() -> str | None:
    """The git revision of a mixopt run from a clone (``pip install -e``), ``-dirty`` with changes
    not committed; None for an installed wheel (its version says it) or where git cannot tell.

    Asked without taking the clone's index lock (``describe --dirty`` refreshes the index, and a
    user's own ``git commit`` beside it could fail on index.lock: a review), and of this clone
    whatever repository a ``GIT_DIR`` in the environment names (a git hook, ``rebase -x``)."""
    import os
    import subprocess

    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None
    env = {k: v for k, v in os.environ.items() if k not in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE")}
    env["GIT_OPTIONAL_LOCKS"] = "0"

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                                  timeout=5, check=False, env=env)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    rev = git("describe", "--always", "--abbrev=12")
    if not rev:
        return None
    changed = git("status", "--porcelain", "--untracked-files=no")
    return f"{rev}-dirty" if changed else rev


COMMAND: list[str] | None = None  # the mixopt command line being run (set by the CLI), for made_by


def made_by() -> dict[str, Any]:
    """What a result was made with, to rerun it: mixopt's version (and git revision in a clone),
    the versions of the libraries that decide its numbers, and the command line of ``mixopt``
    (None in library use). A QA pass: a mixture named only mixopt's version, which every commit
    of a clone shares."""
    import importlib.metadata
    import platform
    import shlex

    from mixopt import __version__

    versions: dict[str, str] = {}
    for lib in _LIBRARIES:
        try:
            versions[lib] = platform.python_version() if lib == "python" else importlib.metadata.version(lib)
        except importlib.metadata.PackageNotFoundError:
            continue
    return {"mixopt_version": __version__, "revision": _revision(), "versions": versions,
            "command": shlex.join(["mixopt", *COMMAND]) if COMMAND is not None else None}


def made_differently(before: Mapping[str, Any] | None, now: Mapping[str, Any]) -> list[str]:
    """What differs between two :func:`made_by` records in what decides a result's numbers (mixopt's
    version and revision, the libraries' versions; not the command line), as "what X, now Y". An
    older record without them (None) or a side that does not know one (a wheel has no revision)
    differs in nothing it cannot name."""
    if not before:
        return []
    out = []
    for key, name in (("mixopt_version", "mixopt"), ("revision", "mixopt revision")):
        a, b = before.get(key), now.get(key)
        if a is not None and b is not None and a != b:
            out.append(f"{name} {a}, now {b}")
    was, has = before.get("versions") or {}, now.get("versions") or {}
    out += [f"{lib} {was[lib]}, now {has[lib]}" for lib in was if lib in has and was[lib] != has[lib]]
    return out


def evidence(**meta: Any) -> dict[str, Any]:
    """A mixture's ``meta`` with every evidence key of its JSON, in one order, a default where
    ``meta`` lacks one; keys beyond them follow. ``objective`` and ``method`` are the maker's; the
    provenance gains :func:`made_by`'s keys."""
    defaults = copy.deepcopy(_DEFAULTS)  # fresh, so that no two mixtures share a default's dict
    out = {k: meta.pop(k, defaults.get(k)) for k in EVIDENCE_KEYS if k in meta or k in defaults}
    out["provenance"] = {**copy.deepcopy(_PROVENANCE), **made_by(), **out["provenance"]}
    return {**out, **meta}


def has_control_char(text: str) -> bool:
    """Whether ``text`` holds a control character (a newline, a tab, DEL, C1's NEL) or a Unicode line
    or paragraph separator: no table or export line can carry it (YAML reads U+0085 and U+2028 as
    line breaks)."""
    return any(is_control(ch) for ch in text)


def check_domain_chars(name: object, where: str) -> None:
    """Refuse a domain name no training job can name a dataset by: empty, or holding a control
    character (a newline broke every export's lines). Checked where names come in (``--domains``,
    a table's columns) as well as in a mixture, so that a search does not train a swarm first.

    Raises:
        MixoptError: ``where`` names the option or file.
    """
    if not str(name).strip():
        raise MixoptError(f"{where}: a domain has an empty name ({name!r}); name every domain")
    if has_control_char(str(name)):
        raise MixoptError(f"{where}: domain name {str(name)!r} holds a control character (a newline, a "
                          "tab, a line separator); name domains with printable characters")
    # half of a UTF-16 pair, from a JSON escape such as "\ud800": no UTF-8 file can hold it, and every
    # export but yaml had ended in a UnicodeEncodeError as it wrote (a property test)
    if any(unicodedata.category(ch) == "Cs" for ch in str(name)):
        raise MixoptError(f"{where}: domain name {ascii(str(name))} holds a lone surrogate (half of a "
                          "\\uXXXX pair), which no UTF-8 file can hold; name domains with whole characters")
    if is_pattern(str(name)):  # its runs' export: a table that fit and runs import refuse (the review)
        raise MixoptError(f"{where}: domain name {str(name)!r} begins with '^' and ends with '$', which run "
                          "tables' reader (polars) takes for a pattern of column names; rename it")


def is_pattern(name: str) -> bool:
    """A name polars reads as a regular expression of column names (``^…$``), in its own methods too."""
    text = name.strip()
    return len(text) > 1 and text[0] == "^" and text[-1] == "$"


def check_domain_names(names: Iterable[object], where: str) -> None:
    """:func:`check_domain_chars` for each name, and no two names that are one name spelt in two
    Unicode forms (``é`` as one code point, or as ``e`` and an accent): they look the same in every
    table and export, and an option naming one would silently miss the other.

    Raises:
        MixoptError: ``where`` names the option or file.
    """
    seen: dict[str, str] = {}
    for name in names:
        check_domain_chars(name, where)
        key = unicodedata.normalize("NFC", str(name))
        if key in seen and seen[key] != str(name):
            raise MixoptError(f"{where}: domains {seen[key]!r} and {str(name)!r} are one name in two Unicode "
                              f"spellings ({ascii(seen[key])} and {ascii(str(name))}); spell them alike, "
                              "or name them apart")
        seen.setdefault(key, str(name))


def normalize_weights(
    weights: Mapping[str, float], *, where: str = "mixture", tol: float = RENORM_TOL
) -> dict[str, float]:
    """Check and normalise weights: finite, ≥ 0, summing to 1 within ``tol``.

    Raises:
        MixoptError: a weight is negative or not finite, there are none, or the sum is off by
            more than ``tol``.
    """
    if not weights:
        raise MixoptError(f"{where} has no domains; give at least one domain weight")
    check_domain_names(weights, where)
    out: dict[str, float] = {}
    for name, w in weights.items():
        try:
            w = float(w)
        except (TypeError, ValueError) as exc:
            raise MixoptError(f"{where}: weight of domain {name!r} is not a number ({w!r})") from exc
        if not math.isfinite(w):
            raise MixoptError(f"{where}: weight of domain {name!r} is {w}; weights must be finite")
        if w < 0:
            raise MixoptError(f"{where}: weight of domain {name!r} is negative ({w}); weights must be ≥ 0")
        out[str(name)] = w
    total = sum(out.values())
    if total == 0:
        raise MixoptError(f"{where}: every weight is 0; give at least one domain a positive weight")
    if abs(total - 1.0) > tol:
        raise MixoptError(
            f"{where}: weights sum to {total:.6g}, not 1; fix them or normalise (each weight / {total:.6g})"
        )
    if abs(total - 1.0) > SUM_TOL:
        if abs(total - 1.0) > 1e-6:
            warn(
                f"{where}: weights summed to {total:.9g}; renormalised to 1", MixoptWarning
            )
        out = {k: v / total for k, v in out.items()}
    return out


def spelling_note(unknown: Iterable[str], known: Iterable[str]) -> str:
    """`` ('café' here is 'café' spelt in another Unicode form: …)`` where a name not found is a known
    one in another Unicode spelling (NFC against NFD): the two print alike, and an error listing
    both had read as nonsense (a QA pass). Empty otherwise."""
    by_nfc = {unicodedata.normalize("NFC", k): k for k in known}
    for u in unknown:
        k = by_nfc.get(unicodedata.normalize("NFC", u))
        if k is not None and k != u:
            return (f" ({u!r} here is {k!r} spelt in another Unicode form: {ascii(u)} against {ascii(k)}; "
                    "spell them alike)")
    return ""


def shown_name(name: str) -> str:
    """A domain name in a message: quoted where blanks of its own would be lost (``'web '``)."""
    return repr(name) if name != name.strip() else name


def check_domains(weights: Mapping[str, float], domains: Sequence[str], *, where: str = "mixture") -> None:
    """Refuse a mixture whose domains differ from ``domains`` (missing ones are an error only if >0)."""
    unknown = sorted(set(weights) - set(domains))
    if unknown:
        raise MixoptError(
            f"{where} names domains the corpus lacks: {', '.join(map(shown_name, unknown))}; "
            f"known domains are: {', '.join(map(shown_name, domains))}{spelling_note(unknown, domains)}"
        )


GROUP_SEPARATORS = (":", "/")


def domain_groups(domains: Sequence[str]) -> tuple[str, ...] | None:
    """Each domain's source, from names written ``source:topic`` (or ``source/topic``); None if flat.

    Corpora assembled from sources split by topic (Olmix's ``dclm:health``, ``s2pdf:health``, …)
    carry their hierarchy in the names. A domain without a separator is its own group. None when
    the names show no hierarchy: no group holds two or more domains, or one group holds them all.
    """

    def source(name: str) -> str:
        for sep in GROUP_SEPARATORS:
            if sep in name:
                return name.split(sep, 1)[0]
        return name

    groups = tuple(source(d) for d in domains)
    return groups if 1 < len(set(groups)) < len(groups) else None


# Metric names of one domain's validation loss in tables made elsewhere: RegMix writes domain
# ``train_the_pile_arxiv`` and metric ``metric/the_pile_arxiv_val_loss``.
_METRIC_SUFFIXES = ("_val_loss", "_validation_loss", "_loss", "_val_bpb", "_bpb", "_val")


def metric_domain(metric: str, domains: Sequence[str]) -> int | None:
    """The index of the domain whose validation loss (or bits per byte) ``metric`` is, or None.

    mixopt's own names are ``loss/<domain>`` and ``bpb/<domain>``. In tables made elsewhere, the
    metric's last ``/`` part less a ``_val_loss``-like suffix must equal exactly one domain's name
    less a ``train_`` prefix; anything else (a downstream score, a mean) is no domain's loss.
    """
    for kind in ("loss/", "bpb/"):
        if metric.startswith(kind) and metric[len(kind) :] in domains:
            return list(domains).index(metric[len(kind) :])
    stem = metric.rsplit("/", 1)[-1]
    suffix = next((x for x in _METRIC_SUFFIXES if stem.endswith(x) and len(stem) > len(x)), None)
    if suffix is None:  # `acc/arxiv` or a bare `arxiv` is no loss of arxiv
        return None
    stem = stem[: -len(suffix)]
    found = [i for i, d in enumerate(domains) if d.removeprefix("train_") == stem]
    return found[0] if len(found) == 1 else None


def _phase(phase: Any, i: int) -> tuple[float, Mapping[str, float]]:
    """A schedule phase as ``(until, weights)``, from that pair or the JSON's ``{"until", "weights"}``."""
    if isinstance(phase, Mapping):
        if set(phase) != {"until", "weights"}:
            raise MixoptError(f"mixture schedule phase {i} has keys {sorted(phase)}; a phase is "
                              "{'until': fraction, 'weights': {domain: weight}}")
        phase = (phase["until"], phase["weights"])
    try:
        until, w = phase
        return float(until), w
    except (TypeError, ValueError):
        raise MixoptError(f"mixture schedule phase {i} is {phase!r}; give (until_fraction, weights) or "
                          "{'until': fraction, 'weights': {domain: weight}}") from None


def _distinct(domains: Sequence[str]) -> list[str]:
    if isinstance(domains, str):
        raise MixoptError(f"domains is the string {domains!r}; give a sequence of names, "
                          "e.g. ('web', 'code')")
    names = list(domains)
    seen = {d for d in names if names.count(d) > 1}
    if seen:  # {"a": 0.5} from ["a", "a"] had said "weights sum to 0.5, not 1"
        raise MixoptError(f"duplicate domain names: {', '.join(sorted(seen))}")
    if not names:
        raise MixoptError("no domains to mix; give one or more names")
    return names


@dataclass(frozen=True)
class Mixture:
    """Weights over named domains, optionally changing during training.

    Attributes:
        weights: domain → weight, ≥ 0, summing to 1. For a scheduled mixture, the first phase.
        schedule: ``[(until_fraction, weights), ...]`` with strictly increasing fractions ending
            at 1.0 (or the JSON's ``{"until", "weights"}`` phases); phase i is used for training
            fractions in [prev_until, until_i), the last one up to and including 1.
        meta: everything else the JSON carries (objective, method, prediction, provenance...).
    """

    weights: dict[str, float]
    schedule: tuple[tuple[float, dict[str, float]], ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "weights", normalize_weights(self.weights))
        if self.schedule:
            sched: list[tuple[float, dict[str, float]]] = []
            prev = 0.0
            for i, phase in enumerate(self.schedule, start=1):  # phases counted from 1, as people do
                until, w = _phase(phase, i)
                if not (prev < until <= 1.0):
                    raise MixoptError(
                        f"mixture schedule: phase {i} ends at fraction {until}, but fractions must "
                        f"increase strictly and lie in (0, 1]; previous phase ended at {prev}"
                    )
                w = normalize_weights(w, where=f"mixture schedule phase {i}")
                extra = sorted(set(w) - set(self.weights))
                if extra:
                    raise MixoptError(
                        f"mixture schedule phase {i} names {', '.join(extra)}, which the mixture's weights "
                        f"lack; list every domain of the schedule in the weights (0 where the first phase "
                        "does not use it)"
                    )
                w = {d: w.get(d, 0.0) for d in self.weights}  # a domain a phase leaves out gets no share
                sched.append((until, w))
                prev = until
            if sched[-1][0] != 1.0:
                raise MixoptError(
                    f"mixture schedule ends at fraction {sched[-1][0]}; the last phase must end at 1.0"
                )
            first = sched[0][1]
            off = [d for d in self.weights if abs(self.weights[d] - first[d]) > 1e-3]  # rounding passes
            if off:  # which would a training job use? The contract says: the first phase.
                raise MixoptError(
                    f"mixture weights differ from the schedule's first phase on {listed(off, 5)}; "
                    "a scheduled mixture's weights are its first phase: make them equal"
                )
            object.__setattr__(self, "schedule", tuple(sched))

    @property
    def domains(self) -> list[str]:
        return list(self.weights)

    def weights_at(self, fraction: float) -> dict[str, float]:
        """The weights in force at training fraction ``fraction`` ∈ [0, 1]."""
        if not self.schedule:
            return self.weights
        for until, w in self.schedule:
            if fraction < until:
                return w
        return self.schedule[-1][1]

    def mean_weights(self) -> dict[str, float]:
        """Each domain's weight averaged over training (the weights when there is no schedule)."""
        if not self.schedule:
            return dict(self.weights)
        out, prev = dict.fromkeys(self.weights, 0.0), 0.0
        for until, w in self.schedule:
            for d in out:
                out[d] += (until - prev) * w[d]
            prev = until
        return out

    def vector(self, domains: Sequence[str]) -> list[float]:
        """Weights in the order of ``domains`` (absent domains are 0)."""
        check_domains(self.weights, domains)
        return [self.weights.get(d, 0.0) for d in domains]

    @classmethod
    def uniform(cls, domains: Sequence[str], **meta: Any) -> Mixture:
        domains = _distinct(domains)
        return cls({d: 1.0 / len(domains) for d in domains}, meta=dict(meta))

    @classmethod
    def from_tokens(cls, tokens: Mapping[str, float], temperature: float = 1.0, **meta: Any) -> Mixture:
        """Natural (temperature 1) or temperature-scaled token distribution: w ∝ tokens^(1/T)."""
        if temperature <= 0:
            raise MixoptError(f"temperature must be > 0, got {temperature}")
        def count(t: Any) -> float:
            try:
                return float(t)
            except (TypeError, ValueError):
                return math.nan

        bad = [d for d, t in tokens.items() if not (math.isfinite(count(t)) and count(t) >= 0)]
        if bad:  # a negative count had become 0 without a word
            shown = ", ".join(f"{d} = {tokens[d]!r}" for d in bad[:5])
            raise MixoptError(f"token counts must be finite numbers ≥ 0; got {shown}")
        raw = {d: float(t) ** (1.0 / temperature) for d, t in tokens.items()}
        total = sum(raw.values())
        if total <= 0:
            raise MixoptError("token counts are all zero; cannot form a natural mixture")
        return cls({d: v / total for d, v in raw.items()}, meta=dict(meta))

    # ----- JSON ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"schema": SCHEMA_ID, "weights": dict(self.weights)}
        if self.schedule:
            d["schedule"] = [{"until": u, "weights": dict(w)} for u, w in self.schedule]
        for k, v in self.meta.items():
            if k not in ("schema", "weights", "schedule"):
                d[k] = v
        return d

    def to_json(self) -> str:
        return json.dumps(_untyped_finite(self.to_dict()), indent=2) + "\n"

    def save(self, path: str | Path) -> Path:
        """Write the JSON (stamped ``created`` now, unless its meta has a time already)."""
        from mixopt.atomic import write_text

        # The stamp is the file's, not the object's: to_dict had added it on every call, so a
        # mixture read back from its own JSON never equalled the object it came from.
        d = self.to_dict()
        d.setdefault("created", _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"))
        text = json.dumps(_untyped_finite(d), indent=2) + "\n"
        validate_json(json.loads(text), where=str(path))
        return write_text(path, text)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, where: str = "mixture") -> Mixture:
        validate_json(d, where=where)
        # each phase normalised here too, so that its warnings name the file
        sched = tuple((p["until"], normalize_weights(p["weights"], where=f"{where}: schedule phase {i}"))
                      for i, p in enumerate(d.get("schedule", []), start=1))
        meta = {k: v for k, v in d.items() if k not in ("schema", "weights", "schedule")}
        try:  # normalised here first, so that its warnings and errors name the file
            return cls(normalize_weights(d["weights"], where=where), sched, meta)
        except MixoptError as exc:  # the schema passed, the values did not: say which file
            if where == "mixture" or str(exc).startswith(where):
                raise
            raise MixoptError(f"{where}: {exc}") from exc

    @classmethod
    def load(cls, path: str | Path) -> Mixture:
        # Path('') is '.': "mixture file . is a folder" named no file given
        refuse_blank(str(path), "the mixture file's name", "give the path to a mixture JSON")
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8-sig")  # a BOM (Windows editors) is not JSON
        except FileNotFoundError as exc:
            raise MixoptError(f"mixture file {path} does not exist; give a path to a mixture JSON") from exc
        except IsADirectoryError as exc:
            raise MixoptError(f"mixture file {path} is a folder; give the path to a mixture JSON") from exc
        except UnicodeDecodeError as exc:
            raise MixoptError(f"mixture file {path} is not UTF-8 text (byte {exc.start}); give a mixture "
                              "JSON (mixopt search --out writes one)") from exc
        except OSError as exc:
            raise MixoptError(f"cannot read mixture file {path}: {exc}") from exc
        def no_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
            seen: set[str] = set()
            for k, _ in pairs:  # json keeps the last of a repeated key without a word
                if k in seen:
                    raise MixoptError(f"mixture file {path} names {k!r} twice in one object; give it once")
                seen.add(k)
            return dict(pairs)

        try:  # 10**400 as inf, which the checks name
            data = json.loads(text, object_pairs_hook=no_repeats, parse_int=int_or_float)
        except json.JSONDecodeError as exc:
            raise MixoptError(
                # json's own message may end "starting at"; the line is named once
                f"mixture file {path} is not valid JSON: {exc.msg.removesuffix(' at')} at line {exc.lineno}"
            ) from exc
        except RecursionError:
            raise MixoptError(f"mixture file {path} nests its arrays or objects too deep to read; give a "
                              "mixture JSON (mixopt search --out writes one)") from None
        return cls.from_dict(data, where=str(path))


def _untyped_finite(d: dict[str, Any]) -> dict[str, Any]:
    """``d`` with NaN and ±inf as null in the fields the schema leaves free (``params``, ``provenance``,
    a user's own keys): a NaN or a 400-digit integer (read as inf) in them had been saved as NaN or
    Infinity, which jq refuses. The schema's number fields keep theirs: null there fails the schema,
    and a search would end without its file (the review)."""
    typed = set(schema()["properties"]) - {"params", "provenance"}
    return {k: v if k in typed else finite_json(v) for k, v in d.items()}


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    """The JSON Schema of ``mixopt.mixture/v1``."""
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def validate_json(data: Any, *, where: str = "mixture") -> None:
    """Validate a parsed mixture JSON against the shipped schema; one clear error if it fails.

    A top-level key the schema does not know is refused when it is a misspelling of ``schedule``
    or ``weights`` that holds what they hold, where the file lacks them (``"schedules"`` trained
    the first phase for the whole run); any other is a user's own annotation, kept and warned of.
    """
    import difflib

    import jsonschema

    known = list(schema()["properties"])
    unknown = [k for k in data if k not in known] if isinstance(data, dict) else []
    meant = {}
    for key in unknown:  # before the schema: a misspelt "weights" is the cause of its "required" error
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.75)
        if close:
            meant[key] = close[0]
            holds = {"schedule": list, "weights": dict}.get(close[0])
            if holds is not None and close[0] not in data and isinstance(data[key], holds):
                raise MixoptError(f"{where}: key {key!r} is not part of {SCHEMA_ID}; did you mean "
                                  f"{close[0]!r}?")
    validator = jsonschema.Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        loc = "/".join(str(p) for p in e.absolute_path) or "(top level)"
        raise MixoptError(f"{where} fails the mixture schema at {loc}: {e.message}{_schema_fix(e, data)}")
    if unknown:
        said = ", ".join(f"{k!r}" + (f" (did you mean {meant[k]!r}?)" if k in meant else "") for k in unknown)
        warn(f"{where}: {said} not part of {SCHEMA_ID}; kept, not read", MixoptWarning)


def _schema_fix(e: Any, data: Any) -> str:
    """How to fix the schema errors people make writing a mixture by hand ('' for the others)."""
    path = list(e.absolute_path)
    if e.validator == "required":
        if "'schema'" in e.message:  # every hand-written file's first error
            return f'; add "schema": "{SCHEMA_ID}"'
        if "'weights'" in e.message:
            return '; add "weights": {"<domain>": <share>, ...} with shares summing to 1'
    if e.validator == "const" and path == ["schema"]:
        return f"; this mixopt reads {SCHEMA_ID}"
    if e.validator == "type" and isinstance(e.instance, str) and "number" in str(e.validator_value):
        return "; write numbers without quotes"
    if len(path) >= 2 and path[-2] == "weights" and e.validator == "type":  # true, null, a list
        return f"; give {path[-1]!r} a number such as 0.25 (0 for a domain it does not use)"
    if len(path) >= 2 and path[-2] == "weights" and e.validator in ("maximum", "minimum"):
        weights = data
        for p in path[:-1]:
            weights = weights[p]
        numbers = {d: v for d, v in weights.items() if isinstance(v, int | float) and not isinstance(v, bool)}
        if bad := [d for d, v in numbers.items() if not math.isfinite(v)]:
            return f"; weights are finite shares summing to 1: give {bad[0]!r} a number such as 0.25"
        if e.validator == "minimum":
            return f"; weights are shares ≥ 0 summing to 1: give {path[-1]!r} 0 or more"
        if neg := [d for d, v in numbers.items() if v < 0]:  # the weight past 1 makes up for it
            return (f"; weights are shares ≥ 0 summing to 1, and {neg[0]!r} is {numbers[neg[0]]:g}: give it "
                    "0 or more")
        total = sum(numbers.values())
        if total > 0:  # counts or ratios written as weights
            return f"; weights are shares summing to 1: normalise them (each weight / {total:g})"
    if e.validator == "type" and not path:
        return (f'; a mixture file is one JSON object: {{"schema": "{SCHEMA_ID}", '
                '"weights": {"<domain>": <share>, ...}}')
    if e.validator == "type" and path == ["schedule"]:
        return ('; "schedule" is a list of phases: [{"until": 0.5, "weights": {...}}, '
                '{"until": 1.0, "weights": {...}}]')
    if path[-1:] == ["until"] and e.validator in ("maximum", "exclusiveMinimum", "type"):
        return ('; "until" is the fraction of training a phase ends at, in (0, 1]; the last phase ends '
                "at 1.0")
    if e.validator == "minItems" and path == ["schedule"]:
        return "; leave out \"schedule\" or give its phases"
    return ""
