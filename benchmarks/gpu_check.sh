#!/usr/bin/env bash
# All GPU checks in one call, for the lent H100/H200 machine (see ../shared/GPU-NOTES.md):
# the GPU tests, then every benchmark suite against cuBLAS/cuDNN, then a short table (last).
# Here, once: ../shared/scripts/device-wheels.sh   (fills .whl/ with the numpy the GPU machine needs)
# Then, through the device tool, with carry [".whl"] and timeout_s 360 (the stages are capped at
# 120 s of tests and 160 s of benchmarks, so the whole call stays near 5 minutes; raise them with
# TEST_SECONDS=... BENCH_SECONDS=... when the device budget allows):
#   bash benchmarks/gpu_check.sh
# Details go to $OUT (the device tool's folder) or bench-results/gpu.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench-results/gpu}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
export NUMBA_CACHE_DIR=${NUMBA_CACHE_DIR:-/tmp/numba-cache}
TEST_SECONDS=${TEST_SECONDS:-120}
BENCH_SECONDS=${BENCH_SECONDS:-160}
SUITES=${SUITES:-gemm pointwise pool conv rnn ctc train}

python3 -m nn.cli info > "$OUT/info.txt" 2>&1
cat "$OUT/info.txt"
timeout "$TEST_SECONDS" python3 -m pytest -q -p no:cacheprovider tests/gpu > "$OUT/gpu-tests.txt" 2>&1
echo "gpu tests: exit $? ($(tail -n 1 "$OUT/gpu-tests.txt"))"
timeout "$BENCH_SECONDS" python3 -m nn.cli bench $SUITES --repeats 10 --plot --output "$OUT" > "$OUT/bench.txt" 2>&1
echo "benchmarks: exit $?"
python3 -m benchmarks.summary "$OUT"
