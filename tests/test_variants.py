"""Variants: seeded frozen banks, their audits, and the deterministic controls."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import robustmix
from robustmix.errors import ConfigError
from robustmix.spectrum import spectral_envelope
from robustmix.schema import MODEL_COLUMNS, SUMMARY_COLUMNS, VARIANT_PARAMS
from robustmix.variants import (VARIANTS, apply_variant, audit_frozen, frozen_state, parse_variant, resolve_variant,
                                smooth_filters, variant_tag)

pytestmark = pytest.mark.usefixtures("single_thread")

TINY = "convmixer_16_2_ks3_p4"
RANDOM_FROZEN = ["chans", "space", "smooth", "shared", "correlated"]


def spatial_weights(model) -> list[torch.Tensor]:
    return [m.weight.detach() for _, m in model.spatial_filters()]


@pytest.mark.parametrize("name", [TINY, "sepresnet_tiny"])
@pytest.mark.parametrize("variant", RANDOM_FROZEN + ["delta"])
def test_audit_after_training_and_on_tamper(name, variant):
    torch.manual_seed(123)
    model = robustmix.build_variant(name, variant, num_classes=3, in_chans=1, variant_seed=7)
    frozen_before = {k: v.clone() for k, v in frozen_state(model).items()}
    assert frozen_before
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.05, weight_decay=0.5)
    x, y = torch.rand(4, 1, 16, 16), torch.tensor([0, 1, 2, 0])
    for _ in range(3):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    assert audit_frozen(model) == []
    # Rebuilt from the seed under a different global RNG state: bit-identical banks.
    torch.manual_seed(999)
    again = robustmix.build_variant(name, variant, num_classes=3, in_chans=1, variant_seed=7)
    for k, v in frozen_state(again).items():
        assert torch.equal(v, frozen_before[k]), k

    target = sorted(frozen_state(model))[0]
    with torch.no_grad():
        dict(model.named_parameters())[target].view(-1)[0] += 1e-6
    assert audit_frozen(model) == [target]


@pytest.mark.parametrize("variant", RANDOM_FROZEN)
def test_different_seeds_give_different_banks(variant):
    a = frozen_state(robustmix.build_variant(TINY, variant, variant_seed=0))
    b = frozen_state(robustmix.build_variant(TINY, variant, variant_seed=1))
    assert a.keys() == b.keys()
    weights = [k for k in a if k.endswith("weight")]
    assert weights and all(not torch.equal(a[k], b[k]) for k in weights)
    # Layers of one model get different banks too.
    assert not torch.equal(a[weights[0]], a[weights[1]])


@pytest.mark.parametrize("variant", ["delta", "box", "gaussian"])
def test_deterministic_filters_ignore_the_seed(variant):
    a = frozen_state(robustmix.build_variant(TINY, variant, variant_seed=0))
    b = frozen_state(robustmix.build_variant(TINY, variant, variant_seed=5))
    assert all(torch.equal(a[k], b[k]) for k in a)


def _high_freq_fraction(bank: torch.Tensor, n: int = 32) -> np.ndarray:
    """Per-filter fraction of |DFT|^2 energy at radial frequency > 0.25 cycles/sample."""
    w = bank.detach().double().numpy().reshape(-1, *bank.shape[-2:])
    power = np.abs(np.fft.fft2(w, s=(n, n))) ** 2
    f = np.fft.fftfreq(n)
    radius = np.hypot(*np.meshgrid(f, f, indexing="ij"))
    return power[:, radius > 0.25].sum(1) / power.sum(axis=(1, 2))


def test_smoothing_lowers_high_frequencies_at_equal_norm():
    args = dict(dim=64, depth=2, kernel_size=7)
    raw = robustmix.build_variant("convmixer_256_8_ks5_p2", "chans", variant_seed=3, **args)
    for sigma in (1.0, 2.0):
        sm = robustmix.build_variant("convmixer_256_8_ks5_p2", "smooth", variant_seed=3,
                                     variant_params={"sigma": sigma}, **args)
        for w_raw, w_sm in zip(spatial_weights(raw), spatial_weights(sm)):
            # smooth = the same seeded random bank, smoothed and renormed.
            assert torch.allclose(w_sm, smooth_filters(w_raw, sigma))
            norms_raw, norms_sm = w_raw.flatten(1).norm(dim=1), w_sm.flatten(1).norm(dim=1)
            assert torch.allclose(norms_raw, norms_sm, rtol=1e-5)
            hf_raw, hf_sm = _high_freq_fraction(w_raw), _high_freq_fraction(w_sm)
            assert hf_sm.mean() < 0.5 * hf_raw.mean()
            assert (hf_sm < hf_raw).mean() > 0.9
            # The spectral envelope agrees: less gain at the highest frequency (the corner).
            env_raw, env_sm = spectral_envelope(w_raw), spectral_envelope(w_sm)
            assert env_sm[0, 0] < env_raw[0, 0]
    # sigma = 0 leaves the random bank unchanged.
    zero = robustmix.build_variant("convmixer_256_8_ks5_p2", "smooth", variant_seed=3,
                                   variant_params={"sigma": 0}, **args)
    assert all(torch.equal(a, b) for a, b in zip(spatial_weights(raw), spatial_weights(zero)))


def test_shared_all_filters_in_a_layer_equal():
    model = robustmix.build_variant(TINY, "shared", variant_seed=2)
    banks = spatial_weights(model)
    for w in banks:
        assert torch.equal(w, w[:1].expand_as(w))
        assert w.abs().sum() > 0
    assert not torch.equal(banks[0], banks[1])


@pytest.mark.parametrize("rho", [0.0, 0.3, 0.8, 1.0])
def test_correlated_pairwise_correlation_close_to_rho(rho):
    model = robustmix.build_variant("convmixer_256_8_ks5_p2", "correlated", kernel_size=7, depth=6,
                                    variant_params={"rho": rho}, variant_seed=1)
    ref = robustmix.build_variant("convmixer_256_8_ks5_p2", "chans", kernel_size=7, depth=6, variant_seed=1)
    corrs, ratios = [], []
    for w, w_ref in zip(spatial_weights(model), spatial_weights(ref)):
        flat = w.flatten(1).double()  # (256, 49)
        c = torch.corrcoef(flat)
        off = c[~torch.eye(len(c), dtype=torch.bool)]
        corrs.append(off.mean().item())
        ratios.append((flat.var() / w_ref.flatten(1).double().var()).item())
    assert abs(np.mean(corrs) - rho) < 0.05, corrs
    # Same per-element variance as the default init (for rho < 1; rho = 1 is one filter).
    if rho < 1:
        assert 0.8 < np.mean(ratios) < 1.2, ratios


def test_correlated_rho_zero_is_independent_of_shared_draw():
    a = robustmix.build_variant(TINY, "correlated", variant_params={"rho": 0.0}, variant_seed=4)
    b = robustmix.build_variant(TINY, "chans", variant_seed=4)
    assert all(torch.equal(x, y) for x, y in zip(spatial_weights(a), spatial_weights(b)))


def _gauss_np(k: int, sigma: float) -> np.ndarray:
    t = np.arange(k) - (k - 1) / 2
    g = np.exp(-0.5 * (t / sigma) ** 2)
    g2 = np.outer(g, g)
    return g2 / g2.sum()


@pytest.mark.parametrize("name", [TINY, "sepresnet_tiny"])
def test_delta_box_gaussian_are_exact(name):
    delta = robustmix.build_variant(name, "delta")
    box = robustmix.build_variant(name, "box")
    gauss = robustmix.build_variant(name, "gaussian", variant_params={"sigma": 0.7})
    for model, make in ((delta, None), (box, None), (gauss, None)):
        for _, layer in model.spatial_filters():
            k = layer.kernel_size[0]
            if model is delta:
                expected = np.zeros((k, k)); expected[k // 2, k // 2] = 1.0
            elif model is box:
                expected = np.full((k, k), 1.0 / (k * k))
            else:
                expected = _gauss_np(k, 0.7)
            exp_t = torch.tensor(expected, dtype=torch.float32).expand_as(layer.weight[:, 0])
            assert torch.allclose(layer.weight[:, 0], exp_t, rtol=0, atol=1e-7)
            if layer.bias is not None:
                assert torch.equal(layer.bias, torch.zeros_like(layer.bias))
    # The delta filter is exactly representable: bit-exact, and the layer is an identity.
    x = torch.randn(2, 16, 9, 9)
    for _, layer in robustmix.build_variant(TINY, "delta").spatial_filters():
        with torch.no_grad():
            assert torch.equal(layer(x), x)
    for _, layer in delta.spatial_filters():
        if layer.stride == (1, 1):
            xin = torch.randn(2, layer.in_channels, 9, 9)
            with torch.no_grad():
                assert torch.equal(layer(xin), xin)


def test_bad_variant_params_raise_config_error():
    bad = [("nope", {}), ("chans", {"sigma": 1.0}), ("full", {"rho": 0.5}),
           ("correlated", {"rho": 1.5}), ("correlated", {"rho": -0.1}),
           ("smooth", {"sigma": -1.0}), ("gaussian", {"sigma": 0.0}), ("gaussian", {"sigma": -2.0}),
           ("smooth", {"sigma": "2"}), ("smooth", {"sigma": float("nan")}), ("correlated", {"rho": True})]
    for variant, params in bad:
        with pytest.raises(ConfigError):
            resolve_variant(variant, params)
        with pytest.raises(ConfigError):
            robustmix.build_variant(TINY, variant, variant_params=params)
        with pytest.raises(ConfigError):
            apply_variant(robustmix.create_model(TINY), variant, **params)
    with pytest.raises(ConfigError, match="unknown variant 'nope'"):
        resolve_variant("nope")
    with pytest.raises(ConfigError, match="no parameter 'sigma'"):
        resolve_variant("chans", {"sigma": 1})
    with pytest.raises(ConfigError, match=r"rho must be in \[0, 1\]"):
        resolve_variant("correlated", {"rho": 2})


def test_resolve_parse_and_tag():
    assert resolve_variant("smooth") == {"sigma": 1.0}
    assert resolve_variant("correlated", {"rho": 1}) == {"rho": 1.0}
    assert parse_variant("smooth:sigma=2") == ("smooth", {"sigma": 2.0})
    assert parse_variant("chans") == ("chans", {})
    assert variant_tag("smooth", {"sigma": 2}) == "smooth-sigma2"
    assert variant_tag("full") == "full"
    for text in ("smooth:sigma=abc", "smooth:sigma"):
        with pytest.raises(ConfigError):
            parse_variant(text)


def test_variant_recorded_on_model():
    model = robustmix.build_variant(TINY, "correlated", variant_seed=9, variant_params={"rho": 0.25})
    assert (model.variant, model.variant_seed, model.variant_params) == ("correlated", 9, {"rho": 0.25})
    assert math.isclose(model.variant_params["rho"], 0.25)


def test_every_variant_parameter_is_a_result_column():
    # models.csv and the summary carry one column per variant parameter (schema.VARIANT_PARAMS).
    assert {key for spec in VARIANTS.values() for key in spec.defaults} == set(VARIANT_PARAMS)
    assert set(VARIANT_PARAMS) <= set(MODEL_COLUMNS) and set(VARIANT_PARAMS) <= set(SUMMARY_COLUMNS)
