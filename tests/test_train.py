"""Training: real accuracy, bit-identical resume (Ctrl-C and kill -9), skipping, stale state."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import robustmix
from robustmix.recipe import DataSection, ModelSection, OptimSection, Recipe, load_recipe
from robustmix.store import WEIGHTS, ModelStore, sha256_file
from robustmix.train import augment, lr_at, train_recipe

pytestmark = pytest.mark.usefixtures("single_thread")
REPO = Path(__file__).resolve().parents[1]


def tiny_recipe(root, **kw) -> Recipe:
    fields = dict(name="tiny", data=DataSection(root=str(root)), model=ModelSection(name="convmixer_16_2_ks3_p4"),
                  variants=["smooth"], epochs=3, batch_size=64, eval_batch_size=256, device="cpu",
                  augment=["random-crop", "hflip"])
    fields.update(kw)
    return Recipe(**fields)


def assert_same_weights(a: Path, b: Path):
    ta, tb = load_file(str(a / WEIGHTS)), load_file(str(b / WEIGHTS))
    assert ta.keys() == tb.keys()
    for k in ta:
        assert torch.equal(ta[k], tb[k]), f"{k} differs"
    assert sha256_file(a / WEIGHTS) == sha256_file(b / WEIGHTS)


def test_real_fashion_mnist_beats_chance(real_fmnist, tmp_path):
    """400 steps of a 1.5k-parameter ConvMixer: far above the 10% chance level."""
    recipe = Recipe(name="fm", data=DataSection(root=str(real_fmnist), train_subset=25600),
                    model=ModelSection(name="convmixer_16_2_ks3_p4"), variants=["full", "chans"],
                    epochs=2, batch_size=128, eval_batch_size=1000, device="cpu")
    results = {r.variant: r for r in train_recipe(recipe, ModelStore(tmp_path), progress=False)}
    assert results["full"].clean_acc >= 0.7, results
    # The paper's claim at toy scale: frozen random spatial filters still learn well.
    assert results["chans"].clean_acc >= 0.6, results
    assert results["chans"].trainable_params < results["full"].trainable_params


def test_resume_after_ctrl_c_is_bit_identical(fake_fmnist, tmp_path, capfd):
    recipe = tiny_recipe(fake_fmnist)
    a, b = ModelStore(tmp_path / "A"), ModelStore(tmp_path / "B")
    (done,) = train_recipe(recipe, a, progress=False)
    assert done.status == "trained" and done.name == "tiny/smooth-sigma1-s0"

    def interrupt(epoch):
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_recipe(recipe, b, progress=False, on_epoch_end=interrupt)
    state = b.partial_path(done.name) / "state.pt"
    assert state.is_file() and not b.exists(done.name)
    assert torch.load(state, weights_only=True)["epoch"] == 1
    capfd.readouterr()

    (resumed,) = train_recipe(recipe, b, progress=False)
    assert resumed.status == "resumed"
    assert "resuming after epoch 1/3" in capfd.readouterr().err
    assert not state.exists()
    assert_same_weights(a.path(done.name), b.path(done.name))
    meta_a, meta_b = a.meta(done.name), b.meta(done.name)
    assert meta_a["metrics"]["clean_acc"] == meta_b["metrics"]["clean_acc"]
    assert [h["train_loss"] for h in meta_a["metrics"]["history"]] == \
        [h["train_loss"] for h in meta_b["metrics"]["history"]]

    # A finished run is skipped on re-run, also when the recipe now lists more runs.
    again = train_recipe(recipe, b, progress=False)
    assert [r.status for r in again] == ["skipped"]
    more = train_recipe(tiny_recipe(fake_fmnist, variants=["smooth", "chans"], epochs=3), b, progress=False)
    assert [r.status for r in more] == ["skipped", "trained"]
    assert_same_weights(a.path(done.name), b.path(done.name))


def test_changed_recipe_does_not_reuse_stale_state(fake_fmnist, tmp_path, capfd):
    old, new = tiny_recipe(fake_fmnist, epochs=2), tiny_recipe(fake_fmnist, epochs=2,
                                                                optimizer=OptimSection(lr=0.003))
    b, c = ModelStore(tmp_path / "B"), ModelStore(tmp_path / "C")

    def interrupt(epoch):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_recipe(old, b, progress=False, on_epoch_end=interrupt)
    capfd.readouterr()
    (res,) = train_recipe(new, b, progress=False)
    assert res.status == "trained"
    assert "resuming" not in capfd.readouterr().err
    (fresh,) = train_recipe(new, c, progress=False)
    assert_same_weights(b.path(res.name), c.path(res.name))
    assert b.meta(res.name)["recipe"]["optimizer"]["lr"] == 0.003

    # A finished checkpoint of a different recipe is retrained, not reused.
    (res2,) = train_recipe(old, b, progress=False)
    assert res2.status == "trained"
    assert b.meta(res.name)["recipe"]["optimizer"]["lr"] == 0.01


def test_kill_9_then_rerun_is_bit_identical(fake_fmnist_writer, write_recipe, tmp_path):
    data_root = fake_fmnist_writer(tmp_path / "data", 1024, 64, seed=1)
    path = write_recipe("kill", data_root, model="convmixer_32_4_ks5_p2", variants='["chans"]',
                        epochs="3", batch_size="32")
    recipe = load_recipe(path)
    (ref,) = train_recipe(recipe, ModelStore(tmp_path / "A"), progress=False)  # uninterrupted, 1 thread

    out = tmp_path / "B"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "robustmix", "train", str(path), "--out", str(out), "--quiet"]
    state = out / ".partial" / ref.name / "state.pt"
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not state.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        assert state.exists(), f"no resume state appeared (rc={proc.poll()}): {proc.stderr.read()[-2000:]!r}"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / ref.name / "meta.json").exists(), "the run finished before it could be killed"

    rerun = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "resuming after epoch" in rerun.stderr and "resumed" in rerun.stdout
    assert_same_weights(tmp_path / "A" / ref.name, out / ref.name)
    assert not state.exists()

    skipped = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert skipped.returncode == 0 and "skipped" in skipped.stdout


def test_lr_schedules():
    r = Recipe(name="s", epochs=10, optimizer=OptimSection(lr=0.1))
    assert lr_at(r, 0) == 0 and lr_at(r, 4) == pytest.approx(0.1) and lr_at(r, 8) == pytest.approx(0.005)
    assert lr_at(r, 10) == pytest.approx(0.0) and lr_at(r, 2) == pytest.approx(0.05)
    r.schedule.name = "cosine"
    assert lr_at(r, 0) == pytest.approx(0.1) and lr_at(r, 5) == pytest.approx(0.05) and lr_at(r, 10) < 1e-12
    r.schedule.name = "constant"
    assert lr_at(r, 7.3) == 0.1


def test_augment_is_a_function_of_the_generator():
    x = torch.rand(6, 1, 8, 8)
    a = augment(x, ["random-crop", "hflip"], torch.Generator().manual_seed(3))
    b = augment(x, ["random-crop", "hflip"], torch.Generator().manual_seed(3))
    c = augment(x, ["random-crop", "hflip"], torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c) and a.shape == x.shape
    assert torch.equal(augment(x, [], torch.Generator()), x)


def test_a_frozen_filter_that_moved_in_training_is_refused(fake_fmnist, tmp_path, monkeypatch):
    """The end-of-training audit: a frozen bank that differs from its seeded rebuild is an error
    and no checkpoint is written."""
    import robustmix.tasks as tasks_mod

    real_eval = tasks_mod.evaluate_accuracy

    def nudge_then_evaluate(model, *args, **kwargs):
        with torch.no_grad():
            frozen = next(p for p in model.parameters() if not p.requires_grad)
            frozen.view(-1)[0] += 1e-3
        return real_eval(model, *args, **kwargs)

    monkeypatch.setattr(tasks_mod, "evaluate_accuracy", nudge_then_evaluate)
    store = ModelStore(tmp_path)
    with pytest.raises(RuntimeError, match="frozen tensors changed"):
        train_recipe(tiny_recipe(fake_fmnist, epochs=1), store, progress=False)
    assert store.names() == []


def test_finished_runs_leave_no_partial_folders(fake_fmnist, tmp_path):
    store = ModelStore(tmp_path)
    train_recipe(tiny_recipe(fake_fmnist, epochs=1, variants=["full", "chans"]), store, progress=False)
    assert store.names() == ["tiny/chans-s0", "tiny/full-s0"]
    assert not (tmp_path / ".partial" / "tiny").exists()


def test_train_subset_is_checked_for_recipes_built_in_python(fake_fmnist, tmp_path):
    from robustmix.errors import ConfigError

    for n, fragment in ((0, ">= 1"), (257, "256 images")):
        with pytest.raises(ConfigError, match=fragment):
            train_recipe(tiny_recipe(fake_fmnist, data=DataSection(root=str(fake_fmnist), train_subset=n)),
                         ModelStore(tmp_path), progress=False)
    assert ModelStore(tmp_path).names() == []


class _CreatesFile:
    """Unpickling this runs ``open(path, "w")``: a stand-in for any code a crafted file could run."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.mark.parametrize("kind", ["random bytes", "safetensors", "pickled code", "another model's state"])
def test_corrupt_or_foreign_resume_state_is_one_line_and_restartable(fake_fmnist, tmp_path, capsys, kind):
    import pickle

    from safetensors.torch import save_file

    from robustmix import cli
    from robustmix.errors import CheckpointError
    from robustmix.train import run_hash

    recipe = tiny_recipe(fake_fmnist, epochs=2, augment=[])
    store = ModelStore(tmp_path / "zoo")
    def interrupt(epoch):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_recipe(recipe, store, progress=False, on_epoch_end=interrupt)
    state = store.partial_path("tiny/smooth-sigma1-s0") / "state.pt"
    assert state.is_file()
    victim = tmp_path / "created-by-the-state-file"
    if kind == "random bytes":
        state.write_bytes(os.urandom(3000))
    elif kind == "safetensors":
        save_file({"w": torch.zeros(3)}, str(state))
    elif kind == "pickled code":
        state.write_bytes(pickle.dumps({"epoch": 1, "model": _CreatesFile(victim)}, protocol=4))
    else:  # this run's hash, with tensors of another architecture
        this_run = run_hash(recipe, "smooth", {"sigma": 1.0}, 0)
        torch.save({"epoch": 1, "elapsed": 1.0, "history": [], "recipe_hash": this_run,
                    "model": {"w": torch.zeros(3)}, "optimizer": {}}, state)
    with pytest.raises(CheckpointError) as exc:
        train_recipe(recipe, store, progress=False)
    msg = str(exc.value)
    assert "\n" not in msg and str(state) in msg and f"delete {state.parent}" in msg, msg
    assert not victim.exists()
    capsys.readouterr()
    recipe_file = tmp_path / "r.toml"
    recipe_file.write_text(f'name = "tiny"\nvariants = ["smooth"]\nepochs = 2\nbatch_size = 64\n'
                           f'eval_batch_size = 256\ndevice = "cpu"\n[data]\nroot = "{fake_fmnist}"\n'
                           f'[model]\nname = "convmixer_16_2_ks3_p4"\n')
    assert cli.main(["train", str(recipe_file), "--out", str(store.root), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("robustmix: error: ") and err.count("\n") == 1 and "delete" in err, err
    assert not victim.exists()

    import shutil  # the fix the message names: delete the partial run, then the same command trains
    shutil.rmtree(state.parent)
    (done,) = train_recipe(recipe, store, progress=False)
    assert done.status == "trained" and store.exists(done.name) and not state.exists()
