"""Exam scoring with lm-evaluation-harness's conventions, beside the perplexity rule.

An exam item is a question and N choices (`Item` with a context). lm-eval's `multiple_choice`
task turns it into N loglikelihood requests `(context, target_delimiter + choice)` and scores
(`ConfigurableTask.process_results`):

- `acc`: the choice with the highest summed log-likelihood of its continuation tokens;
- `acc_norm`: the same divided by the choice's length in characters;
- `acc_bytes`: divided by its length in UTF-8 bytes.

The choice lengths are the choices' own (without the delimiter), and the highest value is
numpy's `argmax` (the first of equal values), both as lm-eval has them. The context is the
question with the prompt template applied; the split into tokens is `Scorer.encode_pair`
(lm-eval's `_encode_pair`). Log-likelihoods come from the same per-token NLL arrays as every
other score (`scoring.Scorer`): when the request's tokens are the rule's prompt (the usual case:
the template wraps the question, the choice follows after the delimiter), the rule's arrays are
reused and nothing runs twice. Texts longer than the model's context are scored with the sliding
window here; lm-eval truncates them on the left, so only texts that fit compare.
"""

from __future__ import annotations

import numpy as np

from expertlm.eval import stats
from expertlm.eval.benchmark import Item, apply_template

# items.csv columns of the lm-eval metrics (0/1 per item) and the summary.json keys.
METRICS = ("acc", "acc_norm", "acc_bytes")
CONVENTIONS = ("lm-evaluation-harness multiple_choice: requests (context, target_delimiter + "
               "choice); acc = argmax of summed log-likelihoods, acc_norm = argmax of "
               "log-likelihood / characters of the choice, acc_bytes = per UTF-8 byte; argmax "
               "takes the first of equal values")  # fmt: skip


def exam_context(item: Item, template: str) -> tuple[str, int]:
    """The request's context, the question in the template (not stripped: lm-eval's
    `doc_to_text` as given), and where the question starts in it; "" for an item without a
    question (lm-eval then conditions on the BOS token)."""
    if not item.context:
        return "", 0
    before, after = template.split("{abstract}")
    return before + item.context + after, len(before)


def prompt_texts(item: Item, template: str, delimiter: str) -> list[tuple[str, int]]:
    """The whole text of each choice as the perplexity rule scores it (stripped, as the rule
    strips every prompt), and where the item's own text starts in it (for --exclude-template).
    With a question: the templated question, the delimiter, the choice (the text lm-eval's
    request joins); without: the templated choice."""
    if not item.context:
        return [apply_template(template, c) for c in item.choices]
    ctx, start = exam_context(item, template)
    out = []
    for c in item.choices:
        text = ctx + delimiter + c
        lead = len(text) - len(text.lstrip())
        out.append((text.strip(), max(0, start - lead)))
    return out


def request_tokens(scorer, item: Item, template: str, delimiter: str) -> list[tuple[list[int], int]]:
    """Each choice's lm-eval request as one token sequence and the index of its first
    continuation token."""
    ctx = exam_context(item, template)[0]
    out = []
    for c in item.choices:
        ctx_ids, cont_ids = scorer.encode_pair(ctx, delimiter + c)
        out.append((ctx_ids + cont_ids, len(ctx_ids)))
    return out


def exam_cells(scorer, items: list[Item], rule_seqs: list[list[list[int]]], rule_nlls: list,
               template: str, delimiter: str, share_prefix: bool = True) -> list[dict]:  # fmt: skip
    """items.csv cells of the lm-eval metrics for each item: `ll_k` (log-likelihood of choice
    k's continuation) and `acc`, `acc_norm`, `acc_bytes` (1 when that rule picks the answer)."""
    from expertlm.eval.scoring import reduce_nll

    requests = [request_tokens(scorer, it, template, delimiter) for it in items]
    # the rule's arrays serve where the request is the very same token sequence
    todo = [i for i, (req, seqs) in enumerate(zip(requests, rule_seqs, strict=True))
            if [ids for ids, _ in req] != seqs]  # fmt: skip
    nlls = dict(enumerate(rule_nlls))
    if todo:
        seqs = [[ids for ids, _ in requests[i]] for i in todo]
        if share_prefix:
            got = scorer.choice_nll(seqs)
        else:
            flat = iter(scorer.token_nll([s for item in seqs for s in item]))
            got = [[next(flat) for _ in item] for item in seqs]
        nlls.update(zip(todo, got, strict=True))
    out = []
    for i, it in enumerate(items):
        ll = [-reduce_nll(nll, start, "sum") for nll, (_, start) in zip(nlls[i], requests[i], strict=True)]
        out.append({f"ll_{j}": v for j, v in enumerate(ll)} | choose(ll, it.choices, it.answer))
    return out


def choose(ll: list[float], choices: tuple[str, ...], answer: int) -> dict:
    """lm-eval's three accuracies of one item (`process_results` of multiple_choice)."""
    ll_arr = np.array(ll)
    chars = np.array([float(len(c)) for c in choices])
    n_bytes = np.array([float(len(c.encode("utf-8"))) for c in choices])
    return {
        "acc": int(np.argmax(ll_arr) == answer),
        "acc_norm": int(np.argmax(ll_arr / chars) == answer),
        "acc_bytes": int(np.argmax(ll_arr / n_bytes) == answer),
    }


def metrics_summary(rows: list[dict], seed: int = 0) -> dict:
    """summary.json's `metrics`: each lm-eval accuracy with its SEM and bootstrap CI (and the
    perplexity rule beside them as `acc_ppl`, the headline `accuracy`)."""
    out = {
        m: stats.accuracy_summary(np.array([r[m] for r in rows], dtype=float), seed=seed)
        for m in METRICS
    }
    out["acc_ppl"] = stats.accuracy_summary(np.array([r["correct"] for r in rows], dtype=float), seed=seed)
    out["conventions"] = CONVENTIONS
    return out


REPORT_HEADERS = ["variant", "seed", "benchmark", *METRICS, "acc_ppl", "n"]


def report_rows(data: dict, take) -> list[list]:
    """The report's exam table: each result with lm-eval metrics, every number through
    `take(table, source, key, value, **labels)` (the report's `Numbers.take`, so it is sourced)."""
    rows = []
    for name, v in data.items():
        for seed, s in v["seeds"].items():
            for b, (path, summ) in s["results"].items():
                if "metrics" not in summ:
                    continue
                lab = {"variant": name, "seed": seed, "benchmark": b}
                cells = []
                for m in (*METRICS, "acc_ppl"):
                    r = summ["metrics"][m]
                    acc = take("exams", path / "summary.json", f"metrics.{m}.accuracy", r["accuracy"], **lab)
                    cells.append(f"{acc:.3f} ({r['ci95'][0]:.3f}-{r['ci95'][1]:.3f})")
                rows.append([v["spec"]["label"], seed, b, *cells, summ["n"]])
    return rows
