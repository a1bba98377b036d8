"""The forward-looking benchmark: later papers about (target, outcome) pairs, in two versions.

Each item is one 2023 abstract reporting one finding; the altered version swaps every direction
word (results, comparison, conclusion) for its matched partner. Two sets:

- forward (`benchmark.csv`): pairs the literature never reports: only integrating other
  findings (through the classes or the low-rank structure) can beat chance;
- seen (`benchmark_seen.csv`): pairs the literature reports: a memoriser gets these right.

Bias is designed out: the items are split into four equal cells by the original's published
effect (promotes / suppresses) and the intervention's polarity, so the original's conclusion
word, its result words and the intervention's polarity are each 50/50 across items; direction
words come in pairs with equal token counts. Like published findings, a fraction `noise` of
the originals report the wrong effect: exactly round(noise x cell size) items of each cell
(stratified, where the literature flips each finding independently), so the oracle scores
1 - noise up to rounding, and the true effects and directions are balanced as exactly as the
published ones.

Files: the BrainBench CSV exactly (`doi, journal_section, original_abstract,
incorrect_abstract, combined_abstract`) and JSONL (`id, section, original, altered` plus the
item's structured finding and truth).
"""

from __future__ import annotations

import csv
import random
from dataclasses import asdict, dataclass
from pathlib import Path

from expertlm.corpus.clean import words
from expertlm.errors import ExpertlmError
from expertlm.eval.benchmark import BRAINBENCH_COLUMNS
from expertlm.io import write_jsonl
from expertlm.synth.config import MAX_ITEMS_PER_PAIR
from expertlm.synth.world import World
from expertlm.synth.writer import Writer

# Word n-gram length of the literature/benchmark overlap guard: the corpus stage's default.
DECONTAM_NGRAM = 13
_NON_WORD = str.maketrans({c: " " for c in map(chr, range(128)) if not (c.isalnum() or c == "_")})


@dataclass
class Item:
    id: str
    set: str  # "forward" or "seen"
    year: int
    section: str
    target: str
    outcome: str
    intervention: str
    polarity: int
    effect: int  # the published effect (the original's conclusion): +1 promotes, -1 suppresses
    true_effect: int
    flipped: bool
    direction: int  # the original's result direction: polarity x effect (+1 increase)
    true_direction: int
    original: str
    altered: str
    combined: str
    marks: list[dict]
    t: int  # indices into the world (not written)
    o: int


def make_items(
    world: World,
    writer: Writer,
    rnd: random.Random,
    *,
    kind: str,
    n: int,
    noise: float,
    year: int,
    option: str,
) -> list[Item]:
    """`n` items about the world's held-out pairs (`kind` "forward") or reported pairs ("seen")."""
    pairs = world.pairs(held_out=kind == "forward")
    eff = world.effect
    by_sign = {e: [p for p in pairs if eff[p] == e] for e in (1, -1)}
    for e, ps in by_sign.items():
        if not ps:
            what = "held-out" if kind == "forward" else "reported"
            raise ExpertlmError(
                f"option '{option}' (--{option.replace('_', '-')}): every {what} pair has the "
                f"same true effect ({-e:+d}), so the items cannot be balanced (change --seed, or "
                f"raise --targets or --holdout)"
            )
        rnd.shuffle(ps)
    next_pair = {1: 0, -1: 0}
    by_polarity = {
        p: [i for i, (_, pol) in enumerate(world.interventions) if pol == p] for p in (1, -1)
    }

    # Four cells (published effect x polarity) of equal size, and round(noise x n) flipped
    # items dealt over them in the same order - stratified rather than independent flips, so
    # the oracle is 1 - noise up to rounding. The order pairs a promotes cell with a
    # suppresses cell of the same polarity, so when n or the flips are not multiples of 4 the
    # words that flip stay balanced (effect and direction: off by at most 1 for odd n), and
    # the polarity is off by at most 2.
    p1 = rnd.choice((1, -1))
    cells = [(1, p1), (-1, p1), (1, -p1), (-1, -p1)]
    flips = round(noise * n)
    plan = []
    for c, (effect, polarity) in enumerate(cells):
        size = n // 4 + (c < n % 4)
        k_flip = flips // 4 + (c < flips % 4)
        plan += [(effect, polarity, k < k_flip) for k in range(size)]
    rnd.shuffle(plan)
    for e, ps in by_sign.items():
        need = sum((-eff_ if flip else eff_) == e for eff_, _, flip in plan)
        if need > MAX_ITEMS_PER_PAIR * len(ps):
            what = "held-out" if kind == "forward" else "reported"
            raise ExpertlmError(
                f"option '{option}' (--{option.replace('_', '-')}): {need} items need true "
                f"effect {e:+d}, but only {len(ps)} {what} pairs have it (at most "
                f"{MAX_ITEMS_PER_PAIR} items per pair; lower --{option.replace('_', '-')}, "
                f"or raise --targets)"
            )

    items = []
    for k, (effect, polarity, flipped) in enumerate(plan):
        true_effect = -effect if flipped else effect
        ps = by_sign[true_effect]
        t, o = ps[next_pair[true_effect] % len(ps)]
        next_pair[true_effect] += 1
        i = rnd.choice(by_polarity[polarity])
        original, altered, combined, marks = writer.item(t, i, o, effect)
        items.append(
            Item(
                id=f"synth-{world.field}-s{world.seed}-{year}-{kind[0]}{k + 1:03d}",
                set=kind,
                year=year,
                section=world.section(t),
                target=world.target_names[t],
                outcome=world.outcome_names[o],
                intervention=world.interventions[i][0],
                polarity=polarity,
                effect=effect,
                true_effect=true_effect,
                flipped=flipped,
                direction=polarity * effect,
                true_direction=polarity * true_effect,
                original=original,
                altered=altered,
                combined=combined,
                marks=marks,
                t=t,
                o=o,
            )
        )
    return items


def write_items(items: list[Item], folder: Path, stem: str) -> None:
    """`stem.csv` (BrainBench) and `stem.jsonl` (benchmark JSONL plus the structured finding)."""
    with open(folder / f"{stem}.csv", "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(BRAINBENCH_COLUMNS)
        for it in items:
            w.writerow([it.id, it.section, it.original, it.altered, it.combined])
    write_jsonl(
        folder / f"{stem}.jsonl",
        (
            {"id": it.id, **{k: v for k, v in asdict(it).items() if k not in ("id", "t", "o")}}
            for it in items
        ),
    )


class NgramGuard:
    """Word n-grams of both versions of every item, with `collides(text)`: does a text share
    one? Words are those of the corpus stage's decontamination (`corpus.clean.words`), so a
    literature that never collides is never trimmed by `corpus build --decontam`."""

    def __init__(self, items: list[Item], n: int = DECONTAM_NGRAM) -> None:
        self.n = n
        self.index: set[tuple[str, ...]] = set()
        for it in items:
            for text in (it.original, it.altered):
                self.index.update(self._ngrams(text))

    def _ngrams(self, text: str):
        # For ASCII text (all of ours) lower() + translate + split gives exactly
        # corpus.clean.words (\w+ of the case-folded text) in 60% of its time.
        w = text.lower().translate(_NON_WORD).split() if text.isascii() else words(text)
        return zip(*(w[k:] for k in range(self.n)), strict=False)  # windows end at the last word

    def collides(self, text: str) -> bool:
        return not self.index.isdisjoint(self._ngrams(text))
