"""Post-training data of the synthetic world (`corpus synth --posttrain-items`, synth/posttrain.py):
the formats `train --objective sft|dpo|orpo` reads, answers that state the published findings,
determinism, and never a forward-benchmark pair."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import pytest

from expertlm.chat import Renderer, read_preferences, read_sft
from expertlm.errors import ExpertlmError
from expertlm.synth import corpus_synth
from expertlm.synth.backbone import CONCLUSION_PAIRS, VERB_PAIRS
from expertlm.synth.benchmark import NgramGuard
from expertlm.synth.config import SynthConfig
from expertlm.synth.posttrain import PREFERENCE_FILE, SFT_FILE, Finding, posttrain_data
from expertlm.synth.world import load_world, make_world

SMALL = {"papers": 200, "bench_items": 40, "seen_items": 20, "posttrain_items": 150}


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def field(tmp_path_factory) -> Path:
    return corpus_synth(tmp_path_factory.mktemp("synth") / "s", show_progress=False, **SMALL)


def test_files_counts_and_formats(field):
    sft, prefs = rows(field / SFT_FILE), rows(field / PREFERENCE_FILE)
    assert len(sft) == len(prefs) == SMALL["posttrain_items"]
    counts = json.loads((field / "manifest.json").read_text())["counts"]
    assert counts["posttrain_sft"] == counts["posttrain_preferences"] == len(sft)
    for r in sft:
        assert [m["role"] for m in r["messages"]] == ["user", "assistant"]
        assert all(m["content"].strip() for m in r["messages"])
    for p in prefs:
        assert p["chosen"] != p["rejected"] and p["chosen"].startswith(" ")
        # the prompt is the shared text before the first changed sentence
        assert p["prompt"] and not p["prompt"].endswith(" ")
        assert len(p["chosen"].split()) == len(p["rejected"].split())


def test_expertlm_train_reads_them(field, tmp_path):
    from expertlm.corpus.build import corpus_build
    from expertlm.tokenizer import load_tokenizer, tokenizer_train

    corpus = corpus_build([field / "literature.jsonl.gz"], tmp_path / "c", show_progress=False)
    tok = tokenizer_train(corpus, tmp_path / "t", vocab_size=600, show_progress=False)
    renderer = Renderer(load_tokenizer(tok))
    sft = read_sft(field / SFT_FILE, renderer)
    prefs = read_preferences(field / PREFERENCE_FILE, renderer)
    assert len(sft) == len(prefs) == SMALL["posttrain_items"]
    assert all(sum(s.mask) > 0 and sum(s.mask) < len(s.ids) for s in sft)  # answer tokens only
    assert all(sum(p.chosen.mask) > 0 and sum(p.rejected.mask) > 0 for p in prefs)


def _findings(field: Path) -> dict[str, list[dict]]:
    with gzip.open(field / "literature.jsonl.gz", "rt", encoding="utf-8") as f:
        return {d["id"]: d["findings"] for d in map(json.loads, f)}


def test_answers_and_chosen_texts_state_the_published_finding(field):
    papers = _findings(field)
    polarity = dict(load_world(field / "world.json").interventions)
    effect_word = {a: 1 for a, _ in CONCLUSION_PAIRS} | {b: -1 for _, b in CONCLUSION_PAIRS}
    change_word = {a: 1 for a, _ in VERB_PAIRS} | {b: -1 for _, b in VERB_PAIRS}
    for r, p in zip(rows(field / SFT_FILE), rows(field / PREFERENCE_FILE), strict=True):
        assert (r["paper"], r["target"], r["outcome"]) == (p["paper"], p["target"], p["outcome"])
        (f,) = [f for f in papers[r["paper"]] if (f["target"], f["outcome"]) == (r["target"], r["outcome"])]
        assert f["intervention"] in r["messages"][0]["content"]
        published = f["direction"] * polarity[f["intervention"]]  # the effect as reported
        words = r["messages"][1]["content"].replace(",", " ").replace(":", " ").split()
        conclusion = words[-len(r["outcome"].split()) - 1]  # "... the T <verb> <outcome>."
        assert effect_word[conclusion] == published
        assert [change_word[w] for w in words if w in change_word] == [f["direction"]]
        # the chosen text concludes the same, the rejected text the opposite
        assert f"{r['target']}" in p["prompt"]
        assert any(f" {w} {r['outcome']}" in p["chosen"] for w, e in effect_word.items() if e == published)
        assert not any(f" {w} {r['outcome']}" in p["rejected"] for w, e in effect_word.items() if e == published)


def test_no_forward_benchmark_pair_appears(field):
    forward = {(it["target"], it["outcome"]) for it in rows(field / "benchmark.jsonl")}
    assert forward
    records = rows(field / SFT_FILE) + rows(field / PREFERENCE_FILE)
    assert not {(r["target"], r["outcome"]) for r in records} & forward
    for r in records:  # nor mentioned together anywhere in the texts
        text = json.dumps(r).lower()
        assert not [(t, o) for t, o in forward if t.lower() in text and o.lower() in text]
    # and no text shares a 13-gram with either version of a benchmark item
    guard = NgramGuard([], 13)
    for stem in ("benchmark", "benchmark_seen"):
        for it in rows(field / f"{stem}.jsonl"):
            for v in (it["original"], it["altered"]):
                guard.index.update(guard._ngrams(v))
    for r in rows(field / SFT_FILE):
        assert not guard.collides(" ".join(m["content"] for m in r["messages"]))
    for p in rows(field / PREFERENCE_FILE):
        assert not guard.collides(p["prompt"] + p["chosen"]) and not guard.collides(p["prompt"] + p["rejected"])


def test_a_held_out_pair_is_refused():
    world = make_world(SynthConfig(**{k: v for k, v in SMALL.items() if k != "posttrain_items"}))
    t, o = world.pairs(held_out=True)[0]
    with pytest.raises(ExpertlmError, match="held-out pair"):
        posttrain_data(world, [Finding("p1", 2010, t, 0, o, 1)], 1, random.Random(0), NgramGuard([]))


def test_deterministic_and_the_rest_of_the_field_unchanged(field, tmp_path):
    again = corpus_synth(tmp_path / "again", show_progress=False, **SMALL)
    for name in (SFT_FILE, PREFERENCE_FILE, "literature.jsonl.gz", "benchmark.csv"):
        assert (again / name).read_bytes() == (field / name).read_bytes(), name
    without = corpus_synth(tmp_path / "none", show_progress=False,
                           **{**SMALL, "posttrain_items": 0})  # fmt: skip
    assert not (without / SFT_FILE).exists() and not (without / PREFERENCE_FILE).exists()
    for name in ("literature.jsonl.gz", "benchmark.csv", "benchmark_seen.csv", "world.json"):
        assert (without / name).read_bytes() == (field / name).read_bytes(), name
    assert load_world(field / "world.json").seed == 0
