"""Exact and near (MinHash + LSH) deduplication."""

from __future__ import annotations

import random

import numpy as np
import pytest

from expertlm.corpus.clean import words
from expertlm.corpus.dedup import ExactDedup, NearDedup


def random_words(n: int, seed: int) -> list[str]:
    """`n` pseudo-words from a large vocabulary, so that unrelated texts share no 5-gram."""
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    return ["".join(rng.choice(letters) for _ in range(rng.randint(3, 9))) for _ in range(n)]


def jaccard(a: str, b: str, n: int = 5) -> float:
    """Jaccard similarity of the sets of word n-grams, computed independently of dedup.py."""

    def grams(text):
        w = words(text)
        return {tuple(w[i : i + n]) for i in range(len(w) - n + 1)}

    ga, gb = grams(a), grams(b)
    return len(ga & gb) / len(ga | gb)


def test_exact_dedup_keeps_the_first_and_flags_later_copies():
    d = ExactDedup()
    assert d.is_duplicate("alpha beta") is False
    assert d.is_duplicate("alpha gamma") is False
    assert d.is_duplicate("alpha beta") is True
    assert d.is_duplicate("alpha beta") is True
    assert d.is_duplicate("Alpha beta") is False  # exact means exact: case matters
    assert d.is_duplicate("alpha beta ") is False


def test_near_dedup_flags_a_copy_with_one_word_changed():
    base = random_words(300, seed=1)
    edited = list(base)
    edited[150] = "substituted"
    a, b = " ".join(base), " ".join(edited)
    assert jaccard(a, b) > 0.95  # 291 of 301 shingles shared
    d = NearDedup(threshold=0.8, num_perm=128, shingle_words=5)
    assert d.is_duplicate(a) is False
    assert d.is_duplicate(b) is True


def test_near_dedup_ignores_case_and_punctuation():
    base = random_words(300, seed=2)
    a = " ".join(base)
    b = ", ".join(w.upper() for w in base) + "."
    d = NearDedup()
    assert d.is_duplicate(a) is False
    assert d.is_duplicate(b) is True


def test_near_dedup_does_not_flag_unrelated_documents():
    d = NearDedup(threshold=0.8)
    texts = [" ".join(random_words(300, seed=s)) for s in range(10, 20)]
    assert [d.is_duplicate(t) for t in texts] == [False] * 10


def test_near_dedup_threshold_matters():
    base = random_words(300, seed=3)
    half = base[:180] + random_words(120, seed=4)  # the first 60% of the words shared
    a, b = " ".join(base), " ".join(half)
    j = jaccard(a, b)
    assert 0.35 < j < 0.5  # 176 shared of 416 distinct shingles
    strict = NearDedup(threshold=0.8)
    assert strict.is_duplicate(a) is False
    assert strict.is_duplicate(b) is False
    loose = NearDedup(threshold=0.25)
    assert loose.is_duplicate(a) is False
    assert loose.is_duplicate(b) is True


def test_near_dedup_only_indexes_kept_documents():
    # A flagged document is not indexed, so it cannot make a later document a duplicate.
    base = random_words(300, seed=5)
    a = " ".join(base)
    d = NearDedup()
    assert d.is_duplicate(a) is False
    copies = []
    for k in range(3):
        w = list(base)
        w[50 + 60 * k] = f"edit{k}"
        copies.append(" ".join(w))
    assert [d.is_duplicate(c) for c in copies] == [True, True, True]
    assert d.is_duplicate(" ".join(random_words(300, seed=6))) is False


def test_short_documents_are_compared_whole():
    d = NearDedup()
    assert d.is_duplicate("tiny text") is False
    assert d.is_duplicate("Tiny, text!") is True
    assert d.is_duplicate("other tiny") is False


# --- the primitives: the same signatures as datasketch, whatever the blocks ----------------------


def test_signatures_are_datasketchs_affine32_minhash():
    datasketch = pytest.importorskip("datasketch")
    if int(datasketch.__version__.split(".")[0]) < 2:
        pytest.skip("datasketch < 2 has another permutation scheme")
    from datasketch import MinHash, MinHashLSH
    from datasketch.lsh import _optimal_param

    from expertlm.corpus.dedup import MinHasher, lsh_params, shingle_hashes

    hasher = MinHasher(num_perm=128, shingle_words=5, seed=1)
    for text in ["", "one", "a b c d", " ".join(random_words(3000, seed=9))]:
        m = MinHash(num_perm=128, seed=1, hashfunc=int)
        for block in shingle_hashes(text, 5):
            m.update_batch(block.tolist())
        assert (hasher.signature(text) == m.hashvalues).all()
    cases = [(t, 128) for t in (0.5, 0.7, 0.8, 0.9)]
    cases += [(round(t, 2), n) for n in (32, 64) for t in np.arange(0.3, 0.96, 0.05)]
    for threshold, num_perm in cases:  # (Gauss-Legendre here, scipy's adaptive quad there)
        # the function MinHashLSH calls (which itself refuses the cases that give one band)
        expected = _optimal_param(threshold, num_perm, 0.5, 0.5)
        assert lsh_params(threshold, num_perm) == expected, (threshold, num_perm)
    lsh = MinHashLSH(threshold=0.8, num_perm=128)
    assert lsh_params(0.8, 128) == (lsh.b, lsh.r)


def test_shingles_and_words_do_not_depend_on_blocks_or_chunks(monkeypatch):
    from expertlm.corpus import clean, dedup

    text = " ".join(random_words(5000, seed=11)) + " Straße ﬁbre ΣΑΣ naïve İstanbul K"
    whole = {n: set(np.concatenate(list(dedup.shingle_hashes(text, n))).tolist()) for n in (1, 5)}
    monkeypatch.setattr(dedup, "BLOCK_WORDS", 7)
    monkeypatch.setattr(clean, "_CHUNK_CHARS", 13)
    for n in (1, 5):
        assert set(np.concatenate(list(dedup.shingle_hashes(text, n))).tolist()) == whole[n]
    assert [w for b in dedup.iter_word_blocks(text) for w in b] == words(text)
    pieces = list(clean.casefold_chunks("x" * 40 + " y"))  # no break within a chunk's length
    assert [w for c in pieces for w in clean.word_pattern.findall(c)] == ["x" * 40, "y"]
