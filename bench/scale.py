"""Growth curves of the data stages, and the paper's corpus (1.3B tokens, ~5.5 GB of text) on
paper: fits time and memory against corpus size for `corpus build`, `tokenizer train` and
`data prepare` from measured 1x, 4x and 16x points, and projects them.

Points: the corpora of bench/corpus_build.py (1x ~21 MB of text from ../shared/data, 4x, 16x,
with planted duplicates); corpus build's points are that benchmark's (bench/_work/
corpus_build/results.json), measured again here when they are missing. Then, on each built
corpus, `tokenizer train --vocab-size 50257` (GPT-2's size, as the paper's own tokenizer) and
`data prepare` with that tokenizer, each in a fresh process.

Each run gives its CPU seconds (the process tree's), the CPU seconds of its busiest thread of
the first process (reading and merging for corpus build, the reading thread for data prepare,
the merge loop for tokenizer train: what more cores do not shorten), and its peak RSS (of the
first process, and of its worker processes). Fits, least squares of the relative errors over
the three points, in MB of text: total and serial CPU seconds = a + b * MB; memory = c + d * MB
(first process) plus, for stages with workers, the workers' memory (c' + d' * MB) scaled to the number of cores.
A stage's wall time on P cores is projected as max(serial, total / P): the machine's load does
not enter (the load measured with each point is printed; the wall times measured under it too).

Prints the projected wall time and peak memory of each stage for 5,500 MB of text on this
machine's cores and on 16, says which stage dominates, and writes docs/scaling.png.

Target: every fit within 15% of each of its measured points (the projection rests on them).

Run: python bench/scale.py   (needs ../shared/data)
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import corpus_build as cb  # noqa: E402
from _measure import load, measure  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PAPER_MB = 5_500  # 1.3B GPT-2 tokens of neuroscience text at ~4.2 characters a token
VOCAB = 50_257
FIGURE = ROOT / "docs" / "scaling.png"
STAGES = ("corpus build", "tokenizer train", "data prepare")
WORKERS = {"corpus build": True, "tokenizer train": False, "data prepare": True}


def fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(a, b) of y = a + b x, least squares of the relative residuals (a + b x - y) / y: the
    points span 16x, and plain least squares fits the largest one and leaves the smallest the
    whole error (on one run's points: the 1x point 13% off, where the relative fit's worst is
    6% off). a and b are kept >= 0 (a negative start-up or growth is noise)."""
    y = np.maximum(y, 1e-9)
    b, a = np.polyfit(x, y, 1, w=1 / y)
    if a < 0:  # through the origin: b minimising sum(((b x - y) / y)^2)
        u = x / y
        a, b = 0.0, float(np.sum(u) / np.sum(u * u))
    if b < 0:
        a, b = float(np.mean(y)), 0.0
    return float(a), float(b)


def points(env: dict) -> dict[str, list[dict]]:
    data = cb.corpora()
    results = cb.WORK / "results.json"
    runs = json.loads(results.read_text())["runs"] if results.is_file() else {}
    out: dict[str, list[dict]] = {s: [] for s in STAGES}
    for scale in cb.SCALES:
        folder, truth = data[scale]
        built = cb.WORK / f"out-{scale}x"
        r = runs.get(f"expertlm {scale}x")
        if r is None or "serial_cpu_s" not in r or not (built / "manifest.json").is_file():
            r = cb.run_expertlm(folder, truth, None, env, f"{scale}x")
        out["corpus build"].append({**r, "mb": truth["bytes"] / 1e6, "load": r.get("load", load())})
        tok = cb.WORK / f"tok-{scale}x"
        r = measure([sys.executable, "-m", "expertlm", "tokenizer", "train", str(built), "--out", str(tok),
                     "--vocab-size", str(VOCAB), "--overwrite", "--no-progress"], env)  # fmt: skip
        out["tokenizer train"].append({**r, "mb": truth["bytes"] / 1e6, "load": load()})
        # (removed first: prepare skips a folder already up to date with this corpus and tokenizer)
        shutil.rmtree(cb.WORK / f"shards-{scale}x", ignore_errors=True)
        r = measure([sys.executable, "-m", "expertlm", "data", "prepare", str(built), "-t", str(tok),
                     "--out", str(cb.WORK / f"shards-{scale}x"), "--overwrite", "--no-progress"], env)  # fmt: skip
        meta = json.loads((cb.WORK / f"shards-{scale}x" / "meta.json").read_text())
        r["tokens"] = sum(meta["tokens"].values())
        out["data prepare"].append({**r, "mb": truth["bytes"] / 1e6, "load": load()})
        print(f"  {scale}x done ({load()})", file=sys.stderr)
    return out


def model(stage: str, pts: list[dict]) -> dict:
    x = np.array([p["mb"] for p in pts])
    m = {k: fit(x, np.array([p[k] for p in pts], dtype=float))
         for k in ("cpu_s", "serial_cpu_s", "root_rss", "children_rss")}  # fmt: skip
    m["children"] = max(p["children"] for p in pts)
    return m


def project(stage: str, m: dict, mb: float, cores: int) -> tuple[float, float]:
    """(wall seconds, peak RSS bytes) of `stage` on `mb` MB of text with `cores` cores."""
    f = lambda k: m[k][0] + m[k][1] * mb  # noqa: E731
    wall = max(f("serial_cpu_s"), f("cpu_s") / cores)
    rss = f("root_rss")
    if WORKERS[stage] and m["children"]:
        rss += f("children_rss") * cores / m["children"]  # one worker process per core
    else:
        rss += f("children_rss")
    return wall, rss


def worst_error(m: dict, pts: list[dict]) -> float:
    err = 0.0
    for p in pts:
        for k in ("cpu_s", "root_rss"):
            a, b = m[k]
            err = max(err, abs(a + b * p["mb"] - p[k]) / max(p[k], 1e-9))
    return err


def figure(pts: dict[str, list[dict]], models: dict[str, dict], cores: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(10, 4), dpi=90)
    xs = np.geomspace(10, PAPER_MB * 1.2, 60)
    for stage, color in zip(STAGES, ("C0", "C1", "C2"), strict=True):
        m, p = models[stage], pts[stage]
        for n, style in ((cores, "-"), (16, ":")):
            wall = [project(stage, m, x, n)[0] / 60 for x in xs]
            ax_t.plot(xs, wall, style, color=color, label=f"{stage}, {n} cores" + (" (fit)" if n == cores else ""))
        ax_t.plot([q["mb"] for q in p], [max(q["serial_cpu_s"], q["cpu_s"] / cores) / 60 for q in p], "o", color=color)
        ax_m.plot(xs, [project(stage, m, x, cores)[1] / 2**30 for x in xs], "-", color=color, label=f"{stage}, {cores} cores")
        ax_m.plot(xs, [project(stage, m, x, 16)[1] / 2**30 for x in xs], ":", color=color, label=f"{stage}, 16 cores")
        ax_m.plot([q["mb"] for q in p], [q["peak_rss"] / 2**30 for q in p], "o", color=color)
    for ax, label in ((ax_t, "wall time, minutes (projected: max(serial, CPU / cores))"),
                      (ax_m, "peak memory, GiB (process tree)")):  # fmt: skip
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.axvline(PAPER_MB, color="grey", lw=0.8)
        ax.text(PAPER_MB, ax.get_ylim()[0], " 1.3B tokens", color="grey", va="bottom", ha="right", rotation=90)
        ax.set_xlabel("corpus, MB of text (dots: measured 1x/4x/16x)")
        ax.set_title(label, fontsize=9)
        ax.grid(alpha=0.3, which="both")
    ax_t.legend(fontsize=6.5)
    ax_m.legend(fontsize=6.5)
    fig.tight_layout()
    fig.savefig(FIGURE)
    plt.close(fig)


def main() -> None:
    if not cb.SHARED.is_dir() or not list(cb.SHARED.glob("*.jsonl.gz")):
        print(f"{cb.SHARED} is missing: this benchmark builds its corpora from it (not bundled)")
        print("scale: no data (target fits within 15% of every point) FAIL")
        sys.exit(1)
    t0 = time.time()
    cb.WORK.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, EXPERTLM_NO_PROGRESS="1", HF_HUB_OFFLINE="1")
    cores = os.cpu_count() or 1
    before = load()
    pts = points(env)
    models = {s: model(s, pts[s]) for s in STAGES}

    print(f"{'':16s} {'corpus':>6s} {'MB':>7s} {'wall s':>7s} {'CPU s':>7s} {'serial s':>8s} {'RSS MB':>7s}  load")
    for stage in STAGES:
        for scale, p in zip(cb.SCALES, pts[stage], strict=True):
            print(f"{stage:16s} {scale:>5d}x {p['mb']:>7.1f} {p['wall_s']:>7.1f} {p['cpu_s']:>7.1f} "
                  f"{p['serial_cpu_s']:>8.1f} {p['peak_rss'] / 2**20:>7.0f}  {p['load']}")  # fmt: skip
    print(f"\nprojected for {PAPER_MB:,} MB of text (~1.3B tokens):")
    walls = {}
    for stage in STAGES:
        m = models[stage]
        here, rss_here = project(stage, m, PAPER_MB, cores)
        big, rss_big = project(stage, m, PAPER_MB, 16)
        walls[stage] = (here, big)
        print(f"  {stage:16s} {cores} cores: {here / 60:7.1f} min, {rss_here / 2**30:5.2f} GiB   "
              f"16 cores: {big / 60:7.1f} min, {rss_big / 2**30:5.2f} GiB   "
              f"(CPU {m['cpu_s'][1]:.2f} s/MB, serial {m['serial_cpu_s'][1]:.3f} s/MB)")  # fmt: skip
    dominant = max(STAGES, key=lambda s: walls[s][0])
    dominant16 = max(STAGES, key=lambda s: walls[s][1])
    total, total16 = sum(w[0] for w in walls.values()), sum(w[1] for w in walls.values())
    print(f"  all three: {total / 3600:.2f} h on {cores} cores, {total16 / 3600:.2f} h on 16; "
          f"dominant: {dominant} ({walls[dominant][0] / total:.0%}) here, {dominant16} on 16")
    figure(pts, models, cores)
    err = max(worst_error(models[s], pts[s]) for s in STAGES)
    print(f"figure: {FIGURE.relative_to(ROOT)} ({FIGURE.stat().st_size / 1e3:.0f} kB); {before} before, "
          f"{load()} after; {time.time() - t0:.0f} s in all")  # fmt: skip
    (cb.WORK / "scale.json").write_text(json.dumps({"points": pts, "models": models}, indent=1, default=str))
    print(f"scale: 1.3B tokens in {total / 3600:.2f} h on {cores} cores, {total16 / 3600:.2f} h on 16 "
          f"(dominant: {dominant}); fits within {err:.0%} of every point (target <=15%) "
          f"{'PASS' if err <= 0.15 else 'FAIL'}")


if __name__ == "__main__":
    main()
