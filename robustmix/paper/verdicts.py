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

The claims are defined in claims_core_zoo (1, 2, 3, 3b) and
claims_other_studies (4, 5, 6); the verdict and the deciding test in
claim_tests; this module gathers them into one Holm family.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..compare import compact
from ..stats import ALPHA, holm
from .claim_tests import FAILS, HOLDS, NOT_SHOWN, Test, Verdict, _missing, combine, decide, seed_pairs, split_name
from .claims_core_zoo import CLOSE_TOL, ROBUST_EPS, claim1, claim2, claim3, claim3b
from .claims_other_studies import claim4, claim5, claim6


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


__all__ = ["Verdict", "Test", "HOLDS", "FAILS", "NOT_SHOWN", "ALPHA", "CLOSE_TOL", "ROBUST_EPS", "claim1", "claim2", "claim3", "claim3b",
           "claim4", "claim5", "claim6", "all_verdicts", "verdict_table", "split_name", "seed_pairs", "combine",
           "decide"]
