"""Sweep specs: the shipped specs parse; every bad input is a one-line RobustmixError (CLI: exit 2)."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from torch import nn

from robustmix import cli
from robustmix.config import from_dict
from robustmix.errors import ConfigError, DataError, RobustmixError
from robustmix.evaluate import run_eval
from robustmix.spec import EvalSpec, load_spec

REPO = Path(__file__).resolve().parents[1]
SHIPPED = sorted((REPO / "evals").glob("*.toml"))


def base(**over) -> dict:
    d = {"name": "t", "models": ["m"], "data": {"n": 8, "batch_size": 8},
         "threat": {"Linf": {"eps": [0, "8/255"]}}, "attacks": [{"name": "fgsm"}]}
    d.update(over)
    return d


def spec_error(cls, data: dict, match: str) -> str:
    with pytest.raises(cls, match=match) as info:
        from_dict(EvalSpec, data)
    msg = str(info.value)
    assert "\n" not in msg and isinstance(info.value, RobustmixError)
    return msg


# --- shipped specs ----------------------------------------------------------------

def test_there_are_shipped_specs():
    assert SHIPPED, "evals/*.toml is empty"


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_spec_parses(path):
    spec = load_spec(path)
    assert spec.name == path.stem
    assert spec.models or spec.external
    assert (spec.attack_list and spec.eps_grid) or spec.corruptions is not None  # a corruptions-only spec
    for tm, grid in spec.eps_grid.items():
        assert grid == sorted(grid) and all(isinstance(e, float) for e in grid)
        for attack in spec.attack_list:
            if tm in spec.attack_threats(attack):
                assert set(spec.attack_eps(attack, tm)) <= set(grid)
    assert len(spec.spec_hash()) == 16


def test_spec_parsing_basics():
    spec = from_dict(EvalSpec, base(threat={"Linf": {"eps": ["8/255", 0, "2/255", 0.0]}, "L2": [0.5, 0]},
                                    attacks=[{"name": "pgd", "steps": 5, "label": "pgd5", "n": 4,
                                              "eps": ["8/255"], "threat_models": ["Linf"]},
                                             {"name": "fgsm"}]))
    assert spec.eps_grid == {"Linf": [0.0, 2 / 255, 8 / 255], "L2": [0.0, 0.5]}
    pgd = spec.attack_list[0]
    assert (pgd.name, pgd.label, pgd.params, pgd.n) == ("pgd", "pgd5", {"steps": 5}, 4)
    assert spec.attack_threats(pgd) == ["Linf"] and spec.attack_eps(pgd, "Linf") == [8 / 255]
    assert spec.attack_threats(spec.attack_list[1]) == ["Linf", "L2"]
    # The hash ignores the description only.
    a, b = from_dict(EvalSpec, base()), from_dict(EvalSpec, base(description="x"))
    assert a.spec_hash() == b.spec_hash() != from_dict(EvalSpec, base(seed=1)).spec_hash()


# --- bad specs: ConfigError naming the problem ------------------------------------------

@pytest.mark.parametrize("eps, match", [
    (-0.1, ">= 0"),
    ("-8/255", ">= 0"),
    ("abc", "cannot read eps 'abc'"),
    ("8/0", "divides by zero"),
    (1.5, "exceeds the \\[0, 1\\] pixel range"),
    ("300/255", "exceeds"),
])
def test_bad_eps(eps, match):
    spec_error(ConfigError, base(threat={"Linf": {"eps": [0, eps]}}), match)


def test_large_l2_eps_is_fine():
    assert from_dict(EvalSpec, base(threat={"L2": {"eps": [0, 3.0]}})).eps_grid == {"L2": [0.0, 3.0]}


def test_unknown_attack_and_argument():
    msg = spec_error(ConfigError, base(attacks=[{"name": "pgdd"}]), "unknown attack 'pgdd'")
    assert "fgsm" in msg
    spec_error(ConfigError, base(attacks=[{"name": "pgd", "stepz": 3}]), "unknown pgd argument 'stepz'")
    spec_error(ConfigError, base(attacks=[{"name": "pgd", "steps": "many"}]), "'steps' must be int")
    spec_error(ConfigError, base(attacks=[{"name": "torchattacks.NoSuch"}]), "unknown attack 'torchattacks.NoSuch'")
    spec_error(ConfigError, base(attacks=[{"name": "torchattacks.PGD", "bogus": 1}]),
               "unknown torchattacks.PGD argument 'bogus'")
    spec_error(ConfigError, base(attacks=[{"name": "autoattack", "version": "custom"}]), "attacks=")
    spec_error(ConfigError, base(attacks=[{"name": "fgsm"}, {"name": "fgsm"}]), "share the label 'fgsm'")
    spec_error(ConfigError, base(attacks=[{"name": "pgd", "eps": ["4/255"]}]), "not in threat.Linf.eps")
    spec_error(ConfigError, base(attacks=[{"name": "pgd", "n": 0}]), "positive integer")
    spec_error(ConfigError, base(attacks=[]), "add at least one")


def test_unknown_threat_model():
    spec_error(ConfigError, base(threat={"Linf2": {"eps": [0]}}), "threat.Linf2: unknown threat model")
    spec_error(ConfigError, base(attacks=[{"name": "fgsm", "threat_models": ["L2"]}]), "threat_models")


def test_unknown_keys_are_named():
    spec_error(ConfigError, base(attack=[{"name": "fgsm"}]), "unknown key 'attack'")
    spec_error(ConfigError, base(data={"n": 8, "batchsize": 8}), "unknown key 'data.batchsize'")
    spec_error(ConfigError, base(data={"n": 0}), "data.n: must be > 0")
    spec_error(ConfigError, base(models=[]), "models: list at least one")
    spec_error(ConfigError, base(external=[{"name": "e", "dataset": "fashion-mnist", "factory": "nocolon"}]),
               "external\\[0\\].factory")


@pytest.mark.parametrize("seed", [-1, 2**32, 99999999999999999999999])
def test_seed_must_fit(seed):
    spec_error(ConfigError, base(seed=seed), "seed: a seed must be an integer from 0 to 4294967295")


@pytest.mark.parametrize("seed", [-1, 2**32])
def test_attacks_use_the_same_seed_rule(seed):
    import torch
    from robustmix.attacks import make_attack, sweep

    atk, model = make_attack("fgsm", {}, "Linf"), _Net()
    x, y = torch.zeros(2, 1, 8, 8), torch.zeros(2, dtype=torch.int64)
    for call in (lambda: atk.run(model, x, y, 0.1, seed), lambda: sweep(atk, model, x, y, [0, 0.1], seed)):
        with pytest.raises(ConfigError, match="from 0 to 4294967295"):
            call()
    assert atk.run(model, x, y, 0.1, 2**32 - 1).x_adv.shape == x.shape


def test_transfer_without_source_names_the_spec_key():
    msg = spec_error(ConfigError, base(attacks=[{"name": "transfer"}]), 'add source = "MODEL"')
    assert "params[" not in msg


def test_load_spec_errors(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_spec(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("models = [\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_spec(bad)
    binary = tmp_path / "binary.toml"
    binary.write_bytes(bytes(range(256)) * 8)  # not UTF-8: tomllib fails before it parses
    with pytest.raises(ConfigError, match="not a UTF-8 text file"):
        load_spec(binary)


# --- bad inputs at run time, via run_eval and the CLI ------------------------------------------

def _write_spec(path: Path, root, models='["m"]', eps='[0, "8/255"]', attack='name = "fgsm"',
                store=None) -> Path:
    text = f"""
        models = {models}
        {f'store = "{store}"' if store else ''}
        [data]
        n = 8
        batch_size = 8
        root = "{root}"
        [threat.Linf]
        eps = {eps}
        [[attacks]]
        {attack}
    """
    path.write_text(textwrap.dedent(text))
    return path


@pytest.mark.parametrize("kw, match", [
    ({"eps": '[0, "abc"]'}, "cannot read eps 'abc'"),
    ({"eps": "[0, -0.1]"}, ">= 0"),
    ({"eps": "[0, 2]"}, "exceeds"),
    ({"attack": 'name = "nope"'}, "unknown attack 'nope'"),
    ({"attack": 'name = "pgd"\n        stepz = 2'}, "unknown pgd argument 'stepz'"),
    ({"models": '["nothing/*"]'}, "matches no model"),
])
def test_cli_eval_bad_inputs_exit_2(tmp_path, capsys, kw, match):
    path = _write_spec(tmp_path / "s.toml", tmp_path / "data", store=tmp_path / "emptyzoo", **kw)
    assert cli.main(["eval", str(path), "--results", str(tmp_path / "r"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("robustmix: error: ") and match.replace("\\", "") in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "r").exists()  # a failed eval leaves no skeleton store behind


@pytest.mark.parametrize("flags, match", [
    (["--n", "-1"], "data.n: must be > 0, got -1"),
    (["--n", "0"], "data.n: must be > 0, got 0"),
    (["--seed", "99999999999999999999999"], "seed: a seed must be an integer from 0 to 4294967295"),
    (["--seed", "-1"], "seed: a seed must be an integer from 0 to 4294967295, got -1"),
])
def test_cli_eval_bad_n_and_seed_exit_2(tmp_path, capsys, flags, match):
    path = _write_spec(tmp_path / "s.toml", tmp_path / "data", store=tmp_path / "emptyzoo")
    assert cli.main(["eval", str(path), "--results", str(tmp_path / "r"), "--quiet", *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith("robustmix: error: ") and match in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "r").exists()


def test_n_beyond_the_split_is_an_error_not_clamped(fake_fmnist, tmp_path):
    spec = from_dict(EvalSpec, base(data={"n": 65, "batch_size": 8, "root": str(fake_fmnist)}))
    with pytest.raises(ConfigError, match="data.n = 65 but fashion-mnist test has 64 examples; use n <= 64") as info:
        run_eval(spec, tmp_path / "r", models={"m": _Net()}, device="cpu", progress=False, log=lambda *a: None)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "r").exists()
    # `--n` replaces data.n after the spec was checked: run_eval checks it again.
    spec = from_dict(EvalSpec, base(data={"n": 16, "batch_size": 8, "root": str(fake_fmnist)}))
    spec.data.n = 0
    with pytest.raises(ConfigError, match="data.n: must be > 0, got 0"):
        run_eval(spec, tmp_path / "r", models={"m": _Net()}, device="cpu", progress=False, log=lambda *a: None)
    assert not (tmp_path / "r").exists()


def test_failed_eval_leaves_no_store_and_an_existing_one_alone(fake_fmnist, tmp_path):
    """Every check that can fail runs before the result store is created."""
    data = {"n": 8, "batch_size": 8, "root": str(fake_fmnist)}
    bad = [base(data={**data, "split": "val"}),
           base(attacks=[{"name": "transfer", "source": "nope"}], data=data),
           base(models=["m", "zoo/*"], store=str(tmp_path / "emptyzoo"), data=data)]
    for d in bad:
        with pytest.raises(RobustmixError):
            run_eval(from_dict(EvalSpec, d), tmp_path / "r", models={"m": _Net()}, device="cpu", progress=False,
                     log=lambda *a: None)
        assert not (tmp_path / "r").exists(), d
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "keep.txt").write_text("mine")
    with pytest.raises(RobustmixError):
        run_eval(from_dict(EvalSpec, bad[0]), existing, models={"m": _Net()}, device="cpu", progress=False,
                 log=lambda *a: None)
    assert [p.name for p in existing.iterdir()] == ["keep.txt"]


def test_no_model_matches_pattern(tmp_path):
    spec = from_dict(EvalSpec, base(models=["nothing/*"], store=str(tmp_path / "zoo")))
    with pytest.raises(ConfigError, match="'nothing/\\*' matches no model") as info:
        run_eval(spec, tmp_path / "r", device="cpu", progress=False, log=lambda *a: None)
    assert "\n" not in str(info.value)


class _Net(nn.Module):
    def __init__(self, in_chans=1, classes=10):
        super().__init__()
        self.conv = nn.Conv2d(in_chans, 4, 3, padding=1)
        self.fc = nn.Linear(4, classes)

    def forward(self, x):
        return self.fc(self.conv(x).mean((2, 3)))


@pytest.mark.parametrize("model, match", [
    (_Net(in_chans=3), "cannot take fashion-mnist \\(1x28x28, 10 classes\\) inputs"),
    (_Net(classes=5), "outputs \\(5,\\) scores but fashion-mnist has 10 classes"),
])
def test_data_that_does_not_fit_the_model(real_fmnist, tmp_path, model, match):
    spec = from_dict(EvalSpec, base(data={"n": 8, "batch_size": 8, "root": str(real_fmnist)}))
    model.train()
    with pytest.raises(DataError, match=match) as info:
        run_eval(spec, tmp_path / "r", models={"m": model}, device="cpu", progress=False, log=lambda *a: None)
    assert "\n" not in str(info.value)
    assert model.training  # the fit check leaves the caller's mode alone
    assert not (tmp_path / "r").exists()


def test_unknown_data_set(tmp_path):
    spec = from_dict(EvalSpec, base(data={"name": "fashion-mnistt", "n": 8}))
    with pytest.raises(DataError, match="unknown data set 'fashion-mnistt'"):
        run_eval(spec, tmp_path / "r", models={"m": _Net()}, device="cpu", progress=False, log=lambda *a: None)
    assert not (tmp_path / "r").exists()


def test_missing_data_files(tmp_path, monkeypatch):
    monkeypatch.setenv("ROBUSTMIX_FASHION_MNIST_SRC", str(tmp_path / "nowhere"))
    spec = load_spec(_write_spec(tmp_path / "s.toml", tmp_path / "nodata"))
    with pytest.raises(DataError, match="fashion-mnist not found") as info:
        run_eval(spec, tmp_path / "r", models={"m": _Net()}, device="cpu", progress=False, log=lambda *a: None)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "r").exists()
