"""Benchmark robustmix's evaluation engine against the reference libraries (one run).

    python bench/bench_eval.py [--model-dir ZOO/RECIPE/VARIANT-sSEED] [--n 1000] [--aa-n 64]
                               [--aa-eps 2/255,4/255,8/255,16/255] [--mem-n 1000,10000] [--repeats 3]
                               [--device cpu|cuda] [--skip-aa] [--skip-mem]

Items (1)-(3) run on --device (default cpu; on CUDA both sides run in full fp32, TF32 off,
as `robustmix eval` does); item (4) measures the CPU process's resident memory.

(1) single-eps PGD-20 (no random start) on N test images: robustmix ``sweep`` vs
    torchattacks.PGD; time ratio (target <= 0.8) and whether the robust sets agree;
(2) an 8-eps PGD-20 sweep: robustmix nested sweep vs a per-eps torchattacks loop
    (target <= 0.3), robust accuracy side by side (robustmix <= naive at every eps);
(3) AutoAttack standard over 4 eps on --aa-n images: robustmix nested sweep vs four
    independent pyautoattack runs (target <= 0.5), robust sets compared per example. The
    default grid spans the demo model's curve from mostly robust to none. Nesting saves
    the work on examples a smaller eps already broke and FAB-T's eps-free search at every
    eps after the first; APGD-T and Square on still-robust examples must be redone at
    every eps, and the first eps costs both sides the same;
(4) peak RSS of `python -m robustmix eval` (FGSM only) at n=10000 vs n=1000, each in a
    fresh subprocess (target <= 1.2x).

The model is a zoo checkpoint directory (--model-dir) or, by default, a small
convmixer_32_4_ks5_p2 trained here for one epoch on a Fashion-MNIST subset.
Data are the real Fashion-MNIST test images (``robustmix data prepare fashion-mnist``).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import torch
import torchattacks

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
from bench_gpu import sync  # noqa: E402

from robustmix import data as datasets  # noqa: E402
from robustmix.attacks import make_attack, sweep  # noqa: E402
from robustmix.eps import parse_eps  # noqa: E402
from robustmix.evaluate import full_fp32  # noqa: E402
from robustmix.store import ModelStore, load_checkpoint  # noqa: E402
from robustmix.device import resolve_device  # noqa: E402

STEPS = 20
SINGLE_EPS = 8 / 255
SWEEP_EPS = [k / 255 for k in (1, 2, 3, 4, 6, 8, 12, 16)]


def train_default(store_root: Path, data_root) -> Path:
    from robustmix.recipe import DataSection, ModelSection, Recipe
    from robustmix.train import train_recipe

    recipe = Recipe(name="bench", data=DataSection(root=data_root, train_subset=10000),
                    model=ModelSection(name="convmixer_32_4_ks5_p2"), epochs=1, batch_size=128,
                    eval_batch_size=1000, device="cpu")
    (r,) = train_recipe(recipe, ModelStore(store_root), progress=False)
    print(f"trained {r.name}: clean_acc={r.clean_acc:.4f} in {r.seconds:.1f}s ({store_root / r.name})")
    return store_root / r.name


def test_images(data_root, n: int, seed: int = 0):
    ds = datasets.load_dataset("fashion-mnist", "test", root=data_root)
    idx = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))[:n]
    return datasets.batch(ds, idx)


def timed(fn, device):
    sync(device)
    t = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - t, out


@torch.no_grad()
def robust_mask(model, x_adv, y):
    return model(x_adv).argmax(1) == y


def ta_pgd(model, x, y, eps):
    atk = torchattacks.PGD(model, eps=eps, alpha=2.5 * eps / STEPS, steps=STEPS, random_start=False)
    return robust_mask(model, atk(x, y), y)


def item_single(model, x, y):
    atk = make_attack("pgd", {"steps": STEPS, "random_start": False}, "Linf")
    t_ours, res = timed(lambda: sweep(atk, model, x, y, [SINGLE_EPS], seed=0), x.device)
    t_ref, ref = timed(lambda: ta_pgd(model, x, y, SINGLE_EPS), x.device)
    ours = res[SINGLE_EPS].correct
    # robustmix stops per example at the first iterate that fools the model; torchattacks keeps
    # stepping and may end on a non-adversarial iterate, so ours can only find more.
    extra = int((~ours & ref).sum())
    missed = int((ours & ~ref).sum())
    return t_ours, t_ref, {"robustmix robust": int(ours.sum()), "torchattacks robust": int(ref.sum()),
                           "identical": bool(torch.equal(ours, ref)), "only robustmix broke": extra,
                           "only torchattacks broke": missed}


def item_sweep(model, x, y):
    atk = make_attack("pgd", {"steps": STEPS, "random_start": False}, "Linf")
    t_ours, res = timed(lambda: sweep(atk, model, x, y, SWEEP_EPS, seed=0), x.device)
    naive = {}

    def loop():
        for e in SWEEP_EPS:
            naive[e] = ta_pgd(model, x, y, e)
    t_ref, _ = timed(loop, x.device)
    rows = [(e, float(res[e].correct.float().mean()), float(naive[e].float().mean())) for e in SWEEP_EPS]
    return t_ours, t_ref, rows


def item_autoattack(model, x, y, grid, batch_size=250):
    from pyautoattack import AutoAttack

    atk = make_attack("autoattack", {"version": "standard", "batch_size": batch_size}, "Linf")
    t_ours, res = timed(lambda: sweep(atk, model, x, y, grid, seed=0), x.device)
    ref = {}

    def independent():
        for e in grid:
            aa = AutoAttack(model, norm="Linf", eps=e, version="standard", seed=0, device=x.device)
            aa.verbose = False
            x_adv = aa.run_standard_evaluation(x, y, batch_size=batch_size)
            x_adv = x_adv[0] if isinstance(x_adv, tuple) else x_adv
            ref[e] = robust_mask(model, x_adv, y)
    import logging

    logging.getLogger("auto-attack").disabled = True
    t_ref, _ = timed(independent, x.device)
    # Per example: robustmix may only break more (an example broken at a smaller eps stays
    # broken); one that only the reference broke would mean robustmix's attack was weaker.
    rows = [(e, float(res[e].correct.float().mean()), float(ref[e].float().mean()),
             int((~res[e].correct & ref[e]).sum()), int((res[e].correct & ~ref[e]).sum())) for e in grid]
    return t_ours, t_ref, rows


def repeated(item, repeats: int):
    """Run ``item`` -> (t_ours, t_ref, details) ``repeats`` times: median times, the last details."""
    runs = [item() for _ in range(repeats)]
    return (statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs), runs[-1][2])


def attack_items(model, x, y, args):
    """Items (1)-(3) -> (rows, item 1's robust sets, item 2's curve, item 3's curve or None)."""
    # Warm-up (imports, allocator, first-call overheads) so neither side pays it inside a timing.
    import pyautoattack  # noqa: F401
    item_single(model, x[:16], y[:16])
    rows = []  # (item, robustmix, reference, ratio, target)
    # Medians over repeats: the machines are shared, and one slow second moves a single ratio a lot.
    t1, r1, info1 = repeated(lambda: item_single(model, x, y), args.repeats)
    rows.append((f"(1) PGD-{STEPS} eps=8/255, n={len(x)} [s]", t1, r1, t1 / r1, "<= 0.8"))
    t2, r2, curve = repeated(lambda: item_sweep(model, x, y), args.repeats)
    rows.append((f"(2) PGD-{STEPS} 8-eps sweep, n={len(x)} [s]", t2, r2, t2 / r2, "<= 0.3"))
    aa_curve = None
    if not args.skip_aa:
        grid = [parse_eps(e) for e in args.aa_eps.split(",")]
        xa, ya = x[:args.aa_n], y[:args.aa_n]
        t3, r3, aa_curve = item_autoattack(model, xa, ya, grid)
        rows.append((f"(3) AutoAttack standard {len(grid)} eps, n={len(xa)} [s]", t3, r3, t3 / r3, "<= 0.5"))
    return rows, info1, curve, aa_curve


def peak_rss_eval(store_root: Path, name: str, data_root, n: int, workdir: Path) -> tuple[float, float]:
    """(peak RSS MiB, seconds) of a fresh `python -m robustmix eval` with an FGSM-only spec."""
    spec = workdir / f"mem-{n}.toml"
    spec.write_text(textwrap.dedent(f"""
        models = ["{name}"]
        store = "{store_root}"
        [data]
        n = {n}
        batch_size = 500
        {f'root = "{data_root}"' if data_root else ''}
        [threat.Linf]
        eps = [0, "2/255", "8/255"]
        [[attacks]]
        name = "fgsm"
    """))
    # A wrapper process per measurement: RUSAGE_CHILDREN's high-water mark then covers one eval only.
    wrapper = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
               "rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode; "
               "print(rc, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, time.perf_counter() - t)")
    cmd = [sys.executable, "-c", wrapper, sys.executable, "-m", "robustmix", "eval", str(spec),
           "--results", str(workdir / f"mem-{n}"), "--quiet", "--device", "cpu"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=workdir,
                         env={**os.environ, "PYTHONPATH": str(REPO)}).stdout.split()
    rc, kib, secs = int(out[0]), int(out[1]), float(out[2])
    if rc != 0:
        raise SystemExit(f"robustmix eval (n={n}) failed with exit status {rc}")
    return kib / 1024, secs


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model-dir", help="zoo checkpoint directory (default: train a small one here)")
    p.add_argument("--data-root", help="data root (default ./data or $ROBUSTMIX_DATA)")
    p.add_argument("--n", type=int, default=1000, help="images for items (1) and (2)")
    p.add_argument("--aa-n", type=int, default=64, help="images for item (3)")
    p.add_argument("--aa-eps", default="2/255,4/255,8/255,16/255", help="4 comma-separated eps for item (3)")
    p.add_argument("--repeats", type=int, default=3, help="runs of items (1) and (2); medians are shown")
    p.add_argument("--mem-n", default="1000,10000", help="small,large n for item (4)")
    p.add_argument("--device", default="cpu", help="cpu | cuda[:N] | auto, for items (1)-(3)")
    p.add_argument("--skip-aa", action="store_true")
    p.add_argument("--skip-mem", action="store_true")
    args = p.parse_args(argv)

    datasets.prepare("fashion-mnist", args.data_root)
    tmp = Path(tempfile.mkdtemp(prefix="bench-eval-"))
    model_dir = Path(args.model_dir).resolve() if args.model_dir else train_default(tmp / "zoo", args.data_root)
    device = resolve_device(args.device)
    model, meta = load_checkpoint(model_dir, device=device)
    model.eval()
    store_root, name = model_dir.parent.parent, f"{model_dir.parent.name}/{model_dir.name}"
    print(f"model {meta['model']['name']} ({meta['variant']}), zoo clean_acc {meta['metrics']['clean_acc']:.4f}; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}")

    x, y = (t.to(device) for t in test_images(args.data_root, args.n))
    with full_fp32():
        rows, info1, curve, aa_curve = attack_items(model, x, y, args)
    if not args.skip_mem:
        small, large = (int(v) for v in args.mem_n.split(","))
        m_small, s_small = peak_rss_eval(store_root, name, args.data_root, small, tmp)
        m_large, s_large = peak_rss_eval(store_root, name, args.data_root, large, tmp)
        rows.append((f"(4) peak RSS eval FGSM n={large} vs n={small} [MiB]", m_large, m_small,
                     m_large / m_small, "<= 1.2"))

    print("\n(1) robust sets: " + json.dumps(info1))
    print(f"\n(2) robust accuracy per eps (PGD-{STEPS}, n={len(x)})")
    print(f"  {'eps':>8} {'robustmix':>10} {'naive':>8}  robustmix<=naive")
    for e, ours, ref in curve:
        print(f"  {e * 255:6.0f}/255 {ours:10.3f} {ref:8.3f}  {ours <= ref}")
    if aa_curve is not None:
        print(f"\n(3) AutoAttack standard robust accuracy per eps (n={args.aa_n})")
        print(f"  {'eps':>8} {'robustmix':>10} {'pyautoattack':>13} {'only robustmix broke':>21} "
              f"{'only pyautoattack broke':>24}")
        for e, ours, ref, only_ours, only_ref in aa_curve:
            print(f"  {e:8.4f} {ours:10.3f} {ref:13.3f} {only_ours:21d} {only_ref:24d}")
    if not args.skip_mem:
        print(f"\n(4) eval wall time: n={small} {s_small:.1f}s, n={large} {s_large:.1f}s")

    print(f"\n{'item':52s} {'robustmix':>10} {'reference':>10} {'ratio':>7} {'target':>8}  met")
    for item, ours, ref, ratio, target in rows:
        met = ratio <= float(target.split()[-1])
        print(f"{item:52s} {ours:10.2f} {ref:10.2f} {ratio:7.3f} {target:>8}  {'yes' if met else 'NO'}")
    print("(reference: (1) torchattacks.PGD, (2) per-eps torchattacks.PGD loop, (3) independent pyautoattack "
          "runs per eps, (4) the small-n eval)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
