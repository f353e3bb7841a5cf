"""`[threat.corruptions]` in an eval: accuracy on corrupted test images, as result-store rows.

A corruption unit is one model x corruption type x chunk of the example
subset, every severity of the spec; it is planned, keyed, resumed and
written like an attack unit (see units.py), so a store holds both and every
reader sees the same per-example columns. In the rows:

    threat_model = "corruptions"     (schema.CORRUPTIONS)
    attack       = the corruption type, e.g. "fog"
    attack_kind  = "corruption"
    eps          = the severity, 1.0 to 5.0; eps_label "s1" .. "s5"
    correct      = the model classifies the corrupted image correctly
    clean_correct, margin, passes (forward passes), seconds as for attacks

An example's corrupted image depends only on (eval seed, type, severity,
example index) (``corruptions.image_seed``), never on the chunk or model,
so every model of a store sees the same corrupted images. A randomised
model (diagnostic flag "randomized") is judged as in attack units: correct
on an image when a strict majority of ``randomized_votes`` seeded forward
passes classify it correctly (columns votes, vote_passes; schema.VOTE_COLUMNS).
"""
from __future__ import annotations

import time

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

from . import data as datasets
from .attacks.base import attack_mode, isolated_rng, score
from .corruptions import DEFINITION, corrupt_batch, image_seed
from .provenance import stable_hash
from .schema import CORRUPTIONS, STORE_VERSION
from .spec import AttackSpec, EvalSpec
from .targets import Target
from .units import Unit, unit_seed

KIND = "corruption"  # attack_kind of every corruption row
# Corrupted images an eval keeps for its next models (as uint8: exact, the package works on the
# 8-bit grid). Making them costs far more than classifying them (glass blur: tens of ms an image),
# and every model sees the same ones; 1 GiB holds 15 types x 5 severities of 18,000 28x28 images.
CACHE_BYTES = 1 << 30


class CorruptedImages:
    """The corrupted images of one eval, made once and reused by every model.

    Filled until CACHE_BYTES, then left as it is: units run model by model, so evicting the
    oldest entries would throw away exactly the ones the next model asks for first."""

    def __init__(self, max_bytes: int | None = None):
        self.max_bytes = CACHE_BYTES if max_bytes is None else max_bytes
        self.bytes, self._kept = 0, {}

    def get(self, x: torch.Tensor, name: str, severity: int, seeds: list[int]) -> torch.Tensor:
        key = (name, severity, tuple(seeds))
        kept = self._kept.get(key)
        if kept is not None and kept.shape == x.shape:
            return kept.to(device=x.device, dtype=x.dtype) / 255
        xc = corrupt_batch(x, name, severity, seeds)
        as_bytes = (xc * 255).round().to(torch.uint8).cpu()
        if self.bytes + as_bytes.numel() <= self.max_bytes:
            self._kept[key] = as_bytes
            self.bytes += as_bytes.numel()
        return xc


def severity_label(severity: float) -> str:
    return f"s{int(severity)}"


def plan_corruption_units(spec: EvalSpec, targets: list[Target], data_id: list, n: int) -> list[Unit]:
    """The corruption units of the eval (none without [threat.corruptions]): models, types, chunks."""
    cs = getattr(spec, "corruptions", None)
    if cs is None:
        return []
    grid = [float(s) for s in cs.severities]
    n_c = min(cs.n or n, n)  # like an attack's n: "at most", so a smaller --n covers all of it
    units = []
    for target in targets:
        for name in cs.types:
            attack = AttackSpec(KIND, name, {}, cs.n, grid, [CORRUPTIONS])
            for start in range(0, n_c, spec.data.batch_size):
                stop = min(start + spec.data.batch_size, n_c)
                parts = [target.name, target.fingerprint, KIND, name, grid, data_id, start, stop,
                         DEFINITION, STORE_VERSION]
                units.append(Unit(target, attack, CORRUPTIONS, grid, start, stop, None, stable_hash(parts)[:32]))
    return units


@torch.no_grad()
def _predict(model: nn.Module, x: torch.Tensor, y: torch.Tensor, seed: int, votes: int = 0):
    """(correct, margin, votes or None). A randomised model draws in forward: its passes are
    seeded and leave the caller's RNG untouched; with ``votes`` > 0 it takes the majority."""
    with attack_mode(model), isolated_rng(x.device, seed):
        if not votes:
            correct, margin = score(model, x, y)
            return correct, margin, None
        counts = torch.zeros(len(y), dtype=torch.int64, device=y.device)
        margins = []
        for _ in range(votes):
            correct, margin = score(model, x, y)
            counts += correct.long()
            margins.append(margin)
        return counts * 2 > votes, torch.stack(margins).median(0).values, counts


def run_corruption_unit(spec: EvalSpec, store, unit: Unit, model: nn.Module, ds, indices, dev, log,
                        votes: int = 0, corrupted: CorruptedImages | None = None) -> None:
    """Corrupt one unit's examples at every severity, classify them, write the unit's rows.
    ``votes``: forward passes per image of a randomised model (0: one deterministic pass).
    ``corrupted``: the eval's cache of corrupted images, shared by its models."""
    corrupted = corrupted if corrupted is not None else CorruptedImages(0)
    name = unit.attack.label
    idx = indices[unit.start:unit.stop]
    x, y = datasets.batch(ds, idx)
    y_dev = y.to(dev)
    seed = unit_seed(spec.seed, unit.target.name, KIND, name, unit.start)
    clean, _, _ = _predict(model, x.to(dev), y_dev, seed, votes)
    rows, accuracy = [], {}
    for severity in unit.grid:
        t0 = time.perf_counter()
        seeds = [image_seed(spec.seed, name, int(severity), int(i)) for i in idx]
        xc = corrupted.get(x, name, int(severity), seeds).to(dev)
        correct, margin, counts = _predict(model, xc, y_dev, seed, votes)
        accuracy[severity] = int(correct.sum())
        rows.append(pd.DataFrame({
            "model": unit.target.name, "attack": name, "attack_kind": KIND,
            "threat_model": CORRUPTIONS, "eps": float(severity), "eps_label": severity_label(severity),
            "index": idx.numpy().astype(np.int64), "label": y.numpy().astype(np.int64),
            "correct": correct.cpu().numpy(), "clean_correct": clean.cpu().numpy(),
            "margin": margin.cpu().numpy().astype(np.float32), "eval_seed": spec.seed,
            "precision": "fp32", "attack_batch": np.int64(len(idx)),
            "unit": unit.key, "seconds": time.perf_counter() - t0,
            # Forward passes: one per image (`votes` for a randomised model), and as many again for the
            # clean images, booked at the first severity.
            "passes": np.int64(len(idx) * max(votes, 1) * (2 if severity == unit.grid[0] else 1)),
            **({"votes": counts.cpu().numpy(), "vote_passes": np.int64(votes)} if votes else {})}))
    store.write_unit(unit.key, pd.concat(rows, ignore_index=True))
    log(f"{unit.target.name} {name} [{unit.start}:{unit.stop}] correct/{len(idx)}: "
        + " ".join(f"{severity_label(s)}:{k}" for s, k in accuracy.items()))
