"""Mixture reuse (Olmix): a previous mixture's domains drawn, fitted and proposed as one group."""

from __future__ import annotations

import json
import warnings

import numpy as np
import polars as pl
import pytest

from mixopt.cli import run_cli
from mixopt.errors import MixoptError
from mixopt.mixture import Mixture
from mixopt.reuse import Reuse, load_reuse
from mixopt.space import SearchSpace

DOMAINS = ("web", "books", "wiki", "code", "math")
TOKENS = "web=1e9,books=5e8,wiki=2e8,code=3e8,math=1e8"
SHARES = {"web": 0.5, "books": 0.3, "wiki": 0.2}


@pytest.fixture
def prev(tmp_path):
    path = tmp_path / "prev.json"
    Mixture(dict(SHARES)).save(path)
    return path


def test_the_two_views_of_a_mixture(prev):
    group = load_reuse(str(prev), DOMAINS)
    assert group.name == "reused" and dict(group.ratios) == pytest.approx(SHARES)
    assert group.units(DOMAINS) == ("reused", "code", "math")
    assert group.domains(("reused", "code", "math")) == DOMAINS
    U = np.array([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]])
    W = group.expand(("reused", "code", "math"), U)
    np.testing.assert_allclose(W[0], [0.3, 0.18, 0.12, 0.3, 0.1])
    units, back = group.collapse(DOMAINS, W, ["a", "b"], "t")
    assert units == ("reused", "code", "math")
    np.testing.assert_allclose(back, U)
    # the group holds what it can use at its shares: wiki's 2e8 at 0.2 is 1e9, less than web's 2e9
    tokens = {"web": 1e9, "books": 5e8, "wiki": 2e8, "code": 3e8, "math": 1e8}
    assert group.tokens(tokens) == {"reused": pytest.approx(1e9), "code": 3e8, "math": 1e8}
    with pytest.raises(MixoptError, match="unknown domain.* law; the domains are web, books, wiki, code"):
        group.tokens({**tokens, "law": 1e9})
    # a table already over the units passes as it is
    np.testing.assert_array_equal(group.collapse(units, U, ["a", "b"], "t")[1], U)


def test_a_named_group_a_removed_domain_and_recompute(prev, tmp_path):
    # wiki is gone from the corpus: the rest keep their shares, renormalised, and that is said
    with pytest.warns(UserWarning, match="wiki is no longer among the domains"):
        group = load_reuse(f"existing={prev}", ("web", "books", "code"))
    assert group.name == "existing" and group.dropped == ("wiki",)
    assert dict(group.ratios) == pytest.approx({"web": 0.625, "books": 0.375})
    group = load_reuse(str(prev), DOMAINS, recompute=["books"])
    assert dict(group.ratios) == pytest.approx({"web": 0.5 / 0.7, "wiki": 0.2 / 0.7})
    assert group.units(DOMAINS) == ("reused", "books", "code", "math")
    assert group.option() == ["--reuse-mixture", str(prev.resolve()), "--recompute", "books"]
    # a table whose columns are the group's name and the new domains (Olmix's `existing`)
    group = load_reuse(f"existing={prev}", ("existing", "code", "math"), table=True)
    assert group.domains(("existing", "code", "math")) == DOMAINS
    # the domains a job trains are no table: a group named after one of them is refused (a QA pass: a
    # search's runs trained the file's domains, and not that one)
    with pytest.raises(MixoptError, match="'existing' is one of the domains; name the group otherwise"):
        load_reuse(f"existing={prev}", ("existing", "code", "math"))


@pytest.mark.parametrize(("spec", "domains", "recompute", "match"), [
    ("web={p}", DOMAINS, (), "'web' is one of the domains; name the group otherwise"),
    ("{p}", DOMAINS, ("code",), "--recompute code: not a domain of"),
    ("{p}", ("code", "math", "law"), (), "none of its domains with a weight > 0 is left"),
    ("{p}", DOMAINS, ("web", "books", "wiki"), "--recompute names every domain of .*drop --reuse-mixture"),
    # a name that is a new domain (a QA pass: it read as a table with both the group and its members)
    ("code={p}", DOMAINS, (), "'code' is one of the domains; name the group otherwise"),
    ("{p}", ("web", "reused", "code"), (), "'reused' is one of the domains"),
    ("{p}x", DOMAINS, (), "does not exist"),
    ("={p}", DOMAINS, (), "give the group a name before '='"),
    ("g= ", DOMAINS, (), "give the mixture JSON after '='"),  # it had been "mixture file . is a folder"
    ("{p}", DOMAINS, ("law",), "law: not a domain of .* drop it from --recompute"),
    # Olmix's table in units, without the group's name: the column is named in the way out
    ("{p}", ("existing", "code", "math"), (), "--reuse-mixture existing="),
    ("", DOMAINS, (), "--reuse-mixture is empty; give the mixture JSON"),
    # names a table or an option list cannot read back (a QA pass)
    ("a,b={p}", DOMAINS, (), "'a,b' cannot name the group .*would not read back"),
    ("index={p}", DOMAINS, (), "'index' cannot name the group \\(run, name, index name a table's rows\\)"),
    # a domain of the file that is gone is the file's, not one of the domains (a QA pass)
    ("wiki={p}", ("web", "books", "code"), (), "'wiki' is a domain of .*prev.json; name the group otherwise"),
    ("{p}", ("web", "books", "wiki"), (), "holds every domain"),
])
def test_refusals_name_what_is_wrong(prev, spec, domains, recompute, match):
    with pytest.raises(MixoptError, match=match):
        load_reuse(spec.format(p=prev), domains, recompute, table=True)


def test_a_scheduled_mixture_is_refused(tmp_path):
    path = tmp_path / "sched.json"
    phases = ((0.5, {"a": 0.5, "b": 0.5}), (1.0, {"a": 0.2, "b": 0.8}))
    Mixture({"a": 0.5, "b": 0.5}, schedule=phases).save(path)
    with pytest.raises(MixoptError, match="scheduled mixture"):
        load_reuse(str(path), ("a", "b", "c"))


def test_rows_not_drawn_with_the_reuse_are_named(prev, tmp_path):
    group = load_reuse(str(prev), DOMAINS)
    W = np.array([[0.3, 0.18, 0.12, 0.3, 0.1], [0.2, 0.2, 0.2, 0.2, 0.2]])
    # the member furthest past its tolerance is named, and the likely causes
    with pytest.raises(MixoptError, match=r"1 row\(s\) \(r2\) do not keep the shares .* wiki is 0.2, 0.12 at "
                       r".*without this --reuse-mixture, with another --recompute, or rounded to fewer"):
        group.collapse(DOMAINS, W, ["r1", "r2"], "swarm.csv")
    # a spreadsheet's 4 decimals pass (a QA pass: 9 of 64 rows refused), small shares included
    small = tmp_path / "small.json"
    Mixture({"web": 0.9, "books": 0.0999, "wiki": 0.0001}).save(small)
    tiny = load_reuse(str(small), DOMAINS)
    rng = np.random.default_rng(0)
    U = rng.dirichlet(np.ones(3) * 0.3, size=500)
    rounded = np.round(tiny.expand(("reused", "code", "math"), U), 4)
    rounded /= rounded.sum(axis=1, keepdims=True)  # as check_rows renormalises them
    np.testing.assert_allclose(tiny.collapse(DOMAINS, rounded, [str(i) for i in range(500)], "t")[1], U,
                               atol=2e-4)
    with pytest.raises(MixoptError, match="lacks books of reused"):
        group.collapse(("web", "wiki", "code"), W[:, [0, 2, 3]], ["r1", "r2"], "--predict p.csv")
    with pytest.raises(MixoptError, match="--max-weight web=...: web moves with the other domains of reused"):
        group.check_bounds({"web": 0.3}, "--max-weight")


def _losses(ratios, out, optimum=(0.3, 0.18, 0.12, 0.3, 0.1)):
    df = pl.read_csv(ratios)
    W = df.select(DOMAINS).to_numpy()
    loss = 3 + ((W - np.array(optimum)) ** 2).sum(axis=1)
    pl.DataFrame({"run": df["run"], "loss": loss}).write_csv(out)


def test_swarm_then_fit_with_reuse(prev, tmp_path, workspace, capsys):
    swarm, blends = tmp_path / "swarm.csv", tmp_path / "blends"
    args = ["swarm", "--domains", ",".join(DOMAINS), "--tokens", TOKENS, "--max-epochs", "4", "--budget",
            "20", "--reuse-mixture", str(prev), "-o", str(swarm), "--exports", str(blends), "--format",
            "olmix-mix"]
    assert run_cli(args) == 0
    said = " ".join(capsys.readouterr().err.split())
    assert "20 mixtures over 5 domains (seed 0), 3 of them as one group reused" in said
    assert f"--max-epochs 4 --reuse-mixture {prev} --propose" in said  # the fit it suggests: the same shares
    df = pl.read_csv(swarm)
    assert df.columns == ["run", "index", *DOMAINS]  # written over every domain: what the jobs train
    W = df.select(DOMAINS).to_numpy()
    group = W[:, :3].sum(axis=1)
    np.testing.assert_allclose(W[:, :3], group[:, None] * np.array([0.5, 0.3, 0.2]), atol=1e-12)
    assert np.ptp(group) > 0.3  # the group's share is what the swarm varies
    # each run's passes at the budget keep to --max-epochs 4 domain by domain, members too
    tokens = np.array([1e9, 5e8, 2e8, 3e8, 1e8])
    assert (W * tokens.sum() / tokens <= 4 + 1e-9).all()
    import yaml

    mix = yaml.safe_load((blends / "mix-0003.yaml").read_text())["mix"]
    assert list(mix) == list(DOMAINS) and mix["wiki"]["weight"] == pytest.approx(W[3, 2])

    # the jobs trained, their losses come back and the fit proposes over every domain
    metrics, out = tmp_path / "metrics.csv", tmp_path / "mixture.json"
    _losses(swarm, metrics)
    assert run_cli(["fit", "--ratios", str(swarm), "--metrics", str(metrics), "--target", "loss", "--method",
                    "gp", "--tokens", TOKENS, "--max-epochs", "4", "--reuse-mixture", str(prev), "--propose",
                    "--out", str(out), "--max-weight", "reused=0.8"]) == 0
    data = json.loads(out.read_text())
    w = data["weights"]
    assert list(w) == list(DOMAINS) and sum(w.values()) == pytest.approx(1)
    share = w["web"] + w["books"] + w["wiki"]
    assert [w[d] / share for d in ("web", "books", "wiki")] == pytest.approx([0.5, 0.3, 0.2])
    assert share <= 0.8 + 1e-9
    assert data["params"]["reuse"]["ratios"] == pytest.approx(SHARES)
    assert data["params"]["constraints"]["ceilings"] == {"reused": 0.8}
    assert set(data["tokens"]["epochs"]) == set(DOMAINS)  # the plan per domain the job trains
    assert set(data["baselines"]["best_run"]["weights"]) == set(DOMAINS)
    # near the optimum the losses were drawn around (0.6 of the weight reused, at its shares)
    assert share == pytest.approx(0.6, abs=0.1)


def test_fit_reads_a_table_over_the_units(prev, tmp_path, workspace):
    # Olmix's reuse tables: a column for the group (`existing`), one per new domain
    ratios, metrics, out = tmp_path / "r.csv", tmp_path / "m.csv", tmp_path / "mix.json"
    rng = np.random.default_rng(0)
    U = rng.dirichlet(np.ones(3), size=16)
    pl.DataFrame({"run": [f"r{i}" for i in range(16)], "existing": U[:, 0], "code": U[:, 1],
                  "math": U[:, 2]}).write_csv(ratios)
    pl.DataFrame({"run": [f"r{i}" for i in range(16)],
                  "loss": 3 + ((U - [0.6, 0.3, 0.1]) ** 2).sum(axis=1)}).write_csv(metrics)
    assert run_cli(["fit", "--ratios", str(ratios), "--metrics", str(metrics), "--target", "loss",
                    "--method", "linear", "--reuse-mixture", f"existing={prev}", "--propose", "--out",
                    str(out)]) == 0
    w = json.loads(out.read_text())["weights"]
    assert list(w) == list(DOMAINS)
    share = w["web"] + w["books"] + w["wiki"]
    assert w["web"] / share == pytest.approx(0.5)


def test_fit_refuses_what_reuse_cannot_read(prev, tmp_path, workspace, capsys):
    ratios, metrics, out = tmp_path / "r.csv", tmp_path / "m.csv", tmp_path / "mix.json"
    rng = np.random.default_rng(1)
    W = rng.dirichlet(np.ones(5), size=12)  # a plain swarm: the members vary on their own
    pl.DataFrame({"run": [f"r{i}" for i in range(12)], **{d: W[:, j] for j, d in enumerate(DOMAINS)}}
                 ).write_csv(ratios)
    _losses(ratios, metrics)
    base = ["fit", "--ratios", str(ratios), "--metrics", str(metrics), "--target", "loss", "--method",
            "linear", "--propose", "--out", str(out)]
    assert run_cli([*base, "--reuse-mixture", str(prev)]) == 2
    err = capsys.readouterr().err
    assert "12 row(s) (r0, r1, r2, r3, r4 and 7 more) do not keep the shares" in " ".join(err.split())
    assert run_cli([*base, "--recompute", "web"]) == 2
    assert "add --reuse-mixture FILE" in capsys.readouterr().err
    assert not out.exists()


def test_predict_collapses_new_mixtures(prev, tmp_path, workspace):
    from mixopt.fit.on_tables import FitConfig, fit_tables

    ratios, metrics, new, out = (tmp_path / n for n in ("r.csv", "m.csv", "new.csv", "p.csv"))
    rng = np.random.default_rng(2)
    group = load_reuse(str(prev), DOMAINS)
    W = group.expand(("reused", "code", "math"), rng.dirichlet(np.ones(3), size=12))
    pl.DataFrame({"run": [f"r{i}" for i in range(12)], **{d: W[:, j] for j, d in enumerate(DOMAINS)}}
                 ).write_csv(ratios)
    _losses(ratios, metrics)
    pl.DataFrame({"run": ["n0"], **{d: [W[0, j]] for j, d in enumerate(DOMAINS)}}).write_csv(new)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rep = fit_tables(FitConfig(ratios=ratios, metrics=metrics, target="loss", method="linear",
                                   predict=new, out=out, reuse=str(prev)))
    assert rep.domains == ("reused", "code", "math") and rep.predictions["n"] == 1
    got = pl.read_csv(out)
    assert got["run"].to_list() == ["n0"]
    # the same mixture given over the units predicts the same (the collapse reads the right columns)
    units = tmp_path / "units.csv"
    pl.DataFrame({"run": ["n0"], "reused": [W[0, :3].sum()], "code": [W[0, 3]], "math": [W[0, 4]]}
                 ).write_csv(units)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit_tables(FitConfig(ratios=ratios, metrics=metrics, target="loss", method="linear", predict=units,
                             out=tmp_path / "p2.csv", reuse=str(prev)))
    assert pl.read_csv(tmp_path / "p2.csv")["predicted/loss"][0] == pytest.approx(got["predicted/loss"][0])
    # the group's column beside a member's: its columns would be read by the wrong names (a review)
    pl.DataFrame({"run": ["n0"], "reused": [0.5], "web": [0.2], "code": [0.2], "math": [0.1]}
                 ).write_csv(units)
    with pytest.raises(MixoptError, match="has both reused and its domain.* web; give one column"):
        fit_tables(FitConfig(ratios=ratios, metrics=metrics, target="loss", method="linear", predict=units,
                             out=tmp_path / "p3.csv", reuse=str(prev)))


def test_tokens_for_the_group_and_a_file_with_an_equals_sign(prev, tmp_path, workspace, capsys):
    group = load_reuse(str(prev), DOMAINS)
    with pytest.raises(MixoptError, match="gives both reused and its domain.* web; give one count"):
        group.tokens({"reused": 1e9, "web": 1e9, "code": 1e8, "math": 1e8})
    with pytest.raises(MixoptError, match="gives wiki of reused no tokens"):
        group.tokens({"web": 1e9, "books": 1e9, "wiki": 0, "code": 1e8, "math": 1e8})
    # swarm takes the group's count too, as fit does (its error for a missing member says so)
    out = tmp_path / "s.csv"
    assert run_cli(["swarm", "--domains", ",".join(DOMAINS), "--tokens", "reused=1e9,code=1e8,math=1e8",
                    "--max-epochs", "2", "--reuse-mixture", str(prev), "-o", str(out)]) == 0
    W = pl.read_csv(out).select(DOMAINS).to_numpy()
    assert (W[:, 3] <= 2 * 1e8 / 1.2e9 + 1e-9).all()  # code: 2 passes of 1e8 at the 1.2e9 budget
    # a file named v=2.json is the file, not a group v in 2.json
    odd = tmp_path / "v=2.json"
    odd.write_text(prev.read_text())
    assert load_reuse(str(odd), DOMAINS).name == "reused"


def test_extend_and_min_weight_with_reuse(prev, tmp_path, workspace, capsys):
    first, more = tmp_path / "first.csv", tmp_path / "more.csv"
    base = ["swarm", "--domains", ",".join(DOMAINS), "--reuse-mixture", str(prev), "--min-weight", "0.2"]
    assert run_cli([*base, "--budget", "8", "-o", str(first)]) == 0
    assert run_cli([*base, "--budget", "8", "--extend", str(first), "-o", str(more)]) == 0
    W = np.vstack([pl.read_csv(p).select(DOMAINS).to_numpy() for p in (first, more)])
    assert pl.read_csv(more)["index"].to_list() == list(range(8, 16))  # numbered on after the first
    # --min-weight floors the units: the group and each new domain, not each member
    assert (W[:, :3].sum(axis=1) >= 0.2 - 1e-9).all() and (W[:, 3:] >= 0.2 - 1e-9).all()
    assert (W[:, 2] < 0.2).any()  # wiki, 0.2 of the group, is below the floor in some rows
    # an infeasible floor names the units it counts (it had said "× 3 domain(s)" of 7 domains)
    capsys.readouterr()
    assert run_cli([*base[:-1], "0.4", "--budget", "4", "-o", str(tmp_path / "none.csv")]) == 2
    assert "(--min-weight 0.4 × 3 domain(s): reused, code, math)" in " ".join(capsys.readouterr().err.split())
    # a table drawn without the reuse cannot be extended with it
    plain = tmp_path / "plain.csv"
    assert run_cli(["swarm", "--domains", ",".join(DOMAINS), "--budget", "4", "-o", str(plain)]) == 0
    capsys.readouterr()
    assert run_cli([*base, "--extend", str(plain), "-o", str(tmp_path / "x.csv")]) == 2
    assert "extend a table drawn with the same --reuse-mixture and --recompute" in " ".join(
        capsys.readouterr().err.split())


def test_what_a_qa_pass_of_reuse_found(prev, tmp_path, workspace, capsys):
    swarm, metrics, out = tmp_path / "swarm.csv", tmp_path / "metrics.csv", tmp_path / "mix.json"
    # --recompute keeps the domains in their order (it had moved books after the group's members)
    assert run_cli(["swarm", "--domains", ",".join(DOMAINS), "--reuse-mixture", str(prev), "--recompute",
                    "books", "--budget", "12", "-o", str(swarm)]) == 0
    assert pl.read_csv(swarm).columns == ["run", "index", *DOMAINS]
    assert f"--reuse-mixture {prev} --recompute books" in " ".join(capsys.readouterr().err.split())
    _losses(swarm, metrics)
    fit = ["fit", "--ratios", str(swarm), "--metrics", str(metrics), "--target", "loss", "--method", "linear",
           "--propose"]
    # tokens given for the group, as the error for a missing member suggests, had crashed (KeyError)
    assert run_cli([*fit, "--out", str(out), "--reuse-mixture", str(prev), "--recompute", "books", "--tokens",
                    "reused=1e9,books=5e8,code=3e8,math=1e8", "--max-epochs", "4"]) == 0
    data = json.loads(out.read_text())
    assert list(data["weights"]) == list(DOMAINS) and "epochs" not in data["tokens"]
    assert any("web, wiki kept at the shares" in n for n in data["notes"])
    assert any("uniform over the 4 units (reused counts once)" in n for n in data["notes"])
    capsys.readouterr()
    # an output over the mixture it reuses is refused, and nothing is written
    before = prev.read_text()
    assert run_cli([*fit, "--out", str(prev), "--reuse-mixture", str(prev), "--recompute", "books"]) == 2
    assert "is the --reuse-mixture file this command reads" in capsys.readouterr().err
    assert run_cli(["swarm", "--domains", ",".join(DOMAINS), "--reuse-mixture", str(prev), "-o",
                    str(prev)]) == 2
    assert "is the --reuse-mixture file this command reads" in capsys.readouterr().err
    assert prev.read_text() == before
    # a --recompute list's errors name --recompute, not --domains
    assert run_cli([*fit, "--out", str(out), "--reuse-mixture", str(prev), "--recompute", "books,,wiki"]) == 2
    assert "--recompute 'books,,wiki' has an empty name" in capsys.readouterr().err
    # forgetting the swarm's --recompute: the rows are refused, naming it as a cause
    assert run_cli([*fit, "--out", str(out), "--reuse-mixture", str(prev)]) == 2
    assert "with another --recompute" in capsys.readouterr().err


def test_zero_weights_and_renamed_domains_are_said(prev, tmp_path):
    path = tmp_path / "zero.json"
    Mixture({"web": 0.7, "books": 0.3, "wiki": 0.0}).save(path)
    with pytest.warns(UserWarning, match="wiki has weight 0 there and stays at 0 .* --recompute it"):
        load_reuse(str(path), DOMAINS)
    with pytest.warns(UserWarning, match=r"books is no longer among the domains.*renamed\? books → book: "):
        load_reuse(str(prev), ("web", "book", "wiki", "code"))


def test_rows_rounded_to_seven_decimals_say_their_sums(tmp_path):
    from mixopt.tables import check_rows

    W = np.array([[0.3333333, 0.3333333, 0.3333333], [0.5, 0.25, 0.25]])
    with pytest.warns(UserWarning, match=r"1 row\(s\) summed to 0\.9999999–1; renormalised"):
        check_rows(W, ["a", "b"], "r.csv")


def test_a_group_that_dominates_the_prior_is_said(tmp_path, workspace):
    from mixopt.search.config import SearchConfig
    from mixopt.search.prepare import swarm_plan

    big = tmp_path / "big.json"
    Mixture({"a": 0.3, "b": 0.3, "c": 0.2, "d": 0.1, "e": 0.1}).save(big)
    tokens = {**dict.fromkeys("abcde", 1e12), "new1": 1e10, "new2": 2e10}

    def plan(temperature: float) -> np.ndarray:
        cfg = SearchConfig(domains=tuple(tokens), tokens=tokens, budget=16, temperature=temperature,
                           reuse_mixture=str(big))
        p = swarm_plan(cfg)
        return p.rows[:, p.space.domains.index("reused")]

    # a trillion-token group beside new domains of billions: 99% of the prior, most rows near it
    with pytest.warns(UserWarning, match=r"reused holds 99\.1% of the swarm's prior .* --temperature"):
        group = plan(1.0)
    assert np.median(group) > 0.99
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # flattened, it is not said, and the rows vary the group
        group = plan(3.0)
    assert np.median(group) < 0.9
    # a corpus's counts cannot be given: the way out is the temperature alone
    from mixopt.search.prepare import _dominant_group_note
    from mixopt.space import SearchSpace

    space = SearchSpace(domains=("reused", "new1"), tokens={"reused": 1e12, "new1": 1e9})
    with pytest.warns(UserWarning) as said:
        _dominant_group_note(space, "reused", 1.0, counted=False)
    assert "--temperature" in str(said[0].message) and "--tokens" not in str(said[0].message)


def test_a_second_qa_pass_replaying_olmix_updates(prev, tmp_path, workspace, capsys):
    from pathlib import Path

    from mixopt.reuse import Reuse

    # library use: a Path is the file, a string of recompute is refused, hand-made shares are checked
    assert load_reuse(Path(prev), DOMAINS).source == str(prev.resolve())
    with pytest.raises(MixoptError, match="recompute is the string 'books'; give a sequence"):
        load_reuse(str(prev), DOMAINS, "books")
    assert load_reuse(str(prev), iter(DOMAINS)).units(DOMAINS) == ("reused", "code", "math")
    with pytest.raises(MixoptError, match=r"shares must be ≥ 0 and sum to 1; got a=0.5, b=0.7 \(sum 1.2\)"):
        Reuse(name="g", ratios={"a": 0.5, "b": 0.7}, source="x")
    with pytest.raises(MixoptError, match="the group 'g' has no domains"):
        Reuse(name="g", ratios={}, source="x")
    # a split source: its share is left out and the parts searched beside the group (not "renamed?")
    parts = ("web", "books", "wiki:science", "wiki:history", "code", "math")
    with pytest.warns(UserWarning, match=r"split\? wiki → wiki:science, wiki:history: its share is left out"):
        load_reuse(str(prev), parts)
    # a revised source read as a rename is not told to keep its share unless it is the same data
    with pytest.warns(UserWarning, match="if it is the same data under a new name.*a revised source is"):
        load_reuse(str(prev), ("web", "books", "wikis", "code"))
    # a table over units with the split source's parts beside the group: counted twice, refused
    with pytest.raises(MixoptError, match=r"wiki of .* is in existing, and its parts wiki:science, "
                                          r"wiki:history are columns .* --recompute wiki"):
        load_reuse(f"existing={prev}", ("existing", "wiki:science", "wiki:history"), table=True)
    group = load_reuse(f"existing={prev}", ("existing", "wiki:science", "wiki:history"), ["wiki"], table=True)
    assert dict(group.ratios) == pytest.approx({"web": 0.625, "books": 0.375})
    # a removal: the file holds every domain left, and the message says what to train
    with pytest.raises(MixoptError, match=r"\(wiki of it no longer among them: the mixture to train is the "
                                          r"file without it, renormalised"):
        load_reuse(str(prev), ("web", "books"))


def test_caps_that_keep_the_new_domains_out_of_the_rows_are_said(tmp_path, workspace):
    from mixopt.search.config import SearchConfig
    from mixopt.search.prepare import swarm_plan

    old = tmp_path / "old.json"
    Mixture({"a": 0.5, "b": 0.5}).save(old)
    # fifteen small new domains, each capped near 0.5%, beside a group that is not: most draws that
    # weight them are rejected, and the rows keep them near 0 (a QA pass's stack-edu)
    tokens = {"a": 4e11, "b": 4e11, **{f"n{i}": 1.4e9 for i in range(15)}, "big": 1e11}
    cfg = SearchConfig(domains=tuple(tokens), tokens=tokens, budget=24, max_epochs=4, target_tokens=1e12,
                       reuse_mixture=str(old))
    with pytest.warns(UserWarning, match=r"the rows give the domains beside reused a median share of .* the "
                                         r"repetition caps \(--max-epochs\) reject most draws"):
        p = swarm_plan(cfg)
    from mixopt.search.prepare import capped_away_note

    with pytest.warns(UserWarning, match=r"\(Olmix caps only the fit; `mixopt swarm` draws such a swarm for "
                                         r"your jobs, then `mixopt fit`\)"):  # as a search says it
        capped_away_note(p.space, p.rows, "reused", 1.0, search=True)
    with warnings.catch_warnings():  # without caps nothing is said
        warnings.simplefilter("error")
        swarm_plan(SearchConfig(domains=tuple(tokens), tokens=tokens, budget=24, reuse_mixture=str(old)))


def test_export_prefixes_from_a_file(tmp_path, capsys):
    mix, prefixes = tmp_path / "mix.json", tmp_path / "prefixes.txt"
    Mixture({"web": 0.6, "code": 0.4}).save(mix)
    prefixes.write_text("# one per line\nweb=/data/web_text\ncode=/data/code_text\n")
    assert run_cli(["export", str(mix), "--format", "megatron", "--prefix", f"@{prefixes}"]) == 0
    assert capsys.readouterr().out.split() == ["0.6", "/data/web_text", "0.4", "/data/code_text"]


def test_a_runs_trained_mixture_is_read_from_its_key(prev):
    """A search that reuses a mixture keeps its runs over the units; what they trained is read back
    through the shares their fidelity key holds (fit --fidelity-law reads every domain so)."""
    from mixopt.reuse import key_entry, trained_weights
    from mixopt.store import fidelity_key

    group = load_reuse(str(prev), DOMAINS)
    key = fidelity_key({"rung": "xs", **key_entry(group)}, "proxy")
    w = trained_weights({"reused": 0.6, "code": 0.3, "math": 0.1}, key)
    assert w == pytest.approx({"web": 0.3, "books": 0.18, "wiki": 0.12, "code": 0.3, "math": 0.1})
    plain = {"web": 0.5, "code": 0.5}
    assert trained_weights(plain, fidelity_key({"rung": "xs"}, "proxy")) == plain
    assert trained_weights(plain, None) == plain


def test_a_member_too_short_for_a_window_is_refused_before_any_run(prev):
    """The group's tokens are what it can use at its shares: a member too short for one window of the
    rung is still named (and one at share 0 is not trained, so not refused)."""
    from mixopt.proxy.rungs import load_rung
    from mixopt.search.prepare import _check_windows

    context = load_rung("debug").context
    group = load_reuse(str(prev), DOMAINS)
    tokens = {"web": 1e6, "books": 1e6, "wiki": float(context // 2), "code": 1e6, "math": 1e6}
    space = SearchSpace(domains=group.units(DOMAINS), tokens=group.tokens(tokens))
    with pytest.raises(MixoptError, match=r"domain\(s\) 'wiki' .* search without them \(--recompute wiki "
                                          r"--fix wiki=0\)"):
        _check_windows(space, {"--rung": "debug"}, "c", resuming=False, group=group, tokens=tokens)
    zero = prev.parent / "zero.json"
    Mixture({"web": 0.6, "books": 0.4, "wiki": 0.0}).save(zero)
    with pytest.warns(UserWarning, match="weight 0"):
        group = load_reuse(str(zero), DOMAINS)
    _check_windows(SearchSpace(domains=group.units(DOMAINS), tokens=group.tokens({**tokens, "wiki": 1.0})),
                   {"--rung": "debug"}, "c", resuming=False, group=group, tokens={**tokens, "wiki": 1.0})


def test_recompute_takes_a_source_or_a_pattern_as_olmix_names_topics(tmp_path):
    """Olmix's partial reuse recomputes one source's topics inside the reused group: --recompute dclm
    is every dclm:… domain of the file, and dclm:s* those the pattern matches."""
    path = tmp_path / "olmix.json"
    shares = {"dclm:science": 0.3, "dclm:sports": 0.2, "dclm:health": 0.1, "wiki": 0.25, "code": 0.15}
    Mixture(shares).save(path)
    domains = (*shares, "math")
    group = load_reuse(str(path), domains, ("dclm",))
    assert group.recompute == ("dclm:science", "dclm:sports", "dclm:health")
    assert tuple(group.ratios) == ("wiki", "code")
    assert load_reuse(str(path), domains, ("dclm:s*", "wiki")).recompute == ("dclm:science", "dclm:sports",
                                                                             "wiki")
    # recorded expanded: a resume and the command it prints name the domains
    assert Reuse.from_state(group.state()).recompute == group.recompute
    with pytest.raises(MixoptError, match=r"--recompute books, web:\*: not a domain of .*, nor a source or "
                                          r"pattern of its domains"):
        load_reuse(str(path), domains, ("books", "web:*"))


def test_a_source_with_a_part_gone_recomputes_the_parts_left(tmp_path):
    """The review: --recompute dclm had been refused for dclm:b, gone from the domains, which the user
    never named."""
    path = tmp_path / "olmix.json"
    Mixture({"dclm:a": 0.3, "dclm:b": 0.2, "wiki": 0.5}).save(path)
    group = load_reuse(str(path), ("dclm:a", "wiki", "code"), ("dclm",))
    assert group.recompute == ("dclm:a",) and group.dropped == ("dclm:b",)
    # every part gone: said of the parts, as for a domain named (not "no source of the file")
    with pytest.raises(MixoptError, match=r"--recompute dclm:a, dclm:b: not among the domains"):
        load_reuse(str(path), ("wiki", "code"), ("dclm",))
    # a table over units (Olmix's `existing` column) has none of the file's domains as columns: a
    # source there takes its parts out of the group, as naming them does (a second review)
    units = load_reuse(f"existing={path}", ("existing", "code"), ("dclm",), table=True)
    assert units.recompute == ("dclm:a", "dclm:b") and tuple(units.ratios) == ("wiki",)
    assert load_reuse(f"existing={path}", ("existing", "code"), ("dclm:*",), table=True).recompute == \
        units.recompute
