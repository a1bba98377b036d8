"""The report's compute panel: score against training FLOPs per model size, filtered vs
unfiltered continued pretraining, compute-effectiveness and forgetting (docs/specialization.md).

Shown when the experiment has checkpoint evaluations and an `eval.compute` section naming, per
size, the base variant and its two continuations. The curves are the checkpoint tables of
`eval bench --checkpoints` and `eval ppl --checkpoints` (`eval/checkpoints.py`): step 0 is the
base itself, and the FLOPs are those of the continued training only (both continuations of a
size start from the same base, so its own training is a shared constant).

- **Compute-effectiveness** of a size: E = F_u(L_f) / F_f, where L_f is the filtered run's
  final domain loss (bits per byte on held-out domain text), F_f the FLOPs it took, and
  F_u(L) the FLOPs at which the unfiltered run's domain loss first reaches L, interpolated
  linearly in log FLOPs between the two checkpoints around the crossing (linearly in FLOPs
  between step 0, at zero FLOPs, and the first checkpoint). E > 1: the filtered data reach the
  same domain loss with fewer FLOPs. When the unfiltered run never reaches L_f, E is "not
  reached", and E > F_u,final / F_f is all that is known.
- **The same question the other way round**, measurable when E is not: R = F_u / F_f(L_u),
  where L_u is the unfiltered run's final domain loss, F_u its FLOPs, and F_f(L) the FLOPs at
  which the filtered run first reaches L (the same interpolation). R > 1: the filtered run
  matched the unfiltered run's final domain loss with R times fewer FLOPs.
- **Forgetting** of a run: the change in general-field bits per byte from its base,
  G_final - G_base (positive: forgotten).
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from expertlm.eval.checkpoints import read_table


def flops_to_reach(flops: list[float], loss: list[float], target: float) -> float | None:
    """FLOPs at which a curve (sorted by FLOPs) first reaches `target` or lower: interpolated
    in log FLOPs between checkpoints, in FLOPs from a zero-FLOP start; None: never reached."""
    if not flops:
        return None
    if loss[0] <= target:
        return float(flops[0])
    points = list(zip(flops, loss, strict=True))
    for (f0, l0), (f1, l1) in zip(points, points[1:], strict=False):  # consecutive pairs
        if l1 <= target < l0:
            w = (l0 - target) / (l0 - l1)
            if f0 <= 0:
                return float(f1 * w)
            return float(math.exp(math.log(f0) + w * (math.log(f1) - math.log(f0))))
    return None


def effectiveness(filtered: dict, unfiltered: dict) -> dict:
    """E = F_u(L_f) / F_f from two curves {"flops": [...], "loss": [...]} (domain loss)."""
    target, f_f = filtered["loss"][-1], filtered["flops"][-1]
    reached = flops_to_reach(unfiltered["flops"], unfiltered["loss"], target)
    back = flops_to_reach(filtered["flops"], filtered["loss"], unfiltered["loss"][-1])
    out = {"target_loss": target, "filtered_flops": f_f, "unfiltered_flops_to_reach": reached,
           # R = F_u / F_f(L_u): the filtered run's FLOPs to the unfiltered run's final loss
           "filtered_flops_to_reach": back,
           "reverse_ratio": unfiltered["flops"][-1] / back if back else None}  # fmt: skip
    if reached is not None:
        return out | {"ratio": reached / f_f if f_f > 0 else None, "reached": True}
    return out | {"ratio": None, "reached": False,
                  "ratio_lower_bound": unfiltered["flops"][-1] / f_f if f_f > 0 else None}  # fmt: skip


def forgetting(general: dict) -> dict:
    """Change in general bits per byte from the base (step 0) to the end of a run."""
    base, final = general["loss"][0], general["loss"][-1]
    return {"base_bpb": base, "final_bpb": final, "change": final - base}


def _curve(results: str | Path, metric: str) -> dict | None:
    table = read_table(results)
    if table is None:
        return None
    rows = sorted(table["rows"], key=lambda r: r["flops"])
    return {"flops": [r["flops"] for r in rows], "loss": [r[metric] for r in rows],
            "steps": [r["step"] for r in rows], "rows": rows,
            "source": str(Path(results) / "checkpoints.json")}  # fmt: skip


def panel_data(exp: dict) -> list[dict]:
    """One entry per size and seed: the curves of both runs and the panel's numbers."""
    c = exp.get("compute")
    if not c or not exp.get("checkpoints"):
        return []
    variants = {v["name"]: v for v in exp["variants"]}
    out = []
    for size, s in c["sizes"].items():
        runs = {role: variants.get(s[role]) for role in ("filtered", "unfiltered")}
        if any(v is None for v in runs.values()):
            continue
        for seed in runs["filtered"]["seeds"]:
            curves = {}
            for role, v in runs.items():
                paths = v["seeds"].get(seed)
                if paths is None:
                    break
                curves[role] = {
                    "bench": _curve(paths["results"].get(c["benchmark"], ""), "accuracy"),
                    "domain": _curve(paths["ppl"].get(c["domain"], ""), "bits_per_byte"),
                    "general": _curve(paths["ppl"].get(c["general"], ""), "bits_per_byte"),
                }
            if len(curves) < 2 or any(x is None for r in curves.values() for x in r.values()):
                continue
            entry = {"size": size, "seed": seed, "base": s["base"], "curves": curves,
                     "effectiveness": effectiveness(curves["filtered"]["domain"], curves["unfiltered"]["domain"]),
                     "forgetting": {role: forgetting(curves[role]["general"]) for role in curves}}  # fmt: skip
            out.append(entry)
    return out


def _final_acc(curve: dict) -> tuple[float, float, float]:
    r = curve["rows"][-1]
    return r["accuracy"], r["ci95_low"], r["ci95_high"]


HEADERS = ["size", "seed", "FLOPs per run", "forward acc. filtered (95% CI)",
           "forward acc. unfiltered (95% CI)", "domain bpb filtered", "domain bpb unfiltered",
           "unfiltered FLOPs to reach", "compute-effectiveness E", "filtered FLOPs to the "
           "unfiltered final loss", "R = unfiltered / filtered FLOPs", "general bpb base",
           "forgetting filtered", "forgetting unfiltered"]  # fmt: skip


def table(entries: list[dict], take) -> tuple[list[list], list[dict]]:
    """The panel's table (display rows) and its flat records (compute.csv / .json); every
    number also through `take(table, source, key, value, variant=, seed=)` (tables.csv)."""
    display, records = [], []
    for e in entries:
        cf, cu = e["curves"]["filtered"], e["curves"]["unfiltered"]
        eff, fg = e["effectiveness"], e["forgetting"]
        af, au = _final_acc(cf["bench"]), _final_acc(cu["bench"])
        rec = {
            "size": e["size"], "seed": e["seed"], "base": e["base"],
            "flops_filtered": cf["domain"]["flops"][-1], "flops_unfiltered": cu["domain"]["flops"][-1],
            "accuracy_filtered": af[0], "ci95_filtered": [af[1], af[2]],
            "accuracy_unfiltered": au[0], "ci95_unfiltered": [au[1], au[2]],
            "accuracy_base": cf["bench"]["loss"][0],
            "domain_bpb_base": cf["domain"]["loss"][0],
            "domain_bpb_filtered": cf["domain"]["loss"][-1], "domain_bpb_unfiltered": cu["domain"]["loss"][-1],
            "unfiltered_flops_to_reach": eff["unfiltered_flops_to_reach"],
            "effectiveness": eff["ratio"], "effectiveness_reached": eff["reached"],
            "effectiveness_lower_bound": eff.get("ratio_lower_bound"),
            "filtered_flops_to_reach": eff["filtered_flops_to_reach"], "reverse_ratio": eff["reverse_ratio"],
            "general_bpb_base": fg["filtered"]["base_bpb"],
            "general_bpb_filtered": fg["filtered"]["final_bpb"], "general_bpb_unfiltered": fg["unfiltered"]["final_bpb"],
            "forgetting_filtered": fg["filtered"]["change"], "forgetting_unfiltered": fg["unfiltered"]["change"],
        }  # fmt: skip
        records.append(rec)
        for key in ("accuracy_filtered", "accuracy_unfiltered", "domain_bpb_filtered",
                    "domain_bpb_unfiltered", "effectiveness", "reverse_ratio", "general_bpb_base",
                    "forgetting_filtered", "forgetting_unfiltered"):  # fmt: skip
            src = (cf if "unfiltered" not in key else cu)
            src = src["general" if "general" in key or "forgetting" in key else
                      "bench" if "accuracy" in key else "domain"]["source"]  # fmt: skip
            take("compute", src, key, rec[key], variant=e["size"], seed=e["seed"])
        eff_s = (f"{eff['ratio']:.2f}x" if eff["reached"] and eff["ratio"] is not None else
                 f"not reached (> {eff['ratio_lower_bound']:.2f}x)" if eff.get("ratio_lower_bound") else "not reached")  # fmt: skip
        reach = eff["unfiltered_flops_to_reach"]
        display.append([
            e["size"], e["seed"], f"{rec['flops_filtered']:.3g}",
            f"{af[0]:.3f} ({af[1]:.3f}-{af[2]:.3f})", f"{au[0]:.3f} ({au[1]:.3f}-{au[2]:.3f})",
            f"{rec['domain_bpb_filtered']:.4f}", f"{rec['domain_bpb_unfiltered']:.4f}",
            f"{reach:.3g}" if reach is not None else "not reached", eff_s,
            f"{eff['filtered_flops_to_reach']:.3g}" if eff["filtered_flops_to_reach"] is not None else "not reached",
            f"{eff['reverse_ratio']:.2f}x" if eff["reverse_ratio"] else "",
            f"{rec['general_bpb_base']:.4f}", f"{rec['forgetting_filtered']:+.4f}",
            f"{rec['forgetting_unfiltered']:+.4f}",
        ])  # fmt: skip
    return display, records


def records_csv(records: list[dict]) -> bytes:
    buf = io.StringIO()
    flat = [{k: (f"{v[0]};{v[1]}" if isinstance(v, list) else v) for k, v in r.items()} for r in records]
    w = csv.DictWriter(buf, fieldnames=list(flat[0]), lineterminator="\n")
    w.writeheader()
    w.writerows(flat)
    return buf.getvalue().encode("utf-8")


def figure(entries: list[dict], png) -> bytes:
    """Forward accuracy, domain and general bits per byte against continued-training FLOPs:
    one colour per size, filtered solid, unfiltered dashed (symlog x: step 0 is at 0 FLOPs)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4))
    colors = plt.get_cmap("viridis")
    sizes = list(dict.fromkeys(e["size"] for e in entries))
    positive = [f for e in entries for r in e["curves"].values() for f in r["domain"]["flops"] if f > 0]
    for ax, (what, title) in zip(axes, (("bench", "forward benchmark accuracy"),
                                        ("domain", "domain bits per byte"),
                                        ("general", "general bits per byte (forgetting)")),
                                   strict=True):  # fmt: skip
        for e in entries:
            color = colors(sizes.index(e["size"]) / max(1, len(sizes) - 1) * 0.85)
            for role, style in (("filtered", "-"), ("unfiltered", "--")):
                c = e["curves"][role][what]
                ax.plot(c["flops"], c["loss"], style, marker="o", ms=3, color=color,
                        label=f"{e['size']} {role}" + (f" (seed {e['seed']})" if len({x['seed'] for x in entries}) > 1 else ""))  # fmt: skip
        if what == "bench":
            ax.axhline(0.5, color="grey", lw=0.8, ls=":")
        if positive:
            ax.set_xscale("symlog", linthresh=min(positive))
        ax.set_xlabel("continued-training FLOPs")
        ax.set_title(title)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return png(fig)
