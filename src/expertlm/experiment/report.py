"""`expertlm report RUN_DIR`: figures and tables of an experiment, as HTML, Markdown and PNG.

Reads `RUN_DIR/experiment.json` (written by `expertlm run`) and the results files it points to;
every number shown is copied from a results file, and `tables.csv` lists each one with its source
file and key. Writes `RUN_DIR/report/`: `index.html` (self-contained, figures embedded),
`report.md`, one PNG per figure, `tables.csv`.

Figures: accuracy per variant with 95% CIs (the paper's Figure 1), human experts as a band and the
synthetic ceilings as lines where present; calibration (accuracy by confidence bin, models and
humans); training and validation loss against tokens and FLOPs; the tokenizer comparison;
per-section accuracy; the adaptation panel (report_adaptation.py) where variants are post-trained
or merged by recipe. Tables: accuracy, pairwise McNemar tests between variants, bits per byte.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
from itertools import combinations
from pathlib import Path

import numpy as np

from expertlm.config import ReportConfig
from expertlm.console import info
from expertlm.errors import ExpertlmError
from expertlm.eval.exams import REPORT_HEADERS, report_rows
from expertlm.experiment import compute
from expertlm.experiment.report_adaptation import panel
from expertlm.io import atomic_dir, check_output, read_json
from expertlm.synth import paper

CHANCE = 0.5


class Numbers:
    """Every number the report shows, with the file and key it came from (tables.csv)."""

    def __init__(self) -> None:
        self.rows: list[dict] = []

    def take(self, table: str, source: Path | str, key: str, value, **labels):
        self.rows.append({"table": table, **{k: labels.get(k, "") for k in ("variant", "seed", "benchmark")},
                          "quantity": key, "value": value, "source": str(source)})  # fmt: skip
        return value


def _get(d: dict, dotted: str):
    for part in dotted.split("."):
        d = d[part] if isinstance(d, dict) else d[int(part)]
    return d


def _load(exp: dict) -> dict:
    """Per variant, per seed, per benchmark: the summary.json contents and paths."""
    data = {}
    for v in exp["variants"]:
        seeds = {}
        for seed, s in v["seeds"].items():
            seeds[seed] = {
                "model": s["model"],
                "results": {b: (Path(p), read_json(Path(p) / "summary.json")) for b, p in s["results"].items()
                            if (Path(p) / "summary.json").is_file()},
                "ppl": {c: (Path(p), read_json(Path(p) / "ppl.json")) for c, p in s["ppl"].items()
                        if (Path(p) / "ppl.json").is_file()},
            }  # fmt: skip
        data[v["name"]] = {"spec": v, "seeds": seeds}
    return data


def report(run_dir: str | Path, out: str | Path | None = None, *, show_progress: bool = True,
           **options) -> Path:  # fmt: skip
    """Write the report of the experiment in `run_dir` into `out` (default: `run_dir/report`),
    replacing an earlier report. `options`: the fields of `ReportConfig` (none yet)."""
    ReportConfig.from_options(options)
    import matplotlib

    matplotlib.use("Agg")
    run_dir = Path(run_dir)
    if not (run_dir / "experiment.json").is_file():
        raise ExpertlmError(
            f"{run_dir}: no experiment.json (run `expertlm run EXPERIMENT.yaml` first)"
        )
    exp = read_json(run_dir / "experiment.json")
    out = Path(out) if out is not None else run_dir / "report"
    check_output(out)
    if out.resolve() == run_dir.resolve() or out.resolve() in run_dir.resolve().parents:
        raise ExpertlmError(f"{out}: is or holds the experiment folder {run_dir}; name another report folder")
    data = _load(exp)
    nums = Numbers()
    humans = None
    if exp.get("humans") and (Path(exp["humans"]) / "summary.json").is_file():
        humans = (
            Path(exp["humans"]) / "summary.json",
            read_json(Path(exp["humans"]) / "summary.json"),
        )
    sections: list[tuple[str, str]] = []  # (title, html)
    md: list[str] = [f"# {exp['name']}", "", exp.get("description", ""), ""]
    figures: dict[str, bytes] = {}

    acc_rows = _accuracy_table(exp, data, nums, humans)
    claims = _claims(exp, data, nums)
    figures["accuracy.png"] = _fig_accuracy(exp, data, humans)
    for name, fig in (("calibration.png", _fig_calibration(exp, data, humans)), ("loss.png", _fig_loss(exp, data, nums)),
                      ("tokenizers.png", _fig_tokenizers(exp, nums)), ("sections.png", _fig_sections(exp, data, nums))):  # fmt: skip
        if fig:
            figures[name] = fig
    pairs = _mcnemar_table(exp, data, nums)
    ppl = _ppl_table(data, nums)
    adaptation = panel(exp, data, nums, _fmt)  # None without post-trained or recipe-merged variants
    if adaptation is not None:
        figures["adaptation.png"] = adaptation["figure"]
    exams = report_rows(data, nums.take)
    summary = _summary(exp, data, claims)
    files: dict[str, bytes] = {}  # besides the figures (the compute panel's table)
    compute_rows = _compute_panel(exp, nums, figures, files)
    md += ["## Figure 1: accuracy per variant", "", "![accuracy](accuracy.png)", "", summary, ""]

    def add(title: str, headers: list[str], rows: list[list]) -> None:
        sections.append((title, _html_table(headers, rows)))
        md.extend([f"## {title}", "", _md_table(headers, rows), ""])

    if claims:
        add(f"The paper's claims on {claims[0]['benchmark']} ({paper.REFERENCE})",
            ["claim", "better", "worse", "seed", "difference", "95% CI", "McNemar p", "verdict"],
            [[c["claim"], c["better"], c["worse"], c["seed"], f"{c['difference']:+.3f}", c["ci"],
              "n/a" if c["p"] is None else f"{c['p']:.3g}", c["verdict"]] for c in claims])  # fmt: skip
    add("Accuracy", ["variant", "seed", "benchmark", "accuracy", "95% CI", "n", "ties",
                     "calibration p (one-sided)"], acc_rows["display"])  # fmt: skip
    if acc_rows["mean"]:
        add("Accuracy over seeds", ["variant", "benchmark", "seeds", "mean accuracy", "sd", "every seed"],
            acc_rows["mean"])  # fmt: skip
    if acc_rows["reference"]:
        add("Humans and ceilings", ["reference", "benchmark", "accuracy", "what it is"], acc_rows["reference"])
    if pairs:
        add("Pairwise comparisons (McNemar exact test, paired bootstrap CI)",
            ["benchmark", "A", "B", "acc A", "acc B", "B - A", "95% CI", "McNemar p", "only A right",
             "only B right"], pairs)  # fmt: skip
    if exams:
        add("Exams: lm-evaluation-harness metrics (95% CI); acc_ppl is the perplexity rule", REPORT_HEADERS, exams)
    if compute_rows:
        add("Compute-effectiveness and forgetting per size (compute.csv; docs/specialization.md)",
            compute.HEADERS, compute_rows)  # fmt: skip
    for title, headers, rows in adaptation["sections"] if adaptation else ():
        add(title, headers, rows)
    if ppl:
        add("Held-out text: bits per byte (forgetting)",
            ["variant", "seed", "corpus", "bits per byte", "token perplexity", "tokens"], ppl)
    for name, title in _FIGURES:
        if name in figures:
            md += [f"## {title}", "", f"![{title}]({name})", ""]
    md += ["## Sources", "", "Every number above is in `tables.csv` with the file and key it came from.", ""]

    with atomic_dir(out, overwrite=True) as tmp:
        for name, png in (figures | files).items():
            (tmp / name).write_bytes(png)
        (tmp / "report.md").write_text("\n".join(md), encoding="utf-8")
        (tmp / "index.html").write_text(_html(exp, figures, summary, sections), encoding="utf-8")
        with open(tmp / "tables.csv", "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=["table", "variant", "seed", "benchmark", "quantity", "value", "source"],
                               lineterminator="\n")  # fmt: skip
            w.writeheader()
            w.writerows(nums.rows)
    info(
        f"report: {out / 'index.html'} ({len(figures)} figures, {len(nums.rows)} numbers with their sources)"
    )
    return out


# --- tables ----------------------------------------------------------------------------------


def _fmt(x, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:.{digits}f}"


def _accuracy_table(exp, data, nums: Numbers, humans) -> dict:
    display, mean_rows, reference = [], [], []
    per_variant: dict[tuple[str, str], list[float]] = {}
    for name, v in data.items():
        for seed, s in v["seeds"].items():
            for b, (path, summ) in s["results"].items():
                src = path / "summary.json"
                lab = {"variant": name, "seed": seed, "benchmark": b}
                acc = nums.take("accuracy", src, "accuracy", summ["accuracy"], **lab)
                lo, hi = (
                    nums.take("accuracy", src, f"ci95.{k}", summ["ci95"][k], **lab) for k in (0, 1)
                )
                n = nums.take("accuracy", src, "n", summ["n"], **lab)
                ties = nums.take("accuracy", src, "ties", summ["ties"], **lab)
                reg = (summ.get("calibration") or {}).get("regression") or {}
                p = (reg.get("wald") or {}).get("p_one_sided")
                if p is not None:
                    nums.take("accuracy", src, "calibration.regression.wald.p_one_sided", p, **lab)
                display.append([v["spec"]["label"], seed, b, _fmt(acc), f"{_fmt(lo)}-{_fmt(hi)}", n, ties,
                                _fmt(p, 4) if p is not None else "n/a"])  # fmt: skip
                per_variant.setdefault((name, b), []).append(acc)
    for (name, b), accs in per_variant.items():
        if len(accs) > 1:
            mean_rows.append([data[name]["spec"]["label"], b, len(accs), _fmt(float(np.mean(accs))),
                              _fmt(float(np.std(accs, ddof=1))), ", ".join(_fmt(a) for a in accs)])  # fmt: skip
    if humans is not None:
        src, h = humans
        acc = nums.take("humans", src, "accuracy", h["accuracy"])
        top = nums.take("humans", src, "top_expertise.accuracy", h["top_expertise"]["accuracy"])
        reference += [["human experts", "(their items)", _fmt(acc),
                       f"pooled over {h['n']} trials of {h['participants']} participants"],
                      ["top 20% expertise", "(their items)", _fmt(top), "per abstract, the most expert 20% of trials"]]  # fmt: skip
    for b, binfo in exp["benchmarks"].items():
        c = _ceilings(binfo)
        for key, (label, what) in _CEILINGS.items() if c is not None else ():
            if key in c[1]:
                val = nums.take("ceilings", c[0], f"{binfo['ceilings_key']}.{key}.accuracy", c[1][key]["accuracy"],
                                benchmark=b)  # fmt: skip
                reference.append([label, b, _fmt(val), what])
    return {"display": display, "mean": mean_rows, "reference": reference}


_CEILINGS = {
    "oracle": ("oracle", "knows the true effects (1 - noise on published results)"),
    "class_integrator": ("class integrator", "logistic model on target classes, fitted to the training findings"),
    "lowrank_integrator": ("low-rank integrator", "low-rank logistic model fitted to the training findings"),
    "memoriser": ("memoriser", "exact (target, outcome) matches in the training findings, else chance"),
}  # fmt: skip


def _ceilings(binfo: dict):
    """The synthetic field's ceilings on this benchmark file: (path, {baseline: {accuracy, ...}})."""
    if not binfo.get("ceilings") or not Path(binfo["ceilings"]).is_file():
        return None
    path = Path(binfo["ceilings"])
    file = Path(binfo["path"]).name
    table = {
        name: per[file]
        for name, per in (read_json(path).get("ceilings") or {}).items()
        if isinstance(per, dict) and file in per
    }
    return (path, table) if table else None


def _mcnemar_table(exp, data, nums: Numbers) -> list[list]:
    """Every pair of variants on every benchmark, seed by seed where both have the seed."""
    from expertlm.eval.evaluate import eval_compare

    rows = []
    names = list(data)
    for b in exp["benchmarks"]:
        for a, c in combinations(names, 2):
            sa, sc = data[a]["seeds"], data[c]["seeds"]
            common = [s for s in sa if s in sc] or ([next(iter(sa))] if sa and sc else [])
            for seed in common:
                pa = sa[seed]["results"].get(b)
                pc = (sc.get(seed) or next(iter(sc.values())))["results"].get(b)
                if pa is None or pc is None:
                    continue
                r = eval_compare(pa[0], pc[0])
                lab = {"variant": f"{a} vs {c}", "seed": seed, "benchmark": b}
                src = f"{pa[0] / 'items.csv'} + {pc[0] / 'items.csv'}"
                p = nums.take("mcnemar", src, "mcnemar.p_value", r["mcnemar"]["p_value"], **lab)
                d = nums.take(
                    "mcnemar", src, "b_minus_a.difference", r["b_minus_a"]["difference"], **lab
                )
                lo, hi = r["b_minus_a"]["ci95"]
                rows.append([b, f"{data[a]['spec']['label']} (seed {seed})", data[c]["spec"]["label"],
                             _fmt(r["accuracy_a"]), _fmt(r["accuracy_b"]), f"{d:+.3f}", f"{lo:+.3f} to {hi:+.3f}",
                             f"{p:.3g}", r["mcnemar"]["only_a_correct"], r["mcnemar"]["only_b_correct"]])  # fmt: skip
    return rows


def _claims(exp, data, nums: Numbers) -> list[dict]:
    """The paper's claims (`synth/paper.py`) on the first benchmark, seed by seed, for the
    variants that play its roles; then whether every variant stays below the realistic ceiling."""
    from expertlm.eval.evaluate import eval_compare

    b = next(iter(exp["benchmarks"]), None)
    role = {paper.ROLE[n]: n for n in data if n in paper.ROLE}
    rows = []
    for better, worse, claim in paper.CLAIMS:
        if better not in role or worse not in role:
            continue
        hi, lo = data[role[better]], data[role[worse]]
        for seed in [s for s in hi["seeds"] if s in lo["seeds"]]:
            pb, pw = hi["seeds"][seed]["results"].get(b), lo["seeds"][seed]["results"].get(b)
            if pb is None or pw is None:
                continue
            r = eval_compare(pw[0], pb[0])
            lab = {"variant": f"{role[better]} vs {role[worse]}", "seed": seed, "benchmark": b}
            src = f"{pw[0] / 'items.csv'} + {pb[0] / 'items.csv'}"
            d = nums.take("claims", src, "b_minus_a.difference", r["b_minus_a"]["difference"], **lab)
            p = nums.take("claims", src, "mcnemar.p_value", r["mcnemar"]["p_value"], **lab)
            lo95, hi95 = r["b_minus_a"]["ci95"]
            rows.append({"claim": claim, "better": hi["spec"]["label"], "worse": lo["spec"]["label"], "seed": seed,
                         "benchmark": b, "difference": d, "ci": f"{lo95:+.3f} to {hi95:+.3f}", "p": p,
                         "verdict": paper.verdict(d, p), "n": r["n"], "discordant": r["mcnemar"]["discordant"],
                         "paper_difference": paper.PAPER[better][1] - paper.PAPER[worse][1]})  # fmt: skip
    ceiling = _best_integrator(exp, b)
    if rows and ceiling is not None:
        accs = [(v["spec"]["label"], s["results"][b][1]) for v in data.values() for s in v["seeds"].values()
                if b in s["results"]]  # fmt: skip
        name, top = max(accs, key=lambda x: x[1]["accuracy"])
        below = all(a["ci95"][1] < ceiling[1] for _, a in accs)
        rows.append({"claim": f"every variant scores below the {ceiling[0]} ({ceiling[1]:.3f})", "better": ceiling[0],
                     "worse": f"best: {name}", "seed": "", "benchmark": b, "difference": ceiling[1] - top["accuracy"],
                     "ci": "(95% CI of every variant below it)" if below else "(a variant's 95% CI reaches it)",
                     "p": None, "verdict": "shown" if below else ("same direction, not significant"
                     if ceiling[1] > top["accuracy"] else "not shown")})  # fmt: skip
    return rows


def _best_integrator(exp, b) -> tuple[str, float] | None:
    """The better of the synthetic field's two integrators on benchmark `b`: (label, accuracy)."""
    c = _ceilings(exp["benchmarks"][b]) if b in exp["benchmarks"] else None
    found = [(_CEILINGS[k][0], c[1][k]["accuracy"]) for k in ("class_integrator", "lowrank_integrator")
             if c is not None and k in c[1]]  # fmt: skip
    return max(found, key=lambda x: x[1]) if found else None


def _summary(exp, data, claims: list[dict]) -> str:
    """The plain-language paragraph under Figure 1 (`paper.summary`)."""
    b = next(iter(exp["benchmarks"]), None)
    firsts = [(n, v["spec"]["label"], s["results"][b][1]) for n, v in data.items()
              if (s := _first(v)) and b in s["results"]]  # fmt: skip
    if not firsts:
        return ""
    _, label, top = max(firsts, key=lambda x: x[2]["accuracy"])
    untrained = next((x[2]["accuracy"] for x in firsts if paper.ROLE.get(x[0]) == "untrained"), None)
    return paper.summary(b, top["n"], (label, top["accuracy"], *top["ci95"]), untrained,
                         _best_integrator(exp, b), [c for c in claims if c["p"] is not None])  # fmt: skip


def _ppl_table(data, nums: Numbers) -> list[list]:
    rows = []
    for name, v in data.items():
        for seed, s in v["seeds"].items():
            for c, (path, r) in s["ppl"].items():
                src = path / "ppl.json"
                lab = {"variant": name, "seed": seed, "benchmark": f"ppl:{c}"}
                bpb = nums.take("ppl", src, "bits_per_byte", r["bits_per_byte"], **lab)
                tp = nums.take("ppl", src, "token_perplexity", r["token_perplexity"], **lab)
                rows.append(
                    [v["spec"]["label"], seed, c, _fmt(bpb, 4), _fmt(tp, 2), f"{r['tokens']:,}"]
                )
    return rows


def _md_table(headers, rows) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def _html_table(headers, rows) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


# --- figures ---------------------------------------------------------------------------------


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _colors(n: int):
    import matplotlib.pyplot as plt

    cmap = plt.get_cmap("tab10")
    return [cmap(i % 10) for i in range(n)]


def _fig_accuracy(exp, data, humans) -> bytes:
    """The paper's Figure 1: accuracy per variant (mean over seeds, 95% CI), one panel per
    benchmark, stacked; humans, ceilings, and on the first panel the paper's value beside each
    variant that plays one of its roles (hatched)."""
    import matplotlib.pyplot as plt

    benches = list(exp["benchmarks"])
    width = min(10.0, max(6.0, 1.1 * len(data) + 2))  # at most the page's width at 110 dpi
    fig, axes = plt.subplots(len(benches), 1, figsize=(width, 4.6 * len(benches)), squeeze=False)
    colors = _colors(len(data))
    for i, (ax, b) in enumerate(zip(axes[:, 0], benches, strict=True)):
        show_paper = i == 0 and any(n in paper.ROLE for n in data)
        labels = []
        for k, (name, v) in enumerate(data.items()):
            labels.append(v["spec"]["label"])
            summ = [s["results"][b][1] for s in v["seeds"].values() if b in s["results"]]
            if summ:
                accs = [x["accuracy"] for x in summ]
                m = float(np.mean(accs))
                if len(accs) == 1:  # the bootstrap CI of the one seed
                    err = [[m - summ[0]["ci95"][0]], [summ[0]["ci95"][1] - m]]
                else:  # mean of the seeds +- 1.96 SE over seeds
                    se = 1.96 * float(np.std(accs, ddof=1) / math.sqrt(len(accs)))
                    err = [[se], [se]]
                x = k - 0.2 if show_paper else k
                ax.bar(x, m, 0.4 if show_paper else 0.8, color=colors[k], alpha=0.85, edgecolor="k", yerr=err, capsize=3)
                ax.text(x, 0.03, f"{m:.3f}", ha="center", fontsize=8, rotation=90, color="white", weight="bold")
                if len(accs) > 1:
                    ax.scatter([x] * len(accs), accs, color="k", s=10, zorder=3)
            if show_paper and name in paper.ROLE:
                label, val = paper.PAPER[paper.ROLE[name]]
                ax.bar(k + 0.2, val, 0.4, color="white", edgecolor=colors[k], hatch="///", lw=1.5)
                ax.text(k + 0.2, 0.03, f"{val:.3f}", ha="center", fontsize=8, rotation=90)
        if show_paper:
            ax.bar([0], [0], 0, color="white", edgecolor="grey", hatch="///", label=f"the paper: {paper.REFERENCE}")
        ax.axhline(CHANCE, color="grey", lw=1, ls=":", label="chance")
        if humans is not None:
            h = humans[1]
            ax.axhspan(h["ci95"][0], h["ci95"][1], color="tab:blue", alpha=0.15)
            ax.axhline(h["accuracy"], color="tab:blue", lw=2, ls="--", label=f"human experts ({h['accuracy']:.3f})")
        elif show_paper:
            ax.axhline(paper.HUMAN_EXPERTS, color="tab:blue", lw=1.5, ls="--",
                       label=f"human experts in the paper ({paper.HUMAN_EXPERTS:.3f})")  # fmt: skip
        c = _ceilings(exp["benchmarks"][b])
        for key, (color, ls) in (("oracle", ("k", "-")), ("lowrank_integrator", ("tab:red", "--")),
                                 ("class_integrator", ("tab:orange", "--")), ("memoriser", ("tab:purple", ":"))):  # fmt: skip
            if c is not None and key in c[1]:
                val = c[1][key]["accuracy"]
                ax.axhline(val, color=color, ls=ls, lw=1.2, label=f"{_CEILINGS[key][0]} ({val:.3f})")
        ax.set_xticks(range(len(labels)))
        ax.set_xticklabels(labels, rotation=20, ha="right", fontsize=9)
        ax.set_ylim(0, 1.02)
        ax.set_ylabel("accuracy")
        ax.set_title(f"{b}: this experiment (solid){' and the paper (hatched)' if show_paper else ''}")
        ax.spines[["top", "right"]].set_visible(False)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    return _png(fig)


def _first(v: dict) -> dict | None:
    return next(iter(v["seeds"].values()), None)


def _fig_calibration(exp, data, humans) -> bytes | None:
    import matplotlib.pyplot as plt

    b = next(iter(exp["benchmarks"]), None)
    curves = []
    for v in data.values():
        s = _first(v)
        if s and b in s["results"]:
            bins = s["results"][b][1]["calibration"]["bins"]
            curves.append((v["spec"]["label"], [x["accuracy"] for x in bins]))
    if humans is not None:
        curves.append(("human experts", [x["accuracy"] for x in humans[1]["calibration"]["bins"]]))
    if not curves:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.4))
    for (label, accs), color in zip(curves, _colors(len(curves)), strict=True):
        x = (np.arange(len(accs)) + 0.5) / len(accs)
        ax.plot(
            x, [a if a is not None else np.nan for a in accs], marker="o", color=color, label=label
        )
    ax.axhline(CHANCE, color="grey", ls=":", lw=1)
    ax.set_xlabel("confidence rank (equal-count bins, low to high)")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"calibration on {b} (models: |ΔPPL|; humans: self-rated)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    return _png(fig)


def _fig_loss(exp, data, nums) -> bytes | None:
    import matplotlib.pyplot as plt

    runs = []
    for v in data.values():
        s = _first(v)
        if not s:
            continue
        model = Path(s["model"])
        if not (model / "metrics.jsonl").is_file() or not (model / "run.json").is_file():
            continue
        rows = [
            json.loads(line)
            for line in (model / "metrics.jsonl").read_text().splitlines()
            if line.strip()
        ]
        fpt = read_json(model / "run.json").get("flops_per_token") or 0
        runs.append((v["spec"]["label"], rows, fpt))
    if not runs:
        return None
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4.2))
    for (label, rows, fpt), color in zip(runs, _colors(len(runs)), strict=True):
        t = np.array([r["tokens"] for r in rows], dtype=float)
        a1.plot(t, [r["loss"] for r in rows], color=color, alpha=0.6, label=label)
        a2.plot(t * fpt, [r["loss"] for r in rows], color=color, alpha=0.6)
        val = [(r["tokens"], r["val_loss"]) for r in rows if "val_loss" in r]
        if val:
            vt, vl = zip(*val, strict=True)
            a1.plot(vt, vl, color=color, marker="o", ms=3, ls="--")
            a2.plot(np.array(vt) * fpt, vl, color=color, marker="o", ms=3, ls="--")
    a1.set_xlabel("tokens")
    a2.set_xlabel("training FLOPs")
    a2.set_xscale("log")
    for ax in (a1, a2):
        ax.set_ylabel("loss (nats/token)")
        ax.spines[["top", "right"]].set_visible(False)
    fig.suptitle("training loss (solid) and validation loss (dashed, dots)", fontsize=10)
    fig.legend(fontsize=8, loc="lower center", bbox_to_anchor=(0.5, -0.08), ncol=3, frameon=False)
    return _png(fig)


def _fig_tokenizers(exp, nums) -> bytes | None:
    import matplotlib.pyplot as plt

    path = exp.get("tokenizer_comparison")
    if not path or not Path(path).is_file():
        return None
    r = read_json(path)
    names = [Path(t["tokenizer"]).name for t in r["tokenizers"]]
    fert = [nums.take("tokenizers", path, f"tokenizers.{k}.fertility", t["fertility"], variant=names[k])
            for k, t in enumerate(r["tokenizers"])]  # fmt: skip
    whole = [nums.take("tokenizers", path, f"tokenizers.{k}.whole_word_share", t["whole_word_share"], variant=names[k])
             for k, t in enumerate(r["tokenizers"])]  # fmt: skip
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.6))
    colors = _colors(len(names))
    a1.bar(names, fert, color=colors, edgecolor="k")
    a1.set_ylabel("tokens per word (fertility)")
    a2.bar(names, whole, color=colors, edgecolor="k")
    a2.set_ylabel("words kept whole")
    a2.set_ylim(0, 1)
    fig.suptitle(f"tokenizers on {Path(r['corpus']).name} ({r['split']}, {r['docs']} documents)")
    for ax in (a1, a2):
        ax.spines[["top", "right"]].set_visible(False)
    return _png(fig)


def _fig_sections(exp, data, nums) -> bytes | None:
    import matplotlib.pyplot as plt

    b = next(iter(exp["benchmarks"]), None)
    per = {}
    for v in data.values():
        s = _first(v)
        if s and b in s["results"]:
            per[v["spec"]["label"]] = s["results"][b][1]["per_section"]
    sections = sorted({sec for p in per.values() for sec in p})
    if not per or len(sections) < 2:
        return None
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(sections) + 2), 4))
    width = 0.8 / len(per)
    for k, ((label, p), color) in enumerate(zip(per.items(), _colors(len(per)), strict=True)):
        ax.bar(np.arange(len(sections)) + k * width, [p.get(s, {}).get("accuracy", np.nan) for s in sections],
               width, color=color, edgecolor="k", label=label)  # fmt: skip
    ax.axhline(CHANCE, color="grey", ls=":", lw=1)
    ax.set_xticks(np.arange(len(sections)) + 0.4 - width / 2)
    ax.set_xticklabels(sections, rotation=15)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("accuracy")
    ax.set_title(f"accuracy per section on {b}")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    return _png(fig)


# --- HTML ------------------------------------------------------------------------------------

_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:.9em}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}img{max-width:100%}h2{margin-top:1.6em}
p.summary{font-size:1.05em;line-height:1.5;background:#f7f7f2;border-left:4px solid #888;padding:.6em 1em}"""

# Sets data-figures on <body> to "ok" once every figure has decoded with a size, or to the count
# that failed, and data-scales to each figure's pixels per displayed pixel (above about 1.5 its
# text is shrunk below legibility); the end-to-end test reads both from the DOM headless Chromium
# dumps.
_CHECK = """<script>window.addEventListener('load',function(){var imgs=[].slice.call(document.images);
var bad=imgs.filter(function(i){return !(i.complete&&i.naturalWidth>0)}).length;
document.body.setAttribute('data-scales',imgs.map(function(i){return (i.naturalWidth/Math.max(i.clientWidth,1)).toFixed(2)}).join(' '));
document.body.setAttribute('data-figures',bad===0&&imgs.length>0?'ok':'failed '+bad+' of '+imgs.length);});</script>"""


def _compute_panel(exp, nums: Numbers, figures: dict, files: dict) -> list[list]:
    """Score vs FLOPs per size, filtered vs unfiltered (`compute.py`), where the experiment
    has checkpoint evaluations and an eval.compute section."""
    entries = compute.panel_data(exp)
    if not entries:
        return []
    rows, records = compute.table(entries, nums.take)
    figures["compute.png"] = compute.figure(entries, _png)
    files["compute.csv"] = compute.records_csv(records)
    files["compute.json"] = json.dumps({"format": "expertlm.compute/1", "definitions": compute.__doc__,
                                        "sizes": records}, indent=1).encode()  # fmt: skip
    return rows


_FIGURES = (("compute.png", "Score vs continued-training FLOPs per size (filtered solid, unfiltered dashed)"),
            ("adaptation.png", "Adaptation: accuracy and bits per byte vs the base"),
            ("calibration.png", "Calibration"), ("loss.png", "Training and validation loss"),
            ("tokenizers.png", "Tokenizers"), ("sections.png", "Accuracy per section"))  # fmt: skip


def _html(exp, figures: dict[str, bytes], summary: str, sections: list[tuple[str, str]]) -> str:
    def img(name: str, alt: str) -> str:
        b64 = base64.b64encode(figures[name]).decode()
        return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{b64}">'

    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(exp['name'])}</title>",
             f"<style>{_CSS}</style>{_CHECK}</head><body data-figures='pending'>",
             f"<h1>{html.escape(exp['name'])}</h1><p>{html.escape(exp.get('description', ''))}</p>",
             "<h2>Figure 1: accuracy per variant</h2>", img("accuracy.png", "accuracy per variant"),
             f"<p class='summary'>{html.escape(summary)}</p>" if summary else ""]  # fmt: skip
    for title, table in sections:
        parts.append(f"<h2>{html.escape(title)}</h2>{table}")
    for name, title in _FIGURES:
        if name in figures:
            parts.append(f"<h2>{title}</h2>{img(name, title)}")
    parts.append(
        "<p>Every number is in <code>tables.csv</code> with the file and key it came from.</p></body></html>"
    )
    return "\n".join(parts)
