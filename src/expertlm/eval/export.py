"""`expertlm bench export BENCH --format lm-eval --out DIR`: a benchmark as an
lm-evaluation-harness task folder, scored as `expertlm eval bench` scores it.

The folder holds the task YAML (`NAME.yaml`), the items (`NAME.jsonl`), `utils.py` (a copy of
`lm_eval_task.py`: the loader, and the perplexity rule for BrainBench items) and `export.json`
(where it came from, with what options). Run it unchanged with

    lm-eval run --model hf --model_args pretrained=RUN --include_path DIR --tasks NAME

- An **exam** (every item has a question) is lm-eval's own `multiple_choice` task: context =
  the question in the template, choices after `target_delimiter`; metrics `acc`, `acc_norm`,
  `acc_bytes`, equal to `eval bench`'s `metrics` on the same model.
- **BrainBench** items (no question: each choice a whole text) are scored by the perplexity
  rule in `utils.process_results`, reported as `acc`: the same accuracy as `eval bench` with
  the same template, reduction, BOS and --exclude-template (the defaults are the same). The
  tokens each version is scored on are counted with the model's tokenizer when lm-eval loads
  the task (`pretrained` from --model_args).

Both match `eval bench` for texts that fit the model's context (lm-eval truncates longer ones on
the left; `eval bench` uses a sliding window).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from expertlm.config import BenchExportConfig
from expertlm.console import info
from expertlm.errors import ExpertlmError
from expertlm.eval.benchmark import load_benchmark, resolve_template
from expertlm.eval.exams import exam_context, prompt_texts
from expertlm.io import (
    atomic_dir,
    check_output_dir,
    provenance,
    write_json,
    write_jsonl,
)

GLUE = Path(__file__).with_name("lm_eval_task.py")
BOS = {None: "auto", True: "yes", False: "no"}


def bench_export(bench: str | Path, out: str | Path, *, overwrite: bool = False,
                 show_progress: bool = True, **options) -> dict:  # fmt: skip
    """Write `bench` as an lm-evaluation-harness task folder `out`; return export.json's content."""
    cfg = BenchExportConfig.from_options(options)
    out = Path(out)
    check_output_dir(out, overwrite, inputs=[bench])
    template = resolve_template(cfg.template)
    benchmark = load_benchmark(bench, repair=cfg.repair)
    items = benchmark.items
    with_question = [bool(it.context) for it in items]
    if any(with_question) and not all(with_question):
        raise ExpertlmError(f"{bench}: some items have a question and some do not; an lm-eval "
                            "task scores them one way (export them as two benchmarks)")  # fmt: skip
    kind = "exam" if all(with_question) else "rule"
    name = cfg.name or _task_name(Path(bench))
    if kind == "exam":
        rows = [{"id": it.id, "section": it.section, "context": exam_context(it, template)[0],
                 "choices": list(it.choices), "answer": it.answer} for it in items]  # fmt: skip
    else:
        rows = []
        for it in items:
            texts = prompt_texts(it, template, cfg.target_delimiter)
            if cfg.bos is not True and cfg.score_template and len({t.split(maxsplit=1)[0] for t, _ in texts}) > 1:
                # without a BOS the first token is not scored, and lm-eval's one context per
                # item is that token: versions that start differently share none
                raise ExpertlmError(f"{bench}: row {it.row} ({it.id}): its versions differ in their "
                                    "first word, so they share no first token to condition on in "
                                    "lm-eval; export with --bos yes (both then scored after the BOS)")  # fmt: skip
            rows.append({"id": it.id, "section": it.section, "prompts": [t for t, _ in texts],
                         "starts": [s for _, s in texts], "answer": it.answer})  # fmt: skip
    report = {
        "format": "expertlm.bench_export/1", "harness": "lm-eval", "task": name, "kind": kind,
        "benchmark": {"path": str(bench), "sha256": benchmark.sha256, "items": len(items)},
        "scoring": {"template": template, "reduction": cfg.reduction, "bos": BOS[cfg.bos],
                    "score_template": cfg.score_template, "target_delimiter": cfg.target_delimiter,
                    "metrics": ["acc", "acc_norm", "acc_bytes"] if kind == "exam" else ["acc"]},
        "run": f"lm-eval run --model hf --model_args pretrained=RUN --include_path {out} --tasks {name}",
        "provenance": provenance(),
    }  # fmt: skip
    with atomic_dir(out, overwrite=overwrite) as tmp:
        write_jsonl(tmp / f"{name}.jsonl", rows)
        (tmp / f"{name}.yaml").write_text(task_yaml(name, kind, cfg), encoding="utf-8")
        shutil.copyfile(GLUE, tmp / "utils.py")
        write_json(tmp / "export.json", report)
    info(f"bench export: {len(items)} items as lm-eval task '{name}' ({kind}) -> {out}; "
         f"run: {report['run'].replace('RUN', 'MODEL')}")  # fmt: skip
    return report


def _task_name(path: Path) -> str:
    stem = path.name.split(".")[0]
    name = re.sub(r"[^A-Za-z0-9_]+", "_", stem).strip("_")
    return name if name[:1].isalpha() else f"bench_{name}"


def task_yaml(name: str, kind: str, cfg: BenchExportConfig) -> str:
    """The task's YAML (written by hand: lm-eval's `!function` tags)."""
    q = json.dumps  # a JSON string is a YAML string
    lines = [f"task: {name}", "custom_dataset: !function utils.load", "output_type: multiple_choice",
             "test_split: test", "doc_to_text: context"]  # fmt: skip
    if kind == "exam":
        lines += ["doc_to_choice: choices", "doc_to_target: answer",
                  f"target_delimiter: {q(cfg.target_delimiter)}", "metric_list:"]  # fmt: skip
        metrics = ("acc", "acc_norm", "acc_bytes")
    else:
        lines += ["doc_to_choice: continuations", "doc_to_target: answer", 'target_delimiter: ""',
                  "process_results: !function utils.process_results", "metric_list:"]  # fmt: skip
        metrics = ("acc",)
    for m in metrics:
        lines += [f"  - metric: {m}", "    aggregation: mean", "    higher_is_better: true"]
    lines += ["metadata:", "  version: 1.0", f"  expertlm_kind: {kind}", f"  expertlm_items: {q(name + '.jsonl')}",
              f"  expertlm_bos: {q(BOS[cfg.bos])}", f"  expertlm_reduction: {q(cfg.reduction)}",
              f"  expertlm_score_template: {str(cfg.score_template).lower()}"]  # fmt: skip
    return "\n".join(lines) + "\n"
