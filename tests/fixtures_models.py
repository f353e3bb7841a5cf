"""Small seeded models for tests, importable by name as an [[external]] factory
(``factory = "fixtures_models:tiny_cnn"``; once a test has put tests/ on sys.path)."""
from __future__ import annotations

import torch
from torch import nn


def tiny_cnn(width: int = 4, classes: int = 10, seed: int = 0) -> nn.Module:
    """An untrained but seeded CNN for 1 x 28 x 28 images: the same weights on every call."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4),
                         nn.Flatten(), nn.Linear(width * 16, classes))


class Coin(nn.Module):
    """A randomised model: the base network's logits plus noise drawn from the global RNG."""

    def __init__(self, base: nn.Module, scale: float = 0.5):
        super().__init__()
        self.base, self.scale = base, scale

    def forward(self, x):
        z = self.base(x)
        return z + self.scale * torch.randn_like(z)


class Brightness(nn.Module):
    """Classifies conftest's synthetic Fashion-MNIST (class k has mean pixel about (63.5 + 12 k) / 255)
    by mean brightness: right on clean images, and easy to break with small eps. ``shift`` moves the
    class centres (a buffer, so it is part of the weights' identity)."""

    def __init__(self, shift: float = 0.0):
        super().__init__()
        self.register_buffer("centres", 63.5 + shift + 12 * torch.arange(10, dtype=torch.float32))

    def forward(self, x):
        mean = x.mean(dim=(1, 2, 3)) * 255
        return -((mean[:, None] - self.centres) ** 2) / 8


def prototype_data(n: int, gen: torch.Generator):
    """n synthetic 1 x 28 x 28 images of 10 classes (a fixed prototype per class plus noise),
    drawn from ``gen``: learnable in a few dozen steps, so attacks have something to break."""
    protos = torch.rand(10, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, 10, (n,), generator=gen)
    x = (0.3 * protos[y] + 0.7 * torch.rand(n, 1, 28, 28, generator=gen)).clamp(0, 1)
    return x, y


def fit_on_prototypes(model: nn.Module, steps: int, gen: torch.Generator) -> nn.Module:
    """Train ``model`` on ``steps`` batches of 64 prototype images from ``gen`` (Adam, lr 3e-3);
    returns it in eval mode. Seeded by the caller's global seed and ``gen``, so reruns match."""
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(steps):
        xb, yb = prototype_data(64, gen)
        opt.zero_grad()
        nn.functional.cross_entropy(model(xb), yb).backward()
        opt.step()
    return model.eval()
