"""bench.read_benchmark: the BrainBench CSV as published and the JSONL form."""

from __future__ import annotations

import csv
import gzip
import io

import pytest

from expertlm.bench import BRAINBENCH_COLUMNS, BenchItem, read_benchmark
from expertlm.errors import ExpertlmError

ITEMS = [
    BenchItem(
        "10.1523/JNEUROSCI.0001-23.2023",
        "Neurobiology of Disease",
        "Knockout increased firing, as expected.",
        "Knockout decreased firing, as expected.",
    ),
    BenchItem(
        "10.1523/JNEUROSCI.0002-23.2023",
        "Systems/Circuits",
        'Lesions "impaired" memory,\nacross two sessions.',
        'Lesions "enhanced" memory,\nacross two sessions.',
    ),
]


def brainbench_csv(path, items, columns=BRAINBENCH_COLUMNS):
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for it in items:
        row = {
            "doi": it.id,
            "journal_section": it.section,
            "original_abstract": it.original,
            "incorrect_abstract": it.altered,
            "combined_abstract": "[[...]]",
        }
        w.writerow([row[c] for c in columns])
    path.write_text(buf.getvalue(), encoding="utf-8")
    return path


def bench_jsonl_rows(items):
    return [
        {"id": i.id, "section": i.section, "original": i.original, "altered": i.altered}
        for i in items
    ]


def test_reads_brainbench_csv(tmp_path):
    p = brainbench_csv(tmp_path / "bb.csv", ITEMS)
    assert read_benchmark(p) == ITEMS


def test_reads_brainbench_csv_with_bom_and_crlf(tmp_path):
    p = brainbench_csv(tmp_path / "bb.csv", ITEMS)
    p.write_bytes(b"\xef\xbb\xbf" + p.read_bytes().replace(b"\n", b"\r\n"))
    items = read_benchmark(p)
    assert [i.id for i in items] == [i.id for i in ITEMS]
    assert items[0] == ITEMS[0]


@pytest.mark.parametrize("name", ["bb.jsonl", "bb.jsonl.gz"])
def test_reads_jsonl(tmp_path, write_jsonl, name):
    p = write_jsonl(tmp_path / name, bench_jsonl_rows(ITEMS))
    assert read_benchmark(p) == ITEMS


def test_ids_default_to_row_and_line(tmp_path, write_jsonl):
    c = brainbench_csv(tmp_path / "bb.csv", [BenchItem("", "", "up", "down")])
    assert read_benchmark(c)[0].id == "row1"
    j = write_jsonl(tmp_path / "bb.jsonl", ["", {"original": "up", "altered": "down"}])
    assert read_benchmark(j)[0] == BenchItem("line2", "", "up", "down")


def test_csv_missing_columns_names_the_file_and_columns(tmp_path):
    p = tmp_path / "bb.csv"
    p.write_text("doi,journal_section,original_abstract\n1,S,text\n", encoding="utf-8")
    with pytest.raises(ExpertlmError) as e:
        read_benchmark(p)
    msg = str(e.value)
    assert str(p) in msg and "incorrect_abstract" in msg and "original_abstract" in msg


def test_jsonl_missing_field_names_file_and_line(tmp_path, write_jsonl):
    p = write_jsonl(tmp_path / "bb.jsonl", [*bench_jsonl_rows(ITEMS), {"id": "x", "original": "o"}])
    with pytest.raises(ExpertlmError, match="altered") as e:
        read_benchmark(p)
    assert f"{p}:3" in str(e.value)


def test_csv_identical_versions_names_the_row(tmp_path):
    same = BenchItem("10.1/same", "S", "identical text", "identical text")
    p = brainbench_csv(tmp_path / "bb.csv", [ITEMS[0], same])
    with pytest.raises(ExpertlmError, match="identical") as e:
        read_benchmark(p)
    assert f"{p}:3" in str(e.value) and "10.1/same" in str(e.value)


def test_jsonl_identical_versions_names_the_line(tmp_path, write_jsonl):
    rows = bench_jsonl_rows([ITEMS[0], ITEMS[1], BenchItem("dup", "S", "same", "same")])
    p = write_jsonl(tmp_path / "bb.jsonl", rows)
    with pytest.raises(ExpertlmError, match="identical") as e:
        read_benchmark(p)
    assert f"{p}:3" in str(e.value) and "dup" in str(e.value)


def test_empty_version_is_an_error(tmp_path):
    p = brainbench_csv(tmp_path / "bb.csv", [BenchItem("e", "S", "text", "  ")])
    with pytest.raises(ExpertlmError, match="empty version") as e:
        read_benchmark(p)
    assert f"{p}:2" in str(e.value)


def test_jsonl_bad_line_names_file_and_line(tmp_path, write_jsonl):
    p = write_jsonl(tmp_path / "bb.jsonl", [bench_jsonl_rows(ITEMS)[0], "{oops"])
    with pytest.raises(ExpertlmError, match="not valid JSON") as e:
        read_benchmark(p)
    assert f"{p}:2" in str(e.value)


def test_truncated_gzip_benchmark_is_a_clear_error(tmp_path):
    rows = "".join(
        f'{{"id": "{i}", "original": "up {i} " , "altered": "down {i}"}}\n' for i in range(5000)
    )
    gz = gzip.compress(rows.encode())
    p = tmp_path / "bb.jsonl.gz"
    p.write_bytes(gz[: len(gz) // 2])
    with pytest.raises(ExpertlmError) as e:
        read_benchmark(p)
    assert str(p) in str(e.value)


def test_missing_file_empty_benchmark_and_unknown_format(tmp_path):
    with pytest.raises(ExpertlmError, match="no such benchmark file"):
        read_benchmark(tmp_path / "nope.csv")
    empty = tmp_path / "empty.csv"
    empty.write_text(",".join(BRAINBENCH_COLUMNS) + "\n", encoding="utf-8")
    with pytest.raises(ExpertlmError, match="no items") as e:
        read_benchmark(empty)
    assert str(empty) in str(e.value)
    other = tmp_path / "bb.xlsx"
    other.write_bytes(b"PK")
    with pytest.raises(ExpertlmError, match="unknown benchmark format"):
        read_benchmark(other)


def test_csv_fields_may_hold_unicode_line_separators(tmp_path):
    # U+0085 (NEL, e.g. a mis-decoded cp1252 ellipsis), U+2028 and form feed are not CSV
    # line ends, quoted or not.
    items = [
        BenchItem("1", "S", "rose\x85 then fell", "fell\x85 then rose"),
        BenchItem("2", "S", "a\u2028b", "c\x0cd"),
    ]
    p = tmp_path / "bb.csv"
    p.write_text(
        ",".join(BRAINBENCH_COLUMNS)
        + '\n1,S,rose\x85 then fell,fell\x85 then rose,x\n2,S,"a\u2028b",c\x0cd,y\n',
        encoding="utf-8",
    )
    assert read_benchmark(p) == items
