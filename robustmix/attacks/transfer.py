"""Transfer attack: adversarial examples crafted on a source model, scored on the target."""
from __future__ import annotations

from torch import nn

from ..errors import ConfigError
from .base import Attack, on_clean_correct
from .registry import make_attack, register_attack


@register_attack("transfer")
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

        return on_clean_correct(model, x, y, craft), passes
