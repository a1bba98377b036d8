"""Known ceilings: what knowing the truth, integrating the literature perfectly, or memorising
it scores on the benchmark.

Every baseline gives a score s(t, o) whose sign is its belief about the effect of target t on
outcome o (+1 promotes); on an item it prefers the original when sign(s) equals the original's
published effect. s = 0 is a tie, scored 0.5: the expected accuracy of a coin flip (a model's
exact ties count as wrong in `eval bench`; a baseline with no information is chance, not
worse). The integrators and the memoriser see only the literature's structured findings
(target, outcome, intervention, reported direction) - never the text:

- oracle: the true effect, sign(u_t . v_o). On published items it scores 1 - noise.
- class_integrator: logistic regression of the reported effect (direction x polarity) on
  outcome, outcome x system and outcome x type indicators; L2 penalty 1.
- lowrank_integrator: logistic matrix factorisation s = u_t . v_o + b_o with the world's rank,
  fitted by alternating Newton steps (L2 penalty 20), the best of 5 random starts.
- memoriser: the majority of the reported effects of exactly this (target, outcome) pair; a
  tie or a pair never reported scores 0.5.
"""

from __future__ import annotations

import numpy as np

from expertlm.synth.benchmark import Item
from expertlm.synth.world import World

CLASS_L2 = 1.0
# The factorisation has as many parameters per target as there are reported outcomes per
# target, so it needs a firm penalty; 20 was best of {1, 5, 20, 50, 100} on held-out pairs
# (10 seeds, class and latent-only worlds), with the lowest-loss fit of RESTARTS starts.
LOWRANK_L2 = 20.0
RESTARTS = 5
DEFINITIONS = {
    "oracle": "knows the true effect sign(u_t . v_o); scores 1 - noise on published results",
    "class_integrator": "logistic regression of the literature's reported effects on outcome, "
    "outcome x system and outcome x type indicators (L2 1), fitted on structured findings",
    "lowrank_integrator": "logistic matrix factorisation u_t . v_o + b_o of the literature's "
    "reported effects at the world's rank (L2 20, best of 5 starts), fitted on structured "
    "findings",
    "memoriser": "majority of the reported effects of the same (target, outcome) pair in the "
    "literature; 0.5 (a coin flip) when the pair was never reported or the vote is tied",
}


def _newton(X, pos, neg, l2: float, offset=0.0, beta=None, steps=25) -> np.ndarray:
    """L2-penalised binomial logistic regression by Newton's method with step halving (plain
    Newton can overshoot on separable data). X (P, F); pos/neg (P,) counts of +1 / -1 reports;
    offset (P,) is added to the logit. Returns beta (F,)."""
    F = X.shape[1]
    beta = np.zeros(F) if beta is None else beta.copy()
    total = pos + neg

    def loss(b: np.ndarray) -> float:
        z = X @ b + offset
        return float(pos @ np.logaddexp(0, -z) + neg @ np.logaddexp(0, z) + 0.5 * l2 * b @ b)

    current = loss(beta)
    for _ in range(steps):
        z = X @ beta + offset
        p = 0.5 * (1 + np.tanh(0.5 * z))  # the logistic function, without overflow
        grad = X.T @ (pos - total * p) - l2 * beta
        H = (X.T * (total * p * (1 - p))) @ X + l2 * np.eye(F)
        step = np.linalg.solve(H, grad)
        for _ in range(30):
            new = loss(beta + step)
            if new <= current:
                break
            step *= 0.5
        else:
            break
        beta, done = beta + step, current - new < 1e-9 * (1 + abs(current))
        current = new
        if done:
            break
    return beta


def oracle_scores(world: World) -> np.ndarray:
    return world.effect.astype(float)


def memoriser_scores(counts: np.ndarray) -> np.ndarray:
    """counts (n_t, n_o, 2): reports of effect +1 and -1 per pair."""
    return (counts[..., 0] - counts[..., 1]).astype(float)


def class_scores(world: World, counts: np.ndarray) -> np.ndarray:
    n_t, n_o = counts.shape[:2]
    S, Y = len(world.systems), len(world.types)
    t_idx, o_idx = np.meshgrid(np.arange(n_t), np.arange(n_o), indexing="ij")
    t_idx, o_idx = t_idx.ravel(), o_idx.ravel()
    X = np.zeros((n_t * n_o, n_o * (1 + S + Y)))
    rows = np.arange(n_t * n_o)
    X[rows, o_idx] = 1
    X[rows, n_o + o_idx * S + world.target_system[t_idx]] = 1
    X[rows, n_o * (1 + S) + o_idx * Y + world.target_type[t_idx]] = 1
    pos, neg = counts[..., 0].ravel(), counts[..., 1].ravel()
    beta = _newton(X, pos, neg, CLASS_L2)
    return (X @ beta).reshape(n_t, n_o)


def lowrank_scores(counts: np.ndarray, rank: int, seed: int, sweeps: int = 60) -> np.ndarray:
    """The lowest-penalised-loss fit of RESTARTS alternating Newton fits from random starts."""
    n_t, n_o = counts.shape[:2]
    pos, neg = counts[..., 0].astype(float), counts[..., 1].astype(float)
    rng = np.random.default_rng(seed)
    best, best_loss = None, np.inf
    for _ in range(RESTARTS):
        U = rng.standard_normal((n_t, rank))
        V = rng.standard_normal((n_o, rank))
        b = np.zeros(n_o)
        for _ in range(sweeps):
            for t in range(n_t):
                U[t] = _newton(V, pos[t], neg[t], LOWRANK_L2, offset=b, beta=U[t], steps=5)
            Vb = np.hstack([V, b[:, None]])
            Ux = np.hstack([U, np.ones((n_t, 1))])
            for o in range(n_o):
                Vb[o] = _newton(Ux, pos[:, o], neg[:, o], LOWRANK_L2, beta=Vb[o], steps=5)
            V, b = Vb[:, :rank], Vb[:, rank]
        s = U @ V.T + b
        loss = float(
            (pos * np.logaddexp(0, -s) + neg * np.logaddexp(0, s)).sum()
            + 0.5 * LOWRANK_L2 * ((U**2).sum() + (V**2).sum() + (b**2).sum())
        )
        if loss < best_loss:
            best, best_loss = s, loss
    return best


def accuracy(scores: np.ndarray, items: list[Item]) -> dict:
    """Share of items where sign(score) is the original's published effect; ties count 0.5."""
    credit = []
    for it in items:
        s = scores[it.t, it.o]
        credit.append(0.5 if s == 0 else float(np.sign(s) == it.effect))
    n = len(credit)
    return {
        "accuracy": round(float(np.mean(credit)), 6) if n else None,
        "correct": float(np.sum(credit)),
        "ties": int(sum(c == 0.5 for c in credit)),
        "n": n,
    }


def ceilings(world: World, counts: np.ndarray, sets: dict[str, list[Item]], noise: float) -> dict:
    """The `ceilings.json` object: each baseline's accuracy on each benchmark file."""
    scores = {
        "oracle": oracle_scores(world),
        "class_integrator": class_scores(world, counts),
        "lowrank_integrator": lowrank_scores(counts, world.rank, world.seed),
        "memoriser": memoriser_scores(counts),
    }
    out = {
        name: {"definition": DEFINITIONS[name]}
        | {file: accuracy(s, items) for file, items in sets.items()}
        for name, s in scores.items()
    }
    forward = next(iter(sets))
    best = max(
        ("class_integrator", "lowrank_integrator"), key=lambda k: out[k][forward]["accuracy"]
    )
    return {
        "format": "expertlm.synth.ceilings/1",
        "noise": noise,
        "chance": 0.5,
        "scoring": "an item is right when the baseline's sign(s(t, o)) is the original's "
        "published effect; a tie (s = 0) counts 0.5, the expected score of a coin flip",
        "best_integrator": best,
        "ceilings": out,
    }
