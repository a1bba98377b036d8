"""GPT-2 family presets; build from scratch or load a pretrained causal LM; size and FLOPs.

Models are plain `transformers` classes with SDPA attention, so every run folder is a Hugging
Face model folder. Model code never sees ranks or devices beyond `.to()`: parallelism is
applied from outside (`dist.py`).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from expertlm.errors import ExpertlmError
from expertlm.io import combine_hashes, read_json, sha256_file
from expertlm.net import require_hub

MODEL_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"

# n_positions is the context; dropout is 0 as in nanoGPT's pretraining (deterministic resume).
PRESETS: dict[str, dict[str, int]] = {
    "gpt2-tiny": {"n_layer": 2, "n_embd": 64, "n_head": 2, "n_positions": 128},
    "gpt2-mini": {"n_layer": 6, "n_embd": 384, "n_head": 6, "n_positions": 256},
    "gpt2-small": {"n_layer": 12, "n_embd": 768, "n_head": 12, "n_positions": 1024},  # 124M
    "gpt2-medium": {"n_layer": 24, "n_embd": 1024, "n_head": 16, "n_positions": 1024},  # 355M
    "gpt2-large": {"n_layer": 36, "n_embd": 1280, "n_head": 20, "n_positions": 1024},  # 774M
}


def gpt2_config(preset: str, vocab_size: int, eot_id: int, overrides: dict[str, Any] | None = None):
    """A `GPT2Config` for a preset, any field overridden (checked by `config.ModelConfig`); the
    vocabulary comes from the tokenizer."""
    from transformers import GPT2Config

    from expertlm.config import ModelConfig

    overrides = overrides.model_dump() if hasattr(overrides, "model_dump") else overrides
    model = ModelConfig.from_options({"preset": preset, "model": overrides or {}})
    # gelu: the exact (erf) GELU, one kernel, as nanoGPT's nn.GELU. GPT-2's own tanh approximation
    # (gelu_new) is five elementwise operations, ~7% of a CPU step; even as one kernel
    # (gelu_pytorch_tanh) it takes 4.6x the exact one's time forward and 2x backward on a CPU
    # (torch 2.13, AVX-512). A GPT-2 checkpoint keeps the activation its config.json names.
    fields: dict[str, Any] = {"resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0,
                              "activation_function": "gelu"} | model.fields()  # fmt: skip
    return GPT2Config(vocab_size=vocab_size, bos_token_id=eot_id, eos_token_id=eot_id, **fields)


def gpt2_parameters(fields: dict[str, Any], vocab_size: int) -> int:
    """Parameters of a GPT-2 with these GPT2Config fields, counted without building it."""
    L, d, P = fields["n_layer"], fields["n_embd"], fields["n_positions"]
    inner = fields.get("n_inner") or 4 * d
    block = (3 * d * d + 3 * d) + (d * d + d) + (d * inner + inner) + (inner * d + d) + 4 * d
    head = 0 if fields.get("tie_word_embeddings", True) else vocab_size * d
    return vocab_size * d + P * d + L * block + 2 * d + head


def build_model(config, seed: int = 0):
    """A randomly initialised GPT-2 (seeded) with SDPA attention."""
    import torch
    from transformers import GPT2LMHeadModel

    torch.manual_seed(seed)
    return GPT2LMHeadModel._from_config(config, attn_implementation="sdpa")


def init_model(tokenizer: str | Path, out: str | Path, *, overwrite: bool = False,
               show_progress: bool = True, **options) -> Path:  # fmt: skip
    """An untrained model folder: the preset sized for `tokenizer`, initialised with `seed`, plus
    the tokenizer's files (an experiment's "untrained" baseline). `options` are the fields of
    `ModelConfig` (preset, model, seed)."""
    from transformers.utils import logging as hf_logging

    from expertlm.config import ModelConfig
    from expertlm.io import atomic_dir, check_output_dir
    from expertlm.tokenizer import copy_tokenizer_files, load_handle

    cfg = ModelConfig.from_options(options)
    check_output_dir(Path(out), overwrite, inputs=[tokenizer])
    hf_logging.disable_progress_bar()
    handle = load_handle(tokenizer)
    config = gpt2_config(cfg.preset, handle.vocab_size, handle.eot_id, cfg.model)
    model = build_model(config, cfg.seed)
    with atomic_dir(out, overwrite=overwrite) as tmp:
        model.save_pretrained(tmp)
        copy_tokenizer_files(tokenizer, tmp)
    return Path(out)


def load_model(name: str | Path, dtype=None):
    """Any local causal LM folder (or a hub id where the network is there)."""
    from transformers import AutoModelForCausalLM

    path = Path(name)
    if path.is_dir() and (path / "adapter_config.json").is_file():
        if not (path / "adapter_model.safetensors").is_file():
            raise ExpertlmError(f"{path}: LoRA adapters without adapter_model.safetensors (pickle "
                                "adapters are never unpickled)")  # fmt: skip
    elif path.is_dir():
        weights_files(path)  # safetensors, or a clear refusal: weights are never unpickled
    elif not path.exists():
        require_hub(str(name), "model")
    try:
        return AutoModelForCausalLM.from_pretrained(
            str(name), dtype=dtype, attn_implementation="sdpa", use_safetensors=True
        )
    except Exception as e:  # a truncated file, a bad config, an unknown architecture, offline
        where = "folder" if path.exists() else "folder, and the hub could not provide it"
        msg = (str(e).splitlines() or [type(e).__name__])[0]
        raise ExpertlmError(f"{name}: not a loadable model {where} ({msg})") from None


# --- training on a CPU: attention in fp32 under bf16, dropout masks drawn fast --------------------

CPU_SDPA = "expertlm_sdpa_cpu"  # attention implementations of transformers' registry
FP32_SDPA = "expertlm_sdpa_fp32"


def dropout_noise(x, p: float):
    """What dropout multiplies `x` by in training: 0 with probability `p`, else 1 / (1 - p), in
    `x`'s dtype and shape (as `torch.nn.functional.dropout` draws it).

    On a CPU torch draws a dropout mask with `bernoulli_`, on one thread at ~170M elements/s
    (torch 2.13): 22 ms for the 3.1M attention probabilities of one layer of a 17M GPT-2 at
    batch 8 x 256, 12% of its fp32 training step with GPT2Config's 0.1 dropout. Here four 16-bit
    uniform draws come from each 64-bit draw of torch's generator (so `torch.manual_seed` and a
    resumed run's RNG state fix them, as they fix torch's own), compared with a threshold: 7 ms
    for the same mask. The keep probability is rounded to a multiple of 1/65,536 (0.1 dropout
    keeps 0.899994 of the values, not 0.9); the scale is 1 / (1 - p) exactly as torch's."""
    import torch

    n = x.numel()
    draws = torch.empty((n + 3) // 4, dtype=torch.int64, device=x.device).random_(-(2**63), None)
    keep = draws.view(torch.int16)[:n].view(x.shape) < round(65536 * (1.0 - p)) - 32768
    return keep.to(x.dtype).div_(1.0 - p)


def _fast_dropout(x, p: float) -> bool:
    """Whether `dropout_noise` draws this mask: a CPU tensor, 0 < p < 1, not while compiling
    (the compiled graph keeps torch's own dropout)."""
    import torch

    return x.device.type == "cpu" and 0.0 < p < 1.0 and not torch.compiler.is_compiling()


@cache
def _dropout_class():
    import torch

    class CpuDropout(torch.nn.Dropout):
        """`nn.Dropout` whose masks on a CPU come from `dropout_noise` (the same in eval, on a
        GPU and under `torch.compile`)."""

        def forward(self, x):
            if self.training and _fast_dropout(x, self.p):
                return x * dropout_noise(x, self.p)
            return super().forward(x)

    return CpuDropout


def _sdpa_cpu(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None,
              is_causal=None, **kwargs):  # fmt: skip
    """transformers' SDPA attention, except in training with attention dropout on a CPU: there
    SDPA takes its math path anyway (its fused CPU kernel has no dropout), written out here with
    `dropout_noise`'s mask on the attention probabilities. The masking is SDPA's: a boolean mask
    (True: attend) or an additive one, else causal (upper left) for more than one query; keys
    and values repeated for grouped-query heads; a row with nothing to attend to gives 0."""
    import torch
    from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward

    if not _fast_dropout(query, dropout) or kwargs.get("position_bias") is not None:
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
    import torch

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

    Only the running model changes: its saved config.json names no attention implementation, and
    the folder loads with SDPA as before. A model not on SDPA keeps its attention."""
    import torch
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    cls = _dropout_class()
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if type(child) is torch.nn.Dropout:  # (not a subclass: it may do more than drop)
                setattr(parent, name, cls(child.p, child.inplace).train(child.training))
    if model.config._attn_implementation != "sdpa":
        return False
    name, fn = (FP32_SDPA, _sdpa_fp32) if bf16 else (CPU_SDPA, _sdpa_cpu)
    AttentionInterface.register(name, fn)
    AttentionMaskInterface.register(name, sdpa_mask)  # (without one, no mask reaches it at all)
    model.set_attn_implementation(name)
    return True


def parameter_counts(model) -> dict[str, int]:
    """Total parameters, and without the token and position embeddings (Kaplan et al.'s N)."""
    total = sum(p.numel() for p in model.parameters())
    emb = sum(
        m.weight.numel()
        for m in (model.get_input_embeddings(), _position_embeddings(model))
        if m is not None
    )
    return {"total": total, "non_embedding": total - emb}


def _position_embeddings(model):
    base = getattr(model, "transformer", None)
    return getattr(base, "wpe", None)


def flops_per_token(model, context: int) -> int:
    """Training FLOPs per token: 6 N + 12 L d T (PaLM, appendix B), where N counts every weight
    used in a matmul (the non-embedding parameters plus the output projection to the vocabulary)."""
    cfg = model.config
    n_layer = getattr(cfg, "num_hidden_layers", None) or cfg.n_layer
    d_model = getattr(cfg, "hidden_size", None) or cfg.n_embd
    n = parameter_counts(model)["non_embedding"]
    # an untied output projection is a parameter of its own (counted above); a tied one is the
    # input embedding's, left out of the non-embedding count
    if getattr(cfg, "tie_word_embeddings", True):
        n += cfg.vocab_size * d_model
    return int(6 * n + 12 * n_layer * d_model * context)


# --- the weights of a model folder -----------------------------------------------------------


def weights_files(folder: str | Path) -> list[Path]:
    """The safetensors files of a model folder (one, or the shards of an index)."""
    folder = Path(folder)
    if (folder / MODEL_FILE).is_file():
        return [folder / MODEL_FILE]
    if (folder / INDEX_FILE).is_file():
        shards = sorted(set(read_json(folder / INDEX_FILE)["weight_map"].values()))
        return [folder / s for s in shards]
    if any(folder.glob("*.bin")) or any(folder.glob("*.pt*")):
        raise ExpertlmError(
            f"{folder}: holds pickle weights only (pytorch_model.bin): expertlm never unpickles "
            f"weights (a pickle can run code); convert them to safetensors where you trust the file "
            f"(load it with transformers and save_pretrained)"
        )
    raise ExpertlmError(f"{folder}: no {MODEL_FILE} (not a model folder with safetensors weights)")


def model_hash(folder: str | Path) -> str:
    """The one content hash of a model: the sha256 of its model.safetensors (what `sha256sum`
    prints), combined over the shards of a sharded model; for a LoRA run folder, its adapters'
    sha256 combined with its base's (from base.json)."""
    from expertlm.lora import ADAPTER_WEIGHTS, BASE_FILE

    folder = Path(folder)
    if (folder / ADAPTER_WEIGHTS).is_file():
        base = read_json(folder / BASE_FILE) if (folder / BASE_FILE).is_file() else {}
        return combine_hashes([sha256_file(folder / ADAPTER_WEIGHTS),
                               str(base.get("weights_sha256") or base.get("path"))])  # fmt: skip
    files = weights_files(folder)
    return sha256_file(files[0]) if len(files) == 1 else combine_hashes(map(sha256_file, files))


# fp32 weights and gradients, AdamW's two moments: what training holds per parameter.
TRAIN_BYTES_PER_PARAMETER = 16


def check_memory(parameters: int, bytes_per_parameter: int, device, shards: int = 1) -> None:
    """Refuse a model too large for the device before it is built (a width typed with an extra
    zero would otherwise exhaust the memory, or crash the process)."""
    import torch

    need = parameters * bytes_per_parameter / shards
    device = torch.device(device)
    if device.type == "cuda":
        have = torch.cuda.get_device_properties(device).total_memory
    else:
        import psutil

        have = psutil.virtual_memory().total
    if need > have:
        per = f" ({shards} shards)" if shards > 1 else ""
        raise ExpertlmError(
            f"option --model: a model of {parameters:,} parameters needs about {need / 2**30:,.1f} "
            f"GiB to train{per} ({bytes_per_parameter} bytes a parameter: weights, gradients, AdamW); "
            f"{device} has {have / 2**30:,.1f} GiB"
        )
