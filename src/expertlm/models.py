"""GPT-2 family presets; build from scratch or load a pretrained causal LM; size and FLOPs.

Models are plain `transformers` classes with SDPA attention, so every run folder is a Hugging
Face model folder. Model code never sees ranks or devices beyond `.to()`: parallelism is
applied from outside (`dist.py`).
"""

from __future__ import annotations

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
