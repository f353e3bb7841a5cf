"""Scaling the evaluation out and down: `robustmix eval` sharded over torchrun processes (equal to one
process, resumable after a rank is killed), attack batches that back off on out-of-memory errors, and
the attack precision (bf16 autocast in the search, fp32 verdicts).

The zoo is one convmixer trained briefly on synthetic Fashion-MNIST, so these run without the real data.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn

from robustmix import cli
from robustmix.attacks import make_attack
from robustmix.config import from_dict
from robustmix.errors import ConfigError
from robustmix.evaluate import DeviceMemoryError, run_eval, with_backoff
from robustmix.provenance import stable_hash
from robustmix.schema import STORE_VERSION, WORST_CASE
from robustmix.spec import EvalSpec, load_spec
from robustmix.store import ModelStore

pytestmark = pytest.mark.usefixtures("single_thread")

REPO = Path(__file__).resolve().parents[1]
KEY = ["model", "attack", "threat_model", "eps", "index"]
MODEL = "tiny/full-s0"
N, BATCH, SEED = 256, 8, 5
GRID = [0, "4/255", "16/255"]
UNITS = 2 * (N // BATCH)  # fgsm + pgd, one threat model


@pytest.fixture(scope="module")
def data_root(fake_fmnist_writer, tmp_path_factory) -> Path:
    return fake_fmnist_writer(tmp_path_factory.mktemp("data"), 1024, N)


@pytest.fixture(scope="module")
def zoo(data_root, tmp_path_factory) -> Path:
    """A zoo store holding tiny/full-s0, trained through the CLI in a second (about 85% clean accuracy)."""
    root = tmp_path_factory.mktemp("zoo")
    recipe = root / "tiny.toml"
    recipe.write_text(textwrap.dedent(f"""
        variants = ["full"]
        seeds = [0]
        epochs = 3
        batch_size = 64
        eval_batch_size = 256
        device = "cpu"
        [data]
        name = "fashion-mnist"
        root = "{data_root}"
        [model]
        name = "convmixer_16_2_ks3_p4"
        [optimizer]
        lr = 0.05
    """))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert cli.main(["train", str(recipe), "--out", str(root / "store"), "--quiet"]) == 0
    finally:
        torch.set_num_threads(threads)
    return root / "store"


@pytest.fixture(scope="module")
def spec_file(zoo, data_root, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("spec") / "shard.toml"
    path.write_text(textwrap.dedent(f"""
        models = ["tiny/*"]
        store = "{zoo}"
        seed = {SEED}
        [data]
        n = {N}
        batch_size = {BATCH}
        root = "{data_root}"
        [threat.Linf]
        eps = {json.dumps(GRID)}
        [[attacks]]
        name = "fgsm"
        [[attacks]]
        name = "pgd"
        steps = 10
        random_start = true
    """))
    return path


def quiet(*args, **kwargs):
    pass


def eval_in_one_process(spec: Path, results: Path) -> None:
    """`robustmix eval` in this process on one thread, as the torchrun ranks run (bit-equal)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_eval(load_spec(spec), results, device="cpu", progress=False, log=quiet)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def reference(spec_file, tmp_path_factory) -> Path:
    """The single-process run every sharded one must equal."""
    out = tmp_path_factory.mktemp("ref") / "results"
    eval_in_one_process(spec_file, out)
    assert len(unit_files(out)) == UNITS
    return out


def unit_files(results: Path) -> list[Path]:
    return sorted((results / "examples").glob("*.parquet"))


def read_examples(results: Path) -> pd.DataFrame:
    df = pd.concat([pd.read_parquet(f) for f in unit_files(results)], ignore_index=True)
    assert not df.duplicated(KEY).any(), f"duplicate per-example rows in {results}"
    return df.drop(columns=["seconds"]).sort_values(KEY).reset_index(drop=True)


def read_summary(results: Path) -> pd.DataFrame:
    return pd.read_parquet(results / "summary.parquet").drop(columns=["seconds"])


def assert_same_as_reference(results: Path, reference: Path) -> None:
    assert [p.name for p in unit_files(results)] == [p.name for p in unit_files(reference)]
    pd.testing.assert_frame_equal(read_examples(results), read_examples(reference))
    pd.testing.assert_frame_equal(read_summary(results), read_summary(reference))
    for name in ("models.csv", "diagnostics.csv"):
        assert (results / name).read_text() == (reference / name).read_text()


# --- torchrun ----------------------------------------------------------------------------------

def torchrun(spec: Path, results: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
            "-m", "robustmix", "eval", str(spec), "--results", str(results), "--device", "cpu", *extra]


def env() -> dict:
    # One thread per process: results compare bit for bit with the in-process reference, and two
    # ranks fit two cores. A short collective timeout turns a hung barrier into a failure.
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "ROBUSTMIX_DIST_TIMEOUT_S": "120",
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}


def run_torchrun(spec: Path, results: Path, cwd: Path, *extra: str) -> subprocess.CompletedProcess:
    done = subprocess.run(torchrun(spec, results, *extra), env=env(), cwd=cwd, capture_output=True, text=True,
                          timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_two_ranks_equal_one_process(spec_file, reference, tmp_path):
    results = tmp_path / "results"
    done = run_torchrun(spec_file, results, tmp_path)
    assert_same_as_reference(results, reference)
    assert json.loads((results / "run.json").read_text())["world_size"] == 2
    assert json.loads((reference / "run.json").read_text())["world_size"] == 1
    # Each unit was computed by exactly one rank, and both ranks took a share.
    lines = [ln for ln in done.stdout.splitlines() if " robust/" in ln]
    assert len(lines) == UNITS
    units = [ln.split("] ", 1)[1].split(" robust/")[0] for ln in lines]
    assert len(set(units)) == UNITS
    per_rank = {r: sum(ln.startswith(f"[rank {r}/2] ") for ln in lines) for r in (0, 1)}
    assert per_rank == {0: UNITS // 2, 1: UNITS // 2}
    assert done.stdout.count("worst-case robust accuracy") == 1  # rank 0 alone reports


@pytest.mark.parametrize("rerun", ["torchrun", "one process"])
def test_killed_rank_fails_the_job_and_a_rerun_completes_it(spec_file, reference, tmp_path, worker_pids, rerun):
    """A rank killed mid-run fails the job; the same torchrun command, or a plain one-process
    eval (a store started with N processes can be finished with any other number), completes it."""
    results = tmp_path / "results"
    proc = subprocess.Popen(torchrun(spec_file, results, "--quiet"), env=env(), cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not unit_files(results):
            assert proc.poll() is None, f"eval exited early: {proc.stderr.read().decode()[-2000:]}"
            assert time.monotonic() < deadline, "no unit file appeared in time"
            time.sleep(0.005)
        os.kill(worker_pids(proc.pid)[1], signal.SIGKILL)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    assert proc.returncode != 0
    survivors = {p.name: p.stat().st_mtime_ns for p in unit_files(results)}
    assert 1 <= len(survivors) < UNITS, "the kill did not land mid-run"
    assert not (results / "summary.parquet").exists() and not (results / "run.json").exists()

    if rerun == "torchrun":
        run_torchrun(spec_file, results, tmp_path, "--quiet")
    else:
        eval_in_one_process(spec_file, results)
    # Finished units were kept, not recomputed.
    assert {n: (results / "examples" / n).stat().st_mtime_ns for n in survivors} == survivors
    assert_same_as_reference(results, reference)


# --- out-of-memory backoff ------------------------------------------------------------------------

class PerExample(nn.Module):
    """The model run one example at a time, so its outputs cannot depend on the batch.

    oneDNN and cuDNN pick kernels by batch size, which round differently (logits differ by ~1e-6
    between batches of 8 and 32 here); this isolates what the driver guarantees from that.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        return torch.cat([self.model(x[i:i + 1]) for i in range(len(x))])


class MemoryBound(nn.Module):
    """Stands in for a GPU that holds at most ``limit`` examples: CUDA's out-of-memory error above it."""

    def __init__(self, model: nn.Module, limit: int):
        super().__init__()
        self.model, self.limit = model, limit

    def forward(self, x):
        if x.shape[0] > self.limit:
            raise torch.cuda.OutOfMemoryError(f"CUDA out of memory. Tried to allocate {x.shape[0]} examples")
        return self.model(x)


def small_spec(data_root, models, **top) -> EvalSpec:
    return from_dict(EvalSpec, {"name": "t", "models": list(models), "seed": SEED,
                                "data": {"n": 64, "batch_size": 32, "root": str(data_root)},
                                "threat": {"Linf": {"eps": GRID}},
                                "attacks": [{"name": "fgsm"}, {"name": "pgd", "steps": 5, "random_start": False}],
                                **top})


def test_out_of_memory_halves_the_attack_batch_and_carries_on(zoo, data_root, tmp_path):
    base = PerExample(ModelStore(zoo).load(MODEL)[0])
    # "after" runs once the attack batch has backed off: it inherits the smaller batch.
    models = {"plain": base, "bounded": MemoryBound(base, 8), "after": PerExample(base.model)}
    messages = []
    run_eval(small_spec(data_root, models), tmp_path / "r", models=models, device="cpu", progress=False,
             log=messages.append)
    ex = pd.concat([pd.read_parquet(f) for f in unit_files(tmp_path / "r")], ignore_index=True)
    assert ex.groupby("model")["attack_batch"].unique().map(list).to_dict() == {
        "plain": [32], "bounded": [8], "after": [8]}
    # Halved twice (32 -> 16 -> 8) on the first unit only; the other units start at 8.
    backoffs = [m for m in messages if "out of memory" in m and "probe" not in m]
    assert [m.split("retrying ")[1] for m in backoffs] == ["16 examples at a time", "8 examples at a time"]
    assert all("attack batch 8" in m for m in messages if m.startswith("bounded ") and " robust/" in m)
    # PGD without random start and FGSM are deterministic: the same per-example results at any batch.
    cols = ["attack", "threat_model", "eps", "index", "label", "correct", "clean_correct", "margin", "passes"]
    per_model = {m: g[cols].sort_values(cols[:4]).reset_index(drop=True) for m, g in ex.groupby("model")}
    pd.testing.assert_frame_equal(per_model["bounded"], per_model["plain"])
    pd.testing.assert_frame_equal(per_model["after"], per_model["plain"])
    plain = per_model["plain"]
    assert plain.loc[plain["eps"] == 16 / 255, "correct"].sum() < plain.loc[plain["eps"] == 0, "correct"].sum()


def test_out_of_memory_at_one_example_is_a_one_line_error():
    tried = []

    def run(size):
        tried.append(size)
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore detail")

    with pytest.raises(DeviceMemoryError, match="even one example at a time") as info:
        with_backoff(run, 4, torch.device("cpu"), "m pgd Linf [0:4]", quiet)
    assert tried == [4, 2, 1]
    assert "\n" not in str(info.value) and "Tried to allocate 2.00 GiB" in str(info.value)


# --- precision --------------------------------------------------------------------------------------

def test_unknown_precision_names_the_key(data_root, spec_file, tmp_path, capsys):
    with pytest.raises(ConfigError, match="precision: unknown value 'fp16'; choose one of: fp32, bf16"):
        small_spec(data_root, ["m"], precision="fp16")
    with pytest.raises(ConfigError, match="precision: unknown value 'fp16'"):
        make_attack("pgd", {}, "Linf", "fp16")
    assert cli.main(["eval", str(spec_file), "--precision", "fp16", "--results", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("robustmix: error: precision: unknown value 'fp16'") and err.count("\n") == 1


def old_unit_key(zoo, attack: str, params: dict, start: int, *extra) -> str:
    """A unit key as robustmix computed it before precision existed (plus ``extra`` parts)."""
    grid = sorted({0.0, 4 / 255, 16 / 255})
    return stable_hash([MODEL, ModelStore(zoo).meta(MODEL)["weights_sha256"], attack, params, None, "Linf", grid,
                        ["fashion-mnist", "test", N, SEED], start, min(start + BATCH, N), True, STORE_VERSION,
                        *extra])[:32]


class TF32Spy(nn.Module):
    """Records the TF32 switches the model's forward runs under."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model, self.seen = model, set()

    def forward(self, x):
        self.seen.add((torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32))
        return self.model(x)


def test_bf16_search_with_fp32_verdicts(zoo, data_root, spec_file, reference, tmp_path):
    pgd = {"steps": 10, "random_start": True}
    starts = range(0, N, BATCH)
    # fp32 (the default) keeps the keys of stores written before precision existed.
    assert {p.stem for p in unit_files(reference)} == {
        old_unit_key(zoo, a, params, s) for a, params in (("fgsm", {}), ("pgd", pgd)) for s in starts}
    assert (read_examples(reference)["precision"] == "fp32").all()
    assert (read_summary(reference)["precision"] == "fp32").all()

    spec = load_spec(spec_file, {"precision": "bf16"})
    assert spec.spec_hash() != load_spec(spec_file).spec_hash()
    run_eval(spec, tmp_path / "bf16", device="cpu", progress=False, log=quiet)
    assert {p.stem for p in unit_files(tmp_path / "bf16")} == {
        old_unit_key(zoo, a, params, s, "bf16") for a, params in (("fgsm", {}), ("pgd", pgd)) for s in starts}
    ex, ref = read_examples(tmp_path / "bf16"), read_examples(reference)
    assert (ex["precision"] == "bf16").all()
    summary = read_summary(tmp_path / "bf16")
    assert (summary["precision"] == "bf16").all() and WORST_CASE in set(summary["attack"])
    # The search ran in bf16 (it found other adversarial inputs), but verdicts are the fp32 model's:
    # eps 0 is the same clean pass.
    assert not ex.loc[ex["eps"] > 0, "margin"].equals(ref.loc[ref["eps"] > 0, "margin"])
    clean = ["index", "attack", "correct", "clean_correct", "margin"]
    pd.testing.assert_frame_equal(ex.loc[ex["eps"] == 0, clean], ref.loc[ref["eps"] == 0, clean])

    # TF32 is off while the eval runs and as the caller had it afterwards. The caller switches
    # both on first (matmul TF32 is off by default), so each must really be switched off.
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        spy = TF32Spy(ModelStore(zoo).load(MODEL)[0])
        run_eval(small_spec(data_root, ["spy"]), tmp_path / "spy", models={"spy": spy}, device="cpu",
                 progress=False, log=quiet)
        assert spy.seen == {(False, False)}
        assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == (True, True)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before
