"""Exporters round-trip, name domains through prefixes, and the export CLI refuses bad mixtures."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from mixopt.cli import run_cli
from mixopt.errors import MixoptError, MixoptWarning
from mixopt.export import FORMATS, export_mixture, export_notes, parse_export
from mixopt.mixture import Mixture

MIX = Mixture({"web": 0.5, "code": 0.3, "dclm:adult_content": 0.2}, meta={"method": "regmix"})


@st.composite
def mixtures(draw: st.DrawFn) -> Mixture:
    n = draw(st.integers(2, 8))
    names = draw(st.lists(st.from_regex(r"[a-z][a-z0-9_:\-]{0,12}", fullmatch=True), min_size=n, max_size=n,
                          unique=True))
    raw = draw(st.lists(st.floats(1e-6, 1.0), min_size=n, max_size=n))
    total = sum(raw)
    return Mixture({d: w / total for d, w in zip(names, raw, strict=True)})


@settings(max_examples=30, deadline=None)
@given(mix=mixtures(), fmt=st.sampled_from(FORMATS))
def test_round_trip_is_exact(mix: Mixture, fmt: str) -> None:
    if fmt == "yaml":  # RegMix globs <key>*: keys where one begins another are refused (tested below)
        keys = sorted("train_" + d.removeprefix("train_") for d in mix.weights)
        assume(not any(b.startswith(a) for a, b in zip(keys, keys[1:], strict=False)))
    back = parse_export(export_mixture(mix, fmt), fmt, domains=list(mix.weights))
    assert back == mix.weights  # repr keeps every bit
    assert list(back) == list(mix.weights)  # and the order


def test_formats_look_like_what_each_tool_reads() -> None:
    pre = {"web": "/data/web_text_document", "code": "/data/code_text_document"}
    meg = export_mixture(MIX, "megatron", pre)
    assert meg == "0.5 /data/web_text_document 0.3 /data/code_text_document 0.2 dclm:adult_content\n"
    hf = json.loads(export_mixture(MIX, "hf", pre))
    assert hf["datasets"][0] == "/data/web_text_document" and hf["domains"] == list(MIX.weights)
    assert sum(hf["probabilities"]) == pytest.approx(1.0, abs=1e-12)
    ol = json.loads(export_mixture(MIX, "olmix"))
    assert ol[0] == {"domain": "web", "weight": 0.5}
    import yaml

    third = 1 / 3
    valid = {"valid_web": third, "valid_code": third, "valid_dclm:adult_content": third}
    train = {f"train_{d}": w for d, w in MIX.weights.items()}  # RegMix's file prefixes: train_<name>
    assert yaml.safe_load(export_mixture(MIX, "yaml")) == {"train": train, "valid": valid}
    assert parse_export(export_mixture(MIX, "yaml"), "yaml", domains=list(MIX.weights)) == MIX.weights
    assert parse_export(meg, "megatron", pre) == MIX.weights


def test_regmix_yaml_has_the_valid_section_regmix_trainer_deletes() -> None:
    """RegMix's trainer runs ``del config["valid"]``: the section is always there, named valid_*."""
    import yaml

    objective = {"kind": "mean", "metric": "loss", "weights": {"train_the_pile_pile_cc": 2.0}}
    weights = {"train_the_pile_pile_cc": 0.7, "train_the_pile_github": 0.3}
    mix = Mixture(weights, meta={"objective": objective})
    doc = yaml.safe_load(export_mixture(mix, "yaml"))
    assert doc["valid"] == {"valid_the_pile_pile_cc": 1.0}
    # a --prefix names the training data, not the validation set
    prefixed = yaml.safe_load(export_mixture(mix, "yaml", {"train_the_pile_pile_cc": "data/train_cc"}))
    assert prefixed["valid"] == {"valid_the_pile_pile_cc": 1.0} and "data/train_cc" in prefixed["train"]
    assert "objective's domains" in export_notes(mix, "yaml")[0]
    doc = yaml.safe_load(export_mixture(mix, "yaml", valid={"valid_a": 0.5, "valid_b": 0.5}))
    assert doc["valid"] == {"valid_a": 0.5, "valid_b": 0.5}
    assert export_notes(mix, "yaml", {"valid_a": 1}) == []
    # what RegMix's tinyllama.py does with the file
    config = yaml.safe_load(export_mixture(MIX, "yaml"))
    train = [(k, float(v)) for k, v in config["train"].items()]
    del config["train"]
    del config["valid"]
    assert dict(train) == {f"train_{d}": w for d, w in MIX.weights.items()}
    with pytest.raises(MixoptError, match="yaml format only"):
        export_mixture(mix, "hf", valid={"valid_a": 1.0})
    with pytest.raises(MixoptError, match="finite and > 0"):
        export_mixture(mix, "yaml", valid={"valid_a": 0.0})


def test_megatron_leaves_out_zero_weights_and_says_so() -> None:
    mix = Mixture({"a": 0.6, "b": 0.0, "c": 0.4})
    text = export_mixture(mix, "megatron")
    assert text == "0.6 a 0.4 c\n"
    said = ["left out of the Megatron blend (weight 0, at most 1e-09): b"]
    bare = ("no --prefix: the blend names each domain as a data prefix relative to where Megatron runs; "
            "give --prefix domain=/path/to/domain_text_document")
    assert export_notes(mix, "megatron") == [*said, bare]
    assert export_notes(mix, "megatron", prefixes={"a": "/d/a", "c": "/d/c"}) == said
    assert parse_export(text, "megatron", domains=["a", "b", "c"]) == {"a": 0.6, "c": 0.4, "b": 0.0}
    tiny = Mixture({"a": 0.6, "b": 2.3e-11, "c": 0.4 - 2.3e-11})  # a top-k average's zero
    assert " b" not in export_mixture(tiny, "megatron")
    assert export_notes(tiny, "megatron") == [*said, bare]
    # HF: a dataset never drawn never runs out (all_exhausted would not stop); the rest sum to 1
    hf = json.loads(export_mixture(tiny, "hf"))
    assert hf["domains"] == ["a", "c"] and sum(hf["probabilities"]) == pytest.approx(1.0, abs=1e-15)
    assert export_notes(tiny, "hf") == ["left out of the datasets to interleave (weight 0, at most 1e-09): b"]
    assert parse_export(export_mixture(mix, "hf"), "hf", domains=["a", "b", "c"]) == {"a": 0.6, "c": 0.4,
                                                                                      "b": 0.0}
    # Prefixes for some domains only: the others are named, not silently written bare.
    assert export_notes(mix, "megatron", prefixes={"a": "/data/a_text_document"})[1] == (
        "no --prefix for c: written as the bare domain name(s)")
    for fmt in ("olmix", "olmix-mix"):  # every format names its domains by --prefix
        assert "no --prefix for c: written as the bare domain name(s)" in export_notes(
            mix, fmt, prefixes={"a": "web"})
    assert "no --prefix for c: written as train_<domain>" in export_notes(mix, "yaml", prefixes={"a": "web"})
    # x and train_x are both RegMix's set train_x: refused, where the names as given had been written
    # (RegMix's glob of `x*` reads none of a train_x_* data folder's files)
    both = Mixture({"x": 0.3, "train_x": 0.3, "z": 0.4})
    with pytest.raises(MixoptError, match="domains 'x' and 'train_x' would both be RegMix's train: set "
                                          "'train_x'; give one its data file prefix with --prefix, e.g. "
                                          "--prefix 'train_x=train_train_x'"):
        export_mixture(both, "yaml", prefixes={"z": "zz"})
    # the example works whatever the order, and with a --prefix behind the clash (the review)
    for mix, pre in ((Mixture({"train_x": 0.5, "x": 0.5}), {}),
                     (Mixture({"a": 0.5, "b": 0.5}), {"a": "train_b"})):
        with pytest.raises(MixoptError, match="would both be") as refused:
            export_mixture(mix, "yaml", prefixes=pre)
        d, key = re.search(r"--prefix '(.+)=(.+)'", str(refused.value)).groups()
        assert "train:" in export_mixture(mix, "yaml", prefixes={**pre, d: key})
    assert "train_x: 0.3\n  train_y: 0.3" in export_mixture(both, "yaml", prefixes={"train_x": "train_y"})
    fitted = Mixture({"a": 0.5, "c": 0.5}, meta={"objective": {"kind": "metric", "metric": "metric/x_loss"}})
    assert "(the objective, metric/x_loss, names no domain)" in export_notes(fitted, "yaml")[0]
    # A fit on RegMix's Pile-CC column: its valid set is that domain's, as RegMix's own regmix.yaml
    cc = Mixture({"train_the_pile_pile_cc": 0.6, "train_the_pile_github": 0.4},
                 meta={"objective": {"kind": "metric", "metric": "metric/the_pile_pile_cc_val_loss"}})
    import yaml

    assert yaml.safe_load(export_mixture(cc, "yaml"))["valid"] == {"valid_the_pile_pile_cc": 1.0}
    # --target mean on RegMix's table: the measured domains' sets (13 of its 17), not every domain
    weights = {"train_the_pile_pile_cc": 0.5, "train_the_pile_github": 0.3, "train_the_pile_europarl": 0.2}
    mean = Mixture(weights,
                   meta={"objective": {"kind": "mean", "metric": "mean", "weights": {}, "columns": {
                       "metric/the_pile_pile_cc_val_loss": 0.5, "metric/the_pile_github_val_loss": 0.5}}})
    assert yaml.safe_load(export_mixture(mean, "yaml"))["valid"] == {"valid_the_pile_pile_cc": 0.5,
                                                                     "valid_the_pile_github": 0.5}


def test_bad_exports() -> None:
    with pytest.raises(MixoptError, match="unknown; choose one of megatron"):
        export_mixture(MIX, "csv")
    with pytest.raises(MixoptError, match="lacks"):
        export_mixture(MIX, "hf", {"books": "x"})
    with pytest.raises(MixoptError, match="domains web and code would both be exported as 'code'"):
        export_mixture(MIX, "hf", {"web": "code"})
    with pytest.raises(MixoptError, match="spaces"):
        export_mixture(MIX, "megatron", {"web": "/my data/web"})
    # RegMix's train: keys are file prefixes: a domain's own space or '/' needs a --prefix (a QA pass)
    odd = Mixture({"web text": 0.5, "code/python": 0.5 - 1e-12, "math": 1e-12})
    said = (r"domain\(s\) 'web text', 'code/python' would give one with a space or '/'; give each its data "
            r"file prefix, e.g. --prefix 'web text=train_web_text'")
    with pytest.raises(MixoptError, match=said):
        export_mixture(odd, "yaml")
    pre = {"web text": "data/train_web", "code/python": "data/train_py"}
    text = export_mixture(odd, "yaml", pre)
    import yaml

    assert list(yaml.safe_load(text)["train"]) == ["data/train_web", "data/train_py"]  # 1e-12: left out
    assert parse_export(text, "yaml", pre, domains=list(odd.weights))["math"] == 0.0
    assert "left out of RegMix's train: sets (weight 0, at most 1e-09): math" in export_notes(odd, "yaml",
                                                                                              prefixes=pre)
    # a domain left out needs no prefix; one named train_x is not suggested train_train_x (the review)
    assert "train_web" in export_mixture(Mixture({"web": 0.5, "code": 0.5, "my data": 0.0}), "yaml")
    with pytest.raises(MixoptError, match=r"--prefix 'train_my data=train_my_data'"):
        export_mixture(Mixture({"train_web": 0.5, "train_my data": 0.5}), "yaml")
    sched = Mixture({"a": 0.5, "b": 0.5}, schedule=((0.5, {"a": 0.5, "b": 0.5}), (1.0, {"a": 1.0, "b": 0.0})))
    with pytest.raises(MixoptError, match="2 phases"):
        export_mixture(sched, "olmix")
    # one phase to the end is not a change during training: exported as its weights
    one = Mixture({"a": 0.25, "b": 0.75, "c": 0.0}, schedule=((1.0, {"a": 0.25, "b": 0.75}),))
    assert json.loads(export_mixture(one, "hf"))["probabilities"] == [0.25, 0.75]
    with pytest.raises(MixoptError, match="cannot parse"):
        parse_export("0.5 a 0.5", "megatron")


def test_export_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str], workspace: Path) -> None:
    path = MIX.save(tmp_path / "mix.json")
    assert run_cli(["export", str(path), "--format", "megatron", "--prefix", "web=/d/web"]) == 0
    assert capsys.readouterr().out == "0.5 /d/web 0.3 code 0.2 dclm:adult_content\n"
    out = tmp_path / "[v2]" / "blend[final].yaml"
    assert run_cli(["export", str(path), "--format", "yaml", "--out", str(out)]) == 0
    assert parse_export(out.read_text(), "yaml", domains=list(MIX.weights)) == MIX.weights
    # said as it is: rich's markup had eaten "[v2]" and "[final]" out of the path (a QA pass's find)
    assert f"wrote {out}" in " ".join(capsys.readouterr().err.split())
    # writing the export over the mixture it reads is refused, and the mixture survives
    assert run_cli(["export", str(path), "--format", "yaml", "-o", str(path)]) == 2
    assert "is the mixture file this command reads" in capsys.readouterr().err
    assert Mixture.load(path).weights == MIX.weights
    # nor over a run store: `--out .mixopt/runs.sqlite` had replaced every search's runs (a QA pass)
    from mixopt.store import RunStore

    store = RunStore().path
    kept = store.read_bytes()
    assert run_cli(["export", str(path), "--format", "olmix", "-o", str(store)]) == 2
    said = f"error: --out {store} is a SQLite database (a run store?), which this command would replace whole"
    assert capsys.readouterr().err == said + "; write to another path\n"
    assert store.read_bytes() == kept
    # nor over its side files (a review): a running search's WAL holds the runs it has not yet checkpointed
    for suffix in ("wal", "shm", "journal"):
        side = Path(f"{store}-{suffix}")
        assert run_cli(["export", str(path), "--format", "olmix", "-o", str(side)]) == 2
        assert capsys.readouterr().err == (f"error: --out {side} is the {suffix} file of the SQLite database "
                                           f"{store} (a run store?), which this command would replace; write "
                                           "to another path\n")
        assert not side.exists()


def test_export_cli_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str], workspace: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"schema": "mixopt.mixture/v1", "weights": {"a": 1.5, "b": -0.5}}))
    out = tmp_path / "o.txt"
    cases = [
        (["export", str(bad), "--format", "hf", "--out", str(out)], "fails the mixture schema"),
        (["export", str(tmp_path / "none.json"), "--format", "hf"], "does not exist"),
        (["export", str(MIX.save(tmp_path / "m.json")), "--format", "csv", "--out", str(out)], "csv"),
        (["export", str(tmp_path / "m.json"), "--format", "hf", "--prefix", "web"], "domain=path"),
        (["export", str(tmp_path / "m.json"), "--format", "hf", "--out", str(tmp_path / "m.json" / "x")],
         "is a file, not a folder"),
        (["export", str(tmp_path / "m.json"), "--format", "hf", "--out", str(tmp_path)], "is a folder"),
    ]
    for args, match in cases:
        assert run_cli(args) == 2
        err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
        assert len(err) == 1 and match in err[0], (args, err)
        assert not out.exists()


def test_prefixes_take_the_comma_form_and_refuse_a_domain_twice() -> None:
    from mixopt.export import parse_prefixes

    doms = ["code", "math", "web"]
    assert parse_prefixes(["code=/a,math=/b", "web=/x,y"], doms) == {"code": "/a", "math": "/b",
                                                                     "web": "/x,y"}
    with pytest.raises(MixoptError, match="gives 'code' twice"):
        parse_prefixes(["code=/a", "code=/b"], doms)
    # a comma begins a pair only before a domain and '=' (a QA pass: all of it had gone to code)
    assert parse_prefixes(["code=/x,math=/y,z"], doms) == {"code": "/x", "math": "/y,z"}
    assert parse_prefixes([" code = /a , math=/b"], doms) == {"code": "/a", "math": "/b"}
    # names with '=' or blanks of their own are matched whole: the error's own example had failed
    assert parse_prefixes(["a=b=/data/ab", "a=/data/a"], ["a", "a=b"]) == {"a=b": "/data/ab", "a": "/data/a"}
    assert parse_prefixes(["web =/data/w"], ["web ", "c"]) == {"web ": "/data/w"}
    with pytest.raises(MixoptError, match=r"names domain\(s\) books the mixture lacks; its domains are "
                                          r"'web ', c"):
        parse_prefixes(["books=/b"], ["web ", "c"])
    with pytest.raises(MixoptError, match="is not of the form domain=path"):
        parse_prefixes(["/data/web"], doms)
    with pytest.raises(MixoptError, match="gives 'web' no path"):
        parse_prefixes(["web= "], doms)


def test_export_refuses_names_its_consumers_would_misread() -> None:
    # RegMix globs <key>*: train_code would read train_code_py's files too (a QA pass)
    clash = Mixture({"code": 0.5, "code_py": 0.5})
    with pytest.raises(MixoptError, match=r"so 'train_code' \(domain 'code'\) would read the files of "
                                          r"'train_code_py' \(domain 'code_py'\) too"):
        export_mixture(clash, "yaml")
    with pytest.raises(MixoptError, match="would read the files"):  # a --prefix that begins another too
        export_mixture(Mixture({"a": 0.5, "b": 0.5}), "yaml", prefixes={"a": "data/x", "b": "data/x2"})
    assert "train_code_all" in export_mixture(clash, "yaml", prefixes={"code": "train_code_all"})
    from mixopt.export import parse_prefixes

    with pytest.raises(MixoptError, match=r"--prefix names domain\(s\) cafe\u0301 the mixture lacks; .*"
                                          r"spelt in another Unicode form"):
        parse_prefixes(["cafe\u0301=/x"], ["caf\u00e9", "b"])
    globbed = Mixture({"s*": 0.5, "c[1]": 0.5})
    with pytest.raises(MixoptError, match=r"domain\(s\) 's\*', 'c\[1\]' have glob characters .* "
                                          r"--prefix 's\*=train_s_'"):
        export_mixture(globbed, "yaml")
    # a --prefix that is a pattern (a docs audit: train_c* and train_l? were written as keys)
    with pytest.raises(MixoptError, match=r"--prefix 'a=train_c\*' holds a glob character .*plain prefix"):
        export_mixture(Mixture({"a": 0.5, "b": 0.5}), "yaml", prefixes={"a": "train_c*"})
    # Megatron's argparse takes a word beginning with '-' for an option
    dash = Mixture({"-neg": 0.5, "c": 0.5})
    with pytest.raises(MixoptError, match=r"begin with '-': '-neg'; .* "
                                          r"--prefix '-neg=/data/neg_text_document'"):
        export_mixture(dash, "megatron")
    assert export_mixture(dash, "megatron", prefixes={"-neg": "/d/neg"}) == "0.5 /d/neg 0.5 c\n"
    # HF's all_exhausted runs about rows / p draws: a tiny probability is said
    tiny = Mixture({"a": 1 - 2e-8, "b": 2e-8})
    assert any("b's probability is 2e-08: with stopping_strategy=\"all_exhausted\"" in n
               for n in export_notes(tiny, "hf"))
    assert not any("probability" in n for n in export_notes(MIX, "hf"))


def test_a_megatron_prefix_with_a_space_is_refused_with_the_option_that_fixes_it() -> None:
    spaced = Mixture({"web text": 0.5, "code": 0.5})
    with pytest.raises(MixoptError, match=r"contain spaces or begin with '-': 'web text'; give each its "
                                          r"data prefix, e\.g\. "
                                          r"--prefix 'web text=/data/web_text_text_document'"):
        export_mixture(spaced, "megatron")
    fixed = export_mixture(spaced, "megatron", prefixes={"web text": "/data/web_text_text_document"})
    assert fixed.startswith("0.5 /data/web_text_text_document")


def test_olmix_launch_mix_section_carries_the_repetition_cap() -> None:
    import yaml

    capped = Mixture({"dclm:a": 0.75, "b": 0.25}, meta={"params": {"constraints": {"max_epochs": 4.0}}})
    doc = yaml.safe_load(export_mixture(capped, "olmix-mix"))
    assert doc == {"mix": {"dclm:a": {"weight": 0.75, "repetition_factor": 4.0},
                           "b": {"weight": 0.25, "repetition_factor": 4.0}}}
    assert export_notes(capped, "olmix-mix") == []
    plain = Mixture({"a": 0.5, "b": 0.5})
    assert yaml.safe_load(export_mixture(plain, "olmix-mix"))["mix"]["a"]["repetition_factor"] == 1.0
    assert "repetition_factor 1.0 (Olmix's default" in export_notes(plain, "olmix-mix")[0]
    assert parse_export(export_mixture(capped, "olmix-mix"), "olmix-mix") == capped.weights
    # a domain the mixture needs more passes over at its target budget (as a search records them)
    # gets that factor, rounded up: with 1.0 Olmix could not build the mix
    tokens = {"target_tokens": 4.0e7, "epochs": {"a": 5.4981, "b": 0.2, "c": "hand-edited"}}
    needy = Mixture({"a": 0.75, "b": 0.25}, meta={"tokens": tokens})
    doc = yaml.safe_load(export_mixture(needy, "olmix-mix"))["mix"]
    assert (doc["a"]["repetition_factor"], doc["b"]["repetition_factor"]) == (5.5, 1.0)
    notes = export_notes(needy, "olmix-mix")
    assert notes[0] == ("repetition_factor raised to the passes the mixture needs at its target budget "
                        "(40,000,000 tokens): a 5.5")
    assert notes[1].startswith("repetition_factor 1.0 (Olmix's default: no repetition) for the other domains")
    capped_needy = Mixture(needy.weights, meta={**needy.meta, **capped.meta})
    assert yaml.safe_load(export_mixture(capped_needy, "olmix-mix"))["mix"]["b"]["repetition_factor"] == 4.0
    # weights edited by hand after the search: the passes follow them (the domain's size is its tokens
    # at the budget over its passes), not the recorded passes of the weights before (a QA pass)
    a_size = 0.75 * 4.0e7 / 5.4981
    searched = {"target_tokens": 4.0e7, "per_domain": {"a": 3.0e7, "b": 1.0e7},
                "epochs": {"a": 5.4981, "b": 0.2}}
    assert yaml.safe_load(export_mixture(Mixture({"a": 0.75, "b": 0.25}, meta={"tokens": searched}),
                                         "olmix-mix"))["mix"]["a"]["repetition_factor"] == 5.5
    edited = yaml.safe_load(export_mixture(Mixture({"a": 0.4, "b": 0.6}, meta={"tokens": searched}),
                                           "olmix-mix"))
    assert edited["mix"]["a"]["repetition_factor"] == math.ceil(0.4 * 4.0e7 / a_size * 100) / 100 == 2.94
    assert edited["mix"]["b"]["repetition_factor"] == 1.0  # 0.6 of 4e7 over b's 5e7 tokens: 0.48 passes
    # a domain the search left at 0 (no passes recorded) takes its size from the search space's tokens
    sizes = {"params": {"constraints": {"tokens": {"a": a_size, "b": 1.0e6}}}}
    zero = {**searched, "per_domain": {"a": 4.0e7, "b": 0.0}, "epochs": {"a": 7.33, "b": 0.0}}
    doc = yaml.safe_load(export_mixture(Mixture({"a": 0.5, "b": 0.5}, meta={"tokens": zero, **sizes}),
                                        "olmix-mix"))["mix"]
    assert doc["b"]["repetition_factor"] == 20.0 and doc["a"]["repetition_factor"] == 3.67


def test_hand_edited_metadata_that_cannot_be_exported_is_refused_by_name() -> None:
    for cap in (float("inf"), -3, "abc", True):
        bad = Mixture({"a": 0.5, "b": 0.5}, meta={"params": {"constraints": {"max_epochs": cap}}})
        with pytest.raises(MixoptError, match="params.constraints.max_epochs is .*give a positive number"):
            export_mixture(bad, "olmix-mix")
    for w in (float("inf"), float("nan"), -1):
        bad = Mixture({"a": 0.5, "b": 0.5}, meta={"objective": {"weights": {"a": w}}})
        with pytest.raises(MixoptError, match=r"objective.weights must be finite numbers ≥ 0, not a="):
            export_mixture(bad, "yaml")
        assert export_mixture(bad, "yaml", valid={"valid_a": 1.0})  # --valid replaces them


def test_yaml_valid_section_survives_huge_weights_and_keeps_x_and_train_x_apart() -> None:
    import yaml

    huge = Mixture({"a": 0.5, "b": 0.5}, meta={"objective": {"weights": {"a": 1e308, "b": 1e308}}})
    assert yaml.safe_load(export_mixture(huge, "yaml"))["valid"] == {"valid_a": 0.5, "valid_b": 0.5}
    both = Mixture({"x": 0.25, "train_x": 0.75})
    doc = yaml.safe_load(export_mixture(both, "yaml", prefixes={"train_x": "train_train_x"}))
    assert doc["valid"] == {"valid_x": 0.5, "valid_train_x": 0.5}  # two sets, not one with half the weight


def test_a_domain_without_a_name_is_refused() -> None:
    for name in ("", "  "):
        with pytest.raises(MixoptError, match="a domain has an empty name"):
            Mixture({name: 0.5, "a": 0.5})


@pytest.mark.parametrize(("data", "message"), [
    # counts or ratios written as weights: the fix is to normalise, as for a sum off by a little
    ({"weights": {"code": 2, "docs": 1, "drama": 1}},
     "at weights/code: 2 is greater than the maximum of 1; weights are shares summing to 1: normalise "
     "them (each weight / 4)"),
    ({"weights": {"a": 0.5, "b": 0.5}, "schedule": [{"until": 1, "weights": {"a": 3, "b": 1}}]},
     "at schedule/0/weights/a: 3 is greater than the maximum of 1; weights are shares summing to 1"),
    ({}, "'weights' is a required property; add \"weights\": {\"<domain>\": <share>, ...}"),
    ({"weights": {"a": "0.5", "b": 0.5}}, "'0.5' is not of type 'number'; write numbers without quotes"),
    ({"weights": {"a": 1}, "schedule": []},
     "[] should be non-empty; leave out \"schedule\" or give its phases"),
    ({"schema": "mixopt.mixture/v2", "weights": {"a": 1}},
     "was expected; this mixopt reads mixopt.mixture/v1"),
    # a misspelt key had been ignored: the run trained without its schedule
    ({"weights": {"a": 0.5, "b": 0.5}, "schedules": []},
     "key 'schedules' is not part of mixopt.mixture/v1; did you mean 'schedule'?"),
    ({"wieghts": {"a": 1}}, "key 'wieghts' is not part of mixopt.mixture/v1; did you mean 'weights'?"),
    # a QA pass: each said what was wrong, and some a fix that was wrong ("normalise" a negative, "/ inf")
    # the error is of code (past 1) and the fix of legal: the line says why (a QA pass)
    ({"weights": {"code": 1.2, "legal": -0.2}},
     "weights are shares ≥ 0 summing to 1, and 'legal' is -0.2: give it 0 or more"),
    ({"weights": {"code": float("inf"), "legal": 0.5}},
     "weights are finite shares summing to 1: give 'code' a"),
    ({"weights": {"x": -0.2, "y": 1.2}},
     "at weights/x: -0.2 is less than the minimum of 0; weights are shares ≥ 0"),
    ({"weights": {"code": True, "legal": 0.5}},
     "give 'code' a number such as 0.25 (0 for a domain it does not"),
    ({"weights": {"code": None, "legal": 1}},
     "None is not of type 'number'; give 'code' a number such as 0.25"),
    ({"weights": {"a": 1}, "schedule": {"until": 1.0}}, "\"schedule\" is a list of phases: [{\"until\": 0.5"),
    # the review: the error's own weight is named, whatever else is wrong in the file
    ({"weights": {"code": True, "legal": -0.2}},
     "at weights/code: True is not of type 'number'; give 'code'"),
    ({"weights": {"code": "0.5", "legal": -0.2}},
     "at weights/code: '0.5' is not of type 'number'; write numbers without quotes"),
    ({"weights": {"a": 1}, "schedule": [{"until": "1", "weights": {"a": 1}}]},
     "'1' is not of type 'number'; write numbers without quotes"),
    ({"weights": {"a": 1}, "schedule": [{"until": 1.5, "weights": {"a": 1}}]},
     "1.5 is greater than the maximum of 1; \"until\" is the fraction of training a phase ends at"),
])
def test_hand_written_mixture_mistakes_say_how_to_fix_them(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                           workspace: Path, data: dict, message: str) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"schema": "mixopt.mixture/v1", **data}))
    assert run_cli(["export", str(bad), "--format", "hf", "--out", str(tmp_path / "o.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {bad}") and message in err[0], err
    assert not (tmp_path / "o.json").exists()


def test_a_users_own_key_is_kept_with_a_warning_and_the_file_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], workspace: Path
) -> None:
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"schema": "mixopt.mixture/v1", "author": "me",
                                "weights": {"code": 0.3333, "docs": 0.3333, "drama": 0.3333}}))
    assert run_cli(["export", str(path), "--format", "megatron"]) == 0
    err = capsys.readouterr().err
    assert f"warning: {path}: 'author' not part of mixopt.mixture/v1; kept, not read" in err
    # annotations close to a schema key are kept too (the review: created_at, note, weights_old)
    for key, value in (("created_at", "2026"), ("note", "by hand"), ("schedule_note", "none"),
                       ("weights_old", {"a": 1.0})):
        path.write_text(json.dumps({"schema": "mixopt.mixture/v1", "weights": {"a": 1.0}, key: value}))
        with pytest.warns(MixoptWarning, match=rf"'{key}' \(did you mean '.*'\?\) not part of"):
            Mixture.load(path)
    path.write_text(json.dumps({"schema": "mixopt.mixture/v1", "author": "me",
                                "weights": {"code": 0.3333, "docs": 0.3333, "drama": 0.3333}}))
    assert f"warning: {path}: weights summed to 0.9999; renormalised to 1" in err  # had said "mixture:"
    # a note longer than 80 columns is one line in a log (rich had broken it at 80)
    note = ("note: no --prefix: the blend names each domain as a data prefix relative to where Megatron "
            "runs; give --prefix domain=/path/to/domain_text_document")
    assert f"\n{note}\n" in f"\n{err}"
    assert Mixture.load(path).meta["author"] == "me"
    phased = tmp_path / "phased.json"
    phased.write_text(json.dumps({"schema": "mixopt.mixture/v1", "weights": {"a": 0.5, "b": 0.5},
                                  "schedule": [{"until": 0.5, "weights": {"a": 0.5, "b": 0.5}},
                                               {"until": 1, "weights": {"a": 0.3333, "b": 0.6666}}]}))
    with pytest.warns(MixoptWarning, match=rf"^{re.escape(str(phased))}: schedule phase 2: weights summed"):
        Mixture.load(phased)


def test_a_mixture_file_that_is_no_mixture_or_names_a_domain_with_a_newline_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], workspace: Path
) -> None:
    """A QA pass: a list, a binary file and a domain named "a\\nb" (which split every export's
    lines) had said what was wrong but not how to fix it, or been written out."""
    path = tmp_path / "m.json"
    for content, message in (
        (b"[1, 2]",
         'is not of type \'object\'; a mixture file is one JSON object: {"schema": "mixopt.mixture/v1"'),
        (b"\x80\x81PK\x03",
         "is not UTF-8 text (byte 0); give a mixture JSON (mixopt search --out writes one)"),
        (json.dumps({"schema": "mixopt.mixture/v1", "weights": {"a\nb": 0.5, "c": 0.5}}).encode(),
         "domain name 'a\\nb' holds a control character (a newline, a tab, a line separator); name domains "),
        # YAML reads NEL and U+2028 as line breaks; NFC and NFD spellings look alike in every export
        (json.dumps({"schema": "mixopt.mixture/v1", "weights": {"a\u2028b": 0.5, "c": 0.5}}).encode(),
         "domain name 'a\\u2028b' holds a control character"),
        (json.dumps({"schema": "mixopt.mixture/v1", "weights": {"a\x85b": 0.5, "c": 0.5}}).encode(),
         "domain name 'a\\x85b' holds a control character"),
        (json.dumps({"schema": "mixopt.mixture/v1",
                     "weights": {"caf\u00e9": 0.5, "cafe\u0301": 0.5}}).encode(),
         "domains 'caf\u00e9' and 'cafe\u0301' are one name in two Unicode spellings ('caf\\xe9' and "
         "'cafe\\u0301'); spell them alike, or name them apart"),
    ):
        path.write_bytes(content)
        assert run_cli(["export", str(path), "--format", "megatron", "--out", str(tmp_path / "o.txt")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
        assert not (tmp_path / "o.txt").exists()


def test_an_export_the_locale_cannot_print_is_refused_not_garbled(tmp_path: Path, monkeypatch,  # noqa: ANN001
                                                                  capsys, workspace: Path) -> None:  # noqa: ANN001
    """Under a locale that is not UTF-8, "日本" would print as "??": a blend naming no real domain."""
    import io
    import sys

    path = Mixture({"café": 0.5, "日本": 0.5}).save(tmp_path / "mix.json")
    out = io.TextIOWrapper(io.BytesIO(), encoding="latin-1", errors="replace")
    monkeypatch.setattr(sys, "stdout", out)
    assert run_cli(["export", str(path), "--format", "megatron"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: the export holds '日本', which this locale's encoding (latin-1) cannot "
                          "print; write it to a file with --out"), err
    assert run_cli(["export", str(path), "--format", "megatron", "--out", str(tmp_path / "blend.txt")]) == 0
    assert "日本" in (tmp_path / "blend.txt").read_text(encoding="utf-8")


def test_exports_write_non_ascii_names_as_they_are() -> None:
    """stop 33's QA pass: the YAML formats wrote "caf\\xE9" where megatron's blend wrote café."""
    mix = Mixture({"café": 0.5, "日本": 0.5})
    for fmt in FORMATS:
        text = export_mixture(mix, fmt)
        assert "café" in text and "日本" in text and "\\x" not in text and "\\u" not in text, text
        assert parse_export(text, fmt, domains=list(mix.weights)) == mix.weights
