"""Verdicts on the paper's claims, computed from the data (robustmix results).

Every function takes measured tables -- a result store's summary (as
``results.load_results(...).summary``: SUMMARY_COLUMNS plus worst-case rows),
its diagnostics table, ``analysis.spectrum_table`` output, or
``unshuffle.train_unshuffle`` output -- and returns a :class:`Verdict`:

- ``holds``: the data support the claim, with the difference outside the 95%
  confidence intervals where the rule is a comparison;
- ``does not hold``: the data contradict it (again CI-separated);
- ``not shown``: the intervals overlap, the data are missing, or a
  diagnostic flag (possible gradient masking) makes the robustness numbers
  untrustworthy.

Models are identified by zoo name ``RECIPE/VARIANT_TAG-sSEED``
(``fashion-mnist-controls/correlated-rho0.9-s0``): ``recipe`` picks the zoo,
the variant tag picks the model; seeds of one (recipe, tag) are pooled
(examples summed, Wilson interval recomputed). The documented tolerances are
module constants, each a keyword argument of the function that uses it.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import pandas as pd

from ..diagnostics import BLACK_BOX
from ..eps import EPS_TOL
from ..results import Z95, wilson_interval
from ..schema import WORST_CASE

HOLDS, FAILS, NOT_SHOWN = "holds", "does not hold", "not shown"

# Claim 1: "nearly the accuracy" = full - chans clean accuracy at most this (2 points).
CLOSE_TOL = 0.02
# Claims 3: robustness compared at this Linf eps (8/255), worst white-box attack.
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


@dataclass
class Acc:
    """A pooled accuracy with its 95% Wilson interval."""
    acc: float
    lo: float
    hi: float
    n: int
    models: list

    def __str__(self):
        return f"{100 * self.acc:.1f}% [{100 * self.lo:.1f}, {100 * self.hi:.1f}] (n={self.n})"

    def as_dict(self):
        return {"acc": self.acc, "ci_low": self.lo, "ci_high": self.hi, "n": self.n}


# --------------------------------------------------------------------------- helpers

def split_name(name: str) -> tuple[str, str, int | None]:
    """``"rec/smooth-sigma2-s0"`` -> ("rec", "smooth-sigma2", 0); names without a seed keep the tag."""
    recipe, _, rest = str(name).rpartition("/")
    m = re.fullmatch(r"(.+)-s(\d+)", rest)
    return (recipe, m.group(1), int(m.group(2))) if m else (recipe, rest, None)


def above(a: Acc, b: Acc) -> bool:
    """a is CI-separated above b."""
    return a.lo > b.hi


def _rows(summary: pd.DataFrame, recipe: str | None, tag: str) -> pd.DataFrame:
    parts = summary["model"].map(split_name)
    keep = parts.map(lambda p: p[1] == tag and (recipe is None or p[0] == recipe))
    return summary[keep.to_numpy(dtype=bool)]


def _pool(rows: pd.DataFrame) -> Acc | None:
    rows = rows.dropna(subset=["n", "n_robust"])
    if rows.empty:
        return None
    k, n = float(rows["n_robust"].sum()), float(rows["n"].sum())
    if n <= 0:
        return None
    lo, hi = wilson_interval(k, n)
    return Acc(k / n, float(lo), float(hi), int(n), sorted(rows["model"].unique()))


def clean_acc(summary: pd.DataFrame, tag: str, recipe: str | None = None,
              threat_model: str = "Linf") -> Acc | None:
    """Clean accuracy of (recipe, tag) from eps-0 rows of one attack (pooled over seeds)."""
    rows = _rows(summary, recipe, tag)
    rows = rows[(rows["threat_model"] == threat_model) & (rows["eps"].abs() < EPS_TOL)]
    if rows.empty:
        return None
    # One attack's eps-0 rows (all attacks agree at eps 0); prefer the one with the most examples.
    att = rows.groupby("attack")["n"].sum().sort_values(ascending=False).index[0]
    return _pool(rows[rows["attack"] == att])


def robust_acc(summary: pd.DataFrame, tag: str, recipe: str | None = None, eps: float = ROBUST_EPS,
               threat_model: str = "Linf", attacks=None, exclude=BLACK_BOX) -> tuple[Acc | None, str | None]:
    """Lowest robust accuracy at ``eps`` over the given attacks (default: white-box ones).

    Among attacks run on the most examples (FGSM/PGD on the full n rather than
    AutoAttack's smaller subset), so the interval is the tightest available.
    Returns (accuracy, attack label).
    """
    rows = _rows(summary, recipe, tag)
    rows = rows[(rows["threat_model"] == threat_model) & ((rows["eps"] - eps).abs() < EPS_TOL)
                & (rows["attack"] != WORST_CASE)]
    if attacks is not None:
        rows = rows[rows["attack"].isin(list(attacks))]
    if exclude:
        rows = rows[~rows["attack"].isin(list(exclude))]
    if rows.empty:
        return None, None
    pooled = {a: _pool(r) for a, r in rows.groupby("attack")}
    pooled = {a: p for a, p in pooled.items() if p is not None}
    if not pooled:
        return None, None
    n_max = max(p.n for p in pooled.values())
    att = min((a for a, p in pooled.items() if p.n == n_max), key=lambda a: pooled[a].acc)
    return pooled[att], att


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
    return Verdict(claim, STATEMENTS[claim], NOT_SHOWN, f"No data: {what}.", {})


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


# --------------------------------------------------------------------------- claims

def claim1(summary: pd.DataFrame, recipe: str | None = None, tol: float = CLOSE_TOL) -> Verdict:
    """chans clean accuracy within ``tol`` of full (point estimates); a larger gap counts
    against the claim only if the two intervals are separated, else "not shown"."""
    full, chans = clean_acc(summary, "full", recipe), clean_acc(summary, "chans", recipe)
    if full is None or chans is None:
        return _missing("1", f"clean accuracy of full and chans in {recipe or 'any recipe'}")
    gap = full.acc - chans.acc
    nums = {"full": full.as_dict(), "chans": chans.as_dict(), "gap": gap, "tolerance": tol}
    text = f"clean accuracy full {full}, chans {chans}; gap {_pct(gap)} points (tolerance {_pct(tol)})"
    if gap <= tol:
        return Verdict("1", STATEMENTS["1"], HOLDS, f"{text}: within tolerance.", nums)
    if above(full, chans):
        return Verdict("1", STATEMENTS["1"], FAILS, f"{text}: beyond tolerance, CIs separated.", nums)
    return Verdict("1", STATEMENTS["1"], NOT_SHOWN, f"{text}: beyond tolerance but CIs overlap.", nums)


def claim2(summary: pd.DataFrame, recipe: str | None = None) -> Verdict:
    """space clean accuracy CI-separated below chans."""
    space, chans = clean_acc(summary, "space", recipe), clean_acc(summary, "chans", recipe)
    if space is None or chans is None:
        return _missing("2", f"clean accuracy of space and chans in {recipe or 'any recipe'}")
    nums = {"space": space.as_dict(), "chans": chans.as_dict(), "gap": chans.acc - space.acc}
    text = f"clean accuracy chans {chans}, space {space}"
    if above(chans, space):
        return Verdict("2", STATEMENTS["2"], HOLDS, f"{text}: space below chans, CIs separated.", nums)
    if above(space, chans):
        return Verdict("2", STATEMENTS["2"], FAILS, f"{text}: space above chans, CIs separated.", nums)
    return Verdict("2", STATEMENTS["2"], NOT_SHOWN, f"{text}: CIs overlap.", nums)


def _black_box_contradiction(summary, robust_tag, ref_tag, recipe, eps, threat_model):
    """Black-box attacks under which ref is CI-separated above robust_tag: [(attack, robust, ref)]."""
    out = []
    for att in BLACK_BOX:
        r, _ = robust_acc(summary, robust_tag, recipe, eps, threat_model, attacks=[att], exclude=())
        f, _ = robust_acc(summary, ref_tag, recipe, eps, threat_model, attacks=[att], exclude=())
        if r is not None and f is not None and above(f, r):
            out.append((att, r, f))
    return out


def claim3(summary: pd.DataFrame, diagnostics: pd.DataFrame | None = None, recipe: str | None = None,
           eps: float = ROBUST_EPS, threat_model: str = "Linf", tag: str = "chans") -> Verdict:
    """Robust accuracy of ``tag`` (chans) CI-separated above full at ``eps`` under the worst
    white-box attack, and not contradicted by Square/transfer; any diagnostic flag on the
    chans/smooth models of the recipe -> not shown (possible gradient masking)."""
    rob, att_r = robust_acc(summary, tag, recipe, eps, threat_model)
    full, att_f = robust_acc(summary, "full", recipe, eps, threat_model)
    if rob is None or full is None:
        return _missing("3", f"white-box {threat_model} rows at eps {eps:.4g} for {tag} and full "
                             f"in {recipe or 'any recipe'}")
    suspects = [m for m in summary["model"].unique()
                if split_name(m)[1].startswith(("chans", "smooth")) and (recipe is None or split_name(m)[0] == recipe)]
    flags = flagged(diagnostics, suspects)
    nums = {tag: rob.as_dict() | {"attack": att_r}, "full": full.as_dict() | {"attack": att_f},
            "eps": eps, "threat_model": threat_model, "flags": flags}
    text = (f"{threat_model} eps {eps * 255:.3g}/255, worst white-box attack: {tag} {rob} ({att_r}), "
            f"full {full} ({att_f})")
    if flags:
        fl = "; ".join(f"{m}: {', '.join(f)}" for m, f in flags.items())
        return Verdict("3", STATEMENTS["3"], NOT_SHOWN, f"{text}. Not shown (possible gradient masking): "
                                                          f"diagnostic flags {fl}.", nums)
    contra = _black_box_contradiction(summary, tag, "full", recipe, eps, threat_model)
    nums["black_box_contradictions"] = [{"attack": a, tag: r.as_dict(), "full": f.as_dict()} for a, r, f in contra]
    if contra:
        c = "; ".join(f"{a}: {tag} {r} < full {f}" for a, r, f in contra)
        return Verdict("3", STATEMENTS["3"], FAILS, f"{text}; contradicted by black-box attacks ({c}).", nums)
    if above(rob, full):
        return Verdict("3", STATEMENTS["3"], HOLDS, f"{text}: {tag} above full, CIs separated; "
                                                      "no black-box attack contradicts it.", nums)
    if above(full, rob):
        return Verdict("3", STATEMENTS["3"], FAILS, f"{text}: full above {tag}, CIs separated.", nums)
    return Verdict("3", STATEMENTS["3"], NOT_SHOWN, f"{text}: CIs overlap.", nums)


def claim3b(summary: pd.DataFrame, diagnostics: pd.DataFrame | None = None, recipe: str | None = None,
            eps: float = ROBUST_EPS, threat_model: str = "Linf") -> Verdict:
    """Robust accuracy of the smooth variant rises with its sigma (the summary's sigma column): the
    largest sigma CI-separated above the smallest and no pair reversed (CI-separated); flags on
    any smooth model -> not shown."""
    smooth = summary[(summary["variant"] == "smooth") & summary["sigma"].notna()]
    sigmas = {split_name(m)[1]: float(s) for m, s in smooth[["model", "sigma"]].itertuples(index=False)
              if recipe is None or split_name(m)[0] == recipe}
    accs = [(sigmas[t], *robust_acc(summary, t, recipe, eps, threat_model)) for t in sorted(sigmas, key=sigmas.get)]
    accs = [(s, a, att) for s, a, att in accs if a is not None]
    if len(accs) < 2:
        return _missing("3b", f"white-box rows at eps {eps:.4g} for at least two smooth sigmas "
                              f"in {recipe or 'any recipe'}")
    models = [m for _, a, _ in accs for m in a.models]
    flags = flagged(diagnostics, models)
    nums = {"eps": eps, "threat_model": threat_model, "flags": flags,
            "by_sigma": {s: a.as_dict() | {"attack": att} for s, a, att in accs}}
    text = f"{threat_model} eps {eps * 255:.3g}/255, worst white-box attack: " + ", ".join(
        f"sigma {s:g} {a}" for s, a, _ in accs)
    if flags:
        fl = "; ".join(f"{m}: {', '.join(f)}" for m, f in flags.items())
        return Verdict("3b", STATEMENTS["3b"], NOT_SHOWN, f"{text}. Not shown (possible gradient masking): "
                                                            f"diagnostic flags {fl}.", nums)
    reversed_ = [(s1, s2) for i, (s1, a1, _) in enumerate(accs) for s2, a2, _ in accs[i + 1:] if above(a1, a2)]
    nums["reversed_pairs"] = reversed_
    lo, hi = accs[0][1], accs[-1][1]
    if reversed_:
        r = ", ".join(f"sigma {a:g} > sigma {b:g}" for a, b in reversed_)
        return Verdict("3b", STATEMENTS["3b"], FAILS, f"{text}: robust accuracy falls with sigma ({r}).", nums)
    if above(hi, lo):
        return Verdict("3b", STATEMENTS["3b"], HOLDS, f"{text}: rises from sigma {accs[0][0]:g} to "
                                                        f"{accs[-1][0]:g}, CIs separated, no reversal.", nums)
    return Verdict("3b", STATEMENTS["3b"], NOT_SHOWN, f"{text}: CIs overlap.", nums)


def claim4(spectrum: pd.DataFrame | None, summary: pd.DataFrame | None, recipe: str | None = None,
           random: str = "random", controls: list[str] | None = None,
           acc_controls: list[str] | None = None) -> Verdict:
    """(a) the ``random`` bank's envelope grows faster than every control bank's: its
    coverage averaged over bank sizes 1..C (the area under Figure 1's curve; coverage at
    C alone saturates at 1.0 for several banks) is higher (``controls``: default the
    random-filter controls, shared and correlated*; deterministic filters such as delta
    cover the plane by construction and are judged by their accuracy in (b)), and
    (b) every control model's clean accuracy CI-separated below chans (``acc_controls``:
    default the recipe's models other than full/chans/space/smooth*).
    Both hold -> holds; either contradicted -> does not hold; else not shown."""
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
    chans = clean_acc(summary, "chans", recipe) if summary is not None else None
    if chans is not None:
        tags = acc_controls or sorted({split_name(m)[1] for m in summary["model"].unique()
                                       if (recipe is None or split_name(m)[0] == recipe)
                                       and split_name(m)[1] not in ("full", "chans", "space")
                                       and not split_name(m)[1].startswith("smooth")})
        accs = {t: clean_acc(summary, t, recipe) for t in tags}
        accs = {t: a for t, a in accs.items() if a is not None}
        nums["clean_acc"] = {"chans": chans.as_dict(), **{t: a.as_dict() for t, a in accs.items()}}
        parts.append(f"clean accuracy chans {chans}; " + ", ".join(f"{t} {a}" for t, a in accs.items()))
        if not accs:
            verdicts.append(NOT_SHOWN)
        elif any(above(a, chans) for a in accs.values()):
            verdicts.append(FAILS)
            parts.append("above chans (CI-separated): "
                         + ", ".join(t for t, a in accs.items() if above(a, chans)))
        elif all(above(chans, a) for a in accs.values()):
            verdicts.append(HOLDS)
        else:
            verdicts.append(NOT_SHOWN)
            parts.append("CIs overlap chans: " + ", ".join(t for t, a in accs.items() if not above(chans, a)))
    else:
        verdicts.append(NOT_SHOWN)
        parts.append(f"no clean accuracy of chans in {recipe or 'any recipe'}")
    verdict = FAILS if FAILS in verdicts else HOLDS if all(v == HOLDS for v in verdicts) else NOT_SHOWN
    nums["parts"] = {"spectrum": verdicts[0], "accuracy": verdicts[1]}
    return Verdict("4", STATEMENTS["4"], verdict, "; ".join(parts) + ".", nums)


def _gap(full: Acc, chans: Acc) -> tuple[float, float]:
    """full - chans and its standard error (normal approximation)."""
    se = math.sqrt(full.acc * (1 - full.acc) / full.n + chans.acc * (1 - chans.acc) / chans.n)
    return full.acc - chans.acc, se


def claim5(summary: pd.DataFrame, widths: dict[int, str] | None = None,
           prefix: str = "fashion-mnist-width-w") -> Verdict:
    """The full - chans clean-accuracy gap at the largest width below the gap at the smallest,
    the difference of the two gaps outside its 95% interval. ``widths``: width -> recipe name;
    default: recipes named ``prefix<width>``."""
    if widths is None:
        widths = {}
        for m in summary["model"].unique():
            rec = split_name(m)[0]
            if rec.startswith(prefix) and rec[len(prefix):].isdigit():
                widths[int(rec[len(prefix):])] = rec
    gaps = {}
    for w in sorted(widths):
        f, c = clean_acc(summary, "full", widths[w]), clean_acc(summary, "chans", widths[w])
        if f is not None and c is not None:
            gaps[w] = (*_gap(f, c), f, c)
    if len(gaps) < 2:
        return _missing("5", f"full and chans at two or more widths (recipes {prefix}<width>)")
    ws = sorted(gaps)
    (g0, s0, *_), (g1, s1, *_) = gaps[ws[0]], gaps[ws[-1]]
    d, sd = g0 - g1, math.sqrt(s0 ** 2 + s1 ** 2)
    nums = {"gaps": {w: {"gap": g, "ci_low": g - Z95 * s, "ci_high": g + Z95 * s,
                         "full": f.as_dict(), "chans": c.as_dict()} for w, (g, s, f, c) in gaps.items()},
            "shrink": d, "shrink_ci": [d - Z95 * sd, d + Z95 * sd]}
    text = "full - chans clean-accuracy gap by width: " + ", ".join(
        f"{w}: {_pct(g)} [{_pct(g - Z95 * s)}, {_pct(g + Z95 * s)}] points" for w, (g, s, *_) in gaps.items())
    text += f"; shrink from {ws[0]} to {ws[-1]}: {_pct(d)} [{_pct(d - Z95 * sd)}, {_pct(d + Z95 * sd)}] points"
    if d - Z95 * sd > 0:
        return Verdict("5", STATEMENTS["5"], HOLDS, f"{text}: the gap shrinks (CI above 0).", nums)
    if d + Z95 * sd < 0:
        return Verdict("5", STATEMENTS["5"], FAILS, f"{text}: the gap grows (CI below 0).", nums)
    return Verdict("5", STATEMENTS["5"], NOT_SHOWN, f"{text}: the CI of the change contains 0.", nums)


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
                                                          "the margin.", nums)
    return Verdict("6", STATEMENTS["6"], HOLDS, f"{text}: beats both baselines, {full - chans:.2f} dB "
                                                  "from full.", nums)


def all_verdicts(summary: pd.DataFrame | None, diagnostics: pd.DataFrame | None = None,
                 spectrum: pd.DataFrame | None = None, unshuffle: pd.DataFrame | None = None, *,
                 controls: str = "fashion-mnist-controls", smoothing: str = "fashion-mnist-smoothing",
                 width_prefix: str = "fashion-mnist-width-w", eps: float = ROBUST_EPS) -> list[Verdict]:
    """Every claim's verdict, in claim order (the reproduce pipeline's zoo names by default)."""
    if summary is None or summary.empty:
        out = [_missing(c, "no evaluation results") for c in ("1", "2", "3", "3b")]
        return out + [claim4(spectrum, None), _missing("5", "no evaluation results"), claim6(unshuffle)]
    return [claim1(summary, controls), claim2(summary, controls),
            claim3(summary, diagnostics, controls, eps), claim3b(summary, diagnostics, smoothing, eps),
            claim4(spectrum, summary, controls), claim5(summary, prefix=width_prefix), claim6(unshuffle)]


def verdict_table(verdicts: list[Verdict]) -> pd.DataFrame:
    return pd.DataFrame([{"claim": v.claim, "verdict": v.verdict, "evidence": v.evidence} for v in verdicts])


__all__ = ["Verdict", "HOLDS", "FAILS", "NOT_SHOWN", "claim1", "claim2", "claim3", "claim3b", "claim4",
           "claim5", "claim6", "all_verdicts", "verdict_table", "split_name", "clean_acc", "robust_acc",
           ]
