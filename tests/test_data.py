"""robustmix.data: every loader against small files written in the real on-disk format."""

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from robustmix import data
from robustmix.data import DatasetInfo, TensorImageDataset, batch, dataset_info, load_dataset, prepare
from robustmix.errors import DataError

REAL_FMNIST = Path("/usr/share/datasets/fashion-mnist")


# --- writers for the real formats ---------------------------------------------

def _idx_bytes(arr: np.ndarray) -> bytes:
    # IDX: two zero bytes, type 0x08 (ubyte), number of dims, big-endian int32 dims, data.
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    return struct.pack(">BBBB", 0, 0, 8, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()


def write_idx_set(directory: Path, n_train=7, n_test=5, gz=True, seed=0):
    """Write the four MNIST-layout files; return the arrays written."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    out = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        images[0, 0, 0], images[0, 0, 1] = 0, 255  # pin both ends of the range
        labels = (np.arange(n) % 10).astype(np.uint8)
        for kind, arr in (("images-idx3", images), ("labels-idx1", labels)):
            name = f"{prefix}-{kind}-ubyte"
            blob = _idx_bytes(arr)
            if gz:
                with gzip.open(directory / (name + ".gz"), "wb") as f:
                    f.write(blob)
            else:
                (directory / name).write_bytes(blob)
        out[prefix] = (images, labels)
    return out


def _cifar_entry(rng, n, label_key, num_classes, batch_label):
    data_ = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    entry = {"batch_label": batch_label, "data": data_,
             label_key: [int(i % num_classes) for i in range(n)],
             "filenames": [f"img_{i}.png" for i in range(n)]}
    if label_key == "fine_labels":
        entry["coarse_labels"] = [int(i % 20) for i in range(n)]
    return entry


def write_cifar10(root: Path, n=4, seed=0):
    rng = np.random.default_rng(seed)
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    written = {"train": []}
    for i in range(1, 6):
        e = _cifar_entry(rng, n, "labels", 10, f"training batch {i} of 5")
        written["train"].append(e)
        (d / f"data_batch_{i}").write_bytes(pickle.dumps(e, protocol=2))
    e = _cifar_entry(rng, n + 1, "labels", 10, "testing batch 1 of 1")
    written["test"] = [e]
    (d / "test_batch").write_bytes(pickle.dumps(e, protocol=2))
    meta = {"num_cases_per_batch": n, "label_names": list(data._SPECS["cifar10"].info.classes), "num_vis": 3072}
    (d / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return written


def write_cifar100(root: Path, seed=0):
    rng = np.random.default_rng(seed)
    d = root / "cifar-100-python"
    d.mkdir(parents=True)
    written = {}
    for split, n in (("train", 6), ("test", 3)):
        e = _cifar_entry(rng, n, "fine_labels", 100, split)
        e["data"][:, 0] = 0
        e["fine_labels"][-1] = 99
        written[split] = e
        (d / split).write_bytes(pickle.dumps(e, protocol=2))
    meta = {"fine_label_names": list(data._CIFAR100_CLASSES), "coarse_label_names": [f"c{i}" for i in range(20)]}
    (d / "meta").write_bytes(pickle.dumps(meta, protocol=2))
    return written


def write_svhn(root: Path, split="train", n=6, seed=0):
    import scipy.io
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    X = rng.integers(0, 256, size=(32, 32, 3, n), dtype=np.uint8)
    y = (np.arange(n) % 10 + 1).astype(np.uint8).reshape(n, 1)  # 1..10; 10 is the digit 0
    scipy.io.savemat(str(root / f"{split}_32x32.mat"), {"X": X, "y": y})
    return X, y


def write_imagefolder(root: Path, classes=("cat", "dog"), per_class=2, size=(40, 30)):
    from PIL import Image
    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            arr = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(arr).save(root / c / f"{i}.png")


# --- shared checks ---------------------------------------------------------------

def check_dataset(ds, info: DatasetInfo, n: int):
    assert len(ds) == n
    assert ds.info == info
    assert len(info.classes) == info.num_classes
    assert len(info.mean) == len(info.std) == info.channels
    x, y = ds[0]
    assert x.dtype == torch.float32 and tuple(x.shape) == (info.channels, *info.image_size)
    assert isinstance(y, int) and 0 <= y < info.num_classes
    idx = list(range(n))[::-1]
    xb, yb = batch(ds, idx)
    assert xb.dtype == torch.float32 and yb.dtype == torch.int64
    assert tuple(xb.shape) == (n, info.channels, *info.image_size)
    assert float(xb.min()) >= 0.0 and float(xb.max()) <= 1.0
    assert torch.equal(xb, torch.stack([ds[i][0] for i in idx]))
    assert yb.tolist() == [ds[i][1] for i in idx]
    return xb, yb


def assert_one_line(exc: pytest.ExceptionInfo, *fragments):
    msg = str(exc.value)
    assert "\n" not in msg and msg.strip() == msg and msg
    for frag in fragments:
        assert str(frag) in msg, (frag, msg)
    return msg


# --- registry and metadata -------------------------------------------------------

def test_registry_and_static_info():
    assert data.list_datasets() == ["fashion-mnist", "mnist", "cifar10", "cifar100", "svhn", "imagefolder"]
    expect = {"fashion-mnist": (1, 28, 10), "mnist": (1, 28, 10), "cifar10": (3, 32, 10),
              "cifar100": (3, 32, 100), "svhn": (3, 32, 10)}
    for name, (c, s, k) in expect.items():
        info = dataset_info(name)
        assert (info.name, info.channels, info.image_size, info.num_classes) == (name, c, (s, s), k)
        assert len(info.classes) == k == len(set(info.classes))
        assert len(info.mean) == len(info.std) == c
        assert all(0 < m < 1 for m in info.mean) and all(0 < v < 1 for v in info.std)
    assert dataset_info("fashion-mnist").classes[0] == "T-shirt/top"
    assert dataset_info("cifar10", image_size=64).image_size == (64, 64)
    with pytest.raises(Exception):
        dataset_info("mnist").channels = 3  # frozen


def test_default_root(monkeypatch, tmp_path):
    monkeypatch.setenv("ROBUSTMIX_DATA", str(tmp_path / "d"))
    assert data.default_root() == tmp_path / "d"
    monkeypatch.delenv("ROBUSTMIX_DATA")
    monkeypatch.chdir(tmp_path)
    assert data.default_root() == (tmp_path / "data").resolve()
    assert data.default_root().is_absolute()


# --- MNIST / Fashion-MNIST (IDX) --------------------------------------------------

def test_fashion_mnist_prepare_from_debian_layout(monkeypatch, tmp_path):
    src = tmp_path / "deb"
    written = write_idx_set(src, gz=True)
    monkeypatch.setenv("ROBUSTMIX_FASHION_MNIST_SRC", str(src))
    root = tmp_path / "root"
    # load_dataset prepares on its own when the raw files are missing
    ds = load_dataset("fashion-mnist", "train", root=root)
    raw = root / "FashionMNIST" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == sorted(
        f"{p}-{k}-ubyte" for p in ("train", "t10k") for k in ("images-idx3", "labels-idx1"))
    info = dataset_info("fashion-mnist")
    xb, yb = check_dataset(ds, info, 7)
    images, labels = written["train"]
    assert torch.equal(ds.images[:, 0], torch.from_numpy(images))
    assert ds.labels.tolist() == labels.tolist()
    assert float(ds[0][0][0, 0, 0]) == 0.0 and float(ds[0][0][0, 0, 1]) == 1.0
    test = load_dataset("fashion-mnist", "test", root=root)
    check_dataset(test, info, 5)

    # idempotent, and no longer needs the source
    mtimes = {p: p.stat().st_mtime_ns for p in raw.iterdir()}
    monkeypatch.setenv("ROBUSTMIX_FASHION_MNIST_SRC", str(tmp_path / "gone"))
    assert prepare("fashion-mnist", root) == raw
    assert {p: p.stat().st_mtime_ns for p in raw.iterdir()} == mtimes


def test_fashion_mnist_missing_source_says_apt_get(monkeypatch, tmp_path):
    monkeypatch.setenv("ROBUSTMIX_FASHION_MNIST_SRC", str(tmp_path / "nowhere"))
    with pytest.raises(DataError) as exc:
        prepare("fashion-mnist", tmp_path / "root")
    assert_one_line(exc, "apt-get install dataset-fashion-mnist", "apt-get update", tmp_path / "nowhere",
                    tmp_path / "root")
    with pytest.raises(DataError) as exc:
        load_dataset("fashion-mnist", root=tmp_path / "root")
    assert_one_line(exc, "fashion-mnist", "apt-get install dataset-fashion-mnist")


def test_fashion_mnist_unwritable_root_says_where_to_write(monkeypatch, tmp_path):
    """The default root is ./data of the working directory: one that cannot be written is a
    one-line DataError naming the directory and ROBUSTMIX_DATA / --root, not an OSError trace."""
    src = tmp_path / "deb"
    write_idx_set(src, gz=True)
    monkeypatch.setenv("ROBUSTMIX_FASHION_MNIST_SRC", str(src))
    # A regular file where a directory must go fails for root too (chmod would not).
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    (blocked / "FashionMNIST").write_text("in the way")
    for call in (lambda: prepare("fashion-mnist", blocked),
                 lambda: load_dataset("fashion-mnist", "test", root=blocked)):
        with pytest.raises(DataError) as exc:
            call()
        assert_one_line(exc, "cannot write fashion-mnist into", blocked / "FashionMNIST" / "raw", "ROBUSTMIX_DATA",
                        "--root", "writable directory")
    monkeypatch.delenv("ROBUSTMIX_DATA", raising=False)
    monkeypatch.chdir(blocked)
    (blocked / "data").write_text("in the way")  # ./data, the default root, is not a directory
    for root in (None, blocked / "data"):
        with pytest.raises(DataError) as exc:
            prepare("fashion-mnist", root)
        assert_one_line(exc, f"data root {blocked / 'data'} is not a directory", "ROBUSTMIX_DATA", "--root")
    assert (blocked / "data").read_text() == "in the way"


def test_cli_data_prepare_root_that_is_a_file(tmp_path, capsys):
    from robustmix import cli

    root = tmp_path / "afile"
    root.write_text("not a directory")
    assert cli.main(["data", "prepare", "fashion-mnist", "--root", str(root)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("robustmix: error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert f"data root {root} is not a directory" in err and "--root" in err


def test_mnist_raw_layout(tmp_path):
    written = write_idx_set(tmp_path / "MNIST" / "raw", gz=False, seed=1)
    for split, prefix, n in (("train", "train", 7), ("test", "t10k", 5)):
        ds = load_dataset("mnist", split, root=tmp_path)
        assert isinstance(ds, TensorImageDataset)
        check_dataset(ds, dataset_info("mnist"), n)
        assert torch.equal(ds.images[:, 0], torch.from_numpy(written[prefix][0]))
        assert ds.labels.tolist() == written[prefix][1].tolist()


def test_mnist_gz_in_raw_is_decompressed(tmp_path):
    write_idx_set(tmp_path / "MNIST" / "raw", gz=True)
    ds = load_dataset("mnist", "test", root=tmp_path)
    assert len(ds) == 5 and (tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte").is_file()


@pytest.mark.parametrize("size", [32, 20])
def test_resize_in_memory(tmp_path, size):
    from PIL import Image

    written = write_idx_set(tmp_path / "MNIST" / "raw", gz=False)
    ds = load_dataset("mnist", "train", root=tmp_path, image_size=size)
    assert ds.images.dtype == torch.uint8 and ds.info.image_size == (size, size)
    check_dataset(ds, dataset_info("mnist", image_size=(size, size)), 7)
    # Pixel values: Pillow's antialiased bilinear resize, an independent implementation, agrees
    # to within one grey level (rounding), up- and down-sampling.
    pil = np.stack([np.asarray(Image.fromarray(im).resize((size, size), Image.BILINEAR))
                    for im in written["train"][0]])
    assert np.abs(ds.images[:, 0].numpy().astype(int) - pil.astype(int)).max() <= 1


def test_corrupt_idx_is_data_error(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    write_idx_set(raw, gz=False)
    (raw / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08")
    with pytest.raises(DataError) as exc:
        load_dataset("mnist", root=tmp_path)
    assert_one_line(exc, "mnist", raw)


@pytest.mark.skipif(not REAL_FMNIST.is_dir(), reason="Debian package dataset-fashion-mnist not installed")
def test_real_fashion_mnist(monkeypatch, tmp_path):
    monkeypatch.delenv("ROBUSTMIX_FASHION_MNIST_SRC", raising=False)
    train = load_dataset("fashion-mnist", "train", root=tmp_path)
    test = load_dataset("fashion-mnist", "test", root=tmp_path)
    assert len(train) == 60000 and len(test) == 10000
    assert tuple(train.images.shape) == (60000, 1, 28, 28) and tuple(test.images.shape) == (10000, 1, 28, 28)
    assert train.info.num_classes == 10 and sorted(set(train.labels.tolist())) == list(range(10))
    assert torch.bincount(test.labels).tolist() == [1000] * 10
    xb, yb = batch(train, torch.arange(0, 60000, 997))
    assert xb.shape == (61, 1, 28, 28) and 0 <= float(xb.min()) and float(xb.max()) <= 1
    assert float(xb.max()) == 1.0


# --- CIFAR --------------------------------------------------------------------

def test_cifar10_pickles(tmp_path):
    written = write_cifar10(tmp_path)
    train = load_dataset("cifar10", "train", root=tmp_path)
    check_dataset(train, dataset_info("cifar10"), 20)
    expected = np.concatenate([e["data"] for e in written["train"]]).reshape(-1, 3, 32, 32)
    assert torch.equal(train.images, torch.from_numpy(expected))
    assert train.labels.tolist() == sum((e["labels"] for e in written["train"]), [])
    test = load_dataset("cifar10", "test", root=tmp_path)
    check_dataset(test, dataset_info("cifar10"), 5)
    # sanity on channel order: the first 1024 bytes of a row are the red plane
    assert torch.equal(test.images[0, 0].flatten(), torch.from_numpy(written["test"][0]["data"][0, :1024]))


def test_cifar100_pickles(tmp_path):
    written = write_cifar100(tmp_path)
    ds = load_dataset("cifar100", "train", root=tmp_path)
    check_dataset(ds, dataset_info("cifar100"), 6)
    assert ds.labels.tolist() == written["train"]["fine_labels"] and ds.labels[-1] == 99
    assert torch.equal(ds.images.reshape(6, -1), torch.from_numpy(written["train"]["data"]))
    check_dataset(load_dataset("cifar100", "test", root=tmp_path), dataset_info("cifar100"), 3)


class _CreatesFile:
    """Unpickling this runs ``open(path, "w")``: a stand-in for any code a crafted data file could run."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.mark.parametrize("where", ["whole file", "label"])
def test_cifar_pickle_cannot_run_code(tmp_path, where):
    write_cifar10(tmp_path)
    victim = tmp_path / "created-by-the-data-file"
    entry = _cifar_entry(np.random.default_rng(0), 3, "labels", 10, "testing batch 1 of 1")
    if where == "label":
        entry["labels"][1] = _CreatesFile(victim)
    payload = _CreatesFile(victim) if where == "whole file" else entry
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(DataError) as exc:
        load_dataset("cifar10", "test", root=tmp_path)
    assert_one_line(exc, "cifar10", "open is not part of the CIFAR format")
    assert not victim.exists()


@pytest.mark.parametrize("protocol", [2, 4, 5, "python2-names"])
def test_cifar_pickles_of_every_protocol_load(tmp_path, protocol):
    written = write_cifar100(tmp_path)
    path = tmp_path / "cifar-100-python" / "test"
    if protocol == "python2-names":  # the official files name numpy 1's module
        blob = pickle.dumps(written["test"], protocol=2)
        assert b"numpy._core.multiarray\n_reconstruct" in blob
        path.write_bytes(blob.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n"))
    else:
        path.write_bytes(pickle.dumps(written["test"], protocol=protocol))
    ds = load_dataset("cifar100", "test", root=tmp_path)
    assert torch.equal(ds.images.reshape(3, -1), torch.from_numpy(written["test"]["data"]))
    assert ds.labels.tolist() == written["test"]["fine_labels"]


def test_cifar10_missing_batch(tmp_path):
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DataError) as exc:
        load_dataset("cifar10", "train", root=tmp_path)
    assert_one_line(exc, "cifar10", tmp_path / "cifar-10-batches-py" / "data_batch_3", "download = true")
    assert "--download" not in str(exc.value)  # no command has that flag
    assert len(load_dataset("cifar10", "test", root=tmp_path)) == 5  # the other split still loads


def test_cifar_wrong_contents(tmp_path):
    d = tmp_path / "cifar-100-python"
    d.mkdir()
    (d / "train").write_bytes(pickle.dumps({"data": np.zeros((2, 3072), np.uint8), "labels": [0, 1]}))
    with pytest.raises(DataError) as exc:
        load_dataset("cifar100", root=tmp_path)
    assert_one_line(exc, "cifar100", d)
    (d / "train").write_bytes(pickle.dumps({"data": np.zeros((2, 3072), np.uint8), "fine_labels": [0, 100]}))
    with pytest.raises(DataError) as exc:
        load_dataset("cifar100", root=tmp_path)
    assert_one_line(exc, "cifar100", "0..99")


def test_download_failure_is_one_line(monkeypatch, tmp_path):
    import torchvision.datasets as tvd

    def offline(*args, **kwargs):
        raise RuntimeError("Error downloading cifar-10-python.tar.gz:\nTried https://..., got: [Errno -3]")

    monkeypatch.setattr(tvd, "CIFAR10", offline)
    with pytest.raises(DataError) as exc:
        load_dataset("cifar10", root=tmp_path, download=True)
    assert_one_line(exc, "cifar10", "download", tmp_path, "CIFAR-10 python batches")


# --- SVHN -----------------------------------------------------------------------

def test_svhn_mat(tmp_path):
    X, y = write_svhn(tmp_path, "train")
    write_svhn(tmp_path, "test", n=3, seed=1)
    ds = load_dataset("svhn", "train", root=tmp_path)
    check_dataset(ds, dataset_info("svhn"), 6)
    assert ds.labels.tolist() == [1, 2, 3, 4, 5, 6]
    assert torch.equal(ds.images[2], torch.from_numpy(X[:, :, :, 2]).permute(2, 0, 1))
    test = load_dataset("svhn", "test", root=tmp_path)
    check_dataset(test, dataset_info("svhn"), 3)
    write_svhn(tmp_path, "train", n=12)
    assert load_dataset("svhn", root=tmp_path).labels.tolist()[9:] == [0, 1, 2]  # 10 -> 0


# --- ImageFolder ---------------------------------------------------------------------

def test_imagefolder_flat_and_split(tmp_path):
    flat = tmp_path / "flat"
    write_imagefolder(flat, classes=("b_dog", "a_cat", "c_owl"))
    ds = load_dataset("imagefolder", "train", root=flat, image_size=16)
    info = dataset_info("imagefolder", root=flat, image_size=16)
    assert info.classes == ("a_cat", "b_dog", "c_owl") and info.num_classes == 3
    assert info.mean == (0.485, 0.456, 0.406) and info.std == (0.229, 0.224, 0.225)
    check_dataset(ds, info, 6)
    assert len(load_dataset("imagefolder", "test", root=flat, image_size=16)) == 6  # flat tree serves every split

    tree = tmp_path / "imagenet"
    write_imagefolder(tree / "train", per_class=3)
    write_imagefolder(tree / "val", per_class=1, size=(300, 260))
    train = load_dataset("imagefolder", "train", root=tree)
    assert train.info.image_size == (224, 224) and len(train) == 6
    val = load_dataset("imagefolder", "test", root=tree)
    xb, yb = check_dataset(val, dataset_info("imagefolder", root=tree), 2)
    assert yb.tolist() == [1, 0]


def test_imagefolder_errors(tmp_path):
    with pytest.raises(DataError) as exc:
        load_dataset("imagefolder")
    assert_one_line(exc, "imagefolder", "--root")
    with pytest.raises(DataError) as exc:
        load_dataset("imagefolder", root=tmp_path / "absent")
    assert_one_line(exc, tmp_path / "absent")
    write_imagefolder(tmp_path / "t" / "train")
    with pytest.raises(DataError) as exc:
        load_dataset("imagefolder", "test", root=tmp_path / "t")
    assert_one_line(exc, "test", tmp_path / "t")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError) as exc:
        dataset_info("imagefolder", root=tmp_path / "empty")
    assert_one_line(exc, tmp_path / "empty")


# --- batch() and bad input ----------------------------------------------------------

def test_batch_fast_path_and_subset():
    info = DatasetInfo("toy", 1, (2, 2), 3, (0.5,), (0.5,), ("a", "b", "c"))
    images = torch.arange(10 * 4, dtype=torch.uint8).reshape(10, 1, 2, 2)
    ds = TensorImageDataset(images, torch.arange(10) % 3, info)
    xb, yb = batch(ds, torch.tensor([3, 1]))
    assert torch.equal(xb, images[[3, 1]].float() / 255) and yb.tolist() == [0, 1]
    sub = torch.utils.data.Subset(ds, [9, 8, 7])
    xs, ys = batch(sub, [2, 0])
    assert torch.equal(xs, torch.stack([sub[2][0], sub[0][0]])) and ys.tolist() == [1, 0]
    assert batch(ds, [])[0].shape == (0, 1, 2, 2)


def test_bad_inputs_are_one_line_data_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("ROBUSTMIX_FASHION_MNIST_SRC", str(tmp_path / "nowhere"))
    with pytest.raises(DataError) as exc:
        load_dataset("imagenet-1k", root=tmp_path)
    assert_one_line(exc, "imagenet-1k", "fashion-mnist", "cifar100", "imagefolder")
    with pytest.raises(DataError) as exc:
        dataset_info("nope")
    assert_one_line(exc, "nope", "mnist")
    with pytest.raises(DataError) as exc:
        load_dataset("mnist", "validation", root=tmp_path)
    assert_one_line(exc, "validation", "train", "test")
    with pytest.raises(DataError) as exc:  # the file of the split asked for, not the other split's
        load_dataset("mnist", "test", root=tmp_path)
    assert_one_line(exc, tmp_path / "MNIST/raw/t10k-images-idx3-ubyte")
    for name, looked in (("mnist", "MNIST/raw/train-images-idx3-ubyte"),
                         ("cifar10", "cifar-10-batches-py/data_batch_1"),
                         ("cifar100", "cifar-100-python/train"),
                         ("svhn", "train_32x32.mat")):
        with pytest.raises(DataError) as exc:
            load_dataset(name, "train", root=tmp_path)
        assert_one_line(exc, name, tmp_path / looked, "download = true under [data] in the recipe or spec")
        assert "--download" not in str(exc.value)  # no command has that flag
        with pytest.raises(DataError) as exc:
            prepare(name, tmp_path)
        assert "download" not in str(exc.value)  # `robustmix data prepare` never downloads
    with pytest.raises(DataError) as exc:
        load_dataset("mnist", root=tmp_path, image_size=(0, 3))
    assert_one_line(exc, "image size")
