"""Building blocks shared by every architecture.

The spatial (depthwise) and channel (pointwise) convolutions are their own
classes so that variants find "the spatial filters" and "the channel
filters" of any model by type, never by position.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ..errors import ConfigError


class SpatialMix(nn.Conv2d):
    """Depthwise k x k convolution: mixes space, never channels."""

    def __init__(self, channels: int, kernel_size: int, stride: int = 1, bias: bool = True):
        super().__init__(channels, channels, kernel_size, stride=stride,
                         padding=kernel_size // 2, groups=channels, bias=bias)


class ChannelMix(nn.Conv2d):
    """Pointwise 1 x 1 convolution: mixes channels, never space."""

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True):
        super().__init__(in_channels, out_channels, 1, bias=bias)


class Normalize(nn.Module):
    """Per-channel standardisation inside the model, so attacks act on [0, 1] pixels."""

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class Residual(nn.Module):
    def __init__(self, fn: nn.Module):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x) + x


ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU, "silu": nn.SiLU}


def make_activation(name: str) -> nn.Module:
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ConfigError(f"unknown activation '{name}'; choose one of: {', '.join(ACTIVATIONS)}") from None


class SeparableModel(nn.Module):
    """Common interface: normalize -> stem -> blocks -> head.

    ``forward_features`` stops before global pooling, ``forward_head`` pools
    and classifies; ``spatial_filters``/``channel_filters`` list the mixing
    layers by name.
    """

    normalize: Normalize
    stem: nn.Module
    blocks: nn.Sequential
    head: nn.Module

    def forward_features(self, x):
        return self.blocks(self.stem(self.normalize(x)))

    def forward_head(self, x):
        return self.head(x)

    def forward(self, x):
        return self.forward_head(self.forward_features(x))

    def spatial_filters(self) -> list[tuple[str, SpatialMix]]:
        return [(n, m) for n, m in self.named_modules() if isinstance(m, SpatialMix)]

    def channel_filters(self) -> list[tuple[str, ChannelMix]]:
        return [(n, m) for n, m in self.named_modules() if isinstance(m, ChannelMix)]


def count_params(model: nn.Module) -> tuple[int, int]:
    """(total, trainable) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total, trainable
