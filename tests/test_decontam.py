"""Decontamination: word n-gram overlap with either version of any benchmark item."""

from __future__ import annotations

import csv
import hashlib

from expertlm.corpus.decontam import Decontaminator
from expertlm.eval.benchmark import BRAINBENCH_COLUMNS

ORIGINAL = (
    "Optogenetic silencing of dorsal CA1 pyramidal neurons during retrieval reduced freezing "
    "in fear-conditioned mice, whereas silencing during encoding left later freezing intact."
)
ALTERED = (
    "Optogenetic silencing of dorsal CA1 pyramidal neurons during retrieval increased freezing "
    "in fear-conditioned mice, whereas silencing during encoding left later freezing intact."
)
OTHER_ORIGINAL = (
    "Chronic stress shortened apical dendrites of medial prefrontal neurons in adult rats and "
    "this shortening predicted slower extinction of conditioned fear across three sessions."
)
OTHER_ALTERED = OTHER_ORIGINAL.replace("shortened", "lengthened").replace("slower", "faster")

FILLER = "Unrelated opening words about the weather precede the passage here."
FILLER_END = "Trailing remarks concern nothing of interest to anyone."


def write_csv(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(BRAINBENCH_COLUMNS)
        w.writerows(rows)
    return path


def bench_files(tmp_path, write_jsonl):
    c = write_csv(
        tmp_path / "bb.csv", [["10.1/a", "Behavioral", ORIGINAL, ALTERED, "[[reduced, increased]]"]]
    )
    j = write_jsonl(
        tmp_path / "bb.jsonl",
        [{"id": "b", "section": "Cellular", "original": OTHER_ORIGINAL, "altered": OTHER_ALTERED}],
    )
    return [c, j]


def run_of(text: str, start: int, n: int) -> str:
    return " ".join(text.split()[start : start + n])


def test_thirteen_words_of_the_original_are_a_leak(tmp_path, write_jsonl):
    d = Decontaminator(bench_files(tmp_path, write_jsonl), n=13)
    doc = f"{FILLER} {run_of(ORIGINAL, 0, 13)} {FILLER_END}"
    assert d.is_contaminated(doc) is True


def test_thirteen_words_only_in_the_altered_version_are_a_leak(tmp_path, write_jsonl):
    d = Decontaminator(bench_files(tmp_path, write_jsonl), n=13)
    # Words 6..18 of the altered version contain "increased", which the original lacks.
    run = run_of(ALTERED, 6, 13)
    assert "increased" in run and run not in ORIGINAL
    assert d.is_contaminated(f"{FILLER} {run} {FILLER_END}") is True


def test_case_and_punctuation_do_not_hide_a_leak(tmp_path, write_jsonl):
    d = Decontaminator(bench_files(tmp_path, write_jsonl), n=13)
    # "fear-conditioned mice, whereas" written as "FEAR CONDITIONED MICE; WHEREAS".
    run = run_of(ORIGINAL, 10, 13)
    assert "fear-conditioned" in run
    shouted = run.upper().replace("-", " ").replace(",", ";")
    assert d.is_contaminated(f"{FILLER} ({shouted}) {FILLER_END}") is True


def test_twelve_shared_words_are_not_a_leak(tmp_path, write_jsonl):
    d = Decontaminator(bench_files(tmp_path, write_jsonl), n=13)
    doc = f"{FILLER} {run_of(ORIGINAL, 0, 12)} {FILLER_END}"
    assert d.is_contaminated(doc) is False
    assert d.is_contaminated(f"{FILLER} {run_of(OTHER_ALTERED, 3, 12)} {FILLER_END}") is False
    assert d.report()["items_leaked"] == 0


def test_report_counts_items_leaked(tmp_path, write_jsonl):
    files = bench_files(tmp_path, write_jsonl)
    d = Decontaminator(files, n=13)
    assert d.report()["items_leaked"] == 0
    assert d.is_contaminated(ORIGINAL) is True
    assert d.is_contaminated(ALTERED) is True  # the same item again
    assert d.report()["items_leaked"] == 1
    assert d.is_contaminated(run_of(OTHER_ALTERED, 10, 13)) is True
    report = d.report()
    assert report["items_leaked"] == 2
    assert report["items"] == 2
    assert report["ngram_words"] == 13
    assert [b["path"] for b in report["benchmarks"]] == [str(f) for f in files]
    assert [b["items"] for b in report["benchmarks"]] == [1, 1]
    assert report["benchmarks"][0]["sha256"] == hashlib.sha256(files[0].read_bytes()).hexdigest()


def test_ngram_length_is_configurable(tmp_path, write_jsonl):
    d = Decontaminator(bench_files(tmp_path, write_jsonl), n=5)
    assert d.is_contaminated(f"{FILLER} {run_of(OTHER_ORIGINAL, 2, 5)} {FILLER_END}") is True
    assert d.is_contaminated(f"{FILLER} {run_of(OTHER_ORIGINAL, 2, 4)} {FILLER_END}") is False


def test_documents_shorter_than_n_are_never_contaminated(tmp_path, write_jsonl):
    d = Decontaminator(bench_files(tmp_path, write_jsonl), n=13)
    assert d.is_contaminated("Optogenetic silencing") is False
    assert d.is_contaminated("") is False


def test_every_choice_and_the_context_of_an_n_way_item_are_indexed(tmp_path, write_jsonl):
    third = OTHER_ORIGINAL.replace("shortened", "thickened").replace("slower", "unchanged")
    question = (
        "In a study of chronic stress in adult rats, which finding about apical dendrites of "
        "medial prefrontal neurons was reported?"
    )
    exam = write_jsonl(
        tmp_path / "exam.jsonl",
        [{"id": "q", "question": question, "choices": [OTHER_ORIGINAL, OTHER_ALTERED, third],
          "answer": 0}],
    )  # fmt: skip
    d = Decontaminator([*bench_files(tmp_path, write_jsonl)[:1], exam], n=13)
    run = run_of(third, 0, 13)
    assert "thickened" in run and run not in OTHER_ORIGINAL and run not in OTHER_ALTERED
    assert d.is_contaminated(f"{FILLER} {run} {FILLER_END}") is True
    assert d.is_contaminated(f"{FILLER} {run_of(question, 2, 13)} {FILLER_END}") is True
    assert d.report()["items_leaked"] == 1 and d.report()["items"] == 2
