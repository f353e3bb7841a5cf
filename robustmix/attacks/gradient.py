"""Our own gradient attacks: PGD (Linf, L2, L1; restarts, CE or DLR loss, early stop) and FGSM.

The Linf and L2 steps are the same operations, in the same order, as torchattacks' PGD and
PGDL2, so with the same start the iterates match bit for bit. Under L1 the step is sparse
and FGSM is the exact linear maximiser over the ball and the box (see ``l1.py``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError
from .base import Attack, check_choice, check_positive
from .l1 import linear_max_l1, random_start_l1, sparse_step
from .registry import register_attack


# Fraction of coordinates a PGD-L1 step moves (SLIDE's 99th percentile of |gradient|).
L1_TOP_Q = 0.01


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


def _step(xa: Tensor, g: Tensor, x0: Tensor, eps: float, alpha: float, norm: str, top_q: float) -> Tensor:
    if norm == "L1":
        return sparse_step(xa, g, x0, eps, alpha, top_q)
    # Same operations, in the same order, as torchattacks.PGD / PGDL2, so results match bit for bit.
    if norm == "Linf":
        xa = xa + alpha * g.sign()
        return torch.clamp(x0 + torch.clamp(xa - x0, min=-eps, max=eps), min=0, max=1)
    shape = (-1, *[1] * (xa.dim() - 1))
    g = g / (g.flatten(1).norm(p=2, dim=1) + 1e-10).view(shape)
    delta = xa + alpha * g - x0
    factor = torch.clamp(eps / delta.flatten(1).norm(p=2, dim=1), max=1.0)
    return torch.clamp(x0 + delta * factor.view(shape), min=0, max=1)


def _input_grad(model, x: Tensor, y: Tensor, loss: str) -> Tensor:
    xa = x.detach().requires_grad_(True)
    with torch.enable_grad():
        return torch.autograd.grad(_loss(model(xa), y, loss), xa)[0]


def _random_start(x: Tensor, eps: float, norm: str, gen: torch.Generator) -> Tensor:
    if norm == "L1":
        return random_start_l1(x, eps, gen)
    if norm == "Linf":
        d = (2 * torch.rand(x.shape, generator=gen, device=x.device, dtype=x.dtype) - 1) * eps
    else:  # uniform in the L2 ball: Gaussian direction, radius eps * U^(1/dim)
        d = torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)
        u = torch.rand(x.shape[0], generator=gen, device=x.device, dtype=x.dtype)
        r = eps * u.pow(1.0 / x[0].numel()) / d.flatten(1).norm(p=2, dim=1)
        d = d * r.view(-1, *[1] * (x.dim() - 1))
    return torch.clamp(x + d, 0, 1)


def _pgd_run(model, x0, y0, eps, norm, steps, alpha, start, loss, early_stop, need_mask, top_q):
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
        xa = _step(xa, g, xs, eps, alpha, norm, top_q)
    out[pos] = xa
    if need_mask:  # restarts need to know who broke at the final iterate
        with torch.no_grad():
            broken[pos] |= model(xa).argmax(1) != ys
        passes += xa.shape[0]
    return out, broken, passes


def _pgd(model, x, y, eps, norm, *, steps, alpha, random_start, restarts, loss, early_stop, seed,
         top_q=None):
    gen = torch.Generator(device=x.device).manual_seed(seed)
    x_adv, todo, passes = x.clone(), torch.arange(x.shape[0], device=x.device), 0
    runs = restarts if random_start else 1  # deterministic restarts would only repeat themselves
    for r in range(runs):
        if todo.numel() == 0:
            break
        x0, y0 = x[todo], y[todo]
        # L1: the first run starts at x. A random start in the L1 ball holds budget on random pixels that
        # sparse steps shed only slowly (l1.random_start_l1); it serves the restarts, for diversity.
        randomised = random_start and not (norm == "L1" and r == 0)
        start = _random_start(x0, eps, norm, gen) if randomised else x0.clone()
        out, broken, p = _pgd_run(model, x0, y0, eps, norm, steps, alpha, start, loss,
                                  early_stop, need_mask=r < runs - 1, top_q=top_q)
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
            "early_stop": (bool, True), "l1_top_q": (float, None)}

    def _validate(self):
        p = self.params
        if p["steps"] < 1 or p["restarts"] < 1:
            raise ConfigError(f"{self.name} steps and restarts must be >= 1, got {p['steps']} and {p['restarts']}")
        if p["step_size"] is not None and p["rel_step_size"] is not None:
            raise ConfigError(f"{self.name}: give step_size or rel_step_size, not both")
        check_positive(self.name, "step_size", p["step_size"])
        check_positive(self.name, "rel_step_size", p["rel_step_size"])
        check_choice(self.name, "loss", p["loss"], ("ce", "dlr"))
        if p["l1_top_q"] is not None and (self.threat_model != "L1" or not 0 < p["l1_top_q"] <= 1):
            raise ConfigError(f"{self.name} argument 'l1_top_q' is the fraction (0, 1] of coordinates an L1 step "
                              f"moves: give it only to an attack run under L1 (threat_models = [\"L1\"]), got "
                              f"{p['l1_top_q']!r} under {self.threat_model}")

    def _perturb(self, model, x, y, eps, seed):
        p = self.params
        alpha = (p["step_size"] if p["step_size"] is not None else
                 p["rel_step_size"] * eps if p["rel_step_size"] is not None else 2.5 * eps / p["steps"])
        return _pgd(model, x, y, eps, self.threat_model, steps=p["steps"], alpha=alpha,
                    random_start=p["random_start"], restarts=p["restarts"], loss=p["loss"],
                    early_stop=p["early_stop"], seed=seed,
                    top_q=p["l1_top_q"] if p["l1_top_q"] is not None else L1_TOP_Q)


@register_attack("fgsm")
class FGSM(Attack):
    spec = {"loss": (str, "ce")}

    def _validate(self):
        check_choice(self.name, "loss", self.params["loss"], ("ce", "dlr"))

    def _perturb(self, model, x, y, eps, seed):
        if self.threat_model == "L1":  # one dense sign step would be projected away: take the exact maximiser
            return linear_max_l1(x, _input_grad(model, x, y, self.params["loss"]), eps), x.shape[0]
        return _pgd(model, x, y, eps, self.threat_model, steps=1, alpha=eps, random_start=False,
                    restarts=1, loss=self.params["loss"], early_stop=False, seed=seed)
