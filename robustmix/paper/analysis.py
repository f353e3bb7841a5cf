"""Spectral-envelope analysis of spatial filter banks (the paper's Figure 1).

A bank is the (C, k, k) weight of one depthwise (SpatialMix) layer: either
taken from a trained model, or generated here through the very fill
functions the variants use (``robustmix.variants.VARIANTS[...].fill``), so a
generated bank is bit-identical to the first frozen layer of a model built
with that variant and seed. The envelope math is ``robustmix.spectrum`` (core: the report of any store draws it too).

``spectrum_table`` gives, per bank, the envelope's coverage as the bank grows
from 1 to C filters; ``write_spectrum_report`` writes it as CSV plus a figure
(coverage vs filters, one line per bank; envelope images of the full banks);
``analyse_spectrum`` does both for ``robustmix analyze spectrum``.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..errors import ConfigError, StoreError
from ..fileio import atomic_path
from ..models.layers import SpatialMix
from ..store import ModelStore, default_store_root, load_checkpoint
from ..variants import VARIANTS, parse_variant, resolve_variant
from ..spectrum import DEFAULT_THRESHOLD_FRACTION, _magnitudes, envelope_coverage

# Generated bank kind -> the variant whose fill draws it. "random" is the
# framework's default init of a depthwise conv, i.e. what `chans` freezes.
BANK_KINDS = {"random": "chans", "correlated": "correlated", "shared": "shared", "smooth": "smooth",
              "delta": "delta", "box": "box", "gaussian": "gaussian"}
# The Figure 1 / Figure 3 set drawn when the CLI is given neither --bank nor --model.
DEFAULT_BANKS = ["random", "correlated:rho=0.5", "correlated:rho=0.99", "shared", "smooth:sigma=1",
                 "delta", "box", "gaussian:sigma=1"]
# Radius (cycles per pixel; Nyquist is 0.5) beyond which a frequency counts as "high".
HIGH_FREQ_CUTOFF = 0.25


def bank_for(kind: str, channels: int, kernel_size: int, seed: int = 0, **params) -> np.ndarray:
    """A generated (C, k, k) bank: the first SpatialMix layer a variant-``seed`` model would freeze."""
    if kind not in BANK_KINDS:
        raise ConfigError(f"unknown bank kind '{kind}'; choose one of: {', '.join(BANK_KINDS)}")
    for key, value in (("channels", channels), ("kernel_size", kernel_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"bank {kind}: {key} must be a positive integer, got {value!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"bank {kind}: seed must be a non-negative integer, got {seed!r}")
    variant = BANK_KINDS[kind]
    try:
        params = resolve_variant(variant, params)
    except ConfigError as exc:  # name the bank kind, not the variant it maps to
        raise ConfigError(str(exc).replace(f"variant '{variant}'", f"bank '{kind}'")) from None
    layer = SpatialMix(channels, kernel_size)
    # Same per-layer seed as apply_variant gives its first layer (index 0).
    VARIANTS[variant].fill(layer, seed * 100_003, params)
    return layer.weight.detach().squeeze(1).numpy().astype(np.float64)


def bank_label(kind: str, params: dict) -> str:
    return kind + "".join(f"-{k}{v:g}" for k, v in sorted(params.items()))


def parse_bank(text: str) -> tuple[str, dict]:
    """``"correlated:rho=0.9"`` -> ("correlated", {"rho": 0.9}), params validated, defaults filled."""
    kind, params = parse_variant(text)
    if kind not in BANK_KINDS:
        raise ConfigError(f"unknown bank kind '{kind}'; choose one of: {', '.join(BANK_KINDS)}")
    try:
        return kind, resolve_variant(BANK_KINDS[kind], params)
    except ConfigError as exc:
        raise ConfigError(str(exc).replace(f"variant '{BANK_KINDS[kind]}'", f"bank '{kind}'")) from None


def model_banks(source: str, layer: str = "0", store_root=None) -> dict[str, np.ndarray]:
    """Banks of a trained model (zoo name or checkpoint dir), by ``name[layer]``; ``layer`` = index or 'all'."""
    path = Path(source)
    if path.is_dir() and (path / "meta.json").is_file():
        model, _ = load_checkpoint(path)
    else:
        store = ModelStore(store_root or default_store_root())
        try:
            exists = store.exists(source)
        except ConfigError:
            exists = False
        if not exists:
            raise ConfigError(f"unknown model '{source}': not in the zoo store {store.root} and not a "
                              f"checkpoint directory; see `robustmix zoo list`")
        model, _ = store.load(source)
    layers = [m for m in model.modules() if isinstance(m, SpatialMix)]
    if not layers:
        raise ConfigError(f"model '{source}' has no spatial (SpatialMix) layers to analyse")
    if layer == "all":
        chosen = list(range(len(layers)))
    else:
        try:
            chosen = [int(layer)]
        except ValueError:
            raise ConfigError(f"--layer: expected an index or 'all', got '{layer}'") from None
        if not -len(layers) <= chosen[0] < len(layers):
            raise ConfigError(f"--layer {layer}: model '{source}' has {len(layers)} SpatialMix layers "
                              f"(0..{len(layers) - 1})")
    return {f"{source}[{i % len(layers)}]": layers[i].weight.detach().cpu().squeeze(1).double().numpy()
            for i in chosen}


def _high_freq_fraction(env: np.ndarray, cutoff: float = HIGH_FREQ_CUTOFF) -> np.ndarray:
    """Fraction of envelope power beyond radius ``cutoff`` (cycles/pixel), per row of (m, n, n)."""
    n = env.shape[-1]
    f = np.fft.fftshift(np.fft.fftfreq(n))  # matches the fftshifted magnitudes
    radius = np.hypot(f[:, None], f[None, :])
    power = env ** 2
    return (power * (radius > cutoff)).sum(axis=(-2, -1)) / np.maximum(power.sum(axis=(-2, -1)), 1e-300)


def spectrum_table(banks: dict[str, np.ndarray], n: int = 32, threshold: float | None = None,
                   params: dict[str, dict] | None = None) -> pd.DataFrame:
    """Tidy coverage table: one row per (bank, n_filters in 1..C).

    Columns: bank, n_filters, coverage, mean_magnitude (``spectrum.envelope_coverage``,
    whose default threshold is relative to each bank's own mean per-filter peak, so
    banks of any scale compare), high_freq_fraction (envelope power beyond
    HIGH_FREQ_CUTOFF cycles/pixel), channels, kernel_size, n, then ``params[bank]``.
    """
    if not banks:
        raise ConfigError("no filter banks to analyse; pass --bank KIND and/or --model NAME")
    frames = []
    for label, bank in banks.items():
        table = envelope_coverage(bank, n=n, threshold=threshold)
        env = np.maximum.accumulate(_magnitudes(bank, n), axis=0)
        table.insert(0, "bank", label)
        table["high_freq_fraction"] = _high_freq_fraction(env)
        table["channels"], table["kernel_size"], table["n"] = len(env), np.shape(bank)[-1], n
        for key, value in (params or {}).get(label, {}).items():
            table[key] = value
        frames.append(table)
    return pd.concat(frames, ignore_index=True)


def write_spectrum_report(table: pd.DataFrame, banks: dict[str, np.ndarray], out_dir: str | Path,
                          stem: str = "spectrum") -> list[Path]:
    """``spectrum.csv`` plus ``spectrum.png``/``.svg``: coverage curves and full-bank envelopes."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv = out_dir / f"{stem}.csv"
    with atomic_path(csv) as tmp:
        table.to_csv(tmp, index=False)
    labels = list(banks)
    n = int(table["n"].iloc[0])
    cols = min(len(labels), 4)
    rows = math.ceil(len(labels) / cols)
    fig = Figure(figsize=(3.0 * cols + 1.0, 4.0 + 2.9 * rows))
    grid = fig.add_gridspec(1 + rows, cols, height_ratios=[1.6] + [1] * rows, hspace=0.45, wspace=0.3,
                            left=0.08, right=0.97, top=0.95, bottom=0.04)
    ax = fig.add_subplot(grid[0, :])
    for i, label in enumerate(labels):
        d = table[table["bank"] == label]
        ax.plot(d["n_filters"], d["coverage"], label=label, color=f"C{i % 10}",
                linestyle=["-", "--", ":", "-."][(i // 10) % 4])
    ax.set_xscale("log", base=2)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("filters in bank")
    ax.set_ylabel("fraction of frequencies covered")
    ax.set_title(f"Spectral envelope coverage as the bank grows (|DFT| zero-padded to {n}x{n}; covered: "
                 f">= {DEFAULT_THRESHOLD_FRACTION:g} x mean per-filter peak)", fontsize=9)
    ax.grid(True, alpha=0.4)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    half = n // 2
    for i, label in enumerate(labels):
        mag = _magnitudes(banks[label], n)
        # Scale by the bank's mean per-filter peak (the coverage reference), so
        # 1.0 means "as strong as a typical filter's best frequency" in every panel.
        env = mag.max(axis=0) / max(float(mag.max(axis=(1, 2)).mean()), 1e-300)
        a = fig.add_subplot(grid[1 + i // cols, i % cols])
        im = a.imshow(env, cmap="magma", origin="lower", vmin=0,
                      extent=(-half - 0.5, n - half - 0.5, -half - 0.5, n - half - 0.5))
        full = table[table["bank"] == label].iloc[-1]
        a.set_title(f"{label}\n{int(full['n_filters'])} filters, coverage {full['coverage']:.2f}", fontsize=8)
        a.tick_params(labelsize=6)
        fig.colorbar(im, ax=a, shrink=0.8).ax.tick_params(labelsize=6)
    paths = [csv]
    for ext in ("png", "svg"):
        path = out_dir / f"{stem}.{ext}"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=ext, dpi=110, bbox_inches="tight",
                        metadata={"Date": None} if ext == "svg" else None)
        paths.append(path)
    return paths


SPECTRUM_MEMORY_BYTES = 4 * 2**30  # the DFTs of one bank (complex + magnitude) must fit in this


def _check_dft_size(banks: dict[str, np.ndarray], n: int) -> None:
    if n < 1:
        raise ConfigError(f"--n: must be a positive integer, got {n}")
    filters = max(len(b) for b in banks.values())
    per_cell = filters * 24  # complex128 DFT + float64 magnitude per filter and frequency
    if per_cell * n * n > SPECTRUM_MEMORY_BYTES:
        biggest = math.isqrt(SPECTRUM_MEMORY_BYTES // per_cell)
        raise ConfigError(f"--n {n}: the DFTs of {filters} filters at {n}x{n} need about "
                          f"{per_cell * n * n / 2**30:.0f} GiB; use --n {biggest} or less")


def analyse_spectrum(out_dir, bank_texts: list[str] | None = None, models: list[str] | None = None,
                     layer: str | None = None, store_root=None, channels: int = 64, kernel_size: int = 5,
                     seed: int = 0, n: int = 32) -> tuple[pd.DataFrame, list[Path]]:
    """Generated banks (``"correlated:rho=0.9"``) and/or banks of trained models -> table and files.

    With neither, the Figure 1/3 set (DEFAULT_BANKS) is drawn.
    """
    if layer is not None and not models:
        raise ConfigError("--layer picks a layer of a trained model; pass --model NAME with it")
    banks, params = {}, {}
    for text in bank_texts or ([] if models else DEFAULT_BANKS):
        kind, p = parse_bank(text)
        label = bank_label(kind, p)
        banks[label] = bank_for(kind, channels, kernel_size, seed=seed, **p)
        params[label] = {"kind": kind, "seed": seed, **p}
    for source in models or []:
        found = model_banks(source, layer or "0", store_root)  # a corrupt checkpoint stays a CheckpointError
        banks.update(found)
        params.update({label: {"kind": "model"} for label in found})
    if banks:  # no bank at all is spectrum_table's error
        _check_dft_size(banks, n)
    table = spectrum_table(banks, n=n, params=params)
    try:
        paths = write_spectrum_report(table, banks, out_dir)
    except OSError as exc:  # nothing is written before the directory and its first file exist
        raise StoreError(f"cannot write to {out_dir}: {exc.strerror or exc}; "
                         "pass --out DIR, a writable directory (not a file)") from None
    return table, paths
