"""Training under torchrun (N processes learn what one learns; a killed rank resumes) and the [performance] table."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from safetensors.torch import load_file
from torch import nn

from robustmix import cli
from robustmix.distributed import GlobalBatchNorm2d, plain_batchnorm, sync_batchnorm
from robustmix.errors import ConfigError
from robustmix.recipe import PerformanceSection, load_recipe
from robustmix.store import WEIGHTS, ModelStore
from robustmix.train import run_hash, train_recipe

pytestmark = pytest.mark.usefixtures("single_thread")
REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def torchrun(recipe: Path, out: Path) -> list[str]:
    """`robustmix train` on 2 CPU processes."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
            "-m", "robustmix", "train", str(recipe), "--out", str(out), "--quiet"]


def assert_close_weights(a: Path, b: Path, atol: float = 1e-5):
    ta, tb = load_file(str(a / WEIGHTS)), load_file(str(b / WEIGHTS))
    assert ta.keys() == tb.keys()
    for k in ta:
        assert ta[k].dtype == tb[k].dtype and ta[k].shape == tb[k].shape, k
        assert torch.allclose(ta[k].double(), tb[k].double(), atol=atol, rtol=0), \
            f"{k} differs by {(ta[k].double() - tb[k].double()).abs().max():.3g}"


def _global_bn_rank(rank: int, world_size: int, init_file: str) -> None:
    """One rank: GlobalBatchNorm2d on its slice == BatchNorm2d on the whole batch."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        torch.manual_seed(0)
        x, probe = torch.randn(7, 3, 5, 4) * 3 + 1, torch.randn(7, 3, 5, 4)  # 7 images split 4 / 3
        ref = nn.BatchNorm2d(3)
        with torch.no_grad():
            ref.weight.uniform_(0.5, 2)
            ref.bias.uniform_(-1, 1)
        ours = sync_batchnorm(nn.Sequential(nn.BatchNorm2d(3)), torch.device("cpu"))[0]
        assert type(ours) is GlobalBatchNorm2d
        ours.load_state_dict(ref.state_dict())
        mine = slice(rank, None, world_size)
        xr, xo = x.clone().requires_grad_(), x[mine].clone().requires_grad_()
        for _ in range(2):  # twice: the running statistics' update compounds
            (ref(xr) * probe).sum().backward()
            (ours(xo) * probe[mine]).sum().backward()
        torch.testing.assert_close(xo.grad, xr.grad[mine], atol=1e-5, rtol=1e-5)
        for p in (ours.weight, ours.bias):  # what DDP's gradient all-reduce adds up
            dist.all_reduce(p.grad)
        torch.testing.assert_close(ours.weight.grad, ref.weight.grad, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(ours.bias.grad, ref.bias.grad, atol=1e-5, rtol=1e-5)
        for k, v in ref.state_dict().items():
            torch.testing.assert_close(ours.state_dict()[k], v, atol=1e-6, rtol=1e-6)
        ours.eval()
        ref.eval()
        torch.testing.assert_close(ours(x), ref(x))
    finally:
        dist.destroy_process_group()


def test_global_batchnorm_matches_batchnorm_over_the_whole_batch(tmp_path):
    # Plain processes running this file (see the end): pytest's importlib mode leaves this
    # module unimportable by name, so multiprocessing could not start it in a child.
    ranks = [subprocess.Popen([sys.executable, __file__, str(rank), "2", str(tmp_path / "rendezvous")], cwd=REPO,
                              env=ENV, stderr=subprocess.PIPE, text=True) for rank in range(2)]
    errors = [p.communicate(timeout=120)[1] for p in ranks]
    assert [p.returncode for p in ranks] == [0, 0], "\n".join(e[-2000:] for e in errors)


def test_batchnorm_swap_keeps_tensors_and_state_dict_keys():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Sequential(nn.BatchNorm2d(4)))
    weight, keys = model[1].weight, list(model.state_dict())
    synced = sync_batchnorm(model, torch.device("cpu"))
    assert [type(m) for m in synced.modules()].count(GlobalBatchNorm2d) == 2
    assert synced[1].weight is weight and list(synced.state_dict()) == keys
    plain = plain_batchnorm(synced)
    assert [type(m) for m in plain.modules()].count(nn.BatchNorm2d) == 2 and plain[1].weight is weight
    assert list(plain.state_dict()) == keys


def test_two_processes_train_the_same_weights_as_one(fake_fmnist, write_recipe, tmp_path, capsys):
    # 256 images in global batches of 45: odd batches split 23 / 22 and the last one (31) 16 / 15.
    recipe = write_recipe("ddp", fake_fmnist, variants='["chans"]', batch_size="45",
                          augment='["random-crop", "hflip"]')
    assert cli.main(["train", str(recipe), "--out", str(tmp_path / "one"), "--quiet"]) == 0  # one process
    capsys.readouterr()
    run = subprocess.run(torchrun(recipe, tmp_path / "two"), cwd=REPO, env=ENV, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("stored in") == 1, run.stdout  # one summary: rank 0's
    assert run.stderr.count("epoch 2/2 loss") == 1, run.stderr  # one log line per epoch, not per rank

    one, two = ModelStore(tmp_path / "one"), ModelStore(tmp_path / "two")
    assert two.names() == one.names() == ["ddp/chans-s0"]
    name = "ddp/chans-s0"
    assert not list((tmp_path / "two" / ".partial").rglob("*.pt"))
    assert_close_weights(one.path(name), two.path(name))
    m1, m2 = one.meta(name), two.meta(name)
    assert m2["distributed"] == {"world_size": 2, "backend": "gloo", "sync_bn": True}
    assert m1["distributed"] == {"world_size": 1, "backend": None, "sync_bn": False}
    differ = {"distributed", "metrics", "seconds", "created", "weights_sha256"}
    assert {k: v for k, v in m1.items() if k not in differ} == {k: v for k, v in m2.items() if k not in differ}
    assert m2["metrics"]["clean_acc"] == pytest.approx(m1["metrics"]["clean_acc"], abs=1 / 64)
    for h1, h2 in zip(m1["metrics"]["history"], m2["metrics"]["history"], strict=True):
        assert h2["train_loss"] == pytest.approx(h1["train_loss"], abs=1e-5)
        assert h2["train_acc"] == pytest.approx(h1["train_acc"], abs=1 / 256)
    model, _ = two.load(name)  # loads as a plain one-process model
    assert not any(isinstance(m, GlobalBatchNorm2d) for m in model.modules())


def test_killed_rank_then_rerun_resumes_and_matches_one_process(fake_fmnist_writer, write_recipe, tmp_path,
                                                                   worker_pids):
    data_root = fake_fmnist_writer(tmp_path / "data", 512, 64, seed=1)
    path = write_recipe("kill", data_root, variants='["chans"]', epochs="5", batch_size="32",
                        augment='["hflip"]')
    (ref,) = train_recipe(load_recipe(path), ModelStore(tmp_path / "one"), progress=False)

    out = tmp_path / "two"
    state = out / ".partial" / ref.name / "state.pt"
    proc = subprocess.Popen(torchrun(path, out), cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        deadline = time.monotonic() + 120
        while not state.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        assert state.exists(), f"no resume state appeared (rc={proc.poll()}): {proc.stderr.read()[-2000:]!r}"
        workers = worker_pids(proc.pid)
        assert 1 in workers, f"no LOCAL_RANK=1 worker among torchrun's children: {workers}"
        os.kill(workers[1], signal.SIGKILL)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
        proc.communicate()
    assert proc.returncode != 0, err[-2000:]
    assert not (out / ref.name / "meta.json").exists(), f"the run finished before a rank was killed: {err[-2000:]}"

    rerun = subprocess.run(torchrun(path, out), cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "resuming after epoch" in rerun.stderr and "resumed" in rerun.stdout, rerun.stderr[-3000:]
    assert not state.exists()
    assert_close_weights(tmp_path / "one" / ref.name, out / ref.name)


def test_performance_table_is_strict(write_recipe, fake_fmnist, capsys, tmp_path):
    bad = write_recipe("bad", fake_fmnist, performance='{ amp = "bf16", warp = true }')
    with pytest.raises(ConfigError, match=r"performance\.warp"):
        load_recipe(bad)
    with pytest.raises(ConfigError, match=r"performance\.amp"):
        load_recipe(write_recipe("fp8", fake_fmnist, performance='{ amp = "fp8" }'))
    with pytest.raises(ConfigError, match=r"performance\.workers"):
        load_recipe(write_recipe("neg", fake_fmnist, performance="{ workers = -1 }"))
    ok = write_recipe("ok", fake_fmnist)
    assert cli.main(["train", str(ok), "--workers", "many", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "performance.workers" in err and err.count("\n") == 1, err


def test_auto_resolves_per_device():
    auto = PerformanceSection()
    cpu, cuda = auto.resolve("cpu"), auto.resolve("cuda")
    assert (cpu.channels_last, cpu.amp, cpu.workers, cpu.pin_memory, cpu.compile) == (False, "off", 0, False, False)
    assert (cuda.channels_last, cuda.amp, cuda.pin_memory) == (True, "bf16", True)
    assert cuda.workers == min(4, os.cpu_count() or 1)
    forced = PerformanceSection(channels_last=False, amp="off", workers=2, pin_memory=False).resolve("cuda")
    assert (forced.channels_last, forced.amp, forced.workers, forced.pin_memory) == (False, "off", 2, False)


def test_channels_last_and_bf16_train_on_cpu(write_recipe, fake_fmnist, tmp_path):
    path = write_recipe("fast", fake_fmnist, epochs="3", performance='{ channels_last = true, amp = "bf16" }')
    recipe = load_recipe(path)
    (res,) = train_recipe(recipe, ModelStore(tmp_path), progress=False)
    meta = ModelStore(tmp_path).meta(res.name)
    assert meta["performance"] == {"channels_last": True, "amp": "bf16", "compile": False, "workers": 0,
                                   "pin_memory": False}
    losses = [h["train_loss"] for h in meta["metrics"]["history"]]
    assert all(map(torch.isfinite, torch.tensor(losses))) and losses[-1] < losses[0], losses
    weights = load_file(str(tmp_path / res.name / WEIGHTS))
    assert all(w.dtype != torch.bfloat16 and w.is_contiguous() for w in weights.values())  # fp32 master weights


def test_loader_workers_give_identical_weights_and_do_not_change_the_run(write_recipe, fake_fmnist, tmp_path,
                                                                        capsys):
    path = write_recipe("load", fake_fmnist, augment='["random-crop", "hflip"]')
    for workers, out in (("0", "a"), ("2", "b")):
        assert cli.main(["train", str(path), "--workers", workers, "--out", str(tmp_path / out), "--quiet"]) == 0
    name = "load/full-s0"
    a, b = ModelStore(tmp_path / "a"), ModelStore(tmp_path / "b")
    ta, tb = load_file(str(a.path(name) / WEIGHTS)), load_file(str(b.path(name) / WEIGHTS))
    assert all(torch.equal(ta[k], tb[k]) for k in ta)
    assert a.meta(name)["performance"] == {"channels_last": False, "amp": "off", "compile": False, "workers": 0,
                                           "pin_memory": False}
    assert b.meta(name)["performance"]["workers"] == 2
    assert a.meta(name)["recipe_hash"] == b.meta(name)["recipe_hash"] == run_hash(load_recipe(path), "full", {}, 0)
    capsys.readouterr()
    assert cli.main(["train", str(path), "--workers", "2", "--amp", "bf16", "--channels-last",
                     "--out", str(tmp_path / "a"), "--quiet"]) == 0
    assert "skipped" in capsys.readouterr().out


if __name__ == "__main__":  # one rank of test_global_batchnorm_matches_batchnorm_over_the_whole_batch
    _global_bn_rank(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
