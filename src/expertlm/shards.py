"""Token shards: corpus + tokenizer -> flat token files, and the reader over them.

`train.bin` / `val.bin` are flat little-endian streams of token ids (uint16 when the vocabulary
fits, else uint32) with `<|endoftext|>` before every document, as llm.c writes them, readable
with `numpy.memmap` (nanoGPT's layout). `meta.json` says dtype, vocabulary, counts and the
hashes of the corpus and tokenizer they were made from; `tokenizer/` is a copy of the tokenizer,
so a shards folder is self-describing.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from expertlm.config import PrepareConfig
from expertlm.console import bytes_progress, info, warn
from expertlm.corpus.docs import SPLITS, corpus_files, corpus_hash, iter_texts, split_file
from expertlm.corpus.shard import BLOCK_DOCS, Shard, block_owners, find_parts
from expertlm.encode import BatchEncoder
from expertlm.errors import ExpertlmError
from expertlm.io import atomic_dir, check_output, provenance, read_json, write_json
from expertlm.tokenizer import copy_tokenizer_files, load_handle, load_tokenizer

FORMAT = "expertlm.shards/1"
META = "meta.json"
PART = "part.json"  # a --shard I/N output: its documents' tokens, per position block
PART_FORMAT = "expertlm.shards-part/1"
BLOCKS = np.dtype([("block", "<u8"), ("tokens", "<u8")])
# Characters of text encoded per call: big enough to keep the Rust thread pool busy, small
# enough that memory stays flat whatever the corpus size (~2 MB of text + its token lists).
BATCH_CHARS = 2_000_000


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 2**16 else np.dtype(np.uint32)


def read_meta(shards: str | Path) -> dict:
    """meta.json of a shards folder, checked: what the token files are needs these keys."""
    path = Path(shards) / META
    if not path.is_file():
        raise ExpertlmError(
            f"{shards}: not a shards folder (no {META}; make one with `expertlm data prepare`)"
        )
    meta = read_json(path)
    if not isinstance(meta, dict):
        raise ExpertlmError(f"{path}: expected a JSON object")
    wants = {"dtype": str, "vocab_size": int, "eot_id": int, "tokens": dict}
    bad = [k for k, t in wants.items() if not isinstance(meta.get(k), t) or isinstance(meta.get(k), bool)]
    if bad:
        raise ExpertlmError(f"{path}: missing or malformed key(s) {', '.join(bad)} (make the shards again)")
    if meta["dtype"] not in ("uint16", "uint32"):
        raise ExpertlmError(f"{path}: key 'dtype': {meta['dtype']!r} is not uint16 or uint32")
    if not 0 < meta["vocab_size"] <= np.iinfo(meta["dtype"]).max + 1:
        raise ExpertlmError(f"{path}: key 'vocab_size': {meta['vocab_size']} does not fit {meta['dtype']} token ids")
    if not 0 <= meta["eot_id"] < meta["vocab_size"]:
        raise ExpertlmError(f"{path}: key 'eot_id': {meta['eot_id']} is not an id of the vocabulary")
    if not all(isinstance(v, int) and v >= 0 for v in meta["tokens"].values()):
        raise ExpertlmError(f"{path}: key 'tokens': expected a count per split")
    return meta


def open_tokens(shards: str | Path, split: str = "train") -> np.ndarray:
    """The token stream of one split, memory-mapped read-only, checked against meta.json: its
    length, and every id below the vocabulary size (a model would index past its embeddings)."""
    meta = read_meta(shards)
    path = Path(shards) / f"{split}.bin"
    if not path.is_file():
        raise ExpertlmError(f"{path}: no such token file")
    dtype = np.dtype(meta["dtype"]).newbyteorder("<")
    size = path.stat().st_size
    if size % dtype.itemsize:
        raise ExpertlmError(f"{path}: {size:,} bytes is not a whole number of {dtype.name} tokens (truncated?)")
    count, expected = size // dtype.itemsize, meta["tokens"].get(split)
    if expected is not None and count != expected:
        raise ExpertlmError(
            f"{path}: holds {count:,} tokens, meta.json says {expected:,} (truncated or replaced: "
            f"make the shards again)"
        )
    if count == 0:  # an empty split is legal, but numpy cannot map an empty file
        return np.empty(0, dtype=dtype)
    tokens = np.memmap(path, dtype=dtype, mode="r")
    if (top := int(tokens.max())) >= meta["vocab_size"]:
        raise ExpertlmError(
            f"{path}: token id {top:,} is not below meta.json's vocab_size {meta['vocab_size']:,}"
        )
    return tokens


def _batches(texts: Iterator[str], max_chars: int) -> Iterator[list[str]]:
    batch: list[str] = []
    size = 0
    for text in texts:
        batch.append(text)
        size += len(text)
        if size >= max_chars:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def _prefetch(it: Iterator, depth: int = 2) -> Iterator:
    """Run `it` (gzip + JSON parsing, which holds the GIL) in a thread, so it overlaps with
    encoding (Rust, which releases it). At most `depth` items wait: memory stays bounded."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    failure: list[BaseException] = []
    stop = threading.Event()  # set when the consumer is gone (finished, or failed mid-way)

    def put(item: object) -> bool:
        # A plain put() would block forever once the consumer stops reading: the thread and
        # its open input file would leak with every failed encode.
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                pass
        return False

    def work() -> None:
        try:
            for item in it:
                if not put(item):
                    return
        except BaseException as e:  # re-raised in the consumer
            failure.append(e)
        finally:
            put(done)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    try:
        while (item := q.get()) is not done:
            yield item
    finally:
        stop.set()
        thread.join()
    if failure:
        raise failure[0]


def encode_to_file(
    texts: Iterator[str],
    path: Path,
    encoder: BatchEncoder,
    on_docs: Callable[[int, int], None],
    doc_tokens: list[np.ndarray] | None = None,
) -> tuple[int, int]:
    """Encode documents into a flat token file; returns (documents, tokens). `doc_tokens`, if
    given, gets each batch's tokens per document (the eot ids: a document's text never
    encodes to <|endoftext|>, which is encoded as text)."""
    n_docs = n_tokens = 0
    with open(path, "wb") as f:
        for flat, docs in encoder.encode(_prefetch(_batches(texts, BATCH_CHARS))):
            flat.tofile(f)  # (tokens + one eot per doc,) little-endian
            n_docs += docs
            n_tokens += len(flat)
            on_docs(docs, len(flat))
            if doc_tokens is not None:
                starts = np.flatnonzero(flat == encoder.eot_id)
                if len(starts) != docs or (docs and starts[0] != 0):
                    raise ExpertlmError(f"{path}: documents and <|endoftext|> ids disagree")
                doc_tokens.append(np.diff(np.r_[starts, len(flat)]).astype(np.uint64))
    return n_docs, n_tokens


def _copy_tokenizer(name: str, dest: Path) -> None:
    src = Path(name)
    dest.mkdir()
    if src.is_dir():
        copy_tokenizer_files(src, dest)
    else:
        load_tokenizer(name).save_pretrained(dest)


def _same_inputs(out: Path, expected: dict) -> bool:
    try:
        return all(read_json(out / META).get(k) == v for k, v in expected.items())
    except ExpertlmError:
        return False


def _up_to_date(out: Path, expected: dict) -> bool:
    try:
        meta = read_meta(out)
    except ExpertlmError:
        return False
    if any(meta.get(k) != v for k, v in expected.items()):
        return False
    if not (out / "tokenizer").is_dir():  # a folder missing its tokenizer copy is rebuilt
        return False
    itemsize = np.dtype(meta["dtype"]).itemsize
    return all(
        (out / f"{s}.bin").is_file() and (out / f"{s}.bin").stat().st_size == n * itemsize
        for s, n in meta["tokens"].items()
    )


def data_prepare(corpus: str | Path, out: str | Path, *, tokenizer: str | Path,
                 overwrite: bool = False, show_progress: bool = True, **options) -> Path:  # fmt: skip
    """Tokenize a corpus into `train.bin`, `val.bin` and `meta.json` (`options`: the fields of
    `PrepareConfig`).

    Re-running with the same corpus and tokenizer does nothing; any other existing `out`
    (shards made from other inputs too) is refused unless `overwrite`. `shard="I/N"` encodes
    task I's documents into a part folder; `merge=DIR` concatenates the N parts in DIR into the
    very files one task would have written.
    """
    t0 = time.time()
    cfg = PrepareConfig.from_options(options)
    shard = Shard.parse(cfg.shard)
    out = Path(out)
    check_output(out, [corpus, tokenizer, *filter(None, [cfg.merge])])
    files = corpus_files(corpus)
    tok = load_handle(tokenizer)
    expected = {"format": FORMAT, "corpus_hash": corpus_hash(corpus), "tokenizer_hash": tok.hash}
    if shard.whole and _up_to_date(out, expected):
        info(f"shards: {out} is up to date (same corpus and tokenizer): nothing to do")
        return out
    if shard.whole and (out / META).is_file() and _same_inputs(out, expected):
        overwrite = True  # made from these very inputs, but incomplete: made again
    if (out / META).is_file() and not overwrite:
        raise ExpertlmError(
            f"{out}: holds shards made from another corpus or tokenizer (pass --overwrite to "
            f"replace them)"
        )

    dtype = token_dtype(tok.vocab_size).newbyteorder("<")
    splits = SPLITS if len(files) > 1 else ("train",)
    parts = None
    if cfg.merge is not None:
        parts = find_parts(cfg.merge, PART, PART_FORMAT)
        for folder, meta in parts:
            theirs = {k: meta.get(k) for k in ("corpus_hash", "tokenizer_hash", "dtype")}
            if theirs != {**{k: expected[k] for k in ("corpus_hash", "tokenizer_hash")}, "dtype": dtype.name}:
                raise ExpertlmError(f"{folder}: encoded from another corpus or tokenizer; merge "
                                    "with the corpus and tokenizer the shards read")  # fmt: skip
    with atomic_dir(out, overwrite) as tmp:
        if parts is not None:
            counts = _concatenate(parts, tmp, splits, dtype)
            exact = all(m["encoder"] == "piece cache" for _, m in parts)
            cached = exact
        else:
            counts, cached, exact = _encode(corpus, tok, dtype, splits, shard, tmp, show_progress)
            if not exact:
                warn(
                    "the piece-cache encoder disagreed with the tokenizer on a document and switched "
                    "to the tokenizer's own batch encoder; please report this with the tokenizer used"
                )
        encoder_name = "piece cache" if cached and exact else "tokenizers batch"
        if not shard.whole:
            write_json(tmp / PART, {
                "format": PART_FORMAT, "shard": [shard.index, shard.count],
                **{k: expected[k] for k in ("corpus_hash", "tokenizer_hash")}, "dtype": dtype.name,
                "encoder": encoder_name, **{k: {s: c[k] for s, c in counts.items()}
                                            for k in ("positions", "docs", "tokens")},
            })  # fmt: skip
            info(f"shards {shard}: {sum(c['docs'] for c in counts.values()):,} documents -> {out} "
                 f"(merge the {shard.count} with --merge)")  # fmt: skip
            return out
        if counts["train"]["tokens"] == 0:
            raise ExpertlmError(f"{corpus}: the train split has no documents")
        _copy_tokenizer(tokenizer, tmp / "tokenizer")
        wall_s = time.time() - t0
        total_tokens = sum(c["tokens"] for c in counts.values())
        write_json(
            tmp / META,
            {
                **expected,
                "dtype": dtype.name,
                "byte_order": "little",
                "vocab_size": tok.vocab_size,
                "eot_id": tok.eot_id,
                "eot_position": "before each document",
                "encoder": encoder_name,
                "tokens": {s: c["tokens"] for s, c in counts.items()},
                "docs": {s: c["docs"] for s, c in counts.items()},
                "corpus": str(corpus),
                "tokenizer": str(tokenizer),
                "wall_s": round(wall_s, 3),
                "tokens_per_s": round(total_tokens / max(wall_s, 1e-9)),
                **provenance(),
            },
        )
    sizes = ", ".join(f"{s} {c['tokens']:,} tokens ({c['docs']:,} docs)" for s, c in counts.items())
    info(f"shards: {sizes}, {dtype.name} -> {out}")
    return out


def _encode(corpus, tok, dtype: np.dtype, splits: tuple[str, ...], shard: Shard, tmp: Path,
            show_progress: bool) -> tuple[dict[str, dict[str, int]], bool, bool]:  # fmt: skip
    """Encode each split (this shard's documents of it) into `tmp`; a shard also writes each
    split's tokens per position block (`SPLIT.blocks`). Returns (counts, cached, exact)."""
    counts: dict[str, dict[str, int]] = {}
    encoder = BatchEncoder(tok.backend.to_str(), tok.eot_id, dtype)
    with encoder, bytes_progress("tokens", show_progress) as bar:
        for split in splits:
            path = split_file(corpus, split)
            task = bar.add_task(f"data prepare {split}", total=path.stat().st_size, count=0)

            def on_docs(docs: int, tokens: int, task=task) -> None:
                bar.update(task, count=bar.tasks[task].fields["count"] + tokens)

            texts = iter_texts(corpus, split, on_bytes=lambda n, task=task: bar.advance(task, n))
            owned: list[int] = []
            seen = [0]

            def mine(texts=texts, owned=owned, seen=seen) -> Iterator[str]:
                for i, text in enumerate(texts):
                    seen[0] = i + 1
                    if shard.owns(i):
                        owned.append(i)
                        yield text

            per_doc: list[np.ndarray] | None = None if shard.whole else []
            docs, tokens = encode_to_file(mine(), tmp / f"{split}.bin", encoder, on_docs, per_doc)
            bar.update(task, completed=path.stat().st_size)
            counts[split] = {"docs": docs, "tokens": tokens, "positions": seen[0]}
            if per_doc is not None:
                _block_table(np.array(owned, dtype=np.int64), per_doc).tofile(tmp / f"{split}.blocks")
    return counts, encoder.cached, encoder.exact


def _block_table(positions: np.ndarray, per_doc: list[np.ndarray]) -> np.ndarray:
    """(blocks,) BLOCKS: the tokens of each position block that holds documents."""
    tokens = np.concatenate(per_doc) if per_doc else np.empty(0, dtype=np.uint64)
    blocks = positions // BLOCK_DOCS
    starts = np.flatnonzero(np.r_[True, blocks[1:] != blocks[:-1]]) if len(blocks) else np.empty(0, np.int64)
    table = np.empty(len(starts), dtype=BLOCKS)
    table["block"] = blocks[starts] if len(blocks) else []
    table["tokens"] = np.add.reduceat(tokens, starts) if len(starts) else []
    return table


def _concatenate(parts: list[tuple[Path, dict]], tmp: Path, splits: tuple[str, ...],
                 dtype: np.dtype) -> dict[str, dict[str, int]]:  # fmt: skip
    """Each split's tokens from the parts, block by block in input order."""
    counts: dict[str, dict[str, int]] = {}
    for split in splits:
        positions = parts[0][1]["positions"][split]
        tables = [np.fromfile(f / f"{split}.blocks", dtype=BLOCKS) for f, _ in parts]
        next_row = [0] * len(parts)
        sources = [open(f / f"{split}.bin", "rb") for f, _ in parts]  # noqa: SIM115
        try:
            with open(tmp / f"{split}.bin", "wb") as dst:
                blocks = -(-positions // BLOCK_DOCS)
                for k, owner in enumerate(block_owners(blocks, len(parts)).tolist()):
                    row = next_row[owner]
                    if row >= len(tables[owner]) or int(tables[owner]["block"][row]) != k:
                        raise ExpertlmError(f"{parts[owner][0]}: block {k} of {split} is missing")
                    next_row[owner] += 1
                    left = int(tables[owner]["tokens"][row]) * dtype.itemsize
                    while left:
                        chunk = sources[owner].read(min(left, 1 << 24))
                        if not chunk:
                            raise ExpertlmError(f"{parts[owner][0] / (split + '.bin')}: shorter than its blocks")
                        dst.write(chunk)
                        left -= len(chunk)
        finally:
            for f in sources:
                f.close()
        counts[split] = {k: sum(m[k][split] for _, m in parts) for k in ("docs", "tokens")}
    return counts
