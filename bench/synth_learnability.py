"""Is the synthetic field learnable on this CPU? Accuracy on unseen and seen pairs against tokens.

The default synthetic field (`expertlm corpus synth`, seed 0) is built into a corpus, a tokenizer
is trained on it, and the demo's small model (GPT-2, 4 layers, width 128, about 1M parameters) is
trained from scratch for at most 5 minutes, keeping a checkpoint every 128 steps (0.5M tokens).
Every checkpoint and the untrained model (the same seed) are scored on the forward benchmark
(2023 papers about target/outcome pairs never reported) and on the seen-pairs benchmark.

Target: the trained model beats the untrained one on the forward benchmark with a paired McNemar
p < 0.05. Printed: a table of accuracy against tokens seen, the field's ceilings, and the line
`synth_learnability: <accuracy> vs untrained <accuracy>, McNemar p = <p> (target p < 0.05) PASS|FAIL`.

Run: python bench/synth_learnability.py        (about 7 minutes on 2 cores)
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "bench" / "_work" / "synth_learnability"
MODEL = {"n_layer": 4, "n_embd": 128, "n_head": 4}
BUDGET_S = 300
STEP_TOKENS = 16 * 256


def main() -> int:
    os.environ.setdefault("EXPERTLM_NO_PROGRESS", "1")
    import expertlm
    from expertlm.eval.evaluate import eval_compare
    from expertlm.models import init_model

    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    synth = expertlm.corpus_synth(WORK / "synth", show_progress=False)
    corpus = expertlm.corpus_build([synth / "literature.jsonl.gz"], WORK / "corpus", min_chars=100,
                                   val_frac=0.05, show_progress=False)  # fmt: skip
    tok = expertlm.tokenizer_train(corpus, WORK / "tok", vocab_size=1000, show_progress=False)
    shards = expertlm.data_prepare(corpus, WORK / "shards", tokenizer=tok, show_progress=False)
    untrained = init_model(tok, WORK / "untrained", preset="gpt2-mini", model=MODEL, seed=0)
    t0 = time.time()
    run = expertlm.train(shards, WORK / "run", preset="gpt2-mini", model=MODEL, seed=0, context=256,
                         micro_batch=16, lr=3e-3, max_tokens=4_000_000, max_time_s=BUDGET_S,
                         ckpt_every_steps=128, keep_last=100, val_every_steps=128, show_progress=False)  # fmt: skip
    train_s = time.time() - t0
    models = [("untrained", 0, untrained)]
    for ck in sorted((run / "checkpoints").glob("step-*")):
        step = int(ck.name.split("-")[1])
        models.append((ck.name, step * STEP_TOKENS, ck))
    rows = []
    for name, tokens, path in models:
        res = {}
        for b in ("benchmark", "benchmark_seen"):
            out = WORK / "results" / name / b
            res[b] = (
                expertlm.eval_bench(path, synth / f"{b}.csv", out, show_progress=False)["accuracy"],
                out,
            )
        rows.append((name, tokens, res))
    ceilings = json.loads((synth / "ceilings.json").read_text())["ceilings"]
    print(
        f"\ntrained {train_s:.0f} s; accuracy against tokens seen (forward = pairs never reported):"
    )
    print(f"{'model':>16}{'tokens':>12}{'forward':>10}{'seen':>8}")
    for name, tokens, res in rows:
        print(
            f"{name:>16}{tokens:>12,}{res['benchmark'][0]:>10.3f}{res['benchmark_seen'][0]:>8.3f}"
        )
    for k in ("oracle", "class_integrator", "lowrank_integrator", "memoriser"):
        c = ceilings[k]
        print(
            f"{k:>16}{'':>12}{c['benchmark.csv']['accuracy']:>10.3f}{c['benchmark_seen.csv']['accuracy']:>8.3f}"
        )
    final, untr = rows[-1][2]["benchmark"], rows[0][2]["benchmark"]
    cmp = eval_compare(untr[1], final[1])
    p = cmp["mcnemar"]["p_value"]
    ok = p < 0.05 and final[0] > untr[0]
    print(f"synth_learnability: {final[0]:.3f} vs untrained {untr[0]:.3f} after {rows[-1][1]:,} tokens "
          f"({train_s:.0f} s), McNemar p = {p:.2g} (target p < 0.05) {'PASS' if ok else 'FAIL'}")  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
