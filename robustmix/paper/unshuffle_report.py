"""The un-shuffling report: results.csv, a picture grid of test images and a small index.html."""
from __future__ import annotations

import html
import os
from pathlib import Path

import pandas as pd
import torch
from matplotlib.figure import Figure

from .. import data as datasets
from ..fileio import atomic_path, write_text_atomic
from ..page import html_page
from ..recipe import Recipe
from ..store import ModelStore
from ..tasks import make_permutation, shuffle_images
from ..train import run_name, test_subset
from ..variants import variant_tag


@torch.no_grad()
def write_unshuffle_grid(recipe: Recipe, store: ModelStore, path: str | Path, n_images: int = 8) -> Path:
    """PNG grid, one column per test image: rows truth / shuffled / each variant (first seed)."""
    test = datasets.load_dataset(recipe.data.name, "test", root=recipe.data.root, download=recipe.data.download)
    x = datasets.batch(test, test_subset(recipe, len(test))[:n_images])[0]
    perm = make_permutation(x.shape[-2], x.shape[-1], recipe.permutation_seed)
    rows = [("truth", x), ("shuffled", shuffle_images(x, perm))]
    for variant, params in recipe.variant_list():
        model, _ = store.load(run_name(recipe, variant, params, recipe.seeds[0]))
        rows.append((variant_tag(variant, params), model(rows[1][1])))
    fig = Figure(figsize=(1.1 * len(x) + 1.2, 1.15 * len(rows)))
    axes = fig.subplots(len(rows), 1, squeeze=False)[:, 0]
    for ax, (label, imgs) in zip(axes, rows):
        # One imshow per row: images side by side, channels last (grey if one channel).
        strip = torch.cat(list(imgs.clamp(0, 1)), dim=-1).permute(1, 2, 0).numpy()
        ax.imshow(strip[..., 0] if strip.shape[-1] == 1 else strip, cmap="gray", vmin=0, vmax=1,
                  interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
    fig.subplots_adjust(left=0.12, right=0.99, top=0.99, bottom=0.01, hspace=0.08)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return path


def summarise(results: pd.DataFrame) -> pd.DataFrame:
    """Mean over seeds per variant, with the two baselines."""
    cols = ["test_mse", "test_psnr", "identity_psnr", "mean_psnr", "params", "trainable_params", "seconds"]
    return results.groupby("variant", sort=False)[cols].mean().reset_index()


def write_unshuffle_report(results: pd.DataFrame, grid_png: str | Path | None, out_dir: str | Path) -> list[Path]:
    """results.csv plus a tiny index.html (table + picture grid)."""
    out_dir = Path(out_dir)
    csv = out_dir / "results.csv"
    with atomic_path(csv) as tmp:
        results.to_csv(tmp, index=False)
    table = summarise(results).to_html(index=False, float_format=lambda v: f"{v:.4g}", border=0)
    grid = ""
    if grid_png is not None:
        # Relative to the page, so the report folder (and the store beside it) can move.
        rel = Path(os.path.relpath(Path(grid_png).resolve(), out_dir.resolve()))
        grid = (f'<h2>Test images</h2><img src="{html.escape(rel.as_posix())}" '
                'alt="rows: truth, shuffled, then each variant">')
    body = ("<h1>Pixel un-shuffling</h1><p>Test-set MSE and PSNR (dB, peak 1, from the test MSE); "
            "baselines: the shuffled image itself (identity) and the mean training image. "
            f"Mean over seeds; per-seed rows in <a href='results.csv'>results.csv</a>.</p>{table}{grid}")
    index = out_dir / "index.html"
    write_text_atomic(index, html_page("Pixel un-shuffling", body))
    return [csv, index]
