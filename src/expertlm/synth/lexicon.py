"""The synthetic fields: each one is morphemes, entities and templates over the shared backbone.

A `Lexicon` is data only; `world.py` draws entities from it and `writer.py` renders its
templates (`templates.py`: `{slot}`, `{@pool}`, `<a|b>`, `[optional]`). A field gives

- the morphemes of its target names (prefix + root + suffix + kind: "pregranar area") and of its
  technical terms (`term_roots`, combined with the shared roots and affixes of `morphemes.py`),
- its entities: classes (systems, types), outcomes, interventions with a polarity, species or
  sites, methods; and its topic words, subjects and control groups,
- its own frames for the sentences that carry the findings (background with the class cue, the
  open question, methods, results, comparison, conclusion); `backbone.py` adds the frames every
  field shares (context, design, null results, implications) and the shared word pools.

Slots filled by the writer: T (target name), cT (the target with its type cue, T when
latent-only), system, type, a_type ("a cereal"), iv (intervention), sp (species or sites), n,
method, olist ("a, b and c"), o (an outcome), oa, ob (outcomes linked before), stat, pstat, pct,
k, V and C (direction words), clauses ("promotes a and suppresses b"). Sentences are capitalised
after rendering, so a slot may open one. Direction words (V, C and the conclusion's verbs) never
open a sentence, so they always appear lower-case after a space, which is how the token-count
check encodes them.

A new field is one more `Lexicon` in `LEXICONS` (and a name in `SynthConfig.field`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from expertlm.synth import backbone
from expertlm.synth.backbone import (  # noqa: F401  (re-exported: the pairs' old home)
    COMPARATIVE_PAIRS,
    CONCLUSION_PAIRS,
    DIRECTION_PAIRS,
    VERB_PAIRS,
)


def _w(text: str, sep: str | None = None) -> tuple[str, ...]:
    return tuple(w.strip() for w in text.split(sep) if w.strip())


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
    # technical vocabulary: this field's roots (with the shared ones), term counts, NP heads
    term_roots: tuple[str, ...]
    term_counts: tuple[int, int]  # (adjectives, nouns)
    heads: tuple[str, ...]
    # field words for the shared frames
    topics: tuple[str, ...]
    areas: tuple[str, ...]
    subjects: tuple[str, ...]
    controls: tuple[str, ...]
    others: tuple[str, ...]
    time_units: tuple[str, ...]
    # frames
    background_cue: tuple[str, ...]  # names the target's system and type
    background_plain: tuple[str, ...]  # latent-only: no class cue
    link: tuple[str, ...]  # neutral mention of earlier work (no direction)
    unknown: tuple[str, ...]  # the open question: names the target and the studied outcomes
    methods_tpl: tuple[str, ...]
    methods_after_question: tuple[str, ...]  # only ever right after the open question
    result: tuple[str, ...]  # one finding, verb slot V (with backbone.RESULT)
    compare: tuple[str, ...]  # one finding, comparative slot C (with backbone.COMPARE)
    conclusion_cue: tuple[str, ...]  # names the system (with backbone.CONCLUSION)
    context: tuple[str, ...] = ()  # with backbone.CONTEXT

    @property
    def class_words(self) -> tuple[str, ...]:
        return self.systems + self.types

    @cached_property
    def terms(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(adjectives, nouns): the field's technical terms in frequency-rank order."""
        from expertlm.synth.morphemes import technical_terms

        # no term is a possible target name, holds any field's class word (a latent-only text
        # names no class) or starts like a direction word (their BPE pieces stay their own)
        names = {p + r + s for p in self.prefixes for r in self.roots for s in self.suffixes}
        classes = [w for lex in LEXICONS.values() for w in lex.class_words]
        return technical_terms(
            self.field, self.term_roots, *self.term_counts, banned=names,
            banned_substrings=classes, banned_starts=backbone.DIRECTION_STEMS,
        )  # fmt: skip

    @cached_property
    def pools(self):
        """Every pool the field's templates draw from (`templates.Pools`)."""
        from expertlm.synth.templates import Pools

        tadj, tnoun = self.terms
        return Pools(
            backbone.POOLS
            | {
                "tadj": tadj, "tnoun": tnoun, "topic": self.topics,
                "area": self.areas, "subjects": self.subjects, "control": self.controls,
                "othersubj": self.others,
                # a technical noun phrase: "hypothalamic signalling", "neurotrophin expression"
                "tnp": ("{@tadj} {@tnoun}", "{@tadj} {@head}", "{@tnoun} {@head}",
                        "{@tadj} {@tnoun} {@head}", "{@tnoun}"),
                "heads": self.heads + backbone.POOLS["sheads"],
                "timeunit": self.time_units,
            },
            flat=backbone.FLAT_POOLS,
        )  # fmt: skip

    def frames(self, name: str) -> tuple[str, ...]:
        """The field's frames for a sentence role, with the backbone's shared ones."""
        shared = {"result": backbone.RESULT, "compare": backbone.COMPARE,
                  "context": backbone.CONTEXT}  # fmt: skip
        return shared.get(name, ()) + getattr(self, name)


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
    term_roots=(
        "neur", "cortic", "thalam", "hippocamp", "amygdal", "striat", "cerebell", "synapt",
        "dendr", "axon", "gli", "myel", "astr", "adren", "opi", "cannabin", "nocicept", "cochle",
        "retin", "gustat", "somat", "gangli", "spin", "medull", "cerebr", "insul", "pallid",
        "encephal", "mening", "ventric", "nigr", "psych", "mnem", "narc", "epilept", "orex",
        "melan", "hypophys", "neurit", "axol", "vesic", "callos", "purkinj", "pyramid", "interneur",
    ),
    term_counts=(4500, 5500),
    heads=_w("""
        neurons circuits synapses receptors terminals projections afferents interneurons
        dendrites axons networks ensembles populations assemblies rhythms nuclei tracts
        inputs outputs boutons glia astrocytes microglia oligodendrocytes vesicles currents
        potentials conductances spikes bursts
    """),
    topics=_w(
        "behaviour|learning|decision making|motivation|emotion|perception|attention|motor control|"
        "arousal|homeostasis|stress responses|social behaviour|feeding behaviour|navigation|"
        "pain processing|sensory processing|cognition|neural development|synaptic transmission|"
        "neural coding|brain ageing|neuroinflammation|addiction|neurodegeneration|habit formation|"
        "memory consolidation|multisensory integration|vigilance|exploration|defensive behaviour|"
        "circadian timing|energy balance|thermoregulation|respiration|vocal communication", "|"
    ),
    areas=(
        "systems neuroscience", "behavioural neuroscience", "neurophysiology", "neuroanatomy",
        "neuropharmacology", "cognitive neuroscience", "developmental neurobiology",
        "computational neuroscience", "neurology", "psychiatry",
    ),
    subjects=("animals", "subjects"),
    controls=("sham", "vehicle", "control"),
    others=("other species", "primates", "humans", "female animals", "older animals",
            "other brain states"),  # fmt: skip
    time_units=("days", "weeks", "hours", "minutes", "sessions", "trials"),
    background_cue=(
        "The {T} is {a_type} structure of the {system} system.",
        "{type} neurons of the {T} form part of the {system} system.",
        "Within the {system} system, the {T} consists mainly of {type} neurons.",
        "The {T} is a {system} structure rich in {type} neurons.",
        "<Located|Situated> in the {system} system, the {T} <contains|holds> {type} neurons.",
        "Most neurons of the {T}, a {system} structure, are {type}.",
        "The {T} is a <largely|mainly> {type} <part|component> of the {system} system.",
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
        "<Lesion|Anatomical|Recording> studies <have tied|tied> it to {oa}[ and {ob}].",
    ),
    unknown=(
        "Whether the {T} <regulates|controls|shapes|influences> {olist} is <unknown|unclear>.",
        "How the {T} contributes to {olist} <remains unclear|is not understood|has not been established>.",
        "The role of the {T} in {olist} has not been <tested|examined|addressed>.",
        "<Little|Nothing> is known about how the {T} <influences|shapes> {olist}.",
    ),
    methods_tpl=(
        "Here we applied {iv} to the {T} in {sp} (n = {n}) and measured {olist} with {method}.",
        "We tested {iv} of the {T} in {n} {sp}, using {method}.",
        "Using {method}, we examined {olist} after {iv} of the {T} in {sp} (n = {n}).",
        "We combined {iv} of the {T} with {method} in {n} {sp}.",
        "<In|Across> {n} {sp}, we <used|applied> {iv} of the {T} and <measured|quantified|recorded> {olist} <with|by> {method}.",
    ),
    methods_after_question=(
        "To test this, we applied {iv} to the {T} in {n} {sp} and used {method}.",
        "To find out, we tested {iv} of the {T} in {n} {sp} with {method}.",
        "To <address|answer> this, we <combined|paired> {iv} of the {T} with {method} in {n} {sp}.",
    ),
    result=(
        "In {sp}, {iv} [{@adv} ]{V} {o} ({stat}).",
        "{method} showed that {iv} [{@adv} ]{V} {o} ({stat}).",
    ),
    compare=(
        "{sp} with {iv} of the {T} showed {C} {o} than controls ({stat}).",
    ),
    conclusion_cue=(
        "Hence the {T} of the {system} system {clauses}.",
        "Within the {system} system, the {T} {clauses}.",
    ),
    context=(
        "{@tnp} in the <brain|nervous system|forebrain|brainstem> <is|remains> a {@adj} <topic|question> in {@area}.",
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
    systems=("temperate", "arid", "tropical", "alpine", "coastal", "boreal", "upland", "riverine"),
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
    term_roots=(
        "phyt", "rhiz", "chlor", "phyll", "sperm", "carp", "myc", "bacter", "agr", "ped", "xyl",
        "phlo", "stomat", "anth", "flor", "germin", "cotyl", "lign", "cellul", "pect",
        "gibberell", "cytokin", "potass", "hum", "silic", "herb", "fung", "nemat", "rhizob",
        "amyl", "glum", "spor", "bract", "culm", "hort", "arv", "pastor", "vern", "ombr", "pluv",
        "hal", "xer", "psamm", "lith", "argill", "cupr", "sapr", "endophyt", "mycorrhiz",
    ),
    term_counts=(4500, 5500),
    heads=_w("""
        roots leaves shoots stems seedlings soils residues canopies tissues grains seeds pods
        microbes communities pastures stands swards rhizomes nodules aggregates horizons
        cultivars varieties populations crops plots fields orchards rotations
    """),
    topics=_w(
        "crop productivity|food security|soil fertility|nutrient cycling|water balance|"
        "plant development|yield stability|climate adaptation|pest management|plant nutrition|"
        "root growth|crop rotation|grain quality|carbon storage|land use|plant breeding|"
        "soil structure|plant health|resource use|farm income|weed control|seed production|"
        "nitrogen cycling|soil biology|crop establishment|pollination|grazing|harvest timing|"
        "post-harvest losses|irrigation scheduling|erosion control|drainage|intercropping", "|"
    ),
    areas=(
        "agronomy", "crop science", "soil science", "plant physiology", "plant breeding",
        "agricultural ecology", "horticulture", "plant pathology", "farming systems research",
        "agricultural economics",
    ),
    subjects=("plots", "trial sites", "units"),
    controls=("untreated", "control", "unfertilised"),
    others=("other crops", "other soils", "other climates", "commercial farms",
            "family farms", "later seasons"),  # fmt: skip
    time_units=("days", "weeks", "months", "seasons", "years", "growth stages"),
    background_cue=(
        "The {T} is {a_type} crop grown in {system} regions.",
        "Grown in {system} regions, the {T} is {a_type} crop.",
        "{system} farms rely on the {T}, {a_type} crop.",
        "The {T}, {a_type} crop, is <common|widespread> in {system} regions.",
        "<Many|Most> {system} growers <plant|sow> the {T}, {a_type} crop.",
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
        "<Earlier|Regional|Variety> trials <have recorded|recorded> its {oa}[ and {ob}].",
    ),
    unknown=(
        "How management changes {olist} in the {T} is not known.",
        "Few trials have recorded {olist} in the {T}.",
        "<Whether|How> {olist} in the {T} <respond|responds> to management is <unclear|unknown>.",
    ),
    methods_tpl=(
        "Across {n} {sp}, the {T} received {iv} and we recorded {olist} by {method}.",
        "We compared {iv} with untreated controls for the {T} in {n} {sp}.",
        "In {n} {sp}, we followed the {T} under {iv}, scoring {olist} by {method}.",
        "<Over|During> {k} seasons, {n} {sp} of the {T} received {iv}; {olist} were <scored|measured> by {method}.",
    ),
    methods_after_question=(
        "To address this, the {T} received {iv} in {n} {sp}, scored by {method}.",
        "Accordingly, the {T} was given {iv} across {n} {sp}, using {method}.",
        "To <test|resolve> this, we <applied|imposed> {iv} on the {T} in {n} {sp}, using {method}.",
    ),
    result=(
        "In these trials {iv} [{@adv} ]{V} {o} ({stat}).",
        "Under {iv}, the {cT} [{@adv} ]{V} its {o} ({stat}).",
        "On average {iv} [{@adv} ]{V} {o} by {pct}% ({stat}).",
    ),
    compare=(
        "Against untreated controls, {o} was {C} in the {T} ({stat}).",
        "Under {iv}, {o} was {C} for the {T} ({stat}).",
    ),
    conclusion_cue=(
        "For {system} regions, the {T} {clauses}.",
        "In {system} regions, the {T} {clauses}.",
    ),
    context=(
        "{@tnp} <is|remains> a {@adj} <concern|question> for <growers|breeders|agronomists>.",
    ),
)  # fmt: skip

LEXICONS = {"domain": DOMAIN, "general": GENERAL}
