"""eval/checkpoints.py: `eval bench|ppl --checkpoints` score a run's init, checkpoints and final
model, one row each, with tokens and FLOPs that match the run exactly."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from expertlm.errors import ExpertlmError
from expertlm.eval.evaluate import eval_bench, eval_ppl
from expertlm.shards import data_prepare
from expertlm.train import train

from lm_fixtures import TEXTS, make_tokenizer, write_corpus

CONTEXT, MICRO = 32, 4
TINY = {"preset": "gpt2-tiny", "context": CONTEXT, "micro_batch": MICRO, "lr": 3e-3,
        "show_progress": False, "keep_last": 10}  # fmt: skip


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A scratch run of 6 steps with a checkpoint every 2 (3 checkpoints), a run continued from
    it, a corpus and a benchmark."""
    root = tmp_path_factory.mktemp("ckpt")
    texts = [t * 3 for t in TEXTS * 20]
    corpus = write_corpus(root / "corpus", texts, texts[:4])
    tok = make_tokenizer(root / "tok")
    shards = data_prepare(corpus, root / "shards", tokenizer=tok, show_progress=False)
    run = train(shards, root / "run", **TINY, max_steps=6, ckpt_every_steps=2, log_every_steps=4)
    cont = train(shards, root / "cont", **(TINY | {"init": str(run)}), max_steps=4,
                 ckpt_every_steps=2)  # fmt: skip
    bench = root / "bench.jsonl"
    bench.write_text("".join(json.dumps({"id": f"i{k}", "original": t, "altered": t[::-1]}) + "\n"
                             for k, t in enumerate(TEXTS)))  # fmt: skip
    return {"root": root, "run": run, "cont": cont, "corpus": corpus, "bench": bench}


def flops_per_token_by_hand(run: Path) -> int:
    """6 N + 12 L d T, with N counted from the saved weights: every matrix and bias but the
    token and position embeddings, plus the (tied) output projection V x d."""
    cfg = json.loads((run / "config.json").read_text())
    weights = load_file(run / "model.safetensors")
    n = sum(t.numel() for k, t in weights.items() if not k.endswith(("wte.weight", "wpe.weight")))
    n += cfg["vocab_size"] * cfg["n_embd"]
    return 6 * n + 12 * cfg["n_layer"] * cfg["n_embd"] * CONTEXT


def test_every_checkpoint_is_one_row_with_exact_steps_tokens_and_flops(runs, tmp_path):
    table = eval_ppl(runs["run"], runs["corpus"], tmp_path / "ppl", checkpoints="all",
                     show_progress=False)  # fmt: skip
    rows = table["rows"]
    assert [r["step"] for r in rows] == [0, 2, 4, 6]
    assert [r["what"] for r in rows] == ["init", "checkpoint", "checkpoint", "final"]
    fpt = flops_per_token_by_hand(runs["run"])
    for r in rows:
        assert r["tokens"] == r["step"] * MICRO * CONTEXT
        assert r["flops"] == r["tokens"] * fpt
    # the untrained init is near uniform over the vocabulary; training lowers the loss
    assert rows[-1]["loss"] < rows[0]["loss"]
    # each row is the plain eval of that checkpoint, and the root holds the final model's
    plain = eval_ppl(runs["run"] / "checkpoints" / "step-00000004", runs["corpus"], tmp_path / "p4",
                     show_progress=False)  # fmt: skip
    assert rows[2]["bits_per_byte"] == pytest.approx(plain["bits_per_byte"], rel=1e-9)
    final = json.loads((tmp_path / "ppl" / "ppl.json").read_text())
    assert final["bits_per_byte"] == pytest.approx(rows[-1]["bits_per_byte"], rel=1e-12)
    with open(tmp_path / "ppl" / "checkpoints.csv", newline="") as f:
        csv_rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in csv_rows] == [0, 2, 4, 6]
    assert float(csv_rows[1]["flops"]) == rows[1]["flops"]
    assert (tmp_path / "ppl" / "step-00000002" / "ppl.json").is_file()


def test_every_n_keeps_multiples_of_n_and_the_final_model(runs, tmp_path):
    table = eval_bench(runs["run"], runs["bench"], tmp_path / "b", checkpoints="every:4",
                       show_progress=False)  # fmt: skip
    rows = table["rows"]
    assert [r["step"] for r in rows] == [0, 4, 6]
    for r in rows:
        assert 0.0 <= r["ci95_low"] <= r["accuracy"] <= r["ci95_high"] <= 1.0
        assert r["n"] == len(TEXTS)
    summary = json.loads((tmp_path / "b" / "step-00000004" / "summary.json").read_text())
    assert summary["accuracy"] == rows[1]["accuracy"]


def test_a_continued_run_starts_from_its_init_model(runs, tmp_path):
    rows = eval_ppl(runs["cont"], runs["corpus"], tmp_path / "c", checkpoints="all",
                    show_progress=False)["rows"]  # fmt: skip
    base = eval_ppl(runs["run"], runs["corpus"], tmp_path / "base", show_progress=False)
    assert [r["step"] for r in rows] == [0, 2, 4]
    assert rows[0]["model"] == str(runs["run"]) and rows[0]["flops"] == 0
    assert rows[0]["bits_per_byte"] == pytest.approx(base["bits_per_byte"], rel=1e-9)


def test_a_folder_that_is_not_a_run_is_refused(runs, tmp_path):
    with pytest.raises(ExpertlmError, match="no run.json"):
        eval_ppl(runs["corpus"], runs["corpus"], tmp_path / "x", checkpoints="all",
                 show_progress=False)  # fmt: skip


@pytest.mark.parametrize("spec", ["some", "every:0"])
def test_a_bad_checkpoints_value_is_one_line_and_exit_2(runs, tmp_path, spec):
    r = subprocess.run([sys.executable, "-m", "expertlm", "eval", "ppl", "--model", str(runs["run"]),
                        "--corpus", str(runs["corpus"]), "--out", str(tmp_path / "o"),
                        "--checkpoints", spec], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert r.returncode == 2 and "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "--checkpoints" in lines[0]
    assert not (tmp_path / "o").exists()
