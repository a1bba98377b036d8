"""Post-training data: SFT and preference JSON Lines, rendered and tokenized for `train`.

Formats (one JSON object a line, TRL's):

- SFT: `{"messages": [{"role": "system"|"user"|"assistant", "content": str}, ...]}`, or
  `{"prompt": ..., "completion": ...}` with both strings or both message lists.
- Preference (DPO, ORPO): `{"prompt": ..., "chosen": ..., "rejected": ...}`, all strings or all
  message lists. Without `prompt`, the prompt is the part `chosen` and `rejected` share (the
  leading messages they have in common, or the common leading text), as TRL's
  `extract_prompt`; `"prompt": ""` compares the whole texts.

Message lists are rendered with the tokenizer's chat template; a tokenizer without one (as
expertlm's own) gets `DEFAULT_CHAT_TEMPLATE`, which renders
`<|system|>\\nS\\n<|user|>\\nU\\n<|assistant|>\\nA<eos>` (turns joined by a newline, an
assistant turn ended by the tokenizer's end-of-text token) and, as generation prompt,
`\\n<|assistant|>\\n`. Plain strings are concatenated, the completion ended by the end-of-text
token (as TRL does). Each text is tokenized once; the trained tokens (the assistant turns, the
completion) are the tokens that start inside their character spans (the spans come from
rendering the conversation up to each turn, compared with the whole text, so a template that
renders a prompt alone differently still gives the right boundary).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from expertlm.errors import ExpertlmError, where
from expertlm.io import jsonl_rows

DEFAULT_CHAT_TEMPLATE = (
    "{%- for message in messages %}{% if not loop.first %}{{ '\\n' }}{% endif %}"
    "{{ '<|' + message['role'] + '|>\\n' + message['content'] }}"
    "{% if message['role'] == 'assistant' %}{{ eos_token }}{% endif %}{% endfor %}"
    "{%- if add_generation_prompt %}{% if messages %}{{ '\\n' }}{% endif %}"
    "{{ '<|assistant|>\\n' }}{% endif %}"
)
ROLES = ("system", "user", "assistant")


@dataclass
class Sequence:
    """One tokenized text: its ids and, per token, whether it is trained on (1) or context (0)."""

    ids: list[int]
    mask: list[int]

    def truncated(self, length: int) -> Sequence:
        return Sequence(self.ids[:length], self.mask[:length])


@dataclass
class Pair:
    """A preference example: the prompt followed by the chosen and by the rejected answer."""

    chosen: Sequence
    rejected: Sequence


def prepare_tokenizer(tokenizer):
    """`tokenizer` with `DEFAULT_CHAT_TEMPLATE` where it has no chat template of its own."""
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = DEFAULT_CHAT_TEMPLATE
    if tokenizer.eos_token is None:
        raise ExpertlmError(f"{tokenizer.name_or_path}: the tokenizer has no end-of-text token")
    return tokenizer


def _common(a: str, b: str) -> int:
    """Length of the common prefix of two strings."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class Renderer:
    """Texts with trained character spans -> `Sequence`s, by one tokenizer."""

    def __init__(self, tokenizer, loss_on: str = "assistant") -> None:
        self.tok, self.loss_on = prepare_tokenizer(tokenizer), loss_on

    def render(self, messages: list[dict], generation: bool = False) -> str:
        return self.tok.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=generation
        )

    def _before(self, messages: list[dict]) -> str:
        """The text before the next assistant turn's content: the generation prompt after
        `messages` (templates cannot render the empty conversation's: an empty assistant turn
        stands for it)."""
        if messages:
            return self.render(messages, generation=True)
        return self.render([{"role": "assistant", "content": ""}])

    def tokenize(self, text: str, spans: list[tuple[int, int]], special: bool) -> Sequence:
        """`text` tokenized (with the tokenizer's special tokens for plain text, as TRL does;
        a chat template writes its own); a token is trained if it starts inside a span, or
        every token with `loss_on` all."""
        enc = self.tok(text, add_special_tokens=special, return_offsets_mapping=True)
        mask = [
            int(self.loss_on == "all" or (b > a and any(s <= a < e for s, e in spans)))
            for a, b in enc["offset_mapping"]
        ]
        return Sequence(list(enc["input_ids"]), mask)

    def conversation(self, messages: list[dict], first_trained: int = 0) -> Sequence:
        """A conversation; the assistant turns from `first_trained` on are trained."""
        full = self.render(messages)
        spans = [
            (_common(self._before(messages[:i]), full),
             _common(self.render(messages[: i + 1]), full))
            for i, m in enumerate(messages) if m["role"] == "assistant" and i >= first_trained
        ]  # fmt: skip
        return self.tokenize(full, spans, special=False)

    def completion(self, prompt, completion) -> Sequence:
        """A prompt and its completion (both strings, or both message lists)."""
        if isinstance(prompt, list):
            return self.conversation(prompt + completion, first_trained=len(prompt))
        eos = self.tok.eos_token
        text = prompt + completion + ("" if completion.endswith(eos) else eos)
        return self.tokenize(text, [(len(prompt), len(text))], special=True)


def _messages(value, loc: str) -> list[dict]:
    if not isinstance(value, list) or not value:
        raise ExpertlmError(f"{loc}: expected a non-empty list of messages")
    for m in value:
        if not (isinstance(m, dict) and isinstance(m.get("content"), str)
                and m.get("role") in ROLES):  # fmt: skip
            raise ExpertlmError(
                f'{loc}: each message must be {{"role": system|user|assistant, "content": '
                f"string}}, got {str(m)[:80]}"
            )
    return [{"role": m["role"], "content": m["content"]} for m in value]


def _text_or_messages(rec: dict, key: str, loc: str, allow_empty: bool = False):
    v = rec[key]
    if isinstance(v, str):
        return v
    if isinstance(v, list) and allow_empty and not v:
        return v
    return _messages(v, f"{loc}: key '{key}'")


def _records(path: Path) -> list[tuple[str, dict]]:
    if not path.is_file():
        raise ExpertlmError(f"{path}: no such file (sft, dpo and orpo read a JSONL file)")
    rows = [(where(path, line), rec) for line, rec in jsonl_rows(path)]
    if not rows:
        raise ExpertlmError(f"{path}: no examples")
    return rows


def read_sft(path: str | os.PathLike, renderer: Renderer) -> list[Sequence]:
    """The examples of an SFT JSON Lines file (`messages`, or `prompt` and `completion`)."""
    out = []
    for loc, rec in _records(Path(path)):
        if "messages" in rec:
            msgs = _messages(rec["messages"], f"{loc}: key 'messages'")
            if not any(m["role"] == "assistant" for m in msgs) and renderer.loss_on != "all":
                raise ExpertlmError(f"{loc}: no assistant message to train on")
            out.append(renderer.conversation(msgs))
        elif "prompt" in rec and "completion" in rec:
            prompt = _text_or_messages(rec, "prompt", loc, allow_empty=True)
            completion = _text_or_messages(rec, "completion", loc)
            if isinstance(prompt, str) != isinstance(completion, str):
                raise ExpertlmError(f"{loc}: 'prompt' and 'completion' must both be strings or "
                                    "both message lists")  # fmt: skip
            out.append(renderer.completion(prompt, completion))
        else:
            raise ExpertlmError(
                f"{loc}: expected a 'messages' list or 'prompt' and 'completion' "
                f"(keys: {', '.join(rec) or 'none'})"
            )
    return out


def extract_prompt(chosen, rejected):
    """(prompt, chosen, rejected) with the prompt the shared beginning (TRL's `extract_prompt`:
    shared leading messages, or shared leading text less a space before the split)."""
    n = min(len(chosen), len(rejected))
    i = 0
    while i < n and chosen[i] == rejected[i]:
        i += 1
    if isinstance(chosen, str) and 0 < i < n and chosen[i - 1] == " ":
        i -= 1  # the answer keeps its leading space
    return chosen[:i], chosen[i:], rejected[i:]


def read_preferences(path: str | os.PathLike, renderer: Renderer) -> list[Pair]:
    """The pairs of a preference JSON Lines file (`prompt`, `chosen`, `rejected`)."""
    out = []
    for loc, rec in _records(Path(path)):
        missing = [k for k in ("chosen", "rejected") if k not in rec]
        if missing:
            raise ExpertlmError(f"{loc}: missing key(s) {', '.join(missing)} "
                                f"(keys: {', '.join(rec) or 'none'})")  # fmt: skip
        chosen = _text_or_messages(rec, "chosen", loc)
        rejected = _text_or_messages(rec, "rejected", loc)
        if "prompt" in rec:
            prompt = _text_or_messages(rec, "prompt", loc, allow_empty=True)
        else:
            prompt, chosen, rejected = extract_prompt(chosen, rejected)
        kinds = {isinstance(x, str) for x in (prompt, chosen, rejected)}
        if len(kinds) > 1:
            raise ExpertlmError(f"{loc}: 'prompt', 'chosen' and 'rejected' must all be strings or "
                                "all message lists")  # fmt: skip
        if not chosen or not rejected:
            raise ExpertlmError(f"{loc}: 'chosen' and 'rejected' are the same (nothing to compare)")
        out.append(Pair(renderer.completion(prompt, chosen), renderer.completion(prompt, rejected)))
    return out
