"""The whole registry x every variant: shapes, gradients, frozen/trainable sets, named parts."""
from __future__ import annotations

import re

import pytest
import torch

import robustmix
from robustmix.errors import ConfigError
from robustmix.models import ChannelMix, Normalize, SeparableModel, SpatialMix
from robustmix.recipe import OptimSection, Recipe
from robustmix.train import make_optimizer

MODELS = robustmix.list_models()
VARIANTS = robustmix.list_variants()
# Which mixing layer type each variant freezes (None: nothing frozen).
FROZEN_KIND = {"full": None, "space": ChannelMix, "chans": SpatialMix, "smooth": SpatialMix,
               "shared": SpatialMix, "correlated": SpatialMix, "delta": SpatialMix,
               "box": SpatialMix, "gaussian": SpatialMix}
pytestmark = pytest.mark.usefixtures("single_thread")

TINY = {"convmixer_16_2_ks3_p4", "sepresnet_tiny", "convmixer_32_4_ks5_p2", "convmixer_64_4_ks5_p2"}


def test_variant_table_is_complete():
    assert set(VARIANTS) == set(FROZEN_KIND), "a new variant needs an entry in FROZEN_KIND"
    assert {"convmixer_16_2_ks3_p4", "sepresnet_tiny", "convmixer_256_8_ks5_p2"} <= set(MODELS)


def input_size(name: str) -> int:
    """32x32 for small models; for the big ones the smallest input the patch size allows
    (at least 8 so every ResNet stage keeps a spatial extent)."""
    if name in TINY:
        return 32
    m = re.search(r"_p(\d+)$", name)
    return max(int(m.group(1)), 4) if m else 8


def expected_frozen(model, variant) -> set[str]:
    kind = FROZEN_KIND[variant]
    if kind is None:
        return set()
    return {f"{mod_name}.{p_name}" for mod_name, mod in model.named_modules() if isinstance(mod, kind)
            for p_name, _ in mod.named_parameters(recurse=False)}


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("name", MODELS)
def test_registry_x_variants(name, variant):
    torch.manual_seed(0)
    model = robustmix.build_variant(name, variant, num_classes=3, in_chans=2)
    size = input_size(name)
    x = torch.rand(2, 2, size, size)

    # Same named parts on every model.
    assert isinstance(model, SeparableModel)
    assert isinstance(model.normalize, Normalize) and model.normalize.mean.shape == (1, 2, 1, 1)
    assert isinstance(model.stem, torch.nn.Module) and isinstance(model.head, torch.nn.Module)
    assert isinstance(model.blocks, torch.nn.Sequential) and len(model.blocks) > 0
    spatial, channel = model.spatial_filters(), model.channel_filters()
    assert spatial and all(isinstance(m, SpatialMix) and m.groups == m.in_channels for _, m in spatial)
    assert channel and all(isinstance(m, ChannelMix) and m.kernel_size == (1, 1) for _, m in channel)
    assert model.model_name == name and model.variant == variant

    # Trainable / frozen sets exactly as the variant says.
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == expected_frozen(model, variant)
    if variant != "full":
        assert frozen, f"{variant} froze nothing"
    total, trainable = robustmix.count_params(model)
    assert total - trainable == sum(p.numel() for n, p in model.named_parameters() if n in frozen)

    # Forward / backward.
    model.train()
    feats = model.forward_features(x)
    assert feats.dim() == 4 and feats.shape[0] == 2
    out = model.forward_head(feats)
    assert out.shape == (2, 3)
    assert torch.isfinite(out).all()
    torch.nn.functional.cross_entropy(out, torch.tensor([0, 2])).backward()
    for n, p in model.named_parameters():
        if n in frozen:
            assert p.grad is None, f"frozen {n} got a gradient"
        else:
            assert p.grad is not None and torch.isfinite(p.grad).all(), f"bad gradient for {n}"

    # Frozen tensors never move under AdamW with weight decay; trainable ones do.
    recipe = Recipe(name="t", optimizer=OptimSection(lr=1e-2, weight_decay=0.5))
    opt = make_optimizer(recipe, model)
    in_opt = {id(p) for g in opt.param_groups for p in g["params"]}
    params = dict(model.named_parameters())
    assert not any(id(params[n]) in in_opt for n in frozen)
    assert all(id(p) in in_opt for n, p in params.items() if n not in frozen)
    before = {n: p.detach().clone() for n, p in params.items()}
    for _ in range(2):
        opt.step()
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), torch.tensor([0, 2])).backward()
    for n, p in params.items():
        if n in frozen:
            assert torch.equal(p, before[n]), f"frozen {n} moved"
    assert any(not torch.equal(p, before[n]) for n, p in params.items() if n not in frozen)

    model.eval()
    with torch.no_grad():
        assert torch.isfinite(model(x)).all()


@pytest.mark.parametrize("name", ["convmixer_16_2_ks3_p4", "sepresnet_tiny"])
def test_forward_is_head_of_features_and_normalize_inside(name):
    model = robustmix.create_model(name, num_classes=4, in_chans=1, mean=[0.2], std=[0.4]).eval()
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(model(x), model.forward_head(model.forward_features(x)))
        assert torch.allclose(model.normalize(x), (x - 0.2) / 0.4)
    assert model.model_args["num_classes"] == 4 and model.model_args["mean"] == [0.2]


def test_unknown_model_and_bad_args_are_config_errors():
    with pytest.raises(ConfigError, match="unknown model 'convmixer_nope'"):
        robustmix.create_model("convmixer_nope")
    with pytest.raises(ConfigError, match="dimm"):
        robustmix.create_model("convmixer_16_2_ks3_p4", dimm=3)
    with pytest.raises(ConfigError, match="activation"):
        robustmix.create_model("convmixer_16_2_ks3_p4", activation="tanhh")


def test_create_model_drops_none_kwargs():
    model = robustmix.create_model("convmixer_16_2_ks3_p4", num_classes=None, in_chans=None,
                                   mean=None, std=None, kernel_size=None, dim=None)
    ref = robustmix.create_model("convmixer_16_2_ks3_p4")
    assert model.model_args == ref.model_args
    assert model.model_args["kernel_size"] == 3 and model.model_args["dim"] == 16
    assert model.head[-1].out_features == 10 and model.stem[0].in_channels == 3
    override = robustmix.create_model("convmixer_16_2_ks3_p4", num_classes=7, kernel_size=5)
    assert override.head[-1].out_features == 7 and override.spatial_filters()[0][1].kernel_size == (5, 5)


def test_register_twice_raises():
    def convmixer_16_2_ks3_p4(**kwargs):  # same name as a registered entrypoint
        raise AssertionError("never called")

    before = robustmix.list_models()
    with pytest.raises(ValueError, match="already registered"):
        robustmix.register_model(convmixer_16_2_ks3_p4)
    assert robustmix.list_models() == before
    # The original entrypoint is still the one used.
    assert robustmix.create_model("convmixer_16_2_ks3_p4").model_args["dim"] == 16


def test_list_models_pattern():
    assert robustmix.list_models("sepresnet*") == sorted(n for n in MODELS if n.startswith("sepresnet"))
    assert robustmix.list_models("nothing-matches*") == []


def test_create_model_builds_the_architecture_only():
    # Variants are variants.build_variant's business: the registry knows nothing of them.
    model = robustmix.create_model("convmixer_16_2_ks3_p4")
    assert all(p.requires_grad for p in model.parameters())
    assert not hasattr(model, "variant")
    with pytest.raises(TypeError):
        robustmix.create_model("convmixer_16_2_ks3_p4", "chans")
