"""`expertlm corpus pmc`: PubMed Central open-access full texts, through pubget.

pubget (https://neuroquery.github.io/pubget/, `pip install 'expertlm[pmc]'`) downloads the
articles matching a PMC query in bulk (resuming on its own), extracts them, and writes
`<data_dir>/query_<md5>/subset_allArticles_extractedData/` with `metadata.csv` (pmcid, pmid,
doi, title, journal, publication_year, license) and `text.csv` (pmcid, title, keywords,
abstract, body). This module runs those steps and converts the two CSVs into corpus documents:
`{"id": "PMC<pmcid>", "pmid", "doi", "journal", "year", "license", "title",
"text": title + abstract + body}`. `pubget_dir` converts an existing pubget output offline.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from expertlm.config import PmcConfig
from expertlm.console import info
from expertlm.corpus.pubmed import journal_query, read_journals
from expertlm.errors import ExpertlmError, where
from expertlm.io import JsonlWriter, check_output, csv_rows, sha256_file

EXTRACTED = "subset_allArticles_extractedData"
METADATA_COLUMNS = ("pmcid", "pmid", "doi", "journal", "publication_year")
TEXT_COLUMNS = ("pmcid", "title", "abstract", "body")
INSTALL = "pip install 'expertlm[pmc]'"


def find_extracted(folder: str | Path) -> Path:
    """The folder holding pubget's metadata.csv and text.csv: `folder` itself, or the one
    `*_extractedData` folder (all articles) under it."""
    folder = Path(folder)
    if (folder / "metadata.csv").is_file() and (folder / "text.csv").is_file():
        return folder
    if not folder.is_dir():
        raise ExpertlmError(f"{folder}: no such folder")
    found = sorted(p.parent for p in folder.rglob(f"{EXTRACTED}/text.csv"))
    if not found:
        raise ExpertlmError(
            f"{folder}: no pubget output (metadata.csv and text.csv in a {EXTRACTED} folder)"
        )
    if len(found) > 1:
        raise ExpertlmError(
            f"{folder}: holds the output of {len(found)} pubget queries; name one of: "
            + ", ".join(map(str, found))
        )
    return found[0]


def _rows(path: Path, needed: tuple[str, ...]) -> Iterator[tuple[int, dict]]:
    return csv_rows(path, needed)


def convert_pubget(
    folder: str | Path,
    out: str | Path,
    from_year: int | None = None,
    to_year: int | None = None,
) -> Counter:
    """pubget's extracted CSVs -> corpus documents in `out` (.jsonl or .jsonl.gz, written
    under a temporary name and renamed). Returns the counts (written and skipped)."""
    src, out = find_extracted(folder), Path(out)
    meta = {}
    for _, row in _rows(src / "metadata.csv", METADATA_COLUMNS):
        meta[row["pmcid"].strip()] = row
    counts: Counter = Counter()
    tmp = out.parent / f".tmp-{os.getpid()}-{out.name}"  # same suffix: JsonlWriter gzips .gz
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        with JsonlWriter(tmp) as w:
            for line, row in _rows(src / "text.csv", TEXT_COLUMNS):
                counts["records"] += 1
                pmcid = row["pmcid"].strip()
                if not pmcid:
                    raise ExpertlmError(f"{where(src / 'text.csv', line)}: empty pmcid")
                body = (row["body"] or "").strip()
                if not body:
                    counts["no_body"] += 1
                    continue
                m = meta.get(pmcid, {})
                year_s = (m.get("publication_year") or "").strip()
                try:
                    year = int(float(year_s)) if year_s else None
                except ValueError:
                    raise ExpertlmError(
                        f"{src / 'metadata.csv'}: pmcid {pmcid}: publication_year {year_s!r} is not a year"
                    ) from None
                if year is not None and (
                    (from_year is not None and year < from_year)
                    or (to_year is not None and year > to_year)
                ):
                    counts["out_of_years"] += 1
                    continue
                title = (row["title"] or "").strip()
                parts = [p for p in (title, (row["abstract"] or "").strip(), body) if p]
                w.write(
                    {
                        "id": f"PMC{pmcid}",
                        "pmid": (m.get("pmid") or "").strip() or None,
                        "doi": (m.get("doi") or "").strip() or None,
                        "journal": (m.get("journal") or "").strip() or None,
                        "year": year,
                        "license": (m.get("license") or "").strip() or None,
                        "title": title,
                        "text": "\n\n".join(parts),
                    }
                )
                counts["written"] += 1
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return counts


def _run_pubget(query: str, data_dir: Path, api_key: str | None) -> Path:
    try:
        import pubget
    except ImportError:
        raise ExpertlmError(
            f"corpus pmc needs pubget, an optional extra: {INSTALL} (or convert an existing "
            "pubget output with --pubget-dir)"
        ) from None
    articlesets, code = pubget.download_query_results(query, data_dir, api_key=api_key)
    if int(code) != 0:
        raise ExpertlmError(
            f"pubget: the download into {articlesets} is incomplete (exit code {int(code)}); "
            "re-run the same command to resume it"
        )
    articles, _ = pubget.extract_articles(articlesets)
    extracted, _ = pubget.extract_data_to_csv(articles)
    return Path(extracted)


def corpus_pmc(out: str | Path, *, overwrite: bool = False, show_progress: bool = True,
               **options) -> Path:  # fmt: skip
    """PubMed Central open-access articles -> corpus documents with body text and year.
    `options` are the fields of `PmcConfig`.

    With `query`/`journals`: pubget downloads and extracts the open-access articles published
    `from_year`..`to_year` into `data_dir` (default: a `pubget_data` folder beside `out`;
    pubget resumes an interrupted download itself), then they are converted. With
    `pubget_dir`: an existing pubget output is converted, offline."""
    t0 = time.time()
    cfg = PmcConfig.from_options(options)
    query, journals, from_year, to_year = cfg.query, cfg.journals, cfg.from_year, cfg.to_year
    pubget_dir, api_key_env = cfg.pubget_dir, cfg.api_key_env
    out = Path(out)
    check_output(out, [cfg.pubget_dir] if cfg.pubget_dir else [])
    if not out.name.endswith((".jsonl", ".jsonl.gz")):
        raise ExpertlmError(f"option --out: {out} must end in .jsonl or .jsonl.gz")
    if out.exists() and not overwrite:
        raise ExpertlmError(f"{out}: already exists (pass --overwrite to replace it)")
    if pubget_dir is None:
        parts = []
        if journals is not None:
            parts.append(journal_query(read_journals(journals)))
        if query:
            parts.append(query)
        if not parts:
            raise ExpertlmError(
                "option --query / --journals / --pubget-dir: give a query, a journal list, or a pubget output folder"
            )
        if from_year is not None or to_year is not None:
            # pubget's own example of a PMC date range: (2017[PubDate] : 2019[PubDate])
            parts.append(f"{from_year or 1800}[PubDate] : {to_year or 3000}[PubDate]")
        term = " AND ".join(f"({p})" for p in parts) if len(parts) > 1 else parts[0]
        api_key = (os.environ.get(api_key_env) or None) if api_key_env else None
        folder = cfg.data_dir if cfg.data_dir is not None else out.parent / "pubget_data"
        pubget_dir = _run_pubget(term, folder, api_key)
    counts = convert_pubget(pubget_dir, out, from_year, to_year)
    info(
        f"pmc: {counts['written']:,} of {counts['records']:,} articles -> {out} "
        f"(sha256 {sha256_file(out)[:12]}, {time.time() - t0:.0f} s)"
    )
    for k in ("no_body", "out_of_years"):
        if counts[k]:
            info(f"  skipped {k.replace('_', ' ')}: {counts[k]:,}")
    return out


__all__ = ["convert_pubget", "corpus_pmc", "find_extracted"]
