"""torch.distributed glue for jobs launched by torchrun (directly or under SLURM's srun).

robustmix never starts processes itself: torchrun does, and sets RANK,
WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT. Without them this is a
single process and every helper below is a no-op, so the same code path
serves one CPU, one GPU and many.

Data-parallel training must learn what one process learns from the same
global batch, so BatchNorm statistics are taken over the whole world's batch:
torch's SyncBatchNorm on CUDA, and GlobalBatchNorm2d below on CPU, where
SyncBatchNorm refuses to run.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn

from .errors import ConfigError

# Ranks wait for each other at barriers (e.g. before rank 0 aggregates a sharded
# eval, whose shards can differ by hours of AutoAttack). torchrun tears the whole
# job down when one rank dies, so a long timeout does not turn into a hang.
DEFAULT_TIMEOUT_S = 24 * 3600


@dataclass(frozen=True)
class World:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def backend(self) -> str | None:
        return dist.get_backend() if self.distributed else None

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` summed over ranks, in place (on the rank's device for nccl)."""
        if self.distributed:
            dist.all_reduce(tensor)
        return tensor

    def broadcast(self, obj):
        """Rank 0's ``obj`` on every rank (picklable objects; waits for rank 0)."""
        if not self.distributed:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def shard(self, items: list) -> list:
        """This rank's share of ``items``: every world_size-th one, starting at rank.

        A fixed round-robin, so which rank does which item is a function of the
        list alone and a re-run after a crash re-assigns the same work.
        """
        return items[self.rank::self.world_size]


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"environment: {name}={value!r} is not an integer; launch with torchrun") from None


def current_world() -> World:
    """The launch geometry torchrun put in the environment (one process when absent)."""
    world_size = _env_int("WORLD_SIZE") or 1
    if world_size <= 1:
        return World()
    rank, local_rank = _env_int("RANK"), _env_int("LOCAL_RANK")
    if rank is None:
        raise ConfigError("environment: WORLD_SIZE is set but RANK is not; launch with torchrun "
                          "(`torchrun --nproc_per_node N -m robustmix ...`)")
    return World(rank=rank, world_size=world_size, local_rank=local_rank if local_rank is not None else rank)


def init_world(device: torch.device) -> World:
    """Join the process group torchrun set up (nccl for CUDA, gloo for CPU); idempotent."""
    world = current_world()
    if not world.distributed or dist.is_initialized():
        return world
    backend = "nccl" if device.type == "cuda" else "gloo"
    timeout = timedelta(seconds=_env_int("ROBUSTMIX_DIST_TIMEOUT_S") or DEFAULT_TIMEOUT_S)
    dist.init_process_group(backend=backend, timeout=timeout)
    return world


def rank_device(device: torch.device, world: World) -> torch.device:
    """One GPU per process: a bare `cuda` means this rank's local GPU."""
    if device.type == "cuda" and world.distributed and device.index is None:
        device = torch.device("cuda", world.local_rank % max(torch.cuda.device_count(), 1))
    if device.type == "cuda" and device.index is not None:  # set_device refuses a bare "cuda"
        torch.cuda.set_device(device)
    return device


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks that autograd can go through.

    Every rank's loss depends on every rank's share of the statistics, so the
    gradient of a rank's share is the sum of all ranks' gradients.
    """

    @staticmethod
    def forward(ctx, tensor):
        total = tensor.clone()
        dist.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx, grad):
        total = grad.clone()
        dist.all_reduce(total)
        return total


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose batch statistics cover every rank's batch (CPU-capable SyncBatchNorm).

    Per-channel sums, sums of squares and the count are summed over ranks in
    float64 (in float32, E[x^2] - E[x]^2 would lose digits), then the layer
    normalises and updates its running statistics exactly as nn.BatchNorm2d
    would on the concatenated batch. The state_dict is BatchNorm2d's.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training or self.running_mean is None):
            return super().forward(x)  # running statistics: nothing to share
        self._check_input_dim(x)
        c, x64 = self.num_features, x.double()
        count = x64.new_full((1,), x.numel() / c)
        total = _AllReduceSum.apply(torch.cat([x64.sum((0, 2, 3)), x64.square().sum((0, 2, 3)), count]))
        n = total[2 * c]
        mean = total[:c] / n
        var = total[c:2 * c] / n - mean.square()  # biased: BatchNorm normalises with it
        if self.training and self.track_running_stats:
            self._update_running_stats(mean.detach(), var.detach(), n.detach())
        shape = (1, c, 1, 1)
        y = (x - mean.float().view(shape)) * torch.rsqrt(var.float() + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)

    @torch.no_grad()
    def _update_running_stats(self, mean: torch.Tensor, var: torch.Tensor, n: torch.Tensor) -> None:
        self.num_batches_tracked.add_(1)
        factor = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
        self.running_mean.mul_(1 - factor).add_(mean.to(self.running_mean.dtype), alpha=factor)
        # The running variance is the unbiased estimate, as in nn.BatchNorm2d.
        self.running_var.mul_(1 - factor).add_((var * n / (n - 1).clamp_min(1)).to(self.running_var.dtype),
                                               alpha=factor)


def _swap_batchnorm(module: nn.Module, kinds: tuple[type, ...], cls: type) -> nn.Module:
    """``module`` with every layer whose exact type is in ``kinds`` rebuilt as ``cls``.

    The new layer takes over the old one's parameters and buffers (the same
    tensors), so an optimiser built before or after the swap still holds them.
    """
    if type(module) in kinds:
        new = cls(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats)
        if module.affine:
            new.weight, new.bias = module.weight, module.bias
        if module.track_running_stats:
            new.running_mean, new.running_var = module.running_mean, module.running_var
            new.num_batches_tracked = module.num_batches_tracked
        new.train(module.training)
        return new
    for name, child in module.named_children():
        module.add_module(name, _swap_batchnorm(child, kinds, cls))
    return module


def sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """BatchNorm2d layers -> statistics over the whole world's batch (SyncBatchNorm needs CUDA)."""
    cls = nn.SyncBatchNorm if device.type == "cuda" else GlobalBatchNorm2d
    return _swap_batchnorm(model, (nn.BatchNorm2d,), cls)


def plain_batchnorm(model: nn.Module) -> nn.Module:
    """Undo sync_batchnorm: plain BatchNorm2d layers, as a one-process run saves and evaluates."""
    return _swap_batchnorm(model, (nn.SyncBatchNorm, GlobalBatchNorm2d), nn.BatchNorm2d)


@contextmanager
def leaving_process_group():
    """Run a job, then leave the process group, if this process joined one.

    After a finished job every rank first waits for the others (a barrier, as PyTorch's own
    distributed tests do before destroying a group): a rank must not close its connections
    while a peer is still completing the last collective, which gloo can answer by aborting
    that peer. After a failure there is no barrier: the other ranks may never arrive.
    """
    try:
        yield
    except BaseException:
        if _joined():
            dist.destroy_process_group()
        raise
    if _joined():
        dist.barrier()
        dist.destroy_process_group()


def _joined() -> bool:
    return dist.is_available() and dist.is_initialized()
