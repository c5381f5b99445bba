"""Properties of mixopt's input readers and round trips: a mixture's JSON, the exports, run tables, and
the option parsers either give back exactly what was written or refuse it with one MixoptError."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import re
import tempfile
import unicodedata
import warnings
from pathlib import Path

import numpy as np
import pytest
import typer
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from mixopt.cli.common import parse_count
from mixopt.errors import MixoptError, MixoptWarning
from mixopt.export import FORMATS, NEGLIGIBLE_WEIGHT, export_mixture, parse_export
from mixopt.mixture import Mixture, is_pattern
from mixopt.objective import Objective
from mixopt.search.config import parse_assignments, parse_domains, parse_fidelity
from mixopt.tables import read_ratios, read_run_tables

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Names a training job could use: any printable text (Unicode, spaces, punctuation), no control
# characters or lone surrogates, not blank; and a few that look like other things to YAML or a shell.
NAME_CHARS = st.characters(blacklist_categories=("Cc", "Zl", "Zp", "Cs"))
ODD_NAMES = ["null", "true", "1.5", "~", "yes", "a: b", "-x", "#x", "x*", "[a]", "&a", "'q'", '"q"', "a=b",
             "café", "cafe\u0301", " lead", "trail ", "\u00a0x", "x\u200b", "train_web", "web", "a b", "a/b"]
NAMES = (st.text(NAME_CHARS, min_size=1, max_size=40).filter(lambda s: s.strip() and not is_pattern(s))
         | st.sampled_from(ODD_NAMES))  # ^…$ is refused: polars reads it as a pattern (see tables)
WEIGHTS = st.floats(0, 1) | st.just(0.0) | st.floats(1e-300, 1e-6) | st.sampled_from([5e-324, 1e-9, 2e-9])


def _nfc(name: str) -> str:
    return unicodedata.normalize("NFC", name)


@st.composite
def mixtures(draw: st.DrawFn, min_size: int = 1) -> Mixture:
    names = draw(st.lists(NAMES, min_size=min_size, max_size=6, unique_by=_nfc))
    raw = draw(st.lists(WEIGHTS, min_size=len(names), max_size=len(names)))
    assume(sum(raw) > 0)
    total = sum(raw)
    return Mixture({d: w / total for d, w in zip(names, raw, strict=True)})


# ----- mixture JSON -------------------------------------------------------------------------


@FAST
@given(mix=mixtures(), phases=st.integers(0, 3))
def test_a_mixture_round_trips_exactly_through_its_dict_and_its_file(mix: Mixture, phases: int) -> None:
    if phases:  # the same weights over `phases` phases: a schedule round-trips as well
        mix = Mixture(mix.weights, [((i + 1) / phases, mix.weights) for i in range(phases)])
    again = Mixture.from_dict(json.loads(json.dumps(mix.to_dict())))
    assert again.weights == mix.weights and list(again.weights) == list(mix.weights)
    assert again.schedule == mix.schedule
    with tempfile.TemporaryDirectory() as tmp:
        read = Mixture.load(mix.save(Path(tmp) / "m.json"))
    assert read.weights == mix.weights and list(read.weights) == list(mix.weights)  # bit for bit, in order
    assert read.schedule == mix.schedule


@FAST
@given(mix=mixtures(min_size=2),
       bad=st.sampled_from(["negative", "nan", "inf", "sum", "empty", "blank", "twice", "text", "surrogate"]))
def test_a_bad_mixture_is_one_mixopt_error(mix: Mixture, bad: str) -> None:
    w = dict(mix.weights)
    first = next(iter(w))
    if bad == "negative":
        w[first] = -max(w[first], 1e-3)
    elif bad in ("nan", "inf"):
        w[first] = float(bad)
    elif bad == "sum":
        w = {d: v * 1.5 for d, v in w.items()}
    elif bad in ("empty", "blank"):
        w["" if bad == "empty" else " \u3000"] = w.pop(first)
    elif bad == "twice":  # one name in two Unicode spellings: the same name in every table
        w = {"caf\u00e9": 0.5, "cafe\u0301": 0.5}
    elif bad == "text":
        w[first] = "0.5"
    else:
        w[first + "\ud800"] = w.pop(first)
    doc = {"schema": "mixopt.mixture/v1", "weights": w}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MixoptWarning)
        if bad != "text":  # in Python, "0.5" is read as the number (the schema refuses it in a file)
            with pytest.raises(MixoptError):
                Mixture(w)
        with pytest.raises(MixoptError):
            Mixture.from_dict(doc)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "m.json"
            path.write_text(json.dumps(doc), encoding="utf-8")  # NaN as JSON's NaN, \ud800 as its escape
            with pytest.raises(MixoptError):
                Mixture.load(path)


def test_a_lone_surrogate_in_a_domain_name_is_refused_when_the_mixture_is_read(tmp_path: Path) -> None:
    # Found by the properties above: JSON's "\ud800" escape loaded as half a UTF-16 pair, and every
    # export but yaml ended in a UnicodeEncodeError as it wrote its file.
    path = tmp_path / "m.json"
    path.write_text('{"schema": "mixopt.mixture/v1", "weights": {"web\\ud800": 0.5, "code": 0.5}}')
    with pytest.raises(MixoptError, match=r"domain name 'web\\ud800' holds a lone surrogate"):
        Mixture.load(path)
    # ^…$: its runs' export would be a table that fit and runs import refuse (the review)
    with pytest.raises(MixoptError, match=r"domain name '\^a\$' begins with '\^' and ends with '\$'"):
        Mixture({"^a$": 0.5, "b": 0.5})


# ----- exports ------------------------------------------------------------------------------


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mix=mixtures(), fmt=st.sampled_from(FORMATS))
def test_every_export_reads_back_as_the_mixture_or_is_refused(mix: Mixture, fmt: str) -> None:
    try:
        text = export_mixture(mix, fmt)
    except MixoptError as exc:  # a name the format cannot carry: said in one line, nothing written
        assert "\n" not in str(exc)
        return
    text.encode("utf-8")  # the file can be written
    back = parse_export(text, fmt, domains=list(mix.weights))
    if fmt in ("olmix", "olmix-mix"):  # every domain, as it is
        assert back == mix.weights and list(back) == list(mix.weights)
        return
    kept = {d: w for d, w in mix.weights.items() if w > NEGLIGIBLE_WEIGHT}
    assert {d for d, w in back.items() if w > 0} == set(kept)  # zeros left out of the blend, read back as 0
    if fmt == "hf":  # the probabilities left are renormalised to sum to 1
        total = sum(kept.values())
        assert all(math.isclose(back[d], w / total, rel_tol=1e-12) for d, w in kept.items())
        assert sum(back.values()) == pytest.approx(1.0, abs=1e-12)
    else:  # megatron and yaml: written with repr, read back bit for bit
        assert all(back[d] == w for d, w in kept.items())
    if fmt == "megatron":  # argparse's words: one weight and one prefix each, none an option
        words = text.split()
        assert len(words) == 2 * len(kept) and not any(w.startswith("-") for w in words[1::2])
    if fmt == "yaml":  # RegMix globs <key>*: no key written may begin another domain's key
        import yaml

        keys = list(yaml.safe_load(text)["train"])
        every = ["train_" + d.removeprefix("train_") for d in mix.weights]
        assert not [(k, o) for k in keys for o in every if o != k and o.startswith(k)]


def test_a_yaml_key_that_would_glob_a_left_out_domains_files_is_refused() -> None:
    # Found by the property above: a weight-0 domain is left out of train:, but its files are in the
    # data folder, and RegMix's glob('train_code*') read them (code_py's) into code's set.
    weight0 = "of weight 0: left out of train:, but its files are in the data folder"  # (the review)
    with pytest.raises(MixoptError, match=r"'train_code' \(domain 'code'\) would read the files of "
                                          rf"'train_code_py' \(domain 'code_py' {weight0}\)"):
        export_mixture(Mixture({"code": 0.5, "web": 0.5, "code_py": 0.0}), "yaml")
    with pytest.raises(MixoptError, match=rf"domains 'code' and 'train_code' \('train_code' {weight0}\) "
                                          "would both be RegMix's train: "):
        export_mixture(Mixture({"code": 0.5, "web": 0.5, "train_code": 0.0}), "yaml")
    # a left-out domain that only a prefix of a kept one is (its own glob is not written): fine
    assert "train_code_py: 0.5" in export_mixture(Mixture({"code": 0.0, "code_py": 0.5, "web": 0.5}), "yaml")


# ----- run tables ---------------------------------------------------------------------------

TABLE_NAMES = st.text(NAME_CHARS, min_size=1, max_size=8).filter(
    lambda s: s == s.strip() and s not in ("run", "name", "index", "tokens", "step")
    and not s.startswith("Unnamed:") and not (s.startswith("^") and s.endswith("$")))


def _csv(header: list[str], rows: list[list[object]], *, bom: bool, crlf: bool, quote: bool,
         blank_end: bool) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n" if crlf else "\n",
                        quoting=csv.QUOTE_ALL if quote else csv.QUOTE_MINIMAL)
    writer.writerow(header)
    writer.writerows(rows)
    text = buf.getvalue() + ("\r\n" if crlf else "\n") * blank_end
    return (b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8")


@st.composite
def run_tables(draw: st.DrawFn) -> dict:
    nd, nm, n = draw(st.integers(2, 4)), draw(st.integers(1, 3)), draw(st.integers(1, 6))
    cols = draw(st.lists(TABLE_NAMES | st.just("*"), min_size=nd + nm, max_size=nd + nm, unique_by=_nfc))
    kind = draw(st.sampled_from(["int", "padded", "text"]))
    if kind == "int":
        ids = draw(st.lists(st.integers(-5, 10**20), min_size=n, max_size=n, unique=True))
    elif kind == "padded":  # 007 in the ratios, 7 in the metrics: one run
        ids = [f"{i:03d}" for i in draw(st.lists(st.integers(0, 999), min_size=n, max_size=n, unique=True))]
    else:
        ids = draw(st.lists(st.from_regex(r"[A-Za-z\u00e9\u4e00][\w\- .:\u00e9]{0,5}", fullmatch=True).filter(
            lambda s: s == s.strip() and s not in ("NA", "nan", "null", "inf")), min_size=n, max_size=n,
            unique=True))
    W = []
    for _ in range(n):
        raw = draw(st.lists(WEIGHTS, min_size=nd, max_size=nd).filter(lambda r: sum(r) > 0))
        W.append([v / sum(raw) for v in raw])
    M = [draw(st.lists(st.floats(-1e6, 1e6), min_size=nm, max_size=nm)) for _ in range(n)]
    return {"domains": cols[:nd], "metrics": cols[nd:], "key": draw(st.sampled_from(["run", "index"])),
            "ids": ids, "W": W, "M": M, "order": draw(st.permutations(range(n))),
            "unpad": kind == "padded" and draw(st.booleans()),
            "style": {k: draw(st.booleans()) for k in ("bom", "crlf", "quote", "blank_end")}}


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(t=run_tables())
def test_run_tables_join_exactly_what_was_written(t: dict) -> None:
    key, ids = t["key"], t["ids"]
    metric_id = (lambda i: str(int(i))) if t["unpad"] else str
    with tempfile.TemporaryDirectory() as tmp:
        ratios, metrics = Path(tmp) / "ratios.csv", Path(tmp) / "metrics.csv"
        ratios.write_bytes(_csv([key, *t["domains"]], [[i, *map(repr, w)] for i, w in zip(ids, t["W"],
                                                                                         strict=True)],
                                **t["style"]))
        metrics.write_bytes(_csv([key, *t["metrics"]], [[metric_id(ids[k]), *map(repr, t["M"][k])]
                                                        for k in t["order"]], **t["style"]))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MixoptWarning)
            table = read_run_tables(ratios, metrics)
            alone = read_ratios(ratios)

    # an index column is numbers (007 is 7); a run column is text, as written
    def shown(i: object) -> str:
        return str(int(i)) if key == "index" and re.fullmatch(r"-?\d{1,18}", str(i)) else str(i)

    assert table.run_ids == [shown(i) for i in ids] == alone[0]
    assert list(table.domains) == t["domains"] and table.metric_names == t["metrics"]
    for j, (w, m) in enumerate(zip(t["W"], t["M"], strict=True)):  # the ratios' rows, in their order
        w = np.array(w)
        assert np.array_equal(table.X[j], w / (w.sum() if abs(w.sum() - 1) > 1e-12 else 1.0))
        assert [table.metrics[c][j] for c in t["metrics"]] == m
    assert np.array_equal(alone[2], table.X)


CELLS = st.sampled_from(["0.5", "0.5", "0.25", "0.75", "1", "0", "2", "-1", "", "nan", "NA", "inf", "1e400",
                         "x", "0.5 ", "1.0", "007", "7", "True", '"0.5"', "20%", "1e-320", "-0",
                         "99999999999999999999999", "0.333", "0.667", "1,5"])
HEADERS = st.sampled_from(["run", "index", "name", "tokens", "step", "_step", "a", "b", "*", "^a$", "loss",
                           "", "Unnamed: 0", "seed", "café", "cafe\u0301", "loss/a", " a", "a"])


@st.composite
def mangled_csv(draw: st.DrawFn) -> str:
    width, rows = draw(st.integers(1, 5)), draw(st.integers(0, 6))
    header = draw(st.lists(HEADERS, min_size=width, max_size=width))
    body = [draw(st.lists(CELLS, min_size=width - 1, max_size=width + 1)) for _ in range(rows)]
    if draw(st.booleans()):  # a run id column most of the time, ids repeated now and then
        header = [draw(st.sampled_from(["run", "index"])), *header]
        body = [[str(draw(st.integers(0, 3)) if draw(st.integers(0, 4)) == 0 else i), *r]
                for i, r in enumerate(body)]
    end = draw(st.sampled_from(["\n", "\r\n"]))
    return (draw(st.sampled_from(["", "\ufeff"])) + end.join(",".join(r) for r in [header, *body])
            + draw(st.sampled_from(["", end, end + end, end + " ,"])))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ratios=mangled_csv(), metrics=mangled_csv())
def test_a_mangled_run_table_is_read_or_refused_in_one_line(ratios: str, metrics: str) -> None:
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", MixoptWarning)
        r, m = Path(tmp) / "r.csv", Path(tmp) / "m.csv"
        r.write_text(ratios, encoding="utf-8")
        m.write_text(metrics, encoding="utf-8")
        for read in (lambda: read_run_tables(r, m), lambda: read_ratios(r)):
            try:
                table = read()
            except MixoptError as exc:
                assert "\n" not in str(exc)
                continue
            if not isinstance(table, tuple):  # a joined table: its targets are numbers or one error
                for target in [*table.metric_names, "mean"]:
                    with contextlib.suppress(MixoptError):
                        table.target_rows(target)


def test_a_column_named_like_a_polars_pattern_is_read_by_its_name(tmp_path: Path) -> None:
    # Found by the properties above: polars reads a column name `*` as every column, and ^…$ as a
    # pattern; a domain named `*` had ended the read in polars' DuplicateError.
    (tmp_path / "r.csv").write_text("run,*,b\n1,0.5,0.5\n2,0.25,0.75\n")
    (tmp_path / "m.csv").write_text("run,loss\n1,2.0\n2,3.0\n")
    table = read_run_tables(tmp_path / "r.csv", tmp_path / "m.csv")
    assert table.domains == ("*", "b") and table.X.tolist() == [[0.5, 0.5], [0.25, 0.75]]
    assert table.target("loss").tolist() == [2.0, 3.0]
    (tmp_path / "r.csv").write_text("run,a,^a.*$\n1,0.5,0.5\n2,0.25,0.75\n")  # had been an IndexError
    with pytest.raises(MixoptError, match=r"column '\^a\.\*\$' begins with '\^' and ends with '\$'"):
        read_run_tables(tmp_path / "r.csv", tmp_path / "m.csv")


# ----- option parsers -----------------------------------------------------------------------

SCALES = {"": 1, "k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9, "B": 10**9}


@FAST
@given(n=st.integers(1, 10**6), suffix=st.sampled_from(list(SCALES)), form=st.sampled_from(["plain", "e",
                                                                                             "comma", "_"]))
def test_a_count_reads_back_as_written(n: int, suffix: str, form: str) -> None:
    text = {"plain": str(n), "e": f"{n}e0", "comma": f"{n:,}", "_": f"{n:_}"}[form] + suffix
    assert parse_count(text) == n * SCALES[suffix]


PARSER_TEXT = (st.lists(st.sampled_from(list("0123456789.,=eE+-_kKmMgGbB xa:/\t'\"#@é\u00a0")
                                        + ["inf", "nan", "1e999", "Infinity", "sNaN", "١", "１"]),
                        max_size=14).map("".join)
               | st.text(max_size=14))


@settings(max_examples=300, deadline=None)
@given(text=PARSER_TEXT)
def test_option_parsers_give_a_value_or_one_usage_error(text: str) -> None:
    try:
        n = parse_count(text)
        assert isinstance(n, int) and n >= 1
    except typer.BadParameter:
        pass
    for parse in (lambda: parse_assignments(text, option="--fix", files=False),
                  lambda: parse_assignments(text, option="--tokens", counts=True, files=False),
                  lambda: parse_fidelity(text), lambda: parse_domains(text), lambda: Objective.parse(text)):
        with contextlib.suppress(MixoptError):
            parse()


@FAST
@given(pairs=st.dictionaries(st.from_regex(r"[a-z][a-z0-9_:/.\-]{0,8}", fullmatch=True).filter(
    lambda d: d != "tokens"),
                             st.floats(0, 1e12) | st.integers(0, 10**12), min_size=1, max_size=5))
def test_assignments_and_targets_read_back_as_written(pairs: dict) -> None:
    text = ", ".join(f"{d} = {v!r}" for d, v in pairs.items())
    want = {d: float(v) for d, v in pairs.items()}
    assert parse_assignments(text, option="--max-weight", files=False) == want
    assert parse_assignments(text, option="--tokens", counts=True, files=False) == want
    if sum(want.values()) > 0:
        assert dict(Objective.parse(text).weights) == want
    fidelity = parse_fidelity(",".join(f"{d}={v!r}" for d, v in pairs.items()))
    assert fidelity == {d: v for d, v in pairs.items()}  # numbers stay numbers, ints ints


def test_a_count_with_a_decimal_comma_is_refused() -> None:
    # Found by the properties above: a comma was dropped wherever it stood, so 1,5B (a decimal
    # comma) was 15 billion tokens, and 1,00 was 100.
    for text in ("1,5B", "1,00", "2,5k", "1,0000", ",100"):
        with pytest.raises(typer.BadParameter, match="a comma in a count separates thousands"):
            parse_count(text)
    assert parse_count("1,000,000") == 1_000_000 and parse_count("1,500k") == 1_500_000

