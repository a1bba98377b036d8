"""encode.py: the piece-cache encoder gives exactly the tokenizer's own ids, on any text."""

from __future__ import annotations

import gzip
import json
import random

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer, normalizers

from expertlm import encode
from expertlm.encode import BatchEncoder, PieceCache, flatten, piece_cache_applies, plain_encode
from expertlm.tokenizer import EOT, tokenizer_train

WORDS = ["neuron", "synapse", "cortex", "dopamine", "increased", "decreased", "the", "of", "in"]


@pytest.fixture(scope="module")
def tok_json(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("enc")
    rng = random.Random(0)
    lines = [
        json.dumps({"id": str(i), "text": " ".join(rng.choices(WORDS, k=40)) + ". It's 42%!"})
        for i in range(200)
    ]
    (root / "c").mkdir()
    (root / "c" / "train.jsonl.gz").write_bytes(gzip.compress("\n".join(lines).encode()))
    (root / "c" / "val.jsonl.gz").write_bytes(gzip.compress(b""))
    out = tokenizer_train(root / "c", root / "tok", vocab_size=320, show_progress=False)
    return (out / "tokenizer.json").read_text(encoding="utf-8")


def reference(tok_json: str, texts: list[str]) -> list[list[int]]:
    tok = Tokenizer.from_str(tok_json)
    tok.encode_special_tokens = True
    return [tok.encode(t, add_special_tokens=False).ids for t in texts]


TEXTS = [
    "The neuron's firing increased in cortex (p < 0.05); dopamine    decreased.",
    "  leading spaces, trailing   \n\n\ttabs\t and\r\nCRLF   ",
    "Ünïcödé — “quotes”, µM, 10⁻³, 🧠 emoji, 中文, العربية, I'll you've we'd",
    "literal <|endoftext|> marker stays text",
    "",
    "   ",
]


def test_piece_cache_applies_to_trained_gpt2_style_tokenizers_only(tok_json):
    assert piece_cache_applies(tok_json)
    tok = Tokenizer.from_str(tok_json)
    tok.normalizer = normalizers.NFKC()
    assert not piece_cache_applies(tok.to_str())
    spec = json.loads(tok_json)
    spec["pre_tokenizer"]["add_prefix_space"] = True
    assert not piece_cache_applies(json.dumps(spec))


def test_piece_cache_equals_the_tokenizer_on_hand_picked_text(tok_json):
    enc = PieceCache(tok_json)
    assert enc.encode(TEXTS) == reference(tok_json, TEXTS)
    assert enc.encode(TEXTS[::-1]) == reference(tok_json, TEXTS[::-1])  # from a warm cache
    assert enc.exact


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.text(max_size=80), min_size=1, max_size=5))
def test_piece_cache_equals_the_tokenizer_on_any_text(tok_json, texts):
    enc = PieceCache(tok_json)
    assert enc.encode(texts) == reference(tok_json, texts)


def test_a_disagreement_switches_to_the_tokenizers_own_encoder(tok_json):
    enc = PieceCache(tok_json)
    enc.split = list  # a wrong pre-tokenisation: every character its own piece
    texts = ["the neuron fired", "in cortex"]
    assert enc.encode(texts) == reference(tok_json, texts)
    assert not enc.exact
    assert enc.encode(texts) == reference(tok_json, texts)


def test_cache_is_bounded(tok_json, monkeypatch):
    monkeypatch.setattr(encode, "CACHE_PIECES", 5)
    enc = PieceCache(tok_json)
    for text in TEXTS * 3:
        assert enc.encode([text]) == reference(tok_json, [text])
        assert len(enc.cache) <= 5 + len(set(enc.split(text)))


def test_flatten_puts_eot_before_every_document():
    flat = flatten([[5, 6], [], [7]], eot_id=0, dtype=np.dtype("<u2"))
    assert flat.tolist() == [0, 5, 6, 0, 0, 7]
    assert flat.dtype == np.dtype("<u2")


@pytest.mark.parametrize("workers", [1, 2])
def test_batch_encoder_with_worker_processes_keeps_order(tok_json, workers):
    batches = [TEXTS[i : i + 2] for i in range(0, len(TEXTS), 2)] * 3
    eot = Tokenizer.from_str(tok_json).token_to_id(EOT)
    with BatchEncoder(tok_json, eot, np.dtype("<u2"), workers=workers) as be:
        assert be.cached
        got = [(flat.tolist(), docs) for flat, docs in be.encode(iter(batches))]
    want = [
        (flatten(reference(tok_json, b), eot, np.dtype("<u2")).tolist(), len(b)) for b in batches
    ]
    assert got == want


def test_batch_encoder_without_the_cache_uses_the_tokenizer_in_process(tok_json):
    tok = Tokenizer.from_str(tok_json)
    tok.normalizer = normalizers.Lowercase()
    spec = tok.to_str()
    with BatchEncoder(spec, 0, np.dtype("<u4")) as be:
        assert not be.cached
        ((flat, docs),) = list(be.encode(iter([["The Neuron", "CORTEX"]])))
    assert docs == 2
    assert (
        flat.tolist()
        == flatten(plain_encode(tok, ["The Neuron", "CORTEX"]), 0, np.dtype("<u4")).tolist()
    )


def test_killing_the_parent_with_sigkill_ends_the_encoder_workers_too(tok_json, tmp_path, left_after_sigkill):
    import sys

    (tmp_path / "tokenizer.json").write_text(tok_json, encoding="utf-8")
    code = f"""
import time, json
from pathlib import Path
from expertlm.encode import BatchEncoder
if __name__ == "__main__":
    tok = Path({str(tmp_path / "tokenizer.json")!r}).read_text(encoding="utf-8")
    with BatchEncoder(tok, 0, "uint16", workers=2) as enc:
        [f.result() for f in [enc._pool.submit(time.sleep, 0.5) for _ in range(2)]]  # both started
        busy = [enc._pool.submit(time.sleep, 600) for _ in range(2)]
        print("ready", flush=True)
        busy[0].result()
"""
    alive = left_after_sigkill([sys.executable, "-c", code])
    assert not alive, alive

