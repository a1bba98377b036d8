"""`expertlm bench make`: a forward-looking benchmark in the BrainBench format from a field's
newest papers, or (`--pairs`) the same alterations as preference pairs from its older ones.

Each document published after the cutoff (`--after YEAR`) whose abstract reports a result that
can be reversed becomes one item: the original abstract and a version with one finding reversed
(`alter.py`: the result sentences, the direction word, the same finding restated elsewhere; or,
with `--llm`, a local instruction-tuned model's proposal, `propose.py`). Every item is checked,
and every document left out is counted once, under the first reason that removed it:

    empty, no_year, before_cutoff (after_cutoff with --pairs), duplicate, too_short,
    no_direction_word, no_reversible_result, too_many_places, llm_* (the proposal unusable),
    markers_do_not_reproduce, outside_marked_spans, altered_outside_results,
    claim_verb_changed, unequal_tokens (with --equal-tokens), contaminated (--decontam)

so that `input = items + sum(rejected)`. Outputs: `benchmark.csv` (the BrainBench columns:
doi, journal_section when the documents have a section, original_abstract, incorrect_abstract,
combined_abstract), `benchmark.jsonl` (the same items with each change, its role and direction,
and the finding's key), `make.json` (inputs with hashes, options, counts, rejections by reason,
the length differences of the two versions, the lexicon); with `--pairs`, `pairs.jsonl`
(`{"prompt", "chosen", "rejected"}`, TRL's preference format) instead of the two benchmark files.
"""

from __future__ import annotations

import csv
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from expertlm.config import BenchMakeConfig
from expertlm.console import count_progress, info
from expertlm.errors import ExpertlmError
from expertlm.eval.alter import WORD, Alteration, find_alteration
from expertlm.eval.benchmark import MarkerError, derive_versions, sentence_spans, split_sentences
from expertlm.eval.lexicon import CLAIM_VERBS, lexicon_report
from expertlm.io import (
    JsonlWriter,
    atomic_dir,
    check_output_dir,
    jsonl_rows,
    provenance,
    sha256_file,
    write_json,
)

REASONS = ("empty", "no_year", "before_cutoff", "after_cutoff", "duplicate", "too_short",
           "no_direction_word", "no_reversible_result", "too_many_places", "llm_no_json",
           "llm_bad_edit", "llm_no_change", "markers_do_not_reproduce", "outside_marked_spans",
           "altered_outside_results", "claim_verb_changed", "unequal_tokens", "contaminated")  # fmt: skip
SECTION_FIELDS = ("journal_section", "section", "field", "subjects")
CSV_COLUMNS = ("doi", "journal_section", "original_abstract", "incorrect_abstract", "combined_abstract")


def bench_make(sources: list[str | Path], out: str | Path, *, tokenizers: list | tuple = (),
               decontam: list | tuple = (), llm: str | Path | None = None, overwrite: bool = False,
               show_progress: bool = True, **options) -> dict:  # fmt: skip
    """Make a benchmark (or preference pairs) from the documents of `sources` (corpus folders or
    .jsonl[.gz] files of documents); write it to the folder `out`; return make.json's content."""
    cfg = BenchMakeConfig.from_options(options)
    out = Path(out)
    check_output_dir(out, overwrite, inputs=[*sources, *decontam, *([llm] if llm else [])])
    if not sources:
        raise ExpertlmError("bench make: no documents given (a corpus folder or a .jsonl file)")
    from expertlm.tokenizer import load_tokenizer

    toks = {str(t): load_tokenizer(t) for t in tokenizers}
    if cfg.equal_tokens and not toks:
        raise ExpertlmError("option --equal-tokens: give the tokenizers to count with (--tokenizer T)")
    proposer = None
    if llm is not None:
        from expertlm.eval.propose import Proposer

        proposer = Proposer.load(llm, max_new_tokens=cfg.llm_max_new_tokens)
    t0 = time.time()
    rejected: Counter = Counter()
    made: list[dict] = []
    seen: set[str] = set()
    counter = TokenCounter(toks)
    n_input = 0
    with count_progress(show_progress) as bar:
        task = bar.add_task("bench make", total=None)
        for doc in iter_documents(sources, cfg):
            n_input += 1
            if n_input % 256 == 0:
                bar.advance(task, 256)
            item = make_item(doc, cfg, seen, counter, proposer)
            if isinstance(item, str):
                rejected[item] += 1
            else:
                made.append(item)
            if cfg.max_items and len(made) >= cfg.max_items:
                break
    leaked = _decontaminate(made, decontam, cfg.decontam_ngram) if decontam else set()
    if leaked:
        rejected["contaminated"] += len(leaked)
    made = [m for k, m in enumerate(made) if k not in leaked]
    wall = time.time() - t0
    report = {
        "format": "expertlm.bench_make/1",
        "mode": "pairs" if cfg.pairs else "benchmark",
        "inputs": [_describe(s) for s in sources],
        "decontam": [_describe(d) for d in decontam], "tokenizers": list(toks),
        "generator": {"llm": str(llm), **proposer.report()} if proposer else {"rules": lexicon_report()},
        "config": cfg.model_dump(mode="json"),
        "counts": {"input": n_input, "items": len(made),
                   "rejected": {r: rejected[r] for r in REASONS if rejected[r]}},
        "yield": len(made) / max(1, n_input - rejected["before_cutoff"] - rejected["after_cutoff"]
                                 - rejected["no_year"]),
        "length_difference": length_differences(made, list(toks)),
        "places_changed": dict(sorted(Counter(len(m["changes"]) for m in made).items())),
        "wall_s": wall, "docs_per_s": n_input / wall if wall > 0 else None,
        "provenance": provenance(),
    }  # fmt: skip
    if not made:
        raise ExpertlmError(f"bench make: no item made from {n_input} documents "
                            f"(rejected: {dict(rejected) or 'none'}); nothing written")  # fmt: skip
    with atomic_dir(out, overwrite=overwrite) as tmp:
        if cfg.pairs:
            with JsonlWriter(tmp / "pairs.jsonl") as w:
                for m in made:
                    w.write(preference_pair(m))
        else:
            write_benchmark(tmp, made)
        report["outputs"] = {f.name: sha256_file(f) for f in sorted(tmp.iterdir())}
        write_json(tmp / "make.json", report)
    rej = ", ".join(f"{k} {v}" for k, v in report["counts"]["rejected"].items())
    info(f"bench make: {len(made)} {'pairs' if cfg.pairs else 'items'} from {n_input} documents "
         f"({rej or 'none rejected'}) at {report['docs_per_s'] or 0:,.0f} docs/s -> {out}")  # fmt: skip
    return report


# --- documents -------------------------------------------------------------------------------


def iter_documents(sources: list[str | Path], cfg: BenchMakeConfig) -> Iterator[dict]:
    """`{"id", "year", "section", "text", "doi"}` of each document of each source, in order."""
    from expertlm.corpus.sources import parse_year

    for src in sources:
        for where, obj in _records(Path(src)):
            field = cfg.text_field or ("abstract" if isinstance(obj.get("abstract"), str) and obj["abstract"].strip() else "text")
            text = obj.get(field)
            if text is not None and not isinstance(text, str):
                raise ExpertlmError(f"{where}: field {field}: expected a text")
            section = obj.get(cfg.section_field) if cfg.section_field else next(
                (obj[f] for f in SECTION_FIELDS if obj.get(f)), "")  # fmt: skip
            if isinstance(section, list):
                section = section[0] if section else ""
            yield {"id": str(obj.get(cfg.id_field) or where), "year": parse_year(obj.get(cfg.year_field)),
                   "section": str(section or ""), "text": text or "", "doi": str(obj.get("doi") or "")}  # fmt: skip


def _records(path: Path) -> Iterator[tuple[str, dict]]:
    from expertlm.corpus.docs import SPLITS, split_file

    if path.is_dir():
        files = [split_file(path, s) for s in SPLITS if (path / f"{s}.jsonl.gz").is_file()]
        if not files:
            split_file(path, "train")  # the error naming what a corpus folder holds
    elif path.name.endswith((".jsonl", ".jsonl.gz")):
        files = [path]
    elif not path.exists():
        raise ExpertlmError(f"{path}: no such file or folder")
    else:
        raise ExpertlmError(f"{path}: expected a corpus folder or a .jsonl[.gz] file of documents")
    for f in files:
        for lineno, obj in jsonl_rows(f):
            yield f"{f}:{lineno}", obj


def abstract_of(text: str, drop_title: bool) -> str:
    """The abstract: the text stripped, without a one-line title paragraph before it."""
    text = text.strip()
    head, sep, rest = text.partition("\n\n")
    if drop_title and sep and rest.strip() and "\n" not in head and len(head) <= 300 and len(split_sentences(head)) == 1:
        return rest.strip()
    return text


# --- items -----------------------------------------------------------------------------------


def make_item(doc: dict, cfg: BenchMakeConfig, seen: set[str], counter: TokenCounter,
              proposer=None) -> dict | str:  # fmt: skip
    """One item from one document, or the reason it gives none."""
    text = abstract_of(doc["text"], cfg.drop_title)
    if not text:
        return "empty"
    if doc["year"] is None:
        return "no_year"
    if not cfg.pairs and doc["year"] <= cfg.after:
        return "before_cutoff"
    if cfg.pairs and doc["year"] > cfg.after:
        return "after_cutoff"
    norm = " ".join(text.split()).lower()
    if norm in seen:
        return "duplicate"
    seen.add(norm)
    spans = sentence_spans(text)
    if len(spans) < cfg.min_sentences:
        return "too_short"
    if proposer is not None:
        from expertlm.eval.alter import from_edits

        edits = proposer.propose(text)
        alt = edits if isinstance(edits, str) else from_edits(text, edits)
    else:
        alt = find_alteration(text, counter.chooser(cfg.equal_tokens), cfg.max_places, spans)
    if isinstance(alt, str):
        return alt
    altered, combined = alt.apply(text), alt.combined(text)
    problem = check_item(text, altered, combined, alt)
    if problem:
        return problem
    tokens = counter.counts(text, altered)
    if cfg.equal_tokens and any(a != b for a, b in tokens.values()):
        return "unequal_tokens"
    return {
        "id": doc["id"], "doi": doc["doi"] or doc["id"], "section": doc["section"], "year": doc["year"],
        "original": text, "altered": altered, "combined": combined, "finding": list(alt.key),
        "changes": [{"start": c.start, "end": c.end, "original": c.original, "altered": c.altered,
                     "sentence": c.sentence, "role": c.role, "direction": c.direction}
                    for c in alt.changes],
        "generator": "llm" if proposer is not None else "rules", "tokens": tokens,
    }  # fmt: skip


def check_item(original: str, altered: str, combined: str, alt: Alteration) -> str | None:
    """The first check the item fails (None: it passes them all)."""
    try:
        if derive_versions(combined) != (original, altered):
            return "markers_do_not_reproduce"
    except MarkerError:
        return "markers_do_not_reproduce"
    # outside the marked spans, the two versions are the same characters
    at_o = at_a = 0
    for c in alt.changes:
        if c.start < at_o or original[c.start : c.end] != c.original:
            return "outside_marked_spans"
        gap = c.start - at_o
        if original[at_o : c.start] != altered[at_a : at_a + gap]:
            return "outside_marked_spans"
        at_o, at_a = c.end, at_a + gap + len(c.altered)
        if altered[at_a - len(c.altered) : at_a] != c.altered or c.original == c.altered:
            return "outside_marked_spans"
    if original[at_o:] != altered[at_a:]:
        return "outside_marked_spans"
    if any(c.role not in ("result", "conclusion") for c in alt.changes):
        return "altered_outside_results"
    # (the rest being identical, a claim verb is kept when every change keeps its claim verbs)
    if any(_claims(c.original) != _claims(c.altered) for c in alt.changes):
        return "claim_verb_changed"
    return None


def _claims(text: str) -> list[str]:
    return sorted(w for w in (m.group().lower() for m in WORD.finditer(text)) if w in CLAIM_VERBS)


class TokenCounter:
    """Token counts of both versions under each tokenizer given, and the partner choice that
    keeps them equal (`--equal-tokens`: the first partner with as many tokens as the word)."""

    def __init__(self, tokenizers: dict) -> None:
        self.tokenizers = tokenizers
        self._memo: dict[tuple[str, str], int] = {}

    def _n(self, name: str, text: str) -> int:
        k = (name, text)
        if k not in self._memo:
            self._memo[k] = len(self.tokenizers[name](text, add_special_tokens=False)["input_ids"])
        return self._memo[k]

    def counts(self, original: str, altered: str) -> dict[str, list[int]]:
        return {name: [len(tok(t, add_special_tokens=False)["input_ids"]) for t in (original, altered)]
                for name, tok in self.tokenizers.items()}  # fmt: skip

    def chooser(self, equal: bool):
        if not equal or not self.tokenizers:
            return None

        def choose(c, text: str) -> str:
            space = " " if c.start > 0 and text[c.start - 1] == " " else ""
            for p in c.partners:
                word = p[0].upper() + p[1:] if c.word[0].isupper() else p
                if all(self._n(n, space + word) == self._n(n, space + c.word) for n in self.tokenizers):
                    return p
            return c.partners[0]

        return choose


def length_differences(items: list[dict], tokenizers: list[str]) -> dict:
    """Distribution of (altered - original) lengths: characters, and tokens per tokenizer."""
    out = {"characters": _hist(len(m["altered"]) - len(m["original"]) for m in items)}
    out["tokens"] = {t: _hist(m["tokens"][t][1] - m["tokens"][t][0] for m in items) for t in tokenizers}
    return out


def _hist(values) -> dict[str, int]:
    return {str(k): v for k, v in sorted(Counter(values).items())}


# --- decontamination and outputs -------------------------------------------------------------


def _decontaminate(items: list[dict], sources: list | tuple, n: int) -> set[int]:
    """Indexes of the items sharing a word n-gram with any document of `sources` (corpus
    folders, .jsonl documents, or benchmark files)."""
    from expertlm.corpus.decontam import Decontaminator

    dec = Decontaminator.of_texts(((m["original"], m["altered"]) for m in items), n)
    for text in decontam_texts(sources):
        dec.is_contaminated(text)
    return dec.items_leaked


def decontam_texts(sources: list | tuple) -> Iterator[str]:
    from expertlm.eval.benchmark import read_benchmark

    for src in map(Path, sources):
        if src.is_file() and src.name.endswith(".csv"):
            for it in read_benchmark(src):
                yield from (it.context, *it.choices)
            continue
        for _, obj in _records(src):
            if isinstance(obj.get("text"), str):
                yield obj["text"]
            else:  # a benchmark's JSONL
                yield from (v for k in ("question", "context", "original", "altered") if isinstance(v := obj.get(k), str))
                yield from (c for c in obj.get("choices") or [] if isinstance(c, str))


def _describe(path) -> dict:
    from expertlm.corpus.docs import corpus_hash

    p = Path(path)
    return {"path": str(p), "sha256": sha256_file(p) if p.is_file() else corpus_hash(p)}


def write_benchmark(folder: Path, items: list[dict]) -> None:
    sections = any(m["section"] for m in items)
    columns = [c for c in CSV_COLUMNS if sections or c != "journal_section"]
    with open(folder / "benchmark.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(columns)
        for m in items:
            row = {"doi": m["doi"], "journal_section": m["section"], "original_abstract": m["original"],
                   "incorrect_abstract": m["altered"], "combined_abstract": m["combined"]}  # fmt: skip
            w.writerow([row[c] for c in columns])
    with JsonlWriter(folder / "benchmark.jsonl") as w:
        for m in items:
            w.write({k: m[k] for k in ("id", "section", "year", "original", "altered", "combined",
                                       "finding", "changes", "generator", "tokens")})  # fmt: skip


def preference_pair(item: dict) -> dict:
    """TRL's preference format: the shared text before the first changed sentence is the prompt
    (its trailing whitespace moved into the answers, as lm-eval splits a context), the rest of
    the original is chosen, the rest of the altered version rejected."""
    first = item["changes"][0]["start"]
    text = item["original"]
    start = next(a for a, b in sentence_spans(text) if a <= first < b)
    prompt = text[:start].rstrip()
    return {"prompt": prompt, "chosen": text[len(prompt) :], "rejected": item["altered"][len(prompt) :]}
