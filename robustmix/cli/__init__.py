"""Command line: parse arguments, call one library function, print.

Every user-caused problem surfaces as ``robustmix: error: <one line>`` (argument
errors as ``robustmix SUBCOMMAND: error: <one line>``) with exit status 2;
Ctrl-C exits 130 and says how to resume.
"""
from __future__ import annotations

import os
import sys
import warnings

from ..errors import RobustmixError
from .parser import build_parser

__all__ = ["main", "build_parser"]


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
