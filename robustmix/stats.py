"""Statistics for comparing models evaluated on the same examples.

Pure functions over counts and arrays (numpy/scipy). Every model of one
evaluation is attacked on the same example indices, so two models' robust
indicators form a paired 2x2 table::

                   B robust   B broken
        A robust      a          b
        A broken      c          d          n = a + b + c + d

and the difference in robust accuracy is acc_A - acc_B = (b - c) / n: only
the discordant pairs (b, c) carry information about it. Training seeds are
replicates on top of that: one paired difference per seed.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import optimize, stats

ALPHA = 0.05   # the stated significance level of every verdict
POWER = 0.80   # the power at which minimum detectable differences are quoted
Z95 = 1.959963984540054


def wilson_interval(k, n, z: float = Z95) -> tuple[np.ndarray, np.ndarray]:
    """95% Wilson score interval for k successes in n trials (sound at 0 and n).

    Wilson (1927), JASA 22:209-212."""
    k, n = np.asarray(k, float), np.asarray(n, float)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k / n
        denom = 1 + z * z / n
        centre = (p + z * z / (2 * n)) / denom
        half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return np.clip(centre - half, 0, 1), np.clip(centre + half, 0, 1)


def paired_counts(robust_a, robust_b) -> tuple[int, int, int, int]:
    """(a, b, c, d) of the paired 2x2 table of two boolean vectors over the same examples."""
    x, y = np.asarray(robust_a, bool), np.asarray(robust_b, bool)
    if x.shape != y.shape:
        raise ValueError(f"paired vectors differ in shape: {x.shape} vs {y.shape}")
    return int((x & y).sum()), int((x & ~y).sum()), int((~x & y).sum()), int((~x & ~y).sum())


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar test: a binomial test of b successes in b + c trials at 1/2.

    McNemar (1947), Psychometrika 12:153-157; the exact (conditional) form as in
    Fagerland, Lydersen & Laake (2013), BMC Med Res Methodol 13:91. No discordant
    pairs -> p = 1."""
    if b + c == 0:
        return 1.0
    return float(stats.binomtest(int(b), int(b + c), 0.5, alternative="two-sided").pvalue)


def paired_difference(a: int, b: int, c: int, d: int, alpha: float = ALPHA) -> tuple[float, float, float]:
    """acc_A - acc_B = (b - c)/n with Newcombe's hybrid score interval for paired data.

    Newcombe (1998), Stat Med 17:2635-2650, method 10: the Wilson intervals
    (l1, u1), (l2, u2) of the two marginal proportions combined by "square and
    add", with the correlation phi of the paired table (its numerator
    ad - bc reduced by n/2 towards 0 when positive, set to 0 if a margin is 0).
    Returns (difference, lower, upper)."""
    n = a + b + c + d
    if n <= 0:
        return math.nan, math.nan, math.nan
    z = stats.norm.ppf(1 - alpha / 2)
    p1, p2 = (a + b) / n, (a + c) / n
    (l1, l2), (u1, u2) = wilson_interval([a + b, a + c], [n, n], z)
    margins = (a + b) * (c + d) * (a + c) * (b + d)
    phi = 0.0
    if margins > 0:
        num = a * d - b * c
        num = num - n / 2 if num > n / 2 else (0.0 if num >= 0 else num)
        phi = num / math.sqrt(margins)
    diff = p1 - p2
    lo = diff - math.sqrt(max((p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2, 0.0))
    hi = diff + math.sqrt(max((p2 - l2) ** 2 - 2 * phi * (p2 - l2) * (u1 - p1) + (u1 - p1) ** 2, 0.0))
    return diff, max(lo, -1.0), min(hi, 1.0)


def paired_variance(b: int, c: int, n: int) -> float:
    """Sampling variance of the paired difference (b - c)/n: ((b + c)/n - ((b - c)/n)^2) / n.

    The multinomial variance of the paired difference (e.g. Agresti (2013),
    Categorical Data Analysis, 3rd ed., sec. 11.1.1)."""
    if n <= 0:
        return math.nan
    return ((b + c) / n - ((b - c) / n) ** 2) / n


def seed_summary(diffs, variances, alpha: float = ALPHA) -> dict:
    """Seeds as replicates: mean of per-seed paired differences with a t interval over seeds.

    ``diffs``: one paired difference per seed pair (k >= 2); ``variances``:
    each one's sampling variance (``paired_variance``). Returns mean, ci_low,
    ci_high, p (one-sample t test of mean 0, k - 1 df; Student 1908), k, sd,
    and the variance decomposition: ``seed_var`` is the variance of the
    per-seed differences (which already contains sampling noise),
    ``sampling_var`` the mean per-seed sampling variance; ``dominant`` is
    "seed-to-seed" when the between-seed component, max(seed_var -
    sampling_var, 0), exceeds sampling_var, else "sampling"."""
    d = np.asarray(diffs, float)
    v = np.asarray(variances, float)
    k = len(d)
    if k < 2:
        raise ValueError(f"seed_summary needs at least 2 seeds, got {k}")
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    se = sd / math.sqrt(k)
    t = stats.t.ppf(1 - alpha / 2, k - 1)
    if se > 0:
        p = float(2 * stats.t.sf(abs(mean) / se, k - 1))
    else:  # identical differences on every seed: no spread to test against
        p = 1.0 if mean == 0 else 0.0
    seed_var, sampling_var = sd ** 2, float(v.mean())
    between = max(seed_var - sampling_var, 0.0)
    return {"mean": mean, "ci_low": mean - t * se, "ci_high": mean + t * se, "p": p, "k": k, "sd": sd,
            "seed_var": seed_var, "sampling_var": sampling_var, "between_seed_var": between,
            "dominant": "seed-to-seed" if between > sampling_var else "sampling"}


def curve_auc(eps, acc) -> float:
    """Area under a robustness curve (trapezoid over the eps grid) divided by the eps range,
    so it lies in [0, 1]; a single point is its own value. ``eps`` must be sorted."""
    x, y = np.asarray(eps, float), np.asarray(acc, float)
    if len(x) == 0:
        return math.nan
    if len(x) == 1:
        return float(y[0])
    return float(np.sum((y[1:] + y[:-1]) * np.diff(x)) / 2 / (x[-1] - x[0]))


def example_aucs(eps, robust) -> np.ndarray:
    """Each example's contribution to ``curve_auc``: the AUC of its own robust indicator over
    ``eps`` (``robust``: n x len(eps)). AUC is linear in the curve, so the model's AUC is
    the mean of these."""
    x, r = np.asarray(eps, float), np.asarray(robust, float)
    if len(x) == 1:
        return r[:, 0].copy()
    return np.sum((r[:, 1:] + r[:, :-1]) * np.diff(x), axis=1) / 2 / (x[-1] - x[0])


BOOTSTRAP_B = 2000   # resamples for the paired AUC interval: percentile ends stable to ~0.1 point


def auc_difference(eps, robust_a, robust_b, b: int = BOOTSTRAP_B, seed: int = 0,
                   alpha: float = ALPHA) -> tuple[float, float, float]:
    """AUC_A - AUC_B with a paired percentile bootstrap interval over examples.

    Efron & Tibshirani (1993), An Introduction to the Bootstrap, ch. 13: the
    examples are resampled with replacement (``b`` resamples, numpy generator
    seeded by ``seed``) and the same resample is used for both models, which
    keeps the pairing. Returns (difference, lower, upper)."""
    v = example_aucs(eps, robust_a) - example_aucs(eps, robust_b)
    n = len(v)
    if n == 0:
        return math.nan, math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = np.empty(b)
    chunk = max(1, 2_000_000 // n)  # bound memory: chunk x n indices at a time
    for start in range(0, b, chunk):
        stop = min(b, start + chunk)
        means[start:stop] = v[rng.integers(0, n, size=(stop - start, n))].mean(axis=1)
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(v.mean()), float(lo), float(hi)


def exact_min_discordant(alpha: float = ALPHA) -> int:
    """Fewest discordant pairs, all one way, that the two-sided exact McNemar test can call
    significant: the smallest m with 2 * 0.5**m <= alpha (6 at alpha = 0.05)."""
    return int(math.ceil(math.log2(2 / alpha)))


def mdd_paired(n: int, discordant_rate: float, alpha: float = ALPHA, power: float = POWER) -> float:
    """Minimum detectable difference in accuracy for the paired (McNemar) design.

    Connor (1987), Biometrics 43:207-211, normal approximation: a study of n
    pairs with discordant proportion psi detects a difference delta with the
    given power when  sqrt(n) delta = z_{1-alpha/2} sqrt(psi) + z_power
    sqrt(psi - delta^2). Solved for delta at the observed psi. delta can
    never exceed psi (all discordances one way), and the exact test needs
    ``exact_min_discordant`` one-way pairs, so the result is at least
    max(z^2/n, m/n) -- also when no discordant pair was observed."""
    if n <= 0:
        return math.nan
    za, zb = stats.norm.ppf(1 - alpha / 2), stats.norm.ppf(power)
    floor = max(za * za / n, exact_min_discordant(alpha) / n)
    psi = float(min(max(discordant_rate, 0.0), 1.0))

    def gap(delta):
        return math.sqrt(n) * delta - za * math.sqrt(psi) - zb * math.sqrt(max(psi - delta * delta, 0.0))

    if psi <= 0 or gap(psi) < 0:
        return float(min(floor, 1.0))
    return float(max(optimize.brentq(gap, 0.0, psi), floor))


def mdd_seeds(k: int, seed_sd: float, alpha: float = ALPHA, power: float = POWER) -> float:
    """Minimum detectable mean difference over k seeds (one-sample t design).

    (t_{1-alpha/2, k-1} + t_{power, k-1}) * sd / sqrt(k), the usual
    t-approximation of the power of a one-sample t test (e.g. Julious (2004),
    Stat Med 23:1921-1986). k < 2 -> nan."""
    if k < 2 or not np.isfinite(seed_sd):
        return math.nan
    return float((stats.t.ppf(1 - alpha / 2, k - 1) + stats.t.ppf(power, k - 1)) * seed_sd / math.sqrt(k))


def holm(pvalues, alpha: float = ALPHA) -> tuple[np.ndarray, np.ndarray]:
    """Holm's step-down correction: (adjusted p-values, reject at ``alpha``).

    Holm (1979), Scand J Statist 6:65-70: sort the m p-values, multiply the
    i-th smallest by (m - i + 1), take the running maximum, cap at 1; a
    hypothesis is rejected when its adjusted p is below alpha. nan p-values
    (no test) are left out of the family and stay nan."""
    p = np.asarray(pvalues, float)
    adj = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    m = len(ok)
    if m:
        order = ok[np.argsort(p[ok], kind="stable")]
        scaled = p[order] * (m - np.arange(m))
        adj[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
    return adj, np.where(np.isnan(adj), False, adj < alpha)


def majority(votes, k: int) -> np.ndarray:
    """Majority decision over k forward passes: robust when more than half of the k passes
    classify the example correctly (a tie counts as not robust: the claim of robustness
    needs a majority). ``votes``: count of correct passes per example."""
    return np.asarray(votes) * 2 > k


def median_interval(values, alpha: float = ALPHA) -> tuple[float, float, float]:
    """Sample median with a distribution-free (order-statistic) 1 - alpha interval for the median.

    The number of observations below the population median is Binomial(n, 1/2), so for
    sorted x_(1) <= ... <= x_(n) the interval [x_(l), x_(n-l+1)] covers the median with
    probability 1 - 2 P(B <= l - 1), B ~ Bin(n, 1/2); l is the largest index that keeps
    this >= 1 - alpha (e.g. Conover (1999), Practical Nonparametric Statistics, 3rd ed.,
    sec. 3.2; n = 10 gives [x_(2), x_(9)] at 97.9%). No distributional assumption, and
    infinite values (examples no attack broke) are ordered like any other. Below n = 6 no
    interval reaches 95%: the bounds are nan (as scipy.stats.quantile_test's). Returns
    (median, lower, upper); nan values are dropped first."""
    x = np.sort(np.asarray(values, float))
    x = x[~np.isnan(x)]
    n = len(x)
    if n == 0:
        return math.nan, math.nan, math.nan
    mid = (x[(n - 1) // 2] + x[n // 2]) / 2 if np.isfinite(x[n // 2]) else x[n // 2]
    # Largest l >= 1 with P(B <= l - 1) <= alpha / 2 (cdf is increasing in l).
    l = int(stats.binom.ppf(alpha / 2, n, 0.5))
    if stats.binom.cdf(l, n, 0.5) <= alpha / 2:  # ppf returns the first k with cdf >= alpha/2
        l += 1
    if l < 1:
        return float(mid), math.nan, math.nan
    return float(mid), float(x[l - 1]), float(x[n - l])


__all__ = ["ALPHA", "POWER", "wilson_interval", "paired_counts", "mcnemar_exact", "paired_difference",
           "paired_variance", "seed_summary", "curve_auc", "example_aucs", "auc_difference", "mdd_paired",
           "mdd_seeds", "holm", "exact_min_discordant", "majority", "BOOTSTRAP_B", "median_interval"]
