"""What a run learns: an objective owns its training data and their order, the loss of a micro
batch with the metrics to log beside it, the tokens it counts, and validation.

The loop (`train.fit`) owns the rest (schedule, accumulation, processes, checkpoints, logs) and
never looks inside a batch, so an objective is added without touching it, as litgpt's finetune
scripts share one `fit`. The data state is one integer, `position` (the global index of the next
example in the epoch-by-epoch order): a checkpoint's step and position resume the data exactly.
`CausalLM` is causal language modelling on packed token windows. `SFT` (masked loss on chat
JSONL), `DPO` (a frozen reference model of its own; rewards, accuracy and margin as metrics) and
`ORPO` fit the same interface on the examples `chat.py` renders: batches of their own type
(`Padded`), their own `loss`, their own `tokens`. `dpo_loss` and `orpo_loss` are TRL's formulas
(tests/test_objectives_post.py checks them and their gradients against TRL's trainers).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch

from expertlm.errors import ExpertlmError

if TYPE_CHECKING:
    from expertlm.config import TrainConfig


class Batch(Protocol):
    """A micro batch as an objective makes it: anything `train_step` can move to the device
    (a tensor, a `transformers.BatchEncoding`, a dataclass of tensors with its own `.to`)."""

    def to(self, device: torch.device) -> Batch: ...


class Objective(ABC):
    """Training examples in a seeded order, the loss of a micro batch, and validation."""

    examples: int
    """Training examples in one epoch (what --epochs counts)."""
    compiles_forward: bool = False
    """Whether `loss` compiles the model with itself (`train --compile` then passes the model
    uncompiled)."""

    @abstractmethod
    def batch(self, position: int, size: int) -> Batch:
        """Examples `position .. position + size` of the order (across epochs), one micro batch."""

    def micro_batches(
        self, position: int, rank: int, world: int, micro_batch: int, accum: int
    ) -> tuple[list[Batch], int]:
        """This process's `accum` micro batches of the optimizer step that starts at `position`,
        and the position after the step (the examples of every process counted). An objective
        that packs a variable number of examples per micro batch overrides this."""
        per_micro = micro_batch * world
        # rank r takes its own slice of each micro step's examples
        starts = [position + m * per_micro + rank * micro_batch for m in range(accum)]
        return [self.batch(s, micro_batch) for s in starts], position + accum * per_micro

    @abstractmethod
    def loss(
        self, forward: Callable[..., Any], batch: Batch
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """The scalar loss of one micro batch (on the device), computed through `forward` (the
        model as trained: wrapped, maybe compiled, under autocast), and metrics to log beside it
        (floats; metrics.jsonl gets their means over micro batches and processes)."""

    @abstractmethod
    def tokens(self, position: int) -> int:
        """Tokens in the first `position` examples of the order: what metrics.jsonl's `tokens`
        and `tokens_per_s` and run.json's FLOPs count. A function of the data state, so it is
        global (every process's examples) and exact after a resume."""

    @abstractmethod
    def validate(
        self, model, micro_batch: int, device: torch.device, bf16: bool
    ) -> dict[str, float]:
        """Validation metrics, `val_loss` among them (best/ is chosen by it); none without
        validation data. Every process calls it (FSDP's forward needs them all)."""


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


class LinearCrossEntropy(torch.autograd.Function):
    """The mean cross-entropy of `hidden @ weight.T` against `targets`, in chunks of rows, so the
    (tokens x vocabulary) logits never exist whole: each chunk's logits, their log-sum-exp in
    fp32 and their gradient (softmax - one-hot, made in place) are computed chunk by chunk in one
    fp32 buffer, and the gradients of `hidden` and `weight` are accumulated in the forward pass
    (the backward only scales them), as Liger-Kernel's fused linear cross-entropy does. Equal to
    `F.cross_entropy((hidden @ weight.T).float(), targets)` and its gradients up to float
    rounding (tests/test_train.py). Under autocast the matmuls run in the autocast dtype and
    the softmax in fp32, as autocast runs the unfused head and loss."""

    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, rows: int):
        device = hidden.device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else weight.dtype
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        n, vocab = hidden.shape[0], weight.shape[0]
        fp32 = dtype == torch.float32  # then products go into the buffers, no temporaries
        with torch.autocast(device, enabled=False):
            w = weight.to(dtype)
            grad_h = torch.empty_like(hidden) if need_h else None
            grad_w = torch.zeros_like(weight, dtype=torch.float32) if need_w else None
            logits = torch.empty(min(rows, n), vocab, dtype=torch.float32, device=hidden.device)
            total = torch.zeros((), dtype=torch.float32, device=hidden.device)
            for s in range(0, n, rows):
                h, t = hidden[s : s + rows].to(dtype), targets[s : s + rows, None]
                lg = logits[: len(h)]
                if fp32:
                    torch.mm(h, w.T, out=lg)
                else:
                    lg.copy_(h @ w.T)
                # in place, four passes over the chunk: x - max, exp, sum, softmax / n (a
                # logsumexp and a separate exp would allocate and read it twice more)
                lg.sub_(lg.amax(-1, keepdim=True))
                picked = lg.gather(1, t)  # x_t - max
                z = lg.exp_().sum(-1, keepdim=True)  # sum of exp(x - max)
                total += (z.log() - picked).sum()  # log-sum-exp - x_t
                if need_h or need_w:  # d(mean loss)/d logits = (softmax - one-hot) / n
                    lg.mul_((z * n).reciprocal_())
                    lg.scatter_add_(1, t, lg.new_full(t.shape, -1.0 / n))
                    g = lg.to(dtype)  # lg itself in fp32
                    if need_h:
                        grad_h[s : s + len(h)] = g @ w
                    if need_w and fp32:  # summed over the chunks in fp32
                        grad_w.addmm_(g.T, h)
                    elif need_w:
                        grad_w += g.T @ h
        ctx.save_for_backward(grad_h, grad_w)
        ctx.weight_dtype = weight.dtype
        return total / n

    @staticmethod
    def backward(ctx, grad):
        grad_h, grad_w = ctx.saved_tensors
        return (
            None if grad_h is None else grad_h * grad,
            None if grad_w is None else (grad_w * grad).to(ctx.weight_dtype),
            None,
            None,
        )


def linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                         rows: int | None = None) -> torch.Tensor:  # fmt: skip
    """`LinearCrossEntropy` of (N, d) hidden states, a (V, d) head and N targets; `rows` per
    chunk (default: 512 on CPU, 4,096 elsewhere; on this machine's CPU 256-2,048 rows were within
    10% of each other at 16k and 50k vocabularies, except 2,048 at 50k in bf16, 1.17x 512)."""
    rows = rows or (512 if hidden.device.type == "cpu" else 4096)
    return LinearCrossEntropy.apply(hidden, weight, targets, rows)


def fused_head(model, fsdp: bool = False) -> torch.nn.Linear | None:
    """The output head `CausalLM` fuses with its loss: a GPT-2's bias-free linear head (its last
    hidden state is the head's input, after the final LayerNorm), not under FSDP (sharded
    parameters); None (the model's own logits) otherwise."""
    head = model.get_output_embeddings()
    plain = isinstance(head, torch.nn.Linear) and head.bias is None
    return head if plain and model.config.model_type == "gpt2" and not fsdp else None


_NO_LOGITS = torch.empty(0, dtype=torch.long)  # logits_to_keep: positions whose logits to make


def _logits_loss(forward, xy: torch.Tensor) -> torch.Tensor:
    """The mean next-token cross-entropy of (B, T + 1) windows from the model's logits, in fp32."""
    logits = forward(input_ids=xy[:, :-1]).logits  # (B, T, V)
    return torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.size(-1)), xy[:, 1:].reshape(-1))


class CausalLM(Objective):
    """Causal language modelling (pretraining, continued pretraining): the cross-entropy of
    every next token of packed windows, the logits in fp32; validation on the first
    `val_windows` windows of `val` (fixed, so evaluations compare). With `head` (see
    `fused_head`) the model returns its last hidden states and no logits, and the head's matmul
    is fused with the loss (`linear_cross_entropy`): the same loss, without the (tokens x
    vocabulary) logits and their copies."""

    def __init__(self, train: Windows, val: Windows, val_windows: int,
                 head: torch.nn.Linear | None = None, compile: bool = False) -> None:  # fmt: skip
        self.train, self.val, self.val_windows = train, val, val_windows
        self.examples = train.count
        self.head = None if compile else head
        # compile: the forward, the head and the loss in one compiled graph (as nanoGPT
        # compiles its model with its loss), so the compiler fuses the logits' softmax with
        # the cross-entropy
        self.compiles_forward = compile
        self._loss = torch.compile(_logits_loss) if compile else _logits_loss

    def batch(self, position: int, size: int) -> torch.Tensor:
        return self.train.batch(position, size)  # (B, T + 1)

    def loss(self, forward, xy: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        if self.head is None:
            return self._loss(forward, xy), {}
        out = forward(input_ids=xy[:, :-1], output_hidden_states=True,
                      logits_to_keep=_NO_LOGITS.to(xy.device))  # fmt: skip
        hidden = out.hidden_states[-1]  # (B, T, d), after the final LayerNorm
        targets = xy[:, 1:].reshape(-1)
        return linear_cross_entropy(hidden.reshape(-1, hidden.size(-1)), self.head.weight, targets), {}

    def tokens(self, position: int) -> int:
        return position * self.train.context

    @torch.no_grad()
    def validate(
        self, model, micro_batch: int, device: torch.device, bf16: bool
    ) -> dict[str, float]:
        if self.val.count < 1:
            return {}
        was_training = model.training
        model.eval()
        n = min(self.val_windows, self.val.count)
        total = 0.0
        for start in range(0, n, micro_batch):
            idx = range(start, min(start + micro_batch, n))
            xy = torch.stack([self.val.window(i) for i in idx]).to(device)  # (B, T + 1)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                out = model(input_ids=xy[:, :-1], labels=xy[:, :-1])
            total += out.loss.float().item() * len(idx)
        model.train(was_training)
        return {"val_loss": total / n}


# --- post-training: SFT, DPO, ORPO on tokenized JSONL examples (chat.py) ----------------------


class Order:
    """A seeded permutation of `count` examples per epoch; `position` (the global index of the
    next example) is the whole data state, as for `Windows`."""

    def __init__(self, lengths: list[int], seed: int) -> None:
        self.lengths, self.seed = np.asarray(lengths, dtype=np.int64), seed
        self.count = len(lengths)
        self._epoch, self._perm = -1, np.empty(0, dtype=np.int64)

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch != self._epoch:
            self._epoch = epoch
            self._perm = np.random.default_rng([self.seed, epoch]).permutation(self.count)
        return self._perm

    def indices(self, position: int, size: int) -> list[int]:
        out = []
        for p in range(position, position + size):
            epoch, k = divmod(p, self.count)
            out.append(int(self._permutation(epoch)[k]))
        return out

    def tokens(self, position: int) -> int:
        """Tokens of the first `position` examples of the order."""
        epoch, k = divmod(position, self.count)
        return int(epoch * self.lengths.sum() + self.lengths[self._permutation(epoch)[:k]].sum())


@dataclass
class Padded:
    """Sequences padded on the right to the batch's longest: ids, attention (1 on real
    tokens) and mask (1 on the tokens trained on); preference batches are the chosen rows,
    then the rejected rows, as TRL's collator makes them."""

    ids: torch.Tensor
    attention: torch.Tensor
    mask: torch.Tensor

    def to(self, device: torch.device) -> Padded:
        return Padded(self.ids.to(device), self.attention.to(device), self.mask.to(device))


def pad(seqs: list, pad_id: int) -> Padded:
    """`chat.Sequence`s as one right-padded batch."""
    width = max(len(s.ids) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(seqs), width), dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s.ids)] = torch.tensor(s.ids)
        attention[i, : len(s.ids)] = 1
        mask[i, : len(s.ids)] = torch.tensor(s.mask)
    return Padded(ids, attention, mask)


def token_logps(forward: Callable[..., Any], b: Padded) -> torch.Tensor:
    """log p(token j | tokens < j) for j = 1 .. T-1, from fp32 logits: (B, T-1)."""
    logits = forward(input_ids=b.ids, attention_mask=b.attention).logits[:, :-1].float()
    targets = b.ids[:, 1:]
    nll = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.size(-1)), targets.reshape(-1), reduction="none"
    )
    return -nll.view(targets.shape)


def masked_nll(logps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood of the masked tokens (0 when none is)."""
    return -(logps * mask).sum() / mask.sum().clamp_min(1)


def reward_metrics(chosen: torch.Tensor, rejected: torch.Tensor) -> dict[str, float]:
    """TRL's reward metrics of a batch, from the per-pair rewards."""
    return {"rewards/chosen": chosen.mean().item(), "rewards/rejected": rejected.mean().item(),
            "rewards/accuracies": (chosen > rejected).float().mean().item(),
            "rewards/margins": (chosen - rejected).mean().item()}  # fmt: skip


def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, ref_chosen: torch.Tensor,
             ref_rejected: torch.Tensor, beta: float) -> tuple[torch.Tensor, dict[str, float]]:  # fmt: skip
    """DPO's sigmoid loss (Rafailov et al. 2023, https://arxiv.org/abs/2305.18290) from summed
    completion log-probs, -log sigmoid(beta ((pi_c - ref_c) - (pi_r - ref_r))) averaged over the
    pairs, and the rewards beta (pi - ref) as TRL's DPOTrainer logs them."""
    chosen, rejected = policy_chosen - ref_chosen, policy_rejected - ref_rejected
    loss = -torch.nn.functional.logsigmoid(beta * (chosen - rejected)).mean()
    return loss, reward_metrics(beta * chosen.detach(), beta * rejected.detach())


def log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(x)) for x < 0, without cancellation (the branch at -ln 2, as TRL)."""
    return torch.where(x < -math.log(2), torch.log1p(-torch.exp(x)), torch.log(-torch.expm1(x)))


def orpo_loss(chosen: torch.Tensor, rejected: torch.Tensor, nll: torch.Tensor,
              lam: float) -> tuple[torch.Tensor, dict[str, float]]:  # fmt: skip
    """ORPO (Hong et al. 2024, https://arxiv.org/abs/2403.07691) from mean per-token completion
    log-probs: nll - lam * mean(log sigmoid(log odds(chosen) - log odds(rejected))), the log
    odds of p being log p - log(1 - p); rewards lam * logp, as TRL's ORPOTrainer logs them."""
    chosen, rejected = chosen.float(), rejected.float()
    log_odds = (chosen - rejected) - (log1mexp(chosen) - log1mexp(rejected))
    ratio = torch.nn.functional.logsigmoid(log_odds)
    loss = nll - lam * ratio.mean()
    metrics = reward_metrics(lam * chosen.detach(), lam * rejected.detach())
    return loss, metrics | {"nll_loss": nll.item(), "log_odds_ratio": ratio.mean().item(),
                            "log_odds_chosen": log_odds.mean().item()}  # fmt: skip


class _Finetune(Objective):
    """Examples of a JSONL file, tokenized, in a seeded order; validation on held-out ones."""

    def __init__(self, train: list, val: list, seed: int, pad_id: int) -> None:
        self.train, self.val, self.pad_id = train, val, pad_id
        self.order = Order([self.length(e) for e in train], seed)
        self.examples = len(train)

    @staticmethod
    def length(example) -> int:
        return len(example.ids)

    def collate(self, examples: list) -> Padded:
        return pad(examples, self.pad_id)

    def batch(self, position: int, size: int) -> Padded:
        return self.collate([self.train[i] for i in self.order.indices(position, size)])

    def tokens(self, position: int) -> int:
        return self.order.tokens(position)

    @torch.no_grad()
    def validate(
        self, model, micro_batch: int, device: torch.device, bf16: bool
    ) -> dict[str, float]:
        if not self.val:
            return {}
        was_training = model.training
        model.eval()
        sums: dict[str, float] = {}
        for start in range(0, len(self.val), micro_batch):
            chunk = self.val[start : start + micro_batch]
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                loss, metrics = self.loss(model, self.collate(chunk).to(device))
            for key, value in {"loss": loss.item(), **metrics}.items():
                sums[key] = sums.get(key, 0.0) + value * len(chunk)
        model.train(was_training)
        return {f"val_{k}": v / len(self.val) for k, v in sums.items()}


class SFT(_Finetune):
    """Supervised fine-tuning: the mean NLL of the trained tokens (the assistant turns, or all
    with --loss-on all) of a micro batch."""

    def loss(self, forward, b: Padded) -> tuple[torch.Tensor, dict[str, float]]:
        return masked_nll(token_logps(forward, b), b.mask[:, 1:]), {}


class _Preference(_Finetune):
    @staticmethod
    def length(pair) -> int:
        return len(pair.chosen.ids) + len(pair.rejected.ids)

    def collate(self, pairs: list) -> Padded:
        return pad([p.chosen for p in pairs] + [p.rejected for p in pairs], self.pad_id)


class DPO(_Preference):
    """Direct preference optimisation against a frozen reference model (the --init model, in
    eval mode, its log-probs computed without gradients)."""

    def __init__(self, train: list, val: list, seed: int, pad_id: int, reference,
                 beta: float) -> None:  # fmt: skip
        super().__init__(train, val, seed, pad_id)
        self.reference, self.beta = reference.eval().requires_grad_(False), beta

    def loss(self, forward, b: Padded) -> tuple[torch.Tensor, dict[str, float]]:
        mask = b.mask[:, 1:]
        policy = (token_logps(forward, b) * mask).sum(1)
        with torch.no_grad():
            ref = (token_logps(self.reference, b) * mask).sum(1)
        (pc, pr), (rc, rr) = policy.chunk(2), ref.chunk(2)
        return dpo_loss(pc, pr, rc, rr, self.beta)


class ORPO(_Preference):
    """Odds-ratio preference optimisation (no reference model): the chosen answers' NLL (their
    completion tokens, or the whole texts with --loss-on all) minus lam times the log-sigmoid
    of the log odds ratio of the mean per-token log-probs."""

    def __init__(self, train: list, val: list, seed: int, pad_id: int, lam: float,
                 nll_on_all: bool = False) -> None:  # fmt: skip
        super().__init__(train, val, seed, pad_id)
        self.lam, self.nll_on_all = lam, nll_on_all

    def loss(self, forward, b: Padded) -> tuple[torch.Tensor, dict[str, float]]:
        logps, mask = token_logps(forward, b), b.mask[:, 1:]
        mean = (logps * mask).sum(1) / mask.sum(1).clamp_min(1)
        chosen, rejected = mean.chunk(2)
        n = len(chosen)
        nll = masked_nll(logps[:n], (b.attention if self.nll_on_all else b.mask)[:n, 1:])
        return orpo_loss(chosen, rejected, nll, self.lam)


# --- the objective of a train call on a JSONL file ---------------------------------------------


def post_tokenizer(data: Path, cfg: TrainConfig):
    """The --init model's tokenizer, for a JSONL file of sft, dpo or orpo examples."""
    from expertlm.chat import prepare_tokenizer
    from expertlm.tokenizer import load_tokenizer

    if data.is_dir():
        raise ExpertlmError(f"{data}: a folder; --objective {cfg.objective} reads a JSONL file of "
                            "examples (clm trains on a shards folder)")  # fmt: skip
    if not data.is_file():
        raise ExpertlmError(f"{data}: no such file")
    return prepare_tokenizer(load_tokenizer(cfg.init))


def post_objective(data: Path, cfg: TrainConfig, tokenizer, context: int, device: torch.device,
                   main: bool = True) -> Objective:  # fmt: skip
    """The sft, dpo or orpo objective on the JSONL file `data`: its examples rendered, tokenized
    and cut to `context` tokens, a seeded `val_frac` of them held out."""
    from expertlm.chat import Renderer, read_preferences, read_sft
    from expertlm.console import warn
    from expertlm.models import load_model

    if cfg.objective == "sft":
        examples = read_sft(data, Renderer(tokenizer, cfg.loss_on))
        examples = [e.truncated(context) for e in examples]
        trained = [e for e in examples if sum(e.mask[1:])]
    else:
        examples = read_preferences(data, Renderer(tokenizer))
        for p in examples:
            p.chosen, p.rejected = p.chosen.truncated(context), p.rejected.truncated(context)
        trained = [p for p in examples if sum(p.chosen.mask[1:]) and sum(p.rejected.mask[1:])]
    if len(trained) < len(examples) and main:
        warn(f"{data}: {len(examples) - len(trained)} of {len(examples)} examples have no answer "
             f"token within the context ({context} tokens) and are left out")  # fmt: skip
    n_val = min(max(1, round(cfg.val_frac * len(trained))), len(trained) - 1) if cfg.val_frac else 0
    held = set(np.random.default_rng([cfg.seed, 1]).permutation(len(trained))[:n_val].tolist())
    train = [e for i, e in enumerate(trained) if i not in held]
    val = [e for i, e in enumerate(trained) if i in held]
    if not train:
        raise ExpertlmError(f"{data}: no example to train on")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if cfg.objective == "sft":
        return SFT(train, val, cfg.seed, pad_id)
    if cfg.objective == "orpo":
        lam = 0.1 if cfg.orpo_lambda is None else cfg.orpo_lambda
        return ORPO(train, val, cfg.seed, pad_id, lam, nll_on_all=cfg.loss_on == "all")
    reference = load_model(cfg.init).to(device)
    return DPO(train, val, cfg.seed, pad_id, reference, 0.1 if cfg.beta is None else cfg.beta)
