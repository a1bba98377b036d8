"""io: atomic folder and file writes, JSON Lines, hashes."""

from __future__ import annotations

import gzip
import hashlib
import json

import pytest

from expertlm.errors import ExpertlmError
from expertlm.io import (
    JsonlWriter,
    atomic_dir,
    iter_jsonl,
    jsonl_rows,
    read_json,
    sha256_file,
    sha256_text,
    write_json,
    write_jsonl,
)


def siblings(path):
    return sorted(p.name for p in path.parent.iterdir())


def test_atomic_dir_renames_into_place_on_success(tmp_path):
    out = tmp_path / "out"
    with atomic_dir(out) as tmp:
        assert tmp != out and tmp.parent == tmp_path and tmp.name.startswith(".out.tmp-")
        assert not out.exists()
        (tmp / "a.txt").write_text("hello", encoding="utf-8")
    assert (out / "a.txt").read_text(encoding="utf-8") == "hello"
    assert siblings(out) == ["out"]


def test_atomic_dir_creates_missing_parents(tmp_path):
    out = tmp_path / "x" / "y" / "out"
    with atomic_dir(out) as tmp:
        (tmp / "f").write_text("1", encoding="utf-8")
    assert (out / "f").exists()


def test_atomic_dir_exception_leaves_nothing(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(RuntimeError), atomic_dir(out) as tmp:
        (tmp / "partial.txt").write_text("half", encoding="utf-8")
        raise RuntimeError("boom")
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_dir_exception_keeps_the_existing_folder(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old", encoding="utf-8")
    with pytest.raises(KeyboardInterrupt), atomic_dir(out, overwrite=True) as tmp:
        (tmp / "new.txt").write_text("new", encoding="utf-8")
        raise KeyboardInterrupt
    assert sorted(p.name for p in out.iterdir()) == ["old.txt"]
    assert siblings(out) == ["out"]


def test_atomic_dir_refuses_existing_without_overwrite(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("keep", encoding="utf-8")
    with pytest.raises(ExpertlmError, match="already exists") as e, atomic_dir(out):
        pytest.fail("the block must not run")
    assert str(out) in str(e.value)
    assert (out / "keep.txt").read_text(encoding="utf-8") == "keep"
    assert siblings(out) == ["out"]


def test_atomic_dir_overwrite_replaces_the_whole_folder(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old", encoding="utf-8")
    with atomic_dir(out, overwrite=True) as tmp:
        (tmp / "new.txt").write_text("new", encoding="utf-8")
    assert sorted(p.name for p in out.iterdir()) == ["new.txt"]
    assert siblings(out) == ["out"]


def test_atomic_dir_refuses_a_file_in_the_way(tmp_path):
    out = tmp_path / "out"
    out.write_text("a file", encoding="utf-8")
    with pytest.raises(ExpertlmError, match="not a folder"), atomic_dir(out, overwrite=True):
        pytest.fail("the block must not run")
    assert out.read_text(encoding="utf-8") == "a file"


def test_write_json_round_trip_and_no_temporary_left(tmp_path):
    p = tmp_path / "m.json"
    obj = {"b": [1, 2.5, None], "a": "ünïcode", "path": tmp_path}
    write_json(p, obj)
    assert read_json(p) == {"b": [1, 2.5, None], "a": "ünïcode", "path": str(tmp_path)}
    assert "ünïcode" in p.read_text(encoding="utf-8")  # not \\u-escaped
    assert siblings(p) == ["m.json"]


def test_write_json_failure_keeps_the_old_file(tmp_path):
    p = tmp_path / "m.json"
    write_json(p, {"version": 1})
    with pytest.raises(TypeError):
        write_json(p, {"version": 2, "bad": object()})
    assert read_json(p) == {"version": 1}
    assert siblings(p) == ["m.json"]


def test_read_json_errors_name_the_file_and_line(tmp_path):
    with pytest.raises(ExpertlmError, match="no such file"):
        read_json(tmp_path / "missing.json")
    p = tmp_path / "bad.json"
    p.write_text('{\n  "a": 1,\n  "b": \n}\n', encoding="utf-8")
    with pytest.raises(ExpertlmError, match="not valid JSON") as e:
        read_json(p)
    assert f"{p}:4" in str(e.value)


ROWS = [{"id": "1", "text": "héllo\nworld", "n": 1}, {"id": "2", "text": "", "nested": {"a": [1]}}]


@pytest.mark.parametrize("name", ["d.jsonl", "d.jsonl.gz"])
def test_jsonl_round_trip(tmp_path, name):
    p = tmp_path / name
    assert write_jsonl(p, ROWS) == 2
    assert list(iter_jsonl(p)) == ROWS
    is_gzip = p.read_bytes()[:2] == b"\x1f\x8b"
    assert is_gzip == name.endswith(".gz")


def test_jsonl_writer_counts_and_iter_reports_bytes(tmp_path):
    p = tmp_path / "d.jsonl.gz"
    with JsonlWriter(p) as w:
        for i in range(100):
            w.write({"i": i})
        assert w.count == 100
    seen = []
    assert [r["i"] for r in iter_jsonl(p, on_bytes=seen.append)] == list(range(100))
    assert sum(seen) == p.stat().st_size


def test_jsonl_rows_give_line_numbers_past_blank_lines(tmp_path):
    p = tmp_path / "d.jsonl.gz"
    p.write_bytes(gzip.compress(b'{"a": 1}\n\n  \n{"a": 2}\n'))
    assert list(jsonl_rows(p)) == [(1, {"a": 1}), (4, {"a": 2})]
    q = tmp_path / "e.jsonl"
    q.write_text('{"a": 1}\n\n"text"\n', encoding="utf-8")
    with pytest.raises(ExpertlmError, match="expected a JSON object") as e:
        list(jsonl_rows(q))
    assert f"{q}:3" in str(e.value)


def test_iter_jsonl_error_names_file_and_line(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text('{"a": 1}\n\n{"a": 2\n', encoding="utf-8")
    with pytest.raises(ExpertlmError, match="not valid JSON") as e:
        list(iter_jsonl(p))
    assert f"{p}:3" in str(e.value)


def test_iter_jsonl_rejects_non_objects_and_bad_utf8(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text('{"a": 1}\n[1, 2]\n', encoding="utf-8")
    with pytest.raises(ExpertlmError, match="expected a JSON object") as e:
        list(iter_jsonl(p))
    assert f"{p}:2" in str(e.value)
    q = tmp_path / "e.jsonl.gz"
    q.write_bytes(gzip.compress(b'{"a": "\xff"}\n'))
    with pytest.raises(ExpertlmError) as e:
        list(iter_jsonl(q))
    assert f"{q}:1" in str(e.value)


def test_iter_jsonl_truncated_gzip_is_a_clear_error(tmp_path):
    p = tmp_path / "d.jsonl.gz"
    write_jsonl(p, ({"i": i, "text": f"line {i} " * 10} for i in range(3000)))
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ExpertlmError) as e:
        list(iter_jsonl(p))
    assert str(p) in str(e.value)


def test_sha256_file_equals_hashlib(tmp_path):
    p = tmp_path / "blob"
    data = bytes(range(256)) * 10_000  # 2.5 MB: more than one read chunk
    p.write_bytes(data)
    assert sha256_file(p) == hashlib.sha256(data).hexdigest()
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert sha256_file(empty) == hashlib.sha256(b"").hexdigest()
    assert sha256_text("ü") == hashlib.sha256("ü".encode()).hexdigest()


def test_written_jsonl_is_plain_json_lines(tmp_path):
    p = tmp_path / "d.jsonl.gz"
    write_jsonl(p, ROWS)
    lines = gzip.decompress(p.read_bytes()).decode("utf-8").splitlines()
    assert [json.loads(line) for line in lines] == ROWS


def test_gzip_output_does_not_depend_on_the_clock(tmp_path, monkeypatch):
    # Same documents -> same bytes -> same content hash, whenever they are written.
    paths = []
    for i, now in enumerate((1_000_000_000.0, 1_700_000_000.0)):
        monkeypatch.setattr(gzip.time, "time", lambda now=now: now)
        (tmp_path / str(i)).mkdir()
        paths.append(tmp_path / str(i) / "train.jsonl.gz")
        write_jsonl(paths[-1], ROWS)
    assert sha256_file(paths[0]) == sha256_file(paths[1])
