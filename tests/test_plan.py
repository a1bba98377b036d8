"""experiment/plan.py: every problem an experiment file can have is found before any compute,
under its key, with every stage's options checked by that stage's config class; and a valid
file plans the stages of the registered kinds with the right inputs."""

from __future__ import annotations

import copy

import pytest
from plan_helpers import DELETE, expect_problem, write

from expertlm.errors import ExpertlmError
from expertlm.experiment import plan_experiment
from expertlm.experiment.stages import REGISTRY


def base() -> dict:
    return {
        "name": "t",
        "downloads": {},
        "corpora": {"d": {"synth": {"papers": 60, "bench_items": 8, "seen_items": 4}},
                    "g": {"synth": {"field": "general", "papers": 60, "bench_items": 8,
                                    "seen_items": 4}}},  # fmt: skip
        "tokenizers": {"d": {"corpus": "d", "vocab_size": 600},
                       "g": {"corpus": "g", "vocab_size": 600}},  # fmt: skip
        "benchmarks": {"fwd": {"corpus": "d"}},
        "variants": [
            {"name": "a", "tokenizer": "d", "preset": "gpt2-tiny", "train": None},
            {"name": "b", "tokenizer": "d", "data": "d", "preset": "gpt2-tiny",
             "train": {"max_steps": 2}},
            {"name": "c", "init": "variant:b", "data": "d", "train": {"max_steps": 2}},
        ],  # fmt: skip
        "eval": {"ppl": ["d"]},
    }


# (what is wrong, edits as (dotted path, value), the key named, a fragment of the message)
PROBLEMS = [
    ("download folder missing", [("downloads.bb", {"fetch": "brainbench", "from_dir": "nope"})],
     "downloads.bb.from_dir", "no such folder"),
    ("unknown published benchmark", [("downloads.bb", {"fetch": "mmlu"})], "downloads.bb.fetch",
     "brainbench"),
    ("corpus path is no corpus", [("corpora.x", {"path": "."})], "corpora.x.path",
     "not a corpus folder"),
    ("bad synth option", [("corpora.d.synth.papers", 0)], "corpora.d.synth.papers",
     "greater than or equal to 1"),
    ("unknown synth option", [("corpora.d.synth.paperz", 3)], "corpora.d.synth.paperz",
     "unknown key"),
    ("unknown pubmed option", [("corpora.p", {"pubmed": {"query": "x", "retries": 3}})],
     "corpora.p.pubmed.retries", "unknown key"),
    ("bad pubmed option", [("corpora.p", {"pubmed": {"query": "x", "batch_size": 0}})],
     "corpora.p.pubmed.batch_size", "greater than or equal to 1"),
    ("missing source", [("corpora.s", {"sources": ["nope.jsonl"]})], "corpora.s.sources.0",
     "no such file or folder"),
    ("bad build option", [("corpora.d.build", {"min_chars": -1})], "corpora.d.build.min_chars",
     "greater than or equal to 0"),
    ("missing decontamination file", [("corpora.s", {"sources": ["."],
                                                     "build": {"decontam": ["nope.csv"]}})],
     "corpora.s.build.decontam", "no such benchmark file"),
    ("unknown decontamination benchmark", [("corpora.d.decontam", ["nope"])], "corpora.d.decontam",
     "unknown benchmark 'nope'"),
    ("benchmark of a non-synthetic corpus", [("corpora.s", {"sources": ["."]}),
                                             ("benchmarks.x", {"corpus": "s"})],
     "benchmarks.x.corpus", "'s' is not a synthetic corpus"),
    ("benchmark of an unknown download", [("benchmarks.x", {"download": "nope"})],
     "benchmarks.x.download", "unknown download 'nope'"),
    ("missing benchmark file", [("benchmarks.x", {"path": "nope.csv"})], "benchmarks.x.path",
     "no such benchmark file"),
    ("tokenizer of an unknown corpus", [("tokenizers.x", {"corpus": "nope"})],
     "tokenizers.x.corpus", "unknown corpus 'nope'"),
    ("bad tokenizer option", [("tokenizers.d.vocab_size", 100)], "tokenizers.d.vocab_size",
     "257"),
    ("unknown tokenizer option", [("tokenizers.d.options", {"lowercase": True})],
     "tokenizers.d.options.lowercase", "unknown key"),
    ("tokenizer path missing", [("tokenizers.x", {"path": "./nope"})], "tokenizers.x.path",
     "no such folder (and not a hub id)"),
    ("bad scoring option", [("eval.options", {"reduction": "max"})], "eval.options.reduction",
     "'mean' or 'sum'"),
    ("unknown benchmark to score on", [("eval.benchmarks", ["nope"])], "eval.benchmarks",
     "unknown benchmark 'nope'"),
    ("unknown corpus for bits per byte", [("eval.ppl", ["nope"])], "eval.ppl",
     "unknown corpus 'nope'"),
    ("bad ppl_max_docs", [("eval.ppl_max_docs", 0)], "eval.ppl_max_docs",
     "greater than or equal to 1"),
    ("unknown tokenizer corpus", [("eval.tokenizers_on", "nope")], "eval.tokenizers_on",
     "unknown corpus 'nope'"),
    ("humans from an unknown download", [("humans", {"download": "nope"})], "humans.download",
     "unknown download 'nope'"),
    ("humans file missing", [("humans", {"path": "people.csv"})], "humans.path",
     "no such participant data file"),
    ("bad humans items", [("humans", {"path": ".", "items": "robots"})], "humans.items",
     "'human', 'machine' or 'all'"),
    ("duplicate variant", [("variants.1.name", "a")], "variants.1.name",
     "used by more than one variant"),
    ("bad variant name", [("variants.1.name", "../x")], "variants.1.name",
     "use letters, digits"),
    ("init from an unknown variant", [("variants.2.init", "variant:nope")], "variants.2.init",
     "unknown variant 'nope'"),
    ("init cycle", [("variants.1.init", "variant:c"), ("variants.1.tokenizer", None)],
     "variants.", "in a cycle"),
    ("tokenizer differs from init's", [("variants.2.tokenizer", "g")], "variants.2.tokenizer",
     "differs from the tokenizer of its init 'b'"),
    ("scratch without tokenizer", [("variants.1.tokenizer", None)], "variants.1.tokenizer",
     "needs a tokenizer"),
    ("unknown tokenizer", [("variants.1.tokenizer", "nope")], "variants.1.tokenizer",
     "unknown tokenizer 'nope'"),
    ("init folder missing", [("variants.2.init", "./nope")], "variants.2.init",
     "no such folder (and not a hub id)"),
    ("unknown preset", [("variants.0.preset", "gpt9")], "variants.0.preset",
     "unknown preset 'gpt9'"),
    ("unknown model field", [("variants.0.model", {"n_layers": 2})], "variants.0.model.n_layers",
     "unknown key"),
    ("bad model field", [("variants.0.model", {"n_layer": 0})], "variants.0.model.n_layer",
     "greater than or equal to 1"),
    ("heads do not divide the width", [("variants.0.model", {"n_embd": 100, "n_head": 3})],
     "variants.0.model", "not divisible by n_head 3"),
    ("experiment name", [("name", "../..")], "name", "a name is a folder name"),
    ("corpus name", [("corpora.a b", {"path": "."})], "corpora", "a name is a folder name"),
    ("untrained variant with data", [("variants.0.data", "d")], "variants.0.data",
     "has no training data"),
    ("trained variant without data", [("variants.1.data", DELETE)], "variants.1.data",
     "needs data"),
    ("training on an unknown corpus", [("variants.1.data", "nope")], "variants.1.data",
     "unknown corpus 'nope'"),
    ("seed under train", [("variants.1.train.seed", 3)], "variants.1.train.seed",
     "set seed on the variant"),
    ("bad train option", [("variants.1.train.lr", -1)], "variants.1.train.lr",
     "greater than 0"),
    ("unknown train option", [("variants.1.train.max_stepz", 3)], "variants.1.train.max_stepz",
     "unknown key"),
    ("lora from scratch", [("variants.1.train.lora", {"r": 4})], "variants.1.train",
     "--lora needs --init"),
    ("merge without models", [("variants.3", {"name": "m", "merge": {"method": "slerp"}})],
     "variants.3.merge.models", "needs a list of variant names"),
    ("merge of an unknown variant", [("variants.3", {"name": "m", "merge": {"models": ["a", "z"]}})],
     "variants.3.merge.models", "unknown variant 'z'"),
    ("merge on an unknown base", [("variants.3", {"name": "m", "merge": {
        "method": "ties", "models": ["b"], "base": "z"}})], "variants.3.merge.base",
     "unknown variant 'z'"),
    ("bad merge option", [("variants.3", {"name": "m", "merge": {"method": "slerp",
                                                                "models": ["a", "b"], "t": 2}})],
     "variants.3.merge.t", "less than or equal to 1"),
    ("unknown merge option", [("variants.3", {"name": "m", "merge": {"models": ["a", "b"],
                                                                    "alpha": 1}})],
     "variants.3.merge.alpha", "unknown key"),
    ("merge option of another method", [("variants.3", {"name": "m", "merge": {
        "method": "linear", "models": ["a", "b"], "t": 0.3}})], "variants.3.merge",
     "--t not used by --method linear"),
    ("merge across tokenizers", [("variants.3", {"name": "m", "tokenizer": "g", "train": None}),
                                 ("variants.4", {"name": "x", "merge": {"models": ["a", "m"]}})],
     "variants.4.merge.models", "must share one tokenizer"),
    ("trained merge", [("variants.3", {"name": "m", "data": "d",
                                       "merge": {"models": ["a", "b"]}})],
     "variants.3.merge", "is not trained"),
]  # fmt: skip


@pytest.mark.parametrize("what,edits,key,fragment", PROBLEMS, ids=[p[0] for p in PROBLEMS])
def test_each_problem_is_found_before_compute_under_its_key(tmp_path, what, edits, key, fragment):
    expect_problem(tmp_path, copy.deepcopy(base()), edits, what, key, fragment)


def test_every_problem_of_a_file_comes_in_one_round(tmp_path):
    exp = base()
    exp["corpora"]["d"]["synth"]["papers"] = 0
    exp["tokenizers"]["d"]["vocab_size"] = 100
    exp["variants"][1]["train"]["lr"] = -1
    exp["eval"]["options"] = {"bins": 0}
    with pytest.raises(ExpertlmError) as e:
        plan_experiment(write(tmp_path, exp), out=tmp_path / "out")
    for key in ("corpora.d.synth.papers", "tokenizers.d.vocab_size",
                "variants.1.train.lr", "eval.options.bins"):  # fmt: skip
        assert f"key '{key}'" in str(e.value), e.value


def test_a_valid_file_plans_stages_of_the_registered_kinds(tmp_path):
    plan = plan_experiment(write(tmp_path, base()), out=tmp_path / "out")
    kinds = [st.kind for st in plan.stages]
    assert set(kinds) <= set(REGISTRY)
    assert kinds[:4] == ["corpus_synth", "corpus_synth", "corpus_build", "corpus_build"]
    train_c = next(st for st in plan.stages if st.label == "train c seed 0")
    train_b = next(st for st in plan.stages if st.label == "train b seed 0")
    assert train_c.options["init"] == str(train_b.out) and train_b in train_c.deps
    assert train_c.inputs["shards"] is train_b.inputs["shards"]  # one shards stage per pair
    evals = [st for st in plan.stages if st.kind == "eval_bench"]
    assert {st.inputs["model"].label for st in evals} == {"init a seed 0", "train b seed 0",
                                                          "train c seed 0"}  # fmt: skip
    assert kinds.count("tokenizer_compare") == 1
    assert not (tmp_path / "out").exists()


# What a stage would refuse later, found before compute (from the options and the models' shapes).
PREFLIGHT = [
    ("context above the positions", [("variants.1.train.context", 4096)], "variants.1.train.context",
     "exceeds the model's maximum (128)"),
    ("context above the parent's positions", [("variants.2.train.context", 4096)],
     "variants.2.train.context", "exceeds the model's maximum (128)"),
    ("batch not divisible", [("variants.1.train.batch_tokens", 1000)],
     "variants.1.train.batch_tokens", "not a multiple of micro_batch x processes x context"),
    ("a device this machine lacks", [("variants.1.train.device", "cuda:7")],
     "variants.1.train.device", "cuda:7"),
    ("an unknown device", [("variants.1.train.device", "tpu9")], "variants.1.train.device",
     "unknown device 'tpu9'"),
    ("a scoring device this machine lacks", [("eval.options", {"device": "cuda:7"})],
     "eval.options.device", "cuda:7"),
    ("a model too large for the machine", [("variants.1.model", {"n_embd": 64000})],
     "variants.1.model", "GiB to train"),
]  # fmt: skip


@pytest.mark.parametrize("what,edits,key,fragment", PREFLIGHT, ids=[p[0] for p in PREFLIGHT])
def test_what_a_stage_would_refuse_later_is_found_before_compute(tmp_path, what, edits, key,
                                                                  fragment):  # fmt: skip
    test_each_problem_is_found_before_compute_under_its_key(tmp_path, what, edits, key, fragment)


def test_shape_problems_come_in_the_same_round_as_option_problems(tmp_path):
    exp = base()
    exp["variants"][1]["train"]["lr"] = -1
    exp["variants"][2]["train"]["context"] = 4096
    with pytest.raises(ExpertlmError) as e:
        plan_experiment(write(tmp_path, exp), out=tmp_path / "out")
    assert "key 'variants.1.train.lr'" in str(e.value)
    assert "key 'variants.2.train.context'" in str(e.value)
