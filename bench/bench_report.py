"""Time write_report on the 20-model x 3-attack x 10-eps fixture (target: < 20 s on 2 CPUs).

    .venv/bin/python bench/bench_report.py [--repeat N]
"""
import argparse
import importlib
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
fx = importlib.import_module("fixtures_results")

from robustmix.report import write_report  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = fx.many_store(Path(tmp) / "results")
        times = []
        for i in range(args.repeat):
            t = time.perf_counter()
            write_report(store, Path(tmp) / "report")
            times.append(time.perf_counter() - t)
    # The first run includes importing matplotlib/seaborn, as a CLI invocation would.
    print(f"report, 20 models x 3 attacks x 10 eps: "
          + ", ".join(f"{t:.2f} s" for t in times) + " (target < 20 s)")
    return 0 if min(times) < 20 else 1


if __name__ == "__main__":
    sys.exit(main())
