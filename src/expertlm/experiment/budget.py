"""`expertlm run --dry-run`: the plan's stages with what would run, and each training's token
and FLOP budget, computed from its options and the model's shape on the meta device."""

from __future__ import annotations

from pathlib import Path

from expertlm.console import console, info
from expertlm.experiment.graph import status
from expertlm.experiment.plan import Plan
from expertlm.experiment.stages import Stage

# Hub ids whose architecture is known offline (for --dry-run budgets).
HUB_PRESETS = {"gpt2": ("gpt2-small", 50257), "gpt2-medium": ("gpt2-medium", 50257),
               "gpt2-large": ("gpt2-large", 50257)}  # fmt: skip
# Other hub models known offline: the fields of their published config.json that decide their
# shape (configs/specialization.yaml's paper profile continues these: 1.5B-14B).
HUB_CONFIGS = {
    "Qwen/Qwen2.5-1.5B": {"model_type": "qwen2", "hidden_size": 1536, "intermediate_size": 8960,
                          "num_hidden_layers": 28, "num_attention_heads": 12, "num_key_value_heads": 2,
                          "vocab_size": 151936, "tie_word_embeddings": True, "max_position_embeddings": 131072},
    "Qwen/Qwen2.5-7B": {"model_type": "qwen2", "hidden_size": 3584, "intermediate_size": 18944,
                        "num_hidden_layers": 28, "num_attention_heads": 28, "num_key_value_heads": 4,
                        "vocab_size": 152064, "tie_word_embeddings": False, "max_position_embeddings": 131072},
    "Qwen/Qwen2.5-14B": {"model_type": "qwen2", "hidden_size": 5120, "intermediate_size": 13824,
                         "num_hidden_layers": 48, "num_attention_heads": 40, "num_key_value_heads": 8,
                         "vocab_size": 152064, "tie_word_embeddings": False, "max_position_embeddings": 131072},
}  # fmt: skip


def print_plan(plan: Plan) -> dict:
    """The stages in order with what would run, and each training's token and FLOP budget."""
    from rich.table import Table

    rows = status(plan)
    table = Table(title=f"{plan.spec.name}: {len(rows)} stages -> {plan.out}")
    for col in ("#", "stage", "status", "tokens", "FLOPs"):
        table.add_column(col, justify="right" if col in ("#", "tokens", "FLOPs") else "left")
    budgets = {}
    for k, (st, state) in enumerate(rows, 1):
        tokens = flops = ""
        if st.kind == "train":
            b = training_budget(st)
            budgets[st.label] = b
            tokens = f"{b['tokens']:,}" if b.get("tokens") else b.get("note", "")
            flops = f"{b['flops']:.3g}" if b.get("flops") else ""
        table.add_row(str(k), st.label, state, tokens, flops)
    console.print(table)
    total = sum(b.get("flops") or 0 for b in budgets.values())
    info(f"training: {sum(b.get('tokens') or 0 for b in budgets.values()):,} tokens, {total:.3g} FLOPs in all "
         f"(6N + 12 L d T per token; epochs-based budgets are known after data prepare)")  # fmt: skip
    return {
        "stages": [{"stage": st.label, "status": s, "out": str(st.out)} for st, s in rows],
        "budgets": budgets,
    }


def training_budget(st: Stage) -> dict:
    """Tokens and FLOPs a train stage will spend, from its options and the model's shape, computed
    on the meta device (no memory, no download)."""
    import torch

    from expertlm.models import PRESETS, gpt2_config

    cfg = st.options
    vocab = _vocab_size(st)
    init = cfg["init"]
    preset = cfg["preset"]
    if init != "scratch":
        if str(init) in HUB_CONFIGS:
            model = _meta_model(str(init))
            return _budget(cfg, model, model.config.max_position_embeddings, st)
        known = HUB_PRESETS.get(str(init))
        if known is not None:
            preset, vocab = known
        elif (Path(init) / "config.json").is_file():
            from transformers import AutoConfig, AutoModelForCausalLM

            with torch.device("meta"):
                model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(init))
            c = model.config
            return _budget(cfg, model, getattr(c, "n_positions", None) or c.max_position_embeddings, st)
    if vocab is None or preset not in PRESETS:
        return {"note": "vocabulary known after the tokenizer is trained"}
    from transformers import GPT2LMHeadModel

    with torch.device("meta"):
        model = GPT2LMHeadModel(gpt2_config(preset, vocab, 0, cfg.get("model") or {}))
    return _budget(cfg, model, model.config.n_positions, st)


def _meta_model(hub_id: str):
    """A HUB_CONFIGS model on the meta device (no weights, no download)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    fields = dict(HUB_CONFIGS[hub_id])
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(AutoConfig.for_model(fields.pop("model_type"), **fields))


def _post_budget(cfg: dict, model, context: int, st: Stage | None) -> dict:
    """sft, dpo, orpo: the tokens of the examples train will see, once the JSONL file and the
    model's tokenizer exist: as many whole batches as the epochs give of the examples not held
    out (val_frac), at the mean length of the examples (chosen and rejected both, each cut to
    the context), so within a few examples' tokens of run.json's count (which takes them in
    their seeded order). With max_steps, at most max_steps x batch x context (x 2 for pairs)."""
    from expertlm.models import flops_per_token, parameter_counts

    per_token = flops_per_token(model, context)
    params = parameter_counts(model)["total"]
    data = Path(st.inputs["shards"].out) if st is not None else None  # type: ignore[union-attr]
    tok = _tokenizer_folder(st) if st is not None else None
    epochs = cfg.get("epochs") or 1
    if data is not None and data.is_file() and tok is not None and not cfg.get("max_steps"):
        from expertlm.chat import Renderer, read_preferences, read_sft
        from expertlm.tokenizer import load_tokenizer

        renderer = Renderer(load_tokenizer(tok), cfg.get("loss_on", "assistant"))
        if cfg["objective"] == "sft":
            lengths = [min(len(e.ids), context) for e in read_sft(data, renderer)]
        else:
            lengths = [min(len(p.chosen.ids), context) + min(len(p.rejected.ids), context)
                       for p in read_preferences(data, renderer)]  # fmt: skip
        # as train: val_frac of the examples held out, whole batches of the rest per epoch
        n, val_frac = len(lengths), cfg.get("val_frac", 0.05)
        n_train = n - (min(max(1, round(val_frac * n)), n - 1) if val_frac else 0)
        batch = cfg.get("batch_examples") or cfg.get("micro_batch", 8)
        tokens = max(1, int(epochs * n_train / batch)) * batch * sum(lengths) / n
    elif cfg.get("max_steps"):
        batch = cfg.get("batch_examples") or cfg.get("micro_batch", 8)
        tokens = cfg["max_steps"] * batch * context * (1 if cfg["objective"] == "sft" else 2)
        return {"tokens": int(tokens), "flops": float(per_token * tokens), "flops_per_token": per_token,
                "parameters": params, "context": context, "note": "at most"}  # fmt: skip
    else:
        return {"note": f"{epochs} epoch(s) of the dataset, known once it is made", "parameters": params}
    return {"tokens": int(tokens), "flops": float(per_token * tokens), "flops_per_token": per_token,
            "parameters": params, "context": context}  # fmt: skip


def _tokenizer_folder(st: Stage) -> Path | None:
    """The tokenizer folder a fine-tuning stage's model will have, where it exists now: its
    init's folder, or up the chain of variants to the shards or tokenizer that made it."""
    while True:
        if st.kind == "input":
            p = Path(st.out)
            return p if (p / "tokenizer.json").is_file() else None
        if st.kind == "train":
            shards = st.inputs.get("shards")
            if isinstance(shards, Stage) and shards.kind == "data_prepare":
                p = Path(shards.inputs["tokenizer"].out)  # type: ignore[union-attr]
                return p if (p / "tokenizer.json").is_file() else None
            if not st.after:
                return None
            st = st.after[0]
        elif st.kind in ("merge", "merge_recipe"):
            st = st.inputs["models"][0]  # type: ignore[index]
        elif st.kind == "init_model":
            st = st.inputs["tokenizer"]  # type: ignore[assignment]
        else:
            p = Path(st.out)
            return p if (p / "tokenizer.json").is_file() else None


def _budget(cfg: dict, model, max_context: int, st: Stage | None = None) -> dict:
    from expertlm.models import flops_per_token, parameter_counts

    context = cfg.get("context") or max_context
    if cfg.get("objective", "clm") != "clm":
        return _post_budget(cfg, model, context, st)
    batch_tokens = cfg.get("batch_tokens") or cfg.get("micro_batch", 8) * context
    if cfg.get("max_tokens"):
        tokens = cfg["max_tokens"]
    elif cfg.get("max_steps"):
        tokens = cfg["max_steps"] * batch_tokens
    else:
        return {
            "note": f"{cfg.get('epochs') or 1} epoch(s)",
            "parameters": parameter_counts(model)["total"],
        }
    per_token = flops_per_token(model, context)
    return {"tokens": int(tokens), "flops": float(per_token * tokens), "flops_per_token": per_token,
            "parameters": parameter_counts(model)["total"], "context": context}  # fmt: skip


def _vocab_size(st: Stage) -> int | None:
    """The vocabulary of a train stage's shards (a trained tokenizer: the size asked for); a
    fine-tuning stage's is its init's."""
    shards = st.inputs.get("shards")
    while not (isinstance(shards, Stage) and shards.kind == "data_prepare") and st.after:
        st = st.after[0]  # sft, dpo, orpo: up the chain of inits
        if st.kind in ("merge", "merge_recipe"):
            st = st.inputs["models"][0]  # type: ignore[assignment,index]
        shards = st.inputs.get("shards")
    if isinstance(shards, Stage) and shards.kind == "data_prepare":
        tok = shards.inputs["tokenizer"]
        if isinstance(tok, Stage):
            if tok.kind == "tokenizer_train":
                return tok.options.get("vocab_size")
            if (Path(tok.out) / "tokenizer.json").is_file():
                from expertlm.tokenizer import load_handle

                return load_handle(tok.out).vocab_size
            if str(tok.out) in HUB_CONFIGS:
                return HUB_CONFIGS[str(tok.out)]["vocab_size"]
            known = HUB_PRESETS.get(str(tok.out))
            return known[1] if known else None
    return None


def preflight(plan: Plan) -> list[tuple[str, str]]:
    """What the stages would refuse once their inputs exist, found before any compute: each
    training's batch arithmetic against its model's context, whether a model trained from
    scratch fits the device, and whether the devices named exist. (key, problem) pairs."""
    from pydantic import ValidationError

    from expertlm.config import TrainConfig
    from expertlm.dist import pick_device
    from expertlm.errors import ExpertlmError
    from expertlm.models import TRAIN_BYTES_PER_PARAMETER, check_memory, gpt2_parameters

    problems: list[tuple[str, str]] = []
    devices = {"eval.options.device": plan.spec.eval.options.get("device")}
    index = {v.name: i for i, v in enumerate(plan.spec.variants)}
    for name, vp in plan.variants.items():
        key = f"variants.{index[name]}"
        for st in {id(s): s for s in vp.models.values() if s.kind == "train"}.values():
            try:
                cfg = TrainConfig.model_validate(st.options)
            except ValidationError:
                continue  # reported under its key already
            devices[f"{key}.train.device"] = cfg.device
            fields, positions = _architecture(st)
            if positions is not None:
                problems += [(f"{key}.train.{k}", msg) for k, msg in cfg.batch_problems(positions)]
            vocab = _vocab_size(st)
            if fields is not None and vocab is not None and cfg.init == "scratch":
                try:
                    check_memory(gpt2_parameters(fields, vocab), TRAIN_BYTES_PER_PARAMETER,
                                 pick_device(cfg.device))  # fmt: skip
                except ExpertlmError as e:
                    problems.append((f"{key}.model", str(e).removeprefix("option --model: ")))
    for key, device in devices.items():
        if device is not None:
            try:
                pick_device(device)
            except ExpertlmError as e:
                problems.append((key, str(e).removeprefix("option --device: ")))
    return problems


def _architecture(st: Stage) -> tuple[dict | None, int | None]:
    """(GPT-2 fields when known, positions) of the model a stage makes or is, without building
    it: a preset's, a folder's config.json, a known hub id's, or its parent's."""
    from expertlm.config import ModelConfig

    if st.kind == "input":
        if (Path(st.out) / "config.json").is_file():
            from expertlm.io import read_json

            c = read_json(Path(st.out) / "config.json")
            return None, c.get("n_positions") or c.get("max_position_embeddings")
        if str(st.out) in HUB_CONFIGS:
            return None, HUB_CONFIGS[str(st.out)]["max_position_embeddings"]
        if (known := HUB_PRESETS.get(str(st.out))) is not None:
            fields = ModelConfig(preset=known[0]).fields()
            return fields, fields["n_positions"]
        return None, None
    if st.kind in ("merge", "merge_recipe"):
        return _architecture(st.inputs["models"][0])
    if st.kind == "train" and st.options.get("init") != "scratch":
        return _architecture(st.after[0])
    fields = ModelConfig(preset=st.options["preset"], model=st.options.get("model") or {}).fields()
    return fields, fields["n_positions"]
