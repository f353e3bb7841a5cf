"""Data sets by name, as [0, 1] float images plus the metadata a model needs.

Normalisation is deliberately not applied here: models normalise inside
themselves (with ``DatasetInfo.mean/std``) so that attacks can work, and clip,
in pixel space.

Fixed-size sets (mnist, fashion-mnist, cifar10, cifar100, svhn) are held in
memory as uint8 and converted per batch, which keeps the training hot path
(``batch``) pure tensor indexing. ``imagefolder`` streams from disk.

``imagefolder`` splits: ``train`` reads ``ROOT/train`` and ``test`` reads
``ROOT/test``, else ``ROOT/val`` (ImageNet's layout). When ROOT has none of
those subfolders it is itself the class tree and serves every split.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
import torchvision.datasets as tvd
from torch.utils.data import Dataset, Subset
from torchvision import transforms

from robustmix.errors import DataError
from robustmix.formats import gunzip, one_line, read_cifar, read_idx, read_svhn, unwritable

__all__ = [
    "DatasetInfo", "TensorImageDataset", "list_datasets", "dataset_info",
    "default_root", "load_dataset", "batch", "prepare", "SPLITS",
]

SPLITS = ("train", "test")
FASHION_MNIST_SRC = Path("/usr/share/datasets/fashion-mnist")
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    channels: int
    image_size: tuple[int, int]
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: tuple[str, ...]


class TensorImageDataset(Dataset):
    """In-memory uint8 images (N, C, H, W) with int64 labels."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, info: DatasetInfo):
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"images must be uint8 (N,C,H,W), got {images.dtype} {tuple(images.shape)}")
        if labels.shape != (images.shape[0],):
            raise ValueError(f"labels shape {tuple(labels.shape)} does not match {images.shape[0]} images")
        self.images = images.contiguous()
        self.labels = labels.to(torch.int64)
        self.info = info

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i):
        return self.images[i].float() / 255, int(self.labels[i])


@dataclass(frozen=True)
class _Spec:
    info: DatasetInfo
    folder: str                              # under root
    files: dict[str, tuple[str, ...]]        # split -> files that must exist
    read: Callable
    tv_class: str                            # torchvision class, for downloading
    hint: str                                # how to get the files offline, one clause


def _idx_files(prefix_train: str = "train", prefix_test: str = "t10k"):
    return {s: (f"{p}-images-idx3-ubyte", f"{p}-labels-idx1-ubyte")
            for s, p in (("train", prefix_train), ("test", prefix_test))}


_CIFAR100_CLASSES = tuple("""
apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus
butterfly camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch
crab crocodile cup dinosaur dolphin elephant flatfish forest fox girl hamster house kangaroo
keyboard lamp lawn_mower leopard lion lizard lobster man maple_tree motorcycle mountain mouse
mushroom oak_tree orange orchid otter palm_tree pear pickup_truck pine_tree plain plate poppy
porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk skyscraper
snail snake spider squirrel streetcar sunflower sweet_pepper table tank telephone television
tiger tractor train trout tulip turtle wardrobe whale willow_tree wolf woman worm""".split())

_DIGITS = tuple(str(i) for i in range(10))

_SPECS: dict[str, _Spec] = {s.info.name: s for s in [
    _Spec(DatasetInfo("fashion-mnist", 1, (28, 28), 10, (0.2860,), (0.3530,),
                      ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                       "Shirt", "Sneaker", "Bag", "Ankle boot")),
          "FashionMNIST/raw", _idx_files(), read_idx, "FashionMNIST",
          "run `apt-get install dataset-fashion-mnist` (as root, after apt-get update) "
          "then `robustmix data prepare fashion-mnist`"),
    _Spec(DatasetInfo("mnist", 1, (28, 28), 10, (0.1307,), (0.3081,),
                      ("0 - zero", "1 - one", "2 - two", "3 - three", "4 - four",
                       "5 - five", "6 - six", "7 - seven", "8 - eight", "9 - nine")),
          "MNIST/raw", _idx_files(), read_idx, "MNIST",
          "place the MNIST idx files (.gz or decompressed) there"),
    _Spec(DatasetInfo("cifar10", 3, (32, 32), 10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616),
                      ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                       "ship", "truck")),
          "cifar-10-batches-py",
          {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)},
          read_cifar, "CIFAR10",
          "place the CIFAR-10 python batches there"),
    _Spec(DatasetInfo("cifar100", 3, (32, 32), 100, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762),
                      _CIFAR100_CLASSES),
          "cifar-100-python", {"train": ("train",), "test": ("test",)}, read_cifar, "CIFAR100",
          "place the CIFAR-100 python files there"),
    _Spec(DatasetInfo("svhn", 3, (32, 32), 10, (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970), _DIGITS),
          ".", {"train": ("train_32x32.mat",), "test": ("test_32x32.mat",)}, read_svhn, "SVHN",
          "place the SVHN cropped-digit .mat files there"),
]}
_NAMES = tuple(_SPECS) + ("imagefolder",)


def list_datasets() -> list[str]:
    return list(_NAMES)


def default_root() -> Path:
    return Path(os.environ.get("ROBUSTMIX_DATA") or "data").expanduser().resolve()


def _root(root) -> Path:
    path = default_root() if root is None else Path(root).expanduser().resolve()
    if path.exists() and not path.is_dir():
        raise DataError(f"data root {path} is not a directory; set ROBUSTMIX_DATA, or pass --root "
                        "(data.root in a recipe or spec), to a directory")
    return path


def _size(image_size) -> tuple[int, int] | None:
    if image_size is None:
        return None
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if len(size) != 2 or not all(isinstance(s, int) and s > 0 for s in size):
        raise DataError(f"image size {image_size!r} is invalid; pass a positive int or (height, width)")
    return size


def _check_name(name: str) -> str:
    if name not in _NAMES:
        raise DataError(f"unknown data set {name!r}; known data sets: {', '.join(_NAMES)}")
    return name


def _check_split(name: str, split: str) -> None:
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r} for {name}; use one of: {', '.join(SPLITS)}")


# --- imagefolder ------------------------------------------------------------

def _folder_root(root) -> Path:
    if root is None:
        raise DataError("imagefolder needs a root: pass --root pointing at an ImageFolder tree "
                        "(ROOT/CLASS/*.png, or ROOT/train|val|test/CLASS/*.png)")
    return Path(root).expanduser().resolve()


def _folder_dir(root: Path, split: str) -> Path:
    subdirs = [root / d for d in ("train", "val", "test") if (root / d).is_dir()]
    if not subdirs:
        if not root.is_dir():
            raise DataError(f"imagefolder not found at {root}; pass --root pointing at an ImageFolder "
                            "tree (ROOT/CLASS/*.png, or ROOT/train|val|test/CLASS/*.png)")
        return root
    candidates = ("train",) if split == "train" else ("test", "val")
    for d in candidates:
        if (root / d).is_dir():
            return root / d
    raise DataError(f"imagefolder split {split!r} not found under {root} (looked for "
                    f"{' or '.join(candidates)}/); add that subfolder of class folders")


def _folder_info(root: Path, size: tuple[int, int] | None) -> DatasetInfo:
    directory = _folder_dir(root, "train")
    classes = sorted(e.name for e in os.scandir(directory) if e.is_dir())
    if not classes:
        raise DataError(f"imagefolder has no class folders in {directory}; "
                        "expected ROOT/CLASS/*.png (one subfolder per class)")
    return DatasetInfo("imagefolder", 3, size or (224, 224), len(classes),
                       _IMAGENET_MEAN, _IMAGENET_STD, tuple(classes))


def _load_folder(root, split: str, size) -> Dataset:
    root = _folder_root(root)
    info = _folder_info(root, size)
    directory = _folder_dir(root, split)
    # ImageNet's standard eval crop: shorter side to size/0.875 (256 for 224).
    transform = transforms.Compose([
        transforms.Resize(int(round(max(info.image_size) / 0.875))),
        transforms.CenterCrop(info.image_size),
        transforms.ToTensor(),
    ])
    try:
        ds = tvd.ImageFolder(str(directory), transform=transform)
    except (OSError, ValueError) as exc:  # no images / unreadable tree
        raise DataError(f"imagefolder at {directory} is unusable ({one_line(exc)}); "
                        "expected ROOT/CLASS/*.png (or .jpg) files") from None
    if tuple(ds.classes) != info.classes:
        raise DataError(f"imagefolder split {split!r} at {directory} has classes that differ from "
                        f"the training classes under {root}; give every split the same class folders")
    ds.info = info
    return ds


# --- public -----------------------------------------------------------------

def dataset_info(name: str, root=None, image_size=None) -> DatasetInfo:
    """Static metadata; ``imagefolder`` reads its class names from ``root``."""
    size = _size(image_size)
    if _check_name(name) == "imagefolder":
        return _folder_info(_folder_root(root), size)
    info = _SPECS[name].info
    return info if size is None else replace(info, image_size=size)


def _missing(spec: _Spec, root: Path, split: str) -> list[Path]:
    return [p for p in (root / spec.folder / f for f in spec.files[split]) if not p.is_file()]


def _not_found(spec: _Spec, root: Path, missing: Path) -> DataError:
    return DataError(f"{spec.info.name} not found under {root} (looked for {missing}); {spec.hint}")


# No command has a --download flag: train and eval read it from the recipe or spec (`robustmix data
# prepare` never downloads, so its errors say only where to put the files).
_OR_DOWNLOAD = ", or set download = true under [data] in the recipe or spec where there is internet"


def _fashion_src() -> Path:
    return Path(os.environ.get("ROBUSTMIX_FASHION_MNIST_SRC") or FASHION_MNIST_SRC)


def prepare(name: str, root=None) -> Path:
    """Make ``name`` available offline under ``root``; return its directory.

    fashion-mnist is decompressed from the Debian package ``dataset-fashion-mnist``
    (``/usr/share/datasets/fashion-mnist``, or ``$ROBUSTMIX_FASHION_MNIST_SRC``)
    into ``ROOT/FashionMNIST/raw``; for mnist and fashion-mnist, ``.gz`` files
    already in the raw folder are decompressed too. Other sets are only checked.
    Idempotent: files already present are left alone.
    """
    if _check_name(name) == "imagefolder":
        root = _folder_root(root)
        _folder_info(root, None)
        return root
    spec, root = _SPECS[name], _root(root)
    target = root / spec.folder
    missing = _missing(spec, root, "train") + _missing(spec, root, "test")
    if missing and spec.read is read_idx:
        sources = [target] + ([_fashion_src()] if name == "fashion-mnist" else [])
        for dst in missing:
            gz = next((g for g in (src / (dst.name + ".gz") for src in sources) if g.is_file()), None)
            if gz is not None:
                try:
                    target.mkdir(parents=True, exist_ok=True)
                except OSError as exc:  # read-only cwd (the default root is ./data), a file in the way
                    raise unwritable(name, target, exc) from None
                gunzip(gz, dst, name)
        missing = _missing(spec, root, "train") + _missing(spec, root, "test")
        if missing and name == "fashion-mnist":
            raise DataError(f"fashion-mnist not found under {target} nor in {_fashion_src()}; run "
                            "`apt-get install dataset-fashion-mnist` (as root, after apt-get update)")
    if missing:
        raise _not_found(spec, root, missing[0])
    return target


def _download(spec: _Spec, root: Path, split: str) -> None:
    kwargs = {"split": split} if spec.tv_class == "SVHN" else {"train": split == "train"}
    try:
        getattr(tvd, spec.tv_class)(str(root), download=True, **kwargs)
    except Exception as exc:  # network errors come in many types; all mean the same to the user
        raise DataError(f"{spec.info.name}: download into {root} failed ({one_line(exc)}); "
                        f"without internet, {spec.hint}") from None


def _resize(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    out = torch.empty((images.shape[0], images.shape[1], *size), dtype=torch.uint8)
    for i in range(0, images.shape[0], 4096):  # bounded float memory
        chunk = F.interpolate(images[i:i + 4096].float(), size=size, mode="bilinear",
                              align_corners=False, antialias=True)
        out[i:i + 4096] = chunk.round_().clamp_(0, 255).to(torch.uint8)
    return out


def load_dataset(name: str, split: str = "train", root=None, download: bool = False,
                 image_size=None) -> Dataset:
    """The named split as a Dataset of ``(float C,H,W in [0,1], int label)`` with ``.info``.

    ``image_size`` resizes fixed-size sets once, in memory; for imagefolder it
    is the centre-crop size (default 224).
    """
    _check_name(name)
    _check_split(name, split)
    size = _size(image_size)
    if name == "imagefolder":
        return _load_folder(root, split, size)
    spec, root = _SPECS[name], _root(root)
    if _missing(spec, root, split):
        try:
            prepare(name, root)
        except DataError as exc:
            # prepare wants both splits; this call needs only one (and names its file).
            missing = _missing(spec, root, split)
            if missing and not download:
                first = exc if name == "fashion-mnist" else _not_found(spec, root, missing[0])
                raise DataError(f"{first}{_OR_DOWNLOAD}") from None
        if _missing(spec, root, split) and download:
            _download(spec, root, split)
        if _missing(spec, root, split):
            raise _not_found(spec, root, _missing(spec, root, split)[0])
    try:
        images, labels = spec.read(spec, root, split)
    except (OSError, EOFError, ValueError, KeyError, TypeError, RuntimeError,
            AssertionError, pickle.UnpicklingError, IndexError, OverflowError, MemoryError) as exc:
        # (the last three: garbage where a pickle's lengths and opcodes should be)
        raise DataError(f"{name} files under {root / spec.folder} are unreadable ({one_line(exc)}); "
                        f"replace them: {spec.hint}") from None
    info = spec.info
    expected = (info.channels, *info.image_size)
    if tuple(images.shape[1:]) != expected or len(labels) != len(images) or (
            len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= info.num_classes)):
        raise DataError(f"{name} files under {root / spec.folder} do not hold {name} data (images "
                        f"{tuple(images.shape)}, {len(labels)} labels; expected N x {expected} and labels "
                        f"0..{info.num_classes - 1}); replace them: {spec.hint}")
    if size is not None and size != info.image_size:
        images, info = _resize(images, size), replace(info, image_size=size)
    return TensorImageDataset(images.to(torch.uint8), labels.to(torch.int64), info)


def batch(ds, indices) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N,C,H,W) float in [0,1] and int64 labels for ``indices`` of ``ds``."""
    idx = torch.as_tensor(indices, dtype=torch.int64).reshape(-1)
    base = ds
    while isinstance(base, Subset):  # map through subsets to keep the fast path
        idx = torch.as_tensor(base.indices, dtype=torch.int64)[idx]
        base = base.dataset
    if isinstance(base, TensorImageDataset):
        # index_select is several times faster than advanced indexing on CPU.
        return base.images.index_select(0, idx).float().div_(255), base.labels.index_select(0, idx)
    items = [ds[int(i)] for i in indices]
    if not items:
        raise DataError("batch() got no indices; pass at least one")
    return (torch.stack([x for x, _ in items]),
            torch.tensor([int(y) for _, y in items], dtype=torch.int64))
