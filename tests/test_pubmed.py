"""`corpus pubmed` against a local E-utilities server (tests/eutils_server.py): paging through
the history server, retries, resume without duplicates, malformed XML, the 10,000-record window
split by date, the request rate measured at the server, and the API key kept out of every file."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from datetime import date, timedelta
from pathlib import Path

import pytest
from eutils_server import EUtilsServer, Rec, max_in_window

from expertlm.corpus import pubmed
from expertlm.corpus.build import corpus_build
from expertlm.corpus.pubmed import (
    build_term,
    corpus_pubmed,
    journal_query,
    parse_efetch,
    read_journals,
)
from expertlm.errors import ExpertlmError


def records(
    n: int, start: date = date(2020, 1, 1), step_days: int = 7, first: int = 1000
) -> list[Rec]:
    return [
        Rec(
            str(first + i),
            start + timedelta(days=step_days * i),
            title=f"Study {i} of cortex",
            abstract=[(None, f"Finding number {i}: neurons fired more after training.")],
            doi=f"10.1000/x{i}",
        )
        for i in range(n)
    ]


@pytest.fixture
def fast(monkeypatch):
    """No waiting: rate and backoff out of the way (the rate tests use the real ones)."""
    monkeypatch.setattr(pubmed, "RATE_NO_KEY", 1000.0)
    monkeypatch.setattr(pubmed, "RATE_WITH_KEY", 1000.0)
    monkeypatch.setattr(pubmed, "BACKOFF_S", 0.01)
    monkeypatch.delenv("NCBI_API_KEY", raising=False)


def fetch(server: EUtilsServer, out: Path, **kw) -> Path:
    kw.setdefault("query", "hippocampus")
    kw.setdefault("from_year", 2020)
    kw.setdefault("to_year", 2020)
    kw.setdefault("email", "me@example.org")
    return corpus_pubmed(out, base_url=server.url, show_progress=False, **kw)


def read_out(path: Path) -> list[dict]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def retstarts(server: EUtilsServer) -> list[int]:
    return [int(r["params"]["retstart"]) for r in server.requests("efetch") if r["action"] is None]


# --- PubMed XML --------------------------------------------------------------------------------


def parse(*recs: Rec):
    xml = "<PubmedArticleSet>" + "".join(r.xml() for r in recs) + "</PubmedArticleSet>"
    return parse_efetch(xml.encode())


def test_structured_abstract_markup_year_doi_and_journal():
    rec = Rec(
        "42",
        date(2002, 1, 1),
        title="<i>In vivo</i> imaging of Ca<sup>2+</sup> in\n   dendrites",
        abstract=[("BACKGROUND", "Spines matter."), ("RESULTS", "Spines grew."), (None, "More.")],
        doi="10.1/abc",
        medline_date="2002 Jan-Feb",
    )
    [(pmid, doc, skip)] = parse(rec)
    assert (pmid, skip) == ("42", None)
    assert doc == {
        "id": "42",
        "year": 2002,
        "journal": rec.journal,
        "doi": "10.1/abc",
        "title": "In vivo imaging of Ca2+ in dendrites",
        "text": "In vivo imaging of Ca2+ in dendrites\nBACKGROUND: Spines matter.\nRESULTS: Spines grew.\nMore.",
    }


def test_retractions_errata_empty_abstracts_and_books_are_skipped_with_their_reason():
    got = parse(
        Rec("1", date(2020, 1, 1), types=("Retraction of Publication",)),
        Rec("2", date(2020, 1, 1), types=("Journal Article", "Retracted Publication")),
        Rec("3", date(2020, 1, 1), retracted_in=True),
        Rec("4", date(2020, 1, 1), types=("Published Erratum",)),
        Rec("5", date(2020, 1, 1), abstract=[]),
        Rec("6", date(2020, 1, 1), book=True),
        Rec("7", date(2020, 1, 1)),
    )
    assert [(p, s) for p, _, s in got] == [
        ("1", "retraction_notice"), ("2", "retracted"), ("3", "retracted"), ("4", "erratum"),
        ("5", "no_abstract"), ("6", "not_article"), ("7", None),
    ]  # fmt: skip


def test_efetch_error_answer_and_malformed_xml_are_told_apart():
    with pytest.raises(pubmed.HistoryExpired):
        parse_efetch(b"<eFetchResult><ERROR>Unable to obtain query #1</ERROR></eFetchResult>")
    with pytest.raises(ET.ParseError):
        parse_efetch(b"<PubmedArticleSet><PubmedArticle></PubmedArtic")


# --- the query ---------------------------------------------------------------------------------


def test_journal_list_builds_the_query(tmp_path):
    path = tmp_path / "j.txt"
    path.write_text("# comment\nNeuron\n\nJ Neurosci\neLife[Journal] AND neuroscience\n")
    assert read_journals(path) == ["Neuron", "J Neurosci", "eLife[Journal] AND neuroscience"]
    assert journal_query(read_journals(path)) == (
        '"Neuron"[Journal] OR "J Neurosci"[Journal] OR (eLife[Journal] AND neuroscience)'
    )
    assert build_term("memory", path) == f"({journal_query(read_journals(path))}) AND (memory)"
    with pytest.raises(ExpertlmError, match="--query"):
        build_term(None, None)


def test_bundled_neuroscience_list():
    names = read_journals("neuro")
    assert len(names) == 100
    assert {"Neuron", "J Neurosci", "Nature Neuroscience", "Autism Research"} <= set(names)


# --- the protocol, against the local server ----------------------------------------------------


def test_pages_through_the_history_server_and_corpus_build_reads_the_output(fast, tmp_path):
    with EUtilsServer(records(7)) as server:
        out = fetch(server, tmp_path / "pubmed.jsonl.gz", batch_size=3, journals="neuro")
    [search] = server.requests("esearch")
    assert search["params"]["usehistory"] == "y"
    assert (
        search["params"]["mindate"] == "2020/01/01" and search["params"]["maxdate"] == "2020/12/31"
    )
    assert '"Neuron"[Journal] OR' in search["params"]["term"]
    assert search["params"]["term"].endswith("AND (hippocampus)")
    fetches = server.requests("efetch")
    assert [r["params"]["retstart"] for r in fetches] == ["0", "3", "6"]
    for r in fetches:
        assert (r["params"]["WebEnv"], r["params"]["query_key"]) == ("MCID_0001", "1")
        assert (r["params"]["retmax"], r["params"]["retmode"], r["params"]["db"]) == (
            "3",
            "xml",
            "pubmed",
        )
        assert (r["params"]["tool"], r["params"]["email"]) == ("expertlm", "me@example.org")
        assert "api_key" not in r["params"]
    docs = read_out(out)
    assert [d["id"] for d in docs] == [str(1000 + i) for i in range(7)]
    assert docs[0] == {
        "id": "1000", "year": 2020, "journal": records(1)[0].journal, "doi": "10.1000/x0",
        "title": "Study 0 of cortex",
        "text": "Study 0 of cortex\nFinding number 0: neurons fired more after training.",
    }  # fmt: skip
    state = json.loads((tmp_path / ".pubmed.jsonl.gz.state.json").read_text())
    assert state["complete"] and state["counts"]["written"] == 7
    assert not (tmp_path / ".pubmed.jsonl.gz.part").exists()

    corpus = corpus_build([out], tmp_path / "corpus", min_chars=0, keep_fields=["journal", "doi"])
    manifest = json.loads((corpus / "manifest.json").read_text())
    assert manifest["counts"]["kept"] == 7
    built = read_out(corpus / "train.jsonl.gz") + read_out(corpus / "val.jsonl.gz")
    assert sorted(d["id"] for d in built) == [str(1000 + i) for i in range(7)]
    assert all(d["year"] == 2020 and d["doi"].startswith("10.1000/") for d in built)


def test_429_waits_for_retry_after_then_succeeds(fast, tmp_path):
    with EUtilsServer(records(4), retry_after="1") as server:
        server.fault("efetch", "429", retstart=2)
        out = fetch(server, tmp_path / "p.jsonl", batch_size=2)
    fetches = server.requests("efetch")
    assert [(r["params"]["retstart"], r["action"]) for r in fetches] == [
        ("0", None),
        ("2", "429"),
        ("2", None),
    ]
    assert fetches[2]["t"] - fetches[1]["t"] >= 1.0  # the server's Retry-After, not our backoff
    assert len(read_out(out)) == 4


def test_transient_failures_are_retried(fast, tmp_path):
    with EUtilsServer(records(6)) as server:
        server.fault("esearch", "503")
        server.fault("efetch", "drop", retstart=0)
        server.fault("efetch", "truncate", retstart=2)
        server.fault("efetch", "500", retstart=4)
        out = fetch(server, tmp_path / "p.jsonl.gz", batch_size=2)
    assert [d["id"] for d in read_out(out)] == [str(1000 + i) for i in range(6)]
    assert retstarts(server) == [0, 2, 4]


def test_expired_history_is_searched_again(fast, tmp_path):
    with EUtilsServer(records(6)) as server:
        server.fault("efetch", "expire", retstart=2)
        out = fetch(server, tmp_path / "p.jsonl.gz", batch_size=2)
    assert len(server.requests("esearch")) == 2
    assert [d["id"] for d in read_out(out)] == [str(1000 + i) for i in range(6)]


def test_dropped_connection_then_resume_without_duplicates(fast, monkeypatch, tmp_path):
    monkeypatch.setattr(pubmed, "RETRIES", 1)
    out = tmp_path / "p.jsonl.gz"
    part = tmp_path / ".p.jsonl.gz.part"
    with EUtilsServer(records(10)) as server:
        server.fault("efetch", "drop", times=99, retstart=6)
        with pytest.raises(ExpertlmError, match="re-run the same command to resume") as err:
            fetch(server, out, batch_size=3)
        assert "batch 3/4" in str(err.value)
        assert not out.exists()
        assert len(part.read_bytes().splitlines()) == 6  # batches 1 and 2 are committed
        # a crash between writing a batch and committing it leaves a partial line behind
        with open(part, "ab") as f:
            f.write(b'{"id": "1006", "text": "half a li')
        server.faults.clear()
        first_run = len(server.requests("efetch"))
        fetch(server, out, batch_size=3)
    docs = read_out(out)
    assert [d["id"] for d in docs] == [str(1000 + i) for i in range(10)]  # each exactly once
    second_run = [int(r["params"]["retstart"]) for r in server.requests("efetch")[first_run:]]
    assert second_run == [6, 9]  # batches done before were not fetched again
    assert not part.exists()


def test_killed_process_resumes_without_duplicates(tmp_path):
    """SIGKILL in the middle of a real download (a process, real rate limit), then a re-run."""
    env = {**os.environ, "EXPERTLM_NO_PROGRESS": "1"}
    env.pop("NCBI_API_KEY", None)
    out = tmp_path / "p.jsonl.gz"
    with EUtilsServer(records(12)) as server:
        cmd = [sys.executable, "-m", "expertlm", "corpus", "pubmed", "--query", "x", "--from", "2020",
               "--to", "2020", "--email", "me@example.org", "--base-url", server.url,
               "--batch-size", "1", "--out", str(out)]  # fmt: skip
        proc = subprocess.Popen(cmd, env=env, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while len(server.requests("efetch")) < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.kill()
        proc.wait()
        assert not out.exists()
        killed_at = len(server.requests("efetch"))
        assert 4 <= killed_at < 12
        subprocess.run(cmd, env=env, capture_output=True, timeout=60, check=True)
    assert [d["id"] for d in read_out(out)] == [str(1000 + i) for i in range(12)]
    # at most the batch in flight at the kill is fetched twice
    assert len(server.requests("efetch")) <= 12 + 1


def test_duplicate_pmids_are_written_once(fast, tmp_path):
    recs = records(4)
    recs.append(Rec("1001", date(2020, 6, 1)))  # the same PMID again, at another position
    with EUtilsServer(recs) as server:
        out = fetch(server, tmp_path / "p.jsonl", batch_size=10)
    assert [d["id"] for d in read_out(out)] == ["1000", "1001", "1002", "1003"]
    state = json.loads((tmp_path / ".p.jsonl.state.json").read_text())
    assert state["counts"]["duplicate"] == 1


def test_malformed_xml_names_the_batch_and_a_rerun_resumes(fast, tmp_path):
    out = tmp_path / "p.jsonl.gz"
    with EUtilsServer(records(9)) as server:
        server.fault("efetch", "badxml", retstart=3)
        with pytest.raises(ExpertlmError) as err:
            fetch(server, out, batch_size=3)
        msg = str(err.value)
        assert "PubMed efetch 2020/01/01-2020/12/31 batch 2/3 (records 4-6): malformed XML" in msg
        assert "mismatched tag" in msg
        fetch(server, out, batch_size=3)
    assert len(read_out(out)) == 9
    fetched = [(r["params"]["retstart"], r["action"]) for r in server.requests("efetch")]
    assert fetched == [("0", None), ("3", "badxml"), ("3", None), ("6", None)]


def test_a_range_over_the_esearch_window_is_split_by_date(fast, monkeypatch, tmp_path):
    monkeypatch.setattr(pubmed, "ESEARCH_WINDOW", 10)
    # 16 records, 8 in each half of 2020 (bisected at 2020/07/01 | 2020/07/02)
    recs = records(8, date(2020, 1, 6), 14) + records(8, date(2020, 7, 6), 14, first=2000)
    with EUtilsServer(recs, window=10) as server:
        out = fetch(server, tmp_path / "p.jsonl.gz", batch_size=4)
    ranges = [(r["params"]["mindate"], r["params"]["maxdate"]) for r in server.requests("esearch")]
    assert ranges == [
        ("2020/01/01", "2020/12/31"),
        ("2020/01/01", "2020/07/01"),
        ("2020/07/02", "2020/12/31"),
    ]
    assert max(retstarts(server)) < 10  # never past the window
    assert sorted(d["id"] for d in read_out(out)) == sorted(r.pmid for r in recs)
    state = json.loads((tmp_path / ".p.jsonl.gz.state.json").read_text())
    assert state["split"] == ["2020/01/01-2020/12/31"]
    assert state["done"] == ["2020/01/01-2020/07/01", "2020/07/02-2020/12/31"]


def test_one_day_over_the_window_keeps_what_esearch_reaches_and_says_so(
    fast, monkeypatch, tmp_path
):
    monkeypatch.setattr(pubmed, "ESEARCH_WINDOW", 4)
    recs = records(6, date(2020, 3, 3), 0)
    with EUtilsServer(recs, window=4) as server:
        out = fetch(server, tmp_path / "p.jsonl", batch_size=4)
    assert len(read_out(out)) == 4
    state = json.loads((tmp_path / ".p.jsonl.state.json").read_text())
    assert state["counts"]["over_window"] == 2


def test_finished_output_is_not_fetched_again_and_other_options_need_overwrite(fast, tmp_path):
    out = tmp_path / "p.jsonl.gz"
    with EUtilsServer(records(3)) as server:
        fetch(server, out)
        n = len(server.log)
        fetch(server, out)
        assert len(server.log) == n
        with pytest.raises(ExpertlmError, match="--overwrite"):
            fetch(server, out, query="cortex")
        fetch(server, out, query="cortex", overwrite=True)
    assert len(read_out(out)) == 3


# --- politeness, measured at the server --------------------------------------------------------


def test_request_rate_without_a_key_is_at_most_3_per_second(monkeypatch, tmp_path):
    monkeypatch.delenv("NCBI_API_KEY", raising=False)
    with EUtilsServer(records(7)) as server:
        t0 = time.monotonic()
        fetch(server, tmp_path / "p.jsonl.gz", batch_size=1)
        elapsed = time.monotonic() - t0
    times = [r["t"] for r in server.log]
    assert len(times) == 8
    assert max_in_window(times) <= 3
    assert elapsed < 4.0  # and not much slower than the limit (7 gaps of 0.35 s)


def test_api_key_raises_the_rate_to_10_and_is_never_written(monkeypatch, tmp_path):
    secret = "sekret-KEY-0123456789"
    monkeypatch.setenv("NCBI_API_KEY", secret)
    out_dir = tmp_path / "out"
    with EUtilsServer(records(14)) as server:
        fetch(server, out_dir / "p.jsonl.gz", batch_size=1)
        # an error body that echoes the key back (as NCBI does for a bad key) is redacted
        server.fault("esearch", "echo400")
        with pytest.raises(ExpertlmError) as err:
            fetch(server, out_dir / "q.jsonl.gz", batch_size=1)
    assert secret not in str(err.value) and "***" in str(err.value)
    assert all(r["params"].get("api_key") == secret for r in server.log)
    times = [r["t"] for r in server.log[:15]]
    assert max_in_window(times) <= 10
    assert max_in_window(times) >= 8  # the key's rate is used, not 3/s
    for path in out_dir.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            if path.name.endswith(".gz"):
                data = gzip.decompress(data)
            assert secret.encode() not in data, path


def test_cli_downloads_and_errors_are_one_line(tmp_path):
    env = {**os.environ, "EXPERTLM_NO_PROGRESS": "1"}
    env.pop("NCBI_API_KEY", None)

    def cli(*args):
        cmd = [sys.executable, "-m", "expertlm", "corpus", "pubmed", "--query", "x", "--from", "2020",
               "--to", "2020", "--email", "me@example.org", "--base-url", server.url, *map(str, args)]  # fmt: skip
        return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)

    with EUtilsServer(records(2)) as server:
        ok = cli("--out", tmp_path / "ok.jsonl.gz", "--journals", "neuro")
        server.fault("efetch", "badxml")
        proc = cli("--out", tmp_path / "p.jsonl.gz")
        bad = cli("--out", tmp_path / "p.txt", "--batch-size", "0")
    assert ok.returncode == 0, ok.stderr
    assert [d["id"] for d in read_out(tmp_path / "ok.jsonl.gz")] == ["1000", "1001"]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "batch 1/1 (records 1-2): malformed XML" in errors[0]
    assert bad.returncode == 2
    assert "option --out" in bad.stderr and "option --batch-size" in bad.stderr


# --- PubMed Central, through pubget's output -----------------------------------------------------


def write_pubget_output(folder: Path, articles: list[dict]) -> Path:
    """pubget's extracted data as it writes it: metadata.csv and text.csv (csv.DictWriter)."""
    import csv

    ext = folder / "subset_allArticles_extractedData"
    ext.mkdir(parents=True)
    meta_cols = ["pmcid", "pmid", "doi", "title", "journal", "publication_year", "license"]
    text_cols = ["pmcid", "title", "keywords", "abstract", "body"]
    for name, cols in (("metadata.csv", meta_cols), ("text.csv", text_cols)):
        with open(ext / name, "w", encoding="utf-8", newline="") as f:
            w = csv.DictWriter(f, cols, extrasaction="ignore")
            w.writeheader()
            w.writerows(articles)
    return ext


ARTICLES = [
    {"pmcid": 111, "pmid": 9001, "doi": "10.1/a", "title": "Place cells", "journal": "J Neurosci",
     "publication_year": 2015, "license": "CC BY", "keywords": "hippocampus",
     "abstract": "We recorded CA1.", "body": "Introduction\nPlace cells fire, in \"fields\".\n\nMethods\nRats ran."},
    {"pmcid": 222, "pmid": "", "doi": "", "title": "No body", "journal": "Neuron",
     "publication_year": 2016, "abstract": "Only an abstract.", "body": ""},
    {"pmcid": 333, "pmid": 9003, "doi": "10.1/c", "title": "Too new", "journal": "Neuron",
     "publication_year": 2023, "abstract": "A.", "body": "Body."},
]  # fmt: skip


def test_pmc_converts_pubget_output_with_body_text_and_year(tmp_path):
    from expertlm.corpus.pmc import corpus_pmc

    write_pubget_output(tmp_path / "pubget_data" / "query_abc", ARTICLES)
    out = corpus_pmc(tmp_path / "pmc.jsonl.gz", pubget_dir=tmp_path / "pubget_data", to_year=2022)
    [doc] = read_out(out)
    assert doc == {
        "id": "PMC111", "pmid": "9001", "doi": "10.1/a", "journal": "J Neurosci", "year": 2015,
        "license": "CC BY", "title": "Place cells",
        "text": "Place cells\n\nWe recorded CA1.\n\nIntroduction\nPlace cells fire, in \"fields\".\n\nMethods\nRats ran.",
    }  # fmt: skip
    corpus = corpus_build([out], tmp_path / "corpus", min_chars=0, max_year=2022)
    assert json.loads((corpus / "manifest.json").read_text())["counts"]["kept"] == 1


def test_pmc_runs_pubget_with_the_query_years_and_key(tmp_path, monkeypatch):
    import types

    from expertlm.corpus.pmc import corpus_pmc

    calls = {}

    def download_query_results(query, data_dir, api_key=None):
        calls.update(query=query, data_dir=Path(data_dir), api_key=api_key)
        return Path(data_dir) / "query_x" / "articlesets", 0

    def extract_articles(articlesets):
        return articlesets.parent / "articles", 0

    def extract_data_to_csv(articles):
        return write_pubget_output(articles.parent, ARTICLES[:1]), 0

    fake = types.ModuleType("pubget")
    fake.download_query_results = download_query_results
    fake.extract_articles = extract_articles
    fake.extract_data_to_csv = extract_data_to_csv
    monkeypatch.setitem(sys.modules, "pubget", fake)
    monkeypatch.setenv("NCBI_API_KEY", "k-123")
    journals = tmp_path / "j.txt"
    journals.write_text("Neuron\n")
    out = corpus_pmc(
        tmp_path / "pmc.jsonl", query="memory", journals=journals, from_year=2002, to_year=2022
    )
    assert calls == {
        "query": '("Neuron"[Journal]) AND (memory) AND (2002[PubDate] : 2022[PubDate])',
        "data_dir": tmp_path / "pubget_data",
        "api_key": "k-123",
    }
    assert [d["id"] for d in read_out(out)] == ["PMC111"]


def test_pmc_without_pubget_says_what_to_install(tmp_path, monkeypatch):
    from expertlm.corpus.pmc import corpus_pmc

    monkeypatch.setitem(sys.modules, "pubget", None)  # import pubget -> ImportError
    with pytest.raises(ExpertlmError, match=r"pip install 'expertlm\[pmc\]'"):
        corpus_pmc(tmp_path / "pmc.jsonl.gz", query="memory")
    assert not (tmp_path / "pmc.jsonl.gz").exists()


def test_pmc_bad_pubget_output_is_a_clear_error(tmp_path):
    from expertlm.corpus.pmc import corpus_pmc

    with pytest.raises(ExpertlmError, match="no pubget output"):
        corpus_pmc(tmp_path.parent / f"{tmp_path.name}-o.jsonl", pubget_dir=tmp_path)
    ext = write_pubget_output(tmp_path / "a", ARTICLES)
    write_pubget_output(tmp_path / "b", ARTICLES)
    with pytest.raises(ExpertlmError, match="holds the output of 2 pubget queries"):
        corpus_pmc(tmp_path.parent / f"{tmp_path.name}-o.jsonl", pubget_dir=tmp_path)
    (ext / "text.csv").write_text("pmcid,title\n1,x\n")
    with pytest.raises(ExpertlmError, match=r"text.csv: missing column\(s\) abstract, body"):
        corpus_pmc(tmp_path.parent / f"{tmp_path.name}-o.jsonl", pubget_dir=ext)
