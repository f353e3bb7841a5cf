"""robustmix: robustness curves for separable-convolution models.

data -> zoo (registry of variants) -> train -> checkpoint store -> attack
sweep -> tidy results -> report / leaderboard.
"""
from .models import count_params, create_model, list_models, register_model
from .variants import apply_variant, audit_frozen, build_variant, list_variants
from .version import __version__

__all__ = ["apply_variant", "audit_frozen", "build_variant", "count_params", "create_model", "list_models",
           "list_variants", "register_model", "__version__"]
