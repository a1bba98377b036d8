"""The synthetic literature world (`expertlm corpus synth`): files, truth, balance, ceilings,
decontamination through the real corpus stage, matched token counts, determinism, errors."""

from __future__ import annotations

import csv
import gzip
import json
import math
import os
import random
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy.optimize import minimize

from expertlm.corpus.build import corpus_build
from expertlm.errors import ExpertlmError
from expertlm.eval.benchmark import BRAINBENCH_COLUMNS, read_benchmark
from expertlm.synth import corpus_synth
from expertlm.synth.backbone import BACKBONE_WORDS, DIRECTION_STEMS, DIRECTION_WORDS, template_words
from expertlm.synth.baselines import CLASS_L2
from expertlm.synth.config import SynthConfig
from expertlm.synth.lexicon import CONCLUSION_PAIRS, DIRECTION_PAIRS, LEXICONS
from expertlm.synth.templates import Pools, compile_template, render
from expertlm.synth.textstats import WORD, text_statistics
from expertlm.synth.world import load_world
from expertlm.tokenizer import load_handle, tokenizer_compare, tokenizer_train

FILES = {
    "world.json",
    "literature.jsonl.gz",
    "benchmark.csv",
    "benchmark.jsonl",
    "benchmark_seen.csv",
    "benchmark_seen.jsonl",
    "ceilings.json",
    "manifest.json",
}
DEMO_VOCAB = {name: t["vocab_size"] for name, t in yaml.safe_load(
    (Path(__file__).parents[1] / "src/expertlm/configs/demo.yaml").read_text())["tokenizers"].items()}
Z999 = 3.2905  # two-sided 99.9% normal quantile: the binomial tolerances below use it
MARK = re.compile(r"\[\[([^\[\],]+), ([^\[\],]+)\]\]")


def literature(folder: Path) -> list[dict]:
    with gzip.open(folder / "literature.jsonl.gz", "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def items(folder: Path, stem: str = "benchmark") -> list[dict]:
    return [json.loads(line) for line in (folder / f"{stem}.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def default(tmp_path_factory) -> Path:
    """The default world (seed 0), generated once for the module."""
    return corpus_synth(tmp_path_factory.mktemp("synth") / "default")


@pytest.fixture(scope="module")
def general(tmp_path_factory) -> Path:
    return corpus_synth(tmp_path_factory.mktemp("synth") / "general", field="general")


@pytest.fixture(scope="module")
def corpora(default, general, tmp_path_factory) -> dict[str, Path]:
    """Both literatures through the real corpus stage, decontaminated against both benchmarks."""
    base = tmp_path_factory.mktemp("corpus")
    out = {}
    for name, folder in (("domain", default), ("general", general)):
        out[name] = corpus_build(
            [folder / "literature.jsonl.gz"],
            base / name,
            decontam=[folder / "benchmark.csv", folder / "benchmark_seen.csv"],
        )
    return out


# --- files and formats -----------------------------------------------------------------------


def test_the_folder_holds_every_file_and_the_literature_is_a_corpus_source(default):
    assert {p.name for p in default.iterdir()} == FILES
    papers = literature(default)
    manifest = json.loads((default / "manifest.json").read_text())
    cfg = SynthConfig()
    assert len(papers) == manifest["counts"]["papers"] == cfg.papers
    assert sum(len(p["findings"]) for p in papers) == manifest["counts"]["findings"]
    assert sum(len(p["text"]) for p in papers) == manifest["counts"]["text_chars"]
    with gzip.open(default / "literature.jsonl.gz", "rb") as f:
        assert len(f.read()) == manifest["counts"]["literature_bytes_uncompressed"]
    assert len({p["id"] for p in papers}) == len(papers)
    for p in papers:
        assert set(p) == {"id", "year", "text", "source", "findings"}
        assert p["source"] == "synth:domain:seed0"
        assert cfg.min_findings <= len(p["findings"]) <= cfg.max_findings
        assert len(p["text"]) >= 200  # corpus build's default --min-chars keeps every paper
    years = Counter(p["year"] for p in papers)
    assert sorted(years) == list(range(2002, 2023))
    assert max(years.values()) - min(years.values()) <= 1  # spread evenly over the years
    assert manifest["counts"]["dropped_for_decontamination"] == 0


def test_benchmark_files_are_brainbench_csv_and_benchmark_jsonl(default):
    for stem, n in (("benchmark", 200), ("benchmark_seen", 100)):
        with open(default / f"{stem}.csv", newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
        assert tuple(rows[0]) == BRAINBENCH_COLUMNS
        assert len(rows) == n + 1
        from_csv, from_jsonl = (
            read_benchmark(default / f"{stem}.csv"),
            read_benchmark(default / f"{stem}.jsonl"),
        )
        assert from_csv == from_jsonl
        for row, it in zip(rows[1:], items(default, stem), strict=True):
            assert row == [it["id"], it["section"], it["original"], it["altered"], it["combined"]]
            assert it["year"] == 2023


def test_combined_marks_every_change_and_only_direction_words_change(default):
    pairs = {frozenset(p) for p in DIRECTION_PAIRS}
    for it in items(default) + items(default, "benchmark_seen"):
        combined = it["combined"]
        assert MARK.sub(r"\1", combined) == it["original"]
        assert MARK.sub(r"\2", combined) == it["altered"]
        marked = MARK.findall(combined)
        assert marked == [(m["original"], m["altered"]) for m in it["marks"]]
        assert [m["role"] for m in it["marks"]] == ["result", "comparison", "conclusion"]
        assert all(frozenset(m) in pairs for m in marked)
        # the two versions differ in exactly the marked words
        a, b = it["original"].split(" "), it["altered"].split(" ")
        diff = [(x, y) for x, y in zip(a, b, strict=True) if x != y]
        assert [(x.strip(".,"), y.strip(".,")) for x, y in diff] == marked


# --- the truth -------------------------------------------------------------------------------


def test_world_json_explains_every_finding(default):
    world_json = json.loads((default / "world.json").read_text())
    world = load_world(default)
    U = np.array([t["u"] for t in world_json["targets"]])
    V = np.array([o["v"] for o in world_json["outcomes"]])
    effect = np.where(U @ V.T >= 0, 1, -1)
    names = {n: i for i, n in enumerate(world.target_names)}
    outs = {n: i for i, n in enumerate(world.outcome_names)}
    for t, target in enumerate(world_json["targets"]):
        assert [target["effects"][o] for o in world.outcome_names] == effect[t].tolist()
    polarity = {i["name"]: i["polarity"] for i in world_json["interventions"]}
    flipped = total = 0
    for paper in literature(default):
        for f in paper["findings"]:
            t, o = names[f["target"]], outs[f["outcome"]]
            assert not world.held_out[t, o]  # the literature never reports a held-out pair
            assert f["true_direction"] == polarity[f["intervention"]] * effect[t, o]
            assert f["flipped"] == (f["direction"] != f["true_direction"])
            assert f["target"] in paper["text"] and f["outcome"] in paper["text"]
            flipped += f["flipped"]
            total += 1
    # the literature flips each finding independently with probability noise
    eps = SynthConfig().noise
    assert abs(flipped / total - eps) <= Z999 * math.sqrt(eps * (1 - eps) / total)


def test_held_out_design_and_rule_repetitions(default):
    world = load_world(default)
    cfg = SynthConfig()
    held = world.held_out
    assert (held.sum(axis=1) == cfg.holdout).all()
    per_outcome = held.sum(axis=0)
    assert per_outcome.max() - per_outcome.min() <= 1
    # every (outcome, system, type) rule is reported through at least one target
    for s in range(cfg.systems):
        for y in range(cfg.types):
            members = (world.target_system == s) & (world.target_type == y)
            assert members.sum() >= 1
            assert (~held[members]).any(axis=0).all()
    rules = json.loads((default / "manifest.json").read_text())["counts"]["findings_per_rule"]
    assert rules["outcome_system"]["min"] >= 100 and rules["outcome_type"]["min"] >= 100
    assert rules["outcome_system_type"]["mean"] >= 100


def test_forward_pairs_are_never_mentioned_together_in_the_literature(default):
    world = load_world(default)
    mentioned = {t: set() for t in world.target_names}
    for paper in literature(default):
        target = paper["findings"][0]["target"]
        mentioned[target].update(o for o in world.outcome_names if o in paper["text"])
    for it in items(default):
        assert it["outcome"] not in mentioned[it["target"]]


def test_items_are_about_held_out_or_reported_pairs_and_state_their_truth(default):
    world = load_world(default)
    names = {n: i for i, n in enumerate(world.target_names)}
    outs = {n: i for i, n in enumerate(world.outcome_names)}
    polarity = dict(world.interventions)
    effect = world.effect
    for stem, held in (("benchmark", True), ("benchmark_seen", False)):
        originals = set()
        for it in items(default, stem):
            t, o = names[it["target"]], outs[it["outcome"]]
            assert world.held_out[t, o] == held
            assert it["section"] == world.section(t)
            assert it["polarity"] == polarity[it["intervention"]]
            assert it["true_effect"] == effect[t, o]
            assert it["flipped"] == (it["effect"] != it["true_effect"])
            assert it["direction"] == it["polarity"] * it["effect"]
            for m in it["marks"]:
                sign = it["effect"] if m["role"] == "conclusion" else it["direction"]
                up = any(m["original"] == p[0] for p in DIRECTION_PAIRS)
                assert up == (sign > 0), (it["id"], m)
            assert it["original"] not in originals
            originals.add(it["original"])


def test_pairs_are_used_evenly_and_at_most_eight_times(default):
    for stem in ("benchmark", "benchmark_seen"):
        uses = Counter((it["target"], it["outcome"]) for it in items(default, stem))
        assert max(uses.values()) <= 8
        for e in (1, -1):
            per_pair = [
                n for (t, o), n in uses.items()
                if next(it["true_effect"] for it in items(default, stem)
                        if (it["target"], it["outcome"]) == (t, o)) == e
            ]  # fmt: skip
            assert max(per_pair) - min(per_pair) <= 1


def test_directions_are_balanced_exactly(default):
    for stem in ("benchmark", "benchmark_seen"):
        its = items(default, stem)
        half = len(its) // 2
        for key in ("effect", "direction", "polarity", "true_effect", "true_direction"):
            assert sum(it[key] > 0 for it in its) == half, (stem, key)
        conclusion_up = sum(
            m["original"] in {p[0] for p in CONCLUSION_PAIRS}
            for it in its
            for m in it["marks"]
            if m["role"] == "conclusion"
        )
        assert conclusion_up == half


def test_odd_sizes_stay_as_balanced_as_they_can(tmp_path):
    out = corpus_synth(tmp_path / "s", papers=50, bench_items=10, seen_items=7, noise=0.2)
    for stem, n in (("benchmark", 10), ("benchmark_seen", 7)):
        its = items(out, stem)
        assert len(its) == n
        assert sum(it["flipped"] for it in its) == round(0.2 * n)
        # the words that flip (conclusion: effect; results: direction) first; with n = 4k + 2
        # the polarity cannot be balanced as well (two extra items balancing effect and
        # polarity share their direction)
        for key, most in (("effect", n % 2), ("direction", n % 2), ("polarity", 2)):
            assert abs(sum(it[key] for it in its)) <= most, (stem, key)


# --- ceilings --------------------------------------------------------------------------------


def test_ceilings(default):
    ceil = json.loads((default / "ceilings.json").read_text())
    c = ceil["ceilings"]
    eps = ceil["noise"]
    for file, n in (("benchmark.csv", 200), ("benchmark_seen.csv", 100)):
        for name in c:
            assert c[name][file]["n"] == n
        # oracle = 1 - noise within binomial sampling error (here exact: flips are stratified)
        tol = Z999 * math.sqrt(eps * (1 - eps) / n)
        assert abs(c["oracle"][file]["accuracy"] - (1 - eps)) <= tol
        its = items(default, file.removesuffix(".csv"))
        assert c["oracle"][file]["accuracy"] == 1 - sum(it["flipped"] for it in its) / n
    memo = c["memoriser"]
    assert abs(memo["benchmark.csv"]["accuracy"] - 0.5) <= 0.05
    assert memo["benchmark.csv"]["ties"] == 200  # no forward pair was ever reported
    assert memo["benchmark_seen.csv"]["accuracy"] >= 0.85
    best = max(c["class_integrator"]["benchmark.csv"]["accuracy"],
               c["lowrank_integrator"]["benchmark.csv"]["accuracy"])  # fmt: skip
    assert best >= 0.70
    assert ceil["best_integrator"] in ("class_integrator", "lowrank_integrator")


def _reported_effects(default) -> tuple[Counter, dict]:
    world = json.loads((default / "world.json").read_text())
    polarity = {i["name"]: i["polarity"] for i in world["interventions"]}
    votes = Counter()
    for paper in literature(default):
        for f in paper["findings"]:
            votes[(f["target"], f["outcome"], f["direction"] * polarity[f["intervention"]])] += 1
    return votes, world


def test_memoriser_recomputed_from_the_literature(default):
    votes, _ = _reported_effects(default)
    c = json.loads((default / "ceilings.json").read_text())["ceilings"]["memoriser"]
    for stem in ("benchmark", "benchmark_seen"):
        credit = 0.0
        its = items(default, stem)
        for it in its:
            margin = (
                votes[(it["target"], it["outcome"], 1)] - votes[(it["target"], it["outcome"], -1)]
            )
            credit += 0.5 if margin == 0 else float(np.sign(margin) == it["effect"])
        assert c[f"{stem}.csv"]["accuracy"] == pytest.approx(credit / len(its), abs=1e-6)


def test_class_integrator_matches_an_independent_fit(default):
    """The same penalised logistic model fitted by scipy's L-BFGS instead of Newton's method."""
    votes, world = _reported_effects(default)
    systems = [s["name"] for s in world["systems"]]
    types = [y["name"] for y in world["types"]]
    outcomes = [o["name"] for o in world["outcomes"]]
    targets = {t["name"]: t for t in world["targets"]}
    n_o, n_s, n_y = len(outcomes), len(systems), len(types)

    def features(target: str, outcome: str) -> np.ndarray:
        x = np.zeros(n_o * (1 + n_s + n_y))
        o = outcomes.index(outcome)
        x[o] = 1
        x[n_o + o * n_s + systems.index(targets[target]["system"])] = 1
        x[n_o * (1 + n_s) + o * n_y + types.index(targets[target]["type"])] = 1
        return x

    pairs = [(t, o) for t in targets for o in outcomes]
    X = np.array([features(t, o) for t, o in pairs])
    pos = np.array([votes[(t, o, 1)] for t, o in pairs], dtype=float)
    neg = np.array([votes[(t, o, -1)] for t, o in pairs], dtype=float)

    def loss(b):
        z = X @ b
        value = pos @ np.logaddexp(0, -z) + neg @ np.logaddexp(0, z) + 0.5 * CLASS_L2 * b @ b
        p = 1 / (1 + np.exp(-z))
        return value, -(X.T @ (pos - (pos + neg) * p)) + CLASS_L2 * b

    fit = minimize(loss, np.zeros(X.shape[1]), jac=True, method="L-BFGS-B", options={"gtol": 1e-10})
    c = json.loads((default / "ceilings.json").read_text())["ceilings"]["class_integrator"]
    for stem in ("benchmark", "benchmark_seen"):
        its = items(default, stem)
        right = [
            np.sign(features(it["target"], it["outcome"]) @ fit.x) == it["effect"] for it in its
        ]
        assert c[f"{stem}.csv"]["accuracy"] == pytest.approx(np.mean(right), abs=1e-9)


# --- realistic text --------------------------------------------------------------------------


@pytest.mark.parametrize("world", ["default", "general"])
def test_each_field_reads_like_real_literature(world, request):
    """At least 5,000 word types with a Zipf-like rank-frequency curve, at least half of the
    running words from the shared backbone, and no 13-word wording in more than 5% of the
    abstracts; the manifest's figures are those of the literature."""
    folder = request.getfixturevalue(world)
    stats = json.loads((folder / "manifest.json").read_text())["text"]
    if world == "default":  # (the same function for the general field)
        assert stats == text_statistics([p["text"] for p in literature(folder)])
    assert stats["word_types"] >= 5000
    assert -1.4 <= stats["zipf_slope"] <= -0.8
    assert stats["backbone_share"] >= 0.5
    assert stats["ngram_recurrence"]["n"] == 13
    assert stats["ngram_recurrence"]["max_share"] <= 0.05


def test_the_fields_share_their_backbone_and_differ_in_technical_terms(default, general):
    def freq(folder):
        return Counter(w.casefold() for p in literature(folder) for w in WORD.findall(p["text"]))

    dom, gen = freq(default), freq(general)
    for mine, other in ((dom, gen), (gen, dom)):
        shared = sum(c for w, c in mine.items() if w in other)
        assert shared / sum(mine.values()) >= 0.5  # running words whose type the other field uses
    terms = {f: set(LEXICONS[f].terms[0]) | set(LEXICONS[f].terms[1]) for f in LEXICONS}
    used_dom = {w for w in dom if w in terms["domain"]}
    used_gen = {w for w in gen if w in terms["general"]}
    assert len(used_dom) >= 2000 and len(used_dom & used_gen) <= 0.1 * len(used_dom)


def test_no_shared_or_technical_word_is_a_direction_or_class_word():
    """Direction words occur only as direction words (and no other word starts like one), and a
    latent-only text can name no class: no pool word or technical term of any field holds one."""
    classes = [w.lower() for lex in LEXICONS.values() for w in lex.class_words]
    for lex in LEXICONS.values():
        words = {w for pool in lex.pools.items.values() for phrase in pool if "{" not in phrase
                 for w in WORD.findall(phrase)}  # fmt: skip
        assert len(words) > 10_000
        frames = [f for name in ("background_cue", "background_plain", "link", "unknown",
                                 "methods_tpl", "methods_after_question", "result", "compare",
                                 "conclusion_cue", "context") for f in lex.frames(name)]  # fmt: skip
        words |= template_words(frames) | BACKBONE_WORDS - DIRECTION_WORDS
        for w in words:
            lw = w.lower()
            assert lw not in DIRECTION_WORDS and not lw.startswith(DIRECTION_STEMS), w
            assert not any(c in lw for c in classes), (lex.field, w)


def test_template_language():
    pools = Pools({"a": ("x", "y"), "ph": ("{@a} {n}",)})
    rand = iter([0.0, 0.9, 0.1, 0.0]).__next__
    assert render("<one|two> [{@a} ]{n} {@ph}.", {"n": 3}, pools, rand) == "One 3 x 3."
    assert render("a {w} and a {v}", {"w": "owl", "v": "unicorn"}, pools, lambda: 0.5) == "An owl and a unicorn"
    zipf, rand = Pools({"z": tuple("abcd")}), random.Random(0).random
    counts = Counter(zipf.draw("z", rand) for _ in range(4000))
    assert counts["a"] > counts["b"] > counts["c"] > counts["d"]  # Zipf: 1, 1/2, 1/3, 1/4
    with pytest.raises(ValueError, match="unbalanced"):
        compile_template("<a|b")


# --- through the corpus stage and the tokenizer ---------------------------------------------


def test_corpus_build_reads_the_literature_and_decontamination_removes_nothing(corpora, default):
    manifest = json.loads((corpora["domain"] / "manifest.json").read_text())
    papers = json.loads((default / "manifest.json").read_text())["counts"]["papers"]
    assert manifest["counts"]["input"] == manifest["counts"]["kept"] == papers
    assert not any(manifest["counts"]["removed"].values())  # nor short, nor duplicates
    assert manifest["decontamination"]["items"] == 300
    assert manifest["decontamination"]["items_leaked"] == 0
    general = json.loads((corpora["general"] / "manifest.json").read_text())
    assert general["counts"]["kept"] == general["counts"]["input"]


@pytest.fixture(scope="module")
def tokenizers(corpora, tmp_path_factory) -> dict[str, Path]:
    """A tokenizer trained on each field at the demo's vocabulary size."""
    base = tmp_path_factory.mktemp("tok")
    return {name: tokenizer_train(c, base / name, vocab_size=DEMO_VOCAB[name])
            for name, c in corpora.items()}  # fmt: skip


def test_direction_pairs_have_equal_token_counts(tokenizers):
    """Under byte-level BPE tokenizers trained on either field at the demo's vocabulary size,
    each pair's two words (with the leading space they have in text) encode to the same number
    of tokens (at 1,000 tokens BPE has not merged every direction word yet, and they differ)."""
    for name, tok in tokenizers.items():
        handle = load_handle(tok)
        for a, b in DIRECTION_PAIRS:
            ids_a, ids_b = handle.encode_batch([" " + a, " " + b])
            assert len(ids_a) == len(ids_b), (name, a, ids_a, b, ids_b)


def test_the_general_tokenizer_needs_1_1_to_1_5_times_the_tokens_on_domain_text(tokenizers, corpora):
    """As GPT-2's tokenizer needs 1.14x the neuroscience tokenizer's tokens in the paper: the
    fields share their backbone, and the general tokenizer splits domain terms into a few pieces
    (`tokenizer compare` on the domain's validation split, as the demo reports it)."""
    r = tokenizer_compare([tokenizers["domain"], tokenizers["general"]], on=corpora["domain"])
    domain, general = (t["tokens"] for t in r["tokenizers"])
    assert 1.1 <= general / domain <= 1.5, (general, domain)
    pieces = {w["word"]: w["pieces"] for w in r["tokenizers"][1]["split_words"]}
    assert all(len(p) <= 8 for p in pieces.values())  # a few known pieces, not bytes


# --- options ---------------------------------------------------------------------------------


def test_same_seed_same_bytes_other_seed_other_world(default, tmp_path):
    again = corpus_synth(tmp_path / "again")
    for name in FILES - {"manifest.json"}:
        assert (again / name).read_bytes() == (default / name).read_bytes(), name
    m1, m2 = (json.loads((d / "manifest.json").read_text()) for d in (default, again))
    for key in ("config", "counts", "outputs", "format"):
        assert m1[key] == m2[key]
    other = corpus_synth(tmp_path / "other", seed=1, papers=100)
    assert load_world(other).target_names != load_world(default).target_names


def test_latent_only_names_no_classes(tmp_path):
    out = corpus_synth(tmp_path / "latent", latent_only=True, papers=300)
    world = load_world(out)
    texts = [p["text"] for p in literature(out)] + [
        v for it in items(out) for v in (it["original"], it["altered"])
    ]
    for word in world.systems + world.types:
        assert not any(word.lower() in t.lower() for t in texts), word
    assert json.loads((out / "world.json").read_text())["latent_only"] is True


def test_the_general_field_looks_different(default, general):
    dom, gen = load_world(default), load_world(general)
    assert not set(dom.target_names) & set(gen.target_names)
    assert not set(dom.outcome_names) & set(gen.outcome_names)
    text = literature(general)[0]["text"]
    assert not any(s in text for s in LEXICONS["domain"].systems + LEXICONS["domain"].types)
    assert read_benchmark(general / "benchmark.csv")[0].section.endswith(" regions")


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"noise": 0.5}, "--noise"),
        ({"noise": -0.1}, "--noise"),
        ({"papers": 0}, "--papers"),
        ({"bench_items": 1000}, "--bench-items"),
        ({"seen_items": 2000}, "--seen-items"),
        ({"targets": 4}, "--targets"),
        ({"years": "2022-2002"}, "--years"),
        ({"years": "twenty"}, "--years"),
        ({"bench_year": 2020}, "--bench-year"),
        ({"holdout": 7}, "--holdout"),
        ({"field": "physics"}, "--field"),
        ({"flavour": 1}, "flavour"),
    ],
)
def test_bad_options_are_errors_naming_the_option(tmp_path, options, fragment):
    with pytest.raises(ExpertlmError, match=re.escape(fragment)):
        corpus_synth(tmp_path / "bad", **options)
    assert not (tmp_path / "bad").exists()


def test_existing_output_is_refused(default):
    before = (default / "world.json").read_bytes()
    with pytest.raises(ExpertlmError, match="already exists"):
        corpus_synth(default)
    assert (default / "world.json").read_bytes() == before


def test_cli_defaults_are_the_config_defaults():
    from expertlm.cli import app

    params = {p.name: p for p in app.commands["corpus"].commands["synth"].params}
    fields = SynthConfig.model_fields
    for name, param in params.items():
        if name in fields:
            default = fields[name].default
            expected = "-".join(map(str, default)) if name == "years" else default
            assert param.default == expected, name
    assert set(fields) <= set(params)


def run_cli(*args) -> subprocess.CompletedProcess:
    env = {**os.environ, "EXPERTLM_NO_PROGRESS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "expertlm", "corpus", "synth", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_cli_writes_the_folder_and_reports_bad_options_in_one_line(tmp_path):
    proc = run_cli("--out", tmp_path / "s", "--papers", "120", "--field", "general", "--seed", "3")
    assert proc.returncode == 0, proc.stderr
    assert {p.name for p in (tmp_path / "s").iterdir()} == FILES
    config = json.loads((tmp_path / "s" / "manifest.json").read_text())["config"]
    assert (config["papers"], config["field"], config["seed"]) == (120, "general", 3)

    proc = run_cli("--out", tmp_path / "bad", "--noise", "0.7")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "--noise" in lines[0]
    assert not (tmp_path / "bad").exists()
