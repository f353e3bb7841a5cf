"""Claims 1, 2, 3 and 3b: what the core zoo's models (full, chans, space, smooth) show."""
from __future__ import annotations

import pandas as pd

from ..stats import ALPHA, holm
from .claim_tests import (BLACK_BOX, FAILS, HOLDS, NOT_SHOWN, STATEMENTS, Verdict, _masked, _missing, _pct, _tested,
                          adjusted, combine, flagged, model_names, pair_comparisons, seed_pairs, seeds_of,
                          split_name, white_box)

# Claim 1: "nearly the accuracy" = full - chans clean accuracy below this (2 points), tested.
CLOSE_TOL = 0.02
# Claims 3: robustness compared at this Linf eps (8/255), worst case over white-box attacks.
ROBUST_EPS = 8 / 255


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
