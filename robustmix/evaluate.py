"""`robustmix eval`: run a sweep spec over models into a result store.

data subset -> models (zoo, external, or given) -> per (attack, threat model,
chunk) nested eps sweep -> per-example units -> aggregates + diagnostics.
Every unit's seed is derived from (eval seed, model, attack, threat model,
chunk), so per-example results are reproducible and a resumed run equals an
uninterrupted one.

Scale-out follows from that: under ``torchrun`` every process plans the
same ordered unit list and takes a fixed round-robin share of it (and of the
model probes), so N processes write exactly the units one would, into the
same store, and rank 0 aggregates after a barrier. A unit that runs out of
device memory is re-run in smaller attack batches (halving, as timm's
validate does), without changing the unit or its seed.
"""
from __future__ import annotations

import ctypes
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
from tqdm import tqdm

from . import data as datasets
from .advfile import has_adversarials, write_adversarials
from .attacks import AttackResult, make_attack, sweep
from .corruption_eval import CorruptedImages, plan_corruption_units, run_corruption_unit
from .device import resolve_device
from .diagnostics import RANDOMIZED, check_curves, eot_warnings, is_randomized, probe_model, vote_results
from .distributed import init_world, rank_device
from .eps import format_eps
from .errors import RobustmixError
from .models.layers import count_params
from .provenance import code_version, device_description, package_versions, stable_hash
from .results import ResultStore, RunInfo, aggregate
from .schema import CORRUPTIONS, DIAGNOSTIC_COLUMNS, MODEL_COLUMNS, STORE_VERSION, VARIANT_PARAMS, WORST_CASE
from .spec import EvalSpec
from .targets import Target, check_expects, check_fit, first_bank, resolve_targets
from .units import Unit, example_indices, plan_units, unit_seed

PROBE_EXAMPLES = 64


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


class DeviceMemoryError(RobustmixError):
    """An attack that runs out of device memory even on one example at a time."""


# torch.OutOfMemoryError is the device-neutral name (torch >= 2.5); the CUDA one is an alias of it there.
OUT_OF_MEMORY = tuple({torch.cuda.OutOfMemoryError, getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)})


def with_backoff(run: Callable[[int], object], size: int, dev: torch.device, what: str, log) -> tuple[object, int]:
    """``run(size)``, halving ``size`` after each out-of-memory error; return (result, size that worked).

    As timm's validate does: the work is re-run from scratch at the smaller
    size, and the caller keeps that size for what follows rather than
    hitting the same wall again.
    """
    while True:
        try:
            return run(size), size
        except OUT_OF_MEMORY as exc:
            reason = (str(exc).splitlines() or ["out of memory"])[0][:160]
        # Outside the except block, so the traceback's tensors are gone before the cache is emptied.
        if dev.type == "cuda":
            torch.cuda.empty_cache()
        if size <= 1:
            raise DeviceMemoryError(f"{what}: out of memory on {device_description(dev)} even one example at a "
                                    f"time ({reason}); use a device with more memory or --device cpu") from None
        size = max(1, size // 2)
        log(f"{what}: out of memory, retrying {size} examples at a time")


def attack_chunk(atk, model: nn.Module, x: torch.Tensor, y: torch.Tensor, grid: list[float], seed: int,
                 nested: bool, micro: int) -> tuple[dict, torch.Tensor]:
    """Sweep ``atk`` over one unit's examples, ``micro`` at a time -> (per-eps results, clean-correct).

    A unit that fits in one batch is seeded with the unit seed itself (so
    stores written before micro-batching existed stay valid); each micro-batch
    with a seed derived from the unit seed and its offset, so a split unit is
    reproducible too. Deterministic attacks give the same per-example results
    either way.
    """
    if micro >= len(x):
        torch.manual_seed(seed)
        res = sweep(atk, model, x, y, grid, seed, nested=nested)
        clean = res[grid[0]].correct if grid[0] == 0 else _clean(model, x, y)
        return res, clean
    parts = [attack_chunk(atk, model, x[s:s + micro], y[s:s + micro], grid, unit_seed(seed, s), nested, micro)
             for s in range(0, len(x), micro)]
    res = {e: AttackResult(x_adv=torch.cat([r[e].x_adv for r, _ in parts]),
                           correct=torch.cat([r[e].correct for r, _ in parts]),
                           margin=torch.cat([r[e].margin for r, _ in parts]),
                           passes=sum(r[e].passes for r, _ in parts),
                           seconds=sum(r[e].seconds for r, _ in parts),
                           radius=None if parts[0][0][e].radius is None else
                           torch.cat([r[e].radius for r, _ in parts])) for e in grid}
    return res, torch.cat([c for _, c in parts])


@contextmanager
def full_fp32():
    """fp32 that is fp32 on GPUs too: no TF32 matmuls/convolutions (PyTorch enables them for
    cuDNN by default) for the duration, the caller's settings restored after."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def run_eval(spec: EvalSpec, results_dir: str | Path | None = None, *, models: dict[str, nn.Module] | None = None,
             device: str | None = None, progress: bool = True, log=print, data=None) -> pd.DataFrame | None:
    """Evaluate every model of ``spec``; return the summary table (also written to the store).

    Under torchrun (WORLD_SIZE > 1) each process evaluates its share of the
    units into the same store and rank 0 alone aggregates them and returns
    the summary; the other ranks return None once their share is done.

    ``data``: a Dataset with ``.info`` (robustmix.memdata adapts tensors, Datasets and DataLoaders)
    to evaluate instead of loading ``spec.data.name``; its identity should be in ``spec.data.name``,
    which keys the units. The summary's ``attrs["unit_keys"]`` lists the run's units.
    """
    # Randomised models draw from the global RNG in forward (probes, clean passes): fork it so the
    # caller's state is untouched, and reseed it per probe/unit so results do not depend on it.
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices), full_fp32():
        return _run_eval(spec, results_dir, models=models, device=device, progress=progress, log=log, data=data)


def _run_eval(spec: EvalSpec, results_dir, *, models, device, progress, log, data=None) -> pd.DataFrame | None:
    t_start = time.perf_counter()
    dev = resolve_device(device or "auto")
    world = init_world(dev)
    dev = rank_device(dev, world)
    if world.distributed:
        log = _prefixed(log, f"[rank {world.rank}/{world.world_size}] ")
    # Everything a user can get wrong is checked before the store is created, so a failed
    # eval leaves no skeleton store behind (report/export would call it unfinished).
    store = ResultStore(results_dir or spec.results or Path("results") / spec.name).check()
    targets = resolve_targets(spec, models)
    ds = data if data is not None else datasets.load_dataset(spec.data.name, spec.data.split, root=spec.data.root,
                                                              download=spec.data.download)
    info = ds.info
    for target in targets:
        check_expects(target, info)
        # Build every model once and probe it where it lives: a zoo checkpoint whose weights fail
        # their sha256, and an outside model whose metadata says nothing of what it takes, fail
        # here. Building twice (now and below) is the price of failing before the store exists.
        module = target.load()
        where = next(iter(module.parameters()), torch.empty(0)).device
        check_fit(target, module, info, where)
        del module
    indices = example_indices(spec, len(ds))  # checks data.n again: `--n` may have replaced it
    n = len(indices)
    data_id = eval_data_id(spec, n)

    units = plan_units(spec, targets, data_id, n) + plan_corruption_units(spec, targets, data_id, n)
    store.open()
    # Static round-robin shares: a function of the unit list alone, so a re-run after a crash
    # (with any number of processes) assigns every unfinished unit to exactly one process.
    # A unit file that fails verification is recomputed (and overwritten), with a warning.
    prefix = f"[rank {world.rank}/{world.world_size}] " if world.distributed else ""
    todo = [u for u in world.shard(units) if not store.has_unit(
        u.key, on_corrupt=lambda msg: print(f"robustmix: warning: {prefix}{msg}; recomputing it", file=sys.stderr))
        # A finished unit without its adversarials is recomputed (same seed, same rows) to save them.
        or (spec.save_adversarials and not has_adversarials(store.root, u.key))]
    probed_here = {t.name for t in world.shard(targets)}
    # The name is part of every key: modules with equal weights (wrappers around one
    # network) are different models and must not share probes or units.
    probe_keys = {t.name: stable_hash([t.name, t.fingerprint, data_id, STORE_VERSION])[:24] for t in targets}
    micro = spec.data.batch_size  # the attack batch; shrinks for good after an out-of-memory error
    corrupted = CorruptedImages()  # [threat.corruptions]: every model classifies the same corrupted images
    bar = tqdm(total=len(todo), desc=f"rank {world.rank}" if world.distributed else "eval", unit="unit",
               position=world.rank, disable=not (progress and sys.stderr.isatty()))

    model_rows = []
    for target in targets:
        mine = [u for u in todo if u.target is target]
        probe = target.name in probed_here and store.read_probe(probe_keys[target.name]) is None
        if not (world.is_main or mine or probe):  # rank 0 loads every model: it writes models.csv
            continue
        model = target.load()
        was_training = model.training
        model = model.to(dev)
        check_fit(target, model, info, dev)
        if world.is_main:
            model_rows.append(_model_row(target, model, info))
            bank = first_bank(model)
            if bank is not None:
                store.write_bank(target.name, bank)

        if probe:
            seed = unit_seed(spec.seed, target.name, "probe")

            def run_probe(k):
                x, y = datasets.batch(ds, indices[:k])
                torch.manual_seed(seed)
                return probe_model(model, x.to(dev), y.to(dev), info.num_classes, was_training, seed)

            flags, _ = with_backoff(run_probe, min(PROBE_EXAMPLES, n), dev, f"{target.name} probe", log)
            store.write_probe(probe_keys[target.name], {"model": target.name, "flags": flags})

        votes = 0
        if mine and is_randomized(store.read_probe(probe_keys[target.name]), model,
                                  lambda: datasets.batch(ds, indices[:PROBE_EXAMPLES])[0].to(dev)):
            votes = spec.randomized_votes
            log(f"{target.name}: randomised (two forward passes differ): every robust/not decision is a "
                f"majority over {votes} forward passes (randomized_votes)")
            for _, _, detail in eot_warnings([(target.name, RANDOMIZED, "")], spec.attack_list):
                log(f"WARNING: {target.name}: {detail}. Running the spec as written; the report marks it.")
        for unit in mine:
            if unit.threat_model == CORRUPTIONS:
                run_corruption_unit(spec, store, unit, model, ds, indices, dev, log, votes, corrupted)
            else:
                micro = _run_unit(spec, store, unit, model, ds, indices, dev, micro, log, votes)
            bar.update()
            bar.set_postfix_str(f"{target.name} {unit.attack.label} {unit.threat_model}")
        del model
    bar.close()

    world.barrier()  # every unit is on disk before rank 0 aggregates them
    if not world.is_main:
        return None
    return finalize(spec, store, [u.key for u in units], model_rows, probe_keys, dev,
                    time.perf_counter() - t_start, world.world_size)


def eval_data_id(spec: EvalSpec, n: int) -> list:
    """What identifies an eval's examples in its unit keys (a Python data set's name holds its hash)."""
    return [spec.data.name, spec.data.split, n, spec.seed]


def _prefixed(log, prefix: str):
    return lambda msg, *a, **k: log(prefix + msg, *a, **k)


def _model_row(target: Target, model: nn.Module, info) -> dict:
    total, trainable = count_params(model)
    meta = getattr(model, "checkpoint_meta", None) or {}
    params = target.variant_params or {}
    return {"model": target.name, "variant": target.variant,
            **{key: params.get(key, float("nan")) for key in VARIANT_PARAMS},
            "arch": target.arch, "dataset": target.dataset or info.name, "train_seed": target.train_seed,
            "params": total, "trainable_params": trainable,
            "clean_acc": meta.get("metrics", {}).get("clean_acc", float("nan")), "source": target.source}


def _run_unit(spec: EvalSpec, store: ResultStore, unit: Unit, model: nn.Module, ds, indices, dev, micro: int,
              log, votes: int = 0) -> int:
    """Attack one unit and write its rows; return the attack batch to carry on with. ``votes`` > 0:
    a randomised model, whose robust/not decisions are majorities over that many passes."""
    target, attack, tm, grid = unit.target, unit.attack, unit.threat_model, unit.grid
    params = dict(attack.params)
    if unit.source is not None:
        # No .eval(): the attack switches modes itself and restores them, and a
        # caller's module must come back in the mode it was handed over in.
        params["source_model"] = unit.source.load().to(dev)
    atk = make_attack(attack.name, params, tm, spec.precision)
    idx = indices[unit.start:unit.stop]
    x, y = datasets.batch(ds, idx)
    x, y = x.to(dev), y.to(dev)
    seed = unit_seed(spec.seed, target.name, attack.label, tm, unit.start)
    what = f"{target.name} {attack.label} {tm} [{unit.start}:{unit.stop}]"
    t0 = time.perf_counter()
    tried = min(micro, len(idx))
    (res, clean), batch = with_backoff(lambda b: attack_chunk(atk, model, x, y, grid, seed, spec.nested, b),
                                       tried, dev, what, log)
    counts, vote_cost = {}, dict.fromkeys(grid, 0)
    if votes:
        torch.manual_seed(unit_seed(seed, "votes"))
        counts, clean = vote_results(model, res, x, y, grid, votes, batch, spec.nested)
        # The majority decisions are model evaluations too: `votes` passes per example at every eps,
        # and at the smallest eps once more for the clean inputs when the grid has no eps 0.
        vote_cost = {e: votes * len(idx) * (2 if i == 0 and e != 0 else 1) for i, e in enumerate(grid)}
    rows = []
    for eps in grid:
        r = res[eps]
        rows.append(pd.DataFrame({
            "model": target.name, "attack": attack.label, "attack_kind": attack.name,
            "threat_model": tm, "eps": float(eps), "eps_label": format_eps(eps),
            "index": idx.numpy().astype(np.int64), "label": y.cpu().numpy().astype(np.int64),
            "correct": r.correct.cpu().numpy(), "clean_correct": clean.cpu().numpy(),
            "margin": r.margin.cpu().numpy().astype(np.float32), "eval_seed": spec.seed,
            "precision": spec.precision, "attack_batch": np.int64(batch),
            "unit": unit.key, "seconds": r.seconds, "passes": r.passes + vote_cost[eps],
            # A minimum-norm attack's per-example radius (the same at every eps); NaN for fixed-eps attacks.
            "radius": np.nan if r.radius is None else r.radius.cpu().numpy(),
            **({"votes": counts[eps].cpu().numpy(), "vote_passes": np.int64(votes)} if votes else {})}))
    if spec.save_adversarials:  # before the unit: a unit on disk without them is recomputed on resume
        write_adversarials(store.root, unit.key, model=target.name, attack=attack.label, threat_model=tm,
                           eps=grid, fingerprint=target.fingerprint, index=idx, label=y, x=x,
                           x_adv=[res[e].x_adv for e in grid])
    store.write_unit(unit.key, pd.concat(rows, ignore_index=True))
    robust = {e: int(res[e].correct.sum()) for e in grid}
    del res, rows, x, y
    _release_memory()
    log(f"{what} robust/{len(idx)}: " + " ".join(f"{format_eps(e)}:{k}" for e, k in robust.items())
        + f" (attack batch {batch}, {time.perf_counter() - t0:.1f}s)")
    return batch if batch < tried else micro


@torch.no_grad()
def _clean(model, x, y):
    previous = model.training
    model.eval()
    try:
        return model(x).argmax(1) == y
    finally:
        model.train(previous)


def finalize(spec, store, unit_keys, model_rows, probe_keys, dev, seconds, world_size=1) -> pd.DataFrame:
    models = pd.DataFrame(model_rows, columns=list(MODEL_COLUMNS))
    examples = store.read_units(unit_keys)
    context = {"eval_seed": spec.seed, "spec_hash": spec.spec_hash(), "code_version": code_version(),
               "nested": spec.nested}
    summary = aggregate(examples, models, context)
    diag = []
    for name, key in probe_keys.items():
        diag += [(name, flag, detail) for flag, detail in store.read_probe(key)["flags"]]
    diag += eot_warnings(diag, spec.attack_list)
    # Accuracy may rise with a corruption's severity (the corruptions differ): no curve checks there.
    adversarial = summary[summary["threat_model"] != CORRUPTIONS] if len(summary) else summary
    diag += check_curves(adversarial[adversarial["attack"] != WORST_CASE]) if len(adversarial) else []
    wc = summary[summary["attack"] == WORST_CASE]
    diag += check_curves(wc.assign(attack_kind=WORST_CASE)) if len(wc) else []
    diagnostics = pd.DataFrame(diag, columns=list(DIAGNOSTIC_COLUMNS)).drop_duplicates(["model", "flag"])
    run = RunInfo(spec=asdict(spec), spec_hash=spec.spec_hash(), eval_seed=spec.seed, eps_grid=spec.eps_grid,
                  n_examples=int(examples["index"].nunique()) if len(examples) else 0, nested=spec.nested,
                  code_version=code_version(), packages=package_versions(), device=device_description(dev),
                  world_size=world_size,
                  seconds=float(examples.drop_duplicates(["unit", "eps"])["seconds"].sum()) if len(examples) else 0.0,
                  wall_seconds=seconds, finished=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    store.write_tables(summary, models, diagnostics, run)
    summary.attrs["unit_keys"] = list(unit_keys)
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
