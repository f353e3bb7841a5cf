"""Verdicts on the paper's claims, computed from the data (robustmix results).

Claims 1-5 take the per-example rows of a result store
(``results.load_examples(root, summary)``), its diagnostics table,
``analysis.spectrum_table`` output or ``unshuffle.train_unshuffle`` output,
and return a :class:`Verdict`. Every model of one evaluation is attacked on
the same example indices, so each comparison is paired
(``robustmix.stats``):

- one training seed per variant: the exact McNemar test on the discordant
  examples decides, reported with Newcombe's hybrid score interval
  (Newcombe 1998, method 10) for the difference;
- k >= 2 seeds of both variants (paired by seed number): the per-seed paired
  differences are replicates; a one-sample t test over seeds and its t
  interval decide, and the evidence says whether seed-to-seed or sampling
  variance dominates.

``all_verdicts`` treats the claims' deciding tests as one family and
adjusts their p-values with Holm's step-down correction at ALPHA = 0.05:

- ``holds``: adjusted p < alpha and the effect lies in the claimed direction;
- ``does not hold``: adjusted p < alpha against the claimed direction, or a
  contradiction named in the claim (black-box attacks, claim 3; a reversed
  sigma pair, claim 3b; a control above chans, claim 4);
- ``not shown``: adjusted p >= alpha (the evidence then gives the minimum
  detectable difference at the study's n and seeds, 80% power), the data are
  missing, or a diagnostic flag (possible gradient masking) makes the
  robustness numbers untrustworthy (such a claim's test stays out of the
  Holm family: no test decides it).

Models are identified by zoo name ``RECIPE/VARIANT_TAG-sSEED``
(``fashion-mnist-controls/correlated-rho0.9-s0``): ``recipe`` picks the zoo,
the variant tag picks the model. The documented tolerances are module
constants, each a keyword argument of the function that uses it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np
import pandas as pd
from scipy import stats as sps

from ..compare import compact, example_table
from ..schema import WORST_CASE
from ..stats import ALPHA, POWER, holm, mdd_seeds, seed_summary
from .claim_tests import (BLACK_BOX, FAILS, HOLDS, NOT_SHOWN, Test, _pct, adjusted, combine, decide,
                          model_names, pair_comparisons, seed_pairs, seeds_of, split_name, white_box)

# Claim 1: "nearly the accuracy" = full - chans clean accuracy below this (2 points), tested.
CLOSE_TOL = 0.02
# Claims 3: robustness compared at this Linf eps (8/255), worst case over white-box attacks.
ROBUST_EPS = 8 / 255
# Claim 6: chans must beat both baselines by this many dB and be within this many dB of full.
BASELINE_MARGIN_DB = 1.0
UNSHUFFLE_TOL_DB = 3.0

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


# --------------------------------------------------------------------------- helpers

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


# --------------------------------------------------------------------------- claims

def claim1(examples: pd.DataFrame, recipe: str | None = None, tol: float = CLOSE_TOL, threat_model: str = "Linf",
           alpha: float = ALPHA, p_holm: float | None = None) -> Verdict:
    """The full - chans clean-accuracy gap tested against ``tol``: significantly below it ->
    holds, significantly above it -> does not hold."""
    pairs = seed_pairs(examples, "full", "chans", recipe)
    test = combine(pair_comparisons(examples, pairs, threat_model, 0.0), "full - chans clean accuracy", tol, alpha)
    if test is None:
        return _missing("1", f"clean accuracy of full and chans in {recipe or 'any recipe'}")
    test = adjusted(test, p_holm)
    return _tested("1", test, -1, f"clean-accuracy gap tested against a tolerance of {_pct(tol)} points",
                   {"tolerance": tol}, alpha, {HOLDS: "significantly within tolerance",
                                                FAILS: "significantly beyond tolerance",
                                                NOT_SHOWN: "not significantly different from the tolerance"})


def claim2(examples: pd.DataFrame, recipe: str | None = None, threat_model: str = "Linf",
           alpha: float = ALPHA, p_holm: float | None = None) -> Verdict:
    """chans clean accuracy significantly above space."""
    pairs = seed_pairs(examples, "chans", "space", recipe)
    test = combine(pair_comparisons(examples, pairs, threat_model, 0.0), "chans - space clean accuracy",
                   alpha=alpha)
    if test is None:
        return _missing("2", f"clean accuracy of space and chans in {recipe or 'any recipe'}")
    return _tested("2", adjusted(test, p_holm), +1, "paired clean-accuracy comparison", {}, alpha,
                   {HOLDS: "space significantly below chans", FAILS: "space significantly above chans"})


def claim3(examples: pd.DataFrame, diagnostics: pd.DataFrame | None = None, recipe: str | None = None,
           eps: float = ROBUST_EPS, threat_model: str = "Linf", tag: str = "chans",
           alpha: float = ALPHA, p_holm: float | None = None) -> Verdict:
    """Robust accuracy of ``tag`` (chans) above full at ``eps``, per example the worst case over
    the white-box attacks, paired; a black-box attack under which full is significantly above
    (exact McNemar at the unadjusted alpha: a guard that errs towards "does not hold")
    contradicts it; any diagnostic flag on the chans/smooth models of the recipe -> not shown."""
    pairs = seed_pairs(examples, tag, "full", recipe)
    ex = examples[examples["model"].isin([m for p in pairs for m in p[1:]])] if pairs else examples
    white = white_box(ex, threat_model, eps) if pairs else []
    what = f"{tag} - full robust accuracy, {threat_model} eps {eps * 255:.3g}/255, worst case over white-box attacks"
    test = combine(pair_comparisons(ex, pairs, threat_model, eps, white), what, alpha=alpha) if white else None
    if test is None:
        return _missing("3", f"white-box {threat_model} rows at eps {eps:.4g} for {tag} and full "
                             f"in {recipe or 'any recipe'}")
    test = adjusted(test, p_holm)
    suspects = [m for m in model_names(examples)
                if split_name(m)[1].startswith(("chans", "smooth")) and (recipe is None or split_name(m)[0] == recipe)]
    flags = flagged(diagnostics, suspects)
    nums = {"eps": eps, "threat_model": threat_model, "attacks": white, "flags": flags}
    text = f"attacks {', '.join(sorted(white))}"
    if flags:
        return _masked("3", test, flags, text, nums)
    contra = []
    for att in BLACK_BOX:
        bb = combine(pair_comparisons(ex, seed_pairs(ex, "full", tag, recipe), threat_model, eps, [att]),
                     f"full - {tag} under {att}", alpha=alpha)
        if bb is not None and bb.p < alpha and bb.estimate > 0:
            contra.append(bb)
    nums["black_box_contradictions"] = [c.as_dict() for c in contra]
    if contra:
        c = "; ".join(str(b) for b in contra)
        return Verdict("3", STATEMENTS["3"], FAILS, f"{text}. {test}; contradicted by black-box attacks ({c}).",
                       nums | {"test": test.as_dict(), "alpha": alpha}, test, True)
    return _tested("3", test, +1, text, nums, alpha,
                   {HOLDS: f"{tag} significantly above full; no black-box attack contradicts it",
                    FAILS: f"full significantly above {tag}"})


def claim3b(examples: pd.DataFrame, diagnostics: pd.DataFrame | None = None, recipe: str | None = None,
            eps: float = ROBUST_EPS, threat_model: str = "Linf", alpha: float = ALPHA,
            p_holm: float | None = None, sigmas: dict | None = None) -> Verdict:
    """Robust accuracy of the smooth variant rises with its sigma: the largest sigma significantly
    above the smallest (paired, worst case over white-box attacks) and no pair of sigmas
    significantly reversed (Holm over the pairs at alpha); flags on any smooth model -> not shown.

    ``sigmas``: model name -> sigma, from the result store's models table (``smooth_sigmas``), never
    from the name. chans models are the sigma-0 point: smoothing by a Gaussian of width 0 leaves the
    random bank as it is, so a zoo need not train chans twice."""
    present = set(model_names(examples))  # once: it scans every example row
    sig = {}
    for m, s in (sigmas or {}).items():
        r, tag, _ = split_name(m)
        if m in present and (recipe is None or r == recipe):
            sig[tag] = float(s)
    if 0.0 in sig.values() and "chans" in sig and sum(v == 0.0 for v in sig.values()) > 1:
        del sig["chans"]  # the zoo trained a smooth sigma-0 model of its own
    tags = sorted(sig, key=sig.get)
    sig = {t: sig[t] for t in tags}  # in sigma order, as the evidence lists them
    if len(tags) < 2:
        return _missing("3b", f"white-box rows at eps {eps:.4g} for at least two smooth sigmas "
                              f"in {recipe or 'any recipe'}")
    white = white_box(examples[examples["model"].map(lambda m: split_name(m)[1] in sig)], threat_model, eps)

    def test_of(hi, lo):
        comps = pair_comparisons(examples, seed_pairs(examples, hi, lo, recipe), threat_model, eps, white)
        return combine(comps, f"sigma {sig[hi]:g} - sigma {sig[lo]:g} robust accuracy", alpha=alpha)

    test = test_of(tags[-1], tags[0])
    if test is None:
        return _missing("3b", f"white-box rows at eps {eps:.4g} for the smallest and largest smooth sigma")
    test = adjusted(test, p_holm)
    models = [m for t in tags for m in seeds_of(examples, t, recipe).values()]
    flags = flagged(diagnostics, models)
    nums = {"eps": eps, "threat_model": threat_model, "flags": flags, "sigmas": list(sig.values())}
    text = f"{threat_model} eps {eps * 255:.3g}/255, sigmas {', '.join(f'{s:g}' for s in sig.values())}"
    if flags:
        return _masked("3b", test, flags, text, nums)
    pair_tests = [t for i, lo in enumerate(tags) for hi in tags[i + 1:] if (t := test_of(hi, lo)) is not None]
    adj, _ = holm([t.p for t in pair_tests], alpha)
    reversed_ = [t for t, p in zip(pair_tests, adj) if p < alpha and t.estimate < 0]
    nums["reversed_pairs"] = [t.what for t in reversed_]
    if reversed_:
        r = "; ".join(str(t) for t in reversed_)
        return Verdict("3b", STATEMENTS["3b"], FAILS, f"{text}. {test}; robust accuracy falls with sigma ({r}).",
                       nums | {"test": test.as_dict(), "alpha": alpha}, test, True)
    return _tested("3b", test, +1, text, nums, alpha,
                   {HOLDS: "rises significantly, no pair reversed", FAILS: "falls significantly"})


def claim4(spectrum: pd.DataFrame | None, examples: pd.DataFrame | None, recipe: str | None = None,
           random: str = "random", controls: list[str] | None = None,
           acc_controls: list[str] | None = None, threat_model: str = "Linf",
           alpha: float = ALPHA, p_holm: float | None = None) -> Verdict:
    """(a) the ``random`` bank's envelope grows faster than every control bank's: its
    coverage averaged over bank sizes 1..C (the area under Figure 1's curve; coverage at
    C alone saturates at 1.0 for several banks) is higher (``controls``: default the
    random-filter controls, shared and correlated*; deterministic filters such as delta
    cover the plane by construction and are judged by their accuracy in (b)) -- a
    computation, no test; and (b) every control model's clean accuracy below chans
    (``acc_controls``: default the recipe's models other than full/chans/space/smooth*),
    paired per control: "all below" is an intersection-union test, so its p-value is the
    largest of the controls' p-values (Berger 1982); a control significantly above chans
    (Holm over the controls) contradicts it. Both parts hold -> holds; either
    contradicted -> does not hold; else not shown."""
    nums: dict = {}
    parts, verdicts = [], []
    if spectrum is not None and not spectrum.empty and random in set(spectrum["bank"]):
        mean_cov = spectrum.groupby("bank")["coverage"].mean()
        ctrl = controls or [b for b in mean_cov.index if str(b).startswith(("shared", "correlated"))]
        ctrl = [b for b in ctrl if b in mean_cov.index]
        cov = {b: float(mean_cov[b]) for b in [random, *ctrl]}
        nums["mean_coverage"] = cov
        nums["channels"] = int(spectrum.loc[spectrum["bank"] == random, "n_filters"].max())
        better = [b for b in ctrl if cov[b] > cov[random] + 1e-9]
        tied = [b for b in ctrl if abs(cov[b] - cov[random]) <= 1e-9]
        parts.append(f"spectral coverage averaged over 1..{nums['channels']} filters: "
                     + ", ".join(f"{b} {cov[b]:.3f}" for b in cov))
        if not ctrl:
            verdicts.append(NOT_SHOWN)
        elif better:
            verdicts.append(FAILS)
            parts.append(f"below {', '.join(better)}")
        elif tied:
            verdicts.append(NOT_SHOWN)
            parts.append(f"tied with {', '.join(tied)}")
        else:
            verdicts.append(HOLDS)
    else:
        verdicts.append(NOT_SHOWN)
        parts.append(f"no spectrum table with bank '{random}'")
    test = None
    tags = acc_controls or sorted({split_name(m)[1] for m in model_names(examples)
                                   if (recipe is None or split_name(m)[0] == recipe)
                                   and split_name(m)[1] not in ("full", "chans", "space")
                                   and not split_name(m)[1].startswith("smooth")})
    tests = {}
    for t in tags:
        comps = pair_comparisons(examples, seed_pairs(examples, "chans", t, recipe), threat_model, 0.0)
        if (c := combine(comps, f"chans - {t} clean accuracy", alpha=alpha)) is not None:
            tests[t] = c
    if tests:
        nums["controls"] = {t: c.as_dict() for t, c in tests.items()}
        adj, _ = holm([c.p for c in tests.values()], alpha)
        above = [t for (t, c), p in zip(tests.items(), adj) if p < alpha and c.estimate < 0]
        # The control that limits "all below": the one with the largest p, or one not below at all.
        weakest = (max(tests, key=lambda t: tests[t].p) if all(c.estimate > 0 for c in tests.values())
                   else min(tests, key=lambda t: tests[t].estimate))
        w = tests[weakest]
        test = adjusted(Test(f"chans - every control clean accuracy (intersection-union; weakest: {weakest})",
                              w.method, w.estimate, w.ci_low, w.ci_high, max(c.p for c in tests.values()),
                              w.n, w.seeds, w.mdd, dominant=w.dominant, per_seed=w.per_seed), p_holm)
        parts.append("; ".join(str(c) for c in tests.values()))
        if above:
            verdicts.append(FAILS)
            parts.append("significantly above chans: " + ", ".join(above))
        else:
            v = decide(test, +1, alpha)
            verdicts.append(v if v == HOLDS else NOT_SHOWN)
            if v != HOLDS:
                parts.append(f"not every control significantly below chans; {test.mdd_text()}")
    else:
        verdicts.append(NOT_SHOWN)
        parts.append(f"no clean accuracy of chans and a control in {recipe or 'any recipe'}")
    verdict = FAILS if FAILS in verdicts else HOLDS if all(v == HOLDS for v in verdicts) else NOT_SHOWN
    nums["parts"] = {"spectrum": verdicts[0], "accuracy": verdicts[1]}
    if verdict == NOT_SHOWN and test is not None and verdicts[1] == HOLDS:  # the spectrum part held it back
        parts.append(f"accuracy part: {test.mdd_text()}")
    if test is not None:
        nums["test"] = test.as_dict()
    return Verdict("4", STATEMENTS["4"], verdict, "; ".join(parts) + ".", nums, test, test is not None,
                   lambda p: claim4(spectrum, examples, recipe, random, controls, acc_controls, threat_model,
                                    alpha, p))


def claim5(examples: pd.DataFrame, widths: dict[int, str] | None = None,
           prefix: str = "fashion-mnist-width-w", threat_model: str = "Linf",
           alpha: float = ALPHA, p_holm: float | None = None) -> Verdict:
    """The full - chans clean-accuracy gap shrinks from the smallest to the largest width.
    ``widths``: width -> recipe name; default: recipes named ``prefix<width>``. Per example
    (the four models share the example indices) the change in the gap is
    (full_s - chans_s) - (full_l - chans_l); one seed: a paired z test of its mean, normal
    interval; k >= 2 common seeds: the per-seed means are replicates (t over seeds)."""
    if widths is None:
        widths = {}
        for m in model_names(examples):
            rec = split_name(m)[0]
            if rec.startswith(prefix) and rec[len(prefix):].isdigit():
                widths[int(rec[len(prefix):])] = rec
    have = [w for w in sorted(widths) if seed_pairs(examples, "full", "chans", widths[w])]
    if len(have) < 2:
        return _missing("5", f"full and chans at two or more widths (recipes {prefix}<width>)")
    small, large = have[0], have[-1]
    ps, pl = seed_pairs(examples, "full", "chans", widths[small]), seed_pairs(examples, "full", "chans", widths[large])
    by_seed = {s: (a, b) for s, a, b in ps}
    quads = [(by_seed[s], (a, b)) for s, a, b in pl if s in by_seed]
    if not quads:
        return _missing("5", f"full and chans of one seed at widths {small} and {large}")
    means, variances, n = [], [], 0
    for (fs, cs), (fl, cl) in quads:
        t = example_table(examples, threat_model, 0.0, WORST_CASE, [fs, cs, fl, cl])
        v = (t[fs].astype(int) - t[cs].astype(int)) - (t[fl].astype(int) - t[cl].astype(int))
        n = len(v)
        if n:
            means.append(float(v.mean()))
            variances.append(float(v.var(ddof=1)) / n if n > 1 else math.nan)
    if not means:
        return _missing("5", f"shared examples of full and chans at widths {small} and {large}")
    what = f"shrink of the full - chans clean-accuracy gap from width {small} to {large}"
    per_seed = [{"shrink": m, "variance": v} for m, v in zip(means, variances)]
    if len(means) >= 2:
        sm = seed_summary(means, variances, alpha)
        test = Test(what, f"t test over {sm['k']} seeds", sm["mean"], sm["ci_low"], sm["ci_high"], sm["p"], n,
                    sm["k"], mdd_seeds(sm["k"], sm["sd"], alpha), dominant=sm["dominant"], per_seed=per_seed)
    else:
        se = math.sqrt(variances[0]) if variances[0] > 0 else 0.0
        z = sps.norm.ppf(1 - alpha / 2)
        p = float(2 * sps.norm.sf(abs(means[0]) / se)) if se > 0 else float(means[0] == 0)
        test = Test(what, "paired z test over examples, normal interval", means[0], means[0] - z * se,
                    means[0] + z * se, p, n, 1, (z + sps.norm.ppf(POWER)) * se, per_seed=per_seed)
    test = adjusted(test, p_holm)
    gaps = {w: combine(pair_comparisons(examples, seed_pairs(examples, "full", "chans", widths[w]), threat_model,
                                        0.0), f"full - chans clean accuracy at width {w}", alpha=alpha) for w in have}
    text = "full - chans clean-accuracy gap by width: " + ", ".join(
        f"{w}: {_pct(g.estimate)} [{_pct(g.ci_low)}, {_pct(g.ci_high)}] points" for w, g in gaps.items())
    return _tested("5", test, +1, text, {"widths": have, "gaps": {w: g.as_dict() for w, g in gaps.items()}},
                   alpha, {HOLDS: "the gap shrinks", FAILS: "the gap grows"})


def claim6(results: pd.DataFrame | None, margin_db: float = BASELINE_MARGIN_DB,
           tol_db: float = UNSHUFFLE_TOL_DB) -> Verdict:
    """Un-shuffle PSNR (mean over seeds): chans above both baselines (shuffled image itself,
    mean training image) by ``margin_db`` and at most ``tol_db`` below full. No CIs are stored
    for PSNR, so the margins play their role: chans at or below a baseline, or more than
    ``tol_db`` below full -> does not hold; above a baseline by less than the margin -> not shown."""
    if results is None or results.empty:
        return _missing("6", "un-shuffle results")
    by = results.groupby("variant")[["test_psnr", "identity_psnr", "mean_psnr"]].mean()
    if "chans" not in by.index or "full" not in by.index:
        return _missing("6", "un-shuffle PSNR of full and chans")
    chans, full = float(by.loc["chans", "test_psnr"]), float(by.loc["full", "test_psnr"])
    base = max(float(by["identity_psnr"].max()), float(by["mean_psnr"].max()))
    nums = {"chans_psnr": chans, "full_psnr": full, "identity_psnr": float(by["identity_psnr"].max()),
            "mean_psnr": float(by["mean_psnr"].max()), "margin_db": margin_db, "tol_db": tol_db,
            "seeds": int(results.groupby("variant").size().max())}
    if "space" in by.index:
        nums["space_psnr"] = float(by.loc["space", "test_psnr"])
    text = (f"test PSNR chans {chans:.2f} dB, full {full:.2f} dB; baselines identity "
            f"{nums['identity_psnr']:.2f} dB, mean image {nums['mean_psnr']:.2f} dB "
            f"(margin {margin_db:g} dB, tolerance to full {tol_db:g} dB)")
    if chans <= base or full - chans > tol_db:
        why = "not above a baseline" if chans <= base else f"{full - chans:.2f} dB below full"
        return Verdict("6", STATEMENTS["6"], FAILS, f"{text}: chans {why}.", nums)
    if chans < base + margin_db:
        return Verdict("6", STATEMENTS["6"], NOT_SHOWN, f"{text}: above the baselines by less than "
                                                          "the margin; PSNR is stored without a sampling "
                                                          "interval, so no minimum detectable difference.", nums)
    return Verdict("6", STATEMENTS["6"], HOLDS, f"{text}: beats both baselines, {full - chans:.2f} dB "
                                                  "from full.", nums)


def smooth_sigmas(models: pd.DataFrame | None) -> dict[str, float]:
    """Model name -> sigma of its random bank's smoothing, from a store's models table: the
    ``sigma`` column of smooth models, 0 for chans (the unsmoothed random bank)."""
    if models is None or models.empty or "variant" not in models.columns:
        return {}
    out = {str(m): 0.0 for m in models.loc[models["variant"] == "chans", "model"]}
    if "sigma" in models.columns:
        smooth = models[(models["variant"] == "smooth") & models["sigma"].notna()]
        out.update({str(m): float(s) for m, s in smooth[["model", "sigma"]].itertuples(index=False)})
    return out


def all_verdicts(examples: pd.DataFrame | None, diagnostics: pd.DataFrame | None = None,
                 spectrum: pd.DataFrame | None = None, unshuffle: pd.DataFrame | None = None, *,
                 models: pd.DataFrame | None = None,
                 core: str = "fashion-mnist-core", controls: str = "fashion-mnist-controls",
                 width_prefix: str = "fashion-mnist-width-w", eps: float = ROBUST_EPS,
                 alpha: float = ALPHA) -> list[Verdict]:
    """Every claim's verdict, in claim order (the reproduce pipeline's zoo names by default).

    ``examples``: per-example rows (``results.load_examples``). The deciding tests of the
    claims that a test decides form one family: their p-values are Holm-adjusted at
    ``alpha`` and each claim is decided again on its adjusted p."""
    if examples is None or examples.empty:
        out = [_missing(c, "no evaluation results") for c in ("1", "2", "3", "3b")]
        return out + [claim4(spectrum, None, alpha=alpha), _missing("5", "no evaluation results"), claim6(unshuffle)]
    examples = compact(examples)
    first = [claim1(examples, core, alpha=alpha), claim2(examples, core, alpha=alpha),
             claim3(examples, diagnostics, core, eps, alpha=alpha),
             claim3b(examples, diagnostics, core, eps, alpha=alpha, sigmas=smooth_sigmas(models)),
             claim4(spectrum, examples, controls, alpha=alpha), claim5(examples, prefix=width_prefix, alpha=alpha)]
    adj, _ = holm([v.test.p if v.tested and v.test is not None else np.nan for v in first], alpha)
    out = []
    for v, p in zip(first, adj):
        if np.isnan(p):
            out.append(v)
        elif v.redo is not None:
            out.append(v.redo(float(p)))
        else:  # a contradiction decided it; the adjusted p is shown all the same
            v.test.p_holm = float(p)
            v.numbers["test"] = v.test.as_dict()
            out.append(v)
    return out + [claim6(unshuffle)]


def verdict_table(verdicts: list[Verdict]) -> pd.DataFrame:
    return pd.DataFrame([{"claim": v.claim, "verdict": v.verdict, "evidence": v.evidence} for v in verdicts])


__all__ = ["Verdict", "Test", "HOLDS", "FAILS", "NOT_SHOWN", "ALPHA", "claim1", "claim2", "claim3", "claim3b",
           "claim4", "claim5", "claim6", "all_verdicts", "verdict_table", "split_name", "seed_pairs", "combine",
           "decide"]
