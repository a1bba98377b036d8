"""Deduplication: exact (hash of the cleaned text) and near (MinHash + LSH, datasketch).

Both are streaming: the first occurrence is kept, later copies are dropped. The only state
that grows with the corpus is the index (16 bytes per document for exact, `num_perm` x 4 bytes
plus the LSH band keys for near).
"""

from __future__ import annotations

import hashlib

import numpy as np
from datasketch import MinHash, MinHashLSH

from expertlm.corpus.clean import words


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


def shingles(text: str, n: int) -> list[bytes]:
    """Distinct word n-grams of the case-folded text (the whole text if it has fewer words)."""
    w = words(text)
    if len(w) <= n:
        return [" ".join(w).encode("utf-8")]
    return list({" ".join(w[i : i + n]).encode("utf-8") for i in range(len(w) - n + 1)})


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
        m = MinHash(num_perm=self.num_perm, seed=self.seed)
        m.update_batch(shingles(text, self.n))
        return m

    def is_duplicate(self, text: str) -> bool:
        """True if a kept document is a near duplicate of `text`; otherwise index `text`."""
        m = self.signature(text)
        sig = m.hashvalues.astype(np.uint32)
        for key in self._lsh.query(m):
            if float(np.mean(self._sigs[key] == sig)) >= self.threshold:
                return True
        key = len(self._sigs)
        self._sigs[key] = sig
        self._lsh.insert(key, m, check_duplication=False)
        return False
