"""Our own gradient attacks: PGD (Linf, L2; restarts, CE or DLR loss, early stop) and FGSM.

The steps are the same operations, in the same order, as torchattacks' PGD and
PGDL2, so with the same start the iterates match bit for bit.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError
from .base import Attack, check_choice, check_positive
from .registry import register_attack


def _dlr(logits: Tensor, y: Tensor) -> Tensor:
    if logits.shape[1] < 3:
        raise ConfigError(f"loss='dlr' needs at least 3 classes, the model has {logits.shape[1]}; use loss='ce'")
    z, ind = logits.sort(1)
    z_y = logits.gather(1, y[:, None]).squeeze(1)
    z_other = torch.where(ind[:, -1] == y, z[:, -2], z[:, -1])
    return -(z_y - z_other) / (z[:, -1] - z[:, -3] + 1e-12)


def _loss(logits: Tensor, y: Tensor, kind: str) -> Tensor:
    # Per-example sum, so each example's gradient is independent of who else is in the batch.
    return F.cross_entropy(logits, y, reduction="sum") if kind == "ce" else _dlr(logits, y).sum()


def _step(xa: Tensor, g: Tensor, x0: Tensor, eps: float, alpha: float, norm: str) -> Tensor:
    # Same operations, in the same order, as torchattacks.PGD / PGDL2, so results match bit for bit.
    if norm == "Linf":
        xa = xa + alpha * g.sign()
        return torch.clamp(x0 + torch.clamp(xa - x0, min=-eps, max=eps), min=0, max=1)
    shape = (-1, *[1] * (xa.dim() - 1))
    g = g / (g.flatten(1).norm(p=2, dim=1) + 1e-10).view(shape)
    delta = xa + alpha * g - x0
    factor = torch.clamp(eps / delta.flatten(1).norm(p=2, dim=1), max=1.0)
    return torch.clamp(x0 + delta * factor.view(shape), min=0, max=1)


def _random_start(x: Tensor, eps: float, norm: str, gen: torch.Generator) -> Tensor:
    if norm == "Linf":
        d = (2 * torch.rand(x.shape, generator=gen, device=x.device, dtype=x.dtype) - 1) * eps
    else:  # uniform in the L2 ball: Gaussian direction, radius eps * U^(1/dim)
        d = torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)
        u = torch.rand(x.shape[0], generator=gen, device=x.device, dtype=x.dtype)
        r = eps * u.pow(1.0 / x[0].numel()) / d.flatten(1).norm(p=2, dim=1)
        d = d * r.view(-1, *[1] * (x.dim() - 1))
    return torch.clamp(x + d, 0, 1)


def _pgd_run(model, x0, y0, eps, norm, steps, alpha, start, loss, early_stop, need_mask):
    """One PGD run -> (x_adv, broken, passes). With early_stop, broken examples leave the batch
    at the iterate that broke them (the check reuses the gradient step's forward pass)."""
    out = start.clone()
    broken = torch.zeros(x0.shape[0], dtype=torch.bool, device=x0.device)
    pos = torch.arange(x0.shape[0], device=x0.device)
    xa, xs, ys, passes = start, x0, y0, 0
    for _ in range(steps):
        xa = xa.detach().requires_grad_(True)
        with torch.enable_grad():
            logits = model(xa)
            passes += xa.shape[0]
            keep = None
            if early_stop:
                hit = logits.detach().argmax(1) != ys
                if bool(hit.any()):
                    out[pos[hit]] = xa.detach()[hit]
                    broken[pos[hit]] = True
                    keep = ~hit
                    if not bool(keep.any()):
                        return out, broken, passes
                    logits, ys = logits[keep], ys[keep]
            g = torch.autograd.grad(_loss(logits, ys, loss), xa)[0]
        xa = xa.detach()
        if keep is not None:
            xa, g, xs, pos = xa[keep], g[keep], xs[keep], pos[keep]
        xa = _step(xa, g, xs, eps, alpha, norm)
    out[pos] = xa
    if need_mask:  # restarts need to know who broke at the final iterate
        with torch.no_grad():
            broken[pos] |= model(xa).argmax(1) != ys
        passes += xa.shape[0]
    return out, broken, passes


def _pgd(model, x, y, eps, norm, *, steps, alpha, random_start, restarts, loss, early_stop, seed):
    gen = torch.Generator(device=x.device).manual_seed(seed)
    x_adv, todo, passes = x.clone(), torch.arange(x.shape[0], device=x.device), 0
    runs = restarts if random_start else 1  # deterministic restarts would only repeat themselves
    for r in range(runs):
        if todo.numel() == 0:
            break
        x0, y0 = x[todo], y[todo]
        start = _random_start(x0, eps, norm, gen) if random_start else x0.clone()
        out, broken, p = _pgd_run(model, x0, y0, eps, norm, steps, alpha, start, loss,
                                  early_stop, need_mask=r < runs - 1)
        passes += p
        if r == 0:
            x_adv[todo] = out
        else:  # a failed restart must not replace the first run's final iterate
            x_adv[todo[broken]] = out[broken]
        todo = todo[~broken]
    return x_adv, passes



@register_attack("pgd")
class PGD(Attack):
    spec = {"steps": (int, 10), "step_size": (float, None), "rel_step_size": (float, None),
            "random_start": (bool, True), "restarts": (int, 1), "loss": (str, "ce"),
            "early_stop": (bool, True)}

    def _validate(self):
        p = self.params
        if p["steps"] < 1 or p["restarts"] < 1:
            raise ConfigError(f"{self.name} steps and restarts must be >= 1, got {p['steps']} and {p['restarts']}")
        if p["step_size"] is not None and p["rel_step_size"] is not None:
            raise ConfigError(f"{self.name}: give step_size or rel_step_size, not both")
        check_positive(self.name, "step_size", p["step_size"])
        check_positive(self.name, "rel_step_size", p["rel_step_size"])
        check_choice(self.name, "loss", p["loss"], ("ce", "dlr"))

    def _perturb(self, model, x, y, eps, seed):
        p = self.params
        alpha = (p["step_size"] if p["step_size"] is not None else
                 p["rel_step_size"] * eps if p["rel_step_size"] is not None else 2.5 * eps / p["steps"])
        return _pgd(model, x, y, eps, self.threat_model, steps=p["steps"], alpha=alpha,
                    random_start=p["random_start"], restarts=p["restarts"], loss=p["loss"],
                    early_stop=p["early_stop"], seed=seed)


@register_attack("fgsm")
class FGSM(Attack):
    spec = {"loss": (str, "ce")}

    def _validate(self):
        check_choice(self.name, "loss", self.params["loss"], ("ce", "dlr"))

    def _perturb(self, model, x, y, eps, seed):
        return _pgd(model, x, y, eps, self.threat_model, steps=1, alpha=eps, random_start=False,
                    restarts=1, loss=self.params["loss"], early_stop=False, seed=seed)
