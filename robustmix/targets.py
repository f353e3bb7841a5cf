"""The models of an eval: zoo, outside or handed in, loaded lazily, each checked against the data."""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn

from .errors import ConfigError, DataError
from .external import build_external, check_external
from .models.layers import SpatialMix
from .provenance import stable_hash
from .spec import EvalSpec
from .store import ModelStore, default_store_root, sha256_file


@dataclass
class Target:
    """A model to evaluate, loaded lazily, with what the results table needs to know."""
    name: str
    load: Callable[[], nn.Module]
    fingerprint: str                 # identity of the weights: part of every unit key
    variant: str = "external"
    arch: str = "external"
    dataset: str = ""
    train_seed: float = float("nan")
    source: str = "zoo"
    variant_params: dict = field(default_factory=dict)
    expects: dict | None = None      # channels / image_size / num_classes the model was trained for


def _fingerprint(model: nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def resolve_targets(spec: EvalSpec, given: dict[str, nn.Module] | None = None) -> list[Target]:
    """Zoo names/patterns, then external models, then modules handed in by a caller."""
    store = ModelStore(spec.store or default_store_root())
    targets: list[Target] = []
    for pattern in spec.models:
        if given and pattern in given:
            continue
        names = store.names(pattern)
        if not names:
            raise ConfigError(f"models: '{pattern}' matches no model in {store.root}; "
                              f"see `robustmix zoo list` or train it with `robustmix train`")
        for name in names:
            meta = store.meta(name)
            if meta.get("task", "classify") != "classify":  # attacks score class predictions
                raise ConfigError(f"models: {name} is a {meta['task']} model, not a classifier; "
                                  f"narrow the pattern '{pattern}' to classifiers")
            targets.append(Target(
                name=name, load=lambda n=name: store.load(n)[0], fingerprint=meta["weights_sha256"],
                variant=meta["variant"], arch=meta["model"]["name"], dataset=meta["dataset"]["name"],
                train_seed=meta["seed"], variant_params=meta["variant_params"], expects=meta["dataset"]))
    for ext in spec.external:
        check_external(ext)  # a bad factory or weights path fails now, before the store exists
        ident = stable_hash(asdict(ext))
        if ext.weights:
            if Path(ext.weights).is_file():
                ident = stable_hash([ident, sha256_file(Path(ext.weights))])
        targets.append(Target(name=ext.name, load=lambda e=ext: build_external(e), fingerprint=ident,
                              arch=ext.robustbench or ext.factory, dataset=ext.dataset,
                              source="robustbench" if ext.robustbench else "factory"))
    for name, module in (given or {}).items():
        targets.append(Target(name=name, load=lambda m=module: m, fingerprint=_fingerprint(module),
                              arch=type(module).__name__, dataset=spec.data.name, source="python",
                              variant=getattr(module, "variant", "external")))
    seen = set()
    unique = [t for t in targets if not (t.name in seen or seen.add(t.name))]
    return unique


def _describe(info) -> str:
    return f"{info.name} ({info.channels}x{info.image_size[0]}x{info.image_size[1]}, {info.num_classes} classes)"


def check_expects(target: Target, info) -> None:
    """A zoo model's recorded data set against the spec's, without loading the model."""
    exp = target.expects
    if exp is not None:
        have = (exp["channels"], tuple(exp["image_size"]), exp["num_classes"])
        if have != (info.channels, tuple(info.image_size), info.num_classes):
            raise DataError(f"model {target.name} was trained on {exp['name']} ({have[0]}x{have[1][0]}x{have[1][1]}, "
                            f"{have[2]} classes) but the spec's data is {_describe(info)}; "
                            f"evaluate it on {exp['name']}")


def check_fit(target: Target, model: nn.Module, info, device) -> None:
    """A data set that does not fit the model is a one-line DataError, not a shape trace."""
    check_expects(target, info)
    want = _describe(info)
    probe = torch.zeros(1, info.channels, *info.image_size, device=device)
    previous = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(probe)
    except RuntimeError as exc:
        raise DataError(f"model {target.name} cannot take {want} inputs ({str(exc).splitlines()[0][:120]}); "
                        f"choose the data set it was built for") from None
    finally:
        model.train(previous)
    if out.ndim != 2 or out.shape[1] != info.num_classes:
        raise DataError(f"model {target.name} outputs {tuple(out.shape[1:])} scores but {info.name} has "
                        f"{info.num_classes} classes; choose the data set it was built for")


def first_bank(model: nn.Module) -> np.ndarray | None:
    layers = [m for m in model.modules() if isinstance(m, SpatialMix)]
    if not layers:
        return None
    return layers[0].weight.detach().cpu().squeeze(1).numpy()
