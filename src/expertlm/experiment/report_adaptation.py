"""The report's adaptation panel (`configs/adaptation.yaml`, docs/adaptation.md): shown when an
experiment has post-trained variants (objective sft, dpo, orpo) or recipe merges.

- a table per variant: what it is (objective or merge) and its parent, the training FLOPs of its
  own stage and over its chain of inits (run.json's count), accuracy on every benchmark with its
  95% CI, bits per byte of every field scored and the change from the chain's base;
- the comparisons the pipeline asks about, as paired tests on the same items (McNemar exact
  test, paired bootstrap CI of the difference, `eval compare`): every fine-tuned variant against
  its parent and against every variant continued by CPT alone (the equal-compute control among
  them), and every merge against the tuned model it merges;
- a figure: accuracy per variant with its CI on each benchmark, and bits per byte of each field
  against the base's.
"""

from __future__ import annotations

from pathlib import Path

from expertlm.io import read_json

POST = ("sft", "dpo", "orpo")


def _run_info(v: dict) -> dict | None:
    """The first seed's run.json (None: not trained)."""
    s = next(iter(v["seeds"].values()), None)
    run = Path(s["model"]) / "run.json" if s else None
    return read_json(run) if run is not None and run.is_file() else None


def _objective(v: dict) -> str:
    """clm, sft, dpo, orpo (from the first seed's run.json), merge, or untrained."""
    if v["spec"].get("merge"):
        return "merge"
    info = _run_info(v)
    return "untrained" if info is None else (info.get("config") or {}).get("objective", "clm")


def _parent(v: dict) -> str | None:
    """The variant this one starts from (init: variant:X) or merges into (a recipe's
    base_model, or a method merge's first model)."""
    spec = v["spec"]
    if spec.get("merge"):
        m = spec["merge"]
        if isinstance(m.get("recipe"), dict):
            return m["recipe"].get("base_model")
        return m.get("base") or (m.get("models") or [None])[0]
    init = spec.get("init") or ""
    return init.removeprefix("variant:") if init.startswith("variant:") else None


def _merged(v: dict) -> str | None:
    """The tuned model a merge variant merges with its parent (the recipe's other model)."""
    m = v["spec"].get("merge") or {}
    names = [x.get("model") if isinstance(x, dict) else x for x in (m.get("recipe") or {}).get("models") or []]
    names = names or list(m.get("models") or [])
    others = [n for n in names if n != _parent(v)]
    return others[0] if others else None


def applies(data: dict) -> bool:
    return any(_objective(v) in POST or isinstance((v["spec"].get("merge") or {}).get("recipe"), dict)
               for v in data.values())  # fmt: skip


def _flops(v: dict) -> float | None:
    info = _run_info(v)
    return info.get("flops") if info is not None else None


def _root(name: str, data: dict) -> str:
    seen = set()
    while (p := _parent(data[name])) in data and p not in seen:
        seen.add(name)
        name = p
    return name


def _chain_flops(name: str, data: dict) -> float:
    """Training FLOPs of the variant and every init before it (a merge: its parent's chain)."""
    total, seen = 0.0, set()
    while name in data and name not in seen:
        seen.add(name)
        if data[name]["spec"].get("merge"):
            name = _merged(data[name]) or _parent(data[name])
            continue
        total += _flops(data[name]) or 0.0
        name = _parent(data[name])
    return total


def panel(exp: dict, data: dict, nums, fmt) -> dict | None:
    """{"sections": [(title, headers, rows), ...], "figure": png}, or None when the experiment
    has no adaptation variants. `nums` records every number with its source, `fmt` formats."""
    from expertlm.eval.evaluate import eval_compare

    if not applies(data):
        return None
    benches = list(exp["benchmarks"])
    fields = sorted({c for v in data.values() for s in v["seeds"].values() for c in s["ppl"]})
    kinds = {n: _objective(v) for n, v in data.items()}
    rows = []
    first = {n: next(iter(v["seeds"].items()), (None, None)) for n, v in data.items()}
    for name, v in data.items():
        seed, s = first[name]
        if s is None:
            continue
        root = first[_root(name, data)][1]
        row = [v["spec"]["label"], kinds[name], _parent(v) or "", _sci(_flops(v)), _sci(_chain_flops(name, data))]
        for b in benches:
            if b in s["results"]:
                path, summ = s["results"][b]
                src = path / "summary.json"
                acc = nums.take("adaptation", src, "accuracy", summ["accuracy"], variant=name, seed=seed, benchmark=b)
                row.append(f"{fmt(acc)} ({fmt(summ['ci95'][0])}-{fmt(summ['ci95'][1])})")
            else:
                row.append("n/a")
        for c in fields:
            if c in s["ppl"]:
                path, r = s["ppl"][c]
                bpb = nums.take("adaptation", path / "ppl.json", "bits_per_byte", r["bits_per_byte"],
                                variant=name, seed=seed, benchmark=f"ppl:{c}")  # fmt: skip
                base = root["ppl"].get(c) if root else None
                delta = f" ({bpb - base[1]['bits_per_byte']:+.3f})" if base and root is not s else ""
                row.append(f"{fmt(bpb, 4)}{delta}")
            else:
                row.append("n/a")
        rows.append(row)
    headers = (["variant", "what", "parent", "FLOPs (own)", "FLOPs (chain)"]
               + [f"{b} accuracy (95% CI)" for b in benches]
               + [f"{c} bits/byte (vs base)" for c in fields])  # fmt: skip

    pairs = []  # (A, B, why): the difference is B - A
    cpt_alone = [n for n in data if kinds[n] == "clm" and _parent(data[n]) in data]
    for n in data:
        if kinds[n] in POST:
            pairs.append((_parent(data[n]), n, "tuned vs its parent"))
            pairs += [(c, n, "tuned vs CPT alone") for c in cpt_alone if c != _parent(data[n])]
        elif kinds[n] == "merge" and _merged(data[n]) in data:
            pairs.append((_merged(data[n]), n, "merge vs the tuned model"))
    comparisons = []
    for a, b_, why in pairs:
        if a not in data:
            continue
        for bench in benches:
            ra, rb = first[a][1]["results"].get(bench), first[b_][1]["results"].get(bench)
            if ra is None or rb is None:
                continue
            r = eval_compare(ra[0], rb[0])
            src = f"{ra[0] / 'items.csv'} + {rb[0] / 'items.csv'}"
            lab = {"variant": f"{a} vs {b_}", "seed": first[a][0], "benchmark": bench}
            d = nums.take("adaptation", src, "b_minus_a.difference", r["b_minus_a"]["difference"], **lab)
            p = nums.take("adaptation", src, "mcnemar.p_value", r["mcnemar"]["p_value"], **lab)
            lo, hi = r["b_minus_a"]["ci95"]
            comparisons.append([why, bench, data[a]["spec"]["label"], data[b_]["spec"]["label"],
                                fmt(r["accuracy_a"]), fmt(r["accuracy_b"]), f"{d:+.3f}",
                                f"{lo:+.3f} to {hi:+.3f}", f"{p:.3g}"])  # fmt: skip
    comp_headers = ["comparison", "benchmark", "A", "B", "acc A", "acc B", "B - A", "95% CI", "McNemar p"]
    return {"sections": [
        ("Adaptation: CPT, SFT, preference tuning and merges (accuracy, compute, forgetting)", headers, rows),
        ("Adaptation: tuned vs parent, vs CPT alone, merge vs tuned (McNemar exact test, paired bootstrap CI)",
         comp_headers, comparisons)], "figure": _figure(data, benches, fields, first)}  # fmt: skip


def _sci(x: float | None) -> str:
    return "" if not x else f"{x:.3g}"


def _figure(data: dict, benches: list[str], fields: list[str], first: dict) -> bytes:
    import matplotlib.pyplot as plt
    import numpy as np

    from expertlm.experiment.report import CHANCE, _colors, _png

    names = [n for n in data if first[n][1] is not None]
    labels = [data[n]["spec"]["label"] for n in names]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.8))
    width = 0.8 / max(len(benches), 1)
    for k, (b, color) in enumerate(zip(benches, _colors(len(benches)), strict=True)):
        accs, errs = [], [[], []]
        for n in names:
            r = first[n][1]["results"].get(b)
            acc, (lo, hi) = (r[1]["accuracy"], r[1]["ci95"]) if r else (np.nan, (np.nan, np.nan))
            accs.append(acc)
            errs[0].append(acc - lo)
            errs[1].append(hi - acc)
        a1.bar(np.arange(len(names)) + k * width, accs, width, yerr=errs, capsize=2, color=color,
               edgecolor="k", label=b)  # fmt: skip
    a1.axhline(CHANCE, color="grey", ls=":", lw=1, label="chance")
    a1.set_ylim(0, 1.02)
    a1.set_ylabel("accuracy (95% CI)")
    a1.set_title("accuracy per variant")
    width = 0.8 / max(len(fields), 1)
    for k, (c, color) in enumerate(zip(fields, _colors(len(fields) + 2)[2:], strict=True)):
        vals = [first[n][1]["ppl"][c][1]["bits_per_byte"] if c in first[n][1]["ppl"] else np.nan for n in names]
        a2.bar(np.arange(len(names)) + k * width, vals, width, color=color, edgecolor="k", label=c)
        roots = {_root(n, data) for n in names}
        for r in roots:
            if c in first[r][1]["ppl"]:
                a2.axhline(first[r][1]["ppl"][c][1]["bits_per_byte"], color=color, ls="--", lw=1,
                           label=f"{c}: {data[r]['spec']['label']}")  # fmt: skip
    a2.set_ylabel("bits per byte (lower is better)")
    a2.set_title("held-out text of each field vs the base (dashed)")
    for ax, w in ((a1, 0.8 / max(len(benches), 1)), (a2, width)):
        ax.set_xticks(np.arange(len(names)) + 0.4 - w / 2)
        ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
        ax.spines[["top", "right"]].set_visible(False)
        ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return _png(fig)
