"""GPU throughput: training images/s and PGD examples/s, with achieved FLOP/s against the device's peak.

    python bench/bench_gpu.py                                  # CUDA when present: demo + paper-scale ConvMixer
    python bench/bench_gpu.py --device cpu --small             # the same pipeline at a size a CPU runs in ~1 min

Per model (trained here, on real Fashion-MNIST when installed):
  train  robustmix ``train_one`` with the recipe's [performance] defaults (on CUDA: channels_last and
         bf16 autocast) vs the bare fp32 PyTorch loop of bench/train_throughput.py; images/s of the
         epochs after the first (warm-up), median over repeats.
  pgd    PGD-20, Linf 8/255, no random start, on N test images, robustmix's ``sweep`` vs
         ``torchattacks.PGD`` on the same device and model (both fp32); examples/s and whether the
         robust sets agree (robustmix keeps the first iterate that fools the model, torchattacks
         its last iterate, so robustmix can only break more). Target: >= 2x torchattacks.
         Also robustmix with the bf16 search (precision = "bf16"; verdicts in fp32) against its fp32
         run: the speed-up and how many examples' verdicts differ (it is used only if none do).
  FLOP/s FLOPs of one forward+backward counted by torch.utils.flop_counter (weights' gradients for
         training, the input's gradient for PGD) times the passes each side actually ran, per second,
         next to the device's dense peak from its data sheet (none known for CPUs).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import torchattacks
from torch.utils.flop_counter import FlopCounterMode

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
from train_throughput import data_root, run_bare  # noqa: E402

from robustmix import data as datasets  # noqa: E402
from robustmix.attacks import make_attack, sweep  # noqa: E402
from robustmix.config import from_dict  # noqa: E402
from robustmix.evaluate import full_fp32  # noqa: E402
from robustmix.recipe import Recipe  # noqa: E402
from robustmix.store import ModelStore  # noqa: E402
from robustmix.device import resolve_device  # noqa: E402
from robustmix.train import train_one  # noqa: E402

STEPS, EPS = 20, 8 / 255
MODELS = {"demo": "convmixer_32_4_ks5_p2", "paper": "convmixer_256_8_ks5_p2"}

# Dense (no sparsity) peak FLOP/s from NVIDIA's data sheets, matched on the device name.
# H200 has the H100 SXM's compute (more and faster memory).
PEAKS = {
    "H100 PCIe": {"fp32": 51.2e12, "tf32": 378e12, "bf16": 756e12},
    "H100": {"fp32": 66.9e12, "tf32": 494.7e12, "bf16": 989.4e12},
    "H200": {"fp32": 66.9e12, "tf32": 494.7e12, "bf16": 989.4e12},
    "A100": {"fp32": 19.5e12, "tf32": 156e12, "bf16": 312e12},
}


def device_peaks(device: torch.device) -> tuple[str, dict]:
    if device.type != "cuda":
        return "cpu", {}
    name = torch.cuda.get_device_name(device)
    for key, peaks in PEAKS.items():  # "H100 PCIe" before "H100"
        if key in name:
            return name, peaks
    return name, {}


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def flops_per_example(model, x, y, *, wrt_input: bool) -> float:
    """FLOPs of one forward+backward per example (input gradient only, or weights' gradients)."""
    model.eval() if wrt_input else model.train()
    flags = {p: p.requires_grad for p in model.parameters()}
    x = x.clone().requires_grad_(wrt_input)
    for p in model.parameters():  # what an attack differentiates: the input only
        p.requires_grad_(flags[p] and not wrt_input)
    # FlopCounterMode cannot follow autograd.grad on a leaf, so .backward() it is.
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(x), y).backward()
    for p, flag in flags.items():
        p.requires_grad_(flag)
    model.zero_grad(set_to_none=True)
    model.eval()
    return counter.get_total_flops() / x.shape[0]


def bench_train(model_name, root, n_images, batch_size, epochs, repeats, device, tmp):
    """(robustmix img/s, bare img/s, trained model, resolved performance settings, test accuracy)."""
    recipe = from_dict(Recipe, {"name": "bench", "data": {"root": str(root), "train_subset": n_images},
                                "model": {"name": model_name}, "epochs": epochs, "batch_size": batch_size,
                                "eval_batch_size": 1000, "device": str(device),
                                "schedule": {"name": "constant"}})
    ds = datasets.load_dataset("fashion-mnist", "train", root=root)
    ours, bare, model, perf, clean = [], [], None, {}, float("nan")
    for rep in range(repeats):
        store = ModelStore(Path(tempfile.mkdtemp(dir=tmp)))
        sides = ["robustmix", "bare"] if rep % 2 == 0 else ["bare", "robustmix"]
        for side in sides:  # alternate the order so drift hits both sides alike
            if side == "bare":
                bare.extend(run_bare(recipe, "full", {}, device, ds, epochs))
                continue
            train_one(recipe, "full", {}, 0, store, device, progress=False)
            (name,) = store.names()
            meta = store.meta(name)
            secs = [b["seconds"] - a["seconds"] for a, b in
                    zip(meta["metrics"]["history"], meta["metrics"]["history"][1:])]
            ours.extend(n_images / s for s in secs)
            model, perf, clean = store.load(name)[0], meta["performance"], meta["metrics"]["clean_acc"]
    return statistics.median(ours), statistics.median(bare), model.to(device).eval(), perf, clean


def bench_pgd(model, x, y, device, repeats):
    """Median seconds of robustmix and torchattacks PGD-20 and their robust masks."""
    atk = make_attack("pgd", {"steps": STEPS, "random_start": False}, "Linf")
    ours_t, ref_t, ours_passes = [], [], 0
    for rep in range(repeats):
        for side in (("ours", "ref") if rep % 2 == 0 else ("ref", "ours")):
            sync(device)
            t0 = time.perf_counter()
            if side == "ours":
                res = sweep(atk, model, x, y, [EPS], seed=0)[EPS]
                ours_mask, ours_passes = res.correct, res.passes
            else:
                ta = torchattacks.PGD(model, eps=EPS, alpha=2.5 * EPS / STEPS, steps=STEPS, random_start=False)
                x_adv = ta(x, y)
                with torch.no_grad():
                    ref_mask = model(x_adv).argmax(1) == y
            sync(device)
            (ours_t if side == "ours" else ref_t).append(time.perf_counter() - t0)
    return statistics.median(ours_t), statistics.median(ref_t), ours_mask, ref_mask, ours_passes


def bench_bf16(model, x, y, device, repeats):
    """robustmix PGD-20 with the bf16 search (verdicts stay fp32): median seconds and robust mask."""
    atk = make_attack("pgd", {"steps": STEPS, "random_start": False}, "Linf", precision="bf16")
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        mask = sweep(atk, model, x, y, [EPS], seed=0)[EPS].correct
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), mask


def fmt_flops(value: float) -> str:
    return f"{value / 1e12:.2f} TFLOP/s" if value >= 1e11 else f"{value / 1e9:.1f} GFLOP/s"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--models", help="comma-separated: demo, paper or registered names (default demo,paper; "
                                    "demo with --small)")
    p.add_argument("--small", action="store_true", help="CPU size: demo model, 2048 train images, 256 PGD images")
    p.add_argument("--train-images", type=int, help="default 60000 (GPU) / 2048 (--small)")
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--epochs", type=int, default=3, help="per training run; the first is warm-up")
    p.add_argument("--pgd-n", type=int, help="test images attacked (default 10000 / 256 with --small)")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    device = resolve_device(args.device)
    n_train = args.train_images or (2048 if args.small else 60000)
    n_pgd = args.pgd_n or (256 if args.small else 10000)
    models = args.models or ("demo" if args.small else "demo,paper")
    device_name, peaks = device_peaks(device)
    print(f"device {device_name}; torch {torch.__version__}; {n_train} train images x {args.epochs} epochs, "
          f"batch {args.batch_size}; PGD-{STEPS} Linf 8/255 on {n_pgd} images; {args.repeats} repeats",
          file=sys.stderr)

    rows = []
    with tempfile.TemporaryDirectory() as tmp_:
        tmp = Path(tmp_)
        root = data_root(tmp, n_train)
        test = datasets.load_dataset("fashion-mnist", "test", root=root)
        for key in models.split(","):
            name = MODELS.get(key, key)
            ours_img, bare_img, model, perf, clean = bench_train(name, root, min(n_train, 60000), args.batch_size,
                                                          args.epochs, args.repeats, device, tmp)
            x, y = datasets.batch(test, torch.arange(min(n_pgd, len(test))))
            x, y = x.to(device), y.to(device)
            # Full precision on every side, as `robustmix eval` runs: CUDA convolutions default to TF32.
            with full_fp32():
                t_ours, t_ref, m_ours, m_ref, passes = bench_pgd(model, x, y, device, args.repeats)
                t_bf16, m_bf16 = bench_bf16(model, x, y, device, args.repeats)
            probe_x, probe_y = x[:min(64, len(x))], y[:min(64, len(y))]
            f_attack = flops_per_example(model, probe_x, probe_y, wrt_input=True)
            f_train = flops_per_example(model, probe_x, probe_y, wrt_input=False)
            rows.append({
                "model": name, "perf": perf, "n_pgd": len(x), "clean_acc": clean,
                "train_ours": ours_img, "train_bare": bare_img,
                "train_flops": f_train * ours_img,
                "pgd_ours": len(x) / t_ours, "pgd_ref": len(x) / t_ref,
                # torchattacks runs every example for all steps; robustmix's passes are counted.
                "pgd_flops_ours": f_attack * passes / t_ours, "pgd_flops_ref": f_attack * len(x) * STEPS / t_ref,
                "robust_ours": int(m_ours.sum()), "robust_ref": int(m_ref.sum()),
                "only_ours_broke": int((~m_ours & m_ref).sum()), "only_ref_broke": int((m_ours & ~m_ref).sum()),
                "pgd_bf16": len(x) / t_bf16, "robust_bf16": int(m_bf16.sum()),
                "bf16_differs": int((m_bf16 != m_ours).sum()),
            })
            print(f"  {name}: done", file=sys.stderr)

    peak_text = ", ".join(f"{k} {fmt_flops(v)}" for k, v in peaks.items()) or "unknown"
    print(f"\ndevice: {device_name} (dense peak: {peak_text})")
    print(f"{'model':<24} {'what':<28} {'robustmix':>16} {'reference':>16} {'ratio':>7}")
    for r in rows:
        print(f"{r['model']:<24} {'train img/s':<28} {r['train_ours']:>16.0f} {r['train_bare']:>16.0f} "
              f"{r['train_ours'] / r['train_bare']:>7.2f}   (bare fp32 loop; robustmix settings {r['perf']})")
        print(f"{'':<24} {'train FLOP/s':<28} {fmt_flops(r['train_flops']):>16}")
        print(f"{'':<24} {'PGD-20 examples/s':<28} {r['pgd_ours']:>16.0f} {r['pgd_ref']:>16.0f} "
              f"{r['pgd_ours'] / r['pgd_ref']:>7.2f}   (torchattacks.PGD; target >= 2)")
        print(f"{'':<24} {'PGD FLOP/s':<28} {fmt_flops(r['pgd_flops_ours']):>16} "
              f"{fmt_flops(r['pgd_flops_ref']):>16}")
        print(f"{'':<24} {'PGD-20 bf16 search ex/s':<28} {r['pgd_bf16']:>16.0f} {r['pgd_ours']:>16.0f} "
              f"{r['pgd_bf16'] / r['pgd_ours']:>7.2f}   (robustmix fp32; robust {r['robust_bf16']} vs "
              f"{r['robust_ours']}, {r['bf16_differs']} examples differ)")
        same = r["only_ours_broke"] == 0 and r["only_ref_broke"] == 0
        # Early exit pays most where most examples break early: read the ratio with these counts.
        print(f"{'':<24} {'PGD robust examples':<28} {r['robust_ours']:>16d} {r['robust_ref']:>16d}   "
              f"of {r['n_pgd']}, clean accuracy {r['clean_acc']:.3f} "
              f"({'identical sets' if same else 'only robustmix broke %d, only torchattacks broke %d' % (r['only_ours_broke'], r['only_ref_broke'])})")
    if peaks:
        fp32 = peaks["fp32"]
        for r in rows:
            print(f"{r['model']}: training at {100 * r['train_flops'] / peaks['bf16']:.1f}% of bf16 peak; "
                  f"PGD at {100 * r['pgd_flops_ours'] / fp32:.1f}% (robustmix) / "
                  f"{100 * r['pgd_flops_ref'] / fp32:.1f}% (torchattacks) of fp32 peak")
    return 0


if __name__ == "__main__":
    sys.exit(main())
