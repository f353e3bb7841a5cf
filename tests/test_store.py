"""The checkpoint store: round trips, the zoo CLI, and every way a checkpoint can be bad."""
from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import robustmix
from robustmix import cli
from robustmix.errors import CheckpointError, ConfigError, RobustmixError
from robustmix.recipe import DataSection, ModelSection, Recipe
from robustmix.store import META, WEIGHTS, ModelStore, load_checkpoint, sha256_file
from robustmix.train import train_recipe

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, fake_fmnist):
    """A store holding two real 1-epoch checkpoints: tiny/full-s0 and tiny/smooth-sigma2-s0."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("store")
    recipe = Recipe(name="tiny", data=DataSection(root=str(fake_fmnist)),
                    model=ModelSection(name="convmixer_16_2_ks3_p4"), variants=["full", "smooth:sigma=2"],
                    epochs=1, batch_size=64, eval_batch_size=256, device="cpu")
    try:
        results = train_recipe(recipe, ModelStore(root), progress=False)
    finally:
        torch.set_num_threads(threads)
    assert [r.status for r in results] == ["trained", "trained"]
    return root


@pytest.fixture
def store(trained, tmp_path) -> ModelStore:
    """A private copy of the trained store, free to tamper with."""
    shutil.copytree(trained, tmp_path / "zoo")
    return ModelStore(tmp_path / "zoo")


def test_save_load_round_trip_equal_outputs(tmp_path):
    torch.manual_seed(0)
    model = robustmix.build_variant("sepresnet_tiny", "correlated", num_classes=5, in_chans=1,
                                    mean=[0.3], std=[0.2], variant_seed=4, variant_params={"rho": 0.7})
    # Move BN statistics off their defaults so buffers are part of the check.
    model.train()(torch.rand(8, 1, 12, 12))
    model.eval()
    meta = {"model": {"name": "sepresnet_tiny", "args": model.model_args}, "variant": "correlated",
            "variant_params": model.variant_params, "variant_seed": 4, "note": "hello"}
    st = ModelStore(tmp_path / "zoo")
    written = st.save("r/correlated-rho0.7-s4", model, meta)
    assert written["weights_sha256"] == sha256_file(st.path("r/correlated-rho0.7-s4") / WEIGHTS)
    assert st.exists("r/correlated-rho0.7-s4") and st.names() == ["r/correlated-rho0.7-s4"]

    loaded, meta2 = st.load("r/correlated-rho0.7-s4")
    assert meta2["note"] == "hello" and meta2["format"] == "robustmix-checkpoint"
    assert not loaded.training and loaded.variant == "correlated" and loaded.variant_params == {"rho": 0.7}
    want, got = model.state_dict(), loaded.state_dict()
    assert list(got) == list(want)  # no tensor missing or extra, buffers included
    for k, v in want.items():
        assert torch.equal(v, got[k]), k
    x = torch.rand(4, 1, 12, 12)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert robustmix.audit_frozen(loaded) == []
    assert {n for n, p in loaded.named_parameters() if not p.requires_grad} == \
        {n for n, p in model.named_parameters() if not p.requires_grad}


def test_trained_checkpoint_meta_and_audit(store):
    model, meta = store.load("tiny/smooth-sigma2-s0")
    assert meta["variant"] == "smooth" and meta["variant_params"] == {"sigma": 2.0}
    assert meta["dataset"]["name"] == "fashion-mnist" and meta["model"]["name"] == "convmixer_16_2_ks3_p4"
    assert 0.0 <= meta["metrics"]["clean_acc"] <= 1.0 and len(meta["metrics"]["history"]) == 1
    assert meta["trainable_params"] < meta["params"]
    assert robustmix.audit_frozen(model) == []
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)


def test_zoo_list_show_remove(store, capsys):
    assert cli.main(["zoo", "--store", str(store.root), "list"]) == 0
    out = capsys.readouterr().out
    assert "tiny/full-s0" in out and "tiny/smooth-sigma2-s0" in out and "convmixer_16_2_ks3_p4" in out

    assert cli.main(["zoo", "--store", str(store.root), "list", "--json", "tiny/smooth*"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["model"] for r in rows] == ["tiny/smooth-sigma2-s0"]
    assert rows[0]["variant_params"] == {"sigma": 2.0}

    assert cli.main(["zoo", "--store", str(store.root), "show", "tiny/full-s0"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["name"] == "tiny/full-s0" and shown["variant"] == "full"

    assert cli.main(["zoo", "--store", str(store.root), "remove", "tiny/full-s0"]) == 0
    assert "removed tiny/full-s0" in capsys.readouterr().out
    assert store.names() == ["tiny/smooth-sigma2-s0"]
    assert not store.path("tiny/full-s0").exists()

    # Removing or showing something absent is a one-line user error, exit 2.
    for cmd in (["remove", "tiny/full-s0"], ["show", "tiny/full-s0"]):
        assert cli.main(["zoo", "--store", str(store.root), *cmd]) == 2
        err = capsys.readouterr().err
        assert err.startswith("robustmix: error:") and "tiny/full-s0" in err and err.count("\n") == 1

    # An empty store says so (a missing one is an error in cli.cmd_zoo).
    (store.root / "empty").mkdir()
    assert cli.main(["zoo", "--store", str(store.root / "empty"), "list"]) == 0
    assert "no models" in capsys.readouterr().out


def _assert_checkpoint_error(store, name, capsys, *fragments):
    with pytest.raises(CheckpointError) as exc:
        store.load(name)
    msg = str(exc.value)
    assert "\n" not in msg
    for f in fragments:
        assert f in msg, msg
    assert cli.main(["zoo", "--store", str(store.root), "show", name]) == 2
    err = capsys.readouterr().err
    assert err.startswith("robustmix: error:") and err.count("\n") == 1


def test_corrupt_meta_json(store, capsys):
    (store.path("tiny/full-s0") / META).write_text('{"format": "robustmix-checkp')
    _assert_checkpoint_error(store, "tiny/full-s0", capsys, "corrupt")
    assert cli.main(["zoo", "--store", str(store.root), "list"]) == 2  # names the broken file
    assert "meta.json" in capsys.readouterr().err


@pytest.mark.parametrize("foreign", [{"hello": 1}, [1, 2, 3], {"format": "someone-else", "format_version": 1}])
def test_foreign_meta_json(store, capsys, foreign):
    (store.path("tiny/full-s0") / META).write_text(json.dumps(foreign))
    _assert_checkpoint_error(store, "tiny/full-s0", capsys, "not a robustmix checkpoint")


def test_newer_format_version(store, capsys):
    path = store.path("tiny/full-s0") / META
    meta = json.loads(path.read_text())
    path.write_text(json.dumps({**meta, "format_version": 99}))
    _assert_checkpoint_error(store, "tiny/full-s0", capsys, "format 99")


def test_weights_sha_mismatch(store, capsys):
    weights = store.path("tiny/full-s0") / WEIGHTS
    blob = bytearray(weights.read_bytes())
    blob[-10] ^= 0x01  # flip one bit inside the tensor data
    weights.write_bytes(bytes(blob))
    _assert_checkpoint_error(store, "tiny/full-s0", capsys, "sha256")


def test_missing_weights(store, capsys):
    (store.path("tiny/full-s0") / WEIGHTS).unlink()
    _assert_checkpoint_error(store, "tiny/full-s0", capsys, WEIGHTS)


def test_meta_and_weights_of_different_models(store, capsys):
    """Weights of one architecture under the meta of another (with a matching hash)."""
    full, smooth = store.path("tiny/full-s0"), store.path("tiny/smooth-sigma2-s0")
    meta = json.loads((full / META).read_text())
    meta["model"]["args"]["dim"] = 32
    (full / META).write_text(json.dumps(meta))
    _assert_checkpoint_error(store, "tiny/full-s0", capsys, "do not describe one model")
    assert load_checkpoint(smooth)[1]["variant"] == "smooth"  # the neighbour is untouched


class _Payload:
    """Unpickling this creates MARKER: proof that a loader executed code."""

    marker = ""

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def _pickle_bomb(path: Path, marker: Path) -> Path:
    _Payload.marker = str(marker)
    path.write_bytes(pickle.dumps({"state_dict": _Payload()}))
    # Sanity: the payload really fires when unpickled (in a throwaway location).
    probe = marker.with_name("probe")
    _Payload.marker = str(probe)
    pickle.loads(pickle.dumps(_Payload()))
    assert probe.exists()
    probe.unlink()
    return path


def test_pickle_payload_is_never_loaded(store, tmp_path, capsys):
    marker = tmp_path / "PWNED"
    bomb = _pickle_bomb(tmp_path / "model.pt", marker)

    # 1) offered as a file path
    with pytest.raises(CheckpointError, match="never loads pickled"):
        load_checkpoint(bomb)
    with pytest.raises(CheckpointError):
        load_checkpoint(str(bomb))

    # 2) offered as weights.safetensors inside a checkpoint dir, with a matching sha256
    folder = store.path("tiny/full-s0")
    shutil.copyfile(bomb, folder / WEIGHTS)
    meta = json.loads((folder / META).read_text())
    meta["weights_sha256"] = sha256_file(folder / WEIGHTS)
    (folder / META).write_text(json.dumps(meta))
    _assert_checkpoint_error(store, "tiny/full-s0", capsys, "safetensors")
    with pytest.raises(CheckpointError):
        load_checkpoint(folder)
    assert not marker.exists()


def test_unwritable_store(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    st = ModelStore(blocker / "zoo")
    with pytest.raises(CheckpointError, match="not writable") as exc:
        st.check_writable()
    assert "\n" not in str(exc.value)
    with pytest.raises(CheckpointError, match="cannot write"):
        st.save("r/full-s0", robustmix.create_model("convmixer_16_2_ks3_p4"), {})
    assert st.names() == []


def test_bad_names_and_missing_models(store, tmp_path):
    for bad in ("", "../escape", "/abs/path", ".partial/x", "a/../../b"):
        with pytest.raises(ConfigError):
            store.path(bad)
    with pytest.raises(CheckpointError, match="no model"):
        store.meta("tiny/nothing-s0")
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "does-not-exist")
    assert issubclass(CheckpointError, RobustmixError)


def test_partial_states_are_not_listed(store):
    partial = store.partial_path("tiny/chans-s0")
    partial.mkdir(parents=True)
    shutil.copyfile(store.path("tiny/full-s0") / META, partial / META)
    assert store.names() == ["tiny/full-s0", "tiny/smooth-sigma2-s0"]
    assert store.names("*smooth*") == ["tiny/smooth-sigma2-s0"]


def test_weights_file_is_plain_safetensors(store):
    state = load_file(str(store.path("tiny/full-s0") / WEIGHTS))
    assert all(isinstance(v, torch.Tensor) for v in state.values()) and "head.2.weight" in state
    assert os.path.getsize(store.path("tiny/full-s0") / WEIGHTS) > 0


def test_missing_weights_sha256_is_named_as_missing(store, capsys):
    # It used to be reported as "does not match the sha256".
    path = store.path("tiny/full-s0") / META
    meta = json.loads(path.read_text())
    del meta["weights_sha256"]
    path.write_text(json.dumps(meta))
    _assert_checkpoint_error(store, "tiny/full-s0", capsys, "has no weights_sha256")
    with pytest.raises(CheckpointError, match="has no weights_sha256"):
        store.meta("tiny/full-s0")  # what eval reads the fingerprint from


def test_zoo_list_names_an_incomplete_checkpoint_and_lists_the_rest(store, capsys):
    # A meta.json without a field the listing reads was a KeyError traceback for the whole store.
    path = store.path("tiny/full-s0") / META
    meta = json.loads(path.read_text())
    del meta["metrics"]
    path.write_text(json.dumps(meta))
    assert cli.main(["zoo", "--store", str(store.root), "list"]) == 2
    out, err = capsys.readouterr()
    assert "tiny/smooth-sigma2-s0" in out and "tiny/full-s0" not in out
    assert err.startswith("robustmix: error:") and err.count("\n") == 1
    assert "tiny/full-s0" in err and "metrics.clean_acc" in err
    with pytest.raises(CheckpointError, match="metrics.clean_acc"):
        store.meta("tiny/full-s0")


def test_clear_partial_removes_the_run_and_empty_parents(tmp_path):
    st = ModelStore(tmp_path)
    for name in ("r/full-s0", "r/chans-s0"):
        st.partial_path(name).mkdir(parents=True)
        (st.partial_path(name) / "state.pt").write_bytes(b"x")
    st.clear_partial("r/full-s0")
    assert not st.partial_path("r/full-s0").exists() and st.partial_path("r/chans-s0").is_dir()
    st.clear_partial("r/chans-s0")  # the last run of the recipe takes its folder with it
    assert not (tmp_path / ".partial" / "r").exists()
    st.clear_partial("r/never-s0")  # nothing to clear is fine


def test_store_root_that_is_a_file(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(CheckpointError, match="is a file, not a directory"):
        ModelStore(blocker).check_writable()
    assert blocker.read_text() == "x"


def test_zoo_list_pattern_that_matches_nothing(store, capsys):
    assert cli.main(["zoo", "--store", str(store.root), "list", "nope/*"]) == 2
    err = capsys.readouterr().err
    assert "no model in" in err and "'nope/*'" in err and err.count("\n") == 1
