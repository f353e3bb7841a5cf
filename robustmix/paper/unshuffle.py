"""Pixel un-shuffling (the paper's claim 6) as an experiment.

The task itself (permutation, model head, MSE loss, PSNR) is robustmix.tasks'
``unshuffle``; its models train through train.py into the model store like any
classifier. This module builds the recipe, trains its (variant x seed) runs and
sets each model's test PSNR (peak 1, from the test-set MSE) beside two
baselines that need no learning: the shuffled image itself (identity) and the
mean training image. The report is robustmix.paper.unshuffle_report.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import torch

from .. import data as datasets
from ..config import load_toml
from ..device import resolve_device
from ..errors import ConfigError
from ..recipe import Recipe, load_recipe
from ..store import ModelStore
from ..tasks import evaluate_mse, make_permutation, psnr
from ..train import test_subset, train_recipe, train_subset
from ..variants import variant_tag
from .unshuffle_report import write_unshuffle_grid, write_unshuffle_report

RESULT_COLUMNS = ["variant", "seed", "test_mse", "test_psnr", "identity_psnr", "mean_psnr",
                  "params", "trainable_params", "seconds"]
# Keys only a classifier's recipe may have: a file without `task` that sets one is a classifier's.
_CLASSIFY_ONLY = ("augment", "performance")


def load_unshuffle_recipe(path: str | Path, overrides: dict | None = None) -> Recipe:
    """An un-shuffling recipe (a file without `task` is taken as one), parsed strictly."""
    raw = load_toml(path)
    variants = raw.get("variants")
    tables = isinstance(variants, list) and any(isinstance(v, dict) for v in variants)
    if raw.get("task") == "classify" or "task" not in raw and (tables or set(_CLASSIFY_ONLY) & set(raw)):
        raise ConfigError(f"{path} is a classification recipe; train it with `robustmix train {path}` "
                          f"(an un-shuffling recipe says task = \"unshuffle\")")
    return load_recipe(path, overrides, task="unshuffle")


def _mean_image(ds, idx: torch.Tensor, batch_size: int) -> torch.Tensor:
    total = None
    for s in range(0, len(idx), batch_size):
        x = datasets.batch(ds, idx[s:s + batch_size])[0].double().sum(0)
        total = x if total is None else total + x
    return (total / len(idx)).float()


def baseline_mses(recipe: Recipe, device) -> tuple[float, float]:
    """Test MSE of the shuffled image itself and of the mean training image, on the run's subsets."""
    d = recipe.data
    train = datasets.load_dataset(d.name, "train", root=d.root, download=d.download)
    test = datasets.load_dataset(d.name, "test", root=d.root, download=d.download)
    test_idx = test_subset(recipe, len(test))
    h, w = test.info.image_size
    perm = make_permutation(h, w, recipe.permutation_seed).to(device)
    mean_img = _mean_image(train, train_subset(recipe, len(train)), recipe.eval_batch_size)
    identity = evaluate_mse(None, test, test_idx, perm, recipe.eval_batch_size, device)
    return identity, evaluate_mse(None, test, test_idx, perm, recipe.eval_batch_size, device, constant=mean_img)


def train_unshuffle(recipe: Recipe, store: ModelStore | str | Path, device: str | None = None,
                    log=None) -> pd.DataFrame:
    """Train every (variant x seed) into ``store`` (finished runs are reused), one row per run."""
    log = log or (lambda msg: print(msg, file=sys.stderr))
    store = store if isinstance(store, ModelStore) else ModelStore(store)
    dev = resolve_device(device or recipe.device)
    results = train_recipe(recipe, store, device=str(dev), progress=False)
    identity, mean = baseline_mses(recipe, dev)
    rows = []
    for r in results:
        meta = store.meta(r.name)
        m = meta["metrics"]
        rows.append({"variant": variant_tag(meta["variant"], meta["variant_params"]), "seed": r.seed,
                     "test_mse": m["test_mse"], "test_psnr": m["test_psnr"], "identity_psnr": psnr(identity),
                     "mean_psnr": psnr(mean), "params": r.params, "trainable_params": r.trainable_params,
                     "seconds": r.seconds})
        log(f"{r.name}: {r.status}, test PSNR {m['test_psnr']:.2f} dB (identity {psnr(identity):.2f}, "
            f"mean image {psnr(mean):.2f})")
    return pd.DataFrame(rows, columns=RESULT_COLUMNS)


def run_unshuffle(recipe: Recipe, store: ModelStore, report_dir: str | Path, device: str | None = None,
                  log=None) -> tuple[pd.DataFrame, list[Path]]:
    """Train (or reuse) every run into ``store``, then write the report (with grid.png) to ``report_dir``."""
    results = train_unshuffle(recipe, store, device=device, log=log)
    grid = write_unshuffle_grid(recipe, store, Path(report_dir) / "grid.png")
    return results, write_unshuffle_report(results, grid, report_dir)
