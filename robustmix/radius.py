"""Per-example robustness radius: median with an interval, and AttackBench's optimality.

Every attack in a store gives each example a radius, an upper bound on the distance to
the nearest adversarial example:

* a minimum-norm attack (attacks/minnorm.py) records it in the ``radius`` column: the
  norm of the closest adversarial it found (inf: none; 0: misclassified when clean);
* a fixed-eps attack gives the smallest eps of its grid at which it broke the example
  (0 when misclassified clean, inf when it never broke it): a coarser bound, as fine as
  the grid.

The robustness curve of an attack is the share of examples whose radius exceeds eps,
so curves, medians and areas all follow from the radii. Reads per-example rows as
``compare.load_examples`` gives them; writes nothing but the ``--radii`` export.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .attacks.minnorm import broken_at
from .compare import load_examples
from .errors import StoreError
from .fileio import atomic_path
from .results import load_results
from .schema import CORRUPTIONS
from .stats import median_interval

BEST = "per-example best"   # attack name of the minimum over all attacks, per example
MIN_NORM, GRID = "minimum-norm", "grid"  # how an attack's radius was obtained
RADIUS_COLUMNS = ("model", "threat_model", "attack", "kind", "index", "radius")


def example_radii(examples: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, threat model, attack, example): its radius and kind (RADIUS_COLUMNS)."""
    # Common corruptions are no eps-ball (their "eps" is a severity): they have no radius.
    ex = examples[examples["threat_model"] != CORRUPTIONS] if len(examples) else examples
    if ex.empty:
        return pd.DataFrame(columns=list(RADIUS_COLUMNS))
    keys = ["model", "threat_model", "attack", "index"]
    has = ex["radius"].notna() if "radius" in ex.columns else pd.Series(False, index=ex.index)
    parts = []
    if has.any():
        mn = ex[has].groupby(keys, sort=False)["radius"].first().reset_index()
        parts.append(mn.assign(kind=MIN_NORM))
    grid = ex[~has]
    if len(grid):
        first_broken = grid["eps"].where(~grid["correct"].astype(bool), math.inf)
        g = grid.assign(_r=first_broken).groupby(keys, sort=False).agg(
            radius=("_r", "min"), clean=("clean_correct", "first")).reset_index()
        g["radius"] = g["radius"].where(g["clean"].astype(bool), 0.0)
        parts.append(g.drop(columns="clean").assign(kind=GRID))
    out = pd.concat(parts, ignore_index=True)
    out["radius"] = out["radius"].astype(float)
    return out[list(RADIUS_COLUMNS)]


def robust_curve(radii, eps_grid) -> np.ndarray:
    """Robust accuracy at each eps from per-example radii: the share with radius > eps
    (minnorm.broken_at, the one rule with its eps tolerance)."""
    r = torch.as_tensor(np.asarray(radii, float), dtype=torch.float64)
    return np.array([float((~broken_at(r, float(e))).double().mean()) if len(r) else math.nan for e in eps_grid])


def with_best(radii: pd.DataFrame) -> pd.DataFrame:
    """``radii`` plus, per (model, threat model, example), the minimum over every attack that ran
    on it (attack BEST): the tightest bound the store holds."""
    if radii.empty:
        return radii
    best = radii.groupby(["model", "threat_model", "index"], sort=False)["radius"].min().reset_index()
    return pd.concat([radii, best.assign(attack=BEST, kind=BEST)[list(RADIUS_COLUMNS)]], ignore_index=True)


def median_table(radii: pd.DataFrame) -> pd.DataFrame:
    """Median radius with its 95% order-statistic interval (stats.median_interval) per model,
    threat model and minimum-norm attack, and of the per-example best over all attacks."""
    cols = ["model", "threat_model", "attack", "n", "median", "ci_low", "ci_high", "unbroken"]
    rows = []
    for (model, tm, attack), g in with_best(radii).groupby(["model", "threat_model", "attack"], sort=False):
        if g["kind"].iloc[0] == GRID:
            continue
        med, lo, hi = median_interval(g["radius"])
        rows.append([model, tm, attack, len(g), med, lo, hi, int(np.isinf(g["radius"]).sum())])
    return pd.DataFrame(rows, columns=cols)


def local_optimality(radius_attack, radius_best) -> tuple[float, float, float, float]:
    """AttackBench's local optimality of one attack on one model (Cina, Rony, Pintor et al. 2024,
    "AttackBench: Evaluating Gradient-based Attacks for Adversarial Examples", arXiv:2404.19460,
    sec. 3; their analysis/plot.py computes it the same way):

        LO = 1 - (A_attack - A_best) / (A_max - A_best)

    where A is the area under a robustness curve (robust accuracy against perturbation size)
    from 0 to eps_max, the largest finite per-example best radius; A_best is the area of the
    per-example best curve over all attacks, A_max = clean accuracy x eps_max that of a curve
    no attack lowers. 1: the attack matches the best on every example; 0: it breaks nothing.
    Radii beyond eps_max (inf included) count as eps_max. The area of the empirical step
    curve is exact here, mean(min(radius, eps_max)); AttackBench integrates the same curve
    with the trapezoid rule over its jump points, which differs by O(1/n).
    Returns (LO, A_attack, A_best, A_max); LO is nan when A_max = A_best (nothing to rank)."""
    a, b = np.asarray(radius_attack, float), np.asarray(radius_best, float)
    finite = b[np.isfinite(b)]
    if not len(b) or not len(finite) or finite.max() <= 0:
        return math.nan, math.nan, math.nan, math.nan
    top = float(finite.max())
    area, best = float(np.minimum(a, top).mean()), float(np.minimum(b, top).mean())
    full = float((b > 0).mean()) * top
    lo = 1 - (area - best) / (full - best) if full > best else math.nan
    return lo, area, best, full


def optimality_table(radii: pd.DataFrame) -> pd.DataFrame:
    """Local optimality of every attack per model and threat model, against the per-example best
    over all attacks in the store (on the examples the attack ran on), and per attack the
    mean over models (AttackBench's global optimality) as model "(mean over models)"."""
    cols = ["model", "threat_model", "attack", "kind", "n", "optimality", "area", "best_area", "max_area"]
    rows = []
    for (model, tm), g in radii.groupby(["model", "threat_model"], sort=False):
        best = g.groupby("index")["radius"].min()
        for attack, a in g.groupby("attack", sort=False):
            lo, area, best_area, full = local_optimality(a["radius"], best.loc[a["index"]])
            rows.append([model, tm, attack, a["kind"].iloc[0], len(a), lo, area, best_area, full])
    table = pd.DataFrame(rows, columns=cols)
    if table.empty:
        return table
    mean = table.groupby(["threat_model", "attack", "kind"], sort=False)["optimality"].mean().reset_index()
    mean = mean.assign(model="(mean over models)", n=np.nan, area=np.nan, best_area=np.nan, max_area=np.nan)
    return pd.concat([table, mean[cols]], ignore_index=True)


def has_min_norm(radii: pd.DataFrame) -> bool:
    return bool(len(radii)) and bool((radii["kind"] == MIN_NORM).any())


def export_radii(results_dir, out_csv) -> pd.DataFrame:
    """Write every example's radius per model, threat model and attack (RADIUS_COLUMNS; "inf":
    never broken) to ``out_csv``; return the median table."""
    results = load_results(results_dir)
    radii = example_radii(load_examples(results.root, results.summary))
    out = Path(out_csv)
    if out.is_dir():
        raise StoreError(f"{out} is a directory; pass a file path such as {out / 'radii.csv'}")
    try:
        with atomic_path(out) as tmp:
            radii.to_csv(tmp, index=False)
    except OSError as exc:
        raise StoreError(f"cannot write {out}: {exc.strerror or exc}; pass a path in a writable directory") from None
    return median_table(radii)
