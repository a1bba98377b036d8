"""The bounded duplicate index: hashes spilled to sorted runs on disk, merged one key range at a
time, so memory does not grow with the corpus (as datatrove's multi-stage MinHash does).

While documents are scanned, each eligible one (it passed the filters before deduplication)
adds records to two spills: its text digest `(hi, lo, position)` and one `(key, position, ref)`
per LSH band (`ref` finds its signature: shard << 40 | row of that shard's `sigs.bin`). A spill
keeps at most `SPILL_BYTES` in memory, then writes them sorted as a run file. Then:

1. exact: the digest runs of every shard, merged by key range; in a group of equal digests every
   position but the first is an exact duplicate (one byte per document marks it);
2. near: the band runs, merged by key range; within each group of equal keys (exact duplicates
   left out: they are neither indexed nor queried), every later member whose signature agrees
   with an earlier one's on at least `threshold` of the permutations makes an edge
   (later, earlier), spilled sorted by the later position;
3. the sweep (`corpus/build.py`) walks the documents in input order: a document is a near
   duplicate if an edge joins it to an earlier document that was kept.

These are the decisions of the streaming `NearDedup` (a document is compared with the kept
documents before it, through the LSH buckets, confirmed by the Jaccard estimate), whatever the
number of workers or shards: every step depends only on the records, in position order.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

# Records a spill holds in memory before it writes a sorted run; a merge holds about this much
# of one key range (plus a read buffer per run).
SPILL_BYTES = 8 << 20
_READ_RECORDS = 1 << 15

EXACT = np.dtype([("hi", "<u8"), ("lo", "<u8"), ("pos", "<u8")])
BANDS = np.dtype([("key", "<u8"), ("pos", "<u8"), ("ref", "<u8")])
EDGES = np.dtype([("pos", "<u8"), ("earlier", "<u8")])
REF_SHIFT = 40


def _sort(records: np.ndarray) -> np.ndarray:
    """Records sorted by their fields, first field first."""
    return records[np.lexsort([records[f] for f in reversed(records.dtype.names)])]


class Spill:
    """Records of `dtype` added in any order, written as sorted runs `NAME-K.bin` in `folder`."""

    def __init__(self, folder: Path, name: str, dtype: np.dtype) -> None:
        self.folder, self.name, self.dtype = folder, name, dtype
        self.limit = max(1, SPILL_BYTES // dtype.itemsize)
        self._buf: list[np.ndarray] = []
        self._count = 0
        self.runs: list[str] = []
        self.records = 0

    def add(self, records: np.ndarray) -> None:
        if not len(records):
            return
        self._buf.append(records)
        self._count += len(records)
        self.records += len(records)
        if self._count >= self.limit:
            self.flush()

    def flush(self) -> None:
        if not self._buf:
            return
        name = f"{self.name}-{len(self.runs):05d}.bin"
        _sort(np.concatenate(self._buf)).tofile(self.folder / name)
        self.runs.append(name)
        self._buf, self._count = [], 0

    def close(self) -> list[str]:
        self.flush()
        return self.runs


class _Run:
    """A sorted run file, read forward a chunk at a time."""

    def __init__(self, path: Path, dtype: np.dtype) -> None:
        self.f = open(path, "rb")  # noqa: SIM115 (closed by take() at the end)
        self.dtype, self.key = dtype, dtype.names[0]
        self.buf = np.empty(0, dtype=dtype)

    def take(self, below: int | None) -> np.ndarray:
        """The next records whose key is below `below` (None: all the rest)."""
        out = []
        while True:
            if not len(self.buf):
                if self.f.closed:
                    break
                self.buf = np.fromfile(self.f, dtype=self.dtype, count=_READ_RECORDS)
                if not len(self.buf):
                    self.f.close()
                    break
            k = len(self.buf) if below is None else int(np.searchsorted(self.buf[self.key], np.uint64(below)))
            out.append(self.buf[:k])
            self.buf = self.buf[k:]
            if len(self.buf):
                break
        return np.concatenate(out) if out else np.empty(0, dtype=self.dtype)


def merged(runs: list[Path], dtype: np.dtype, key_end: int) -> Iterator[np.ndarray]:
    """The records of every run in order, sorted, one key range at a time: the key space
    [0, key_end) is cut into equal ranges so that each holds about `SPILL_BYTES` (keys are
    hashes, or positions), and records with equal keys are always in the same range."""
    total = sum(p.stat().st_size for p in runs) // dtype.itemsize
    ranges = max(1, math.ceil(total * dtype.itemsize / SPILL_BYTES))
    readers = [_Run(p, dtype) for p in runs]
    for r in range(1, ranges + 1):
        below = None if r == ranges else key_end * r // ranges
        part = np.concatenate([x.take(below) for x in readers]) if readers else np.empty(0, dtype)
        if len(part):
            yield _sort(part)


def exact_duplicates(runs: list[Path], positions: int) -> np.ndarray:
    """(positions,) bool: the documents whose digest an earlier document has."""
    dup = np.zeros(positions, dtype=bool)
    for recs in merged(runs, EXACT, 1 << 64):
        same = (recs["hi"][1:] == recs["hi"][:-1]) & (recs["lo"][1:] == recs["lo"][:-1])
        dup[recs["pos"][1:][same].astype(np.int64)] = True
    return dup


class Signatures:
    """Random access to the signatures of each shard's `sigs.bin` (pread: no file pages mapped)."""

    def __init__(self, files: list[Path], num_perm: int) -> None:
        self.fds = [os.open(f, os.O_RDONLY) for f in files]
        self.num_perm, self.size = num_perm, num_perm * 4

    def get(self, refs: np.ndarray) -> np.ndarray:
        """(len(refs), num_perm) uint32."""
        out = np.empty((len(refs), self.num_perm), dtype=np.uint32)
        for i, ref in enumerate(refs.tolist()):
            fd, row = self.fds[ref >> REF_SHIFT], ref & ((1 << REF_SHIFT) - 1)
            out[i] = np.frombuffer(os.pread(fd, self.size, row * self.size), dtype=np.uint32)
        return out

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)


# Signature pairs compared at once within a bucket: (rows, members, num_perm) booleans.
_COMPARE_CELLS = 1 << 22


def near_edges(runs: list[Path], sigs: Signatures, exact: np.ndarray, threshold: float, spill: Spill) -> None:
    """Add to `spill` an edge (later, earlier) for every pair of documents that share an LSH band
    key and whose signatures agree on at least `threshold` of the permutations."""
    # the fewest agreeing permutations k with k / num_perm >= threshold, as NearDedup's mean
    need = next(k for k in range(sigs.num_perm + 1) if k / sigs.num_perm >= threshold)
    for recs in merged(runs, BANDS, 1 << 64):
        recs = recs[~exact[recs["pos"].astype(np.int64)]]
        if len(recs) < 2:
            continue
        keys = recs["key"]
        starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
        sizes = np.diff(np.r_[starts, len(recs)])
        for start, size in zip(starts[sizes > 1].tolist(), sizes[sizes > 1].tolist(), strict=True):
            group = recs[start : start + size]  # sorted by position
            s = sigs.get(group["ref"])
            rows = max(1, _COMPARE_CELLS // (size * sigs.num_perm))
            for i in range(1, size, rows):
                stop = min(size, i + rows)
                # agreement of members i..stop-1 with every earlier member: (rows, earlier)
                agree = (s[i:stop, None, :] == s[None, :stop - 1, :]).sum(axis=2)
                later, earlier = np.nonzero(agree >= need)
                keep = earlier < later + i  # only members before
                if keep.any():
                    edges = np.empty(int(keep.sum()), dtype=EDGES)
                    edges["pos"] = group["pos"][later[keep] + i]
                    edges["earlier"] = group["pos"][earlier[keep]]
                    spill.add(edges)


def edges_by_position(runs: list[Path], positions: int) -> Iterator[tuple[int, list[int]]]:
    """`(position, earlier positions)` for every document with edges, in position order."""
    for recs in merged(runs, EDGES, max(positions, 1)):
        pos, earlier = recs["pos"].tolist(), recs["earlier"].tolist()
        start = 0
        for i in range(1, len(pos) + 1):
            if i == len(pos) or pos[i] != pos[start]:
                yield pos[start], earlier[start:i]
                start = i
