"""N-way exams: the readers (letters as answers, the question,A,B,C,D,answer CSV, told from a
BrainBench CSV by its fields), lm-eval's split of a request into tokens, the acc / acc_norm /
acc_bytes metrics in items.csv and summary.json, eval compare on them, and per-choice
log-likelihoods equal to lm-evaluation-harness's on the same model and items (1e-5 relative)."""

from __future__ import annotations

import csv
import json

import pytest

from expertlm.errors import ExpertlmError
from expertlm.eval.benchmark import Item, read_benchmark
from expertlm.eval.evaluate import eval_bench, eval_compare
from expertlm.eval.exams import choose
from expertlm.tokenizer import load_tokenizer

from lm_fixtures import make_tokenizer, random_gpt2, save_model

EXAM = [
    {"id": "q1", "section": "Systems", "question": "Knockout of the receptor", "answer": "A",
     "choices": ["increased firing in cortical neurons.", "decreased firing.", "did nothing."]},
    {"id": "q2", "section": "Cellular", "question": "Dopamine release  ", "answer": "b",
     "choices": ["decreased after stimulation.", "increased after stimulation."]},
    {"id": "q3", "section": "Cellular", "question": "Lesions of the hippocampus", "answer": 2,
     "choices": ["impaired memory in mice.", "enhanced memory in mice.", "spared memory.",
                 "doubled the serotonin in the amygdala."]},
    {"id": "q4", "section": "Systems", "question": "Serotonin", "answer": "(D)",
     "choices": ["enhanced plasticity.", "impaired plasticity.", "did not change plasticity.",
                 "showed higher activity."]},
]  # fmt: skip


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    root = tmp_path_factory.mktemp("exams")
    tok = make_tokenizer(root / "tok")
    return save_model(random_gpt2(len(load_tokenizer(tok)), n_positions=128), tok, root / "model")


def test_letters_and_indexes_as_answers(tmp_path, write_jsonl):
    items = read_benchmark(write_jsonl(tmp_path / "exam.jsonl", EXAM))
    assert [it.answer for it in items] == [0, 1, 2, 3]
    assert items[1].context == "Dopamine release  " and not items[0].is_pair


def write_csv(path, header, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
    return path


def test_exam_csv_is_detected_from_its_fields(tmp_path):
    p = write_csv(tmp_path / "mmlu.csv", ["id", "subject", "question", "A", "B", "C", "D", "answer"],
                  [["m1", "anatomy", "Which lobe?", "frontal", "parietal", "occipital", "temporal", "C"],
                   ["", "anatomy", "Three choices?", "yes", "no", "maybe", "", "b"]])  # fmt: skip
    got = read_benchmark(p)
    assert got[0] == Item("m1", "anatomy", ("frontal", "parietal", "occipital", "temporal"), 2, "Which lobe?")
    assert got[1].id == "row2" and got[1].choices == ("yes", "no", "maybe") and got[1].answer == 1
    bad = write_csv(tmp_path / "bad.csv", ["question", "A", "B", "answer"], [["q", "x", "y", "C"]])
    with pytest.raises(ExpertlmError) as e:
        read_benchmark(bad)
    assert str(e.value).startswith(f"{bad}:2: field answer") and "A to B (got 'C')" in str(e.value)
    # a BrainBench CSV is read as before; a CSV that is neither names the BrainBench columns
    bb = write_csv(tmp_path / "bb.csv", ["doi", "journal_section", "original_abstract", "incorrect_abstract"],
                   [["10.1/x", "S", "Firing rose.", "Firing fell."]])  # fmt: skip
    assert read_benchmark(bb) == [Item.pair("10.1/x", "S", "Firing rose.", "Firing fell.")]
    other = write_csv(tmp_path / "other.csv", ["question", "answer"], [["q", "A"]])
    with pytest.raises(ExpertlmError, match="original_abstract"):
        read_benchmark(other)


def test_encode_pair_moves_trailing_whitespace_and_uses_the_prefix_token(model):
    from expertlm.eval.scoring import Scorer

    sc = Scorer.load(model, device="cpu")
    ctx, cont = sc.encode_pair("Dopamine release  ", " decreased.")
    whole = sc.encode("Dopamine release   decreased.").ids
    assert ctx == sc.encode("Dopamine release").ids and ctx + cont == whole
    ctx, cont = sc.encode_pair("", " firing rose.")
    assert ctx == [sc.bos_id] and cont == sc.tokenizer(" firing rose.", add_special_tokens=False)["input_ids"]


def test_items_and_summary_hold_the_lm_eval_metrics(model, tmp_path, write_jsonl):
    bench = write_jsonl(tmp_path / "exam.jsonl", EXAM)
    summary = eval_bench(model, bench, tmp_path / "r", show_progress=False)
    with open(tmp_path / "r" / "items.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for row, item in zip(rows, EXAM, strict=True):
        ll = [float(row[f"ll_{j}"]) for j in range(len(item["choices"]))]
        want = choose(ll, tuple(item["choices"]), int(row["answer"]))
        assert {m: int(row[m]) for m in want} == want
    m = summary["metrics"]
    for name in ("acc", "acc_norm", "acc_bytes", "acc_ppl"):
        assert m[name]["n"] == 4 and len(m[name]["ci95"]) == 2 and m[name]["sem"] is not None
    assert m["acc"]["accuracy"] == sum(int(r["acc"]) for r in rows) / 4
    assert m["acc_ppl"]["accuracy"] == summary["accuracy"]
    on_disk = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert on_disk["metrics"]["acc_bytes"] == m["acc_bytes"]
    assert on_disk["scoring"]["target_delimiter"] == " "
    # eval compare on an lm-eval metric (McNemar on correct / incorrect)
    eval_bench(model, bench, tmp_path / "r2", show_progress=False, template="Question: {abstract}\nAnswer:")
    r = eval_compare(tmp_path / "r", tmp_path / "r2", metric="acc")
    assert r["metric"] == "acc" and r["n"] == 4 and r["accuracy_a"] == m["acc"]["accuracy"]
    assert "p_value" in r["mcnemar"]


def test_choose_follows_lm_evals_argmax_and_lengths():
    # summed: choice 1; per character: choice 0 (-4/2 > -3/1)
    assert choose([-4.0, -3.0], ("ab", "c"), 1) == {"acc": 1, "acc_norm": 0, "acc_bytes": 0}
    # "é" is one character and two bytes: per byte -1.5 > -2
    assert choose([-3.0, -2.0], ("é", "e"), 1) == {"acc": 1, "acc_norm": 1, "acc_bytes": 0}
    assert choose([-2.0, -2.0], ("a", "b"), 0)["acc"] == 1  # argmax: the first of equal values


@pytest.mark.parametrize(
    ("rows", "opts"),
    [(EXAM, {}), (EXAM, {"template": "neuro", "bos": True}),
     (EXAM, {"template": "Question: {abstract}\nAnswer:", "target_delimiter": "\n"}),
     ([{"id": "b1", "choices": ["Firing increased in mice.", "Firing decreased in mice."], "answer": 0},
       {"id": "b2", "choices": ["Memory was impaired.", "Memory was enhanced.", "Memory was spared."],
        "answer": 2}], {})],
    ids=["plain", "template-bos", "suffix-template-newline", "no-question"],
)  # fmt: skip
def test_per_choice_loglikelihoods_equal_lm_evals(model, tmp_path, write_jsonl, rows, opts):
    pytest.importorskip("lm_eval")
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    from expertlm.eval.benchmark import resolve_template
    from expertlm.eval.exams import exam_context

    bench = write_jsonl(tmp_path / "exam.jsonl", rows)
    eval_bench(model, bench, tmp_path / "r", show_progress=False, **opts)
    with open(tmp_path / "r" / "items.csv", newline="", encoding="utf-8") as f:
        got = list(csv.DictReader(f))
    lm = HFLM(pretrained=str(model), device="cpu", batch_size=1)
    bos_text = lm.tokenizer.decode([lm.prefix_token_id])
    template, delim = resolve_template(opts.get("template")), opts.get("target_delimiter", " ")
    worst = 0.0
    for row, item in zip(got, read_benchmark(bench), strict=True):
        ctx = exam_context(item, template)[0]
        if opts.get("bos") and ctx:
            ctx = bos_text + ctx  # lm-eval adds no special token to a text that starts with BOS
        reqs = [Instance("loglikelihood", doc={}, arguments=(ctx, delim + c), idx=j)
                for j, c in enumerate(item.choices)]  # fmt: skip
        for j, (ll, _greedy) in enumerate(lm.loglikelihood(reqs, disable_tqdm=True)):
            ours = float(row[f"ll_{j}"])
            worst = max(worst, abs(ours - ll) / abs(ll))
    assert worst < 1e-5, worst
