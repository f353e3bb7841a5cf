"""The test that decides a paper claim, built from paired comparisons (robustmix.results).

Two variants of one recipe are compared seed by seed (``RECIPE/TAG-sSEED``
names; the same seed number pairs up), each pair on the examples both share
(``results.example_table``). One seed: the exact McNemar test and
Newcombe's interval decide; k >= 2 seeds: the per-seed paired differences
are replicates and a t test over seeds decides (``stats.seed_summary``).
"""
from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field, replace
from typing import Callable

import numpy as np
import pandas as pd
from scipy import stats as sps

from ..compare import Comparison, example_table, paired_comparison
from ..diagnostics import BLACK_BOX
from ..eps import same_eps
from ..schema import WORST_CASE
from ..stats import ALPHA, POWER, mdd_seeds, seed_summary

HOLDS, FAILS, NOT_SHOWN = "holds", "does not hold", "not shown"


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


@dataclass
class Test:
    """The test that decides a claim: an estimate (a difference in accuracy, A - B) against
    ``null``, its 95% interval and p-value; ``p_holm`` once adjusted over the claims."""
    what: str
    method: str
    estimate: float
    ci_low: float
    ci_high: float
    p: float
    n: int
    seeds: int
    mdd: float                   # minimum detectable difference, 80% power, at this n and seeds
    null: float = 0.0
    p_holm: float | None = None
    dominant: str | None = None  # seed-to-seed | sampling (k >= 2)
    per_seed: list = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)

    def __str__(self):
        p = f"p = {self.p:.3g}" + (f" (Holm {self.p_holm:.3g})" if self.p_holm is not None else "")
        seeds = f", {self.seeds} seeds, {self.dominant} variance dominates" if self.seeds > 1 else ""
        return (f"{self.what}: {_pct(self.estimate)} points [{_pct(self.ci_low)}, {_pct(self.ci_high)}], "
                f"{p}, n={self.n}{seeds} ({self.method})")

    def mdd_text(self) -> str:
        seeds = f"{self.seeds} seeds" if self.seeds > 1 else "1 seed"
        return (f"minimum detectable difference at n={self.n}, {seeds}: {_pct(self.mdd)} points "
                f"({POWER:.0%} power, alpha {ALPHA:g})")


def split_name(name: str) -> tuple[str, str, int | None]:
    """``"rec/smooth-sigma2-s0"`` -> ("rec", "smooth-sigma2", 0); names without a seed keep the tag."""
    recipe, _, rest = str(name).rpartition("/")
    m = re.fullmatch(r"(.+)-s(\d+)", rest)
    return (recipe, m.group(1), int(m.group(2))) if m else (recipe, rest, None)


def model_names(examples: pd.DataFrame | None) -> list[str]:
    return [] if examples is None or examples.empty else list(dict.fromkeys(examples["model"]))


def seeds_of(examples: pd.DataFrame, tag: str, recipe: str | None = None) -> dict:
    """{seed: model name} of the variant ``tag`` (in ``recipe``)."""
    out = {}
    for m in model_names(examples):
        r, t, s = split_name(m)
        if t == tag and (recipe is None or r == recipe):
            out[s] = m
    return out


def seed_pairs(examples, tag_a: str, tag_b: str, recipe: str | None = None) -> list[tuple]:
    """(seed, model_a, model_b) for the seeds both variants have; two seedless names pair up."""
    a, b = seeds_of(examples, tag_a, recipe), seeds_of(examples, tag_b, recipe)
    return [(s, a[s], b[s]) for s in sorted(set(a) & set(b), key=lambda x: (x is None, x))]


def white_box(examples: pd.DataFrame, threat_model: str | None = None, eps: float | None = None) -> list[str]:
    """Attack labels other than the black-box ones (by label or kind); with ``threat_model`` and
    ``eps``, only those that ran there (so a clean pass at eps 0 is not listed at 8/255)."""
    if threat_model is not None and eps is not None:
        examples = examples[(examples["threat_model"] == threat_model)
                            & same_eps(examples["eps"], eps)]
    kinds = examples.drop_duplicates("attack").set_index("attack").get("attack_kind")
    return [a for a in examples["attack"].unique()
            if a not in BLACK_BOX and (kinds is None or kinds.get(a) not in BLACK_BOX)]


def pair_comparisons(examples, pairs, threat_model: str, eps: float, attacks=None) -> list[Comparison]:
    """One paired comparison per (seed, A, B) at eps, worst case over ``attacks`` per example
    (eps 0: clean accuracy, every attack agrees there)."""
    out = []
    for _, a, b in pairs:
        t = example_table(examples, threat_model, eps, WORST_CASE, [a, b], attacks)
        if len(t):
            out.append(paired_comparison(t[a].to_numpy(bool), t[b].to_numpy(bool), model_a=a, model_b=b,
                                         threat_model=threat_model, eps=float(eps), attack=WORST_CASE,
                                         dropped=int(t.attrs["dropped"])))
    return out


def combine(comps: list[Comparison], what: str, null: float = 0.0, alpha: float = ALPHA) -> Test | None:
    """The deciding test over per-seed comparisons: k >= 2 -> t over seeds; one seed -> exact
    McNemar (``null`` = 0) or, against a tolerance ``null`` != 0, a paired Wald z test."""
    if not comps:
        return None
    per_seed = [c.as_dict() for c in comps]
    if len(comps) >= 2:
        s = seed_summary([c.diff - null for c in comps], [c.variance for c in comps], alpha)
        return Test(what, f"t test over {s['k']} seeds of the per-seed paired differences", s["mean"] + null,
                    s["ci_low"] + null, s["ci_high"] + null, s["p"], comps[0].n, s["k"],
                    mdd_seeds(s["k"], s["sd"], alpha), null, dominant=s["dominant"], per_seed=per_seed)
    c = comps[0]
    if null == 0:
        return Test(what, "exact McNemar; Newcombe hybrid score interval", c.diff, c.ci_low, c.ci_high, c.p,
                    c.n, 1, c.mdd, per_seed=per_seed)
    se = math.sqrt(c.variance)
    p = float(2 * sps.norm.sf(abs(c.diff - null) / se)) if se > 0 else float(c.diff == null)
    return Test(what, f"paired Wald z test against {_pct(null)} points; Newcombe hybrid score interval",
                c.diff, c.ci_low, c.ci_high, p, c.n, 1, c.mdd, null, per_seed=per_seed)


def decide(test: Test, favour: int, alpha: float = ALPHA) -> str:
    """holds / does not hold / not shown from the (Holm-adjusted, if set) p-value and the
    sign of estimate - null (``favour``: +1 if the claim says it is positive)."""
    p = test.p_holm if test.p_holm is not None else test.p
    if not p < alpha:
        return NOT_SHOWN
    return HOLDS if np.sign(test.estimate - test.null) == favour else FAILS


def adjusted(test: Test | None, p_holm: float | None) -> Test | None:
    if test is not None and p_holm is not None and not math.isnan(p_holm):
        test.p_holm = float(p_holm)
    return test


__all__ = ["Test", "split_name", "model_names", "seeds_of", "seed_pairs", "white_box", "pair_comparisons",
           "combine", "decide",
           "HOLDS", "FAILS", "NOT_SHOWN", "BLACK_BOX"]


# --- the verdict of a claim ---------------------------------------------------

STATEMENTS = {
    "1": "Channels-only (chans: random frozen spatial filters) reaches nearly the accuracy of the fully "
         "learned model.",
    "2": "Models that learn only spatial mixing (space) do far worse than chans.",
    "3": "Random, fixed spatial mixing (chans) makes a model more robust to adversarial perturbations "
         "than the fully learned one.",
    "3b": "Smoothing the random filters amplifies the robustness (robust accuracy rises with sigma).",
    "4": "Uncorrelated random filter banks cover the frequency plane better than correlated or fixed "
         "banks, and those controls reach lower accuracy than chans.",
    "5": "As width grows, the channels-only model converges to the fully learned one "
         "(the full - chans accuracy gap shrinks).",
    "6": "A channels-only model learns to undo a fixed pixel shuffle: it beats both baselines and "
         "comes close to the fully learned model.",
}



@dataclass
class Verdict:
    claim: str
    statement: str
    verdict: str                 # holds | does not hold | not shown
    evidence: str                # one or two sentences: the numbers that decided it
    numbers: dict = field(default_factory=dict)
    test: Test | None = None     # the deciding test, if any
    tested: bool = False         # whether ``test`` decides it (and so enters the Holm family)
    # The same verdict decided on a Holm-adjusted p (all_verdicts); None: the p does not change it.
    redo: Callable[[float], "Verdict"] | None = field(default=None, repr=False, compare=False)



def flagged(diagnostics: pd.DataFrame | None, models) -> dict[str, list[str]]:
    """Diagnostic flags raised on any of ``models``."""
    if diagnostics is None or diagnostics.empty or "flag" not in diagnostics.columns:
        return {}
    out: dict[str, list[str]] = {}
    for m, f in diagnostics[["model", "flag"]].dropna().itertuples(index=False):
        if str(m) in set(map(str, models)):
            out.setdefault(str(m), [])
            if str(f) not in out[str(m)]:
                out[str(m)].append(str(f))
    return out


def _missing(claim: str, what: str) -> Verdict:
    return Verdict(claim, STATEMENTS[claim], NOT_SHOWN,
                   f"No data: {what}; no test, so no minimum detectable difference either.", {})


def _tested(claim: str, test: Test, favour: int, text: str, nums: dict, alpha: float,
            why: dict | None = None) -> Verdict:
    """A verdict decided by ``test``; ``why``: {verdict: reason} appended to the evidence."""
    verdict = decide(test, favour, alpha)
    nums = nums | {"test": test.as_dict(), "alpha": alpha}
    reason = (why or {}).get(verdict, "")
    if verdict == NOT_SHOWN:
        reason = reason or "not significant"
        reason = f"{reason}; {test.mdd_text()}"
    return Verdict(claim, STATEMENTS[claim], verdict, f"{text}. {test}: {reason}.", nums, test, True,
                   lambda p: _tested(claim, replace(test, p_holm=p), favour, text, nums, alpha, why))


def _masked(claim: str, test: Test, flags: dict, text: str, nums: dict) -> Verdict:
    fl = "; ".join(f"{m}: {', '.join(f)}" for m, f in flags.items())
    return Verdict(claim, STATEMENTS[claim], NOT_SHOWN,
                   f"{text}. {test}. Not shown (possible gradient masking): diagnostic flags {fl}; "
                   f"{test.mdd_text()}.", nums | {"test": test.as_dict()}, test, False)
