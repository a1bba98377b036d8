"""Human participant data in the published BrainBench format, and the human baselines.

One row per trial (`data/participant_data.csv` of braingpt-lovelab/brainbench_participant_data):
`pid, expertise (0-100), confidence (0-100), correct (1/0), abstract_id, journal_section, ...`,
where `journal_section` is prefixed `human_` or `machine_` by who wrote the item (e.g.
`human_Systems/Circuits`). Accuracy is pooled over trials, as published (every trial counts
once; it is not the mean of per-participant accuracies, which is reported beside it). The
top-expertise accuracy keeps, for each abstract, the `int(top_pct x trials)` trials with the
highest self-rated expertise (pandas' `nlargest`, first rows first on ties), as published.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from expertlm.errors import ExpertlmError, where
from expertlm.eval import stats
from expertlm.io import csv_rows

REQUIRED = ("pid", "expertise", "confidence", "correct", "abstract_id", "journal_section")
AUTHORS = ("human", "machine", "all")


@dataclass(frozen=True)
class Trial:
    pid: str
    expertise: float
    confidence: float
    correct: int
    abstract_id: str
    author: str  # human | machine (who wrote the item), "" if the section has no prefix
    section: str  # the journal section without the prefix
    line: int


def _number(value: str, src: str, col: str) -> float:
    try:
        x = float(value)
    except ValueError:
        raise ExpertlmError(f"{src}: column '{col}': not a number ({value!r})") from None
    if math.isnan(x):
        raise ExpertlmError(f"{src}: column '{col}': missing value")
    return x


def read_trials(path: str | Path) -> list[Trial]:
    """Every trial of a participant-data CSV; a malformed row is an error naming its line."""
    path = Path(path)
    if not path.is_file():
        raise ExpertlmError(f"{path}: no such participant data file")
    trials = []
    for line, row in csv_rows(path, REQUIRED):
        src = where(path, line)
        correct = _number(row["correct"], src, "correct")
        if correct not in (0, 1):
            raise ExpertlmError(
                f"{src}: column 'correct': expected 0 or 1 (got {row['correct']!r})"
            )
        expertise = _number(row["expertise"], src, "expertise")
        confidence = _number(row["confidence"], src, "confidence")
        for col, x in (("expertise", expertise), ("confidence", confidence)):
            if not 0 <= x <= 100:
                raise ExpertlmError(f"{src}: column '{col}': expected 0-100 (got {x:g})")
        section = (row["journal_section"] or "").strip()
        author, sep, rest = section.partition("_")
        if not sep or author not in ("human", "machine"):
            author, rest = "", section
        trials.append(Trial(
            pid=row["pid"].strip(), expertise=expertise, confidence=confidence, correct=int(correct),
            abstract_id=_id(row["abstract_id"]), author=author, section=rest, line=line,
        ))  # fmt: skip
    if not trials:
        raise ExpertlmError(f"{path}: no trials")
    return trials


def _id(value: str) -> str:
    """`34.0` and `34` are the same abstract (pandas writes integer ids with NaNs as floats)."""
    v = value.strip()
    try:
        f = float(v)
        return str(int(f)) if f.is_integer() else v
    except ValueError:
        return v


def top_expertise(trials: list[Trial], top_pct: float) -> list[Trial]:
    """Per abstract, the int(top_pct x n) trials with the highest expertise; ties keep the
    earlier rows (pandas `nlargest(keep='first')`, as the published analysis)."""
    groups: dict[str, list[Trial]] = defaultdict(list)
    for t in trials:
        groups[t.abstract_id].append(t)
    out = []
    for group in groups.values():
        k = int(len(group) * top_pct)
        ranked = sorted(range(len(group)), key=lambda i: (-group[i].expertise, i))
        out.extend(group[i] for i in ranked[:k])
    return out


def human_summary(trials: list[Trial], items: str = "human", top_pct: float = 0.2,
                  bins: int = 20, seed: int = 0) -> dict:  # fmt: skip
    """Human accuracy overall, per section, for the top expertise, and calibration, with the
    same keys as a model's summary where they mean the same thing."""
    if items not in AUTHORS:
        raise ExpertlmError(f"option --items: expected one of {', '.join(AUTHORS)} (got '{items}')")
    if not 0 < top_pct <= 1:
        raise ExpertlmError(f"option --top-pct: expected a fraction in (0, 1] (got {top_pct})")
    sel = [t for t in trials if items == "all" or t.author == items]
    if not sel:
        found = sorted({t.author or "(no prefix)" for t in trials})
        raise ExpertlmError(
            f"no trials on {items}-written items (journal_section prefixes found: {', '.join(found)})"
        )
    correct = np.array([t.correct for t in sel], dtype=float)
    confidence = np.array([t.confidence for t in sel], dtype=float)
    summary = stats.accuracy_summary(correct, seed=seed)
    summary["ties"] = 0
    summary["pooling"] = (
        "accuracy pooled over trials (every trial counts once), as published; "
        "per_participant_mean is the mean of participants' own accuracies"
    )
    by_pid: dict[str, list[int]] = defaultdict(list)
    for t in sel:
        by_pid[t.pid].append(t.correct)
    summary["participants"] = len(by_pid)
    summary["abstracts"] = len({t.abstract_id for t in sel})
    summary["per_participant_mean"] = float(np.mean([np.mean(v) for v in by_pid.values()]))
    summary["per_section"] = stats.per_group([t.section for t in sel], correct)
    top = top_expertise(sel, top_pct)
    top_acc = stats.accuracy_summary(np.array([t.correct for t in top], dtype=float), seed=seed)
    summary["top_expertise"] = {"top_pct": top_pct, **top_acc}
    summary["calibration"] = {
        "confidence": "self-rated confidence (0-100)",
        "bins": stats.calibration_bins(confidence, correct, bins),
        "regression": stats.calibration_regression(confidence, correct, seed=seed),
    }
    summary["items"] = items
    return summary
