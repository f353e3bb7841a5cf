"""The checkpoint store: where trained models are registered.

Layout (default root ``zoo/store``, or ``$ROBUSTMIX_ZOO``)::

    ROOT/<recipe>/<variant-tag>-s<seed>/weights.safetensors
    ROOT/<recipe>/<variant-tag>-s<seed>/meta.json      # written last: the commit marker
    ROOT/.partial/<recipe>/<variant-tag>-s<seed>/state.pt   # resume state while training

Weights are safetensors (loading cannot execute code); ``meta.json`` makes a
checkpoint self-describing (architecture, variant, seeds, recipe, metrics,
versions, sha256 of the weights) so ``load_model`` rebuilds it exactly and
refuses anything whose hash or format does not match.
"""
from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .errors import CheckpointError, ConfigError
from .fileio import atomic_path, write_json_atomic
from .tasks import task_class

CHECKPOINT_FORMAT = "robustmix-checkpoint"
CHECKPOINT_VERSION = 1
WEIGHTS = "weights.safetensors"
META = "meta.json"
# What `robustmix train` writes and `zoo list`, eval and train's skip read from every stored model,
# besides its task's test metric (metrics.clean_acc for a classifier, the default task).
STORE_META_FIELDS = ("weights_sha256", "model.name", "model.args", "variant", "variant_params", "seed",
                     "dataset.name", "params", "trainable_params", "seconds", "created")


def default_store_root() -> Path:
    return Path(os.environ.get("ROBUSTMIX_ZOO", "zoo/store")).resolve()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class ModelStore:
    root: Path

    def __post_init__(self):
        self.root = Path(self.root).resolve()

    # --- paths -----------------------------------------------------------
    def path(self, name: str) -> Path:
        if not name or name.startswith(("/", ".")) or ".." in Path(name).parts:
            raise ConfigError(f"invalid model name '{name}'; use RECIPE/VARIANT-sSEED as listed by `robustmix zoo list`")
        return self.root / name

    def partial_path(self, name: str) -> Path:
        return self.root / ".partial" / name

    # --- writing ---------------------------------------------------------
    def check_writable(self) -> None:
        check_writable_dir(self.root, "zoo store", "pass --out DIR or set ROBUSTMIX_ZOO to a writable directory")

    def save(self, name: str, model: torch.nn.Module, meta: dict) -> dict:
        """Write weights then meta.json, each atomically; meta.json commits."""
        folder = self.path(name)
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with atomic_path(folder / WEIGHTS) as tmp:
                save_file(state, str(tmp))
                digest = sha256_file(tmp)
            meta = {**meta, "format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_VERSION,
                    "name": name, "weights_sha256": digest}
            write_json_atomic(folder / META, meta)
        except OSError as exc:
            raise CheckpointError(f"cannot write checkpoint {folder} ({exc.strerror or exc}); "
                                  f"pass --out DIR or set ROBUSTMIX_ZOO to a writable directory") from None
        return meta

    def copy(self, source: str, name: str, meta: dict) -> dict:
        """Register ``source``'s weights under ``name`` with ``meta``: the weights are copied and
        checked against the source's sha256 before meta.json commits, so a corrupt source is never
        copied."""
        src = self.path(source)
        verify_checkpoint(src)
        folder = self.path(name)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with atomic_path(folder / WEIGHTS) as tmp:
                shutil.copyfile(src / WEIGHTS, tmp)
                if sha256_file(tmp) != meta["weights_sha256"]:  # raised here, the copy is discarded
                    raise CheckpointError(f"{src / WEIGHTS} changed while it was copied to {folder}; run again")
            meta = {**meta, "format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_VERSION, "name": name}
            write_json_atomic(folder / META, meta)
        except OSError as exc:
            raise CheckpointError(f"cannot write checkpoint {folder} ({exc.strerror or exc}); "
                                  f"pass --out DIR or set ROBUSTMIX_ZOO to a writable directory") from None
        return meta

    def clear_partial(self, name: str) -> None:
        """Drop a run's resume state, and the folders above it under .partial that it leaves empty."""
        folder = self.partial_path(name)
        shutil.rmtree(folder, ignore_errors=True)
        top = self.root / ".partial"
        for parent in folder.parents:
            if parent == top or top not in parent.parents:
                break
            try:
                parent.rmdir()
            except OSError:  # not empty: another run of this recipe is in progress
                break

    def remove(self, name: str) -> None:
        folder = self.path(name)
        if not (folder / META).exists():
            raise CheckpointError(f"no model '{name}' in {self.root}; see `robustmix zoo list`")
        shutil.rmtree(folder)
        self.clear_partial(name)

    # --- reading ---------------------------------------------------------
    def names(self, pattern: str = "*") -> list[str]:
        if not self.root.is_dir():
            return []
        found = []
        for meta in self.root.glob("**/" + META):
            rel = meta.parent.relative_to(self.root).as_posix()
            if not rel.startswith(".") and fnmatch.fnmatch(rel, pattern):
                found.append(rel)
        return sorted(found)

    def exists(self, name: str) -> bool:
        return (self.path(name) / META).is_file()

    def meta(self, name: str) -> dict:
        """A stored model's metadata, with every field that listing, eval and train read from it."""
        folder = self.path(name)
        if not (folder / META).is_file():
            raise CheckpointError(f"no model '{name}' in {self.root}; see `robustmix zoo list` or train it first")
        meta = read_meta(folder)
        metric = f"metrics.{task_class(meta.get('task', 'classify'), str(folder / META)).metric}"
        for key in STORE_META_FIELDS + (metric,):
            value = meta
            for part in key.split("."):
                value = value.get(part) if isinstance(value, dict) else None
            if value is None:  # a KeyError in a reader would be a traceback, not a named problem
                raise CheckpointError(f"{folder / META} has no {key}; the checkpoint is incomplete or was edited: "
                                      f"delete it and re-run `robustmix train`")
        return meta

    def load(self, name: str, device="cpu") -> tuple[torch.nn.Module, dict]:
        return load_checkpoint(self.path(name), device)


def check_writable_dir(path: Path, what: str, fix: str) -> None:
    """Check that ``path`` can be written, so a bad output location fails before training, without
    creating it: a run that fails later (unknown model, data that does not fit) leaves nothing."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise CheckpointError(f"{what} {path} is a file, not a directory; {fix}")
    if not path.exists():
        parent = path.parent
        while not parent.exists():
            parent = parent.parent
        if not parent.is_dir():
            raise CheckpointError(f"{what} {path} is not writable ({parent} is not a directory); {fix}")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise CheckpointError(f"{what} {path} is not writable (Permission denied at {parent}); {fix}")
        return
    try:
        probe = path / f".write-probe-{os.getpid()}"  # per process: two runs may probe one store at once
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise CheckpointError(f"{what} {path} is not writable ({exc.strerror or exc}); {fix}") from None


def read_meta(folder: Path) -> dict:
    path = Path(folder) / META
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{folder} is not a robustmix checkpoint (no {META}); "
                              f"pass a directory written by `robustmix train`") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise CheckpointError(f"{path} is corrupt (not JSON); delete it and re-run `robustmix train`") from None
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{folder} is not a robustmix checkpoint (foreign {META}); "
                              f"only directories written by `robustmix train` can be loaded")
    if meta.get("format_version") != CHECKPOINT_VERSION:
        raise CheckpointError(f"{folder} has checkpoint format {meta.get('format_version')}, this robustmix reads "
                              f"{CHECKPOINT_VERSION}; retrain it or use the robustmix version that wrote it")
    return meta


def verify_checkpoint(folder: str | Path) -> tuple[dict, dict]:
    """(meta, weights) of a checkpoint of any task, after checking its format and sha256.

    Never unpickles: weights are read with safetensors only, so a crafted
    file offered as a checkpoint cannot run code.
    """
    folder = Path(folder)
    if folder.is_file():
        raise CheckpointError(f"{folder} is not a robustmix checkpoint (expected a directory with {META} and "
                              f"{WEIGHTS}); robustmix never loads pickled files")
    meta = read_meta(folder)
    weights = folder / WEIGHTS
    if not weights.is_file():
        raise CheckpointError(f"{folder} has no {WEIGHTS}; the checkpoint is incomplete, re-run `robustmix train`")
    if not isinstance(meta.get("weights_sha256"), str):
        raise CheckpointError(f"{folder / META} has no weights_sha256, so the weights cannot be verified; "
                              f"delete {folder} and re-run `robustmix train`")
    digest = sha256_file(weights)
    if digest != meta.get("weights_sha256"):
        raise CheckpointError(f"{weights} does not match the sha256 in {META} (modified or corrupt); "
                              f"delete it and re-run `robustmix train`")
    try:
        state = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{weights} is not a readable safetensors file ({exc}); re-run `robustmix train`") from None
    return meta, state


def load_checkpoint(folder: str | Path, device="cpu") -> tuple[torch.nn.Module, dict]:
    """Rebuild a stored model the way its task builds it (classify unless meta.json says otherwise),
    then load its verified weights."""
    folder = Path(folder)
    meta, state = verify_checkpoint(folder)
    rebuild = task_class(meta.get("task", "classify"), str(folder / META)).rebuild
    try:
        model = rebuild(meta)
        model.load_state_dict(state, strict=True)
    except (KeyError, TypeError, RuntimeError) as exc:
        raise CheckpointError(f"{folder}: metadata and weights do not describe one model ({exc.__class__.__name__}); "
                              f"re-run `robustmix train`") from None
    model.checkpoint_meta = meta
    return model.to(device).eval(), meta
