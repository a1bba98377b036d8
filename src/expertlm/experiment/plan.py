"""The plan of an experiment: its stages in dependency order, validated before any compute.

`Plan` turns an `ExperimentSpec` into `Stage`s (`stages.py`): corpora, tokenizers, shards, one
model per variant and seed, evaluations. It checks every name, file and option first and reports
every problem at once, each naming its key; `execute` runs what is not up to date and writes
`experiment.json`, the paths of every output, for the report.
"""

from __future__ import annotations

import inspect
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from expertlm.config import (
    CorpusConfig,
    EvalBenchConfig,
    TokenizerConfig,
    TrainConfig,
    format_validation_error,
)
from expertlm.console import console, info
from expertlm.errors import ExpertlmError
from expertlm.experiment.stages import (
    STAGE_FILE,
    Stage,
    act_bench_fetch,
    act_corpus_build,
    act_data_prepare,
    act_eval_bench,
    act_eval_humans,
    act_eval_ppl,
    act_init_model,
    act_merge,
    act_pubmed,
    act_synth,
    act_tokenizer_compare,
    act_tokenizer_train,
    act_train,
    corpus_digest,
    external,
    model_digest,
    shards_digest,
    source_digest,
    synth_digest,
    tokenizer_digest,
)
from expertlm.io import provenance, sha256_file, write_json
from expertlm.net import is_hub_id
from expertlm.synth.config import SynthConfig

if TYPE_CHECKING:
    from expertlm.experiment.spec import BenchmarkSpec, CorpusSpec, ExperimentSpec, VariantSpec


# --- the plan --------------------------------------------------------------------------------


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
        self.corpora: dict[str, Stage] = {}
        self.synth: dict[str, Stage] = {}
        self.tokenizers: dict[str, Stage] = {}
        self.benchmarks: dict[str, Stage] = {}
        self.shards: dict[tuple[str, str], Stage] = {}
        self.variants: dict[str, VariantPlan] = {}
        self.humans: Stage | None = None
        self.tokenizer_comparison: Stage | None = None
        self._build()
        if self.problems:
            raise ExpertlmError("\n".join(self.problems))

    # --- helpers ---

    def problem(self, key: str, msg: str) -> None:
        self.problems.append(f"{self.file}: key '{key}': {msg}")

    def check_options(self, cls, options: dict, key: str) -> None:
        try:
            cls.model_validate(options)
        except ValidationError as e:
            for line in format_validation_error(e, "option").splitlines():
                # "option 'lr' (--lr): msg" -> key 'variants.2.train.lr': msg
                head, _, msg = line.partition(": ")
                name = head.split("'")[1] if "'" in head else ""
                self.problem(f"{key}.{name}" if name else key, msg)

    def path(self, p: str) -> Path:
        q = Path(p).expanduser()
        return q if q.is_absolute() else self.base / q

    def add(self, stage: Stage) -> Stage:
        self.stages.append(stage)
        return stage

    # --- building ---

    def _build(self) -> None:
        spec, out = self.spec, self.out
        self.downloads: dict[str, Stage] = {}
        for name, d in spec.downloads.items():
            from_dir = str(self.path(d.from_dir)) if d.from_dir else None
            if from_dir and not Path(from_dir).is_dir():
                self.problem(f"downloads.{name}.from_dir", f"{from_dir}: no such folder")
            cfg = {"fetch": d.fetch, "from_dir": from_dir}
            self.downloads[name] = self.add(Stage(
                "download", f"download {name}", out / "downloads" / name, cfg, [],
                lambda st, c=cfg: act_bench_fetch(st, c),
            ))  # fmt: skip
        raw: dict[str, tuple[list, list[Stage], dict]] = {}  # corpus -> (sources, deps, build)
        for name, c in spec.corpora.items():
            raw[name] = self._corpus_sources(name, c)
        for name, b in spec.benchmarks.items():
            self._benchmark(name, b)
        for name, c in spec.corpora.items():
            if raw[name] is not None:
                self._corpus_build(name, c, *raw[name])
        for name, t in spec.tokenizers.items():
            key = f"tokenizers.{name}"
            if t.corpus is not None:
                if t.corpus not in self.corpora:
                    self.problem(
                        f"{key}.corpus",
                        f"unknown corpus '{t.corpus}' (corpora: {', '.join(spec.corpora)})",
                    )
                    continue
                opts = {"vocab_size": t.vocab_size, **t.options}
                self.check_options(TokenizerConfig, opts, f"{key}.options")
                self.tokenizers[name] = self.add(Stage(
                    "tokenizer", f"tokenizer {name}", out / "tokenizers" / name, opts, [self.corpora[t.corpus]],
                    lambda st, c=self.corpora[t.corpus], o=opts: act_tokenizer_train(st, c.out, o, self.show_progress),
                    tokenizer_digest,
                ))  # fmt: skip
            else:
                self.tokenizers[name] = self._model_or_tokenizer_ref(
                    t.path, f"{key}.path", tokenizer_digest
                )
        self.check_options(EvalBenchConfig, spec.eval.options, "eval.options")
        for n in spec.eval.benchmarks or []:
            if n not in spec.benchmarks:
                self.problem(
                    "eval.benchmarks",
                    f"unknown benchmark '{n}' (benchmarks: {', '.join(spec.benchmarks)})",
                )
        for n in spec.eval.ppl:
            if n not in spec.corpora:
                self.problem(
                    "eval.ppl", f"unknown corpus '{n}' (corpora: {', '.join(spec.corpora)})"
                )
        if spec.humans is not None:
            h = spec.humans
            if h.download is not None:
                if h.download not in self.downloads:
                    self.problem(
                        "humans.download",
                        f"unknown download '{h.download}' (downloads: {', '.join(self.downloads) or 'none'})",
                    )
                    src = external("humans file", Path(h.file), sha256_file)
                else:
                    dl = self.downloads[h.download]
                    src = Stage(
                        "input", "humans file", dl.out / h.file, {}, [dl], None, sha256_file
                    )  # type: ignore[arg-type]
            else:
                p = self.path(h.path)
                if not p.is_file():
                    self.problem("humans.path", f"{p}: no such participant data file")
                src = external("humans file", p, sha256_file)
            self.humans = self.add(Stage("humans", "humans", out / "results" / "humans", {"items": h.items}, [src],
                                         lambda st, f=src, i=h.items: act_eval_humans(st, f.out, i)))  # fmt: skip
        names = [v.name for v in spec.variants]
        for i, v in enumerate(spec.variants):
            if names.count(v.name) > 1:
                self.problem(f"variants.{i}.name", f"'{v.name}' is used by more than one variant")
            elif not v.name.replace("-", "").replace("_", "").replace(".", "").isalnum():
                self.problem(
                    f"variants.{i}.name", f"'{v.name}': use letters, digits, '-', '_', '.'"
                )
        order = self._variant_order()
        for i in order:
            self._variant(i, spec.variants[i])
        if not self.problems:
            self._evaluations()

    def _corpus_sources(self, name: str, c: CorpusSpec):
        """The inputs of a corpus: a synth or pubmed stage, source files, or an existing folder."""
        key = f"corpora.{name}"
        out = self.out
        if c.path is not None:
            p = self.path(c.path)
            if not (p / "train.jsonl.gz").is_file():
                self.problem(f"{key}.path", f"{p}: not a corpus folder (no train.jsonl.gz)")
            self.corpora[name] = external(f"corpus {name}", p, corpus_digest)
            return None
        build = dict(c.build)
        if c.synth is not None:
            self.check_options(SynthConfig, c.synth, f"{key}.synth")
            synth = self.add(Stage("synth", f"synth {name}", out / "sources" / name, dict(c.synth), [],
                                   lambda st, o=dict(c.synth): act_synth(st, o, self.show_progress), synth_digest))  # fmt: skip
            self.synth[name] = synth
            build.setdefault(
                "decontam",
                [str(synth.out / "benchmark.csv"), str(synth.out / "benchmark_seen.csv")],
            )
            return [synth.out / "literature.jsonl.gz"], [synth], build
        if c.pubmed is not None:
            from expertlm.corpus.pubmed import corpus_pubmed

            allowed = set(inspect.signature(corpus_pubmed).parameters) - {
                "out",
                "overwrite",
                "show_progress",
            }
            for k in c.pubmed:
                if k not in allowed:
                    self.problem(
                        f"{key}.pubmed.{k}",
                        f"unknown option (options: {', '.join(sorted(allowed))})",
                    )
            opts = dict(c.pubmed)
            if isinstance(opts.get("journals"), str) and opts["journals"] != "neuro":
                opts["journals"] = str(self.path(opts["journals"]))
            pm = self.add(Stage("pubmed", f"pubmed {name}", out / "sources" / name, opts, [],
                                lambda st, o=opts: act_pubmed(st, o, self.show_progress)))  # fmt: skip
            return [pm.out / "pubmed.jsonl.gz"], [pm], build
        sources, deps = [], []
        for j, src in enumerate(c.sources or []):
            if src.startswith("hf:"):
                sources.append(src)
                continue
            p = self.path(src)
            if not p.exists():
                self.problem(f"{key}.sources.{j}", f"{p}: no such file or folder")
            sources.append(p)
            deps.append(external(f"source {p.name}", p, source_digest))
        return sources, deps, build

    def _benchmark(self, name: str, b: BenchmarkSpec) -> None:
        key = f"benchmarks.{name}"
        if b.corpus is not None or b.download is not None:
            owner = (
                self.synth.get(b.corpus) if b.corpus is not None else self.downloads.get(b.download)
            )
            if owner is None:
                what = (
                    f"'{b.corpus}' is not a synthetic corpus"
                    if b.corpus is not None
                    else f"unknown download '{b.download}'"
                )
                self.problem(f"{key}.{'corpus' if b.corpus is not None else 'download'}", what)
                return
            self.benchmarks[name] = Stage("input", f"benchmark {name}", owner.out / b.file, {}, [owner], None,  # type: ignore[arg-type]
                                          lambda p: sha256_file(p) if p.exists() else "")  # fmt: skip
            return
        p = self.path(b.path)
        if not p.is_file():
            self.problem(f"{key}.path", f"{p}: no such benchmark file")
        self.benchmarks[name] = external(f"benchmark {name}", p, sha256_file)

    def _corpus_build(
        self, name: str, c: CorpusSpec, sources: list, deps: list[Stage], build: dict
    ) -> None:
        key = f"corpora.{name}"
        if "decontam" in build and c.synth is None:
            build["decontam"] = [str(self.path(d)) for d in build["decontam"]]
            for d in build["decontam"]:
                if not Path(d).is_file():
                    self.problem(f"{key}.build.decontam", f"{d}: no such benchmark file")
        for b in c.decontam:
            if b not in self.benchmarks:
                self.problem(
                    f"{key}.decontam",
                    f"unknown benchmark '{b}' (benchmarks: {', '.join(self.benchmarks)})",
                )
                continue
            build["decontam"] = [*build.get("decontam", []), str(self.benchmarks[b].out)]
            deps = [*deps, *self.benchmarks[b].deps]
        self.check_options(CorpusConfig, build, f"{key}.build")
        self.corpora[name] = self.add(Stage(
            "corpus", f"corpus {name}", self.out / "corpora" / name,
            {"build": build, "sources": [str(s) for s in sources]}, deps,
            lambda st, s=sources, b=build: act_corpus_build(st, s, b, self.show_progress), corpus_digest,
        ))  # fmt: skip

    def _model_or_tokenizer_ref(self, ref: str, key: str, digest) -> Stage:
        p = self.path(ref)
        if p.exists():
            return external(ref, p, digest)
        if is_hub_id(ref):
            return external(ref, Path(ref), lambda _p, r=ref: f"hub:{r}")
        self.problem(key, f"{p}: no such folder (and not a hub id)")
        return external(ref, p, lambda _p: "")

    def _variant_order(self) -> list[int]:
        """Variants ordered so that every init:variant comes after its variant (cycles refused)."""
        index = {v.name: i for i, v in enumerate(self.spec.variants)}
        order: list[int] = []
        state: dict[int, int] = {}

        def visit(i: int, chain: list[str]) -> None:
            if state.get(i) == 2:
                return
            if state.get(i) == 1:
                self.problem(
                    f"variants.{i}.init",
                    "variants initialise each other in a cycle: " + " -> ".join(chain),
                )
                return
            state[i] = 1
            v = self.spec.variants[i]
            deps = (
                [("init", v.init.removeprefix("variant:"))] if v.init.startswith("variant:") else []
            )
            if v.merge is not None:
                models = v.merge.get("models") or []
                deps += [("merge.models", m) for m in models if isinstance(m, str)]
                if isinstance(v.merge.get("base"), str) and v.merge["base"] in index:
                    deps.append(("merge.base", v.merge["base"]))
            for where, dep in deps:
                if dep not in index:
                    self.problem(
                        f"variants.{i}.{where}",
                        f"unknown variant '{dep}' (variants: {', '.join(index)})",
                    )
                else:
                    visit(index[dep], [*chain, dep])
            state[i] = 2
            order.append(i)

        for i, v in enumerate(self.spec.variants):
            visit(i, [v.name])
        return order

    def _variant(self, i: int, v: VariantSpec) -> None:
        key = f"variants.{i}"
        spec, out = self.spec, self.out
        vp = VariantPlan(v, v.seeds or spec.seeds)
        self.variants[v.name] = vp
        if v.merge is not None:
            self._merge_variant(key, v, vp)
            return
        init_variant = None
        init_ref: Stage | None = None
        if v.init.startswith("variant:"):
            init_variant = self.variants.get(v.init.removeprefix("variant:"))
            if init_variant is None or init_variant.tokenizer is None:
                return  # reported: an unknown or broken variant, or a cycle
            tok = init_variant.tokenizer
            if v.tokenizer is not None and self.tokenizers.get(v.tokenizer) is not tok:
                self.problem(f"{key}.tokenizer", f"'{v.tokenizer}' differs from the tokenizer of its init "
                             f"'{init_variant.spec.name}' ('{init_variant.spec.tokenizer}'): a model keeps its tokenizer")  # fmt: skip
        elif v.init == "scratch":
            if v.tokenizer is None:
                self.problem(f"{key}.tokenizer", "a variant trained from scratch needs a tokenizer")
                return
            tok = self.tokenizers.get(v.tokenizer)
            if tok is None:
                self.problem(
                    f"{key}.tokenizer",
                    f"unknown tokenizer '{v.tokenizer}' (tokenizers: {', '.join(spec.tokenizers)})",
                )
                return
        else:
            init_ref = self._model_or_tokenizer_ref(v.init, f"{key}.init", model_digest)
            if v.tokenizer is not None:
                tok = self.tokenizers.get(v.tokenizer)
                if tok is None:
                    self.problem(f"{key}.tokenizer", f"unknown tokenizer '{v.tokenizer}'")
                    return
            else:
                tok = external(
                    v.init,
                    init_ref.out,
                    tokenizer_digest
                    if init_ref.out.exists()
                    else (lambda _p, r=v.init: f"hub:{r}"),
                )
        vp.tokenizer = tok
        if v.init == "scratch" and v.model:
            from expertlm.models import GPT2_FIELDS, PRESETS

            if v.preset not in PRESETS:
                self.problem(
                    f"{key}.preset", f"unknown preset '{v.preset}' (presets: {', '.join(PRESETS)})"
                )
            for k in v.model:
                if k not in GPT2_FIELDS:
                    self.problem(f"{key}.model.{k}", "unknown model field")
        if v.train is None:
            if v.data is not None:
                self.problem(
                    f"{key}.data", "an untrained variant (train: null) has no training data"
                )
            for seed in vp.seeds:
                if init_variant is not None:
                    vp.models[seed] = init_variant.model_for(seed)
                elif init_ref is not None:
                    vp.models[seed] = init_ref
                else:
                    cfg = {"preset": v.preset, "model": v.model, "seed": seed}
                    vp.models[seed] = self.add(Stage(
                        "init", f"init {v.name} seed {seed}", out / "runs" / v.name / f"seed-{seed}", cfg, [tok],
                        lambda st, c=cfg, t=tok: act_init_model(st, t.out, c), model_digest,
                    ))  # fmt: skip
            return
        if v.data is None or v.data not in self.corpora:
            self.problem(f"{key}.data", f"unknown corpus '{v.data}' to train on (corpora: {', '.join(spec.corpora)})"
                         if v.data else "a trained variant needs data: a corpus name")  # fmt: skip
            return
        train_opts = dict(v.train)
        for reserved in ("init", "seed", "preset", "model"):
            if reserved in train_opts:
                self.problem(
                    f"{key}.train.{reserved}", f"set {reserved} on the variant, not under train"
                )
        # (init only matters here as scratch or not: the model itself comes later)
        init_kind = "scratch" if v.init == "scratch" else "pretrained"
        self.check_options(TrainConfig, {**train_opts, "preset": v.preset, "model": v.model, "init": init_kind},
                           f"{key}.train")  # fmt: skip
        shards = self._shards(
            v.data, tok, v.tokenizer or (init_variant.spec.tokenizer if init_variant else v.init)
        )
        for seed in vp.seeds:
            deps = [shards]
            init = "scratch"
            if init_variant is not None:
                parent = init_variant.model_for(seed)
                deps.append(parent)
                init = parent.out
            elif init_ref is not None:
                deps.append(init_ref)
                init = str(init_ref.out)
            # (a continued variant keeps its parent's architecture: preset and model here only
            # size the --dry-run budget)
            arch = init_variant.spec if init_variant is not None else v
            cfg = {
                "preset": arch.preset,
                "model": arch.model,
                "seed": seed,
                "init": str(init),
                **train_opts,
            }
            vp.models[seed] = self.add(Stage(
                "train", f"train {v.name} seed {seed}", out / "runs" / v.name / f"seed-{seed}", cfg, deps,
                lambda st, s=shards, c=cfg: act_train(st, s.out, c, self.show_progress), model_digest,
            ))  # fmt: skip

    def _merge_variant(self, key: str, v: VariantSpec, vp: VariantPlan) -> None:
        """A variant that merges other variants' models (seed by seed) instead of training."""
        m = dict(v.merge)
        models = m.pop("models", None)
        if not isinstance(models, list) or not models:
            self.problem(f"{key}.merge.models", "a merge needs a list of variant names")
            return
        parents = [self.variants.get(n) for n in models]
        base = m.pop("base", None)
        base_plan = self.variants.get(base) if isinstance(base, str) else None
        if base is not None and base_plan is None:
            self.problem(f"{key}.merge.base", f"unknown variant '{base}'")
        allowed = {"method", "weights", "t", "density", "lam"}
        for k in m:
            if k not in allowed:
                self.problem(
                    f"{key}.merge.{k}",
                    f"unknown key (merge keys: models, base, {', '.join(sorted(allowed))})",
                )
        if any(p is None or p.tokenizer is None for p in parents) or (
            base is not None and base_plan is None
        ):
            return  # reported by the ordering
        toks = {id(p.tokenizer) for p in parents} | (
            {id(base_plan.tokenizer)} if base_plan else set()
        )
        if len(toks) > 1:
            self.problem(f"{key}.merge.models", "merged models must share one tokenizer: "
                         + ", ".join(f"{p.spec.name} ({p.spec.tokenizer or p.spec.init})" for p in parents))  # fmt: skip
            return
        if v.train not in ({}, None) or v.data is not None:
            self.problem(
                f"{key}.merge", "a merged variant is not trained (leave out train and data)"
            )
        vp.tokenizer = parents[0].tokenizer
        for seed in vp.seeds:
            pick = [p.model_for(seed) for p in parents]
            base_st = base_plan.model_for(seed) if base_plan else None
            cfg = {**m, "seed": seed}
            deps = [*pick, *([base_st] if base_st else [])]
            vp.models[seed] = self.add(Stage(
                "merge", f"merge {v.name} seed {seed}", self.out / "runs" / v.name / f"seed-{seed}", cfg, deps,
                lambda st, ms=pick, b=base_st, o=m: act_merge(st, [x.out for x in ms], b.out if b else None, o, self.show_progress),
                model_digest,
            ))  # fmt: skip

    def _shards(self, corpus: str, tok: Stage, tok_name: str) -> Stage:
        k = (corpus, tok.label)
        if k not in self.shards:
            name = f"{corpus}--{tok_name.replace('/', '_').replace(':', '_')}"
            c = self.corpora[corpus]
            self.shards[k] = self.add(Stage(
                "shards", f"shards {name}", self.out / "shards" / name, {}, [c, tok],
                lambda st, c=c, t=tok: act_data_prepare(st, c.out, t.out, self.show_progress), shards_digest,
            ))  # fmt: skip
        return self.shards[k]

    def _evaluations(self) -> None:
        spec, out = self.spec, self.out
        benches = spec.eval.benchmarks or list(spec.benchmarks)
        opts = dict(spec.eval.options)
        for name, vp in self.variants.items():
            for seed, model in vp.models.items():
                base = out / "results" / name / f"seed-{seed}"
                vp.results[seed] = {}
                for b in benches:
                    bs = spec.benchmarks[b]
                    cfg = {
                        "template": bs.template,
                        "repair": bs.repair,
                        "isolated": bs.isolated,
                        **opts,
                    }
                    vp.results[seed][b] = self.add(Stage(
                        "eval", f"eval {name} seed {seed} on {b}", base / b, cfg, [model, self.benchmarks[b]],
                        lambda st, m=model, bench=self.benchmarks[b], c=cfg: act_eval_bench(st, m.out, bench.out, c, self.show_progress),
                    ))  # fmt: skip
                vp.ppl[seed] = {}
                for c in spec.eval.ppl:
                    cfg = {
                        "max_docs": spec.eval.ppl_max_docs,
                        **{k: opts[k] for k in ("batch_size", "device", "dtype") if k in opts},
                    }
                    vp.ppl[seed][c] = self.add(Stage(
                        "ppl", f"ppl {name} seed {seed} on {c}", base / f"ppl-{c}", cfg, [model, self.corpora[c]],
                        lambda st, m=model, corpus=self.corpora[c], cf=cfg: act_eval_ppl(st, m.out, corpus.out, cf, self.show_progress),
                    ))  # fmt: skip
        local = {n: t for n, t in self.tokenizers.items() if t.kind != "input" or t.out.exists()}
        if len(local) >= 2:
            on = spec.eval.tokenizers_on or next(iter(spec.corpora))
            if on not in self.corpora:
                self.problem("eval.tokenizers_on", f"unknown corpus '{on}'")
                return
            self.tokenizer_comparison = self.add(Stage(
                "compare", f"tokenizers on {on}", out / "results" / "tokenizers", {"on": on},
                [*local.values(), self.corpora[on]],
                lambda st, ts=local, c=self.corpora[on]: act_tokenizer_compare(st, [t.out for t in ts.values()], c.out),
            ))  # fmt: skip

    # --- running ---

    def status(self) -> list[tuple[Stage, str]]:
        """Each stage: cached (output there, key matches), or what would run."""
        out = []
        done: set[int] = set()
        for st in self.stages:
            ready = all(
                id(d) in done or (d.kind == "input" and all(id(x) in done for x in d.deps))
                for d in st.deps
            )
            if ready and st.out.exists() and st.recorded_key() == st.compute_key():
                done.add(id(st))
                out.append((st, "cached"))
            else:
                out.append((st, "run"))
        return out

    def execute(self) -> dict:
        n = len(self.stages)
        t_all = time.time()
        ran = 0
        for k, st in enumerate(self.stages, 1):
            st.key = st.compute_key()
            if st.out.exists() and st.recorded_key() == st.key:
                console.print(f"[dim][{k}/{n}] {st.label}: up to date[/]", highlight=False)
                continue
            console.print(f"[bold][{k}/{n}] {st.label}[/]", highlight=False)
            t0 = time.time()
            st.action(st)
            st.forget_output()
            write_json(st.out / STAGE_FILE, {"key": st.key, "kind": st.kind, "config": st.config,
                                             "inputs": st.inputs(), "wall_s": time.time() - t0})  # fmt: skip
            ran += 1
        manifest = self.manifest()
        write_json(self.out / "experiment.json", manifest)
        info(
            f"{self.spec.name}: {ran} of {n} stages ran, {n - ran} up to date, in {time.time() - t_all:.0f} s -> {self.out}"
        )
        return manifest

    def manifest(self) -> dict:
        """experiment.json: every output's path, for the report."""
        spec = self.spec
        benches = {}
        for name, b in self.benchmarks.items():
            bs = spec.benchmarks[name]
            ceilings = None
            if bs.corpus is not None and (self.synth[bs.corpus].out / "ceilings.json").is_file():
                ceilings = str(self.synth[bs.corpus].out / "ceilings.json")
            benches[name] = {"path": str(b.out), "template": bs.template, "ceilings": ceilings,
                             "ceilings_key": Path(bs.file).stem}  # fmt: skip
        return {
            "format": "expertlm.experiment/1", "name": spec.name, "description": spec.description,
            "file": str(self.file), "out": str(self.out),
            "corpora": {n: str(s.out) for n, s in self.corpora.items()},
            "tokenizers": {n: str(s.out) for n, s in self.tokenizers.items()},
            "benchmarks": benches,
            "humans": str(self.humans.out) if self.humans else None,
            "downloads": {n: str(s.out) for n, s in self.downloads.items()},
            "tokenizer_comparison": str(self.tokenizer_comparison.out / "tokenizers.json") if self.tokenizer_comparison else None,
            "variants": [
                {"name": n, "label": vp.spec.label or n, "tokenizer": vp.spec.tokenizer, "init": vp.spec.init,
                 "data": vp.spec.data, "trained": vp.spec.train is not None and vp.spec.merge is None,
                 "merge": vp.spec.merge, "preset": vp.spec.preset,
                 "seeds": {str(s): {"model": str(m.out),
                                    "results": {b: str(r.out) for b, r in vp.results.get(s, {}).items()},
                                    "ppl": {c: str(r.out) for c, r in vp.ppl.get(s, {}).items()}}
                           for s, m in vp.models.items()}}
                for n, vp in self.variants.items()
            ],
            "provenance": provenance(),
        }  # fmt: skip
