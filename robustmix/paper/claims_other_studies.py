"""Claims 4, 5 and 6: the filter-bank controls and spectra, the width scale, pixel un-shuffling."""
from __future__ import annotations

import math

import pandas as pd
from scipy import stats as sps

from ..compare import example_table
from ..schema import WORST_CASE
from ..stats import ALPHA, POWER, holm, mdd_seeds, seed_summary
from .claim_tests import (FAILS, HOLDS, NOT_SHOWN, STATEMENTS, Test, Verdict, _missing, _pct, _tested, adjusted,
                          combine, decide, model_names, pair_comparisons, seed_pairs, split_name)

# Claim 6: chans must beat both baselines by this many dB and be within this many dB of full.
BASELINE_MARGIN_DB = 1.0
UNSHUFFLE_TOL_DB = 3.0


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
