"""Self-contained HTML report of a result store (layout: robustmix/schema.py).

``write_report(results_dir, out_dir)`` writes::

    out_dir/index.html          opens from disk, no network: inline CSS, relative links
    out_dir/figures/*.png|svg   curves, worst case, one filter-bank figure per model
    out_dir/data/               copies of summary.csv/.parquet, models.csv, diagnostics.csv, run.json

Everything is built in a temporary directory next to out_dir and renamed
into place (``fileio.atomic_dir``), so an error leaves no half-written report. Every name from the
store goes through html.escape.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from . import figures
from . import schema
from .eps import format_eps
from .errors import StoreError
from .fileio import atomic_dir, model_slug
from .page import IMAGE_CHECK_JS, REPORT_CSS, esc, html_page
from .spectrum import envelope_coverage, spectral_envelope
from .results import Results, load_results, model_flags
from .schema import WORST_CASE, threat_model_order
from .compare import load_examples
from .report_paired import best_is_separated, paired_html
from .report_corruptions import corruptions_html, split_corruptions
from .report_radius import radius_html
from .stats import ALPHA, curve_auc

MARKER = ".robustmix-report"  # marks out_dir as ours, so a re-run may replace it


# ----------------------------------------------------------------------------- analysis

def missing_cells(summary: pd.DataFrame) -> pd.DataFrame:
    """(model, threat_model, attack, eps) cells other models have but this one lacks.

    The expected cells of a threat model are the (attack, eps) pairs any
    model has: a spec may run an attack at a subset of the grid on purpose
    (AutoAttack at one eps), which is not partial; a model that skipped a
    whole threat model is.
    """
    att = summary[summary["attack"] != WORST_CASE]
    have = set(map(tuple, att[["model", "threat_model", "attack", "eps"]].itertuples(index=False)))
    rows = []
    for tm, d in att.groupby("threat_model"):
        cells = sorted(set(map(tuple, d[["attack", "eps"]].itertuples(index=False))))
        for model in summary["model"].unique():
            rows += [(model, tm, a, e) for a, e in cells if (model, tm, a, e) not in have]
    return pd.DataFrame(rows, columns=["model", "threat_model", "attack", "eps"])


def auc(d: pd.DataFrame) -> float:
    """Area under robust accuracy vs eps (trapezoid), divided by the eps range: in [0, 1]."""
    d = d.dropna(subset=["robust_acc"]).sort_values("eps")
    return curve_auc(d["eps"].to_numpy(float), d["robust_acc"].to_numpy(float))


def headline(results: Results, examples: pd.DataFrame | None = None) -> str:
    """One sentence (HTML) naming the most robust model at the most telling eps.

    Telling eps: the eps > 0 of the main threat model (most rows), evaluated
    for every model, where worst-case accuracies spread most. With one model
    there is nothing to compare, so its accuracy at that eps is stated. "Most
    robust" needs a paired test on the shared examples (``report_paired``)
    against every other model; ``examples``: the store's per-example rows
    (read from the store when not given).
    """
    s = results.summary
    wc = s[s["attack"] == WORST_CASE]
    if wc.empty:
        return "No worst-case rows to compare."
    tm = wc["threat_model"].value_counts().sort_index().idxmax()
    d = wc[(wc["threat_model"] == tm) & (wc["eps"] > 0)]
    n_models = d["model"].nunique()
    per_eps = d.groupby("eps")
    full = [e for e, g in per_eps if g["model"].nunique() == n_models]
    if not full:
        return f"No {esc(tm)} eps > 0 was evaluated for every model; see the table."
    spread = {e: per_eps.get_group(e)["robust_acc"].max() - per_eps.get_group(e)["robust_acc"].min()
              for e in full}
    eps = max(full, key=lambda e: (spread[e], -e))
    g = per_eps.get_group(eps).sort_values("robust_acc", ascending=False)
    label = esc(results.eps_labels.get((tm, eps), format_eps(eps)))
    best = g.iloc[0]

    def who(r):
        return f"<b>{esc(r['model'])}</b> (variant {esc(r['variant'])})"

    def val(r):
        return f"{_pct(r['robust_acc'])} [95% CI {_pct(r['ci_low'])}–{_pct(r['ci_high'])}]"

    raised = model_flags(results).get(best["model"])
    caveat = (f" Caution: diagnostics flagged {esc(best['model'])} ({esc(', '.join(raised))}), "
              "so its number may overstate its robustness." if raised else "")
    if len(g) == 1:
        return (f"At {esc(tm)} eps = {label}, {who(best)} keeps {val(best)} worst-case robust "
                f"accuracy.{caveat}")
    if examples is None:
        examples = load_examples(results.root, s)
    second = g.iloc[1]
    if examples.empty:
        return (f"At {esc(tm)} eps = {label} (where the models differ most), {who(best)} has the "
                f"highest worst-case robust accuracy, {val(best)}; the store has no per-example rows, "
                f"so no paired test says whether it is more robust than the runner-up {who(second)} "
                f"at {val(second)}.{caveat}")
    others = [str(m) for m in g["model"].iloc[1:]]
    separated, adj = best_is_separated(examples, str(best["model"]), others, tm, eps)
    if separated:
        return (f"At {esc(tm)} eps = {label} (where the models differ most), {who(best)} is the "
                f"most robust: {val(best)} worst-case robust accuracy, significantly above every other "
                f"model in paired tests on the same examples (exact McNemar, Holm-adjusted p &le; "
                f"{max(adj.values()):.2g}); the runner-up {who(second)} is at {val(second)}.{caveat}")
    close = [o for o in others if not adj[o] < ALPHA]
    listed = ", ".join(f"{esc(o)} ({_pct(g.loc[g['model'] == o, 'robust_acc'].iloc[0])})" for o in close[:5])
    more = f" and {len(close) - 5} more" if len(close) > 5 else ""
    return (f"At {esc(tm)} eps = {label} (where the models differ most), {who(best)} has the "
            f"highest worst-case robust accuracy, {val(best)}, but paired tests on the same examples "
            f"(exact McNemar, Holm-adjusted at alpha {ALPHA:g}) do not separate it from {listed}{more}: "
            f"the data do not establish which is more robust.{caveat}")


# ----------------------------------------------------------------------------- HTML helpers

def _pct(x) -> str:
    return "—" if x is None or pd.isna(x) else f"{100 * float(x):.1f}%"


def _int(x) -> str:
    return "—" if x is None or pd.isna(x) else f"{int(x):,}"


def _img(paths: dict, alt: str, base: Path) -> str:
    png = paths["png"].relative_to(base).as_posix()
    svg = paths["svg"].relative_to(base).as_posix()
    return (f'<figure><a href="{esc(svg)}"><img src="{esc(png)}" alt="{esc(alt)}" '
            f'loading="eager"></a><figcaption>{esc(alt)} · '
            f'<a href="{esc(png)}">PNG</a> · <a href="{esc(svg)}">SVG</a></figcaption></figure>')


# ----------------------------------------------------------------------------- report

def write_report(results_dir, out_dir, mce_baseline: str | None = None) -> Path:
    """Write the HTML report of ``results_dir`` into ``out_dir``; return index.html's path.
    ``mce_baseline``: the model that common-corruption errors are divided by (mCE)."""
    results = load_results(results_dir)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise StoreError(f"report path {out} is a file; pass a directory path")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).exists():
        raise StoreError(f"{out} exists and is not a robustmix report; "
                         "pass a new or empty directory so nothing of yours is replaced")
    try:
        with atomic_dir(out) as tmp:
            _build(results, tmp, mce_baseline)
            (tmp / MARKER).write_text("robustmix report\n")
    except OSError as exc:
        raise StoreError(f"cannot write the report to {out}: {exc.strerror or exc}; "
                         "pass a directory path whose parent is a writable directory") from None
    return out / "index.html"


def _build(results: Results, base: Path, mce_baseline: str | None = None) -> None:
    fig_dir = base / "figures"
    data_dir = base / "data"
    fig_dir.mkdir()
    data_dir.mkdir()
    # Common corruptions have their own section (report_corruptions.py); the rest is about eps-balls.
    results, corrupted = split_corruptions(results)
    corruptions = corruptions_html(results, corrupted, fig_dir, base, _img, mce_baseline) if len(corrupted) else ""
    if results.summary.empty:  # a store of common corruptions only
        title = f"robustmix report — {', '.join(sorted(corrupted['dataset'].unique()))}"
        body = f"<h1>{esc(title)}</h1>\n{corruptions}\n{_provenance_html(results, data_dir, base)}"
        (base / "index.html").write_text(html_page(title, body, REPORT_CSS, IMAGE_CHECK_JS), encoding="utf-8")
        return
    s = results.summary
    miss = missing_cells(s)
    partial = set(miss["model"])
    flags = model_flags(results)

    parts = [f"<h1>robustmix report — {esc(', '.join(sorted(s['dataset'].unique())))}</h1>",
             '<nav><a href="#summary">Summary</a><a href="#curves">Curves</a>'
             '<a href="#table">Table</a><a href="#diagnostics">Diagnostics</a><a href="#paired">Paired</a>'
             + ('<a href="#corruptions">Corruptions</a>' if corruptions else '')
             + '<a href="#radius">Radius</a>'
             '<a href="#banks">Filter banks</a><a href="#provenance">Provenance</a></nav>',
             '<p id="image-status" class="note"></p>']
    examples = load_examples(results.root, s)
    parts.append(_summary_html(results, partial, flags, examples))

    parts.append('<h2 id="curves">Robustness curves</h2>')
    parts.append('<p class="note">Robust accuracy against each attack (one colour per variant, one '
                 'line style per attack; shaded: 95% CI), faceted by threat model (columns) and '
                 'architecture (rows). Models marked partial lack some (attack, eps) cells.</p>')
    if (s["attack"] != WORST_CASE).any():
        parts.append(_img(figures.curves_figure(s, fig_dir), "Robust accuracy by attack", base))
    parts.append(_img(figures.worst_case_figure(s, fig_dir, partial),
                      "Worst case over attacks, per model", base))

    parts.append(_table_html(results, partial, flags, miss))
    parts.append(_diagnostics_html(results, flags))
    parts.append(paired_html(examples, s, results.models))
    parts.append(corruptions)
    parts.append(radius_html(examples))

    parts.append('<h2 id="banks">Spatial filter banks</h2>')
    parts.append('<p class="note">The first block\'s spatial filters (each scaled to its own '
                 'max |w|; red positive, blue negative), their spectral envelope (element-wise '
                 'max of |DFT| over the bank, zero-padded to 32x32, DC at the centre) and the '
                 'fraction of frequencies the envelope covers at half the mean per-filter peak '
                 'gain as filters are added.</p>')
    n_banks = 0
    for model in results.model_names:
        path = results.root / "banks" / f"{model_slug(model)}.npy"
        if not path.is_file():
            continue
        try:
            bank = np.load(path, allow_pickle=False).astype(np.float32)
            env, cov = spectral_envelope(bank), envelope_coverage(bank)
        except Exception as exc:  # a bad bank file must not sink the whole report
            parts.append(f"<p>{esc(model)}: cannot read {esc(path.name)} ({esc(exc)}).</p>")
            continue
        stem = f"bank_{model_slug(model)}"
        parts.append(f"<h3>{esc(model)}</h3><p class='note'>{bank.shape[0]} filters, coverage "
                     f"{cov['coverage'].iloc[-1]:.0%} of the frequency plane.</p>")
        parts.append(_img(figures.bank_figure(bank, env, cov, fig_dir, stem, f"{model}"),
                          f"Filter bank and spectral envelope of {model}", base))
        n_banks += 1
    if not n_banks:
        parts.append("<p>No filter banks in this store (banks/ is empty or absent).</p>")

    parts.append(_provenance_html(results, data_dir, base))
    body = "\n".join(parts)
    title = f"robustmix report — {', '.join(sorted(s['dataset'].unique()))}"
    (base / "index.html").write_text(html_page(title, body, REPORT_CSS, IMAGE_CHECK_JS), encoding="utf-8")


def _summary_html(results: Results, partial: set, flags: dict, examples: pd.DataFrame) -> str:
    s = results.summary
    att = sorted(a for a in s["attack"].unique() if a != WORST_CASE)
    eps_desc = "; ".join(
        f"{esc(tm)}: " + ", ".join(esc(lab) for lab in
                                  d.drop_duplicates("eps").sort_values("eps")["eps_label"])
        for tm, d in sorted(s.groupby("threat_model"), key=lambda kv: _tm_key(kv[0])))
    ns = sorted({int(x) for x in s["n"].dropna()})
    eval_seeds = sorted({str(x) for x in s["eval_seed"].dropna()})
    train_seeds = sorted({str(x) for x in s["train_seed"].dropna()})
    rows = [
        ("Data set", ", ".join(sorted(s["dataset"].unique()))),
        ("Models", f"{len(results.model_names)}: " + ", ".join(results.model_names)),
        ("Attacks", ", ".join(att) + f" (+ {WORST_CASE}: per-eps minimum over them)"),
        ("Threat models / eps", None),
        ("Examples (n)", ", ".join(map(str, ns)) or "—"),
        ("Seeds", f"eval {', '.join(eval_seeds) or '—'}; train {', '.join(train_seeds) or '—'}"),
    ]
    items = "".join(f"<dt>{esc(k)}</dt><dd>{eps_desc if v is None else esc(v)}</dd>"
                    for k, v in rows)
    notes = []
    if partial:
        notes.append(f'<p><span class="badge partial">partial</span> {len(partial)} model(s) lack '
                     f"some (attack, eps) cells: {esc(', '.join(sorted(partial)))}.</p>")
    if flags:
        notes.append(f'<p><span class="badge flag">flagged</span> diagnostics raised flags for '
                     f"{esc(', '.join(sorted(flags)))}; see <a href=\"#diagnostics\">Diagnostics"
                     "</a> before trusting their numbers.</p>")
    return (f'<h2 id="summary">Summary</h2><p class="headline">{headline(results, examples)}</p>'
            f'<dl class="kv">{items}</dl>' + "".join(notes))


def _table_html(results: Results, partial: set, flags: dict, miss: pd.DataFrame) -> str:
    s = results.summary
    models = results.models.set_index("model") if len(results.models) else pd.DataFrame()
    out = ['<h2 id="table">Results table</h2>',
           '<p class="note">Robust accuracy is the worst case over attacks at each eps '
           "(hover a cell for its 95% CI). AUC: area under that curve (trapezoid over eps) "
           "divided by the eps range, so 1.0 means robust everywhere; for a partial model it "
           "covers only the eps it has.</p>"]
    wc = s[s["attack"] == WORST_CASE]
    for tm in sorted(s["threat_model"].unique(), key=_tm_key):
        d = wc[wc["threat_model"] == tm]
        eps_vals = sorted(s.loc[s["threat_model"] == tm, "eps"].unique())
        head = "".join(f"<th>{esc(results.eps_labels.get((tm, e), format_eps(e)))}</th>"
                       for e in eps_vals)
        out.append(f"<h3>{esc(tm)}</h3><div class='scroll'><table><thead><tr><th>model</th>"
                   f"<th>variant</th><th>arch</th><th>clean acc</th>{head}<th>AUC</th>"
                   f"<th>params</th><th>trainable</th><th>status</th></tr></thead><tbody>")
        for model in results.model_names:
            md = d[d["model"] == model]
            row_s = s[s["model"] == model]
            if row_s.empty:
                continue
            m = models.loc[model] if model in models.index else None
            clean = m["clean_acc"] if m is not None and "clean_acc" in m.index else row_s["clean_acc"].iloc[0]
            cells = []
            for e in eps_vals:
                hit = md[md["eps"] == e]
                if hit.empty:
                    cells.append('<td class="missing" title="not evaluated">—</td>')
                else:
                    r = hit.iloc[0]
                    cells.append(f'<td class="num" title="95% CI {_pct(r["ci_low"])}–'
                                 f'{_pct(r["ci_high"])}">{_pct(r["robust_acc"])}</td>')
            status = []
            n_miss = int(((miss["model"] == model) & (miss["threat_model"] == tm)).sum())
            if n_miss:
                status.append(f'<span class="badge partial" title="{n_miss} (attack, eps) cells '
                              f'missing">partial</span>')
            status += [f'<span class="badge flag">{esc(f)}</span>' for f in flags.get(model, [])]
            variant = row_s["variant"].iloc[0]
            arch = row_s["arch"].iloc[0]
            params = m["params"] if m is not None and "params" in m.index else None
            train = m["trainable_params"] if m is not None and "trainable_params" in m.index else None
            cls = ' class="flagged"' if model in flags else ""
            out.append(f"<tr{cls}><td>{esc(model)}</td><td>{esc(variant)}</td><td>{esc(arch)}</td>"
                       f"<td class='num'>{_pct(clean)}</td>{''.join(cells)}"
                       f"<td class='num'>{'—' if md.empty else f'{auc(md):.3f}'}</td>"
                       f"<td class='num'>{_int(params)}</td><td class='num'>{_int(train)}</td>"
                       f"<td>{''.join(status) or 'complete'}</td></tr>")
        out.append("</tbody></table></div>")
    return "\n".join(out)


def _diagnostics_html(results: Results, flags: dict) -> str:
    out = ['<h2 id="diagnostics">Diagnostics</h2>']
    d = results.diagnostics
    if not flags:
        out.append("<p>No diagnostic flags were raised.</p>")
    else:
        out.append("<table><thead><tr><th>model</th><th>flag</th><th>detail</th><th>what it means"
                   "</th></tr></thead><tbody>")
        detail = d["detail"] if "detail" in d.columns else pd.Series([None] * len(d))
        for model, flag, det in zip(d["model"], d["flag"], detail):
            if pd.isna(flag):
                continue
            meaning = schema.DIAGNOSTIC_FLAGS.get(str(flag),
                                                  "Unknown flag (no description in this version).")
            out.append(f'<tr class="flagged"><td>{esc(model)}</td><td><span class="badge flag">'
                       f"{esc(flag)}</span></td><td>{esc(det)}</td><td>{esc(meaning)}</td></tr>")
        out.append("</tbody></table>")
    out.append("<details><summary>All diagnostic flags</summary><dl class='kv'>" + "".join(
        f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in schema.DIAGNOSTIC_FLAGS.items())
        + "</dl></details>")
    return "\n".join(out)


def _provenance_html(results: Results, data_dir: Path, base: Path) -> str:
    root = results.root
    links = []
    # Copies make the links work when the report directory is moved or archived.
    for name in ("summary.csv", "summary.parquet", "models.csv", "diagnostics.csv", "run.json"):
        if (root / name).is_file():
            shutil.copy2(root / name, data_dir / name)
            links.append(f'<li><a href="data/{esc(name)}">{esc(name)}</a></li>')
    ex = sorted((root / "examples").glob("*.parquet")) if (root / "examples").is_dir() else []
    if ex:
        uri = (root / "examples").resolve().as_uri()
        links.append(f'<li>per-example rows: {len(ex)} parquet file(s) in <a href="{esc(uri)}">'
                     f"{esc(root / 'examples')}</a> (not copied: they can be large)</li>")
    # run.json's fields in the order RunInfo declares them.
    items = "".join(
        f"<dt>{esc(k)}</dt><dd>{_fmt_value(k, v)}</dd>" for k, v in dataclasses.asdict(results.run).items())
    return (f'<h2 id="provenance">Provenance</h2><p>Results directory: <code>{esc(root.resolve())}'
            f"</code></p><dl class='kv'>{items}</dl>"
            f"<h3>Data files</h3><ul>{''.join(links)}</ul>")


def _tm_key(tm: str) -> tuple:
    return threat_model_order(tm)


def _fmt_value(key: str, v) -> str:
    if key in ("seconds", "wall_seconds") and isinstance(v, (int, float)):
        return esc(f"{v:,.0f} s ({v / 3600:.2f} h)" if v >= 3600 else f"{v:,.1f} s")
    if isinstance(v, (dict, list)):
        return f"<pre>{esc(json.dumps(v, indent=2, default=str))}</pre>"
    return esc(v)
