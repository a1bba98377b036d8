"""Per-token negative log-likelihood of texts under a causal LM: the one place NLL is computed.

Every score expertlm reports (benchmark perplexities, bits per byte) comes from `Scorer`, which
returns, for each token sequence, the NLL of every predicted token (token 2..n given its prefix,
or 1..n after a prepended BOS). Reductions (mean or sum, template tokens in or out) are applied
to those arrays by the caller, so every switch is exact and cheap.

Three ways to the same numbers:
- `token_nll(seqs)`: sequences batched by length with attention masks, padding on either side;
  a sequence longer than the model's context is scored with a sliding window (each token once,
  with at least `context - stride` tokens of context), never truncated.
- `choice_nll(items)`: the N choices of a benchmark item (N = 2 for BrainBench: `pair_nll`) are
  identical up to the first difference, so the shared prefix (template included) is run once,
  and all N continuations are run from its key/value cache. Same per-token numbers (within
  float32 rounding), less compute.
- `Scorer(..., batch_size=1)` with `token_nll` on one text at a time: the published loop.

Log-probabilities are always taken in float32, whatever the model's dtype.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from expertlm.dist import pick_device
from expertlm.errors import ExpertlmError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# Tokens per forward pass when the batch size is chosen automatically on a GPU.
AUTO_BATCH_TOKENS = 16_384
# A stem (tokens every prompt of a call starts with) shorter than this is not worth a pass.
MIN_STEM = 8


def _cache_name() -> str:
    """What this transformers calls a forward pass's key/value cache: `cache` from 5.2x on,
    `past_key_values` before (the old name warns, and goes in 5.40)."""
    from transformers.modeling_outputs import CausalLMOutputWithPast

    return "cache" if "cache" in CausalLMOutputWithPast.__dataclass_fields__ else "past_key_values"


def pick_dtype(dtype: str | None, device: torch.device) -> torch.dtype | str:
    """The weights' dtype: float32 on the CPU; on a GPU the checkpoint's own ("auto")."""
    if dtype in (None, "auto"):
        return torch.float32 if device.type == "cpu" else "auto"
    if dtype not in DTYPES:
        raise ExpertlmError(f"option --dtype: expected auto, {', '.join(DTYPES)} (got '{dtype}')")
    return DTYPES[dtype]


@dataclass
class Encoded:
    """Token ids of one text and the index of its first token that belongs to the scored part
    (the abstract, for `score_template=False`)."""

    ids: list[int]
    first: int = 0


class Scorer:
    """A causal LM and its tokenizer, ready to score token sequences."""

    def __init__(self, model, tokenizer, *, device: torch.device | str | None = None,
                 batch_size: int | None = None, stride: int | None = None,
                 padding_side: str = "right", bos: bool | None = None, name: str = "") -> None:  # fmt: skip
        self.device = pick_device(device) if not isinstance(device, torch.device) else device
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.name = name
        cfg = model.config
        self.context = (
            getattr(cfg, "n_positions", None)
            or getattr(cfg, "max_position_embeddings", None)
            or 1024
        )
        if stride is not None and not 0 < stride < self.context:
            raise ExpertlmError(
                f"option --stride {stride}: must be between 1 and the context ({self.context}) - 1"
            )
        self.stride = stride or self.context // 2
        if padding_side not in ("right", "left"):
            raise ExpertlmError(
                f"option --padding-side: expected right or left (got '{padding_side}')"
            )
        self.padding_side = padding_side
        self.batch_size = batch_size
        # bos: None = the tokenizer's own special tokens, as `tokenizer(text)` gives them (the
        # published evaluation: none for GPT-2, <s> for Llama); True = always a BOS (the EOS id
        # when there is none: <|endoftext|> for GPT-2); False = never.
        self.bos = bos
        self.bos_id = (
            tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        )
        if bos and self.bos_id is None:
            raise ExpertlmError(
                f"{name or 'model'}: --bos asked for, but the tokenizer has no BOS or EOS token"
            )
        pad = tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else (tokenizer.eos_token_id or 0)
        self.windowed = 0  # sequences scored with a sliding window so far
        self._cache = _cache_name()
        self._stem_memo: _Stem | None = None

    @classmethod
    def load(cls, name: str | Path, *, device: str | None = None, dtype: str | None = None,
             **kwargs) -> Scorer:  # fmt: skip
        """Any local Hugging Face causal LM folder (or a hub id where the network is there)."""
        from transformers.utils import logging as hf_logging

        from expertlm.models import load_model
        from expertlm.tokenizer import load_tokenizer

        hf_logging.set_verbosity_error()  # our own messages and bars, not per-load ones
        hf_logging.disable_progress_bar()
        dev = pick_device(device)
        model = load_model(name, dtype=pick_dtype(dtype, dev))
        tokenizer = load_tokenizer(name)
        if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
            raise ExpertlmError(
                f"{name}: tokenizer has {len(tokenizer):,} tokens but the model only "
                f"{model.get_input_embeddings().weight.shape[0]:,} embeddings"
            )
        return cls(model, tokenizer, device=dev, name=str(name), **kwargs)

    # --- text -> tokens ----------------------------------------------------------------------

    def encode(self, text: str, scored_from_char: int = 0) -> Encoded:
        """Token ids of `text`, encoded whole, with a BOS as `bos` says. `first` is the first
        token whose span reaches past character `scored_from_char` (0: every token)."""
        want_offsets = scored_from_char > 0
        enc = self.tokenizer(text, add_special_tokens=self.bos is None,
                             return_offsets_mapping=want_offsets)  # fmt: skip
        ids = list(enc["input_ids"])
        first = 0
        if want_offsets:
            spans = enc["offset_mapping"]
            first = next(
                (i for i, (s, e) in enumerate(spans) if e > scored_from_char and e > s), len(ids)
            )
        if self.bos and (not ids or ids[0] != self.bos_id):
            return Encoded([self.bos_id, *ids], first + 1)
        return Encoded(ids, first)

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """A (context, continuation) request split into token ids as lm-evaluation-harness
        splits it (`TemplateLM._encode_pair`, `loglikelihood`): the context's trailing
        whitespace moves into the continuation; context + continuation are encoded whole and
        split where the context's own encoding ends (token boundaries as in the joint text); an
        empty context is the BOS token (EOS when there is none), lm-eval's `prefix_token_id`.
        Special tokens as `encode` adds them; with the tokenizer's own (`bos` None), a text that
        already starts with the BOS token's text gets none (lm-eval's `tok_encode`)."""
        if not context:
            if self.bos_id is None:
                raise ExpertlmError(f"{self.name or 'model'}: an empty context needs a BOS or "
                                    "EOS token to condition on, and the tokenizer has neither")  # fmt: skip
            cont = list(self.tokenizer(continuation, add_special_tokens=False)["input_ids"])
            if cont and cont[0] == self.bos_id:
                return cont[:1], cont[1:]
            return [self.bos_id], cont
        n_spaces = len(context) - len(context.rstrip())
        if n_spaces:
            context, continuation = context[:-n_spaces], context[-n_spaces:] + continuation
        whole, ctx = self._lm_eval_ids(context + continuation), self._lm_eval_ids(context)
        return ctx, whole[len(ctx) :]

    def _lm_eval_ids(self, text: str) -> list[int]:
        if self.bos is None and self.bos_id is not None:
            bos_text = self.tokenizer.decode([self.bos_id])
            if bos_text and text.startswith(bos_text):
                return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        return self.encode(text).ids

    # --- scoring -----------------------------------------------------------------------------

    def _auto_batch(self, longest: int) -> int:
        if self.batch_size:
            return self.batch_size
        if self.device.type == "cpu":
            return 1  # compute-bound: padding costs more than batching saves
        return max(1, AUTO_BATCH_TOKENS // max(1, longest))

    def _in_batches(self, order: list[int], length, run) -> dict[int, object]:
        """`run(indices)` over `order` sorted longest first (a batch too big for the device fails
        at once), in batches sized by `_auto_batch`; the results keyed by index."""
        order = sorted(order, key=lambda i: -length(i))
        out: dict[int, object] = {}
        k = 0
        while k < len(order):
            group = order[k : k + self._auto_batch(length(order[k]))]
            out.update(zip(group, run(group), strict=True))
            k += len(group)
        return out

    @torch.inference_mode()
    def token_nll(self, seqs: Sequence[Sequence[int]]) -> list[np.ndarray]:
        """NLL (nats, float64 arrays) of tokens 1..n-1 of each sequence given their prefixes."""
        out: list = [np.zeros(0) if len(s) < 2 else None for s in seqs]
        short = []
        for i, s in enumerate(seqs):
            if len(s) > self.context:
                out[i] = self._windowed(list(s))
            elif len(s) >= 2:
                short.append(i)
        done = self._in_batches(short, lambda i: len(seqs[i]),
                                lambda group: self._forward_nll([list(seqs[i]) for i in group]))  # fmt: skip
        for i, nll in done.items():
            out[i] = nll
        return out

    def _pad(
        self, seqs: list[list[int]], side: str | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Padded ids, attention mask and position ids (positions count real tokens only), on
        `side` (default: the scorer's padding side)."""
        side = side or self.padding_side
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for r, s in enumerate(seqs):
            sl = slice(0, len(s)) if side == "right" else slice(width - len(s), width)
            ids[r, sl] = torch.tensor(s, dtype=torch.long)
            mask[r, sl] = 1
        pos = (mask.cumsum(1) - 1).clamp(min=0)
        return ids.to(self.device), mask.to(self.device), pos.to(self.device)

    def _forward_nll(self, seqs: list[list[int]]) -> list[np.ndarray]:
        ids, mask, pos = self._pad(seqs)
        if len(seqs) == 1:  # no padding: no mask, the plain causal path
            logits = self.model(input_ids=ids, position_ids=pos).logits
        else:
            logits = self.model(input_ids=ids, attention_mask=mask, position_ids=pos).logits
        nll, out = _next_nll(logits, ids), []
        for r, s in enumerate(seqs):
            start = 0 if self.padding_side == "right" else ids.shape[1] - len(s)
            out.append(nll[r, start : start + len(s) - 1])
        return out

    def _windowed(self, seq: list[int]) -> np.ndarray:
        """Sliding window: windows of `context` tokens starting every `stride` tokens; each token
        is scored once, in the first window where it is not among the first tokens."""
        self.windowed += 1
        n, L, S = len(seq), self.context, self.stride
        parts, scored = [], 1  # tokens [1, scored) have their NLL
        begin = 0
        while scored < n:
            end = min(begin + L, n)
            window = seq[begin:end]
            nll = self._forward_nll([window])[0]  # NLL of window tokens 1..len-1
            parts.append(nll[scored - begin - 1 :])
            scored = end
            if end == n:
                break
            begin += S
        return np.concatenate(parts)

    @torch.inference_mode()
    def choice_nll(self, items: Sequence[Sequence[Sequence[int]]]) -> list[list[np.ndarray]]:
        """Per-token NLL of every sequence of each item (an item: N >= 2 sequences, N may differ
        between items). Each item's shared prefix runs once, and the stem shared by every item
        in the call (the prompt template) runs once for all."""
        out: list = [None] * len(items)
        todo: list[tuple[int, int]] = []  # (item index, shared prefix length)
        for i, seqs in enumerate(items):
            p = _common_prefix(*seqs)
            if max(map(len, seqs)) > self.context or p < 1 or p == min(map(len, seqs)):
                out[i] = self.token_nll(seqs)  # windowed, no shared prefix, or nested
            else:
                todo.append((i, p))
        if not todo:
            return out
        first = items[todo[0][0]][0]
        n_stem = min(_common_prefix(first, items[i][0]) for i, _ in todo)
        n_stem = min(n_stem, min(p for _, p in todo) - 1)  # every item keeps a token of its own
        stem = self._stem(list(first[:n_stem])) if n_stem >= MIN_STEM else None
        done = self._in_batches(
            [i for i, _ in todo],
            lambda i: max(map(len, items[i])),
            lambda group: self._shared_prefix([items[i] for i in group], stem),
        )
        for i, r in done.items():
            out[i] = r
        return out

    def pair_nll(
        self, pairs: Sequence[tuple[Sequence[int], Sequence[int]]]
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """`choice_nll` of two-sequence items, each result as a tuple (a, b)."""
        return [tuple(r) for r in self.choice_nll(pairs)]

    def _stem(self, ids: list[int]) -> _Stem:
        """Keys/values and NLLs of the tokens every prompt starts with (kept for the next call)."""
        if self._stem_memo is not None and self._stem_memo.ids == ids:
            return self._stem_memo
        res = self.model(input_ids=torch.tensor([ids], device=self.device), use_cache=True)
        kv = [(layer.keys, layer.values) for layer in getattr(res, self._cache).layers]
        head = _nll(res.logits[0, :-1], torch.tensor(ids[1:], device=self.device))
        self._stem_memo = _Stem(ids, kv, head, res.logits[0, -1])
        return self._stem_memo

    def _shared_prefix(self, items: list[Sequence[Sequence[int]]], stem: _Stem | None):
        from transformers import DynamicCache

        dev = self.device
        n_stem = len(stem.ids) if stem is not None else 0
        prefixes = [list(seqs[0][: _common_prefix(*seqs)]) for seqs in items]
        rests = [pre[n_stem:] for pre in prefixes]  # each at least one token
        ids, mask, pos = self._pad(rests)
        B, width = ids.shape
        if stem is not None:
            cache = DynamicCache(
                ddp_cache_data=[
                    (k.expand(B, -1, -1, -1), v.expand(B, -1, -1, -1)) for k, v in stem.kv
                ],
                config=self.model.config,
            )
            mask = torch.cat([torch.ones((B, n_stem), dtype=mask.dtype, device=dev), mask], dim=1)
            res = self.model(input_ids=ids, attention_mask=mask, position_ids=pos + n_stem,
                             **{self._cache: cache}, use_cache=True)  # fmt: skip
        else:
            res = self.model(input_ids=ids, attention_mask=mask if B > 1 else None, position_ids=pos,
                             use_cache=True)  # fmt: skip
        # every NLL of the batch on the device, then one copy to the host (not one per item)
        nll = _next_nll(res.logits, ids)
        if stem is not None:
            first_ids = torch.tensor([rest[0] for rest in rests], device=dev)
            firsts = _nll(stem.last_logits[None].expand(B, -1), first_ids)
        heads, last = [], []
        for r, rest in enumerate(rests):
            start = 0 if self.padding_side == "right" else width - len(rest)
            head = nll[r, start : start + len(rest) - 1]
            if stem is not None:
                head = np.concatenate([stem.head, firsts[r : r + 1], head])
            heads.append(head)
            last.append(start + len(rest) - 1)
        last_logits = res.logits[torch.arange(B, device=dev), torch.tensor(last, device=dev)]  # (B, V)
        cache = getattr(res, self._cache)
        del res
        # Every continuation of every item from its prefix's cache: item r's N_r sequences are
        # the rows `rows == r`, in order (for pairs: rows 2r and 2r + 1).
        rows = torch.tensor([r for r, seqs in enumerate(items) for _ in seqs], device=dev)
        cache.batch_select_indices(rows)
        tails = [
            list(x[len(pre) :]) for seqs, pre in zip(items, prefixes, strict=True) for x in seqs
        ]
        t_ids, t_mask, _ = self._pad(tails, side="right")
        # positions continue each item's prefix (padding slots clamped: a short prefix plus the
        # batch's widest tail may run past the position table)
        starts = torch.tensor([len(pre) for pre in prefixes], device=dev)[rows]
        t_pos = (starts[:, None] + torch.arange(t_ids.shape[1], device=dev)).clamp(
            max=self.context - 1
        )
        full_mask = torch.cat([mask[rows], t_mask], dim=1)
        logits = self.model(input_ids=t_ids, attention_mask=full_mask, position_ids=t_pos,
                            **{self._cache: cache}, use_cache=True).logits  # fmt: skip
        rests_nll = _next_nll(logits, t_ids)
        firsts = _nll(last_logits[rows], torch.tensor([t[0] for t in tails], device=dev))
        out, row = [], 0
        for r, seqs in enumerate(items):
            versions = []
            for t in tails[row : row + len(seqs)]:
                rest = rests_nll[row, : len(t) - 1]
                versions.append(np.concatenate([heads[r], firsts[row : row + 1], rest]))
                row += 1
            out.append(versions)
        return out


@dataclass
class _Stem:
    ids: list[int]
    kv: list[tuple[torch.Tensor, torch.Tensor]]  # per layer, (1, heads, n, head_dim)
    head: np.ndarray  # NLL of stem tokens 1..n-1
    last_logits: torch.Tensor  # predicts the token after the stem


def _common_prefix(*seqs: Sequence[int]) -> int:
    """Length of the prefix every one of `seqs` starts with."""
    for k, column in enumerate(zip(*seqs, strict=False)):  # up to the shortest
        if any(t != column[0] for t in column[1:]):
            return k
    return min(map(len, seqs))


def _next_nll(logits: torch.Tensor, ids: torch.Tensor) -> np.ndarray:
    """(B, W - 1) float64 numpy: the NLL of `ids[:, j + 1]` under `logits[:, j]` as `_nll`
    computes it, row by row on the device (one row's float32 log-probabilities at a time) and
    copied to the host once: on a GPU a copy per sequence made scoring wait on every one."""
    B, W = ids.shape
    out = torch.empty((B, max(W - 1, 0)), dtype=torch.float32, device=logits.device)
    for r in range(B):
        out[r] = _nll_on_device(logits[r, : W - 1], ids[r, 1:])
    return out.double().cpu().numpy()


def _nll_on_device(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """-log softmax(logits)[target] in float32, per position, where the logits are."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return -logp.gather(-1, targets.view(-1, 1)).squeeze(-1)


def _nll(logits: torch.Tensor, targets: torch.Tensor) -> np.ndarray:
    """`_nll_on_device` as float64 numpy."""
    if logits.shape[0] == 0:
        return np.zeros(0)
    return _nll_on_device(logits, targets).double().cpu().numpy()


def reduce_nll(nll: np.ndarray, first: int = 0, reduction: str = "mean") -> float:
    """Mean (or sum) NLL of the predicted tokens from token index `first` on (array position
    `first - 1`, since the array starts at token 1)."""
    part = nll[max(0, first - 1) :]
    if part.size == 0:
        return float("nan")
    return float(part.sum() if reduction == "sum" else part.mean())
