"""A local E-utilities server for tests, on 127.0.0.1: ESearch (JSON, with history) and EFetch
(PubMed XML, paged through a WebEnv) over records the test defines, in the formats NCBI answers
with, plus faults on demand (429 with Retry-After, 5xx, dropped connections, truncated bodies,
malformed XML, an expired WebEnv) and a log of every request with its arrival time."""

from __future__ import annotations

import http.server
import json
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from datetime import date, datetime
from xml.sax.saxutils import escape

DOCTYPE = (
    '<?xml version="1.0" ?>\n<!DOCTYPE PubmedArticleSet PUBLIC "-//NLM//DTD PubMedArticle, '
    '1st January 2025//EN" "https://dtd.nlm.nih.gov/ncbi/pubmed/out/pubmed_250101.dtd">\n'
)
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


@dataclass
class Rec:
    """One PubMed record. `abstract`: (label or None, text) sections; `title` may hold inline
    markup (it is inserted as XML)."""

    pmid: str
    pub: date
    title: str = "A finding about the hippocampus"
    abstract: list[tuple[str | None, str]] = field(
        default_factory=lambda: [(None, "Neurons fired more after training.")]
    )
    types: tuple[str, ...] = ("Journal Article",)
    journal: str = (
        "The Journal of neuroscience : the official journal of the Society for Neuroscience"
    )
    doi: str | None = None
    medline_date: str | None = None  # "2002 Jan-Feb" instead of Year/Month/Day
    retracted_in: bool = False
    book: bool = False

    def xml(self) -> str:
        if self.book:
            return (
                f'<PubmedBookArticle><BookDocument><PMID Version="1">{self.pmid}</PMID>'
                f"<Abstract><AbstractText>{escape(self.abstract[0][1])}</AbstractText></Abstract>"
                "</BookDocument></PubmedBookArticle>"
            )
        if self.medline_date:
            pub = f"<MedlineDate>{self.medline_date}</MedlineDate>"
        else:
            pub = f"<Year>{self.pub.year}</Year><Month>{MONTHS[self.pub.month - 1]}</Month><Day>{self.pub.day:02d}</Day>"
        abstract = "".join(
            f'<AbstractText Label="{label}" NlmCategory="{label}">{escape(text)}</AbstractText>'
            if label
            else f"<AbstractText>{escape(text)}</AbstractText>"
            for label, text in self.abstract
        )
        types = "".join(f'<PublicationType UI="D0">{t}</PublicationType>' for t in self.types)
        comments = (
            '<CommentsCorrectionsList><CommentsCorrections RefType="RetractionIn">'
            '<RefSource>J Neurosci. 2024</RefSource><PMID Version="1">1</PMID>'
            "</CommentsCorrections></CommentsCorrectionsList>"
            if self.retracted_in
            else ""
        )
        doi = f'<ArticleId IdType="doi">{self.doi}</ArticleId>' if self.doi else ""
        return (
            '<PubmedArticle><MedlineCitation Status="MEDLINE" Owner="NLM">'
            f'<PMID Version="1">{self.pmid}</PMID>'
            '<Article PubModel="Print-Electronic"><Journal><ISSN IssnType="Electronic">1529-2401</ISSN>'
            f'<JournalIssue CitedMedium="Internet"><Volume>42</Volume><PubDate>{pub}</PubDate></JournalIssue>'
            f"<Title>{escape(self.journal)}</Title><ISOAbbreviation>J Neurosci</ISOAbbreviation></Journal>"
            f"<ArticleTitle>{self.title}</ArticleTitle>"
            f"{'<Abstract>' + abstract + '</Abstract>' if abstract else ''}"
            '<AuthorList CompleteYN="Y"><Author ValidYN="Y"><LastName>Doe</LastName></Author></AuthorList>'
            f"<Language>eng</Language><PublicationTypeList>{types}</PublicationTypeList></Article>"
            f"{comments}</MedlineCitation>"
            "<PubmedData><PublicationStatus>ppublish</PublicationStatus><ArticleIdList>"
            f'<ArticleId IdType="pubmed">{self.pmid}</ArticleId>{doi}</ArticleIdList></PubmedData>'
            "</PubmedArticle>"
        )


def _day(value: str) -> date:
    return datetime.strptime(value, "%Y/%m/%d").date()


@dataclass
class Fault:
    endpoint: str  # "esearch" or "efetch"
    action: str  # 429, 500, 503, drop, truncate, badxml, expire, echo400
    match: dict = field(default_factory=dict)  # params that must be equal, e.g. {"retstart": "6"}
    times: int = 1


class EUtilsServer:
    def __init__(self, records: list[Rec], retry_after: str = "1", window: int = 10_000):
        self.records = sorted(records, key=lambda r: int(r.pmid))
        self.retry_after, self.window = retry_after, window
        self.log: list[dict] = []  # {"t", "endpoint", "params", "action"}
        self.faults: list[Fault] = []
        self.webenvs: dict[str, list[Rec]] = {}
        self._lock = threading.Lock()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                server._handle(self, "")

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                server._handle(self, self.rfile.read(n).decode())

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/entrez/eutils/"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> EUtilsServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def fault(self, endpoint: str, action: str, times: int = 1, **match: object) -> None:
        self.faults.append(Fault(endpoint, action, {k: str(v) for k, v in match.items()}, times))

    def requests(self, endpoint: str | None = None) -> list[dict]:
        return [r for r in self.log if endpoint is None or r["endpoint"] == endpoint]

    # --- answers ---

    def _take_fault(self, endpoint: str, params: dict) -> str | None:
        with self._lock:
            for f in self.faults:
                if (
                    f.endpoint == endpoint
                    and f.times > 0
                    and all(params.get(k) == v for k, v in f.match.items())
                ):
                    f.times -= 1
                    return f.action
        return None

    def _handle(self, h, body: str) -> None:
        t = time.monotonic()
        parsed = urllib.parse.urlsplit(h.path)
        params = dict(urllib.parse.parse_qsl(parsed.query))
        params.update(urllib.parse.parse_qsl(body))
        endpoint = parsed.path.rsplit("/", 1)[-1].removesuffix(".fcgi")
        action = self._take_fault(endpoint, params)
        with self._lock:
            self.log.append({"t": t, "endpoint": endpoint, "params": params, "action": action})
        if action == "drop":
            h.close_connection = True  # no status line at all: RemoteDisconnected
            return
        if action in ("429", "500", "503"):
            payload = b'{"error":"API rate limit exceeded","count":"4"}'
            h.send_response(int(action))
            if action == "429":
                h.send_header("Retry-After", self.retry_after)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(payload)))
            h.end_headers()
            h.wfile.write(payload)
            return
        if action == "echo400":  # NCBI echoes a bad API key in its error body
            payload = json.dumps(
                {"error": "API key invalid", "api-key": params.get("api_key")}
            ).encode()
            h.send_response(400)
            h.send_header("Content-Length", str(len(payload)))
            h.end_headers()
            h.wfile.write(payload)
            return
        if endpoint == "esearch":
            payload, ctype = self._esearch(params), "application/json"
        elif endpoint == "efetch":
            payload, ctype = self._efetch(params, action), "text/xml"
        else:
            h.send_error(404)
            return
        h.send_response(200)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(payload) + (100 if action == "truncate" else 0)))
        h.end_headers()
        h.wfile.write(payload[: len(payload) // 2] if action == "truncate" else payload)
        if action == "truncate":
            h.close_connection = True

    def _esearch(self, p: dict) -> bytes:
        lo, hi = _day(p["mindate"]), _day(p["maxdate"])
        hits = [r for r in self.records if lo <= r.pub <= hi]
        with self._lock:
            webenv = f"MCID_{len(self.webenvs) + 1:04d}"
            self.webenvs[webenv] = hits
        result = {
            "count": str(len(hits)), "retmax": "0", "retstart": "0", "querykey": "1",
            "webenv": webenv, "idlist": [], "translationset": [],
            "querytranslation": p.get("term", ""),
        }  # fmt: skip
        return json.dumps(
            {"header": {"type": "esearch", "version": "0.3"}, "esearchresult": result}
        ).encode()

    def _efetch(self, p: dict, action: str | None) -> bytes:
        if action == "expire":
            self.webenvs.pop(p.get("WebEnv"), None)
        hits = self.webenvs.get(p.get("WebEnv"))
        start, n = int(p["retstart"]), int(p["retmax"])
        if hits is None or start >= self.window:
            return b'<?xml version="1.0" ?>\n<eFetchResult>\n\t<ERROR>Unable to obtain query #1</ERROR>\n</eFetchResult>\n'
        xml = (
            DOCTYPE
            + "<PubmedArticleSet>"
            + "".join(r.xml() for r in hits[start : start + n])
            + "</PubmedArticleSet>"
        )
        if action == "badxml":
            xml = xml.replace("</ArticleTitle>", "</ArticleTitel>", 1)
        return xml.encode("utf-8")


def max_in_window(times: list[float], window: float = 1.0) -> int:
    """The most request arrivals in any half-open interval [t, t + window)."""
    times = sorted(times)
    best, j = 0, 0
    for i, t in enumerate(times):
        while times[j] <= t - window:
            j += 1
        best = max(best, i - j + 1)
    return best
