"""A ResNet whose every 3x3 convolution is a separable pair.

Each 3x3 conv of a basic block becomes depthwise 3x3 (SpatialMix, carrying
the stride) followed by pointwise 1x1 (ChannelMix, carrying the change of
width), so the full / chans / space variants apply as in ConvMixer. The stem
and the 1x1 projection shortcuts are ordinary layers that learn in every
variant, like the stem and head of ConvMixer.
"""
from __future__ import annotations

import torch.nn as nn
import torch.nn.functional as F

from .layers import ChannelMix, Normalize, SeparableModel, SpatialMix
from .registry import build, register_model


class SeparableConv(nn.Sequential):
    def __init__(self, in_ch: int, out_ch: int, stride: int = 1):
        super().__init__(SpatialMix(in_ch, 3, stride=stride, bias=False),
                         ChannelMix(in_ch, out_ch, bias=False))


class BasicBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int):
        super().__init__()
        self.conv1 = SeparableConv(in_ch, out_ch, stride)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = SeparableConv(out_ch, out_ch)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.shortcut = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(out_ch))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class SepResNet(SeparableModel):
    ARG_NAMES = ("widths", "blocks_per_stage", "num_classes", "in_chans", "mean", "std")

    def __init__(self, widths=(64, 128, 256, 512), blocks_per_stage=(2, 2, 2, 2),
                 num_classes: int = 10, in_chans: int = 3, mean=None, std=None):
        super().__init__()
        widths, blocks_per_stage = list(widths), list(blocks_per_stage)
        self.normalize = Normalize(mean or [0.5] * in_chans, std or [0.5] * in_chans)
        # CIFAR-style stem: one 3x3 conv, no pooling, so 32x32 inputs keep resolution.
        self.stem = nn.Sequential(nn.Conv2d(in_chans, widths[0], 3, padding=1, bias=False),
                                  nn.BatchNorm2d(widths[0]), nn.ReLU())
        blocks, in_ch = [], widths[0]
        for stage, (width, n) in enumerate(zip(widths, blocks_per_stage)):
            for i in range(n):
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(BasicBlock(in_ch, width, stride))
                in_ch = width
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(in_ch, num_classes))


def _resnet(defaults: dict, kwargs: dict) -> SepResNet:
    return build(SepResNet, {"num_classes": 10, "in_chans": 3, **defaults}, kwargs)


@register_model
def sepresnet_tiny(**kwargs):
    """Tiny: for tests and smoke runs."""
    return _resnet(dict(widths=[8, 16], blocks_per_stage=[1, 1]), kwargs)


@register_model
def sepresnet20(**kwargs):
    """CIFAR ResNet-20 layout (3 stages x 3 blocks, widths 16/32/64): CPU scale."""
    return _resnet(dict(widths=[16, 32, 64], blocks_per_stage=[3, 3, 3]), kwargs)


@register_model
def sepresnet18(**kwargs):
    """ResNet-18 layout at CIFAR scale (widths 64..512)."""
    return _resnet(dict(widths=[64, 128, 256, 512], blocks_per_stage=[2, 2, 2, 2]), kwargs)
