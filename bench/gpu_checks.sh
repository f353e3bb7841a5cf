#!/usr/bin/env bash
# Every check that needs a GPU, in one run (sized for about 9 minutes on one H100/H200).
# Each step runs under its own time limit, most important first, and writes DIR/<step>.log;
# DIR/summary.txt lists each step's exit status and the logs' result tables.
#
#   cuda_paths  training on CUDA with the GPU fast path (channels_last, bf16 autocast, pinned
#               loader workers), then `robustmix eval` on CUDA in fp32 and with the bf16 search
#   bench_gpu   bench/bench_gpu.py: training img/s and PGD examples/s against torchattacks,
#               demo and paper-scale ConvMixer, FLOP/s against the device's peak
#   oom         an eval whose batch cannot fit (FGSM on all 60000 training images at once
#               with ConvMixer-256/8): it must back off to a size that fits and finish
#   bench_eval  bench/bench_eval.py items (1)-(3) on the GPU, on the demo model of cuda_paths
#
# Usage:  bash bench/gpu_checks.sh DIR
#         PYTHON (default python3), DEVICE (default cuda); DEVICE=cpu runs every step at a
#         small size (no oom step), to check this script on a machine without a GPU.
# Fashion-MNIST must be where `robustmix data prepare fashion-mnist` finds it.
set -uo pipefail
out=${1:?usage: bash bench/gpu_checks.sh DIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)
py=${PYTHON:-python3}
device=${DEVICE:-cuda}
work=$(mktemp -d "${TMPDIR:-/tmp}/robustmix-gpu-checks.XXXXXX")
export PYTHONUNBUFFERED=1 ROBUSTMIX_ZOO="$work/zoo"
cd "$(dirname "$0")/.."
summary="$out/summary.txt"
: >"$summary"

# step NAME SECONDS COMMAND...: run under a time limit, log it, record the exit status.
step() {
  local name=$1 limit=$2
  shift 2
  local t0=$SECONDS
  echo "== $name ($(date -u +%H:%M:%S), limit ${limit}s): $*" | tee -a "$summary"
  timeout --kill-after=10 "$limit" "$@" >"$out/$name.log" 2>&1
  local rc=$?
  echo "   rc=$rc in $((SECONDS - t0))s$([ $rc -eq 124 ] && echo ' (time limit)')" | tee -a "$summary"
  return $rc
}

if [ "$device" = cpu ]; then
  epochs=1 eval_n=256 eval_aa_n=8 bench_gpu=(--device cpu --small --repeats 1)
  bench_eval=(--n 64 --aa-n 8 --repeats 1)
  limits=(300 300 0 300)
else
  epochs=2 eval_n=2000 eval_aa_n=128 bench_gpu=(--device "$device" --train-images 30000 --epochs 2 --repeats 2 --pgd-n 10000)
  bench_eval=(--n 10000 --aa-n 256 --repeats 3)
  limits=(100 210 90 130)
fi

cat >"$work/eval.toml" <<TOML
models = ["fashion-mnist-demo/full-s0"]
seed = 0
[data]
name = "fashion-mnist"
n = $eval_n
batch_size = $eval_n
[threat.Linf]
eps = [0, "2/255", "8/255"]
[[attacks]]
name = "pgd"
steps = 20
[[attacks]]
name = "autoattack"
n = $eval_aa_n
TOML
cat >"$work/oom.toml" <<TOML
models = ["oom/full-s0"]
seed = 0
[data]
name = "fashion-mnist"
split = "train"
n = 60000
batch_size = 60000
[threat.Linf]
eps = [0, "8/255"]
[[attacks]]
name = "fgsm"
TOML
cat >"$work/oom-recipe.toml" <<TOML
name = "oom"
variants = ["full"]
seeds = [0]
epochs = 1
batch_size = 512
[data]
name = "fashion-mnist"
train_subset = 2048
[model]
name = "convmixer_256_8_ks5_p2"
TOML

cuda_paths() {
  "$py" -m robustmix data prepare fashion-mnist &&
    "$py" -m robustmix train zoo/fashion-mnist-demo.toml --variants full --seeds 0 --epochs "$epochs" \
      --device "$device" --quiet &&
    "$py" -m robustmix eval "$work/eval.toml" --results "$work/eval-fp32" --device "$device" --quiet &&
    "$py" -m robustmix eval "$work/eval.toml" --results "$work/eval-bf16" --device "$device" --quiet \
      --precision bf16 &&
    "$py" - "$work" <<'PY'
import json, sys
from pathlib import Path
import pandas as pd
work = Path(sys.argv[1])
meta = json.loads(next((work / "zoo").glob("fashion-mnist-demo/full-s0/meta.json")).read_text())
print("training:", {k: meta.get(k) for k in ("device", "performance", "distributed")})
print("clean accuracy:", meta["metrics"]["clean_acc"])
keys = ["attack", "eps"]
fp32, bf16 = (pd.read_csv(work / f"eval-{p}" / "summary.csv") for p in ("fp32", "bf16"))
both = fp32.merge(bf16, on=keys, suffixes=("_fp32", "_bf16"))
print(both[keys + ["n_robust_fp32", "n_robust_bf16", "seconds_fp32", "seconds_bf16"]].to_string(index=False))
print("device in run.json:", json.loads((work / "eval-fp32" / "run.json").read_text()).get("device"))
PY
}

oom() {
  "$py" -m robustmix train "$work/oom-recipe.toml" --device "$device" --quiet &&
    "$py" -m robustmix eval "$work/oom.toml" --results "$work/oom-results" --device "$device" &&
    "$py" - "$work" <<'PY'
import sys
from pathlib import Path
import pandas as pd
ex = pd.read_parquet(Path(sys.argv[1]) / "oom-results" / "examples")
print("attack_batch values:", sorted(ex["attack_batch"].unique().tolist()), "rows:", len(ex))
PY
}

export py device epochs work
export -f cuda_paths oom
step cuda_paths "${limits[0]}" bash -c cuda_paths
step bench_gpu "${limits[1]}" "$py" bench/bench_gpu.py "${bench_gpu[@]}"
if [ "$device" != cpu ]; then
  step oom "${limits[2]}" bash -c oom
fi
step bench_eval "${limits[3]}" "$py" bench/bench_eval.py --device "$device" --skip-mem \
  --model-dir "$work/zoo/fashion-mnist-demo/full-s0" "${bench_eval[@]}"

for log in "$out"/*.log; do
  { echo; echo "--- $(basename "$log") (last 40 lines)"; tail -40 "$log"; } >>"$summary"
done
rm -rf "$work"
echo "logs in $out; summary: $summary"
