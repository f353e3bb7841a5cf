"""Diagnostics: curve-level checks on hand-made summary tables, model probes on tiny models."""
import pandas as pd
import torch
from torch import nn

from robustmix.diagnostics import check_curves, probe_model


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


class _Oracle(nn.Module):
    """Correct one-hot logits whatever the input: no attack can change its answer, so a
    full-range attack (Linf eps = 1, where any image is reachable) must leave it above chance."""

    def __init__(self, y):
        super().__init__()
        self.y = y
        self.w = nn.Parameter(torch.zeros(()))  # a parameter, so the probe can freeze it

    def forward(self, x):
        return 10 * nn.functional.one_hot(self.y[: x.shape[0]], 10).float() + self.w * x.flatten(1)[:, :1]


def _probe_flags(model, x, y):
    return {flag for flag, _ in probe_model(model, x, y, num_classes=10, was_training=False, seed=0)}


def test_full_range_probe_flags_an_unbreakable_model_and_not_a_plain_one():
    gen = torch.Generator().manual_seed(0)
    x, y = torch.rand(16, 1, 8, 8, generator=gen), torch.randint(0, 10, (16,), generator=gen)
    assert "robust-at-full-range" in _probe_flags(_Oracle(y), x, y)
    torch.manual_seed(0)
    plain = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    assert "robust-at-full-range" not in _probe_flags(plain, x, y)
