"""`classifier train` and the saved classifier: the features are HashingVectorizer's, the saved
weights score exactly as scikit-learn does, labels may come from rules, bad input is one line."""

from __future__ import annotations

import json
import math
import zipfile

import numpy as np
import pytest

from expertlm.classifier import (
    REPORT,
    VECTORIZER,
    WEIGHTS,
    classifier_train,
    keyword_pattern,
    load_classifier,
)
from expertlm.corpus.docs import in_val
from expertlm.errors import ExpertlmError
from expertlm.features import HashedNgrams

NEURO = ["neuron", "synapse", "cortex", "hippocampus", "dendrite", "axon", "spike", "interneuron", "thalamus"]
OTHER = ["wheat", "soil", "harvest", "rainfall", "tractor", "fertiliser", "barley", "irrigation", "crop"]
SHARED = ["the", "results", "show", "that", "we", "measured", "a", "significant", "effect", "in", "this", "study", "of"]


def _doc(rng: np.random.Generator, topic: list[str], i: int, **extra) -> dict:
    words = rng.choice(topic, 12).tolist() + rng.choice(SHARED, 20).tolist()
    rng.shuffle(words)
    return {"id": f"{topic[0]}-{i}", "text": " ".join(words).capitalize() + ".", **extra}


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """Two source files: 150 neuro-like and 150 agronomy-like documents."""
    folder = tmp_path_factory.mktemp("labelled")
    rng = np.random.default_rng(0)
    paths = {}
    for name, topic in (("pos", NEURO), ("neg", OTHER)):
        rows = [_doc(rng, topic, i, journal=f"J {name}") for i in range(150)]
        paths[name] = folder / f"{name}.jsonl"
        paths[name].write_text("".join(json.dumps(r) + "\n" for r in rows))
    return paths


@pytest.fixture(scope="module")
def clf(labelled, tmp_path_factory):
    out = tmp_path_factory.mktemp("clf") / "clf"
    classifier_train(out, positive=[labelled["pos"]], negative=[labelled["neg"]], show_progress=False)
    return out


# --- the features ----------------------------------------------------------------------------

TEXTS = [
    "The Neuron fires; the neuron FIRES again, and a b c d neurons fire.",
    "Café naïve résumé — über straße ÉCOLE école x",
    "snake_case tokens 42 and 4 2 ok_ok 3.14 e-mail co-operate",
    "",
    "one",
    "Ünïcödé 東京 大学 αβγ δ 𝒜𝒷𝒸 words",
]


@pytest.mark.parametrize("ngram_max", [1, 2, 3])
def test_rows_are_hashing_vectorizers_rows_with_other_columns(ngram_max):
    """The same tokens and n-grams, counts and norm as scikit-learn's HashingVectorizer: each
    row holds the same values (the columns differ: another hash)."""
    from sklearn.feature_extraction.text import HashingVectorizer

    ref = HashingVectorizer(ngram_range=(1, ngram_max), alternate_sign=False, norm="l2")
    mine = HashedNgrams(ngram_max=ngram_max).transform(TEXTS)
    theirs = ref.transform(TEXTS)
    for i in range(len(TEXTS)):
        a, b = mine.getrow(i), theirs.getrow(i)
        assert a.nnz == b.nnz, TEXTS[i]
        np.testing.assert_allclose(np.sort(a.data), np.sort(b.data), rtol=0, atol=1e-12)


def test_max_chars_reads_only_the_start():
    vec = HashedNgrams(max_chars=10)
    a = vec.transform(["neuron spike " + "wheat " * 50])
    b = HashedNgrams().transform(["neuron spi"])
    assert (a != b).nnz == 0


def test_decision_without_the_matrix_equals_the_matrix_product():
    vec = HashedNgrams(n_features=2**12)
    coef = np.random.default_rng(1).normal(size=vec.n_features)
    texts = TEXTS * 3
    np.testing.assert_allclose(vec.decision(texts, coef, 0.25), vec.transform(texts) @ coef + 0.25,
                               rtol=0, atol=1e-12)  # fmt: skip


# --- training and the saved classifier --------------------------------------------------------


def test_saved_classifier_scores_as_sklearn_predict_proba(clf, labelled):
    from sklearn.linear_model import SGDClassifier

    loaded = load_classifier(clf)
    with np.load(clf / WEIGHTS, allow_pickle=False) as z:  # no pickle in the file
        coef, intercept = z["coef"], z["intercept"]
    ref = SGDClassifier(loss="log_loss")
    ref.coef_, ref.intercept_, ref.classes_ = coef[None, :], intercept, np.array([0, 1])
    texts = [json.loads(line)["text"] for p in labelled.values() for line in p.read_text().splitlines()]
    texts += TEXTS
    expected = ref.predict_proba(loaded.vectorizer.transform(texts))[:, 1]
    np.testing.assert_allclose(loaded.score(texts), expected, rtol=0, atol=1e-9)
    assert loaded.threshold == 0.5


def test_report_has_heldout_scores_thresholds_and_curve(clf, labelled):
    report = json.loads((clf / REPORT).read_text())
    held = report["heldout"]
    ids = [json.loads(line)["id"] for p in labelled.values() for line in p.read_text().splitlines()]
    n_held = sum(in_val(i, 0.1, 0) for i in ids)
    assert held["docs"] == n_held and report["train"]["docs"] == len(ids) - n_held
    assert held["positive"] + held["negative"] == n_held
    for key in ("at_default", "best_f1"):
        assert set(held[key]) >= {"threshold", "precision", "recall", "f1"}
    assert held["at_default"]["f1"] == 1.0 and held["roc_auc"] == 1.0  # separable topics
    assert report["threshold"] == {"default": 0.5, "best_f1": held["best_f1"]["threshold"]}
    assert (clf / "pr_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((clf / VECTORIZER).read_text())["n_features"] == 2**20
    w = report["model"]["class_weight"]
    pos, neg = report["train"]["positive"], report["train"]["negative"]
    assert math.isclose(w["1"] * pos, w["0"] * neg)  # balanced classes


def test_training_is_reproducible(clf, labelled, tmp_path):
    again = classifier_train(tmp_path / "again", positive=[labelled["pos"]], negative=[labelled["neg"]],
                             show_progress=False)  # fmt: skip
    assert (again / WEIGHTS).read_bytes() == (clf / WEIGHTS).read_bytes()
    assert load_classifier(again).hash == load_classifier(clf).hash


def test_corpus_folder_as_source(labelled, tmp_path):
    from expertlm import corpus_build

    corpus = corpus_build([labelled["pos"]], tmp_path / "c", min_chars=0, near_dedup=False,
                          show_progress=False)  # fmt: skip
    out = classifier_train(tmp_path / "k", positive=[corpus], negative=[labelled["neg"]], show_progress=False)
    report = json.loads((out / REPORT).read_text())
    kept = json.loads((corpus / "manifest.json").read_text())["counts"]["kept"]
    assert report["train"]["positive"] + report["heldout"]["positive"] == kept
    assert [i["path"] for i in report["inputs"]["positive"]] == [str(corpus / "train.jsonl.gz"),
                                                                  str(corpus / "val.jsonl.gz")]  # fmt: skip


def test_keywords_label_the_documents(labelled, tmp_path):
    kw = tmp_path / "kw.txt"
    kw.write_text("# neuro words\nneuron\nSYNAPSE\n\ndendrite spike\n")
    out = classifier_train(tmp_path / "k", negative=[labelled["pos"], labelled["neg"]], keywords=kw,
                           min_keyword_hits=2, show_progress=False)  # fmt: skip
    pattern = keyword_pattern(["neuron", "SYNAPSE", "dendrite spike"])
    docs = [json.loads(line) for p in labelled.values() for line in p.read_text().splitlines()]
    want = sum(len(pattern.findall(d["text"])) >= 2 for d in docs)
    report = json.loads((out / REPORT).read_text())
    assert report["train"]["positive"] + report["heldout"]["positive"] == want
    assert report["labels"]["kind"] == "keywords" and report["labels"]["keywords"] == 3
    assert len(keyword_pattern(["neuron"]).findall("Neuron neurons neuron, xneuron")) == 2


def test_field_values_label_the_documents(labelled, tmp_path):
    values = tmp_path / "journals.txt"
    values.write_text("J pos\n")
    out = classifier_train(tmp_path / "f", positive=[labelled["pos"], labelled["neg"]], field="journal",
                           values=values, show_progress=False)  # fmt: skip
    report = json.loads((out / REPORT).read_text())
    assert report["train"]["positive"] + report["heldout"]["positive"] == 150
    assert report["heldout"]["at_default"]["f1"] == 1.0


# --- errors ----------------------------------------------------------------------------------


def test_bad_classifier_folders(clf, tmp_path):
    with pytest.raises(ExpertlmError, match="no such classifier folder"):
        load_classifier(tmp_path / "nope")
    bad = tmp_path / "bad"
    bad.mkdir()
    with pytest.raises(ExpertlmError, match=f"not a classifier folder \\(no {VECTORIZER}"):
        load_classifier(bad)
    for name in (VECTORIZER, WEIGHTS, REPORT):
        (bad / name).write_bytes((clf / name).read_bytes())
    (bad / WEIGHTS).write_bytes(b"not a zip")
    with pytest.raises(ExpertlmError, match=f"{WEIGHTS}: not a weights file"):
        load_classifier(bad)
    with zipfile.ZipFile(bad / WEIGHTS, "w") as z:
        z.writestr("coef.npy", b"")
    with pytest.raises(ExpertlmError, match=WEIGHTS):
        load_classifier(bad)
    settings = json.loads((clf / VECTORIZER).read_text())
    (bad / WEIGHTS).write_bytes((clf / WEIGHTS).read_bytes())
    (bad / VECTORIZER).write_text(json.dumps({**settings, "n_features": 1024}))
    with pytest.raises(ExpertlmError, match="coef has shape"):
        load_classifier(bad)
    (bad / VECTORIZER).write_text("{")
    with pytest.raises(ExpertlmError, match=VECTORIZER):
        load_classifier(bad)


def test_training_errors(labelled, tmp_path):
    with pytest.raises(ExpertlmError, match="no --negative source"):
        classifier_train(tmp_path / "a", positive=[labelled["pos"]], show_progress=False)
    with pytest.raises(ExpertlmError, match="no positive training documents"):
        classifier_train(tmp_path / "a", positive=[labelled["pos"]], negative=[labelled["neg"]],
                         keywords=_file(tmp_path / "k", "zzzz\n"), show_progress=False)  # fmt: skip
    with pytest.raises(ExpertlmError, match="--field and --values go together"):
        classifier_train(tmp_path / "a", positive=[labelled["pos"]], field="journal", show_progress=False)
    with pytest.raises(ExpertlmError, match="one rule"):
        classifier_train(tmp_path / "a", positive=[labelled["pos"]], keywords=_file(tmp_path / "k", "x\n"),
                         field="journal", values=_file(tmp_path / "v", "x\n"), show_progress=False)  # fmt: skip
    with pytest.raises(ExpertlmError, match="no keywords"):
        classifier_train(tmp_path / "a", positive=[labelled["pos"]], keywords=_file(tmp_path / "k", "# \n"),
                         show_progress=False)  # fmt: skip
    with pytest.raises(ExpertlmError, match="'nosuch'"):
        classifier_train(tmp_path / "a", positive=[labelled["pos"]], field="nosuch",
                         values=_file(tmp_path / "v", "x\n"), show_progress=False)  # fmt: skip
    with pytest.raises(ExpertlmError, match="power of two"):
        classifier_train(tmp_path / "a", positive=[labelled["pos"]], negative=[labelled["neg"]],
                         n_features=3000, show_progress=False)  # fmt: skip
    assert not (tmp_path / "a").exists()


def _file(path, text: str):
    path.write_text(text)
    return path


def test_cli_errors_are_one_line(labelled, tmp_path, capsys):
    from expertlm.cli import main

    for args, fragment in (
        (["--positive", labelled["pos"], "--out", tmp_path / "x"], "--negative"),
        (["--positive", labelled["pos"], "--negative", tmp_path / "missing.jsonl", "--out", tmp_path / "x"],
         "no such file or folder"),
        (["--positive", labelled["pos"], "--negative", labelled["neg"], "--holdout-frac", "1.5",
          "--out", tmp_path / "x"], "--holdout-frac"),
    ):  # fmt: skip
        with pytest.raises(SystemExit) as e:
            main(["classifier", "train", *map(str, args)])
        assert e.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and fragment in err[0], err
    assert not (tmp_path / "x").exists()
