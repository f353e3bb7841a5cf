"""The model registry: the only global in robustmix.

Entrypoints are registered by decorator, timm style; a name carries its
hyper-parameters (``convmixer_256_8_ks5_p2``). ``create_model`` builds the
architecture only; ``robustmix.variants.build_variant`` builds it in a variant.
"""
from __future__ import annotations

import fnmatch
from typing import Callable

import torch.nn as nn

from ..errors import ConfigError

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    name = fn.__name__
    if name in _MODELS:
        raise ValueError(f"model '{name}' is already registered")
    _MODELS[name] = fn
    return fn


def list_models(pattern: str = "*") -> list[str]:
    return sorted(n for n in _MODELS if fnmatch.fnmatch(n, pattern))


def model_entrypoint(name: str) -> Callable[..., nn.Module]:
    try:
        return _MODELS[name]
    except KeyError:
        close = [n for n in _MODELS if n.split("_")[0] == name.split("_")[0]] or list(_MODELS)
        raise ConfigError(
            f"unknown model '{name}'; choose one of: {', '.join(sorted(close))} "
            f"(see `robustmix models`)") from None


def build(cls: type, defaults: dict, overrides: dict) -> nn.Module:
    """Instantiate ``cls`` with ``defaults`` updated by non-None ``overrides``.

    The merged arguments are kept on the model (``model_args``) so a
    checkpoint can rebuild exactly this architecture.
    """
    args = {**defaults, **{k: v for k, v in overrides.items() if v is not None}}
    unknown = sorted(set(args) - set(cls.ARG_NAMES))
    if unknown:
        raise ConfigError(f"unknown model argument '{unknown[0]}' for {cls.__name__}; "
                          f"valid: {', '.join(cls.ARG_NAMES)}")
    model = cls(**args)
    model.model_args = args
    return model


def create_model(name: str, *, num_classes: int | None = None, in_chans: int | None = None,
                 **overrides) -> nn.Module:
    """Build registered model ``name`` (every layer learns; see ``variants.build_variant``).

    ``None`` keyword arguments are dropped so an unset CLI flag never
    overrides a model default (``mean``/``std`` are accepted here too).
    """
    model = model_entrypoint(name)(num_classes=num_classes, in_chans=in_chans, **overrides)
    model.model_name = name
    return model
