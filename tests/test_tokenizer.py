"""tokenizer.py: train a byte-level BPE on a tiny corpus, load it, compare tokenizers."""

from __future__ import annotations

import gzip
import hashlib
import json
import random
import re
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer
from transformers import AutoTokenizer

from expertlm.errors import ExpertlmError
from expertlm.tokenizer import (
    DEFINITIONS,
    EOT,
    INFO_FILE,
    load_handle,
    tokenizer_compare,
    tokenizer_train,
)

SYLLABLES = ["ne", "ur", "on", "syn", "ap", "cor", "tex", "hip", "po", "cam", "do", "pa", "mi"]


def make_texts(n_docs: int, seed: int = 0) -> list[str]:
    """Sentences over a seeded, Zipf-weighted vocabulary of made-up words (plus "neuron")."""
    rng = random.Random(seed)
    vocab = ["neuron"] + sorted(
        {"".join(rng.choices(SYLLABLES, k=rng.randint(1, 4))) for _ in range(150)}
    )
    weights = [1 / (i + 1) for i in range(len(vocab))]
    return [
        " ".join(rng.choices(vocab, weights, k=rng.randint(8, 40))) + "." for _ in range(n_docs)
    ]


def write_corpus(folder: Path, train: list[str], val: list[str]) -> Path:
    folder.mkdir(parents=True)
    for split, texts in (("train", train), ("val", val)):
        lines = "".join(
            json.dumps({"id": f"{split}-{i}", "text": t, "year": 2000, "source": "test"}) + "\n"
            for i, t in enumerate(texts)
        )
        (folder / f"{split}.jsonl.gz").write_bytes(gzip.compress(lines.encode(), mtime=0))
    return folder


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    texts = make_texts(300)
    return write_corpus(tmp_path_factory.mktemp("tok") / "corpus", texts[:270], texts[270:])


@pytest.fixture(scope="module")
def tok400(corpus) -> Path:
    return tokenizer_train(corpus, corpus.parent / "tok400", vocab_size=400, show_progress=False)


@pytest.fixture(scope="module")
def tok300(corpus) -> Path:
    return tokenizer_train(corpus, corpus.parent / "tok300", vocab_size=300, show_progress=False)


@pytest.fixture(scope="module")
def hf400(tok400):
    return AutoTokenizer.from_pretrained(tok400)


# --- train -----------------------------------------------------------------------------------


def test_trained_folder_loads_with_eot_as_eos_and_asked_vocab(tok400, hf400):
    assert hf400.eos_token == EOT
    assert hf400.convert_tokens_to_ids(EOT) == hf400.eos_token_id
    assert len(hf400) == 400
    info = json.loads((tok400 / INFO_FILE).read_text())
    assert info["vocab_size"] == 400
    assert info["vocab_size_requested"] == 400
    assert info["trained_on"]["docs"] == 270
    assert (
        info["tokenizer_hash"]
        == hashlib.sha256((tok400 / "tokenizer.json").read_bytes()).hexdigest()
    )


def test_pre_tokenisation_is_gpt2s(tok400):
    backend = Tokenizer.from_file(str(tok400 / "tokenizer.json"))
    pieces = [p for p, _ in backend.pre_tokenizer.pre_tokenize_str("Hello world's 123 !!\n x")]
    # GPT-2's regex: contractions, a leading space glued to the next word/number/punctuation run
    assert pieces == ["Hello", "Ġworld", "'s", "Ġ123", "Ġ!!", "Ċ", "Ġx"]


def test_frequent_word_is_one_token_with_the_space_marker(hf400):
    assert hf400.convert_ids_to_tokens(hf400.encode(" neuron neuron")) == ["Ġneuron", "Ġneuron"]
    # a word the corpus never saw is split into pieces, the first carrying the space
    pieces = hf400.convert_ids_to_tokens(hf400.encode(" zyxwvq"))
    assert len(pieces) > 1
    assert pieces[0].startswith("Ġ")
    assert not any(p.startswith("Ġ") for p in pieces[1:])


def test_no_special_tokens_added_when_encoding(tok400, hf400):
    text = "neuron fires"
    ids = hf400(text)["input_ids"]
    assert ids == hf400.encode(text, add_special_tokens=False)
    assert hf400.eos_token_id not in ids
    backend = Tokenizer.from_file(str(tok400 / "tokenizer.json"))
    assert backend.encode(text).ids == ids


@settings(max_examples=150, deadline=None)
@given(
    st.one_of(
        st.text(),
        st.text(
            alphabet=st.sampled_from(
                [" ", "\t", "\n", "\r", "😀", "🧠", "é", "a", "1", "'", ".", ","]
            )
        ),
    )
)
@example("")
@example("  two leading spaces and trailing  ")
@example("\t\ttabs\tand\n\n\nnewlines \n ")
@example("emoji 🧠🧬 👩\u200d🔬 and combining e\u0301 and NUL \x00")
def test_round_trip_is_exact(hf400, text):
    ids = hf400.encode(text)
    assert hf400.decode(ids, skip_special_tokens=False) == text


def test_vocab_below_byte_alphabet_is_refused(corpus, tmp_path):
    with pytest.raises(ExpertlmError, match="257"):
        tokenizer_train(corpus, tmp_path / "tok", vocab_size=256)
    assert not (tmp_path / "tok").exists()


def test_small_corpus_warns_and_records_the_smaller_vocab(tmp_path, capsys):
    corpus = write_corpus(tmp_path / "c", ["aaa bbb aaa bbb"] * 5, ["aaa"])
    out = tokenizer_train(corpus, tmp_path / "tok", vocab_size=5000, show_progress=False)
    info = json.loads((out / INFO_FILE).read_text())
    assert info["vocab_size_requested"] == 5000
    assert 257 <= info["vocab_size"] < 5000
    assert len(AutoTokenizer.from_pretrained(out)) == info["vocab_size"]
    err = capsys.readouterr().err
    assert "warning:" in err
    assert f"supports only {info['vocab_size']:,} tokens (asked for 5,000)" in err


def test_existing_output_is_refused_without_overwrite(corpus, tmp_path):
    out = tmp_path / "tok"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    with pytest.raises(ExpertlmError, match="already exists"):
        tokenizer_train(corpus, out, vocab_size=300)
    assert (out / "keep.txt").read_text() == "precious"
    tokenizer_train(corpus, out, vocab_size=300, overwrite=True, show_progress=False)
    assert not (out / "keep.txt").exists()
    assert (out / "tokenizer.json").is_file()


def test_not_a_corpus_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ExpertlmError, match="not a corpus folder"):
        tokenizer_train(tmp_path / "empty", tmp_path / "tok", vocab_size=300)
    with pytest.raises(ExpertlmError, match="no such corpus folder"):
        tokenizer_train(tmp_path / "missing", tmp_path / "tok", vocab_size=300)
    assert not (tmp_path / "tok").exists()


def test_max_docs_limits_the_documents_trained_on(corpus, tmp_path):
    texts = make_texts(300)[:270]
    out = tokenizer_train(
        corpus, tmp_path / "tok", vocab_size=300, max_docs=10, show_progress=False
    )
    info = json.loads((out / INFO_FILE).read_text())
    assert info["trained_on"] == {"docs": 10, "chars": sum(len(t) for t in texts[:10])}
    assert info["config"]["max_docs"] == 10


# --- load ------------------------------------------------------------------------------------


def test_load_handle_of_a_trained_folder(tok400):
    h = load_handle(tok400)
    vocab = json.loads((tok400 / "tokenizer.json").read_text())["model"]["vocab"]
    assert h.eot_id == vocab[EOT]
    assert h.vocab_size == max(vocab.values()) + 1 == 400
    assert h.hash == hashlib.sha256((tok400 / "tokenizer.json").read_bytes()).hexdigest()
    backend = Tokenizer.from_file(str(tok400 / "tokenizer.json"))
    texts = ["neuron cortex", "", " x\ty"]
    assert h.encode_batch(texts) == [backend.encode(t).ids for t in texts]


def test_load_handle_of_a_missing_path(tmp_path):
    with pytest.raises(ExpertlmError, match="no such tokenizer folder"):
        load_handle(tmp_path / "nope")


def test_load_handle_of_a_folder_without_tokenizer_files(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ExpertlmError, match="not a tokenizer folder"):
        load_handle(tmp_path / "empty")


def test_load_handle_of_a_corrupt_tokenizer_file(tmp_path):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "tokenizer.json").write_text("{not json")
    with pytest.raises(ExpertlmError, match="not a valid tokenizer file"):
        load_handle(tmp_path / "bad")


def test_load_handle_of_a_file_is_refused(tok400):
    with pytest.raises(ExpertlmError, match="is a folder, not a file"):
        load_handle(tok400 / INFO_FILE)


# --- compare ---------------------------------------------------------------------------------


def expected_row(tok: Path, texts: list[str]) -> dict:
    """The measures of tokenizer.DEFINITIONS, computed here from the tokenizer file."""
    backend = Tokenizer.from_file(str(tok / "tokenizer.json"))
    n_tokens = sum(len(backend.encode(t, add_special_tokens=False).ids) for t in texts)
    n_words = sum(len(t.split()) for t in texts)
    alpha = [w for t in texts for w in re.findall(r"[a-z]+", t)]  # the test corpus is a-z only
    whole = sum(len(backend.encode(" " + w).ids) == 1 for w in alpha)
    return {
        "tokens": n_tokens,
        "fertility": n_tokens / n_words,
        "chars_per_token": sum(map(len, texts)) / n_tokens,
        "whole_word_share": whole / len(alpha),
    }


def test_compare_measures_match_their_definitions(corpus, tok300, tok400, tmp_path):
    out = tmp_path / "cmp.json"
    result = tokenizer_compare([tok300, tok400], on=corpus, out=out, top=5)
    val = make_texts(300)[270:]
    assert result["split"] == "val"
    assert result["docs"] == len(val)
    assert result["chars"] == sum(map(len, val))
    assert result["words"] == sum(len(t.split()) for t in val)
    assert result["definitions"] == DEFINITIONS
    assert set(DEFINITIONS) >= {"fertility", "chars_per_token", "whole_word_share"}
    rows = result["tokenizers"]
    assert [r["vocab_size"] for r in rows] == [300, 400]
    for row, tok in zip(rows, (tok300, tok400), strict=True):
        assert row["tokenizer"] == str(tok)
        assert {
            k: row[k] for k in ("tokens", "fertility", "chars_per_token", "whole_word_share")
        } == (expected_row(tok, val))
        assert len(row["split_words"]) <= 5
        for w in row["split_words"]:
            assert len(w["word"]) >= 4
            assert len(w["pieces"]) > 1
            assert "".join(w["pieces"]) == " " + w["word"]
    assert rows[1]["fertility"] <= rows[0]["fertility"]
    assert rows[1]["whole_word_share"] >= rows[0]["whole_word_share"]
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))


def test_compare_falls_back_to_train_when_val_is_empty(tok300, tok400, tmp_path, capsys):
    texts = make_texts(20, seed=1)
    corpus = write_corpus(tmp_path / "c", texts, [])
    result = tokenizer_compare([tok300, tok400], on=corpus, max_docs=7)
    assert result["split"] == "train"
    assert result["docs"] == 7
    assert result["tokenizers"][0] | expected_row(tok300, texts[:7]) == result["tokenizers"][0]
    assert "validation split is empty" in capsys.readouterr().err


def test_compare_needs_two_tokenizers(corpus, tok400):
    with pytest.raises(ExpertlmError, match="at least two"):
        tokenizer_compare([tok400], on=corpus)
