"""The hidden truth of a synthetic field.

Targets t (brain structures; crop lines in the general field) each have two observable class
attributes, a system s(t) and a type y(t), and a latent vector u_t; outcomes o have latent
vectors v_o. The true effect of intervention i on outcome o through target t is

    effect(i, t, o) = polarity(i) * sign(u_t . v_o)

By default u_t = a_s(t) + b_y(t) + latent_noise * z_t: unit class vectors (centred over each
attribute's classes) plus a small target-specific part, so the classes, which every abstract
names, carry most of the knowledge about unseen pairs. `latent_only` draws u_t ~ N(0, I) and
names no classes: only the low-rank structure links pairs.

Each target has `holdout` outcomes that the literature never reports (the forward benchmark's
pairs). They are spread so that every outcome is held out by about as many targets, and the
targets of one class combination hold out different outcomes, so every (outcome, system, type)
rule is still reported through some target.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from expertlm.errors import ExpertlmError
from expertlm.io import read_json
from expertlm.synth.config import SynthConfig
from expertlm.synth.lexicon import LEXICONS, Lexicon

FORMAT = "expertlm.synth.world/1"
EFFECT_RULE = "effect(i, t, o) = polarity(i) * sign(u_t . v_o); a dot product of 0 counts as +1"


@dataclass
class World:
    field: str
    seed: int
    latent_only: bool
    rank: int
    systems: list[str]
    types: list[str]
    system_vectors: np.ndarray  # (S, k)
    type_vectors: np.ndarray  # (Y, k)
    target_names: list[str]
    target_system: np.ndarray  # (n_t,) int index into systems
    target_type: np.ndarray  # (n_t,) int
    U: np.ndarray  # (n_t, k)
    outcome_names: list[str]
    V: np.ndarray  # (n_o, k)
    interventions: list[tuple[str, int]]  # (name, polarity)
    species: list[str]
    methods: list[str]
    held_out: np.ndarray  # (n_t, n_o) bool: never reported in the literature

    @property
    def effect(self) -> np.ndarray:
        """(n_t, n_o) int: sign(u_t . v_o), the effect of an intervention of polarity +1."""
        return np.where(self.U @ self.V.T >= 0, 1, -1)

    @property
    def lexicon(self) -> Lexicon:
        return LEXICONS[self.field]

    def section(self, t: int) -> str:
        """The benchmark section of target t: its system ("Limbic system")."""
        return self.section_of_system(self.systems[self.target_system[t]])

    def section_of_system(self, name: str) -> str:
        return name[0].upper() + name[1:] + self.lexicon.section_suffix

    def seen_outcomes(self, t: int) -> list[int]:
        return [int(o) for o in np.flatnonzero(~self.held_out[t])]

    def pairs(self, held_out: bool) -> list[tuple[int, int]]:
        """(target, outcome) pairs, held out of the literature or reported in it, row-major."""
        mask = self.held_out if held_out else ~self.held_out
        return [(int(t), int(o)) for t, o in zip(*np.nonzero(mask), strict=True)]

    def to_json(self) -> dict:
        eff = self.effect
        return {
            "format": FORMAT,
            "field": self.field,
            "seed": self.seed,
            "latent_only": self.latent_only,
            "rank": self.rank,
            "effect_rule": EFFECT_RULE,
            "systems": [
                {"name": n, "section": self.section_of_system(n), "vector": v.tolist()}
                for n, v in zip(self.systems, self.system_vectors, strict=True)
            ],
            "types": [
                {"name": n, "vector": v.tolist()}
                for n, v in zip(self.types, self.type_vectors, strict=True)
            ],
            "targets": [
                {
                    "name": name,
                    "system": self.systems[self.target_system[t]],
                    "type": self.types[self.target_type[t]],
                    "u": self.U[t].tolist(),
                    "held_out": [self.outcome_names[o] for o in np.flatnonzero(self.held_out[t])],
                    "effects": {
                        self.outcome_names[o]: int(eff[t, o])
                        for o in range(len(self.outcome_names))
                    },
                }
                for t, name in enumerate(self.target_names)
            ],
            "outcomes": [
                {"name": n, "v": v.tolist()}
                for n, v in zip(self.outcome_names, self.V, strict=True)
            ],
            "interventions": [{"name": n, "polarity": p} for n, p in self.interventions],
            "species": self.species,
            "methods": self.methods,
        }

    @classmethod
    def from_json(cls, d: dict) -> World:
        if d.get("format") != FORMAT:
            raise ExpertlmError(
                f"not a synthetic world (format {d.get('format')!r}, expected {FORMAT})"
            )
        systems = [s["name"] for s in d["systems"]]
        types = [y["name"] for y in d["types"]]
        outcomes = [o["name"] for o in d["outcomes"]]
        index = {name: i for i, name in enumerate(outcomes)}
        held = np.zeros((len(d["targets"]), len(outcomes)), dtype=bool)
        for t, target in enumerate(d["targets"]):
            held[t, [index[o] for o in target["held_out"]]] = True
        return cls(
            field=d["field"],
            seed=d["seed"],
            latent_only=d["latent_only"],
            rank=d["rank"],
            systems=systems,
            types=types,
            system_vectors=np.array([s["vector"] for s in d["systems"]], dtype=float),
            type_vectors=np.array([y["vector"] for y in d["types"]], dtype=float),
            target_names=[t["name"] for t in d["targets"]],
            target_system=np.array([systems.index(t["system"]) for t in d["targets"]]),
            target_type=np.array([types.index(t["type"]) for t in d["targets"]]),
            U=np.array([t["u"] for t in d["targets"]], dtype=float),
            outcome_names=outcomes,
            V=np.array([o["v"] for o in d["outcomes"]], dtype=float),
            interventions=[(i["name"], i["polarity"]) for i in d["interventions"]],
            species=list(d["species"]),
            methods=list(d["methods"]),
            held_out=held,
        )


def load_world(path: str | Path) -> World:
    """A world from `world.json` (or the folder that holds it)."""
    path = Path(path)
    if path.is_dir():
        path = path / "world.json"
    return World.from_json(read_json(path))


def _class_vectors(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """`n` unit vectors in R^k, centred first (so no class direction is shared by all)."""
    x = rng.standard_normal((n, k))
    if n > 1:
        x -= x.mean(axis=0)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def _names(
    rng: np.random.Generator, lex: Lexicon, n: int, taken: set[str], option: str
) -> list[str]:
    """`n` distinct prefix+root+suffix words not in `taken` (which they are added to)."""
    combos = len(lex.prefixes) * len(lex.roots) * len(lex.suffixes)
    if n > combos - len(taken):
        raise ExpertlmError(
            f"option '{option}' (--{option}): the {lex.field} field has names for "
            f"{combos} targets and outcomes beyond its {len(lex.outcomes)} named outcomes"
        )
    out: list[str] = []
    order = rng.permutation(combos)
    for c in order:
        p, rest = divmod(int(c), len(lex.roots) * len(lex.suffixes))
        r, s = divmod(rest, len(lex.suffixes))
        word = lex.prefixes[p] + lex.roots[r] + lex.suffixes[s]
        if word in taken:
            continue
        taken.add(word)
        out.append(word)
        if len(out) == n:
            break
    return out


def make_world(cfg: SynthConfig) -> World:
    """Draw the hidden truth for `cfg` (a pure function of the seed and the options)."""
    lex = LEXICONS[cfg.field]
    rng = np.random.default_rng([cfg.seed, 0 if cfg.field == "domain" else 1])
    k, n_t, n_o = cfg.rank, cfg.targets, cfg.outcomes

    systems = [
        lex.systems[i] for i in sorted(rng.choice(len(lex.systems), cfg.systems, replace=False))
    ]
    types = [lex.types[i] for i in sorted(rng.choice(len(lex.types), cfg.types, replace=False))]
    A = _class_vectors(rng, cfg.systems, k)
    B = _class_vectors(rng, cfg.types, k)

    taken: set[str] = set()
    words = _names(rng, lex, n_t, taken, "targets")
    kinds = rng.integers(len(lex.kinds), size=n_t)
    target_names = [f"{w} {lex.kinds[kd]}" for w, kd in zip(words, kinds, strict=True)]

    if n_o <= len(lex.outcomes):
        outcome_names = [lex.outcomes[i] for i in rng.choice(len(lex.outcomes), n_o, replace=False)]
    else:  # beyond the pool: "<generated name> <suffix>" (e.g. "Calvexin release")
        extra = _names(rng, lex, n_o - len(lex.outcomes), taken, "outcomes")
        outcome_names = list(lex.outcomes) + [
            f"{w[0].upper()}{w[1:]} {lex.outcome_suffix}" for w in extra
        ]

    # Classes: the S x Y combinations in a random order, dealt to the targets in turn, so
    # every combination has floor(n_t / C) or ceil(n_t / C) members.
    combos = [(s, y) for s in range(cfg.systems) for y in range(cfg.types)]
    order = rng.permutation(len(combos))
    target_system = np.empty(n_t, dtype=int)
    target_type = np.empty(n_t, dtype=int)
    member = np.empty(n_t, dtype=int)  # index of the target within its combination
    size = np.zeros(len(combos), dtype=int)
    for t in range(n_t):
        c = int(order[t % len(combos)])
        target_system[t], target_type[t] = combos[c]
        member[t] = size[c]
        size[c] += 1

    if cfg.latent_only:
        U = rng.standard_normal((n_t, k))
    else:
        U = A[target_system] + B[target_type] + cfg.latent_noise * rng.standard_normal((n_t, k))
    V = rng.standard_normal((n_o, k))

    # Held-out outcomes: a window of `holdout` consecutive outcomes (in a random outcome order);
    # members of one combination start their windows spread over the outcomes.
    outcome_order = rng.permutation(n_o)
    held = np.zeros((n_t, n_o), dtype=bool)
    combo_of = {c: i for i, c in enumerate(combos)}
    for t in range(n_t):
        c = combo_of[(int(target_system[t]), int(target_type[t]))]
        m, M = int(member[t]), int(size[c])
        start = c + round(m * n_o / M)
        for j in range(cfg.holdout):
            held[t, outcome_order[(start + j) % n_o]] = True

    return World(
        field=cfg.field,
        seed=cfg.seed,
        latent_only=cfg.latent_only,
        rank=k,
        systems=systems,
        types=types,
        system_vectors=A,
        type_vectors=B,
        target_names=target_names,
        target_system=target_system,
        target_type=target_type,
        U=U,
        outcome_names=outcome_names,
        V=V,
        interventions=list(lex.interventions),
        species=list(lex.species),
        methods=list(lex.methods),
        held_out=held,
    )
