"""Run tables: RegMix and Olmix files as they are, joins, row checks, NaN metrics, duplicates."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mixopt.errors import MixoptError, MixoptWarning
from mixopt.tables import read_ratios, read_run_tables, rounding_tolerance

RUNS = Path(__file__).parent / "data" / "runs"
REGMIX = RUNS / "regmix-pile-1m"
OLMIX = RUNS / "olmix-64dom-512"


def test_regmix_layout() -> None:
    with pytest.warns(MixoptWarning, match="renormalised"):
        t = read_run_tables(REGMIX / "train_mixture_1m.csv", REGMIX / "train_pile_loss_1m.csv")
    assert t.key == "index" and len(t.domains) == 17 and t.X.shape == (64, 17)
    assert t.domains[0] == "train_the_pile_arxiv"
    assert t.run_ids[:2] == ["1", "2"]
    np.testing.assert_allclose(t.X.sum(axis=1), 1.0, atol=1e-12)
    assert t.metrics.shape == (64, 13) and "index" not in t.metrics.columns
    y = t.target("metric/the_pile_pile_cc_val_loss")
    assert y[0] == pytest.approx(5.169477939605713)
    np.testing.assert_allclose(t.target("mean"), t.metrics.to_numpy().mean(axis=1))


def test_olmix_layout() -> None:
    t = read_run_tables(OLMIX / "full_recomputation_ratios.csv", OLMIX / "full_recomputation_metrics.csv")
    assert t.key == "run" and len(t.domains) == 64 and t.X.shape == (48, 64)
    assert t.domains[0] == "arxiv" and "" not in t.domains and "index" not in t.domains
    assert t.run_ids[0] == "hz0dfydj" and t.names[0].startswith("5xC-30m-superswarm")
    assert t.metrics.shape == (48, 8)


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_join_on_run_in_any_order_and_partial(tmp_path: Path) -> None:
    r = write(tmp_path / "r.csv", "run,a,b\nx,0.5,0.5\ny,0.25,0.75\nz,1,0\n")
    m = write(tmp_path / "m.csv", "run,loss\nz,3.0\nx,1.0\nw,9\n")
    with pytest.warns(MixoptWarning, match=r"^1 run\(s\) of r.csv have no metrics \(y\) and 1 run\(s\) of "
                                           r"m.csv have no weights \(w\); they are left out \(2 runs joined"):
        t = read_run_tables(r, m)
    assert t.run_ids == ["x", "z"]
    with pytest.warns(MixoptWarning, match=r"^1 run\(s\) of r.csv have no metrics \(y\); they are left out"):
        read_run_tables(r, write(tmp_path / "m2.csv", "run,loss\nz,3.0\nx,1.0\n"))
    np.testing.assert_array_equal(t.target("loss"), [1.0, 3.0])
    np.testing.assert_array_equal(t.X, [[0.5, 0.5], [1.0, 0.0]])
    # nothing joined: both files' ids are named, so a user sees which side is off (a prefix here)
    other = write(tmp_path / "m3.csv", "run,loss\ntrain:x,1\ntrain:y,2\ntrain:z,3\n")
    with pytest.raises(MixoptError, match=r"^no run of .*r.csv \(x, y, z\) appears in .*m3.csv \(train:x, "
                                          r"train:y, train:z\), joined on 'run'; are they the same swarm\?$"):
        read_run_tables(r, other)


def test_integer_ids_that_match_better_shifted_are_refused(tmp_path: Path) -> None:
    """A QA pass: an index shifted by one joined 511 of 512 runs, each to its neighbour's metrics,
    and cross-validated at Spearman -0.02 with exit 0."""
    W = "".join(f"{i},{0.1 + 0.008 * i},{0.9 - 0.008 * i}\n" for i in range(1, 101))
    r = write(tmp_path / "r.csv", "index,a,b\n" + W)
    m = write(tmp_path / "m.csv", "index,loss\n" + "".join(f"{i},{i}\n" for i in range(0, 100)))
    said = (r"the run ids of .*m.csv look shifted by -1 from those of .*r.csv: 1 run\(s\) of r.csv have no "
            r"metrics \(100\) and 1 run\(s\) of m.csv have no weights \(0\) \(joined on 'index'\), while "
            r"shifted they would match 100 runs")
    with pytest.raises(MixoptError, match=said):
        read_run_tables(r, m)
    # runs missing from one file, as ids go (the first 30 of 100 planned runs measured): a warning
    m30 = write(tmp_path / "m30.csv", "index,loss\n" + "".join(f"{i},{i}\n" for i in range(1, 31)))
    with pytest.warns(MixoptWarning, match=r"70 run\(s\) of r.csv have no metrics"):
        assert len(read_run_tables(r, m30).run_ids) == 30


def test_rows_off_by_more_than_tolerance_are_named(tmp_path: Path) -> None:
    r = write(tmp_path / "r.csv", "index,a,b\n1,0.51234,0.5\n2,0.3,0.7\n3,0.2,0.7\n")
    m = write(tmp_path / "m.csv", "index,loss\n1,1\n2,2\n3,3\n")
    with pytest.raises(MixoptError, match=r"2 run\(s\) do not sum to 1.*3 \(sum 0\.9\), 1 \(sum 1\.01234\)"):
        read_run_tables(r, m)


def test_a_slightly_negative_weight_in_a_ratios_file_is_refused(tmp_path: Path) -> None:
    """A mutation pass: the tests had passed with `W < 0` changed to `W < -0.01`."""
    r = write(tmp_path / "r.csv", "run,x,y\na,-0.005,1.005\nb,1,0\n")
    m = write(tmp_path / "m.csv", "run,loss\na,1\nb,2\n")
    with pytest.raises(MixoptError, match=r"negative weights in run\(s\) a"):
        read_run_tables(r, m)


def test_a_row_off_by_half_a_percent_is_refused_not_renormalised(tmp_path: Path) -> None:
    """A mutation pass: the tests had passed with `abs(s - 1) > limit` changed to `> 10 * limit`."""
    r = write(tmp_path / "r.csv", "index,a,b\n1,0.505,0.5\n2,0.3,0.7\n")
    m = write(tmp_path / "m.csv", "index,loss\n1,1\n2,2\n")
    with pytest.raises(MixoptError, match=r"1 run\(s\) do not sum to 1.*1 \(sum 1\.005\)"):
        read_run_tables(r, m)


def test_rows_within_tolerance_are_renormalised(tmp_path: Path) -> None:
    r = write(tmp_path / "r.csv", "index,a,b\n1,0.50031,0.5\n2,0.3,0.7\n")
    m = write(tmp_path / "m.csv", "index,loss\n1,1\n2,2\n")
    with pytest.warns(MixoptWarning, match="1 row"):
        t = read_run_tables(r, m)
    np.testing.assert_allclose(t.X[0], np.array([0.50031, 0.5]) / 1.00031)


def test_rounded_files_get_their_rounding_tolerance() -> None:
    W = np.array([[0.334, 0.333, 0.335], [0.5, 0.5, 0.0], [0.334, 0.333 + 1.2345e-8, 0.335]])
    # per row: 3 cells of 3 decimals; one written by hand; one full-precision cell counts as exact
    np.testing.assert_allclose(rounding_tolerance(W), [3 * 0.0005, 0.0, 2 * 0.0005])
    assert rounding_tolerance(np.array([[1 / 3, 2 / 3]]))[0] == 0.0
    assert rounding_tolerance(np.array([[0.2, 0.7]]))[0] == 0.0  # 1 decimal: written by hand, not rounded
    assert rounding_tolerance(np.full((1, 64), 1 / 64).round(3))[0] == 0.01  # capped


def test_one_precise_or_bad_row_does_not_change_the_other_rows_tolerance(tmp_path: Path) -> None:
    """A full-precision row appended to a rounded table is read; a bad row is named, alone."""
    rounded = "1,0.201,0.201,0.201,0.201,0.198\n2,0.2,0.2,0.2,0.2,0.2\n"  # row 1: 5 cells of ±0.0005
    m = write(tmp_path / "m.csv", "index,loss\n1,1\n2,2\n3,3\n")
    precise = ",".join(repr(w) for w in (1 / 3, 1 / 6, 1 / 6, 1 / 6, 1 / 6))
    ok = write(tmp_path / "ok.csv", "index,a,b,c,d,e\n" + rounded + f"3,{precise}\n")
    with pytest.warns(MixoptWarning, match="renormalised"):
        assert read_run_tables(ok, m).X.shape == (3, 5)
    bad = write(tmp_path / "bad.csv", "index,a,b,c,d,e\n" + rounded + "3,0.5,0.5,0.25,0.25,0.0\n")
    with pytest.raises(MixoptError, match=r"^\S+: 1 run\(s\) do not sum to 1 .*: 3 \(sum 1.5\)"):
        read_run_tables(bad, m)


def test_nan_metrics_are_left_out_with_a_warning(tmp_path: Path) -> None:
    r = write(tmp_path / "r.csv", "index,a,b\n1,0.5,0.5\n2,0.3,0.7\n3,0.2,0.8\n")
    m = write(tmp_path / "m.csv", "index,loss,acc\n1,1.0,NaN\n2,,0.5\n3,3.0,0.7\n")
    t = read_run_tables(r, m)
    with pytest.warns(MixoptWarning, match=r"NaN, infinite or missing for 1 run\(s\) \(2\)"):
        X, y, ids = t.target_rows("loss")
    assert ids == ["1", "3"] and y.tolist() == [1.0, 3.0] and X.shape == (2, 2)
    with pytest.warns(MixoptWarning, match="2 run"):
        _, y, ids = t.target_rows("mean")
    assert ids == ["3"] and y[0] == pytest.approx(1.85)


def test_integer_ids_written_as_floats_join_their_integers(tmp_path: Path) -> None:
    """pandas writes an id column as 1.0, 2.0 once it held a gap; the other file says 1, 2."""
    r = write(tmp_path / "r.csv", "run,x,y\n1,0.5,0.5\n2,0.2,0.8\n3,0.6,0.4\n")
    m = write(tmp_path / "m.csv", "run,loss\n1.0,1\n2.0,2\n3.0,\n")
    t = read_run_tables(r, m)
    assert t.run_ids == ["1", "2", "3"]
    frac = write(tmp_path / "frac.csv", "run,loss\n1.5,1\n2.0,2\n")  # not all whole: ids kept as written
    with pytest.raises(MixoptError, match="no run of"):
        read_run_tables(r, frac)


def test_run_ids_and_names_are_kept_as_written(tmp_path: Path) -> None:
    """A QA pass: read as numbers, run ids 007, 1e3 and 1.50 had become 7, 1000 and 1.5 in the store
    and in a proposal's provenance; Olmix's names too."""
    r = write(tmp_path / "r.csv", "run,name,x,y\n007,010,0.5,0.5\n1e3,2023,0.2,0.8\n1.50,x,0.6,0.4\n")
    m = write(tmp_path / "m.csv", "run,loss\n1.50,3\n007,1\n1e3,2\n")
    t = read_run_tables(r, m)
    assert t.run_ids == ["007", "1e3", "1.50"] and t.names == ["010", "2023", "x"]
    assert read_ratios(r)[0] == ["007", "1e3", "1.50"]
    # the same integers written otherwise in the two files still join, as the ratios spell them (the
    # review: 001 against 1 had joined when ids were read as numbers)
    zr = write(tmp_path / "zr.csv", "run,x,y\n001,0.5,0.5\n002,0.2,0.8\n010,0.6,0.4\n")
    zm = write(tmp_path / "zm.csv", "run,loss\n10,3\n1,1\n2,2\n")
    z = read_run_tables(zr, zm)
    assert z.run_ids == ["001", "002", "010"] and z.target("loss").tolist() == [1.0, 2.0, 3.0]


def test_bad_tables(tmp_path: Path) -> None:
    m = write(tmp_path / "m.csv", "run,loss\na,1\nb,2\n")
    dup = write(tmp_path / "dup.csv", "run,x,y\na,0.5,0.5\na,0.4,0.6\nb,1,0\n")
    with pytest.raises(MixoptError, match="duplicate run ids.*a"):
        read_run_tables(dup, m)
    neg = write(tmp_path / "neg.csv", "run,x,y\na,-0.5,1.5\nb,1,0\n")
    with pytest.raises(MixoptError, match=r"negative weights in run\(s\) .*a"):
        read_run_tables(neg, m)
    # a domain no job can name, refused as the table is read, not at the proposal after the fit
    ctl = write(tmp_path / "ctl.csv", 'run,x,"y\nz"\na,0.5,0.5\nb,1,0\n')
    with pytest.raises(MixoptError, match=r"ctl.csv: column 'y\\nz' holds a control character"):
        read_run_tables(ctl, m)
    with pytest.raises(MixoptError, match="holds a control character"):
        read_ratios(ctl)
    nfd = write(tmp_path / "nfd.csv", "run,caf\u00e9,cafe\u0301\na,0.5,0.5\nb,1,0\n")
    with pytest.raises(MixoptError, match=r"nfd.csv: domains 'caf\u00e9' and 'cafe\u0301' are one name in "
                                          r"two Unicode spellings"):
        read_run_tables(nfd, m)
    # across the two files, and between an option and a file: said, where the names print alike
    nfc = write(tmp_path / "nfc.csv", "run,caf\u00e9,b\na,0.5,0.5\nb,1,0\n")
    loss = write(tmp_path / "loss.csv", "run,loss/cafe\u0301,loss/b\na,1,2\nb,2,1\n")
    with pytest.raises(MixoptError, match=r"loss.csv: column 'loss/cafe\u0301' names a domain of nfc.csv in "
                                          r"another spelling \('cafe\u0301' here is 'caf\u00e9' spelt in "
                                          r"another Unicode form: 'cafe\\u0301' against 'caf\\xe9'; spell "
                                          r"them alike\)"):
        read_run_tables(nfc, loss)
    t = read_run_tables(nfc, write(tmp_path / "ok.csv", "run,loss/caf\u00e9\na,1\nb,2\n"))
    with pytest.raises(MixoptError, match=r"is not a metric column; .*\('loss/cafe\u0301' here is 'loss/caf"
                                          r"\u00e9' spelt in another Unicode form"):
        t.target("loss/cafe\u0301")
    # a metric's: it had coloured the terminal in a warning naming it
    esc = write(tmp_path / "esc.csv", 'run,"x\x1b[31mred"\na,1\nb,2\n')
    with pytest.raises(MixoptError, match=r"esc.csv: column 'x\\x1b\[31mred' holds a control character"):
        read_run_tables(write(tmp_path / "ok.csv", "run,x,y\na,0.5,0.5\nb,1,0\n"), esc)
    nokey = write(tmp_path / "nokey.csv", "id,x,y\na,0.5,0.5\n")
    with pytest.raises(MixoptError, match="share neither"):
        read_run_tables(nokey, m)
    with pytest.raises(MixoptError, match="does not exist"):
        read_run_tables(tmp_path / "missing.csv", m)
    with pytest.raises(MixoptError, match=r"file .* is a folder; give the path to a CSV file"):
        read_run_tables(tmp_path, m)
    # binary files are named as such, not as "tab-separated" (their bytes hold any separator)
    import gzip

    import polars as pl

    pq, gz, raw = tmp_path / "r.parquet", tmp_path / "r.csv.gz", tmp_path / "r.bin"
    pl.DataFrame({"run": ["a", "b"], "x": [0.5, 1.0], "y": [0.5, 0.0]}).write_parquet(pq)
    gz.write_bytes(gzip.compress(b"run,x,y\na,0.5,0.5\n"))
    raw.write_bytes(b"run\tx\x00\x01y\n")
    for path, said in ((pq, "is a Parquet file"), (gz, "is gzip-compressed"), (raw, "is binary, not text")):
        with pytest.raises(MixoptError, match=f"ratios file .* {said}; mixopt reads comma-separated CSV"):
            read_run_tables(path, m)
    # Latin-1 had been read with U+FFFD in place of "é": a domain name no export could match
    latin = tmp_path / "latin.csv"
    latin.write_bytes("run,x,y\u00e9\na,0.5,0.5\n".encode("latin-1"))
    with pytest.raises(MixoptError, match=r"latin.csv is not UTF-8 text \(byte 7, line 1: b'\\xe9'\); save"):
        read_run_tables(latin, m)
    ragged = write(tmp_path / "ragged.csv", "run,x,y\na,0.5,0.5\nb,1,0,0.2\n")
    with pytest.raises(MixoptError, match="ragged.csv as CSV: line 3 has 4 fields, the header 3; fix or"):
        read_run_tables(ragged, m)
    ok = write(tmp_path / "ok.csv", "run,x,y\na,0.5,0.5\nb,1,0\n")
    t = read_run_tables(ok, m)
    with pytest.raises(MixoptError, match="give one of: mean, loss"):
        t.target("acc")
    other = write(tmp_path / "other.csv", "run,loss\nq,1\n")
    with pytest.raises(MixoptError, match="no run of"):
        read_run_tables(ok, other)
    text = write(tmp_path / "text.csv", "run,x,y,z\na,0.5,0.5,high\nb,1,0,low\n")
    with pytest.warns(MixoptWarning, match="non-numeric column.*z"):
        assert read_run_tables(text, m).domains == ("x", "y")
    # a column of numbers with a word among them is a broken cell, named, not a label column dropped
    m3 = write(tmp_path / "m3.csv", "run,loss\na,1\nb,2\nc,3\n")
    cell = write(tmp_path / "cell.csv", "run,x,y\na,0.5,0.5\nb,abc,0\nc,0.2,0.8\n")
    with pytest.raises(MixoptError, match=r"column 'x' holds numbers and non-numeric .* run\(s\) b"):
        read_run_tables(cell, m3)
    # ... but booleans and a column of words with one number-like word are labels, ignored as before
    labels = write(tmp_path / "labels.csv", "run,x,y,ckpt,model\na,0.5,0.5,true,gpt\nb,1,0,false,2024\n"
                   "c,0.2,0.8,true,llama\n")
    with pytest.warns(MixoptWarning, match="non-numeric column.*ckpt"):
        assert read_run_tables(labels, m3).domains == ("x", "y")
    mcell = write(tmp_path / "mcell.csv", "run,loss\na,1\nb,oops\n")
    with pytest.raises(MixoptError, match=r"mcell.csv: column 'loss' .* b \('oops'\)"):
        read_run_tables(ok, mcell)
    # pandas' index (a headerless column of increasing integers) is dropped; any other headerless
    # column is refused by its position, not dropped to surface as rows that do not sum to 1
    pandas = write(tmp_path / "pandas.csv", ",run,x,y\n3,a,0.5,0.5\n7,b,1,0\n")
    assert read_run_tables(pandas, m).domains == ("x", "y")
    trailing = write(tmp_path / "trailing.csv", "run,x,y,\na,0.5,0.5,\nb,1,0,\n")  # a comma ends each line
    assert read_run_tables(trailing, m).domains == ("x", "y")
    lost = write(tmp_path / "lost.csv", "run,x,,z\na,0.5,0.3,0.2\nb,0.2,0.3,0.5\n")
    with pytest.raises(MixoptError, match=r"lost.csv: column\(s\) 3 have no header; name each"):
        read_run_tables(lost, m)
    # ... and so is the index of a sampled or shuffled frame (first, unique, not increasing)
    shuffled = write(tmp_path / "shuffled.csv", ",run,x,y\n7,b,1,0\n3,a,0.5,0.5\n")
    assert read_run_tables(shuffled, m).domains == ("x", "y")
    repeated = write(tmp_path / "repeated.csv", ",run,x,y\n3,b,1,0\n3,a,0.5,0.5\n")  # not an index
    with pytest.raises(MixoptError, match=r"repeated.csv: column\(s\) 1 have no header"):
        read_run_tables(repeated, m)
    # blank lines at the end (or a line of spaces, CRLF) are no runs
    blank = write(tmp_path / "blank.csv", "run,x,y\r\na,0.5,0.5\r\nb,1,0\r\n   \r\n\r\n")
    assert read_run_tables(blank, m).run_ids == ["a", "b"]
    # percentages written as text are named, not ignored as a label (rows then "do not sum to 1")
    pct = write(tmp_path / "pct.csv", "run,x,y\na,50%,0.5\nb,100 %,0\n")
    with pytest.raises(MixoptError, match=r"pct.csv: column 'x' holds percentages written as text \('50%'\); "
                                          r"write them as fractions"):
        read_run_tables(pct, m)
    with pytest.raises(MixoptError, match=r"infinite weights in run\(s\) b \(by run id\); give every domain"):
        read_run_tables(write(tmp_path / "gap.csv", "run,x,y\na,0.5,0.5\nb,,1\n"), m)
    # a --predict file without a domain says so before its rows are checked
    with pytest.raises(MixoptError, match=r"lacks y"):
        read_ratios(write(tmp_path / "p.csv", "run,x\na,1\n"), domains=("x", "y"))


def test_read_ratios_alone() -> None:
    with pytest.warns(MixoptWarning):
        ids, domains, W, key = read_ratios(REGMIX / "test_mixture_1m.csv")
    assert key == "index" and len(ids) == 32 and len(domains) == 17 and W.shape == (32, 17)


def test_a_target_of_several_columns_is_their_weighted_mean(tmp_path: Path) -> None:
    r = write(tmp_path / "r.csv", "run,a,b\nx,0.5,0.5\ny,0.25,0.75\n")
    m = write(tmp_path / "m.csv", "run,l1,l2\nx,1.0,3.0\ny,2.0,4.0\n")
    t = read_run_tables(r, m)
    np.testing.assert_allclose(t.target("l1,l2"), [2.0, 3.0])
    np.testing.assert_allclose(t.target("l1=3,l2=1"), [1.5, 2.5])  # weights normalised: 0.75, 0.25
    assert t.target_weights("l1=3,l2=1") == {"l1": 0.75, "l2": 0.25}
    Y, w = t.target_parts("l2,l1", ["y"])
    np.testing.assert_array_equal(Y, [[4.0, 2.0]])
    assert w == {"l2": 0.5, "l1": 0.5}
    with pytest.raises(MixoptError, match=r"'mean' \(every column\) cannot be combined with columns"):
        t.target_weights("mean,l1")  # it had said 'mean' is not a metric column, then listed it
    with pytest.raises(MixoptError, match=r"'l3' is not a metric column"):
        t.target("l1,l3")
    # read as search --target reads domains (stop 44's walkthrough: fit alone refused these three)
    assert t.target_weights("l1 = 3, l2=1,") == {"l1": 0.75, "l2": 0.25}
    np.testing.assert_allclose(t.target("l1=0,l2=1"), [3.0, 4.0])  # a weight of 0 adds nothing
    with pytest.raises(MixoptError, match=r"'l1=-1' needs a finite weight ≥ 0"):
        t.target("l1=-1,l2=1")
    with pytest.raises(MixoptError, match=r"--target 'l1=0,l2=0': the weights are all 0"):
        t.target("l1=0,l2=0")
    with pytest.raises(MixoptError, match=r"--target ',' names no column"):
        t.target(",")
    with pytest.raises(MixoptError, match=r"--target 'l1,l1' names 'l1' twice; give each column once"):
        t.target("l1,l1")


def test_wrong_shaped_tables_are_named(tmp_path: Path) -> None:
    """A European-locale export, a transposed table, percentages, a column that is not a weight,
    and the two files given the wrong way round: each error says which."""
    m = write(tmp_path / "m.csv", "index,loss\n1,3.0\n2,3.1\n")
    ratios = write(tmp_path / "r.csv", "index,a,b\n1,0.5,0.5\n2,0.2,0.8\n")
    losses = write(tmp_path / "l.csv", "index,x,y\n1,3.0,3.5\n2,3.1,3.4\n")
    cases = [  # (file, its text, read as ratios alone or joined with m.csv, what the error says)
        ("semi.csv", "index;a;b\n1;0,5;0,5\n", "joined", "looks semicolon-separated; mixopt reads comma-"),
        ("tab.csv", "index\ta\tb\n1\t0.5\t0.5\n", "alone", "looks tab-separated"),
        ("t.csv", "domain,1,2\na,0.5,0.2\nb,0.5,0.8\n", "joined", r"t\.csv look\(s\) transposed: one column"),
        ("t.csv", "domain,1,2\na,0.5,0.2\nb,0.5,0.8\n", "alone", "it looks transposed"),
        ("pct.csv", "index,a,b\n1,50,50\n2,30.1,69.9\n", "joined", "look like percentages: divide them by"),
        ("seed.csv", "index,a,b,seed\n1,0.5,0.5,3\n2,0.2,0.8,4\n", "joined",
         r"column\(s\) seed hold values above 1, and the others sum to 1, so those are not weights"),
        ("seed1.csv", "index,a,b,seed\n1,0.5,0.5,3\n2,0.2,0.8,3\n", "joined", "the others sum to 1, so"),
        # weights that are all scaled alike are weights: "drop them" had said to delete every column
        ("twice.csv", "index,a,b\n1,1.0,1.0\n2,0.4,1.6\n", "joined", r"every row sums to 2: divide each"),
        # below 1 alike: a column left out (dividing would give other mixtures)
        ("half.csv", "index,a,b\n1,0.25,0.25\n2,0.1,0.4\n", "joined", r"sums to 0.5: is a domain's column"),
    ]
    for name, text, how, said in cases:
        path = write(tmp_path / name, text)
        with pytest.raises(MixoptError, match=said):
            read_run_tables(path, m) if how == "joined" else read_ratios(path)
    with pytest.raises(MixoptError, match="are the ratios and metrics files swapped"):
        read_run_tables(losses, ratios)
    read_run_tables(ratios, losses)  # the right way round
    # one table with both (its metrics would have read as domains, "not weights: drop them")
    with pytest.raises(MixoptError, match=r"--ratios and --metrics are the same file \(.*\); give the"):
        read_run_tables(ratios, tmp_path / "." / "r.csv")


def test_mean_target_leaves_out_bookkeeping_and_warns_on_scales(tmp_path: Path) -> None:
    """A wandb export's _step/_runtime are not metrics; a column 1000× the others drowns the mean."""
    r = write(tmp_path / "r.csv", "index,a,b\n1,0.5,0.5\n2,0.2,0.8\n3,0.9,0.1\n")
    m = write(tmp_path / "m.csv", "index,x,y,_step,_runtime\n1,3.0,3.5,1000,50\n2,3.1,3.4,1000,51\n"
                                  "3,2.9,3.6,1000,49\n")
    t = read_run_tables(r, m)
    with pytest.warns(MixoptWarning, match=r"leaves out bookkeeping column\(s\) _step, _runtime"):
        assert t.target_weights("mean") == {"x": 0.5, "y": 0.5}
    np.testing.assert_allclose(t.target("mean"), [3.25, 3.25, 3.25])
    assert t.target_weights("_step") == {"_step": 1.0}  # still a column to name
    m2 = write(tmp_path / "m2.csv", "index,x,y,ppm\n1,3.0,3.5,5000\n2,3.1,3.4,5000\n3,2.9,3.6,5000\n")
    with pytest.warns(MixoptWarning, match=r"very different scales \(ppm ~5e\+03; most ~3\.25\)"):
        read_run_tables(r, m2).target_weights("mean")
    # a user's own seed/step columns describe runs (a QA pass: each had made a sixth of the objective),
    # and an accuracy beside the losses would be minimised with them
    m3 = write(tmp_path / "m3.csv", "index,loss/a,loss/b,acc/hs,seed,step\n1,3.0,3.5,0.3,0,100\n"
                                    "2,3.1,3.4,0.31,0,100\n3,2.9,3.6,0.29,0,100\n")
    with pytest.warns(MixoptWarning) as said:
        weights = read_run_tables(r, m3).target_weights("mean")
    assert set(weights) == {"loss/a", "loss/b", "acc/hs"}
    text = " ".join(str(w.message) for w in said)
    assert "leaves out bookkeeping column(s) seed, step" in text
    assert "averages the loss columns with acc/hs" in text and "--target loss/a,loss/b" in text
    # a column named mean: the mean is of every column, said with the spelling for that column
    m4 = write(tmp_path / "m4.csv", "index,mean,x\n1,3.0,3.5\n2,3.1,3.4\n3,2.9,3.6\n")
    t4 = read_run_tables(r, m4)
    with pytest.warns(MixoptWarning, match="not the column named mean; give --target mean=1 for that column"):
        np.testing.assert_allclose(t4.target_rows("mean")[1], [3.25, 3.25, 3.25])
    np.testing.assert_allclose(t4.target_rows("mean=1")[1], [3.0, 3.1, 2.9])


def test_spaces_and_infinity_spellings_read_as_numbers(tmp_path: Path) -> None:
    # "1, 0.5" (a space after each comma) and "Infinity" read as text by polars: a whole column
    # was dropped as a label, with only a warning, and the fit went on without that domain
    r = write(tmp_path / "r.csv", "run, a, b\n1, 0.5, 0.5\n2, 0.25, 0.75\n3, 1, 0\n")
    m = write(tmp_path / "m.csv", "run,loss,other\n1,3.0,1\n2, 2.5 ,2\n3,Infinity,3\n")
    with pytest.warns(MixoptWarning, match=r"target 'loss' is NaN, infinite or missing for 1 run\(s\) \(3\)"):
        t = read_run_tables(r, m)
        X, y, ids = t.target_rows("loss")
    assert t.domains == ("a", "b") and t.metric_names == ["loss", "other"]
    assert ids == ["1", "2"] and y.tolist() == [3.0, 2.5]
    np.testing.assert_allclose(X, [[0.5, 0.5], [0.25, 0.75]])
    inf = write(tmp_path / "inf.csv", "run,a,b\n1,0.5,0.5\n2,Infinity,0\n3, NA ,1\n")
    with pytest.raises(MixoptError, match=r"missing, non-numeric or infinite weights in run\(s\) 2, 3"):
        read_run_tables(inf, m)
    # a header of spaces next to an empty one (a trailing comma): both unnamed, empty, dropped
    blank = write(tmp_path / "blank.csv", "run,a,b, ,\n1,0.5,0.5,,\n2,0.25,0.75,,\n3,1,0,,\n")
    with pytest.warns(MixoptWarning, match="target 'loss' is NaN"):
        assert read_run_tables(blank, m).target_rows("loss")[0].shape == (2, 2)
    twice = write(tmp_path / "twice.csv", "run,a, a\n1,0.5,0.5\n")
    with pytest.raises(MixoptError, match="names column.*a more than once"):
        read_run_tables(twice, m)


def test_a_mean_target_names_the_columns_with_no_value(tmp_path: Path) -> None:
    r = write(tmp_path / "r.csv", "run,a,b\n1,0.5,0.5\n2,0.25,0.75\n")
    m = write(tmp_path / "m.csv", "run,loss,broken\n1,3.0,\n2,2.5,NaN\n")
    t = read_run_tables(r, m)
    with pytest.raises(MixoptError, match=r"target 'mean' has no finite value in any run: column\(s\) broken "
                                          r"have none; name the columns to use \(--target c1,c2\)"):
        t.target_rows("mean")
    assert t.target_rows("loss")[1].tolist() == [3.0, 2.5]


def test_a_broken_cell_is_refused_only_where_its_column_is_used(tmp_path: Path) -> None:
    """One broken cell among many metric columns had refused a fit of another column (a QA pass);
    it is refused where the column is used: as the target, in ``mean``, or by ``runs import``."""
    from mixopt.search.imports import import_table
    from mixopt.store import RunStore

    r = write(tmp_path / "r.csv", "run,x,y\na,0.5,0.5\nb,1,0\nc,0.2,0.8\n")
    m = write(tmp_path / "m.csv", "run,loss,acc\na,1,0.5\nb,2,diverged\nc,3,0.7\n")
    t = read_run_tables(r, m)
    assert t.metric_names == ["loss"] and list(t.target("loss")) == [1, 2, 3]
    said = r"m.csv: column 'acc' holds numbers and non-numeric value\(s\) in run\(s\) b \('diverged'\)"
    for target in ("acc", "loss,acc", "loss=0.5,acc=0.5"):
        with pytest.raises(MixoptError, match=said):
            t.target(target)
    with pytest.raises(MixoptError, match="--target mean averages every column, and .*" + said):
        t.target("mean")
    book = write(tmp_path / "book.csv", "run,loss,_runtime\na,1,5\nb,2,n/a\nc,3,7\n")
    assert list(read_run_tables(r, book).target("mean")) == [1, 2, 3]  # _runtime is not averaged
    store = RunStore(tmp_path / "runs.sqlite")
    with pytest.raises(MixoptError, match=said):
        import_table(store, ratios=r, metrics=m)
    assert store.runs() == []  # nothing stored


def test_the_repeating_index_of_concatenated_frames_is_dropped_beside_a_run_column(tmp_path: Path) -> None:
    """A QA pass: two swarm tables joined by pd.concat and written with their index (0, 1, 0, 1) were
    refused for a column without a header; the rows are named by their own unique run column."""
    r = write(tmp_path / "r.csv", ",run,a,b\n0,m0,0.5,0.5\n1,m1,0.2,0.8\n0,m2,0.9,0.1\n1,m3,0.3,0.7\n")
    m = write(tmp_path / "m.csv", ",run,loss\n0,m0,3.0\n1,m1,3.1\n0,m2,2.9\n1,m3,3.2\n")
    t = read_run_tables(r, m)
    assert list(t.domains) == ["a", "b"] and len(t.target("loss")) == 4
    bad = write(tmp_path / "bad.csv", ",a,b\n0,0.5,0.5\n1,0.2,0.8\n0,0.9,0.1\n")  # nothing else names rows
    with pytest.raises(MixoptError, match="have no header"):
        read_ratios(bad)


def test_what_a_qa_pass_of_exported_tables_found(tmp_path: Path) -> None:
    """Tables that mixopt writes read back as written: a quoted header's quotes, weights that sum to 1
    but for the last bits (they had changed at every import), and a mean of loss and bpb is said."""
    r = write(tmp_path / "r.csv", 'run,"naïve ""q""",b\nx,0.1,0.9\ny,0.30000000000000004,0.7\n')
    m = write(tmp_path / "m.csv", "run,loss/a,bpb/a\nx,3.0,1.5\ny,3.1,1.6\n")
    t = read_run_tables(r, m)
    assert t.domains == ('naïve "q"', "b")
    twice = write(tmp_path / "r2.csv", 'run,"x""y","x""y",b\nx,0.1,0.1,0.8\n')  # a review: a traceback
    with pytest.raises(MixoptError, match=r"names column\(s\) .* more than once"):
        read_run_tables(twice, m)
    assert t.X[1][0] == 0.30000000000000004 and t.X[0].tolist() == [0.1, 0.9]  # as written, bit for bit
    said = (r"--target mean averages loss/<domain> and bpb/<domain> columns of 1 domain\(s\), the same "
            r"losses in two units; name one kind's columns \(--target loss/a\)")
    with pytest.warns(MixoptWarning, match=said):
        t.target_weights("mean")
    # a search's runs export holds its objective: that is named, and no example mixes the units (a
    # QA pass: the second warning had suggested --target loss/code,bpb/code)
    m2 = write(tmp_path / "m2.csv", "run,loss/a,bpb/a,objective\nx,3.0,1.5,3.0\ny,3.1,1.6,3.1\n")
    with pytest.warns(MixoptWarning) as said:
        read_run_tables(r, m2).target_weights("mean")
    hint = "give --target objective (the search's own objective), or name"
    assert [str(w.message).count(hint) for w in said] == [1, 1]
    assert all("bpb/a" not in str(w.message).split("(--target ")[-1] for w in said)


def test_tables_are_read_from_pipes_and_standard_input(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A table is read once, so a pipe (``<(…)``, /dev/stdin, ``-``) reads as a file does: it had been
    "does not exist" (a pipe is not a regular file), and its header and body were read twice."""
    import io
    import os
    import threading

    ratios, metrics = REGMIX / "test_mixture_1m.csv", REGMIX / "test_pile_loss_1m.csv"
    with pytest.warns(MixoptWarning, match="renormalised"):
        want = read_run_tables(ratios, metrics)
    fifo = tmp_path / "metrics.fifo"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_bytes(metrics.read_bytes()), daemon=True)
    writer.start()
    with pytest.warns(MixoptWarning, match="renormalised"):
        got = read_run_tables(ratios, fifo)
    writer.join()
    assert got.run_ids == want.run_ids and got.metrics.equals(want.metrics)
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(ratios.read_bytes())))
    with pytest.warns(MixoptWarning, match="renormalised"):
        got = read_run_tables("-", metrics)
    np.testing.assert_array_equal(got.X, want.X)
    with pytest.raises(MixoptError, match="cannot both be read from standard input"):
        read_run_tables("-", "-")
    with pytest.raises(MixoptError, match=r"metrics file .*nope\.csv does not exist"):
        read_run_tables(ratios, tmp_path / "nope.csv")
    with pytest.raises(MixoptError, match="metrics file /dev/zero is not a file or a pipe"):
        read_run_tables(ratios, "/dev/zero")  # read until memory ran out
    with pytest.raises(MixoptError, match="the metrics file's name is empty"):  # it had been ". is a folder"
        read_run_tables(ratios, "")
    with pytest.raises(MixoptError, match="the ratios file's name is empty"):  # not "the same file ()"
        read_run_tables("", "")


def test_standard_input_is_read_once_by_any_name(tmp_path: Path) -> None:
    """A QA pass: `--ratios - --metrics /dev/stdin` read the stream twice (the second read said "empty
    CSV"), and a fit report named `-` as a file in the current folder."""
    import subprocess
    import sys

    ratios, metrics = REGMIX / "test_mixture_1m.csv", REGMIX / "test_pile_loss_1m.csv"
    exe = str(Path(sys.executable).with_name("mixopt"))
    if not Path(exe).is_file():
        pytest.skip("no mixopt script beside this Python")
    both = subprocess.run([exe, "fit", "--ratios", "-", "--metrics", "/dev/stdin", "--target", "mean",
                           "--propose", "--out", str(tmp_path / "m.json")],
                          input=ratios.read_bytes(), capture_output=True, timeout=120)
    assert both.returncode == 2 and not (tmp_path / "m.json").exists()
    assert b"cannot both be read from standard input" in both.stderr, both.stderr
    one = subprocess.run([exe, "fit", "--ratios", "-", "--metrics", str(metrics), "--target", "mean",
                          "--method", "linear", "--propose", "--out", str(tmp_path / "m.json"),
                          "--report", str(tmp_path / "r")],
                         input=ratios.read_bytes(), capture_output=True, timeout=120)
    assert one.returncode == 0, one.stderr
    assert "- tables: `standard input` (mixtures)" in (tmp_path / "r" / "report.md").read_text()


def test_an_import_from_a_pipe_needs_a_prefix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default prefix is the ratios file's name: a pipe's ("63:" of /dev/fd/63) names nothing."""
    import io

    from mixopt.search.imports import import_table
    from mixopt.store import RunStore

    ratios, metrics = REGMIX / "test_mixture_1m.csv", REGMIX / "test_pile_loss_1m.csv"
    store = RunStore(tmp_path / "runs.sqlite")
    with pytest.raises(MixoptError, match="from a pipe .*--prefix"):
        import_table(store, ratios="-", metrics=metrics)
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(ratios.read_bytes())))
    with pytest.warns(MixoptWarning):
        summary = import_table(store, ratios="-", metrics=metrics, prefix="t:")
    assert summary["runs"] == 32 and store.get("t:1") is not None


def test_what_an_import_refuses_and_how_it_records_runs(tiny_workspace: Path, tmp_path: Path) -> None:
    """A mutation pass: the tests had passed with each of these dropped: the check that --evaluator is
    one module:function without spaces, that --tokens-per-step is finite, that a corpus's domains are
    all in the table (not only the table's in the corpus), the `diverged` status of a run without a
    finite metric, and the reading of a --fidelity params count (60M)."""
    from mixopt.search.imports import import_table
    from mixopt.store import RunStore

    store = RunStore(tmp_path / "runs.sqlite")
    ratios, metrics = tmp_path / "r.csv", tmp_path / "m.csv"
    ratios.write_text("run,code,docs,drama,legal\n1,0.25,0.25,0.25,0.25\n2,0.4,0.2,0.2,0.2\n")
    metrics.write_text("run,loss/code,loss/docs\n1,3.0,3.1\n2,nan,nan\n")
    for evaluator in ("mod:", "mod: f", "a:b:c"):
        with pytest.raises(MixoptError, match="give the module:function the runs were measured with"):
            import_table(store, ratios=ratios, metrics=metrics, evaluator=evaluator, prefix="e:")
    with pytest.raises(MixoptError, match="--tokens-per-step is inf"):
        import_table(store, ratios=ratios, metrics=metrics, evaluator="m:f", tokens_per_step=float("inf"))
    three = tmp_path / "r3.csv"  # the corpus's legal is not in the table
    three.write_text("run,code,docs,drama\n1,0.5,0.25,0.25\n2,0.4,0.3,0.3\n")
    with pytest.raises(MixoptError, match=r"the table lacks legal"):
        import_table(store, ratios=three, metrics=metrics, corpus="tiny", prefix="c:")
    with pytest.warns(MixoptWarning, match="NaN or infinite left out"):
        import_table(store, ratios=ratios, metrics=metrics, evaluator="m:f", prefix="t:",
                     fidelity={"params": "60M"})
    ok, diverged = store.get("t:1"), store.get("t:2")
    assert ok.status == "ok" and diverged.status == "diverged" and diverged.metrics == {}
    assert ok.fidelity["params"] == 60_000_000 and len(store.runs()) == 2
