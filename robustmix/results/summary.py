"""Per-example rows -> the summary table: one row per (model, attack, threat model, eps), plus worst case."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..schema import CORRUPTIONS, SUMMARY_COLUMNS, VARIANT_PARAMS, WORST_CASE
from ..stats import wilson_interval


def aggregate(examples: pd.DataFrame, models: pd.DataFrame, context: dict) -> pd.DataFrame:
    """Per-example rows -> one row per (model, attack, threat model, eps), plus worst-case rows.

    ``seconds`` and ``fwd_bwd_passes`` are summed over the units that made a
    row; a worst-case row sums its attacks. A worst-case row covers only the
    examples every attack at that eps evaluated (an attack run on a subset
    narrows it), and says which attacks it took in ``attacks``.
    """
    if examples.empty:
        return pd.DataFrame(columns=list(SUMMARY_COLUMNS))
    keys = ["model", "attack", "threat_model", "eps"]
    ex = examples
    cost = ex.drop_duplicates(["unit", "eps"]).groupby(keys)[["seconds", "passes"]].sum()
    agg = ex.groupby(keys).agg(n=("correct", "size"), n_robust=("correct", "sum"),
                               n_clean=("clean_correct", "sum"), attack_kind=("attack_kind", "first"),
                               eps_label=("eps_label", "first"), precision=("precision", "first"))
    agg = agg.join(cost).reset_index()
    agg["attacks"] = agg["attack"]

    worst = []
    for (model, tm, eps), g in ex.groupby(["model", "threat_model", "eps"]):
        if tm == CORRUPTIONS:  # different corruptions at one severity are no eps-ball: no worst case
            continue
        per_attack = g.pivot_table(index="index", columns="attack", values="correct", aggfunc="first")
        covered = per_attack.dropna()
        clean = g.drop_duplicates("index").set_index("index")["clean_correct"].reindex(covered.index)
        c = cost.loc[[(model, a, tm, eps) for a in per_attack.columns]].sum()
        worst.append({"model": model, "attack": WORST_CASE, "threat_model": tm, "eps": eps,
                      "n": len(covered), "n_robust": int(covered.astype(bool).all(axis=1).sum()),
                      "n_clean": int(clean.sum()), "attack_kind": WORST_CASE,
                      "eps_label": g["eps_label"].iloc[0], "precision": g["precision"].iloc[0],
                      "seconds": c["seconds"], "passes": c["passes"],
                      "attacks": "+".join(sorted(per_attack.columns))})
    agg = pd.concat([agg, pd.DataFrame(worst)], ignore_index=True)
    agg["n_robust"] = agg["n_robust"].astype(int)
    agg["passes"] = agg["passes"].astype(np.int64)  # a count; the worst-case sum made it float
    agg["robust_acc"] = agg["n_robust"] / agg["n"]
    agg["ci_low"], agg["ci_high"] = wilson_interval(agg["n_robust"].to_numpy(), agg["n"].to_numpy())
    agg["clean_acc"] = agg["n_clean"] / agg["n"]
    agg = agg.rename(columns={"passes": "fwd_bwd_passes"}).drop(columns=["n_clean"])
    meta = models.set_index("model")[["variant", *VARIANT_PARAMS, "arch", "dataset", "train_seed"]]
    agg = agg.join(meta, on="model")
    for key, value in context.items():
        agg[key] = value
    cols = list(SUMMARY_COLUMNS) + ["attack_kind", "attacks"]
    order = {m: i for i, m in enumerate(models["model"])}
    agg = agg.assign(_m=agg["model"].map(order), _w=agg["attack"] == WORST_CASE)
    agg = agg.sort_values(["_m", "threat_model", "_w", "attack", "eps"]).drop(columns=["_m", "_w"])
    return agg[cols].reset_index(drop=True)
