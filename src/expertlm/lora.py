"""LoRA continued pretraining through `peft` (Hu et al. 2021, https://arxiv.org/abs/2106.09685):
wrap a pretrained model with adapters, save and load adapter-only checkpoints, and `export`.

A LoRA run folder (and each of its checkpoints) holds the adapters in peft's own format,
`adapter_model.safetensors` + `adapter_config.json` (`PeftModel.from_pretrained(base, RUN)` loads
them), and `base.json`, the pointer to the frozen base: its path (absolute) or hub id and the
sha256 of its weights, checked before the adapters are used again (resume, export). `export`
turns any run into a plain Hugging Face model folder, with `merge_lora` the adapters merged in.
"""

from __future__ import annotations

import contextlib
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path

from expertlm.config import ExportConfig, LoraOptions
from expertlm.console import info
from expertlm.errors import ExpertlmError
from expertlm.io import atomic_dir, check_output_dir, provenance, read_json, write_json
from expertlm.merge import SIDE_FILES, model_folder
from expertlm.models import INDEX_FILE, MODEL_FILE, model_hash

ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
BASE_FILE = "base.json"
ADAPTER_NAME = "default"  # peft's name for a model's only adapter; its saved names omit it

_LLAMA = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
# The attention and MLP projections of each architecture (model_type); others: every linear
# layer but the output head (peft's "all-linear").
DEFAULT_TARGETS: dict[str, list[str]] = {
    "gpt2": ["c_attn", "c_proj", "c_fc"],
    "gpt_neox": ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"],
    **{t: _LLAMA for t in ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "olmo2")},
}


def require_peft():
    try:
        import peft
    except ImportError:
        raise ExpertlmError(
            '--lora needs the peft package: pip install -e ".[lora]" (or pip install peft)'
        ) from None
    return peft


def is_lora_run(folder: str | Path) -> bool:
    return (Path(folder) / ADAPTER_CONFIG).is_file()


def wrap(model, opts: LoraOptions, base_path: str):
    """`model` with LoRA adapters on its target layers (peft's `get_peft_model`): the base
    weights frozen, the adapters (A random, B zero, so training starts at the base) trainable."""
    peft = require_peft()
    from transformers.pytorch_utils import Conv1D

    targets = opts.targets or DEFAULT_TARGETS.get(model.config.model_type, "all-linear")
    config = peft.LoraConfig(
        r=opts.r, lora_alpha=opts.alpha, lora_dropout=opts.dropout, target_modules=targets,
        bias="none", task_type="CAUSAL_LM",
        # GPT-2's Conv1D layers store weights transposed (in, out)
        fan_in_fan_out=any(isinstance(m, Conv1D) for m in model.modules()),
    )  # fmt: skip
    try:
        with _no_future_warnings():
            wrapped = peft.get_peft_model(model, config, adapter_name=ADAPTER_NAME)
    except ValueError as e:
        raise ExpertlmError(
            f"option --lora targets={','.join(targets) if isinstance(targets, list) else targets}: "
            f"{str(e).splitlines()[0]}"
        ) from None
    wrapped.peft_config[ADAPTER_NAME].base_model_name_or_path = base_path
    return wrapped


def base_info(init: str, resumed_from: Path | None = None) -> dict:
    """The base model's pointer for base.json: a local folder's absolute path and weights hash
    (a hub id as given, unhashed). On resume, the base must still be the one trained on."""
    path = Path(init)
    info = {"path": init, "weights_sha256": None}
    if path.is_dir():
        try:
            info = {"path": str(path.resolve()), "weights_sha256": model_hash(path)}
        except ExpertlmError:  # no safetensors weights (pytorch_model.bin): path only
            info = {"path": str(path.resolve()), "weights_sha256": None}
    if resumed_from is not None and (resumed_from / BASE_FILE).is_file():
        check_base(read_json(resumed_from / BASE_FILE), resumed_from, now=info)
    return info


def check_base(base: dict, adapters: Path, now: dict | None = None) -> None:
    """Refuse a base whose weights changed since `adapters` were trained on it."""
    if base.get("weights_sha256") is None:
        return
    now = now or base_info(base["path"])
    if now["weights_sha256"] != base["weights_sha256"]:
        raise ExpertlmError(
            f"{base['path']}: the base model's weights changed since the adapters in {adapters} "
            f"were trained on it (sha256 {now['weights_sha256']} vs {base['weights_sha256']})"
        )


def save_adapters(folder: Path, model, state_dict: dict, base: dict) -> None:
    """Adapter weights (from `state_dict`, the trainable parameters by name), adapter_config.json
    and base.json, in peft's own format."""
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    adapters = get_peft_model_state_dict(
        model, state_dict=state_dict, adapter_name=ADAPTER_NAME, save_embedding_layers=False
    )
    save_file(
        {k: v.contiguous() for k, v in adapters.items()},
        folder / ADAPTER_WEIGHTS,
        metadata={"format": "pt"},
    )
    model.peft_config[ADAPTER_NAME].save_pretrained(folder)
    write_json(folder / BASE_FILE, base)


def load_adapter_state(folder: Path, model, saved: dict | None = None) -> dict:
    """The adapters saved in `folder` (or already read from it: `saved`), keyed by `model`'s
    own parameter names."""
    from safetensors.torch import load_file

    saved = load_file(folder / ADAPTER_WEIGHTS) if saved is None else saved
    # peft saves names without ".<adapter name>" (get_peft_model_state_dict)
    names = {
        n.replace(f".{ADAPTER_NAME}", ""): n for n, p in model.named_parameters() if p.requires_grad
    }
    if set(saved) != set(names):
        odd = sorted(set(saved) ^ set(names))
        raise ExpertlmError(
            f"{folder / ADAPTER_WEIGHTS}: adapters do not match the model's LoRA layers "
            f"({len(odd)} names differ, e.g. {odd[0]})"
        )
    return {names[k]: v for k, v in saved.items()}


def load_run(run: str | Path):
    """A LoRA run's base model with its adapters (not merged), in eval mode."""
    from expertlm.models import load_model

    peft = require_peft()
    run = Path(run)
    if (run / BASE_FILE).is_file():
        base = read_json(run / BASE_FILE)
    else:  # adapters from elsewhere: peft's own pointer
        base = {"path": read_json(run / ADAPTER_CONFIG).get("base_model_name_or_path")}
    if not base.get("path"):
        raise ExpertlmError(f"{run}: the adapters do not name their base model")
    check_base(base, run)
    base_model = load_model(base["path"])
    with _no_future_warnings():
        model = peft.PeftModel.from_pretrained(base_model, str(run))
    return model.eval()


@contextlib.contextmanager
def _no_future_warnings() -> Iterator[None]:
    """Silence transformers' deprecation notices that peft triggers (not the user's to fix)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        yield


def export(run: str | Path, out: str | Path, *, overwrite: bool = False, show_progress: bool = True,
           **options) -> Path:  # fmt: skip
    """A plain Hugging Face model folder from a run: with `merge_lora` (`ExportConfig`) a LoRA
    run's adapters merged into its base (W + (alpha / r) B A); a full run's model files copied
    as they are. Tokenizer files come along; export.json records where the model came from."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    merge_lora = ExportConfig.from_options(options).merge_lora
    run, out = Path(run), Path(out)
    if not run.is_dir():
        raise ExpertlmError(f"{run}: no such run folder")
    lora = is_lora_run(run)
    if lora and not merge_lora:
        raise ExpertlmError(
            f"{run}: holds LoRA adapters, not a whole model: pass --merge-lora to write them "
            f"merged into the base model"
        )
    if merge_lora and not lora:
        raise ExpertlmError(f"{run}: not a LoRA run (no {ADAPTER_CONFIG}): nothing to merge")
    check_output_dir(out, overwrite, inputs=[run])
    record: dict = {"format": "expertlm.export/1", "run": str(run), "merge_lora": merge_lora}
    if lora:
        model = load_run(run)
        record["base"] = read_json(run / BASE_FILE) if (run / BASE_FILE).is_file() else None
        record["lora"] = {k: v for k, v in read_json(run / ADAPTER_CONFIG).items()
                          if k in ("r", "lora_alpha", "lora_dropout", "target_modules")}  # fmt: skip
        merged = model.merge_and_unload()
    else:
        model_folder(run)  # a clear error for a folder without a model
    with atomic_dir(out, overwrite=overwrite) as tmp:
        if lora:
            merged.save_pretrained(tmp, safe_serialization=True)
        else:
            for name in ("config.json", MODEL_FILE, INDEX_FILE):
                if (run / name).is_file():
                    shutil.copy2(run / name, tmp / name)
            if (run / INDEX_FILE).is_file():
                for shard in set(read_json(run / INDEX_FILE)["weight_map"].values()):
                    shutil.copy2(run / shard, tmp / shard)
        for name in SIDE_FILES:
            if (run / name).is_file() and not (tmp / name).exists():
                shutil.copy2(run / name, tmp / name)
        write_json(tmp / "export.json", record | {
            "weights_sha256": model_hash(tmp), **provenance(),
        })  # fmt: skip
    how = (
        f"adapters merged into {record['base']['path']}"
        if lora and record["base"]
        else "model files"
    )
    info(f"export: {run} ({how}) -> {out}")
    return out
