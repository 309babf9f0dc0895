#!/usr/bin/env bash
# All GPU checks in one call, for the lent H100/H200 machine (see ../shared/GPU-NOTES.md), most
# important first: a check of the recurrent kernels' grid barrier, the GPU tests, the default training
# runs (crnn, cnn, rnn: the main job, target under a minute each; the CRNN again with its kernels loaded
# from the cache), the train, rnn and conv suites
# against cuBLAS/cuDNN (one capped process per suite), the host cost of a launch and of an eager training
# step, the GPU time per kernel of a CRNN step (ncu), the other suites if time is left, then a short
# summary (last).
# Here, once: ../shared/scripts/device-wheels.sh   (fills .whl/ with the numpy the GPU machine needs)
# Then, through the device tool, with carry [".whl"] and timeout_s 600:
#   bash benchmarks/gpu_check.sh
# Every stage is cut to fit DEADLINE (default 540 s from the start), so the logs, details.tgz and the
# table are always written; a stage with under 10 s left is skipped (and says so).
# Caps (seconds): TEST_SECONDS (default 220; pytest is interrupted, so its failures so far are listed); TRAIN_SECONDS (crnn, default 80; then 55 for the CRNN again
# with its kernels from the cache if WARM_CRNN=1; cnn and rnn 45; 0 skips them); SUITE_SECONDS (per suite, default 25; conv +65, rnn +45,
# train +40: 90, 70 and 65 by default). HOST_PROFILE=0 and KERNEL_TIMES=0
# skip those stages, BARRIER_CHECK=0 the barrier check, PLAN_SWEEP=0 the GEMM plan sweep (benchmarks.gemm_plans).
# SUITES, TESTS, TRAIN_MODELS and ONLY (the cases whose label contains it) narrow a rerun, e.g. SUITES="conv rnn" ONLY=crnn TESTS=tests/gpu/test_rnn_gpu.py TRAIN_MODELS=crnn (narrow SUITES
# with ONLY: a suite with no matching case exits 1 and says so in its status line); ONLY_<suite> (e.g.
# ONLY_conv=3x2) narrows that suite alone.
# Logs go to $OUT (the device tool's folder) or bench-results/gpu; the JSON/PNG reports and the
# training runs are packed into details.tgz there (the device tool brings back at most 8 files).
set -uo pipefail
BEGIN=$(date +%s)
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
# Compiled kernels (kernels/cuda/jit.py): the tests fill one cache and the suites, host profile and ncu load
# from it; each default training run starts with an empty one of its own (the cold time, the target), and
# WARM_CRNN=1 runs the CRNN again on its filled cache (the time of any later run; off by default: its 55 s
# are the benchmarks' otherwise). The caches (hundreds of MB) stay out of details.tgz; their sizes are noted.
export NUMBANET_CACHE_DIR=$WORK/kernel-cache
WARM_CRNN=${WARM_CRNN:-0}
# Small grids are the rule for tiny test shapes; their occupancy warnings drowned the test log.
export NUMBA_CUDA_LOW_OCCUPANCY_WARNINGS=0
DEADLINE=${DEADLINE:-540}
TEST_SECONDS=${TEST_SECONDS:-220}
SUITE_SECONDS=${SUITE_SECONDS:-25}
TRAIN_SECONDS=${TRAIN_SECONDS:-80}
TRAIN_MODELS=${TRAIN_MODELS-crnn cnn rnn}
SUITES=${SUITES-conv rnn train gemm pointwise pool ctc embedding layer_norm}
TESTS=${TESTS:-tests/gpu}
status=()

stamp() { date +%s; }
# run_stage NAME SECONDS COMMAND...: the command under SECONDS or the time left before the deadline (less
# 20 s for the packing), whichever is less; skipped, with a note, when under 10 s are left.
run_stage() {
  local name=$1 cap=$2 left=$(( DEADLINE - 20 - ($(date +%s) - BEGIN) ))
  shift 2
  if [ "$left" -lt 10 ]; then
    status+=("$name: skipped, the deadline was reached")
    return 1
  fi
  [ "$left" -lt "$cap" ] && cap=$left
  local start=$(stamp)
  # STAGE_SIGNAL=INT (the tests): pytest, interrupted, still prints what failed so far; killed 10 s later
  timeout -s "${STAGE_SIGNAL:-TERM}" -k 10 "$cap" "$@"
  local code=$?
  status+=("$name: exit $code in $(( $(stamp) - start )) s (cap $cap s)")
  return 0
}

python3 -m nn.cli info > "$OUT/info.txt" 2>&1
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,temperature.gpu --format=csv >> "$OUT/info.txt" 2>&1
cat "$OUT/info.txt"

# The persistent recurrent kernels' atomic grid barrier (the default, written without a GPU) against the
# device runtime's, before anything relies on it: if their results differ or the check hangs, every later
# stage runs with NUMBANET_GRID_BARRIER=runtime (and the status says so).
# (BARRIER_CHECK=0 skips it, on a rerun after it passed: the atomic barrier stays in force)
if [ "${BARRIER_CHECK:-1}" = 0 ]; then
  status+=("grid barrier check: skipped (BARRIER_CHECK=0)")
else
run_stage "grid barrier check" 90 python3 -m benchmarks.barrier_check > "$OUT/barrier.txt" 2>&1
if grep -q "bit-identical" "$OUT/barrier.txt"; then
  status[-1]+=": $(grep -m1 "grid barriers" "$OUT/barrier.txt"); $(grep -m1 "grid barriers alone" "$OUT/barrier.txt")"
else
  export NUMBANET_GRID_BARRIER=runtime
  status[-1]+=": FAILED ($(tail -n 1 "$OUT/barrier.txt")); later stages use NUMBANET_GRID_BARRIER=runtime"
fi
fi

# Tests: in parallel where pytest-xdist is present (compiling the kernels is the slow part; the stage took
# 117 s on the H100 in the fifth session for 234 tests, and there are about 470 now, most of them reusing
# compiled kernels; the kernel cache tests add two processes compiling a CRNN step).
parallel=()
python3 -c "import xdist" 2>/dev/null && parallel=(-n 14)
python3 -c "import pytest_timeout" 2>/dev/null && parallel+=(--timeout 100)
STAGE_SIGNAL=INT run_stage "gpu tests" "$TEST_SECONDS" python3 -m pytest -q -p no:cacheprovider -rfE --tb=short "${parallel[@]}" \
  $TESTS > "$OUT/gpu-tests.txt" 2>&1 && status[-1]+=": $(tail -n 1 "$OUT/gpu-tests.txt")"

# The main job on the GPU: each default training run (target: under a minute on an H100/H200).
: > "$OUT/train.txt"
if [ "$TRAIN_SECONDS" -gt 0 ]; then
  for model in $TRAIN_MODELS; do
    cap=45
    [ "$model" = crnn ] && cap=$TRAIN_SECONDS
    run_stage "train $model" "$cap" env NUMBANET_CACHE_DIR="$WORK/kernel-cache-$model" python3 -m nn.train \
      "$model" --device cuda --quiet --output "$WORK/train-$model" > "$WORK/train-$model.txt" 2>&1 \
      && status[-1]+=": $(grep -v -i warn "$WORK/train-$model.txt" | tail -n 1)"
    cat "$WORK/train-$model.txt" >> "$OUT/train.txt" 2>/dev/null
    # the run's kernels: compiled, loaded from the cache, compiled ahead in other processes
    grep -A5 '"kernels"' "$WORK/train-$model/metrics.json" >> "$OUT/train.txt" 2>/dev/null
    if [ "$model" = crnn ] && [ "$WARM_CRNN" = 1 ]; then
      run_stage "train crnn, kernels from the cache" 55 env NUMBANET_CACHE_DIR="$WORK/kernel-cache-crnn" \
        python3 -m nn.train crnn --device cuda --quiet --output "$WORK/train-crnn-warm" \
        > "$WORK/train-crnn-warm.txt" 2>&1 \
        && status[-1]+=": $(grep -v -i warn "$WORK/train-crnn-warm.txt" | tail -n 1)"
      cat "$WORK/train-crnn-warm.txt" >> "$OUT/train.txt" 2>/dev/null
      grep -A5 '"kernels"' "$WORK/train-crnn-warm/metrics.json" >> "$OUT/train.txt" 2>/dev/null
    fi
  done
fi

# Benchmarks: one process per suite, so a slow or broken suite costs only its own figures. The suites that
# recent changes touch (train first: issue 5's eager steps; rnn; conv) run before the host profile and ncu;
# the others after them.
: > "$OUT/bench.txt"
ran_suites=" "
run_suites() {
  for suite in "$@"; do
    case " $SUITES " in *" $suite "*) ;; *) continue;; esac
    case "$ran_suites" in *" $suite "*) continue;; esac
    ran_suites+="$suite "
    cap=$SUITE_SECONDS
    case $suite in conv) cap=$(( SUITE_SECONDS + 65 ));; rnn) cap=$(( SUITE_SECONDS + 45 ));;
                   train) cap=$(( SUITE_SECONDS + 40 ));; esac
    only_name="ONLY_$suite"; only=${!only_name:-${ONLY:-}}   # ONLY_<suite> narrows one suite (else ONLY)
    run_stage "bench $suite" "$cap" python3 -m nn.cli bench "$suite" --device cuda --repeats 10 --plot \
      ${only:+--only "$only"} --output "$WORK/bench" >> "$OUT/bench.txt" 2>&1
  done
}
run_suites train rnn conv

# Where the host time of one op call and of an eager training step goes (eager steps are bound by it).
if [ "${HOST_PROFILE:-1}" = 1 ]; then
  run_stage "host profile" 60 python3 -m benchmarks.host_profile > "$OUT/host-profile.txt" 2>&1
fi

# Which kernels one CRNN training step spends its GPU time in (Nsight Compute, where it works).
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -n 1)
if [ "${KERNEL_TIMES:-1}" = 1 ] && [ -n "$NCU" ]; then
  run_stage "kernel times (ncu)" 90 "$NCU" --profile-from-start off --clock-control none \
    --metrics gpu__time_duration.sum --csv python3 -m benchmarks.kernel_times step > "$WORK/ncu.csv" 2> "$WORK/ncu.err"
  python3 -m benchmarks.kernel_times table "$WORK/ncu.csv" > "$OUT/kernel-times.txt" 2>&1
fi

# Every GEMM tile plan on the CRNN step's shapes (data for kernels/cuda/gemm.py's plan rule; PLAN_SWEEP=0 skips it)
if [ "${PLAN_SWEEP:-1}" = 1 ]; then
  run_stage "gemm plans" 40 python3 -m benchmarks.gemm_plans > "$OUT/gemm-plans.txt" 2>&1
fi

run_suites $SUITES   # the rest, in the order given (those already run are skipped)

du -sh "$WORK"/kernel-cache* >> "$OUT/train.txt" 2>/dev/null   # (how large a run's compiled kernels are)
cp "$OUT"/*.txt "$WORK"/ 2>/dev/null
# The device tool brings back files of at most 16 MiB: the kernel caches stay out
tar --exclude='./kernel-cache*' -czf "$OUT/details.tgz" -C "$WORK" . 2>/dev/null
grep -E "^(FAILED|ERROR)" "$OUT/gpu-tests.txt" | head -40
python3 -m benchmarks.summary "$WORK/bench" $ran_suites | tee "$OUT/summary.txt"   # (a cut suite: CUT)
sed -n '/^host cost of one call/,$p' "$OUT/host-profile.txt" 2>/dev/null
cat "$OUT/kernel-times.txt" 2>/dev/null
cat "$OUT/gemm-plans.txt" 2>/dev/null
printf '%s\n' "${status[@]}"
