"""Decontamination: drop every document that shares a word n-gram with a benchmark item.

Every choice of every item is indexed, and its context (an exam question): for BrainBench, both
versions (a leak of any choice tells the model the answer or a distractor). Words are case-folded
and punctuation is dropped, so formatting differences between a paper's full text and the
benchmark abstract do not hide a leak. The default n = 13 follows the GPT-3 paper's contamination
analysis.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path

from expertlm.corpus.clean import iter_words
from expertlm.eval.benchmark import read_benchmark
from expertlm.io import sha256_file


class Decontaminator:
    def __init__(self, bench_files: list[Path], n: int = 13) -> None:
        self.n = n
        self.index: dict[int, int] = {}  # hash of an n-gram -> first item holding it
        self.benchmarks = []
        n_items = 0
        for path in bench_files:
            items = read_benchmark(path)
            self.benchmarks.append(
                {"path": str(path), "sha256": sha256_file(path), "items": len(items)}
            )
            for item in items:
                for text in (item.context, *item.choices):
                    for h in self._ngrams(text):
                        self.index.setdefault(h, n_items)
                n_items += 1
        self.n_items = n_items
        self.items_leaked: set[int] = set()

    @classmethod
    def of_texts(cls, items: Iterable[Iterable[str]], n: int = 13) -> Decontaminator:
        """An index of candidate items given as their texts (item k: every version of it), to
        stream a training corpus through `is_contaminated` (`bench make --decontam`); the
        indexes of the items a document leaked are collected in `items_leaked`."""
        self = cls([], n)
        for k, texts in enumerate(items):
            for text in texts:
                for h in self._ngrams(text):
                    self.index.setdefault(h, k)
            self.n_items = k + 1
        return self

    def _ngrams(self, text: str) -> Iterator[int]:
        # one word at a time: memory does not grow with the document. Python's tuple hash is
        # fixed within one process, which is all an in-memory index needs.
        window: deque[str] = deque(maxlen=self.n)
        for w in iter_words(text):
            window.append(w)
            if len(window) == self.n:
                yield hash(tuple(window))

    def is_contaminated(self, text: str) -> bool:
        """True if `text` shares an n-gram with any item (and remember which item leaked)."""
        hit = False
        for h in self._ngrams(text):
            if (item := self.index.get(h)) is not None:
                self.items_leaked.add(item)
                hit = True
        return hit

    def report(self) -> dict:
        return {
            "benchmarks": self.benchmarks,
            "ngram_words": self.n,
            "items": self.n_items,
            "items_leaked": len(self.items_leaked),
        }
