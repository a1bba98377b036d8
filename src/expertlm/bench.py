"""Benchmark formats: the BrainBench CSV as published, and the JSONL form.

Each item is one abstract in two versions, the original result and an altered one. This module
reads both formats into `BenchItem`s; scoring and statistics build on it.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from expertlm.errors import ExpertlmError, where
from expertlm.io import read_lines

BRAINBENCH_COLUMNS = (
    "doi",
    "journal_section",
    "original_abstract",
    "incorrect_abstract",
    "combined_abstract",
)
JSONL_FIELDS = ("id", "section", "original", "altered")


@dataclass(frozen=True)
class BenchItem:
    id: str
    section: str
    original: str
    altered: str


def read_benchmark(path: str | Path) -> list[BenchItem]:
    """Read a BrainBench CSV (`.csv`) or benchmark JSONL (`.jsonl`, `.jsonl.gz`)."""
    path = Path(path)
    if not path.is_file():
        raise ExpertlmError(f"{path}: no such benchmark file")
    name = path.name.lower()
    if name.endswith(".csv"):
        items = _read_csv(path)
    elif name.endswith((".jsonl", ".jsonl.gz")):
        items = _read_jsonl(path)
    else:
        raise ExpertlmError(f"{path}: unknown benchmark format (expected .csv or .jsonl)")
    if not items:
        raise ExpertlmError(f"{path}: benchmark has no items")
    return items


def _check(item: BenchItem, src: str) -> BenchItem:
    if not item.original.strip() or not item.altered.strip():
        raise ExpertlmError(f"{src}: item '{item.id}' has an empty version")
    if item.original == item.altered:
        raise ExpertlmError(f"{src}: item '{item.id}' has identical original and altered versions")
    return item


def _read_csv(path: Path) -> list[BenchItem]:
    csv.field_size_limit(sys.maxsize)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ExpertlmError(f"{path}: not valid UTF-8 (at byte {e.start})") from None
    # newline="": only \n and \r end a CSV line (str.splitlines also splits at U+0085, U+2028,
    # form feed, ..., which can occur inside an abstract).
    reader = csv.DictReader(io.StringIO(text, newline=""))
    cols = reader.fieldnames or []
    missing = [c for c in ("original_abstract", "incorrect_abstract") if c not in cols]
    if missing:
        raise ExpertlmError(
            f"{path}: missing column(s) {', '.join(missing)} (columns: {', '.join(cols)})"
        )
    items = []
    for row_no, row in enumerate(reader, 1):
        src = where(path, reader.line_num)
        item = BenchItem(
            id=(row.get("doi") or "").strip() or f"row{row_no}",
            section=(row.get("journal_section") or "").strip(),
            original=row["original_abstract"] or "",
            altered=row["incorrect_abstract"] or "",
        )
        items.append(_check(item, src))
    return items


def _read_jsonl(path: Path) -> list[BenchItem]:
    items = []
    for lineno, line in read_lines(path):
        if not line.strip():
            continue
        src = where(path, lineno)
        try:
            obj = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ExpertlmError(f"{src}: not valid JSON ({e})") from None
        if not isinstance(obj, dict):
            raise ExpertlmError(f"{src}: expected a JSON object")
        missing = [k for k in ("original", "altered") if not isinstance(obj.get(k), str)]
        if missing:
            raise ExpertlmError(f"{src}: missing text field(s) {', '.join(missing)}")
        item = BenchItem(
            id=str(obj.get("id") or f"line{lineno}"),
            section=str(obj.get("section") or ""),
            original=obj["original"],
            altered=obj["altered"],
        )
        items.append(_check(item, src))
    return items
