"""Benchmark `expertlm corpus build` (workers, bounded index) against datatrove's MinHash
deduplication, on 1x, 4x and 16x corpora made from ../shared/data with planted duplicates.

Corpora. The unit (1x) is every fourth document of each file of ../shared/data (~20 MB of
text: neuroscience review abstracts and eLife full texts). A k-x corpus is the unit plus k - 1
variants of it: variant c of document i interleaves the even sentences of i with the odd
sentences of another document of the same file (a seeded permutation per variant), and renames
the unit's hapax words (suffix per variant), so that variants are new documents (Jaccard ~0.3
with anything; no near duplicates) and the vocabulary grows with the corpus as real text's does.
Then duplicates are planted at known rates: 2% exact copies and 3% near copies (0.5-1.5% of
the words replaced: Jaccard of 5-word shingles ~0.86-0.95) of random earlier documents, each
inserted at a random later place. The corpus is 8 JSON Lines files (datatrove gives each task
whole files).

Runs, each in a fresh process, on the same files, on this machine, in this one run (so the
machine's load weighs on all of them): expertlm with one worker and with one per core;
datatrove (from the package registry) with its own MinHash pipeline as its example runs it -
`MinhashDedupSignature` -> `MinhashDedupBuckets` -> `MinhashDedupCluster` ->
`MinhashDedupFilter`, LocalPipelineExecutor with one task per file and one worker per core -
with the same 5-word shingles, seed and the same bands x rows as expertlm's (datasketch's
optimal 9 x 13 for threshold 0.8 and 128 permutations: datatrove has no threshold of its own,
its S-curve is the bands'), first with its default English word tokenizer (spaCy), then with a
`\\w+` word tokenizer like expertlm's. Peak memory is the summed RSS of the process tree.

Scored per run: MB/s of input text, peak RSS, and against the planted copies: recall of the
near copies, of the exact copies, and precision (the share of removed documents that are
planted copies). expertlm runs with --min-chars 0 so that it removes documents only as
duplicates, as datatrove does.

The speed-up of one worker per core over one worker is measured on the 16x corpus (~340 MB of
text, a run of a minute) in 3 pairs of runs back to back, the order alternating, and is the
median of the 3 ratios: this is the steady state that a build at the paper's size (~5.5 GB)
runs in, where the start-up of the workers (a fork server importing the CLI, ~0.5 s of wall
time whatever the corpus) is under 2% of a run. On the 4x corpus (~the size of
../shared/data, a 9 s run on 2 cores) that start-up is ~6%: its pair of runs is printed beside,
as measured. (On this VM one run of the same build took 22 to 34 s minutes apart, so ratios
come from runs back to back.)

Targets: with one worker per core >= 1.7x one worker's MB/s; >= 1.0x datatrove's MB/s at equal
or better near-duplicate recall (1x); peak RSS at 16x <= 1.3x the RSS at 1x.

Run: python bench/corpus_build.py   (needs ../shared/data; results also in
bench/_work/corpus_build/results.json, which bench/scale.py reads)
"""

from __future__ import annotations

import gzip
import json
import os
import random
import re
import shutil
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import load, measure  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
WORK = ROOT / "bench" / "_work" / "corpus_build"
SCALES = (1, 4, 16)
FILES = 8
EXACT_RATE, NEAR_RATE = 0.02, 0.03
PAIRS = 3  # runs of one worker and of one per core (16x), back to back, for the speed-up
CORPUS_VERSION = 1  # bump when the corpora change: cached ones are then made again

DATATROVE = r"""
import sys
from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.dedup.minhash import (MinhashConfig, MinhashDedupBuckets,
    MinhashDedupCluster, MinhashDedupFilter, MinhashDedupSignature)
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers import JsonlWriter
from datatrove.utils.hashing import HashConfig
from datatrove.utils.word_tokenizers import WordTokenizer

src, work, tasks, workers, bands, rows, tokenizer = sys.argv[1:8]
tasks, workers, bands, rows = int(tasks), int(workers), int(bands), int(rows)


class Words(WordTokenizer):  # expertlm's word unit: \w+ (on datatrove's simplified text)
    def word_tokenize(self, text):
        import re  # (the class is shipped to datatrove's workers by dill, without this module)

        return re.findall(r"\w+", text)

    def sent_tokenize(self, text):
        return [text]

    def span_tokenize(self, text):
        return [(0, len(text))]


def xxhash64(data):  # datatrove's own xxhash64, for xxhash >= 4 (which takes bytes only)
    import xxhash

    return xxhash.xxh64_intdigest(data.encode() if isinstance(data, str) else data)


config = MinhashConfig(n_grams=5, num_buckets=bands, hashes_per_bucket=rows, seed=1,
                       hash_config=HashConfig(precision=64))
language = {"spacy": "en", "words": Words()}[tokenizer]
signatures = MinhashDedupSignature(output_folder=f"{work}/signatures", config=config,
                                   language=language)
signatures._hash_func = xxhash64
stage1 = LocalPipelineExecutor(pipeline=[JsonlReader(src), signatures], tasks=tasks,
                               workers=workers, logging_dir=f"{work}/logs/signatures")
stage2 = LocalPipelineExecutor(
    pipeline=[MinhashDedupBuckets(input_folder=f"{work}/signatures",
                                  output_folder=f"{work}/buckets", config=config)],
    tasks=config.num_buckets, workers=workers, logging_dir=f"{work}/logs/buckets", depends=stage1)
stage3 = LocalPipelineExecutor(
    pipeline=[MinhashDedupCluster(input_folder=f"{work}/buckets",
                                  output_folder=f"{work}/remove_ids", config=config)],
    tasks=1, logging_dir=f"{work}/logs/clusters", depends=stage2)
stage4 = LocalPipelineExecutor(
    pipeline=[JsonlReader(src),
              MinhashDedupFilter(input_folder=f"{work}/remove_ids",
                                 exclusion_writer=JsonlWriter(f"{work}/removed")),
              JsonlWriter(output_folder=f"{work}/deduplicated")],
    tasks=tasks, workers=workers, logging_dir=f"{work}/logs/filter", depends=stage3)
stage4.run()
"""


# --- the corpora -----------------------------------------------------------------------------

_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def unit_docs() -> list[tuple[str, str, int | None, int]]:
    """(id, text, year, file index) of every fourth document of each shared file."""
    docs = []
    for k, path in enumerate(sorted(SHARED.glob("*.jsonl.gz"))):
        with gzip.open(path, "rt", encoding="utf-8") as f:
            for i, line in enumerate(f):
                if i % 4 == 0:
                    d = json.loads(line)
                    docs.append((str(d["id"]), d["text"], d.get("year"), k))
    return docs


def variant(texts: list[list[str]], i: int, j: int, suffix: str, hapax: set[str]) -> str:
    """Even sentences of document i, odd ones of document j, hapax words renamed."""
    a, b = texts[i][0::2], texts[j][1::2]
    mixed = [s for pair in zip(a, b, strict=False) for s in pair] + a[len(b) :] + b[len(a) :]
    return " ".join(w + suffix if w in hapax else w for w in " ".join(mixed).split(" "))


def near_copy(text: str, rng: random.Random) -> str:
    words = text.split(" ")
    for k in rng.sample(range(len(words)), max(1, round(rng.uniform(0.005, 0.015) * len(words)))):
        words[k] = rng.choice(words)
    return " ".join(words)


def make_corpus(dest: Path, scale: int, unit: list) -> dict:
    """Write the `scale`-x corpus into `dest` (FILES JSON Lines files); returns its truth:
    the ids of the planted exact and near copies, documents and characters."""
    rng = random.Random(scale)
    sentences = [_SENTENCE.split(t) for _, t, _, _ in unit]
    counts = Counter(w for _, t, _, _ in unit for w in t.split(" "))
    hapax = {w for w, n in counts.items() if n == 1 and w.isalpha()}
    by_file: dict[int, list[int]] = {}
    for i, (_, _, _, k) in enumerate(unit):
        by_file.setdefault(k, []).append(i)
    docs = [(d, t, y) for d, t, y, _ in unit]
    for c in range(1, scale):
        partner = {}
        for members in by_file.values():
            perm = members[:]
            rng.shuffle(perm)
            partner.update(zip(members, perm, strict=True))
        suffix = "q" + "".join(chr(97 + int(x)) for x in str(c))
        docs += [(f"{d}~{c}", variant(sentences, i, partner[i], suffix, hapax), y)
                 for i, (d, _, y, _) in enumerate(unit)]  # fmt: skip
    n = len(docs)
    planted: dict[int, list] = {}
    sources = rng.sample(range(n), round((EXACT_RATE + NEAR_RATE) * n))
    truth = {"exact": [], "near": []}
    for m, s in enumerate(sources):
        kind = "exact" if m < round(EXACT_RATE * n) else "near"
        d, t, y = docs[s]
        copy = (f"{d}#{kind}{m}", t if kind == "exact" else near_copy(t, rng), y)
        planted.setdefault(rng.randint(s + 1, n), []).append(copy)
        truth[kind].append(copy[0])
    ordered = []
    for i in range(n):  # a copy planted at p (s < p <= n) follows document p - 1
        ordered += [docs[i], *planted.get(i + 1, [])]
    dest.mkdir(parents=True)
    per_file = -(-len(ordered) // FILES)
    for f in range(FILES):
        with gzip.open(dest / f"part-{f:02d}.jsonl.gz", "wt", encoding="utf-8", compresslevel=1) as out:
            for d, t, y in ordered[f * per_file : (f + 1) * per_file]:
                out.write(json.dumps({"id": d, "text": t, "year": y}, ensure_ascii=False) + "\n")
    chars = sum(len(t) for _, t, _ in ordered)
    return {**truth, "docs": len(ordered), "chars": chars, "bytes": sum(len(t.encode()) for _, t, _ in ordered)}


def corpora() -> dict[int, tuple[Path, dict]]:
    """The 1x/4x/16x corpora, made once and kept in bench/_work (their truth beside them)."""
    unit = None
    out = {}
    for scale in SCALES:
        folder = WORK / f"corpus-{scale}x"
        truth_file = WORK / f"corpus-{scale}x.truth.json"
        if truth_file.is_file() and json.loads(truth_file.read_text()).get("version") == CORPUS_VERSION:
            out[scale] = (folder, json.loads(truth_file.read_text()))
            continue
        unit = unit or unit_docs()
        shutil.rmtree(folder, ignore_errors=True)
        truth = {**make_corpus(folder, scale, unit), "version": CORPUS_VERSION}
        truth_file.write_text(json.dumps(truth))
        out[scale] = (folder, truth)
    return out


# --- the runs --------------------------------------------------------------------------------


def ids_of(paths: list[Path]) -> set[str]:
    """The ids of the documents in JSON Lines .gz files (our lines start with {"id": ...})."""
    ids = set()
    for p in paths:
        with gzip.open(p, "rb") as f:
            for line in f:
                ids.add(json.loads(line)["id"] if not line.startswith(b'{"id": "') else
                        line[8:line.index(b'"', 8)].decode())  # fmt: skip
    return ids


def score(removed: set[str], truth: dict) -> dict:
    near, exact = set(truth["near"]), set(truth["exact"])
    return {
        "removed": len(removed),
        "recall_near": len(removed & near) / max(len(near), 1),
        "recall_exact": len(removed & exact) / max(len(exact), 1),
        "precision": len(removed & (near | exact)) / max(len(removed), 1),
    }


def all_ids(folder: Path) -> set[str]:
    return ids_of(sorted(folder.glob("*.jsonl.gz")))


def run_expertlm(folder: Path, truth: dict, workers: int | None, env: dict, tag: str) -> dict:
    out = WORK / f"out-{tag}"
    cmd = [sys.executable, "-m", "expertlm", "corpus", "build", str(folder), "--out", str(out),
           "--overwrite", "--no-progress", "--min-chars", "0"]  # fmt: skip
    if workers is not None:
        cmd += ["--workers", str(workers)]
    r = measure(cmd, env)
    kept = ids_of([out / "train.jsonl.gz", out / "val.jsonl.gz"])
    return {**r, **score(all_ids(folder) - kept, truth), "stdout": None}


def run_datatrove(folder: Path, truth: dict, tokenizer: str, bands: int, rows: int, env: dict) -> dict:
    work = WORK / f"datatrove-{tokenizer}"
    shutil.rmtree(work, ignore_errors=True)
    cores = os.cpu_count() or 1
    r = measure([sys.executable, "-c", DATATROVE, str(folder), str(work), str(FILES), str(cores),
                 str(bands), str(rows), tokenizer], env)  # fmt: skip
    removed = ids_of(sorted((work / "removed").glob("*.jsonl.gz")))
    return {**r, **score(removed, truth), "stdout": None}


def main() -> None:
    if not SHARED.is_dir() or not list(SHARED.glob("*.jsonl.gz")):
        print(f"{SHARED} is missing: this benchmark builds its corpora from it (not bundled)")
        print("corpus_build: no data (target >=1.7x one worker, >=1.0x datatrove, <=1.3x RSS at 16x) FAIL")
        sys.exit(1)
    try:
        import datatrove  # noqa: F401
    except ImportError:
        sys.exit("datatrove is not installed: pip install -e '.[dev]' (datatrove, spacy)")
    from expertlm.corpus.dedup import lsh_params

    t0 = time.time()
    WORK.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, EXPERTLM_NO_PROGRESS="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    bands, rows = lsh_params(0.8, 128)
    data = corpora()
    loads = [load()]
    runs: dict[str, dict] = {}
    mb = {s: t["bytes"] / 1e6 for s, (_, t) in data.items()}
    # one worker per core, given explicitly: the default takes none for inputs under 8 MB
    # (compressed), which the 1x corpus is, and the RSS at 1x and 16x must compare like with like
    cores = os.cpu_count() or 1

    def record(r: dict, name: str, scale: int, note: str = "") -> dict:
        r.update(name=name, scale=scale, mb=mb[scale], mb_s=mb[scale] / r["wall_s"], load=load())
        print(f"  {name} {scale}x{note}: {r['wall_s']:.1f} s ({r['load']})", file=sys.stderr)
        return r

    ratios, pairs = [], []  # the speed-up, in pairs of runs back to back (the order alternating)
    names = {1: "expertlm, 1 worker", cores: "expertlm"}
    tags = {1: "-w1", cores: ""}

    def pair(scale: int, k: int, note: str) -> dict:
        folder, truth = data[scale]
        return {w: record(run_expertlm(folder, truth, w, env, f"{scale}x{tags[w]}"), names[w], scale, note)
                for w in ((1, cores) if k % 2 == 0 else (cores, 1))}  # fmt: skip

    for k in range(PAIRS):
        pairs.append(pair(16, k, f", pair {k + 1}"))
        ratios.append(pairs[-1][1]["wall_s"] / pairs[-1][cores]["wall_s"])
    median = sorted(range(PAIRS), key=ratios.__getitem__)[PAIRS // 2]  # the table shows its runs
    small = pair(4, 0, "")  # start-up included: the 4x corpus, ~the size of ../shared/data
    for w, name in names.items():
        runs[f"{name} 4x"], runs[f"{name} 16x"] = small[w], pairs[median][w]
    small_ratio = small[1]["wall_s"] / small[cores]["wall_s"]
    plan = [
        ("expertlm", 1, lambda f, t: run_expertlm(f, t, cores, env, "1x")),
        ("datatrove (spaCy words)", 1, lambda f, t: run_datatrove(f, t, "spacy", bands, rows, env)),
        ("datatrove (\\w+ words)", 1, lambda f, t: run_datatrove(f, t, "words", bands, rows, env)),
    ]
    for name, scale, fn in plan:
        folder, truth = data[scale]
        runs[f"{name} {scale}x"] = r = record(fn(folder, truth), name, scale)
        loads.append(r["load"])

    print(f"{'':28s} {'corpus':>6s} {'MB':>7s} {'wall s':>7s} {'MB/s':>6s} {'CPU s':>6s} {'RSS MB':>7s} "
          f"{'near rec':>8s} {'exact rec':>9s} {'precision':>9s}")  # fmt: skip
    for r in runs.values():
        print(f"{r['name']:28s} {r['scale']:>5d}x {r['mb']:>7.1f} {r['wall_s']:>7.1f} {r['mb_s']:>6.2f} "
              f"{r['cpu_s']:>6.1f} {r['peak_rss'] / 2**20:>7.0f} {r['recall_near']:>8.3f} "
              f"{r['recall_exact']:>9.3f} {r['precision']:>9.3f}")  # fmt: skip
    speedup = statistics.median(ratios)
    dt = runs["datatrove (spaCy words) 1x"]
    dt_words = runs["datatrove (\\w+ words) 1x"]
    mine = runs["expertlm 1x"]
    vs_dt = mine["mb_s"] / dt["mb_s"]
    vs_words = mine["mb_s"] / dt_words["mb_s"]
    rss = runs["expertlm 16x"]["peak_rss"] / mine["peak_rss"]
    recall_ok = mine["recall_near"] >= dt["recall_near"]
    print(f"bands x rows {bands} x {rows}; {os.cpu_count()} cores; {loads[0]} before, "
          f"{load()} after; {time.time() - t0:.0f} s in all")
    print(f"one worker per core vs one at 16x, {PAIRS} pairs of runs: "
          + ", ".join(f"{r:.2f}x" for r in ratios) + f" (median {speedup:.2f}x); at 4x, one pair "
          f"(the workers' start-up included): {small_ratio:.2f}x")
    print(f"vs datatrove with \\w+ words: {vs_words:.2f}x MB/s, near recall "
          f"{mine['recall_near']:.3f} vs {dt_words['recall_near']:.3f}")
    (WORK / "results.json").write_text(json.dumps({"runs": runs, "loads": loads, "bands": bands,
                                                   "rows": rows, "cores": os.cpu_count(), "speedups": ratios,
                                                   "speedup_4x": small_ratio}, indent=1))  # fmt: skip
    ok = speedup >= 1.7 and vs_dt >= 1.0 and recall_ok and rss <= 1.3
    print(
        f"corpus_build: {speedup:.2f}x one worker's MB/s at 16x ({small_ratio:.2f}x at 4x), {vs_dt:.2f}x datatrove's at near recall "
        f"{mine['recall_near']:.3f} vs {dt['recall_near']:.3f}, {rss:.2f}x RSS at 16x "
        f"(target >=1.7x, >=1.0x at >= recall, <=1.3x) {'PASS' if ok else 'FAIL'}"
    )


if __name__ == "__main__":
    main()
