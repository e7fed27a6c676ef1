#!/usr/bin/env bash
# Everything this project checks on a CUDA machine, in one call (a lent GPU is time-limited):
# the GPU tests (tests/test_gpu.py), then bench/gan_throughput.py at the issue's two settings.
# Logs and JSON go to $OUT (the device tool's return folder) or /tmp/gpu-checks.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-/tmp/gpu-checks}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
python3 -c "import sys, torch; print('python', sys.version.split()[0], 'torch', torch.__version__, torch.cuda.get_device_name())"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv
# -o addopts="": one process, and no -n for a machine without pytest-xdist
python3 -m pytest -o addopts="" -m gpu tests/test_gpu.py -q -p no:cacheprovider 2>&1 | tee "$out/pytest-gpu.log"
for setting in "128 64" "64 16"; do
  set -- $setting
  python3 bench/gan_throughput.py --size "$1" --batch "$2" --iters 20 --warmup 3 \
    --json "$out/bench-$1-$2.json" 2>&1 | tee "$out/bench-$1-$2.log"
done
