"""Training recipes: TOML files in zoo/, parsed strictly into dataclasses.

A recipe trains every (variant x seed) it lists. Defaults below follow the
reference ConvMixer CIFAR-10 recipe (AdamW, lr 0.01, wd 0.01, piecewise-linear
one-cycle schedule), scaled down only where a recipe says so.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from .config import check_seed, from_dict, load_toml
from .errors import ConfigError
from .variants import parse_variant, resolve_variant

AUGMENTATIONS = ("random-crop", "hflip")


@dataclass
class DataSection:
    name: str = "fashion-mnist"
    root: str | None = None            # default: $ROBUSTMIX_DATA or ./data
    download: bool = False             # only where there is internet
    train_subset: int | None = None    # seeded subset of the train split, for CPU-sized runs
    subset_seed: int = 0
    test_subset: int | None = None     # un-shuffling only: seeded subset of the test split (None: all of it)

    def validate(self, where):
        # Larger than the split is checked once the data set is loaded (train.train_subset).
        for key in ("train_subset", "test_subset"):
            value = getattr(self, key)
            if value is not None and value < 1:
                split = key.partition("_")[0]
                raise ConfigError(f"{where}.{key}: must be >= 1 (or left out for the whole {split} split), "
                                  f"got {value}")
        check_seed(self.subset_seed, f"{where}.subset_seed")


@dataclass
class ModelSection:
    name: str = "convmixer_64_4_ks5_p2"
    args: dict = field(default_factory=dict)   # overrides of the registered defaults


@dataclass
class OptimSection:
    name: Literal["adamw", "sgd"] = "adamw"
    lr: float = 0.01                   # peak LR of the one-cycle schedule (ConvMixer CIFAR recipe)
    weight_decay: float = 0.01
    momentum: float = 0.9              # sgd only
    grad_clip: float | None = 1.0      # the ConvMixer recipe clips gradient norm at 1
    label_smoothing: float = 0.0

    def validate(self, where):
        # `not low <= x` and math.isfinite also refuse NaN, which every `x < low` lets through.
        def check(key, ok, rule):
            value = getattr(self, key)
            if value is not None and not (math.isfinite(value) and ok(value)):
                raise ConfigError(f"{where}.{key}: must be {rule}, got {value}")

        check("lr", lambda v: v > 0, "a finite number > 0")
        check("weight_decay", lambda v: v >= 0, "a finite number >= 0")
        check("momentum", lambda v: 0 <= v < 1, "in [0, 1)")
        check("grad_clip", lambda v: v >= 0, "a finite number >= 0 (0 turns clipping off)")
        check("label_smoothing", lambda v: 0 <= v <= 1, "in [0, 1]")
        if self.name == "sgd" and self.momentum == 0:  # SGD runs with Nesterov momentum
            raise ConfigError(f"{where}.momentum: sgd uses Nesterov momentum, which must be > 0; set e.g. 0.9")


@dataclass
class ScheduleSection:
    # onecycle: piecewise linear 0 -> lr at 2/5 of training -> lr/20 at 4/5 -> 0.
    name: Literal["onecycle", "cosine", "constant"] = "onecycle"


@dataclass
class PerformanceSection:
    """How fast a run trains, not what it trains: kept out of the run's identity.

    bf16 and channels_last change rounding, so a GPU run is reproducible only
    against runs with the same settings (recorded, resolved, in the checkpoint).
    """
    channels_last: bool | Literal["auto"] = "auto"   # NHWC feeds tensor-core convs; auto = on for cuda
    amp: Literal["auto", "bf16", "off"] = "auto"    # bf16 autocast of forward + loss; auto = bf16 on cuda
    compile: bool = False                            # torch.compile pays minutes of warm-up; opt in
    workers: int | Literal["auto"] = "auto"          # loader processes; auto = min(4, CPUs) on cuda, 0 on cpu
    pin_memory: bool | Literal["auto"] = "auto"      # page-locked batches copy asynchronously; auto = on for cuda

    def validate(self, where):
        if self.workers != "auto" and self.workers < 0:
            raise ConfigError(f"{where}.workers: must be >= 0 or \"auto\", got {self.workers}")

    def resolve(self, device_type: str) -> "PerformanceSection":
        """The concrete settings on a ``device_type`` ("cuda" or "cpu") device: no "auto" left."""
        cuda = device_type == "cuda"

        def pick(value, auto):
            return auto if value == "auto" else value

        # CPU workers would compete with the training threads for the same cores.
        return replace(self, channels_last=pick(self.channels_last, cuda),
                       amp=pick(self.amp, "bf16" if cuda else "off"),
                       workers=pick(self.workers, min(4, os.cpu_count() or 1) if cuda else 0),
                       pin_memory=pick(self.pin_memory, cuda))


@dataclass
class Recipe:
    name: str
    task: Literal["classify", "unshuffle"] = "classify"   # what the run learns (robustmix.tasks)
    data: DataSection = field(default_factory=DataSection)
    model: ModelSection = field(default_factory=ModelSection)
    variants: list[str | dict] = field(default_factory=lambda: ["full"])
    seeds: list[int] = field(default_factory=lambda: [0])
    epochs: int = 25
    batch_size: int = 512
    eval_batch_size: int = 1000
    optimizer: OptimSection = field(default_factory=OptimSection)
    schedule: ScheduleSection = field(default_factory=ScheduleSection)
    augment: list[str] = field(default_factory=list)
    device: str = "auto"               # auto picks cuda when present
    performance: PerformanceSection = field(default_factory=PerformanceSection)
    description: str = ""
    permutation_seed: int | None = None   # un-shuffling only: seeds the pixel permutation (default 0)

    def __post_init__(self):
        if self.task == "unshuffle" and self.permutation_seed is None:
            self.permutation_seed = 0  # one value for the default, so equal runs hash equal

    def validate(self, where):
        check_runs(self)
        check_task_keys(self)
        for aug in self.augment:
            if aug not in AUGMENTATIONS:
                raise ConfigError(f"augment: unknown augmentation '{aug}'; choose from {', '.join(AUGMENTATIONS)}")
        self.variant_list()  # validates every variant

    def variant_list(self) -> list[tuple[str, dict]]:
        """Variants as (name, params with defaults), accepting "chans",
        "smooth:sigma=2" or {variant = "smooth", sigma = 2}."""
        out = []
        for i, item in enumerate(self.variants):
            if isinstance(item, str):
                name, params = parse_variant(item)
            else:
                params = dict(item)
                name = params.pop("variant", None)
                if not isinstance(name, str):
                    raise ConfigError(f"variants[{i}]: a table needs variant = \"NAME\", got {item!r}")
            out.append((name, resolve_variant(name, params)))
        return out


# Recipe keys that list *other* runs or only describe: they do not change a run's weights, so
# they are not part of its identity (e.g. `--seeds 0,1` after seed 0 finished must skip seed 0,
# not retrain it). `performance` decides how fast the same training runs (its resolved values are
# in the checkpoint's meta), so `--workers 8` on a finished run skips it.
NOT_IN_RUN_IDENTITY = ("variants", "seeds", "description", "performance")


def run_config(recipe: dict, leave_out: tuple = NOT_IN_RUN_IDENTITY) -> dict:
    """A recipe's fields (``asdict(recipe)`` or the copy in a checkpoint's meta.json) that make a
    run's identity: train.run_hash hashes it, robustmix.twins adds the resolved model to it."""
    config = {k: v for k, v in recipe.items() if k not in leave_out}
    config["data"] = dict(config["data"])
    # Keys added for un-shuffling count only when set, so a classifier keeps the hash it had before them.
    if config.get("permutation_seed") is None:
        config.pop("permutation_seed", None)
    if config["data"].get("test_subset") is None:
        config["data"].pop("test_subset", None)
    return config


def check_runs(recipe) -> None:
    """What every recipe (classifier or un-shuffling) must get right to train anything."""
    if recipe.epochs < 0:
        raise ConfigError(f"epochs: must be >= 0, got {recipe.epochs}")
    for key in ("batch_size", "eval_batch_size"):
        if getattr(recipe, key) <= 0:
            raise ConfigError(f"{key}: must be > 0, got {getattr(recipe, key)}")
    if not recipe.seeds:
        raise ConfigError("seeds: list at least one seed")
    for i, seed in enumerate(recipe.seeds):
        check_seed(seed, f"seeds[{i}]")
    if not recipe.variants:
        raise ConfigError("variants: list at least one variant, e.g. variants = [\"full\", \"chans\"]")
    if not recipe.name or "/" in recipe.name or recipe.name.startswith("."):
        raise ConfigError(f"name: must be a plain name without '/', got {recipe.name!r}")


def check_task_keys(recipe) -> None:
    """Keys that belong to one task only."""
    if recipe.task == "unshuffle":
        check_seed(recipe.permutation_seed, "permutation_seed")
        patch = recipe.model.args.get("patch_size", 1)
        if patch != 1:
            raise ConfigError(f"model.args.patch_size: un-shuffling needs patch_size = 1 (no down-sampling), "
                              f"got {patch}")
        if recipe.augment:  # the target is the input image: augmenting one and not the other is wrong
            raise ConfigError("augment: un-shuffling recipes cannot augment; leave augment out")
    else:
        for key, value in (("permutation_seed", recipe.permutation_seed),
                           ("data.test_subset", recipe.data.test_subset)):
            if value is not None:
                raise ConfigError(f"{key}: applies to un-shuffling recipes only; remove it or set "
                                  f"task = \"unshuffle\"")


def require_model_name(data: dict, path: str | Path) -> None:
    """A recipe file must name its model: an empty or truncated file must not train a default one."""
    model = data.get("model", {})
    if isinstance(model, dict) and "name" not in model:  # a non-table is left to the type check
        raise ConfigError(f"{path}: missing key 'model.name'; add a [model] table with name = \"ARCH\" "
                          f"(`robustmix models` lists them)")


# What an un-shuffling recipe gets for a key it leaves out: smaller batches and a one-process,
# full-precision run (the performance table's "auto" would pick bf16 and loader workers on a GPU).
TASK_DEFAULTS = {"unshuffle": {"variants": ["full", "chans", "space"], "epochs": 10, "batch_size": 128,
                               "eval_batch_size": 500,
                               "performance": {"amp": "off", "channels_last": False, "workers": 0,
                                               "pin_memory": False}}}


def recipe_task(path: str | Path) -> str:
    """The recipe's task ("classify" unless it says otherwise): picks the trainer."""
    task = load_toml(path).get("task", "classify")
    if task not in ("classify", *TASK_DEFAULTS):
        raise ConfigError(f"task: unknown task {task!r}; choose classify or unshuffle")
    return task


def load_recipe(path: str | Path, overrides: dict | None = None, task: str | None = None) -> Recipe:
    """Parse a recipe file; ``overrides`` (from CLI flags) replace top-level keys.

    A dict override replaces only the keys it sets (not None) inside that table. ``task`` is the
    task of a file that names none (otherwise classify).
    """
    data = load_toml(path)
    if task is not None:
        data.setdefault("task", task)
    for key, value in (overrides or {}).items():
        if isinstance(value, dict):
            table, value = data.get(key, {}), {k: v for k, v in value.items() if v is not None}
            if value and isinstance(table, dict):
                data[key] = {**table, **value}
        elif value is not None:
            data[key] = value
    data.setdefault("name", Path(path).stem)
    table = data.get("data")
    if "task" not in data and ("permutation_seed" in data or isinstance(table, dict) and "test_subset" in table):
        # Without `task` a recipe is a classifier's (recipe_task); these keys are un-shuffling's only.
        raise ConfigError(f"{path} looks like an un-shuffling recipe (it sets permutation_seed or "
                          f"data.test_subset) but has no task; add task = \"unshuffle\" to it")
    require_model_name(data, path)
    task = data.get("task")
    for key, value in (TASK_DEFAULTS.get(task, {}) if isinstance(task, str) else {}).items():
        data.setdefault(key, value)
    return from_dict(Recipe, data)
