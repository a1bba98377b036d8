"""Downloads: a polite HTTP client, and `expertlm bench fetch brainbench`.

`Http` is the one place expertlm talks to a server: request starts are spaced so that no more
than `rate` requests start in any second, and 429, 5xx, timeouts and dropped connections are
retried with exponential backoff (a server's Retry-After wins). It is the standard library's
urllib underneath, so any URL works, a local test server included. The E-utilities client
(`corpus/pubmed.py`) is built on it.

`bench_fetch("brainbench", out)` downloads the published BrainBench test cases and the human
participant data from the authors' GitHub repositories at pinned commits, checks them (columns,
row counts) and writes them, with their sha256 in `manifest.json`, into one folder:

    OUT/BrainBench_Human_v0.1.csv    200 items written by neuroscientists
    OUT/BrainBench_GPT-4_v0.1.csv    100 items written by GPT-4
    OUT/participant_data.csv         one row per trial of the human experts
    OUT/abstract_id_doi.csv          the trials' abstract_id -> DOI of the item
    OUT/manifest.json
"""

from __future__ import annotations

import csv
import email.utils
import http.client
import io
import shutil
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from expertlm.console import info, warn
from expertlm.errors import ExpertlmError
from expertlm.io import atomic_dir, check_output_dir, provenance, sha256_file, write_json

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# A server's Retry-After is obeyed up to this many seconds (a longer wait is a broken server).
MAX_RETRY_AFTER_S = 300.0


class DownloadError(ExpertlmError):
    """A request that failed for good (retries spent, or an error that retrying cannot fix)."""


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header: delay-seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class Http:
    """HTTP GET/POST with a request-rate ceiling and retries with exponential backoff.

    `rate`: at most this many request starts in any one-second window (starts are spaced
    1.05/rate apart; the 5% is room for scheduling jitter on either side). `retries`: further
    attempts after a retryable failure, waiting `backoff_s * 2**attempt` (at most
    `max_backoff_s`) or what Retry-After says. `secrets` are removed from every message this
    client produces (an API key that a server echoes back in an error body, say).
    """

    def __init__(
        self,
        rate: float,
        *,
        retries: int = 6,
        backoff_s: float = 1.0,
        max_backoff_s: float = 60.0,
        timeout_s: float = 120.0,
        secrets: tuple[str, ...] = (),
    ) -> None:
        from expertlm import __version__

        self.interval = 1.05 / rate
        self.retries, self.backoff_s, self.max_backoff_s = retries, backoff_s, max_backoff_s
        self.timeout_s = timeout_s
        self.secrets = tuple(s for s in secrets if s)
        self.user_agent = f"expertlm/{__version__} (+python-urllib)"
        self.requests = 0  # attempts actually sent, retries included
        self._next_start = 0.0

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def _wait_turn(self) -> None:
        now = time.monotonic()
        if now < self._next_start:
            time.sleep(self._next_start - now)
            now = time.monotonic()
        self._next_start = now + self.interval

    def request(self, url: str, data: dict[str, Any] | None = None, what: str = "") -> bytes:
        """The body of a GET (`data` None) or a form POST to `url`. Parameters go in the POST
        body, never in the URL, so they appear in no log line or error message."""
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        what = what or url
        for attempt in range(self.retries + 1):
            self._wait_turn()
            self.requests += 1
            req = urllib.request.Request(url, data=body, headers={"User-Agent": self.user_agent})
            wait = min(self.backoff_s * 2**attempt, self.max_backoff_s)
            try:
                with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                    return resp.read()
            except urllib.error.HTTPError as e:
                html = "html" in (e.headers.get("Content-Type") or "")
                detail = (
                    ""
                    if html or not e.fp
                    else " ".join(e.read(300).decode("utf-8", "replace").split())
                )
                reason = f"HTTP {e.code} {e.reason}" + (f": {detail}" if detail else "")
                if e.code not in RETRY_STATUSES:
                    raise DownloadError(self.redact(f"{what}: {reason}")) from None
                if (after := _retry_after(e.headers.get("Retry-After"))) is not None:
                    wait = min(after, MAX_RETRY_AFTER_S)
            except urllib.error.URLError as e:
                if isinstance(e.reason, socket.gaierror):  # no DNS: offline, or a wrong host
                    raise DownloadError(
                        self.redact(f"{what}: cannot resolve the host ({e.reason})")
                    ) from None
                reason = f"{e.reason}"
            except (TimeoutError, ConnectionError, http.client.HTTPException, OSError) as e:
                # a dropped connection, a reset, a truncated body (IncompleteRead), a timeout
                reason = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
            if attempt == self.retries:
                raise DownloadError(
                    self.redact(f"{what}: {reason} (gave up after {attempt + 1} attempts)")
                )
            warn(
                self.redact(f"{what}: {reason}; retry {attempt + 1}/{self.retries} in {wait:.1f} s")
            )
            time.sleep(wait)
        raise AssertionError("unreachable")


# --- BrainBench --------------------------------------------------------------------------------

DEFAULT_BASE_URL = "https://raw.githubusercontent.com/"
# The commits the authors' own analysis code pins for these two repositories, used as git
# submodules (named in the README of braingpt-lovelab/backwards; braingpt-lovelab/
# matching_experts has the same two submodules), so everyone scores the same items.
TESTCASES_REPO = "braingpt-lovelab/brainbench_testcases"
TESTCASES_COMMIT = "89869dab3be1ec096dc38931ea33e43268c65d30"
PARTICIPANTS_REPO = "braingpt-lovelab/brainbench_participant_data"
PARTICIPANTS_COMMIT = "bd1536e99c23d0d1d96d2d3d09bb9a4f52c8e170"

TESTCASE_COLUMNS = ("doi", "journal_section", "original_abstract", "incorrect_abstract")
PARTICIPANT_COLUMNS = (
    "pid", "expertise", "confidence", "click_outside", "correct", "rt", "abstract_id",
    "journal_section", "click_slider", "recognised", "age", "country", "current position",
    "experience", "sex",
)  # fmt: skip
TRIALS_PER_PARTICIPANT = 9
FETCH_RATE = 3.0  # requests per second to the file host
FETCH_RETRIES = 4
ABSTRACT_IDS = 200


def _csv_rows(path: Path, delimiter: str = ",") -> tuple[list[str], list[list[str]]]:
    csv.field_size_limit(sys.maxsize)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ExpertlmError(f"{path}: not valid UTF-8 (at byte {e.start})") from None
    try:
        rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    except csv.Error as e:
        raise ExpertlmError(f"{path}: malformed CSV ({e})") from None
    if not rows:
        raise ExpertlmError(f"{path}: empty file")
    return rows[0], [r for r in rows[1:] if r]


def _need_columns(path: Path, header: list[str], needed: tuple[str, ...]) -> None:
    missing = [c for c in needed if c not in header]
    if missing:
        raise ExpertlmError(
            f"{path}: missing column(s) {', '.join(missing)} (columns: {', '.join(header)})"
        )


def _check_testcases(rows_expected: int) -> Callable[[Path], dict]:
    def check(path: Path) -> dict:
        from expertlm.bench import read_benchmark

        header, rows = _csv_rows(path)
        _need_columns(path, header, TESTCASE_COLUMNS)
        if len(rows) != rows_expected:
            raise ExpertlmError(f"{path}: {len(rows)} items, expected {rows_expected}")
        items = read_benchmark(path)  # every item has two different, non-empty versions
        return {"rows": len(items), "columns": header}

    return check


def _check_participants(path: Path) -> dict:
    header, rows = _csv_rows(path)
    _need_columns(path, header, PARTICIPANT_COLUMNS)
    col = {name: header.index(name) for name in PARTICIPANT_COLUMNS}
    trials: Counter = Counter()
    for i, row in enumerate(rows, 2):
        if len(row) != len(header):
            raise ExpertlmError(f"{path}:{i}: {len(row)} fields, the header has {len(header)}")
        if row[col["correct"]] not in ("0", "1"):
            raise ExpertlmError(f"{path}:{i}: correct is {row[col['correct']]!r}, not 0 or 1")
        if not row[col["journal_section"]].startswith(("human_", "machine_")):
            raise ExpertlmError(
                f"{path}:{i}: journal_section {row[col['journal_section']]!r} does not start with human_ or machine_"
            )
        trials[row[col["pid"]]] += 1
    if not rows:
        raise ExpertlmError(f"{path}: no trials")
    pid, most = trials.most_common(1)[0]
    if most > TRIALS_PER_PARTICIPANT:
        raise ExpertlmError(
            f"{path}: participant {pid} has {most} trials (at most {TRIALS_PER_PARTICIPANT})"
        )
    return {"rows": len(rows), "columns": header, "participants": len(trials)}


def _check_abstract_ids(path: Path) -> dict:
    # `DOI;abstract_id;abstract`, semicolon-separated, and the abstract column (a truncated
    # first sentence) holds unbalanced quotes, so it is split by hand, not read as CSV.
    lines = path.read_bytes().decode("utf-8-sig").splitlines()
    if not lines or lines[0].strip() != "DOI;abstract_id;abstract":
        raise ExpertlmError(f"{path}: expected the header 'DOI;abstract_id;abstract'")
    ids = []
    for i, line in enumerate(lines[1:], 2):
        if not line.strip():
            continue
        parts = line.split(";", 2)
        try:
            ids.append(int(float(parts[1])))
        except (IndexError, ValueError):
            raise ExpertlmError(f"{path}:{i}: no numeric abstract_id") from None
    if sorted(ids) != list(range(1, ABSTRACT_IDS + 1)):
        raise ExpertlmError(f"{path}: expected abstract ids 1..{ABSTRACT_IDS} once each")
    return {"rows": len(ids), "columns": ["DOI", "abstract_id", "abstract"]}


@dataclass(frozen=True)
class Remote:
    """One published file: where it lives and how to check it."""

    name: str  # its name in the output folder
    repo: str
    commit: str
    path: str  # inside the repository
    check: Callable[[Path], dict]

    def url(self, base_url: str) -> str:
        return f"{base_url.rstrip('/')}/{self.repo}/{self.commit}/{self.path}"


BRAINBENCH = (
    Remote("BrainBench_Human_v0.1.csv", TESTCASES_REPO, TESTCASES_COMMIT,
           "BrainBench_Human_v0.1.csv", _check_testcases(200)),
    Remote("BrainBench_GPT-4_v0.1.csv", TESTCASES_REPO, TESTCASES_COMMIT,
           "BrainBench_GPT-4_v0.1.csv", _check_testcases(100)),
    Remote("participant_data.csv", PARTICIPANTS_REPO, PARTICIPANTS_COMMIT,
           "data/participant_data.csv", _check_participants),
    Remote("abstract_id_doi.csv", PARTICIPANTS_REPO, PARTICIPANTS_COMMIT,
           "abstract_id_doi.csv", _check_abstract_ids),
)  # fmt: skip
BENCHMARKS = {"brainbench": BRAINBENCH}


def _manual_steps(remotes: tuple[Remote, ...], base_url: str, out: Path) -> str:
    urls = "\n".join(f"  {r.url(base_url)}" for r in remotes)
    return (
        f"To fetch it by hand, download these files into one folder (any machine with a browser):\n"
        f"{urls}\nthen run:  expertlm bench fetch brainbench --out {out} --from-dir FOLDER"
    )


def bench_fetch(
    name: str,
    out: str | Path,
    *,
    base_url: str = DEFAULT_BASE_URL,
    from_dir: str | Path | None = None,
    overwrite: bool = False,
) -> Path:
    """Download a published benchmark (`brainbench`) into the folder `out`, checked, with a
    manifest of sources, commits, row counts and sha256. `from_dir`: take the files from a
    local folder instead (downloaded by hand) and check them the same way."""
    if name not in BENCHMARKS:
        raise ExpertlmError(f"unknown benchmark {name!r} (known: {', '.join(BENCHMARKS)})")
    remotes = BENCHMARKS[name]
    out = Path(out)
    check_output_dir(out, overwrite)
    if from_dir is not None and not Path(from_dir).is_dir():
        raise ExpertlmError(f"{from_dir}: no such folder")
    http = Http(rate=FETCH_RATE, retries=FETCH_RETRIES)
    files: dict[str, dict] = {}
    with atomic_dir(out, overwrite) as tmp:
        for remote in remotes:
            dest = tmp / remote.name
            if from_dir is not None:
                src = Path(from_dir) / remote.name
                if not src.is_file():
                    raise ExpertlmError(
                        f"{src}: missing (expected the files {', '.join(r.name for r in remotes)})"
                    )
                shutil.copyfile(src, dest)
                origin = str(src)
            else:
                origin = remote.url(base_url)
                info(f"downloading {origin}")
                try:
                    dest.write_bytes(http.request(origin))
                except DownloadError:
                    info(_manual_steps(remotes, base_url, out))
                    raise
            facts = remote.check(dest)
            files[remote.name] = {
                "source": origin,
                "repo": remote.repo,
                "commit": remote.commit,
                "path": remote.path,
                "bytes": dest.stat().st_size,
                "sha256": sha256_file(dest),
                **facts,
            }
        write_json(
            tmp / "manifest.json",
            {"format": "expertlm.bench-fetch/1", "benchmark": name, "files": files, **provenance()},
        )
    for fname, facts in files.items():
        info(f"  {fname}: {facts['rows']} rows, sha256 {facts['sha256'][:12]}")
    info(f"{name}: {len(files)} files checked -> {out}")
    return out


__all__ = ["DownloadError", "Http", "bench_fetch"]
