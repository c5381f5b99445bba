"""The search config: everything ``mixopt search`` needs, resolved and validated in one object.

The config is saved whole with the search (in the run store's ``searches`` table), so
``--resume NAME`` continues the same search, and the mixture JSON records where it came from.
"""

from __future__ import annotations

import codecs
import dataclasses
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, DecimalException, InvalidOperation
from pathlib import Path
from typing import Any, Literal

from mixopt import paths
from mixopt.atomic import refuse_odd_name
from mixopt.errors import MixoptError, int_or_float, refuse_blank
from mixopt.evaluator import MAX_SEED, PROXY
from mixopt.methods import METHODS
from mixopt.objective import names_the_mean
from mixopt.search.ray_env import check_address
from mixopt.stats import MAX_SEEDS
from mixopt.store import check_store_path

# Upper bound of --budget (that of --validate and --retries is stats.MAX_SEEDS).
MAX_BUDGET = 100_000


@dataclass(frozen=True, kw_only=True)
class SearchConfig:
    """One search: where the runs come from, what is searched, how it is run.

    Attributes:
        corpus: built corpus name or path (domains and token counts from its manifest); None
            with a user's evaluator and explicit ``domains``.
        evaluator: ``module:function`` of a user's evaluator; None uses the built-in proxy trainer.
        domains: domain names when there is no corpus.
        tokens: available tokens per domain when there is no corpus (natural mixture, repetition cap).
        method: a name from :func:`mixopt.methods.available_methods`.
        budget: distinct mixtures inside the constraints to fit on (runs reused from the store count,
            a mixture once; new runs fill the rest; reused runs outside the constraints are fitted too
            but do not count).
        rung: proxy rung (fidelity) of the swarm.
        fidelity: extra fidelity fields handed to the evaluator (and part of the reuse key).
        seed: seeds the swarm sampler, the training runs and the proposer.
        validate: seeds per candidate when retraining the proposal and the baselines (0: skip; a win
            must pass a t-test on seeds − 1 degrees of freedom, 4.5 paired standard errors with 3).
        validate_rung: rung of the validation runs (default: ``rung``).
        retries: extra attempts for a run that raised, diverged or was killed.
        reuse: use finished runs of earlier searches over the same corpus, rung and domains.
        address: Ray cluster address (default: ``RAY_ADDRESS``, else a local Ray).
        concurrency: trials at once (default: the cluster's CPUs / cpus_per_trial, or its GPUs /
            gpus_per_trial where fewer).
        cpus_per_trial: CPUs of each trial (and its torch threads).
        gpus_per_trial: GPUs Ray reserves for each trial of a user's evaluator (fractions below 1
            share a GPU between trials; Ray sets ``CUDA_VISIBLE_DEVICES`` in the trial); 0: none. The
            built-in proxy trains on CPUs.
        trial_timeout: seconds a run may take before it is stopped and recorded as failed (then
            retried like any failure); None: no limit.
        min_weight, max_weight, fix, max_epochs, target_tokens: the search space.
        target, metric: the objective (``--target d1,d2`` or ``d1=0.7,d2=0.3``; loss or bpb).
        temperature: of the swarm's prior and of the ``temperature`` baseline.
        kl: λ of the exact proposer's KL(x ‖ prior) term (None: its default, 0.1; methods solved
            exactly only).
        out: where the mixture JSON goes (also kept in the search's folder).
        store: run store path (default ``<workspace>/runs.sqlite``).
        reuse_mixture: ``[NAME=]MIXTURE.json``: that mixture's domains (less ``recompute``) are
            searched as one unit at its shares (:mod:`mixopt.reuse`); runs train every domain.
        recompute: domains of ``reuse_mixture`` searched on their own again.
    """

    name: str | None = None
    corpus: str | None = None
    evaluator: str | None = None
    domains: tuple[str, ...] | None = None
    tokens: Mapping[str, float] | None = None
    method: str = "regmix"
    budget: int = 32
    rung: str = "xs"
    fidelity: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0
    validate: int = 3
    validate_rung: str | None = None
    retries: int = 1
    reuse: bool = True
    address: str | None = None
    concurrency: int | None = None
    cpus_per_trial: int = 1
    gpus_per_trial: float = 0.0
    trial_timeout: float | None = None
    min_weight: float = 0.0
    max_weight: Mapping[str, float] = field(default_factory=dict)
    fix: Mapping[str, float] = field(default_factory=dict)
    max_epochs: float | None = None
    target_tokens: float | None = None
    target: str | None = None
    metric: Literal["loss", "bpb"] = "loss"
    temperature: float = 1.0
    kl: float | None = None
    out: str | None = None
    store: str | None = None
    reuse_mixture: str | None = None
    recompute: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.name is not None:
            paths.check_name(self.name, "--name", "search name")
        # '' had been the built-in proxy's
        refuse_blank(self.evaluator, "--evaluator", "give your evaluator as module:function, or leave it out "
                     "for the built-in proxy trainer")
        if self.corpus is None and not self.domains:
            if self.evaluator is not None:
                raise MixoptError("--evaluator needs the domains its runs train on: add --domains a,b,c")
            raise MixoptError("give --corpus NAME, or --evaluator module:function with --domains a,b,c")
        if self.corpus is not None and self.domains:
            raise MixoptError("give either --corpus or --domains, not both (a corpus names its own domains)")
        # --domains without an --evaluator: refused by prepare(), where a callable given to run_search
        # (library use) can stand in for the module:function
        if self.tokens is not None and not self.domains:
            raise MixoptError("--tokens goes with --domains; a corpus knows its own token counts")
        if isinstance(self.domains, str):  # tuple("web") would be three one-letter domains
            raise MixoptError(f"domains is the string {self.domains!r}; give a sequence of names, "
                              "e.g. ('web', 'code')")
        if self.domains is not None:
            object.__setattr__(self, "domains", tuple(self.domains))
            from mixopt.mixture import check_domain_names

            check_domain_names(self.domains, "--domains")  # before the swarm trains, not at its mixture
        check_store_path(self.store)  # before the corpus is looked at
        if self.out is not None:  # '' had written the search folder's mixture.json alone
            object.__setattr__(self, "out", str(self.out))  # a Path in library use, as reuse_mixture
            refuse_odd_name(self.out, "--out")
        check_address(self.address)
        # entropy runs no swarm, so it has no budget to be short of (its note says --budget unused)
        free = self.method in METHODS and METHODS[self.method].training_free
        if self.budget < (0 if free else 1):
            raise MixoptError(f"--budget is {self.budget}; it must be at least {0 if free else 1}")
        # Upper bounds: past them a typo, not a plan (RegMix's swarm is 512 runs, Olmix's up to ~1k);
        # a budget of 1e9 would sit for hours sampling its plan before the first line is printed.
        if self.budget > MAX_BUDGET:
            raise MixoptError(f"--budget is {self.budget:,}; give at most {MAX_BUDGET:,} runs")
        if self.validate < 0:
            raise MixoptError(f"--validate is {self.validate}; it must be ≥ 0 (0 skips validation)")
        if self.validate > MAX_SEEDS:
            raise MixoptError(f"--validate is {self.validate:,}; give at most {MAX_SEEDS} seeds per mixture")
        if self.retries < 0:
            raise MixoptError(f"--retries is {self.retries}; it must be ≥ 0")
        if self.retries > MAX_SEEDS:
            raise MixoptError(f"--retries is {self.retries:,}; give at most {MAX_SEEDS}")
        if self.concurrency is not None and self.concurrency < 1:
            raise MixoptError(f"--concurrency is {self.concurrency}; it must be ≥ 1")
        if self.cpus_per_trial < 1:
            raise MixoptError(f"--cpus-per-trial is {self.cpus_per_trial}; it must be ≥ 1")
        g = self.gpus_per_trial
        # Ray reserves a fraction of one GPU, or whole GPUs: 1.5 is refused by Ray once Tune runs
        if not (math.isfinite(g) and g >= 0) or (g > 1 and not float(g).is_integer()):
            raise MixoptError(f"--gpus-per-trial is {g:g}; give 0, a fraction up to 1 (trials sharing a GPU) "
                              "or a whole number of GPUs")
        t = self.trial_timeout
        if t is not None and not (math.isfinite(t) and t > 0):
            raise MixoptError(f"--trial-timeout is {t}; it must be a number of seconds > 0")
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise MixoptError(f"--temperature is {self.temperature}; it must be a finite number > 0")
        if self.metric not in ("loss", "bpb"):
            raise MixoptError(f"--metric {self.metric!r} is unknown; use loss or bpb")
        if not self.rung:
            raise MixoptError("--rung is empty; name a proxy rung (e.g. xs)")
        from mixopt.reuse import recompute_names

        object.__setattr__(self, "recompute", recompute_names(self.recompute))
        if self.reuse_mixture is not None:  # a Path in library use: kept as the text a resume reads
            object.__setattr__(self, "reuse_mixture", str(self.reuse_mixture))
        check_tokens_fidelity(self.fidelity)
        if "rung" in self.fidelity:  # the search sets it from --rung; two values would disagree
            raise MixoptError(f"--fidelity rung={self.fidelity['rung']}: a search's rung is --rung; give "
                              f"--rung {self.fidelity['rung']}")

    @property
    def evaluator_name(self) -> str:
        """``proxy`` for the built-in trainer, else the user's ``module:function``."""
        return self.evaluator or PROXY

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["domains"] = list(self.domains) if self.domains is not None else None
        d["recompute"] = list(self.recompute)
        if names_the_mean(self.target):  # stored as the default it is
            d["target"] = None
        for k in ("tokens", "fidelity", "max_weight", "fix"):
            d[k] = dict(d[k]) if d[k] is not None else None
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SearchConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        if kw.get("domains") is not None:
            kw["domains"] = tuple(kw["domains"])
        kw["recompute"] = tuple(kw.get("recompute") or ())
        for k in ("fidelity", "max_weight", "fix"):
            if kw.get(k) is None:
                kw.pop(k, None)
        kw["target"] = stored_target(kw.get("target"), kw.get("domains"))
        # '' had meant the default before 2026-12-07 (a blank one of these could not have run)
        for k in ("store", "address", "evaluator", "out"):
            if isinstance(kw.get(k), str) and not kw[k].strip():
                kw[k] = None
        if kw.get("validate_rung") == "":  # it had read as --rung
            kw["validate_rung"] = None
        return cls(**kw)

    def check_new(self) -> None:
        """Checks of a new search that a stored one is spared (its runs are keyed by what it ran
        with): a blank ``--rung`` or ``--validate-rung`` had been a user evaluator's runs' label, and
        a library user's seed past the CLI's range may have run."""
        for option, value in (("--rung", self.rung), ("--validate-rung", self.validate_rung)):
            refuse_blank(value, option, "name a proxy rung (e.g. xs)")
        if not 0 <= self.seed <= MAX_SEED:  # as the CLI's --seed (in library use 2^64 failed in the store)
            raise MixoptError(f"--seed is {self.seed:,}; give a seed from 0 to {MAX_SEED:,}")

    def replace(self, **changes: Any) -> SearchConfig:
        return dataclasses.replace(self, **changes)


def stored_target(target: str | None, domains: Sequence[str] | None = None) -> str | None:
    """A stored search's ``--target`` as it read then: "" (before 2026-12-04) was the mean over all
    domains. ``mean`` named a domain until 2026-12-07 (no search could store it otherwise), and the
    mean of all domains for searches stored that night before it was stored as None: the domain
    where ``domains`` (the search's, when known) has one of that name, else the mean."""
    if target == "":
        return None
    if names_the_mean(target):
        return "mean=1" if domains is None or "mean" in domains else None
    return target


def _check_locale_text(text: str, option: str) -> None:
    """Under a locale that is not UTF-8 (LANG=C without Python's UTF-8 mode) a non-ASCII argument
    arrives with its bytes as lone surrogates, which a name cannot be written or sent as: a QA pass
    saw Ray refuse such --domains with "cannot start or reach a local Ray"."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        shown = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        encoding = sys.getfilesystemencoding()
        if codecs.lookup(encoding).name == "utf-8":  # the bytes themselves (a script saved as Latin-1)
            raise MixoptError(f"{option} {shown!r} is not valid UTF-8 text (its bytes were written in "
                              "another encoding); give the names in UTF-8") from None
        raise MixoptError(f"{option} {shown!r}: its non-ASCII characters could not be read in this locale "
                          f"(its encoding is {encoding}, not UTF-8); run under a UTF-8 "
                          "locale (export LANG=C.UTF-8) or with PYTHONUTF8=1") from None


def at_file(text: str | None, option: str) -> str | None:
    """A list option's text as given, or, for ``@PATH``, that file's lines (or commas) joined with
    commas, lines starting with ``#`` left out: 300 domains with their token counts are a file, not
    a command line (a QA pass)."""
    if text is None or not text.startswith("@"):
        return text
    path = Path(text[1:]).expanduser()
    try:
        body = path.read_text(encoding="utf-8-sig")  # a BOM (Windows Notepad) is no part of a name
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise MixoptError(f"{option} {text}: cannot read {path} ({why}); give a text file of the list, one "
                          "item per line or comma-separated") from None
    # lines end at \n (and \r\n) only: splitlines() also broke at U+2028 and NEL, splitting a name
    # the domain check would have refused (a QA pass)
    lines = body.replace("\r\n", "\n").split("\n")
    items = [part.strip() for line in lines if not line.lstrip().startswith("#")  # comments
             for part in line.split(",")]
    if not any(items):
        raise MixoptError(f"{option} {text}: {path} is empty; give the list, one item per line or "
                          "comma-separated")
    return ",".join(item for item in items if item)


def _pairs(text: str | None, *, option: str, form: str) -> list[tuple[str, str]]:
    """Split ``k=v,k2=v2`` into stripped pairs; ``option`` and ``form`` make the error line."""
    _check_locale_text(text or "", option)
    if text is not None and not text.replace(",", "").strip():  # `--fix "$FIX"` with FIX unset: not "none"
        refuse_blank(text if not text.strip() else "", option, f"give {form}, or leave it out")
    pairs = []
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        name, sep, val = part.partition("=")
        if not sep or not name.strip() or not val.strip():
            raise MixoptError(f"{option}: {part!r} is not of the form {form}")
        pairs.append((name.strip(), val.strip()))
    return pairs


# The largest count a count option takes (tokens, runs, candidates): 1e30 would start a run of 10^26
# steps, and the largest pre-training runs are ~4e13 tokens.
MAX_COUNT = 10**15

# Counts as people write them (``200k``, ``5M``, ``1.5G``; ``B`` for billions as in model names).
COUNT_SUFFIX = {"k": 10**3, "m": 10**6, "g": 10**9, "b": 10**9}


def scaled_number(text: str) -> Decimal:
    """``4k`` → 4000, ``2.01M`` → 2010000 (exactly: decimal, not float), ``1_000`` → 1000, ``1e9``.

    Raises:
        ValueError: not a number, with or without a suffix.
    """
    s = str(text).strip().replace("_", "")
    scale = COUNT_SUFFIX.get(s[-1:].lower()) if s else None
    try:
        return Decimal(s[:-1] if scale is not None else s) * (scale or 1)
    except InvalidOperation:
        raise ValueError(f"not a number: {text!r}") from None
    except DecimalException:  # 1e999999k: past decimal's exponent range
        raise ValueError(f"too large a number: {text!r}") from None


def count_text(n: float, digits: int = 6) -> str:
    """A count as people write it and :func:`scaled_number` reads it back, in ``digits`` significant
    digits (``g``'s): ``4e9``, not ``4e+09``."""
    return f"{n:.{digits}g}".replace("e+0", "e").replace("e+", "e")


def parse_assignments(text: str | None, *, option: str, counts: bool = False, files: bool = True,
                      ) -> dict[str, float]:
    """Parse ``a=1e9,b=2e9`` (``--tokens``, ``--max-weight``, ``--fix``) into a dict; with ``counts``
    (``--tokens``) a value may carry a suffix, as ``--tokens`` counts do elsewhere (``4k``, ``2B``).
    ``files``: ``@FILE`` is read (:func:`at_file`); off for text already read so."""
    out: dict[str, float] = {}
    unit = "count (e.g. 4e9, 500M, 200k)" if counts else "number"
    if files:
        text = at_file(text, option)
    example = "web=4e9" if counts else "web=0.5"  # a count's example had been a weight
    for name, val in _pairs(text, option=option, form=f"domain=value (e.g. {option} {example})"):
        try:
            value = float(scaled_number(val)) if counts else float(val)
        except ValueError as exc:
            raise MixoptError(f"{option}: value {val!r} of {name!r} is not a {unit}") from exc
        if not math.isfinite(value):
            raise MixoptError(f"{option}: value {val!r} of {name!r} is not finite; give a number")
        if counts and value > MAX_COUNT:  # as every other count option: 2**70 tokens had been taken
            raise MixoptError(f"{option}: value {val!r} of {name!r} is more than {MAX_COUNT:.0e} tokens (the "
                              "largest pre-training runs are ~4e13); check the exponent")
        if name in out and out[name] != value:
            raise MixoptError(f"{option} gives {name} twice ({out[name]:g} and {value:g}); give it once")
        out[name] = value
    return out


def parse_domains(text: str | None, option: str = "--domains") -> tuple[str, ...] | None:
    """``--domains a,b,c`` (or another list of domains, ``option`` naming it in errors). An empty
    name (``a,,b``: a domain left out by a typo) and a name with ``=`` (no ``--fix``, ``--tokens``
    or ``--target`` could name it) are refused.

    Raises:
        MixoptError: naming the name and the fix.
    """
    if text is None:
        return None
    text = at_file(text, option)
    _check_locale_text(text, option)
    names = [d.strip() for d in text.split(",")]
    if len(names) > 1 and names[-1] == "":  # a trailing comma (web,code,) leaves nothing out
        names.pop()
    if not any(names):
        raise MixoptError(f"{option} is empty; give the domain names, e.g. {option} web,code,math")
    if "" in names:
        raise MixoptError(f"{option} {text!r} has an empty name between its commas; give each domain once, "
                          f"e.g. {option} web,code,math")
    if bad := [d for d in names if "=" in d]:
        raise MixoptError(f"{option} names {', '.join(map(repr, bad))}: a domain name cannot hold '=' "
                          "(--fix and --tokens could not name it); rename it")
    return tuple(names)


def _count(text: str) -> int | float:
    value = scaled_number(text)
    if not value.is_finite():
        raise ValueError(f"not a finite count: {text!r}")
    return int(value) if value == value.to_integral_value() else float(value)


def parse_fidelity(text: str | Sequence[str] | None) -> dict[str, Any]:
    """Parse ``--fidelity k=v,...`` (or the values of a repeated option); numbers become numbers.

    Raises:
        MixoptError: a malformed pair, or a key given twice with two values.
    """
    if text is not None and not isinstance(text, str):
        text = ",".join(text) if text else None  # no value at all is none; an empty one is refused
    out: dict[str, Any] = {}
    typed: dict[str, str] = {}
    for name, val in _pairs(text, option="--fidelity", form="key=value (e.g. --fidelity steps=1000,lr=3e-4)"):
        # tokens is a count wherever it is written (5k as --tokens 5k); other keys keep their text
        # (rung=1m names a rung)
        casts = (int_or_float, float, _count, str) if name == "tokens" else (int_or_float, float, str)
        for cast in casts:
            try:
                value = cast(val)
                break
            except ValueError:
                continue
        if name == "tokens" and isinstance(value, float) and value.is_integer():
            value = int(value)  # 1e6 is the count 1M is: as a float it had been another reuse key
        # stored, it had read back as null (tokens: its own check below says what a count is)
        if isinstance(value, float) and not math.isfinite(value) and name != "tokens":
            raise MixoptError(f"--fidelity {name}={val}: give a finite number, or a name")
        if name in out and out[name] != value:
            raise MixoptError(f"--fidelity gives {name} twice ({out[name]} and {value}); give it once")
        out[name] = value
        typed[name] = val
    check_tokens_fidelity(out, typed.get("tokens"))
    return out


def check_tokens_fidelity(fidelity: Mapping[str, Any], typed: str | None = None) -> None:
    """``tokens``, where a fidelity gives it, is a count for any evaluator (``tokens=-5k`` had reached
    a user's evaluator as -5000).

    Raises:
        MixoptError: not a finite number ≥ 1.
    """
    value = fidelity.get("tokens")
    if value is None:
        return
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not (number and math.isfinite(value) and value >= 1):
        shown = value if typed is None else typed  # as the user wrote it (-5k, not -5000)
        raise MixoptError(f"--fidelity tokens={shown}: a token count must be a number ≥ 1 (e.g. tokens=5k)")
