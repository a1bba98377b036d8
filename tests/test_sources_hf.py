"""`hf:NAME[:split]` sources: Hugging Face datasets through `datasets` (streaming), offline on a
local folder of data files; the same field mapping as JSON Lines; clear errors."""

from __future__ import annotations

import gzip
import json
import sys
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from expertlm.cli import app
from expertlm.config import CorpusConfig
from expertlm.corpus.build import corpus_build
from expertlm.corpus.sources import HFSource, expand_sources, read_sources
from expertlm.errors import ExpertlmError

TRAIN = [
    {"pmid": f"p{i}", "body": f"Document {i}: the hippocampus encodes place number {i} in rats.",
     "meta": {"year": 2000 + i}, "journal": "J Neurosci"}
    for i in range(6)
]  # fmt: skip
VALIDATION = [
    {"pmid": "v0", "body": "A held-out abstract about the amygdala.", "meta": {"year": 2023}}
]


@pytest.fixture
def dataset(tmp_path) -> Path:
    """A local dataset folder as `datasets` reads it: one data file per split."""
    folder = tmp_path / "ds"
    folder.mkdir()
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in TRAIN))
    (folder / "validation.jsonl").write_text("".join(json.dumps(r) + "\n" for r in VALIDATION))
    return folder


MAPPING = {
    "text_field": "body",
    "id_field": "pmid",
    "year_field": "meta.year",
    "keep_fields": ["journal"],
}


def read(spec: str, **options):
    stats: Counter = Counter()
    files = expand_sources([spec])
    return list(read_sources(files, CorpusConfig(**options), stats))


def test_spec_parsing():
    assert HFSource.parse("hf:user/name") == HFSource("user/name", "train")
    assert HFSource.parse("hf:user/name:validation") == HFSource("user/name", "validation")
    assert HFSource.parse("hf:/data/ds:test") == HFSource("/data/ds", "test")
    assert str(HFSource("user/name", "test")) == "hf:user/name:test"
    with pytest.raises(ExpertlmError, match="hf:NAME"):
        HFSource.parse("hf:")


def test_local_dataset_streams_with_the_field_mapping(dataset):
    docs = read(f"hf:{dataset}", **MAPPING)
    assert [(d.text, d.id, d.year) for d in docs] == [
        (r["body"], r["pmid"], r["meta"]["year"]) for r in TRAIN
    ]
    assert docs[0].extra == {"journal": "J Neurosci"}
    assert docs[0].source == f"hf:{dataset}:train[row 1]"
    [val] = read(f"hf:{dataset}:validation", **MAPPING)
    assert (val.id, val.year) == ("v0", 2023)


def test_corpus_build_from_a_dataset_records_it_in_the_manifest(dataset, tmp_path):
    out = corpus_build([f"hf:{dataset}:train"], tmp_path / "corpus", min_chars=0, **MAPPING)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["kept"] == 6
    [inp] = manifest["inputs"]
    assert inp["path"] == f"hf:{dataset}:train"
    assert inp["hf"] == {"name": str(dataset), "split": "train", "local": True}
    assert len(inp["sha256"]) == 64


def test_cli_reads_hf_sources(dataset, tmp_path):
    result = CliRunner().invoke(
        app,
        ["corpus", "build", f"hf:{dataset}:train", "--out", str(tmp_path / "c"), "--min-chars", "0",
         "--text-field", "body", "--id-field", "pmid", "--year-field", "meta.year", "--max-year", "2003"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = []
    for split in ("train", "val"):
        with gzip.open(tmp_path / "c" / f"{split}.jsonl.gz", "rt") as f:
            rows += [json.loads(line) for line in f]
    assert sorted(r["id"] for r in rows) == ["p0", "p1", "p2", "p3"]


def test_missing_text_column_names_the_columns(dataset):
    with pytest.raises(
        ExpertlmError, match=r"no column 'text' \(columns: pmid, body, meta, journal"
    ):
        read(f"hf:{dataset}")


def test_unknown_split_and_unreachable_hub_are_clear_errors(dataset):
    with pytest.raises(ExpertlmError, match=r"cannot load the dataset .*Bad split: test"):
        expand_sources([f"hf:{dataset}:test"])
    # conftest sets HF_HUB_OFFLINE=1: a hub id fails at once, as it does without a network
    with pytest.raises(
        ExpertlmError, match="hf:BrainGPT/no_such_dataset:train: cannot load the dataset"
    ):
        expand_sources(["hf:BrainGPT/no_such_dataset"])


def test_without_the_datasets_library_the_error_says_what_to_install(dataset, monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # import datasets -> ImportError
    with pytest.raises(
        ExpertlmError, match=r"needs the datasets library \(pip install 'expertlm\[net\]'\)"
    ):
        expand_sources([f"hf:{dataset}"])


def test_plain_files_still_work_beside_a_dataset(dataset, tmp_path):
    extra = tmp_path / "extra.jsonl"
    extra.write_text(json.dumps({"pmid": "x1", "body": "Another text."}) + "\n")
    files = expand_sources([f"hf:{dataset}", extra])
    assert files == [HFSource(str(dataset)), extra]
    docs = list(read_sources(files, CorpusConfig(**MAPPING), Counter()))
    assert [d.id for d in docs] == [*(r["pmid"] for r in TRAIN), "x1"]
