"""Fuzz: broken versions of every shipped recipe (zoo/*.toml) and spec (evals/*.toml), and of the files of
result and checkpoint stores, through train / eval / report / export / zoo.

Every mutation is invalid by construction (random bytes that are not UTF-8, a file cut after `key =`, a
required key deleted, a table where a scalar or list belongs, an unknown key, a number out of its range,
broken JSON or parquet), and each one is first shown to fail validation in the library, while the
unmutated file passes it, so the test tells "rejected" from "accepted". Through the CLI each must exit 2
with one line on stderr, no traceback, and leave no file or folder behind. Nothing trains or attacks:
every case fails while its input is read. Seeded, and bounded by a case count and a wall-time budget.
"""
from __future__ import annotations

import contextlib
import dataclasses
import importlib
import io
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
import tomllib
import types
import typing
from pathlib import Path

import pytest
import torch

from robustmix import build_variant, cli
from robustmix.errors import RobustmixError
from robustmix.recipe import Recipe, load_recipe, recipe_task
from robustmix.results import load_results
from robustmix.spec import EvalSpec, load_spec
from robustmix.store import ModelStore
from robustmix.paper.unshuffle import load_unshuffle_recipe

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
fx = importlib.import_module("fixtures_results")

SEED = 14
MAX_CASES = 400     # in-process cases in all, the first pass over every (file, kind) included
BUDGET_S = 10.0     # wall time for the random cases after the first pass (which takes ~8 s alone)
RECIPES = sorted((REPO / "zoo").glob("*.toml"))
SPECS = sorted((REPO / "evals").glob("*.toml"))
TOML_KINDS = ("random bytes", "truncated", "deleted key", "wrong type", "unknown key", "out of range")

# Keys whose absence is an error (documented rules, not read off the code under test).
REQUIRED = {"recipe": [("model", "name"), ("model",)], "spec": [("threat",), ("attacks",), ("models",)]}
# Numbers outside their documented range.
OUT_OF_RANGE = {
    "recipe": [(("epochs",), -1), (("batch_size",), 0), (("eval_batch_size",), -3), (("seeds",), [-1]),
               (("seeds",), [2**40]), (("optimizer", "lr"), -0.01), (("optimizer", "momentum"), 1.5),
               (("optimizer", "label_smoothing"), 2.0), (("optimizer", "weight_decay"), -1.0),
               (("data", "train_subset"), 0)],
    "spec": [(("seed",), -1), (("seed",), 2**40), (("data", "n"), 0), (("data", "n"), -5),
             (("data", "batch_size"), 0)],
}


# --- TOML in and out -------------------------------------------------------------------------------------

def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # JSON's escapes are TOML basic-string escapes
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(type(v))


def toml_text(data: dict) -> str:
    """Every key at the top level, tables inline: valid TOML for any parsed document."""
    return "".join(f"{json.dumps(k)} = {_toml_value(v)}\n" for k, v in data.items())


def schema_of(kind: str, data: dict) -> type:
    if kind == "spec":
        return EvalSpec
    return Recipe  # classifier and un-shuffling recipes alike


def validate(kind: str, path: Path) -> None:
    """What the CLI checks before it starts: raises a RobustmixError for a bad file."""
    if kind == "spec":
        load_spec(path)
    elif recipe_task(path) == "unshuffle":
        load_unshuffle_recipe(path)
    else:
        load_recipe(path)


def _accepts_table(hint) -> bool:
    origin = typing.get_origin(hint)
    if hint is typing.Any or hint is dict or origin is dict or dataclasses.is_dataclass(hint):
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_accepts_table(a) for a in typing.get_args(hint))
    return False


def _strict_tables(data: dict, cls: type, prefix=()):
    """(path, table, dataclass) of every table of the document that a dataclass reads strictly."""
    yield prefix, data, cls
    hints = typing.get_type_hints(cls)
    for key, value in data.items():
        if isinstance(value, dict) and dataclasses.is_dataclass(hints.get(key)):
            yield from _strict_tables(value, hints[key], prefix + (key,))


def _set(data: dict, path: tuple, value) -> None:
    for key in path[:-1]:
        data = data.setdefault(key, {})
    data[path[-1]] = value


def mutate(kind: str, text: str, how: str, rng: random.Random) -> bytes:
    if how == "random bytes":  # 0xff never occurs in UTF-8
        return b"\xff" + bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 400)))
    if how == "truncated":  # cut right after `key =`: a key without a value is a syntax error
        cuts = [m.end() for m in re.finditer(r"^[ \t]*[A-Za-z_][A-Za-z0-9_]*[ \t]*=", text, re.M)]
        return text[:rng.choice(cuts)].encode()
    data = tomllib.loads(text)
    cls = schema_of(kind, data)
    if how == "deleted key":
        choices = [p for p in REQUIRED[kind] if not (p == ("models",) and data.get("external"))
                   and not (p == ("attacks",) and "attacks" not in data)]  # a spec of common corruptions only
        path = rng.choice(choices)
        table = data
        for key in path[:-1]:
            table = table[key]
        table.pop(path[-1], None)
    elif how == "wrong type":  # a table where the schema wants a scalar or a list
        leaves = [(prefix + (k,)) for prefix, table, c in _strict_tables(data, cls)
                  for k in table if not _accepts_table(typing.get_type_hints(c)[k])]
        _set(data, rng.choice(leaves), {"fuzz": 1})
    elif how == "unknown key":
        prefix, table, _ = rng.choice(list(_strict_tables(data, cls)))
        table[f"fuzz_unknown_{rng.randrange(1000)}"] = rng.choice([1, "x", [1], {"a": 1}])
    elif how == "out of range":
        path, value = rng.choice(OUT_OF_RANGE[kind])
        _set(data, path, value)
    else:
        raise ValueError(how)
    return toml_text(data).encode()


# --- running one case ---------------------------------------------------------------------------------

def snapshot(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}


def run_in_process(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        try:
            rc = cli.main([str(a) for a in argv])
        except SystemExit as exc:  # argparse
            rc = exc.code
    return rc, err.getvalue()


def assert_clean_failure(rc, err: str, what: str) -> None:
    assert rc == 2, f"{what}: exit {rc}, stderr {err[-2000:]!r}"
    assert err.startswith("robustmix") and err.count("\n") == 1 and err.endswith("\n"), f"{what}: {err!r}"
    assert "Traceback" not in err, f"{what}: {err!r}"


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A working directory, and environment defaults that point into it, where nothing can train."""
    for d in ("cwd", "zoo", "data", "fmnist-src"):
        (tmp_path / d).mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    monkeypatch.setenv("ROBUSTMIX_ZOO", str(tmp_path / "zoo"))
    monkeypatch.setenv("ROBUSTMIX_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("ROBUSTMIX_FASHION_MNIST_SRC", str(tmp_path / "fmnist-src"))
    return tmp_path


def toml_case(kind: str, source: Path, how: str, rng: random.Random, work: Path, n: int) -> None:
    path = work / "inputs" / f"{n:04d}-{source.name}"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(mutate(kind, source.read_text(), how, rng))
    with pytest.raises(RobustmixError):  # invalid by construction: the library must say so too
        validate(kind, path)
    out = work / "out"
    argv = (["train", path, "--out", out / "zoo"] if kind == "recipe"
            else ["eval", path, "--results", out / "results", "--store", work / "zoo"])
    before = snapshot(work)
    rc, err = run_in_process(argv)
    assert_clean_failure(rc, err, f"{how} of {source.name} ({path})")
    assert snapshot(work) == before, f"{how} of {source.name} left files behind"


# --- store files --------------------------------------------------------------------------------------

def _garbage(rng, n=300) -> bytes:
    return bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, n)))


def _json_mutation(text: str, rng: random.Random, required: list[str], wrong: dict) -> str:
    how = rng.choice(["garbage", "truncated", "deleted", "wrong"])
    data = json.loads(text)
    if how == "garbage":
        return "\x00{" + _garbage(rng).hex()
    if how == "truncated":
        return text[:rng.randrange(1, len(text) - 1)].rstrip("}")
    if how == "deleted":
        data.pop(rng.choice(required))
    else:
        key = rng.choice(list(wrong))
        data[key] = wrong[key]
    return json.dumps(data)


def results_case(pristine: Path, rng: random.Random, work: Path, n: int) -> None:
    results = work / "stores" / f"r{n:04d}"
    shutil.copytree(pristine, results)
    target = rng.choice(["store.json", "summary.parquet", "unit"])
    if target == "store.json":
        marker = results / "store.json"
        marker.write_text(_json_mutation(marker.read_text(), rng, ["format", "version"],
                                         {"format": "other-tool", "version": "one"}))
    else:
        path = results / "summary.parquet" if target == "summary.parquet" else rng.choice(
            sorted((results / "examples").glob("*.parquet")))
        blob = path.read_bytes()
        path.write_bytes(blob[:rng.randrange(0, len(blob) - 8)] if rng.random() < 0.5 else _garbage(rng))
    with pytest.raises(RobustmixError):
        load_results(results)
    out = work / "out"
    argv = rng.choice([["report", results, "--out", out / "report"],
                       ["export", results, "--leaderboard", out / "lb.csv"],
                       ["export", results, "--robustbench", out / "rb"]])
    before = snapshot(work)
    rc, err = run_in_process(argv)
    assert_clean_failure(rc, err, f"{argv[0]} of a broken {target} ({results})")
    assert snapshot(work) == before


def zoo_case(pristine: Path, rng: random.Random, work: Path, n: int) -> None:
    store = work / "stores" / f"z{n:04d}"
    shutil.copytree(pristine, store)
    folder = store / "fz" / "full-s0"
    if rng.random() < 0.25:  # the weights: only show reads them
        (folder / "weights.safetensors").write_bytes(_garbage(rng))
        commands = [["show", "fz/full-s0"]]
    else:
        meta = folder / "meta.json"
        meta.write_text(_json_mutation(meta.read_text(), rng, ["variant", "seed", "params", "metrics", "dataset",
                                                               "model", "format", "weights_sha256"],
                                       {"format_version": 99, "format": "pickle"}))
        commands = [["list"], ["show", "fz/full-s0"]]
    with pytest.raises(RobustmixError):  # what zoo list reads (meta) and then what show loads
        ModelStore(store).meta("fz/full-s0")
        ModelStore(store).load("fz/full-s0")
    for command in commands:
        before = snapshot(work)
        rc, err = run_in_process(["zoo", "--store", store, *command])
        assert_clean_failure(rc, err, f"zoo {command[0]} of a broken checkpoint ({store})")
        assert snapshot(work) == before


def _pristine_stores(work: Path) -> tuple[Path, Path]:
    results = fx.write_store(work / "pristine" / "results", fx.CONVMIXER[:2], threat_models={"Linf": fx.LINF_EPS[:3]},
                             attacks=("fgsm", "pgd"), n=20, bank_shape=None)
    load_results(results)  # the unmutated store reads
    zoo = ModelStore(work / "pristine" / "zoo")
    torch.manual_seed(0)
    model = build_variant("convmixer_16_2_ks3_p4", "full")
    zoo.save("fz/full-s0", model, {
        "model": {"name": "convmixer_16_2_ks3_p4", "args": model.model_args}, "variant": "full",
        "variant_params": {}, "variant_seed": 0, "seed": 0,
        "dataset": {"name": "fashion-mnist", "channels": 1, "image_size": [28, 28], "num_classes": 10},
        "metrics": {"clean_acc": 0.1}, "params": 1, "trainable_params": 1, "seconds": 0.0, "created": "now"})
    zoo.load("fz/full-s0")  # the unmutated checkpoint loads
    assert run_in_process(["zoo", "--store", zoo.root, "list"])[0] == 0
    return results, zoo.root


# --- the test -----------------------------------------------------------------------------------------

def _start_subprocesses(work: Path, fake_fmnist: Path) -> dict:
    """A few real processes, for what in-process runs cannot see: warnings printed by imports."""
    rng = random.Random(SEED)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ROBUSTMIX_ZOO": str(work / "zoo"),
           "ROBUSTMIX_DATA": str(work / "data"), "ROBUSTMIX_FASHION_MNIST_SRC": str(work / "fmnist-src"),
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    env.pop("PYTHONWARNINGS", None)
    sub = work / "sub"
    sub.mkdir()
    (sub / "bad-recipe.toml").write_bytes(mutate("recipe", RECIPES[0].read_text(), "random bytes", rng))
    spec = tomllib.loads(SPECS[0].read_text())
    spec["fuzz_unknown"] = 1
    (sub / "bad-spec.toml").write_text(toml_text(spec))
    shutil.copytree(fx.write_store(work / "pristine-sub", fx.CONVMIXER[:1], threat_models={"Linf": [0.0]},
                                   attacks=("fgsm",), n=5, bank_shape=None), sub / "results")
    (sub / "results" / "store.json").write_bytes(_garbage(rng))
    (sub / "rb.toml").write_text(  # robustbench's import prints deprecation warnings; then a one-line error
        f'models = []\n[data]\nn = 4\nroot = "{fake_fmnist}"\n[[external]]\nname = "rb"\nrobustbench = "Standard"\n'
        'dataset = "mnist"\n[threat.Linf]\neps = [0]\n[[attacks]]\nname = "fgsm"\n')
    argvs = {"train random bytes": ["train", sub / "bad-recipe.toml", "--out", sub / "out-zoo"],
             "eval unknown key": ["eval", sub / "bad-spec.toml", "--results", sub / "out-results"],
             "report broken marker": ["report", sub / "results", "--out", sub / "out-report"],
             "eval importing robustbench": ["eval", sub / "rb.toml", "--results", sub / "out-rb"]}
    before = snapshot(sub)
    return {name: (subprocess.Popen([sys.executable, "-m", "robustmix", *map(str, argv)], cwd=sub, env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True), before, sub)
            for name, argv in argvs.items()}


def test_fuzzed_inputs_fail_cleanly_and_leave_nothing(workdir, fake_fmnist):
    t0 = time.monotonic()
    procs = _start_subprocesses(workdir, fake_fmnist)  # they run while the in-process cases do
    for source, kind in [(p, "recipe") for p in RECIPES] + [(p, "spec") for p in SPECS]:
        validate(kind, source)  # every shipped file is valid: the mutations are what breaks them
    assert len(RECIPES) >= 8 and len(SPECS) >= 4
    results, zoo = _pristine_stores(workdir)

    rng = random.Random(SEED)
    cases = [(kind, source, how) for kind, files in (("recipe", RECIPES), ("spec", SPECS))
             for source in files for how in TOML_KINDS]
    done = 0
    for kind, source, how in cases:  # every file x every kind once
        toml_case(kind, source, how, rng, workdir, done)
        done += 1
    for _ in range(12):
        results_case(results, rng, workdir, done)
        zoo_case(zoo, rng, workdir, done)
        done += 1
    first_pass = time.monotonic()
    while done < MAX_CASES and time.monotonic() - first_pass < BUDGET_S:
        pick = rng.random()
        if pick < 0.7:
            kind, source, how = rng.choice(cases)
            toml_case(kind, source, how, rng, workdir, done)
        elif pick < 0.85:
            results_case(results, rng, workdir, done)
        else:
            zoo_case(zoo, rng, workdir, done)
        done += 1
    assert done >= len(cases) + 12

    for name, (proc, before, sub) in procs.items():
        try:
            _, err = proc.communicate(timeout=max(5.0, 60 - (time.monotonic() - t0)))
        finally:
            proc.kill()
        assert_clean_failure(proc.returncode, err, f"subprocess {name}")
        assert "Warning" not in err and "warnings.warn" not in err, f"{name}: {err!r}"
        assert snapshot(sub) == before, f"subprocess {name} left files behind"
