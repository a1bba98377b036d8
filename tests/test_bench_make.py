"""bench make: items pass the marker checks, only result sentences change (claim verbs and every
other byte kept), one finding per item restated consistently, rejections counted by reason,
decontamination, the token-count switch, preference pairs, the --llm path's plumbing, the
command line, and experiments that make a benchmark."""

from __future__ import annotations

import copy
import csv
import json

import pytest

from expertlm.errors import ExpertlmError
from expertlm.eval.alter import find_alteration, sentence_roles
from expertlm.eval.benchmark import derive_versions, read_benchmark
from expertlm.eval.lexicon import CLAIM_VERBS, DIRECTION, PARTNERS
from expertlm.eval.make import bench_make, check_item
from expertlm.eval.propose import PROMPT, Proposer, parse_edits

# BrainBench-style abstracts: background, methods, results (with the finding restated), conclusion.
A1 = ("Dopamine signalling in the striatum shapes habit learning. Whether it also governs "
      "extinction is unknown. We recorded dopamine release with fast-scan voltammetry in 24 mice "
      "during extinction training. Dopamine release in the dorsal striatum increased across "
      "extinction sessions (p < 0.01). Lever pressing fell over the same sessions. Compared with "
      "controls, dopamine release was higher in mice that extinguished faster. These results "
      "suggest that dopamine release supports extinction learning.")  # fmt: skip
A2 = ("Sleep loss impairs cognition, but its effect on hippocampal plasticity is debated. Here we "
      "deprived rats of sleep for 12 hours and measured long-term potentiation in slices. Sleep "
      "deprivation reduced long-term potentiation at CA1 synapses by 40%. Recovery sleep restored "
      "it within a day. We conclude that sleep deprivation impairs hippocampal plasticity.")  # fmt: skip
A3 = ("Microglia prune synapses during development. The role of the complement receptor CR3 in "
      "adult pruning is unclear. We imaged dendritic spines in CR3 knockout mice for four weeks. "
      "Knockout mice showed greater spine density than wild-type littermates (p = 0.003), while "
      "microglial process motility was unchanged. Our data demonstrate that CR3 signalling "
      "promotes synapse removal in the adult cortex.")  # fmt: skip
# direction words only in background and methods: nothing to reverse
NO_RESULT = ("Anxiety increases with chronic stress. We applied a protocol that increased "
             "corticosterone in 30 rats. Behaviour was scored blind. The open-field test was "
             "analysed with mixed models. Rats explored the arena for ten minutes.")  # fmt: skip
NEGATED = ("Ketamine acts on NMDA receptors. We gave ketamine to 20 mice. Ketamine did not "
           "increase locomotion (p = 0.4). Grooming was not reduced either (p = 0.7).")  # fmt: skip
PLAIN = ("Neurons fire. Cells talk. We looked at slices. Spikes were counted in each slice. "
         "The counts were as in earlier work.")  # fmt: skip


def docs(year=2024):
    return [{"id": f"10.1/a{k}", "year": year, "text": t, "section": "Systems"}
            for k, t in enumerate((A1, A2, A3), 1)]  # fmt: skip


def make(tmp_path, write_jsonl, rows, name="out", **opts):
    src = write_jsonl(tmp_path / f"{name}.jsonl", rows)
    return bench_make([src], tmp_path / name, show_progress=False, **{"after": 2022, **opts})


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_items_pass_the_marker_checks_and_change_only_result_sentences(tmp_path, write_jsonl):
    report = make(tmp_path, write_jsonl, docs())
    assert report["counts"] == {"input": 3, "items": 3, "rejected": {}}
    items = read_jsonl(tmp_path / "out" / "benchmark.jsonl")
    assert [i["original"] for i in items] == [A1, A2, A3]
    for it in items:
        # the markers reproduce both columns exactly
        assert derive_versions(it["combined"]) == (it["original"], it["altered"])
        roles = sentence_roles(it["original"])
        sent_o = [it["original"][s.start : s.end] for s in roles]
        sent_a = [it["altered"][s.start : s.end] for s in sentence_roles(it["altered"])]
        changed = [k for k, (o, a) in enumerate(zip(sent_o, sent_a, strict=True)) if o != a]
        assert changed and all(roles[k].role in ("result", "conclusion") for k in changed)
        assert any(roles[k].role == "result" for k in changed)
        # claim verbs kept; every change reverses a direction word
        words = lambda t: [w.strip(".,()").lower() for w in t.split()]  # noqa: E731
        assert [w for w in words(it["original"]) if w in CLAIM_VERBS] == [
            w for w in words(it["altered"]) if w in CLAIM_VERBS]  # fmt: skip
        for c in it["changes"]:
            assert DIRECTION[c["altered"].lower()] == -DIRECTION[c["original"].lower()] == -c["direction"]
    a1 = items[0]
    # one finding (dopamine release), restated in the comparison and the conclusion; the
    # behavioural result (lever pressing fell) is another finding and stays
    assert [(c["original"], c["altered"]) for c in a1["changes"]] == [("increased", "decreased"),
                                                                      ("higher", "lower")]  # fmt: skip
    assert "Lever pressing fell" in a1["altered"] and "dopamine release supports" in a1["altered"]
    with open(tmp_path / "out" / "benchmark.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["doi", "journal_section", "original_abstract", "incorrect_abstract",
                             "combined_abstract"]  # fmt: skip
    assert read_benchmark(tmp_path / "out" / "benchmark.csv")[1].altered == items[1]["altered"]
    made = json.loads((tmp_path / "out" / "make.json").read_text())
    assert made["inputs"][0]["sha256"] and made["generator"]["rules"]["pairs"]
    assert set(made["outputs"]) == {"benchmark.csv", "benchmark.jsonl"}


def test_rejections_are_counted_by_reason_and_add_up(tmp_path, write_jsonl):
    rows = [*docs(), {"id": "old", "year": 2019, "text": A1 + " Old."},
            {"id": "noyear", "text": A2 + " Undated."}, {"id": "dup", "year": 2023, "text": "  " + A3},
            {"id": "short", "year": 2023, "text": "Firing increased. It did."},
            {"id": "plain", "year": 2023, "text": PLAIN},
            {"id": "nores", "year": 2023, "text": NO_RESULT}, {"id": "neg", "year": 2023, "text": NEGATED},
            {"id": "empty", "year": 2023, "text": "  "}]  # fmt: skip
    report = make(tmp_path, write_jsonl, rows)
    assert report["counts"]["rejected"] == {
        "empty": 1, "no_year": 1, "before_cutoff": 1, "duplicate": 1, "too_short": 1,
        "no_direction_word": 1, "no_reversible_result": 2}  # fmt: skip
    c = report["counts"]
    assert c["input"] == c["items"] + sum(c["rejected"].values()) == len(rows)
    assert report["yield"] == 3 / (len(rows) - 2)


def test_check_item_catches_what_would_break_an_item():
    alt = find_alteration(A2)
    altered, combined = alt.apply(A2), alt.combined(A2)
    assert check_item(A2, altered, combined, alt) is None
    assert check_item(A2, altered + " ", combined, alt) == "markers_do_not_reproduce"
    # a change the item's own list does not hold: the markers reproduce it, the check does not
    assert check_item(A2, altered.replace("rats", "mice"), combined.replace("rats", "[[rats, mice]]"),
                      alt) == "outside_marked_spans"  # fmt: skip
    bad = copy.deepcopy(alt)
    bad.changes[0] = type(alt.changes[0])(**{**alt.changes[0].__dict__, "role": "method"})
    assert check_item(A2, altered, combined, bad) == "altered_outside_results"


def test_the_lexicon_pairs_opposite_directions_and_never_a_claim_verb():
    for w, partners in PARTNERS.items():
        assert partners and w not in CLAIM_VERBS
        assert all(DIRECTION[p] == -DIRECTION[w] for p in partners), w
    alt = find_alteration("Background here. Methods were applied to cells. Treatment led to a "
                          "reduction in firing (p < 0.05). Increased firing was also seen in vivo.")  # fmt: skip
    got = [(c.original, c.altered) for c in alt.changes]
    assert got[0] == ("a reduction", "an increase")  # the article follows the noun


def test_decontamination_against_a_training_corpus(tmp_path, write_jsonl):
    from lm_fixtures import write_corpus

    corpus = write_corpus(tmp_path / "train", [A2[:200] + " and so on", "unrelated text " * 20], ["x"])
    report = make(tmp_path, write_jsonl, docs(), decontam=[corpus])
    assert report["counts"]["rejected"] == {"contaminated": 1}
    ids = [i["id"] for i in read_jsonl(tmp_path / "out" / "benchmark.jsonl")]
    assert ids == ["10.1/a1", "10.1/a3"]
    assert report["decontam"][0]["path"] == str(corpus)


def test_token_counts_and_the_equal_tokens_switch(tmp_path, write_jsonl):
    from expertlm.tokenizer import tokenizer_train

    from lm_fixtures import write_corpus

    # a tokenizer that knows the abstracts' words and some of their partners, not all
    texts = [A1, A2, A3, "decreased lower augmented impaired smaller suppresses"] * 30
    corpus = write_corpus(tmp_path / "tok-corpus", texts, texts)
    tok = tokenizer_train(corpus, tmp_path / "tok", vocab_size=700, min_frequency=1, show_progress=False)
    free = make(tmp_path, write_jsonl, docs(), name="free", tokenizers=[tok])
    dist = free["length_difference"]["tokens"][str(tok)]
    assert sum(dist.values()) == 3 and free["length_difference"]["characters"]
    equal = make(tmp_path, write_jsonl, docs(), name="equal", tokenizers=[tok], equal_tokens=True)
    kept = read_jsonl(tmp_path / "equal" / "benchmark.jsonl")
    # A2's "reduced" takes "increased", its first partner, or whichever keeps the count
    assert kept and set(free["length_difference"]["tokens"][str(tok)]) != {"0"}
    assert all(a == b for it in kept for a, b in it["tokens"].values())
    # where the default partner has another token count, a later one is taken
    assert any(c["altered"] != PARTNERS[c["original"]][0] for it in kept for c in it["changes"])
    assert equal["counts"]["items"] + equal["counts"]["rejected"].get("unequal_tokens", 0) == 3
    assert set(equal["length_difference"]["tokens"][str(tok)]) <= {"0"}
    with pytest.raises(ExpertlmError, match="--equal-tokens"):
        make(tmp_path, write_jsonl, docs(), name="none", equal_tokens=True)


def test_pairs_are_trl_preference_rows_from_the_older_papers(tmp_path, write_jsonl):
    rows = docs(year=2015) + [{"id": "new", "year": 2024, "text": A1.replace("24 mice", "30 mice")}]
    report = make(tmp_path, write_jsonl, rows, pairs=True)
    assert report["mode"] == "pairs" and report["counts"]["rejected"] == {"after_cutoff": 1}
    pairs = read_jsonl(tmp_path / "out" / "pairs.jsonl")
    assert len(pairs) == 3 and not (tmp_path / "out" / "benchmark.csv").exists()
    for p, text in zip(pairs, (A1, A2, A3), strict=True):
        assert set(p) == {"prompt", "chosen", "rejected"}
        assert p["prompt"] + p["chosen"] == text and p["chosen"] != p["rejected"]
        assert p["prompt"] and not p["prompt"].endswith(" ") and p["chosen"].startswith(" ")


def test_llm_proposals_pass_the_same_checks(tmp_path, write_jsonl, monkeypatch):
    assert parse_edits('noise {"x": 1} {"edits": [{"original": "a", "altered": "b"}]}') == [("a", "b")]
    assert parse_edits("no json here {") == "llm_no_json"
    assert "{abstract}" in PROMPT
    answers = {
        A1: '{"edits": [{"original": "increased across", "altered": "decreased across"}]}',
        A2: '{"edits": [{"original": "deprived rats", "altered": "fed rats"}]}',  # a method
        A3: "I cannot help with that.",
    }
    monkeypatch.setattr(Proposer, "load", classmethod(lambda cls, p, max_new_tokens=0: cls(_Stub(), None)))
    monkeypatch.setattr(Proposer, "generate", lambda self, abstract: answers[abstract])
    report = make(tmp_path, write_jsonl, docs(), llm=tmp_path / "no-model")
    assert report["counts"]["rejected"] == {"altered_outside_results": 1, "llm_no_json": 1}
    (item,) = read_jsonl(tmp_path / "out" / "benchmark.jsonl")
    assert item["generator"] == "llm" and "[[increased across, decreased across]]" in item["combined"]
    assert report["generator"]["prompt"] == PROMPT


class _Stub:
    def eval(self):
        return self


def test_llm_plumbing_with_a_tiny_model(tmp_path, write_jsonl):
    from expertlm.tokenizer import load_tokenizer

    from lm_fixtures import make_tokenizer, random_gpt2, save_model

    tok = make_tokenizer(tmp_path / "tok")
    model = save_model(random_gpt2(len(load_tokenizer(tok)), n_positions=1024), tok, tmp_path / "lm")
    with pytest.raises(ExpertlmError, match="no item made") as e:
        make(tmp_path, write_jsonl, docs()[:1], llm=model, llm_max_new_tokens=16)
    assert "llm_no_json" in str(e.value) and not (tmp_path / "out").exists()


def test_synthetic_world_items_agree_with_the_worlds_own(tmp_path, write_jsonl):
    from expertlm.eval.benchmark import parse_markers
    from expertlm.synth.build import corpus_synth

    synth = corpus_synth(tmp_path / "synth", papers=60, bench_items=24, seen_items=4, show_progress=False)
    world = read_jsonl(synth / "benchmark.jsonl")
    rows = [{"id": w["id"], "year": w["year"], "text": w["original"]} for w in world]
    report = make(tmp_path, write_jsonl, rows)
    made = {i["id"]: i for i in read_jsonl(tmp_path / "out" / "benchmark.jsonl")}
    assert report["counts"]["items"] >= 0.8 * len(world)

    def places(combined):
        out, at = [], 0
        for p in parse_markers(combined):
            if isinstance(p, tuple):
                out.append((at, DIRECTION.get(p[0][1].lower())))
                at += len(p[0][0])
            else:
                at += len(p)
        return out

    agree = sum(places(made[w["id"]]["combined"]) == places(w["combined"]) for w in world if w["id"] in made)
    assert agree >= 0.9 * len(made)


def test_cli_bench_make_and_its_errors(tmp_path, write_jsonl):
    from click.testing import CliRunner

    from expertlm.cli import app

    src = write_jsonl(tmp_path / "d.jsonl", docs())
    r = CliRunner().invoke(app, ["bench", "make", str(src), "--after", "2022", "--out", str(tmp_path / "o"),
                                 "--no-progress"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert (tmp_path / "o" / "benchmark.csv").is_file()
    with pytest.raises(ExpertlmError, match="--after YEAR is required"):
        bench_make([src], tmp_path / "x", show_progress=False)
    with pytest.raises(ExpertlmError, match="expected a corpus folder or a .jsonl"):
        bench_make([tmp_path / "o" / "benchmark.csv"], tmp_path / "x", after=2022, show_progress=False)


# --- experiments ------------------------------------------------------------------------------


def test_an_experiment_plans_a_made_benchmark_and_reports_its_bad_keys(tmp_path, write_jsonl):
    from test_plan import base, write

    from expertlm.experiment import plan_experiment

    write_jsonl(tmp_path / "papers.jsonl", docs())
    exp = base()
    exp["benchmarks"]["made"] = {"make": {"corpus": "papers.jsonl", "after": 2022, "decontam": ["d"],
                                          "tokenizer": ["d"]}}  # fmt: skip
    plan = plan_experiment(write(tmp_path, exp), out=tmp_path / "out")
    kinds = [st.kind for st in plan.stages]
    mk = next(st for st in plan.stages if st.kind == "bench_make")
    assert mk.options == {"after": 2022}
    assert [s.label for s in mk.inputs["decontam"]] == ["corpus d"]
    assert [s.label for s in mk.inputs["tokenizers"]] == ["tokenizer d"]
    assert kinds.index("bench_make") > kinds.index("tokenizer_train")  # after what it needs
    evals = [st for st in plan.stages if st.kind == "eval_bench" and st.inputs["bench"].label == "benchmark made"]
    assert evals and all(kinds.index("bench_make") < plan.stages.index(e) for e in evals)
    assert evals[0].inputs["bench"].out == mk.out / "benchmark.csv"

    bad = copy.deepcopy(exp)
    bad["benchmarks"]["made"]["make"] |= {"afterz": 1, "corpus": "nope", "pairs": True, "max_places": 0}
    bad["corpora"]["d"]["decontam"] = ["made"]  # the benchmark needs the corpus and back
    with pytest.raises(ExpertlmError) as e:
        plan_experiment(write(tmp_path, bad), out=tmp_path / "out")
    msg = str(e.value)
    for key, fragment in (("benchmarks.made.make.afterz", "unknown key"),
                          ("benchmarks.made.make.corpus", "'nope'"),
                          ("benchmarks.made.make.pairs", "preference pairs"),
                          ("benchmarks.made.make.max_places", "greater than or equal to 1"),
                          ("benchmarks.made.make.decontam", "cycle")):  # fmt: skip
        assert any(f"key '{key}'" in ln and fragment in ln for ln in msg.splitlines()), (key, msg)
    assert not (tmp_path / "out").exists()
    nokind = copy.deepcopy(exp)
    nokind["benchmarks"]["made"]["path"] = "x.csv"
    with pytest.raises(ExpertlmError, match="exactly one of path, corpus, download, make"):
        plan_experiment(write(tmp_path, nokind), out=tmp_path / "out")
