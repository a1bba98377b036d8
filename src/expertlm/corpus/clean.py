"""Text cleaning: Unicode normalisation, control characters out, whitespace normalised.

Paragraph breaks (a blank line) are kept: models learn document structure from them.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator

# C0/C1 control characters except tab and newline, plus invisible format characters that
# PDF/XML conversions leave behind (soft hyphen, zero-width space, BOM, bidi overrides).
# Zero-width (non-)joiners are kept: they carry meaning in several scripts.
# Vertical tab and form feed separate words, so they become spaces; NEL is a line break.
_TABLE: dict[int, str | None] = {
    c: None for c in (*range(0x00, 0x09), *range(0x0E, 0x20), *range(0x7F, 0xA0))
}
_TABLE.update(
    {c: None for c in (0x00AD, 0x200B, 0x200E, 0x200F, 0x2060, 0xFEFF, *range(0x202A, 0x202F))}
)
_TABLE.update({0x0B: " ", 0x0C: " ", 0x85: "\n"})
_UNWANTED = re.compile("[" + "".join(re.escape(chr(c)) for c in _TABLE) + "]")
_MANY_NL = re.compile(r"\n{3,}")


def clean_text(text: str, unicode_form: str = "NFC") -> str:
    """Normalise `text`; the result is what is hashed, filtered and written to the corpus."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    # Characters are removed before normalising: removing one afterwards can leave a sequence
    # that is no longer normalised (e + soft hyphen + combining acute), so a second clean_text
    # would change the text. No normal form maps a character into _TABLE.
    if _UNWANTED.search(text):  # rare: translate() scans slowly even when nothing changes
        text = text.translate(_TABLE)
    text = unicodedata.normalize(unicode_form, text)
    # Each line's whitespace runs become one space and its ends are stripped: what
    # `[^\S\n]{2,}|[^\S\n ]` -> " " then ` ?\n ?` -> "\n" do, at C speed (str.split() splits at
    # the characters `\s` matches; the regexes took a third of `corpus build`'s time).
    text = "\n".join(" ".join(line.split()) for line in text.split("\n"))
    if "\n\n\n" in text:
        text = _MANY_NL.sub("\n\n", text)
    return text.strip()


_WORD = re.compile(r"\w+")
word_pattern = _WORD
# Characters case-folded and split into words at once by `casefold_chunks`' readers.
_CHUNK_CHARS = 1 << 20


def words(text: str) -> list[str]:
    """Case-folded word tokens, punctuation dropped: the unit of shingles and n-gram overlap."""
    return _WORD.findall(text.casefold())


def iter_words(text: str) -> Iterator[str]:
    """`words`, one at a time (memory does not grow with the document)."""
    return (m.group() for m in _WORD.finditer(text.casefold()))


def casefold_chunks(text: str) -> Iterator[str]:
    """The case-folded `text` in pieces of about `_CHUNK_CHARS`, each cut just after a space or
    newline, so that no word spans two pieces (case folding is per character): `words` of the
    pieces, concatenated, are `words(text)`, in bounded memory."""
    start = 0
    while start < len(text):
        end = start + _CHUNK_CHARS
        if end < len(text):
            cut = max(text.rfind(" ", start, end), text.rfind("\n", start, end))
            if cut < 0:  # no break in the whole piece: the next one, wherever it is
                found = [i for i in (text.find(" ", end), text.find("\n", end)) if i >= 0]
                cut = min(found) if found else len(text) - 1
            end = cut + 1
        yield text[start:end].casefold()
        start = end
