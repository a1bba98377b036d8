"""`expertlm report RUN_DIR`: figures and tables of an experiment, as HTML, Markdown and PNG.

Reads `RUN_DIR/experiment.json` (written by `expertlm run`) and the results files it points to;
every number shown is copied from a results file, and `tables.csv` lists each one with its source
file and key. Writes `RUN_DIR/report/`: `index.html` (self-contained, figures embedded),
`report.md`, one PNG per figure, `tables.csv`.

Figures: accuracy per variant with 95% CIs (the paper's Figure 1), human experts as a band and the
synthetic ceilings as lines where present; calibration (accuracy by confidence bin, models and
humans); training and validation loss against tokens and FLOPs; the tokenizer comparison;
per-section accuracy. Tables: accuracy, pairwise McNemar tests between variants, bits per byte.
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
from expertlm.io import atomic_dir, check_output, read_json

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
    figures["accuracy.png"] = _fig_accuracy(exp, data, acc_rows, humans, nums)
    cal = _fig_calibration(exp, data, humans)
    if cal:
        figures["calibration.png"] = cal
    loss = _fig_loss(exp, data, nums)
    if loss:
        figures["loss.png"] = loss
    tok = _fig_tokenizers(exp, nums)
    if tok:
        figures["tokenizers.png"] = tok
    sec = _fig_sections(exp, data, nums)
    if sec:
        figures["sections.png"] = sec
    pairs = _mcnemar_table(exp, data, nums)
    ppl = _ppl_table(data, nums)

    headers = [
        "variant",
        "seed",
        "benchmark",
        "accuracy",
        "95% CI",
        "n",
        "ties",
        "calibration p (one-sided)",
    ]
    sections.append(("Accuracy", _html_table(headers, acc_rows["display"])))
    md += [
        "## Accuracy",
        "",
        _md_table(headers, acc_rows["display"]),
        "",
        "![accuracy](accuracy.png)",
        "",
    ]
    if acc_rows["mean"]:
        mh = ["variant", "benchmark", "seeds", "mean accuracy", "sd", "every seed"]
        sections.append(("Accuracy over seeds", _html_table(mh, acc_rows["mean"])))
        md += ["## Accuracy over seeds", "", _md_table(mh, acc_rows["mean"]), ""]
    if acc_rows["reference"]:
        rh = ["reference", "benchmark", "accuracy", "what it is"]
        sections.append(("Humans and ceilings", _html_table(rh, acc_rows["reference"])))
        md += ["## Humans and ceilings", "", _md_table(rh, acc_rows["reference"]), ""]
    if pairs:
        ph = [
            "benchmark",
            "A",
            "B",
            "acc A",
            "acc B",
            "B - A",
            "95% CI",
            "McNemar p",
            "only A right",
            "only B right",
        ]
        sections.append(
            ("Pairwise comparisons (McNemar exact, paired bootstrap)", _html_table(ph, pairs))
        )
        md += [
            "## Pairwise comparisons (McNemar exact test, paired bootstrap CI)",
            "",
            _md_table(ph, pairs),
            "",
        ]
    if ppl:
        qh = ["variant", "seed", "corpus", "bits per byte", "token perplexity", "tokens"]
        sections.append(("Held-out text (bits per byte)", _html_table(qh, ppl)))
        md += ["## Held-out text: bits per byte (forgetting)", "", _md_table(qh, ppl), ""]
    for name, title in (("calibration.png", "Calibration"), ("loss.png", "Training curves"),
                        ("tokenizers.png", "Tokenizers"), ("sections.png", "Accuracy per section")):  # fmt: skip
        if name in figures:
            md += [f"## {title}", "", f"![{title}]({name})", ""]
    md += [
        "## Sources",
        "",
        "Every number above is in `tables.csv` with the file and key it came from.",
        "",
    ]

    with atomic_dir(out, overwrite=True) as tmp:
        for name, png in figures.items():
            (tmp / name).write_bytes(png)
        (tmp / "report.md").write_text("\n".join(md), encoding="utf-8")
        (tmp / "index.html").write_text(_html(exp, figures, sections), encoding="utf-8")
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
        reference.append(
            [
                "human experts",
                "(their items)",
                _fmt(acc),
                f"pooled over {h['n']} trials of {h['participants']} participants",
            ]
        )
        reference.append(
            [
                "top 20% expertise",
                "(their items)",
                _fmt(top),
                "per abstract, the most expert 20% of trials",
            ]
        )
    for b, binfo in exp["benchmarks"].items():
        c = _ceilings(binfo)
        if c is None:
            continue
        path, table = c
        for key, (label, what) in _CEILINGS.items():
            if key in table:
                val = nums.take(
                    "ceilings",
                    path,
                    f"{binfo['ceilings_key']}.{key}.accuracy",
                    table[key]["accuracy"],
                    benchmark=b,
                )
                reference.append([label, b, _fmt(val), what])
    return {"display": display, "mean": mean_rows, "reference": reference}


_CEILINGS = {
    "oracle": ("oracle", "knows the true effects (1 - noise on published results)"),
    "class_integrator": (
        "class integrator",
        "logistic model on target classes, fitted to the training findings",
    ),
    "lowrank_integrator": (
        "low-rank integrator",
        "low-rank logistic model fitted to the training findings",
    ),
    "memoriser": (
        "memoriser",
        "exact (target, outcome) matches in the training findings, else chance",
    ),
}


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


def _fig_accuracy(exp, data, acc_rows, humans, nums) -> bytes:
    """The paper's Figure 1: accuracy per variant (mean over seeds, 95% CI), humans, ceilings."""
    import matplotlib.pyplot as plt

    benches = list(exp["benchmarks"])
    fig, axes = plt.subplots(
        1, len(benches), figsize=(max(6, 1.2 * len(data) + 2) * len(benches), 4.6), squeeze=False
    )
    colors = _colors(len(data))
    for ax, b in zip(axes[0], benches, strict=True):
        labels = []
        for k, v in enumerate(data.values()):
            accs, los, his = [], [], []
            for s in v["seeds"].values():
                if b in s["results"]:
                    summ = s["results"][b][1]
                    accs.append(summ["accuracy"])
                    los.append(summ["ci95"][0])
                    his.append(summ["ci95"][1])
            labels.append(v["spec"]["label"])
            if not accs:
                continue
            m = float(np.mean(accs))
            if len(accs) == 1:  # the bootstrap CI of the one seed
                err = [[m - los[0]], [his[0] - m]]
            else:  # mean of the seeds +- 1.96 SE over seeds
                se = float(np.std(accs, ddof=1) / math.sqrt(len(accs)))
                err = [[1.96 * se], [1.96 * se]]
            ax.bar(k, m, color=colors[k], alpha=0.8, edgecolor="k", yerr=err, capsize=4)
            if len(accs) > 1:
                ax.scatter([k] * len(accs), accs, color="k", s=10, zorder=3)
        ax.axhline(CHANCE, color="grey", lw=1, ls=":", label="chance")
        if humans is not None:
            h = humans[1]
            ax.axhspan(h["ci95"][0], h["ci95"][1], color="tab:blue", alpha=0.15)
            ax.axhline(
                h["accuracy"],
                color="tab:blue",
                lw=2,
                ls="--",
                label=f"human experts ({h['accuracy']:.3f})",
            )
        c = _ceilings(exp["benchmarks"][b])
        if c is not None:
            for key, style in (("oracle", ("k", "-")), ("lowrank_integrator", ("tab:red", "--")),
                               ("class_integrator", ("tab:orange", "--")), ("memoriser", ("tab:purple", ":"))):  # fmt: skip
                if key in c[1]:
                    val = c[1][key]["accuracy"]
                    ax.axhline(
                        val,
                        color=style[0],
                        ls=style[1],
                        lw=1.2,
                        label=f"{_CEILINGS[key][0]} ({val:.3f})",
                    )
        ax.set_xticks(range(len(labels)))
        ax.set_xticklabels(labels, rotation=25, ha="right")
        ax.set_ylim(0, 1.02)
        ax.set_ylabel("accuracy")
        ax.set_title(b)
        ax.spines[["top", "right"]].set_visible(False)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.42), ncol=3, frameon=False)
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
    ax.legend(fontsize=7)
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
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.2))
    for (label, rows, fpt), color in zip(runs, _colors(len(runs)), strict=True):
        t = np.array([r["tokens"] for r in rows], dtype=float)
        a1.plot(t, [r["loss"] for r in rows], color=color, alpha=0.6, label=f"{label} train")
        a2.plot(t * fpt, [r["loss"] for r in rows], color=color, alpha=0.6, label=f"{label} train")
        val = [(r["tokens"], r["val_loss"]) for r in rows if "val_loss" in r]
        if val:
            vt, vl = zip(*val, strict=True)
            a1.plot(vt, vl, color=color, marker="o", ls="--", label=f"{label} val")
            a2.plot(np.array(vt) * fpt, vl, color=color, marker="o", ls="--", label=f"{label} val")
    a1.set_xlabel("tokens")
    a2.set_xlabel("training FLOPs")
    a2.set_xscale("log")
    for ax in (a1, a2):
        ax.set_ylabel("loss (nats/token)")
        ax.spines[["top", "right"]].set_visible(False)
    a1.legend(fontsize=7)
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
    ax.legend(fontsize=7)
    ax.spines[["top", "right"]].set_visible(False)
    return _png(fig)


# --- HTML ------------------------------------------------------------------------------------

_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:.9em}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}img{max-width:100%}h2{margin-top:1.6em}"""

# Sets data-figures on <body> to "ok" once every figure has decoded with a size (the end-to-end
# test reads it from the DOM headless Chromium dumps), or to the count that failed.
_CHECK = """<script>window.addEventListener('load',function(){var imgs=[].slice.call(document.images);
var bad=imgs.filter(function(i){return !(i.complete&&i.naturalWidth>0)}).length;
document.body.setAttribute('data-figures',bad===0&&imgs.length>0?'ok':'failed '+bad+' of '+imgs.length);});</script>"""


def _html(exp, figures: dict[str, bytes], sections: list[tuple[str, str]]) -> str:
    def img(name: str, alt: str) -> str:
        b64 = base64.b64encode(figures[name]).decode()
        return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{b64}">'

    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(exp['name'])}</title>",
             f"<style>{_CSS}</style>{_CHECK}</head><body data-figures='pending'>",
             f"<h1>{html.escape(exp['name'])}</h1><p>{html.escape(exp.get('description', ''))}</p>",
             "<h2>Accuracy on the benchmarks</h2>", img("accuracy.png", "accuracy per variant")]  # fmt: skip
    for title, table in sections:
        parts.append(f"<h2>{html.escape(title)}</h2>{table}")
    for name, title in (("calibration.png", "Calibration"), ("loss.png", "Training and validation loss"),
                        ("tokenizers.png", "Tokenizers"), ("sections.png", "Accuracy per section")):  # fmt: skip
        if name in figures:
            parts.append(f"<h2>{title}</h2>{img(name, title)}")
    parts.append(
        "<p>Every number is in <code>tables.csv</code> with the file and key it came from.</p></body></html>"
    )
    return "\n".join(parts)
