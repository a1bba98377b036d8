"""The eval stages end to end on a bigram model whose NLLs are computed here from its table:
items.csv and summary.json values, the scoring switches, eval ppl's bits per byte, eval compare,
and the CLI's errors."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys

import pytest

from expertlm.errors import ExpertlmError
from expertlm.eval.benchmark import TEMPLATES, apply_template
from expertlm.eval.evaluate import (
    bench_summary,
    choice_columns,
    eval_bench,
    eval_compare,
    eval_ppl,
    read_items,
)
from expertlm.tokenizer import load_tokenizer

from lm_fixtures import (
    bigram_model,
    bigram_table,
    expected_nll,
    make_tokenizer,
    random_gpt2,
    save_model,
    write_corpus,
)

ITEMS = [
    (
        "10.1/a",
        "Systems",
        "Knockout increased firing in cortical neurons.",
        "Knockout decreased firing in cortical neurons.",
    ),
    (
        "10.1/b",
        "Systems",
        "Lesions of the hippocampus impaired memory in mice.",
        "Lesions of the hippocampus enhanced memory in mice.",
    ),
    (
        "10.1/c",
        "Cellular",
        "Dopamine release decreased after stimulation.",
        "Dopamine release increased after stimulation.",
    ),
    (
        "10.1/d",
        "Cellular",
        "Serotonin enhanced synaptic plasticity; the amygdala showed higher activity.",
        "Serotonin impaired synaptic plasticity; the amygdala showed lower activity.",
    ),
]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    tok_dir = make_tokenizer(root / "tok")
    tok = load_tokenizer(tok_dir)
    P = bigram_table(len(tok), seed=2)
    model_dir = save_model(bigram_model(P, n_positions=64), tok_dir, root / "bigram")
    bench = root / "bb.csv"
    with open(bench, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(
            [
                "doi",
                "journal_section",
                "original_abstract",
                "incorrect_abstract",
                "combined_abstract",
            ]
        )
        for doi, sec, o, a in ITEMS:
            w.writerow([doi, sec, o, a, ""])
    return {"root": root, "tok": tok, "P": P, "model": model_dir, "bench": bench}


def expected_item(world, text: str, template: str = "{abstract}", score_template=True, bos=False):
    """Mean NLL of a version, from the bigram table alone."""
    tok, P = world["tok"], world["P"]
    prompt, start = apply_template(template, text)
    enc = tok(prompt, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(enc["input_ids"])
    first = (
        0
        if score_template
        else next(i for i, (s, e) in enumerate(enc["offset_mapping"]) if e > start)
    )
    if bos:
        ids = [tok.convert_tokens_to_ids("<|endoftext|>"), *ids]
        first += 1
    nll = expected_nll(P, ids)
    return nll[max(0, first - 1) :]


def read_rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize(
    ("template", "score_template", "bos", "reduction"),
    [("none", True, None, "mean"), ("neuro", True, None, "mean"), ("neuro", False, None, "mean"),
     ("neuro", True, True, "sum"), ("Q: {abstract} A:", True, False, "mean")],
)  # fmt: skip
def test_items_and_summary_match_the_bigram_table(
    world, tmp_path, template, score_template, bos, reduction
):
    out = tmp_path / "res"
    summary = eval_bench(world["model"], world["bench"], out, show_progress=False, template=template,
                         score_template=score_template, bos=bos, reduction=reduction)  # fmt: skip
    rows = read_rows(out / "items.csv")
    tpl = TEMPLATES.get(template, template)
    n_correct = 0
    for row, (doi, sec, o, a) in zip(rows, ITEMS, strict=True):
        eo = expected_item(world, o, tpl, score_template, bool(bos))
        ea = expected_item(world, a, tpl, score_template, bool(bos))
        want_o = eo.sum() if reduction == "sum" else eo.mean()
        want_a = ea.sum() if reduction == "sum" else ea.mean()
        assert row["id"] == doi and row["section"] == sec
        assert float(row["nll_original"]) == pytest.approx(want_o, rel=1e-5)
        assert float(row["nll_altered"]) == pytest.approx(want_a, rel=1e-5)
        if reduction == "mean":
            assert float(row["ppl_original"]) == pytest.approx(math.exp(want_o), rel=1e-4)
        assert int(row["tokens_original"]) == len(eo)
        choice = "original" if want_o < want_a else "altered"
        assert row["choice"] == choice and int(row["correct"]) == (choice == "original")
        assert float(row["log_confidence"]) == pytest.approx(abs(want_o - want_a), rel=1e-4)
        n_correct += choice == "original"
    assert summary["n"] == 4 and summary["accuracy"] == n_correct / 4
    assert summary["sem"] == pytest.approx(
        math.sqrt(summary["accuracy"] * (1 - summary["accuracy"]) / 4)
    )
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["accuracy"] == summary["accuracy"] and on_disk["scoring"]["template"] == tpl
    assert set(on_disk["per_section"]) == {"Systems", "Cellular"}
    assert on_disk["benchmark"]["rows"] == 4 and on_disk["model_hash"]


def test_shared_prefix_and_batching_do_not_change_the_numbers(world, tmp_path):
    # a real-attention model, so context matters
    model_dir = save_model(
        random_gpt2(len(world["tok"]), n_positions=64), world["root"] / "tok", tmp_path / "rnd"
    )
    runs = {}
    for name, opts in {"one": {"share_prefix": False, "batch_size": 1}, "shared": {},
                       "batched": {"batch_size": 3, "padding_side": "left"}}.items():  # fmt: skip
        eval_bench(
            model_dir,
            world["bench"],
            tmp_path / name,
            show_progress=False,
            template="neuro",
            **opts,
        )
        runs[name] = read_rows(tmp_path / name / "items.csv")
    for other in ("shared", "batched"):
        for r1, r2 in zip(runs["one"], runs[other], strict=True):
            for col in ("nll_original", "nll_altered"):
                assert float(r2[col]) == pytest.approx(float(r1[col]), rel=1e-5)
            assert r1["choice"] == r2["choice"]


EXAM = [
    {"id": "q1", "section": "Systems", "answer": 1,
     "choices": ["Knockout increased firing in cortical neurons.", "Knockout decreased firing in "
                 "cortical neurons.", "Knockout abolished firing in cortical neurons.",
                 "Knockout left firing in cortical neurons unchanged."]},
    {"id": "q2", "section": "Cellular", "answer": 2, "question": "After stimulation, dopamine",
     "choices": ["release decreased.", "release increased.", "release was unchanged.",
                 "uptake doubled."]},
    {"id": "q3", "section": "Cellular", "answer": 0, "context": "Lesions of the hippocampus",
     "choices": ["impaired memory in mice.", "enhanced memory in mice.", "spared memory."]},
]  # fmt: skip


@pytest.mark.parametrize("share_prefix", [True, False])
def test_n_way_items_choose_the_lowest_nll_and_write_the_choice_layout(
    world, tmp_path, write_jsonl, share_prefix
):
    bench = write_jsonl(tmp_path / "exam.jsonl", EXAM)
    runs = {}
    for name, template in (("none", "{abstract}"), ("neuro", "neuro")):
        out = tmp_path / name
        summary = eval_bench(world["model"], bench, out, show_progress=False, template=template,
                             share_prefix=share_prefix)  # fmt: skip
        with open(out / "items.csv", newline="", encoding="utf-8") as f:
            assert tuple(next(csv.reader(f))) == choice_columns(4)
        rows = read_rows(out / "items.csv")
        n_correct = 0
        for row, item in zip(rows, EXAM, strict=True):
            context = item.get("question") or item.get("context")
            texts = [f"{context} {c}" if context else c for c in item["choices"]]
            want = [expected_item(world, t, TEMPLATES.get(template, template)) for t in texts]
            means = [w.mean() for w in want]
            best = min(range(len(means)), key=means.__getitem__)
            second = sorted(means)[1]
            assert row["id"] == item["id"] and row["section"] == item["section"]
            assert int(row["n_choices"]) == len(texts) and int(row["answer"]) == item["answer"]
            assert row["choice"] == str(best) and int(row["correct"]) == (best == item["answer"])
            for j, (w, m) in enumerate(zip(want, means, strict=True)):
                assert int(row[f"tokens_{j}"]) == len(w)
                assert float(row[f"nll_{j}"]) == pytest.approx(m, rel=1e-5)
                assert float(row[f"ppl_{j}"]) == pytest.approx(math.exp(m), rel=1e-4)
            for j in range(len(texts), 4):  # past the item's own choices
                assert row[f"tokens_{j}"] == row[f"nll_{j}"] == row[f"ppl_{j}"] == ""
            assert float(row["log_confidence"]) == pytest.approx(second - means[best], rel=1e-4)
            gap = math.exp(second) - math.exp(means[best])
            assert float(row["confidence"]) == pytest.approx(gap, rel=1e-4)
            n_correct += best == item["answer"]
        assert summary["n"] == 3 and summary["accuracy"] == n_correct / 3
        assert summary["benchmark"]["n_choices"] == {"3": 1, "4": 2}
        assert summary["calibration"]["confidence"] == "PPL(second) - PPL(lowest)"
        assert [r["correct"] for r in read_items(out)] == [int(r["correct"]) for r in rows]
        runs[name] = summary
    r = eval_compare(tmp_path / "none", tmp_path / "neuro")
    assert r["n"] == 3
    assert r["accuracy_a"] == runs["none"]["accuracy"]
    assert r["accuracy_b"] == runs["neuro"]["accuracy"]
    with pytest.raises(ExpertlmError, match="--isolated needs BrainBench items"):
        eval_bench(world["model"], bench, tmp_path / "iso", show_progress=False, isolated=True)


def test_ties_count_as_wrong():
    rows = [
        {
            "section": "S",
            "choice": "original",
            "correct": 1,
            "confidence": 2.0,
            "log_confidence": 0.2,
        },
        {"section": "S", "choice": "tie", "correct": 0, "confidence": 0.0, "log_confidence": 0.0},
        {
            "section": "S",
            "choice": "altered",
            "correct": 0,
            "confidence": 1.0,
            "log_confidence": 0.1,
        },
        {
            "section": "T",
            "choice": "original",
            "correct": 1,
            "confidence": 3.0,
            "log_confidence": 0.3,
        },
    ]
    s = bench_summary(rows, bins=2)
    assert (s["accuracy"], s["ties"], s["n"]) == (0.5, 1, 4)
    assert s["per_section"]["S"]["accuracy"] == pytest.approx(1 / 3)
    assert [b["accuracy"] for b in s["calibration"]["bins"]] == [0.0, 1.0]


def test_isolated_sentences(world, tmp_path):
    s = eval_bench(
        world["model"], world["bench"], tmp_path / "iso", show_progress=False, isolated=True
    )
    iso = read_rows(tmp_path / "iso" / "isolated_items.csv")
    assert len(iso) == 4 and {r["parent"] for r in iso} == {i[0] for i in ITEMS}
    # one sentence per item here: the per-sentence accuracy equals the per-abstract one
    assert s["isolated"]["n"] == 4
    assert s["isolated"]["per_abstract"]["accuracy"] == s["isolated"]["accuracy"]


def test_eval_ppl_bits_per_byte(world, tmp_path):
    texts = [i[2] for i in ITEMS]
    corpus = write_corpus(tmp_path / "corpus", texts, texts)
    r = eval_ppl(world["model"], corpus, tmp_path / "ppl", show_progress=False)
    tok, P = world["tok"], world["P"]
    eot = tok.convert_tokens_to_ids("<|endoftext|>")
    nll = [expected_nll(P, [eot, *tok(t, add_special_tokens=False)["input_ids"]]) for t in texts]
    total, n_tok = sum(x.sum() for x in nll), sum(len(x) for x in nll)
    n_bytes = sum(len(t.encode()) for t in texts)
    assert r["tokens"] == n_tok and r["bytes"] == n_bytes and r["docs"] == 4
    assert r["bits_per_byte"] == pytest.approx(total / math.log(2) / n_bytes, rel=1e-5)
    assert r["token_perplexity"] == pytest.approx(math.exp(total / n_tok), rel=1e-5)
    assert (
        json.loads((tmp_path / "ppl" / "ppl.json").read_text())["bits_per_byte"]
        == r["bits_per_byte"]
    )


def write_items(folder, correct):
    folder.mkdir()
    with open(folder / "items.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "section", "choice", "correct"])
        for k, c in enumerate(correct):
            w.writerow([f"i{k}", "S", "original" if c else "altered", c])
    return folder


def test_eval_compare_mcnemar_and_paired_bootstrap(tmp_path):
    a = write_items(tmp_path / "a", [1] * 10 + [0] * 2 + [1] * 5 + [0] * 3)
    b = write_items(tmp_path / "b", [0] * 10 + [1] * 2 + [1] * 5 + [0] * 3)
    r = eval_compare(a, b, out=tmp_path / "cmp.json")
    assert r["n"] == 20 and r["accuracy_a"] == 0.75 and r["accuracy_b"] == 0.35
    assert r["mcnemar"]["p_value"] == pytest.approx(2 * (1 + 12 + 66) / 2**12)
    assert r["b_minus_a"]["difference"] == pytest.approx(-0.4)
    lo, hi = r["b_minus_a"]["ci95"]
    assert lo < -0.4 < hi < 0
    assert json.loads((tmp_path / "cmp.json").read_text())["n"] == 20
    c = write_items(tmp_path / "c", [1, 0])
    with pytest.raises(ExpertlmError, match="not the same items"):
        eval_compare(a, c)


def run_cli(*args):
    env = {**os.environ, "EXPERTLM_NO_PROGRESS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "expertlm", *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=300)  # fmt: skip


def one_error_line(proc, *fragments):
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, proc.stderr
    for f in fragments:
        assert f in lines[0], proc.stderr


@pytest.mark.e2e
def test_cli_eval_bench_compare_and_errors(world, tmp_path):
    out = tmp_path / "r"
    p = run_cli(
        "eval",
        "bench",
        world["bench"],
        "--model",
        world["model"],
        "--out",
        out,
        "--template",
        "neuro",
    )
    assert p.returncode == 0, p.stderr
    assert "accuracy" in p.stderr and (out / "items.csv").is_file()
    p = run_cli("eval", "bench", world["bench"], "--model", world["model"], "--out", tmp_path / "r2",
                "--no-share-prefix", "--template", "neuro")  # fmt: skip
    assert p.returncode == 0, p.stderr
    p = run_cli("eval", "compare", out, tmp_path / "r2", "--json")
    assert p.returncode == 0 and json.loads(p.stdout)["mcnemar"]["discordant"] == 0
    one_error_line(
        run_cli("eval", "bench", world["bench"], "--model", world["model"], "--out", out),
        "already exists",
    )
    one_error_line(
        run_cli(
            "eval", "bench", world["bench"], "--model", tmp_path / "nope", "--out", tmp_path / "x"
        ),
        "nope",
    )
    one_error_line(
        run_cli(
            "eval",
            "bench",
            tmp_path / "nope.csv",
            "--model",
            world["model"],
            "--out",
            tmp_path / "x",
        ),
        "no such benchmark",
    )
    one_error_line(run_cli("eval", "bench", world["bench"], "--model", world["model"], "--out", tmp_path / "x",
                           "--template", "no placeholder"), "--template")  # fmt: skip
    one_error_line(run_cli("eval", "bench", world["bench"], "--model", world["model"], "--out", tmp_path / "x",
                           "--reduction", "median"), "reduction")  # fmt: skip
    one_error_line(
        run_cli(
            "eval",
            "ppl",
            "--model",
            world["model"],
            "--corpus",
            tmp_path / "nope",
            "--out",
            tmp_path / "x",
        ),
        "nope",
    )
    assert not (tmp_path / "x").exists()
