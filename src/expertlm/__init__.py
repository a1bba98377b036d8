"""expertlm: train small language models on a field's literature and measure whether they
predict experimental results like domain experts (Luo, Sun & Love, 2024).

Every stage is one function here and one CLI verb with the same arguments:

    corpus_build      expertlm corpus build        sources -> corpus/
    corpus_pubmed     expertlm corpus pubmed       PubMed (E-utilities) -> FILE.jsonl.gz
    corpus_pmc        expertlm corpus pmc          PubMed Central OA (pubget) -> FILE.jsonl.gz
    corpus_synth      expertlm corpus synth        seed -> synthetic field (literature, benchmark)
    bench_fetch       expertlm bench fetch         published benchmark -> folder
    tokenizer_train   expertlm tokenizer train     corpus/ -> tokenizer/
    tokenizer_compare expertlm tokenizer compare   tokenizers x corpus -> table/JSON
    data_prepare      expertlm data prepare        corpus/ + tokenizer/ -> shards/
    train             expertlm train               shards/ -> runs/NAME/ (--lora: adapters)
    merge             expertlm merge               model folders -> merged model folder
    export            expertlm export              run -> plain model folder (--merge-lora)
    eval_bench        expertlm eval bench          model x benchmark -> results/NAME/
    eval_ppl          expertlm eval ppl            model x corpus -> results/NAME/ppl.json
    eval_compare      expertlm eval compare        results A x results B -> paired test
    eval_humans       expertlm eval humans         participant data -> results/NAME/
    run               expertlm run                 experiment.yaml -> every stage, cached
    report            expertlm report              run folder -> report/ (HTML, Markdown, PNG)
    demo              expertlm demo                the bundled synthetic experiment, offline
"""

from expertlm.errors import ExpertlmError

__version__ = "0.1.0"

__all__ = [
    "ExpertlmError",
    "__version__",
    "bench_fetch",
    "corpus_build",
    "corpus_pmc",
    "corpus_pubmed",
    "corpus_synth",
    "data_prepare",
    "eval_bench",
    "eval_compare",
    "eval_humans",
    "eval_ppl",
    "export",
    "merge",
    "demo",
    "report",
    "run",
    "tokenizer_compare",
    "tokenizer_train",
    "train",
]


def __getattr__(name: str):
    # Stage functions are imported on first use so that `import expertlm` stays cheap
    # (no torch/transformers import until a stage actually needs it).
    if name == "corpus_build":
        from expertlm.corpus.build import corpus_build

        return corpus_build
    if name == "corpus_pubmed":
        from expertlm.corpus.pubmed import corpus_pubmed

        return corpus_pubmed
    if name == "corpus_pmc":
        from expertlm.corpus.pmc import corpus_pmc

        return corpus_pmc
    if name == "corpus_synth":
        from expertlm.synth import corpus_synth

        return corpus_synth
    if name == "bench_fetch":
        from expertlm.eval.fetch import bench_fetch

        return bench_fetch
    if name in ("tokenizer_train", "tokenizer_compare"):
        from expertlm import tokenizer

        return getattr(tokenizer, name)
    if name == "data_prepare":
        from expertlm.shards import data_prepare

        return data_prepare
    if name in ("eval_bench", "eval_compare", "eval_humans", "eval_ppl"):
        from expertlm.eval import evaluate

        return getattr(evaluate, name)
    if name in ("run", "demo"):
        from expertlm import experiment

        return getattr(experiment, name)
    if name == "report":
        from expertlm.experiment.report import report

        return report
    if name == "train":
        from expertlm.train import train

        return train
    if name == "merge":
        from expertlm.merge import merge

        return merge
    if name == "export":
        from expertlm.lora import export

        return export
    raise AttributeError(f"module 'expertlm' has no attribute {name!r}")
