"""`expertlm corpus build`: sources -> clean, filtered, deduplicated, decontaminated corpus.

Documents go through the filters in a fixed order and each removal is counted under the
first filter that removed it, so the manifest's counts add up:
input = kept + bad_record + empty + too_short + no_year + before_min_year + after_max_year
        + contaminated + exact_duplicate + near_duplicate.
The first occurrence of a text (exact) or of a near duplicate is kept, in input order.

A build runs in two steps. `corpus/scan.py` reads the sources and does the per-document work
(cleaning, the per-document filters, the text digest, the MinHash signature) in `--workers`
processes, into a part folder. The merge, here, takes the global decisions over the part with
the bounded index of `corpus/index.py` (exact duplicates, near-duplicate edges, then a sweep in
input order that keeps a document unless it joins a kept earlier one), splits by id hash and
writes the corpus. `--shard I/N` stops after the scan, with the part as its output; `--merge
DIR` merges the N parts in DIR. The output is byte for byte the same in every case.
"""

from __future__ import annotations

import shutil
import time
from collections import Counter
from pathlib import Path

import numpy as np

from expertlm.config import CorpusConfig
from expertlm.console import bytes_progress, info, warn
from expertlm.corpus.decontam import Decontaminator
from expertlm.corpus.docs import MANIFEST, SPLITS, in_val
from expertlm.corpus.index import (
    EDGES,
    Signatures,
    Spill,
    edges_by_position,
    exact_duplicates,
    near_edges,
)
from expertlm.corpus.scan import (
    PART,
    PART_FORMAT,
    REMOVALS,
    EligibleCursor,
    Workers,
    content_config,
    scan,
    worker_count,
)
from expertlm.corpus.shard import BLOCK_DOCS, Shard, block_owners, check_parts, find_parts
from expertlm.corpus.sources import check_fields, describe_source, expand_sources
from expertlm.errors import ExpertlmError
from expertlm.io import (
    GzipMembers,
    atomic_dir,
    check_output_dir,
    gzip_member,
    provenance,
    sha256_file,
    write_json,
)

__all__ = ["REMOVALS", "corpus_build", "in_val"]


def corpus_build(
    sources: list[str | Path],
    out: str | Path,
    *,
    overwrite: bool = False,
    show_progress: bool = True,
    **options,
) -> Path:
    """Build a corpus folder from source files and folders.

    `options` are the fields of `CorpusConfig` (text_field, min_chars, min_year, max_year,
    near_threshold, decontam, val_frac, workers, shard, merge, ...). Returns the output folder.
    """
    t0 = time.time()
    cfg = CorpusConfig.from_options(options, source="option")
    shard = Shard.parse(cfg.shard)
    out = Path(out)
    check_output_dir(out, overwrite, inputs=[*sources, *cfg.decontam, *filter(None, [cfg.merge])])
    files = expand_sources(list(sources), exclude=out)
    roots = tuple(Path(p) for p in sources if Path(p).is_dir())
    decontam = Decontaminator(cfg.decontam, cfg.decontam_ngram) if cfg.decontam else None
    inputs = [describe_source(p) for p in files]  # files: path, bytes, sha256; hf: datasets too
    parts = _shard_parts(cfg, inputs) if cfg.merge is not None else None
    total_bytes = sum(i["bytes"] for i in inputs)
    workers = worker_count(cfg.workers, total_bytes)

    with atomic_dir(out, overwrite) as tmp, Workers(cfg, workers) as pool:
        if parts is None:
            folder = tmp if not shard.whole else tmp / ".part"
            folder.mkdir(exist_ok=True)
            name = "corpus build" + ("" if shard.whole else f" {shard}")
            with bytes_progress("docs", show_progress) as bar:
                task = bar.add_task(name, total=total_bytes, count=0)
                meta = scan(files, roots, cfg, folder, shard, pool, inputs,
                            on_bytes=lambda n: bar.advance(task, n),
                            on_docs=lambda n: bar.update(task, count=n))  # fmt: skip
                bar.update(task, completed=total_bytes)
            if not shard.whole:
                info(f"corpus build shard {shard}: {meta['counts']['input']:,} of "
                     f"{meta['positions']:,} documents scanned -> {out} (merge the {shard.count} "
                     f"shards with --merge)")  # fmt: skip
                return out
            parts = [(folder, meta)]
        counts, sizes, leaked = _merge(parts, tmp, cfg, pool)
        shutil.rmtree(tmp / ".part", ignore_errors=True)
        shutil.rmtree(tmp / ".merge", ignore_errors=True)

        kept = sizes["train"]["docs"] + sizes["val"]["docs"]
        removed = {k: counts[k] for k in REMOVALS}
        if kept == 0:
            what = (
                ", ".join(f"{k} {v}" for k, v in removed.items() if v) or "no documents were read"
            )
            raise ExpertlmError(
                f"corpus is empty after filters: {counts['input']} input document(s) removed ({what})"
            )
        assert counts["input"] == kept + sum(removed.values()), "corpus counts do not add up"
        if sizes["val"]["docs"] == 0 and cfg.val_frac > 0:
            warn(
                f"the validation split is empty ({kept} documents at val_frac {cfg.val_frac}); raise --val-frac"
            )
        report = None
        if decontam is not None:
            report = {**decontam.report(), "items_leaked": len(leaked)}

        manifest = {
            "format": "expertlm.corpus/1",
            "inputs": inputs,
            "config": content_config(cfg),
            "counts": {"input": counts["input"], "kept": kept, "removed": removed},
            "split": {
                "method": "blake2b(seed, id) < val_frac",
                "seed": cfg.split_seed,
                "val_frac": cfg.val_frac,
                **{s: {"docs": sizes[s]["docs"], "chars": sizes[s]["chars"]} for s in sizes},
            },
            "outputs": {f"{s}.jsonl.gz": sha256_file(tmp / f"{s}.jsonl.gz") for s in sizes},
            "decontamination": report,
            "parallel": {"workers": workers, "shards": len(parts)},
            "wall_s": round(time.time() - t0, 3),
            **provenance(),
        }
        write_json(tmp / MANIFEST, manifest)

    info(
        f"corpus: kept {kept:,} of {counts['input']:,} documents "
        f"(train {sizes['train']['docs']:,}, val {sizes['val']['docs']:,}) -> {out}"
    )
    for k, v in removed.items():
        if v:
            info(f"  removed {k.replace('_', ' ')}: {v:,}")
    return out


def _shard_parts(cfg: CorpusConfig, inputs: list[dict]) -> list[tuple[Path, dict]]:
    """The N `--shard` outputs in `cfg.merge`, checked against these sources and options."""
    parts = find_parts(cfg.merge, PART, PART_FORMAT)  # type: ignore[arg-type]
    check_parts(parts, content_config(cfg), inputs)
    return parts


def _merge(
    parts: list[tuple[Path, dict]], tmp: Path, cfg: CorpusConfig, pool: Workers
) -> tuple[Counter, dict[str, Counter], set[int]]:
    """The global decisions over the parts, in input order, and the corpus files in `tmp`:
    (counts per filter, docs and chars per split, benchmark items leaked)."""
    folders = [f for f, _ in parts]
    metas = [m for _, m in parts]
    positions = metas[0]["positions"]
    counts: Counter = Counter()
    for m in metas:
        counts.update(m["counts"])
    found = {f: any(m["reader"]["found"].get(f) for m in metas) for f in metas[0]["reader"]["found"]}
    seen = dict.fromkeys(name for m in metas for name in m["reader"]["seen"])
    check_fields(cfg, found, seen, sum(m["reader"]["records"] for m in metas))

    scratch = tmp / ".merge"
    scratch.mkdir()
    runs = {kind: [f / r for f, m in parts for r in m["runs"][kind]] for kind in ("exact", "bands")}
    exact = exact_duplicates(runs["exact"], positions) if cfg.dedup else np.zeros(positions, bool)
    edges = iter(())
    kept = None
    if cfg.near_dedup:
        sigs = Signatures([f / "sigs.bin" for f in folders], cfg.num_perm)
        spill = Spill(scratch, "edges", EDGES)
        try:
            near_edges(runs["bands"], sigs, exact, cfg.near_threshold, spill)
        finally:
            sigs.close()
        edges = edges_by_position([scratch / r for r in spill.close()], positions)
        kept = np.zeros(positions, dtype=bool)
    edge = next(edges, None)

    sizes = {s: Counter() for s in SPLITS}
    writers = {s: GzipMembers(tmp / f"{s}.jsonl.gz", lambda d: pool.submit(gzip_member, d))
               for s in SPLITS}  # fmt: skip
    cursors = [EligibleCursor(f) for f in folders]
    blocks = -(-positions // BLOCK_DOCS)
    try:
        for k, owner in enumerate(block_owners(blocks, len(parts)).tolist()):
            recs, lines = cursors[owner].take((k + 1) * BLOCK_DOCS)
            for (pos, chars, val), line in zip(recs.tolist(), lines, strict=True):
                if exact[pos]:
                    counts["exact_duplicate"] += 1
                    continue
                if kept is not None:
                    while edge is not None and edge[0] < pos:
                        edge = next(edges, None)
                    if edge is not None and edge[0] == pos and kept[edge[1]].any():
                        counts["near_duplicate"] += 1
                        continue
                    kept[pos] = True
                split = "val" if val else "train"
                writers[split].write(line)
                sizes[split]["docs"] += 1
                sizes[split]["chars"] += chars
    finally:
        for w in writers.values():
            w.close()
        for c in cursors:
            c.close()
    leaked = {i for m in metas for i in m["leaked"]}
    return counts, sizes, leaked
