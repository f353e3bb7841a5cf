"""Finished runs that are the same training as one about to start, so it is copied, not retrained.

Two runs train the same weights when everything that shapes training is equal: the recipe less the
keys that only name or describe it (its name, description, variant and seed lists), the model with
its arguments resolved (``dim = 32`` written out and the registered default 32 are one model), the
variant and its parameters, the seed, the resolved performance settings and the device the
checkpoint records (thread count included: it changes float rounding on a CPU). The paper study has
such twins by design: the controls recipe's chans-s0 and the width sweep's 32-wide pair are the
core recipe's runs under other names (measured: the controls' chans-s0 trained for 15 epochs has
the core's loss history to the last digit). The key is computed the same way from a finished run's
meta.json, so checkpoints written before this module count too; a meta.json lacking any of the
fields simply matches nothing.
"""
from __future__ import annotations

from .errors import CheckpointError
from .provenance import stable_hash
from .recipe import NOT_IN_RUN_IDENTITY, run_config
from .store import ModelStore, read_meta, verify_checkpoint


def training_key(recipe: dict, model_args: dict, variant: str, params: dict, seed: int,
                 performance: dict, device: str) -> str:
    """Identity of the weights a run trains (see the module docstring for what counts): the run
    hash's fields less the recipe's name, since a twin lives under another recipe's name."""
    config = run_config(recipe, leave_out=NOT_IN_RUN_IDENTITY + ("name",))
    config["model"] = {"name": config["model"]["name"], "args": model_args}
    return stable_hash(config | {"_variant": [variant, params], "_seed": seed,
                                 "_performance": performance, "_device": device})


def stored_training_key(meta: dict) -> str | None:
    """The training key of a finished run, from its meta.json; None when a field is missing."""
    try:
        if meta["distributed"]["world_size"] != 1:
            return None  # ranks split each batch: the same sums in another order
        return training_key(meta["recipe"], meta["model"]["args"], meta["variant"], meta["variant_params"],
                            meta["seed"], meta["performance"], meta["device"])
    except (KeyError, TypeError, AttributeError):
        return None


def find_twin(store: ModelStore, key: str, besides: str) -> tuple[str, dict] | None:
    """(name, meta.json) of the first finished run in ``store`` (by name) with training key
    ``key``, other than ``besides``, whose weights pass their sha256 check; copies are skipped, so
    a twin is always a run that was trained."""
    for name in store.names():
        if name == besides:
            continue
        try:
            meta = read_meta(store.path(name))
        except CheckpointError:  # an unreadable checkpoint is nobody's twin; eval names it if used
            continue
        if "copied_from" not in meta and stored_training_key(meta) == key:
            try:
                verify_checkpoint(store.path(name))
            except CheckpointError:  # weights edited or cut short: train instead of copying them
                continue
            return name, meta
    return None


def copy_twin(store: ModelStore, name: str, recipe: dict, recipe_hash: str, model_args: dict, variant: str,
              params: dict, seed: int, performance: dict, device: str) -> dict | None:
    """Register a finished twin's weights as run ``name`` and return the new meta.json, or None
    when the store holds no twin. The meta is the twin's (its metrics, history, seconds and code
    version are those of the training that made the weights) with this run's name, recipe and
    recipe hash, and ``copied_from`` naming the twin; the study's compute tally counts a copy as
    no training time."""
    key = training_key(recipe, model_args, variant, params, seed, performance, device)
    found = find_twin(store, key, besides=name)
    if found is None:
        return None
    twin, twin_meta = found
    return store.copy(twin, name, {**twin_meta, "recipe": recipe, "recipe_hash": recipe_hash, "copied_from": twin})
