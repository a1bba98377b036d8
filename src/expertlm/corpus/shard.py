"""Shards: which task does which documents, and the order in which a merge puts them back.

A document's position is its index in the input, in input order (every record counts, a bad one
too). Positions are grouped in blocks of `BLOCK_DOCS`; block `k` belongs to shard
`splitmix64(k) mod N`. So any task tells from a position alone whether a document is its own,
without knowing how many there are, shards get a balanced, interleaved share of every input
file, and a merge restores input order by walking the blocks and taking each from its owner.

`--shard I/N` (0 <= I < N) runs task I's share of a stage's per-document work into its own
folder, e.g. one Slurm array task each; `--merge DIR` then does the global part (duplicate
buckets, the split, concatenation) over the N folders in DIR. `corpus build` and `data prepare`
use it; the output is byte for byte the one a single task writes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from expertlm.config import SHARD, flag
from expertlm.errors import ExpertlmError
from expertlm.hashing import GOLDEN, mix64
from expertlm.io import read_json

BLOCK_DOCS = 64


def _splitmix64(x: np.ndarray) -> np.ndarray:
    return mix64(x.astype(np.uint64) + GOLDEN)


def block_owners(blocks: int, count: int) -> np.ndarray:
    """(blocks,) int64: the shard that owns each of the first `blocks` blocks."""
    if count == 1:
        return np.zeros(blocks, dtype=np.int64)
    return (_splitmix64(np.arange(blocks)) % np.uint64(count)).astype(np.int64)


@dataclass(frozen=True)
class Shard:
    index: int = 0
    count: int = 1

    @classmethod
    def parse(cls, spec: str | None) -> Shard:
        """`I/N` (0 <= I < N); None is the whole input."""
        if spec is None:
            return cls()
        m = SHARD.fullmatch(spec.strip())
        if not m or not 0 <= int(m.group(1)) < int(m.group(2)):
            raise ValueError(f"{spec!r}: expected I/N with 0 <= I < N, e.g. 0/16")
        return cls(int(m.group(1)), int(m.group(2)))

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @property
    def whole(self) -> bool:
        return self.count == 1

    def owns(self, position: int) -> bool:
        return self.count == 1 or owner(position // BLOCK_DOCS, self.count) == self.index


_M64 = (1 << 64) - 1


def owner(block: int, count: int) -> int:
    """The shard that owns `block` (`block_owners`, one at a time)."""
    x = (block + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return (x ^ (x >> 31)) % count


def merge_order(positions: list[np.ndarray], count: int) -> Iterator[tuple[int, int, int]]:
    """`(shard, start, stop)` slices of each shard's sorted positions, in input order: what a
    merge concatenates. `positions[i]` are the (ascending) positions shard i holds."""
    total = max((int(p[-1]) + 1 for p in positions if len(p)), default=0)
    blocks = -(-total // BLOCK_DOCS)
    owners = block_owners(blocks, count)
    # where each shard's positions pass from one block to the next
    bounds = [np.searchsorted(p // BLOCK_DOCS, np.arange(blocks + 1)) for p in positions]
    for k in range(blocks):
        s = int(owners[k])
        start, stop = int(bounds[s][k]), int(bounds[s][k + 1])
        if stop > start:
            yield s, start, stop


def find_parts(folder: Path, meta_file: str, fmt: str) -> list[tuple[Path, dict]]:
    """The `--shard` outputs in `folder` (each subfolder holding `meta_file` of format `fmt`),
    in shard order, checked: shards 0..N-1 of one N, each once."""
    if not folder.is_dir():
        raise ExpertlmError(f"{folder}: no such folder (--merge names the folder of the --shard outputs)")
    found = []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if (sub / meta_file).is_file():
            meta = read_json(sub / meta_file)
            if isinstance(meta, dict) and meta.get("format") == fmt:
                found.append((sub, meta))
    if not found:
        raise ExpertlmError(f"{folder}: holds no --shard output (subfolders with {meta_file})")
    counts = {tuple(m["shard"])[1] for _, m in found}
    if len(counts) > 1:
        raise ExpertlmError(f"{folder}: shards of different counts N ({', '.join(map(str, sorted(counts)))})")
    count = counts.pop()
    by_index: dict[int, tuple[Path, dict]] = {}
    for sub, meta in found:
        i = meta["shard"][0]
        if i in by_index:
            raise ExpertlmError(f"{folder}: shard {i}/{count} twice ({by_index[i][0].name}, {sub.name})")
        by_index[i] = (sub, meta)
    missing = [str(i) for i in range(count) if i not in by_index]
    if missing:
        raise ExpertlmError(f"{folder}: shard(s) {', '.join(missing)} of {count} missing")
    return [by_index[i] for i in range(count)]


def check_parts(parts: list[tuple[Path, dict]], config: dict, inputs: list[dict]) -> None:
    """Refuse a merge of parts made with other options (`config`: those that decide the output)
    or from other sources (`inputs`, as the parts' metadata records them)."""
    for folder, meta in parts:
        theirs = meta.get("config", {})
        differ = sorted(k for k in set(config) | set(theirs) if config.get(k) != theirs.get(k))
        if differ:
            what = ", ".join(f"{flag(k)} {theirs.get(k)!r} there, {config.get(k)!r} here" for k in differ)
            raise ExpertlmError(f"{folder}: made with other options ({what}); merge with the shards' options")
        if meta.get("inputs") != inputs:
            raise ExpertlmError(f"{folder}: made from other sources (or they changed since); "
                                "merge with the sources the shards read")  # fmt: skip
