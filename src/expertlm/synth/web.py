"""`expertlm corpus web`: a mixed synthetic "web" corpus whose documents' fields are known.

The corpus mixes papers of the domain field and of the general field (`corpus synth`'s
literature, two worlds of the same seed) with pages of three other web fields: law, finance and
cooking. Adding a full `Lexicon` per web field would be a field of findings, entities and
benchmarks (and every lexicon's class words bar the others' terms, so it would change the
existing fields' vocabularies); a web page needs none of that. A web field here is its own
technical vocabulary (`morphemes.technical_terms` over its own roots and the shared ones), its
topic words and a dozen sentence frames of its genre, rendered together with the backbone's
shared context sentences (`backbone.CONTEXT`, `BROAD`) and word pools. So every document shares
the English and general-scientific backbone, and what tells the fields apart is their terms,
as in real text.

The output folder:

- `web.jsonl.gz`: corpus documents `{"id", "text", "year", "source"}` in shuffled order; the
  id (`web-s<seed>-<n>`) and the source say nothing about the field;
- `truth.jsonl`: `{"id", "field"}` per document (domain, general, law, finance, cooking), the
  hidden labels a filter is scored against;
- `manifest.json`: options, counts per field, provenance.
"""

from __future__ import annotations

import gzip
import json
import random
import shutil
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from expertlm.console import info
from expertlm.io import (
    JsonlWriter,
    atomic_dir,
    check_output_dir,
    provenance,
    sha256_file,
    write_json,
)
from expertlm.synth import backbone
from expertlm.synth.config import WebConfig
from expertlm.synth.templates import Pools, render

WEB = "web.jsonl.gz"
TRUTH = "truth.jsonl"
SCIENCE_FIELDS = ("domain", "general")
YEARS = (2002, 2022)


def _w(text: str, sep: str | None = None) -> tuple[str, ...]:
    return tuple(w.strip() for w in text.split(sep) if w.strip())


@dataclass(frozen=True)
class WebField:
    name: str
    term_roots: tuple[str, ...]
    heads: tuple[str, ...]
    topics: tuple[str, ...]
    areas: tuple[str, ...]
    frames: tuple[str, ...]  # the genre's own sentences (slots k, n, pct)
    openers: tuple[str, ...]  # a page's first sentence

    @cached_property
    def pools(self) -> Pools:
        from expertlm.synth.morphemes import technical_terms

        tadj, tnoun = technical_terms(f"web:{self.name}", self.term_roots, 600, 900,
                                      banned_starts=backbone.DIRECTION_STEMS)  # fmt: skip
        return Pools(
            backbone.POOLS | {
                "tadj": tadj, "tnoun": tnoun, "topic": self.topics, "area": self.areas,
                "heads": self.heads + backbone.POOLS["sheads"],
                "tnp": ("{@tadj} {@tnoun}", "{@tadj} {@head}", "{@tnoun} {@head}", "{@tnoun}"),
            },
            flat=backbone.FLAT_POOLS,
        )  # fmt: skip


WEB_FIELDS = (
    WebField(
        "law",
        term_roots=_w(
            "jur leg statut contract tort liti arbitr notar fiduc testam lex judic "
            "propri crimin penal custod licens mort feud tax"
        ),  # fmt: skip
        heads=_w("clauses statutes courts claims contracts rulings duties rights parties deeds"),
        topics=_w(
            "liability|contract law|property rights|employment law|data protection|"
            "tenancy|inheritance|consumer rights|competition law|family law",
            "|",
        ),
        areas=_w("commercial law|civil procedure|public law|legal practice|case law", "|"),
        frames=(
            "The court <held|found|ruled> that the {@tadj} {@tnoun} <was|was not> <binding|enforceable|valid> under {@tnp}.",
            "Under the {@tadj} statute, a {@tnoun} must be <filed|registered|notified> within {k} <days|weeks|months>.",
            "<Counsel|The claimant|The defendant> argued that {@tnp} <barred|precluded|permitted> the claim.",
            "<Section|Article|Clause> {k} of the {@tadj} act sets out when {@tnp} <applies|may be waived|can be enforced>.",
            "A {@tnoun} <clause|provision|term> in the contract <limits|excludes|defines> {@tnp}.",
            "<Tenants|Employers|Consumers|Heirs> should <check|keep|ask for> a copy of the {@tadj} {@tnoun} before <signing|paying|moving>.",
            "The appeal was <dismissed|allowed|adjourned> and costs of {n} were awarded against the {@tadj} party.",
            "Our lawyers answer common questions about {@topic} and {@tnp}.",
            "If you are unsure, <seek|get|take> <independent|professional> advice on {@tnp} <early|first>.",
        ),
        openers=(
            "<Legal guide|Case note|Explainer|Briefing>: {@topic} and the {@tadj} {@tnoun}.",
            "What the {@tadj} ruling on {@topic} means for you.",
        ),
    ),
    WebField(
        "finance",
        term_roots=_w(
            "fisc monet equit bond capit divid hedg arbitr ledg credit debit fund "
            "portfol yield lever amort tarif asset"
        ),  # fmt: skip
        heads=_w("markets funds shares bonds portfolios investors lenders accounts loans assets"),
        topics=_w(
            "interest rates|inflation|retirement savings|stock markets|household debt|"
            "mortgages|pensions|currency markets|earnings season|index funds",
            "|",
        ),
        areas=_w("personal finance|banking|asset management|corporate finance|markets", "|"),
        frames=(
            "Shares of the {@tadj} {@tnoun} fund <rose|fell|were flat> {k}% in <early|late> trading.",
            "Analysts expect {@tnp} to <weigh on|support|drive> {@topic} <this quarter|next year|over the coming months>.",
            "The {@tadj} {@tnoun} ratio stood at {pct}% at the end of the <quarter|year>.",
            "<Investors|Savers|Lenders|Traders> <moved|shifted|rotated> money into {@tnp} as {@topic} <changed|settled|stayed uncertain>.",
            "The company reported <revenue|earnings|profit> of {n} million, <ahead of|in line with|below> forecasts.",
            "<Fees|Charges|Costs> on {@tadj} {@tnoun} accounts can <eat into|erode|offset> returns over {k} years.",
            "Our <calculator|guide|checklist> shows how {@tnp} affects your {@tadj} {@heads}.",
            "<Central banks|Regulators|Fund managers> <warned|signalled|noted> that {@tnp} <remains|could become> a risk for {@topic}.",
            "Past performance of {@tnp} is no guide to future returns.",
        ),
        openers=(
            "<Markets|Money|Investing|Your money>: {@topic} and the {@tadj} {@tnoun}.",
            "How {@topic} <affects|shapes> the {@tadj} {@tnoun} this <week|month|year>.",
        ),
    ),
    WebField(
        "cooking",
        term_roots=_w(
            "culin gastr brais sauc brin ferment glaz caramel emuls marin knead "
            "pastr confit roux sous broth spic herb"
        ),  # fmt: skip
        heads=_w("sauces doughs stocks glazes spices herbs pans ovens dishes recipes"),
        topics=_w(
            "weeknight dinners|baking|meal planning|vegetarian cooking|slow cooking|"
            "street food|breakfast|desserts|preserving|grilling",
            "|",
        ),
        areas=_w("home cooking|food writing|restaurant kitchens|nutrition|baking", "|"),
        frames=(
            "Preheat the oven to {n} degrees and <whisk|fold|stir> the {@tnoun} into the {@tadj} {@heads}.",
            "This {@tadj} recipe serves {k} and takes about {n} minutes.",
            "<Season|Finish|Top> the {@tnoun} with <salt|pepper|lemon|herbs> and <serve|rest it|slice it> <warm|at once|cold>.",
            "<Leave|Chill|Rest> the {@tadj} {@tnoun} for {k} hours before <baking|frying|grilling|serving>.",
            "<Swap|Replace|Use> the {@tnoun} for {@tadj} {@heads} if you <prefer|like|cannot find it>.",
            "Readers rated this {@tadj} {@tnoun} {k} out of 5.",
            "<Tip|Note|Cook's note>: a {@tadj} <pan|pot|tin> keeps the {@tnoun} from <sticking|burning|drying out>.",
            "We tested {k} ways of making {@tnp} for {@topic}.",
            "<Stir in|Add|Fold in> {n} grams of {@tnoun} and cook for {k} minutes.",
        ),
        openers=(
            "<Recipe|Kitchen notes|Cook's guide>: {@tadj} {@tnoun} for {@topic}.",
            "The easiest {@tadj} {@tnoun} you will make this <week|month|year>.",
        ),
    ),
)
FIELDS = (*SCIENCE_FIELDS, *(f.name for f in WEB_FIELDS))


def web_page(f: WebField, rnd: random.Random) -> str:
    """One page of web field `f`: an opener, then 5-11 sentences of its genre and the shared
    backbone."""

    def slots() -> dict:
        return {
            "k": rnd.randint(2, 12),
            "n": rnd.randint(20, 900),
            "pct": round(rnd.uniform(1, 60), 1),
        }

    sentences = [render(rnd.choice(f.openers), slots(), f.pools, rnd.random)]
    for _ in range(rnd.randint(5, 11)):
        u = rnd.random()
        frames = f.frames if u < 0.65 else backbone.CONTEXT if u < 0.85 else backbone.BROAD
        sentences.append(render(rnd.choice(frames), slots(), f.pools, rnd.random))
    return " ".join(sentences)


def corpus_web(
    out: str | Path, *, overwrite: bool = False, show_progress: bool = True, **options
) -> Path:
    """Generate a mixed web corpus into folder `out` (web.jsonl.gz, truth.jsonl, manifest.json).
    `options` are the fields of `WebConfig`. Returns the folder."""
    from expertlm.synth.build import LITERATURE, corpus_synth

    t0 = time.time()
    cfg = WebConfig.from_options(options, source="option")
    out = Path(out)
    check_output_dir(out, overwrite)
    rnd = random.Random(f"expertlm.synth.web:{cfg.seed}")
    with atomic_dir(out, overwrite) as tmp:
        docs: list[tuple[str, dict]] = []
        for name, n in (("domain", cfg.domain_docs), ("general", cfg.general_docs)):
            if n == 0:
                continue
            # (a literature of n papers is the first n of a longer one of the same seed)
            folder = corpus_synth(tmp / f".{name}", field=name, seed=cfg.seed,
                                  papers=cfg.skip_papers + n, overwrite=True,
                                  show_progress=show_progress)  # fmt: skip
            with gzip.open(folder / LITERATURE, "rt", encoding="utf-8") as f:
                papers = list(map(json.loads, f))[cfg.skip_papers :]
                docs += [(name, {"text": d["text"], "year": d["year"]}) for d in papers]
            shutil.rmtree(folder)
        for field in WEB_FIELDS:
            docs += [(field.name, {"text": web_page(field, rnd), "year": rnd.randint(*YEARS)})
                     for _ in range(cfg.other_docs)]  # fmt: skip
        rnd.shuffle(docs)
        source = f"synth:web:seed{cfg.seed}"
        with JsonlWriter(tmp / WEB) as web, JsonlWriter(tmp / TRUTH) as truth:
            for k, (name, d) in enumerate(docs, 1):
                doc_id = f"web-s{cfg.seed}-{k:06d}"
                web.write({"id": doc_id, "text": d["text"], "year": d["year"], "source": source})
                truth.write({"id": doc_id, "field": name})
        counts = {name: sum(1 for n, _ in docs if n == name) for name in FIELDS}
        write_json(tmp / "manifest.json", {
            "format": "expertlm.synth-web/1",
            "config": cfg.model_dump(mode="json"),
            "counts": {"docs": len(docs), **counts},
            "chars": sum(len(d["text"]) for _, d in docs),
            "outputs": {f: sha256_file(tmp / f) for f in (WEB, TRUTH)},
            "wall_s": round(time.time() - t0, 3),
            **provenance(),
        })  # fmt: skip
    info(
        f"web corpus: {len(docs):,} documents ({', '.join(f'{k} {v:,}' for k, v in counts.items())}) -> {out}"
    )
    return out


def read_truth(folder: str | Path) -> dict[str, str]:
    """id -> field of a web corpus (its truth.jsonl)."""
    from expertlm.io import iter_jsonl

    return {row["id"]: row["field"] for row in iter_jsonl(Path(folder) / TRUTH)}
