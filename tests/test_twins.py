"""A run that is the same training as a finished one under another name is copied, not retrained."""
from __future__ import annotations

import dataclasses

import pytest

from robustmix.errors import CheckpointError
from robustmix.paper.cost import training_cost
from robustmix.recipe import DataSection, ModelSection, Recipe
from robustmix.store import WEIGHTS, ModelStore
from robustmix.train import train_recipe
from robustmix.twins import stored_training_key, training_key

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture
def core(fake_fmnist):
    return Recipe(name="core", description="the core zoo", data=DataSection(root=str(fake_fmnist)),
                  model=ModelSection(name="convmixer_16_2_ks3_p4"), variants=["full", "chans"], seeds=[0],
                  epochs=1, batch_size=64, eval_batch_size=256, device="cpu")


def test_a_renamed_recipe_is_copied_and_the_copy_is_what_training_gives(core, tmp_path):
    zoo = ModelStore(tmp_path / "zoo")
    train_recipe(core, zoo, progress=False)
    # Another name, another description, one variant of the two, and the model's default width
    # written out: the same training of chans-s0.
    width = dataclasses.replace(core, name="width-w16", description="width sweep", variants=["chans"],
                                model=ModelSection(name="convmixer_16_2_ks3_p4", args={"dim": 16}))
    (res,) = train_recipe(width, zoo, progress=False)
    assert res.status == "copied"
    meta = zoo.meta("width-w16/chans-s0")
    twin = zoo.meta("core/chans-s0")
    assert meta["copied_from"] == "core/chans-s0" and meta["recipe"]["name"] == "width-w16"
    assert meta["weights_sha256"] == twin["weights_sha256"] and meta["metrics"] == twin["metrics"]
    assert meta["recipe_hash"] != twin["recipe_hash"] and res.clean_acc == twin["metrics"]["clean_acc"]
    zoo.load("width-w16/chans-s0")  # a checkpoint like any other: sha256 checked on load
    assert train_recipe(width, zoo, progress=False)[0].status == "skipped"

    # The claim behind copying: training it for real gives these very weights.
    fresh = ModelStore(tmp_path / "fresh")
    assert train_recipe(width, fresh, progress=False)[0].status == "trained"
    assert fresh.meta("width-w16/chans-s0")["weights_sha256"] == meta["weights_sha256"]

    # The copy took no training time in the study's compute tally.
    (row,) = training_cost(zoo, [width])
    assert (row.count, row.copied, row.seconds) == (1, 1, 0.0)


def test_anything_that_shapes_training_makes_a_different_run(core, tmp_path):
    zoo = ModelStore(tmp_path / "zoo")
    train_recipe(dataclasses.replace(core, variants=["chans"]), zoo, progress=False)
    other_seed = dataclasses.replace(core, name="b", variants=["chans"], seeds=[1])
    longer = dataclasses.replace(core, name="c", variants=["chans"], epochs=2)
    for recipe in (other_seed, longer):
        assert train_recipe(recipe, zoo, progress=False)[0].status == "trained"

    meta = zoo.meta("core/chans-s0")
    key = stored_training_key(meta)
    args = (meta["recipe"], meta["model"]["args"], "chans", {}, 0, meta["performance"])
    assert training_key(*args, meta["device"]) == key
    assert training_key(*args, "cuda:NVIDIA H100") != key  # another device rounds differently
    assert training_key(*args[:5], {**meta["performance"], "amp": "bf16"}, meta["device"]) != key
    assert training_key({**meta["recipe"], "name": "x", "seeds": [7]}, *args[1:], meta["device"]) == key
    assert stored_training_key({**meta, "distributed": {"world_size": 2}}) is None
    assert stored_training_key({k: v for k, v in meta.items() if k != "performance"}) is None


def test_a_corrupt_twin_is_not_copied(core, tmp_path):
    zoo = ModelStore(tmp_path / "zoo")
    train_recipe(dataclasses.replace(core, variants=["chans"]), zoo, progress=False)
    weights = zoo.path("core/chans-s0") / WEIGHTS
    weights.write_bytes(weights.read_bytes()[:-8] + b"\0" * 8)
    (res,) = train_recipe(dataclasses.replace(core, name="b", variants=["chans"]), zoo, progress=False)
    assert res.status == "trained"
    with pytest.raises(CheckpointError, match="sha256"):
        zoo.copy("core/chans-s0", "c/chans-s0", zoo.meta("core/chans-s0"))
    assert not zoo.exists("c/chans-s0")
