"""Training throughput: robustmix's train_one vs a bare hand-written PyTorch loop.

Both train the same model (build_variant, same variant and seed) on the same
in-memory data tensors with AdamW + cross-entropy + grad-norm clipping. The
robustmix side is the real code path, ``robustmix.train.train_one`` on a
recipe; its per-epoch training seconds come from the checkpoint's history
(data loading, evaluation and saving are outside them, as in the bare loop).
Epoch 1 of every run is warm-up and not timed; runs alternate
robustmix/bare and are repeated, and the median images/s is reported.

    python bench/train_throughput.py --model convmixer_32_4_ks5_p2 --n-images 4096 --batch-size 128
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from robustmix import data as datasets
from robustmix.device import resolve_device
from robustmix.recipe import DataSection, ModelSection, Recipe, ScheduleSection
from robustmix.store import ModelStore
from robustmix.train import train_one
from robustmix.variants import build_variant, parse_variant, resolve_variant


def data_root(tmp: Path, n_images: int) -> Path:
    """Real Fashion-MNIST when installed, else a synthetic one of the same shape."""
    try:
        datasets.prepare("fashion-mnist", tmp / "fm")
        return tmp / "fm"
    except Exception:  # noqa: BLE001 - fall back to synthetic data of the same format
        import struct
        raw = tmp / "fake" / "FashionMNIST" / "raw"
        raw.mkdir(parents=True)
        rng = np.random.default_rng(0)
        for prefix, n in (("train", n_images), ("t10k", 256)):
            for kind, arr in (("images-idx3", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)),
                              ("labels-idx1", (np.arange(n) % 10).astype(np.uint8))):
                (raw / f"{prefix}-{kind}-ubyte").write_bytes(
                    struct.pack(">BBBB", 0, 0, 8, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
                    + arr.tobytes())
        print("(real Fashion-MNIST not installed: synthetic images)", file=sys.stderr)
        return tmp / "fake"


def run_robustmix(recipe: Recipe, variant: str, params: dict, device, tmp: Path) -> list[float]:
    """images/s of each timed epoch (2..E) of train_one."""
    store = ModelStore(Path(tempfile.mkdtemp(dir=tmp)))
    train_one(recipe, variant, params, 0, store, device, progress=False)
    (name,) = store.names()
    hist = store.meta(name)["metrics"]["history"]
    secs = np.diff([0.0] + [h["seconds"] for h in hist])
    n = recipe.data.train_subset
    return [n / s for s in secs[1:]]


def run_bare(recipe: Recipe, variant: str, params: dict, device, ds, epochs: int) -> list[float]:
    """The same training written by hand in plain PyTorch."""
    torch.manual_seed(0)
    info = ds.info
    model = build_variant(recipe.model.name, variant, num_classes=info.num_classes, in_chans=info.channels,
                          mean=list(info.mean), std=list(info.std), variant_seed=0, variant_params=params).to(device)
    params_ = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params_, lr=recipe.optimizer.lr, weight_decay=recipe.optimizer.weight_decay)
    images, labels = ds.images[: recipe.data.train_subset], ds.labels[: recipe.data.train_subset]
    n, bs = len(images), recipe.batch_size
    rates = []
    for epoch in range(epochs):
        t0 = time.perf_counter()
        model.train()
        order = torch.randperm(n)
        for start in range(0, n, bs):
            idx = order[start:start + bs]
            x = images.index_select(0, idx).float().div_(255).to(device)
            y = labels.index_select(0, idx).to(device)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params_, recipe.optimizer.grad_clip)
            opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if epoch > 0:
            rates.append(n / (time.perf_counter() - t0))
    return rates


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="convmixer_32_4_ks5_p2")
    p.add_argument("--n-images", type=int, default=4096, help="training images per epoch")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--device", default="cpu")
    p.add_argument("--variants", default="full,chans,space,smooth")
    p.add_argument("--epochs", type=int, default=3, help="per run; the first is warm-up")
    p.add_argument("--repeats", type=int, default=3, help="interleaved robustmix/bare runs per variant")
    args = p.parse_args(argv)
    device = resolve_device(args.device)

    with tempfile.TemporaryDirectory() as tmp_:
        tmp = Path(tmp_)
        root = data_root(tmp, args.n_images)
        ds = datasets.load_dataset("fashion-mnist", "train", root=root)
        n = min(args.n_images, len(ds))
        # train_subset < len(ds) picks a seeded random subset; the bare loop uses the first n
        # images: the same tensor shapes and work per step.
        recipe = Recipe(name="bench", data=DataSection(root=str(root), train_subset=n),
                        model=ModelSection(name=args.model), epochs=args.epochs, batch_size=args.batch_size,
                        eval_batch_size=1000, device=str(device), schedule=ScheduleSection(name="constant"))
        print(f"model {args.model}, {n} images/epoch, batch {args.batch_size}, device {device}, "
              f"{torch.get_num_threads()} threads, {args.repeats} x {args.epochs - 1} timed epochs per side",
              file=sys.stderr)
        rows = []
        for text in args.variants.split(","):
            variant, params = parse_variant(text)
            params = resolve_variant(variant, params)
            rm, bare = [], []
            for rep in range(args.repeats):  # alternate which side runs first
                sides = [lambda: rm.extend(run_robustmix(recipe, variant, params, device, tmp)),
                         lambda: bare.extend(run_bare(recipe, variant, params, device, ds, args.epochs))]
                for side in (sides if rep % 2 == 0 else sides[::-1]):
                    side()
            r, b = statistics.median(rm), statistics.median(bare)
            rows.append((text, r, b, r / b))
            print(f"  {text}: robustmix {r:.0f} img/s, bare {b:.0f} img/s", file=sys.stderr)

    print(f"{'variant':<10} {'robustmix img/s':>16} {'bare img/s':>12} {'ratio':>7} {'overhead':>9}")
    for text, r, b, ratio in rows:
        print(f"{text:<10} {r:>16.0f} {b:>12.0f} {ratio:>7.3f} {100 * (1 - ratio):>8.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
