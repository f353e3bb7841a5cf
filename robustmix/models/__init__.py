"""Model zoo: architectures register themselves on import."""
from . import convmixer, resnet  # noqa: F401  (registration side effect is the point)
from .layers import ChannelMix, Normalize, SeparableModel, SpatialMix, count_params
from .registry import create_model, list_models, model_entrypoint, register_model

__all__ = ["ChannelMix", "Normalize", "SeparableModel", "SpatialMix", "count_params",
           "create_model", "list_models", "model_entrypoint", "register_model"]
