"""Every reader of a user's file, fed random and mutated files (hypothesis): corpus sources
(JSON Lines, JSON, CSV, TSV, text), benchmarks (BrainBench CSV, JSONL), participant data,
experiment files and shards (meta.json, the token files). The only outcomes are a result or an
`ExpertlmError` of one line (an experiment file: one line per problem, each naming the file)."""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from expertlm.errors import ExpertlmError

SETTINGS = settings(max_examples=int(__import__("os").environ.get("FUZZ_N", 60)), deadline=None, derandomize=not __import__("os").environ.get("FUZZ_N"),
                    suppress_health_check=[HealthCheck.too_slow])  # fmt: skip


@st.composite
def mutated(draw, valid: bytes) -> bytes:
    """`valid` with a few edits: bytes deleted, inserted, replaced, a line repeated, truncated."""
    data = bytearray(valid)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["delete", "insert", "replace", "repeat", "truncate"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "delete":
            del data[at : at + draw(st.integers(1, 20))]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=12))
        elif op == "replace" and data:
            data[at] = draw(st.integers(0, 255))
        elif op == "repeat":
            lines = bytes(data).split(b"\n")
            k = draw(st.integers(0, len(lines) - 1))
            data = bytearray(b"\n".join([*lines[: k + 1], lines[k], *lines[k + 1 :]]))
        else:
            data = data[:at]
    return bytes(data)


def files(valid: bytes):
    return st.one_of(st.binary(max_size=300), mutated(valid))


def outcome(fn, one_line: bool = True):
    """Run a reader: a result, or an ExpertlmError of one line (or lines each naming the file)."""
    try:
        return fn()
    except ExpertlmError as e:
        msg = str(e)
        assert msg.strip(), "an empty error message"
        if one_line:
            assert "\n" not in msg, msg
        return e


# --- corpus sources ---------------------------------------------------------------------------

JSONL = "".join(json.dumps({"id": f"d{i}", "text": f"Document {i} text.", "year": 2001 + i,
                            "meta": {"j": "J"}}) + "\n" for i in range(4)).encode()  # fmt: skip
CSV = b"id,text,year\nd1,\"First, a document.\",2001\nd2,Second document,2002\n"
JSON = json.dumps([{"id": "a", "text": "A document.", "year": "2003-01-01"}]).encode()


def _read_source(name: str, data: bytes, **options):
    from expertlm.config import CorpusConfig
    from expertlm.corpus.sources import expand_sources, read_sources

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(data)
        cfg = CorpusConfig(**options)
        return outcome(lambda: list(read_sources(expand_sources([path]), cfg, Counter())))


@SETTINGS
@given(files(JSONL), st.booleans())
def test_jsonl_sources(data, skip_bad):
    _read_source("docs.jsonl", data, skip_bad=skip_bad)


@SETTINGS
@given(files(CSV), st.sampled_from(["docs.csv", "docs.tsv"]))
def test_csv_sources(data, name):
    _read_source(name, data.replace(b",", b"\t") if name.endswith("tsv") else data)


@SETTINGS
@given(files(JSON))
def test_json_and_text_sources(data):
    _read_source("docs.json", data)
    _read_source("doc.txt", data)


# --- benchmarks, participant data -----------------------------------------------------------

BENCH_CSV = (b"doi,journal_section,original_abstract,incorrect_abstract,combined_abstract\n"
             b"d1,S,Firing increased.,Firing decreased.,Firing [[increased, decreased]].\n"
             b"d2,S,\"Memory was impaired, as before.\",\"Memory was enhanced, as before.\","
             b"\"Memory was [[impaired, enhanced]], as before.\"\n")  # fmt: skip
BENCH_JSONL = (json.dumps({"id": "a", "section": "S", "original": "Up.", "altered": "Down."})
               + "\n" + json.dumps({"id": "b", "choices": ["x", "y", "z"], "answer": 2})
               + "\n").encode()  # fmt: skip


@SETTINGS
@given(files(BENCH_CSV), files(BENCH_JSONL), st.booleans())
def test_benchmarks(csv_data, jsonl_data, repair):
    from expertlm.eval.benchmark import load_benchmark

    with tempfile.TemporaryDirectory() as tmp:
        for name, data in (("b.csv", csv_data), ("b.jsonl", jsonl_data)):
            (Path(tmp) / name).write_bytes(data)
            outcome(lambda n=name: load_benchmark(Path(tmp) / n, repair=repair))


PARTICIPANTS = (b",pid,expertise,confidence,click_outside,correct,rt,abstract_id,journal_section,"
                b"click_slider,recognised,age,country,current position,experience,sex\n"
                b"0,1.0,10,20,,1,1000,3.0,human_Systems/Circuits,1,0,30,UK,Postdoc,5,Female\n"
                b"1,2.0,90,80,,0,900,4.0,machine_Behavioral,1,0,41,US,PI,9,Male\n")  # fmt: skip


@SETTINGS
@given(files(PARTICIPANTS))
def test_participant_data(data):
    from expertlm.eval.humans import human_summary, read_trials

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "p.csv"
        path.write_bytes(data)
        trials = outcome(lambda: read_trials(path))
        if isinstance(trials, list):
            outcome(lambda: human_summary(trials, items="all"))


# --- experiment files -------------------------------------------------------------------------

EXPERIMENT = b"""name: t
corpora:
  d: {synth: {papers: 60, bench_items: 8, seen_items: 4}}
tokenizers:
  d: {corpus: d, vocab_size: 600}
benchmarks:
  fwd: {corpus: d}
variants:
  - {name: a, tokenizer: d, preset: gpt2-tiny, train: null}
  - {name: b, tokenizer: d, data: d, preset: gpt2-tiny, train: {max_steps: 2, context: 64}}
  - {name: m, merge: {method: slerp, models: [a, b], t: 0.5}}
eval: {ppl: [d]}
profiles:
  quick: {variants: {b: {train: {max_steps: 1}}}}
"""


@SETTINGS
@given(files(EXPERIMENT), st.sampled_from([None, "quick"]))
def test_experiment_files(data, profile):
    from expertlm.experiment import plan_experiment

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "exp.yaml"
        path.write_bytes(data)
        e = outcome(lambda: plan_experiment(path, out=Path(tmp) / "out", profile=profile),
                    one_line=False)  # fmt: skip
        if isinstance(e, ExpertlmError):
            assert all(line.startswith(str(path)) for line in str(e).splitlines()), str(e)
        assert not (Path(tmp) / "out").exists()  # planning computes nothing


# --- shards -----------------------------------------------------------------------------------

META = json.dumps({"format": "expertlm.shards/1", "dtype": "uint16", "vocab_size": 300,
                   "eot_id": 0, "tokens": {"train": 64, "val": 16}}).encode()  # fmt: skip


@SETTINGS
@given(files(META), st.binary(max_size=200), st.booleans())
def test_shards_meta_and_token_files(meta, tokens, valid_tokens):
    from expertlm.shards import open_tokens, read_meta

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "meta.json").write_bytes(meta)
        train = np.arange(64, dtype="<u2") % 300 if valid_tokens else np.frombuffer(tokens, "u1")
        (folder / "train.bin").write_bytes(train.tobytes())
        (folder / "val.bin").write_bytes(np.zeros(16, "<u2").tobytes())
        if not isinstance(outcome(lambda: read_meta(folder)), ExpertlmError):
            for split in ("train", "val"):
                outcome(lambda s=split: open_tokens(folder, s))


def test_the_valid_files_read():
    """The unmutated files are read (so the strategies above mutate something that works)."""
    assert len(_read_source("docs.jsonl", JSONL)) == 4
    assert len(_read_source("docs.csv", CSV)) == 2


def test_a_valid_meta_reads(tmp_path):
    from expertlm.shards import open_tokens

    (tmp_path / "meta.json").write_bytes(META)
    (tmp_path / "train.bin").write_bytes((np.arange(64, dtype="<u2") % 300).tobytes())
    assert len(open_tokens(tmp_path)) == 64
