"""Measured properties of a synthetic literature that decide whether it behaves like real text:
its vocabulary (word types and their Zipf-like rank-frequency curve), the share of its running
words that come from the backbone every field shares, and how often one wording recurs (the
largest share of abstracts holding any one word 13-gram).

`corpus synth` writes these into its manifest (`text`), computed on at most `MAX_PAPERS` papers
spread over the literature; `text_statistics(texts)` computes them for any texts.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

from expertlm.synth.backbone import BACKBONE_WORDS

# Alphabetic words as `tokenizer compare` counts them (hyphenated and apostrophe words whole).
WORD = re.compile(r"[^\W\d_]+(?:[-'][^\W\d_]+)*")
NGRAM = 13  # the corpus stage's decontamination unit
MAX_PAPERS = 5000
_NON_WORD = str.maketrans({c: " " for c in map(chr, range(128)) if not (c.isalnum() or c == "_")})


def zipf_slope(counts: Sequence[int], min_count: int = 3, per_decade: int = 20) -> float | None:
    """Least-squares slope of log frequency against log rank, frequencies sorted high to low,
    at log-spaced ranks (`per_decade` per factor of ten, so the many rare words do not outweigh
    the common ones) from rank 1 to the last rank with at least `min_count` occurrences. Real
    text gives about -1."""
    freq = sorted((c for c in counts if c > 0), reverse=True)
    last = sum(c >= min_count for c in freq)
    if last < 10:
        return None
    ranks = sorted({round(10 ** (k / per_decade)) for k in range(int(per_decade * math.log10(last)) + 1)})
    xs = [math.log10(r) for r in ranks]
    ys = [math.log10(freq[r - 1]) for r in ranks]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx


def _words13(text: str) -> list[str]:
    # the decontamination words (corpus.clean.words) for ASCII text, as NgramGuard does
    return text.lower().translate(_NON_WORD).split()


def ngram_recurrence(texts: Sequence[str], n: int = NGRAM) -> dict:
    """The word n-gram held by the most abstracts: its share of abstracts and the n-gram."""
    held = Counter()
    for text in texts:
        w = _words13(text)
        held.update(set(zip(*(w[k:] for k in range(n)), strict=False)))
    if not held:
        return {"n": n, "max_share": 0.0, "ngram": None, "abstracts": len(texts)}
    gram, count = held.most_common(1)[0]
    return {"n": n, "max_share": round(count / len(texts), 4), "ngram": " ".join(gram),
            "abstracts": len(texts)}  # fmt: skip


def text_statistics(texts: Sequence[str]) -> dict:
    """Word types, Zipf slope, backbone share and 13-gram recurrence of `texts`."""
    freq = Counter(w.casefold() for t in texts for w in WORD.findall(t))
    running = sum(freq.values())
    backbone = sum(c for w, c in freq.items() if w in BACKBONE_WORDS)
    slope = zipf_slope(list(freq.values()))
    return {
        "abstracts": len(texts),
        "running_words": running,
        "words_per_abstract": round(running / max(len(texts), 1), 1),
        "word_types": len(freq),
        "zipf_slope": round(slope, 3) if slope is not None else None,
        "backbone_share": round(backbone / max(running, 1), 4),
        "ngram_recurrence": ngram_recurrence(texts),
        "definitions": {
            "word_types": "distinct case-folded alphabetic words (hyphenated words whole)",
            "zipf_slope": "least-squares slope of log10 frequency on log10 rank at 20 log-spaced "
            "ranks per decade, from rank 1 to the last word type occurring at least 3 times",
            "backbone_share": "share of running words that are backbone words (the shared "
            "pools, the shared frames' words and the direction words)",
            "ngram_recurrence": "the word 13-gram (decontamination words) held by the most "
            "abstracts, and the share of abstracts that hold it",
        },
    }


def sample(texts: Sequence[str], most: int = MAX_PAPERS) -> list[str]:
    """At most `most` texts spread evenly over `texts` (all of them when there are fewer)."""
    if len(texts) <= most:
        return list(texts)
    return [texts[k * len(texts) // most] for k in range(most)]
