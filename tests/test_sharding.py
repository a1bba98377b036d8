"""--workers, --shard I/N and --merge: the same bytes however the work is split, and the same
documents as the streaming (in-memory, one process) deduplication."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import numpy as np
import pytest

from expertlm.corpus import index
from expertlm.corpus.build import corpus_build
from expertlm.corpus.clean import clean_text
from expertlm.corpus.dedup import ExactDedup, NearDedup
from expertlm.corpus.docs import iter_docs, read_manifest
from expertlm.corpus.shard import BLOCK_DOCS, Shard, block_owners, merge_order, owner
from expertlm.errors import ExpertlmError
from expertlm.shards import data_prepare
from expertlm.tokenizer import tokenizer_train

LETTERS = "abcdefghijklmnopqrstuvwxyz"


def planted_rows(n: int, seed: int = 0) -> list[dict]:
    """Documents with planted exact copies, near copies (a share of words replaced) and chains
    (copies of copies), so that which document is kept depends on the order of decisions."""
    rng = random.Random(seed)
    vocab = ["".join(rng.choice(LETTERS) for _ in range(rng.randint(3, 9))) for _ in range(2000)]
    rows, sources = [], []
    for i in range(n):
        if sources and rng.random() < 0.3:
            words = rng.choice(sources).split()
            for k in rng.sample(range(len(words)), int(rng.choice([0, 0.01, 0.04, 0.1, 0.3]) * len(words))):
                words[k] = rng.choice(vocab)
            text = " ".join(words)
            if rng.random() < 0.3:
                sources.append(text)  # a chain: this copy is copied again
        else:
            text = " ".join(rng.choice(vocab) for _ in range(rng.randint(30, 300)))
            sources.append(text)
        rows.append({"id": f"d{i}", "text": text, "year": 1995 + i % 30})
    return rows


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """Two JSON Lines files of planted documents, with a bad record and a leaked benchmark item."""
    folder = tmp_path_factory.mktemp("planted") / "src"
    folder.mkdir()
    rows = planted_rows(700)
    lines = [json.dumps(r) for r in rows]
    lines.insert(333, "{not json")
    leak = ("Optogenetic silencing of dorsal CA1 pyramidal neurons during retrieval reduced "
            "freezing in fear conditioned mice")
    lines.insert(500, json.dumps({"id": "leak", "text": f"{leak} {rows[5]['text']}", "year": 2001}))
    for name, part in (("a.jsonl.gz", lines[:400]), ("b.jsonl", lines[400:])):
        data = ("\n".join(part) + "\n").encode()
        (folder / name).write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    bench = folder.parent / "bench.jsonl"
    bench.write_text(json.dumps({"id": "q1", "choices": [leak, "other text here"],
                                 "answer": 0}) + "\n")  # fmt: skip
    return folder


OPTIONS = {"min_chars": 50, "max_year": 2020, "val_frac": 0.2, "skip_bad": True}


def files_of(out: Path) -> dict[str, bytes]:
    return {name: (out / name).read_bytes() for name in ("train.jsonl.gz", "val.jsonl.gz")}


def manifest_of(out: Path) -> dict:
    m = read_manifest(out)
    return {k: m[k] for k in ("counts", "split", "outputs", "decontamination", "config")}


@pytest.fixture(scope="module")
def reference(source, tmp_path_factory) -> Path:
    bench = source.parent / "bench.jsonl"
    return corpus_build([source], tmp_path_factory.mktemp("ref") / "c", decontam=[bench],
                        workers=1, show_progress=False, **OPTIONS)  # fmt: skip


def test_two_workers_write_the_same_bytes_as_one(source, reference, tmp_path):
    out = corpus_build([source], tmp_path / "c", decontam=[source.parent / "bench.jsonl"],
                       workers=2, show_progress=False, **OPTIONS)  # fmt: skip
    assert files_of(out) == files_of(reference)
    assert manifest_of(out) == manifest_of(reference)
    assert read_manifest(out)["parallel"] == {"workers": 2, "shards": 1}


def test_three_shards_merged_write_the_same_bytes_as_one_task(source, reference, tmp_path):
    bench = source.parent / "bench.jsonl"
    for i in range(3):
        corpus_build([source], tmp_path / "parts" / f"task-{i}", decontam=[bench], shard=f"{i}/3",
                     show_progress=False, **OPTIONS)  # fmt: skip
    out = corpus_build([source], tmp_path / "c", decontam=[bench], merge=tmp_path / "parts",
                       show_progress=False, **OPTIONS)  # fmt: skip
    assert files_of(out) == files_of(reference)
    assert manifest_of(out) == manifest_of(reference)
    counts = read_manifest(out)["counts"]
    assert counts["removed"]["bad_record"] == 1 and counts["removed"]["contaminated"] == 1
    assert counts["removed"]["exact_duplicate"] > 10 and counts["removed"]["near_duplicate"] > 10


def test_a_tiny_spill_budget_gives_the_same_bytes(source, reference, tmp_path, monkeypatch):
    # every batch a run of its own, every merge many key ranges
    monkeypatch.setattr(index, "SPILL_BYTES", 512)
    out = corpus_build([source], tmp_path / "c", decontam=[source.parent / "bench.jsonl"],
                       workers=1, show_progress=False, **OPTIONS)  # fmt: skip
    assert files_of(out) == files_of(reference)


def test_the_bounded_index_decides_as_the_streaming_dedup(source, reference):
    """Kept documents = those the in-memory ExactDedup then NearDedup keep, in input order."""
    exact, near = ExactDedup(), NearDedup(threshold=0.8)
    expected = []
    for path in sorted(source.iterdir()):
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        for line in raw.decode().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            text = clean_text(row["text"])
            if len(text) < 50 or row["year"] > 2020 or row["id"] == "leak":
                continue
            if not exact.is_duplicate(text) and not near.is_duplicate(text):
                expected.append(row["id"])
    kept = {d["id"] for s in ("train", "val") for d in iter_docs(reference, s)}
    assert sorted(kept) == sorted(expected)
    assert len(expected) < 600  # the planted copies were found


def test_merge_refuses_missing_shards_other_options_and_other_sources(source, tmp_path):
    parts = tmp_path / "parts"
    for i in (0, 2):
        corpus_build([source], parts / str(i), shard=f"{i}/3", show_progress=False, **OPTIONS)
    with pytest.raises(ExpertlmError, match="shard\\(s\\) 1 of 3 missing"):
        corpus_build([source], tmp_path / "c", merge=parts, **OPTIONS)
    corpus_build([source], parts / "1", shard="1/3", show_progress=False, **OPTIONS)
    with pytest.raises(ExpertlmError, match="--max-year 2020 there, 2010 here"):
        corpus_build([source], tmp_path / "c", merge=parts, **{**OPTIONS, "max_year": 2010})
    with pytest.raises(ExpertlmError, match="other sources"):
        corpus_build([source / "b.jsonl"], tmp_path / "c", merge=parts, **OPTIONS)
    assert not (tmp_path / "c").exists()
    with pytest.raises(ExpertlmError, match="--shard and --merge"):
        corpus_build([source], tmp_path / "c", shard="0/3", merge=parts)
    with pytest.raises(ExpertlmError, match="expected I/N"):
        corpus_build([source], tmp_path / "c", shard="3/3")


def test_shards_own_interleaved_blocks_and_merge_order_restores_input_order():
    assert Shard.parse("2/5") == Shard(2, 5) and str(Shard(2, 5)) == "2/5"
    owners = block_owners(300, 3)
    assert [owner(k, 3) for k in range(300)] == owners.tolist()
    assert set(np.bincount(owners)) and min(np.bincount(owners)) > 70  # balanced
    shards = [Shard(i, 3) for i in range(3)]
    positions = [np.array([p for p in range(5000) if s.owns(p)]) for s in shards]
    assert sum(len(p) for p in positions) == 5000
    order = [p for s, a, b in merge_order(positions, 3) for p in positions[s][a:b].tolist()]
    assert order == list(range(5000))
    assert all(Shard().owns(p) for p in range(0, 10**6, 997))
    assert BLOCK_DOCS == 64


def test_data_prepare_three_shards_merged_are_the_same_bytes(tmp_path):
    rows = planted_rows(300, seed=1)
    rows[7]["text"] += " <|endoftext|> is text here"
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for split, part in (("train", rows[:250]), ("val", rows[250:])):
        (corpus / f"{split}.jsonl.gz").write_bytes(
            gzip.compress("".join(json.dumps(r) + "\n" for r in part).encode(), mtime=0)
        )
    tok = tokenizer_train(corpus, tmp_path / "tok", vocab_size=300, show_progress=False)
    whole = data_prepare(corpus, tmp_path / "whole", tokenizer=tok, show_progress=False)
    for i in range(3):
        data_prepare(corpus, tmp_path / "parts" / str(i), tokenizer=tok, shard=f"{i}/3",
                     show_progress=False)  # fmt: skip
    merged = data_prepare(corpus, tmp_path / "merged", tokenizer=tok, merge=tmp_path / "parts",
                          show_progress=False)  # fmt: skip
    for name in ("train.bin", "val.bin"):
        assert (merged / name).read_bytes() == (whole / name).read_bytes()
    a, b = (json.loads((d / "meta.json").read_text()) for d in (whole, merged))
    assert {k: a[k] for k in ("tokens", "docs", "corpus_hash", "tokenizer_hash")} == {
        k: b[k] for k in ("tokens", "docs", "corpus_hash", "tokenizer_hash")
    }
    other = tmp_path / "other"
    other.mkdir()
    (other / "train.jsonl.gz").write_bytes((corpus / "val.jsonl.gz").read_bytes())
    (other / "val.jsonl.gz").write_bytes((corpus / "val.jsonl.gz").read_bytes())
    with pytest.raises(ExpertlmError, match="another corpus or tokenizer"):
        data_prepare(other, tmp_path / "m2", tokenizer=tok, merge=tmp_path / "parts")
