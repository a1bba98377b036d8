"""Near-duplicate removal agrees with datatrove's MinHash pipeline on clear cases.

Documents are random word sequences; some are copied with 0-1% of their words replaced (Jaccard
of 5-word shingles about 0.9 or more: duplicates at any reasonable threshold) and the rest share
nothing (Jaccard about 0). expertlm (`corpus build`) and datatrove (its own four-stage MinHash
pipeline, as `bench/corpus_build.py` runs it: the same 5-word shingles, seed, 9 bands x 13 rows,
`\\w+` words) must both remove the copies and nothing else: expertlm exactly the copies, datatrove
no original and at least 95% of the copies (its hash functions are not ours, and LSH misses a
pair with a small probability). Only pairs far from the threshold are compared.
"""

from __future__ import annotations

import gzip
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from expertlm.corpus.build import corpus_build
from expertlm.corpus.dedup import lsh_params

ROOT = Path(__file__).resolve().parents[1]


def ids(files) -> set[str]:
    out = set()
    for f in files:
        with gzip.open(f, "rt", encoding="utf-8") as lines:
            out |= {json.loads(line)["id"] for line in lines}
    return out


def test_the_same_documents_removed_as_datatrove(tmp_path):
    pytest.importorskip("datatrove")
    sys.path.insert(0, str(ROOT / "bench"))
    from corpus_build import DATATROVE

    rng = random.Random(7)
    # letters only: datatrove simplifies text before shingling (digits and punctuation go)
    vocab = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 9)))
             for _ in range(5000)]  # fmt: skip
    rows, originals, copies = [], [], set()
    for i in range(240):
        if originals and rng.random() < 0.25:
            words = rng.choice(originals).split()
            for k in rng.sample(range(len(words)), int(rng.choice([0.0, 0.005, 0.01]) * len(words))):
                words[k] = rng.choice(vocab)
            text = " ".join(words)
            copies.add(f"d{i}")
        else:
            text = " ".join(rng.choice(vocab) for _ in range(rng.randint(80, 200)))
            originals.append(text)
        rows.append({"id": f"d{i}", "text": text})
    src = tmp_path / "src"
    src.mkdir()
    with gzip.open(src / "docs.jsonl.gz", "wt", encoding="utf-8") as out:  # one file: one order
        out.writelines(json.dumps(r) + "\n" for r in rows)

    out = corpus_build([src], tmp_path / "corpus", min_chars=0, show_progress=False)
    kept = ids([out / "train.jsonl.gz", out / "val.jsonl.gz"])
    ours = {r["id"] for r in rows} - kept

    bands, rows_per_band = lsh_params(0.8, 128)
    work = tmp_path / "datatrove"
    done = subprocess.run([sys.executable, "-c", DATATROVE, str(src), str(work), "1", "1", str(bands),
                           str(rows_per_band), "words"], capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]  # (datatrove's own error, e.g. a missing extra)
    theirs = ids(sorted((work / "removed").glob("*.jsonl.gz")))

    assert ours == copies
    # LSH misses a pair with a small probability, and datatrove's hashes are not ours: on these
    # clear cases it must remove no original and nearly every copy (one in 60 missed was seen)
    assert theirs <= copies and len(theirs) >= 0.95 * len(copies)
