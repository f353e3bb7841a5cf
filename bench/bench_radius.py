"""Minimum-norm attacks against the nested PGD sweep (one run).

    python bench/bench_radius.py --model-dir ZOO/fashion-mnist-demo/full-s0 [--n 300] [--data-root DIR]
                                 [--steps 100] [--device cpu|cuda]

On N test images of one zoo model, at the demo spec's Linf eps grid:

(1) cost: the nested PGD-20 sweep (as the demo runs it: random start) against one
    FMN-100 and one FAB-100 search, each giving every eps of the grid: forward(-backward)
    passes per the attacks' own count (FAB's untargeted step also takes one backward
    per class, which the count leaves out), seconds, and the ratio to PGD;
(2) curves side by side: robust accuracy at each eps;
(3) agreement: of the (example, eps) pairs PGD broke, the share the minimum-norm radius
    also places within eps (radius <= eps), and the reverse;
(4) median radius with its 95% order-statistic interval per attack.

Examples are the seeded subset every robustmix eval draws (seed 0). Timings are one run
on the given device (on a shared CPU they vary by tens of percent).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from robustmix import data as datasets  # noqa: E402
from robustmix.attacks import make_attack, sweep  # noqa: E402
from robustmix.attacks.minnorm import broken_at  # noqa: E402
from robustmix.device import resolve_device  # noqa: E402
from robustmix.eps import format_eps  # noqa: E402
from robustmix.evaluate import full_fp32  # noqa: E402
from robustmix.stats import median_interval  # noqa: E402
from robustmix.store import load_checkpoint  # noqa: E402

DEMO_LINF = [0, 1 / 255, 2 / 255, 4 / 255, 8 / 255, 16 / 255, 32 / 255]  # evals/fashion-mnist-demo.toml


def timed(fn, device):
    """(wall seconds, CPU seconds of this process, result): on a CPU shared with other jobs the
    wall time depends on them, the process's CPU time much less."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t, time.process_time() - c, out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-dir", required=True, help="zoo checkpoint directory, e.g. zoo/store/fashion-mnist-demo/full-s0")
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--steps", type=int, default=100, help="FMN and FAB steps")
    ap.add_argument("--data-root", default=os.environ.get("ROBUSTMIX_DATA"))
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)

    dev = resolve_device(args.device)
    model, meta = load_checkpoint(args.model_dir, device=dev)
    model.eval()
    ds = datasets.load_dataset("fashion-mnist", "test", root=args.data_root)
    idx = torch.randperm(len(ds), generator=torch.Generator().manual_seed(0))[:args.n]
    x, y = datasets.batch(ds, idx)
    x, y = x.to(dev), y.to(dev)
    print(f"model {args.model_dir} ({meta['arch']}), {args.n} test images, device {dev}, "
          f"torch threads {torch.get_num_threads()}")

    attacks = {"PGD-20 (nested)": make_attack("pgd", {"steps": 20, "random_start": True}, "Linf"),
               f"FMN-{args.steps}": make_attack("fmn", {"steps": args.steps}, "Linf"),
               f"FAB-{args.steps}": make_attack("fab", {"steps": args.steps}, "Linf")}
    runs, cpu_seconds = {}, {}
    with full_fp32():
        for label, atk in attacks.items():
            seconds, cpu, res = timed(lambda: sweep(atk, model, x, y, DEMO_LINF, seed=0), dev)
            runs[label] = (seconds, res)
            cpu_seconds[label] = cpu

    pgd_label = next(iter(runs))
    pgd_s, pgd = runs[pgd_label]
    pgd_passes = sum(r.passes for r in pgd.values())
    print("\n(1) cost over the whole grid")
    pgd_cpu = cpu_seconds[pgd_label]
    print(f"{'attack':<18}{'passes':>10}{'x PGD':>8}{'wall s':>9}{'x PGD':>8}{'CPU s':>9}{'x PGD':>8}")
    for label, (s, res) in runs.items():
        p, c = sum(r.passes for r in res.values()), cpu_seconds[label]
        print(f"{label:<18}{p:>10,}{p / pgd_passes:>8.2f}{s:>9.1f}{s / pgd_s:>8.2f}{c:>9.1f}{c / pgd_cpu:>8.2f}")

    print("\n(2) robust accuracy")
    print(f"{'eps':<8}" + "".join(f"{label:>18}" for label in runs))
    for e in DEMO_LINF:
        print(f"{format_eps(e):<8}" + "".join(f"{float(res[e].correct.float().mean()):>18.3f}"
                                              for _, res in runs.values()))

    print("\n(3) agreement with PGD over (example, eps > 0) pairs")
    for label, (_, res) in list(runs.items())[1:]:
        radius = res[DEMO_LINF[0]].radius
        in_pgd = in_both = in_mn = 0
        for e in DEMO_LINF[1:]:
            pgd_broken = ~pgd[e].correct
            mn_broken = broken_at(radius, e)
            in_pgd += int(pgd_broken.sum())
            in_mn += int(mn_broken.sum())
            in_both += int((pgd_broken & mn_broken).sum())
        print(f"{label}: radius <= eps for {in_both}/{in_pgd} = {in_both / in_pgd:.1%} of the pairs PGD broke; "
              f"PGD broke {in_both}/{in_mn} = {in_both / in_mn:.1%} of the pairs within its radius")

    print("\n(4) median radius (Linf) with 95% order-statistic interval")
    for label, (_, res) in list(runs.items())[1:]:
        radius = res[DEMO_LINF[0]].radius.cpu().numpy()
        med, lo, hi = median_interval(radius)
        print(f"{label}: median {med:.4f} = {med * 255:.2f}/255, 95% CI [{lo:.4f}, {hi:.4f}] "
              f"= [{lo * 255:.2f}, {hi * 255:.2f}]/255; never broken {int((radius == float('inf')).sum())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
