"""Hashed word n-gram features, vectorised with numpy: the text classifier's input.

The features are those of scikit-learn's `HashingVectorizer(ngram_range=(1, N),
alternate_sign=False, norm="l2", lowercase=True)`: the text is lower-cased, its tokens are the
runs of two or more word characters (`(?u)\\b\\w\\w+\\b`, the default token pattern; a word
character is what `str.isalnum()` says, or `_`), the n-grams join consecutive tokens of a
document, each n-gram is hashed into one of `n_features` columns, and a document's row is its
n-gram counts divided by their Euclidean norm.

What differs is the hash and how it is computed: sklearn tokenises in Python and hashes each
n-gram string with MurmurHash3 (about 5 MB/s of text on one core here); this module looks the
characters up in tables and hashes every token of a batch at once with a polynomial hash over
its code points (mod 2^64, mixed with splitmix64), n-grams from their tokens' hashes, and takes
the top bits as the column. The columns are therefore not sklearn's, but the rows have the same
structure (the same counts, the same norm): a row is sklearn's row with its columns permuted,
wherever neither scheme has a collision (`tests/test_classifier.py` checks this).

With `max_chars`, only the first `max_chars` characters of each text are read (a full text's
title and abstract, say). Tokens longer than `MAX_TOKEN_CHARS` are hashed on their length and first `MAX_TOKEN_CHARS`
characters.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from expertlm.hashing import mix64

FORMAT = "expertlm.hashed-ngrams/1"
MAX_TOKEN_CHARS = 64
_BMP = 0x10000
_P = np.uint64(0x100000001B3)  # odd: invertible mod 2^64
_NGRAM = np.uint64(0x9E3779B97F4A7C15)
_LEN = np.uint64(0xD6E8FEB86659FD93)
_SEP = "\n"  # joins a batch's documents (not a word character)

_TABLES: dict[str, np.ndarray] = {}


def _tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The code point of each character of the Basic Multilingual Plane that is a word
    character, 0 for the others (as it is, and lower-cased), and the powers of the hash's base
    up to `MAX_TOKEN_CHARS`."""
    if "pow" not in _TABLES:
        chars = [chr(i) for i in range(_BMP)]
        is_word = [c.isalnum() or c == "_" for c in chars]
        _TABLES["word"] = np.array([ord(c) if w else 0 for c, w in zip(chars, is_word, strict=True)], np.uint64)
        _TABLES["lower"] = np.array([ord(c.lower()[:1] or c) if w else 0
                                     for c, w in zip(chars, is_word, strict=True)], np.uint64)  # fmt: skip
        with np.errstate(over="ignore"):
            _TABLES["pow"] = np.cumprod(np.r_[np.uint64(1), np.full(MAX_TOKEN_CHARS - 1, _P)])
    return _TABLES["word"], _TABLES["lower"], _TABLES["pow"]


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters


def reuse_freed_memory() -> None:
    """Let this process keep the memory it frees for its next arrays (glibc's malloc returns
    freed large blocks to the system, and taking them back costs page faults: a third of the
    vectorizer's time). The process's memory then stays at its peak; elsewhere than glibc this
    does nothing."""
    if _TABLES.get("malloc") is not None:
        return
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        _TABLES["malloc"] = np.array([libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30),
                                      libc.mallopt(_M_MMAP_THRESHOLD, 256 << 20)])  # fmt: skip
    except (OSError, AttributeError):
        _TABLES["malloc"] = np.zeros(2)


@dataclass(frozen=True)
class HashedNgrams:
    """The vectorizer's settings (all of them: a classifier saves them as JSON)."""

    n_features: int = 2**20
    ngram_max: int = 2
    lowercase: bool = True
    max_chars: int | None = None  # only the first max_chars characters of each text count

    def __post_init__(self) -> None:
        if self.n_features < 2 or self.n_features & (self.n_features - 1):
            raise ValueError(f"n_features {self.n_features} is not a power of two")
        if not 1 <= self.ngram_max <= 5:
            raise ValueError(f"ngram_max {self.ngram_max} is not in 1..5")
        if self.max_chars is not None and self.max_chars < 1:
            raise ValueError(f"max_chars {self.max_chars} is below 1")

    def settings(self) -> dict:
        return {"format": FORMAT, **asdict(self), "token_pattern": r"(?u)\b\w\w+\b",
                "alternate_sign": False, "norm": "l2", "hash": "polynomial-splitmix64",
                "max_token_chars": MAX_TOKEN_CHARS}  # fmt: skip

    @property
    def bits(self) -> int:
        return self.n_features.bit_length() - 1

    def occurrences(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(document, column) of every n-gram occurrence in `texts`, as int64 arrays."""
        word, lower, powers = _tables()
        if not texts:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        if self.max_chars is not None:
            texts = [t[: self.max_chars] for t in texts]
        lengths = np.fromiter((len(t) + 1 for t in texts), np.int64, len(texts))
        cp = np.frombuffer((_SEP.join(texts) + _SEP).encode("utf-32-le", "surrogatepass"), np.uint32)
        fold = lower if self.lowercase else word  # code point (lower-cased) of a word character, else 0
        if int(cp.max()) < _BMP:
            code = fold[cp]
        else:  # outside the BMP (rare): ask Python
            code = fold[np.minimum(cp, _BMP - 1)]
            astral = np.flatnonzero(cp >= _BMP)
            chars = [chr(c) for c in cp[astral].tolist()]
            code[astral] = [ord(c.lower()[:1] if self.lowercase else c) if c.isalnum() else 0 for c in chars]
        # runs of word characters: start, end, start, end, ... (the separator after the last
        # text ends every run)
        bounds = np.flatnonzero(np.diff((code != 0).view(np.int8), prepend=np.int8(0)))
        starts, ends = bounds[0::2], bounds[1::2]
        size = ends - starts
        keep = size >= 2
        starts, size = starts[keep], size[keep]
        # polynomial hash of each token's first MAX_TOKEN_CHARS code points: tokens in order
        # of length (longest first, a radix sort), so the tokens that have a j-th character
        # are a prefix and the work is one pass over the characters
        span = np.minimum(size, MAX_TOKEN_CHARS)
        order = np.argsort((MAX_TOKEN_CHARS - span).astype(np.int8), kind="stable")
        live = np.bincount(span, minlength=MAX_TOKEN_CHARS + 1)[::-1].cumsum()[::-1]
        at = starts[order]
        with np.errstate(over="ignore"):
            hs = np.zeros(len(starts), np.uint64)
            for j in range(int(span.max(initial=0))):
                k = int(live[j + 1])
                hs[:k] += code[at[:k] + j] * powers[j]
            h = np.empty_like(hs)
            h[order] = hs
            h = mix64(h ^ (size.astype(np.uint64) * _LEN))
            doc = np.searchsorted(np.cumsum(lengths), starts, side="right")
            shift = np.uint64(64 - self.bits)
            cols, docs = [h >> shift], [doc]
            gram = h
            for n in range(2, self.ngram_max + 1):
                if len(gram) < 2:
                    break
                same = doc[n - 1 :] == doc[: len(doc) - n + 1]
                gram = mix64(gram[:-1] * _NGRAM + h[n - 1 :] + np.uint64(n))
                cols.append(gram[same] >> shift)
                docs.append(doc[: len(doc) - n + 1][same])
        return np.concatenate(docs), np.concatenate(cols).astype(np.int64)

    def counts(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(document, column, count) of each distinct n-gram of each document, sorted."""
        doc, col = self.occurrences(texts)
        if not len(doc):
            return doc, col, np.zeros(0, np.int64)
        key = (doc << self.bits) | col
        if len(texts) << self.bits <= 2**32:  # 32-bit keys sort about twice as fast
            key = key.astype(np.uint32)
        key = np.sort(key).astype(np.int64)
        first = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
        count = np.diff(np.r_[first, len(key)])
        key = key[first]
        return key >> self.bits, key & (self.n_features - 1), count

    def transform(self, texts: Sequence[str]):
        """The l2-normalised count rows as a `scipy.sparse.csr_matrix` (float64)."""
        from scipy.sparse import csr_matrix

        doc, col, count = self.counts(texts)
        values = count.astype(np.float64)
        norms = np.sqrt(np.bincount(doc, weights=values**2, minlength=len(texts)))
        values /= np.where(norms > 0, norms, 1.0)[doc]
        indptr = np.r_[0, np.cumsum(np.bincount(doc, minlength=len(texts)))]
        return csr_matrix((values, col, indptr), shape=(len(texts), self.n_features))

    def decision(self, texts: Sequence[str], coef: np.ndarray, intercept: float) -> np.ndarray:
        """`transform(texts) @ coef + intercept`, without building the matrix."""
        doc, col, count = self.counts(texts)
        values = count.astype(np.float64)
        dot = np.bincount(doc, weights=values * coef[col], minlength=len(texts))
        norms = np.sqrt(np.bincount(doc, weights=values**2, minlength=len(texts)))
        return dot / np.where(norms > 0, norms, 1.0) + intercept


def sigmoid(z: np.ndarray) -> np.ndarray:
    """The logistic function 1 / (1 + exp(-z)) (scikit-learn's `predict_proba` of a log-loss
    model, without importing scipy), stable for large |z|."""
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


# --- scoring in worker processes (this module imports numpy only: workers start fast) ---------

_WORKER: dict = {}


def init_worker(settings: dict, coef: np.ndarray, intercept: float) -> None:
    reuse_freed_memory()
    _WORKER["score"] = (HashedNgrams(**settings), coef, intercept)


def score_texts(texts: list[str]) -> np.ndarray:
    vec, coef, intercept = _WORKER["score"]
    return sigmoid(vec.decision(texts, coef, intercept))
