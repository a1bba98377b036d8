"""End to end: `expertlm run configs/adaptation.yaml --profile quick` through the real CLI,
offline: base -> CPT -> SFT -> DPO / ORPO and gradient-SLERP merges, the dry-run's budgets for
the fine-tuning stages, and the report's adaptation panel (shown only for such variants)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.e2e

CONFIG = Path(__file__).parents[2] / "src/expertlm/configs/adaptation.yaml"
ENV = {**os.environ, "EXPERTLM_NO_PROGRESS": "1", "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}  # (rich: no wrapped rows)


def cli(*args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "expertlm", *args], capture_output=True, text=True,
                          env=ENV, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return proc


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("e2e-adaptation") / "adapt"
    return out, cli("run", str(CONFIG), "--profile", "quick", "--out", str(out))


def test_the_pipeline_runs_and_chains_its_objectives(run):
    out, proc = run
    assert "47 of 47 stages ran" in proc.stderr
    runs = out / "runs"
    config = {n: json.loads((runs / n / "seed-0" / "run.json").read_text())["config"]
              for n in ("base", "cpt", "cpt-more", "sft", "dpo", "orpo")}  # fmt: skip
    assert {n: c["objective"] for n, c in config.items()} == {
        "base": "clm", "cpt": "clm", "cpt-more": "clm", "sft": "sft", "dpo": "dpo", "orpo": "orpo"}
    assert config["sft"]["init"] == str(runs / "cpt" / "seed-0")
    assert config["dpo"]["init"] == config["orpo"]["init"] == str(runs / "sft" / "seed-0")
    # each merge is the seed paper's gradient SLERP of a tuned model with its parent
    for name, parent, tuned in (("cpt-slerp", "base", "cpt"), ("dpo-slerp", "sft", "dpo"),
                                ("orpo-slerp", "sft", "orpo"), ("sft-slerp", "cpt", "sft")):  # fmt: skip
        merge = json.loads((runs / name / "seed-0" / "merge.json").read_text())
        assert merge["method"] == "slerp"
        assert merge["recipe"]["config"]["base_model"] == str(runs / parent / "seed-0")
        assert [m["path"] for m in merge["models"]] == [str(runs / p / "seed-0") for p in (parent, tuned)]
        assert merge["recipe"]["config"]["parameters"]["t"][0] == {"filter": "attn", "value": [0, 0.5, 0.3, 0.7, 1]}
    # every variant is scored on the forward benchmark (quick: not on seen) and both fields' bits per byte
    for n in (*config, "cpt-slerp", "sft-slerp", "dpo-slerp", "orpo-slerp"):
        res = out / "results" / n / "seed-0"
        for f in ("forward/summary.json", "ppl-domain/ppl.json", "ppl-general/ppl.json"):
            assert (res / f).is_file(), (n, f)


def test_the_dry_run_counts_the_fine_tuning_tokens(run):
    out, _ = run
    proc = cli("run", str(CONFIG), "--profile", "quick", "--out", str(out), "--dry-run")
    rows = [ln for ln in proc.stderr.splitlines() if ln.startswith("│")]
    assert len(rows) == 47 and not [r for r in rows if "│ run " in r]  # every stage up to date
    for name in ("sft", "dpo", "orpo"):
        (row,) = [r for r in rows if f" train {name} seed 0 " in r]
        planned = int(row.split("│")[4].strip().replace(",", ""))
        spent = json.loads((out / "runs" / name / "seed-0" / "run.json").read_text())["tokens"]
        # the budget leaves out val_frac (5%) of the tokens, the run leaves out 5% of the examples
        assert abs(planned - spent) <= 0.2 * spent, (name, planned, spent)


def test_the_report_has_the_adaptation_panel_only_for_such_variants(run, tmp_path):
    out, _ = run
    page = (out / "report" / "index.html").read_text()
    md = (out / "report" / "report.md").read_text()
    assert "Adaptation: CPT, SFT, preference tuning and merges" in page
    assert "![Adaptation: accuracy and bits per byte vs the base](adaptation.png)" in md
    assert (out / "report" / "adaptation.png").stat().st_size > 10_000
    for row in ("| tuned vs CPT alone | forward | CPT, continued (equal compute) | SFT -> DPO |",
                "| merge vs the tuned model | forward | SFT -> ORPO | SFT + ORPO, gradient SLERP |"):  # fmt: skip
        assert row in md
    # without post-trained or recipe-merged variants, no panel
    exp = json.loads((out / "experiment.json").read_text())
    exp["variants"] = [v for v in exp["variants"] if v["name"] in ("base", "cpt", "cpt-more")]
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "experiment.json").write_text(json.dumps(exp))
    cli("report", str(tmp_path / "plain"))
    assert "Adaptation" not in (tmp_path / "plain" / "report" / "report.md").read_text()
    assert not (tmp_path / "plain" / "report" / "adaptation.png").exists()
    assert yaml.safe_load(CONFIG.read_text())["profiles"]["quick"]
