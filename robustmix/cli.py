"""Command line: parse arguments, call one library function, print.

Every user-caused problem surfaces as ``robustmix: error: <one line>`` with
exit status 2; Ctrl-C exits 130 and says how to resume.
"""
from __future__ import annotations

import argparse
import json
import sys

from .errors import ConfigError, RobustmixError


def _csv_list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _int_list(text: str) -> list[int]:
    try:
        return [int(t) for t in _csv_list(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got '{text}'") from None


def cmd_train(args) -> int:
    from .recipe import load_recipe
    from .store import ModelStore, default_store_root
    from .train import summary_table, train_recipe

    overrides = {"epochs": args.epochs, "device": args.device, "seeds": args.seeds,
                 "variants": _csv_list(args.variants) if args.variants else None}
    recipe = load_recipe(args.recipe, overrides)
    store = ModelStore(args.out or default_store_root())
    results = train_recipe(recipe, store, progress=not args.quiet)
    print(summary_table(results))
    print(f"\nstored in {store.root}")
    return 0


def _zoo_rows(store, pattern="*") -> list[dict]:
    rows = []
    for name in store.names(pattern):
        meta = store.meta(name)
        rows.append({"model": name, "arch": meta["model"]["name"], "variant": meta["variant"],
                     "variant_params": meta["variant_params"], "seed": meta["seed"],
                     "dataset": meta["dataset"]["name"], "clean_acc": meta["metrics"]["clean_acc"],
                     "params": meta["params"], "trainable_params": meta["trainable_params"],
                     "seconds": meta["seconds"], "created": meta["created"]})
    return rows


def cmd_zoo(args) -> int:
    from .store import ModelStore, default_store_root

    store = ModelStore(args.store or default_store_root())
    if args.zoo_cmd == "list":
        rows = _zoo_rows(store, args.pattern)
        if args.json:
            print(json.dumps(rows, indent=2))
        elif not rows:
            print(f"no models in {store.root}; train some with `robustmix train zoo/RECIPE.toml`")
        else:
            import pandas as pd

            df = pd.DataFrame(rows).drop(columns=["variant_params", "created"])
            df["clean_acc"] = df["clean_acc"].map(lambda a: f"{a:.4f}")
            df["seconds"] = df["seconds"].map(lambda s: f"{s:.1f}")
            print(df.to_string(index=False))
    elif args.zoo_cmd == "show":
        meta = store.meta(args.name)
        store.load(args.name)  # verifies hash and that the weights rebuild the model
        print(json.dumps(meta, indent=2, sort_keys=True))
    elif args.zoo_cmd == "remove":
        store.remove(args.name)
        print(f"removed {args.name}")
    return 0


def cmd_models(args) -> int:
    from .models import count_params, create_model, list_models

    for name in list_models(args.pattern):
        total, _ = count_params(create_model(name))
        print(f"{name:32s} {total:>12,d} params (10 classes, 3 channels)")
    return 0


def cmd_data(args) -> int:
    from . import data

    if args.data_cmd == "list":
        for name in data.list_datasets():
            print(name)
    else:
        path = data.prepare(args.name, args.root)
        print(f"{args.name} ready in {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="robustmix", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)

    t = sub.add_parser("train", help="train every (variant x seed) of a recipe into the zoo store")
    t.add_argument("recipe", help="recipe TOML, e.g. zoo/fashion-mnist-demo.toml")
    t.add_argument("--epochs", type=int)
    t.add_argument("--device", help="auto | cpu | cuda[:N]")
    t.add_argument("--variants", help="comma-separated, e.g. full,chans,smooth:sigma=2")
    t.add_argument("--seeds", type=_int_list, help="comma-separated seeds")
    t.add_argument("--out", help="zoo store directory (default zoo/store or $ROBUSTMIX_ZOO)")
    t.add_argument("--quiet", action="store_true", help="no progress bars")
    t.set_defaults(fn=cmd_train)

    z = sub.add_parser("zoo", help="list, show or remove trained models")
    z.add_argument("--store", help="zoo store directory (default zoo/store or $ROBUSTMIX_ZOO)")
    zs = z.add_subparsers(dest="zoo_cmd", required=True)
    zl = zs.add_parser("list")
    zl.add_argument("pattern", nargs="?", default="*")
    zl.add_argument("--json", action="store_true")
    zs.add_parser("show").add_argument("name")
    zs.add_parser("remove").add_argument("name")
    z.set_defaults(fn=cmd_zoo)

    m = sub.add_parser("models", help="list registered architectures")
    m.add_argument("pattern", nargs="?", default="*")
    m.set_defaults(fn=cmd_models)

    d = sub.add_parser("data", help="list or prepare data sets")
    ds = d.add_subparsers(dest="data_cmd", required=True)
    ds.add_parser("list")
    dp = ds.add_parser("prepare")
    dp.add_argument("name")
    dp.add_argument("--root", help="data root (default ./data or $ROBUSTMIX_DATA)")
    d.set_defaults(fn=cmd_data)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.fn(args)
    except RobustmixError as exc:
        print(f"robustmix: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("robustmix: interrupted; re-run the same command to resume where it stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
