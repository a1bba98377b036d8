"""Benchmark `expertlm corpus filter`: MB/s of text scored and written, against scikit-learn.

Text: the two files of ../shared/data as they are (~80 MB of text: eLife full texts and
neuroscience review abstracts, gzipped JSON Lines), or where that folder is absent a synthetic
web corpus (`corpus web`) repeated under new ids to ~80 MB.

Classifier: trained once (`classifier train`, default options, whole documents) on a sample:
positives the review abstracts (or the web corpus's domain documents), negatives 150
non-neuroscience eLife papers (or the other web documents). Its weights do not change the
speed.

Runs, on the same files, on this machine, in this one run:

- expertlm: `expertlm corpus filter SOURCES --classifier CLF --out DIR` in a fresh process,
  every default (one worker per core), the wall time from start to the written corpus folder
  (reading, decompressing, scoring, the corpus's gzip files and manifest);
- the reference: scikit-learn's own pipeline, `make_pipeline(HashingVectorizer(ngram_range=(1,
  2), alternate_sign=False, n_features=2**20), SGDClassifier(loss="log_loss"))` fitted on the
  same sample, `pipeline.predict_proba` over the same documents one batch at a time (the
  batches `corpus filter` scores: ~1 M characters), in one process, timing only the calls
  (the documents already in memory: reading and writing cost the reference nothing);
- and, for the same work on both sides, expertlm's saved classifier
  (`load_classifier(CLF).score`) over the same batches in the same process.

MB is the UTF-8 size of the documents' text. Target: >= 20 MB/s for expertlm.

Run: python bench/corpus_filter.py   (work files in bench/_work/corpus_filter/)
"""

from __future__ import annotations

import gzip
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import load, measure  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
WORK = ROOT / "bench" / "_work" / "corpus_filter"
TARGET_MB_S = 20.0
TARGET_BYTES = 80e6


def _rows(path: Path) -> list[dict]:
    with (gzip.open if path.suffix == ".gz" else open)(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def _write(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return path


def inputs() -> tuple[list[Path], list[dict], list[dict], str]:
    """(source files, positives, negatives of the training sample, what the text is)."""
    if DATA.is_dir():
        elife = DATA / "elife_fulltext_2012_2016.jsonl.gz"
        reviews = DATA / "neuromancer_neuro_review_abstracts.jsonl.gz"
        neg = [d for d in _rows(elife) if not d.get("is_neuroscience")][:150]
        return [elife, reviews], _rows(reviews), neg, f"{DATA} (eLife full texts, review abstracts)"
    from expertlm.synth.web import WEB, corpus_web, read_truth

    web = WORK / "web"
    if not (web / WEB).is_file():
        corpus_web(web, seed=0, domain_docs=3000, general_docs=3000, other_docs=1500, overwrite=True,
                   show_progress=False)  # fmt: skip
    truth, docs = read_truth(web), _rows(web / WEB)
    size = sum(len(d["text"].encode()) for d in docs)
    big = WORK / "web_x.jsonl"
    if not big.is_file():
        reps = int(TARGET_BYTES // size) + 1
        _write(big, [{**d, "id": f"{d['id']}-r{r}"} for r in range(reps) for d in docs])
    pos = [d for d in docs if truth[d["id"]] == "domain"]
    neg = [d for d in docs if truth[d["id"]] != "domain"]
    return [big], pos, neg, f"synthetic web corpus x{int(TARGET_BYTES // size) + 1} (no {DATA})"


def reference(pos: list[dict], neg: list[dict], files: list[Path]) -> tuple[float, float, float]:
    """(seconds, MB) of sklearn's pipeline.predict_proba over every document, batch by batch,
    and the seconds of expertlm's classifier (`load_classifier(...).score`) over the same
    batches in this one process: the same work on both sides."""
    from sklearn.feature_extraction.text import HashingVectorizer
    from sklearn.linear_model import SGDClassifier
    from sklearn.pipeline import make_pipeline

    from expertlm.corpus.filter import BATCH_CHARS, BATCH_UNITS

    pipe = make_pipeline(HashingVectorizer(ngram_range=(1, 2), alternate_sign=False, n_features=2**20),
                         SGDClassifier(loss="log_loss", random_state=0))  # fmt: skip
    pipe.fit([d["text"] for d in pos + neg], [1] * len(pos) + [0] * len(neg))
    texts = [d["text"] for f in files for d in _rows(f)]
    batches, cur, chars = [], [], 0
    for t in texts:
        cur.append(t)
        chars += len(t)
        if chars >= BATCH_CHARS or len(cur) >= BATCH_UNITS:
            batches.append(cur)
            cur, chars = [], 0
    batches += [cur] if cur else []
    t0 = time.perf_counter()
    for b in batches:
        pipe.predict_proba(b)
    ref_s = time.perf_counter() - t0
    from expertlm.classifier import load_classifier
    from expertlm.features import reuse_freed_memory

    clf = load_classifier(WORK / "clf")
    reuse_freed_memory()
    t0 = time.perf_counter()
    for b in batches:
        clf.score(b)
    return ref_s, sum(len(t.encode()) for t in texts) / 1e6, time.perf_counter() - t0


def main() -> None:
    WORK.mkdir(parents=True, exist_ok=True)
    files, pos, neg, what = inputs()
    sample = WORK / "sample"
    sample.mkdir(exist_ok=True)
    env = {**os.environ, "EXPERTLM_NO_PROGRESS": "1"}
    py = [sys.executable, "-m", "expertlm"]
    measure([*py, "classifier", "train", "--positive", str(_write(sample / "pos.jsonl", pos)),
             "--negative", str(_write(sample / "neg.jsonl", neg)), "--out", str(WORK / "clf"),
             "--overwrite"], env=env)  # fmt: skip
    before = load()
    ours = measure([*py, "corpus", "filter", *map(str, files), "--classifier", str(WORK / "clf"),
                    "--out", str(WORK / "out"), "--overwrite"], env=env)  # fmt: skip
    ref_s, mb, mine_s = reference(pos, neg, files)
    manifest = json.loads((WORK / "out" / "manifest.json").read_text())
    ours_mb_s, ref_mb_s = mb / ours["wall_s"], mb / ref_s
    result = {"text": what, "mb": mb, "docs": manifest["counts"]["input"], "kept": manifest["counts"]["kept"],
              "workers": manifest["parallel"]["workers"], "expertlm": {k: v for k, v in ours.items() if k != "stdout"},
              "expertlm_mb_s": ours_mb_s, "reference_s": ref_s, "reference_mb_s": ref_mb_s,
              "expertlm_scoring_s": mine_s, "expertlm_scoring_mb_s": mb / mine_s,
              "load_before": before, "load_after": load()}  # fmt: skip
    (WORK / "results.json").write_text(json.dumps(result, indent=2))
    print(f"text: {what}: {mb:.1f} MB in {result['docs']:,} documents ({result['kept']:,} kept)")
    print(f"expertlm corpus filter ({result['workers']} workers, end to end): {ours['wall_s']:.2f} s, "
          f"{ours_mb_s:.1f} MB/s, CPU {ours['cpu_s']:.1f} s, peak RSS {ours['peak_rss'] / 1e6:.0f} MB")
    print(f"sklearn pipeline.predict_proba (1 process, scoring only): {ref_s:.2f} s, {ref_mb_s:.1f} MB/s")
    print(f"expertlm load_classifier().score (1 process, scoring only): {mine_s:.2f} s, {mb / mine_s:.1f} MB/s "
          f"({ref_s / mine_s:.2f}x sklearn)")
    print(f"end to end vs sklearn's scoring: {ours_mb_s / ref_mb_s:.2f}x; {before} before, "
          f"{result['load_after']} after")
    ok = ours_mb_s >= TARGET_MB_S
    print(f"corpus_filter: {ours_mb_s:.1f} MB/s (target {TARGET_MB_S:g}) {'PASS' if ok else 'FAIL'}")


if __name__ == "__main__":
    main()
