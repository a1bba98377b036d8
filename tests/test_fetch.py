"""`bench fetch brainbench` against a local server holding files in the published formats (the
tests write them): the pinned paths, the checks, the manifest, the manual route, clear errors;
and the polite client's retry of a transient failure."""

from __future__ import annotations

import csv
import http.server
import io
import json
import os
import socket
import subprocess
import sys
import threading

import pytest

from expertlm import net
from expertlm.errors import ExpertlmError
from expertlm.eval import fetch
from expertlm.eval.benchmark import read_benchmark
from expertlm.eval.fetch import BRAINBENCH, bench_fetch
from expertlm.io import sha256_file
from expertlm.net import Http

SECTIONS = ["Behavioral/Cognitive", "Systems/Circuits", "Cellular/Molecular",
            "Neurobiology of Disease", "Development/Plasticity/Repair"]  # fmt: skip


def csv_bytes(rows: list[list], delimiter: str = ",") -> bytes:
    buf = io.StringIO()
    csv.writer(buf, delimiter=delimiter, lineterminator="\n").writerows(rows)
    return buf.getvalue().encode()


def make_testcases(n: int) -> bytes:
    rows = [
        ["doi", "journal_section", "original_abstract", "incorrect_abstract", "combined_abstract"]
    ]
    for i in range(n):
        a = f"Background of study {i}, with a comma. Activity increased after training."
        b = a.replace("increased", "decreased")
        rows.append([f"https://doi.org/10.1523/JNEUROSCI.{i:04d}-22.2023", SECTIONS[i % 5], a, b,
                     a.replace("increased", "[[increased, decreased]]")])  # fmt: skip
    return csv_bytes(rows)


PARTICIPANT_HEADER = ["", "pid", "expertise", "confidence", "click_outside", "correct", "rt",
                      "abstract_id", "journal_section", "click_slider", "recognised", "age",
                      "country", "current position", "experience", "sex"]  # fmt: skip


def participants(n_people: int = 4, trials: int = 9) -> bytes:
    rows, i = [PARTICIPANT_HEADER], 0
    for p in range(n_people):
        for t in range(trials):
            who = "human" if t % 3 else "machine"
            rows.append([i, f"{9940143 + p}.0", 1 + t, 50, "clicked" if t % 2 else "", t % 2, 60000 + t,
                         f"{1 + (p * 9 + t) % 200}.0", f"{who}_{SECTIONS[t % 5]}", 1, 0, 30 + p,
                         "Spain", "Postdoctoral researcher", 5, "Female"])  # fmt: skip
            i += 1
    return csv_bytes(rows)


def abstract_ids(n: int = 200) -> bytes:
    lines = ["DOI;abstract_id;abstract"] + [
        f'https://doi.org/10.1523/JNEUROSCI.{i:04d}-22.2023;{i};"first Background of study {i}'
        for i in range(1, n + 1)
    ]
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture(autouse=True)
def _no_wait(monkeypatch):
    monkeypatch.setattr(fetch, "FETCH_RATE", 1000.0)


def published() -> dict[str, bytes]:
    return {
        "BrainBench_Human_v0.1.csv": make_testcases(200),
        "BrainBench_GPT-4_v0.1.csv": make_testcases(100),
        "participant_data.csv": participants(),
        "abstract_id_doi.csv": abstract_ids(),
    }


class FileServer:
    """Serves {url path: bytes} on 127.0.0.1; 404 for anything else; logs the paths asked."""

    def __init__(self, files: dict[str, bytes]):
        self.files, self.log = files, []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server.log.append(self.path)
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def serve(files: dict[str, bytes]) -> FileServer:
    """Files under the same paths as on GitHub: OWNER/REPO/COMMIT/PATH."""
    by_name = {r.name: r for r in BRAINBENCH}
    return FileServer(
        {f"/{by_name[n].repo}/{by_name[n].commit}/{by_name[n].path}": b for n, b in files.items()}
    )


def test_fetch_writes_the_checked_files_and_a_manifest(tmp_path):
    files = published()
    with serve(files) as server:
        out = bench_fetch("brainbench", tmp_path / "bb", base_url=server.url)
    assert sorted(server.log) == sorted([
        "/braingpt-lovelab/brainbench_testcases/89869dab3be1ec096dc38931ea33e43268c65d30/BrainBench_Human_v0.1.csv",
        "/braingpt-lovelab/brainbench_testcases/89869dab3be1ec096dc38931ea33e43268c65d30/BrainBench_GPT-4_v0.1.csv",
        "/braingpt-lovelab/brainbench_participant_data/bd1536e99c23d0d1d96d2d3d09bb9a4f52c8e170/data/participant_data.csv",
        "/braingpt-lovelab/brainbench_participant_data/bd1536e99c23d0d1d96d2d3d09bb9a4f52c8e170/abstract_id_doi.csv",
    ])  # fmt: skip
    assert sorted(p.name for p in out.iterdir()) == sorted([*files, "manifest.json"])
    for name, data in files.items():
        assert (out / name).read_bytes() == data
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["benchmark"] == "brainbench"
    human = manifest["files"]["BrainBench_Human_v0.1.csv"]
    assert human["rows"] == 200 and human["commit"] == fetch.TESTCASES_COMMIT
    assert human["sha256"] == sha256_file(out / "BrainBench_Human_v0.1.csv")
    assert human["source"].startswith(server.url)
    assert manifest["files"]["BrainBench_GPT-4_v0.1.csv"]["rows"] == 100
    assert manifest["files"]["participant_data.csv"]["participants"] == 4
    assert manifest["files"]["participant_data.csv"]["rows"] == 36
    assert manifest["files"]["abstract_id_doi.csv"]["rows"] == 200
    assert len(read_benchmark(out / "BrainBench_Human_v0.1.csv")) == 200


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("BrainBench_GPT-4_v0.1.csv", make_testcases(99), "99 items, expected 100"),
        ("BrainBench_Human_v0.1.csv", csv_bytes([["doi", "original_abstract"], ["d", "x"]]),
         "missing column(s) journal_section, incorrect_abstract"),
        ("participant_data.csv", participants(trials=10), "has 10 trials (at most 9)"),
        ("participant_data.csv", csv_bytes([PARTICIPANT_HEADER[1:-1]]), "missing column(s) sex"),
        ("abstract_id_doi.csv", abstract_ids(199), "expected abstract ids 1..200"),
    ],
)  # fmt: skip
def test_a_file_that_fails_its_check_stops_the_fetch_and_writes_nothing(
    tmp_path, name, data, message
):
    files = {**published(), name: data}
    with serve(files) as server, pytest.raises(ExpertlmError) as err:
        bench_fetch("brainbench", tmp_path / "bb", base_url=server.url)
    assert name in str(err.value) and message in str(err.value)
    assert not (tmp_path / "bb").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".bb")]


def test_without_the_files_the_error_is_one_line_and_the_manual_steps_are_printed(tmp_path):
    env = {**os.environ, "EXPERTLM_NO_PROGRESS": "1"}
    with FileServer({}) as server:  # answers 404 to everything, as an unreachable mirror
        proc = subprocess.run(
            [sys.executable, "-m", "expertlm", "bench", "fetch", "brainbench", "--out", tmp_path / "bb",
             "--base-url", server.url], capture_output=True, text=True, env=env, timeout=60,
        )  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "HTTP 404" in errors[0]
    for remote in BRAINBENCH:
        assert remote.url(server.url) in proc.stderr
    assert "--from-dir FOLDER" in proc.stderr
    assert not (tmp_path / "bb").exists()


def test_connection_refused_is_retried_then_reported(tmp_path, monkeypatch):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    http = Http(rate=1000, retries=2, backoff_s=0.01)
    with pytest.raises(net.DownloadError, match="gave up after 3 attempts"):
        http.request(f"http://127.0.0.1:{port}/x")
    assert http.requests == 3


def test_manual_route_checks_files_downloaded_by_hand(tmp_path):
    hand = tmp_path / "downloads"
    hand.mkdir()
    for name, data in published().items():
        (hand / name).write_bytes(data)
    out = bench_fetch("brainbench", tmp_path / "bb", from_dir=hand)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["files"]["participant_data.csv"]["source"] == str(hand / "participant_data.csv")
    (hand / "abstract_id_doi.csv").unlink()
    with pytest.raises(ExpertlmError, match="abstract_id_doi.csv: missing"):
        bench_fetch("brainbench", tmp_path / "bb2", from_dir=hand)


def test_existing_output_needs_overwrite_and_unknown_benchmarks_are_named(tmp_path):
    (tmp_path / "bb").mkdir()
    with serve(published()) as server:
        with pytest.raises(ExpertlmError, match="already exists"):
            bench_fetch("brainbench", tmp_path / "bb", base_url=server.url)
        bench_fetch("brainbench", tmp_path / "bb", base_url=server.url, overwrite=True)
    assert (tmp_path / "bb" / "manifest.json").is_file()
    with pytest.raises(ExpertlmError, match="unknown benchmark 'mmlu' \\(known: brainbench\\)"):
        bench_fetch("mmlu", tmp_path / "x")
