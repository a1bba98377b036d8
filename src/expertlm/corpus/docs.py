"""The corpus folder format: `train.jsonl.gz`, `val.jsonl.gz`, `manifest.json`.

Each line is a corpus document `{"id", "text", "year", "source", ...extra}`. Later stages read
a corpus only through `iter_docs` and identify it by `corpus_hash`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path

from expertlm.errors import ExpertlmError
from expertlm.io import combine_hashes, iter_jsonl, read_json, sha256_file

SPLITS = ("train", "val")
MANIFEST = "manifest.json"


def in_val(doc_id: str, val_frac: float, seed: int = 0) -> bool:
    """Hash-based split: a document's split depends only on its id (and the seed), so adding
    documents never moves existing ones between train and validation."""
    digest = hashlib.blake2b(f"{seed}\0{doc_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64 < val_frac


def split_file(corpus: str | Path, split: str) -> Path:
    """The file of one split; `corpus` may also be a single .jsonl(.gz) file of documents."""
    corpus = Path(corpus)
    if corpus.is_file() and corpus.name.endswith((".jsonl", ".jsonl.gz")):
        return corpus
    if not corpus.exists():
        raise ExpertlmError(f"{corpus}: no such corpus folder")
    path = corpus / f"{split}.jsonl.gz"
    if not path.is_file():
        raise ExpertlmError(
            f"{corpus}: not a corpus folder (no {path.name}; build one with `expertlm corpus build`)"
        )
    return path


def iter_docs(
    corpus: str | Path, split: str = "train", on_bytes: Callable[[int], None] | None = None
) -> Iterator[dict]:
    path = split_file(corpus, split)
    for doc in iter_jsonl(path, on_bytes):
        if not isinstance(doc.get("text"), str):
            raise ExpertlmError(f"{path}: document {doc.get('id', '?')!r} has no text")
        yield doc


def iter_texts(
    corpus: str | Path, split: str = "train", on_bytes: Callable[[int], None] | None = None
) -> Iterator[str]:
    for doc in iter_docs(corpus, split, on_bytes):
        yield doc["text"]


def corpus_files(corpus: str | Path) -> list[Path]:
    corpus = Path(corpus)
    if corpus.is_file():
        return [split_file(corpus, "train")]
    return [split_file(corpus, s) for s in SPLITS]


def corpus_hash(corpus: str | Path) -> str:
    """Content hash of the corpus's document files (the manifest is provenance, not content)."""
    return combine_hashes(f"{p.name}:{sha256_file(p)}" for p in corpus_files(corpus))


def read_manifest(corpus: str | Path) -> dict:
    return read_json(Path(corpus) / MANIFEST)
