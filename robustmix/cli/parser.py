"""The argument parser of every command, with one-line errors."""
from __future__ import annotations

import argparse

from ..paper.analysis import BANK_KINDS
from .commands import (cmd_data, cmd_eval, cmd_export, cmd_models, cmd_report, cmd_reproduce, cmd_spectrum,
                       cmd_train, cmd_unshuffle, cmd_verify, cmd_zoo, csv_list)


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


def _int_list(text: str) -> list[int]:
    try:
        return [int(t) for t in csv_list(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got '{text}'") from None


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
