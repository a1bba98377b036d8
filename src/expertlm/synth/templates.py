"""The sentence templates of the synthetic fields: a small language, compiled once, rendered
with the writer's random draws.

    {name}      a slot filled from the abstract's values (target, outcome, statistic, ...)
    {@pool}     a word or phrase drawn from one of the field's pools (`Pools`)
    <a|b|c>     one of the alternatives, uniformly
    [text]      the text with probability 1/2

Alternatives and optional parts may hold slots, pools and each other. Spaces are collapsed after
rendering, so an optional word is written `[{@adv} ]` or `[ {@adv}]` and a left-out one leaves
no double space; "a" is made "an" before a vowel.

Pools are Zipf-weighted: the k-th entry (from 0) of a pool has weight 1/(k + 1), as word
frequencies in real text roughly do, so every pool's first words are common and its last rare;
a pool named in `flat` is drawn uniformly.
"""

from __future__ import annotations

import re
from bisect import bisect
from collections.abc import Callable, Mapping, Sequence
from functools import cache
from itertools import accumulate

Part = str | tuple  # a literal, ("slot", name), ("pool", name), ("alt", [seq..]), ("opt", seq)

_SPACES = re.compile(r" {2,}")
_SPACE_PUNCT = re.compile(r" +([.,;:)])")
_ARTICLE = re.compile(r"\b([Aa])n? (?=([A-Za-z]))")
# "an" before these vowel letters, "a" before a "u" that sounds like "you" (a unique, a uniform)
_YOU = ("uni", "use", "usu", "ure", "uro", "utili")


def _compile(text: str, i: int = 0, stop: str = "") -> tuple[list, int]:
    """Parse `text` from `i` up to one of the characters in `stop`; returns (parts, index)."""
    seq: list = []
    buf: list[str] = []

    def flush() -> None:
        if buf:
            seq.append("".join(buf))
            buf.clear()

    while i < len(text):
        c = text[i]
        if c in stop:
            break
        if c == "{":
            j = text.index("}", i)
            name = text[i + 1 : j]
            flush()
            seq.append(("pool", name[1:]) if name.startswith("@") else ("slot", name))
            i = j + 1
        elif c == "<":
            flush()
            options: list = []
            i += 1
            while True:
                part, i = _compile(text, i, "|>")
                options.append(part)
                if text[i] == ">":
                    break
                i += 1
            seq.append(("alt", options))
            i += 1
        elif c == "[":
            flush()
            part, i = _compile(text, i + 1, "]")
            seq.append(("opt", part))
            i += 1
        else:
            buf.append(c)
            i += 1
    flush()
    return seq, i


@cache
def compile_template(text: str) -> tuple:
    """The parts of a template (cached: every template is compiled once per process)."""
    for open_, close in ("{}", "<>", "[]"):
        if text.count(open_) != text.count(close):
            raise ValueError(f"unbalanced {open_}{close} in template {text!r}")
    seq, i = _compile(text)
    if i != len(text):
        raise ValueError(f"unexpected {text[i]!r} at {i} in template {text!r}")
    return tuple(seq)


class Pools:
    """Named Zipf-weighted pools of words or phrases; `draw(name, rand)` picks one."""

    def __init__(self, pools: Mapping[str, Sequence[str]], flat: frozenset[str] = frozenset()) -> None:
        self.items = {name: tuple(words) for name, words in pools.items()}
        self.cum = {
            name: list(accumulate((1.0 if name in flat else 1.0 / (k + 1)) for k in range(len(words))))
            for name, words in self.items.items()
        }

    def draw(self, name: str, rand: Callable[[], float]) -> str:
        words, cum = self.items[name], self.cum[name]
        return words[min(bisect(cum, rand() * cum[-1]), len(words) - 1)]


def render(text: str, slots: Mapping[str, object], pools: Pools, rand: Callable[[], float]) -> str:
    """One rendering of template `text`, every choice drawn from `rand`; the first letter is
    capitalised (a sentence)."""
    out: list[str] = []
    _render(compile_template(text), slots, pools, rand, out)
    s = _SPACE_PUNCT.sub(r"\1", _SPACES.sub(" ", "".join(out))).strip()
    s = _ARTICLE.sub(_article, s)
    return s[:1].upper() + s[1:]


def _render(seq, slots, pools: Pools, rand, out: list[str]) -> None:
    for part in seq:
        if isinstance(part, str):
            out.append(part)
            continue
        kind, value = part
        if kind == "slot":
            out.append(str(slots[value]))
        elif kind == "pool":
            word = pools.draw(value, rand)
            if "{" in word or "<" in word or "[" in word:  # a pool of phrases with slots
                _render(compile_template(word), slots, pools, rand, out)
            else:
                out.append(word)
        elif kind == "alt":
            _render(value[int(rand() * len(value))], slots, pools, rand, out)
        elif rand() < 0.5:  # opt
            _render(value, slots, pools, rand, out)


def _article(m: re.Match) -> str:
    a, nxt = m[1], m.string[m.end() :]
    an = nxt[:1].lower() in "aeio" or (nxt[:1].lower() == "u" and not nxt.lower().startswith(_YOU))
    return f"{a}n " if an else f"{a} "
