"""On-disk formats of the fixed-size data sets: one reader per format, and the gunzip writer.

A reader takes (spec, root, split) and returns (uint8 N,C,H,W images, int64 N labels); robustmix.data
checks what it returns against the data set's metadata. Errors are one-line DataErrors.
"""
from __future__ import annotations

import gzip
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import scipy.io
import torch
import torchvision.datasets as tvd

from robustmix.errors import DataError


# --- readers ----------------------------------------------------------------

def read_idx(spec, root: Path, split: str):
    # The torchvision class only checks that the decompressed files exist
    # (no MD5 when download=False), so Debian's repacked copies load fine.
    ds = getattr(tvd, spec.tv_class)(str(root), train=split == "train", download=False)
    return ds.data.unsqueeze(1), ds.targets


# Everything the CIFAR python batches (pickled by Python 2, or re-pickled by Python 3 with
# protocols 2 to 5) need to rebuild dicts of lists, strings and uint8 arrays. Any other global
# in a data file (os.system, builtins.eval, ...) is refused before it can be called.
_CIFAR_GLOBALS = frozenset(
    [(f"numpy.{core}.multiarray", name) for core in ("core", "_core") for name in ("_reconstruct", "scalar")]
    + [(f"numpy.{core}.numeric", "_frombuffer") for core in ("core", "_core")]
    + [("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")])


class _CifarUnpickler(pickle.Unpickler):
    """pickle.Unpickler that builds only the types of the CIFAR format (Python's recipe for
    restricting globals), so a crafted batch file cannot run code."""

    def find_class(self, module, name):
        if (module, name) in _CIFAR_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"global {module}.{name} is not part of the CIFAR format, refused")


def read_cifar(spec, root: Path, split: str):
    # Read the pickles directly: torchvision's CIFAR10/100 refuse any file
    # whose MD5 differs from the official archive (even with download=False),
    # and users' re-pickled or subset copies in the same format must still load.
    data, labels = [], []
    key = "fine_labels" if spec.info.name == "cifar100" else "labels"
    for name in spec.files[split]:
        with open(root / spec.folder / name, "rb") as f:
            entry = _CifarUnpickler(f, encoding="latin1").load()
        if not isinstance(entry, dict):
            raise ValueError(f"{name} holds a {type(entry).__name__}, not a CIFAR batch dict")
        data.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        labels.extend(entry[key])
    return torch.from_numpy(np.concatenate(data)), torch.tensor(labels, dtype=torch.int64)


def read_svhn(spec, root: Path, split: str):
    # Same reason as CIFAR: torchvision's SVHN insists on the official MD5.
    mat = scipy.io.loadmat(str(root / spec.folder / spec.files[split][0]))
    images = np.ascontiguousarray(np.transpose(mat["X"], (3, 2, 0, 1)), dtype=np.uint8)
    labels = mat["y"].astype(np.int64).reshape(-1)
    labels[labels == 10] = 0  # SVHN stores digit 0 as class 10
    return torch.from_numpy(images), torch.from_numpy(labels)


# --- errors and the gunzip writer -------------------------------------------

def one_line(exc: BaseException, limit: int = 200) -> str:
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def unwritable(name: str, directory: Path, exc: OSError) -> DataError:
    return DataError(f"cannot write {name} into {directory} ({exc.strerror or one_line(exc)}); set "
                     "ROBUSTMIX_DATA, or pass --root (data.root in a recipe or spec), to a writable directory")


def gunzip(src: Path, dst: Path, name: str) -> None:
    # Write to a temp file and rename so an interrupted run never leaves a
    # truncated file that later looks "present".
    tmp = dst.with_name(f"{dst.name}.{os.getpid()}.part")  # concurrent prepares don't collide
    try:
        fout = open(tmp, "wb")
    except OSError as exc:  # the destination, not the source, is the problem
        raise unwritable(name, dst.parent, exc) from None
    try:
        with gzip.open(src, "rb") as fin, fout:
            shutil.copyfileobj(fin, fout, 1 << 20)
    except (OSError, EOFError) as exc:
        tmp.unlink(missing_ok=True)
        raise DataError(f"cannot decompress {src} into {dst.parent} ({one_line(exc)}); "
                        "check or reinstall that file") from None
    try:
        os.replace(tmp, dst)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise unwritable(name, dst.parent, exc) from None
