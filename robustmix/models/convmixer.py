"""ConvMixer (Trockman & Kolter), as published.

patch embedding conv -> depth x [Residual(depthwise k x k, act, BN),
pointwise 1x1, act, BN] -> global average pool -> linear head.
"""
from __future__ import annotations

import torch.nn as nn

from .layers import ChannelMix, Normalize, Residual, SeparableModel, SpatialMix, make_activation
from .registry import build, register_model


class ConvMixer(SeparableModel):
    ARG_NAMES = ("dim", "depth", "kernel_size", "patch_size", "activation",
                 "num_classes", "in_chans", "mean", "std")

    def __init__(self, dim: int, depth: int, kernel_size: int = 9, patch_size: int = 7,
                 activation: str = "gelu", num_classes: int = 10, in_chans: int = 3,
                 mean=None, std=None):
        super().__init__()
        self.normalize = Normalize(mean or [0.5] * in_chans, std or [0.5] * in_chans)
        self.stem = nn.Sequential(
            nn.Conv2d(in_chans, dim, kernel_size=patch_size, stride=patch_size),
            make_activation(activation), nn.BatchNorm2d(dim))
        self.blocks = nn.Sequential(*[
            nn.Sequential(
                Residual(nn.Sequential(SpatialMix(dim, kernel_size), make_activation(activation), nn.BatchNorm2d(dim))),
                ChannelMix(dim, dim), make_activation(activation), nn.BatchNorm2d(dim))
            for _ in range(depth)])
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(dim, num_classes))




def _convmixer(defaults: dict, kwargs: dict) -> ConvMixer:
    return build(ConvMixer, {"num_classes": 10, "in_chans": 3, "activation": "gelu", **defaults}, kwargs)


@register_model
def convmixer_16_2_ks3_p4(**kwargs):
    """Tiny: for tests and smoke runs."""
    return _convmixer(dict(dim=16, depth=2, kernel_size=3, patch_size=4), kwargs)


@register_model
def convmixer_32_4_ks5_p2(**kwargs):
    """CPU scale: the Fashion-MNIST demo model (minutes per variant on 2 cores)."""
    return _convmixer(dict(dim=32, depth=4, kernel_size=5, patch_size=2), kwargs)


@register_model
def convmixer_64_4_ks5_p2(**kwargs):
    """CPU scale, wider: width-sweep member."""
    return _convmixer(dict(dim=64, depth=4, kernel_size=5, patch_size=2), kwargs)


@register_model
def convmixer_128_6_ks5_p2(**kwargs):
    """CPU/GPU middle ground for width sweeps."""
    return _convmixer(dict(dim=128, depth=6, kernel_size=5, patch_size=2), kwargs)


@register_model
def convmixer_256_8_ks5_p2(**kwargs):
    """The reference CIFAR-10 ConvMixer-256/8."""
    return _convmixer(dict(dim=256, depth=8, kernel_size=5, patch_size=2), kwargs)


@register_model
def convmixer_512_16_ks7_p1(**kwargs):
    """The paper's "large" pixel un-shuffle model: depth 16, width 512, kernel 7, no down-sampling."""
    return _convmixer(dict(dim=512, depth=16, kernel_size=7, patch_size=1), kwargs)


@register_model
def convmixer_768_32_ks7_p7(**kwargs):
    """ImageNet ConvMixer-768/32."""
    return _convmixer(dict(dim=768, depth=32, kernel_size=7, patch_size=7, activation="relu"), kwargs)


@register_model
def convmixer_1536_20_ks9_p7(**kwargs):
    """ImageNet ConvMixer-1536/20."""
    return _convmixer(dict(dim=1536, depth=20, kernel_size=9, patch_size=7), kwargs)
