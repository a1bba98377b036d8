"""The network: the one HTTP client (`Http`) and the one test for a hub id (`is_hub_id`).

`Http` is the one place expertlm talks to a server: request starts are spaced so that no more
than `rate` requests start in any second, and 429, 5xx, timeouts and dropped connections are
retried with exponential backoff (a server's Retry-After wins). It is the standard library's
urllib underneath, so any URL works, a local test server included. The E-utilities client
(`corpus/pubmed.py`) and `bench fetch` (`eval/fetch.py`) are built on it.
"""

from __future__ import annotations

import email.utils
import http.client
import os
import re
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from expertlm.console import warn
from expertlm.errors import ExpertlmError

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


# --- hub ids ---------------------------------------------------------------------------------

_HUB_ID = re.compile(r"[\w][\w.-]*(/[\w.-]+)?")
# Names that are files, never hub ids (a benchmark, a corpus source, an experiment file).
_FILE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".gz", ".yaml", ".yml", ".txt", ".parquet")


def is_hub_id(name: str | object) -> bool:
    """Whether `name` can be a Hugging Face hub id (`gpt2`, `org/model`): one or two parts of
    letters, digits, `_`, `.`, `-`, not starting with `.`, no file suffix. The caller checks
    for a local path first: a folder that exists is always the folder."""
    s = str(name)
    return bool(_HUB_ID.fullmatch(s)) and not s.lower().endswith(_FILE_SUFFIXES)


def hub_reachable() -> bool:
    """Whether the Hugging Face hub can be asked for a model: not when HF_HUB_OFFLINE (or
    TRANSFORMERS_OFFLINE) is set, nor when its host cannot be reached within a few seconds
    (asked once per process: huggingface_hub itself retries a dead network for ~25 s a file)."""
    global _HUB_REACHABLE
    if any(os.environ.get(v, "").lower() in ("1", "true", "yes", "on")
           for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")):  # fmt: skip
        return False
    if _HUB_REACHABLE is None:
        url = urllib.parse.urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
        try:
            socket.create_connection((url.hostname, url.port or 443), timeout=HUB_TIMEOUT_S).close()
            _HUB_REACHABLE = True
        except OSError:
            _HUB_REACHABLE = False
    return _HUB_REACHABLE


HUB_TIMEOUT_S = 3.0
_HUB_REACHABLE: bool | None = None


def require_hub(name: str, what: str) -> None:
    """Fail at once, with a hint, for a name that is no local folder when the hub is out of reach."""
    if not is_hub_id(name):
        raise ExpertlmError(f"{name}: no such {what} folder")
    if not hub_reachable():
        raise ExpertlmError(
            f"{name}: no such {what} folder, and the Hugging Face hub cannot be reached (offline, "
            f"or HF_HUB_OFFLINE is set): give the path of a local {what} folder"
        )
