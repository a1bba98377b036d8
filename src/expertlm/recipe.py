"""mergekit's YAML recipes for `expertlm merge --config`: read, checked, and resolved tensor by
tensor exactly as mergekit resolves them (https://github.com/arcee-ai/mergekit).

A recipe names `merge_method` (linear, slerp, ties, task_arithmetic), the inputs as `models`
(`[{model, parameters}]`) or `slices` (`[{sources: [{model, layer_range: [a, b],
parameters}], base_model, parameters}]`), `base_model`, `parameters`, `dtype` (and
`out_dtype`, `tokenizer_source`). A parameter is a scalar, a gradient (a list of anchors
interpolated linearly across a slice's layers, layer i of n at t = i / (n - 1); the embeddings
and the final norm at t = 0), or a list of `{filter, value}` conditions, the first whose
`filter` is a substring of the tensor's name winning (`filter` left out: the default). As in
mergekit, a filter is matched against the model's own tensor names: GPT-2's attention is
`attn` (`transformer.h.N.attn.c_attn`), its MLP `mlp`; a Llama-style `self_attn` matches no
GPT-2 tensor (a warning says so). Precedence, highest first: the input's own parameters, the
slice's, the recipe's. Method parameters and defaults are mergekit's: linear `weight`
(required), `normalize` (true); slerp `t` (required; t = 0 is `base_model`); ties `weight`
(required), `density` (1), `lambda` (1), `normalize` (true); task_arithmetic `weight`,
`lambda` (1), `normalize` (false).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from expertlm.errors import ExpertlmError

REQUIRED = object()
_TASK = {"weight": ("input", float, REQUIRED), "density": ("input", float, 1.0),
         "lambda": ("shared", float, 1.0), "rescale": ("shared", bool, False),
         "int8_mask": ("shared", bool, False)}  # fmt: skip
# mergekit's parameters of each method: name -> (scope, type, default)
METHODS: dict[str, dict[str, tuple[str, type, Any]]] = {
    "linear": {"weight": ("input", float, REQUIRED), "normalize": ("shared", bool, True)},
    "slerp": {"t": ("shared", float, REQUIRED)},
    "ties": _TASK | {"normalize": ("shared", bool, True)},
    "task_arithmetic": _TASK | {"normalize": ("shared", bool, False)},
}
TOP_KEYS = ("merge_method", "models", "slices", "base_model", "parameters", "dtype",
            "out_dtype", "tokenizer_source")  # fmt: skip
DTYPES = {"float32": "float32", "fp32": "float32", "float16": "float16", "fp16": "float16",
          "bfloat16": "bfloat16", "bf16": "bfloat16", "float64": "float64"}  # fmt: skip
# a layer's tensor: GPT-2 transformer.h.N.*, Llama model.layers.N.*
LAYER = re.compile(r"^(?P<pre>(?:.*\.)?(?:h|layers|blocks)\.)(?P<i>\d+)\.(?P<rest>.+)$")


@dataclass
class SourceSlice:
    model: str
    layers: tuple[int, int] | None  # None: every layer (the `models` form)
    parameters: dict


@dataclass
class OutSlice:
    sources: list[SourceSlice]
    base: str | None
    parameters: dict


@dataclass
class Recipe:
    path: Path
    method: str
    slices: list[OutSlice]
    base: str | None
    parameters: dict
    dtype: str | None
    out_dtype: str | None
    raw: dict

    @property
    def models(self) -> list[str]:
        """Every model the recipe reads, in order of first mention (the base first)."""
        names = [self.base] if self.base else []
        for s in self.slices:
            names += [s.base] if s.base else []
            names += [src.model for src in s.sources]
        return list(dict.fromkeys(names))


def _fail(path: Path, key: str, msg: str) -> ExpertlmError:
    return ExpertlmError(f"{path}: key '{key}': {msg}")


def _only(d: Any, allowed: tuple[str, ...], path: Path, key: str) -> dict:
    if not isinstance(d, dict):
        raise _fail(path, key, f"expected a mapping with {', '.join(allowed)}")
    for k in d:
        if k not in allowed:
            where = f"{key}.{k}" if key else str(k)
            raise _fail(path, where, f"not supported by expertlm merge (supported here: "
                                     f"{', '.join(allowed)})")  # fmt: skip
    return d


def _check_setting(value: Any, path: Path, key: str) -> None:
    """A scalar, a list of scalars (a gradient), or a list of {filter, value} conditions."""
    scalar = (bool, int, float, str)
    if isinstance(value, scalar):
        return
    items = value if isinstance(value, list) else [value] if isinstance(value, dict) else None
    if items is None:
        raise _fail(
            path, key, f"expected a number, a list of numbers or filter conditions, got {value!r}"
        )
    if all(isinstance(v, scalar) for v in items):
        return
    for i, cond in enumerate(items):
        _only(cond, ("filter", "value"), path, f"{key}[{i}]")
        if "value" not in cond:
            raise _fail(path, f"{key}[{i}]", "a condition needs a 'value'")
        if cond.get("filter") is not None and not isinstance(cond["filter"], str):
            raise _fail(path, f"{key}[{i}].filter", "expected a string")
        if not (isinstance(cond["value"], scalar) or (isinstance(cond["value"], list)
                and all(isinstance(v, scalar) for v in cond["value"]))):  # fmt: skip
            raise _fail(path, f"{key}[{i}].value", "expected a number or a list of numbers")


def _parameters(d: Any, method: str, path: Path, key: str) -> dict:
    if d is None:
        return {}
    _only(d, tuple(METHODS[method]), path, key)
    for name, value in d.items():
        _check_setting(value, path, f"{key}.{name}")
    return d


def _model_ref(v: Any, path: Path, key: str) -> str:
    if not isinstance(v, str) or not v:
        raise _fail(path, key, "expected a model folder")
    if "+" in v and not Path(v).exists():
        raise _fail(path, key, f"{v!r}: LoRA references (model+adapter) are not supported; "
                               "merge the adapters first (expertlm export --merge-lora)")  # fmt: skip
    return v


def read_recipe(path: str | os.PathLike) -> Recipe:
    """A mergekit YAML recipe, checked: every key expertlm does not support is an error naming it."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ExpertlmError(f"{path}: no such file")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f"{path}:{mark.line + 1}" if mark is not None else f"{path}"
        raise ExpertlmError(f"{at}: not valid YAML ({getattr(e, 'problem', None) or e})") from None
    return parse_recipe(raw, path)


def parse_recipe(raw: Any, path: str | os.PathLike) -> Recipe:
    """A recipe already read (a mapping), checked as `read_recipe` checks a file; `path` names
    it in errors (an experiment's merge variant passes its file)."""
    path = Path(path)
    if not isinstance(raw, dict):
        raise ExpertlmError(f"{path}: expected a mergekit recipe (a mapping with merge_method, "
                            "models or slices, ...)")  # fmt: skip
    _only(raw, TOP_KEYS, path, "")
    method = raw.get("merge_method")
    if method not in METHODS:
        raise _fail(path, "merge_method", f"{method!r} is not one of {', '.join(METHODS)}")
    if ("models" in raw) == ("slices" in raw):
        raise ExpertlmError(f"{path}: give exactly one of 'models' or 'slices'")
    base = _model_ref(raw["base_model"], path, "base_model") if raw.get("base_model") else None
    slices = []
    if "models" in raw:
        if not isinstance(raw["models"], list) or not raw["models"]:
            raise _fail(path, "models", "expected a list of {model, parameters}")
        sources = []
        for i, m in enumerate(raw["models"]):
            m = {"model": m} if isinstance(m, str) else m
            _only(m, ("model", "parameters"), path, f"models[{i}]")
            sources.append(SourceSlice(_model_ref(m.get("model"), path, f"models[{i}].model"), None,
                                       _parameters(m.get("parameters"), method, path,
                                                   f"models[{i}].parameters")))  # fmt: skip
        slices.append(OutSlice(sources, None, {}))
    else:
        if not isinstance(raw["slices"], list) or not raw["slices"]:
            raise _fail(path, "slices", "expected a list of {sources: [...]}")
        for i, s in enumerate(raw["slices"]):
            _only(s, ("sources", "base_model", "parameters"), path, f"slices[{i}]")
            if not isinstance(s.get("sources"), list) or not s["sources"]:
                raise _fail(path, f"slices[{i}].sources", "expected a list of {model, layer_range}")
            sources = []
            for j, src in enumerate(s["sources"]):
                key = f"slices[{i}].sources[{j}]"
                _only(src, ("model", "layer_range", "parameters"), path, key)
                lr = src.get("layer_range")
                if not (isinstance(lr, list) and len(lr) == 2 and all(type(x) is int for x in lr)
                        and 0 <= lr[0] < lr[1]):  # fmt: skip
                    raise _fail(
                        path, f"{key}.layer_range", f"expected [first, end) layers, got {lr!r}"
                    )
                sources.append(SourceSlice(_model_ref(src.get("model"), path, f"{key}.model"),
                                           (lr[0], lr[1]), _parameters(src.get("parameters"), method,
                                                                       path, f"{key}.parameters")))  # fmt: skip
            lengths = {src.layers[1] - src.layers[0] for src in sources}  # type: ignore[index]
            if len(lengths) > 1:
                raise _fail(path, f"slices[{i}].sources", "every source of a slice must have the "
                                                          "same number of layers")  # fmt: skip
            sb = (
                _model_ref(s["base_model"], path, f"slices[{i}].base_model")
                if s.get("base_model")
                else None
            )
            slices.append(OutSlice(sources, sb, _parameters(s.get("parameters"), method, path,
                                                            f"slices[{i}].parameters")))  # fmt: skip
    dtypes = {}
    for k in ("dtype", "out_dtype"):
        if raw.get(k) is not None and raw[k] not in DTYPES:
            raise _fail(path, k, f"{raw[k]!r} is not one of {', '.join(DTYPES)}")
        dtypes[k] = DTYPES.get(raw.get(k))
    ts = raw.get("tokenizer_source")
    if ts is not None and not isinstance(ts, str):
        raise _fail(path, "tokenizer_source", "expected base, union or a model")
    recipe = Recipe(path, method, slices, base, _parameters(raw.get("parameters"), method, path,
                    "parameters"), dtypes["dtype"], dtypes["out_dtype"], raw)  # fmt: skip
    scopes = [recipe.parameters, *(s.parameters for s in recipe.slices),
              *(src.parameters for s in recipe.slices for src in s.sources)]  # fmt: skip
    if any(scope.get("rescale", False) is not False for scope in scopes):
        raise _fail(path, "parameters.rescale", "only false is supported (TIES without rescaling)")
    return recipe


# --- resolution: mergekit's evaluate_setting and resolve_parameter ---------------------------


def _validate(kind: type, value: Any) -> Any:
    from pydantic import TypeAdapter, ValidationError

    try:
        return TypeAdapter(kind).validate_python(value)
    except ValidationError:
        raise ExpertlmError(f"parameter value {value!r} is not a {kind.__name__}") from None


def evaluate(tensor: str, setting: Any, t: float, kind: type) -> Any:
    """mergekit's `evaluate_setting`: a scalar; a gradient's value at t (linear between the
    two nearest of its evenly spaced anchors); the first condition whose filter is in the
    tensor's name (None when none is)."""
    if isinstance(setting, dict):
        setting = [setting]
    if isinstance(setting, (bool, int, float, str)):
        return _validate(kind, setting)
    if not setting:
        return None
    if all(isinstance(e, (bool, int, float, str)) for e in setting):
        values = [_validate(kind, e) for e in setting]
        if not all(isinstance(e, (int, float)) and not isinstance(e, bool) for e in values):
            return values[int(t * (len(values) - 1))]
        scaled = t * (len(setting) - 1)
        i0 = int(scaled)
        i1 = min(len(setting) - 1, i0 + 1)
        frac = scaled - i0
        return _validate(kind, (1 - frac) * values[i0] + frac * values[i1])
    for cond in setting:
        f = cond.get("filter")
        if f is None or f == "*" or (tensor and f in tensor):
            return evaluate(tensor, cond["value"], t, kind)
    return None


def resolve(name: str, scopes: list[dict], tensor: str, t: float, method: str, where: str) -> Any:
    """mergekit's `resolve_parameter`: the first scope whose setting gives a value, else the
    default (a required parameter without one is an error)."""
    _, kind, default = METHODS[method][name]
    for scope in scopes:
        if name in scope:
            value = evaluate(tensor, scope[name], t, kind)
            if value is not None:
                return value
    if default is REQUIRED:
        raise ExpertlmError(f"parameter '{name}' is missing for {where} (mergekit requires it)")
    return default


def filters(recipe: Recipe) -> set[str]:
    """Every filter string the recipe's parameters use."""
    out: set[str] = set()
    scopes = [recipe.parameters] + [s.parameters for s in recipe.slices]
    scopes += [src.parameters for s in recipe.slices for src in s.sources]
    for scope in scopes:
        for value in scope.values():
            items = value if isinstance(value, list) else [value]
            out |= {
                c["filter"]
                for c in items
                if isinstance(c, dict) and c.get("filter") not in (None, "*")
            }
    return out


@dataclass
class TensorPlan:
    """One output tensor: its name, the input models (indices into `Recipe.models`) and their
    tensor names (the base last, where the method has one), and the method's parameters."""

    out: str
    inputs: list[tuple[int, str]]
    has_base: bool
    params: dict


def plan(recipe: Recipe, names: list[str], n_layers: int) -> tuple[list[TensorPlan], int]:
    """The output tensors of `recipe` over models whose tensors are `names` (the first model's,
    in file order) with `n_layers` layers, and the output's number of layers."""
    models = recipe.models
    layer_names = [(m.group("pre"), int(m.group("i")), m.group("rest"))
                   for n in names if (m := LAYER.match(n))]  # fmt: skip
    per_layer = list(dict.fromkeys((pre, rest) for pre, _, rest in layer_names))
    other = [n for n in names if not LAYER.match(n)]
    pre_weights = [n for n in other if "wte" in n or "wpe" in n or "embed" in n]
    post_weights = [n for n in other if n not in pre_weights]
    out: list[TensorPlan] = []

    def tensor(out_name: str, s: OutSlice, in_names: list[str], t: float) -> None:
        base = s.base or recipe.base
        srcs = list(zip(s.sources, in_names, strict=True))
        where = f"tensor {out_name}"
        shared_scopes = [s.parameters, recipe.parameters]
        shared = {k: resolve(k, shared_scopes, out_name, t, recipe.method, where)
                  for k, v in METHODS[recipe.method].items() if v[0] == "shared"}  # fmt: skip

        def per_input(src: SourceSlice, in_name: str) -> dict:
            scopes = [src.parameters, s.parameters, recipe.parameters]
            return {k: resolve(k, scopes, in_name, t, recipe.method, f"{src.model} {in_name}")
                    for k, v in METHODS[recipe.method].items() if v[0] == "input"}  # fmt: skip

        if recipe.method == "linear":
            if base is not None and base not in [src.model for src in s.sources]:
                raise ExpertlmError(f"{recipe.path}: linear: base_model {base} is not one of the "
                                    "models (mergekit would add it as an input without a weight)")  # fmt: skip
            ws = [per_input(src, n)["weight"] for src, n in srcs]
            total = sum(ws)
            if shared["normalize"] and total == 0:
                raise ExpertlmError(f"{recipe.path}: the weights of {out_name} sum to 0")
            params = {"weights": [w / total for w in ws] if shared["normalize"] else ws}
            out.append(TensorPlan(out_name, [(models.index(src.model), n) for src, n in srcs],
                                  False, params))  # fmt: skip
            return
        if base is None:
            raise ExpertlmError(f"{recipe.path}: merge_method {recipe.method} needs base_model")
        base_src = [(src, n) for src, n in srcs if src.model == base]
        others = [(src, n) for src, n in srcs if src.model != base]
        if not base_src and s.sources[0].layers is not None:
            raise ExpertlmError(f"{recipe.path}: base_model {base} is not among the sources of "
                                "a slice (a slice's base must be one of its sources)")  # fmt: skip
        # the models form adds a base that is not listed among the models (as mergekit)
        base_name = base_src[0][1] if base_src else in_names[0]
        if recipe.method == "slerp":
            if len(others) != 1:
                raise ExpertlmError(f"{recipe.path}: slerp merges base_model with exactly one "
                                    f"other model ({len(others)} given)")  # fmt: skip
            inputs = [
                (models.index(base), base_name),
                (models.index(others[0][0].model), others[0][1]),
            ]
            out.append(TensorPlan(out_name, inputs, False, {"t": shared["t"]}))
            return
        if not others:
            raise ExpertlmError(f"{recipe.path}: {recipe.method} needs a model besides base_model")
        p = [per_input(src, n) for src, n in others]
        params = {"weights": [q["weight"] for q in p], "density": [q["density"] for q in p],
                  "lam": shared["lambda"], "normalize": shared["normalize"]}  # fmt: skip
        inputs = [(models.index(src.model), n) for src, n in others] + [
            (models.index(base), base_name)
        ]
        out.append(TensorPlan(out_name, inputs, True, params))

    first, last = recipe.slices[0], recipe.slices[-1]
    for n in pre_weights:
        tensor(n, first, [n] * len(first.sources), 0.0)
    layer = 0
    for s in recipe.slices:
        ranges = [src.layers or (0, n_layers) for src in s.sources]
        if any(b > n_layers for _, b in ranges):
            raise ExpertlmError(
                f"{recipe.path}: a layer_range goes past the models' {n_layers} layers"
            )
        length = ranges[0][1] - ranges[0][0]
        for idx in range(length):
            t = idx / (length - 1) if length > 1 else 1.0
            for pre, rest in per_layer:
                tensor(f"{pre}{layer}.{rest}", s, [f"{pre}{a + idx}.{rest}" for a, _ in ranges], t)
            layer += 1
    for n in post_weights:
        tensor(n, last, [n] * len(last.sources), 0.0)
    return out, layer
