"""The Python API (robustmix.evaluate / report / verify) against the CLI path, its data adapters,
its one-line errors, the lazy package attributes, and the example script a notebook user would write."""
from __future__ import annotations

import os
import runpy
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader

import robustmix
from robustmix import data as datasets
from robustmix.cli import main
from robustmix.errors import ConfigError, DataError

sys.path.insert(0, str(Path(__file__).parent))  # fixtures_models, also as the spec's factory module
from fixtures_models import Brightness  # noqa: E402

pytestmark = pytest.mark.usefixtures("single_thread")

ROOT = Path(__file__).resolve().parent.parent
EPS = [0, "4/255", "16/255"]
ATTACKS = ["fgsm", {"name": "pgd", "steps": 3, "random_start": True}]
KEY = ["model", "attack", "threat_model", "eps", "index"]


def cli_examples(tmp_path, data_root) -> pd.DataFrame:
    spec = tmp_path / "cli.toml"
    spec.write_text(textwrap.dedent(f"""
        seed = 5
        [data]
        n = 40
        batch_size = 32
        root = "{data_root}"
        [threat.Linf]
        eps = [0, "4/255", "16/255"]
        [[attacks]]
        name = "fgsm"
        [[attacks]]
        name = "pgd"
        steps = 3
        random_start = true
        [[external]]
        name = "bright"
        factory = "fixtures_models:Brightness"
        dataset = "fashion-mnist"
    """))
    res = tmp_path / "cli"
    assert main(["eval", str(spec), "--results", str(res), "--quiet", "--device", "cpu"]) == 0
    return pd.concat([pd.read_parquet(p) for p in (res / "examples").glob("*.parquet")])


def tidy(df: pd.DataFrame) -> pd.DataFrame:
    return df.sort_values(KEY)[KEY + ["correct", "clean_correct", "margin", "passes"]].reset_index(drop=True)


@pytest.fixture(scope="module")
def test_split(fake_fmnist):
    return datasets.load_dataset("fashion-mnist", "test", root=fake_fmnist)


def api(data, tmp_path, **kw):
    return robustmix.evaluate({"bright": Brightness()}, data, eps=EPS, attacks=ATTACKS, n=40, seed=5,
                              batch_size=32, results=tmp_path / f"api-{len(list(tmp_path.iterdir()))}", **kw)


def test_api_on_tensors_dataset_and_loader_equals_the_cli(tmp_path, fake_fmnist, test_split):
    want = tidy(cli_examples(tmp_path, fake_fmnist))
    assert 0 < want.loc[want["eps"] > 0, "correct"].mean() < want["clean_correct"].mean()  # attacks bite
    x, y = datasets.batch(test_split, range(len(test_split)))
    runs = {"tensors": api((x, y), tmp_path),
            "dataset": api(test_split, tmp_path),
            "loader": api(DataLoader(test_split, batch_size=10, shuffle=True), tmp_path)}
    for kind, ev in runs.items():
        pd.testing.assert_frame_equal(tidy(ev.examples), want, obj=kind)
    assert len({ev.data_sha256 for ev in runs.values()}) == 1
    ev = runs["tensors"]
    assert ev.summary["dataset"].iloc[0] == f"tensors@{ev.data_sha256[:16]}"
    assert set(ev.summary["attack"]) == {"fgsm", "pgd", "worst-case"} and (ev.summary["n"] == 40).all()
    # Other examples are other data: a different identity, so no unit is shared.
    other = api((x.flip(0), y.flip(0)), tmp_path)
    assert other.data_sha256 != ev.data_sha256


def test_report_and_verify_from_python(tmp_path, test_split):
    x, y = datasets.batch(test_split, range(len(test_split)))
    ev = api((x, y), tmp_path, save_adversarials=True)
    index = robustmix.report(ev.summary, out=tmp_path / "rep")
    assert index.name == "index.html" and "bright" in index.read_text()
    assert ev.verify().ok
    assert robustmix.verify(ev.results, models={"bright": Brightness()}, data=(x, y)).ok
    # A different model: its weights identity and its decisions disagree with the store.
    bad = robustmix.verify(ev.results, models={"bright": Brightness(shift=4.0)}, data=(x, y))
    assert not bad.ok and "verify FAILED" in bad.line() and "\n" not in bad.line()
    assert "weights differ from those evaluated" in bad.line()
    assert any("re-scores" in m for m in bad.messages)
    with pytest.raises(DataError, match="not the data this store was evaluated on"):
        robustmix.verify(ev.results, models={"bright": Brightness()}, data=(x.flip(0), y.flip(0)))
    with pytest.raises(ConfigError, match="handed in from Python"):
        robustmix.verify(ev.results)
    with pytest.raises(ConfigError, match="does not come from robustmix.evaluate"):
        robustmix.report(pd.DataFrame({"a": [1]}), out=tmp_path / "r2")


def test_bad_inputs_are_one_line_errors(test_split):
    x, y = datasets.batch(test_split, range(16))
    m = Brightness()
    cases = [
        (DataError, "data must be an \\(x, y\\) pair of tensors, a torch Dataset or a DataLoader",
         dict(data="images/")),
        (DataError, "x has 16 images, y has shape \\(15,\\)", dict(data=(x, y[:-1]))),
        (DataError, "N x C x H x W", dict(data=(x[:, 0], y))),
        (DataError, "integer class labels", dict(data=(x, y.float()))),
        (DataError, "not \\[0, 1\\]", dict(data=(x * 2, y))),
        (DataError, "labels span", dict(data=(x, y + 10))),
        (ConfigError, "unknown attack 'nope'", dict(data=(x, y), attacks=["nope"])),
        (ConfigError, "data.n = 99 but", dict(data=(x, y), n=99)),
        (ConfigError, "threat_model: unknown 'L3'", dict(data=(x, y), threat_model="L3")),
        (ConfigError, "model must be an nn.Module", dict(data=(x, y), model=42)),
    ]
    for exc, pattern, kw in cases:
        kw = {"model": m, "eps": [0], "attacks": ["fgsm"], **kw}
        with pytest.raises(exc, match=pattern) as err:
            robustmix.evaluate(kw.pop("model"), kw.pop("data"), **kw)
        assert "\n" not in str(err.value), pattern


def test_import_is_lazy_and_api_names_survive_submodule_imports():
    code = ("import sys, time; t = time.perf_counter(); import robustmix; dt = time.perf_counter() - t; "
            "assert 'torch' not in sys.modules, 'torch imported'; print(f'{dt:.3f}')")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    assert float(out.stdout) < 0.2                           # torch alone takes over a second
    # Here robustmix.evaluate and robustmix.report (the modules) are imported already, by the CLI.
    assert "robustmix.evaluate" in sys.modules and "robustmix.report" in sys.modules
    assert robustmix.evaluate.__module__ == "robustmix.api" and robustmix.report.__module__ == "robustmix.api"


def test_example_script_runs(tmp_path, fake_fmnist, monkeypatch, capsys):
    monkeypatch.setenv("ROBUSTMIX_DATA", str(fake_fmnist))
    monkeypatch.setenv("ROBUSTMIX_ZOO", str(tmp_path / "no-zoo"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the example's result store goes to a temp dir
    monkeypatch.setattr(sys, "argv", ["python_api_example.py", "--n", "16", "--out", str(tmp_path / "report")])
    runpy.run_path(str(ROOT / "evals" / "python_api_example.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "verified: 2 adversarial files" in out and "every stored result reproduces" in out
    assert (tmp_path / "report" / "index.html").is_file()
