#!/usr/bin/env python
"""Common corruptions: the images of an eval made once for all models (the cache) against once
per model (CACHE_BYTES = 0), side by side in one run: the demo's full and chans models,
evals/fashion-mnist-corruptions.toml (15 types x 5 severities) on --n test images.

    python bench/bench_corruption_cache.py [--n 100] [--store zoo/store]   # after `make demo`
"""
import argparse
import tempfile
import time

from robustmix import corruption_eval
from robustmix.evaluate import run_eval
from robustmix.spec import load_spec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--store", default="zoo/store")
    args = ap.parse_args()
    spec = load_spec("evals/fashion-mnist-corruptions.toml")
    spec.data.n, spec.store = args.n, args.store
    seconds, default_cap = {}, corruption_eval.CACHE_BYTES
    for label, cap in (("once per model", 0), ("once per eval", default_cap)):
        corruption_eval.CACHE_BYTES = cap
        with tempfile.TemporaryDirectory() as out:
            t0 = time.perf_counter()
            s = run_eval(spec, out, device="cpu", progress=False, log=lambda *a, **k: None)
            seconds[label] = time.perf_counter() - t0
        acc = s[s["threat_model"] == "corruptions"].groupby("model")["robust_acc"].mean().round(4).to_dict()
        print(f"{label:>15}: {seconds[label]:6.1f} s  mean accuracy {acc}")
    print(f"ratio (once per model / once per eval): {seconds['once per model'] / seconds['once per eval']:.2f}")


if __name__ == "__main__":
    main()
