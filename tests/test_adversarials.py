"""Saved adversarial examples: the changes-only file format, `robustmix verify` and `export --adversarials`.

Stores are written by the real eval (a seeded CNN from tests/fixtures_models.py as an
[[external]] factory, on the synthetic Fashion-MNIST of conftest.py) through the CLI.
"""
from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from robustmix import data as datasets
from robustmix.advfile import (adversarials_path, encode_changes, read_adversarials, saved_units,
                               write_adversarials)
from robustmix.cli import main
from robustmix.config import from_dict
from robustmix.errors import StoreError
from robustmix.evaluate import run_eval
from robustmix.schema import WORST_CASE
from robustmix.spec import EvalSpec

sys.path.insert(0, str(Path(__file__).parent))  # fixtures_models, also as the specs' factory module
from fixtures_models import Brightness, Coin, tiny_cnn  # noqa: E402

pytestmark = pytest.mark.usefixtures("single_thread")


# --- the file format ------------------------------------------------------------

def test_changes_only_storage_round_trips_exactly(tmp_path):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 1, 5, 5, generator=g)
    index = torch.tensor([40, 3, 17, 8, 22, 5])
    a1 = x.clone()
    a1[[1, 4]] = torch.rand(2, 1, 5, 5, generator=g)       # two examples change at eps 1
    a2 = a1.clone()
    a2[[2]] = torch.rand(1, 1, 5, 5, generator=g)           # one more at eps 2; 1 and 4 keep theirs
    a3 = a2.clone()
    a3[1, 0, 0, 0] = torch.nextafter(a3[1, 0, 0, 0], torch.tensor(2.0))  # a one-ulp change counts
    eps = [0.0, 0.01, 0.02, 0.03]
    path = write_adversarials(tmp_path, "u1", model="m", attack="pgd", threat_model="Linf", eps=eps,
                              fingerprint="f" * 64, index=index, label=torch.arange(6), x=x, x_adv=[x, a1, a2, a3])
    saved = read_adversarials(path)
    assert [len(i) for i, _ in saved.changes] == [0, 2, 1, 1] and saved.stored_examples == 4
    assert saved.changes[1][0].tolist() == [3, 22]          # dataset indices, not positions
    for got, want in zip(saved.expand(x), [x, a1, a2, a3]):
        assert torch.equal(got, want)                       # bit for bit
    assert saved.eps == eps and saved.model == "m" and torch.equal(saved.label, torch.arange(6))
    assert saved_units(tmp_path) == ["u1"]
    assert not list(path.parent.glob(".*.tmp"))            # the atomic write left no temporary file


def test_encode_changes_compares_with_the_previous_eps():
    x = torch.zeros(3, 1, 2, 2)
    a = x.clone()
    a[0] = 1
    enc = encode_changes(x, [a, a.clone(), x], torch.tensor([7, 8, 9]))
    assert enc["eps0.index"].tolist() == [7]
    assert enc["eps1.index"].tolist() == []                 # nothing new at eps 1
    assert enc["eps2.index"].tolist() == [7]                # back to clean is a change too


def test_a_flipped_byte_is_a_one_line_checksum_error(tmp_path):
    x = torch.rand(4, 1, 3, 3)
    path = write_adversarials(tmp_path, "u2", model="m", attack="fgsm", threat_model="Linf", eps=[0.1],
                              fingerprint="f", index=torch.arange(4), label=torch.zeros(4, dtype=torch.long),
                              x=x, x_adv=[torch.rand(4, 1, 3, 3)])
    raw = bytearray(path.read_bytes())
    raw[-5] ^= 0x40                                          # a pixel of the last tensor
    path.write_bytes(bytes(raw))
    with pytest.raises(StoreError, match="checksum mismatch") as err:
        read_adversarials(path)
    assert "\n" not in str(err.value)
    path.write_bytes(b"not a safetensors file")
    with pytest.raises(StoreError, match="unreadable"):
        read_adversarials(path)


# --- eval -> verify -------------------------------------------------------------

def write_spec(tmp_path, data_root, save=True, n=48, extra=""):
    path = tmp_path / "adv.toml"
    path.write_text(textwrap.dedent(f"""
        seed = 3
        save_adversarials = {str(save).lower()}
        [data]
        n = {n}
        batch_size = 32
        root = "{data_root}"
        [threat.Linf]
        eps = [0, "4/255", "16/255"]
        [[attacks]]
        name = "fgsm"
        [[attacks]]
        name = "pgd"
        steps = 4
        random_start = true
        [[external]]
        name = "cnn"
        factory = "fixtures_models:tiny_cnn"
        dataset = "fashion-mnist"
    """) + extra)
    return path


@pytest.fixture
def saved_store(tmp_path, fake_fmnist):
    res = tmp_path / "res"
    assert main(["eval", str(write_spec(tmp_path, fake_fmnist)), "--results", str(res), "--quiet",
                 "--device", "cpu"]) == 0
    return res


def run_verify(res, capsys) -> tuple[int, list[str]]:
    capsys.readouterr()
    code = main(["verify", str(res), "--device", "cpu"])
    cap = capsys.readouterr()
    return code, (cap.out + cap.err).strip().splitlines()


def test_save_then_verify_passes(saved_store, capsys):
    keys = saved_units(saved_store)
    assert len(keys) == 4                                    # 2 attacks x 2 chunks (48 = 32 + 16)
    units = {p.stem for p in (saved_store / "examples").glob("*.parquet")}
    assert set(keys) == units
    code, lines = run_verify(saved_store, capsys)
    assert code == 0 and len(lines) == 1 and lines[0].startswith("verified: 4 adversarial files")
    assert "288 decisions checked" in lines[0]               # 2 attacks x 3 eps x 48 examples


def test_saving_leaves_the_spec_hash_and_results_unchanged(tmp_path, fake_fmnist, saved_store):
    plain = tmp_path / "plain"
    assert main(["eval", str(write_spec(tmp_path, fake_fmnist, save=False)), "--results", str(plain), "--quiet",
                 "--device", "cpu"]) == 0
    a, b = pd.read_csv(saved_store / "summary.csv"), pd.read_csv(plain / "summary.csv")
    cols = ["model", "attack", "eps", "n", "n_robust", "spec_hash"]
    pd.testing.assert_frame_equal(a[cols], b[cols])
    assert not (plain / "adversarials").exists()


def test_resume_with_saving_turned_on_writes_the_missing_files(tmp_path, fake_fmnist):
    res = tmp_path / "res"
    assert main(["eval", str(write_spec(tmp_path, fake_fmnist, save=False)), "--results", str(res), "--quiet",
                 "--device", "cpu"]) == 0
    before = pd.read_csv(res / "summary.csv")
    assert main(["eval", str(write_spec(tmp_path, fake_fmnist, save=True)), "--results", str(res), "--quiet",
                 "--device", "cpu"]) == 0
    assert len(saved_units(res)) == 4
    cols = ["attack", "eps", "n_robust"]
    pd.testing.assert_frame_equal(before[cols], pd.read_csv(res / "summary.csv")[cols])


def broken_example(res):
    """(file, position) of an example stored as broken at the file's largest eps."""
    for key in saved_units(res):
        saved = read_adversarials(adversarials_path(res, key))
        rows = pd.read_parquet(res / "examples" / f"{key}.parquet")
        last = rows[rows["eps"] == rows["eps"].max()].set_index("index")
        for p, i in enumerate(saved.index.tolist()):
            if last.loc[i, "clean_correct"] and not last.loc[i, "correct"]:
                return saved, p
    raise AssertionError("no broken example in the store")


def test_tampered_adversarial_fails_verify(saved_store, capsys, fake_fmnist):
    saved, p = broken_example(saved_store)
    ds = datasets.load_dataset("fashion-mnist", "test", root=fake_fmnist)
    x, _ = datasets.batch(ds, saved.index)
    advs = saved.expand(x)
    advs[-1] = advs[-1].clone()
    advs[-1][p] = x[p]                                      # the "adversarial" is the clean image again
    write_adversarials(saved_store, saved.unit, model=saved.model, attack=saved.attack,
                       threat_model=saved.threat_model, eps=saved.eps, fingerprint=saved.fingerprint,
                       index=saved.index, label=saved.label, x=x, x_adv=advs)  # a valid checksum
    code, lines = run_verify(saved_store, capsys)
    assert code == 1
    assert lines[-1].startswith("verify FAILED: 1 mismatch(es)")
    assert f"example {int(saved.index[p])} is stored broken but re-scores robust" in lines[-1]


def test_byte_flip_and_missing_file_fail_verify_until_eval_rewrites_them(saved_store, capsys, tmp_path, fake_fmnist):
    keys = saved_units(saved_store)
    path = adversarials_path(saved_store, keys[0])
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 0x01
    path.write_bytes(bytes(raw))
    adversarials_path(saved_store, keys[1]).unlink()
    code, lines = run_verify(saved_store, capsys)
    assert code == 1 and "verify FAILED: 2 mismatch(es)" in lines[-1] and "checksum mismatch" in lines[-1]
    assert any("is missing" in line for line in lines)
    assert main(["eval", str(write_spec(tmp_path, fake_fmnist)), "--results", str(saved_store), "--quiet",
                 "--device", "cpu"]) == 0                    # the same command rewrites both
    assert run_verify(saved_store, capsys)[0] == 0


def test_an_out_of_ball_adversarial_fails_verify(saved_store, capsys, fake_fmnist):
    saved, p = broken_example(saved_store)
    ds = datasets.load_dataset("fashion-mnist", "test", root=fake_fmnist)
    x, _ = datasets.batch(ds, saved.index)
    advs = saved.expand(x)
    advs[1] = advs[1].clone()
    advs[1][p] = (x[p] + 0.5).clamp(0, 1)                   # far outside eps 4/255
    write_adversarials(saved_store, saved.unit, model=saved.model, attack=saved.attack,
                       threat_model=saved.threat_model, eps=saved.eps, fingerprint=saved.fingerprint,
                       index=saved.index, label=saved.label, x=x, x_adv=advs)
    code, lines = run_verify(saved_store, capsys)
    assert code == 1 and any("outside the eps-ball" in line for line in lines)


def test_verify_without_saved_adversarials_is_a_one_line_error(tmp_path, fake_fmnist, capsys):
    res = tmp_path / "plain"
    assert main(["eval", str(write_spec(tmp_path, fake_fmnist, save=False, n=16)), "--results", str(res),
                 "--quiet", "--device", "cpu"]) == 0
    capsys.readouterr()
    assert main(["verify", str(res)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no saved adversarial examples" in err[0] and "save_adversarials = true" in err[0]


# --- export ---------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_export_worst_case_adversarials(saved_store, tmp_path, fake_fmnist, capsys, suffix):
    out = tmp_path / f"adv{suffix}"
    assert main(["export", str(saved_store), "--adversarials", str(out), "--model", "cnn", "--eps", "16/255"]) == 0
    got = torch.load(out) if suffix == ".pt" else load_file(str(out))
    x_adv, y, index, robust = got["adv_complete"], got["y"], got["index"], got["robust"]
    summary = pd.read_csv(saved_store / "summary.csv")
    row = summary[(summary["attack"] == WORST_CASE) & (summary["eps_label"] == "16/255")].iloc[0]
    assert len(index) == row["n"] == 48 and int(robust.sum()) == row["n_robust"]
    # An outside evaluation's scoring (RobustBench's clean_accuracy: argmax over the logits) agrees.
    model = tiny_cnn().eval()
    with torch.no_grad():
        assert torch.equal(model(x_adv).argmax(1) == y, robust)
    ds = datasets.load_dataset("fashion-mnist", "test", root=fake_fmnist)
    x, labels = datasets.batch(ds, index)
    assert torch.equal(labels, y)
    assert float((x_adv - x).abs().amax()) <= 16 / 255 + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1


def test_export_names_what_is_missing(saved_store, tmp_path, capsys):
    assert main(["export", str(saved_store), "--adversarials", str(tmp_path / "a.pt"), "--model", "nope",
                 "--eps", "16/255"]) == 2
    assert "no saved adversarials for it" in capsys.readouterr().err
    assert main(["export", str(saved_store), "--adversarials", str(tmp_path / "a.npz"), "--model", "cnn",
                 "--eps", "16/255"]) == 2
    assert ".safetensors" in capsys.readouterr().err
    assert not (tmp_path / "a.pt").exists()


# --- randomised models: vote passes counted, votes re-drawn by verify ------------

def test_vote_passes_are_counted_and_verify_redraws_the_votes(tmp_path, fake_fmnist):
    spec = from_dict(EvalSpec, {"name": "t", "models": ["coin"], "seed": 1, "randomized_votes": 5,
                                "save_adversarials": True,
                                "data": {"n": 24, "batch_size": 24, "root": str(fake_fmnist)},
                                "threat": {"Linf": {"eps": [0, "8/255"]}}, "attacks": [{"name": "fgsm"}]})
    coin = Coin(Brightness(), 8.0)
    res = tmp_path / "r"
    summary = run_eval(spec, res, models={"coin": coin}, device="cpu", progress=False, log=lambda *a, **k: None)
    fgsm = summary[summary["attack"] == "fgsm"].set_index("eps")
    ex = pd.read_parquet(next((res / "examples").glob("*.parquet")))
    assert ex.loc[ex["eps"] == 0, "correct"].sum() > 0 and ex["votes"].between(1, 4).any()  # some votes split
    assert fgsm.loc[0.0, "fwd_bwd_passes"] == 5 * 24                 # the votes on the clean inputs
    # FGSM: one gradient pass per example the attack saw (the clean-correct ones of a single pass),
    # then 5 votes on each of the 24 final inputs.
    assert 5 * 24 < fgsm.loc[8 / 255, "fwd_bwd_passes"] <= 24 + 5 * 24
    from robustmix.adversarials import verify_store

    ok = verify_store(res, models={"coin": coin}, device="cpu")
    assert ok.ok and ok.decisions == 48, ok.line()
    louder = verify_store(res, models={"coin": Coin(Brightness(), 30.0)}, device="cpu")
    assert not louder.ok                                             # other noise, other votes
