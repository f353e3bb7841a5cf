"""Flags that a robustness number may be unreliable.

Two kinds: probes run on the model itself (randomness, zero input gradients,
probability outputs, train mode, a full-range attack that must succeed), and
checks over the finished curves (FGSM beating PGD, curves rising with eps,
black-box attacks beating white-box ones). Every flag is stored with the
results and explained in reports (schema.DIAGNOSTIC_FLAGS).
"""
from __future__ import annotations

import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F

from .attacks import make_attack
from .schema import WORST_CASE

ZERO_GRAD_FRACTION = 0.10    # more than this share of examples with an all-zero input gradient
PROB_TOL = 1e-3
BLACK_BOX = ("square", "transfer")  # attack kinds that use no gradient of the model
RANDOMIZED = "randomized"
WITHOUT_EOT = "randomized-without-eot"


@torch.no_grad()
def forward_differs(model: nn.Module, x: torch.Tensor) -> bool:
    """Do two forward passes on ``x`` differ (a randomised model)? The probe's test, for a process
    that needs the answer before another one has written the probe."""
    return not torch.equal(model(x), model(x))


@torch.no_grad()
def majority_correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor, votes: int,
                     batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(robust, correct passes) of a randomised model: each example is classified ``votes``
    times; it counts as correct when a strict majority of the passes are (stats.majority:
    a tie is not robust). ``batch`` examples at a time."""
    counts = torch.zeros(len(x), dtype=torch.int64, device=x.device)
    for s in range(0, len(x), batch):
        xb, yb = x[s:s + batch], y[s:s + batch]
        for _ in range(votes):
            counts[s:s + batch] += (model(xb).argmax(1) == yb).long()
    return counts * 2 > votes, counts


def is_randomized(probe: dict | None, model: nn.Module, batch) -> bool:
    """The probe's "randomized" flag; where another process has not written the probe yet, its
    test (``forward_differs``, in eval mode) on ``batch()``."""
    if probe is not None:
        return any(flag == RANDOMIZED for flag, _ in probe["flags"])
    previous = model.training
    model.eval()
    try:
        return forward_differs(model, batch())
    finally:
        model.train(previous)


def vote_results(model: nn.Module, res: dict, x, y, grid, votes: int, batch: int, nested: bool):
    """Re-decide a randomised model's per-eps results (``attacks.sweep`` output, changed in place)
    by majority over ``votes`` forward passes at each eps's final inputs; the attack itself saw
    single passes. Nested sweeps stay monotone: an example broken at a smaller eps stays broken.
    Returns ({eps: correct passes}, clean-correct). The caller seeds the RNG."""
    previous = model.training
    model.eval()
    counts, before = {}, None
    try:
        for eps in grid:
            robust, counts[eps] = majority_correct(model, res[eps].x_adv, y, votes, batch)
            res[eps].correct = robust & before if nested and before is not None else robust
            before = res[eps].correct
        clean = res[grid[0]].correct if grid[0] == 0 else majority_correct(model, x, y, votes, batch)[0]
    finally:
        model.train(previous)
    return counts, clean


def eot_warnings(diagnostics: list[tuple[str, str, str]], attacks) -> list[tuple[str, str, str]]:
    """(model, WITHOUT_EOT, detail) for every model flagged randomized when the spec runs AutoAttack
    in a version other than 'rand' (EOT): the spec is obeyed, the numbers may overstate robustness."""
    plain = [a.label for a in attacks if a.name == "autoattack" and a.params.get("version", "standard") != "rand"]
    if not plain:
        return []
    return [(m, WITHOUT_EOT, f"AutoAttack without EOT ({', '.join(plain)}) on a randomised model: robust "
                             "accuracy may be overstated; set version = \"rand\"")
            for m, f, _ in diagnostics if f == RANDOMIZED]


def probe_model(model: nn.Module, x: torch.Tensor, y: torch.Tensor, num_classes: int,
                was_training: bool, seed: int) -> list[tuple[str, str]]:
    """Run the model-level probes on a small batch; return (flag, detail) pairs."""
    flags = []
    if was_training:
        flags.append(("train-mode", "model was in train mode when handed over; evaluated in eval mode"))
    previous = model.training
    model.eval()
    try:
        with torch.no_grad():
            a, b = model(x), model(x)
        if not torch.equal(a, b):
            diff = (a - b).abs().max().item()
            flags.append((RANDOMIZED, f"two forward passes differ by up to {diff:.3g}"))
        if a.min() >= -PROB_TOL and a.max() <= 1 + PROB_TOL and torch.allclose(
                a.sum(1), torch.ones_like(a[:, 0]), atol=PROB_TOL):
            flags.append(("probability-outputs", "outputs are non-negative and rows sum to 1"))
        params = [p for p in model.parameters() if p.requires_grad]
        for p in params:
            p.requires_grad_(False)
        try:
            xg = x.clone().requires_grad_(True)
            loss = F.cross_entropy(model(xg), y, reduction="sum")
            grad = torch.autograd.grad(loss, xg, allow_unused=True)[0]
        finally:
            for p in params:
                p.requires_grad_(True)
        zero = 1.0 if grad is None else (grad.flatten(1).abs().amax(1) == 0).float().mean().item()
        if zero > ZERO_GRAD_FRACTION:
            flags.append(("zero-gradients", f"{zero:.0%} of examples have an all-zero input gradient"))
        # At Linf eps = 1 any image is reachable: a working attack leaves at most chance accuracy.
        full = make_attack("pgd", {"steps": 20, "random_start": True}, "Linf").run(model, x, y, 1.0, seed)
        acc = full.correct.float().mean().item()
        if acc > 1.0 / num_classes + 1e-9:
            flags.append(("robust-at-full-range",
                          f"PGD-20 at Linf eps=1 leaves {acc:.1%} accuracy (> 1/K = {1 / num_classes:.1%})"))
    finally:
        model.train(previous)
    return flags


def check_curves(summary: pd.DataFrame) -> list[tuple[str, str, str]]:
    """Curve-level checks over one results table; return (model, flag, detail).

    Comparisons between attacks are made only where both ran on the same
    examples (same n), so a subset attack never looks stronger by accident.
    """
    out = []
    for (model, tm), g in summary.groupby(["model", "threat_model"], sort=False):
        kind = dict(zip(g["attack"], g["attack_kind"]))
        acc = g.pivot_table(index="eps", columns="attack", values="robust_acc", aggfunc="first").sort_index()
        ns = g.pivot_table(index="eps", columns="attack", values="n", aggfunc="first").sort_index()
        found = {}

        def compare(strong: str, weak: str):
            same = ns[strong] == ns[weak]
            hit = [e for e in acc.index[same & (acc[strong] < acc[weak] - 1e-12)] if e > 0]
            return hit[0] if hit else None

        labels = [a for a in acc.columns if a != WORST_CASE]
        for f in (a for a in labels if kind[a] == "fgsm"):
            for p in (a for a in labels if kind[a] == "pgd"):
                e = compare(f, p)
                if e is not None and "fgsm-beats-pgd" not in found:
                    found["fgsm-beats-pgd"] = f"{tm} eps={e:g}: {f} {acc.at[e, f]:.3f} < {p} {acc.at[e, p]:.3f}"
        for a in acc.columns:
            col, n_col = acc[a].dropna(), ns[a].dropna()
            # Only steps between equal example sets count: a worst-case row narrowed to the
            # subset a costly attack ran on is a different population, not a rising curve.
            same = n_col.reindex(col.index).diff() == 0
            rising = (col.diff() > 1e-12) & same
            if rising.any() and "non-monotonic" not in found:
                found["non-monotonic"] = f"{tm} {a}: robust accuracy rises at eps={rising.idxmax():g}"
        # AutoAttack contains Square, so it is not a fair white-box reference here.
        # The minimum-norm attacks (fab, fmn, ddn) follow the model's gradients too.
        white = [a for a in labels if kind[a] in ("fgsm", "pgd", "fab", "fmn", "ddn")
                 or kind[a].startswith("torchattacks.")]
        for b in (a for a in labels if kind[a] in BLACK_BOX):
            if not white or "black-box-beats-white-box" in found:
                continue
            same = (ns[white].eq(ns[b], axis=0)).all(axis=1)
            best = acc[white].min(axis=1)
            hit = [e for e in acc.index[same & (acc[b] < best - 1e-12)] if e > 0]
            if hit:
                e = hit[0]
                found["black-box-beats-white-box"] = (
                    f"{tm} eps={e:g}: {b} {acc.at[e, b]:.3f} < best white-box {best[e]:.3f}")
        out += [(model, flag, detail) for flag, detail in found.items()]
    return out
