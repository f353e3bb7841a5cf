"""Common corruptions: the 15 types at every severity, their repairs against the package,
tables and mCE against hand computation, RobustBench's format, and a spec end to end."""
from __future__ import annotations

import dataclasses
import json
import textwrap

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import imagecorruptions
from imagecorruptions import corruptions as package
from robustmix import corruption_eval
from robustmix.cli import main
from robustmix.config import from_dict
from robustmix.corruption_tables import accuracy_table, corruption_summary
from robustmix.corruptions import CORRUPTION_NAMES, corrupt_batch, corrupt_image
from robustmix.errors import ConfigError
from robustmix.evaluate import run_eval
from robustmix.export_corruptions import ROBUSTBENCH_CORRUPTIONS, export_corruptions
from robustmix.external import import_robustbench
from robustmix.report import write_report
from robustmix.schema import CORRUPTIONS, WORST_CASE
from robustmix.spec import EvalSpec

pytestmark = pytest.mark.usefixtures("single_thread")


def smooth_images(n: int, channels: int, size: int) -> torch.Tensor:
    """Discs on a gradient: images with structure, so blurs and zooms have something to move."""
    g = torch.Generator().manual_seed(1)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    images = []
    for _ in range(n):
        cx, cy, r = torch.rand(3, generator=g) * torch.tensor([0.6, 0.6, 0.4]) + torch.tensor([-0.3, -0.3, 0.3])
        disc = ((xx - cx) ** 2 + (yy - cy) ** 2 < r ** 2).float() * 0.7 + 0.15 * (xx + 1)
        images.append(torch.stack([disc * (0.6 + 0.4 * k / max(1, channels - 1)) for k in range(channels)]))
    return torch.stack(images).clamp(0, 1)


SHAPES = [(1, 28), (3, 32)]  # Fashion-MNIST-like grayscale, CIFAR-like RGB


# --- the corruptions ---------------------------------------------------------------

def test_the_fifteen_are_the_packages_common_corruptions():
    assert CORRUPTION_NAMES == tuple(imagecorruptions.get_corruption_names("common"))


@pytest.mark.parametrize("channels,size", SHAPES)
def test_every_type_and_severity_runs_keeps_shape_and_range_and_is_seeded(channels, size):
    x = smooth_images(2, channels, size)
    state = np.random.get_state()
    distortion = np.zeros((len(CORRUPTION_NAMES), 5))
    for i, name in enumerate(CORRUPTION_NAMES):
        for s in range(1, 6):
            y = corrupt_batch(x, name, s, [11, 12])
            assert y.shape == x.shape and y.dtype == x.dtype, (name, s)
            assert float(y.min()) >= 0 and float(y.max()) <= 1, (name, s)
            assert torch.equal(y, corrupt_batch(x, name, s, [11, 12])), f"{name} s{s} not deterministic"
            # One image's corruption does not depend on its batch.
            assert torch.equal(y[1:], corrupt_batch(x[1:], name, s, [12])), (name, s)
            distortion[i, s - 1] = float((y - (x * 255).round() / 255).pow(2).mean().sqrt())
    now = np.random.get_state()
    assert np.array_equal(now[1], state[1]) and now[2] == state[2], "the global numpy RNG moved"
    assert (distortion[:, 4] > distortion[:, 0]).all(), dict(zip(CORRUPTION_NAMES, distortion[:, [0, 4]]))
    mean = distortion.mean(axis=0)
    assert (np.diff(mean) > 0).all(), f"mean distortion over types not increasing with severity: {mean}"


def test_random_corruptions_follow_their_seed():
    x = smooth_images(1, 3, 32)
    for name in ("gaussian_noise", "impulse_noise", "glass_blur", "fog", "frost", "elastic_transform"):
        assert not torch.equal(corrupt_batch(x, name, 3, [1]), corrupt_batch(x, name, 3, [2])), name


def _image(size=32):
    return np.ascontiguousarray((smooth_images(1, 3, size)[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))


@pytest.mark.parametrize("name", ["gaussian_noise", "motion_blur", "snow", "frost", "elastic_transform", "pixelate"])
def test_unrepaired_types_are_the_package_itself(name):
    img = _image()
    np.random.seed(5)
    want = imagecorruptions.corrupt(img, severity=3, corruption_name=name)
    assert np.array_equal(corrupt_image(img, name, 3, seed=5), want)


def test_repaired_fog_and_glass_blur_equal_the_package_under_its_old_dependencies(monkeypatch):
    # What the package computed before numpy 2 (np.float_) and scikit-image 0.19 (multichannel).
    monkeypatch.setattr(np, "float_", np.float64, raising=False)
    old_gaussian = package.gaussian
    monkeypatch.setattr(package, "gaussian", lambda *a, multichannel=False, **k:
                        old_gaussian(*a, channel_axis=-1 if multichannel else None, **k))
    img = _image()
    for name in ("fog", "glass_blur"):
        for s in (1, 5):
            np.random.seed(9)
            want = imagecorruptions.corrupt(img, severity=s, corruption_name=name)
            assert np.array_equal(corrupt_image(img, name, s, seed=9), want), (name, s)


def test_impulse_noise_hits_the_published_fraction_of_pixels():
    img = np.full((64, 64, 3), 128, np.uint8)
    for s, amount in zip(range(1, 6), [.03, .06, .09, 0.17, 0.27]):
        out = corrupt_image(img, "impulse_noise", s, seed=s)
        changed = float((out != 128).mean())
        assert abs(changed - amount) < 0.02, (s, changed, amount)
        assert set(np.unique(out)) <= {0, 128, 255}


def test_small_images_are_padded_not_resized():
    # Brightness acts per pixel: a 28x28 image must come back as those pixels, brightened.
    x = smooth_images(1, 1, 28)
    y28 = corrupt_batch(x, "brightness", 2, [0])
    big = torch.nn.functional.pad(x, (2, 2, 2, 2), mode="reflect")
    y32 = corrupt_batch(big, "brightness", 2, [0])
    assert torch.equal(y28, y32[..., 2:30, 2:30])


def test_bad_corruption_input_is_a_one_line_error():
    x = smooth_images(1, 1, 28)
    for call, text in [(lambda: corrupt_batch(x, "fogg", 1, [0]), "unknown corruption 'fogg'"),
                       (lambda: corrupt_batch(x, "fog", 0, [0]), "severity must be an integer 1 to 5"),
                       (lambda: corrupt_batch(x, "fog", 6, [0]), "got 6"),
                       (lambda: corrupt_batch(x, "fog", 1, [0, 1]), "one seed per image")]:
        with pytest.raises(ConfigError, match=text) as err:
            call()
        assert "\n" not in str(err.value)


# --- tables and mCE ------------------------------------------------------------------

def _examples(correct: dict, clean: dict) -> pd.DataFrame:
    """correct[model] = array (n, types, severities); clean[model] = array (n,)."""
    rows = []
    types = ["gaussian_noise", "fog"]
    for model, cube in correct.items():
        for i in range(cube.shape[0]):
            for t, name in enumerate(types):
                for s in range(cube.shape[2]):
                    rows.append({"model": model, "threat_model": CORRUPTIONS, "attack": name, "eps": float(s + 1),
                                 "index": i, "correct": bool(cube[i, t, s]), "clean_correct": bool(clean[model][i])})
    return pd.DataFrame(rows)


def test_summary_and_mce_match_hand_computation():
    rng = np.random.default_rng(0)
    n = 40
    a = rng.random((n, 2, 2)) < np.array([[0.9, 0.6], [0.7, 0.3]])
    base = rng.random((n, 2, 2)) < np.array([[0.8, 0.5], [0.6, 0.2]])
    clean = {"a": rng.random(n) < 0.95, "base": rng.random(n) < 0.9}
    table = corruption_summary(_examples({"a": a, "base": base}, clean), baseline="base").set_index("model")
    assert table.at["a", "mean_acc"] == pytest.approx(a.mean())
    assert table.at["a", "clean_acc"] == pytest.approx(clean["a"].mean())
    # Hendrycks & Dietterich (2019): CE_c = sum_s E(a) / sum_s E(base), mCE = mean over c.
    ea, eb = 1 - a.mean(0), 1 - base.mean(0)
    want = np.mean([ea[c].sum() / eb[c].sum() for c in range(2)])
    assert table.at["a", "mce"] == pytest.approx(want)
    ca, cb = 1 - clean["a"].mean(), 1 - clean["base"].mean()
    want_rel = np.mean([(ea[c] - ca).sum() / (eb[c] - cb).sum() for c in range(2)])
    assert table.at["a", "relative_mce"] == pytest.approx(want_rel)
    assert table.at["base", "mce"] == 1 and table.at["base", "mce_low"] == 1
    assert table.at["a", "mce_low"] < table.at["a", "mce"] < table.at["a", "mce_high"]
    # The bootstrap interval of a mean of per-example scores: close to the normal one.
    per_example = a.reshape(n, -1).mean(1)
    half = 1.96 * per_example.std(ddof=1) / np.sqrt(n)
    assert table.at["a", "ci_low"] == pytest.approx(a.mean() - half, abs=0.02)
    assert table.at["a", "ci_high"] == pytest.approx(a.mean() + half, abs=0.02)


def test_accuracy_table_means():
    summary = pd.DataFrame({"model": "m", "threat_model": CORRUPTIONS, "attack": ["fog", "fog", "contrast", "contrast"],
                            "eps": [1.0, 2.0, 1.0, 2.0], "robust_acc": [0.8, 0.4, 0.6, 0.2]})
    t = accuracy_table(summary, "m")
    assert list(t.index) == ["fog", "contrast", "mean"] and list(t.columns) == ["s1", "s2", "mean"]
    assert t.at["fog", "mean"] == pytest.approx(0.6) and t.at["mean", "s1"] == pytest.approx(0.7)
    assert t.at["mean", "mean"] == pytest.approx(0.5)
    with pytest.raises(ConfigError, match="no corruption results"):
        accuracy_table(summary, "other")


# --- a spec end to end ------------------------------------------------------------------

class Tiny(nn.Module):
    def __init__(self, seed):
        super().__init__()
        torch.manual_seed(seed)
        self.net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(),
                                 nn.Linear(64, 10))

    def forward(self, x):
        return self.net(x)


def _spec(root, threat, attacks=()):
    data = {"n": 12, "batch_size": 8, "root": str(root)}
    return from_dict(EvalSpec, {"name": "c", "models": ["a", "b"], "data": data, "threat": threat,
                                "attacks": list(attacks)})


def _run(spec, out):
    return run_eval(spec, out, models={"a": Tiny(0), "b": Tiny(1)}, device="cpu", progress=False,
                    log=lambda *a, **k: None)


CORR = {"types": ["fog", "gaussian_noise"], "severities": [1, 5]}


@pytest.fixture(scope="module")
def store(fake_fmnist, tmp_path_factory):
    out = tmp_path_factory.mktemp("corr") / "results"
    spec = _spec(fake_fmnist, {"Linf": {"eps": [0, "8/255"]}, "corruptions": CORR}, [{"name": "fgsm"}])
    return out, _run(spec, out)


def test_spec_end_to_end_rows(store, fake_fmnist, tmp_path):
    out, summary = store
    c = summary[summary["threat_model"] == CORRUPTIONS]
    assert set(c["attack"]) == {"fog", "gaussian_noise"} and set(c["eps"]) == {1.0, 5.0}
    assert set(c["eps_label"]) == {"s1", "s5"} and set(c["attack_kind"]) == {"corruption"}
    assert (c["n"] == 12).all()
    assert not (summary[summary["attack"] == WORST_CASE]["threat_model"] == CORRUPTIONS).any()
    assert (summary[summary["attack"] == WORST_CASE]["threat_model"] == "Linf").any()
    # Reproducible: a fresh run of a corruptions-only spec gives the same per-example rows.
    again = _run(_spec(fake_fmnist, {"corruptions": CORR}), tmp_path / "again")
    key = ["model", "attack", "eps"]
    assert c.sort_values(key)["n_robust"].tolist() == again.sort_values(key)["n_robust"].tolist()


def test_report_and_robustbench_export(store, tmp_path):
    out, _ = store
    index = write_report(out, tmp_path / "report", mce_baseline="a")
    html = index.read_text()
    assert "Common corruptions" in html and "gaussian_noise" in html and "mCE" in html
    assert (tmp_path / "report" / "figures" / "corruptions.png").is_file()
    paths = export_corruptions(out, tmp_path / "rb", mce_baseline="a")
    folder = tmp_path / "rb" / "fashion-mnist" / "corruptions"
    assert {p.name for p in paths} == {p.name for p in folder.iterdir()}
    # Read back exactly as robustbench.eval.corruptions_evaluation does, then its mCE formula.
    import_robustbench()  # robustbench loads only next to pyautoattack's alias
    from robustbench.data import CORRUPTIONS as RB_CORRUPTIONS
    from robustbench.utils import ModelInfo
    res = pd.read_csv(folder / "unaggregated_results.csv", header=[0, 1], index_col=0)
    res.columns = res.columns.set_levels([res.columns.levels[0], res.columns.levels[1].astype(int)])
    assert list(res.index) == ["a", "b"]
    assert ROBUSTBENCH_CORRUPTIONS == tuple(RB_CORRUPTIONS)
    assert list(dict.fromkeys(res.columns.get_level_values(0))) == [c for c in RB_CORRUPTIONS
                                                                   if c in ("fog", "gaussian_noise")]
    rb_mce = 0
    for corruption in ("fog", "gaussian_noise"):
        rb_mce += ((1 - res.loc[["b"]][corruption]) / (1 - res.loc["a"][corruption]).mean()).values.mean() / 2
    info = json.loads((folder / paths[1].name).read_text())
    assert list(info) == [f.name for f in dataclasses.fields(ModelInfo)]
    assert ModelInfo(**info).name == "b"
    assert info["corruptions_mce"] == str(round(rb_mce * 100, 2))
    assert info["corruptions_acc"] == str(round(res.loc["b"].values.mean() * 100, 2))


def test_cli_and_bad_input_one_line_errors(store, fake_fmnist, tmp_path, capsys):
    out, _ = store
    assert main(["export", str(out), "--corruptions", str(tmp_path / "rb")]) == 0
    assert main(["report", str(out), "--out", str(tmp_path / "r"), "--mce-baseline", "nobody"]) == 2
    assert main(["export", str(out), "--corruptions", str(tmp_path / "x"), "--mce-baseline", "nobody"]) == 2
    err = capsys.readouterr().err
    assert "--mce-baseline 'nobody'" in err and not (tmp_path / "r").exists()
    for bad, text in [({"types": ["snowstorm"]}, "unknown corruption 'snowstorm'"),
                      ({"severities": [0]}, "got 0"), ({"severities": [6]}, "got 6"),
                      ({"severity": [1]}, "unknown key 'threat.corruptions.severity'")]:
        with pytest.raises(ConfigError, match=text) as e:
            _spec(fake_fmnist, {"corruptions": bad})
        assert "\n" not in str(e.value)
    spec = tmp_path / "s.toml"
    spec.write_text(textwrap.dedent("""
        models = ["x"]
        [threat.corruptions]
        severities = [1, 6]
    """))
    assert main(["eval", str(spec), "--results", str(tmp_path / "none")]) == 2
    assert "severities" in capsys.readouterr().err and not (tmp_path / "none").exists()


def test_corrupted_images_are_made_once_per_eval(fake_fmnist, tmp_path, monkeypatch):
    """Both models of a spec classify the same corrupted images, made once; with no room to keep
    them (every model makes its own) the rows are identical."""
    calls = []
    real = corruption_eval.corrupt_batch
    monkeypatch.setattr(corruption_eval, "corrupt_batch", lambda *a, **k: calls.append(a[1:3]) or real(*a, **k))
    spec = _spec(fake_fmnist, {"corruptions": CORR})
    cached = _run(spec, tmp_path / "cached")
    # 2 types x 2 severities x 2 chunks (12 examples, batch 8), once each, not once per model.
    assert len(calls) == 8 and len(set(calls)) == 4
    calls.clear()
    monkeypatch.setattr(corruption_eval, "CACHE_BYTES", 0)
    fresh = _run(spec, tmp_path / "fresh")
    assert len(calls) == 16
    cols = ["model", "attack", "eps", "n_robust"]
    assert cached[cols].reset_index(drop=True).equals(fresh[cols].reset_index(drop=True))
