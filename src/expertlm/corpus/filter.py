"""`expertlm corpus filter`: carve a field out of general text with a classifier.

Every document of the sources (corpus folders, or source files read as `corpus build` reads
them) is scored by a classifier from `classifier train`: the whole document, or with `--unit
paragraph` each paragraph (blank-line separated). A unit is kept when its probability is at or
above `--threshold` (default: the classifier's default threshold, 0.5), or, with `--keep-frac
F`, when it is among the F highest-scored units (ties in input order; the scores are computed
in a first pass and the sources read again to write). A paragraph-filtered document keeps its
kept paragraphs (joined by blank lines) and is dropped if none is kept.

The output is a corpus folder like `corpus build`'s: `train.jsonl.gz` and `val.jsonl.gz`
(split by the same hash of the id), each document with its `domain_score` (paragraphs: the
highest kept paragraph's score, with `paragraph_scores` of the kept paragraphs), and
`manifest.json` with the threshold, a 20-bin histogram of the scores, the counts kept and
removed (input = kept + removed), the inputs and the classifier with their hashes. The filter
does not clean or deduplicate: filter a built corpus for that.

Scoring runs in `--workers` processes, a batch of about a million characters at a time; the
output is the same for any number of them. Past one machine, `--shard I/N` scores and filters
only task I's documents (by position, as `corpus/shard.py` assigns them) into a part folder, and
`--merge DIR` puts the N parts back in input order: the corpus files are byte for byte the ones
one task writes. (`--keep-frac` needs every score at once, so it takes no shards.)
"""

from __future__ import annotations

import json
import math
import re
import time
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path

import numpy as np

from expertlm.classifier import Classifier, describe_inputs, iter_documents, load_classifier
from expertlm.config import CorpusConfig, FilterConfig
from expertlm.console import bytes_progress, info, warn
from expertlm.corpus.docs import MANIFEST, SPLITS, in_val
from expertlm.corpus.scan import WorkerPool, worker_count
from expertlm.corpus.shard import Shard, check_parts, find_parts, merge_order
from expertlm.errors import ExpertlmError
from expertlm.features import _WORKER, init_worker, score_texts
from expertlm.io import (
    GzipMembers,
    atomic_dir,
    check_output_dir,
    gzip_member,
    provenance,
    read_lines,
    sha256_file,
    write_json,
)

BATCH_CHARS = 1_000_000
BATCH_UNITS = 4096  # (the vectorizer's fast 32-bit sort keys hold 4096 documents of 2**20 columns)
BINS = 20
_PARAGRAPH = re.compile(r"\n[ \t\r\f\v]*\n")
RUN_FIELDS = frozenset({"workers", "shard", "merge"})
PART, PART_FORMAT = "filter-part.json", "expertlm.filter-part/1"
READ_FIELDS = ("text_field", "id_field", "year_field", "keep_fields", "skip_bad")


def paragraphs(text: str) -> list[str]:
    """The blank-line separated paragraphs of `text`, stripped, empty ones left out."""
    return [p for p in (s.strip() for s in _PARAGRAPH.split(text)) if p]


# --- scoring in worker processes -------------------------------------------------------------

class Scorers(WorkerPool):
    """Worker processes that hold the classifier's weights (`scan.start_method`; `features` holds their
    functions and imports numpy only), or this process when there is one worker."""

    def __init__(self, clf: Classifier, count: int) -> None:
        v = clf.vectorizer
        args = ({"n_features": v.n_features, "ngram_max": v.ngram_max, "lowercase": v.lowercase,
                 "max_chars": v.max_chars}, clf.coef, clf.intercept)  # fmt: skip
        super().__init__(count, init_worker, args, _WORKER)


def units_of(doc: dict, unit: str) -> list[str]:
    return [doc["text"]] if unit == "document" else paragraphs(doc["text"])


def scored(docs: Iterator[dict], unit: str, pool: Scorers) -> Iterator[tuple[dict, list[str], np.ndarray]]:
    """(document, its units, their scores) in input order."""
    pending: deque[tuple[list, list, Future]] = deque()
    batch: list[dict] = []
    units: list[list[str]] = []
    chars = n_units = 0

    def submit() -> None:
        nonlocal batch, units, chars, n_units
        if batch:
            flat = [u for us in units for u in us]
            pending.append((batch, units, pool.submit(score_texts, flat)))
            batch, units, chars, n_units = [], [], 0, 0

    def done() -> Iterator[tuple[dict, list[str], np.ndarray]]:
        docs_, units_, result = pending.popleft()
        scores = result.result()
        at = 0
        for doc, us in zip(docs_, units_, strict=True):
            yield doc, us, scores[at : at + len(us)]
            at += len(us)

    for doc in docs:
        us = units_of(doc, unit)
        batch.append(doc)
        units.append(us)
        chars += len(doc["text"])
        n_units += len(us)
        if chars >= BATCH_CHARS or n_units >= BATCH_UNITS:
            submit()
            while len(pending) > 2 * pool.count:
                yield from done()
    submit()
    while pending:
        yield from done()


# --- filtering, shards and their merge ------------------------------------------------------


def _filter(sources, out: Path, tmp: Path, cfg: FilterConfig, clf: Classifier, read_cfg: CorpusConfig,
            shard: Shard, pool: Scorers, bar, stats: Counter, total: int) -> tuple[float, dict]:
    """Score and keep `shard`'s documents into `tmp`: (threshold, tally). A shard's part also
    holds the positions of the documents it wrote (`{split}.positions.npy`)."""
    owned: deque[int] = deque()

    def read(name: str) -> Iterator[dict]:
        task = bar.add_task(name, total=total, count=0)
        for k, doc in enumerate(
            iter_documents(sources, read_cfg, stats, lambda n: bar.advance(task, n), out)
        ):
            if k % 256 == 0:
                bar.update(task, count=k)
            if shard.owns(k):
                owned.append(k)
                yield doc
        bar.update(task, completed=total)

    name = "corpus filter" + ("" if shard.whole else f" {shard}")
    if cfg.keep_frac is not None:  # first pass: every unit's score, then the top share
        per_doc = [s for _, _, s in scored(read(f"{name}: scoring"), cfg.unit, pool)]
        flat = np.concatenate(per_doc) if per_doc else np.zeros(0)
        keep_mask = np.zeros(len(flat), bool)
        keep_mask[np.argsort(-flat, kind="stable")[: math.ceil(cfg.keep_frac * len(flat))]] = True
        threshold = float(flat[keep_mask].min()) if keep_mask.any() else 1.0
        stats.clear()  # (the second pass counts the bad records again)
        owned.clear()
        stream = ((doc, units_of(doc, cfg.unit), s) for doc, s in zip(read(name), per_doc, strict=True))
    else:
        threshold = cfg.threshold if cfg.threshold is not None else clf.threshold
        keep_mask = None
        stream = scored(read(name), cfg.unit, pool)

    writers = {s: GzipMembers(tmp / f"{s}.jsonl.gz", lambda d: pool.submit(gzip_member, d)) for s in SPLITS}
    positions: dict[str, list[int]] = {s: [] for s in SPLITS}
    sizes = {s: Counter() for s in SPLITS}
    counts: Counter = Counter()
    hist = np.zeros(BINS, np.int64)
    top = -1.0
    at = 0
    try:
        for doc, units, scores in stream:
            pos = owned.popleft()
            counts["input"] += 1
            counts["units"] += len(units)
            counts["input_chars"] += len(doc["text"])
            hist += np.bincount(np.minimum((scores * BINS).astype(np.int64), BINS - 1), minlength=BINS)
            top = max(top, float(scores.max(initial=-1.0)))
            keep = keep_mask[at : at + len(units)] if keep_mask is not None else scores >= threshold
            at += len(units)
            if not keep.any():
                continue
            counts["units_kept"] += int(keep.sum())
            if cfg.unit == "document":
                doc = {**doc, "domain_score": float(scores[0])}
            else:
                kept = scores[keep]
                doc = {**doc, "text": "\n\n".join(u for u, k in zip(units, keep, strict=True) if k),
                       "domain_score": float(kept.max()), "paragraph_scores": kept.tolist(),
                       "paragraphs": len(units)}  # fmt: skip
            split = "val" if in_val(str(doc["id"]), cfg.val_frac, cfg.split_seed) else "train"
            writers[split].write((json.dumps(doc, ensure_ascii=False) + "\n").encode("utf-8"))
            positions[split].append(pos)
            sizes[split]["docs"] += 1
            sizes[split]["chars"] += len(doc["text"])
    finally:
        for w in writers.values():
            w.close()
    if not shard.whole:
        for split in SPLITS:
            np.save(tmp / f"{split}.positions.npy", np.asarray(positions[split], dtype=np.int64))
    return threshold, {"counts": dict(counts), "sizes": {k: dict(v) for k, v in sizes.items()},
                       "histogram": hist.tolist(), "top": top, "bad_records": stats["bad_record"]}  # fmt: skip


def _filter_parts(cfg: FilterConfig, inputs: list[dict], clf: Classifier) -> list[tuple[Path, dict]]:
    """The N `--shard` outputs in `cfg.merge`, checked against these sources, options and
    classifier."""
    parts = find_parts(cfg.merge, PART, PART_FORMAT)  # type: ignore[arg-type]
    check_parts(parts, cfg.model_dump(mode="json", exclude=set(RUN_FIELDS)), inputs)
    for folder, meta in parts:
        if meta.get("classifier") != clf.hash:
            raise ExpertlmError(f"{folder}: made with another classifier; merge with the shards' --classifier")
    return parts


def _merge(parts: list[tuple[Path, dict]], tmp: Path, pool: Scorers) -> dict:
    """The parts' documents back in input order, as the corpus files in `tmp`; their tallies
    summed."""
    for split in SPLITS:
        positions = [np.load(f / f"{split}.positions.npy") for f, _ in parts]
        lines = [(line for _, line in read_lines(f / f"{split}.jsonl.gz")) for f, _ in parts]
        writer = GzipMembers(tmp / f"{split}.jsonl.gz", lambda d: pool.submit(gzip_member, d))
        try:
            for s, start, stop in merge_order(positions, len(parts)):
                for _ in range(stop - start):
                    writer.write(next(lines[s]))
        finally:
            writer.close()
    metas = [m for _, m in parts]
    counts: Counter = Counter()
    sizes = {s: Counter() for s in SPLITS}
    for m in metas:
        counts.update(m["counts"])
        for s in SPLITS:
            sizes[s].update(m["sizes"][s])
    return {"counts": dict(counts), "sizes": {k: dict(v) for k, v in sizes.items()},
            "histogram": np.sum([m["histogram"] for m in metas], axis=0).tolist(),
            "top": max(m["top"] for m in metas),
            "bad_records": metas[0]["bad_records"]}  # (every task reads every record)  # fmt: skip


def _finish(tmp: Path, cfg: FilterConfig, clf: Classifier, inputs: list[dict], threshold: float,
            tally: dict, shards: int, workers: int, t0: float) -> None:
    """Check what was kept and write the corpus manifest."""
    counts, sizes = Counter(tally["counts"]), tally["sizes"]
    kept = sizes["train"].get("docs", 0) + sizes["val"].get("docs", 0)
    if kept == 0:
        what = f"at or above {threshold:g}" if cfg.keep_frac is None else "in the top share"
        raise ExpertlmError(
            f"nothing kept: no {cfg.unit} of {counts['input']:,} document(s) scored {what} "
            f"(highest score {tally['top']:.4g}); lower --threshold or use --keep-frac"
        )
    if sizes["val"].get("docs", 0) == 0 and cfg.val_frac > 0:
        warn(f"the validation split is empty ({kept} documents at val_frac {cfg.val_frac}); raise --val-frac")
    removed = counts["input"] - kept
    manifest = {
        "format": "expertlm.corpus/1",
        "inputs": inputs,
        "config": cfg.model_dump(mode="json", exclude=set(RUN_FIELDS)),
        "counts": {"input": counts["input"], "kept": kept, "removed": {"below_threshold": removed}},
        "filter": {
            "classifier": {"path": str(clf.path), "sha256": clf.hash},
            "unit": cfg.unit,
            "threshold": threshold,
            "threshold_from": ("keep_frac" if cfg.keep_frac is not None else
                               "option" if cfg.threshold is not None else "classifier default"),
            "keep_frac": cfg.keep_frac,
            "units": {"input": counts["units"], "kept": counts["units_kept"],
                      "removed": counts["units"] - counts["units_kept"]},
            "chars": {"input": counts["input_chars"],
                      "kept": sizes["train"].get("chars", 0) + sizes["val"].get("chars", 0)},
            "histogram": {"edges": np.linspace(0, 1, BINS + 1).round(4).tolist(),
                          "counts": tally["histogram"]},
            "bad_records": tally["bad_records"],
        },
        "split": {
            "method": "blake2b(seed, id) < val_frac",
            "seed": cfg.split_seed,
            "val_frac": cfg.val_frac,
            **{s: {"docs": sizes[s].get("docs", 0), "chars": sizes[s].get("chars", 0)} for s in SPLITS},
        },
        "outputs": {f"{s}.jsonl.gz": sha256_file(tmp / f"{s}.jsonl.gz") for s in SPLITS},
        "parallel": {"workers": workers, "shards": shards},
        "wall_s": round(time.time() - t0, 3),
        **provenance(),
    }  # fmt: skip
    write_json(tmp / MANIFEST, manifest)


# --- the stage -------------------------------------------------------------------------------


def corpus_filter(
    sources: list[str | Path],
    out: str | Path,
    *,
    classifier: str | Path,
    overwrite: bool = False,
    show_progress: bool = True,
    **options,
) -> Path:
    """Keep the documents (or paragraphs) of `sources` that `classifier` scores as the field,
    as a corpus folder `out`. `options` are the fields of `FilterConfig`. Returns the folder."""
    t0 = time.time()
    cfg = FilterConfig.from_options(options, source="option")
    out = Path(out)
    sources = list(sources)
    shard = Shard.parse(cfg.shard)
    check_output_dir(out, overwrite, inputs=[*sources, classifier, *filter(None, [cfg.merge])])
    clf = load_classifier(classifier)
    # the reading options the user gave (a field named but in no record is an error)
    read_cfg = CorpusConfig(**{k: getattr(cfg, k) for k in READ_FIELDS if k in cfg.model_fields_set})
    inputs = describe_inputs(sources, out)
    parts = _filter_parts(cfg, inputs, clf) if cfg.merge is not None else None
    total = sum(i["bytes"] for i in inputs)
    workers = worker_count(cfg.workers, total)
    stats: Counter = Counter()

    with atomic_dir(out, overwrite) as tmp, Scorers(clf, workers) as pool, \
            bytes_progress("docs", show_progress) as bar:  # fmt: skip
        if parts is not None:
            threshold = parts[0][1]["threshold"]
            tally = _merge(parts, tmp, pool)
        else:
            threshold, tally = _filter(sources, out, tmp, cfg, clf, read_cfg, shard, pool, bar, stats, total)
        if not shard.whole:
            write_json(tmp / PART, {"format": PART_FORMAT, "shard": [shard.index, shard.count],
                                    "inputs": inputs, "config": cfg.model_dump(mode="json", exclude=set(RUN_FIELDS)),
                                    "classifier": clf.hash, "threshold": threshold, **tally})  # fmt: skip
        else:
            _finish(tmp, cfg, clf, inputs, threshold, tally, len(parts or [None]), workers, t0)
    counts, sizes = tally["counts"], tally["sizes"]
    kept = sizes["train"].get("docs", 0) + sizes["val"].get("docs", 0)
    if not shard.whole:
        info(f"corpus filter shard {shard}: kept {kept:,} of {counts.get('input', 0):,} documents -> {out} "
             f"(merge the {shard.count} shards with --merge)")  # fmt: skip
        return out
    info(f"corpus filter: kept {kept:,} of {counts['input']:,} documents at threshold {threshold:.4g} "
         f"({counts['units_kept']:,} of {counts['units']:,} {cfg.unit}s) -> {out}")  # fmt: skip
    return out
