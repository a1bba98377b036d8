"""`expertlm corpus synth`: a synthetic field's world, literature, benchmark and ceilings.

Order of work: the world; the benchmark items (forward and seen); the literature, paper by
paper, each re-written with fresh template draws (same findings) if it shares a word 13-gram
with either version of any item, so `corpus build --decontam` finds nothing to remove; the
ceilings, fitted on the literature's structured findings. Every random choice comes from
generators seeded by (field, seed, purpose), so the same options give the same bytes (the
manifest's provenance aside).
"""

from __future__ import annotations

import gzip
import random
import time
from pathlib import Path

import numpy as np

from expertlm.console import count_progress, info
from expertlm.io import (
    JsonlWriter,
    atomic_dir,
    check_output_dir,
    provenance,
    sha256_file,
    write_json,
    write_jsonl,
)
from expertlm.synth.baselines import ceilings
from expertlm.synth.benchmark import DECONTAM_NGRAM, NgramGuard, make_items, write_items
from expertlm.synth.config import SynthConfig
from expertlm.synth.posttrain import PREFERENCE_FILE, SFT_FILE, Finding, posttrain_data
from expertlm.synth.textstats import MAX_PAPERS, text_statistics
from expertlm.synth.world import make_world
from expertlm.synth.writer import Writer

LITERATURE = "literature.jsonl.gz"
# Re-writes of one paper before giving up on it (counted as dropped in the manifest).
MAX_REWRITES = 50
PROGRESS_EVERY = 256


def _rng(cfg: SynthConfig, purpose: str) -> random.Random:
    # A string seed is hashed with SHA-512 by `random`: stable across runs and platforms.
    return random.Random(f"expertlm.synth:{cfg.field}:{cfg.seed}:{purpose}")


def corpus_synth(
    out: str | Path, *, overwrite: bool = False, show_progress: bool = True, **options
) -> Path:
    """Generate a synthetic field into `out`: world.json, literature.jsonl.gz (a corpus
    source), benchmark.csv/.jsonl (forward), benchmark_seen.csv/.jsonl, ceilings.json,
    manifest.json, and with `posttrain_items` sft.jsonl and preferences.jsonl (`posttrain.py`).
    `options` are the fields of `SynthConfig`. Returns the folder."""
    t0 = time.time()
    cfg = SynthConfig.from_options(options, source="option")
    out = Path(out)
    check_output_dir(out, overwrite)  # (no inputs: the protected folders only)
    world = make_world(cfg)
    n_t, n_o = len(world.target_names), len(world.outcome_names)

    bench_rnd = _rng(cfg, "bench")
    bench_writer = Writer(world, bench_rnd)
    common = dict(noise=cfg.noise, year=cfg.bench_year)
    forward = make_items(world, bench_writer, bench_rnd, kind="forward", n=cfg.bench_items,
                         option="bench_items", **common)  # fmt: skip
    seen = make_items(world, bench_writer, bench_rnd, kind="seen", n=cfg.seen_items,
                      option="seen_items", **common)  # fmt: skip
    guard = NgramGuard(forward + seen, DECONTAM_NGRAM)

    rnd = _rng(cfg, "literature")
    writer = Writer(world, rnd)
    eff = world.effect
    seen_outcomes = [world.seen_outcomes(t) for t in range(n_t)]
    counts = [[[0, 0] for _ in range(n_o)] for _ in range(n_t)]  # reported effect +1 / -1 per pair
    source = f"synth:{cfg.field}:seed{cfg.seed}"
    first, last = cfg.years
    n_years = last - first + 1
    stats = {"findings": 0, "flipped": 0, "rewrites": 0, "dropped": 0, "text_chars": 0}
    # the text statistics are measured on at most MAX_PAPERS papers spread over the literature
    sampled = {j * cfg.papers // MAX_PAPERS for j in range(MAX_PAPERS)} if cfg.papers > MAX_PAPERS else None
    texts: list[str] = []
    published_findings: list[Finding] = []  # for the post-training data (posttrain_items)

    with atomic_dir(out, overwrite) as tmp, count_progress(show_progress) as bar:
        task = bar.add_task("corpus synth", total=cfg.papers)
        with JsonlWriter(tmp / LITERATURE) as lit:
            for k in range(cfg.papers):
                if k % PROGRESS_EVERY == 0:
                    bar.update(task, completed=k)
                t = int(rnd.random() * n_t)
                i = int(rnd.random() * len(world.interventions))
                m = rnd.randint(cfg.min_findings, cfg.max_findings)
                outs = rnd.sample(seen_outcomes[t], m)
                flips = [rnd.random() < cfg.noise for _ in outs]
                published = [
                    (o, -eff[t, o] if f else int(eff[t, o]))
                    for o, f in zip(outs, flips, strict=True)
                ]
                for _ in range(MAX_REWRITES):
                    text = writer.paper(t, i, published)
                    if not guard.collides(text):
                        break
                    stats["rewrites"] += 1
                else:
                    stats["dropped"] += 1
                    continue
                name, polarity = world.interventions[i]
                findings = []
                doc_id, year = f"{cfg.field}-s{cfg.seed}-{k + 1:06d}", first + k * n_years // cfg.papers
                if cfg.posttrain_items:
                    published_findings += [Finding(doc_id, year, t, i, o, e) for o, e in published]
                for (o, e), f in zip(published, flips, strict=True):
                    counts[t][o][0 if e > 0 else 1] += 1
                    findings.append(
                        {
                            "target": world.target_names[t],
                            "outcome": world.outcome_names[o],
                            "intervention": name,
                            "direction": polarity * int(e),
                            "true_direction": polarity * int(eff[t, o]),
                            "flipped": f,
                        }
                    )
                stats["findings"] += m
                stats["flipped"] += sum(flips)
                stats["text_chars"] += len(text)
                if sampled is None or k in sampled:
                    texts.append(text)
                lit.write(
                    {
                        "id": doc_id,
                        "year": year,
                        "text": text,
                        "source": source,
                        "findings": findings,
                    }
                )
            papers = lit.count
        bar.update(task, completed=cfg.papers)
        gen_s = time.time() - t0
        counts = np.array(counts, dtype=np.int64)  # (n_t, n_o, 2)

        write_json(tmp / "world.json", world.to_json())
        write_items(forward, tmp, "benchmark")
        write_items(seen, tmp, "benchmark_seen")
        result = ceilings(
            world, counts, {"benchmark.csv": forward, "benchmark_seen.csv": seen}, cfg.noise
        )
        write_json(tmp / "ceilings.json", result)
        posttrain = {}
        if cfg.posttrain_items:
            sft, prefs, posttrain = posttrain_data(world, published_findings, cfg.posttrain_items,
                                                   _rng(cfg, "posttrain"), guard)  # fmt: skip
            write_jsonl(tmp / SFT_FILE, sft)
            write_jsonl(tmp / PREFERENCE_FILE, prefs)
            posttrain = {"posttrain_sft": len(sft), "posttrain_preferences": len(prefs),
                         "posttrain_rewritten": posttrain["rewritten"],
                         "posttrain_dropped": posttrain["dropped"]}  # fmt: skip
        files = sorted(p.name for p in tmp.iterdir())
        manifest = {
            "format": "expertlm.synth/1",
            "config": cfg.model_dump(mode="json"),
            "counts": {
                "papers": papers,
                "findings": stats["findings"],
                "flipped_findings": stats["flipped"],
                "text_chars": stats["text_chars"],
                "literature_bytes": (tmp / LITERATURE).stat().st_size,
                "literature_bytes_uncompressed": _uncompressed_size(tmp / LITERATURE),
                "bench_items": len(forward),
                "seen_items": len(seen),
                "rewritten_for_decontamination": stats["rewrites"],
                "dropped_for_decontamination": stats["dropped"],
                "findings_per_rule": _rule_counts(world, counts),
                **posttrain,
            },
            "text": text_statistics(texts),
            "outputs": {name: sha256_file(tmp / name) for name in files},
            "generation_s": round(gen_s, 3),
            "wall_s": round(time.time() - t0, 3),
            **provenance(),
        }
        write_json(tmp / "manifest.json", manifest)

    c = result["ceilings"]
    info(
        f"synth: {papers:,} papers, {stats['findings']:,} findings, {len(forward)} forward + "
        f"{len(seen)} seen items -> {out}"
    )
    info(
        "  ceilings on benchmark.csv: "
        + ", ".join(f"{k} {v['benchmark.csv']['accuracy']:.3f}" for k, v in c.items())
    )
    return out


def _uncompressed_size(path: Path) -> int:
    size = 0
    with gzip.open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            size += len(chunk)
    return size


def _rule_counts(world, counts: np.ndarray) -> dict:
    """Fewest and mean findings behind each class-level rule (outcome x system, outcome x
    type, outcome x system x type): how often the literature repeats each regularity."""
    total = counts.sum(axis=2)  # (n_t, n_o)
    out = {}
    for name, keys in (
        ("outcome_system", [world.target_system]),
        ("outcome_type", [world.target_type]),
        ("outcome_system_type", [world.target_system, world.target_type]),
    ):
        groups: dict[tuple, int] = {}
        for t in range(total.shape[0]):
            key = tuple(int(k[t]) for k in keys)
            for o in range(total.shape[1]):
                groups[(o, *key)] = groups.get((o, *key), 0) + int(total[t, o])
        vals = list(groups.values())
        out[name] = {"rules": len(vals), "min": min(vals), "mean": round(sum(vals) / len(vals), 1)}
    return out


__all__ = ["LITERATURE", "corpus_synth"]
