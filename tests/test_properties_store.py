"""Properties of the run store and the round trips through it: a run reads back as it was written (or
its write is refused with one MixoptError and nothing is written), `runs list --json` is strict JSON
that agrees with the store, `runs export` then `runs import` gives the runs back, reuse keys tell
fidelities apart exactly, a delete never takes a run a search uses, and a mangled table is one error."""

from __future__ import annotations

import contextlib
import io
import json
import math
import tempfile
import unicodedata
import warnings
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from mixopt.cli import run_cli
from mixopt.errors import MixoptError, MixoptWarning
from mixopt.mixture import is_pattern
from mixopt.store import RUN_STATUSES, RunRecord, RunStore, fidelity_key

FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# any text a store may hold: no lone surrogates (no UTF-8 text can hold them)
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
PRINTABLE = st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp"))
ODD = ["café", "cafe\u0301", "a b", "a/b", "loss/a", "null", "1.5", "*", "x,y", 'q"q', "\u00a0x", "日本"]
NAMES = (st.text(PRINTABLE, min_size=1, max_size=10).filter(
    lambda s: s.strip() == s and s and not is_pattern(s))
         | st.sampled_from(ODD))
FLOATS = (st.floats(allow_nan=True, allow_infinity=True)
          | st.sampled_from([5e-324, 1e-300, 1e300, 1.7976931348623157e308, -0.0, 0.1 + 0.2]))
NUMBERS = FLOATS | st.integers(-(10**30), 10**30)
JSONISH = st.recursive(st.none() | st.booleans() | NUMBERS | TEXT,
                       lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
                       max_leaves=8)


def _nfc(name: str) -> str:
    return unicodedata.normalize("NFC", name)


@st.composite
def mixtures(draw: st.DrawFn, names: st.SearchStrategy[str] = NAMES) -> dict[str, float]:
    domains = draw(st.lists(names, min_size=1, max_size=5, unique_by=_nfc))
    raw = draw(st.lists(st.floats(0, 1) | st.sampled_from([0.0, 5e-324, 1e-9]), min_size=len(domains),
                        max_size=len(domains)).filter(lambda r: sum(r) > 0))
    return {d: w / sum(raw) for d, w in zip(domains, raw, strict=True)}


@st.composite
def records(draw: st.DrawFn, run_id: str) -> RunRecord:
    fid = draw(st.dictionaries(TEXT, JSONISH, max_size=4))
    return RunRecord(
        run_id=run_id, weights=draw(mixtures()), fidelity=fid,
        fidelity_key=fidelity_key(fid, draw(st.sampled_from(["proxy", "m:f"]))),
        status=draw(st.sampled_from(RUN_STATUSES)), search_id=draw(st.none() | NAMES),
        role=draw(st.sampled_from(["swarm", "validate", "import"])), label=draw(st.none() | TEXT),
        corpus=draw(st.none() | NAMES), corpus_hash=draw(st.none() | st.text("0123456789abcdef", max_size=8)),
        objective_key=draw(st.none() | TEXT), objective=draw(st.none() | FLOATS),
        seed=draw(st.none() | st.integers(-(2**63), 2**63 - 1)),
        metrics=draw(st.dictionaries(NAMES | TEXT, NUMBERS, max_size=5)),
        history=draw(st.lists(st.dictionaries(TEXT, NUMBERS | TEXT, max_size=3), max_size=3)),
        cost=draw(st.none() | st.floats(allow_nan=False)), error=draw(st.none() | TEXT),
        attempt=draw(st.integers(1, 2**40)),
    )


def _same(a: dict, b: dict) -> bool:
    """Equal field by field: the JSON ones as JSON writes them (NaN is NaN, -0.0 keeps its sign, the
    keys their order), the REAL columns as numbers (SQLite keeps -0.0 as 0.0)."""
    real = ("objective", "cost")
    return (json.dumps({k: v for k, v in a.items() if k not in real})
            == json.dumps({k: v for k, v in b.items() if k not in real})
            and all(a[k] == b[k] for k in real))


def _fields(r: RunRecord) -> dict:
    return {f: getattr(r, f) for f in r.__dataclass_fields__}


def _as_stored(r: RunRecord) -> dict:
    """What the store documents it keeps of ``r``: everything as written, but a non-finite objective
    as None (never fitted)."""
    out = _fields(r)
    if r.objective is not None and not math.isfinite(r.objective):
        out["objective"] = None
    return out


@contextlib.contextmanager
def _store() -> RunStore:
    with tempfile.TemporaryDirectory() as tmp:
        yield RunStore(Path(tmp) / "runs.sqlite")


def _cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
        warnings.simplefilter("ignore", MixoptWarning)
        code = run_cli(list(args))
    return code, out.getvalue(), err.getvalue()


# ----- a run reads back as written ----------------------------------------------------------


@FAST
@given(data=st.data(), n=st.integers(1, 4))
def test_a_run_reads_back_as_it_was_written(data: st.DataObject, n: int) -> None:
    ids = data.draw(st.lists(st.text(PRINTABLE, min_size=1, max_size=10) | TEXT.filter(bool), min_size=n,
                             max_size=n, unique=True))
    recs = [data.draw(records(i)) for i in ids]
    with _store() as store:
        assert store.add(recs) == n
        for r in recs:
            got = store.get(r.run_id)
            assert got is not None and _same(_fields(got), _as_stored(r))
            assert list(got.weights) == list(r.weights)  # the domains in their order
        listed = store.runs()
        assert sorted(x.run_id for x in listed) == sorted(ids)
        assert [x.run_id for x in store.runs(run_ids=ids[:1])] == ids[:1]


def _strict(text: str) -> object:
    """``text`` read as strict JSON: NaN and Infinity refused, as jq and JavaScript refuse them."""
    def refuse(word: str) -> None:
        raise ValueError(f"not strict JSON: {word}")

    return json.loads(text, parse_constant=refuse)


def _finite(obj: object) -> object:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), n=st.integers(1, 5), limit=st.sampled_from([0, 1, 3, 50]))
def test_runs_list_json_is_strict_json_and_agrees_with_the_store(data: st.DataObject, n: int,
                                                                 limit: int) -> None:
    ids = data.draw(st.lists(st.from_regex(r"[a-z]{1,2}[0-9]{0,3}", fullmatch=True), min_size=n, max_size=n,
                             unique=True))
    times = ["2026-01-01T00:00:00.000+00:00", "2026-01-01T00:00:00.001+00:00"]  # ties: ordered by id
    at = data.draw(st.lists(st.sampled_from(times),
                            min_size=n, max_size=n))
    recs = [data.draw(records(i)) for i in ids]
    recs = [RunRecord(**{**_fields(r), "created": t}) for r, t in zip(recs, at, strict=True)]
    with _store() as store:
        store.add(recs)
        code, out, _ = _cli("runs", "list", "--json", "--limit", str(limit), "--store", str(store.path))
        assert code == 0
        shown = _strict(out)
        stored = {r.run_id: r for r in store.runs()}
    from mixopt.store import natural_key

    order = sorted(recs, key=lambda r: (r.created, natural_key(r.run_id)))  # oldest first, ids by number
    assert [s["run_id"] for s in shown] == [r.run_id for r in order][-limit if limit else 0:]
    for s in shown:
        r = stored[s["run_id"]]
        for k, v in s.items():
            assert v == _finite(getattr(r, k)), k


# ----- runs export, then runs import ---------------------------------------------------------

NULLS = ("", "NA", "nan", "NaN", "null")  # a table's cells that read as missing
ID_LIKE = ("run", "name", "index", "tokens", "step")
COLUMN_NAMES = st.text(PRINTABLE, min_size=1, max_size=8).filter(
    lambda s: s == s.strip() and s not in ID_LIKE and not s.startswith("Unnamed:")
    and not (s.startswith("^") and s.endswith("$"))
) | st.sampled_from([n for n in ODD if n == n.strip() and n == _nfc(n)])
# ids a search or an import makes: a table's cells are read stripped, and "NA" as missing
RUN_IDS = (st.text(PRINTABLE, min_size=1, max_size=10).filter(lambda s: s == s.strip() and s not in NULLS)
           | st.from_regex(r"s-[a-z]{1,3}-a[0-9]{1,3}", fullmatch=True))


@st.composite
def exportable(draw: st.DrawFn) -> list[RunRecord]:
    """Ok runs of one fidelity over one domain set, as a search or an import leaves them."""
    domains = draw(st.lists(COLUMN_NAMES, min_size=2, max_size=4, unique_by=_nfc))
    names = draw(st.lists(COLUMN_NAMES | st.sampled_from([f"loss/{d}" for d in domains]), min_size=1,
                          max_size=4, unique=True))
    n = draw(st.integers(1, 5))
    ids = draw(st.lists(RUN_IDS, min_size=n, max_size=n, unique=True))
    fid = {"rung": "xs"}
    out = []
    for rid in ids:
        w = draw(mixtures(st.sampled_from(domains)).filter(lambda m: len(m) == len(domains)))
        w = {d: w[d] for d in domains}
        values = st.floats(allow_infinity=False) | st.integers(-(10**6), 10**6)
        first = draw(st.sampled_from(names))  # an ok run has a metric (the evaluator's contract)
        metrics = draw(st.fixed_dictionaries({first: values},
                                             optional={m: values for m in names if m != first}))
        out.append(RunRecord(run_id=rid, weights=w, fidelity=fid, fidelity_key=fidelity_key(fid, "m:f"),
                             status="ok",
                             label=draw(st.none() | st.text(PRINTABLE, max_size=6) | st.sampled_from(NULLS)),
                             metrics=metrics, seed=0))
    return out


def _export(store: Path, to: Path) -> tuple[int, str]:
    code, _, err = _cli("runs", "export", "--ratios", str(to / "ratios.csv"), "--metrics",
                        str(to / "metrics.csv"), "--store", str(store))
    return code, err


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(runs=exportable())
def test_runs_exported_then_imported_come_back_the_same(runs: list[RunRecord]) -> None:
    assume(any(math.isfinite(v) for r in runs for v in r.metrics.values()))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "a").mkdir(), (tmp / "b").mkdir(), (tmp / "c").mkdir()
        RunStore(tmp / "one.sqlite").add(runs)
        code, err = _export(tmp / "one.sqlite", tmp / "a")
        if code:  # refused (a metric named as an id column): one line, nothing written
            assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
            assert not list((tmp / "a").iterdir())
            return
        assert _export(tmp / "one.sqlite", tmp / "b")[0] == 0
        for f in ("ratios.csv", "metrics.csv"):  # exporting twice writes the same files
            assert (tmp / "a" / f).read_bytes() == (tmp / "b" / f).read_bytes()
        code, _, err = _cli("runs", "import", "--ratios", str(tmp / "a" / "ratios.csv"), "--metrics",
                            str(tmp / "a" / "metrics.csv"), "--prefix", "", "--evaluator", "m:f",
                            "--fidelity", "rung=xs", "--store", str(tmp / "two.sqlite"))
        assert code == 0, err
        back = {r.run_id: r for r in RunStore(tmp / "two.sqlite").runs()}
        assert _export(tmp / "two.sqlite", tmp / "c")[0] == 0
        first, again = ({f: (tmp / d / f).read_bytes() for f in ("ratios.csv", "metrics.csv")} for d in "ac")
    assert sorted(back) == sorted(r.run_id for r in runs), (sorted(back), sorted(r.run_id for r in runs))
    for r in runs:
        b = back[r.run_id]
        total = sum(r.weights.values())
        want = {d: w / total for d, w in r.weights.items()} if abs(total - 1) > 1e-12 else r.weights
        assert b.weights == want and list(b.weights) == list(r.weights)
        assert b.metrics == {k: float(v) for k, v in r.metrics.items() if math.isfinite(v)}
        assert b.label == (r.label.strip() if r.label and r.label.strip() not in NULLS else r.run_id)
        assert b.status == ("ok" if b.metrics else "diverged") and b.fidelity_key == r.fidelity_key
    # and the imported runs export as the same tables (weights that summed to 1 are kept bit for bit)
    if all(abs(sum(r.weights.values()) - 1) <= 1e-12 and all(map(math.isfinite, r.metrics.values()))
           and (r.label is None or r.label.strip() == r.label
                                                           and r.label not in NULLS) for r in runs):
        for f in first:
            assert again[f].decode().splitlines() == first[f].decode().splitlines()


# ----- reuse keys ---------------------------------------------------------------------------

FIELD_VALUES = st.recursive(st.none() | st.booleans() | st.integers(-(10**20), 10**20)
                            | st.floats(allow_nan=False) | TEXT, lambda inner: st.lists(inner, max_size=3)
                            | st.dictionaries(TEXT, inner, max_size=3), max_leaves=6)
FIELDS = st.dictionaries(TEXT.filter(lambda k: k not in ("corpus", "evaluator")), FIELD_VALUES, max_size=4)


def _shuffled(value: object, data: st.DataObject) -> object:
    """``value`` with every dict's keys in another order."""
    if isinstance(value, dict):
        keys = data.draw(st.permutations(list(value)))
        return {k: _shuffled(value[k], data) for k in keys}
    if isinstance(value, list):
        return [_shuffled(v, data) for v in value]
    return value


@FAST
@given(a=FIELDS, b=FIELDS, corpus=st.none() | NAMES, data=st.data(),
       ev=st.sampled_from(["proxy", "m:f", "m:g"]))
def test_a_reuse_key_is_the_same_for_the_same_fidelity_and_differs_for_another(
        a: dict, b: dict, corpus: str | None, data: st.DataObject, ev: str) -> None:
    with_corpus = {**a, **({"corpus": corpus} if corpus is not None else {})}
    assert fidelity_key(_shuffled(with_corpus, data), ev) == fidelity_key(a, ev)  # order and corpus aside
    # another value (True is not 1, 1 is not 1.0: JSON tells them apart, as the key does) or evaluator
    same = json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    assert (fidelity_key(a, ev) == fidelity_key(b, ev)) == same
    assert fidelity_key(a, ev) != fidelity_key(a, ev + "x")


def test_a_token_count_written_as_1e6_is_the_fidelity_1m_is() -> None:
    # Found by the properties above: --fidelity tokens=1e6 was read as the float 1000000.0 and 1M as
    # the count 1000000, two reuse keys for one fidelity, so neither search reused the other's runs.
    from mixopt.search.config import parse_fidelity

    keys = {fidelity_key(parse_fidelity(f"tokens={t}"), "m:f") for t in ("1e6", "1M", "1000000", "1_000_000",
                                                                          "1000k", "1.0e6")}
    assert len(keys) == 1 and parse_fidelity("tokens=1e6") == {"tokens": 1_000_000}
    assert parse_fidelity("tokens=1500.5") == {"tokens": 1500.5}  # not a whole count: kept as written
    with pytest.raises(MixoptError, match="tokens=1e400: a token count must be a number"):
        parse_fidelity("tokens=1e400")


# ----- deletes and refused writes -----------------------------------------------------------


@st.composite
def populated(draw: st.DrawFn) -> tuple[list[RunRecord], dict[str, tuple[dict, dict]]]:
    """Runs of no search (imported), of recorded searches, some running, and searches whose plans
    and results name some of the others' runs."""
    n = draw(st.integers(1, 8))
    ids = [f"r{i}" for i in range(n)]
    searches = draw(st.lists(st.sampled_from(["s1", "s2", "s3"]), max_size=3, unique=True))
    runs = []
    for rid in ids:
        sid = draw(st.sampled_from([None, "imp", *searches]))
        runs.append(RunRecord(run_id=rid, weights={"a": 0.5, "b": 0.5}, fidelity={}, fidelity_key="{}",
                              status=draw(st.sampled_from(RUN_STATUSES)), search_id=sid,
                              metrics={"loss/a": 1.0}))

    def some() -> list[str]:
        return draw(st.lists(st.sampled_from(ids), max_size=3, unique=True))

    plans = {}
    for s in searches:
        plan = {"reused": some(), "swarm_borrowed": {f"k{i}": r for i, r in enumerate(some())},
                "validation_reused": {f"v{i}": r for i, r in enumerate(some())}}
        result = {"candidates": [{"measured": {"run_ids": some()}}, {"measured": None}]}
        plans[s] = (plan, result)
    return runs, plans


def _dump(store: RunStore) -> list[tuple]:
    return [tuple(_fields(r).values()) for r in store.runs()]


@FAST
@given(world=populated(), data=st.data(), skip_used=st.booleans())
def test_a_delete_takes_only_runs_no_search_uses_or_nothing(world: tuple, data: st.DataObject,
                                                            skip_used: bool) -> None:
    runs, plans = world
    picked = data.draw(st.lists(st.sampled_from([r.run_id for r in runs] + ["nope"]), min_size=1, max_size=4))
    with _store() as store:
        store.add(runs)
        for s, (plan, result) in plans.items():
            store.create_search(s, {}, plan)
            store.update_search(s, result=result)
        before = _dump(store)
        by_id = {r.run_id: r for r in runs}
        used = {i for p, res in plans.values()  # what a search's resume and report read
                for i in [*p["reused"], *p["swarm_borrowed"].values(), *p["validation_reused"].values(),
                          *res["candidates"][0]["measured"]["run_ids"]]}
        wanted = list(dict.fromkeys(picked))
        refused = ("nope" in wanted or any(by_id[i].search_id in plans or by_id[i].status == "running"
                                           for i in wanted if i in by_id)
                   or (used & set(wanted) and not skip_used) or (skip_used and set(wanted) <= used))
        try:
            gone = store.delete_runs(picked, skip_used=skip_used)
        except MixoptError as exc:
            assert refused and "\n" not in str(exc)
            assert _dump(store) == before  # nothing deleted
            return
        assert not refused
        assert gone == [i for i in wanted if i not in used]
        assert {r.run_id for r in store.runs()} == {r.run_id for r in runs} - set(gone)


PREFIX_CHARS = st.sampled_from(["a", "b", "%", "_", "\\", "é", "e\u0301", "日", "\U0001f600", ":", " ", "A"])


@FAST
@given(ids=st.lists(st.lists(PREFIX_CHARS, min_size=1, max_size=4).map("".join), min_size=1, max_size=6,
                    unique=True),
       prefix=st.lists(PREFIX_CHARS, min_size=1, max_size=2).map("".join))
def test_runs_whose_id_starts_with_a_prefix_are_those_a_delete_by_prefix_takes(ids: list[str],
                                                                               prefix: str) -> None:
    assume(prefix.strip())
    with _store() as store:
        store.add([RunRecord(run_id=i, weights={"a": 1.0}, fidelity={}, fidelity_key="{}", status="ok")
                   for i in ids])
        want = sorted(i for i in ids if i.startswith(prefix))  # not LIKE's wildcards, not case-folded
        assert sorted(r.run_id for r in store.runs(prefix=prefix)) == want
        code, _, err = _cli("runs", "delete", "--prefix", prefix, "--yes", "--store", str(store.path))
        assert (code == 0) == bool(want), err
        assert sorted(r.run_id for r in store.runs()) == sorted(set(ids) - set(want))


@FAST
@given(data=st.data(), bad=st.sampled_from(["dup-in", "dup-stored", "weights", "nan-weight", "status"]))
def test_a_refused_write_is_one_error_and_leaves_the_store_as_it_was(data: st.DataObject, bad: str) -> None:
    good = [data.draw(records(f"g{i}")) for i in range(data.draw(st.integers(1, 3)))]
    new = [data.draw(records(f"n{i}")) for i in range(2)]
    with _store() as store:
        store.add(good)
        before = _dump(store)
        with pytest.raises(MixoptError) as exc:
            if bad == "dup-in":
                store.add([*new, new[0]])
            elif bad == "dup-stored":
                store.add([*new, good[-1]])
            elif bad == "status":
                store.add([*new, RunRecord(**{**_fields(new[0]), "run_id": "x", "status": "done"})])
            else:
                w = {"a": 0.7, "b": 0.7} if bad == "weights" else {"a": math.nan, "b": 1.0}
                store.add([*new, RunRecord(**{**_fields(new[0]), "run_id": "x", "weights": w})])
        assert "\n" not in str(exc.value)
        assert _dump(store) == before


# ----- bad input to runs import -------------------------------------------------------------

CELLS = st.sampled_from(["0.5", "0.5", "0.25", "0.75", "1", "0", "-1", "", "nan", "NA", "inf", "x", " 0.5",
                         "007", "7", '"0.5"', "20%", "1e-320", "1,5", "True"])
HEADERS = st.sampled_from(["run", "index", "name", "tokens", "step", "a", "b", "*", "^a$", "loss/a", "",
                           "Unnamed: 0", "café", "cafe\u0301", " a", "a"])


@st.composite
def mangled_csv(draw: st.DrawFn) -> str:
    width, rows = draw(st.integers(1, 4)), draw(st.integers(0, 5))
    header = draw(st.lists(HEADERS, min_size=width, max_size=width))
    body = [draw(st.lists(CELLS, min_size=width - 1, max_size=width + 1)) for _ in range(rows)]
    if draw(st.booleans()):
        header = [draw(st.sampled_from(["run", "index"])), *header]
        body = [[str(draw(st.integers(0, 3)) if draw(st.integers(0, 4)) == 0 else i), *r]
                for i, r in enumerate(body)]
    return "\n".join(",".join(r) for r in [header, *body]) + draw(st.sampled_from(["", "\n", "\n\n"]))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ratios=mangled_csv(), metrics=mangled_csv(), args=st.sampled_from([
    [], ["--fidelity", "rung=xs,params=1e6"], ["--search", "grp"], ["--rename", "loss/(.*)=bpb/\\1"],
    ["--tokens-per-step", "1000"], ["--evaluator", "m:f"]]), existing=st.booleans())
def test_a_mangled_import_is_one_error_and_writes_nothing(ratios: str, metrics: str, args: list[str],
                                                          existing: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "r.csv").write_text(ratios, encoding="utf-8")
        (tmp / "m.csv").write_text(metrics, encoding="utf-8")
        path = tmp / "store" / "runs.sqlite"
        if existing:
            RunStore(path).add(RunRecord(run_id="r.csv:0", weights={"a": 1.0}, fidelity={},
                                         fidelity_key="{}"))
        before = _dump(RunStore(path, create=False)) if existing else None
        code, _, err = _cli("runs", "import", "--ratios", str(tmp / "r.csv"), "--metrics", str(tmp / "m.csv"),
                            "--store", str(path), *args)
        assert code in (0, 2), err
        if code == 2:
            assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
            if existing:
                assert _dump(RunStore(path, create=False)) == before
            else:
                assert not (tmp / "store").exists()  # no store, no folder left by a refused import


def test_an_imported_run_without_a_name_is_named_by_its_id(tmp_path: Path) -> None:
    # Found by the export/import property: a blank name cell (or one reading as missing, "NA") was
    # stored as the label 'None', and `runs export` wrote 'None' as the run's name from then on.
    (tmp_path / "r.csv").write_text("run,name,index,a,b\n1,,0,0.5,0.5\n2,NA,1,0.25,0.75\n3,x,2,1,0\n")
    (tmp_path / "m.csv").write_text("run,name,index,loss/a\n1,,0,2.0\n2,NA,1,3.0\n3,x,2,4.0\n")
    store = tmp_path / "runs.sqlite"
    code, _, err = _cli("runs", "import", "--ratios", str(tmp_path / "r.csv"), "--metrics",
                        str(tmp_path / "m.csv"), "--prefix", "t:", "--evaluator", "m:f", "--store",
                        str(store))
    assert code == 0, err
    assert [(r.run_id, r.label) for r in RunStore(store).runs()] == [("t:1", "1"), ("t:2", "2"), ("t:3", "x")]


def test_exported_regmix_runs_fit_as_the_tables_they_were_imported_from(tmp_path: Path) -> None:
    from mixopt.tables import read_run_tables

    runs = Path(__file__).parent / "data" / "runs" / "regmix-pile-1m"
    r, m = runs / "test_mixture_1m.csv", runs / "test_pile_loss_1m.csv"
    store, out = str(tmp_path / "runs.sqlite"), tmp_path / "out"
    assert _cli("runs", "import", "--ratios", str(r), "--metrics", str(m), "--store", store)[0] == 0
    out.mkdir()
    assert _export(Path(store), out)[0] == 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MixoptWarning)
        given_, back = read_run_tables(r, m), read_run_tables(out / "ratios.csv", out / "metrics.csv")
    target = "metric/the_pile_github_val_loss"
    assert [f"test_mixture_1m:{i}" for i in given_.run_ids] == back.run_ids  # in the ids' numeric order
    assert given_.domains == back.domains and (given_.X == back.X).all()
    assert (given_.target(target) == back.target(target)).all()
    code, _, err = _cli("fit", "--ratios", str(out / "ratios.csv"), "--metrics", str(out / "metrics.csv"),
                        "--target", target, "--method", "linear", "--cv", "4")
    assert code == 0, err


def _borrowable_by_scan(pool: list[RunRecord], slots: list, domains: list[str]) -> dict[str, str]:
    """The scan `borrowable` had done before its projection window: each slot's first run, in the
    store's order, of its seed within 1e-9 (max-abs) of its mixture."""
    from mixopt.search.validate import measures

    out = {}
    for s in slots:
        if (r := next((r for r in pool if r.seed == s.seed and measures(r, s, domains)), None)) is not None:
            out[s.key] = r.run_id
    return out


# steps around measures' tolerance: inside, on it, one rounding either side of it, and well outside
_NUDGES = [0.0, 1e-9, -1e-9, 1e-9 * (1 + 2**-52), 1e-9 * (1 - 2**-52), 1.0000001e-9, 9.999999e-10,
           5e-10, -5e-10, 2e-9, 1e-8, 1e-6, 1e-3]


@st.composite
def _borrow_world(draw: st.DrawFn) -> tuple[list[str], list[tuple[int, list[float], str]], list[tuple]]:
    """Runs ``(seed, weights, created)`` and slots ``(seed, weights)`` near a few shared mixtures."""
    n = draw(st.integers(2, 5))
    domains = [f"d{i}" for i in range(n)]
    bases = draw(st.lists(st.lists(st.floats(0, 1), min_size=n, max_size=n), min_size=1, max_size=4))

    def near() -> list[float]:
        base = draw(st.sampled_from(bases))
        return [min(1.0, max(0.0, w + draw(st.sampled_from(_NUDGES)))) for w in base]

    seeds = st.integers(0, 2)
    stamps = st.sampled_from([f"2026-01-01T00:00:0{i}+00:00" for i in range(3)])  # ties in created
    runs = [(draw(seeds), near(), draw(stamps)) for _ in range(draw(st.integers(0, 25)))]
    slots = [(draw(seeds), near()) for _ in range(draw(st.integers(1, 12)))]
    return domains, runs, slots


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(world=_borrow_world())
def test_borrowable_chooses_the_run_the_full_scan_chose(world: tuple) -> None:
    """A scale pass had `borrowable` compare each slot with the runs near it on a projection only:
    the run it chooses must be the one the scan of the whole pool chose (near-duplicates at 1e-9
    give or take a rounding, several seeds, runs of the same mixture and seed in store order)."""
    from types import SimpleNamespace

    from mixopt.objective import Objective
    from mixopt.search.searcher import Slot
    from mixopt.search.validate import borrowable

    domains, runs, slots = world
    pool = [RunRecord(run_id=f"r{i:02d}", search_id="old", weights=dict(zip(domains, w, strict=True)),
                      fidelity={}, fidelity_key="k", status="ok", metrics={f"loss/{d}": 1.0 for d in domains},
                      seed=seed, created=at) for i, (seed, w, at) in enumerate(runs)]
    sl = [Slot(key=f"s{j}", weights=w, seed=seed, role="validate", label="c")
          for j, (seed, w) in enumerate(slots)]
    fake = SimpleNamespace(reusable=lambda **_: pool)  # the store's order is the pool's
    got = borrowable(fake, sl, search_id="me", corpus_hash="h", fidelity_key="k", domains=domains,
                     objective=Objective())
    assert got == _borrowable_by_scan(pool, sl, domains)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(world=_borrow_world())
def test_borrowable_over_a_store_chooses_the_run_the_full_scan_chose(world: tuple) -> None:
    """As above through a real store, whose order (created, then run id) breaks the ties."""
    from mixopt.objective import Objective
    from mixopt.search.searcher import Slot
    from mixopt.search.validate import borrowable

    domains, runs, slots = world
    runs = [(seed, w, at) for seed, w, at in runs if sum(w) > 0]
    with tempfile.TemporaryDirectory() as tmp:
        store = RunStore(Path(tmp) / "s.sqlite")
        recs = [RunRecord(run_id=f"r{len(runs) - i:02d}", search_id="old",  # ids against creation order
                          weights={d: x / sum(w) for d, x in zip(domains, w, strict=True)}, fidelity={},
                          fidelity_key="k", status="ok", corpus_hash="h", seed=seed, created=at,
                          metrics={f"loss/{d}": 1.0 for d in domains})
                for i, (seed, w, at) in enumerate(runs)]
        if recs:
            store.add(recs)
        pool = store.reusable(corpus_hash="h", fidelity_key="k", domains=domains, exclude_search="me")
        # every other slot at a stored run's mixture as the store gives it back
        sl = [Slot(key=f"s{j}", seed=seed, role="validate", label="c",
                   weights=list(pool[j % len(pool)].vector(domains)) if pool and j % 2 else w)
              for j, (seed, w) in enumerate(slots)]
        got = borrowable(store, sl, search_id="me", corpus_hash="h", fidelity_key="k", domains=domains,
                         objective=Objective())
        assert got == _borrowable_by_scan(pool, sl, domains)
