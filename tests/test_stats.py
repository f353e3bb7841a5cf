"""robustmix.stats against published values, hand computations and simulation."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from robustmix import stats as S

# Cavo et al. (2012) complete response before/after consolidation therapy, the worked
# paired 2x2 example of Fagerland, Lydersen & Laake (2017), Statistical Analysis of
# Contingency Tables, ch. 8: a=59, b=6, c=16, d=80. Published: difference -0.0621,
# Newcombe square-and-add (hybrid score) 95% CI -0.1186 to -0.0046, exact conditional
# McNemar P = 0.052479 (the same values are pinned in the contingencytables R package's tests).
CAVO = (59, 6, 16, 80)


def test_newcombe_interval_matches_published_example():
    diff, lo, hi = S.paired_difference(*CAVO)
    assert diff == pytest.approx(-0.0621, abs=5e-5)
    assert lo == pytest.approx(-0.1186, abs=5e-5)
    assert hi == pytest.approx(-0.0046, abs=5e-5)


def test_mcnemar_exact_matches_published_and_binomial():
    assert S.mcnemar_exact(6, 16) == pytest.approx(0.052479, abs=5e-7)
    # By hand: 2 * P(X <= 1), X ~ Bin(10, 1/2) = 2 * 11 / 1024.
    assert S.mcnemar_exact(1, 9) == pytest.approx(22 / 1024)
    assert S.mcnemar_exact(0, 0) == 1.0
    assert S.mcnemar_exact(5, 5) == 1.0


def test_paired_counts_and_variance():
    a = np.array([1, 1, 0, 0, 1], bool)
    b = np.array([1, 0, 1, 0, 0], bool)
    assert S.paired_counts(a, b) == (1, 2, 1, 1)
    # Multinomial variance of (b - c)/n by hand: ((3/5) - (1/5)^2) / 5.
    assert S.paired_variance(2, 1, 5) == pytest.approx((0.6 - 0.04) / 5)


def test_seed_summary_on_hand_table():
    # Three seeds, per-seed paired differences 0.02, 0.04, 0.06: mean 0.04, sd 0.02,
    # t interval 0.04 +- t(0.975, 2) * 0.02 / sqrt(3) = 0.04 +- 4.3027 * 0.011547.
    out = S.seed_summary([0.02, 0.04, 0.06], [1e-5, 1e-5, 1e-5])
    assert out["mean"] == pytest.approx(0.04) and out["sd"] == pytest.approx(0.02)
    assert out["ci_low"] == pytest.approx(0.04 - 4.302653 * 0.02 / math.sqrt(3), abs=1e-6)
    assert out["ci_high"] == pytest.approx(0.04 + 4.302653 * 0.02 / math.sqrt(3), abs=1e-6)
    # t = 0.04 / 0.011547 = 3.4641 on 2 df: two-sided p = 0.0742.
    assert out["p"] == pytest.approx(0.0742, abs=1e-4)
    # seed variance 4e-4 >> sampling 1e-5: seeds dominate.
    assert out["seed_var"] == pytest.approx(4e-4) and out["dominant"] == "seed-to-seed"
    # Same spread, but sampling noise alone explains it: sampling dominates.
    assert S.seed_summary([0.02, 0.04, 0.06], [5e-4, 5e-4, 5e-4])["dominant"] == "sampling"
    with pytest.raises(ValueError, match="at least 2 seeds"):
        S.seed_summary([0.1], [1e-4])


def test_holm_textbook_example():
    # By hand: sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04;
    # running maximum 0.02, 0.03, 0.06, 0.06 (what statsmodels' multipletests(method="holm") gives).
    adj, rej = S.holm([0.01, 0.04, 0.03, 0.005])
    assert adj.tolist() == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert rej.tolist() == [True, False, False, True]
    adj, rej = S.holm([0.5, math.nan, 0.01])  # nan: no test, left out of the family (m = 2)
    assert adj[0] == pytest.approx(0.5) and math.isnan(adj[1]) and adj[2] == pytest.approx(0.02)
    assert rej.tolist() == [False, False, True]


def test_curve_auc_and_example_aucs():
    eps, acc = [0.0, 0.1, 0.3], [1.0, 0.5, 0.0]
    # Trapezoid by hand: (0.75 * 0.1 + 0.25 * 0.2) / 0.3.
    assert S.curve_auc(eps, acc) == pytest.approx((0.075 + 0.05) / 0.3)
    robust = np.array([[1, 1, 0], [1, 0, 0]], bool)
    assert S.example_aucs(eps, robust).mean() == pytest.approx(S.curve_auc(eps, robust.mean(0)))


def test_auc_difference_bootstrap_is_paired_and_seeded():
    rng = np.random.default_rng(1)
    base = rng.random((400, 4)) < 0.6
    better = base.copy()
    better[:40, :] = True  # A robust on 40 more examples at every eps, never worse
    d1 = S.auc_difference([0, 1, 2, 3], better, base, seed=3)
    assert d1 == S.auc_difference([0, 1, 2, 3], better, base, seed=3)
    assert d1[1] > 0 and d1[0] > 0          # paired: the interval excludes 0
    d0 = S.auc_difference([0, 1, 2, 3], base, base)
    assert d0 == (0.0, 0.0, 0.0)


def test_mdd_paired_monotone_and_matches_simulated_power():
    mdds = [S.mdd_paired(n, 0.1) for n in (250, 500, 1000, 2000, 8000)]
    assert all(a > b for a, b in zip(mdds, mdds[1:]))
    assert S.mdd_paired(2000, 0.0) == pytest.approx(6 / 2000)  # exact-test floor: 6 one-way pairs
    # Simulate the exact McNemar test at the MDD: power should be about 80%.
    n, psi = 1000, 0.1
    delta = S.mdd_paired(n, psi)
    rng = np.random.default_rng(0)
    p_b, p_c = (psi + delta) / 2, (psi - delta) / 2
    counts = rng.multinomial(n, [p_b, p_c, 1 - psi], size=4000)
    b, c = counts[:, 0], counts[:, 1]
    p = np.minimum(1.0, 2 * sps.binom.cdf(np.minimum(b, c), b + c, 0.5))
    assert np.mean(p < S.ALPHA) == pytest.approx(S.POWER, abs=0.04)


def test_mdd_seeds_and_simulated_power():
    assert math.isnan(S.mdd_seeds(1, 0.01))
    assert S.mdd_seeds(5, 0.01) < S.mdd_seeds(3, 0.01)
    k, sd = 5, 0.01
    delta = S.mdd_seeds(k, sd)
    rng = np.random.default_rng(0)
    d = rng.normal(delta, sd, size=(4000, k))
    p = sps.ttest_1samp(d, 0.0, axis=1).pvalue
    # The t approximation is slightly conservative for the noncentral t: within 4 points.
    assert np.mean(p < S.ALPHA) == pytest.approx(S.POWER, abs=0.04)


def test_majority_vote():
    assert S.majority([0, 5, 6, 10], 10).tolist() == [False, False, True, True]
