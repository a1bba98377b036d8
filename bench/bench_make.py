"""Throughput of `bench make`'s rule-based path against the target of 2,000 abstracts/s.

    python bench/bench_make.py [--docs N] [--repeat R]

The documents are abstracts from ../shared/data (eLife and neuroscience review abstracts, all
given a year after the cutoff so that every one goes through sentence roles, the finding, the
checks and the writing), or, when that folder is absent, the synthetic world's literature
(`expertlm corpus synth`). The whole stage runs (reading the JSONL, making and checking the
items, writing benchmark.csv/.jsonl and make.json); no tokenizer and no decontamination, which
are options. The best of R runs is reported, per second of the process's CPU time (the
criterion: the machine may be shared) and per wall-clock second. Ends with one PASS/FAIL line.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("EXPERTLM_NO_PROGRESS", "1")
TARGET_DOCS_PER_S = 2_000
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def documents(n: int, work: Path) -> list[dict]:
    docs = []
    files = sorted(DATA.glob("*.jsonl.gz")) if DATA.is_dir() else []
    if not files:
        from expertlm.synth.build import corpus_synth

        files = [Path(corpus_synth(work / "synth", show_progress=False)) / "literature.jsonl.gz"]
    for f in files:
        with gzip.open(f, "rt", encoding="utf-8") as lines:
            for line in lines:
                r = json.loads(line)
                text = r.get("abstract") or r["text"]
                if len(text) < 20_000:  # abstracts, and titles with abstracts; not full texts
                    docs.append({"id": r["id"], "year": 2030, "text": text})
    return docs[:n]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=8_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    from expertlm.eval.make import bench_make

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        docs = documents(args.docs, work)
        src = work / "docs.jsonl"
        src.write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
        chars = sum(len(d["text"]) for d in docs) / len(docs)
        best = best_wall = 0.0
        report: dict = {}
        for r in range(args.repeat):
            t0, c0 = time.perf_counter(), time.process_time()
            report = bench_make([src], work / f"out{r}", after=2029, show_progress=False)
            best = max(best, len(docs) / (time.process_time() - c0))
            best_wall = max(best_wall, len(docs) / (time.perf_counter() - t0))
        counts = report["counts"]
        print(f"{len(docs):,} abstracts ({chars:,.0f} characters on average): {counts['items']:,} items, "
              f"rejected {counts['rejected']}")  # fmt: skip
        # The rate per second of this process's CPU time is the criterion: on a shared machine
        # the wall-clock rate also measures the other processes (it is printed beside it).
        print(f"bench make (rules): {best:,.0f} abstracts per CPU second, {best_wall:,.0f} per "
              f"wall second (best of {args.repeat}, load average {os.getloadavg()[0]:.1f} on "
              f"{os.cpu_count()} cores); target {TARGET_DOCS_PER_S:,}: ratio {best / TARGET_DOCS_PER_S:.2f}")
        ok = best >= TARGET_DOCS_PER_S
        print(f"bench_make: {best:,.0f} abstracts/s (target {TARGET_DOCS_PER_S:,}) {'PASS' if ok else 'FAIL'}")
        sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
