"""`robustmix eval`: run a sweep spec over models into a result store.

data subset -> models (zoo, external, or given) -> per (attack, threat model,
chunk) nested eps sweep -> per-example units -> aggregates + diagnostics.
Every unit's seed is derived from (eval seed, model, attack, threat model,
chunk), so per-example results are reproducible and a resumed run equals an
uninterrupted one.
"""
from __future__ import annotations

import ctypes
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
from tqdm import tqdm

from . import data as datasets
from .attacks import make_attack, sweep
from .diagnostics import check_curves, probe_model
from .eps import format_eps
from .errors import ConfigError, DataError
from .models.layers import SpatialMix, count_params
from .provenance import code_version, device_description, package_versions, stable_hash
from .results import ResultStore, aggregate
from .schema import DIAGNOSTIC_COLUMNS, MODEL_COLUMNS, STORE_VERSION, WORST_CASE
from .spec import EvalSpec
from .store import ModelStore, default_store_root
from .train import resolve_device

PROBE_EXAMPLES = 64


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
    import hashlib

    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def resolve_targets(spec: EvalSpec, given: dict[str, nn.Module] | None = None) -> list[Target]:
    """Zoo names/patterns, then external models, then modules handed in by a caller."""
    from .external import build_external

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
            targets.append(Target(
                name=name, load=lambda n=name: store.load(n)[0], fingerprint=meta["weights_sha256"],
                variant=meta["variant"], arch=meta["model"]["name"], dataset=meta["dataset"]["name"],
                train_seed=meta["seed"], variant_params=meta["variant_params"], expects=meta["dataset"]))
    for ext in spec.external:
        ident = stable_hash(asdict(ext))
        if ext.weights:
            from .store import sha256_file
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


def check_fit(target: Target, model: nn.Module, info, device) -> None:
    """A data set that does not fit the model is a one-line DataError, not a shape trace."""
    exp = target.expects
    want = f"{info.name} ({info.channels}x{info.image_size[0]}x{info.image_size[1]}, {info.num_classes} classes)"
    if exp is not None:
        have = (exp["channels"], tuple(exp["image_size"]), exp["num_classes"])
        if have != (info.channels, tuple(info.image_size), info.num_classes):
            raise DataError(f"model {target.name} was trained on {exp['name']} ({have[0]}x{have[1][0]}x{have[1][1]}, "
                            f"{have[2]} classes) but the spec's data is {want}; evaluate it on {exp['name']}")
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


def example_indices(spec: EvalSpec, n_total: int) -> torch.Tensor:
    """The seeded, recorded subset of the split that every attack draws from (in order)."""
    n = min(spec.data.n, n_total)
    g = torch.Generator().manual_seed(spec.seed)
    return torch.randperm(n_total, generator=g)[:n]


def first_bank(model: nn.Module) -> np.ndarray | None:
    layers = [m for m in model.modules() if isinstance(m, SpatialMix)]
    if not layers:
        return None
    return layers[0].weight.detach().cpu().squeeze(1).numpy()


def _release_memory() -> None:
    """Hand freed heap back to the OS between work units.

    Attacks allocate batches of shrinking, irregular sizes (examples leave as
    they break); glibc keeps the fragments, so without a trim the resident
    size of a long eval creeps up with the number of units rather than
    staying at one unit's working set.
    """
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass


def _unit_seed(*parts) -> int:
    return int(stable_hash(list(parts))[:8], 16)


def run_eval(spec: EvalSpec, results_dir: str | Path | None = None, *, models: dict[str, nn.Module] | None = None,
             device: str | None = None, progress: bool = True, log=print) -> pd.DataFrame:
    """Evaluate every model of ``spec``; return the summary table (also written to the store)."""
    # Randomised models draw from the global RNG in forward (probes, clean passes): fork it so the
    # caller's state is untouched, and reseed it per probe/unit so results do not depend on it.
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        return _run_eval(spec, results_dir, models=models, device=device, progress=progress, log=log)


def _run_eval(spec: EvalSpec, results_dir, *, models, device, progress, log) -> pd.DataFrame:
    t_start = time.perf_counter()
    store = ResultStore(results_dir or spec.results or Path("results") / spec.name).open()
    dev = resolve_device(device or "auto")
    targets = resolve_targets(spec, models)
    ds = datasets.load_dataset(spec.data.name, spec.data.split, root=spec.data.root, download=spec.data.download)
    info = ds.info
    indices = example_indices(spec, len(ds))
    n = len(indices)
    bs = spec.data.batch_size
    data_id = [spec.data.name, spec.data.split, n, spec.seed]
    by_name = {t.name: t for t in targets}

    unit_keys, model_rows, probe_keys = [], [], {}
    for target in targets:
        model = target.load()
        was_training = model.training
        model = model.to(dev)
        check_fit(target, model, info, dev)
        total, trainable = count_params(model)
        meta = getattr(model, "checkpoint_meta", None) or {}
        model_rows.append({"model": target.name, "variant": target.variant,
                           "variant_params": str(target.variant_params or ""), "arch": target.arch,
                           "dataset": target.dataset or info.name, "train_seed": target.train_seed,
                           "params": total, "trainable_params": trainable,
                           "clean_acc": meta.get("metrics", {}).get("clean_acc", float("nan")),
                           "source": target.source})
        bank = first_bank(model)
        if bank is not None:
            store.write_bank(target.name, bank)

        # The name is part of every key: modules with equal weights (wrappers around one
        # network) are different models and must not share probes or units.
        probe_key = stable_hash([target.name, target.fingerprint, data_id, STORE_VERSION])[:24]
        probe_keys[target.name] = probe_key
        if store.read_probe(probe_key) is None:
            x, y = datasets.batch(ds, indices[:PROBE_EXAMPLES])
            torch.manual_seed(_unit_seed(spec.seed, target.name, "probe"))
            flags = probe_model(model, x.to(dev), y.to(dev), info.num_classes, was_training,
                                _unit_seed(spec.seed, target.name, "probe"))
            store.write_probe(probe_key, {"model": target.name, "flags": flags})

        for attack in spec.attack_list:
            for tm in spec.attack_threats(attack):
                grid = spec.attack_eps(attack, tm)
                # A transfer unit also depends on the source model's weights.
                source = by_name.get(attack.params.get("source")) if "source" in attack.params else None
                source_fp = source.fingerprint if source is not None else None
                n_att = min(attack.n or n, n)
                chunks = list(range(0, n_att, bs))
                bar = tqdm(chunks, desc=f"{target.name} {attack.label} {tm}", unit="chunk", leave=False,
                           disable=not (progress and sys.stderr.isatty()))
                for start in bar:
                    stop = min(start + bs, n_att)
                    key = stable_hash([target.name, target.fingerprint, attack.name, attack.params, source_fp,
                                       tm, grid, data_id, start, stop, spec.nested, STORE_VERSION])[:32]
                    unit_keys.append(key)
                    if store.has_unit(key):
                        continue
                    params = dict(attack.params)
                    if "source" in params:
                        src = by_name.get(params["source"])
                        if src is None:
                            raise ConfigError(f"attack '{attack.label}': source '{params['source']}' is not one of "
                                              f"the spec's models ({', '.join(by_name)})")
                        # No .eval(): the attack switches modes itself and restores them, and a
                        # caller's module must come back in the mode it was handed over in.
                        params["source_model"] = src.load().to(dev)
                    atk = make_attack(attack.name, params, tm)
                    idx = indices[start:stop]
                    x, y = datasets.batch(ds, idx)
                    x, y = x.to(dev), y.to(dev)
                    seed = _unit_seed(spec.seed, target.name, attack.label, tm, start)
                    t0 = time.perf_counter()
                    torch.manual_seed(seed)
                    res = sweep(atk, model, x, y, grid, seed, nested=spec.nested)
                    clean = res[grid[0]].correct if grid[0] == 0 else _clean(model, x, y)
                    rows = []
                    for eps in grid:
                        r = res[eps]
                        rows.append(pd.DataFrame({
                            "model": target.name, "attack": attack.label, "attack_kind": attack.name,
                            "threat_model": tm, "eps": float(eps), "eps_label": format_eps(eps),
                            "index": idx.numpy().astype(np.int64), "label": y.cpu().numpy().astype(np.int64),
                            "correct": r.correct.cpu().numpy(), "clean_correct": clean.cpu().numpy(),
                            "margin": r.margin.cpu().numpy().astype(np.float32), "eval_seed": spec.seed,
                            "unit": key, "seconds": r.seconds, "passes": r.passes}))
                    store.write_unit(key, pd.concat(rows, ignore_index=True))
                    robust = {e: int(res[e].correct.sum()) for e in grid}
                    del res, rows, x, y
                    _release_memory()
                    bar.set_postfix(robust=" ".join(f"{k}@{e:g}" for e, k in robust.items()))
                    log(f"{target.name} {attack.label} {tm} [{start}:{stop}] robust/{stop - start}: "
                        + " ".join(f"{format_eps(e)}:{k}" for e, k in robust.items())
                        + f" ({time.perf_counter() - t0:.1f}s)")
        del model

    return finalize(spec, store, unit_keys, model_rows, probe_keys, dev, time.perf_counter() - t_start)


@torch.no_grad()
def _clean(model, x, y):
    previous = model.training
    model.eval()
    try:
        return model(x).argmax(1) == y
    finally:
        model.train(previous)


def finalize(spec, store, unit_keys, model_rows, probe_keys, dev, seconds) -> pd.DataFrame:
    models = pd.DataFrame(model_rows, columns=list(MODEL_COLUMNS))
    examples = store.read_units(unit_keys)
    context = {"eval_seed": spec.seed, "spec_hash": spec.spec_hash(), "code_version": code_version(),
               "nested": spec.nested}
    summary = aggregate(examples, models, context)
    diag = []
    for name, key in probe_keys.items():
        diag += [(name, flag, detail) for flag, detail in store.read_probe(key)["flags"]]
    diag += check_curves(summary[summary["attack"] != WORST_CASE]) if len(summary) else []
    wc = summary[summary["attack"] == WORST_CASE]
    diag += check_curves(wc.assign(attack_kind=WORST_CASE)) if len(wc) else []
    diagnostics = pd.DataFrame(diag, columns=list(DIAGNOSTIC_COLUMNS)).drop_duplicates(["model", "flag"])
    run = {"spec": asdict(spec), "spec_hash": spec.spec_hash(), "eval_seed": spec.seed,
           "eps_grid": spec.eps_grid, "n_examples": int(examples["index"].nunique()) if len(examples) else 0,
           "nested": spec.nested, "code_version": code_version(), "packages": package_versions(),
           "device": device_description(dev),
           # Attack time summed over all units (also those done by earlier, resumed runs);
           # wall_seconds is only this invocation, which skips finished units.
           "seconds": float(examples.drop_duplicates(["unit", "eps"])["seconds"].sum()) if len(examples) else 0.0,
           "wall_seconds": seconds,
           "finished": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    store.write_tables(summary, models, diagnostics, run)
    return summary


def summary_text(summary: pd.DataFrame) -> str:
    """Worst-case robust accuracy per model (rows) and eps (columns), per threat model."""
    if summary.empty:
        return "(no results)"
    parts = []
    for tm, g in summary[summary["attack"] == WORST_CASE].groupby("threat_model"):
        table = g.pivot_table(index="model", columns="eps_label", values="robust_acc", aggfunc="first", sort=False)
        table = table[sorted(table.columns, key=lambda c: g.loc[g["eps_label"] == c, "eps"].iloc[0])]
        parts.append(f"{tm} worst-case robust accuracy (n per cell in summary.csv)\n"
                     + table.map(lambda v: f"{v:.3f}").to_string())
    return "\n\n".join(parts)
