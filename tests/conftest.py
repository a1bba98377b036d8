"""Shared fixtures: small, generic helpers for building tiny inputs in tmp_path."""

from __future__ import annotations

import contextlib
import gzip
import json
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _quiet_offline(monkeypatch):
    """No rich progress bars in test output, and never the network (hub ids fail at once)."""
    monkeypatch.setenv("EXPERTLM_NO_PROGRESS", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _write_jsonl(path: str | Path, rows) -> Path:
    """Write `rows` (dicts, or raw strings written as-is) as JSON Lines; gzip if `.gz`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)
    data = lines.encode("utf-8")
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


@pytest.fixture
def write_jsonl():
    """`write_jsonl(path, rows) -> path`: rows are dicts (or raw line strings)."""
    return _write_jsonl


def _left_after_sigkill(cmd: list[str], ready: str = "ready") -> list:
    """Run `cmd`, `kill -9` it once it prints a line containing `ready` (its workers are busy),
    and return the command lines of the processes it had started that are still alive 20 s later
    (then killed)."""
    import os
    import signal
    import subprocess

    import psutil

    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        seen = []
        for line in proc.stdout:
            seen.append(line)
            if ready in line:
                break
        else:
            pytest.fail("the parent never got ready:\n" + "".join(seen))
        started = psutil.Process(proc.pid).children(recursive=True)
        assert started, "the work runs in processes of its own"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        alive = psutil.wait_procs(started, timeout=20)[1]
        left = []
        for p in alive:  # (named, then killed: a failing test leaves nothing behind)
            with contextlib.suppress(psutil.Error):
                left.append(" ".join(p.cmdline()[:4]))
                p.kill()
        return left
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.fixture
def left_after_sigkill():
    """`left_after_sigkill(cmd, ready="ready") -> [command lines]`: what a command killed by
    `kill -9` (once it prints `ready`) leaves running."""
    return _left_after_sigkill
