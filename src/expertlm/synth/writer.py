"""Abstracts from findings: the literature's papers and the benchmark's two-version items.

A paper studies one target with one intervention and reports 2-3 findings (outcome, effect):
background naming the target's classes (and, neutrally, outcomes it was linked to before), the
open question, methods, one result sentence per finding, sometimes a comparison with controls,
and a conclusion stating each target-outcome relation ("the X promotes Y"). A benchmark item
reports one finding and opens with its question (see `_abstract`). The result words
say how the outcome changed (polarity x effect); the conclusion's verb states the effect
itself, independent of the intervention, so an altered abstract flips both to stay coherent.

Each direction word is drawn from a matched pair (`lexicon.DIRECTION_PAIRS`). For the
benchmark the writer leaves a marker in place of each direction word and renders the text
three times: original, altered (every marked word swapped for its partner) and combined
(`[[original, altered]]`).
"""

from __future__ import annotations

import random
import re
from functools import partial

from expertlm.synth.lexicon import COMPARATIVE_PAIRS, CONCLUSION_PAIRS, VERB_PAIRS, Lexicon
from expertlm.synth.world import World

# Share of literature papers with each optional sentence (a benchmark item always has the open
# question and the comparison, never the link to earlier work).
P_LINK = 0.3
P_UNKNOWN = 0.5
P_COMPARE = 0.5
_MARK = re.compile("\x00(\\d+)\x00")


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def _article(word: str) -> str:
    return ("an " if word[0].lower() in "aeiou" else "a ") + word


def _join(words: list[str]) -> str:
    """a / a and b / a, b and c"""
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


class Writer:
    """Writes abstracts about `world`, drawing every choice from `rnd` (deterministic)."""

    def __init__(self, world: World, rnd: random.Random) -> None:
        self.world, self.rnd = world, rnd
        self.pick = partial(_pick, rnd.random)
        lex: Lexicon = world.lexicon
        self.lex = lex
        cues = not world.latent_only
        self.background = lex.background_cue if cues else lex.background_plain
        self.conclusion = lex.conclusion_cue if cues else lex.conclusion_plain
        self.target_slots = []
        for t, name in enumerate(world.target_names):
            typ = world.types[world.target_type[t]]
            self.target_slots.append(
                {
                    "T": name,
                    "cT": f"{typ} {name}" if cues else name,
                    "system": (system := world.systems[world.target_system[t]]),
                    "System": _cap(system),
                    "a_system": _article(system),
                    "type": typ,
                    "Type": _cap(typ),
                    "a_type": _article(typ),
                }
            )
        self.seen = [world.seen_outcomes(t) for t in range(len(world.target_names))]

    # --- statistics and numbers --------------------------------------------------------------

    def _stat(self, n: int) -> str:
        # Always exact numbers (never a fixed "p < 0.05"): a statistic then rarely repeats
        # next to the same words, which keeps benchmark abstracts' 13-grams out of the literature.
        rand = self.rnd.random
        p = f"p = 0.0{1 + int(49 * rand()):02d}"
        if rand() < 0.6:
            return p
        return f"t({n - 2}) = {2.1 + 4 * rand():.2f}, {p}"

    # --- one abstract ------------------------------------------------------------------------

    def _abstract(self, t: int, i: int, findings: list[tuple[int, int]], mark, item: bool) -> str:
        """The abstract's text; `mark(pair, sign, role)` renders each direction word."""
        rnd, lex, w, pick = self.rnd, self.lex, self.world, self.pick
        iv, polarity = w.interventions[i]
        n = 8 + int(33 * rnd.random())
        outcomes = [w.outcome_names[o] for o, _ in findings]
        s = dict(self.target_slots[t])
        s.update(
            iv=iv, Iv=_cap(iv), n=n, sp=(sp := pick(w.species)), Sp=_cap(sp),
            method=pick(w.methods),
            olist=_join(outcomes),
        )  # fmt: skip
        background = pick(self.background).format_map(s)
        if item:
            # A benchmark paper opens with its question, which names the target and the
            # outcome, then gives the background and methods "to test this". The literature
            # never puts a question before the background, nor methods "to test this" right
            # after the background, so no 13-word window that holds the target's background
            # sentence (shared by every paper on the target) occurs in the literature.
            question = pick(lex.unknown).format_map(s)
            methods = pick(lex.methods_after_question).format_map(s)
            out = [question, background, methods]
        else:
            out = [background]
            others = [o for o in self.seen[t] if o not in {f for f, _ in findings}]
            if len(others) >= 2 and rnd.random() < P_LINK:
                a, b = rnd.sample(others, 2)
                s["oa"], s["ob"] = w.outcome_names[a], w.outcome_names[b]
                out.append(pick(lex.link).format_map(s))
            if rnd.random() < P_UNKNOWN:
                out.append(pick(lex.unknown).format_map(s))
                methods = lex.methods_after_question if rnd.random() < 0.5 else lex.methods_tpl
            else:
                methods = lex.methods_tpl
            out.append(pick(methods).format_map(s))
        for o, effect in findings:
            s["o"] = name = w.outcome_names[o]
            s["O"] = _cap(name)
            s["V"] = mark(pick(VERB_PAIRS), polarity * effect, "result")
            s["stat"] = self._stat(n)
            s["pct"] = 12 + int(56 * rnd.random())
            out.append(pick(lex.result).format_map(s))
        if item or rnd.random() < P_COMPARE:
            o, effect = pick(findings)
            s["o"] = name = w.outcome_names[o]
            s["O"] = _cap(name)
            s["C"] = mark(pick(COMPARATIVE_PAIRS), polarity * effect, "comparison")
            s["stat"] = self._stat(n)
            out.append(pick(lex.compare).format_map(s))
        pair = pick(CONCLUSION_PAIRS)  # one verb pair per conclusion reads naturally
        s["clauses"] = _join(
            [f"{mark(pair, e, 'conclusion')} {w.outcome_names[o]}" for o, e in findings]
        )
        out.append(pick(self.conclusion).format_map(s))
        return " ".join(out)

    def paper(self, t: int, i: int, findings: list[tuple[int, int]]) -> str:
        """A literature abstract; `findings` are (outcome, published effect) pairs."""
        return self._abstract(t, i, findings, _word, item=False)

    def item(self, t: int, i: int, o: int, effect: int) -> tuple[str, str, str, list[dict]]:
        """A benchmark abstract reporting one finding with published `effect`: (original,
        altered, combined, marks), one mark per direction word: its role (result, comparison,
        conclusion) and its original and altered word."""
        marks: list[dict] = []

        def mark(pair: tuple[str, str], sign: int, role: str) -> str:
            marks.append(
                {"role": role, "original": _word(pair, sign), "altered": _word(pair, -sign)}
            )
            return f"\x00{len(marks) - 1}\x00"

        text = self._abstract(t, i, [(o, effect)], mark, item=True)
        original = _MARK.sub(lambda m: marks[int(m[1])]["original"], text)
        altered = _MARK.sub(lambda m: marks[int(m[1])]["altered"], text)
        combined = _MARK.sub(
            lambda m: f"[[{marks[int(m[1])]['original']}, {marks[int(m[1])]['altered']}]]", text
        )
        return original, altered, combined, marks


def _pick(rand, seq):
    """`seq[k]` for a uniform k: `random.choice` without its rejection loop (this is the
    writer's innermost step; the bias of int(random() * n) is below 2**-40 for these n)."""
    return seq[int(rand() * len(seq))]


def _word(pair: tuple[str, str], sign: int, role: str = "") -> str:
    return pair[0] if sign > 0 else pair[1]
