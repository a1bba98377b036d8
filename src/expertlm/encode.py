"""Encode batches of documents into flat token arrays, exactly as the tokenizer would, fast.

A document becomes `[eot] + tokenizer.encode(text).ids`. For GPT-2-style byte-level BPE (no
normaliser, GPT-2's split regex, no added tokens besides special ones: what `tokenizer train`
makes, and GPT-2's own), encoding is context-free per pre-token: the text is split by GPT-2's
regex and each piece is BPE-encoded on its own. Pieces follow Zipf's law, so worker processes
split with the `regex` module, BPE-encode only pieces not yet in a bounded cache (with the
tokenizer itself), and concatenate cached ids. That spreads over processes, where the Rust
batch encoder is already using every core of one. Every batch checks one document against
the tokenizer's own encoding; a disagreement switches that worker to the plain path for good.
Any other tokenizer uses the Rust batch encoder in-process.
"""

from __future__ import annotations

import collections
import json
import os
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from itertools import chain
from multiprocessing import get_context

import numpy as np

from expertlm.lifeline import Pool

# GPT-2's pre-tokenisation pattern, as in its encoder.py and the tokenizers ByteLevel regex.
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
# Distinct pieces remembered per worker (~150 bytes each); the cache is emptied when full, so
# memory stays bounded whatever the corpus size.
CACHE_PIECES = 300_000


def piece_cache_applies(tokenizer_json: str) -> bool:
    """True when encoding is GPT-2 byte-level BPE applied to each regex piece independently."""
    spec = json.loads(tokenizer_json)
    pre = spec.get("pre_tokenizer") or {}
    model = spec.get("model") or {}
    return (
        spec.get("normalizer") is None
        and pre.get("type") == "ByteLevel"
        and pre.get("use_regex", True)
        and not pre.get("add_prefix_space", False)
        and model.get("type") == "BPE"
        and model.get("dropout") is None
        and all(t.get("special") for t in spec.get("added_tokens") or [])
    )


def flatten(ids: list[list[int]] | Iterator[list[int]], eot_id: int, dtype: np.dtype) -> np.ndarray:
    """`[eot] + ids` for each document, concatenated: `(tokens + docs,)` of `dtype`."""
    return np.fromiter(chain.from_iterable(chain((eot_id,), doc) for doc in ids), dtype=dtype)


def _backend(tokenizer_json: str):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_str(tokenizer_json)
    tok.encode_special_tokens = True  # a literal "<|endoftext|>" in a document is text
    return tok


def plain_encode(tok, texts: list[str]) -> list[list[int]]:
    return [e.ids for e in tok.encode_batch_fast(texts, add_special_tokens=False)]


class PieceCache:
    """GPT-2 byte-level BPE through a cache of encoded regex pieces (see the module doc)."""

    def __init__(self, tokenizer_json: str) -> None:
        import regex

        self.tok = _backend(tokenizer_json)
        self.split = regex.compile(GPT2_PATTERN).findall
        self.cache: dict[str, tuple[int, ...]] = {}
        self.exact = True  # False after a disagreement with the tokenizer: plain path from then on

    def encode(self, texts: list[str]) -> list[list[int]]:
        if not self.exact:
            return plain_encode(self.tok, texts)
        pieces = [self.split(t) for t in texts]
        if len(self.cache) > CACHE_PIECES:
            self.cache.clear()
        missing = list({p for ps in pieces for p in ps if p not in self.cache})
        if missing:
            for piece, ids in zip(missing, plain_encode(self.tok, missing), strict=True):
                self.cache[piece] = tuple(ids)
        get = self.cache.__getitem__
        out = [list(chain.from_iterable(map(get, ps))) for ps in pieces]
        if texts and out[0] != plain_encode(self.tok, texts[:1])[0]:
            self.exact = False
            return plain_encode(self.tok, texts)
        return out


_WORKER: dict = {}


def _worker_init(tokenizer_json: str, eot_id: int, dtype: str) -> None:
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # parallelism comes from the processes
    _WORKER.update(enc=PieceCache(tokenizer_json), eot=eot_id, dtype=np.dtype(dtype))


def _worker_encode(texts: list[str]) -> tuple[bytes, int, bool]:
    enc: PieceCache = _WORKER["enc"]
    flat = flatten(enc.encode(texts), _WORKER["eot"], _WORKER["dtype"])
    return flat.tobytes(), len(texts), enc.exact


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class BatchEncoder:
    """`encode(batches)` yields `(flat, docs)` per batch, in order, with at most a few batches in
    flight. Use as a context manager (it owns the worker processes)."""

    def __init__(
        self, tokenizer_json: str, eot_id: int, dtype: np.dtype, workers: int | None = None
    ) -> None:
        self.tokenizer_json, self.eot_id, self.dtype = tokenizer_json, eot_id, np.dtype(dtype)
        self.cached = piece_cache_applies(tokenizer_json)
        self.workers = workers or available_cpus()
        self.exact = True
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> BatchEncoder:
        if self.cached:
            # spawn, not fork: the parent may already hold tokenizer threads and a reader thread.
            # (workers that end with this process, even on kill -9)
            self._pool = Pool(self.workers, get_context("spawn"), _worker_init,
                              (self.tokenizer_json, self.eot_id, self.dtype.str))
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def encode(self, batches: Iterator[list[str]]) -> Iterator[tuple[np.ndarray, int]]:
        if self._pool is None:
            tok = _backend(self.tokenizer_json)
            for texts in batches:
                yield flatten(plain_encode(tok, texts), self.eot_id, self.dtype), len(texts)
            return
        pending: collections.deque[Future] = collections.deque()
        for texts in batches:
            pending.append(self._pool.submit(_worker_encode, texts))
            if len(pending) > 2 * self.workers:  # bounded: memory stays flat
                yield self._result(pending.popleft())
        while pending:
            yield self._result(pending.popleft())

    def _result(self, fut: Future) -> tuple[np.ndarray, int]:
        data, docs, exact = fut.result()
        self.exact = self.exact and exact
        return np.frombuffer(data, dtype=self.dtype), docs
