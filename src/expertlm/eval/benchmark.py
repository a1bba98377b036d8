"""Benchmark formats: the BrainBench CSV as published, and the JSONL forms; prompt templates;
the `[[original, altered]]` markers; isolated-sentence items.

An item is N alternative texts (choices), one of them right, optionally after a shared context
(an exam question): JSONL `{"id", "section", "choices": [...], "answer": index or letter}`, with
`context` (or `question`), or the exam CSV `question,A,B,C,D,answer` (told from a BrainBench CSV
by its header). A BrainBench item is the N = 2 case: one abstract in two versions, the original
result (the right one) and an altered one, JSONL `{"id", "section", "original", "altered"}`.

The BrainBench CSV carries both versions twice: as full texts (`original_abstract`,
`incorrect_abstract`) and as one text with every change marked (`combined_abstract`,
`... [[increased, decreased]] ...`). The full-text columns are used by default (they reproduce
the published numbers), and every row's markers are checked against them: a marker can be
malformed (unbalanced brackets, no comma) or ambiguous (a comma inside an alternative:
`[[fast, strong, slow, weak]]` splits at three places), and the published columns may carry the
mistake of a naive split on ",". `load_benchmark` reports each such row by number; `repair=True`
re-derives both versions from the markers where that can be done unambiguously and drops the
rest.
"""

from __future__ import annotations

import difflib
import itertools
import re
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

from expertlm.errors import ExpertlmError, where
from expertlm.io import csv_rows, jsonl_rows, sha256_file

BRAINBENCH_COLUMNS = (
    "doi",
    "journal_section",
    "original_abstract",
    "incorrect_abstract",
    "combined_abstract",
)
JSONL_FIELDS = ("id", "section", "original", "altered")

# The prompt of the published evaluation (Luo et al. 2024), and no prompt at all.
TEMPLATES = {
    "none": "{abstract}",
    "neuro": "You are a neuroscientist with deep knowledge in neuroscience. "
    "Here is an abstract from a neuroscience publication: {abstract}",
}
# More alternatives than this in one row's ambiguous markers are not searched for a reading
# that matches the full-text columns (the row is reported as ambiguous and unresolved).
MAX_READINGS = 256


@dataclass(frozen=True)
class Item:
    """One benchmark item: the model should find `choices[answer]` the most likely text."""

    id: str
    section: str
    choices: tuple[str, ...]
    answer: int = 0
    context: str = ""  # shared text before every choice (an exam question); "" for BrainBench
    # The text with every change marked `[[original, altered]]` ("" when the file has none).
    combined: str = field(default="", compare=False)
    row: int = field(default=0, compare=False)  # 1-based CSV data row or JSONL line
    parent: str = field(default="", compare=False)  # isolated sentences: the abstract's id

    @classmethod
    def pair(cls, id: str, section: str, original: str, altered: str, combined: str = "",
             row: int = 0, parent: str = "") -> Item:  # fmt: skip
        """A BrainBench item: two versions, the original right."""
        return cls(id, section, (original, altered), 0, "", combined, row, parent)

    @property
    def is_pair(self) -> bool:
        """Two choices, the first right: an (original, altered) BrainBench item."""
        return len(self.choices) == 2 and self.answer == 0

    @property
    def original(self) -> str:
        return self._versions()[0]

    @property
    def altered(self) -> str:
        return self._versions()[1]

    def _versions(self) -> tuple[str, ...]:
        if not self.is_pair:
            raise ValueError(f"item {self.id}: {len(self.choices)} choices, answer "
                             f"{self.answer}: not an (original, altered) item")  # fmt: skip
        return self.choices


@dataclass(frozen=True)
class MarkerProblem:
    """A row whose markers are malformed, ambiguous, or disagree with its full-text columns."""

    row: int
    where: str  # file:line
    id: str
    kind: str  # "malformed" | "ambiguous" | "mismatch"
    detail: str
    action: str = "kept (full-text columns used)"

    def message(self) -> str:
        return f"{self.where}: row {self.row} ({self.id}): {self.kind} marker: {self.detail}; {self.action}"


@dataclass
class Benchmark:
    """A benchmark file read and checked: the items to score and what the check found."""

    path: Path
    items: list[Item]
    problems: list[MarkerProblem]
    rows: int  # rows read
    checked: int  # rows whose markers were checked
    repaired: int = 0  # rows re-derived from their markers (differing from the columns)
    dropped: int = 0  # rows dropped by --repair (markers unusable)
    repair: bool = False
    sha256: str = ""

    def report(self) -> dict:
        kinds = {
            k: sum(p.kind == k for p in self.problems)
            for k in ("malformed", "ambiguous", "mismatch")
        }
        return {
            "path": str(self.path),
            "sha256": self.sha256,
            "rows": self.rows,
            "items": len(self.items),
            "n_choices": {
                str(n): k for n, k in sorted(Counter(len(i.choices) for i in self.items).items())
            },
            "markers_checked": self.checked,
            "marker_problems": kinds,
            "repair": self.repair,
            "repaired": self.repaired,
            "dropped": self.dropped,
            "problem_rows": [
                {"row": p.row, "id": p.id, "kind": p.kind, "detail": p.detail, "action": p.action}
                for p in self.problems
            ],
        }


def read_benchmark(path: str | Path, repair: bool = False) -> list[Item]:
    """The items of a BrainBench CSV (`.csv`) or benchmark JSONL (`.jsonl`, `.jsonl.gz`)."""
    return load_benchmark(path, repair=repair).items


def load_benchmark(path: str | Path, repair: bool = False) -> Benchmark:
    """Read a benchmark, check every row's markers against its full texts, optionally repair."""
    path = Path(path)
    if not path.is_file():
        raise ExpertlmError(f"{path}: no such benchmark file")
    name = path.name.lower()
    if name.endswith(".csv"):
        rows = _read_csv(path)
    elif name.endswith((".jsonl", ".jsonl.gz")):
        rows = _read_jsonl(path)
    else:
        raise ExpertlmError(f"{path}: unknown benchmark format (expected .csv or .jsonl)")
    bench = Benchmark(
        path, [], [], rows=len(rows), checked=0, repair=repair, sha256=sha256_file(path)
    )
    ids: dict[str, int] = {}  # id -> row, texts -> row: a repeated item would count twice
    texts: dict[tuple[str, ...], int] = {}
    for item, src in rows:
        _check_nonempty(item, src)
        if item.combined.strip():
            bench.checked += 1
            item = _check_markers(item, src, bench, repair)
            if item is None:
                continue
        _check_distinct(item, src)
        for seen, k, what in ((ids, item.id, "id"), (texts, (item.context, *item.choices), "texts")):
            if k in seen:
                raise ExpertlmError(f"{src}: row {item.row} ({item.id}): the same {what} as row {seen[k]}")
            seen[k] = item.row
        bench.items.append(item)
    if not bench.items:
        raise ExpertlmError(
            f"{path}: benchmark has no items"
            + (f" ({bench.dropped} dropped by --repair)" if bench.dropped else "")
        )
    return bench


def _check_nonempty(item: Item, src: str) -> None:
    if not all(c.strip() for c in item.choices):
        what = "version" if item.is_pair else "choice"
        raise ExpertlmError(f"{src}: row {item.row} ({item.id}): item has an empty {what}")


def _check_distinct(item: Item, src: str) -> None:
    """Two identical choices cannot be told apart: the item would be a tie whatever the model."""
    first: dict[str, int] = {}  # choice -> its first index
    for k, c in enumerate(item.choices):
        if c in first:
            what = (
                "identical original and altered versions"
                if item.is_pair
                else f"choices {first[c]} and {k} are identical"
            )
            raise ExpertlmError(f"{src}: row {item.row} ({item.id}): {what}")
        first[c] = k


def _read_csv(path: Path) -> list[tuple[Item, str]]:
    """The BrainBench CSV, or an exam CSV (`question,A,B,C,D,answer`), told apart by its header."""
    reader = csv_rows(path, ())
    first = next(reader, None)
    header = list(first[1]) if first else []
    if "original_abstract" not in header and {"question", "answer", "A", "B"} <= set(header):
        return _read_exam_csv(path, itertools.chain([first], reader), header)
    rows = []
    for row_no, (line, row) in enumerate(
        csv_rows(path, ("original_abstract", "incorrect_abstract")), 1
    ):
        item = Item.pair(
            id=(row.get("doi") or "").strip() or f"row{row_no}",
            section=(row.get("journal_section") or "").strip(),
            original=row["original_abstract"] or "",
            altered=row["incorrect_abstract"] or "",
            combined=row.get("combined_abstract") or "",
            row=row_no,
        )
        rows.append((item, where(path, line)))
    return rows


def _read_jsonl(path: Path) -> list[tuple[Item, str]]:
    """Rows of either JSONL form: `original`/`altered` (BrainBench), or `choices` + `answer`."""
    rows = []
    for lineno, obj in jsonl_rows(path):
        src = where(path, lineno)
        item_id, section = str(obj.get("id") or f"line{lineno}"), str(obj.get("section") or "")
        if "choices" in obj:
            item = _choice_item(obj, src, item_id, section, lineno)
        else:
            missing = [k for k in ("original", "altered") if not isinstance(obj.get(k), str)]
            if missing:
                raise ExpertlmError(f"{src}: missing text field(s) {', '.join(missing)}")
            combined = obj.get("combined") if isinstance(obj.get("combined"), str) else ""
            item = Item.pair(item_id, section, obj["original"], obj["altered"], combined, lineno)
        rows.append((item, src))
    return rows


def _choice_item(obj: dict, src: str, item_id: str, section: str, lineno: int) -> Item:
    choices = obj["choices"]
    if not isinstance(choices, list) or not all(isinstance(c, str) for c in choices):
        raise ExpertlmError(f"{src}: field choices: expected a list of texts")
    if len(choices) < 2:
        raise ExpertlmError(
            f"{src}: field choices: {len(choices)} choice(s), an item needs two or more"
        )
    answer = _answer_index(obj.get("answer"), len(choices), src)
    context = obj.get("context", obj.get("question", ""))
    if not isinstance(context, str):
        raise ExpertlmError(f"{src}: field context (or question): expected a text")
    return Item(item_id, section, tuple(choices), answer, context, row=lineno)


LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _answer_index(answer, n: int, src: str) -> int:
    """The right choice's index from an index (JSON integer) or a letter ("B", "b", "(B)")."""
    if isinstance(answer, str) and len(letter := answer.strip().strip("()").upper()) == 1:
        answer = LETTERS.find(letter) if letter in LETTERS[:n] else answer
    # bool is an int in Python, and `true` is no index
    if not isinstance(answer, int) or isinstance(answer, bool) or not 0 <= answer < n:
        raise ExpertlmError(f"{src}: field answer: expected the index of the right choice, 0 to "
                            f"{n - 1}, or its letter, A to {LETTERS[n - 1]} (got {answer!r})")  # fmt: skip
    return answer


def _read_exam_csv(path: Path, rows, header: list[str]) -> list[tuple[Item, str]]:
    """`question,A,B,C,D,answer` (the common exam layout; optional id and section/subject
    columns): choices are the letter columns from A on; a row may leave the last ones empty."""
    letters = list(itertools.takewhile(lambda c: c in header, LETTERS))
    out = []
    for row_no, (line, row) in enumerate(rows, 1):
        src = where(path, line)
        choices = [row[c] or "" for c in letters]
        while len(choices) > 2 and not choices[-1].strip():
            choices.pop()
        item_id = (row.get("id") or "").strip() or f"row{row_no}"
        section = (row.get("section") or row.get("subject") or "").strip()
        answer = _answer_index(row["answer"] or "", len(choices), src)
        out.append((Item(item_id, section, tuple(choices), answer, row["question"] or "", row=row_no), src))
    return out


# --- markers ---------------------------------------------------------------------------------


class MarkerError(ValueError):
    """A malformed marker: unbalanced brackets, or no comma between the two versions."""


def parse_markers(combined: str) -> list[str | tuple[str, ...]]:
    """Split a marked text into literal strings and markers. A marker is the tuple of its possible
    readings `(original, altered)`: one for `[[a, b]]`, several when an alternative holds a comma.
    Raises `MarkerError` for unbalanced brackets or a marker without a comma."""
    parts: list[str | tuple[str, ...]] = []
    i = 0
    while True:
        a, b = combined.find("[[", i), combined.find("]]", i)
        if b != -1 and (a == -1 or b < a):
            raise MarkerError(f"']]' without '[[' at character {b}")
        if a == -1:
            parts.append(combined[i:])
            return parts
        close, nested = combined.find("]]", a + 2), combined.find("[[", a + 2)
        if close == -1 or (nested != -1 and nested < close):
            raise MarkerError(f"'[[' at character {a} is not closed by ']]'")
        content = combined[a + 2 : close]
        commas = [k for k, ch in enumerate(content) if ch == ","]
        if not commas:
            raise MarkerError(f"no comma between the two versions in '[[{content}]]'")
        parts.append(combined[i:a])
        parts.append(tuple((content[:k].strip(), content[k + 1 :].strip()) for k in commas))
        i = close + 2


def _readings(parts: list) -> list[tuple[str, str]]:
    """Every (original, altered) pair the markers allow (one per combination of splits)."""
    markers = [p for p in parts if isinstance(p, tuple)]
    out = []
    for choice in itertools.islice(itertools.product(*markers), MAX_READINGS):
        it = iter(choice)
        orig, alt = [], []
        for p in parts:
            if isinstance(p, tuple):
                o, a = next(it)
                orig.append(o)
                alt.append(a)
            else:
                orig.append(p)
                alt.append(p)
        out.append(("".join(orig), "".join(alt)))
    return out


def derive_versions(combined: str) -> tuple[str, str]:
    """Both versions of an unambiguously marked text (the published `extract_abstract_pair`,
    without its mistake on commas: an ambiguous marker raises `MarkerError`)."""
    parts = parse_markers(combined)
    if any(isinstance(p, tuple) and len(p) > 1 for p in parts):
        raise MarkerError("a marker has a comma inside an alternative")
    return _readings(parts)[0]


def _norm(text: str) -> str:
    return " ".join(text.split())


def _check_markers(item: Item, src: str, bench: Benchmark, repair: bool) -> Item | None:
    """Check one row; return the item to score (or None when --repair drops it)."""

    def problem(kind: str, detail: str, action: str) -> None:
        bench.problems.append(MarkerProblem(item.row, src, item.id, kind, detail, action))

    def unusable(kind: str, detail: str) -> Item | None:
        """Markers that cannot give the two versions: --repair drops the row, else the columns."""
        if repair:
            bench.dropped += 1
            problem(kind, detail, "dropped")
            return None
        problem(kind, detail, "kept (full-text columns used)")
        return item

    columns = (_norm(item.original), _norm(item.altered))
    try:
        parts = parse_markers(item.combined)
    except MarkerError as e:
        return unusable("malformed", str(e))
    if not any(isinstance(p, tuple) for p in parts):
        return unusable("malformed", "no [[original, altered]] marker in combined_abstract")
    readings = _readings(parts)
    ambiguous = [p for p in parts if isinstance(p, tuple) and len(p) > 1]
    if not ambiguous:
        orig, alt = readings[0]
        if (_norm(orig), _norm(alt)) == columns:
            return item
        if repair:
            bench.repaired += 1
            problem("mismatch", _first_difference(orig, alt, item), "repaired from the markers")
            return replace(item, choices=(orig, alt))
        problem("mismatch", _first_difference(orig, alt, item), "kept (full-text columns used)")
        return item
    shown = "; ".join("[[" + ", ".join(p[0]) + "]]" for p in ambiguous[:3])
    matching = [r for r in readings if (_norm(r[0]), _norm(r[1])) == columns]
    if len(matching) == 1:
        # The columns agree with exactly one reading: the row is right, the markers are not
        # self-sufficient. Report it, keep the columns.
        problem("ambiguous", f"comma inside an alternative in {shown} (the full-text columns pick one reading)",
                "kept (full-text columns agree with one reading)")  # fmt: skip
        return item
    return unusable("ambiguous", f"comma inside an alternative in {shown}; the full-text columns match "
                    f"{'none' if not matching else 'several'} of {len(readings)} readings")  # fmt: skip


def _first_difference(orig: str, alt: str, item: Item) -> str:
    for name, derived, col in (("original", orig, item.original), ("altered", alt, item.altered)):
        d, c = _norm(derived), _norm(col)
        if d != c:
            k = next(
                (i for i, (x, y) in enumerate(zip(d, c, strict=False)) if x != y),
                min(len(d), len(c)),
            )
            return f"the {name} version from the markers differs from the column at character {k} ({d[max(0, k - 20) : k + 20]!r} vs {c[max(0, k - 20) : k + 20]!r})"
    return "versions differ"


# --- prompt templates ------------------------------------------------------------------------


def resolve_template(template: str | None) -> str:
    """A template name (`none`, `neuro`) or any string with exactly one `{abstract}`."""
    if template is None:
        return TEMPLATES["none"]
    if template in TEMPLATES:
        return TEMPLATES[template]
    n = template.count("{abstract}")
    if n != 1:
        raise ExpertlmError(
            f"option --template: expected a name ({', '.join(TEMPLATES)}) or a string with exactly "
            f"one {{abstract}} (found {n})"
        )
    return template


def apply_template(template: str, abstract: str) -> tuple[str, int]:
    """The prompt text and the character offset where the abstract starts in it. The whole prompt
    is stripped of surrounding whitespace, as the published evaluation does."""
    before, after = template.split("{abstract}")
    text = before + abstract + after
    lead = len(text) - len(text.lstrip())
    return text.strip(), max(0, len(before) - lead)


# --- isolated sentences ----------------------------------------------------------------------

_ABBREV = re.compile(
    r"(?:\b(?:e\.g|i\.e|et al|vs|Fig|Figs|Ref|approx|ca|cf|resp|Dr|Mr|Mrs|Ms|Prof|No|Eq|Eqs|al|St|Inc|Ltd|Co|Jr|Sr)\.|\b[A-Z]\.)$"
)
_END = re.compile(r"[.!?][\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])")


def split_sentences(text: str) -> list[str]:
    """Sentences of an abstract: a break after . ! or ? followed by space and a capital or digit,
    except after common abbreviations (e.g., i.e., et al., Fig., single initials). A rule-based
    stand-in for NLTK's punkt, which the published analysis used (punkt needs a download)."""
    return [s for s in (text[a:b].strip() for a, b in sentence_spans(text)) if s]


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """`split_sentences` as (start, end) character spans of `text` (each span ends after the
    whitespace that follows its sentence, so the spans tile the text)."""
    out, start = [], 0
    for m in _END.finditer(text):
        head = text[start : m.start() + 1]
        if _ABBREV.search(head.rstrip("\"')]")):
            continue
        out.append((start, m.end()))
        start = m.end()
    if text[start:].strip():
        out.append((start, len(text)))
    return out


def diff_parts(original: str, altered: str) -> list[str | tuple[str, str]]:
    """Literal strings and `(original, altered)` changes from two versions (a word-level diff),
    for items that come without usable markers (JSONL, malformed or ambiguous markers)."""
    a, b = re.findall(r"\S+|\s+", original), re.findall(r"\S+|\s+", altered)
    out: list[str | tuple[str, str]] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if op == "equal":
            out.append("".join(a[i1:i2]))
        else:
            out.append(("".join(a[i1:i2]), "".join(b[j1:j2])))
    return out


def _marker_parts(item: Item) -> list[str | tuple[str, str]] | None:
    """The item as literal strings and (original, altered) changes from its markers, when they
    are well-formed, unambiguous and agree with the item's two versions; else None."""
    if not item.combined.strip():
        return None
    try:
        parts = parse_markers(item.combined)
    except MarkerError:
        return None
    markers = [p for p in parts if isinstance(p, tuple)]
    if not markers or any(len(p) > 1 for p in markers):
        return None
    orig, alt = _readings(parts)[0]
    if (_norm(orig), _norm(alt)) != (_norm(item.original), _norm(item.altered)):
        return None
    return [p[0] if isinstance(p, tuple) else p for p in parts]


def isolated_items(items: list[Item]) -> list[Item]:
    """Each sentence that carries a change becomes its own two-choice item (the published
    "isolated sentences" analysis), with `parent` set to the abstract's id. With usable markers,
    sentences are split on the text with every change hidden behind a placeholder (a change never
    splits); without, the two versions' sentences are paired in order when their counts agree,
    and otherwise located by a word-level diff."""
    out = []
    for item in items:
        pairs = _changed_sentences(item)
        for k, (orig, alt, marked) in enumerate(pairs, 1):
            out.append(
                Item.pair(f"{item.id}#s{k}", item.section, orig, alt, marked, item.row, item.id)
            )
    return out


def _changed_sentences(item: Item) -> list[tuple[str, str, str]]:
    parts = _marker_parts(item)
    if parts is None:
        so, sa = split_sentences(item.original), split_sentences(item.altered)
        if len(so) == len(sa):
            return [
                (" ".join(o.split()), " ".join(a.split()), _mark(o, a))
                for o, a in zip(so, sa, strict=True)
                if _norm(o) != _norm(a)
            ]
        parts = diff_parts(item.original, item.altered)
    changes = [p for p in parts if isinstance(p, tuple)]
    out = []
    for sentence in split_sentences(_hide(parts)):
        if "\x00" not in sentence:
            continue
        orig, alt, marked = (_unhide(sentence, changes, how) for how in ("orig", "alt", "marked"))
        orig, alt = " ".join(orig.split()), " ".join(alt.split())
        if orig != alt:
            out.append((orig, alt, marked))
    return out


def _mark(original: str, altered: str) -> str:
    parts = diff_parts(original, altered)
    return "".join(
        p if isinstance(p, str) else f"[[{p[0].strip()}, {p[1].strip()}]]" for p in parts
    )


def _unhide(sentence: str, changes: list[tuple[str, str]], how: str) -> str:
    def put(m: re.Match) -> str:
        o, a = changes[int(m.group(1))]
        return o if how == "orig" else a if how == "alt" else f"[[{o.strip()}, {a.strip()}]]"

    return re.sub(_PLACEHOLDER, put, sentence)


def _hide(parts: list[str | tuple[str, str]]) -> str:
    """The text with change k as "\\x00k\\x00", or "\\x00k\\x01." when both of its versions end
    a sentence with the same mark (so the splitter can still break after it)."""
    out, k = [], 0
    for p in parts:
        if isinstance(p, tuple):
            o, a = p[0].rstrip(), p[1].rstrip()
            end = o[-1] if o and a and o[-1] == a[-1] and o[-1] in ".!?" else ""
            out.append(f"\x00{k}\x01{end}" if end else f"\x00{k}\x00")
            k += 1
        else:
            out.append(p)
    return "".join(out)


_PLACEHOLDER = re.compile(r"\x00(\d+)(?:\x00|\x01[.!?])")
