"""Benchmarks an experiment makes with `bench make` (`benchmarks: {b: {make: {...}}}`), planned
for `plan.Plan`, and the dependency order of a plan's stages.

    benchmarks:
      forward:
        make: {corpus: papers, after: 2022, decontam: [train], tokenizer: [domain]}

`corpus` is a corpus of the experiment (its sources, before `corpus build` filters them by year:
the papers after the cutoff are what the benchmark is made of; a `path:` corpus as it is) or a
path to a corpus folder or a .jsonl(.gz) file of documents, or a list of these; `decontam`
names the experiment's corpora (built) or paths to decontaminate against; `tokenizer` names
its tokenizers (or paths) to count tokens with; every other key is an option of `bench make`
(`config.BenchMakeConfig`), checked by it under its key. The stage's benchmark file (`file`,
benchmark.csv by default) is what the variants are scored on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from expertlm import config
from expertlm.experiment.stages import Stage, external, within

if TYPE_CHECKING:
    from expertlm.experiment.plan import Plan
    from expertlm.experiment.spec import BenchmarkSpec, DatasetSpec

REFERENCES = ("corpus", "decontam", "tokenizer")  # the keys of `make` that are not options


def _listed(v) -> list:
    return v if isinstance(v, list) else [] if v is None else [v]


def plan_make(plan: Plan, name: str, b: BenchmarkSpec | DatasetSpec, raw: dict,
              pairs: bool = False) -> Stage:  # fmt: skip
    """The `bench_make` stage of benchmark `name` (its problems reported under its keys), or
    with `pairs` of dataset `name` (preference pairs, `bench make --pairs`). Corpora to
    decontaminate against and tokenizers are resolved by `finish_make`, once the plan has built
    them."""
    section = "datasets" if pairs else "benchmarks"
    key = f"{section}.{name}.make"
    make = dict(b.make)
    refs = {k: _listed(make.pop(k, None)) for k in REFERENCES}
    if pairs:
        make.setdefault("pairs", True)
    opts = plan.options(config.BenchMakeConfig, make, key)
    if opts.get("pairs") and not pairs:
        plan.problem(f"{key}.pairs", "a benchmark to score on is not made of preference pairs "
                     "(make them under datasets: for training)")  # fmt: skip
    if pairs and not opts.get("pairs"):
        plan.problem(f"{key}.pairs", "a dataset made by bench make is its preference pairs (pairs: true)")
    if not pairs and b.file not in ("benchmark.csv", "benchmark.jsonl"):
        plan.problem(f"benchmarks.{name}.file", f"'{b.file}': bench make writes benchmark.csv and benchmark.jsonl")
    if not refs["corpus"]:
        plan.problem(f"{key}.corpus", "the documents to make it from: a corpus of the experiment or a path")
    sources: list[Stage] = []
    for j, ref in enumerate(refs["corpus"]):
        where = f"{key}.corpus" + (f".{j}" if isinstance(b.make.get("corpus"), list) else "")
        if ref in plan.spec.corpora:
            sources += raw[ref][0] if raw[ref] is not None else [plan.corpora[ref]]
        elif isinstance(ref, str) and plan.path(ref).exists():
            sources.append(external(f"documents {ref}", plan.path(ref), "sources"))
        else:
            plan.problem(where, f"'{ref}': not a corpus of the experiment ({', '.join(plan.spec.corpora)}) "
                         f"and no such file or folder")  # fmt: skip
    stage = plan.add("bench_make", f"make {'pairs' if pairs else 'benchmark'} {name}",
                     plan.out / section / name, opts, {"sources": sources})  # fmt: skip
    plan._pending_make.append((key, stage, refs))
    return stage


def finish_make(plan: Plan) -> None:
    """Give each made benchmark the corpora and tokenizers it names (now that they exist)."""
    for key, stage, refs in plan._pending_make:
        for what, known, artifact, param in (("decontam", plan.corpora, "corpus", "decontam"),
                                             ("tokenizer", plan.tokenizers, "tokenizer", "tokenizers")):  # fmt: skip
            found = []
            for ref in refs[what]:
                if ref in known:
                    found.append(known[ref])
                elif isinstance(ref, str) and plan.path(ref).exists():
                    found.append(external(f"{what} {ref}", plan.path(ref), artifact))
                else:
                    plan.problem(f"{key}.{what}", f"'{ref}': not a {'corpus' if what == 'decontam' else what} "
                                 f"of the experiment ({', '.join(known) or 'none'}) and no such path")  # fmt: skip
            if found:
                stage.inputs[param] = found


def made_file(stage: Stage, b: BenchmarkSpec, name: str) -> Stage:
    return within(stage, b.file, f"benchmark {name}")


def dependency_order(plan: Plan) -> None:
    """Reorder `plan.stages` so that every stage comes after what it needs (stable: a plan
    already in order stays as it is); a cycle is a problem under the made benchmark's key."""
    planned = {id(s) for s in plan.stages}
    order: list[Stage] = []
    state: dict[int, int] = {}  # 1: being visited, 2: placed

    def visit(s: Stage, chain: list[str]) -> None:
        if state.get(id(s)) == 2:
            return
        if state.get(id(s)) == 1:
            made = next((c for c in chain if c.startswith("make benchmark ")), chain[0])
            plan.problem(f"benchmarks.{made.removeprefix('make benchmark ')}.make.decontam",
                         "stages need each other in a cycle: " + " -> ".join(chain))
            return
        state[id(s)] = 1
        for d in s.deps:
            visit(d, [*chain, d.label])
        state[id(s)] = 2
        if id(s) in planned:
            order.append(s)

    for s in list(plan.stages):
        visit(s, [s.label])
    plan.stages[:] = order
