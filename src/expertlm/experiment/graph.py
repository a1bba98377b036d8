"""`expertlm run EXPERIMENT.yaml`: plan an experiment (`plan.py`), run the stages that are not up
to date (`stages.call`), and write `experiment.json`; `expertlm demo` is `run` on the bundled
synthetic experiment.

A stage is skipped when its folder exists and records the same key: the key is a hash of the
stage's options and of the content hashes of its inputs, so a re-run after a crash or an edit
redoes only what changed. Everything lands under one folder:

    OUT/sources/NAME/      synthetic fields (corpus synth), downloads (corpus pubmed)
    OUT/downloads/NAME/    published benchmarks (bench fetch)
    OUT/corpora/NAME/      corpora (corpus build, corpus filter)
    OUT/classifiers/NAME/  classifiers (classifier train)
    OUT/tokenizers/NAME/   tokenizers (tokenizer train)
    OUT/shards/CORPUS--TOKENIZER/
    OUT/runs/VARIANT/seed-S/          models (train; untrained variants are initialised only)
    OUT/results/VARIANT/seed-S/BENCH/ results (eval bench), ppl-CORPUS/ (eval ppl)
    OUT/results/humans/, OUT/results/tokenizers/tokenizers.json
    OUT/experiment.json    every output's path (what `report` reads)
    OUT/report/            the report
"""

from __future__ import annotations

import time
from pathlib import Path

from expertlm.config import DemoConfig, RunConfig
from expertlm.console import console, info
from expertlm.experiment.plan import Plan
from expertlm.experiment.spec import load_experiment
from expertlm.experiment.stages import STAGE_FILE, Stage, call
from expertlm.io import check_output, provenance, write_json


def plan_experiment(experiment: str | Path, *, out: str | Path | None = None,
                    profile: str | None = None, show_progress: bool = True) -> Plan:  # fmt: skip
    """The validated plan of an experiment file (nothing is computed)."""
    spec, base = load_experiment(experiment, profile)
    out_dir = Path(out) if out is not None else Path(spec.out or Path("runs") / spec.name)
    check_output(out_dir)
    return Plan(spec, base, Path(experiment), out_dir, show_progress)


def status(plan: Plan) -> list[tuple[Stage, str]]:
    """Each stage: cached (output there, key matches, every input up to date) or run."""
    out, done = [], set()
    for st in plan.stages:
        ready = all(id(d) in done or (d.kind == "input" and all(id(x) in done for x in d.deps))
                    for d in st.deps)  # fmt: skip
        if ready and Path(st.out).exists() and st.recorded_key() == st.compute_key():
            done.add(id(st))
            out.append((st, "cached"))
        else:
            out.append((st, "run"))
    return out


def execute(plan: Plan) -> dict:
    """Run every stage that is not up to date, in order; write experiment.json."""
    n, ran, t_all = len(plan.stages), 0, time.time()
    walls: dict[str, float] = {}  # stage kind -> seconds spent running it
    for k, st in enumerate(plan.stages, 1):
        st.key = st.compute_key()
        if Path(st.out).exists() and st.recorded_key() == st.key:
            console.print(f"[dim][{k}/{n}] {st.label}: up to date[/]", highlight=False)
            continue
        console.print(f"[bold][{k}/{n}] {st.label}[/]", highlight=False)
        t0 = time.time()
        call(st, plan.show_progress)
        st.forget_output()
        wall = time.time() - t0
        walls[st.kind] = walls.get(st.kind, 0.0) + wall
        ran += 1
        write_json(Path(st.out) / STAGE_FILE, {"key": st.key, "kind": st.kind, "options": st.options,
                   "inputs": {d.label: d.output_hash() for d in st.deps}, "wall_s": wall})  # fmt: skip
    result = manifest(plan)
    write_json(plan.out / "experiment.json", result)
    total = time.time() - t_all
    shares = ", ".join(f"{kind} {w / total:.0%}" for kind, w in sorted(walls.items(), key=lambda x: -x[1]))
    info(f"{plan.spec.name}: {ran} of {n} stages ran, {n - ran} up to date, in {total:.0f} s"
         f"{f' (by stage kind: {shares})' if shares else ''} -> {plan.out}")  # fmt: skip
    return result


def manifest(plan: Plan) -> dict:
    """experiment.json: every output's path, for the report."""
    spec = plan.spec
    benches = {}
    for name, b in plan.benchmarks.items():
        bs = spec.benchmarks[name]
        ceilings = None
        if bs.corpus is not None and (Path(plan.synth[bs.corpus].out) / "ceilings.json").is_file():
            ceilings = str(Path(plan.synth[bs.corpus].out) / "ceilings.json")
        benches[name] = {"path": str(b.out), "template": bs.template, "ceilings": ceilings,
                         "ceilings_key": Path(bs.file).stem}  # fmt: skip
    comparison = plan.tokenizer_comparison
    return {
        "format": "expertlm.experiment/1", "name": spec.name, "description": spec.description,
        "file": str(plan.file), "out": str(plan.out),
        "corpora": {n: str(s.out) for n, s in plan.corpora.items()},
        "tokenizers": {n: str(s.out) for n, s in plan.tokenizers.items()},
        "benchmarks": benches,
        "humans": str(plan.humans.out) if plan.humans else None,
        "downloads": {n: str(s.out) for n, s in plan.downloads.items()},
        "tokenizer_comparison": str(Path(comparison.out) / "tokenizers.json") if comparison else None,
        "checkpoints": spec.eval.checkpoints,  # the compute panel (experiment/compute.py)
        "compute": spec.eval.compute.model_dump() if spec.eval.compute else None,
        "variants": [
            {"name": n, "label": vp.spec.label or n, "tokenizer": vp.spec.tokenizer, "init": vp.spec.init,
             "data": vp.spec.data, "trained": vp.spec.train is not None and vp.spec.merge is None,
             "merge": vp.spec.merge, "preset": vp.spec.preset,
             "seeds": {str(s): {"model": str(m.out),
                                "results": {b: str(r.out) for b, r in vp.results.get(s, {}).items()},
                                "ppl": {c: str(r.out) for c, r in vp.ppl.get(s, {}).items()}}
                       for s, m in vp.models.items()}}
            for n, vp in plan.variants.items()
        ],
        "provenance": provenance(),
    }  # fmt: skip


def run(experiment: str | Path, *, out: str | Path | None = None, show_progress: bool = True,
        **options) -> dict:  # fmt: skip
    """Run (or with `dry_run`, validate and print the plan of) an experiment file into `out`
    (default: runs/NAME). `options` are the fields of `RunConfig` (profile, dry_run, report)."""
    cfg = RunConfig.from_options(options)
    plan = plan_experiment(experiment, out=out, profile=cfg.profile, show_progress=show_progress)
    if cfg.dry_run:
        from expertlm.experiment.budget import print_plan

        return print_plan(plan)
    result = execute(plan)
    if cfg.report:
        from expertlm.experiment.report import report

        report(plan.out, show_progress=show_progress)
    return result


def demo(out: str | Path = "runs/demo", *, show_progress: bool = True, **options) -> dict:
    """The paper's experiment on the bundled synthetic field, offline, with its report
    (`options`: the fields of `DemoConfig`)."""
    from importlib import resources

    t0 = time.time()
    quick = DemoConfig.from_options(options).quick
    cfg = resources.files("expertlm") / "configs" / "demo.yaml"
    with resources.as_file(cfg) as path:
        result = run(path, out=out, profile="quick" if quick else None, show_progress=show_progress)
    info(f"demo: {time.time() - t0:.0f} s from start to report: {Path(out) / 'report' / 'index.html'}")
    return result
