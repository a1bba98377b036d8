"""Statistics of two-alternative forced-choice results, for models and for humans.

Accuracy counts ties as wrong (the published rule). Uncertainty: the binomial standard error
sqrt(p(1-p)/n) and a percentile bootstrap over items. Calibration follows the published
analysis: items ranked by confidence (ordinal ranks, ties in file order) into equal-count bins,
accuracy per bin, and a logistic regression of correctness on confidence. Paired comparisons of
two models on the same items: McNemar's exact test and a paired bootstrap of the difference.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats as sps

N_BOOT = 10_000


def accuracy_summary(correct: np.ndarray, seed: int = 0, n_boot: int = N_BOOT) -> dict:
    """Accuracy, count, binomial SEM and a 95% percentile bootstrap CI of 0/1 outcomes."""
    correct = np.asarray(correct, dtype=float)
    n = int(correct.size)
    if n == 0:
        return {"n": 0, "correct": 0, "accuracy": None, "sem": None, "ci95": [None, None]}
    p = float(correct.mean())
    return {
        "n": n,
        "correct": int(correct.sum()),
        "accuracy": p,
        "sem": math.sqrt(p * (1 - p) / n),
        "ci95": bootstrap_ci(correct, seed=seed, n_boot=n_boot),
    }


def per_group(groups, correct) -> dict[str, dict]:
    """Accuracy, count and binomial SEM of 0/1 outcomes per group (e.g. journal section)."""
    by: dict[str, list[float]] = {}
    for g, c in zip(groups, correct, strict=True):
        by.setdefault(g, []).append(float(c))
    out = {}
    for g, v in sorted(by.items()):
        p = float(np.mean(v))
        out[g] = {"n": len(v), "accuracy": p, "sem": math.sqrt(p * (1 - p) / len(v))}
    return out


def bootstrap_ci(
    x: np.ndarray, seed: int = 0, n_boot: int = N_BOOT, level: float = 0.95
) -> list[float]:
    """Percentile bootstrap CI of the mean of `x` (items resampled with replacement)."""
    x = np.asarray(x, dtype=float)
    rng = np.random.default_rng(seed)
    means = _resampled_means(x[None, :], rng, n_boot)[0]
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return [float(lo), float(hi)]


def _resampled_means(rows: np.ndarray, rng: np.random.Generator, n_boot: int) -> np.ndarray:
    """Means of each row of `rows` over the same `n_boot` resamples of the columns (items),
    in chunks so memory stays small."""
    n = rows.shape[1]
    out = np.empty((rows.shape[0], n_boot))
    chunk = max(1, 2_000_000 // max(1, n))
    for s in range(0, n_boot, chunk):
        idx = rng.integers(0, n, size=(min(chunk, n_boot - s), n))
        out[:, s : s + idx.shape[0]] = rows[:, idx].mean(axis=2)
    return out


def ordinal_ranks(x: np.ndarray) -> np.ndarray:
    """0-based ranks, ties broken by position (scipy's rankdata(method='ordinal') - 1)."""
    return sps.rankdata(np.asarray(x), method="ordinal") - 1


def calibration_bins(confidence: np.ndarray, correct: np.ndarray, bins: int = 10) -> list[dict]:
    """Items ranked by confidence into `bins` equal-count bins (the published binning: rank r
    falls in bin k when lo_k <= r < hi_k with boundaries linspace(0, n, bins + 1)); accuracy and
    the confidence range per bin, low confidence first."""
    confidence = np.asarray(confidence, dtype=float)
    correct = np.asarray(correct, dtype=float)
    n = confidence.size
    ranks = ordinal_ranks(confidence)
    edges = np.linspace(0, n, bins + 1)
    out = []
    for k in range(bins):
        sel = (ranks >= edges[k]) & (ranks < edges[k + 1])
        m = int(sel.sum())
        out.append({
            "bin": k + 1,
            "n": m,
            "accuracy": float(correct[sel].mean()) if m else None,
            "confidence_min": float(confidence[sel].min()) if m else None,
            "confidence_max": float(confidence[sel].max()) if m else None,
            "confidence_mean": float(confidence[sel].mean()) if m else None,
        })  # fmt: skip
    return out


def logistic_fit(x: np.ndarray, y: np.ndarray, l2: float = 0.0, iters: int = 100) -> dict:
    """Logistic regression of y (0/1) on one predictor x by Newton's method: intercept, coef,
    and (unpenalised fits) their standard errors from the inverse Fisher information.
    `l2` > 0 adds 0.5 * l2 * coef^2 to the loss (the intercept is not penalised), which with
    l2 = 1 is scikit-learn's default `LogisticRegression()` (C = 1)."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    X = np.column_stack([np.ones_like(x), x])
    beta = np.zeros(2)
    pen = np.diag([0.0, l2])
    converged = False
    for _ in range(iters):
        eta = np.clip(X @ beta, -500, 500)
        p = 1 / (1 + np.exp(-eta))
        grad = X.T @ (y - p) - pen @ beta
        hess = X.T @ (X * (p * (1 - p))[:, None]) + pen
        try:
            step = np.linalg.solve(hess, grad)
        except np.linalg.LinAlgError:
            break
        beta = beta + step
        if np.max(np.abs(step)) < 1e-10 * (1 + np.max(np.abs(beta))):
            converged = True
            break
    out = {"intercept": float(beta[0]), "coef": float(beta[1]), "converged": converged}
    if l2 == 0:
        p = 1 / (1 + np.exp(-np.clip(X @ beta, -500, 500)))
        info = X.T @ (X * (p * (1 - p))[:, None])
        try:
            cov = np.linalg.inv(info)
            out["intercept_se"] = float(math.sqrt(cov[0, 0]))
            out["coef_se"] = float(math.sqrt(cov[1, 1]))
        except (np.linalg.LinAlgError, ValueError):
            out["intercept_se"] = out["coef_se"] = None
    return out


def calibration_regression(confidence: np.ndarray, correct: np.ndarray, seed: int = 0,
                           folds: int = 5, train_frac: float = 0.8) -> dict:  # fmt: skip
    """Does confidence predict correctness? Two fits of correct ~ confidence:

    - `wald`: maximum likelihood on all items; coefficient, SE, z, one-sided p (H1: coef > 0).
    - `published`: the published procedure: `folds` random draws of `train_frac` of the items,
      each fitted with scikit-learn's default L2-penalised logistic regression (C = 1); a
      one-sample t-test of the fold coefficients against 0, one-sided (H1: coef > 0).
    """
    x = np.asarray(confidence, dtype=float)
    y = np.asarray(correct, dtype=float)
    out: dict = {"n": int(x.size)}
    if x.size < 3 or np.all(y == y[0]) or np.all(x == x[0]):
        out["wald"] = out["published"] = None
        out["note"] = "not estimable (too few items, or correctness or confidence constant)"
        return out
    fit = logistic_fit(x, y)
    z = fit["coef"] / fit["coef_se"] if fit.get("coef_se") else None
    out["wald"] = {**fit, "z": z, "p_one_sided": float(sps.norm.sf(z)) if z is not None else None}
    rng = np.random.default_rng(seed)
    n_train = int(train_frac * x.size)
    coefs, intercepts = [], []
    for _ in range(folds):
        idx = rng.choice(x.size, n_train, replace=False)
        f = logistic_fit(x[idx], y[idx], l2=1.0)
        coefs.append(f["coef"])
        intercepts.append(f["intercept"])
    coefs_a = np.array(coefs)
    sem = float(sps.sem(coefs_a)) if folds > 1 else float("nan")
    t = float(coefs_a.mean() / sem) if sem > 0 else None
    out["published"] = {
        "folds": folds,
        "train_frac": train_frac,
        "coef_mean": float(coefs_a.mean()),
        "coef_sem": sem,
        "intercept_mean": float(np.mean(intercepts)),
        "t": t,
        "df": folds - 1,
        "p_one_sided": float(sps.t.sf(t, folds - 1)) if t is not None else None,
    }
    return out


def mcnemar_exact(a: np.ndarray, b: np.ndarray) -> dict:
    """McNemar's exact test on paired 0/1 outcomes: among discordant items (one right, the other
    wrong), is each direction equally likely? Two-sided binomial p-value."""
    a = np.asarray(a, dtype=bool)
    b = np.asarray(b, dtype=bool)
    only_a = int((a & ~b).sum())
    only_b = int((~a & b).sum())
    m = only_a + only_b
    p = float(_mcnemar_p(min(only_a, only_b), m))
    return {"only_a_correct": only_a, "only_b_correct": only_b, "discordant": m, "p_value": p}


def _mcnemar_p(smaller, discordant: int):
    """McNemar's exact two-sided p when the smaller of the two discordant counts is `smaller`
    (a number or an array of them); 1 when nothing is discordant."""
    return np.minimum(1.0, 2 * sps.binom.cdf(smaller, discordant, 0.5))


def mcnemar_min_difference(discordant: int, n: int, alpha: float = 0.05) -> float | None:
    """The smallest accuracy difference McNemar's exact test calls significant (p < alpha) on `n`
    paired items of which `discordant` are right for one model only: the gap between the two
    discordant counts, over n, at the most even split that still gives p < alpha. None when no
    split does (fewer than 6 discordant items at alpha 0.05)."""
    k = np.arange(discordant // 2 + 1)  # the smaller discordant count
    ok = k[_mcnemar_p(k, discordant) < alpha]
    return float((discordant - 2 * ok.max()) / n) if len(ok) else None


def paired_difference(a: np.ndarray, b: np.ndarray, seed: int = 0, n_boot: int = N_BOOT) -> dict:
    """Accuracy of b minus accuracy of a on the same items, with a paired percentile bootstrap
    CI (items resampled, both models' outcomes kept together)."""
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    rng = np.random.default_rng(seed)
    means = _resampled_means(np.stack([b - a]), rng, n_boot)[0]
    lo, hi = np.quantile(means, [0.025, 0.975])
    return {"difference": float(b.mean() - a.mean()), "ci95": [float(lo), float(hi)]}
