"""Spectral-envelope analysis (Figure 1): generated banks, coverage growth, the CLI."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import robustmix
from robustmix.cli import build_parser
from robustmix.errors import ConfigError
from robustmix.paper.analysis import bank_for, spectrum_table, write_spectrum_report
from robustmix.spectrum import spectral_envelope


# Tiny tensors on 2 contended threads spin-wait; one thread is faster and deterministic.
pytestmark = pytest.mark.usefixtures("single_thread")


def coverage(table, bank, m=None):
    d = table[table["bank"] == bank].set_index("n_filters")["coverage"]
    return d if m is None else float(d.loc[m])


def test_delta_envelope_is_flat():
    env = spectral_envelope(bank_for("delta", 1, 5), n=32)
    np.testing.assert_allclose(env, 1.0, atol=1e-6)


def test_box_envelope_is_a_dirichlet_kernel():
    k, n = 5, 32
    env = spectral_envelope(bank_for("box", 3, k), n=n)
    f = np.fft.fftshift(np.fft.fftfreq(n))
    with np.errstate(invalid="ignore", divide="ignore"):
        d = np.abs(np.sin(np.pi * f * k) / (k * np.sin(np.pi * f)))
    d[f == 0] = 1.0  # the limit at DC
    np.testing.assert_allclose(env, np.outer(d, d), atol=1e-6)
    assert env.max() == pytest.approx(1.0, abs=1e-6) and env.min() < 0.05  # zeros of the sinc


def test_generated_bank_is_the_variant_models_first_frozen_layer():
    model = robustmix.build_variant("convmixer_16_2_ks3_p4", "correlated", variant_seed=3,
                                    variant_params={"rho": 0.7}, dim=16, kernel_size=5)
    first = model.spatial_filters()[0][1].weight.detach().squeeze(1).double().numpy()
    np.testing.assert_array_equal(bank_for("correlated", 16, 5, seed=3, rho=0.7), first)
    assert not np.array_equal(bank_for("random", 16, 5, seed=0), bank_for("random", 16, 5, seed=1))


def test_coverage_grows_with_uncorrelated_filters_not_shared_or_highly_correlated():
    c = 32
    banks = {"random": bank_for("random", c, 5), "shared": bank_for("shared", c, 5),
             "rho0": bank_for("correlated", c, 5, rho=0.0), "rho99": bank_for("correlated", c, 5, rho=0.99)}
    table = spectrum_table(banks, n=32)
    assert set(table.columns) >= {"bank", "n_filters", "coverage", "mean_magnitude"}
    assert len(table) == 4 * c
    assert coverage(table, "random", c) >= coverage(table, "random", 1) + 0.4
    assert coverage(table, "random", c) > 0.9
    assert coverage(table, "random").is_monotonic_increasing
    shared = coverage(table, "shared")
    assert shared.nunique() == 1  # identical filters: the envelope never changes
    growth = {b: coverage(table, b, c) - coverage(table, b, 1) for b in ("rho0", "rho99")}
    assert growth["rho0"] > 0.4 and growth["rho99"] < growth["rho0"] / 2


def test_smoothing_lowers_high_frequency_energy():
    banks = {"random": bank_for("random", 32, 5), "smooth": bank_for("smooth", 32, 5, sigma=1.0)}
    full = spectrum_table(banks, n=32).groupby("bank").tail(1).set_index("bank")["high_freq_fraction"]
    assert full["smooth"] < 0.6 * full["random"]
    # Same per-filter norm (smooth_filters renormalises), so this is a shape change, not a scale one.
    np.testing.assert_allclose(np.linalg.norm(banks["smooth"].reshape(32, -1), axis=1),
                               np.linalg.norm(banks["random"].reshape(32, -1), axis=1), rtol=1e-5)


@pytest.mark.parametrize("call, message", [
    (lambda: bank_for("zigzag", 8, 5), "unknown bank kind 'zigzag'"),
    (lambda: bank_for("correlated", 8, 5, rho=2.0), "rho must be in [0, 1]"),
    (lambda: bank_for("random", 8, 5, sigma=1.0), "bank 'random' has no parameter 'sigma'"),
    (lambda: bank_for("box", 0, 5), "channels must be a positive integer"),
    (lambda: spectrum_table({}), "no filter banks"),
])
def test_bad_input_is_a_config_error(call, message):
    with pytest.raises(ConfigError) as info:
        call()
    assert message in str(info.value) and "\n" not in str(info.value)


def _run_cli(argv):
    args = build_parser().parse_args(argv)
    return args.fn(args)


def test_cli_writes_csv_and_both_figure_formats(tmp_path, capsys):
    out = tmp_path / "spec"
    assert _run_cli(["analyze", "spectrum", "--bank", "random", "--bank", "correlated:rho=0.9",
                     "--bank", "delta", "--channels", "8", "--out", str(out)]) == 0
    for name in ("spectrum.csv", "spectrum.png", "spectrum.svg"):
        assert (out / name).stat().st_size > 0
    import pandas as pd

    table = pd.read_csv(out / "spectrum.csv")
    assert list(table["bank"].unique()) == ["random", "correlated-rho0.9", "delta"]
    assert table.loc[table["bank"] == "correlated-rho0.9", "rho"].eq(0.9).all()
    assert "coverage" in capsys.readouterr().out


def test_cli_reads_a_trained_model_and_rejects_unknown_ones(tmp_path):
    from robustmix.store import ModelStore

    store = ModelStore(tmp_path / "store")
    model = robustmix.build_variant("convmixer_16_2_ks3_p4", "chans", variant_seed=5)
    store.save("demo/chans-s5", model, {"model": {"name": "convmixer_16_2_ks3_p4", "args": model.model_args},
                                        "variant": "chans", "variant_params": {}, "variant_seed": 5})
    out = tmp_path / "m"
    assert _run_cli(["analyze", "spectrum", "--model", "demo/chans-s5", "--layer", "all",
                     "--store", str(tmp_path / "store"), "--out", str(out)]) == 0
    import pandas as pd

    table = pd.read_csv(out / "spectrum.csv")
    assert list(table["bank"].unique()) == ["demo/chans-s5[0]", "demo/chans-s5[1]"]
    with pytest.raises(ConfigError, match="unknown model 'nope/x'"):
        _run_cli(["analyze", "spectrum", "--model", "nope/x", "--store", str(tmp_path / "store"),
                  "--out", str(out)])


def test_write_spectrum_report_returns_paths(tmp_path):
    banks = {"random": bank_for("random", 4, 3)}
    paths = write_spectrum_report(spectrum_table(banks, n=16), banks, tmp_path)
    assert [p.suffix for p in paths] == [".csv", ".png", ".svg"] and all(p.exists() for p in paths)
