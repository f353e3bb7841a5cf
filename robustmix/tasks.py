"""What a training run learns: each task's model, batch, loss and test metric.

train.py runs one loop for every task and asks the task for the parts that
differ. ``classify`` (the default, and what every recipe without a ``task``
trains) is cross-entropy on the labels, scored by accuracy. ``unshuffle`` is
pixel un-shuffling (the paper's claim 6): one seeded permutation of the h*w
pixel positions is applied to every image (all channels alike), and a
ConvMixer with no down-sampling (patch size 1) maps the shuffled image back
to the original under a pixel-wise MSE loss, scored by PSNR. Its model is the
registered ConvMixer's ``normalize`` + ``stem`` + ``blocks`` with the
classifier head replaced by a 1x1 conv to the image channels and a sigmoid,
so the paper's variants apply to the very same SpatialMix / ChannelMix layers
as in classification.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import data as datasets
from .errors import CheckpointError, ConfigError
from .variants import build_variant

TASK_NAMES = ("classify", "unshuffle")


# --- pixel permutations ---------------------------------------------------------

def make_permutation(h: int, w: int, seed: int) -> torch.Tensor:
    """A permutation of the h*w flattened pixel positions, a pure function of ``seed``."""
    if h <= 0 or w <= 0:
        raise ConfigError(f"permutation size must be positive, got {h}x{w}")
    return torch.randperm(h * w, generator=torch.Generator().manual_seed(int(seed)))


def _check_perm(x: torch.Tensor, perm: torch.Tensor) -> None:
    if x.dim() < 2 or x.shape[-2] * x.shape[-1] != perm.numel():
        raise ConfigError(f"permutation of {perm.numel()} positions does not fit images of shape "
                          f"{tuple(x.shape)}; build it with make_permutation(h, w, seed)")


def shuffle_images(x: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """``out[..., i] = x[..., perm[i]]`` over flattened positions; every channel moves alike."""
    _check_perm(x, perm)
    flat = x.flatten(-2)
    return flat[..., perm.to(x.device)].view_as(x)


def unshuffle_images(x: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """The exact inverse of ``shuffle_images`` (pure indexing, so bit-exact)."""
    _check_perm(x, perm)
    inverse = torch.argsort(perm.to(x.device))
    return x.flatten(-2)[..., inverse].view_as(x)


def psnr(mse: float) -> float:
    """PSNR in dB for pixels in [0, 1] (peak 1)."""
    return float("inf") if mse <= 0 else 10.0 * math.log10(1.0 / mse)


# --- test metrics ---------------------------------------------------------------

@torch.no_grad()
def evaluate_accuracy(model, ds, idx: torch.Tensor, batch_size: int, device) -> float:
    was_training = model.training
    model.eval()
    correct = 0
    for start in range(0, len(idx), batch_size):
        x, y = datasets.batch(ds, idx[start:start + batch_size])
        correct += (model(x.to(device)).argmax(1).cpu() == y).sum().item()
    model.train(was_training)
    return correct / max(len(idx), 1)


@torch.no_grad()
def evaluate_mse(model: nn.Module | None, ds, idx, perm, batch_size: int, device,
                 constant: torch.Tensor | None = None) -> float:
    """Test MSE of ``model`` (or, with model=None, of ``constant`` / the shuffled input itself)."""
    if model is not None:
        model.eval()
    se, count = 0.0, 0
    for s in range(0, len(idx), batch_size):
        x = datasets.batch(ds, idx[s:s + batch_size])[0].to(device)
        if model is not None:
            pred = model(shuffle_images(x, perm))
        elif constant is not None:
            pred = constant.to(device).expand_as(x)
        else:
            pred = shuffle_images(x, perm)
        se += float(((pred - x) ** 2).double().sum())
        count += x.numel()
    return se / max(count, 1)


# --- the tasks ------------------------------------------------------------------

class ClassifyTask:
    """Cross-entropy on the labels; test metric: accuracy on the test split."""
    name = "classify"
    metric = "clean_acc"   # the metrics key every checkpoint of this task has (train's skip reads it)
    score = "acc"          # the per-epoch training score: history's train_acc

    def __init__(self, recipe=None, info=None):
        self.label_smoothing = recipe.optimizer.label_smoothing if recipe is not None else 0.0

    def build_model(self, recipe, variant: str, params: dict, seed: int, info) -> nn.Module:
        return build_variant(recipe.model.name, variant, num_classes=info.num_classes, in_chans=info.channels,
                             mean=list(info.mean), std=list(info.std), variant_seed=seed, variant_params=params,
                             **recipe.model.args)

    @staticmethod
    def rebuild(meta: dict) -> nn.Module:
        """The untrained model a checkpoint's meta.json describes (its weights are loaded after)."""
        arch = meta["model"]
        return build_variant(arch["name"], meta["variant"], variant_seed=meta["variant_seed"],
                             variant_params=meta["variant_params"], **arch["args"])

    def inputs(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x, y

    def loss(self, output, target, global_count: int, world_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(what to backpropagate, the loss summed over this batch, detached)."""
        total = F.cross_entropy(output, target, reduction="sum", label_smoothing=self.label_smoothing)
        # DDP averages the ranks' gradients: scaling each rank's sum by world_size / global_count
        # makes that average the global batch's mean gradient, also when it does not split evenly
        # (and in one process the backward is the mean reduction's, bit for bit).
        return total / global_count * world_size, total.detach()

    def train_score(self, output, target) -> torch.Tensor:
        return (output.detach().argmax(1) == target).sum()

    def evaluate(self, model, ds, idx, batch_size: int, device) -> dict:
        return {"clean_acc": evaluate_accuracy(model, ds, idx, batch_size, device)}

    def meta(self) -> dict:
        return {}


class UnshuffleTask:
    """Undo a fixed pixel permutation under pixel-wise MSE; test metric: PSNR of the test MSE."""
    name = "unshuffle"
    metric = "test_psnr"
    score = None           # the training loss is the MSE itself: no second score

    def __init__(self, recipe, info):
        h, w = info.image_size
        self.permutation_seed = recipe.permutation_seed
        self.perm = make_permutation(h, w, recipe.permutation_seed)

    def build_model(self, recipe, variant: str, params: dict, seed: int, info) -> nn.Module:
        args = {**recipe.model.args, "mean": list(info.mean), "std": list(info.std), "num_classes": 1}
        return _assemble(recipe.model.name, variant, params, seed, info.channels, float(np.mean(info.mean)),
                         **args)

    @staticmethod
    def rebuild(meta: dict) -> nn.Module:
        m = meta["model"]
        return _assemble(m["name"], meta["variant"], meta["variant_params"], meta["variant_seed"],
                         meta["dataset"]["channels"], float(np.mean(m["args"]["mean"])), **m["args"])

    def inputs(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return shuffle_images(x, self.perm), x

    def loss(self, output, target, global_count: int, world_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        mse = F.mse_loss(output, target)
        # The same global-batch scaling as classification; in one process the factor is exactly 1.
        return mse * (len(target) * world_size / global_count), mse.detach() * len(target)

    def train_score(self, output, target) -> None:
        return None

    def evaluate(self, model, ds, idx, batch_size: int, device) -> dict:
        mse = evaluate_mse(model, ds, idx, self.perm, batch_size, device)
        return {"test_mse": mse, "test_psnr": psnr(mse)}

    def meta(self) -> dict:
        return {"permutation_seed": self.permutation_seed}


TASKS = {task.name: task for task in (ClassifyTask, UnshuffleTask)}


def task_class(name: str, where: str = "task") -> type:
    if name not in TASKS:
        raise CheckpointError(f"{where}: unknown task {name!r}; this robustmix trains {', '.join(TASKS)}")
    return TASKS[name]


def task_for(recipe, info):
    """The task object of ``recipe`` for a data set described by ``info``."""
    return task_class(recipe.task)(recipe, info)


def _assemble(name: str, variant: str, params: dict, seed: int, channels: int, pixel_mean: float,
              **model_args) -> nn.Module:
    """Registered classifier -> un-shuffle model by swapping its head (nothing else changes)."""
    model = build_variant(name, variant, variant_seed=seed, variant_params=params,
                          **{**model_args, "patch_size": 1, "in_chans": channels})
    if not hasattr(model, "stem") or not hasattr(model, "blocks"):
        raise ConfigError(f"model '{name}' has no stem/blocks to reuse; use a convmixer_* model")
    dim = next(m for m in model.blocks.modules() if isinstance(m, nn.BatchNorm2d)).num_features
    out = nn.Conv2d(dim, channels, 1)
    # Outputs are pixels in [0, 1]: a sigmoid keeps them there without clipping
    # (which would zero the gradient), and a bias of logit(mean pixel) starts
    # the model at the average intensity instead of 0.5.
    p = min(max(pixel_mean, 1e-3), 1 - 1e-3)
    with torch.no_grad():
        out.bias.fill_(math.log(p / (1 - p)))
    model.head = nn.Sequential(out, nn.Sigmoid())
    model.task = "unshuffle"
    return model
