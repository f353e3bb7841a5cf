"""The commands: each parses nothing, calls one library function and prints."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pandas as pd

from .. import data
from ..adversarials import export_adversarials, verify_store
from ..distributed import current_world, leaving_process_group
from ..errors import ConfigError, RobustmixError
from ..evaluate import run_eval, summary_text
from ..corruption_tables import corruption_text
from ..export import export_leaderboard, export_robustbench
from ..export_corruptions import export_corruptions
from ..models import count_params, create_model, list_models
from ..paper.analysis import analyse_spectrum
from ..paper.reproduce import reproduce_paper
from ..paper.unshuffle import load_unshuffle_recipe, run_unshuffle
from ..paper.unshuffle_report import summarise
from ..radius import export_radii
from ..recipe import load_recipe, recipe_task
from ..report import write_report
from ..spec import load_spec
from ..store import ModelStore, default_store_root
from ..train import summary_table, train_recipe


def csv_list(text: str) -> list[str]:
    """"a, b,,c" -> ["a", "b", "c"]: the comma-separated options of a command."""
    return [t.strip() for t in text.split(",") if t.strip()]


def cmd_train(args) -> int:
    world = current_world()
    if recipe_task(args.recipe) == "unshuffle":
        ignored = [flag for flag, value in (("--variants", args.variants), ("--seeds", args.seeds),
                                            ("--amp", args.amp), ("--compile", args.compile),
                                            ("--channels-last", args.channels_last), ("--workers", args.workers))
                   if value is not None]
        if ignored:  # silently training something other than what was asked for is worse than stopping
            raise ConfigError(f"{', '.join(ignored)} do not apply to un-shuffling recipes; set variants and "
                              f"seeds in {args.recipe} (only --epochs, --device and --out apply)")
        if world.distributed:
            raise ConfigError("unshuffle recipes train in one process; run `robustmix train RECIPE` "
                              "without torchrun")
        recipe = load_unshuffle_recipe(args.recipe, {"epochs": args.epochs})
        store = ModelStore(args.out or default_store_root())
        return _unshuffle(recipe, store, store.path(recipe.name), args.device)

    # A number is a worker count; anything else goes to the recipe check, which names the key.
    workers = int(args.workers) if args.workers and args.workers.lstrip("-").isdigit() else args.workers
    overrides = {"epochs": args.epochs, "device": args.device, "seeds": args.seeds,
                 "variants": csv_list(args.variants) if args.variants is not None else None,
                 "performance": {"amp": args.amp, "compile": args.compile, "channels_last": args.channels_last,
                                 "workers": workers}}
    recipe = load_recipe(args.recipe, overrides)
    store = ModelStore(args.out or default_store_root())
    with leaving_process_group():
        results = train_recipe(recipe, store, progress=not args.quiet)
    if world.is_main:  # one summary per job, not one per rank
        print(summary_table(results))
        print(f"\nstored in {store.root}")
    return 0


def cmd_eval(args) -> int:
    spec = load_spec(args.spec, {"store": args.store, "seed": args.seed, "precision": args.precision})
    if args.n is not None:
        spec.data.n = args.n
        spec.data.validate("data")

    def log(line: str) -> None:
        # One write per line, flushed: under torchrun the ranks share stdout unbuffered (python -u),
        # where print's separate write of the newline lets another rank's line in between.
        if not args.quiet and sys.stdout is not None:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    with leaving_process_group():
        summary = run_eval(spec, args.results, device=args.device, progress=not args.quiet, log=log)
    if summary is None:  # a non-zero rank of a sharded eval: rank 0 prints the results
        return 0
    print(summary_text(summary))
    if corruption_text(summary):
        print("\n" + corruption_text(summary))
    results = args.results or spec.results or f"results/{spec.name}"
    flags = read_flags(results)
    if flags:
        print("\ndiagnostics (robustness numbers may be unreliable):")
        for line in flags:
            print(f"  {line}")
    print(f"\nresults in {results}")
    return 0


def read_flags(results) -> list[str]:
    diag = pd.read_csv(f"{results}/diagnostics.csv")
    return [f"{r.model}: {r.flag} ({r.detail})" for r in diag.itertuples()]


def cmd_report(args) -> int:
    index = write_report(args.results, args.out, mce_baseline=args.mce_baseline)
    print(f"report written to {index}")
    return 0


def cmd_export(args) -> int:
    if not (args.leaderboard or args.robustbench or args.corruptions or args.adversarials or args.radii):
        raise ConfigError("export: pass --leaderboard FILE.csv, --robustbench DIR, --corruptions DIR, "
                          "--adversarials FILE and/or --radii FILE.csv")
    if args.adversarials:
        if not args.model or not args.eps:
            raise ConfigError("export --adversarials: also pass --model NAME and --eps, e.g. --eps 8/255")
        done = export_adversarials(args.results, args.adversarials, model=args.model, eps=args.eps,
                                   threat_model=args.threat_model, attack=args.attack, store=args.store)
        print(f"{done.n} adversarial inputs of {done.model} ({done.attack} over {'+'.join(done.attacks)}, "
              f"{done.threat_model} eps {args.eps}; {done.robust} robust) written to {done.path}")
    if args.leaderboard:
        df = export_leaderboard(args.results, args.leaderboard, threat_model=args.threat_model, eps=args.eps)
        print(df[["rank", "model", "clean_acc", "robust_acc", "flags"]].to_string(index=False))
        print(f"leaderboard written to {args.leaderboard}")
    if args.robustbench:
        paths = export_robustbench(args.results, args.robustbench, threat_model=args.threat_model, eps=args.eps)
        print(f"{len(paths)} RobustBench model_info files written to {args.robustbench}")
    if args.corruptions:
        paths = export_corruptions(args.results, args.corruptions, mce_baseline=args.mce_baseline)
        print(f"RobustBench corruptions files written to {paths[0].parent}: " + ", ".join(p.name for p in paths))
    if args.radii:
        medians = export_radii(args.results, args.radii)
        print(medians.to_string(index=False) if len(medians) else "(no minimum-norm attack in the store)")
        print(f"per-example radii written to {args.radii}")
    return 0


def cmd_verify(args) -> int:
    result = verify_store(args.results, args.store, device=args.device)
    for message in result.messages:
        print(f"  {message}", file=sys.stderr)
    print(result.line(), file=sys.stdout if result.ok else sys.stderr)
    return 0 if result.ok else 1


def _zoo_rows(store, pattern="*") -> tuple[list[dict], list[tuple[str, str]]]:
    """(rows of readable checkpoints, (name, reason) of unreadable ones)."""
    rows, unreadable = [], []
    for name in store.names(pattern):
        try:
            meta = store.meta(name)
        except RobustmixError as exc:
            unreadable.append((name, str(exc)))
            continue
        rows.append({"model": name, "arch": meta["model"]["name"], "variant": meta["variant"],
                     "variant_params": meta["variant_params"], "seed": meta["seed"],
                     "dataset": meta["dataset"]["name"], "clean_acc": meta["metrics"].get("clean_acc"),
                     "params": meta["params"], "trainable_params": meta["trainable_params"],
                     "seconds": meta["seconds"], "created": meta["created"]})
    return rows, unreadable


def cmd_zoo(args) -> int:
    store = ModelStore(args.store or default_store_root())
    if args.zoo_cmd == "list":
        if not store.root.is_dir():
            raise ConfigError(f"zoo store {store.root} is not a directory; pass --store DIR of an existing "
                              "store, or train into it first with `robustmix train zoo/RECIPE.toml --out DIR`")
        rows, unreadable = _zoo_rows(store, args.pattern)
        if args.json:
            print(json.dumps(rows, indent=2))
        elif not rows and not unreadable:
            if args.pattern != "*" and store.names():
                raise ConfigError(f"no model in {store.root} matches {args.pattern!r}; "
                                  "`robustmix zoo list` shows every name")
            print(f"no models in {store.root}; train some with `robustmix train zoo/RECIPE.toml`")
        elif rows:
            df = pd.DataFrame(rows).drop(columns=["variant_params", "created"])
            # An un-shuffling model has no accuracy (its PSNR is in its meta.json).
            df["clean_acc"] = df["clean_acc"].map(lambda a: "-" if a is None or a != a else f"{a:.4f}")
            df["seconds"] = df["seconds"].map(lambda s: f"{s:.1f}")
            print(df.to_string(index=False))
        if unreadable:  # the good checkpoints are still listed; the command fails so scripts notice
            more = f" ({len(unreadable) - 1} more unreadable checkpoints)" if len(unreadable) > 1 else ""
            raise ConfigError(f"{unreadable[0][1]}{more}")
    elif args.zoo_cmd == "show":
        meta = store.meta(args.name)
        store.load(args.name)  # verifies hash and that the weights rebuild the model
        print(json.dumps(meta, indent=2, sort_keys=True))
    elif args.zoo_cmd == "remove":
        store.remove(args.name)
        print(f"removed {args.name}")
    return 0


def cmd_models(args) -> int:
    names = list_models(args.pattern)
    if not names:
        raise ConfigError(f"no registered architecture matches {args.pattern!r}; `robustmix models` lists them all")
    for name in names:
        total, _ = count_params(create_model(name))
        print(f"{name:32s} {total:>12,d} params (10 classes, 3 channels)")
    return 0


def cmd_data(args) -> int:
    if args.data_cmd == "list":
        for name in data.list_datasets():
            print(name)
    else:
        path = data.prepare(args.name, args.root)
        print(f"{args.name} ready in {path}")
    return 0


def cmd_spectrum(args) -> int:
    table, paths = analyse_spectrum(args.out, args.bank, args.model, args.layer, args.store, args.channels,
                                    args.kernel_size, args.seed, args.n)
    last = table.groupby("bank", sort=False).tail(1)
    print(last[["bank", "n_filters", "coverage", "mean_magnitude", "high_freq_fraction"]]
          .to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print("\nwritten: " + ", ".join(str(p) for p in paths))
    return 0


def cmd_unshuffle(args) -> int:
    recipe = load_unshuffle_recipe(args.recipe, {"epochs": args.epochs})
    return _unshuffle(recipe, ModelStore(args.out), Path(args.out), args.device)


def _unshuffle(recipe, store, report_dir, device) -> int:
    t0 = time.perf_counter()
    results, paths = run_unshuffle(recipe, store, report_dir, device=device)
    print(summarise(results).to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"\n{time.perf_counter() - t0:.0f}s; report in {paths[-1]}")
    return 0


def cmd_reproduce(args) -> int:
    # The pipeline mixes one-process steps (un-shuffling, figures) with train and eval;
    # under torchrun each rank would redo them. Scale out its train/eval steps instead.
    if current_world().distributed:
        raise ConfigError("reproduce runs in one process; under torchrun run its steps instead: "
                          "`robustmix train zoo/RECIPE.toml` and `robustmix eval evals/SPEC.toml`")
    index = reproduce_paper(args.out, store=args.store, results=args.results, device=args.device,
                            quick=args.quick, long=args.long)
    print(f"report in {index}")
    return 0
