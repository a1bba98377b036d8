"""`eval bench --checkpoints` and `eval ppl --checkpoints`: score every checkpoint of a run.

MODEL is then a train run folder. The models scored, in step order:

- step 0, the run's init: a continued run's `init` model folder (a hub id is not scored: no
  download at evaluation time), or, from scratch, the very weights `train` started from
  (`models.build_model` with the run's preset, overrides and seed);
- its checkpoints (`checkpoints/step-N/`; `every:N` keeps those whose step is a multiple of
  N), and always the last one, which is the final model (train copies it to the run's root).

Tokens and FLOPs come from the run's own records: tokens at step N from metrics.jsonl's row of
step N where logged, else N x run.json's batch_tokens (the causal-LM objective takes exactly
batch_tokens per step); FLOPs = tokens x run.json's flops_per_token, the estimate `train`
itself made (`models.flops_per_token`: 6 N + 12 L d T per token, PaLM appendix B), so every
FLOP figure of the project is that one formula.

OUT gets `step-0000000N/` per model (the stage's usual files), the final model's files at its
root (so OUT reads as an ordinary results folder too), and one table: `checkpoints.csv` and
`checkpoints.json` (step, tokens, FLOPs and the metrics: accuracy with its 95% CI for bench;
loss and bits per byte for ppl).
"""

from __future__ import annotations

import csv
import json
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from expertlm.console import info, warn
from expertlm.errors import ExpertlmError
from expertlm.io import atomic_dir, provenance, read_json, write_json

TABLE = "checkpoints"  # checkpoints.csv, checkpoints.json
FLOPS_FORMULA = ("tokens x flops_per_token of run.json (6 N + 12 L d T per token: N the weights "
                 "used in matmuls, L layers, d width, T context; models.flops_per_token)")  # fmt: skip
BENCH_COLUMNS = ("accuracy", "ci95_low", "ci95_high", "sem", "n", "ties")
PPL_COLUMNS = ("loss", "bits_per_byte", "token_perplexity", "tokens_scored", "docs")


@dataclass(frozen=True)
class Checkpoint:
    step: int
    tokens: int
    flops: float
    model: Path | None  # None: the scratch init, built when scored
    what: str  # init, checkpoint, final


def parse_every(spec: str) -> int:
    """The N of every:N (1 for all)."""
    return 1 if spec == "all" else int(spec.partition(":")[2])


def run_checkpoints(run: str | Path, spec: str = "all") -> list[Checkpoint]:
    """The models of a run folder that `--checkpoints spec` scores, with tokens and FLOPs."""
    from expertlm.train import CKPT_DIR, STATE_DIR

    run = Path(run)
    if not (run / "run.json").is_file():
        raise ExpertlmError(f"{run}: no run.json (--checkpoints takes a finished `expertlm train` "
                            "run folder)")  # fmt: skip
    info_ = read_json(run / "run.json")
    fpt, batch_tokens = info_.get("flops_per_token"), info_.get("batch_tokens")
    cfg = info_.get("config") or {}
    if not fpt:
        raise ExpertlmError(f"{run / 'run.json'}: no flops_per_token")
    logged = _logged_tokens(run / "metrics.jsonl")

    def tokens_at(step: int) -> int:
        if step in logged:
            return logged[step]
        if cfg.get("objective", "clm") == "clm" and batch_tokens:
            return step * batch_tokens
        raise ExpertlmError(f"{run}: step {step} is not in metrics.jsonl, and its tokens are not "
                            f"step x batch_tokens for --objective {cfg.get('objective')}")  # fmt: skip

    found = []
    for d in sorted((run / CKPT_DIR).glob("step-*")) if (run / CKPT_DIR).is_dir() else []:
        state = d / STATE_DIR / "state.json"
        if state.is_file():
            found.append((int(read_json(state)["step"]), d))
    if not found:
        raise ExpertlmError(f"{run}: no checkpoints (checkpoints/step-N/)")
    found.sort()
    every = parse_every(spec)
    expected = -(-int(info_.get("steps") or found[-1][0]) // int(cfg.get("ckpt_every_steps") or 1))
    if len(found) < expected:
        warn(f"{run}: {len(found)} of its {expected} checkpoints are kept (train --keep-last "
             f"{cfg.get('keep_last')}); the earlier ones were pruned")  # fmt: skip
    out = []
    init = _init_model(run, cfg)
    if init is not False:
        out.append(Checkpoint(0, 0, 0.0, init, "init"))
    last = found[-1][0]
    for step, d in found:
        if step % every == 0 or step == last:
            t = tokens_at(step)
            out.append(Checkpoint(step, t, float(t * fpt), d, "final" if step == last else "checkpoint"))
    return out


def _logged_tokens(path: Path) -> dict[int, int]:
    steps = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict) and isinstance(row.get("step"), int) and "tokens" in row:
                steps[row["step"]] = int(row["tokens"])
    return steps


def _init_model(run: Path, cfg: dict) -> Path | None | bool:
    """Step 0: a continued run's init folder, None for a scratch init (built when scored), or
    False where there is nothing to score without a download (a hub id)."""
    init = cfg.get("init", "scratch")
    if init == "scratch":
        return None
    if Path(init).is_dir():
        return Path(init)
    warn(f"{run}: its init {init} is not a local folder; step 0 is not scored")
    return False


def _build_init(run: Path, cfg: dict, folder: Path) -> Path:
    """The weights a scratch run started from, as a model folder (with the run's tokenizer)."""
    from expertlm.models import init_model

    return init_model(run, folder, preset=cfg.get("preset", "gpt2-mini"),
                      model=cfg.get("model") or {}, seed=cfg.get("seed", 0), show_progress=False)  # fmt: skip


def over_checkpoints(run: str | Path, out: Path, spec: str, kind: str, overwrite: bool,
                     show_progress: bool, score: Callable[[Path, Path, str], dict]) -> dict:  # fmt: skip
    """Score each model of `run_checkpoints(run, spec)` with `score(model, folder, label)`
    (which writes the stage's files into folder and returns its summary); write the table."""
    run = Path(run)
    points = run_checkpoints(run, spec)
    cfg = (read_json(run / "run.json").get("config")) or {}
    rows = []
    with atomic_dir(out, overwrite=overwrite) as tmp, tempfile.TemporaryDirectory() as scratch:
        for k, p in enumerate(points, 1):
            model = p.model if p.model is not None else _build_init(run, cfg, Path(scratch) / "init")
            folder = tmp / f"step-{p.step:08d}"
            folder.mkdir()
            result = score(model, folder, f"step {p.step} ({k}/{len(points)})")
            rows.append({"step": p.step, "tokens": p.tokens, "flops": p.flops, "what": p.what,
                         "model": str(p.model) if p.model is not None else "scratch init (seeded)",
                         **_metrics(kind, result)})  # fmt: skip
            info(f"step {p.step:,} ({p.tokens:,} tokens, {p.flops:.3g} FLOPs): "
                 + ", ".join(f"{c} {_fmt(rows[-1][c])}" for c in _columns(kind)[:3]))
        for f in (tmp / f"step-{points[-1].step:08d}").iterdir():  # the final model's files
            shutil.copy2(f, tmp / f.name)
        table = {"format": "expertlm.checkpoints/1", "kind": kind, "run": str(run),
                 "checkpoints": spec, "flops": FLOPS_FORMULA,
                 "flops_per_token": read_json(run / "run.json")["flops_per_token"],
                 "batch_tokens": read_json(run / "run.json").get("batch_tokens"),
                 "rows": rows, "provenance": provenance()}  # fmt: skip
        write_json(tmp / f"{TABLE}.json", table)
        with open(tmp / f"{TABLE}.csv", "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=["step", "tokens", "flops", "what", *_columns(kind), "model"],
                               lineterminator="\n")  # fmt: skip
            w.writeheader()
            w.writerows(rows)
    info(f"{len(rows)} models of {run} scored -> {out / (TABLE + '.csv')}")
    return table


def _columns(kind: str) -> tuple[str, ...]:
    return BENCH_COLUMNS if kind == "bench" else PPL_COLUMNS


def _metrics(kind: str, r: dict) -> dict:
    if kind == "bench":
        lo, hi = r["ci95"]
        return {"accuracy": r["accuracy"], "ci95_low": lo, "ci95_high": hi, "sem": r.get("sem"),
                "n": r["n"], "ties": r["ties"]}  # fmt: skip
    return {"loss": r["loss"], "bits_per_byte": r["bits_per_byte"],
            "token_perplexity": r["token_perplexity"], "tokens_scored": r["tokens"], "docs": r["docs"]}  # fmt: skip


def _fmt(x) -> str:
    return f"{x:.4f}" if isinstance(x, float) else str(x)


def read_table(results: str | Path) -> dict | None:
    """A results folder's checkpoints.json (None when it was not scored --checkpoints)."""
    p = Path(results) / f"{TABLE}.json"
    return read_json(p) if p.is_file() else None
