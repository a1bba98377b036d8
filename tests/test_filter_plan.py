"""experiment/filter_plan.py: web corpora, classifiers, filtered corpora, eval.checkpoints and
eval.compute in an experiment file: planned as stages of the registered kinds, and every
problem found before any compute, under its key."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from plan_helpers import expect_problem, write

from expertlm.experiment import plan_experiment

SPEC = Path(__file__).parents[1] / "src" / "expertlm" / "configs" / "specialization.yaml"
CONT = {"max_steps": 4, "ckpt_every_steps": 2, "keep_last": 2}


def base() -> dict:
    return {
        "name": "t",
        "corpora": {
            "d": {"synth": {"papers": 60, "bench_items": 8, "seen_items": 4}},
            "g": {"synth": {"field": "general", "papers": 60, "bench_items": 8, "seen_items": 4}},
            "w": {"web": {"domain_docs": 20, "general_docs": 10, "other_docs": 10}},
            "neg": {"web": {"seed": 1, "domain_docs": 1, "general_docs": 10, "other_docs": 10}},
            "f": {"filter": {"corpus": "w", "classifier": "k", "threshold": 0.6}},
        },
        "classifiers": {"k": {"positive": ["d"], "negative": ["neg"], "options": {"epochs": 2}}},
        "tokenizers": {"g": {"corpus": "g", "vocab_size": 600}},
        "benchmarks": {"fwd": {"corpus": "d"}},
        "variants": [
            {"name": "b", "tokenizer": "g", "data": "g", "preset": "gpt2-tiny", "train": {"max_steps": 2}},
            {"name": "bf", "init": "variant:b", "data": "f", "train": dict(CONT)},
            {"name": "bw", "init": "variant:b", "data": "w", "train": dict(CONT)},
        ],
        "eval": {"ppl": ["d", "g"], "checkpoints": "all",
                 "compute": {"benchmark": "fwd", "domain": "d", "general": "g",
                             "sizes": {"s": {"base": "b", "filtered": "bf", "unfiltered": "bw"}}}},
    }  # fmt: skip


def test_a_valid_file_plans_web_classifier_filter_and_checkpoint_evals(tmp_path):
    plan = plan_experiment(write(tmp_path, base()), out=tmp_path / "out")
    by_label = {st.label: st for st in plan.stages}
    web, clf, filt = by_label["web w"], by_label["classifier k"], by_label["filter f"]
    assert (web.kind, clf.kind, filt.kind) == ("corpus_web", "classifier_train", "corpus_filter")
    assert by_label["corpus w"].inputs["sources"][0].deps == [web]  # built from its web.jsonl.gz
    assert clf.inputs["positive"] == [plan.corpora["d"]] and clf.inputs["negative"] == [plan.corpora["neg"]]
    assert filt.inputs == {"sources": [plan.corpora["w"]], "classifier": clf}
    assert filt.options == {"threshold": 0.6} and plan.corpora["f"] is filt
    order = plan.stages.index
    assert order(by_label["corpus w"]) < order(filt) and order(clf) < order(filt)
    assert by_label["train bf seed 0"].inputs["shards"].inputs["corpus"] is filt
    # every trained variant is scored at its checkpoints
    for st in plan.stages:
        if st.kind in ("eval_bench", "eval_ppl"):
            assert st.options["checkpoints"] == "all", st.label
    assert not (tmp_path / "out").exists()


PROBLEMS = [
    ("filter: unknown classifier", [("corpora.f.filter.classifier", "nope")],
     "corpora.f.filter.classifier", "unknown classifier 'nope'"),
    ("filter: unknown corpus", [("corpora.f.filter.corpus", "nope")], "corpora.f.filter.corpus",
     "unknown corpus 'nope'"),
    ("filter: a bad option", [("corpora.f.filter.threshold", 2)], "corpora.f.filter.threshold",
     "less than or equal to 1"),
    ("filter: built too", [("corpora.f.build", {"min_chars": 5})], "corpora.f",
     "a filtered corpus is not built"),
    ("web: a bad option", [("corpora.w.web.domain_docs", 0)], "corpora.w.web.domain_docs",
     "greater than or equal to 1"),
    ("classifier: unknown corpus", [("classifiers.k.negative", ["nope"])], "classifiers.k.negative",
     "unknown corpus 'nope'"),
    ("classifier: a bad option", [("classifiers.k.options", {"epochs": 0})],
     "classifiers.k.options.epochs", "greater than or equal to 1"),
    ("checkpoints: a bad value", [("eval.checkpoints", "every:0")], "eval.checkpoints",
     "expected all or every:N"),
    ("checkpoints pruned before they are scored", [("variants.1.train", {"max_steps": 10, "ckpt_every_steps": 2})],
     "variants.1.train.keep_last", "keeps 2 of the 5 checkpoints"),
    ("compute without checkpoints", [("eval.checkpoints", None)], "eval.compute",
     "needs eval.checkpoints"),
    ("compute: general not scored", [("eval.ppl", ["d"])], "eval.compute.general",
     "'g' is not in eval.ppl"),
    ("compute: unknown benchmark", [("eval.compute.benchmark", "nope")], "eval.compute.benchmark",
     "unknown benchmark 'nope'"),
    ("compute: a run not continued from the base",
     [("eval.compute.sizes.s", {"base": "bf", "filtered": "bf", "unfiltered": "bw"})],
     "eval.compute.sizes.s.filtered", "does not continue the base 'bf'"),
]  # fmt: skip


@pytest.mark.parametrize("what,edits,key,fragment", PROBLEMS, ids=[p[0] for p in PROBLEMS])
def test_each_problem_is_found_before_compute_under_its_key(tmp_path, what, edits, key, fragment):
    expect_problem(tmp_path, copy.deepcopy(base()), edits, what, key, fragment)


@pytest.mark.parametrize("profile", [None, "quick", "paper"])
def test_the_specialization_config_and_its_profiles_plan(tmp_path, profile):
    plan = plan_experiment(SPEC, out=tmp_path / "out", profile=profile)
    kinds = [st.kind for st in plan.stages]
    assert kinds.count("train") == (6 if profile == "paper" else 9)
    assert {"corpus_web", "classifier_train", "corpus_filter"} <= set(kinds)
    assert not (tmp_path / "out").exists()


def test_the_paper_profile_dry_run_prints_flops_for_1_5b_to_14b_models(tmp_path):
    from expertlm.experiment.budget import HUB_CONFIGS, training_budget

    plan = plan_experiment(SPEC, out=tmp_path / "out", profile="paper")
    models = {"xs": "Qwen/Qwen2.5-1.5B", "s": "Qwen/Qwen2.5-7B", "m": "Qwen/Qwen2.5-14B"}
    for st in (st for st in plan.stages if st.kind == "train"):
        b = training_budget(st)
        c = HUB_CONFIGS[models[st.label.split()[1].split("-")[0]]]
        # 6 N + 12 L d T per token: N = every weight of a matmul (the input embedding is not
        # one; a tied output projection is the same matrix, an untied one is counted once)
        n = b["parameters"] - (0 if c["tie_word_embeddings"] else c["vocab_size"] * c["hidden_size"])
        assert b["flops_per_token"] == 6 * n + 12 * c["num_hidden_layers"] * c["hidden_size"] * 4096
        assert b["tokens"] == 1_000_000_000 and b["flops"] == b["flops_per_token"] * b["tokens"]
    params = sorted({training_budget(st)["parameters"] for st in plan.stages if st.kind == "train"})
    assert 1.4e9 < params[0] < 1.7e9 and 14e9 < params[-1] < 15.5e9


def test_web_skip_papers_takes_the_papers_a_shorter_literature_does_not_hold(tmp_path):
    import gzip
    import json

    from expertlm.synth.build import LITERATURE, corpus_synth
    from expertlm.synth.web import WEB, corpus_web, read_truth

    def texts(path):
        with gzip.open(path, "rt", encoding="utf-8") as f:
            return [json.loads(line)["text"] for line in f]

    short = texts(corpus_synth(tmp_path / "s20", papers=20, show_progress=False) / LITERATURE)
    longer = texts(corpus_synth(tmp_path / "s30", papers=30, show_progress=False) / LITERATURE)
    assert longer[:20] == short  # a literature of n papers is the first n of a longer one
    web = corpus_web(tmp_path / "web", skip_papers=20, domain_docs=10, general_docs=0,
                     other_docs=0, show_progress=False)  # fmt: skip
    truth = read_truth(web)
    with gzip.open(web / WEB, "rt", encoding="utf-8") as f:
        domain = {d["text"] for d in map(json.loads, f) if truth[d["id"]] == "domain"}
    assert domain == set(longer[20:]) and not domain & set(short)
