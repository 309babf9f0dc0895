#!/usr/bin/env bash
# All GPU checks in one call, for the lent H100/H200 machine (see ../shared/GPU-NOTES.md):
# the GPU tests, every benchmark suite against cuBLAS/cuDNN (one process per suite, each capped),
# the host cost of a launch, the GPU time per kernel of a CRNN step (ncu), the default training
# runs (crnn, cnn, rnn), then a short table (last).
# Here, once: ../shared/scripts/device-wheels.sh   (fills .whl/ with the numpy the GPU machine needs)
# Then, through the device tool, with carry [".whl"] and timeout_s 600 (about 8 minutes with every stage; the
# caps add up to more, so a stage that hangs cuts the last ones short):
#   bash benchmarks/gpu_check.sh
# Caps (seconds): TEST_SECONDS (default 110), SUITE_SECONDS (per suite, default 35; train 50),
# TRAIN_SECONDS (default 70 per model of TRAIN_MODELS; 0 skips them; the rnn and conv suites get 25 s more); HOST_PROFILE=0 and
# KERNEL_TIMES=0 skip those stages. SUITES and TESTS narrow a rerun, e.g. SUITES="conv rnn" TESTS=tests/gpu/test_rnn_gpu.py.
# Logs go to $OUT (the device tool's folder) or bench-results/gpu; the JSON/PNG reports and the
# training run are packed into details.tgz there (the device tool brings back at most 8 files).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench-results/gpu}
WORK=$(mktemp -d)
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1 NUMBA_CACHE_DIR=${NUMBA_CACHE_DIR:-/tmp/numba-cache}
TEST_SECONDS=${TEST_SECONDS:-110}
SUITE_SECONDS=${SUITE_SECONDS:-35}
TRAIN_SECONDS=${TRAIN_SECONDS:-70}
TRAIN_MODELS=${TRAIN_MODELS-crnn cnn rnn}
SUITES=${SUITES-gemm pointwise pool conv rnn ctc train}
TESTS=${TESTS:-tests/gpu}
status=()

stamp() { date +%s; }
python3 -m nn.cli info > "$OUT/info.txt" 2>&1
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,temperature.gpu --format=csv >> "$OUT/info.txt" 2>&1
cat "$OUT/info.txt"

# Tests: in parallel where pytest-xdist is present (compiling the kernels is the slow part).
parallel=()
python3 -c "import xdist" 2>/dev/null && parallel=(-n 14)
python3 -c "import pytest_timeout" 2>/dev/null && parallel+=(--timeout 100)
start=$(stamp)
timeout "$TEST_SECONDS" python3 -m pytest -q -p no:cacheprovider -rfE --tb=short "${parallel[@]}" $TESTS \
  > "$OUT/gpu-tests.txt" 2>&1
code=$?
status+=("gpu tests: exit $code in $(( $(stamp) - start )) s: $(tail -n 1 "$OUT/gpu-tests.txt")")

# Benchmarks: one process per suite, so a slow or broken suite costs only its own figures.
: > "$OUT/bench.txt"
for suite in $SUITES; do
  cap=$SUITE_SECONDS
  case $suite in train) cap=$(( SUITE_SECONDS + 15 ));; rnn | conv) cap=$(( SUITE_SECONDS + 25 ));; esac
  start=$(stamp)
  timeout "$cap" python3 -m nn.cli bench "$suite" --device cuda --repeats 10 --plot --output "$WORK/bench" \
    >> "$OUT/bench.txt" 2>&1
  status+=("bench $suite: exit $? in $(( $(stamp) - start )) s")
done

# Where the host time of one op call goes (small ops and recurrences are bound by it).
if [ "${HOST_PROFILE:-1}" = 1 ]; then
  timeout 60 python3 -m benchmarks.host_profile > "$OUT/host-profile.txt" 2>&1
  status+=("host profile: exit $?")
fi

# Which kernels one CRNN training step spends its GPU time in (Nsight Compute, where it works).
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -n 1)
if [ "${KERNEL_TIMES:-1}" = 1 ] && [ -n "$NCU" ]; then
  timeout 120 "$NCU" --profile-from-start off --clock-control none --metrics gpu__time_duration.sum --csv \
    python3 -m benchmarks.kernel_times step > "$WORK/ncu.csv" 2> "$WORK/ncu.err"
  status+=("kernel times (ncu): exit $?")
  python3 -m benchmarks.kernel_times table "$WORK/ncu.csv" > "$OUT/kernel-times.txt" 2>&1
fi

# The main job on the GPU: each default training run (target: under a minute on an H100/H200).
if [ "$TRAIN_SECONDS" -gt 0 ]; then
  : > "$OUT/train.txt"
  for model in $TRAIN_MODELS; do
    start=$(stamp)
    timeout "$TRAIN_SECONDS" python3 -m nn.train "$model" --device cuda --quiet --output "$WORK/train-$model" \
      >> "$OUT/train.txt" 2>&1
    status+=("train $model: exit $? in $(( $(stamp) - start )) s: $(grep -v -i warn "$OUT/train.txt" | tail -n 1)")
  done
fi

cp "$OUT"/*.txt "$WORK"/ 2>/dev/null
tar -czf "$OUT/details.tgz" -C "$WORK" . 2>/dev/null
grep -E "^(FAILED|ERROR)" "$OUT/gpu-tests.txt" | head -40
python3 -m benchmarks.summary "$WORK/bench" | tee "$OUT/summary.txt"
sed -n '/^host cost of one call/,$p' "$OUT/host-profile.txt" 2>/dev/null
cat "$OUT/kernel-times.txt" 2>/dev/null
printf '%s\n' "${status[@]}"
