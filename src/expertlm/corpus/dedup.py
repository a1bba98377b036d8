"""Deduplication: exact (hash of the cleaned text) and near (MinHash + LSH, datasketch).

Both are streaming: the first occurrence is kept, later copies are dropped. The only state
that grows with the corpus is the index (16 bytes per document for exact, `num_perm` x 4 bytes
plus the LSH band keys for near); within a document, shingles are hashed a block at a time, so
one huge document needs no more memory than a block.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from itertools import islice

import numpy as np
from datasketch import MinHash, MinHashLSH

from expertlm.corpus.clean import iter_words


class ExactDedup:
    def __init__(self) -> None:
        self._seen: set[bytes] = set()

    def is_duplicate(self, text: str) -> bool:
        """True if this exact text was seen before; otherwise remember it."""
        digest = hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()
        if digest in self._seen:
            return True
        self._seen.add(digest)
        return False


_MIX1 = np.uint64(0x9E3779B97F4A7C15)  # golden-ratio multiplier (polynomial base)
_MIX2 = np.uint64(0xBF58476D1CE4E5B9)  # splitmix64 finaliser constant


# Words hashed per block: a document's shingles are hashed and fed to MinHash a block at a time,
# so memory stays near a block's worth (datasketch's update holds num_perm x 8 bytes a shingle:
# a 50 MB document at once would take ~9 GB).
BLOCK_WORDS = 16_384


def shingle_hashes(text: str, n: int) -> Iterator[np.ndarray]:
    """32-bit hashes of the word n-grams of the case-folded text, in order, as uint32 arrays of
    at most `BLOCK_WORDS` (one hash of all words if the text has fewer than `n`).

    Each distinct word of a block is hashed once (blake2b); n-gram hashes are then a polynomial
    over the word hashes, vectorised in numpy. This replaces hashing every shingle's bytes with
    sha1 in Python, which was ~70% of `corpus build`'s time on full-text papers.
    """
    it, carry, done = iter_words(text), [], False
    while True:
        new = list(islice(it, BLOCK_WORDS))
        if not new and done:
            return
        block = carry + new
        if len(block) < n:
            if not done:  # the whole text has fewer than n words
                yield _polynomial(block, len(block), 1)
            return
        yield _polynomial(block, n, len(block) - n + 1)
        done, carry = True, block[len(block) - n + 1 :]


def _polynomial(w: list[str], width: int, count: int) -> np.ndarray:
    """(count,) uint32: the hashes of the `count` windows of `width` words of `w`."""
    index: dict[str, int] = {}
    ids = np.fromiter((index.setdefault(x, len(index)) for x in w), dtype=np.int64, count=len(w))
    uniq = np.fromiter(
        (
            int.from_bytes(hashlib.blake2b(x.encode(), digest_size=8).digest(), "little")
            for x in index
        ),
        dtype=np.uint64,
        count=len(index),
    )
    wh = uniq[ids]  # (W,) uint64 hash of each word occurrence
    h = np.zeros(count, dtype=np.uint64)
    for k in range(width):  # uint64 arithmetic wraps: a polynomial hash mod 2**64
        h = h * _MIX1 + wh[k : k + count]
    h ^= h >> np.uint64(31)
    h *= _MIX2
    h ^= h >> np.uint64(29)
    return (h >> np.uint64(32)).astype(np.uint32)


def _identity(x: int) -> int:
    return x


class NearDedup:
    """MinHash signatures indexed by LSH; LSH candidates are confirmed by their estimated
    Jaccard similarity, so a document is dropped only when it is really above the threshold."""

    def __init__(
        self, threshold: float = 0.8, num_perm: int = 128, shingle_words: int = 5, seed: int = 1
    ) -> None:
        self.threshold, self.num_perm, self.n, self.seed = threshold, num_perm, shingle_words, seed
        self._lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
        self._sigs: dict[int, np.ndarray] = {}  # key -> (num_perm,) uint32: hash values are < 2**32

    def signature(self, text: str) -> MinHash:
        # Shingles arrive already hashed to 32 bits; datasketch applies its permutations.
        m = MinHash(num_perm=self.num_perm, seed=self.seed, hashfunc=_identity)
        for block in shingle_hashes(text, self.n):  # a running minimum: blocks give the same
            m.update_batch(block.tolist())
        return m

    def is_duplicate(self, text: str) -> bool:
        """True if a kept document is a near duplicate of `text`; otherwise index `text`."""
        m = self.signature(text)
        sig = m.hashvalues.astype(np.uint32)  # (num_perm,): affine32 values are < 2**32
        for key in self._lsh.query(m):
            if float(np.mean(self._sigs[key] == sig)) >= self.threshold:
                return True
        key = len(self._sigs)
        self._sigs[key] = sig
        self._lsh.insert(key, m, check_duplication=False)
        return False
