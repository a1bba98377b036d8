"""Finding an abstract's result sentences and reversing one finding: the rule-based generator of
`bench make` (`make.py` checks and writes the items; `lexicon.py` holds the words and cues).

1. **Sentences and their roles.** The abstract is split into sentences (`benchmark.sentence_spans`,
   the splitter of the isolated-sentence analysis), and each gets a role from its position and
   its cues (`lexicon.RESULT_CUES` "we found", "was associated with", statistics;
   `METHOD_CUES` "we recorded", "to test"; `BACKGROUND_CUES` "is unclear", "whether",
   hypotheses; `CONCLUSION_CUES` "we conclude", "these results suggest"): the first sentence
   is background; a hypothesis or open question is background whatever else it says; a result
   cue makes a result; a sentence that opens with "we" and a method verb (and claims nothing)
   is a method; the first 30% of the abstract without a cue is background; the last sentence
   without a result cue is a conclusion; the rest are results.
2. **The finding.** The first direction word (`lexicon.PARTNERS`) of the first result sentence
   that has one, not negated ("did not increase"), not part of a compound, is the finding to
   reverse. Its key is the phrase it is about: the content words after it up to a preposition,
   conjunction or punctuation ("reduced *reward seeking* (p ..."), or when there are none, the
   words before it back to the clause's start ("*Locomotor activity* was reduced after ...").
3. **Consistency.** Every other direction word in a result or conclusion sentence whose key
   shares words with the finding's key (most of the shorter key, at least one word) states the
   same finding again ("... smaller than controls", "we conclude that X decreases locomotor
   activity") and is reversed with it, so the altered abstract does not contradict itself; a
   direction word about anything else is left alone: one finding per item, never two.
   Methods and background sentences are never touched.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from expertlm.eval.benchmark import sentence_spans
from expertlm.eval.lexicon import (
    BACKGROUND_CUES,
    CONCLUSION_CUES,
    DIRECTION,
    METHOD_CUES,
    MORE_LESS_SKIP,
    NEGATIONS,
    PARTNERS,
    POSITIVE_NOUNS,
    RESULT_CUES,
    VERB_BEFORE,
)

WORD = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:['’-][A-Za-z0-9]+)*")
_LOWER_WORD = re.compile(r"[a-z][a-z0-9]*(?:['’-][a-z0-9]+)*")  # WORD on lower-cased text
_LEXICON = frozenset(PARTNERS)
_PUNCT = re.compile(r"[,;:()\[\]]")  # ends the phrase a direction word is about
HYPOTHESIS = re.compile(
    r"\bwhether\b|\bhypothesi[sz]|\bwe asked\b|\bwe (?:sought|aimed)\b|\b(?:our|the) aims?\b|"
    r"\bpredict(?:s|ed)?\b|\bwould\b|\bif\b|\b(?:unclear|unknown|not known|little is known)\b|"
    # earlier work, whatever it found, is background
    r"\b(?:recent|previous|prior|earlier|past) (?:work|studies|reports|research|evidence|findings)\b|"
    r"\bpreviously\b|\b(?:has|have) (?:been )?(?:shown|suggested|reported|demonstrated|proposed|"
    r"implicated|linked)\b|\b(?:is|are) (?:well |widely |generally )?(?:known|thought|believed)\b", re.I)  # fmt: skip
METHOD_OPENING = re.compile(
    r"^\W*(?:(?:here|first|next|then|to test this|to this end|in addition|finally),?\s+)?we\s+"
    r"(?:\w+ly\s+)?(?:used|use|applied|apply|measured|recorded|performed|combined|developed|"
    r"trained|conducted|analy[sz]ed|examined|investigated|tested|assessed|imaged|sequenced|"
    r"generated|designed|employed|implemented|studied|quantified|monitored|injected|collected|"
    r"recruited|compared|manipulated|expressed|delivered|targeted|silenced|scored|created|built|"
    r"obtained|characteri[sz]ed|screened|mapped|modeled|modelled|simulated)\b", re.I)  # fmt: skip
CLAIMED = re.compile(r"\b(?:found|find|showed|shows|show|revealed|observed|demonstrated|identified)\b", re.I)
# words that end the phrase a direction word is about (after it) or that begin its clause (before)
STOP_AFTER = frozenset(
    ["in", "of", "after", "by", "at", "during", "than", "for", "with", "when", "while", "whereas", "and", "but", "or", "compared", "relative", "following", "across", "between", "within", "from", "to", "on", "upon", "under", "over", "among", "via", "through", "that", "which", "as", "into", "onto", "because", "since", "despite", "whether", "versus", "vs", "only", "not", "also"]
) - {"of"}
STOP_BEFORE = frozenset(
    ["that", "which", "whereas", "while", "but", "when", "we", "found", "showed", "revealed", "demonstrated", "observed", "because", "since", "although", "though", "whether", "and", "or", "thereby", "thus", "hence"]
)
SKIP = frozenset(
    ["the", "a", "an", "its", "their", "his", "her", "this", "these", "those", "both", "all", "each", "either", "any", "some", "such", "our", "was", "were", "is", "are", "be", "been", "being", "has", "have", "had", "became", "become", "becomes", "remained", "remains", "remain", "did", "does", "do", "it", "they", "there", "levels", "level"]
)
STOPWORDS = SKIP | STOP_AFTER | STOP_BEFORE | frozenset(
    ["not", "no", "nor", "can", "could", "may", "might", "will", "would", "should", "must", "also", "more", "less", "than", "then"]
)


@dataclass(frozen=True)
class Sentence:
    start: int
    end: int
    role: str  # background | method | result | conclusion


@dataclass(frozen=True)
class Change:
    """One reversed word (with its article when a/an must change) at text[start:end]."""

    start: int
    end: int
    original: str
    altered: str
    sentence: int
    role: str
    direction: int  # of the original word: +1 (more), -1 (less)


@dataclass
class Alteration:
    """The changes of one item (the first is the finding's own place) and the finding's key."""

    changes: list[Change]
    key: tuple[str, ...]
    sentences: dict[int, Sentence] = field(default_factory=dict)  # those given a role, by index

    def apply(self, text: str) -> str:
        out, at = [], 0
        for c in self.changes:
            out += [text[at : c.start], c.altered]
            at = c.end
        return "".join(out) + text[at:]

    def combined(self, text: str) -> str:
        """The text with each change marked `[[original, altered]]` (the BrainBench column)."""
        out, at = [], 0
        for c in self.changes:
            out += [text[at : c.start], f"[[{c.original}, {c.altered}]]"]
            at = c.end
        return "".join(out) + text[at:]


def sentence_roles(text: str, spans: list[tuple[int, int]] | None = None) -> list[Sentence]:
    """Every sentence of `text` with its role."""
    spans = sentence_spans(text) if spans is None else spans
    n = len(spans)
    return [Sentence(a, b, _role(text[a:b], i, n)) for i, (a, b) in enumerate(spans)]


def _role(s: str, i: int, n: int) -> str:
    if i == 0 or HYPOTHESIS.search(s):
        return "background"
    result = RESULT_CUES.search(s) is not None
    if CONCLUSION_CUES.search(s) and (i >= n / 2 or i == n - 1):
        return "conclusion"
    if METHOD_OPENING.search(s) and not CLAIMED.search(s):
        return "method"
    if result:
        return "result"
    if BACKGROUND_CUES.search(s) or i < 0.3 * n:
        return "background"
    if METHOD_CUES.search(s):
        return "method"
    return "conclusion" if i == n - 1 else "result"


@dataclass(frozen=True)
class _Candidate:
    start: int  # in the abstract
    end: int
    word: str
    partners: tuple[str, ...]
    sentence: int
    key: frozenset[str]
    article: tuple[int, str] | None  # (start of a/an before the word, the article) to fix


def candidates(text: str, sent: Sentence, k: int) -> list[_Candidate]:
    """The direction words of one sentence that can be reversed, with their keys."""
    s = text[sent.start : sent.end]
    words = list(WORD.finditer(s))
    out = []
    for j, m in enumerate(words):
        w = m.group()
        lw = w.lower()
        partners = PARTNERS.get(lw)
        if partners is None or (len(w) > 1 and w.isupper()):
            continue
        a, b = m.span()
        if (a > 0 and s[a - 1] in "/-") or (b < len(s) and s[b] in "/-"):
            continue
        before = [x.group().lower() for x in words[max(0, j - 3) : j]]
        if any(x in NEGATIONS or x.endswith("n't") for x in before):
            continue
        prev = before[-1] if before else ""
        if lw == "lower":
            partners = ["raise"] if prev in VERB_BEFORE else ["higher"]
        elif lw in ("more", "less") and MORE_LESS_SKIP.search(s[max(0, a - 6) : b + 8]) or lw in ("positive", "negative") and not POSITIVE_NOUNS.match(s, b):
            continue
        article = None
        if prev in ("a", "an"):
            art = words[j - 1]
            article = (sent.start + art.start(), art.group())
        key = frozenset(_key(words, j, s))
        out.append(_Candidate(sent.start + a, sent.start + b, w, tuple(partners), k, key, article))
    return out


def _stem(w: str) -> str:
    w = w.lower()
    return w[:-1] if len(w) > 4 and w.endswith("s") and not w.endswith("ss") else w


def _content(w: str) -> bool:
    return len(w) >= 3 and w.lower() not in STOPWORDS and w.lower() not in DIRECTION


def _key(words: list[re.Match], j: int, s: str) -> list[str]:
    after, at = [], words[j].end()
    for m in words[j + 1 :]:
        if _PUNCT.search(s, at, m.start()) or m.group().lower() in STOP_AFTER:
            break
        at = m.end()
        w = m.group()
        if w.lower() in DIRECTION or (not after and (w.lower() in SKIP or w.lower().endswith("ly"))):
            continue
        if _content(w):
            after.append(_stem(w))
        if len(after) == 4:
            break
    if after:
        return after
    before, at = [], words[j].start()
    for m in reversed(words[:j]):
        if _PUNCT.search(s, m.end(), at) or m.group().lower() in STOP_BEFORE:
            break
        at = m.start()
        if _content(m.group()) and not m.group().lower().endswith("ly"):
            before.append(_stem(m.group()))
        if len(before) == 4:
            break
    return before


def _same_finding(a: frozenset[str], b: frozenset[str]) -> bool:
    if not a or not b:
        return False
    shared = len(a & b)
    return shared >= max(1, (min(len(a), len(b)) + 1) // 2)


Choose = Callable[[_Candidate, str], str]  # (candidate, text) -> the partner to use


def find_alteration(text: str, choose: Choose | None = None, max_places: int = 5,
                    spans: list[tuple[int, int]] | None = None) -> Alteration | str:  # fmt: skip
    """The changes reversing one finding of `text`, or the reason there is none
    (`no_direction_word`: no word of the lexicon at all; `no_reversible_result`: none in a
    result sentence that can be reversed; `too_many_places`). `spans`: the sentences, if
    already split. Only sentences holding a direction word get a role (the rest cannot change)."""
    spans = sentence_spans(text) if spans is None else spans
    low = text.lower()
    hot = [k for k, (a, b) in enumerate(spans) if not _LEXICON.isdisjoint(_LOWER_WORD.findall(low, a, b))]
    if not hot:
        return "no_direction_word"
    n = len(spans)
    sentences = {k: Sentence(*spans[k], _role(text[slice(*spans[k])], k, n)) for k in hot}
    cands = {k: candidates(text, s, k) for k, s in sentences.items() if s.role in ("result", "conclusion")}
    primary = next((c for k in sorted(cands) if sentences[k].role == "result" for c in cands[k]), None)
    if primary is None:
        return "no_reversible_result"
    same = [primary] + [c for k in sorted(cands) for c in cands[k]
                        if c is not primary and _same_finding(primary.key, c.key)]  # fmt: skip
    if len(same) > max_places:
        return "too_many_places"
    choose = choose or (lambda c, _text: c.partners[0])
    changes = [_change(c, choose(c, text), text, sentences[c.sentence].role) for c in same]
    changes.sort(key=lambda c: c.start)
    return Alteration(changes, tuple(sorted(primary.key)), sentences)


def _change(c: _Candidate, partner: str, text: str, role: str) -> Change:
    altered = _case_like(c.word, partner)
    start = c.start
    original = c.word
    if c.article is not None:
        a_start, art = c.article
        want = "an" if altered[0].lower() in "aeiou" else "a"
        if art.lower() != want:
            start, original = a_start, text[a_start : c.end]
            altered = _case_like(art, want) + text[a_start + len(art) : c.start] + altered
    return Change(start, c.end, original, altered, c.sentence, role, DIRECTION[c.word.lower()])


def _case_like(model: str, word: str) -> str:
    return word[0].upper() + word[1:] if model[0].isupper() else word


def from_edits(text: str, edits: list[tuple[str, str]]) -> Alteration | str:
    """An alteration from proposed edits (each: a phrase copied from `text` and its
    replacement), or why they cannot be applied: `llm_no_change` (no edit, or one that changes
    nothing), `llm_bad_edit` (a phrase not in the text, found more than once, across sentences,
    or overlapping another). Whether the edits are in result sentences is `make.check_item`'s."""
    sentences = sentence_roles(text)
    if not edits or any(o == a for o, a in edits):
        return "llm_no_change"
    changes = []
    for orig, alt in edits:
        k = text.find(orig) if orig.strip() else -1
        if k < 0 or text.find(orig, k + 1) >= 0:
            return "llm_bad_edit"
        s = next(i for i, x in enumerate(sentences) if x.start <= k < x.end)
        if k + len(orig) > sentences[s].end:
            return "llm_bad_edit"
        word = orig.strip().lower()
        changes.append(Change(k, k + len(orig), orig, alt, s, sentences[s].role, DIRECTION.get(word, 0)))
    changes.sort(key=lambda c: c.start)
    if any(b.start < a.end for a, b in zip(changes, changes[1:], strict=False)):
        return "llm_bad_edit"
    return Alteration(changes, (), dict(enumerate(sentences)))
