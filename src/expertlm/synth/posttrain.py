"""Post-training data from a synthetic field's literature: SFT questions about its reported
findings with their answers, and preference pairs of a finding as reported against reversed.

Both are made from the published findings of the training literature only (every paper is
dated before the benchmark year, the cutoff), so a model tuned on them has seen nothing the
forward benchmark asks about: the literature never reports a held-out (target, outcome) pair,
`posttrain_data` refuses one if it ever met it, and every text is re-written (fresh template
draws) while it shares a word 13-gram with either version of any benchmark item, as the
literature's papers are (`build.py`). Findings are taken as published, noise included: the data
teaches what the field reports, not the hidden truth.

- `sft.jsonl`: `{"messages": [user, assistant], ...}`: a question on what an intervention of a
  target did to an outcome, and the answer the paper gave (its result and its conclusion, in
  the direction words of the literature).
- `preferences.jsonl`: `{"prompt", "chosen", "rejected", ...}` (TRL's format, as `bench make
  --pairs` writes it): a literature-style abstract reporting the finding, the shared text before
  its first changed sentence as the prompt, the rest as published (chosen) and with every
  direction word swapped for its partner (rejected).

Each record also names its `id`, the `paper` it comes from, `target` and `outcome` (TRL and
`expertlm train` ignore other keys). `corpus synth --posttrain-items N` writes both files.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from expertlm.errors import ExpertlmError
from expertlm.synth.backbone import CONCLUSION_PAIRS, VERB_PAIRS
from expertlm.synth.benchmark import NgramGuard
from expertlm.synth.world import World
from expertlm.synth.writer import Writer

SFT_FILE = "sft.jsonl"
PREFERENCE_FILE = "preferences.jsonl"
MAX_REWRITES = 50  # re-writes of one text that shares a 13-gram with a benchmark item

# Questions about one finding: {iv} intervention, {T} target, {o} outcome, {year}.
QUESTIONS = (
    "What did {iv} of the {T} do to {o}?",
    "How did {o} change after {iv} of the {T}?",
    "In the {year} study of {iv} of the {T}, what happened to {o}?",
    "Does the {T} promote or suppress {o}, judging from {iv}?",
    "What was the effect of {iv} of the {T} on {o}?",
)
# Answers: {V} a result verb (increased / decreased ...), {C} a conclusion verb (promotes ...).
ANSWERS = (
    "{Iv} of the {T} {V} {o}: the {T} {C} {o}.",
    "It {V} {o}, which shows that the {T} {C} {o}.",
    "{o_cap} was {V} by {iv} of the {T}, so the {T} {C} {o}.",
)


@dataclass(frozen=True)
class Finding:
    """One published finding of the literature: paper, year, target t, intervention i, outcome o
    (indices into the world) and the effect as published (+1 promotes, -1 suppresses)."""

    paper: str
    year: int
    t: int
    i: int
    o: int
    effect: int


def _word(pair: tuple[str, str], sign: int) -> str:
    return pair[0] if sign > 0 else pair[1]


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def posttrain_data(
    world: World, findings: list[Finding], n: int, rnd: random.Random, guard: NgramGuard
) -> tuple[list[dict], list[dict], dict]:
    """`n` SFT records and `n` preference records about `findings` (taken in a seeded order,
    in turn, so each finding is used once before any is used twice), with counts of the texts
    re-written or left out for sharing an n-gram with the benchmark (`guard`)."""
    if not findings:
        raise ExpertlmError("posttrain data: the literature reports no finding to ask about")
    for f in findings:
        if world.held_out[f.t, f.o]:  # the literature never reports one: a bug if it does
            raise ExpertlmError(
                f"posttrain data: paper {f.paper} reports the held-out pair "
                f"({world.target_names[f.t]}, {world.outcome_names[f.o]}) of the forward benchmark"
            )
    order = list(findings)
    rnd.shuffle(order)
    writer = Writer(world, rnd)
    sft: list[dict] = []
    prefs: list[dict] = []
    stats = {"rewritten": 0, "dropped": 0}
    for k in range(n):
        f = order[k % len(order)]
        iv, polarity = world.interventions[f.i]
        meta = {"paper": f.paper, "target": world.target_names[f.t],
                "outcome": world.outcome_names[f.o]}  # fmt: skip
        slots = {"iv": iv, "Iv": _cap(iv), "T": meta["target"], "o": meta["outcome"],
                 "o_cap": _cap(meta["outcome"]), "year": f.year}  # fmt: skip
        for _ in range(MAX_REWRITES):
            q = writer.pick(QUESTIONS).format(**slots)
            a = writer.pick(ANSWERS).format(**slots, V=_word(writer.pick(VERB_PAIRS), polarity * f.effect),
                                            C=_word(writer.pick(CONCLUSION_PAIRS), f.effect))  # fmt: skip
            original, altered, _, _ = writer.versions(f.t, f.i, f.o, f.effect, item=False)
            if not any(guard.collides(x) for x in (f"{q} {a}", original, altered)):
                break
            stats["rewritten"] += 1
        else:
            stats["dropped"] += 1
            continue
        sft.append({"messages": [{"role": "user", "content": q},
                                 {"role": "assistant", "content": a}],
                    "id": f"{world.field}-s{world.seed}-sft-{k + 1:06d}", **meta})  # fmt: skip
        prefs.append({**_split(original, altered),
                      "id": f"{world.field}-s{world.seed}-pref-{k + 1:06d}", **meta})  # fmt: skip
    return sft, prefs, stats


def _split(original: str, altered: str) -> dict:
    """prompt / chosen / rejected: the text before the first changed sentence is the prompt,
    exactly as `bench make --pairs` splits its pairs (`eval.make.preference_pair`)."""
    from expertlm.eval.make import preference_pair

    first = next(j for j, (a, b) in enumerate(zip(original, altered, strict=False)) if a != b)
    return preference_pair({"original": original, "altered": altered, "changes": [{"start": first}]})


__all__ = ["PREFERENCE_FILE", "SFT_FILE", "Finding", "posttrain_data"]
