"""Abstracts from findings: the literature's papers and the benchmark's two-version items.

A paper studies one target with one intervention and reports 2-3 findings (outcome, effect).
It reads like an abstract: general context (technical terms of the field, no finding), a
background sentence naming the target's classes (and, neutrally, outcomes it was linked to
before), sometimes the open question, the methods and design details, one result sentence per
finding, sometimes a null result on another quantity and a comparison with controls, a
conclusion stating each target-outcome relation ("the X promotes Y"), sometimes an implication.
A benchmark item reports one finding and opens with its question (see `_abstract`). The result
words say how the outcome changed (polarity x effect); the conclusion's verb states the effect
itself, independent of the intervention, so an altered abstract flips both to stay coherent.

Every sentence is a frame of the field's lexicon rendered with fresh draws (`templates.py`), so
sentences vary in wording as well as in their entities and numbers. Sentences that carry no
finding (context, details, null results, implications) never name an outcome other than the
study's own: the literature never mentions a held-out pair together.

Each direction word is drawn from a matched pair (`backbone.DIRECTION_PAIRS`). For the
benchmark the writer leaves a marker in place of each direction word and renders the text
three times: original, altered (every marked word swapped for its partner) and combined
(`[[original, altered]]`).
"""

from __future__ import annotations

import random
import re

from expertlm.synth.backbone import (
    BROAD,
    COMPARATIVE_PAIRS,
    CONCLUSION,
    CONCLUSION_PAIRS,
    DETAIL,
    IMPLICATION,
    NULL_RESULT,
    VERB_PAIRS,
)
from expertlm.synth.lexicon import Lexicon
from expertlm.synth.templates import render
from expertlm.synth.world import World

# Share of literature papers with each optional sentence (a benchmark item always has the open
# question and the comparison, never the context or the link to earlier work).
P_CONTEXT = (0.9, 0.6, 0.3)  # a first, second and third context sentence
P_BROAD = 0.7  # a sentence on everyday matters the topic touches
P_LINK = 0.3
P_UNKNOWN = 0.5
P_DETAIL = (0.7, 0.4)  # design details: a first and a second
P_NULL = 0.5
P_COMPARE = 0.5
P_IMPLICATION = 0.7
FILLER_TRIES = 20  # redraws of a sentence that named another outcome before leaving it out
_MARK = re.compile("\x00(\\d+)\x00")


def _article(word: str) -> str:
    return ("an " if word[0].lower() in "aeiou" else "a ") + word


def _join(words: list[str]) -> str:
    """a / a and b / a, b and c"""
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


class Writer:
    """Writes abstracts about `world`, drawing every choice from `rnd` (deterministic)."""

    def __init__(self, world: World, rnd: random.Random) -> None:
        self.world, self.rnd, self.rand = world, rnd, rnd.random
        lex: Lexicon = world.lexicon
        self.lex, self.pools = lex, lex.pools
        cues = not world.latent_only
        self.background = lex.background_cue if cues else lex.background_plain
        self.conclusion = CONCLUSION + (lex.conclusion_cue if cues else ())
        self.frames = {
            name: lex.frames(name)
            for name in ("context", "result", "compare", "link", "unknown", "methods_tpl",
                         "methods_after_question")
        }  # fmt: skip
        self.frames |= {"broad": BROAD, "detail": DETAIL, "null": NULL_RESULT, "implication": IMPLICATION}
        self.target_slots = []
        for t, name in enumerate(world.target_names):
            typ = world.types[world.target_type[t]]
            self.target_slots.append(
                {
                    "T": name,
                    "cT": f"{typ} {name}" if cues else name,
                    "system": world.systems[world.target_system[t]],
                    "type": typ,
                    "a_type": _article(typ),
                }
            )
        self.seen = [world.seen_outcomes(t) for t in range(len(world.target_names))]
        names = sorted(world.outcome_names, key=len, reverse=True)
        self._outcome = re.compile("|".join(re.escape(o) for o in names), re.IGNORECASE)

    def pick(self, seq):
        """`seq[k]` for a uniform k: `random.choice` without its rejection loop (this is the
        writer's innermost step; the bias of int(random() * n) is below 2**-40 for these n)."""
        return seq[int(self.rand() * len(seq))]

    def say(self, role: str | tuple, s: dict) -> str:
        frames = self.frames[role] if isinstance(role, str) else role
        return render(self.pick(frames), s, self.pools, self.rand)

    def filler(self, role: str, s: dict, own: set[str]) -> str | None:
        """A sentence that carries no finding and names no outcome but the study's `own`;
        None when every draw named another (it is then left out)."""
        for _ in range(FILLER_TRIES):
            text = self.say(role, s)
            if all(m[0].lower() in own for m in self._outcome.finditer(text)):
                return text
        return None

    # --- statistics and numbers --------------------------------------------------------------

    def _stat(self, n: int) -> str:
        # Always exact numbers (never a fixed "p < 0.05"): a statistic then rarely repeats
        # next to the same words, which keeps benchmark abstracts' 13-grams out of the literature.
        rand = self.rand
        p = f"p = 0.0{1 + int(49 * rand()):02d}"
        u = rand()
        if u < 0.4:
            return p
        if u < 0.65:
            return f"t({n - 2}) = {2.1 + 4 * rand():.2f}, {p}"
        if u < 0.8:
            return f"F(1, {n - 2}) = {4.4 + 20 * rand():.1f}, {p}"
        if u < 0.9:
            return f"U = {3 + int(n * n / 5 * rand())}, {p}"
        return f"d = {0.6 + 1.4 * rand():.2f}, {p}"

    def _pstat(self, n: int) -> str:
        """The statistic of a null result (p between 0.10 and 0.98)."""
        rand = self.rand
        p = f"p = 0.{10 + int(89 * rand()):02d}"
        return p if rand() < 0.6 else f"t({n - 2}) = {0.1 + 1.4 * rand():.2f}, {p}"

    # --- one abstract ------------------------------------------------------------------------

    def _abstract(self, t: int, i: int, findings: list[tuple[int, int]], mark, item: bool) -> str:
        """The abstract's text; `mark(pair, sign, role)` renders each direction word."""
        rand, w, pick = self.rand, self.world, self.pick
        iv, polarity = w.interventions[i]
        n = 8 + int(33 * rand())
        outcomes = [w.outcome_names[o] for o, _ in findings]
        own = {o.lower() for o in outcomes}
        s = dict(self.target_slots[t])
        s.update(iv=iv, n=n, sp=pick(w.species), method=pick(w.methods), olist=_join(outcomes),
                 k=2 + int(5 * rand()), pstat=self._pstat(n))  # fmt: skip
        out: list[str | None] = []
        background = render(pick(self.background), s, self.pools, self.rand)
        if item:
            # A benchmark paper opens with its question, which names the target and the
            # outcome, then gives the background and methods "to test this". The literature
            # never puts a question before the background, nor methods "to test this" right
            # after the background, so no 13-word window across those sentences (shared by
            # every paper on the target) occurs in the literature.
            out += [self.say("unknown", s), background, self.say("methods_after_question", s)]
        else:
            for p in P_CONTEXT:
                if rand() < p:
                    out.append(self.filler("context", s, own))
            if rand() < P_BROAD:
                out.append(self.filler("broad", s, own))
            out.append(background)
            others = [o for o in self.seen[t] if o not in {f for f, _ in findings}]
            if len(others) >= 2 and rand() < P_LINK:
                a, b = self.rnd.sample(others, 2)
                s["oa"], s["ob"] = w.outcome_names[a], w.outcome_names[b]
                out.append(self.say("link", s))
            if rand() < P_UNKNOWN:
                out.append(self.say("unknown", s))
                after = rand() < 0.5
            else:
                after = False
            out.append(self.say("methods_after_question" if after else "methods_tpl", s))
        for p in P_DETAIL:
            if rand() < p:
                out.append(self.filler("detail", s, own))
        for o, effect in findings:
            s["o"] = w.outcome_names[o]
            s["V"] = mark(pick(VERB_PAIRS), polarity * effect, "result")
            s["stat"] = self._stat(n)
            s["pct"] = 12 + int(56 * rand())
            out.append(self.say("result", s))
        if rand() < P_NULL:
            out.append(self.filler("null", s, own))
        if item or rand() < P_COMPARE:
            o, effect = pick(findings)
            s["o"] = w.outcome_names[o]
            s["C"] = mark(pick(COMPARATIVE_PAIRS), polarity * effect, "comparison")
            s["stat"] = self._stat(n)
            out.append(self.say("compare", s))
        pair = pick(CONCLUSION_PAIRS)  # one verb pair per conclusion reads naturally
        s["clauses"] = _join(
            [f"{mark(pair, e, 'conclusion')} {w.outcome_names[o]}" for o, e in findings]
        )
        out.append(self.say(self.conclusion, s))
        if rand() < P_IMPLICATION:
            out.append(self.filler("implication", s, own))
        return " ".join(x for x in out if x)

    def paper(self, t: int, i: int, findings: list[tuple[int, int]]) -> str:
        """A literature abstract; `findings` are (outcome, published effect) pairs."""
        return self._abstract(t, i, findings, _word, item=False)

    def item(self, t: int, i: int, o: int, effect: int) -> tuple[str, str, str, list[dict]]:
        """A benchmark abstract reporting one finding with published `effect`: (original,
        altered, combined, marks), one mark per direction word: its role (result, comparison,
        conclusion) and its original and altered word."""
        return self.versions(t, i, o, effect, item=True)

    def versions(self, t: int, i: int, o: int, effect: int,
                 item: bool) -> tuple[str, str, str, list[dict]]:  # fmt: skip
        """`item`'s four values for an abstract reporting one finding, written as a benchmark
        paper (`item`) or as a literature paper (no opening question; `synth/posttrain.py`)."""
        marks: list[dict] = []

        def mark(pair: tuple[str, str], sign: int, role: str) -> str:
            marks.append(
                {"role": role, "original": _word(pair, sign), "altered": _word(pair, -sign)}
            )
            return f"\x00{len(marks) - 1}\x00"

        text = self._abstract(t, i, [(o, effect)], mark, item=item)
        original = _MARK.sub(lambda m: marks[int(m[1])]["original"], text)
        altered = _MARK.sub(lambda m: marks[int(m[1])]["altered"], text)
        combined = _MARK.sub(
            lambda m: f"[[{marks[int(m[1])]['original']}, {marks[int(m[1])]['altered']}]]", text
        )
        return original, altered, combined, marks


def _word(pair: tuple[str, str], sign: int, role: str = "") -> str:
    return pair[0] if sign > 0 else pair[1]
