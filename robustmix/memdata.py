"""Data handed in from Python: (x, y) tensors, a torch Dataset or a DataLoader, as an eval data set.

``run_eval`` takes any Dataset of ``(image C,H,W in [0, 1], int label)`` with a
``.info`` (data.DatasetInfo); this module adapts what a notebook has at hand
into one, checks it at the boundary (one-line DataErrors), and gives it an
identity: the SHA-256 of the examples an eval draws (their float32 pixels and
int64 labels) and the size of the set they are drawn from. The identity goes
into the data name an eval records (``<label>@<16 hex digits>``), so the unit
keys, ``run.json`` and the summary's ``dataset`` column all say which data a
result came from, and a later ``robustmix.verify`` can check it is given the
same data again.
"""
from __future__ import annotations

import hashlib

import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset

from .data import DatasetInfo, batch
from .errors import DataError

IDENTITY_HEX = 16  # digits of the SHA-256 kept in the data name


def _kind(data) -> str:
    return type(data).__name__


class TensorPairDataset(Dataset):
    """(x, y) tensors as a Dataset; x is float32 in [0, 1]."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], int(self.y[i])


class ItemDataset(Dataset):
    """A user's map-style Dataset whose items are (image, label), with float32 images and int labels."""

    def __init__(self, ds):
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i):
        x, y = _item(self.ds[i], i)
        return x, y


def _item(item, i):
    if not isinstance(item, (tuple, list)) or len(item) < 2:
        raise DataError(f"data item {i} is a {_kind(item)}, not an (image, label) pair; "
                        "make the Dataset return (tensor C x H x W in [0, 1], int label)")
    x, y = item[0], item[1]
    if not isinstance(x, torch.Tensor) or x.dim() != 3:
        raise DataError(f"data item {i}: the image is {_describe(x)}, not a C x H x W tensor; convert it "
                        "(e.g. torchvision.transforms.ToTensor())")
    return _as_float(x), int(y)


def _describe(x) -> str:
    return f"a tensor of shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else f"a {_kind(x)}"


def _as_float(x: torch.Tensor) -> torch.Tensor:
    # uint8 images are 0..255; everything else is taken as [0, 1] already (checked per batch).
    return x.float().div(255) if x.dtype == torch.uint8 else x.to(torch.float32)


def _pair(x, y) -> TensorPairDataset:
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise DataError(f"data: an (x, y) pair must hold two tensors, got ({_kind(x)}, {_kind(y)})")
    if x.dim() != 4:
        raise DataError(f"data: x must be N x C x H x W images, got shape {tuple(x.shape)}; add the channel "
                        "axis (x.unsqueeze(1)) for grey images")
    if y.dim() != 1 or len(y) != len(x):
        raise DataError(f"data: y must hold one label per image: x has {len(x)} images, y has shape "
                        f"{tuple(y.shape)}")
    if y.is_floating_point() or y.dtype == torch.bool:
        raise DataError(f"data: y must hold integer class labels, got dtype {y.dtype}")
    return TensorPairDataset(_as_float(x.detach().cpu()), y.detach().cpu().to(torch.int64))


def _from_loader(loader: DataLoader) -> Dataset:
    # robustmix draws its own seeded subset, so a loader's sampler and batching do not matter:
    # a map-style loader is read through its dataset, in the dataset's order.
    if not isinstance(loader.dataset, IterableDataset):
        return adapt(loader.dataset)
    xs, ys = [], []
    for i, item in enumerate(loader):
        if not isinstance(item, (tuple, list)) or len(item) < 2:
            raise DataError(f"DataLoader batch {i} is a {_kind(item)}, not an (images, labels) pair")
        xs.append(torch.as_tensor(item[0]))
        ys.append(torch.as_tensor(item[1]))
    if not xs:
        raise DataError("data: the DataLoader yields no batches; give it some examples")
    return _pair(torch.cat(xs), torch.cat(ys))


def adapt(data) -> Dataset:
    """An (x, y) pair of tensors, a map-style Dataset or a DataLoader -> a Dataset of (float image, int)."""
    if isinstance(data, (TensorPairDataset, ItemDataset)):
        return data
    if isinstance(data, DataLoader):
        return _from_loader(data)
    if isinstance(data, (tuple, list)) and len(data) == 2:
        return _pair(*data)
    if isinstance(data, Dataset) and not isinstance(data, IterableDataset) and hasattr(data, "__len__"):
        return ItemDataset(data)
    raise DataError(f"data must be an (x, y) pair of tensors, a torch Dataset or a DataLoader, got a {_kind(data)}")


def check_examples(x: torch.Tensor, y: torch.Tensor, num_classes: int) -> None:
    """The drawn examples: one image shape, pixels in [0, 1], labels among the model's classes."""
    if x.numel() and (float(x.min()) < 0 or float(x.max()) > 1):
        raise DataError(f"data: pixel values span [{float(x.min()):.3g}, {float(x.max()):.3g}], not [0, 1]; "
                        "pass unnormalised images and put the normalisation inside the model")
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise DataError(f"data: labels span {int(y.min())}..{int(y.max())} but the model has {num_classes} "
                        "classes; labels must be 0..classes-1")


def draw(ds: Dataset, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The examples at ``indices``; items of different shapes are a one-line DataError."""
    try:
        return batch(ds, indices)
    except RuntimeError as exc:  # torch.stack of unequal shapes
        raise DataError(f"data: the examples do not share one image shape ({str(exc).splitlines()[0][:100]}); "
                        "resize them to one size") from None


def identity(ds: Dataset, x: torch.Tensor, y: torch.Tensor) -> str:
    """SHA-256 of the drawn examples and the size of the set they were drawn from."""
    h = hashlib.sha256(f"robustmix-data|{len(ds)}|{tuple(x.shape)}|".encode())
    h.update(x.detach().cpu().to(torch.float32).contiguous().numpy().tobytes())
    h.update(y.detach().cpu().to(torch.int64).contiguous().numpy().tobytes())
    return h.hexdigest()


def data_name(label: str, digest: str) -> str:
    return f"{label}@{digest[:IDENTITY_HEX]}"


def info_for(ds: Dataset, name: str, num_classes: int) -> DatasetInfo:
    """Metadata the eval needs, read off the first example (channels, size) and the model (classes)."""
    if len(ds) == 0:
        raise DataError("data: no examples; give at least one")
    x, _ = ds[0]
    channels, height, width = x.shape
    return DatasetInfo(name, int(channels), (int(height), int(width)), int(num_classes),
                       (0.0,) * channels, (1.0,) * channels, tuple(str(k) for k in range(num_classes)))


class NamedDataset(Dataset):
    """An adapted data set with the ``info`` an eval reads."""

    def __init__(self, ds: Dataset, info: DatasetInfo):
        self.ds, self.info = ds, info

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i):
        return self.ds[i]
