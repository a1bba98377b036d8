"""bench.read_benchmark: the BrainBench CSV as published and the JSONL form."""

from __future__ import annotations

import csv
import gzip
import io

import pytest

from expertlm.errors import ExpertlmError
from expertlm.eval.benchmark import BRAINBENCH_COLUMNS, Item, read_benchmark

ITEMS = [
    Item.pair(
        "10.1523/JNEUROSCI.0001-23.2023",
        "Neurobiology of Disease",
        "Knockout increased firing, as expected.",
        "Knockout decreased firing, as expected.",
    ),
    Item.pair(
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
    c = brainbench_csv(tmp_path / "bb.csv", [Item.pair("", "", "up", "down")])
    assert read_benchmark(c)[0].id == "row1"
    j = write_jsonl(tmp_path / "bb.jsonl", ["", {"original": "up", "altered": "down"}])
    assert read_benchmark(j)[0] == Item.pair("line2", "", "up", "down")


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
    same = Item.pair("10.1/same", "S", "identical text", "identical text")
    p = brainbench_csv(tmp_path / "bb.csv", [ITEMS[0], same])
    with pytest.raises(ExpertlmError, match="identical") as e:
        read_benchmark(p)
    assert f"{p}:3" in str(e.value) and "10.1/same" in str(e.value)


def test_jsonl_identical_versions_names_the_line(tmp_path, write_jsonl):
    rows = bench_jsonl_rows([ITEMS[0], ITEMS[1], Item.pair("dup", "S", "same", "same")])
    p = write_jsonl(tmp_path / "bb.jsonl", rows)
    with pytest.raises(ExpertlmError, match="identical") as e:
        read_benchmark(p)
    assert f"{p}:3" in str(e.value) and "dup" in str(e.value)


def test_empty_version_is_an_error(tmp_path):
    p = brainbench_csv(tmp_path / "bb.csv", [Item.pair("e", "S", "text", "  ")])
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
        Item.pair("1", "S", "rose\x85 then fell", "fell\x85 then rose"),
        Item.pair("2", "S", "a\u2028b", "c\x0cd"),
    ]
    p = tmp_path / "bb.csv"
    p.write_text(
        ",".join(BRAINBENCH_COLUMNS)
        + '\n1,S,rose\x85 then fell,fell\x85 then rose,x\n2,S,"a\u2028b",c\x0cd,y\n',
        encoding="utf-8",
    )
    assert read_benchmark(p) == items


# --- N-way items ------------------------------------------------------------------------------

EXAM = [
    {"id": "q1", "section": "Pharmacology", "question": "Which drug blocks NMDA receptors?",
     "choices": ["Ketamine", "Diazepam", "Fluoxetine", "Haloperidol"], "answer": 0},
    {"id": "q2", "choices": ["sodium", "potassium", "chloride"], "answer": 2,
     "context": "The resting potential is closest to the reversal potential of"},
]  # fmt: skip


def test_reads_n_way_jsonl_alongside_pairs(tmp_path, write_jsonl):
    p = write_jsonl(tmp_path / "exam.jsonl", [*EXAM, bench_jsonl_rows(ITEMS)[0]])
    b = load_benchmark(p)
    assert b.items == [
        Item("q1", "Pharmacology", ("Ketamine", "Diazepam", "Fluoxetine", "Haloperidol"), 0,
             "Which drug blocks NMDA receptors?"),
        Item("q2", "", ("sodium", "potassium", "chloride"), 2,
             "The resting potential is closest to the reversal potential of"),
        ITEMS[0],
    ]  # fmt: skip
    assert [i.row for i in b.items] == [1, 2, 3]
    assert b.report()["n_choices"] == {"2": 1, "3": 1, "4": 1}
    assert [i.is_pair for i in b.items] == [False, False, True]
    assert b.items[2].original == ITEMS[0].original and b.items[2].altered == ITEMS[0].altered


def test_original_and_altered_are_only_for_pairs():
    item = Item.pair("x", "S", "up", "down")
    assert item.choices == ("up", "down") and item.answer == 0 and item.context == ""
    for other in (Item("y", "S", ("a", "b", "c")), Item("z", "S", ("a", "b"), answer=1)):
        with pytest.raises(ValueError, match="not an"):
            other.original  # noqa: B018
        with pytest.raises(ValueError, match="not an"):
            other.altered  # noqa: B018


@pytest.mark.parametrize(
    ("row", "message"),
    [({"choices": ["a", "b", "c"], "answer": 3}, "field answer: expected the index of the right "
      "choice, 0 to 2, or its letter, A to C (got 3)"),
     ({"choices": ["a", "b"], "answer": -1}, "0 to 1, or its letter, A to B (got -1)"),
     ({"choices": ["a", "b"], "answer": "C"}, "(got 'C')"),
     ({"choices": ["a", "b"], "answer": "1"}, "(got '1')"),
     ({"choices": ["a", "b"], "answer": True}, "(got True)"),
     ({"choices": ["a", "b"]}, "(got None)"),
     ({"choices": ["only"], "answer": 0}, "field choices: 1 choice(s), an item needs two or more"),
     ({"choices": "a, b", "answer": 0}, "field choices: expected a list of texts"),
     ({"choices": ["a", 2], "answer": 0}, "field choices: expected a list of texts"),
     ({"choices": ["a", "b"], "answer": 0, "question": 7}, "field context (or question)"),
     ({"id": "d", "choices": ["a", "b", "a"], "answer": 1}, "row 2 (d): choices 0 and 2 are "
      "identical"),
     ({"id": "e", "choices": ["a", " ", "c"], "answer": 0}, "row 2 (e): item has an empty choice")],
)  # fmt: skip
def test_bad_n_way_rows_are_one_line_errors_naming_the_line(tmp_path, write_jsonl, row, message):
    p = write_jsonl(tmp_path / "exam.jsonl", [EXAM[0], row])
    with pytest.raises(ExpertlmError) as e:
        read_benchmark(p)
    msg = str(e.value)
    assert msg.startswith(f"{p}:2: ") and message in msg and "\n" not in msg, msg


# --- markers, repair, templates, isolated sentences -----------------------------------------

from expertlm.eval.benchmark import (  # noqa: E402
    TEMPLATES,
    MarkerError,
    apply_template,
    derive_versions,
    isolated_items,
    load_benchmark,
    parse_markers,
    resolve_template,
    split_sentences,
)


def marked_csv(path, rows):
    """rows: (doi, original, altered, combined)"""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(BRAINBENCH_COLUMNS)
    for doi, o, a, c in rows:
        w.writerow([doi, "Systems/Circuits", o, a, c])
    path.write_text(buf.getvalue(), encoding="utf-8")
    return path


GOOD = (
    "10.1/good",
    "Firing increased in mice.",
    "Firing decreased in mice.",
    "Firing [[increased, decreased]] in mice.",
)
# the published mistake: a comma inside an alternative, columns made by a naive split on ","
NAIVE = (
    "10.1/naive",
    "Lesions impaired memory.",
    "Lesions  memory.",
    "Lesions [[impaired, spared, enhanced]] memory.",
)
# ambiguous markers, but the columns pick exactly one reading
RESOLVED = (
    "10.1/resolved",
    "Cells were fast, strong and small.",
    "Cells were slow, weak and small.",
    "Cells were [[fast, strong, slow, weak]] and small.",
)
MALFORMED = ("10.1/malformed", "Rates rose.", "Rates fell.", "Rates [[rose, fell.")
NO_COMMA = ("10.1/nocomma", "Counts rose.", "Counts fell.", "Counts [[rose fell]].")
MISMATCH = (
    "10.1/mismatch",
    "Spikes increased.",
    "Spikes decreased!",
    "Spikes [[increased, decreased]].",
)


def test_parse_markers_readings_and_errors():
    assert parse_markers("a [[x, y]] b") == ["a ", (("x", "y"),), " b"]
    assert derive_versions("A [[up, down]] and [[more, less]].") == (
        "A up and more.",
        "A down and less.",
    )
    assert len(parse_markers("[[a, b, c, d]]")[1]) == 3  # three places to split
    with pytest.raises(MarkerError, match="not closed"):
        parse_markers("a [[x, y b")
    with pytest.raises(MarkerError, match="not closed"):
        parse_markers("a [[x, [[y, z]] b")
    with pytest.raises(MarkerError, match="without"):
        parse_markers("a x, y]] b")
    with pytest.raises(MarkerError, match="no comma"):
        parse_markers("a [[x]] b")
    with pytest.raises(MarkerError, match="comma inside"):
        derive_versions("[[a, b, c]]")


def test_default_uses_the_columns_and_reports_each_bad_row(tmp_path):
    p = marked_csv(tmp_path / "bb.csv", [GOOD, NAIVE, RESOLVED, MALFORMED, NO_COMMA, MISMATCH])
    b = load_benchmark(p)
    assert [i.id for i in b.items] == [
        "10.1/good",
        "10.1/naive",
        "10.1/resolved",
        "10.1/malformed",
        "10.1/nocomma",
        "10.1/mismatch",
    ]
    assert b.items[1].altered == "Lesions  memory."  # the columns, as published
    found = {(pr.row, pr.kind) for pr in b.problems}
    assert found == {
        (2, "ambiguous"),
        (3, "ambiguous"),
        (4, "malformed"),
        (5, "malformed"),
        (6, "mismatch"),
    }
    naive = next(pr for pr in b.problems if pr.row == 2)
    assert "match none of 2 readings" in naive.detail and naive.message().startswith(
        f"{p}:3: row 2 (10.1/naive)"
    )
    assert b.report()["marker_problems"] == {"malformed": 2, "ambiguous": 2, "mismatch": 1}
    assert b.checked == 6 and b.repaired == 0 and b.dropped == 0


def test_repair_rederives_where_unambiguous_and_drops_the_rest(tmp_path):
    p = marked_csv(tmp_path / "bb.csv", [GOOD, NAIVE, RESOLVED, MALFORMED, NO_COMMA, MISMATCH])
    b = load_benchmark(p, repair=True)
    assert [i.id for i in b.items] == ["10.1/good", "10.1/resolved", "10.1/mismatch"]
    assert b.items[2].altered == "Spikes decreased."  # re-derived from the markers
    assert b.items[1].original == RESOLVED[1]  # the columns' reading, the only consistent one
    assert (b.repaired, b.dropped) == (1, 3)
    actions = {pr.row: pr.action for pr in b.problems}
    assert actions[2] == actions[4] == actions[5] == "dropped"
    assert actions[6] == "repaired from the markers"


def test_repair_of_identical_versions_is_an_error_naming_the_row(tmp_path):
    p = marked_csv(tmp_path / "bb.csv", [GOOD, ("10.1/same", "Up.", "Down.", "[[Up., Up.]]")])
    with pytest.raises(ExpertlmError, match=r"bb.csv:3: row 2 \(10.1/same\): identical"):
        load_benchmark(p, repair=True)
    with pytest.raises(ExpertlmError, match="no items"):
        load_benchmark(marked_csv(tmp_path / "bad.csv", [MALFORMED]), repair=True)


def test_templates():
    assert resolve_template("none") == "{abstract}"
    assert resolve_template("neuro").startswith("You are a neuroscientist with deep knowledge")
    assert resolve_template("Abstract: {abstract}\n") == "Abstract: {abstract}\n"
    for bad in ("no placeholder", "{abstract} and {abstract}"):
        with pytest.raises(ExpertlmError, match="--template"):
            resolve_template(bad)
    text, start = apply_template(TEMPLATES["neuro"], "Mice slept.")
    assert text.endswith("publication: Mice slept.") and text[start:] == "Mice slept."
    # the whole prompt is stripped, as published
    assert apply_template("  {abstract}  ", " x ") == ("x", 0)
    assert apply_template("Q: {abstract}", "{not a field}") == ("Q: {not a field}", 3)


def test_split_sentences_keeps_abbreviations_and_initials():
    text = (
        "Smith et al. found it (Fig. 2). A. B. Jones, e.g. in rats, agreed. Then 5 mice died! Why?"
    )
    assert split_sentences(text) == [
        "Smith et al. found it (Fig. 2).",
        "A. B. Jones, e.g. in rats, agreed.",
        "Then 5 mice died!",
        "Why?",
    ]


def test_isolated_sentences_from_markers_and_from_a_diff():
    combined = "We studied mice. Knockout [[increased, decreased]] firing. Fig. 2 shows it. Lesions [[impaired, enhanced]] memory."
    o, a = derive_versions(combined)
    from_markers = isolated_items([Item.pair("x", "S", o, a, combined)])
    assert [(i.id, i.parent, i.original, i.altered) for i in from_markers] == [
        ("x#s1", "x", "Knockout increased firing.", "Knockout decreased firing."),
        ("x#s2", "x", "Lesions impaired memory.", "Lesions enhanced memory."),
    ]
    from_diff = isolated_items([Item.pair("x", "S", o, a)])  # JSONL: no markers
    assert [(i.original, i.altered) for i in from_diff] == [
        (i.original, i.altered) for i in from_markers
    ]
    # a change whose alternatives hold ". " stays in one sentence; a diff finds two changes
    combined = "It [[rose. Then fell, fell. Then rose]]. End."
    o, a = derive_versions(combined)
    tricky = isolated_items([Item.pair("y", "S", o, a, combined)])
    assert [(i.original, i.altered) for i in tricky] == [
        ("It rose. Then fell.", "It fell. Then rose.")
    ]
    split = isolated_items([Item.pair("y", "S", o, a)])
    assert [(i.original, i.altered) for i in split] == [
        ("It rose.", "It fell."),
        ("Then fell.", "Then rose."),
    ]
