"""Benchmark `expertlm eval bench` scoring against the published scoring loop, same model and items.

Reference (BrainBench's `run_choice.py`, `forward_pass`, faithfully): for each of an item's two
prompts, one at a time, `tokenizer(prompt, return_tensors="pt")`, `model(input_ids=ids,
labels=ids)`, logits shifted against the labels, `log_softmax`, `gather`, float32, mean NLL,
`np.exp` -> perplexity. It passes `labels`, so Hugging Face also computes its own loss; a second,
lean reference without `labels` is timed too, and both ratios are printed.

Ours: `Scorer.pair_nll` as `eval bench` runs it on this machine (batch 1 on a CPU): the two
versions of an item are identical up to the first change, so the shared prefix (template
included) runs once and both continuations run from its key/value cache.

Items: 200 BrainBench-format items built from real neuroscience abstracts
(`../shared/data/neuromancer_neuro_review_abstracts.jsonl.gz`, 150-300 words, like BrainBench's
J. Neurosci. abstracts), each altered as BrainBench items are: the direction words of the
results (the second half of the abstract's sentences) are flipped (increased <-> decreased,
higher <-> lower, ...), prompt template `neuro` (the published one). Model: a 17M-parameter GPT-2
(6 layers, width 384, 1,024 positions, a 16,000-token byte-level BPE trained on the same abstracts),
random weights (speed does not depend on them). Without ../shared/data the items come from the
synthetic world (`expertlm corpus synth`).

Figures: items/s over all items, best of 2 rounds that interleave reference and ours; the largest
relative difference of any item's mean NLL between the reference and ours, and whether every
choice is identical. Target: ours >= 1.5x the (faithful) reference, NLLs within 1e-5 relative,
identical choices.

With `--gpu` (bench/gpu.sh runs it on a GPU machine): the same items on one GPU with a
gpt2-small-sized model (12 layers, width 768), the published loop (batch 1) against `eval bench`'s
batched scoring (the batch size chosen automatically: ~16k tokens a pass), then one profiled
pass of ours (wall time against the device's kernel time, the host-side operations by time).
Target there: >= 10x.

Run: python bench/eval_throughput.py      (prints a table, then the PASS/FAIL line)
"""

from __future__ import annotations

import gzip
import json
import os
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import device_seconds  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "bench" / "_work" / "eval_throughput"
# EXPERTLM_SHARED_DATA: where ../shared/data is not beside the checkout (bench/gpu.sh on a GPU machine)
SHARED = Path(os.environ.get("EXPERTLM_SHARED_DATA") or ROOT.parent / "shared" / "data")
SHARED = SHARED / "neuromancer_neuro_review_abstracts.jsonl.gz"
N_ITEMS = 200
VOCAB = 16_000
ROUNDS = 2
TARGET = 1.5
GPU_TARGET = 10.0
TOL = 1e-5
FLIPS = {
    "increased": "decreased", "increase": "decrease", "increases": "decreases",
    "increasing": "decreasing", "higher": "lower", "enhanced": "impaired", "enhances": "impairs",
    "more": "less", "greater": "smaller", "larger": "smaller", "stronger": "weaker",
    "faster": "slower", "improved": "impaired", "facilitates": "inhibits", "activates": "inhibits",
    "positive": "negative", "elevated": "reduced", "upregulated": "downregulated",
}  # fmt: skip
BACK = {v: k for k, v in FLIPS.items()}


def load_abstracts() -> list[str]:
    with gzip.open(SHARED, "rt", encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for line in f]
    return [t for t in texts if 150 <= len(t.split()) <= 300]


def make_item(text: str) -> tuple[str, str] | None:
    """Flip the direction words of the abstract's second half (its results)."""
    from expertlm.eval.benchmark import split_sentences

    sents = split_sentences(text)
    if len(sents) < 4:
        return None
    half = len(sents) // 2
    table = {**FLIPS, **BACK}
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, table)) + r")\b")
    results = " ".join(sents[half:])
    altered = pattern.sub(lambda m: table[m.group(1)], results)
    if altered == results:
        return None
    head = " ".join(sents[:half])
    return f"{head} {results}", f"{head} {altered}"


def build(work: Path, gpu: bool = False, device: str = "cuda"):
    """Tokenizer, model and items (cached under bench/_work)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    if SHARED.is_file():
        texts = load_abstracts()
        items = [it for it in map(make_item, texts) if it][:N_ITEMS]
        source = f"{SHARED.name}: {len(items)} items"
        train_texts = texts
    else:
        import expertlm
        from expertlm.eval.benchmark import read_benchmark

        synth = work / "synth"
        if not synth.exists():
            expertlm.corpus_synth(synth, show_progress=False)
        bench_items = read_benchmark(synth / "benchmark.csv")[:N_ITEMS]
        items = [(b.original, b.altered) for b in bench_items]
        with gzip.open(synth / "literature.jsonl.gz", "rt", encoding="utf-8") as f:
            train_texts = [json.loads(line)["text"] for line in f]
        source = f"synthetic world: {len(items)} items (../shared/data not found)"
    tok_file = work / "tokenizer.json"
    if not tok_file.is_file():
        work.mkdir(parents=True, exist_ok=True)
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=["<|endoftext|>"],
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())  # fmt: skip
        tok.train_from_iterator(train_texts, trainer)
        tok.save(str(tok_file))
    tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(tok_file), eos_token="<|endoftext|>",
                                        bos_token="<|endoftext|>")  # fmt: skip
    torch.manual_seed(0)
    width, layers = (768, 12) if gpu else (384, 6)
    cfg = GPT2Config(vocab_size=len(tokenizer), n_positions=1024, n_embd=width, n_layer=layers,
                     n_head=width // 64, bos_token_id=0, eos_token_id=0)  # fmt: skip
    model = GPT2LMHeadModel._from_config(cfg, attn_implementation="sdpa").eval()
    if gpu:
        model = model.to(device)
    return tokenizer, model, items, source


def reference(model, tokenizer, prompts: list[str], labels: bool = True) -> list[float]:
    """The published `forward_pass`: one prompt at a time, mean NLL from shifted logits."""
    out = []
    for prompt in prompts:
        with torch.no_grad():
            enc = tokenizer(prompt, return_tensors="pt")
            ids = enc["input_ids"].to(model.device)
            output = model(input_ids=ids, labels=ids) if labels else model(input_ids=ids)
            logits = output.logits
            shift_logits = logits[..., :-1, :].contiguous()
            shift_labels = ids[..., 1:].contiguous()
            vocab_size = shift_logits.size(-1)
            log_probs = F.log_softmax(shift_logits.view(-1, vocab_size), dim=-1)
            true_log_probs = log_probs.gather(dim=1, index=shift_labels.view(-1, 1)).squeeze()
            out.append(float(-true_log_probs.float().mean().item()))
    return out


def ours(scorer, prompts: list[str]) -> list[float]:
    encoded = [scorer.encode(p).ids for p in prompts]
    pairs = list(zip(encoded[0::2], encoded[1::2], strict=True))
    out = []
    for a, b in scorer.pair_nll(pairs):
        out += [float(a.mean()), float(b.mean())]
    return out


def main(gpu: bool = False, device: str = "cuda", n_items: int = N_ITEMS) -> int:
    """`gpu`: the gpt2-small-sized model, batched scoring, on `device` (a CPU only as a check)."""
    from expertlm.eval.benchmark import TEMPLATES, apply_template
    from expertlm.eval.scoring import Scorer, _common_prefix

    torch.set_grad_enabled(False)
    tokenizer, model, items, source = build(WORK, gpu, device)
    items = items[:n_items]
    prompts = [apply_template(TEMPLATES["neuro"], t)[0] for pair in items for t in pair]
    # on the CPU eval bench scores one sequence a pass (compute-bound: padding costs more than
    # batching saves); on a GPU it chooses the batch size itself
    scorer = Scorer(model, tokenizer, device=device if gpu else "cpu", batch_size=None if gpu else 1)
    enc = [scorer.encode(p).ids for p in prompts]
    n_tok = np.array([len(e) for e in enc])
    shared = np.array([_common_prefix(a, b) for a, b in zip(enc[0::2], enc[1::2], strict=True)])
    print(f"items: {source}; tokens per prompt {n_tok.mean():.0f} (max {n_tok.max()}); "
          f"shared prefix {shared.sum() / n_tok[0::2].sum():.1%} of the original's tokens")  # fmt: skip
    ours(scorer, prompts[:4])  # warm-up (thread pool, first-call allocations)
    reference(model, tokenizer, prompts[:4])
    times = {"reference": [], "reference_lean": [], "ours": []}
    results = {}
    for _ in range(ROUNDS):
        for name, fn in (
            ("reference", lambda: reference(model, tokenizer, prompts)),
            ("ours", lambda: ours(scorer, prompts)),
            ("reference_lean", lambda: reference(model, tokenizer, prompts, labels=False)),
        ):
            t0 = time.perf_counter()
            results[name] = fn()
            if gpu and device == "cuda":
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - t0)
    n = len(items)
    rate = {k: n / min(v) for k, v in times.items()}
    ref, got = np.array(results["reference"]), np.array(results["ours"])
    rel = float(np.max(np.abs(got - ref) / np.abs(ref)))
    choice = lambda x: np.sign(x[1::2] - x[0::2])  # noqa: E731  (+1: original chosen)
    same = bool(np.array_equal(choice(ref), choice(got)))
    print(f"{'':16}{'items/s':>10}{'x reference':>14}")
    for k in ("reference", "reference_lean", "ours"):
        print(f"{k:16}{rate[k]:>10.2f}{rate[k] / rate['reference']:>14.2f}")
    print(f"accuracy (random weights): reference {np.mean(choice(ref) > 0):.3f}, ours {np.mean(choice(got) > 0):.3f}")
    if gpu:  # where ours' time goes: host-side work against the device's kernels
        try:  # one borrowed run: a failure here must not cost the figures
            from torch.profiler import ProfilerActivity, profile

            acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
            t0 = time.perf_counter()
            with profile(activities=acts) as prof:
                ours(scorer, prompts)
                if device == "cuda":
                    torch.cuda.synchronize()
            wall = time.perf_counter() - t0
            events = prof.key_averages()
            busy = device_seconds(prof)
            print(f"ours profiled: {wall:.2f} s wall, {busy:.2f} s of device kernels")
            print(events.table(sort_by="self_cpu_time_total", row_limit=12, max_name_column_width=50))
        except Exception as e:
            print(f"profile: failed: {type(e).__name__}: {e}")
    ratio, target = rate["ours"] / rate["reference"], GPU_TARGET if gpu else TARGET
    ok = ratio >= target and rel <= TOL and same
    print(f"eval_throughput{'_gpu' if gpu else ''}: {ratio:.2f}x the published loop ({rate['ours'] / rate['reference_lean']:.2f}x "
          f"its lean variant), max NLL rel diff {rel:.1e}, identical choices {same} "
          f"(target >= {target}x, <= {TOL:g}, identical) {'PASS' if ok else 'FAIL'}")  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(gpu="--gpu" in sys.argv[1:]))
