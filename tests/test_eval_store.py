"""The result store under `robustmix eval` in subprocesses: kill -9 and resume, concurrent writers,
and stores that cannot be used (unwritable, another version)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from io import BytesIO
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn

from robustmix import cli
from robustmix.config import from_dict
from robustmix.errors import StoreError
from robustmix.evaluate import run_eval
from robustmix.recipe import DataSection, ModelSection, Recipe
from robustmix.schema import STORE_FORMAT, STORE_VERSION
from robustmix.spec import EvalSpec
from robustmix.store import ModelStore
from robustmix.train import train_recipe

REPO = Path(__file__).resolve().parents[1]
KEY = ["model", "attack", "threat_model", "eps", "index"]
N, BATCH = 480, 12
UNITS = 2 * (N // BATCH)  # fgsm + pgd, one threat model


@pytest.fixture(scope="module")
def zoo(real_fmnist, tmp_path_factory) -> Path:
    """A zoo store with one briefly trained checkpoint, tiny/full-s0."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("zoo")
    recipe = Recipe(name="tiny", data=DataSection(root=str(real_fmnist), train_subset=4096),
                    model=ModelSection(name="convmixer_16_2_ks3_p4"), epochs=1, batch_size=64,
                    eval_batch_size=2000, device="cpu")
    try:
        (result,) = train_recipe(recipe, ModelStore(root), progress=False)
    finally:
        torch.set_num_threads(threads)
    assert result.name == "tiny/full-s0" and result.clean_acc > 0.3
    return root


@pytest.fixture(scope="module")
def spec_file(zoo, real_fmnist, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("spec") / "resume.toml"
    path.write_text(textwrap.dedent(f"""
        models = ["tiny/*"]
        store = "{zoo}"
        seed = 5
        [data]
        n = {N}
        batch_size = {BATCH}
        root = "{real_fmnist}"
        [threat.Linf]
        eps = [0, "4/255", "16/255"]
        [[attacks]]
        name = "fgsm"
        [[attacks]]
        name = "pgd"
        steps = 10
        random_start = true
    """))
    return path


def eval_cmd(spec: Path, results: Path) -> list[str]:
    return [sys.executable, "-m", "robustmix", "eval", str(spec), "--results", str(results), "--quiet",
            "--device", "cpu"]


def env() -> dict:
    # One thread everywhere: results compare bit for bit, and two concurrent runs fit 2 cores.
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}


def run_cli(spec: Path, results: Path, cwd: Path) -> subprocess.CompletedProcess:
    done = subprocess.run(eval_cmd(spec, results), env=env(), cwd=cwd, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def unit_files(results: Path) -> list[Path]:
    return sorted((results / "examples").glob("*.parquet"))


def read_examples(results: Path) -> pd.DataFrame:
    df = pd.concat([pd.read_parquet(f) for f in unit_files(results)], ignore_index=True)
    dup = df.duplicated(KEY)
    assert not dup.any(), f"{int(dup.sum())} duplicate per-example rows in {results}"
    return df.drop(columns=["seconds"]).sort_values(KEY).reset_index(drop=True)


def read_summary(results: Path) -> pd.DataFrame:
    return pd.read_parquet(results / "summary.parquet").drop(columns=["seconds"])


@pytest.fixture(scope="module")
def reference(spec_file, tmp_path_factory) -> Path:
    """An uninterrupted run."""
    out = tmp_path_factory.mktemp("ref")
    done = run_cli(spec_file, out / "results", out)
    assert "worst-case robust accuracy" in done.stdout
    assert len(unit_files(out / "results")) == UNITS
    return out / "results"


def assert_same_as_reference(results: Path, reference: Path) -> None:
    assert [p.name for p in unit_files(results)] == [p.name for p in unit_files(reference)]
    a, b = read_examples(results), read_examples(reference)
    assert len(a) == N * 3 * 2
    pd.testing.assert_frame_equal(a, b)
    pd.testing.assert_frame_equal(read_summary(results), read_summary(reference))
    for name in ("models.csv", "diagnostics.csv"):
        assert (results / name).read_text() == (reference / name).read_text()
    assert not list((results / "examples").glob(".*"))  # no temp files left behind by finished runs


def test_reference_run_is_complete(reference):
    s = read_summary(reference)
    assert set(s["model"]) == {"tiny/full-s0"} and (s["n"] == N).all()
    assert set(s["attack"]) == {"fgsm", "pgd", "worst-case"}
    run = json.loads((reference / "run.json").read_text())
    assert run["n_examples"] == N and run["eval_seed"] == 5
    assert json.loads((reference / "store.json").read_text()) == {"format": STORE_FORMAT, "version": STORE_VERSION}


@pytest.mark.slow
def test_kill_9_then_resume_equals_uninterrupted(spec_file, reference, tmp_path):
    results = tmp_path / "results"
    proc = subprocess.Popen(eval_cmd(spec_file, results), env=env(), cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        while not unit_files(results):
            assert proc.poll() is None, f"eval exited early: {proc.stderr.read().decode()[-2000:]}"
            assert time.monotonic() < deadline, "no unit file appeared in time"
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    survivors = {p.name: p.stat().st_mtime_ns for p in unit_files(results)}
    assert 1 <= len(survivors) < UNITS, "the kill did not land mid-run"
    assert not (results / "run.json").exists()
    for p in unit_files(results):  # every unit on disk is complete
        assert len(pd.read_parquet(p)) == BATCH * 3

    run_cli(spec_file, results, tmp_path)
    # Finished units were kept, not recomputed.
    assert {n: (results / "examples" / n).stat().st_mtime_ns for n in survivors} == survivors
    assert_same_as_reference(results, reference)


@pytest.mark.slow
def test_concurrent_writers_equal_a_single_run(spec_file, reference, tmp_path):
    results = tmp_path / "results"
    procs = [subprocess.Popen(eval_cmd(spec_file, results), env=env(), cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    assert_same_as_reference(results, reference)


# --- stores that cannot be used --------------------------------------------------

def _spec(tmp_path, **top):
    return from_dict(EvalSpec, {"name": "t", "models": ["m"], "data": {"n": 8, "root": str(tmp_path / "nodata")},
                                "threat": {"Linf": {"eps": [0]}}, "attacks": [{"name": "fgsm"}], **top})


def _write_spec(tmp_path) -> Path:
    path = tmp_path / "s.toml"
    path.write_text('models = ["m"]\n[data]\nn = 8\n[threat.Linf]\neps = [0]\n[[attacks]]\nname = "fgsm"\n')
    return path


def _run(spec, results):
    return run_eval(spec, results, models={"m": nn.Linear(784, 10)}, device="cpu", progress=False,
                    log=lambda *a: None)


def test_results_dir_not_writable(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("a regular file")
    with pytest.raises(StoreError, match="is not writable") as info:
        _run(_spec(tmp_path), blocker / "results")
    assert "\n" not in str(info.value) and "--results" in str(info.value)
    assert cli.main(["eval", str(_write_spec(tmp_path)), "--results", str(blocker / "results"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("robustmix: error: ") and "not writable" in err and err.count("\n") == 1


@pytest.mark.parametrize("marker, match", [
    ({"format": STORE_FORMAT, "version": STORE_VERSION + 1}, f"store version {STORE_VERSION + 1}"),
    ({"format": STORE_FORMAT, "version": STORE_VERSION - 1}, "into a fresh --results DIR"),
    ({"format": "something-else", "version": STORE_VERSION}, "is not a robustmix result store"),
    (None, "missing or corrupt"),
])
def test_store_of_another_version_or_format(tmp_path, capsys, marker, match):
    results = tmp_path / "results"
    results.mkdir()
    (results / "store.json").write_text("{not json" if marker is None else json.dumps(marker))
    with pytest.raises(StoreError, match=match) as info:
        _run(_spec(tmp_path), results)
    assert "\n" not in str(info.value)
    assert cli.main(["eval", str(_write_spec(tmp_path)), "--results", str(results), "--quiet"]) == 2
    assert match in capsys.readouterr().err
    assert not list((results / "examples").glob("*.parquet"))


def test_version_edit_of_a_real_store(reference, tmp_path):
    import shutil

    results = tmp_path / "copy"
    shutil.copytree(reference, results)
    marker = json.loads((results / "store.json").read_text())
    marker["version"] = STORE_VERSION + 1
    (results / "store.json").write_text(json.dumps(marker))
    with pytest.raises(StoreError, match="use a new --results DIR"):
        _run(_spec(tmp_path), results)


# --- damaged units, stale temp files, failed evals: fast, in one process ---------------------------------------

def _small_spec(data_root, n=8, batch=4) -> EvalSpec:
    return from_dict(EvalSpec, {"name": "t", "models": ["m"], "seed": 3,
                                "data": {"n": n, "batch_size": batch, "root": str(data_root)},
                                "threat": {"Linf": {"eps": [0, "8/255"]}}, "attacks": [{"name": "fgsm"}]})


def _linear() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 10))


def _eval_small(data_root, results, log=lambda *a: None):
    return run_eval(_small_spec(data_root), results, models={"m": _linear()}, device="cpu", progress=False, log=log)


@pytest.mark.parametrize("damage", ["truncated", "bit flip in the rows", "foreign parquet", "another unit's file"])
def test_corrupt_unit_is_recomputed_on_eval_and_named_by_report_and_export(fake_fmnist, tmp_path, capsys, damage):
    from robustmix.results import ResultStore

    results = tmp_path / "results"
    summary = _eval_small(fake_fmnist, results)
    units = unit_files(results)
    assert len(units) == 2
    victim, other = units
    good = victim.read_bytes()
    if damage == "truncated":
        victim.write_bytes(good[:len(good) // 2])
    elif damage == "bit flip in the rows":  # flip one `correct` value, then rewrite: readable, parquet-valid
        df = pd.read_parquet(victim)
        df.loc[0, "correct"] = not df.loc[0, "correct"]
        import pyarrow as pa
        import pyarrow.parquet as pq
        pq.write_table(pa.Table.from_pandas(df, preserve_index=False, schema=pq.read_schema(victim)), victim)
    elif damage == "foreign parquet":
        pd.DataFrame({"a": [1, 2]}).to_parquet(victim)
    else:
        victim.write_bytes(other.read_bytes())
    assert not ResultStore(results).has_unit(victim.stem)

    for argv in (["report", str(results), "--out", str(tmp_path / "rep")],
                 ["export", str(results), "--leaderboard", str(tmp_path / "lb.csv")]):
        assert cli.main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and str(victim) in err and "re-run the same `robustmix eval`" in err, err
    assert not (tmp_path / "rep").exists() and not (tmp_path / "lb.csv").exists()

    good_rows = pd.read_parquet(BytesIO(good)).drop(columns="seconds")
    again = run_eval(_small_spec(fake_fmnist), results, models={"m": _linear()}, device="cpu", progress=False,
                     log=lambda *a: None)
    err = capsys.readouterr().err
    assert f"robustmix: warning: {victim} is corrupt" in err and "recomputing it" in err, err
    # Recomputed: the same rows (all but the timing), and the store reads again.
    pd.testing.assert_frame_equal(pd.read_parquet(victim).drop(columns="seconds"), good_rows)
    pd.testing.assert_frame_equal(again.drop(columns="seconds"), summary.drop(columns="seconds"))
    assert cli.main(["report", str(results), "--out", str(tmp_path / "rep")]) == 0


def test_units_written_before_the_record_still_count(fake_fmnist, tmp_path, capsys):
    from robustmix.results import UNIT_RECORD, ResultStore

    results = tmp_path / "results"
    _eval_small(fake_fmnist, results)
    for path in unit_files(results):  # as the previous version wrote them: plain to_parquet, no record
        pd.read_parquet(path).to_parquet(path, index=False)
        import pyarrow.parquet as pq
        assert UNIT_RECORD not in (pq.read_schema(path).metadata or {})
    before = {p: p.stat().st_mtime_ns for p in unit_files(results)}
    assert all(ResultStore(results).has_unit(p.stem) for p in before)
    logged = []
    _eval_small(fake_fmnist, results, log=logged.append)
    assert not [line for line in logged if "robust/" in line]  # nothing recomputed
    assert {p: p.stat().st_mtime_ns for p in unit_files(results)} == before
    assert "warning" not in capsys.readouterr().err
    assert cli.main(["report", str(results), "--out", str(tmp_path / "rep")]) == 0


def test_stale_temp_files_of_dead_writers_are_removed(fake_fmnist, tmp_path):
    import socket

    from robustmix.fileio import STALE_TEMP_SECONDS

    results = tmp_path / "results"
    _eval_small(fake_fmnist, results)
    examples = results / "examples"
    host = socket.gethostname()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    old = time.time() - STALE_TEMP_SECONDS - 60
    files = {  # name -> (mtime, removed?)
        f".a.parquet.x1y2z3.{dead}@{host}.tmp": (None, True),         # this host, writer gone
        f".b.parquet.x1y2z3.{os.getpid()}@{host}.tmp": (old, False),  # this host, writer alive (even if old)
        ".c.parquet.x1y2z3.12345@elsewhere.tmp": (None, False),        # another host, recent: may be writing
        ".d.parquet.x1y2z3.12345@elsewhere.tmp": (old, True),          # another host, an hour old
        ".e.parquet.x1y2z3.tmp": (None, False),                         # the old naming, recent
        ".f.parquet.x1y2z3.tmp": (old, True),                           # the old naming, an hour old
    }
    for name, (mtime, _) in files.items():
        (examples / name).write_bytes(b"half a unit")
        if mtime is not None:
            os.utime(examples / name, (mtime, mtime))
    _eval_small(fake_fmnist, results)
    left = {p.name for p in examples.glob(".*")}
    assert left == {name for name, (_, removed) in files.items() if not removed}


def test_eval_that_fails_on_a_bad_checkpoint_creates_no_store(fake_fmnist, tmp_path, capsys):
    zoo = ModelStore(tmp_path / "zoo")
    recipe = Recipe(name="tiny", data=DataSection(root=str(fake_fmnist), train_subset=64),
                    model=ModelSection(name="convmixer_16_2_ks3_p4"), epochs=1, batch_size=64, device="cpu")
    (done,) = train_recipe(recipe, zoo, progress=False)
    weights = zoo.path(done.name) / "weights.safetensors"
    blob = bytearray(weights.read_bytes())
    blob[-1] ^= 0xFF
    weights.write_bytes(bytes(blob))
    spec = tmp_path / "s.toml"
    spec.write_text(f'models = ["tiny/*"]\nstore = "{zoo.root}"\n[data]\nn = 8\nroot = "{fake_fmnist}"\n'
                    '[threat.Linf]\neps = [0]\n[[attacks]]\nname = "fgsm"\n')
    results = tmp_path / "results"
    assert cli.main(["eval", str(spec), "--results", str(results), "--quiet", "--device", "cpu"]) == 2
    assert "sha256" in capsys.readouterr().err
    assert not results.exists()
