"""robustmix: robustness curves for separable-convolution models.

data -> zoo (registry of variants) -> train -> checkpoint store -> attack
sweep -> tidy results -> report / leaderboard.

From Python: ``robustmix.evaluate(model, data, eps=..., attacks=...)``,
``robustmix.report(evaluation, out=...)``, ``robustmix.verify(results)``
(robustmix/api.py). Every name below is imported on first use, so
``import robustmix`` costs no torch import.
"""
import importlib
import sys
import types

from .version import __version__

_LAZY = {
    "count_params": "robustmix.models", "create_model": "robustmix.models", "list_models": "robustmix.models",
    "register_model": "robustmix.models",
    "apply_variant": "robustmix.variants", "audit_frozen": "robustmix.variants", "build_variant": "robustmix.variants",
    "list_variants": "robustmix.variants",
    "Evaluation": "robustmix.api", "evaluate": "robustmix.api", "report": "robustmix.api", "verify": "robustmix.api",
}
# API functions named like modules of this package (evaluate.py, report.py).
_SHADOWED = ("evaluate", "report")

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module 'robustmix' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


class _Package(types.ModuleType):
    """The package, whose ``evaluate`` and ``report`` attributes stay the API functions.

    Importing a submodule binds it as an attribute of its package; for
    ``robustmix.evaluate`` and ``robustmix.report`` that would replace the
    function with the module. The modules stay in ``sys.modules``, which is
    where ``from robustmix.evaluate import run_eval`` finds them.
    """

    def __setattr__(self, name, value):
        if name in _SHADOWED and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
