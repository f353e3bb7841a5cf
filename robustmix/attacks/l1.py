"""The L1 threat model's geometry: projection, sparse PGD step, random start, linear maximiser.

Plain tensor functions over a batch (N,C,H,W) in [0, 1]; PGD and FGSM (``gradient.py``)
dispatch here when the threat model is L1, and ``base.project`` uses :func:`project_l1`.

Why L1 needs its own steps: the L1 ball's vertices are single pixels, so a dense step
(sign of the whole gradient, as under Linf) spends the budget on every pixel at once and is
then mostly undone by the projection. The step here, as in SLIDE (Tramer & Boneh 2019) and
APGD-L1 (Croce & Hein 2021), moves only the top fraction of coordinates by |gradient|.
"""
from __future__ import annotations

import math

import torch
from pyautoattack.autopgd_base import L1_projection
from torch import Tensor

# At least this many coordinates per sparse step, so that on small inputs (where 1% is a
# pixel or two) a step still spreads over several pixels.
MIN_TOP_COORDS = 8
# The projection aims this far inside the ball, so that rounding x + delta to float32
# never leaves it (the float32 sum of |delta| is within ~1e-7 relative of the exact one).
_SHRINK = 1e-6


def l1_norm(x_adv: Tensor, x: Tensor) -> Tensor:
    """||x_adv - x||_1 per example, exact: float64 differences of the float32 inputs."""
    return (x_adv.double() - x.double()).flatten(1).abs().sum(1)


def _view(v: Tensor, like: Tensor) -> Tensor:
    return v.view(-1, *[1] * (like.dim() - 1))


def shrink_into_ball(x_adv: Tensor, x: Tensor, eps: float) -> Tensor:
    """Rows of ``x_adv`` whose exact L1 distance to ``x`` is above eps*(1 - 1e-7) are pulled
    towards ``x`` to eps*(1 - 1e-6); scaling towards x keeps them in the [0, 1] box."""
    x_adv = x_adv.clone()
    limit = eps * (1 - _SHRINK / 10)
    for _ in range(8):  # one pass almost always suffices; each one re-rounds to float32
        n = l1_norm(x_adv, x)
        over = n > limit
        if not bool(over.any()):
            return x_adv
        scale = _view((eps * (1 - _SHRINK) / n[over]).to(x.dtype), x[over])
        x_adv[over] = (x[over] + (x_adv[over] - x[over]) * scale).clamp(0, 1)
    still = l1_norm(x_adv, x) > eps  # unreachable in practice; the guarantee holds regardless
    x_adv[still] = x[still]
    return x_adv


def project_l1(x_adv: Tensor, x: Tensor, eps: float) -> Tensor:
    """Euclidean projection of ``x_adv`` onto {||x_adv - x||_1 <= eps} intersected with [0, 1].

    pyautoattack's ``L1_projection`` (APGD-L1's exact projection onto the ball-box
    intersection) computes in float32; the result is then checked in float64 and shrunk
    by at most a relative 1e-6, so it is always inside the ball.
    """
    delta = x_adv - x
    correction = L1_projection(x, delta, eps).to(x.dtype)
    return shrink_into_ball((x + delta + correction).clamp(0, 1), x, eps)


def top_count(n_coords: int, top_q: float) -> int:
    return min(n_coords, max(MIN_TOP_COORDS, math.ceil(top_q * n_coords)))


def _movable(xa: Tensor, g: Tensor) -> Tensor:
    """Coordinates that can still move in the gradient's sign direction inside [0, 1]."""
    return ((g > 0) & (xa < 1)) | ((g < 0) & (xa > 0))


def sparse_step(xa: Tensor, g: Tensor, x0: Tensor, eps: float, alpha: float, top_q: float) -> Tensor:
    """One PGD-L1 step: sign(g) on the top-q coordinates by |g| (of those that can move),
    scaled to L1 length ``alpha``, then projected onto the L1 ball and the box."""
    flat = g.flatten(1)
    k = top_count(flat.shape[1], top_q)
    score = torch.where(_movable(xa, g).flatten(1), flat.abs(), torch.zeros_like(flat))
    top = score.topk(k, dim=1).indices
    # Fewer than k movable coordinates with g != 0: the others among the top k take no step.
    signs = torch.where(score.gather(1, top) > 0, flat.gather(1, top).sign(), torch.zeros_like(flat[:, :k]))
    step = torch.zeros_like(flat).scatter_(1, top, signs)
    size = step.abs().sum(1, keepdim=True).clamp_min(1)
    step = (step * (alpha / size)).view_as(xa)
    return project_l1(xa + step, x0, eps)


def random_start_l1(x: Tensor, eps: float, gen: torch.Generator) -> Tensor:
    """A random point of the L1 ball around x (in the box): Gaussian noise projected onto it.

    As APGD-L1 starts; the projection keeps only the noise's largest coordinates. Even so
    the start holds the whole budget on random pixels, which sparse steps shed only a
    step's L1 length at a time: on a small MLP (eps 24, 20 steps) PGD-L1 from this start
    left 83% robust accuracy where the same attack from x left 9% (a start uniform in the
    ball, dense, left 77%). So PGD under L1 starts its first run at x and uses this start
    for its restarts.
    """
    noise = torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)
    return project_l1(x + noise, x, eps)


def linear_max_l1(x: Tensor, g: Tensor, eps: float) -> Tensor:
    """argmax of <g, delta> over ||delta||_1 <= eps and 0 <= x + delta <= 1 (FGSM under L1).

    A fractional knapsack: each coordinate's value per unit of L1 budget is |g_i|, its
    capacity how far it can move in sign(g_i) inside the box. Filling coordinates in
    order of |g_i| until eps is spent is exact (the linear programme's optimum).
    """
    flat_g = g.flatten(1).double()
    flat_x = x.flatten(1).double()
    cap = torch.where(flat_g > 0, 1 - flat_x, torch.where(flat_g < 0, flat_x, torch.zeros_like(flat_x)))
    order = flat_g.abs().argsort(dim=1, descending=True, stable=True)
    cap_sorted = cap.gather(1, order)
    before = cap_sorted.cumsum(1) - cap_sorted  # budget spent on better coordinates
    take = (eps - before).clamp(min=0).minimum(cap_sorted)
    amount = torch.zeros_like(cap).scatter_(1, order, take)
    delta = (amount * flat_g.sign()).to(x.dtype).view_as(x)
    return shrink_into_ball((x + delta).clamp(0, 1), x, eps)
