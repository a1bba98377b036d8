"""`expertlm train`: shards -> a model, on one CPU core, one GPU or many (torchrun), same command;
with --objective sft|dpo|orpo, a JSONL file of examples -> a fine-tuned model.

`train` is `setup` (config, processes, model, optimizer, the objective, the resume point),
`fit` (one readable loop, nanoGPT-style) and `finish` (the run folder's final files). What is
learnt is the objective's (`objectives.py`: its data order, loss and validation); the loop owns
the schedule (`lr_at`), accumulation, processes, logs and checkpoints (`save_checkpoint`,
`load_checkpoint`). A checkpoint holds everything the next step depends on (weights, optimizer,
RNG states, step, data position), so a run killed at any moment and resumed takes the same
steps, bit for bit on CPU in float32. With `lora`, the weights a checkpoint holds are the
adapters only (`lora.py`).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from expertlm import dist, lora
from expertlm.config import TrainConfig, flag
from expertlm.console import console, info, progress_enabled, warn
from expertlm.cpu import cpu_training
from expertlm.errors import ExpertlmError
from expertlm.io import (
    atomic_dir,
    check_output,
    make_temp_dir,
    provenance,
    read_json,
    remove_stale,
    replace_dir,
    sha256_file,
    write_json,
)
from expertlm.models import (
    TRAIN_BYTES_PER_PARAMETER,
    build_model,
    check_memory,
    flops_per_token,
    gpt2_config,
    gpt2_parameters,
    load_model,
    parameter_counts,
)
from expertlm.objectives import (
    Batch,
    CausalLM,
    Objective,
    Windows,
    fused_head,
    post_objective,
    post_tokenizer,
)
from expertlm.shards import open_tokens, read_meta

CKPT_DIR = "checkpoints"
STATE_DIR = "trainer_state"
POST_TOKENIZER = "tokenizer"  # sft, dpo, orpo: the --init tokenizer as the run renders its data


# --- the step --------------------------------------------------------------------------------


def lr_at(step: int, cfg: TrainConfig, lr: float, warmup: int, total: int) -> float:
    """Linear warm-up, then cosine or linear decay to lr * lr_min_ratio at `total` steps."""
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    floor = lr * cfg.lr_min_ratio
    if cfg.schedule == "linear":
        return lr - (lr - floor) * progress
    return floor + 0.5 * (lr - floor) * (1 + math.cos(math.pi * progress))


def train_step(
    ddp, fwd, optimizer, micro_batches: list[Batch], objective: Objective, cfg: TrainConfig, device
) -> tuple[float, dict[str, float]]:
    """One optimizer step over `micro_batches`: the objective's loss of each (under autocast),
    backward (gradients synchronised across processes on the last micro batch only), clip,
    AdamW. Returns (mean loss, metrics: the gradient norm before clipping, then the objective's
    metrics as means over the micro batches)."""
    accum, loss_sum, sums = len(micro_batches), 0.0, {}
    for i, batch in enumerate(micro_batches):
        batch = batch.to(device)
        # gradients are reduced across processes on the last micro batch only
        last = i == accum - 1
        if hasattr(ddp, "set_requires_gradient_sync"):  # FSDP2
            ddp.set_requires_gradient_sync(last)
        with (
            ddp.no_sync()
            if not last and hasattr(ddp, "no_sync")
            else contextlib.nullcontext(),  # DDP
            torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16),
        ):
            loss, metrics = objective.loss(fwd, batch)
            (loss / accum).backward()
        loss_sum += loss.item()
        for key, value in metrics.items():
            sums[key] = sums.get(key, 0.0) + value
    model = getattr(ddp, "module", ddp)
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip or float("inf"))
    grad_norm = (
        norm.full_tensor() if hasattr(norm, "full_tensor") else norm
    ).item()  # FSDP: DTensor
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss_sum / accum, {"grad_norm": grad_norm} | {k: v / accum for k, v in sums.items()}


def adamw(model, cfg: TrainConfig, lr: float) -> torch.optim.AdamW:
    """AdamW over the trainable parameters, weight decay on matrices only (not biases, norms)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    # fused: one kernel per step where the build has it; sharded (DTensor) parameters use foreach
    return torch.optim.AdamW(groups, lr=lr, betas=(cfg.beta1, cfg.beta2), fused=not cfg.fsdp)


# --- checkpoints -----------------------------------------------------------------------------


def save_checkpoint(path: Path, model, optimizer, state: dict, tokenizer_dir: Path, d: dist.Dist,
                    arch: str, base: dict | None = None) -> None:  # fmt: skip
    """A Hugging Face model folder plus trainer_state/, written atomically by rank 0. Every rank
    must call it: the full state dicts are gathered from the shards (FSDP) or copied (DDP).
    A LoRA model (`base`: its base.json) saves its adapters instead of a model folder."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

    # LoRA: the frozen base is not saved, it is `base`'s files
    full = StateDictOptions(full_state_dict=True, cpu_offload=True,
                            ignore_frozen_params=base is not None)  # fmt: skip
    model_sd, optim_sd = get_state_dict(model, optimizer, options=full)  # keyed by parameter name
    if not d.main:
        return
    with atomic_dir(path, overwrite=True) as tmp:
        if base is not None:
            lora.save_adapters(tmp, model, model_sd, base)
        else:
            model.save_pretrained(tmp, state_dict=model_sd, safe_serialization=True)
            config = read_json(tmp / "config.json")
            write_json(
                tmp / "config.json", config | {"architectures": [arch]}
            )  # FSDP renames the class
        for f in tokenizer_dir.iterdir():
            shutil.copy2(f, tmp / f.name)
        (tmp / STATE_DIR).mkdir()
        torch.save(optim_sd, tmp / STATE_DIR / "optimizer.pt")
        # The data order comes from seeded generators and `position`; torch's RNG is the only
        # other random state a step can touch (dropout, when a user turns it on).
        rng = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state()
        torch.save(rng, tmp / STATE_DIR / "rng.pt")
        write_json(tmp / STATE_DIR / "state.json", state)


def latest_checkpoint(run: Path) -> Path | None:
    ckpts = sorted((run / CKPT_DIR).glob("step-*")) if (run / CKPT_DIR).is_dir() else []
    ckpts = [c for c in ckpts if (c / STATE_DIR / "state.json").is_file()]
    return ckpts[-1] if ckpts else None


def read_checkpoint(path: Path) -> dict:
    """Everything a checkpoint holds, read into memory: a damaged file fails here, before
    anything is restored."""
    from safetensors.torch import load_file

    weights, adapters = path / "model.safetensors", path / lora.ADAPTER_WEIGHTS
    return {
        "path": path, "state": read_json(path / STATE_DIR / "state.json"),
        "weights": load_file(weights) if weights.is_file() else None,
        "adapters": load_file(adapters) if adapters.is_file() and not weights.is_file() else None,
        "optimizer": torch.load(path / STATE_DIR / "optimizer.pt", weights_only=True),
        "rng": torch.load(path / STATE_DIR / "rng.pt", weights_only=True),
    }  # fmt: skip


def resume_point(run: Path) -> dict:
    """The newest checkpoint of `run` that reads whole; a damaged newer one (a kill while the
    disk filled, a file truncated by hand) is passed over, saying so."""
    ckpts = sorted((run / CKPT_DIR).glob("step-*"), reverse=True) if (run / CKPT_DIR).is_dir() else []
    for path in ckpts:
        try:
            ckpt = read_checkpoint(path)
            if ckpt["weights"] is None and ckpt["adapters"] is None:
                raise ExpertlmError("no weights")
            return ckpt
        except Exception as e:  # ExpertlmError, safetensors' errors, a torn torch file
            warn(f"{path}: damaged ({(str(e).splitlines() or [type(e).__name__])[0]}); "
                 f"resuming from the checkpoint before it")  # fmt: skip
    raise ExpertlmError(f"{run}: no checkpoint to resume from" + (" (every one is damaged)" if ckpts else ""))


def load_checkpoint(ckpt: dict, model, optimizer) -> dict:
    """Restore a `read_checkpoint`'s weights (a LoRA model: its adapters), optimizer and RNG
    state into a (possibly wrapped or sharded) model; its state.json."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

    model_sd = ckpt["weights"]
    if model_sd is None:
        model_sd = lora.load_adapter_state(ckpt["path"], model, ckpt["adapters"])
    # a tied lm_head is not saved, nor a LoRA model's frozen base: strict=False
    set_state_dict(model, optimizer, model_state_dict=model_sd, optim_state_dict=ckpt["optimizer"],
                   options=StateDictOptions(full_state_dict=True, strict=False))  # fmt: skip
    torch.set_rng_state(ckpt["rng"]["torch"])
    if "cuda" in ckpt["rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state(ckpt["rng"]["cuda"])
    return ckpt["state"]


def _prune(run: Path, keep: int) -> None:
    for old in sorted((run / CKPT_DIR).glob("step-*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


# --- the stage -------------------------------------------------------------------------------


def _model(cfg: TrainConfig, meta: dict, shards: Path, d: dist.Dist):
    if cfg.init == "scratch":
        config = gpt2_config(cfg.preset, meta["vocab_size"], meta["eot_id"], cfg.model)
        n = gpt2_parameters(config.to_dict(), meta["vocab_size"])
        check_memory(n, TRAIN_BYTES_PER_PARAMETER, d.device, d.world if cfg.fsdp else 1)
        return build_model(config, cfg.seed)
    model = load_model(cfg.init)
    if model.config.vocab_size < meta["vocab_size"]:
        raise ExpertlmError(
            f"{cfg.init}: the model's vocabulary ({model.config.vocab_size:,}) is smaller than the "
            f"shards' ({meta['vocab_size']:,}): they were made with another tokenizer"
        )
    theirs, ours = Path(cfg.init) / "tokenizer.json", shards / "tokenizer" / "tokenizer.json"
    if theirs.is_file() and ours.is_file() and theirs.read_bytes() != ours.read_bytes():
        raise ExpertlmError(
            f"{cfg.init}: its tokenizer differs from the one the shards {shards} were made with"
        )
    return model


@dataclass
class Run:
    """What the loop works with, made by `setup`. Stateful as torchtitan's trainer is:
    `state_dict` is the progress a checkpoint saves (beside weights, optimizer and RNG states),
    `load_state_dict` puts it back."""

    cfg: TrainConfig
    d: dist.Dist
    out: Path  # where the run is written: a temporary sibling of `final` until its first checkpoint
    final: Path  # the run folder
    tokenizer_dir: Path  # copied into every checkpoint
    model: torch.nn.Module  # unwrapped (FSDP shards it in place): validation, checkpoints
    ddp: torch.nn.Module  # what backward synchronises through: DDP, FSDP or the model
    fwd: torch.nn.Module  # `ddp`, compiled with --compile
    optimizer: torch.optim.Optimizer
    arch: str  # the model's class, which FSDP renames
    base: dict | None  # LoRA: the frozen base's pointer (base.json)
    accum: int  # micro batches per optimizer step on each process
    total_steps: int
    lr: float  # the peak
    warmup: int
    flops_per_token: int
    run_info: dict  # run.json, less what the end adds
    shards_id: dict  # what the shards are (a resume refuses other ones)
    progress: bool  # the progress bar (rank 0)
    t_start: float  # when this call began
    last_ckpt: Path | None
    step: int = 0
    position: int = 0  # the objective's data state
    best_val: float = math.inf
    wall_before: float = 0.0  # seconds of the run before this call (a resumed run's)
    tokens: int = 0  # the objective's count at `position`, kept by `fit` for run.json

    @property
    def wall_s(self) -> float:
        return self.wall_before + time.time() - self.t_start

    def state_dict(self) -> dict:
        return {"step": self.step, "position": self.position, "best_val": self.best_val,
                "wall_s": self.wall_s}  # fmt: skip

    def load_state_dict(self, state: dict) -> None:
        self.step, self.position = state["step"], state["position"]
        self.best_val, self.wall_before = state["best_val"], state["wall_s"]


def train(shards: str | Path, out: str | Path, *, resume: bool = False, overwrite: bool = False,
          show_progress: bool = True, **options) -> Path:  # fmt: skip
    """Train a model on `shards` into the run folder `out`. `options` are `TrainConfig` fields."""
    run, objective = setup(shards, out, resume=resume, overwrite=overwrite,
                           show_progress=show_progress, **options)  # fmt: skip
    try:
        fit(run, objective)
    except BaseException:
        if run.out != run.final:  # stopped before its first checkpoint: nothing of it stays
            shutil.rmtree(run.out, ignore_errors=True)
        raise
    return finish(run)


def setup(shards: str | Path, out: str | Path, *, resume: bool = False, overwrite: bool = False,
          show_progress: bool = True, **options) -> tuple[Run, Objective]:  # fmt: skip
    """The run `train` trains and its objective: the config (a resumed run's own), processes,
    the model (LoRA adapters, DDP/FSDP, compiled), the batch arithmetic and budget, AdamW, and
    a resumed run's weights, optimizer, RNG states and progress from its last checkpoint."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # our own progress and messages, not per-save bars
    hf_logging.disable_progress_bar()
    t_start = time.time()
    cfg = TrainConfig.from_options(options)
    shards, out = Path(shards), Path(out)
    check_output(out, [shards, *([cfg.init] if cfg.init != "scratch" else [])])
    if out.exists() and not resume and not overwrite:
        raise ExpertlmError(
            f"{out}: already exists (pass --resume to continue it or --overwrite to replace it)"
        )
    ckpt = resume_point(out) if resume else None
    if ckpt is not None:
        cfg = _resumed_config(options, ckpt["state"])
    post = cfg.objective != "clm"
    if post:
        tokenizer = post_tokenizer(shards, cfg)
        meta = {"vocab_size": len(tokenizer)}
        tok_file = Path(cfg.init) / "tokenizer.json"
        shards_id = {"data_sha256": sha256_file(shards),
                     "tokenizer_sha256": sha256_file(tok_file) if tok_file.is_file() else cfg.init}  # fmt: skip
    else:
        if shards.is_file():
            raise ExpertlmError(f"{shards}: a file; --objective clm trains on a shards folder (from "
                                "`expertlm data prepare`), sft, dpo and orpo on a JSONL file")  # fmt: skip
        meta = read_meta(shards)
        shards_id = {k: meta.get(k) for k in ("corpus_hash", "tokenizer_hash", "vocab_size", "tokens")}
    if ckpt is not None and ckpt["state"].get("shards") not in (None, shards_id):
        diff = [k for k in shards_id if ckpt["state"]["shards"].get(k) != shards_id[k]]
        raise ExpertlmError(f"--resume: the training data differ from the ones the run was trained "
                            f"on ({', '.join(diff)}); --overwrite starts a new run on them")  # fmt: skip
    d = dist.init(cfg.device)
    if cfg.bf16 == "auto":  # (run.json and the checkpoints record what it resolved to)
        cfg = cfg.model_copy(update={"bf16": dist.native_bf16(d.device)})
    torch.manual_seed(cfg.seed)
    model = _model(cfg, meta, shards, d)
    if d.device.type == "cpu":  # fast dropout masks; under bf16 the attention in fp32
        cpu_training(model, cfg.bf16)
    if cfg.objective in ("dpo", "orpo"):  # no dropout, as TRL's trainers (disable_dropout)
        for m in model.modules():
            if isinstance(m, torch.nn.Dropout):
                m.p = 0.0
    base = None
    if cfg.lora is not None:
        base = lora.base_info(cfg.init, resumed_from=ckpt["path"] if ckpt else None)
        model = lora.wrap(model, cfg.lora, base["path"])
    model = model.to(d.device)
    # GPT-2 calls it n_positions; Llama, Mistral, Qwen... max_position_embeddings
    max_context = getattr(model.config, "n_positions", None) or model.config.max_position_embeddings
    if problems := cfg.batch_problems(max_context, d.world):
        raise ExpertlmError("\n".join(f"option {flag(k)}: {msg}" for k, msg in problems))
    context = cfg.context or max_context
    seqs_per_micro = cfg.micro_batch * d.world
    if post:
        objective = post_objective(shards, cfg, tokenizer, context, d.device, d.main)
        if cfg.batch_examples is not None and cfg.batch_examples % seqs_per_micro:
            raise ExpertlmError(f"option --batch-examples: {cfg.batch_examples} is not a multiple of "
                                f"micro_batch x processes ({cfg.micro_batch} x {d.world})")  # fmt: skip
        accum = (cfg.batch_examples or seqs_per_micro) // seqs_per_micro
        batch_tokens = None
    else:
        train_w = Windows(open_tokens(shards, "train"), context, cfg.seed)
        val_w = Windows(open_tokens(shards, "val"), context, cfg.seed)
        if train_w.count < 1:
            raise ExpertlmError(f"{shards}: train.bin has fewer than {context + 1} tokens")
        if val_w.count < 1 and d.main:
            warn(f"{shards}: val.bin has fewer than {context + 1} tokens: no validation loss, no best/")
        # --compile in bf16: the loss compiled with the model and a plain head (the compiler
        # fuses the bf16 logits' upcast into the loss: 1.11-1.57x the compiled model with the
        # fused head at 16k-50k vocabularies on this CPU); in fp32 the fused head stays ahead
        # (1.08-1.14x) and the model alone is compiled (docs/scaling.md)
        objective = CausalLM(train_w, val_w, cfg.val_windows, head=fused_head(model, cfg.fsdp),
                             compile=bool(cfg.compile and cfg.bf16))  # fmt: skip
        batch_tokens = cfg.batch_tokens or seqs_per_micro * context
        accum = batch_tokens // (seqs_per_micro * context)
    seqs_per_step = accum * seqs_per_micro
    if cfg.max_steps:
        total_steps = cfg.max_steps
    elif cfg.max_tokens:
        total_steps = math.ceil(cfg.max_tokens / batch_tokens)
    else:
        total_steps = max(1, int((cfg.epochs or 1.0) * objective.examples / seqs_per_step))
    lr = cfg.lr or (6e-4 if cfg.init == "scratch" else 1e-4)
    warmup = cfg.warmup_steps if cfg.warmup_steps is not None else min(1000, total_steps // 20)
    fpt = flops_per_token(model, context)

    arch = type(model).__name__
    ddp = dist.wrap(model, d, fsdp=cfg.fsdp)  # before the optimizer: FSDP replaces parameters
    # --compile: the model, or (CausalLM) the model with its head and loss, compiled
    fwd = torch.compile(ddp) if cfg.compile and not objective.compiles_forward else ddp
    optimizer = adamw(model, cfg, lr)
    counts = parameter_counts(model)
    run_info = {
        "format": "expertlm.run/1",
        "shards": str(shards), "shards_meta": shards_id,
        "config": cfg.model_dump(mode="json"), "context": context, "batch_tokens": batch_tokens, "batch_examples": seqs_per_step if post else None,
        "grad_accum": accum, "world_size": d.world, "total_steps": total_steps, "lr": lr, "warmup_steps": warmup,
        "parameters": counts, "flops_per_token": fpt, "device": str(d.device),
    }  # fmt: skip
    if base is not None:
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        run_info["lora"] = {"base": base, "trainable_parameters": trainable}
    # A new run is written into a temporary sibling until its first checkpoint: a run that
    # fails before (a bad option, a NaN, a kill) leaves whatever `out` held as it was.
    work = out if ckpt is not None or not d.main else make_temp_dir(out)
    tokenizer_dir = work / POST_TOKENIZER if post else shards / "tokenizer"
    if post and d.main:  # the tokenizer that rendered the data (chat template included)
        tokenizer.save_pretrained(tokenizer_dir)
    run = Run(cfg=cfg, d=d, out=work, final=out, tokenizer_dir=tokenizer_dir, model=model,
              ddp=ddp, fwd=fwd, optimizer=optimizer, arch=arch, base=base, accum=accum,
              total_steps=total_steps, lr=lr, warmup=warmup, flops_per_token=fpt,
              run_info=run_info, shards_id=shards_id,
              progress=progress_enabled(show_progress) and d.main, t_start=t_start,
              last_ckpt=ckpt["path"] if ckpt else None)  # fmt: skip
    if ckpt is not None:
        run.load_state_dict(load_checkpoint(ckpt, model, optimizer))
        if d.main:
            remove_stale(out, "best")
            for stale in (out / CKPT_DIR).glob(".step-*"):  # a checkpoint a kill interrupted
                remove_stale(out / CKPT_DIR, stale.name[1:].partition(".tmp-")[0])
            _truncate_metrics(out / "metrics.jsonl", run.step)
            info(f"resuming {out} from {ckpt['path'].name}")
    elif d.main:
        info(f"model: {counts['total']:,} parameters ({counts['non_embedding']:,} without embeddings), "
             f"{fpt:,} FLOPs/token; {total_steps:,} steps of "
             f"{f'{seqs_per_step:,} examples' if post else f'{batch_tokens:,} tokens'}")  # fmt: skip
        if base is not None:
            info(
                f"lora: {trainable:,} trainable adapter parameters on the frozen base {base['path']}"
            )
    dist.barrier(d)
    return run, objective


def fit(run: Run, objective: Objective) -> None:
    """The loop, from `run.step` to `run.total_steps` (or --max-time): the learning rate, one
    optimizer step on the objective's micro batches, a metrics.jsonl row, validation, a
    checkpoint (and best/) every so often. Stops on a non-finite loss, naming the last good
    checkpoint."""
    cfg, d, model, optimizer = run.cfg, run.d, run.model, run.optimizer
    t0, tokens_t0 = time.time(), objective.tokens(run.position)
    run.tokens = tokens_t0
    model.train()
    with contextlib.ExitStack() as stack:
        metrics = board = None
        if d.main:
            metrics = stack.enter_context(open(run.out / "metrics.jsonl", "a", encoding="utf-8"))
            board = _tensorboard(run.out / "tensorboard")
            if board is not None:
                stack.callback(board.close)
        bar = stack.enter_context(Progress(
            TextColumn("[bold]train"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
            TextColumn("{task.fields[stats]}"), TimeRemainingColumn(), console=console,
            disable=not run.progress))  # fmt: skip
        task = bar.add_task("train", total=run.total_steps, completed=run.step, stats="")
        while run.step < run.total_steps:
            for group in optimizer.param_groups:
                group["lr"] = lr_at(run.step, cfg, run.lr, run.warmup, run.total_steps)
            micro_batches, run.position = objective.micro_batches(
                run.position, d.rank, d.world, cfg.micro_batch, run.accum
            )
            local_loss, local = train_step(
                run.ddp, run.fwd, optimizer, micro_batches, objective, cfg, d.device
            )
            run.step += 1
            step = run.step
            run.tokens = objective.tokens(run.position)
            step_loss = dist.all_mean(local_loss, d)
            if not math.isfinite(step_loss):
                where = (
                    f"the last good checkpoint is {run.last_ckpt}"
                    if run.last_ckpt
                    else "no checkpoint was written"
                )
                raise ExpertlmError(f"loss became {step_loss} at step {step}; stopped ({where})")
            # the objective's metrics are this process's, like the loss; the norm is global already
            stats = {k: v if k == "grad_norm" else dist.all_mean(v, d) for k, v in local.items()}
            tok_s = (run.tokens - tokens_t0) / max(time.time() - t0, 1e-9)
            row = {"step": step, "tokens": run.tokens, "loss": step_loss,
                   "lr": optimizer.param_groups[0]["lr"], **stats,
                   "tokens_per_s": tok_s}  # fmt: skip
            if cfg.peak_tflops:
                row["mfu"] = tok_s * run.flops_per_token / (cfg.peak_tflops * 1e12 * d.world)
            out_of_time = cfg.max_time_s is not None and run.wall_s > cfg.max_time_s
            last = step == run.total_steps or out_of_time
            if step % cfg.val_every_steps == 0 or last:
                row |= objective.validate(model, cfg.micro_batch, d.device, cfg.bf16)
            if metrics is not None and (
                step % cfg.log_every_steps == 0 or last or "val_loss" in row
            ):
                metrics.write(json.dumps(row) + "\n")
                if board is not None:
                    for key, value in row.items():
                        if key != "step":
                            board.add_scalar(key, value, step)
                metrics.flush()
            bar.update(task, completed=step, stats=f"loss {step_loss:.4f} | {tok_s:,.0f} tok/s")
            if step % cfg.ckpt_every_steps == 0 or last:
                if metrics is not None:
                    os.fsync(metrics.fileno())
                val = row.get("val_loss", math.inf)
                improved = val < run.best_val
                run.best_val = min(run.best_val, val)
                run.last_ckpt = run.out / CKPT_DIR / f"step-{step:08d}"
                save_checkpoint(run.last_ckpt, model, optimizer,
                                run.state_dict() | {"config": cfg.model_dump(mode="json"), "shards": run.shards_id},
                                run.tokenizer_dir, d, run.arch, run.base)  # fmt: skip
                if d.main:
                    if run.out != run.final:  # the first good checkpoint: the run takes its place
                        if run.tokenizer_dir.is_relative_to(run.out):
                            run.tokenizer_dir = run.final / run.tokenizer_dir.relative_to(run.out)
                        replace_dir(run.out, run.final)
                        run.out, run.last_ckpt = run.final, run.final / CKPT_DIR / run.last_ckpt.name
                    if improved:
                        best = make_temp_dir(run.out / "best")
                        shutil.copytree(run.last_ckpt, best, dirs_exist_ok=True)
                        replace_dir(best, run.out / "best")
                    _prune(run.out, cfg.keep_last)
                dist.barrier(d)
            if out_of_time:
                break


def finish(run: Run) -> Path:
    """The run folder's final files (the last checkpoint's model files at its root, run.json),
    then the process group closed."""
    if run.d.main:
        _publish_final(run.out, run.last_ckpt)
        write_json(run.out / "run.json", run.run_info | {
            "steps": run.step, "tokens": run.tokens, "wall_s": round(run.wall_s, 3),
            "flops": run.flops_per_token * run.tokens, "best_val_loss": run.best_val,
            **provenance(),
        })  # fmt: skip
        info(f"train: {run.step:,} steps, {run.tokens:,} tokens, best val loss {run.best_val:.4f} "
             f"-> {run.out}")  # fmt: skip
    dist.close(run.d)
    return run.out


# What a resumed run may change; everything else (model, data order, optimisation) is the run's.
RESUME_OVERRIDES = ("max_steps", "max_tokens", "epochs", "max_time_s", "val_every_steps",
                    "log_every_steps", "ckpt_every_steps", "keep_last", "peak_tflops", "device", "compile")  # fmt: skip


def _resumed_config(options: dict, state: dict) -> TrainConfig:
    """The run's own config, with the budget and logging options of this call where given. Any
    other option given with another value is refused (a resumed run keeps its model, data and
    optimisation), with a one-line difference (`setup` refuses other data)."""
    cfg = TrainConfig.from_options(options)
    if "config" not in state:
        return cfg
    given, run = cfg.model_dump(mode="json"), state["config"]
    changed = [k for k in options if k not in RESUME_OVERRIDES and given[k] != run.get(k)
               and not (k == "bf16" and given[k] == "auto")]  # (auto: what the run resolved it to)
    if changed:
        raise ExpertlmError("--resume: " + "; ".join(
            f"{flag(k)} {given[k]!r} differs from the run's {run.get(k)!r}" for k in changed
        ) + " (a resumed run keeps its model, data and optimisation; --overwrite starts a new run)")  # fmt: skip
    return TrainConfig.from_options(run | {k: given[k] for k in options if k in RESUME_OVERRIDES},
                                    source="checkpoint config")  # fmt: skip


def _tensorboard(logdir: Path):
    """A TensorBoard writer when the tensorboard package is installed (metrics.jsonl either way)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(logdir))


def _publish_final(run: Path, ckpt: Path | None) -> None:
    """Copy the last checkpoint's model files to the run folder's root (a loadable HF folder)."""
    if ckpt is None:
        return
    for f in ckpt.iterdir():
        if f.is_file():
            tmp = run / f".{f.name}.tmp"
            shutil.copy2(f, tmp)
            os.replace(tmp, run / f.name)


def _step_of(line: str) -> int | None:
    """The step of a metrics.jsonl row (None for a torn line: the kill came mid-write)."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError:
        return None
    return row.get("step") if isinstance(row, dict) and isinstance(row.get("step"), int) else None


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop rows a killed run logged after its last checkpoint (they are about to be redone)."""
    if not path.is_file():
        return
    keep = [line for line in path.read_text(encoding="utf-8", errors="replace").splitlines()
            if _step_of(line) is not None and _step_of(line) <= step]  # fmt: skip
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(k + "\n" for k in keep), encoding="utf-8")
    os.replace(tmp, path)
