"""End to end: `expertlm run configs/specialization.yaml --profile quick` through the real CLI,
offline: a web corpus filtered by a classifier, three bases each continued on the filtered and
the unfiltered corpus, every checkpoint scored, and the report's compute panel."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

SPEC = Path(__file__).parents[2] / "src" / "expertlm" / "configs" / "specialization.yaml"


@pytest.fixture(scope="module")
def spec_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("e2e-spec") / "spec"
    env = {**os.environ, "EXPERTLM_NO_PROGRESS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "expertlm", "run", str(SPEC), "--profile", "quick",
                           "--out", str(out)], capture_output=True, text=True, env=env, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return out, proc


def test_every_continued_run_is_scored_at_each_checkpoint(spec_run):
    out, _ = spec_run
    for v in ("xs-filtered", "xs-web", "m-filtered", "m-web"):
        run = json.loads((out / "runs" / v / "seed-0" / "run.json").read_text())
        for what in ("forward", "ppl-domain", "ppl-general"):
            table = json.loads((out / "results" / v / "seed-0" / what / "checkpoints.json").read_text())
            rows = table["rows"]
            assert [r["step"] for r in rows] == [0, 3, 6]
            assert rows[0]["flops"] == 0 and rows[-1]["tokens"] == run["tokens"]
            assert rows[-1]["flops"] == run["flops"]  # train's own FLOP count, to the FLOP
    manifest = json.loads((out / "corpora" / "web-domain" / "manifest.json").read_text())
    assert manifest["counts"]["kept"] > 0


def test_the_report_has_the_compute_panel(spec_run):
    out, proc = spec_run
    report = out / "report"
    for f in ("compute.png", "compute.csv", "compute.json"):
        assert (report / f).is_file()
    with open(report / "compute.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["size"] for r in rows] == ["xs", "s", "m"]
    for r in rows:
        assert float(r["general_bpb_base"]) > 0
        f_bpb, base = float(r["general_bpb_filtered"]), float(r["general_bpb_base"])
        assert float(r["forgetting_filtered"]) == pytest.approx(f_bpb - base)
        assert (r["effectiveness"] != "") == (r["effectiveness_reached"] == "True")
    assert "Compute-effectiveness and forgetting per size" in (report / "index.html").read_text()
