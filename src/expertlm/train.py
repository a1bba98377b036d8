"""`expertlm train`: shards -> a model, on one CPU core, one GPU or many (torchrun), same command.

One readable loop (nanoGPT-style); factored out are the schedule (`lr_at`), the data order
(`Windows`), evaluation (`val_loss`) and checkpoints (`save_checkpoint`, `load_checkpoint`).
A checkpoint holds everything the next step depends on (weights, optimizer, RNG states, step,
data position), so a run killed at any moment and resumed takes the same steps, bit for bit on
CPU in float32. With `lora`, the weights a checkpoint holds are the adapters only (`lora.py`).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from expertlm import dist, lora
from expertlm.config import TrainConfig
from expertlm.console import console, info, progress_enabled, warn
from expertlm.errors import ExpertlmError
from expertlm.io import atomic_dir, provenance, read_json, write_json
from expertlm.models import build_model, flops_per_token, gpt2_config, load_model, parameter_counts
from expertlm.shards import open_tokens, read_meta

CKPT_DIR = "checkpoints"
STATE_DIR = "trainer_state"


# --- data ------------------------------------------------------------------------------------


class Windows:
    """Packed windows of `context + 1` tokens (inputs and shifted targets) from a token file, in
    a seeded permutation per epoch. `position` (global sequence index) is the whole data state."""

    def __init__(self, tokens: np.ndarray, context: int, seed: int) -> None:
        self.tokens, self.context, self.seed = tokens, context, seed
        self.count = (len(tokens) - 1) // context
        self._epoch, self._perm = -1, np.empty(0, dtype=np.int64)

    def window(self, i: int) -> torch.Tensor:
        start = i * self.context
        return torch.from_numpy(self.tokens[start : start + self.context + 1].astype(np.int64))

    def batch(self, position: int, size: int) -> torch.Tensor:
        """Sequences `position .. position + size` of the epoch-by-epoch order: (size, T + 1)."""
        rows = []
        for p in range(position, position + size):
            epoch, k = divmod(p, self.count)
            if epoch != self._epoch:
                self._epoch = epoch
                self._perm = np.random.default_rng([self.seed, epoch]).permutation(self.count)
            rows.append(self.window(int(self._perm[k])))
        return torch.stack(rows)


def lr_at(step: int, cfg: TrainConfig, lr: float, warmup: int, total: int) -> float:
    """Linear warm-up, then cosine or linear decay to lr * lr_min_ratio at `total` steps."""
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    floor = lr * cfg.lr_min_ratio
    if cfg.schedule == "linear":
        return lr - (lr - floor) * progress
    return floor + 0.5 * (lr - floor) * (1 + math.cos(math.pi * progress))


@torch.no_grad()
def val_loss(model, windows: Windows, n: int, micro_batch: int, d: dist.Dist, bf16: bool) -> float:
    """Mean loss over the first `n` validation windows (fixed, so evaluations compare)."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for start in range(0, min(n, windows.count), micro_batch):
        idx = range(start, min(start + micro_batch, n, windows.count))
        xy = torch.stack([windows.window(i) for i in idx]).to(d.device)
        with torch.autocast(d.device.type, dtype=torch.bfloat16, enabled=bf16):
            out = model(input_ids=xy[:, :-1], labels=xy[:, :-1])
        total += out.loss.float().item() * len(idx)
        count += len(idx)
    model.train(was_training)
    return total / max(count, 1)


def train_step(
    ddp, fwd, optimizer, micro_batches: list[torch.Tensor], cfg: TrainConfig, device
) -> tuple[float, float]:
    """One optimizer step over `micro_batches` ((B, T + 1) token windows): forward, loss on the
    shifted targets, backward (gradients synchronised across processes on the last micro batch
    only), clip, AdamW. Returns (mean loss, gradient norm before clipping)."""
    accum, loss_sum = len(micro_batches), 0.0
    for i, xy in enumerate(micro_batches):
        xy = xy.to(device)
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
            logits = fwd(input_ids=xy[:, :-1]).logits  # (B, T, V)
            loss = torch.nn.functional.cross_entropy(
                logits.float().reshape(-1, logits.size(-1)), xy[:, 1:].reshape(-1)
            )
            (loss / accum).backward()
        loss_sum += loss.item()
    model = getattr(ddp, "module", ddp)
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip or float("inf"))
    grad_norm = (
        norm.full_tensor() if hasattr(norm, "full_tensor") else norm
    ).item()  # FSDP: DTensor
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss_sum / accum, grad_norm


def train_loop_for_bench(model, tokens: np.ndarray, *, steps: int, batch: int, context: int, lr: float,
                         bf16: bool) -> dict:  # fmt: skip
    """`train_step` (the loop `expertlm train` runs) on sequential fixed-size chunks of `tokens`,
    as bench/train_throughput.py's reference loop reads them; tokens/s after 2 warm-up steps."""
    cfg = TrainConfig(lr=lr, bf16=bf16, micro_batch=batch)
    device = torch.device("cpu")
    optimizer = _optimizer(model, cfg, lr)
    model.train()
    chunk = context + 1
    n_chunks = (len(tokens) - 1) // context
    losses, t0 = [], None
    for step in range(steps):
        if step == 2:
            t0 = time.perf_counter()
        rows = [(step * batch + b) % n_chunks for b in range(batch)]
        xy = torch.stack(
            [
                torch.from_numpy(tokens[r * context : r * context + chunk].astype(np.int64))
                for r in rows
            ]
        )
        loss, _ = train_step(model, model, optimizer, [xy], cfg, device)
        losses.append(loss)
    elapsed = time.perf_counter() - t0 if t0 is not None else float("nan")
    return {"tokens_per_s": (steps - 2) * batch * context / elapsed, "losses": losses}


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


def load_checkpoint(path: Path, model, optimizer) -> dict:
    """Restore weights (a LoRA model: its adapters), optimizer and RNG state into a (possibly
    wrapped or sharded) model."""
    from safetensors.torch import load_file
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

    weights = path / "model.safetensors"
    # a tied lm_head is not saved, nor a LoRA model's frozen base: strict=False
    model_sd = load_file(weights) if weights.is_file() else lora.load_adapter_state(path, model)
    set_state_dict(
        model,
        optimizer,
        model_state_dict=model_sd,
        optim_state_dict=torch.load(path / STATE_DIR / "optimizer.pt", weights_only=True),
        options=StateDictOptions(full_state_dict=True, strict=False),
    )
    rng = torch.load(path / STATE_DIR / "rng.pt", weights_only=True)
    torch.set_rng_state(rng["torch"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state(rng["cuda"])
    return read_json(path / STATE_DIR / "state.json")


def _prune(run: Path, keep: int) -> None:
    for old in sorted((run / CKPT_DIR).glob("step-*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


# --- the stage -------------------------------------------------------------------------------


def _optimizer(model, cfg: TrainConfig, lr: float):
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    # fused: one kernel per step where the build has it; sharded (DTensor) parameters use foreach
    return torch.optim.AdamW(groups, lr=lr, betas=(cfg.beta1, cfg.beta2), fused=not cfg.fsdp)


def _model(cfg: TrainConfig, meta: dict, shards: Path):
    if cfg.init == "scratch":
        config = gpt2_config(cfg.preset, meta["vocab_size"], meta["eot_id"], cfg.model)
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


def train(shards: str | Path, out: str | Path, *, resume: bool = False, overwrite: bool = False,
          show_progress: bool = True, **options) -> Path:  # fmt: skip
    """Train a model on `shards` into the run folder `out`. `options` are `TrainConfig` fields."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # our own progress and messages, not per-save bars
    hf_logging.disable_progress_bar()
    t_start = time.time()
    cfg = TrainConfig.from_options(options)
    shards, run = Path(shards), Path(out)
    meta = read_meta(shards)
    if run.exists() and not resume and not overwrite:
        raise ExpertlmError(
            f"{run}: already exists (pass --resume to continue it or --overwrite to replace it)"
        )
    ckpt = latest_checkpoint(run) if resume else None
    if resume and ckpt is None:
        raise ExpertlmError(f"{run}: no checkpoint to resume from")
    if ckpt is not None:
        cfg = _resumed_config(cfg, read_json(ckpt / STATE_DIR / "state.json"))
    d = dist.init(cfg.device)
    torch.manual_seed(cfg.seed)
    model = _model(cfg, meta, shards)
    base = None  # LoRA: the frozen base's pointer (base.json)
    if cfg.lora is not None:
        base = lora.base_info(cfg.init, resumed_from=ckpt)
        model = lora.wrap(model, cfg.lora, base["path"])
    model = model.to(d.device)
    # GPT-2 calls it n_positions; Llama, Mistral, Qwen... max_position_embeddings
    max_context = getattr(model.config, "n_positions", None) or model.config.max_position_embeddings
    context = cfg.context or max_context
    if context > max_context:
        raise ExpertlmError(
            f"option --context {context} exceeds the model's maximum ({max_context})"
        )
    train_w = Windows(open_tokens(shards, "train"), context, cfg.seed)
    val_w = Windows(open_tokens(shards, "val"), context, cfg.seed)
    if train_w.count < 1:
        raise ExpertlmError(f"{shards}: train.bin has fewer than {context + 1} tokens")
    if val_w.count < 1 and d.main:
        warn(f"{shards}: val.bin has fewer than {context + 1} tokens: no validation loss, no best/")

    seqs_per_micro = cfg.micro_batch * d.world
    batch_tokens = cfg.batch_tokens or seqs_per_micro * context
    accum = max(1, round(batch_tokens / (seqs_per_micro * context)))
    if accum * seqs_per_micro * context != batch_tokens:
        raise ExpertlmError(
            f"option --batch-tokens {batch_tokens} is not a multiple of micro_batch x processes x context "
            f"({cfg.micro_batch} x {d.world} x {context} = {seqs_per_micro * context})"
        )
    seqs_per_step = accum * seqs_per_micro
    if cfg.max_steps:
        total_steps = cfg.max_steps
    elif cfg.max_tokens:
        total_steps = math.ceil(cfg.max_tokens / batch_tokens)
    else:
        total_steps = max(1, int((cfg.epochs or 1.0) * train_w.count / seqs_per_step))
    lr = cfg.lr or (6e-4 if cfg.init == "scratch" else 1e-4)
    warmup = cfg.warmup_steps if cfg.warmup_steps is not None else min(1000, total_steps // 20)
    fpt = flops_per_token(model, context)

    arch = type(model).__name__
    ddp = dist.wrap(model, d, fsdp=cfg.fsdp)  # before the optimizer: FSDP replaces parameters
    fwd = torch.compile(ddp) if cfg.compile else ddp
    optimizer = _optimizer(model, cfg, lr)
    step, position, best, wall_before = 0, 0, math.inf, 0.0
    if ckpt is not None:
        state = load_checkpoint(ckpt, model, optimizer)
        step, position, best, wall_before = (
            state["step"],
            state["position"],
            state["best_val"],
            state["wall_s"],
        )
        if d.main:
            _truncate_metrics(run / "metrics.jsonl", step)
            info(f"resuming {run} from {ckpt.name}")
    elif d.main:
        if run.exists():
            shutil.rmtree(run)
        run.mkdir(parents=True)
    dist.barrier(d)
    counts = parameter_counts(model)
    if d.main and ckpt is None:
        info(f"model: {counts['total']:,} parameters ({counts['non_embedding']:,} without embeddings), "
             f"{fpt:,} FLOPs/token; {total_steps:,} steps of {batch_tokens:,} tokens")  # fmt: skip
    run_info = {
        "format": "expertlm.run/1",
        "shards": str(shards), "shards_meta": {k: meta.get(k) for k in ("corpus_hash", "tokenizer_hash", "vocab_size", "tokens")},
        "config": cfg.model_dump(mode="json"), "context": context, "batch_tokens": batch_tokens,
        "grad_accum": accum, "world_size": d.world, "total_steps": total_steps, "lr": lr, "warmup_steps": warmup,
        "parameters": counts, "flops_per_token": fpt, "device": str(d.device),
    }  # fmt: skip
    if base is not None:
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        run_info["lora"] = {"base": base, "trainable_parameters": trainable}
        if d.main and ckpt is None:
            info(
                f"lora: {trainable:,} trainable adapter parameters on the frozen base {base['path']}"
            )

    metrics = open(run / "metrics.jsonl", "a", encoding="utf-8") if d.main else None  # noqa: SIM115
    board = _tensorboard(run / "tensorboard") if d.main else None
    tokenizer_dir = shards / "tokenizer"
    last_ckpt = ckpt
    t0, tokens_t0 = time.time(), step * batch_tokens
    model.train()
    bar_on = progress_enabled(show_progress) and d.main
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("[bold]train"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TextColumn("{task.fields[stats]}"), TimeRemainingColumn(), console=console,
                  disable=not bar_on) as bar:  # fmt: skip
        task = bar.add_task("train", total=total_steps, completed=step, stats="")
        while step < total_steps:
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, cfg, lr, warmup, total_steps)
            micro_batches = [
                # rank r takes its own slice of each micro step's sequences: (B, T + 1)
                train_w.batch(
                    position + m * seqs_per_micro + d.rank * cfg.micro_batch, cfg.micro_batch
                )
                for m in range(accum)
            ]
            position += seqs_per_step
            local_loss, grad_norm = train_step(ddp, fwd, optimizer, micro_batches, cfg, d.device)
            step += 1
            step_loss = dist.all_mean(local_loss, d)
            if not math.isfinite(step_loss):
                where = (
                    f"the last good checkpoint is {last_ckpt}"
                    if last_ckpt
                    else "no checkpoint was written"
                )
                raise ExpertlmError(f"loss became {step_loss} at step {step}; stopped ({where})")
            elapsed = time.time() - t0
            tok_s = (step * batch_tokens - tokens_t0) / max(elapsed, 1e-9)
            row = {"step": step, "tokens": step * batch_tokens, "loss": step_loss,
                   "lr": optimizer.param_groups[0]["lr"], "grad_norm": grad_norm, "tokens_per_s": tok_s}  # fmt: skip
            if cfg.peak_tflops:
                row["mfu"] = tok_s * fpt / (cfg.peak_tflops * 1e12 * d.world)
            out_of_time = (
                cfg.max_time_s is not None and wall_before + time.time() - t_start > cfg.max_time_s
            )
            last = step == total_steps or out_of_time
            if val_w.count > 0 and (step % cfg.val_every_steps == 0 or last):
                row["val_loss"] = val_loss(
                    model, val_w, cfg.val_windows, cfg.micro_batch, d, cfg.bf16
                )
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
                state = {"step": step, "position": position, "best_val": min(best, val),
                         "wall_s": wall_before + time.time() - t_start,
                         "config": cfg.model_dump(mode="json")}  # fmt: skip
                last_ckpt = run / CKPT_DIR / f"step-{step:08d}"
                save_checkpoint(last_ckpt, model, optimizer, state, tokenizer_dir, d, arch, base)
                if d.main:
                    if val < best:
                        shutil.copytree(last_ckpt, run / "best.tmp", dirs_exist_ok=True)
                        shutil.rmtree(run / "best", ignore_errors=True)
                        os.replace(run / "best.tmp", run / "best")
                    _prune(run, cfg.keep_last)
                best = min(best, val)
                dist.barrier(d)
            if out_of_time:
                break

    if d.main:
        metrics.close()
        if board is not None:
            board.close()
        _publish_final(run, last_ckpt)
        wall = wall_before + time.time() - t_start
        write_json(run / "run.json", run_info | {
            "steps": step, "tokens": step * batch_tokens, "wall_s": round(wall, 3),
            "flops": fpt * step * batch_tokens, "best_val_loss": best, **provenance(),
        })  # fmt: skip
        info(
            f"train: {step:,} steps, {step * batch_tokens:,} tokens, best val loss {best:.4f} -> {run}"
        )
    dist.close(d)
    return run


# What a resumed run may change; everything else (model, data order, optimisation) is the run's.
RESUME_OVERRIDES = ("max_steps", "max_tokens", "epochs", "max_time_s", "val_every_steps",
                    "log_every_steps", "ckpt_every_steps", "keep_last", "peak_tflops", "device", "compile")  # fmt: skip


def _resumed_config(cfg: TrainConfig, state: dict) -> TrainConfig:
    """The run's own config, with the budget and logging options of this call where given."""
    if "config" not in state:
        return cfg
    given = {
        k: v
        for k, v in cfg.model_dump(mode="json").items()
        if k in RESUME_OVERRIDES and v is not None
    }
    return TrainConfig.from_options(state["config"] | given, source="checkpoint config")


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


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop rows a killed run logged after its last checkpoint (they are about to be redone)."""
    if not path.is_file():
        return
    keep = [
        line
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip() and json.loads(line)["step"] <= step
    ]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(k + "\n" for k in keep), encoding="utf-8")
    os.replace(tmp, path)
