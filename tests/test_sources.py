"""Source readers: every supported format, the field mapping, folders, and bad input."""

from __future__ import annotations

import csv
import gzip
import json
import zlib
from collections import Counter
from pathlib import Path

import pytest

from expertlm.config import CorpusConfig
from expertlm.corpus.sources import expand_sources, parse_year, read_sources
from expertlm.errors import ExpertlmError


def read(paths, **options):
    """(docs, stats) of reading `paths` with CorpusConfig `options`."""
    stats: Counter = Counter()
    files = expand_sources([Path(p) for p in paths])
    return list(read_sources(files, CorpusConfig(**options), stats)), stats


def summary(docs):
    return [(d.text, d.id, d.year) for d in docs]


def write_csv(path: Path, rows: list[list], delimiter: str = ",") -> Path:
    lines: list[str] = []

    class _Sink:
        def write(self, s):
            lines.append(s)

    csv.writer(_Sink(), delimiter=delimiter, lineterminator="\n").writerows(rows)
    data = "".join(lines).encode("utf-8")
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


ROWS = [
    {"id": "a", "text": "first text", "year": 2015},
    {"id": "b", "text": "second text", "year": "2016-03-01"},
    {"id": "c", "text": "third text"},
]
EXPECTED = [("first text", "a", 2015), ("second text", "b", 2016), ("third text", "c", None)]


# --- formats ---------------------------------------------------------------------------------


def test_txt_is_one_document_per_file_with_the_path_as_id(tmp_path):
    p = tmp_path / "paper.txt"
    p.write_text("line one\nline two\n", encoding="utf-8")
    docs, _ = read([p])
    assert summary(docs) == [("line one\nline two\n", "paper.txt", None)]
    assert docs[0].source == str(p)


def test_txt_id_is_relative_to_the_source_folder_however_it_is_written(tmp_path, monkeypatch):
    (tmp_path / "papers" / "sub").mkdir(parents=True)
    (tmp_path / "papers" / "sub" / "x.txt").write_text("text", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    ids = []
    for root in ("papers", "./papers", str(tmp_path / "papers")):
        files = expand_sources([root])
        docs = list(read_sources(files, CorpusConfig(), Counter(), roots=(Path(root),)))
        ids.append([d.id for d in docs])
    assert ids == [["papers/sub/x.txt"]] * 3


def test_folder_expansion_skips_hidden_folders_and_the_excluded_output(tmp_path):
    (tmp_path / "src" / ".git").mkdir(parents=True)
    (tmp_path / "src" / ".git" / "a.txt").write_text("git", encoding="utf-8")
    (tmp_path / "src" / "corpus").mkdir()
    (tmp_path / "src" / "corpus" / "train.jsonl").write_text("{}", encoding="utf-8")
    (tmp_path / "src" / "paper.txt").write_text("paper", encoding="utf-8")
    files = expand_sources([tmp_path / "src"], exclude=tmp_path / "src" / "corpus")
    assert files == [tmp_path / "src" / "paper.txt"]


@pytest.mark.parametrize("name", ["docs.jsonl", "docs.jsonl.gz"])
def test_jsonl_plain_and_gzip(tmp_path, write_jsonl, name):
    p = write_jsonl(tmp_path / name, ROWS)
    docs, _ = read([p])
    assert summary(docs) == EXPECTED
    assert [d.source for d in docs] == [f"{p}:1", f"{p}:2", f"{p}:3"]


def test_jsonl_skips_blank_lines_and_keeps_physical_line_numbers(tmp_path, write_jsonl):
    p = write_jsonl(tmp_path / "d.jsonl", [ROWS[0], "", "   ", ROWS[1]])
    docs, _ = read([p])
    assert [d.source for d in docs] == [f"{p}:1", f"{p}:4"]


def test_json_list_and_single_object(tmp_path):
    many = tmp_path / "many.json"
    many.write_text(json.dumps(ROWS), encoding="utf-8")
    one = tmp_path / "one.json"
    one.write_text(json.dumps({"text": "only", "id": 7, "year": 1999}), encoding="utf-8")
    docs, _ = read([many, one])
    assert summary(docs) == [*EXPECTED, ("only", "7", 1999)]


@pytest.mark.parametrize(
    ("name", "delimiter"), [("d.csv", ","), ("d.tsv", "\t"), ("d.csv.gz", ","), ("d.tsv.gz", "\t")]
)
def test_csv_and_tsv(tmp_path, name, delimiter):
    p = write_csv(
        tmp_path / name,
        [
            ["id", "text", "year"],
            ["a", "first text", "2015"],
            ["b", "second text", "2016-03-01"],
            ["c", "third text", ""],
        ],
        delimiter,
    )
    docs, _ = read([p])
    assert summary(docs) == EXPECTED
    assert [d.source for d in docs] == [f"{p}:2", f"{p}:3", f"{p}:4"]


def test_csv_quoted_multiline_field_reports_the_line_it_starts_on(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text('id,text\na,"two\nlines"\nb,after\n', encoding="utf-8")
    docs, _ = read([p])
    assert summary(docs) == [("two\nlines", "a", None), ("after", "b", None)]
    assert [d.source for d in docs] == [f"{p}:2", f"{p}:4"]


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("bom.csv", "text,id\nhello,x\n"),
        ("bom.jsonl", '{"text": "hello", "id": "x"}\n'),
        ("bom.json", '[{"text": "hello", "id": "x"}]'),
    ],
)
def test_utf8_byte_order_mark_is_not_data(tmp_path, name, content):
    p = tmp_path / name
    p.write_bytes(b"\xef\xbb\xbf" + content.encode())  # as Excel and Notepad save files
    docs, _ = read([p])
    assert summary(docs) == [("hello", "x", None)]


def test_parquet(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    table = pa.table(
        {
            "body": ["first text", "second text"],
            "pmid": [11, 12],
            "year": [2015, None],
            "journal": ["J1", "J2"],
            "unused": [1.0, 2.0],
        }
    )
    p = tmp_path / "d.parquet"
    pq.write_table(table, p)
    docs, _ = read([p], text_field="body", id_field="pmid", keep_fields=["journal"])
    assert summary(docs) == [("first text", "11", 2015), ("second text", "12", None)]
    assert [d.extra for d in docs] == [{"journal": "J1"}, {"journal": "J2"}]
    assert docs[1].source == f"{p}[row 2]"


def test_parquet_missing_text_column_names_the_columns(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    p = tmp_path / "d.parquet"
    pq.write_table(pa.table({"abstract": ["x"], "pmid": [1]}), p)
    with pytest.raises(ExpertlmError) as e:
        read([p])
    assert str(p) in str(e.value) and "abstract" in str(e.value) and "pmid" in str(e.value)


def test_configurable_fields_including_dotted_nested_field(tmp_path, write_jsonl):
    p = write_jsonl(
        tmp_path / "d.jsonl",
        [
            {"pmid": 1, "abstract": "x", "meta": {"year": 2011, "journal": "J"}},
            {"pmid": 2, "abstract": "y", "meta": {"month": 3}},
            {"pmid": 3, "abstract": "z", "meta": "not an object"},
        ],
    )
    docs, _ = read(
        [p],
        text_field="abstract",
        id_field="pmid",
        year_field="meta.year",
        keep_fields=["meta.journal"],
    )
    assert summary(docs) == [("x", "1", 2011), ("y", "2", None), ("z", "3", None)]
    assert [d.extra for d in docs] == [{"meta.journal": "J"}, {}, {}]


def test_a_literal_dotted_key_wins_over_the_nested_path(tmp_path, write_jsonl):
    p = write_jsonl(
        tmp_path / "d.jsonl", [{"text": "t", "meta.year": 2001, "meta": {"year": 2002}}]
    )
    docs, _ = read([p], year_field="meta.year")
    assert docs[0].year == 2001


def test_empty_or_missing_id_is_none(tmp_path, write_jsonl):
    p = write_jsonl(
        tmp_path / "d.jsonl", [{"text": "t", "id": ""}, {"text": "u"}, {"text": "v", "id": 0}]
    )
    docs, _ = read([p])
    assert [d.id for d in docs] == [None, None, "0"]


@pytest.mark.parametrize(
    ("value", "year"),
    [
        (2015, 2015),
        ("2015", 2015),
        ("2015-03-01", 2015),
        (" 2015 Mar", 2015),
        (2015.0, 2015),
        (2015.5, None),
        ("n.d.", None),
        ("", None),
        ("15", None),
        (None, None),
        (True, None),
        (False, None),
        ([2015], None),
    ],
)
def test_parse_year(value, year):
    assert parse_year(value) == year


# --- folders and paths -----------------------------------------------------------------------


def test_folder_recursion_is_sorted_and_skips_unsupported_and_hidden_files(tmp_path, write_jsonl):
    root = tmp_path / "src"
    (root / "b").mkdir(parents=True)
    (root / "a").mkdir()
    (root / "b" / "z.txt").write_text("bz", encoding="utf-8")
    (root / "a" / "y.txt").write_text("ay", encoding="utf-8")
    (root / "c.TXT").write_text("c", encoding="utf-8")
    write_jsonl(root / "a" / "x.jsonl", [{"text": "ax"}])
    (root / "notes.md").write_text("skip me", encoding="utf-8")
    (root / "data.bin").write_bytes(b"\x00\x01")
    (root / ".hidden.txt").write_text("hidden", encoding="utf-8")
    files = expand_sources([root])
    assert files == [
        root / "a" / "x.jsonl",
        root / "a" / "y.txt",
        root / "b" / "z.txt",
        root / "c.TXT",
    ]
    docs, _ = read([root])
    assert [d.text for d in docs] == ["ax", "ay", "bz", "c"]


def test_files_and_folders_keep_the_order_given(tmp_path):
    (tmp_path / "z.txt").write_text("z", encoding="utf-8")
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "a.txt").write_text("a", encoding="utf-8")
    assert expand_sources([tmp_path / "z.txt", tmp_path / "dir"]) == [
        tmp_path / "z.txt",
        tmp_path / "dir" / "a.txt",
    ]


def test_missing_path(tmp_path):
    p = tmp_path / "nope.jsonl"
    with pytest.raises(ExpertlmError, match="no such file or folder") as e:
        expand_sources([p])
    assert str(p) in str(e.value)


def test_unsupported_file_type(tmp_path):
    p = tmp_path / "paper.pdf"
    p.write_bytes(b"%PDF")
    with pytest.raises(ExpertlmError, match="unsupported file type") as e:
        expand_sources([p])
    assert str(p) in str(e.value) and ".jsonl" in str(e.value)


def test_empty_folder(tmp_path):
    d = tmp_path / "empty"
    d.mkdir()
    (d / "readme.md").write_text("no corpus here", encoding="utf-8")
    with pytest.raises(ExpertlmError, match="no supported files") as e:
        expand_sources([d])
    assert str(d) in str(e.value)


def test_no_source_at_all():
    with pytest.raises(ExpertlmError, match="no source"):
        expand_sources([])


# --- bad input: each error names the file and the line ------------------------------------------


def test_jsonl_line_that_is_not_json(tmp_path, write_jsonl):
    p = write_jsonl(tmp_path / "d.jsonl", [ROWS[0], ROWS[1], '{"text": "unterminated'])
    with pytest.raises(ExpertlmError, match="not valid JSON") as e:
        read([p])
    assert f"{p}:3" in str(e.value)


def test_jsonl_line_that_is_not_an_object(tmp_path, write_jsonl):
    p = write_jsonl(tmp_path / "d.jsonl", [ROWS[0], "[1, 2]"])
    with pytest.raises(ExpertlmError, match="expected a JSON object") as e:
        read([p])
    assert f"{p}:2" in str(e.value)


@pytest.mark.parametrize("name", ["d.jsonl", "d.jsonl.gz"])
def test_non_utf8_bytes_in_jsonl(tmp_path, name):
    data = b'{"text": "ok"}\n{"text": "caf\xe9"}\n'
    p = tmp_path / name
    p.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    with pytest.raises(ExpertlmError, match="not valid UTF-8") as e:
        read([p])
    assert f"{p}:2" in str(e.value) and "0xe9" in str(e.value)


def test_non_utf8_bytes_in_txt(tmp_path):
    p = tmp_path / "latin1.txt"
    p.write_bytes(b"first line\nsecond line\nna\xefve\n")
    with pytest.raises(ExpertlmError, match="not valid UTF-8") as e:
        read([p])
    assert f"{p}:3" in str(e.value)


def test_non_utf8_bytes_in_csv(tmp_path):
    p = tmp_path / "d.csv"
    p.write_bytes(b"id,text\na,fine\nb,caf\xe9\n")
    with pytest.raises(ExpertlmError, match="not valid UTF-8") as e:
        read([p])
    assert f"{p}:3" in str(e.value)


def test_missing_text_field_lists_the_available_fields(tmp_path, write_jsonl):
    p = write_jsonl(tmp_path / "d.jsonl", [ROWS[0], {"id": "x", "abstract": "t", "title": "T"}])
    with pytest.raises(ExpertlmError) as e:
        read([p])
    msg = str(e.value)
    assert f"{p}:2" in msg and "'text'" in msg
    assert "id" in msg and "abstract" in msg and "title" in msg


def test_text_field_that_is_not_a_string(tmp_path, write_jsonl):
    p = write_jsonl(tmp_path / "d.jsonl", [{"text": ["a", "list"]}])
    with pytest.raises(ExpertlmError, match="not a string") as e:
        read([p])
    assert f"{p}:1" in str(e.value) and "list" in str(e.value)


def test_json_list_element_errors_name_the_element(tmp_path):
    p = tmp_path / "d.json"
    p.write_text(json.dumps([{"text": "ok"}, {"body": "no text"}]), encoding="utf-8")
    with pytest.raises(ExpertlmError) as e:
        read([p])
    assert f"{p}[1]" in str(e.value) and "body" in str(e.value)


def test_json_syntax_error_names_file_and_line(tmp_path):
    p = tmp_path / "d.json"
    p.write_text('[\n{"text": "ok"},\n{"text": oops}\n]', encoding="utf-8")
    with pytest.raises(ExpertlmError, match="not valid JSON") as e:
        read([p])
    assert f"{p}:3" in str(e.value)


def test_csv_missing_text_column_names_the_columns(tmp_path):
    p = write_csv(tmp_path / "d.csv", [["pmid", "abstract"], ["1", "x"]])
    with pytest.raises(ExpertlmError) as e:
        read([p])
    msg = str(e.value)
    assert str(p) in msg and "'text'" in msg and "pmid, abstract" in msg


def test_csv_row_with_wrong_field_count(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("id,text,year\na,fine,2015\nb,too,many,fields\n", encoding="utf-8")
    with pytest.raises(ExpertlmError) as e:
        read([p])
    msg = str(e.value)
    assert f"{p}:3" in msg and "4 fields" in msg and "3" in msg


def test_skip_bad_counts_and_continues(tmp_path, write_jsonl):
    j = write_jsonl(
        tmp_path / "a.jsonl",
        [ROWS[0], "not json", {"body": "no text field"}, {"text": 5}, "[1]", ROWS[1]],
    )
    c = tmp_path / "b.csv"
    c.write_bytes(b"id,text\nx,ok csv\ny,too,many\nz,caf\xe9\nw,last\n")
    docs, stats = read([j, c], skip_bad=True)
    assert [d.text for d in docs] == ["first text", "second text", "ok csv", "last"]
    assert stats["bad_record"] == 6


def _gzip_jsonl_bytes(n: int = 2000) -> bytes:
    rows = "".join(
        json.dumps({"id": i, "text": f"document number {i} " * 20}) + "\n" for i in range(n)
    )
    return gzip.compress(rows.encode())


def test_truncated_gzip_is_a_clear_error(tmp_path):
    gz = _gzip_jsonl_bytes()
    p = tmp_path / "cut.jsonl.gz"
    p.write_bytes(gz[: len(gz) // 2])
    with pytest.raises(ExpertlmError, match="cannot be decompressed") as e:
        read([p])
    assert str(p) in str(e.value)


def test_corrupt_gzip_is_a_clear_error(tmp_path):
    gz = bytearray(_gzip_jsonl_bytes())
    for i in range(200, 260):  # damage the deflate stream itself
        gz[i] ^= 0x55
    p = tmp_path / "bad.jsonl.gz"
    p.write_bytes(bytes(gz))
    with pytest.raises(ExpertlmError) as e:
        read([p])
    assert str(p) in str(e.value)
    assert not isinstance(e.value.__cause__, zlib.error)


def test_truncated_gzip_csv_is_a_clear_error(tmp_path):
    rows = "id,text\n" + "".join(f"{i},row number {i} of many\n" for i in range(3000))
    gz = gzip.compress(rows.encode())
    p = tmp_path / "cut.csv.gz"
    p.write_bytes(gz[: len(gz) // 2])
    with pytest.raises(ExpertlmError, match="cannot be decompressed") as e:
        read([p])
    assert str(p) in str(e.value)


def test_skip_bad_warnings_name_the_right_lines(tmp_path, monkeypatch):
    import expertlm.corpus.sources as sources

    warnings: list[str] = []
    monkeypatch.setattr(sources, "warn", warnings.append)
    c = tmp_path / "b.csv"
    c.write_bytes(b'id,text\nx,ok\nz,caf\xe9\ny,too,many\nw,"two\nlines",extra\nv,fine\n')
    docs, stats = read([c], skip_bad=True)
    assert [d.text for d in docs] == ["ok", "fine"]
    assert stats["bad_record"] == 3
    assert [w.split(": ")[1] for w in warnings] == [f"{c}:3", f"{c}:4", f"{c}:5"]
