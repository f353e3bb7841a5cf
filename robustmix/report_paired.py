"""Paired comparisons for the HTML report (robustmix.report).

Every model of a store is attacked on the same examples, so the report
compares models pairwise on them (``results.compare``): each model against
the ``full`` model of its recipe and training seed, at every eps > 0 of the
main threat model, worst case over attacks per example. Where a variant has
k >= 2 seeds with a matching full model, the seed-level estimate (t over
seeds) and the dominant source of variance are shown too.
"""
from __future__ import annotations

import html

import numpy as np
import pandas as pd

from .compare import compact, compare, compare_seeds
from .page import table
from .schema import WORST_CASE
from .stats import ALPHA, holm

REFERENCE = "full"   # the variant every other model is compared with


def main_threat_model(summary: pd.DataFrame) -> str | None:
    """The threat model with the most worst-case rows (ties: alphabetical)."""
    wc = summary[summary["attack"] == WORST_CASE]
    return None if wc.empty else wc["threat_model"].value_counts().sort_index().idxmax()


def _identity(summary: pd.DataFrame, models: pd.DataFrame) -> pd.DataFrame:
    """model -> recipe, variant (with its parameters) and train seed."""
    meta = models if len(models) and {"variant", "train_seed"} <= set(models.columns) else summary
    meta = meta.drop_duplicates("model").copy()
    meta["recipe"] = meta["model"].astype(str).str.rpartition("/")[0]
    params = meta["variant_params"].astype(str) if "variant_params" in meta else ""
    meta["group"] = meta["variant"].astype(str) + " " + params
    return meta[["model", "recipe", "variant", "group", "train_seed"]]


def reference_pairs(summary: pd.DataFrame, models: pd.DataFrame) -> list[tuple[str, str, str, object]]:
    """(model, its full model, group, seed) for every non-full model whose recipe and seed have one."""
    meta = _identity(summary, models)
    full = {(r, s): m for m, r, v, s in meta[["model", "recipe", "variant", "train_seed"]].itertuples(index=False)
            if v == REFERENCE}
    return [(m, full[(r, s)], g, s) for m, r, v, g, s in meta.itertuples(index=False)
            if v != REFERENCE and (r, s) in full]


def paired_tables(examples: pd.DataFrame, summary: pd.DataFrame, models: pd.DataFrame,
                  alpha: float = ALPHA) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per-pair rows, seed-level rows) of the comparisons described in the module docstring."""
    tm = main_threat_model(summary)
    pairs = reference_pairs(summary, models)
    if tm is None or not pairs or examples.empty:
        return pd.DataFrame(), pd.DataFrame()
    grid = sorted(e for e in summary.loc[summary["threat_model"] == tm, "eps"].unique() if e > 0)
    labels = dict(summary.loc[summary["threat_model"] == tm, ["eps", "eps_label"]].drop_duplicates("eps").values)
    rows, comps = [], {}
    examples = compact(examples)
    for model, ref, group, seed in pairs:
        for eps in grid:
            c = compare(examples, model, ref, tm, eps, WORST_CASE, alpha=alpha)
            if c.n:
                rows.append(c.as_dict() | {"group": group, "seed": seed, "eps_label": labels.get(eps, f"{eps:g}")})
                comps.setdefault((ref.rpartition("/")[0], group, eps), []).append(c)
    seeds = []
    for (recipe, group, eps), cs in comps.items():
        if len(cs) >= 2:
            s = compare_seeds(cs, alpha)
            seeds.append({"recipe": recipe, "group": group, "eps": eps, "eps_label": labels.get(eps, f"{eps:g}"),
                          **{k: s[k] for k in ("k", "mean", "ci_low", "ci_high", "p", "dominant", "mdd")}})
    return pd.DataFrame(rows), pd.DataFrame(seeds)


def _pts(x) -> str:
    return "—" if x is None or not np.isfinite(x) else f"{100 * x:+.1f}"


def paired_html(examples: pd.DataFrame, summary: pd.DataFrame, models: pd.DataFrame) -> str:
    """The report section: one table per comparison kind; everything from the store escaped."""
    esc = html.escape
    pairs, seeds = paired_tables(examples, summary, models)
    out = ['<h2 id="paired">Paired comparisons</h2>',
           '<p class="note">Each model against the <code>full</code> model of its recipe and training seed, '
           f"on the examples both were attacked on, worst case over attacks per example, at each eps of "
           f"{esc(str(main_threat_model(summary)))}. Difference in robust accuracy (model - full, points) with "
           "Newcombe's hybrid score 95% interval, exact McNemar p-value (unadjusted), the discordant "
           "examples (robust under the model only / under full only) and the minimum detectable difference "
           f"(MDD) at 80% power and alpha {ALPHA:g}.</p>"]
    if pairs.empty:
        out.append("<p>No model has a <code>full</code> model of the same recipe and seed in this store "
                   "(or the store has no per-example rows), so there is nothing to pair.</p>")
        return "\n".join(out)
    out.append(table(("model", "full", "eps", "n", "difference [95% CI]", "p", "model only / full only", "MDD"),
                     ([esc(r.model_a), esc(r.model_b), esc(str(r.eps_label)), r.n,
                       f"{_pts(r.diff)} [{_pts(r.ci_low)}, {_pts(r.ci_high)}]", f"{r.p:.3g}",
                       f"{r.only_a} / {r.only_b}", f"{100 * r.mdd:.1f}"] for r in pairs.itertuples(index=False)),
                     numeric=(3, 4, 5, 6, 7)))
    if not seeds.empty:
        out.append('<h3>Over training seeds</h3><p class="note">Variants with two or more seeds: the per-seed '
                   "differences are replicates; mean with a t interval over seeds, its p-value, which source of "
                   "variance dominates (between seeds, or sampling of examples) and the seed design's MDD.</p>")
        out.append(table(("recipe", "variant", "eps", "seeds", "mean difference [95% CI]", "p",
                          "dominant variance", "MDD"),
                         ([esc(r.recipe), esc(r.group.strip()), esc(str(r.eps_label)), r.k,
                           f"{_pts(r.mean)} [{_pts(r.ci_low)}, {_pts(r.ci_high)}]", f"{r.p:.3g}", esc(r.dominant),
                           _pts(r.mdd)] for r in seeds.itertuples(index=False)),
                         numeric=(3, 4, 5, 7)))
    return "\n".join(out)


def best_is_separated(examples: pd.DataFrame, best: str, others: list[str], threat_model: str, eps: float,
                      alpha: float = ALPHA) -> tuple[bool, dict[str, float]]:
    """Is ``best`` significantly above every model of ``others`` (paired exact McNemar, Holm over the
    comparisons)? Returns (separated, {other: Holm-adjusted p}); no shared examples -> p = nan."""
    examples = compact(examples)
    tests = [compare(examples, best, o, threat_model, eps, WORST_CASE, alpha=alpha) for o in others]
    p = [t.p if t.n else np.nan for t in tests]
    adj, _ = holm(p, alpha)
    ok = all(t.n and t.diff > 0 for t in tests) and bool(np.all(adj < alpha))
    return ok, dict(zip(others, adj))


__all__ = ["paired_tables", "paired_html", "reference_pairs", "best_is_separated", "main_threat_model"]
