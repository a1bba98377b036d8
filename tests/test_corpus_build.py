"""corpus_build: filters and their counts, the split, the output folder's life cycle."""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import random
from pathlib import Path

import pytest

from expertlm.corpus.build import corpus_build
from expertlm.corpus.clean import clean_text
from expertlm.corpus.docs import corpus_hash, iter_docs, read_manifest
from expertlm.errors import ExpertlmError
from expertlm.eval.benchmark import BRAINBENCH_COLUMNS

REMOVALS = {
    "bad_record",
    "empty",
    "too_short",
    "no_year",
    "before_min_year",
    "after_max_year",
    "contaminated",
    "exact_duplicate",
    "near_duplicate",
}
BENCH_ORIGINAL = (
    "Optogenetic silencing of dorsal CA1 pyramidal neurons during retrieval reduced freezing "
    "in fear conditioned mice whereas silencing during encoding left later freezing intact"
)
BENCH_ALTERED = BENCH_ORIGINAL.replace("reduced", "increased")


def text_of(seed: int, n: int = 150) -> str:
    """A document of `n` pseudo-words; different seeds share no word 5-gram."""
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    return " ".join(
        "".join(rng.choice(letters) for _ in range(rng.randint(3, 9))) for _ in range(n)
    )


def one_word_changed(text: str) -> str:
    w = text.split()
    w[len(w) // 2] = "changedword"
    return " ".join(w)


def all_docs(out: Path) -> dict[str, dict]:
    return {d["id"]: d for split in ("train", "val") for d in iter_docs(out, split)}


def split_of(out: Path) -> dict[str, str]:
    return {d["id"]: split for split in ("train", "val") for d in iter_docs(out, split)}


def assert_counts_add_up(manifest: dict) -> None:
    counts = manifest["counts"]
    assert set(counts["removed"]) == REMOVALS
    assert counts["input"] == counts["kept"] + sum(counts["removed"].values())
    split = manifest["split"]
    assert split["train"]["docs"] + split["val"]["docs"] == counts["kept"]


def leftovers(parent: Path, name: str) -> list[str]:
    """Temporary or moved-aside siblings of an output folder."""
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(f".{name}."))


def write_bench(path: Path) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(BRAINBENCH_COLUMNS)
        w.writerow(
            ["10.1/x", "Behavioral", BENCH_ORIGINAL, BENCH_ALTERED, "[[reduced, increased]]"]
        )
    return path


# --- the filters and the manifest --------------------------------------------------------------


def test_counts_add_up_on_crafted_input(tmp_path, write_jsonl):
    good = [{"id": f"g{i}", "text": text_of(i), "year": 2010 + i} for i in range(10)]
    rows = [
        *good,
        {"id": "e1", "text": "", "year": 2015},
        {"id": "e2", "text": " \u200b\n\t\u00ad ", "year": 2015},  # empty once cleaned
        {"id": "s1", "text": "short", "year": 2015},
        {"id": "s2", "text": "too short to keep", "year": 2015},
        {"id": "s3", "text": "x" * 99, "year": 2015},  # one below min_chars
        {"id": "late", "text": text_of(100), "year": 2021},
        {"id": "early", "text": text_of(101), "year": 1999},
        {"id": "noyear", "text": text_of(102)},
        {"id": "dup1", "text": good[0]["text"], "year": 2015},
        {"id": "dup2", "text": "  " + good[1]["text"].replace(" ", "  ") + "\r\n", "year": 2015},
        {"id": "near", "text": one_word_changed(good[2]["text"]), "year": 2015},
        {"id": "leak", "text": f"{text_of(103, 30)} {BENCH_ALTERED}. {text_of(104, 30)}"},
        "{not json",
    ]
    rows[-2]["year"] = 2016
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    bench = write_bench(tmp_path / "bb.csv")
    out = corpus_build(
        [src],
        tmp_path / "corpus",
        min_chars=100,
        min_year=2000,
        max_year=2020,
        keep_no_year=False,
        decontam=[bench],
        skip_bad=True,
        val_frac=0.5,
        show_progress=False,
    )
    manifest = read_manifest(out)
    assert manifest["counts"] == {
        "input": 23,
        "kept": 10,
        "removed": {
            "bad_record": 1,
            "empty": 2,
            "too_short": 3,
            "no_year": 1,
            "before_min_year": 1,
            "after_max_year": 1,
            "contaminated": 1,
            "exact_duplicate": 2,
            "near_duplicate": 1,
        },
    }
    assert_counts_add_up(manifest)
    assert manifest["decontamination"]["items_leaked"] == 1
    assert manifest["decontamination"]["items"] == 1

    docs = all_docs(out)
    assert set(docs) == {f"g{i}" for i in range(10)}
    for i, row in enumerate(good):
        assert docs[f"g{i}"] == {
            "id": f"g{i}",
            "text": row["text"],
            "year": 2010 + i,
            "source": f"{src}:{i + 1}",
        }

    # The manifest describes its inputs, outputs and config.
    assert manifest["inputs"] == [
        {
            "path": str(src),
            "bytes": src.stat().st_size,
            "sha256": hashlib.sha256(src.read_bytes()).hexdigest(),
        }
    ]
    for name, digest in manifest["outputs"].items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest
    assert manifest["config"]["max_year"] == 2020 and manifest["config"]["min_chars"] == 100
    assert manifest["split"]["val_frac"] == 0.5
    assert manifest["split"]["train"]["docs"] > 0 and manifest["split"]["val"]["docs"] > 0
    chars = sum(len(d["text"]) for d in docs.values())
    assert manifest["split"]["train"]["chars"] + manifest["split"]["val"]["chars"] == chars
    assert sorted(p.name for p in out.iterdir()) == [
        "manifest.json",
        "train.jsonl.gz",
        "val.jsonl.gz",
    ]


def test_texts_are_cleaned_and_filters_see_the_cleaned_text(tmp_path, write_jsonl):
    raw = "Title\u00ad line\r\n\r\n\r\n\r\nBody   text\u200b here." + " padding" * 30
    src = write_jsonl(
        tmp_path / "in.jsonl", [{"id": "a", "text": raw}, {"id": "b", "text": "x  " * 40}]
    )
    out = corpus_build([src], tmp_path / "c", min_chars=100, val_frac=0.0)
    assert [d["text"] for d in iter_docs(out)] == [clean_text(raw)]
    assert read_manifest(out)["counts"]["removed"]["too_short"] == 1  # "x x x ..." is 79 chars


def test_min_and_max_year_are_inclusive_and_no_year_is_kept_by_default(tmp_path, write_jsonl):
    years = [2009, 2010, 2012, 2015, 2016, None, "2015-06-01", "unknown"]
    rows = [{"id": f"d{i}", "text": text_of(i), "year": y} for i, y in enumerate(years)]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    out = corpus_build([src], tmp_path / "c", min_year=2010, max_year=2015, val_frac=0.0)
    docs = all_docs(out)
    assert sorted(docs) == ["d1", "d2", "d3", "d5", "d6", "d7"]
    assert docs["d6"]["year"] == 2015 and docs["d5"]["year"] is None and docs["d7"]["year"] is None
    removed = read_manifest(out)["counts"]["removed"]
    assert removed["before_min_year"] == 1 and removed["after_max_year"] == 1
    assert removed["no_year"] == 0


def test_no_year_filter_only_applies_with_a_year_filter(tmp_path, write_jsonl):
    src = write_jsonl(tmp_path / "in.jsonl", [{"id": "a", "text": text_of(1)}])
    out = corpus_build([src], tmp_path / "c", keep_no_year=False, val_frac=0.0)
    assert list(all_docs(out)) == ["a"]


def test_dedup_and_near_dedup_can_be_turned_off(tmp_path, write_jsonl):
    t = text_of(1)
    rows = [
        {"id": "a", "text": t},
        {"id": "b", "text": t},
        {"id": "c", "text": one_word_changed(t)},
    ]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    out = corpus_build([src], tmp_path / "c1", dedup=False, near_dedup=False, val_frac=0.0)
    assert sorted(all_docs(out)) == ["a", "b", "c"]
    out = corpus_build([src], tmp_path / "c2", dedup=False, val_frac=0.0)
    assert sorted(all_docs(out)) == ["a"]
    assert read_manifest(out)["counts"]["removed"]["near_duplicate"] == 2


def test_keep_fields_copies_fields(tmp_path, write_jsonl):
    rows = [
        {"id": "a", "text": text_of(1), "journal": "J Neurosci", "doi": "10.1/a", "other": 1},
        {"id": "b", "text": text_of(2), "journal": "eLife", "meta": {"pmcid": "PMC1"}},
    ]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    out = corpus_build(
        [src], tmp_path / "c", keep_fields=["journal", "doi", "meta.pmcid"], val_frac=0.0
    )
    docs = all_docs(out)
    assert {k: v for k, v in docs["a"].items() if k not in ("text", "source")} == {
        "id": "a",
        "year": None,
        "journal": "J Neurosci",
        "doi": "10.1/a",
    }
    assert docs["b"]["journal"] == "eLife" and docs["b"]["meta.pmcid"] == "PMC1"
    assert "doi" not in docs["b"] and "other" not in docs["a"]


def test_docs_without_id_get_a_stable_hash_id(tmp_path, write_jsonl):
    texts = [text_of(1), text_of(2)]
    src = write_jsonl(tmp_path / "in.jsonl", [{"text": texts[0]}, {"text": texts[1], "id": ""}])
    ids = []
    for name in ("c1", "c2"):
        out = corpus_build([src], tmp_path / name, val_frac=0.0)
        ids.append([d["id"] for d in iter_docs(out)])
    assert ids[0] == ids[1]
    assert ids[0] == [hashlib.sha256(t.encode()).hexdigest()[:16] for t in texts]


def test_txt_and_csv_sources_together(tmp_path):
    folder = tmp_path / "src"
    folder.mkdir()
    (folder / "b.txt").write_text(text_of(1), encoding="utf-8")
    with open(folder / "a.csv", "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([["abstract", "pmid"], [text_of(2), "11"]])
    out = corpus_build([folder], tmp_path / "c", text_field="abstract", id_field="pmid", val_frac=0)
    assert [(d["id"], d["source"]) for d in iter_docs(out)] == [
        ("11", f"{folder / 'a.csv'}:2"),
        ("src/b.txt", str(folder / "b.txt")),
    ]


# --- the split -----------------------------------------------------------------------------------


def many_rows(start: int, stop: int) -> list[dict]:
    return [{"id": f"doc{i}", "text": text_of(i, 40), "year": 2000} for i in range(start, stop)]


def test_same_inputs_give_the_same_corpus(tmp_path, write_jsonl):
    src = write_jsonl(tmp_path / "in.jsonl", many_rows(0, 120))
    a = corpus_build([src], tmp_path / "a", min_chars=0, near_dedup=False, val_frac=0.3)
    b = corpus_build([src], tmp_path / "b", min_chars=0, near_dedup=False, val_frac=0.3)
    for split in ("train", "val"):
        assert list(iter_docs(a, split)) == list(iter_docs(b, split))
    assert corpus_hash(a) == corpus_hash(b)
    assert read_manifest(a)["outputs"] == read_manifest(b)["outputs"]


def test_adding_documents_does_not_move_existing_ones(tmp_path, write_jsonl):
    opts = {"min_chars": 0, "near_dedup": False, "val_frac": 0.3}
    small = write_jsonl(tmp_path / "small.jsonl", many_rows(0, 200))
    big = write_jsonl(
        tmp_path / "big.jsonl", many_rows(200, 300)[:50] + many_rows(0, 200) + many_rows(250, 300)
    )
    before = split_of(corpus_build([small], tmp_path / "c1", **opts))
    after = split_of(corpus_build([big], tmp_path / "c2", **opts))
    assert len(before) == 200 and len(after) == 300
    assert {k: after[k] for k in before} == before
    n_val = sum(s == "val" for s in after.values())
    assert 60 <= n_val <= 120  # val_frac 0.3 of 300 = 90, binomial sd ~8
    # Another seed is another split.
    other = split_of(corpus_build([small], tmp_path / "c3", split_seed=1, **opts))
    assert other != before


def test_val_frac_zero_puts_everything_in_train(tmp_path, write_jsonl):
    src = write_jsonl(tmp_path / "in.jsonl", many_rows(0, 20))
    out = corpus_build([src], tmp_path / "c", min_chars=0, val_frac=0.0)
    assert set(split_of(out).values()) == {"train"}
    assert gzip.decompress((out / "val.jsonl.gz").read_bytes()) == b""


# --- the output folder -------------------------------------------------------------------------


def test_empty_corpus_after_filters_names_the_filters_and_writes_nothing(tmp_path, write_jsonl):
    rows = [{"text": "short"}, {"text": "tiny"}, {"text": ""}, {"text": text_of(1), "year": 2030}]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "corpus"
    with pytest.raises(ExpertlmError, match="empty after filters") as e:
        corpus_build([src], out, max_year=2022)
    msg = str(e.value)
    assert "4 input" in msg and "too_short 2" in msg and "empty 1" in msg
    assert "after_max_year 1" in msg and "near_duplicate" not in msg
    assert not out.exists()
    assert leftovers(tmp_path, "corpus") == []


def test_existing_output_is_refused_and_left_intact(tmp_path, write_jsonl):
    src = write_jsonl(tmp_path / "in.jsonl", many_rows(0, 5))
    out = tmp_path / "corpus"
    out.mkdir()
    (out / "precious.txt").write_text("keep me", encoding="utf-8")
    with pytest.raises(ExpertlmError, match="already exists") as e:
        corpus_build([src], out, min_chars=0)
    assert str(out) in str(e.value)
    assert [p.name for p in out.iterdir()] == ["precious.txt"]
    assert leftovers(tmp_path, "corpus") == []


def test_overwrite_replaces_the_output(tmp_path, write_jsonl):
    out = tmp_path / "corpus"
    first = write_jsonl(tmp_path / "first.jsonl", many_rows(0, 5))
    corpus_build([first], out, min_chars=0)
    (out / "stale.txt").write_text("old", encoding="utf-8")
    second = write_jsonl(tmp_path / "second.jsonl", many_rows(5, 8))
    corpus_build([second], out, min_chars=0, overwrite=True)
    assert sorted(all_docs(out)) == ["doc5", "doc6", "doc7"]
    assert not (out / "stale.txt").exists()
    assert leftovers(tmp_path, "corpus") == []


def test_failure_mid_build_leaves_no_output_and_no_temporary(tmp_path, write_jsonl):
    a = write_jsonl(tmp_path / "a.jsonl", many_rows(0, 10))
    b = write_jsonl(tmp_path / "b.jsonl", [many_rows(10, 11)[0], '{"text": broken'])
    out = tmp_path / "corpus"
    with pytest.raises(ExpertlmError) as e:
        corpus_build([a, b], out, min_chars=0)
    assert f"{b}:2" in str(e.value)
    assert not out.exists()
    assert leftovers(tmp_path, "corpus") == []


def test_failure_mid_build_keeps_the_previous_output(tmp_path, write_jsonl):
    a = write_jsonl(tmp_path / "a.jsonl", many_rows(0, 10))
    out = corpus_build([a], tmp_path / "corpus", min_chars=0)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    b = write_jsonl(tmp_path / "b.jsonl", [{"id": "x", "text": 42}])
    with pytest.raises(ExpertlmError, match="not a string"):
        corpus_build([a, b], out, min_chars=0, overwrite=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert leftovers(tmp_path, "corpus") == []


def test_bad_option_is_reported_before_anything_is_read(tmp_path):
    with pytest.raises(ExpertlmError) as e:
        corpus_build([tmp_path / "missing.jsonl"], tmp_path / "c", min_chars=-1, bogus=1)
    msg = str(e.value)
    assert "min_chars" in msg or "min-chars" in msg
    assert "bogus" in msg
    assert not (tmp_path / "c").exists()


# --- real text ----------------------------------------------------------------------------------

REAL = Path(__file__).resolve().parents[2] / "shared" / "data"
REAL_ABSTRACTS = REAL / "neuromancer_neuro_review_abstracts.jsonl.gz"


@pytest.mark.skipif(not REAL_ABSTRACTS.is_file(), reason=f"{REAL_ABSTRACTS} not present")
def test_real_abstracts_max_year(tmp_path):
    after, years_missing, empty, n = 0, 0, 0, 0
    with gzip.open(REAL_ABSTRACTS, "rt", encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            rec = json.loads(line)
            n += 1
            year = rec.get("year")
            if year is None:
                years_missing += 1
            elif int(str(year)[:4]) > 2016 and rec["text"].strip():
                after += 1
            empty += not rec["text"].strip()
    out = corpus_build([REAL_ABSTRACTS], tmp_path / "c", max_year=2016, min_chars=0)
    manifest = read_manifest(out)
    assert_counts_add_up(manifest)
    counts = manifest["counts"]
    assert counts["input"] == n
    assert counts["removed"]["after_max_year"] == after
    assert counts["removed"]["empty"] == empty
    assert counts["removed"]["bad_record"] == 0
    assert after > 0 and counts["kept"] > 0.9 * n
    assert all(d["year"] is None or d["year"] <= 2016 for d in iter_docs(out, "val"))


def test_killing_a_build_with_sigkill_ends_its_workers_too(left_after_sigkill):
    """A parent killed by `kill -9` mid-work: its workers (and the fork server) end instead of
    blocking for good on a result nobody reads (`lifeline`)."""
    import sys

    code = """
import time
from expertlm.config import CorpusConfig
from expertlm.corpus.scan import Workers
if __name__ == "__main__":
    with Workers(CorpusConfig(), 2) as pool:
        [f.result() for f in [pool.submit(time.sleep, 0.5) for _ in range(2)]]  # both started
        busy = [pool.submit(time.sleep, 600) for _ in range(2)]
        print("ready", flush=True)
        busy[0].result()
"""
    alive = left_after_sigkill([sys.executable, "-c", code])
    assert not alive, alive

