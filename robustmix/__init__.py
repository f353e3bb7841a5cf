"""robustmix: robustness curves for separable-convolution models.

data -> zoo (registry of variants) -> train -> checkpoint store -> attack
sweep -> tidy results -> report / leaderboard.
"""
from .models import count_params, create_model, list_models, register_model
from .variants import apply_variant, audit_frozen, list_variants

__version__ = "0.1.0"

__all__ = ["apply_variant", "audit_frozen", "count_params", "create_model", "list_models",
           "list_variants", "register_model", "__version__"]
