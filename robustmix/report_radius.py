"""The robustness-radius section of the HTML report (robustmix.report).

Shown when a store holds a minimum-norm attack (fab, fmn, ddn): the median radius
per model, threat model and attack with its 95% order-statistic interval, and every
attack's AttackBench optimality against the per-example best over all attacks in the
store (robustmix.radius).
"""
from __future__ import annotations

import html
import math

import pandas as pd

from .page import table
from .radius import BEST, example_radii, has_min_norm, median_table, optimality_table


def _num(x) -> str:
    if x is None or pd.isna(x):
        return "—"
    return "∞" if math.isinf(x) else f"{x:.4g}"


def radius_html(examples: pd.DataFrame) -> str:
    esc = html.escape
    out = ['<h2 id="radius">Robustness radius</h2>']
    radii = example_radii(examples)
    if not has_min_norm(radii):
        out.append('<p>No minimum-norm attack (<code>fab</code>, <code>fmn</code>, <code>ddn</code>) in this '
                   "store, so no per-example radius; add one to the spec's [[attacks]] to get this section.</p>")
        return "\n".join(out)
    out.append('<p class="note">Radius: per example, the norm of the closest adversarial example an attack '
               "found (0 for examples misclassified clean, ∞ where none was found). A minimum-norm attack "
               "measures it; a fixed-eps attack bounds it by the first eps of its grid that broke the example. "
               f"<em>{esc(BEST)}</em>: the smallest radius over every attack in the store. Median with a "
               "distribution-free 95% interval (order statistics of the binomial; — below 6 examples).</p>")
    med = median_table(radii)
    out.append(table(("model", "threat model", "attack", "n", "median radius", "95% CI", "never broken"),
                     ([esc(str(r.model)), esc(str(r.threat_model)), esc(str(r.attack)), r.n, _num(r.median),
                       f"[{_num(r.ci_low)}, {_num(r.ci_high)}]", r.unbroken] for r in med.itertuples(index=False)),
                     numeric=(3, 4, 5, 6)))

    out.append('<h3>Attack optimality</h3><p class="note">AttackBench\'s local optimality (Cinà et al. 2024): '
               "1 - (A<sub>attack</sub> - A<sub>best</sub>) / (A<sub>max</sub> - A<sub>best</sub>), with A the "
               "area under a robustness curve up to the largest finite per-example-best radius and A<sub>max"
               "</sub> that of the clean accuracy. 1: as good as the best attack on every example; 0: breaks "
               "nothing. The mean over models is AttackBench's global optimality.</p>")
    opt = optimality_table(radii)
    out.append(table(("model", "threat model", "attack", "kind", "n", "optimality"),
                     ([esc(str(r.model)), esc(str(r.threat_model)), esc(str(r.attack)), esc(str(r.kind)),
                       "" if pd.isna(r.n) else int(r.n),
                       "—" if pd.isna(r.optimality) else f"{100 * r.optimality:.1f}%"]
                      for r in opt.itertuples(index=False)),
                     numeric=(4, 5)))
    return "\n".join(out)
