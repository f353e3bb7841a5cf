"""`robustmix train` from the command line: bad inputs are one-line errors, flags override recipes."""
from __future__ import annotations

import glob
from pathlib import Path

import pytest
import torch

import robustmix
from robustmix import cli, data
from robustmix.errors import CheckpointError, ConfigError, DataError
from robustmix.recipe import load_recipe, recipe_task
from robustmix.store import ModelStore
from robustmix.train import train_recipe

pytestmark = pytest.mark.usefixtures("single_thread")
REPO = Path(__file__).resolve().parents[1]


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    rc = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def assert_fails(capsys, argv, exc_type, fragments, recipe=None, overrides=None, store=None):
    """Exit 2 with one stderr line naming the problem, and the library raises ``exc_type``."""
    rc, out, err = run_cli(capsys, *argv)
    assert rc == 2, (out, err)
    assert err.startswith("robustmix: error: ") and err.count("\n") == 1, err
    for f in fragments:
        assert f in err, err
    if recipe is not None:
        with pytest.raises(exc_type) as info:
            train_recipe(load_recipe(recipe, overrides), store or ModelStore(Path(recipe).parent / "lib-out"),
                         progress=False)
        for f in fragments:
            assert f in str(info.value)


def test_unknown_data_set(capsys, write_recipe, fake_fmnist, tmp_path):
    r = write_recipe("r", fake_fmnist, data_name="fashion-mnistt")
    assert_fails(capsys, ["train", r, "--out", tmp_path / "o"], DataError, ["fashion-mnistt"], recipe=r)


def test_unknown_model(capsys, write_recipe, fake_fmnist, tmp_path):
    r = write_recipe("r", fake_fmnist, model="convmixer_99")
    assert_fails(capsys, ["train", r, "--out", tmp_path / "o"], ConfigError, ["convmixer_99"], recipe=r)


def test_unknown_variant(capsys, write_recipe, fake_fmnist, tmp_path):
    r = write_recipe("r", fake_fmnist, variants='["full", "chanz"]')
    assert_fails(capsys, ["train", r, "--out", tmp_path / "o"], ConfigError, ["chanz"], recipe=r)
    ok = write_recipe("ok", fake_fmnist)
    assert_fails(capsys, ["train", ok, "--out", tmp_path / "o", "--variants", "full,spacey"], ConfigError,
                 ["spacey"], recipe=ok, overrides={"variants": ["full", "spacey"]})
    assert_fails(capsys, ["train", ok, "--out", tmp_path / "o", "--variants", "smooth:sigma=-1"], ConfigError,
                 ["sigma"], recipe=ok, overrides={"variants": ["smooth:sigma=-1"]})


def test_unknown_key_is_named(capsys, write_recipe, fake_fmnist, tmp_path):
    r = write_recipe("r", fake_fmnist, optimizer="lrr = 0.1")
    assert_fails(capsys, ["train", r, "--out", tmp_path / "o"], ConfigError, ["optimizer.lrr"], recipe=r)
    r2 = write_recipe("r2", fake_fmnist, epoch="3")
    assert_fails(capsys, ["train", r2, "--out", tmp_path / "o"], ConfigError, ["'epoch'"], recipe=r2)


def test_wrong_type(capsys, write_recipe, fake_fmnist, tmp_path):
    r = write_recipe("r", fake_fmnist, epochs='"ten"')
    assert_fails(capsys, ["train", r, "--out", tmp_path / "o"], ConfigError, ["epochs", "ten"], recipe=r)
    r2 = write_recipe("r2", fake_fmnist, optimizer='grad_clip = "big"')
    assert_fails(capsys, ["train", r2, "--out", tmp_path / "o"], ConfigError, ["optimizer.grad_clip"], recipe=r2)


def test_negative_epochs(capsys, write_recipe, fake_fmnist, tmp_path):
    r = write_recipe("r", fake_fmnist, epochs="-1")
    assert_fails(capsys, ["train", r, "--out", tmp_path / "o"], ConfigError, ["epochs", "-1"], recipe=r)
    ok = write_recipe("ok", fake_fmnist)
    assert_fails(capsys, ["train", ok, "--out", tmp_path / "o", "--epochs", "-3"], ConfigError, ["epochs", "-3"],
                 recipe=ok, overrides={"epochs": -3})


def test_missing_data(capsys, write_recipe, tmp_path, monkeypatch):
    empty_root, empty_src = tmp_path / "data", tmp_path / "src"
    empty_root.mkdir(), empty_src.mkdir()
    monkeypatch.setenv("ROBUSTMIX_FASHION_MNIST_SRC", str(empty_src))
    r = write_recipe("r", empty_root)
    assert_fails(capsys, ["train", r, "--out", tmp_path / "o"], DataError, ["fashion-mnist", "not found"], recipe=r)
    assert not list((tmp_path / "o").glob("*/*/meta.json"))


def test_unwritable_out(capsys, write_recipe, fake_fmnist, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = write_recipe("r", fake_fmnist)
    assert_fails(capsys, ["train", r, "--out", blocker / "zoo"], CheckpointError, ["not writable", str(blocker)],
                 recipe=r, store=ModelStore(blocker / "zoo"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda(capsys, write_recipe, fake_fmnist, tmp_path):
    r = write_recipe("r", fake_fmnist)
    assert_fails(capsys, ["train", r, "--out", tmp_path / "o", "--device", "cuda"], ConfigError, ["cuda"],
                 recipe=r, overrides={"device": "cuda"})
    cuda_recipe = write_recipe("c", fake_fmnist, device='"cuda:0"')
    assert_fails(capsys, ["train", cuda_recipe, "--out", tmp_path / "o"], ConfigError, ["cuda"])
    assert_fails(capsys, ["train", r, "--out", tmp_path / "o", "--device", "tpu"], ConfigError, ["tpu"])


def test_missing_recipe_file_and_bad_toml(capsys, tmp_path):
    assert_fails(capsys, ["train", tmp_path / "nope.toml"], ConfigError, ["nope.toml"])
    bad = tmp_path / "bad.toml"
    bad.write_text("epochs = = 3\n")
    assert_fails(capsys, ["train", bad], ConfigError, ["bad.toml", "TOML"])


def test_flags_override_recipe(capsys, write_recipe, fake_fmnist, tmp_path):
    r = write_recipe("over", fake_fmnist, epochs="5", variants='["chans"]', seeds="[0]")
    out = tmp_path / "store"
    rc, stdout, err = run_cli(capsys, "train", r, "--epochs", "1", "--variants", "full,smooth:sigma=2",
                              "--seeds", "3", "--out", out, "--quiet", "--device", "cpu")
    assert rc == 0, err
    store = ModelStore(out)
    assert store.names() == ["over/full-s3", "over/smooth-sigma2-s3"]
    assert str(store.root) in stdout and "over/smooth-sigma2-s3" in stdout and "trained" in stdout
    meta = store.meta("over/smooth-sigma2-s3")
    assert meta["recipe"]["epochs"] == 1 and len(meta["metrics"]["history"]) == 1
    assert meta["variant_params"] == {"sigma": 2.0} and meta["seed"] == 3 and meta["variant_seed"] == 3
    assert meta["recipe"]["device"] == "cpu"
    model, _ = store.load("over/smooth-sigma2-s3")
    assert robustmix.audit_frozen(model) == []
    # The same command again skips both; --out kept everything away from the default store.
    rc, stdout, _ = run_cli(capsys, "train", r, "--epochs", "1", "--variants", "full,smooth:sigma=2",
                            "--seeds", "3", "--out", out, "--quiet", "--device", "cpu")
    assert rc == 0 and stdout.count("skipped") == 2


def test_default_store_from_env(capsys, write_recipe, fake_fmnist, tmp_path, monkeypatch):
    monkeypatch.setenv("ROBUSTMIX_ZOO", str(tmp_path / "envzoo"))
    r = write_recipe("envr", fake_fmnist, epochs="0")
    rc, stdout, err = run_cli(capsys, "train", r, "--quiet")
    assert rc == 0, err
    assert ModelStore(tmp_path / "envzoo").names() == ["envr/full-s0"]


@pytest.mark.parametrize("path", sorted(glob.glob(str(REPO / "zoo" / "*.toml"))), ids=lambda p: Path(p).stem)
def test_shipped_recipes_parse(path):
    if recipe_task(path) == "unshuffle":
        from robustmix.paper.unshuffle import load_unshuffle_recipe

        recipe = load_unshuffle_recipe(path)
        assert recipe.name == Path(path).stem and recipe.variant_list()
        assert recipe.model.name in robustmix.list_models()
        return
    recipe = load_recipe(path)
    assert recipe.name == Path(path).stem
    assert recipe.model.name in robustmix.list_models()
    assert recipe.data.name in data.list_datasets()
    assert recipe.variant_list() and recipe.epochs > 0 and recipe.seeds
    # The model accepts the recipe's args and the data set's shape.
    info = data.dataset_info(recipe.data.name)
    model = robustmix.create_model(recipe.model.name, num_classes=info.num_classes, in_chans=info.channels,
                                   **recipe.model.args)
    assert model.head[-1].out_features == info.num_classes


def test_shipped_recipes_exist():
    names = {Path(p).stem for p in glob.glob(str(REPO / "zoo" / "*.toml"))}
    assert "fashion-mnist-demo" in names


def test_models_command_lists_registry(capsys):
    rc, out, _ = run_cli(capsys, "models", "sepresnet*")
    assert rc == 0 and out.count("\n") == len(robustmix.list_models("sepresnet*"))
    assert "sepresnet_tiny" in out


@pytest.mark.parametrize("lr, optimizer, fragment", [
    ("nan", "", "optimizer.lr"), ("inf", "", "optimizer.lr"),
    (0.01, "label_smoothing = nan", "optimizer.label_smoothing"),
    (0.01, "grad_clip = -1.0", "optimizer.grad_clip"), (0.01, "momentum = inf", "optimizer.momentum")])
def test_non_finite_or_out_of_range_optimizer_values(capsys, write_recipe, fake_fmnist, tmp_path, lr, optimizer,
                                                     fragment):
    # NaN passes every `x <= 0` check and reached the optimiser as a ValueError traceback.
    r = write_recipe("r", fake_fmnist, lr=lr, optimizer=optimizer)
    assert_fails(capsys, ["train", r, "--out", tmp_path / "o"], ConfigError, [fragment, "must be"], recipe=r)


def test_recipe_must_name_its_model(capsys, tmp_path):
    # An empty file used to start a 25-epoch convmixer_64 run on the whole train split.
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    no_model = tmp_path / "nomodel.toml"
    no_model.write_text('variants = ["full"]\nepochs = 1\n[data]\nname = "fashion-mnist"\n')
    for path in (empty, no_model):
        assert_fails(capsys, ["train", path, "--out", tmp_path / "o"], ConfigError,
                     [path.name, "'model.name'", "[model]"], recipe=path)
    assert not (tmp_path / "o").exists()


def test_train_subset_must_be_positive_and_fit_the_split(capsys, write_recipe, fake_fmnist, tmp_path):
    zero = write_recipe("zero", fake_fmnist, data="train_subset = 0")
    assert_fails(capsys, ["train", zero, "--out", tmp_path / "o"], ConfigError, ["data.train_subset", ">= 1"],
                 recipe=zero)
    # fake_fmnist has 256 training images: 1000 used to be cut down to them without a word.
    huge = write_recipe("huge", fake_fmnist, data="train_subset = 1000")
    assert_fails(capsys, ["train", huge, "--out", tmp_path / "o"], ConfigError,
                 ["data.train_subset", "1000", "256"], recipe=huge)
    assert not (tmp_path / "o").exists()  # not even an empty --out folder


def test_failed_train_leaves_no_out_folder(capsys, write_recipe, fake_fmnist, tmp_path):
    unknown = write_recipe("unknown", fake_fmnist, model="convmixer_no_such_model")
    assert_fails(capsys, ["train", unknown, "--out", tmp_path / "o" / "zoo"], ConfigError,
                 ["unknown model 'convmixer_no_such_model'"])
    no_data = write_recipe("nodata", tmp_path / "no-data-here", data_name="mnist")
    assert_fails(capsys, ["train", no_data, "--out", tmp_path / "o" / "zoo"], DataError,
                 ["mnist not found", "download = true under [data]"])
    assert not (tmp_path / "o").exists()


def test_third_party_import_warnings_stay_quiet_but_others_show(capsys, monkeypatch):
    import warnings

    def noisy(args):  # what importing robustbench prints, then robustmix's own error
        warnings.warn_explicit("`torch.jit.interface` is deprecated. Please use `torch.compile` instead.",
                               FutureWarning, "/site-packages/torch/jit/_script.py", 1643, module="torch.jit._script")
        warnings.warn_explicit("pkg_resources is deprecated as an API.", UserWarning,
                               "/site-packages/robustbench/loaders.py", 4, module="robustbench.loaders")
        warnings.warn_explicit("something else", UserWarning, "/site-packages/other/x.py", 1, module="other.x")
        raise ConfigError("the real problem")

    from robustmix.cli import parser  # build_parser binds each command from this module
    monkeypatch.setattr(parser, "cmd_models", noisy)
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        rc = cli.main(["models"])
    assert rc == 2 and capsys.readouterr().err == "robustmix: error: the real problem\n"
    assert [str(w.message) for w in shown] == ["something else"]  # only the named warnings are silenced


def test_empty_variant_list(capsys, write_recipe, fake_fmnist, tmp_path):
    r = write_recipe("r", fake_fmnist, variants="[]")
    assert_fails(capsys, ["train", r, "--out", tmp_path / "o"], ConfigError, ["variants", "at least one"], recipe=r)
    ok = write_recipe("ok", fake_fmnist)
    assert_fails(capsys, ["train", ok, "--out", tmp_path / "o", "--variants", ",,"], ConfigError,
                 ["variants", "at least one"], recipe=ok, overrides={"variants": []})


def test_negative_seeds(capsys, write_recipe, fake_fmnist, tmp_path):
    r = write_recipe("r", fake_fmnist, seeds="[0, -1]")
    assert_fails(capsys, ["train", r, "--out", tmp_path / "o"], ConfigError, ["seeds[1]", "-1"], recipe=r)
    ok = write_recipe("ok", fake_fmnist)
    assert_fails(capsys, ["train", ok, "--out", tmp_path / "o", "--seeds=-1"], ConfigError, ["seeds[0]", "-1"],
                 recipe=ok, overrides={"seeds": [-1]})
    sub = write_recipe("sub", fake_fmnist, data="subset_seed = -1")
    assert_fails(capsys, ["train", sub, "--out", tmp_path / "o"], ConfigError, ["data.subset_seed", "-1"],
                 recipe=sub)


def test_out_that_is_a_file(capsys, write_recipe, fake_fmnist, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = write_recipe("r", fake_fmnist)
    assert_fails(capsys, ["train", r, "--out", blocker], CheckpointError, [str(blocker), "is a file", "--out"],
                 recipe=r, store=ModelStore(blocker))
    assert blocker.read_text() == "x"


def test_unshuffle_recipe_without_task(capsys, write_recipe, fake_fmnist, tmp_path):
    # Without `task` a recipe is a classifier's; un-shuffling-only keys say which was meant.
    r = write_recipe("r", fake_fmnist, permutation_seed="3")
    assert_fails(capsys, ["train", r, "--out", tmp_path / "o"], ConfigError, ["un-shuffling", 'task = "unshuffle"'],
                 recipe=r)
