"""`expertlm classifier train`: a linear text classifier of a field, saved without pickle.

The model is a logistic regression over hashed word n-grams (`features.HashedNgrams`: the
features of scikit-learn's `HashingVectorizer`, computed with numpy), trained by scikit-learn's
`SGDClassifier(loss="log_loss")` with `partial_fit` over shuffled batches for a few epochs, the
two classes weighted equally (each document by n / (2 n_class)), so that the default threshold
(probability 0.5) does not depend on how many documents of each class there were.

Labels come from the sources (`--positive` and `--negative`), or from a rule when there is no
labelled corpus of the field: `--keywords FILE` (a document with at least `--min-keyword-hits`
occurrences of the file's keywords or phrases is a positive) or `--field NAME --values FILE`
(a document whose NAME is one of the file's values is a positive); a rule labels every
document of the sources given (either flag).

A held-out share of the documents (by a hash of the id) is scored: precision, recall and F1 at
the default threshold and at the threshold that maximises F1, ROC-AUC, and the
precision-recall curve (`pr_curve.png`).

The classifier folder:

- `vectorizer.json`: the feature settings;
- `weights.npz`: `coef` (n_features,) and `intercept` (1,), float64 (`numpy.load` with
  `allow_pickle=False` reads it);
- `classifier.json`: thresholds, held-out scores, counts, inputs, options, provenance;
- `pr_curve.png`.

`load_classifier(path)` rebuilds it and scores texts with numpy: sigmoid(x . coef + intercept).
"""

from __future__ import annotations

import hashlib
import io
import re
import time
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from expertlm.config import ClassifierConfig, CorpusConfig
from expertlm.console import bytes_progress, info, warn
from expertlm.corpus.docs import MANIFEST, SPLITS, in_val, iter_docs
from expertlm.corpus.sources import Reader, describe_source, expand_sources
from expertlm.errors import ExpertlmError
from expertlm.features import FORMAT, HashedNgrams, reuse_freed_memory, sigmoid
from expertlm.io import (
    atomic_dir,
    check_output_dir,
    combine_hashes,
    provenance,
    read_json,
    sha256_file,
    write_json,
)

VECTORIZER = "vectorizer.json"
WEIGHTS = "weights.npz"
REPORT = "classifier.json"
PR_CURVE = "pr_curve.png"
REPORT_FORMAT = "expertlm.classifier/1"
DEFAULT_THRESHOLD = 0.5
BATCH_CHARS = 1_000_000  # characters vectorised at once


# --- the saved classifier --------------------------------------------------------------------


class Classifier:
    """A loaded classifier: `score(texts)` is the probability that each text is of the field."""

    def __init__(self, path: Path, vectorizer: HashedNgrams, coef: np.ndarray, intercept: float,
                 report: dict) -> None:  # fmt: skip
        self.path, self.vectorizer, self.coef, self.intercept = path, vectorizer, coef, intercept
        self.report = report
        self.threshold = float(report.get("threshold", {}).get("default", DEFAULT_THRESHOLD))
        self.hash = combine_hashes(sha256_file(path / f) for f in (VECTORIZER, WEIGHTS))

    def decision(self, texts: list[str]) -> np.ndarray:
        return self.vectorizer.decision(texts, self.coef, self.intercept)

    def score(self, texts: list[str]) -> np.ndarray:
        return sigmoid(self.decision(texts))


def load_classifier(path: str | Path) -> Classifier:
    """The classifier in folder `path` (made by `classifier train`); a bad folder is an
    `ExpertlmError` naming the file at fault."""
    path = Path(path)
    if not path.is_dir():
        raise ExpertlmError(f"{path}: no such classifier folder")
    for name in (VECTORIZER, WEIGHTS, REPORT):
        if not (path / name).is_file():
            raise ExpertlmError(f"{path}: not a classifier folder (no {name}; train one with "
                                "`expertlm classifier train`)")  # fmt: skip
    settings = read_json(path / VECTORIZER)
    if not isinstance(settings, dict) or settings.get("format") != FORMAT:
        raise ExpertlmError(f"{path / VECTORIZER}: not a {FORMAT} vectorizer file")
    try:
        vectorizer = HashedNgrams(n_features=int(settings["n_features"]),
                                  ngram_max=int(settings["ngram_max"]),
                                  lowercase=bool(settings["lowercase"]),
                                  max_chars=settings.get("max_chars"))  # fmt: skip
    except (KeyError, TypeError, ValueError) as e:
        raise ExpertlmError(f"{path / VECTORIZER}: bad vectorizer settings ({e})") from None
    try:
        with np.load(path / WEIGHTS, allow_pickle=False) as z:
            coef, intercept = (
                np.asarray(z["coef"], np.float64),
                np.asarray(z["intercept"], np.float64),
            )
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
        raise ExpertlmError(f"{path / WEIGHTS}: not a weights file ({e})") from None
    if coef.shape != (vectorizer.n_features,) or intercept.shape != (1,):
        raise ExpertlmError(f"{path / WEIGHTS}: coef has shape {coef.shape} and intercept "
                            f"{intercept.shape}; {VECTORIZER} says ({vectorizer.n_features},) and (1,)")  # fmt: skip
    if not (np.isfinite(coef).all() and np.isfinite(intercept).all()):
        raise ExpertlmError(f"{path / WEIGHTS}: the weights are not all finite")
    report = read_json(path / REPORT)
    if not isinstance(report, dict) or report.get("format") != REPORT_FORMAT:
        raise ExpertlmError(f"{path / REPORT}: not a {REPORT_FORMAT} file")
    return Classifier(path, vectorizer, coef, float(intercept[0]), report)


def save_weights(path: Path, coef: np.ndarray, intercept: float) -> None:
    """An `.npz` of `coef` and `intercept` with fixed timestamps (the same weights give the same
    bytes, so the classifier's hash is its content's)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, arr in (("coef", coef), ("intercept", np.array([intercept]))):
            buf = io.BytesIO()
            np.lib.format.write_array(
                buf, np.ascontiguousarray(arr, dtype=np.float64), allow_pickle=False
            )
            z.writestr(zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0)),
                       buf.getvalue(), compress_type=zipfile.ZIP_DEFLATED)  # fmt: skip


# --- reading documents: corpus folders and source files ---------------------------------------


def is_corpus(path: Path) -> bool:
    return path.is_dir() and (path / MANIFEST).is_file() and (path / "train.jsonl.gz").is_file()


def input_files(paths: list[str | Path], exclude: Path | None = None) -> list[Path]:
    """The files the documents come from: a corpus folder's split files, or the source files
    that `corpus build` would read."""
    if not paths:
        raise ExpertlmError("no source given: name at least one corpus folder or file")
    files: list = []
    for p in map(Path, paths):
        if is_corpus(p):
            files += [p / f"{s}.jsonl.gz" for s in SPLITS if (p / f"{s}.jsonl.gz").is_file()]
        else:
            files += expand_sources([p], exclude=exclude)
    return files


def describe_inputs(paths: list[str | Path], exclude: Path | None = None) -> list[dict]:
    return [describe_source(f) for f in input_files(paths, exclude)]


def iter_documents(
    paths: list[str | Path],
    cfg: CorpusConfig,
    stats: Counter,
    on_bytes: Callable[[int], None] = lambda n: None,
    exclude: Path | None = None,
) -> Iterator[dict]:
    """Corpus documents `{"id", "text", "year", "source", ...}` of corpus folders (as they are,
    every field kept) and source files (read as `corpus build` reads them, not cleaned; the
    fields `cfg.keep_fields` copied)."""
    for p in map(Path, paths):
        if is_corpus(p):
            for split in SPLITS:
                if (p / f"{split}.jsonl.gz").is_file():
                    for doc in iter_docs(p, split, on_bytes):
                        yield doc if doc.get("id") else {**doc, "id": _text_id(doc["text"])}
            continue
        files = expand_sources([p], exclude=exclude)
        roots = (p,) if p.is_dir() else ()
        reader = Reader(cfg, stats, on_bytes, roots)
        for f in files:
            for raw in reader.read(f):
                yield {"id": raw.id or _text_id(raw.text), "text": raw.text, "year": raw.year,
                       "source": raw.source, **raw.extra}  # fmt: skip
        reader.check_fields()


def _text_id(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


# --- labelling rules -------------------------------------------------------------------------


def _lines(path: Path, what: str) -> list[str]:
    try:
        raw = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ExpertlmError(f"{path}: cannot be read ({e.strerror or e})") from None
    except UnicodeDecodeError as e:
        raise ExpertlmError(f"{path}: not valid UTF-8 ({e.reason})") from None
    items = [s.strip() for s in raw.splitlines() if s.strip() and not s.lstrip().startswith("#")]
    if not items:
        raise ExpertlmError(f"{path}: no {what} (one per line; lines starting with # are comments)")
    return items


def keyword_pattern(keywords: list[str]) -> re.Pattern:
    """Case-insensitive whole-word matches of any keyword or phrase (longest first)."""
    alts = "|".join(re.escape(k) for k in sorted(set(keywords), key=len, reverse=True))
    return re.compile(rf"(?<!\w)(?:{alts})(?!\w)", re.IGNORECASE)


def _as_text(value) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def field_matches(value, values: set[str]) -> bool:
    if isinstance(value, list):
        return any(_as_text(v) in values for v in value)
    return value is not None and _as_text(value) in values


# --- training --------------------------------------------------------------------------------


def classifier_train(
    out: str | Path,
    *,
    positive: list[str | Path] = (),  # type: ignore[assignment]
    negative: list[str | Path] = (),  # type: ignore[assignment]
    keywords: str | Path | None = None,
    values: str | Path | None = None,
    overwrite: bool = False,
    show_progress: bool = True,
    **options,
) -> Path:
    """Train a classifier of the field into folder `out`. `options` are the fields of
    `ClassifierConfig`. Returns the folder."""
    t0 = time.time()
    cfg = ClassifierConfig.from_options(options, source="option")
    out = Path(out)
    positive, negative = list(positive), list(negative)
    rule = _rule(cfg, positive, negative, keywords, values)
    check_output_dir(
        out, overwrite, inputs=[*positive, *negative, *filter(None, [keywords, values])]
    )
    read_cfg = CorpusConfig(
        **{k: getattr(cfg, k) for k in ("text_field", "id_field", "skip_bad") if k in cfg.model_fields_set},
        keep_fields=[cfg.field] if cfg.field else [],
    )
    groups = (
        [(positive, 1), (negative, 0)]
        if rule["kind"] == "sources"
        else [([*positive, *negative], None)]
    )
    inputs = {name: describe_inputs(paths, out) if paths else []
              for name, paths in (("positive", positive), ("negative", negative))}  # fmt: skip
    total = sum(i["bytes"] for v in inputs.values() for i in v)
    vec = HashedNgrams(cfg.n_features, cfg.ngram_max, max_chars=cfg.max_chars)
    label = _labeller(cfg, rule)
    reuse_freed_memory()

    stats: Counter = Counter()
    parts: dict[bool, list] = {False: [], True: []}  # held out?: [(X, y)]
    seen_field = False
    with bytes_progress("docs", show_progress) as bar:
        task = bar.add_task("classifier train: features", total=total, count=0)
        n = 0
        for paths, fixed in groups:
            batch: dict[bool, tuple[list, list]] = {False: ([], []), True: ([], [])}
            chars = 0
            for doc in iter_documents(paths, read_cfg, stats, lambda k: bar.advance(task, k), out):
                y = fixed if fixed is not None else label(doc)
                seen_field = seen_field or (cfg.field is not None and cfg.field in doc)
                held = in_val(str(doc["id"]), cfg.holdout_frac, cfg.seed)
                batch[held][0].append(doc["text"])
                batch[held][1].append(y)
                chars += len(doc["text"])
                n += 1
                if chars >= BATCH_CHARS:
                    _flush(vec, batch, parts)
                    chars = 0
                    bar.update(task, count=n)
            _flush(vec, batch, parts)
        bar.update(task, completed=total, count=n)
    if (
        cfg.field is not None
        and not seen_field
        and any(is_corpus(Path(p)) for p in positive + negative)
    ):
        raise ExpertlmError(f"no document has the field '{cfg.field}' (--field)")

    X, y = _stack(parts[False], cfg.n_features)
    Xh, yh = _stack(parts[True], cfg.n_features)
    n_pos, n_neg = int(y.sum()), int(len(y) - y.sum())
    if n_pos == 0 or n_neg == 0:
        what = "positive" if n_pos == 0 else "negative"
        raise ExpertlmError(f"no {what} training documents ({n_pos} positive, {n_neg} negative "
                            f"of {len(y)} outside the held-out share; {_rule_text(rule)})")  # fmt: skip
    clf, class_weight = _fit(X, y, cfg, show_progress)
    coef, intercept = clf.coef_[0].astype(np.float64), float(clf.intercept_[0])

    with atomic_dir(out, overwrite) as tmp:
        write_json(tmp / VECTORIZER, vec.settings())
        save_weights(tmp / WEIGHTS, coef, intercept)
        heldout = _evaluate(Xh, yh, coef, intercept, tmp / PR_CURVE)
        report = {
            "format": REPORT_FORMAT,
            "vectorizer": vec.settings(),
            "model": {"kind": "logistic regression, SGDClassifier(loss='log_loss') partial_fit",
                      "alpha": cfg.alpha, "epochs": cfg.epochs, "batch_docs": cfg.batch_docs,
                      "seed": cfg.seed, "class_weight": class_weight,
                      "nonzero_weights": int(np.count_nonzero(coef))},
            "labels": rule,
            "threshold": {"default": DEFAULT_THRESHOLD, "best_f1": heldout.get("best_f1", {}).get("threshold")},
            "train": {"docs": len(y), "positive": n_pos, "negative": n_neg},
            "heldout": heldout,
            "inputs": inputs,
            "config": cfg.model_dump(mode="json"),
            "outputs": {f: sha256_file(tmp / f) for f in (VECTORIZER, WEIGHTS)},
            "bad_records": stats["bad_record"],
            "wall_s": round(time.time() - t0, 3),
            **provenance(),
        }  # fmt: skip
        write_json(tmp / REPORT, report)

    info(f"classifier: {n_pos:,} positive and {n_neg:,} negative training documents -> {out}")
    d = heldout.get("at_default")
    if d:
        info(f"  held out ({heldout['positive']:,} + {heldout['negative']:,}): precision "
             f"{d['precision']:.3f}, recall {d['recall']:.3f}, F1 {d['f1']:.3f} at {DEFAULT_THRESHOLD}; "
             f"ROC-AUC {heldout['roc_auc']:.3f}")  # fmt: skip
    return out


def _rule(cfg: ClassifierConfig, positive: list, negative: list, keywords, values) -> dict:
    if keywords is not None and (cfg.field is not None or values is not None):
        raise ExpertlmError("--keywords and --field/--values: label by one rule, not both")
    if (cfg.field is None) != (values is None):
        raise ExpertlmError("--field and --values go together: --field NAME --values FILE")
    if keywords is not None:
        words = _lines(Path(keywords), "keywords")
        if not positive and not negative:
            raise ExpertlmError(
                "--keywords labels the documents of --positive/--negative sources: give some"
            )
        return {"kind": "keywords", "file": str(keywords), "keywords": len(words),
                "min_hits": cfg.min_keyword_hits, "_items": words}  # fmt: skip
    if values is not None:
        vals = _lines(Path(values), "values")
        if not positive and not negative:
            raise ExpertlmError(
                "--field/--values labels the documents of --positive/--negative sources: give some"
            )
        return {
            "kind": "field",
            "field": cfg.field,
            "file": str(values),
            "values": len(vals),
            "_items": vals,
        }
    if not positive or not negative:
        missing = "--positive" if not positive else "--negative"
        raise ExpertlmError(f"no {missing} source: give both --positive and --negative, or a rule "
                            "(--keywords FILE, or --field NAME --values FILE)")  # fmt: skip
    return {"kind": "sources"}


def _rule_text(rule: dict) -> str:
    if rule["kind"] == "keywords":
        return f"labels from {rule['file']}, --min-keyword-hits {rule['min_hits']}"
    if rule["kind"] == "field":
        return f"labels from field '{rule['field']}' in {rule['file']}"
    return "labels from --positive and --negative"


def _labeller(cfg: ClassifierConfig, rule: dict) -> Callable[[dict], int]:
    items = rule.pop("_items", None)
    if rule["kind"] == "keywords":
        pattern = keyword_pattern(items)  # type: ignore[arg-type]
        return lambda doc: int(
            sum(1 for _ in pattern.finditer(doc["text"])) >= cfg.min_keyword_hits
        )
    if rule["kind"] == "field":
        wanted = set(items)  # type: ignore[arg-type]
        return lambda doc: int(field_matches(doc.get(cfg.field), wanted))  # type: ignore[arg-type]
    return lambda doc: 0


def _flush(vec: HashedNgrams, batch: dict, parts: dict) -> None:
    for held, (texts, labels) in batch.items():
        if texts:
            parts[held].append((vec.transform(texts), np.array(labels, dtype=np.int64)))
            texts.clear()
            labels.clear()


def _stack(parts: list, n_features: int):
    from scipy.sparse import csr_matrix, vstack

    if not parts:
        return csr_matrix((0, n_features)), np.zeros(0, np.int64)
    return vstack([x for x, _ in parts], format="csr"), np.concatenate([y for _, y in parts])


def _fit(X, y: np.ndarray, cfg: ClassifierConfig, show_progress: bool):
    from sklearn.linear_model import SGDClassifier

    from expertlm.console import count_progress

    n = len(y)
    counts = np.bincount(y, minlength=2)
    weight = n / (2.0 * counts)  # balanced: each class weighs half
    sample_weight = weight[y]
    clf = SGDClassifier(loss="log_loss", alpha=cfg.alpha, random_state=cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    steps = cfg.epochs * -(-n // cfg.batch_docs)
    with count_progress(show_progress) as bar:
        task = bar.add_task("classifier train: SGD", total=steps)
        for _ in range(cfg.epochs):
            order = rng.permutation(n)
            for i in range(0, n, cfg.batch_docs):
                idx = order[i : i + cfg.batch_docs]
                clf.partial_fit(
                    X[idx], y[idx], classes=np.array([0, 1]), sample_weight=sample_weight[idx]
                )
                bar.advance(task)
    return clf, {"0": float(weight[0]), "1": float(weight[1])}


def prf(y: np.ndarray, pred: np.ndarray) -> dict:
    """Precision, recall and F1 of the positive class (0 where undefined)."""
    tp = int(np.sum(pred & (y == 1)))
    fp = int(np.sum(pred & (y == 0)))
    fn = int(np.sum(~pred & (y == 1)))
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": p, "recall": r, "f1": f, "tp": tp, "fp": fp, "fn": fn}


def _evaluate(X, y: np.ndarray, coef: np.ndarray, intercept: float, png: Path) -> dict:
    """Held-out scores and the PR curve (nothing but counts when a class is missing)."""
    pos, neg = int(y.sum()), int(len(y) - y.sum())
    out: dict = {"docs": len(y), "positive": pos, "negative": neg, "pr_curve": None}
    if pos == 0 or neg == 0:
        warn(f"the held-out share has {pos} positive and {neg} negative documents: no held-out "
             "scores (more documents, or a larger --holdout-frac)")  # fmt: skip
        return out
    from sklearn.metrics import precision_recall_curve, roc_auc_score

    prob = sigmoid(X @ coef + intercept)
    precision, recall, thresholds = precision_recall_curve(y, prob)
    f1 = np.where(
        precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-300), 0
    )
    best = int(np.argmax(f1[:-1])) if len(thresholds) else 0
    best_t = float(thresholds[best]) if len(thresholds) else DEFAULT_THRESHOLD
    out |= {
        "roc_auc": float(roc_auc_score(y, prob)),
        "at_default": {"threshold": DEFAULT_THRESHOLD, **prf(y, prob >= DEFAULT_THRESHOLD)},
        "best_f1": {"threshold": best_t, **prf(y, prob >= best_t)},
        "pr_curve": PR_CURVE,
    }
    _plot_pr(recall, precision, out, png)
    return out


def _plot_pr(recall: np.ndarray, precision: np.ndarray, scores: dict, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4), dpi=100)
    ax.plot(recall, precision, lw=1.5)
    for key, marker in (("at_default", "o"), ("best_f1", "s")):
        s = scores[key]
        ax.plot(
            [s["recall"]],
            [s["precision"]],
            marker,
            label=f"threshold {s['threshold']:.3g} (F1 {s['f1']:.3f})",
        )
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1.01), ylim=(0, 1.01),
           title=f"held out: {scores['positive']} + {scores['negative']} documents, "
                 f"ROC-AUC {scores['roc_auc']:.3f}")  # fmt: skip
    ax.title.set_fontsize(9)
    ax.legend(loc="lower left", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, metadata={"Software": None})
    plt.close(fig)
