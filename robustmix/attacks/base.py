"""What every attack shares: the Attack base class, its result, and the checks around a run.

Every attack is built by :func:`make_attack` and run as
``attack.run(model, x, y, eps, seed) -> AttackResult``; :func:`sweep` runs one
attack over an eps grid, nested by default.

Guarantees of ``run`` (shared by all attacks):

* the model is in eval mode during the attack; every submodule's previous mode
  and every parameter's ``requires_grad`` flag are restored afterwards (the
  flags are switched off so that no weight gradients are ever computed);
* the caller's global torch RNG state is unchanged (pyautoattack and torchattacks
  reseed it, so each run is wrapped in ``torch.random.fork_rng``);
* same seed -> bit-identical results;
* ``x_adv`` lies in [0, 1] and within ``eps`` of ``x`` in the threat model's norm.

Precision: an attack built with ``precision="bf16"`` runs the model's forward
passes *inside the search* under bf16 autocast (cheaper steps on tensor-core
GPUs), but every verdict -- the clean pass, the final scoring of ``x_adv`` --
is made by the model in full precision. So bf16 can only change which
adversarial examples are found, never what counts as robust, and a bf16 sweep
is comparable example by example with an fp32 one.

``passes`` counts model evaluations per example spent by the attack (a gradient
step counts once; the final scoring pass is not counted). For our own PGD/FGSM it
is exact bookkeeping; for library attacks it is counted by wrapping the model.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from numbers import Integral, Real

import torch
from torch import Tensor, nn

from ..config import check_seed
from ..eps import check_eps
from ..errors import ConfigError, DataError
from .l1 import l1_norm, project_l1

# Numeric precision of the model's forward passes during the search (see the module docstring).
PRECISIONS = ("fp32", "bf16")


@dataclass
class AttackResult:
    x_adv: Tensor    # (N,C,H,W) in [0,1], within eps of x
    correct: Tensor  # bool (N,): model(x_adv).argmax == y
    margin: Tensor   # float (N,): logit[y] - max_{j != y} logit[j] at x_adv
    passes: int      # example forward(+backward) passes spent: sum of batch sizes over steps
    seconds: float = 0.0  # wall time spent at this eps (nested sweeps: on the still-robust examples)
    # Minimum-norm attacks (attacks/minnorm.py): float64 (N,) norm of the closest adversarial found,
    # inf where none was found, 0 where x is misclassified; None for fixed-eps attacks.
    radius: Tensor | None = None


# --- shared helpers -----------------------------------------------------------

def check_eps_value(eps, threat_model: str) -> float:
    if isinstance(eps, bool) or not isinstance(eps, (Real, Tensor)) or (
            isinstance(eps, Tensor) and eps.numel() != 1):
        raise ConfigError(f"eps must be a number, got {eps!r}; give e.g. 8/255")
    return check_eps(float(eps), threat_model)


def check_seed_value(seed) -> None:
    # The rule of every command (config.check_seed); NumPy/torch integers count as integers.
    check_seed(int(seed) if isinstance(seed, Integral) and not isinstance(seed, bool) else seed)


def check_inputs(x: Tensor, y: Tensor) -> None:
    if x.dim() != 4 or y.shape != (x.shape[0],):
        raise DataError(f"attacks need x (N,C,H,W) and y (N,), got {tuple(x.shape)} and {tuple(y.shape)}")
    if x.numel() and (float(x.min()) < 0 or float(x.max()) > 1):
        raise DataError("attack inputs must be in [0, 1]; move normalisation inside the model")


def flat_norm(d: Tensor, norm: str) -> Tensor:
    d = d.flatten(1)
    if norm == "L1":  # summed in float64: 784 float32 terms would round by more than l1.py's margin
        return d.double().abs().sum(1)
    return d.abs().amax(1) if norm == "Linf" else d.norm(p=2, dim=1)


def project(x_adv: Tensor, x: Tensor, eps: float, norm: str) -> Tensor:
    """Project into the eps-ball and [0,1]; rows already inside are left bit-identical."""
    delta = x_adv - x
    if norm == "L1":
        proj = project_l1(x_adv, x, eps)
    elif norm == "Linf":
        proj = x + delta.clamp(-eps, eps)
    else:
        n = flat_norm(delta, "L2").view(-1, *[1] * (x.dim() - 1))
        proj = x + delta * torch.clamp(eps / (n + 1e-12), max=1.0)
    proj = proj.clamp(0, 1)
    # L1: the exact distance (float64 differences), so "inside" means inside, not inside up to rounding.
    dist = l1_norm(x_adv, x) if norm == "L1" else flat_norm(delta, norm)
    bad = (dist > eps) | (x_adv < 0).flatten(1).any(1) | (x_adv > 1).flatten(1).any(1)
    return torch.where(bad.view(-1, *[1] * (x.dim() - 1)), proj, x_adv)


@torch.no_grad()
def score(model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    logits = model(x)
    z_y = logits.gather(1, y[:, None]).squeeze(1)
    others = logits.scatter(1, y[:, None], float("-inf"))
    return logits.argmax(1) == y, (z_y - others.amax(1)).float()


@contextmanager
def attack_mode(model: nn.Module):
    """Eval mode and frozen parameters for the attack, restored per module/parameter afterwards."""
    modes = [(m, m.training) for m in model.modules()]
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for m, mode in modes:
            m.training = mode
        for p, flag in flags:
            p.requires_grad_(flag)


@contextmanager
def isolated_rng(device: torch.device, seed: int):
    # pyautoattack reseeds the *current* CUDA device, torchattacks draws on the tensors' device.
    devices = sorted({device.index if device.index is not None else torch.cuda.current_device(),
                      torch.cuda.current_device()}) if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.default_generator.manual_seed(seed)
        for d in devices:
            with torch.cuda.device(d):
                torch.cuda.manual_seed(seed)
        yield


class _Autocast(nn.Module):
    """The model under bf16 autocast, returning fp32 logits so losses and gradients stay fp32."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        with torch.autocast(device_type=x.device.type, dtype=torch.bfloat16):
            return self.model(x).float()


def check_precision(precision) -> str:
    if precision not in PRECISIONS:
        raise ConfigError(f"precision: unknown value {precision!r}; choose one of: {', '.join(PRECISIONS)}")
    return precision


class CountedModel(nn.Module):
    """Counts example-forwards of library attacks."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.n = 0

    def forward(self, x):
        self.n += x.shape[0]
        return self.model(x)


def on_clean_correct(model, x, y, fn) -> Tensor:
    """Run ``fn(x_sub, y_sub)`` on the clean-correct examples only; the rest keep x."""
    ok, _ = score(model, x, y)
    x_adv = x.clone()
    idx = ok.nonzero().squeeze(1)
    if idx.numel():
        x_adv[idx] = fn(x[idx], y[idx]).detach().to(x.dtype)
    return x_adv


def _is_type(value, want) -> bool:
    if want is bool:  # bool is an int subclass: keep 1/True and 2.5/int apart
        return isinstance(value, bool)
    if want is int:
        return isinstance(value, Integral) and not isinstance(value, bool)
    if want is float:
        return isinstance(value, Real) and not isinstance(value, bool)
    return isinstance(value, want)


def check_params(name: str, params: dict, spec: dict) -> dict:
    if not isinstance(params, dict):
        raise ConfigError(f"{name} params must be a mapping, got {type(params).__name__}")
    out = {}
    for key, value in params.items():
        if key not in spec:
            raise ConfigError(f"unknown {name} argument {key!r}; valid: {', '.join(sorted(spec)) or '(none)'}")
        want, default = spec[key]
        # An explicit None means "the default" where the default is None.
        ok = (value is None and default is None) or _is_type(value, want)
        if not ok:
            raise ConfigError(f"{name} argument {key!r} must be {want.__name__}, got {value!r}")
        out[key] = value
    return {**{k: v[1] for k, v in spec.items()}, **out}


def check_choice(name: str, key: str, value, choices) -> None:
    if value not in choices:
        raise ConfigError(f"{name} argument {key!r}={value!r} is not one of: {', '.join(map(str, choices))}")


def check_positive(name: str, key: str, value, allow_none=True) -> None:
    if value is None and allow_none:
        return
    if value is None or not value > 0 or not math.isfinite(value):
        raise ConfigError(f"{name} argument {key!r} must be a positive number, got {value!r}")



# --- attacks ------------------------------------------------------------------

class Attack:
    """Base: validation, eval mode, RNG isolation, projection and scoring around ``_perturb``."""

    spec: dict = {}

    def __init__(self, name: str, params: dict, threat_model: str, precision: str = "fp32"):
        self.name, self.threat_model = name, threat_model
        self.precision = check_precision(precision)
        self.params = check_params(name, params, self.spec)
        self._validate()

    def _validate(self) -> None:
        pass

    def __repr__(self) -> str:
        shown = {k: v for k, v in self.params.items() if not isinstance(v, nn.Module)}
        return f"{type(self).__name__}({self.name!r}, {shown}, {self.threat_model!r}, {self.precision!r})"

    def run(self, model: nn.Module, x: Tensor, y: Tensor, eps: float, seed: int) -> AttackResult:
        eps = check_eps_value(eps, self.threat_model)
        check_seed_value(seed)
        check_inputs(x, y)
        x, y = x.detach(), y.detach().long()
        with attack_mode(model), isolated_rng(x.device, int(seed)):
            if eps == 0 or x.shape[0] == 0:
                x_adv, passes = x.clone(), 0
            else:
                # .eval(): the wrapper's own flag is what library attacks look at.
                searcher = _Autocast(model).eval() if self.precision == "bf16" else model
                x_adv, passes = self._perturb(searcher, x, y, eps, int(seed))
                x_adv = project(x_adv.detach(), x, eps, self.threat_model)
            correct, margin = score(model, x_adv, y)
        return AttackResult(x_adv, correct, margin, int(passes))

    def _perturb(self, model, x, y, eps, seed) -> tuple[Tensor, int]:
        raise NotImplementedError

    @contextmanager
    def across_eps(self):
        """Scope of one nested sweep (one model, one set of examples, ascending eps): an attack
        may keep work that provably does not depend on eps for the next eps."""
        yield

