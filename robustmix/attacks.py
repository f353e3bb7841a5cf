"""Attack engine: FGSM, PGD, AutoAttack, Square, transfer and any torchattacks attack.

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

import hashlib
import inspect
import logging
import math
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from numbers import Integral, Real

import torch
import torch.nn.functional as F
from pyautoattack import AutoAttack as _AA
from pyautoattack.square import SquareAttack
from torch import Tensor, nn

from robustmix.config import check_seed
from robustmix.eps import check_eps
from robustmix.errors import ConfigError, DataError
from robustmix.schema import THREAT_MODELS

__all__ = ["AttackResult", "Attack", "list_attacks", "make_attack", "sweep", "check_precision", "ATTACK_NAMES",
           "PRECISIONS"]

ATTACK_NAMES = ("fgsm", "pgd", "autoattack", "square", "transfer", "torchattacks.<Name>")
_AA_ATTACKS = ("apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t")
_AA_VERSIONS = ("standard", "plus", "rand", "custom")
# Need extra constructor objects (a loader, a list of attacks) we cannot supply.
_TA_EXCLUDED = {"MultiAttack", "LGV"}
# Numeric precision of the model's forward passes during the search (see the module docstring).
PRECISIONS = ("fp32", "bf16")


@dataclass
class AttackResult:
    x_adv: Tensor    # (N,C,H,W) in [0,1], within eps of x
    correct: Tensor  # bool (N,): model(x_adv).argmax == y
    margin: Tensor   # float (N,): logit[y] - max_{j != y} logit[j] at x_adv
    passes: int      # example forward(+backward) passes spent: sum of batch sizes over steps
    seconds: float = 0.0  # wall time spent at this eps (nested sweeps: on the still-robust examples)


# --- shared helpers -----------------------------------------------------------

def _check_eps(eps, threat_model: str) -> float:
    if isinstance(eps, bool) or not isinstance(eps, (Real, Tensor)) or (
            isinstance(eps, Tensor) and eps.numel() != 1):
        raise ConfigError(f"eps must be a number, got {eps!r}; give e.g. 8/255")
    return check_eps(float(eps), threat_model)


def _check_seed(seed) -> None:
    # The rule of every command (config.check_seed); NumPy/torch integers count as integers.
    check_seed(int(seed) if isinstance(seed, Integral) and not isinstance(seed, bool) else seed)


def _check_inputs(x: Tensor, y: Tensor) -> None:
    if x.dim() != 4 or y.shape != (x.shape[0],):
        raise DataError(f"attacks need x (N,C,H,W) and y (N,), got {tuple(x.shape)} and {tuple(y.shape)}")
    if x.numel() and (float(x.min()) < 0 or float(x.max()) > 1):
        raise DataError("attack inputs must be in [0, 1]; move normalisation inside the model")


def _flat_norm(d: Tensor, norm: str) -> Tensor:
    d = d.flatten(1)
    return d.abs().amax(1) if norm == "Linf" else d.norm(p=2, dim=1)


def _project(x_adv: Tensor, x: Tensor, eps: float, norm: str) -> Tensor:
    """Project into the eps-ball and [0,1]; rows already inside are left bit-identical."""
    delta = x_adv - x
    if norm == "Linf":
        proj = x + delta.clamp(-eps, eps)
    else:
        n = _flat_norm(delta, "L2").view(-1, *[1] * (x.dim() - 1))
        proj = x + delta * torch.clamp(eps / (n + 1e-12), max=1.0)
    proj = proj.clamp(0, 1)
    bad = (_flat_norm(delta, norm) > eps) | (x_adv < 0).flatten(1).any(1) | (x_adv > 1).flatten(1).any(1)
    return torch.where(bad.view(-1, *[1] * (x.dim() - 1)), proj, x_adv)


@torch.no_grad()
def _evaluate(model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    logits = model(x)
    z_y = logits.gather(1, y[:, None]).squeeze(1)
    others = logits.scatter(1, y[:, None], float("-inf"))
    return logits.argmax(1) == y, (z_y - others.amax(1)).float()


@contextmanager
def _attack_mode(model: nn.Module):
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
def _isolated_rng(device: torch.device, seed: int):
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


class _Counted(nn.Module):
    """Counts example-forwards of library attacks."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.n = 0

    def forward(self, x):
        self.n += x.shape[0]
        return self.model(x)


def _on_clean_correct(model, x, y, fn) -> Tensor:
    """Run ``fn(x_sub, y_sub)`` on the clean-correct examples only; the rest keep x."""
    ok, _ = _evaluate(model, x, y)
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


def _check_params(name: str, params: dict, spec: dict) -> dict:
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


def _choice(name: str, key: str, value, choices) -> None:
    if value not in choices:
        raise ConfigError(f"{name} argument {key!r}={value!r} is not one of: {', '.join(map(str, choices))}")


def _positive(name: str, key: str, value, allow_none=True) -> None:
    if value is None and allow_none:
        return
    if value is None or not value > 0 or not math.isfinite(value):
        raise ConfigError(f"{name} argument {key!r} must be a positive number, got {value!r}")


# --- PGD ----------------------------------------------------------------------

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


# --- attacks ------------------------------------------------------------------

class Attack:
    """Base: validation, eval mode, RNG isolation, projection and scoring around ``_perturb``."""

    spec: dict = {}

    def __init__(self, name: str, params: dict, threat_model: str, precision: str = "fp32"):
        self.name, self.threat_model = name, threat_model
        self.precision = check_precision(precision)
        self.params = _check_params(name, params, self.spec)
        self._validate()

    def _validate(self) -> None:
        pass

    def __repr__(self) -> str:
        shown = {k: v for k, v in self.params.items() if not isinstance(v, nn.Module)}
        return f"{type(self).__name__}({self.name!r}, {shown}, {self.threat_model!r}, {self.precision!r})"

    def run(self, model: nn.Module, x: Tensor, y: Tensor, eps: float, seed: int) -> AttackResult:
        eps = _check_eps(eps, self.threat_model)
        _check_seed(seed)
        _check_inputs(x, y)
        x, y = x.detach(), y.detach().long()
        with _attack_mode(model), _isolated_rng(x.device, int(seed)):
            if eps == 0 or x.shape[0] == 0:
                x_adv, passes = x.clone(), 0
            else:
                # .eval(): the wrapper's own flag is what library attacks look at.
                searcher = _Autocast(model).eval() if self.precision == "bf16" else model
                x_adv, passes = self._perturb(searcher, x, y, eps, int(seed))
                x_adv = _project(x_adv.detach(), x, eps, self.threat_model)
            correct, margin = _evaluate(model, x_adv, y)
        return AttackResult(x_adv, correct, margin, int(passes))

    def _perturb(self, model, x, y, eps, seed) -> tuple[Tensor, int]:
        raise NotImplementedError

    @contextmanager
    def across_eps(self):
        """Scope of one nested sweep (one model, one set of examples, ascending eps): an attack
        may keep work that provably does not depend on eps for the next eps."""
        yield


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
        _positive(self.name, "step_size", p["step_size"])
        _positive(self.name, "rel_step_size", p["rel_step_size"])
        _choice(self.name, "loss", p["loss"], ("ce", "dlr"))

    def _perturb(self, model, x, y, eps, seed):
        p = self.params
        alpha = (p["step_size"] if p["step_size"] is not None else
                 p["rel_step_size"] * eps if p["rel_step_size"] is not None else 2.5 * eps / p["steps"])
        return _pgd(model, x, y, eps, self.threat_model, steps=p["steps"], alpha=alpha,
                    random_start=p["random_start"], restarts=p["restarts"], loss=p["loss"],
                    early_stop=p["early_stop"], seed=seed)


class FGSM(Attack):
    spec = {"loss": (str, "ce")}

    def _validate(self):
        _choice(self.name, "loss", self.params["loss"], ("ce", "dlr"))

    def _perturb(self, model, x, y, eps, seed):
        return _pgd(model, x, y, eps, self.threat_model, steps=1, alpha=eps, random_start=False,
                    restarts=1, loss=self.params["loss"], early_stop=False, seed=seed)


class _FabSearchMemo:
    """Memo of FAB's search from the clean point, shared by the eps of one nested sweep.

    FAB is a minimum-norm attack: its first run per target (no random start; the only
    run of FAB-T in standard AutoAttack) is a deterministic function of the clean image,
    its label and the target class, and never reads eps -- eps only decides afterwards
    whether the point found is close enough. An example still robust at eps_i reaches
    FAB again at eps_{i+1}, where the same search would be repeated from scratch; here its
    result is looked up instead, per example. Runs with a random start (restarts 2..n of
    'plus') depend on eps and are never memoised. Keys are the row's bytes plus label and
    target. The search treats each example on its own, so a looked-up row is the row
    pyautoattack's own call returns for that example, up to the last-bit rounding that a
    batched kernel can give one example with other batch-mates (pyautoattack's batch_size
    has the same effect).
    """

    def __init__(self):
        self._rows: dict[bytes, Tensor | None] = {}  # None: the search found nothing (row = x)

    @staticmethod
    def _keys(x: Tensor, y: Tensor, target) -> list[bytes]:
        xs, ys = x.detach().float().cpu().contiguous(), y.detach().long().cpu()
        return [hashlib.blake2b(xs[i].numpy().tobytes() + f"|{int(ys[i])}|{target}".encode(),
                                digest_size=20).digest() for i in range(len(xs))]

    def wrap(self, fab) -> None:
        search = fab.attack_single_run

        def memo_search(x, y=None, use_rand_start=False, is_targeted=False):
            if use_rand_start or y is None:
                return search(x, y, use_rand_start, is_targeted)
            keys = self._keys(x, y, fab.target_class if is_targeted else "untargeted")
            miss = [i for i, k in enumerate(keys) if k not in self._rows]
            if miss:
                at = torch.tensor(miss, device=x.device)
                found = search(x[at], y[at], False, is_targeted)
                for j, i in enumerate(miss):
                    same = torch.equal(found[j], x[i].float())
                    self._rows[keys[i]] = None if same else found[j].detach().cpu()
            out = x.detach().float().clone()
            for i, k in enumerate(keys):
                if self._rows[k] is not None:
                    out[i] = self._rows[k].to(out.device)
            return out

        fab.attack_single_run = memo_search


class AutoAttack(Attack):
    spec = {"version": (str, "standard"), "attacks": (list, None), "batch_size": (int, 250),
            "n_target_classes": (int, None), "n_queries": (int, None), "verbose": (bool, False)}

    def _validate(self):
        p = self.params
        _choice(self.name, "version", p["version"], _AA_VERSIONS)
        if (p["version"] == "custom") != (p["attacks"] is not None):
            raise ConfigError("autoattack takes attacks=[...] exactly when version='custom'; "
                              f"choose from {', '.join(_AA_ATTACKS)}")
        for a in p["attacks"] or ():
            _choice(self.name, "attacks", a, _AA_ATTACKS)
        for key in ("batch_size", "n_target_classes", "n_queries"):
            _positive(self.name, key, p[key])
        self._fab_memo = None

    @contextmanager
    def across_eps(self):
        self._fab_memo = _FabSearchMemo()
        try:
            yield
        finally:
            self._fab_memo = None

    def _perturb(self, model, x, y, eps, seed):
        p, counted = self.params, _Counted(model)
        aa = _AA(counted, attacks=p["attacks"], device=x.device, eps=eps, norm=self.threat_model,
                 seed=seed, version=p["version"])
        aa.verbose = p["verbose"]
        if p["n_target_classes"] is not None:
            aa.apgd_targeted.n_target_classes = aa.fab.n_target_classes = p["n_target_classes"]
        if p["n_queries"] is not None:
            aa.square.n_queries = p["n_queries"]
        if self._fab_memo is not None:
            self._fab_memo.wrap(aa.fab)
        logger = logging.getLogger("auto-attack")
        was_disabled, tracer = logger.disabled, sys.gettrace()
        logger.disabled = not p["verbose"]
        try:
            x_adv = _on_clean_correct(model, x, y, lambda xs, ys: aa.run_standard_evaluation(
                xs, ys, batch_size=p["batch_size"])[0])
        finally:
            logger.disabled = was_disabled
            sys.settrace(tracer)  # pyautoattack's dynamic-defence check clears any tracer (coverage, debugger)
        return x_adv, counted.n


class Square(Attack):
    """pyautoattack's SquareAttack: the reference code that AutoAttack itself runs."""

    spec = {"n_queries": (int, 1000), "p_init": (float, 0.8), "n_restarts": (int, 1),
            "loss": (str, "margin"), "resc_schedule": (bool, True)}

    def _validate(self):
        p = self.params
        for key in ("n_queries", "p_init", "n_restarts"):
            _positive(self.name, key, p[key])
        _choice(self.name, "loss", p["loss"], ("margin", "ce"))

    def _perturb(self, model, x, y, eps, seed):
        p, counted = self.params, _Counted(model)
        # resc_schedule=True (pyautoattack's standalone default) rescales the p-schedule, tuned
        # for 10000 queries, to n_queries; AutoAttack switches it off at 5000 queries.
        sq = SquareAttack(counted, norm=self.threat_model, n_queries=p["n_queries"], eps=eps,
                          p_init=p["p_init"], n_restarts=p["n_restarts"], seed=seed, verbose=False,
                          loss=p["loss"], resc_schedule=p["resc_schedule"], device=x.device)
        with torch.no_grad():
            x_adv = _on_clean_correct(model, x, y, sq.perturb)
        return x_adv, counted.n


class Transfer(Attack):
    spec = {"source": (str, None), "source_model": (nn.Module, None), "source_attack": (str, "pgd"),
            "source_params": (dict, None)}

    def _validate(self):
        p = self.params
        if p["source_model"] is None:
            raise ConfigError("transfer needs a source model to craft its examples on: add source = \"MODEL\" "
                              "(one of the spec's models) to its [[attacks]] table (in Python: source_model=module)")
        if p["source_attack"] == "transfer":
            raise ConfigError("transfer source_attack cannot itself be 'transfer'; use e.g. 'pgd'")
        sp = p["source_params"]
        if sp is None:  # stopping once the source is fooled would make weaker transfer examples
            sp = {"early_stop": False} if p["source_attack"] == "pgd" else {}
        self._source = make_attack(p["source_attack"], sp, self.threat_model, self.precision)

    def _perturb(self, model, x, y, eps, seed):
        src, passes = self.params["source_model"], 0

        def craft(xs, ys):
            nonlocal passes
            r = self._source.run(src, xs, ys, eps, seed)
            passes = r.passes
            return r.x_adv

        return _on_clean_correct(model, x, y, craft), passes


class TorchAttack(Attack):
    """Any ``torchattacks.<Name>``.

    eps (and norm, seed) are injected where the class's ``__init__`` takes them, and its output
    is projected back into the eps-ball and [0,1]. Attacks without eps (CW, DeepFool, ...) are
    unbounded: an example counts as broken at eps only if its ||delta|| <= eps in the threat
    model's norm; otherwise it is counted robust and its x_adv is reset to x.
    """

    def __init__(self, name: str, params: dict, threat_model: str, precision: str = "fp32"):
        # Imported here, not at the top: torchattacks takes most of a second to import and only
        # its adapter attacks (torchattacks.<Name>) need it.
        import torchattacks

        cls_name = name.split(".", 1)[1]
        valid = sorted(n for n in getattr(torchattacks, "__all__", dir(torchattacks))
                       if isinstance(getattr(torchattacks, n, None), type)
                       and issubclass(getattr(torchattacks, n), torchattacks.attack.Attack)
                       and n not in _TA_EXCLUDED)
        if cls_name not in valid:
            raise ConfigError(f"unknown attack {name!r}; torchattacks attacks: {', '.join(valid)}")
        self._cls = getattr(torchattacks, cls_name)
        sig = inspect.signature(self._cls.__init__).parameters
        args = {k: v.default for k, v in sig.items() if k not in ("self", "model")
                and v.kind not in (v.VAR_POSITIONAL, v.VAR_KEYWORD)}
        self._injected = {"eps", "norm"} & set(args)
        self._takes_seed = "seed" in args
        if not isinstance(params, dict):
            raise ConfigError(f"{name} params must be a mapping, got {type(params).__name__}")
        allowed = {k: d for k, d in args.items() if k not in self._injected}
        for k, v in params.items():
            if k not in allowed:
                why = " (it is set from the run's eps / threat model)" if k in self._injected else ""
                raise ConfigError(f"unknown {name} argument {k!r}{why}; valid: {', '.join(allowed) or '(none)'}")
            d = allowed[k]
            if d is not None and d is not inspect.Parameter.empty:
                _check_params(name, {k: v}, {k: (float if isinstance(d, float) else type(d), d)})
        missing = [k for k, d in allowed.items() if d is inspect.Parameter.empty and k not in params]
        if missing:
            raise ConfigError(f"{name} needs argument(s) {', '.join(missing)}")
        self.name, self.threat_model, self.params = name, threat_model, dict(params)
        self.precision = check_precision(precision)
        self.takes_eps = "eps" in args

    def _perturb(self, model, x, y, eps, seed):
        counted = _Counted(model)
        kwargs = dict(self.params)
        if self.takes_eps:
            kwargs["eps"] = eps
        if "norm" in self._injected:
            kwargs["norm"] = self.threat_model
        if self._takes_seed:
            kwargs.setdefault("seed", seed)
        atk = self._cls(counted, **kwargs)
        atk.set_device(x.device)
        x_adv = _on_clean_correct(model, x, y, lambda xs, ys: atk(xs, ys))
        if not self.takes_eps:
            too_far = _flat_norm(x_adv - x, self.threat_model) > eps
            x_adv[too_far] = x[too_far]
        return x_adv, counted.n


_ATTACKS = {"fgsm": FGSM, "pgd": PGD, "autoattack": AutoAttack, "square": Square, "transfer": Transfer}


def list_attacks() -> list[str]:
    """The registered attacks by name (``torchattacks.<Name>`` adapters come on top of these)."""
    return list(_ATTACKS)


def make_attack(name: str, params: dict | None, threat_model: str, precision: str = "fp32") -> Attack:
    """Build an attack by name; unknown names, arguments, types, threat models or precisions raise
    ConfigError."""
    if threat_model not in THREAT_MODELS:
        raise ConfigError(f"unknown threat model {threat_model!r}; choose one of: {', '.join(THREAT_MODELS)}")
    params = {} if params is None else params
    if isinstance(name, str) and name.startswith("torchattacks."):
        return TorchAttack(name, params, threat_model, precision)
    if name not in _ATTACKS:
        raise ConfigError(f"unknown attack {name!r}; choose one of: {', '.join(ATTACK_NAMES)}")
    return _ATTACKS[name](name, params, threat_model, precision)


def sweep(attack: Attack, model: nn.Module, x: Tensor, y: Tensor, eps_grid: list[float], seed: int,
          nested: bool = True) -> dict[float, AttackResult]:
    """Run ``attack`` over ``eps_grid`` (ascending; eps=0 is clean accuracy).

    Nested: an example broken at eps_i keeps that adversarial example at every larger eps
    (the eps-balls are nested, so it stays valid) and only still-robust examples are attacked
    again; clean-misclassified examples are never attacked. Robust accuracy therefore never
    rises with eps. Work that provably does not depend on eps is kept from one eps to the
    next (``Attack.across_eps``: AutoAttack's FAB search). Unnested: independent
    ``attack.run`` per eps.
    """
    try:
        grid = list(eps_grid) if not isinstance(eps_grid, (str, bytes)) else []
    except TypeError:
        grid = []
    if not grid:
        raise ConfigError(f"eps_grid must be a non-empty list of numbers, got {eps_grid!r}")
    grid = sorted({_check_eps(e, attack.threat_model) for e in grid})
    _check_seed(seed)
    _check_inputs(x, y)
    if not nested:
        results = {}
        for e in grid:
            t0 = time.perf_counter()
            results[e] = attack.run(model, x, y, e, seed)
            results[e].seconds = time.perf_counter() - t0
        return results
    x, y = x.detach(), y.detach().long()
    # The clean pass too: a randomised model must not move the caller's RNG.
    with _attack_mode(model), _isolated_rng(x.device, seed):
        correct, margin = _evaluate(model, x, y)
    x_cur, results = x.clone(), {}
    with attack.across_eps():
        for e in grid:
            t0 = time.perf_counter()
            idx = correct.nonzero().squeeze(1)
            passes = 0
            if e > 0 and idx.numel():
                r = attack.run(model, x[idx], y[idx], e, seed)
                x_cur, correct, margin = x_cur.clone(), correct.clone(), margin.clone()
                x_cur[idx], correct[idx], margin[idx] = r.x_adv, r.correct, r.margin
                passes = r.passes
            results[e] = AttackResult(x_cur, correct, margin, passes, time.perf_counter() - t0)
    return results
