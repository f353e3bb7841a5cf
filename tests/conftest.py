"""Shared fixtures: small on-disk Fashion-MNIST stand-ins and recipe writers."""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

REAL_FMNIST = Path("/usr/share/datasets/fashion-mnist")


def _write_idx(path: Path, arr: np.ndarray) -> None:
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    path.write_bytes(struct.pack(">BBBB", 0, 0, 8, arr.ndim)
                     + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes())


def write_fake_fashion_mnist(root: Path, n_train: int, n_test: int, seed: int = 0) -> Path:
    """Decompressed idx files in ROOT/FashionMNIST/raw (the layout load_dataset reads)."""
    rng = np.random.default_rng(seed)
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = (np.arange(n) % 10).astype(np.uint8)
        # Class-dependent brightness so the data is learnable, plus noise.
        images = rng.integers(0, 128, size=(n, 28, 28)).astype(np.uint8) + (labels[:, None, None] * 12)
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
    return root


@pytest.fixture(scope="session")
def fake_fmnist(tmp_path_factory) -> Path:
    """A tiny synthetic Fashion-MNIST (256 train / 64 test images): data root path."""
    return write_fake_fashion_mnist(tmp_path_factory.mktemp("fake-fmnist"), 256, 64)


@pytest.fixture(scope="session")
def real_fmnist(tmp_path_factory) -> Path:
    """The real Fashion-MNIST prepared from the Debian package: data root path."""
    if not REAL_FMNIST.is_dir():
        pytest.skip(f"real Fashion-MNIST not installed at {REAL_FMNIST} (apt-get install dataset-fashion-mnist)")
    from robustmix import data

    root = tmp_path_factory.mktemp("fmnist")
    data.prepare("fashion-mnist", root)
    return root


@pytest.fixture
def write_recipe(tmp_path):
    """write_recipe(name, data_root, model=..., lr=..., data="", optimizer="", **top) -> recipe TOML path.

    ``top`` values are TOML literals for top-level keys (``epochs="3"``); ``data``
    and ``optimizer`` are extra TOML lines for those tables.
    """
    def write(name: str, data_root, *, model: str = "convmixer_16_2_ks3_p4", lr: float = 0.01,
              data_name: str = "fashion-mnist", data: str = "", optimizer: str = "", **top) -> Path:
        fields = dict(variants='["full"]', seeds="[0]", epochs="2", batch_size="64",
                      eval_batch_size="256", device='"cpu"')
        fields.update({k: str(v) for k, v in top.items()})
        lines = [f"{k} = {v}" for k, v in fields.items()]
        lines += ["", "[data]", f'name = "{data_name}"', f'root = "{data_root}"', data,
                  "", "[model]", f'name = "{model}"',
                  "", "[optimizer]", 'name = "adamw"', f"lr = {lr}", "weight_decay = 0.05", optimizer, ""]
        path = tmp_path / f"{name}.toml"
        path.write_text("\n".join(lines))
        return path
    return write


@pytest.fixture
def single_thread():
    """Run a test on one intra-op thread (restored after).

    Small tensors on 2 threads are dominated by OpenMP spin-waits, 100x slower when
    the cores are shared with other processes; one thread is also what the
    subprocess tests pin with OMP_NUM_THREADS=1, so weights compare bit-for-bit.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def fake_fmnist_writer():
    """write(root, n_train, n_test, seed=0) -> root: synthetic Fashion-MNIST of any size."""
    return write_fake_fashion_mnist


def torchrun_worker_pids(root: int) -> dict[int, int]:
    """LOCAL_RANK -> pid of the workers among ``root``'s descendants (torchrun's children)."""
    found, stack = {}, [root]
    while stack:
        pid = stack.pop()
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                children = [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
            stack += children
            for child in children:
                try:
                    environ = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
                except OSError:
                    continue
                for entry in environ:
                    if entry.startswith(b"LOCAL_RANK="):
                        found[int(entry.split(b"=", 1)[1])] = child
    return found


@pytest.fixture
def worker_pids():
    """worker_pids(torchrun_pid) -> {LOCAL_RANK: pid}: to kill one rank of a torchrun job."""
    return torchrun_worker_pids
