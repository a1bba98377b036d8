"""experiment.py / plan.py / report.py: validation before compute (every problem, by key), the
quick demo through every stage, caching by content hash (an edit reruns only what it touches),
the report's numbers equal to the results files', and the paper's grid planned offline."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from expertlm.errors import ExpertlmError
from expertlm.experiment import load_experiment, plan_experiment, run, training_budget

CONFIGS = Path(__file__).resolve().parents[1] / "src" / "expertlm" / "configs"


def write_yaml(path: Path, obj) -> Path:
    path.write_text(yaml.safe_dump(obj, sort_keys=False), encoding="utf-8")
    return path


def minimal(**over):
    exp = {
        "name": "t",
        "corpora": {"d": {"synth": {"papers": 60, "bench_items": 8, "seen_items": 4}}},
        "tokenizers": {"d": {"corpus": "d", "vocab_size": 600}},
        "benchmarks": {"fwd": {"corpus": "d"}},
        "variants": [{"name": "a", "tokenizer": "d", "preset": "gpt2-tiny", "train": None}],
    }
    exp.update(over)
    return exp


def test_every_problem_is_reported_at_once_by_key(tmp_path):
    exp = minimal(
        colour="blue",
        variants=[
            {"name": "a", "tokenizer": "nope", "train": None},
            {"name": "b", "tokenizer": "d", "data": "d", "train": {"lr": -1, "max_stepz": 3}},
            {"name": "c", "init": "variant:d2", "data": "d"},
            {"name": "d2", "init": "variant:c", "data": "d"},
            {"name": "e", "init": "variant:b", "tokenizer": "other", "data": "d"},
            {"name": "f", "tokenizer": "d", "data": "missing"},
        ],
    )
    p = write_yaml(tmp_path / "exp.yaml", exp)
    with pytest.raises(ExpertlmError) as e:  # the schema first: the unknown top-level key
        plan_experiment(p, out=tmp_path / "out")
    assert f"{p}: key 'colour': unknown key" in str(e.value)
    del exp["colour"]
    write_yaml(p, exp)
    with pytest.raises(ExpertlmError) as e:
        plan_experiment(p, out=tmp_path / "out")
    msg = str(e.value)
    for expected in (
        "key 'variants.0.tokenizer': unknown tokenizer 'nope'",
        "key 'variants.1.train.lr': Input should be greater than 0",
        "key 'variants.1.train.max_stepz': unknown key",
        "in a cycle",
        "key 'variants.4.tokenizer': 'other' differs from the tokenizer of its init 'b'",
        "key 'variants.5.data': unknown corpus 'missing'",
    ):
        assert expected in msg, msg
    assert not (tmp_path / "out").exists()  # nothing was computed


def test_missing_files_and_bad_yaml(tmp_path):
    exp = minimal(benchmarks={"bb": {"path": "nope.csv"}}, humans={"path": "people.csv"})
    p = write_yaml(tmp_path / "exp.yaml", exp)
    with pytest.raises(ExpertlmError) as e:
        plan_experiment(p, out=tmp_path / "out")
    assert "key 'benchmarks.bb.path'" in str(e.value) and "nope.csv: no such benchmark file" in str(
        e.value
    )
    assert "key 'humans.path'" in str(e.value)
    (tmp_path / "bad.yaml").write_text("name: [unclosed\n")
    with pytest.raises(ExpertlmError, match=r"bad.yaml:\d+: not valid YAML"):
        load_experiment(tmp_path / "bad.yaml")
    with pytest.raises(ExpertlmError, match="no profile 'fast'"):
        load_experiment(p, profile="fast")


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """The bundled demo's quick profile, run once for the module."""
    out = tmp_path_factory.mktemp("demo") / "run"
    manifest = run(CONFIGS / "demo.yaml", out=out, profile="quick", show_progress=False)
    return out, manifest


def stage_keys(out: Path) -> dict[str, str]:
    return {str(p.parent.relative_to(out)): json.loads(p.read_text())["key"]
            for p in out.rglob(".expertlm-stage.json")}  # fmt: skip


def test_quick_demo_runs_every_stage(quick):
    out, manifest = quick
    names = [v["name"] for v in manifest["variants"]]
    assert names == [
        "untrained",
        "general",
        "scratch-general-tok",
        "general-then-domain",
        "scratch-domain-tok",
        "general-then-domain-lora",
        "merged",
    ]
    for v in manifest["variants"]:
        seed = v["seeds"]["0"]
        model = Path(seed["model"])
        assert (model / "config.json").is_file() or (model / "adapter_config.json").is_file()
        for b in ("forward", "seen"):
            assert (Path(seed["results"][b]) / "summary.json").is_file()
        assert set(seed["ppl"]) == {"domain", "general"}
    # the continued variant started from the general model and kept its tokenizer
    run_json = json.loads(
        (out / "runs" / "general-then-domain" / "seed-0" / "run.json").read_text()
    )
    assert run_json["config"]["init"] == str(out / "runs" / "general" / "seed-0")
    assert (out / "shards" / "domain--general" / "meta.json").is_file()
    # decontamination of the domain corpus against its benchmarks removed nothing
    m = json.loads((out / "corpora" / "domain" / "manifest.json").read_text())
    assert m["decontamination"]["items_leaked"] == 0
    for f in (
        "index.html",
        "report.md",
        "accuracy.png",
        "calibration.png",
        "loss.png",
        "tables.csv",
    ):
        assert (out / "report" / f).is_file(), f


def test_report_numbers_equal_the_results_files(quick):
    out, _ = quick
    with open(out / "report" / "tables.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    checked = 0
    for r in rows:
        src = Path(r["source"])
        if r["table"] != "accuracy" or not src.is_file():
            continue
        summary = json.loads(src.read_text())
        value = summary
        for part in r["quantity"].split("."):
            value = value[int(part)] if isinstance(value, list) else value[part]
        assert float(r["value"]) == float(value), r
        checked += 1
    assert checked >= 7 * 2 * 4  # 7 variants x 2 benchmarks x (accuracy, 2 CI ends, n)
    # the LoRA run holds adapters over the general model; the merge records its recipe
    assert (
        out / "runs" / "general-then-domain-lora" / "seed-0" / "adapter_model.safetensors"
    ).is_file()
    recipe = json.loads((out / "runs" / "merged" / "seed-0" / "merge.json").read_text())
    assert recipe["method"] == "slerp"
    html = (out / "report" / "index.html").read_text()
    acc = json.loads(
        (out / "results" / "scratch-domain-tok" / "seed-0" / "forward" / "summary.json").read_text()
    )
    assert f"{acc['accuracy']:.3f}" in html and "data:image/png;base64," in html


def test_rerun_skips_everything_and_an_edit_reruns_only_what_it_touches(quick, tmp_path):
    out, _ = quick
    before = stage_keys(out)
    run(CONFIGS / "demo.yaml", out=out, profile="quick", show_progress=False, report=False)
    assert stage_keys(out) == before
    mtimes = {k: (out / k / ".expertlm-stage.json").stat().st_mtime_ns for k in before}
    exp = yaml.safe_load((CONFIGS / "demo.yaml").read_text())
    exp["profiles"]["quick"]["variants"]["scratch-domain-tok"]["train"]["max_tokens"] = 2048
    edited = write_yaml(tmp_path / "demo.yaml", exp)
    run(edited, out=out, profile="quick", show_progress=False, report=False)
    after = {k: (out / k / ".expertlm-stage.json").stat().st_mtime_ns for k in before}
    changed = sorted(k for k in before if after[k] != mtimes[k])
    assert changed == [
        "results/scratch-domain-tok/seed-0/forward", "results/scratch-domain-tok/seed-0/ppl-domain",
        "results/scratch-domain-tok/seed-0/ppl-general", "results/scratch-domain-tok/seed-0/seen",
        "runs/scratch-domain-tok/seed-0",
    ]  # fmt: skip


def test_the_papers_grid_is_planned_offline_with_budgets(tmp_path):
    plan = plan_experiment(CONFIGS / "neuro-gpt2.yaml", out=tmp_path / "neuro")
    trains = [st for st in plan.stages if st.kind == "train"]
    assert [st.label for st in trains] == [
        "train scratch-gpt2-tok seed 0", "train finetuned-gpt2 seed 0", "train scratch-neuro-tok seed 0",
        "train medium-scratch-neuro-tok seed 0", "train large-scratch-neuro-tok seed 0",
    ]  # fmt: skip
    budgets = {st.label: training_budget(st) for st in trains}
    small = budgets["train scratch-gpt2-tok seed 0"]
    assert small["tokens"] == 6_500_000_000
    assert 124e6 < small["parameters"] < 125e6  # GPT-2 small with its 50,257-token vocabulary
    assert budgets["train medium-scratch-neuro-tok seed 0"]["flops"] > 2.5 * small["flops"]
    assert budgets["train finetuned-gpt2 seed 0"]["parameters"] == small["parameters"]
    assert not (tmp_path / "neuro").exists()


def test_jobs_run_stages_side_by_side_with_the_same_keys_and_files(tmp_path):
    """--jobs 2: the same stages with the same keys and the same data files as in order in one
    process, and a re-run (either way) finds every stage up to date."""
    spec = write_yaml(tmp_path / "t.yaml", minimal(variants=[
        {"name": "a", "tokenizer": "d", "preset": "gpt2-tiny", "train": None},
        {"name": "b", "tokenizer": "d", "preset": "gpt2-tiny", "data": "d", "train": {"max_tokens": 2048}},
    ]))  # fmt: skip
    run(spec, out=tmp_path / "one", show_progress=False, report=False)
    run(spec, out=tmp_path / "two", show_progress=False, report=False, jobs=2)
    one, two = stage_keys(tmp_path / "one"), stage_keys(tmp_path / "two")
    assert len(one) == 8 and one.keys() == two.keys()
    # (the keys differ: a corpus record names its source file, inside each run's folder)
    for f in ("tokenizers/d/tokenizer.json", "shards/d--d/train.bin", "runs/a/seed-0/model.safetensors",
              "results/a/seed-0/fwd/items.csv"):  # fmt: skip
        assert (tmp_path / "one" / f).read_bytes() == (tmp_path / "two" / f).read_bytes(), f
    mtimes = {k: (tmp_path / "two" / k / ".expertlm-stage.json").stat().st_mtime_ns for k in two}
    for jobs in (2, 1):
        run(spec, out=tmp_path / "two", show_progress=False, report=False, jobs=jobs)
        assert {k: (tmp_path / "two" / k / ".expertlm-stage.json").stat().st_mtime_ns for k in two} == mtimes


def test_jobs_0_is_a_job_per_core_up_to_the_trainings_that_can_run_at_once(tmp_path, monkeypatch):
    import torch

    from expertlm.experiment import graph

    plan = plan_experiment(CONFIGS / "demo.yaml", out=tmp_path / "demo")
    # general, scratch-general-tok and scratch-domain-tok wait for no training; general -> domain
    # and its LoRA version wait for general
    assert graph.training_width(plan) == 3
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    for cpus, jobs in ((1, 1), (2, 2), (16, 3)):
        monkeypatch.setattr(graph, "available_cpus", lambda c=cpus: c)
        assert graph.default_jobs(plan) == jobs
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert graph.default_jobs(plan) == 1
    one = plan_experiment(write_yaml(tmp_path / "t.yaml", minimal()), out=tmp_path / "t")
    assert graph.training_width(one) == 1  # (no training at all)


def test_killing_run_with_sigkill_ends_its_jobs_too(tmp_path, left_after_sigkill):
    """`kill -9` of `expertlm run --jobs 2` in the middle of a training: the training's process
    (and the fork server) end within seconds instead of training on alone, and the next run
    resumes the training."""
    import sys

    spec = write_yaml(tmp_path / "t.yaml", minimal(variants=[
        {"name": "a", "tokenizer": "d", "preset": "gpt2-tiny", "data": "d",
         "train": {"max_tokens": 50_000_000, "ckpt_every_steps": 2, "val_every_steps": 1000}},
    ]))  # fmt: skip
    cmd = [sys.executable, "-m", "expertlm", "run", str(spec), "--out", str(tmp_path / "out"), "--jobs", "2",
           "--no-progress"]  # fmt: skip
    alive = left_after_sigkill(cmd, ready="train a seed 0 started")
    assert not alive, alive
    assert list((tmp_path / "out" / "runs" / "a").glob(".seed-0.pending.json"))


def test_the_first_failing_job_stops_the_others_with_its_one_line_error(tmp_path):
    from expertlm.experiment.graph import Jobs
    from expertlm.experiment.stages import Stage, external

    def build(name: str, text: str) -> Stage:
        src = tmp_path / f"{name}.jsonl"
        src.write_text(text, encoding="utf-8")
        return Stage("corpus_build", f"corpus {name}", tmp_path / name,
                     inputs={"sources": [external(name, src, "sources")]})  # fmt: skip

    good = build("good", "".join(json.dumps({"id": f"g{i}", "text": "word " * 80 + str(i)}) + "\n" for i in range(50)))
    bad = build("bad", json.dumps({"id": "x", "text": "fine " * 80}) + "\n{not json\n")
    with Jobs(2, False, {"corpus_build"}) as pool:
        pool.start(good, "good")
        pool.start(bad, "bad")
        with pytest.raises(ExpertlmError, match=r"bad\.jsonl:2: not valid JSON") as e:
            while pool.running:
                pool.wait()
        assert "\n" not in str(e.value) and not pool.running


def test_the_summary_says_which_claims_appear_and_what_the_items_could_show():
    from expertlm.synth import paper

    def row(claim, d, p, discordant, paper_d):
        return {"claim": claim, "difference": d, "p": p, "verdict": paper.verdict(d, p), "n": 200,
                "discordant": discordant, "paper_difference": paper_d}  # fmt: skip

    claims = [row("A beats B", 0.06, 0.24, 100, 0.045), row("C beats D", 0.22, 2e-5, 60, 0.165),
              row("E beats F", -0.02, 0.8, 88, 0.06)]  # fmt: skip
    text = paper.summary("forward", 200, ("C", 0.675, 0.61, 0.74), 0.455, ("class integrator", 0.825), claims)
    assert "Of the paper's 3 comparisons, 1 appears here at McNemar p < 0.05: C beats D (+22.0 points, p = 2e-05)" in text
    assert "Pointing the paper's way but not significant: A beats B (+6.0 points, p = 0.24)" in text
    assert "Not seen here: E beats F (-2.0 points, p = 0.8)" in text
    # 100 discordant items: the most even significant split is 39/61 (22 of 200 items, 11.0 points);
    # 88: 34/54 (2 P(X <= 34) = 0.042; 35: 0.070), 20 of 200 items, 10.0 points
    assert ("On these 200 items, a difference between two models reaches p < 0.05 only from about "
            "10.0-11.0 points (McNemar's exact test, given the 88-100 items on which the two disagree); "
            "the paper's own differences for those claims are +4.5, +6.0 points.") in text  # fmt: skip
    assert "only from about" not in paper.summary("forward", 200, None, None, None, claims[1:2])
