"""Sweeps: one attack over an eps grid, nested by default."""
from __future__ import annotations

import time

from torch import Tensor, nn

from ..errors import ConfigError
from .base import Attack, AttackResult, attack_mode, check_eps_value, check_inputs, check_seed_value, isolated_rng, score


def sweep(attack: Attack, model: nn.Module, x: Tensor, y: Tensor, eps_grid: list[float], seed: int,
          nested: bool = True) -> dict[float, AttackResult]:
    """Run ``attack`` over ``eps_grid`` (ascending; eps=0 is clean accuracy).

    Nested: an example broken at eps_i keeps that adversarial example at every larger eps
    (the eps-balls are nested, so it stays valid) and only still-robust examples are attacked
    again; clean-misclassified examples are never attacked. Robust accuracy therefore never
    rises with eps. Work that provably does not depend on eps is kept from one eps to the
    next (``Attack.across_eps``: AutoAttack's FAB search). Unnested: independent
    ``attack.run`` per eps.
    """
    try:
        grid = list(eps_grid) if not isinstance(eps_grid, (str, bytes)) else []
    except TypeError:
        grid = []
    if not grid:
        raise ConfigError(f"eps_grid must be a non-empty list of numbers, got {eps_grid!r}")
    grid = sorted({check_eps_value(e, attack.threat_model) for e in grid})
    check_seed_value(seed)
    check_inputs(x, y)
    if getattr(attack, "minimum_norm", False):
        # One search gives every example's radius and so every eps, nested or not (attacks/minnorm.py).
        return attack.radius_sweep(model, x, y, grid, seed)
    if not nested:
        results = {}
        for e in grid:
            t0 = time.perf_counter()
            results[e] = attack.run(model, x, y, e, seed)
            results[e].seconds = time.perf_counter() - t0
        return results
    x, y = x.detach(), y.detach().long()
    # The clean pass too: a randomised model must not move the caller's RNG.
    with attack_mode(model), isolated_rng(x.device, seed):
        correct, margin = score(model, x, y)
    x_cur, results = x.clone(), {}
    with attack.across_eps():
        for e in grid:
            t0 = time.perf_counter()
            idx = correct.nonzero().squeeze(1)
            passes = 0
            if e > 0 and idx.numel():
                r = attack.run(model, x[idx], y[idx], e, seed)
                x_cur, correct, margin = x_cur.clone(), correct.clone(), margin.clone()
                x_cur[idx], correct[idx], margin[idx] = r.x_adv, r.correct, r.margin
                passes = r.passes
            results[e] = AttackResult(x_cur, correct, margin, passes, time.perf_counter() - t0)
    return results
