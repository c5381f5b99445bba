"""BiMix's entropy mixture: the bigram estimate behaves like a conditional entropy, and ``mixopt entropy``
writes a mixture inside the space from the tiny corpus."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mixopt.entropy import bigram_entropy, entropy_mixture, entropy_weights
from mixopt.errors import MixoptError
from mixopt.mixture import EVIDENCE_KEYS


def test_bigram_entropy_orders_predictable_and_random_text() -> None:
    rng = np.random.default_rng(0)
    V = 64
    cycle = np.tile(np.arange(V), 400)  # each token fully determines the next: H(X_t | X_t-1) ≈ 0
    noise = rng.integers(0, V, len(cycle))  # independent tokens: H ≈ log V
    h_cycle = bigram_entropy(cycle[:20000], cycle[20000:], V)
    h_noise = bigram_entropy(noise[:20000], noise[20000:], V)
    assert h_cycle < 0.05
    assert abs(h_noise - np.log(V)) < 0.15  # held-out estimate: a little above log V, never far
    offsets = np.array([0, 100, 200, len(cycle[:20000])])
    assert bigram_entropy(cycle[:20000], cycle[20000:], V, train_offsets=offsets) < 0.05
    with pytest.raises(MixoptError, match="at least 2"):
        bigram_entropy(cycle[:1], cycle, V)


def test_the_counted_head_of_a_domain_pairs_no_tokens_across_documents() -> None:
    """Stop 29's note: cut at max_tokens, the offsets' last start was read as the end, and the pair
    across that document boundary was counted."""
    from mixopt.entropy import _head, _pairs

    tokens = np.arange(10)
    offsets = np.array([0, 3, 6, 10])  # documents 0-2, 3-5, 6-9
    tr, off = _head(tokens, offsets, 7)  # the head ends one token into the third document
    prev, nxt = _pairs(tr, off)
    assert list(zip(prev.tolist(), nxt.tolist(), strict=True)) == [(0, 1), (1, 2), (3, 4), (4, 5)]
    tr, off = _head(tokens, offsets, 6)  # a cut on a boundary
    assert off.tolist() == [0, 3, 6] and len(_pairs(tr, off)[0]) == 4
    assert _head(tokens, offsets, 10)[1] is offsets  # nothing cut


def test_entropy_weights_follow_bimix_softmax() -> None:
    w = entropy_weights(np.array([4.0, 5.0, 3.0]))
    np.testing.assert_allclose(w, np.exp([4.0, 5.0, 3.0]) / np.exp([4.0, 5.0, 3.0]).sum())
    np.testing.assert_allclose(entropy_weights(np.array([1.0, 3.0]), normalize="proportional"), [0.25, 0.75])
    for t in (0.0, float("inf"), float("nan")):  # inf had been written to the JSON as Infinity
        with pytest.raises(MixoptError, match="--temperature must be a finite number > 0"):
            entropy_weights(np.array([1.0, 3.0]), temperature=t)


def test_entropy_mixture_on_the_tiny_corpus(
    tiny_corpus, workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:  # noqa: ANN001
    from mixopt.cli import main
    from mixopt.space import SearchSpace

    em = entropy_mixture(tiny_corpus)
    assert set(em.weights) == set(tiny_corpus.domains) and abs(sum(em.weights.values()) - 1) < 1e-12
    assert all(0 < h < np.log(tiny_corpus.vocab_size) for h in em.entropy.values())
    order = sorted(em.entropy, key=em.entropy.get)
    assert sorted(em.weights, key=em.weights.get) == order  # more entropy, more weight
    space = SearchSpace(domains=tuple(tiny_corpus.domains), ceilings={order[-1]: 0.2})
    bounded = entropy_mixture(tiny_corpus, space)
    assert bounded.projected and space.contains([bounded.weights[d] for d in space.domains], tol=1e-9)
    out = workspace / "ent.json"
    main(["entropy", str(tiny_corpus.path), "--max-weight", f"{order[-1]}=0.2", "--out", str(out)])
    mix = json.loads(out.read_text())
    assert list(mix) == ["schema", "weights", *EVIDENCE_KEYS, "created"]  # as a search's
    assert mix["predicted"] is None and mix["baselines"] == {} and mix["provenance"]["run_ids"] == []
    assert mix["method"] == "entropy" and mix["weights"][order[-1]] <= 0.2 + 1e-9
    assert "bigram" in mix["params"]["estimator"]
    plan = mix["tokens"]  # at the corpus's own size: each domain's tokens at the target, as search writes
    assert plan["target_tokens"] == sum(tiny_corpus.train_tokens().values())
    for d, w in mix["weights"].items():
        assert plan["per_domain"][d] == pytest.approx(w * plan["target_tokens"])
    with pytest.raises(SystemExit) as exc:
        main(["entropy", str(tiny_corpus.path), "--min-weight", "0.3"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "lower bounds sum to 1.2 > 1 (--min-weight 0.3 × 4 domain(s): " in err
    # --max-epochs alone caps at the corpus's own size (as a search does): one pass = its token share.
    main(["entropy", str(tiny_corpus.path), "--max-epochs", "1", "--out", str(out)])
    capped = json.loads(out.read_text())["weights"]
    tokens = tiny_corpus.train_tokens()
    assert all(capped[d] <= tokens[d] / sum(tokens.values()) + 1e-9 for d in tokens)
    # The temperature is the softmax's: refused with proportional weights, not recorded unused.
    with pytest.raises(SystemExit) as exc:
        main(["entropy", str(tiny_corpus.path), "--normalize", "proportional", "--temperature", "5"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1 and "--temperature is the softmax's" in err[0]
    main(["entropy", str(tiny_corpus.path), "--normalize", "proportional", "--out", str(out)])
    assert "temperature" not in json.loads(out.read_text())["params"]
    main(["entropy", str(tiny_corpus.path), "--temperature", "5", "--out", str(out)])
    assert json.loads(out.read_text())["params"]["temperature"] == 5.0
