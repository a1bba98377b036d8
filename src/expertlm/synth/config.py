"""The options of `corpus synth`: the synthetic world's size, noise and structure."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from expertlm.config import StageConfig
from expertlm.synth.lexicon import LEXICONS

# An item set may reuse a pair for at most this many items (different interventions, species,
# numbers and templates), so a small world cannot silently make a benchmark of near-copies.
# Pairs are used in turn (per true effect), so their use differs by at most one.
MAX_ITEMS_PER_PAIR = 8


class SynthConfig(StageConfig):
    """Options of `corpus synth` (the synthetic literature world)."""

    seed: int = 0
    """Seed of the world, the literature and the benchmark: the same seed and options give the
    same bytes."""
    field: Literal["domain", "general"] = "domain"
    """`domain` (a neuroscience-like field) or `general` (another field: other name morphemes,
    entities and templates, for the general-pretrained and general-tokenizer variants)."""
    papers: int = Field(2400, ge=1)
    """Papers in the training literature (each reports min_findings..max_findings findings)."""
    noise: float = Field(0.1, ge=0.0, lt=0.5)
    """Fraction of published findings (literature and benchmark originals) whose direction is
    flipped; the oracle scores 1 - noise."""
    latent_only: bool = False
    """The hard world: effects come from latent vectors alone and no abstract names a target's
    classes, so only pair-level memory and low-rank structure can help."""
    years: tuple[int, int] = (2002, 2022)
    """First and last year of the literature ("2002-2022"); papers are spread evenly over them."""
    bench_year: int = 2023
    """Year of the benchmark papers (after the literature's last year)."""
    bench_items: int = Field(200, ge=4)
    """Items of the forward-looking benchmark (pairs never reported in the literature)."""
    seen_items: int = Field(100, ge=4)
    """Items of the memorisation check (pairs the literature reports)."""
    targets: int = Field(18, ge=2)
    """Targets (brain structures; crop lines in the general field)."""
    outcomes: int = Field(9, ge=2)
    """Outcome measures."""
    systems: int = Field(3, ge=1)
    """Classes of the first observable attribute (the target's system; the benchmark section)."""
    types: int = Field(2, ge=1)
    """Classes of the second observable attribute (the target's transmitter type)."""
    rank: int = Field(3, ge=1)
    """Dimension of the latent vectors whose dot product gives each effect's sign."""
    holdout: int = Field(3, ge=1)
    """Outcomes per target never reported in the literature (the forward benchmark's pairs)."""
    latent_noise: float = Field(0.2, ge=0.0)
    """Spread of a target's latent vector around the sum of its class vectors (unit length);
    the larger, the less the classes determine the effects."""
    min_findings: int = Field(2, ge=1)
    """Fewest findings a paper reports."""
    max_findings: int = Field(3, ge=1)
    """Most findings a paper reports."""
    posttrain_items: int = Field(0, ge=0)
    """Also write this many SFT questions (sft.jsonl) and preference pairs (preferences.jsonl)
    about the literature's published findings, for post-training (never about a forward
    benchmark pair; synth/posttrain.py); 0: none."""

    @field_validator("years", mode="before")
    @classmethod
    def _parse_years(cls, v: Any) -> Any:
        if isinstance(v, int):
            return (v, v)
        if isinstance(v, str):
            first, sep, last = v.strip().partition("-")
            try:
                return (int(first), int(last if sep else first))
            except ValueError:
                raise ValueError(f"expected FIRST-LAST, e.g. 2002-2022 (got {v!r})") from None
        return v

    @model_validator(mode="after")
    def _consistent(self) -> SynthConfig:
        lex = LEXICONS[self.field]
        problems = []
        if self.years[0] > self.years[1]:
            problems.append(
                f"--years {self.years[0]}-{self.years[1]}: the first year is after the last"
            )
        if self.bench_year <= self.years[1]:
            problems.append(
                f"--bench-year {self.bench_year} is not after the literature's last year {self.years[1]}"
            )
        if self.systems > len(lex.systems):
            problems.append(
                f"--systems {self.systems}: the {self.field} field has {len(lex.systems)}"
            )
        if self.types > len(lex.types):
            problems.append(f"--types {self.types}: the {self.field} field has {len(lex.types)}")
        if self.targets < self.systems * self.types:
            problems.append(
                f"--targets {self.targets}: every class combination needs a target "
                f"(--systems {self.systems} x --types {self.types} = {self.systems * self.types})"
            )
        if self.min_findings > self.max_findings:
            problems.append(
                f"--min-findings {self.min_findings} is above --max-findings {self.max_findings}"
            )
        if self.holdout > self.outcomes - self.max_findings:
            problems.append(
                f"--holdout {self.holdout}: each target needs --max-findings {self.max_findings} "
                f"reported outcomes, so at most {max(self.outcomes - self.max_findings, 0)} of "
                f"--outcomes {self.outcomes} can be held out"
            )
        for key, n, pairs, what, fix in (
            ("bench-items", self.bench_items, self.targets * self.holdout, "held-out",
             "raise --targets or --holdout"),
            ("seen-items", self.seen_items, self.targets * (self.outcomes - self.holdout),
             "reported", "raise --targets or --outcomes"),
        ):  # fmt: skip
            if 0 < pairs < n / MAX_ITEMS_PER_PAIR:
                problems.append(
                    f"--{key} {n}: too few targets for the requested items: at most "
                    f"{MAX_ITEMS_PER_PAIR} items per pair, and the world has {pairs} {what} "
                    f"(target, outcome) pairs ({fix})"
                )
        if problems:
            raise ValueError("; ".join(problems))
        return self


class WebConfig(StageConfig):
    """Options of `corpus web` (a mixed synthetic web corpus with a hidden truth file)."""

    seed: int = 0
    """Seed of the two synthetic fields' worlds and of the web fields' text and the mixing."""
    domain_docs: int = Field(1000, ge=1)
    """Documents (papers) from the domain field."""
    general_docs: int = Field(1000, ge=0)
    """Documents (papers) from the general field."""
    other_docs: int = Field(1000, ge=0)
    """Documents from each of the other web fields (law, finance, cooking pages)."""
    skip_papers: int = Field(0, ge=0)
    """Take each field's papers after the first N of its literature: `corpus synth` of the
    same seed with at most N papers (whose first N papers are these) then shares no document
    with the web corpus, so its validation split is held-out text for models trained on it."""
