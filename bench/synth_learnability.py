"""Is the synthetic field learnable on this CPU? Accuracy on unseen and seen pairs against tokens.

The demo's synthetic field (`configs/demo.yaml`: the domain world, seed 0 unless --seed) is built
into a corpus, the demo's tokenizer is trained on it (or on the general field with --tokenizer
general), and the demo's small model (GPT-2, 4 layers, width 128) is trained with the demo's
options for the domain variant (its learning rate decays over --max-tokens, as the demo's decays
over its budget) for at most --max-tokens or --max-time, keeping a checkpoint every 128 steps
(0.5M tokens). Under a decaying rate a checkpoint is a point on this run's way, not a model
trained for that many tokens; `--train lr_min_ratio=1.0` (a constant rate) makes it one. With --init general the model is first
trained on the general field with the demo's general-pretraining options, then continued on
the domain with the continued variant's options. Every checkpoint and the untrained model (the
same seed) are scored on the forward benchmark (2023 papers about target/outcome pairs never
reported) and on the seen-pairs benchmark.

Target: the trained model beats the untrained one on the forward benchmark with a paired McNemar
p < 0.05. Printed: a table of accuracy against tokens seen, the field's ceilings, and the line
`synth_learnability: <accuracy> vs untrained <accuracy>, McNemar p = <p> (target p < 0.05) PASS|FAIL`.

Options of the recipe can be overridden to measure other curves: `--train lr=6e-3` (any option of
the variant's `train` block), `--model n_embd=256`, `--general-train KEY=VALUE` (with --init
general), `--train-seed N` (the trained model's initialisation and data order), `--threads 1`
(two runs side by side on 2 cores) and `--ckpt-tokens 1000000`.

Run: python bench/synth_learnability.py        (about 10 minutes on 2 cores)
     python bench/synth_learnability.py --tokenizer general      (the general tokenizer's curve)
     python bench/synth_learnability.py --init general           (general -> domain)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "src" / "expertlm" / "configs" / "demo.yaml"
CKPT_STEPS = 128


def key_value(item: str) -> tuple[str, object]:
    """KEY=VALUE as the CLI's --model/--train options parse it (`cli.KeyValue`: JSON where it
    parses, else a string)."""
    import click

    from expertlm.cli import KeyValue

    try:
        return KeyValue().convert(item, None, None)
    except click.BadParameter as e:
        raise argparse.ArgumentTypeError(e.message) from None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=None, help="world seed (default: the demo's)")
    ap.add_argument("--tokenizer", choices=("domain", "general"), default="domain")
    ap.add_argument("--init", choices=("scratch", "general"), default="scratch")
    ap.add_argument("--max-tokens", type=int, default=4_000_000)
    ap.add_argument("--max-time", type=float, default=600, help="seconds of training at most")
    ap.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None,
                    help="bf16 autocast (default: as the demo trains)")
    ap.add_argument("--train", action="append", default=[], type=key_value, metavar="KEY=VALUE",
                    help="override one of the variant's training options (repeatable), e.g. lr=6e-3")
    ap.add_argument("--model", action="append", default=[], type=key_value, metavar="KEY=VALUE",
                    help="override one of the model's options (repeatable), e.g. n_embd=256")
    ap.add_argument("--general-train", action="append", default=[], type=key_value, metavar="KEY=VALUE",
                    help="with --init general: override one of the general model's training options")
    ap.add_argument("--train-seed", type=int, default=0, help="seed of the trained model's initialisation and data order")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    ap.add_argument("--ckpt-tokens", type=int, default=None,
                    help="tokens between checkpoints (default: 128 steps, 0.5M tokens)")
    ap.add_argument("--work", type=Path, default=ROOT / "bench" / "_work" / "synth_learnability")
    args = ap.parse_args()
    overrides = {kind: dict(getattr(args, kind)) for kind in ("train", "model", "general_train")}
    if overrides["general_train"] and args.init != "general":
        ap.error("--general-train needs --init general (the general model is trained only then)")
    if args.threads is not None and args.threads < 1:
        ap.error(f"--threads {args.threads}: expected at least 1")
    if args.ckpt_tokens is not None and args.ckpt_tokens < 1:
        ap.error(f"--ckpt-tokens {args.ckpt_tokens}: expected at least 1")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    os.environ.setdefault("EXPERTLM_NO_PROGRESS", "1")
    import expertlm
    from expertlm.eval.evaluate import eval_compare
    from expertlm.experiment.spec import load_experiment
    from expertlm.models import init_model

    spec, _ = load_experiment(DEMO)
    variants = {v.name: v for v in spec.variants}
    name = {("domain", "scratch"): "scratch-domain-tok", ("general", "scratch"): "scratch-general-tok",
            ("general", "general"): "general-then-domain"}.get((args.tokenizer, args.init))  # fmt: skip
    if name is None:
        ap.error("--init general continues the general model, which has the general tokenizer")
    v = variants[name]
    arch = variants["general" if args.init == "general" else name]
    model = {**arch.model, **overrides["model"]}
    train_opts = {k: val for k, val in v.train.items() if k not in ("max_tokens", "ckpt_every_steps")}
    train_opts.update(overrides["train"])
    if args.bf16 is not None:
        train_opts["bf16"] = args.bf16
    step_tokens = train_opts["context"] * train_opts["micro_batch"]
    ckpt_steps = max(1, args.ckpt_tokens // step_tokens) if args.ckpt_tokens else CKPT_STEPS
    tag = "".join(f"-{k}={v}" for kind in ("train", "model") for k, v in overrides[kind].items())
    tag += "".join(f"-general.{k}={v}" for k, v in overrides["general_train"].items())
    tag += f"-train_seed={args.train_seed}" if args.train_seed else ""
    work = args.work / f"{name}-seed{args.seed if args.seed is not None else 'demo'}{tag}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)

    def field(corpus: str):
        c = spec.corpora[corpus]
        synth = dict(c.synth)
        if args.seed is not None:
            synth["seed"] = args.seed + (1 if corpus == "general" else 0)
        s = expertlm.corpus_synth(work / f"synth-{corpus}", show_progress=False, **synth)
        return s, expertlm.corpus_build([s / "literature.jsonl.gz"], work / f"corpus-{corpus}",
                                        show_progress=False, **c.build)  # fmt: skip

    synth, corpus = field("domain")
    tok_corpus = corpus if args.tokenizer == "domain" else field("general")[1]
    t = spec.tokenizers[args.tokenizer]
    tok = expertlm.tokenizer_train(tok_corpus, work / "tok", vocab_size=t.vocab_size,
                                   show_progress=False, **t.options)  # fmt: skip
    shards = expertlm.data_prepare(corpus, work / "shards", tokenizer=tok, show_progress=False)
    untrained = init_model(tok, work / "untrained", preset=arch.preset, model=model, seed=0)
    init = None
    if args.init == "general":
        g = variants["general"]
        gshards = expertlm.data_prepare(tok_corpus, work / "gshards", tokenizer=tok, show_progress=False)
        init = expertlm.train(gshards, work / "general", preset=g.preset, model={**g.model, **overrides["model"]}, seed=0,
                              show_progress=False, **{**g.train, **overrides["general_train"]})  # fmt: skip
        untrained = init  # the comparison is against the starting point
    t0 = time.time()
    run = expertlm.train(shards, work / "run", preset=arch.preset, model=model, seed=args.train_seed,
                         max_tokens=args.max_tokens, max_time_s=args.max_time,
                         ckpt_every_steps=ckpt_steps, keep_last=100, show_progress=False,
                         **({"init": str(init)} if init else {}), **train_opts)  # fmt: skip
    train_s = time.time() - t0
    models = [("start" if init else "untrained", 0, untrained)]
    for ck in sorted((run / "checkpoints").glob("step-*")):
        models.append((ck.name, int(ck.name.split("-")[1]) * step_tokens, ck))
    rows = []
    for label, tokens, path in models:
        res = {}
        for b in ("benchmark", "benchmark_seen"):
            out = work / "results" / label / b
            res[b] = (expertlm.eval_bench(path, synth / f"{b}.csv", out, show_progress=False)["accuracy"], out)
        rows.append((label, tokens, res))
    ceilings = json.loads((synth / "ceilings.json").read_text())["ceilings"]
    print(f"\n{name}, world seed {args.seed if args.seed is not None else 'as in the demo'}: trained "
          f"{train_s:.0f} s; accuracy against tokens seen (forward = pairs never reported):")  # fmt: skip
    print(f"{'model':>16}{'tokens':>12}{'forward':>10}{'seen':>8}")
    for label, tokens, res in rows:
        print(f"{label:>16}{tokens:>12,}{res['benchmark'][0]:>10.3f}{res['benchmark_seen'][0]:>8.3f}")
    for k in ("oracle", "class_integrator", "lowrank_integrator", "memoriser"):
        c = ceilings[k]
        print(f"{k:>16}{'':>12}{c['benchmark.csv']['accuracy']:>10.3f}{c['benchmark_seen.csv']['accuracy']:>8.3f}")
    final, untr = rows[-1][2]["benchmark"], rows[0][2]["benchmark"]
    p = eval_compare(untr[1], final[1])["mcnemar"]["p_value"]
    ok = p < 0.05 and final[0] > untr[0]
    print(f"synth_learnability: {final[0]:.3f} vs {rows[0][0]} {untr[0]:.3f} after {rows[-1][1]:,} tokens "
          f"({train_s:.0f} s), McNemar p = {p:.2g} (target p < 0.05) {'PASS' if ok else 'FAIL'}")  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
