"""How well `bench make`'s rules reproduce known alterations, and what they do to real abstracts.

    python bench/bench_make_quality.py [--out bench/_work/bench_make_quality]

1. The synthetic world (`corpus synth`, defaults, seed 0): `bench make` on the original
   abstracts of the world's forward benchmark, without the world's truth. Yield (items per
   abstract) and agreement: an item agrees when it reverses the same finding in the same places
   (character offsets) and the same direction as the world's own item for that paper.
   Targets (issue 15): yield >= 0.80, agreement >= 0.90.
2. Real text (`../shared/data`, skipped without it): eLife abstracts of 2015-2016 and review
   abstracts of 2015-2017 taken as "after the cutoff" (--after 2014): yield, rejections by reason, places
   changed, and 20 items side by side (the original vs the altered sentence), written as
   Markdown to OUT/real_items.md and as JSON to OUT/quality.json.

Ends with one PASS/FAIL line on the synthetic targets.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("EXPERTLM_NO_PROGRESS", "1")
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
TARGET_YIELD, TARGET_AGREE = 0.80, 0.90
CUTOFF = 2014  # real text: the training cutoff, papers after it become items


def places(combined: str) -> list[tuple[int, int | None]]:
    """(offset in the original, direction of the altered word) of every marked change (a marker
    is its readings, `(original, altered)` each)."""
    from expertlm.eval.benchmark import parse_markers
    from expertlm.eval.lexicon import DIRECTION

    out, at = [], 0
    for p in parse_markers(combined):
        if isinstance(p, tuple):
            out.append((at, DIRECTION.get(p[0][1].lower())))
            at += len(p[0][0])
        else:
            at += len(p)
    return out


def read_jsonl(path: Path) -> list[dict]:
    from expertlm.io import jsonl_rows

    return [r for _, r in jsonl_rows(path)]


def synthetic(work: Path) -> dict:
    from expertlm.eval.make import bench_make
    from expertlm.synth.build import corpus_synth

    synth = corpus_synth(work / "synth", show_progress=False)
    world = read_jsonl(synth / "benchmark.jsonl")
    src = work / "world_originals.jsonl"
    src.write_text("".join(json.dumps({"id": w["id"], "year": w["year"], "text": w["original"]}) + "\n"
                           for w in world), encoding="utf-8")  # fmt: skip
    report = bench_make([src], work / "synth_made", after=world[0]["year"] - 1, show_progress=False)
    made = {i["id"]: i for i in read_jsonl(work / "synth_made" / "benchmark.jsonl")}
    agree = sum(places(made[w["id"]]["combined"]) == places(w["combined"]) for w in world if w["id"] in made)
    return {"abstracts": len(world), "items": len(made), "yield": len(made) / len(world),
            "agree": agree, "agreement": agree / max(1, len(made)),
            "rejected": report["counts"]["rejected"]}  # fmt: skip


def changed_sentences(item: dict) -> tuple[str, str]:
    """The first sentence that differs, in both versions."""
    from expertlm.eval.benchmark import split_sentences

    for a, b in zip(split_sentences(item["original"]), split_sentences(item["altered"]), strict=False):
        if a != b:
            return a, b
    return "", ""


def real(work: Path, out: Path) -> dict | None:
    import gzip

    from expertlm.eval.make import bench_make

    files = {"elife": DATA / "elife_fulltext_2012_2016.jsonl.gz",
             "reviews": DATA / "neuromancer_neuro_review_abstracts.jsonl.gz"}  # fmt: skip
    if not all(f.exists() for f in files.values()):
        return None
    results: dict = {}
    shown: list[str] = []
    for name, f in files.items():
        with gzip.open(f, "rt", encoding="utf-8") as lines:
            docs = [json.loads(line) for line in lines]
        newest = CUTOFF + 1
        src = work / f"{name}.jsonl"
        src.write_text("".join(json.dumps({"id": d["id"], "year": int(d["year"]),
                                           "text": d.get("abstract") or d["text"],
                                           **({"subjects": d["subjects"]} if "subjects" in d else {})}) + "\n"
                               for d in docs if int(d["year"]) > CUTOFF), encoding="utf-8")  # fmt: skip
        rep = bench_make([src], work / f"{name}_made", after=CUTOFF, show_progress=False)
        items = read_jsonl(work / f"{name}_made" / "benchmark.jsonl")
        results[name] = {"year": newest, "input": rep["counts"]["input"], "items": rep["counts"]["items"],
                         "yield": rep["yield"], "rejected": rep["counts"]["rejected"],
                         "places_changed": rep["places_changed"]}  # fmt: skip
        for item in random.Random(0).sample(items, min(10, len(items))):
            a, b = changed_sentences(item)
            shown.append(f"| {name} `{item['id']}` | {a} | {b} |")
    md = ["| item | original sentence | altered sentence |", "|---|---|---|", *shown]
    (out / "real_items.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "_work" / "bench_make_quality")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        syn = synthetic(Path(tmp))
        print(f"synthetic world: {syn['items']} items from {syn['abstracts']} forward abstracts "
              f"(yield {syn['yield']:.3f}); {syn['agree']} of them reverse the world's own finding in "
              f"the same places (agreement {syn['agreement']:.3f}); rejected {syn['rejected']}")  # fmt: skip
        rl = real(Path(tmp), args.out)
    if rl is None:
        print(f"real text: {DATA} absent, skipped")
    else:
        for name, r in rl.items():
            print(f"real text, {name} after {CUTOFF}: {r['items']} items from {r['input']} abstracts "
                  f"(yield {r['yield']:.3f}); rejected {r['rejected']}; places changed {r['places_changed']}")  # fmt: skip
        print(f"20 items side by side: {args.out / 'real_items.md'}")
    (args.out / "quality.json").write_text(json.dumps({"synthetic": syn, "real": rl}, indent=1) + "\n")
    ok = syn["yield"] >= TARGET_YIELD and syn["agreement"] >= TARGET_AGREE
    print(f"bench_make_quality: yield {syn['yield']:.3f}, agreement {syn['agreement']:.3f} "
          f"(target >= {TARGET_YIELD}, >= {TARGET_AGREE}) {'PASS' if ok else 'FAIL'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
