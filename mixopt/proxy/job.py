"""One proxy run from what a user types: a mixture spec, a corpus and a rung name, a result file.

``mixopt proxy train`` calls :func:`run_proxy_job`. A mixture spec is ``natural`` (weights ∝
training tokens), ``uniform``, a mixture JSON file, or inline ``domain=weight,...`` (domains not
named get weight 0). The result JSON (schema ``mixopt.proxy-run/v1``: metrics, history, resolved
rung, mixture, corpus hash, versions) is written atomically, by default under
``<workspace>/runs/proxy/``.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mixopt import paths
from mixopt.atomic import check_writable, write_json
from mixopt.errors import MixoptError, refuse_blank
from mixopt.mixture import Mixture, check_domains
from mixopt.proxy.train import ProxyResult, run_record, train_proxy


def is_inline(spec: str) -> bool:
    """Whether ``spec`` is weights written out (``d1=w1,d2=w2``), not a mixture file."""
    if "=" not in spec or spec.endswith(".json"):
        return False
    try:
        return not Path(spec).is_file()
    except OSError:  # weights of many domains make a name too long for any file (ENAMETOOLONG)
        return True


def _path_safe(text: str, keep: str = "-_.") -> str:
    """``text`` with every character but letters, digits and ``keep`` made ``_`` (a file name part)."""
    return "".join(ch if ch.isalnum() or ch in keep else "_" for ch in text)


LABEL_CHARS = 40


def spec_label(spec: str) -> str:
    """A short label of a mixture spec: ``natural``, ``uniform``, a JSON file's stem, or an inline
    ``code=0.5,math=0.5`` as ``code_0.5_math_0.5`` (a folder name: no ``=`` or ``,``). A long inline
    spec keeps its first whole pairs and names the rest by count and digest
    (``code_0.25_docs_0.25_and_2_more_3fa2c1``): cut mid-number, ``legal=0.25`` had read 0.2."""
    if not is_inline(spec):
        return spec if spec in ("natural", "uniform") else Path(spec).stem
    text = spec.replace(" ", "")
    if len(text) <= LABEL_CHARS:
        return _path_safe(text)
    import hashlib

    pairs = [p for p in text.split(",") if p]
    n = 1  # at least the first pair, however long
    while n < len(pairs) and len(",".join(pairs[: n + 1])) <= LABEL_CHARS - 15:
        n += 1
    digest = hashlib.sha256(text.encode()).hexdigest()[:6]
    return _path_safe(f"{','.join(pairs[:n])}_and_{len(pairs) - n}_more_{digest}")


def label_before(spec: str) -> str | None:
    """The label ``spec_label`` gave a long inline spec before 2026-12-05 (its first 40 characters),
    where it differs: a default folder named by it holds a run to resume."""
    if not is_inline(spec):
        return None
    old = _path_safe(spec.replace(" ", ""))[:LABEL_CHARS]
    return old if old != spec_label(spec) else None


def mixture_from_spec(spec: str, corpus: Any) -> Mixture:
    """Resolve ``natural``, ``uniform``, a JSON file, or ``d1=w1,d2=w2`` against ``corpus``."""
    # '' (a variable left unset) is Path('.'), which had been called "a folder" (the current one)
    refuse_blank(spec, "the mixture", "give natural, uniform, a mixture JSON file, or domain=weight,...")
    if spec == "natural":
        return Mixture.from_tokens(corpus.train_tokens(), method="natural")
    if spec == "uniform":
        return Mixture.uniform(corpus.domains, method="uniform")
    if is_inline(spec):
        weights: dict[str, float] = {}
        for part in filter(None, (p.strip() for p in spec.split(","))):
            name, sep, value = part.partition("=")
            if not sep:
                raise MixoptError(f"mixture {spec!r}: part {part!r} is not domain=weight")
            if name.strip() in weights:
                raise MixoptError(f"mixture {spec!r} names {name.strip()!r} twice; give each domain once")
            try:
                weights[name.strip()] = float(value)
            except ValueError as exc:
                raise MixoptError(
                    f"mixture {spec!r}: weight {value!r} of domain {name.strip()!r} is not a number"
                ) from exc
        return Mixture(weights, meta={"method": "inline"})
    if Path(spec).suffix == ".json" or Path(spec).is_file():
        return Mixture.load(Path(spec))
    if Path(spec).is_dir():  # as export says it (a QA pass: the generic line below named no folder)
        raise MixoptError(f"mixture {spec!r} is a folder; give a mixture JSON file in it, such as "
                          f"{Path(spec) / 'mixture.json'}")
    raise MixoptError(
        f"mixture {spec!r} is not 'natural', 'uniform', an existing mixture JSON file, or domain=weight,..."
    )


@dataclass(frozen=True)
class ProxyJob:
    """What :func:`run_proxy_job` did: the result, the record written, and where."""

    result: ProxyResult
    record: dict[str, Any]
    out: Path
    mixture: Mixture


def default_out(corpus: str, rung: str, mixture_spec: str, seed: int) -> Path:
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    # spec_label bounds an inline spec's label, digest included (a cut at 40 had dropped the digest);
    # the cut bounds a file's stem or one very long first pair. (Path().stem would cut "b=0.5" at ".5".)
    label = _path_safe(spec_label(mixture_spec)[: 2 * LABEL_CHARS], keep="-_") or "mixture"
    return paths.home() / "runs" / "proxy" / f"{corpus}-{rung}-{label}-seed{seed}-{stamp}.json"


def run_proxy_job(
    *,
    corpus: str,
    rung: str,
    mixture: str,
    seed: int = 0,
    threads: int | None = None,
    tokens: int | None = None,
    max_epochs: float | None = None,
    out: str | Path | None = None,
) -> ProxyJob:
    """Resolve the inputs, train one proxy, and write its result JSON (see the module doc)."""
    from mixopt.corpus.shards import Corpus
    from mixopt.proxy.rungs import load_rung, warn_if_local

    c = Corpus.open(corpus)
    r = load_rung(rung)
    warn_if_local(rung)
    if tokens is not None:
        r = r.with_tokens(tokens)
    mix = mixture_from_spec(mixture, c)
    check_domains(mix.weights, c.domains)
    out_path = Path(out) if out is not None else default_out(c.name, r.name, mixture, seed)
    # fail on an unwritable output before training, not after; nor over a file it reads (a QA pass:
    # --out equal to --mixture wrote the result over the mixture JSON)
    mixture_file = None if mixture in ("natural", "uniform") or is_inline(mixture) else mixture
    check_writable(out_path, example="result.json",
                   inputs={"--mixture": mixture_file, "--rung": r.source or None})
    result = train_proxy(c, mix, r, seed=seed, threads=threads, max_epochs=max_epochs)
    record = run_record(
        result, corpus=c, mixture=mix, rung=r, seed=seed, threads=threads or torch.get_num_threads()
    )
    write_json(out_path, record)
    return ProxyJob(result=result, record=record, out=out_path, mixture=mix)
