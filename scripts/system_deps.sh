#!/usr/bin/env bash
# System packages robustmix uses from Debian: the embedded Fashion-MNIST data
# set and a headless Chromium for testing the HTML report. Installed only when
# missing and only as root; otherwise say how. Idempotent.
set -uo pipefail
need=()
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || need+=(dataset-fashion-mnist)
[ -x /usr/bin/chromium ] || need+=(chromium)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    echo "setup: missing Debian packages: ${need[*]}; install them as root: apt-get update && apt-get install -y ${need[*]}" >&2
    exit 1
fi
echo "setup: installing Debian packages: ${need[*]}" >&2
apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
