"""The paper's Figure 1 and its claims: what the synthetic demo is measured against.

Luo, Sun & Love (2024) score on BrainBench: an untrained GPT-2 46%, GPT-2 (pretrained on web text)
57.5%, GPT-2 trained from scratch on neuroscience with GPT-2's tokenizer 58%, GPT-2 continued on
neuroscience 63.5%, from scratch with a neuroscience tokenizer 62.5%; human experts 63.4%. Each
variant of the bundled experiments (`configs/demo.yaml`, `configs/neuro-gpt2.yaml`) plays one of
these roles (`ROLE`), so the report shows the paper's value beside each one and tests the paper's
ordering on the forward benchmark, claim by claim, as paired comparisons (McNemar's exact test and
a paired bootstrap CI of the difference, `eval compare`), and writes a plain-language summary.
"""

from __future__ import annotations

from expertlm.eval import stats

REFERENCE = "Luo, Sun & Love (2024), Figure 1 (BrainBench)"
HUMAN_EXPERTS = 0.634
# role: (the paper's variant, its accuracy)
PAPER = {
    "untrained": ("untrained GPT-2", 0.46),
    "general": ("GPT-2 (pretrained on web text)", 0.575),
    "scratch-general-tok": ("from scratch, GPT-2 tokenizer", 0.58),
    "continued": ("GPT-2 continued on neuroscience", 0.635),
    "scratch-domain-tok": ("from scratch, neuroscience tokenizer", 0.625),
}
# variant name (in the bundled experiment files) -> role
ROLE = {
    "untrained": "untrained", "general": "general", "gpt2-pretrained": "general",
    "scratch-general-tok": "scratch-general-tok", "scratch-gpt2-tok": "scratch-general-tok",
    "general-then-domain": "continued", "finetuned-gpt2": "continued",
    "scratch-domain-tok": "scratch-domain-tok", "scratch-neuro-tok": "scratch-domain-tok",
}  # fmt: skip
# (better role, worse role, the claim in words): the paper's ordering on the forward benchmark
CLAIMS = (
    ("scratch-domain-tok", "scratch-general-tok",
     "a tokenizer trained on the domain beats a general one, with the same model, data and budget"),
    ("continued", "general", "continuing a general model on domain text improves it"),
    ("scratch-domain-tok", "untrained", "training from scratch on the domain beats an untrained model"),
    ("continued", "untrained", "a general model continued on the domain beats an untrained model"),
)  # fmt: skip
ALPHA = 0.05


def verdict(difference: float, p: float) -> str:
    """Whether a claim (better minus worse = `difference`) appears, at McNemar p < ALPHA."""
    if difference > 0 and p < ALPHA:
        return "shown"
    if difference > 0:
        return "same direction, not significant"
    return "not shown"


def summary(benchmark: str, n: int, best: tuple[str, float, float, float] | None,
            untrained: float | None, ceiling: tuple[str, float] | None,
            claims: list[dict]) -> str:  # fmt: skip
    """One paragraph in plain language: the best variant against chance, the untrained model and
    the ceiling, then which of the paper's claims appear, and for those that do not, the
    smallest difference these items could have shown beside the paper's own difference. `best` is
    (label, accuracy, CI low, CI high); `claims` are rows with `claim`, `verdict`, `difference`,
    `p`, and optionally `n` and `discordant` (items, and items on which the two models disagree)
    and `paper_difference`."""
    parts = []
    if best is not None:
        label, acc, lo, hi = best
        s = (f"On the {benchmark} benchmark ({n} items, each a published abstract against a "
             f"version with its result reversed; chance is 50%), the best model, {label}, picked "
             f"the published version in {acc:.1%} of items (95% CI {lo:.1%}-{hi:.1%})")  # fmt: skip
        if untrained is not None:
            s += f", against {untrained:.1%} for an untrained model"
        if ceiling is not None:
            s += (f"; integrating every finding in the literature perfectly ({ceiling[0]}) would "
                  f"score {ceiling[1]:.1%}")  # fmt: skip
        parts.append(s + ".")
    if claims:
        by = {}
        for c in claims:
            by.setdefault(c["verdict"], []).append(c)

        def said(cs):
            return "; ".join(f"{c['claim']} ({100 * c['difference']:+.1f} points, p = {c['p']:.2g})"
                             for c in cs)  # fmt: skip

        n_shown = len(by.get("shown", []))
        s = f"Of the paper's {len(claims)} comparisons, {n_shown} appear{'s' if n_shown == 1 else ''} here"
        s += f" at McNemar p < {ALPHA}" + (f": {said(by['shown'])}" if n_shown else "")
        if by.get("same direction, not significant"):
            s += f". Pointing the paper's way but not significant: {said(by['same direction, not significant'])}"
        if by.get("not shown"):
            s += f". Not seen here: {said(by['not shown'])}"
        parts.append(s + ".")
        detectable = _detectable(claims)
        if detectable:
            parts.append(detectable)
    return " ".join(parts)


def _detectable(claims: list[dict]) -> str | None:
    """For the claims that do not appear (and carry `n` and `discordant`): the smallest
    difference McNemar's exact test could call significant on these items, beside the paper's own
    differences; None when there is nothing to say."""
    weak = []
    for c in claims:
        if c["verdict"] != "shown" and c.get("discordant") is not None:
            needed = stats.mcnemar_min_difference(c["discordant"], c["n"], ALPHA)
            if needed is not None:
                weak.append((c, needed))
    if not weak:
        return None
    s = (f"On these {weak[0][0]['n']} items, a difference between two models reaches p < {ALPHA} "
         f"only from about {_span([f'{100 * x:.1f}' for _, x in weak])} points (McNemar's exact "
         f"test, given the {_span([str(c['discordant']) for c, _ in weak])} items on which the two "
         "disagree)")  # fmt: skip
    if all(c.get("paper_difference") is not None for c, _ in weak):
        own = ", ".join(f"{100 * c['paper_difference']:+.1f}" for c, _ in weak)
        s += (f"; the paper's own difference for that claim is {own} points" if len(weak) == 1
              else f"; the paper's own differences for those claims are {own} points")  # fmt: skip
    return s + "."


def _span(values: list[str]) -> str:
    """'lo-hi' of formatted numbers (compared as numbers), or one value when they are equal."""
    lo, hi = min(values, key=float), max(values, key=float)
    return lo if lo == hi else f"{lo}-{hi}"
