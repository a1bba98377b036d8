"""scoring.py: per-token NLL checked against a hand-built bigram model whose probabilities are
known; shared-prefix, batched, padded and one-at-a-time scoring agree; sliding windows."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from expertlm.errors import ExpertlmError
from expertlm.eval.scoring import Scorer, reduce_nll
from expertlm.tokenizer import load_tokenizer

from lm_fixtures import bigram_model, bigram_table, expected_nll, make_tokenizer, random_gpt2

TEXT = "Knockout of the receptor increased firing in cortical neurons and impaired memory."


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return load_tokenizer(make_tokenizer(tmp_path_factory.mktemp("scoring") / "tok"))


@pytest.fixture(scope="module")
def bigram(tok):
    P = bigram_table(len(tok), seed=1)
    return P, bigram_model(P, n_positions=32)


class IdTokenizer:
    """Token ids are given directly; only the special-token ids matter."""

    bos_token_id = 0
    eos_token_id = 0
    pad_token_id = None


def rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b) / np.abs(b)))


def test_token_nll_equals_the_bigram_tables_nll(tok, bigram):
    P, model = bigram
    sc = Scorer(model, tok, device="cpu")
    ids = sc.encode(TEXT).ids
    assert ids == tok(TEXT, add_special_tokens=False)["input_ids"]  # GPT-2 style: no BOS added
    got = sc.token_nll([ids])[0]
    assert got.shape == (len(ids) - 1,)
    assert rel(got, expected_nll(P, ids)) < 1e-5


def test_bos_yes_scores_the_first_token_too(tok, bigram):
    P, model = bigram
    sc = Scorer(model, tok, device="cpu", bos=True)
    enc = sc.encode(TEXT)
    eot = tok.convert_tokens_to_ids("<|endoftext|>")
    assert enc.ids[0] == eot and enc.ids[1:] == tok(TEXT, add_special_tokens=False)["input_ids"]
    got = sc.token_nll([enc.ids])[0]
    assert rel(got, expected_nll(P, enc.ids)) < 1e-5
    assert got[0] == pytest.approx(-np.log(P[eot, enc.ids[1]]), rel=1e-5)


def test_sliding_window_scores_every_token_once(tok, bigram):
    P, model = bigram  # context 32; a bigram's NLL does not depend on how much context it sees
    ids = Scorer(model, tok, device="cpu").encode(TEXT * 4).ids
    assert len(ids) > 3 * 32
    for stride in (5, 16, 31):
        sc = Scorer(model, tok, device="cpu", stride=stride)
        got = sc.token_nll([ids])[0]
        assert sc.windowed == 1
        assert got.shape == (len(ids) - 1,)
        assert rel(got, expected_nll(P, ids)) < 1e-5


def test_sliding_window_gives_each_token_its_context():
    model = random_gpt2(50, n_positions=16)
    sc = Scorer(model, IdTokenizer(), device="cpu", stride=4)
    seq = list(np.random.default_rng(0).integers(0, 50, 40))
    got = sc.token_nll([seq])[0]
    full = Scorer(model, IdTokenizer(), device="cpu")
    # tokens 1..15 come from the first window, as the whole of seq[:16] scores them
    assert rel(got[:15], full.token_nll([seq[:16]])[0]) < 1e-5
    # tokens 16..19 from the window starting at 4: seq[4:20]'s last 4 predictions
    assert rel(got[15:19], full.token_nll([seq[4:20]])[0][-4:]) < 1e-5


def test_stride_must_fit_the_context():
    with pytest.raises(ExpertlmError, match="stride"):
        Scorer(random_gpt2(50, n_positions=16), IdTokenizer(), device="cpu", stride=16)


def pairs_with_a_stem(n: int, vocab: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    stem = list(rng.integers(0, vocab, 10))  # a shared "template"
    pairs = []
    for _ in range(n):
        length = int(rng.integers(8, 40))
        p = int(rng.integers(1, length - 2))
        a = stem + list(rng.integers(0, vocab, length))
        b = a[: len(stem) + p] + list(rng.integers(0, vocab, length - p + int(rng.integers(-2, 3))))
        pairs.append((a, b))
    return pairs


def tiny_llama(vocab: int):
    """Rotary positions and grouped-query attention: another cache and position layout."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)  # fmt: skip
    return LlamaForCausalLM._from_config(cfg, attn_implementation="sdpa").eval()


@pytest.mark.parametrize("batch_size", [1, 3, 8])
@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_shared_prefix_batched_equals_one_at_a_time(batch_size, side, arch):
    model = random_gpt2(64, n_positions=64) if arch == "gpt2" else tiny_llama(64)
    pairs = pairs_with_a_stem(11, 64)
    one = Scorer(model, IdTokenizer(), device="cpu", batch_size=1)
    ref = [(one.token_nll([a])[0], one.token_nll([b])[0]) for a, b in pairs]
    sc = Scorer(model, IdTokenizer(), device="cpu", batch_size=batch_size, padding_side=side)
    got = sc.pair_nll(pairs)
    assert sc._stem_memo is not None and len(sc._stem_memo.ids) >= 10  # the stem ran once
    for (ga, gb), (ra, rb) in zip(got, ref, strict=True):
        assert ga.shape == ra.shape and gb.shape == rb.shape
        assert rel(ga, ra) < 1e-5 and rel(gb, rb) < 1e-5
        assert np.sign(ga.mean() - gb.mean()) == np.sign(ra.mean() - rb.mean())
    # plain batched scoring (no prefix sharing) agrees too
    flat = sc.token_nll([s for p in pairs for s in p])
    for g, (ra, rb) in zip(zip(flat[0::2], flat[1::2], strict=True), ref, strict=True):
        assert rel(g[0], ra) < 1e-5 and rel(g[1], rb) < 1e-5


def test_pairs_without_a_usable_shared_prefix_fall_back():
    model = random_gpt2(64, n_positions=32)
    sc = Scorer(model, IdTokenizer(), device="cpu")
    one = Scorer(model, IdTokenizer(), device="cpu")
    nested = ([1, 2, 3, 4, 5], [1, 2, 3])  # one version is a prefix of the other
    first_differs = ([7, 2, 3], [8, 2, 3])
    long = (list(range(1, 41)), list(range(1, 39)) + [60, 61])  # longer than the context
    got = sc.pair_nll([nested, first_differs, long])
    for (ga, gb), (a, b) in zip(got, [nested, first_differs, long], strict=True):
        assert rel(ga, one.token_nll([a])[0]) < 1e-5 and rel(gb, one.token_nll([b])[0]) < 1e-5
    assert sc.windowed == 2


@pytest.mark.parametrize("batch_size", [1, 3, 8])
@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_choice_nll_of_pairs_is_pair_nll_exactly(batch_size, side, arch):
    fallback = [([1, 2, 3, 4, 5], [1, 2, 3]), ([7, 2, 3], [8, 2, 3]),
                (list(range(1, 41)), list(range(1, 39)) + [60, 61])]  # fmt: skip
    model = random_gpt2(64, n_positions=64) if arch == "gpt2" else tiny_llama(64)
    short = random_gpt2(64, n_positions=32)  # the fallback pairs' model
    for m, pairs in ((model, pairs_with_a_stem(11, 64)), (short, fallback)):
        opts = {"device": "cpu", "batch_size": batch_size, "padding_side": side}
        got = Scorer(m, IdTokenizer(), **opts).choice_nll(pairs)
        want = Scorer(m, IdTokenizer(), **opts).pair_nll(pairs)
        assert len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            assert len(g) == 2 and all(np.array_equal(x, y) for x, y in zip(g, w, strict=True))


def items_with_a_stem(n: int, n_choices: tuple[int, ...], vocab: int, seed: int = 0):
    """`n` items after a shared stem; item k has n_choices[k % len(n_choices)] sequences, each
    leaving the first at its own point (so the item's shared prefix is the earliest)."""
    rng = np.random.default_rng(seed)
    stem = list(rng.integers(0, vocab, 10))
    items = []
    for k in range(n):
        length = int(rng.integers(8, 40))
        first = stem + list(rng.integers(0, vocab, length))
        seqs = [first]
        for _ in range(n_choices[k % len(n_choices)] - 1):
            p = int(rng.integers(1, length - 2))
            tail = rng.integers(0, vocab, length - p + int(rng.integers(-2, 3)))
            seqs.append(first[: len(stem) + p] + list(tail))
        items.append(seqs)
    return items


@pytest.mark.parametrize("batch_size", [1, 3])
@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("arch", ["gpt2", "llama"])
@pytest.mark.parametrize("n_choices", [(3,), (4,), (2, 3)])
def test_choice_nll_equals_one_at_a_time(n_choices, batch_size, side, arch):
    model = random_gpt2(64, n_positions=64) if arch == "gpt2" else tiny_llama(64)
    items = items_with_a_stem(9, n_choices, 64)
    one = Scorer(model, IdTokenizer(), device="cpu", batch_size=1)
    sc = Scorer(model, IdTokenizer(), device="cpu", batch_size=batch_size, padding_side=side)
    got = sc.choice_nll(items)
    assert sc._stem_memo is not None and len(sc._stem_memo.ids) >= 10  # the stem ran once
    assert [len(g) for g in got] == [len(seqs) for seqs in items]
    for g, seqs in zip(got, items, strict=True):
        for nll, seq in zip(g, seqs, strict=True):
            ref = one.token_nll([seq])[0]
            assert nll.shape == ref.shape and rel(nll, ref) < 1e-5


def test_n_way_items_without_a_usable_shared_prefix_fall_back():
    model = random_gpt2(64, n_positions=32)
    sc = Scorer(model, IdTokenizer(), device="cpu")
    one = Scorer(model, IdTokenizer(), device="cpu")
    nested = [[1, 2, 3, 4, 5], [1, 2, 3, 9], [1, 2, 3]]  # one choice is the shared prefix
    first_differs = [[7, 2, 3], [7, 2, 4], [8, 2, 3]]
    long = [list(range(1, 41)), list(range(1, 39)) + [60, 61], list(range(1, 30))]  # 2 > 32
    shared = [[5, 6, 7, 8, 9], [5, 6, 7, 1], [5, 6, 2, 2, 2, 2]]  # scored from its prefix
    items = [nested, first_differs, long, shared]
    got = sc.choice_nll(items)
    for g, seqs in zip(got, items, strict=True):
        for nll, seq in zip(g, seqs, strict=True):
            assert rel(nll, one.token_nll([seq])[0]) < 1e-5
    assert sc.windowed == 2


def test_encode_marks_where_the_abstract_starts(tok, bigram):
    _, model = bigram
    sc = Scorer(model, tok, device="cpu")
    prompt = "You are a neuroscientist. Here is an abstract: " + TEXT
    start = prompt.index(TEXT)
    enc = sc.encode(prompt, start)
    pieces = tok.convert_ids_to_tokens(enc.ids)
    assert "".join(pieces[enc.first :]).replace("Ġ", " ").strip() == TEXT
    assert tok.decode(enc.ids[: enc.first]).strip() == prompt[:start].strip()


def test_reduce_nll_mean_sum_and_first_token():
    nll = np.array([1.0, 2.0, 3.0, 6.0])  # tokens 1..4
    assert reduce_nll(nll) == 3.0
    assert reduce_nll(nll, reduction="sum") == 12.0
    assert reduce_nll(nll, first=3) == 4.5  # tokens 3 and 4
    assert reduce_nll(nll, first=3, reduction="sum") == 9.0
    assert np.isnan(reduce_nll(np.zeros(0)))


def test_log_probs_are_float32_for_a_bf16_model():
    model = random_gpt2(64, n_positions=32).to(torch.bfloat16)
    sc = Scorer(model, IdTokenizer(), device="cpu")
    seq = list(range(1, 20))
    got = sc.token_nll([seq])[0]
    with torch.no_grad():
        logits = model(torch.tensor([seq])).logits[0, :-1].float()
    want = -torch.log_softmax(logits, -1).gather(-1, torch.tensor(seq[1:])[:, None]).squeeze(-1)
    assert got.dtype == np.float64
    assert rel(got, want.double().numpy()) < 1e-6
