"""The evaluation stages: `eval bench`, `eval ppl`, `eval compare`, `eval humans`.

- `eval_bench`: score every choice of every benchmark item (both versions, for BrainBench;
  `scoring.py`), choose the one with the lowest perplexity (a minimum shared by several: a tie,
  counted wrong), and write `items.csv` (one row per item) and `summary.json` (accuracy with SEM
  and bootstrap CI, ties, per-section accuracy, calibration, the isolated-sentence variant when
  asked for, and what was scored how).
- `eval_ppl`: bits per byte and per-token perplexity of a model on a corpus split (the
  forgetting measure for continued pretraining); bits per byte compares across tokenizers.
- `eval_compare`: two results folders on the same items: McNemar's exact test and the paired
  bootstrap CI of the accuracy difference.
- `eval_humans`: the human baselines from participant data (`humans.py`).
"""

from __future__ import annotations

import csv
import math
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from expertlm.config import EvalBenchConfig, EvalCompareConfig, EvalHumansConfig, EvalPplConfig
from expertlm.console import count_progress, info, warn
from expertlm.errors import ExpertlmError
from expertlm.eval import stats
from expertlm.eval.benchmark import isolated_items, load_benchmark, resolve_template
from expertlm.eval.exams import METRICS, exam_cells, metrics_summary, prompt_texts
from expertlm.io import (
    atomic_dir,
    check_output,
    check_output_dir,
    csv_rows,
    provenance,
    read_json,
    sha256_file,
    write_json,
)

# items.csv when every item is a BrainBench pair (original, altered; the original right); choice
# is original, altered or tie.
ITEM_COLUMNS = ("id", "section", "parent", "tokens_original", "tokens_altered", "nll_original",
                "nll_altered", "ppl_original", "ppl_altered", "choice", "correct", "confidence",
                "log_confidence", "windowed")  # fmt: skip


def choice_columns(k: int) -> tuple[str, ...]:
    """items.csv's columns for a benchmark with other items (up to `k` choices an item; cells
    past an item's own number of choices are empty); choice is the chosen index or tie; `correct`
    is the perplexity rule's, `acc`, `acc_norm`, `acc_bytes` lm-eval's (`exams.py`), from the
    log-likelihoods `ll_k` of each choice's continuation."""
    per_choice = tuple(f"{what}_{j}" for what in ("tokens", "nll", "ppl", "ll") for j in range(k))
    return ("id", "section", "parent", "n_choices", "answer", "choice", "correct", *METRICS,
            *per_choice, "confidence", "log_confidence", "windowed")  # fmt: skip


def model_identity(name: str | Path) -> dict:
    """What a result records about its model: the path (or hub id) and its `models.model_hash`."""
    from expertlm.models import model_hash

    path = Path(name)
    return {"model": str(name), "model_hash": model_hash(path) if path.is_dir() else None}


def _scorer(model: str | Path, cfg, bos):
    from expertlm.eval.scoring import Scorer

    return Scorer.load(model, device=cfg.device, dtype=cfg.dtype, batch_size=cfg.batch_size,
                       stride=cfg.stride, padding_side=cfg.padding_side, bos=bos)  # fmt: skip


# --- eval bench ------------------------------------------------------------------------------


def score_items(scorer, items, cfg: EvalBenchConfig, template: str, show_progress: bool,
                label: str = "eval") -> list[dict]:  # fmt: skip
    """Score every choice of every item: one row per item, in the layout of items.csv
    (`ITEM_COLUMNS` when every item is a BrainBench pair, else `choice_columns`)."""
    pair_layout = all(it.is_pair for it in items)
    encoded = [
        [scorer.encode(prompt, start if not cfg.score_template else 0)
         for prompt, start in prompt_texts(it, template, cfg.target_delimiter)]
        for it in items
    ]  # fmt: skip
    rows = []
    chunk = 16  # items per scoring call: the bar moves, and batches still fill
    with count_progress(show_progress) as bar:
        task = bar.add_task(label, total=len(items))
        for k in range(0, len(items), chunk):
            part = encoded[k : k + chunk]
            seqs = [[e.ids for e in versions] for versions in part]
            if cfg.share_prefix:
                nlls = scorer.choice_nll(seqs)
            else:
                flat = iter(scorer.token_nll([s for item in seqs for s in item]))
                nlls = [[next(flat) for _ in item] for item in seqs]
            cells = ([{}] * len(part) if pair_layout else
                     exam_cells(scorer, items[k : k + chunk], seqs, nlls, template,
                                cfg.target_delimiter, cfg.share_prefix))  # fmt: skip
            for it, enc, nll, cell in zip(items[k : k + chunk], part, nlls, cells, strict=True):
                rows.append(_item_row(it, enc, nll, cfg, scorer.context, pair_layout) | cell)
            bar.advance(task, len(part))
    return rows


def _item_row(it, encoded, nlls, cfg, context: int, pair: bool) -> dict:
    from expertlm.eval.scoring import reduce_nll

    firsts = [e.first if not cfg.score_template else 0 for e in encoded]
    nll = [reduce_nll(n, f, cfg.reduction) for n, f in zip(nlls, firsts, strict=True)]
    if any(math.isnan(x) for x in nll):
        raise ExpertlmError(
            f"item {it.id}: a version has no scored tokens (a one-token text; try --bos)"
        )
    tokens = [len(n) - max(0, f - 1) for n, f in zip(nlls, firsts, strict=True)]
    ppl = [_exp(x) for x in nll]
    # exp is monotone: comparing NLLs is comparing perplexities, without overflow for sums
    best, second = sorted(range(len(nll)), key=nll.__getitem__)[:2]
    chosen = best if nll[best] < nll[second] else None  # None: the lowest is shared, a tie
    log_conf = nll[second] - nll[best]
    conf = abs(ppl[second] - ppl[best]) if cfg.reduction == "mean" else log_conf
    shared = {
        "correct": int(chosen == it.answer), "confidence": conf, "log_confidence": log_conf,
        # the scorer windows exactly the texts longer than the context
        "windowed": int(max(len(e.ids) for e in encoded) > context),
    }  # fmt: skip
    head = {"id": it.id, "section": it.section, "parent": it.parent}
    if pair:
        return head | {
            "tokens_original": tokens[0], "tokens_altered": tokens[1], "nll_original": nll[0],
            "nll_altered": nll[1], "ppl_original": ppl[0], "ppl_altered": ppl[1],
            "choice": "tie" if chosen is None else ("original", "altered")[chosen], **shared,
        }  # fmt: skip
    per_choice = {f"{what}_{j}": v for what, values in (("tokens", tokens), ("nll", nll), ("ppl", ppl))
                  for j, v in enumerate(values)}  # fmt: skip
    return head | {"n_choices": len(it.choices), "answer": it.answer,
                   "choice": "tie" if chosen is None else chosen, **shared, **per_choice}  # fmt: skip


def _exp(x: float) -> float:
    return math.exp(x) if x < 709 else math.inf


def bench_summary(rows: list[dict], seed: int = 0, bins: int = 10, reduction: str = "mean") -> dict:
    """Accuracy (ties wrong), SEM, bootstrap CI, per-section accuracy and calibration."""
    correct = np.array([r["correct"] for r in rows], dtype=float)
    conf = np.array([r["confidence"] for r in rows], dtype=float)
    out = stats.accuracy_summary(correct, seed=seed)
    out["ties"] = sum(r["choice"] == "tie" for r in rows)
    out["per_section"] = stats.per_group([r["section"] for r in rows], correct)
    gap = "|{0}(altered) - {0}(original)|" if _pair_layout(rows) else "{0}(second) - {0}(lowest)"
    out["calibration"] = {
        "confidence": gap.format("PPL")
        if reduction == "mean"
        else gap.format("NLL") + " (summed NLLs: perplexities overflow)",
        "bins": stats.calibration_bins(conf, correct, bins),
        "log_bins": stats.calibration_bins([r["log_confidence"] for r in rows], correct, bins),
        "regression": stats.calibration_regression(conf, correct, seed=seed),
    }
    if not _pair_layout(rows):
        out["metrics"] = metrics_summary(rows, seed=seed)
    return out


def _pair_layout(rows: list[dict]) -> bool:
    """Are these `score_items` rows in the BrainBench layout (`ITEM_COLUMNS`)?"""
    return "n_choices" not in rows[0]


def _write_items(path: Path, rows: list[dict]) -> None:
    columns = (
        ITEM_COLUMNS if _pair_layout(rows) else choice_columns(max(r["n_choices"] for r in rows))
    )
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=columns, lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: (repr(v) if isinstance(v, float) else v) for k, v in r.items()})


def read_items(results: str | Path, column: str = "correct") -> list[dict]:
    """The rows of a results folder's items.csv, in either layout (`column` parsed: correct, or
    an exam's acc, acc_norm, acc_bytes)."""
    path = Path(results) / "items.csv" if Path(results).is_dir() else Path(results)
    if not path.is_file():
        raise ExpertlmError(
            f"{results}: no items.csv (not an `expertlm eval bench` results folder)"
        )
    rows = []
    for line, r in csv_rows(path, ("id", column, "choice")):
        try:
            r[column] = int(r[column])
        except ValueError:
            raise ExpertlmError(f"{path}:{line}: column '{column}': not 0/1") from None
        rows.append(r)
    return rows


def eval_bench(model: str | Path, bench: str | Path, out: str | Path, *, overwrite: bool = False,
               show_progress: bool = True, **options) -> dict:  # fmt: skip
    """Score `model` on the benchmark `bench`; write items.csv and summary.json to `out`."""
    cfg = EvalBenchConfig.from_options(options)
    out = Path(out)
    check_output_dir(out, overwrite, inputs=[model, bench])
    template = resolve_template(cfg.template)
    benchmark = load_benchmark(bench, repair=cfg.repair)
    for p in benchmark.problems[:20]:
        warn(p.message())
    if len(benchmark.problems) > 20:
        warn(
            f"{bench}: {len(benchmark.problems) - 20} more rows with marker problems (summary.json lists all)"
        )
    if cfg.repair:
        info(f"{bench}: --repair: {benchmark.repaired} rows re-derived from their markers, "
             f"{benchmark.dropped} dropped, {len(benchmark.items)} items kept")  # fmt: skip
    if cfg.isolated and not all(it.is_pair for it in benchmark.items):
        raise ExpertlmError(
            f"{bench}: --isolated needs BrainBench items (an original and an altered version); "
            f"this benchmark has items with other choices"
        )
    summary = _scored(model, out, cfg.checkpoints, "bench", overwrite, show_progress,
                      lambda m, folder, label: _bench_into(m, bench, benchmark, cfg, template, folder,
                                                           show_progress, label))  # fmt: skip
    if cfg.checkpoints is not None:
        return summary
    acc = summary["accuracy"]
    lo, hi = summary["ci95"]
    info(f"accuracy {acc:.3f} (95% CI {lo:.3f}-{hi:.3f}, n={summary['n']}, ties={summary['ties']}) "
         f"at {summary['items_per_s'] or 0:.2f} items/s -> {out}")  # fmt: skip
    if "metrics" in summary:
        info("lm-eval conventions: " + ", ".join(f"{m} {summary['metrics'][m]['accuracy']:.3f}" for m in METRICS))
    return summary


def _scored(model, out: Path, checkpoints: str | None, kind: str, overwrite: bool, show_progress: bool,
            into: Callable[[Any, Path, str], dict]) -> dict:
    """`into(model, folder, label)` into `out` (atomically); with `checkpoints`, over every
    checkpoint of the run `model` (eval/checkpoints.py), returning its table's summary."""
    if checkpoints is not None:
        from expertlm.eval.checkpoints import over_checkpoints

        return over_checkpoints(model, out, checkpoints, kind, overwrite, show_progress, into)
    with atomic_dir(out, overwrite=overwrite) as tmp:
        return into(model, tmp, {"bench": "eval", "ppl": "ppl"}[kind])  # (the progress label)


def _bench_into(model, bench, benchmark, cfg: EvalBenchConfig, template: str, folder: Path,
                show_progress: bool, label: str = "eval") -> dict:  # fmt: skip
    """Score `model` on a loaded benchmark; write items.csv and summary.json into `folder`."""
    scorer = _scorer(model, cfg, cfg.bos)
    t0 = time.time()
    rows = score_items(scorer, benchmark.items, cfg, template, show_progress, label)
    wall = time.time() - t0
    summary = bench_summary(rows, seed=cfg.seed, bins=cfg.bins, reduction=cfg.reduction)
    iso_rows = None
    if cfg.isolated:
        iso = isolated_items(benchmark.items)
        if not iso:
            raise ExpertlmError(f"{bench}: no sentence carries a change (isolated sentences)")
        iso_rows = score_items(scorer, iso, cfg, template, show_progress, "isolated")
        summary["isolated"] = isolated_summary(iso_rows, seed=cfg.seed)
    summary |= {
        "format": "expertlm.eval/1",
        **model_identity(model),
        "benchmark": benchmark.report(),
        "scoring": {
            "rule": "choose the version with the lower perplexity exp(NLL); equal perplexities are ties, counted wrong",
            "template": template, "reduction": cfg.reduction, "score_template": cfg.score_template,
            "target_delimiter": cfg.target_delimiter,
            "bos": {None: "tokenizer default", True: "prepended", False: "none"}[cfg.bos],
            "shared_prefix": cfg.share_prefix, "context": scorer.context, "stride": scorer.stride,
            "windowed_items": sum(r["windowed"] for r in rows),
            "windowed_note": "texts longer than the context are scored with a sliding window "
                             "(each token once, with at least context - stride tokens of context)",
            "device": str(scorer.device), "dtype": str(next(scorer.model.parameters()).dtype),
            "logprob_dtype": "float32", "batch_size": cfg.batch_size or "auto",
        },
        "wall_s": wall, "items_per_s": len(rows) / wall if wall > 0 else None,
        "provenance": provenance(),
    }  # fmt: skip
    _write_items(folder / "items.csv", rows)
    if iso_rows is not None:
        _write_items(folder / "isolated_items.csv", iso_rows)
    write_json(folder / "summary.json", summary)
    return summary


def isolated_summary(rows: list[dict], seed: int = 0) -> dict:
    """Accuracy per sentence (as published) and aggregated per abstract (the mean, over
    abstracts, of the share of each abstract's sentences chosen correctly)."""
    out = stats.accuracy_summary(np.array([r["correct"] for r in rows], dtype=float), seed=seed)
    out["ties"] = sum(r["choice"] == "tie" for r in rows)
    per: dict[str, list[int]] = defaultdict(list)
    for r in rows:
        per[r["parent"]].append(r["correct"])
    shares = np.array([np.mean(v) for v in per.values()])
    out["per_abstract"] = {
        "abstracts": len(per),
        "accuracy": float(shares.mean()),
        "ci95": stats.bootstrap_ci(shares, seed=seed),
        "majority_correct": float(np.mean([np.mean(v) > 0.5 for v in per.values()])),
    }
    return out


# --- eval compare ----------------------------------------------------------------------------


def eval_compare(a: str | Path, b: str | Path, out: str | Path | None = None, **options) -> dict:
    """Paired comparison of two results folders on the same items (B minus A); the JSON also to
    `out` if given. `options` are the fields of `EvalCompareConfig` (seed, metric)."""
    cfg = EvalCompareConfig.from_options(options)
    seed, col = cfg.seed, cfg.metric
    rows_a, rows_b = read_items(a, col), read_items(b, col)
    ia = {r["id"]: r[col] for r in rows_a}
    ib = {r["id"]: r[col] for r in rows_b}
    if set(ia) != set(ib):
        only_a, only_b = len(set(ia) - set(ib)), len(set(ib) - set(ia))
        raise ExpertlmError(
            f"{a} and {b}: not the same items ({only_a} only in the first, {only_b} only in the "
            f"second); a paired comparison needs both scored on one benchmark"
        )
    ids = sorted(ia)
    ca = np.array([ia[i] for i in ids], dtype=float)
    cb = np.array([ib[i] for i in ids], dtype=float)
    result = {
        "a": str(a), "b": str(b), "n": len(ids), "metric": col,
        "accuracy_a": float(ca.mean()), "accuracy_b": float(cb.mean()),
        "b_minus_a": stats.paired_difference(ca, cb, seed=seed),
        "mcnemar": stats.mcnemar_exact(ca, cb),
    }  # fmt: skip
    if out is not None:
        out = Path(out)
        check_output(out, [a, b])
        out.parent.mkdir(parents=True, exist_ok=True)
        write_json(out, result)
    return result


def print_comparison(r: dict) -> None:
    """`eval compare`'s one-line summary on stdout."""
    d, m = r["b_minus_a"], r["mcnemar"]
    print(
        f"{r['n']} items: A {r['accuracy_a']:.3f}, B {r['accuracy_b']:.3f}, "
        f"B - A {d['difference']:+.3f} (95% CI {d['ci95'][0]:+.3f} to {d['ci95'][1]:+.3f}); "
        f"McNemar exact p = {m['p_value']:.4g} ({m['only_a_correct']} only A right, "
        f"{m['only_b_correct']} only B right)"
    )


# --- eval ppl --------------------------------------------------------------------------------


def eval_ppl(model: str | Path, corpus: str | Path, out: str | Path, *, overwrite: bool = False,
             show_progress: bool = True, **options) -> dict:  # fmt: skip
    """Bits per byte and per-token perplexity of `model` on a corpus split. Each document is
    scored after the end-of-text token (as in the shards), so every token and every byte counts."""
    from expertlm.corpus.docs import corpus_hash, iter_docs, split_file

    cfg = EvalPplConfig.from_options(options)
    out = Path(out)
    check_output_dir(out, overwrite, inputs=[model, corpus])
    path = split_file(corpus, cfg.split)
    texts = []
    for doc in iter_docs(corpus, cfg.split):
        if doc["text"].strip():
            texts.append(doc["text"])
        if cfg.max_docs and len(texts) >= cfg.max_docs:
            break
    if not texts:
        raise ExpertlmError(f"{path}: no documents to score")
    hashed = corpus_hash(corpus)
    result = _scored(model, out, cfg.checkpoints, "ppl", overwrite, show_progress,
                     lambda m, folder, label: _ppl_into(m, corpus, hashed, texts, cfg, folder,
                                                        show_progress, label))  # fmt: skip
    if cfg.checkpoints is not None:
        return result
    info(f"{result['bits_per_byte']:.4f} bits/byte, token perplexity {result['token_perplexity']:.2f} "
         f"over {result['tokens']:,} tokens of {len(texts):,} documents -> {out}")  # fmt: skip
    return result


def _ppl_into(model, corpus, hashed: str, texts: list[str], cfg: EvalPplConfig, folder: Path,
              show_progress: bool, label: str = "ppl") -> dict:  # fmt: skip
    """Bits per byte of `model` on `texts`; write ppl.json into `folder`."""
    scorer = _scorer(model, cfg, True)
    t0 = time.time()
    nll_sum, tokens, n_bytes = 0.0, 0, 0
    chunk = 16
    with count_progress(show_progress) as bar:
        task = bar.add_task(label, total=len(texts))
        for k in range(0, len(texts), chunk):
            part = texts[k : k + chunk]
            nlls = scorer.token_nll([scorer.encode(t).ids for t in part])
            for t, nll in zip(part, nlls, strict=True):
                nll_sum += float(nll.sum())
                tokens += len(nll)
                n_bytes += len(t.encode("utf-8"))
            bar.advance(task, len(part))
    wall = time.time() - t0
    result = {
        "format": "expertlm.ppl/1",
        **model_identity(model),
        "corpus": str(corpus), "corpus_hash": hashed, "split": cfg.split,
        "docs": len(texts), "tokens": tokens, "bytes": n_bytes, "nll_sum_nats": nll_sum,
        "bits_per_byte": nll_sum / math.log(2) / n_bytes, "loss": nll_sum / tokens,
        "token_perplexity": math.exp(nll_sum / tokens), "bits_per_token": nll_sum / math.log(2) / tokens,
        "bytes_per_token": n_bytes / tokens, "windowed_docs": scorer.windowed,
        "context": scorer.context, "stride": scorer.stride,
        "note": "bits per byte compares across tokenizers; per-token perplexity and loss (mean "
                "NLL in nats per token) do not",
        "wall_s": wall, "provenance": provenance(),
    }  # fmt: skip
    write_json(folder / "ppl.json", result)
    return result


# --- eval humans -----------------------------------------------------------------------------


def eval_humans(participants: str | Path, out: str | Path, *, overwrite: bool = False,
                **options) -> dict:  # fmt: skip
    """Human accuracy (pooled over trials), per section, top expertise, calibration."""
    from expertlm.eval.humans import human_summary, read_trials

    cfg = EvalHumansConfig.from_options(options)
    out = Path(out)
    check_output_dir(out, overwrite, inputs=[participants])
    trials = read_trials(participants)
    summary = human_summary(
        trials, items=cfg.items, top_pct=cfg.top_pct, bins=cfg.bins, seed=cfg.seed
    )
    summary |= {"format": "expertlm.humans/1", "participants_file": str(participants),
                "participants_sha256": sha256_file(participants), "provenance": provenance()}  # fmt: skip
    with atomic_dir(out, overwrite=overwrite) as tmp:
        write_json(tmp / "summary.json", summary)
    top = summary["top_expertise"]["accuracy"]
    top_s = f"{top:.3f}" if top is not None else "n/a (fewer than 1/top-pct trials per abstract)"
    info(f"humans ({cfg.items}-written items): accuracy {summary['accuracy']:.3f} over {summary['n']:,} trials "
         f"of {summary['participants']} participants; top {cfg.top_pct:.0%} expertise {top_s} -> {out}")  # fmt: skip
    return summary


def read_summary(results: str | Path) -> dict:
    return read_json(Path(results) / "summary.json")
