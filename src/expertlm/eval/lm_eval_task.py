"""lm-evaluation-harness glue of a benchmark exported by `expertlm bench export`.

This file is copied into the exported task folder as `utils.py`; it imports only the standard
library, `datasets` and `transformers` (what lm-eval itself needs), never expertlm. The task's
YAML names `load` as its `custom_dataset` and, for perplexity-rule items, `process_results`.
lm-eval passes the task's metadata and the `--model_args` (`pretrained=RUN`) to `load`.

- **Exams** (`expertlm_kind: exam`): each document is `context` (the question in the prompt
  template), `choices`, `answer`; lm-eval's own multiple_choice scoring gives `acc`,
  `acc_norm`, `acc_bytes`. With BOS `yes` the context starts with the tokenizer's BOS text
  (lm-eval's `tok_encode` then adds no other special token).
- **The perplexity rule** (`expertlm_kind: rule`, BrainBench): each version is one prompt
  whose score is its mean (or summed) NLL per predicted token, as `expertlm eval bench`
  scores it; the lowest wins, a shared lowest is a tie and counts wrong. lm-eval returns the
  log-likelihood of a continuation given a context, so every prompt is split where its scored
  tokens begin: after its first token (the first token is not predicted when no BOS comes
  first), after the template (with `score_template: false`), or not at all (context "", so
  lm-eval conditions on the BOS token: BOS `yes`, or a tokenizer that adds one by default).
  `load` counts the scored tokens with the model's tokenizer exactly as lm-eval's
  `_encode_pair` will split them, and `process_results` divides by that count.
"""

import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))


def load(**metadata):
    """The task's test split: the items of the JSONL beside this file, as lm-eval documents."""
    import datasets

    kind = metadata.get("expertlm_kind", "exam")
    bos = metadata.get("expertlm_bos", "auto")
    with open(os.path.join(HERE, metadata["expertlm_items"]), encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    tok = None
    if kind == "rule" or bos != "auto":
        tok = _tokenizer(metadata)
        _check_bos(tok, bos, metadata)
    if kind == "rule":
        score_template = metadata.get("expertlm_score_template", True)
        reduction = metadata.get("expertlm_reduction", "mean")
        rows = [_rule_doc(tok, r, bos, score_template, reduction) for r in rows]
    elif bos == "yes":
        bos_text = tok.decode([_bos_id(tok)])
        rows = [dict(r, context=bos_text + r["context"]) if r["context"] else r for r in rows]
    return {"test": datasets.Dataset.from_list(rows)}


def process_results(doc, results):
    """The perplexity rule: the version with the lowest mean (or summed) NLL is chosen."""
    scores = []
    for (ll, _), n in zip(results, doc["n_tokens"], strict=True):
        scores.append(-ll / n if doc["reduction"] == "mean" else -ll)
    best = min(scores)
    winners = [k for k, s in enumerate(scores) if s == best]
    return {"acc": int(len(winners) == 1 and winners[0] == doc["answer"])}


def _tokenizer(metadata):
    from transformers import AutoTokenizer

    name = metadata.get("tokenizer") or metadata.get("pretrained")
    if not name:
        raise ValueError("this task counts tokens with the model's tokenizer: run it with "
                         "--model_args pretrained=MODEL (or tokenizer=TOKENIZER)")
    return AutoTokenizer.from_pretrained(name)


def _bos_id(tok):
    return tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id


def _adds_bos(tok):
    return len(tok("a")["input_ids"]) > len(tok("a", add_special_tokens=False)["input_ids"])


def _check_bos(tok, bos, metadata):
    if bos == "no" and _adds_bos(tok) and str(metadata.get("add_bos_token")).lower() != "false":
        raise ValueError("exported with BOS 'no', but this tokenizer adds one: run with "
                         "--model_args ...,add_bos_token=False")


def _rule_doc(tok, row, bos, score_template, reduction):
    """One lm-eval document of a perplexity-rule item: a shared context and each version's
    continuation, with the number of tokens lm-eval will score of it."""
    after_bos = bos == "yes" or (bos == "auto" and _adds_bos(tok))
    contexts, conts, counts = [], [], []
    for prompt, start in zip(row["prompts"], row["starts"], strict=True):
        ids = tok(prompt, add_special_tokens=False)["input_ids"]
        if after_bos and score_template:
            context, cont = "", prompt
            n = len(ids) - (1 if ids and ids[0] == _bos_id(tok) else 0)
        else:
            offsets = tok(prompt, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
            if score_template:
                first = 1
            else:
                first = next((i for i, (s, e) in enumerate(offsets) if e > start and e > s), len(ids))
                first = max(first, 0 if after_bos else 1)
            cut = offsets[first][0] if first < len(ids) else len(prompt)
            context, cont = prompt[:cut], prompt[cut:]
            if after_bos:
                context = tok.decode([_bos_id(tok)]) + context
            n = len(ids) - first
            # lm-eval moves the context's trailing whitespace into the continuation, then splits
            # the joint encoding where the context's own encoding ends: it must end at `first`
            stripped = context.rstrip()
            context, cont = stripped, context[len(stripped):] + cont
            prefix = ([_bos_id(tok)] if after_bos else []) + ids[:first]
            if tok(context, add_special_tokens=False)["input_ids"] != prefix:
                raise ValueError(f"item {row['id']}: lm-eval cannot split this prompt where its "
                                 "scored tokens begin (its contexts never end in whitespace, and "
                                 "this tokenizer makes the space before them a token of its own)")
        contexts.append(context)
        conts.append(cont)
        counts.append(n)
    if len(set(contexts)) != 1:
        raise ValueError(f"item {row['id']}: its versions differ in their first token, so they "
                         "share no context; export it with --bos yes")
    return {"id": row["id"], "section": row.get("section", ""), "context": contexts[0],
            "continuations": conts, "n_tokens": counts, "answer": row["answer"],
            "reduction": reduction}
