"""Benchmark expertlm's training loop against the paper's own style of training loop, on CPU.

Reference (the BrainGPT repos' loop, faithfully): a Hugging Face `GPT2LMHeadModel` fed fixed-size
chunks of a flat token array (sequential chunks, no packing tricks), called as
`model(input_ids=x)` without labels, the loss computed from separately shifted logits
(`logits[..., :-1, :]` against `x[..., 1:]`, `F.cross_entropy`), `loss.backward()`, grad-norm
clipping at 1.0, a plain `torch.optim.AdamW(lr, weight_decay=0.1)` (torch's defaults, as a
plain script gets them: not fused) and `zero_grad()`. Its bf16 variant runs the forward and
the loss under `torch.autocast("cpu", dtype=torch.bfloat16)`, as the HF Trainer does.

Model: a 17M-parameter GPT-2 (vocab 16,000, context 256, 6 layers, 6 heads, width 384, the
GPT2Config defaults otherwise, dropout 0.1 included), `attn_implementation="sdpa"`, built after
`torch.manual_seed(0)` so every measurement starts from identical weights (and dropout masks).
Batch 8 x 256 tokens. Data: no tokenizer is needed, so the tokens are a seeded stream drawn from
a Zipf distribution truncated to the vocabulary (p(id) ~ 1/(id + 1)^1.1), which gives the
embedding and softmax the skewed id frequencies of real text; throughput does not depend on the
token values. Every run (both sides, both dtypes) reads the same chunks in the same order.

Figures: tokens/s over the steps after 2 warm-up steps, the best of 2 rounds that interleave
the four runs (reference/ours x fp32/bf16), since load from elsewhere on a shared machine only
slows a run down; MFU = tokens/s x flops/token / the fp32 matmul peak of this machine, measured
in the same run before and after the training runs (best 0.2 s window of `torch.mm` on 1024^2
and 2048^2 matrices, all threads); the loss of the last step (the same tokens on every side).
flops/token = 6 N + 12 n_layer n_embd context (the PaLM / nanoGPT count), where N is the
parameters that take part in matmuls or elementwise work per token: all parameters except the
position embeddings, the tied token embedding counted once, as the LM head's matmul.

Second reference, nanoGPT (karpathy/nanoGPT's model.py and train.py loop, faithfully: its
`nn.Linear` blocks, `nn.GELU`, SDPA with `is_causal`, weight tying, dropout 0.0 as train.py has it
for pretraining, fused AdamW with decay on 2-D parameters only, random 8 x 256 batches with
pre-shifted targets), against "ours~nano": the model `expertlm train` builds for the same shape
(gpt2-mini's preset: dropout 0, the exact GELU as nanoGPT, SDPA, a Hugging Face folder) with
nanoGPT's initial weights copied in, trained by `train_step` on the same random windows.

Targets: ours fp32 >= 1.0x the reference fp32 tokens/s at equal loss (final losses within 2%),
ours fp32 MFU >= 50%, ours bf16 >= 1.5x ours fp32 tokens/s with its final loss within 2% of
ours fp32; ours~nano >= 1.05x nanoGPT in fp32 and in bf16 at final losses within 2%.

With `--gpu` (bench/gpu.sh runs it on a GPU machine): gpt2-small (124M, context 1024, GPT-2's
50,257-token vocabulary) as `expertlm train` builds it, `train_step` in bf16 autocast with
`torch.compile` and SDPA attention (flash attention where the GPU has it), 16 x 1024-token micro
batches; tokens/s after warm-up (compilation excluded), MFU against the GPU's bf16 matmul peak
measured in the same run (8192^3 products). "ours compiled" is the step as `train --compile
--bf16` runs it (the model, a plain head and the loss in one compiled graph); beside it the
compiled model with the fused head, and nanoGPT's model and loop compiled (the reference); then
3 profiled steps of ours compiled: their wall time against the device's kernel time (far less
kernel time than wall: the GPU waits on the host) and the CUDA kernels by time.
Target there: MFU >= 40%.

Run: python bench/train_throughput.py     (prints one table, then the PASS/FAIL line)
"""

from __future__ import annotations

import itertools
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from transformers import GPT2Config, GPT2LMHeadModel

from expertlm.config import TrainConfig
from expertlm.cpu import cpu_training
from expertlm.models import flops_per_token
from expertlm.objectives import CausalLM, Windows, fused_head
from expertlm.train import adamw, train_step

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import device_seconds  # noqa: E402

VOCAB = 16_000
CONTEXT = 256
BATCH = 8
N_LAYER = 6
N_EMBD = 384
LR = 6e-4
WARMUP = 2  # steps left out of the timing (first-call allocations, thread-pool start-up)
STEPS = 12  # per run, warm-up included: reference ~25 s fp32, ~10 s bf16 on 2 quiet cores
ROUNDS = 2
NANO_STEPS = 22  # per side, warm-up included: paired single steps against nanoGPT
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
LOSS_TOL = 0.02


def build_model() -> GPT2LMHeadModel:
    """The benchmark's GPT-2, with identical initial weights on every call."""
    torch.manual_seed(0)
    cfg = GPT2Config(
        vocab_size=VOCAB,
        n_positions=CONTEXT,
        n_embd=N_EMBD,
        n_layer=N_LAYER,
        n_head=6,
        bos_token_id=VOCAB - 1,  # GPT-2's default (50256) is outside this vocabulary
        eos_token_id=VOCAB - 1,
    )
    model = GPT2LMHeadModel._from_config(cfg, attn_implementation="sdpa")
    model.train()
    torch.manual_seed(0)  # same dropout stream from the first step on
    return model


def zipf_tokens(n: int, seed: int = 0) -> np.ndarray:
    """`n` token ids drawn from a Zipf law (exponent 1.1) truncated to the vocabulary."""
    p = 1.0 / np.arange(1, VOCAB + 1, dtype=np.float64) ** 1.1
    rng = np.random.default_rng(seed)
    return rng.choice(VOCAB, size=n, p=p / p.sum()).astype(np.int64)


def measure_peak_gflops(dtype: torch.dtype, seconds: float = 2.0) -> float:
    """Best `torch.mm` GFLOP/s (2 n^3 per product) on square matrices, default thread count.

    The best of 0.2 s windows, not the mean: on a shared machine a busy neighbour only ever
    lowers a window's figure, and an underestimated peak would inflate the MFU.
    """
    best = 0.0
    for n in (1024, 2048):
        a = torch.randn(n, n).to(dtype)
        b = torch.randn(n, n).to(dtype)
        for _ in range(3):
            torch.mm(a, b)
        for _ in range(int(seconds / 2 / 0.2)):
            k, t0 = 0, time.perf_counter()
            while (elapsed := time.perf_counter() - t0) < 0.2:
                torch.mm(a, b)
                k += 1
            best = max(best, 2 * n**3 * k / elapsed / 1e9)
    return best


def reference_loop(
    model: GPT2LMHeadModel,
    data: np.ndarray,
    steps: int,
    batch: int,
    context: int,
    lr: float,
    bf16: bool,
) -> dict:
    """The paper's style of loop; tokens/s after `WARMUP` steps, and the loss of every step."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.1)
    tokens = torch.from_numpy(data)
    step_tokens = batch * context
    losses: list[float] = []
    t0 = 0.0
    for step in range(steps):
        if step == WARMUP:
            t0 = time.perf_counter()
        x = tokens[step * step_tokens : (step + 1) * step_tokens].view(batch, context)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            outputs = model(input_ids=x)
            shift_logits = outputs.logits[..., :-1, :].contiguous()
            shift_labels = x[..., 1:].contiguous()
            loss = F.cross_entropy(
                shift_logits.view(-1, shift_logits.size(-1)), shift_labels.view(-1)
            )
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    elapsed = time.perf_counter() - t0
    return {"tokens_per_s": (steps - WARMUP) * step_tokens / elapsed, "losses": losses}


class NanoGPT(torch.nn.Module):
    """nanoGPT's model.py, faithfully (karpathy/nanoGPT, `GPT` with bias=True): token and
    position embeddings, pre-LayerNorm blocks of causal self-attention through
    `F.scaled_dot_product_attention(is_causal=True)` and an MLP with `nn.GELU()`, weight tying,
    N(0, 0.02) init with c_proj scaled by 1/sqrt(2 n_layer), logits for every position."""

    def __init__(self, vocab: int, context: int, n_layer: int, n_head: int, n_embd: int,
                 dropout: float) -> None:  # fmt: skip
        super().__init__()
        nn = torch.nn
        self.n_head, self.dropout = n_head, dropout
        self.wte, self.wpe = nn.Embedding(vocab, n_embd), nn.Embedding(context, n_embd)
        self.drop = nn.Dropout(dropout)
        self.h = nn.ModuleList(
            nn.ModuleDict({
                "ln_1": nn.LayerNorm(n_embd), "c_attn": nn.Linear(n_embd, 3 * n_embd),
                "attn_proj": nn.Linear(n_embd, n_embd), "ln_2": nn.LayerNorm(n_embd),
                "c_fc": nn.Linear(n_embd, 4 * n_embd), "gelu": nn.GELU(),
                "mlp_proj": nn.Linear(4 * n_embd, n_embd),
            })
            for _ in range(n_layer)
        )  # fmt: skip
        self.ln_f = nn.LayerNorm(n_embd)
        self.lm_head = nn.Linear(n_embd, vocab, bias=False)
        self.wte.weight = self.lm_head.weight  # weight tying
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, mean=0.0, std=0.02)
                if getattr(m, "bias", None) is not None:
                    nn.init.zeros_(m.bias)
        for name, p in self.named_parameters():
            if name.endswith(("attn_proj.weight", "mlp_proj.weight")):
                nn.init.normal_(p, mean=0.0, std=0.02 / (2 * n_layer) ** 0.5)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        B, T = idx.shape
        x = self.drop(self.wte(idx) + self.wpe(torch.arange(T, device=idx.device)))
        for blk in self.h:
            y = blk["ln_1"](x)
            q, k, v = blk["c_attn"](y).split(y.size(-1), dim=2)
            q, k, v = (t.view(B, T, self.n_head, -1).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hs)
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0,
                                               is_causal=True)  # fmt: skip
            y = y.transpose(1, 2).contiguous().view(B, T, -1)
            x = x + self.drop(blk["attn_proj"](y))
            x = x + self.drop(blk["mlp_proj"](blk["gelu"](blk["c_fc"](blk["ln_2"](x)))))
        logits = self.lm_head(self.ln_f(x))
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=-1)


def build_nanogpt() -> NanoGPT:
    torch.manual_seed(0)
    model = NanoGPT(VOCAB, CONTEXT, N_LAYER, 6, N_EMBD, dropout=0.0)  # train.py's default for pretraining
    model.train()
    torch.manual_seed(0)
    return model


def nanogpt_steps(model: NanoGPT, data: np.ndarray, batch: int, context: int, lr: float,
                  bf16: bool, device: str = "cpu"):  # fmt: skip
    """nanoGPT's train.py loop, faithfully, one step per `next()`: `configure_optimizers` (AdamW,
    weight decay 0.1 on the 2-D parameters, betas (0.9, 0.95), fused), `get_batch` (x and the
    pre-shifted targets y at random offsets: here the offsets of `batch_offsets`, the same for
    every loop), the loss under `torch.amp.autocast` for bf16, `backward`, clip at 1.0, `step`,
    `zero_grad(set_to_none=True)`; yields (seconds, loss) of each step. `model` may be compiled
    (nanoGPT's `compile = True`)."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                                   {"params": no_decay, "weight_decay": 0.0}],
                                  lr=lr, betas=(0.9, 0.95), fused=True)  # fmt: skip
    tokens = torch.from_numpy(data)
    for step in itertools.count():
        t0 = time.perf_counter()
        ix = batch_offsets(step, batch, context, len(data))
        x = torch.stack([tokens[i : i + context] for i in ix]).to(device)
        y = torch.stack([tokens[i + 1 : i + 1 + context] for i in ix]).to(device)
        with torch.amp.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=bf16):
            loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss = loss.item()
        yield time.perf_counter() - t0, loss


def batch_offsets(step: int, batch: int, context: int, n: int) -> list[int]:
    """nanoGPT's `torch.randint(len(data) - block_size, (batch_size,))`, seeded per step so
    that nanoGPT's loop and ours read the same windows."""
    g = torch.Generator().manual_seed(1000 + step)
    return torch.randint(n - context - 1, (batch,), generator=g).tolist()


def ours_steps(model, data: np.ndarray, batch: int, context: int, lr: float, bf16: bool,
               offsets=None, device: str = "cpu", compile: str | None = None):  # fmt: skip
    """`expertlm train`'s step (`train.train_step` with the `CausalLM` objective as `train` builds
    it, the GPT-2 head fused with the loss, and `train.adamw`: weight decay 0.1 on matrices;
    clipping at 1.0; on a CPU the model prepared as `train` prepares it: `cpu.cpu_training`) on the same windows of context + 1 tokens as the loop it is compared with:
    by default the reference's chunks in order (step s: `batch` windows from
    tokens[s*batch*context] on), or those starting at `offsets(step, ...)` (nanoGPT's random
    batches), not a run's shuffled order; yields (seconds, loss) of each step. `compile`: "model"
    (the model compiled, the fused head outside) or "loss" (the model, a plain head and the loss
    as one graph: `train --compile` in bf16)."""
    cfg = TrainConfig(lr=lr, bf16=bf16, micro_batch=batch)
    dev = torch.device(device)
    if dev.type == "cpu":  # as `train` does on a CPU (cpu.cpu_training)
        cpu_training(model, bf16)
    windows = Windows(data, context, seed=0)
    objective = CausalLM(windows, windows, cfg.val_windows, head=fused_head(model),
                         compile=compile == "loss")  # nothing validates  # fmt: skip
    fwd = torch.compile(model) if compile == "model" else model
    optimizer = adamw(model, cfg, lr)
    model.train()
    for step in itertools.count():
        t0 = time.perf_counter()
        if offsets is None:
            starts = [((step * batch + b) % windows.count) * context for b in range(batch)]
        else:
            starts = offsets(step, batch, context, len(data))
        xy = torch.stack([torch.from_numpy(data[o : o + context + 1]) for o in starts])  # (B, T + 1)
        loss, _ = train_step(model, fwd, optimizer, [xy], objective, cfg, dev)
        yield time.perf_counter() - t0, loss


def ours(model, data: np.ndarray, steps: int, batch: int, context: int, lr: float, bf16: bool) -> dict:
    """`ours_steps` for `steps` steps: tokens/s after `WARMUP` steps, and the loss of every step."""
    run = list(itertools.islice(ours_steps(model, data, batch, context, lr, bf16), steps))
    return {"tokens_per_s": (steps - WARMUP) * batch * context / sum(t for t, _ in run[WARMUP:]),
            "losses": [loss for _, loss in run]}  # fmt: skip


def paired(steps_a, steps_b, n: int) -> dict:
    """Alternate single steps of two runs (a then b on even steps, b then a on odd ones), so
    that each pair of steps meets the same load from elsewhere on the machine: the median of
    the per-step time ratios a/b after `WARMUP` steps, each side's tokens/s from its median step,
    and each side's losses."""
    times: dict[str, list[float]] = {"a": [], "b": []}
    losses: dict[str, list[float]] = {"a": [], "b": []}
    for step in range(n):
        for side in ("ab" if step % 2 == 0 else "ba"):
            t, loss = next(steps_a if side == "a" else steps_b)
            times[side].append(t)
            losses[side].append(loss)
    ratios = [a / b for a, b in zip(times["a"][WARMUP:], times["b"][WARMUP:], strict=True)]
    return {"ratio": statistics.median(ratios), "ratios": ratios,
            "median_s": {k: statistics.median(v[WARMUP:]) for k, v in times.items()},
            "losses": losses}  # fmt: skip


def expertlm_from(nano: NanoGPT):
    """The model `expertlm train` builds for this shape (gpt2-mini's preset: dropout 0, the
    exact GELU (nanoGPT's), SDPA; a Hugging Face GPT-2 that AutoModelForCausalLM loads) with nanoGPT's
    initial weights copied in (Conv1D stores the transpose of nn.Linear's weight)."""
    from expertlm.models import build_model as build_expertlm
    from expertlm.models import gpt2_config

    model = build_expertlm(gpt2_config("gpt2-mini", VOCAB, VOCAB - 1), seed=0)
    t = model.transformer
    with torch.no_grad():
        t.wte.weight.copy_(nano.wte.weight)
        t.wpe.weight.copy_(nano.wpe.weight)
        t.ln_f.load_state_dict(nano.ln_f.state_dict())
        for ours_blk, blk in zip(t.h, nano.h, strict=True):
            ours_blk.ln_1.load_state_dict(blk["ln_1"].state_dict())
            ours_blk.ln_2.load_state_dict(blk["ln_2"].state_dict())
            for mine, theirs in ((ours_blk.attn.c_attn, blk["c_attn"]), (ours_blk.attn.c_proj, blk["attn_proj"]),
                                 (ours_blk.mlp.c_fc, blk["c_fc"]), (ours_blk.mlp.c_proj, blk["mlp_proj"])):  # fmt: skip
                mine.weight.copy_(theirs.weight.T)
                mine.bias.copy_(theirs.bias)
    model.train()
    torch.manual_seed(0)
    return model


def main() -> None:
    t_start = time.perf_counter()
    peak = {name: measure_peak_gflops(dtype) for name, dtype in DTYPES.items()}
    data = zipf_tokens(STEPS * BATCH * CONTEXT + 1)  # +1: a loop reading context+1 windows
    model = build_model()
    fpt = flops_per_token(model, CONTEXT)  # the count run.json reports
    n_params = sum(p.numel() for p in model.parameters())
    del model

    # Rounds interleave the four runs and each keeps its best round, so that load from elsewhere
    # on the machine (it only ever slows a run down) lands on both sides alike.
    runs: dict[str, list[dict]] = {}
    for _ in range(ROUNDS):
        for dtype in ("fp32", "bf16"):
            bf16 = dtype == "bf16"
            for name, fn in (("reference", reference_loop), ("ours", ours)):
                r = fn(build_model(), data, STEPS, BATCH, CONTEXT, LR, bf16)
                runs.setdefault(f"{name} {dtype}", []).append(r)
    # nanoGPT against ours on its shape: paired single steps, the two runs alternating
    nano = {}
    for dtype in ("fp32", "bf16"):
        bf16 = dtype == "bf16"
        nano[dtype] = paired(
            nanogpt_steps(build_nanogpt(), data, BATCH, CONTEXT, LR, bf16),
            ours_steps(expertlm_from(build_nanogpt()), data, BATCH, CONTEXT, LR, bf16, batch_offsets),
            NANO_STEPS,
        )
        for side, name in (("a", "nanoGPT"), ("b", "ours~nano")):
            runs[f"{name} {dtype}"] = [{"tokens_per_s": BATCH * CONTEXT / nano[dtype]["median_s"][side],
                                        "losses": nano[dtype]["losses"][side]}]  # fmt: skip
    for dtype in ("fp32", "bf16"):  # the peak again, after the runs; the best of both counts
        peak[dtype] = max(peak[dtype], measure_peak_gflops(DTYPES[dtype]))
    order = ("reference fp32", "reference bf16", "ours fp32", "ours bf16", "nanoGPT fp32",
             "nanoGPT bf16", "ours~nano fp32", "ours~nano bf16")  # fmt: skip
    best = {
        name: {
            "tokens_per_s": max(r["tokens_per_s"] for r in runs[name]),  # nanoGPT: median step
            "losses": runs[name][0]["losses"],
        }
        for name in order
    }

    print(
        f"threads {torch.get_num_threads()}, matmul peak fp32 {peak['fp32']:.1f} GFLOP/s, "
        f"bf16 {peak['bf16']:.1f} GFLOP/s; model {n_params / 1e6:.1f}M params, "
        f"{fpt / 1e6:.1f} MFLOP/token; {STEPS} steps x {BATCH} x {CONTEXT} tokens, "
        f"best of {ROUNDS} rounds"
    )
    print(
        f"{'':16s} {'tokens/s':>10s} {'(each round)':>14s} {'MFU of fp32 peak':>17s} "
        f"{'of own dtype peak':>18s} {'final loss':>11s}"
    )
    for name, r in best.items():
        gflops = r["tokens_per_s"] * fpt / 1e9
        each = "/".join(f"{x['tokens_per_s']:.0f}" for x in runs[name])
        print(
            f"{name:16s} {r['tokens_per_s']:>10,.0f} {each:>14s} {gflops / peak['fp32']:>17.1%} "
            f"{gflops / peak[name.split()[1]]:>18.1%} {r['losses'][-1]:>11.4f}"
        )
    print(f"total {time.perf_counter() - t_start:.0f} s")

    targets = (
        "ours fp32 >=1.0x reference fp32 at loss within 2%, MFU >=50%; "
        "ours bf16 >=1.5x ours fp32 at loss within 2%; ours >=1.05x nanoGPT in fp32 and bf16 "
        "at loss within 2%"
    )
    ref32, o32, o16 = best["reference fp32"], best["ours fp32"], best["ours bf16"]
    speed = o32["tokens_per_s"] / ref32["tokens_per_s"]
    mfu = o32["tokens_per_s"] * fpt / (peak["fp32"] * 1e9)
    bf16_speed = o16["tokens_per_s"] / o32["tokens_per_s"]
    loss32 = abs(o32["losses"][-1] - ref32["losses"][-1]) / ref32["losses"][-1]
    loss16 = abs(o16["losses"][-1] - o32["losses"][-1]) / o32["losses"][-1]
    vs_nano = {}  # (ours~nano's speed over nanoGPT's: the median paired step-time ratio, loss diff)
    for dtype in ("fp32", "bf16"):
        n, o = nano[dtype]["losses"]["a"][-1], nano[dtype]["losses"]["b"][-1]
        vs_nano[dtype] = (nano[dtype]["ratio"], abs(o - n) / n)
        r = sorted(nano[dtype]["ratios"])
        print(f"ours~nano {dtype}: paired step-time ratio median {nano[dtype]['ratio']:.3f} "
              f"(quartiles {r[len(r) // 4]:.3f}-{r[3 * len(r) // 4]:.3f}, {len(r)} pairs)")
    ok = (
        speed >= 1.0
        and loss32 <= LOSS_TOL
        and mfu >= 0.5
        and bf16_speed >= 1.5
        and loss16 <= LOSS_TOL
        and all(x >= 1.05 and d <= LOSS_TOL for x, d in vs_nano.values())
    )
    print(
        f"train_throughput: ours fp32 {speed:.2f}x reference (loss diff {loss32:.1%}), "
        f"MFU {mfu:.0%}, bf16 {bf16_speed:.2f}x ours fp32 (loss diff {loss16:.1%}); "
        f"vs nanoGPT fp32 {vs_nano['fp32'][0]:.2f}x (loss diff {vs_nano['fp32'][1]:.1%}), "
        f"bf16 {vs_nano['bf16'][0]:.2f}x (loss diff {vs_nano['bf16'][1]:.1%}) "
        f"(target {targets}) {'PASS' if ok else 'FAIL'}"
    )


def gpu_main(steps: int = 40, warmup: int = 10, batch: int = 16, device: str = "cuda",
             preset: str = "gpt2-small", context: int = 1024, mm: int = 8192) -> None:
    """gpt2-small in bf16 on one GPU: tokens/s and MFU of `train_step` eager (the fused head),
    compiled as `train --compile` runs it, and the compiled model with the fused head, beside nanoGPT's model
    and loop compiled on the same batches (the reference), then the compiled step's CUDA kernels
    by time. (The other arguments let the same code run small on a CPU, as a check before a
    GPU machine is borrowed.)"""
    from torch.profiler import ProfilerActivity, profile

    from expertlm.models import PRESETS, gpt2_config
    from expertlm.models import build_model as build_expertlm

    dev = torch.device(device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    a = torch.randn(mm, mm, device=dev, dtype=torch.bfloat16)
    for _ in range(3):
        a @ a
    sync()
    t0 = time.perf_counter()
    for _ in range(10):
        a @ a
    sync()
    peak = 10 * 2 * mm**3 / (time.perf_counter() - t0)
    del a
    vocab = 50_257
    data = zipf_tokens((steps + 3) * batch * context + context + 1)
    data = np.minimum(data * 3, vocab - 1)  # spread over GPT-2's vocabulary

    def ours_gpu(compile: str | None):  # both loops on nanoGPT's random batches
        model = build_expertlm(gpt2_config(preset, vocab, vocab - 1), seed=0).to(dev)
        run = ours_steps(model, data, batch, context, LR, True, batch_offsets, device, compile)
        return model, lambda step: next(run)[1]

    def nano_gpu():
        p = PRESETS[preset]
        torch.manual_seed(0)
        model = NanoGPT(vocab, context, p["n_layer"], p["n_head"], p["n_embd"], dropout=0.0).to(dev)
        run = nanogpt_steps(torch.compile(model), data, batch, context, LR, True, device)
        return model, lambda step: next(run)[1]

    rates, losses, fpt, profiled = {}, {}, None, None
    # "ours compiled": as `train --compile --bf16` runs a GPT-2 (the loss compiled with the model)
    runs = (("ours eager", lambda: ours_gpu(None)), ("ours compiled", lambda: ours_gpu("loss")),
            ("ours compiled model, fused head", lambda: ours_gpu("model")),
            ("nanoGPT compiled", nano_gpu))  # fmt: skip
    for name, make in runs:
        model = step = None
        try:  # one borrowed run: report the other figures all the same
            model, step = make()
            fpt = fpt or flops_per_token(model, context)
            for i in range(steps):
                if i == warmup:
                    sync()
                    t0 = time.perf_counter()
                losses[name] = step(i)
            sync()
            rates[name] = (steps - warmup) * batch * context / (time.perf_counter() - t0)
        except Exception as e:
            print(f"{name}: failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
            rates[name], losses[name] = 0.0, float("nan")
        if name == "ours compiled":
            profiled = step  # profiled below, compiled already
        del model, step
    gpu = torch.cuda.get_device_name() if dev.type == "cuda" else device
    print(f"{gpu}: bf16 matmul peak {peak / 1e12:.0f} TFLOP/s; {preset} {fpt / 1e6:.0f} MFLOP/token, "
          f"{batch} x {context} tokens a step")  # fmt: skip
    for k in rates:
        print(f"  {k:32s} {rates[k]:>10,.0f} tokens/s  MFU {rates[k] * fpt / peak:6.1%}  last loss {losses[k]:.3f}")
    try:
        step = profiled or ours_gpu("loss")[1]
        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
        t0 = time.perf_counter()
        with profile(activities=acts) as prof:
            for i in range(steps, steps + 3):
                step(i)
            sync()
        wall = time.perf_counter() - t0
        key = "self_cuda_time_total" if dev.type == "cuda" else "self_cpu_time_total"
        busy = device_seconds(prof)  # well below the wall time: the GPU waits on the host
        print(f"ours compiled, 3 steps profiled: {wall:.3f} s wall, {busy:.3f} s of device kernels")
        print(prof.key_averages().table(sort_by=key, row_limit=15, max_name_column_width=60))
    except Exception as e:
        print(f"profile: failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    mfu, nano = rates["ours compiled"] * fpt / peak, rates["nanoGPT compiled"]
    ok = mfu >= 0.40
    print(f"train_throughput_gpu: MFU {mfu:.1%} compiled, {rates['ours eager'] * fpt / peak:.1%} eager, "
          f"{rates['ours compiled'] / nano if nano else float('nan'):.2f}x nanoGPT compiled "
          f"(target compiled >= 40%) {'PASS' if ok else 'FAIL'}")


if __name__ == "__main__":
    gpu_main() if "--gpu" in sys.argv[1:] else main()
