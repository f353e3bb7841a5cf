"""Saved adversarial examples: one safetensors file per work unit, the one reader and writer.

``RESULTS/adversarials/<unit key>.safetensors`` (written when a spec sets
``save_adversarials = true``) holds one unit's final adversarial inputs at
every eps of its grid, stored as changes only, so a file stays a fraction of
``n x eps x image``:

* ``index`` (int64, n): the unit's example indices in the data split, in unit order;
* ``label`` (int64, n): their labels;
* per eps, in ascending order (``i`` = position in ``eps`` of the metadata):
  ``eps<i>.index`` (int64, k) and ``eps<i>.x_adv`` (float32, k x C x H x W): the
  examples whose adversarial input differs from the one they had at the previous
  eps (the clean input before the first). Every other example keeps that input:
  clean-misclassified examples are never attacked and appear nowhere; in a nested
  sweep an example broken at a smaller eps keeps its adversarial and appears once.

String metadata: ``format``, ``version``, ``unit``, ``model``, ``attack``,
``threat_model``, ``eps`` (JSON list of floats), ``fingerprint`` (the model's
weights identity, as in the unit key) and ``sha256`` over every tensor's name,
dtype, shape and bytes, checked on every read. Values are float32 bit for bit,
so re-scoring a decoded input gives the model the exact input the attack found.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from .errors import StoreError
from .fileio import atomic_path

FORMAT = "robustmix-adversarials"
VERSION = "1"
FOLDER = "adversarials"


@dataclass
class SavedAdversarials:
    """One unit's saved adversarials, decoded from the file but not yet expanded (see ``expand``)."""
    path: Path
    unit: str
    model: str
    attack: str
    threat_model: str
    eps: list[float]
    fingerprint: str
    index: torch.Tensor                              # (n,) int64 example indices of the unit
    label: torch.Tensor                              # (n,) int64
    changes: list[tuple[torch.Tensor, torch.Tensor]]  # per eps: (example indices, float32 inputs)

    @property
    def stored_examples(self) -> int:
        return sum(len(i) for i, _ in self.changes)

    def expand(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Full (n, C, H, W) adversarial inputs per eps, given the unit's clean inputs ``x``."""
        position = {int(i): p for p, i in enumerate(self.index.tolist())}
        cur, out = x.detach().to(torch.float32).cpu().clone(), []
        for idx, rows in self.changes:
            if len(idx):
                cur = cur.clone()
                cur[torch.tensor([position[int(i)] for i in idx.tolist()], dtype=torch.int64)] = rows
            out.append(cur)
        return out


def adversarials_path(results_root: str | Path, unit: str) -> Path:
    return Path(results_root) / FOLDER / f"{unit}.safetensors"


def has_adversarials(results_root: str | Path, unit: str) -> bool:
    """The unit's file exists and reads back, checksum included: a damaged one counts as missing, so
    the next eval rewrites it."""
    path = adversarials_path(results_root, unit)
    if not path.is_file():
        return False
    try:
        read_adversarials(path)
    except StoreError:
        return False
    return True


def saved_units(results_root: str | Path) -> list[str]:
    folder = Path(results_root) / FOLDER
    return sorted(p.name[:-len(".safetensors")] for p in folder.glob("*.safetensors")) if folder.is_dir() else []


def _digest(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def encode_changes(x: torch.Tensor, x_adv: list[torch.Tensor], index: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per eps, the rows whose input differs from the previous eps's (the clean input first)."""
    out, prev = {}, x.detach().to(torch.float32).cpu()
    for i, cur in enumerate(x_adv):
        cur = cur.detach().to(torch.float32).cpu()
        changed = (cur != prev).flatten(1).any(1) if len(cur) else torch.zeros(0, dtype=torch.bool)
        out[f"eps{i}.index"] = index[changed].to(torch.int64).contiguous()
        out[f"eps{i}.x_adv"] = cur[changed].contiguous()
        prev = cur
    return out


def write_adversarials(results_root: str | Path, unit: str, *, model: str, attack: str, threat_model: str,
                       eps: list[float], fingerprint: str, index: torch.Tensor, label: torch.Tensor,
                       x: torch.Tensor, x_adv: list[torch.Tensor]) -> Path:
    """Write one unit's adversarials (``x_adv[i]`` at ``eps[i]``) atomically; return the path."""
    if len(x_adv) != len(eps):
        raise ValueError(f"{len(x_adv)} adversarial batches for {len(eps)} eps")
    tensors = {"index": index.detach().cpu().to(torch.int64).contiguous(),
               "label": label.detach().cpu().to(torch.int64).contiguous(),
               **encode_changes(x, x_adv, index.detach().cpu())}
    meta = {"format": FORMAT, "version": VERSION, "unit": unit, "model": model, "attack": attack,
            "threat_model": threat_model, "eps": json.dumps([float(e) for e in eps]),
            "fingerprint": fingerprint, "sha256": _digest(tensors)}
    path = adversarials_path(results_root, unit)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return path


def _corrupt(path: Path, why: str) -> StoreError:
    return StoreError(f"{path} is corrupt ({why}); re-run the same `robustmix eval` command to rewrite it")


def read_adversarials(path: str | Path) -> SavedAdversarials:
    """Read and check one file: format, version, checksum and layout; any fault is a one-line StoreError."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise _corrupt(path, f"unreadable: {type(exc).__name__}: {' '.join(str(exc).split())[:100]}") from None
    if meta.get("format") != FORMAT:
        raise _corrupt(path, f"format {meta.get('format')!r}, not {FORMAT!r}")
    if meta.get("version") != VERSION:
        raise StoreError(f"{path} is saved-adversarials version {meta.get('version')!r}; this robustmix reads "
                         f"version {VERSION}: re-run `robustmix eval` with this version")
    if _digest(tensors) != meta.get("sha256"):
        raise _corrupt(path, "its tensors differ from those written (checksum mismatch)")
    try:
        eps = [float(e) for e in json.loads(meta["eps"])]
        changes = [(tensors[f"eps{i}.index"], tensors[f"eps{i}.x_adv"]) for i in range(len(eps))]
        saved = SavedAdversarials(path, meta["unit"], meta["model"], meta["attack"], meta["threat_model"], eps,
                                  meta["fingerprint"], tensors["index"], tensors["label"], changes)
    except (KeyError, ValueError, TypeError) as exc:
        raise _corrupt(path, f"missing or bad entry {exc}") from None
    if saved.unit != path.name[:-len(".safetensors")]:
        raise _corrupt(path, f"it holds unit {saved.unit!r}")
    known = set(saved.index.tolist())
    if any(not set(i.tolist()) <= known for i, _ in changes):
        raise _corrupt(path, "an eps lists examples that are not in the unit")
    return saved
