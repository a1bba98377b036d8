"""expertlm: train small language models on a field's literature and measure whether they
predict experimental results like domain experts (Luo, Sun & Love, 2024).

Every stage is one function here and one CLI verb with the same arguments:

    corpus_build      expertlm corpus build        sources -> corpus/
    classifier_train  expertlm classifier train    field vs other documents -> classifier/
    corpus_filter     expertlm corpus filter       sources + classifier/ -> corpus/ (the field)
    corpus_web        expertlm corpus web          seed -> mixed synthetic web corpus + truth
    corpus_pubmed     expertlm corpus pubmed       PubMed (E-utilities) -> FILE.jsonl.gz
    corpus_pmc        expertlm corpus pmc          PubMed Central OA (pubget) -> FILE.jsonl.gz
    corpus_synth      expertlm corpus synth        seed -> synthetic field (literature, benchmark)
    bench_fetch       expertlm bench fetch         published benchmark -> folder
    bench_make        expertlm bench make          newest papers -> benchmark/ (--pairs: pairs)
    bench_export      expertlm bench export        benchmark -> lm-evaluation-harness task folder
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

import sys
import types

from expertlm.errors import ExpertlmError

__version__ = "0.1.0"

# The stage functions, by name (the registry in experiment/stages.py says where each lives).
_STAGES = ("corpus_build", "classifier_train", "corpus_filter", "corpus_web", "corpus_pubmed",
           "corpus_pmc", "corpus_synth", "bench_fetch", "bench_make", "bench_export",
           "tokenizer_train", "tokenizer_compare", "data_prepare", "train", "merge", "export",
           "eval_bench", "eval_ppl", "eval_compare", "eval_humans", "run", "report", "demo")  # fmt: skip
__all__ = ["ExpertlmError", "__version__", *_STAGES]


def __getattr__(name: str):
    # Imported on first use so that `import expertlm` stays cheap (no torch/transformers import
    # until a stage actually needs it).
    if name in _STAGES:
        from expertlm.experiment.stages import REGISTRY

        return REGISTRY[name].load()
    raise AttributeError(f"module 'expertlm' has no attribute {name!r}")


class _Package(types.ModuleType):
    """`expertlm.train` and `expertlm.merge` stay the stage functions after their modules
    (expertlm/train.py, expertlm/merge.py) are imported: the import system's binding of a
    submodule to its parent's attribute is skipped for a stage's name (the module itself is
    `sys.modules["expertlm.train"]`, and `from expertlm.train import ...` works as usual)."""

    def __setattr__(self, name: str, value) -> None:
        if name in _STAGES and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
