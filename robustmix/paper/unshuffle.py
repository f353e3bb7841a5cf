"""Pixel un-shuffling (the paper's claim 6): decode a fixed pixel permutation.

One seeded permutation of the h*w pixel positions is applied to every image
(all channels alike). A ConvMixer with no down-sampling (patch size 1) maps
the shuffled image back to the original under a pixel-wise MSE loss. The
model is the registered ConvMixer's ``normalize`` + ``stem`` + ``blocks``
with the classifier head replaced by a 1x1 conv to the image channels and a
sigmoid, so the paper's variants (full / chans / space / ...) apply to the
very same SpatialMix / ChannelMix layers as in classification.

Reported per (variant, seed): test-set MSE and PSNR (peak 1, computed from
the test-set MSE), next to two baselines that need no learning: the shuffled
image itself (identity) and the mean training image.

Layout of ``--out DIR``::

    DIR/models/<variant-tag>-s<seed>/weights.safetensors + meta.json
    DIR/results.csv, DIR/grid.png, DIR/index.html
"""
from __future__ import annotations

import html
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F
from matplotlib.figure import Figure
from safetensors.torch import load_file, save_file

from .. import data as datasets
from ..config import check_seed, from_dict, load_toml
from ..device import resolve_device
from ..errors import CheckpointError, ConfigError
from ..fileio import atomic_path, write_json_atomic, write_text_atomic
from ..page import html_page
from ..models import count_params
from ..provenance import code_version, device_description, package_versions, stable_hash
# Same optimiser/schedule keys as classifier recipes.
from ..recipe import OptimSection, Recipe, ScheduleSection, check_runs, require_model_name
from ..store import check_writable_dir, sha256_file
from ..train import make_optimizer, optimizer_step, seeded_subset  # the classifier's subsets/schedule/optimiser
from ..variants import audit_frozen, build_variant, parse_variant, resolve_variant, variant_tag

FORMAT = "robustmix-unshuffle"
FORMAT_VERSION = 1
WEIGHTS, META = "weights.safetensors", "meta.json"
RESULT_COLUMNS = ["variant", "seed", "test_mse", "test_psnr", "identity_psnr", "mean_psnr",
                  "params", "trainable_params", "seconds"]


# --- the task -----------------------------------------------------------------

def make_permutation(h: int, w: int, seed: int) -> torch.Tensor:
    """A permutation of the h*w flattened pixel positions, a pure function of ``seed``."""
    if h <= 0 or w <= 0:
        raise ConfigError(f"permutation size must be positive, got {h}x{w}")
    return torch.randperm(h * w, generator=torch.Generator().manual_seed(int(seed)))


def _check_perm(x: torch.Tensor, perm: torch.Tensor) -> None:
    if x.dim() < 2 or x.shape[-2] * x.shape[-1] != perm.numel():
        raise ConfigError(f"permutation of {perm.numel()} positions does not fit images of shape "
                          f"{tuple(x.shape)}; build it with make_permutation(h, w, seed)")


def shuffle_images(x: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """``out[..., i] = x[..., perm[i]]`` over flattened positions; every channel moves alike."""
    _check_perm(x, perm)
    flat = x.flatten(-2)
    return flat[..., perm.to(x.device)].view_as(x)


def unshuffle_images(x: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """The exact inverse of ``shuffle_images`` (pure indexing, so bit-exact)."""
    _check_perm(x, perm)
    inverse = torch.argsort(perm.to(x.device))
    return x.flatten(-2)[..., inverse].view_as(x)


def psnr(mse: float) -> float:
    """PSNR in dB for pixels in [0, 1] (peak 1)."""
    return float("inf") if mse <= 0 else 10.0 * math.log10(1.0 / mse)


# --- the recipe ---------------------------------------------------------------

@dataclass
class UnshuffleData:
    name: str = "fashion-mnist"
    root: str | None = None            # default: $ROBUSTMIX_DATA or ./data
    train_subset: int | None = None    # seeded subset of the train split (CPU-sized runs)
    test_subset: int | None = None     # seeded subset of the test split (None: all of it)
    subset_seed: int = 0
    download: bool = False

    def validate(self, where):
        for key in ("train_subset", "test_subset"):
            value = getattr(self, key)
            if value is not None and value <= 0:
                raise ConfigError(f"{where}.{key}: must be > 0, got {value}")
        check_seed(self.subset_seed, f"{where}.subset_seed")


@dataclass
class UnshuffleModel:
    name: str = "convmixer_32_4_ks5_p2"
    args: dict = field(default_factory=dict)   # overrides of the registered defaults; patch_size is always 1

    def validate(self, where):
        if self.args.get("patch_size", 1) != 1:
            raise ConfigError(f"{where}.args.patch_size: un-shuffling needs patch_size = 1 (no down-sampling), "
                              f"got {self.args['patch_size']}")


@dataclass
class UnshuffleRecipe:
    name: str
    task: Literal["unshuffle"] = "unshuffle"   # how `robustmix train` tells it from a classifier recipe
    data: UnshuffleData = field(default_factory=UnshuffleData)
    model: UnshuffleModel = field(default_factory=UnshuffleModel)
    variants: list[str] = field(default_factory=lambda: ["full", "chans", "space"])
    seeds: list[int] = field(default_factory=lambda: [0])
    epochs: int = 10
    batch_size: int = 128
    eval_batch_size: int = 500
    optimizer: OptimSection = field(default_factory=OptimSection)
    schedule: ScheduleSection = field(default_factory=ScheduleSection)
    permutation_seed: int = 0
    device: str = "auto"
    description: str = ""

    def validate(self, where):
        check_runs(self)
        check_seed(self.permutation_seed, "permutation_seed")
        self.variant_list()

    def variant_list(self) -> list[tuple[str, dict]]:
        """``["chans", "smooth:sigma=2"]`` -> [(name, params with defaults)], validated."""
        return [(n, resolve_variant(n, p)) for n, p in map(parse_variant, self.variants)]


def load_unshuffle_recipe(path: str | Path, overrides: dict | None = None) -> UnshuffleRecipe:
    """Parse a recipe strictly (unknown keys are errors); ``overrides`` replace top-level keys."""
    raw = load_toml(path)
    raw.update({k: v for k, v in (overrides or {}).items() if v is not None})
    raw.setdefault("name", Path(path).stem)
    classify = (f"{path} is a classification recipe; train it with `robustmix train {path}` "
                f"(an un-shuffling recipe says task = \"unshuffle\")")
    if raw.get("task") == "classify":
        raise ConfigError(classify)
    require_model_name(raw, path)
    try:
        return from_dict(UnshuffleRecipe, raw)
    except ConfigError:
        # Without `task` a classifier's recipe (table variants, augment, ...) fails on a key it is
        # right to have: say what the file is rather than name that key.
        if "task" not in raw and _uses_classification_only_keys(raw):
            raise ConfigError(classify) from None
        raise


def _uses_classification_only_keys(raw: dict) -> bool:
    only = {f.name for f in fields(Recipe)} - {f.name for f in fields(UnshuffleRecipe)}  # augment, performance
    variants = raw.get("variants")
    return bool(only & set(raw)) or isinstance(variants, list) and any(isinstance(v, dict) for v in variants)


# --- the model ----------------------------------------------------------------

def _assemble(name: str, variant: str, params: dict, seed: int, channels: int, pixel_mean: float,
              **model_args) -> nn.Module:
    """Registered classifier -> un-shuffle model by swapping its head (nothing else changes)."""
    model = build_variant(name, variant, variant_seed=seed, variant_params=params,
                          **{**model_args, "patch_size": 1, "in_chans": channels})
    if not hasattr(model, "stem") or not hasattr(model, "blocks"):
        raise ConfigError(f"model '{name}' has no stem/blocks to reuse; use a convmixer_* model")
    dim = next(m for m in model.blocks.modules() if isinstance(m, nn.BatchNorm2d)).num_features
    out = nn.Conv2d(dim, channels, 1)
    # Outputs are pixels in [0, 1]: a sigmoid keeps them there without clipping
    # (which would zero the gradient), and a bias of logit(mean pixel) starts
    # the model at the average intensity instead of 0.5.
    p = min(max(pixel_mean, 1e-3), 1 - 1e-3)
    with torch.no_grad():
        out.bias.fill_(math.log(p / (1 - p)))
    model.head = nn.Sequential(out, nn.Sigmoid())
    model.task = "unshuffle"
    return model


def build_unshuffle_model(recipe: UnshuffleRecipe, variant: str, seed: int, info) -> nn.Module:
    """The un-shuffle model of ``recipe`` for ``variant`` (``"chans"``, ``"smooth:sigma=2"``)."""
    name, params = parse_variant(variant) if isinstance(variant, str) else variant
    params = resolve_variant(name, params)
    args = {**recipe.model.args, "mean": list(info.mean), "std": list(info.std), "num_classes": 1}
    return _assemble(recipe.model.name, name, params, seed, info.channels, float(np.mean(info.mean)), **args)


def save_unshuffle_model(folder: Path, model: nn.Module, meta: dict) -> dict:
    """weights.safetensors then meta.json (the commit marker), each atomic."""
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(folder / WEIGHTS) as tmp:
        save_file(state, str(tmp))
        digest = sha256_file(tmp)
    meta = {**meta, "format": FORMAT, "format_version": FORMAT_VERSION, "weights_sha256": digest}
    write_json_atomic(folder / META, meta)
    return meta


def load_unshuffle_model(folder: str | Path, device="cpu") -> tuple[nn.Module, dict]:
    """Rebuild a saved un-shuffle model after checking format and sha256 (never unpickles)."""
    folder = Path(folder)
    try:
        meta = json.loads((folder / META).read_text())
    except (OSError, ValueError):
        raise CheckpointError(f"{folder} is not an un-shuffle model (no readable {META}); "
                              f"train it with `robustmix unshuffle`") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{folder} is not a {FORMAT} v{FORMAT_VERSION} model; retrain it")
    if not isinstance(meta.get("weights_sha256"), str):
        raise CheckpointError(f"{folder / META} has no weights_sha256, so the weights cannot be verified; "
                              f"delete {folder} and retrain it")
    if sha256_file(folder / WEIGHTS) != meta.get("weights_sha256"):
        raise CheckpointError(f"{folder / WEIGHTS} does not match the sha256 in {META}; retrain it")
    m = meta["model"]
    model = _assemble(m["name"], meta["variant"], meta["variant_params"], meta["seed"],
                      meta["dataset"]["channels"], m["pixel_mean"], **m["args"])
    model.load_state_dict(load_file(str(folder / WEIGHTS)), strict=True)
    return model.to(device).eval(), meta


# --- training -----------------------------------------------------------------

def _splits(recipe: UnshuffleRecipe):
    d = recipe.data
    d.validate("data")  # a recipe built or changed in Python skips the loader's checks
    train = datasets.load_dataset(d.name, "train", root=d.root, download=d.download)
    test = datasets.load_dataset(d.name, "test", root=d.root, download=d.download)
    return (train, seeded_subset(len(train), d.train_subset, d.subset_seed, "train_subset", "the train split"),
            test, seeded_subset(len(test), d.test_subset, d.subset_seed + 1, "test_subset", "the test split"))


def _mean_image(ds, idx: torch.Tensor, batch_size: int) -> torch.Tensor:
    total = None
    for s in range(0, len(idx), batch_size):
        x = datasets.batch(ds, idx[s:s + batch_size])[0].double().sum(0)
        total = x if total is None else total + x
    return (total / len(idx)).float()


@torch.no_grad()
def evaluate_mse(model: nn.Module | None, ds, idx, perm, batch_size: int, device,
                 constant: torch.Tensor | None = None) -> float:
    """Test MSE of ``model`` (or, with model=None, of ``constant`` / the shuffled input itself)."""
    if model is not None:
        model.eval()
    se, count = 0.0, 0
    for s in range(0, len(idx), batch_size):
        x = datasets.batch(ds, idx[s:s + batch_size])[0].to(device)
        if model is not None:
            pred = model(shuffle_images(x, perm))
        elif constant is not None:
            pred = constant.to(device).expand_as(x)
        else:
            pred = shuffle_images(x, perm)
        se += float(((pred - x) ** 2).double().sum())
        count += x.numel()
    return se / max(count, 1)


def _run_hash(recipe, variant: str, params: dict, seed: int) -> str:
    config = {k: v for k, v in asdict(recipe).items() if k not in ("variants", "seeds", "description")}
    return stable_hash(config | {"_variant": [variant, params], "_seed": seed})


def train_unshuffle(recipe: UnshuffleRecipe, out_dir: str | Path, device: str | None = None,
                    log=None) -> pd.DataFrame:
    """Train every (variant x seed); a finished run with the same config is reused, not retrained."""
    log = log or (lambda msg: print(msg, file=sys.stderr))
    dev = resolve_device(device or recipe.device)
    out_dir = Path(out_dir)
    # Fail now, not after the last variant trained: models, results and report all go here.
    check_writable_dir(out_dir, "output directory", "pass --out DIR of a directory robustmix can create and write")
    train_ds, train_idx, test_ds, test_idx = _splits(recipe)
    info = train_ds.info
    h, w = info.image_size
    perm = make_permutation(h, w, recipe.permutation_seed).to(dev)
    mean_img = _mean_image(train_ds, train_idx, recipe.eval_batch_size)
    base_identity = evaluate_mse(None, test_ds, test_idx, perm, recipe.eval_batch_size, dev)
    base_mean = evaluate_mse(None, test_ds, test_idx, perm, recipe.eval_batch_size, dev, constant=mean_img)
    steps = max(1, math.ceil(len(train_idx) / recipe.batch_size))
    rows = []
    for variant, params in recipe.variant_list():
        for seed in recipe.seeds:
            tag = f"{variant_tag(variant, params)}-s{seed}"
            folder, run_hash = out_dir / "models" / tag, _run_hash(recipe, variant, params, seed)
            meta_path = folder / META
            if meta_path.is_file():
                try:
                    _, meta = load_unshuffle_model(folder)
                except CheckpointError:
                    meta = {}
                if meta.get("run_hash") == run_hash:
                    log(f"{tag}: already trained, reusing {folder}")
                    rows.append(meta["row"])
                    continue
            torch.manual_seed(seed)  # learned layers' init; frozen banks have their own seeds
            model = build_unshuffle_model(recipe, (variant, params), seed, info).to(dev)
            optimizer = make_optimizer(recipe, model)
            learned = [p for p in model.parameters() if p.requires_grad]
            t_start = time.perf_counter()
            for epoch in range(recipe.epochs):
                model.train()
                # Data order from (seed, epoch) alone, as in train.py: reruns are identical.
                gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
                order = train_idx[torch.randperm(len(train_idx), generator=gen)]
                loss_sum = torch.zeros((), device=dev, dtype=torch.float64)
                for step in range(steps):
                    x = datasets.batch(train_ds, order[step * recipe.batch_size:(step + 1) * recipe.batch_size])[0]
                    x = x.to(dev, non_blocking=True)
                    loss = F.mse_loss(model(shuffle_images(x, perm)), x)
                    optimizer_step(optimizer, loss, learned, recipe, epoch + (step + 1) / steps)
                    loss_sum += loss.detach() * len(x)
                log(f"{tag}: epoch {epoch + 1}/{recipe.epochs} train mse {loss_sum.item() / len(train_idx):.5f}")
            mse = evaluate_mse(model, test_ds, test_idx, perm, recipe.eval_batch_size, dev)
            seconds = time.perf_counter() - t_start
            if audit_frozen(model.cpu()):  # a bug, not a user error: frozen filters must never move
                raise RuntimeError(f"{tag}: frozen tensors changed during training")
            total, trainable = count_params(model)
            row = {"variant": variant_tag(variant, params), "seed": seed, "test_mse": mse, "test_psnr": psnr(mse),
                   "identity_psnr": psnr(base_identity), "mean_psnr": psnr(base_mean),
                   "params": total, "trainable_params": trainable, "seconds": seconds}
            save_unshuffle_model(folder, model, {
                "task": "unshuffle", "run_hash": run_hash, "row": row, "variant": variant,
                "variant_params": params, "seed": seed, "permutation_seed": recipe.permutation_seed,
                "model": {"name": recipe.model.name, "args": model.model_args,
                          "pixel_mean": float(np.mean(info.mean))},
                "dataset": {"name": info.name, "channels": info.channels, "image_size": [h, w]},
                "recipe": asdict(recipe), "code_version": code_version(), "packages": package_versions(),
                "device": device_description(dev), "frozen_audit": "bit-identical to seed",
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds")})
            log(f"{tag}: test PSNR {psnr(mse):.2f} dB (identity {psnr(base_identity):.2f}, "
                f"mean image {psnr(base_mean):.2f}) in {seconds:.0f}s")
            rows.append(row)
    return pd.DataFrame(rows, columns=RESULT_COLUMNS)  # meta.json sorts keys: fix the order here


# --- report -------------------------------------------------------------------

@torch.no_grad()
def write_unshuffle_grid(recipe: UnshuffleRecipe, out_dir: str | Path, n_images: int = 8,
                         path: str | Path | None = None) -> Path:
    """PNG grid, one column per test image: rows truth / shuffled / each variant (first seed)."""
    out_dir = Path(out_dir)
    test = datasets.load_dataset(recipe.data.name, "test", root=recipe.data.root, download=recipe.data.download)
    idx = seeded_subset(len(test), recipe.data.test_subset, recipe.data.subset_seed + 1, "test_subset",
                        "the test split")[:n_images]
    x = datasets.batch(test, idx)[0]
    perm = make_permutation(x.shape[-2], x.shape[-1], recipe.permutation_seed)
    rows = [("truth", x), ("shuffled", shuffle_images(x, perm))]
    for variant, params in recipe.variant_list():
        model, _ = load_unshuffle_model(out_dir / "models" / f"{variant_tag(variant, params)}-s{recipe.seeds[0]}")
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
    path = Path(path) if path else out_dir / "grid.png"
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
        grid_png = Path(grid_png).resolve()
        # Link relative to the page when the grid sits under it, so the folder can move.
        rel = grid_png.relative_to(out_dir.resolve()) if grid_png.is_relative_to(out_dir.resolve()) else grid_png
        grid = (f'<h2>Test images</h2><img src="{html.escape(rel.as_posix())}" '
                'alt="rows: truth, shuffled, then each variant">')
    body = ("<h1>Pixel un-shuffling</h1><p>Test-set MSE and PSNR (dB, peak 1, from the test MSE); "
            "baselines: the shuffled image itself (identity) and the mean training image. "
            f"Mean over seeds; per-seed rows in <a href='results.csv'>results.csv</a>.</p>{table}{grid}")
    index = out_dir / "index.html"
    write_text_atomic(index, html_page("Pixel un-shuffling", body))
    return [csv, index]
