"""The attack registry: attacks register by decorator under the name a spec uses.

``torchattacks.<Name>`` is not registered one by one: any torchattacks class is
built through the adapter, which checks the name against torchattacks itself.
"""
from __future__ import annotations

from typing import Callable

from ..errors import ConfigError
from ..schema import THREAT_MODELS
from .base import Attack
from .torchattacks_adapter import TorchAttack

_ATTACKS: dict[str, type[Attack]] = {}
TORCHATTACKS_PREFIX = "torchattacks."


def register_attack(name: str) -> Callable[[type[Attack]], type[Attack]]:
    def add(cls: type[Attack]) -> type[Attack]:
        if name in _ATTACKS:
            raise ValueError(f"attack '{name}' is already registered")
        _ATTACKS[name] = cls
        return cls
    return add


def list_attacks() -> list[str]:
    """The registered attacks by name (``torchattacks.<Name>`` adapters come on top of these)."""
    return list(_ATTACKS)


def attack_names() -> tuple[str, ...]:
    """What a spec may name: the registered attacks and the torchattacks adapter."""
    return (*_ATTACKS, TORCHATTACKS_PREFIX + "<Name>")


def make_attack(name: str, params: dict | None, threat_model: str, precision: str = "fp32") -> Attack:
    """Build an attack by name; unknown names, arguments, types, threat models or precisions raise
    ConfigError."""
    if threat_model not in THREAT_MODELS:
        raise ConfigError(f"unknown threat model {threat_model!r}; choose one of: {', '.join(THREAT_MODELS)}")
    params = {} if params is None else params
    if isinstance(name, str) and name.startswith(TORCHATTACKS_PREFIX):
        return TorchAttack(name, params, threat_model, precision)
    if name not in _ATTACKS:
        raise ConfigError(f"unknown attack {name!r}; choose one of: {', '.join(attack_names())}")
    return _ATTACKS[name](name, params, threat_model, precision)
