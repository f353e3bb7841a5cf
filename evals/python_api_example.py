"""robustmix from Python, as a notebook would use it: a model, some test images, a robustness curve.

    python evals/python_api_example.py [--n 200] [--out reports/python-api] [--store zoo/store]

Uses the demo zoo's fashion-mnist-demo/full-s0 when the zoo store has it (`make demo`), otherwise a
small untrained CNN, so it runs without training anything. Data: the Fashion-MNIST test split
as plain tensors (any (x, y) pair, torch Dataset or DataLoader works the same way).
"""
import argparse

import torch
from torch import nn

import robustmix
from robustmix import data as datasets
from robustmix.store import ModelStore, default_store_root

DEMO_MODEL = "fashion-mnist-demo/full-s0"


def pick_model(store) -> tuple[str, nn.Module]:
    zoo = ModelStore(store or default_store_root())
    if zoo.root.is_dir() and zoo.names(DEMO_MODEL):
        return DEMO_MODEL, zoo.load(DEMO_MODEL)[0]
    torch.manual_seed(0)
    return "tiny-cnn", nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4),
                                     nn.Flatten(), nn.Linear(8 * 16, 10))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200, help="test images to evaluate")
    ap.add_argument("--out", default="reports/python-api", help="HTML report directory")
    ap.add_argument("--store", help="zoo store (default zoo/store or $ROBUSTMIX_ZOO)")
    args = ap.parse_args()

    name, model = pick_model(args.store)
    test = datasets.load_dataset("fashion-mnist", "test")           # $ROBUSTMIX_DATA, or ./data
    x, y = datasets.batch(test, range(len(test)))                   # (10000, 1, 28, 28) in [0, 1], labels

    ev = robustmix.evaluate({name: model}, (x, y), eps=[0, "2/255", "4/255", "8/255"],
                            attacks=["fgsm", {"name": "pgd", "steps": 10}], n=args.n, seed=0,
                            save_adversarials=True)
    print(ev)                                                       # worst-case robust accuracy per eps
    curve = ev.summary[ev.summary["attack"] == "worst-case"][["eps_label", "robust_acc", "ci_low", "ci_high"]]
    print(curve.to_string(index=False))
    print(f"per-example rows: {len(ev.examples)}; data sha256 {ev.data_sha256[:16]}; store {ev.results}")
    print(ev.verify().line())                                       # re-score every saved adversarial
    print(f"report: {robustmix.report(ev, out=args.out)}")


if __name__ == "__main__":
    main()
