"""Corpora carved out of general text in an experiment, and the checks of its compute panel.

- `corpora: {web: {web: {...}}}`: a synthetic mixed web corpus (`corpus web`), then built
  (`corpus build`) like any other source;
- `classifiers: {clf: {positive: [corpora], negative: [corpora], options}}`: `classifier train`;
- `corpora: {field: {filter: {corpus: web, classifier: clf, ...}}}`: `corpus filter` of a
  planned corpus with a planned classifier; its output is the corpus folder itself;
- `eval.checkpoints` (every trained variant scored at its checkpoints) and `eval.compute` (the
  report's compute-effectiveness and forgetting panel: `experiment/compute.py`), checked here
  before any compute.

`plan.py` calls `sources`, `plan_filters` and `check_compute`; the stages are the registry's.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from expertlm import config
from expertlm.experiment.stages import within
from expertlm.synth.config import WebConfig
from expertlm.synth.web import WEB

if TYPE_CHECKING:
    from expertlm.experiment.plan import Plan
    from expertlm.experiment.spec import CorpusSpec


def sources(plan: Plan, name: str, c: CorpusSpec):
    """A web corpus: its `corpus web` stage's file and the build options; a filtered corpus:
    None (planned by `plan_filters`, once the corpora it reads are)."""
    if c.filter is not None:
        return None
    opts = plan.options(WebConfig, dict(c.web), f"corpora.{name}.web")
    web = plan.add("corpus_web", f"web {name}", plan.out / "sources" / name, opts)
    return [within(web, WEB, f"web {name} file")], dict(c.build)


def plan_filters(plan: Plan) -> None:
    """The classifiers, then every filtered corpus (in file order: one may filter another)."""
    spec = plan.spec
    plan.classifiers = {}
    for name, k in spec.classifiers.items():
        key = f"classifiers.{name}"
        sides = {}
        for side in ("positive", "negative"):
            sides[side] = [plan.corpora[c] for c in getattr(k, side) if c in plan.corpora]
            for c in getattr(k, side):
                if c not in plan.corpora:
                    plan.problem(f"{key}.{side}", _unknown_corpus(plan, c))
            if not getattr(k, side):
                plan.problem(f"{key}.{side}", "give at least one corpus")
        opts = plan.options(config.ClassifierConfig, dict(k.options), f"{key}.options")
        plan.classifiers[name] = plan.add("classifier_train", f"classifier {name}",
                                          plan.out / "classifiers" / name, opts, sides)  # fmt: skip
    for name, c in spec.corpora.items():
        if c.filter is None:
            continue
        key = f"corpora.{name}.filter"
        opts = dict(c.filter)
        source, clf = opts.pop("corpus", None), opts.pop("classifier", None)
        if source not in plan.corpora:
            plan.problem(f"{key}.corpus", _unknown_corpus(plan, source) if source else
                         "the corpus to filter (a corpus name) is required")  # fmt: skip
        if clf not in plan.classifiers:
            known = ", ".join(plan.classifiers) or "none"
            plan.problem(f"{key}.classifier", f"unknown classifier '{clf}' (classifiers: {known})"
                         if clf else f"a classifier name is required (classifiers: {known})")  # fmt: skip
        if c.build or c.decontam:
            plan.problem(f"corpora.{name}", "a filtered corpus is not built (filter a built corpus: "
                         "its build and decontam apply)")  # fmt: skip
        plan.options(config.FilterConfig, opts, key)
        if source in plan.corpora and clf in plan.classifiers:
            plan.corpora[name] = plan.add(
                "corpus_filter", f"filter {name}", plan.out / "corpora" / name, opts,
                {"sources": [plan.corpora[source]], "classifier": plan.classifiers[clf]})  # fmt: skip


def _unknown_corpus(plan: Plan, name: str) -> str:
    return f"unknown corpus '{name}' (corpora planned before it: {', '.join(plan.corpora) or 'none'})"


def scored_at_checkpoints(plan: Plan, vp) -> bool:
    """Is this variant's model scored at every checkpoint (eval.checkpoints; trained, not LoRA)?"""
    v = vp.spec
    return (plan.spec.eval.checkpoints is not None and v.train is not None and v.merge is None
            and not (v.train or {}).get("lora"))  # fmt: skip


def check_compute(plan: Plan) -> None:
    """eval.checkpoints and eval.compute, before any compute: every checkpoint kept, the
    panel's names known, each size's two variants continued from its base."""
    spec = plan.spec
    ev = spec.eval
    if ev.checkpoints is not None:
        plan.options(config.CheckpointOptions, {"checkpoints": ev.checkpoints}, "eval")
        index = {v.name: i for i, v in enumerate(spec.variants)}
        for name, vp in plan.variants.items():
            if not scored_at_checkpoints(plan, vp):
                continue
            for st in {id(s): s for s in vp.models.values() if s.kind == "train"}.values():
                wanted = _checkpoints_written(st.options)
                keep = st.options.get("keep_last", config.TrainConfig.model_fields["keep_last"].default)
                if wanted is not None and keep < wanted:
                    plan.problem(f"variants.{index[name]}.train.keep_last",
                                 f"keeps {keep} of the {wanted} checkpoints eval.checkpoints "
                                 f"scores: set keep_last: {wanted} (or more)")  # fmt: skip
    c = ev.compute
    if c is None:
        return
    if ev.checkpoints is None:
        plan.problem("eval.compute", "needs eval.checkpoints (all or every:N): the panel plots "
                     "scores against FLOPs at every checkpoint")  # fmt: skip
    if c.benchmark not in spec.benchmarks:
        plan.problem("eval.compute.benchmark", f"unknown benchmark '{c.benchmark}'")
    elif ev.benchmarks is not None and c.benchmark not in ev.benchmarks:
        plan.problem("eval.compute.benchmark", f"'{c.benchmark}' is not in eval.benchmarks")
    for role in ("domain", "general"):
        if getattr(c, role) not in ev.ppl:
            plan.problem(f"eval.compute.{role}", f"'{getattr(c, role)}' is not in eval.ppl "
                         f"({', '.join(ev.ppl) or 'none'}): its bits per byte are what is plotted")  # fmt: skip
    variants = {v.name: v for v in spec.variants}
    for size, s in c.sizes.items():
        key = f"eval.compute.sizes.{size}"
        for role in ("base", "filtered", "unfiltered"):
            if getattr(s, role) not in variants:
                plan.problem(f"{key}.{role}", f"unknown variant '{getattr(s, role)}'")
        for role in ("filtered", "unfiltered"):
            v = variants.get(getattr(s, role))
            if v is not None and v.init != f"variant:{s.base}":
                plan.problem(f"{key}.{role}", f"'{v.name}' does not continue the base '{s.base}' "
                             f"(its init is {v.init}, not variant:{s.base})")  # fmt: skip
            elif v is not None and (v.train is None or v.merge is not None or (v.train or {}).get("lora")):
                plan.problem(f"{key}.{role}", f"'{v.name}' is not a trained (full-weight) variant")


def _checkpoints_written(train: dict) -> int | None:
    """Checkpoints a train stage writes, where its options say (max_steps, or max_tokens with
    a known batch); None when only the data or the model would tell."""
    every = train.get("ckpt_every_steps") or config.TrainConfig.model_fields["ckpt_every_steps"].default
    steps = train.get("max_steps")
    if steps is None and train.get("max_tokens"):
        batch = train.get("batch_tokens") or (
            train["context"] * train.get("micro_batch", 8) if train.get("context") else None
        )
        steps = math.ceil(train["max_tokens"] / batch) if batch else None
    return math.ceil(steps / every) if steps else None
