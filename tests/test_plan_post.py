"""Post-training in experiment files (experiment/post_plan.py): datasets, variants that chain
objectives (init: variant:X, train: {objective: sft|dpo|orpo}, data: a dataset), recipe merges,
and their --dry-run budgets. Every problem is found before any compute, under its key."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from plan_helpers import DELETE, expect_problem, write

from expertlm.errors import ExpertlmError
from expertlm.experiment import plan_experiment
from expertlm.experiment.budget import training_budget

GRADIENT = [{"filter": "attn", "value": [0, 0.5, 0.3, 0.7, 1]},
            {"filter": "mlp", "value": [1, 0.5, 0.7, 0.3, 0]}, {"value": 0.5}]  # fmt: skip


def base() -> dict:
    small = {"papers": 60, "bench_items": 8, "seen_items": 4}
    return {
        "name": "t",
        "corpora": {"d": {"synth": {**small, "posttrain_items": 10}},
                    "g": {"synth": {**small, "field": "general"}}},  # fmt: skip
        "tokenizers": {"g": {"corpus": "g", "vocab_size": 600}},
        "benchmarks": {"fwd": {"corpus": "d"}},
        "datasets": {"sft": {"corpus": "d", "file": "sft.jsonl"},
                     "prefs": {"corpus": "d", "file": "preferences.jsonl"}},  # fmt: skip
        "variants": [
            {"name": "base", "tokenizer": "g", "data": "g", "preset": "gpt2-tiny", "train": {"max_steps": 2}},
            {"name": "cpt", "init": "variant:base", "data": "d", "train": {"max_steps": 2}},
            {"name": "sft", "init": "variant:cpt", "data": "sft", "train": {"objective": "sft", "epochs": 1}},
            {"name": "dpo", "init": "variant:sft", "data": "prefs", "train": {"objective": "dpo", "beta": 0.1}},
            {"name": "orpo", "init": "variant:sft", "data": "prefs", "train": {"objective": "orpo"}},
            {"name": "dpo-slerp", "merge": {"recipe": {
                "merge_method": "slerp", "base_model": "sft", "models": [{"model": "sft"}, {"model": "dpo"}],
                "parameters": {"t": GRADIENT}}}},
        ],  # fmt: skip
        "eval": {"ppl": ["d", "g"]},
    }


PAIRS = {"prompt": "", "chosen": "a", "rejected": "b"}

# (what is wrong, edits as (dotted path, value), the key named, a fragment of the message)
PROBLEMS = [
    ("sft without an init", [("variants.2.init", "scratch"), ("variants.2.tokenizer", "g")],
     "variants.2.init", "objective sft fine-tunes a model: set init"),
    ("pairs given to sft", [("variants.2.data", "prefs")], "variants.2.data",
     "dataset 'prefs' holds preference pairs: objective sft needs SFT examples"),
    ("SFT examples given to dpo", [("variants.3.data", "sft")], "variants.3.data",
     "dataset 'sft' holds SFT examples: objective dpo needs preference pairs"),
    ("unknown dataset", [("variants.2.data", "nope")], "variants.2.data", "unknown dataset 'nope'"),
    ("a corpus given to sft", [("variants.2.data", "d")], "variants.2.data",
     "'d' is a corpus: objective sft trains on a dataset"),
    ("no data for sft", [("variants.2.data", DELETE)], "variants.2.data",
     "objective sft trains on a dataset"),
    ("a dataset given to clm", [("variants.1.data", "sft")], "variants.1.data",
     "'sft' is a dataset: set train.objective"),
    ("a dpo option on sft", [("variants.2.train.beta", 0.1)], "variants.2.train",
     "--beta not used by --objective sft"),
    ("a token budget on dpo", [("variants.3.train.max_tokens", 1000)], "variants.3.train",
     "--max-tokens not used by --objective dpo"),
    ("an unknown objective", [("variants.2.train.objective", "ppo")], "variants.2.train.objective",
     "'clm', 'sft', 'dpo' or 'orpo'"),
    ("synth without posttrain items", [("corpora.d.synth.posttrain_items", 0)], "datasets.sft.corpus",
     "set corpora.d.synth.posttrain_items"),
    ("a file synth does not write", [("datasets.sft.file", "chat.jsonl")], "datasets.sft.file",
     "sft.jsonl and preferences.jsonl"),
    ("a dataset of a non-synthetic corpus", [("datasets.sft.corpus", "nope")], "datasets.sft.corpus",
     "'nope' is not a synthetic corpus"),
    ("a missing dataset file", [("datasets.sft", {"path": "nope.jsonl"})], "datasets.sft.path",
     "no such file"),
    ("two kinds of dataset", [("datasets.sft", {"path": "x.jsonl", "corpus": "d"})], "datasets.sft",
     "exactly one of path, corpus, make"),
    ("a dataset named like a corpus", [("datasets.d", {"corpus": "d", "file": "sft.jsonl"})],
     "datasets.d", "is also a corpus"),
    ("made pairs without a cutoff", [("datasets.made", {"make": {"corpus": "d"}})], "datasets.made.make",
     "--after YEAR is required"),
    ("made pairs that are not pairs", [("datasets.made", {"make": {"corpus": "d", "after": 2010, "pairs": False}})],
     "datasets.made.make.pairs", "preference pairs (pairs: true)"),
    ("made pairs of an unknown corpus", [("datasets.made", {"make": {"corpus": "x", "after": 2010}})],
     "datasets.made.make.corpus", "not a corpus of the experiment"),
    ("a recipe of an unknown variant", [("variants.5.merge.recipe.models", [{"model": "sft"}, {"model": "ppo"}])],
     "variants.5.merge.recipe", "unknown variant 'ppo'"),
    ("a recipe key expertlm lacks", [("variants.5.merge.recipe.tokenizer", {"source": "union"})],
     "variants.5.merge.recipe.tokenizer", "not supported by expertlm merge"),
    ("a recipe parameter slerp lacks", [("variants.5.merge.recipe.parameters.density", 0.5)],
     "variants.5.merge.recipe.parameters.density", "not supported by expertlm merge"),
    ("a recipe beside method options", [("variants.5.merge.t", 0.5)], "variants.5.merge.t",
     "a recipe merge takes the recipe alone"),
    ("a recipe merge that trains", [("variants.5.data", "d")], "variants.5.merge",
     "a merged variant is not trained"),
]  # fmt: skip


@pytest.mark.parametrize("what,edits,key,fragment", PROBLEMS, ids=[p[0] for p in PROBLEMS])
def test_each_problem_is_found_before_compute_under_its_key(tmp_path, what, edits, key, fragment):
    expect_problem(tmp_path, copy.deepcopy(base()), edits, what, key, fragment)


@pytest.mark.parametrize("record,ok", [
    ({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}, "sft"),
    ({"prompt": "q", "completion": "a"}, "sft"),
    (PAIRS, "prefs"),
    ({"text": "no post-training record"}, None),
])  # fmt: skip
def test_a_given_file_is_known_by_its_first_record(tmp_path, record, ok):
    data = tmp_path / "data.jsonl"
    data.write_text(json.dumps(record) + "\n", encoding="utf-8")
    exp = base()
    exp["datasets"]["mine"] = {"path": str(data)}
    exp["variants"][2]["data"] = "mine"  # sft
    p = write(tmp_path, exp)
    if ok == "sft":
        plan = plan_experiment(p, out=tmp_path / "out")
        st = next(s for s in plan.stages if s.label == "train sft seed 0")
        assert st.inputs["shards"].out == data
        return
    with pytest.raises(ExpertlmError) as e:
        plan_experiment(p, out=tmp_path / "out")
    key = "variants.2.data" if ok == "prefs" else "datasets.mine.path"
    assert f"key '{key}'" in str(e.value), e.value


def test_chained_objectives_plan_their_stages(tmp_path):
    plan = plan_experiment(write(tmp_path, base()), out=tmp_path / "out")
    by = {s.label: s for s in plan.stages}
    synth = by["synth d"]
    cpt, sft, dpo, orpo = (by[f"train {n} seed 0"] for n in ("cpt", "sft", "dpo", "orpo"))
    # each fine-tuning starts from its parent and reads a file of the synthetic field
    assert sft.options["init"] == str(cpt.out) and sft.after == [cpt]
    assert dpo.options["init"] == str(sft.out) and orpo.options["init"] == str(sft.out)
    assert sft.inputs["shards"].out == synth.out / "sft.jsonl"
    assert dpo.inputs["shards"].out == synth.out / "preferences.jsonl"
    assert synth in sft.inputs["shards"].deps
    assert (sft.options["objective"], dpo.options["objective"]) == ("sft", "dpo")
    # the recipe names the models' folders, and the stage reads both
    merge = by["merge dpo-slerp seed 0"]
    assert merge.kind == "merge_recipe"
    assert merge.inputs["models"] == [sft, dpo]
    recipe = merge.options["recipe"]
    assert recipe["base_model"] == str(sft.out)
    assert [m["model"] for m in recipe["models"]] == [str(sft.out), str(dpo.out)]
    assert recipe["parameters"]["t"] == GRADIENT
    # stages come in dependency order; every variant is scored on the benchmark and both fields
    order = [s.label for s in plan.stages]
    assert order.index("train sft seed 0") < order.index("train dpo seed 0") < order.index("merge dpo-slerp seed 0")
    evals = {s.label for s in plan.stages if s.kind in ("eval_bench", "eval_ppl")}
    for name in ("base", "cpt", "sft", "dpo", "orpo", "dpo-slerp"):
        assert {f"eval {name} seed 0 on fwd", f"ppl {name} seed 0 on d", f"ppl {name} seed 0 on g"} <= evals


def test_made_pairs_are_a_dataset(tmp_path):
    exp = base()
    exp["datasets"]["prefs"] = {"make": {"corpus": "d", "after": 2015, "max_items": 5}}
    plan = plan_experiment(write(tmp_path, exp), out=tmp_path / "out")
    by = {s.label: s for s in plan.stages}
    made = by["make pairs prefs"]
    assert made.kind == "bench_make" and made.options["pairs"] is True
    assert made.out == tmp_path / "out" / "datasets" / "prefs"
    assert by["train dpo seed 0"].inputs["shards"].out == made.out / "pairs.jsonl"


def test_dry_run_budgets_cover_fine_tuning_once_the_data_exists(tmp_path):
    from expertlm.corpus.build import corpus_build
    from expertlm.synth import corpus_synth
    from expertlm.tokenizer import tokenizer_train

    exp = base()
    plan = plan_experiment(write(tmp_path, exp), out=tmp_path / "out")
    dpo = next(s for s in plan.stages if s.label == "train dpo seed 0")
    assert "known once it is made" in training_budget(dpo)["note"]
    # with the field and the tokenizer made, the tokens are the examples' (both answers of a pair)
    by = {s.label: s for s in plan.stages}
    corpus_synth(by["synth d"].out, show_progress=False, **exp["corpora"]["d"]["synth"])
    corpus_synth(by["synth g"].out, show_progress=False, **exp["corpora"]["g"]["synth"])
    corpus_build([by["synth g"].out / "literature.jsonl.gz"], by["corpus g"].out, show_progress=False)
    tokenizer_train(by["corpus g"].out, by["tokenizer g"].out, vocab_size=600, show_progress=False)
    plan = plan_experiment(write(tmp_path, exp), out=tmp_path / "out")
    by = {s.label: s for s in plan.stages}
    b_dpo, b_sft = training_budget(by["train dpo seed 0"]), training_budget(by["train sft seed 0"])
    assert b_dpo["tokens"] > 2 * b_sft["tokens"] > 0  # pairs: two texts, each a whole abstract
    assert b_dpo["flops"] == pytest.approx(b_dpo["tokens"] * b_dpo["flops_per_token"])
    exp["variants"][3]["train"] = {"objective": "dpo", "max_steps": 3, "micro_batch": 2}
    plan = plan_experiment(write(tmp_path, exp), out=tmp_path / "out")
    b = training_budget(next(s for s in plan.stages if s.label == "train dpo seed 0"))
    assert b["tokens"] == 3 * 2 * b["context"] * 2 and b["note"] == "at most"  # steps x pairs x 2 texts


def test_the_bundled_adaptation_experiment_plans(tmp_path):
    config = Path(__file__).parents[1] / "src/expertlm/configs/adaptation.yaml"
    for profile in (None, "quick"):
        plan = plan_experiment(config, out=tmp_path / "out", profile=profile)
        kinds = {s.label: s.kind for s in plan.stages}
        assert {kinds[f"merge {n}-slerp seed 0"] for n in ("cpt", "sft", "dpo", "orpo")} == {"merge_recipe"}
        objectives = {n: plan.variants[n].models[0].options.get("objective", "clm")
                      for n in ("cpt", "cpt-more", "sft", "dpo", "orpo")}  # fmt: skip
        assert objectives == {"cpt": "clm", "cpt-more": "clm", "sft": "sft", "dpo": "dpo", "orpo": "orpo"}
