"""End to end: the real CLI, one process per stage, on a generated corpus and on real text:
corpus build -> tokenizer train -> tokenizer compare -> data prepare (twice)."""

from __future__ import annotations

import csv
import gzip
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer

pytestmark = pytest.mark.e2e

REAL_TEXT = (
    Path(__file__).resolve().parents[3]
    / "shared"
    / "data"
    / "neuromancer_neuro_review_abstracts.jsonl.gz"
)
SYLLABLES = [
    "ne",
    "ur",
    "on",
    "syn",
    "ap",
    "cor",
    "tex",
    "hip",
    "po",
    "cam",
    "do",
    "pa",
    "mi",
    "ki",
]


def run_cli(*args: str | Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "EXPERTLM_NO_PROGRESS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "expertlm", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return proc


def read_docs(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def check_shards(shards: Path, corpus: Path, tok: Path, manifest: dict) -> dict:
    """meta.json agrees with the corpus; every token file is its split re-encoded here."""
    meta = json.loads((shards / "meta.json").read_text())
    backend = Tokenizer.from_file(str(tok / "tokenizer.json"))
    eot = backend.token_to_id("<|endoftext|>")
    assert meta["eot_id"] == eot
    for split in ("train", "val"):
        texts = [d["text"] for d in read_docs(corpus / f"{split}.jsonl.gz")]
        assert meta["docs"][split] == manifest["split"][split]["docs"] == len(texts)
        expected = []
        for ids in backend.encode_batch(texts, add_special_tokens=False):
            expected += [eot, *ids.ids]
        tokens = np.memmap(shards / f"{split}.bin", dtype=np.dtype(meta["dtype"]), mode="r")
        assert meta["tokens"][split] == len(tokens) == len(expected)
        assert np.array_equal(tokens, expected)
    return meta


def words_from(rng: random.Random, vocab: list[str], n: int) -> str:
    return " ".join(rng.choices(vocab, k=n))


def make_sources(root: Path) -> tuple[Path, Path, dict]:
    """A folder of sources (.jsonl + .csv) with a known number of each removal, and a benchmark."""
    rng = random.Random(1234)
    vocab = sorted({"".join(rng.choices(SYLLABLES, k=rng.randint(1, 4))) for _ in range(300)})
    bench = [
        {"id": f"b{i}", "section": "s", "original": words_from(rng, vocab, 30) + " increased."}
        for i in range(4)
    ]
    for item in bench:
        item["altered"] = item["original"].replace(" increased.", " decreased.")

    normal = [words_from(rng, vocab, rng.randint(20, 40)) + "." for _ in range(400)]
    jsonl = [{"id": f"j{i}", "text": t, "year": 2000 + i % 23} for i, t in enumerate(normal[:300])]
    csv_rows = [
        {"id": f"c{i}", "text": t, "year": 2000 + i % 23} for i, t in enumerate(normal[300:])
    ]
    late = [
        {"id": f"late{i}", "text": words_from(rng, vocab, 30), "year": 2023 + i % 2}
        for i in range(6)
    ]
    leaked = [
        {
            "id": f"leak{i}",
            "text": f"{words_from(rng, vocab, 10)} {bench[i % 3]['original'][:-11]}",
            "year": 2010,
        }
        for i in range(5)
    ]  # items b0, b1, b2 leak; b3 does not
    empty = [{"id": f"empty{i}", "text": " \n\t ", "year": 2010} for i in range(2)]
    short = [{"id": f"short{i}", "text": f"short {i}", "year": 2010} for i in range(3)]
    exact = [{"id": f"dup{i}", "text": normal[i], "year": 2011} for i in range(8)]
    long_docs = [t for t in normal[20:] if len(t.split()) >= 35][:3]
    # the last word changed: 5-word-shingle Jaccard >= 30/32, well above the 0.8 threshold
    near = [
        {"id": f"near{i}", "text": t.rsplit(" ", 1)[0] + " zzz.", "year": 2011}
        for i, t in enumerate(long_docs)
    ]
    assert len(near) == 3
    src = root / "sources"
    (src / "more").mkdir(parents=True)
    with open(src / "a.jsonl", "w") as f:  # read first: folders are walked in sorted order
        for row in jsonl + late + leaked + empty + short:
            f.write(json.dumps(row) + "\n")
    with open(src / "more" / "b.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["id", "text", "year"])
        w.writeheader()
        w.writerows(csv_rows + exact + near)
    bench_path = root / "bench.jsonl"
    bench_path.write_text("".join(json.dumps(b) + "\n" for b in bench))
    removed = {
        "empty": len(empty),
        "too_short": len(short),
        "after_max_year": len(late),
        "contaminated": len(leaked),
        "exact_duplicate": len(exact),
        "near_duplicate": len(near),
    }
    return src, bench_path, {"input": len(normal) + sum(removed.values()), "removed": removed}


def test_pipeline_on_generated_sources(tmp_path):
    src, bench, expected = make_sources(tmp_path)
    corpus, tok, tok_small, shards = (tmp_path / n for n in ("corpus", "tok", "tok300", "shards"))

    proc = run_cli(
        "corpus", "build", src, "--out", corpus, "--min-chars", "40", "--max-year", "2022",
        "--decontam", bench, "--val-frac", "0.1",
    )  # fmt: skip
    manifest = json.loads((corpus / "manifest.json").read_text())
    counts = manifest["counts"]
    assert counts["input"] == expected["input"]
    assert {k: v for k, v in counts["removed"].items() if v} == expected["removed"]
    assert counts["kept"] == 400
    assert counts["input"] == counts["kept"] + sum(counts["removed"].values())
    train, val = (read_docs(corpus / f"{s}.jsonl.gz") for s in ("train", "val"))
    assert len(train) + len(val) == counts["kept"]
    assert manifest["split"]["train"]["docs"] == len(train)
    assert manifest["split"]["val"]["docs"] == len(val) > 0
    assert manifest["decontamination"]["items"] == 4
    assert manifest["decontamination"]["items_leaked"] == 3
    assert {d["id"] for d in train + val} == {f"j{i}" for i in range(300)} | {
        f"c{i}" for i in range(100)
    }
    assert f"kept 400 of {expected['input']} documents" in proc.stderr

    run_cli("tokenizer", "train", corpus, "--out", tok, "--vocab-size", "400")
    run_cli("tokenizer", "train", corpus, "--out", tok_small, "--vocab-size", "300")
    info = json.loads((tok / "expertlm_tokenizer.json").read_text())
    assert info["vocab_size"] == info["vocab_size_requested"] == 400
    assert info["trained_on"]["docs"] == len(train)
    assert info["trained_on"]["chars"] == manifest["split"]["train"]["chars"]

    run_cli("tokenizer", "compare", tok_small, tok, "--on", corpus, "--out", tmp_path / "cmp.json")
    cmp = json.loads((tmp_path / "cmp.json").read_text())
    assert cmp["docs"] == len(val)
    assert [r["vocab_size"] for r in cmp["tokenizers"]] == [300, 400]
    assert cmp["tokenizers"][1]["fertility"] <= cmp["tokenizers"][0]["fertility"]

    run_cli("data", "prepare", corpus, "--tokenizer", tok, "--out", shards)
    meta = check_shards(shards, corpus, tok, manifest)
    assert meta["dtype"] == "uint16"
    assert meta["vocab_size"] == 400
    assert meta["corpus_hash"] == info["corpus_hash"]
    assert meta["tokenizer_hash"] == info["tokenizer_hash"]
    assert (shards / "tokenizer" / "tokenizer.json").read_bytes() == (
        tok / "tokenizer.json"
    ).read_bytes()

    mtime = (shards / "train.bin").stat().st_mtime_ns
    proc = run_cli("data", "prepare", corpus, "--tokenizer", tok, "--out", shards)
    assert "up to date" in proc.stderr
    assert (shards / "train.bin").stat().st_mtime_ns == mtime


@pytest.mark.skipif(not REAL_TEXT.is_file(), reason=f"{REAL_TEXT} is not here")
def test_pipeline_on_real_abstracts(tmp_path):
    corpus, tok, shards = tmp_path / "corpus", tmp_path / "tok", tmp_path / "shards"
    with gzip.open(REAL_TEXT, "rt", encoding="utf-8") as f:
        years = [json.loads(line).get("year") for line in f if line.strip()]

    run_cli("corpus", "build", REAL_TEXT, "--out", corpus, "--max-year", "2022")
    manifest = json.loads((corpus / "manifest.json").read_text())
    counts = manifest["counts"]
    assert counts["input"] == len(years)
    assert counts["removed"]["after_max_year"] == sum(y is not None and y > 2022 for y in years)
    assert counts["input"] == counts["kept"] + sum(counts["removed"].values())
    assert counts["kept"] == manifest["split"]["train"]["docs"] + manifest["split"]["val"]["docs"]

    run_cli("tokenizer", "train", corpus, "--out", tok, "--vocab-size", "2000")
    info = json.loads((tok / "expertlm_tokenizer.json").read_text())
    assert info["vocab_size"] == 2000
    assert info["trained_on"]["docs"] == manifest["split"]["train"]["docs"]

    run_cli("data", "prepare", corpus, "--tokenizer", tok, "--out", shards)
    meta = check_shards(shards, corpus, tok, manifest)
    assert meta["vocab_size"] == 2000
    assert meta["tokens"]["train"] > 100 * meta["docs"]["train"]  # abstracts, not fragments
