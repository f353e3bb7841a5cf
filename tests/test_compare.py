"""Per-example tables and paired comparisons in the results layer."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from robustmix.compare import compare, compare_auc, example_table
from robustmix.stats import mcnemar_exact, paired_difference


def _rows(model, attack, eps, correct, start=0):
    correct = np.asarray(correct, bool)
    return pd.DataFrame(dict(model=model, attack=attack, threat_model="Linf", eps=eps,
                             index=np.arange(start, start + len(correct)), correct=correct))


def test_worst_case_per_example_over_the_attacks_that_ran_on_it():
    ex = pd.concat([
        _rows("a", "pgd", 0.1, [1, 1, 1, 1, 1, 0]),
        _rows("a", "aa", 0.1, [0, 1, 1, 1]),            # AutoAttack on the first 4 examples only
        _rows("b", "pgd", 0.1, [1, 0, 1, 0, 0, 0]),
        _rows("b", "aa", 0.1, [1, 0, 0, 0, 1], ),        # ... and on 5 for b: example 4 met aa only under b
    ])
    t = example_table(ex, "Linf", 0.1)
    assert list(t.index) == [0, 1, 2, 3, 5] and t.attrs["dropped"] == 1
    assert t["a"].tolist() == [False, True, True, True, False]   # example 0: broken by aa
    assert t["b"].tolist() == [True, False, False, False, False]
    assert t.attrs["attacks"] == ["aa", "pgd"]
    one = example_table(ex, "Linf", 0.1, attack="pgd")
    assert len(one) == 6 and one["b"].tolist() == [True, False, True, False, False, False]


def test_compare_is_the_paired_test_on_the_shared_examples():
    rng = np.random.default_rng(0)
    a, b = rng.random(300) < 0.6, rng.random(300) < 0.5
    ex = pd.concat([_rows("a", "pgd", 0.1, a), _rows("b", "pgd", 0.1, b),
                    _rows("b", "pgd", 0.2, b)])  # b alone at 0.2: nothing shared there
    c = compare(ex, "a", "b", "Linf", 0.1)
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    assert (c.n, c.only_a, c.only_b) == (300, only_a, only_b)
    assert c.p == mcnemar_exact(only_a, only_b)
    assert (c.diff, c.ci_low, c.ci_high) == paired_difference(int((a & b).sum()), only_a, only_b,
                                                              int((~a & ~b).sum()))
    assert c.diff == pytest.approx(a.mean() - b.mean()) and 0 < c.mdd < 1
    assert compare(ex, "a", "b", "Linf", 0.2).n == 0


def test_compare_auc_over_the_shared_grid():
    ex = pd.concat([_rows(m, "pgd", e, np.arange(100) < k) for m, ks in (("a", (100, 60, 20)), ("b", (100, 50, 10)))
                    for e, k in zip((0.0, 0.1, 0.2), ks)])
    out = compare_auc(ex, "a", "b", "Linf")
    # AUC a: (1 + 0.6)/2 * 0.5 + (0.6 + 0.2)/2 * 0.5 = 0.6; b: (1.5/2 + 0.6/2) / 2 = 0.525.
    assert out["auc_a"] == pytest.approx(0.6) and out["auc_b"] == pytest.approx(0.525)
    assert out["diff"] == pytest.approx(0.075) and 0 < out["ci_low"] <= 0.075 <= out["ci_high"]
