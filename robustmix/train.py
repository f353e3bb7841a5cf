"""Train every (variant x seed) of a recipe into the checkpoint store.

Determinism and resume: the data order of epoch e comes from a generator
seeded by (seed, e) and the augmentation of step s from one seeded by
(seed, e, s), never from a running RNG, and the model/optimiser state is
saved atomically after each epoch. A re-run after Ctrl-C or kill -9
therefore continues at the last finished epoch and, on CPU, ends with the
same weights as an uninterrupted run; loader workers can build any step's
batch on their own.

Under torchrun every rank builds the same global batch of ``batch_size``
images and trains on its slice of it with DistributedDataParallel and
world-wide BatchNorm statistics, so N processes learn what one process learns
(up to float rounding); rank 0 alone writes to disk.
"""
from __future__ import annotations

import hashlib
import math
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Callable

import pandas as pd
import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from . import data as datasets
from .device import resolve_device
from .distributed import World, init_world, plain_batchnorm, rank_device, sync_batchnorm
from .errors import CheckpointError, ConfigError
from .fileio import atomic_path
from .models import count_params
from .provenance import code_version, device_description, package_versions, stable_hash
from .recipe import Recipe, run_config
from .store import ModelStore
from .tasks import task_for
from .twins import copy_twin
from .variants import audit_frozen, variant_tag


def lr_at(recipe: Recipe, t: float) -> float:
    """Learning rate at fractional epoch t."""
    lr, total = recipe.optimizer.lr, max(recipe.epochs, 1e-9)
    kind = recipe.schedule.name
    if kind == "constant":
        return lr
    if kind == "cosine":
        return 0.5 * lr * (1 + math.cos(math.pi * min(t / total, 1.0)))
    # Piecewise-linear one-cycle of the ConvMixer CIFAR recipe.
    xs, ys = [0, total * 2 / 5, total * 4 / 5, total], [0.0, lr, lr / 20, 0.0]
    for (x0, y0), (x1, y1) in zip(zip(xs, ys), zip(xs[1:], ys[1:])):
        if t <= x1:
            return y0 + (y1 - y0) * (t - x0) / max(x1 - x0, 1e-12)
    return 0.0


def augment(x: torch.Tensor, names: list[str], gen: torch.Generator) -> torch.Tensor:
    """Batch augmentation driven only by ``gen`` (so resume replays it exactly)."""
    n, _, h, w = x.shape
    if "random-crop" in names:
        pad = 4
        padded = F.pad(x, (pad, pad, pad, pad))
        dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
        dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
        x = torch.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(n)])
    if "hflip" in names:
        flip = torch.rand(n, generator=gen) < 0.5
        x = torch.where(flip.view(-1, 1, 1, 1).to(x.device), x.flip(-1), x)
    return x


def augment_generator(seed: int, epoch: int, step: int) -> torch.Generator:
    """The augmentation stream of one step, a function of (seed, epoch, step) alone."""
    digest = hashlib.blake2b(f"{seed}/{epoch}/{step}".encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little"))


class StepBatches(Dataset):
    """Item s: this rank's slice of the augmented global batch of step s of one epoch.

    Every rank gathers and augments the whole global batch, then keeps
    images rank::world_size, so what a step trains on does not depend on the
    number of processes or loader workers.
    """

    def __init__(self, ds, order: torch.Tensor, steps: int, recipe: Recipe, seed: int, epoch: int, world: World):
        self.ds, self.order, self.steps, self.recipe = ds, order, steps, recipe
        self.seed, self.epoch, self.world = seed, epoch, world

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, step: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        size = self.recipe.batch_size
        idx = self.order[step * size:(step + 1) * size]
        x, y = datasets.batch(self.ds, idx)
        x = augment(x, self.recipe.augment, augment_generator(self.seed, self.epoch, step))
        mine = slice(self.world.rank, None, self.world.world_size)
        return x[mine].contiguous(), y[mine].contiguous(), len(idx)


def optimizer_step(optimizer, loss, learned, recipe, t: float) -> None:
    """One update at fractional epoch t: schedule LR, backward, clip, step.

    Shared by every task's trainer so the optimisation recipe means the same thing everywhere.
    """
    for group in optimizer.param_groups:
        group["lr"] = lr_at(recipe, t)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if recipe.optimizer.grad_clip:
        torch.nn.utils.clip_grad_norm_(learned, recipe.optimizer.grad_clip)
    optimizer.step()


def make_optimizer(recipe: Recipe, model: torch.nn.Module) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    o = recipe.optimizer
    if o.name == "sgd":
        return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay, nesterov=True)
    return torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay)


def seeded_subset(n_total: int, n: int | None, seed: int, key: str, what: str) -> torch.Tensor:
    """Sorted indices of a seeded subset of ``n`` of ``n_total`` images (all of them for None).

    Every task's trainer draws its subsets here, so one seed means one subset everywhere.
    """
    if n is not None and n > n_total:  # silently training on fewer images would mislabel the run
        raise ConfigError(f"data.{key}: {n} is more than the {n_total} images of {what}; "
                          f"use at most {n_total}, or leave it out for all of them")
    if n is None or n == n_total:
        return torch.arange(n_total)
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(n_total, generator=g)[:n].sort().values


def train_subset(recipe: Recipe, n_total: int) -> torch.Tensor:
    recipe.data.validate("data")  # a Recipe built in Python skips the loader's checks
    return seeded_subset(n_total, recipe.data.train_subset, recipe.data.subset_seed, "train_subset",
                         f"{recipe.data.name}'s train split")


def test_subset(recipe: Recipe, n_total: int) -> torch.Tensor:
    """The test images a run is scored on (seeded by subset_seed + 1: not the train subset's draw)."""
    return seeded_subset(n_total, recipe.data.test_subset, recipe.data.subset_seed + 1, "test_subset",
                         f"{recipe.data.name}'s test split")


@dataclass
class TrainResult:
    name: str
    variant: str
    seed: int
    clean_acc: float | None  # None for a task scored otherwise (its meta.json metrics say how)
    params: int
    trainable_params: int
    seconds: float
    status: str  # trained | resumed | skipped | copied (robustmix.twins)


def run_name(recipe: Recipe, variant: str, params: dict, seed: int) -> str:
    return f"{recipe.name}/{variant_tag(variant, params)}-s{seed}"


def run_hash(recipe: Recipe, variant: str, params: dict, seed: int) -> str:
    """Identity of one (recipe, variant, seed) run: equal hash = same training."""
    return stable_hash(run_config(asdict(recipe)) | {"_variant": [variant, params], "_seed": seed})


def load_resume_state(path, recipe_hash: str, epochs: int, model, optimizer,
                      device) -> tuple[int, float, list] | None:
    """Load a run's resume state into ``model`` and ``optimizer``; return (epoch, elapsed, history),
    or None when it belongs to another recipe (the run then starts over and overwrites it).

    torch.load's weights_only unpickler builds tensors, containers and numbers only, so a crafted
    state.pt cannot run code; anything that is not this run's resume state is a one-line error
    naming the folder to delete.
    """
    def unusable(why: str) -> CheckpointError:
        return CheckpointError(f"{path} is not a usable resume state ({why}); delete {path.parent} "
                               f"to start this run over from epoch 0")

    try:
        with warnings.catch_warnings():  # its notes on a foreign pickle's protocol: the error below says it all
            warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\._weights_only_unpickler")
            state = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # random bytes, a foreign file, refused pickled code: many types, one meaning
        raise unusable(f"{type(exc).__name__}: not a file `robustmix train` wrote; pickled code in it is "
                       f"refused, never run") from None
    if not isinstance(state, dict):
        raise unusable(f"it holds a {type(state).__name__}, not a dict")
    if state.get("recipe_hash") != recipe_hash:
        return None
    epoch, elapsed, history = state.get("epoch"), state.get("elapsed"), state.get("history")
    if (isinstance(epoch, bool) or not isinstance(epoch, int) or not 1 <= epoch <= epochs
            or not isinstance(elapsed, (int, float)) or not isinstance(history, list)):
        raise unusable("epoch, elapsed or history missing or out of range")
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise unusable(f"it does not fit this run's model and optimiser: {type(exc).__name__}") from None
    return epoch, float(elapsed), list(history)


def train_one(recipe: Recipe, variant: str, params: dict, seed: int, store: ModelStore,
              device: torch.device, on_epoch_end: Callable[[int], None] | None = None,
              progress: bool = True, world: World = World()) -> TrainResult:
    """Train (or skip, or resume) one run; under torchrun every rank calls this in step."""
    name = run_name(recipe, variant, params, seed)
    recipe_hash = run_hash(recipe, variant, params, seed)
    if store.exists(name):
        meta = store.meta(name)
        if meta.get("recipe_hash") == recipe_hash:
            m = meta["metrics"]
            return TrainResult(name, variant, seed, m.get("clean_acc"), meta["params"], meta["trainable_params"],
                               meta["seconds"], "skipped")

    root = recipe.data.root
    train_ds = datasets.load_dataset(recipe.data.name, "train", root=root, download=recipe.data.download)
    test_ds = datasets.load_dataset(recipe.data.name, "test", root=root, download=recipe.data.download)
    info = train_ds.info
    indices = train_subset(recipe, len(train_ds))  # before anything trains: it checks the subset fits
    test_indices = test_subset(recipe, len(test_ds))
    task = task_for(recipe, info)
    perf = recipe.performance.resolve(device.type)
    memory_format = torch.channels_last if perf.channels_last else torch.contiguous_format

    torch.manual_seed(seed)  # the learned layers' init; frozen banks use their own seeds
    model = task.build_model(recipe, variant, params, seed, info).to(device)
    if world.distributed:  # results must not depend on the number of processes
        model = sync_batchnorm(model, device)
    model = model.to(memory_format=memory_format)
    optimizer = make_optimizer(recipe, model)
    learned = [p for p in model.parameters() if p.requires_grad]
    total, trainable = count_params(model)
    steps = max(1, math.ceil(len(indices) / recipe.batch_size))
    if not world.distributed:  # every rank would search and copy; a distributed run trains
        copied = copy_twin(store, name, asdict(recipe), recipe_hash, model.model_args, variant, params, seed,
                           asdict(perf), device_description(device))
        if copied is not None:
            store.clear_partial(name)
            print(f"{name}: the same training as {copied['copied_from']}; copied, not retrained", file=sys.stderr)
            return TrainResult(name, variant, seed, copied["metrics"].get("clean_acc"), total, trainable,
                               copied["seconds"], "copied")

    state_path = store.partial_path(name) / "state.pt"
    start_epoch, elapsed, status, history = 0, 0.0, "trained", []
    if state_path.exists():
        resumed = load_resume_state(state_path, recipe_hash, recipe.epochs, model, optimizer, device)
        if resumed is not None:
            start_epoch, elapsed, history = resumed
            status = "resumed"
            if world.is_main:
                print(f"{name}: resuming after epoch {start_epoch}/{recipe.epochs}", file=sys.stderr)

    # `model` stays the plain module: it is what state.pt and the checkpoint hold.
    net = model
    if world.distributed:
        net = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
    if perf.compile:
        net = torch.compile(net)
    for epoch in range(start_epoch, recipe.epochs):
        t0 = time.perf_counter()
        net.train()
        gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        order = indices[torch.randperm(len(indices), generator=gen)]
        loader = DataLoader(StepBatches(train_ds, order, steps, recipe, seed, epoch, world), batch_size=None,
                            num_workers=perf.workers, pin_memory=perf.pin_memory)
        # Running sums stay on the device: a .item() per step would force a sync.
        loss_sum = torch.zeros((), device=device, dtype=torch.float64)
        score_sum = torch.zeros((), device=device, dtype=torch.float64)
        seen = 0  # by this rank
        show = progress and world.is_main and sys.stderr.isatty()
        bar = tqdm(loader, desc=f"{name} epoch {epoch + 1}/{recipe.epochs}", leave=False,
                   disable=not show, unit="batch")
        for step, (x, y, global_count) in enumerate(bar):
            x = x.to(device, non_blocking=True).contiguous(memory_format=memory_format)
            x, y = task.inputs(x, y.to(device, non_blocking=True))
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=perf.amp == "bf16"):
                out = net(x)
                objective, loss = task.loss(out, y, global_count, world.world_size)
            optimizer_step(optimizer, objective, learned, recipe, epoch + (step + 1) / steps)
            loss_sum += loss
            if task.score:
                score_sum += task.train_score(out, y)
            seen += len(y)
            if show:
                rate = seen * world.world_size / max(time.perf_counter() - t0, 1e-9)
                shown = {task.score: f"{score_sum.item() / max(seen, 1):.3f}"} if task.score else {}
                bar.set_postfix(loss=f"{loss_sum.item() / max(seen, 1):.3f}", **shown, img_s=f"{rate:.0f}")
        bar.close()
        totals = torch.stack([loss_sum, score_sum, torch.tensor(float(seen), device=device, dtype=torch.float64)])
        loss_total, score_total, seen_total = world.all_reduce_sum(totals).tolist()
        seconds = time.perf_counter() - t0
        elapsed += seconds
        train_loss, train_score = loss_total / max(seen_total, 1), score_total / max(seen_total, 1)
        history.append({"epoch": epoch + 1, "train_loss": train_loss,
                        **({f"train_{task.score}": train_score} if task.score else {}), "seconds": elapsed})
        if world.is_main:
            shown = f" {task.score} {train_score:.4f}" if task.score else ""
            print(f"{name}: epoch {epoch + 1}/{recipe.epochs} loss {train_loss:.4f}{shown} "
                  f"{seen_total / max(seconds, 1e-9):.0f} img/s", file=sys.stderr)
            state_path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(state_path) as tmp:
                torch.save({"epoch": epoch + 1, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                            "recipe_hash": recipe_hash, "elapsed": elapsed, "history": history}, tmp)
        world.barrier()  # no rank starts an epoch before the previous one is on disk
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1)

    if world.distributed:
        model = plain_batchnorm(model)  # the checkpoint is a one-process model, whatever trained it
    clean_acc = None
    if world.is_main:
        t0 = time.perf_counter()
        metrics = task.evaluate(model, test_ds, test_indices, recipe.eval_batch_size, device)
        clean_acc = metrics.get("clean_acc")
        elapsed += time.perf_counter() - t0
        mismatched = audit_frozen(model.cpu())
        if mismatched:  # a bug, not a user error: frozen filters must never move
            raise RuntimeError(f"{name}: frozen tensors changed during training: {mismatched[:3]}")
        meta = {
            "task": task.name, **task.meta(),
            "model": {"name": recipe.model.name, "args": model.model_args},
            "arch": recipe.model.name,
            "variant": variant, "variant_params": params, "variant_seed": seed, "seed": seed,
            "dataset": {"name": info.name, "channels": info.channels, "image_size": list(info.image_size),
                        "num_classes": info.num_classes, "mean": list(info.mean), "std": list(info.std)},
            "recipe": asdict(recipe), "recipe_hash": recipe_hash,
            "metrics": {**metrics, "history": history},
            "params": total, "trainable_params": trainable, "frozen_audit": "bit-identical to seed",
            "code_version": code_version(), "packages": package_versions(),
            "device": device_description(device), "performance": asdict(perf),
            "distributed": {"world_size": world.world_size, "backend": world.backend,
                            "sync_bn": world.distributed},
            "seconds": elapsed,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        store.save(name, model, meta)
        store.clear_partial(name)
    # The other ranks wait here until the checkpoint is committed.
    clean_acc, elapsed = world.broadcast((clean_acc, elapsed))
    return TrainResult(name, variant, seed, clean_acc, total, trainable, elapsed, status)


def train_recipe(recipe: Recipe, store: ModelStore, device: str | None = None, progress: bool = True,
                 on_epoch_end=None) -> list[TrainResult]:
    """Train every run of ``recipe``; under torchrun, joins the process group (the caller shuts it down)."""
    dev = resolve_device(device or recipe.device)
    world = init_world(dev)
    dev = rank_device(dev, world)
    if world.is_main:
        store.check_writable()
    world.barrier()
    results = []
    for variant, params in recipe.variant_list():
        for seed in recipe.seeds:
            results.append(train_one(recipe, variant, params, seed, store, dev, on_epoch_end, progress, world))
    return results


def summary_table(results: list[TrainResult]) -> str:
    df = pd.DataFrame([asdict(r) for r in results])
    if df.empty:
        return "(nothing trained)"
    df["clean_acc"] = df["clean_acc"].map(lambda a: f"{a:.4f}")
    df["seconds"] = df["seconds"].map(lambda s: f"{s:.1f}")
    return df.rename(columns={"name": "model"}).to_string(index=False)
