"""Tables of common-corruption results: accuracy per type and severity, the mean, mCE.

Definitions as in Hendrycks & Dietterich (2019), "Benchmarking Neural
Network Robustness to Common Corruptions and Perturbations", section 3:

    E(f, c, s)   error of model f on corruption c at severity s (1 - accuracy)
    CE(f, c)     = sum_s E(f, c, s) / sum_s E(base, c, s)
    mCE(f)       = mean over c of CE(f, c)                      (the paper's AlexNet-normalised mCE)
    rel CE(f, c) = sum_s (E(f, c, s) - E_clean(f)) / sum_s (E(base, c, s) - E_clean(base))
    mean corruption accuracy = mean over (c, s) of accuracy     (RobustBench's corruptions_acc)

The baseline is any model of the store (``--mce-baseline``); RobustBench
divides by AlexNet's errors the same way (robustbench.eval.corruptions_evaluation).

Intervals are 95% percentile bootstraps over examples (Efron & Tibshirani
1993, ch. 13): every corruption unit of a model covers the same examples, so
an example's correctness across all (type, severity) cells is resampled as
one, and for mCE the same resample is used for the model and the baseline
(both saw the same corrupted images: ``corruptions.image_seed``). They
measure test-set sampling error for these 15 fixed corruptions, not
variation over some wider family of corruptions.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .corruptions import CORRUPTION_NAMES
from .errors import ConfigError
from .schema import CORRUPTIONS
from .stats import ALPHA, BOOTSTRAP_B

SUMMARY_COLUMNS = ("model", "n", "types", "severities", "clean_acc", "mean_acc", "ci_low", "ci_high",
                   "mce", "mce_low", "mce_high", "relative_mce")


def corruption_rows(summary: pd.DataFrame) -> pd.DataFrame:
    """The corruption rows of a summary (attack = type, eps = severity)."""
    return summary[summary["threat_model"] == CORRUPTIONS]


def _types(rows: pd.DataFrame) -> list[str]:
    present = set(rows["attack"])
    return [c for c in CORRUPTION_NAMES if c in present] + sorted(present - set(CORRUPTION_NAMES))


def accuracy_table(summary: pd.DataFrame, model: str) -> pd.DataFrame:
    """One model's accuracy: rows corruption types (fixed order) plus "mean", columns severities plus "mean"."""
    rows = corruption_rows(summary)
    rows = rows[rows["model"] == model]
    if rows.empty:
        raise ConfigError(f"model {model!r} has no corruption results in this store; "
                          f"choose one of {', '.join(sorted(set(corruption_rows(summary)['model'])))}")
    table = rows.pivot_table(index="attack", columns="eps", values="robust_acc", aggfunc="first")
    table = table.reindex(_types(rows))
    table.columns = [f"s{int(s)}" for s in table.columns]
    table["mean"] = table.mean(axis=1)
    table.loc["mean"] = table.mean(axis=0)
    table.index.name = "corruption"
    return table


def example_cube(examples: pd.DataFrame, model: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, list, list]:
    """(index[n], correct[n, types, severities] bool, clean_correct[n] bool, types, severities) of one
    model, examples sorted by index; only the examples every (type, severity) cell has."""
    ex = examples[(examples["threat_model"] == CORRUPTIONS) & (examples["model"] == model)]
    if ex.empty:
        return np.zeros(0, np.int64), np.zeros((0, 0, 0), bool), np.zeros(0, bool), [], []
    types, severities = _types(ex), sorted(ex["eps"].unique())
    wide = ex.pivot_table(index="index", columns=["attack", "eps"], values="correct", aggfunc="first")
    wide = wide.reindex(columns=pd.MultiIndex.from_product([types, severities])).dropna()
    cube = wide.to_numpy(dtype=float).astype(bool).reshape(len(wide), len(types), len(severities))
    clean = ex.drop_duplicates("index").set_index("index")["clean_correct"].reindex(wide.index)
    return wide.index.to_numpy(np.int64), cube, clean.to_numpy(dtype=bool), types, severities


def _resample_means(values: np.ndarray, b: int, seed: int) -> np.ndarray:
    """Means over examples (axis 0) of ``b`` bootstrap resamples -> (b, *values.shape[1:])."""
    n = len(values)
    rng = np.random.default_rng(seed)
    flat = values.reshape(n, -1).astype(float)
    out = np.empty((b, flat.shape[1]))
    chunk = max(1, 2_000_000 // max(1, n))  # bound memory: chunk x n counts at a time
    for start in range(0, b, chunk):
        stop = min(b, start + chunk)
        counts = np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(stop - start)])
        out[start:stop] = counts @ flat / n
    return out.reshape(b, *values.shape[1:])


def mce(err: np.ndarray, base_err: np.ndarray) -> float:
    """mCE from per (type, severity) errors [..., types, severities] of a model and its baseline."""
    return (err.sum(-1) / base_err.sum(-1)).mean(-1)


def relative_mce(err, clean_err, base_err, base_clean_err) -> float:
    return ((err - clean_err[..., None, None]).sum(-1) / (base_err - base_clean_err[..., None, None]).sum(-1)).mean(-1)


def corruption_summary(examples: pd.DataFrame, baseline: str | None = None, b: int = BOOTSTRAP_B,
                       seed: int = 0, alpha: float = ALPHA) -> pd.DataFrame:
    """One row per model (SUMMARY_COLUMNS): mean accuracy over every (type, severity) with its
    bootstrap interval, and mCE relative to ``baseline`` (NaN without one) with a paired interval."""
    ex = examples[examples["threat_model"] == CORRUPTIONS] if len(examples) else examples
    models = list(dict.fromkeys(ex["model"])) if len(ex) else []
    if baseline is not None and baseline not in models:
        raise ConfigError(f"--mce-baseline {baseline!r} has no corruption results in this store; "
                          f"choose one of {', '.join(models) or '(none: run a spec with [threat.corruptions])'}")
    cubes = {m: example_cube(ex, m) for m in models}
    q = [alpha / 2, 1 - alpha / 2]
    rows = []
    for m in models:
        _, cube, clean, types, sev = cubes[m]
        row = {"model": m, "n": len(cube), "types": len(types), "severities": len(sev),
               "clean_acc": float(clean.mean()) if len(clean) else math.nan,
               "mean_acc": float(cube.mean()) if cube.size else math.nan,
               "ci_low": math.nan, "ci_high": math.nan, "mce": math.nan, "mce_low": math.nan,
               "mce_high": math.nan, "relative_mce": math.nan}
        if cube.size:
            per_example = cube.reshape(len(cube), -1).mean(axis=1)
            row["ci_low"], row["ci_high"] = np.quantile(_resample_means(per_example, b, seed), q)
        if baseline is not None and cube.size:
            row.update(_mce_row(cubes[m], cubes[baseline], b, seed, q, m, baseline))
        rows.append(row)
    return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))


def _mce_row(mine, base, b, seed, q, model, baseline) -> dict:
    (idx, cube, clean, types, sev), (bidx, bcube, bclean, btypes, bsev) = mine, base
    if (types, sev) != (btypes, bsev):
        raise ConfigError(f"{model} and the mCE baseline {baseline} were run on different corruption types "
                          f"or severities; evaluate both with the same [threat.corruptions]")
    # Paired: the examples both have, in the same order.
    _, mi, bi = np.intersect1d(idx, bidx, return_indices=True)
    if not len(mi):
        raise ConfigError(f"{model} and the mCE baseline {baseline} share no examples; "
                          f"evaluate both in one spec")
    cube, clean, bcube, bclean = cube[mi], clean[mi], bcube[bi], bclean[bi]
    err, berr = 1 - cube.mean(0), 1 - bcube.mean(0)
    with np.errstate(divide="ignore", invalid="ignore"):  # a baseline without errors: CE is inf or NaN
        point = float(mce(err, berr))
        rel = float(relative_mce(err, 1 - clean.mean(), berr, 1 - bclean.mean()))
        boot = 1 - _resample_means(np.concatenate([cube, bcube], axis=1), b, seed)   # (b, 2T, S)
        t = len(types)
        lo, hi = np.quantile(mce(boot[:, :t], boot[:, t:]), q)
    return {"mce": point, "mce_low": float(lo), "mce_high": float(hi), "relative_mce": rel}


def corruption_text(summary: pd.DataFrame) -> str:
    """Mean accuracy over corruption types per model (rows) and severity (columns); "" without corruptions."""
    rows = corruption_rows(summary)
    if rows.empty:
        return ""
    table = pd.DataFrame({m: accuracy_table(rows, m).loc["mean"] for m in dict.fromkeys(rows["model"])}).T
    return ("Common corruptions: accuracy averaged over types (per type: robustmix report)\n"
            + table.map(lambda v: f"{v:.3f}").to_string())
