"""The per-document half of `corpus build`: clean, filter, hash, in worker processes, into a part.

The parent reads the sources (so errors keep naming file:line, and `--skip-bad` counts in input
order), numbers every record by its position, keeps the positions of its shard, and sends
batches of documents to the workers. A worker cleans each document, applies the filters that
need nothing but the document (empty, too short, year, contaminated), and for the documents that
pass them ("eligible") serialises the corpus line and computes the split, the text digest, the
MinHash signature and its LSH band keys. The parent writes what comes back, in order, into a
part folder:

- `part.json`: shard, config, inputs, positions read, per-filter counts, reader state;
- `eligible.bin`: one record per eligible document (position, characters, split);
- `lines.bin`: their corpus lines, a batch at a time (uncompressed: compressing them twice
  cost more time than the disk space they save while the build runs);
- `sigs.bin`: their signatures, `(eligible, num_perm)` uint32;
- `exact-K.bin`, `bands-K.bin`: the sorted runs of the bounded index (`corpus/index.py`).

The merge (`corpus/build.py`) takes the global decisions over one part or the N parts of
`--shard I/N` runs. Nothing here depends on the number of workers.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import struct
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path

import numpy as np

from expertlm.config import CorpusConfig
from expertlm.corpus.clean import clean_text
from expertlm.corpus.decontam import Decontaminator
from expertlm.corpus.dedup import MinHasher, band_keys, lsh_params, text_digest
from expertlm.corpus.docs import in_val
from expertlm.corpus.index import BANDS, EXACT, REF_SHIFT, Spill
from expertlm.corpus.shard import Shard
from expertlm.corpus.sources import Reader, Source
from expertlm.io import write_json
from expertlm.lifeline import Pool

# The order in which filters run; a document is counted under the first that removes it.
REMOVALS = (
    "bad_record",
    "empty",
    "too_short",
    "no_year",
    "before_min_year",
    "after_max_year",
    "contaminated",
    "exact_duplicate",
    "near_duplicate",
)
ELIGIBLE = 255  # the code of a document no per-document filter removed
# The options that say how a build runs, not what it makes (left out of the manifest's config).
RUN_FIELDS = frozenset({"workers", "shard", "merge"})

PART = "part.json"
PART_FORMAT = "expertlm.corpus-part/1"
ELIGIBLE_DOCS = np.dtype([("pos", "<u8"), ("chars", "<u8"), ("val", "u1")])
_BLOCK_HEADER = struct.Struct("<QQ")  # documents, bytes of one batch of lines

# Characters of text sent to a worker at once: enough that a batch's overhead is small, little
# enough that a few batches in flight per worker keep memory flat.
BATCH_CHARS = 1_000_000
# Below this many input bytes, a build started without --workers runs in one process: starting
# workers (a fresh interpreter each) costs more than they save.
SMALL_INPUT_BYTES = 8 << 20


def worker_count(requested: int | None, input_bytes: int) -> int:
    """`--workers` as given, else one per core, or one (this process) for inputs under
    `SMALL_INPUT_BYTES`, where starting processes costs more than it saves."""
    from expertlm.encode import available_cpus

    return requested or (1 if input_bytes < SMALL_INPUT_BYTES else available_cpus())


def content_config(cfg: CorpusConfig) -> dict:
    """The options that decide the output (all but how it runs), as the manifest records them."""
    return cfg.model_dump(mode="json", exclude=set(RUN_FIELDS))


def year_removal(year: int | None, cfg: CorpusConfig) -> str | None:
    if year is None:
        filtering = cfg.min_year is not None or cfg.max_year is not None
        return "no_year" if filtering and not cfg.keep_no_year else None
    if cfg.min_year is not None and year < cfg.min_year:
        return "before_min_year"
    if cfg.max_year is not None and year > cfg.max_year:
        return "after_max_year"
    return None


class DocWork:
    """What a worker does to a batch of documents (`(text, id, year, source, extra)` tuples)."""

    def __init__(self, cfg: CorpusConfig) -> None:
        self.cfg = cfg
        self.decontam = Decontaminator(cfg.decontam, cfg.decontam_ngram) if cfg.decontam else None
        self.hasher = MinHasher(cfg.num_perm, cfg.shingle_words) if cfg.near_dedup else None
        self.bands, self.rows = lsh_params(cfg.near_threshold, cfg.num_perm)
        self._leaked_sent: set[int] = set()

    def __call__(self, docs: list[tuple]) -> dict:
        cfg = self.cfg
        codes = np.full(len(docs), ELIGIBLE, dtype=np.uint8)
        lines, chars, val, digests, sigs = [], [], [], [], []
        for i, (raw_text, doc_id, year, source, extra) in enumerate(docs):
            text = clean_text(raw_text, cfg.unicode_form)
            removal = (
                "empty" if not text
                else "too_short" if len(text) < cfg.min_chars
                else year_removal(year, cfg)
            )  # fmt: skip
            if removal is None and self.decontam is not None and self.decontam.is_contaminated(text):
                removal = "contaminated"
            if removal is not None:
                codes[i] = REMOVALS.index(removal)
                continue
            doc_id = doc_id or hashlib.sha256(text.encode()).hexdigest()[:16]
            doc = {"id": doc_id, "text": text, "year": year, "source": source, **extra}
            lines.append((json.dumps(doc, ensure_ascii=False) + "\n").encode("utf-8"))
            chars.append(len(text))
            val.append(in_val(doc_id, cfg.val_frac, cfg.split_seed))
            if cfg.dedup:
                digests.append(text_digest(text))
            if self.hasher is not None:
                sigs.append(self.hasher.signature(text))
        out: dict = {
            "codes": codes,
            "lines": b"".join(lines),
            "chars": np.array(chars, dtype=np.uint64),
            "val": np.array(val, dtype=np.uint8),
            "digests": np.frombuffer(b"".join(digests), dtype="<u8").reshape(-1, 2),
        }
        if self.hasher is not None:
            s = np.stack(sigs) if sigs else np.empty((0, cfg.num_perm), dtype=np.uint32)
            out["sigs"], out["keys"] = s, band_keys(s, self.bands, self.rows)
        if self.decontam is not None:
            new = self.decontam.items_leaked - self._leaked_sent
            self._leaked_sent |= new
            out["leaked"] = sorted(new)
        return out


_WORKER: dict = {}


def _init(cfg_json: str) -> None:
    _WORKER["work"] = DocWork(CorpusConfig.model_validate_json(cfg_json))


def _work(docs: list[tuple]) -> dict:
    return _WORKER["work"](docs)


def start_method(module: str, *preload: str):
    """Where workers come from: forked from a fork server that has imported the parent's main
    script, `module` and the `preload` modules (the parent may hold threads, so it never forks
    itself), or spawned
    where there is no fork server (Windows). A spawned worker starts a new interpreter and
    re-imports the main script (for the CLI, expertlm.cli: pydantic, rich, click) and numpy,
    about half a second of a core each; a worker forked from the server has them already."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["__main__", module, *preload])  # (read when the server starts)
    return ctx


class WorkerPool:
    """`submit(fn, *args) -> Future`: worker processes (`start_method`) set up by
    `initializer(*initargs)`, or this process when there is one worker. `state` is the module
    dict the initializer fills, cleared on exit. Use as a context manager."""

    def __init__(self, count: int, initializer: Callable, initargs: tuple, state: dict) -> None:
        self.count, self._state, self._pool = count, state, None
        if count > 1:  # (workers that end with this process, even on kill -9)
            self._pool = Pool(count, start_method(initializer.__module__), initializer, initargs)
        else:
            initializer(*initargs)

    def submit(self, fn: Callable, *args) -> Future:
        if self._pool is not None:
            return self._pool.submit(fn, *args)
        f: Future = Future()
        f.set_result(fn(*args))
        return f

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        self._state.clear()


class Workers(WorkerPool):
    """The pool of `corpus build`: workers that hold the build's config (`DocWork`)."""

    def __init__(self, cfg: CorpusConfig, count: int) -> None:
        cfg_json = cfg.model_copy(update={"workers": None}).model_dump_json()
        super().__init__(count, _init, (cfg_json,), _WORKER)


class PartWriter:
    """Appends the workers' results, in position order, to a part folder."""

    def __init__(self, folder: Path, cfg: CorpusConfig, shard: Shard) -> None:
        self.folder, self.cfg, self.shard = folder, cfg, shard
        self._eligible = open(folder / "eligible.bin", "wb")  # noqa: SIM115 (closed in close())
        self._lines = open(folder / "lines.bin", "wb")  # noqa: SIM115
        self._sigs = open(folder / "sigs.bin", "wb") if cfg.near_dedup else None  # noqa: SIM115
        self.exact = Spill(folder, "exact", EXACT) if cfg.dedup else None
        self.bands = Spill(folder, "bands", BANDS) if cfg.near_dedup else None
        self.rows = 0
        self.counts: Counter = Counter()
        self.leaked: set[int] = set()

    def add(self, positions: np.ndarray, result: dict) -> None:
        codes = result["codes"]
        for code, n in enumerate(np.bincount(codes, minlength=256).tolist()):
            if n and code != ELIGIBLE:
                self.counts[REMOVALS[code]] += n
        pos = positions[codes == ELIGIBLE]
        k = len(pos)
        self.leaked.update(result.get("leaked", ()))
        if not k:
            return
        rec = np.empty(k, dtype=ELIGIBLE_DOCS)
        rec["pos"], rec["chars"], rec["val"] = pos, result["chars"], result["val"]
        rec.tofile(self._eligible)
        self._lines.write(_BLOCK_HEADER.pack(k, len(result["lines"])))
        self._lines.write(result["lines"])
        if self.exact is not None:
            e = np.empty(k, dtype=EXACT)
            e["hi"], e["lo"], e["pos"] = result["digests"][:, 0], result["digests"][:, 1], pos
            self.exact.add(e)
        if self.bands is not None:
            result["sigs"].tofile(self._sigs)
            keys = result["keys"]  # (k, bands)
            b = np.empty(keys.size, dtype=BANDS)
            b["key"] = keys.ravel()
            b["pos"] = np.repeat(pos, keys.shape[1])
            rows = np.arange(self.rows, self.rows + k, dtype=np.uint64)
            b["ref"] = np.repeat((np.uint64(self.shard.index) << np.uint64(REF_SHIFT)) | rows, keys.shape[1])
            self.bands.add(b)
        self.rows += k

    def close(self) -> dict:
        for f in (self._eligible, self._lines, self._sigs):
            if f is not None:
                f.close()
        return {
            "exact": self.exact.close() if self.exact is not None else [],
            "bands": self.bands.close() if self.bands is not None else [],
        }


def scan(
    files: list[Source],
    roots: tuple[Path, ...],
    cfg: CorpusConfig,
    folder: Path,
    shard: Shard,
    workers: Workers,
    inputs: list[dict],
    on_bytes: Callable[[int], None],
    on_docs: Callable[[int], None],
) -> dict:
    """Read `files` (described by `inputs`), do this shard's per-document work into the part
    `folder`; returns (and writes) its part.json."""
    stats: Counter = Counter()  # the reader's: bad records, of every shard
    reader = Reader(cfg, stats, on_bytes, roots)
    part = PartWriter(folder, cfg, shard)
    pos = bad_seen = owned = owned_bad = 0
    batch: list[tuple] = []
    batch_pos: list[int] = []
    chars = 0
    pending: deque[tuple[np.ndarray, Future]] = deque()

    def bad_records() -> None:  # bad records read since the last document take positions too
        nonlocal pos, bad_seen, owned, owned_bad
        for p in range(pos, pos + stats["bad_record"] - bad_seen):
            if shard.owns(p):
                owned, owned_bad = owned + 1, owned_bad + 1
        pos += stats["bad_record"] - bad_seen
        bad_seen = stats["bad_record"]

    def submit() -> None:
        nonlocal batch, batch_pos, chars
        if batch:
            pending.append((np.array(batch_pos, dtype=np.uint64), workers.submit(_work, batch)))
            batch, batch_pos, chars = [], [], 0
        while len(pending) > 2 * workers.count:  # bounded: memory stays flat
            done(*pending.popleft())

    def done(positions: np.ndarray, fut: Future) -> None:
        part.add(positions, fut.result())
        on_docs(owned)

    try:
        for path in files:
            for raw in reader.read(path):
                bad_records()
                p, pos = pos, pos + 1
                if not shard.owns(p):
                    continue
                owned += 1
                batch.append((raw.text, raw.id, raw.year, raw.source, raw.extra))
                batch_pos.append(p)
                chars += len(raw.text)
                if chars >= BATCH_CHARS:
                    submit()
        bad_records()
        submit()
        while pending:
            done(*pending.popleft())
    finally:
        runs = part.close()
    counts = {k: part.counts[k] for k in REMOVALS[1:7]}
    meta = {
        "format": PART_FORMAT,
        "shard": [shard.index, shard.count],
        "config": content_config(cfg),
        "inputs": inputs,
        "positions": pos,
        "counts": {"input": owned, "bad_record": owned_bad, **counts},
        "eligible": part.rows,
        "runs": runs,
        "reader": {"found": reader.found, "seen": list(reader.seen), "records": reader.records},
        "leaked": sorted(part.leaked),
    }
    write_json(folder / PART, meta)
    return meta


# --- reading a part back ---------------------------------------------------------------------


class EligibleCursor:
    """A part's eligible documents and their lines, read forward in position order."""

    def __init__(self, folder: Path) -> None:
        self._recs = open(folder / "eligible.bin", "rb")  # noqa: SIM115 (closed by close())
        self._lines = open(folder / "lines.bin", "rb")  # noqa: SIM115
        self._buf = np.empty(0, dtype=ELIGIBLE_DOCS)
        self._pending: deque[bytes] = deque()  # lines decompressed, not yet taken

    def take(self, below: int) -> tuple[np.ndarray, list[bytes]]:
        """The next documents whose position is below `below`, with their lines (each with its
        newline: JSON never writes a raw one, so a batch's lines split at its newlines)."""
        out = []
        while True:
            if not len(self._buf):
                self._buf = np.fromfile(self._recs, dtype=ELIGIBLE_DOCS, count=1 << 14)
                if not len(self._buf):
                    break
            k = int(np.searchsorted(self._buf["pos"], np.uint64(below)))
            out.append(self._buf[:k])
            self._buf = self._buf[k:]
            if len(self._buf):
                break
        recs = np.concatenate(out) if out else np.empty(0, dtype=ELIGIBLE_DOCS)
        while len(self._pending) < len(recs):
            docs, size = _BLOCK_HEADER.unpack(self._lines.read(_BLOCK_HEADER.size))
            lines = self._lines.read(size).split(b"\n")[:-1]
            assert len(lines) == docs, "a part's lines do not match its documents"
            self._pending.extend(lines)
        return recs, [self._pending.popleft() + b"\n" for _ in range(len(recs))]

    def close(self) -> None:
        self._recs.close()
        self._lines.close()
