"""`expertlm merge`: linear, SLERP, TIES and task-arithmetic merges of same-architecture models.

Memory stays near a few tensors, not whole models: every tensor is read from the inputs'
safetensors files in row blocks (`safe_open(...).get_slice`), merged block by block, and
appended to the output by a streaming safetensors writer whose header is written first (every
output tensor's name, dtype and shape are known before any data). Only two statistics need a
whole tensor: SLERP's angle (accumulated over the blocks in a first pass) and TIES's trim
threshold (one tensor at a time). `bench/merge_memory.py` measures the peak.

Each method is a plain function from one tensor's inputs to its merged row blocks (computed in
float32, float64 for float64 weights, and written in the first model's dtype), registered in
`MERGE_METHODS` (mergekit's one-method-one-function layout).
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import struct
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from expertlm.config import MergeConfig, flag
from expertlm.console import count_progress, info, warn
from expertlm.errors import ExpertlmError
from expertlm.io import atomic_dir, check_output_dir, provenance, read_json, sha256_file, write_json
from expertlm.models import MODEL_FILE, model_hash, weights_files
from expertlm.recipe import filters, parse_recipe, plan, read_recipe
from expertlm.tokenizer import TOKENIZER_FILES

# Files of a model folder beside the weights that a merged or exported model keeps, copied from the first model: its tokenizer, expertlm's record of it, the generation defaults.
SIDE_FILES = (*TOKENIZER_FILES, "expertlm_tokenizer.json", "generation_config.json")
# Config keys that record how a model was saved or run, not what it is.
IGNORED_CONFIG_KEYS = frozenset({"_name_or_path", "transformers_version", "torch_dtype", "dtype",
                                 "use_cache", "_attn_implementation_autoset"})  # fmt: skip
BLOCK_ELEMENTS = 1 << 22  # elements per row block: 16 MB in float32
DOT_THRESHOLD = 0.9995  # SLERP falls back to linear above this |cos| (mergekit's value)
NORM_EPS = 1e-8  # SLERP leaves a tensor with a smaller norm unnormalised (as mergekit does)

ST_DTYPES = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16",
             torch.bfloat16: "BF16", torch.float8_e4m3fn: "F8_E4M3", torch.float8_e5m2: "F8_E5M2",
             torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
             torch.uint8: "U8", torch.bool: "BOOL"}  # fmt: skip
TORCH_DTYPES = {v: k for k, v in ST_DTYPES.items()}


# --- reading and writing safetensors ---------------------------------------------------------


class Weights:
    """The tensors of one model folder, read on demand (whole or by rows), never all at once.

    Every read opens the file, copies what it asked for and closes it again: safetensors hands
    out views of a memory map that lives as long as the file is open, so with the files kept
    open every page read would stay resident (peak memory ~ every input whole), and in-place
    arithmetic on a view would change what the next read of the same tensor returns."""

    def __init__(self, folder: Path) -> None:
        from safetensors import safe_open

        self.folder = folder
        self._paths: dict[str, Path] = {}
        self.specs: dict[str, tuple[torch.dtype, tuple[int, ...]]] = {}
        for path in weights_files(folder):
            try:
                with safe_open(str(path), "pt") as f:
                    for name in f.keys():  # noqa: SIM118 (safe_open is not a mapping)
                        sl = f.get_slice(name)
                        self.specs[name] = (TORCH_DTYPES[sl.get_dtype()], tuple(sl.get_shape()))
                        self._paths[name] = path
            except Exception as e:  # safetensors' SafetensorError for a bad header, OSError
                raise ExpertlmError(f"{path}: not a readable safetensors file ({e})") from None

    def get(self, name: str, rows: slice | None = None, dtype: torch.dtype | None = None):
        """A copy of tensor `name` (or of its rows `rows`), in `dtype` if given."""
        from safetensors import safe_open

        with safe_open(str(self._paths[name]), "pt") as f:
            view = f.get_tensor(name) if rows is None else f.get_slice(name)[rows.start : rows.stop]
            return view.to(dtype or view.dtype, copy=True)


class SafetensorsWriter:
    """A .safetensors file written tensor by tensor, each in one or more row blocks, in the
    order of `specs` (name, dtype, shape): the header goes first, then the data as it comes,
    so no tensor has to be held after it is written. A context manager; `sha256` is the
    file's, computed on the way."""

    def __init__(self, path: Path, specs: Sequence[tuple[str, torch.dtype, tuple[int, ...]]],
                 metadata: dict[str, str] | None = None) -> None:  # fmt: skip
        header: dict[str, Any] = {"__metadata__": metadata or {"format": "pt"}}
        self._todo: list[tuple[str, torch.dtype, int]] = []
        offset = 0
        for name, dtype, shape in specs:
            nbytes = math.prod(shape) * dtype.itemsize
            header[name] = {"dtype": ST_DTYPES[dtype], "shape": list(shape),
                            "data_offsets": [offset, offset + nbytes]}  # fmt: skip
            self._todo.append((name, dtype, nbytes))
            offset += nbytes
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)  # data starts 8-byte aligned, as safetensors' writer does
        self._f = open(path, "wb")  # noqa: SIM115 (closed in close())
        self._hash = hashlib.sha256()
        self._i, self._done = 0, 0
        self._write(struct.pack("<Q", len(raw)) + raw)

    def _write(self, data) -> None:
        self._f.write(data)
        self._hash.update(data)

    def write(self, name: str, block: torch.Tensor) -> None:
        """Append `block` (the next rows of tensor `name`, cast to its dtype)."""
        expected, dtype, nbytes = self._todo[self._i]
        if name != expected:
            raise RuntimeError(f"writing {name} before {expected} is complete")
        data = block.detach().to("cpu", dtype).contiguous().reshape(-1).view(torch.uint8)
        if self._done + data.numel() > nbytes:
            raise RuntimeError(f"{name}: more data than its shape holds")
        self._write(data.numpy().data)
        self._done += data.numel()
        if self._done == nbytes:
            self._i, self._done = self._i + 1, 0

    def __enter__(self) -> SafetensorsWriter:
        return self

    def __exit__(self, exc_type, *exc: object) -> None:
        self._f.close()
        if exc_type is None and self._i != len(self._todo):
            raise RuntimeError(f"{self._todo[self._i][0]} and later tensors were not written")

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()


# --- the methods -----------------------------------------------------------------------------


class Source:
    """One tensor, by name, across the models (and the base): float32 row blocks on request.
    `names`: each model's own name for it, then the base's (a recipe's slices read layer i of
    one model into layer j of the output)."""

    def __init__(self, name: str, models: list[Weights], base: Weights | None,
                 names: list[str] | None = None) -> None:  # fmt: skip
        self.name, self._models, self._base = name, models, base
        self._names = names or [name] * (len(models) + (base is not None))
        dtype, self.shape = models[0].specs[self._names[0]]
        # float64 weights are merged in float64; everything narrower in float32
        self.compute_dtype = torch.float64 if dtype == torch.float64 else torch.float32

    @property
    def n(self) -> int:
        return len(self._models)

    def model(self, i: int, rows: slice | None = None) -> torch.Tensor:
        return self._models[i].get(self._names[i], rows, self.compute_dtype)

    def base(self, rows: slice | None = None) -> torch.Tensor:
        assert self._base is not None
        return self._base.get(self._names[-1], rows, self.compute_dtype)

    def blocks(self) -> list[slice | None]:
        """Row ranges of about BLOCK_ELEMENTS elements (None: the whole of a 0-d tensor)."""
        if not self.shape:
            return [None]
        per_row = max(1, math.prod(self.shape[1:]))
        step = max(1, BLOCK_ELEMENTS // per_row)
        return [slice(a, min(a + step, self.shape[0])) for a in range(0, self.shape[0], step)]


def linear(src: Source, p: dict) -> Iterator[torch.Tensor]:
    """Weighted average sum_i w_i x_i with the weights normalised to sum to 1 (model soups,
    Wortsman et al. 2022, https://arxiv.org/abs/2203.05482)."""
    w = p["weights"]
    for rows in src.blocks():
        out = src.model(0, rows).mul_(w[0])
        for i in range(1, src.n):
            out.add_(src.model(i, rows), alpha=w[i])
        yield out


def slerp_weights(t: float, dot: float, norm0: float, norm1: float) -> tuple[float, float]:
    """(s0, s1) with slerp(v0, v1) = s0 v0 + s1 v1, mergekit's convention: the angle is the one
    between the normalised tensors (a tensor of norm <= NORM_EPS is left unnormalised), and
    near-parallel tensors (|cos| > DOT_THRESHOLD) are interpolated linearly instead."""
    cos = dot / ((norm0 if norm0 > NORM_EPS else 1.0) * (norm1 if norm1 > NORM_EPS else 1.0))
    if abs(cos) > DOT_THRESHOLD:
        return 1.0 - t, t
    theta = math.acos(cos)
    sin = math.sin(theta)
    return math.sin(theta - theta * t) / sin, math.sin(theta * t) / sin


def slerp(src: Source, p: dict) -> Iterator[torch.Tensor]:
    """Spherical linear interpolation of two models, per tensor (Shoemake 1985; as mergekit)."""
    t = p["t"]
    if t in (0.0, 1.0):  # the parent itself, bit for bit (no 1 * x + 0 * y rounding of -0.0)
        for rows in src.blocks():
            yield src.model(int(t), rows)
        return
    dot = sq0 = sq1 = 0.0
    for rows in src.blocks():  # first pass: the angle, accumulated in float64
        a, b = src.model(0, rows).double().reshape(-1), src.model(1, rows).double().reshape(-1)
        dot, sq0, sq1 = dot + float(a @ b), sq0 + float(a @ a), sq1 + float(b @ b)
    s0, s1 = slerp_weights(t, dot, math.sqrt(sq0), math.sqrt(sq1))
    for rows in src.blocks():
        yield src.model(0, rows).mul_(s0).add_(src.model(1, rows), alpha=s1)


def trim_threshold(src: Source, i: int, density: float) -> float:
    """The k-th largest |x_i - base| of the whole tensor, k = floor(density x numel), at least 1
    (mergekit's k): TIES keeps the entries of the task vector at or above it."""
    if density >= 1.0:
        return 0.0
    tau = src.model(i).sub_(src.base()).abs_().reshape(-1).numpy()
    k = max(1, int(density * tau.size))
    # numpy's in-place partition (introselect): no copy, where torch.kthvalue would allocate
    # a float copy and an int64 index array, 3x the tensor
    tau.partition(tau.size - k)
    return float(tau[tau.size - k])


def ties(src: Source, p: dict) -> Iterator[torch.Tensor]:
    """TIES-merging (Yadav et al. 2023, https://arxiv.org/abs/2306.01708): task vectors
    tau_i = x_i - base are trimmed to their top-`density` magnitudes (per tensor, as mergekit
    does), a sign is elected per entry as the sign of sum_i w_i trimmed_i (+ where it is 0, as
    mergekit), and the entries whose sign agrees with it are averaged (weighted by w_i; summed
    instead with `normalize` false; an entry no task vector keeps stays at the base); the
    result, times `lam`, is added to the base. `density`: one for all, or one per model."""
    w, lam, density = p["weights"], p["lam"], p["density"]
    density = density if isinstance(density, list) else [density] * src.n
    thresholds = [trim_threshold(src, i, density[i]) for i in range(src.n)]
    for rows in src.blocks():
        base = src.base(rows)
        trimmed = []
        for i in range(src.n):
            tau = src.model(i, rows).sub_(base)
            trimmed.append(tau.mul_(tau.abs() >= thresholds[i]))
        total = sum(w[i] * trimmed[i] for i in range(src.n))
        elected = torch.where(total >= 0, 1.0, -1.0).to(base.dtype)
        num, den = torch.zeros_like(base), torch.zeros_like(base)
        for i, tau in enumerate(trimmed):
            agree = (tau.sign() == elected) & (tau != 0)
            num.add_(tau * agree, alpha=w[i])
            den.add_(agree.to(den.dtype), alpha=w[i])
        if not p.get("normalize", True):
            yield base.add_(num, alpha=lam)
            continue
        yield base.add_(num.div_(torch.where(den != 0, den, 1.0)), alpha=lam)


def task_arithmetic(src: Source, p: dict) -> Iterator[torch.Tensor]:
    """Task arithmetic (Ilharco et al. 2023, https://arxiv.org/abs/2212.04089):
    base + lam * sum_i w_i (x_i - base) (divided by sum_i w_i with `normalize`, as mergekit)."""
    w, lam = p["weights"], p["lam"]
    scale = lam
    if p.get("normalize") and abs(sum(w)) >= 1e-8:
        scale = lam / sum(w)
    for rows in src.blocks():
        base = src.base(rows)
        vector = torch.zeros_like(base)
        for i in range(src.n):
            vector.add_(src.model(i, rows).sub_(base), alpha=w[i])
        yield base.add_(vector, alpha=scale)


MERGE_METHODS = {"linear": linear, "slerp": slerp, "ties": ties,
                 "task_arithmetic": task_arithmetic}  # fmt: skip


# --- the stage -------------------------------------------------------------------------------


def model_folder(path: str | Path) -> tuple[Path, dict]:
    """A local Hugging Face model folder with safetensors weights, and its config."""
    folder = Path(path)
    if not folder.is_dir():
        raise ExpertlmError(f"{folder}: no such model folder")
    if not (folder / "config.json").is_file():
        if (folder / "adapter_config.json").is_file():
            raise ExpertlmError(
                f"{folder}: holds LoRA adapters, not a whole model: write one with "
                f"`expertlm export --merge-lora {folder} --out DIR` and use that folder"
            )
        raise ExpertlmError(f"{folder}: not a Hugging Face model folder (no config.json)")
    weights_files(folder)  # a clear error now if there are no safetensors weights
    return folder, read_json(folder / "config.json")


def _tokenizer_sha256(folder: Path) -> str | None:
    tok = folder / "tokenizer.json"
    return sha256_file(tok) if tok.is_file() else None


def _check_compatible(folders: list[Path], configs: list[dict], weights: list[Weights]) -> None:
    """Same architecture (config fields that matter), same tensors, same tokenizer as the first."""
    ref, ref_cfg, ref_specs = folders[0], configs[0], weights[0].specs
    ref_tok = _tokenizer_sha256(ref)
    for folder, cfg, w in zip(folders[1:], configs[1:], weights[1:], strict=True):
        keys = sorted((set(cfg) | set(ref_cfg)) - IGNORED_CONFIG_KEYS)
        diff = [
            f"{k} {cfg.get(k)!r} vs {ref_cfg.get(k)!r}"
            for k in keys
            if cfg.get(k) != ref_cfg.get(k)
        ]
        if diff:
            raise ExpertlmError(
                f"{folder}: architecture differs from {ref}'s (config.json: {'; '.join(diff[:4])})"
            )
        missing = sorted(set(ref_specs) - set(w.specs))
        extra = sorted(set(w.specs) - set(ref_specs))
        shapes = [f"{n} {list(w.specs[n][1])} vs {list(ref_specs[n][1])}"
                  for n in sorted(set(w.specs) & set(ref_specs)) if w.specs[n][1] != ref_specs[n][1]]  # fmt: skip
        if missing or extra or shapes:
            parts = (
                ([f"missing {', '.join(missing[:3])}"] if missing else [])
                + ([f"extra {', '.join(extra[:3])}"] if extra else [])
                + ([f"shape of {'; '.join(shapes[:3])}"] if shapes else [])
            )
            raise ExpertlmError(f"{folder}: tensors differ from {ref}'s ({'; '.join(parts)})")
        tok = _tokenizer_sha256(folder)
        if tok != ref_tok:
            what = "has no tokenizer.json" if tok is None else "tokenizer.json differs"
            what += f" from {ref}'s" if ref_tok is not None else f" ({ref} has none)"
            raise ExpertlmError(
                f"{folder}: {what}; merged models must share one tokenizer (token ids must mean the same)"
            )


def _same_everywhere(names: list[str], readers: list[Weights]) -> torch.Tensor:
    first = readers[0].get(names[0])
    for r, name in zip(readers[1:], names[1:], strict=True):
        if not torch.equal(r.get(name), first):
            raise ExpertlmError(
                f"{r.folder}: {name} ({first.dtype}) differs from {readers[0].folder}'s and "
                f"cannot be merged (only floating-point tensors are)"
            )
    return first


def merge(models: Sequence[str | Path] = (), out: str | Path = "", *,
          base: str | Path | None = None, config: str | Path | None = None,
          overwrite: bool = False, show_progress: bool = True, **options) -> Path:  # fmt: skip
    """Merge same-architecture, same-tokenizer model folders into the model folder `out`
    (config.json, model.safetensors, tokenizer files, merge.json with the recipe). `base`: the
    model the task vectors are relative to (ties, task_arithmetic); `options` are the fields of
    `MergeConfig` (method, weights, t, density, lam). `config`: a mergekit YAML recipe
    (`recipe.py`) instead of models, base and options."""
    t_start = time.time()
    if config is not None:
        if models or base is not None or options:
            given = [*(["MODELS"] if models else []), *(["--base"] if base is not None else []),
                     *(flag(k) for k in options)]  # fmt: skip
            raise ExpertlmError(f"--config: the recipe names the models, the base and the "
                                f"parameters; leave out {', '.join(given)}")  # fmt: skip
        return _merge_recipe(read_recipe(config), Path(out), overwrite, show_progress, t_start)
    cfg = MergeConfig.from_options(options)
    models = list(models)
    if not models:
        raise ExpertlmError("merge: give the model folders (MODELS) or a recipe (--config FILE.yml)")
    n_min, n_max = {"linear": (2, None), "slerp": (2, 2)}.get(cfg.method, (1, None))
    if len(models) < n_min or (n_max is not None and len(models) > n_max):
        need = f"exactly {n_min}" if n_max == n_min else f"at least {n_min}"
        raise ExpertlmError(f"--method {cfg.method} takes {need} models (got {len(models)})")
    needs_base = cfg.method in ("ties", "task_arithmetic")
    if needs_base and base is None:
        raise ExpertlmError(
            f"--method {cfg.method} needs --base (the model the task vectors are relative to)"
        )
    if not needs_base and base is not None:
        raise ExpertlmError(f"--base is not used by --method {cfg.method}")
    if cfg.weights is not None and len(cfg.weights) != len(models):
        raise ExpertlmError(
            f"option --weights: {len(cfg.weights)} weights for {len(models)} models"
        )
    if cfg.method == "linear" and cfg.weights is not None and sum(cfg.weights) == 0:
        raise ExpertlmError("option --weights: the weights of a linear merge sum to 0")
    if cfg.method == "ties" and cfg.weights is not None and min(cfg.weights) <= 0:
        raise ExpertlmError("option --weights: TIES weights must be positive")
    out = Path(out)
    check_output_dir(out, overwrite, inputs=[*models, *([base] if base else [])])
    inputs = [model_folder(m) for m in [*models, *([base] if base else [])]]  # base last
    folders, configs = [f for f, _ in inputs], [c for _, c in inputs]
    params = cfg.parameters(len(models))

    readers = [Weights(folder) for folder in folders]
    _check_compatible(folders, configs, readers)
    model_w, base_w = readers[: len(models)], (readers[-1] if base else None)
    fn = MERGE_METHODS[cfg.method]
    jobs = [(n, *model_w[0].specs[n], fn, Source(n, model_w, base_w), params)
            for n in model_w[0].specs]  # fmt: skip
    record = {
        "method": cfg.method, "parameters": params,
        "models": [{"path": str(f), "weights_sha256": model_hash(f)} for f in folders[: len(models)]],
        "base": {"path": str(folders[-1]), "weights_sha256": model_hash(folders[-1])} if base else None,
    }  # fmt: skip
    _write(out, overwrite, show_progress, folders[0], None, jobs, record, t_start)
    n = f"{len(models)} model{'s' if len(models) > 1 else ''}{' and a base' if base else ''}"
    _done(out, f"{cfg.method} of {n}", len(jobs))
    return out


def merge_recipe(models: Sequence[str | Path], out: str | Path, *, recipe: dict,
                 overwrite: bool = False, show_progress: bool = True) -> Path:  # fmt: skip
    """An experiment's recipe merge: `recipe` (a mergekit recipe as a mapping, naming `models`)
    is written beside `out` as OUT.recipe.yml, the file merge.json points to, and merged as
    `merge --config` merges it."""
    import yaml

    out = Path(out)
    named = set(read_recipe_models(recipe))
    if not named <= {str(m) for m in models}:
        raise ExpertlmError(f"{out}: the recipe names models it was not given: {', '.join(sorted(named))}")
    out.parent.mkdir(parents=True, exist_ok=True)
    file = out.parent / f"{out.name}.recipe.yml"
    file.write_text(yaml.safe_dump(recipe, sort_keys=False), encoding="utf-8")
    return merge(out=out, config=file, overwrite=overwrite, show_progress=show_progress)


def read_recipe_models(recipe: dict) -> list[str]:
    """The models a recipe mapping reads (the base first)."""
    return parse_recipe(recipe, "recipe").models


def _merge_recipe(recipe, out: Path, overwrite: bool, show_progress: bool, t_start: float) -> Path:
    """`merge --config`: the recipe's tensors, each from its slice's models and parameters."""
    check_output_dir(out, overwrite, inputs=recipe.models)
    inputs = [model_folder(m) for m in recipe.models]
    folders, configs = [f for f, _ in inputs], [c for _, c in inputs]
    readers = [Weights(folder) for folder in folders]
    _check_compatible(folders, configs, readers)
    cfg = configs[0]
    layer_key = next((k for k in ("n_layer", "num_hidden_layers") if k in cfg), None)
    if layer_key is None:
        raise ExpertlmError(f"{folders[0]}: config.json has no n_layer / num_hidden_layers")
    names = list(readers[0].specs)
    unmatched = sorted(f for f in filters(recipe) if not any(f in n for n in names))
    if unmatched:
        warn(f"{recipe.path}: filter {', '.join(map(repr, unmatched))} matches no tensor of these "
             f"models (e.g. {names[min(2, len(names) - 1)]}), so it has no effect, as in mergekit")  # fmt: skip
    plans, n_out = plan(recipe, names, cfg[layer_key])
    fn = MERGE_METHODS[recipe.method]
    out_dtype = recipe.out_dtype or recipe.dtype
    jobs = []
    for tp in plans:
        ins = [readers[i] for i, _ in tp.inputs]
        in_names = [n for _, n in tp.inputs]
        dtype, shape = ins[0].specs[in_names[0]]
        if dtype.is_floating_point and out_dtype is not None:
            dtype = getattr(torch, out_dtype)
        models_w, base_w = (ins[:-1], ins[-1]) if tp.has_base else (ins, None)
        jobs.append((tp.out, dtype, shape, fn, Source(tp.out, models_w, base_w, in_names), tp.params))
    config = cfg | {layer_key: n_out} | ({"dtype": out_dtype} if out_dtype else {})
    record = {
        "method": recipe.method, "recipe": {"path": str(recipe.path), "sha256": sha256_file(recipe.path),
                                            "config": recipe.raw},
        "models": [{"path": str(f), "weights_sha256": model_hash(f)} for f in folders],
        "base": recipe.base,
    }  # fmt: skip
    _write(out, overwrite, show_progress, folders[0], config, jobs, record, t_start)
    _done(out, f"{recipe.method} recipe {recipe.path.name} of {len(folders)} models", len(jobs))
    return out


def _write(out: Path, overwrite: bool, show_progress: bool, first: Path, config: dict | None,
           jobs: list, record: dict, t_start: float) -> None:  # fmt: skip
    """The output folder: each job's tensor (name, dtype, shape, method, Source, parameters)
    streamed into model.safetensors, `config` as config.json (None: the first model's), the
    first model's side files, merge.json."""
    with atomic_dir(out, overwrite=overwrite) as tmp, count_progress(show_progress) as bar:
        task = bar.add_task(f"merge ({record['method']})", total=len(jobs))
        with SafetensorsWriter(tmp / MODEL_FILE, [j[:3] for j in jobs]) as writer:
            for name, dtype, _, fn, src, params in jobs:
                if dtype.is_floating_point:
                    for block in fn(src, params):
                        writer.write(name, block)
                else:  # integer/bool buffers are not merged: they must agree
                    readers = [*src._models, *([src._base] if src._base else [])]
                    writer.write(name, _same_everywhere(src._names, readers))
                bar.advance(task)
        if config is None:
            shutil.copy2(first / "config.json", tmp / "config.json")
        else:
            write_json(tmp / "config.json", config)
        for f in SIDE_FILES:
            if (first / f).is_file():
                shutil.copy2(first / f, tmp / f)
        write_json(tmp / "merge.json", {
            "format": "expertlm.merge/1", **record, "tokenizer_sha256": _tokenizer_sha256(first),
            "tensors": len(jobs), "output": {"file": MODEL_FILE, "sha256": writer.sha256},
            "wall_s": round(time.time() - t_start, 3), **provenance(),
        })  # fmt: skip


def _done(out: Path, what: str, tensors: int) -> None:
    size = (out / MODEL_FILE).stat().st_size
    info(f"merge: {what}, {tensors} tensors, {size / 1e6:,.1f} MB -> {out}")
