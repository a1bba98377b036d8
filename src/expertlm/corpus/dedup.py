"""Deduplication primitives: exact (hash of the cleaned text) and near (MinHash + LSH bands).

A document's near-duplicate signature is the MinHash of its word shingles (`shingle_words`-grams
of the case-folded words), with datasketch 2.0's `affine32` scheme (the MurmurHash3 finaliser on
each shingle hash, then `a * h + b mod 2**32` per permutation, `a` odd, drawn from
`RandomState(seed)` as datasketch draws them), computed here in numpy so that the signatures do
not change with the installed datasketch. The LSH bands and rows are datasketch's optimal ones
for the threshold (`lsh_params`); a band's key is a 64-bit hash of its rows.

`corpus build` applies these through the bounded index of `corpus/index.py`; `ExactDedup` and
`NearDedup` are the same decisions kept in memory, one document at a time (the first occurrence
is kept, later copies are dropped, and only kept documents are indexed). Within a document,
shingles are hashed a block at a time, so one huge document needs no more memory than a block.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from functools import cache

import numpy as np

from expertlm.corpus.clean import casefold_chunks, word_pattern
from expertlm.hashing import mix64


def text_digest(text: str) -> bytes:
    """16 bytes that identify a cleaned text: what exact deduplication compares."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()


class ExactDedup:
    def __init__(self) -> None:
        self._seen: set[bytes] = set()

    def is_duplicate(self, text: str) -> bool:
        """True if this exact text was seen before; otherwise remember it."""
        digest = text_digest(text)
        if digest in self._seen:
            return True
        self._seen.add(digest)
        return False


_MIX1 = np.uint64(0x9E3779B97F4A7C15)  # golden-ratio multiplier (polynomial base)
_MIX2 = np.uint64(0xBF58476D1CE4E5B9)  # splitmix64 finaliser constant
_MIX3 = np.uint64(0x94D049BB133111EB)  # splitmix64 finaliser constant


# Words hashed per block: a document's shingles are hashed and permuted a block at a time, so
# memory stays near a block's worth (num_perm x 4 bytes a shingle while permuting).
BLOCK_WORDS = 16_384
# Distinct words whose hashes are remembered (per process; ~120 bytes each). Words follow Zipf's
# law, so most lookups hit; the cache is emptied when full, so memory stays bounded.
CACHE_WORDS = 200_000
_word_hashes: dict[str, int] = {}


def _hash_words(words: list[str]) -> np.ndarray:
    """(len(words),) uint64: the first 8 bytes (little-endian) of each word's blake2b."""
    lookup = _word_hashes.__getitem__  # (map over a bound method: no Python frame a word)
    try:
        return np.array(list(map(lookup, words)), dtype=np.uint64)
    except KeyError:  # a word not seen yet (most documents have one): hash the new ones, again
        pass
    if len(_word_hashes) > CACHE_WORDS:
        _word_hashes.clear()
    for w in set(words).difference(_word_hashes):
        digest = hashlib.blake2b(w.encode(), digest_size=8).digest()
        _word_hashes[w] = int.from_bytes(digest, "little")
    return np.array(list(map(lookup, words)), dtype=np.uint64)


def iter_word_blocks(text: str) -> Iterator[list[str]]:
    """The case-folded words (`clean.words`) of `text` in order, in lists of at most
    `BLOCK_WORDS`: memory does not grow with the document."""
    block: list[str] = []
    for chunk in casefold_chunks(text):
        block += word_pattern.findall(chunk)
        while len(block) >= BLOCK_WORDS:
            yield block[:BLOCK_WORDS]
            block = block[BLOCK_WORDS:]
    if block:
        yield block


def shingle_hashes(text: str, n: int) -> Iterator[np.ndarray]:
    """32-bit hashes of the word n-grams of the case-folded text, in order, as uint32 arrays of
    at most `BLOCK_WORDS` (one hash of all words if the text has fewer than `n`).

    Each word is hashed once (blake2b, cached across documents); an n-gram's hash is a
    polynomial over its words' hashes with a splitmix64 finish, vectorised in numpy.
    """
    carry = np.empty(0, dtype=np.uint64)  # the last n - 1 word hashes of the previous block
    seen = 0
    for block in iter_word_blocks(text):
        wh = np.concatenate([carry, _hash_words(block)])
        seen += len(block)
        if len(wh) >= n:
            yield _polynomial(wh, n, len(wh) - n + 1)
            carry = wh[len(wh) - (n - 1) :]
        else:
            carry = wh
    if seen < n:  # the whole text has fewer than n words (none at all: the hash of nothing)
        yield _polynomial(carry, len(carry), 1)


def _polynomial(wh: np.ndarray, width: int, count: int) -> np.ndarray:
    """(count,) uint32: the hashes of the `count` windows of `width` word hashes of `wh`."""
    h = np.zeros(count, dtype=np.uint64)
    for k in range(width):  # uint64 arithmetic wraps: a polynomial hash mod 2**64
        h = h * _MIX1 + wh[k : k + count]
    h ^= h >> np.uint64(31)
    h *= _MIX2
    h ^= h >> np.uint64(29)
    return (h >> np.uint64(32)).astype(np.uint32)


def _fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finaliser (datasketch 2.0 applies it before the permutations)."""
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h ^= h >> np.uint32(13)
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


# Shingles permuted at once: (rows, num_perm) uint32 stays in the CPU cache.
_PERMUTE_ROWS = 1024


class MinHasher:
    """MinHash signatures of word shingles: `signature(text)` is `(num_perm,)` uint32."""

    def __init__(self, num_perm: int = 128, shingle_words: int = 5, seed: int = 1) -> None:
        self.num_perm, self.n, self.seed = num_perm, shingle_words, seed
        # datasketch's affine32 draw (MinHash._init_permutations): a odd, then b
        gen = np.random.RandomState(seed)
        self.a = gen.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
        self.b = gen.randint(0, 1 << 32, num_perm, dtype=np.uint32)
        self._buf = np.empty((_PERMUTE_ROWS, num_perm), dtype=np.uint32)

    def signature(self, text: str) -> np.ndarray:
        sig = np.full(self.num_perm, 0xFFFFFFFF, dtype=np.uint32)
        for block in shingle_hashes(text, self.n):  # a running minimum: blocks give the same
            mixed = _fmix32(block)
            for i in range(0, len(mixed), _PERMUTE_ROWS):
                h = mixed[i : i + _PERMUTE_ROWS]
                x = self._buf[: len(h)]
                np.multiply(h[:, None], self.a, out=x)  # (rows, num_perm), wraps mod 2**32
                x += self.b
                np.minimum(sig, x.min(axis=0), out=sig)
        return sig


@cache
def lsh_params(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows): datasketch's `_optimal_param` with equal weights, the (b, r), b * r <=
    num_perm, that minimises the summed false-positive and false-negative probability mass of
    the S-curve 1 - (1 - s**r)**b about `threshold` (the first minimum, b then r ascending).

    datasketch integrates each of the ~600 pairs with scipy's adaptive `quad` (0.5 s at 128
    permutations, paid by every worker process). The integrands are polynomials in s of degree
    b * r <= num_perm, which Gauss-Legendre quadrature with num_perm // 2 + 1 nodes integrates
    exactly, so all pairs are computed at once here, to float rounding (a test checks the choice
    against datasketch's)."""
    pairs = np.array([(b, r) for b in range(1, num_perm + 1) for r in range(1, num_perm // b + 1)])
    b, r = (pairs[:, i, None].astype(np.float64) for i in (0, 1))
    x, w = np.polynomial.legendre.leggauss(num_perm // 2 + 1)  # nodes and weights on [-1, 1]

    def integral(f, lo: float, hi: float) -> np.ndarray:
        s = lo + (hi - lo) * (x + 1) / 2
        return f(s[None, :]) @ w * (hi - lo) / 2

    false_positive = integral(lambda s: 1 - (1 - s**r) ** b, 0.0, threshold)
    false_negative = integral(lambda s: (1 - s**r) ** b, threshold, 1.0)
    bands, rows = pairs[int(np.argmin(0.5 * false_positive + 0.5 * false_negative))].tolist()
    return bands, rows


def band_keys(sigs: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(docs, bands) uint64: a 64-bit hash of each band's `rows` values and the band's index.
    Two documents are LSH candidates when they share a key (a collision, odds ~2**-64 a pair,
    only adds a candidate, which must still pass the Jaccard check)."""
    x = sigs[:, : bands * rows].reshape(len(sigs), bands, rows).astype(np.uint64)
    h = np.broadcast_to(np.arange(1, bands + 1, dtype=np.uint64) * _MIX3, x.shape[:2]).copy()
    for k in range(rows):
        h = h * _MIX1 + x[:, :, k]
    return mix64(h)


def similar(a: np.ndarray, b: np.ndarray, threshold: float) -> bool:
    """Whether two signatures' estimated Jaccard similarity reaches `threshold`."""
    return float(np.mean(a == b)) >= threshold


class NearDedup:
    """MinHash signatures indexed by LSH bands, in memory; LSH candidates are confirmed by their
    estimated Jaccard similarity, so a document is dropped only when it is really above the
    threshold. (`corpus build` takes the same decisions with the bounded index.)"""

    def __init__(
        self, threshold: float = 0.8, num_perm: int = 128, shingle_words: int = 5, seed: int = 1
    ) -> None:
        self.threshold = threshold
        self.hasher = MinHasher(num_perm, shingle_words, seed)
        self.bands, self.rows = lsh_params(threshold, num_perm)
        self._buckets: dict[int, list[int]] = {}
        self._sigs: list[np.ndarray] = []

    def is_duplicate(self, text: str) -> bool:
        """True if a kept document is a near duplicate of `text`; otherwise index `text`."""
        sig = self.hasher.signature(text)
        keys = band_keys(sig[None], self.bands, self.rows)[0].tolist()
        candidates = {j for k in keys for j in self._buckets.get(k, ())}
        if any(similar(self._sigs[j], sig, self.threshold) for j in sorted(candidates)):
            return True
        for k in keys:
            self._buckets.setdefault(k, []).append(len(self._sigs))
        self._sigs.append(sig)
        return False
