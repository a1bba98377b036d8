"""shards.py: corpus + tokenizer -> flat token files that numpy.memmap reads back exactly."""

from __future__ import annotations

import gzip
import hashlib
import json
import random
import threading
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer
from transformers import AutoTokenizer

from expertlm import shards
from expertlm.errors import ExpertlmError
from expertlm.shards import data_prepare, open_tokens, read_meta, token_dtype
from expertlm.tokenizer import EOT, tokenizer_train

SYLLABLES = ["ne", "ur", "on", "syn", "ap", "cor", "tex", "hip", "po", "cam", "do", "pa", "mi"]


def make_texts(n_docs: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    vocab = sorted({"".join(rng.choices(SYLLABLES, k=rng.randint(1, 4))) for _ in range(150)})
    texts = [" ".join(rng.choices(vocab, k=rng.randint(3, 30))) + "." for _ in range(n_docs)]
    texts[1] = "Ünïcödé, tabs\tand\n\nnewlines; emoji 🧠 and digits 12345."  # beyond the a-z
    return texts


def write_split(path: Path, texts: list[str], name: str = "train") -> None:
    lines = "".join(
        json.dumps({"id": f"{name}-{i}", "text": t, "year": 2001, "source": "test"}) + "\n"
        for i, t in enumerate(texts)
    )
    path.write_bytes(gzip.compress(lines.encode(), mtime=0))


def write_corpus(folder: Path, train: list[str], val: list[str]) -> Path:
    folder.mkdir(parents=True)
    write_split(folder / "train.jsonl.gz", train, "train")
    write_split(folder / "val.jsonl.gz", val, "val")
    return folder


def expected_stream(tok: Path, texts: list[str]) -> list[int]:
    """[eot] + ids of each document, in file order, encoded here with the tokenizers library."""
    backend = Tokenizer.from_file(str(tok / "tokenizer.json"))
    eot = backend.token_to_id(EOT)
    stream: list[int] = []
    for t in texts:
        stream += [eot, *backend.encode(t).ids]
    return stream


TRAIN, VAL = make_texts(120)[:100], make_texts(120)[100:]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("shards") / "corpus", TRAIN, VAL)


@pytest.fixture(scope="module")
def tok(corpus) -> Path:
    return tokenizer_train(corpus, corpus.parent / "tok", vocab_size=350, show_progress=False)


@pytest.fixture(scope="module")
def prepared(corpus, tok) -> Path:
    return data_prepare(corpus, corpus.parent / "prepared", tokenizer=tok, show_progress=False)


def test_token_files_are_the_documents_encoded_with_eot_before_each(prepared, tok):
    meta = json.loads((prepared / "meta.json").read_text())
    assert meta["dtype"] == "uint16"
    assert meta["byte_order"] == "little"
    for split, texts in (("train", TRAIN), ("val", VAL)):
        tokens = np.memmap(prepared / f"{split}.bin", dtype=np.dtype("<u2"), mode="r")
        expected = expected_stream(tok, texts)
        assert tokens.tolist() == expected
        assert meta["tokens"][split] == len(expected)
        assert meta["docs"][split] == len(texts)
        assert (prepared / f"{split}.bin").stat().st_size == 2 * len(expected)


def test_meta_records_vocab_eot_and_input_hashes(prepared, corpus, tok):
    meta = read_meta(prepared)
    vocab = json.loads((tok / "tokenizer.json").read_text())["model"]["vocab"]
    assert meta["format"] == shards.FORMAT
    assert meta["eot_id"] == vocab[EOT]
    assert meta["vocab_size"] == 350
    assert (
        meta["tokenizer_hash"] == hashlib.sha256((tok / "tokenizer.json").read_bytes()).hexdigest()
    )
    digests = [
        f"{s}.jsonl.gz:{hashlib.sha256((corpus / f'{s}.jsonl.gz').read_bytes()).hexdigest()}"
        for s in ("train", "val")
    ]
    assert meta["corpus_hash"] == hashlib.sha256("\n".join(digests).encode()).hexdigest()


def test_tokenizer_copy_in_shards_loads(prepared, tok):
    copy = AutoTokenizer.from_pretrained(prepared / "tokenizer")
    assert copy.eos_token == EOT
    assert (prepared / "tokenizer" / "tokenizer.json").read_bytes() == (
        tok / "tokenizer.json"
    ).read_bytes()
    assert copy.encode(TRAIN[1]) == expected_stream(tok, [TRAIN[1]])[1:]


def test_open_tokens(prepared, tok):
    train = open_tokens(prepared)
    assert train.dtype == np.dtype("<u2")
    assert train.tolist() == expected_stream(tok, TRAIN)
    assert open_tokens(prepared, "val").tolist() == expected_stream(tok, VAL)
    with pytest.raises(ExpertlmError, match="no such token file"):
        open_tokens(prepared, "test")
    with pytest.raises(ExpertlmError, match="not a shards folder"):
        open_tokens(prepared.parent / "corpus")


def test_token_dtype():
    assert token_dtype(300) == np.uint16
    assert token_dtype(2**16) == np.uint16  # ids 0..65535
    assert token_dtype(2**16 + 1) == np.uint32
    assert token_dtype(70_000) == np.uint32


def test_uint32_files_read_back(corpus, tok, tmp_path, monkeypatch):
    monkeypatch.setattr(shards, "token_dtype", lambda vocab_size: np.dtype(np.uint32))
    out = data_prepare(corpus, tmp_path / "s32", tokenizer=tok, show_progress=False)
    assert read_meta(out)["dtype"] == "uint32"
    tokens = np.memmap(out / "train.bin", dtype=np.dtype("<u4"), mode="r")
    assert tokens.tolist() == expected_stream(tok, TRAIN)
    assert open_tokens(out).tolist() == expected_stream(tok, TRAIN)


def test_rerun_with_same_inputs_does_nothing(corpus, tok, tmp_path, capsys):
    out = data_prepare(corpus, tmp_path / "s", tokenizer=tok, show_progress=False)
    mtime = (out / "train.bin").stat().st_mtime_ns
    meta = (out / "meta.json").read_text()
    capsys.readouterr()
    assert data_prepare(corpus, out, tokenizer=tok, show_progress=False) == out
    assert "up to date" in capsys.readouterr().err
    assert (out / "train.bin").stat().st_mtime_ns == mtime
    assert (out / "meta.json").read_text() == meta


def test_changed_corpus_rebuilds(tok, tmp_path, capsys):
    corpus = write_corpus(tmp_path / "c", TRAIN, VAL)
    out = data_prepare(corpus, tmp_path / "s", tokenizer=tok, show_progress=False)
    old_hash = read_meta(out)["corpus_hash"]
    new_train = [t.upper() for t in TRAIN]
    write_split(corpus / "train.jsonl.gz", new_train)
    with pytest.raises(ExpertlmError, match="made from another corpus or tokenizer.*--overwrite"):
        data_prepare(corpus, out, tokenizer=tok, show_progress=False)  # never replaced unasked
    assert read_meta(out)["corpus_hash"] == old_hash
    data_prepare(corpus, out, tokenizer=tok, show_progress=False, overwrite=True)
    assert read_meta(out)["corpus_hash"] != old_hash
    assert open_tokens(out).tolist() == expected_stream(tok, new_train)
    assert read_meta(out)["tokens"]["train"] == len(expected_stream(tok, new_train))


def test_changed_tokenizer_rebuilds(corpus, tok, tmp_path):
    out = data_prepare(corpus, tmp_path / "s", tokenizer=tok, show_progress=False)
    tok2 = tokenizer_train(corpus, tmp_path / "tok2", vocab_size=280, show_progress=False)
    data_prepare(corpus, out, tokenizer=tok2, show_progress=False, overwrite=True)
    meta = read_meta(out)
    assert meta["vocab_size"] == 280
    assert (
        meta["tokenizer_hash"] == hashlib.sha256((tok2 / "tokenizer.json").read_bytes()).hexdigest()
    )
    assert open_tokens(out).tolist() == expected_stream(tok2, TRAIN)
    assert expected_stream(tok2, TRAIN) != expected_stream(tok, TRAIN)


def test_existing_folder_that_is_not_shards_is_refused(corpus, tok, tmp_path):
    out = tmp_path / "s"
    out.mkdir()
    (out / "notes.txt").write_text("precious")
    with pytest.raises(ExpertlmError, match="already exists"):
        data_prepare(corpus, out, tokenizer=tok, show_progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    data_prepare(corpus, out, tokenizer=tok, overwrite=True, show_progress=False)
    assert not (out / "notes.txt").exists()
    assert open_tokens(out).tolist() == expected_stream(tok, TRAIN)


def test_tiny_batches_give_identical_bytes(prepared, corpus, tok, tmp_path, monkeypatch):
    monkeypatch.setattr(shards, "BATCH_CHARS", 50)
    out = data_prepare(corpus, tmp_path / "s", tokenizer=tok, show_progress=False)
    for split in ("train", "val"):
        assert (out / f"{split}.bin").read_bytes() == (prepared / f"{split}.bin").read_bytes()


def test_batches_split_at_the_character_budget():
    texts = iter(["aaa", "bb", "c", "dddddd", "e"])  # a batch ends once it reaches the budget
    assert list(shards._batches(texts, 5)) == [["aaa", "bb"], ["c", "dddddd"], ["e"]]
    assert list(shards._batches(iter([]), 5)) == []


def test_prefetch_yields_in_order_then_reraises_the_readers_error():
    def reader():
        yield from range(5)
        raise ValueError("bad input")

    got = []
    with pytest.raises(ValueError, match="bad input"):
        for item in shards._prefetch(reader()):
            got.append(item)
    assert got == [0, 1, 2, 3, 4]


def test_prefetch_thread_ends_when_the_consumer_stops_early():
    before = threading.active_count()
    items = shards._prefetch(iter(range(1000)), depth=2)
    assert next(items) == 0
    items.close()  # what a failing encode does to the generator
    assert threading.active_count() == before


def test_error_while_reading_propagates_and_leaves_no_output(corpus, tok, tmp_path):
    bad = write_corpus(tmp_path / "c", TRAIN, VAL)
    lines = [json.dumps({"id": "v0", "text": "fine"}), "{broken", json.dumps({"id": "v2"})]
    (bad / "val.jsonl.gz").write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    with pytest.raises(ExpertlmError, match=r"val\.jsonl\.gz:2: not valid JSON"):
        data_prepare(bad, tmp_path / "s", tokenizer=tok, show_progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]  # no output, no temporary folder


def test_single_jsonl_file_as_corpus(tok, tmp_path):
    path = tmp_path / "docs.jsonl.gz"
    write_split(path, VAL)
    out = data_prepare(path, tmp_path / "s", tokenizer=tok, show_progress=False)
    assert read_meta(out)["docs"] == {"train": len(VAL)}
    assert open_tokens(out).tolist() == expected_stream(tok, VAL)
    assert not (out / "val.bin").exists()


def test_empty_val_split_opens_as_no_tokens(tok, tmp_path):
    corpus = write_corpus(tmp_path / "c", TRAIN[:5], [])
    out = data_prepare(corpus, tmp_path / "s", tokenizer=tok, show_progress=False)
    assert read_meta(out)["tokens"]["val"] == 0
    val = open_tokens(out, "val")
    assert val.shape == (0,)
    assert val.dtype == np.dtype("<u2")


def test_empty_train_split_is_an_error(tok, tmp_path):
    corpus = write_corpus(tmp_path / "c", [], VAL)
    with pytest.raises(ExpertlmError, match="train split has no documents"):
        data_prepare(corpus, tmp_path / "s", tokenizer=tok, show_progress=False)
    assert not (tmp_path / "s").exists()


def test_bad_tokenizer_is_an_error_before_any_output(corpus, tmp_path):
    with pytest.raises(ExpertlmError, match="no such tokenizer folder"):
        data_prepare(corpus, tmp_path / "s", tokenizer=tmp_path / "nope", show_progress=False)
    assert not (tmp_path / "s").exists()


def test_literal_endoftext_in_a_document_is_text_not_a_boundary(tmp_path, tok):
    texts = ["the marker <|endoftext|> appears in this paper", "second document"]
    corpus = write_corpus(tmp_path / "c", texts, [])
    out = data_prepare(corpus, tmp_path / "s", tokenizer=tok, show_progress=False)
    eot = read_meta(out)["eot_id"]
    stream = np.asarray(open_tokens(out, "train"))
    boundaries = np.flatnonzero(stream == eot)
    assert len(boundaries) == 2 and boundaries[0] == 0  # one per document, none from the marker
    backend = Tokenizer.from_file(str(tok / "tokenizer.json"))
    assert backend.decode(stream[1 : boundaries[1]].tolist()) == texts[0]


def test_shards_missing_their_tokenizer_copy_are_rebuilt(tmp_path, corpus, tok):
    import shutil

    out = data_prepare(corpus, tmp_path / "s", tokenizer=tok, show_progress=False)
    shutil.rmtree(out / "tokenizer")
    data_prepare(corpus, out, tokenizer=tok, show_progress=False)
    assert (out / "tokenizer" / "tokenizer.json").is_file()
