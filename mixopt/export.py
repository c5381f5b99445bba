"""Exporters: a mixture in the form a training job reads, and parsers back for round trips.

- ``megatron``: Megatron-LM's ``--data-path`` blend, ``"w1 prefix1 w2 prefix2 ..."`` on one line
  (Megatron normalises the weights itself). Domains with weight 0 (at most
  :data:`NEGLIGIBLE_WEIGHT`) are left out, since a dataset that contributes no samples only costs
  Megatron an index build; :func:`export_notes` says which.
- ``hf``: JSON ``{"datasets": [...], "domains": [...], "probabilities": [...]}`` in one order, for
  ``datasets.interleave_datasets(datasets, probabilities=probabilities)``. Domains with weight 0
  are left out as for Megatron (with ``stopping_strategy="all_exhausted"`` a dataset never drawn
  never runs out: older ``datasets`` never stopped, 5.x refuses it), the rest renormalised to sum
  to 1. A tiny probability is kept, and :func:`export_notes` says what it costs under
  ``all_exhausted`` (about rows / p draws).
- ``olmix``: Olmix's ``[{"domain": ..., "weight": ...}]``.
- ``olmix-mix``: the ``mix:`` section of an Olmix launch config (its flat form, as ``olmix generate``
  writes it): ``domain: {weight, repetition_factor}``. The repetition factor is the mixture's own
  ``--max-epochs`` cap when it records one, else Olmix's default 1.0 (:func:`export_notes` says so),
  raised for a domain that the mixture needs more passes over at its target budget (the search
  records them), which Olmix could not build otherwise.
- ``yaml``: RegMix's mixture config (sail-sg/regmix mixture_config/config_1b/*.yaml): a ``train:``
  mapping of training set (``train_<domain>``, as RegMix names its files) to weight and a ``valid:``
  mapping of validation set to weight (domains with weight 0 left out of ``train:`` as for Megatron;
  a domain name with a space, '/' or a glob character needs a ``--prefix``, being a file prefix
  there, and no key may begin another: RegMix globs ``<key>*``). RegMix's trainer
  deletes ``valid`` unconditionally, so the section is always written: the objective's domains and
  weights when the mixture records them (all domains equally otherwise), each named as RegMix names
  its validation sets (``train_x`` or ``x`` → ``valid_x``), unless ``valid`` is given.

``prefixes`` maps a domain to the name the training job knows it by (a Megatron data prefix, an HF
dataset path); domains without one keep their own name. Weights are written with ``repr`` so they
read back exactly.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Literal

from mixopt.errors import MixoptError
from mixopt.mixture import Mixture, shown_name, spelling_note
from mixopt.objective import normalised

# A solver's 1e-18 and a top-k average's 1e-11 are zeros: one token in a billion or fewer.
NEGLIGIBLE_WEIGHT = 1e-9
# Under HF's all_exhausted a dataset of probability p needs about rows / p draws to run out.
TINY_PROBABILITY = 1e-4

Format = Literal["megatron", "hf", "olmix", "olmix-mix", "yaml"]
FORMATS: tuple[str, ...] = ("megatron", "hf", "olmix", "olmix-mix", "yaml")
# The file extension of each format (`mixopt swarm --exports` writes one file per run)
EXTENSIONS = {"megatron": "txt", "hf": "json", "olmix": "json", "olmix-mix": "yaml", "yaml": "yaml"}


def _and(items: Sequence[str]) -> str:
    """``a, b and c``."""
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def _check(mixture: Mixture, fmt: str, prefixes: Mapping[str, str] | None) -> dict[str, str]:
    if fmt not in FORMATS:
        raise MixoptError(f"export format {fmt!r} is unknown; choose one of {', '.join(FORMATS)}")
    if len(mixture.schedule) > 1:  # one phase (until 1.0) is the mixture's weights all along
        raise MixoptError(
            f"this mixture changes during training ({len(mixture.schedule)} phases, ending at fractions "
            f"{_and([f'{u:g}' for u, _ in mixture.schedule])} of training); the {fmt} format holds "
            "one set of weights: `mixopt train` follows the schedule itself, and for another trainer "
            "write one mixture JSON per phase and export each"
        )
    prefixes = dict(prefixes or {})
    unknown = sorted(set(prefixes) - set(mixture.weights))
    if unknown:
        raise _unknown_prefixes(unknown, list(mixture.weights))
    names = {d: prefixes.get(d, d) for d in mixture.weights}
    domain_of: dict[str, str] = {}
    for d, n in names.items():
        if n in domain_of:
            raise MixoptError(f"domains {domain_of[n]} and {d} would both be exported as {n!r}; "
                              "give distinct --prefix values")
        domain_of[n] = d
    if fmt == "megatron":
        # argparse reads --data-path's words: a space splits a prefix, and one beginning with '-'
        # is taken for an option ("unrecognized arguments", a QA pass with Megatron's parser)
        bad = [n for d, n in names.items() if mixture.weights[d] > NEGLIGIBLE_WEIGHT
               and (not n or n.startswith("-") or any(c.isspace() for c in n))]
        if bad:
            shown = ", ".join(map(repr, bad))
            example = next((d for d, n in names.items() if n in bad), "")
            raise MixoptError(
                f"Megatron data prefixes cannot be empty, contain spaces or begin with '-': {shown}; give "
                f"each its data prefix, e.g. --prefix '{example}=/data/{_slug(example).lstrip('-') or 'data'}"
                "_text_document'"
            )
    return names


def _unknown_prefixes(unknown: Sequence[str], domains: Sequence[str]) -> MixoptError:
    return MixoptError(f"--prefix names domain(s) {', '.join(map(shown_name, unknown))} the mixture lacks; "
                       f"its domains are {', '.join(map(shown_name, domains))}"
                       + spelling_note(unknown, domains))


def parse_prefixes(values: Sequence[str], domains: Sequence[str]) -> dict[str, str]:
    """``--prefix`` values (``domain=path``, repeatable, or ``a=/x,b=/y``) → domain → path.

    Read against the mixture's domains, so that a name with '=' or blanks of its own (``a=b``,
    ``"web "``) is matched whole, and a comma begins a new pair only where a domain and '=' follow
    it (a comma inside a path stays in it). A QA pass: stripped names could not reach ``"web "``,
    which the error's own example then named, and ``a=/x,b=/y,z`` had given ``a`` all of it.
    """
    # longest first, so that domain "a=b" wins over "a" in "a=b=/x"
    names = sorted(domains, key=len, reverse=True)
    # blanks around a plain name and its '=' are the shell's; a name with blanks of its own is exact
    heads = [(d, re.compile(rf"\s*{re.escape(d)}\s*=" if d == d.strip() else rf"{re.escape(d)}="))
             for d in names]

    def head(text: str, pos: int) -> tuple[str, int] | None:
        for d, pat in heads:
            if m := pat.match(text, pos):
                return d, m.end()
        return None

    out: dict[str, str] = {}
    for value in values:
        pos = 0
        while True:
            found = head(value, pos)
            if found is None:  # no domain of the mixture: said as the name before '='
                name, sep, path = value[pos:].partition("=")
                if not sep or not name.strip() or not path.strip():
                    raise MixoptError(f"--prefix {value[pos:]!r} is not of the form domain=path (e.g. "
                                      "web=/data/web)")
                raise _unknown_prefixes([name.strip()], domains)
            domain, start = found
            end = next((i for i in range(start, len(value)) if value[i] == "," and head(value, i + 1)),
                       len(value))
            path = value[start:end].strip()
            if not path:
                raise MixoptError(f"--prefix gives {domain!r} no path; write {domain}=/path/to/data")
            if domain in out:
                raise MixoptError(f"--prefix gives {domain!r} twice; give each domain one path")
            out[domain] = path
            if end == len(value):
                break
            pos = end + 1
    return out


def _slug(name: str) -> str:
    """A name without spaces for an example path (``web text`` → ``web_text``)."""
    return "_".join(name.split()) or "name"


def _valid_name(domain: str) -> str:
    # RegMix names a domain's validation set valid_<name> (train_x → valid_x); from the domain, not
    # its --prefix, which names the training data.
    return "valid_" + domain.removeprefix("train_")


def _max_epochs(mixture: Mixture) -> float | None:
    """The repetition cap (``--max-epochs``) the mixture was searched under, if it records one.

    Raises:
        MixoptError: a recorded cap that is not a positive finite number (a hand edit gone wrong).
    """
    params = mixture.meta.get("params")
    constraints = params.get("constraints") if isinstance(params, dict) else None
    value = constraints.get("max_epochs") if isinstance(constraints, dict) else None
    if value is None:
        return None
    try:
        cap = float(value)
    except (TypeError, ValueError):
        cap = math.nan
    if isinstance(value, bool) or not math.isfinite(cap) or cap <= 0:
        raise MixoptError(f"the mixture's params.constraints.max_epochs is {value!r}; give a positive number "
                          "(the repetition cap) or remove it")
    return cap


def _epochs_needed(mixture: Mixture) -> dict[str, float]:
    """Passes over each domain the mixture needs at its target budget, from what a search records
    (``tokens.epochs``); empty when it records none. Non-numbers (a hand edit) are skipped.

    The passes follow the weights as they are now, from each domain's size (the search space's
    ``params.constraints.tokens``, else the block's tokens at the budget over its passes): a QA pass
    edited a weight by hand, and the recorded passes, of the weight before, set Olmix's repetition
    factor."""
    tokens = mixture.meta.get("tokens")
    epochs = tokens.get("epochs") if isinstance(tokens, dict) else None
    if not isinstance(epochs, dict):
        return {}
    def number(e: object) -> bool:
        return isinstance(e, int | float) and not isinstance(e, bool) and math.isfinite(e)

    out = {d: float(e) for d, e in epochs.items() if d in mixture.weights and number(e)}
    target, per = tokens.get("target_tokens"), tokens.get("per_domain")
    constraints = (mixture.meta.get("params") or {}).get("constraints")
    sizes = constraints.get("tokens") if isinstance(constraints, dict) else None
    if not (number(target) and target > 0):
        return out
    for d, e in out.items():
        if isinstance(sizes, dict) and number(sizes.get(d)) and sizes[d] > 0:
            out[d] = mixture.weights[d] * target / sizes[d]
        elif e > 0 and isinstance(per, dict) and number(per.get(d)) and per[d] > 0:  # size = tokens / passes
            out[d] = mixture.weights[d] * target / (per[d] / e)
    return out


def _repetition_factors(mixture: Mixture) -> dict[str, float]:
    """Olmix's ``repetition_factor`` per domain: the recorded ``--max-epochs`` cap (else Olmix's
    default 1.0), raised to the passes the domain needs at the target budget when the mixture
    records them (rounded up to 0.01), so that Olmix can build the mix it was given."""
    base = _max_epochs(mixture) or 1.0
    need = _epochs_needed(mixture)
    if huge := [d for d, e in need.items() if not math.isfinite(e * 100)]:
        raise MixoptError(f"the mixture's tokens.epochs give {huge[0]} {need[huge[0]]:.3g} passes, too many "
                          "for a repetition factor; fix tokens (epochs, target_tokens) or remove them")
    return {d: max(base, math.ceil(need.get(d, 0.0) * 100 - 1e-9) / 100) for d in mixture.weights}


def _train_name(domain: str) -> str:
    # RegMix's train: keys are the file prefixes of the training data, train_<name> (its
    # prepare_file_domain.py writes {split}_{name}_*); a domain already named train_x keeps it.
    return domain if domain.startswith("train_") else "train_" + domain


def _yaml_train_names(mixture: Mixture, names: Mapping[str, str],
                      prefixes: Mapping[str, str] | None) -> dict[str, str]:
    """RegMix's ``train:`` key of each domain: its --prefix, else train_<domain>."""
    return {d: names[d] if d in (prefixes or {}) else _train_name(d) for d in mixture.weights}


def _check_train_keys(train: Mapping[str, str], prefixes: Mapping[str, str] | None,
                      left_out: Mapping[str, str] | None = None) -> None:
    """Refuse ``train:`` keys RegMix's trainer would read other files for: it takes a set's files
    as ``glob(<data_dir>/<key>*)``, so a key that begins another reads that set's files too, and a
    domain's own name with a glob character matches other files or none (a QA pass with RegMix's
    loader: ``train_code`` read ``train_code_py``'s files as well, without a word). ``left_out``: the
    keys of the domains of weight 0, whose files are in the data folder too: ``train_code`` read
    those of a weight-0 ``code_py`` (a property test)."""
    def fix(d: str) -> str:
        plain = _train_name(re.sub(r"[*?\[\]\s/]+", "_", d))
        return f"--prefix '{d}={plain}'"

    # a pattern would match other sets' files: the overlap check below reads keys as text
    patterns = [(d, p) for d, p in (prefixes or {}).items() if d in train and any(c in "*?[]" for c in p)]
    if given := next(iter(patterns), None):
        raise MixoptError(
            f"--prefix '{given[0]}={given[1]}' holds a glob character (* ? [ ]), and RegMix's trainer reads "
            "a train: set's files as glob('<key>*'); give the data files' plain prefix"
        )
    globbed = [d for d, k in train.items() if d not in (prefixes or {}) and any(c in "*?[]" for c in d)]
    if globbed:
        raise MixoptError(
            f"RegMix's trainer finds a train: set's files by glob, and domain(s) "
            f"{', '.join(map(repr, globbed))} have glob characters (* ? [ ]); give each its data file "
            f"prefix, e.g. {fix(globbed[0])}"
        )
    by_key: dict[str, list[str]] = {}
    for d, k in {**train, **(left_out or {})}.items():
        by_key.setdefault(k, []).append(d)
    for k, ds in by_key.items():
        if len(ds) > 1 and any(d in train for d in ds):  # domains x and train_x: both RegMix's set train_x
            # the example names a domain without a --prefix (the one named as the key, train_x,
            # whose own files RegMix's prepare step writes as train_train_x_*) and a key not in use
            free = [d for d in ds if d not in (prefixes or {})] or ds
            d = next((d for d in free if d == k), free[0])
            key = next(c for c in ("train_" + d, f"{d}_train", *(f"{d}_train{i}" for i in range(2, 10**6)))
                       if not any(c.startswith(u) or u.startswith(c) for u in by_key))
            raise MixoptError(
                f"domains {' and '.join(map(repr, ds))}{_weight0(ds, train)} would both be RegMix's train: "
                f"set {k!r}; give one its data file prefix with --prefix, e.g. --prefix '{d}={key}'"
            )
    keys = sorted(by_key)
    read = {k for k, ds in by_key.items() if any(d in train for d in ds)}  # the keys written to train:
    for a, b in zip(keys, keys[1:], strict=False):  # sorted: a key that begins another is just before it
        if b.startswith(a) and a in read:
            raise MixoptError(
                f"RegMix's trainer reads a train: set's files as glob('<key>*'), so {a!r} (domain "
                f"{by_key[a][0]!r}) would read the files of {b!r} (domain {by_key[b][0]!r}"
                f"{_WEIGHT0 if by_key[b][0] not in train else ''}) too; rename one's data files so that "
                "neither name begins the other, and give it with --prefix"
            )


# Said of a domain left out of train: (weight 0) that a check names: its files are in the data folder
# all the same (the review: the user saw no such set in train: and got no word why).
_WEIGHT0 = " of weight 0: left out of train:, but its files are in the data folder"


def _weight0(domains: Sequence[str], train: Mapping[str, str]) -> str:
    out = [d for d in domains if d not in train]
    return f" ({', '.join(map(repr, out))}{_WEIGHT0})" if out else ""


def _objective_weights(mixture: Mixture) -> dict[str, float]:
    """The positive domain weights of the objective the mixture records (empty: all domains).

    A fit on table columns records the columns instead; a column that names exactly one domain
    (RegMix's ``metric/the_pile_pile_cc_val_loss`` and domain ``train_the_pile_pile_cc``) counts
    as that domain's loss.
    """
    objective = mixture.meta.get("objective") or {}
    recorded = dict(_check_objective_weights(objective.get("weights") or {}, "weights"))
    columns = _check_objective_weights(objective.get("columns") or (
        {str(objective.get("metric")): 1.0} if objective.get("kind") == "metric" else {}), "columns")
    if not recorded and columns:  # a column, several, or the mean of every column of a table
        for col, w in columns.items():
            # the name as a word of the column, not any substring ("c" is in "metric")
            hits = [d for d in mixture.weights
                    if re.search(rf"(?<![A-Za-z0-9]){re.escape(d.removeprefix('train_'))}(?![A-Za-z0-9])",
                                 str(col))]
            if len(hits) != 1:
                return {}
            recorded[hits[0]] = recorded.get(hits[0], 0.0) + float(w)
    return {d: float(w) for d, w in recorded.items() if d in mixture.weights and float(w) > 0}


def _check_objective_weights(weights: object, key: str) -> dict[str, float]:
    """The objective's ``key`` mapping, refused unless every weight is a finite number ≥ 0."""
    if not isinstance(weights, dict):
        raise MixoptError(f"the mixture's objective.{key} must map names to weights, not {weights!r}")
    bad = {d: w for d, w in weights.items()
           if isinstance(w, bool) or not isinstance(w, int | float) or not math.isfinite(w) or w < 0}
    if bad:
        raise MixoptError(f"the mixture's objective.{key} must be finite numbers ≥ 0, not "
                          + ", ".join(f"{d}={w!r}" for d, w in bad.items())
                          + "; fix them, or give the validation sets with --valid name=weight")
    return weights


def regmix_valid(mixture: Mixture) -> dict[str, float]:
    """RegMix's ``valid:`` section: the objective's domains and weights, or all domains equally."""
    weights = _objective_weights(mixture) or dict.fromkeys(mixture.weights, 1.0)
    names = {d: _valid_name(d) for d in weights}
    if len(set(names.values())) != len(names):  # x and train_x: valid_x twice, so the full names
        names = {d: "valid_" + d for d in weights}
    return {names[d]: w for d, w in normalised(weights).items()}


def _hf_probabilities(mixture: Mixture) -> dict[str, float]:
    """Domain → the probability HF's interleaving gets: weight-0 domains left out, the rest
    renormalised (untouched when nothing is dropped)."""
    w = mixture.weights
    kept = [d for d in w if w[d] > NEGLIGIBLE_WEIGHT]
    total = sum(w[d] for d in kept) if len(kept) < len(w) else 1.0
    return {d: w[d] / total for d in kept}


def export_notes(
    mixture: Mixture,
    fmt: str,
    valid: Mapping[str, float] | None = None,
    prefixes: Mapping[str, str] | None = None,
) -> list[str]:
    """What the export leaves out, changes or chooses, one line each (empty when nothing)."""
    notes = []
    if fmt in ("megatron", "hf", "yaml"):
        zero = [d for d, w in mixture.weights.items() if w <= NEGLIGIBLE_WEIGHT]
        if zero:
            where = {"megatron": "the Megatron blend", "hf": "the datasets to interleave",
                     "yaml": "RegMix's train: sets"}[fmt]
            notes.append(f"left out of {where} (weight 0, at most {NEGLIGIBLE_WEIGHT:g}): {', '.join(zero)}")
    if fmt == "hf":
        probs = _hf_probabilities(mixture)
        d_min = min(probs, key=probs.__getitem__)
        p_min = probs[d_min]
        if p_min < TINY_PROBABILITY:  # a QA pass: 1.85e-8 had not finished interleaving in 10 minutes
            notes.append(f"{d_min}'s probability is {p_min:.3g}: with stopping_strategy=\"all_exhausted\", "
                         f"interleave_datasets draws until every dataset has run out, about {d_min}'s rows "
                         f"/ {p_min:.3g} examples; the default first_exhausted stops at the first")
    if prefixes:  # some prefixes given: the others are probably forgotten, not meant as bare names
        bare = [d for d, w in mixture.weights.items() if w > 0 and d not in prefixes]
        if bare:
            how = "as train_<domain>" if fmt == "yaml" else "as the bare domain name(s)"
            notes.append(f"no --prefix for {', '.join(bare)}: written {how}")
    elif fmt == "megatron":  # Megatron reads a bare name as a path relative to where it runs
        notes.append("no --prefix: the blend names each domain as a data prefix relative to where "
                     "Megatron runs; give --prefix domain=/path/to/domain_text_document")
    if fmt == "olmix-mix":
        base = _max_epochs(mixture)
        raised = {d: r for d, r in _repetition_factors(mixture).items() if r > (base or 1.0)}
        if raised:
            tokens = mixture.meta["tokens"].get("target_tokens")
            at = f" ({float(tokens):,.0f} tokens)" if isinstance(tokens, int | float) else ""
            notes.append("repetition_factor raised to the passes the mixture needs at its target budget"
                         f"{at}: {', '.join(f'{d} {r:g}' for d, r in raised.items())}")
        if base is None:
            others = " for the other domains" if raised else ""
            notes.append(f"repetition_factor 1.0 (Olmix's default: no repetition){others}: the mixture "
                         "records no --max-epochs cap; edit it to allow repeating small domains")
    if fmt == "yaml" and not valid:
        recorded = _objective_weights(mixture)
        objective = mixture.meta.get("objective") or {}
        if recorded:
            source = "the objective's domains and weights"
        elif objective.get("columns") or objective.get("kind") == "metric":  # columns naming no domain
            source = f"every domain equally (the objective, {objective.get('metric')}, names no domain)"
        else:
            source = "every domain equally"
        notes.append(f"RegMix's valid: section lists {source}; set it with --valid name=weight")
    return notes


def export_mixture(
    mixture: Mixture,
    fmt: Format | str,
    prefixes: Mapping[str, str] | None = None,
    valid: Mapping[str, float] | None = None,
) -> str:
    """The mixture as text in ``fmt`` (ends with a newline); ``valid`` sets RegMix's ``valid:``."""
    names = _check(mixture, fmt, prefixes)
    if valid and fmt != "yaml":
        raise MixoptError(f"validation sets (--valid) belong to the yaml format only, not {fmt}")
    bad = [f"{k}={v}" for k, v in (valid or {}).items() if not (math.isfinite(v) and v > 0)]
    if bad:
        raise MixoptError(f"--valid weights must be finite and > 0, got {', '.join(bad)}")
    w = mixture.weights
    if fmt == "megatron":
        return " ".join(f"{w[d]!r} {names[d]}" for d in w if w[d] > NEGLIGIBLE_WEIGHT) + "\n"
    if fmt == "hf":
        probs = _hf_probabilities(mixture)
        doc = {"datasets": [names[d] for d in probs], "domains": list(probs),
               "probabilities": list(probs.values())}
        return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    if fmt == "olmix":
        doc = [{"domain": names[d], "weight": w[d]} for d in w]
        return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    import yaml

    if fmt == "olmix-mix":
        rep = _repetition_factors(mixture)
        doc = {"mix": {names[d]: {"weight": w[d], "repetition_factor": rep[d]} for d in w}}
        return yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, allow_unicode=True)

    valid_sets = dict(valid) if valid else regmix_valid(mixture)
    train_names = _yaml_train_names(mixture, names, prefixes)
    kept = [d for d in w if w[d] > NEGLIGIBLE_WEIGHT]  # as megatron and hf
    # RegMix's trainer globs each train: key as a file prefix in its data folder: a space or a '/'
    # of a domain's own name breaks it (a --prefix is the user's path, and kept as given). The
    # valid: names are not read: the trainer deletes the section.
    bad = [d for d in kept if d not in (prefixes or {}) and any(c.isspace() or c == "/" for c in d)]
    if bad:
        raise MixoptError(
            f"RegMix's train: keys are file prefixes, and domain(s) {', '.join(map(repr, bad))} would give "
            f"one with a space or '/'; give each its data file prefix, e.g. --prefix "
            f"'{bad[0]}={_train_name(_slug(bad[0]).replace('/', '_'))}'"
        )
    _check_train_keys({d: train_names[d] for d in kept}, prefixes,
                      {d: train_names[d] for d in w if d not in kept})
    train = {train_names[d]: w[d] for d in kept}
    doc = {"train": train, "valid": valid_sets}
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, allow_unicode=True)


def parse_export(
    text: str,
    fmt: Format | str,
    prefixes: Mapping[str, str] | None = None,
    domains: Sequence[str] = (),
) -> dict[str, float]:
    """Weights by domain from an exported text (the inverse of :func:`export_mixture`).

    Names are mapped back through ``prefixes``, and a yaml ``train_<domain>`` to one of ``domains``;
    for ``megatron``, ``hf`` and ``yaml``, the domains of ``prefixes`` and ``domains`` that the export
    leaves out (weights of 1e-9 or less) come back with weight 0.
    """
    if fmt not in FORMATS:
        raise MixoptError(f"export format {fmt!r} is unknown; choose one of {', '.join(FORMATS)}")
    back = {v: k for k, v in (prefixes or {}).items()}
    pairs: list[tuple[str, float]]
    try:
        if fmt == "megatron":
            tok = text.split()
            if len(tok) % 2:
                raise ValueError("odd number of tokens; expected weight/prefix pairs")
            pairs = [(tok[i + 1], float(tok[i])) for i in range(0, len(tok), 2)]
        elif fmt == "hf":
            doc = json.loads(text)
            if len(doc["datasets"]) != len(doc["probabilities"]):
                raise ValueError("datasets and probabilities differ in length")
            pairs = [(n, float(p)) for n, p in zip(doc["datasets"], doc["probabilities"], strict=True)]
        elif fmt == "olmix":
            pairs = [(e["domain"], float(e["weight"])) for e in json.loads(text)]
        elif fmt == "olmix-mix":
            import yaml

            pairs = [(str(k), float(v["weight"])) for k, v in yaml.safe_load(text)["mix"].items()]
        else:
            import yaml

            known = set(domains)  # train_<domain> → domain, where the domains are given
            pairs = [(k if k in known or k.removeprefix("train_") not in known else k.removeprefix("train_"),
                      float(v)) for k, v in ((str(k), v) for k, v in yaml.safe_load(text)["train"].items())]
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        raise MixoptError(f"cannot parse this {fmt} export: {exc}") from exc
    out: dict[str, float] = {}
    for name, weight in pairs:
        if not math.isfinite(weight) or weight < 0:
            raise MixoptError(f"{fmt} export: weight of {name!r} is {weight}")
        domain = back.get(name, name)
        if domain in out:
            raise MixoptError(f"{fmt} export names {name!r} twice")
        out[domain] = weight
    if fmt in ("megatron", "hf", "yaml"):
        for domain in [*(prefixes or {}), *domains]:
            out.setdefault(domain, 0.0)
    return out
