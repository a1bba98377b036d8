"""stats.py against closed forms: binomial SEM, McNemar's exact p, logistic regression with a
binary predictor (log odds ratios), equal-count calibration bins, the bootstrap."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from expertlm.eval import stats


def test_accuracy_summary_sem_and_ci():
    correct = np.array([1] * 63 + [0] * 37)
    s = stats.accuracy_summary(correct, seed=1)
    assert s["n"] == 100 and s["correct"] == 63 and s["accuracy"] == 0.63
    assert s["sem"] == pytest.approx(math.sqrt(0.63 * 0.37 / 100))
    lo, hi = s["ci95"]
    assert lo < 0.63 < hi
    # the percentile bootstrap of a proportion is close to the normal interval here
    assert hi - lo == pytest.approx(2 * 1.96 * s["sem"], rel=0.1)
    assert stats.accuracy_summary(np.ones(20))["ci95"] == [1.0, 1.0]
    assert stats.accuracy_summary(correct, seed=1) == s  # seeded: reproducible


def test_mcnemar_exact_closed_forms():
    a = np.array([1] * 10 + [0] * 2 + [1] * 5 + [0] * 3)
    b = np.array([0] * 10 + [1] * 2 + [1] * 5 + [0] * 3)
    m = stats.mcnemar_exact(a, b)
    assert (m["only_a_correct"], m["only_b_correct"], m["discordant"]) == (10, 2, 12)
    assert m["p_value"] == pytest.approx(2 * (1 + 12 + 66) / 2**12)
    assert stats.mcnemar_exact([1, 0, 1], [1, 0, 1])["p_value"] == 1.0
    assert stats.mcnemar_exact([1, 1, 1], [0, 0, 0])["p_value"] == pytest.approx(0.25)
    assert stats.mcnemar_exact([1, 0], [0, 1])["p_value"] == 1.0  # capped at 1


def test_mcnemar_min_difference_is_the_most_even_significant_split():
    def p_of(only_a: int, only_b: int) -> float:
        return stats.mcnemar_exact([1] * only_a + [0] * only_b, [0] * only_a + [1] * only_b)["p_value"]

    # closed forms: 6 discordant items, all one way: p = 2 / 2**6 = 0.031; 5: p = 0.0625
    assert stats.mcnemar_min_difference(6, 200) == 6 / 200
    assert stats.mcnemar_min_difference(5, 200) is None and stats.mcnemar_min_difference(0, 200) is None
    assert stats.mcnemar_min_difference(100, 200) == (61 - 39) / 200  # 2 P(X <= 39) = 0.035, <= 40: 0.057
    for m in (6, 7, 17, 40, 99, 100, 151):
        gap = round(stats.mcnemar_min_difference(m, 200) * 200)
        k = (m - gap) // 2
        assert p_of(k, m - k) < 0.05 <= p_of(k + 1, m - k - 1), m
    assert stats.mcnemar_min_difference(100, 200, alpha=0.01) > stats.mcnemar_min_difference(100, 200)


def test_paired_difference():
    a = np.array([1, 0, 1, 0] * 25)
    d = stats.paired_difference(a, a)
    assert d == {"difference": 0.0, "ci95": [0.0, 0.0]}
    b = np.ones(100)
    d = stats.paired_difference(a, b, seed=3)
    assert d["difference"] == 0.5
    assert d["ci95"][0] < 0.5 < d["ci95"][1] and d["ci95"][0] > 0.3


def test_logistic_regression_with_a_binary_predictor_is_log_odds():
    # x = 0: 30 right, 20 wrong; x = 1: 45 right, 5 wrong
    x = np.array([0] * 50 + [1] * 50, dtype=float)
    y = np.array([1] * 30 + [0] * 20 + [1] * 45 + [0] * 5, dtype=float)
    fit = stats.logistic_fit(x, y)
    assert fit["converged"]
    assert fit["intercept"] == pytest.approx(math.log(30 / 20), abs=1e-9)
    assert fit["coef"] == pytest.approx(math.log(45 / 5) - math.log(30 / 20), abs=1e-9)
    assert fit["coef_se"] == pytest.approx(math.sqrt(1 / 30 + 1 / 20 + 1 / 45 + 1 / 5), rel=1e-9)
    assert fit["intercept_se"] == pytest.approx(math.sqrt(1 / 30 + 1 / 20), rel=1e-9)


def test_penalised_fit_satisfies_its_optimality_conditions():
    rng = np.random.default_rng(0)
    x = rng.normal(size=200)
    y = (rng.random(200) < 1 / (1 + np.exp(-(0.3 + 1.5 * x)))).astype(float)
    f = stats.logistic_fit(x, y, l2=1.0)
    p = 1 / (1 + np.exp(-(f["intercept"] + f["coef"] * x)))
    assert np.sum(y - p) == pytest.approx(0, abs=1e-8)  # the intercept is not penalised
    assert np.sum(x * (y - p)) == pytest.approx(1.0 * f["coef"], abs=1e-8)


def test_calibration_regression_detects_calibration():
    rng = np.random.default_rng(0)
    conf = rng.exponential(size=300)
    correct = (rng.random(300) < 0.5 + 0.45 * (1 - np.exp(-conf))).astype(float)
    r = stats.calibration_regression(conf, correct, seed=0)
    assert r["wald"]["coef"] > 0 and r["wald"]["p_one_sided"] < 0.01
    pub = r["published"]
    assert pub["folds"] == 5 and pub["df"] == 4
    assert pub["p_one_sided"] == pytest.approx(sps.t.sf(pub["t"], 4))
    assert pub["coef_mean"] > 0 and pub["p_one_sided"] < 0.01
    flat = stats.calibration_regression(conf, rng.random(300) < 0.5, seed=0)
    assert flat["wald"]["p_one_sided"] > 0.01
    assert stats.calibration_regression(conf, np.ones(300))["wald"] is None


def test_calibration_bins_are_equal_count_by_rank():
    conf = np.array([5.0, 1.0, 3.0, 3.0, 9.0, 0.5, 7.0, 2.0, 8.0, 4.0, 6.0, 0.1, 10.0])
    correct = (conf > 3.5).astype(float)
    bins = stats.calibration_bins(conf, correct, bins=5)
    # 13 items, edges linspace(0, 13, 6) = 0, 2.6, 5.2, 7.8, 10.4, 13 -> 3, 3, 2, 3, 2 items
    assert [b["n"] for b in bins] == [3, 3, 2, 3, 2]
    # sorted: 0.1 0.5 1 | 2 3 3 | 4 5 | 6 7 8 | 9 10
    assert [b["confidence_max"] for b in bins] == [1.0, 3.0, 5.0, 8.0, 10.0]
    assert [b["accuracy"] for b in bins] == [0.0, 0.0, 1.0, 1.0, 1.0]
    # ties are ranked in file order (ordinal), so the two 3.0s are ranks 4 and 5
    assert list(stats.ordinal_ranks(conf)[[2, 3]]) == [4, 5]
