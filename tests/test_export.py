"""bench export: the lm-evaluation-harness task folder (task YAML, items JSONL, utils.py), and
the accuracy lm-eval computes from it equal to eval bench's on the same model, for a BrainBench
file (the perplexity rule, several scoring options) and for an N-way exam (acc, acc_norm,
acc_bytes). lm-eval runs in process on a tiny model built here (offline)."""

from __future__ import annotations

import csv
import json

import pytest
import yaml

from expertlm.errors import ExpertlmError
from expertlm.eval.evaluate import eval_bench
from expertlm.eval.export import bench_export
from expertlm.tokenizer import load_tokenizer

from lm_fixtures import make_tokenizer, random_gpt2, save_model

PAIRS = [
    ("10.1/a", "Systems", "Knockout increased firing in cortical neurons.",
     "Knockout decreased firing in cortical neurons."),
    ("10.1/b", "Systems", "Lesions of the hippocampus impaired memory in mice.",
     "Lesions of the hippocampus enhanced memory in mice."),
    ("10.1/c", "Cellular", "Dopamine release decreased after stimulation.",
     "Dopamine release increased after stimulation."),
    ("10.1/d", "Cellular", "Serotonin enhanced synaptic plasticity; the amygdala showed higher activity.",
     "Serotonin impaired synaptic plasticity; the amygdala showed lower activity."),
    ("10.1/e", "Cellular", "Increased dopamine release followed stimulation.",
     "Decreased dopamine release followed stimulation."),
]  # fmt: skip
EXAM = [
    {"id": "q1", "question": "Knockout of the receptor", "answer": "A",
     "choices": ["increased firing in cortical neurons.", "decreased firing.", "did nothing."]},
    {"id": "q2", "question": "Dopamine release", "answer": 1,
     "choices": ["decreased after stimulation.", "increased after stimulation."]},
    {"id": "q3", "question": "Lesions of the hippocampus", "answer": 2,
     "choices": ["impaired memory in mice.", "enhanced memory in mice.", "spared memory.",
                 "doubled the serotonin in the amygdala."]},
    {"id": "q4", "question": "Serotonin", "answer": "D",
     "choices": ["enhanced plasticity.", "impaired plasticity.", "did not change plasticity.",
                 "showed higher activity."]},
]  # fmt: skip


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    tok = make_tokenizer(root / "tok")
    model = save_model(random_gpt2(len(load_tokenizer(tok)), n_positions=128), tok, root / "model")
    return {"root": root, "model": model, "bench": brainbench_csv(root / "brainbench_like.csv", PAIRS[:4]),
            "first_word": brainbench_csv(root / "first_word.csv", PAIRS)}  # fmt: skip


def brainbench_csv(path, pairs):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["doi", "journal_section", "original_abstract", "incorrect_abstract", "combined_abstract"])
        w.writerows([[*p, ""] for p in pairs])
    return path


@pytest.fixture(scope="module")
def lm(world):
    pytest.importorskip("lm_eval")
    from lm_eval.models.huggingface import HFLM

    return HFLM(pretrained=str(world["model"]), device="cpu", batch_size=1)


def run_lm_eval(lm, folder, task, model):
    """What `lm-eval run --model hf --model_args pretrained=MODEL --include_path DIR --tasks
    TASK` computes, in process (--model_args go to the task's metadata as the CLI passes them)."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    tm = TaskManager(include_path=str(folder), include_defaults=False, metadata={"pretrained": str(model)})
    res = lm_eval.simple_evaluate(model=lm, tasks=[task], task_manager=tm, bootstrap_iters=0,
                                  log_samples=False)  # fmt: skip
    return {k.split(",")[0]: v for k, v in res["results"][task].items()
            if k.endswith(",none") and "stderr" not in k}


def test_the_task_folder(world, tmp_path):
    rep = bench_export(world["bench"], tmp_path / "task", show_progress=False)
    folder = tmp_path / "task"
    assert sorted(p.name for p in folder.iterdir()) == ["brainbench_like.jsonl", "brainbench_like.yaml",
                                                        "export.json", "utils.py"]  # fmt: skip
    assert rep["task"] == "brainbench_like" and rep["kind"] == "rule"
    text = (folder / "brainbench_like.yaml").read_text()
    assert text.startswith("task: brainbench_like\n") and "!function utils.process_results" in text
    cfg = yaml.load(text.replace("!function ", ""), Loader=yaml.SafeLoader)
    assert cfg["output_type"] == "multiple_choice" and cfg["metadata"]["expertlm_bos"] == "auto"
    rows = [json.loads(x) for x in (folder / "brainbench_like.jsonl").read_text().splitlines()]
    assert rows[0]["prompts"] == [PAIRS[0][2], PAIRS[0][3]] and rows[0]["answer"] == 0
    assert "import expertlm" not in (folder / "utils.py").read_text()
    with pytest.raises(ExpertlmError, match="name"):
        bench_export(world["bench"], tmp_path / "bad", name="9 lives", show_progress=False)


@pytest.mark.parametrize(
    "opts",
    [{}, {"template": "neuro"}, {"bos": True, "reduction": "sum"}, {"template": "Abstract: {abstract} End."}],
    ids=["defaults", "neuro", "bos-sum", "suffix-template"],
)
def test_brainbench_accuracy_from_lm_eval_equals_eval_bench(world, lm, tmp_path, opts):
    # an item whose change is its first word needs a BOS to condition on in lm-eval
    bench = world["first_word"] if opts.get("bos") else world["bench"]
    rep = bench_export(bench, tmp_path / "task", show_progress=False, **opts)
    ours = eval_bench(world["model"], bench, tmp_path / "r", show_progress=False, **opts)
    theirs = run_lm_eval(lm, tmp_path / "task", rep["task"], world["model"])
    assert theirs["acc"] == ours["accuracy"], (theirs, ours["accuracy"])


@pytest.mark.parametrize("opts", [{}, {"bos": True, "template": "Question: {abstract}\nAnswer:"}],
                         ids=["defaults", "bos-template"])
def test_exam_metrics_from_lm_eval_equal_eval_bench(world, lm, tmp_path, write_jsonl, opts):
    bench = write_jsonl(tmp_path / "exam.jsonl", EXAM)
    rep = bench_export(bench, tmp_path / "task", show_progress=False, **opts)
    assert rep["kind"] == "exam" and rep["scoring"]["metrics"] == ["acc", "acc_norm", "acc_bytes"]
    ours = eval_bench(world["model"], bench, tmp_path / "r", show_progress=False, **opts)
    theirs = run_lm_eval(lm, tmp_path / "task", rep["task"], world["model"])
    assert theirs == {m: ours["metrics"][m]["accuracy"] for m in ("acc", "acc_norm", "acc_bytes")}


def test_items_lm_eval_cannot_score_as_eval_bench_are_refused(world, tmp_path, write_jsonl):
    with pytest.raises(ExpertlmError, match=r"row 5 \(10.1/e\): its versions differ in their first word"):
        bench_export(world["first_word"], tmp_path / "t", show_progress=False)
    assert not (tmp_path / "t").exists()
    bench = write_jsonl(tmp_path / "mixed.jsonl", [EXAM[0], {"id": "x", "choices": ["a b", "c d"], "answer": 0}])
    with pytest.raises(ExpertlmError, match="some items have a question"):
        bench_export(bench, tmp_path / "t", show_progress=False)
