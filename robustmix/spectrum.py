"""Spectral view of a spatial filter bank.

A depthwise block's spatial filters (C, k, k) are zero-padded to n x n and
Fourier transformed; the *spectral envelope* is the element-wise maximum of
their magnitudes: the frequencies at which at least one filter of the bank
has gain. Coverage summarises how much of the frequency plane the bank
reaches as filters are added.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .errors import ConfigError

# Default coverage threshold, as a fraction of the mean per-filter peak |DFT|.
# Half the typical peak gain (-6 dB) is the usual "pass band" cut-off: a
# frequency counts as covered when some filter passes it at least half as
# strongly as a typical filter passes its best frequency.
DEFAULT_THRESHOLD_FRACTION = 0.5


def _as_bank(bank) -> np.ndarray:
    """(C, k, k) float64 array from a tensor/array; (C, 1, k, k) and (k, k) accepted."""
    if hasattr(bank, "detach"):  # torch.Tensor without importing torch here
        bank = bank.detach().cpu().numpy()
    arr = np.asarray(bank, dtype=np.float64)
    if arr.ndim == 4 and arr.shape[1] == 1:  # depthwise conv weight layout
        arr = arr[:, 0]
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[0] == 0 or arr.shape[1] == 0 or arr.shape[2] == 0:
        raise ConfigError(
            f"filter bank has shape {tuple(np.shape(bank))}; expected (C, k, k) spatial filters")
    return arr


def _magnitudes(bank, n: int) -> np.ndarray:
    arr = _as_bank(bank)
    if n < max(arr.shape[1:]):
        raise ConfigError(
            f"spectrum size n={n} is smaller than the {arr.shape[1]}x{arr.shape[2]} filters; "
            f"use n >= {max(arr.shape[1:])}")
    # fft2 with s=(n, n) zero-pads each filter at the end: the magnitude is
    # independent of where the filter sits, so no centring is needed.
    mag = np.abs(np.fft.fft2(arr, s=(n, n), axes=(-2, -1)))
    return np.fft.fftshift(mag, axes=(-2, -1))  # DC in the centre, for display


def spectral_envelope(bank, n: int = 32) -> np.ndarray:
    """Element-wise max over the bank of |2D DFT| (zero-padded to n x n, fftshifted)."""
    return _magnitudes(bank, n).max(axis=0)


def envelope_coverage(bank, n: int = 32, threshold: float | None = None) -> pd.DataFrame:
    """Coverage of the frequency plane as the bank grows from 1 to C filters.

    Rows m = 1..C use the first m filters. ``coverage`` is the fraction of the
    n*n frequencies whose envelope is >= ``threshold``; ``mean_magnitude`` is
    the envelope's mean. Default threshold: DEFAULT_THRESHOLD_FRACTION (0.5)
    times the mean over the whole bank of each filter's peak magnitude, fixed
    for all m so the rows are comparable.
    """
    mag = _magnitudes(bank, n)
    if threshold is None:
        threshold = DEFAULT_THRESHOLD_FRACTION * float(mag.max(axis=(1, 2)).mean())
    env = np.maximum.accumulate(mag, axis=0)  # env[m-1] = envelope of the first m filters
    return pd.DataFrame({
        "n_filters": np.arange(1, len(mag) + 1),
        "coverage": (env >= threshold).mean(axis=(1, 2)),
        "mean_magnitude": env.mean(axis=(1, 2)),
    })
