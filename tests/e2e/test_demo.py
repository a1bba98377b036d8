"""End to end: `expertlm demo --quick` through the real CLI, offline, to a report whose figures
render in headless Chromium (skipped when Chromium is not installed; `.ci/run` installs it)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile

import pytest

pytestmark = pytest.mark.e2e


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    return None


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("e2e-demo") / "demo"
    env = {**os.environ, "EXPERTLM_NO_PROGRESS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "expertlm", "demo", "--quick", "--out", str(out)],
                          capture_output=True, text=True, env=env, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return out, proc


def test_demo_quick_writes_the_report(demo):
    out, proc = demo
    assert f"report: {out / 'report' / 'index.html'}" in proc.stderr
    for f in ("index.html", "report.md", "accuracy.png", "tables.csv"):
        assert (out / "report" / f).is_file()
    assert "45 of 45 stages ran" in proc.stderr


@pytest.mark.skipif(
    chromium() is None, reason="Chromium is not installed (apt-get install chromium)"
)
def test_report_figures_render_in_headless_chromium(demo):
    out, _ = demo
    page = (out / "report" / "index.html").resolve()
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.run(
            [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", "--virtual-time-budget=10000", "--dump-dom", page.as_uri()],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    body = re.search(r"<body[^>]*>", proc.stdout)
    assert body is not None, proc.stdout[:500]
    # the page's own check: every <img> decoded with a non-zero size
    assert 'data-figures="ok"' in body.group(0), body.group(0)
    assert proc.stdout.count("<img") >= 4
