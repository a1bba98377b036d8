"""Technical terms from Greek and Latin morphemes.

Real technical vocabulary is built from a shared stock of roots and affixes: "hypothalamic"
(hypo + thalam + ic), "neurotrophic" (neur + o + troph + ic), "phytohormone", "cytotoxic". A
field's terms combine its own roots (neur, cortic, ... for the domain; phyt, rhiz, ... for the
agronomy field) with roots and affixes every field uses, so a tokenizer trained on another field
splits a term into a few pieces it knows (the affixes, the shared roots) and a few it does not,
never into single bytes only.

`technical_terms` is a pure function of the field's morphemes: a field has one vocabulary,
whatever the world's seed, and its order is the terms' frequency rank (`templates.Pools`).
"""

from __future__ import annotations

import random
from collections.abc import Iterable

PREFIXES = (
    "anti", "auto", "bi", "co", "de", "di", "dys", "endo", "epi", "exo", "extra", "hemi",
    "hetero", "homo", "hyper", "hypo", "inter", "intra", "iso", "macro", "meso", "meta", "micro",
    "mono", "multi", "neo", "oligo", "pan", "para", "peri", "poly", "post", "pre", "pro",
    "pseudo", "retro", "semi", "sub", "supra", "trans", "tri", "ultra", "ecto", "infra",
)  # fmt: skip
# Roots every field uses (biochemistry, cell biology, physiology).
SHARED_ROOTS = (
    "gen", "prot", "cyt", "hydr", "ox", "gluc", "glyc", "lip", "phosph", "morph", "path",
    "therm", "chrom", "plast", "troph", "lys", "zym", "mit", "nucle", "ribos", "pept", "amin",
    "kin", "hem", "osm", "phag", "tox", "vir", "immun", "metabol", "ster", "cycl", "aden",
    "acet", "lact", "ferr", "sulf", "nitr", "carb", "calc", "sacchar", "hormon", "receptor",
    "transcript", "electr", "mechan", "photon", "kinas", "chelat", "enzym",
)  # fmt: skip
ADJ_SUFFIXES = (
    "al", "ic", "ar", "ous", "oid", "ergic", "genic", "tropic", "philic", "lytic", "static",
    "ary", "otic", "ative",
)  # fmt: skip
NOUN_SUFFIXES = (
    "in", "ase", "ine", "ide", "ol", "one", "osis", "ome", "yte", "ation", "ity", "ism", "ium",
    "gen", "blast", "some", "phore", "plasm", "omics", "itis", "ant", "ate",
)  # fmt: skip
_VOWELS = "aeiouy"


def _join(stem: str, tail: str) -> str:
    """stem + tail with a linking "o" before a consonant ("neur" + "genic" -> "neurogenic"),
    a final o or a dropped before a vowel ("hypo" + "ox" -> "hypox"; "gli" + "al" -> "glial")."""
    if tail[0] in _VOWELS:
        return (stem[:-1] if stem[-1] in "oa" else stem) + tail
    return stem + ("" if stem[-1] in _VOWELS else "o") + tail


def technical_terms(
    key: str,
    roots: tuple[str, ...],
    n_adjectives: int,
    n_nouns: int,
    banned: Iterable[str] = (),
    banned_substrings: Iterable[str] = (),
    banned_starts: tuple[str, ...] = (),
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(adjectives, nouns): distinct terms built from `roots` (70% of first roots) and the shared
    roots, in frequency-rank order; a pure function of `key` and the morphemes. No term is in
    `banned`, contains one of `banned_substrings` or starts with one of `banned_starts`."""
    rnd = random.Random(f"expertlm.synth.terms:{key}")
    banned = set(banned)
    subs = tuple(s.lower() for s in banned_substrings)
    seen: set[str] = set()

    def draw(suffixes: tuple[str, ...]) -> str:
        first = rnd.choice(roots) if rnd.random() < 0.7 else rnd.choice(SHARED_ROOTS)
        # two or three morphemes: root + suffix, prefix + root + suffix, root + root + suffix
        u = rnd.random()
        if u < 0.3:
            first = _join(first, rnd.choice(roots + SHARED_ROOTS))
        elif u < 0.65:
            first = _join(rnd.choice(PREFIXES), first)
        return _join(first, rnd.choice(suffixes))

    out: list[list[str]] = [[], []]
    for k, (n, suffixes) in enumerate(((n_adjectives, ADJ_SUFFIXES), (n_nouns, NOUN_SUFFIXES))):
        tries = 0
        while len(out[k]) < n:
            tries += 1
            if tries > 50 * n + 1000:
                raise ValueError(f"{key}: the morphemes give fewer than {n} distinct terms")
            w = draw(suffixes)
            if (
                w in seen
                or w in banned
                or len(w) > 18
                or w.startswith(banned_starts)
                or any(s in w for s in subs)
            ):
                continue
            seen.add(w)
            out[k].append(w)
    # Shorter words are the more frequent ones in real text (Zipf's law of abbreviation): the
    # rank order is by length, with some jitter.
    ranked = [sorted(ws, key=lambda w: len(w) + 4 * rnd.random()) for ws in out]
    return tuple(ranked[0]), tuple(ranked[1])
