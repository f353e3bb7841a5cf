"""The evaluation driver (`run_eval`): summary table, curves, determinism, diagnostics, attack kinds.

All runs use real Fashion-MNIST test images (skipped when the Debian files are
absent), a small CNN trained here for 100 steps with a fixed seed, and small n.
"""
from __future__ import annotations

import copy
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from robustmix import data as datasets
from robustmix.config import from_dict
from robustmix.errors import ConfigError, DataError
from robustmix.evaluate import Target, _model_row, example_indices, run_eval
from robustmix.results import aggregate, wilson_interval
from robustmix.schema import EXAMPLE_COLUMNS, MODEL_COLUMNS, SUMMARY_COLUMNS, WORST_CASE
from robustmix.spec import EvalSpec

pytestmark = pytest.mark.usefixtures("single_thread")

LINF = [0, "2/255", "8/255", "32/255"]
KEY = ["model", "attack", "threat_model", "eps", "index"]


# --- models -------------------------------------------------------------------

class TinyCNN(nn.Module):
    def __init__(self, in_chans=1, classes=10):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(in_chans, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                 nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                 nn.Flatten(), nn.Linear(16 * 7 * 7, classes))

    def forward(self, x):
        return self.net(x)


class Wrap(nn.Module):
    """Base for wrappers that share one network (same weights, different forward)."""

    def __init__(self, base):
        super().__init__()
        self.base = base


class Rounded(Wrap):
    """Quantises its input without a straight-through estimator: input gradients are exactly zero."""

    def forward(self, x):
        return self.base(torch.round(x * 255) / 255)


class Noisy(Wrap):
    def forward(self, x):
        return self.base(x + 0.05 * torch.randn_like(x))


class Softmaxed(Wrap):
    def forward(self, x):
        return self.base(x).softmax(1)


def train_tiny(root, seed=0, steps=100) -> nn.Module:
    ds = datasets.load_dataset("fashion-mnist", "train", root=root)
    torch.manual_seed(seed)
    model = TinyCNN()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x, y = datasets.batch(ds, torch.randint(0, len(ds), (64,), generator=gen))
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="session")
def tiny(real_fmnist):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return train_tiny(real_fmnist)
    finally:
        torch.set_num_threads(threads)


def make_spec(root, models, attacks, threat=None, n=128, batch_size=64, **top) -> EvalSpec:
    return from_dict(EvalSpec, {"name": "t", "models": list(models),
                                "data": {"n": n, "batch_size": batch_size, "root": str(root)},
                                "threat": threat or {"Linf": {"eps": LINF}}, "attacks": attacks, **top})


def evaluate(spec, results, models):
    return run_eval(spec, results, models=models, device="cpu", progress=False, log=lambda *a, **k: None)


def read_examples(results) -> pd.DataFrame:
    files = sorted(Path(results, "examples").glob("*.parquet"))
    assert files, f"no unit files in {results}"
    df = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    assert not df.duplicated(KEY).any(), "duplicate per-example rows"
    return df.sort_values(KEY).reset_index(drop=True)


# --- the main run: FGSM, PGD with random start, AutoAttack on a subset, two threat models ---------

MAIN_ATTACKS = [
    {"name": "fgsm"},
    {"name": "pgd", "steps": 10, "random_start": True},
    {"name": "autoattack", "version": "custom", "attacks": ["apgd-ce"], "n": 32, "threat_models": ["Linf"]},
]
MAIN_THREAT = {"Linf": {"eps": LINF}, "L2": {"eps": [0, 0.5, 2.0]}}


@pytest.fixture(scope="module")
def main_run(tiny, real_fmnist, tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        spec = make_spec(real_fmnist, ["tiny"], MAIN_ATTACKS, MAIN_THREAT, seed=3)
        out = tmp_path_factory.mktemp("main")
        torch.manual_seed(1234)
        before = torch.get_rng_state()
        summary = evaluate(spec, out / "a", {"tiny": tiny})
        after = torch.get_rng_state()
        return {"spec": spec, "summary": summary, "dir": out / "a", "rng": (before, after), "root": out}
    finally:
        torch.set_num_threads(threads)


def test_summary_columns_and_dtypes(main_run):
    s = main_run["summary"]
    assert list(s.columns[:len(SUMMARY_COLUMNS)]) == list(SUMMARY_COLUMNS)
    stored = pd.read_parquet(main_run["dir"] / "summary.parquet")
    pd.testing.assert_frame_equal(stored, s)
    assert s["eps"].dtype == np.float64
    for col in ("n", "n_robust", "fwd_bwd_passes", "eval_seed"):
        assert pd.api.types.is_integer_dtype(s[col]), (col, s[col].dtype)
    assert s["nested"].dtype == bool and s["nested"].all()
    for col in ("robust_acc", "ci_low", "ci_high", "clean_acc", "seconds"):
        assert s[col].dtype == np.float64, col
    assert s["robust_acc"].between(0, 1).all() and s["clean_acc"].between(0, 1).all()
    assert ((s["ci_low"] <= s["robust_acc"]) & (s["robust_acc"] <= s["ci_high"])).all()
    assert (s["ci_low"] < s["ci_high"]).all()
    assert np.allclose(s["robust_acc"], s["n_robust"] / s["n"])
    assert (s["seconds"] >= 0).all()
    # Attacked cells cost passes; eps = 0 is free.
    attacked = s[(s["eps"] > 0) & (s["attack"] != WORST_CASE)]
    assert (attacked["fwd_bwd_passes"] > 0).all()
    assert (s.loc[s["eps"] == 0, "fwd_bwd_passes"] == 0).all()
    assert (s["eval_seed"] == 3).all()
    assert s["spec_hash"].nunique() == 1 and s["spec_hash"].iloc[0] == main_run["spec"].spec_hash()
    assert s["code_version"].str.startswith("0.1.0").all()
    assert set(s["model"]) == {"tiny"} and (s["dataset"] == "fashion-mnist").all()
    # Exact eps values: 8/255 is stored as the float, its display form beside it.
    lin = s[s["threat_model"] == "Linf"]
    assert sorted(set(lin["eps"])) == [0.0, 2 / 255, 8 / 255, 32 / 255]
    assert set(lin["eps_label"]) == {"0", "2/255", "8/255", "32/255"}
    # n: FGSM/PGD on all 128, AutoAttack on its 32, L2 only FGSM/PGD.
    n = s.groupby(["threat_model", "attack"])["n"].unique().map(list).to_dict()
    assert n == {("L2", "fgsm"): [128], ("L2", "pgd"): [128], ("L2", WORST_CASE): [128],
                 ("Linf", "autoattack"): [32], ("Linf", "fgsm"): [128], ("Linf", "pgd"): [128],
                 ("Linf", WORST_CASE): [32]}
    models = pd.read_csv(main_run["dir"] / "models.csv")
    assert models.loc[0, "model"] == "tiny" and models.loc[0, "source"] == "python"
    assert models.loc[0, "params"] == sum(p.numel() for p in TinyCNN().parameters())


def test_eps_zero_is_clean_accuracy(main_run, tiny, real_fmnist):
    s = main_run["summary"]
    ds = datasets.load_dataset("fashion-mnist", "test", root=real_fmnist)
    idx = example_indices(main_run["spec"], len(ds))
    assert len(idx) == 128 and len(set(idx.tolist())) == 128
    x, y = datasets.batch(ds, idx)
    with torch.no_grad():
        ok = tiny(x).argmax(1) == y
    assert 0.5 < ok.float().mean() < 1  # a nontrivial model
    for (tm, attack), g in s.groupby(["threat_model", "attack"]):
        row = g[g["eps"] == 0].iloc[0]
        k = row["n"]
        assert row["n_robust"] == int(ok[:k].sum()), (tm, attack)
        assert row["robust_acc"] == row["clean_acc"]
        assert (g["clean_acc"] == row["clean_acc"]).all()


def test_curves_never_rise_and_worst_case_is_the_minimum(main_run):
    s = main_run["summary"]
    for (tm, attack), g in s.groupby(["threat_model", "attack"]):
        acc = g.sort_values("eps")["n_robust"].to_numpy()
        assert (np.diff(acc) <= 0).all(), (tm, attack, acc)
        assert acc[-1] < acc[0], (tm, attack)  # the attacks do something
    ex = read_examples(main_run["dir"])
    for tm, grid in main_run["spec"].eps_grid.items():
        worst = s[(s["threat_model"] == tm) & (s["attack"] == WORST_CASE)]
        assert sorted(worst["eps"]) == grid  # a worst-case row per eps
        for _, w in worst.iterrows():
            cell = ex[(ex["threat_model"] == tm) & (ex["eps"] == w["eps"])]
            per = cell.pivot_table(index="index", columns="attack", values="correct", aggfunc="first").dropna()
            assert len(per) == w["n"]
            assert w["n_robust"] == int(per.astype(bool).all(axis=1).sum())
            for attack in per.columns:
                assert w["n_robust"] <= int(per[attack].astype(bool).sum()), (tm, w["eps"], attack)
                full = s[(s["threat_model"] == tm) & (s["attack"] == attack) & (s["eps"] == w["eps"])].iloc[0]
                if full["n"] == w["n"]:
                    assert w["robust_acc"] <= full["robust_acc"]
            assert set(w["attacks"].split("+")) == set(per.columns)


def test_per_example_store(main_run):
    ex = read_examples(main_run["dir"])
    assert set(EXAMPLE_COLUMNS) <= set(ex.columns)
    assert ex["correct"].dtype == bool and ex["clean_correct"].dtype == bool
    assert ex["margin"].dtype == np.float32 and ex["eps"].dtype == np.float64
    assert ex["index"].dtype == np.int64 and ex["label"].dtype == np.int64
    assert (ex["eval_seed"] == 3).all()
    # margin > 0 <=> correct (ties aside); robust implies clean-correct; eps 0 is clean.
    decided = ex["margin"] != 0
    assert ((ex["margin"] > 0) == ex["correct"])[decided].all()
    assert not (ex["correct"] & ~ex["clean_correct"]).any()
    zero = ex[ex["eps"] == 0]
    assert (zero["correct"] == zero["clean_correct"]).all()
    # Nested sweeps: per example, once broken stays broken.
    for _, g in ex.groupby(["model", "attack", "threat_model", "index"]):
        c = g.sort_values("eps")["correct"].to_numpy()
        assert not (c[1:] & ~c[:-1]).any()


def test_same_seed_is_bit_identical_and_rng_untouched(main_run, tiny):
    before, after = main_run["rng"]
    assert torch.equal(before, after), "run_eval changed the caller's global torch RNG state"
    torch.manual_seed(99)
    state = torch.get_rng_state()
    evaluate(main_run["spec"], main_run["root"] / "b", {"tiny": tiny})
    assert torch.equal(state, torch.get_rng_state())
    a = read_examples(main_run["dir"]).drop(columns=["seconds"])
    b = read_examples(main_run["root"] / "b").drop(columns=["seconds"])
    pd.testing.assert_frame_equal(a, b)
    # A different eval seed draws another subset.
    other = copy.deepcopy(main_run["spec"])
    other.seed = 4
    assert not torch.equal(example_indices(other, 10000), example_indices(main_run["spec"], 10000))


def test_rerun_into_same_store_reuses_units(main_run, tiny):
    files = sorted(p.name for p in (main_run["dir"] / "examples").glob("*.parquet"))
    mtimes = [p.stat().st_mtime_ns for p in sorted((main_run["dir"] / "examples").glob("*.parquet"))]
    again = evaluate(main_run["spec"], main_run["dir"], {"tiny": tiny})
    assert sorted(p.name for p in (main_run["dir"] / "examples").glob("*.parquet")) == files
    assert [p.stat().st_mtime_ns for p in sorted((main_run["dir"] / "examples").glob("*.parquet"))] == mtimes
    pd.testing.assert_frame_equal(again.drop(columns=["seconds"]),
                                  main_run["summary"].drop(columns=["seconds"]))


# --- diagnostics ----------------------------------------------------------------

@pytest.fixture(scope="module")
def diag_run(tiny, real_fmnist, tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        handed_in_train = nn.Sequential(nn.Dropout(0.3), copy.deepcopy(tiny)).train()
        models = {"plain": tiny, "rounded": Rounded(tiny).eval(), "noisy": Noisy(tiny).eval(),
                  "softmax": Softmaxed(tiny).eval(), "trainmode": handed_in_train}
        spec = make_spec(real_fmnist, list(models), [{"name": "pgd", "steps": 10, "random_start": True},
                                                     {"name": "square", "n_queries": 100}], n=64)
        out = tmp_path_factory.mktemp("diag")
        summary = evaluate(spec, out, models)
        diag = pd.read_csv(out / "diagnostics.csv")
        return {"summary": summary, "diag": diag, "models": models}
    finally:
        torch.set_num_threads(threads)


def _flags(diag, model):
    return set(diag.loc[diag["model"] == model, "flag"])


def test_diagnostics_csv(diag_run):
    diag = diag_run["diag"]
    assert list(diag.columns) == ["model", "flag", "detail"]
    assert not diag.duplicated(["model", "flag"]).any()
    assert diag["detail"].notna().all() and (diag["detail"].str.len() > 0).all()


def test_normal_model_gets_no_flags(diag_run):
    assert _flags(diag_run["diag"], "plain") == set()


def test_gradient_masking_is_flagged_and_square_still_breaks_it(diag_run):
    flags = _flags(diag_run["diag"], "rounded")
    assert "zero-gradients" in flags
    assert flags & {"robust-at-full-range", "black-box-beats-white-box"}
    assert "black-box-beats-white-box" in flags
    assert not flags & {"randomized", "probability-outputs", "train-mode"}
    s = diag_run["summary"].set_index(["model", "attack", "eps"])
    top = 32 / 255
    clean = s.loc[("rounded", "square", 0.0), "robust_acc"]
    assert s.loc[("rounded", "square", top), "robust_acc"] < clean - 0.15
    assert s.loc[("rounded", "square", top), "robust_acc"] < s.loc[("rounded", "pgd", top), "robust_acc"]
    # The same network without the rounding is broken by PGD.
    assert s.loc[("plain", "pgd", top), "robust_acc"] < s.loc[("rounded", "pgd", top), "robust_acc"]


def test_randomized_probability_and_train_mode_flags(diag_run):
    diag = diag_run["diag"]
    assert "randomized" in _flags(diag, "noisy")
    assert "probability-outputs" in _flags(diag, "softmax")
    assert "randomized" not in _flags(diag, "softmax")
    # Dropout is off in eval mode, so the train-mode model is not randomised.
    assert _flags(diag, "trainmode") == {"train-mode"}
    m = diag_run["models"]["trainmode"]
    assert m.training and all(sub.training for sub in m.modules())
    assert all(p.requires_grad for p in m.parameters())
    assert not any(mod.training for mod in diag_run["models"]["plain"].modules())
    # Models that share weights are still separate rows (never one model's cached units).
    s = diag_run["summary"]
    assert set(s["model"]) == set(diag_run["models"])
    per = s[(s["attack"] == "pgd") & (s["eps"] > 0)].set_index(["model", "eps"])["robust_acc"]
    assert not np.allclose(per.loc["rounded"].to_numpy(), per.loc["softmax"].to_numpy())


# --- transfer and torchattacks attacks through a spec -----------------------------

def test_transfer_and_torchattacks_by_name(tiny, real_fmnist, tmp_path):
    source = copy.deepcopy(tiny).train()  # handed over in train mode: must come back so
    models = {"source": source, "rounded": Rounded(tiny).eval()}
    attacks = [{"name": "transfer", "source": "source"},
               {"name": "torchattacks.PGD", "steps": 5, "alpha": 0.01, "label": "ta-pgd"},
               {"name": "torchattacks.CW", "steps": 10, "n": 32}]
    spec = make_spec(real_fmnist, list(models), attacks, {"Linf": {"eps": [0, "8/255", "32/255"]}}, n=64)
    s = evaluate(spec, tmp_path / "r", models)
    assert source.training
    got = s[s["attack"] != WORST_CASE].groupby(["model", "attack"])["attack_kind"].first().to_dict()
    assert got == {(m, a): k for m in models for a, k in
                   (("transfer", "transfer"), ("ta-pgd", "torchattacks.PGD"), ("torchattacks.CW", "torchattacks.CW"))}
    cell = s.set_index(["model", "attack", "eps"])
    top = 32 / 255
    # Transfer from the unmasked network breaks the gradient-masked one; white-box PGD does not.
    assert cell.loc[("rounded", "transfer", top), "robust_acc"] < cell.loc[("rounded", "transfer", 0.0), "robust_acc"] - 0.15
    assert cell.loc[("source", "ta-pgd", top), "robust_acc"] < cell.loc[("source", "ta-pgd", 0.0), "robust_acc"] - 0.15
    assert cell.loc[("source", "torchattacks.CW", 0.0), "n"] == 32
    assert (s.loc[(s["attack"] != WORST_CASE) & (s["eps"] > 0), "fwd_bwd_passes"] > 0).all()
    ex = read_examples(tmp_path / "r")
    assert set(ex["attack"]) == {"transfer", "ta-pgd", "torchattacks.CW"}


def test_transfer_source_must_be_a_spec_model(tiny, real_fmnist, tmp_path):
    spec = make_spec(real_fmnist, ["a"], [{"name": "transfer", "source": "nope"}], n=16)
    with pytest.raises(ConfigError, match="source 'nope'"):
        evaluate(spec, tmp_path / "r", {"a": tiny})


def test_attack_models_restricts_an_attack_to_matching_models(tiny, real_fmnist, tmp_path):
    # A study spends its expensive attacks on a few models: pgd runs on "core/*" only,
    # while the clean pass (fgsm at eps 0, labelled "clean") covers every model.
    models = {"core/a": tiny, "core/b": copy.deepcopy(tiny), "ctrl/c": copy.deepcopy(tiny)}
    attacks = [{"name": "fgsm", "label": "clean", "eps": [0]},
               {"name": "pgd", "steps": 3, "n": 16, "models": ["core/*"]}]
    spec = make_spec(real_fmnist, list(models), attacks, {"Linf": {"eps": [0, "8/255"]}}, n=32, batch_size=16)
    s = evaluate(spec, tmp_path / "r", models)
    ran = s[s["attack"] != WORST_CASE].groupby("attack")["model"].unique().map(sorted).to_dict()
    assert ran == {"clean": ["core/a", "core/b", "ctrl/c"], "pgd": ["core/a", "core/b"]}
    assert set(s.loc[s["attack"] == "clean", "n"]) == {32}
    ex = read_examples(tmp_path / "r")
    assert set(ex.loc[ex["model"] == "ctrl/c", "attack"]) == {"clean"}


def test_attack_models_pattern_must_match_a_spec_model(tiny, real_fmnist, tmp_path):
    spec = make_spec(real_fmnist, ["a"], [{"name": "fgsm", "models": ["core/*"]}], n=16)
    with pytest.raises(ConfigError, match="models pattern 'core/\\*' matches none"):
        evaluate(spec, tmp_path / "r", {"a": tiny})
    assert not (tmp_path / "r").exists()
    with pytest.raises(ConfigError, match=r"attacks\[0\]\.models"):
        make_spec(real_fmnist, ["a"], [{"name": "fgsm", "models": "core/*"}])


# --- external factory models ---------------------------------------------------------

def test_external_factory_model(real_fmnist, tmp_path, monkeypatch):
    pkg = tmp_path / "extpkg"
    pkg.mkdir()
    (pkg / "robustmix_test_ext_factory.py").write_text(textwrap.dedent("""
        import torch
        from torch import nn

        def build(width=8):
            torch.manual_seed(0)
            return nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4),
                                 nn.Flatten(), nn.Linear(width * 16, 10))
    """))
    monkeypatch.syspath_prepend(str(pkg))
    spec_path = tmp_path / "ext.toml"
    spec_path.write_text(textwrap.dedent(f"""
        seed = 1
        [data]
        n = 32
        batch_size = 32
        root = "{real_fmnist}"
        [threat.Linf]
        eps = [0, "8/255"]
        [[attacks]]
        name = "fgsm"
        [[external]]
        name = "ext"
        factory = "robustmix_test_ext_factory:build"
        kwargs = {{ width = 4 }}
        dataset = "fashion-mnist"
        mean = [0.5]
        std = [0.5]
    """))
    from robustmix.spec import load_spec

    spec = load_spec(spec_path)
    assert spec.name == "ext" and spec.models == []
    s = evaluate(spec, tmp_path / "r", None)
    assert set(s["model"]) == {"ext"} and set(s["attack"]) == {"fgsm", WORST_CASE}
    assert (s["n"] == 32).all()
    models = pd.read_csv(tmp_path / "r" / "models.csv")
    assert models.loc[0, "source"] == "factory"
    assert models.loc[0, "arch"] == "robustmix_test_ext_factory:build"
    assert models.loc[0, "params"] == 4 * 9 + 4 + 4 * 16 * 10 + 10  # kwargs reached the factory


def test_external_model_that_cannot_take_the_data_fails_before_the_store_exists(real_fmnist, tmp_path,
                                                                                 monkeypatch):
    # A 3-channel network cannot take 1-channel Fashion-MNIST; only a forward pass can tell.
    pkg = tmp_path / "extpkg"
    pkg.mkdir()
    (pkg / "robustmix_test_ext_rgb.py").write_text(textwrap.dedent("""
        from torch import nn

        def build():
            return nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(10))
    """))
    monkeypatch.syspath_prepend(str(pkg))
    spec = from_dict(EvalSpec, {"name": "t", "data": {"n": 8, "batch_size": 8, "root": str(real_fmnist)},
                                "threat": {"Linf": {"eps": [0, "8/255"]}}, "attacks": [{"name": "fgsm"}],
                                "external": [{"name": "rgb", "factory": "robustmix_test_ext_rgb:build",
                                              "dataset": "fashion-mnist"}]})
    with pytest.raises(DataError, match="model rgb cannot take fashion-mnist \\(1x28x28"):
        evaluate(spec, tmp_path / "r", None)
    assert not (tmp_path / "r").exists()


def test_randomized_model_is_reproducible_and_rng_untouched(tiny, real_fmnist, tmp_path):
    """A model that draws noise in forward uses the global RNG; run_eval must still leave the
    caller's state alone and give the same per-example results whatever that state was."""
    noisy = Noisy(tiny).eval()
    spec = make_spec(real_fmnist, ["noisy"], [{"name": "fgsm"}], {"Linf": {"eps": [0, "8/255"]}},
                     n=32, batch_size=16)
    frames = []
    for i, caller_seed in enumerate((0, 1)):
        torch.manual_seed(caller_seed)
        state = torch.get_rng_state()
        evaluate(spec, tmp_path / str(i), {"noisy": noisy})
        assert torch.equal(state, torch.get_rng_state())
        frames.append(read_examples(tmp_path / str(i)).drop(columns=["seconds"]))
    pd.testing.assert_frame_equal(*frames)


def test_wilson_interval_matches_textbook_values():
    # Published 95% Wilson intervals: 50/100 -> [0.4038, 0.5962]; 0/10 -> [0, 0.2775] (upper bound
    # z^2/(n+z^2)); n/n mirrors 0/n.
    lo, hi = wilson_interval(np.array([50, 0, 10]), np.array([100, 10, 10]))
    np.testing.assert_allclose(lo, [0.4038, 0.0, 0.7225], atol=1e-4)
    np.testing.assert_allclose(hi, [0.5962, 0.2775, 1.0], atol=1e-4)


def test_variant_parameters_are_columns_of_models_and_summary():
    # sigma of a smooth model reaches models.csv and every summary row as a number, not a string.
    info = datasets.dataset_info("fashion-mnist")
    smooth = Target(name="z/smooth-sigma2-s0", load=lambda: None, fingerprint="f", variant="smooth",
                    arch="convmixer_16_2_ks3_p4", dataset="fashion-mnist", train_seed=0,
                    variant_params={"sigma": 2.0})
    row = _model_row(smooth, nn.Linear(2, 2), info)
    assert row["sigma"] == 2.0 and np.isnan(row["rho"]) and "variant_params" not in row
    models = pd.DataFrame([row], columns=list(MODEL_COLUMNS))
    examples = pd.DataFrame({"model": smooth.name, "attack": "fgsm", "attack_kind": "fgsm", "threat_model": "Linf",
                             "eps": 0.0, "eps_label": "0", "index": [0, 1], "correct": [True, False],
                             "clean_correct": [True, False], "precision": "fp32", "unit": "u", "seconds": 1.0,
                             "passes": 2})
    summary = aggregate(examples, models, {"eval_seed": 0, "spec_hash": "h", "code_version": "v", "nested": True})
    assert (summary["sigma"] == 2.0).all() and summary["rho"].isna().all()
