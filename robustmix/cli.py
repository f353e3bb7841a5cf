"""Command line: parse arguments, call one library function, print.

Every user-caused problem surfaces as ``robustmix: error: <one line>`` (argument
errors as ``robustmix SUBCOMMAND: error: <one line>``) with exit status 2;
Ctrl-C exits 130 and says how to resume.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

import pandas as pd

from . import data
from .adversarials import export_adversarials, verify_store
from .distributed import current_world, leaving_process_group
from .errors import ConfigError, RobustmixError
from .evaluate import run_eval, summary_text
from .corruption_tables import corruption_text
from .export import export_leaderboard, export_robustbench
from .export_corruptions import export_corruptions
from .models import count_params, create_model, list_models
from .paper.analysis import BANK_KINDS, analyse_spectrum
from .paper.reproduce import reproduce_paper
from .paper.unshuffle import load_unshuffle_recipe, run_unshuffle
from .paper.unshuffle_report import summarise
from .radius import export_radii
from .recipe import load_recipe, recipe_task
from .report import write_report
from .spec import load_spec
from .store import ModelStore, default_store_root
from .train import summary_table, train_recipe


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors that name the (sub)command and point to its --help, instead
    of several lines of usage."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}; see `{self.prog} --help`\n")


def _leaf_parsers(parser: argparse.ArgumentParser):
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield from _leaf_parsers(child)


def _csv_list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _int_list(text: str) -> list[int]:
    try:
        return [int(t) for t in _csv_list(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got '{text}'") from None


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
                 "variants": _csv_list(args.variants) if args.variants is not None else None,
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


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="robustmix", description="Robustness curves for separable-convolution models.")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    t = sub.add_parser("train", help="train every (variant x seed) of a recipe into the zoo store")
    t.add_argument("recipe", help="recipe TOML, e.g. zoo/fashion-mnist-demo.toml")
    t.add_argument("--epochs", type=int)
    t.add_argument("--device", help="auto | cpu | cuda[:N]")
    t.add_argument("--variants", help="comma-separated, e.g. full,chans,smooth:sigma=2")
    t.add_argument("--seeds", type=_int_list, help="comma-separated seeds")
    t.add_argument("--out", help="zoo store directory (default zoo/store or $ROBUSTMIX_ZOO)")
    t.add_argument("--quiet", action="store_true", help="no progress bars")
    t.add_argument("--amp", choices=["auto", "bf16", "off"], help="bf16 autocast of forward and loss "
                   "(auto: bf16 on cuda, off on cpu)")
    t.add_argument("--compile", action=argparse.BooleanOptionalAction, help="torch.compile the training forward")
    t.add_argument("--channels-last", action=argparse.BooleanOptionalAction,
                   help="NHWC memory format (default auto: on for cuda)")
    t.add_argument("--workers", help="data loader processes: N or auto (auto: min(4, CPUs) on cuda, 0 on cpu)")
    t.set_defaults(fn=cmd_train)

    z = sub.add_parser("zoo", help="list, show or remove trained models")
    z.add_argument("--store", help="zoo store directory (default zoo/store or $ROBUSTMIX_ZOO)")
    zs = z.add_subparsers(dest="zoo_cmd", required=True, metavar="{list,show,remove}")
    zl = zs.add_parser("list")
    zl.add_argument("pattern", nargs="?", default="*")
    zl.add_argument("--json", action="store_true")
    zs.add_parser("show").add_argument("name")
    zs.add_parser("remove").add_argument("name")
    z.set_defaults(fn=cmd_zoo)

    e = sub.add_parser("eval", help="run an epsilon sweep spec into a result store")
    e.add_argument("spec", help="sweep spec TOML, e.g. evals/fashion-mnist-demo.toml")
    e.add_argument("--results", help="result store directory (default results/<spec name>)")
    e.add_argument("--store", help="zoo store directory (default zoo/store or $ROBUSTMIX_ZOO)")
    e.add_argument("--device", help="auto | cpu | cuda[:N]")
    e.add_argument("--seed", type=int, help="evaluation seed (overrides the spec)")
    e.add_argument("--n", type=int, help="number of examples (overrides data.n)")
    e.add_argument("--precision", help="fp32 | bf16: the model's precision inside attacks (overrides the spec)")
    e.add_argument("--quiet", action="store_true")
    e.set_defaults(fn=cmd_eval)

    r = sub.add_parser("report", help="write an HTML report of a result store")
    r.add_argument("results", help="result store directory")
    r.add_argument("--out", required=True, help="report directory, e.g. reports/NAME/")
    r.add_argument("--mce-baseline", metavar="MODEL", help="model whose corruption errors mCE is relative to")
    r.set_defaults(fn=cmd_report)

    x = sub.add_parser("export", help="export a leaderboard CSV and/or RobustBench model_info JSON")
    x.add_argument("results", help="result store directory")
    x.add_argument("--leaderboard", help="CSV file to write")
    x.add_argument("--robustbench", help="directory for RobustBench model_info JSON files")
    x.add_argument("--radii", help="CSV file for every example's robustness radius per model and attack")
    x.add_argument("--threat-model", help="Linf, L2 or L1 (default: the one with most rows)")
    x.add_argument("--eps", help="e.g. 8/255 (default: the largest eps every model has)")
    x.add_argument("--corruptions", metavar="DIR", help="directory for RobustBench common-corruptions files")
    x.add_argument("--mce-baseline", metavar="MODEL", help="model whose corruption errors mCE is relative to")
    x.add_argument("--adversarials", help="file (.pt or .safetensors) for one model's saved adversarial inputs "
                                          "at --eps (AutoAttack's adv_complete), for an outside evaluation")
    x.add_argument("--model", help="with --adversarials: the model")
    x.add_argument("--attack", default="worst-case", help="with --adversarials: an attack label, or worst-case "
                                                          "(default: per example, an attack that broke it)")
    x.add_argument("--store", help="with --adversarials: zoo store of the models (default: the spec's)")
    x.set_defaults(fn=cmd_export)

    v = sub.add_parser("verify", help="re-score every saved adversarial example of a result store")
    v.add_argument("results", help="result store directory (written with save_adversarials = true)")
    v.add_argument("--store", help="zoo store directory (default: the spec's, zoo/store or $ROBUSTMIX_ZOO)")
    v.add_argument("--device", help="auto | cpu | cuda[:N]")
    v.set_defaults(fn=cmd_verify)

    m = sub.add_parser("models", help="list registered architectures")
    m.add_argument("pattern", nargs="?", default="*")
    m.set_defaults(fn=cmd_models)

    d = sub.add_parser("data", help="list or prepare data sets")
    ds = d.add_subparsers(dest="data_cmd", required=True, metavar="{list,prepare}")
    ds.add_parser("list")
    dp = ds.add_parser("prepare")
    dp.add_argument("name")
    dp.add_argument("--root", help="data root (default ./data or $ROBUSTMIX_DATA)")
    d.set_defaults(fn=cmd_data)

    a = sub.add_parser("analyze", help="analyses of filter banks (spectral envelope)")
    asub = a.add_subparsers(dest="analyze_cmd", required=True)
    s = asub.add_parser("spectrum", help="spectral-envelope coverage of generated and/or trained filter banks")
    s.add_argument("--bank", action="append", metavar="KIND[:k=v,...]",
                   help=f"generated bank (repeatable): {', '.join(BANK_KINDS)}, e.g. correlated:rho=0.9; "
                        "default: the Figure 1/3 set when no --model is given")
    s.add_argument("--model", action="append", metavar="NAME|DIR",
                   help="trained model (repeatable): zoo name (robustmix zoo list) or checkpoint directory")
    s.add_argument("--layer", help="SpatialMix layer of --model: index (default 0, the first) or 'all'")
    s.add_argument("--store", help="zoo store directory (default zoo/store or $ROBUSTMIX_ZOO)")
    s.add_argument("--channels", type=int, default=64, help="filters per generated bank (default 64)")
    s.add_argument("--kernel-size", type=int, default=5, help="kernel size of generated banks (default 5)")
    s.add_argument("--seed", type=int, default=0, help="variant seed of generated banks (default 0)")
    s.add_argument("--n", type=int, default=32, help="DFT size (default 32)")
    s.add_argument("--out", required=True, help="output directory for spectrum.csv/.png/.svg")
    s.set_defaults(fn=cmd_spectrum)

    u = sub.add_parser("unshuffle", help="train models that undo a fixed pixel shuffle; report PSNR")
    u.add_argument("recipe", help="un-shuffle recipe TOML, e.g. zoo/fashion-mnist-unshuffle.toml")
    u.add_argument("--out", required=True, help="output directory: a model store (RECIPE/VARIANT-sSEED) and "
                                                "the report (results.csv, grid.png, index.html)")
    u.add_argument("--epochs", type=int, help="override the recipe's epochs")
    u.add_argument("--device", help="auto | cpu | cuda[:N]")
    u.set_defaults(fn=cmd_unshuffle)

    rp = sub.add_parser("reproduce", help="reproduce the paper's claims end to end, with verdicts")
    rsub = rp.add_subparsers(dest="reproduce_cmd", required=True)
    s = rsub.add_parser("paper", help="train, evaluate, analyse; write OUT/index.html with one verdict per claim")
    s.add_argument("--out", default="reports/paper", help="report directory (default reports/paper)")
    s.add_argument("--store", help="zoo store (default zoo/store or $ROBUSTMIX_ZOO; zoo/store-quick with --quick, "
                                   "zoo/store-long with --long)")
    s.add_argument("--results", help="result store (default results/paper-cpu[-quick|-long])")
    s.add_argument("--device", help="auto | cpu | cuda[:N]")
    scale = s.add_mutually_exclusive_group()
    scale.add_argument("--quick", action="store_true",
                       help="smoke test: a few hundred images, 1 epoch, tiny attacks (separate store)")
    scale.add_argument("--long", action="store_true",
                       help="hours on a CPU: 15 epochs, 5 seeds, width 64, white-box on all 10,000 test images "
                            "(separate store)")
    s.set_defaults(fn=cmd_reproduce)

    for leaf in _leaf_parsers(p):  # the innermost command's parser wins: it reports unknown options
        leaf.set_defaults(_parser=leaf)
    return p


# Deprecation notices that third-party packages print when robustmix imports them: the user can do
# nothing about them, and they would come before robustmix's own one-line error. Only these
# (category, module, message) are silenced, only while a command runs; every other warning shows.
QUIET_WARNINGS = ((FutureWarning, r"torch\.jit", r"`torch\.jit\.interface` is deprecated"),
                  (UserWarning, r"robustbench(\.|$)", r"pkg_resources is deprecated"))


def _run_command(args) -> int:
    with warnings.catch_warnings():
        for category, module, message in QUIET_WARNINGS:
            warnings.filterwarnings("ignore", message=message, category=category, module=module)
        return args.fn(args)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        args._parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if getattr(args, "device", None) is not None and not args.device.strip():  # '' would mean auto
        args._parser.error("argument --device: empty; use auto, cpu or cuda[:N]")
    try:
        status = _run_command(args)
        if sys.stdout is not None:  # None: started with stdout closed, where print writes nothing
            sys.stdout.flush()  # buffered output meets a closed pipe here, where it is handled, not at exit
        return status
    except RobustmixError as exc:
        print(f"robustmix: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `robustmix zoo list | head`: the reader left, which is not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # Python's recipe: no second error when stdout flushes at exit
        return 0
    except KeyboardInterrupt:
        print("robustmix: interrupted; re-run the same command to resume where it stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
