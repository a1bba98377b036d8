"""End to end: `expertlm demo --quick` through the real CLI, offline, to a report whose figures
render in headless Chromium (skipped when Chromium is not installed; `.ci/run` installs it); a
second run with the same seed writes the same numbers."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    return None


def run_demo(out: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "EXPERTLM_NO_PROGRESS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "expertlm", "demo", "--quick", "--out", str(out)],
                          capture_output=True, text=True, env=env, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return proc


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("e2e-demo") / "demo"
    return out, run_demo(out)


def accuracies(out: Path) -> dict[str, float]:
    return {str(p.relative_to(out)): json.loads(p.read_text())["accuracy"]
            for p in sorted((out / "results").rglob("summary.json"))}  # fmt: skip


def test_demo_quick_writes_the_report(demo):
    out, proc = demo
    assert f"report: {out / 'report' / 'index.html'}" in proc.stderr
    for f in ("index.html", "report.md", "accuracy.png", "tables.csv"):
        assert (out / "report" / f).is_file()
    assert "45 of 45 stages ran" in proc.stderr
    assert re.search(r"demo: \d+ s from start to report", proc.stderr)
    # the report opens with Figure 1 and the plain-language summary, then the paper's claims
    page = (out / "report" / "index.html").read_text()
    first = [page.index(s) for s in ("Figure 1", "class='summary'", "The paper&#x27;s claims", "<h2>Accuracy</h2>")]
    assert first == sorted(first)
    assert "Of the paper&#x27;s 4 comparisons" in page


def test_the_same_seed_gives_the_same_numbers(demo, tmp_path):
    """Two runs on one machine write identical accuracies in every summary.json."""
    out, _ = demo
    run_demo(tmp_path / "again")
    first, again = accuracies(out), accuracies(tmp_path / "again")
    assert len(first) == 7 * 2 and first == again


def png_size_and_ink(path: Path) -> tuple[int, int, float]:
    """Width, height and the share of pixels that are not near-white (Pillow comes with
    matplotlib)."""
    import numpy as np
    from PIL import Image

    with Image.open(path) as im:
        rgb = np.asarray(im.convert("RGB"))
    return im.width, im.height, float((rgb.min(axis=2) < 200).mean())


@pytest.mark.skipif(
    chromium() is None, reason="Chromium is not installed (apt-get install chromium)"
)
def test_report_figures_render_in_headless_chromium(demo, tmp_path):
    out, _ = demo
    page = (out / "report" / "index.html").resolve()
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--hide-scrollbars", "--window-size=1200,1600", "--virtual-time-budget=10000"]  # fmt: skip
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.run([chromium(), *flags, f"--user-data-dir={profile}", "--dump-dom", page.as_uri()],
                              capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    body = re.search(r"<body[^>]*>", proc.stdout)
    assert body is not None, proc.stdout[:500]
    # the page's own check: every <img> decoded with a non-zero size ...
    assert 'data-figures="ok"' in body.group(0), body.group(0)
    assert proc.stdout.count("<img") >= 4
    # ... and shown at a scale where its text stays legible (at most 1.5 image pixels per
    # displayed pixel: 8-point labels at 110 dpi stay above 8 screen pixels)
    scales = [float(x) for x in re.search(r'data-scales="([^"]*)"', body.group(0))[1].split()]
    assert len(scales) >= 4 and max(scales) <= 1.5, scales

    shot = tmp_path / "report.png"
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.run([chromium(), *flags, f"--user-data-dir={profile}", f"--screenshot={shot}", page.as_uri()],
                              capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0 and shot.is_file(), proc.stderr[-2000:]
    w, h, ink = png_size_and_ink(shot)
    assert (w, h) == (1200, 1600)
    assert 0.03 < ink < 0.6, ink  # the first screen shows text and Figure 1, neither blank nor a block
