"""The GPU benchmark runs end to end at CPU size, so it cannot rot between GPU sessions."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_gpu_benchmark_runs_at_cpu_size():
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, str(REPO / "bench" / "bench_gpu.py"), "--device", "cpu", "--small",
                          "--train-images", "256", "--pgd-n", "32", "--batch-size", "128", "--epochs", "2",
                          "--repeats", "1"], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    text = out.stdout
    assert "device: cpu (dense peak: unknown)" in text
    train = re.search(r"convmixer_32_4_ks5_p2\s+train img/s\s+(\d+)\s+(\d+)\s+([\d.]+)", text)
    pgd = re.search(r"PGD-20 examples/s\s+(\d+)\s+(\d+)\s+([\d.]+)", text)
    robust = re.search(r"PGD robust examples\s+(\d+)\s+(\d+)", text)
    assert train and pgd and robust, text
    assert all(float(v) > 0 for v in train.groups() + pgd.groups())
    # Both sides attacked the same 32 images; robustmix keeps the first fooling iterate, so it
    # can only find more adversarial examples than torchattacks' last iterate.
    ours, ref = int(robust.group(1)), int(robust.group(2))
    assert 0 <= ours <= ref <= 32
    assert re.search(r"PGD FLOP/s\s+[\d.]+ [GT]FLOP/s\s+[\d.]+ [GT]FLOP/s", text)
