"""Benchmark `expertlm data prepare` against the paper's own tokenization approach.

Reference (the BrainGPT code's `tokenize`, faithfully): `datasets.load_dataset("json")` on the
same corpus files, then `Dataset.map(batched=True)` calling the same tokenizer (through
`transformers.AutoTokenizer`, the fast Rust tokenizer) with `truncation=True,
max_length=1024, return_overflowing_tokens=True`, then chaining and re-chunking input_ids and
attention_mask into 1024-token blocks, as that code does. Both sides tokenize the same train and
validation documents with the same tokenizer; each runs in its own fresh process, and peak
memory is the summed RSS of that process and its children, sampled every 5 ms.

Targets: expertlm >= 3x the reference's tokens/s at steady state, <= 0.5x its peak memory, and
expertlm's peak memory within 10% when the corpus is 10x larger. Steady state: both sides also
run on the 10x corpus, where start-up (interpreter, imports, worker processes, the tokenizer
copy) is under 10% of expertlm's time (the share is printed: fitted from the 1x and 10x runs as
time = start-up + tokens / rate); the 1x ratio, where start-up weighs more, is printed beside.

Corpus: the real text in ../shared/data when present (neuroscience review abstracts and eLife
full texts), otherwise a generated Zipfian pseudo-text corpus of the same size.

Run: python bench/prepare.py     (prints one table, then the PASS/FAIL line)
"""

from __future__ import annotations

import gzip
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import load, measure  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
BASE_CHARS = 24_000_000  # ~5M tokens: long enough that start-up costs are small
SCALE = 10  # large enough that start-up is under 10% of expertlm's time

REFERENCE = r"""
import time
t0 = time.perf_counter()
import itertools, json, sys
import pyarrow.compute as pc
from datasets import disable_progress_bars, load_dataset
from transformers import AutoTokenizer
corpus, tok_dir, cache = sys.argv[1:4]
disable_progress_bars()
tokenizer = AutoTokenizer.from_pretrained(tok_dir)
chunk_size = 1024
def tokenize(element):  # BrainGPT's tokenize(), chunk_size 1024 (GPT-2's context)
    outputs = tokenizer(element["text"], truncation=True, max_length=chunk_size,
                        return_overflowing_tokens=True, return_length=True)
    output_ids = list(itertools.chain(*outputs["input_ids"]))
    output_mask = list(itertools.chain(*outputs["attention_mask"]))
    output_ids = [output_ids[x:x + chunk_size] for x in range(0, len(output_ids), chunk_size)]
    output_mask = [output_mask[x:x + chunk_size] for x in range(0, len(output_mask), chunk_size)]
    return {"input_ids": output_ids, "attention_mask": output_mask}
files = {"train": f"{corpus}/train.jsonl.gz", "validation": f"{corpus}/val.jsonl.gz"}
ds = load_dataset("json", data_files=files, cache_dir=cache)
out = ds.map(tokenize, batched=True, remove_columns=ds["train"].column_names)
wall_s = time.perf_counter() - t0
# Counted in Arrow, without loading the ids into Python: the count is ours, not the reference's
# work, and must not add to its time or memory.
tokens = sum(pc.sum(pc.list_value_length(out[s].data.column("input_ids"))).as_py() for s in out)
print(json.dumps({"tokens": tokens, "wall_s": wall_s}))
"""


def source_texts() -> list[tuple[str, str]]:
    docs = []
    if SHARED.is_dir():
        for name in (
            "neuromancer_neuro_review_abstracts.jsonl.gz",
            "elife_fulltext_2012_2016.jsonl.gz",
        ):
            path = SHARED / name
            if path.is_file():
                with gzip.open(path, "rt", encoding="utf-8") as f:
                    for line in f:
                        d = json.loads(line)
                        if d.get("year") is None or d["year"] < 2023:
                            docs.append((str(d["id"]), d["text"]))
    if not docs:  # no shared data: Zipfian pseudo-text with word-like tokens
        rng = random.Random(0)
        vocab = [
            "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 11)))
            for _ in range(30_000)
        ]
        weights = [1 / (i + 1) for i in range(len(vocab))]
        for i in range(20_000):
            words = rng.choices(vocab, weights, k=rng.randint(100, 400))
            docs.append((f"doc{i}", " ".join(words).capitalize() + "."))
    return docs


def write_corpus(dest: Path, docs: list[tuple[str, str]], chars: int, copies: int) -> None:
    """A corpus folder of `copies` x `chars` characters (copies get new ids; one in 100 -> val)."""
    dest.mkdir(parents=True)
    with (
        gzip.open(dest / "train.jsonl.gz", "wt", encoding="utf-8") as tr,
        gzip.open(dest / "val.jsonl.gz", "wt", encoding="utf-8") as va,
    ):
        for c in range(copies):
            n = 0
            for i, (doc_id, text) in enumerate(docs):
                if n >= chars:
                    break
                f = va if i % 100 == 0 else tr
                f.write(
                    json.dumps(
                        {"id": f"{doc_id}#{c}", "text": text, "year": None, "source": "bench"}
                    )
                    + "\n"
                )
                n += len(text)


def main() -> None:
    py = sys.executable
    env = dict(os.environ, EXPERTLM_NO_PROGRESS="1", HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1")
    with tempfile.TemporaryDirectory(prefix="expertlm-bench-") as tmp:
        tmp = Path(tmp)
        docs = source_texts()
        write_corpus(tmp / "c1", docs, BASE_CHARS, 1)
        write_corpus(tmp / "c4", docs, BASE_CHARS, SCALE)
        subprocess.run(
            [py, "-m", "expertlm", "tokenizer", "train", str(tmp / "c1"), "--out", str(tmp / "tok"),
             "--vocab-size", "32000", "--no-progress"],
            check=True, env=env, capture_output=True,
        )  # fmt: skip

        def ours(corpus: str, out: str) -> dict:
            r = measure([py, "-m", "expertlm", "data", "prepare", str(tmp / corpus), "-t", str(tmp / "tok"),
                         "--out", str(tmp / out), "--no-progress"], env)  # fmt: skip
            meta = json.loads((tmp / out / "meta.json").read_text())
            # text tokens only: the reference adds no end-of-text tokens
            r["tokens"] = sum(meta["tokens"].values()) - sum(meta["docs"].values())
            return r

        def reference(corpus: str) -> dict:
            r = measure([py, "-c", REFERENCE, str(tmp / corpus), str(tmp / "tok"),
                         str(tmp / f"hfcache-{corpus}")], env)  # fmt: skip
            reported = json.loads(r["stdout"].strip().splitlines()[-1])
            # The reference's time runs from its first statement to the end of map(), so its own
            # interpreter start-up (counted on our side) and the token count are left out.
            r["tokens"], r["wall_s"] = reported["tokens"], reported["wall_s"]
            return r

        before = load()
        ref = reference("c1")
        one = ours("c1", "s1")
        four = ours("c4", "s4")
        ref4 = reference("c4")

    rows = [
        ("reference (datasets.map)", ref),
        ("expertlm data prepare", one),
        (f"reference, {SCALE}x corpus", ref4),
        (f"expertlm data prepare, {SCALE}x corpus", four),
    ]
    print(f"{'':40s} {'tokens':>12s} {'wall s':>8s} {'tokens/s':>12s} {'peak RSS MB':>12s}")
    for name, r in rows:
        print(
            f"{name:40s} {r['tokens']:>12,d} {r['wall_s']:>8.2f} {r['tokens'] / r['wall_s']:>12,.0f} {r['peak_rss'] / 2**20:>12,.0f}"
        )
    if ref["tokens"] != one["tokens"]:
        print(
            f"note: token counts differ (reference {ref['tokens']:,}, expertlm {one['tokens']:,})"
        )
    def rate(r: dict) -> float:
        return r["tokens"] / r["wall_s"]

    speed1 = rate(one) / rate(ref)
    speed = rate(four) / rate(ref4)
    # time = start-up + tokens / steady rate, through our two points
    steady = (four["tokens"] - one["tokens"]) / max(four["wall_s"] - one["wall_s"], 1e-9)
    startup = max(0.0, one["wall_s"] - one["tokens"] / steady)
    mem = one["peak_rss"] / ref["peak_rss"]
    growth = four["peak_rss"] / one["peak_rss"]
    print(f"start-up {startup:.2f} s: {startup / one['wall_s']:.0%} of ours at 1x, "
          f"{startup / four['wall_s']:.0%} at {SCALE}x; {before} before, {load()} after")  # fmt: skip
    ok = speed >= 3.0 and mem <= 0.5 and growth <= 1.10
    print(
        f"prepare: {speed:.2f}x tokens/s at steady state ({SCALE}x corpus, start-up "
        f"{startup / four['wall_s']:.0%} of ours; {speed1:.2f}x at 1x), {mem:.2f}x peak memory, "
        f"{growth:.2f}x memory at {SCALE}x corpus (target >=3x, <=0.5x, <=1.10x) "
        f"{'PASS' if ok else 'FAIL'}"
    )


if __name__ == "__main__":
    main()
