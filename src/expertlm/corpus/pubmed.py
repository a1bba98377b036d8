"""`expertlm corpus pubmed`: PubMed abstracts through NCBI's E-utilities, resumable and polite.

The protocol (https://www.ncbi.nlm.nih.gov/books/NBK25499/): for one publication-date range,
ESearch with `usehistory=y` leaves the matching PMIDs on NCBI's history server (WebEnv and
query_key) and returns their count; EFetch pages through them (`retstart`, `retmax`) as PubMed
XML. PubMed's ESearch reaches only the first 10,000 records of a search, so a range with more
is bisected by date until every piece fits.

The unit of work is one EFetch batch of one date range. Documents go to a hidden partial file
beside the output; after each batch the data is fsync'ed, then the state file (also hidden,
`.NAME.state.json`) records the batch as done and the partial file's committed length, with
an atomic rename. A re-run truncates the partial file to that length (anything a crash left
after it is dropped and fetched again), reads back the PMIDs already written, and goes on with
the batches not done; a PMID already written is never written twice. When every range is done
the partial file is compressed into the output under a temporary name and renamed into place,
so the output appears whole or not at all.

Politeness: at most 3 requests per second, 10 with an API key (read from the environment
variable named by `api_key_env`, sent only in POST bodies and never written anywhere),
`tool`/`email` on every request, retries with exponential backoff on 429, 5xx, timeouts and
dropped connections (`expertlm.net.Http`).
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import date, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

from expertlm.config import PubmedConfig
from expertlm.console import count_progress, info, warn
from expertlm.errors import ExpertlmError, where
from expertlm.io import check_output, provenance, read_json, sha256_file, write_json
from expertlm.net import DownloadError, Http

DEFAULT_BASE_URL = PubmedConfig.model_fields["base_url"].default
ESEARCH_WINDOW = 10_000  # PubMed's ESearch returns only the first 10,000 records of a search
RATE_NO_KEY = 3.0  # NCBI's limits, requests per second
RATE_WITH_KEY = 10.0
RETRIES = 6
BACKOFF_S = 1.0
STATE_FORMAT = "expertlm.pubmed-state/1"
# Records not written, by reason (a record is counted once, under the first that applies).
SKIPS = ("duplicate", "retraction_notice", "retracted", "erratum", "no_abstract", "not_article")


# --- the query -------------------------------------------------------------------------------


def bundled_journals() -> Path:
    """The bundled list of the paper's 100 neuroscience journals (see the file's header)."""
    return Path(str(resources.files("expertlm") / "data" / "neuro_journals.txt"))


def read_journals(path: str | Path) -> list[str]:
    """Journal lines of a list file: one per line, `#` comments and blank lines ignored.
    `neuro` names the bundled neuroscience list (unless a file of that name exists)."""
    path = Path(path)
    if str(path) == "neuro" and not path.exists():
        path = bundled_journals()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ExpertlmError(
            f"{path}: no such journal list (or `neuro` for the bundled one)"
        ) from None
    names = [ln.strip() for ln in text.splitlines()]
    names = [n for n in names if n and not n.startswith("#")]
    if not names:
        raise ExpertlmError(f"{path}: the journal list is empty")
    return names


def journal_query(names: list[str]) -> str:
    """`"Name"[Journal] OR ...`; a line that already has a field tag (`eLife[Journal] AND
    neuroscience`) is used as written, in parentheses."""
    clauses = []
    for name in names:
        if "[" in name:
            clauses.append(f"({name})")
        else:
            clauses.append(f'"{name.replace(chr(34), "")}"[Journal]')
    return " OR ".join(clauses)


def build_term(query: str | None, journals: str | Path | None) -> str:
    parts = []
    if journals is not None:
        parts.append(journal_query(read_journals(journals)))
    if query is not None and query.strip():
        parts.append(query.strip())
    if not parts:
        raise ExpertlmError("option --query / --journals: give a query, a journal list, or both")
    return parts[0] if len(parts) == 1 else " AND ".join(f"({p})" for p in parts)


@dataclass(frozen=True)
class DateRange:
    """Publication dates `start`..`end`, both included."""

    start: date
    end: date

    @property
    def label(self) -> str:
        return f"{self.start:%Y/%m/%d}-{self.end:%Y/%m/%d}"

    def halves(self) -> tuple[DateRange, DateRange] | None:
        if self.start == self.end:
            return None
        mid = self.start + timedelta(days=(self.end - self.start).days // 2)
        return DateRange(self.start, mid), DateRange(mid + timedelta(days=1), self.end)


# --- PubMed XML ------------------------------------------------------------------------------


class HistoryExpired(Exception):
    """EFetch answered with an <ERROR> (typically: the WebEnv is no longer on the server)."""


def _text(el: ET.Element | None) -> str:
    """An element's text with inline markup (<i>, <sup>, ...) flattened, whitespace collapsed."""
    return " ".join("".join(el.itertext()).split()) if el is not None else ""


def _year(article: ET.Element, record: ET.Element) -> int | None:
    candidates = (
        article.findtext("Journal/JournalIssue/PubDate/Year"),
        article.findtext("Journal/JournalIssue/PubDate/MedlineDate"),  # "2002 Jan-Feb"
        article.findtext("ArticleDate/Year"),
        record.findtext("PubmedData/History/PubMedPubDate[@PubStatus='pubmed']/Year"),
    )
    for value in candidates:
        if value and value.strip()[:4].isdigit():
            return int(value.strip()[:4])
    return None


def parse_record(record: ET.Element) -> tuple[str | None, dict | None, str | None]:
    """(PMID, document or None, skip reason or None) of one element of a PubmedArticleSet."""
    if record.tag != "PubmedArticle":  # PubmedBookArticle, DeleteCitation
        pmid = record.findtext(".//PMID")
        return (pmid.strip() if pmid else None), None, "not_article"
    citation = record.find("MedlineCitation")
    pmid = citation.findtext("PMID") if citation is not None else None
    article = citation.find("Article") if citation is not None else None
    if not pmid or article is None:
        return None, None, "not_article"
    pmid = pmid.strip()
    types = {_text(t) for t in article.iterfind("PublicationTypeList/PublicationType")}
    if "Retraction of Publication" in types:
        return pmid, None, "retraction_notice"
    retracted_in = citation.find(
        "CommentsCorrectionsList/CommentsCorrections[@RefType='RetractionIn']"
    )
    if "Retracted Publication" in types or retracted_in is not None:
        return pmid, None, "retracted"
    if "Published Erratum" in types:
        return pmid, None, "erratum"
    sections = []
    for part in article.iterfind("Abstract/AbstractText"):
        text = _text(part)
        if text:
            label = (part.get("Label") or "").strip()
            sections.append(f"{label}: {text}" if label else text)
    if not sections:
        return pmid, None, "no_abstract"
    title = _text(article.find("ArticleTitle"))
    doi = record.findtext("PubmedData/ArticleIdList/ArticleId[@IdType='doi']") or article.findtext(
        "ELocationID[@EIdType='doi']"
    )
    abstract = "\n".join(sections)
    return (
        pmid,
        {
            "id": pmid,
            "year": _year(article, record),
            "journal": _text(article.find("Journal/Title")) or None,
            "doi": doi.strip() if doi else None,
            "title": title,
            "text": f"{title}\n{abstract}" if title else abstract,
        },
        None,
    )


def parse_efetch(data: bytes) -> list[tuple[str | None, dict | None, str | None]]:
    """Records of one EFetch answer. Raises ET.ParseError on malformed XML, HistoryExpired
    on an <eFetchResult><ERROR> answer, ValueError on XML that is not a PubmedArticleSet."""
    # ElementTree never fetches the DTD PubMed's answers name, and expat refuses entity
    # expansion bombs, so answers from an untrusted server are safe to parse.
    root = ET.fromstring(data)
    if root.tag == "eFetchResult" or root.find("ERROR") is not None:
        raise HistoryExpired(_text(root.find("ERROR")) or "error answer")
    if root.tag != "PubmedArticleSet":
        raise ValueError(f"expected <PubmedArticleSet>, got <{root.tag}>")
    return [parse_record(r) for r in root]


# --- E-utilities -----------------------------------------------------------------------------


@dataclass
class Search:
    count: int
    webenv: str
    query_key: str


class EUtils:
    """ESearch (JSON) and EFetch (PubMed XML) against `base_url`, through a polite `Http`."""

    def __init__(
        self, base_url: str, http: Http, tool: str, email: str | None, api_key: str | None
    ):
        self.base_url = base_url.rstrip("/") + "/"
        self.http = http
        self.common = {"tool": tool, **({"email": email} if email else {})}
        self._api_key = api_key

    def _post(self, utility: str, params: dict, what: str) -> bytes:
        data = {**params, **self.common}
        if self._api_key:
            data["api_key"] = self._api_key
        return self.http.request(f"{self.base_url}{utility}", data, what=what)

    def esearch(self, term: str, rng: DateRange) -> tuple[Search, dict]:
        what = f"PubMed esearch {rng.label}"
        body = self._post(
            "esearch.fcgi",
            {
                "db": "pubmed",
                "term": term,
                "usehistory": "y",
                "retmode": "json",
                "retmax": 0,
                "datetype": "pdat",
                "mindate": f"{rng.start:%Y/%m/%d}",
                "maxdate": f"{rng.end:%Y/%m/%d}",
            },  # fmt: skip
            what,
        )
        try:
            result = json.loads(body)["esearchresult"]
        except (ValueError, KeyError, TypeError):
            raise ExpertlmError(f"{what}: not an ESearch JSON answer ({body[:200]!r})") from None
        if "ERROR" in result:
            raise ExpertlmError(self.http.redact(f"{what}: {result['ERROR']}"))
        try:
            search = Search(int(result["count"]), result["webenv"], str(result["querykey"]))
        except (KeyError, ValueError):
            raise ExpertlmError(f"{what}: no count/webenv/querykey in the answer") from None
        return search, result

    def efetch(self, search: Search, retstart: int, retmax: int, what: str) -> bytes:
        return self._post(
            "efetch.fcgi",
            {
                "db": "pubmed",
                "query_key": search.query_key,
                "WebEnv": search.webenv,
                "retstart": retstart,
                "retmax": retmax,
                "retmode": "xml",
            },  # fmt: skip
            what,
        )


# --- the stage -------------------------------------------------------------------------------


def _side_paths(out: Path) -> tuple[Path, Path]:
    """(state file, partial file): hidden, so `corpus build FOLDER` never reads them."""
    return out.parent / f".{out.name}.state.json", out.parent / f".{out.name}.part"


def _pmid_of_line(line: bytes) -> str:
    prefix = b'{"id": "'  # how this module writes every line: id first
    if line.startswith(prefix) and (end := line.find(b'"', len(prefix))) > 0:
        return line[len(prefix) : end].decode()
    return str(json.loads(line)["id"])


class _Download:
    """The partial file and the state file of one `corpus pubmed` run."""

    def __init__(self, out: Path, params: dict, batch_size: int) -> None:
        self.out, self.params, self.batch_size = out, params, batch_size
        self.state_path, self.part_path = _side_paths(out)
        self.seen: set[str] = set()
        self.state: dict[str, Any] = {
            "format": STATE_FORMAT,
            "params": params,
            "complete": False,
            "total": None,
            "done": [],
            "split": [],
            "current": None,
            "part_bytes": 0,
            "counts": {"records": 0, "written": 0, **dict.fromkeys(SKIPS, 0), "over_window": 0},
            "requests": 0,
        }
        self.requests_before = 0  # sent by earlier runs of this download

    def open(self, resuming: bool) -> None:
        if resuming:
            self.state = read_json(self.state_path)
            self.requests_before = self.state["requests"]
            committed = self.state["part_bytes"]
            if not self.part_path.exists() and committed == 0:
                self.part_path.touch()
            size = self.part_path.stat().st_size if self.part_path.exists() else 0
            if size < committed:
                raise ExpertlmError(
                    f"{self.part_path}: shorter ({size} bytes) than its state says ({committed}); "
                    "pass --overwrite to start over"
                )
            with open(self.part_path, "r+b") as f:
                f.truncate(committed)  # drop whatever a crash left after the last commit
            with open(self.part_path, "rb") as f:
                for lineno, line in enumerate(f, 1):
                    try:
                        self.seen.add(_pmid_of_line(line))
                    except (ValueError, KeyError) as e:
                        raise ExpertlmError(
                            f"{where(self.part_path, lineno)}: corrupt ({e}); pass --overwrite to start over"
                        ) from None
        else:
            self.part_path.unlink(missing_ok=True)
            self.part_path.touch()
        self._f = open(self.part_path, "ab")  # noqa: SIM115 (closed in close())

    def write_batch(self, docs: list[dict]) -> None:
        for doc in docs:
            self._f.write(json.dumps(doc, ensure_ascii=False).encode("utf-8") + b"\n")
        self._f.flush()
        os.fsync(self._f.fileno())
        self.state["part_bytes"] = self._f.tell()

    def commit(self, requests: int) -> None:
        """Record the state: only what is committed here is trusted by a re-run."""
        self.state["requests"] = self.requests_before + requests
        write_json(self.state_path, self.state)

    def finish(self, requests: int) -> dict:
        """Compress the partial file into the output (temporary name, then rename)."""
        self._f.close()
        tmp = self.out.parent / f".{self.out.name}.tmp-{os.getpid()}"
        try:
            with open(self.part_path, "rb") as src:
                if self.out.name.endswith(".gz"):
                    # mtime=0: the same documents give the same bytes (as io.JsonlWriter)
                    with gzip.GzipFile(tmp, "wb", compresslevel=6, mtime=0) as gz:
                        shutil.copyfileobj(src, gz, 1 << 20)
                else:
                    with open(tmp, "wb") as dst:
                        shutil.copyfileobj(src, dst, 1 << 20)
            os.replace(tmp, self.out)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        self.state["complete"] = True
        self.state["current"] = None
        self.state["output"] = {"path": str(self.out), "sha256": sha256_file(self.out)}
        self.state.update(provenance())
        self.commit(requests)
        self.part_path.unlink(missing_ok=True)
        return self.state

    def close(self) -> None:
        if hasattr(self, "_f") and not self._f.closed:
            self._f.close()


def corpus_pubmed(out: str | Path, *, overwrite: bool = False, show_progress: bool = True,
                  **options) -> Path:  # fmt: skip
    """Download the PubMed records matching `query` and/or the `journals` list, published
    `from_year`..`to_year`, into the JSON Lines file `out` (one document per record with an
    abstract: id (PMID), year, journal, doi, title, text = title + abstract). `options` are the
    fields of `PubmedConfig`. A re-run after an interruption continues where it stopped; a
    finished output is left as it is (`overwrite` starts over)."""
    t0 = time.time()
    out = Path(out)
    check_output(out)
    problems = [] if out.name.endswith((".jsonl", ".jsonl.gz")) else [
        f"option --out: {out} must end in .jsonl or .jsonl.gz"
    ]  # fmt: skip
    try:
        cfg = PubmedConfig.from_options(options)
    except ExpertlmError as e:
        problems.append(str(e))
    if problems:  # every problem at once
        raise ExpertlmError("\n".join(problems))
    term = build_term(cfg.query, cfg.journals)
    params = {"term": term, "from_year": cfg.from_year, "to_year": cfg.to_year}
    state_path, part_path = _side_paths(out)

    resuming = False
    if overwrite:
        state_path.unlink(missing_ok=True)
        part_path.unlink(missing_ok=True)
    elif state_path.exists():
        previous = read_json(state_path)
        if previous.get("format") != STATE_FORMAT or previous.get("params") != params:
            raise ExpertlmError(
                f"{out}: {state_path.name} belongs to a download with other options "
                "(query, journals or years); pass --overwrite to start this one instead"
            )
        if previous.get("complete") and out.exists():
            info(f"pubmed: {out} is already complete ({previous['counts']['written']:,} documents)")
            return out
        resuming = not previous.get("complete")
        if previous.get("complete"):  # output deleted by hand: start again
            state_path.unlink()
    elif out.exists():
        raise ExpertlmError(f"{out}: already exists (pass --overwrite to replace it)")
    out.parent.mkdir(parents=True, exist_ok=True)

    api_key = (os.environ.get(cfg.api_key_env) or None) if cfg.api_key_env else None
    http = Http(
        RATE_WITH_KEY if api_key else RATE_NO_KEY,
        retries=RETRIES,
        backoff_s=BACKOFF_S,
        secrets=(api_key,) if api_key else (),
    )
    if cfg.email is None and cfg.base_url == DEFAULT_BASE_URL:
        warn("NCBI asks every E-utilities user for a contact address: pass --email")
    client = EUtils(cfg.base_url, http, cfg.tool, cfg.email, api_key)
    run = _Download(out, params, cfg.batch_size)
    run.open(resuming)
    if resuming:
        c = run.state["counts"]
        info(
            f"pubmed: resuming {out}: {len(run.state['done'])} date range(s) done, "
            f"{c['written']:,} documents written"
        )
    root = DateRange(date(cfg.from_year, 1, 1), date(cfg.to_year, 12, 31))
    try:
        with count_progress(show_progress) as bar:
            task = bar.add_task("pubmed", total=run.state["total"])
            bar.update(task, completed=sum(run.state["counts"][k] for k in ("written", *SKIPS)))
            _download(client, term, root, run, bar, task)
        state = run.finish(http.requests)
    except DownloadError as e:
        raise ExpertlmError(f"{e} (re-run the same command to resume)") from None
    finally:
        run.close()

    c = state["counts"]
    info(
        f"pubmed: {c['written']:,} documents -> {out} ({http.requests} requests, {time.time() - t0:.0f} s)"
    )
    for k in (*SKIPS, "over_window"):
        if c[k]:
            info(f"  skipped {k.replace('_', ' ')}: {c[k]:,}")
    return out


def _download(client: EUtils, term: str, root: DateRange, run: _Download, bar, task) -> None:
    """Depth first over date ranges, bisecting those over the ESearch window."""
    state = run.state
    done, split = set(state["done"]), set(state["split"])
    stack = [root]
    while stack:
        rng = stack.pop()
        if rng.label in done:
            continue
        if rng.label in split:
            left, right = rng.halves()  # type: ignore[misc]
            stack += [right, left]
            continue
        search, result = client.esearch(term, rng)
        if rng == root:
            _warn_about_search(result)
            if state["total"] is None:
                state["total"] = search.count
                bar.update(task, total=search.count)
        if search.count > ESEARCH_WINDOW:
            halves = rng.halves()
            if halves is not None:
                split.add(rng.label)
                state["split"].append(rng.label)
                run.commit(client.http.requests)
                stack += [halves[1], halves[0]]
                continue
            lost = search.count - ESEARCH_WINDOW
            warn(
                f"PubMed: {search.count:,} records published on {rng.start:%Y/%m/%d} match; "
                f"ESearch reaches only the first {ESEARCH_WINDOW:,}, {lost:,} are left out "
                "(narrow the query to get them)"
            )
            search.count = ESEARCH_WINDOW
        else:
            lost = 0
        _fetch_range(client, term, rng, search, run, bar, task)
        state["counts"]["over_window"] += lost  # once, with the range (not again on resume)
        done.add(rng.label)
        state["done"].append(rng.label)
        state["current"] = None
        run.commit(client.http.requests)


def _warn_about_search(result: dict) -> None:
    """ESearch's own warnings about the query (e.g. journal names PubMed does not know)."""
    for key in ("errorlist", "warninglist"):
        for kind, values in (result.get(key) or {}).items():
            if values:
                shown = ", ".join(map(str, values[:10])) + (" ..." if len(values) > 10 else "")
                warn(f"PubMed {key.removesuffix('list')}: {kind}: {shown}")


def _fetch_range(client, term, rng, search: Search, run: _Download, bar, task) -> None:
    state, size = run.state, run.batch_size
    cur = state["current"]
    if not (
        cur and cur["range"] == rng.label and cur["count"] == search.count and cur["batch"] == size
    ):
        cur = state["current"] = {
            "range": rng.label,
            "count": search.count,
            "batch": size,
            "done": [],
        }
    researched = 0
    retstart = 0
    while retstart < cur["count"]:
        if retstart in cur["done"]:
            retstart += size
            continue
        n_batches = -(-cur["count"] // size)
        end = min(retstart + size, cur["count"])
        what = f"PubMed efetch {rng.label} batch {retstart // size + 1}/{n_batches} (records {retstart + 1}-{end})"
        data = client.efetch(search, retstart, size, what)
        try:
            records = parse_efetch(data)
        except HistoryExpired as e:
            if researched >= 3:
                raise ExpertlmError(f"{what}: {e}") from None
            researched += 1
            search, _ = client.esearch(term, rng)  # a fresh WebEnv
            if search.count != cur["count"]:  # the result set changed: this range again
                cur = state["current"] = {
                    "range": rng.label,
                    "count": min(search.count, ESEARCH_WINDOW),
                    "batch": size,
                    "done": [],
                }
                retstart = 0
            continue
        except (ET.ParseError, ValueError) as e:
            raise ExpertlmError(
                f"{what}: malformed XML ({e}); the batches before it are saved, re-run to resume"
            ) from None
        counts, docs = state["counts"], []
        for pmid, doc, skip in records:
            counts["records"] += 1
            if skip is None and pmid in run.seen:
                skip = "duplicate"
            if skip is not None:
                counts[skip] += 1
                continue
            run.seen.add(pmid)  # type: ignore[arg-type]
            docs.append(doc)
        counts["written"] += len(docs)
        run.write_batch(docs)
        cur["done"].append(retstart)
        run.commit(client.http.requests)
        bar.advance(task, len(records))
        retstart += size


__all__ = ["DEFAULT_BASE_URL", "build_term", "bundled_journals", "corpus_pubmed", "parse_efetch"]
