"""The plan of an eval: the example subset and the ordered list of work units, a function of the spec."""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass

import torch

from .errors import ConfigError
from .provenance import stable_hash
from .schema import STORE_VERSION
from .spec import DEFAULT_VOTES, AttackSpec, EvalSpec, check_n
from .targets import Target


def example_indices(spec: EvalSpec, n_total: int) -> torch.Tensor:
    """The seeded, recorded subset of the split that every attack draws from (in order)."""
    n = check_n(spec.data.n, "data.n")
    if n > n_total:  # not clamped: the results would silently cover fewer examples than asked for
        raise ConfigError(f"data.n = {n} but {spec.data.name} {spec.data.split} has {n_total} examples; "
                          f"use n <= {n_total} (data.n in the spec or --n)")
    g = torch.Generator().manual_seed(spec.seed)
    return torch.randperm(n_total, generator=g)[:n]


def unit_seed(*parts) -> int:
    return int(stable_hash(list(parts))[:8], 16)


@dataclass
class Unit:
    """One work unit: a model x attack x threat model x chunk of the example subset, every eps."""
    target: Target
    attack: AttackSpec
    threat_model: str
    grid: list[float]
    start: int
    stop: int
    source: Target | None            # a transfer attack's source model
    key: str                         # names the unit's file in the store: everything that determines it


def plan_units(spec: EvalSpec, targets: list[Target], data_id: list, n: int) -> list[Unit]:
    """Every unit of the eval, in a fixed order: models, attacks, threat models, chunks.

    The order is a function of the spec alone, so every process of a sharded
    eval derives the same list and takes its share by position.
    """
    by_name = {t.name: t for t in targets}
    for attack in spec.attack_list:
        for pattern in attack.models or ():
            if not fnmatch.filter(by_name, pattern):
                raise ConfigError(f"attack '{attack.label}': models pattern '{pattern}' matches none of the spec's "
                                  f"models ({', '.join(by_name)}); fix the pattern or drop it")
    units = []
    for target in targets:
        for attack in spec.attack_list:
            if attack.models is not None and not any(fnmatch.fnmatch(target.name, p) for p in attack.models):
                continue
            source = None
            if "source" in attack.params:
                source = by_name.get(attack.params["source"])
                if source is None:
                    raise ConfigError(f"attack '{attack.label}': source '{attack.params['source']}' is not one of "
                                      f"the spec's models ({', '.join(by_name)}); set source to one of them")
            for tm in spec.attack_threats(attack):
                grid = spec.attack_eps(attack, tm)
                n_att = min(attack.n or n, n)  # an attack's n is "at most": a smaller --n run covers all of it
                for start in range(0, n_att, spec.data.batch_size):
                    stop = min(start + spec.data.batch_size, n_att)
                    # A transfer unit also depends on the source model's weights.
                    parts = [target.name, target.fingerprint, attack.name, attack.params,
                             source.fingerprint if source is not None else None, tm, grid, data_id, start, stop,
                             spec.nested, STORE_VERSION]
                    if spec.precision != "fp32":  # so fp32 units keep the keys they had before precision existed
                        parts.append(spec.precision)
                    if spec.randomized_votes != DEFAULT_VOTES:  # likewise; it decides a randomised model's rows
                        parts.append(["votes", spec.randomized_votes])
                    units.append(Unit(target, attack, tm, grid, start, stop, source, stable_hash(parts)[:32]))
    return units
