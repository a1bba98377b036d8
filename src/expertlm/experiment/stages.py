"""The stage registry: every stage kind once, as data, and the one call that runs any of them.

A `StageKind` says which function a stage calls (imported on first use), which config class
holds its options, what its inputs and its output are (and so how the output's content is
hashed), and which shared flags it takes. The registry drives three things:

- the command line: `cli.py` generates every verb, argument and option from it (and from the
  config classes);
- the Python API: `expertlm.corpus_build`, `expertlm.train`, ... are looked up here lazily;
- experiments: `plan.py` builds `Stage`s of these kinds, and `call` runs any of them.

Adding a stage kind is one entry here plus its function (and its config class in config.py).

A `Stage` is one call into one output folder. Its key is a hash of its kind, its options and
the content hashes of its inputs' outputs; a stage whose folder holds the same key
(`.expertlm-stage.json`) is up to date and skipped.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from expertlm.config import (
    BenchExportConfig,
    BenchMakeConfig,
    ClassifierConfig,
    CorpusConfig,
    DemoConfig,
    EvalBenchConfig,
    EvalCompareConfig,
    EvalHumansConfig,
    EvalPplConfig,
    ExportConfig,
    FetchConfig,
    FilterConfig,
    MergeConfig,
    MergeRecipeConfig,
    ModelConfig,
    PmcConfig,
    PrepareConfig,
    PubmedConfig,
    ReportConfig,
    RunConfig,
    StageConfig,
    TokenizerCompareConfig,
    TokenizerConfig,
    TrainConfig,
)
from expertlm.console import info
from expertlm.io import combine_hashes, read_json, sha256_file, write_json
from expertlm.synth.config import SynthConfig, WebConfig

STAGE_FILE = ".expertlm-stage.json"


# --- content hashes of what stages read and write --------------------------------------------


def files_digest(p: Path, skip: tuple[str, ...] = ()) -> str:
    """A file's sha256; for a folder, one hash over its files' relative paths and sha256s
    (recursive, sorted), leaving out the names in `skip` at its top level."""
    if p.is_file():
        return sha256_file(p)
    files = sorted(f for f in p.rglob("*") if f.is_file() and f.relative_to(p).parts[0] not in skip)
    return combine_hashes(f"{f.relative_to(p)}:{sha256_file(f)}" for f in files)


def _corpus(p: Path) -> str:
    from expertlm.corpus.docs import corpus_hash

    return corpus_hash(p)


def _tokenizer(p: Path) -> str:
    # (a model folder may hold a slow tokenizer's files only: then its path stands for it)
    return sha256_file(p / "tokenizer.json") if (p / "tokenizer.json").is_file() else str(p)


def _shards(p: Path) -> str:
    if p.is_file():  # train --objective sft|dpo|orpo: a JSONL file of examples
        return sha256_file(p)
    meta = read_json(p / "meta.json")
    keep = {k: meta.get(k) for k in ("corpus_hash", "tokenizer_hash", "tokens", "dtype")}
    return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()


def _model(p: Path) -> str:
    from expertlm.models import model_hash

    return model_hash(p)


def _classifier(p: Path) -> str:
    from expertlm.classifier import VECTORIZER, WEIGHTS

    return combine_hashes(sha256_file(p / f) for f in (VECTORIZER, WEIGHTS))


def _generated(p: Path) -> str:
    """A generated folder's files, without its provenance (manifest.json) and stage record."""
    return files_digest(p, skip=(STAGE_FILE, "manifest.json"))


# What each kind of file or folder is, for its content hash.
DIGESTS: dict[str, Callable[[Path], str]] = {
    "sources": files_digest, "file": files_digest, "corpus": _corpus, "tokenizer": _tokenizer,
    "shards": _shards, "model": _model, "synth": _generated, "download": _generated,
    "results": _generated, "experiment": _generated, "classifier": _classifier,
    "benchmark": lambda p: files_digest(p, skip=(STAGE_FILE, "make.json", "export.json")),
}  # fmt: skip


# --- the registry ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Input:
    """One input of a stage function: the parameter `name`, what it is (`artifact`, a key of
    DIGESTS), and how the command line takes it (no flags: a positional argument)."""

    name: str
    artifact: str
    help: str
    flags: tuple[str, ...] = ()
    many: bool = False
    required: bool = True


@dataclass(frozen=True)
class Output:
    """The `out` of a stage function. `file`: in an experiment the stage writes this file inside
    its folder (on the command line, `--out` names the file itself)."""

    artifact: str
    help: str
    file: str | None = None
    required: bool = True
    default: str | None = None


def _has_checkpoint(out: Path) -> bool:
    from expertlm.train import latest_checkpoint

    return latest_checkpoint(out) is not None


@dataclass(frozen=True)
class StageKind:
    function: str  # "module:name", imported on first use
    config: type[StageConfig]
    command: str | None  # the CLI verb ("corpus build"); None: used by experiments only
    help: str
    inputs: tuple[Input, ...] = ()
    output: Output | None = None
    positional: tuple[str, ...] = ()  # config fields taken as CLI arguments, before the inputs
    # the shared parameters it takes, besides inputs, out and options (cli.py has their flags)
    flags: tuple[str, ...] = ("overwrite", "show_progress")
    show: str | None = None  # "module:name" printing the result on stdout (CLI)
    # An interrupted call can continue in its folder (when this says so, for the same key).
    resumes: Callable[[Path], bool] | None = None

    @property
    def name(self) -> str:
        return self.function.partition(":")[2]

    def load(self) -> Callable:
        return load(self.function)


def load(dotted: str) -> Callable:
    """The function `module:name`, imported now (stage modules import torch: only on use)."""
    module, _, name = dotted.partition(":")
    return getattr(importlib.import_module(module), name)


_MODEL = "Causal LM folder (or hub id where the network is there)."
_TOKENIZER = "Tokenizer folder (or hub id where the network is there)."

STAGE_KINDS: tuple[StageKind, ...] = (
    StageKind(
        "expertlm.corpus.build:corpus_build", CorpusConfig, "corpus build",
        "Clean, filter, deduplicate, decontaminate and split source documents into a corpus.",
        (Input("sources", "sources", "Files or folders (.txt, .jsonl[.gz], .json, .csv/.tsv[.gz], "
               ".parquet) or hf:NAME[:split] datasets.", many=True),),
        Output("corpus", "Output corpus folder."),
    ),
    StageKind(
        "expertlm.classifier:classifier_train", ClassifierConfig, "classifier train",
        "Train a linear text classifier of a field (hashed word n-grams, logistic regression) "
        "with held-out precision, recall, F1, ROC-AUC and a PR curve.",
        (Input("positive", "sources", "Documents of the field: corpus folders or source files "
               "(repeatable).", ("--positive",), many=True, required=False),
         Input("negative", "sources", "Documents of anything else: corpus folders or source "
               "files (repeatable).", ("--negative",), many=True, required=False),
         Input("keywords", "file", "Label by rule instead: a file of keywords or phrases, one "
               "per line (see --min-keyword-hits).", ("--keywords",), required=False),
         Input("values", "file", "Label by rule instead: a file of values of --field, one per "
               "line.", ("--values",), required=False)),
        Output("classifier", "Output classifier folder."),
    ),
    StageKind(
        "expertlm.corpus.filter:corpus_filter", FilterConfig, "corpus filter",
        "Keep the documents (or paragraphs) a classifier scores as the field: a corpus folder "
        "with each document's score and a manifest of what was kept.",
        (Input("sources", "sources", "Corpus folders or source files, as corpus build reads "
               "them.", many=True),
         Input("classifier", "classifier", "Classifier folder (from `expertlm classifier "
               "train`).", ("--classifier",))),
        Output("corpus", "Output corpus folder."),
    ),
    StageKind(
        "expertlm.synth.web:corpus_web", WebConfig, "corpus web",
        "Generate a mixed synthetic web corpus (the domain, the general field and other fields) "
        "with a hidden truth file of each document's field.",
        output=Output("synth", "Output folder (web.jsonl.gz, truth.jsonl, manifest.json)."),
    ),
    StageKind(
        "expertlm.synth.build:corpus_synth", SynthConfig, "corpus synth",
        "Generate a synthetic field: world, literature (a corpus source), benchmark, ceilings.",
        output=Output("synth", "Output folder."),
    ),
    StageKind(
        "expertlm.corpus.pubmed:corpus_pubmed", PubmedConfig, "corpus pubmed",
        "Download PubMed abstracts into a corpus source file; a re-run resumes an interrupted one.",
        output=Output("sources", "Output file (.jsonl or .jsonl.gz).", file="pubmed.jsonl.gz"),
        resumes=lambda out: True,
    ),
    StageKind(
        "expertlm.corpus.pmc:corpus_pmc", PmcConfig, "corpus pmc",
        "Open-access full texts from PubMed Central (via pubget: pip install 'expertlm[pmc]').",
        output=Output("sources", "Output file (.jsonl or .jsonl.gz).", file="pmc.jsonl.gz"),
    ),
    StageKind(
        "expertlm.eval.fetch:bench_fetch", FetchConfig, "bench fetch",
        "Download and check a published benchmark (test cases and human participant data).",
        output=Output("download", "Output folder."), positional=("name",),
    ),
    StageKind(
        "expertlm.eval.make:bench_make", BenchMakeConfig, "bench make",
        "Make a forward-looking benchmark (BrainBench format) from papers after a cutoff: one "
        "finding per abstract reversed; --pairs: preference pairs from the papers before it.",
        (Input("sources", "sources", "Corpus folders or .jsonl[.gz] files of documents (id, "
               "text or abstract, year).", many=True),
         Input("tokenizers", "tokenizer", "Count each version's tokens with this tokenizer "
               "(repeatable; --equal-tokens keeps equal counts only).", ("--tokenizer",),
               many=True, required=False),
         Input("decontam", "file", "Training corpus (folder, .jsonl, or a benchmark file): items "
               "sharing a word n-gram with it are left out (repeatable).", ("--decontam",),
               many=True, required=False),
         Input("llm", "model", "A local instruction-tuned causal LM that proposes the "
               "alterations instead of the rules.", ("--llm",), required=False)),
        Output("benchmark", "Output folder (benchmark.csv, benchmark.jsonl, make.json)."),
    ),
    StageKind(
        "expertlm.eval.export:bench_export", BenchExportConfig, "bench export",
        "Write a benchmark as an lm-evaluation-harness task folder (run it with lm-eval "
        "--include_path).",
        (Input("bench", "file", "Benchmark: BrainBench CSV, JSONL, or an exam (JSONL or CSV)."),),
        Output("benchmark", "Output task folder."),
    ),
    StageKind(
        "expertlm.tokenizer:tokenizer_train", TokenizerConfig, "tokenizer train",
        "Train a GPT-2-style byte-level BPE tokenizer on a corpus.",
        (Input("corpus", "corpus", "Corpus folder (its train split is used)."),),
        Output("tokenizer", "Output tokenizer folder."),
    ),
    StageKind(
        "expertlm.tokenizer:tokenizer_compare", TokenizerCompareConfig, "tokenizer compare",
        "Compare tokenizers on a corpus: fertility, characters per token, words kept whole.",
        (Input("tokenizers", "tokenizer", "Two or more tokenizer folders (or hub ids where the "
               "network is there).", many=True),
         Input("on", "corpus", "Corpus folder to measure on.", ("--on",))),
        Output("file", "Write the comparison as JSON here.", file="tokenizers.json", required=False),
        flags=("show_progress", "json"), show="expertlm.tokenizer:print_comparison",
    ),
    StageKind(
        "expertlm.shards:data_prepare", PrepareConfig, "data prepare",
        "Tokenize a corpus into flat token files (train.bin, val.bin, meta.json).",
        (Input("corpus", "corpus", "Corpus folder."),
         Input("tokenizer", "tokenizer", _TOKENIZER, ("--tokenizer", "-t"))),
        Output("shards", "Output shards folder."),
    ),
    StageKind(
        "expertlm.models:init_model", ModelConfig, None,
        "An untrained model folder for a tokenizer (a preset, seeded).",
        (Input("tokenizer", "tokenizer", _TOKENIZER),), Output("model", "Output model folder."),
    ),
    StageKind(
        "expertlm.train:train", TrainConfig, "train",
        "Train a GPT-2-family model from scratch, continue pretraining one on shards, or "
        "fine-tune one (SFT, DPO, ORPO) on JSONL examples.",
        (Input("shards", "shards", "Shards folder (from `expertlm data prepare`); sft, dpo, "
               "orpo: a JSONL file of examples."),),
        Output("model", "Run folder (a Hugging Face model folder at the end)."),
        flags=("overwrite", "show_progress", "resume"), resumes=_has_checkpoint,
    ),
    StageKind(
        "expertlm.merge:merge", MergeConfig, "merge",
        "Merge same-architecture models tensor by tensor (linear, SLERP, TIES, task arithmetic).",
        (Input("models", "model", "Model folders (same architecture and tokenizer).", many=True,
               required=False),
         Input("base", "model", "ties, task_arithmetic: the model the task vectors are relative "
               "to.", ("--base",), required=False),
         Input("config", "file", "A mergekit YAML recipe (merge_method, models or slices, "
               "base_model, parameters, dtype) instead of MODELS, --base and the method's "
               "options.", ("--config",), required=False)),
        Output("model", "Output model folder."),
    ),
    StageKind(
        "expertlm.merge:merge_recipe", MergeRecipeConfig, None,
        "A merge given as a mergekit recipe in an experiment (merge: {recipe: ...}).",
        (Input("models", "model", "The model folders the recipe names.", many=True),),
        Output("model", "Output model folder."),
    ),
    StageKind(
        "expertlm.lora:export", ExportConfig, "export",
        "Write a run as a plain Hugging Face model folder (a LoRA run: --merge-lora).",
        (Input("run", "model", "Run folder."),), Output("model", "Output model folder."),
    ),
    StageKind(
        "expertlm.eval.evaluate:eval_bench", EvalBenchConfig, "eval bench",
        "Score a model on a benchmark (BrainBench CSV or JSONL): items.csv and summary.json.",
        (Input("bench", "file", "Benchmark: BrainBench CSV or JSONL."),
         Input("model", "model", _MODEL, ("--model", "-m"))),
        Output("results", "Results folder."),
    ),
    StageKind(
        "expertlm.eval.evaluate:eval_ppl", EvalPplConfig, "eval ppl",
        "Bits per byte and per-token perplexity of a model on held-out text.",
        (Input("model", "model", _MODEL, ("--model", "-m")),
         Input("corpus", "corpus", "Corpus folder, or a .jsonl(.gz) of documents.",
               ("--corpus", "-c"))),
        Output("results", "Results folder (ppl.json)."),
    ),
    StageKind(
        "expertlm.eval.evaluate:eval_compare", EvalCompareConfig, "eval compare",
        "Paired comparison on the same items: McNemar exact test, bootstrap CI of B - A.",
        (Input("a", "results", "Results folder A."),
         Input("b", "results", "Results folder B (the difference is B - A).")),
        Output("file", "Also write JSON here.", required=False), flags=("json",),
        show="expertlm.eval.evaluate:print_comparison",
    ),
    StageKind(
        "expertlm.eval.evaluate:eval_humans", EvalHumansConfig, "eval humans",
        "Human accuracy (pooled over trials), per section, top expertise, calibration.",
        (Input("participants", "file", "Participant data CSV (BrainBench format, one row per "
               "trial)."),),
        Output("results", "Results folder (summary.json)."), flags=("overwrite",),
    ),
    StageKind(
        "expertlm.experiment.graph:run", RunConfig, "run",
        "Run an experiment: every stage in dependency order, skipping what is up to date.",
        (Input("experiment", "file", "Experiment file (YAML)."),),
        Output("experiment", "Output folder (default: runs/NAME).", required=False),
        flags=("show_progress",),
    ),
    StageKind(
        "expertlm.experiment.report:report", ReportConfig, "report",
        "Figures and tables of an experiment: index.html, report.md, PNGs, tables.csv.",
        (Input("run_dir", "experiment", "An experiment's output folder."),),
        Output("results", "Report folder (default: RUN_DIR/report).", required=False),
        flags=("show_progress",),
    ),
    StageKind(
        "expertlm.experiment.graph:demo", DemoConfig, "demo",
        "The paper's experiment on the bundled synthetic field, offline, with its report.",
        output=Output("experiment", "Output folder.", required=False, default="runs/demo"),
        flags=("show_progress",),
    ),
)  # fmt: skip
REGISTRY: dict[str, StageKind] = {k.name: k for k in STAGE_KINDS}


# --- stages of an experiment -----------------------------------------------------------------


@dataclass(eq=False)
class Stage:
    """One call of a registered function into `out`, or (kind "input") something a stage reads:
    a path outside the experiment, a hub id, or a file inside another stage's output."""

    kind: str
    label: str
    out: Path | str  # str: a hub id or an hf: dataset, not a path
    options: dict = field(default_factory=dict)
    inputs: dict[str, Stage | list[Stage]] = field(default_factory=dict)
    after: list[Stage] = field(default_factory=list)  # needed besides the inputs (in the key)
    digest: Callable[[Path], str] | None = None  # inputs only: the registered kinds have theirs
    key: str | None = field(default=None, init=False)
    _output_hash: str | None = field(default=None, init=False, repr=False)

    @property
    def deps(self) -> list[Stage]:
        flat = [s for v in self.inputs.values() for s in (v if isinstance(v, list) else [v])]
        return [*flat, *self.after]

    def output_hash(self) -> str:
        """The content hash of the output (computed once: a model's weights are read once per
        run, not once per stage that uses the model; `forget_output` after the stage reruns)."""
        if self._output_hash is None:
            if self.digest is not None:
                self._output_hash = self.digest(self.out)  # type: ignore[arg-type]
            else:
                self._output_hash = DIGESTS[REGISTRY[self.kind].output.artifact](Path(self.out))  # type: ignore[union-attr]
        return self._output_hash

    def forget_output(self) -> None:
        self._output_hash = None

    def compute_key(self) -> str:
        inputs = {d.label: d.output_hash() for d in self.deps}
        blob = json.dumps({"kind": self.kind, "options": self.options, "inputs": inputs},
                          sort_keys=True, default=str)  # fmt: skip
        return hashlib.sha256(blob.encode()).hexdigest()

    def recorded_key(self) -> str | None:
        f = Path(self.out) / STAGE_FILE
        if not f.is_file():
            return None
        try:
            return json.loads(f.read_text()).get("key")
        except (OSError, json.JSONDecodeError):
            return None


def external(label: str, ref: Path | str, artifact: str) -> Stage:
    """An input outside the experiment: a path, or a name (hub id, hf: dataset) hashed as is."""
    if isinstance(ref, str):
        return Stage("input", label, ref, digest=lambda _p, r=ref: f"ref:{r}")
    return Stage("input", label, ref, digest=DIGESTS[artifact])


def within(owner: Stage, relative: str, label: str) -> Stage:
    """A file inside another stage's output (a synthetic field's literature or benchmark)."""
    return Stage("input", label, Path(owner.out) / relative, after=[owner], digest=files_digest)


# --- the one call ----------------------------------------------------------------------------


def call(stage: Stage, show_progress: bool = True) -> None:
    """Run `stage`'s function with its inputs, options and output. A kind that `resumes`
    continues an interrupted call of the same key (a pending marker beside its folder says
    which key was interrupted); every other call replaces the folder's previous content."""
    kind, kwargs = prepare(stage, show_progress)
    invoke(kind, kwargs)
    finished(stage)


def prepare(stage: Stage, show_progress: bool = True) -> tuple[str, dict]:
    """`stage`'s call as plain data, (kind name, keyword arguments), for `invoke` here or in
    another process; writes the pending marker of a kind that resumes (`finished` removes it)."""
    kind = REGISTRY[stage.kind]
    out = Path(stage.out)
    args = {
        name: [s.out for s in dep] if isinstance(dep, list) else dep.out
        for name, dep in stage.inputs.items()
    }
    if kind.output is not None and kind.output.file is not None:
        out.mkdir(parents=True, exist_ok=True)
        args["out"] = out / kind.output.file
    else:
        args["out"] = out
    continuing = False
    if kind.resumes is not None:
        pending = _pending(stage)
        continuing = (
            out.exists() and pending.is_file() and read_json(pending).get("key") == stage.key
            and kind.resumes(out)
        )  # fmt: skip
        out.parent.mkdir(parents=True, exist_ok=True)
        write_json(pending, {"key": stage.key})
        if continuing:
            info(f"{stage.label}: resuming an interrupted run")
    given = {"overwrite": not continuing, "resume": continuing, "show_progress": show_progress}
    return stage.kind, {**args, **{f: given[f] for f in kind.flags if f in given}, **stage.options}


def invoke(kind: str, kwargs: dict) -> None:
    REGISTRY[kind].load()(**kwargs)


def finished(stage: Stage) -> None:
    _pending(stage).unlink(missing_ok=True)


def _pending(stage: Stage) -> Path:
    out = Path(stage.out)
    return out.parent / f".{out.name}.pending.json"
