"""What a run learns: an objective owns its training data and their order, the loss of a micro
batch with the metrics to log beside it, the tokens it counts, and validation.

The loop (`train.fit`) owns the rest (schedule, accumulation, processes, checkpoints, logs) and
never looks inside a batch, so an objective is added without touching it, as litgpt's finetune
scripts share one `fit`. The data state is one integer, `position` (the global index of the next
example in the epoch-by-epoch order): a checkpoint's step and position resume the data exactly.
`CausalLM` is causal language modelling on packed token windows. Masked-loss SFT on chat
JSONL, DPO (a frozen reference model of its own; rewards, accuracy and margin as metrics) and
ORPO fit the same interface: batches of their own type, their own `loss`, their own `tokens`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
import torch


class Batch(Protocol):
    """A micro batch as an objective makes it: anything `train_step` can move to the device
    (a tensor, a `transformers.BatchEncoding`, a dataclass of tensors with its own `.to`)."""

    def to(self, device: torch.device) -> Batch: ...


class Objective(ABC):
    """Training examples in a seeded order, the loss of a micro batch, and validation."""

    examples: int
    """Training examples in one epoch (what --epochs counts)."""

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


class CausalLM(Objective):
    """Causal language modelling (pretraining, continued pretraining): the cross-entropy of
    every next token of packed windows, the logits in fp32; validation on the first
    `val_windows` windows of `val` (fixed, so evaluations compare)."""

    def __init__(self, train: Windows, val: Windows, val_windows: int) -> None:
        self.train, self.val, self.val_windows = train, val, val_windows
        self.examples = train.count

    def batch(self, position: int, size: int) -> torch.Tensor:
        return self.train.batch(position, size)  # (B, T + 1)

    def loss(self, forward, xy: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        logits = forward(input_ids=xy[:, :-1]).logits  # (B, T, V)
        loss = torch.nn.functional.cross_entropy(
            logits.float().reshape(-1, logits.size(-1)), xy[:, 1:].reshape(-1)
        )
        return loss, {}

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
