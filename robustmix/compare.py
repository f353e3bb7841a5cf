"""Paired comparisons of models over a result store's per-example rows.

Every model of one evaluation is attacked on the same example indices, so two
models' robust indicators at one (threat model, eps, attack) are a paired
sample; ``robustmix.stats`` holds the tests, this module lines the examples up.
Reads the store only through ``results.ResultStore``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from .eps import same_eps
from .results import ResultStore
from .schema import WORST_CASE
from .stats import (ALPHA, auc_difference, curve_auc, mcnemar_exact, mdd_paired, mdd_seeds, paired_counts,
                    paired_difference, paired_variance, seed_summary)


def load_examples(root, summary: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every per-example row of a result store, read through ``ResultStore.read_units``.

    With ``summary`` (the store's last aggregate), only the (model, attack,
    threat model, eps) cells it lists are kept, so units of an earlier spec
    left in the store do not enter a comparison."""
    store = ResultStore(root)
    ex = store.read_units(store.unit_keys())
    if summary is None or ex.empty:
        return ex
    cells = summary.loc[summary["attack"] != WORST_CASE, ["model", "attack", "threat_model", "eps"]]
    return ex.merge(cells.drop_duplicates(), on=["model", "attack", "threat_model", "eps"], how="inner")


def compact(examples: pd.DataFrame) -> pd.DataFrame:
    """The columns comparisons read, names as categories: many pairwise look-ups in one frame
    then filter by integer codes instead of comparing strings (seconds instead of minutes on
    a million rows)."""
    cols = [c for c in ("model", "attack", "attack_kind", "threat_model", "eps", "index", "correct")
            if c in examples.columns]
    return examples[cols].astype({c: "category" for c in ("model", "attack", "attack_kind", "threat_model")
                                  if c in cols})


def _as_examples(store) -> pd.DataFrame:
    if isinstance(store, pd.DataFrame):
        return store
    # Every unit of the store; callers holding the summary pass load_examples(root, summary).
    return load_examples(store.root if isinstance(store, ResultStore) else store)


def example_table(examples: pd.DataFrame, threat_model: str, eps: float, attack: str = WORST_CASE,
                  models=None, attacks=None) -> pd.DataFrame:
    """Robust indicator per example (rows: example index) and model (columns) at one
    (threat model, eps, attack), on the examples every model shares.

    ``attack=WORST_CASE``: an example is robust when it is robust under every
    attack that ran on it (restricted to ``attacks`` when given). Where attacks
    ran on different n (AutoAttack or Square on a subset), examples in the
    subset are judged by more attacks than the rest: this per-example worst
    case covers all examples any attack reached, unlike the summary's
    worst-case row, which keeps only the subset every attack covered. A pair
    is only fair when both models met the same attacks on an example, so an
    example enters the table only if every model ran the same set of attacks
    on it; ``table.attrs["dropped"]`` counts the others and
    ``table.attrs["attacks"]`` names the attacks used."""
    ex = examples[(examples["threat_model"] == threat_model) & same_eps(examples["eps"], eps)]
    if models is not None:
        ex = ex[ex["model"].isin(list(models))]
    if attack != WORST_CASE:
        ex = ex[ex["attack"] == attack]
    elif attacks is not None:
        ex = ex[ex["attack"].isin(list(attacks))]
    names = list(models) if models is not None else list(dict.fromkeys(ex["model"]))
    if ex.empty:
        table = pd.DataFrame(columns=names, dtype=bool)
        table.attrs.update(dropped=0, attacks=[])
        return table
    ex = ex.drop_duplicates(["model", "attack", "index"])
    codes = pd.Categorical(ex["attack"]).codes.astype(np.int64)
    g = ex.assign(_bit=np.left_shift(1, codes)).groupby(["model", "index"], observed=True)
    robust = g["correct"].all().unstack("model")
    ran = g["_bit"].sum().unstack("model")
    if not set(names) <= set(robust.columns):  # a model with no rows here: nothing is shared
        table = pd.DataFrame(columns=names, dtype=bool)
        table.attrs.update(dropped=int(len(robust)), attacks=sorted(ex["attack"].unique()))
        return table
    have = robust[names].notna().all(axis=1)
    same = ran[names].eq(ran[names[0]], axis=0).all(axis=1)
    keep = have & same
    table = robust.loc[keep, names].astype(bool).sort_index()
    table.attrs.update(dropped=int((~keep).sum()), attacks=sorted(ex["attack"].unique()))
    return table


@dataclass
class Comparison:
    """A paired comparison of two models on the same examples: A - B in robust accuracy."""
    model_a: str
    model_b: str
    threat_model: str
    eps: float
    attack: str
    n: int
    acc_a: float
    acc_b: float
    diff: float          # acc_a - acc_b
    ci_low: float        # Newcombe (1998) hybrid score interval, method 10
    ci_high: float
    p: float             # exact McNemar, two-sided
    only_a: int          # discordant: robust under A only
    only_b: int          # discordant: robust under B only
    mdd: float           # minimum detectable difference (80% power, alpha) at this n and discordant rate
    dropped: int         # examples left out (missing for a model, or met different attacks)

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def variance(self) -> float:
        return paired_variance(self.only_a, self.only_b, self.n)


def paired_comparison(robust_a, robust_b, alpha: float = ALPHA, **labels) -> Comparison:
    """Compare two aligned boolean vectors (same examples) with the tests of ``robustmix.stats``."""
    a, b, c, d = paired_counts(robust_a, robust_b)
    n = a + b + c + d
    diff, lo, hi = paired_difference(a, b, c, d, alpha)
    return Comparison(**{"dropped": 0, **labels}, n=n, acc_a=(a + b) / n if n else np.nan,
                      acc_b=(a + c) / n if n else np.nan, diff=diff, ci_low=lo, ci_high=hi,
                      p=mcnemar_exact(b, c), only_a=b, only_b=c,
                      mdd=mdd_paired(n, (b + c) / n, alpha) if n else np.nan)


def compare(store, model_a: str, model_b: str, threat_model: str, eps: float, attack: str = WORST_CASE,
            attacks=None, alpha: float = ALPHA) -> Comparison:
    """Paired test of model A against model B at one (threat model, eps, attack).

    ``store``: a ResultStore, its directory, or a frame from ``load_examples``.
    Exact McNemar p-value, Newcombe interval for the difference, discordant
    counts, n and the minimum detectable difference (``robustmix.stats``)."""
    t = example_table(_as_examples(store), threat_model, eps, attack, [model_a, model_b], attacks)
    return paired_comparison(t[model_a].to_numpy(bool), t[model_b].to_numpy(bool), alpha, model_a=model_a,
                             model_b=model_b, threat_model=threat_model, eps=float(eps), attack=attack,
                             dropped=int(t.attrs["dropped"]))


def compare_seeds(comparisons: list[Comparison], alpha: float = ALPHA) -> dict:
    """Seeds as replicates over per-seed comparisons (one per seed pair, k >= 2):
    ``stats.seed_summary`` plus the minimum detectable difference of the seed design."""
    out = seed_summary([c.diff for c in comparisons], [c.variance for c in comparisons], alpha)
    out["mdd"] = mdd_seeds(out["k"], out["sd"], alpha)
    return out


def compare_auc(store, model_a: str, model_b: str, threat_model: str, attack: str = WORST_CASE,
                attacks=None, alpha: float = ALPHA, seed: int = 0) -> dict:
    """AUC of each model's robustness curve (``stats.curve_auc``) and a paired bootstrap
    interval for AUC_A - AUC_B over the examples both have at every eps of the grid."""
    ex = _as_examples(store)
    ex = ex[ex["threat_model"] == threat_model]
    grid = sorted(set(ex.loc[ex["model"] == model_a, "eps"]) & set(ex.loc[ex["model"] == model_b, "eps"]))
    tables = [example_table(ex, threat_model, e, attack, [model_a, model_b], attacks) for e in grid]
    shared = sorted(set.intersection(*(set(t.index) for t in tables))) if tables else []
    ra = np.stack([t.loc[shared, model_a].to_numpy(bool) for t in tables], axis=1) if shared else np.zeros((0, 0))
    rb = np.stack([t.loc[shared, model_b].to_numpy(bool) for t in tables], axis=1) if shared else np.zeros((0, 0))
    if not shared:
        return {"n": 0, "eps": grid, "auc_a": np.nan, "auc_b": np.nan, "diff": np.nan,
                "ci_low": np.nan, "ci_high": np.nan}
    diff, lo, hi = auc_difference(grid, ra, rb, seed=seed, alpha=alpha)
    return {"n": len(shared), "eps": grid, "auc_a": curve_auc(grid, ra.mean(0)),
            "auc_b": curve_auc(grid, rb.mean(0)), "diff": diff, "ci_low": lo, "ci_high": hi}
