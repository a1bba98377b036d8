"""The plan of an experiment: its stages in dependency order, validated before any compute.

`Plan` turns an `ExperimentSpec` into `Stage`s of the registered kinds (`stages.py`): corpora,
tokenizers, shards, one model per variant and seed, evaluations. It checks every name, file and
option first (each stage's options through its config class) and reports every problem at once,
each naming its key. Building is all it does: `graph.py` runs a plan.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from expertlm import config
from expertlm.errors import ExpertlmError
from expertlm.experiment import filter_plan, make_plan, post_plan
from expertlm.experiment.stages import REGISTRY, Stage, external, within
from expertlm.net import is_hub_id
from expertlm.synth.build import LITERATURE
from expertlm.synth.config import SynthConfig

if TYPE_CHECKING:
    from expertlm.experiment.spec import (
        BenchmarkSpec,
        CorpusSpec,
        ExperimentSpec,
        HumansSpec,
        VariantSpec,
    )


@dataclass
class VariantPlan:
    spec: VariantSpec
    seeds: list[int]
    tokenizer: Stage | None = None
    models: dict[int, Stage] = field(default_factory=dict)
    results: dict[int, dict[str, Stage]] = field(default_factory=dict)
    ppl: dict[int, dict[str, Stage]] = field(default_factory=dict)

    def model_for(self, seed: int) -> Stage:
        """This variant's model for `seed`, or its first seed's when it has no such seed (a
        variant built on it with more seeds starts every seed from that one)."""
        return self.models.get(seed) or next(iter(self.models.values()))


class Plan:
    """The stages of an experiment in dependency order, validated before any compute."""

    def __init__(
        self, spec: ExperimentSpec, base: Path, file: Path, out: Path, show_progress: bool = True
    ):
        self.spec, self.base, self.file, self.out = spec, base, file, out
        self.show_progress = show_progress
        self.problems: list[str] = []
        self.stages: list[Stage] = []
        self.downloads: dict[str, Stage] = {}
        self.corpora: dict[str, Stage] = {}
        self.synth: dict[str, Stage] = {}
        self.tokenizers: dict[str, Stage] = {}
        self.benchmarks: dict[str, Stage] = {}
        self.classifiers: dict[str, Stage] = {}
        self.datasets: dict[str, tuple[Stage, str]] = {}  # name -> (its file, its kind: post_plan)
        self.shards: dict[tuple[str, str], Stage] = {}
        self.variants: dict[str, VariantPlan] = {}
        self.humans: Stage | None = None
        self.tokenizer_comparison: Stage | None = None
        self._pending_make: list = []  # made benchmarks, until their corpora exist (make_plan.py)
        self._build()
        from expertlm.experiment.budget import preflight  # (budget imports this module)

        for key, msg in preflight(self):  # what the stages would refuse later: shapes, devices
            self.problem(key, msg)
        if self.problems:
            raise ExpertlmError("\n".join(self.problems))

    # --- helpers ---

    def problem(self, key: str, msg: str) -> None:
        self.problems.append(f"{self.file}: key '{key}': {msg}")

    def options(self, cls: type[config.StageConfig], options: dict, key: str,
                names: dict[str, str] | None = None) -> dict:  # fmt: skip
        """`options`, checked by the stage's config class: each problem under its key (`names`
        maps an option to the experiment file's name for it, where they differ)."""
        try:
            cls.model_validate(options)
        except ValidationError as e:
            for err in e.errors():
                loc = [str(p) for p in err["loc"]]
                if loc and names and loc[0] in names:
                    loc[0] = names[loc[0]]
                msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
                self.problem(".".join([key, *loc]), msg.removeprefix("Value error, "))
        return options

    def path(self, p: str) -> Path:
        q = Path(p).expanduser()
        return q if q.is_absolute() else self.base / q

    def add(self, kind: str, label: str, out: Path, options: dict | None = None,
            inputs: dict | None = None, after: list[Stage] | None = None) -> Stage:  # fmt: skip
        self.stages.append(Stage(kind, label, out, options or {}, inputs or {}, after or []))
        return self.stages[-1]

    def _ref(self, ref: str, key: str, artifact: str) -> Stage:
        """A model or tokenizer outside the experiment: a folder, or a hub id."""
        p = self.path(ref)
        if p.exists():
            return external(ref, p, artifact)
        if not is_hub_id(ref):
            self.problem(key, f"{p}: no such folder (and not a hub id)")
        return external(ref, ref, artifact)

    # --- building ---

    def _build(self) -> None:
        spec, out = self.spec, self.out
        for name, d in spec.downloads.items():
            opts = {"name": d.fetch}
            if d.from_dir:
                opts["from_dir"] = str(self.path(d.from_dir))
                if not Path(opts["from_dir"]).is_dir():
                    self.problem(f"downloads.{name}.from_dir", f"{opts['from_dir']}: no such folder")
            self.options(config.FetchConfig, opts, f"downloads.{name}", {"name": "fetch"})
            self.downloads[name] = self.add("bench_fetch", f"download {name}", out / "downloads" / name, opts)  # fmt: skip
        raw = {name: self._corpus_sources(name, c) for name, c in spec.corpora.items()}
        for name, b in spec.benchmarks.items():
            self._benchmark(name, b, raw)
        for name, d in spec.datasets.items():
            post_plan.plan_dataset(self, name, d, raw)
        for name, c in spec.corpora.items():
            if raw[name] is not None:
                self._corpus_build(name, c, *raw[name])
        filter_plan.plan_filters(self)  # classifiers and filtered corpora, once their inputs are
        for name, t in spec.tokenizers.items():
            key = f"tokenizers.{name}"
            if t.corpus is None:
                self.tokenizers[name] = self._ref(t.path, f"{key}.path", "tokenizer")
            elif t.corpus not in self.corpora:
                self.problem(f"{key}.corpus", f"unknown corpus '{t.corpus}' (corpora: {', '.join(spec.corpora)})")  # fmt: skip
            else:
                opts = self.options(config.TokenizerConfig, {"vocab_size": t.vocab_size, **t.options}, key,
                                    {k: f"options.{k}" for k in t.options})  # fmt: skip
                self.tokenizers[name] = self.add("tokenizer_train", f"tokenizer {name}", out / "tokenizers" / name,
                                                 opts, {"corpus": self.corpora[t.corpus]})  # fmt: skip
        make_plan.finish_make(self)
        self.options(config.EvalBenchConfig, spec.eval.options, "eval.options")
        for n in spec.eval.benchmarks or []:
            if n not in spec.benchmarks:
                self.problem("eval.benchmarks", f"unknown benchmark '{n}' (benchmarks: {', '.join(spec.benchmarks)})")  # fmt: skip
        for n in spec.eval.ppl:
            if n not in spec.corpora:
                self.problem("eval.ppl", f"unknown corpus '{n}' (corpora: {', '.join(spec.corpora)})")  # fmt: skip
        if spec.humans is not None:
            self._humans(spec.humans)
        names = [v.name for v in spec.variants]
        for i, v in enumerate(spec.variants):
            if names.count(v.name) > 1:
                self.problem(f"variants.{i}.name", f"'{v.name}' is used by more than one variant")
        for i in self._variant_order():
            self._variant(i, spec.variants[i])
        if not self.problems:
            self._evaluations()
        filter_plan.check_compute(self)
        make_plan.dependency_order(self)  # made benchmarks may need corpora planned after them

    def _corpus_sources(self, name: str, c: CorpusSpec) -> tuple[list[Stage], dict] | None:
        """The inputs of a corpus: a synth or pubmed stage's file, or source files (None: an
        existing corpus folder, nothing to build)."""
        key = f"corpora.{name}"
        if c.path is not None:
            p = self.path(c.path)
            if not (p / "train.jsonl.gz").is_file():
                self.problem(f"{key}.path", f"{p}: not a corpus folder (no train.jsonl.gz)")
            self.corpora[name] = external(f"corpus {name}", p, "corpus")
            return None
        if c.web is not None or c.filter is not None:
            return filter_plan.sources(self, name, c)
        build = dict(c.build)
        if c.synth is not None:
            opts = self.options(SynthConfig, dict(c.synth), f"{key}.synth")
            synth = self.synth[name] = self.add("corpus_synth", f"synth {name}", self.out / "sources" / name, opts)  # fmt: skip
            build.setdefault("decontam", [str(synth.out / f) for f in ("benchmark.csv", "benchmark_seen.csv")])  # fmt: skip
            return [within(synth, LITERATURE, f"literature {name}")], build
        if c.pubmed is not None:
            opts = dict(c.pubmed)
            if isinstance(opts.get("journals"), str) and opts["journals"] != "neuro":
                opts["journals"] = str(self.path(opts["journals"]))
            self.options(config.PubmedConfig, opts, f"{key}.pubmed")
            pm = self.add("corpus_pubmed", f"pubmed {name}", self.out / "sources" / name, opts)
            return [within(pm, REGISTRY["corpus_pubmed"].output.file, f"pubmed {name} file")], build
        sources = []
        for j, src in enumerate(c.sources or []):
            if src.startswith("hf:"):
                sources.append(external(f"source {src}", src, "sources"))
                continue
            p = self.path(src)
            if not p.exists():
                self.problem(f"{key}.sources.{j}", f"{p}: no such file or folder")
            sources.append(external(f"source {p}", p, "sources"))
        return sources, build

    def _benchmark(self, name: str, b: BenchmarkSpec, raw: dict) -> None:
        key = f"benchmarks.{name}"
        if b.make is not None:
            self.benchmarks[name] = make_plan.made_file(make_plan.plan_make(self, name, b, raw), b, name)
            return
        if b.corpus is not None or b.download is not None:
            owner = self.synth.get(b.corpus) if b.corpus is not None else self.downloads.get(b.download)  # fmt: skip
            if owner is None:
                what = f"'{b.corpus}' is not a synthetic corpus" if b.corpus is not None else f"unknown download '{b.download}'"  # fmt: skip
                self.problem(f"{key}.{'corpus' if b.corpus is not None else 'download'}", what)
                return
            self.benchmarks[name] = within(owner, b.file, f"benchmark {name}")
            return
        p = self.path(b.path)
        if not p.is_file():
            self.problem(f"{key}.path", f"{p}: no such benchmark file")
        self.benchmarks[name] = external(f"benchmark {name}", p, "file")

    def _corpus_build(self, name: str, c: CorpusSpec, sources: list[Stage], build: dict) -> None:
        key = f"corpora.{name}"
        after = [self.synth[name]] if c.synth is not None else []  # its benchmarks decontaminate
        if "decontam" in build and c.synth is None:
            build["decontam"] = [str(self.path(d)) for d in build["decontam"]]
            for d in build["decontam"]:
                if not Path(d).is_file():
                    self.problem(f"{key}.build.decontam", f"{d}: no such benchmark file")
                after.append(external(f"decontam {d}", Path(d), "file"))
        for b in c.decontam:
            if b not in self.benchmarks:
                self.problem(f"{key}.decontam", f"unknown benchmark '{b}' (benchmarks: {', '.join(self.benchmarks)})")  # fmt: skip
                continue
            build["decontam"] = [*build.get("decontam", []), str(self.benchmarks[b].out)]
            after.append(self.benchmarks[b])
        opts = self.options(config.CorpusConfig, build, f"{key}.build")
        self.corpora[name] = self.add("corpus_build", f"corpus {name}", self.out / "corpora" / name,
                                      opts, {"sources": sources}, after)  # fmt: skip

    def _humans(self, h: HumansSpec) -> None:
        if h.download is not None:
            dl = self.downloads.get(h.download)
            if dl is None:
                self.problem("humans.download", f"unknown download '{h.download}' (downloads: {', '.join(self.downloads) or 'none'})")  # fmt: skip
                return
            src = within(dl, h.file, "humans file")
        else:
            p = self.path(h.path)
            if not p.is_file():
                self.problem("humans.path", f"{p}: no such participant data file")
            src = external("humans file", p, "file")
        opts = self.options(config.EvalHumansConfig, {"items": h.items}, "humans")
        self.humans = self.add("eval_humans", "humans", self.out / "results" / "humans", opts, {"participants": src})  # fmt: skip

    def _variant_order(self) -> list[int]:
        """Variants ordered so that every init:variant comes after its variant (cycles refused)."""
        index = {v.name: i for i, v in enumerate(self.spec.variants)}
        order: list[int] = []
        state: dict[int, int] = {}

        def visit(i: int, chain: list[str]) -> None:
            if state.get(i) == 2:
                return
            if state.get(i) == 1:
                self.problem(f"variants.{i}.init", "variants initialise each other in a cycle: " + " -> ".join(chain))  # fmt: skip
                return
            state[i] = 1
            v = self.spec.variants[i]
            deps = [("init", v.init.removeprefix("variant:"))] if v.init.startswith("variant:") else []
            if v.merge is not None:
                deps += [("merge.models", m) for m in v.merge.get("models") or [] if isinstance(m, str)]
                deps += [("merge.recipe", m) for m in post_plan.recipe_names(v.merge.get("recipe"))]
                if isinstance(v.merge.get("base"), str) and v.merge["base"] in index:
                    deps.append(("merge.base", v.merge["base"]))
            for where, dep in deps:
                if dep not in index:
                    self.problem(f"variants.{i}.{where}", f"unknown variant '{dep}' (variants: {', '.join(index)})")  # fmt: skip
                else:
                    visit(index[dep], [*chain, dep])
            state[i] = 2
            order.append(i)

        for i, v in enumerate(self.spec.variants):
            visit(i, [v.name])
        return order

    def _variant(self, i: int, v: VariantSpec) -> None:
        key, out = f"variants.{i}", self.out
        vp = self.variants[v.name] = VariantPlan(v, v.seeds or self.spec.seeds)
        if v.merge is not None:
            if "recipe" in v.merge:
                post_plan.recipe_merge(self, key, v, vp)
            else:
                self._merge_variant(key, v, vp)
            return
        post = post_plan.objective(v) in post_plan.POST_OBJECTIVES
        if not post and post_plan.objective(v) != "clm":  # an unknown objective: the only problem
            self.options(config.TrainConfig, {"objective": post_plan.objective(v)}, f"{key}.train")
            return
        if post and v.init == "scratch":
            self.problem(f"{key}.init", f"objective {post_plan.objective(v)} fine-tunes a model: set init "
                         "(variant:NAME or a model folder)")  # fmt: skip
            return
        parent: VariantPlan | None = None
        init_ref: Stage | None = None
        if v.init.startswith("variant:"):
            parent = self.variants.get(v.init.removeprefix("variant:"))
            if parent is None or not parent.models:
                return  # reported: an unknown or broken variant, or a cycle
            tok = parent.tokenizer
            if v.tokenizer is not None and self.tokenizers.get(v.tokenizer) is not tok:
                self.problem(f"{key}.tokenizer", f"'{v.tokenizer}' differs from the tokenizer of its init "
                             f"'{parent.spec.name}' ('{parent.spec.tokenizer}'): a model keeps its tokenizer")  # fmt: skip
        elif v.init == "scratch" and v.tokenizer is None:
            self.problem(f"{key}.tokenizer", "a variant trained from scratch needs a tokenizer")
            return
        elif v.init != "scratch":
            init_ref = self._ref(v.init, f"{key}.init", "model")
            tok = external(v.init, init_ref.out, "tokenizer")  # a model folder holds its tokenizer
        if v.tokenizer is not None and parent is None:
            if v.tokenizer not in self.tokenizers:
                self.problem(f"{key}.tokenizer", f"unknown tokenizer '{v.tokenizer}' (tokenizers: {', '.join(self.spec.tokenizers)})")  # fmt: skip
                return
            tok = self.tokenizers[v.tokenizer]
        vp.tokenizer = tok
        model = {"preset": v.preset, "model": v.model}
        if v.init == "scratch":
            self.options(config.ModelConfig, model, key)
        if v.train is None:
            if v.data is not None:
                self.problem(f"{key}.data", "an untrained variant (train: null) has no training data")
            for seed in vp.seeds:
                if parent is not None or init_ref is not None:
                    vp.models[seed] = parent.model_for(seed) if parent else init_ref
                else:
                    vp.models[seed] = self.add("init_model", f"init {v.name} seed {seed}", out / "runs" / v.name / f"seed-{seed}",
                                               {**model, "seed": seed}, {"tokenizer": tok})  # fmt: skip
            return
        data = post_plan.train_data(self, key, v) if post else None
        if post and data is None:
            return
        if not post and v.data in self.spec.datasets and v.data not in self.spec.corpora:
            self.problem(f"{key}.data", f"'{v.data}' is a dataset: set train.objective (sft, dpo or orpo) to "
                         "fine-tune on it, or name a corpus")  # fmt: skip
            return
        if not post and (v.data is None or v.data not in self.corpora):
            self.problem(f"{key}.data", f"unknown corpus '{v.data}' to train on (corpora: {', '.join(self.spec.corpora)})"
                         if v.data else "a trained variant needs data: a corpus name")  # fmt: skip
            return
        train = dict(v.train)
        for reserved in ("init", "seed", "preset", "model"):
            if reserved in train:
                self.problem(f"{key}.train.{reserved}", f"set {reserved} on the variant, not under train")
        # (init only matters here as scratch or not: the model itself comes later)
        self.options(config.TrainConfig, {**train, **model, "init": "scratch" if v.init == "scratch" else "pretrained"},
                     f"{key}.train")  # fmt: skip
        # (a tokenizer that is not the experiment's: its model's, named by its label)
        shards = data or self._shards(v.data, tok, v.tokenizer or (parent.spec.tokenizer if parent else v.init) or tok.label)
        # (a continued variant keeps its parent's architecture: preset and model here only size
        # the --dry-run budget)
        arch = parent.spec if parent is not None else v
        for seed in vp.seeds:
            start = parent.model_for(seed) if parent is not None else init_ref
            opts = {"preset": arch.preset, "model": arch.model, "seed": seed,
                    "init": str(start.out) if start is not None else "scratch", **train}  # fmt: skip
            vp.models[seed] = self.add("train", f"train {v.name} seed {seed}", out / "runs" / v.name / f"seed-{seed}",
                                       opts, {"shards": shards}, [start] if start is not None else [])  # fmt: skip

    def _merge_variant(self, key: str, v: VariantSpec, vp: VariantPlan) -> None:
        """A variant that merges other variants' models (seed by seed) instead of training."""
        m = dict(v.merge)
        models, base = m.pop("models", None), m.pop("base", None)
        if not isinstance(models, list) or not models:
            self.problem(f"{key}.merge.models", "a merge needs a list of variant names")
            return
        parents = [self.variants.get(n) for n in models]
        base_plan = self.variants.get(base) if isinstance(base, str) else None
        if base is not None and base_plan is None:
            self.problem(f"{key}.merge.base", f"unknown variant '{base}'")
        self.options(config.MergeConfig, m, f"{key}.merge")
        if any(p is None or not p.models for p in parents) or (base is not None and not (base_plan and base_plan.models)):
            return  # reported: unknown variants (by the ordering), or broken ones
        toks = {id(p.tokenizer) for p in parents} | ({id(base_plan.tokenizer)} if base_plan else set())  # fmt: skip
        if len(toks) > 1:
            self.problem(f"{key}.merge.models", "merged models must share one tokenizer: "
                         + ", ".join(f"{p.spec.name} ({p.spec.tokenizer or p.spec.init})" for p in parents))  # fmt: skip
            return
        if v.train not in ({}, None) or v.data is not None:
            self.problem(f"{key}.merge", "a merged variant is not trained (leave out train and data)")
        vp.tokenizer = parents[0].tokenizer
        for seed in vp.seeds:
            inputs: dict = {"models": [p.model_for(seed) for p in parents]}
            if base_plan is not None:
                inputs["base"] = base_plan.model_for(seed)
            vp.models[seed] = self.add("merge", f"merge {v.name} seed {seed}",
                                       self.out / "runs" / v.name / f"seed-{seed}", m, inputs)  # fmt: skip

    def _shards(self, corpus: str, tok: Stage, tok_name: str) -> Stage:
        k = (corpus, tok.label)
        if k not in self.shards:
            name = f"{corpus}--{tok_name.replace('/', '_').replace(':', '_')}"
            self.shards[k] = self.add("data_prepare", f"shards {name}", self.out / "shards" / name, {},
                                      {"corpus": self.corpora[corpus], "tokenizer": tok})  # fmt: skip
        return self.shards[k]

    def _evaluations(self) -> None:
        spec, out = self.spec, self.out
        opts = dict(spec.eval.options)
        ppl_opts = {"max_docs": spec.eval.ppl_max_docs, **{k: opts[k] for k in ("batch_size", "device", "dtype") if k in opts}}  # fmt: skip
        self.options(config.EvalPplConfig, {"max_docs": spec.eval.ppl_max_docs}, "eval", {"max_docs": "ppl_max_docs"})
        for name, vp in self.variants.items():
            at = {"checkpoints": spec.eval.checkpoints} if filter_plan.scored_at_checkpoints(self, vp) else {}
            for seed, model in vp.models.items():
                base = out / "results" / name / f"seed-{seed}"
                vp.results[seed], vp.ppl[seed] = {}, {}
                for b in spec.eval.benchmarks or list(spec.benchmarks):
                    bs = spec.benchmarks[b]
                    cfg = {"template": bs.template, "repair": bs.repair, "isolated": bs.isolated, **opts, **at}
                    vp.results[seed][b] = self.add("eval_bench", f"eval {name} seed {seed} on {b}", base / b, cfg,
                                                   {"model": model, "bench": self.benchmarks[b]})  # fmt: skip
                for c in spec.eval.ppl:
                    vp.ppl[seed][c] = self.add("eval_ppl", f"ppl {name} seed {seed} on {c}", base / f"ppl-{c}", ppl_opts | at,
                                               {"model": model, "corpus": self.corpora[c]})  # fmt: skip
        local = {n: t for n, t in self.tokenizers.items() if t.kind != "input" or Path(t.out).exists()}
        if len(local) >= 2:
            on = spec.eval.tokenizers_on or next(iter(spec.corpora))
            if on not in self.corpora:
                self.problem("eval.tokenizers_on", f"unknown corpus '{on}'")
                return
            self.tokenizer_comparison = self.add("tokenizer_compare", f"tokenizers on {on}", out / "results" / "tokenizers",
                                                 {}, {"tokenizers": list(local.values()), "on": self.corpora[on]})  # fmt: skip
