"""Models from outside the zoo: any factory function, or RobustBench's zoo.

Both are wrapped so that, like zoo models, they take [0, 1] pixels and do
their own normalisation.
"""
from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path

import pyautoattack
import torch
import torch.nn as nn

from .errors import CheckpointError, ConfigError
from .models.layers import Normalize


class WithNormalize(nn.Module):
    def __init__(self, model: nn.Module, mean, std):
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.model = model

    def forward(self, x):
        return self.model(self.normalize(x))


def _import_factory(ref: str):
    module_name, _, attr = ref.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"factory '{ref}': cannot import {module_name} ({exc}); "
                          f"check the module path and that it is installed") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ConfigError(f"factory '{ref}': {module_name} has no callable '{attr}'")
    return fn


def import_robustbench():
    """Import robustbench 1.1.1 next to pyautoattack.

    robustbench imports ``autoattack`` (the reference code's import name);
    pyautoattack is the same code packaged under another name, so alias it.
    """
    if "autoattack" not in sys.modules:
        sys.modules["autoattack"] = pyautoattack
        state = getattr(pyautoattack, "state", None)
        if state is None:
            try:
                state = importlib.import_module("pyautoattack.state")
            except ImportError:
                state = types.ModuleType("autoattack.state")
        sys.modules["autoattack.state"] = state
    # Imported here, after the alias, and only for robustbench models: robustbench needs
    # `autoattack` in sys.modules before it loads, and takes seconds to import.
    import robustbench  # noqa: F401

    return robustbench


def _robustbench_model(name: str, dataset: str, threat_model: str, weights: str | None) -> nn.Module:
    import_robustbench()  # robustbench's modules load only after its `autoattack` alias exists
    from robustbench.model_zoo import model_dicts
    from robustbench.model_zoo.enums import BenchmarkDataset, ThreatModel

    rb_dataset = {"cifar10": "cifar10", "cifar100": "cifar100", "imagefolder": "imagenet"}.get(dataset)
    if rb_dataset is None:
        raise ConfigError(f"robustbench models exist for cifar10, cifar100 and imagenet (imagefolder), not {dataset}")
    zoo = model_dicts[BenchmarkDataset(rb_dataset)][ThreatModel(threat_model)]
    if name not in zoo:
        raise ConfigError(f"robustbench has no {rb_dataset}/{threat_model} model '{name}'; "
                          f"see robustbench.model_zoo for the names")
    if weights is None:
        from robustbench.utils import load_model  # downloads where there is internet

        try:
            return load_model(name, model_dir="models", dataset=rb_dataset, threat_model=threat_model)
        except Exception as exc:  # network errors come in many types
            raise CheckpointError(f"robustbench model '{name}': weights not available offline ({exc.__class__.__name__}); "
                                  f"download them elsewhere and pass weights = \"PATH\"") from None
    model = zoo[name]["model"]()
    path = Path(weights)
    if not path.is_file():
        raise CheckpointError(f"weights file {path} not found; pass the path of the model's .pt file")
    try:
        # weights_only: a checkpoint must never be able to run code on load.
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path}: not a tensor-only checkpoint ({exc.__class__.__name__}); "
                              f"robustmix refuses pickled code") from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    state = {k.removeprefix("module."): v for k, v in state.items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path} does not fit robustbench model '{name}' ({str(exc).splitlines()[0]})") from None
    return model


def check_external(ext) -> None:
    """What can be checked of an ``ExternalModel`` without building it: the factory imports,
    the weights file exists, mean and std come together."""
    if ext.factory is not None:
        _import_factory(ext.factory)
    elif ext.weights is not None and not Path(ext.weights).is_file():
        raise CheckpointError(f"weights file {ext.weights} not found; pass the path of the model's .pt file")
    if (ext.mean is None) != (ext.std is None):
        raise ConfigError(f"external model '{ext.name}': give both mean and std, or neither")


def build_external(ext) -> nn.Module:
    """Build an ``ExternalModel`` spec entry into an eval-ready module in [0, 1] space."""
    if ext.factory is not None:
        model = _import_factory(ext.factory)(**ext.kwargs)
        if not isinstance(model, nn.Module):
            raise ConfigError(f"factory '{ext.factory}' returned {type(model).__name__}, not an nn.Module")
    else:
        model = _robustbench_model(ext.robustbench, ext.dataset, ext.threat_model, ext.weights)
    if ext.mean is not None or ext.std is not None:
        if ext.mean is None or ext.std is None:
            raise ConfigError(f"external model '{ext.name}': give both mean and std, or neither")
        was_training = model.training
        model = WithNormalize(model, ext.mean, ext.std)
        model.train(was_training)
    return model
