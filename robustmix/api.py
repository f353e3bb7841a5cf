"""The Python API for notebooks: ``robustmix.evaluate``, ``robustmix.report``, ``robustmix.verify``.

``evaluate`` builds the same EvalSpec a TOML file would give and runs the same
``run_eval`` into a result store (a fresh temporary directory unless
``results=`` names one), so a notebook result is a store like any other:
``robustmix report``, ``export`` and ``verify`` read it, and the same model,
data, eps, attacks and seed give the same per-example results as the CLI.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from . import memdata
from .adversarials import Verification, verify_store
from .config import from_dict
from .errors import ConfigError
from .evaluate import run_eval, summary_text
from .report import write_report
from .results import ResultStore
from .schema import THREAT_MODELS
from .spec import DEFAULT_VOTES, EvalSpec
from .store import ModelStore, default_store_root
from .units import example_indices

# eps grids used when none is given: clean plus the usual small-image range.
DEFAULT_EPS = {"Linf": [0, "1/255", "2/255", "4/255", "8/255"], "L2": [0, 0.25, 0.5, 1.0], "L1": [0, 1, 2, 5, 10]}


@dataclass
class Evaluation:
    """What ``evaluate`` returns: the tidy tables and the store they live in."""
    summary: pd.DataFrame        # one row per model x attack x threat model x eps (schema.SUMMARY_COLUMNS)
    examples: pd.DataFrame       # one row per example of each of those (schema.EXAMPLE_COLUMNS and more)
    results: Path                # the result store
    spec: EvalSpec
    data_sha256: str | None      # identity of the evaluated examples (None for a named data set)
    models: dict = field(default_factory=dict, repr=False)
    data: object = field(default=None, repr=False)

    def report(self, out) -> Path:
        """Write the HTML report; return the path of its index.html."""
        return write_report(self.results, out)

    def verify(self, device=None) -> Verification:
        """Re-score the saved adversarial examples (evaluate(..., save_adversarials=True))."""
        return verify_store(self.results, self.spec.store, models=self.models or None, data=self.data,
                            device=device)

    def __str__(self) -> str:
        return summary_text(self.summary)


def _models(model, store) -> tuple[dict, list[str], int | None]:
    """(modules handed in, names for the spec, classes of a zoo model)."""
    if isinstance(model, nn.Module):
        return {"model": model}, ["model"], None
    if isinstance(model, dict) and model and all(isinstance(k, str) and isinstance(v, nn.Module)
                                                  for k, v in model.items()):
        return dict(model), list(model), None
    names_given = isinstance(model, (list, tuple)) and model and all(isinstance(m, str) for m in model)
    if isinstance(model, str) or names_given:
        names = [model] if isinstance(model, str) else list(model)
        zoo = ModelStore(store or default_store_root())
        found = [n for p in names for n in zoo.names(p)]
        if not found:
            raise ConfigError(f"model: '{names[0]}' matches no model in {zoo.root}; pass store=DIR or an nn.Module")
        return {}, names, int(zoo.meta(found[0])["dataset"]["num_classes"])
    raise ConfigError(f"model must be an nn.Module, a dict of name -> nn.Module, or zoo model names, "
                      f"got a {type(model).__name__}")


def _classes(modules: dict, x: torch.Tensor) -> int:
    module = next(iter(modules.values()))
    device = next(iter(module.parameters()), torch.empty(0)).device
    previous = module.training
    module.eval()
    try:
        with torch.no_grad():
            out = module(x[:1].to(device))
    except RuntimeError as exc:
        raise ConfigError(f"model cannot take the data's {tuple(x.shape[1:])} images "
                          f"({str(exc).splitlines()[0][:120]})") from None
    finally:
        module.train(previous)
    if out.ndim != 2:
        raise ConfigError(f"model outputs shape {tuple(out.shape)}; it must return (N, classes) logits")
    return int(out.shape[1])


def _attacks(attacks) -> list[dict]:
    if isinstance(attacks, (str, dict)):
        attacks = [attacks]
    out = []
    for a in attacks:
        if isinstance(a, str):
            out.append({"name": a})
        elif isinstance(a, dict):
            out.append(dict(a))
        else:
            raise ConfigError(f"attacks: give names or tables like {{'name': 'pgd', 'steps': 20}}, got {a!r}")
    return out


def evaluate(model, data, eps=None, attacks=("fgsm", "pgd"), threat_model: str = "Linf", n: int | None = None,
             seed: int = 0, *, name: str = "python", data_label: str = "tensors", results=None,
             batch_size: int = 500, nested: bool = True, precision: str = "fp32",
             randomized_votes: int = DEFAULT_VOTES, save_adversarials: bool = False, store=None, device=None,
             progress: bool = False, log=None) -> Evaluation:
    """Evaluate ``model`` on ``data`` over ``eps`` with ``attacks``; return an :class:`Evaluation`.

    model: an nn.Module taking [0, 1] images (normalisation inside), a dict name -> module, or zoo
    model names/patterns (with ``store``). data: an (x, y) pair of tensors (x N x C x H x W in [0, 1]
    or uint8), a map-style torch Dataset of (image, label), or a DataLoader (its dataset is read; its
    sampler is not: robustmix draws its own seeded subset of ``n`` examples, all by default). eps: a
    list of numbers or strings like "8/255" (0 gives clean accuracy). attacks: names or dicts of a
    spec's [[attacks]] tables. results: the store directory (default: a new temporary directory).
    """
    if threat_model not in THREAT_MODELS:
        raise ConfigError(f"threat_model: unknown {threat_model!r}; choose one of {', '.join(THREAT_MODELS)}")
    modules, names, classes = _models(model, store)
    ds = memdata.adapt(data)
    if len(ds) == 0:
        raise ConfigError("data: no examples; give at least one")
    probe_x, _ = memdata.draw(ds, [0])
    classes = classes or _classes(modules, probe_x)
    fields = {"name": name, "models": names, "store": None if store is None else str(store),
              "data": {"name": data_label, "n": len(ds) if n is None else n, "batch_size": batch_size},
              "threat": {threat_model: {"eps": list(DEFAULT_EPS.get(threat_model, []) if eps is None else eps)}},
              "attacks": _attacks(attacks), "seed": seed, "nested": nested, "precision": precision,
              "randomized_votes": randomized_votes, "save_adversarials": save_adversarials}
    spec = from_dict(EvalSpec, fields)
    indices = example_indices(spec, len(ds))
    x, y = memdata.draw(ds, indices)
    memdata.check_examples(x, y, classes)
    digest = memdata.identity(ds, x, y)
    spec.data.name = memdata.data_name(data_label, digest)
    named = memdata.NamedDataset(ds, memdata.info_for(ds, spec.data.name, classes))
    root = Path(results) if results is not None else Path(tempfile.mkdtemp(prefix="robustmix-eval-"))
    summary = run_eval(spec, root, models=modules or None, device=device, progress=progress,
                       log=log or (lambda *a, **k: None), data=named)
    summary.attrs["results_dir"] = str(root)
    examples = ResultStore(root).read_units(summary.attrs["unit_keys"])
    return Evaluation(summary, examples, root, spec, digest, modules, data)


def report(results, out) -> Path:
    """Write the HTML report of an Evaluation, a summary from ``evaluate`` or a result store directory."""
    if isinstance(results, Evaluation):
        return results.report(out)
    if isinstance(results, pd.DataFrame):
        if "results_dir" not in results.attrs:
            raise ConfigError("report: this DataFrame does not come from robustmix.evaluate; pass the "
                              "Evaluation or its result store directory")
        results = results.attrs["results_dir"]
    if not isinstance(results, (str, Path)):
        raise ConfigError(f"report: pass an Evaluation, its summary or a result store directory, "
                          f"got a {type(results).__name__}")
    return write_report(results, out)


def verify(results, store=None, *, models: dict | None = None, data=None, device=None) -> Verification:
    """Re-score the saved adversarial examples of an Evaluation or a result store directory."""
    if isinstance(results, Evaluation):
        return results.verify(device)
    if isinstance(models, nn.Module):
        models = {"model": models}
    return verify_store(results, store, models=models, data=data, device=device)


__all__ = ["Evaluation", "evaluate", "report", "verify"]
