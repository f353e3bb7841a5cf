"""The paper's variants, applied to any registered separable model.

A variant decides which mixing layers learn and, for frozen ones, what they
hold. Frozen banks are a pure function of (layer shapes, variant, params,
seed): each layer is re-initialised under its own seed derived from the
variant seed, so ``audit_frozen`` can rebuild the bank and check it
bit-for-bit after training.

| variant    | spatial (depthwise)                      | channel (pointwise) |
|------------|------------------------------------------|---------------------|
| full       | learned                                  | learned             |
| chans      | frozen, seeded default init              | learned             |
| space      | learned                                  | frozen, seeded init |
| smooth     | frozen, seeded init * Gaussian(sigma), renormed | learned      |
| shared     | frozen, one seeded filter for all channels | learned           |
| correlated | frozen, filters with pairwise correlation rho | learned        |
| delta/box/gaussian | frozen, deterministic filter      | learned             |
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from .errors import ConfigError
from .models.layers import ChannelMix, SpatialMix
from .models.registry import create_model


@dataclass(frozen=True)
class VariantSpec:
    frozen: str | None                      # "spatial", "channel" or None
    fill: Callable | None                   # (layer, generator_seed, params) -> None, sets frozen weights
    defaults: dict = field(default_factory=dict)
    doc: str = ""


def _reset(layer: nn.Conv2d, seed: int) -> None:
    """The framework's default init of ``layer``, drawn from ``seed`` alone."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        layer.reset_parameters()


def _random(layer, seed, params):
    _reset(layer, seed)


def _gaussian_kernel(sigma: float, device=None) -> torch.Tensor:
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=torch.float64, device=device)
    g = torch.exp(-0.5 * (t / sigma) ** 2)
    g2 = torch.outer(g, g)
    return g2 / g2.sum()


def smooth_filters(weight: torch.Tensor, sigma: float) -> torch.Tensor:
    """Convolve each k x k filter with a Gaussian, keeping its L2 norm.

    Rescaling to the pre-smoothing norm means only the spectrum changes
    (high frequencies are damped), not the filter's gain.
    """
    if sigma <= 0:
        return weight.clone()
    w = weight.detach().to(torch.float64)
    flat = w.reshape(-1, 1, *w.shape[-2:])
    g = _gaussian_kernel(sigma, w.device)[None, None]
    pad = g.shape[-1] // 2
    # Pad the filter so smoothing can spread energy beyond the k x k support,
    # then crop back to k x k: the layer's kernel size is fixed.
    sm = F.conv2d(F.pad(flat, (pad, pad, pad, pad)), g)
    norm_before = flat.flatten(1).norm(dim=1).clamp_min(1e-12)
    norm_after = sm.flatten(1).norm(dim=1).clamp_min(1e-12)
    sm = sm * (norm_before / norm_after).view(-1, 1, 1, 1)
    return sm.reshape(w.shape).to(weight.dtype)


def _smooth(layer, seed, params):
    _reset(layer, seed)
    with torch.no_grad():
        layer.weight.copy_(smooth_filters(layer.weight, params["sigma"]))


def _shared(layer, seed, params):
    _reset(layer, seed)
    with torch.no_grad():
        layer.weight.copy_(layer.weight[:1].expand_as(layer.weight))


def _correlated(layer, seed, params):
    # w_c = sqrt(rho) s + sqrt(1 - rho) e_c with s, e_c i.i.d. from the default
    # init: pairwise correlation rho, same per-element variance as the init.
    rho = params["rho"]
    _reset(layer, seed + 1_000_003)  # an independent draw for the shared component
    shared = layer.weight.detach()[:1].clone()
    _reset(layer, seed)  # the per-filter part (and bias) from the layer's own seed
    with torch.no_grad():
        w = layer.weight
        w.copy_(math.sqrt(rho) * shared.expand_as(w) + math.sqrt(1 - rho) * w)


def _deterministic(make: Callable[[int, dict], torch.Tensor]):
    def fill(layer, seed, params):
        k = layer.weight.shape[-1]
        kernel = make(k, params).to(layer.weight.dtype)
        with torch.no_grad():
            layer.weight.copy_(kernel.expand_as(layer.weight))
            # Zero bias: a delta filter must be an exact identity.
            if layer.bias is not None:
                layer.bias.zero_()
    return fill


def _delta(k, params):
    w = torch.zeros(k, k)
    w[k // 2, k // 2] = 1.0
    return w


def _box(k, params):
    return torch.full((k, k), 1.0 / (k * k))


def _gauss(k, params):
    t = torch.arange(k, dtype=torch.float64) - (k - 1) / 2
    g = torch.exp(-0.5 * (t / params["sigma"]) ** 2)
    g2 = torch.outer(g, g)
    return (g2 / g2.sum()).float()


VARIANTS: dict[str, VariantSpec] = {
    "full": VariantSpec(None, None, doc="everything learns"),
    "chans": VariantSpec("spatial", _random, doc="spatial filters frozen at seeded random init"),
    "space": VariantSpec("channel", _random, doc="channel filters frozen at seeded random init"),
    "smooth": VariantSpec("spatial", _smooth, {"sigma": 1.0},
                          doc="random spatial filters smoothed by a Gaussian of width sigma, renormed, frozen"),
    "shared": VariantSpec("spatial", _shared, doc="one random spatial filter shared by all channels, frozen"),
    "correlated": VariantSpec("spatial", _correlated, {"rho": 0.5},
                              doc="random spatial filters with pairwise correlation rho, frozen"),
    "delta": VariantSpec("spatial", _deterministic(_delta), doc="identity (delta) spatial filters, frozen"),
    "box": VariantSpec("spatial", _deterministic(_box), doc="box (mean) spatial filters, frozen"),
    "gaussian": VariantSpec("spatial", _deterministic(_gauss), {"sigma": 1.0},
                            doc="Gaussian spatial filters of width sigma, frozen"),
}


def list_variants() -> list[str]:
    return list(VARIANTS)


def resolve_variant(variant: str, params: dict | None = None) -> dict:
    """Validate a variant and its params; return the params with defaults filled in."""
    if variant not in VARIANTS:
        raise ConfigError(f"unknown variant '{variant}'; choose one of: {', '.join(VARIANTS)}")
    spec = VARIANTS[variant]
    params = dict(params or {})
    unknown = sorted(set(params) - set(spec.defaults))
    if unknown:
        allowed = ", ".join(spec.defaults) or "none"
        raise ConfigError(f"variant '{variant}' has no parameter '{unknown[0]}' (allowed: {allowed})")
    full = {**spec.defaults, **params}
    for key, value in full.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"variant '{variant}': {key} must be a number, got {value!r}")
        full[key] = float(value)
    if variant == "gaussian" and full["sigma"] <= 0:
        raise ConfigError(f"variant 'gaussian': sigma must be > 0, got {full['sigma']}")
    if variant == "smooth" and full["sigma"] < 0:
        raise ConfigError(f"variant 'smooth': sigma must be >= 0, got {full['sigma']}")
    if variant == "correlated" and not 0.0 <= full["rho"] <= 1.0:
        raise ConfigError(f"variant 'correlated': rho must be in [0, 1], got {full['rho']}")
    return full


def variant_tag(variant: str, params: dict | None = None) -> str:
    """A short, file-name-safe label: ``smooth-sigma2``, ``correlated-rho0.9``."""
    params = resolve_variant(variant, params)
    parts = [variant] + [f"{k}{v:g}" for k, v in sorted(params.items())]
    return "-".join(parts)


def parse_variant(text: str) -> tuple[str, dict]:
    """``"smooth:sigma=2"`` -> ``("smooth", {"sigma": 2.0})`` (CLI form)."""
    name, _, rest = text.partition(":")
    params = {}
    for item in filter(None, rest.split(",")):
        key, eq, value = item.partition("=")
        try:
            params[key.strip()] = float(value)
        except ValueError:
            raise ConfigError(f"variant '{text}': expected key=number after ':', got '{item}'") from None
        if not eq:
            raise ConfigError(f"variant '{text}': expected key=number after ':', got '{item}'")
    return name.strip(), params


def _layers(model: nn.Module, kind: str) -> list[tuple[str, nn.Conv2d]]:
    cls = SpatialMix if kind == "spatial" else ChannelMix
    return [(n, m) for n, m in model.named_modules() if isinstance(m, cls)]


def apply_variant(model: nn.Module, variant: str = "full", seed: int = 0, **params) -> nn.Module:
    """Freeze and fill the mixing layers of ``model`` as ``variant`` says (in place)."""
    params = resolve_variant(variant, params)
    spec = VARIANTS[variant]
    if spec.frozen is not None:
        layers = _layers(model, spec.frozen)
        if not layers:
            raise ConfigError(f"variant '{variant}' needs {spec.frozen} mixing layers; "
                              f"{type(model).__name__} has none")
        for index, (_, layer) in enumerate(layers):
            spec.fill(layer, seed * 100_003 + index, params)
            for p in layer.parameters():
                p.requires_grad_(False)
    model.variant = variant
    model.variant_params = params
    model.variant_seed = seed
    return model


def build_variant(name: str, variant: str = "full", *, variant_seed: int = 0,
                  variant_params: dict | None = None, **model_args) -> nn.Module:
    """Registered architecture ``name`` (``create_model(name, **model_args)``) in ``variant``."""
    return apply_variant(create_model(name, **model_args), variant, seed=variant_seed, **(variant_params or {}))


def frozen_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The parameters this variant froze, by name."""
    return {n: p.detach() for n, p in model.named_parameters() if not p.requires_grad}


def audit_frozen(model: nn.Module) -> list[str]:
    """Names of frozen tensors that differ from a fresh rebuild from the recorded seed."""
    fresh = build_variant(model.model_name, model.variant, variant_seed=model.variant_seed,
                          variant_params=model.variant_params, **model.model_args)
    expected = frozen_state(fresh)
    actual = frozen_state(model)
    if set(expected) != set(actual):
        return sorted(set(expected) ^ set(actual))
    return [n for n in expected if not torch.equal(expected[n].cpu(), actual[n].cpu())]
