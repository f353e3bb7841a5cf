"""The common-corruptions section of the HTML report (robustmix.report).

Corruption rows (threat model "corruptions") are not eps-balls: the report
takes them out of the robustness curves, worst case and paired tests
(``split_corruptions``) and shows them here: a summary per model (clean and
mean corruption accuracy with a bootstrap interval, mCE against a baseline
model), a table per model of accuracy per type x severity, and one figure.
Definitions and intervals: robustmix.corruption_tables.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

import pandas as pd
from matplotlib.figure import Figure

from .compare import load_examples
from .corruption_tables import accuracy_table, corruption_rows, corruption_summary
from .figures import _save, model_styles
from .page import esc
from .results import Results
from .schema import CORRUPTIONS


def split_corruptions(results: Results) -> tuple[Results, pd.DataFrame]:
    """(results without corruption rows, the corruption rows of its summary)."""
    s = results.summary
    rows = corruption_rows(s)
    return dataclasses.replace(results, summary=s[s["threat_model"] != CORRUPTIONS].reset_index(drop=True)), rows


def _pct(x) -> str:
    return "—" if x is None or pd.isna(x) else f"{100 * float(x):.1f}%"


def corruptions_figure(summary: pd.DataFrame, table: pd.DataFrame, out_dir: Path) -> dict:
    """Left: mean accuracy over types vs severity (0 = clean), one line per model.
    Right: accuracy per type, averaged over severities, one bar per model."""
    models = list(dict.fromkeys(table["model"]))
    styles = model_styles(models)
    types = [t for t in accuracy_table(summary, models[0]).index if t != "mean"]
    fig = Figure(figsize=(12, 4.2))
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.6], "wspace": 0.25})
    width = 0.8 / len(models)
    for i, model in enumerate(models):
        color, ls, marker = styles[model]
        acc = accuracy_table(summary, model)
        sev = [c for c in acc.columns if c != "mean"]
        clean = table.loc[table["model"] == model, "clean_acc"].iloc[0]
        left.plot([0] + [int(c[1:]) for c in sev], [clean] + list(acc.loc["mean", sev]), color=color,
                  linestyle=ls, marker=marker, label=model)
        per_type = acc["mean"].reindex(types)
        right.barh([j + i * width for j in range(len(types))], per_type, height=width, color=color, label=model)
    left.set_xlabel("severity (0: clean)")
    left.set_ylabel("accuracy")
    left.set_ylim(-0.02, 1.02)
    left.set_title("Mean over corruption types", fontsize=10)
    right.set_yticks([j + 0.4 - width / 2 for j in range(len(types))])
    right.set_yticklabels(types, fontsize=8)
    right.invert_yaxis()
    right.set_xlim(0, 1)
    right.set_xlabel("accuracy (mean over severities)")
    right.set_title("Per corruption type", fontsize=10)
    left.legend(fontsize=8, frameon=False)
    return _save(fig, out_dir, "corruptions")


def corruptions_html(results: Results, rows: pd.DataFrame, fig_dir: Path, base: Path,
                     img: Callable[[dict, str, Path], str], mce_baseline: str | None = None) -> str:
    """The section: summary table, figure, one table per model (type x severity)."""
    examples = load_examples(results.root, rows)
    table = corruption_summary(examples, baseline=mce_baseline)
    out = ['<h2 id="corruptions">Common corruptions</h2>',
           '<p class="note">Accuracy on test images corrupted by the 15 common corruptions of Hendrycks &amp; '
           "Dietterich (2019) (imagecorruptions package) at each severity. Mean: over every (type, severity); "
           "95% interval: percentile bootstrap over examples. mCE: mean over types of the summed errors over "
           "severities divided by the baseline's (the paper's definition, with "
           f"{esc(mce_baseline) if mce_baseline else 'no baseline given: pass --mce-baseline MODEL'} "
           "in place of AlexNet); relative mCE subtracts each model's clean error first.</p>",
           "<table><thead><tr><th>model</th><th>n</th><th>clean acc</th><th>mean corruption acc</th>"
           "<th>95% interval</th><th>mCE</th><th>95% interval</th><th>relative mCE</th></tr></thead><tbody>"]
    for r in table.itertuples(index=False):
        out.append(f"<tr><td>{esc(r.model)}</td><td class='num'>{r.n}</td><td class='num'>{_pct(r.clean_acc)}</td>"
                   f"<td class='num'>{_pct(r.mean_acc)}</td><td class='num'>{_pct(r.ci_low)}–{_pct(r.ci_high)}</td>"
                   f"<td class='num'>{_pct(r.mce)}</td><td class='num'>{_pct(r.mce_low)}–{_pct(r.mce_high)}</td>"
                   f"<td class='num'>{_pct(r.relative_mce)}</td></tr>")
    out.append("</tbody></table>")
    if len(table):
        out.append(img(corruptions_figure(rows, table, fig_dir), "Accuracy under common corruptions", base))
    for model in table["model"]:
        acc = accuracy_table(rows, model)
        head = "".join(f"<th>{esc(c)}</th>" for c in acc.columns)
        body = "".join(f"<tr><td>{esc(t)}</td>" + "".join(f"<td class='num'>{_pct(v)}</td>" for v in acc.loc[t])
                       + "</tr>" for t in acc.index)
        out.append(f"<h3>{esc(model)}</h3><div class='scroll'><table><thead><tr><th>corruption</th>{head}"
                   f"</tr></thead><tbody>{body}</tbody></table></div>")
    return "\n".join(out)
