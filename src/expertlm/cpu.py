"""Training on a CPU: dropout masks drawn fast, and the attention in fp32 under bf16 autocast.

`train` calls `cpu_training(model, bf16)` when it trains on a CPU. Only the running model
changes: its saved config.json names no attention implementation, and the folder loads with SDPA
as before.
"""

from __future__ import annotations

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

CPU_SDPA = "expertlm_sdpa_cpu"  # attention implementations of transformers' registry
FP32_SDPA = "expertlm_sdpa_fp32"


def dropout_noise(x: torch.Tensor, p: float) -> torch.Tensor:
    """What dropout multiplies `x` by in training: 0 with probability `p`, else 1 / (1 - p), in
    `x`'s dtype and shape (as `torch.nn.functional.dropout` draws it).

    On a CPU torch draws a dropout mask with `bernoulli_`, on one thread at ~170M elements/s
    (torch 2.13): 22 ms for the 3.1M attention probabilities of one layer of a 17M GPT-2 at
    batch 8 x 256, 12% of its fp32 training step with GPT2Config's 0.1 dropout. Here four 16-bit
    uniform draws come from each 64-bit draw of torch's generator (so `torch.manual_seed` and a
    resumed run's RNG state fix them, as they fix torch's own), compared with a threshold: 7 ms
    for the same mask. The keep probability is rounded to a multiple of 1/65,536 (0.1 dropout
    keeps 0.899994 of the values, not 0.9); the scale is 1 / (1 - p) exactly as torch's."""
    n = x.numel()
    draws = torch.empty((n + 3) // 4, dtype=torch.int64, device=x.device).random_(-(2**63), None)
    keep = draws.view(torch.int16)[:n].view(x.shape) < round(65536 * (1.0 - p)) - 32768
    return keep.to(x.dtype).div_(1.0 - p)


def _fast_dropout(x: torch.Tensor, p: float) -> bool:
    """Whether `dropout_noise` draws this mask: a CPU tensor, 0 < p < 1, not while compiling
    (the compiled graph keeps torch's own dropout)."""
    return x.device.type == "cpu" and 0.0 < p < 1.0 and not torch.compiler.is_compiling()


class CpuDropout(torch.nn.Dropout):
    """`nn.Dropout` whose masks on a CPU come from `dropout_noise` (torch's own in eval, on a GPU
    and under `torch.compile`)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and _fast_dropout(x, self.p):
            return x * dropout_noise(x, self.p)
        return super().forward(x)


def _sdpa_cpu(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None,
              is_causal=None, **kwargs):  # fmt: skip
    """transformers' SDPA attention, except in training with attention dropout on a CPU: there
    SDPA takes its math path anyway (its fused CPU kernel has no dropout), written out here with
    `dropout_noise`'s mask on the attention probabilities. The masking is SDPA's: a boolean mask
    (True: attend) or an additive one, else causal (upper left) for more than one query; keys
    and values repeated for grouped-query heads; a row with nothing to attend to gives 0. A
    position bias or a softcap goes to SDPA's own function (which refuses a softcap)."""
    if (not _fast_dropout(query, dropout) or kwargs.get("position_bias") is not None
            or kwargs.get("softcap") is not None):  # fmt: skip
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, is_causal=is_causal, **kwargs)  # fmt: skip
    groups = getattr(module, "num_key_value_groups", 1)
    key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    q_len, kv_len = query.shape[2], key.shape[2]
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    scores = torch.matmul(query, key.transpose(-1, -2)) * scale
    blocked = None
    if attention_mask is not None and attention_mask.dtype == torch.bool:
        blocked = ~attention_mask
    elif attention_mask is not None:
        scores = scores + attention_mask
    elif causal and q_len > 1:
        blocked = torch.ones(q_len, kv_len, dtype=torch.bool, device=query.device).triu_(1)
    if blocked is not None:
        scores = scores.masked_fill(blocked, float("-inf"))
    probs = torch.softmax(scores, dim=-1, dtype=torch.float32)
    if attention_mask is not None:  # a row that attends to nothing: 0, as SDPA's, not NaN
        probs = probs.nan_to_num(0.0)
    probs = probs.to(value.dtype)
    out = torch.matmul(probs * dropout_noise(probs, dropout), value)
    return out.transpose(1, 2).contiguous(), None


def _sdpa_fp32(module, query, key, value, attention_mask, **kwargs):
    """`_sdpa_cpu` computed in fp32 outside autocast, its output back in the inputs' dtype."""
    dtype = query.dtype
    if attention_mask is not None and attention_mask.is_floating_point():
        attention_mask = attention_mask.float()
    with torch.autocast(query.device.type, enabled=False):
        out, weights = _sdpa_cpu(module, query.float(), key.float(), value.float(),
                                 attention_mask, **kwargs)  # fmt: skip
    return out.to(dtype), weights


def cpu_training(model, bf16: bool) -> bool:
    """Prepare a model to train on a CPU, as `train` does; True if its attention changed.

    - Dropout masks come from `dropout_noise`: every `nn.Dropout` becomes a `CpuDropout`, and an
      SDPA model's attention dropout is drawn the same way (`_sdpa_cpu`). With GPT2Config's 0.1
      dropout, a 17M GPT-2's fp32 step went from 46% to 53-55% MFU (bench/train_throughput.py).
    - Under bf16 autocast the attention runs in fp32 (`_sdpa_fp32`): SDPA's bf16 backward on a
      CPU takes twice its fp32 time (torch 2.13, AVX-512/AMX: 54 against 26 ms on the demo's
      16 x 4 x 256 x 32 heads), so the whole bf16 step is 1.17x faster on one thread, 1.12x on
      two (paired steps of the demo's model, losses within 0.1%).

    A model not on SDPA keeps its attention."""
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if type(child) is torch.nn.Dropout:  # (not a subclass: it may do more than drop)
                setattr(parent, name, CpuDropout(child.p, child.inplace).train(child.training))
    if model.config._attn_implementation != "sdpa":
        return False
    name, fn = (FP32_SDPA, _sdpa_fp32) if bf16 else (CPU_SDPA, _sdpa_cpu)
    AttentionInterface.register(name, fn)
    AttentionMaskInterface.register(name, sdpa_mask)  # (without one, no mask reaches it at all)
    model.set_attn_implementation(name)
    return True
