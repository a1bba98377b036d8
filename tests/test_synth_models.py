"""The synthetic benchmark is unbiased for models that know nothing: five untrained GPT-2s of the
demo's size (different seeds), with a tokenizer trained on the field as the demo trains it (the
demo's vocabulary size), score 50% +- 3 points on average on the default forward benchmark (an
earlier prototype's untrained model scored 0.61 because the flipped direction words had
different token counts)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from expertlm.corpus.build import corpus_build
from expertlm.eval.benchmark import read_benchmark
from expertlm.eval.scoring import Scorer
from expertlm.experiment.spec import load_experiment
from expertlm.models import build_model, gpt2_config
from expertlm.synth import corpus_synth
from expertlm.tokenizer import load_handle, load_tokenizer, tokenizer_train

DEMO, _ = load_experiment(Path(__file__).parents[1] / "src" / "expertlm" / "configs" / "demo.yaml")
DEMO_MODEL = next(v.model for v in DEMO.variants if v.name == "scratch-domain-tok")


@pytest.fixture(scope="module")
def field(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth-models")
    synth = corpus_synth(root / "synth", show_progress=False)  # the defaults
    corpus = corpus_build(
        [synth / "literature.jsonl.gz"], root / "corpus", show_progress=False, min_chars=100
    )
    tok = tokenizer_train(corpus, root / "tok", vocab_size=DEMO.tokenizers["domain"].vocab_size,
                          show_progress=False)  # fmt: skip
    return synth, tok


def test_untrained_models_are_at_chance_on_the_default_benchmark(field):
    synth, tok_dir = field
    items = read_benchmark(synth / "benchmark.csv")
    tok, handle = load_tokenizer(tok_dir), load_handle(tok_dir)
    accs = []
    for seed in range(5):
        model = build_model(
            gpt2_config("gpt2-mini", handle.vocab_size, handle.eot_id, DEMO_MODEL), seed=seed
        )
        sc = Scorer(model, tok, device="cpu")
        pairs = [(sc.encode(i.original).ids, sc.encode(i.altered).ids) for i in items]
        nll = sc.pair_nll(pairs)
        accs.append(float(np.mean([a.mean() < b.mean() for a, b in nll])))
    assert len(items) == 200
    assert abs(np.mean(accs) - 0.5) <= 0.03, accs
