"""Shared fixtures: small, generic helpers for building tiny inputs in tmp_path."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _quiet_offline(monkeypatch):
    """No rich progress bars in test output, and never the network (hub ids fail at once)."""
    monkeypatch.setenv("EXPERTLM_NO_PROGRESS", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _write_jsonl(path: str | Path, rows) -> Path:
    """Write `rows` (dicts, or raw strings written as-is) as JSON Lines; gzip if `.gz`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)
    data = lines.encode("utf-8")
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


@pytest.fixture
def write_jsonl():
    """`write_jsonl(path, rows) -> path`: rows are dicts (or raw line strings)."""
    return _write_jsonl
