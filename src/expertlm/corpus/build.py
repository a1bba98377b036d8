"""`expertlm corpus build`: sources -> clean, filtered, deduplicated, decontaminated corpus.

Documents stream through the filters in a fixed order and each removal is counted under the
first filter that removed it, so the manifest's counts add up:
input = kept + bad_record + empty + too_short + no_year + before_min_year + after_max_year
        + contaminated + exact_duplicate + near_duplicate.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from pathlib import Path

from expertlm.config import CorpusConfig
from expertlm.console import bytes_progress, info, warn
from expertlm.corpus.clean import clean_text
from expertlm.corpus.decontam import Decontaminator
from expertlm.corpus.dedup import ExactDedup, NearDedup
from expertlm.corpus.docs import MANIFEST
from expertlm.corpus.sources import describe_source, expand_sources, read_sources
from expertlm.errors import ExpertlmError
from expertlm.io import (
    JsonlWriter,
    atomic_dir,
    check_output_dir,
    provenance,
    sha256_file,
    write_json,
)

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


def in_val(doc_id: str, val_frac: float, seed: int = 0) -> bool:
    """Hash-based split: a document's split depends only on its id (and the seed), so adding
    documents never moves existing ones between train and validation."""
    digest = hashlib.blake2b(f"{seed}\0{doc_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64 < val_frac


def _year_removal(year: int | None, cfg: CorpusConfig) -> str | None:
    if year is None:
        filtering = cfg.min_year is not None or cfg.max_year is not None
        return "no_year" if filtering and not cfg.keep_no_year else None
    if cfg.min_year is not None and year < cfg.min_year:
        return "before_min_year"
    if cfg.max_year is not None and year > cfg.max_year:
        return "after_max_year"
    return None


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
    near_threshold, decontam, val_frac, ...). Returns the output folder.
    """
    t0 = time.time()
    cfg = CorpusConfig.from_options(options, source="option")
    out = Path(out)
    check_output_dir(out, overwrite, inputs=[*sources, *cfg.decontam])
    files = expand_sources(list(sources), exclude=out)
    roots = tuple(Path(p) for p in sources if Path(p).is_dir())
    decontam = Decontaminator(cfg.decontam, cfg.decontam_ngram) if cfg.decontam else None
    inputs = [describe_source(p) for p in files]  # files: path, bytes, sha256; hf: datasets too

    stats: Counter = Counter()
    exact = ExactDedup() if cfg.dedup else None
    near = (
        NearDedup(cfg.near_threshold, cfg.num_perm, cfg.shingle_words) if cfg.near_dedup else None
    )
    sizes = {s: Counter() for s in ("train", "val")}
    total_bytes = sum(i["bytes"] for i in inputs)

    with atomic_dir(out, overwrite) as tmp, bytes_progress("docs", show_progress) as bar:
        task = bar.add_task("corpus build", total=total_bytes, count=0)
        writers = {s: JsonlWriter(tmp / f"{s}.jsonl.gz") for s in ("train", "val")}
        try:
            for raw in read_sources(files, cfg, stats, lambda n: bar.advance(task, n), roots):
                stats["input"] += 1
                if stats["input"] % 64 == 0:
                    bar.update(task, count=stats["input"])
                text = clean_text(raw.text, cfg.unicode_form)
                removal = (
                    "empty"
                    if not text
                    else "too_short"
                    if len(text) < cfg.min_chars
                    else _year_removal(raw.year, cfg)
                )
                if removal is None and decontam is not None and decontam.is_contaminated(text):
                    removal = "contaminated"
                if removal is None and exact is not None and exact.is_duplicate(text):
                    removal = "exact_duplicate"
                if removal is None and near is not None and near.is_duplicate(text):
                    removal = "near_duplicate"
                if removal is not None:
                    stats[removal] += 1
                    continue
                doc_id = raw.id or hashlib.sha256(text.encode()).hexdigest()[:16]
                split = "val" if in_val(doc_id, cfg.val_frac, cfg.split_seed) else "train"
                writers[split].write(
                    {
                        "id": doc_id,
                        "text": text,
                        "year": raw.year,
                        "source": raw.source,
                        **raw.extra,
                    }
                )
                sizes[split]["docs"] += 1
                sizes[split]["chars"] += len(text)
            bar.update(task, count=stats["input"], completed=total_bytes)
        finally:
            for w in writers.values():
                w.close()

        stats["input"] += stats["bad_record"]  # bad records are inputs too
        kept = sizes["train"]["docs"] + sizes["val"]["docs"]
        removed = {k: stats[k] for k in REMOVALS}
        if kept == 0:
            what = (
                ", ".join(f"{k} {v}" for k, v in removed.items() if v) or "no documents were read"
            )
            raise ExpertlmError(
                f"corpus is empty after filters: {stats['input']} input document(s) removed ({what})"
            )
        assert stats["input"] == kept + sum(removed.values()), "corpus counts do not add up"
        if sizes["val"]["docs"] == 0 and cfg.val_frac > 0:
            warn(
                f"the validation split is empty ({kept} documents at val_frac {cfg.val_frac}); raise --val-frac"
            )

        manifest = {
            "format": "expertlm.corpus/1",
            "inputs": inputs,
            "config": cfg.model_dump(mode="json"),
            "counts": {"input": stats["input"], "kept": kept, "removed": removed},
            "split": {
                "method": "blake2b(seed, id) < val_frac",
                "seed": cfg.split_seed,
                "val_frac": cfg.val_frac,
                **{s: {"docs": sizes[s]["docs"], "chars": sizes[s]["chars"]} for s in sizes},
            },
            "outputs": {f"{s}.jsonl.gz": sha256_file(tmp / f"{s}.jsonl.gz") for s in sizes},
            "decontamination": decontam.report() if decontam else None,
            "wall_s": round(time.time() - t0, 3),
            **provenance(),
        }
        write_json(tmp / MANIFEST, manifest)

    info(
        f"corpus: kept {kept:,} of {stats['input']:,} documents "
        f"(train {sizes['train']['docs']:,}, val {sizes['val']['docs']:,}) -> {out}"
    )
    for k, v in removed.items():
        if v:
            info(f"  removed {k.replace('_', ' ')}: {v:,}")
    return out
