"""Curve-level diagnostics on hand-made summary tables."""
import pandas as pd

from robustmix.diagnostics import check_curves


def _rows(attack, kind, accs, ns, model="m", tm="Linf"):
    eps = [0.0, 0.01, 0.02, 0.03][: len(accs)]
    return [{"model": model, "threat_model": tm, "attack": attack, "attack_kind": kind, "eps": e,
             "robust_acc": a, "n": n} for e, a, n in zip(eps, accs, ns)]


def flags(rows):
    return {flag for _, flag, _ in check_curves(pd.DataFrame(rows))}


def test_rising_curve_on_the_same_examples_is_flagged():
    assert "non-monotonic" in flags(_rows("pgd", "pgd", [0.8, 0.5, 0.6], [100, 100, 100]))


def test_rise_caused_by_a_narrower_example_set_is_not_flagged():
    # worst-case at the last eps covers only the 32 examples AutoAttack ran on
    assert "non-monotonic" not in flags(_rows("worst-case", "worst-case", [0.8, 0.5, 0.6], [100, 100, 32]))


def test_fgsm_beating_pgd_and_square_beating_white_box_are_flagged():
    rows = (_rows("fgsm", "fgsm", [0.8, 0.3, 0.1], [100] * 3) + _rows("pgd", "pgd", [0.8, 0.5, 0.4], [100] * 3)
            + _rows("square", "square", [0.8, 0.2, 0.05], [100] * 3))
    assert {"fgsm-beats-pgd", "black-box-beats-white-box"} <= flags(rows)


def test_healthy_curves_raise_nothing():
    rows = (_rows("fgsm", "fgsm", [0.8, 0.6, 0.4], [100] * 3) + _rows("pgd", "pgd", [0.8, 0.5, 0.2], [100] * 3)
            + _rows("square", "square", [0.8, 0.55, 0.3], [100] * 3))
    assert flags(rows) == set()
