"""The curated lexicon of `bench make`: direction words in matched pairs, and the cues that
tell result sentences from background, methods and conclusions.

A reversal swaps one direction word for its partner: `increased` <-> `decreased`, `enhanced`
<-> `impaired`, `higher` <-> `lower`, ... Each pair lists its inflections in step (the k-th
form of one word is the partner of the k-th form of the other), so a past tense stays a past
tense and a noun a noun. A word that appears in several pairs has several partners; the first
pair that lists it gives its default one (`impaired` -> `enhanced`; `facilitated` and `improved`
-> `impaired` one way), and the others are tried in order when the token counts of the two
versions must match (`--equal-tokens`). Every word has a direction: +1 for the first word of
its pair (more of the measured thing), -1 for the second.

What is left out, on purpose:
- words whose other senses are common in scientific prose: `high`/`low` (high-resolution),
  `most`/`least` (at least), `positive`/`negative` outside the phrases below (HIV-positive,
  positive control), `induced` (LPS-induced), `gain`/`loss` (loss-of-function), `up`/`down`;
- claim verbs (`show`, `suggest`, `demonstrate`, `indicate`, `reveal`, `find`, ...): they say
  how sure the authors are, not which way the result went, and are never altered
  (`CLAIM_VERBS`);
- any word inside a hyphenated compound (`higher-order`, `activity-increasing`): compounds
  are matched whole and are not in the lexicon;
- the nouns that name interventions and measures rather than results: `activation`,
  `inhibition`, `stimulation` (chemogenetic activation is a method), `potentiation`,
  `facilitation`, `depression` (long-term potentiation, paired-pulse facilitation are measures).
  The nouns kept are `increase`, `decrease`, `reduction` (one way: a reduction -> an increase),
  `enhancement`, `impairment`, `improvement`, `upregulation`, `downregulation`; `a`/`an` before
  a reversed noun is changed with it when the partner needs the other article.
"""

from __future__ import annotations

import re

# (up forms, down forms, note): the k-th up form pairs with the k-th down form. Order matters:
# a word's first pair gives its default partner.
PAIRS: tuple[tuple[str, str, str], ...] = (
    ("increase increases increased increasing", "decrease decreases decreased decreasing", ""),
    ("increase increases increased increasing", "reduce reduces reduced reducing", ""),
    ("increase", "reduction", "one way: a reduction -> an increase (the noun)"),
    ("enhance enhances enhanced enhancing enhancement", "impair impairs impaired impairing impairment", ""),
    ("enhanced", "attenuated", ""),
    ("higher highest", "lower lowest", "not as verbs: 'to lower' is skipped"),
    ("more", "less", "not in 'more or less', 'no more', 'once more'"),
    ("greater greatest", "smaller smallest", ""),
    ("larger largest", "smaller smallest", ""),
    ("activate activates activated activating", "inhibit inhibits inhibited inhibiting", ""),
    ("promote promotes promoted promoting", "suppress suppresses suppressed suppressing", ""),
    ("promote promotes promoted promoting", "prevent prevents prevented preventing", ""),
    ("positively", "negatively", ""),
    ("positive", "negative", "only before correlation, association, relationship, effect, ..."),
    ("facilitate facilitates facilitated facilitating", "impair impairs impaired impairing", ""),
    ("improve improves improved improving improvement", "impair impairs impaired impairing impairment", ""),
    ("raise raises raised raising", "lower lowers lowered lowering", ""),
    ("elevated", "reduced", ""),
    ("upregulate upregulates upregulated upregulating upregulation",
     "downregulate downregulates downregulated downregulating downregulation", ""),
    ("up-regulate up-regulates up-regulated up-regulating up-regulation",
     "down-regulate down-regulates down-regulated down-regulating down-regulation", ""),
    ("strengthen strengthens strengthened strengthening stronger strongest",
     "weaken weakens weakened weakening weaker weakest", ""),
    ("accelerate accelerates accelerated accelerating faster fastest",
     "slow slows slowed slowing slower slowest", "'slow' (the base form) is not a partner"),
    ("accelerated accelerates", "delayed delays", ""),
    ("augment augments augmented augmenting", "diminish diminishes diminished diminishing", ""),
    ("potentiate potentiates potentiated potentiating", "attenuate attenuates attenuated attenuating", ""),
    ("exacerbate exacerbates exacerbated exacerbating", "alleviate alleviates alleviated alleviating", ""),
    ("improve improves improved improving", "worsen worsens worsened worsening", ""),
    ("rose rise rises rising", "fell fall falls falling", ""),
    ("longer longest", "shorter shortest", ""),
    ("stimulate stimulates stimulated stimulating", "inhibit inhibits inhibited inhibiting", ""),
    ("enriched", "depleted", ""),
    ("stabilize stabilizes stabilized stabilizing", "destabilize destabilizes destabilized destabilizing", ""),
    ("enable enables enabled enabling", "prevent prevents prevented preventing", ""),
    ("depolarized depolarizing depolarised", "hyperpolarized hyperpolarizing hyperpolarised", ""),
)
# Base forms whose other reading is too common to alter ("a slow rise", "to lower the dose" is
# the verb, but "lower levels" the comparative: the comparative is kept, see VERB_BEFORE).
UNPAIRED = frozenset({"slow"})

# `positive`/`negative` only before these nouns.
POSITIVE_NOUNS = re.compile(
    r"\s+(correlations?|associations?|relationships?|effects?|impacts?|influences?|regulators?|"
    r"feedback|predictors?|modulators?|allosteric)\b", re.I)  # fmt: skip
# A comparative after one of these is a verb (`to lower`, `may raise`): not a direction word.
VERB_BEFORE = frozenset(["to", "may", "might", "can", "could", "will", "would", "should", "did", "does", "do", "not"])
# A direction word after one of these (within three words) is negated: "did not increase" is no
# reversible result.
NEGATIONS = frozenset(["not", "no", "nor", "neither", "never", "without", "cannot", "unable", "fail", "fails", "failed", "lack", "lacked", "absence", "n't"])  # fmt: skip
MORE_LESS_SKIP = re.compile(r"\bmore\s+or\s+less\b|\b(?:no|once|any)\s+(?:more|less)\b", re.I)

# Verbs that state how a finding is claimed, never which way it went (kept byte-identical).
CLAIM_VERBS = frozenset(
    ["show", "shows", "showed", "shown", "showing", "suggest", "suggests", "suggested", "suggesting", "demonstrate", "demonstrates", "demonstrated", "demonstrating", "indicate", "indicates", "indicated", "indicating", "reveal", "reveals", "revealed", "revealing", "find", "finds", "found", "finding", "conclude", "concludes", "concluded", "propose", "proposes", "proposed", "establish", "establishes", "established", "confirm", "confirms", "confirmed", "report", "reports", "reported", "support", "supports", "supported", "imply", "implies", "implied", "identify", "identifies", "identified", "uncover", "uncovers", "uncovered", "observe", "observes", "observed"]
)


def _build() -> tuple[dict[str, list[str]], dict[str, int]]:
    partners: dict[str, list[str]] = {}
    direction: dict[str, int] = {}
    for up, down, note in PAIRS:
        ups, downs = up.split(), down.split()
        assert len(ups) == len(downs) or len(ups) == 1 or len(downs) == 1, (up, down)
        if len(ups) != len(downs):  # one form against one form only
            ups, downs = ups[:1], downs[:1]
        for u, d in zip(ups, downs, strict=True):
            for w, p, sign in ((u, d, 1), (d, u, -1)):
                if w in UNPAIRED or p in UNPAIRED or (sign == 1 and note.startswith("one way")):
                    continue
                direction.setdefault(w, sign)
                if p not in partners.setdefault(w, []):
                    partners[w].append(p)
    clash = [w for w in direction if w in CLAIM_VERBS]
    assert not clash, clash
    return partners, direction


# word -> its partners (default first), word -> its direction (+1 / -1)
PARTNERS, DIRECTION = _build()


def lexicon_report() -> dict:
    """What make.json records about the lexicon used."""
    return {
        "pairs": [{"up": u.split(), "down": d.split(), "note": n} for u, d, n in PAIRS],
        "words": len(PARTNERS),
        "claim_verbs_kept": sorted(CLAIM_VERBS),
        "left_out": sorted(UNPAIRED),
    }


# --- sentence roles --------------------------------------------------------------------------

_I = re.I
RESULT_CUES = re.compile(
    r"\b(?:we|our|this study|these (?:data|results|experiments|analyses)|the results?|results|data|"
    r"analyses|experiments)\s+(?:\w+\s+)?(?:found|find|finds|show(?:ed|s|n)?|reveal(?:ed|s)?|"
    r"demonstrat(?:ed|es?)|observ(?:ed|e)|uncover(?:ed)?|identif(?:ied|y))\b|"
    r"\b(?:was|were|is|are)\s+(?:\w+\s+)?(?:associated|correlated|linked)\s+with\b|"
    r"\bresulted in\b|\bled to\b|\bcompared (?:with|to)\b|\brelative to\b|\bthan\b|"
    r"\b[pP]\s*[<=>≤]\s*0?[.,]\d|\bsignificant(?:ly)?\b|\b\d+(?:\.\d+)?\s?%|\bfold\b|"
    r"\b(?:odds|hazard) ratio\b|\b95\s?% CI\b|\bt\(\d+\)|\bF\(\d+", _I)  # fmt: skip
METHOD_CUES = re.compile(
    r"\b(?:we|here we|here,? we)\s+(?:\w+\s+)?(?:used|use|applied|apply|measured|measure|recorded|record|"
    r"performed|perform|combined|combine|developed|develop|trained|conducted|analy[sz]ed|"
    r"examined|examine|investigated|investigate|tested|test|assessed|assess|imaged|sequenced|"
    r"generated|designed|employed|implemented|studied|quantified|monitored|injected|collected|"
    r"recruited|compared|manipulated|expressed|delivered|targeted|silenced|scored)\b|"
    r"\bto (?:test|examine|investigate|determine|assess|address|explore|study|characteri[sz]e|"
    r"identify|understand|this end)\b|\busing\b|\bwere (?:\w+ly )?(?:recorded|measured|assessed|"
    r"collected|analy[sz]ed|randomi[sz]ed|trained|tested|scored|quantified|monitored|imaged|"
    r"injected|recruited|blind|blinded|assigned|housed|treated|exposed|given)\b|"
    r"\bwas (?:recorded|measured|assessed|quantified|monitored|scored|chosen|determined by)\b|"
    r"\b(?:participants|subjects|patients|animals|mice|rats) (?:were|received|underwent)\b", _I)  # fmt: skip
BACKGROUND_CUES = re.compile(
    r"\b(?:is|are|remains?|was|were) (?:still )?(?:unclear|unknown|poorly understood|not known|"
    r"elusive|debated|controversial|not well understood)\b|\bwhether\b|\blittle is known\b|"
    r"\b(?:has|have) (?:long )?been\b|\bprevious(?:ly)?\b|\bearlier (?:work|studies|reports)\b|"
    r"\bis (?:thought|believed|known)\b|\bare (?:thought|believed|known)\b|\bhypothesi[sz]|"
    r"\bwe asked\b|\bwe (?:sought|aimed)\b|\bour aim\b|\bthe aim\b|\bpredict(?:s|ed)?\b|"
    r"\bexpected\b|\bwould\b|\bif\b", _I)  # fmt: skip
CONCLUSION_CUES = re.compile(
    r"\bwe conclude\b|\bin conclusion\b|\b(?:these|our|the|this|together,? these) (?:results|"
    r"findings|data|observations|studies|work|study)\s+(?:\w+\s+)?(?:suggest|indicate|demonstrate|show|"
    r"reveal|support|provide|establish|identify|highlight|imply|point)\b|\btaken together\b|"
    r"^\s*(?:together|collectively|thus|hence|therefore|overall|in sum|in summary)\b", _I)  # fmt: skip
