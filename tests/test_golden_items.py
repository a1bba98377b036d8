"""`eval bench` writes the same items.csv (to float32 rounding) and accuracies as before the
N-way refactor (issue 12):
golden files made by the two-alternative implementation (`tests/data/golden/`, written with
EXPERTLM_REGEN_GOLDEN=1) on a bigram model and a random GPT-2, for every scoring switch."""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path

import pytest

import expertlm

from lm_fixtures import bigram_model, bigram_table, make_tokenizer, random_gpt2, save_model

GOLDEN = Path(__file__).parent / "data" / "golden"
REGEN = bool(os.environ.get("EXPERTLM_REGEN_GOLDEN"))

ITEMS = [
    ("10.1/a", "Systems", "Knockout [[increased, decreased]] firing in cortical neurons. It "
     "[[impaired, enhanced]] memory."),
    ("10.1/b", "Systems", "Lesions of the hippocampus [[impaired, enhanced]] memory in mice."),
    ("10.1/c", "Cellular", "Dopamine release [[decreased, increased]] after stimulation. Serotonin "
     "was unchanged."),
    ("10.1/d", "Cellular", "Serotonin enhanced synaptic plasticity; the amygdala showed "
     "[[higher, lower]] activity."),
    ("10.1/e", "Behavioral", "You are a neuroscientist. The receptor [[increased, decreased]] "
     "firing, and dopamine [[enhanced, impaired]] plasticity."),
]

SETTINGS = {
    "default": {},
    "neuro": {"template": "neuro"},
    "no-share": {"share_prefix": False},
    "sum": {"reduction": "sum"},
    "abstract-only": {"template": "neuro", "score_template": False},
    "isolated": {"isolated": True},
    "left-batched": {"padding_side": "left", "batch_size": 3},
    "bos": {"bos": True, "template": "neuro"},
}


def _versions(marked: str) -> tuple[str, str]:
    import re

    pick = lambda k: re.sub(r"\[\[([^,\]]+), ([^\]]+)\]\]", lambda m: m.group(k), marked)  # noqa: E731
    return pick(1), pick(2)


def _seeded(model):
    """Weights drawn here, parameter by parameter in name order, so that they do not depend on
    how a transformers version initialises a model (the golden files hold across versions)."""
    import torch

    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for _, p in sorted(model.named_parameters()):
            p.copy_(torch.randn(p.shape, generator=g) * (0.5 if p.dim() == 2 else 0.1))
    return model


def assert_same_items(made: Path, golden: Path) -> None:
    """The same rows, columns, counts and choices; the same log-likelihoods to float32 rounding
    (a float32 sum of token log-probabilities can differ in its last bit between CPUs' kernels:
    the golden files were written on another machine)."""
    with open(made, newline="") as f, open(golden, newline="") as g:
        rows, expected = list(csv.DictReader(f)), list(csv.DictReader(g))
    assert [list(r) for r in rows] == [list(r) for r in expected] and len(rows) == len(expected)
    for r, e in zip(rows, expected, strict=True):
        for col, want in e.items():
            try:
                a, b = float(r[col]), float(want)
            except ValueError:
                assert r[col] == want, (made.name, r["id"], col)
                continue
            # every float derives from the two log-likelihoods: tolerances carry their rounding
            nll = max(abs(float(e["nll_original"])), abs(float(e["nll_altered"])), 1.0)
            ppl = max(float(e["ppl_original"]), float(e["ppl_altered"]))
            if col.startswith("ppl"):
                ok = abs(math.log(a) - math.log(b)) <= 1e-5 * nll
            else:
                ok = abs(a - b) <= 1e-5 * nll * (ppl if col == "confidence" else 1.0)
            assert ok, (made.name, r["id"], col, a, b)


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    root = tmp_path_factory.mktemp("golden")
    tok_dir = make_tokenizer(root / "tok")
    from expertlm.tokenizer import load_tokenizer

    vocab = len(load_tokenizer(tok_dir))
    models = {
        "bigram": save_model(bigram_model(bigram_table(vocab, seed=2)), tok_dir, root / "bigram"),
        "gpt2": save_model(_seeded(random_gpt2(vocab, n_positions=64, seed=1)), tok_dir, root / "gpt2"),
    }
    bench = root / "bb.csv"
    with open(bench, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["doi", "journal_section", "original_abstract", "incorrect_abstract",
                    "combined_abstract"])  # fmt: skip
        for doi, sec, marked in ITEMS:
            w.writerow([doi, sec, *_versions(marked), marked])
    return root, models, bench


@pytest.mark.parametrize("model", ["bigram", "gpt2"])
@pytest.mark.parametrize("setting", list(SETTINGS))
def test_items_csv_equals_the_two_alternative_implementation(fixtures, model, setting):
    root, models, bench = fixtures
    out = root / f"res-{model}-{setting}"
    summary = expertlm.eval_bench(str(models[model]), bench, out, show_progress=False,
                                  **SETTINGS[setting])  # fmt: skip
    files = ["items.csv"] + (["isolated_items.csv"] if setting == "isolated" else [])
    accuracies = {"accuracy": summary["accuracy"], "ci95": summary["ci95"],
                  "ties": summary["ties"], "per_section": summary["per_section"]}  # fmt: skip
    if "isolated" in summary:
        accuracies["isolated"] = summary["isolated"]["accuracy"]
    stem = f"{model}-{setting}"
    if REGEN:
        GOLDEN.mkdir(parents=True, exist_ok=True)
        for name in files:
            (GOLDEN / f"{stem}-{name}").write_bytes((out / name).read_bytes())
        (GOLDEN / f"{stem}-accuracy.json").write_text(json.dumps(accuracies, indent=1) + "\n")
    for name in files:
        assert_same_items(out / name, GOLDEN / f"{stem}-{name}")
    assert json.loads(json.dumps(accuracies)) == json.loads(
        (GOLDEN / f"{stem}-accuracy.json").read_text()
    )
