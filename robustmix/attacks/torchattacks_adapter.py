"""Adapter: any ``torchattacks.<Name>`` attack, run under the same guarantees as ours."""
from __future__ import annotations

import inspect

from ..errors import ConfigError
from .base import Attack, CountedModel, check_params, check_precision, flat_norm, on_clean_correct

# Need extra constructor objects (a loader, a list of attacks) we cannot supply.
_TA_EXCLUDED = {"MultiAttack", "LGV"}
# Minimise the L1 distance: judged by another norm they would only be weak attacks.
TA_L1_ONLY = {"EADL1"}
# Bounded torchattacks attacks that run under L1: none. APGD, APGDT, Square and AutoAttack assert
# Linf/L2, and FAB, documented for L1, fails in perturb (torchattacks 3.5.1: `res` is unset for L1);
# pyautoattack's FAB runs under L1 as autoattack version="custom", attacks=["fab"].
TA_L1_BOUNDED: set[str] = set()


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
        _check_threat_model(name, cls_name, "eps" in args, threat_model)
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
                check_params(name, {k: v}, {k: (float if isinstance(d, float) else type(d), d)})
        missing = [k for k, d in allowed.items() if d is inspect.Parameter.empty and k not in params]
        if missing:
            raise ConfigError(f"{name} needs argument(s) {', '.join(missing)}")
        self.name, self.threat_model, self.params = name, threat_model, dict(params)
        self.precision = check_precision(precision)
        self.takes_eps = "eps" in args

    def _perturb(self, model, x, y, eps, seed):
        counted = CountedModel(model)
        kwargs = dict(self.params)
        if self.takes_eps:
            kwargs["eps"] = eps
        if "norm" in self._injected:
            kwargs["norm"] = self.threat_model
        if self._takes_seed:
            kwargs.setdefault("seed", seed)
        atk = self._cls(counted, **kwargs)
        atk.set_device(x.device)
        x_adv = on_clean_correct(model, x, y, lambda xs, ys: atk(xs, ys))
        if not self.takes_eps:
            too_far = flat_norm(x_adv - x, self.threat_model) > eps
            x_adv[too_far] = x[too_far]
        return x_adv, counted.n


def _check_threat_model(name: str, cls_name: str, bounded: bool, threat_model: str) -> None:
    """Under L1 a bounded torchattacks attack must bound the L1 norm itself; an L1-only one runs only there."""
    if cls_name in TA_L1_ONLY and threat_model != "L1":
        raise ConfigError(f"{name} minimises the L1 distance; run it under [threat.L1] "
                          f"(threat_models = [\"L1\"]), not {threat_model}")
    if threat_model == "L1" and bounded and cls_name not in TA_L1_BOUNDED:
        raise ConfigError(f"{name} bounds Linf or L2 perturbations, not L1; under L1 use pgd, fgsm, autoattack or "
                          f"square, or an unbounded one such as torchattacks.EADL1")
