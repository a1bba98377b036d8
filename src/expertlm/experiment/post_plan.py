"""Post-training in an experiment, planned for `plan.Plan`: the datasets variants fine-tune on
(`datasets:`), the data of a variant trained with `objective: sft|dpo|orpo`, and merges written
as mergekit recipes (`merge: {recipe: ...}`).

    datasets:
      sft: {corpus: domain, file: sft.jsonl}              # corpus synth --posttrain-items
      prefs: {corpus: domain, file: preferences.jsonl}
      pairs: {make: {corpus: domain, after: 2022}}         # bench make --pairs
      mine: {path: data/chat.jsonl}                        # SFT or preference JSONL
    variants:
      - {name: sft, init: variant:cpt, data: sft, train: {objective: sft, epochs: 1}}
      - {name: dpo, init: variant:sft, data: prefs, train: {objective: dpo, beta: 0.05}}
      - name: dpo-slerp
        merge: {recipe: {merge_method: slerp, base_model: sft,
                         slices: [{sources: [{model: sft, layer_range: [0, 4]},
                                             {model: dpo, layer_range: [0, 4]}]}],
                         parameters: {t: [{filter: attn, value: [0, 0.5, 0.3, 0.7, 1]},
                                          {filter: mlp, value: [1, 0.5, 0.7, 0.3, 0]},
                                          {value: 0.5}]}}}

Each dataset is SFT examples or preference pairs (`SFT`, `PREFERENCE`), known from where it
comes from (a synthetic field's sft.jsonl / preferences.jsonl, bench make's pairs.jsonl) or read
from a given file's first record, so a variant that would train sft on pairs, or dpo on SFT
examples, is refused before any compute, under its key.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from expertlm.errors import ExpertlmError
from expertlm.experiment import make_plan
from expertlm.experiment.stages import Stage, external, within
from expertlm.io import jsonl_rows
from expertlm.synth.posttrain import PREFERENCE_FILE, SFT_FILE

if TYPE_CHECKING:
    from expertlm.experiment.plan import Plan, VariantPlan
    from expertlm.experiment.spec import DatasetSpec, VariantSpec

SFT, PREFERENCE = "SFT examples", "preference pairs"
POST_OBJECTIVES = {"sft": SFT, "dpo": PREFERENCE, "orpo": PREFERENCE}
SYNTH_FILES = {SFT_FILE: SFT, PREFERENCE_FILE: PREFERENCE}
PAIRS_FILE = "pairs.jsonl"  # bench make --pairs


def _kind_of_file(p: Path) -> str | None:
    """SFT or PREFERENCE from a JSONL file's first record (None: neither, or not JSON Lines)."""
    try:
        rec = next((obj for _, obj in jsonl_rows(p)), None)
    except ExpertlmError:
        return None
    if rec is None:
        return None
    if "chosen" in rec and "rejected" in rec:
        return PREFERENCE
    return SFT if "messages" in rec or "completion" in rec else None


def plan_dataset(plan: Plan, name: str, d: DatasetSpec, raw: dict) -> None:
    """`plan.datasets[name]` = (the file's stage, its kind), or a problem under its key."""
    key = f"datasets.{name}"
    if name in plan.spec.corpora:
        plan.problem(key, f"'{name}' is also a corpus: a variant's data names one or the other")
    if d.make is not None:
        if d.file not in (None, PAIRS_FILE):
            plan.problem(f"{key}.file", f"'{d.file}': bench make --pairs writes {PAIRS_FILE}")
        stage = make_plan.plan_make(plan, name, d, raw, pairs=True)
        plan.datasets[name] = (within(stage, PAIRS_FILE, f"dataset {name}"), PREFERENCE)
    elif d.corpus is not None:
        owner = plan.synth.get(d.corpus)
        if owner is None:
            plan.problem(f"{key}.corpus", f"'{d.corpus}' is not a synthetic corpus of the experiment")
            return
        if d.file not in SYNTH_FILES:
            plan.problem(f"{key}.file", f"'{d.file}': a synthetic corpus writes {' and '.join(SYNTH_FILES)} "
                         "(give file: one of them)")  # fmt: skip
            return
        if not owner.options.get("posttrain_items"):
            plan.problem(f"{key}.corpus", f"corpus '{d.corpus}' writes no post-training data: set "
                         f"corpora.{d.corpus}.synth.posttrain_items")  # fmt: skip
        plan.datasets[name] = (within(owner, d.file, f"dataset {name}"), SYNTH_FILES[d.file])
    else:
        p = plan.path(d.path)
        if d.file is not None:
            plan.problem(f"{key}.file", "file names a file of a synthetic corpus or of bench make, not of a path")
        if not p.is_file():
            plan.problem(f"{key}.path", f"{p}: no such file")
            return
        kind = _kind_of_file(p)
        if kind is None:
            plan.problem(f"{key}.path", f"{p}: the first record is neither SFT (messages, or prompt "
                         "and completion) nor a preference pair (prompt, chosen, rejected)")  # fmt: skip
            return
        plan.datasets[name] = (external(f"dataset {name}", p, "file"), kind)


def objective(v: VariantSpec) -> str:
    """The variant's training objective as written (clm when it names none)."""
    return (v.train or {}).get("objective", "clm")


def train_data(plan: Plan, key: str, v: VariantSpec) -> Stage | None:
    """The JSONL file a post-training variant (objective sft, dpo, orpo) trains on, or None
    with the problem under its key."""
    obj = objective(v)
    need = POST_OBJECTIVES[obj]
    known = ", ".join(plan.spec.datasets) or "none"
    if v.data is None:
        plan.problem(f"{key}.data", f"objective {obj} trains on a dataset of {need} (datasets: {known})")
        return None
    if v.data not in plan.spec.datasets:
        what = f"'{v.data}' is a corpus" if v.data in plan.spec.corpora else f"unknown dataset '{v.data}'"
        plan.problem(f"{key}.data", f"{what}: objective {obj} trains on a dataset of {need} (datasets: {known})")
        return None
    if v.data not in plan.datasets:
        return None  # reported under datasets
    stage, kind = plan.datasets[v.data]
    if kind != need:
        plan.problem(f"{key}.data", f"dataset '{v.data}' holds {kind}: objective {obj} needs {need}")
        return None
    return stage


def recipe_merge(plan: Plan, key: str, v: VariantSpec, vp: VariantPlan) -> None:
    """A merge variant given as a mergekit recipe whose models are variant names: the recipe is
    checked as `merge --config` checks it, and each seed's stage gets the recipe with the names
    replaced by the models' folders."""
    from expertlm.errors import ExpertlmError
    from expertlm.recipe import parse_recipe

    extra = sorted(set(v.merge) - {"recipe"})
    if extra:
        plan.problem(f"{key}.merge.{extra[0]}", "a recipe merge takes the recipe alone (its "
                     "merge_method and parameters say the rest)")  # fmt: skip
    raw = v.merge["recipe"]
    if not isinstance(raw, dict):
        plan.problem(f"{key}.merge.recipe", "expected a mergekit recipe (a mapping)")
        return
    try:
        recipe = parse_recipe(raw, plan.file)
    except ExpertlmError as e:
        msg = str(e).removeprefix(f"{plan.file}: ")
        inner, sep, rest = msg.removeprefix("key '").partition("': ")
        if msg.startswith("key '") and sep:
            plan.problem(f"{key}.merge.recipe.{inner}", rest)
        else:
            plan.problem(f"{key}.merge.recipe", msg)
        return
    names = recipe.models
    parents = {n: plan.variants.get(n) for n in names}
    unknown = [n for n, p in parents.items() if p is None]
    if unknown:
        plan.problem(f"{key}.merge.recipe", f"unknown variant '{unknown[0]}' (the recipe's models are "
                     f"variant names: {', '.join(x.name for x in plan.spec.variants)})")  # fmt: skip
        return
    if any(not p.models for p in parents.values()):
        return  # reported: broken variants
    if len({id(p.tokenizer) for p in parents.values()}) > 1:
        plan.problem(f"{key}.merge.recipe", "merged models must share one tokenizer: " + ", ".join(names))
        return
    if v.train not in ({}, None) or v.data is not None:
        plan.problem(f"{key}.merge", "a merged variant is not trained (leave out train and data)")
    vp.tokenizer = parents[names[0]].tokenizer
    for seed in vp.seeds:
        models = [parents[n].model_for(seed) for n in names]
        paths = {n: str(m.out) for n, m in zip(names, models, strict=True)}
        vp.models[seed] = plan.add("merge_recipe", f"merge {v.name} seed {seed}",
                                   plan.out / "runs" / v.name / f"seed-{seed}",
                                   {"recipe": _renamed_recipe(raw, paths)}, {"models": models})  # fmt: skip


def recipe_names(raw) -> list[str]:
    """The model names a recipe mentions (for the variants' order; checked by `recipe_merge`)."""
    if isinstance(raw, dict):
        own = [v for k, v in raw.items() if k in ("model", "base_model") and isinstance(v, str)]
        if isinstance(raw.get("models"), list):
            own += [m for m in raw["models"] if isinstance(m, str)]
        return own + [n for k, v in raw.items() for n in recipe_names(v)]
    if isinstance(raw, list):
        return [n for x in raw for n in recipe_names(x)]
    return []


def _renamed(node, paths: dict[str, str]):
    """The recipe with every model reference (model, base_model, tokenizer_source) that names a
    variant replaced by its folder."""
    if isinstance(node, dict):
        return {k: (paths.get(v, v) if k in ("model", "base_model", "tokenizer_source") and isinstance(v, str)
                    else _renamed(v, paths)) for k, v in node.items()}  # fmt: skip
    if isinstance(node, list):
        return [_renamed(x, paths) for x in node]
    return node


def _renamed_recipe(raw: dict, paths: dict[str, str]) -> dict:
    out = _renamed(raw, paths)
    if isinstance(out.get("models"), list):  # the short form: models: [name, ...]
        out["models"] = [paths.get(m, m) if isinstance(m, str) else m for m in out["models"]]
    return out
