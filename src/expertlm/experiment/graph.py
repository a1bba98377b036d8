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

import json
import time
import traceback
from collections import Counter
from multiprocessing import connection
from pathlib import Path
from typing import Any

from expertlm.config import COMMAND_LINE, DemoConfig, RunConfig
from expertlm.console import console, count_progress, info
from expertlm.corpus.scan import start_method
from expertlm.encode import available_cpus
from expertlm.errors import ExpertlmError
from expertlm.experiment.plan import Plan
from expertlm.experiment.spec import load_experiment
from expertlm.experiment.stages import REGISTRY, STAGE_FILE, Stage, call, finished, invoke, prepare
from expertlm.io import check_output, provenance, write_json
from expertlm.lifeline import Lifeline, hold


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


def execute(plan: Plan, jobs: int = 1) -> dict:
    """Run every stage that is not up to date, a stage as soon as its inputs are (at most
    `jobs` at once, each in its own process sharing out the cores, when `jobs` > 1; in this
    process, in order, with progress bars, when 1); write experiment.json."""
    n, t_all = len(plan.stages), time.time()
    number = {id(st): k for k, st in enumerate(plan.stages, 1)}
    walls: dict[str, float] = {}  # stage kind -> seconds spent running it
    done: set[int] = set()
    ran = 0

    def ready(st: Stage) -> bool:
        return all(id(d) in done or (d.kind == "input" and ready(d)) for d in st.deps)

    def up_to_date(st: Stage) -> bool:
        st.key = st.compute_key()
        if Path(st.out).exists() and st.recorded_key() == st.key:
            console.print(f"[dim][{number[id(st)]}/{n}] {st.label}: up to date[/]", highlight=False)
            done.add(id(st))
            return True
        return False

    def record(st: Stage, wall: float) -> None:
        nonlocal ran
        st.forget_output()
        walls[st.kind] = walls.get(st.kind, 0.0) + wall
        ran += 1
        done.add(id(st))
        write_json(Path(st.out) / STAGE_FILE, {"key": st.key, "kind": st.kind, "options": st.options,
                   "inputs": {d.label: d.output_hash() for d in st.deps}, "wall_s": wall})  # fmt: skip

    if jobs <= 1:
        for st in plan.stages:
            if up_to_date(st):
                continue
            console.print(f"[bold][{number[id(st)]}/{n}] {st.label}[/]", highlight=False)
            t0 = time.time()
            call(st, plan.show_progress)
            record(st, time.time() - t0)
    else:
        kinds = {st.kind for st in plan.stages}
        with Jobs(jobs, plan.show_progress, kinds) as pool:
            todo = list(plan.stages)
            while todo or pool.running:
                launched = True
                while launched:  # what is ready, in plan order, while a job is free
                    launched = False
                    for st in [s for s in todo if ready(s)]:
                        todo.remove(st)
                        launched = True
                        if not up_to_date(st):
                            pool.start(st, f"[{number[id(st)]}/{n}] {st.label}")
                        if len(pool.running) >= jobs:
                            launched = False
                            break
                if not pool.running:
                    if todo:  # (a plan bug)
                        raise RuntimeError(f"no stage can start: {[s.label for s in todo]}")
                    break
                for st, wall in pool.wait():
                    record(st, wall)
    result = manifest(plan)
    write_json(plan.out / "experiment.json", result)
    total = time.time() - t_all
    busy = sum(walls.values()) if jobs > 1 else total  # (stages overlap when jobs > 1)
    shares = ", ".join(f"{kind} {w / busy:.0%}" for kind, w in sorted(walls.items(), key=lambda x: -x[1]))
    of = f" of {busy:.0f} s of stage time in {jobs} jobs" if jobs > 1 else ""
    info(f"{plan.spec.name}: {ran} of {n} stages ran, {n - ran} up to date, in {total:.0f} s"
         f"{f' (by stage kind{of}: {shares})' if shares else ''} -> {plan.out}")  # fmt: skip
    return result


def default_jobs(plan: Plan) -> int:
    """`--jobs 0`: one job per core where training runs on the CPU, up to the trainings that can
    run side by side (more jobs would only take threads from them); one where a GPU does it."""
    import torch

    if torch.cuda.is_available() or (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        return 1
    return max(1, min(available_cpus(), training_width(plan)))


def training_width(plan: Plan) -> int:
    """How many of the plan's trainings can run at once: the most at one depth, a training's
    depth being the number of trainings along its longest chain of inputs, itself included."""
    depth: dict[int, int] = {}  # id(stage) -> its depth

    def chain(st: Stage) -> int:
        if id(st) not in depth:
            depth[id(st)] = max((chain(d) for d in st.deps), default=0) + (st.kind == "train")
        return depth[id(st)]

    levels = Counter(chain(st) for st in plan.stages if st.kind == "train")
    return max(levels.values(), default=1)


class Jobs:
    """Stages running in processes of their own (`start`, then `wait` for those that end): each
    gets cores // jobs torch threads (a fixed share, so that the numbers do not depend on which
    stages happened to run together). The first failure ends the others (a stage that resumes
    continues where it was on the next run) and is raised once they are gone. A job also ends
    when this process is gone, however it ended (`kill -9` included: `lifeline`), so no
    training goes on alone after `expertlm run` is stopped."""

    def __init__(self, jobs: int, show_progress: bool, kinds: set[str]) -> None:
        self.threads = max(1, available_cpus() // jobs)
        self.running: dict[int, tuple[Stage, Any, Any, float, Any]] = {}  # sentinel -> ...
        # the fork server imports, once, what the stages would each import (seconds of a core)
        modules = sorted({REGISTRY[k].function.partition(":")[0] for k in kinds})
        self._ctx = start_method("expertlm.experiment.graph", *modules, "transformers.models.gpt2.modeling_gpt2")
        self._bars = count_progress(show_progress)
        self._bars.__enter__()
        self._failure: BaseException | None = None
        self._lifeline = Lifeline(self._ctx)  # the jobs end with this process, even on kill -9

    def start(self, st: Stage, label: str) -> None:
        kind, kwargs = prepare(st, show_progress=False)
        mine, theirs = self._ctx.Pipe(duplex=False)
        proc = self._ctx.Process(target=_job, args=(theirs, kind, kwargs, self.threads, COMMAND_LINE.get(),
                                                    self._lifeline.end), name=st.label)  # fmt: skip
        proc.start()
        theirs.close()
        total = st.options.get("max_tokens") if st.kind == "train" else None
        task = self._bars.add_task(label, total=total)
        self.running[proc.sentinel] = (st, proc, mine, time.time(), task)
        console.print(f"[bold]{label}[/] started", highlight=False)

    def wait(self) -> list[tuple[Stage, float]]:
        """The stages that ended (waits for one), each with its wall time; raises a failure."""
        while True:
            ended = connection.wait(list(self.running), timeout=2.0)
            self._update()
            if ended:
                break
        out = []
        for sentinel in ended:
            st, proc, conn, t0, task = self.running.pop(sentinel)
            proc.join()
            message = conn.recv() if conn.poll() else None
            conn.close()
            self._bars.remove_task(task)
            if message is None and proc.exitcode == 0:
                finished(st)
                wall = time.time() - t0
                console.print(f"{st.label}: done in {wall:.0f} s", highlight=False)
                out.append((st, wall))
                continue
            self._fail(st, proc.exitcode, message)
        return out

    def _update(self) -> None:
        for st, _proc, _conn, _t0, task in self.running.values():
            if st.kind == "train":
                out = Path(st.out)  # (a new run trains in a temporary folder beside it)
                tokens = _last_tokens([out, *out.parent.glob(f".{out.name}.tmp-*")])
                if tokens is not None:
                    self._bars.update(task, completed=tokens)

    def _fail(self, st: Stage, exitcode: int | None, message: tuple[str, str] | None) -> None:
        if message is not None and message[0] == "user":
            error: BaseException = ExpertlmError(message[1])
        elif message is not None:
            error = RuntimeError(f"{st.label} failed:\n{message[1]}")
        else:
            error = ExpertlmError(f"{st.label}: its process ended with exit code {exitcode} "
                                  "(killed?); run again to continue")  # fmt: skip
        self._stop_all()
        raise error

    def _stop_all(self) -> None:
        for _st, proc, _conn, _t0, _task in self.running.values():
            proc.terminate()
        for _st, proc, conn, _t0, _task in self.running.values():
            proc.join()
            conn.close()
        self.running.clear()

    def __enter__(self) -> Jobs:
        return self

    def __exit__(self, *exc) -> None:
        self._stop_all()  # (after an interrupt or an error: nothing is left running)
        self._lifeline.close()
        self._bars.__exit__(*exc)


def _job(conn, kind: str, kwargs: dict, threads: int, command_line: bool, lifeline) -> None:
    """A stage in a process of its own: its result is its output folder; what comes back is
    None, or ("user", message) for an ExpertlmError, or ("bug", traceback)."""
    import torch

    hold(lifeline)  # ended by SIGTERM, as `Jobs` ends a job, when this process's parent is gone
    torch.set_num_threads(threads)
    COMMAND_LINE.set(command_line)
    try:
        invoke(kind, kwargs)
        conn.send(None)
    except ExpertlmError as e:
        conn.send(("user", str(e)))
    except KeyboardInterrupt:
        conn.send(("user", "interrupted; run again to continue"))
    except BaseException:
        conn.send(("bug", traceback.format_exc()))
    finally:
        conn.close()


def _last_tokens(folders: list[Path]) -> int | None:
    """Tokens trained so far: the last complete row of a running training's metrics.jsonl."""
    files = [f for f in (d / "metrics.jsonl" for d in folders) if f.is_file()]
    try:
        with open(max(files, key=lambda f: f.stat().st_mtime), "rb") as f:
            f.seek(max(0, f.seek(0, 2) - 4096))
            lines = f.read().splitlines()
    except (OSError, ValueError):  # (none yet, or it moved)
        return None
    for line in reversed(lines):
        try:
            return int(json.loads(line)["tokens"])
        except (ValueError, KeyError, TypeError):
            continue
    return None


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
    result = execute(plan, cfg.jobs or default_jobs(plan))
    if cfg.report:
        from expertlm.experiment.report import report

        report(plan.out, show_progress=show_progress)
    return result


def demo(out: str | Path = "runs/demo", *, show_progress: bool = True, **options) -> dict:
    """The paper's experiment on the bundled synthetic field, offline, with its report
    (`options`: the fields of `DemoConfig`)."""
    from importlib import resources

    t0 = time.time()
    cfg = DemoConfig.from_options(options)
    spec = resources.files("expertlm") / "configs" / "demo.yaml"
    with resources.as_file(spec) as path:
        result = run(path, out=out, profile="quick" if cfg.quick else None, jobs=cfg.jobs,
                     show_progress=show_progress)
    info(f"demo: {time.time() - t0:.0f} s from start to report: {Path(out) / 'report' / 'index.html'}")
    return result
