"""Figures of the HTML report (robustmix.report).

Figures are built with ``matplotlib.figure.Figure`` directly, never pyplot:
no GUI backend is selected, nothing global changes for a caller that also
plots interactively, and saving goes through the Agg canvas. Seaborn supplies
the style and palettes. Every figure is saved as PNG (embedded in the page)
and SVG (linked, for print).
"""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from .schema import WORST_CASE, threat_model_order

ATTACK_STYLES = {  # (linestyle, marker) per attack; unknown attacks cycle through EXTRA_STYLES
    "fgsm": ("--", "o"), "pgd": ("-.", "s"), "autoattack": ("-", "^"),
    "square": (":", "D"), "transfer": ((0, (1, 1)), "v"), WORST_CASE: ("-", "x"),
}
EXTRA_STYLES = [((0, (5, 1, 1, 1)), "P"), ((0, (3, 1, 1, 1, 1, 1)), "*"), ((0, (8, 2)), "h")]
LINESTYLES = ["-", "--", ":", "-."]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]
DPI = 110


def palette(n: int) -> list:
    """n colours that stay distinguishable: tab10 up to 10, else husl (evenly spaced hues)."""
    return sns.color_palette("tab10" if n <= 10 else "husl", n)


def model_styles(names: list[str]) -> dict:
    """Colour x line style per model: 10 tab10 colours, then the next line style.

    20 models get 20 distinct (colour, dash) pairs, which reads better than
    tab20's light/dark pairs of the same hue.
    """
    cols = sns.color_palette("tab10", 10)
    return {name: (cols[i % 10], LINESTYLES[(i // 10) % 4], MARKERS[(i // 10) % len(MARKERS)])
            for i, name in enumerate(names)}


def attack_style(attack: str, i: int) -> tuple:
    return ATTACK_STYLES.get(attack, EXTRA_STYLES[i % len(EXTRA_STYLES)])


def _save(fig: Figure, out_dir: Path, stem: str, tight: bool = True) -> dict:
    paths = {}
    for ext in ("png", "svg"):
        path = out_dir / f"{stem}.{ext}"
        # bbox_inches="tight" grows the canvas to include legends placed outside the
        # axes; it costs an extra draw, so fixed-layout figures skip it.
        # A fixed hash salt and no date: the same results give byte-identical SVGs,
        # so a regenerated, committed report only changes where the data did.
        with matplotlib.rc_context({"svg.hashsalt": "robustmix"}):
            fig.savefig(path, format=ext, dpi=DPI, bbox_inches="tight" if tight else None,
                        metadata={"Date": None} if ext == "svg" else None)
        paths[ext] = path
    return paths


def _grid(n_rows: int, n_cols: int, n_lines: int = 1):
    # Figure size grows with facets, and facets widen with the number of lines they
    # hold; bbox_inches="tight" adds room for the outside legend.
    width = min(9.0, 4.6 + 0.12 * max(0, n_lines - 6))
    fig = Figure(figsize=(width * n_cols, 3.5 * n_rows + 0.6))
    axes = fig.subplots(n_rows, n_cols, squeeze=False, sharey=True,
                        gridspec_kw={"hspace": 0.55, "wspace": 0.12})
    return fig, axes


def _band(ax, d: pd.DataFrame, color, n_lines: int = 1) -> None:
    ok = d[["ci_low", "ci_high"]].notna().all(axis=1)
    if ok.any():  # fainter bands when many overlap, so lines stay readable
        ax.fill_between(d.loc[ok, "eps"], d.loc[ok, "ci_low"], d.loc[ok, "ci_high"],
                        color=color, alpha=0.13 if n_lines <= 8 else 0.05, linewidth=0)


def _legend(fig: Figure, handles: list, title: str, y: float) -> None:
    ncol = max(1, math.ceil(len(handles) / 24))
    fig.legend(handles=handles, title=title, loc="upper left", bbox_to_anchor=(1.0, y),
               frameon=False, fontsize=8, title_fontsize=9, ncol=ncol)


def _facet_axes(ax, tm: str, arch: str | None, eps_labels: dict) -> None:
    ax.set_title(_short(f"{tm}" + (f" · {arch}" if arch is not None else ""), 60), fontsize=10)
    ax.set_xlabel(f"eps ({tm})")
    ax.set_ylim(-0.02, 1.02)
    ticks = _thin(sorted(eps_labels))
    if ticks:  # label ticks with the eps as evaluated (8/255, ...)
        ax.set_xticks(ticks)
        ax.set_xticklabels([eps_labels[t] for t in ticks], rotation=45, ha="right", fontsize=8)


def _thin(ticks: list[float], min_gap: float = 0.07) -> list[float]:
    """Evaluated eps as ticks, dropping those closer than min_gap of the range to a kept one.

    Linf sweeps crowd near 0 (1/255, 2/255, 4/255 ...); the largest eps is
    always labelled, then kept from the top down.
    """
    if len(ticks) <= 1:
        return ticks
    span = (ticks[-1] - ticks[0]) or 1.0
    kept = [ticks[-1]]
    for t in reversed(ticks[:-1]):
        if kept[-1] - t >= min_gap * span:
            kept.append(t)
    return sorted(kept)


def curves_figure(summary: pd.DataFrame, out_dir: Path, stem: str = "robustness_curves") -> dict:
    """Robust accuracy vs eps; hue = variant, style = attack, 95% bands; facets tm x arch."""
    data = summary[summary["attack"] != WORST_CASE]
    tms = sorted(data["threat_model"].unique(), key=_tm_order)
    archs = sorted(data["arch"].astype(str).unique())
    variants = sorted(data["variant"].astype(str).unique())
    attacks = sorted(data["attack"].unique(), key=lambda a: (a not in ATTACK_STYLES, a))
    colors = dict(zip(variants, palette(len(variants))))
    styles = {a: attack_style(a, i) for i, a in enumerate(attacks)}
    with sns.axes_style("whitegrid"):
        n_lines = data.groupby("arch")["model"].nunique().max() * len(attacks)
        fig, axes = _grid(len(archs), len(tms), n_lines)
        for r, arch in enumerate(archs):
            for c, tm in enumerate(tms):
                ax = axes[r][c]
                facet = data[(data["arch"].astype(str) == arch) & (data["threat_model"] == tm)]
                for (model, attack), d in facet.groupby(["model", "attack"], sort=True):
                    d = d.sort_values("eps")
                    color = colors[str(d["variant"].iloc[0])]
                    ls, mk = styles[attack]
                    _band(ax, d, color, n_lines)
                    ax.plot(d["eps"], d["robust_acc"], color=color, linestyle=ls, marker=mk,
                            markersize=3.5, linewidth=1.3)
                _facet_axes(ax, tm, arch, _labels(data[data["threat_model"] == tm]))
                if r < len(archs) - 1:
                    ax.set_xlabel("")
                if facet.empty:
                    ax.text(0.5, 0.5, "not evaluated", ha="center", transform=ax.transAxes,
                            color="0.5")
                if c == 0:
                    ax.set_ylabel("robust accuracy")
        _legend(fig, [Line2D([], [], color=colors[v], lw=2, label=_short(v)) for v in variants],
                "variant", 1.0)
        _legend(fig, [Line2D([], [], color="0.2", linestyle=styles[a][0], marker=styles[a][1],
                             label=_short(a)) for a in attacks], "attack",
                max(0.1, 1.0 - 0.045 * (len(variants) + 3) / max(1, len(archs))))
        fig.suptitle("Robust accuracy by attack (bands: 95% CI)", fontsize=11)
        return _save(fig, out_dir, stem)


def worst_case_figure(summary: pd.DataFrame, out_dir: Path, partial: set,
                      stem: str = "worst_case") -> dict:
    """Worst case over attacks, one line per model, one facet per threat model."""
    data = summary[summary["attack"] == WORST_CASE]
    tms = sorted(data["threat_model"].unique(), key=_tm_order)
    models = list(dict.fromkeys(data.sort_values(["variant", "model"])["model"]))
    styles = model_styles(models)
    with sns.axes_style("whitegrid"):
        fig, axes = _grid(1, max(1, len(tms)), len(models))
        for c, tm in enumerate(tms):
            ax = axes[0][c]
            for model, d in data[data["threat_model"] == tm].groupby("model", sort=False):
                d = d.sort_values("eps")
                color, ls, mk = styles[model]
                _band(ax, d, color, len(models))
                ax.plot(d["eps"], d["robust_acc"], color=color, linestyle=ls, marker=mk,
                        markersize=3.5, linewidth=1.4)
            _facet_axes(ax, tm, None, _labels(data[data["threat_model"] == tm]))
            if c == 0:
                ax.set_ylabel("worst-case robust accuracy")
        handles = [Line2D([], [], color=styles[m][0], linestyle=styles[m][1], marker=styles[m][2],
                          lw=1.6, label=_short(m) + (" (partial)" if m in partial else ""))
                   for m in models]
        _legend(fig, handles, "model", 1.0)
        fig.suptitle("Worst case over attacks (bands: 95% CI)", fontsize=11)
        return _save(fig, out_dir, stem)


def bank_figure(bank: np.ndarray, envelope: np.ndarray, coverage: pd.DataFrame,
                out_dir: Path, stem: str, title: str) -> dict:
    """Filter bank as one tiled image, its spectral envelope, and coverage vs bank size."""
    with sns.axes_style("white"):
        # A fixed layout: constrained/tight layout would triple the time of this figure,
        # which is drawn once per model (20 models -> seconds).
        fig = Figure(figsize=(12, 3.8))
        ax_bank, ax_env, ax_cov = fig.subplots(1, 3, gridspec_kw=dict(
            width_ratios=[1.1, 1, 1], left=0.02, right=0.98, bottom=0.14, top=0.84, wspace=0.4))
        ax_bank.imshow(_mosaic(bank), cmap=_cmap("RdBu_r"), vmin=-1, vmax=1,
                       interpolation="nearest")
        ax_bank.set_title(f"{bank.shape[0]} filters {bank.shape[1]}x{bank.shape[2]} "
                          "(each scaled to max |w|)", fontsize=9)
        ax_bank.set_axis_off()
        n = envelope.shape[0]
        half = n // 2
        im = ax_env.imshow(envelope, cmap="magma", origin="lower",
                           extent=(-half - 0.5, n - half - 0.5, -half - 0.5, n - half - 0.5))
        ax_env.set_title(f"spectral envelope, {n}x{n} (DC centred)", fontsize=9)
        ax_env.set_xlabel("horizontal frequency bin")
        ax_env.set_ylabel("vertical frequency bin")
        fig.colorbar(im, ax=ax_env, shrink=0.9, label="max |DFT|")
        ax_cov.plot(coverage["n_filters"], coverage["coverage"], color="C0", marker=".")
        ax_cov.set_ylim(-0.02, 1.02)
        ax_cov.set_xlabel("filters in bank")
        ax_cov.set_ylabel("fraction of frequencies covered")
        ax_cov.grid(True, alpha=0.4)
        ax_cov.set_title("envelope coverage as the bank grows", fontsize=9)
        fig.suptitle(_short(title, 90), fontsize=10)
        return _save(fig, out_dir, stem, tight=False)


def _mosaic(bank: np.ndarray) -> np.ndarray:
    """Tile (C,k,k) filters into one array with NaN gutters: one imshow instead of C axes."""
    c, kh, kw = bank.shape
    cols = math.ceil(math.sqrt(c))
    rows = math.ceil(c / cols)
    out = np.full((rows * (kh + 1) + 1, cols * (kw + 1) + 1), np.nan)
    scale = np.abs(bank).reshape(c, -1).max(axis=1)
    scale[scale == 0] = 1.0
    for i in range(c):
        r, q = divmod(i, cols)
        out[1 + r * (kh + 1):1 + r * (kh + 1) + kh, 1 + q * (kw + 1):1 + q * (kw + 1) + kw] = (
            bank[i] / scale[i])
    return out


def _cmap(name: str):
    return matplotlib.colormaps[name].with_extremes(bad="white")  # NaN gutters show white


def _labels(d: pd.DataFrame) -> dict:
    return dict(zip(d["eps"], d["eps_label"].astype(str)))


def _tm_order(tm: str) -> tuple:
    return threat_model_order(tm)


def _short(name: str, limit: int = 40) -> str:
    """Legend/title text: shortened, and "$" escaped so names never trigger mathtext."""
    name = str(name)
    name = name if len(name) <= limit else name[:limit - 1] + "…"
    return name.replace("$", r"\$")
