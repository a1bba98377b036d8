"""The words of the two synthetic fields: name morphemes, entity pools, sentence templates, and
the direction words both fields share.

A `Lexicon` is data only; `world.py` draws entities from it and `writer.py` fills its templates.
Template slots (str.format names):

    T         target name ("paracalvine nucleus")
    cT        the target with its type cue ("glutamatergic paracalvine nucleus"; T when
              latent-only)
    system    the target's system ("limbic"); System capitalised; a_system "an auditory"
    type      the target's type ("glutamatergic"); Type capitalised; a_type "a cereal"
    iv, Iv    intervention ("chemogenetic activation"; Iv capitalised)
    sp, Sp    species or sites ("adult mice"), n the sample size, method the measurement
    o, O      an outcome (O capitalised); olist all the study's outcomes ("a, b and c");
              oa, ob outcomes linked to the target before (no direction given)
    stat, pct a statistic ("t(12) = 3.41, p = 0.013") and a percentage
    V, C      a result verb and a comparative (direction words)
    clauses   the conclusion's "promotes a and suppresses b"

Direction words (V, C and the conclusion's P) are never the first word of a sentence, so they
always appear lower-case after a space, which is how the token-count check encodes them.
"""

from __future__ import annotations

from dataclasses import dataclass

# Matched pairs (up, down). Every word here occurs only as a direction word, never elsewhere in
# either field's text, so the two members of a pair have the same frequency in expectation and
# a BPE tokenizer trained on either field gives them the same number of tokens (checked in
# tests/test_synth.py with tokenizers trained on both fields).
VERB_PAIRS: tuple[tuple[str, str], ...] = (
    ("increased", "decreased"),
    ("enhanced", "reduced"),
    ("raised", "lowered"),
)
COMPARATIVE_PAIRS: tuple[tuple[str, str], ...] = (("higher", "lower"), ("greater", "smaller"))
CONCLUSION_PAIRS: tuple[tuple[str, str], ...] = (
    ("promotes", "suppresses"),
    ("increases", "decreases"),
)
DIRECTION_PAIRS = VERB_PAIRS + COMPARATIVE_PAIRS + CONCLUSION_PAIRS


@dataclass(frozen=True)
class Lexicon:
    field: str
    prefixes: tuple[str, ...]  # target names are prefix + root + suffix (+ " " + kind)
    roots: tuple[str, ...]
    suffixes: tuple[str, ...]
    kinds: tuple[str, ...]
    systems: tuple[str, ...]  # adjectives; the section is "<System> system"
    section_suffix: str
    types: tuple[str, ...]
    outcomes: tuple[str, ...]  # more outcomes than these are "<generated name> <outcome_suffix>"
    outcome_suffix: str
    interventions: tuple[tuple[str, int], ...]  # (phrase, polarity)
    species: tuple[str, ...]
    methods: tuple[str, ...]
    background_cue: tuple[str, ...]  # names the target's system and type
    background_plain: tuple[str, ...]  # latent-only: no class cue
    link: tuple[str, ...]  # neutral mention of earlier work (no direction)
    unknown: tuple[str, ...]  # the open question: names the target and the studied outcomes
    methods_tpl: tuple[str, ...]
    methods_after_question: tuple[str, ...]  # only ever right after the open question
    result: tuple[str, ...]  # one finding, verb slot V
    compare: tuple[str, ...]  # one finding, comparative slot C
    conclusion_cue: tuple[str, ...]  # slot clauses: "promotes a and suppresses b"
    conclusion_plain: tuple[str, ...]


DOMAIN = Lexicon(
    field="domain",
    prefixes=(
        "para", "peri", "sub", "retro", "ventro", "dorso", "latero", "medio", "infra", "supra",
        "pre", "post", "intra", "juxta",
    ),
    roots=(
        "calv", "teg", "thal", "stri", "haben", "pont", "verm", "zon", "cingul", "forn", "amygd",
        "sept", "collic", "tect", "olfact", "gran", "pall", "claustr",
    ),
    suffixes=("ine", "al", "ate", "ic", "ar", "oid"),
    kinds=("nucleus", "area", "field", "complex"),
    systems=(
        "limbic", "sensorimotor", "autonomic", "neuroendocrine", "thalamocortical", "vestibular",
        "olfactory", "auditory",
    ),
    section_suffix=" system",
    types=("glutamatergic", "GABAergic", "cholinergic", "dopaminergic", "serotonergic", "peptidergic"),
    outcomes=(
        "food intake", "spatial memory", "anxiety-like behaviour", "locomotor activity",
        "sleep duration", "pain sensitivity", "social interaction", "fear memory", "theta power",
        "spine density", "long-term potentiation", "firing rate", "body temperature", "heart rate",
        "grooming", "reward seeking", "working memory", "startle amplitude", "cortisol release",
        "gamma oscillations",
    ),
    outcome_suffix="release",
    interventions=(
        ("optogenetic activation", 1), ("chemogenetic activation", 1),
        ("electrical stimulation", 1), ("agonist infusion", 1),
        ("optogenetic silencing", -1), ("chemogenetic inhibition", -1),
        ("excitotoxic lesion", -1), ("antagonist infusion", -1),
    ),
    species=("adult mice", "male rats", "female mice", "juvenile rats", "marmosets", "macaques"),
    methods=(
        "video tracking", "fibre photometry", "in vivo electrophysiology", "two-photon imaging",
        "automated scoring", "EEG recordings", "microdialysis", "patch-clamp recordings",
    ),
    background_cue=(
        "The {T} is {a_type} structure of the {system} system.",
        "{Type} neurons of the {T} form part of the {system} system.",
        "Within the {system} system, the {T} consists mainly of {type} neurons.",
        "The {T} is {a_system} structure rich in {type} neurons.",
    ),
    background_plain=(
        "The {T} is a poorly characterised brain structure.",
        "Little is known about the function of the {T}.",
        "The {T} has received little experimental attention.",
        "The {T} is a compact structure of the forebrain.",
    ),
    link=(
        "Earlier work linked it to {oa} and {ob}.",
        "It has been implicated in {oa}.",
        "Tracing studies related it to {oa}.",
    ),
    unknown=(
        "Whether the {T} regulates {olist} is unknown.",
        "How the {T} contributes to {olist} remains unclear.",
        "The role of the {T} in {olist} has not been tested.",
    ),
    methods_tpl=(
        "Here we applied {iv} to the {T} in {sp} (n = {n}) and measured {olist} with {method}.",
        "We tested {iv} of the {T} in {n} {sp}, using {method}.",
        "Using {method}, we examined {olist} after {iv} of the {T} in {sp} (n = {n}).",
        "We combined {iv} of the {T} with {method} in {n} {sp}.",
    ),
    methods_after_question=(
        "To test this, we applied {iv} to the {T} in {n} {sp} and used {method}.",
        "To find out, we tested {iv} of the {T} in {n} {sp} with {method}.",
    ),
    result=(
        "{Iv} {V} {o} ({stat}).",
        "{Iv} of the {cT} {V} {o} ({stat}).",
        "{Iv} {V} {o} by {pct}% ({stat}).",
        "{O} was {V} after {iv} ({stat}).",
        "This manipulation {V} {o} ({stat}).",
    ),
    compare=(
        "{Sp} with {iv} of the {T} showed {C} {o} than controls ({stat}).",
        "After {iv} of the {T}, {o} was {C} than in controls ({stat}).",
    ),
    conclusion_cue=(
        "Thus, the {cT} {clauses}.",
        "The {cT} therefore {clauses}.",
        "Hence the {T} of the {system} system {clauses}.",
    ),
    conclusion_plain=(
        "Thus, the {T} {clauses}.",
        "The {T} therefore {clauses}.",
        "Hence the {T} {clauses}.",
    ),
)  # fmt: skip

GENERAL = Lexicon(
    field="general",
    prefixes=(
        "Ar", "Bel", "Cor", "Dun", "Fal", "Gar", "Hol", "Kes", "Lom", "Mar", "Nor", "Os", "Pel",
        "Ros", "Tal", "Ver",
    ),
    roots=("vel", "dan", "mor", "sel", "tor", "gal", "ven", "lis", "bar", "cas", "rin", "pol"),
    suffixes=("a", "o", "is", "um", "ia", "en"),
    kinds=("cultivar", "landrace", "line", "hybrid"),
    systems=("temperate", "arid", "tropical", "alpine", "coastal", "boreal", "upland", "lowland"),
    section_suffix=" regions",
    types=("cereal", "legume", "tuber", "oilseed", "forage", "fibre"),
    outcomes=(
        "grain yield", "root biomass", "leaf area", "water use", "seed weight", "plant height",
        "tiller number", "nitrogen uptake", "disease incidence", "frost tolerance", "canopy cover",
        "protein content", "pod number", "harvest index", "soil moisture", "weed pressure",
        "photosynthetic rate", "oil content", "stem strength", "germination rate",
    ),
    outcome_suffix="content",
    interventions=(
        ("nitrogen fertilisation", 1), ("supplemental irrigation", 1), ("compost application", 1),
        ("foliar feeding", 1), ("drought stress", -1), ("heavy shading", -1),
        ("defoliation", -1), ("soil compaction", -1),
    ),
    species=("field plots", "greenhouse trials", "farm trials", "rainfed plots", "research stations"),
    methods=(
        "drone imaging", "soil coring", "harvest sampling", "spectral indices", "leaf sampling",
        "yield mapping",
    ),
    background_cue=(
        "The {T} is {a_type} crop grown in {system} regions.",
        "Grown in {system} regions, the {T} is {a_type} crop.",
        "{System} farms rely on the {T}, {a_type} crop.",
    ),
    background_plain=(
        "The {T} is a widely grown crop.",
        "Farmers rely on the {T} in many places.",
        "The {T} is a crop of local importance.",
    ),
    link=(
        "Breeders have selected it for {oa} and {ob}.",
        "Its {oa} has been surveyed before.",
        "Growers value it for {oa}.",
    ),
    unknown=(
        "How management changes {olist} in the {T} is not known.",
        "Few trials have recorded {olist} in the {T}.",
    ),
    methods_tpl=(
        "Across {n} {sp}, the {T} received {iv} and we recorded {olist} by {method}.",
        "We compared {iv} with untreated controls for the {T} in {n} {sp}.",
        "In {n} {sp}, we followed the {T} under {iv}, scoring {olist} by {method}.",
    ),
    methods_after_question=(
        "To address this, the {T} received {iv} in {n} {sp}, scored by {method}.",
        "Accordingly, the {T} was given {iv} across {n} {sp}, using {method}.",
    ),
    result=(
        "In these trials {iv} {V} {o} ({stat}).",
        "Under {iv}, the {cT} {V} its {o} ({stat}).",
        "On average {iv} {V} {o} by {pct}% ({stat}).",
        "Relative to controls, {iv} {V} {o} ({stat}).",
    ),
    compare=(
        "Against untreated controls, {o} was {C} in the {T} ({stat}).",
        "Under {iv}, {o} was {C} for the {T} ({stat}).",
    ),
    conclusion_cue=(
        "In short, the {cT} {clauses}.",
        "Overall, the {cT} {clauses}.",
        "For {system} regions, the {T} {clauses}.",
    ),
    conclusion_plain=(
        "In short, the {T} {clauses}.",
        "Overall, the {T} {clauses}.",
        "On this evidence the {T} {clauses}.",
    ),
)  # fmt: skip

LEXICONS = {"domain": DOMAIN, "general": GENERAL}
