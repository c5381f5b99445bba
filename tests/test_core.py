"""Contracts of the core: mixture, search space, objective, evaluator result, atomic writes."""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mixopt import atomic
from mixopt.errors import MixoptError, MixoptWarning
from mixopt.evaluator import EvalRequest, EvalResult, coerce_result, load_evaluator
from mixopt.mixture import Mixture, normalize_weights, validate_json
from mixopt.objective import Objective
from mixopt.space import SearchSpace

# ----- mixture ------------------------------------------------------------------------------


@given(st.lists(st.floats(0.0, 10.0), min_size=1, max_size=12).filter(lambda v: sum(v) > 1e-3))
def test_normalised_weights_sum_to_one(raw):
    total = sum(raw)
    w = {f"d{i}": v / total * (1 + 5e-4) for i, v in enumerate(raw)}
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MixoptWarning)
        out = normalize_weights(w)
    assert abs(sum(out.values()) - 1) <= 1e-9
    assert set(out) == set(w)  # nothing dropped or invented
    assert all(v >= 0 for v in out.values())


@pytest.mark.parametrize(
    "weights, match",
    [
        ({"a": 0.7, "b": 0.7}, "sum to 1.4"),
        ({"a": -0.1, "b": 1.1}, "negative"),
        ({"a": math.nan, "b": 1.0}, "finite"),
        ({}, "no domains"),
    ],
)
def test_bad_weights_are_refused(weights, match):
    with pytest.raises(MixoptError, match=match):
        Mixture(weights)


def test_small_rounding_is_renormalised_with_warning():
    with pytest.warns(MixoptWarning, match="renormalised"):
        m = Mixture({"a": 0.5004, "b": 0.5})
    assert sum(m.weights.values()) == pytest.approx(1, abs=1e-12)


def test_mixture_json_round_trip(tmp_path):
    m = Mixture(
        {"code": 0.25, "legal": 0.75},
        schedule=((0.5, {"code": 0.25, "legal": 0.75}), (1.0, {"code": 0.5, "legal": 0.5})),
        meta={"method": "regmix", "predicted": {"mean": 2.5, "std": 0.1, "interval": [2.3, 2.7]}},
    )
    path = m.save(tmp_path / "m.json")
    back = Mixture.load(path)
    assert back.weights == m.weights
    assert back.schedule == m.schedule
    assert back.meta["method"] == "regmix"
    assert json.loads(path.read_text())["schema"] == "mixopt.mixture/v1"
    assert back.weights_at(0.2) == {"code": 0.25, "legal": 0.75}
    assert back.weights_at(0.7) == {"code": 0.5, "legal": 0.5}
    assert back.weights_at(0.5) == {"code": 0.5, "legal": 0.5}  # [prev, until): a phase begins at its start
    assert back.weights_at(1.0) == {"code": 0.5, "legal": 0.5}
    # the object read back from its own JSON is the object (to_dict had stamped a new time each call);
    # the saved file is stamped
    assert Mixture.from_dict(json.loads(m.to_json())) == m and "created" not in m.to_dict()
    assert "created" in json.loads(path.read_text()) and "created" in back.meta
    # a schedule given in the JSON's own form, in Python
    json_form = [{"until": u, "weights": w} for u, w in m.schedule]
    assert Mixture(m.weights, schedule=json_form).schedule == m.schedule


@pytest.mark.parametrize(
    "doc, match",
    [
        ({"weights": {"a": 1.0}}, "'schema' is a required property; add \"schema\": \"mixopt.mixture/v1\""),
        ({"schema": "mixopt.mixture/v1", "weights": {"a": "x"}}, "weights/a"),
        ({"schema": "mixopt.mixture/v1", "weights": {}}, "weights"),
        ({"schema": "mixopt.mixture/v2", "weights": {"a": 1.0}}, "schema"),
    ],
)
def test_schema_rejects_bad_documents(doc, match):
    with pytest.raises(MixoptError, match=match):
        validate_json(doc)


def test_schedule_must_increase_and_end_at_one():
    w = {"a": 0.5, "b": 0.5}
    with pytest.raises(MixoptError, match="increase"):
        Mixture(w, schedule=((0.6, w), (0.4, w), (1.0, w)))
    with pytest.raises(MixoptError, match="end at 1.0"):
        Mixture(w, schedule=((0.5, w),))
    # a phase may leave a domain out (no share), not name one the weights lack
    assert Mixture(w, schedule=((0.5, w), (1.0, {"a": 1.0}))).schedule[1][1] == {"a": 1.0, "b": 0.0}
    with pytest.raises(MixoptError, match="phase 2 names c, which the mixture's weights lack; list every"):
        Mixture(w, schedule=((0.5, w), (1.0, {"a": 0.5, "c": 0.5})))
    with pytest.raises(MixoptError, match="differ from the schedule's first phase on a"):
        Mixture({"a": 0.9, "b": 0.1}, schedule=((0.5, {"a": 0.1, "b": 0.9}), (1.0, {"a": 0.1, "b": 0.9})))
    eight, other = {d: 0.125 for d in "abcdefgh"}, {**{d: 0.05 for d in "abcdefg"}, "h": 0.65}
    with pytest.raises(MixoptError, match="first phase on a, b, c, d, e and 3 more; "):
        Mixture(eight, schedule=((0.5, other), (1.0, other)))
    first, then = {"a": 1.0, "b": 0.0}, {"a": 0.0, "b": 1.0}
    sched = Mixture(first, schedule=((0.25, first), (1.0, then)))
    assert sched.mean_weights() == pytest.approx({"a": 0.25, "b": 0.75})


def test_natural_and_temperature_mixtures():
    nat = Mixture.from_tokens({"a": 300, "b": 100})
    assert nat.weights == pytest.approx({"a": 0.75, "b": 0.25})
    hot = Mixture.from_tokens({"a": 300, "b": 100}, temperature=2.0)
    assert hot.weights["a"] < 0.75  # temperature > 1 flattens toward uniform
    # from a library user's QA pass: each of these had a misleading error or none
    with pytest.raises(MixoptError, match="token counts must be finite numbers ≥ 0; got a = -5$"):
        Mixture.from_tokens({"a": -5, "b": 10})  # had become 0 without a word
    with pytest.raises(MixoptError, match="got a = 'many', b = nan$"):
        Mixture.from_tokens({"a": "many", "b": float("nan"), "c": 1})  # a raw ValueError, a review
    with pytest.raises(MixoptError, match="^duplicate domain names: a$"):
        Mixture.uniform(["a", "a"])  # had said "weights sum to 0.5, not 1"
    with pytest.raises(MixoptError, match="^duplicate domain names: a, c; give each name once$"):
        SearchSpace(domains=("a", "b", "a", "c", "c"))  # had printed the whole list as Python's
    with pytest.raises(MixoptError, match="no domains to mix"):
        Mixture.uniform([])  # ZeroDivisionError
    with pytest.raises(MixoptError, match="domains is the string 'ab'"):
        Mixture.uniform("ab")
    with pytest.raises(MixoptError, match=r"phase 1 has keys \['until'\]; a phase is"):
        Mixture({"a": 1.0}, schedule=[{"until": 1.0}])
    with pytest.raises(MixoptError, match="phase 1 is 3; give"):
        Mixture({"a": 1.0}, schedule=[3])


def test_a_saved_mixtures_free_fields_are_strict_json(tmp_path):
    """A QA pass: a NaN, 1e999 or a 400-digit integer (read as inf) in a user's params had been saved
    back as NaN or Infinity, which jq and JavaScript refuse; they are null. A number field of the
    schema keeps its NaN: null there failed the schema, so a search would end without its file."""
    src = tmp_path / "in.json"
    src.write_text('{"schema": "mixopt.mixture/v1", "weights": {"a": 0.5, "b": 0.5}, '
                   f'"params": {{"x": 1e999, "y": NaN, "z": {"9" * 400}, "n": [1, -Infinity]}}}}')
    path = Mixture.load(src).save(tmp_path / "out.json")

    def refuse(constant: str) -> None:
        raise ValueError(constant)

    for text in (path.read_text(), Mixture.load(src).to_json()):
        assert json.loads(text, parse_constant=refuse)["params"] == {"x": None, "y": None, "z": None,
                                                                      "n": [1, None]}
    m = Mixture({"a": 0.5, "b": 0.5}, meta={"predicted": {"mean": float("nan")}})
    assert math.isnan(Mixture.load(m.save(tmp_path / "nan.json")).meta["predicted"]["mean"])


def test_an_empty_mixture_file_name_is_said_as_such(capsys):
    """A QA pass: `mixopt export ''` (a variable left unset) said "mixture file . is a folder"."""
    from mixopt.cli import run_cli

    with pytest.raises(MixoptError, match="the mixture file's name ' ' is blank"):
        Mixture.load(" ")
    assert run_cli(["export", "", "--format", "yaml"]) == 2
    assert "the mixture file's name is empty" in capsys.readouterr().err


def test_load_reports_missing_and_broken_files(tmp_path):
    with pytest.raises(MixoptError, match="does not exist"):
        Mixture.load(tmp_path / "nope.json")
    with pytest.raises(MixoptError, match="is a folder; give the path to a mixture JSON"):
        Mixture.load(tmp_path)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(MixoptError, match="not valid JSON"):
        Mixture.load(bad)
    cut = tmp_path / "cut.json"
    cut.write_text('{"a": 0.5,\n "b": "x')  # truncated mid-string: json says "starting at"
    with pytest.raises(MixoptError, match=r"Unterminated string starting at line 2$"):
        Mixture.load(cut)
    bom = tmp_path / "bom.json"  # saved by a Windows editor: the BOM is not JSON, the rest is
    bom.write_bytes(b"\xef\xbb\xbf" + b'{"schema": "mixopt.mixture/v1", "weights": {"a": 0.5, "b": 0.5}}')
    assert Mixture.load(bom).weights == {"a": 0.5, "b": 0.5}
    twice = tmp_path / "twice.json"  # json itself keeps the last "a" without a word
    twice.write_text('{"schema": "mixopt.mixture/v1", "weights": {"a": 0.2, "b": 0.5, "a": 0.5}}')
    with pytest.raises(MixoptError, match=r"twice.json names 'a' twice in one object; give it once"):
        Mixture.load(twice)


def test_an_inline_mixture_naming_a_domain_twice_is_refused():
    from mixopt.proxy.job import mixture_from_spec

    with pytest.raises(MixoptError, match="mixture 'code=0.3,code=0.5,math=0.5' names 'code' twice; give"):
        mixture_from_spec("code=0.3,code=0.5,math=0.5", corpus=None)


def test_a_mixture_that_is_a_folder_is_named_so(tmp_path):
    """A QA pass: train/proxy train --mixture FOLDER had the generic "is not 'natural', ..." line."""
    from mixopt.proxy.job import mixture_from_spec

    with pytest.raises(MixoptError, match=r"is a folder; give a mixture JSON file in it, such as .*mixture"):
        mixture_from_spec(str(tmp_path), corpus=None)


# ----- search space ------------------------------------------------------------------------


def test_space_bounds_include_repetition_cap():
    space = SearchSpace(
        domains=("a", "b", "c"), tokens={"a": 1e6, "b": 1e8, "c": 1e8}, max_epochs=2, target_tokens=1e7,
        min_weight=0.01, ceilings={"b": 0.6}, fixed={"c": 0.3},
    )
    lo, hi = space.bounds()
    assert hi[0] == pytest.approx(0.2)  # 2 epochs × 1e6 / 1e7
    assert hi[1] == pytest.approx(0.6)
    assert lo[2] == hi[2] == pytest.approx(0.3)
    assert space.contains([0.15, 0.55, 0.3])
    assert not space.contains([0.3, 0.4, 0.3])
    assert "above ceiling" in space.violations([0.3, 0.4, 0.3])[0]
    assert space.epochs([0.15, 0.55, 0.3])["a"] == pytest.approx(1.5)
    rows = np.array([[0.15, 0.55, 0.3], [0.3, 0.4, 0.3]])
    assert space.contains_rows(rows).tolist() == [True, False]


def test_a_mixture_repeating_a_small_domain_is_said_without_a_cap():
    space = SearchSpace(domains=("big", "small"), tokens={"big": 1e6, "small": 1e3}, target_tokens=1.001e6)
    note = space.repetition_note([0.5, 0.5])  # 500,500 tokens of a 1,000-token domain
    assert note is not None and "repeats small 500.5 times (epochs)" in note and "--max-epochs 4" in note
    assert space.repetition_note([0.999, 0.001]) is None
    capped = SearchSpace(domains=("big", "small"), tokens={"big": 1e6, "small": 1e3}, max_epochs=4,
                         target_tokens=1e6)
    assert capped.repetition_note([0.996, 0.004]) is None


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(fixed={"a": 0.6, "b": 0.6}), "sum to 1.2"),
        (dict(ceilings={"a": 0.2, "b": 0.2, "c": 0.2}), r"sum to 0.6 < 1 \(--max-weight a=0.2, b=0.2"),
        (dict(floors={"a": 0.5}, ceilings={"a": 0.4}), "no feasible weight"),
        # a fixed weight pins the bounds, so the ceiling, floor or cap it breaks is checked on its own
        (dict(fixed={"a": 0.2}, ceilings={"a": 0.1}), "fixed at 0.2, outside its ceiling 0.1"),
        (dict(fixed={"a": 0.05}, floors={"a": 0.1}), "fixed at 0.05, outside its floor 0.1"),
        (dict(fixed={"a": 0.5}, tokens={"a": 10, "b": 100, "c": 100}, max_epochs=1, target_tokens=100),
         "outside its repetition cap 0.1"),
        (dict(floors={"zz": 0.1}), "unknown domain"),
        (dict(tokens={"a": float("inf"), "b": 1, "c": 1}), "domain 'a' is inf; give a finite number > 0"),
        (dict(tokens={"a": -5, "b": 1, "c": 1}), "domain 'a' is -5; give a finite number > 0"),
        # the swarm drew around a prior of 0 and the proposal left it out, yet the best run gave it 48%
        (dict(tokens={"a": 0, "b": 1, "c": 1}), "domain .a. is 0; give a finite number > 0 .a domain with"),
        (dict(min_weight=1.5), "min-weight"),
        (dict(target_tokens=float("inf")), "--target-tokens is inf; it must be a finite number > 0"),
        (dict(max_epochs=float("nan")), "--max-epochs is nan; it must be a finite number > 0"),
    ],
)
def test_infeasible_spaces_name_the_conflict(kwargs, match):
    with pytest.raises(MixoptError, match=match):
        SearchSpace(domains=("a", "b", "c"), **kwargs)


# ----- objective -----------------------------------------------------------------------------


def test_objective_mean_weighted_and_target():
    metrics = {"loss/a": 2.0, "loss/b": 4.0, "bpb/a": 1.0, "bpb/b": 3.0}
    assert Objective().value(metrics, ["a", "b"]) == pytest.approx(3.0)
    assert Objective.parse("a=3,b=1").value(metrics, ["a", "b"]) == pytest.approx(2.5)
    assert Objective.parse("b").value(metrics, ["a", "b"]) == pytest.approx(4.0)
    assert Objective(metric="bpb").value(metrics, ["a", "b"]) == pytest.approx(2.0)
    assert math.isnan(Objective().value({"loss/a": 2.0}, ["a", "b"]))
    assert Objective.parse("a").key() != Objective().key()
    # `fit --target mean`'s word for the mean over all domains (it had been "unknown domain(s) mean")
    assert Objective.parse(" mean ") == Objective()
    assert Objective.parse("mean", "bpb") == Objective(metric="bpb")
    with pytest.warns(MixoptWarning, match="not the domain named mean; give --target mean=1"):
        Objective.say_if_mean_is_a_domain(" mean", ["a", "mean"])
    assert Objective.parse("mean=1").metric_weights(["a", "mean"]) == {"loss/mean": 1.0}
    with pytest.raises(MixoptError, match="unknown domain"):
        Objective.parse("zz").value(metrics, ["a", "b"])
    with pytest.raises(MixoptError, match="≥ 0 and finite, got b=-1"):
        Objective.parse("a=2,b=-1")
    with pytest.raises(MixoptError, match="all 0"):
        Objective.parse("a=0,b=0")
    # weights too large to add up (a QA pass: the sum was inf, every weight 0, every run's objective 0)
    assert Objective.parse("a=1e308,b=1e308").metric_weights(["a", "b"]) == {"loss/a": 0.5, "loss/b": 0.5}
    assert Objective.parse("a=1e308,b=1e308").value(metrics, ["a", "b"]) == pytest.approx(3.0)
    # some names weighted and others not: `a=0.5,b` had read b as 1, a as a third (a QA pass); a stored
    # search's target reads as it did when it began
    for text, bare in (("a=0.5,b", "'b'"), ("a, b=2,c", "'a', 'c'")):
        with pytest.raises(MixoptError, match=f"weights some domains and not {bare}; give every domain a "
                                              "weight"):
            Objective.parse(text)
    assert Objective.parse("a=0.5,b", stored=True).weights == {"a": 0.5, "b": 1.0}


# ----- evaluator contract --------------------------------------------------------------------


def test_coerce_result_accepts_dicts_and_flags_divergence():
    r = coerce_result({"loss/a": 2.0}, cost=1.5)
    assert r.status == "ok" and r.metrics == {"loss/a": 2.0} and r.cost == 1.5
    r = coerce_result({"metrics": {"loss/a": float("inf")}, "cost": 3})
    assert r.status == "diverged" and "loss/a" in r.error
    # a cost of 0, however written, is none: the measured wall time (a review caught a mutation pass
    # that took the second fallback, for "0", for dead code)
    for zero in (0, 0.0, "0", "0.0", None):
        assert coerce_result({"metrics": {"loss/a": 2.0}, "cost": zero}, cost=12.5).cost == 12.5
    # only the objective's metrics decide: an unread NaN is left out and named
    r = coerce_result({"loss/a": 2.0, "mmlu": float("nan")}, needed={"loss/a"})
    assert r.status == "ok" and r.metrics == {"loss/a": 2.0} and "left out" in r.error and "mmlu" in r.error
    r = EvalResult(metrics={"loss/a": 2.0, "mmlu": float("nan")}, error="slow node")
    r = coerce_result(r, needed={"loss/a"})
    assert r.error.endswith("mmlu; slow node")  # the evaluator's own words kept
    r = coerce_result({"loss/a": float("nan"), "mmlu": float("nan")}, needed={"loss/a"})
    assert r.status == "diverged" and r.error == "non-finite metrics: loss/a, mmlu"
    r = coerce_result(EvalResult(metrics={}, status="failed", error="boom"))
    assert r.status == "failed"
    with pytest.raises(MixoptError, match="no metrics"):
        coerce_result({})
    with pytest.raises(MixoptError, match="returned list"):
        coerce_result([1, 2])
    # An EvalResult's fields are checked as a dict's are (a QA pass: they reached the store unchecked)
    ok = {"loss/a": 2.0}
    cases = ((EvalResult(metrics=ok, status="succeeded"), "status 'succeeded'; use one of ok, diverged"),
             (EvalResult(metrics=None), "returned metrics of type NoneType; give a dict"),
             ({"metrics": ok, "cost": "1m30s"}, "returned cost '1m30s'; give the run's cost as a number"),
             (EvalResult(metrics=ok, history="abc"), "history that is not a list of checkpoint dicts"),
             # a table's column could not carry these names (a QA pass: runs export, then import)
             ({"loss/a": 2.0, "": 1.0}, "returned a metric named ''; name metrics with printable text"),
             ({"loss/a": 2.0, " acc ": 1.0}, "returned a metric named ' acc '"),
             ({"loss/a": 2.0, "acc\nx": 1.0}, "returned a metric named 'acc\\nx'"))
    for bad, said in cases:
        with pytest.raises(MixoptError, match=re.escape(said)):
            coerce_result(bad)
    assert coerce_result({"metrics": ok, "history": ({"tokens": t} for t in (1, 2))}).history == [
        {"tokens": 1}, {"tokens": 2}]  # any iterable of dicts, as list() took it



def test_a_failed_run_needs_no_metrics_and_a_flat_dict_holds_metrics_alone():
    """A QA pass: {"status": "failed", "error": "OOM"} had its status read as a metric and stopped the
    search; a flat dict's "cost" was stored as a metric; None, True and "1.5" as metrics; cost -5."""
    for failed in ({"status": "failed", "error": "OOM on node 3"}, {"metrics": None, "status": "failed"},
                   EvalResult(metrics=None, status="failed", error="boom")):
        r = coerce_result(failed, cost=2.0)
        assert (r.status, r.metrics, r.cost) == ("failed", {}, 2.0)
    said = coerce_result({"status": "diverged"}).error  # had been "first error: no error recorded"
    assert said == "evaluator returned status 'diverged' with no error text"
    with pytest.raises(MixoptError, match=r"returned 'status', 'cost' among its metrics; return \{'metrics'"):
        coerce_result({"loss/a": 2.0, "cost": 30.0, "status": "ok"})
    r = coerce_result({"loss/a": 2.0, "acc/a": None}, needed={"loss/a"})  # as NaN: left out, named
    assert r.status == "ok" and r.metrics == {"loss/a": 2.0} and "acc/a" in r.error
    assert coerce_result({"loss/a": None}, needed={"loss/a"}).status == "diverged"
    for v in (True, "1.5"):
        with pytest.raises(MixoptError, match="evaluator metric 'loss/a' is (bool|str) .*not a number"):
            coerce_result({"loss/a": v})
    for cost in (-5.0, float("inf"), float("nan"), True):
        with pytest.raises(MixoptError, match="evaluator returned cost"):
            coerce_result({"metrics": {"loss/a": 2.0}, "cost": cost})


def test_request_reads_as_mapping():
    req = EvalRequest(mixture={"a": 1.0}, fidelity={"rung": "xs"}, seed=3, run_id="r1", workdir="/tmp")
    assert req["seed"] == 3 and dict(req)["run_id"] == "r1"
    # the whole read-only mapping (a QA pass: `in`, get() and iteration had raised TypeError or
    # AttributeError, so an evaluator calling request.get(...) failed every run)
    assert "seed" in req and 0 not in req and "nope" not in req
    assert list(req) == ["mixture", "fidelity", "seed", "run_id", "workdir"] and len(req) == 5
    assert req.get("workdir") == "/tmp" and req.get("nope", 5) == 5
    with pytest.raises(KeyError):
        req["nope"]
    with pytest.raises(KeyError):
        req["__class__"]  # an attribute, not a field


def test_load_evaluator_errors(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "myeval.py").write_text("def evaluate(req):\n    return {'loss/a': 1.0}\n")
    fn = load_evaluator("myeval:evaluate")
    assert fn(None) == {"loss/a": 1.0}
    with pytest.raises(MixoptError, match="module:function"):
        load_evaluator("myeval")
    with pytest.raises(MixoptError, match="cannot import"):
        load_evaluator("no_such_module_xyz:evaluate")
    with pytest.raises(MixoptError, match="has no 'missing'"):
        load_evaluator("myeval:missing")


# ----- atomic writes -------------------------------------------------------------------------


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.json"
    with pytest.raises(RuntimeError), atomic.atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []
    atomic.write_json(target, {"a": 1})
    assert json.loads(target.read_text()) == {"a": 1}


def test_atomic_dir_replaces_only_on_success(tmp_path):
    target = tmp_path / "built"
    with atomic.atomic_dir(target) as tmp:
        (tmp / "f").write_text("v1")
    with pytest.raises(RuntimeError), atomic.atomic_dir(target) as tmp:
        (tmp / "f").write_text("v2")
        raise RuntimeError("crash")
    assert (target / "f").read_text() == "v1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["built"]
    link = tmp_path / "link"  # a folder linked elsewhere (another disk): rewritten there, the link kept
    link.symlink_to(target)
    with atomic.atomic_dir(link) as tmp:
        (tmp / "f").write_text("v3")
    assert link.is_symlink() and (target / "f").read_text() == "v3"
    (tmp_path / "file").write_text("x")
    with pytest.raises(MixoptError, match="a file is in its place"), atomic.atomic_dir(tmp_path / "file"):
        pass
    assert (tmp_path / "file").read_text() == "x"


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_folder_is_a_user_error(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    with pytest.raises(MixoptError, match="not writable"):
        atomic.write_text(ro / "x.txt", "x")


def test_unwritable_path_under_a_file_is_a_user_error(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(MixoptError, match="cannot create folder"):
        atomic.write_text(Path(f) / "sub" / "x.txt", "x")



def test_writing_onto_a_folder_is_a_user_error(tmp_path):
    with pytest.raises(MixoptError, match="is a folder"):
        atomic.write_text(tmp_path, "x")
    with pytest.raises(MixoptError, match="--out .* is a folder; give a file path"):
        atomic.check_writable(tmp_path)
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(MixoptError, match="--predict .*file, not a folder"):
        atomic.check_writable(f / "sub" / "p.csv", what="--predict")
    assert atomic.check_writable(tmp_path / "new" / "m.json") == (tmp_path / "new" / "m.json").resolve()
    # "new/" as typed names a folder (Path("new/") would be a file called new); "-" is no stdout
    with pytest.raises(MixoptError, match=r"--out .*new/ names a folder \(it ends with '/'"):
        atomic.check_writable(f"{tmp_path}/new/")
    with pytest.raises(MixoptError, match="--out .* is a folder; give a file path such as .*mixture.json"):
        atomic.check_writable(f"{tmp_path}/.")  # an existing folder: the message with a file name in it
    with pytest.raises(MixoptError, match="--out '-' is not stdout here; give a file path"):
        atomic.check_writable("-")
    # nothing is created: a command that fails after the check leaves no empty folder behind
    assert not (tmp_path / "new").exists() and not list(tmp_path.glob(".write.*"))
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.access(ro, os.W_OK):
            return  # root writes anywhere: the probe cannot fail here
        with pytest.raises(MixoptError, match="cannot write in"):
            atomic.check_writable(ro / "deep" / "m.json")  # a missing folder under a read-only one
    finally:
        ro.chmod(0o700)


def test_written_files_get_the_modes_open_would_give(tmp_path):
    """mkstemp makes 0600 files: an exported mixture must stay readable to a job run by another user."""
    old = os.umask(0o022)
    try:
        atomic.write_text(tmp_path / "m.json", "{}")
        with atomic.atomic_dir(tmp_path / "report") as d:
            (d / "r.md").write_text("x")
        existing = tmp_path / "kept.yaml"
        existing.write_text("a")
        existing.chmod(0o640)
        atomic.write_text(existing, "b")
    finally:
        os.umask(old)
    assert (tmp_path / "m.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "report").stat().st_mode & 0o777 == 0o755
    assert existing.stat().st_mode & 0o777 == 0o640 and existing.read_text() == "b"

@settings(max_examples=30)
@given(st.integers(2, 8), st.floats(0.0, 0.1))
def test_space_uniform_is_inside_when_floors_allow(n, floor):
    space = SearchSpace(domains=tuple(f"d{i}" for i in range(n)), min_weight=min(floor, 0.99 / n))
    assert space.contains(np.full(n, 1.0 / n))


def test_best_row_is_the_best_finite_run_inside_the_space():
    space = SearchSpace(domains=("a", "b"), ceilings={"a": 0.5})
    W = np.array([[0.9, 0.1], [0.4, 0.6], [0.3, 0.7], [0.2, 0.8]])
    y = np.array([1.0, 3.0, np.nan, 2.0])
    assert space.best_row(W, y) == 3  # row 0 is better but breaks the ceiling; row 2 is NaN
    assert space.best_row(W[:1], y[:1]) is None


def test_assignments_refuse_non_finite_values_and_a_name_given_twice():
    from mixopt.search.config import parse_assignments

    assert parse_assignments("a=1e9,b=2", option="--tokens") == {"a": 1e9, "b": 2.0}
    with pytest.raises(MixoptError, match="--tokens: value 'inf' of 'a' is not finite"):
        parse_assignments("a=inf", option="--tokens")
    with pytest.raises(MixoptError, match=r"--tokens gives a twice \(1 and 2\)"):
        parse_assignments("a=1,a=2", option="--tokens")
    # token counts as `--tokens` takes them elsewhere (train, proxy train): 4k, 2M, 1.5B
    assert parse_assignments("a=4k,b=2M,c=1.5B,d=1_000,e=2.01M", option="--tokens", counts=True) == {
        "a": 4e3, "b": 2e6, "c": 1.5e9, "d": 1e3, "e": 2010000.0}
    with pytest.raises(MixoptError, match=r"value '4x' of 'a' is not a count \(e\.g\. 4e9, 500M, 200k\)"):
        parse_assignments("a=4x", option="--tokens", counts=True)
    with pytest.raises(MixoptError, match="is not a number"):  # weights take no suffix: 0.5k is no share
        parse_assignments("a=0.5k", option="--fix")
    # capped as every other count option is (2**70 tokens had been taken): at the cap and past it
    assert parse_assignments("a=1e15", option="--tokens", counts=True) == {"a": 1e15}
    with pytest.raises(MixoptError, match=r"'1180591620717411303424' of 'a' is more than 1e\+15 tokens"):
        parse_assignments(f"a={2**70}", option="--tokens", counts=True)
    with pytest.raises(MixoptError, match="more than 1e"):
        parse_assignments("a=1000000000000001", option="--tokens", counts=True)


def test_a_write_goes_through_a_symlink_and_never_replaces_a_device_or_pipe(tmp_path):
    target = tmp_path / "real" / "m.json"
    target.parent.mkdir()
    target.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    atomic.write_text(link, "new")
    assert link.is_symlink() and target.read_text() == "new"  # the link stays, its file is written
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for path in (fifo, Path("/dev/null")):
        with pytest.raises(MixoptError, match="is not a regular file"):
            atomic.check_writable(path)
        with pytest.raises(MixoptError, match="is not a regular file"):
            atomic.write_text(path, "x")
    assert fifo.exists() and not fifo.is_file() and Path("/dev/null").is_char_device()


def test_atomic_dir_sweeps_what_a_killed_build_left(tmp_path):
    """kill -9 mid-build leaves `.built.<host>-<pid>.*.tmp` (GBs for a corpus); the next build of the
    same folder removes it once its process is gone, and leaves a live process's and another host's."""
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    me = atomic._owner()
    host = me.rsplit("-", 1)[0]
    orphan = tmp_path / f".built.{host}-{dead}.abc.tmp"
    live = tmp_path / f".built.{host}-{os.getppid()}.def.tmp"  # pytest's parent: alive
    other = tmp_path / f".built.elsewhere-{dead}.ghi.tmp"
    for d in (orphan, live, other):
        (d / "shard").mkdir(parents=True)
    with atomic.atomic_dir(tmp_path / "built") as tmp:
        assert tmp.name.startswith(f".built.{me}.")
        (tmp / "f").write_text("v1")
    assert not orphan.exists() and live.exists() and other.exists()


def test_a_file_write_killed_midway_leaves_a_copy_the_next_write_sweeps(tmp_path):
    """A QA pass: kill -9 inside atomic_path (an export, a search's checkpoint or result, a trainer's
    checkpoint of hundreds of MB) left `.<name>.<random>.tmp` beside the file for good. Its copy is
    named by its process, and the next write of that file removes a dead process's (not a live one's)."""
    import signal
    import subprocess
    import sys

    target = tmp_path / "out.json"
    code = ("import sys, time; from mixopt import atomic\n"
            "with atomic.atomic_path(sys.argv[1]) as tmp:\n"
            "    tmp.write_text('half')\n    print('writing', flush=True)\n    time.sleep(60)\n")
    writer = subprocess.Popen([sys.executable, "-c", code, str(target)], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "writing"
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    left = [p.name for p in tmp_path.iterdir()]
    assert len(left) == 1 and left[0].startswith(".out.json.") and left[0].endswith(".tmp")
    host = atomic._owner().rsplit("-", 1)[0]
    live = tmp_path / f".out.json.{host}-{os.getppid()}.abc.tmp"  # pytest's parent: alive, writing
    live.write_text("theirs")
    atomic.write_json(target, {"a": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["out.json", live.name])
    assert json.loads(target.read_text()) == {"a": 1}


def test_the_sweep_matches_its_own_file_whole(tmp_path):
    """A review: the sweep globbed `.<name>.<host>-*.tmp`, so a name's `[1]` was a character class (a
    killed write of `mix[1].json` was never swept), and the copy of `out.json.<host>-<pid>`, a file
    whose name goes on, read as `out.json`'s of that pid, and a live writer's copy was removed."""
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    host = atomic._owner().rsplit("-", 1)[0]
    orphan = tmp_path / f".mix[1].json.{host}-{dead}.abc.tmp"
    orphan.write_text("half")
    atomic.write_text(tmp_path / "mix[1].json", "whole")
    assert not orphan.exists() and (tmp_path / "mix[1].json").read_text() == "whole"
    # a live writer (pytest's parent) of the file `out.json.<host>-<dead>`
    theirs = tmp_path / f".out.json.{host}-{dead}.{host}-{os.getppid()}.def.tmp"
    theirs.write_text("being written")
    atomic.write_text(tmp_path / "out.json", "{}")
    assert theirs.exists()


def test_no_process_is_signalled_to_tell_if_it_is_alive_on_windows(monkeypatch):
    """A review: on Windows os.kill(pid, 0) is no check: signal 0 is CTRL_C_EVENT there, a console Ctrl+C,
    and every file write now sweeps. There the sweep leaves the copies, as before."""
    sent: list[tuple[int, int]] = []

    def kill(pid: int, sig: int) -> None:
        sent.append((pid, sig))
        raise ProcessLookupError

    monkeypatch.setattr(atomic.os, "kill", kill)
    monkeypatch.setattr(atomic.os, "name", "nt")
    dead = atomic._dead("999999")
    monkeypatch.undo()
    assert not dead and sent == []


def test_a_killed_builds_previous_version_is_put_back_or_removed(tmp_path):
    """A QA pass: a kill between atomic_dir's two renames made a corpus vanish (its previous version
    left as `.name.old`, listed as a corpus of its own). Only a dead process's is touched, and a
    corpus the user deleted afterwards is not brought back (the review)."""
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    host = atomic._owner().rsplit("-", 1)[0]
    path = tmp_path / "built"
    old, tmp = tmp_path / f".built.{host}-{dead}.old", tmp_path / f".built.{host}-{dead}.x1.tmp"
    (old / "shard").mkdir(parents=True)  # killed after `path → old`, before `tmp → path`
    (tmp / "shard").mkdir(parents=True)
    atomic.sweep_leftovers(path)
    assert (path / "shard").is_dir() and not old.exists() and not tmp.exists()  # put back, tmp swept
    (old / "shard").mkdir(parents=True)  # killed after `tmp → path`, before removing old
    atomic.sweep_leftovers(path)
    assert path.is_dir() and not old.exists()
    import shutil

    shutil.rmtree(path)  # ... and the user then deleted the corpus: it stays deleted
    (old / "shard").mkdir(parents=True)
    atomic.sweep_leftovers(path)
    assert not path.exists() and not old.exists()
    live = tmp_path / f".built.{host}-{os.getppid()}.old"  # a live build's, mid-rename: left alone
    live.mkdir()
    atomic.sweep_leftovers(path)
    assert live.is_dir() and not path.exists()


def test_leftovers_of_another_users_process_or_of_a_gone_folder_are_kept(tmp_path, monkeypatch):
    """A mutation pass: the tests had passed with each of these changed: the legacy `.name.old` removed
    where `name` is gone (its only copy); another user's live process (EPERM) taken for dead; a write
    refused as too large (EFBIG) left unnamed."""
    import errno

    host = atomic._owner().rsplit("-", 1)[0]
    path = tmp_path / "built"
    legacy = tmp_path / ".built.old"  # mixopt before 2026-12-06: killed between the renames
    (legacy / "shard").mkdir(parents=True)
    atomic.sweep_leftovers(path)
    assert (legacy / "shard").is_dir()

    def eperm(pid: int, sig: int) -> None:
        raise PermissionError(errno.EPERM, "Operation not permitted")

    theirs = tmp_path / f".built.{host}-1.y.tmp"
    theirs.mkdir()
    monkeypatch.setattr(atomic.os, "kill", eperm)
    atomic.sweep_leftovers(path)
    assert theirs.is_dir()
    with pytest.raises(OSError) as big, atomic.atomic_path(tmp_path / "out.json"):
        raise OSError(errno.EFBIG, "File too large")
    assert big.value.errno == errno.EFBIG and big.value.filename == str(tmp_path / "out.json")


def test_the_machine_refusing_a_write_is_named_as_such(tmp_path, monkeypatch):
    """A QA pass: a full disk ended every writing command in a traceback, each library in its own
    words (numpy, tokenizers, torch, SQLite)."""
    import errno
    import sqlite3

    from mixopt.errors import as_os_error, environment_message

    for said in (OSError("1217025 requested and 305152 written"),  # numpy's tofile
                 Exception("No space left on device (os error 28)"),  # tokenizers
                 sqlite3.OperationalError("database or disk is full")):
        err = as_os_error(said)
        assert err is not None and err.errno == errno.ENOSPC
    assert as_os_error(Exception("File too large (os error 27)")).errno == errno.EFBIG
    assert as_os_error(ValueError("a bad weight")) is None
    # only those types and words (the review): another error that mentions one is not the machine's
    assert as_os_error(RuntimeError("trial failed on node 10.0.0.7: … (os error 13)")) is None
    assert environment_message(PermissionError(errno.EPERM, "Operation not permitted")) is None  # no path
    assert "(the workspace's, --out's or --store's disk, /dev/shm)" in environment_message(
        OSError(errno.ENOSPC, "No space left on device"))[0]  # no path: inotify, /dev/shm, a disk
    line, code = environment_message(OSError(errno.ENOSPC, "No space left on device", "/data/x"))
    assert code == 1 and line.startswith("no space left on the device (/data/x): free some")
    assert environment_message(OSError(errno.EROFS, "Read-only file system", "/ro"))[1] == 2
    # a write into an atomic path: the file named, whatever the writer said
    with pytest.raises(OSError) as full, atomic.atomic_path(tmp_path / "out.json"):
        raise OSError("10 requested and 3 written")
    assert full.value.errno == errno.ENOSPC and full.value.filename == str(tmp_path / "out.json")
    assert list(tmp_path.iterdir()) == []  # nothing half-written
    # and a full disk is refused before the work, though an empty probe file still fits on it
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(OSError) as early:
        atomic.check_writable(tmp_path / "m.json")
    assert early.value.errno == errno.ENOSPC
    with pytest.raises(OSError) as before_mkdir:  # refused before the folder is made (no empty folders)
        atomic.check_writable_dir(tmp_path / "new" / "run")
    assert before_mkdir.value.errno == errno.ENOSPC and not (tmp_path / "new").exists()
    # ... but a bug, or a refusal of input, inside a write on that disk is still itself (the review)
    with pytest.raises(KeyError), atomic.atomic_path(tmp_path / "out.json"):
        {}["missing"]
    with pytest.raises(MixoptError, match="bad input"), atomic.atomic_dir(tmp_path / "built"):
        raise MixoptError("bad input")
    # and a file system that reports no sizes (FUSE, pseudo) is not full
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(0, 0, 0))
    atomic.check_writable(tmp_path / "m.json")


def test_a_full_disk_is_one_line_from_the_cli(tmp_path, monkeypatch, capsys):
    import errno

    import mixopt.search.imports as imports
    from mixopt.cli import main

    def full(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "runs.sqlite"))

    monkeypatch.setattr(imports, "import_table", full)
    monkeypatch.setenv("MIXOPT_HOME", str(tmp_path))
    with pytest.raises(SystemExit) as done:
        main(["runs", "import", "--ratios", "r.csv", "--metrics", "m.csv"])
    err = capsys.readouterr().err
    assert done.value.code == 1 and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"error: no space left on the device ({tmp_path / 'runs.sqlite'})")


def test_a_domain_the_corpus_lacks_is_named_with_its_blanks():
    """A QA pass: a mixture's domain " code" was named as "lacks:  code", its blank invisible."""
    from mixopt.mixture import check_domains

    with pytest.raises(MixoptError, match=r"the corpus lacks: ' code'; known domains are: code, web$"):
        check_domains({" code": 0.5, "web": 0.5}, ["code", "web"])
