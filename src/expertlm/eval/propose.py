"""`bench make --llm MODEL`: a local instruction-tuned causal LM proposes each item's alteration.

The prompt follows the published generators of BrainBench-style items (GPT-4 in Luo et al.
2024 was asked to alter an abstract's results so that they are wrong but plausible, keeping the
background and methods): reverse exactly one result, wherever the abstract states it, keep the
claim verbs, and answer in JSON. The model's answer is a list of edits, each an exact phrase of
the abstract and its replacement; they are applied (`alter.from_edits`) and then pass the same
checks as the rule-based items (`make.check_item`: markers, the rest byte-identical, result
sentences only, claim verbs kept, token counts, cutoff, decontamination). Decoding is greedy, so
the same model gives the same items. The rule-based path needs none of this.
"""

from __future__ import annotations

import json
from pathlib import Path

PROMPT = (
    "You are an expert scientist. Below is the abstract of a research paper. Alter it so that "
    "exactly one of its results is reversed: the altered abstract must report the opposite "
    "direction of one finding (for example increased instead of decreased, or impaired instead "
    "of enhanced), changed in every place the abstract states that finding, and nothing else. "
    "Do not change the background or the methods. Keep the verbs that say how a claim is made "
    "(show, suggest, demonstrate, indicate, reveal) exactly as they are.\n\n"
    'Answer with JSON only: {"edits": [{"original": "<words copied exactly from the abstract>", '
    '"altered": "<their replacement>"}]}\n\n'
    "Abstract: {abstract}"
)


class Proposer:
    """A local causal LM folder that proposes alterations (greedy decoding)."""

    def __init__(self, model, tokenizer, max_new_tokens: int = 384, name: str = "") -> None:
        self.model, self.tokenizer = model.eval(), tokenizer
        self.max_new_tokens, self.name = max_new_tokens, name

    @classmethod
    def load(cls, path: str | Path, max_new_tokens: int = 384) -> Proposer:
        from expertlm.models import load_model
        from expertlm.tokenizer import load_tokenizer

        return cls(load_model(path), load_tokenizer(path), max_new_tokens, str(path))

    def report(self) -> dict:
        return {"prompt": PROMPT, "max_new_tokens": self.max_new_tokens, "decoding": "greedy",
                "chat_template": bool(getattr(self.tokenizer, "chat_template", None))}  # fmt: skip

    def prompt_ids(self, abstract: str) -> list[int]:
        text = PROMPT.replace("{abstract}", abstract)
        if getattr(self.tokenizer, "chat_template", None):
            ids = self.tokenizer.apply_chat_template([{"role": "user", "content": text}],
                                                     add_generation_prompt=True, tokenize=True)  # fmt: skip
            return list(ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids)
        return list(self.tokenizer(text + "\nJSON:")["input_ids"])

    def generate(self, abstract: str) -> str:
        import torch

        ids = self.prompt_ids(abstract)
        pad = self.tokenizer.pad_token_id
        pad = pad if pad is not None else self.tokenizer.eos_token_id
        with torch.inference_mode():
            out = self.model.generate(torch.tensor([ids], device=self.model.device), do_sample=False,
                                      max_new_tokens=self.max_new_tokens, pad_token_id=pad)  # fmt: skip
        return self.tokenizer.decode(out[0, len(ids) :], skip_special_tokens=True)

    def propose(self, abstract: str) -> list[tuple[str, str]] | str:
        """The proposed edits, or `llm_no_json` when the answer holds none."""
        return parse_edits(self.generate(abstract))


def parse_edits(answer: str) -> list[tuple[str, str]] | str:
    """The edits of the first JSON object in `answer` that has them."""
    decoder = json.JSONDecoder()
    at = answer.find("{")
    while at != -1:
        try:
            obj, _ = decoder.raw_decode(answer, at)
        except json.JSONDecodeError:
            at = answer.find("{", at + 1)
            continue
        edits = obj.get("edits") if isinstance(obj, dict) else None
        if isinstance(edits, list) and all(isinstance(e, dict) and isinstance(e.get("original"), str)
                                           and isinstance(e.get("altered"), str) for e in edits):  # fmt: skip
            return [(e["original"], e["altered"]) for e in edits]
        at = answer.find("{", at + 1)
    return "llm_no_json"
