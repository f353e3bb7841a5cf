"""The 15 common corruptions of Hendrycks & Dietterich (2019), applied on the fly to any data set.

The corruption functions are those of the ``imagecorruptions`` package (the
ImageNet-C definitions and parameters). Three of them no longer run with
numpy 2 / scikit-image >= 0.19 and are re-implemented here line for line
from the package (see each function). The package also refuses images
smaller than 32 pixels: smaller ones are reflect-padded to 32, corrupted and
cropped back, so a 28x28 image keeps its own pixels in the centre.

Grayscale images are corrupted as 3-channel images (the package works on
RGB) and channel 0 is kept. Every image is corrupted under its own seed
(``image_seed``: eval seed, corruption, severity, example index), with the
global numpy RNG the package draws from saved and restored around it, so a
corrupted example is the same whatever batch, order or process it is made
in, and the caller's RNG is untouched.
"""
from __future__ import annotations

import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import version

import numpy as np
import torch
from PIL import Image
from skimage.filters import gaussian
from skimage.util import random_noise

with warnings.catch_warnings():  # the package imports the deprecated pkg_resources for its frost images
    warnings.simplefilter("ignore")
    from imagecorruptions import corruptions as _package

from .errors import ConfigError
from .provenance import stable_hash

# imagecorruptions.get_corruption_names("common"), in its order (noise, blur, weather, digital).
CORRUPTION_NAMES = (
    "gaussian_noise", "shot_noise", "impulse_noise",
    "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
    "snow", "frost", "fog", "brightness",
    "contrast", "elastic_transform", "pixelate", "jpeg_compression",
)
SEVERITIES = (1, 2, 3, 4, 5)
MIN_SIDE = 32  # the package's minimum height and width
# Recorded in every unit key: a change of what an image becomes must not reuse old units.
DEFINITION = f"imagecorruptions-{version('imagecorruptions')}+robustmix-1"


def check_corruption(name) -> str:
    if name not in CORRUPTION_NAMES:
        raise ConfigError(f"unknown corruption {name!r}; choose from {', '.join(CORRUPTION_NAMES)}")
    return name


def check_severity(severity) -> int:
    if isinstance(severity, bool) or not isinstance(severity, int) or severity not in SEVERITIES:
        raise ConfigError(f"corruption severity must be an integer 1 to 5, got {severity!r}; "
                          f"e.g. severities = [1, 3, 5]")
    return severity


@dataclass
class CorruptionSpec:
    """``[threat.corruptions]`` of an eval spec."""
    types: list[str] = field(default_factory=lambda: list(CORRUPTION_NAMES))
    severities: list[int] = field(default_factory=lambda: list(SEVERITIES))
    n: int | None = None  # at most this many of the spec's examples (None: all of data.n)

    def validate(self, where):
        if not isinstance(self.types, list) or not self.types:
            raise ConfigError(f"{where}.types: list at least one corruption, e.g. types = [\"fog\"]")
        if not isinstance(self.severities, list) or not self.severities:
            raise ConfigError(f"{where}.severities: list at least one severity 1 to 5, e.g. severities = [1, 3, 5]")
        for name in self.types:
            try:
                check_corruption(name)
            except ConfigError as exc:
                raise ConfigError(f"{where}.types: {exc}") from None
        for s in self.severities:
            try:
                check_severity(s)
            except ConfigError as exc:
                raise ConfigError(f"{where}.severities: {exc}") from None
        if self.n is not None and (isinstance(self.n, bool) or not isinstance(self.n, int) or self.n <= 0):
            raise ConfigError(f"{where}.n: must be a positive integer, got {self.n!r}")
        # Fixed orders, so the plan (and so every unit key) does not depend on how the spec lists them.
        self.types = [c for c in CORRUPTION_NAMES if c in self.types]
        self.severities = sorted(set(self.severities))


def image_seed(eval_seed: int, name: str, severity: int, index: int) -> int:
    """The seed of one corrupted example: a 32-bit function of what determines it."""
    return int(stable_hash([eval_seed, name, severity, int(index)])[:8], 16)


@contextmanager
def numpy_rng(seed: int):
    """Seed numpy's global RNG (which the package draws from) for the block, then restore it."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


# ------------------------------------------------------------------ repaired package functions

def _plasma_fractal(mapsize=256, wibbledecay=3):
    """The package's diamond-square heightmap (for fog); its ``np.float_`` is gone in numpy 2."""
    assert mapsize & (mapsize - 1) == 0
    maparray = np.empty((mapsize, mapsize), dtype=np.float64)
    maparray[0, 0] = 0
    stepsize = mapsize
    wibble = 100

    def wibbledmean(array):
        return array / 4 + wibble * np.random.uniform(-wibble, wibble, array.shape)

    def fillsquares():
        cornerref = maparray[0:mapsize:stepsize, 0:mapsize:stepsize]
        squareaccum = cornerref + np.roll(cornerref, shift=-1, axis=0)
        squareaccum += np.roll(squareaccum, shift=-1, axis=1)
        maparray[stepsize // 2:mapsize:stepsize, stepsize // 2:mapsize:stepsize] = wibbledmean(squareaccum)

    def filldiamonds():
        mapsize_ = maparray.shape[0]
        drgrid = maparray[stepsize // 2:mapsize_:stepsize, stepsize // 2:mapsize_:stepsize]
        ulgrid = maparray[0:mapsize_:stepsize, 0:mapsize_:stepsize]
        ldrsum = drgrid + np.roll(drgrid, 1, axis=0)
        lulsum = ulgrid + np.roll(ulgrid, -1, axis=1)
        ltsum = ldrsum + lulsum
        maparray[0:mapsize_:stepsize, stepsize // 2:mapsize_:stepsize] = wibbledmean(ltsum)
        tdrsum = drgrid + np.roll(drgrid, 1, axis=1)
        tulsum = ulgrid + np.roll(ulgrid, -1, axis=0)
        ttsum = tdrsum + tulsum
        maparray[stepsize // 2:mapsize_:stepsize, 0:mapsize_:stepsize] = wibbledmean(ttsum)

    while stepsize >= 2:
        fillsquares()
        filldiamonds()
        stepsize //= 2
        wibble /= wibbledecay

    maparray -= maparray.min()
    return maparray / maparray.max()


def _fog(x, severity=1):
    """The package's fog over the repaired heightmap (same parameters, same draws)."""
    c = [(1.5, 2), (2., 2), (2.5, 1.7), (2.5, 1.5), (3., 1.4)][severity - 1]
    shape = np.array(x).shape
    map_size = _package.next_power_of_2(int(np.max(shape)))
    x = np.array(x) / 255.
    max_val = x.max()
    x += c[0] * _plasma_fractal(mapsize=map_size, wibbledecay=c[1])[:shape[0], :shape[1]][..., np.newaxis]
    return np.clip(x * max_val / (max_val + c[0]), 0, 1) * 255


def _glass_blur(x, severity=1):
    """The package's glass blur; scikit-image >= 0.19 renamed gaussian's ``multichannel`` to ``channel_axis``.

    The pixel "swap" keeps the package's (and ImageNet-C's) tuple assignment of numpy
    views, which copies the neighbour into both places rather than swapping: that is
    the published corruption, so it is reproduced as is.
    """
    c = [(0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2)][severity - 1]
    x = np.uint8(gaussian(np.array(x) / 255., sigma=c[0], channel_axis=-1) * 255)
    x_shape = np.array(x).shape
    for _ in range(c[2]):
        for h in range(x_shape[0] - c[1], c[1], -1):
            for w in range(x_shape[1] - c[1], c[1], -1):
                dx, dy = np.random.randint(-c[1], c[1], size=(2,))
                h_prime, w_prime = h + dy, w + dx
                x[h, w], x[h_prime, w_prime] = x[h_prime, w_prime], x[h, w]
    return np.clip(gaussian(x / 255., sigma=c[0], channel_axis=-1), 0, 1) * 255


def _impulse_noise(x, severity=1):
    """The package's salt-and-pepper noise. scikit-image's random_noise draws from its own,
    unseeded generator (``rng=None``), so the package's version ignores every seed: here
    its generator is seeded from the (seeded) global numpy RNG."""
    c = [.03, .06, .09, 0.17, 0.27][severity - 1]
    x = random_noise(np.array(x) / 255., mode="s&p", amount=c, rng=int(np.random.randint(2 ** 31)))
    return np.clip(x, 0, 1) * 255


_REPAIRED = {"fog": _fog, "glass_blur": _glass_blur, "impulse_noise": _impulse_noise}


# ------------------------------------------------------------------ images and batches

def corrupt_image(image: np.ndarray, name: str, severity: int, seed: int) -> np.ndarray:
    """Corrupt one HxWx3 uint8 image (any size) -> HxWx3 uint8, deterministic in ``seed``."""
    h, w = image.shape[:2]
    ph, pw = max(0, MIN_SIDE - h), max(0, MIN_SIDE - w)
    pad = ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0))
    padded = np.pad(image, pad, mode="reflect") if ph or pw else image
    with numpy_rng(seed):
        fn = _REPAIRED.get(name, _package.__dict__[name])
        out = np.uint8(fn(Image.fromarray(padded), severity))  # as imagecorruptions.corrupt returns it
    return out[pad[0][0]:pad[0][0] + h, pad[1][0]:pad[1][0] + w]


def corrupt_batch(x: torch.Tensor, name: str, severity: int, seeds) -> torch.Tensor:
    """Corrupt a batch (N, C, H, W) in [0, 1], C = 1 or 3, one seed per image -> same shape, dtype, device.

    Images are quantised to uint8 first (the package works on 8-bit images), so a
    float image comes back on the 1/255 grid.
    """
    check_corruption(name)
    check_severity(severity)
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise ConfigError(f"corruptions take images of shape (N, 1 or 3, H, W), got {tuple(x.shape)}")
    if len(seeds) != len(x):
        raise ConfigError(f"corrupt_batch: {len(seeds)} seeds for {len(x)} images; give one seed per image")
    gray = x.shape[1] == 1
    arr = (x.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().permute(0, 2, 3, 1).numpy()
    out = np.empty_like(arr)
    for i, (img, seed) in enumerate(zip(arr, seeds)):
        rgb = np.repeat(img, 3, axis=2) if gray else img
        res = corrupt_image(np.ascontiguousarray(rgb), name, severity, int(seed))
        out[i] = res[..., :1] if gray else res
    return torch.from_numpy(out).permute(0, 3, 1, 2).to(device=x.device, dtype=x.dtype) / 255
