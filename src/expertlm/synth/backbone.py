"""The English and general-scientific backbone every synthetic field shares.

Real fields write in one language: function words, general scientific vocabulary ("we found",
"significantly", "suggest"), statistics and methods, and sentence structure are common to all
of them; what differs is the technical terms. This module holds the shared part: word pools
(drawn Zipf-weighted, see `templates.Pools`), the direction words (the only words the benchmark
changes) and the sentence frames whose wording no field changes (context, design details, null
results on other quantities, implications, limitations). A field (`lexicon.py`) adds its
morphemes, entities, topic words and its own frames for the sentences that carry findings.

No pool word is a direction word or starts with a direction word's stem ("high", "reduc",
"promot"), so the direction words occur only as direction words and their BPE pieces are not
shared with other words (`tests/test_synth.py` checks this and the pair token counts).
"""

from __future__ import annotations

import re

# Matched pairs (up, down). Every word here occurs only as a direction word, never elsewhere in
# either field's text, so the two members of a pair have the same frequency in expectation and
# a BPE tokenizer trained on either field gives them the same number of tokens.
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
DIRECTION_WORDS = frozenset(w for pair in DIRECTION_PAIRS for w in pair)
# No other word may start with these (a pool word "highly" would let BPE split " higher" into
# " high" + "er" but keep " lower" whole).
DIRECTION_STEMS = tuple(sorted({w[:-2] for w in DIRECTION_WORDS} | {"high", "low", "great", "small"}))


def _w(text: str) -> tuple[str, ...]:
    return tuple(text.split())


# --- word pools (most common first: the k-th word has weight 1/(k + 1)) -----------------------

POOLS: dict[str, tuple[str, ...]] = {
    # attributive adjectives ("a {@adj} role")
    "adj": _w("""
        important key central critical major novel distinct specific robust consistent essential
        previous recent common direct selective functional structural dynamic stable transient
        persistent sustained acute chronic early late rapid gradual local global regional broad
        complex simple variable primary secondary intrinsic basal intact normal typical relative
        partial complete overall main limited modest marked strong weak subtle clear prominent
        dominant independent shared unique multiple diverse heterogeneous additive synergistic
        reciprocal bidirectional parallel sequential adaptive protective compensatory regulatory
        modulatory causal quantitative systematic comprehensive preliminary conserved divergent
        emergent latent residual steady accurate active inactive adequate alternative apparent
        appropriate available average balanced biological brief characteristic classical coherent
        combined comparable competitive conditional conventional coordinated corresponding crucial
        cumulative current cyclic definitive delayed detailed differential discrete distal
        proximal efficient endogenous exogenous established evident excessive experimental
        extensive external internal flexible focal fundamental general genetic graded heritable
        identical immediate incomplete individual inherent initial integrated intense
        intermediate invariant known lasting linear nonlinear maximal minimal mechanistic mixed
        moderate molecular natural negative positive neutral notable optimal organised original
        particular passive pathological physiological plausible potential practical precise
        predictive predominant preferential prior progressive pronounced proportional putative
        random rare reactive realistic recurrent redundant relevant reliable remarkable repeated
        representative reproducible restricted reversible rhythmic rigorous salient seasonal
        sensitive separate serial severe similar single slow sparse spatial temporal spontaneous
        standard static statistical stochastic strict striking substantial successive sufficient
        superficial systemic targeted theoretical tonic phasic uniform universal unstable unusual
        useful valid vital widespread abundant ambiguous analogous anatomical antagonistic
        asymmetric symmetric auxiliary canonical cellular chemical circadian coarse compact
        concurrent constitutive continuous contrasting convergent costly dense
        descriptive distributed diverging dual elaborate elementary empirical enduring episodic
        equivalent exploratory facultative fragile frequent hierarchical hybrid idiosyncratic
        inducible inhibitory excitatory interactive labile lateral medial mature immature
        metabolic migratory multimodal mutual nested nominal obligate ongoing orthogonal
        paradoxical periodic permanent pivotal plastic polarised pooled quiescent regular
        resilient saturating scalable specialised stereotyped structured
        subsequent supportive tractable trivial unaltered unbiased uneven unexplained
    """),
    # adverbs before a result verb ("significantly increased")
    "adv": _w("""
        significantly markedly consistently substantially strongly reliably robustly selectively
        rapidly progressively transiently persistently moderately modestly partially
        dramatically clearly steadily sharply slightly dose-dependently specifically gradually
        noticeably measurably considerably appreciably uniformly reproducibly predictably
    """),
    # sentence openers ("Notably, ...")
    "sadv": (
        "Notably", "Moreover", "In addition", "Furthermore", "Importantly", "Interestingly",
        "Similarly", "Likewise", "Additionally", "Remarkably", "Crucially", "Accordingly",
        "In particular", "Specifically", "Strikingly", "As expected", "Unexpectedly",
        "Nevertheless", "Nonetheless", "Independently", "At the same time", "In parallel",
        "By comparison", "Beyond this", "In practice", "In principle", "Historically",
        "Traditionally", "Until recently",
    ),
    # general scientific nouns
    "gnoun": _w("""
        role mechanism process function contribution influence relationship association
        interaction dependence pattern structure organisation dynamics variability heterogeneity
        specificity sensitivity stability plasticity adaptation regulation control modulation
        integration coordination balance homeostasis development maturation ageing evolution
        diversity distribution composition architecture connectivity topology geometry scale
        timing duration frequency amplitude magnitude extent degree threshold capacity efficiency
        performance accuracy precision reliability robustness resilience vulnerability
        susceptibility risk response reaction signal noise feedback input output state
        transition phase stage onset recovery progression persistence turnover flux gradient
        profile signature marker indicator predictor determinant factor component element
        feature property attribute parameter variable measure metric index estimate model
        framework hypothesis theory prediction assumption evidence observation finding dataset
        sample cohort population condition exposure dose concentration protocol procedure design
        experiment trial analysis approach method technique tool assay platform pipeline strategy
        criterion baseline reference comparison contrast difference similarity shift trend
        variation deviation error uncertainty bias confound covariate interval range period window
        episode session cycle season week month hour minute age sex weight size length depth
        volume mass ratio proportion fraction number count quantity supply demand availability
        allocation investment cost benefit trade-off constraint limitation challenge problem
        question need opportunity implication application relevance importance consequence origin
        source pathway network module unit layer compartment domain zone site locus environment
        context history habitat niche landscape laboratory practice policy management
        perturbation stimulus stressor load heritability genotype phenotype lineage ancestry
        identity polymorphism mutation allele expression metabolism transport uptake synthesis
        storage signalling chemistry physiology anatomy morphology ecology energetics kinetics
        mechanics statistics inference resolution coverage throughput
        replication validation calibration normalisation annotation classification segmentation
        registration alignment quantification visualisation characterisation
    """),
    # research verbs, past tense or participle ("we {@vpast}", "was {@vpast}")
    "vpast": _w("""
        examined assessed quantified characterised measured recorded tested compared mapped
        tracked monitored evaluated analysed estimated determined identified detected observed
        documented described modelled simulated sampled surveyed screened profiled sequenced
        imaged scored rated ranked classified clustered annotated validated replicated confirmed
        verified calibrated normalised standardised controlled adjusted corrected pooled averaged
        combined integrated extracted isolated purified labelled stained visualised localised
        resolved inferred predicted explored investigated probed studied addressed considered
        defined specified derived computed calculated fitted tabulated summarised reviewed
        revisited followed collected harvested prepared processed stored randomised allocated
        assigned matched balanced blinded excluded included selected recruited
    """),
    # reporting verbs with a plural subject ("these results {@vpres} that ...")
    "vpres": _w("""
        suggest indicate show reveal demonstrate support imply confirm establish
        extend refine clarify complement corroborate strengthen illustrate underline underscore
        emphasise argue
    """),
    # heads of technical noun phrases ("{@tadj} {@head}"), singular; "heads" are plural (with
    # the field's own, in object positions: "through {@tadj} {@heads}")
    "head": _w("""
        activity expression signalling function pathway metabolism transport turnover synthesis
        production uptake secretion binding accumulation degradation stability localisation
        distribution diversity composition tissue structure morphology integrity homeostasis
        regulation remodelling processing modification phosphorylation methylation acetylation
        oxidation transcription translation assembly trafficking clearance efflux influx exchange
        coupling capacity tolerance resistance damage repair load state architecture dynamics
        kinetics
    """),
    "sheads": _w("""
        levels concentrations gradients responses profiles networks interactions complexes
        channels transporters enzymes genes proteins peptides metabolites markers variants
        isoforms cells
    """),
    # statistical tests and models
    "stattest": (
        "two-way ANOVA", "one-way ANOVA", "repeated-measures ANOVA", "linear mixed models",
        "generalised linear models", "t-tests", "Mann-Whitney tests", "Wilcoxon tests",
        "permutation tests", "Kruskal-Wallis tests", "mixed-effects regression",
        "Bayesian hierarchical models", "bootstrap resampling", "logistic regression",
        "Poisson regression", "survival analysis", "principal component analysis",
        "generalised additive models", "chi-square tests", "Cox regression",
    ),
    "correction": (
        "Bonferroni", "Holm", "false discovery rate", "Benjamini-Hochberg", "Tukey", "Sidak",
        "Dunnett", "Greenhouse-Geisser",
    ),
    "software": (
        "R", "Python", "MATLAB", "SPSS", "GraphPad Prism", "Stata", "SAS", "Julia", "JASP",
        "Jamovi",
    ),
    # everyday English nouns, the common words in every field's names ("heart rate", "leaf
    # area", "electrical stimulation"): drawn uniformly (FLAT_POOLS), since all are common words
    "everyday": _w("""
        body brain blood heart bone muscle skin eyes food water light air heat cold energy
        health disease growth stress weight age sleep memory pain fear reward behaviour
        attention vision hearing smell taste touch movement posture walking breathing eating
        drinking speech language reading learning animals humans people children adults
        infants mice rats birds fish insects plants crops trees seeds leaves roots stems fruit
        grain flowers soil rain weather climate season land forest river sea salt sugar fat
        milk protein oil wood metal fire noise sound music nucleus neurons cells structure
        system area field complex power rate density temperature pressure strength cover
        activity intake duration sensitivity interaction amplitude release oscillations
        activation stimulation inhibition silencing infusion lesions injury recovery antagonist
        agonist video tracking imaging scoring recordings recording electricity signals
        yield biomass height number nitrogen uptake incidence frost tolerance canopy content
        harvest index moisture weeds pressure stem germination fertiliser irrigation compost
        application feeding drought shading compaction plots greenhouse trials farms stations
        drones sampling mapping markets families schools work money travel cities villages
        homes roads transport water-use firing seeking working startle spine theta gamma
        potentiation anxiety locomotion juveniles males females adulthood
    """),
    "findings": _w("findings results data observations experiments measurements analyses"),
    "studies": _w("studies reports experiments surveys analyses models reviews trials"),
}

FLAT_POOLS = frozenset({"everyday"})

# --- shared frames ----------------------------------------------------------------------------
# Slots every field fills: T (target), cT (target with its type cue), iv, sp (subjects), n,
# method, olist (the study's outcomes), o (one outcome), stat, pstat (a null statistic), k (a
# small number), pct. Field pools: tnp (a technical noun phrase), topic, area, subjects,
# control, othersubj.

CONTEXT = (
    "{@tnp} <is|remains> a {@adj} {@gnoun} in {@area}, <linking|connecting> {@tnp} <to|with> {@topic}.",
    "{@tnp} <plays|has> a {@adj} role in {@topic}[ through {@tadj} {@heads}].",
    "<Recent|Previous|Earlier|Several> {@studies} <have linked|have related|have tied> {@tnp} to {@topic}[ and {@tnp}].",
    "Much of what is known about {@topic} comes from {@studies} of {@tnp} and {@tadj} {@heads}.",
    "{@sadv}, the {@gnoun} of {@tnp} in {@topic} <remains|is still> <poorly|incompletely|only partly> understood.",
    "<Understanding|Explaining|Predicting> {@topic} requires <knowledge|an account|a description> of {@tnp} and its {@gnoun}.",
    "{@tnp} <is|has long been> thought to <shape|support|regulate|coordinate|constrain|modulate> {@topic} via {@tnp}.",
    "<Both|Together,> {@tnp} and {@tnp} <contribute to|take part in|are involved in> {@topic}.",
    "{@topic} <depends on|is shaped by|varies with> the {@gnoun} of {@tnp}[ and {@tnp}].",
    "<A growing|A large|An extensive> body of <work|evidence|research> <concerns|addresses|describes> the {@adj} {@gnoun} of {@tnp} in {@area}.",
    "<Disruption|Loss|Variation> of {@tnp} <is associated with|accompanies|co-occurs with> <changes|shifts|differences> in {@topic} and {@tnp}.",
    "{@sadv}, {@tnp} has been {@vpast} in <relation|connection> to {@tnp}[, a {@adj} {@gnoun} of {@topic}].",
)
# Sentences on everyday matters that a field's topic touches (every field writes them).
BROAD = (
    "{@tnp} has <consequences|implications> for {@everyday}, {@everyday} and {@everyday}.",
    "<Questions|Studies> of {@everyday} and {@everyday} <often|now|also> <involve|touch on|turn to> {@tnp}.",
    "<Links|Connections> between {@everyday}, {@everyday} and {@topic} <are|remain> <debated|poorly mapped|of wide interest>.",
    "{@everyday}, {@everyday} and {@everyday} <all|each> <depend on|reflect|vary with> {@topic}.",
    "<Changes|Differences> in {@everyday} and {@everyday} are <common|frequent|well documented> in {@area}.",
)
DETAIL = (
    "<All|The> {@subjects} were <randomly|pseudo-randomly> <assigned|allocated> to <treatment|experimental> and {@control} groups[, {@vpast} for {@tnp}].",
    "{@tadj} {@heads} were {@vpast} <by|with|using> {@stattest}.",
    "{@findings} were analysed with {@stattest}[ in {@software}][, with {@correction} correction].",
    "<Experimenters|Observers|Raters|Assessors> were blind to <treatment|group|condition>[, and {@tnp} was {@vpast} <separately|independently>].",
    "<Sample size|Group size> was <set|chosen|fixed> <a priori|in advance|from pilot data>[ by power analysis].",
    "{@tnp} was <recorded|monitored|measured> <as a covariate|throughout|at baseline>[ together with {@tnp}].",
    "<Outcomes|Measures|End points> were <assessed|measured|scored> <at baseline and at the end of the study|at {k} time points|over {k} {@timeunit}>.",
    "<We|The analyses> <accounted for|adjusted for|controlled for> {@tnp}[ and {@tnp}].",
    "<Procedures|Protocols> <followed|were adapted from> <published|standard|established> <guidelines|methods|protocols> for {@tnp}.",
    "We also <quantified|recorded|measured|mapped|imaged> {@tnp} and {@tnp} in {@tadj} {@heads}[ of the same {sp}].",
    "{@tnp} and {@tnp} were {@vpast} <by|with|using> {@stattest}.",
)
NULL_RESULT = (
    "{@tnp} did not differ between groups ({pstat}).",
    "No <change|difference|effect> <in|on> {@tnp} was <detected|observed|found>[ ({pstat})].",
    "{@tnp} <remained|was> <unchanged|unaffected|comparable across groups>[ ({pstat})].",
    "{@sadv}, {@tnp} and {@tnp} <were|appeared> <unaffected|similar in both groups>.",
    "No {@adj} <change|shift|difference> in {@tnp} <was seen|emerged|was detected>[ ({pstat})].",
)
IMPLICATION = (
    "These {@findings} {@vpres} that the {T} is a {@adj} <node|component|site|element> in the <control|regulation|coordination> of {olist}.",
    "<Our|These> {@findings} <may|could> <inform|guide|motivate> <future|further> <work|studies|research> on {@tnp} and {@tnp}.",
    "<Future|Further> <work|studies|experiments> <should|will need to> <examine|test|address> <whether|how> {@tnp} <contributes to|interacts with> these <effects|relations>.",
    "<This|The present> <study|work> <provides|offers> {@adj} <evidence|insight|support> for a role of the {T} in {@topic}[ and {@tnp}].",
    "Whether these <effects|results|findings> <generalise|extend|apply> to {@othersubj} remains to be <tested|determined|seen>.",
    "<The|These> {@findings} <place|position> the {T} <within|among> the <structures|elements|components> that <shape|govern|organise> {@topic}.",
    "<This|Such> {@adj} {@gnoun} may <involve|depend on|reflect> {@tnp}[ in {@tadj} {@heads}].",
)
# The findings' own sentences (direction slots V, C; the conclusion's clauses). A field adds
# its own frames to these.
RESULT = (
    "{iv} [{@adv} ]{V} {o} ({stat}).",
    "{iv} of the {cT} [{@adv} ]{V} {o} ({stat}).",
    "{iv} [{@adv} ]{V} {o} by {pct}% ({stat}).",
    "{o} was [{@adv} ]{V} after {iv} ({stat}).",
    "<This|The> <manipulation|treatment|intervention> [{@adv} ]{V} {o} ({stat}).",
    "<Compared with|Relative to> <controls|{@control} groups>, {iv} [{@adv} ]{V} {o} ({stat}).",
    "We found that {iv} [{@adv} ]{V} {o} ({stat}).",
    "<After|Following> {iv}, {o} was [{@adv} ]{V} ({stat}).",
    "{iv} [{@adv} ]{V} {o} <within|over|across> {k} {@timeunit} ({stat}).",
)
COMPARE = (
    "<After|Following> {iv} of the {T}, {o} was {C} than in <controls|{@control} groups> ({stat}).",
    "{o} was {C} after {iv} than in <untreated|matched> controls ({stat}).",
    "<Relative to|Compared with> controls, {o} was {C} <after|under> {iv} ({stat}).",
)
CONCLUSION = (
    "<Thus|Hence|Therefore|Taken together|Together>, the {cT} {clauses}.",
    "The {cT} <therefore|thus> {clauses}.",
    "<These|Our> <results|findings|data> <suggest|indicate|show> that the {cT} {clauses}.",
    "We conclude that the {cT} {clauses}.",
)

_WORD = re.compile(r"[^\W\d_]+(?:[-'][^\W\d_]+)*")


def template_words(templates) -> set[str]:
    """The literal words of templates (slots and pools left out), case-folded."""
    words: set[str] = set()
    for t in templates:
        words.update(w.casefold() for w in _WORD.findall(re.sub(r"\{[^}]*\}", " ", t)))
    return words


# The backbone's word types, case-folded: every pool word, every literal word of the shared
# frames, and the direction words. `textstats.backbone_share` counts the running words that are
# among them.
BACKBONE_WORDS = frozenset(
    {w.casefold() for words in POOLS.values() for phrase in words for w in _WORD.findall(phrase)}
    | template_words(CONTEXT + BROAD + DETAIL + NULL_RESULT + IMPLICATION + RESULT + COMPARE + CONCLUSION)
    | DIRECTION_WORDS
)
